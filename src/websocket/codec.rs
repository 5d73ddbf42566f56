//! Frames in (client to server: masked, possibly fragmented) and out (server to client:
//! unmasked, never fragmented).
//!
//! The decoder works on the connection's read buffer in place: it unmasks a frame's payload
//! where it lies and hands out a slice of it, so an unfragmented message (nearly all of
//! them) is never copied before the JSON parser sees it. Only fragmented messages are
//! reassembled into an owned buffer.

use std::io::Cursor;

use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use super::close_code;

/// Largest payload of a control frame (RFC 6455 5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;
/// Largest close reason that fits a control frame next to the 2-byte code.
const MAX_CLOSE_REASON: usize = 123;

/// A protocol violation by the client; each closes the connection with its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsError {
    /// A client frame without a mask (RFC 6455 5.1).
    Unmasked,
    /// RSV bits set without a negotiated extension.
    ReservedBits,
    /// An opcode RFC 6455 reserves.
    ReservedOpcode,
    /// A control frame with FIN unset.
    FragmentedControl,
    /// A control frame with more than 125 bytes of payload.
    ControlTooLong,
    /// A continuation frame with no message in progress.
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is in progress.
    ExpectedContinuation,
    /// A close frame whose payload is one byte or whose code may not be sent.
    InvalidClosePayload,
    /// A message larger than the configured maximum.
    TooBig,
    /// A text message or close reason that is not UTF-8.
    InvalidUtf8,
    /// A binary message: the GraphQL protocols are text only.
    Binary,
}

impl WsError {
    pub fn close_code(self) -> u16 {
        match self {
            WsError::TooBig => close_code::MESSAGE_TOO_BIG,
            WsError::InvalidUtf8 => close_code::INVALID_PAYLOAD,
            WsError::Binary => close_code::UNSUPPORTED_DATA,
            _ => close_code::PROTOCOL_ERROR,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            WsError::Unmasked => "client frames must be masked",
            WsError::ReservedBits => "reserved bits set",
            WsError::ReservedOpcode => "reserved opcode",
            WsError::FragmentedControl => "fragmented control frame",
            WsError::ControlTooLong => "control frame payload over 125 bytes",
            WsError::UnexpectedContinuation => "continuation frame without a message",
            WsError::ExpectedContinuation => "new message inside a fragmented message",
            WsError::InvalidClosePayload => "invalid close frame",
            WsError::TooBig => "message too big",
            WsError::InvalidUtf8 => "text is not valid UTF-8",
            WsError::Binary => "binary messages are not supported",
        }
    }
}

/// A text message's bytes: in the read buffer, or reassembled from fragments.
#[derive(Debug)]
pub enum Payload<'b> {
    Borrowed(&'b mut [u8]),
    Owned(Vec<u8>),
}

impl Payload<'_> {
    /// Mutable because the JSON parser works in place.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            Payload::Borrowed(b) => b,
            Payload::Owned(v) => v,
        }
    }
}

/// One step of decoding.
#[derive(Debug)]
pub enum Decoded<'b> {
    /// Not a whole frame yet; keep the bytes and read more.
    Incomplete,
    /// `consumed` bytes were used; `event` says what they carried.
    Frame { consumed: usize, event: Event<'b> },
}

#[derive(Debug)]
pub enum Event<'b> {
    /// A complete text message, valid UTF-8.
    Text(Payload<'b>),
    Ping(&'b [u8]),
    Pong,
    /// The peer's close frame: its code and reason, if it sent one.
    Close(Option<(u16, &'b str)>),
    /// A fragment of a message still in progress.
    Fragment,
}

/// Reassembles messages from client frames.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// The text message being reassembled from fragments, if any.
    partial: Option<Vec<u8>>,
}

impl Decoder {
    pub fn new(max_message: usize) -> Decoder {
        Decoder {
            max_message,
            partial: None,
        }
    }

    /// Decodes the first frame in `buf`, unmasking its payload in place.
    pub fn decode<'b>(&mut self, buf: &'b mut [u8]) -> Result<Decoded<'b>, WsError> {
        let mut cursor = Cursor::new(&buf[..]);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(Decoded::Incomplete),
            Err(_) => return Err(WsError::ReservedOpcode),
        };
        let start = cursor.position() as usize;
        self.check_header(&header, len)?;
        // Checked against max_message (a usize) above, so the cast cannot truncate.
        let end = start + len as usize;
        if buf.len() < end {
            return Ok(Decoded::Incomplete);
        }
        let mask = header.mask.ok_or(WsError::Unmasked)?;
        let payload = &mut buf[start..end];
        unmask(payload, mask);

        let event = match header.opcode {
            OpCode::Control(Control::Ping) => Event::Ping(payload),
            OpCode::Control(Control::Pong) => Event::Pong,
            OpCode::Control(Control::Close) => Event::Close(parse_close(payload)?),
            OpCode::Data(Data::Binary) => return Err(WsError::Binary),
            OpCode::Data(Data::Text) if header.is_final => {
                std::str::from_utf8(payload).map_err(|_| WsError::InvalidUtf8)?;
                Event::Text(Payload::Borrowed(payload))
            }
            OpCode::Data(Data::Text) => {
                self.partial = Some(payload.to_vec());
                Event::Fragment
            }
            OpCode::Data(Data::Continue) => {
                let partial = self
                    .partial
                    .as_mut()
                    .ok_or(WsError::UnexpectedContinuation)?;
                partial.extend_from_slice(payload);
                if header.is_final {
                    let message = self.partial.take().unwrap_or_default();
                    std::str::from_utf8(&message).map_err(|_| WsError::InvalidUtf8)?;
                    Event::Text(Payload::Owned(message))
                } else {
                    Event::Fragment
                }
            }
            OpCode::Control(Control::Reserved(_)) | OpCode::Data(Data::Reserved(_)) => {
                return Err(WsError::ReservedOpcode);
            }
        };
        Ok(Decoded::Frame {
            consumed: end,
            event,
        })
    }

    /// Rejects a frame from its header alone, before its payload has arrived, so an
    /// oversized message is refused without buffering it.
    fn check_header(&self, header: &FrameHeader, len: u64) -> Result<(), WsError> {
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(WsError::ReservedBits);
        }
        if header.mask.is_none() {
            return Err(WsError::Unmasked);
        }
        match header.opcode {
            OpCode::Control(_) if !header.is_final => return Err(WsError::FragmentedControl),
            OpCode::Control(_) if len > MAX_CONTROL_PAYLOAD => return Err(WsError::ControlTooLong),
            OpCode::Control(_) => return Ok(()),
            OpCode::Data(Data::Continue) if self.partial.is_none() => {
                return Err(WsError::UnexpectedContinuation);
            }
            OpCode::Data(Data::Text | Data::Binary) if self.partial.is_some() => {
                return Err(WsError::ExpectedContinuation);
            }
            OpCode::Data(_) => {}
        }
        let so_far = self.partial.as_ref().map_or(0, Vec::len) as u64;
        if so_far.saturating_add(len) > self.max_message as u64 {
            return Err(WsError::TooBig);
        }
        Ok(())
    }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// RFC 6455 5.5.1 and 7.4: an empty close payload, or a 2-byte code and a UTF-8 reason.
fn parse_close(payload: &[u8]) -> Result<Option<(u16, &str)>, WsError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(WsError::InvalidClosePayload),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let reason = std::str::from_utf8(&payload[2..]).map_err(|_| WsError::InvalidUtf8)?;
            if !may_be_received(code) {
                return Err(WsError::InvalidClosePayload);
            }
            Ok(Some((code, reason)))
        }
    }
}

/// Close codes a peer may put on the wire (RFC 6455 7.4.1 and the IANA registry):
/// 1005, 1006 and 1015 are reserved for local use, 1016-2999 are unassigned.
fn may_be_received(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Appends one unfragmented, unmasked frame.
pub fn encode_frame(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    encode_parts(opcode, &[payload], out);
}

/// Appends one text frame whose payload is the concatenation of `parts`, without first
/// concatenating them: the fan-out writes an envelope around a shared, pre-encoded result.
pub fn encode_text_parts(parts: &[&[u8]], out: &mut Vec<u8>) {
    encode_parts(OpCode::Data(Data::Text), parts, out);
}

fn encode_parts(opcode: OpCode, parts: &[&[u8]], out: &mut Vec<u8>) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    out.reserve(header.len(len as u64) + len);
    // Writing into a Vec cannot fail.
    let _ = header.format(len as u64, out);
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// Appends a close frame with `code` and as much of `reason` as fits in a control frame.
pub fn encode_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    let mut cut = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    encode_parts(
        OpCode::Control(Control::Close),
        &[&code.to_be_bytes(), &reason.as_bytes()[..cut]],
        out,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame, as a browser would send it.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    fn text_of(decoded: Decoded<'_>) -> (usize, String) {
        match decoded {
            Decoded::Frame {
                consumed,
                event: Event::Text(mut p),
            } => (
                consumed,
                String::from_utf8(p.as_mut_slice().to_vec()).unwrap(),
            ),
            other => panic!("expected text, got {other:?}"),
        }
    }

    #[test]
    fn rfc6455_masked_hello() {
        // RFC 6455 5.7: a single-frame masked text message containing "Hello".
        let mut bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (consumed, text) = text_of(Decoder::new(1024).decode(&mut bytes).unwrap());
        assert_eq!((consumed, text.as_str()), (11, "Hello"));
    }

    #[test]
    fn rfc6455_unmasked_frames_from_a_client_are_refused() {
        // RFC 6455 5.7: the same message unmasked, as only a server may send it.
        let mut bytes = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(
            Decoder::new(1024).decode(&mut bytes).unwrap_err(),
            WsError::Unmasked
        );
        assert_eq!(WsError::Unmasked.close_code(), 1002);
    }

    #[test]
    fn server_frames_match_rfc6455_examples() {
        let mut out = Vec::new();
        encode_frame(OpCode::Data(Data::Text), b"Hello", &mut out);
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        // RFC 6455 5.7: 256 bytes use the 16-bit length form.
        out.clear();
        encode_text_parts(&[&[b'a'; 200], &[b'b'; 56]], &mut out);
        assert_eq!(&out[..4], &[0x81, 0x7e, 0x01, 0x00]);
        assert_eq!(out.len(), 4 + 256);
        // and 65536 bytes the 64-bit form.
        out.clear();
        encode_frame(OpCode::Data(Data::Text), &vec![b'x'; 65536], &mut out);
        assert_eq!(&out[..10], &[0x81, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn incomplete_frames_consume_nothing() {
        let whole = client_frame(0x81, &[b'q'; 300]);
        let mut d = Decoder::new(1024);
        for cut in [0, 1, 2, 3, 7, 8, 100, whole.len() - 1] {
            let mut part = whole[..cut].to_vec();
            assert!(
                matches!(d.decode(&mut part), Ok(Decoded::Incomplete)),
                "cut {cut}"
            );
        }
        let mut all = whole.clone();
        assert_eq!(text_of(d.decode(&mut all).unwrap()).0, whole.len());
    }

    #[test]
    fn fragments_are_reassembled_around_control_frames() {
        let mut d = Decoder::new(1024);
        let mut first = client_frame(0x01, b"{\"type\":");
        assert!(matches!(
            d.decode(&mut first).unwrap(),
            Decoded::Frame {
                event: Event::Fragment,
                ..
            }
        ));
        let mut ping = client_frame(0x89, b"hi");
        match d.decode(&mut ping).unwrap() {
            Decoded::Frame {
                event: Event::Ping(p),
                ..
            } => assert_eq!(p, b"hi"),
            other => panic!("{other:?}"),
        }
        let mut middle = client_frame(0x00, b"\"ping\"");
        assert!(matches!(
            d.decode(&mut middle).unwrap(),
            Decoded::Frame {
                event: Event::Fragment,
                ..
            }
        ));
        let mut last = client_frame(0x80, b"}");
        assert_eq!(
            text_of(d.decode(&mut last).unwrap()).1,
            "{\"type\":\"ping\"}"
        );
    }

    #[test]
    fn each_violation_has_its_close_code() {
        let cases: &[(Vec<u8>, WsError, u16)] = &[
            (client_frame(0xc1, b"x"), WsError::ReservedBits, 1002),
            (client_frame(0x83, b"x"), WsError::ReservedOpcode, 1002),
            (client_frame(0x8b, b""), WsError::ReservedOpcode, 1002),
            (client_frame(0x09, b""), WsError::FragmentedControl, 1002),
            (client_frame(0x89, &[0; 126]), WsError::ControlTooLong, 1002),
            (
                client_frame(0x80, b"x"),
                WsError::UnexpectedContinuation,
                1002,
            ),
            (
                client_frame(0x88, &[0x03]),
                WsError::InvalidClosePayload,
                1002,
            ),
            (
                client_frame(0x88, &1005u16.to_be_bytes()),
                WsError::InvalidClosePayload,
                1002,
            ),
            (
                client_frame(0x88, &[0x03, 0xe8, 0xff]),
                WsError::InvalidUtf8,
                1007,
            ),
            (
                client_frame(0x81, &[0xc3, 0x28]),
                WsError::InvalidUtf8,
                1007,
            ),
            (client_frame(0x81, &[b'x'; 1025]), WsError::TooBig, 1009),
            (client_frame(0x82, b"\x00"), WsError::Binary, 1003),
        ];
        for (bytes, err, code) in cases {
            let mut bytes = bytes.clone();
            assert_eq!(Decoder::new(1024).decode(&mut bytes).unwrap_err(), *err);
            assert_eq!(err.close_code(), *code, "{err:?}");
        }
    }

    #[test]
    fn too_big_is_detected_from_the_header_alone() {
        let whole = client_frame(0x81, &[b'x'; 70_000]);
        let mut head_only = whole[..14].to_vec();
        assert_eq!(
            Decoder::new(65_536).decode(&mut head_only).unwrap_err(),
            WsError::TooBig
        );
        let mut d = Decoder::new(10);
        let mut first = client_frame(0x01, b"123456");
        d.decode(&mut first).unwrap();
        let mut second = client_frame(0x80, b"789012");
        assert_eq!(d.decode(&mut second).unwrap_err(), WsError::TooBig);
    }

    #[test]
    fn a_new_message_inside_a_fragmented_one_is_refused() {
        let mut d = Decoder::new(1024);
        d.decode(&mut client_frame(0x01, b"a")).unwrap();
        assert_eq!(
            d.decode(&mut client_frame(0x81, b"b")).unwrap_err(),
            WsError::ExpectedContinuation
        );
    }

    #[test]
    fn close_frames_round_trip_and_reasons_are_cut_at_char_boundaries() {
        let mut d = Decoder::new(1024);
        let mut bytes = client_frame(0x88, &[0x03, 0xe8, b'b', b'y', b'e']);
        match d.decode(&mut bytes).unwrap() {
            Decoded::Frame {
                event: Event::Close(c),
                ..
            } => assert_eq!(c, Some((1000, "bye"))),
            other => panic!("{other:?}"),
        }
        let mut empty = client_frame(0x88, b"");
        assert!(matches!(
            d.decode(&mut empty).unwrap(),
            Decoded::Frame {
                event: Event::Close(None),
                ..
            }
        ));
        let mut out = Vec::new();
        encode_close(4400, &"é".repeat(100), &mut out);
        assert_eq!(out[0], 0x88);
        assert_eq!(out[1] as usize, 2 + 122);
        assert_eq!(&out[2..4], &4400u16.to_be_bytes());
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }
}
