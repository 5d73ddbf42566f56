//! The floor: the least a server can do to fan a change out over the same sockets.
//!
//! It speaks just enough graphql-transport-ws for the harness's clients (upgrade,
//! `connection_init` → `connection_ack`, `subscribe` answered at once with the current value
//! and recorded, `complete` forgotten), and on each trigger builds the result payload once
//! and writes every subscription's `next` frame with one plain non-blocking `send(2)` per
//! socket, straight from the trigger loop. It runs on as many pinned glommio shards as the
//! server under test, bound with SO_REUSEPORT the same way. Every fan-out report divides
//! the server's time by the floor's, measured in the same run.
//!
//! Triggers arrive on a control port as lines `<k>\n`; the payload carries `k` as the
//! value the clients look for. The control thread makes `k` the current value, hands it
//! to every shard and answers `<k>\n`: a subscription that arrives after the answer starts
//! at `k` or later, and no older trigger reaches it afterwards.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};

/// One subscription on a socket.
struct Subscription {
    /// The operation id, as the client sent it.
    id: Box<[u8]>,
    /// `{"id":…,"type":"next","payload":` for this id.
    prefix: Box<[u8]>,
    /// The value it started at: a trigger for this value or an older one is not sent.
    since: u64,
}

/// Each socket's subscriptions, by descriptor: written by the socket's task, read by the
/// shard's trigger loop.
type Subscribers = Rc<RefCell<HashMap<RawFd, Vec<Subscription>>>>;

pub struct FloorArgs {
    pub listen: SocketAddr,
    pub control: SocketAddr,
    pub shards: usize,
}

/// Runs the floor until killed.
pub fn run(args: FloorArgs) -> Result<(), String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The newest trigger: set by the control thread, read by every shard for a new
    // subscription's first result.
    let current = Arc::new(AtomicU64::new(0));
    // The control thread sends each trigger to every shard; unbounded because triggers are
    // few and must not be lost.
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..args.shards).map(|_| flume::unbounded::<u64>()).unzip();
    // A port someone else listens on would be shared silently under SO_REUSEPORT.
    drop(
        std::net::TcpListener::bind(args.listen)
            .map_err(|e| format!("the floor's port {}: {e}", args.listen))?,
    );
    // Each shard reports once whether it bound the port.
    let (bound_tx, bound_rx) = flume::unbounded::<Result<(), String>>();
    let mut handles = Vec::new();
    for (i, rx) in rxs.into_iter().enumerate() {
        let (listen, current, bound) = (args.listen, Arc::clone(&current), bound_tx.clone());
        let handle = LocalExecutorBuilder::new(Placement::Fixed(i % cpus))
            .name("floor")
            .io_memory(128 * 1024)
            .spawn(move || shard(listen, rx, current, bound))
            .map_err(|e| e.to_string())?;
        handles.push(handle);
    }
    for _ in 0..args.shards {
        bound_rx.recv().map_err(|e| e.to_string())??;
    }
    // The control port opens last: the harness takes a connection to it to mean that the
    // floor accepts on its port.
    let listener = std::net::TcpListener::bind(args.control)
        .map_err(|e| format!("bind the floor's control port: {e}"))?;
    let control_current = Arc::clone(&current);
    std::thread::spawn(move || control_loop(listener, control_current, txs));
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

async fn shard(
    listen: SocketAddr,
    triggers: flume::Receiver<u64>,
    current: Arc<AtomicU64>,
    bound: flume::Sender<Result<(), String>>,
) {
    let listener = match bind(listen) {
        Ok(listener) => listener,
        Err(e) => {
            let _ = bound.send(Err(format!("bind the floor's port {listen}: {e}")));
            return;
        }
    };
    let _ = bound.send(Ok(()));
    let subscribers: Subscribers = Rc::default();
    let subs = Rc::clone(&subscribers);
    glommio::spawn_local(async move {
        while let Ok(k) = triggers.recv_async().await {
            fan_out(&subs.borrow(), k);
        }
    })
    .detach();
    loop {
        let Ok(stream) = listener.accept().await else {
            continue;
        };
        glommio::spawn_local(serve(stream, Rc::clone(&subscribers), Arc::clone(&current))).detach();
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(16384)?;
    // SAFETY: a listening socket whose descriptor moves to the listener.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

/// Takes triggers from one control connection at a time: each becomes the current value,
/// goes to every shard, and is answered once both are done.
fn control_loop(
    listener: std::net::TcpListener,
    current: Arc<AtomicU64>,
    shards: Vec<flume::Sender<u64>>,
) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        let Ok(reader) = stream.try_clone() else {
            continue;
        };
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            let Ok(k) = line.trim().parse::<u64>() else {
                continue;
            };
            current.fetch_max(k, Ordering::SeqCst);
            for s in &shards {
                let _ = s.send(k);
            }
            if writeln!(stream, "{k}").is_err() {
                break;
            }
        }
    }
}

/// The result the clients look for, carrying `k`.
fn payload(k: u64) -> String {
    format!("{{\"data\":{{\"loadtestValues\":[{{\"id\":1,\"v\":{k}}}]}}}}")
}

/// Appends one unmasked text frame whose text is `parts`, one after the other.
fn push_frame(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.push(0x81);
    if len < 126 {
        out.push(len as u8);
    } else {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    }
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// Builds the payload once, then one `send` per socket with all its subscriptions' frames.
fn fan_out(subscribers: &HashMap<RawFd, Vec<Subscription>>, k: u64) {
    let payload = payload(k);
    let mut frame = Vec::with_capacity(4096);
    for (fd, subs) in subscribers {
        frame.clear();
        for sub in subs.iter().filter(|s| s.since < k) {
            push_frame(&mut frame, &[&sub.prefix, payload.as_bytes(), b"}"]);
        }
        send(*fd, &frame);
    }
}

/// One non-blocking `send`, from the shard's thread; every write to a subscribed socket
/// goes this way, so frames of different writes never interleave.
fn send(fd: RawFd, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    // SAFETY: writing our own buffer to a socket the connection task keeps open.
    unsafe {
        libc::send(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
}

/// Upgrade, `connection_init`, then `subscribe` and `complete` messages until the client
/// goes away.
async fn serve(mut stream: TcpStream, subscribers: Subscribers, current: Arc<AtomicU64>) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let Some(key) = head
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
    else {
        return;
    };
    let accept = tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
    );
    if stream.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    buf.drain(..head_end);
    let fd = stream.as_raw_fd();
    subscribers.borrow_mut().insert(fd, Vec::new());
    let mut out = Vec::new();
    loop {
        out.clear();
        let mut used = 0;
        while let Some((text, n)) = client_text(&buf[used..]) {
            used += n;
            let id = text
                .split("\"id\":\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next());
            if text.contains("\"connection_init\"") {
                push_frame(&mut out, &[br#"{"type":"connection_ack"}"#]);
            } else if text.contains("\"complete\"")
                && let Some(id) = id
            {
                if let Some(subs) = subscribers.borrow_mut().get_mut(&fd) {
                    subs.retain(|s| *s.id != *id.as_bytes());
                }
            } else if text.contains("\"subscribe\"")
                && let Some(id) = id
            {
                let prefix = format!("{{\"id\":\"{id}\",\"type\":\"next\",\"payload\":");
                // The current result at once, as a live query server sends it.
                let since = current.load(Ordering::SeqCst);
                push_frame(
                    &mut out,
                    &[prefix.as_bytes(), payload(since).as_bytes(), b"}"],
                );
                if let Some(subs) = subscribers.borrow_mut().get_mut(&fd) {
                    subs.push(Subscription {
                        id: id.as_bytes().into(),
                        prefix: prefix.into_bytes().into(),
                        since,
                    });
                }
            }
        }
        buf.drain(..used);
        send(fd, &out);
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    subscribers.borrow_mut().remove(&fd);
}
/// The first whole masked client text frame in `buf`: its text and the bytes it used.
fn client_text(buf: &[u8]) -> Option<(String, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        126 => return None,
        127 => return None,
        n => (n as usize, 2),
    };
    let mask: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
    at += 4;
    let payload = buf.get(at..at + len)?;
    let text: Vec<u8> = payload
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i & 3])
        .collect();
    Some((String::from_utf8_lossy(&text).into_owned(), at + len))
}
