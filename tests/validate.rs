//! End-to-end tests of `servesim validate` and `servesim compare` on recordings (no GPU, no server).

mod support;

use serde_json::Value;
use support::{servesim, stdout_ok};

fn fixture(path: &str) -> String {
    format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))
}

fn out_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("servesim-validate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Every SVG in `dir` parses as XML with an `<svg>` root; returns how many there were.
fn check_svgs(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("out dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) == Some("svg") {
            let text = std::fs::read_to_string(&path).expect("svg text");
            let doc = roxmltree::Document::parse(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                doc.root_element().tag_name().name(),
                "svg",
                "{}",
                path.display()
            );
            n += 1;
        }
    }
    n
}

#[test]
fn validating_the_recorded_a6000_baseline() {
    let dir = out_dir("a6000");
    let out = servesim(&[
        "validate",
        "--real-from",
        &fixture("recordings/a6000-qwen2.5-7b-baseline.json"),
        "--out",
        dir.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("NVML not observed"),
        "says once that there is no telemetry: {stderr}"
    );
    // The console uses the report's plain words for verdicts, never the code's names.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "claim 1: substantiated on the real run, reproduced on the simulator -> real-only"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "claim 6: not observed on the real run, not applicable on the simulator -> neither covers"
        ),
        "{stdout}"
    );
    for code_name in [
        "NotObserved",
        "NotApplicable",
        "Substantiated",
        "Reproduced",
    ] {
        assert!(!stdout.contains(code_name), "{code_name} in:\n{stdout}");
    }

    let report = std::fs::read_to_string(dir.join("report.md")).expect("report.md");
    assert!(report.contains("| GPU (NVML) | not observed"), "{report}");
    // The side-by-side table carries the real and simulated baseline rows.
    assert!(report.contains("| 1 | 42.3 | 42.2 |"), "{report}");
    assert!(report.contains("| 8 | 240.4 |"), "{report}");

    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("report.json")).expect("report.json"),
    )
    .expect("JSON");
    let claims = json["ledger"]["claims"].as_array().expect("claims");
    assert_eq!(claims.len(), 6);
    assert_eq!(claims[0]["real"], "substantiated");
    assert_eq!(claims[0]["sim"], "reproduced");
    assert_eq!(claims[0]["class"], "real_only");
    for c in &claims[1..] {
        assert_eq!(c["real"], "not_observed", "{c}");
        assert_eq!(c["class"], "neither_covers", "{c}");
    }
    // The recording is the calibration data: tok/s within 10 %, TPOT within 1 %.
    let errors = json["comparison"]["errors"].as_array().expect("errors");
    let max = |metric: &str| {
        errors
            .iter()
            .find(|e| e["metric"] == metric)
            .and_then(|e| e["max_abs_pct"].as_f64())
            .expect("figure")
    };
    assert!(max("tok/s") <= 10.0 && max("TPOT") <= 1.0, "{errors:?}");

    let limits =
        std::fs::read_to_string(dir.join("fake-vs-real-limitations.md")).expect("limitations");
    assert!(limits.contains("## Only the real run can substantiate"));
    assert!(limits.contains("multi-replica routing"));
    assert!(limits.contains("the saturation drill: not run against the real server"));
    assert!(limits.contains("claim 6 is not observed"));
    assert_eq!(
        check_svgs(&dir),
        2,
        "throughput and TTFT p95 vs concurrency"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn validate_names_both_ways_to_give_the_real_run() {
    let out = servesim(&["validate"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--real <URL>") && err.contains("--real-from <PATH>"),
        "{err}"
    );
    let out = servesim(&[
        "validate",
        "--real",
        "http://127.0.0.1:1",
        "--real-from",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2), "not both");
}

/// `--real-from` takes a `bench --out` directory as it is (its summary.json).
#[test]
fn validate_reads_a_bench_output_directory() {
    let run = out_dir("bench-run");
    let dir = out_dir("from-dir");
    let bench = servesim(&[
        "bench",
        "--target",
        "sim",
        "--drill",
        "baseline",
        "--quiet",
        "--out",
        run.to_str().expect("utf-8"),
    ]);
    assert!(bench.status.success());
    let out = servesim(&[
        "validate",
        "--real-from",
        run.to_str().expect("utf-8"),
        "--out",
        dir.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The simulator against its own bench run: no difference at all.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("median   0.0 %, max   0.0 % over 4 rows"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::remove_dir_all(&run).ok();
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn compare_two_saved_runs() {
    let dir = out_dir("compare");
    std::fs::create_dir_all(&dir).expect("dir");
    let a6000 = stdout_ok(&[
        "simulate",
        "--drill",
        "baseline,prefill",
        "--format",
        "json",
    ]);
    let l40s = stdout_ok(&[
        "simulate",
        "--drill",
        "baseline,prefill",
        "--format",
        "json",
        "--profile",
        "l40s-qwen2.5-7b",
    ]);
    let (pa, pb) = (dir.join("a.json"), dir.join("b.json"));
    std::fs::write(&pa, a6000).expect("write");
    std::fs::write(&pb, l40s).expect("write");
    let md = stdout_ok(&[
        "compare",
        pa.to_str().expect("utf-8"),
        pb.to_str().expect("utf-8"),
    ]);
    assert!(
        md.starts_with("# Before/after comparison: A (before) and B (after)\n"),
        "{md}"
    );
    assert!(
        md.contains("A = a6000-qwen2.5-7b, B = l40s-qwen2.5-7b"),
        "{md}"
    );
    assert!(
        md.contains("### Summary of differences") && !md.contains("Error summary"),
        "a before/after comparison is not an error: {md}"
    );
    assert!(
        md.contains("### baseline (conc)") && md.contains("### prefill (in_tok)"),
        "{md}"
    );
    // The L40S streams weights 12.5 % faster: its TPOT is lower on every row.
    assert!(md.contains("| TPOT | tpot_p50 | 8 |"), "{md}");
    // Comparing a run with itself gives zero error.
    let same = stdout_ok(&[
        "compare",
        pa.to_str().expect("utf-8"),
        pa.to_str().expect("utf-8"),
    ]);
    assert!(
        same.contains("| tok/s | tok_s | 8 | 0.0 % | 0.0 % |"),
        "{same}"
    );
    let bad = servesim(&["compare", pa.to_str().expect("utf-8"), "/nonexistent.json"]);
    assert_eq!(bad.status.code(), Some(1));
    // The path and the OS's reason, each said once.
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("cannot read /nonexistent.json: "), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The fake server on one profile (H100) validated as if it were the real card, against the simulator
/// on another (the A6000): the report must show the differences and a disagreeing claim.
#[test]
fn validating_the_fake_server_as_if_it_were_real() {
    let server = support::ServerProcess::start(&["--profile", "h100-qwen2.5-7b"]);
    let dir = out_dir("fake");
    let out = servesim(&[
        "validate",
        "--real",
        &server.base,
        "--drill",
        "baseline,decode",
        "--concurrency",
        "1,4",
        "--requests-per-level",
        "4",
        "--max-tokens",
        "32,64",
        "--no-nvml",
        "--out",
        dir.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("GPU telemetry not observed: --no-nvml"),
        "{stderr}"
    );
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("report.json")).expect("report.json"),
    )
    .expect("JSON");
    // The environment comes from the server itself.
    assert_eq!(
        json["environment"]["server_models"]["data"][0]["id"],
        "local"
    );
    // Real rows come from real requests: every one succeeded, and the H100 is ~4x faster per token.
    let pairs = json["comparison"]["drills"][0]["rows"]
        .as_array()
        .expect("baseline rows");
    assert_eq!(pairs.len(), 2);
    for p in pairs {
        assert_eq!(p["a"]["err"], 0);
        let (real, sim) = (
            p["a"]["tpot_p50"].as_f64().expect("tpot"),
            p["b"]["tpot_p50"].as_f64().expect("tpot"),
        );
        assert!(
            sim / real > 3.0 && sim / real < 5.0,
            "A6000 TPOT {sim} vs H100 {real}"
        );
    }
    let claims = json["ledger"]["claims"].as_array().expect("claims");
    assert_eq!(claims[0]["real"], "substantiated");
    assert_eq!(claims[0]["class"], "sim_disagrees", "{}", claims[0]);
    assert_eq!(claims[4]["real"], "substantiated", "{}", claims[4]);
    assert_eq!(claims[4]["class"], "sim_disagrees", "{}", claims[4]);
    assert_eq!(claims[5]["real"], "not_observed");
    let report = std::fs::read_to_string(dir.join("report.md")).expect("report.md");
    assert!(
        report.contains("| server model (/v1/models) | local, max_model_len 32768 |"),
        "{report}"
    );
    assert!(report.contains("sim disagrees"));
    assert_eq!(check_svgs(&dir), 3, "baseline tok/s and TTFT, decode e2e");
    std::fs::remove_dir_all(&dir).ok();
}
