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
//! With `POSTRUST_BENCH_READ_URL` (a streaming replica of the cluster), each batch size also
//! runs with reads on the replica, and the PostgreSQL CPU is split between the primary's
//! processes and the replica's (`POSTRUST_BENCH_PRIMARY_PID`, `POSTRUST_BENCH_REPLICA_PID`:
//! their postmasters).
//!
//! Reads `POSTRUST_DATABASE_URL` prepared by `bench/refresh.sh` (which starts a private
//! cluster, and a replica when asked, and runs this).

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

/// CPU seconds (user and system) in a proc(5) `stat` line, and the process's parent.
fn stat_cpu(stat: &str) -> (f64, u32) {
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // After the command name's closing parenthesis: fields 3.. of proc(5).
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> f64 { fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0.0) };
    ((field(11) + field(12)) / ticks, field(1) as u32)
}

/// Which processes a CPU figure covers.
#[derive(Clone, Copy)]
enum Processes {
    /// This process.
    Ours,
    /// Every `postgres` process on the host.
    AllPostgres,
    /// A postmaster and its children: one cluster.
    Cluster(u32),
}

/// CPU seconds used so far by `who`.
fn cpu_seconds(who: Processes) -> f64 {
    if let Processes::Ours = who {
        return stat_cpu(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default()).0;
    }
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((pid, std::fs::read_to_string(e.path().join("stat")).ok()?))
        })
        .filter(|(_, stat)| stat.contains("(postgres)"))
        .map(|(pid, stat)| (pid, stat_cpu(&stat)))
        .filter(|(pid, (_, parent))| match who {
            Processes::Cluster(root) => *pid == root || *parent == root,
            _ => true,
        })
        .map(|(_, (cpu, _))| cpu)
        .sum()
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
    /// The primary's CPU per refresh (every `postgres` process when its postmaster is not
    /// known).
    pg_us: f64,
    /// The replica's, when reads run on one.
    replica_us: f64,
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
    let batch_sizes: Vec<usize> = std::env::var("POSTRUST_BENCH_BATCHES")
        .unwrap_or_else(|_| "1,16".into())
        .split(',')
        .filter_map(|b| b.trim().parse().ok())
        .collect();
    let replica = std::env::var("POSTRUST_BENCH_READ_URL")
        .ok()
        .map(|url| ConnectConfig::from_url(&url).expect("replica URL"));
    let pid = |name: &str| std::env::var(name).ok().and_then(|p| p.parse().ok());
    let primary_cpu =
        pid("POSTRUST_BENCH_PRIMARY_PID").map_or(Processes::AllPostgres, Processes::Cluster);
    let replica_cpu = pid("POSTRUST_BENCH_REPLICA_PID").map(Processes::Cluster);
    // (batch size, reads on the replica)
    let batches: Vec<(usize, bool)> = batch_sizes
        .iter()
        .flat_map(|&b| std::iter::once((b, false)).chain(replica.is_some().then_some((b, true))))
        .collect();
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(512 * 1024)
        .make()
        .expect("executor")
        .run(async move {
            let writer = Client::connect(&config, &ConnectOptions::default())
                .await
                .expect("connect");
            // Commits flushed before they return, as in production (the private cluster
            // defaults to asynchronous commits, which a replica sees only once the WAL
            // writer flushes them).
            writer
                .execute("SET synchronous_commit = on", &[])
                .await
                .expect("synchronous_commit");
            let mut samples: Vec<Vec<Sample>> = batches.iter().map(|_| Vec::new()).collect();
            let mut version = 0;
            for round in 0..rounds {
                for (b, &(batch, on_replica)) in batches.iter().enumerate() {
                    let pool_options = PoolOptions {
                        statement_timeout: Some(Duration::from_secs(10)),
                        ..PoolOptions::default()
                    };
                    let replicas = match (&replica, on_replica) {
                        (Some(replica), true) => vec![(
                            Pool::new(
                                replica.clone(),
                                ConnectOptions::default(),
                                pool_options.clone(),
                            ),
                            "replica".to_owned(),
                        )],
                        _ => Vec::new(),
                    };
                    let registry = Rc::new(RefCell::new(Registry::default()));
                    let runner = Rc::new(Counting {
                        inner: PgRunner {
                            db: Rc::new(Database::new(
                                Pool::new(config.clone(), ConnectOptions::default(), pool_options),
                                replicas,
                                // The server's defaults.
                                Duration::from_millis(50),
                                (Duration::from_millis(100), Duration::from_secs(10)),
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
                        multiplexed: Default::default(),
                        alone: Default::default(),
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
                    let replica_seconds = || replica_cpu.map_or(0.0, cpu_seconds);
                    let metrics = &runner.inner.all_metrics[0];
                    let reads_before =
                        (metrics.replica_reads.get(), metrics.replica_fallbacks.get());
                    let (ours, pg, rep) = (
                        cpu_seconds(Processes::Ours),
                        cpu_seconds(primary_cpu),
                        replica_seconds(),
                    );
                    let started = Instant::now();
                    registry.borrow_mut().mark_table(None, "notes");
                    refreshed(&runner, 2 * live).await;
                    let took = started.elapsed().as_secs_f64();
                    let sample = Sample {
                        per_second: live as f64 / took,
                        ours_us: (cpu_seconds(Processes::Ours) - ours) / live as f64 * 1e6,
                        pg_us: (cpu_seconds(primary_cpu) - pg) / live as f64 * 1e6,
                        replica_us: (replica_seconds() - rep) / live as f64 * 1e6,
                    };
                    eprintln!(
                        "round {} batch {batch}{}: {:.0} refreshes/s, per refresh {:.1} µs ours, \
                         {:.1} µs primary, {:.1} µs replica; reads (a batch is one) on a replica {}, \
                         on the primary instead {}",
                        round + 1,
                        if on_replica { " on the replica" } else { "" },
                        sample.per_second,
                        sample.ours_us,
                        sample.pg_us,
                        sample.replica_us,
                        metrics.replica_reads.get() - reads_before.0,
                        metrics.replica_fallbacks.get() - reads_before.1
                    );
                    samples[b].push(sample);
                    drop(loop_task.cancel());
                    drop(outboxes);
                }
            }
            println!(
                "{live} per-user live queries, one change they all see; median of {rounds} rounds"
            );
            println!(
                "batch  reads on  refreshes/s  µs ours/refresh  µs primary/refresh  µs replica/refresh"
            );
            for ((batch, on_replica), samples) in batches.iter().zip(&mut samples) {
                let median = |f: fn(&Sample) -> f64, samples: &mut Vec<Sample>| {
                    samples.sort_by(|a, b| f(a).total_cmp(&f(b)));
                    f(&samples[samples.len() / 2])
                };
                let per_second = median(|s| s.per_second, samples);
                let ours = median(|s| s.ours_us, samples);
                let pg = median(|s| s.pg_us, samples);
                let rep = median(|s| s.replica_us, samples);
                let reads = if *on_replica { "replica" } else { "primary" };
                println!(
                    "{batch:>5}  {reads:>8}  {per_second:>11.0}  {ours:>15.1}  {pg:>18.1}  {rep:>18.1}"
                );
            }
        });
}
