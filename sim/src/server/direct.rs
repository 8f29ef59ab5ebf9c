//! Streaming answers written by their lane's dispatcher straight into the client's socket.
//!
//! Why: through hyper, each streamed token woke its connection's task, which polled the body
//! stream, hyper's encoder and its flush before the one `write` that matters: 3–7 µs of CPU per
//! token (of 25–30) on the 2-core VM. An engine iteration hands ~256 tokens over at one instant,
//! so each token of a burst also waited for that work on the tokens before it. Here the lane's
//! dispatcher, while it hands over its share of the burst, formats each token's event and writes
//! it with one non-blocking `write`. Only when a socket is full (a slow reader) do the bytes
//! queue, for the connection's task to flush when the socket becomes writable; the connection's
//! task also watches for the client going away, and owns the socket between requests (see
//! [`super::http1`]).
//!
//! Without a connection to write to (the router called directly, as in tests), the same stream
//! queues its events unframed for [`body`] to hand out.

use std::io::ErrorKind;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::body::Body;
use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::driver::TokenEvent;
use super::http1;
use super::stream::{Answer, Endpoint, Envelope, Piece, StreamCut};

/// How a stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Tokens still to come.
    Open,
    /// The last event (and `[DONE]`) is written or queued: once the queue is out, the connection
    /// can take its next request.
    Done,
    /// Cut on purpose (fault injection), the engine gone, or the client gone: the connection
    /// closes without ending the stream cleanly, so the client sees a broken stream.
    Broken,
}

/// One streaming answer: its events' text and where they go.
#[derive(Debug)]
pub struct DirectStream {
    inner: Mutex<Inner>,
    /// Wakes the reader of the queue (the connection's task, or [`body`]): bytes queued, or the end.
    notify: Notify,
}

#[derive(Debug)]
struct Inner {
    answer: Answer,
    envelope: Envelope,
    /// No event written yet (a chat stream's first one carries the role).
    first: bool,
    /// HTTP/1.1 chunked framing (written to a connection) or bare events (handed to [`body`]).
    chunked: bool,
    /// Where the dispatcher writes directly; set once the response head is out, cleared at the end.
    socket: Option<Arc<TcpStream>>,
    /// Bytes not written yet, in order: before the head is out, or when the socket was full.
    pending: Vec<u8>,
    end: End,
}

impl Inner {
    /// Queue one write's worth of events (`data`), framed; `last` closes the chunked body.
    fn frame(&mut self, data: &[u8], last: bool) {
        if self.chunked {
            http1::push_chunk(&mut self.pending, data);
            if last {
                self.pending.extend_from_slice(http1::LAST_CHUNK);
            }
        } else {
            self.pending.extend_from_slice(data);
        }
    }

    /// Write as much of the queue to `socket` as it takes without waiting.
    fn write_to(&mut self, socket: &TcpStream) {
        while !self.pending.is_empty() {
            match socket.try_write(&self.pending) {
                Ok(n) if n == self.pending.len() => self.pending.clear(),
                Ok(n) if n > 0 => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // Reset, broken pipe, or a write that takes nothing: the client is gone.
                Ok(_) | Err(_) => {
                    self.client_gone();
                    return;
                }
            }
        }
    }

    fn client_gone(&mut self) {
        self.answer.abandon();
        self.pending.clear();
        self.end = End::Broken;
        self.socket = None;
    }
}

impl DirectStream {
    /// A stream for `answer`'s events; `chunked` when a connection will write it (see the module).
    pub fn new(answer: Answer, envelope: Envelope, chunked: bool) -> Arc<DirectStream> {
        Arc::new(DirectStream {
            inner: Mutex::new(Inner {
                answer,
                envelope,
                first: true,
                chunked,
                socket: None,
                pending: Vec::new(),
                end: End::Open,
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
    /// token's event is formatted and written to the socket at once when nothing is queued ahead
    /// of it. The emission lag is taken after the write.
    pub fn deliver(&self, event: TokenEvent, scratch: &mut String) {
        let due = match &event {
            TokenEvent::Token { due, .. } => Some(*due),
            TokenEvent::Rejected(_) => None,
        };
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner.end != End::Open {
            return;
        }
        scratch.clear();
        match inner.answer.on_event(Some(event)) {
            Ok(Some(Piece::Token { text, finish })) => {
                if inner.first && inner.envelope.endpoint == Endpoint::Chat {
                    inner.envelope.role_event(scratch);
                }
                inner.first = false;
                inner.envelope.token_event(scratch, &text, finish.as_ref());
                let last = match finish {
                    Some(f) => {
                        inner.envelope.tail(scratch, f.usage);
                        inner.end = End::Done;
                        true
                    }
                    None => {
                        // The cut fault ends the stream right after this token, and the request
                        // leaves the engine as when a client goes away.
                        if inner.answer.cut_now() {
                            inner.answer.abandon();
                            inner.end = End::Broken;
                        }
                        false
                    }
                };
                inner.frame(scratch.as_bytes(), last);
            }
            // After the end (nothing), or a cut (handled after the token before it).
            Ok(Some(Piece::Cut) | None) => return,
            // Refused by the engine: the stream has started, so it can only break.
            Err(_) => inner.end = End::Broken,
        }
        if let Some(socket) = inner.socket.clone() {
            inner.write_to(&socket);
        }
        if let Some(due) = due {
            inner
                .answer
                .metrics()
                .emission_lag(Instant::now().saturating_duration_since(due).as_secs_f64());
        }
        let wake = !inner.pending.is_empty() || inner.end != End::Open;
        if inner.end != End::Open {
            inner.socket = None;
        }
        drop(guard);
        if wake {
            self.notify.notify_one();
        }
    }

    /// The response head is out on `socket`: from now on the dispatcher writes there directly
    /// (what queued before is flushed by the connection's next [`DirectStream::flush`]).
    pub fn attach(&self, socket: Arc<TcpStream>) {
        let mut inner = self.lock();
        if inner.end == End::Open {
            inner.socket = Some(socket);
        }
    }

    /// Write what is queued to `socket` without waiting; then whether bytes are still queued (the
    /// socket is full) and how the stream stands.
    pub fn flush(&self, socket: &TcpStream) -> (bool, End) {
        let mut inner = self.lock();
        inner.write_to(socket);
        (!inner.pending.is_empty(), inner.end)
    }

    /// The client went away: the request leaves the engine at once (its KV blocks are freed).
    pub fn abandon(&self) {
        let mut inner = self.lock();
        if inner.end == End::Open {
            inner.client_gone();
        }
    }

    /// Resolves after something changed (bytes queued, or the end); a change before the call
    /// counts, so checking and then waiting loses nothing.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    /// The engine's side let go of the stream before its last token: the engine stopped.
    fn engine_gone(&self) {
        let mut inner = self.lock();
        if inner.end == End::Open {
            inner.end = End::Broken;
            inner.socket = None;
            drop(inner);
            self.notify.notify_one();
        }
    }

    /// Take the queued bytes (unframed streams).
    fn take(&self) -> (Vec<u8>, End) {
        let mut inner = self.lock();
        (std::mem::take(&mut inner.pending), inner.end)
    }
}

/// The engine's handle on a stream (what the driver keeps for the request). When the last clone
/// goes before the stream has ended, the engine stopped, and the stream breaks, as a channel
/// closes when its last sender goes.
#[derive(Debug, Clone)]
pub struct DirectSender(Arc<SenderInner>);

#[derive(Debug)]
struct SenderInner(Arc<DirectStream>);

impl Drop for SenderInner {
    fn drop(&mut self) {
        self.0.engine_gone();
    }
}

impl DirectSender {
    pub fn new(stream: Arc<DirectStream>) -> DirectSender {
        DirectSender(Arc::new(SenderInner(stream)))
    }

    pub fn stream(&self) -> &DirectStream {
        &self.0.0
    }
}

/// The stream as a response body (no connection writes it): its events as they come; a cut or
/// the engine stopping ends the body in an error; dropping the body (the client went away)
/// abandons the request.
pub fn body(stream: Arc<DirectStream>) -> Body {
    let events = futures_util::stream::unfold(Some(StreamOwner(stream)), |reader| async move {
        let reader = reader?;
        loop {
            let (bytes, end) = reader.0.take();
            if !bytes.is_empty() {
                return Some((Ok(Bytes::from(bytes)), Some(reader)));
            }
            match end {
                End::Done => return None,
                End::Broken => return Some((Err(StreamCut::engine_gone()), None)),
                End::Open => reader.0.changed().await,
            }
        }
    });
    Body::from_stream(events)
}

/// A hold on a stream by what writes it to the client (a connection, or [`body`]): dropped before
/// the stream ended, the client is gone and the request leaves the engine.
#[derive(Debug)]
pub struct StreamOwner(pub Arc<DirectStream>);

impl Drop for StreamOwner {
    fn drop(&mut self) {
        self.0.abandon();
    }
}

/// In a response's extensions: a stream for the connection to write itself (see
/// [`super::http1`]); the response's own body is empty.
#[derive(Debug, Clone)]
pub struct DirectResponse(pub Arc<StreamOwner>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Finished;
    use crate::request::FinishReason;
    use crate::server::driver::{self, DriverHandle};
    use crate::server::metrics::Metrics;
    use crate::server::stream::{AbortGuard, GenerationSetup};
    use crate::server::text::{AnswerText, TextMode};

    fn stream(driver: &DriverHandle, chunked: bool, cut_after: Option<u32>) -> Arc<DirectStream> {
        let answer = Answer::new(GenerationSetup {
            guard: AbortGuard::new(driver.clone(), 1),
            text: AnswerText::new(TextMode::Echo, 0, Arc::from("one two three four")),
            stop: vec![],
            cut_after,
            metrics: Arc::new(Metrics::new("local", 100)),
            prompt_tokens: 3,
            prompt_tokens_details: false,
        });
        let envelope = Envelope::new(Endpoint::Completions, "cmpl-1", 5, "local", "fp", false);
        DirectStream::new(answer, envelope, chunked)
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

    /// Undo HTTP/1.1 chunked framing; `None` if the bytes are not whole, well-formed chunks.
    fn dechunk(mut b: &[u8]) -> Option<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let line = b.windows(2).position(|w| w == b"\r\n")?;
            let size = usize::from_str_radix(std::str::from_utf8(&b[..line]).ok()?, 16).ok()?;
            b = &b[line + 2..];
            if size == 0 {
                return (b == b"\r\n").then_some((out, true));
            }
            out.extend_from_slice(b.get(..size)?);
            if b.get(size..size + 2)? != b"\r\n" {
                return None;
            }
            b = &b[size + 2..];
        }
        Some((out, false))
    }

    #[test]
    fn events_queue_chunked_until_a_socket_is_attached_and_end_cleanly() {
        let (_rt, driver) = driver::test_driver();
        let s = stream(&driver, true, None);
        let mut scratch = String::new();
        s.deliver(token(1, false), &mut scratch);
        let (bytes, end) = s.take();
        assert_eq!(end, End::Open);
        let (events, closed) = dechunk(&bytes).expect("whole chunks");
        assert!(!closed);
        let text = String::from_utf8(events).expect("utf-8");
        assert!(
            text.starts_with("data: {") && text.ends_with("\n\n"),
            "{text}"
        );
        assert!(text.contains("\"text\":\"one\""), "{text}");
        s.deliver(token(2, true), &mut scratch);
        let (bytes, end) = s.take();
        assert_eq!(end, End::Done);
        let (events, closed) = dechunk(&bytes).expect("whole chunks");
        assert!(
            closed,
            "the body's last chunk is written with the last token"
        );
        let text = String::from_utf8(events).expect("utf-8");
        assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        // Nothing after the end.
        s.deliver(token(3, false), &mut scratch);
        assert_eq!(s.take(), (Vec::new(), End::Done));
        driver.stop();
    }

    #[test]
    fn a_cut_breaks_after_its_token_and_a_lost_engine_breaks_the_stream() {
        let (_rt, driver) = driver::test_driver();
        let s = stream(&driver, false, Some(2));
        let mut scratch = String::new();
        s.deliver(token(1, false), &mut scratch);
        assert_eq!(s.take().1, End::Open);
        s.deliver(token(2, false), &mut scratch);
        let (bytes, end) = s.take();
        assert_eq!(end, End::Broken);
        let text = String::from_utf8(bytes).expect("utf-8");
        assert!(
            text.contains("\"text\":\" two\"") && !text.contains("[DONE]"),
            "{text}"
        );
        // The engine's handle going away before the end breaks an open stream...
        let s = stream(&driver, false, None);
        let sender = DirectSender::new(Arc::clone(&s));
        let copy = sender.clone();
        drop(sender);
        assert_eq!(s.take().1, End::Open, "a clone still holds it");
        drop(copy);
        assert_eq!(s.take().1, End::Broken);
        // ...but not a finished one.
        let s = stream(&driver, false, None);
        let sender = DirectSender::new(Arc::clone(&s));
        sender.stream().deliver(token(1, true), &mut scratch);
        drop(sender);
        assert_eq!(s.take().1, End::Done);
        driver.stop();
    }
}
