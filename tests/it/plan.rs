//! End-to-end tests of `servesim plan` through the real binary: a small search on two cards with
//! the simulator, its JSON and table, shards joined by `plan merge` into the same bytes as one run,
//! the frontier SVG and the emitted deployment.

use std::path::PathBuf;

use crate::support::{servesim, stdout_ok};
use serde_json::Value;

/// A small, quick search: Qwen2.5-0.5B on an L4 and an A6000, one engine setting, TP 1 and 4
/// (4 is refused: 14 heads), short probes.
const SMALL: &[&str] = &[
    "plan",
    "--model",
    "qwen2.5-0.5b-instruct",
    "--gpus",
    "l4,a6000",
    "--tp",
    "1,4",
    "--max-num-seqs",
    "64,256",
    "--max-num-batched-tokens",
    "2048",
    "--rate",
    "30",
    "--requests",
    "40",
    "--probe-seconds",
    "5",
];

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("servesim-plan-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = SMALL.to_vec();
    a.extend_from_slice(extra);
    a
}

/// One candidate (Qwen2.5-0.5B on one A6000, TP 1, one engine setting) at 5 req/s with short
/// probes, for tests about the traffic rather than the search: the JSON plan for `traffic` flags.
fn one_candidate(traffic: &[&str]) -> Value {
    let mut a = vec!["plan"];
    a.extend_from_slice(traffic);
    a.extend_from_slice(&[
        "--model",
        "qwen2.5-0.5b-instruct",
        "--gpus",
        "a6000",
        "--tp",
        "1",
        "--max-num-seqs",
        "256",
        "--max-num-batched-tokens",
        "2048",
        "--rate",
        "5",
        "--requests",
        "40",
        "--probe-seconds",
        "5",
        "--format",
        "json",
    ]);
    serde_json::from_str(&stdout_ok(&a)).expect("JSON plan")
}

#[test]
fn a_small_plan_ranks_fleets_sizes_them_from_capacity_and_verifies_the_winner() {
    let v: Value =
        serde_json::from_str(&stdout_ok(&args(&["--format", "json"]))).expect("JSON plan");
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 4, "two cards × two max_num_seqs at TP 1");
    let unservable = v["unservable"].as_array().expect("unservable");
    assert_eq!(unservable.len(), 4, "TP 4 refused on both cards");
    assert!(
        unservable[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("must be divisible by tensor parallel size (4)"))
    );
    let costs: Vec<f64> = rows
        .iter()
        .map(|r| r["usd_per_hour"].as_f64().expect("cost"))
        .collect();
    assert!(
        costs.windows(2).all(|w| w[0] <= w[1]),
        "cheapest first: {costs:?}"
    );
    for r in rows {
        let cap = r["capacity_per_replica_rps"].as_f64().expect("capacity");
        let replicas = r["replicas"].as_f64().expect("replicas");
        // replicas = ceil(1.2 × 30 ÷ capacity).
        assert_eq!(replicas, (1.2 * 30.0 / cap).ceil().max(1.0), "{r}");
        let label = r["calibration"].as_str().expect("label");
        let expected = if r["gpu"] == "rtx-a6000" {
            "silicon-calibrated"
        } else {
            "data-sheet"
        };
        assert_eq!(label, expected);
        assert!(r["ttft"]["p99"].as_f64() >= r["ttft"]["p50"].as_f64());
    }
    let verified = &v["verified"];
    assert_eq!(verified["candidate"], rows[0]["candidate"]);
    assert_eq!(verified["replicas"], rows[0]["replicas"]);
    assert_ne!(verified["slo_status"], "fail", "{verified}");
    // The table says the same and shows the arithmetic.
    let table = stdout_ok(&args(&["--rows", "2"]));
    assert!(
        table.contains("replicas = ceil(headroom 1.2 × peak 30.000 req/s"),
        "{table}"
    );
    assert!(table.contains("Little's law") && table.contains("$/1M output tokens"));
    assert!(table.contains("... 2 more rows in the JSON"));
}

#[test]
fn shards_merged_give_the_bytes_of_one_unsharded_run() {
    let d = dir("shards");
    let whole = stdout_ok(&args(&["--format", "json"]));
    let mut files = Vec::new();
    for i in 0..3 {
        let f = d.join(format!("shard-{i}.jsonl"));
        let shard = format!("{i}/3");
        let fs = f.to_str().expect("utf-8").to_string();
        stdout_ok(&args(&["--shard", &shard, "--out", &fs]));
        files.push(fs);
    }
    let merged = stdout_ok(&[
        "plan", "merge", &files[2], &files[0], &files[1], "--format", "json",
    ]);
    assert_eq!(merged, whole);
    // A folder of shards works too; a missing shard is an error that names it.
    let d_str = d.to_str().expect("utf-8");
    assert_eq!(
        stdout_ok(&["plan", "merge", d_str, "--format", "json"]),
        whole
    );
    let out = servesim(&["plan", "merge", &files[0], &files[1]]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing shards: 2/3"));
}

#[test]
fn the_frontier_svg_and_the_emitted_deployment_describe_the_winner() {
    let d = dir("emit");
    let svg = d.join("frontier.svg");
    let emit = d.join("deploy");
    let json = stdout_ok(&args(&[
        "--format",
        "json",
        "--svg",
        svg.to_str().expect("utf-8"),
        "--emit",
        emit.to_str().expect("utf-8"),
    ]));
    let v: Value = serde_json::from_str(&json).expect("JSON");
    let best = &v["rows"][0];
    let text = std::fs::read_to_string(&svg).expect("svg written");
    let doc = roxmltree::Document::parse(&text).expect("well-formed SVG");
    let words: String = doc
        .descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect();
    assert!(
        words.contains("Little's law") && words.contains("frontier"),
        "{words}"
    );
    let serve = std::fs::read_to_string(emit.join("vllm-serve.sh")).expect("serve line");
    let line = format!(
        "exec vllm serve Qwen/Qwen2.5-0.5B-Instruct --tensor-parallel-size 1 --max-num-seqs {} --max-num-batched-tokens 2048 --gpu-memory-utilization 0.9 --port 8000",
        best["max_num_seqs"]
    );
    assert!(serve.contains(&line), "{serve}");
    let deployment = std::fs::read_to_string(emit.join("gpu/deployment.yaml")).expect("deployment");
    assert!(deployment.contains(&format!("replicas: {}", best["replicas"])));
    assert!(deployment.contains("nvidia.com/gpu: \"1\""));
    let overlay =
        std::fs::read_to_string(emit.join("servesim/kustomization.yaml")).expect("overlay");
    assert!(overlay.contains(&format!("value: {}", best["gpu"].as_str().expect("gpu"))));
    // The pick as a profile: servesim simulates the same replica (what `validate` compares the
    // real card against), with the planned settings.
    let profile = emit.join("profile.toml");
    let shown = stdout_ok(&[
        "profiles",
        "show",
        profile.to_str().expect("utf-8"),
        "--json",
    ]);
    let shown: Value = serde_json::from_str(&shown).expect("profile JSON");
    assert_eq!(
        shown["profile"]["engine"]["max_num_seqs"], best["max_num_seqs"],
        "{shown}"
    );
    let validate = std::fs::read_to_string(emit.join("validate.sh")).expect("validate script");
    #[cfg(unix)]
    for script in ["vllm-serve.sh", "validate.sh"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(emit.join(script))
            .expect("script written")
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "{script} is not executable: {mode:o}");
    }
    assert!(
        validate.contains("servesim validate --real") && validate.contains("profile.toml"),
        "{validate}"
    );
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    for (extra, why) in [
        (vec!["--gpus", "tpu"], "unknown or ambiguous GPU 'tpu'"),
        (vec!["--slo", "itl_p95=1"], "unknown SLO term 'itl_p95'"),
        (vec!["--workload", "poetry"], "unknown --workload 'poetry'"),
        (vec!["--shard", "3/3"], "--shard '3/3'"),
    ] {
        // Refused before any simulation: the flags are checked first.
        let mut a = vec!["plan", "--rate", "1"];
        a.extend_from_slice(&extra);
        let out = servesim(&a);
        assert!(!out.status.success(), "{extra:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{extra:?}: {err}");
    }
    let out = servesim(&["plan", "--gpus", "l4"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("give the peak"));
}

#[test]
fn traces_are_replayed_at_each_rate_and_closed_loop_files_are_refused() {
    let v = one_candidate(&[
        "--trace",
        "fixtures/traces/sharegpt-300-10rps.csv",
        "--slo",
        "ttft_p95=2",
    ]);
    let traffic = &v["inputs"]["traffic"];
    assert_eq!(traffic["name"], "sharegpt-300-10rps.csv");
    assert_eq!(traffic["spec"]["kind"], "trace");
    assert!(
        traffic["mean_input_tokens"].as_f64() > Some(100.0),
        "{traffic}"
    );
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(1), "{v}");
    // The example workload file has a closed-loop class: no rate to scale.
    let out = servesim(&[
        "plan",
        "--workload",
        "fixtures/workloads/chat-and-rag.toml",
        "--rate",
        "1",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is closed-loop"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_inference_perf_config_is_planned_from_its_highest_rate_stage() {
    let v = one_candidate(&[
        "--workload",
        "fixtures/inference-perf/shared-prefix.yaml",
        "--slo",
        "ttft_p95=1",
    ]);
    let traffic = &v["inputs"]["traffic"];
    // Stages at 2 and 4 req/s: the second; 512 shared system tokens + 64 of question.
    assert_eq!(traffic["name"], "shared-prefix.yaml stage 1");
    assert_eq!(traffic["spec"]["kind"], "inference_perf");
    assert_eq!(traffic["mean_input_tokens"], 576.0);
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(1), "{v}");
    for (file, why) in [
        (
            "random-concurrent.yaml",
            "a concurrent load has no arrival rate",
        ),
        (
            "multi-turn-poisson.yaml",
            "multi-turn data waits for each answer",
        ),
    ] {
        let path = format!("fixtures/inference-perf/{file}");
        let out = servesim(&[
            "plan",
            "--workload",
            &path,
            "--rate",
            "1",
            "--slo",
            "ttft_p95=1",
        ]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(why), "{file}");
    }
}

#[test]
fn a_workload_file_holds_each_class_to_its_own_slos() {
    let d = dir("classes");
    let file = d.join("two-classes.toml");
    std::fs::write(
        &file,
        "[[class]]\nname = \"chat\"\narrival = \"poisson\"\nrate = 3.0\nrequests = 30\n\
         input_tokens = 200\noutput_tokens = 100\nslo = { ttft_p95 = 0.5 }\n\n\
         [[class]]\nname = \"rag\"\narrival = \"poisson\"\nrate = 1.0\nrequests = 10\n\
         input_tokens = 2000\noutput_tokens = 100\nslo = { e2e_p95 = 5 }\n",
    )
    .expect("write workload");
    let path = file.to_str().expect("utf-8");
    let mut a: Vec<&str> = SMALL.to_vec();
    a.retain(|x| *x != "l4,a6000");
    let gpus = a.iter().position(|x| *x == "--gpus").expect("--gpus");
    a.insert(gpus + 1, "a6000");
    a.extend_from_slice(&["--workload", path, "--format", "json"]);
    let v: Value = serde_json::from_str(&stdout_ok(&a)).expect("JSON plan");
    assert_eq!(
        v["inputs"]["slo"], "",
        "no terms for the whole: each class has its own"
    );
    assert_eq!(
        v["inputs"]["traffic"]["mean_input_tokens"], 650.0,
        "3:1 mix of 200 and 2000"
    );
    let rows = v["rows"].as_array().expect("rows");
    assert!(!rows.is_empty(), "{v}");
    let verified = &v["verified"]["latencies"]["classes"];
    let classes: Vec<&str> = verified
        .as_array()
        .expect("per-class latencies")
        .iter()
        .filter_map(|c| c["class"].as_str())
        .collect();
    assert_eq!(classes, ["chat", "rag"]);
    assert_eq!(verified[1]["slo"][0][0], "e2e_p95");
}
