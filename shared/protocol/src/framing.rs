//! Message framing on stream transports (the local socket, stdio, TCP).
//!
//! A connection's first non-blank byte picks the framing for its whole life: `{` or `[` means one
//! JSON text per line; anything else means LSP-style `Content-Length:` headers, as Emacs
//! `jsonrpc.el`, Neovim and vscode-jsonrpc send. Replies use the framing the peer chose. A UTF-8
//! byte order mark before the first message (some Windows tools write one) is skipped, so that it
//! is neither taken for a header nor for part of the first JSON text.
//!
//! The decoder never allocates more than its limit for one message: an over-long line, or a
//! `Content-Length` above the limit, is skipped as it arrives and reported as
//! [`Frame::TooLarge`], after which the next message decodes as usual.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// The largest message either end accepts by default.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;
/// A header section longer than this is not a header section.
const MAX_HEADER_BYTES: usize = 8 * 1024;
/// The UTF-8 byte order mark, skipped before a connection's first message.
const BOM: &[u8] = b"\xEF\xBB\xBF";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One JSON text per line.
    Lines,
    /// `Content-Length: N\r\n\r\n` followed by N bytes.
    Headers,
}

/// What the decoder yields.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// One whole message.
    Message(Bytes),
    /// A message over the limit was skipped; `len` is its declared length when known.
    TooLarge { len: Option<usize>, limit: usize },
}

/// A fault after which the byte stream cannot be split into messages any more.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("bad message header: {0}")]
    BadHeader(String),
    #[error("connection ended in the middle of a message")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Waiting for the start of a message.
    Start,
    /// Reading the body of a message of this length.
    Body(usize),
    /// Dropping the rest of an over-long line.
    SkipLine,
    /// Dropping this many more bytes of an over-long body.
    SkipBody(usize),
}

/// Splits a byte stream into messages; see the module docs.
#[derive(Debug)]
pub struct FrameCodec {
    framing: Option<Framing>,
    max: usize,
    state: State,
    /// How much of the buffer is known to hold no newline, so a long line is searched once.
    scanned: usize,
    /// Whitespace at the start of the current line, already dropped from the buffer (a long run
    /// of blanks is not kept), but still counted in the line's length.
    blanks: usize,
}

impl FrameCodec {
    /// A codec that detects the framing from the first byte it sees.
    pub fn detect(max: usize) -> Self {
        FrameCodec { framing: None, max, state: State::Start, scanned: 0, blanks: 0 }
    }

    /// A codec with a fixed framing, as a client that chose it uses.
    pub fn with_framing(framing: Framing, max: usize) -> Self {
        FrameCodec { framing: Some(framing), max, state: State::Start, scanned: 0, blanks: 0 }
    }

    /// Changes the size limit for the messages still to come (a peer that has authenticated
    /// may send larger ones).
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// The framing in use, once known.
    pub fn framing(&self) -> Option<Framing> {
        self.framing
    }

    fn decode_line(&mut self, src: &mut BytesMut) -> Option<Frame> {
        loop {
            match self.state {
                State::SkipLine => match memchr(b'\n', src) {
                    Some(end) => {
                        src.advance(end + 1);
                        self.state = State::Start;
                    }
                    None => {
                        src.clear();
                        return None;
                    }
                },
                _ => {
                    let from = self.scanned.min(src.len());
                    let Some(end) = memchr(b'\n', &src[from..]).map(|at| from + at) else {
                        self.scanned = src.len();
                        // A `\r` at the end may be the first half of the line's `\r\n`.
                        let pending = src.len() - usize::from(src.last() == Some(&b'\r'));
                        if src.len() > self.max && src.iter().all(u8::is_ascii_whitespace) {
                            // Blanks only, so far: a blank line is skipped however long it is.
                            self.blanks += src.len();
                            src.clear();
                            self.scanned = 0;
                        } else if self.blanks + pending > self.max {
                            src.clear();
                            (self.scanned, self.blanks) = (0, 0);
                            self.state = State::SkipLine;
                            return Some(Frame::TooLarge { len: None, limit: self.max });
                        }
                        return None;
                    };
                    self.scanned = 0;
                    let mut line = src.split_to(end + 1);
                    line.truncate(end);
                    if line.last() == Some(&b'\r') {
                        line.truncate(end - 1);
                    }
                    let len = std::mem::take(&mut self.blanks) + line.len();
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    if len > self.max {
                        return Some(Frame::TooLarge { len: Some(len), limit: self.max });
                    }
                    return Some(Frame::Message(line.freeze()));
                }
            }
        }
    }

    fn decode_headers(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            match self.state {
                State::Body(len) => {
                    if src.len() < len {
                        src.reserve(len - src.len());
                        return Ok(None);
                    }
                    self.state = State::Start;
                    return Ok(Some(Frame::Message(src.split_to(len).freeze())));
                }
                State::SkipBody(left) => {
                    let n = left.min(src.len());
                    src.advance(n);
                    if n < left {
                        self.state = State::SkipBody(left - n);
                        return Ok(None);
                    }
                    self.state = State::Start;
                }
                State::Start | State::SkipLine => {
                    skip_blank(src);
                    let Some((header_len, content_length)) = parse_headers(src)? else {
                        return Ok(None);
                    };
                    src.advance(header_len);
                    if content_length > self.max {
                        self.state = State::SkipBody(content_length);
                        return Ok(Some(Frame::TooLarge { len: Some(content_length), limit: self.max }));
                    }
                    self.state = State::Body(content_length);
                }
            }
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let framing = match self.framing {
            Some(framing) => framing,
            None => {
                // Blanks and byte order marks before the first message, however many and however
                // they arrive, are skipped alike.
                loop {
                    skip_blank(src);
                    let before = src.len();
                    if !skip_bom(src) {
                        return Ok(None);
                    }
                    if src.len() == before {
                        break;
                    }
                }
                match src.first() {
                    None => return Ok(None),
                    Some(b'{' | b'[') => *self.framing.insert(Framing::Lines),
                    Some(_) => *self.framing.insert(Framing::Headers),
                }
            }
        };
        match framing {
            Framing::Lines => Ok(self.decode_line(src)),
            Framing::Headers => self.decode_headers(src),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None => {
                // A last line without its newline is still a whole message.
                if self.framing == Some(Framing::Lines) && matches!(self.state, State::Start) {
                    skip_blank(src);
                    if !src.is_empty() {
                        src.extend_from_slice(b"\n");
                        return Ok(self.decode_line(src));
                    }
                }
                if src.is_empty() || matches!(self.state, State::SkipLine) {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                }
            }
        }
    }
}

/// Appends `payload` framed as `framing` to `out`. The payload must be compact JSON (no raw
/// newline), which is what serde_json writes.
pub fn encode_frame(framing: Framing, payload: &[u8], out: &mut Vec<u8>) {
    let (before, after) = frame_parts(framing, payload.len());
    out.extend_from_slice(&before);
    out.extend_from_slice(payload);
    out.extend_from_slice(after);
}

/// What goes before and after a payload of `len` bytes framed as `framing`, for a writer that
/// sends a large payload as it is instead of copying it into a frame.
pub fn frame_parts(framing: Framing, len: usize) -> (Vec<u8>, &'static [u8]) {
    match framing {
        Framing::Lines => (Vec::new(), b"\n"),
        Framing::Headers => (format!("Content-Length: {len}\r\n\r\n").into_bytes(), b""),
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    memchr::memchr(needle, haystack)
}

/// Skips a byte order mark at the start of `src`. False while `src` holds only the start of
/// one, so that the caller waits for the rest before choosing the framing.
fn skip_bom(src: &mut BytesMut) -> bool {
    if src.starts_with(BOM) {
        src.advance(BOM.len());
        return true;
    }
    src.is_empty() || !BOM.starts_with(src)
}

fn skip_blank(src: &mut BytesMut) {
    let blank = src.iter().take_while(|b| b.is_ascii_whitespace()).count();
    src.advance(blank);
}

/// Parses a complete header section at the start of `src`: returns its length (terminator
/// included) and the `Content-Length`, or `None` when more bytes are needed.
fn parse_headers(src: &[u8]) -> Result<Option<(usize, usize)>, FrameError> {
    let window = &src[..src.len().min(MAX_HEADER_BYTES)];
    let end = find_header_end(window);
    let Some((body_start, section)) = end.map(|(text_end, total)| (total, &window[..text_end])) else {
        if src.len() >= MAX_HEADER_BYTES {
            return Err(FrameError::BadHeader(format!(
                "no end of headers within {MAX_HEADER_BYTES} bytes (expected `Content-Length: N` and a blank line, or one JSON text per line)"
            )));
        }
        return Ok(None);
    };
    let text = std::str::from_utf8(section).map_err(|_| FrameError::BadHeader("headers are not UTF-8".to_owned()))?;
    let mut content_length = None;
    for line in text.split('\n').map(|l| l.trim_end_matches('\r')) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(FrameError::BadHeader(format!("`{}` is not `Name: value`", truncate(line))));
        };
        if name.trim().eq_ignore_ascii_case("content-length") {
            let value = value.trim();
            let len = value
                .parse::<usize>()
                .map_err(|_| FrameError::BadHeader(format!("Content-Length `{}` is not a number", truncate(value))))?;
            content_length = Some(len);
        }
    }
    match content_length {
        Some(len) => Ok(Some((body_start, len))),
        None => Err(FrameError::BadHeader("no Content-Length header".to_owned())),
    }
}

/// Finds the blank line that ends a header section, accepting `\r\n\r\n` and `\n\n`. Returns the
/// end of the header text and the offset where the body starts.
fn find_header_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(pos) = memchr(b'\n', &buf[i..]) {
        let nl = i + pos;
        let rest = &buf[nl + 1..];
        if rest.starts_with(b"\r\n") {
            return Some((nl, nl + 3));
        }
        if rest.starts_with(b"\n") {
            return Some((nl, nl + 2));
        }
        i = nl + 1;
    }
    None
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(40) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut FrameCodec, input: &[u8]) -> Vec<Frame> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            out.push(frame);
        }
        out
    }

    fn msg(text: &str) -> Frame {
        Frame::Message(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[test]
    fn detects_lines_and_skips_blank_lines() {
        let mut codec = FrameCodec::detect(1024);
        let frames = decode_all(&mut codec, b"\n {\"a\":1}\r\n\n[1]\n{\"partial\"");
        assert_eq!(codec.framing(), Some(Framing::Lines));
        assert_eq!(frames, vec![msg("{\"a\":1}"), msg("[1]")]);
    }

    #[test]
    fn a_byte_order_mark_before_the_first_message_is_skipped() {
        let mut codec = FrameCodec::detect(1024);
        let mut buf = BytesMut::from(&b"\xEF\xBB"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None, "half a mark waits for the rest");
        assert_eq!(codec.framing(), None);
        buf.extend_from_slice(b"\xBF{\"a\":1}\n");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(msg("{\"a\":1}")));
        assert_eq!(codec.framing(), Some(Framing::Lines));

        let mut codec = FrameCodec::detect(1024);
        let frames = decode_all(&mut codec, b"\xEF\xBB\xBFContent-Length: 2\r\n\r\n{}");
        assert_eq!((codec.framing(), frames), (Some(Framing::Headers), vec![msg("{}")]));

        // Only before the first message: later, the mark is part of what the peer sent.
        let mut codec = FrameCodec::detect(1024);
        let frames = decode_all(&mut codec, b"{}\n\xEF\xBB\xBF{}\n");
        assert_eq!(frames, vec![msg("{}"), msg("\u{feff}{}")]);
    }

    #[test]
    fn detects_content_length_headers() {
        let mut codec = FrameCodec::detect(1024);
        let input =
            b"Content-Length: 7\r\nContent-Type: application/vscode-jsonrpc\r\n\r\n{\"a\":1}content-length:2\n\n[]";
        let frames = decode_all(&mut codec, input);
        assert_eq!(codec.framing(), Some(Framing::Headers));
        assert_eq!(frames, vec![msg("{\"a\":1}"), msg("[]")]);
    }

    #[test]
    fn waits_for_a_split_body() {
        let mut codec = FrameCodec::detect(1024);
        let mut buf = BytesMut::from(&b"Content-Length: 4\r\n\r\n{}"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"  ");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(msg("{}  ")));
    }

    #[test]
    fn skips_an_over_long_line_without_keeping_it() {
        let mut codec = FrameCodec::detect(8);
        let mut buf = BytesMut::from(&b"{\"aaaaaaaaaaaa"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Frame::TooLarge { len: None, limit: 8 }));
        assert!(buf.is_empty());
        buf.extend_from_slice(b"aaaaaaaaaaaaaaaa\"}\n{}\n");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(msg("{}")));
    }

    #[test]
    fn refuses_a_huge_content_length_before_reading_it() {
        let mut codec = FrameCodec::detect(16);
        let mut buf = BytesMut::from(&b"Content-Length: 99999999999\r\n\r\nxx"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Frame::TooLarge { len: Some(99_999_999_999), limit: 16 }));
        assert!(buf.capacity() < 1024, "allocated {}", buf.capacity());
    }

    #[test]
    fn resumes_after_a_skipped_body() {
        let mut codec = FrameCodec::detect(4);
        let frames = decode_all(&mut codec, b"Content-Length: 6\r\n\r\n123456Content-Length: 2\r\n\r\n{}");
        assert_eq!(frames, vec![Frame::TooLarge { len: Some(6), limit: 4 }, msg("{}")]);
    }

    #[test]
    fn bad_headers_are_errors() {
        for input in [&b"Content-Length: x\r\n\r\n"[..], b"Nonsense\r\n\r\n", b"Content-Type: a\r\n\r\n"] {
            let mut codec = FrameCodec::detect(1024);
            let err = codec.decode(&mut BytesMut::from(input)).unwrap_err();
            assert!(matches!(err, FrameError::BadHeader(_)), "{input:?}: {err}");
        }
        let mut codec = FrameCodec::detect(1024);
        let endless = vec![b'x'; MAX_HEADER_BYTES + 1];
        assert!(codec.decode(&mut BytesMut::from(&endless[..])).is_err());
    }

    #[test]
    fn last_line_without_newline_counts_at_eof() {
        let mut codec = FrameCodec::detect(1024);
        let mut buf = BytesMut::from(&b"{\"a\":1}"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), Some(msg("{\"a\":1}")));
    }

    #[test]
    fn encodes_both_framings() {
        let mut out = Vec::new();
        encode_frame(Framing::Lines, b"{}", &mut out);
        encode_frame(Framing::Headers, b"[1]", &mut out);
        assert_eq!(out, b"{}\nContent-Length: 3\r\n\r\n[1]");
    }
}
