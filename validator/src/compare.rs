//! Side-by-side comparison of two runs of the drill suite (simulated vs real, or real vs real after a
//! change), and the summary error figures the simulation literature reports.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::drills::{Axis, DrillKind};
use crate::rounding::{fixed, fixed_signed};
use crate::rows::{Row, sweep_summary};
use crate::suite::{DrillResult, GOODPUT_TARGET_PCT};

/// A saved run: what it was run against and its drill tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    pub label: String,
    pub drills: Vec<DrillResult>,
}

/// Why a recording could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a drill recording: {message}")]
    Format { path: String, message: String },
}

impl Recording {
    /// Parse the JSON of `simulate --format json` (one drill object or an array of them), a `bench`
    /// summary (an object with a `drills` array), or a [`Recording`].
    pub fn from_json(text: &str, path: &str) -> Result<Recording, RecordingError> {
        let fmt = |message: String| RecordingError::Format {
            path: path.to_string(),
            message,
        };
        let v: Value = serde_json::from_str(text).map_err(|e| fmt(e.to_string()))?;
        let (label, list) = match &v {
            Value::Array(items) => (None, items.clone()),
            Value::Object(o) if o.contains_key("drills") => (
                o.get("label")
                    .or_else(|| o.get("target"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                o.get("drills")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            ),
            Value::Object(o) if o.contains_key("drill") => (None, vec![v.clone()]),
            _ => {
                return Err(fmt(
                    "expected a drill object, an array of them, or an object with 'drills'".into(),
                ));
            }
        };
        let mut drills = Vec::new();
        for item in list {
            let mut d: DrillResult =
                serde_json::from_value(item).map_err(|e| fmt(e.to_string()))?;
            if d.sweep.is_none() && d.drill.sweeps_concurrency() {
                d.sweep = Some(sweep_summary(&d.rows, GOODPUT_TARGET_PCT));
            }
            drills.push(d);
        }
        if drills.is_empty() {
            return Err(fmt("no drills".into()));
        }
        let label = label.unwrap_or_else(|| drills[0].profile.clone());
        Ok(Recording { label, drills })
    }

    /// Read a recording file, or the summary in a `bench --out` directory.
    pub fn load(path: &str) -> Result<Recording, RecordingError> {
        let path = if std::path::Path::new(path).is_dir() {
            std::path::Path::new(path)
                .join(crate::records::SUMMARY_FILE)
                .display()
                .to_string()
        } else {
            path.to_string()
        };
        let text = std::fs::read_to_string(&path).map_err(|source| RecordingError::Read {
            path: path.clone(),
            source,
        })?;
        Recording::from_json(&text, &path)
    }

    pub fn drill(&self, kind: DrillKind) -> Option<&DrillResult> {
        self.drills.iter().find(|d| d.drill == kind)
    }
}

/// Reads one column of a row.
pub type Column = fn(&Row) -> f64;

/// The columns compared, with the row field each reads.
pub const COLUMNS: [(&str, Column); 7] = [
    ("tok_s", |r| r.tok_s),
    ("tpot_p50", |r| r.tpot_p50),
    ("ttft_p50", |r| r.ttft_p50),
    ("ttft_p95", |r| r.ttft_p95),
    ("e2e_p95", |r| r.e2e_p95),
    ("e2e_p99", |r| r.e2e_p99),
    ("goodput_pct", |r| r.goodput_pct),
];

/// `(b − a) / a`, or `None` when `a` is zero.
pub fn rel_diff(a: f64, b: f64) -> Option<f64> {
    (a != 0.0).then(|| (b - a) / a)
}

/// One axis value present in both runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowPair {
    pub axis: Axis,
    pub a: Row,
    pub b: Row,
    /// Relative difference (b − a) / a per column of [`COLUMNS`].
    pub diff: Vec<(String, Option<f64>)>,
}

/// One drill in both runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillPair {
    pub drill: DrillKind,
    pub rows: Vec<RowPair>,
    pub ratio_a: Option<f64>,
    pub ratio_b: Option<f64>,
}

/// Median and maximum absolute relative error of one metric across the suite.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorFigure {
    pub metric: String,
    pub column: String,
    pub rows: usize,
    pub median_abs_pct: f64,
    pub max_abs_pct: f64,
}

/// Everything the comparison found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub drills: Vec<DrillPair>,
    pub errors: Vec<ErrorFigure>,
}

/// Compare run `a` (the reference, e.g. real) with run `b` (e.g. the simulator), row by row.
pub fn compare(a: &Recording, b: &Recording) -> Comparison {
    let mut drills = Vec::new();
    for da in &a.drills {
        let Some(db) = b.drill(da.drill) else {
            continue;
        };
        let rows = da
            .rows
            .iter()
            .filter_map(|ra| {
                let rb = db.rows.iter().find(|r| r.axis == ra.axis)?;
                let diff = COLUMNS
                    .iter()
                    .map(|(name, f)| (name.to_string(), rel_diff(f(ra), f(rb))))
                    .collect();
                Some(RowPair {
                    axis: ra.axis.clone(),
                    a: ra.clone(),
                    b: rb.clone(),
                    diff,
                })
            })
            .collect();
        drills.push(DrillPair {
            drill: da.drill,
            rows,
            ratio_a: da.ratio,
            ratio_b: db.ratio,
        });
    }
    let errors = [
        ("tok/s", "tok_s"),
        ("TPOT", "tpot_p50"),
        ("TTFT", "ttft_p50"),
        ("E2E", "e2e_p95"),
    ]
    .iter()
    .map(|(metric, column)| {
        let mut errs: Vec<f64> = drills
            .iter()
            .flat_map(|d| d.rows.iter())
            .filter_map(|r| {
                r.diff
                    .iter()
                    .find(|(c, _)| c == column)
                    .and_then(|(_, d)| *d)
            })
            .map(|d| d.abs() * 100.0)
            .collect();
        errs.sort_by(f64::total_cmp);
        ErrorFigure {
            metric: metric.to_string(),
            column: column.to_string(),
            rows: errs.len(),
            median_abs_pct: crate::stats::percentile_linear(&errs, 50.0).unwrap_or(0.0),
            max_abs_pct: errs.last().copied().unwrap_or(0.0),
        }
    })
    .collect();
    Comparison {
        a: a.label.clone(),
        b: b.label.clone(),
        drills,
        errors,
    }
}

fn pct(d: Option<f64>) -> String {
    d.map_or("n/a".into(), |d| format!("{}%", fixed_signed(d * 100.0, 1)))
}

/// `servesim compare`'s output: a title, then [`markdown`]. Two saved runs of any kind, A read as
/// before (the reference) and B as after, so the differences are changes, not errors.
pub fn before_after(c: &Comparison) -> String {
    format!(
        "# Before/after comparison: A (before) and B (after)\n\n{}",
        markdown(c)
    )
}

/// Markdown tables: per drill, each column's A, B and difference; then a summary of the
/// differences per metric.
pub fn markdown(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "A = {}, B = {}; Δ = (B − A) / A.\n", c.a, c.b);
    for d in &c.drills {
        let _ = writeln!(out, "### {} ({})\n", d.drill, d.drill.axis_name());
        let _ = writeln!(
            out,
            "| {} | tok/s A | tok/s B | Δ | tpot_p50 A | B | Δ | ttft_p50 A | B | Δ | ttft_p95 A | B | Δ | e2e_p95 A | B | Δ | goodput A | B |",
            d.drill.axis_name()
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in &d.rows {
            let dd = |col: &str| pct(r.diff.iter().find(|(c, _)| c == col).and_then(|(_, d)| *d));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.axis,
                fixed(r.a.tok_s, 1),
                fixed(r.b.tok_s, 1),
                dd("tok_s"),
                fixed(r.a.tpot_p50, 4),
                fixed(r.b.tpot_p50, 4),
                dd("tpot_p50"),
                fixed(r.a.ttft_p50, 3),
                fixed(r.b.ttft_p50, 3),
                dd("ttft_p50"),
                fixed(r.a.ttft_p95, 3),
                fixed(r.b.ttft_p95, 3),
                dd("ttft_p95"),
                fixed(r.a.e2e_p95, 3),
                fixed(r.b.e2e_p95, 3),
                dd("e2e_p95"),
                fixed(r.a.goodput_pct, 1),
                fixed(r.b.goodput_pct, 1)
            );
        }
        if let (Some(a), Some(b)) = (d.ratio_a, d.ratio_b) {
            let _ = writeln!(
                out,
                "\nratio B-loaded/A-alone: A {}, B {}",
                fixed(a, 2),
                fixed(b, 2)
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "### Summary of differences (|B − A| / A over all compared rows)\n"
    );
    let _ = writeln!(out, "| metric | column | rows | median | max |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|");
    for e in &c.errors {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} % | {} % |",
            e.metric,
            e.column,
            e.rows,
            fixed(e.median_abs_pct, 1),
            fixed(e.max_abs_pct, 1)
        );
    }
    out
}
