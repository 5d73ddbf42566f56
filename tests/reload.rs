//! Schema reload: after a migration, a notification on the schema channel or SIGHUP makes
//! the server serve the new catalog, without dropping its connections.

mod support;

use std::time::{Duration, Instant};

use support::server::{Server, exchange};
use support::ws::{Client, Frame, masked};

/// Polls until `query` returns `expected`, or fails after a generous limit.
fn eventually(server: &Server, query: &str, expected: &str) {
    let started = Instant::now();
    loop {
        let out = server.post_graphql(None, query);
        if out.ends_with(expected) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "never got {expected}: {out}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn notify_and_sighup_reload_the_schema_without_dropping_connections() {
    let cluster = support::pg::cluster();
    let url = support::gql::demo_database("");
    let server = Server::start_on(&url, &[]);
    let (mut ws, _) = Client::upgrade(server.connect(), Some("graphql-transport-ws"));
    ws.send_text(r#"{"type":"connection_init"}"#);
    assert_eq!(ws.recv_text(), r#"{"type":"connection_ack"}"#);

    let unknown = server.post_graphql(None, "{ gadgets { id } }");
    assert!(unknown.contains("GRAPHQL_VALIDATION_FAILED"), "{unknown}");

    cluster.psql(
        &url,
        "CREATE TABLE gadgets (id int PRIMARY KEY); INSERT INTO gadgets VALUES (7); \
         NOTIFY postrust_schema;",
    );
    eventually(
        &server,
        "{ gadgets { id } }",
        r#"{"data":{"gadgets":[{"id":7}]}}"#,
    );

    cluster.psql(
        &url,
        "CREATE TABLE gizmos (id int PRIMARY KEY); INSERT INTO gizmos VALUES (9); \
         CREATE TRIGGER gizmos_notify AFTER INSERT OR UPDATE OR DELETE ON gizmos \
         FOR EACH ROW EXECUTE FUNCTION notify_table_change();",
    );
    // SAFETY: plain kill(2) on the server's pid.
    unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGHUP) };
    eventually(
        &server,
        "{ gizmos { id } }",
        r#"{"data":{"gizmos":[{"id":9}]}}"#,
    );

    // The socket opened before both reloads still works, with the new schema.
    ws.send_raw(&masked(0x89, b"still here"));
    assert_eq!(ws.recv(), Frame::Pong(b"still here".to_vec()));
    ws.send_text(
        r#"{"id":"1","type":"subscribe","payload":{"query":"subscription { gizmos { id } }"}}"#,
    );
    assert_eq!(
        ws.recv_text(),
        r#"{"id":"1","type":"next","payload":{"data":{"gizmos":[{"id":9}]}}}"#
    );
}

#[test]
fn a_failed_reload_keeps_the_previous_schema() {
    let cluster = support::pg::cluster();
    let url = support::gql::demo_database("");
    let db = url.rsplit('/').next().unwrap().to_owned();
    let server = Server::start_on(&url, &[("POSTRUST_DB_POOL_SIZE", "1")]);
    // Warm both shards' pools, so queries go on once new connections are refused.
    for _ in 0..8 {
        assert!(
            server
                .post_graphql(None, "{ __typename }")
                .ends_with(r#"{"data":{"__typename":"Query"}}"#)
        );
        server.post_graphql(None, "{ products(limit: 1) { name } }");
    }
    cluster.psql(&url, "CREATE TABLE sprockets (id int PRIMARY KEY)");
    cluster.psql(
        &cluster.url,
        &format!("ALTER DATABASE \"{db}\" WITH ALLOW_CONNECTIONS false"),
    );
    // SAFETY: plain kill(2) on the server's pid.
    unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGHUP) };
    // The reload cannot connect: wait until it has failed, then the old schema still serves.
    let started = Instant::now();
    while !exchange(
        &mut server.connect(),
        b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .contains("postrust_errors_total{code=\"SCHEMA_RELOAD_FAILED\"} 1\n")
    {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the reload never failed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let still_unknown = server.post_graphql(None, "{ sprockets { id } }");
    assert!(
        still_unknown.contains("GRAPHQL_VALIDATION_FAILED"),
        "{still_unknown}"
    );
    let products = server.post_graphql(None, "{ products(limit: 1, orderBy: {id: ASC}) { name } }");
    assert!(
        products.ends_with(r#"{"data":{"products":[{"name":"Widget"}]}}"#),
        "{products}"
    );

    cluster.psql(
        &cluster.url,
        &format!("ALTER DATABASE \"{db}\" WITH ALLOW_CONNECTIONS true"),
    );
    // SAFETY: as above.
    unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGHUP) };
    eventually(
        &server,
        "{ sprockets { id } }",
        r#"{"data":{"sprockets":[]}}"#,
    );
}

/// Identical subscribes reuse one compilation, until a reload: a subscription compiled
/// under the old schema is never handed out under the new one.
#[test]
fn a_reload_forgets_compiled_subscriptions() {
    let cluster = support::pg::cluster();
    let url = support::gql::demo_database(
        "CREATE TABLE widgets (id int PRIMARY KEY, label text); INSERT INTO widgets VALUES (1, 'a'); \
         CREATE TRIGGER widgets_notify AFTER INSERT OR UPDATE OR DELETE ON widgets \
         FOR EACH ROW EXECUTE FUNCTION notify_table_change();",
    );
    let server = Server::start_on(&url, &[]);
    let (mut ws, _) = Client::upgrade(server.connect(), Some("graphql-transport-ws"));
    ws.send_text(r#"{"type":"connection_init"}"#);
    assert_eq!(ws.recv_text(), r#"{"type":"connection_ack"}"#);
    let subscribe = |ws: &mut Client, id: u32| {
        ws.send_text(&format!(
            r#"{{"id":"{id}","type":"subscribe","payload":{{"query":"subscription {{ widgets {{ id label }} }}"}}}}"#
        ));
        let answer = ws.recv_text();
        ws.send_text(&format!(r#"{{"id":"{id}","type":"complete"}}"#));
        answer
    };
    let reused = |server: &Server| {
        support::live::metric(server, "postrust_subscriptions_reused_compiled_total")
    };
    let first = subscribe(&mut ws, 1);
    assert_eq!(
        first,
        r#"{"id":"1","type":"next","payload":{"data":{"widgets":[{"id":1,"label":"a"}]}}}"#
    );
    assert_eq!(reused(&server), 0);
    assert_eq!(subscribe(&mut ws, 2), first.replace("\"1\"", "\"2\""));
    assert_eq!(
        reused(&server),
        1,
        "the second subscribe reused the first's compilation"
    );

    cluster.psql(
        &url,
        "ALTER TABLE widgets RENAME COLUMN label TO title; NOTIFY postrust_schema;",
    );
    // Until this socket's shard has the new schema, the statement compiled under the old
    // one runs (and fails in PostgreSQL, the column being gone); after, the document no
    // longer validates, whatever was compiled before.
    let started = Instant::now();
    let mut id = 3;
    loop {
        let answer = subscribe(&mut ws, id);
        if answer.contains("GRAPHQL_VALIDATION_FAILED") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still served after the reload: {answer}"
        );
        std::thread::sleep(Duration::from_millis(50));
        id += 1;
    }
}
