//! Things going wrong under a running server: PostgreSQL going away (queries fail fast with
//! 503 and a stable code; once it is back they work again and live subscribers converge),
//! and notifications nobody can read (everything is refreshed rather than nothing).

mod support;

use std::time::{Duration, Instant};

use support::pg::Cluster;
use support::server::{Server, exchange};
use support::ws::Client;

fn demo_sql() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("demo");
    ["schema.sql", "data.sql"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_database_outage_gives_503_and_the_server_recovers() {
    let cluster = Cluster::start_private();
    let dir = cluster.dir().expect("a private cluster").to_owned();
    let url = cluster.fresh_database("outage");
    cluster.psql(&url, &demo_sql());
    let server = Server::start_on(
        &url,
        &[
            ("POSTRUST_SHARDS", "1"),
            ("POSTRUST_DB_POOL_TIMEOUT_MS", "500"),
            ("POSTRUST_DB_CONNECT_TIMEOUT_MS", "500"),
            ("POSTRUST_DB_BACKOFF_MAX_MS", "200"),
            ("POSTRUST_REFRESH_RETRY_MS", "100"),
        ],
    );
    let (mut ws, _) = Client::upgrade(server.connect(), Some("graphql-transport-ws"));
    ws.send_text(r#"{"type":"connection_init"}"#);
    assert_eq!(ws.recv_text(), r#"{"type":"connection_ack"}"#);
    ws.send_text(
        r#"{"id":"1","type":"subscribe","payload":{"query":"subscription { orders { id } }"}}"#,
    );
    let before = ws.recv_text().matches(r#""id":"#).count() - 1;

    Cluster::halt_dir(&dir);
    let started = Instant::now();
    let down = server.post_graphql(None, "{ orders { id } }");
    assert!(down.starts_with("HTTP/1.1 503 "), "{down}");
    assert!(down.contains(r#""code":"SERVICE_UNAVAILABLE""#), "{down}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "failed fast, no hang"
    );

    Cluster::resume_dir(&dir);
    let started = Instant::now();
    loop {
        if server
            .post_graphql(None, "{ __typename products(limit: 1) { id } }")
            .starts_with("HTTP/1.1 200 ")
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "queries never recovered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.psql(
        &url,
        "INSERT INTO orders (customer_id, total) VALUES (1, 1.00)",
    );
    // The live query converges: by the notification, or by the refresh of everything that
    // follows the LISTEN connection's return.
    let started = Instant::now();
    loop {
        let next = ws.recv_text();
        if next.matches(r#""id":"#).count() - 1 == before + 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never converged: {next}"
        );
    }
}

fn refreshes(server: &Server) -> u64 {
    let metrics = exchange(
        &mut server.connect(),
        b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("postrust_refreshes_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no refresh count in {metrics}"))
}

#[test]
fn an_unreadable_notification_refreshes_every_live_query() {
    let url = support::gql::demo_database("");
    let server = Server::start_on(&url, &[("POSTRUST_SHARDS", "1")]);
    // The refresh of everything when LISTEN is in place comes before the counting.
    support::live::wait_until_listening(&url);
    let (mut ws, _) = Client::upgrade(server.connect(), Some("graphql-transport-ws"));
    ws.send_text(r#"{"type":"connection_init"}"#);
    assert_eq!(ws.recv_text(), r#"{"type":"connection_ack"}"#);
    // Two live queries on different tables, each refreshed once to start.
    for (id, table) in [("1", "orders"), ("2", "products")] {
        ws.send_text(&format!(
            r#"{{"id":"{id}","type":"subscribe","payload":{{"query":"subscription {{ {table} {{ id }} }}"}}}}"#
        ));
        assert!(ws.recv_text().contains(r#""type":"next""#));
    }
    assert_eq!(refreshes(&server), 2);
    support::pg::cluster().psql(&url, "NOTIFY table_change, 'this is not JSON'");
    let started = Instant::now();
    while refreshes(&server) < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nothing was refreshed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
