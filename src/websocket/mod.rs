//! WebSocket (RFC 6455): the opening handshake, frames in and out, and the close handshake.
//!
//! Pure protocol code in the style of tungstenite, whose frame header type it uses: bytes in,
//! frames out, "incomplete" instead of an error while a frame is still arriving, and one
//! error variant per protocol violation, each with the close code it earns.

mod close;
mod codec;
mod handshake;

pub use close::{CloseHandshake, CloseState};
pub use codec::{
    Decoded, Decoder, Event, Payload, WsError, encode_close, encode_frame, encode_text_parts,
};
pub use handshake::{SubProtocol, accept};

/// Close codes the server sends (RFC 6455 section 7.4 and the graphql-ws protocols).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
    pub const TRY_AGAIN_LATER: u16 = 1013;

    /// A close code as a metric label: the codes the server sends, "other" for the rest.
    pub fn name(code: u16) -> &'static str {
        match code {
            1000 => "1000",
            1001 => "1001",
            1002 => "1002",
            1003 => "1003",
            1007 => "1007",
            1009 => "1009",
            1011 => "1011",
            1013 => "1013",
            4400 => "4400",
            4401 => "4401",
            4403 => "4403",
            4406 => "4406",
            4408 => "4408",
            4409 => "4409",
            4429 => "4429",
            4500 => "4500",
            _ => "other",
        }
    }
}
