//! Hostile clients against the real server: each attack that once crashed the process,
//! froze a shard, held the pool or smuggled a request is answered with a bounded, clear
//! error, while another client on the same shard (one shard here) keeps being served:
//! `/health` answers and a bystander subscriber still gets the next change.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use support::gql::{demo_database, psql};
use support::server::{Server, exchange};
use support::ws::Client;

/// The server on its own demo database, on one shard so that every client shares it.
fn start(env: &[(&str, &str)]) -> (Server, String) {
    let url = demo_database(
        "CREATE VIEW slow_orders AS SELECT o.* FROM orders o, pg_sleep(30) s;\n\
         CREATE VIEW nap_orders AS SELECT o.* FROM orders o, pg_sleep(1) s;",
    );
    let mut all = vec![("POSTRUST_SHARDS", "1")];
    all.extend_from_slice(env);
    (Server::start_on(&url, &all), url)
}

fn ws(server: &Server) -> Client {
    let (mut ws, _) = Client::upgrade(server.connect(), Some("graphql-transport-ws"));
    ws.send_text(r#"{"type":"connection_init"}"#);
    assert_eq!(ws.recv_text(), r#"{"type":"connection_ack"}"#);
    ws
}

fn subscribe(ws: &mut Client, id: &str, query: &str) {
    let message = serde_json::json!({"id": id, "type": "subscribe", "payload": {"query": query}});
    ws.send_text(&message.to_string());
}

/// A subscriber with nothing to do with the attack, on the same shard.
struct Bystander {
    ws: Client,
    writes: u32,
}

impl Bystander {
    fn join(server: &Server) -> Bystander {
        let mut ws = ws(server);
        subscribe(
            &mut ws,
            "b",
            "subscription { customers(filter: {id: {eq: 1}}) { id name } }",
        );
        let first = ws.recv_text();
        assert!(first.contains(r#""type":"next""#), "{first}");
        Bystander { ws, writes: 0 }
    }

    /// The server still serves: `/health` answers, and a commit reaches this subscriber.
    fn still_served(&mut self, server: &Server, url: &str) {
        let health = exchange(
            &mut server.connect(),
            b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert!(health.starts_with("HTTP/1.1 200 "), "{health}");
        self.writes += 1;
        let name = format!("bystander {}", self.writes);
        psql(
            url,
            &format!("UPDATE customers SET name = '{name}' WHERE id = 1"),
        );
        loop {
            let next = self.ws.recv_text();
            if next.contains(&name) {
                return;
            }
        }
    }
}

fn post(server: &Server, body: &str) -> String {
    let req = format!(
        "POST /graphql HTTP/1.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    exchange(&mut server.connect(), req.as_bytes())
}

fn post_query(server: &Server, query: &str) -> String {
    post(server, &serde_json::json!({ "query": query }).to_string())
}

/// Statements of the database running `pattern` right now.
fn running(url: &str, pattern: &str) -> usize {
    psql(
        url,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
             AND datname = current_database() AND query LIKE '%{pattern}%' \
             AND pid <> pg_backend_pid()"
        ),
    )
    .trim()
    .parse()
    .unwrap()
}

/// Waits up to ten seconds for no statement reading `view` to run any more.
fn none_running(url: &str, view: &str, after: &str) {
    for _ in 0..200 {
        if running(url, view) == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let activity = psql(
        url,
        "SELECT pid, state, query FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    panic!("a statement reading {view} still runs after {after}:\n{activity}");
}

#[test]
fn deep_nesting_is_refused_before_parsing_over_http_and_websocket() {
    let (server, url) = start(&[]);
    let mut bystander = Bystander::join(&server);

    // 1,600 levels of lists once overflowed a shard's stack and aborted the process.
    let lists = format!(
        "{{ products(filter: {{id: {{in: {}1{}}}}}) {{ id }} }}",
        "[".repeat(1600),
        "]".repeat(1600)
    );
    let answer = post_query(&server, &lists);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.contains(r#""code":"INPUT_TOO_DEEP""#), "{answer}");
    let objects = format!(
        "{{ orders(filter: {}{{id: {{eq: 1}}}}{}) {{ id }} }}",
        "{not: ".repeat(1200),
        "}".repeat(1200)
    );
    assert!(post_query(&server, &objects).contains("INPUT_TOO_DEEP"));
    // Deep variables, in a JSON body.
    let body = format!(
        r#"{{"query":"query ($f: [Int!]) {{ products(filter: {{id: {{in: $f}}}}) {{ id }} }}","variables":{{"f":{}1{}}}}}"#,
        "[".repeat(900),
        "]".repeat(900)
    );
    let answer = post(&server, &body);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("INPUT_TOO_DEEP"), "{answer}");

    // Over WebSocket: the deep document is an error for that operation only; a deep
    // message is a protocol error (4400).
    let mut attacker = ws(&server);
    subscribe(&mut attacker, "deep", &format!("subscription {lists}"));
    let error = attacker.recv_text();
    assert!(error.contains(r#""type":"error""#), "{error}");
    assert!(error.contains("INPUT_TOO_DEEP"), "{error}");
    let deep_message = format!(
        r#"{{"id":"x","type":"subscribe","payload":{{"query":"{{ __typename }}","variables":{{"v":{}1{}}}}}}}"#,
        "[".repeat(900),
        "]".repeat(900)
    );
    attacker.send_text(&deep_message);
    let (code, reason) = attacker.recv_close();
    assert_eq!(code, 4400, "{reason}");

    // Within the limit, the same shapes run as usual, on a shard's real stack.
    let within = format!(
        "{{ orders(filter: {}{{id: {{eq: 1}}}}{}) {{ id }} }}",
        "{not: ".repeat(28),
        "}".repeat(28)
    );
    let answer = post_query(&server, &within);
    assert!(answer.contains(r#"{"data":{"orders":["#), "{answer}");
    bystander.still_served(&server, &url);
}

#[test]
fn a_like_filter_with_many_percent_signs_does_not_freeze_the_shard() {
    let (server, url) = start(&[]);
    let mut bystander = Bystander::join(&server);
    let mut attacker = ws(&server);
    let pattern = format!("{}b", "%a".repeat(24));
    subscribe(
        &mut attacker,
        "like",
        &format!("subscription {{ orders(filter: {{note: {{like: \"{pattern}\"}}}}) {{ id }} }}"),
    );
    let first = attacker.recv_text();
    assert!(first.contains(r#""orders":[]"#), "{first}");
    // Each insert is tested against the pattern in the server: a backtracking matcher
    // would take longer than the universe's age on this note.
    psql(
        &url,
        &format!(
            "INSERT INTO orders (customer_id, total, note) VALUES (1, 1, '{}')",
            "a".repeat(200)
        ),
    );
    bystander.still_served(&server, &url);
    // A matching row is delivered: the filter still decides.
    psql(
        &url,
        &format!(
            "INSERT INTO orders (customer_id, total, note) VALUES (1, 1, '{}b')",
            "a".repeat(30)
        ),
    );
    let next = attacker.recv_text();
    assert!(next.contains(r#""orders":[{"id":"#), "{next}");
}

#[test]
fn a_fragment_bomb_is_refused_quickly_and_errors_are_capped() {
    let (server, url) = start(&[]);
    let mut bystander = Bystander::join(&server);
    // Each fragment spreads the next twice, and the last one closes a cycle.
    let mut doc = String::from("{ users { id } }");
    for i in 0..40 {
        doc.push_str(&format!(
            " fragment F{i} on Users {{ ...F{} ...F{} }}",
            i + 1,
            i + 1
        ));
    }
    doc.push_str(" fragment F40 on Users { ...F0 }");
    let answer = post_query(&server, &doc);
    assert!(answer.contains("Cannot spread fragment"), "{answer}");
    let spread = doc.replacen("{ users { id } }", "{ users { ...F0 } }", 1);
    assert!(post_query(&server, &spread).contains("QUERY_TOO_COMPLEX"));

    // 5,000 copies of one mistake: 100 errors and a last one saying so.
    let repeated = format!("{{ users {} {{ id }} }}", "@nosuch ".repeat(5000));
    let answer = post_query(&server, &repeated);
    assert_eq!(answer.matches(r#""message":"#).count(), 101, "{answer}");
    assert!(answer.contains("error limit reached"));
    bystander.still_served(&server, &url);
}

#[test]
fn a_chunked_body_is_refused_and_never_read_as_another_request() {
    let (server, _url) = start(&[]);
    // Behind a proxy that decodes chunked bodies, this body is data; read as the next
    // request it would be a request the proxy never saw.
    let smuggled = "GET /metrics HTTP/1.1\r\n\r\n";
    let request = format!(
        "GET /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
        smuggled.len()
    );
    let answer = exchange(&mut server.connect(), request.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 501 "), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
}

#[test]
fn statements_past_the_timeout_end_with_a_stable_code_not_endless_retries() {
    let (server, url) = start(&[("POSTRUST_STATEMENT_TIMEOUT_MS", "300")]);
    let mut bystander = Bystander::join(&server);
    let answer = post_query(&server, "{ napOrders { id } }");
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.contains(r#""code":"STATEMENT_TIMEOUT""#), "{answer}");

    let mut ws = ws(&server);
    subscribe(&mut ws, "nap", "subscription { napOrders { id } }");
    let error = ws.recv_text();
    assert!(error.contains(r#""type":"error""#), "{error}");
    assert!(error.contains("STATEMENT_TIMEOUT"), "{error}");
    bystander.still_served(&server, &url);
}

#[test]
fn a_database_side_statement_timeout_also_ends_the_live_query() {
    let url = demo_database("CREATE VIEW nap_orders AS SELECT o.* FROM orders o, pg_sleep(1) s;");
    psql(
        &url,
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET statement_timeout = 300', \
         current_database()); END $$",
    );
    // The server sets none: the database's holds.
    let server = Server::start_on(
        &url,
        &[
            ("POSTRUST_SHARDS", "1"),
            ("POSTRUST_STATEMENT_TIMEOUT_MS", "0"),
        ],
    );
    let mut ws = ws(&server);
    subscribe(&mut ws, "nap", "subscription { napOrders { id } }");
    let error = ws.recv_text();
    assert!(error.contains("STATEMENT_TIMEOUT"), "{error}");
}

#[test]
fn statements_nobody_waits_for_are_cancelled() {
    let (server, url) = start(&[("POSTRUST_STATEMENT_TIMEOUT_MS", "60000")]);
    // An HTTP client that leaves before its answer.
    let body = serde_json::json!({ "query": "{ slowOrders { id } }" }).to_string();
    let mut client = server.connect();
    client
        .write_all(
            format!(
                "POST /graphql HTTP/1.1\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    while running(&url, "slow_orders") == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(client);
    none_running(&url, "slow_orders", "the HTTP client left");

    // A subscription completed while its first refresh runs.
    let mut ws = ws(&server);
    subscribe(&mut ws, "slow", "subscription { slowOrders { id } }");
    while running(&url, "slow_orders") == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    ws.send_text(r#"{"id":"slow","type":"complete"}"#);
    none_running(&url, "slow_orders", "complete");

    // A WebSocket query whose connection goes.
    subscribe(&mut ws, "q", "query { slowOrders { id } }");
    while running(&url, "slow_orders") == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = ws.stream.shutdown(std::net::Shutdown::Both);
    none_running(&url, "slow_orders", "the WebSocket closed");
}

#[test]
fn slow_live_queries_of_one_client_leave_the_pool_to_others() {
    let (server, url) = start(&[("POSTRUST_STATEMENT_TIMEOUT_MS", "60000")]);
    let mut bystander = Bystander::join(&server);
    // Four slow live queries, as many as the shard's pool has connections.
    let mut attacker = ws(&server);
    for i in 0..4 {
        subscribe(
            &mut attacker,
            &format!("slow{i}"),
            &format!("subscription {{ slowOrders(limit: {}) {{ id }} }}", i + 1),
        );
    }
    while running(&url, "slow_orders") == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Another client's new subscription and query are answered, not queued behind them
    // (the socket's read timeout, 10 s, is a third of one slow statement).
    let mut other = ws(&server);
    subscribe(
        &mut other,
        "cheap",
        "subscription { products(limit: 1) { id } }",
    );
    let first = other.recv_text();
    assert!(first.contains(r#""products":[{"id":"#), "{first}");
    let answer = post_query(&server, "{ customers(limit: 1) { id } }");
    assert!(
        answer.contains(r#"{"data":{"customers":[{"id":"#),
        "{answer}"
    );
    bystander.still_served(&server, &url);
    let share = running(&url, "slow_orders");
    let activity = psql(
        &url,
        "SELECT pid, state, query FROM pg_stat_activity WHERE datname = current_database()",
    );
    assert!(share <= 2, "one client's share, not {share}:\n{activity}");

    // The attacker leaving cancels what it started.
    let _ = attacker.stream.shutdown(std::net::Shutdown::Both);
    let mut rest = Vec::new();
    let _ = attacker.stream.read_to_end(&mut rest);
    none_running(&url, "slow_orders", "the attacker left");
}
