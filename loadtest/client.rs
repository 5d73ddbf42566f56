//! The harness's WebSocket client: just enough of RFC 6455 and graphql-transport-ws to
//! connect, initialise, subscribe and read results.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{FromRawFd, IntoRawFd};

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use socket2::{Domain, Socket, Type};

pub struct Connection {
    pub stream: TcpStream,
    /// Bytes read past the last whole frame.
    pub buf: Vec<u8>,
}

const ACK: &[u8] = br#"{"type":"connection_ack"}"#;

/// One frame from the server.
pub enum Frame {
    Text(Vec<u8>),
    /// A close frame, with its code.
    Close(u16),
    /// Ping or pong.
    Control,
}

impl Connection {
    /// Connects from `source`, upgrades with graphql-transport-ws, sends `connection_init`
    /// (with `token` as a Bearer credential, if any) and waits for `connection_ack`.
    pub async fn open_initialised(
        source: Ipv4Addr,
        target: SocketAddr,
        path: &str,
        token: Option<&str>,
    ) -> Result<Connection, String> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(|e| e.to_string())?;
        socket
            .bind(&SocketAddr::new(source.into(), 0).into())
            .map_err(|e| format!("bind {source}: {e}"))?;
        socket
            .connect(&target.into())
            .map_err(|e| format!("connect {target}: {e}"))?;
        // SAFETY: the descriptor is a connected TCP socket whose ownership moves here.
        let stream = unsafe { TcpStream::from_raw_fd(socket.into_raw_fd()) };
        let mut conn = Connection {
            stream,
            buf: Vec::with_capacity(512),
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {target}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
        );
        let init = match token {
            Some(t) => format!(
                r#"{{"type":"connection_init","payload":{{"authorization":"Bearer {t}"}}}}"#
            ),
            None => r#"{"type":"connection_init","payload":{}}"#.to_owned(),
        };
        let mut out = request.into_bytes();
        out.extend_from_slice(&masked_text(init.as_bytes()));
        conn.stream
            .write_all(&out)
            .await
            .map_err(|e| e.to_string())?;

        let head_end = loop {
            if let Some(p) = conn.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            conn.read_more().await?;
        };
        if !conn.buf.starts_with(b"HTTP/1.1 101 ") {
            return Err(format!(
                "upgrade refused: {}",
                String::from_utf8_lossy(&conn.buf[..head_end])
            ));
        }
        conn.buf.drain(..head_end);
        match conn.next_frame().await? {
            Frame::Text(t) if t == ACK => Ok(conn),
            Frame::Text(t) => Err(format!(
                "expected connection_ack, got {}",
                String::from_utf8_lossy(&t)
            )),
            Frame::Close(code) => Err(format!("closed with {code} instead of connection_ack")),
            Frame::Control => Err("expected connection_ack, got a control frame".into()),
        }
    }

    async fn read_more(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 4096];
        let n = self
            .stream
            .read(&mut chunk)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Sends `subscribe` messages with ids `1..=count` for `query`, in one write; `{n}` in
    /// the query becomes a row number from 1 to 1000 that follows the subscription's number
    /// across the run (`first` for id 1).
    pub async fn subscribe(
        &mut self,
        query: &str,
        first: usize,
        count: usize,
    ) -> Result<(), String> {
        let query = query.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = Vec::new();
        for id in 1..=count {
            let row = (first + id - 1) % 1000 + 1;
            let query = query.replace("{n}", &row.to_string());
            let msg =
                format!(r#"{{"id":"{id}","type":"subscribe","payload":{{"query":"{query}"}}}}"#);
            out.extend_from_slice(&masked_text(msg.as_bytes()));
        }
        self.stream.write_all(&out).await.map_err(|e| e.to_string())
    }

    /// The next frame from the server.
    pub async fn next_frame(&mut self) -> Result<Frame, String> {
        loop {
            if let Some((frame, used)) = server_frame(&self.buf) {
                self.buf.drain(..used);
                return Ok(frame);
            }
            self.read_more().await?;
        }
    }
}

/// The first whole (unmasked) server frame in `buf`, and the bytes it took.
fn server_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    let first = *buf.first()?;
    let (len, start) = match *buf.get(1)? & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = buf.get(start..start + len)?;
    let frame = match first & 0x0f {
        0x1 => Frame::Text(payload.to_vec()),
        0x8 => Frame::Close(match payload {
            [a, b, ..] => u16::from_be_bytes([*a, *b]),
            _ => 1005,
        }),
        _ => Frame::Control,
    };
    Some((frame, start + len))
}

/// A masked client text frame.
fn masked_text(payload: &[u8]) -> Vec<u8> {
    let mask = [0x5a, 0x17, 0xc3, 0x09];
    let mut out = vec![0x81];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}

/// The subscription id (a number) and the value after `"v":` in a `next` message.
pub fn parse_next(text: &[u8]) -> Option<(usize, u64)> {
    let s = std::str::from_utf8(text).ok()?;
    if !s.contains("\"type\":\"next\"") {
        return None;
    }
    let id = s
        .split("\"id\":\"")
        .nth(1)?
        .split('"')
        .next()?
        .parse()
        .ok()?;
    // `v` is a bigint, which GraphQL carries as a string (BigInt); the floor sends a number.
    let v = s
        .split("\"v\":")
        .nth(1)?
        .trim_start_matches('"')
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .ok()?;
    Some((id, v))
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
        assert_eq!(
            parse_next(br#"{"id":"1","type":"error","payload":[]}"#),
            None
        );
    }

    #[test]
    fn server_frames_are_split_at_their_length() {
        let mut bytes = vec![0x81, 3, b'a', b'b', b'c', 0x88, 2, 0x03, 0xe8];
        let (f, used) = server_frame(&bytes).unwrap();
        assert!(matches!(f, Frame::Text(t) if t == b"abc"));
        bytes.drain(..used);
        assert!(matches!(
            server_frame(&bytes),
            Some((Frame::Close(1000), 4))
        ));
        assert!(server_frame(&[0x81, 5, b'a']).is_none());
    }
}
