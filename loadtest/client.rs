//! The harness's WebSocket connection: just enough of RFC 6455 and graphql-transport-ws to
//! connect, initialise, send subscription messages and read results (the bytes themselves
//! are `wire.rs`'s business).
//!
//! The receive path is built for many frames per read: a read goes straight into the free
//! end of the connection's buffer, every whole frame in the buffer is handed over in place,
//! and the bytes they took are removed once per read.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{FromRawFd, IntoRawFd};

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use socket2::{Domain, Socket, Type};

use crate::stats::now_ns;
use crate::wire::{Frame, Outgoing, server_frame};

/// Initial size of a connection's receive buffer: room for the results of a few changes to
/// 53 subscriptions, so one read takes everything the socket holds. A frame larger than
/// the buffer doubles it.
const BUFFER_BYTES: usize = 8192;

pub struct Connection {
    stream: TcpStream,
    /// Received bytes: `buf[..filled]` not yet handled, `buf[filled..]` room for the next
    /// read. Zeroed once, so a read can go straight into it.
    buf: Vec<u8>,
    filled: usize,
}

const ACK: &[u8] = br#"{"type":"connection_ack"}"#;

/// Who the sockets are: each signs its own HS256 token with `secret`, as role
/// `loadtest_user`; `per_user` gives each socket its own `sub`, otherwise all share one.
#[derive(Clone)]
pub struct Identities {
    pub secret: String,
    pub per_user: bool,
}

impl Identities {
    /// The token of socket `n`.
    pub fn token(&self, n: usize) -> String {
        let sub = if self.per_user {
            format!("u{n}")
        } else {
            "shared".to_owned()
        };
        let claims = serde_json::json!({
            "sub": sub,
            "role": "loadtest_user",
            // A day: longer than any run.
            "exp": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()) + 86_400,
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(self.secret.as_bytes()),
        )
        .expect("an HS256 token signs")
    }
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
            buf: vec![0; BUFFER_BYTES],
            filled: 0,
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {target}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
        );
        let mut init = Outgoing::default();
        init.init(token);
        let mut out = request.into_bytes();
        out.extend_from_slice(&init.bytes);
        conn.send(&out).await?;

        let head_end = loop {
            let received = &conn.buf[..conn.filled];
            if let Some(p) = received.windows(4).position(|w| w == b"\r\n\r\n") {
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
        conn.consume(head_end);
        loop {
            if let Some((frame, used)) = server_frame(&conn.buf[..conn.filled]) {
                let acknowledged = match frame {
                    Frame::Text(t) if t == ACK => Ok(()),
                    Frame::Text(t) => Err(format!(
                        "expected connection_ack, got {}",
                        String::from_utf8_lossy(t)
                    )),
                    Frame::Close(code) => {
                        Err(format!("closed with {code} instead of connection_ack"))
                    }
                    Frame::Control => Err("expected connection_ack, got a control frame".into()),
                };
                conn.consume(used);
                return acknowledged.map(|()| conn);
            }
            conn.read_more().await?;
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| e.to_string())
    }

    /// Waits for one read, then hands every whole frame received so far to `each`, in
    /// order, with the time the read returned.
    pub async fn receive(&mut self, mut each: impl FnMut(Frame<'_>, u64)) -> Result<(), String> {
        self.read_more().await?;
        let at = now_ns();
        let mut used = 0;
        while let Some((frame, n)) = server_frame(&self.buf[used..self.filled]) {
            each(frame, at);
            used += n;
        }
        self.consume(used);
        Ok(())
    }

    /// One read into the free end of the buffer.
    async fn read_more(&mut self) -> Result<(), String> {
        if self.filled == self.buf.len() {
            // A frame that does not fit: make room for it.
            self.buf.resize(2 * self.buf.len(), 0);
        }
        let n = self
            .stream
            .read(&mut self.buf[self.filled..])
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        self.filled += n;
        Ok(())
    }

    /// Drops the first `used` bytes, keeping a partial frame for the next read.
    fn consume(&mut self, used: usize) {
        if used > 0 {
            self.buf.copy_within(used..self.filled, 0);
            self.filled -= used;
        }
    }
}
