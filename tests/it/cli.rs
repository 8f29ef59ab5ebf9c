//! End-to-end tests of the CLI: profiles, simulate (drills and trace replay), demo. They run the real
//! binary and read its output as a user would.

use crate::support::{ROW_STAT_COLUMNS, servesim, stdout_ok};
use serde_json::Value;

fn fixture(path: &str) -> String {
    let full = format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {full}: {e}"))
}

/// Path of a Hugging Face config.json fixture.
fn hf_config(name: &str) -> String {
    format!("{}/fixtures/hf-config/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&stdout_ok(args)).expect("valid JSON on stdout")
}

#[test]
fn profiles_lists_the_catalogue_and_shows_derived_figures() {
    let list = stdout_ok(&["profiles"]);
    for name in [
        "a6000-qwen2.5-7b",
        "rtx4090-llama3.1-8b",
        "h100-qwen2.5-7b",
        "l4-qwen2.5-7b",
        "a100-80gb-qwen2.5-7b",
        "h200-qwen2.5-7b",
        "l40s-mistral-7b",
        "a6000-qwen2.5-0.5b",
    ] {
        assert!(list.contains(name), "{name} missing from:\n{list}");
    }
    let show = stdout_ok(&["profiles", "show", "a6000-qwen2.5-7b"]);
    assert!(show.contains("KV bytes per token       57,344"), "{show}");
    assert!(show.contains("single-sequence decode"), "{show}");
    let v = json(&["profiles", "show", "a6000-qwen2.5-7b", "--json"]);
    let d = &v["derived"];
    assert_eq!(d["kv_bytes_per_token"], 57_344);
    assert_eq!(
        d["kv_tokens"].as_u64(),
        d["kv_blocks"].as_u64().map(|b| b * 16)
    );
    assert_eq!(v["profile"]["engine"]["max_num_seqs"], 256);
}

#[test]
fn a_profile_file_can_override_a_catalogue_entry() {
    let dir = std::env::temp_dir().join(format!("servesim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("slow-a6000.toml");
    std::fs::write(
        &path,
        "name = \"slow-a6000\"\ngpu = { base = \"rtx-a6000\", memory_bandwidth_bps = 384e9 }\nmodel = \"qwen2.5-7b-instruct\"\n[engine]\nmax_num_seqs = 8\n",
    )
    .expect("write profile");
    let p = path.to_str().expect("utf-8 path");
    let v = json(&["profiles", "show", p, "--json"]);
    assert_eq!(v["profile"]["engine"]["max_num_seqs"], 8);
    let fast = json(&["profiles", "show", "a6000-qwen2.5-7b", "--json"]);
    let ratio = v["derived"]["single_decode_step_s"].as_f64().expect("step")
        / fast["derived"]["single_decode_step_s"]
            .as_f64()
            .expect("step");
    assert!(
        ratio > 1.8 && ratio < 2.0,
        "half the bandwidth, nearly twice the step: {ratio}"
    );
    let out = servesim(&[
        "simulate",
        "--profile",
        p,
        "--drill",
        "baseline",
        "--format",
        "json",
    ]);
    assert!(out.status.success());
    // A 7B model does not fit in 10 % of a 48 GB card: vLLM's error, not a panic.
    let tiny = dir.join("tiny.toml");
    std::fs::write(&tiny, "name = \"tiny\"\ngpu = \"rtx-a6000\"\nmodel = \"qwen2.5-7b-instruct\"\n[engine]\ngpu_memory_utilization = 0.1\n")
        .expect("write profile");
    let out = servesim(&["simulate", "--profile", tiny.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No available memory for the cache blocks")
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_input_is_a_clear_error() {
    for (args, needle) in [
        (
            vec!["simulate", "--profile", "no-such-profile"],
            "unknown profile",
        ),
        (vec!["simulate", "--drill", "warp"], "unknown drill"),
        (
            vec!["simulate", "--profile", "/nonexistent/p.toml"],
            "cannot read profile",
        ),
        (vec!["simulate", "--concurrency", "0"], "--concurrency"),
        (
            vec!["simulate", "--trace", "/nonexistent/trace.csv"],
            "reading trace",
        ),
        (
            vec!["profiles", "show", "rtx-a6000+no-model"],
            "unknown model",
        ),
        // An unknown part of GPU+MODEL names what would have worked.
        (
            vec!["simulate", "--profile", "h200+nosuch"],
            "valid models: qwen2.5-7b-instruct, qwen2.5-0.5b-instruct",
        ),
        (
            vec!["simulate", "--profile", "nosuch+qwen2.5-7b-instruct"],
            "valid GPUs: rtx-a6000, a100-80gb, h100-sxm, h200",
        ),
    ] {
        let out = servesim(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // A file that cannot be read: its path and the OS's reason, each said once.
    let out = servesim(&["simulate", "--profile", "/nonexistent/p.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read profile file /nonexistent/p.toml: No such file or directory"),
        "{err}"
    );
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
    // GPU+MODEL pairs resolve from the catalogue.
    let out = stdout_ok(&["profiles", "show", "l4+qwen2.5-7b-instruct"]);
    assert!(out.contains("NVIDIA L4"), "{out}");
}

/// The acceptance criterion of the default profile: the baseline drill within 10 % of the real
/// A6000's tok/s and tpot_p50 at every level.
#[test]
fn baseline_matches_the_real_a6000_within_ten_percent() {
    let reference: Value =
        serde_json::from_str(&fixture("reference-a6000-qwen2.5-7b.json")).expect("fixture");
    let sim = json(&["simulate", "--drill", "baseline", "--format", "json"]);
    assert_eq!(sim["drill"], "baseline");
    assert_eq!(sim["profile"], "a6000-qwen2.5-7b");
    let real_rows = reference["baseline"]["rows"].as_array().expect("rows");
    let sim_rows = sim["rows"].as_array().expect("rows");
    assert_eq!(real_rows.len(), sim_rows.len());
    for (real, sim) in real_rows.iter().zip(sim_rows) {
        assert_eq!(real["axis"], sim["axis"]);
        for col in ["tok_s", "tpot_p50"] {
            let (r, s) = (
                real[col].as_f64().expect("number"),
                sim[col].as_f64().expect("number"),
            );
            let err = (s - r).abs() / r;
            assert!(
                err <= 0.10,
                "conc {}: {col} sim {s} vs real {r} ({:.1} %)",
                real["axis"],
                err * 100.0
            );
        }
        assert_eq!(sim["err"], 0);
        assert_eq!(sim["goodput_pct"], 100.0);
    }
    // The modelled warm-up makes the conc-1 row's tail like the real one.
    let p95 = sim_rows[0]["ttft_p95"].as_f64().expect("ttft_p95");
    assert!((p95 - 1.121).abs() < 0.1, "conc-1 ttft_p95 {p95}");
}

#[test]
fn json_output_has_the_exact_row_schema_and_is_deterministic() {
    let args = [
        "simulate", "--drill", "all", "--format", "json", "--seed", "7",
    ];
    let first = stdout_ok(&args);
    assert_eq!(first, stdout_ok(&args), "same seed, same bytes");
    let v: Value = serde_json::from_str(&first).expect("JSON");
    let drills = v.as_array().expect("an array for --drill all");
    let names: Vec<&str> = drills.iter().filter_map(|d| d["drill"].as_str()).collect();
    assert_eq!(
        names,
        [
            "baseline",
            "saturation",
            "overload",
            "prefill",
            "decode",
            "batching"
        ]
    );
    let keys: Vec<&str> = ["axis", "reqs", "err", "gen"]
        .into_iter()
        .chain(ROW_STAT_COLUMNS)
        .collect();
    for d in drills {
        let obj = d.as_object().expect("object");
        let want: &[&str] = if d["drill"] == "batching" {
            &["drill", "profile", "rows", "ratio"]
        } else {
            &["drill", "profile", "rows"]
        };
        let mut got: Vec<&str> = obj.keys().map(String::as_str).collect();
        got.sort_unstable();
        let mut want = want.to_vec();
        want.sort_unstable();
        assert_eq!(got, want);
        for row in d["rows"].as_array().expect("rows") {
            let mut got: Vec<&str> = row
                .as_object()
                .expect("row")
                .keys()
                .map(String::as_str)
                .collect();
            got.sort_unstable();
            let mut want = keys.clone();
            want.sort_unstable();
            assert_eq!(got, want);
        }
    }
    let batching = &drills[5];
    assert_eq!(batching["rows"][0]["axis"], "A-alone");
    assert_eq!(batching["rows"][1]["axis"], "B-loaded");
    assert_ne!(
        first,
        stdout_ok(&[
            "simulate", "--drill", "all", "--format", "json", "--seed", "8"
        ])
    );
}

/// Each drill runs on a server of its own, seeded afresh and started as `--start` says: its rows are
/// the same alone, inside `--drill all`, or after other drills.
#[test]
fn a_drill_gives_the_same_rows_alone_and_in_a_suite() {
    let suite = json(&[
        "simulate", "--drill", "all", "--format", "json", "--seed", "3",
    ]);
    let suite = suite.as_array().expect("an array for --drill all");
    for d in suite {
        let name = d["drill"].as_str().expect("drill name");
        let alone = json(&[
            "simulate", "--drill", name, "--format", "json", "--seed", "3",
        ]);
        assert_eq!(&alone, d, "{name} alone vs in the suite");
    }
    // Order does not matter either, and the baseline keeps its warm-up wherever it runs (auto).
    let reversed = json(&[
        "simulate",
        "--drill",
        "batching,decode,prefill,overload,saturation,baseline",
        "--format",
        "json",
        "--seed",
        "3",
    ]);
    let mut reversed = reversed.as_array().expect("array").clone();
    reversed.reverse();
    assert_eq!(&reversed, suite);
    let p95 = suite[0]["rows"][0]["ttft_p95"].as_f64().expect("ttft_p95");
    assert!(p95 > 1.0, "the cold baseline's conc-1 tail: {p95}");
    // --start cold gives every drill the warm-up; warm gives none, the baseline included.
    let first_ttft = |start: &str, drill: &str| {
        json(&[
            "simulate", "--drill", drill, "--format", "json", "--start", start,
        ])["rows"][0]["ttft_p95"]
            .as_f64()
            .expect("ttft_p95")
    };
    assert!(first_ttft("cold", "decode") > first_ttft("warm", "decode") + 0.5);
    assert!(first_ttft("warm", "baseline") < 0.2);
}

#[test]
fn table_output_matches_the_golden_file() {
    let got = stdout_ok(&["simulate", "--drill", "baseline,decode"]);
    let path = format!(
        "{}/fixtures/golden/simulate-baseline-decode.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).expect("write golden");
    }
    assert_eq!(
        got,
        fixture("golden/simulate-baseline-decode.txt"),
        "run with UPDATE_GOLDEN=1 to accept a change"
    );
    let csv = stdout_ok(&["simulate", "--drill", "baseline", "--format", "csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5);
    assert!(lines[0].starts_with("drill,profile,axis,reqs,err,gen,ttft_p50"));
    assert!(lines[1].starts_with("baseline,a6000-qwen2.5-7b,1,12,0,"));
}

#[test]
fn continuous_batching_protects_ttft_and_serial_does_not() {
    let ratio = |policy: &str| {
        let v = json(&[
            "simulate", "--drill", "batching", "--policy", policy, "--format", "json",
        ]);
        v["ratio"].as_f64().expect("ratio")
    };
    let continuous = ratio("continuous");
    let serial = ratio("serial");
    assert!(continuous < 2.0, "continuous batching ratio {continuous}");
    assert!(serial > 5.0, "serial ratio {serial}");
}

#[test]
fn sweeps_find_a_knee_and_an_operating_point() {
    // Every request of the saturation drill sends the same short prompt: with prefix caching on
    // (the default) their prefills are mostly read from the cache and the operating point moves up
    // to conc 256; the sweep's logic is pinned on the engine that computes every prompt.
    let cached = stdout_ok(&["simulate", "--drill", "saturation"]);
    assert!(
        cached.contains("operating point (goodput >= 99 %): conc 256"),
        "{cached}"
    );
    let table = stdout_ok(&[
        "simulate",
        "--drill",
        "saturation",
        "--no-enable-prefix-caching",
    ]);
    assert!(
        table.contains("knee (throughput gain < 5 %): conc 256"),
        "{table}"
    );
    assert!(
        table.contains("operating point (goodput >= 99 %): conc 128"),
        "{table}"
    );
}

#[test]
fn trace_replay_reports_the_vllm_benchmark_summary() {
    let trace = format!(
        "{}/fixtures/traces/sharegpt-300-10rps.csv",
        env!("CARGO_MANIFEST_DIR")
    );
    let v = json(&[
        "simulate",
        "--trace",
        &trace,
        "--profile",
        "rtx4090-llama3.1-8b",
        "--format",
        "json",
    ]);
    assert_eq!(v["trace"], "sharegpt-300-10rps.csv");
    assert_eq!(v["profile"], "rtx4090-llama3.1-8b");
    assert_eq!(v["requests"], 300);
    for metric in ["ttft", "tpot", "e2e"] {
        let s = &v[metric];
        let vals: Vec<f64> = ["median", "p90", "p95", "p99"]
            .iter()
            .map(|k| s[k].as_f64().expect("number"))
            .collect();
        assert!(
            vals.windows(2).all(|w| w[0] <= w[1]),
            "{metric}: percentiles ordered {vals:?}"
        );
        assert!(s["mean"].as_f64().expect("mean") > 0.0);
    }
    let tok_s = v["output_tok_s"].as_f64().expect("throughput");
    // 300 requests × 653 tokens on average cannot be produced faster than the weights stream.
    assert!(tok_s > 100.0 && tok_s < 20_000.0, "{tok_s}");
}

#[test]
fn mooncake_trace_replay_hits_the_prefix_cache() {
    let trace = format!(
        "{}/fixtures/traces/mooncake-sample.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let run = |caching: &str| json(&["simulate", "--trace", &trace, caching, "--format", "json"]);
    let on = run("--enable-prefix-caching");
    let off = run("--no-enable-prefix-caching");
    for v in [&on, &off] {
        assert_eq!(v["trace"], "mooncake-sample.jsonl");
        assert_eq!(v["requests"], 116);
        assert!(v.get("errors").is_none(), "{v}");
    }
    assert_eq!(on["prefix_caching"], true);
    assert_eq!(off["prefix_caching"], false);
    let hit = on["prefix_cache_hit_rate"].as_f64().expect("hit rate");
    assert!(
        hit > 0.3 && hit < 1.0,
        "shared system prompts and histories hit: {hit}"
    );
    assert_eq!(off["prefix_cache_hit_rate"].as_f64(), Some(0.0));
    assert_eq!(on["prompt_tokens"], off["prompt_tokens"]);
    let ttft = |v: &Value| v["ttft"]["mean"].as_f64().expect("ttft mean");
    assert!(
        ttft(&on) < ttft(&off),
        "caching lowers TTFT: {} vs {}",
        ttft(&on),
        ttft(&off)
    );
    let table = stdout_ok(&["simulate", "--trace", &trace]);
    assert!(table.contains("prefix caching on"), "{table}");
    assert!(table.contains("prefix cache: "), "{table}");
}

#[test]
fn demo_tells_the_whole_story() {
    let out = stdout_ok(&["demo"]);
    for needle in [
        "# drill baseline",
        "# drill batching",
        "knee",
        "operating point",
        "policy serial",
        "ratio B/A",
    ] {
        assert!(
            out.contains(needle),
            "{needle} missing from demo output:\n{out}"
        );
    }
    // The baseline sweep never flattens: said in words, not as a knee at "conc not reached".
    assert!(!out.contains("not reached"), "{out}");
    assert!(
        out.contains(
            "- baseline: throughput still growing at the highest concurrency tried, conc 8 (no knee reached)"
        ),
        "{out}"
    );
    // It ends by naming what to run next, with flags those commands accept.
    let tail: Vec<&str> = out.lines().rev().take(3).collect();
    assert!(tail[2].trim_start().starts_with("servesim serve "), "{out}");
    assert!(
        tail[1].trim_start().starts_with(
            "servesim bench --url http://127.0.0.1:8000 --drill baseline --out bench-run "
        ),
        "{out}"
    );
    assert!(
        tail[0]
            .trim_start()
            .starts_with("servesim validate --real-from bench-run "),
        "{out}"
    );
    let other = stdout_ok(&["demo", "--profile", "h100-qwen2.5-7b"]);
    assert!(
        other.contains("servesim serve --profile h100-qwen2.5-7b ")
            && other.contains("servesim validate --real-from bench-run --profile h100-qwen2.5-7b "),
        "the suggestions keep the profile:\n{other}"
    );
}

/// The commands the demo suggests parse with exactly the flags it gives them.
#[test]
fn the_demos_suggestions_are_valid_command_lines() {
    for args in [
        vec!["serve", "--help"],
        vec!["serve", "--profile", "h100-qwen2.5-7b", "--help"],
        vec![
            "bench",
            "--url",
            "http://127.0.0.1:8000",
            "--drill",
            "baseline",
            "--out",
            "bench-run",
            "--help",
        ],
        vec!["validate", "--real-from", "bench-run", "--help"],
    ] {
        stdout_ok(&args);
    }
}

#[test]
fn telemetry_summary_of_the_h200_recording_matches_the_golden_file() {
    // A real NVML recording (H200, 75 s at 10 Hz during the silicon probe), summarised by the CLI.
    let rec = format!(
        "{}/fixtures/telemetry/h200-probe-nvml.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let got = stdout_ok(&["telemetry", "summary", &rec]);
    let path = format!(
        "{}/fixtures/golden/telemetry-summary-h200.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).expect("write golden");
    }
    assert_eq!(
        got,
        fixture("golden/telemetry-summary-h200.txt"),
        "run with UPDATE_GOLDEN=1 to accept a change"
    );
    let v = json(&["telemetry", "summary", &rec, "--json"]);
    assert_eq!(v["samples"], 750);
    assert_eq!(v["peak_mem_used_bytes"], 87_858_937_856u64);
    assert_eq!(v["all"]["power_w"]["max"], 698.404);
    assert_eq!(v["all"]["sm_clock_mhz"]["max"], 1980.0);
    assert_eq!(
        v["throttle"][1],
        serde_json::json!(["software power cap", 197])
    );
}

#[test]
fn cost_prices_an_iteration_term_by_term() {
    // One of the H200 table's rows: 512 sequences decoding over 128 cached tokens took 16.41 ms.
    let v = json(&[
        "cost",
        "--profile",
        "h200-qwen2.5-7b",
        "--decode",
        "512x129",
        "--format",
        "json",
    ]);
    let gpu = v["gpu_s"].as_f64().expect("gpu_s");
    assert!((gpu / 0.016407 - 1.0).abs() < 0.10, "{v}");
    let parts = v["parts"].as_object().expect("parts");
    let sum: f64 = [
        "weights_s",
        "gemm_s",
        "attention_s",
        "activations_s",
        "layer_overhead_s",
        "logits_s",
        "sampler_s",
        "allreduce_s",
    ]
    .iter()
    .map(|k| parts[*k].as_f64().expect("part"))
    .sum();
    assert!((sum - gpu).abs() < 1e-9, "{v}");
    assert_eq!(parts["allreduce_s"].as_f64(), Some(0.0), "one GPU: {v}");
    assert!(v["total_s"].as_f64() >= Some(gpu) && v["host_s"].as_f64() > Some(0.0));
    // A prefill chunk on top of cached context costs more than the same chunk alone.
    let alone = json(&["cost", "--prefill", "512", "--format", "json"]);
    let cached = json(&["cost", "--prefill", "512+4096", "--format", "json"]);
    assert!(cached["gpu_s"].as_f64() > alone["gpu_s"].as_f64());
    let out = servesim(&["cost", "--decode", "8"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected BxC"));
}

#[test]
fn tensor_parallel_quantised_and_hf_config_models_cost_and_refuse_like_vllm() {
    let step = |extra: &[&str]| {
        let mut args = vec!["cost", "--decode", "1x128", "--format", "json"];
        args.extend_from_slice(extra);
        json(&args)
    };
    // The four-GPU profile: two all-reduces per layer, and a faster step than on two GPUs.
    let four = step(&["--profile", "h200x4-llama3.1-70b"]);
    let two = step(&[
        "--profile",
        "h200x4-llama3.1-70b",
        "--tensor-parallel-size",
        "2",
    ]);
    let ar = four["parts"]["allreduce_s"].as_f64().expect("allreduce_s");
    assert!(ar > 0.0, "{four}");
    assert!(
        four["total_s"].as_f64() < two["total_s"].as_f64(),
        "{four} {two}"
    );
    // FP8 weights read half the bytes per step; an fp8 KV cache is accepted.
    let fp8 = step(&[
        "--profile",
        "h200x4-llama3.1-70b",
        "--quantization",
        "fp8",
        "--kv-cache-dtype",
        "fp8",
    ]);
    assert!(fp8["parts"]["weights_s"].as_f64() < four["parts"]["weights_s"].as_f64());
    // The env twin of the flag.
    let out = std::process::Command::new(crate::support::servesim_bin())
        .args([
            "cost",
            "--profile",
            "h100x4-llama3.1-70b",
            "--decode",
            "1x128",
        ])
        .env("SERVESIM_TENSOR_PARALLEL_SIZE", "3")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "Total number of attention heads (64) must be divisible by tensor parallel size (3)."
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A model from a Hugging Face config on the profile's GPUs.
    let moe = step(&[
        "--profile",
        "h100x2-mixtral-8x7b",
        "--hf-config",
        &hf_config("qwen3-30b-a3b.json"),
    ]);
    assert!(moe["parts"]["allreduce_s"].as_f64() > Some(0.0), "{moe}");
    let out = servesim(&["profiles", "show", "h100x4-llama3.1-70b"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "per GPU",
        "all-reduce per layer",
        "tensor parallel 4 over NVLink 4",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let out = servesim(&[
        "cost",
        "--decode",
        "1x1",
        "--hf-config",
        &hf_config("gpt2.json"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("it also lacks hidden_size"));
}

#[test]
fn calibrate_writes_a_gpu_profile_that_loads_and_fits_the_table() {
    let dir = std::env::temp_dir().join(format!("servesim-calibrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let gpu = dir.join("h200-fit.toml");
    let table = format!(
        "{}/fixtures/silicon/h200-qwen2.5-7b-forward.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let gpu_path = gpu.display().to_string();
    let out = servesim(&[
        "calibrate",
        "--silicon",
        &table,
        "--gpu",
        "h100-sxm",
        "--name",
        "h200-fit",
        "--out",
        &gpu_path,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&gpu).expect("written");
    assert!(
        text.contains("measured: the table's gemv_stream_2GiB"),
        "{text}"
    );
    let profile = format!("{}+qwen2.5-7b-instruct", gpu.display());
    let v = json(&[
        "cost",
        "--profile",
        &profile,
        "--silicon",
        &table,
        "--format",
        "json",
    ]);
    // Started from the H100's terms, the fit lands on the H200 table.
    assert!(v["median_abs_error"].as_f64() < Some(0.05), "{v}");
    assert!(v["max_abs_error"].as_f64() < Some(0.25), "{v}");
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(45));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 14: a flag's environment twin does what the flag does, and the flag wins over it.
#[test]
fn env_twins_stand_in_for_flags() {
    let by_flags = stdout_ok(&[
        "simulate",
        "--drill",
        "decode",
        "--concurrency",
        "2",
        "--max-tokens",
        "16,32",
        "--seed",
        "3",
        "--format",
        "json",
    ]);
    let by_env = std::process::Command::new(crate::support::servesim_bin())
        .args(["simulate", "--format", "json"])
        .env("SERVESIM_DRILL", "decode")
        .env("SERVESIM_CONCURRENCY", "2")
        .env("SERVESIM_MAX_TOKENS", "16,32")
        .env("SERVESIM_SEED", "3")
        .output()
        .expect("runs");
    assert!(by_env.status.success(), "{by_env:?}");
    assert_eq!(String::from_utf8_lossy(&by_env.stdout), by_flags);
    let flag_wins = std::process::Command::new(crate::support::servesim_bin())
        .args([
            "simulate",
            "--format",
            "json",
            "--drill",
            "decode",
            "--concurrency",
            "2",
        ])
        .args(["--max-tokens", "16,32", "--seed", "3"])
        .env("SERVESIM_DRILL", "baseline")
        .env("SERVESIM_SEED", "4")
        .output()
        .expect("runs");
    assert_eq!(String::from_utf8_lossy(&flag_wins.stdout), by_flags);
    // And the variable is read: another concurrency, another result.
    let other = std::process::Command::new(crate::support::servesim_bin())
        .args(["simulate", "--format", "json", "--drill", "decode"])
        .args(["--max-tokens", "16,32", "--seed", "3"])
        .env("SERVESIM_CONCURRENCY", "8")
        .output()
        .expect("runs");
    assert!(other.status.success());
    assert_ne!(String::from_utf8_lossy(&other.stdout), by_flags);
}
