//! The HTTP surface of the real server over real sockets.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::server::{Server, exchange};

fn status_of(response: &str) -> u16 {
    response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

#[test]
fn health_and_error_statuses() {
    let server = Server::start(&[]);
    let ask = |req: &str| {
        let out = exchange(&mut server.connect(), req.as_bytes());
        assert!(!out.is_empty(), "no response to {req:?}");
        out
    };

    let health = ask("GET /health HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(status_of(&health), 200);
    assert!(health.ends_with("{\"status\":\"ok\"}"), "{health}");

    assert_eq!(
        status_of(&ask("GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n")),
        404
    );
    let not_allowed = ask("DELETE /graphql HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(status_of(&not_allowed), 405);
    assert!(not_allowed.contains("Allow: GET, POST, OPTIONS\r\n"));
    let upgrade = ask("GET /graphql HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(status_of(&upgrade), 426);
    assert!(upgrade.contains("Upgrade: websocket\r\n"));
    assert_eq!(status_of(&ask("BLAH\r\n\r\n")), 400);
    let old_version = ask(
        "GET /graphql HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    );
    assert_eq!(status_of(&old_version), 426);
    assert!(old_version.contains("Sec-WebSocket-Version: 13\r\n"));
    let no_key = ask(
        "GET /graphql HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(status_of(&no_key), 400);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    let out = exchange(
        &mut s,
        b"GET /health HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    assert_eq!(out.matches("HTTP/1.1 404 Not Found").count(), 1, "{out}");
}

#[test]
fn size_limits_on_head_and_body() {
    let server = Server::start(&[
        ("POSTRUST_MAX_HEADER_BYTES", "512"),
        ("POSTRUST_MAX_BODY_BYTES", "100"),
    ]);
    let big_head = format!("GET /health HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "a".repeat(600));
    assert_eq!(
        status_of(&exchange(&mut server.connect(), big_head.as_bytes())),
        431
    );
    // An endless head is cut off at the limit without waiting for its end.
    let endless = format!("GET /health HTTP/1.1\r\nX-Pad: {}", "a".repeat(600));
    assert_eq!(
        status_of(&exchange(&mut server.connect(), endless.as_bytes())),
        431
    );
    let big_body = format!(
        "POST /graphql HTTP/1.1\r\nContent-Length: 101\r\n\r\n{}",
        "x".repeat(101)
    );
    assert_eq!(
        status_of(&exchange(&mut server.connect(), big_body.as_bytes())),
        413
    );
    let chunked = "POST /graphql HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(
        status_of(&exchange(&mut server.connect(), chunked.as_bytes())),
        501
    );
}

#[test]
fn slow_clients_are_dropped_at_the_request_deadline() {
    let server = Server::start(&[("POSTRUST_REQUEST_TIMEOUT_MS", "300")]);

    // Slow loris: a head that trickles in and never completes.
    let mut s = server.connect();
    let started = Instant::now();
    s.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let _ = s.write_all(b"X-A: b\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert_eq!(status_of(&out), 408, "{out}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A connection that never sends anything is closed without a response.
    let mut idle = server.connect();
    let mut out = Vec::new();
    idle.read_to_end(&mut out).unwrap();
    assert!(out.is_empty());
}

#[test]
fn graphql_over_http_post_and_get() {
    let server = Server::start(&[]);
    let post = |content_type: &str, body: &str| {
        let req = format!(
            "POST /graphql HTTP/1.1\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        exchange(&mut server.connect(), req.as_bytes())
    };
    let out = post(
        "application/json",
        r#"{"query":"query Q($s: String) { orders(filter: { status: { eq: $s } }, orderBy: { id: ASC }) { id status } }","variables":{"s":"pending"},"operationName":"Q"}"#,
    );
    assert_eq!(status_of(&out), 200, "{out}");
    assert!(
        out.ends_with(
            r#"{"data":{"orders":[{"id":1,"status":"pending"},{"id":3,"status":"pending"}]}}"#
        ),
        "{out}"
    );
    let invalid = post("application/json", r#"{"query":"{ orders { nope } }"}"#);
    assert_eq!(status_of(&invalid), 200, "{invalid}");
    assert!(
        invalid.contains(r#""code":"GRAPHQL_VALIDATION_FAILED""#),
        "{invalid}"
    );
    assert_eq!(status_of(&post("text/plain", "{ users { id } }")), 415);
    assert_eq!(status_of(&post("application/json", "{not json")), 400);
    assert_eq!(
        status_of(&post("application/json", r#"{"variables":{}}"#)),
        400
    );
    let subscription = post(
        "application/json",
        r#"{"query":"subscription { users { id } }"}"#,
    );
    assert_eq!(status_of(&subscription), 400, "{subscription}");

    let get = exchange(
        &mut server.connect(),
        b"GET /graphql?query=%7B%20products(orderBy%3A%20%7Bid%3A%20ASC%7D%2C%20limit%3A%201)%20%7B%20name%20%7D%20%7D HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert!(
        get.ends_with(r#"{"data":{"products":[{"name":"Widget"}]}}"#),
        "{get}"
    );
    // Variables in the URL: an object is used, anything else is a bad request.
    let with_variables = exchange(
        &mut server.connect(),
        b"GET /graphql?query=query%20(%24n%3A%20Int)%20%7B%20products(orderBy%3A%20%7Bid%3A%20ASC%7D%2C%20limit%3A%20%24n)%20%7B%20name%20%7D%20%7D&variables=%7B%22n%22%3A1%7D HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert!(
        with_variables.ends_with(r#"{"data":{"products":[{"name":"Widget"}]}}"#),
        "{with_variables}"
    );
    let bad_variables = exchange(
        &mut server.connect(),
        b"GET /graphql?query=%7B__typename%7D&variables=%5B1%5D HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&bad_variables), 400, "{bad_variables}");
    assert!(
        bad_variables.contains(r#""code":"BAD_REQUEST""#),
        "{bad_variables}"
    );
    let typename = exchange(
        &mut server.connect(),
        b"GET /graphql?query=%7B__typename%7D HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert!(
        typename.ends_with(r#"{"data":{"__typename":"Query"}}"#),
        "{typename}"
    );
}

#[test]
fn a_taken_port_stops_start_up_with_a_message() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_postrust"))
        .env("POSTRUST_LISTEN", &addr)
        .env("POSTRUST_SHARDS", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

#[test]
fn a_second_server_on_the_same_port_refuses_to_start() {
    let first = Server::start(&[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_postrust"))
        .env("POSTRUST_LISTEN", first.addr.to_string())
        .env("POSTRUST_SHARDS", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Address already in use"), "{err}");
}

#[test]
fn a_bad_setting_stops_start_up_naming_the_variable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_postrust"))
        .env("POSTRUST_MAX_MESSAGE_BYTES", "big")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "POSTRUST_MAX_MESSAGE_BYTES=\"big\" is not valid: expected a non-negative integer"
        ),
        "{err}"
    );
}

#[test]
fn connections_over_the_limit_get_503() {
    let server = Server::start(&[("POSTRUST_SHARDS", "1"), ("POSTRUST_MAX_CONNECTIONS", "2")]);
    // Two connections held open (the health check's connection has closed by now).
    let held: Vec<_> = (0..2).map(|_| server.connect()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let refused = exchange(&mut server.connect(), b"GET /health HTTP/1.1\r\n\r\n");
    assert_eq!(status_of(&refused), 503, "{refused}");
    assert!(refused.contains("Retry-After: 1\r\n"));
    drop(held);
    std::thread::sleep(Duration::from_millis(100));
    let ok = exchange(
        &mut server.connect(),
        b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&ok), 200, "room again once they closed: {ok}");
}

#[test]
fn connections_over_the_per_shard_limit_get_503() {
    let server = Server::start(&[
        ("POSTRUST_SHARDS", "1"),
        ("POSTRUST_MAX_CONNECTIONS_PER_SHARD", "1"),
    ]);
    let held = server.connect();
    std::thread::sleep(Duration::from_millis(100));
    let refused = exchange(&mut server.connect(), b"GET /health HTTP/1.1\r\n\r\n");
    assert_eq!(status_of(&refused), 503, "{refused}");
    drop(held);
}

#[test]
fn metrics_count_open_connections() {
    let server = Server::start(&[("POSTRUST_SHARDS", "1")]);
    let held: Vec<_> = (0..3).map(|_| server.connect()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let metrics = exchange(
        &mut server.connect(),
        b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    // The three held, plus the one asking.
    assert!(metrics.contains("\npostrust_connections 4\n"), "{metrics}");
    assert!(metrics.contains("# TYPE postrust_connections gauge\n"));
    drop(held);
}

#[test]
fn browsers_of_listed_origins_may_call_and_others_may_not() {
    let server = Server::start(&[("POSTRUST_CORS_ORIGINS", "https://app.example.com")]);
    let ask = |req: &str| exchange(&mut server.connect(), req.as_bytes());

    let preflight = ask(
        "OPTIONS /graphql HTTP/1.1\r\nOrigin: https://app.example.com\r\n\
         Access-Control-Request-Method: POST\r\n\
         Access-Control-Request-Headers: content-type, authorization\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&preflight), 204, "{preflight}");
    assert_eq!(
        preflight.matches("Access-Control-Allow-Origin: ").count(),
        1,
        "one grant (browsers refuse two): {preflight}"
    );
    assert!(preflight.contains("Access-Control-Allow-Origin: https://app.example.com\r\n"));
    assert!(preflight.contains("Access-Control-Allow-Headers: content-type, authorization\r\n"));
    assert!(
        !preflight.contains("Content-Length"),
        "a 204 has no body: {preflight}"
    );

    let body = r#"{"query":"{ __typename }"}"#;
    let post = |origin: &str| {
        ask(&format!(
            "POST /graphql HTTP/1.1\r\nOrigin: {origin}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
    };
    let allowed = post("https://app.example.com");
    assert!(allowed.contains("Access-Control-Allow-Origin: https://app.example.com\r\n"));
    assert!(allowed.contains("Vary: Origin\r\n"));
    let other = post("https://evil.example");
    assert!(!other.contains("Access-Control-Allow-Origin"), "{other}");

    let refused = ask(
        "OPTIONS /graphql HTTP/1.1\r\nOrigin: https://evil.example\r\n\
         Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&refused), 403, "{refused}");

    // WebSocket upgrades: a listed origin and a client that names none get in.
    let upgrade = |origin: &str| {
        ask(&format!(
            "GET /graphql HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: graphql-transport-ws\r\n{origin}\r\n"
        ))
    };
    assert_eq!(status_of(&upgrade("Origin: https://evil.example\r\n")), 403);
    let own = format!("Origin: http://{0}\r\nHost: {0}\r\n", server.addr);
    assert_ne!(
        status_of(&upgrade(&own)),
        403,
        "a page of the server itself (the playground) may open a WebSocket"
    );
    let mut s = server.connect();
    s.write_all(
        b"GET /graphql HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Origin: https://app.example.com\r\n\r\n",
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
}

#[test]
fn without_a_list_no_cors_header_is_sent() {
    let server = Server::start(&[]);
    let preflight = exchange(
        &mut server.connect(),
        b"OPTIONS /graphql HTTP/1.1\r\nOrigin: https://app.example.com\r\n\
          Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&preflight), 204, "{preflight}");
    assert!(preflight.contains("Allow: GET, POST, OPTIONS\r\n"));
    assert!(!preflight.contains("Access-Control"), "{preflight}");
}

#[test]
fn a_single_row_view_is_one_object_null_when_empty_and_an_error_when_not_single() {
    let cluster = support::pg::cluster();
    let db = cluster.fresh_database("single");
    cluster.psql(
        &db,
        "CREATE TABLE settings (id int PRIMARY KEY, theme text); \
         INSERT INTO settings VALUES (1, 'dark'); \
         CREATE VIEW current_settings AS SELECT theme FROM settings; \
         COMMENT ON VIEW current_settings IS E'The one settings row.\\n@postrust single-row'",
    );
    let server = Server::start_on(&db, &[("POSTRUST_SUBSCRIBE_WITHOUT_TRIGGERS", "true")]);
    let body = |response: String| response.split("\r\n\r\n").nth(1).unwrap().to_owned();
    assert_eq!(
        body(server.post_graphql(None, "{ currentSettings { theme } }")),
        r#"{"data":{"currentSettings":{"theme":"dark"}}}"#
    );
    // The type says so: a nullable object, no list, no arguments, no aggregate.
    assert_eq!(
        body(server.post_graphql(
            None,
            r#"{ __type(name: "Query") { fields { name args { name } type { kind name } } } }"#
        )),
        r#"{"data":{"__type":{"fields":[{"name":"currentSettings","args":[],"type":{"kind":"OBJECT","name":"CurrentSettings"}},{"name":"settings","args":[{"name":"filter"},{"name":"orderBy"},{"name":"limit"},{"name":"offset"}],"type":{"kind":"NON_NULL","name":null}},{"name":"settingsAggregate","args":[{"name":"filter"}],"type":{"kind":"NON_NULL","name":null}}]}}}"#
    );
    cluster.psql(&db, "DELETE FROM settings");
    assert_eq!(
        body(server.post_graphql(None, "{ currentSettings { theme } }")),
        r#"{"data":{"currentSettings":null}}"#
    );
    cluster.psql(&db, "INSERT INTO settings VALUES (1, 'dark'), (2, 'light')");
    let response = body(server.post_graphql(None, "{ currentSettings { theme } }"));
    assert!(
        response.contains(r#""code":"NOT_SINGLE_ROW""#) && !response.contains("dark"),
        "a second row is an error, not an arbitrary pick: {response}"
    );
}
