//! Fixtures shared by the integration tests: a private PostgreSQL, the demo database and the
//! GraphQL engine over it, the real server, a raw WebSocket client, and helpers for running
//! our PostgreSQL client on a glommio executor. Each test binary uses a different part of
//! them, so items unused by one binary are expected.
#![allow(dead_code)]

pub mod docs;
pub mod fake_pg;
pub mod gql;
pub mod live;
pub mod logs;
pub mod pg;
pub mod relay;
pub mod server;
pub mod ws;

use std::future::Future;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};
use postrust::pg::{Client, ConnectConfig, ConnectOptions, PoolOptions};

/// Long enough for anything a test waits on; reaching it means a hang.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Runs `body` on a fresh glommio executor on this thread. The io_uring buffer stays small
/// so that parallel tests fit under the 8 MiB locked-memory limit.
pub fn run<F: Future<Output = T>, T>(body: F) -> T {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(128 * 1024)
        .make()
        .expect("glommio executor")
        .run(body)
}

/// Awaits `f`, failing the test if it takes longer than `limit`: a guard against hangs,
/// not a performance assertion.
pub async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    futures_lite::future::or(f, async {
        glommio::timer::sleep(limit).await;
        panic!("{what} did not finish within {limit:?}")
    })
    .await
}

pub fn config(url: &str) -> ConnectConfig {
    ConnectConfig::from_url(url).expect("test URL")
}

pub async fn connect(url: &str) -> Client {
    Client::connect(&config(url), &ConnectOptions::default())
        .await
        .expect("connect")
}

/// Pool settings that retry quickly, so recovery tests take milliseconds.
pub fn fast_pool_options(size: usize) -> PoolOptions {
    PoolOptions {
        size,
        timeout: Duration::from_secs(10),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        statement_timeout: None,
    }
}
