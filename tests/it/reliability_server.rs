//! Reliability of `servesim serve` against sloppy and hostile clients (issue 6): the bad-request
//! corpus of `fixtures/bad-requests/`, slow clients, ten thousand aborted streams, a flood against
//! a bounded queue, and a bounded soak at the knee with RSS and file descriptors watched. The real
//! binary on a loopback port; requests are written as raw bytes (so that malformed ones really
//! are malformed on the wire); every wait polls a condition with a deadline. Sizes and durations
//! are printed (`cargo test --test it reliability_server -- --nocapture`) for the README.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::{ServerProcess, open_fds, rss_kib};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The heavy tests share two cores with everything else: one at a time.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long the server may take to settle (go idle, close its connections) after a load: a bound on
/// a hang, far above the seconds it takes even on a loaded 2-core machine.
const SETTLE: Duration = Duration::from_secs(60);

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/bad-requests")
}

fn addr_of(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

/// What came back on a raw connection.
#[derive(Debug)]
struct WireResponse {
    /// Everything the server sent.
    raw: Vec<u8>,
    status: Option<u16>,
    head: String,
    body: Vec<u8>,
    elapsed: Duration,
    /// The server closed the connection (or reset it) before the limit.
    closed: bool,
}

/// Write `request` (ignoring write errors: the server may answer and close before reading it
/// all) while reading the answer until the server closes the connection or `limit` passes. With
/// `hold`, the connection is kept open after writing (a client that stopped sending).
async fn exchange(addr: &str, request: Vec<u8>, limit: Duration) -> WireResponse {
    let start = Instant::now();
    let stream = TcpStream::connect(addr).await.expect("the server accepts");
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        // Keep the write half open: closing it would tell the server the request is over.
        wr
    });
    let mut raw = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    let elapsed = start.elapsed();
    writer.abort();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n");
    let (head, body) = match split {
        Some(p) => (
            String::from_utf8_lossy(&raw[..p]).into_owned(),
            raw[p + 4..].to_vec(),
        ),
        None => (String::from_utf8_lossy(&raw).into_owned(), Vec::new()),
    };
    let status = status_of(&head);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    WireResponse {
        raw,
        status,
        head,
        body,
        elapsed,
        closed,
    }
}

/// The status of an answer's head (`HTTP/1.1 200 OK` or `HTTP/1.0 ...`).
fn status_of(head: &str) -> Option<u16> {
    head.strip_prefix("HTTP/1.1 ")
        .or_else(|| head.strip_prefix("HTTP/1.0 "))
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
}

/// The statuses of the answers in `raw`, in order: each head, then a body framed by its
/// `Content-Length` or chunked coding (an answer without either runs to the end).
fn statuses(mut raw: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let Some(status) = status_of(&head.to_ascii_uppercase()) else {
            break;
        };
        out.push(status);
        raw = &raw[end + 4..];
        let length = head.lines().find_map(|l| {
            l.strip_prefix("content-length:")
                .and_then(|v| v.trim().parse::<usize>().ok())
        });
        if let Some(n) = length {
            raw = &raw[n.min(raw.len())..];
        } else if head.contains("transfer-encoding: chunked") {
            match raw.windows(5).position(|w| w == b"0\r\n\r\n") {
                Some(p) => raw = &raw[p + 5..],
                None => break,
            }
        } else {
            break;
        }
    }
    out
}

/// A framing case (one with `requests`: how many requests its bytes hold for a server that
/// frames them as RFC 9112 says): every request is answered with `status`, or the server rejects
/// the framing with a 400; either way it closes the connection then, and nothing behind a
/// rejection (or behind the requests) is answered: no request vanishes, none is smuggled in.
fn check_framing(name: &str, case: &Value, answer: &WireResponse) {
    let requests = case["requests"].as_u64().expect("requests") as usize;
    let want = case["status"].as_u64().expect("a status") as u16;
    let got = statuses(&answer.raw);
    let all_served = got.len() == requests && got.iter().all(|s| *s == want);
    let rejected = !got.is_empty()
        && got.len() <= requests
        && got.last() == Some(&400)
        && got[..got.len() - 1].iter().all(|s| *s == want);
    assert!(
        all_served || rejected,
        "{name}: answers {got:?} to {requests} request(s): {}",
        String::from_utf8_lossy(&answer.raw)
    );
    assert!(answer.closed, "{name}: the connection stayed open");
    println!("{name}: answers {got:?} to {requests} request(s), then closed");
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(p) = b.windows(2).position(|w| w == b"\r\n") {
        let len = usize::from_str_radix(String::from_utf8_lossy(&b[..p]).trim(), 16).unwrap_or(0);
        if len == 0 || b.len() < p + 2 + len {
            break;
        }
        out.extend_from_slice(&b[p + 2..p + 2 + len]);
        b = &b[(p + 4 + len).min(b.len())..];
    }
    out
}

/// An HTTP/1.1 request with `Connection: close`.
fn http_request(
    method: &str,
    path: &str,
    content_type: Option<&str>,
    headers: &[(String, String)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" || !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

const VALID_CHAT: &str =
    r#"{"model":"local","messages":[{"role":"user","content":"Say hi."}],"max_tokens":2}"#;

/// A request of a case of `fixtures/bad-requests/cases.json`.
fn case_request(case: &Value) -> Vec<u8> {
    if let Some(raw) = case["raw"].as_str() {
        return raw.as_bytes().to_vec();
    }
    let method = case["method"].as_str().unwrap_or("POST");
    let path = case["path"].as_str().unwrap_or("/v1/chat/completions");
    let content_type = match case.get("content_type") {
        None => Some("application/json"),
        Some(v) => v.as_str(),
    };
    let mut headers: Vec<(String, String)> = case["headers"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (
                        h[0].as_str().expect("header name").to_string(),
                        h[1].as_str().expect("header value").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut path = path.to_string();
    let mut body: Vec<u8> = match case["body"].as_str() {
        Some(file) => std::fs::read(fixtures().join(file)).expect("a corpus body"),
        None => Vec::new(),
    };
    let g = &case["generate"];
    let count = g["words"]
        .as_u64()
        .or(g["count"].as_u64())
        .or(g["bytes"].as_u64())
        .unwrap_or(0) as usize;
    match g["kind"].as_str() {
        None => {}
        Some("chat-words") => {
            body = json!({"model": "local", "messages": [{"role": "user", "content": "word ".repeat(count)}]})
                .to_string()
                .into_bytes();
        }
        Some("completion-words") => {
            body = json!({"model": "local", "prompt": "word ".repeat(count)})
                .to_string()
                .into_bytes();
        }
        Some("completion-ids") => {
            body = json!({"model": "local", "prompt": vec![1u32; count]})
                .to_string()
                .into_bytes();
        }
        Some("filler") => {
            body = format!("{{\"prompt\":\"{}\"}}", "a".repeat(count)).into_bytes();
        }
        Some("chunked-filler") => {
            let mut req = format!(
                "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            .into_bytes();
            let body = format!("{{\"prompt\":\"{}\"}}", "a".repeat(count));
            for piece in body.as_bytes().chunks(64 * 1024) {
                req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                req.extend_from_slice(piece);
                req.extend_from_slice(b"\r\n");
            }
            req.extend_from_slice(b"0\r\n\r\n");
            return req;
        }
        Some("chunk-extension") => {
            let mut req = format!(
                "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x};ext={}\r\n{VALID_CHAT}\r\n0\r\n\r\n",
                VALID_CHAT.len(),
                "x".repeat(count)
            );
            req.push_str("GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            return req.into_bytes();
        }
        Some("big-header") => {
            headers.push(("X-Big".into(), "a".repeat(count)));
            body = VALID_CHAT.as_bytes().to_vec();
        }
        Some("many-headers") => {
            for i in 0..count {
                headers.push((format!("X-H-{i}"), "v".into()));
            }
            body = VALID_CHAT.as_bytes().to_vec();
        }
        Some("long-path") => {
            path.push('?');
            path.push_str(&"a".repeat(count));
            body = VALID_CHAT.as_bytes().to_vec();
        }
        Some(other) => panic!("unknown generator {other}"),
    }
    http_request(method, &path, content_type, &headers, &body)
}

/// A valid request right after: the server is still serving.
async fn still_serves(addr: &str, after: &str) {
    let ok = exchange(
        addr,
        http_request(
            "POST",
            "/v1/chat/completions",
            Some("application/json"),
            &[],
            VALID_CHAT.as_bytes(),
        ),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        ok.status,
        Some(200),
        "after {after}: {} {}",
        ok.head,
        String::from_utf8_lossy(&ok.body)
    );
    let v: Value = serde_json::from_slice(&ok.body).expect("a JSON answer");
    assert_eq!(v["usage"]["completion_tokens"], 2, "after {after}");
}

/// Every case of the corpus gets its status and (past the HTTP layer) vLLM's JSON error body;
/// slow clients are cut off after `--request-timeout`; after each case a valid request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_request_corpus() {
    const TIMEOUT_S: f64 = 1.0;
    let server = ServerProcess::start(&["--time-scale", "0.01", "--request-timeout", "1"]);
    let addr = addr_of(&server.base);
    let cases: Vec<Value> = serde_json::from_slice(
        &std::fs::read(fixtures().join("cases.json")).expect("the corpus manifest"),
    )
    .expect("a JSON manifest");
    assert!(cases.len() >= 50, "{} cases", cases.len());
    let started = Instant::now();
    for case in &cases {
        let name = case["name"].as_str().expect("a name");
        let stall = case["stall"].as_bool().unwrap_or(false);
        // A bound on a hang (every answer takes milliseconds, a stall about TIMEOUT_S).
        let answer = exchange(&addr, case_request(case), Duration::from_secs(30)).await;
        if case.get("requests").is_some() {
            check_framing(name, case, &answer);
            still_serves(&addr, name).await;
            continue;
        }
        let want = case["status"].as_u64().map(|s| s as u16);
        assert_eq!(
            answer.status,
            want,
            "{name}: {} {}",
            answer.head,
            String::from_utf8_lossy(&answer.body)
        );
        if stall {
            // Cut off by the server (it closed the connection: a server that never gives up runs
            // into the exchange's limit instead), and not before the timeout. How long after it the
            // close comes is the machine's business: the test once required under 6 s.
            let t = answer.elapsed.as_secs_f64();
            assert!(
                answer.closed,
                "{name}: not closed by the server after {t} s"
            );
            assert!(t >= TIMEOUT_S * 0.9, "{name}: closed after {t} s");
        }
        if case["shape"] == "detail" {
            // FastAPI's own answer, as vLLM gives it for unknown routes and methods.
            let v: Value = serde_json::from_slice(&answer.body).expect("a JSON body");
            assert!(v["detail"].is_string(), "{name}: {v}");
        } else if case["json"].as_bool().unwrap_or(true)
            && let Some(status) = want
        {
            let v: Value = serde_json::from_slice(&answer.body).unwrap_or_else(|e| {
                panic!(
                    "{name}: not JSON ({e}): {}",
                    String::from_utf8_lossy(&answer.body)
                )
            });
            let err = &v["error"];
            assert_eq!(err["code"], status, "{name}: {v}");
            assert!(
                err["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{name}: {v}"
            );
            assert!(err["type"].is_string(), "{name}: {v}");
            assert!(
                err.get("param").is_some(),
                "{name}: param is always present"
            );
            for key in ["type", "param"] {
                if let Some(expected) = case.get(key) {
                    assert_eq!(&err[key], expected, "{name}: {v}");
                }
            }
            assert!(
                answer
                    .head
                    .to_ascii_lowercase()
                    .contains("content-type: application/json"),
                "{name}: {}",
                answer.head
            );
        }
        still_serves(&addr, name).await;
    }
    println!(
        "bad-request corpus: {} cases, each followed by a valid request, in {:.1} s",
        cases.len(),
        started.elapsed().as_secs_f64()
    );
    let m = metrics(&server.base).await;
    assert_eq!(sample(&m, "vllm:num_requests_running{"), Some(0.0));
    assert_eq!(sample(&m, "vllm:num_requests_waiting{"), Some(0.0));
}

async fn metrics(base: &str) -> String {
    let resp = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics answer");
    resp.text().await.expect("metrics text")
}

/// The value of the first sample whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn sum_samples(text: &str, prefix: &str, contains: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix) && l.contains(contains))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn wait_idle(base: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let m = metrics(base).await;
        if sample(&m, "vllm:num_requests_running{") == Some(0.0)
            && sample(&m, "vllm:num_requests_waiting{") == Some(0.0)
            && sample(&m, "vllm:kv_cache_usage_perc{") == Some(0.0)
        {
            return m;
        }
        assert!(Instant::now() < deadline, "never idle: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Seeded dice (splitmix64), so that every run aborts at the same points.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Where a client gives up.
#[derive(Debug, Clone, Copy)]
enum AbortAt {
    /// Halfway through sending the request.
    MidRequest(usize),
    /// Right after sending it, before any answer.
    BeforeAnswer,
    /// After this many bytes of the answer.
    MidStream(usize),
}

async fn abort_one(addr: &str, body: String, at: AbortAt, reset: bool) -> usize {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return 0;
    };
    if reset {
        // A reset instead of a clean close.
        let _ = s.set_zero_linger();
    }
    let req = http_request(
        "POST",
        "/v1/chat/completions",
        Some("application/json"),
        &[],
        body.as_bytes(),
    );
    match at {
        AbortAt::MidRequest(n) => {
            let _ = s.write_all(&req[..n.min(req.len() - 1)]).await;
            0
        }
        AbortAt::BeforeAnswer => {
            let _ = s.write_all(&req).await;
            0
        }
        AbortAt::MidStream(n) => {
            if s.write_all(&req).await.is_err() {
                return 0;
            }
            let mut got = 0;
            let mut buf = [0u8; 4096];
            while got < n {
                match tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await {
                    Ok(Ok(k)) if k > 0 => got += k,
                    _ => break,
                }
            }
            got
        }
    }
}

/// 10 000 streams aborted at seeded random points (mid-request, before the answer, mid-stream;
/// closed or reset), 256 at a time: afterwards nothing runs or waits and no KV block is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_aborted_streams_leave_nothing_behind() {
    let _heavy = HEAVY.lock().await;
    const STREAMS: usize = 10_000;
    const AT_ONCE: usize = 256;
    // A long answer (500+ tokens, modelled 22 ms apart at least) streams for 0.55 s or more of wall
    // time here, while its client leaves within its first ~25 events (~30 ms): for the abort count
    // below to fall under half, most clients would have to stall for half a second each. With a CPU
    // hog beside the test the count was 7 348 (at a time scale of 0.2, 7 626: not worth the 14 s
    // more the test then takes).
    let server = ServerProcess::start(&["--time-scale", "0.05"]);
    let addr = addr_of(&server.base);
    still_serves(&addr, "start-up").await;
    let fds_before = open_fds(server.pid());
    let started = Instant::now();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
    let mut dice = Dice(6);
    let mut tasks = tokio::task::JoinSet::new();
    let mut kinds = [0usize; 3];
    for i in 0..STREAMS {
        // Mostly long answers, which the client leaves while they run; some short ones, which end
        // first.
        let max_tokens = if dice.below(10) == 0 {
            1 + dice.below(50)
        } else {
            500 + dice.below(1500)
        };
        let body = json!({
            "model": "local",
            "messages": [{"role": "user", "content": format!("Stream {i}: count upward from 1.")}],
            "max_tokens": max_tokens,
            "ignore_eos": true,
            "stream": true,
            "stream_options": {"include_usage": true},
        })
        .to_string();
        let at = match dice.below(10) {
            0 => AbortAt::MidRequest(dice.below(body.len() as u64 + 100) as usize),
            1 => AbortAt::BeforeAnswer,
            // A token event is ~250 bytes: leave within the first ~25 events.
            _ => AbortAt::MidStream(dice.below(6000) as usize),
        };
        kinds[match at {
            AbortAt::MidRequest(_) => 0,
            AbortAt::BeforeAnswer => 1,
            AbortAt::MidStream(_) => 2,
        }] += 1;
        let reset = dice.below(2) == 0;
        let permit = std::sync::Arc::clone(&slots)
            .acquire_owned()
            .await
            .expect("semaphore open");
        let addr = addr.clone();
        tasks.spawn(async move {
            let n = abort_one(&addr, body, at, reset).await;
            drop(permit);
            n
        });
        while let Some(done) = tasks.try_join_next() {
            done.expect("client task");
        }
    }
    let mut bytes = 0usize;
    while let Some(done) = tasks.join_next().await {
        bytes += done.expect("client task");
    }
    let sent = started.elapsed();
    let idle = wait_idle(&server.base, SETTLE).await;
    let settled = started.elapsed();
    let aborted = sum_samples(
        &idle,
        "vllm:request_success_total",
        "finished_reason=\"abort\"",
    );
    let finished = sum_samples(&idle, "vllm:request_success_total", "");
    println!(
        "aborted streams: {STREAMS} ({} mid-request, {} before the answer, {} mid-stream; {AT_ONCE} at a time), \
         {:.1} MB read, all sent and dropped in {:.1} s, idle (running = waiting = 0, KV 0 %) at {:.1} s; \
         engine counted {aborted} aborts of {finished} finished",
        kinds[0],
        kinds[1],
        kinds[2],
        bytes as f64 / 1e6,
        sent.as_secs_f64(),
        settled.as_secs_f64()
    );
    // About 3 in 4 streams are long ones their client leaves mid-stream or before the answer; half
    // is the bound (see the time scale above).
    assert!(
        aborted >= STREAMS as f64 / 2.0,
        "most streams were cut by their client"
    );
    still_serves(&addr, "10 000 aborts").await;
    // Every connection was closed on the server's side too.
    if let Some(before) = fds_before {
        let deadline = Instant::now() + SETTLE;
        loop {
            let now = open_fds(server.pid()).expect("fd count");
            if now <= before + 2 {
                println!("server fds: {before} before, {now} after");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "fds {before} -> {now}: connections leak"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client")
}

/// With `--max-waiting 32`, waves of 600 simultaneous requests: each is answered 200 (and runs to
/// its full length) or 503 with `Retry-After`, never anything else; the engine's waiting queue never
/// exceeds the bound; RSS stays flat from wave to wave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_against_a_bounded_queue_gets_503s_and_flat_memory() {
    let _heavy = HEAVY.lock().await;
    const BOUND: usize = 32;
    const FLOOD: usize = 600;
    const MAX_TOKENS: u64 = 32;
    // More waves locally: SERVESIM_FLOOD_WAVES.
    let waves: usize = std::env::var("SERVESIM_FLOOD_WAVES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    // Real time: each admitted request then takes a second or more (32 tokens at the modelled step
    // of a batch of 256), far longer than the client takes to send a wave even on a loaded machine,
    // so the flood really is simultaneous and overflows the bound. (At 0.2 a request took ~0.15 s
    // and, with a CPU hog beside the test, the refusals fell from 128 in the first wave to 31 in
    // the fourth: a slower client spreads its wave over the requests' life.)
    let server = ServerProcess::start(&["--max-waiting", "32"]);
    let base = server.base.clone();
    let pid = server.pid();
    let client = http_client();
    let body = json!({
        "model": "local",
        "messages": [{"role": "user", "content": "Count upward from 1."}],
        "max_tokens": MAX_TOKENS,
        "ignore_eos": true,
    })
    .to_string();
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (base, watching) = (base.clone(), std::sync::Arc::clone(&watching));
        tokio::spawn(async move {
            let mut most = 0.0f64;
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(w) = sample(&metrics(&base).await, "vllm:num_requests_waiting{") {
                    most = most.max(w);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            most
        })
    };
    let mut rss = Vec::new();
    let (mut ok, mut refused) = (0usize, 0usize);
    let started = Instant::now();
    for wave in 0..waves {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..FLOOD {
            let (client, base, body) = (client.clone(), base.clone(), body.clone());
            tasks.spawn(async move {
                let resp = client
                    .post(format!("{base}/v1/chat/completions"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("an answer, not a transport error");
                let status = resp.status().as_u16();
                let retry = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let v: Value = serde_json::from_slice(&resp.bytes().await.expect("a body"))
                    .expect("a JSON body");
                (status, retry, v)
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (status, retry, v) = done.expect("client task");
            match status {
                200 => {
                    assert_eq!(v["usage"]["completion_tokens"], MAX_TOKENS, "{v}");
                    ok += 1;
                }
                503 => {
                    assert_eq!(retry.as_deref(), Some("1"));
                    assert_eq!(v["error"]["code"], 503);
                    assert_eq!(v["error"]["type"], "ServiceUnavailableError");
                    refused += 1;
                }
                other => panic!("status {other}: {v}"),
            }
        }
        wait_idle(&base, SETTLE).await;
        rss.push(rss_kib(pid).unwrap_or(0));
        println!(
            "overload wave {wave}: {ok} ok / {refused} refused so far, RSS {} KiB",
            rss[wave]
        );
    }
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let most_waiting = watcher.await.expect("watcher");
    println!(
        "overload: {waves} waves of {FLOOD} simultaneous requests against --max-waiting {BOUND} in {:.1} s: \
         {ok} answered in full, {refused} refused with 503 + Retry-After; most waiting seen {most_waiting}; \
         RSS after each wave {rss:?} KiB",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(ok + refused, waves * FLOOD);
    assert!(refused > 0, "the flood was larger than the bound");
    assert!(ok >= waves * BOUND, "admitted requests finish");
    assert!(most_waiting <= BOUND as f64, "waiting {most_waiting}");
    // Flat: after the first wave has sized the allocator's pools, later waves add at most 12 MiB
    // (measured: 4.5-5.5 MiB over 4 waves, levelling off at +7 MiB over 16).
    if rss[0] > 0 {
        let drift = rss[waves - 1].saturating_sub(rss[0]);
        assert!(
            drift <= 12 * 1024,
            "RSS grew {drift} KiB over {waves} waves"
        );
    }
}

/// Steady closed-loop load at the knee of the default profile (256 streams: `simulate --drill
/// saturation` gains < 5 % beyond it) in real time, for `SERVESIM_SOAK_SECS` (default 20 s; CI
/// must stay ≤ 60 s): RSS and open file descriptors sampled every second stay flat after warm-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_at_the_knee_keeps_rss_and_fds_flat() {
    let _heavy = HEAVY.lock().await;
    const KNEE: usize = 256;
    let secs: u64 = std::env::var("SERVESIM_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let server = ServerProcess::start(&[]);
    let (base, pid) = (server.base.clone(), server.pid());
    let fds_idle = open_fds(pid);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("an HTTP client");
    let stop_at = Instant::now() + Duration::from_secs(secs);
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..KNEE {
        let (client, base) = (client.clone(), base.clone());
        workers.spawn(async move {
            let mut done = (0usize, 0usize);
            let mut i = 0u64;
            while Instant::now() < stop_at {
                i += 1;
                let body = json!({
                    "model": "local",
                    "messages": [{"role": "user", "content": format!("Worker {w} request {i}: explain what a GPU scheduler does.")}],
                    "max_tokens": 64,
                    "stream": true,
                    "stream_options": {"include_usage": true},
                });
                let ok = async {
                    let resp = client
                        .post(format!("{base}/v1/chat/completions"))
                        .header("content-type", "application/json")
                        .body(body.to_string())
                        .send()
                        .await
                        .ok()?;
                    (resp.status() == 200).then_some(())?;
                    let text = resp.text().await.ok()?;
                    text.ends_with("data: [DONE]\n\n").then_some(())
                }
                .await;
                if ok.is_some() {
                    done.0 += 1;
                } else {
                    done.1 += 1;
                }
            }
            done
        });
    }
    let mut samples: Vec<(f64, u64, usize)> = Vec::new();
    let start = Instant::now();
    while Instant::now() < stop_at {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push((
            start.elapsed().as_secs_f64(),
            rss_kib(pid).unwrap_or(0),
            open_fds(pid).unwrap_or(0),
        ));
    }
    let (mut ok, mut failed) = (0, 0);
    while let Some(done) = workers.join_next().await {
        let (o, f) = done.expect("worker");
        ok += o;
        failed += f;
    }
    wait_idle(&base, SETTLE).await;
    // The client's keep-alive connections close with it; then the server is back to its idle fds.
    drop(client);
    let deadline = Instant::now() + SETTLE;
    let fds_after = loop {
        let now = open_fds(pid);
        if now.zip(fds_idle).is_none_or(|(n, i)| n <= i + 2) || Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Warm-up: the first quarter (pools, buffers and the allocator reach their working size).
    let steady = &samples[samples.len() / 4..];
    let first = steady.first().map_or(0, |s| s.1);
    let rss_max = steady.iter().map(|s| s.1).max().unwrap_or(0);
    let rss_last = steady.last().map_or(0, |s| s.1);
    let fds_min = steady.iter().map(|s| s.2).min().unwrap_or(0);
    let fds_max = steady.iter().map(|s| s.2).max().unwrap_or(0);
    println!(
        "soak: {secs} s at {KNEE} concurrent streams, {ok} requests ok, {failed} failed; \
         RSS after warm-up {first} KiB, max {rss_max} KiB, last {rss_last} KiB (drift {} KiB); \
         fds idle {fds_idle:?}, under load {fds_min}..{fds_max}, after {fds_after:?}",
        rss_last as i64 - first as i64
    );
    assert_eq!(failed, 0);
    assert!(ok > KNEE, "requests completed");
    if first > 0 {
        assert!(
            rss_max <= first + 16 * 1024,
            "RSS grew from {first} to {rss_max} KiB"
        );
        assert!(fds_max <= fds_min + 16, "fds wandered {fds_min}..{fds_max}");
    }
    if let (Some(idle), Some(after)) = (fds_idle, fds_after) {
        assert!(after <= idle + 2, "fds {idle} -> {after}: connections leak");
    }
}

/// Three prompts of ~1.9 MB each (tokenizing one takes seconds in a debug build) do not stall the
/// server's other connections: `/health` keeps answering meanwhile.
///
/// Judged against the huge requests themselves, not against a fixed time: a stalled server answers
/// `/health` only after a whole tokenization, about as long as the shortest huge request takes, while
/// one that is not stalled answers at the machine's scheduling latency (7-17 ms alone, up to ~350 ms
/// with a CPU hog beside the test, when the huge requests also took longer). Both scale with the
/// machine's load; their ratio does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_prompts_do_not_stall_other_connections() {
    let _heavy = HEAVY.lock().await;
    let server = ServerProcess::start(&["--time-scale", "0.01"]);
    let addr = addr_of(&server.base);
    let body = json!({"model": "local", "prompt": "a".repeat(1_900_000), "max_tokens": 1})
        .to_string()
        .into_bytes();
    let mut huge = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let (addr, body) = (addr.clone(), body.clone());
        huge.spawn(async move {
            let req = http_request(
                "POST",
                "/v1/completions",
                Some("application/json"),
                &[],
                &body,
            );
            exchange(&addr, req, Duration::from_secs(300)).await
        });
    }
    // /health, one request after another, from the start until every huge request has its answer.
    let mut slowest = Duration::ZERO;
    let mut checks = 0;
    let mut answers = Vec::new();
    while answers.len() < 3 {
        let a = exchange(
            &addr,
            http_request("GET", "/health", None, &[], b""),
            Duration::from_secs(300),
        )
        .await;
        assert_eq!(a.status, Some(200));
        slowest = slowest.max(a.elapsed);
        checks += 1;
        while let Some(done) = huge.try_join_next() {
            answers.push(done.expect("client task"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for a in &answers {
        assert!(matches!(a.status, Some(200 | 400)), "{}", a.head);
    }
    let shortest = answers.iter().map(|a| a.elapsed).min().unwrap_or_default();
    println!(
        "huge prompts: {checks} /health checks meanwhile, slowest {slowest:?}; huge requests took {:?}",
        answers.iter().map(|a| a.elapsed).collect::<Vec<_>>()
    );
    assert!(
        slowest < shortest / 2,
        "/health took {slowest:?}, the shortest huge request {shortest:?}"
    );
}
