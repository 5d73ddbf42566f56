//! A private PostgreSQL cluster for integration tests.
//!
//! When `POSTRUST_TEST_DATABASE_URL` is set (the test script starts one cluster for the whole
//! run) that cluster is used. Otherwise the first test that asks starts one with
//! `scripts/pg-private` and it is stopped when the test binary exits.
//!
//! Tests never share a database: [`Cluster::fresh_database`] creates a new one per test.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Cluster {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub url: String,
    /// The cluster directory when this process started the cluster.
    dir: Option<PathBuf>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-private")
}

extern "C" fn stop_cluster() {
    if let Some(Cluster { dir: Some(dir), .. }) = CLUSTER.get() {
        let _ = Command::new(script()).arg("stop").arg(dir).status();
    }
}

/// The cluster for this test binary, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        if let Ok(url) = std::env::var("POSTRUST_TEST_DATABASE_URL") {
            return Cluster { url, dir: None };
        }
        let out = Command::new(script())
            .arg("start")
            .output()
            .expect("run scripts/pg-private");
        assert!(
            out.status.success(),
            "scripts/pg-private start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("utf-8 output");
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("{key} missing from: {text}"))
                .to_owned()
        };
        let cluster = Cluster {
            url: value("POSTRUST_DATABASE_URL="),
            dir: Some(PathBuf::from(value("POSTRUST_PG_DIR="))),
        };
        // SAFETY: registering a plain extern "C" function with no captured state.
        unsafe { libc::atexit(stop_cluster) };
        cluster
    })
}

impl Cluster {
    /// Runs SQL through psql against `url`, panicking with psql's output on failure.
    pub fn psql(&self, url: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                url,
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql failed on {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    }

    /// Creates a new, empty database and returns its URL.
    pub fn fresh_database(&self, prefix: &str) -> String {
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        self.psql(&self.url, &format!("CREATE DATABASE \"{name}\""));
        self.database_url(&name)
    }

    /// The URL of database `name` on this cluster.
    pub fn database_url(&self, name: &str) -> String {
        let (base, _) = self.url.rsplit_once('/').expect("URL has a database");
        format!("{base}/{name}")
    }
}
