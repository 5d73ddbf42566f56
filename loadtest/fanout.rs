//! The coordinator of a fan-out run: starts the workers, drives the changes, and reports.
//!
//! It spawns `--workers` copies of this binary (`postrust-loadtest worker …`), each holding
//! its share of the sockets under the per-process descriptor limit, and talks to them over
//! their standard input and output (see `worker.rs`). Once all are ready it makes
//! `--writes` changes, stamping each commit on the host's monotonic clock and passing the
//! stamp to the workers, which turn every receipt into a commit-to-receipt latency.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::stats::{Histogram, now_ns};

/// What makes a change.
pub enum Driver {
    /// The floor server's control port: a change is the line `<k>\n`, acknowledged with the
    /// same line once the floor holds it.
    Floor {
        control: TcpStream,
        acks: BufReader<TcpStream>,
    },
    /// A committed UPDATE through the harness's own PostgreSQL connection.
    Postgres(crate::writer::Writer),
}

impl Driver {
    pub fn floor(control: TcpStream) -> Result<Driver, String> {
        let acks = BufReader::new(control.try_clone().map_err(|e| e.to_string())?);
        Ok(Driver::Floor { control, acks })
    }

    /// Makes change `k` and returns its commit time: when the floor acknowledged it or the
    /// COMMIT returned.
    fn change(&mut self, k: u64) -> Result<u64, String> {
        match self {
            Driver::Floor { control, acks } => {
                control
                    .write_all(format!("{k}\n").as_bytes())
                    .map_err(|e| format!("floor control: {e}"))?;
                let mut line = String::new();
                acks.read_line(&mut line)
                    .map_err(|e| format!("floor control: {e}"))?;
                if line.trim() != k.to_string() {
                    return Err(format!("floor control: {line:?} for change {k}"));
                }
                Ok(now_ns())
            }
            Driver::Postgres(writer) => writer.change(k),
        }
    }
}

pub struct FanoutArgs {
    pub label: String,
    pub target: SocketAddr,
    pub path: String,
    pub connections: usize,
    pub subs_per_conn: usize,
    pub workers: usize,
    pub sources: u8,
    pub writes: u64,
    pub interval: Duration,
    pub query: String,
    pub token: Option<String>,
    pub server_pid: Option<u32>,
    pub quiet: Duration,
}

/// The outcome of one run, as reported.
pub struct Report {
    pub label: String,
    pub connections: usize,
    pub subscriptions: usize,
    pub connect_secs: f64,
    pub received: u64,
    pub lost: u64,
    pub errors: u64,
    pub latency: Histogram,
    pub delivery_secs: f64,
    pub server_rss: Option<u64>,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Worker {
    fn send(&mut self, line: &str) -> Result<(), String> {
        writeln!(self.stdin, "{line}").map_err(|e| format!("worker stdin: {e}"))
    }

    fn expect(&self, word: &str, timeout: Duration) -> Result<String, String> {
        let line = self
            .lines
            .recv_timeout(timeout)
            .map_err(|_| format!("no '{word}' from a worker within {timeout:?}"))?;
        match line.strip_prefix(word) {
            Some(rest) => Ok(rest.trim().to_owned()),
            None => Err(format!("worker said: {line}")),
        }
    }
}

pub fn run(args: &FanoutArgs, driver: &mut Driver) -> Result<Report, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut workers = Vec::new();
    let per = args.connections.div_ceil(args.workers);
    let started = Instant::now();
    for w in 0..args.workers {
        let count = per.min(args.connections - (w * per).min(args.connections));
        if count == 0 {
            break;
        }
        let mut cmd = Command::new(&exe);
        cmd.arg("worker")
            .args(["--url", &format!("ws://{}{}", args.target, args.path)])
            .args(["--connections", &count.to_string()])
            .args(["--subs-per-conn", &args.subs_per_conn.to_string()])
            // Each worker takes its own run of source addresses.
            .args([
                "--source-first",
                &(1 + (w as u8 * args.sources) % 250).to_string(),
            ])
            .args(["--sources", &args.sources.to_string()])
            .args(["--sub-offset", &(w * per * args.subs_per_conn).to_string()])
            .args(["--query", &args.query])
            .args(["--quiet-secs", &args.quiet.as_secs().to_string()]);
        if let Some(t) = &args.token {
            cmd.args(["--token", t]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn worker: {e}"))?;
        let stdin = child.stdin.take().ok_or("worker stdin")?;
        let stdout = child.stdout.take().ok_or("worker stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        workers.push(Worker {
            child,
            stdin,
            lines: rx,
        });
    }
    let result = drive(args, driver, &mut workers, started);
    for mut w in workers {
        let _ = w.child.kill();
        let _ = w.child.wait();
    }
    result
}

fn drive(
    args: &FanoutArgs,
    driver: &mut Driver,
    workers: &mut [Worker],
    started: Instant,
) -> Result<Report, String> {
    // Generous: a million subscriptions take a while to set up on a small machine.
    let setup_timeout = Duration::from_secs(300);
    let mut connections = 0;
    let mut subscriptions = 0;
    for w in workers.iter() {
        let ready = w.expect("ready", setup_timeout)?;
        let mut n = ready
            .split_whitespace()
            .map(|x| x.parse::<usize>().unwrap_or(0));
        connections += n.next().unwrap_or(0);
        subscriptions += n.next().unwrap_or(0);
    }
    let connect_secs = started.elapsed().as_secs_f64();
    if args.writes > 0 {
        eprintln!(
            "{}: {connections} connections, {subscriptions} subscriptions ready in {connect_secs:.1}s; writing",
            args.label
        );
    }
    for k in 1..=args.writes {
        let at = driver.change(k)?;
        for w in workers.iter_mut() {
            w.send(&format!("commit {k} {at}"))?;
        }
        if k % 10 == 0 {
            eprintln!("{}: {k}/{} changes", args.label, args.writes);
        }
        std::thread::sleep(args.interval);
    }
    let server_rss = args.server_pid.and_then(crate::rss_bytes);
    for w in workers.iter_mut() {
        w.send(&format!("finish {}", args.writes))?;
    }
    let mut report = Report {
        label: args.label.clone(),
        connections,
        subscriptions,
        connect_secs,
        received: 0,
        lost: 0,
        errors: 0,
        latency: Histogram::default(),
        delivery_secs: 0.0,
        server_rss,
    };
    let (mut first, mut last) = (u64::MAX, 0);
    for w in workers.iter() {
        let line = w.expect("result", args.quiet + Duration::from_secs(30))?;
        let mut parts = line.splitn(6, ' ');
        let mut num = || {
            parts
                .next()
                .and_then(|x| x.parse::<u64>().ok())
                .unwrap_or(0)
        };
        report.received += num();
        report.lost += num();
        report.errors += num();
        let (f, l) = (num(), num());
        if f > 0 {
            first = first.min(f);
        }
        last = last.max(l);
        let hist = Histogram::decode(parts.next().unwrap_or("")).ok_or("bad histogram")?;
        report.latency.merge(&hist);
    }
    if last > first && first != u64::MAX {
        report.delivery_secs = (last - first) as f64 / 1e9;
    }
    Ok(report)
}

impl Report {
    pub fn print(&self, floor: Option<&Report>) {
        let ms = |ns: u64| ns as f64 / 1e6;
        let l = &self.latency;
        println!("{}", self.label);
        println!(
            "  connections / subscriptions  {} / {}",
            self.connections, self.subscriptions
        );
        println!(
            "  connect+init+subscribe       {:.1}s ({:.0} subscriptions/s)",
            self.connect_secs,
            self.subscriptions as f64 / self.connect_secs.max(1e-9)
        );
        println!(
            "  commit-to-receipt ms         p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  ({} samples)",
            ms(l.quantile(0.5)),
            ms(l.quantile(0.9)),
            ms(l.quantile(0.99)),
            ms(l.max()),
            l.count()
        );
        if self.delivery_secs > 0.0 {
            println!(
                "  delivered                    {} messages, {:.0}/s",
                self.received,
                self.received as f64 / self.delivery_secs
            );
        }
        println!(
            "  lost updates / errors        {} / {}",
            self.lost, self.errors
        );
        if let Some(rss) = self.server_rss {
            println!(
                "  server RSS                   {:.1} MiB ({:.0} B/connection, {:.0} B/subscription)",
                rss as f64 / 1048576.0,
                rss as f64 / self.connections.max(1) as f64,
                rss as f64 / self.subscriptions.max(1) as f64
            );
        }
        if let Some(f) = floor {
            let ratio = |q: f64| l.quantile(q) as f64 / f.latency.quantile(q).max(1) as f64;
            println!(
                "  vs floor (ours / floor)      p50 {:.2}x  p99 {:.2}x  max {:.2}x",
                ratio(0.5),
                ratio(0.99),
                l.max() as f64 / f.latency.max().max(1) as f64
            );
        }
    }

    pub fn json(&self) -> String {
        let l = &self.latency;
        format!(
            "{{\"label\":\"{}\",\"connections\":{},\"subscriptions\":{},\"connect_secs\":{:.3},\
             \"p50_ns\":{},\"p90_ns\":{},\"p99_ns\":{},\"max_ns\":{},\"received\":{},\
             \"delivery_secs\":{:.3},\"lost\":{},\"errors\":{},\"server_rss\":{}}}",
            self.label,
            self.connections,
            self.subscriptions,
            self.connect_secs,
            l.quantile(0.5),
            l.quantile(0.9),
            l.quantile(0.99),
            l.max(),
            self.received,
            self.delivery_secs,
            self.lost,
            self.errors,
            self.server_rss.map_or("null".into(), |v| v.to_string())
        )
    }
}
