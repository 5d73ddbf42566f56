//! The harness's WebSocket client: just enough of RFC 6455 and graphql-transport-ws to
//! connect, initialise and hold a connection.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{FromRawFd, IntoRawFd};

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use socket2::{Domain, Socket, Type};

pub struct Connection {
    /// Held open for the run; dropping it closes the socket.
    _stream: TcpStream,
}

const INIT: &[u8] = br#"{"type":"connection_init","payload":{"authorization":"Bearer loadtest"}}"#;
const ACK: &[u8] = br#"{"type":"connection_ack"}"#;

impl Connection {
    /// Connects from `source`, upgrades with graphql-transport-ws, sends `connection_init`
    /// and waits for `connection_ack`.
    pub async fn open_initialised(
        source: Ipv4Addr,
        target: SocketAddr,
        path: &str,
    ) -> Result<Connection, String> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(|e| e.to_string())?;
        socket
            .bind(&SocketAddr::new(source.into(), 0).into())
            .map_err(|e| format!("bind {source}: {e}"))?;
        socket
            .connect(&target.into())
            .map_err(|e| format!("connect {target}: {e}"))?;
        // SAFETY: the descriptor is a connected TCP socket whose ownership moves here.
        let mut stream = unsafe { TcpStream::from_raw_fd(socket.into_raw_fd()) };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {target}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
        );
        let mut out = request.into_bytes();
        out.extend_from_slice(&masked_text(INIT));
        stream.write_all(&out).await.map_err(|e| e.to_string())?;

        let mut buf = Vec::with_capacity(512);
        let mut chunk = [0u8; 512];
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed during handshake".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        if !buf.starts_with(b"HTTP/1.1 101 ") {
            return Err(format!(
                "upgrade refused: {}",
                String::from_utf8_lossy(&buf[..head_end])
            ));
        }
        let expected_len = 2 + ACK.len();
        while buf.len() < head_end + expected_len {
            let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed before connection_ack".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let frame = &buf[head_end..];
        if frame[0] != 0x81 || frame[1] as usize != ACK.len() || &frame[2..expected_len] != ACK {
            return Err(format!(
                "expected connection_ack, got {:?}",
                String::from_utf8_lossy(frame)
            ));
        }
        Ok(Connection { _stream: stream })
    }
}

/// A masked client text frame (payloads under 126 bytes).
fn masked_text(payload: &[u8]) -> Vec<u8> {
    let mask = [0x5a, 0x17, 0xc3, 0x09];
    let mut out = vec![0x81, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}
