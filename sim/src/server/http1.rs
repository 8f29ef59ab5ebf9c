//! HTTP/1.1 connections: requests read with `httparse`, answered by the axum router, and streaming
//! answers handed to the lane's dispatcher, which writes their tokens into the socket itself (see
//! [`super::direct`]).
//!
//! Why not hyper's connection: it owns the socket for the life of the connection, so every
//! streamed token has to travel through its body polling and encoder, which cost as much CPU again
//! as the write itself and made a 256-token burst take twice as long. This module is only the
//! connection's framing; routing, extractors and every answer stay axum's. It follows what hyper
//! did here: keep-alive and pipelining, `Expect: 100-continue`, chunked request bodies, a limit on
//! the head (431, or 414 for a request line that alone is too long), 400 for a malformed request,
//! the request timeout for the head (closed without an answer) and for the body (408), a client
//! that goes away while its answer is computed drops it (and so aborts the request), and graceful
//! shutdown (idle connections close, requests in flight finish).

use std::io::{self, ErrorKind, Write as _};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use axum::response::IntoResponse;
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt;

use super::MAX_BODY_BYTES;
use super::direct::{DirectResponse, End};
use super::errors::ApiError;

/// In a request's extensions: the connection writes streaming answers itself (the handler then
/// returns a [`DirectResponse`] instead of a body).
#[derive(Debug, Clone, Copy)]
pub struct DirectWrites;

/// Largest request head (request line and headers); a longer one gets a 431 (or a 414 when the
/// request line alone does not fit). Far above what clients send (h11, under vLLM, allows 16 KiB).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// hyper's limit on the number of headers; more is a 431.
const MAX_HEADERS: usize = 100;
/// The longest request target `http::Uri` takes; a longer one is a 414.
const MAX_URI_BYTES: usize = 65_534;
/// What one read asks for at least (and the buffer a connection starts with).
const READ_CHUNK: usize = 8 * 1024;
/// How long [`Connection::linger`] drains a request it will not answer further.
const LINGER: Duration = Duration::from_secs(2);
/// What is read ahead of the current request (pipelined requests) before reading pauses.
const MAX_READ_AHEAD: usize = MAX_HEAD_BYTES + MAX_BODY_BYTES;

/// Serve one connection until the client closes it, it idles past `timeout`, an error ends it, or
/// `shutdown` fires (then an idle connection closes at once and a busy one after its answer).
pub async fn serve_connection(
    tcp: TcpStream,
    router: Router,
    timeout: Duration,
    mut shutdown: watch::Receiver<()>,
) {
    let socket = Arc::new(tcp);
    let mut conn = Connection {
        socket,
        buf: Vec::with_capacity(READ_CHUNK),
        stopping: false,
    };
    loop {
        // An I/O error ends the connection like a close.
        let keep_alive: bool = conn
            .one_request(&router, timeout, &mut shutdown)
            .await
            .unwrap_or_default();
        if !keep_alive || conn.stopping || shutdown.has_changed().unwrap_or(true) {
            return;
        }
        // A body of megabytes leaves a big buffer behind; thousands of idle connections should not
        // keep one each.
        if conn.buf.is_empty() && conn.buf.capacity() > 8 * READ_CHUNK {
            conn.buf = Vec::with_capacity(READ_CHUNK);
        }
    }
}

struct Connection {
    socket: Arc<TcpStream>,
    /// Bytes read and not yet used: the rest of the current request, or the next ones.
    buf: Vec<u8>,
    /// Shutdown has fired: finish the request in flight and close.
    stopping: bool,
}

/// Why reading a request body stopped.
enum BodyError {
    /// The client closed the connection.
    Closed,
    TooLarge,
    Timeout,
    Invalid(String),
}

/// A request's head, parsed.
#[derive(Debug)]
pub struct Head {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
}

/// How a request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(usize),
    Chunked,
}

/// What an answer depends on besides the response: the request's method and version, and whether
/// the connection stays open after it.
#[derive(Debug, Clone)]
struct Reply {
    method: Method,
    version: Version,
    keep_alive: bool,
}

impl Reply {
    /// An answer after which the connection closes (an error before the request was read).
    fn closing(head: &Head) -> Reply {
        Reply {
            method: head.method.clone(),
            version: head.version,
            keep_alive: false,
        }
    }

    fn head(&self, status: StatusCode, headers: &HeaderMap, out: &Out) -> Vec<u8> {
        head_bytes(status, headers, out, self.version, self.keep_alive)
    }
}

/// How a response body goes out.
enum Out {
    Length(usize),
    Chunked,
    /// No length: no body (a HEAD answer of unknown length), or one the close ends (HTTP/1.0).
    Nothing,
}

impl Connection {
    /// Read, answer and write one request; `Ok(true)` when the connection can take another.
    async fn one_request(
        &mut self,
        router: &Router,
        timeout: Duration,
        shutdown: &mut watch::Receiver<()>,
    ) -> io::Result<bool> {
        let Some(head_len) = self.read_head(timeout, shutdown).await? else {
            return Ok(false);
        };
        let head = match parse_head(&self.buf[..head_len]) {
            Ok(head) => head,
            Err(status) => {
                self.write_bare(status).await?;
                return Ok(false);
            }
        };
        let framing = match framing(&head.headers) {
            Ok(f) => f,
            Err(status) => {
                self.write_bare(status).await?;
                return Ok(false);
            }
        };
        self.buf.drain(..head_len);
        let keep_alive = wants_keep_alive(head.version, &head.headers);
        if let Framing::Length(n) = framing
            && n > MAX_BODY_BYTES
        {
            // Refused from the head: the body is never read, so the connection cannot go on.
            let limit = MAX_BODY_BYTES;
            let reply = Reply::closing(&head);
            self.write_response(&reply, ApiError::PayloadTooLarge { limit }.into_response())
                .await?;
            self.linger().await;
            return Ok(false);
        }
        // HTTP/1.0 knows no 100 (RFC 9110 §10.1.1: ignore the expectation).
        if !matches!(framing, Framing::None)
            && head.version == Version::HTTP_11
            && expects_continue(&head.headers)
        {
            write_all(&self.socket, b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let body = match self.read_body(framing, timeout).await {
            Ok(body) => body,
            Err(e) => {
                let error = match e {
                    BodyError::Closed => return Ok(false),
                    BodyError::TooLarge => ApiError::PayloadTooLarge {
                        limit: MAX_BODY_BYTES,
                    },
                    BodyError::Timeout => ApiError::RequestTimeout {
                        seconds: timeout.as_secs_f64(),
                    },
                    BodyError::Invalid(message) => ApiError::InvalidBody {
                        message,
                        param: None,
                    },
                };
                self.write_response(&Reply::closing(&head), error.into_response())
                    .await?;
                self.linger().await;
                return Ok(false);
            }
        };
        let mut reply = Reply {
            method: head.method.clone(),
            version: head.version,
            keep_alive,
        };
        let mut request = Request::new(Body::from(body));
        *request.method_mut() = head.method;
        *request.uri_mut() = head.uri;
        *request.version_mut() = head.version;
        *request.headers_mut() = head.headers;
        // A stream is written chunked, which HTTP/1.0 does not know: there the router's body goes
        // out unframed and the close ends it.
        if head.version == Version::HTTP_11 {
            request.extensions_mut().insert(DirectWrites);
        }
        // The client may go away while its answer is computed (a long non-streaming answer):
        // dropping the router's future drops the request's state, which aborts it.
        let response = {
            let answer = router.clone().oneshot(request);
            tokio::pin!(answer);
            loop {
                tokio::select! {
                    r = &mut answer => break r,
                    gone = self.read_more() => if gone? {
                        return Ok(false);
                    },
                    _ = shutdown.changed(), if !self.stopping => self.stopping = true,
                }
            }
        };
        let Ok(response) = response;
        if self.stopping {
            reply.keep_alive = false;
        }
        self.write_response(&reply, response).await
    }

    /// Wait for a whole request head at the front of `buf`; its length, or `None` when the
    /// connection should close without an answer (the client closed it, the head did not arrive
    /// within `timeout`, or shutdown came while idle). A head too long is an error answer.
    async fn read_head(
        &mut self,
        timeout: Duration,
        shutdown: &mut watch::Receiver<()>,
    ) -> io::Result<Option<usize>> {
        let deadline = Instant::now() + timeout;
        let mut scanned = 0usize;
        loop {
            let from = scanned.saturating_sub(3);
            if let Some(at) = find(&self.buf[from..], b"\r\n\r\n") {
                return Ok(Some(from + at + 4));
            }
            scanned = self.buf.len();
            if self.buf.len() > MAX_HEAD_BYTES {
                // No line break at all: the request line alone is too long.
                let status = if find(&self.buf, b"\n").is_none() {
                    StatusCode::URI_TOO_LONG
                } else {
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
                };
                self.write_bare(status).await?;
                return Ok(None);
            }
            tokio::select! {
                gone = self.read_more() => if gone? {
                    return Ok(None);
                },
                () = tokio::time::sleep_until(deadline) => return Ok(None),
                _ = shutdown.changed(), if !self.stopping => {
                    self.stopping = true;
                }
            }
            if self.stopping && self.buf.is_empty() {
                return Ok(None);
            }
        }
    }

    /// [`read_more`] on this connection.
    async fn read_more(&mut self) -> io::Result<bool> {
        read_more(&self.socket, &mut self.buf).await
    }

    /// Read the body the head announced, within `timeout` and `MAX_BODY_BYTES`.
    async fn read_body(&mut self, framing: Framing, timeout: Duration) -> Result<Bytes, BodyError> {
        let read = async {
            match framing {
                Framing::None => Ok(Bytes::new()),
                Framing::Length(n) => {
                    while self.buf.len() < n {
                        if self.read_more().await.map_err(|_| BodyError::Closed)? {
                            return Err(BodyError::Closed);
                        }
                    }
                    Ok(Bytes::from(self.buf.drain(..n).collect::<Vec<u8>>()))
                }
                Framing::Chunked => self.read_chunked().await,
            }
        };
        tokio::time::timeout(timeout, read)
            .await
            .unwrap_or(Err(BodyError::Timeout))
    }

    /// A chunked body, decoded (trailers are read and dropped).
    async fn read_chunked(&mut self) -> Result<Bytes, BodyError> {
        let mut decoder = ChunkedDecoder::default();
        loop {
            match decoder.feed(&mut self.buf, MAX_BODY_BYTES) {
                Ok(true) => return Ok(Bytes::from(decoder.into_body())),
                Ok(false) => self.more_body().await?,
                Err(ChunkError::TooLarge) => return Err(BodyError::TooLarge),
                Err(ChunkError::Invalid(why)) => return Err(BodyError::Invalid(why.into())),
            }
        }
    }

    async fn more_body(&mut self) -> Result<(), BodyError> {
        match self.read_more().await {
            Ok(false) => Ok(()),
            Ok(true) | Err(_) => Err(BodyError::Closed),
        }
    }

    /// Write `response` as `reply` says; `Ok(true)` when the connection can take another request.
    async fn write_response(
        &mut self,
        reply: &Reply,
        response: Response<Body>,
    ) -> io::Result<bool> {
        let (mut parts, body) = response.into_parts();
        let keep_alive = reply.keep_alive;
        if let Some(DirectResponse(owner)) = parts.extensions.remove::<DirectResponse>() {
            let head = reply.head(parts.status, &parts.headers, &Out::Chunked);
            write_all(&self.socket, &head).await?;
            let stream = &owner.0;
            stream.attach(Arc::clone(&self.socket));
            loop {
                let changed = stream.changed();
                tokio::pin!(changed);
                let (queued, end) = stream.flush(&self.socket);
                match end {
                    End::Done if !queued => return Ok(keep_alive),
                    // A cut or a stopped engine: what is queued goes if it can, then the close.
                    End::Broken => return Ok(false),
                    End::Open | End::Done => {}
                }
                tokio::select! {
                    () = &mut changed => {}
                    r = self.socket.writable(), if queued => r?,
                    gone = read_more(&self.socket, &mut self.buf) => if gone? {
                        // `owner` drops: the request leaves the engine.
                        return Ok(false);
                    },
                }
            }
        }
        let no_body = parts.status.is_informational()
            || parts.status == StatusCode::NO_CONTENT
            || parts.status == StatusCode::NOT_MODIFIED;
        if reply.method == Method::HEAD || no_body {
            // The length a GET would have (RFC 9110 §9.3.2): axum sets it as a header and
            // empties the body.
            let length = parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<usize>().ok())
                .or_else(|| {
                    HttpBody::size_hint(&body)
                        .exact()
                        .and_then(|n| usize::try_from(n).ok())
                });
            let out = match length {
                Some(n) if !no_body => Out::Length(n),
                _ => Out::Nothing,
            };
            write_all(
                &self.socket,
                &reply.head(parts.status, &parts.headers, &out),
            )
            .await?;
            return Ok(keep_alive);
        }
        if let Some(n) = HttpBody::size_hint(&body).exact() {
            let bytes = body
                .collect()
                .await
                .map_err(|_| io::Error::other("the answer's body failed"))?
                .to_bytes();
            let n = usize::try_from(n).unwrap_or(bytes.len());
            let mut out = reply.head(parts.status, &parts.headers, &Out::Length(n));
            out.extend_from_slice(&bytes);
            write_all(&self.socket, &out).await?;
            return Ok(keep_alive);
        }
        // A body of unknown length: chunked, or for HTTP/1.0 unframed and ended by the close. The
        // head waits for the first frame, so a body that fails at once (the cut fault on a whole
        // answer) closes the connection with no answer.
        let chunked = reply.version == Version::HTTP_11;
        let reply = Reply {
            keep_alive: keep_alive && chunked,
            ..reply.clone()
        };
        let framing = if chunked { Out::Chunked } else { Out::Nothing };
        let mut body = body;
        let mut head = Some(reply.head(parts.status, &parts.headers, &framing));
        loop {
            let frame = tokio::select! {
                f = body.frame() => f,
                gone = self.read_more() => if gone? {
                    return Ok(false);
                } else {
                    continue;
                },
            };
            let mut out = head.take().unwrap_or_default();
            match frame {
                None => {
                    if chunked {
                        out.extend_from_slice(LAST_CHUNK);
                    }
                    write_all(&self.socket, &out).await?;
                    return Ok(reply.keep_alive);
                }
                // Broken on purpose: no terminating chunk (and no head, if nothing came before).
                Some(Err(_)) => return Ok(false),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        if chunked {
                            push_chunk(&mut out, &data);
                        } else {
                            out.extend_from_slice(&data);
                        }
                    }
                    if !out.is_empty() {
                        write_all(&self.socket, &out).await?;
                    }
                }
            }
        }
    }

    /// Close after an answer sent before the request was read to its end: stop writing, then read
    /// and drop what the client still sends, for a moment. Closing with unread bytes would reset
    /// the connection, and a reset can discard the answer before the client has read it.
    async fn linger(&mut self) {
        let _ = socket2::SockRef::from(&*self.socket).shutdown(std::net::Shutdown::Write);
        let until = Instant::now() + LINGER;
        loop {
            self.buf.clear();
            tokio::select! {
                gone = self.read_more() => if gone.unwrap_or(true) {
                    return;
                },
                () = tokio::time::sleep_until(until) => return,
            }
        }
    }

    /// An answer with no body for a request that could not be read (hyper's answers: empty, and
    /// the connection closes).
    async fn write_bare(&self, status: StatusCode) -> io::Result<()> {
        let reply = Reply {
            method: Method::GET,
            version: Version::HTTP_11,
            keep_alive: false,
        };
        let out = reply.head(status, &HeaderMap::new(), &Out::Length(0));
        write_all(&self.socket, &out).await
    }
}

/// Why a chunked body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    /// Not chunked framing (the message says what broke it).
    Invalid(&'static str),
    /// Larger than the limit given to [`ChunkedDecoder::feed`].
    TooLarge,
}

/// Where a [`ChunkedDecoder`] is in the body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    /// At a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk's data, this many bytes to go.
    Data(usize),
    /// After a chunk's data, at its CRLF.
    DataEnd,
    /// After the last chunk, at the trailer lines (ended by an empty one).
    Trailers,
    Done,
}

/// Decodes an HTTP/1.1 chunked body as its bytes arrive, from the front of a buffer, so the body
/// is scanned once however it is split into reads; what follows the body (a pipelined request)
/// stays in the buffer.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    body: Vec<u8>,
    state: ChunkState,
}

impl ChunkedDecoder {
    /// Take what `buf` holds of the body (it is drained as it is used); `Ok(true)` once the body
    /// is complete, `Ok(false)` when more bytes are needed. A body over `limit` bytes is an error
    /// as soon as a chunk's size says so.
    pub fn feed(&mut self, buf: &mut Vec<u8>, limit: usize) -> Result<bool, ChunkError> {
        loop {
            match self.state {
                ChunkState::Size => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.drain(..used);
                        if size == 0 {
                            self.state = ChunkState::Trailers;
                            continue;
                        }
                        let size = usize::try_from(size).map_err(|_| ChunkError::TooLarge)?;
                        if self.body.len().saturating_add(size) > limit {
                            return Err(ChunkError::TooLarge);
                        }
                        self.state = ChunkState::Data(size);
                    }
                    // A size line (extensions and all) longer than a whole head is not one.
                    Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
                        return Err(ChunkError::Invalid("Chunk size line too long"));
                    }
                    Ok(httparse::Status::Partial) => return Ok(false),
                    Err(_) => return Err(ChunkError::Invalid("Invalid chunk size line")),
                },
                ChunkState::Data(left) => {
                    let n = left.min(buf.len());
                    self.body.extend_from_slice(&buf[..n]);
                    buf.drain(..n);
                    if n < left {
                        self.state = ChunkState::Data(left - n);
                        return Ok(false);
                    }
                    self.state = ChunkState::DataEnd;
                }
                ChunkState::DataEnd => {
                    match buf.get(..2) {
                        None if buf.first().is_none_or(|&b| b == b'\r') => return Ok(false),
                        Some(b"\r\n") => {}
                        _ => return Err(ChunkError::Invalid("No CRLF after a chunk's data")),
                    }
                    buf.drain(..2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => match find(buf, b"\r\n") {
                    Some(0) => {
                        buf.drain(..2);
                        self.state = ChunkState::Done;
                    }
                    Some(at) => {
                        buf.drain(..at + 2);
                    }
                    None if buf.len() > MAX_HEAD_BYTES => {
                        return Err(ChunkError::Invalid("Chunked trailers too long"));
                    }
                    None => return Ok(false),
                },
                ChunkState::Done => return Ok(true),
            }
        }
    }

    /// The decoded body.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

/// Read what `socket` has into `buf`; `Ok(true)` when the client closed the connection. With
/// `MAX_READ_AHEAD` bytes waiting, it stops reading (and never resolves) until they are used.
async fn read_more(socket: &TcpStream, buf: &mut Vec<u8>) -> io::Result<bool> {
    if buf.len() >= MAX_READ_AHEAD {
        std::future::pending::<()>().await;
    }
    loop {
        socket.readable().await?;
        // Room for what a socket usually holds; a large body grows the buffer as it comes.
        buf.reserve(READ_CHUNK);
        match socket.try_read_buf(buf) {
            Ok(0) => return Ok(true),
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            // Reset by the peer and the like: gone as well.
            Err(_) => return Ok(true),
        }
    }
}

/// The chunk that ends a chunked body (no trailers).
pub(super) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Append `data` to `out` as one HTTP/1.1 chunk (empty data would end the body: not allowed).
pub(super) fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    debug_assert!(!data.is_empty());
    // Writing into a Vec cannot fail (and allocates nothing: this runs once per streamed token).
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Write all of `data`, waiting while the socket is full.
async fn write_all(socket: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        socket.writable().await?;
        match socket.try_write(data) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parse a complete head (up to and including its empty line); the error is the status to answer
/// with (the connection then closes).
pub fn parse_head(bytes: &[u8]) -> Result<Head, StatusCode> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(StatusCode::BAD_REQUEST),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        Err(_) => return Err(StatusCode::BAD_REQUEST),
    }
    let method = req
        .method
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .ok_or(StatusCode::BAD_REQUEST)?;
    let path = req.path.ok_or(StatusCode::BAD_REQUEST)?;
    if path.len() > MAX_URI_BYTES {
        return Err(StatusCode::URI_TOO_LONG);
    }
    let uri = Uri::try_from(path).map_err(|_| StatusCode::BAD_REQUEST)?;
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(StatusCode::HTTP_VERSION_NOT_SUPPORTED),
    };
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name =
            HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| StatusCode::BAD_REQUEST)?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| StatusCode::BAD_REQUEST)?;
        headers.append(name, value);
    }
    Ok(Head {
        method,
        uri,
        version,
        headers,
    })
}

/// How the request's body is framed: `Transfer-Encoding` (chunked last) wins over
/// `Content-Length`, whose values must agree; anything else is a 400 (the error is the status).
pub fn framing(headers: &HeaderMap) -> Result<Framing, StatusCode> {
    let codings: Vec<&HeaderValue> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    if !codings.is_empty() {
        let last = codings
            .last()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(|c| c.trim().to_ascii_lowercase());
        return if last.as_deref() == Some("chunked") {
            Ok(Framing::Chunked)
        } else {
            Err(StatusCode::BAD_REQUEST)
        };
    }
    let mut length: Option<u64> = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        for part in v.to_str().map_err(|_| StatusCode::BAD_REQUEST)?.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(StatusCode::BAD_REQUEST);
            }
            // Absurd lengths saturate: they are refused as too large, not as malformed.
            let n = part.parse::<u64>().unwrap_or(u64::MAX);
            if length.is_some_and(|l| l != n) {
                return Err(StatusCode::BAD_REQUEST);
            }
            length = Some(n);
        }
    }
    Ok(match length {
        None | Some(0) => Framing::None,
        Some(n) => Framing::Length(usize::try_from(n).unwrap_or(usize::MAX)),
    })
}

/// HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 closes unless told `keep-alive`.
fn wants_keep_alive(version: Version, headers: &HeaderMap) -> bool {
    let has = |token: &str| {
        headers.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if version == Version::HTTP_10 {
        has("keep-alive")
    } else {
        !has("close")
    }
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

/// The status line and headers of an answer (with `date`, the body's framing and what becomes of
/// the connection when the version's default does not say it).
fn head_bytes(
    status: StatusCode,
    headers: &HeaderMap,
    out: &Out,
    version: Version,
    keep_alive: bool,
) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    match out {
        Out::Length(n) => head.extend_from_slice(format!("content-length: {n}\r\n").as_bytes()),
        Out::Chunked => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Out::Nothing => {}
    }
    if !keep_alive {
        head.extend_from_slice(b"connection: close\r\n");
    } else if version == Version::HTTP_10 {
        // HTTP/1.0 closes unless the answer says otherwise.
        head.extend_from_slice(b"connection: keep-alive\r\n");
    }
    if !headers.contains_key(header::DATE) {
        head.extend_from_slice(b"date: ");
        head.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `body` in chunked framing: chunks of the given sizes (cycled), sizes in upper or lower case
    /// hex, with or without an extension, and a trailer line when asked.
    fn chunked(body: &[u8], sizes: &[usize], upper: bool, ext: bool, trailer: bool) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut rest = body;
        for size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let n = (*size).min(rest.len());
            let hex = if upper {
                format!("{n:X}")
            } else {
                format!("{n:x}")
            };
            wire.extend_from_slice(hex.as_bytes());
            if ext {
                wire.extend_from_slice(b";name=value");
            }
            wire.extend_from_slice(b"\r\n");
            wire.extend_from_slice(&rest[..n]);
            wire.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        wire.extend_from_slice(b"0\r\n");
        if trailer {
            wire.extend_from_slice(b"X-Checksum: 1\r\n");
        }
        wire.extend_from_slice(b"\r\n");
        wire
    }

    proptest! {
        /// However the reads split a chunked body, it decodes to the same bytes, and what follows
        /// it (a pipelined request) is left in the buffer untouched.
        #[test]
        fn chunked_bodies_decode_however_the_reads_split_them(
            body in proptest::collection::vec(any::<u8>(), 0..2000),
            sizes in proptest::collection::vec(1usize..600, 1..8),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..12),
            upper in any::<bool>(),
            ext in any::<bool>(),
            trailer in any::<bool>(),
        ) {
            let next = b"GET /health HTTP/1.1\r\n\r\n";
            let mut wire = chunked(&body, &sizes, upper, ext, trailer);
            wire.extend_from_slice(next);
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
            points.sort_unstable();
            points.push(wire.len());
            let mut decoder = ChunkedDecoder::default();
            let mut buf = Vec::new();
            let mut from = 0;
            let mut done = false;
            for p in points {
                buf.extend_from_slice(&wire[from..p]);
                from = p;
                if decoder.feed(&mut buf, usize::MAX).expect("valid framing") {
                    done = true;
                    break;
                }
            }
            prop_assert!(done);
            buf.extend_from_slice(&wire[from..]);
            prop_assert_eq!(decoder.into_body(), body);
            prop_assert_eq!(&buf[..], &next[..]);
        }
    }

    #[test]
    fn chunked_bodies_over_the_limit_or_misframed_are_refused() {
        let feed =
            |wire: &[u8], limit: usize| ChunkedDecoder::default().feed(&mut wire.to_vec(), limit);
        assert_eq!(
            feed(&chunked(b"0123456789", &[4], false, false, false), 10),
            Ok(true)
        );
        assert_eq!(
            feed(&chunked(b"0123456789a", &[4], false, false, false), 10),
            Err(ChunkError::TooLarge)
        );
        assert!(matches!(
            feed(b"ZZZ\r\n{}\r\n0\r\n\r\n", 100),
            Err(ChunkError::Invalid(_))
        ));
        assert!(matches!(
            feed(b"2\r\n{}XX0\r\n\r\n", 100),
            Err(ChunkError::Invalid(_))
        ));
        assert!(matches!(
            feed(b"2\r\n{}\rX", 100),
            Err(ChunkError::Invalid(_))
        ));
        assert_eq!(
            feed(b"2\r\n{}\r", 100),
            Ok(false),
            "a CR alone: wait for its LF"
        );
        let endless = [b"1;".as_slice(), &vec![b'a'; MAX_HEAD_BYTES + 1]].concat();
        assert!(matches!(feed(&endless, 100), Err(ChunkError::Invalid(_))));
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn body_framing_follows_rfc_9112() {
        let f = |pairs: &[(&str, &str)]| framing(&headers(pairs));
        assert!(matches!(f(&[]), Ok(Framing::None)));
        assert!(matches!(f(&[("content-length", "0")]), Ok(Framing::None)));
        assert!(matches!(
            f(&[("content-length", "12")]),
            Ok(Framing::Length(12))
        ));
        assert!(matches!(
            f(&[("content-length", "12"), ("content-length", "12")]),
            Ok(Framing::Length(12))
        ));
        assert!(f(&[("content-length", "12"), ("content-length", "13")]).is_err());
        assert!(f(&[("content-length", "-1")]).is_err());
        assert!(f(&[("content-length", "abc")]).is_err());
        assert!(matches!(
            f(&[("content-length", "1000000000000000000000")]),
            Ok(Framing::Length(usize::MAX))
        ));
        assert!(matches!(
            f(&[
                ("transfer-encoding", "gzip, chunked"),
                ("content-length", "5")
            ]),
            Ok(Framing::Chunked)
        ));
        assert!(f(&[("transfer-encoding", "gzip")]).is_err());
    }

    #[test]
    fn heads_parse_or_get_their_status() {
        let head = parse_head(b"POST /v1/completions?x=1 HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\r\n")
            .unwrap_or_else(|status| panic!("a valid head: {status}"));
        assert_eq!(head.method, Method::POST);
        assert_eq!(head.uri.path(), "/v1/completions");
        assert_eq!(head.version, Version::HTTP_11);
        assert_eq!(head.headers["x-a"], "1");
        let status = |b: &[u8]| parse_head(b).err();
        assert_eq!(
            status(b"\x16\x03\x01 hello\r\n\r\n"),
            Some(StatusCode::BAD_REQUEST)
        );
        let many: String = (0..150).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            status(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_URI_BYTES));
        assert_eq!(status(long.as_bytes()), Some(StatusCode::URI_TOO_LONG));
    }

    #[test]
    fn keep_alive_by_version_and_connection_header() {
        assert!(wants_keep_alive(Version::HTTP_11, &headers(&[])));
        assert!(!wants_keep_alive(
            Version::HTTP_11,
            &headers(&[("connection", "Close")])
        ));
        assert!(!wants_keep_alive(Version::HTTP_10, &headers(&[])));
        assert!(wants_keep_alive(
            Version::HTTP_10,
            &headers(&[("connection", "keep-alive")])
        ));
    }

    #[test]
    fn answer_heads_carry_framing_and_date() {
        let head = head_bytes(
            StatusCode::OK,
            &headers(&[
                ("content-type", "application/json"),
                ("content-length", "9"),
            ]),
            &Out::Length(3),
            Version::HTTP_11,
            false,
        );
        let head = String::from_utf8(head).expect("ascii");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("content-type: application/json\r\n"));
        assert!(head.contains("content-length: 3\r\n") && !head.contains("content-length: 9"));
        assert!(head.contains("connection: close\r\n"));
        assert!(head.contains("\r\ndate: ") && head.ends_with("\r\n\r\n"));
    }
}
