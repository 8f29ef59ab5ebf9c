//! `servesim serve --replicas N --router-port P` (issue 16): N independent fake vLLM servers in one
//! process and the built-in router in front. Loopback ports chosen by the OS; every wait is on a
//! condition with a deadline.

use std::time::{Duration, Instant};

use crate::support::{BenchRun, ServerProcess};
use serde_json::{Value, json};

/// A bound on a hang, not a judgement of speed.
const SETTLE: Duration = Duration::from_secs(60);

/// A fleet process and the addresses it logged.
struct Fleet {
    _process: ServerProcess,
    replicas: Vec<String>,
    router: String,
}

/// Start `serve --replicas n --router-port 0 ARGS` and read every address from its log.
fn start_fleet(n: usize, args: &[&str]) -> Fleet {
    let count = n.to_string();
    let mut all = vec!["--replicas", count.as_str()];
    all.extend(args);
    launch(n, &all)
}

/// Start `serve --router-port 0 ARGS` (ARGS making `n` replicas) and read every address.
fn launch(n: usize, args: &[&str]) -> Fleet {
    let mut all = vec!["--router-port", "0"];
    all.extend(args);
    let process = ServerProcess::start(&all);
    let deadline = Instant::now() + SETTLE;
    loop {
        let log = process.log();
        let address = |needle: &str| {
            log.iter().find(|l| l.contains(needle)).and_then(|l| {
                l.find("listening on http://")
                    .map(|at| l[at + "listening on ".len()..].trim().to_string())
            })
        };
        if let Some(router) = address("router (") {
            let replicas: Vec<String> = (0..n)
                .map(|k| address(&format!("replica {k} (seed")).expect("each replica's address"))
                .collect();
            return Fleet {
                _process: process,
                replicas,
                router,
            };
        }
        assert!(Instant::now() < deadline, "no router line in {log:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(SETTLE)
        .build()
        .expect("an HTTP client")
}

/// `vllm:request_success_total` summed over finish reasons: requests this engine finished.
async fn finished(base: &str) -> f64 {
    let text = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with("vllm:request_success_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn all_finished(fleet: &Fleet) -> Vec<f64> {
    let mut out = Vec::new();
    for r in &fleet.replicas {
        out.push(finished(r).await);
    }
    out
}

fn chat(max_tokens: u32, stream: bool) -> Value {
    json!({
        "model": "local",
        "messages": [{"role": "user", "content": "Say something about routers."}],
        "max_tokens": max_tokens,
        "ignore_eos": true,
        "stream": stream,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_replicas_are_four_engines_and_round_robin_spreads_evenly() {
    let fleet = start_fleet(4, &["--time-scale", "0.02"]);
    assert_eq!(fleet.replicas.len(), 4);
    let mut ports: Vec<&str> = fleet.replicas.iter().map(|r| r.as_str()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 4, "four distinct ports: {:?}", fleet.replicas);

    // `servesim bench` against each port in turn: only that replica's counters move.
    let mut before = all_finished(&fleet).await;
    assert_eq!(before, vec![0.0; 4]);
    for k in 0..4 {
        let url = fleet.replicas[k].clone();
        let bench = tokio::task::spawn_blocking(move || {
            BenchRun::url(&url)
                .drill("baseline")
                .concurrency("1")
                .requests_per_level(2)
                .extra(&["--max-tokens", "8", "--timeout", "30", "--ttft-slo", "3600"])
                .json()
                .quiet()
                .run_ok()
        });
        bench.await.expect("bench ran");
        let after = all_finished(&fleet).await;
        for j in 0..4 {
            if j == k {
                assert!(
                    after[j] > before[j],
                    "replica {k} served the bench: {after:?}"
                );
            } else {
                assert_eq!(after[j], before[j], "bench on {k} left replica {j} alone");
            }
        }
        before = after;
    }

    // Through the router, round-robin: 12 requests, exactly 3 more on each replica.
    let c = client();
    for i in 0..12 {
        let answer = c
            .post(format!("{}/v1/chat/completions", fleet.router))
            .header("content-type", "application/json")
            .body(chat(4, i % 2 == 0).to_string())
            .send()
            .await
            .expect("the router answers");
        assert_eq!(answer.status(), 200);
        // Streamed answers pass through whole.
        let body = answer.text().await.expect("a body");
        if i % 2 == 0 {
            assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
        }
    }
    let after = all_finished(&fleet).await;
    let added: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(
        added,
        vec![3.0; 4],
        "round-robin: {after:?} after {before:?}"
    );

    // The router answers /v1/models and /health itself, as a replica would.
    let models: Value = c
        .get(format!("{}/v1/models", fleet.router))
        .send()
        .await
        .expect("models")
        .json()
        .await
        .expect("JSON");
    assert_eq!(models["data"][0]["id"], "local");
    let health = c
        .get(format!("{}/health", fleet.router))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_requests_spreads_held_streams_and_admission_refuses_beyond_its_bound() {
    // Real time, long answers: the streams stay open while the test holds them.
    let fleet = start_fleet(4, &["--router", "least-requests", "--admission", "queue:8"]);
    let c = client();
    let mut held = Vec::new();
    for _ in 0..8 {
        let answer = c
            .post(format!("{}/v1/chat/completions", fleet.router))
            .header("content-type", "application/json")
            .body(chat(4000, true).to_string())
            .send()
            .await
            .expect("the router answers");
        assert_eq!(answer.status(), 200);
        held.push(answer);
    }
    // The answers stream through as the replica sends them: a first event arrives while the
    // 4000-token answer (over a minute of simulated real time) is far from done.
    let first = held[0]
        .chunk()
        .await
        .expect("a chunk")
        .expect("the stream is open");
    assert!(
        String::from_utf8_lossy(&first).starts_with("data: "),
        "{first:?}"
    );
    // Eight in flight over four replicas, each pick the least loaded: two on each.
    let text = c
        .get(format!("{}/metrics", fleet.router))
        .send()
        .await
        .expect("router metrics")
        .text()
        .await
        .expect("text");
    for k in 0..4 {
        let line = format!("servesim_router_in_flight{{replica=\"{k}\"}} 2");
        assert!(text.contains(&line), "{line} in {text}");
    }
    // The ninth is over queue:8.
    let refused = c
        .post(format!("{}/v1/chat/completions", fleet.router))
        .header("content-type", "application/json")
        .body(chat(4, false).to_string())
        .send()
        .await
        .expect("the router answers");
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.expect("a JSON error");
    assert_eq!(body["error"]["type"], "RateLimitError", "{body}");
    assert_eq!(body["error"]["code"], 429);
    // Dropping the streams ends them on the router too: admission lets requests in again.
    drop(held);
    let deadline = Instant::now() + SETTLE;
    loop {
        let answer = c
            .post(format!("{}/v1/completions", fleet.router))
            .header("content-type", "application/json")
            .body(json!({"model": "local", "prompt": "hi", "max_tokens": 1}).to_string())
            .send()
            .await
            .expect("the router answers");
        if answer.status() == 200 {
            break;
        }
        assert_eq!(answer.status(), 429);
        assert!(
            Instant::now() < deadline,
            "the router never let requests in again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_affinity_keeps_a_repeated_prompt_on_one_replica() {
    let fleet = start_fleet(4, &["--time-scale", "0.02", "--router", "prefix-affinity"]);
    let c = client();
    // Two long prompts (many full 16-token blocks), each sent four times, one after another.
    let prompts: Vec<String> = (0..2)
        .map(|p| {
            (0..120)
                .map(|w| format!("word{}x{w}", p * 1000 + w))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    for prompt in &prompts {
        for _ in 0..4 {
            let answer = c
                .post(format!("{}/v1/completions", fleet.router))
                .header("content-type", "application/json")
                .body(json!({"model": "local", "prompt": prompt, "max_tokens": 2}).to_string())
                .send()
                .await
                .expect("the router answers");
            assert_eq!(answer.status(), 200);
            answer.bytes().await.expect("a body");
        }
    }
    let counts = all_finished(&fleet).await;
    assert_eq!(counts.iter().sum::<f64>(), 8.0, "{counts:?}");
    // Each prompt's four requests followed its first to one replica (round-robin would put two
    // on each): every count is a whole number of prompts.
    for n in &counts {
        assert!(*n == 0.0 || *n == 4.0 || *n == 8.0, "{counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metric_reading_router_scrapes_each_replica() {
    // least-kv reads vllm:kv_cache_usage_perc from every replica's /metrics every 50 ms.
    let fleet = start_fleet(2, &["--router", "least-kv", "--scrape-interval", "0.05"]);
    let c = client();
    // A long prompt held in flight on one replica (real time, a long answer) fills some KV blocks.
    let prompt = (0..1500)
        .map(|w| format!("w{w}"))
        .collect::<Vec<_>>()
        .join(" ");
    let held = c
        .post(format!("{}/v1/completions", fleet.router))
        .header("content-type", "application/json")
        .body(json!({"model": "local", "prompt": prompt, "max_tokens": 4000, "ignore_eos": true, "stream": true}).to_string())
        .send()
        .await
        .expect("the router answers");
    assert_eq!(held.status(), 200);
    let scraped = |text: &str, k: usize| -> f64 {
        let needle = format!("servesim_router_scraped_kv_cache_usage_perc{{replica=\"{k}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&needle)?.parse().ok())
            .expect("a scraped gauge per replica")
    };
    let deadline = Instant::now() + SETTLE;
    loop {
        let text = c
            .get(format!("{}/metrics", fleet.router))
            .send()
            .await
            .expect("router metrics")
            .text()
            .await
            .expect("text");
        let (a, b) = (scraped(&text, 0), scraped(&text, 1));
        // Exactly one replica holds the prompt's blocks; the router's scrape sees which.
        if a > 0.0 || b > 0.0 {
            assert!(a == 0.0 || b == 0.0, "one replica busy: {text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the router never scraped a KV usage: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(held);
}

/// A replica's KV-cache size in blocks, from its `vllm:cache_config_info` series.
async fn gpu_blocks(base: &str) -> u64 {
    let text = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics text");
    let line = text
        .lines()
        .find(|l| l.starts_with("vllm:cache_config_info{"))
        .unwrap_or_else(|| panic!("no cache_config_info in {text}"));
    let at = line
        .find("num_gpu_blocks=\"")
        .expect("a num_gpu_blocks label")
        + 16;
    line[at..]
        .split('"')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("num_gpu_blocks in {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_fleet_serves_each_replica_on_its_own_gpu_and_refuses_mixed_models() {
    let fleet = launch(
        3,
        &[
            "--replica-profile",
            "h100-qwen2.5-7b:1,a6000-qwen2.5-7b:2",
            "--time-scale",
            "0.02",
        ],
    );
    let blocks = [
        gpu_blocks(&fleet.replicas[0]).await,
        gpu_blocks(&fleet.replicas[1]).await,
        gpu_blocks(&fleet.replicas[2]).await,
    ];
    // The H100 (80 GB) holds more KV blocks than an A6000 (48 GB); the two A6000s agree.
    assert!(blocks[0] > blocks[1], "{blocks:?}");
    assert_eq!(blocks[1], blocks[2], "{blocks:?}");
    // Round-robin through the router reaches all three.
    let c = client();
    for _ in 0..3 {
        let answer = c
            .post(format!("{}/v1/chat/completions", fleet.router))
            .header("content-type", "application/json")
            .body(chat(2, false).to_string())
            .send()
            .await
            .expect("the router answers");
        assert_eq!(answer.status(), 200);
    }
    assert_eq!(all_finished(&fleet).await, vec![1.0; 3]);

    // Replicas of different models are refused before anything listens.
    let out = crate::support::servesim(&[
        "serve",
        "--port",
        "0",
        "--replica-profile",
        "a6000-qwen2.5-7b:1,a6000-llama3.1-8b:1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("same model"), "{err}");
}
