//! A scripted, deliberately imperfect OpenAI-style streaming server for tests and for the client
//! benchmark: raw HTTP/1.1 (keep-alive, chunked bodies) on a loopback listener, answering the n-th
//! request (counted from 0 over the server's life) as its script says: a vLLM-like stream, a slow
//! first byte, lines cut across writes, keep-alive comments, an error status, a connection dropped
//! (closed or reset) before or during the answer, a stream that stalls, arbitrary bytes, or no
//! answer at all.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Prompt tokens the mock reports in its usage chunk.
pub const MOCK_PROMPT_TOKENS: u32 = 31;

/// How to answer one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A streamed answer.
    Stream(StreamReply),
    /// An error status with a JSON body.
    Status { status: u16, body: String },
    /// Close the connection without answering.
    Drop,
    /// Reset the connection (TCP RST) without answering.
    Reset,
    /// Write these bytes verbatim (a whole response, garbage, anything), then close.
    Raw(Vec<u8>),
    /// Read the request and never answer.
    Hang,
}

/// A streamed answer: `events` data lines shaped like vLLM's chat chunks (the first carries the
/// role, the last the finish reason), then optionally the usage chunk and `[DONE]`.
#[derive(Debug, Clone)]
pub struct StreamReply {
    pub events: u32,
    /// Send the usage-only chunk of `include_usage` (completion tokens = events − 1).
    pub usage: bool,
    /// End with `data: [DONE]`; without it the body just ends.
    pub done: bool,
    /// Wait this long before the response head.
    pub first_byte_delay: Duration,
    /// Wait this long between events.
    pub gap: Duration,
    /// Write every line in two pieces cut mid-line, pausing 1 ms between them.
    pub split_lines: bool,
    /// Send an SSE comment (`: ping`) before every event.
    pub comments: bool,
    /// Close the connection after this many events, leaving the chunked body unfinished.
    pub drop_after: Option<u32>,
    /// After the last line, keep the body open (no chunked terminator) until the client leaves.
    pub linger: bool,
    /// Reset the connection (TCP RST) after this many events.
    pub reset_after: Option<u32>,
    /// Stop sending after this many events, keeping the connection open until the client leaves.
    pub stall_after: Option<u32>,
}

impl StreamReply {
    /// A prompt, well-formed answer of `events` events with usage and `[DONE]`.
    pub fn events(events: u32) -> StreamReply {
        StreamReply {
            events,
            usage: true,
            done: true,
            first_byte_delay: Duration::ZERO,
            gap: Duration::ZERO,
            split_lines: false,
            comments: false,
            drop_after: None,
            linger: false,
            reset_after: None,
            stall_after: None,
        }
    }
}

type Script = dyn Fn(usize) -> Reply + Send + Sync;

struct State {
    script: Box<Script>,
    count: Mutex<usize>,
    arrived: Condvar,
    bodies: Mutex<Vec<String>>,
    heads: Mutex<Vec<String>>,
}

/// The running server; dropping it shuts it down.
pub struct ScriptedServer {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ScriptedServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ScriptedServer {
    /// Start on `127.0.0.1:0` in a thread of its own, answering request n with `script(n)`.
    pub fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            script: Box::new(script),
            count: Mutex::new(0),
            arrived: Condvar::new(),
            bodies: Mutex::new(Vec::new()),
            heads: Mutex::new(Vec::new()),
        });
        let (tx, rx) = oneshot::channel();
        let st = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("scripted-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        _ = rx => {}
                        () = accept_loop(listener, st) => {}
                    }
                });
            })?;
        Ok(ScriptedServer {
            addr,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests read so far.
    pub fn requests(&self) -> usize {
        self.state.count.lock().map_or(0, |c| *c)
    }

    /// The bodies of the requests read so far, in arrival order.
    pub fn bodies(&self) -> Vec<String> {
        self.state
            .bodies
            .lock()
            .map(|b| b.clone())
            .unwrap_or_default()
    }

    /// The request heads (request line and headers) read so far, in arrival order.
    pub fn heads(&self) -> Vec<String> {
        self.state
            .heads
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
    }

    /// Block until at least `n` requests have arrived (or `limit` passes); whether they did.
    pub fn wait_for_requests(&self, n: usize, limit: Duration) -> bool {
        let Ok(count) = self.state.count.lock() else {
            return false;
        };
        self.state
            .arrived
            .wait_timeout_while(count, limit, |c| *c < n)
            .is_ok_and(|(c, _)| *c >= n)
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream, Arc::clone(&state)));
    }
}

/// Read one request (head and `Content-Length` body); `None` at EOF or on garbage.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, String)> {
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
    buf.drain(..head_end + len);
    Some((head, body))
}

async fn serve(mut stream: TcpStream, state: Arc<State>) {
    let mut buf = Vec::new();
    while let Some((head, body)) = read_request(&mut stream, &mut buf).await {
        let n = {
            let Ok(mut c) = state.count.lock() else {
                return;
            };
            if let Ok(mut b) = state.bodies.lock() {
                b.push(body);
            }
            if let Ok(mut h) = state.heads.lock() {
                h.push(head);
            }
            *c += 1;
            *c - 1
        };
        state.arrived.notify_all();
        let keep = match (state.script)(n) {
            Reply::Status { status, body } => {
                let head = format!(
                    "HTTP/1.1 {status} Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).await.is_ok()
                    && stream.write_all(body.as_bytes()).await.is_ok()
            }
            Reply::Drop => false,
            Reply::Reset => {
                let _ = stream.set_zero_linger();
                false
            }
            Reply::Raw(bytes) => {
                let _ = stream.write_all(&bytes).await;
                let _ = stream.flush().await;
                false
            }
            Reply::Hang => {
                std::future::pending::<()>().await;
                false
            }
            Reply::Stream(s) => stream_reply(&mut stream, &s).await.unwrap_or(false),
        };
        if !keep {
            return;
        }
    }
}

fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn event_line(i: u32, last: bool) -> String {
    let delta = if i == 0 {
        r#"{"role":"assistant","content":"tok"}"#
    } else {
        r#"{"content":" tok"}"#
    };
    let finish = if last { r#""length""# } else { "null" };
    format!(
        "data: {{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"local\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n"
    )
}

/// Wait for the client to go away; whatever it sends meanwhile is ignored.
async fn wait_for_close(stream: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    while stream.read(&mut sink).await.is_ok_and(|n| n > 0) {}
}

/// Write a streamed answer; `Ok(true)` when the connection can take another request.
async fn stream_reply(stream: &mut TcpStream, s: &StreamReply) -> io::Result<bool> {
    if !s.first_byte_delay.is_zero() {
        tokio::time::sleep(s.first_byte_delay).await;
    }
    let mut out = Vec::with_capacity(256 * (s.events as usize + 2));
    out.extend_from_slice(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n",
    );
    let paced = !s.gap.is_zero() || s.split_lines;
    let mut lines: Vec<String> = Vec::new();
    for i in 0..s.events {
        if s.comments {
            lines.push(": ping\n\n".into());
        }
        lines.push(event_line(i, i + 1 == s.events));
    }
    if s.usage {
        let completion = s.events.saturating_sub(1);
        lines.push(format!(
            "data: {{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"local\",\"choices\":[],\"usage\":{{\"prompt_tokens\":{MOCK_PROMPT_TOKENS},\"total_tokens\":{},\"completion_tokens\":{completion}}}}}\n\n",
            MOCK_PROMPT_TOKENS + completion
        ));
    }
    if s.done {
        lines.push("data: [DONE]\n\n".into());
    }
    let mut events_sent = 0u32;
    for line in &lines {
        if s.drop_after == Some(events_sent) {
            stream.write_all(&out).await?;
            stream.flush().await?;
            return Ok(false);
        }
        if s.reset_after == Some(events_sent) {
            stream.write_all(&out).await?;
            stream.flush().await?;
            stream.set_zero_linger()?;
            return Ok(false);
        }
        if s.stall_after == Some(events_sent) {
            stream.write_all(&out).await?;
            stream.flush().await?;
            wait_for_close(stream).await;
            return Ok(false);
        }
        if line.starts_with("data:") {
            events_sent += 1;
        }
        if s.split_lines {
            let (a, b) = line.split_at(line.len() / 2);
            chunk(&mut out, a.as_bytes());
            stream.write_all(&out).await?;
            out.clear();
            tokio::time::sleep(Duration::from_millis(1)).await;
            chunk(&mut out, b.as_bytes());
        } else {
            chunk(&mut out, line.as_bytes());
        }
        if paced {
            stream.write_all(&out).await?;
            out.clear();
            if !s.gap.is_zero() {
                tokio::time::sleep(s.gap).await;
            }
        }
    }
    if s.linger {
        stream.write_all(&out).await?;
        wait_for_close(stream).await;
        return Ok(false);
    }
    out.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&out).await?;
    Ok(true)
}
