//! The real `postrust` binary on a free port, stopped when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub struct Server {
    pub addr: SocketAddr,
    child: Option<Child>,
}

/// A port below 32768 that nothing listens on right now.
pub fn free_port() -> u16 {
    // Tests of one binary run in parallel: each call must start somewhere else.
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let seed =
        nanos ^ (u64::from(std::process::id()) << 32) ^ CALLS.fetch_add(1, Ordering::Relaxed);
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    for _ in 0..500 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 20000 + (x % 12000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below 32768");
}

/// A demo database shared by the servers of this test binary that do not write to it.
pub fn shared_demo() -> &'static str {
    static DEMO: OnceLock<String> = OnceLock::new();
    DEMO.get_or_init(|| {
        let roles = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/roles.sql");
        super::gql::demo_database(&std::fs::read_to_string(roles).expect("demo/roles.sql"))
    })
}

impl Server {
    /// Starts the server on the shared demo database with `POSTRUST_*` overrides (which
    /// may name another database) and waits until `/health` answers.
    pub fn start(env: &[(&str, &str)]) -> Server {
        Server::start_on(shared_demo(), env)
    }

    /// Starts the server on the database at `url`.
    pub fn start_on(url: &str, env: &[(&str, &str)]) -> Server {
        for _attempt in 0..5 {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_postrust"));
            cmd.env("POSTRUST_LISTEN", addr.to_string())
                .env("POSTRUST_DATABASE_URL", url)
                .env("POSTRUST_SHARDS", "2")
                .env("POSTRUST_LOG", "error")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut child = cmd.spawn().expect("spawn postrust");
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if let Some(status) = child.try_wait().expect("try_wait") {
                    // Most likely the port was taken between the check and the bind.
                    eprintln!("postrust exited at start with {status}; retrying on another port");
                    break;
                }
                if health_ok(addr) {
                    return Server {
                        addr,
                        child: Some(child),
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("postrust did not start");
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// `POST /graphql` with `query` (and a Bearer `token`, if any) on a connection of its
    /// own; returns the whole response, head and body.
    pub fn post_graphql(&self, token: Option<&str>, query: &str) -> String {
        let body = serde_json::json!({ "query": query }).to_string();
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let req = format!(
            "POST /graphql HTTP/1.1\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        exchange(&mut self.connect(), req.as_bytes())
    }

    /// Kills the process (SIGKILL), as a crash or an out-of-memory kill would.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("postrust did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until a server started some other way answers `/health` on `port`.
pub fn wait_for_health(port: u16) {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    while !health_ok(addr) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no server answered on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn health_ok(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

/// Sends raw bytes and reads until the server closes; returns everything it sent.
pub fn exchange(stream: &mut TcpStream, request: &[u8]) -> String {
    stream.write_all(request).expect("write");
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The chat of `scripts/demo`, set up as the script does: a demo database with the demo's
/// roles and `demo/chat.sql`, and the server logged in as `authenticator` with the demo's
/// token secret, serving `public` and `chat` (plus `env`). Returns the superuser URL of the
/// database and the server.
pub fn demo_chat(env: &[(&str, &str)]) -> (String, Server) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = |name: &str| std::fs::read_to_string(root.join("demo").join(name)).unwrap();
    let admin = super::gql::demo_database(&format!("{}\n{}", file("roles.sql"), file("chat.sql")));
    let url = admin.replacen("://postgres@", "://authenticator@", 1);
    let mut all = vec![
        ("POSTRUST_DB_SCHEMAS", "public,chat"),
        (
            "POSTRUST_JWT_SECRET",
            "postrust-demo-secret-not-for-production",
        ),
    ];
    all.extend_from_slice(env);
    let server = Server::start_on(&url, &all);
    (admin, server)
}

/// A token of the demo for `sub`, from `scripts/demo-token`.
pub fn demo_token(sub: &str) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo-token");
    let out = std::process::Command::new(script)
        .arg(sub)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
