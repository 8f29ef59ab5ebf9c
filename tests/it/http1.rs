//! End-to-end tests of what any HTTP/1.1 server owes its clients, as `servesim serve` (hyper under
//! axum) does it: the real binary on a loopback port, spoken to in raw HTTP/1.1 over a tokio
//! `TcpStream`, so that the framing on the wire is what is checked. Covered: pipelined requests
//! answered in order, keep-alive across a streaming (chunked) answer and
//! across a pipelined one, `Expect: 100-continue`, chunked request bodies with extensions and
//! trailers, HTTP/1.0 and `Connection: close` (the server closes), HEAD answers (a head with the
//! GET answer's length and no body), and a `date` header on every answer, errors included.
//! HTTP/1.0 clients get what RFCs 9110 and 9112 owe them: `connection: keep-alive` when the connection
//! stays, no chunked answers, and no `100 Continue`.
//!
//! Every read is bounded by [`READ_LIMIT`]; nothing waits on a sleep.

use std::time::Duration;

use crate::support::{ServerProcess, sse_data};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Simulated GPU 100× faster than real: a few tokens take milliseconds.
const FAST: &[&str] = &["--time-scale", "0.01"];

/// The longest any single read from the server may take.
const READ_LIMIT: Duration = Duration::from_secs(20);

/// A non-streaming completion of exactly 2 tokens.
const COMPLETION: &str =
    r#"{"model":"local","prompt":"hello there","max_tokens":2,"ignore_eos":true}"#;

/// A streaming chat completion of exactly 3 tokens.
const STREAMING_CHAT: &str = r#"{"model":"local","messages":[{"role":"user","content":"Say hi."}],"max_tokens":3,"ignore_eos":true,"stream":true}"#;

/// One answer read off the wire.
#[derive(Debug)]
struct WireResponse {
    /// The status line, e.g. `HTTP/1.1 200 OK`.
    status_line: String,
    status: u16,
    /// Header names lower-cased, in the order they came.
    headers: Vec<(String, String)>,
    /// The body, de-chunked when it was chunked.
    body: Vec<u8>,
}

impl WireResponse {
    /// The value of header `name` (lower case), if present (the first, if several).
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a `connection` header lists `token`.
    fn connection_has(&self, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == "connection")
            .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// The body as JSON.
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not a JSON body ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }
}

/// A raw client connection: the socket and what was read from it but not consumed yet (the start
/// of the next answer, when answers come back to back).
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Connect to `server` (its `base` is `http://127.0.0.1:PORT`).
    async fn open(server: &ServerProcess) -> Conn {
        let addr = server.base.trim_start_matches("http://");
        let stream = tokio::time::timeout(READ_LIMIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("the server accepts");
        stream.set_nodelay(true).expect("nodelay");
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Write all of `bytes` in one write call.
    async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(READ_LIMIT, self.stream.write_all(bytes))
            .await
            .expect("write in time")
            .expect("the server takes the bytes");
    }

    /// Read once more into `buf` (bounded by [`READ_LIMIT`]); `false` when the server closed.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(READ_LIMIT, self.stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no bytes within {READ_LIMIT:?}; unconsumed so far: {:?}",
                    String::from_utf8_lossy(&self.buf)
                )
            })
            .expect("the read succeeds");
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// Read until `buf` holds at least `n` bytes; panics if the server closes first.
    async fn fill_to(&mut self, n: usize) {
        while self.buf.len() < n {
            assert!(
                self.fill().await,
                "the server closed with {} of {n} bytes: {:?}",
                self.buf.len(),
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// Read the next answer's head (status line and headers) and consume it.
    async fn read_head(&mut self) -> WireResponse {
        let end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at;
            }
            assert!(
                self.fill().await,
                "the server closed before a whole head: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).expect("an ASCII head");
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("a status line").to_string();
        // HTTP/1.0 requests are answered in their own version.
        assert!(
            status_line.starts_with("HTTP/1.1 ") || status_line.starts_with("HTTP/1.0 "),
            "not a status line: {status_line:?} (head {head:?})"
        );
        let status = status_line
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status code in {status_line:?}"));
        let headers = lines
            .map(|l| {
                let (name, value) = l
                    .split_once(':')
                    .unwrap_or_else(|| panic!("not a header line: {l:?}"));
                (name.trim().to_ascii_lowercase(), value.trim().to_string())
            })
            .collect();
        WireResponse {
            status_line,
            status,
            headers,
            body: Vec::new(),
        }
    }

    /// Read the next whole answer: its head, then the body its framing says (none for an answer
    /// to HEAD, `head_only`); bytes after it stay for the next answer. Checks that a final answer
    /// has a `date` header, and that a chunked answer has no `content-length`.
    async fn read_answer(&mut self, head_only: bool) -> WireResponse {
        let mut answer = self.read_head().await;
        // Interim (1xx) answers are a bare status line.
        assert!(
            (100..200).contains(&answer.status)
                || answer.header("date").is_some_and(|d| d.ends_with(" GMT")),
            "no date header: {answer:?}"
        );
        let chunked = answer
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"));
        let no_body = head_only
            || (100..200).contains(&answer.status)
            || answer.status == 204
            || answer.status == 304;
        if no_body {
            return answer;
        }
        if chunked {
            assert!(
                answer.header("content-length").is_none(),
                "chunked and a length: {answer:?}"
            );
            let (body, used) = loop {
                if let Some(done) = decode_chunked(&self.buf) {
                    break done;
                }
                assert!(
                    self.fill().await,
                    "the server closed inside a chunked body: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            };
            self.buf.drain(..used);
            answer.body = body;
        } else if let Some(len) = answer.header("content-length") {
            let n: usize = len.parse().expect("a numeric content-length");
            self.fill_to(n).await;
            answer.body = self.buf.drain(..n).collect();
        } else {
            // Delimited by the close.
            while self.fill().await {}
            answer.body = std::mem::take(&mut self.buf);
        }
        answer
    }

    /// Wait (bounded) for the server to close the connection; panics if bytes come instead.
    async fn expect_closed(&mut self) {
        while self.fill().await {}
        assert!(
            self.buf.is_empty(),
            "bytes after the last answer: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decode a chunked body at the front of `raw`: the body and the bytes it took (through the last
/// chunk, trailers and the final empty line), or `None` while it is incomplete. Panics on bytes
/// that are not chunked framing.
fn decode_chunked(raw: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + find(&raw[at..], b"\r\n")?;
        let line = std::str::from_utf8(&raw[at..line_end]).expect("an ASCII chunk size line");
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .unwrap_or_else(|_| panic!("not a chunk size line: {line:?}"));
        at = line_end + 2;
        if size == 0 {
            // Trailer lines, up to an empty one.
            loop {
                let end = at + find(&raw[at..], b"\r\n")?;
                let empty = end == at;
                at = end + 2;
                if empty {
                    return Some((body, at));
                }
            }
        }
        if raw.len() < at + size + 2 {
            return None;
        }
        body.extend_from_slice(&raw[at..at + size]);
        assert_eq!(
            &raw[at + size..at + size + 2],
            b"\r\n",
            "no CRLF after a chunk's data"
        );
        at += size + 2;
    }
}

/// An HTTP/1.1 GET (or HEAD, ...) with no body.
fn get(method: &str, path: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
}

/// An HTTP/1.1 POST of a JSON `body` with a `Content-Length`.
fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Checks a non-streaming completion answer of 2 tokens; its usage.
fn check_completion(answer: &WireResponse) -> Value {
    assert_eq!(answer.status, 200, "{answer:?}");
    let cmpl = answer.json();
    assert_eq!(cmpl["object"], "text_completion", "{cmpl}");
    assert_eq!(cmpl["usage"]["completion_tokens"], 2, "{cmpl}");
    cmpl["usage"].clone()
}

/// Checks a `GET /version` answer.
fn check_version(answer: &WireResponse) {
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.json()["version"].is_string(), "{answer:?}");
}

/// Checks a streaming chat answer of 3 tokens: chunked SSE events ending with `[DONE]`.
fn check_chat_stream(answer: &WireResponse) {
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.header("transfer-encoding"),
        Some("chunked"),
        "{answer:?}"
    );
    assert_eq!(
        answer.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    let events = sse_data(&answer.text());
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:#?}"
    );
    // The role event, three tokens, [DONE].
    assert_eq!(events.len(), 5, "{events:#?}");
    let last: Value = serde_json::from_str(&events[3]).expect("a JSON event");
    assert_eq!(last["choices"][0]["finish_reason"], "length", "{last}");
}

/// Three requests in one write (GET, a POST with a body, GET) are answered in order on the one
/// connection, which then takes more.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let server = ServerProcess::start(FAST);
    let mut conn = Conn::open(&server).await;
    let batch = [
        get("GET", "/health"),
        post("/v1/completions", COMPLETION),
        get("GET", "/version"),
    ]
    .concat();
    conn.send(batch.as_bytes()).await;
    let health = conn.read_answer(false).await;
    assert_eq!(health.status, 200, "{health:?}");
    assert!(health.body.is_empty());
    assert!(!health.connection_has("close"));
    check_completion(&conn.read_answer(false).await);
    check_version(&conn.read_answer(false).await);
    assert!(conn.buf.is_empty(), "extra bytes: {:?}", conn.buf);
    // Still open.
    conn.send(get("GET", "/health").as_bytes()).await;
    assert_eq!(conn.read_answer(false).await.status, 200);
}

/// After a streaming answer (chunked) ends with `0\r\n\r\n`, the
/// connection takes the next request.
#[tokio::test]
async fn keep_alive_across_a_streaming_answer() {
    let server = ServerProcess::start(FAST);
    let mut conn = Conn::open(&server).await;
    conn.send(post("/v1/chat/completions", STREAMING_CHAT).as_bytes())
        .await;
    let stream = conn.read_answer(false).await;
    check_chat_stream(&stream);
    assert!(!stream.connection_has("close"), "{stream:?}");
    assert!(
        conn.buf.is_empty(),
        "bytes after the stream: {:?}",
        conn.buf
    );
    conn.send(get("GET", "/version").as_bytes()).await;
    check_version(&conn.read_answer(false).await);
    // And a second stream on the same connection.
    conn.send(post("/v1/chat/completions", STREAMING_CHAT).as_bytes())
        .await;
    check_chat_stream(&conn.read_answer(false).await);
}

/// A request pipelined behind a streaming one (in the same write) is read while the stream is
/// written and answered after its end.
#[tokio::test]
async fn a_request_pipelined_behind_a_stream_is_answered_after_it() {
    let server = ServerProcess::start(FAST);
    let mut conn = Conn::open(&server).await;
    let batch = [
        post("/v1/chat/completions", STREAMING_CHAT),
        get("GET", "/version"),
    ]
    .concat();
    conn.send(batch.as_bytes()).await;
    check_chat_stream(&conn.read_answer(false).await);
    check_version(&conn.read_answer(false).await);
}

/// `Expect: 100-continue`: the interim `100 Continue` comes before the body is sent, the final
/// answer after it; a request without a body gets no interim answer.
#[tokio::test]
async fn expect_100_continue() {
    let server = ServerProcess::start(FAST);
    let mut conn = Conn::open(&server).await;
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        COMPLETION.len()
    );
    conn.send(head.as_bytes()).await;
    // The exact interim answer, and nothing after it: the request is not answered yet.
    conn.fill_to(b"HTTP/1.1 100 Continue\r\n\r\n".len()).await;
    assert_eq!(
        conn.buf,
        b"HTTP/1.1 100 Continue\r\n\r\n",
        "{:?}",
        String::from_utf8_lossy(&conn.buf)
    );
    conn.buf.clear();
    conn.send(COMPLETION.as_bytes()).await;
    check_completion(&conn.read_answer(false).await);

    // Expect on a request with no body: just the answer.
    conn.send(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n\r\n")
        .await;
    check_version(&conn.read_answer(false).await);
}

/// A chunked request body (split over several chunks and writes, a chunk extension, a trailer)
/// is decoded: the usage is that of the same body sent with a length, and the connection stays
/// in step for the next request.
#[tokio::test]
async fn chunked_request_bodies_are_decoded() {
    let server = ServerProcess::start(FAST);
    let mut conn = Conn::open(&server).await;
    conn.send(post("/v1/completions", COMPLETION).as_bytes())
        .await;
    let expected = check_completion(&conn.read_answer(false).await);

    let body = COMPLETION.as_bytes();
    let (a, rest) = body.split_at(10);
    let (b, c) = rest.split_at(17);
    conn.send(
        [
            &b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            format!("{:x}\r\n", a.len()).as_bytes(),
            a,
            b"\r\n",
        ]
        .concat()
        .as_slice(),
    )
    .await;
    conn.send(
        &[
            format!("{:X};note=split\r\n", b.len()).as_bytes(),
            b,
            b"\r\n",
        ]
        .concat(),
    )
    .await;
    conn.send(&[format!("{:x}\r\n", c.len()).as_bytes(), c, b"\r\n"].concat())
        .await;
    conn.send(b"0\r\nX-Trailer: done\r\n\r\n").await;
    let usage = check_completion(&conn.read_answer(false).await);
    assert_eq!(usage, expected);

    conn.send(get("GET", "/version").as_bytes()).await;
    check_version(&conn.read_answer(false).await);
}

/// HTTP/1.0 without `Connection: keep-alive`: answered without announcing keep-alive (an HTTP/1.0
/// answer means a close unless it says `connection: keep-alive`, RFC 9112 §9.3; hyper writes no
/// `connection` header then), then closed.
#[tokio::test]
async fn http_1_0_closes_after_the_answer() {
    let server = ServerProcess::start(FAST);
    let mut conn = Conn::open(&server).await;
    conn.send(b"GET /version HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await;
    let answer = conn.read_answer(false).await;
    check_version(&answer);
    assert!(!answer.connection_has("keep-alive"), "{answer:?}");
    conn.expect_closed().await;
}

/// `Connection: close` on HTTP/1.1: the answer says `connection: close` and the server closes,
/// for a whole answer and for a streaming one.
#[tokio::test]
async fn connection_close_closes_after_the_answer() {
    let server = ServerProcess::start(FAST);
    let mut conn = Conn::open(&server).await;
    conn.send(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await;
    let answer = conn.read_answer(false).await;
    check_version(&answer);
    assert!(answer.connection_has("close"), "{answer:?}");
    conn.expect_closed().await;

    let mut conn = Conn::open(&server).await;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{STREAMING_CHAT}",
        STREAMING_CHAT.len()
    );
    conn.send(request.as_bytes()).await;
    let answer = conn.read_answer(false).await;
    check_chat_stream(&answer);
    assert!(answer.connection_has("close"), "{answer:?}");
    conn.expect_closed().await;
}

/// HEAD: a head only, with no body bytes (the next pipelined answer follows at once), and the
/// `content-length` of the GET answer (RFC 9110 §9.3.2).
#[tokio::test]
async fn head_answers_have_no_body() {
    let server = ServerProcess::start(FAST);
    let mut conn = Conn::open(&server).await;
    conn.send(get("GET", "/version").as_bytes()).await;
    let full = conn.read_answer(false).await;
    check_version(&full);

    let batch = [
        get("HEAD", "/health"),
        get("HEAD", "/version"),
        get("GET", "/version"),
    ]
    .concat();
    conn.send(batch.as_bytes()).await;
    let health = conn.read_answer(true).await;
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(health.header("content-length"), Some("0"), "{health:?}");
    let head = conn.read_answer(true).await;
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(
        head.header("content-type"),
        full.header("content-type"),
        "{head:?}"
    );
    // No body bytes: the next answer's status line comes right after the head.
    conn.fill_to(9).await;
    assert!(
        conn.buf.starts_with(b"HTTP/1.1 "),
        "body bytes after a HEAD answer: {:?}",
        String::from_utf8_lossy(&conn.buf)
    );
    check_version(&conn.read_answer(false).await);
    assert_eq!(
        head.header("content-length"),
        Some(full.body.len().to_string().as_str()),
        "HEAD /version should announce the GET answer's length ({} bytes): {head:?}",
        full.body.len()
    );
}

/// Every answer carries a `date` header: whole and streaming answers, the interim 100 aside,
/// router errors (404, 405, 400 on a bad JSON body) and the connection's own bare answers (400 on
/// a malformed request).
#[tokio::test]
async fn every_answer_has_a_date() {
    let server = ServerProcess::start(FAST);
    let mut conn = Conn::open(&server).await;
    let batch = [
        get("GET", "/health"),
        get("GET", "/version"),
        get("GET", "/no/such/path"),
        get("DELETE", "/version"),
        post("/v1/completions", "{not json"),
        post("/v1/completions", COMPLETION),
        post("/v1/chat/completions", STREAMING_CHAT),
    ]
    .concat();
    conn.send(batch.as_bytes()).await;
    // read_answer checks the date of each.
    let statuses = [200, 200, 404, 405, 400, 200, 200];
    for want in statuses {
        let answer = conn.read_answer(false).await;
        assert_eq!(answer.status, want, "{answer:?}");
        assert!(!answer.status_line.is_empty());
    }
    // A malformed request line: the connection's bare 400, then the close.
    conn.send(b"NOT A REQUEST\r\n\r\n").await;
    let bad = conn.read_answer(false).await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(bad.connection_has("close"), "{bad:?}");
    conn.expect_closed().await;
}

/// HTTP/1.0 with `Connection: keep-alive`: the connection stays open, and the answer says so
/// (`connection: keep-alive`), since an HTTP/1.0 client assumes a close otherwise.
#[tokio::test]
async fn http_1_0_keep_alive_is_announced_and_kept() {
    let server = ServerProcess::start(FAST);
    let mut conn = Conn::open(&server).await;
    conn.send(b"GET /version HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let answer = conn.read_answer(false).await;
    check_version(&answer);
    assert!(!answer.connection_has("close"), "{answer:?}");
    conn.send(b"GET /version HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n")
        .await;
    check_version(&conn.read_answer(false).await);
    assert!(
        answer.connection_has("keep-alive"),
        "an HTTP/1.0 keep-alive answer must say connection: keep-alive: {answer:?}"
    );
}

/// A streaming answer to an HTTP/1.0 request cannot be chunked (RFC 9112 §6.1: no
/// `Transfer-Encoding` unless the request is HTTP/1.1): it is delimited by the close.
#[tokio::test]
async fn a_stream_to_http_1_0_is_not_chunked() {
    let server = ServerProcess::start(FAST);
    let mut conn = Conn::open(&server).await;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{STREAMING_CHAT}",
        STREAMING_CHAT.len()
    );
    conn.send(request.as_bytes()).await;
    let head = conn.read_head().await;
    assert_eq!(head.status, 200, "{head:?}");
    // Read what follows the head to the close, as an HTTP/1.0 client does.
    while conn.fill().await {}
    let body = String::from_utf8_lossy(&conn.buf).into_owned();
    assert!(
        head.header("transfer-encoding").is_none(),
        "chunked answer to an HTTP/1.0 request: {head:?}; body on the wire: {body:?}"
    );
    let events = sse_data(&body);
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{body:?}"
    );
}

/// `Expect: 100-continue` on an HTTP/1.0 request is ignored (RFC 9110 §10.1.1: a server MUST
/// ignore it): with head and body in one write, the first thing back is the
/// final answer.
#[tokio::test]
async fn expect_is_ignored_on_http_1_0() {
    let server = ServerProcess::start(FAST);
    let mut conn = Conn::open(&server).await;
    let request = format!(
        "POST /v1/completions HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n{COMPLETION}",
        COMPLETION.len()
    );
    conn.send(request.as_bytes()).await;
    let first = conn.read_answer(false).await;
    assert_ne!(
        first.status, 100,
        "100 Continue sent to an HTTP/1.0 client: {first:?}"
    );
    check_completion(&first);
    conn.expect_closed().await;
}
