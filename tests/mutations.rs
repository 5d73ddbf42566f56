//! Mutations through the real server, logged in as a role that is neither superuser nor
//! owner (`tests/fixtures/chat.sql`): inserts, upserts, updates and deletes returning nested
//! selections, several fields as one transaction, errors with stable codes, row-level
//! security deciding every write, both WebSocket protocols, and a subscriber seeing the
//! write.

mod support;

use std::sync::Mutex;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use serde_json::{Value, json};
use support::gql::{demo_database, psql};
use support::server::{Server, demo_chat, demo_token, exchange};
use support::ws::Client;

const SECRET: &str = "mutation-tests-secret-0123456789abcdef";

/// A fresh demo database with the chat fixture; returns (superuser URL, the server's URL).
/// One at a time: the fixture creates cluster-wide roles.
fn chat_database() -> (String, String) {
    static ROLES: Mutex<()> = Mutex::new(());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat.sql");
    let sql = std::fs::read_to_string(path).unwrap();
    let admin = {
        let _one_at_a_time = ROLES.lock().unwrap_or_else(|e| e.into_inner());
        demo_database(&sql)
    };
    let server = admin.replacen("://postgres@", "://chat_authenticator@", 1);
    (admin, server)
}

fn start(url: &str) -> Server {
    Server::start_on(url, &[("POSTRUST_JWT_SECRET", SECRET)])
}

fn token(sub: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"role": "chat_user", "sub": sub, "exp": get_current_timestamp() + 600}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// `POST /graphql` as `sub`; the response body as JSON.
fn post(server: &Server, sub: &str, query: &str) -> Value {
    let response = server.post_graphql(Some(&token(sub)), query);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

fn codes(response: &Value) -> Vec<String> {
    response["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors in {response}"))
        .iter()
        .map(|e| e["extensions"]["code"].as_str().unwrap().to_owned())
        .collect()
}

/// The bodies of room 1 and 2 messages, as the superuser sees them.
fn all_bodies(admin: &str) -> String {
    psql(
        admin,
        "SELECT string_agg(author || ':' || body, ', ' ORDER BY id) FROM messages",
    )
}

#[test]
fn insert_update_and_delete_return_their_rows_with_nested_selections() {
    let (admin, url) = chat_database();
    let server = start(&url);
    let inserted = post(
        &server,
        "alice",
        r#"mutation { insertMessages(objects: [{roomId: 1, body: "hi"}, {roomId: 1, body: "there"}]) {
             body author edited slug room { name } } }"#,
    );
    assert_eq!(
        inserted,
        json!({"data": {"insertMessages": [
            {"body": "hi", "author": "alice", "edited": false, "slug": "m-3", "room": {"name": "general"}},
            {"body": "there", "author": "alice", "edited": false, "slug": "m-4", "room": {"name": "general"}}
        ]}})
    );
    let updated = post(
        &server,
        "alice",
        r#"mutation { updateMessages(filter: {body: {eq: "hi"}}, set: {body: "hi!", edited: true}) {
             id body edited } }"#,
    );
    assert_eq!(
        updated,
        json!({"data": {"updateMessages": [{"id": "3", "body": "hi!", "edited": true}]}})
    );
    let deleted = post(
        &server,
        "alice",
        r#"mutation { deleteMessages(filter: {id: {in: ["3", "4"]}}) { body } }"#,
    );
    assert_eq!(
        deleted,
        json!({"data": {"deleteMessages": [{"body": "hi!"}, {"body": "there"}]}})
    );
    assert_eq!(all_bodies(&admin), "alice:hello, bob:for bob only");
    // A filter is required: `filter: {}` must be written to touch every row.
    let unfiltered = post(&server, "alice", "mutation { deleteMessages { id } }");
    assert_eq!(codes(&unfiltered), ["GRAPHQL_VALIDATION_FAILED"]);
    assert_eq!(all_bodies(&admin), "alice:hello, bob:for bob only");
}

#[test]
fn upserts_update_or_leave_the_colliding_row() {
    let (admin, url) = chat_database();
    let server = start(&url);
    let upsert = |update: &str| {
        post(
            &server,
            "alice",
            &format!(
                r#"mutation {{ insertMessages(objects: [{{roomId: 1, body: "hello", edited: true}}],
                     onConflict: {{constraint: messages_room_id_body_key{update}}}) {{ id body edited }} }}"#
            ),
        )
    };
    // `edited` is not insertable for this role: the input type has no such field.
    assert_eq!(codes(&upsert("")), ["GRAPHQL_VALIDATION_FAILED"]);
    let nothing = post(
        &server,
        "alice",
        r#"mutation { insertMessages(objects: [{roomId: 1, body: "hello"}],
             onConflict: {constraint: messages_room_id_body_key}) { id } }"#,
    );
    assert_eq!(nothing, json!({"data": {"insertMessages": []}}));
    let updated = post(
        &server,
        "alice",
        r#"mutation { insertMessages(objects: [{roomId: 1, body: "hello"}],
             onConflict: {constraint: messages_room_id_body_key, updateColumns: [body]}) { id body } }"#,
    );
    assert_eq!(
        updated,
        json!({"data": {"insertMessages": [{"id": "1", "body": "hello"}]}})
    );
    assert_eq!(all_bodies(&admin), "alice:hello, bob:for bob only");
}

#[test]
fn the_fields_of_one_mutation_run_in_order_and_fail_together() {
    let (admin, url) = chat_database();
    let server = start(&url);
    let both = post(
        &server,
        "alice",
        r#"mutation { __typename
             a: insertMessages(objects: [{roomId: 1, body: "one"}]) { body }
             b: updateMessages(filter: {body: {eq: "one"}}, set: {edited: true}) { body edited } }"#,
    );
    assert_eq!(
        both,
        json!({"data": {"__typename": "Mutation", "a": [{"body": "one"}],
                        "b": [{"body": "one", "edited": true}]}}),
        "the second field sees the first one's row"
    );
    let failing = post(
        &server,
        "alice",
        r#"mutation {
             a: insertMessages(objects: [{roomId: 1, body: "two"}]) { id }
             b: insertMessages(objects: [{roomId: 1, body: "two"}]) { id } }"#,
    );
    assert_eq!(codes(&failing), ["UNIQUE_VIOLATION"]);
    let message = failing["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("messages_room_id_body_key"), "{message}");
    assert!(failing.get("data").is_none_or(Value::is_null), "{failing}");
    assert_eq!(
        all_bodies(&admin),
        "alice:hello, bob:for bob only, alice:one",
        "nothing of the failed mutation was written"
    );
}

#[test]
fn row_level_security_decides_every_write() {
    let (admin, url) = chat_database();
    let server = start(&url);
    // Not a member of room 2.
    let outside = post(
        &server,
        "alice",
        r#"mutation { insertMessages(objects: [{roomId: 2, body: "let me in"}]) { id } }"#,
    );
    assert_eq!(codes(&outside), ["FORBIDDEN"]);
    // Writing as someone else.
    let impostor = post(
        &server,
        "alice",
        r#"mutation { insertMessages(objects: [{roomId: 1, body: "from bob", author: "bob"}]) { id } }"#,
    );
    assert_eq!(codes(&impostor), ["FORBIDDEN"]);
    // Another user's rows: nothing matches, nothing changes, nothing is told.
    let edit = post(
        &server,
        "alice",
        r#"mutation { updateMessages(filter: {}, set: {body: "mine now"}) { author body } }"#,
    );
    assert_eq!(
        edit,
        json!({"data": {"updateMessages": [{"author": "alice", "body": "mine now"}]}})
    );
    let erase = post(
        &server,
        "alice",
        r#"mutation { deleteMessages(filter: {author: {eq: "bob"}}) { id } }"#,
    );
    assert_eq!(erase, json!({"data": {"deleteMessages": []}}));
    assert_eq!(all_bodies(&admin), "alice:mine now, bob:for bob only");
    // Bob's own write in his room goes through.
    let bob = post(
        &server,
        "bob",
        r#"mutation { insertMessages(objects: [{roomId: 2, body: "still secret"}]) { author } }"#,
    );
    assert_eq!(
        bob,
        json!({"data": {"insertMessages": [{"author": "bob"}]}})
    );
}

#[test]
fn failures_have_stable_codes_and_values_stay_values() {
    let (admin, url) = chat_database();
    let server = start(&url);
    let too_long = "x".repeat(501);
    let check = post(
        &server,
        "alice",
        &format!(
            r#"mutation {{ updateMessages(filter: {{}}, set: {{body: "{too_long}"}}) {{ id }} }}"#
        ),
    );
    assert_eq!(codes(&check), ["CHECK_VIOLATION"]);
    let not_null = post(
        &server,
        "alice",
        r#"mutation { updateMessages(filter: {}, set: {body: null}) { id } }"#,
    );
    assert_eq!(codes(&not_null), ["NOT_NULL_VIOLATION"]);
    let bad_value = post(
        &server,
        "alice",
        r#"mutation { deleteMessages(filter: {createdAt: {eq: "the seventh"}}) { id } }"#,
    );
    assert_eq!(codes(&bad_value), ["INVALID_VALUE"]);
    let empty_set = post(
        &server,
        "alice",
        r#"mutation { updateMessages(filter: {}, set: {}) { id } }"#,
    );
    assert_eq!(codes(&empty_set), ["BAD_ARGUMENT"]);
    // Quotes, semicolons and comments are text like any other.
    let sneaky = r#"x'); DELETE FROM messages; -- " \ $1"#;
    let inert = post(
        &server,
        "alice",
        &format!(
            r#"mutation {{ insertMessages(objects: [{{roomId: 1, body: {}}}]) {{ body }} }}"#,
            serde_json::to_string(sneaky).unwrap()
        ),
    );
    let stored = inert["data"]["insertMessages"][0]["body"].as_str();
    assert_eq!(stored, Some(sneaky), "{inert}");
    assert_eq!(
        psql(&admin, "SELECT count(*) FROM messages"),
        "3",
        "nothing but the one row happened"
    );
    assert_eq!(
        codes(&post(&server, "alice", "mutation { nothing }")),
        ["GRAPHQL_VALIDATION_FAILED"]
    );
}

#[test]
fn the_schema_offers_what_the_roles_may_write() {
    let (_admin, url) = chat_database();
    let server = start(&url);
    let fields = |ty: &str| -> Vec<String> {
        let r = post(
            &server,
            "alice",
            &format!(
                r#"{{ __type(name: "{ty}") {{ fields {{ name }} inputFields {{ name }} }} }}"#
            ),
        );
        let t = &r["data"]["__type"];
        let list = if t["fields"].is_array() {
            &t["fields"]
        } else {
            &t["inputFields"]
        };
        list.as_array()
            .unwrap_or_else(|| panic!("{ty}: {r}"))
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect()
    };
    // What is granted for writing, in catalog order; no id (a sequence's), no generated
    // slug, no column without a grant.
    assert_eq!(
        fields("Mutation"),
        [
            "insertMessages",
            "updateMessages",
            "deleteMessages",
            "updateMyMessages",
            "insertOrders",
            "insertProducts"
        ]
    );
    assert_eq!(fields("MyMessagesSetInput"), ["body"]);
    assert_eq!(fields("MessagesInsertInput"), ["roomId", "author", "body"]);
    assert_eq!(fields("MessagesSetInput"), ["body", "edited"]);
    let root = post(&server, "alice", "{ __schema { mutationType { name } } }");
    assert_eq!(root["data"]["__schema"]["mutationType"]["name"], "Mutation");
}

#[test]
fn get_refuses_mutations() {
    let (admin, url) = chat_database();
    let server = start(&url);
    let query = "mutation%20%7B%20deleteMessages(filter%3A%20%7B%7D)%20%7B%20id%20%7D%20%7D";
    let request = format!(
        "GET /graphql?query={query} HTTP/1.1\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token("alice")
    );
    let response = exchange(&mut server.connect(), request.as_bytes());
    assert!(response.starts_with("HTTP/1.1 405"), "{response}");
    assert!(response.contains("Allow: POST\r\n"), "{response}");
    assert_eq!(all_bodies(&admin), "alice:hello, bob:for bob only");
}

fn ws(server: &Server, protocol: &str, sub: &str) -> Client {
    let mut c = Client::upgrade(server.connect(), Some(protocol)).0;
    let init = json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {}", token(sub))}});
    c.send_text(&init.to_string());
    assert_eq!(
        serde_json::from_str::<Value>(&c.recv_text()).unwrap()["type"],
        "connection_ack"
    );
    c
}

fn recv(c: &mut Client) -> Value {
    loop {
        let m: Value = serde_json::from_str(&c.recv_text()).unwrap();
        // The legacy protocol's keep-alive says nothing about operations.
        if m["type"] != "ka" {
            return m;
        }
    }
}

#[test]
fn over_both_websocket_protocols_and_subscribers_see_the_write() {
    let (_admin, url) = chat_database();
    let server = start(&url);
    let mut watcher = ws(&server, "graphql-transport-ws", "bob");
    let watch =
        "subscription { messages(filter: {roomId: {eq: 1}}, orderBy: {id: ASC}) { body author } }";
    watcher.send_text(
        &json!({"id": "w", "type": "subscribe", "payload": {"query": watch}}).to_string(),
    );
    let first = recv(&mut watcher);
    assert_eq!(
        first["payload"]["data"]["messages"],
        json!([{"body": "hello", "author": "alice"}])
    );

    let mut modern = ws(&server, "graphql-transport-ws", "alice");
    let insert = r#"mutation { insertMessages(objects: [{roomId: 1, body: "over ws"}]) { body } }"#;
    modern.send_text(
        &json!({"id": "m", "type": "subscribe", "payload": {"query": insert}}).to_string(),
    );
    assert_eq!(
        recv(&mut modern),
        json!({"id": "m", "type": "next", "payload": {"data": {"insertMessages": [{"body": "over ws"}]}}})
    );
    assert_eq!(recv(&mut modern), json!({"id": "m", "type": "complete"}));
    let seen = recv(&mut watcher);
    assert_eq!(
        seen["payload"]["data"]["messages"],
        json!([{"body": "hello", "author": "alice"}, {"body": "over ws", "author": "alice"}])
    );

    let mut legacy = ws(&server, "graphql-ws", "alice");
    let update = r#"mutation { updateMessages(filter: {body: {eq: "over ws"}}, set: {body: "legacy"}) { body } }"#;
    legacy
        .send_text(&json!({"id": "l", "type": "start", "payload": {"query": update}}).to_string());
    assert_eq!(
        recv(&mut legacy),
        json!({"id": "l", "type": "data", "payload": {"data": {"updateMessages": [{"body": "legacy"}]}}})
    );
    assert_eq!(recv(&mut legacy), json!({"id": "l", "type": "complete"}));
    let seen = recv(&mut watcher);
    assert_eq!(
        seen["payload"]["data"]["messages"],
        json!([{"body": "hello", "author": "alice"}, {"body": "legacy", "author": "alice"}])
    );
}

/// The chat of `scripts/demo`, set up as the script does: the demo's roles, `demo/chat.sql`,
/// the server logged in as `authenticator`, tokens from `scripts/demo-token`.
#[test]
fn the_demo_chat_works_with_the_demo_tokens() {
    let (_admin, server) = demo_chat(&[("POSTRUST_ANON_ROLE", "web_user")]);
    let (alice, bob) = (demo_token("alice"), demo_token("bob"));
    let as_user = |token: Option<&str>, query: &str| -> Value {
        let response = server.post_graphql(token, query);
        serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    };
    let posted = as_user(
        Some(&alice),
        r#"mutation { insertMessages(objects: [{roomId: 1, body: "hi bob"}]) { author body room { name } } }"#,
    );
    assert_eq!(
        posted,
        json!({"data": {"insertMessages": [{"author": "alice", "body": "hi bob", "room": {"name": "lobby"}}]}})
    );
    let read = |token: &str| {
        as_user(
            Some(token),
            "{ messages(orderBy: {id: ASC}) { author body } }",
        )["data"]["messages"]
            .clone()
    };
    assert_eq!(
        read(&alice),
        json!([{"author": "alice", "body": "Welcome to the lobby!"}, {"author": "alice", "body": "hi bob"}])
    );
    assert_eq!(
        read(&bob),
        json!([
            {"author": "alice", "body": "Welcome to the lobby!"},
            {"author": "bob", "body": "Deploy at noon."},
            {"author": "alice", "body": "hi bob"}
        ])
    );
    let gate_crash = as_user(
        Some(&alice),
        r#"mutation { insertMessages(objects: [{roomId: 2, body: "let me in"}]) { id } }"#,
    );
    assert_eq!(codes(&gate_crash), ["FORBIDDEN"]);
    // Without a token: the shop as the docs page shows it, and no one's messages.
    let anonymous = as_user(None, "{ salesDashboard { orderCount } messages { id } }");
    assert_eq!(
        anonymous,
        json!({"data": {"salesDashboard": {"orderCount": "4"}, "messages": []}})
    );
}

#[test]
fn every_type_of_value_goes_in_as_written() {
    let (admin, url) = chat_database();
    let server = start(&url);
    let product = post(
        &server,
        "alice",
        r#"mutation { insertProducts(objects: [{
             sku: "00000000-0000-4000-8000-0000000000aa", name: "Thing", price: "1234567.89",
             weightKg: 0.125, tags: ["new", "it's \"quoted\""], attributes: {color: "blue", sizes: [1, 2], nested: {ok: true}},
             releasedOn: "2026-02-01"}]) {
             sku name price weightKg tags attributes releasedOn } }"#,
    );
    assert_eq!(
        product,
        json!({"data": {"insertProducts": [{
            "sku": "00000000-0000-4000-8000-0000000000aa", "name": "Thing", "price": "1234567.89",
            "weightKg": 0.125, "tags": ["new", "it's \"quoted\""],
            "attributes": {"color": "blue", "nested": {"ok": true}, "sizes": [1, 2]},
            "releasedOn": "2026-02-01"}]}})
    );
    let order = post(
        &server,
        "alice",
        r#"mutation { insertOrders(objects: [{customerId: 2, total: "19.99", priority: high, note: null}]) {
             total priority note status customer { name } } }"#,
    );
    assert_eq!(
        order,
        json!({"data": {"insertOrders": [{"total": "19.99", "priority": "high", "note": null,
            "status": "pending", "customer": {"name": "Globex"}}]}})
    );
    let orphan = post(
        &server,
        "alice",
        r#"mutation { insertOrders(objects: [{customerId: 999, total: "1"}]) { id } }"#,
    );
    assert_eq!(codes(&orphan), ["FOREIGN_KEY_VIOLATION"]);
    let bad_uuid = post(
        &server,
        "alice",
        r#"mutation { insertProducts(objects: [{sku: "not-a-uuid", name: "X", price: "1"}]) { id } }"#,
    );
    assert_eq!(codes(&bad_uuid), ["INVALID_VALUE"]);
    assert_eq!(
        psql(
            &admin,
            "SELECT count(*) FROM products WHERE name IN ('Thing', 'X')"
        ),
        "1"
    );
}

#[test]
fn views_postgresql_writes_through_get_mutations_under_the_same_policies() {
    let (admin, url) = chat_database();
    let server = start(&url);
    let mine = post(
        &server,
        "alice",
        r#"mutation { updateMyMessages(filter: {}, set: {body: "edited via view"}) { id body } }"#,
    );
    assert_eq!(
        mine,
        json!({"data": {"updateMyMessages": [{"id": "1", "body": "edited via view"}]}})
    );
    let bobs = post(
        &server,
        "bob",
        r#"mutation { updateMyMessages(filter: {}, set: {body: "bob was here"}) { id } }"#,
    );
    assert_eq!(bobs, json!({"data": {"updateMyMessages": [{"id": "2"}]}}));
    assert_eq!(
        all_bodies(&admin),
        "alice:edited via view, bob:bob was here"
    );
}

#[test]
fn nested_fields_read_the_database_after_the_write() {
    let (_admin, url) = chat_database();
    let server = start(&url);
    let nested = "room { messages(orderBy: {id: ASC}) { body } }";
    let inserted = post(
        &server,
        "alice",
        &format!(
            r#"mutation {{ insertMessages(objects: [{{roomId: 1, body: "new"}}]) {{ body {nested} }} }}"#
        ),
    );
    assert_eq!(
        inserted["data"]["insertMessages"][0]["room"]["messages"],
        json!([{"body": "hello"}, {"body": "new"}]),
        "{inserted}"
    );
    let updated = post(
        &server,
        "alice",
        &format!(
            r#"mutation {{ updateMessages(filter: {{body: {{eq: "new"}}}}, set: {{body: "edited"}}) {{ body {nested} }} }}"#
        ),
    );
    assert_eq!(
        updated["data"]["updateMessages"][0],
        json!({"body": "edited", "room": {"messages": [{"body": "hello"}, {"body": "edited"}]}}),
        "{updated}"
    );
    let deleted = post(
        &server,
        "alice",
        &format!(
            r#"mutation {{ deleteMessages(filter: {{body: {{eq: "edited"}}}}) {{ body {nested} }} }}"#
        ),
    );
    assert_eq!(
        deleted["data"]["deleteMessages"][0],
        json!({"body": "edited", "room": {"messages": [{"body": "hello"}]}}),
        "the deleted row as it was, its room as it is now: {deleted}"
    );
}

#[test]
fn a_write_never_widens_past_what_its_filter_says() {
    let (admin, url) = chat_database();
    let server = start(&url);
    let with_vars = |query: &str, variables: Value| -> Value {
        let body = json!({"query": query, "variables": variables}).to_string();
        let request = format!(
            "POST /graphql HTTP/1.1\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            token("alice"),
            body.len()
        );
        let response = exchange(&mut server.connect(), request.as_bytes());
        serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    };
    // An unset or null variable would drop its condition and leave "every row".
    let by_id = "mutation($id: BigInt) { deleteMessages(filter: {id: {eq: $id}}) { id } }";
    assert_eq!(codes(&with_vars(by_id, json!({}))), ["BAD_ARGUMENT"]);
    assert_eq!(
        codes(&with_vars(by_id, json!({"id": null}))),
        ["BAD_ARGUMENT"]
    );
    let whole =
        "mutation($f: MessagesFilter = {id: {eq: \"0\"}}) { deleteMessages(filter: $f) { id } }";
    assert_eq!(
        codes(&with_vars(whole, json!({"f": null}))),
        ["BAD_ARGUMENT"]
    );
    let empty_condition =
        r#"mutation { updateMessages(filter: {id: {}}, set: {edited: true}) { id } }"#;
    assert_eq!(
        codes(&with_vars(empty_condition, json!({}))),
        ["BAD_ARGUMENT"]
    );
    // A nullable variable in a non-null place is refused by validation; with a default it
    // passes validation, and an explicit null for it is refused when the SQL is built.
    let null_row = "mutation($o: MessagesInsertInput) { insertMessages(objects: [$o]) { id } }";
    assert_eq!(
        codes(&with_vars(null_row, json!({"o": null}))),
        ["GRAPHQL_VALIDATION_FAILED"]
    );
    let null_row = r#"mutation($o: MessagesInsertInput = {roomId: 1, body: "x"}) {
        insertMessages(objects: [$o]) { id } }"#;
    assert_eq!(
        codes(&with_vars(null_row, json!({"o": null}))),
        ["BAD_ARGUMENT"]
    );
    assert_eq!(all_bodies(&admin), "alice:hello, bob:for bob only");
    // Two rows of one upsert on the same key.
    let twice = post(
        &server,
        "alice",
        r#"mutation { insertMessages(objects: [{roomId: 1, body: "dup"}, {roomId: 1, body: "dup"}],
             onConflict: {constraint: messages_room_id_body_key, updateColumns: [body]}) { id } }"#,
    );
    assert_eq!(codes(&twice), ["BAD_ARGUMENT"]);
    assert_eq!(all_bodies(&admin), "alice:hello, bob:for bob only");
}

#[test]
fn a_mutation_as_a_whole_gets_the_statement_timeout() {
    let (admin, url) = chat_database();
    // Each insert takes 0.2 s: under the 0.5 s bound alone, over it three times over.
    psql(
        &admin,
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(0.2); RETURN NEW; END $$; \
         CREATE TRIGGER slow BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION slow()",
    );
    let server = Server::start_on(
        &url,
        &[
            ("POSTRUST_JWT_SECRET", SECRET),
            ("POSTRUST_STATEMENT_TIMEOUT_MS", "500"),
        ],
    );
    let one = post(
        &server,
        "alice",
        r#"mutation { insertMessages(objects: [{roomId: 1, body: "one"}]) { body } }"#,
    );
    assert_eq!(one, json!({"data": {"insertMessages": [{"body": "one"}]}}));
    let three = post(
        &server,
        "alice",
        r#"mutation {
             a: insertMessages(objects: [{roomId: 1, body: "a"}]) { body }
             b: insertMessages(objects: [{roomId: 1, body: "b"}]) { body }
             c: insertMessages(objects: [{roomId: 1, body: "c"}]) { body } }"#,
    );
    assert_eq!(codes(&three), ["STATEMENT_TIMEOUT"]);
    // The transaction was cancelled and rolled back (give the cancel a moment to land).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let bodies = all_bodies(&admin);
        let busy = psql(
            &admin,
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND state = 'active' \
             AND query LIKE 'WITH m AS (INSERT%'",
        );
        if busy == "0" {
            assert_eq!(bodies, "alice:hello, bob:for bob only, alice:one");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running: {bodies}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
