//! One streamed chat (or completions) request, measured: the request body drills.md prescribes, the
//! SSE stream read as it arrives with a monotonic timestamp per read, the server's usage counts, and
//! every failure classified into an [`ErrorKind`].

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use servesim_sim::{ErrorKind, Prompt, RequestError, RequestRecord, RequestSpec};

use super::sse::{SseLine, SseParser};

/// drills.md's client timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);
/// drills.md's sampling temperature.
pub const TEMPERATURE: f64 = 0.7;
/// How long to keep reading after `[DONE]` for the end of the HTTP body, so the connection can be
/// reused; the request's end is `[DONE]`'s arrival whatever happens here.
const DRAIN_AFTER_DONE: Duration = Duration::from_millis(5);
/// Longest SSE line buffered; a longer one ends the request as a broken stream.
pub const MAX_LINE: usize = 4 << 20;
/// Longest server message kept in an error record.
const MAX_MESSAGE: usize = 500;

/// Where and how to send requests.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL, e.g. `http://127.0.0.1:8000` (a trailing `/` or `/v1` is accepted).
    pub base_url: String,
    /// The `model` field of every request.
    pub model: String,
    /// Sent as `Authorization: Bearer KEY` when set.
    pub api_key: Option<String>,
    /// Whole-request limit: connecting, waiting and streaming.
    pub timeout: Duration,
    /// Ask for `stream_options.include_usage`: the server then sends one more chunk, with empty
    /// `choices` and the true token counts, which is not counted as an event.
    pub include_usage: bool,
}

impl ClientConfig {
    /// drills.md's defaults against `base_url`: model `local`, 180 s, usage on.
    pub fn new(base_url: &str) -> ClientConfig {
        ClientConfig {
            base_url: base_url.to_string(),
            model: "local".to_string(),
            api_key: None,
            timeout: DEFAULT_TIMEOUT,
            include_usage: true,
        }
    }
}

/// Why a client could not be set up (individual request failures are records, not this).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid URL '{0}': expected http://HOST:PORT[/v1]")]
    Url(String),
    #[error("'{0}': https is not supported (the client is built without TLS); use http://")]
    Https(String),
    #[error("cannot build the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
    #[error(
        "prompts given only by a token count (trace replay) cannot be sent over HTTP yet; use --target sim"
    )]
    TokenPrompt,
}

/// A request ready to go: endpoint and serialized body.
#[derive(Debug, Clone)]
pub struct Prepared {
    url: String,
    body: bytes::Bytes,
}

/// The streaming OpenAI-compatible client shared by every worker of a level.
#[derive(Debug, Clone)]
pub struct ChatClient {
    http: reqwest::Client,
    chat_url: String,
    completions_url: String,
    metrics_url: String,
    config: ClientConfig,
}

/// A level's clock: seconds since the level started, from a monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct LevelClock {
    start: Instant,
}

impl LevelClock {
    /// A clock whose zero is now.
    pub fn start() -> LevelClock {
        LevelClock {
            start: Instant::now(),
        }
    }

    /// The instant of the level's start.
    pub fn origin(&self) -> Instant {
        self.start
    }

    /// Seconds since the level's start.
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// The instant `t` seconds into the level.
    pub fn at(&self, t: f64) -> Instant {
        self.start + Duration::from_secs_f64(t.max(0.0))
    }
}

fn base(url: &str) -> Result<String, ClientError> {
    let trimmed = url.trim().trim_end_matches('/');
    let trimmed = trimmed.strip_suffix("/v1").unwrap_or(trimmed);
    if trimmed.starts_with("https://") {
        return Err(ClientError::Https(url.to_string()));
    }
    let rest = trimmed
        .strip_prefix("http://")
        .ok_or_else(|| ClientError::Url(url.to_string()))?;
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err(ClientError::Url(url.to_string()));
    }
    Ok(trimmed.to_string())
}

impl ChatClient {
    /// A client for `config` (plain HTTP/1.1; one connection per request).
    pub fn new(config: ClientConfig) -> Result<ChatClient, ClientError> {
        let base = base(&config.base_url)?;
        let http = reqwest::Client::builder()
            .http1_only()
            .tcp_nodelay(true)
            // A fresh connection for every request. vLLM's server (uvicorn) arms its 5 s
            // keep-alive timer when a response completes and, when the next request on that
            // connection came in first, never disarms it (Kludex/uvicorn#1637, #824): a request
            // sent the moment the previous one ended, still queued 5 s later, loses its
            // connection ("connection closed before message completed"; seen on the serial vLLM
            // peer). A loopback connect costs ~0.1 ms of a request's TTFT.
            .pool_max_idle_per_host(0)
            .build()?;
        Ok(ChatClient {
            http,
            chat_url: format!("{base}/v1/chat/completions"),
            completions_url: format!("{base}/v1/completions"),
            metrics_url: format!("{base}/metrics"),
            config,
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The JSON body of `spec` as drills.md gives it (plus `ignore_eos`/`min_tokens` when asked,
    /// and `stream_options.include_usage` when configured).
    pub fn body(&self, spec: &RequestSpec) -> Result<Value, ClientError> {
        let mut body = match &spec.prompt {
            Prompt::Chat(messages) => json!({
                "model": self.config.model,
                "messages": messages
                    .iter()
                    .map(|m| json!({"role": "user", "content": m.as_ref()}))
                    .collect::<Vec<_>>(),
                "stream": true,
                "max_tokens": spec.max_tokens,
                "temperature": TEMPERATURE,
            }),
            Prompt::Text(text) => json!({
                "model": self.config.model,
                "prompt": text.as_ref(),
                "stream": true,
                "max_tokens": spec.max_tokens,
                "temperature": TEMPERATURE,
            }),
            Prompt::Ids(ids) => json!({
                "model": self.config.model,
                "prompt": ids.as_ref(),
                "stream": true,
                "max_tokens": spec.max_tokens,
                "temperature": TEMPERATURE,
            }),
            Prompt::Tokens(_) => return Err(ClientError::TokenPrompt),
        };
        if let Some(obj) = body.as_object_mut() {
            if spec.ignore_eos {
                obj.insert("ignore_eos".into(), json!(true));
            }
            if spec.min_tokens > 0 {
                obj.insert("min_tokens".into(), json!(spec.min_tokens));
            }
            if self.config.include_usage {
                obj.insert("stream_options".into(), json!({"include_usage": true}));
            }
        }
        Ok(body)
    }

    /// The server's Prometheus text (`GET /metrics`), or `None` when it has none (an error status,
    /// no answer within the client timeout, or no connection).
    pub async fn metrics(&self) -> Option<String> {
        let mut req = self
            .http
            .get(&self.metrics_url)
            .timeout(self.config.timeout);
        if let Some(key) = &self.config.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.text().await.ok()
    }

    /// Serialize `spec` for sending.
    pub fn prepare(&self, spec: &RequestSpec) -> Result<Prepared, ClientError> {
        let url = match spec.prompt {
            Prompt::Text(_) | Prompt::Ids(_) => &self.completions_url,
            _ => &self.chat_url,
        };
        let body = serde_json::to_vec(&self.body(spec)?).unwrap_or_default();
        Ok(Prepared {
            url: url.clone(),
            body: body.into(),
        })
    }

    /// Send `req` now and stream its answer into `record`: `sent` is stamped just before sending,
    /// then the first event, every event (when `keep_times`), the end, usage and any error.
    pub async fn exchange(
        &self,
        req: &Prepared,
        clock: &LevelClock,
        record: &mut RequestRecord,
        keep_times: bool,
    ) {
        record.sent = clock.now();
        let outcome = tokio::time::timeout(
            self.config.timeout,
            self.stream(req, clock, record, keep_times),
        )
        .await;
        let end = clock.now();
        let error = match outcome {
            Ok(Ok(Ending::Done(at))) => {
                record.end = at;
                return;
            }
            Ok(Ok(Ending::Closed)) if record.events > 0 => {
                record.end = end;
                return;
            }
            Ok(Ok(Ending::Closed)) => RequestError {
                kind: ErrorKind::BrokenStream,
                message: "the answer ended without any `data:` event (not an SSE stream?)".into(),
            },
            Ok(Err(e)) => e,
            Err(_) => RequestError {
                kind: ErrorKind::Timeout,
                message: format!(
                    "no complete answer within {:.3} s ({} events received)",
                    self.config.timeout.as_secs_f64(),
                    record.events
                ),
            },
        };
        record.end = end;
        record.error = Some(error);
    }

    async fn stream(
        &self,
        req: &Prepared,
        clock: &LevelClock,
        record: &mut RequestRecord,
        keep_times: bool,
    ) -> Result<Ending, RequestError> {
        let mut builder = self
            .http
            .post(&req.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .body(req.body.clone());
        if let Some(key) = &self.config.api_key {
            builder = builder.bearer_auth(key);
        }
        let response = builder.send().await.map_err(|e| classify(&e, false))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let text = response.text().await.unwrap_or_default();
            let mut message = format!("HTTP {status}: {}", server_message(&text));
            if let Some(after) = retry_after {
                message.push_str(&format!(" (Retry-After: {})", truncate(after)));
            }
            return Err(RequestError {
                kind: ErrorKind::Status {
                    status: status.as_u16(),
                },
                message,
            });
        }
        let mut body = response.bytes_stream();
        let mut parser = SseParser::new();
        let mut seen = StreamState::default();
        while let Some(chunk) = body.next().await {
            let at = clock.now();
            let chunk = chunk.map_err(|e| classify(&e, true))?;
            parser.feed(&chunk, &mut |line| {
                seen.on_line(line, at, record, keep_times);
            });
            if let Some(e) = seen.error.take() {
                return Err(e);
            }
            if parser.pending() > MAX_LINE {
                // Not an SSE stream (or a hostile one): do not buffer it until the timeout.
                return Err(RequestError {
                    kind: ErrorKind::BrokenStream,
                    message: format!("a stream line longer than {MAX_LINE} bytes (not SSE?)"),
                });
            }
            if seen.done {
                // Read the rest of the body (normally just the chunked terminator) so the
                // connection goes back to the pool; the request already ended at `[DONE]`.
                let _ = tokio::time::timeout(DRAIN_AFTER_DONE, async {
                    while body.next().await.is_some() {}
                })
                .await;
                return Ok(Ending::Done(at));
            }
        }
        let at = clock.now();
        parser.finish(&mut |line| seen.on_line(line, at, record, keep_times));
        if let Some(e) = seen.error.take() {
            return Err(e);
        }
        Ok(if seen.done {
            Ending::Done(at)
        } else {
            Ending::Closed
        })
    }
}

/// How a stream that did not fail ended.
enum Ending {
    /// `data: [DONE]` arrived at this time.
    Done(f64),
    /// The body ended without `[DONE]`.
    Closed,
}

#[derive(Default)]
struct StreamState {
    done: bool,
    error: Option<RequestError>,
}

/// The fields of a chunk the client looks at; only parsed for chunks that mention them.
#[derive(Deserialize)]
struct ChunkProbe {
    #[serde(default)]
    choices: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
}

impl StreamState {
    fn on_line(&mut self, line: SseLine<'_>, at: f64, record: &mut RequestRecord, keep: bool) {
        if self.done || self.error.is_some() {
            return;
        }
        let payload = match line {
            SseLine::Done => {
                self.done = true;
                return;
            }
            SseLine::Data(p) => p,
        };
        if (payload.contains("\"usage\"") || payload.contains("\"error\""))
            && let Ok(probe) = serde_json::from_str::<ChunkProbe>(payload)
        {
            if let Some(err) = probe.error {
                self.error = Some(RequestError {
                    kind: ErrorKind::BrokenStream,
                    message: format!("error event in the stream: {}", error_text(&err)),
                });
                return;
            }
            if let Some(usage) = probe.usage {
                record.prompt_tokens = usage.prompt_tokens.or(record.prompt_tokens);
                record.completion_tokens = usage.completion_tokens.or(record.completion_tokens);
                if probe.choices.is_none_or(|c| c.is_empty()) {
                    // The usage-only chunk of `include_usage`: not an event of the seed table.
                    return;
                }
            }
        }
        record.first_event.get_or_insert(at);
        record.events += 1;
        if keep {
            record.event_times.push(at);
        }
    }
}

/// The message of an OpenAI-style `{"error": {"message": ..}}`, FastAPI's `{"detail": ..}`, or
/// the start of the body as text.
pub fn server_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let text = match parsed {
        Some(v) if v.get("error").is_some() => error_text(&v["error"]),
        Some(v) if v.get("detail").is_some() => match &v["detail"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
        _ => body.trim().to_string(),
    };
    truncate(text)
}

fn error_text(err: &Value) -> String {
    match err {
        Value::String(s) => s.clone(),
        v => v
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| v.to_string(), str::to_string),
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Sort a transport error into drills.md's classes, with its chain of causes as the message.
fn classify(e: &reqwest::Error, streaming: bool) -> RequestError {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_connect() {
        ErrorKind::Connect
    } else {
        // The connection broke: before the response head, or while the body streamed.
        ErrorKind::BrokenStream
    };
    let mut message = if streaming {
        format!("stream broke: {e}")
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    RequestError {
        kind,
        message: truncate(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use servesim_sim::Origin;

    #[test]
    fn base_urls_are_normalised() {
        assert_eq!(
            base("http://127.0.0.1:8000/v1/").ok().as_deref(),
            Some("http://127.0.0.1:8000")
        );
        assert_eq!(base("http://h:1").ok().as_deref(), Some("http://h:1"));
        assert!(matches!(base("https://h:1"), Err(ClientError::Https(_))));
        assert!(base("127.0.0.1:8000").is_err());
        assert!(base("http://").is_err());
    }

    #[test]
    fn body_follows_drills_md() {
        let c = ChatClient::new(ClientConfig::new("http://127.0.0.1:1")).expect("valid url");
        let b = c.body(&RequestSpec::chat("hi", 128)).expect("chat prompt");
        assert_eq!(
            b,
            json!({"model": "local", "messages": [{"role": "user", "content": "hi"}],
                   "stream": true, "max_tokens": 128, "temperature": 0.7,
                   "stream_options": {"include_usage": true}})
        );
        let mut spec = RequestSpec::chat("hi", 8);
        spec.ignore_eos = true;
        spec.min_tokens = 8;
        let b = c.body(&spec).expect("chat prompt");
        assert_eq!(b["ignore_eos"], json!(true));
        assert_eq!(b["min_tokens"], json!(8));
        spec.prompt = Prompt::Tokens(100);
        assert!(matches!(c.body(&spec), Err(ClientError::TokenPrompt)));
    }

    #[test]
    fn usage_only_chunks_are_not_events_and_errors_end_the_stream() {
        let mut rec = RequestRecord::new(Origin::Group(0), 0, 0.0, 0.0);
        let mut s = StreamState::default();
        s.on_line(
            SseLine::Data(r#"{"choices":[{"delta":{"content":"a"}}]}"#),
            0.1,
            &mut rec,
            true,
        );
        s.on_line(
            SseLine::Data(r#"{"choices":[{"delta":{}}],"usage":null}"#),
            0.2,
            &mut rec,
            true,
        );
        s.on_line(
            SseLine::Data(r#"{"choices":[],"usage":{"prompt_tokens":31,"completion_tokens":4}}"#),
            0.3,
            &mut rec,
            true,
        );
        assert_eq!(rec.events, 2);
        assert_eq!(rec.event_times, [0.1, 0.2]);
        assert_eq!(
            (rec.prompt_tokens, rec.completion_tokens),
            (Some(31), Some(4))
        );
        s.on_line(
            SseLine::Data(r#"{"error":{"message":"boom"}}"#),
            0.4,
            &mut rec,
            true,
        );
        let err = s.error.expect("error event");
        assert_eq!(err.kind, ErrorKind::BrokenStream);
        assert!(err.message.ends_with("boom"));
    }

    #[test]
    fn server_messages_are_extracted() {
        let vllm = r#"{"error":{"message":"max_tokens must be at least 1, got 0.","type":"BadRequestError","param":"max_tokens","code":400}}"#;
        assert_eq!(
            server_message(vllm),
            "max_tokens must be at least 1, got 0."
        );
        assert_eq!(server_message(r#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(server_message(" plain text \n"), "plain text");
        assert!(server_message(&"x".repeat(2000)).len() < 600);
    }
}
