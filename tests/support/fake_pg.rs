//! The server side of PostgreSQL's wire protocol, by hand, for tests of how our client
//! meets a server that misbehaves: just enough to read what the client sends and to write
//! the messages a test needs.

use std::io::{Read, Write};
use std::net::TcpStream;

/// AuthenticationOk, BackendKeyData and ReadyForQuery: a finished startup.
pub const STARTUP_DONE: &[u8] = &[
    b'R', 0, 0, 0, 8, 0, 0, 0, 0, b'K', 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 2, b'Z', 0, 0, 0, 5, b'I',
];

/// Reads the startup message (a length, then the rest; no type byte).
pub fn read_startup(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut rest = vec![0u8; u32::from_be_bytes(len) as usize - 4];
    s.read_exact(&mut rest).unwrap();
    rest
}

/// Reads one message: its type byte and body.
pub fn read_message(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut kind = [0u8; 1];
    s.read_exact(&mut kind).unwrap();
    (kind[0], read_startup(s))
}

/// Appends a message of type `kind` with `body` to `out`.
pub fn message(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(4 + body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

/// Writes `bytes`.
pub fn send(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).unwrap();
}
