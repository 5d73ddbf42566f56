//! The floor: the least a server can do to fan a change out over the same sockets.
//!
//! It speaks just enough graphql-transport-ws for the harness's clients (upgrade,
//! `connection_init` → `connection_ack`, `subscribe` recorded), and on each trigger builds
//! the result payload once and writes every subscription's `next` frame with one plain
//! non-blocking `send(2)` per socket, straight from the trigger loop. It runs on as many
//! pinned glommio shards as the server under test, bound with SO_REUSEPORT the same way.
//! Every fan-out report divides the server's time by the floor's, measured in the same run.
//!
//! Triggers arrive on a control port as lines `<k>\n`; the payload carries `k` as the
//! value the clients look for.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::rc::Rc;

use futures_lite::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};

/// One socket's subscriptions: the fd to write to and each subscription's envelope prefix.
struct Subscriber {
    fd: RawFd,
    prefixes: Vec<Vec<u8>>,
}

type Subscribers = Rc<RefCell<Vec<Subscriber>>>;

pub struct FloorArgs {
    pub listen: SocketAddr,
    pub control: SocketAddr,
    pub shards: usize,
}

/// Runs the floor until killed.
pub fn run(args: FloorArgs) -> Result<(), String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The control task (shard 0) sends each trigger to every shard; unbounded because
    // triggers are few and must not be lost.
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..args.shards).map(|_| flume::unbounded::<u64>()).unzip();
    let mut handles = Vec::new();
    for (i, rx) in rxs.into_iter().enumerate() {
        let txs = if i == 0 { txs.clone() } else { Vec::new() };
        let (listen, control) = (args.listen, args.control);
        let handle = LocalExecutorBuilder::new(Placement::Fixed(i % cpus))
            .name("floor")
            .io_memory(128 * 1024)
            .spawn(move || shard(listen, control, rx, txs))
            .map_err(|e| e.to_string())?;
        handles.push(handle);
    }
    drop(txs);
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

async fn shard(
    listen: SocketAddr,
    control: SocketAddr,
    triggers: flume::Receiver<u64>,
    peers: Vec<flume::Sender<u64>>,
) {
    let listener = bind(listen).expect("bind the floor's port");
    let subscribers: Subscribers = Rc::default();
    if !peers.is_empty() {
        glommio::spawn_local(control_loop(control, peers)).detach();
    }
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
        glommio::spawn_local(serve(stream, Rc::clone(&subscribers))).detach();
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

async fn control_loop(addr: SocketAddr, peers: Vec<flume::Sender<u64>>) {
    let listener = TcpListener::bind(addr).expect("bind the floor's control port");
    loop {
        let Ok(stream) = listener.accept().await else {
            continue;
        };
        let mut lines = BufReader::new(stream).lines();
        while let Some(Ok(line)) = futures_lite::StreamExt::next(&mut lines).await {
            if let Ok(k) = line.trim().parse::<u64>() {
                for p in &peers {
                    let _ = p.send(k);
                }
            }
        }
    }
}

/// The result the clients look for, carrying `k`.
fn payload(k: u64) -> String {
    format!("{{\"data\":{{\"loadtestValues\":[{{\"id\":1,\"v\":{k}}}]}}}}")
}

/// Appends one unmasked text frame: `prefix`, `payload`, `}`.
fn push_frame(out: &mut Vec<u8>, prefix: &[u8], payload: &str) {
    let len = prefix.len() + payload.len() + 1;
    out.push(0x81);
    if len < 126 {
        out.push(len as u8);
    } else {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    }
    out.extend_from_slice(prefix);
    out.extend_from_slice(payload.as_bytes());
    out.push(b'}');
}

/// Builds the payload once, then one `send` per socket with all its subscriptions' frames.
fn fan_out(subscribers: &[Subscriber], k: u64) {
    let payload = payload(k);
    let mut frame = Vec::with_capacity(4096);
    for sub in subscribers {
        frame.clear();
        for prefix in &sub.prefixes {
            push_frame(&mut frame, prefix, &payload);
        }
        // SAFETY: writing our own buffer to a socket the connection task keeps open.
        unsafe {
            libc::send(
                sub.fd,
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
    }
}

/// Upgrade, `connection_init`, then `subscribe` messages until the client goes away.
async fn serve(mut stream: TcpStream, subscribers: Subscribers) {
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
    subscribers.borrow_mut().push(Subscriber {
        fd,
        prefixes: Vec::new(),
    });
    loop {
        while let Some((text, used)) = client_text(&buf) {
            if text.contains("\"connection_init\"") {
                let ack = br#"{"type":"connection_ack"}"#;
                let mut out = vec![0x81, ack.len() as u8];
                out.extend_from_slice(ack);
                if stream.write_all(&out).await.is_err() {
                    break;
                }
            } else if text.contains("\"subscribe\"")
                && let Some(id) = text
                    .split("\"id\":\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
            {
                let prefix = format!("{{\"id\":\"{id}\",\"type\":\"next\",\"payload\":");
                // The current result at once, as a live query server sends it.
                let mut initial = Vec::new();
                push_frame(&mut initial, prefix.as_bytes(), &payload(0));
                if stream.write_all(&initial).await.is_err() {
                    break;
                }
                if let Some(sub) = subscribers.borrow_mut().iter_mut().find(|s| s.fd == fd) {
                    sub.prefixes.push(prefix.into_bytes());
                }
            }
            buf.drain(..used);
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let mut subs = subscribers.borrow_mut();
    if let Some(pos) = subs.iter().position(|s| s.fd == fd) {
        subs.swap_remove(pos);
    }
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
