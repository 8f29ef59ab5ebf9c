//! End-to-end tests of workload files (`simulate --workload FILE.toml`): the real binary, read as a
//! user would — per-class rows, SLO status, shared prefixes that hit the cache, and errors that name
//! the file and the key.

use std::path::PathBuf;

use crate::support::{servesim, stdout_ok};
use serde_json::Value;

const EXAMPLE: &str = "fixtures/workloads/chat-and-rag.toml";

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&stdout_ok(args)).expect("valid JSON on stdout")
}

/// Write `text` to a workload file of this test's own.
fn file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("servesim-workloads-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write workload");
    path
}

fn simulate(path: &std::path::Path, extra: &[&str]) -> Value {
    let path = path.to_str().expect("utf-8 path");
    let mut args = vec!["simulate", "--format", "json", "--workload", path];
    args.extend_from_slice(extra);
    json(&args)
}

fn class<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["classes"]
        .as_array()
        .expect("classes array")
        .iter()
        .find(|c| c["class"] == name)
        .unwrap_or_else(|| panic!("no class {name} in {v}"))
}

#[test]
fn the_example_reports_every_class_and_its_slo_terms() {
    let v = json(&["simulate", "--format", "json", "--workload", EXAMPLE]);
    let classes = v["classes"].as_array().expect("classes");
    let names: Vec<&str> = classes.iter().filter_map(|c| c["class"].as_str()).collect();
    assert_eq!(names, ["chat", "rag", "summarise"]);
    let total: u64 = classes.iter().filter_map(|c| c["requests"].as_u64()).sum();
    assert_eq!(
        Some(total),
        v["requests"].as_u64(),
        "classes add up to the run"
    );
    // A closed-loop class sends exactly its requests; chat sends whole sessions of 5 turns.
    assert_eq!(class(&v, "summarise")["requests"], 20);
    assert_eq!(
        class(&v, "chat")["requests"].as_u64().map(|n| n % 5),
        Some(0)
    );
    for c in classes {
        let terms = c["slo"].as_array().expect("slo terms");
        assert!(!terms.is_empty());
        for t in terms {
            let (target, measured) = (t["target"].as_f64(), t["measured"].as_f64());
            let (Some(target), Some(measured)) = (target, measured) else {
                panic!("term without numbers: {t}");
            };
            assert_eq!(t["met"], measured <= target, "{t}");
            // The measured value is the class's own statistic.
            let key = t["term"].as_str().expect("term");
            let (metric, stat) = key.split_once('_').expect("metric_stat");
            let stat = if stat == "p50" { "median" } else { stat };
            assert_eq!(c[metric][stat].as_f64(), Some(measured), "{key}");
        }
        let all = terms.iter().all(|t| t["met"] == true);
        assert_eq!(c["slo_met"], all);
    }
    // The table has the same rows.
    let table = stdout_ok(&["simulate", "--workload", EXAMPLE]);
    for want in ["class", "chat", "rag", "summarise", "ttft_p95", "target"] {
        assert!(table.contains(want), "{want} missing:\n{table}");
    }
}

const TWO_CLASSES: &str = r#"
[[class]]
name = "strict"
arrival = "constant"
rate = 2.0
requests = 30
input_tokens = 300
output_tokens = 40
slo = { ttft_p50 = 0.000001 }

[[class]]
name = "relaxed"
arrival = "constant"
rate = 2.0
requests = 30
input_tokens = 300
output_tokens = 40
slo = { ttft_p50 = 100, e2e_p99 = 100 }
"#;

#[test]
fn each_class_is_judged_against_its_own_slo() {
    let v = simulate(&file("two-classes", TWO_CLASSES), &[]);
    let (strict, relaxed) = (class(&v, "strict"), class(&v, "relaxed"));
    assert_eq!(strict["requests"], 30);
    assert_eq!(relaxed["requests"], 30);
    assert_eq!(strict["slo_met"], false);
    assert_eq!(strict["slo"][0]["met"], false);
    assert_eq!(relaxed["slo_met"], true);
    assert_eq!(relaxed["slo"].as_array().map(Vec::len), Some(2));
    // Answers run to their drawn length (ignore_eos by default): 40 tokens each.
    assert!(relaxed["output_tok_s"].as_f64().is_some_and(|t| t > 0.0));
}

/// One open-loop class of `input` new tokens per request, plus `extra` keys.
fn one_class(input: u32, extra: &str) -> String {
    format!(
        r#"
[[class]]
name = "rag"
arrival = "poisson"
rate = 4.0
requests = 80
input_tokens = {input}
output_tokens = 20
{extra}
"#
    )
}

#[test]
fn a_shared_prefix_hits_the_prefix_cache_and_distinct_prompts_do_not() {
    let shared = simulate(
        &file(
            "shared",
            &one_class(200, r#"shared_prefix = { group = "docs", tokens = 1600 }"#),
        ),
        &[],
    );
    // The same prompt lengths, nothing shared.
    let alone = simulate(&file("alone", &one_class(1800, "")), &[]);
    let rate = |v: &Value| v["prefix_cache_hit_rate"].as_f64().expect("hit rate");
    // 1600 of ~1800 prompt tokens are shared: after the first request nearly all of them hit.
    assert!(rate(&shared) > 0.7, "shared: {}", rate(&shared));
    assert!(rate(&alone) < 0.05, "alone: {}", rate(&alone));
    assert!(
        class(&shared, "rag")["ttft"]["median"].as_f64()
            < class(&alone, "rag")["ttft"]["median"].as_f64(),
        "cached prefixes shorten prefill"
    );
}

#[test]
fn multi_turn_sessions_reuse_their_history_and_prefix_affinity_keeps_it() {
    let path = file(
        "sessions",
        r#"
[[class]]
name = "chat"
arrival = "poisson"
rate = 6.0
requests = 120
input_tokens = 150
output_tokens = 60
multi_turn = { turns = 6, think_s = 1.0 }
"#,
    );
    let rate = |v: &Value| v["prefix_cache_hit_rate"].as_f64().expect("hit rate");
    let one = simulate(&path, &[]);
    assert_eq!(class(&one, "chat")["requests"], 120);
    // No shared system prompt: every hit comes from a session's own earlier turns.
    assert!(rate(&one) > 0.4, "one server: {}", rate(&one));
    let rr = simulate(&path, &["--replicas", "4", "--router", "round-robin"]);
    let pa = simulate(&path, &["--replicas", "4", "--router", "prefix-affinity"]);
    assert!(
        rate(&pa) > rate(&rr) + 0.1,
        "prefix-affinity {} vs round-robin {}",
        rate(&pa),
        rate(&rr)
    );
    // A fleet keeps the per-class rows beside its replica rows.
    assert_eq!(class(&pa, "chat")["requests"], 120);
    assert!(pa["replicas"].as_array().is_some_and(|r| r.len() == 4));
}

#[test]
fn a_bad_file_fails_naming_the_file_and_the_key() {
    let path = file(
        "typo",
        &one_class(200, "slo = { ttft_p95 = 1 }\nthink_time = 2"),
    );
    let out = servesim(&["simulate", "--workload", path.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("typo.toml") && err.contains("think_time"),
        "{err}"
    );
    let path = file(
        "bad-dist",
        &one_class(200, "").replace("= 200", "= \"zipf:s=1\""),
    );
    let out = servesim(&["simulate", "--workload", path.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad-dist.toml") && err.contains("zipf"),
        "{err}"
    );
}

/// `bench --workload FILE.toml` against `serve` sends the plan `simulate` runs (the same requests
/// per class, drawn with the same seed) and reports the same classes.
#[test]
fn bench_sends_a_workload_file_to_a_real_server_and_reports_per_class() {
    let path = file(
        "bench",
        r#"
[[class]]
name = "chat"
arrival = "poisson"
rate = 8.0
requests = 12
input_tokens = 60
output_tokens = 12
shared_prefix = { group = "sys", tokens = 300 }
multi_turn = { turns = 3, think_s = 0.1 }
slo = { ttft_p95 = 30 }

[[class]]
name = "batch"
arrival = "closed:users=2"
requests = 5
input_tokens = 200
output_tokens = 8
"#,
    );
    let path = path.to_str().expect("utf-8 path");
    let sim = simulate(std::path::Path::new(path), &[]);
    let server = crate::support::ServerProcess::start(&["--time-scale", "0.1"]);
    let v: Value = serde_json::from_str(
        &crate::support::BenchRun::url(&server.base)
            .json()
            .quiet()
            .extra(&["--workload", path])
            .run_ok(),
    )
    .expect("bench JSON");
    for name in ["chat", "batch"] {
        assert_eq!(
            class(&v, name)["requests"],
            class(&sim, name)["requests"],
            "{name}"
        );
        assert_eq!(class(&v, name)["errors"], 0, "{name}: {v}");
    }
    assert_eq!(class(&v, "batch")["requests"], 5);
    assert_eq!(class(&v, "chat")["slo_met"], true, "{v}");
    // The shared system prompt and each session's history hit the server's cache too.
    let rate = v["prefix_cache_hit_rate"].as_f64();
    assert!(rate.is_some_and(|r| r > 0.3), "hit rate {rate:?}: {v}");
}
