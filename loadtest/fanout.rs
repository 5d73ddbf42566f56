//! The coordinator of a fan-out run: starts the workers, drives the changes, and reports.
//!
//! It spawns `--workers` copies of this binary (`postrust-loadtest worker …`), each holding
//! its share of the sockets under the per-process descriptor limit, and talks to them over
//! their standard input and output (see `worker.rs`). Once all are ready it makes the
//! changes of its schedule, stamping each commit on the host's monotonic clock and passing
//! the stamp to the workers, which turn every receipt into a commit-to-receipt latency.
//!
//! Two schedules: `--writes K --interval-ms MS` makes K changes with a pause after each;
//! `--rate N --duration-secs S` makes N changes a second for S seconds, each due at an
//! absolute time from the start (a late write is not followed by a late schedule), and
//! prints every second's latency as it completes. Either can run with `--churn N`: N
//! subscriptions are completed and subscribed again on their sockets while the writes run.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::report::{Churn, Rate, Report, Timeline};
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

/// When the changes are made.
#[derive(Clone, Copy)]
pub enum Schedule {
    /// `writes` changes, with a pause of `interval` after each.
    Paced { writes: u64, interval: Duration },
    /// `per_sec` changes a second for `secs` seconds, change `k` due `(k - 1) / per_sec`
    /// seconds after the start.
    Rate { per_sec: u64, secs: u64 },
}

impl Schedule {
    pub fn writes(&self) -> u64 {
        match *self {
            Schedule::Paced { writes, .. } => writes,
            Schedule::Rate { per_sec, secs } => per_sec * secs,
        }
    }
}

/// Nanoseconds after the start at which change `k` (from 1) is due at `per_sec` a second.
fn due(per_sec: u64, k: u64) -> u64 {
    ((u128::from(k - 1) * 1_000_000_000) / u128::from(per_sec.max(1))) as u64
}

pub struct FanoutArgs {
    pub label: String,
    pub target: SocketAddr,
    pub path: String,
    pub connections: usize,
    pub subs_per_conn: usize,
    pub workers: usize,
    pub sources: u8,
    pub schedule: Schedule,
    pub query: String,
    /// Rows the subscriptions are spread over.
    pub rows: usize,
    pub token: Option<String>,
    /// Tokens each socket signs for itself.
    pub identities: Option<crate::client::Identities>,
    pub server_pid: Option<u32>,
    pub quiet: Duration,
    /// Subscriptions that churn.
    pub churn: usize,
    pub churn_pause: Duration,
}

/// The worker processes and what they say.
struct Workers {
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
    /// Every worker's lines, with its index: sent by one reader thread per worker,
    /// received here; unbounded, since a worker says little.
    lines: mpsc::Receiver<(usize, String)>,
}

impl Workers {
    fn send_all(&mut self, line: &str) -> Result<(), String> {
        for stdin in &mut self.stdins {
            writeln!(stdin, "{line}").map_err(|e| format!("worker stdin: {e}"))?;
        }
        Ok(())
    }

    /// The next line from any worker by `deadline`, other than interval lines: those go to
    /// `timeline`, which prints the seconds they complete.
    fn next_line(
        &self,
        deadline: Instant,
        timeline: &mut Option<Timeline>,
    ) -> Result<Option<(usize, String)>, String> {
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let (w, line) = match self.lines.recv_timeout(wait) {
                Ok(l) => l,
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err("every worker has exited".into());
                }
            };
            match (line.strip_prefix("interval "), timeline.as_mut()) {
                (Some(rest), Some(t)) => {
                    t.add(rest)?;
                    t.progress();
                }
                _ => return Ok(Some((w, line))),
            }
        }
    }

    /// Waits until `deadline`, taking interval lines meanwhile.
    fn wait_until(&self, deadline: Instant, timeline: &mut Option<Timeline>) -> Result<(), String> {
        match self.next_line(deadline, timeline)? {
            Some((_, line)) => Err(format!("worker said: {line}")),
            None => Ok(()),
        }
    }

    /// One line starting with `word` from every worker, in worker order, without the word.
    fn collect(
        &self,
        word: &str,
        timeout: Duration,
        timeline: &mut Option<Timeline>,
    ) -> Result<Vec<String>, String> {
        let deadline = Instant::now() + timeout;
        let mut got: Vec<Option<String>> = vec![None; self.children.len()];
        while got.iter().any(Option::is_none) {
            let Some((w, line)) = self.next_line(deadline, timeline)? else {
                return Err(format!("no '{word}' from a worker within {timeout:?}"));
            };
            match line.strip_prefix(word) {
                Some(rest) => got[w] = Some(rest.trim().to_owned()),
                None => return Err(format!("worker said: {line}")),
            }
        }
        Ok(got.into_iter().flatten().collect())
    }
}

pub fn run(args: &FanoutArgs, driver: &mut Driver) -> Result<Report, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let (tx, lines) = mpsc::channel();
    let mut workers = Workers {
        children: Vec::new(),
        stdins: Vec::new(),
        lines,
    };
    let per = args.connections.div_ceil(args.workers);
    let churn_per = args.churn.div_ceil(args.workers);
    let mut churn_left = args.churn;
    let started = Instant::now();
    for w in 0..args.workers {
        let count = per.min(args.connections - (w * per).min(args.connections));
        if count == 0 {
            break;
        }
        let churn = churn_per.min(churn_left).min(count * args.subs_per_conn);
        churn_left -= churn;
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
            .args(["--rows", &args.rows.to_string()])
            .args(["--quiet-secs", &args.quiet.as_secs().to_string()])
            .args(["--churn", &churn.to_string()])
            .args([
                "--churn-pause-ms",
                &args.churn_pause.as_millis().to_string(),
            ]);
        if let Schedule::Rate { .. } = args.schedule {
            cmd.arg("--intervals");
        }
        if let Some(t) = &args.token {
            cmd.args(["--token", t]);
        }
        if let Some(ids) = &args.identities {
            cmd.args(["--jwt-secret", &ids.secret]);
            if ids.per_user {
                cmd.arg("--per-user");
            }
        }
        let mut child = match cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn() {
            Ok(child) => child,
            Err(e) => {
                stop(workers);
                return Err(format!("spawn worker: {e}"));
            }
        };
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            workers.children.push(child);
            stop(workers);
            return Err("worker pipes".into());
        };
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send((w, line)).is_err() {
                    break;
                }
            }
        });
        workers.children.push(child);
        workers.stdins.push(stdin);
    }
    drop(tx);
    let result = drive(args, driver, &mut workers, started);
    stop(workers);
    result
}

fn stop(workers: Workers) {
    for mut child in workers.children {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn drive(
    args: &FanoutArgs,
    driver: &mut Driver,
    workers: &mut Workers,
    started: Instant,
) -> Result<Report, String> {
    // Generous: a million subscriptions take a while to set up on a small machine.
    let setup_timeout = Duration::from_secs(300);
    let mut connections = 0;
    let mut subscriptions = 0;
    for ready in workers.collect("ready", setup_timeout, &mut None)? {
        let mut n = ready
            .split_whitespace()
            .map(|x| x.parse::<usize>().unwrap_or(0));
        connections += n.next().unwrap_or(0);
        subscriptions += n.next().unwrap_or(0);
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let writes = args.schedule.writes();
    let label = &args.label;
    eprintln!(
        "{label}: {connections} connections, {subscriptions} subscriptions ready in {connect_secs:.1}s; writing"
    );
    let start = now_ns();
    let start_instant = Instant::now();
    workers.send_all(&format!("start {start}"))?;
    let mut timeline = match args.schedule {
        Schedule::Rate { .. } => Some(Timeline::new(label, workers.children.len(), start)),
        Schedule::Paced { .. } => None,
    };
    let (mut first_commit, mut last_commit, mut lag_max) = (0, 0, 0);
    for k in 1..=writes {
        if let Schedule::Rate { per_sec, .. } = args.schedule {
            let due = due(per_sec, k);
            workers.wait_until(start_instant + Duration::from_nanos(due), &mut timeline)?;
            lag_max = lag_max.max(now_ns().saturating_sub(start + due));
        }
        let at = driver.change(k)?;
        if k == 1 {
            first_commit = at;
        }
        last_commit = at;
        if let Some(t) = &mut timeline {
            t.write(at);
        }
        workers.send_all(&format!("commit {k} {at}"))?;
        if let Schedule::Paced { interval, .. } = args.schedule {
            if k % 10 == 0 {
                eprintln!("{label}: {k}/{writes} changes");
            }
            std::thread::sleep(interval);
        }
    }
    let server_rss = args.server_pid.and_then(crate::rss_bytes);
    workers.send_all(&format!("finish {writes}"))?;
    let mut report = Report {
        label: label.clone(),
        connections,
        subscriptions,
        connect_secs,
        received: 0,
        lost: 0,
        errors: 0,
        latency: Histogram::default(),
        delivery_secs: 0.0,
        server_rss,
        churn: None,
        rate: None,
    };
    let mut churn = Churn {
        subscriptions: args.churn.min(subscriptions),
        cycles: 0,
        stale_first: 0,
        latency: Histogram::default(),
    };
    let (mut first, mut last) = (u64::MAX, 0);
    for line in workers.collect(
        "result",
        args.quiet + Duration::from_secs(30),
        &mut timeline,
    )? {
        let (counts, hists) = line.split_once('|').ok_or("bad result line")?;
        let mut num = counts.split_whitespace().map(|x| x.parse::<u64>().ok());
        let mut num = || num.next().flatten().ok_or("bad result line");
        report.received += num()?;
        report.lost += num()?;
        report.errors += num()?;
        let (f, l) = (num()?, num()?);
        if f > 0 {
            first = first.min(f);
        }
        last = last.max(l);
        churn.cycles += num()?;
        churn.stale_first += num()?;
        let (latency, resubscribe) = hists.split_once('|').ok_or("bad result line")?;
        report
            .latency
            .merge(&Histogram::decode(latency).ok_or("bad histogram")?);
        churn
            .latency
            .merge(&Histogram::decode(resubscribe).ok_or("bad histogram")?);
    }
    if last > first && first != u64::MAX {
        report.delivery_secs = (last - first) as f64 / 1e9;
    }
    if args.churn > 0 {
        report.churn = Some(churn);
    }
    if let (Schedule::Rate { per_sec, secs }, Some(mut t)) = (args.schedule, timeline) {
        t.progress();
        report.rate = Some(Rate {
            per_sec,
            secs,
            writes,
            achieved: if last_commit > first_commit {
                (writes - 1) as f64 * 1e9 / (last_commit - first_commit) as f64
            } else {
                0.0
            },
            lag_max_ns: lag_max,
            intervals: t.intervals,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_schedule_is_due_on_absolute_times() {
        assert_eq!(due(200, 1), 0);
        assert_eq!(due(200, 2), 5_000_000);
        assert_eq!(due(200, 201), 1_000_000_000);
        // Rates that do not divide a second do not drift: write 3·10⁶ + 1 of 3 a second is
        // due at exactly 10⁶ seconds.
        assert_eq!(due(3, 3_000_001), 1_000_000 * 1_000_000_000);
        assert_eq!(
            Schedule::Rate {
                per_sec: 50,
                secs: 30
            }
            .writes(),
            1500
        );
    }
}
