//! A worker process: holds its share of the sockets and measures what they receive.
//!
//! Protocol with the coordinator, one line each way:
//!
//! - worker → `ready <connections> <subscriptions>` once every subscription has its first
//!   result (or `failed <reason>`);
//! - coordinator → `commit <k> <ns>`: value `k` was committed at monotonic time `ns`;
//! - coordinator → `finish <k>`: no more writes; wait until every subscription shows `k`
//!   (or the quiet timeout passes), then answer
//!   `result <received> <lost> <errors> <first_ns> <last_ns> <histogram>`.

use std::cell::{Cell, RefCell};
use std::io::BufRead;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use glommio::timer::sleep;
use glommio::{LocalExecutorBuilder, Placement};

use crate::client::Connection;
use crate::stats::{Histogram, now_ns};
use crate::wire::{Frame, Outgoing, QueryTemplate, parse_next};

pub struct WorkerArgs {
    pub target: SocketAddr,
    pub path: String,
    pub connections: usize,
    pub subs_per_conn: usize,
    /// Source addresses `127.0.0.<first>` onward, `count` of them.
    pub source_first: u8,
    pub sources: u8,
    /// The subscription; `{n}` becomes the subscription's row number (1 to 1000).
    pub query: String,
    /// This worker's first subscription number across all workers.
    pub sub_offset: usize,
    pub token: Option<String>,
    /// How long `finish` waits for stragglers.
    pub quiet: Duration,
}

/// What every connection task updates.
#[derive(Default)]
struct Tally {
    /// Newest value seen, per subscription (`connection × subs_per_conn + id - 1`).
    last: RefCell<Vec<u64>>,
    /// Subscriptions that have their first result.
    primed: Cell<usize>,
    /// Commit time of each value (by index); 0 while not known.
    commits: RefCell<Vec<u64>>,
    /// Receipts whose commit time is not known yet: (value, received at).
    pending: RefCell<Vec<(u64, u64)>>,
    latency: RefCell<Histogram>,
    received: Cell<u64>,
    errors: Cell<u64>,
    first_ns: Cell<u64>,
    last_ns: Cell<u64>,
}

impl Tally {
    fn receipt(&self, sub: usize, v: u64, at: u64) {
        let mut last = self.last.borrow_mut();
        let Some(slot) = last.get_mut(sub) else {
            self.errors.set(self.errors.get() + 1);
            return;
        };
        if *slot == u64::MAX {
            self.primed.set(self.primed.get() + 1);
        }
        *slot = v;
        if v == 0 {
            // The initial result, before any write.
            return;
        }
        self.received.set(self.received.get() + 1);
        if self.first_ns.get() == 0 {
            self.first_ns.set(at);
        }
        self.last_ns.set(at);
        match self.commits.borrow().get(v as usize) {
            Some(&c) if c > 0 => self.latency.borrow_mut().record(at.saturating_sub(c)),
            _ => self.pending.borrow_mut().push((v, at)),
        }
    }

    fn commit(&self, k: u64, at: u64) {
        let mut commits = self.commits.borrow_mut();
        if commits.len() <= k as usize {
            commits.resize(k as usize + 1, 0);
        }
        commits[k as usize] = at;
        let mut latency = self.latency.borrow_mut();
        self.pending.borrow_mut().retain(|(v, t)| {
            if *v == k {
                latency.record(t.saturating_sub(at));
                false
            } else {
                true
            }
        });
    }
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
    let args = Rc::new(args);
    let query = Rc::new(QueryTemplate::new(&args.query));
    let total = args.connections * args.subs_per_conn;
    let tally = Rc::new(Tally {
        last: RefCell::new(vec![u64::MAX; total]),
        ..Tally::default()
    });
    let failure: Rc<RefCell<Option<String>>> = Rc::default();
    let opened = Rc::new(Cell::new(0usize));
    for c in 0..args.connections {
        let (args, query, tally, failure, opened) = (
            Rc::clone(&args),
            Rc::clone(&query),
            Rc::clone(&tally),
            Rc::clone(&failure),
            Rc::clone(&opened),
        );
        glommio::spawn_local(async move {
            let source = Ipv4Addr::new(
                127,
                0,
                0,
                args.source_first + (c % args.sources as usize) as u8,
            );
            let mut conn = match Connection::open_initialised(
                source,
                args.target,
                &args.path,
                args.token.as_deref(),
            )
            .await
            {
                Ok(conn) => conn,
                Err(e) => {
                    failure.borrow_mut().get_or_insert(e);
                    return;
                }
            };
            let first = args.sub_offset + c * args.subs_per_conn;
            let mut out = Outgoing::default();
            for id in 1..=args.subs_per_conn {
                out.subscribe(id as u64, &query, (first + id - 1) % 1000 + 1);
            }
            if let Err(e) = conn.send(&out.bytes).await {
                failure.borrow_mut().get_or_insert(e);
                return;
            }
            opened.set(opened.get() + 1);
            let per = args.subs_per_conn as u64;
            loop {
                let mut closed = false;
                let read = conn
                    .receive(|frame, at| match frame {
                        Frame::Text(text) => match parse_next(text) {
                            Some((id, v)) if id >= 1 && id <= per => {
                                tally.receipt(c * args.subs_per_conn + id as usize - 1, v, at)
                            }
                            _ => tally.errors.set(tally.errors.get() + 1),
                        },
                        Frame::Control => {}
                        Frame::Close(_) => closed = true,
                    })
                    .await;
                if closed || read.is_err() {
                    tally.errors.set(tally.errors.get() + 1);
                    return;
                }
            }
        })
        .detach();
    }

    // Ready once every subscription has its first result.
    loop {
        if let Some(e) = failure.borrow().as_ref() {
            println!("failed {e}");
            return Err(e.clone());
        }
        if tally.primed.get() == total {
            break;
        }
        sleep(Duration::from_millis(5)).await;
    }
    println!("ready {} {total}", opened.get());

    while let Ok(line) = commands.recv_async().await {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("commit"), Some(k), Some(at)) => {
                if let (Ok(k), Ok(at)) = (k.parse(), at.parse()) {
                    tally.commit(k, at);
                }
            }
            (Some("finish"), Some(k), None) => {
                let Ok(k) = k.parse::<u64>() else { continue };
                let deadline = now_ns() + args.quiet.as_nanos() as u64;
                while tally.last.borrow().iter().any(|v| *v != k) && now_ns() < deadline {
                    sleep(Duration::from_millis(5)).await;
                }
                let lost = tally.last.borrow().iter().filter(|v| **v != k).count();
                println!(
                    "result {} {lost} {} {} {} {}",
                    tally.received.get(),
                    tally.errors.get(),
                    tally.first_ns.get(),
                    tally.last_ns.get(),
                    tally.latency.borrow().encode()
                );
                return Ok(());
            }
            _ => {}
        }
    }
    Ok(())
}
