//! Streaming answers: each token's server-sent event formatted by the lane's dispatcher as it
//! hands the token over, and handed to hyper as the response body.
//!
//! The engine thread gives each lane its share of an iteration's tokens just before they are due
//! (see [`super::driver`]); the lane's dispatcher runs each token through its request's
//! [`OutputProcessor`] (text, stop strings, the cut fault), appends the event to the stream's queue and
//! wakes the connection's task, which takes the queue as one body frame for hyper to write. A
//! body dropped before its end (the client went away, hyper ended the connection) takes the
//! request out of the engine at once; the engine stopping before the last token breaks the body.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::body::Body;
use bytes::Bytes;
use tokio::sync::Notify;

use super::api::Endpoint;
use super::event::TokenEvent;
use super::stream::{AnswerStep, Envelope, OutputProcessor, StreamCut};

/// How a stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// Tokens still to come.
    Open,
    /// The last event (and `[DONE]`) is queued: the body ends once the queue is out.
    Done,
    /// Cut on purpose (fault injection), the engine gone, or the client gone: the body ends in an
    /// error, so hyper closes the connection without ending the stream cleanly and the client sees
    /// a broken stream.
    Broken,
}

/// One streaming answer: its events' text, queued until the body hands them to hyper.
#[derive(Debug)]
pub struct SseStream {
    inner: Mutex<Inner>,
    /// Wakes the body: bytes queued, or the end.
    notify: Notify,
}

#[derive(Debug)]
struct Inner {
    answer: OutputProcessor,
    envelope: Envelope,
    /// No event queued yet (a chat stream's first one carries the role).
    first: bool,
    /// Events not handed to hyper yet, in order.
    pending: Vec<u8>,
    /// When each token queued in `pending` was due (its emission lag is taken when hyper gets it).
    dues: Vec<Instant>,
    end: StreamEnd,
}

impl SseStream {
    /// A stream for `answer`'s events.
    pub fn new(answer: OutputProcessor, envelope: Envelope) -> Arc<SseStream> {
        Arc::new(SseStream {
            inner: Mutex::new(Inner {
                answer,
                envelope,
                first: true,
                pending: Vec::new(),
                dues: Vec::new(),
                end: StreamEnd::Open,
            }),
            notify: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing a panicking holder leaves half-done can break a later writer worse than the
        // panic did: the stream ends broken at worst.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One engine event (the lane's dispatcher calls this; `scratch` is its reusable buffer): the
    /// token's event is formatted and queued, and the body woken.
    pub fn deliver(&self, event: TokenEvent, scratch: &mut String) {
        let due = match &event {
            TokenEvent::Token { due, .. } => Some(*due),
            TokenEvent::Rejected(_) => None,
        };
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner.end != StreamEnd::Open {
            return;
        }
        scratch.clear();
        match inner.answer.on_event(Some(event)) {
            Ok(Some(AnswerStep::Token { text, finish })) => {
                if inner.first && inner.envelope.endpoint == Endpoint::Chat {
                    inner.envelope.role_event(scratch);
                }
                inner.first = false;
                inner.envelope.token_event(scratch, &text, finish.as_ref());
                match finish {
                    Some(f) => {
                        inner.envelope.tail(scratch, f.usage);
                        inner.end = StreamEnd::Done;
                    }
                    None => {
                        // The cut fault ends the stream right after this token, and the request
                        // leaves the engine as when a client goes away.
                        if inner.answer.cut_now() {
                            inner.answer.abandon();
                            inner.end = StreamEnd::Broken;
                        }
                    }
                }
                inner.pending.extend_from_slice(scratch.as_bytes());
                inner.dues.extend(due);
            }
            // After the end (nothing), or a cut (handled after the token before it).
            Ok(Some(AnswerStep::Cut) | None) => return,
            // Refused by the engine: the stream has started, so it can only break.
            Err(_) => inner.end = StreamEnd::Broken,
        }
        drop(guard);
        self.notify.notify_one();
    }

    /// The client went away: the request leaves the engine at once (its KV blocks are freed).
    pub fn abandon(&self) {
        let mut inner = self.lock();
        if inner.end == StreamEnd::Open {
            inner.answer.abandon();
            inner.pending.clear();
            inner.dues.clear();
            inner.end = StreamEnd::Broken;
        }
    }

    /// Resolves after something changed (bytes queued, or the end); a change before the call
    /// counts, so checking and then waiting loses nothing.
    async fn changed(&self) {
        self.notify.notified().await;
    }

    /// The engine's side let go of the stream before its last token: the engine stopped.
    fn engine_gone(&self) {
        let mut inner = self.lock();
        if inner.end == StreamEnd::Open {
            inner.end = StreamEnd::Broken;
            drop(inner);
            self.notify.notify_one();
        }
    }

    /// Take the queued bytes, and how the stream stands; the emission lag of the tokens taken is
    /// recorded now (hyper writes them as soon as the body's frame is back).
    fn take(&self) -> (Vec<u8>, StreamEnd) {
        let mut inner = self.lock();
        if !inner.dues.is_empty() {
            let now = Instant::now();
            for due in &inner.dues {
                inner
                    .answer
                    .emission_lag(now.saturating_duration_since(*due).as_secs_f64());
            }
            inner.dues.clear();
        }
        (std::mem::take(&mut inner.pending), inner.end)
    }
}

/// The engine's handle on a stream (what the driver keeps for the request). When the last clone
/// goes before the stream has ended, the engine stopped, and the stream breaks, as a channel
/// closes when its last sender goes.
#[derive(Debug, Clone)]
pub struct SseSender(Arc<SenderInner>);

#[derive(Debug)]
struct SenderInner(Arc<SseStream>);

impl Drop for SenderInner {
    fn drop(&mut self) {
        self.0.engine_gone();
    }
}

impl SseSender {
    pub fn new(stream: Arc<SseStream>) -> SseSender {
        SseSender(Arc::new(SenderInner(stream)))
    }

    pub fn stream(&self) -> &SseStream {
        &self.0.0
    }
}

/// The stream as a response body: its events as they come (what queued meanwhile in one frame); a
/// cut or the engine stopping ends the body in an error; dropping the body (the client went away)
/// abandons the request.
pub fn body(stream: Arc<SseStream>) -> Body {
    let events = futures_util::stream::unfold(Some(StreamOwner(stream)), |reader| async move {
        let reader = reader?;
        loop {
            let (bytes, end) = reader.0.take();
            if !bytes.is_empty() {
                return Some((Ok(Bytes::from(bytes)), Some(reader)));
            }
            match end {
                StreamEnd::Done => return None,
                StreamEnd::Broken => return Some((Err(StreamCut::engine_gone()), None)),
                StreamEnd::Open => reader.0.changed().await,
            }
        }
    });
    Body::from_stream(events)
}

/// A hold on a stream by the body that hands it to the client: dropped before the stream ended,
/// the client is gone and the request leaves the engine.
#[derive(Debug)]
struct StreamOwner(Arc<SseStream>);

impl Drop for StreamOwner {
    fn drop(&mut self) {
        self.0.abandon();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{self, DriverHandle};
    use crate::metrics::Metrics;
    use crate::stream::{AbortGuard, GenerationSetup};
    use crate::text::{AnswerText, TextMode};
    use servesim_sim::engine_core::Finished;
    use servesim_sim::request::FinishReason;

    fn stream(driver: &DriverHandle, cut_after: Option<u32>) -> Arc<SseStream> {
        let answer = OutputProcessor::new(GenerationSetup {
            guard: AbortGuard::new(driver.clone(), 1),
            text: AnswerText::new(TextMode::Echo, 0, Arc::from("one two three four")),
            stop: vec![],
            cut_after,
            metrics: Arc::new(Metrics::new("local", 100)),
            lag_probe: Arc::default(),
            prompt_tokens: 3,
            prompt_tokens_details: false,
        });
        let envelope = Envelope::new(Endpoint::Completions, "cmpl-1", 5, "local", "fp", false);
        SseStream::new(answer, envelope)
    }

    fn token(index: u32, last: bool) -> TokenEvent {
        TokenEvent::Token {
            index,
            finished: last.then_some(Finished {
                reason: FinishReason::Length,
                prompt_tokens: 3,
                max_tokens: 5,
                generated: index,
                cached_tokens: 0,
                arrival: 0.0,
                first_scheduled: 0.0,
                first_token: 0.0,
                end: 0.0,
                preemptions: 0,
            }),
            due: Instant::now(),
        }
    }

    #[test]
    fn events_queue_until_taken_and_end_cleanly() {
        let (_rt, driver) = driver::test_driver();
        let s = stream(&driver, None);
        let mut scratch = String::new();
        s.deliver(token(1, false), &mut scratch);
        let (bytes, end) = s.take();
        assert_eq!(end, StreamEnd::Open);
        let text = String::from_utf8(bytes).expect("utf-8");
        assert!(
            text.starts_with("data: {") && text.ends_with("\n\n"),
            "{text}"
        );
        assert!(text.contains("\"text\":\"one\""), "{text}");
        s.deliver(token(2, true), &mut scratch);
        let (bytes, end) = s.take();
        assert_eq!(end, StreamEnd::Done);
        let text = String::from_utf8(bytes).expect("utf-8");
        assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        // Nothing after the end.
        s.deliver(token(3, false), &mut scratch);
        assert_eq!(s.take(), (Vec::new(), StreamEnd::Done));
        driver.stop();
    }

    #[test]
    fn a_cut_breaks_after_its_token_and_a_lost_engine_breaks_the_stream() {
        let (_rt, driver) = driver::test_driver();
        let s = stream(&driver, Some(2));
        let mut scratch = String::new();
        s.deliver(token(1, false), &mut scratch);
        assert_eq!(s.take().1, StreamEnd::Open);
        s.deliver(token(2, false), &mut scratch);
        let (bytes, end) = s.take();
        assert_eq!(end, StreamEnd::Broken);
        let text = String::from_utf8(bytes).expect("utf-8");
        assert!(
            text.contains("\"text\":\" two\"") && !text.contains("[DONE]"),
            "{text}"
        );
        // The engine's handle going away before the end breaks an open stream...
        let s = stream(&driver, None);
        let sender = SseSender::new(Arc::clone(&s));
        let copy = sender.clone();
        drop(sender);
        assert_eq!(s.take().1, StreamEnd::Open, "a clone still holds it");
        drop(copy);
        assert_eq!(s.take().1, StreamEnd::Broken);
        // ...but not a finished one.
        let s = stream(&driver, None);
        let sender = SseSender::new(Arc::clone(&s));
        sender.stream().deliver(token(1, true), &mut scratch);
        drop(sender);
        assert_eq!(s.take().1, StreamEnd::Done);
        driver.stop();
    }
}
