//! Changes from logical replication (`POSTRUST_CHANGE_SOURCE=logical`): each test starts a
//! cluster of its own at `wal_level = logical`, with a publication and no change trigger,
//! and checks that subscribers converge through inserts, updates, deletes, a bulk
//! transaction, TRUNCATE and a dropped stream, and under the convergence test's random
//! subscribers and writes; that a commit is delivered only once other sessions can see it;
//! and that a setup that cannot stream stops the start with a reason.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::gql::{demo_file, psql};
use support::live::{
    INIT, Rng, Subscribers, Writer, fresh_results, metric, random_operation, subscribe_message,
};
use support::pg::{Cluster, cluster};
use support::server::{Server, free_port};
use support::ws::{Client, Frame};

/// A cluster of this test's own at `wal_level = logical`.
fn logical_cluster() -> Cluster {
    let cluster = Cluster::start_private();
    cluster.psql(&cluster.url, "ALTER SYSTEM SET wal_level = logical");
    let dir = cluster.dir().expect("a private cluster has a directory");
    Cluster::halt_dir(dir);
    Cluster::resume_dir(dir);
    assert_eq!(cluster.psql(&cluster.url, "SHOW wal_level"), "logical");
    cluster
}

/// `items` keeps the default replica identity (the key at most), `tags` sends whole old
/// rows (FULL); `notes` is left out of the publication, and `picked` is in it only with a
/// row filter, which keeps back the changes of other rows.
const SCHEMA: &str = "
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE tags (id int PRIMARY KEY, label text NOT NULL);
ALTER TABLE tags REPLICA IDENTITY FULL;
CREATE TABLE notes (id int PRIMARY KEY, body text);
CREATE TABLE picked (id int PRIMARY KEY);
CREATE PUBLICATION postrust FOR TABLE items, tags, picked WHERE (id > 10);
";

/// A logical cluster, a database on it with [`SCHEMA`], and the server on that database.
/// The cluster is returned to keep it running.
fn started(prefix: &str) -> (Cluster, String, Server) {
    let cluster = logical_cluster();
    let url = cluster.fresh_database(prefix);
    psql(&url, SCHEMA);
    let server = start(&url);
    (cluster, url, server)
}

/// The subscription most tests watch: item 1.
const ITEM_ONE: &str = "subscription { items(filter: { id: { eq: 1 } }) { id name } }";

fn start(url: &str) -> Server {
    Server::start_on(
        url,
        &[
            ("POSTRUST_CHANGE_SOURCE", "logical"),
            ("POSTRUST_DB_BACKOFF_MAX_MS", "300"),
        ],
    )
}

/// One subscription on a socket of its own.
struct Subscriber {
    client: Client,
    last: Value,
}

impl Subscriber {
    /// Subscribes to `query` and reads its first result.
    fn open(server: &Server, query: &str) -> Subscriber {
        let (mut client, _) = Client::upgrade(server.connect(), Some("graphql-transport-ws"));
        client.send_text(INIT);
        assert_eq!(client.recv_text(), r#"{"type":"connection_ack"}"#);
        client.send_text(&subscribe_message("s", query));
        let mut sub = Subscriber {
            client,
            last: Value::Null,
        };
        sub.last = sub.next();
        sub
    }

    /// The next message: a result's `data`, or the whole message when it is no result.
    fn next(&mut self) -> Value {
        loop {
            match self.client.recv() {
                Frame::Text(t) => {
                    let m: Value = serde_json::from_str(&t).unwrap();
                    return match m["type"].as_str() {
                        Some("next") if m["payload"].get("errors").is_none() => {
                            m["payload"]["data"].clone()
                        }
                        _ => m,
                    };
                }
                Frame::Ping(_) | Frame::Pong(_) => {}
                other => panic!("expected a result, got {other:?}; last {}", self.last),
            }
        }
    }

    /// Reads results until one equals `want` (each read waits at most the socket's timeout).
    fn until(&mut self, want: Value) {
        while self.last != want {
            self.last = self.next();
        }
    }
}

#[test]
fn subscribers_converge_on_changes_streamed_without_triggers() {
    let (_cluster, url, server) = started("logical");
    let mut one = Subscriber::open(&server, ITEM_ONE);
    let mut bulk = Subscriber::open(
        &server,
        "subscription { items(filter: { id: { gt: 1000 } }, orderBy: { id: ASC }) { id } }",
    );
    let mut tag = Subscriber::open(
        &server,
        r#"subscription { tags(filter: { label: { eq: "x" } }) { id label } }"#,
    );
    assert_eq!(one.last, json!({ "items": [] }));

    psql(&url, "INSERT INTO items VALUES (1, 'a')");
    one.until(json!({ "items": [{ "id": 1, "name": "a" }] }));
    psql(&url, "UPDATE items SET name = 'b' WHERE id = 1");
    one.until(json!({ "items": [{ "id": 1, "name": "b" }] }));
    // The key changes: with the default identity the old row is not sent, so the change
    // refreshes, and the row leaves the result.
    psql(&url, "UPDATE items SET id = 2 WHERE id = 1");
    one.until(json!({ "items": [] }));
    psql(&url, "UPDATE items SET id = 1 WHERE id = 2");
    one.until(json!({ "items": [{ "id": 1, "name": "b" }] }));
    psql(&url, "DELETE FROM items WHERE id = 1");
    one.until(json!({ "items": [] }));

    // One transaction of 300 rows, more than POSTRUST_CHANGE_QUEUE's default holds.
    psql(
        &url,
        "INSERT INTO items SELECT g, 'bulk' FROM generate_series(1001, 1300) g",
    );
    let ids: Vec<Value> = (1001..=1300).map(|id| json!({ "id": id })).collect();
    bulk.until(json!({ "items": ids }));
    psql(&url, "TRUNCATE items");
    bulk.until(json!({ "items": [] }));

    // Whole old rows (REPLICA IDENTITY FULL) are tested against the filter: a tag that
    // never matched is skipped, a tag leaving the filter is not.
    psql(&url, "INSERT INTO tags VALUES (1, 'x')");
    tag.until(json!({ "tags": [{ "id": 1, "label": "x" }] }));
    let skipped = metric(&server, "postrust_refreshes_skipped_total");
    psql(
        &url,
        "INSERT INTO tags VALUES (2, 'z'); UPDATE tags SET label = 'w' WHERE id = 2",
    );
    psql(&url, "UPDATE tags SET label = 'y' WHERE id = 1");
    tag.until(json!({ "tags": [] }));
    assert!(
        metric(&server, "postrust_refreshes_skipped_total") >= skipped + 2,
        "the two changes of tag 2 were decided in process"
    );

    // A table outside the publication, or in it with a row filter, cannot be subscribed
    // to.
    for table in ["notes", "picked"] {
        let refused = Subscriber::open(&server, &format!("subscription {{ {table} {{ id }} }}"));
        let refused = refused.last;
        assert_eq!(refused["type"], "error", "{refused}");
        assert_eq!(
            refused["payload"][0]["extensions"]["code"], "NO_CHANGE_TRIGGER",
            "{refused}"
        );
        let message = refused["payload"][0]["message"].as_str().unwrap_or("");
        assert!(message.contains("publication"), "{message}");
    }

    // The stream is cut and a write lands while it is down: after the reconnect every live
    // query is refreshed, so the write is not lost.
    let reconnects = metric(&server, "postrust_listen_reconnects_total");
    psql(
        &url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'walsender'",
    );
    psql(&url, "INSERT INTO items VALUES (1, 'while away')");
    one.until(json!({ "items": [{ "id": 1, "name": "while away" }] }));
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&server, "postrust_listen_reconnects_total") == reconnects {
        assert!(Instant::now() < deadline, "the stream never came back");
        std::thread::sleep(Duration::from_millis(20));
    }
    psql(&url, "UPDATE items SET name = 'back' WHERE id = 1");
    one.until(json!({ "items": [{ "id": 1, "name": "back" }] }));
}

/// Polls `sql` (one boolean) on `url` until it is true.
fn wait_for(url: &str, sql: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while psql(url, sql) != "t" {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_commit_is_delivered_once_other_sessions_see_it() {
    let (_cluster, url, server) = started("logical_visible");
    let mut one = Subscriber::open(&server, ITEM_ONE);

    // A synchronous standby that never answers: a commit is flushed (and streamed to the
    // slot) but stays invisible to other sessions until its wait is cancelled.
    psql(
        &url,
        "ALTER SYSTEM SET synchronous_standby_names = 'nobody'; SELECT pg_reload_conf()",
    );
    let writer_url = url.clone();
    let writer = std::thread::spawn(move || {
        Command::new("psql")
            .args(["-X", "-q", &writer_url, "-c"])
            // The test clusters commit asynchronously; this writer waits.
            .arg(
                "SET application_name = 'stalled'; SET synchronous_commit = on; \
                 INSERT INTO items VALUES (1, 'late')",
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run psql")
    });
    wait_for(
        &url,
        "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'stalled' \
         AND wait_event = 'SyncRep')",
        "the writer waits for the standby",
    );
    wait_for(
        &url,
        "SELECT bool_and(sent_lsn >= pg_current_wal_flush_lsn()) FROM pg_stat_replication",
        "the commit was streamed",
    );
    // The server had the commit long enough to refresh on it; a refresh now would find
    // nothing, and nothing would come later to correct it.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        psql(&url, "SELECT count(*) FROM items"),
        "0",
        "the row is not visible yet"
    );
    // What the server waits for when it cannot name the transaction (a new slot's start):
    // the writer is among the transactions that may have committed unseen.
    let stalled: u64 = psql(
        &url,
        "SELECT backend_xid FROM pg_stat_activity WHERE application_name = 'stalled'",
    )
    .parse()
    .expect("the writer's transaction id");
    let doubtful = support::run(async {
        let client = support::connect(&url).await;
        postrust::logical::unfinished_transactions(&client).await
    })
    .expect("unfinished_transactions");
    assert!(
        doubtful.iter().any(|x| x & 0xffff_ffff == stalled),
        "{stalled} among {doubtful:?}"
    );
    psql(
        &url,
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'stalled'",
    );
    writer.join().expect("writer");
    one.until(json!({ "items": [{ "id": 1, "name": "late" }] }));
    psql(
        &url,
        "ALTER SYSTEM RESET synchronous_standby_names; SELECT pg_reload_conf()",
    );
}

/// Starts the server and expects it to stop at once; returns what it logged.
fn failed_start(url: &str, env: &[(&str, &str)]) -> String {
    // `timeout` ends a server that started after all, which then fails the test.
    let out = Command::new("timeout")
        .arg("20")
        .arg(env!("CARGO_BIN_EXE_postrust"))
        .env("POSTRUST_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("POSTRUST_DATABASE_URL", url)
        .env("POSTRUST_SHARDS", "1")
        .env("POSTRUST_CHANGE_SOURCE", "logical")
        .env("POSTRUST_LOG", "error")
        .envs(env.iter().copied())
        .output()
        .expect("run postrust");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && out.status.code() != Some(124),
        "the server did not stop at start ({}): {log}",
        out.status
    );
    log
}

#[test]
fn a_database_that_cannot_stream_stops_the_start_with_the_reason() {
    // The shared test cluster runs at the default wal_level, replica.
    let url = cluster().fresh_database("logical_level");
    psql(&url, SCHEMA);
    let log = failed_start(&url, &[]);
    assert!(log.contains("needs wal_level = logical"), "{log}");

    let logical = logical_cluster();
    let url = logical.fresh_database("logical_publication");
    psql(&url, "CREATE TABLE items (id int PRIMARY KEY)");
    let log = failed_start(&url, &[("POSTRUST_PUBLICATION", "nosuch")]);
    assert!(
        log.contains("publication \"nosuch\" does not exist"),
        "{log}"
    );

    // A publication that leaves out deletes would never report one.
    psql(
        &url,
        "CREATE PUBLICATION postrust FOR ALL TABLES WITH (publish = 'insert, update')",
    );
    let log = failed_start(&url, &[]);
    assert!(log.contains("leaves out some kinds of change"), "{log}");

    // A login without REPLICATION could not open the stream.
    psql(
        &url,
        "ALTER PUBLICATION postrust SET (publish = 'insert, update, delete, truncate'); \
         CREATE ROLE plain LOGIN",
    );
    let plain = url.replacen("postgres://postgres@", "postgres://plain@", 1);
    let log = failed_start(&plain, &[]);
    assert!(
        log.contains("needs a login that may replicate, and plain may not"),
        "{log}"
    );
}

/// The random subscribers and writes of the convergence test, over the demo schema with
/// its triggers dropped: `orders` sends whole old rows (so changes are skipped by filter),
/// the other tables their keys at most.
#[test]
fn random_subscribers_converge_under_random_writes() {
    let cluster = logical_cluster();
    let url = cluster.fresh_database("logical_random");
    psql(
        &url,
        &format!(
            "{}\n{}\n{}",
            demo_file("schema.sql"),
            demo_file("data.sql"),
            "DROP TRIGGER users_notify ON users; DROP TRIGGER customers_notify ON customers;
             DROP TRIGGER products_notify ON products; DROP TRIGGER orders_notify ON orders;
             DROP TRIGGER order_items_notify ON order_items;
             ALTER TABLE orders REPLICA IDENTITY FULL;
             CREATE PUBLICATION postrust FOR ALL TABLES;"
        ),
    );
    let server = start(&url);
    let mut rng = Rng::from_env("logical convergence");
    let ops: Vec<String> = (0..120).map(|_| random_operation(&mut rng)).collect();
    let subs = Subscribers::open(&server, 6, &ops);
    let mut writer = Writer::new(Rng::from_env("writes"));
    for _ in 0..40 {
        psql(&url, &writer.script(50));
    }
    let expected = fresh_results(&server, &ops);
    let wrong = subs.converge(&expected, Duration::from_secs(15));
    for (id, op, got, want) in wrong.iter().take(3) {
        eprintln!("{id}: {op}\n  got:  {got}\n  want: {want}");
    }
    assert_eq!(wrong.len(), 0, "of {} subscribers", ops.len());
    let changed = subs.changed();
    assert!(changed > ops.len() / 2, "only {changed} results changed");
    assert!(
        metric(&server, "postrust_refreshes_skipped_total") > 0,
        "changes were tested against filters"
    );
    subs.close();
}

/// With `synchronous_standby_names = '*'` PostgreSQL counts the server's own stream as a
/// synchronous standby: a commit then waits for the server to report the WAL it received.
/// The server reports promptly (a millisecond after WAL arrives, and at every keepalive of
/// the WAL sender's), so commits go through and subscribers converge.
#[test]
fn a_commit_waiting_for_the_stream_as_its_synchronous_standby_goes_through() {
    let (_cluster, url, server) = started("logical_sync");
    let mut one = Subscriber::open(&server, ITEM_ONE);
    psql(
        &url,
        "ALTER SYSTEM SET synchronous_standby_names = '*'; SELECT pg_reload_conf()",
    );
    wait_for(
        &url,
        "SELECT EXISTS (SELECT FROM pg_stat_replication WHERE sync_state = 'sync')",
        "the stream counts as a synchronous standby",
    );
    for i in 0..5 {
        let started = Instant::now();
        psql(
            &url,
            &format!(
                "SET synchronous_commit = on; \
                 INSERT INTO items VALUES (1, 'sync {i}') \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name"
            ),
        );
        // A liveness bound: a stream that never reported would hold the commit until
        // wal_sender_timeout (60 s) dropped it.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "commit {i} waited {:?} for the stream's report",
            started.elapsed()
        );
        one.until(json!({ "items": [{ "id": 1, "name": format!("sync {i}") }] }));
    }
    psql(
        &url,
        "ALTER SYSTEM RESET synchronous_standby_names; SELECT pg_reload_conf()",
    );
}

/// A stream that fails on the server's side (its publication dropped under it) is lost,
/// tried again with backoff, and once it streams again everything is refreshed: a write
/// made meanwhile reaches the subscriber.
#[test]
fn a_stream_that_fails_is_tried_again_and_catches_up() {
    let (_cluster, url, server) = started("logical_dropped");
    let mut one = Subscriber::open(&server, ITEM_ONE);
    let reconnects = metric(&server, "postrust_listen_reconnects_total");
    psql(&url, "DROP PUBLICATION postrust");
    // Decoding this change fails on the server: the publication is gone.
    psql(&url, "INSERT INTO items VALUES (1, 'unpublished')");
    psql(&url, "CREATE PUBLICATION postrust FOR TABLE items, tags");
    one.until(json!({ "items": [{ "id": 1, "name": "unpublished" }] }));
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(&server, "postrust_listen_reconnects_total") == reconnects {
        assert!(
            Instant::now() < deadline,
            "the stream was never lost and resumed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    psql(&url, "UPDATE items SET name = 'streamed' WHERE id = 1");
    one.until(json!({ "items": [{ "id": 1, "name": "streamed" }] }));
}
