//! Reads on streaming replicas (`POSTRUST_DB_READ_URL`): each test starts a primary of its
//! own and a replica of it by base backup, and checks that no result is ever older than
//! a commit that came before it, with a replica in step, one that applies WAL late
//! (`recovery_min_apply_delay`) and one that goes down.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::gql::{demo_file, psql};
use support::live::{INIT, metric, post_graphql, subscribe_message};
use support::pg::Cluster;
use support::server::Server;
use support::ws::{Client, Frame};

/// A primary with the demo database, a replica of it applying WAL `delay_ms` late, and
/// the demo database's URL on each.
fn primary_and_replica(delay_ms: u64) -> (Cluster, Cluster, String, String) {
    let primary = Cluster::start_private();
    let url = primary.fresh_database("replicas");
    psql(
        &url,
        &format!("{}\n{}", demo_file("schema.sql"), demo_file("data.sql")),
    );
    let replica = primary.start_replica(delay_ms);
    let name = url.rsplit_once('/').unwrap().1.to_owned();
    let replica_url = replica.database_url(&name);
    (primary, replica, url, replica_url)
}

const QUERY: &str = "{ orders(filter: { id: { eq: 1 } }) { total } }";

/// Order 1's total in a `data` object.
fn total(data: &Value) -> f64 {
    let total = &data["orders"][0]["total"];
    total
        .as_str()
        .and_then(|t| t.parse().ok())
        .or_else(|| total.as_f64())
        .unwrap_or_else(|| panic!("no total in {data}"))
}

/// Order 1's total as `POST /graphql` reads it now.
fn query_total(server: &Server) -> f64 {
    let body = serde_json::json!({ "query": QUERY }).to_string();
    let text = post_graphql(server, &body);
    let json = text
        .split_once("\r\n\r\n")
        .map_or(text.as_str(), |(_, b)| b);
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {text}"));
    total(&v["data"])
}

/// A subscriber to order 1's total.
struct Subscriber(Client);

impl Subscriber {
    fn open(server: &Server) -> Subscriber {
        let (mut c, _) = Client::upgrade(server.connect(), Some("graphql-transport-ws"));
        c.send_text(INIT);
        assert_eq!(c.recv_text(), r#"{"type":"connection_ack"}"#);
        c.send_text(&subscribe_message("t", &format!("subscription {QUERY}")));
        Subscriber(c)
    }

    /// The next total sent.
    fn next(&mut self) -> f64 {
        loop {
            match self.0.recv() {
                Frame::Text(t) => {
                    let m: Value = serde_json::from_str(&t).unwrap();
                    assert_eq!(m["type"], "next", "{t}");
                    return total(&m["payload"]["data"]);
                }
                Frame::Ping(_) | Frame::Pong(_) => {}
                other => panic!("expected a result, got {other:?}"),
            }
        }
    }

    /// Reads results until `want` arrives, checking that none goes back in time.
    fn until(&mut self, want: f64, mut last: f64) -> f64 {
        while last != want {
            let got = self.next();
            assert!(
                got >= last,
                "a result older than one already sent: {got} after {last}"
            );
            last = got;
        }
        last
    }
}

/// Totals the tests write: above the demo's, so every write moves order 1's total up.
const BASE: u32 = 1000;

fn set_total(url: &str, value: u32) {
    psql(
        url,
        &format!("UPDATE orders SET total = {value} WHERE id = 1"),
    );
}

#[test]
fn reads_run_on_a_replica_in_step_and_on_the_primary_when_it_goes_down() {
    let (_primary, replica, url, replica_url) = primary_and_replica(0);
    let server = Server::start_on(
        &url,
        &[
            ("POSTRUST_DB_READ_URL", replica_url.as_str()),
            ("POSTRUST_DB_BACKOFF_MAX_MS", "300"),
        ],
    );
    let mut sub = Subscriber::open(&server);
    let mut last = sub.next();
    for value in BASE + 1..=BASE + 20 {
        set_total(&url, value);
        // A query right after the commit sees it: the read waited for the replica to
        // replay past the primary's position, or ran on the primary.
        assert_eq!(query_total(&server), f64::from(value));
        last = sub.until(f64::from(value), last);
    }
    assert!(
        metric(&server, "postrust_replica_reads_total") > 0,
        "reads ran on the replica"
    );

    // The replica goes down: reads fall back to the primary, nothing is lost.
    Cluster::halt_dir(replica.dir().unwrap());
    let before = metric(&server, "postrust_replica_fallbacks_total");
    for value in BASE + 21..=BASE + 25 {
        set_total(&url, value);
        assert_eq!(query_total(&server), f64::from(value));
        last = sub.until(f64::from(value), last);
    }
    assert!(metric(&server, "postrust_replica_fallbacks_total") > before);

    // Back up: after its pause the replica serves reads again.
    Cluster::resume_dir(replica.dir().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let on_replica = metric(&server, "postrust_replica_reads_total");
    let mut value = BASE + 25;
    while metric(&server, "postrust_replica_reads_total") == on_replica {
        assert!(
            Instant::now() < deadline,
            "the replica was never used again"
        );
        value += 1;
        set_total(&url, value);
        assert_eq!(query_total(&server), f64::from(value));
        last = sub.until(f64::from(value), last);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_replica_that_applies_late_never_serves_a_result_older_than_its_commit() {
    // The replica applies every commit 1.5 s late; a read waits at most 20 ms for it.
    let (_primary, _replica, url, replica_url) = primary_and_replica(1500);
    let server = Server::start_on(
        &url,
        &[
            ("POSTRUST_DB_READ_URL", replica_url.as_str()),
            ("POSTRUST_DB_READ_WAIT_MS", "20"),
            ("POSTRUST_DB_BACKOFF_MIN_MS", "50"),
            ("POSTRUST_DB_BACKOFF_MAX_MS", "200"),
        ],
    );
    let mut sub = Subscriber::open(&server);
    let mut last = sub.next();
    for value in BASE + 1..=BASE + 15 {
        set_total(&url, value);
        assert_eq!(
            query_total(&server),
            f64::from(value),
            "a query after a commit saw an older database"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every result the subscriber got went forward, and it ends at the last commit.
    last = sub.until(f64::from(BASE + 15), last);
    assert_eq!(last, f64::from(BASE + 15));
    assert!(
        metric(&server, "postrust_replica_fallbacks_total") > 0,
        "the replica was tried and left out"
    );

    // Once writes stop, the replica catches up and serves reads again.
    let deadline = Instant::now() + Duration::from_secs(20);
    let on_replica = metric(&server, "postrust_replica_reads_total");
    while metric(&server, "postrust_replica_reads_total") == on_replica {
        assert!(
            Instant::now() < deadline,
            "the replica was never used again"
        );
        assert_eq!(query_total(&server), f64::from(BASE + 15));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_read_waits_for_a_replica_a_little_behind() {
    // The replica applies every commit 30 ms late; reads may wait 2 s for it.
    let (_primary, _replica, url, replica_url) = primary_and_replica(30);
    let server = Server::start_on(
        &url,
        &[
            ("POSTRUST_DB_READ_URL", replica_url.as_str()),
            ("POSTRUST_DB_READ_WAIT_MS", "2000"),
        ],
    );
    let before = metric(&server, "postrust_replica_reads_total");
    for value in BASE + 1..=BASE + 10 {
        set_total(&url, value);
        assert_eq!(query_total(&server), f64::from(value));
    }
    // Each query found the replica behind its commit and waited for it rather than
    // leaving it out (a connection slower than 100 ms may still send one to the primary).
    let on_replica = metric(&server, "postrust_replica_reads_total") - before;
    assert!(
        on_replica >= 5,
        "{on_replica} of 10 queries ran on the replica"
    );
}
