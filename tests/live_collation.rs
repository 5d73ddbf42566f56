//! Skipping stays exact under a nondeterministic collation: where PostgreSQL says 'Rust' =
//! 'RUST' (a case-insensitive ICU collation), the server must not decide by comparing bytes,
//! or it skips a change that does alter the result.

mod support;

use serde_json::{Value, json};
use support::gql::{demo_database, psql};
use support::server::Server;
use support::ws::Client;

fn next_data(c: &mut Client) -> Value {
    let m: Value = serde_json::from_str(&c.recv_text()).unwrap();
    assert_eq!(m["type"], "next", "{m}");
    m["payload"]["data"]["tags"].clone()
}

#[test]
fn changes_under_a_case_insensitive_collation_reach_the_subscriber() {
    let db = demo_database(
        "CREATE COLLATION case_insensitive \
           (provider = icu, locale = 'und-u-ks-level2', deterministic = false); \
         CREATE TABLE tags (id int PRIMARY KEY, name text COLLATE case_insensitive NOT NULL); \
         CREATE TRIGGER tags_notify AFTER INSERT OR UPDATE OR DELETE ON tags \
           FOR EACH ROW EXECUTE FUNCTION notify_table_change(); \
         INSERT INTO tags VALUES (1, 'Rust'), (2, 'Go');",
    );
    let server = Server::start_on(&db, &[]);
    let mut c = Client::upgrade(server.connect(), Some("graphql-transport-ws")).0;
    c.send_text(r#"{"type":"connection_init"}"#);
    assert_eq!(c.recv_text(), r#"{"type":"connection_ack"}"#);
    let query = r#"subscription { tags(filter: {or: [{name: {eq: "RUST"}}, {name: {in: ["PYTHON"]}}]},
                   orderBy: {id: ASC}) { id name } }"#;
    c.send_text(&json!({"id": "1", "type": "subscribe", "payload": {"query": query}}).to_string());
    assert_eq!(next_data(&mut c), json!([{"id": 1, "name": "Rust"}]));
    // Equal to the filter's values only case-insensitively: each one changes the result.
    psql(&db, "INSERT INTO tags VALUES (3, 'rust')");
    assert_eq!(
        next_data(&mut c),
        json!([{"id": 1, "name": "Rust"}, {"id": 3, "name": "rust"}])
    );
    psql(&db, "INSERT INTO tags VALUES (4, 'Python')");
    assert_eq!(
        next_data(&mut c),
        json!([{"id": 1, "name": "Rust"}, {"id": 3, "name": "rust"}, {"id": 4, "name": "Python"}])
    );
    psql(&db, "DELETE FROM tags WHERE id = 1");
    assert_eq!(
        next_data(&mut c),
        json!([{"id": 3, "name": "rust"}, {"id": 4, "name": "Python"}])
    );
}
