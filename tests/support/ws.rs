//! A minimal blocking WebSocket client that can also misbehave on purpose.

use std::io::{Read, Write};
use std::net::TcpStream;

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

pub struct Client {
    pub stream: TcpStream,
}

/// What the server sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    /// The server closed the TCP connection.
    Eof,
}

impl Client {
    /// Upgrades `stream` offering `protocols` (comma-separated, or none); panics unless the
    /// server answers 101. Returns the client and the response head.
    pub fn upgrade(stream: TcpStream, protocols: Option<&str>) -> (Client, String) {
        Client::try_upgrade(stream, protocols).unwrap_or_else(|why| panic!("{why}"))
    }

    /// Like [`Client::upgrade`], but says why instead of panicking.
    pub fn try_upgrade(
        mut stream: TcpStream,
        protocols: Option<&str>,
    ) -> Result<(Client, String), String> {
        let mut req = format!(
            "GET /graphql HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
        );
        if let Some(p) = protocols {
            req.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
        }
        req.push_str("\r\n");
        stream
            .write_all(req.as_bytes())
            .map_err(|e| format!("writing the upgrade: {e}"))?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                Ok(_) => return Err("server closed during handshake".into()),
                Err(e) => return Err(format!("reading the handshake: {e}")),
            }
        }
        let head = String::from_utf8(head).map_err(|e| e.to_string())?;
        if !head.starts_with("HTTP/1.1 101 ") {
            return Err(head);
        }
        Ok((Client { stream }, head))
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn send_text(&mut self, text: &str) {
        self.send_raw(&masked(0x81, text.as_bytes()));
    }

    /// Reads the next frame; panics on a timeout.
    pub fn recv(&mut self) -> Frame {
        let mut head = [0u8; 2];
        if self.stream.read_exact(&mut head).is_err() {
            return Frame::Eof;
        }
        let mut len = (head[1] & 0x7f) as u64;
        if len == 126 {
            let mut b = [0u8; 2];
            self.stream.read_exact(&mut b).unwrap();
            len = u16::from_be_bytes(b) as u64;
        } else if len == 127 {
            let mut b = [0u8; 8];
            self.stream.read_exact(&mut b).unwrap();
            len = u64::from_be_bytes(b);
        }
        assert_eq!(head[1] & 0x80, 0, "server frames are never masked");
        let mut payload = vec![0u8; len as usize];
        self.stream.read_exact(&mut payload).unwrap();
        match head[0] & 0x0f {
            0x1 => Frame::Text(String::from_utf8(payload).unwrap()),
            0x8 if payload.len() >= 2 => Frame::Close(
                Some(u16::from_be_bytes([payload[0], payload[1]])),
                String::from_utf8(payload[2..].to_vec()).unwrap(),
            ),
            0x8 => Frame::Close(None, String::new()),
            0x9 => Frame::Ping(payload),
            0xa => Frame::Pong(payload),
            op => panic!("unexpected opcode {op}"),
        }
    }

    pub fn recv_text(&mut self) -> String {
        match self.recv() {
            Frame::Text(t) => t,
            other => panic!("expected text, got {other:?}"),
        }
    }

    /// Reads until a close frame and returns its code and reason.
    pub fn recv_close(&mut self) -> (u16, String) {
        loop {
            match self.recv() {
                Frame::Close(code, reason) => return (code.unwrap_or(1005), reason),
                Frame::Eof => panic!("connection ended without a close frame"),
                _ => {}
            }
        }
    }

    /// Answers the server's close and checks that it then closes the TCP connection.
    pub fn finish_close(&mut self, code: u16) {
        self.send_raw(&masked(0x88, &code.to_be_bytes()));
        assert_eq!(self.recv(), Frame::Eof);
    }
}

/// A client frame with FIN and `first`'s opcode/bits, masked.
pub fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![first];
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}
