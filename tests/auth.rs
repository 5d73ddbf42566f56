//! Authentication over real sockets: `connection_init` credentials, the upgrade request's
//! Authorization header, token expiry on a live socket, and HTTP 401.

mod support;

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use serde_json::json;
use support::server::{Server, exchange};
use support::ws::Client;

const SECRET: &str = "integration-secret-0123456789abcdef";

fn token(claims: serde_json::Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn server(extra: &[(&str, &str)]) -> Server {
    let mut env = vec![
        ("POSTRUST_JWT_SECRET", SECRET),
        ("POSTRUST_JWT_LEEWAY_S", "0"),
    ];
    env.extend_from_slice(extra);
    Server::start(&env)
}

fn init(token: Option<&str>) -> String {
    match token {
        Some(t) => {
            format!(r#"{{"type":"connection_init","payload":{{"authorization":"Bearer {t}"}}}}"#)
        }
        None => r#"{"type":"connection_init"}"#.to_owned(),
    }
}

fn transport(server: &Server) -> Client {
    Client::upgrade(server.connect(), Some("graphql-transport-ws")).0
}

#[test]
fn connection_init_with_a_valid_token_is_acknowledged() {
    let server = server(&[]);
    let mut c = transport(&server);
    c.send_text(&init(Some(&token(
        json!({"role":"web_user","exp": get_current_timestamp() + 600}),
    ))));
    assert_eq!(c.recv_text(), r#"{"type":"connection_ack"}"#);
}

#[test]
fn missing_and_bad_tokens_close_with_4403_and_a_reason() {
    let server = server(&[]);
    let expired = token(json!({"role":"web_user","exp": get_current_timestamp() - 60}));
    let other_key = encode(
        &Header::new(Algorithm::HS256),
        &json!({"role":"web_user"}),
        &EncodingKey::from_secret(b"some-other-secret-that-is-long-enough"),
    )
    .unwrap();
    let cases = [
        (init(None), "a bearer token is required"),
        (init(Some(&expired)), "token expired"),
        (init(Some(&other_key)), "the token's signature is invalid"),
        (init(Some("not-a-jwt")), "the token is not a valid JWT"),
        (
            init(Some(&token(json!({"sub":"x"})))),
            "the token names no role and there is no anonymous role",
        ),
    ];
    for (message, reason) in cases {
        let mut c = transport(&server);
        c.send_text(&message);
        assert_eq!(c.recv_close(), (4403, reason.to_owned()), "{message}");
        c.finish_close(4403);
    }
}

#[test]
fn the_upgrade_authorization_header_is_used_when_init_has_none() {
    let server = server(&[]);
    let mut stream = server.connect();
    let t = token(json!({"role":"web_user"}));
    let req = format!(
        "GET /graphql HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: graphql-transport-ws\r\nAuthorization: Bearer {t}\r\n\r\n"
    );
    use std::io::{Read, Write};
    stream.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let mut c = Client { stream };
    c.send_text(&init(None));
    assert_eq!(c.recv_text(), r#"{"type":"connection_ack"}"#);
}

#[test]
fn an_expiring_token_closes_the_live_socket_and_a_fresh_one_reconnects() {
    let server = server(&[]);
    let mut c = transport(&server);
    let exp = get_current_timestamp() + 2;
    c.send_text(&init(Some(&token(json!({"role":"web_user","exp": exp})))));
    assert_eq!(c.recv_text(), r#"{"type":"connection_ack"}"#);
    let acked = Instant::now();
    assert_eq!(c.recv_close(), (4403, "token expired".into()));
    let waited = acked.elapsed();
    assert!(waited <= Duration::from_secs(3), "closed after {waited:?}");
    assert!(get_current_timestamp() >= exp, "not before exp");
    c.finish_close(4403);

    let mut again = transport(&server);
    again.send_text(&init(Some(&token(
        json!({"role":"web_user","exp": get_current_timestamp() + 600}),
    ))));
    assert_eq!(again.recv_text(), r#"{"type":"connection_ack"}"#);
}

#[test]
fn the_anonymous_role_admits_clients_without_a_token() {
    let server = server(&[("POSTRUST_ANON_ROLE", "web_anon")]);
    let mut c = transport(&server);
    c.send_text(&init(None));
    assert_eq!(c.recv_text(), r#"{"type":"connection_ack"}"#);
}

#[test]
fn legacy_clients_get_connection_error_then_4403() {
    let server = server(&[]);
    let (mut c, _) = Client::upgrade(server.connect(), Some("graphql-ws"));
    c.send_text(r#"{"type":"connection_init","payload":{}}"#);
    assert_eq!(
        c.recv_text(),
        r#"{"type":"connection_error","payload":{"message":"a bearer token is required"}}"#
    );
    assert_eq!(c.recv_close(), (4403, "a bearer token is required".into()));
    c.finish_close(4403);
}

#[test]
fn http_post_without_a_valid_token_is_401() {
    let server = server(&[]);
    let post = |auth: Option<&str>| {
        let body = r#"{"query":"{ users { id } }"}"#;
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "POST /graphql HTTP/1.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        exchange(&mut server.connect(), req.as_bytes())
    };
    let missing = post(None);
    assert!(missing.starts_with("HTTP/1.1 401 "), "{missing}");
    assert!(
        missing.contains("WWW-Authenticate: Bearer error=\"invalid_token\""),
        "{missing}"
    );
    assert!(
        missing.contains(r#""code":"AUTH_TOKEN_REQUIRED""#),
        "{missing}"
    );
    let forged = post(Some(
        "Bearer eyJhbGciOiJub25lIn0.eyJyb2xlIjoicG9zdGdyZXMifQ.",
    ));
    assert!(
        forged.contains(r#""code":"AUTH_WRONG_ALGORITHM""#),
        "{forged}"
    );
    let ok = post(Some(&format!(
        "Bearer {}",
        token(json!({"role":"web_user"}))
    )));
    assert!(ok.starts_with("HTTP/1.1 200 "), "{ok}");
    assert!(ok.contains(r#"{"data":{"users":["#), "{ok}");
}

#[test]
fn an_unusable_key_stops_start_up() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_postrust"))
        .env("POSTRUST_JWT_SECRET", "too-short")
        .env("POSTRUST_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("POSTRUST_JWT_SECRET must be at least 32 bytes"),
        "{err}"
    );
}

#[test]
fn refusals_are_counted_by_code_in_metrics() {
    let server = server(&[]);
    for _ in 0..2 {
        let mut c = transport(&server);
        c.send_text(&init(None));
        assert_eq!(c.recv_close().0, 4403);
        c.finish_close(4403);
    }
    let metrics = exchange(
        &mut server.connect(),
        b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert!(metrics.starts_with("HTTP/1.1 200 "), "{metrics}");
    assert!(metrics.contains("Content-Type: text/plain; version=0.0.4\r\n"));
    assert!(
        metrics.contains("postrust_errors_total{code=\"AUTH_TOKEN_REQUIRED\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("postrust_errors_total{code=\"4403\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("postrust_websockets_total{protocol=\"graphql-transport-ws\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("postrust_db_statements_total 0\n"),
        "nothing reached PostgreSQL"
    );
}
