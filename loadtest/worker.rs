//! A worker process: holds its share of the sockets, measures what they receive, and
//! churns its share of the subscriptions.
//!
//! Protocol with the coordinator, one line each way:
//!
//! - worker → `ready <connections> <subscriptions>` once every subscription has its first
//!   result (or `failed <reason>`);
//! - coordinator → `start <ns>`: writes start at monotonic time `ns`; churning subscriptions
//!   start their cycles, and with `--intervals` latency is kept per second from `ns`;
//! - coordinator → `commit <k> <ns>`: value `k` was committed at monotonic time `ns`;
//! - worker → `interval <i> <receipts> <histogram>` (with `--intervals`), once second `i`
//!   is over and each of its receipts has its commit time;
//! - coordinator → `finish <k>`: no more writes; churn stops, every subscription must come
//!   to show `k` (or the quiet timeout passes); the worker sends its remaining intervals,
//!   then `result <received> <lost> <errors> <first_ns> <last_ns> <cycles> <stale_first> |
//!   <histogram> | <resubscribe histogram>`.

use std::cell::{Cell, RefCell};
use std::io::BufRead;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::future::or;
use glommio::timer::{Timer, sleep};
use glommio::{LocalExecutorBuilder, Placement};

use crate::client::Connection;
use crate::stats::now_ns;
use crate::tally::{Receipt, Tally};
use crate::wire::{Frame, Outgoing, QueryTemplate, parse_next};

pub struct WorkerArgs {
    pub target: SocketAddr,
    pub path: String,
    pub connections: usize,
    pub subs_per_conn: usize,
    /// Source addresses `127.0.0.<first>` onward, `count` of them.
    pub source_first: u8,
    pub sources: u8,
    /// The subscription; `{n}` becomes the subscription's row number (1 to `rows`).
    pub query: String,
    /// Rows the subscriptions are spread over (`--rows`, default 1000).
    pub rows: usize,
    /// This worker's first subscription number across all workers.
    pub sub_offset: usize,
    pub token: Option<String>,
    /// Tokens each socket signs for itself (instead of `token`).
    pub identities: Option<crate::client::Identities>,
    /// How long `finish` waits for stragglers.
    pub quiet: Duration,
    /// Subscriptions of this worker that churn.
    pub churn: usize,
    /// Pause between a resubscription's first result and the next `complete`.
    pub churn_pause: Duration,
    /// Report latency per interval.
    pub intervals: bool,
}

/// Where the run is, for every socket task.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Subscribing, until `start`.
    Subscribing,
    /// Writes under way: churning slots cycle.
    Writing,
    /// `finish` arrived: no new cycles.
    Finishing,
}

/// What the worker's tasks share.
struct Shared {
    args: WorkerArgs,
    query: QueryTemplate,
    tally: RefCell<Tally>,
    phase: Cell<Phase>,
    /// The first failure to connect or subscribe.
    failure: RefCell<Option<String>>,
    opened: Cell<usize>,
}

pub fn run(args: WorkerArgs) -> Result<(), String> {
    // Lines from the coordinator, read on a plain thread and handed to the executor.
    let (tx, rx) = flume::unbounded::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("loadtest-worker")
        .io_memory(128 * 1024)
        .spawn(move || work(args, rx))
        .map_err(|e| e.to_string())?
        .join()
        .map_err(|e| e.to_string())?
}

async fn work(args: WorkerArgs, commands: flume::Receiver<String>) -> Result<(), String> {
    let shared = Rc::new(Shared {
        query: QueryTemplate::new(&args.query),
        tally: RefCell::new(Tally::new(args.connections, args.subs_per_conn, args.churn)),
        phase: Cell::new(Phase::Subscribing),
        failure: RefCell::default(),
        opened: Cell::new(0),
        args,
    });
    for c in 0..shared.args.connections {
        glommio::spawn_local(socket(c, Rc::clone(&shared))).detach();
    }

    // Ready once every subscription has its first result.
    loop {
        if let Some(e) = shared.failure.borrow().as_ref() {
            println!("failed {e}");
            return Err(e.clone());
        }
        if shared.tally.borrow().ready() {
            break;
        }
        sleep(Duration::from_millis(5)).await;
    }
    let total = shared.args.connections * shared.args.subs_per_conn;
    println!("ready {} {total}", shared.opened.get());

    while let Ok(line) = commands.recv_async().await {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("start"), Some(at), None) => {
                let Ok(at) = at.parse() else { continue };
                shared.tally.borrow_mut().start(at, shared.args.intervals);
                shared.phase.set(Phase::Writing);
                if shared.args.intervals {
                    glommio::spawn_local(report_intervals(Rc::clone(&shared))).detach();
                }
            }
            (Some("commit"), Some(k), Some(at)) => {
                if let (Ok(k), Ok(at)) = (k.parse(), at.parse()) {
                    shared.tally.borrow_mut().commit(k, at);
                }
            }
            (Some("finish"), Some(k), None) => {
                let Ok(k) = k.parse::<u64>() else { continue };
                shared.phase.set(Phase::Finishing);
                let deadline = now_ns() + shared.args.quiet.as_nanos() as u64;
                while shared.tally.borrow().lost(k) > 0 && now_ns() < deadline {
                    sleep(Duration::from_millis(5)).await;
                }
                let mut tally = shared.tally.borrow_mut();
                print_intervals(&mut tally, true);
                println!(
                    "result {} {} {} {} {} {} {} | {} | {}",
                    tally.received,
                    tally.lost(k),
                    tally.errors,
                    tally.first_ns,
                    tally.last_ns,
                    tally.cycles,
                    tally.stale_first,
                    tally.latency.encode(),
                    tally.resubscribe.encode()
                );
                return Ok(());
            }
            _ => {}
        }
    }
    Ok(())
}

/// Sends every interval that is over, as it is.
async fn report_intervals(shared: Rc<Shared>) {
    while shared.phase.get() == Phase::Writing {
        print_intervals(&mut shared.tally.borrow_mut(), false);
        sleep(Duration::from_millis(50)).await;
    }
}

fn print_intervals(tally: &mut Tally, all: bool) {
    for i in tally.take_intervals(now_ns(), all) {
        println!("interval {} {} {}", i.index, i.receipts, i.latency.encode());
    }
}

/// Where a socket's churning subscriptions are in their cycle.
enum Churn {
    /// None of its subscriptions churn, or churn is over.
    Off,
    /// Waiting for the timer before completing and resubscribing them.
    Pausing(Timer),
    /// Resubscribed; this many first results are still to come.
    Awaiting(usize),
}

/// What woke a socket task.
enum Wake {
    Read(Result<usize, String>),
    Timer,
}

/// One socket: connects, subscribes, then reads until the worker exits, churning its
/// churning subscriptions while writes run.
async fn socket(c: usize, shared: Rc<Shared>) {
    let args = &shared.args;
    let source = Ipv4Addr::new(
        127,
        0,
        0,
        args.source_first + (c % args.sources as usize) as u8,
    );
    // Sockets are numbered across workers, as subscriptions are.
    let socket_number = args.sub_offset / args.subs_per_conn.max(1) + c;
    let token = match &args.identities {
        Some(ids) => Some(ids.token(socket_number)),
        None => args.token.clone(),
    };
    let opened =
        Connection::open_initialised(source, args.target, &args.path, token.as_deref()).await;
    let mut conn = match opened {
        Ok(conn) => conn,
        Err(e) => {
            shared.failure.borrow_mut().get_or_insert(e);
            return;
        }
    };
    let first = args.sub_offset + c * args.subs_per_conn;
    // Each slot keeps its row for all its subscriptions.
    let row = |slot: usize| (first + slot) % args.rows.max(1) + 1;
    let mut out = Outgoing::default();
    for slot in 0..args.subs_per_conn {
        out.subscribe(slot as u64 + 1, &shared.query, row(slot));
    }
    if let Err(e) = conn.send(&out.bytes).await {
        shared.failure.borrow_mut().get_or_insert(e);
        return;
    }
    shared.opened.set(shared.opened.get() + 1);

    let churning = shared.tally.borrow().churning(c);
    let mut churn = if churning.is_empty() {
        Churn::Off
    } else {
        // Sockets start their cycles spread over one pause, not all at once.
        let spread = args.churn_pause.mul_f64((c % 64) as f64 / 64.0);
        Churn::Pausing(Timer::new(args.churn_pause + spread))
    };
    loop {
        let read = receive(&mut conn, c, &shared.tally);
        let wake = match &mut churn {
            Churn::Pausing(timer) => {
                or(async { Wake::Read(read.await) }, async {
                    timer.await;
                    Wake::Timer
                })
                .await
            }
            Churn::Off | Churn::Awaiting(_) => Wake::Read(read.await),
        };
        match (wake, &mut churn) {
            (Wake::Read(Err(_)), _) => {
                shared.tally.borrow_mut().error();
                return;
            }
            (Wake::Read(Ok(firsts)), Churn::Awaiting(left)) if firsts > 0 => {
                *left = left.saturating_sub(firsts);
                if *left == 0 {
                    churn = Churn::Pausing(Timer::new(args.churn_pause));
                }
            }
            (Wake::Read(Ok(_)), _) => {}
            (Wake::Timer, Churn::Pausing(timer)) => match shared.phase.get() {
                Phase::Subscribing => timer.reset(args.churn_pause),
                Phase::Finishing => churn = Churn::Off,
                Phase::Writing => {
                    out.clear();
                    {
                        let at = now_ns();
                        let mut tally = shared.tally.borrow_mut();
                        for &slot in &churning {
                            let (old, new) = tally.resubscribe(c, slot, at);
                            out.complete(old);
                            out.subscribe(new, &shared.query, row(slot));
                        }
                    }
                    if conn.send(&out.bytes).await.is_err() {
                        shared.tally.borrow_mut().error();
                        return;
                    }
                    churn = Churn::Awaiting(churning.len());
                }
            },
            (Wake::Timer, _) => {}
        }
    }
}

/// One read's frames into the tally; returns how many were first results of
/// resubscriptions.
async fn receive(conn: &mut Connection, c: usize, tally: &RefCell<Tally>) -> Result<usize, String> {
    let mut firsts = 0;
    let mut closed = false;
    conn.receive(|frame, at| match frame {
        Frame::Text(text) => {
            let mut tally = tally.borrow_mut();
            match parse_next(text) {
                Some((id, v)) => {
                    if tally.next(c, id, v, at) == Receipt::Resubscribed {
                        firsts += 1;
                    }
                }
                None => tally.error(),
            }
        }
        Frame::Control => {}
        Frame::Close(_) => closed = true,
    })
    .await?;
    if closed {
        return Err("closed by the server".into());
    }
    Ok(firsts)
}
