//! `simulate --workload config.yaml`: an inference-perf config run in virtual time, reported per
//! stage in inference-perf's `stage_N_lifecycle_metrics.json` shape (docs/inference-perf.md).

use std::path::Path;

use anyhow::{Context, Result};
use servesim_models::Profile;
use servesim_sim::inference_perf::report::Stats;
use servesim_sim::inference_perf::{self, Benchmark, LifecycleReport, StageOutcome};
use servesim_sim::{Fleet, FleetRun, LevelRun};
use servesim_validator::report::Format;

use super::fleet::{fleet_stats, print_replicas};

/// Whether `--workload` names an inference-perf config file.
pub fn is_config_file(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml")
}

/// Read and check an inference-perf config, its data drawn with `seed`.
pub fn load(path: &str, seed: u64) -> Result<Benchmark> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading inference-perf config {path}"))?;
    let config = inference_perf::config::parse(&text).with_context(|| path.to_string())?;
    Benchmark::from_config(&config, seed).with_context(|| path.to_string())
}

/// Write one report file as inference-perf does (`json.dumps(contents, indent=2)`).
fn write_report(dir: &Path, name: &str, report: &LifecycleReport) -> Result<()> {
    let path = dir.join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// Run `bench` on `fleet` and report it: files in `report_dir` as each stage ends, then the
/// summary; stdout in `format`.
pub fn run(
    fleet: &mut Fleet,
    profile: &Profile,
    bench: &Benchmark,
    path: &str,
    report_dir: Option<&Path>,
    format: Format,
    caching: bool,
) -> Result<()> {
    if let Some(dir) = report_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let swept;
    let bench = if bench.sweep.is_some() {
        let found = inference_perf::sweep(fleet, bench).with_context(|| path.to_string())?;
        swept = bench
            .swept(found.saturation)
            .with_context(|| path.to_string())?;
        let rates: Vec<String> = swept.stages.iter().map(|s| s.rate.to_string()).collect();
        // On stderr with --format json, so that stdout stays the reports.
        let line = format!(
            "sweep: saturation {:.2} req/s (p{} of {} burn-down samples over {} probe requests); \
             stages at {} req/s",
            found.saturation,
            bench.sweep.map_or(95.0, |s| s.saturation_percentile),
            found.samples,
            found.probe_requests,
            rates.join(", ")
        );
        if format == Format::Json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
        &swept
    } else {
        bench
    };
    let mut write_err: Option<anyhow::Error> = None;
    let stages = inference_perf::run_stages(fleet, bench, &profile.model.hf_id, |stage| {
        if let (Some(dir), Some(report), true, None) =
            (report_dir, &stage.report, bench.per_stage, &write_err)
            && let Err(e) = write_report(dir, &stage_name(stage.stage), report)
        {
            write_err = Some(e);
        }
    });
    if let Some(e) = write_err {
        return Err(e);
    }
    let summary = inference_perf::summary(&stages, bench);
    if let (Some(dir), Some(report), true) = (report_dir, &summary, bench.summary) {
        write_report(dir, "summary_lifecycle_metrics", report)?;
    }
    match format {
        Format::Json => {
            let mut out = Reports(Vec::new());
            if bench.per_stage {
                for s in &stages {
                    if let Some(r) = &s.report {
                        out.0.push((stage_name(s.stage), r));
                    }
                }
            }
            if let (Some(r), true) = (&summary, bench.summary) {
                out.0.push(("summary_lifecycle_metrics".into(), r));
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Format::Table | Format::Csv => {
            print!("{}", table(path, profile, bench, &stages));
            let stats = fleet_stats(fleet);
            if caching {
                let hit = if stats.prefix_cache_queries == 0 {
                    0.0
                } else {
                    stats.prefix_cache_hits as f64 / stats.prefix_cache_queries as f64
                };
                println!(
                    "prefix cache: {:.1} % of {} prompt tokens looked up were hits",
                    hit * 100.0,
                    stats.prefix_cache_queries
                );
            } else {
                println!("prefix cache: off");
            }
            if fleet.replicas().len() > 1 {
                print_replicas(fleet, &whole_run(&stages), path, None, format)?;
            }
            if let Some(dir) = report_dir {
                println!("reports: {}", dir.display());
            }
        }
    }
    Ok(())
}

/// Reports by file name (without `.json`), in run order; serialised in that order (a
/// `serde_json::Value` would sort the keys, inside the reports too).
struct Reports<'a>(Vec<(String, &'a LifecycleReport)>);

impl serde::Serialize for Reports<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, report) in &self.0 {
            map.serialize_entry(name, report)?;
        }
        map.end()
    }
}

/// Every stage's fleet records as one level on the fleet's clock, for the per-replica rows.
fn whole_run(stages: &[StageOutcome]) -> FleetRun {
    let mut run = FleetRun {
        level: LevelRun::default(),
        replica: Vec::new(),
    };
    for s in stages {
        let t0 = s.t0;
        for rec in &s.fleet_run.level.records {
            let mut r = rec.clone();
            r.scheduled += t0;
            r.sent += t0;
            r.end += t0;
            r.ready = r.ready.map(|t| t + t0);
            r.first_event = r.first_event.map(|t| t + t0);
            r.event_times.iter_mut().for_each(|t| *t += t0);
            run.level.records.push(r);
        }
        run.replica.extend_from_slice(&s.fleet_run.replica);
        run.level.wall = t0 + s.fleet_run.level.wall;
    }
    run
}

/// inference-perf's per-stage report name.
fn stage_name(stage: usize) -> String {
    format!("stage_{stage}_lifecycle_metrics")
}

/// One table cell: the distribution's `key` value, `-` where there is none.
fn cell(s: Option<&Stats>, key: &str) -> String {
    match s.and_then(|s| {
        if key == "mean" {
            Some(s.mean)
        } else {
            s.get(key)
        }
    }) {
        Some(v) => format!("{v:.4}"),
        None => "-".into(),
    }
}

/// One row per stage: its load, what came back, and the latency medians and tails.
fn table(path: &str, profile: &Profile, bench: &Benchmark, stages: &[StageOutcome]) -> String {
    let load = bench.load.name();
    let mut out = format!(
        "# inference-perf config {path} on {}: {} {load} stage(s), ignore_eos {}, streaming {}\n",
        profile.name,
        stages.len(),
        bench.ignore_eos,
        bench.streaming
    );
    out.push_str(&format!(
        "{:>5} {:>8} {:>6} {:>8} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}\n",
        "stage",
        "rate",
        "sent",
        "achieved",
        "failed",
        "ttft_p50",
        "ttft_p99",
        "tpot_p50",
        "itl_p50",
        "e2e_p50",
        "e2e_p99",
        "out_tok/s"
    ));
    for s in stages {
        let Some(r) = &s.report else {
            out.push_str(&format!("{:>5} (no requests)\n", s.stage));
            continue;
        };
        let l = &r.successes.latency;
        out.push_str(&format!(
            "{:>5} {:>8.2} {:>6} {:>8.2} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10.1}\n",
            s.stage,
            s.spec.rate,
            r.load_summary.count,
            r.load_summary.achieved_rate.unwrap_or(0.0),
            r.failures.count,
            cell(l.time_to_first_token.as_ref(), "median"),
            cell(l.time_to_first_token.as_ref(), "p99"),
            cell(l.time_per_output_token.as_ref(), "median"),
            cell(l.inter_token_latency.as_ref(), "median"),
            cell(l.request_latency.as_ref(), "median"),
            cell(l.request_latency.as_ref(), "p99"),
            r.successes.throughput.output_tokens_per_sec
        ));
    }
    if !bench.streaming {
        out.push_str(
            "(api.streaming is off: inference-perf records no token times, so no TTFT, TPOT or ITL)\n",
        );
    }
    out
}
