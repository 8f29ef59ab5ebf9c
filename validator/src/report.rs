//! Printers of drill results: the seed-format table, JSON and CSV. They consume [`DrillResult`]s and
//! nothing else, so every driver's results print the same way.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::rounding::{fixed, round_half_away};
use crate::rows::Row;
use crate::suite::DrillResult;

/// Output format of drill results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            _ => Err(format!("unknown format '{s}' (table, json, csv)")),
        }
    }
}

/// The seed table of one drill, with its title line and (for sweeps) knee and operating-point footer.
pub fn table(result: &DrillResult) -> String {
    let axis_name = result.drill.axis_name();
    let width = result
        .rows
        .iter()
        .map(|r| r.axis.to_string().len())
        .chain([axis_name.len() + 1, 5])
        .max()
        .unwrap_or(5);
    let mut out = String::new();
    let _ = writeln!(out, "# drill {} on {}", result.drill, result.profile);
    let _ = writeln!(
        out,
        "{axis_name:>width$}  reqs  err  gen  ttft_p50  ttft_p95  tpot_p50  e2e_p95  e2e_p99   tok/s  goodput%"
    );
    for r in &result.rows {
        let _ = writeln!(out, "{}", table_row(r, width));
    }
    if let Some(ratio) = result.ratio {
        let _ = writeln!(out, "ratio B/A of ttft_p95: {}", fixed(ratio, 2));
    }
    if let Some(s) = &result.sweep {
        let operating_point = s
            .operating_point
            .as_ref()
            .map_or("none (no level held it)".to_string(), |a| {
                format!("conc {a}")
            });
        let _ = writeln!(
            out,
            "knee (throughput gain < 5 %): {}; operating point (goodput >= {:.0} %): {operating_point}",
            knee_words(result),
            s.goodput_target_pct,
        );
    }
    out
}

/// A sweep's knee in words: "conc 256", or, when throughput never stopped growing, that it was
/// still growing at the highest level tried (never "conc not reached", which reads like a level).
fn knee_words(result: &DrillResult) -> String {
    match (
        result.sweep.as_ref().and_then(|s| s.knee.as_ref()),
        result.rows.last(),
    ) {
        (Some(knee), _) => format!("conc {knee}"),
        (None, Some(last)) => format!(
            "none, throughput still growing at conc {} (the highest tried)",
            last.axis
        ),
        (None, None) => "none".into(),
    }
}

/// The row's time and rate columns as the table, the CSV and the JSON all show them: ttft_p50,
/// ttft_p95, tpot_p50, e2e_p95, e2e_p99, tok_s, goodput_pct.
fn figures(r: &Row) -> [String; 7] {
    [
        fixed(r.ttft_p50, 3),
        fixed(r.ttft_p95, 3),
        fixed(r.tpot_p50, 4),
        fixed(r.e2e_p95, 3),
        fixed(r.e2e_p99, 3),
        fixed(r.tok_s, 1),
        fixed(r.goodput_pct, 1),
    ]
}

fn table_row(r: &Row, width: usize) -> String {
    let [
        ttft_p50,
        ttft_p95,
        tpot_p50,
        e2e_p95,
        e2e_p99,
        tok_s,
        goodput,
    ] = figures(r);
    format!(
        "{:>width$}{:>6}{:>5}{:>5}{ttft_p50:>10}{ttft_p95:>10}{tpot_p50:>10}{e2e_p95:>9}{e2e_p99:>9}{tok_s:>8}{goodput:>10}",
        r.axis.to_string(),
        r.reqs,
        r.err,
        r.generated,
    )
}

/// One drill as the JSON object `simulate --format json` prints.
pub fn json_value(result: &DrillResult) -> Value {
    let mut v = json!({
        "drill": result.drill,
        "profile": result.profile,
        "rows": result.rows,
    });
    if let (Some(ratio), Some(obj)) = (result.ratio, v.as_object_mut()) {
        obj.insert("ratio".into(), json!(round_half_away(ratio, 2)));
    }
    v
}

/// Several drills as JSON: one object for one drill, an array for more.
pub fn json(results: &[DrillResult]) -> String {
    let value = match results {
        [one] => json_value(one),
        many => Value::Array(many.iter().map(json_value).collect()),
    };
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

/// CSV with one line per row, the drill and profile in front.
pub fn csv(results: &[DrillResult]) -> String {
    let mut out = String::from(
        "drill,profile,axis,reqs,err,gen,ttft_p50,ttft_p95,tpot_p50,e2e_p95,e2e_p99,tok_s,goodput_pct\n",
    );
    for res in results {
        for r in &res.rows {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{}",
                res.drill,
                res.profile,
                r.axis,
                r.reqs,
                r.err,
                r.generated,
                figures(r).join(",")
            );
        }
    }
    out
}

/// All results in `format`.
pub fn render(results: &[DrillResult], format: Format) -> String {
    match format {
        Format::Table => results.iter().map(table).collect::<Vec<_>>().join("\n"),
        Format::Json => json(results) + "\n",
        Format::Csv => csv(results),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drills::{Axis, DrillKind};

    fn result(tok_s: f64, goodput_pct: f64) -> DrillResult {
        DrillResult {
            drill: DrillKind::Baseline,
            profile: "p".into(),
            rows: vec![Row {
                axis: Axis::Num(256),
                reqs: 512,
                err: 0,
                generated: 51,
                ttft_p50: 0.1235,
                ttft_p95: 1.5,
                tpot_p50: 0.06745,
                e2e_p95: 5.25,
                e2e_p99: 5.5,
                tok_s,
                goodput_pct,
            }],
            ratio: None,
            sweep: None,
        }
    }

    /// The figures of the one row of `text`'s table (the line after the header).
    fn table_figures(text: &str) -> Vec<String> {
        text.lines()
            .nth(2)
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }

    #[test]
    fn table_csv_and_json_show_the_same_rounded_figures() {
        // 416 of 512 requests met the SLO: 81.25 %, exact in binary, a tie at one decimal.
        let r = result(3226.45, 100.0 * 416.0 / 512.0);
        let table = table_figures(&table(&r));
        let json = json_value(&r);
        let row = &json["rows"][0];
        let csv = csv(std::slice::from_ref(&r));
        let csv: Vec<&str> = csv.lines().nth(1).unwrap_or_default().split(',').collect();
        for (i, column) in [
            "ttft_p50",
            "ttft_p95",
            "tpot_p50",
            "e2e_p95",
            "e2e_p99",
            "tok_s",
            "goodput_pct",
        ]
        .iter()
        .enumerate()
        {
            let printed = &table[4 + i];
            assert_eq!(printed, csv[6 + i], "{column}: table vs CSV");
            let carried = row[column].as_f64().unwrap_or(f64::NAN);
            assert_eq!(
                printed.parse::<f64>().ok(),
                Some(carried),
                "{column}: table {printed} vs JSON {carried}"
            );
        }
        assert_eq!(table[10], "81.3");
        assert_eq!(row["goodput_pct"], 81.3);
        assert_eq!(table[9], "3226.5");
        assert_eq!(table[4], "0.124");
        assert_eq!(table[6], "0.0675");
    }

    #[test]
    fn no_figure_prints_as_negative_zero() {
        // An empty sum is -0.0: what a level with no successful request used to print as tok/s.
        let r = result(Vec::<f64>::new().iter().sum(), -0.0);
        for text in [table(&r), csv(std::slice::from_ref(&r)), json(&[r])] {
            assert!(!text.contains("-0.0"), "{text}");
        }
    }
}
