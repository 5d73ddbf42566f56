//! Per-user refreshes through the shard's refresh loop: how fast one shard brings
//! `POSTRUST_BENCH_LIVE` live queries (default 10,000), each its own user's claims under a
//! row-level security policy, up to date after a change they all see, sending
//! `POSTRUST_REFRESH_BATCH`-sized batches of refreshes per round trip or one at a time.
//!
//! The real parts run: the registry, the refresh loop with the server's default pacing (a
//! pool of 4, three refresh slots), `execute::PgRunner` and our PostgreSQL client; only the
//! WebSockets are left out (results land in outboxes nobody drains). Each round changes the
//! row every user sees, marks the table and times until every live query has refreshed,
//! for each batch size in turn, so load from other processes hits them alike. Prints per
//! batch size the median refreshes per second and the CPU per refresh of this process and
//! of the cluster's processes.
//!
//! Reads `POSTRUST_DATABASE_URL` prepared by `bench/refresh.sh` (which starts a private
//! cluster and runs this).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use postrust::catalog::QualifiedName;
use postrust::execute::PgRunner;
use postrust::live::{Compiled, Job, LiveKey, Pacing, Registry, RunResult, Runner};
use postrust::metrics::ShardMetrics;
use postrust::outbox::Outbox;
use postrust::pg::{Client, ConnectConfig, ConnectOptions, Pool, PoolOptions};
use postrust::replicas::Database;

const SQL: &str = "SELECT coalesce(json_agg(body ORDER BY id), '[]')::text FROM notes";

/// The real runner, counting the refreshes it has answered.
struct Counting {
    inner: PgRunner,
    done: Cell<usize>,
}

impl Runner for Counting {
    fn run<'a>(&'a self, jobs: &'a [Job]) -> Pin<Box<dyn Future<Output = Vec<RunResult>> + 'a>> {
        Box::pin(async move {
            let results = self.inner.run(jobs).await;
            for result in &results {
                assert!(matches!(result, RunResult::Data(_)), "a refresh failed");
            }
            self.done.set(self.done.get() + results.len());
            results
        })
    }

    fn fanned_out(&self, took: Duration) {
        self.inner.fanned_out(took);
    }
}

/// CPU seconds used so far by the processes whose command name is `name` (all of them), or
/// by this process for `None`.
fn cpu_seconds(name: Option<&str>) -> f64 {
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let of = |stat: &str| -> f64 {
        // After the command name's closing parenthesis: fields 3.. of proc(5).
        let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields[11].parse().unwrap_or(0.0);
        let stime: f64 = fields[12].parse().unwrap_or(0.0);
        (utime + stime) / ticks
    };
    match name {
        None => of(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default()),
        Some(name) => std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter(|stat| stat.contains(&format!("({name})")))
            .map(|stat| of(&stat))
            .sum(),
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Waits until `runner` has answered `target` refreshes in all.
async fn refreshed(runner: &Counting, target: usize) {
    while runner.done.get() < target {
        glommio::timer::sleep(Duration::from_micros(200)).await;
    }
}

struct Sample {
    per_second: f64,
    ours_us: f64,
    pg_us: f64,
}

fn main() {
    // `cargo bench` passes --bench; a plain `cargo test --benches` run only checks it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let url = std::env::var("POSTRUST_DATABASE_URL").expect("POSTRUST_DATABASE_URL");
    let config = ConnectConfig::from_url(&url).expect("URL");
    let live = env_or("POSTRUST_BENCH_LIVE", 10_000) as usize;
    let rounds = env_or("POSTRUST_BENCH_ROUNDS", 3) as usize;
    let batches: Vec<usize> = std::env::var("POSTRUST_BENCH_BATCHES")
        .unwrap_or_else(|_| "1,16".into())
        .split(',')
        .filter_map(|b| b.trim().parse().ok())
        .collect();
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(512 * 1024)
        .make()
        .expect("executor")
        .run(async move {
            let writer = Client::connect(&config, &ConnectOptions::default())
                .await
                .expect("connect");
            let mut samples: Vec<Vec<Sample>> = batches.iter().map(|_| Vec::new()).collect();
            let mut version = 0;
            for round in 0..rounds {
                for (b, &batch) in batches.iter().enumerate() {
                    let registry = Rc::new(RefCell::new(Registry::default()));
                    let runner = Rc::new(Counting {
                        inner: PgRunner {
                            db: Rc::new(Database::new(
                                Pool::new(
                                    config.clone(),
                                    ConnectOptions::default(),
                                    PoolOptions {
                                        statement_timeout: Some(Duration::from_secs(10)),
                                        ..PoolOptions::default()
                                    },
                                ),
                                Vec::new(),
                                Duration::ZERO,
                                (Duration::ZERO, Duration::ZERO),
                            )),
                            all_metrics: Arc::from(vec![ShardMetrics::default()]),
                            index: 0,
                        },
                        done: Cell::new(0),
                    });
                    let pacing = Pacing {
                        tick: Duration::ZERO,
                        concurrency: 3,
                        retry_after: Duration::from_millis(500),
                        batch,
                    };
                    let dyn_runner: Rc<dyn Runner> = runner.clone();
                    let loop_task = glommio::spawn_local(postrust::live::run(
                        Rc::clone(&registry),
                        dyn_runner,
                        pacing,
                    ));
                    let compiled = Rc::new(Compiled {
                        sql: SQL.into(),
                        params: vec![],
                        tables: vec![QualifiedName {
                            schema: "public".into(),
                            name: "notes".into(),
                        }],
                        skip: Default::default(),
                    });
                    // Kept so the slots stay open.
                    let mut outboxes = Vec::with_capacity(live);
                    for user in 0..live {
                        let outbox = Rc::new(Outbox::default());
                        let slot = outbox.open_slot(b"P");
                        let key = LiveKey {
                            compiled: Rc::clone(&compiled),
                            role: Some("web_user".into()),
                            claims: format!(r#"{{"sub":"u{user}","role":"web_user"}}"#).into(),
                        };
                        registry.borrow_mut().subscribe(key, &outbox, slot);
                        outboxes.push(outbox);
                    }
                    // First results (one at a time, in their owners' turns), untimed.
                    refreshed(&runner, live).await;

                    version += 1;
                    writer
                        .execute(
                            "UPDATE notes SET body = 'shared v' || $1 WHERE owner = 'all'",
                            &[Some(&version.to_string())],
                        )
                        .await
                        .expect("update");
                    let (ours, pg) = (cpu_seconds(None), cpu_seconds(Some("postgres")));
                    let started = Instant::now();
                    registry.borrow_mut().mark_table(None, "notes");
                    refreshed(&runner, 2 * live).await;
                    let took = started.elapsed().as_secs_f64();
                    let sample = Sample {
                        per_second: live as f64 / took,
                        ours_us: (cpu_seconds(None) - ours) / live as f64 * 1e6,
                        pg_us: (cpu_seconds(Some("postgres")) - pg) / live as f64 * 1e6,
                    };
                    eprintln!(
                        "round {} batch {batch}: {:.0} refreshes/s, {:.1} µs ours, {:.1} µs PostgreSQL per refresh",
                        round + 1,
                        sample.per_second,
                        sample.ours_us,
                        sample.pg_us
                    );
                    samples[b].push(sample);
                    drop(loop_task.cancel());
                    drop(outboxes);
                }
            }
            println!(
                "{live} per-user live queries, one change they all see; median of {rounds} rounds"
            );
            println!("batch  refreshes/s  µs ours/refresh  µs PostgreSQL/refresh");
            for (batch, samples) in batches.iter().zip(&mut samples) {
                let median = |f: fn(&Sample) -> f64, samples: &mut Vec<Sample>| {
                    samples.sort_by(|a, b| f(a).total_cmp(&f(b)));
                    f(&samples[samples.len() / 2])
                };
                let per_second = median(|s| s.per_second, samples);
                let ours = median(|s| s.ours_us, samples);
                let pg = median(|s| s.pg_us, samples);
                println!("{batch:>5}  {per_second:>11.0}  {ours:>15.1}  {pg:>21.1}");
            }
        });
}
