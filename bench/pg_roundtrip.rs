//! Round trips per second of a small parameterized SELECT on one connection.
//!
//! Modes, each for `POSTRUST_BENCH_SECONDS` (default 5):
//! - `sequential`: one `query` at a time, each waiting for its answer (one round trip per
//!   statement), what `pgbench -M prepared -c 1` does;
//! - `pipelined`: `pipeline` batches of `POSTRUST_BENCH_BATCH` statements (default 100), each
//!   with its own `Sync` (its own transaction), written before any answer is read;
//! - `pipelined_tx`: the same batches with one `Sync` (one transaction), as pgbench's
//!   `\startpipeline … \endpipeline` sends them;
//! - `query_as`: the role-and-claims call the query engine makes, one at a time, with the
//!   statement timeout the server sets by default;
//! - `query_as_no_timeout`: the same without setting a statement timeout, for its cost;
//!   the two alternate in slices of 100 ms, so that drift on a shared machine hits both.
//!
//! Reads the server from `POSTRUST_DATABASE_URL`; `bench/pg_roundtrip.sh` starts a private
//! cluster and runs this next to pgbench. Prints one `name=statements_per_second` per line.

use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use postrust::pg::{Client, ConnectConfig, ConnectOptions, Statement, SyncMode};

const SQL: &str = "SELECT $1::int + 1";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn sequential(c: &Client, seconds: Duration) -> f64 {
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < seconds {
        let x = (n % 1000).to_string();
        let rows = c.query(SQL, &[Some(&x)]).await.expect("query");
        assert!(rows.value(0, 0).is_some());
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn pipelined(c: &Client, seconds: Duration, batch: usize, mode: SyncMode) -> f64 {
    let values: Vec<String> = (0..batch).map(|i| (i % 1000).to_string()).collect();
    let params: Vec<[Option<&str>; 1]> = values.iter().map(|v| [Some(v.as_str())]).collect();
    let statements: Vec<Statement<'_>> = params
        .iter()
        .map(|p| Statement {
            sql: SQL,
            params: p,
        })
        .collect();
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < seconds {
        let results = c.pipeline(&statements, mode).await.expect("pipeline");
        assert!(results.iter().all(Result::is_ok));
        n += batch as u64;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn query_as(c: &Client, seconds: Duration, timeout: Option<&str>) -> f64 {
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < seconds {
        let x = (n % 1000).to_string();
        let json = c
            .query_as(
                "postgres",
                r#"{"sub":"bench","role":"postgres"}"#,
                timeout,
                "SELECT json_build_object('x', $1::int + 1)::text",
                &[Some(&x)],
            )
            .await
            .expect("query_as");
        assert!(json.is_some());
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; a plain `cargo test --benches` run only checks it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let url = std::env::var("POSTRUST_DATABASE_URL").expect("POSTRUST_DATABASE_URL");
    let config = ConnectConfig::from_url(&url).expect("URL");
    let seconds = Duration::from_secs(env_or("POSTRUST_BENCH_SECONDS", 5));
    let batch = env_or("POSTRUST_BENCH_BATCH", 100) as usize;
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(128 * 1024)
        .make()
        .expect("executor")
        .run(async move {
            let c = Client::connect(&config, &ConnectOptions::default())
                .await
                .expect("connect");
            // Warm up: prepare the statements, fault in the buffers.
            sequential(&c, Duration::from_millis(200)).await;
            println!("sequential={:.0}", sequential(&c, seconds).await);
            let each = pipelined(&c, seconds, batch, SyncMode::Each).await;
            println!("pipelined={each:.0}");
            let tx = pipelined(&c, seconds, batch, SyncMode::Transaction).await;
            println!("pipelined_tx={tx:.0}");
            // As the server sends it, with POSTRUST_STATEMENT_TIMEOUT_MS's default, and
            // without the timeout, in alternating slices.
            let (mut with, mut without) = (0.0, 0.0);
            let slice = Duration::from_millis(100);
            let slices = (seconds.as_millis() / slice.as_millis()).max(1);
            for _ in 0..slices {
                with += query_as(&c, slice, Some("10000")).await;
                without += query_as(&c, slice, None).await;
            }
            println!("query_as={:.0}", with / slices as f64);
            println!("query_as_no_timeout={:.0}", without / slices as f64);
        });
}
