//! Counters, gauges and histograms, served as Prometheus text at `GET /metrics`.
//!
//! Each shard owns one [`ShardMetrics`] and is its only writer, so updates are plain
//! relaxed loads and stores: no locked instructions and no shared cache lines on the hot
//! path (each shard's block is aligned to its own lines). Whichever shard serves
//! `/metrics` reads every shard's block and adds them up; a reading that races a write is
//! at most one update behind. Error counts, which are rare, are kept by code under a mutex.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A number only its shard changes.
#[derive(Debug, Default)]
pub struct Cell(AtomicU64);

impl Cell {
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    pub fn inc(&self) {
        self.add(1);
    }

    /// For gauges.
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// For gauges.
    pub fn dec(&self) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_sub(1),
            Ordering::Relaxed,
        );
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [Cell; BUCKETS.len()],
    count: Cell,
    sum_micros: Cell,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].inc();
        }
        self.count.inc();
        self.sum_micros.add(d.as_micros() as u64);
    }
}

/// One shard's metrics.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ShardMetrics {
    pub connections_open: Cell,
    pub connections_accepted: Cell,
    pub connections_refused: Cell,
    pub websockets_transport: Cell,
    pub websockets_legacy: Cell,
    pub subscriptions_active: Cell,
    /// Subscribes that reused a compiled subscription (`connection::compiled`).
    pub compiled_reused: Cell,
    pub live_queries: Cell,
    pub refreshes: Cell,
    /// Live queries a change left alone because it provably could not alter their result.
    pub refreshes_skipped: Cell,
    /// Refreshes answered by a multiplexed statement (several live queries in one).
    pub refreshes_multiplexed: Cell,
    pub refresh_seconds: Histogram,
    pub results_sent: Cell,
    pub results_replaced: Cell,
    pub fanout_seconds: Histogram,
    pub notifications: Cell,
    /// Change events the leader folded into per-table events because a shard lagged.
    pub changes_coalesced: Cell,
    pub listen_reconnects: Cell,
    pub db_statements: Cell,
    /// Reads that ran on a read replica.
    pub replica_reads: Cell,
    /// Reads that ran on the primary although read replicas are configured (none had
    /// caught up, none was reachable, or the read failed on one).
    pub replica_fallbacks: Cell,
    errors: Mutex<BTreeMap<&'static str, u64>>,
}

impl ShardMetrics {
    /// Counts an error by its stable code (a close code, an auth or GraphQL error code).
    pub fn error(&self, code: &'static str) {
        if let Ok(mut errors) = self.errors.lock() {
            *errors.entry(code).or_default() += 1;
        }
    }
}

/// The sum over shards of one field.
fn total(shards: &[ShardMetrics], field: impl Fn(&ShardMetrics) -> &Cell) -> u64 {
    shards.iter().map(|s| field(s).get()).sum()
}

/// Every shard's metrics, added up, in Prometheus text format.
pub fn render(shards: &[ShardMetrics]) -> String {
    let mut out = String::with_capacity(4096);
    let mut one = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    one(
        "postrust_connections",
        "gauge",
        "Open connections.",
        total(shards, |s| &s.connections_open),
    );
    one(
        "postrust_connections_accepted_total",
        "counter",
        "Connections accepted.",
        total(shards, |s| &s.connections_accepted),
    );
    one(
        "postrust_connections_refused_total",
        "counter",
        "Connections refused at the connection limit.",
        total(shards, |s| &s.connections_refused),
    );
    one(
        "postrust_subscriptions",
        "gauge",
        "Active subscriptions.",
        total(shards, |s| &s.subscriptions_active),
    );
    one(
        "postrust_subscriptions_reused_compiled_total",
        "counter",
        "Subscribes that skipped parsing, validation and compilation: an identical document, operation name and variables were compiled lately (POSTRUST_OPERATION_CACHE_BYTES).",
        total(shards, |s| &s.compiled_reused),
    );
    one(
        "postrust_live_queries",
        "gauge",
        "Live queries (shared by identical subscriptions).",
        total(shards, |s| &s.live_queries),
    );
    one(
        "postrust_refreshes_total",
        "counter",
        "Live query refreshes run.",
        total(shards, |s| &s.refreshes),
    );
    one(
        "postrust_refreshes_skipped_total",
        "counter",
        "Live queries a change did not mark dirty: its rows are outside every root filter.",
        total(shards, |s| &s.refreshes_skipped),
    );
    one(
        "postrust_refreshes_multiplexed_total",
        "counter",
        "Live query refreshes answered by a multiplexed statement: several live queries of one statement, role and claims, differing only in parameters, run as one.",
        total(shards, |s| &s.refreshes_multiplexed),
    );
    one(
        "postrust_results_sent_total",
        "counter",
        "Results delivered to subscriptions.",
        total(shards, |s| &s.results_sent),
    );
    one(
        "postrust_results_replaced_total",
        "counter",
        "Results replaced by a newer one before they were sent.",
        total(shards, |s| &s.results_replaced),
    );
    one(
        "postrust_notifications_total",
        "counter",
        "Change notifications received (with POSTRUST_CHANGE_SOURCE=logical, changes decoded from the stream).",
        total(shards, |s| &s.notifications),
    );
    one(
        "postrust_changes_coalesced_total",
        "counter",
        "Change events folded into per-table events because a shard lagged behind the leader.",
        total(shards, |s| &s.changes_coalesced),
    );
    one(
        "postrust_listen_reconnects_total",
        "counter",
        "Reconnects of the change source: the LISTEN connection, or the replication stream.",
        total(shards, |s| &s.listen_reconnects),
    );
    one(
        "postrust_db_statements_total",
        "counter",
        "Statements sent to PostgreSQL for clients.",
        total(shards, |s| &s.db_statements),
    );
    one(
        "postrust_replica_reads_total",
        "counter",
        "Reads (queries, first results, refreshes) that ran on a read replica.",
        total(shards, |s| &s.replica_reads),
    );
    one(
        "postrust_replica_fallbacks_total",
        "counter",
        "Reads that ran on the primary although read replicas are configured: none had caught up or was reachable, or the read failed on one.",
        total(shards, |s| &s.replica_fallbacks),
    );
    let _ = writeln!(
        out,
        "# HELP postrust_websockets_total WebSocket sessions opened, by sub-protocol.\n\
         # TYPE postrust_websockets_total counter\n\
         postrust_websockets_total{{protocol=\"graphql-transport-ws\"}} {}\n\
         postrust_websockets_total{{protocol=\"graphql-ws\"}} {}",
        total(shards, |s| &s.websockets_transport),
        total(shards, |s| &s.websockets_legacy)
    );
    histogram(
        &mut out,
        "postrust_refresh_seconds",
        "Time to run one live query refresh.",
        shards,
        |s| &s.refresh_seconds,
    );
    histogram(
        &mut out,
        "postrust_fanout_seconds",
        "Time from a refresh's result to its delivery to every subscriber's outbox.",
        shards,
        |s| &s.fanout_seconds,
    );
    let mut errors: BTreeMap<&'static str, u64> = BTreeMap::new();
    for s in shards {
        if let Ok(e) = s.errors.lock() {
            for (code, n) in e.iter() {
                *errors.entry(code).or_default() += n;
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP postrust_errors_total Errors by stable code.\n# TYPE postrust_errors_total counter"
    );
    for (code, n) in errors {
        let _ = writeln!(out, "postrust_errors_total{{code=\"{code}\"}} {n}");
    }
    out
}

fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    shards: &[ShardMetrics],
    field: impl Fn(&ShardMetrics) -> &Histogram,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cumulative = 0;
    for (i, bound) in BUCKETS.iter().enumerate() {
        cumulative += shards
            .iter()
            .map(|s| field(s).buckets[i].get())
            .sum::<u64>();
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let count: u64 = shards.iter().map(|s| field(s).count.get()).sum();
    let sum: u64 = shards.iter().map(|s| field(s).sum_micros.get()).sum();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {}", sum as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {count}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_added_up() {
        let shards: Vec<ShardMetrics> = (0..2).map(|_| ShardMetrics::default()).collect();
        shards[0].connections_open.inc();
        shards[0].connections_open.inc();
        shards[1].connections_open.inc();
        shards[1].connections_open.dec();
        shards[1].error("4403");
        shards[0].error("4403");
        shards[0].error("AUTH_TOKEN_EXPIRED");
        shards[0]
            .refresh_seconds
            .observe(Duration::from_micros(700));
        shards[1].refresh_seconds.observe(Duration::from_secs(3));
        let text = render(&shards);
        assert!(text.contains("\npostrust_connections 2\n"), "{text}");
        assert!(text.contains("postrust_errors_total{code=\"4403\"} 2\n"));
        assert!(text.contains("postrust_errors_total{code=\"AUTH_TOKEN_EXPIRED\"} 1\n"));
        assert!(text.contains("postrust_refresh_seconds_bucket{le=\"0.0005\"} 0\n"));
        assert!(text.contains("postrust_refresh_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("postrust_refresh_seconds_bucket{le=\"2.5\"} 1\n"));
        assert!(text.contains("postrust_refresh_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("postrust_refresh_seconds_count 2\n"));
        assert!(
            text.contains("postrust_refresh_seconds_sum 3.0007\n"),
            "{text}"
        );
    }

    #[test]
    fn shard_blocks_do_not_share_cache_lines() {
        assert_eq!(std::mem::align_of::<ShardMetrics>(), 128);
    }
}
