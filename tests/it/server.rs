//! End-to-end tests of `servesim serve` (issue 3): the real binary on a loopback port, a real HTTP
//! client and a real OpenAI client library. Servers run with a small `--time-scale` so that the
//! simulated GPU is fast; every wait is on a condition with a deadline.

use std::time::{Duration, Instant};

use crate::support::ServerProcess;
use futures_util::StreamExt;
use serde_json::{Value, json};

/// Simulated GPU 20× faster than real: a 128-token answer streams in ~0.15 s.
const FAST: &[&str] = &["--time-scale", "0.05"];
const PROMPT: &str = "Explain what a GPU scheduler does, in two sentences.";

/// How long a wait on the server may last (a condition on /metrics, a close, an exit): a bound on a
/// hang, not a judgement of speed. What is waited for takes milliseconds even on a loaded machine.
const SETTLE: Duration = Duration::from_secs(60);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client")
}

async fn post(base: &str, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("the server answers")
}

/// `GET {base}{path}` on the test's own client `c` (so its connections are reused as before);
/// panics if nothing answers.
async fn get(c: &reqwest::Client, base: &str, path: &str) -> reqwest::Response {
    c.get(format!("{base}{path}")).send().await.expect("answer")
}

async fn json_of(resp: reqwest::Response) -> Value {
    let bytes = resp.bytes().await.expect("a body");
    serde_json::from_slice(&bytes).expect("a JSON body")
}

fn chat_body(max_tokens: u32, stream: bool) -> Value {
    json!({
        "model": "local",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "ignore_eos": true,
        "stream": stream,
        // vLLM refuses stream_options on a request that does not stream.
        "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
    })
}

/// Read a whole SSE body into its `data:` payloads.
async fn sse_events(resp: reqwest::Response) -> Vec<String> {
    crate::support::sse_data(&resp.text().await.expect("a complete stream"))
}

async fn metrics(base: &str) -> String {
    client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics text")
}

/// The value of one sample line (`name{labels} value`) whose name and labels contain `needle`.
fn sample(text: &str, needle: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(needle) || l.contains(needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Poll `/metrics` until `ok` holds, for at most `timeout`.
async fn wait_metrics(base: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = metrics(base).await;
        if ok(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "metrics never matched:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn chat_stream_has_vllms_shape_event_by_event() {
    let server = ServerProcess::start(FAST);
    let resp = post(&server.base, "/v1/chat/completions", &chat_body(4, true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let events = sse_events(resp).await;
    // role, 4 tokens (the last one finishing), usage, [DONE]
    assert_eq!(events.len(), 7, "{events:#?}");
    let parsed: Vec<Value> = events[..6]
        .iter()
        .map(|e| serde_json::from_str(e).expect("JSON event"))
        .collect();
    let id = parsed[0]["id"].as_str().expect("an id");
    assert!(id.starts_with("chatcmpl-"));
    for p in &parsed {
        assert_eq!(p["id"], id);
        assert_eq!(p["object"], "chat.completion.chunk");
        assert_eq!(p["model"], "local");
    }
    assert_eq!(
        parsed[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    for p in &parsed[1..4] {
        let c = &p["choices"][0];
        assert!(
            c["delta"]["content"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        );
        assert!(c["delta"].get("role").is_none());
        assert_eq!(c["finish_reason"], Value::Null);
    }
    assert_eq!(parsed[4]["choices"][0]["finish_reason"], "length");
    assert_eq!(parsed[5]["choices"], json!([]));
    let usage = &parsed[5]["usage"];
    assert_eq!(usage["completion_tokens"], 4);
    let prompt = usage["prompt_tokens"].as_u64().expect("prompt tokens");
    assert!(prompt > 10);
    assert_eq!(usage["total_tokens"].as_u64(), Some(prompt + 4));
    assert_eq!(events[6], "[DONE]");

    // Without include_usage there is no usage event.
    let mut body = chat_body(2, true);
    body["stream_options"] = json!(null);
    let events = sse_events(post(&server.base, "/v1/chat/completions", &body).await).await;
    assert_eq!(events.len(), 4, "{events:#?}");
    assert!(!events.iter().any(|e| e.contains("\"usage\"")));
}

#[tokio::test]
async fn completions_stream_and_both_non_streaming_answers() {
    let server = ServerProcess::start(FAST);
    let body = json!({"model": "local", "prompt": "hello", "max_tokens": 3, "ignore_eos": true, "stream": true});
    let events = sse_events(post(&server.base, "/v1/completions", &body).await).await;
    assert_eq!(events.len(), 4, "{events:#?}");
    let last: Value = serde_json::from_str(&events[2]).expect("JSON");
    assert_eq!(last["object"], "text_completion");
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    // No usage event: the finish event carries the fingerprint (vLLM 0.32).
    assert!(last["system_fingerprint"].is_string(), "{last}");
    assert_eq!(events[3], "[DONE]");

    let chat =
        json_of(post(&server.base, "/v1/chat/completions", &chat_body(5, false)).await).await;
    assert_eq!(chat["object"], "chat.completion");
    assert_eq!(chat["choices"][0]["message"]["role"], "assistant");
    assert_eq!(chat["choices"][0]["finish_reason"], "length");
    assert_eq!(chat["usage"]["completion_tokens"], 5);
    // vLLM 0.32's null fields, present as null.
    for (obj, keys) in [
        (
            &chat,
            &[
                "prompt_logprobs",
                "prompt_token_ids",
                "prompt_text",
                "kv_transfer_params",
                "ec_transfer_params",
                "metrics",
            ][..],
        ),
        (&chat["choices"][0], &["token_ids", "routed_experts"][..]),
        (
            &chat["usage"],
            &["prompt_tokens_details", "completion_tokens_details"][..],
        ),
    ] {
        for k in keys {
            assert_eq!(obj.get(*k), Some(&Value::Null), "{k}: {chat}");
        }
    }

    // A natural answer ends by itself ("stop") before a generous max_tokens.
    let body = json!({"model": "local", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 500});
    let chat = json_of(post(&server.base, "/v1/chat/completions", &body).await).await;
    assert_eq!(chat["choices"][0]["finish_reason"], "stop");
    let n = chat["usage"]["completion_tokens"].as_u64().expect("count");
    assert!((30..80).contains(&n), "{n} tokens");

    let body = json!({"prompt": "hello"});
    let cmpl = json_of(post(&server.base, "/v1/completions", &body).await).await;
    assert_eq!(
        cmpl["usage"]["completion_tokens"], 16,
        "vLLM's default max_tokens"
    );

    // min_tokens and stop strings.
    let body = json!({"model": "local", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 200, "min_tokens": 120});
    let chat = json_of(post(&server.base, "/v1/chat/completions", &body).await).await;
    assert!(chat["usage"]["completion_tokens"].as_u64().expect("count") >= 120);
}

/// vLLM 0.32 cuts a max_tokens the context cannot hold to what the prompt leaves, and answers.
#[tokio::test]
async fn max_tokens_is_cut_to_the_context() {
    let server = ServerProcess::start(FAST);
    let body = json!({"model": "local", "prompt": vec![1u32; 32_760], "max_tokens": 100, "ignore_eos": true});
    let cmpl = json_of(post(&server.base, "/v1/completions", &body).await).await;
    assert_eq!(cmpl["choices"][0]["finish_reason"], "length", "{cmpl}");
    assert_eq!(cmpl["usage"]["completion_tokens"], 8);
    assert_eq!(cmpl["usage"]["total_tokens"], 32_768);
}

#[tokio::test]
async fn stop_strings_and_echo_text() {
    let server = ServerProcess::start(&["--time-scale", "0.05", "--text", "echo"]);
    let body = json!({"prompt": "alpha beta gamma delta", "max_tokens": 8, "ignore_eos": true});
    let cmpl = json_of(post(&server.base, "/v1/completions", &body).await).await;
    assert_eq!(
        cmpl["choices"][0]["text"],
        "alpha beta gamma delta alpha beta gamma delta"
    );
    let body = json!({"prompt": "alpha beta gamma delta", "max_tokens": 8, "ignore_eos": true, "stop": [" gam"]});
    let cmpl = json_of(post(&server.base, "/v1/completions", &body).await).await;
    assert_eq!(cmpl["choices"][0]["text"], "alpha beta");
    assert_eq!(cmpl["choices"][0]["finish_reason"], "stop");
    assert_eq!(cmpl["choices"][0]["stop_reason"], " gam");
    assert_eq!(cmpl["usage"]["completion_tokens"], 3);
}

async fn expect_error(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    let body = json_of(resp).await;
    assert_eq!(body["error"]["code"], status, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(body["error"]["type"].is_string());
    body
}

#[tokio::test]
async fn every_error_status() {
    let server = ServerProcess::start(&[
        "--time-scale",
        "0.05",
        "--max-waiting",
        "1",
        // A spiked request is held out of the engine for 6 000 s simulated, 300 s here: the window
        // in which the 503 below must be seen (the test drops it long before).
        "--fault-spike-ms",
        "6000000",
    ]);
    let base = &server.base;
    let c = client();
    // A chat request with this body as it is (not built from JSON), and its answer.
    let raw = async |body: &'static str| {
        c.post(format!("{base}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("answer")
    };
    // 400: bad JSON, wrong types, missing and empty messages, max_tokens < 1, beyond max_model_len.
    let e = expect_error(raw("{\"model\":").await, 400).await;
    assert_eq!(e["error"]["type"], "Bad Request");
    // The param is pydantic's location, as vLLM answers it: here the character offset.
    assert_eq!(e["error"]["param"], "body.9");
    let e = expect_error(
        raw(r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":"many"}"#).await,
        400,
    )
    .await;
    assert_eq!(e["error"]["param"], "body.max_tokens");
    let e = expect_error(raw(r#"{"model":"local"}"#).await, 400).await;
    assert_eq!(e["error"]["param"], "body.messages");
    let e = expect_error(raw(r#"{"messages":[]}"#).await, 400).await;
    assert_eq!(e["error"]["param"], Value::Null);
    let e = expect_error(
        raw(r#"{"messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}"#).await,
        400,
    )
    .await;
    assert_eq!(e["error"]["param"], "stream_options");
    let e = expect_error(
        post(base, "/v1/chat/completions", &chat_body(0, false)).await,
        400,
    )
    .await;
    assert_eq!(
        e["error"]["message"],
        "max_tokens must be at least 1, got 0. (parameter=max_tokens, value=0)"
    );
    let e = expect_error(
        post(base, "/v1/chat/completions", &chat_body(100_000, false)).await,
        400,
    )
    .await;
    assert!(
        e["error"]["message"]
            .as_str()
            .expect("message")
            .contains("max_model_len=32768")
    );
    // A prompt that fills the context leaves no room for max_tokens; one beyond it is refused
    // for its input tokens. (Prompt + max_tokens beyond the context is not an error: see
    // `max_tokens_is_cut_to_the_context`.)
    let ids = |n: usize| json!({"model": "local", "prompt": vec![1u32; n], "max_tokens": 4});
    let e = expect_error(post(base, "/v1/completions", &ids(32_768)).await, 400).await;
    assert_eq!(e["error"]["param"], "max_tokens");
    let e = expect_error(post(base, "/v1/completions", &ids(40_000)).await, 400).await;
    assert_eq!(e["error"]["param"], "input_tokens");
    assert!(e["error"]["message"].as_str().expect("message").contains(
        "maximum context length is 32768 tokens. However, your prompt contains 40000 input tokens"
    ));
    let mut n2 = chat_body(3, false);
    n2["n"] = json!(2);
    expect_error(post(base, "/v1/chat/completions", &n2).await, 400).await;
    n2["n"] = json!(0);
    let e = expect_error(post(base, "/v1/chat/completions", &n2).await, 400).await;
    assert_eq!(e["error"]["message"], "n must be at least 1, got 0.");
    // 404: an unknown model.
    let mut nope = chat_body(3, false);
    nope["model"] = json!("nope");
    let e = expect_error(post(base, "/v1/chat/completions", &nope).await, 404).await;
    assert_eq!(
        e["error"]["message"],
        "The model `nope` does not exist. Valid aliases: local."
    );
    // 413: a body over the limit. The server answers from the head alone (Content-Length over the
    // limit) and closes the connection, so the body is never sent: a client still writing a 3 MiB
    // body would race that close.
    let addr = base.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        3u64 << 20
    );
    tokio::io::AsyncWriteExt::write_all(&mut sock, head.as_bytes())
        .await
        .expect("write head");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        SETTLE,
        tokio::io::AsyncReadExt::read_to_end(&mut sock, &mut answer),
    )
    .await
    .expect("the server answers and closes");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let e: Value = serde_json::from_str(body).expect("a JSON error body");
    assert_eq!(e["error"]["code"], 413, "{e}");
    // 503 with Retry-After: one request held on its way to the engine fills --max-waiting 1.
    let held = c
        .post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("x-servesim-fault", "spike")
        .body(chat_body(3, true).to_string())
        .send()
        .await
        .expect("a streaming answer starts");
    assert_eq!(held.status(), 200);
    let resp = post(base, "/v1/chat/completions", &chat_body(3, false)).await;
    assert_eq!(resp.headers()["retry-after"], "1");
    expect_error(resp, 503).await;
    // Counted as vLLM counts a refusal by --max-num-queued-reqs.
    assert_eq!(
        sample(
            &metrics(base).await,
            "vllm:admission_rejections_total{model_name=\"local\",reason=\"max_num_queued_reqs\"}"
        ),
        Some(1.0)
    );
    // The held client gives up: its request leaves the queue and requests are served again.
    drop(held);
    let deadline = Instant::now() + SETTLE;
    loop {
        let resp = post(base, "/v1/chat/completions", &chat_body(3, false)).await;
        if resp.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the queue never drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn api_key_is_required_on_v1_only() {
    let server = ServerProcess::start(&["--time-scale", "0.05", "--api-key", "sk-servesim"]);
    let base = &server.base;
    let c = client();
    let send = |key: Option<&str>| {
        let mut b = c
            .post(format!("{base}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(chat_body(2, false).to_string());
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        b.send()
    };
    // vLLM's middleware body, not its error object.
    for key in [None, Some("sk-wrong")] {
        let resp = send(key).await.expect("answer");
        assert_eq!(resp.status(), 401);
        assert_eq!(json_of(resp).await, json!({"error": "Unauthorized"}));
    }
    assert_eq!(
        send(Some("sk-servesim")).await.expect("answer").status(),
        200
    );
    let models = get(&c, base, "/v1/models").await;
    assert_eq!(models.status(), 401);
    // vLLM's extensions are not behind the key.
    assert_eq!(get(&c, base, "/health").await.status(), 200);
    let metrics = get(&c, base, "/metrics").await;
    assert_eq!(metrics.status(), 200);
    // Prometheus text, as vLLM's Python client serves it.
    assert_eq!(
        metrics.headers()["content-type"],
        "text/plain; version=1.0.0; charset=utf-8"
    );
}

#[tokio::test]
async fn models_version_health_tokenize_detokenize() {
    let server = ServerProcess::start(&["--served-model-name", "my-model"]);
    let base = &server.base;
    let c = client();
    let models: Value = json_of(get(&c, base, "/v1/models").await).await;
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "my-model");
    assert_eq!(models["data"][0]["max_model_len"], 32768);
    let version: Value = json_of(get(&c, base, "/version").await).await;
    assert!(version["version"].is_string());
    assert_eq!(get(&c, base, "/health").await.status(), 200);
    let tok = json_of(
        post(
            base,
            "/tokenize",
            &json!({"model": "my-model", "prompt": "hello world"}),
        )
        .await,
    )
    .await;
    assert_eq!(tok["count"], 2);
    assert_eq!(tok["max_model_len"], 32768);
    let ids = tok["tokens"].clone();
    let detok = json_of(
        post(
            base,
            "/detokenize",
            &json!({"model": "my-model", "tokens": ids}),
        )
        .await,
    )
    .await;
    assert_eq!(detok["prompt"], "hello world");
    let chat = json_of(
        post(
            base,
            "/tokenize",
            &json!({"messages": [{"role": "user", "content": "hello world"}]}),
        )
        .await,
    )
    .await;
    assert!(
        chat["count"].as_u64().expect("count") > 2,
        "the chat template counts"
    );
    // The tokens are the templated prompt, as many as counted.
    let tokens = chat["tokens"].as_array().expect("tokens");
    assert_eq!(chat["count"], tokens.len());
    // Ids that are not UTF-8 on their own decode with replacement characters, as vLLM's do.
    let detok = json_of(post(base, "/detokenize", &json!({"tokens": [100, 101, 102]})).await).await;
    assert!(
        detok["prompt"]
            .as_str()
            .expect("a prompt")
            .contains('\u{fffd}'),
        "{detok}"
    );
    expect_error(
        post(base, "/tokenize", &json!({"model": "nope", "prompt": "x"})).await,
        404,
    )
    .await;
}

#[tokio::test]
async fn client_disconnect_aborts_and_frees_kv_blocks() {
    // Real time: a 30,000-token answer would run for minutes.
    let server = ServerProcess::start(&[]);
    let base = &server.base;
    let long_prompt = "gpu scheduler memory bandwidth ".repeat(400);
    let body = json!({
        "model": "local",
        "messages": [{"role": "user", "content": long_prompt}],
        "max_tokens": 30000,
        "ignore_eos": true,
        "stream": true,
    });
    let resp = post(base, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.expect("a first event").expect("bytes");
    assert!(first.starts_with(b"data: "));
    let busy = wait_metrics(base, SETTLE, |m| {
        sample(m, "vllm:num_requests_running{").is_some_and(|v| v == 1.0)
    })
    .await;
    let kv = sample(&busy, "vllm:kv_cache_usage_perc{").expect("kv gauge");
    assert!(kv > 0.0, "the running request holds blocks");

    drop(stream);
    let freed = wait_metrics(base, SETTLE, |m| {
        sample(m, "vllm:num_requests_running{") == Some(0.0)
            && sample(m, "vllm:kv_cache_usage_perc{") == Some(0.0)
    })
    .await;
    assert_eq!(
        sample(&freed, "finished_reason=\"abort\""),
        Some(1.0),
        "{freed}"
    );

    // A non-streaming client that gives up (here: its timeout) aborts its request too. (The answer
    // cannot be ready in 2 s however fast the machine: 30,000 tokens are modelled 22 ms apart.)
    let mut quiet = body.clone();
    quiet["stream"] = json!(false);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("an HTTP client");
    let gave_up = impatient
        .post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(quiet.to_string())
        .send()
        .await;
    assert!(gave_up.is_err(), "a 30,000-token answer takes minutes");
    let freed = wait_metrics(base, SETTLE, |m| {
        sample(m, "finished_reason=\"abort\"") == Some(2.0)
    })
    .await;
    assert_eq!(sample(&freed, "vllm:kv_cache_usage_perc{"), Some(0.0));
}

#[tokio::test]
async fn metrics_move_with_the_load() {
    let server = ServerProcess::start(FAST);
    let base = &server.base;
    let before = metrics(base).await;
    for name in [
        "# TYPE vllm:num_requests_running gauge",
        "# TYPE vllm:num_requests_waiting gauge",
        "# TYPE vllm:kv_cache_usage_perc gauge",
        "# TYPE vllm:num_preemptions_total counter",
        "# TYPE vllm:prompt_tokens_total counter",
        "# TYPE vllm:generation_tokens_total counter",
        "# TYPE vllm:request_success_total counter",
        "# TYPE vllm:time_to_first_token_seconds histogram",
        "# TYPE vllm:inter_token_latency_seconds histogram",
        "# TYPE vllm:e2e_request_latency_seconds histogram",
        "# TYPE vllm:request_queue_time_seconds histogram",
        "# TYPE vllm:request_prefill_time_seconds histogram",
        "# TYPE vllm:request_decode_time_seconds histogram",
        "# TYPE vllm:request_prompt_tokens histogram",
        "# TYPE vllm:request_generation_tokens histogram",
        "# TYPE vllm:estimated_flops_per_gpu_total counter",
        "# TYPE vllm:estimated_read_bytes_per_gpu_total counter",
        "# TYPE vllm:estimated_write_bytes_per_gpu_total counter",
        "# TYPE vllm:cache_config_info gauge",
        "# TYPE vllm:engine_sleep_state gauge",
        "# TYPE vllm:num_requests_waiting_by_reason gauge",
        "# TYPE vllm:prompt_tokens_by_source_total counter",
        "# TYPE vllm:prompt_tokens_cached_total counter",
        "# TYPE vllm:prompt_tokens_cached_by_source_total counter",
        "# TYPE vllm:prefix_cache_queries_total counter",
        "# TYPE vllm:prefix_cache_hits_total counter",
        "# TYPE vllm:admission_rejections_total counter",
        "# TYPE vllm:request_max_num_generation_tokens histogram",
        "# TYPE vllm:request_params_n histogram",
        "# TYPE vllm:request_prefill_kv_computed_tokens histogram",
    ] {
        assert!(before.contains(name), "missing {name}");
    }
    assert_eq!(sample(&before, "vllm:generation_tokens_total{"), Some(0.0));
    assert_eq!(
        sample(&before, "vllm:estimated_flops_per_gpu_total{"),
        Some(0.0)
    );
    assert_eq!(
        sample(&before, "sleep_state=\"awake\""),
        Some(1.0),
        "{before}"
    );
    // The default profile's figures, labelled as vLLM labels them.
    let info = before
        .lines()
        .find(|l| l.starts_with("vllm:cache_config_info{"))
        .expect("cache_config_info");
    for label in [
        "block_size=\"16\"",
        "num_gpu_blocks=\"",
        "gpu_memory_utilization=\"",
        "enable_prefix_caching=\"True\"",
        "engine=\"0\"",
    ] {
        assert!(info.contains(label), "{label} in {info}");
    }
    assert!(!info.contains("model_name"), "{info}");
    assert!(info.ends_with(" 1"), "{info}");
    assert!(!before.contains("# EOF"));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let base = base.clone();
            tokio::spawn(async move {
                let r = post(&base, "/v1/chat/completions", &chat_body(10, false)).await;
                assert_eq!(r.status(), 200);
            })
        })
        .collect();
    for h in handles {
        h.await.expect("request task");
    }
    let after = wait_metrics(base, SETTLE, |m| {
        sample(m, "finished_reason=\"length\"") == Some(8.0)
    })
    .await;
    assert_eq!(sample(&after, "vllm:generation_tokens_total{"), Some(80.0));
    assert!(sample(&after, "vllm:prompt_tokens_total{").is_some_and(|v| v > 80.0));
    assert_eq!(
        sample(&after, "vllm:time_to_first_token_seconds_count{"),
        Some(8.0)
    );
    assert_eq!(
        sample(&after, "vllm:request_generation_tokens_sum{"),
        Some(80.0)
    );
    assert_eq!(
        sample(&after, "vllm:inter_token_latency_seconds_count{"),
        Some(72.0)
    );
    // The 8 requests share one prompt: those admitted after the first's blocks were cached read
    // them from the prefix cache. Every way of counting the cached tokens agrees.
    let prompt = sample(&after, "vllm:prompt_tokens_total{").expect("prompt tokens");
    let computed = sample(&after, "source=\"local_compute\"").expect("local_compute");
    let cached = sample(&after, "source=\"local_cache_hit\"").expect("local_cache_hit");
    assert_eq!(computed + cached, prompt, "{after}");
    assert_eq!(
        sample(&after, "vllm:prompt_tokens_cached_total{"),
        Some(cached)
    );
    assert_eq!(sample(&after, "source=\"device\""), Some(cached));
    assert_eq!(
        sample(&after, "vllm:prefix_cache_hits_total{"),
        Some(cached)
    );
    assert_eq!(
        sample(&after, "vllm:prefix_cache_queries_total{"),
        Some(prompt)
    );
    for counter in [
        "vllm:estimated_flops_per_gpu_total{",
        "vllm:estimated_read_bytes_per_gpu_total{",
        "vllm:estimated_write_bytes_per_gpu_total{",
    ] {
        assert!(
            sample(&after, counter).is_some_and(|v| v > 0.0),
            "{counter} in {after}"
        );
    }
    assert_eq!(
        sample(&after, "vllm:request_max_num_generation_tokens_sum{"),
        Some(80.0)
    );
    assert_eq!(sample(&after, "vllm:request_params_n_count{"), Some(8.0));
    assert_eq!(sample(&after, "vllm:request_params_n_sum{"), Some(8.0));
    assert_eq!(
        sample(&after, "vllm:request_prefill_kv_computed_tokens_sum{"),
        sample(&after, "vllm:request_prompt_tokens_sum{").map(|p| p - cached)
    );
    assert_eq!(sample(&after, "reason=\"capacity\""), Some(0.0));
    assert_eq!(sample(&after, "vllm:num_requests_running{"), Some(0.0));
}

#[tokio::test]
async fn fault_injection_by_header_and_by_rate() {
    let server = ServerProcess::start(FAST);
    let base = &server.base;
    let c = client();
    let with_fault = |fault: &'static str, stream: bool| {
        c.post(format!("{base}/v1/chat/completions"))
            .header("content-type", "application/json")
            .header("x-servesim-fault", fault)
            .body(chat_body(40, stream).to_string())
            .send()
    };
    for (fault, status) in [("500", 500), ("503", 503), ("429", 429), ("400", 400)] {
        let body = expect_error(with_fault(fault, false).await.expect("answer"), status).await;
        if status == 400 {
            assert!(
                body["error"]["message"]
                    .as_str()
                    .expect("message")
                    .contains("maximum context length")
            );
        }
    }
    // A cut stream ends without [DONE], as a broken connection.
    let resp = with_fault("cut", true).await.expect("answer");
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    let mut broken = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => text.push_str(&String::from_utf8_lossy(&b)),
            Err(_) => {
                broken = true;
                break;
            }
        }
    }
    assert!(broken, "the stream should break: {text}");
    assert!(!text.contains("[DONE]"));
    let tokens = text.matches("\"content\":\"").count();
    assert!((10..40).contains(&tokens), "cut halfway: {tokens} events");
    // The cut request left the engine.
    wait_metrics(base, SETTLE, |m| {
        sample(m, "vllm:num_requests_running{") == Some(0.0)
    })
    .await;
    // A spike delays the first token by the configured time (1 s simulated = 50 ms here): a lower
    // bound, which no machine's load can break (it only makes the answer later).
    let t0 = Instant::now();
    let resp = with_fault("spike", false).await.expect("answer");
    assert_eq!(resp.status(), 200);
    assert!(t0.elapsed() >= Duration::from_millis(50));
    expect_error(with_fault("bogus", false).await.expect("answer"), 400).await;

    // By rate: every request fails with 429 at rate 1.
    let server = ServerProcess::start(&["--time-scale", "0.05", "--fault-429", "1"]);
    for _ in 0..3 {
        expect_error(
            post(&server.base, "/v1/chat/completions", &chat_body(3, false)).await,
            429,
        )
        .await;
    }
}

#[tokio::test]
async fn graceful_shutdown_finishes_streams_in_flight() {
    let mut server = ServerProcess::start(&["--time-scale", "0.2"]);
    // ~100 tokens at 0.2 × 22 ms ≈ 0.45 s of streaming.
    let resp = post(&server.base, "/v1/chat/completions", &chat_body(100, true)).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    let first = stream.next().await.expect("an event").expect("bytes");
    text.push_str(&String::from_utf8_lossy(&first));
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(
            &chunk.expect("the stream completes"),
        ));
    }
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let exit = server
        .wait_exit(SETTLE)
        .expect("the server exits after its streams end");
    assert!(exit.success(), "{:?}", server.log());
}

#[tokio::test]
async fn async_openai_talks_to_it_unmodified() {
    use async_openai::Client;
    use async_openai::config::OpenAIConfig;
    use async_openai::types::chat::{
        ChatCompletionRequestUserMessageArgs, ChatCompletionStreamOptions,
        CreateChatCompletionRequestArgs, FinishReason, Prompt,
    };
    use async_openai::types::completions::CreateCompletionRequestArgs;

    let server = ServerProcess::start(&["--time-scale", "0.05", "--api-key", "sk-servesim"]);
    let client = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("{}/v1", server.base))
            .with_api_key("sk-servesim"),
    );
    let message = ChatCompletionRequestUserMessageArgs::default()
        .content(PROMPT)
        .build()
        .expect("a message");
    let request = CreateChatCompletionRequestArgs::default()
        .model("local")
        .messages([message.into()])
        .max_tokens(6u32)
        .build()
        .expect("a request");
    let answer = client
        .chat()
        .create(request.clone())
        .await
        .expect("chat answer");
    assert_eq!(answer.choices.len(), 1);
    assert_eq!(answer.choices[0].finish_reason, Some(FinishReason::Length));
    assert!(
        answer.choices[0]
            .message
            .content
            .as_deref()
            .is_some_and(|c| !c.is_empty())
    );
    assert_eq!(answer.usage.as_ref().map(|u| u.completion_tokens), Some(6));

    let mut streaming = request;
    streaming.stream_options = Some(ChatCompletionStreamOptions {
        include_usage: Some(true),
        include_obfuscation: None,
    });
    let mut stream = client
        .chat()
        .create_stream(streaming)
        .await
        .expect("a stream");
    let (mut tokens, mut usage, mut finish) = (0, None, None);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("a parsed chunk");
        if let Some(u) = chunk.usage {
            usage = Some(u.completion_tokens);
        }
        for choice in chunk.choices {
            if choice
                .delta
                .content
                .as_deref()
                .is_some_and(|c| !c.is_empty())
            {
                tokens += 1;
            }
            finish = finish.or(choice.finish_reason);
        }
    }
    assert_eq!(
        (tokens, usage, finish),
        (6, Some(6), Some(FinishReason::Length))
    );

    let request = CreateCompletionRequestArgs::default()
        .model("local")
        .prompt(Prompt::String("hello".into()))
        .max_tokens(4u32)
        .build()
        .expect("a request");
    let answer = client
        .completions()
        .create(request.clone())
        .await
        .expect("completion");
    assert_eq!(answer.usage.as_ref().map(|u| u.completion_tokens), Some(4));
    let mut stream = client
        .completions()
        .create_stream(request)
        .await
        .expect("a stream");
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        for choice in chunk.expect("a parsed chunk").choices {
            text.push_str(&choice.text);
        }
    }
    assert!(!text.is_empty());

    // The client surfaces the server's error body.
    let bad = CreateChatCompletionRequestArgs::default()
        .model("nope")
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content("x")
            .build()
            .expect("a message")
            .into()])
        .build()
        .expect("a request");
    let err = client.chat().create(bad).await.expect_err("unknown model");
    assert!(err.to_string().contains("does not exist"), "{err}");
}

/// `vllm serve`'s command line on `servesim serve` (issue 17): each flag's effect, or its notice.
mod vllm_command_line {
    use super::*;
    use std::process::Command;

    /// The chat body with `model` named.
    fn chat_for(model: &str, max_tokens: u32) -> Value {
        let mut body = chat_body(max_tokens, false);
        body["model"] = json!(model);
        body
    }

    async fn models(base: &str) -> Value {
        json_of(get(&client(), base, "/v1/models").await).await
    }

    /// The one start-up line containing `needle` (panics when there is none or several).
    fn log_line(server: &ServerProcess, needle: &str) -> String {
        let lines: Vec<String> = server
            .log()
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect();
        assert_eq!(lines.len(), 1, "{needle:?} in {:#?}", server.log());
        lines[0].clone()
    }

    /// Stop the server with SIGTERM and return its whole log (up to its last line, "shut down").
    fn stop(mut server: ServerProcess) -> Vec<String> {
        let status = Command::new("kill")
            .args(["-TERM", &server.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        assert!(server.wait_exit(SETTLE).is_some(), "the server exits");
        // The reader thread may still be draining the pipe: wait for the last line.
        let deadline = Instant::now() + SETTLE;
        loop {
            let log = server.log();
            if log.iter().any(|l| l.ends_with(" shut down")) {
                return log;
            }
            assert!(Instant::now() < deadline, "no shut-down line: {log:#?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A label's value in `vllm:cache_config_info`.
    fn cache_label(metrics: &str, label: &str) -> String {
        let line = metrics
            .lines()
            .find(|l| l.starts_with("vllm:cache_config_info{"))
            .expect("cache_config_info");
        let at = line.find(&format!("{label}=\"")).expect("label") + label.len() + 2;
        line[at..].split('"').next().unwrap_or_default().to_string()
    }

    /// `servesim ARGS` that must fail: its stderr.
    fn refused(args: &[&str]) -> String {
        let out = crate::support::servesim(args);
        assert!(!out.status.success(), "servesim {args:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    #[tokio::test]
    async fn done_when_a_hugging_face_id_is_served_under_its_name() {
        let server = ServerProcess::start(&[
            "Qwen/Qwen2.5-7B-Instruct",
            "--max-num-seqs",
            "64",
            "--gpu-memory-utilization",
            "0.8",
        ]);
        let list = models(&server.base).await;
        assert_eq!(list["data"][0]["id"], "Qwen/Qwen2.5-7B-Instruct", "{list}");
        assert_eq!(list["data"][0]["root"], "Qwen/Qwen2.5-7B-Instruct");
        assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
        assert!(log_line(&server, "max_num_seqs=").contains("max_num_seqs=64,"));
        let m = metrics(&server.base).await;
        assert_eq!(cache_label(&m, "gpu_memory_utilization"), "0.8");
        let chat = json_of(
            post(
                &server.base,
                "/v1/chat/completions",
                &chat_for("Qwen/Qwen2.5-7B-Instruct", 3),
            )
            .await,
        )
        .await;
        assert_eq!(chat["model"], "Qwen/Qwen2.5-7B-Instruct", "{chat}");
        // The old name is not served any more.
        let resp = post(&server.base, "/v1/chat/completions", &chat_for("local", 3)).await;
        assert_eq!(resp.status(), 404);
    }

    /// Issue 15's flags on vLLM's command line: `-tp`, `--kv-cache-dtype`, `--quantization` size the
    /// engine (a 70B model over four H100s, its KV cache in fp8), vLLM's refusals hold, and
    /// `--hf-config` serves a model outside the catalogue under its id.
    #[tokio::test]
    async fn parallelism_quantisation_and_hf_config_flags_change_the_engine() {
        let blocks = |server: &ServerProcess| -> u64 {
            let line = log_line(server, "# GPU blocks: ");
            line.split("# GPU blocks: ")
                .nth(1)
                .and_then(|r| r.split(',').next())
                .and_then(|n| n.trim().parse().ok())
                .expect("block count")
        };
        let base = [
            "meta-llama/Llama-3.1-70B-Instruct",
            "--gpu",
            "h100-sxm",
            "--max-model-len",
            "16k",
        ];
        let tp4 = ServerProcess::start(&[&base[..], &["-tp", "4"]].concat());
        let m = metrics(&tp4.base).await;
        assert_eq!(cache_label(&m, "cache_dtype"), "auto");
        let list = models(&tp4.base).await;
        assert_eq!(list["data"][0]["id"], "meta-llama/Llama-3.1-70B-Instruct");
        let fp8 = ServerProcess::start(
            &[
                &base[..],
                &["--tensor-parallel-size", "4", "--kv-cache-dtype", "fp8"],
            ]
            .concat(),
        );
        assert_eq!(cache_label(&metrics(&fp8.base).await, "cache_dtype"), "fp8");
        // Half the bytes per token: twice the blocks in the same memory.
        let (b16, b8) = (blocks(&tp4), blocks(&fp8));
        assert!(b8 > b16 * 19 / 10 && b8 < b16 * 21 / 10, "{b16} vs {b8}");
        let w8 =
            ServerProcess::start(&[&base[..], &["-tp", "4", "--quantization", "fp8"]].concat());
        // Weights halve: what they give back holds more KV.
        assert!(blocks(&w8) > b16, "{} vs {b16}", blocks(&w8));

        let err = refused(&["serve", base[0], "--gpu", "h100-sxm", "-tp", "3"]);
        assert!(
            err.contains("must be divisible by tensor parallel size (3)"),
            "{err}"
        );
        let err = refused(&["serve", base[0], "--gpu", "h100-sxm"]);
        assert!(err.contains("CUDA out of memory"), "{err}");

        let config = format!(
            "{}/fixtures/hf-config/qwen2.5-72b-instruct.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let hf = ServerProcess::start(&[
            "my-org/My-72B",
            "--gpu",
            "h200",
            "-tp",
            "2",
            "--max-model-len",
            "8k",
            "--hf-config",
            &config,
        ]);
        let list = models(&hf.base).await;
        assert_eq!(list["data"][0]["id"], "my-org/My-72B", "{list}");
        let chat = json_of(
            post(
                &hf.base,
                "/v1/chat/completions",
                &chat_for("my-org/My-72B", 3),
            )
            .await,
        )
        .await;
        let n = chat["usage"]["completion_tokens"].as_u64().expect("usage");
        assert!((1..=3).contains(&n), "{chat}");
    }

    /// vLLM's Kubernetes guide ("Deployment with GPUs", https://docs.vllm.ai/en/stable/deployment/k8s/;
    /// the same line since v0.6's deploying_with_k8s) runs this line under `/bin/sh -c`; servesim
    /// installed as `vllm` takes it unchanged, and so does servesim installed as `sh`.
    #[tokio::test]
    async fn a_command_line_from_vllms_docs_starts_servesim_as_vllm() {
        let line = "vllm serve mistralai/Mistral-7B-Instruct-v0.3 --trust-remote-code --enable-chunked-prefill --max_num_batched_tokens 1024";
        let dir = std::env::temp_dir().join(format!("servesim-as-vllm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let link = dir.join("vllm");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(crate::support::servesim_bin(), &link).expect("symlink");
        let mut command = Command::new(&link);
        command
            .args(line.split_whitespace().skip(1))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .env_remove("RUST_LOG");
        let server = ServerProcess::spawn(command);
        let list = models(&server.base).await;
        assert_eq!(list["data"][0]["id"], "mistralai/Mistral-7B-Instruct-v0.3");
        let engine = log_line(&server, "max_num_seqs=");
        assert!(
            engine.contains("max_num_batched_tokens=1024,")
                && engine.contains("chunked_prefill=true"),
            "{engine}"
        );
        assert!(
            log_line(&server, "accepted and ignored").ends_with(": --trust-remote-code"),
            "{:#?}",
            server.log()
        );
        let resp = post(
            &server.base,
            "/v1/chat/completions",
            &chat_for("mistralai/Mistral-7B-Instruct-v0.3", 2),
        )
        .await;
        assert_eq!(resp.status(), 200);
        drop(server);
        // As `vllm`, only `serve` is answered.
        let out = Command::new(&link)
            .args(["bench", "--url", "x"])
            .output()
            .expect("runs");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("answers `vllm serve ...` only"));
        // The guide's manifest form, `command: ["/bin/sh", "-c"]` with the line as its argument:
        // the image links /bin/sh to the binary, which splits the line as a shell would.
        let sh = dir.join("sh");
        std::os::unix::fs::symlink(crate::support::servesim_bin(), &sh).expect("symlink");
        let mut command = Command::new(&sh);
        command
            .args(["-c", &format!("{line} --host 127.0.0.1 --port 0")])
            .env_remove("RUST_LOG");
        let server = ServerProcess::spawn(command);
        let list = models(&server.base).await;
        assert_eq!(list["data"][0]["id"], "mistralai/Mistral-7B-Instruct-v0.3");
        drop(server);
        let out = Command::new(&sh)
            .args(["-c", "vllm serve $MODEL"])
            .output()
            .expect("runs");
        assert!(!out.status.success());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn model_flag_several_served_names_and_several_keys() {
        let server = ServerProcess::start(&[
            "--model",
            "qwen/qwen2.5-0.5b-instruct",
            "--served-model-name",
            "first",
            "second",
            "--api-key",
            "k1",
            "k2",
        ]);
        let c = client();
        let list = c
            .get(format!("{}/v1/models", server.base))
            .bearer_auth("k2")
            .send()
            .await
            .expect("models");
        let list = json_of(list).await;
        let ids: Vec<&str> = list["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter_map(|m| m["id"].as_str())
            .collect();
        assert_eq!(ids, ["first", "second"]);
        assert_eq!(list["data"][1]["root"], "Qwen/Qwen2.5-0.5B-Instruct");
        for key in ["k1", "k2"] {
            let chat = c
                .post(format!("{}/v1/chat/completions", server.base))
                .bearer_auth(key)
                .json(&chat_for("second", 2))
                .send()
                .await
                .expect("chat");
            assert_eq!(chat.status(), 200);
            // Answers carry the first name, as vLLM's do.
            assert_eq!(json_of(chat).await["model"], "first");
        }
        let resp = c
            .post(format!("{}/v1/chat/completions", server.base))
            .bearer_auth("k3")
            .json(&chat_for("first", 2))
            .send()
            .await
            .expect("chat");
        assert_eq!(resp.status(), 401);
        let resp = c
            .post(format!("{}/v1/chat/completions", server.base))
            .bearer_auth("k1")
            .json(&chat_for("third", 2))
            .send()
            .await
            .expect("chat");
        assert_eq!(resp.status(), 404);
        let err = json_of(resp).await;
        assert_eq!(
            err["error"]["message"],
            "The model `third` does not exist. Valid aliases: first, second."
        );
        // The metrics carry the first name.
        let m = c
            .get(format!("{}/metrics", server.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        assert!(m.contains("model_name=\"first\""));
        assert!(!m.contains("model_name=\"second\""));
    }

    #[tokio::test]
    async fn max_num_seqs_bounds_the_running_batch() {
        let mut args = vec!["Qwen/Qwen2.5-0.5B-Instruct", "--max-num-seqs", "2"];
        args.extend_from_slice(FAST);
        let server = ServerProcess::start(&args);
        let base = server.base.clone();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let base = base.clone();
            tasks.push(tokio::spawn(async move {
                post(
                    &base,
                    "/v1/chat/completions",
                    &chat_for("Qwen/Qwen2.5-0.5B-Instruct", 3000),
                )
                .await
                .status()
            }));
        }
        let m = wait_metrics(&base, SETTLE, |m| {
            sample(m, "vllm:num_requests_waiting{") == Some(2.0)
        })
        .await;
        assert_eq!(sample(&m, "vllm:num_requests_running{"), Some(2.0), "{m}");
        drop(server);
        for t in tasks {
            let _ = t.await;
        }
    }

    #[tokio::test]
    async fn memory_block_and_length_flags_size_the_cache() {
        let blocks = |m: &str| -> u64 { cache_label(m, "num_gpu_blocks").parse().expect("blocks") };
        let base = ServerProcess::start(&["Qwen/Qwen2.5-7B-Instruct"]);
        let m0 = metrics(&base.base).await;
        let less = ServerProcess::start(&[
            "Qwen/Qwen2.5-7B-Instruct",
            "--gpu-memory-utilization",
            "0.6",
            "--block-size",
            "32",
            "--max-model-len",
            "4k",
        ]);
        let m1 = metrics(&less.base).await;
        assert_eq!(cache_label(&m1, "block_size"), "32");
        assert_eq!(cache_label(&m1, "gpu_memory_utilization"), "0.6");
        // Less memory and twice the block: well under half the blocks.
        assert!(
            blocks(&m1) * 2 < blocks(&m0),
            "{} vs {}",
            blocks(&m1),
            blocks(&m0)
        );
        assert_eq!(models(&less.base).await["data"][0]["max_model_len"], 4000);
        assert_eq!(models(&base.base).await["data"][0]["max_model_len"], 32768);
        let fixed = ServerProcess::start(&[
            "Qwen/Qwen2.5-7B-Instruct",
            "--num-gpu-blocks-override",
            "1000",
            "--max-model-len",
            "auto",
        ]);
        let m2 = metrics(&fixed.base).await;
        assert_eq!(cache_label(&m2, "num_gpu_blocks"), "1000");
        // auto: the longest context the cache holds (1000 blocks of 16 tokens, less the null
        // block), below the model's 32768.
        assert_eq!(
            models(&fixed.base).await["data"][0]["max_model_len"],
            999 * 16
        );
        log_line(
            &fixed,
            "Auto-fit max_model_len: reduced from 32768 to 15984",
        );
    }

    #[tokio::test]
    async fn chunked_prefill_prefix_caching_and_prompt_token_details() {
        let server = ServerProcess::start(&[
            "Qwen/Qwen2.5-7B-Instruct",
            "--no-enable-chunked-prefill",
            "--no-enable-prefix-caching",
            "--max-model-len",
            "30000",
        ]);
        let engine = log_line(&server, "max_num_seqs=");
        assert!(
            // vLLM: without chunked prefill the budget grows to max_model_len.
            engine.contains("max_num_batched_tokens=30000,")
                && engine.contains("chunked_prefill=false")
                && engine.contains("enable_prefix_caching=false"),
            "{engine}"
        );
        let on = ServerProcess::start(&[
            "Qwen/Qwen2.5-7B-Instruct",
            "--enable-chunked-prefill",
            "--enable-prefix-caching",
            "--enable-prompt-tokens-details",
            "--time-scale",
            "0.05",
        ]);
        let engine = log_line(&on, "max_num_seqs=");
        assert!(engine.contains("chunked_prefill=true"), "{engine}");
        let body = chat_for("Qwen/Qwen2.5-7B-Instruct", 2);
        let _ = json_of(post(&on.base, "/v1/chat/completions", &body).await).await;
        let second = json_of(post(&on.base, "/v1/chat/completions", &body).await).await;
        let cached = &second["usage"]["prompt_tokens_details"]["cached_tokens"];
        assert!(cached.as_u64().is_some_and(|n| n > 0), "{second}");
        let off = json_of(post(&server.base, "/v1/chat/completions", &body).await).await;
        assert_eq!(off["usage"]["prompt_tokens_details"], Value::Null);
    }

    #[tokio::test]
    async fn seed_decides_the_answer_text() {
        let text = |s: &'static str| async move {
            let server = ServerProcess::start(&[
                "Qwen/Qwen2.5-0.5B-Instruct",
                "--seed",
                s,
                "--time-scale",
                "0.05",
            ]);
            let chat = json_of(
                post(
                    &server.base,
                    "/v1/chat/completions",
                    &chat_for("Qwen/Qwen2.5-0.5B-Instruct", 12),
                )
                .await,
            )
            .await;
            chat["choices"][0]["message"]["content"]
                .as_str()
                .expect("content")
                .to_string()
        };
        let a = text("7").await;
        assert_eq!(a, text("7").await);
        assert_ne!(a, text("8").await);
    }

    #[tokio::test]
    async fn dtype_log_level_and_ignored_flags_are_noticed_once() {
        let server = ServerProcess::start(&[
            "Qwen/Qwen2.5-7B-Instruct",
            "--dtype",
            "half",
            "--uvicorn-log-level",
            "warning",
            "--trust-remote-code",
            "--download-dir",
            "/models",
            "--tokenizer",
            "Qwen/Qwen2.5-7B-Instruct",
            "--revision",
            "main",
            "--disable-log-stats",
            "--disable-log-requests",
            "--swap-space",
            "4",
            "--enforce-eager",
            "--max-logprobs",
            "5",
            "--chat-template",
            "/t.jinja",
            "--generation-config",
            "vllm",
            "--load-format",
            "dummy",
            "--trust-remote-code",
        ]);
        let ignored = log_line(&server, "accepted and ignored");
        assert!(
            ignored.ends_with(
                ": --trust-remote-code, --download-dir, --tokenizer, --revision, --disable-log-stats, \
                 --disable-log-requests, --swap-space, --enforce-eager, --max-logprobs, --chat-template, \
                 --generation-config, --load-format"
            ),
            "{ignored}"
        );
        assert!(
            log_line(&server, "gone from vLLM 0.32")
                .contains("--disable-log-requests, --swap-space")
        );
        assert!(log_line(&server, "--dtype half").contains("unchanged"));
        // --uvicorn-log-level warning silences the HTTP layer's info lines, not vLLM's own.
        let quiet = stop(server);
        assert!(
            !quiet
                .iter()
                .any(|l| l.contains("Application startup complete."))
        );
        assert!(quiet.iter().any(|l| l.contains("listening on")));
        let default = stop(ServerProcess::start(&[]));
        assert!(
            default
                .iter()
                .any(|l| l.contains("Application startup complete."))
        );
        assert!(
            default
                .iter()
                .any(|l| l.contains("Uvicorn running on http://127.0.0.1:"))
        );
        assert!(!default.iter().any(|l| l.contains("accepted and ignored")));
    }

    #[test]
    fn wrong_values_are_refused_in_vllms_words() {
        for (args, words) in [
            (
                &["--dtype", "bogus"][..],
                "invalid choice: 'bogus' (choose from 'auto', 'bfloat16', 'float', 'float16', 'float32', 'half')",
            ),
            (
                &["--uvicorn-log-level", "loud"][..],
                "invalid choice: 'loud' (choose from 'critical', 'debug', 'error', 'info', 'trace', 'warning')",
            ),
            (&["--max-num-seqs", "abc"][..], "invalid int value: 'abc'"),
            (&["--port", "x"][..], "invalid int value: 'x'"),
            (
                &["--gpu-memory-utilization", "abc"][..],
                "invalid float value: 'abc'",
            ),
            (
                &["--gpu-memory-utilization", "1.5"][..],
                "Input should be less than or equal to 1",
            ),
            (
                &["--max-num-seqs", "0"][..],
                "Input should be greater than or equal to 1",
            ),
            (
                &["--max-num-batched-tokens", "1.5K"][..],
                "Decimals are not allowed with binary suffixes like K.",
            ),
        ] {
            let mut all = vec!["serve", "Qwen/Qwen2.5-7B-Instruct"];
            all.extend_from_slice(args);
            let err = refused(&all);
            assert!(err.contains(words), "{args:?}: {err}");
        }
        let err = refused(&[
            "serve",
            "Qwen/Qwen2.5-7B-Instruct",
            "--max-model-len",
            "40000",
        ]);
        assert!(
            err.contains(
                "User-specified max_model_len (40000) is greater than the derived max_model_len"
            ),
            "{err}"
        );
        let err = refused(&[
            "serve",
            "Qwen/Qwen2.5-7B-Instruct",
            "--no-enable-chunked-prefill",
            "--max-num-batched-tokens",
            "4096",
        ]);
        assert!(
            err.contains("max_num_batched_tokens (4096) is smaller than max_model_len (32768)."),
            "{err}"
        );
        let err = refused(&[
            "serve",
            "Qwen/Qwen2.5-7B-Instruct",
            "--max-num-seqs",
            "4096",
        ]);
        assert!(
            err.contains("max_num_batched_tokens (2048) must be greater than or equal to max_num_seqs (4096)."),
            "{err}"
        );
        let err = refused(&["serve", "acme/Unknown-7B"]);
        assert!(
            err.contains("--hf-config") && err.contains("Qwen/Qwen2.5-7B-Instruct"),
            "{err}"
        );
        let err = refused(&["serve", "Qwen/Qwen2.5-7B-Instruct", "--dtype", "float32"]);
        assert!(err.contains("16-bit"), "{err}");
        let err = refused(&[
            "serve",
            "Qwen/Qwen2.5-7B-Instruct",
            "--profile",
            "h200-qwen2.5-7b",
        ]);
        assert!(err.contains("not both"), "{err}");
        // Not a vLLM flag: clap's own refusal.
        let err = refused(&["serve", "--no-such-flag"]);
        assert!(err.contains("--no-such-flag"), "{err}");
    }

    #[tokio::test]
    async fn the_gpu_comes_from_the_flag_or_the_environment_and_health_checks_it() {
        let mut command = Command::new(crate::support::servesim_bin());
        command
            .args(["serve", "Qwen/Qwen2.5-7B-Instruct", "--port", "0"])
            .env("SERVESIM_GPU", "h200")
            .env("SERVESIM_MAX_NUM_SEQS", "48")
            .env("SERVESIM_PROFILE", "l4-qwen2.5-0.5b");
        let server = ServerProcess::spawn(command);
        assert!(log_line(&server, "profile h200+qwen2.5-7b-instruct").contains("NVIDIA H200"));
        assert!(log_line(&server, "max_num_seqs=").contains("max_num_seqs=48,"));
        let health =
            crate::support::servesim(&["health", "--url", &format!("{}/health", server.base)]);
        assert!(health.status.success(), "{health:?}");
        let flag = ServerProcess::start(&["Qwen/Qwen2.5-7B-Instruct", "--gpu", "l40s"]);
        log_line(&flag, "profile l40s+qwen2.5-7b-instruct");
        let url = format!("{}/health", flag.base);
        drop(flag);
        let down = crate::support::servesim(&["health", "--url", &url, "--timeout", "2"]);
        assert!(!down.status.success());
        // Without a model the profile (here from the environment) is served as `local`.
        let mut command = Command::new(crate::support::servesim_bin());
        command
            .args(["serve", "--port", "0"])
            .env("SERVESIM_PROFILE", "l4-qwen2.5-0.5b");
        let profile = ServerProcess::spawn(command);
        assert_eq!(models(&profile.base).await["data"][0]["id"], "local");
        log_line(&profile, "profile l4-qwen2.5-0.5b");
    }
}
