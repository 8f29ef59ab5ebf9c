//! End-to-end tests of inference-perf configs (`simulate --workload config.yaml`): the real
//! binary on the fixtures in fixtures/inference-perf/, its report files checked against the key
//! trees of inference-perf 0.7.0's own reports (fixtures/golden/inference-perf/, keys and types,
//! not values), its JSON on stdout against its files, and refusals that name the field.

use std::path::{Path, PathBuf};

use crate::support::{servesim, stdout_ok};
use serde_json::Value;

const SHARED: &str = "fixtures/inference-perf/shared-prefix.yaml";
const CONCURRENT: &str = "fixtures/inference-perf/random-concurrent.yaml";
const MULTI_TURN: &str = "fixtures/inference-perf/multi-turn-poisson.yaml";

/// A fresh report folder of this test's own.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("servesim-ip-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("report is JSON")
}

/// One line per leaf, `path type`, in the file's key order (as keytree.py writes it). Reads the
/// text with serde_json's order-keeping path: a `Value` would sort the keys.
fn key_tree(path: &Path) -> Vec<String> {
    fn walk(v: &Value, p: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(m) if m.is_empty() => out.push(format!("{p} {{}}")),
            Value::Object(m) => {
                for (k, v) in m {
                    let q = if p.is_empty() {
                        k.clone()
                    } else {
                        format!("{p}.{k}")
                    };
                    walk(v, &q, out);
                }
            }
            Value::Array(_) => out.push(format!("{p} []")),
            Value::Null => out.push(format!("{p} null")),
            Value::Bool(_) => out.push(format!("{p} bool")),
            Value::Number(_) | Value::String(_) => out.push(format!("{p} number")),
        }
    }
    let mut out = Vec::new();
    walk(&read(path), "", &mut out);
    out
}

/// Keys in the order the file has them: the position of each key's first `"key":` in the text.
fn keys_in_file_order(path: &Path, keys: &[&str]) -> bool {
    let text = std::fs::read_to_string(path).expect("report");
    let at: Vec<Option<usize>> = keys
        .iter()
        .map(|k| text.find(&format!("\"{k}\": ")))
        .collect();
    at.iter().all(Option::is_some) && at.windows(2).all(|w| w[0] < w[1])
}

fn golden(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(format!("fixtures/golden/inference-perf/{name}.keys"))
        .expect("golden key tree");
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_string)
        .collect();
    // serde_json's Value (no preserve_order) sorts keys: compare as sets of lines, and the order
    // separately on the text.
    v.sort();
    v
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn report_files_have_inference_perfs_key_tree() {
    let out = dir("shared");
    let out_s = out.to_str().expect("utf-8");
    let table = stdout_ok(&["simulate", "--workload", SHARED, "--report-dir", out_s]);
    assert!(table.contains("2 constant stage(s)"), "{table}");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .expect("report dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "stage_0_lifecycle_metrics.json",
            "stage_1_lifecycle_metrics.json",
            "summary_lifecycle_metrics.json"
        ]
    );
    for stage in ["stage_0", "stage_1"] {
        let path = out.join(format!("{stage}_lifecycle_metrics.json"));
        assert_eq!(sorted(key_tree(&path)), golden("stage"), "{stage}");
        assert!(keys_in_file_order(
            &path,
            &[
                "benchmark_time_seconds",
                "load_summary",
                "successes",
                "failures"
            ]
        ));
        assert!(keys_in_file_order(
            &path,
            &[
                "count",
                "schedule_delay",
                "mean",
                "min",
                "max",
                "p0.1",
                "median",
                "p99.9"
            ]
        ));
        let v = read(&path);
        // Stage 0: 2 req/s for 10 s; stage 1: 4 req/s for 10 s.
        let want = if stage == "stage_0" { 20 } else { 40 };
        assert_eq!(v["load_summary"]["count"], want);
        assert_eq!(v["successes"]["count"], want);
        assert_eq!(v["failures"]["count"], 0);
        // ignore_eos with output_len 64: every answer is 64 tokens.
        assert_eq!(v["successes"]["output_len"]["min"], 64.0);
        assert_eq!(v["successes"]["output_len"]["max"], 64.0);
        assert_eq!(v["successes"]["prompt_tokens"]["min"], 576.0);
        let ttft = v["successes"]["latency"]["time_to_first_token"]["median"]
            .as_f64()
            .expect("ttft");
        let e2e = v["successes"]["latency"]["request_latency"]["median"]
            .as_f64()
            .expect("e2e");
        assert!(ttft > 0.0 && ttft < e2e, "ttft {ttft} e2e {e2e}");
    }
    let summary = out.join("summary_lifecycle_metrics.json");
    assert_eq!(sorted(key_tree(&summary)), golden("summary"));
    assert_eq!(read(&summary)["load_summary"]["count"], 60);
}

#[test]
fn concurrent_stages_report_their_concurrency_and_stdout_json_matches_the_files() {
    let out = dir("concurrent");
    let out_s = out.to_str().expect("utf-8");
    let stdout = stdout_ok(&[
        "simulate",
        "--workload",
        CONCURRENT,
        "--report-dir",
        out_s,
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    for (name, concurrency) in [("stage_0", 4), ("stage_1", 16)] {
        let path = out.join(format!("{name}_lifecycle_metrics.json"));
        assert_eq!(sorted(key_tree(&path)), golden("concurrent"), "{name}");
        let file = read(&path);
        assert_eq!(file["load_summary"]["concurrency"], concurrency);
        assert_eq!(file["load_summary"]["requested_rate"], 40.0);
        assert_eq!(
            v[format!("{name}_lifecycle_metrics")],
            file,
            "stdout = file"
        );
    }
    assert_eq!(
        v["summary_lifecycle_metrics"],
        read(&out.join("summary_lifecycle_metrics.json"))
    );
}

#[test]
fn the_seed_decides_the_run_and_fleet_flags_apply() {
    let run = |extra: &[&str]| {
        let mut args = vec!["simulate", "--format", "json", "--workload", MULTI_TURN];
        args.extend_from_slice(extra);
        serde_json::from_str::<Value>(&stdout_ok(&args)).expect("JSON")
    };
    let a = run(&["--seed", "4"]);
    assert_eq!(a, run(&["--seed", "4"]), "same seed, same reports");
    assert_ne!(a, run(&["--seed", "5"]));
    let s = &a["stage_0_lifecycle_metrics"];
    assert_eq!(s["load_summary"]["count"], 64);
    // Multi-turn: later turns wait for earlier answers, which the schedule delay shows.
    assert!(
        s["load_summary"]["schedule_delay"]["max"]
            .as_f64()
            .expect("delay")
            > 0.0
    );
    let fleet = run(&[
        "--seed",
        "4",
        "--replicas",
        "2",
        "--router",
        "prefix-affinity",
    ]);
    assert_eq!(fleet["stage_0_lifecycle_metrics"]["successes"]["count"], 64);
}

#[test]
fn configs_that_cannot_be_simulated_are_refused_naming_the_field() {
    let d = dir("bad");
    std::fs::create_dir_all(&d).expect("dir");
    let bad = d.join("sharegpt.yaml");
    std::fs::write(
        &bad,
        "data:\n  type: shareGPT\n  path: sharegpt.json\nload:\n  stages: [{rate: 1, duration: 5}]\n",
    )
    .expect("write");
    let o = servesim(&["simulate", "--workload", bad.to_str().expect("utf-8")]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("data.type") && err.contains("real dataset"),
        "{err}"
    );

    let typo = d.join("typo.yml");
    let text = std::fs::read_to_string(SHARED)
        .expect("fixture")
        .replace("system_prompt_len", "system_promt_len");
    std::fs::write(&typo, text).expect("write");
    let o = servesim(&["simulate", "--workload", typo.to_str().expect("utf-8")]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("system_promt_len") && err.contains("data.shared_prefix"),
        "{err}"
    );

    let o = servesim(&["simulate", "--workload", "multi-turn", "--report-dir", "x"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--report-dir"));

    // bench sends servesim's own workloads; an inference-perf config is inference-perf's to send.
    let o = servesim(&["bench", "--url", "http://127.0.0.1:9", "--workload", SHARED]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("inference-perf --config_file"), "{err}");
}

#[test]
fn a_trace_replay_config_sends_the_traces_requests() {
    let out = dir("trace");
    let out_s = out.to_str().expect("utf-8");
    stdout_ok(&[
        "simulate",
        "--workload",
        "fixtures/inference-perf/trace-replay.yaml",
        "--report-dir",
        out_s,
    ]);
    let path = out.join("stage_0_lifecycle_metrics.json");
    assert_eq!(sorted(key_tree(&path)), golden("stage"));
    let v = read(&path);
    assert_eq!(v["load_summary"]["count"], 20);
    // The trace's lengths: prompts of 91 to 2221 tokens, answers of at least 12 (ignore_eos).
    assert_eq!(v["successes"]["prompt_tokens"]["min"], 91.0);
    assert_eq!(v["successes"]["prompt_tokens"]["max"], 2221.0);
    assert_eq!(v["successes"]["output_len"]["min"], 12.0);
}

#[test]
fn a_sweep_config_reports_the_stages_it_made() {
    let out = dir("sweep");
    let out_s = out.to_str().expect("utf-8");
    let table = stdout_ok(&[
        "simulate",
        "--workload",
        "fixtures/inference-perf/sweep.yaml",
        "--report-dir",
        out_s,
    ]);
    let line = table
        .lines()
        .find(|l| l.starts_with("sweep: saturation "))
        .unwrap_or_else(|| panic!("no sweep line in {table}"));
    // Three geometric stages from 1 req/s to the saturation point; the probe is not reported.
    let rates: Vec<f64> = line
        .split("stages at ")
        .nth(1)
        .and_then(|r| r.strip_suffix(" req/s"))
        .expect("rates")
        .split(", ")
        .map(|r| r.parse().expect("rate"))
        .collect();
    assert_eq!(rates.len(), 3);
    assert_eq!(rates[0], 1.0);
    for (i, rate) in rates.iter().enumerate() {
        let v = read(&out.join(format!("stage_{i}_lifecycle_metrics.json")));
        assert_eq!(v["load_summary"]["requested_rate"], *rate);
    }
    assert!(!out.join("stage_3_lifecycle_metrics.json").exists());
}
