//! The printers of a [`Validation`]: its charts, its Markdown report, and the report directory
//! (`report.md`, `report.json`, the limitations, SVG charts, telemetry CSV). They consume a finished
//! validation and run nothing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::Validation;
use crate::charts::{Chart, Marker, REAL, SIM, Series, THIRD};
use crate::compare::markdown as compare_markdown;
use crate::drills::{Axis, DrillKind};
use crate::ledger::{decode_fit, limitations, markdown as ledger_markdown};
use crate::suite::DrillResult;
use crate::telemetry::samples_csv;

fn axis_x(a: &Axis) -> Option<f64> {
    match a {
        Axis::Num(n) => Some(*n as f64),
        Axis::Label(_) => None,
    }
}

fn points(d: &DrillResult, f: fn(&crate::rows::Row) -> f64) -> Vec<(f64, f64)> {
    d.rows
        .iter()
        .filter_map(|r| Some((axis_x(&r.axis)?, f(r))))
        .collect()
}

/// The charts of a validation, as (file name, chart).
pub fn charts(v: &Validation) -> Vec<(String, Chart)> {
    let mut out = Vec::new();
    let (real, sim) = (&v.real.recording, &v.sim);
    for kind in [
        DrillKind::Baseline,
        DrillKind::Saturation,
        DrillKind::Overload,
    ] {
        let (Some(r), Some(s)) = (real.drill(kind), sim.drill(kind)) else {
            continue;
        };
        let mut markers = Vec::new();
        for (who, d, color) in [("real", r, REAL), ("sim", s, SIM)] {
            if let Some(sw) = &d.sweep {
                if let Some(x) = sw.knee.as_ref().and_then(axis_x) {
                    markers.push(Marker {
                        label: format!("{who} knee (conc {x})"),
                        x,
                        color,
                    });
                }
                if let Some(x) = sw.operating_point.as_ref().and_then(axis_x) {
                    markers.push(Marker {
                        label: format!("{who} operating point (conc {x})"),
                        x,
                        color: if who == "real" { THIRD } else { RGB_GREY },
                    });
                }
            }
        }
        for (file, title, y, f) in [
            (
                "tok-s",
                "throughput vs concurrency",
                "tok/s",
                (|r: &crate::rows::Row| r.tok_s) as fn(&crate::rows::Row) -> f64,
            ),
            ("ttft-p95", "TTFT p95 vs concurrency", "ttft_p95 (s)", |r| {
                r.ttft_p95
            }),
        ] {
            out.push((
                format!("{kind}-{file}.svg"),
                Chart {
                    title: format!("{kind}: {title}"),
                    x_label: "concurrency".into(),
                    y_label: y.into(),
                    series: vec![
                        Series {
                            name: format!("real ({})", real.label),
                            points: points(r, f),
                            line: true,
                            color: REAL,
                        },
                        Series {
                            name: format!("sim ({})", sim.label),
                            points: points(s, f),
                            line: true,
                            color: SIM,
                        },
                    ],
                    markers: markers.clone(),
                    log_x: true,
                },
            ));
        }
    }
    if let (Some(r), Some(s)) = (
        real.drill(DrillKind::Prefill),
        sim.drill(DrillKind::Prefill),
    ) {
        out.push((
            "prefill-ttft-vs-input.svg".into(),
            Chart {
                title: "prefill: TTFT p50 vs input length".into(),
                x_label: "input tokens (sized prompt n)".into(),
                y_label: "ttft_p50 (s)".into(),
                series: vec![
                    Series {
                        name: "real".into(),
                        points: points(r, |r| r.ttft_p50),
                        line: true,
                        color: REAL,
                    },
                    Series {
                        name: "sim".into(),
                        points: points(s, |r| r.ttft_p50),
                        line: true,
                        color: SIM,
                    },
                ],
                markers: vec![],
                log_x: false,
            },
        ));
    }
    if let (Some(r), Some(s)) = (real.drill(DrillKind::Decode), sim.drill(DrillKind::Decode)) {
        let mut series = Vec::new();
        for (who, d, color) in [("real", r, REAL), ("sim", s, SIM)] {
            let pts: Vec<(f64, f64)> = d
                .rows
                .iter()
                .map(|r| (r.generated as f64, r.e2e_p95))
                .collect();
            if let Some((a, b, _)) = decode_fit(&d.rows) {
                let xs = pts.iter().map(|p| p.0);
                let (lo, hi) = xs
                    .clone()
                    .fold((f64::INFINITY, 0.0f64), |(l, h), x| (l.min(x), h.max(x)));
                series.push(Series {
                    name: format!("{who} fit: {a:.3} s + {:.1} ms/token", b * 1e3),
                    points: vec![(lo, a + b * (lo - 1.0)), (hi, a + b * (hi - 1.0))],
                    line: true,
                    color,
                });
            }
            series.push(Series {
                name: format!("{who} e2e_p95"),
                points: pts,
                line: false,
                color,
            });
        }
        out.push((
            "decode-e2e-vs-gen.svg".into(),
            Chart {
                title: "decode: e2e p95 vs generated events, with fitted lines".into(),
                x_label: "gen (median events per request)".into(),
                y_label: "e2e_p95 (s)".into(),
                series,
                markers: vec![],
                log_x: false,
            },
        ));
    }
    if !v.real.samples.is_empty() {
        let limit = v.real.facts.as_ref().map_or(0.0, |f| f.power_limit_w);
        let mut series = vec![Series {
            name: "GPU utilisation %".into(),
            points: v
                .real
                .samples
                .iter()
                .map(|s| (s.t, s.gpu_util_pct))
                .collect(),
            line: true,
            color: REAL,
        }];
        if limit > 0.0 {
            series.push(Series {
                name: format!("power, % of {limit:.0} W"),
                points: v
                    .real
                    .samples
                    .iter()
                    .map(|s| (s.t, 100.0 * s.power_w / limit))
                    .collect(),
                line: true,
                color: SIM,
            });
        }
        out.push((
            "gpu-telemetry.svg".into(),
            Chart {
                title: "GPU during the real run (NVML)".into(),
                x_label: "time (s)".into(),
                y_label: "%".into(),
                series,
                markers: vec![],
                log_x: false,
            },
        ));
    }
    out
}

const RGB_GREY: plotters::style::RGBColor = plotters::style::RGBColor(120, 120, 120);

/// The Markdown report.
pub fn report_markdown(v: &Validation, chart_files: &[String]) -> String {
    let mut out = String::new();
    let e = &v.environment;
    let _ = writeln!(out, "# servesim validation report\n");
    let _ = writeln!(out, "## Environment\n");
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| real run | {} |", e.real_source);
    let _ = writeln!(out, "| simulator profile | {} |", e.profile);
    let _ = writeln!(out, "| servesim | {} |", e.tool_version);
    match &v.real.facts {
        Some(f) => {
            let _ = writeln!(
                out,
                "| GPU (NVML) | {} ({}), {:.1} GiB, driver {}, CUDA {}, power limit {:.0} W, {} |",
                f.name,
                f.uuid,
                f.memory_total_bytes as f64 / (1u64 << 30) as f64,
                f.driver_version,
                f.cuda_version,
                f.power_limit_w,
                f.pcie_link
            );
        }
        None => {
            let _ = writeln!(
                out,
                "| GPU (NVML) | not observed: {} |",
                v.real.telemetry_note.as_deref().unwrap_or("no telemetry")
            );
        }
    }
    if let Some(m) = &e.server_models {
        let model = m["data"][0]["id"].as_str().unwrap_or("?");
        let len = m["data"][0]["max_model_len"]
            .as_u64()
            .map_or("?".into(), |l| l.to_string());
        let _ = writeln!(
            out,
            "| server model (/v1/models) | {model}, max_model_len {len} |"
        );
    }
    if let Some(ver) = &e.server_version {
        let _ = writeln!(
            out,
            "| server version (/version) | {} |",
            ver["version"].as_str().unwrap_or("?")
        );
    }
    let _ = writeln!(out);

    let _ = writeln!(out, "## What this proves and what it does not\n");
    let count = |label: &str| {
        v.ledger
            .claims
            .iter()
            .filter(|c| c.class.label().starts_with(label))
            .count()
    };
    let _ = writeln!(
        out,
        "Of {} claims, {} can only be substantiated by the real run (the simulator reproduces them by construction), {} are predicted by the simulator within tolerance, {} disagree (calibration problems), and {} were not covered. Substantiated on the real run: {}.",
        v.ledger.claims.len(),
        count("real-only"),
        count("sim agrees"),
        count("sim disagrees"),
        count("neither"),
        v.ledger
            .claims
            .iter()
            .filter(|c| c.real == crate::ledger::RealVerdict::Substantiated)
            .map(|c| c.id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "The simulator's agreement on rows it was calibrated on (the A6000 baseline) proves nothing about the real card; rows it was not calibrated on are predictions. See `fake-vs-real-limitations.md` for what neither side covers.\n"
    );

    let _ = writeln!(out, "## Error summary\n");
    for er in &v.comparison.errors {
        let _ = writeln!(
            out,
            "- {} ({}): median {:.1} %, max {:.1} % over {} rows",
            er.metric, er.column, er.median_abs_pct, er.max_abs_pct, er.rows
        );
    }
    let _ = writeln!(out, "\n## Tables: real (A) vs simulator (B)\n");
    out.push_str(&compare_markdown(&v.comparison));
    let _ = writeln!(out, "\n## Claims ledger\n");
    out.push_str(&ledger_markdown(&v.ledger));
    if !v.real.levels.is_empty() {
        let _ = writeln!(out, "## GPU telemetry per level (mean / p95 / max)\n");
        let _ = writeln!(
            out,
            "| drill | level | samples | GPU util % | mem util % | mem used GiB | power W | SM MHz | temp °C | throttled |"
        );
        let _ = writeln!(out, "|---|---|---:|---|---|---|---|---|---|---:|");
        for l in &v.real.levels {
            let s =
                |x: &crate::telemetry::Stat| format!("{:.0} / {:.0} / {:.0}", x.mean, x.p95, x.max);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {:.1} / {:.1} / {:.1} | {} | {} | {} | {:.0} % |",
                l.drill,
                l.axis,
                l.samples,
                s(&l.gpu_util_pct),
                s(&l.mem_util_pct),
                l.mem_used_gib.mean,
                l.mem_used_gib.p95,
                l.mem_used_gib.max,
                s(&l.power_w),
                s(&l.sm_clock_mhz),
                s(&l.temperature_c),
                l.throttled_fraction * 100.0
            );
        }
        let _ = writeln!(out, "\nRaw samples: `telemetry.csv`.\n");
    }
    if !chart_files.is_empty() {
        let _ = writeln!(out, "## Charts\n");
        for f in chart_files {
            let _ = writeln!(out, "![{f}]({f})");
        }
    }
    out
}

/// Why the report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("writing {path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Chart(#[from] crate::charts::ChartError),
    #[error("encoding report.json: {0}")]
    Json(#[from] serde_json::Error),
}

/// Write `report.md`, `report.json`, `fake-vs-real-limitations.md`, the SVG charts and (with NVML)
/// `telemetry.csv` into `dir`; returns the files written.
pub fn write_report(dir: &Path, v: &Validation) -> Result<Vec<PathBuf>, WriteError> {
    let write = |name: &str, text: &str| -> Result<PathBuf, WriteError> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| WriteError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(path)
    };
    std::fs::create_dir_all(dir).map_err(|source| WriteError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut files = Vec::new();
    let mut chart_files = Vec::new();
    for (name, chart) in charts(v) {
        files.push(write(&name, &chart.svg()?)?);
        chart_files.push(name);
    }
    files.push(write("report.md", &report_markdown(v, &chart_files))?);
    files.push(write("report.json", &serde_json::to_string_pretty(v)?)?);
    files.push(write(
        "fake-vs-real-limitations.md",
        &limitations(&v.ledger),
    )?);
    if !v.real.samples.is_empty() {
        files.push(write("telemetry.csv", &samples_csv(&v.real.samples))?);
    }
    Ok(files)
}
