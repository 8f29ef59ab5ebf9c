//! Printers of drill results: the seed-format table, JSON and CSV. They consume [`DrillResult`]s and
//! nothing else, so every driver's results print the same way.

use std::fmt::Write as _;

use serde_json::{Value, json};

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
        let _ = writeln!(out, "ratio B/A of ttft_p95: {ratio:.2}");
    }
    if let Some(s) = &result.sweep {
        let show = |a: &Option<crate::drills::Axis>| {
            a.as_ref()
                .map_or("not reached".to_string(), |a| a.to_string())
        };
        let _ = writeln!(
            out,
            "knee (throughput gain < 5 %): conc {}; operating point (goodput >= {:.0} %): conc {}",
            show(&s.knee),
            s.goodput_target_pct,
            show(&s.operating_point)
        );
    }
    out
}

fn table_row(r: &Row, width: usize) -> String {
    format!(
        "{:>width$}{:>6}{:>5}{:>5}{:>10.3}{:>10.3}{:>10.4}{:>9.3}{:>9.3}{:>8.1}{:>10.1}",
        r.axis.to_string(),
        r.reqs,
        r.err,
        r.generated,
        r.ttft_p50,
        r.ttft_p95,
        r.tpot_p50,
        r.e2e_p95,
        r.e2e_p99,
        r.tok_s,
        r.goodput_pct
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
        obj.insert("ratio".into(), json!((ratio * 100.0).round() / 100.0));
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
                "{},{},{},{},{},{},{:.3},{:.3},{:.4},{:.3},{:.3},{:.1},{:.1}",
                res.drill,
                res.profile,
                r.axis,
                r.reqs,
                r.err,
                r.generated,
                r.ttft_p50,
                r.ttft_p95,
                r.tpot_p50,
                r.e2e_p95,
                r.e2e_p99,
                r.tok_s,
                r.goodput_pct
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
