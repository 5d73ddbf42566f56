//! Live subscriptions at their edges: a row too large for NOTIFY, a client that stops
//! reading, and everything freed when subscriptions, sockets and the server end.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::gql::{demo_database, psql};
use support::live::{INIT, metric, subscribe_message};
use support::server::Server;
use support::ws::{Client, Frame, masked};

/// An acknowledged graphql-transport-ws socket with subscriptions `(id, query)`.
fn subscribed(server: &Server, subscriptions: &[(&str, &str)]) -> Client {
    let (mut c, _) = Client::upgrade(server.connect(), Some("graphql-transport-ws"));
    c.send_text(INIT);
    assert_eq!(c.recv_text(), r#"{"type":"connection_ack"}"#);
    for (id, query) in subscriptions {
        c.send_text(&subscribe_message(id, query));
    }
    c
}

/// The next result on `c`: (subscription id, data).
fn next(c: &mut Client) -> (String, Value) {
    loop {
        match c.recv() {
            Frame::Text(t) => {
                let m: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(m["type"], "next", "{t}");
                return (
                    m["id"].as_str().unwrap().to_owned(),
                    m["payload"]["data"].clone(),
                );
            }
            Frame::Ping(_) | Frame::Pong(_) => {}
            other => panic!("expected a result, got {other:?}"),
        }
    }
}

/// Waits until `f` holds, checking every 20 ms; panics after `limit` (a hang guard).
fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_row_over_8000_bytes_with_the_project_trigger_updates_subscribers() {
    let url = demo_database("DROP TRIGGER orders_notify ON orders;");
    let install = Command::new(env!("CARGO_BIN_EXE_postrust"))
        .args(["triggers", "install", "orders"])
        .env("POSTRUST_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(install.status.success(), "{install:?}");
    let server = Server::start_on(&url, &[]);
    let mut c = subscribed(
        &server,
        &[(
            "big",
            r#"subscription { orders(filter: { status: { eq: "pending" } }, orderBy: { id: ASC }) { id note } }"#,
        )],
    );
    assert_eq!(next(&mut c).1["orders"][0]["note"], "Leave at the door");
    let big = "x".repeat(20_000);
    psql(
        &url,
        &format!("UPDATE orders SET note = '{big}' WHERE id = 1"),
    );
    let (_, data) = next(&mut c);
    assert_eq!(data["orders"][0]["note"], big.as_str());
    // The payload carried only the key (`truncated`), so no filter could skip it; an
    // insert of a large row outside the filter still refreshes and the write succeeds.
    psql(
        &url,
        &format!(
            "INSERT INTO orders (customer_id, total, status, note) VALUES (1, 1, 'pending', '{big}y')"
        ),
    );
    let (_, data) = next(&mut c);
    assert_eq!(data["orders"].as_array().unwrap().len(), 3);
}

/// The resident memory of process `pid`, in kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// A psql session kept open, so a write costs a round trip rather than a process.
struct Session(std::process::Child);

impl Session {
    fn open(url: &str) -> Session {
        let child = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", url])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Session(child)
    }

    fn run(&mut self, sql: &str) {
        let stdin = self.0.stdin.as_mut().unwrap();
        writeln!(stdin, "{sql}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// A server with `send_timeout`, a client subscribed to ~200 kB results that never reads
/// them, and a healthy client subscribed to one order's total.
fn stalled_and_healthy(send_timeout: &str) -> (String, Server, Client, Client) {
    // Ten orders with 20 kB notes make each result of the stalled subscription ~200 kB.
    // The docs trigger cannot send rows that large, so it is off while they are added.
    let url = demo_database(
        "ALTER TABLE orders DISABLE TRIGGER orders_notify;
         INSERT INTO orders (customer_id, total, note)
           SELECT 1, n, repeat('n', 20000) FROM generate_series(1, 10) n;
         ALTER TABLE orders ENABLE TRIGGER orders_notify;",
    );
    let server = Server::start_on(&url, &[("POSTRUST_SEND_TIMEOUT_MS", send_timeout)]);
    let stalled = subscribed(
        &server,
        &[(
            "all",
            "subscription { orders(orderBy: { id: ASC }) { id total note } }",
        )],
    );
    let mut healthy = subscribed(
        &server,
        &[(
            "one",
            "subscription { orders(filter: { id: { eq: 1 } }) { total } }",
        )],
    );
    assert_eq!(next(&mut healthy).1["orders"][0]["total"], "44.48");
    (url, server, stalled, healthy)
}

/// Changes order 1's total to `i`, which changes both results, and checks that the healthy
/// client receives it before the next write.
fn write_and_receive(session: &mut Session, healthy: &mut Client, i: u32) {
    session.run(&format!("UPDATE orders SET total = {i} WHERE id = 1;"));
    let (id, data) = next(healthy);
    assert_eq!(id, "one");
    assert_eq!(data["orders"][0]["total"], format!("{i}.00"));
}

#[test]
fn a_client_that_stops_reading_costs_bounded_memory_and_others_keep_every_update() {
    // A send timeout far longer than the test, so the client stays stalled throughout.
    let (url, server, stalled, mut healthy) = stalled_and_healthy("120000");
    let mut session = Session::open(&url);
    // The stalled client's socket buffers fill during the first writes.
    for i in 1..=40 {
        write_and_receive(&mut session, &mut healthy, i);
    }
    let before = rss_kb(server.pid());
    for i in 41..=140 {
        write_and_receive(&mut session, &mut healthy, i);
    }
    let after = rss_kb(server.pid());
    eprintln!(
        "server VmRSS {before} kB -> {after} kB over 100 results of ~200 kB for a stalled client"
    );
    assert_eq!(
        metric(&server, "postrust_subscriptions"),
        2,
        "still stalled, not dropped"
    );
    // Queueing every result would hold ~20 MB more; one pending result per subscription
    // holds a few hundred kB.
    assert!(
        after < before + 4 * 1024,
        "VmRSS grew from {before} kB to {after} kB"
    );
    drop(stalled);
}

#[test]
fn a_socket_that_does_not_drain_within_the_send_timeout_is_dropped() {
    let (url, server, mut stalled, mut healthy) = stalled_and_healthy("300");
    let mut session = Session::open(&url);
    // Writes go on, each received by the healthy client, until the stalled one is gone.
    let mut i = 0;
    while metric(&server, "postrust_subscriptions") == 2 {
        i += 1;
        assert!(i < 2000, "the stalled socket was never dropped");
        write_and_receive(&mut session, &mut healthy, i);
    }
    write_and_receive(&mut session, &mut healthy, i + 1);
    // What the stalled client had buffered then ends with the connection, without a
    // close frame (one could not have reached it).
    stalled
        .stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut results = 0;
    while let Some(Frame::Text(_)) = stalled.recv_frame_lenient() {
        results += 1;
    }
    assert!(results > 0, "the stalled client had been sent results");
    assert_eq!(
        stalled.recv_frame_lenient(),
        None,
        "the connection is closed"
    );
}

#[test]
fn complete_closed_sockets_and_shutdown_free_every_live_query() {
    let url = demo_database("");
    let server = Server::start_on(&url, &[]);
    let pending = r#"subscription { orders(filter: { status: { eq: "pending" } }) { id } }"#;
    let users = "subscription { users { id name } }";
    let mut a = subscribed(&server, &[("1", pending), ("2", pending), ("3", users)]);
    for _ in 0..3 {
        next(&mut a);
    }
    let gauges = || {
        (
            metric(&server, "postrust_subscriptions"),
            metric(&server, "postrust_live_queries"),
        )
    };
    assert_eq!(
        gauges(),
        (3, 2),
        "two identical subscriptions share a live query"
    );

    a.send_text(r#"{"id":"1","type":"complete"}"#);
    eventually(
        Duration::from_secs(10),
        "complete frees a subscription",
        || gauges() == (2, 2),
    );
    a.send_text(r#"{"id":"2","type":"complete"}"#);
    eventually(
        Duration::from_secs(10),
        "the last subscriber frees the live query",
        || gauges() == (1, 1),
    );
    // The socket goes away without a close handshake.
    a.stream.shutdown(std::net::Shutdown::Both).unwrap();
    eventually(
        Duration::from_secs(10),
        "a closed socket frees the rest",
        || gauges() == (0, 0),
    );

    // No refreshes for nobody: writes to the tables the freed queries read run none. A
    // canary on another table, written last, shows the changes went all the way through.
    let mut canary = subscribed(&server, &[("c", "subscription { customers { name } }")]);
    next(&mut canary);
    let refreshes = metric(&server, "postrust_refreshes_total");
    psql(
        &url,
        "UPDATE orders SET status = 'pending'; UPDATE users SET name = name || '!'; \
         UPDATE customers SET name = name || '!' WHERE id = 1;",
    );
    assert_eq!(next(&mut canary).1["customers"][0]["name"], "Acme Corp!");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        metric(&server, "postrust_refreshes_total"),
        refreshes + 1,
        "only the canary was refreshed"
    );

    // Shutdown: the subscriber is told the server is going away and the process exits.
    let mut b = subscribed(&server, &[("p", pending)]);
    next(&mut b);
    let closer = std::thread::spawn(move || {
        let code = b.recv_close().0;
        b.send_raw(&masked(0x88, &code.to_be_bytes()));
        code
    });
    let status = server.terminate();
    assert_eq!(closer.join().unwrap(), 1001);
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_live_query_that_fails_for_good_frees_its_subscriptions() {
    let url = demo_database("");
    let server = Server::start_on(&url, &[]);
    let mut c = subscribed(
        &server,
        &[
            ("1", "subscription { users { id email } }"),
            ("2", "subscription { users { id email } }"),
        ],
    );
    next(&mut c);
    next(&mut c);
    // The next refresh cannot run any more: the column it reads is gone.
    psql(
        &url,
        "ALTER TABLE users DROP COLUMN email; UPDATE users SET name = name || '!';",
    );
    for _ in 0..2 {
        let m: Value = serde_json::from_str(&c.recv_text()).unwrap();
        assert_eq!(m["type"], "error", "{m}");
    }
    eventually(
        Duration::from_secs(10),
        "the failed live query is freed",
        || {
            (
                metric(&server, "postrust_subscriptions"),
                metric(&server, "postrust_live_queries"),
            ) == (0, 0)
        },
    );
    // The ids are free again.
    c.send_text(&subscribe_message("1", "subscription { users { id } }"));
    assert_eq!(next(&mut c).0, "1");
}
