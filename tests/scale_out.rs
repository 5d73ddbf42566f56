//! Several instances on one PostgreSQL behind a real HAProxy (Debian's package), configured
//! from `deploy/haproxy.cfg`: clients connect through the balancer and every subscriber
//! converges while writes go on; an instance killed outright, then one stopped with
//! SIGTERM (its clients get 1001), and their clients reconnect through the balancer to the
//! others and converge again.

mod support;

use std::collections::HashMap;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::gql::{demo_database, psql};
use support::live::{INIT, metric, subscribe_message};
use support::server::{Server, free_port};
use support::ws::{Client, Frame};

const SUBSCRIBERS: usize = 12;
const QUERY: &str = "subscription { orders(filter: {id: {eq: 1}}) { total } }";

/// HAProxy in the foreground with `deploy/haproxy.cfg`, bound to `port` in front of
/// `backends`, with health checks quick enough for a test.
struct Balancer {
    child: Child,
    port: u16,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Balancer {
    fn start(backends: &[&Server]) -> Balancer {
        let example = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy.cfg"),
        )
        .unwrap();
        let port = free_port();
        let mut config: String = example
            .lines()
            .filter(|l| !l.trim_start().starts_with("server "))
            .map(|l| {
                let l = l.replace("bind :3000", &format!("bind 127.0.0.1:{port}"));
                let l = l.replace("maxconn 100000", "maxconn 1000");
                l.replace("inter 1s fall 2 rise 2", "inter 100ms fall 1 rise 1")
            })
            .collect::<Vec<_>>()
            .join("\n");
        for (i, s) in backends.iter().enumerate() {
            config.push_str(&format!("\n    server realtime{i} {} check", s.addr));
        }
        config.push('\n');
        let dir =
            std::env::temp_dir().join(format!("postrust-haproxy-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, &config).unwrap();
        let check = Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "haproxy refuses the configuration: {}\n{config}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Balancer {
            child,
            port,
            _dir: tempdir::Dir(dir),
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the subscribers saw, shared with their threads.
#[derive(Default)]
struct Seen {
    /// Each subscriber's latest `total`.
    latest: HashMap<usize, String>,
    /// Close codes the server sent.
    close_codes: Vec<u16>,
    /// Connections lost, by any means, and made again.
    reconnects: usize,
}

/// A subscriber that connects through the balancer, subscribes, and on losing its socket
/// connects and subscribes again, as graphql-ws clients do, until `stop`.
fn subscriber(
    i: usize,
    port: u16,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            // The balancer accepts even while it has no instance to pass the socket to.
            let Ok((mut c, _)) = Client::try_upgrade(stream, Some("graphql-transport-ws")) else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            c.send_text(INIT);
            c.send_text(&subscribe_message("1", QUERY));
            loop {
                match c.recv_frame_lenient() {
                    Some(Frame::Text(text)) => {
                        let m: Value = serde_json::from_str(&text).unwrap();
                        if m["type"] == "next" {
                            let total = m["payload"]["data"]["orders"][0]["total"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned();
                            seen.lock().unwrap().latest.insert(i, total);
                        }
                    }
                    Some(Frame::Close(code, _)) => {
                        let mut s = seen.lock().unwrap();
                        s.close_codes.extend(code);
                        s.reconnects += 1;
                        break;
                    }
                    Some(_) => {}
                    None => {
                        seen.lock().unwrap().reconnects += 1;
                        break;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

/// Writes `total` to order 1 and waits until every subscriber shows it.
fn converge(admin: &str, seen: &Mutex<Seen>, total: &str) {
    psql(
        admin,
        &format!("UPDATE orders SET total = {total} WHERE id = 1"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = seen.lock().unwrap();
        let behind: Vec<_> = (0..SUBSCRIBERS)
            .filter(|i| s.latest.get(i).map(String::as_str) != Some(total))
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "subscribers {behind:?} did not converge to {total}: {:?}",
            s.latest
        );
        drop(s);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn instances_behind_haproxy_serve_and_hand_over_their_clients() {
    let admin = demo_database("");
    let one_shard = [("POSTRUST_SHARDS", "1")];
    let instances: Vec<Server> = (0..3)
        .map(|_| Server::start_on(&admin, &one_shard))
        .collect();
    let balancer = Balancer::start(&instances.iter().collect::<Vec<_>>());
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..SUBSCRIBERS)
        .map(|i| subscriber(i, balancer.port, Arc::clone(&seen), Arc::clone(&stop)))
        .collect();

    converge(&admin, &seen, "101.00");
    // Least connections spreads the sockets over every instance (each also counts the
    // metrics request asking).
    for (i, server) in instances.iter().enumerate() {
        let sockets = metric(server, "postrust_connections");
        assert!(sockets >= 2, "instance {i} got no client: {sockets}");
    }

    let mut instances = instances.into_iter();
    let (killed, stopped, last) = (
        instances.next().unwrap(),
        instances.next().unwrap(),
        instances.next().unwrap(),
    );
    killed.kill();
    converge(&admin, &seen, "102.00");
    let after_kill = seen.lock().unwrap().reconnects;
    assert!(after_kill >= 1, "the killed instance's clients reconnected");

    let status = stopped.terminate();
    assert!(status.success(), "{status}");
    converge(&admin, &seen, "103.00");
    {
        let s = seen.lock().unwrap();
        assert!(
            s.close_codes.contains(&1001),
            "SIGTERM closes with 1001 (going away): {:?}",
            s.close_codes
        );
        assert!(s.reconnects > after_kill);
    }
    let on_last = metric(&last, "postrust_connections");
    assert!(
        on_last > SUBSCRIBERS as u64,
        "every client is on the last instance: {on_last}"
    );

    // Gone with the last instance and the balancer, the sockets end their threads.
    stop.store(true, Ordering::Relaxed);
    drop(last);
    drop(balancer);
    for t in threads {
        t.join().unwrap();
    }
}
