//! The server side of the opening handshake and sub-protocol negotiation.

use crate::http::{RequestHead, Response, Status};

/// The GraphQL-over-WebSocket protocols the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubProtocol {
    /// `graphql-transport-ws`, spoken by the `graphql-ws` npm client.
    TransportWs,
    /// `graphql-ws`, the legacy protocol of subscriptions-transport-ws.
    Legacy,
}

impl SubProtocol {
    pub fn name(self) -> &'static str {
        match self {
            SubProtocol::TransportWs => "graphql-transport-ws",
            SubProtocol::Legacy => "graphql-ws",
        }
    }

    /// The protocol to speak with a client offering `offered`: graphql-transport-ws when it
    /// is offered at all (it is the maintained one), else the legacy one, else none.
    pub fn choose(offered: &[String]) -> Option<SubProtocol> {
        let offers = |p: SubProtocol| offered.iter().any(|o| o == p.name());
        [SubProtocol::TransportWs, SubProtocol::Legacy]
            .into_iter()
            .find(|p| offers(*p))
    }
}

/// Checks an upgrade request and returns the 101 response bytes with the chosen
/// sub-protocol, or the error response to send instead.
///
/// A request offering no protocol we speak is still upgraded, so the connection can close
/// it with the graphql-ws library's close code (4406) and a readable reason.
pub fn accept(head: &RequestHead) -> Result<(Vec<u8>, Option<SubProtocol>), Response> {
    if head.minor_version < 1 {
        return Err(Response::error(
            Status::BadRequest,
            "WebSocket needs HTTP/1.1",
        ));
    }
    if !head.connection_upgrade {
        return Err(Response::error(
            Status::BadRequest,
            "WebSocket upgrade needs Connection: Upgrade",
        ));
    }
    if head.websocket_version.as_deref() != Some("13") {
        return Err(
            Response::error(Status::UpgradeRequired, "unsupported Sec-WebSocket-Version")
                .with_header("Sec-WebSocket-Version: 13"),
        );
    }
    let key = match head.websocket_key.as_deref() {
        Some(key) if is_valid_key(key) => key,
        _ => {
            return Err(Response::error(
                Status::BadRequest,
                "missing or invalid Sec-WebSocket-Key",
            ));
        }
    };
    let protocol = SubProtocol::choose(&head.websocket_protocols);
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        tungstenite::handshake::derive_accept_key(key.as_bytes())
    );
    if let Some(p) = protocol {
        response.push_str("Sec-WebSocket-Protocol: ");
        response.push_str(p.name());
        response.push_str("\r\n");
    }
    response.push_str("\r\n");
    Ok((response.into_bytes(), protocol))
}

/// RFC 6455 4.2.1: the key is the base64 encoding of 16 bytes, i.e. 22 base64 characters
/// followed by `==`.
fn is_valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b.ends_with(b"==")
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_head;

    fn head(extra: &str) -> RequestHead {
        let text = format!(
            "GET /graphql HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\r\n"
        );
        parse_head(text.as_bytes(), 8192).unwrap().unwrap().0
    }

    #[test]
    fn rfc6455_accept_key_example() {
        // RFC 6455 section 1.3.
        let (resp, protocol) = accept(&head(
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: graphql-transport-ws\r\n",
        ))
        .unwrap();
        let text = String::from_utf8(resp).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.contains("Sec-WebSocket-Protocol: graphql-transport-ws\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        assert_eq!(protocol, Some(SubProtocol::TransportWs));
    }

    #[test]
    fn negotiation_prefers_graphql_transport_ws() {
        let offer = |list: &[&str]| {
            SubProtocol::choose(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(
            offer(&["graphql-ws", "graphql-transport-ws"]),
            Some(SubProtocol::TransportWs)
        );
        assert_eq!(offer(&["graphql-ws"]), Some(SubProtocol::Legacy));
        assert_eq!(offer(&["mqtt"]), None);
        assert_eq!(offer(&[]), None);
    }

    #[test]
    fn bad_upgrades_are_refused() {
        let v13 = "Sec-WebSocket-Version: 13\r\n";
        let status = |extra: &str| accept(&head(extra)).unwrap_err().status.code();
        assert_eq!(status(v13), 400, "missing key");
        assert_eq!(status(&format!("{v13}Sec-WebSocket-Key: short==\r\n")), 400);
        assert_eq!(
            status("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n"),
            426
        );
        let no_connection = parse_head(
            b"GET /graphql HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            8192,
        )
        .unwrap()
        .unwrap()
        .0;
        assert_eq!(accept(&no_connection).unwrap_err().status.code(), 400);
    }
}
