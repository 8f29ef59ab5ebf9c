//! Incremental parsing of a `text/event-stream` body into the lines drills.md counts.
//!
//! drills.md counts lines, not SSE events: every line that starts with `data:` and whose payload is
//! not `[DONE]` is one event. The parser is fed the body's chunks as they arrive, in whatever pieces
//! the network delivers them: a line split across reads is kept until its end arrives, several
//! lines in one read all come out, `\n`, `\r\n` and `\r` all end a line, and comments (`:` lines,
//! used as keep-alives), blank lines and other fields (`event:`, `id:`, `retry:`) are skipped.

/// One line of the stream that matters to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseLine<'a> {
    /// A `data:` line's payload (one leading space removed, as SSE does).
    Data(&'a str),
    /// `data: [DONE]`: the end of an OpenAI-style stream.
    Done,
}

/// Line splitter that keeps the unfinished tail of the previous chunk.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` at the start of the next one belongs to it.
    after_cr: bool,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Feed one chunk; `on_line` is called for each complete `data:` line it finishes, in order.
    /// Payloads that are not UTF-8 are passed on lossily converted.
    pub fn feed(&mut self, chunk: &[u8], on_line: &mut dyn FnMut(SseLine<'_>)) {
        let mut rest = chunk;
        if self.after_cr {
            self.after_cr = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        while let Some(pos) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (line, tail) = rest.split_at(pos);
            let is_cr = tail[0] == b'\r';
            rest = &tail[1..];
            if is_cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            if self.partial.is_empty() {
                dispatch(line, on_line);
            } else {
                self.partial.extend_from_slice(line);
                let whole = std::mem::take(&mut self.partial);
                dispatch(&whole, on_line);
                // Keep the allocation for the next split line.
                self.partial = whole;
                self.partial.clear();
            }
        }
        self.partial.extend_from_slice(rest);
    }

    /// Bytes held of a line whose end has not arrived yet.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// The stream closed: a last line without its line ending still counts.
    pub fn finish(&mut self, on_line: &mut dyn FnMut(SseLine<'_>)) {
        if !self.partial.is_empty() {
            let whole = std::mem::take(&mut self.partial);
            dispatch(&whole, on_line);
        }
    }
}

fn dispatch(line: &[u8], on_line: &mut dyn FnMut(SseLine<'_>)) {
    let Some(payload) = line.strip_prefix(b"data:") else {
        return;
    };
    let payload = payload.strip_prefix(b" ").unwrap_or(payload);
    match std::str::from_utf8(payload) {
        Ok(text) => emit(text, on_line),
        Err(_) => emit(&String::from_utf8_lossy(payload), on_line),
    }
}

fn emit(text: &str, on_line: &mut dyn FnMut(SseLine<'_>)) {
    if text.trim_end() == "[DONE]" {
        on_line(SseLine::Done);
    } else {
        on_line(SseLine::Data(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `chunks` and describe what came out, `D` for `[DONE]`.
    fn parse(chunks: &[&[u8]]) -> Vec<String> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        let mut push = |l: SseLine<'_>| {
            out.push(match l {
                SseLine::Data(d) => d.to_string(),
                SseLine::Done => "D".to_string(),
            });
        };
        for c in chunks {
            p.feed(c, &mut push);
        }
        p.finish(&mut push);
        out
    }

    const STREAM: &[u8] = b": keep-alive\n\ndata: {\"a\":1}\n\ndata:{\"b\":2}\n\nevent: x\nid: 7\nretry: 10\ndata: [DONE]\n\n";

    #[test]
    fn whole_stream_in_one_read() {
        assert_eq!(parse(&[STREAM]), ["{\"a\":1}", "{\"b\":2}", "D"]);
    }

    #[test]
    fn every_split_point_gives_the_same_lines() {
        let want = parse(&[STREAM]);
        for i in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(i);
            assert_eq!(parse(&[a, b]), want, "split at {i}");
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(parse(&bytes), want, "one byte per read");
    }

    #[test]
    fn crlf_and_cr_line_endings_split_anywhere() {
        let s: &[u8] = b"data: one\r\n\r\ndata: two\r\rdata: [DONE]\r\n";
        for i in 0..=s.len() {
            let (a, b) = s.split_at(i);
            assert_eq!(parse(&[a, b]), ["one", "two", "D"], "split at {i}");
        }
    }

    #[test]
    fn unterminated_last_line_counts_at_close() {
        assert_eq!(parse(&[b"data: x\n\ndata: y"]), ["x", "y"]);
        assert_eq!(parse(&[b"data: [DONE]"]), ["D"]);
    }

    #[test]
    fn comments_and_other_fields_are_not_events() {
        assert!(parse(&[b": ping\n: ping\n\nevent: message\n\n"]).is_empty());
        // `data` without the colon is another field name, not an event.
        assert!(parse(&[b"datax: 1\n"]).is_empty());
        // An empty payload is still an event line.
        assert_eq!(parse(&[b"data:\n"]), [""]);
    }

    #[test]
    fn invalid_utf8_is_passed_on_lossily() {
        assert_eq!(parse(&[b"data: \xff\n"]), ["\u{fffd}"]);
    }
}
