//! End-to-end tests of `servesim bench` (issue 4): the in-process simulator target against
//! `simulate`, every drill over loopback HTTP against a scripted server, a misbehaving server with
//! exact error counts, timeouts, refused connections, open loop, and clean interruption.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{BenchRun, ROW_STAT_COLUMNS, stdout_ok};
use serde_json::Value;
use servesim_sim::{ClientGroup, LevelPlan, RequestSpec};
use servesim_validator::http::{ClientConfig, HttpTarget, INTERRUPTED};
use servesim_validator::mock::{Reply, ScriptedServer, StreamReply};
use servesim_validator::suite::Target;

/// Upper bound for waits on the scripted server (never reached when things work).
const LIMIT: Duration = Duration::from_secs(30);

/// A TTFT SLO no answer of the scripted server misses, for the runs whose goodput checks the error
/// count: with drills.md's 1 s, goodput would also judge how fast a loaded machine answers on
/// loopback.
const ANY_TTFT: &[&str] = &["--ttft-slo", "3600"];

/// The client timeout of the runs where a hung request must time out: far above anything a
/// well-behaved answer takes on a loaded 2-core machine (milliseconds), since a request that
/// merely runs slow must not be counted as a timeout; a hung one costs this much wall time.
const HANG_TIMEOUT: &str = "5";

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("servesim-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("valid JSON")
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("records file")
        .lines()
        .map(json)
        .collect()
}

/// Whether a record is the batching drill's background load (the long requests of phase B, group
/// 0 of that level), whose count depends on how long the measured short requests run.
fn is_background(r: &Value) -> bool {
    r["drill"] == "batching" && r["axis"] == "B-loaded" && r["origin"]["group"] == 0
}

/// The drills of a `--format json` output, always as a list.
fn drills(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        one => vec![one],
    }
}

#[test]
fn target_sim_gives_exactly_the_rows_of_simulate() {
    let dir = out_dir("sim");
    let bench = drills(json(
        &BenchRun::sim()
            .drill("all")
            .json()
            .out(&dir)
            .quiet()
            .run_ok(),
    ));
    let sim = drills(json(&stdout_ok(&[
        "simulate", "--drill", "all", "--format", "json",
    ])));
    assert_eq!(bench.len(), 6);
    for (b, s) in bench.iter().zip(&sim) {
        assert_eq!(b["drill"], s["drill"]);
        assert_eq!(b["profile"], s["profile"]);
        assert_eq!(b["rows"], s["rows"], "drill {}", s["drill"]);
        assert_eq!(b["ratio"], s["ratio"]);
        assert_eq!(b["complete"], true);
    }
    // The simulator reports usage, so the token metrics are there too.
    let baseline = &bench[0]["levels"][0];
    assert!(
        baseline["tpot_tokens"]["median"]
            .as_f64()
            .is_some_and(|t| t > 0.0)
    );
    assert!(baseline["itl"]["median"].as_f64().is_some_and(|t| t > 0.0));
    // Saturation sweeps report a knee and an operating point in JSON.
    assert!(bench[1].get("knee").is_some() && bench[1].get("operating_point").is_some());
    // Every request of every level is one JSON line: the planned ones, and the batching drill's
    // background load, which keeps coming while the loaded phase's short requests run.
    let lines = jsonl(&dir.join("requests.jsonl"));
    let count = |drill: &str, axis: Option<&str>, group: u64| {
        lines
            .iter()
            .filter(|l| l["drill"] == drill && axis.is_none_or(|a| l["axis"] == a))
            .filter(|l| l["origin"]["group"] == group)
            .count()
    };
    let planned = [
        ("baseline", 48),
        ("saturation", 2048),
        ("overload", 1024),
        ("prefill", 48),
        ("decode", 48),
    ];
    for (drill, n) in planned {
        assert_eq!(count(drill, None, 0), n, "{drill}");
    }
    assert_eq!(count("batching", Some("A-alone"), 0), 12);
    assert_eq!(count("batching", Some("B-loaded"), 1), 12);
    let background = lines.iter().filter(|l| is_background(l)).count();
    assert!(background > 8, "the 8 long workers cycled: {background}");
    assert_eq!(
        lines.len(),
        48 + 2048 + 1024 + 48 + 48 + 12 + 12 + background
    );
    let summary = json(&std::fs::read_to_string(dir.join("summary.json")).expect("summary"));
    assert_eq!(summary["drills"].as_array().map(Vec::len), Some(6));
    assert!(summary["definitions"]["tpot_tokens"].is_string());
    let params = json(&std::fs::read_to_string(dir.join("params.json")).expect("params"));
    assert_eq!(params["version"], env!("CARGO_PKG_VERSION"));
    // The per-level detail and the per-request lines keep their schema.
    let level_keys: Vec<&str> = baseline
        .as_object()
        .expect("level object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        level_keys,
        [
            "axis",
            "client_lag",
            "completion_tokens",
            "e2e",
            "e2e_from_scheduled",
            "errors",
            "input_tok_s",
            "itl",
            "ok",
            "output_tok_s",
            "prompt_tokens",
            "requests",
            "schedule_lag",
            "tpot_tokens",
            "ttft",
            "ttft_from_scheduled",
            "wall_s",
        ]
    );
    let first = &jsonl(&dir.join("requests.jsonl"))[0];
    for key in [
        "drill",
        "level",
        "axis",
        "ttft",
        "e2e",
        "origin",
        "index",
        "scheduled",
        "sent",
        "first_event",
        "end",
        "events",
        "event_times",
        "prompt_tokens",
        "completion_tokens",
        "error",
    ] {
        assert!(first.get(key).is_some(), "records carry {key}");
    }
    let csv = std::fs::read_to_string(dir.join("summary.csv")).expect("csv");
    assert_eq!(
        csv.lines().next(),
        Some(
            "drill,profile,axis,reqs,err,gen,ttft_p50,ttft_p95,tpot_p50,e2e_p95,e2e_p99,tok_s,goodput_pct"
        )
    );
    assert_eq!(csv.lines().count(), 1 + 4 + 4 + 5 + 4 + 4 + 2);
    let table = std::fs::read_to_string(dir.join("table.txt")).expect("table");
    let simulate_table = stdout_ok(&["simulate", "--drill", "all"]);
    assert!(
        table.ends_with(&simulate_table),
        "the seed tables are identical"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_drill_runs_over_http_with_drills_md_requests() {
    let server = ScriptedServer::start(|_| Reply::Stream(StreamReply::events(5)))
        .expect("scripted server starts");
    let dir = out_dir("all");
    let out = json(
        &BenchRun::url(&server.url())
            .drill("all")
            .concurrency("1,3")
            .requests_per_level(6)
            .extra(&["--max-tokens", "16", "--input-tokens", "16,64"])
            .extra(ANY_TTFT)
            .json()
            .out(&dir)
            .quiet()
            .run_ok(),
    );
    let all = drills(out);
    let shape: Vec<(String, usize)> = all
        .iter()
        .map(|d| {
            (
                d["drill"].as_str().unwrap_or_default().to_string(),
                d["rows"].as_array().map_or(0, Vec::len),
            )
        })
        .collect();
    let want: Vec<(String, usize)> = [
        ("baseline", 2),
        ("saturation", 2),
        ("overload", 2),
        ("prefill", 2),
        ("decode", 1),
        ("batching", 2),
    ]
    .iter()
    .map(|(n, k)| (n.to_string(), *k))
    .collect();
    assert_eq!(shape, want);
    for d in &all {
        for row in d["rows"].as_array().expect("rows") {
            assert_eq!(row["reqs"], 6, "{}", d["drill"]);
            assert_eq!(row["err"], 0);
            // 5 data events; the usage-only chunk is not one.
            assert_eq!(row["gen"], 5);
            assert_eq!(row["goodput_pct"], 100.0);
        }
        for level in d["levels"].as_array().expect("levels") {
            assert_eq!(level["completion_tokens"], 6 * 4, "usage counted");
            assert_eq!(level["prompt_tokens"], 6 * 31);
        }
    }
    // 5 drills of 12 or 6 requests, and batching: 6 alone, 6 loaded, and the long background
    // requests (1 worker) sent until the loaded ones are done: every one of them recorded.
    let lines = jsonl(&dir.join("requests.jsonl"));
    let foreground = 12 * 4 + 6 + 6 + 6;
    assert!(server.requests() > foreground, "{}", server.requests());
    assert_eq!(lines.len(), server.requests());
    let background = lines.iter().filter(|l| is_background(l)).count();
    assert_eq!(lines.len(), foreground + background);
    let bodies: Vec<Value> = server.bodies().iter().map(|b| json(b)).collect();
    for b in &bodies {
        assert_eq!(b["model"], "local");
        assert_eq!(b["stream"], true);
        assert_eq!(b["temperature"], 0.7);
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert_eq!(b["messages"][0]["role"], "user");
    }
    let content = |i: usize| {
        bodies[i]["messages"][0]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        content(0),
        "Explain what a GPU scheduler does, in two sentences."
    );
    assert_eq!(bodies[0]["max_tokens"], 16);
    // Prefill (requests 36..48) sends sized prompts, decode (48..54) the count prompt.
    assert!(content(36).starts_with("Summarize this note in one short sentence: gpu scheduler"));
    assert!(content(48).starts_with("Count upward from 1"));
    // Batching phase B's long request asks for 512 tokens.
    assert!(bodies[54..].iter().any(|b| b["max_tokens"] == 512));
}

/// Request n of a level of 12: the first slow, with split lines and keep-alive comments; then a
/// 500 with vLLM's error body, a clean close without [DONE], a connection dropped before the
/// answer, a normal stream, a connection dropped mid-stream.
fn misbehaving(n: usize) -> Reply {
    match n % 6 {
        0 => Reply::Stream(StreamReply {
            first_byte_delay: Duration::from_millis(50),
            split_lines: true,
            comments: true,
            ..StreamReply::events(5)
        }),
        1 => Reply::Status {
            status: 500,
            body: r#"{"error":{"message":"engine exploded","type":"InternalServerError","param":null,"code":500}}"#.into(),
        },
        2 => Reply::Stream(StreamReply {
            done: false,
            ..StreamReply::events(5)
        }),
        3 => Reply::Drop,
        4 => Reply::Stream(StreamReply::events(5)),
        _ => Reply::Stream(StreamReply {
            drop_after: Some(2),
            ..StreamReply::events(5)
        }),
    }
}

#[test]
fn misbehaving_server_errors_are_classified_and_counted_exactly() {
    let server = ScriptedServer::start(misbehaving).expect("scripted server starts");
    let dir = out_dir("flaky");
    let out = BenchRun::url(&server.url())
        .drill("baseline")
        .concurrency("1,2")
        .extra(ANY_TTFT)
        .json()
        .out(&dir)
        .quiet()
        .run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&String::from_utf8_lossy(&out.stdout));
    for (row, level) in v["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .zip(v["levels"].as_array().expect("levels"))
    {
        assert_eq!(row["reqs"], 12);
        assert_eq!(row["err"], 6);
        assert_eq!(row["gen"], 5);
        assert_eq!(row["goodput_pct"], 50.0);
        assert_eq!(level["errors"]["status"], 2);
        assert_eq!(level["errors"]["broken_stream"], 4);
        assert_eq!(level["ok"], 6);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HTTP 500 Internal Server Error: engine exploded"),
        "{stderr}"
    );
    let records = jsonl(&dir.join("requests.jsonl"));
    assert_eq!(records.len(), 24);
    // At concurrency 1 request i of the level is the server's request i.
    for r in records.iter().filter(|r| r["level"] == 0) {
        let i = r["index"].as_u64().expect("index") as usize;
        match i % 6 {
            0 => {
                assert!(r["error"].is_null());
                assert_eq!(r["events"], 5);
                // A lower bound only: the server waits 50 ms before answering, however fast or
                // loaded the machine is.
                assert!(
                    r["ttft"].as_f64().is_some_and(|t| t >= 0.05),
                    "slow first byte"
                );
                assert_eq!(r["completion_tokens"], 4);
            }
            1 => assert_eq!(r["error"]["status"], 500),
            2 => {
                assert!(r["error"].is_null(), "a clean close ends the request");
                assert_eq!(r["events"], 5);
            }
            3 => assert_eq!(r["error"]["kind"], "broken_stream"),
            4 => assert!(r["error"].is_null()),
            _ => {
                assert_eq!(r["error"]["kind"], "broken_stream");
                assert_eq!(r["events"], 2);
            }
        }
    }
}

#[test]
fn a_body_left_open_after_done_still_ends_at_done() {
    let server = ScriptedServer::start(|_| {
        Reply::Stream(StreamReply {
            linger: true,
            ..StreamReply::events(3)
        })
    })
    .expect("scripted server starts");
    let v = json(
        &BenchRun::url(&server.url())
            .drill("baseline")
            .concurrency("1")
            .requests_per_level(3)
            .extra(&["--timeout", "10"])
            .json()
            .quiet()
            .run_ok(),
    );
    assert_eq!(v["rows"][0]["err"], 0);
    assert_eq!(v["rows"][0]["gen"], 3);
    assert_eq!(server.requests(), 3);
}

#[test]
fn api_key_model_and_usage_flags_reach_the_server() {
    let server = ScriptedServer::start(|_| Reply::Stream(StreamReply::events(2)))
        .expect("scripted server starts");
    let url = format!("{}/v1/", server.url());
    let dir = out_dir("key");
    let v = json(
        &BenchRun::url(&url)
            .drill("decode")
            .extra(&["--max-tokens", "7"])
            .requests_per_level(2)
            .extra(&["--api-key", "sekret", "--model", "m1", "--no-usage"])
            .json()
            .quiet()
            .out(&dir)
            .run_ok(),
    );
    assert_eq!(v["rows"][0]["reqs"], 2);
    let params = std::fs::read_to_string(dir.join("params.json")).expect("params");
    assert!(
        !params.contains("sekret"),
        "the API key stays out of the output"
    );
    let _ = std::fs::remove_dir_all(&dir);
    for head in server.heads() {
        assert!(
            head.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("authorization: bearer sekret\r\n"),
            "{head}"
        );
    }
    for body in server.bodies() {
        let b = json(&body);
        assert_eq!(b["model"], "m1");
        assert_eq!(b["max_tokens"], 7);
        assert!(b.get("stream_options").is_none());
    }
}

#[test]
fn token_count_prompts_are_refused_over_http() {
    let server = ScriptedServer::start(|_| Reply::Stream(StreamReply::events(2)))
        .expect("scripted server starts");
    let mut target = HttpTarget::new(ClientConfig::new(&server.url()), 1).expect("target");
    let mut plan = level(1, 1);
    plan.groups[0].requests[0].prompt = servesim_sim::Prompt::Tokens(100);
    let err = target.run_level(&plan).expect_err("refused");
    assert!(err.0.contains("token count"), "{}", err.0);
    assert_eq!(server.requests(), 0);
}

#[test]
fn timeouts_and_refused_connections_are_their_own_classes() {
    let server = ScriptedServer::start(|n| {
        if n == 0 {
            Reply::Hang
        } else {
            Reply::Stream(StreamReply::events(3))
        }
    })
    .expect("scripted server starts");
    let v = json(
        &BenchRun::url(&server.url())
            .drill("baseline")
            .concurrency("1")
            .requests_per_level(3)
            .extra(&["--timeout", HANG_TIMEOUT])
            .json()
            .quiet()
            .run_ok(),
    );
    assert_eq!(v["rows"][0]["err"], 1);
    assert_eq!(v["levels"][0]["errors"]["timeout"], 1);

    let port = free_port();
    let out = BenchRun::url(&format!("http://127.0.0.1:{port}"))
        .drill("baseline")
        .concurrency("1")
        .requests_per_level(2)
        .json()
        .quiet()
        .run();
    // Nothing succeeded: an error, but the results are still printed.
    assert_eq!(out.status.code(), Some(1));
    let v = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["rows"][0]["err"], 2);
    assert_eq!(v["levels"][0]["errors"]["connect"], 2);
}

/// A loopback port nothing listens on (bound by the OS, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn a_run_where_nothing_succeeds_fails_and_still_writes_its_files() {
    let dir = out_dir("dead");
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = BenchRun::url(&url)
        .drill("baseline")
        .concurrency("1,2")
        .requests_per_level(2)
        .out(&dir)
        .quiet()
        .run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no request succeeded: all 4 failed (connect: 4)"),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(
        stderr.contains(&format!("is a server listening at {url}?")),
        "{stderr}"
    );
    // The error class by its name, not the code's.
    assert!(!stderr.contains("Connect:"), "{stderr}");
    // tok/s of a level without one event is 0.0, never -0.0.
    let table = std::fs::read_to_string(dir.join("table.txt")).expect("table.txt");
    assert_eq!(table, stdout);
    assert!(!table.contains("-0.0"), "{table}");
    let row = table
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .expect("the conc-1 row");
    assert_eq!(row.split_whitespace().nth(9), Some("0.0"), "{table}");
    for file in [
        "params.json",
        "summary.json",
        "summary.csv",
        "requests.jsonl",
    ] {
        assert!(dir.join(file).is_file(), "{file} written");
    }
    assert_eq!(jsonl(&dir.join("requests.jsonl")).len(), 4);
    let _ = std::fs::remove_dir_all(&dir);
    // A URL given to --target (which takes sim[:PROFILE]) points at --url.
    let out = crate::support::servesim(&["bench", "--target", &url, "--drill", "baseline"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("give --url {url}")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn open_loop_sends_on_schedule_and_reports_lag() {
    let server = ScriptedServer::start(|_| Reply::Stream(StreamReply::events(4)))
        .expect("scripted server starts");
    let dir = out_dir("open");
    // The open-loop flags both runs share: drill baseline at concurrency 2.
    let open_loop = BenchRun::url(&server.url())
        .drill("baseline")
        .concurrency("2");
    let v = json(
        &open_loop
            .clone()
            .requests_per_level(20)
            .extra(&["--rate", "400", "--seed", "3"])
            .json()
            .out(&dir)
            .quiet()
            .run_ok(),
    );
    assert_eq!(v["rows"][0]["reqs"], 20);
    assert_eq!(v["rows"][0]["err"], 0);
    assert!(v["levels"][0]["schedule_lag"]["max"].is_number());
    let records = jsonl(&dir.join("requests.jsonl"));
    let mut scheduled: Vec<f64> = records
        .iter()
        .map(|r| r["scheduled"].as_f64().expect("scheduled"))
        .collect();
    scheduled.sort_by(f64::total_cmp);
    assert_eq!(scheduled[0], 0.0);
    assert!(
        scheduled.windows(2).all(|w| w[1] > w[0]),
        "Poisson gaps are positive"
    );
    for r in &records {
        let sent = r["sent"].as_f64().expect("sent");
        // Never early (a nanosecond of float rounding aside).
        assert!(sent >= r["scheduled"].as_f64().expect("scheduled") - 1e-6);
    }
    // Capped at the level's concurrency: never more than 2 requests in flight.
    let dir = out_dir("capped");
    let v = json(
        &open_loop
            .requests_per_level(12)
            .extra(&["--rate", "inf", "--rate-cap"])
            .json()
            .out(&dir)
            .quiet()
            .run_ok(),
    );
    assert_eq!(v["rows"][0]["err"], 0);
    let records = jsonl(&dir.join("requests.jsonl"));
    assert_eq!(records.len(), 12);
    let span = |r: &Value| {
        (
            r["sent"].as_f64().unwrap_or(0.0),
            r["end"].as_f64().unwrap_or(0.0),
        )
    };
    for r in &records {
        let (sent, _) = span(r);
        let in_flight = records
            .iter()
            .filter(|o| {
                let (s, e) = span(o);
                s <= sent && sent < e
            })
            .count();
        assert!(in_flight <= 2, "{in_flight} in flight at {sent}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    // The simulator has no in-flight cap for arrivals: refused, not silently ignored.
    let out = BenchRun::sim()
        .drill("baseline")
        .extra(&["--rate", "10", "--rate-cap"])
        .run();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rate-cap"));
}

fn level(workers: usize, n: usize) -> LevelPlan {
    LevelPlan {
        groups: vec![ClientGroup::new(
            0.0,
            workers,
            vec![RequestSpec::chat("hi", 8); n],
        )],
        ..LevelPlan::default()
    }
}

#[test]
fn stopping_keeps_what_finished_and_refuses_later_levels() {
    let server = ScriptedServer::start(|n| {
        if n < 3 {
            Reply::Stream(StreamReply::events(3))
        } else {
            Reply::Hang
        }
    })
    .expect("scripted server starts");
    let mut target = HttpTarget::new(ClientConfig::new(&server.url()), 1).expect("target");
    let stop = target.stopper();
    let run = std::thread::scope(|s| {
        let runner = s.spawn(|| target.run_level(&level(1, 6)));
        assert!(
            server.wait_for_requests(4, LIMIT),
            "the 4th request arrives"
        );
        stop.stop();
        runner.join().expect("runner thread")
    })
    .expect("the level returns what finished");
    assert_eq!(run.records.len(), 3);
    assert!(run.records.iter().all(|r| r.ok() && r.events == 3));
    let next = target.run_level(&level(1, 1));
    assert!(next.is_err_and(|e| e.0 == INTERRUPTED));
}

#[cfg(unix)]
#[test]
fn ctrl_c_ends_the_run_with_a_summary_of_what_finished() {
    let server = ScriptedServer::start(|n| {
        if n < 3 {
            Reply::Stream(StreamReply::events(3))
        } else {
            Reply::Hang
        }
    })
    .expect("scripted server starts");
    let dir = out_dir("sigint");
    let child = BenchRun::url(&server.url())
        .drill("baseline")
        .requests_per_level(6)
        .quiet()
        .out(&dir)
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("servesim starts");
    assert!(
        server.wait_for_requests(4, LIMIT),
        "the 4th request arrives"
    );
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let out = child.wait_with_output().expect("servesim ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    // The table shows the partial level: 3 requests, none failed.
    let row = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .expect("the conc-1 row");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[..3], ["1", "3", "0"], "{stdout}");
    assert!(
        stdout.contains("# stopped: 1 of 4 levels have rows"),
        "{stdout}"
    );
    assert_eq!(jsonl(&dir.join("requests.jsonl")).len(), 3);
    let summary = json(&std::fs::read_to_string(dir.join("summary.json")).expect("summary"));
    assert_eq!(summary["stopped"], INTERRUPTED);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- Against `servesim serve` over loopback ----

/// Drill flags small enough for CI that still give every drill two levels (decode: two caps).
const SMALL: &[&str] = &[
    "--concurrency",
    "1,4",
    "--requests-per-level",
    "8",
    "--max-tokens",
    "32,64",
    "--input-tokens",
    "16,512",
];

/// Time columns of a row (seconds) and its throughput, as `(name, value)`.
fn columns(row: &Value) -> Vec<(&'static str, f64)> {
    ROW_STAT_COLUMNS
        .iter()
        .map(|&c| (c, row[c].as_f64().expect("numeric column")))
        .collect()
}

#[test]
fn every_drill_runs_against_servesim_serve_over_loopback() {
    // Each drill against a freshly started server, as `simulate` gives each drill a fresh one: the
    // answer lengths are then drawn from the same seed in the same order on both sides.
    for drill in [
        "baseline",
        "saturation",
        "overload",
        "prefill",
        "decode",
        "batching",
    ] {
        let server = crate::support::ServerProcess::start(&["--time-scale", "0.1"]);
        let bench = drills(json(
            &BenchRun::url(&server.base)
                .drill(drill)
                .json()
                .quiet()
                .extra(SMALL)
                .run_ok(),
        ));
        let mut args = vec!["simulate", "--drill", drill, "--format", "json"];
        args.extend_from_slice(SMALL);
        let sim = drills(json(&stdout_ok(&args)));
        assert_eq!((bench.len(), sim.len()), (1, 1), "{drill}");
        let (b, s) = (&bench[0], &sim[0]);
        let (rb, rs) = (
            b["rows"].as_array().expect("rows"),
            s["rows"].as_array().expect("rows"),
        );
        assert_eq!(rb.len(), rs.len(), "{drill}");
        for (x, y) in rb.iter().zip(rs) {
            assert_eq!(x["axis"], y["axis"]);
            assert_eq!(x["reqs"], y["reqs"], "{drill} {}", y["axis"]);
            assert_eq!(x["err"], 0, "{drill} {}", y["axis"]);
            // Same seed, same answer lengths: the event counts agree exactly.
            assert_eq!(x["gen"], y["gen"], "{drill} {}", y["axis"]);
        }
        for level in b["levels"].as_array().expect("levels") {
            assert!(
                level["completion_tokens"].as_u64().is_some_and(|n| n > 0),
                "usage reported"
            );
        }
    }
}

/// The issue's acceptance check: `bench --drill baseline` against `serve` agrees with `simulate
/// --drill baseline` within 5 % on every column except the conc-1 (warm-up) row. `serve` runs at
/// `SERVESIM_AGREEMENT_SCALE` (default 1: real time, ~28 s); the bench's times are divided by the
/// scale and its throughput multiplied by it before comparing.
#[test]
#[ignore = "a timing acceptance check on the wall clock (~30 s): run on demand with `cargo test --release --test it baseline_against_serve -- --ignored`"]
fn baseline_against_serve_agrees_with_simulate_within_5_percent() {
    let scale: f64 = std::env::var("SERVESIM_AGREEMENT_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let scale_arg = scale.to_string();
    let server = crate::support::ServerProcess::start(&["--time-scale", &scale_arg]);
    let bench = json(
        &BenchRun::url(&server.base)
            .drill("baseline")
            .json()
            .quiet()
            .run_ok(),
    );
    let sim = json(&stdout_ok(&[
        "simulate", "--drill", "baseline", "--format", "json",
    ]));
    let mut off = Vec::new();
    for (b, s) in bench["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .zip(sim["rows"].as_array().expect("rows"))
        .skip(1)
    {
        assert_eq!(b["err"], 0);
        assert_eq!(b["gen"], s["gen"]);
        for ((name, got), (_, want)) in columns(b).into_iter().zip(columns(s)) {
            let got = match name {
                "tok_s" => got * scale,
                "goodput_pct" => got,
                _ => got / scale,
            };
            let rel = (got - want).abs() / want.abs().max(1e-9);
            if rel > 0.05 {
                off.push(format!(
                    "conc {} {name}: bench {got:.4} simulate {want:.4} ({:+.1} %)",
                    s["axis"],
                    100.0 * (got - want) / want
                ));
            }
        }
    }
    assert!(
        off.is_empty(),
        "columns more than 5 % apart:\n{}",
        off.join("\n")
    );
}

/// `bench --workload multi-turn` against `serve`: the plan `simulate --workload` runs (same request
/// count), every request answered, the prefix cache's hit rate read off `/metrics` (high with
/// caching on, as each turn's prompt starts with the previous turn's; zero with it off), and the
/// think time honoured between each session's turns.
#[test]
fn workload_multi_turn_runs_against_servesim_serve_with_think_time() {
    const SESSIONS: u64 = 3;
    const TURNS: u64 = 4;
    const THINK: f64 = 0.3;
    let sizes = [
        "--workload",
        "multi-turn",
        "--sessions",
        "3",
        "--turns",
        "4",
        "--think",
        "0.3",
    ];
    let sim = json(&stdout_ok(
        &[&["simulate", "--format", "json"][..], &sizes[..]].concat(),
    ));
    assert_eq!(sim["requests"], SESSIONS * TURNS);
    for (caching, flag) in [
        (true, "--enable-prefix-caching"),
        (false, "--no-enable-prefix-caching"),
    ] {
        let server = crate::support::ServerProcess::start(&["--time-scale", "0.1", flag]);
        let started = std::time::Instant::now();
        let v = json(
            &BenchRun::url(&server.base)
                .json()
                .quiet()
                .extra(&sizes)
                .run_ok(),
        );
        let took = started.elapsed().as_secs_f64();
        assert_eq!(v["requests"], sim["requests"], "{v}");
        assert!(v.get("errors").is_none_or(|e| e == 0), "{v}");
        let wall = v["wall_s"].as_f64().expect("wall_s");
        assert!(
            wall >= (TURNS - 1) as f64 * THINK && took >= wall,
            "think time not honoured: wall {wall} s, took {took} s"
        );
        let rate = v["prefix_cache_hit_rate"].as_f64();
        if caching {
            assert!(rate.is_some_and(|r| r > 0.3), "hit rate {rate:?}: {v}");
        } else {
            assert!(rate.is_none_or(|r| r == 0.0), "hit rate {rate:?}: {v}");
        }
        assert!(v["output_tok_s"].as_f64().is_some_and(|t| t > 0.0), "{v}");
    }
}

/// `bench --workload` prints `simulate --workload`'s table: the latency summary, throughput and
/// the hit rate.
#[test]
fn workload_table_has_the_summary_and_hit_rate() {
    let server = crate::support::ServerProcess::start(&["--time-scale", "0.1"]);
    let out = BenchRun::url(&server.base)
        .quiet()
        .extra(&[
            "--workload",
            "shared-prefix",
            "--sessions",
            "2",
            "--turns",
            "2",
            "--think",
            "0",
        ])
        .run_ok();
    for want in ["# workload shared-prefix against", "ttft", "tpot", "e2e"] {
        assert!(out.contains(want), "{want} missing from:\n{out}");
    }
    assert!(out.contains("output throughput:"), "{out}");
    assert!(out.contains("prompt tokens looked up were hits"), "{out}");
}
