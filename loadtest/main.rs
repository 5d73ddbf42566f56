//! `postrust-loadtest`: opens many WebSocket connections to a running server and measures
//! what they cost it.
//!
//! Scenario `idle`: N connections each complete the upgrade and `connection_init` of
//! graphql-transport-ws, then stay open; the harness reads the server's resident memory
//! (`VmRSS` of `--server-pid`) before and after, and reports bytes per connection.
//!
//! ```text
//! postrust-loadtest idle --url ws://127.0.0.1:3000/graphql --connections 10000 --server-pid PID
//! ```
//!
//! Connections are spread over `--sources` loopback source addresses (127.0.0.1,
//! 127.0.0.2, …) so a run is not limited by one address's ephemeral ports.

mod client;

use std::cell::{Cell, RefCell};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};

struct Args {
    target: SocketAddr,
    path: String,
    connections: usize,
    concurrency: usize,
    sources: u8,
    hold: Duration,
    server_pid: Option<u32>,
}

const USAGE: &str = "usage: postrust-loadtest idle --url ws://HOST:PORT/PATH [--connections N] \
[--concurrency N] [--sources N] [--hold-secs S] [--server-pid PID]";

fn parse_args() -> Result<Args, String> {
    let mut argv = std::env::args().skip(1);
    match argv.next().as_deref() {
        Some("idle") => {}
        _ => return Err(USAGE.into()),
    }
    let mut args = Args {
        target: "127.0.0.1:3000".parse().unwrap(),
        path: "/graphql".into(),
        connections: 1000,
        concurrency: 256,
        sources: 1,
        hold: Duration::ZERO,
        server_pid: None,
    };
    while let Some(flag) = argv.next() {
        let value = argv
            .next()
            .ok_or(format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |what: &str| format!("{flag} {value:?}: expected {what}");
        match flag.as_str() {
            "--url" => {
                let rest = value
                    .strip_prefix("ws://")
                    .ok_or_else(|| bad("a ws:// URL"))?;
                let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
                args.target = host.parse().map_err(|_| bad("ws://IP:PORT/PATH"))?;
                args.path = format!("/{path}");
            }
            "--connections" => args.connections = value.parse().map_err(|_| bad("a count"))?,
            "--concurrency" => args.concurrency = value.parse().map_err(|_| bad("a count"))?,
            "--sources" => args.sources = value.parse().map_err(|_| bad("1 to 254"))?,
            "--hold-secs" => {
                args.hold = Duration::from_secs(value.parse().map_err(|_| bad("seconds"))?)
            }
            "--server-pid" => args.server_pid = Some(value.parse().map_err(|_| bad("a pid"))?),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if args.sources == 0 || args.sources == 255 || args.concurrency == 0 {
        return Err(USAGE.into());
    }
    Ok(args)
}

/// Resident memory of a process in bytes, from `/proc/PID/status`.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name("loadtest")
        .io_memory(128 * 1024)
        .spawn(move || run_idle(args))
        .expect("start executor");
    match handle.join() {
        Ok(true) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

async fn run_idle(args: Args) -> bool {
    let before = args.server_pid.and_then(rss_bytes);
    let started = Instant::now();
    let args = Rc::new(args);
    // `concurrency` workers take connection numbers from one counter until all are taken.
    let next = Rc::new(Cell::new(0usize));
    let results = Rc::new(RefCell::new(Vec::with_capacity(args.connections)));
    let workers: Vec<_> = (0..args.concurrency.min(args.connections))
        .map(|_| {
            let (args, next, results) = (Rc::clone(&args), Rc::clone(&next), Rc::clone(&results));
            glommio::spawn_local(async move {
                loop {
                    let i = next.get();
                    if i >= args.connections {
                        break;
                    }
                    next.set(i + 1);
                    let source = Ipv4Addr::new(127, 0, 0, 1 + (i % args.sources as usize) as u8);
                    let r =
                        client::Connection::open_initialised(source, args.target, &args.path).await;
                    results.borrow_mut().push(r);
                }
            })
        })
        .collect();
    for w in workers {
        w.await;
    }
    let elapsed = started.elapsed();
    let results = results.take();
    let mut open = Vec::with_capacity(results.len());
    let mut errors = 0usize;
    for r in results {
        match r {
            Ok(c) => open.push(c),
            Err(e) => {
                if errors < 5 {
                    eprintln!("connection failed: {e}");
                }
                errors += 1;
            }
        }
    }
    // Let the server settle (freed handshake buffers) before reading its memory.
    glommio::timer::sleep(Duration::from_millis(500)).await;
    let after = args.server_pid.and_then(rss_bytes);
    let per_conn = match (before, after) {
        (Some(b), Some(a)) if !open.is_empty() => Some(a.saturating_sub(b) / open.len() as u64),
        _ => None,
    };
    let rate = open.len() as f64 / elapsed.as_secs_f64();
    println!("scenario                 idle");
    println!("connections open         {}", open.len());
    println!("errors                   {errors}");
    println!("connect+init rate        {rate:.0}/s");
    if let (Some(b), Some(a)) = (before, after) {
        println!("server RSS before        {:.1} MiB", b as f64 / 1048576.0);
        println!("server RSS after         {:.1} MiB", a as f64 / 1048576.0);
    }
    if let Some(p) = per_conn {
        println!("server bytes/connection  {p}");
    }
    println!(
        "{{\"scenario\":\"idle\",\"connections\":{},\"errors\":{errors},\"connect_rate\":{rate:.0},\
         \"server_rss_before\":{},\"server_rss_after\":{},\"server_bytes_per_connection\":{}}}",
        open.len(),
        before.map_or("null".into(), |v| v.to_string()),
        after.map_or("null".into(), |v| v.to_string()),
        per_conn.map_or("null".into(), |v| v.to_string()),
    );
    glommio::timer::sleep(args.hold).await;
    drop(open);
    errors == 0
}
