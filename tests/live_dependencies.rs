//! What a live query depends on beyond the tables it names: the tables the row-level
//! security policies of what it reads read, and, through a function of the database's own,
//! anything. A change there must reach it, or its subscribers keep a stale result.

mod support;

use serde_json::{Value, json};
use support::gql::{demo_database, psql};
use support::server::{Server, demo_chat, demo_token};
use support::ws::Client;

fn subscribe(server: &Server, token: Option<&str>, query: &str) -> Client {
    let mut c = Client::upgrade(server.connect(), Some("graphql-transport-ws")).0;
    let init = match token {
        Some(t) => {
            json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {t}")}})
        }
        None => json!({"type": "connection_init"}),
    };
    c.send_text(&init.to_string());
    assert_eq!(c.recv_text(), r#"{"type":"connection_ack"}"#);
    c.send_text(&json!({"id": "1", "type": "subscribe", "payload": {"query": query}}).to_string());
    c
}

fn next_data(c: &mut Client) -> Value {
    let m: Value = serde_json::from_str(&c.recv_text()).unwrap();
    assert_eq!(m["type"], "next", "{m}");
    m["payload"]["data"].clone()
}

/// The demo's chat: the policy on messages reads members. Joining a room shows its messages.
#[test]
fn a_table_a_policy_reads_is_followed() {
    let (admin, server) = demo_chat(&[]);
    let alice = demo_token("alice");
    let mut c = subscribe(
        &server,
        Some(&alice),
        "subscription { messages(orderBy: {id: ASC}) { body } }",
    );
    assert_eq!(
        next_data(&mut c)["messages"],
        json!([{"body": "Welcome to the lobby!"}])
    );
    psql(&admin, "INSERT INTO chat.members VALUES (2, 'alice')");
    assert_eq!(
        next_data(&mut c)["messages"],
        json!([{"body": "Welcome to the lobby!"}, {"body": "Deploy at noon."}]),
        "alice joined ops: its messages show"
    );
}

/// A view over a SQL function that counts orders: PostgreSQL records no table it depends on.
#[test]
fn a_view_through_a_function_refreshes_on_any_change() {
    let db = demo_database(
        "CREATE FUNCTION order_count() RETURNS bigint LANGUAGE sql STABLE \
           AS $$ SELECT count(*) FROM orders $$; \
         CREATE VIEW order_stats AS SELECT order_count() AS n;",
    );
    let server = Server::start_on(&db, &[]);
    let mut c = subscribe(&server, None, "subscription { orderStats { n } }");
    assert_eq!(next_data(&mut c)["orderStats"], json!([{"n": "5"}]));
    psql(
        &db,
        "INSERT INTO orders (customer_id, total) VALUES (1, 2.50)",
    );
    assert_eq!(next_data(&mut c)["orderStats"], json!([{"n": "6"}]));
}
