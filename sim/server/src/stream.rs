//! A request in flight on the client's side: the engine's tokens turned into text, stop strings,
//! the cut fault, and the abort that fires when the client goes away. [`Envelope`] writes vLLM's
//! server-sent events (see [`super::sse`]); [`Generation::collect`] waits for the whole answer.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedReceiver;

use super::api::{Endpoint, Usage};
use super::driver::{DriverHandle, TokenEvent};
use super::errors::ApiError;
use super::lag_probe::LagProbe;
use super::metrics::Metrics;
use super::text::AnswerText;
use servesim_sim::engine_core::AdmissionError;
use servesim_sim::request::FinishReason;

/// Takes the request out of the engine when dropped unless it finished there: a client that
/// disconnects drops its response body, and with it this guard, so its KV blocks are freed at once.
#[derive(Debug)]
pub struct AbortGuard {
    driver: DriverHandle,
    key: u64,
    /// What the abort counts as (`abort`, or `stop` when a stop string ended the answer).
    reason: Option<FinishReason>,
}

impl AbortGuard {
    pub fn new(driver: DriverHandle, key: u64) -> AbortGuard {
        AbortGuard {
            driver,
            key,
            reason: Some(FinishReason::Abort),
        }
    }
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if let Some(reason) = self.reason {
            self.driver.abort(self.key, reason);
        }
    }
}

/// One step of an answer as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerStep {
    /// A token's text; `finish` on the last one.
    Token {
        text: String,
        finish: Option<Finish>,
    },
    /// The server drops the connection here (fault injection).
    Cut,
}

/// How an answer ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub reason: FinishReason,
    /// The stop string that ended it, if one did.
    pub stop: Option<String>,
    pub usage: Usage,
}

/// The client side of one request, whatever carries its tokens (vLLM's output processor for one
/// request): text, stop strings, the cut fault and the abort guard, turning the engine's events into [`AnswerStep`]s one at a time (no waiting, so
/// the lane's dispatcher can run it for a stream as well as a task for a channel).
#[derive(Debug)]
pub struct OutputProcessor {
    guard: AbortGuard,
    text: AnswerText,
    stop: Vec<String>,
    cut_after: Option<u32>,
    metrics: Arc<Metrics>,
    lag_probe: Arc<LagProbe>,
    prompt_tokens: u32,
    prompt_tokens_details: bool,
    /// Text so far (for stop strings and the non-streaming answer).
    out: String,
    tokens: u32,
    done: bool,
}

/// What the caller decided about a request before it was submitted.
#[derive(Debug)]
pub struct GenerationSetup {
    pub guard: AbortGuard,
    pub text: AnswerText,
    pub stop: Vec<String>,
    /// Cut the connection after this many tokens (the `cut` fault).
    pub cut_after: Option<u32>,
    pub metrics: Arc<Metrics>,
    /// The benchmark's lag records (see [`LagProbe`]).
    pub lag_probe: Arc<LagProbe>,
    pub prompt_tokens: u32,
    /// Report the prompt tokens read from the prefix cache in `usage`
    /// (`--enable-prompt-tokens-details`).
    pub prompt_tokens_details: bool,
}

impl OutputProcessor {
    pub fn new(setup: GenerationSetup) -> OutputProcessor {
        OutputProcessor {
            guard: setup.guard,
            text: setup.text,
            stop: setup.stop,
            cut_after: setup.cut_after,
            metrics: setup.metrics,
            lag_probe: setup.lag_probe,
            prompt_tokens: setup.prompt_tokens,
            prompt_tokens_details: setup.prompt_tokens_details,
            out: String::new(),
            tokens: 0,
            done: false,
        }
    }

    /// Whether the answer is over (finished, stopped, cut or failed).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The cut fault, checked before waiting for the next token: true (once) when it fires now.
    pub fn cut_now(&mut self) -> bool {
        if !self.done && self.cut_after.is_some_and(|n| self.tokens >= n) {
            self.done = true;
            return true;
        }
        false
    }

    /// How late one of the answer's tokens left the server, seconds: the `/metrics` histogram
    /// and the benchmark's record.
    pub fn emission_lag(&self, lag: f64) {
        self.metrics.emission_lag(lag);
        self.lag_probe.emission.record(lag);
    }

    /// Take the request out of the engine now, unless it has finished there (the client is gone).
    pub fn abandon(&mut self) {
        self.done = true;
        if let Some(reason) = self.guard.reason.take() {
            self.guard.driver.abort(self.guard.key, reason);
        }
    }

    /// The piece one engine event makes (`event` `None`: the engine stopped). An engine rejection
    /// is a 400; an event after the end is ignored (`Ok(None)`).
    pub fn on_event(&mut self, event: Option<TokenEvent>) -> Result<Option<AnswerStep>, ApiError> {
        if self.done {
            return Ok(None);
        }
        match event {
            None => {
                self.done = true;
                Err(ApiError::EngineGone)
            }
            Some(TokenEvent::Rejected(e)) => {
                self.done = true;
                self.guard.reason = None;
                Err(rejection(&e))
            }
            Some(TokenEvent::Token {
                index, finished, ..
            }) => {
                self.tokens += 1;
                let before = self.out.len();
                self.out.push_str(self.text.token(index));
                if let Some(stop) = self.find_stop(before) {
                    // Like vLLM: the answer ends before the stop string, which is reported; the
                    // request leaves the engine now (counted as stopped, not aborted).
                    self.done = true;
                    if finished.is_none() {
                        self.guard.reason = Some(FinishReason::Stop);
                        self.abandon();
                    } else {
                        self.guard.reason = None;
                    }
                    let text = self.out.get(before..).unwrap_or_default().to_string();
                    return Ok(Some(AnswerStep::Token {
                        text,
                        finish: Some(Finish {
                            reason: FinishReason::Stop,
                            stop: Some(stop),
                            usage: Usage::new(self.prompt_tokens, self.tokens),
                        }),
                    }));
                }
                let text = self.out[before..].to_string();
                let finish = finished.map(|f| {
                    self.done = true;
                    self.guard.reason = None;
                    Finish {
                        reason: f.reason,
                        stop: None,
                        usage: Usage::new(f.prompt_tokens, f.generated)
                            .with_cached(self.prompt_tokens_details.then_some(f.cached_tokens)),
                    }
                });
                Ok(Some(AnswerStep::Token { text, finish }))
            }
        }
    }

    /// If a stop string now occurs in the text (searching only where the newest token could have
    /// completed one), truncate before it and return it.
    fn find_stop(&mut self, before: usize) -> Option<String> {
        let mut hit: Option<(usize, usize)> = None;
        for (i, s) in self.stop.iter().enumerate() {
            let mut from = before.saturating_sub(s.len().saturating_sub(1));
            while !self.out.is_char_boundary(from) {
                from -= 1;
            }
            if let Some(p) = self.out[from..].find(s.as_str()) {
                let at = from + p;
                if hit.is_none_or(|(h, _)| at < h) {
                    hit = Some((at, i));
                }
            }
        }
        let (at, i) = hit?;
        self.out.truncate(at);
        Some(self.stop[i].clone())
    }
}

/// The client side of one request whose tokens come over a channel (non-streaming answers;
/// streams go through [`super::sse`]).
#[derive(Debug)]
pub struct Generation {
    rx: UnboundedReceiver<TokenEvent>,
    answer: OutputProcessor,
}

impl Generation {
    pub fn new(rx: UnboundedReceiver<TokenEvent>, setup: GenerationSetup) -> Generation {
        Generation {
            rx,
            answer: OutputProcessor::new(setup),
        }
    }

    /// The next piece; `Ok(None)` after the last one. An engine rejection is a 400; a channel that
    /// closes early means the engine stopped (shutdown).
    pub async fn next(&mut self) -> Result<Option<AnswerStep>, ApiError> {
        if self.answer.is_done() {
            return Ok(None);
        }
        if self.answer.cut_now() {
            return Ok(Some(AnswerStep::Cut));
        }
        let event = self.rx.recv().await;
        if let Some(TokenEvent::Token { due, .. }) = &event {
            self.answer
                .emission_lag(Instant::now().saturating_duration_since(*due).as_secs_f64());
        }
        self.answer.on_event(event)
    }

    /// Wait for the whole answer: its text and how it ended, or `None` if the cut fault fired.
    pub async fn collect(mut self) -> Result<Option<(String, Finish)>, ApiError> {
        loop {
            match self.next().await? {
                Some(AnswerStep::Token {
                    finish: Some(f), ..
                }) => return Ok(Some((std::mem::take(&mut self.answer.out), f))),
                Some(AnswerStep::Token { .. }) => {}
                Some(AnswerStep::Cut) | None => return Ok(None),
            }
        }
    }
}

fn rejection(e: &AdmissionError) -> ApiError {
    ApiError::BadRequest {
        message: e.to_string(),
        param: None,
    }
}

/// The fixed parts of one response's events, formatted once.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub endpoint: Endpoint,
    /// `{"id":..,"object":..,"created":..,"model":..,` shared by every event.
    head: String,
    fingerprint: String,
    include_usage: bool,
}

impl Envelope {
    pub fn new(
        endpoint: Endpoint,
        id: &str,
        created: u64,
        model: &str,
        fingerprint: &str,
        include_usage: bool,
    ) -> Envelope {
        let object = match endpoint {
            Endpoint::Chat => "chat.completion.chunk",
            Endpoint::Completions => "text_completion",
        };
        let head = format!(
            "{{\"id\":{},\"object\":\"{object}\",\"created\":{created},\"model\":{},",
            json_str(id),
            json_str(model)
        );
        Envelope {
            endpoint,
            head,
            fingerprint: json_str(fingerprint),
            include_usage,
        }
    }

    /// vLLM's first chat event: the assistant role with empty content.
    pub(super) fn role_event(&self, out: &mut String) {
        out.push_str("data: ");
        out.push_str(&self.head);
        out.push_str("\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"prompt_token_ids\":null,\"prompt_text\":null}\n\n");
    }

    /// One token's event, written straight into `out` (this runs once per streamed token).
    pub(super) fn token_event(&self, out: &mut String, text: &str, finish: Option<&Finish>) {
        out.push_str("data: ");
        out.push_str(&self.head);
        let reason = match finish {
            None => "null",
            Some(f) => match f.reason {
                FinishReason::Stop => "\"stop\"",
                FinishReason::Length => "\"length\"",
                FinishReason::Abort => "\"abort\"",
            },
        };
        let stop = finish.and_then(|f| f.stop.as_deref());
        let push_stop = |out: &mut String| match stop {
            Some(s) => push_json_str(out, s),
            None => out.push_str("null"),
        };
        match self.endpoint {
            Endpoint::Chat => {
                out.push_str("\"choices\":[{\"index\":0,\"delta\":{\"content\":");
                push_json_str(out, text);
                out.push_str("},\"logprobs\":null,\"finish_reason\":");
                out.push_str(reason);
                if finish.is_some() {
                    out.push_str(",\"stop_reason\":");
                    push_stop(out);
                }
                out.push_str(",\"token_ids\":null}]");
                self.push_finish_fingerprint(out, finish);
                out.push_str("}\n\n");
            }
            Endpoint::Completions => {
                out.push_str("\"choices\":[{\"index\":0,\"text\":");
                push_json_str(out, text);
                out.push_str(",\"logprobs\":null,\"finish_reason\":");
                out.push_str(reason);
                out.push_str(",\"stop_reason\":");
                push_stop(out);
                out.push_str(",\"prompt_token_ids\":null,\"token_ids\":null}]");
                self.push_finish_fingerprint(out, finish);
                out.push_str("}\n\n");
            }
        }
    }

    /// vLLM puts `system_fingerprint` on the finish event when there is no usage event to carry it
    /// (both endpoints).
    fn push_finish_fingerprint(&self, out: &mut String, finish: Option<&Finish>) {
        if finish.is_some() && !self.include_usage {
            out.push_str(",\"system_fingerprint\":");
            out.push_str(&self.fingerprint);
        }
    }

    /// The usage event (when asked for) and `[DONE]`.
    pub(super) fn tail(&self, out: &mut String, usage: Usage) {
        if self.include_usage {
            out.push_str("data: ");
            out.push_str(&self.head);
            // vLLM 0.32's chat handler also reports created_cache_tokens 0.
            let created = match self.endpoint {
                Endpoint::Chat => ",\"created_cache_tokens\":0",
                Endpoint::Completions => "",
            };
            let details = match usage.cached_tokens {
                Some(n) => {
                    format!(",\"prompt_tokens_details\":{{\"cached_tokens\":{n}{created}}}")
                }
                None => String::new(),
            };
            out.push_str(&format!(
                "\"choices\":[],\"usage\":{{\"prompt_tokens\":{},\"total_tokens\":{},\"completion_tokens\":{}{details}}},\"system_fingerprint\":{}}}\n\n",
                usage.prompt_tokens, usage.total_tokens, usage.completion_tokens, self.fingerprint
            ));
        }
        out.push_str("data: [DONE]\n\n");
    }
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_json_str(&mut out, s);
    out
}

/// Append `s` as a JSON string literal (RFC 8259 escapes) without an intermediate allocation.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{b:04x}"));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// The connection is dropped here on purpose (or the engine stopped): the body ends in an error, so
/// the client sees a broken stream rather than a clean end.
#[derive(Debug, thiserror::Error)]
#[error("stream ended by the server: {0}")]
pub struct StreamCut(&'static str);

impl StreamCut {
    /// The cut the fault injector asks for.
    pub fn fault() -> StreamCut {
        StreamCut("fault injection")
    }

    /// The engine stopped (or refused the request) with the stream open.
    pub fn engine_gone() -> StreamCut {
        StreamCut("the engine stopped")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::TextMode;

    fn finish(reason: FinishReason) -> Finish {
        Finish {
            reason,
            stop: None,
            usage: Usage::new(31, 4),
        }
    }

    #[test]
    fn chat_events_match_vllm() {
        let env = Envelope::new(Endpoint::Chat, "chatcmpl-1", 5, "local", "fp", true);
        let mut out = String::new();
        env.role_event(&mut out);
        env.token_event(&mut out, "a\"b", None);
        env.token_event(&mut out, "c", Some(&finish(FinishReason::Length)));
        env.tail(&mut out, Usage::new(31, 2));
        let events: Vec<&str> = out.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 5);
        let json = |e: &str| -> serde_json::Value {
            serde_json::from_str(e.strip_prefix("data: ").expect("data line")).expect("json")
        };
        let role = json(events[0]);
        assert_eq!(role["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(role["choices"][0]["delta"]["content"], "");
        assert_eq!(json(events[1])["choices"][0]["delta"]["content"], "a\"b");
        assert_eq!(json(events[2])["choices"][0]["finish_reason"], "length");
        // With a usage event, the fingerprint is there only (vLLM 0.32).
        assert!(json(events[2]).get("system_fingerprint").is_none());
        let usage = json(events[3]);
        assert_eq!(usage["choices"].as_array().map(Vec::len), Some(0));
        assert_eq!(usage["usage"]["total_tokens"], 33);
        assert_eq!(usage["system_fingerprint"], "fp");
        assert_eq!(events[4], "data: [DONE]");
        // Without one, the finish event carries it.
        let env = Envelope::new(Endpoint::Chat, "chatcmpl-1", 5, "local", "fp", false);
        let mut out = String::new();
        env.token_event(&mut out, "c", Some(&finish(FinishReason::Length)));
        assert_eq!(json(out.trim_end())["system_fingerprint"], "fp");
    }

    #[test]
    fn json_strings_escape_like_serde() {
        for s in [
            "plain",
            "q\"uote",
            "back\\slash",
            "nl\n tab\t cr\r",
            "\u{1}\u{1f}\u{8}\u{c}",
            "é ü 中",
        ] {
            let want = serde_json::to_string(s).expect("serialises");
            assert_eq!(json_str(s), want);
        }
    }

    #[test]
    fn completion_events_match_vllm() {
        let env = Envelope::new(Endpoint::Completions, "cmpl-1", 5, "local", "fp", false);
        let mut out = String::new();
        env.token_event(&mut out, "x", Some(&finish(FinishReason::Stop)));
        env.tail(&mut out, Usage::new(3, 1));
        let first = out.split("\n\n").next().expect("an event");
        let v: serde_json::Value =
            serde_json::from_str(first.trim_start_matches("data: ")).expect("json");
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], "x");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["system_fingerprint"], "fp");
        assert!(out.ends_with("data: [DONE]\n\n") && !out.contains("usage"));
        let env = Envelope::new(Endpoint::Completions, "cmpl-1", 5, "local", "fp", true);
        let mut out = String::new();
        env.token_event(&mut out, "x", Some(&finish(FinishReason::Stop)));
        assert!(!out.contains("system_fingerprint"), "{out}");
    }

    #[test]
    fn stop_strings_cut_the_text() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (rt, driver) = super::super::driver::test_driver();
        let text = AnswerText::new(TextMode::Echo, 0, Arc::from("one two three four"));
        let g = Generation::new(
            rx,
            GenerationSetup {
                guard: AbortGuard::new(driver.clone(), 1),
                text,
                stop: vec!["ee f".into()],
                cut_after: None,
                metrics: Arc::new(Metrics::new("local", 100)),
                lag_probe: Arc::default(),
                prompt_tokens: 3,
                prompt_tokens_details: false,
            },
        );
        for index in 1..=4 {
            let _ = tx.send(TokenEvent::Token {
                index,
                finished: None,
                due: Instant::now(),
            });
        }
        let (out, fin) = rt
            .block_on(g.collect())
            .expect("no error")
            .expect("finished");
        assert_eq!(out, "one two thr");
        assert_eq!(fin.stop.as_deref(), Some("ee f"));
        assert_eq!(fin.usage.completion_tokens, 4);
        driver.stop();
    }
}
