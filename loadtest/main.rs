//! `postrust-loadtest`: the load-test harness.
//!
//! ```text
//! # Idle connections: what each costs the server.
//! postrust-loadtest idle --url ws://127.0.0.1:3000/graphql --connections 10000 --server-pid PID
//!
//! # Fan-out against the floor (a minimal raw fan-out server the harness starts itself).
//! postrust-loadtest fanout --target floor --connections 10000 --subs-per-conn 1 --writes 20
//!
//! # Churn: 2,000 of the subscriptions are completed and subscribed again on their sockets,
//! # a cycle every 200 ms, while the writes run; reports subscribe-to-first-result.
//! postrust-loadtest fanout --target floor --connections 10000 --writes 40 --churn 2000
//!
//! # Steady rate: 100 writes a second for 30 seconds, latency per second as it runs.
//! postrust-loadtest fanout --target floor --connections 10000 --rate 100 --duration-secs 30
//! ```
//!
//! Sockets are spread over `--workers` processes (each under the per-process descriptor
//! limit) and `--sources` loopback source addresses per worker (127.0.0.1, 127.0.0.2, …),
//! so a run is not limited by one address's ephemeral ports. Every process stamps events on
//! the host's monotonic clock, so latencies are measured across processes.

mod client;
mod fanout;
mod floor;
mod report;
mod stats;
mod tally;
mod wire;
mod worker;
mod writer;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, ExitCode, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};

const USAGE: &str = "\
usage:
  postrust-loadtest idle --url ws://IP:PORT/PATH [--connections N] [--concurrency N]
                         [--sources N] [--hold-secs S] [--server-pid PID]
  postrust-loadtest fanout --target floor|postrust|compare
                         [--scenario shared|distinct|per-user] [--jwt-secret SECRET]
                         [--url ws://IP:PORT/graphql --database-url postgres://…]
                         [--server-pid PID] [--connections N] [--subs-per-conn M]
                         [--workers W] [--sources S] [--shards N] [--quiet-secs S]
                         [--writes K --interval-ms MS | --rate N --duration-secs S]
                         [--churn N [--churn-pause-ms MS]] [--json]
  postrust-loadtest floor --listen IP:PORT --control IP:PORT [--shards N]

fanout:
  --writes K --interval-ms MS   K changes, a pause of MS after each (default 20, 100)
  --rate N --duration-secs S    N changes a second for S seconds on absolute times;
                                prints each second's latency as it runs
  --churn N                     N subscriptions (spread over the sockets) are completed
                                and subscribed again, with a fresh id, while the writes
                                run; reports cycles and subscribe-to-first-result, and
                                counts a first result older than a known commit as an error
  --churn-pause-ms MS           pause after a resubscription's first result (default 200)
  --rows N                      with --scenario distinct, the subscriptions spread over
                                rows 1 to N (default 1000; the table must hold them)
  --jwt-secret SECRET           every socket signs its own HS256 token (role loadtest_user):
                                with --scenario per-user, sub u<socket>, so each socket's
                                live query is its own; otherwise one sub for all";

/// Default pause between a churning subscription's first result and its next `complete`.
const CHURN_PAUSE_MS: u64 = 200;

/// `--flag value` pairs, read once and taken by name.
struct Flags(HashMap<String, String>);

impl Flags {
    fn parse(args: impl Iterator<Item = String>) -> Result<Flags, String> {
        let mut map = HashMap::new();
        let mut args = args.peekable();
        while let Some(flag) = args.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected {flag:?}\n{USAGE}"))?;
            // A flag followed by another flag (or nothing) is a switch.
            let value = match args.peek() {
                Some(v) if !v.starts_with("--") => args.next().unwrap_or_default(),
                _ => "true".to_owned(),
            };
            map.insert(name.to_owned(), value);
        }
        Ok(Flags(map))
    }

    fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name} {v:?} is not valid\n{USAGE}")),
        }
    }

    fn required<T: std::str::FromStr>(&self, name: &str) -> Result<T, String> {
        let v = self
            .0
            .get(name)
            .ok_or_else(|| format!("--{name} is required\n{USAGE}"))?;
        v.parse()
            .map_err(|_| format!("--{name} {v:?} is not valid\n{USAGE}"))
    }

    fn text(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// `ws://IP:PORT/PATH` into address and path.
fn parse_url(url: &str) -> Result<(SocketAddr, String), String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or(format!("{url:?}: expected ws://IP:PORT/PATH"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr = host
        .parse()
        .map_err(|_| format!("{url:?}: expected ws://IP:PORT/PATH"))?;
    Ok((addr, format!("/{path}")))
}

/// Resident memory of a process in bytes, from `/proc/PID/status`.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let command = argv.next().unwrap_or_default();
    let result = Flags::parse(argv).and_then(|flags| match command.as_str() {
        "idle" => idle(&flags),
        "fanout" => fanout_cmd(&flags),
        "worker" => worker_cmd(&flags),
        "floor" => floor::run(floor::FloorArgs {
            listen: flags.required("listen")?,
            control: flags.required("control")?,
            shards: flags.get("shards", 2)?,
        }),
        _ => Err(USAGE.to_owned()),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

fn worker_cmd(flags: &Flags) -> Result<(), String> {
    let (target, path) = parse_url(&flags.required::<String>("url")?)?;
    worker::run(worker::WorkerArgs {
        target,
        path,
        connections: flags.required("connections")?,
        subs_per_conn: flags.get("subs-per-conn", 1)?,
        source_first: flags.get("source-first", 1)?,
        sources: flags.get("sources", 1)?,
        query: flags.required("query")?,
        rows: flags.get("rows", 1000)?,
        sub_offset: flags.get("sub-offset", 0)?,
        token: flags.text("token"),
        identities: identities(flags)?,
        quiet: Duration::from_secs(flags.get("quiet-secs", 10)?),
        churn: flags.get("churn", 0)?,
        churn_pause: Duration::from_millis(flags.get("churn-pause-ms", CHURN_PAUSE_MS)?),
        intervals: flags.get("intervals", false)?,
    })
}

/// A port below 32768 that nothing listens on now.
fn free_port() -> Result<u16, String> {
    let seed = stats::now_ns() ^ u64::from(std::process::id());
    (0..200u64)
        .map(|i| 20000 + ((seed.wrapping_mul(2654435761).wrapping_add(i * 7919)) % 12000) as u16)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .ok_or_else(|| "no free port below 32768".to_owned())
}

/// The subscription every subscriber runs, by scenario.
fn scenario_query(scenario: &str) -> Result<String, String> {
    match scenario {
        // One live query shared by every subscriber.
        "shared" => {
            Ok("subscription { loadtestValues(filter: { id: { eq: 1 } }) { id v } }".into())
        }
        // The shared query, but each socket under its own JWT `sub` (with --jwt-secret):
        // one live query per socket, all reading the row every user may see.
        "per-user" => {
            Ok("subscription { loadtestValues(filter: { id: { eq: 1 } }) { id v } }".into())
        }
        // One live query per subscriber: each filters on its own row ({n}).
        "distinct" => {
            Ok("subscription { loadtestValues(filter: { id: { eq: {n} } }) { id v } }".into())
        }
        other => Err(format!(
            "--scenario {other:?}: expected shared, distinct or per-user\n{USAGE}"
        )),
    }
}

/// Tokens each socket signs for itself, from `--jwt-secret` (and `--per-user`, which the
/// coordinator passes its workers for `--scenario per-user`).
fn identities(flags: &Flags) -> Result<Option<client::Identities>, String> {
    let per_user =
        flags.get("per-user", false)? || flags.text("scenario").as_deref() == Some("per-user");
    Ok(flags
        .text("jwt-secret")
        .map(|secret| client::Identities { secret, per_user }))
}

/// The statement each change commits, by scenario: the row(s) the subscriptions read.
fn scenario_write(scenario: &str) -> &'static str {
    match scenario {
        "distinct" => "UPDATE loadtest_values SET v = $1::bigint",
        _ => "UPDATE loadtest_values SET v = $1::bigint WHERE id = 1",
    }
}

fn fanout_args(
    flags: &Flags,
    label: &str,
    target: SocketAddr,
    pid: Option<u32>,
) -> Result<fanout::FanoutArgs, String> {
    let schedule = match flags.text("rate") {
        Some(_) => fanout::Schedule::Rate {
            per_sec: flags.required("rate")?,
            secs: flags.required("duration-secs")?,
        },
        None => fanout::Schedule::Paced {
            writes: flags.get("writes", 20)?,
            interval: Duration::from_millis(flags.get("interval-ms", 100)?),
        },
    };
    if let fanout::Schedule::Rate { per_sec: 0, .. } | fanout::Schedule::Rate { secs: 0, .. } =
        schedule
    {
        return Err(format!(
            "--rate and --duration-secs must be above 0\n{USAGE}"
        ));
    }
    let connections: usize = flags.get("connections", 1000)?;
    let subs_per_conn: usize = flags.get("subs-per-conn", 1)?;
    let churn: usize = flags.get("churn", 0)?;
    if churn > connections * subs_per_conn {
        return Err(format!(
            "--churn {churn}: more than the {} subscriptions\n{USAGE}",
            connections * subs_per_conn
        ));
    }
    Ok(fanout::FanoutArgs {
        label: label.into(),
        target,
        path: "/graphql".into(),
        connections,
        subs_per_conn,
        workers: flags.get("workers", 2)?,
        sources: flags.get("sources", 4)?,
        schedule,
        query: scenario_query(&flags.get("scenario", "shared".to_owned())?)?,
        rows: flags.get("rows", 1000)?,
        token: flags.text("token"),
        identities: identities(flags)?,
        server_pid: pid,
        quiet: Duration::from_secs(flags.get("quiet-secs", 10)?),
        churn,
        churn_pause: Duration::from_millis(flags.get("churn-pause-ms", CHURN_PAUSE_MS)?),
    })
}

fn fanout_cmd(flags: &Flags) -> Result<(), String> {
    let target: String = flags.get("target", "floor".to_owned())?;
    let json_only = flags.get("json", false)?;
    let (floor, ours) = match target.as_str() {
        "floor" => (Some(run_floor(flags)?), None),
        "postrust" => (None, Some(run_postrust(flags)?)),
        "compare" => (Some(run_floor(flags)?), Some(run_postrust(flags)?)),
        other => {
            return Err(format!(
                "--target {other:?}: expected floor, postrust or compare\n{USAGE}"
            ));
        }
    };
    for report in floor.iter().chain(ours.iter()) {
        if !json_only {
            let against = if report.label == "postrust" {
                floor.as_ref()
            } else {
                None
            };
            report.print(against);
        }
        println!("{}", report.json());
    }
    if let (Some(f), Some(o)) = (&floor, &ours) {
        println!("{}", o.ratios(f));
    }
    let (lost, errors): (u64, u64) = floor
        .iter()
        .chain(ours.iter())
        .fold((0, 0), |(l, e), r| (l + r.lost, e + r.errors));
    if lost > 0 || errors > 0 {
        return Err(format!("{lost} lost updates, {errors} errors"));
    }
    Ok(())
}

/// Starts the floor on free ports, runs the scenario against it, stops it.
fn run_floor(flags: &Flags) -> Result<report::Report, String> {
    let shards: usize = flags.get("shards", 2)?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // A free port can be taken before the floor binds it; then the floor exits and is
    // started again on others.
    let mut attempts = 0;
    let (mut floor, port, stream) = loop {
        attempts += 1;
        let (port, control) = (free_port()?, free_port()?);
        let mut floor = Command::new(&exe)
            .args(["floor", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--control", &format!("127.0.0.1:{control}")])
            .args(["--shards", &shards.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("start the floor: {e}"))?;
        match floor_control(&mut floor, control) {
            Ok(stream) => break (floor, port, stream),
            Err(e) => {
                let _ = floor.kill();
                let _ = floor.wait();
                if attempts == 5 {
                    return Err(e);
                }
            }
        }
    };
    let _ = stream.set_nodelay(true);
    let target = format!("127.0.0.1:{port}").parse().unwrap();
    let result = fanout_args(flags, "floor", target, Some(floor.id())).and_then(|args| {
        let mut driver = fanout::Driver::floor(stream)?;
        fanout::run(&args, &mut driver)
    });
    let _ = floor.kill();
    let _ = floor.wait();
    result
}

/// Connects to a starting floor's control port, which it opens once it accepts on its own.
fn floor_control(floor: &mut std::process::Child, control: u16) -> Result<TcpStream, String> {
    let control_addr: SocketAddr = format!("127.0.0.1:{control}").parse().unwrap();
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = floor.try_wait() {
            return Err(format!("the floor exited at start with {status}"));
        }
        match TcpStream::connect(control_addr) {
            Ok(s) => return Ok(s),
            Err(_) if started.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(format!("the floor did not start: {e}")),
        }
    }
}

/// Runs the scenario against a running postrust (`--url`), writing through
/// `--database-url` to the table of `loadtest/schema.sql`.
fn run_postrust(flags: &Flags) -> Result<report::Report, String> {
    let (target, _) = parse_url(&flags.required::<String>("url")?)?;
    let database_url: String = flags.required("database-url")?;
    let scenario: String = flags.get("scenario", "shared".to_owned())?;
    let writer = writer::Writer::start(&database_url, scenario_write(&scenario))?;
    // Start from a known value, so the first result every subscriber sees is 0.
    writer.change(0)?;
    let pid = flags.text("server-pid").and_then(|p| p.parse().ok());
    let args = fanout_args(flags, "postrust", target, pid)?;
    fanout::run(&args, &mut fanout::Driver::Postgres(writer))
}

fn idle(flags: &Flags) -> Result<(), String> {
    let (target, path) = parse_url(&flags.required::<String>("url")?)?;
    let connections: usize = flags.get("connections", 1000)?;
    let concurrency: usize = flags.get("concurrency", 256)?;
    let sources: u8 = flags.get("sources", 1)?;
    let hold = Duration::from_secs(flags.get("hold-secs", 0)?);
    let server_pid: Option<u32> = flags.text("server-pid").and_then(|p| p.parse().ok());
    if sources == 0 || sources == 255 || concurrency == 0 {
        return Err(USAGE.to_owned());
    }
    let ok = LocalExecutorBuilder::new(Placement::Unbound)
        .name("loadtest")
        .io_memory(128 * 1024)
        .spawn(move || {
            run_idle(
                target,
                path,
                connections,
                concurrency,
                sources,
                hold,
                server_pid,
            )
        })
        .map_err(|e| e.to_string())?
        .join()
        .map_err(|e| e.to_string())?;
    if ok {
        Ok(())
    } else {
        Err("some connections failed".into())
    }
}

async fn run_idle(
    target: SocketAddr,
    path: String,
    connections: usize,
    concurrency: usize,
    sources: u8,
    hold: Duration,
    server_pid: Option<u32>,
) -> bool {
    let before = server_pid.and_then(rss_bytes);
    let started = Instant::now();
    let path = Rc::new(path);
    // `concurrency` workers take connection numbers from one counter until all are taken.
    let next = Rc::new(std::cell::Cell::new(0usize));
    let results = Rc::new(std::cell::RefCell::new(Vec::with_capacity(connections)));
    let tasks: Vec<_> = (0..concurrency.min(connections))
        .map(|_| {
            let (next, results, path) = (Rc::clone(&next), Rc::clone(&results), Rc::clone(&path));
            glommio::spawn_local(async move {
                loop {
                    let i = next.get();
                    if i >= connections {
                        break;
                    }
                    next.set(i + 1);
                    let source = Ipv4Addr::new(127, 0, 0, 1 + (i % sources as usize) as u8);
                    let r = client::Connection::open_initialised(source, target, &path, None).await;
                    results.borrow_mut().push(r);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await;
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
    let after = server_pid.and_then(rss_bytes);
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
    glommio::timer::sleep(hold).await;
    drop(open);
    errors == 0
}
