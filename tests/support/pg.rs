//! A private PostgreSQL cluster for integration tests.
//!
//! When `POSTRUST_TEST_DATABASE_URL` is set (the test script starts one cluster for the whole
//! run) that cluster is used. Otherwise the first test that asks starts one with
//! `scripts/pg-private` and it is stopped when the test binary exits.
//!
//! Tests never share a database: [`Cluster::fresh_database`] creates a new one per test.
//! A test that must change the server itself (authentication rules, stopping it) starts
//! its own with [`Cluster::start_private`] instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

pub struct Cluster {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub url: String,
    /// The cluster directory when this process started the cluster.
    dir: Option<PathBuf>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);
/// Directories of every cluster this process started, stopped at exit.
static STARTED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-private")
}

extern "C" fn stop_clusters() {
    let dirs = STARTED.lock().map(|d| d.clone()).unwrap_or_default();
    for dir in dirs {
        let _ = Command::new(script()).arg("stop").arg(dir).status();
    }
}

/// The cluster for this test binary, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        if let Ok(url) = std::env::var("POSTRUST_TEST_DATABASE_URL") {
            return Cluster { url, dir: None };
        }
        Cluster::start_private()
    })
}

/// Runs `script` with `args`, panicking with its output on failure; returns its stdout.
fn run_script(args: &[&str]) -> String {
    let out = Command::new(script())
        .args(args)
        .output()
        .expect("run scripts/pg-private");
    assert!(
        out.status.success(),
        "scripts/pg-private {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

impl Cluster {
    /// Starts a new cluster of this test's own, stopped when the test binary exits.
    pub fn start_private() -> Cluster {
        Cluster::started(&run_script(&["start"]))
    }

    /// A streaming replica of this cluster (a base backup, `scripts/pg-private replica`)
    /// applying WAL `delay_ms` late, stopped when the test binary exits.
    pub fn start_replica(&self, delay_ms: u64) -> Cluster {
        Cluster::started(&run_script(&["replica", &self.url, &delay_ms.to_string()]))
    }

    /// The cluster whose start `text` (`scripts/pg-private`'s two lines) reports, stopped
    /// when the test binary exits.
    fn started(text: &str) -> Cluster {
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("{key} missing from: {text}"))
                .to_owned()
        };
        let dir = PathBuf::from(value("POSTRUST_PG_DIR="));
        let mut started = STARTED.lock().expect("lock");
        if started.is_empty() {
            // SAFETY: registering a plain extern "C" function with no captured state.
            unsafe { libc::atexit(stop_clusters) };
        }
        started.push(dir.clone());
        Cluster {
            url: value("POSTRUST_DATABASE_URL="),
            dir: Some(dir),
        }
    }

    /// The cluster directory, when this process started the cluster.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Stops the server of cluster directory `dir`, keeping its files, until
    /// [`Cluster::resume_dir`]. Blocks until it is down; takes a path so a test can call it
    /// from a thread of its own while its executor runs.
    pub fn halt_dir(dir: &Path) {
        run_script(&["halt", dir.to_str().expect("UTF-8 path")]);
    }

    /// Starts a halted server again on the same port.
    pub fn resume_dir(dir: &Path) {
        run_script(&["start", dir.to_str().expect("UTF-8 path")]);
    }

    /// Replaces `pg_hba.conf` with `rules` (after trust for the `postgres` superuser, which
    /// the fixture itself uses) and reloads the server.
    pub fn set_hba(&self, rules: &[&str]) {
        let mut text = String::from(
            "local all postgres trust\nhost all postgres 127.0.0.1/32 trust\nlocal all all trust\n",
        );
        for rule in rules {
            text.push_str(rule);
            text.push('\n');
        }
        let path = Path::new(self.owned_dir()).join("data/pg_hba.conf");
        std::fs::write(&path, text).expect("write pg_hba.conf");
        let reloaded = self.psql(&self.url, "SELECT pg_reload_conf()");
        assert_eq!(reloaded, "t");
    }

    fn owned_dir(&self) -> &str {
        self.dir
            .as_deref()
            .and_then(Path::to_str)
            .expect("a cluster this process started")
    }

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
