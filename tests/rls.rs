//! Row-level security through the real server: a PostgreSQL policy on `notes` (see
//! `tests/fixtures/rls.sql`) decides what each subscriber sees, the server logging in as a
//! non-superuser and switching to each token's role and claims. Also: refused tokens never
//! reach PostgreSQL, expiry and resubscription, and injection through values and claims.

mod support;

use std::sync::Mutex;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use serde_json::{Value, json};
use support::gql::{demo_database, psql};
use support::server::{Server, exchange};
use support::ws::Client;

const SECRET: &str = "rls-integration-secret-0123456789abcdef";
const AUDIENCE: &str = "postrust-tests";
const NOTES: &str = "subscription { notes(orderBy: { id: ASC }) { owner body } }";

/// A fresh database with the demo and `file` (relative to the crate) loaded. One at a time:
/// the fixtures create and alter cluster-wide roles, and two sessions doing that at once can
/// collide ("duplicate key", "tuple concurrently updated").
fn database_with(file: &str) -> String {
    static ROLES: Mutex<()> = Mutex::new(());
    let sql = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
        .unwrap();
    let _one_at_a_time = ROLES.lock().unwrap_or_else(|e| e.into_inner());
    demo_database(&sql)
}

/// A fresh database with the RLS fixture; returns (superuser URL for the test's own writes,
/// URL of the non-superuser the server logs in as).
fn rls_database() -> (String, String) {
    let admin = database_with("tests/fixtures/rls.sql");
    let server = admin.replacen("://postgres@", "://rls_authenticator@", 1);
    assert_ne!(admin, server, "the cluster URL names the postgres user");
    (admin, server)
}

fn start(url: &str, extra: &[(&str, &str)]) -> Server {
    let mut env = vec![
        ("POSTRUST_JWT_SECRET", SECRET),
        ("POSTRUST_JWT_AUD", AUDIENCE),
        ("POSTRUST_JWT_LEEWAY_S", "0"),
    ];
    env.extend_from_slice(extra);
    Server::start_on(url, &env)
}

fn sign(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A valid token for `sub` with role `role`, good for ten minutes.
fn token(role: &str, sub: &str) -> String {
    sign(json!({"role": role, "sub": sub, "aud": AUDIENCE, "exp": get_current_timestamp() + 600}))
}

fn init(token: &str) -> String {
    json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}})
        .to_string()
}

/// An acknowledged graphql-transport-ws socket for `token`.
fn connect(server: &Server, token: &str) -> Client {
    let mut c = Client::upgrade(server.connect(), Some("graphql-transport-ws")).0;
    c.send_text(&init(token));
    assert_eq!(c.recv_text(), r#"{"type":"connection_ack"}"#);
    c
}

fn subscribe(c: &mut Client, id: &str, query: &str, variables: Option<Value>) {
    let mut payload = json!({ "query": query });
    if let Some(v) = variables {
        payload["variables"] = v;
    }
    c.send_text(&json!({"id": id, "type": "subscribe", "payload": payload}).to_string());
}

fn recv(c: &mut Client) -> Value {
    serde_json::from_str(&c.recv_text()).unwrap()
}

/// Runs a query operation and returns its `next` payload's data, or its `error` payload.
fn query(c: &mut Client, id: &str, query: &str, variables: Option<Value>) -> Value {
    subscribe(c, id, query, variables);
    let m = recv(c);
    assert_eq!(m["id"], id, "{m}");
    if m["type"] == "next" {
        assert_eq!(recv(c), json!({"id": id, "type": "complete"}));
        m["payload"]["data"].clone()
    } else {
        assert_eq!(m["type"], "error", "{m}");
        m["payload"].clone()
    }
}

/// The `code` of each GraphQL error in an `error` payload.
fn codes(payload: &Value) -> Vec<String> {
    payload
        .as_array()
        .unwrap_or_else(|| panic!("not an error payload: {payload}"))
        .iter()
        .map(|e| e["extensions"]["code"].as_str().unwrap().to_owned())
        .collect()
}

/// The bodies of a `next` message's notes, checking every row belongs to `owner`.
fn bodies_of(m: &Value, owner: &str) -> Vec<String> {
    assert_eq!(m["type"], "next", "{m}");
    m["payload"]["data"]["notes"]
        .as_array()
        .unwrap_or_else(|| panic!("no notes in {m}"))
        .iter()
        .map(|n| {
            assert_eq!(
                n["owner"], owner,
                "{owner} was shown another user's row: {m}"
            );
            n["body"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Reads results until `owner`'s notes are `expected`; every result on the way must hold
/// only `owner`'s rows. A result that never comes fails on the socket's read timeout.
fn await_bodies(c: &mut Client, owner: &str, expected: &[&str]) {
    loop {
        if bodies_of(&recv(c), owner) == expected {
            return;
        }
    }
}

fn metrics(server: &Server) -> String {
    exchange(
        &mut server.connect(),
        b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
}

#[test]
fn two_users_on_the_same_operation_see_only_their_own_rows_as_they_change() {
    let (admin, url) = rls_database();
    // One shard, so that two subscriptions wrongly sharing a live query would show as one.
    let server = start(&url, &[("POSTRUST_SHARDS", "1")]);
    let mut alice = connect(&server, &token("rls_user", "alice"));
    let mut bob = connect(&server, &token("rls_user", "bob"));
    subscribe(&mut alice, "n", NOTES, None);
    subscribe(&mut bob, "n", NOTES, None);
    assert_eq!(
        bodies_of(&recv(&mut alice), "alice"),
        ["alice 1", "alice 2"]
    );
    assert_eq!(bodies_of(&recv(&mut bob), "bob"), ["bob 1"]);
    let m = metrics(&server);
    assert!(
        m.contains("postrust_live_queries 2\n"),
        "different claims, different live queries: {m}"
    );

    psql(
        &admin,
        "INSERT INTO notes (owner, body) VALUES ('alice', 'alice 3'), ('bob', 'bob 2')",
    );
    await_bodies(&mut alice, "alice", &["alice 1", "alice 2", "alice 3"]);
    await_bodies(&mut bob, "bob", &["bob 1", "bob 2"]);

    psql(
        &admin,
        "UPDATE notes SET body = body || ' edited' WHERE body IN ('alice 1', 'bob 1')",
    );
    await_bodies(
        &mut alice,
        "alice",
        &["alice 1 edited", "alice 2", "alice 3"],
    );
    await_bodies(&mut bob, "bob", &["bob 1 edited", "bob 2"]);

    psql(
        &admin,
        "DELETE FROM notes WHERE body IN ('alice 2', 'bob 2')",
    );
    await_bodies(&mut alice, "alice", &["alice 1 edited", "alice 3"]);
    await_bodies(&mut bob, "bob", &["bob 1 edited"]);

    // A row given to another user leaves one result and enters the other.
    psql(
        &admin,
        "UPDATE notes SET owner = 'bob' WHERE body = 'alice 3'",
    );
    await_bodies(&mut alice, "alice", &["alice 1 edited"]);
    await_bodies(&mut bob, "bob", &["bob 1 edited", "alice 3"]);
}

/// The `count` a `next` message carries for `notesAggregate`.
fn note_count(m: &Value) -> i64 {
    assert_eq!(m["type"], "next", "{m}");
    m["payload"]["data"]["notesAggregate"]["count"]
        .as_i64()
        .unwrap_or_else(|| panic!("no count in {m}"))
}

#[test]
fn aggregates_count_only_the_rows_the_role_may_read() {
    let (admin, url) = rls_database();
    let server = start(&url, &[]);
    let mut alice = connect(&server, &token("rls_user", "alice"));
    let mut bob = connect(&server, &token("rls_user", "bob"));
    let count = "subscription { notesAggregate { count } }";
    subscribe(&mut alice, "c", count, None);
    subscribe(&mut bob, "c", count, None);
    assert_eq!(note_count(&recv(&mut alice)), 2);
    assert_eq!(note_count(&recv(&mut bob)), 1);
    psql(
        &admin,
        "INSERT INTO notes (owner, body) VALUES ('alice', 'alice 3'), ('carol', 'carol 1')",
    );
    assert_eq!(note_count(&recv(&mut alice)), 3);
    psql(
        &admin,
        "INSERT INTO notes (owner, body) VALUES ('bob', 'bob 2')",
    );
    assert_eq!(note_count(&recv(&mut bob)), 2);
    // A filter cannot reach past the policy either.
    let filtered = query(
        &mut bob,
        "q",
        r#"{ notesAggregate(filter: { owner: { neq: "bob" } }) { count } }"#,
        None,
    );
    assert_eq!(filtered["notesAggregate"]["count"], 0, "{filtered}");
}

#[test]
fn a_role_without_select_gets_a_forbidden_error_and_keeps_its_socket() {
    let (_admin, url) = rls_database();
    let server = start(&url, &[]);
    let mut c = connect(&server, &token("rls_outsider", "alice"));
    subscribe(&mut c, "notes", NOTES, None);
    let m = recv(&mut c);
    assert_eq!(
        (&m["id"], &m["type"]),
        (&json!("notes"), &json!("error")),
        "{m}"
    );
    assert_eq!(codes(&m["payload"]), ["FORBIDDEN"], "{m}");
    // The same socket still runs what the role may read.
    let data = query(&mut c, "p", "{ products(limit: 1) { id } }", None);
    assert_eq!(data["products"].as_array().map(Vec::len), Some(1), "{data}");
    c.send_text(r#"{"type":"ping"}"#);
    assert_eq!(c.recv_text(), r#"{"type":"pong"}"#);
}

/// `{"alg":"none"}.{"role":"postgres"}.` with no signature.
const ALG_NONE: &str = "eyJhbGciOiJub25lIn0.eyJyb2xlIjoicG9zdGdyZXMifQ.";

#[test]
fn refused_tokens_get_their_code_and_never_reach_postgresql() {
    let (admin, url) = rls_database();
    // PostgreSQL's own count, beside the server's: statements on notes run as any role but
    // the superuser that set the database up (scripts/pg-private preloads the module).
    psql(&admin, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    let notes_statements = || {
        psql(
            &admin,
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND userid <> 'postgres'::regrole AND query ILIKE '%notes%'",
        )
    };
    let server = start(&url, &[]);
    let now = get_current_timestamp();
    let claims = |extra: Value| {
        let mut c = json!({"role": "rls_user", "sub": "alice", "aud": AUDIENCE, "exp": now + 600});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &claims(json!({})),
        &EncodingKey::from_secret(b"another-secret-that-is-long-enough!!"),
    )
    .unwrap();
    let rsa = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt/rsa_private.pem"),
    )
    .unwrap();
    let wrong_algorithm = encode(
        &Header::new(Algorithm::RS256),
        &claims(json!({})),
        &EncodingKey::from_rsa_pem(&rsa).unwrap(),
    )
    .unwrap();
    let cases = [
        (
            forged,
            "AUTH_BAD_SIGNATURE",
            "the token's signature is invalid",
        ),
        (
            wrong_algorithm,
            "AUTH_WRONG_ALGORITHM",
            "the token's algorithm is not accepted",
        ),
        (
            ALG_NONE.to_owned(),
            "AUTH_WRONG_ALGORITHM",
            "the token's algorithm is not accepted",
        ),
        (
            sign(claims(json!({"exp": now - 60}))),
            "AUTH_TOKEN_EXPIRED",
            "token expired",
        ),
        (
            sign(claims(json!({"nbf": now + 600}))),
            "AUTH_TOKEN_NOT_YET_VALID",
            "the token is not valid yet",
        ),
        (
            sign(claims(json!({"aud": "someone-else"}))),
            "AUTH_WRONG_AUDIENCE",
            "the token's audience is not accepted",
        ),
    ];
    for (token, code, reason) in &cases {
        let mut c = Client::upgrade(server.connect(), Some("graphql-transport-ws")).0;
        c.send_text(&init(token));
        assert_eq!(c.recv_close(), (4403, reason.to_string()), "{code}");
        c.finish_close(4403);
        let http = server.post_graphql(Some(token), "{ notes { body } }");
        assert!(http.starts_with("HTTP/1.1 401 "), "{code}: {http}");
        assert!(http.contains(&format!(r#""code":"{code}""#)), "{http}");
    }
    let m = metrics(&server);
    assert!(m.contains("postrust_db_statements_total 0\n"), "{m}");
    assert_eq!(notes_statements(), "0");
    for (code, n) in [
        ("AUTH_BAD_SIGNATURE", 2),
        ("AUTH_WRONG_ALGORITHM", 4),
        ("AUTH_TOKEN_EXPIRED", 2),
        ("AUTH_TOKEN_NOT_YET_VALID", 2),
        ("AUTH_WRONG_AUDIENCE", 2),
    ] {
        let line = format!("postrust_errors_total{{code=\"{code}\"}} {n}\n");
        assert!(m.contains(&line), "{line}in {m}");
    }
    // The counter does see a statement that runs: the zero above is not a dead metric.
    let ok = server.post_graphql(Some(&token("rls_user", "alice")), "{ notes { body } }");
    assert!(
        ok.contains(r#"{"data":{"notes":[{"body":"alice 1"},{"body":"alice 2"}]}}"#),
        "{ok}"
    );
    assert!(metrics(&server).contains("postrust_db_statements_total 1\n"));
    assert_eq!(notes_statements(), "1");
}

#[test]
fn an_expired_socket_closes_and_a_fresh_token_resumes_the_subscription() {
    let (admin, url) = rls_database();
    let server = start(&url, &[]);
    let exp = get_current_timestamp() + 2;
    let short = sign(json!({"role": "rls_user", "sub": "alice", "aud": AUDIENCE, "exp": exp}));
    let mut c = connect(&server, &short);
    subscribe(&mut c, "n", NOTES, None);
    assert_eq!(bodies_of(&recv(&mut c), "alice"), ["alice 1", "alice 2"]);
    assert_eq!(c.recv_close(), (4403, "token expired".to_owned()));
    c.finish_close(4403);
    assert!(get_current_timestamp() >= exp, "closed before exp");

    // Written while alice is away: the resumed subscription starts from the current rows.
    psql(
        &admin,
        "INSERT INTO notes (owner, body) VALUES ('alice', 'alice 3')",
    );
    let mut again = connect(&server, &token("rls_user", "alice"));
    subscribe(&mut again, "n", NOTES, None);
    assert_eq!(
        bodies_of(&recv(&mut again), "alice"),
        ["alice 1", "alice 2", "alice 3"]
    );
    psql(
        &admin,
        "INSERT INTO notes (owner, body) VALUES ('alice', 'alice 4')",
    );
    await_bodies(
        &mut again,
        "alice",
        &["alice 1", "alice 2", "alice 3", "alice 4"],
    );
}

#[test]
fn injection_through_values_variables_and_claims_is_inert() {
    let (admin, url) = rls_database();
    let server = start(&url, &[]);
    let notes_where = "query($v: String!) { notes(filter: { body: { eq: $v } }) { owner body } }";

    let mut alice = connect(&server, &token("rls_user", "alice"));
    for (i, (q, vars)) in [
        (
            r#"{ notes(filter: { owner: { eq: "bob' OR '1'='1" } }) { body } }"#,
            None,
        ),
        (notes_where, Some(json!({"v": "x'); DROP TABLE notes; --"}))),
        (notes_where, Some(json!({"v": "' OR 1=1 --"}))),
        // The filter asks for bob's rows; the policy still says no.
        (
            r#"{ notes(filter: { owner: { eq: "bob" } }) { body } }"#,
            None,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let data = query(&mut alice, &i.to_string(), q, vars);
        assert_eq!(data["notes"], json!([]), "{q}");
    }

    // A `sub` that would widen a policy built by string concatenation matches nobody.
    let mut eve = connect(&server, &token("rls_user", "' OR 1=1 --"));
    let data = query(&mut eve, "1", "{ notes { body } }", None);
    assert_eq!(data["notes"], json!([]));

    // A role claim is a value handed to set_config, never SQL, and never a role the server's
    // login was not granted, nor the login role itself.
    for (role, code) in [
        ("postgres; DROP TABLE notes", "DATABASE_ERROR"),
        ("postgres", "FORBIDDEN"),
        ("rls_user\"; RESET ROLE; --", "DATABASE_ERROR"),
        // PostgreSQL reads the role `none` as "the login role itself" (SET ROLE NONE).
        ("none", "FORBIDDEN"),
    ] {
        let mut c = connect(&server, &token(role, "alice"));
        let errors = query(&mut c, "1", "{ notes { body } }", None);
        assert_eq!(codes(&errors), [code], "{role}: {errors}");
        c.send_text(r#"{"type":"ping"}"#);
        assert_eq!(c.recv_text(), r#"{"type":"pong"}"#, "{role}");
    }

    assert_eq!(psql(&admin, "SELECT count(*) FROM notes"), "3");
}

#[test]
fn a_noinherit_login_role_serves_what_the_roles_it_may_become_can_read() {
    // demo/roles.sql's `authenticator` holds no privileges of its own (NOINHERIT): the
    // schema must still offer what web_anon and web_user may read.
    let admin = database_with("demo/roles.sql");
    let url = admin.replacen("://postgres@", "://authenticator@", 1);
    let server = Server::start_on(
        &url,
        &[
            ("POSTRUST_JWT_SECRET", SECRET),
            ("POSTRUST_ANON_ROLE", "web_anon"),
        ],
    );
    let as_user = sign(json!({"role": "web_user"}));
    let orders = server.post_graphql(Some(&as_user), "{ orders(limit: 1) { id } }");
    assert!(
        orders.contains(r#"{"data":{"orders":[{"id":1}]}}"#),
        "{orders}"
    );
    let names = server.post_graphql(Some(&as_user), "{ users(limit: 1) { name } }");
    assert!(names.contains(r#"{"data":{"users":[{"#), "{names}");
    // A column no role may read is not in the schema at all.
    let hidden = server.post_graphql(Some(&as_user), "{ users { email } }");
    assert!(
        hidden.contains(r#""code":"GRAPHQL_VALIDATION_FAILED""#),
        "{hidden}"
    );
    // Offered to web_user, refused to web_anon by PostgreSQL.
    let mut anon = Client::upgrade(server.connect(), Some("graphql-transport-ws")).0;
    anon.send_text(r#"{"type":"connection_init"}"#);
    assert_eq!(anon.recv_text(), r#"{"type":"connection_ack"}"#);
    let errors = query(&mut anon, "1", "{ orders { id } }", None);
    assert_eq!(codes(&errors), ["FORBIDDEN"], "{errors}");
}

#[test]
fn identical_role_and_claims_share_one_live_query() {
    let (_admin, url) = rls_database();
    let server = start(&url, &[("POSTRUST_SHARDS", "1")]);
    let alice = token("rls_user", "alice");
    let mut first = connect(&server, &alice);
    let mut second = connect(&server, &alice);
    for c in [&mut first, &mut second] {
        subscribe(c, "n", NOTES, None);
        assert_eq!(bodies_of(&recv(c), "alice"), ["alice 1", "alice 2"]);
    }
    let m = metrics(&server);
    assert!(m.contains("postrust_live_queries 1\n"), "{m}");
    assert!(m.contains("postrust_subscriptions 2\n"), "{m}");
}

#[test]
fn a_grant_revoked_under_a_live_subscription_ends_it_with_forbidden() {
    let (admin, url) = rls_database();
    let server = start(&url, &[]);
    let mut c = connect(&server, &token("rls_user", "alice"));
    subscribe(&mut c, "n", NOTES, None);
    assert_eq!(bodies_of(&recv(&mut c), "alice"), ["alice 1", "alice 2"]);
    psql(
        &admin,
        "REVOKE SELECT ON notes FROM rls_user;
         INSERT INTO notes (owner, body) VALUES ('alice', 'alice 3');",
    );
    let m = recv(&mut c);
    assert_eq!(
        (&m["id"], &m["type"]),
        (&json!("n"), &json!("error")),
        "{m}"
    );
    assert_eq!(codes(&m["payload"]), ["FORBIDDEN"], "{m}");
    c.send_text(r#"{"type":"ping"}"#);
    assert_eq!(c.recv_text(), r#"{"type":"pong"}"#);
}

#[test]
fn claims_with_quotes_and_backslashes_reach_policies_intact() {
    let (admin, url) = rls_database();
    let server = start(&url, &[]);
    let odd = r#"o'brien "the" \admin\ ålice"#;
    psql(
        &admin,
        &format!(
            "INSERT INTO notes (owner, body) VALUES ({}, 'odd 1')",
            support::gql::dollar_quote(odd)
        ),
    );
    let mut c = connect(&server, &token("rls_user", odd));
    let data = query(&mut c, "1", "{ notes { owner body } }", None);
    assert_eq!(data["notes"], json!([{"owner": odd, "body": "odd 1"}]));
}
