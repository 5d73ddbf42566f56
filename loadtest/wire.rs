//! What the harness's clients put on the wire and take off it, free of I/O: server frames
//! split in place, client messages framed and masked into one buffer, and the subscription
//! id and value read from a `next` message without allocating.
//!
//! Operation ids are numbers: `generation × subs_per_conn + slot + 1`, so the first
//! subscription of every slot keeps the ids `1..=subs_per_conn` and a slot that churns
//! takes a fresh id each time it resubscribes (see `tally.rs`).

use std::io::Write;

/// One frame from the server, borrowed from the connection's buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Text(&'a [u8]),
    /// A close frame, with its code.
    Close(u16),
    /// Ping or pong.
    Control,
}

/// The first whole (unmasked) server frame in `buf`, and the bytes it takes; `None` while
/// the frame is incomplete.
pub fn server_frame(buf: &[u8]) -> Option<(Frame<'_>, usize)> {
    let first = *buf.first()?;
    let (len, start): (usize, usize) = match *buf.get(1)? & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            usize::try_from(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)).ok()?,
            10,
        ),
        n => (n as usize, 2),
    };
    let end = start.checked_add(len)?;
    let payload = buf.get(start..end)?;
    let frame = match first & 0x0f {
        0x1 => Frame::Text(payload),
        0x8 => Frame::Close(match payload {
            [a, b, ..] => u16::from_be_bytes([*a, *b]),
            _ => 1005,
        }),
        _ => Frame::Control,
    };
    Some((frame, end))
}

/// The subscription's query as the inside of a JSON string, split at `{n}` (the row number),
/// escaped once for every message the worker sends.
pub struct QueryTemplate {
    head: String,
    /// What follows `{n}`, when the query has one.
    tail: Option<String>,
}

impl QueryTemplate {
    pub fn new(query: &str) -> QueryTemplate {
        let escaped = query.replace('\\', "\\\\").replace('"', "\\\"");
        match escaped.split_once("{n}") {
            Some((head, tail)) => QueryTemplate {
                head: head.to_owned(),
                tail: Some(tail.to_owned()),
            },
            None => QueryTemplate {
                head: escaped,
                tail: None,
            },
        }
    }

    fn write(&self, out: &mut Vec<u8>, row: usize) {
        out.extend_from_slice(self.head.as_bytes());
        if let Some(tail) = &self.tail {
            let _ = write!(out, "{row}");
            out.extend_from_slice(tail.as_bytes());
        }
    }
}

/// Client messages framed and masked into one buffer, to go out in one write. Both buffers
/// are kept between uses, so composing a message allocates nothing once they have grown.
#[derive(Default)]
pub struct Outgoing {
    /// The frames to write.
    pub bytes: Vec<u8>,
    /// The message being composed, before it is framed.
    text: Vec<u8>,
}

/// The mask of every client frame: the server only has to undo it, not check it.
const MASK: [u8; 4] = [0x5a, 0x17, 0xc3, 0x09];

impl Outgoing {
    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    /// `connection_init`, with `token` as a Bearer credential if any.
    pub fn init(&mut self, token: Option<&str>) {
        self.text.clear();
        let _ = match token {
            Some(t) => write!(
                self.text,
                r#"{{"type":"connection_init","payload":{{"authorization":"Bearer {t}"}}}}"#
            ),
            None => write!(self.text, r#"{{"type":"connection_init","payload":{{}}}}"#),
        };
        self.frame();
    }

    /// `subscribe` with operation `id` for `query` on row `row`.
    pub fn subscribe(&mut self, id: u64, query: &QueryTemplate, row: usize) {
        self.text.clear();
        let _ = write!(
            self.text,
            r#"{{"id":"{id}","type":"subscribe","payload":{{"query":""#
        );
        query.write(&mut self.text, row);
        self.text.extend_from_slice(br#""}}"#);
        self.frame();
    }

    /// `complete` for operation `id`.
    pub fn complete(&mut self, id: u64) {
        self.text.clear();
        let _ = write!(self.text, r#"{{"id":"{id}","type":"complete"}}"#);
        self.frame();
    }

    /// Appends `text` as one masked text frame.
    fn frame(&mut self) {
        let out = &mut self.bytes;
        out.push(0x81);
        match self.text.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&MASK);
        out.extend(self.text.iter().enumerate().map(|(i, b)| b ^ MASK[i & 3]));
    }
}

/// The operation id (a number) and the value after `"v":` in a `next` message.
pub fn parse_next(text: &[u8]) -> Option<(u64, u64)> {
    find(text, br#""type":"next""#)?;
    let id = after(text, br#""id":""#)?;
    let (id, rest) = number(id)?;
    if rest.first() != Some(&b'"') {
        return None;
    }
    // `v` is a bigint, which GraphQL carries as a string (BigInt); the floor sends a number.
    let v = after(text, br#""v":"#)?;
    let (v, _) = number(v.strip_prefix(b"\"").unwrap_or(v))?;
    Some((id, v))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What follows the first `needle` in `haystack`.
fn after<'a>(haystack: &'a [u8], needle: &[u8]) -> Option<&'a [u8]> {
    find(haystack, needle).map(|at| &haystack[at + needle.len()..])
}

/// The decimal number at the start of `bytes` (at least one digit, no overflow) and what
/// follows it.
fn number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut n: u64 = 0;
    for b in &bytes[..digits] {
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some((n, &bytes[digits..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_messages_yield_id_and_value() {
        let msg =
            br#"{"id":"17","type":"next","payload":{"data":{"loadtestValues":[{"id":1,"v":42}]}}}"#;
        assert_eq!(parse_next(msg), Some((17, 42)));
        let bigint =
            br#"{"id":"2","type":"next","payload":{"data":{"loadtestValues":[{"id":1,"v":"7"}]}}}"#;
        assert_eq!(parse_next(bigint), Some((2, 7)));
        // Not a `next`; an id that is not a number; a value that is not one, or past u64.
        let refused: [&[u8]; 5] = [
            br#"{"id":"1","type":"error","payload":[]}"#,
            br#"{"id":"a1","type":"next","payload":{"v":1}}"#,
            br#"{"id":"1x","type":"next","payload":{"v":1}}"#,
            br#"{"id":"1","type":"next","payload":{"v":null}}"#,
            br#"{"id":"1","type":"next","payload":{"v":18446744073709551616}}"#,
        ];
        for text in refused {
            assert_eq!(parse_next(text), None, "{}", String::from_utf8_lossy(text));
        }
        assert_eq!(
            parse_next(br#"{"id":"1","type":"next","payload":{"v":18446744073709551615}}"#),
            Some((1, u64::MAX))
        );
    }

    #[test]
    fn server_frames_are_split_at_their_length() {
        let bytes = [0x81, 3, b'a', b'b', b'c', 0x88, 2, 0x03, 0xe8, 0x89, 0];
        let (f, used) = server_frame(&bytes).unwrap();
        assert_eq!((f, used), (Frame::Text(b"abc"), 5));
        assert_eq!(server_frame(&bytes[5..]), Some((Frame::Close(1000), 4)));
        assert_eq!(server_frame(&bytes[9..]), Some((Frame::Control, 2)));
        assert!(server_frame(&[0x81, 5, b'a']).is_none());
        assert!(server_frame(&[0x81]).is_none());
        // 16-bit length.
        let mut long = vec![0x81, 126, 0x01, 0x00];
        long.extend(std::iter::repeat_n(b'x', 256));
        assert_eq!(server_frame(&long).map(|(_, n)| n), Some(260));
        assert!(server_frame(&long[..259]).is_none());
        // A 64-bit length that cannot be in memory is incomplete, not a panic.
        let huge = [
            0x81, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, b'x',
        ];
        assert!(server_frame(&huge).is_none());
    }

    /// Undoes the client mask of every frame in `bytes`.
    fn unmask(bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            assert_eq!(bytes[at], 0x81);
            let (len, start) = match bytes[at + 1] & 0x7f {
                126 => (
                    u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize,
                    at + 4,
                ),
                n => (n as usize, at + 2),
            };
            let mask = &bytes[start..start + 4];
            let text: Vec<u8> = bytes[start + 4..start + 4 + len]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i & 3])
                .collect();
            out.push(String::from_utf8(text).unwrap());
            at = start + 4 + len;
        }
        out
    }

    #[test]
    fn client_messages_are_framed_and_masked() {
        let query = QueryTemplate::new(r#"subscription { t(filter: { id: { eq: {n} } }) { v } }"#);
        let mut out = Outgoing::default();
        out.init(None);
        out.complete(3);
        out.subscribe(23, &query, 7);
        out.init(Some("abc"));
        assert_eq!(
            unmask(&out.bytes),
            [
                r#"{"type":"connection_init","payload":{}}"#,
                r#"{"id":"3","type":"complete"}"#,
                r#"{"id":"23","type":"subscribe","payload":{"query":"subscription { t(filter: { id: { eq: 7 } }) { v } }"}}"#,
                r#"{"type":"connection_init","payload":{"authorization":"Bearer abc"}}"#,
            ]
        );
        out.clear();
        assert!(out.bytes.is_empty());
        // Quotes in the query are escaped for the JSON string; no `{n}` means no row.
        out.subscribe(1, &QueryTemplate::new(r#"{ a(s: "x\y") }"#), 9);
        assert_eq!(
            unmask(&out.bytes),
            [r#"{"id":"1","type":"subscribe","payload":{"query":"{ a(s: \"x\\y\") }"}}"#]
        );
        // A message past 125 bytes takes the 16-bit length.
        out.clear();
        let long = QueryTemplate::new(&"x".repeat(300));
        out.subscribe(1, &long, 1);
        assert_eq!(out.bytes[1], 0x80 | 126);
        assert_eq!(unmask(&out.bytes)[0].len(), 300 + 52);
    }
}
