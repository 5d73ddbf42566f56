//! WebSocket framing and both GraphQL sub-protocols against the real server, over raw
//! sockets, for every close code and limit the server enforces.

mod support;

use std::time::{Duration, Instant};

use support::server::Server;
use support::ws::{Client, Frame, masked};

const INIT: &str = r#"{"type":"connection_init","payload":{"authorization":"Bearer x"}}"#;
const SUBSCRIBE: &str =
    r#"{"id":"1","type":"subscribe","payload":{"query":"subscription { users { id } }"}}"#;

fn transport(server: &Server) -> Client {
    Client::upgrade(server.connect(), Some("graphql-transport-ws")).0
}

fn acknowledged(server: &Server) -> Client {
    let mut c = transport(server);
    c.send_text(INIT);
    assert_eq!(c.recv_text(), r#"{"type":"connection_ack"}"#);
    c
}

/// Sends `text` on a fresh acknowledged socket and returns the close it earns.
fn close_after(server: &Server, frames: &[Vec<u8>]) -> (u16, String) {
    let mut c = acknowledged(server);
    for f in frames {
        c.send_raw(f);
    }
    let closed = c.recv_close();
    c.finish_close(closed.0);
    closed
}

#[test]
fn handshake_negotiates_the_sub_protocol() {
    let server = Server::start(&[]);
    let (_, head) = Client::upgrade(server.connect(), Some("graphql-ws, graphql-transport-ws"));
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(
        head.contains("Sec-WebSocket-Protocol: graphql-transport-ws\r\n"),
        "{head}"
    );
    let (_, head) = Client::upgrade(server.connect(), Some("graphql-ws"));
    assert!(
        head.contains("Sec-WebSocket-Protocol: graphql-ws\r\n"),
        "{head}"
    );
}

#[test]
fn a_missing_or_unknown_sub_protocol_is_refused_with_4406() {
    let server = Server::start(&[]);
    for offer in [None, Some("mqtt")] {
        let (mut c, head) = Client::upgrade(server.connect(), offer);
        assert!(!head.contains("Sec-WebSocket-Protocol"), "{head}");
        assert_eq!(c.recv_close(), (4406, "Subprotocol not acceptable".into()));
        c.finish_close(4406);
    }
}

#[test]
fn graphql_transport_ws_session() {
    let server = Server::start(&[]);
    let mut c = acknowledged(&server);
    c.send_text(r#"{"type":"ping","payload":{"n":1}}"#);
    assert_eq!(c.recv_text(), r#"{"type":"pong","payload":{"n":1}}"#);
    c.send_text(r#"{"type":"pong"}"#);
    // WebSocket-level ping, answered with a pong frame carrying the same bytes.
    c.send_raw(&masked(0x89, b"are you there"));
    assert_eq!(c.recv(), Frame::Pong(b"are you there".to_vec()));
    c.send_text(SUBSCRIBE);
    let first = c.recv_text();
    assert!(
        first.starts_with(r#"{"id":"1","type":"next","payload":{"data":{"users":[{"id":"#),
        "{first}"
    );
    // The id is taken while the subscription runs: a second subscribe with it is 4409 (in
    // the close-code test); after `complete` it may be used again.
    c.send_text(r#"{"id":"1","type":"complete"}"#);
    c.send_text(SUBSCRIBE);
    assert!(c.recv_text().starts_with(r#"{"id":"1","type":"next""#));
    c.send_text(r#"{"id":"1","type":"complete"}"#);
    // A query over the socket: `next`, then `complete`.
    c.send_text(r#"{"id":"q","type":"subscribe","payload":{"query":"{ products(orderBy: {id: ASC}, limit: 1) { name } }"}}"#);
    assert_eq!(
        c.recv_text(),
        r#"{"id":"q","type":"next","payload":{"data":{"products":[{"name":"Widget"}]}}}"#
    );
    assert_eq!(c.recv_text(), r#"{"id":"q","type":"complete"}"#);
    // Errors found before any SQL runs.
    c.send_text(
        r#"{"id":"bad","type":"subscribe","payload":{"query":"subscription { nope { id } }"}}"#,
    );
    let error = c.recv_text();
    assert!(
        error.starts_with(r#"{"id":"bad","type":"error","payload":[{"message":"#),
        "{error}"
    );
    assert!(
        error.contains(r#""code":"GRAPHQL_VALIDATION_FAILED""#),
        "{error}"
    );
    // The client closes; the server echoes its code and closes the TCP connection.
    c.send_raw(&masked(0x88, &1000u16.to_be_bytes()));
    assert_eq!(c.recv(), Frame::Close(Some(1000), String::new()));
    assert_eq!(c.recv(), Frame::Eof);
}

#[test]
fn connection_init_timeout_is_4408() {
    let server = Server::start(&[("POSTRUST_CONNECTION_INIT_TIMEOUT_MS", "200")]);
    let mut c = transport(&server);
    let started = Instant::now();
    assert_eq!(
        c.recv_close(),
        (4408, "Connection initialisation timeout".into())
    );
    assert!(started.elapsed() >= Duration::from_millis(150));
    c.finish_close(4408);
}

#[test]
fn graphql_transport_ws_close_codes() {
    let server = Server::start(&[]);
    let text = |t: &str| masked(0x81, t.as_bytes());

    let mut early = transport(&server);
    early.send_text(SUBSCRIBE);
    assert_eq!(early.recv_close(), (4401, "Unauthorized".into()));
    early.finish_close(4401);

    assert_eq!(
        close_after(&server, &[text(INIT)]),
        (4429, "Too many initialisation requests".into())
    );
    let (code, reason) = close_after(&server, &[text("{not json")]);
    assert_eq!(code, 4400);
    assert!(reason.contains("not JSON"), "{reason}");
    let (code, reason) = close_after(&server, &[text(r#"{"type":"launch"}"#)]);
    assert_eq!(
        (code, reason.as_str()),
        (4400, r#"Invalid message 'type' property "launch""#)
    );
    assert_eq!(
        close_after(&server, &[text(SUBSCRIBE), text(SUBSCRIBE)]),
        (4409, "Subscriber for 1 already exists".into())
    );
    let (code, reason) = close_after(
        &server,
        &[text(r#"{"id":"1","type":"subscribe","payload":{}}"#)],
    );
    assert_eq!(code, 4400);
    assert!(reason.contains("payload.query"), "{reason}");
}

#[test]
fn framing_violations_close_with_their_rfc_codes() {
    let server = Server::start(&[("POSTRUST_MAX_MESSAGE_BYTES", "1024")]);
    let cases: Vec<(Vec<u8>, u16)> = vec![
        // A text message over the limit.
        (masked(0x81, &[b' '; 1025]), 1009),
        // The same limit across fragments.
        (
            [masked(0x01, &[b' '; 600]), masked(0x80, &[b' '; 600])].concat(),
            1009,
        ),
        // Invalid UTF-8 in a text message.
        (masked(0x81, &[0xc3, 0x28]), 1007),
        // An unmasked client frame.
        (vec![0x81, 0x02, b'{', b'}'], 1002),
        // RSV1 without an extension.
        (masked(0xc1, b"{}"), 1002),
        // A fragmented ping.
        (masked(0x09, b""), 1002),
        // A continuation with nothing to continue.
        (masked(0x80, b"x"), 1002),
        // Binary data.
        (masked(0x82, b"\x00\x01"), 1003),
    ];
    for (bytes, code) in cases {
        let (got, reason) = close_after(&server, &[bytes]);
        assert_eq!(got, code, "{reason}");
        assert!(!reason.is_empty());
    }
}

#[test]
fn fragmented_messages_are_reassembled() {
    let server = Server::start(&[]);
    let mut c = transport(&server);
    let init = INIT.as_bytes();
    c.send_raw(&masked(0x01, &init[..10]));
    c.send_raw(&masked(0x89, b"mid"));
    c.send_raw(&masked(0x00, &init[10..20]));
    c.send_raw(&masked(0x80, &init[20..]));
    assert_eq!(c.recv(), Frame::Pong(b"mid".to_vec()));
    assert_eq!(c.recv_text(), r#"{"type":"connection_ack"}"#);
}

#[test]
fn an_unanswered_close_is_dropped_after_the_close_timeout() {
    let server = Server::start(&[("POSTRUST_CLOSE_TIMEOUT_MS", "200")]);
    let mut c = acknowledged(&server);
    c.send_text(INIT);
    assert_eq!(c.recv_close().0, 4429);
    // Never answer: the server gives up and closes the socket.
    let started = Instant::now();
    assert_eq!(c.recv(), Frame::Eof);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn legacy_graphql_ws_session() {
    let server = Server::start(&[("POSTRUST_KEEPALIVE_MS", "100")]);
    let (mut c, _) = Client::upgrade(server.connect(), Some("graphql-ws"));
    c.send_text(
        r#"{"type":"start","id":"1","payload":{"query":"subscription { orders { id } }"}}"#,
    );
    let early = c.recv_text();
    assert!(
        early.contains(r#""type":"error""#) && early.contains("before start"),
        "{early}"
    );
    c.send_text(r#"{"type":"connection_init","payload":{"authorization":"Bearer x"}}"#);
    assert_eq!(c.recv_text(), r#"{"type":"connection_ack"}"#);
    assert_eq!(c.recv_text(), r#"{"type":"ka"}"#);
    // The periodic keep-alive.
    assert_eq!(c.recv_text(), r#"{"type":"ka"}"#);
    c.send_text(
        r#"{"type":"start","id":"2","payload":{"query":"subscription { orders { id } }"}}"#,
    );
    let data = loop {
        let m = c.recv_text();
        if m != r#"{"type":"ka"}"# {
            break m;
        }
    };
    assert!(
        data.starts_with(r#"{"id":"2","type":"data","payload":{"data":{"orders":[{"id":"#),
        "{data}"
    );
    c.send_text(r#"{"type":"stop","id":"2"}"#);
    let complete = loop {
        let m = c.recv_text();
        if m != r#"{"type":"ka"}"# {
            break m;
        }
    };
    assert_eq!(complete, r#"{"id":"2","type":"complete"}"#);
    c.send_text("{oops");
    let reply = loop {
        let m = c.recv_text();
        if m != r#"{"type":"ka"}"# {
            break m;
        }
    };
    assert!(
        reply.starts_with(r#"{"type":"connection_error""#),
        "{reply}"
    );
    c.send_text(r#"{"type":"connection_terminate"}"#);
    assert_eq!(c.recv_close(), (1000, "connection terminated".into()));
    c.finish_close(1000);
}

#[test]
fn shutdown_sends_going_away_and_exits_zero() {
    let server = Server::start(&[]);
    let mut a = acknowledged(&server);
    let (mut b, _) = Client::upgrade(server.connect(), Some("graphql-ws"));
    let waiter = std::thread::spawn(move || {
        let first = a.recv_close();
        a.finish_close(first.0);
        let second = b.recv_close();
        b.finish_close(second.0);
        (first, second)
    });
    std::thread::sleep(Duration::from_millis(100));
    let status = server.terminate();
    let (first, second) = waiter.join().unwrap();
    assert_eq!(first, (1001, "server shutting down".into()));
    assert_eq!(second.0, 1001);
    assert!(status.success(), "{status}");
}

#[test]
fn operations_started_too_fast_get_rate_limited_errors() {
    let server = Server::start(&[
        ("POSTRUST_SUBSCRIBE_RATE", "1"),
        ("POSTRUST_SUBSCRIBE_BURST", "2"),
    ]);
    let mut c = acknowledged(&server);
    for id in 1..=4 {
        c.send_text(&SUBSCRIBE.replace(r#""id":"1""#, &format!(r#""id":"{id}""#)));
    }
    let mut by_id = std::collections::BTreeMap::new();
    for _ in 0..4 {
        let m = c.recv_text();
        let id = m
            .split(r#""id":""#)
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_owned();
        let kind = if m.contains(r#""type":"next""#) {
            "next".to_owned()
        } else {
            m.split(r#""code":""#)
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap()
                .to_owned()
        };
        by_id.insert(id, kind);
    }
    let kinds: Vec<&str> = by_id.values().map(String::as_str).collect();
    assert_eq!(
        kinds,
        ["next", "next", "RATE_LIMITED", "RATE_LIMITED"],
        "the burst passes"
    );
    // The socket stays open.
    c.send_text(r#"{"type":"ping"}"#);
    assert_eq!(c.recv_text(), r#"{"type":"pong"}"#);
}

#[test]
fn a_connection_runs_a_bounded_number_of_operations() {
    let server = Server::start(&[("POSTRUST_MAX_SUBSCRIPTIONS_PER_CONNECTION", "2")]);
    let mut c = acknowledged(&server);
    let subscribe = |c: &mut Client, id: &str| {
        c.send_text(&SUBSCRIBE.replace(r#""id":"1""#, &format!(r#""id":"{id}""#)));
        c.recv_text()
    };
    assert!(subscribe(&mut c, "a").contains(r#""type":"next""#));
    assert!(subscribe(&mut c, "b").contains(r#""type":"next""#));
    let refused = subscribe(&mut c, "c");
    assert!(
        refused.contains(r#""code":"TOO_MANY_SUBSCRIPTIONS""#),
        "{refused}"
    );
    c.send_text(r#"{"id":"a","type":"complete"}"#);
    assert!(
        subscribe(&mut c, "d").contains(r#""type":"next""#),
        "room after a complete"
    );
}

#[test]
fn an_operation_nested_too_deep_gets_query_too_deep_and_the_socket_stays() {
    let server = Server::start(&[("POSTRUST_MAX_QUERY_DEPTH", "1")]);
    let mut c = acknowledged(&server);
    c.send_text(
        r#"{"id":"deep","type":"subscribe","payload":{"query":"{ orders { customer { name } } }"}}"#,
    );
    let refused = c.recv_text();
    assert!(
        refused.starts_with(r#"{"id":"deep","type":"error""#)
            && refused.contains(r#""code":"QUERY_TOO_DEEP""#),
        "{refused}"
    );
    // One level is within the limit, on the same socket.
    c.send_text(SUBSCRIBE);
    assert!(c.recv_text().contains(r#""type":"next""#));
}

#[test]
fn delivered_results_and_fan_out_time_are_counted() {
    // A database of its own, so that the LISTEN seen there is this server's: the refresh
    // of everything that follows it comes before the counting.
    let url = support::gql::demo_database("");
    let server = Server::start_on(&url, &[("POSTRUST_SHARDS", "1")]);
    support::live::wait_until_listening(&url);
    let mut c = acknowledged(&server);
    c.send_text(SUBSCRIBE);
    assert!(c.recv_text().contains(r#""type":"next""#));
    let metrics = support::server::exchange(
        &mut server.connect(),
        b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert!(
        metrics.contains("\npostrust_results_sent_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\npostrust_fanout_seconds_count 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\npostrust_refreshes_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\npostrust_subscriptions 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("\npostrust_live_queries 1\n"), "{metrics}");
}

#[test]
fn shutdown_does_not_wait_past_its_grace_for_a_silent_client() {
    // The client never answers the close frame; the close timeout alone would keep the
    // socket for a minute, the shutdown grace ends it after 300 ms.
    let server = Server::start(&[
        ("POSTRUST_CLOSE_TIMEOUT_MS", "60000"),
        ("POSTRUST_SHUTDOWN_GRACE_MS", "300"),
    ]);
    let mut silent = acknowledged(&server);
    let started = Instant::now();
    let status = server.terminate();
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(silent.recv_close(), (1001, "server shutting down".into()));
}
