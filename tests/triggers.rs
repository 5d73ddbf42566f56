//! The change triggers against a real PostgreSQL: the docs page's function exactly as it is
//! written there, and the project's own, including a row too large for NOTIFY.

mod support;

use std::process::Command;

use postrust::change::{self, Operation};
use simd_json::prelude::*;
use support::pg;

/// The trigger function from the product docs page, verbatim.
const DOCS_TRIGGER: &str = r#"
-- Notification function
CREATE OR REPLACE FUNCTION notify_table_change()
RETURNS TRIGGER AS $$
BEGIN
PERFORM pg_notify(
'table_change',
json_build_object(
'table', TG_TABLE_NAME,
'operation', TG_OP,
'data', CASE
WHEN TG_OP = 'DELETE' THEN row_to_json(OLD)
ELSE row_to_json(NEW)
END
)::text
);
RETURN COALESCE(NEW, OLD);
END;
$$ LANGUAGE plpgsql;
-- Apply to table
CREATE TRIGGER orders_notify
AFTER INSERT OR UPDATE OR DELETE ON orders
FOR EACH ROW EXECUTE FUNCTION notify_table_change();
"#;

const TABLE: &str = "CREATE TABLE orders (id serial PRIMARY KEY, status text NOT NULL, note text);";

/// Runs `script` in one psql session after `LISTEN table_change`, and returns the payloads
/// of the notifications psql reports, in order.
fn notifications(url: &str, script: &str) -> Vec<String> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", url])
        .arg("-c")
        .arg("LISTEN table_change")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .filter_map(|l| {
            let rest =
                l.strip_prefix("Asynchronous notification \"table_change\" with payload \"")?;
            Some(rest[..rest.rfind("\" received from server process")?].to_owned())
        })
        .collect()
}

fn decode(payload: &str) -> change::Change {
    change::decode(&mut payload.as_bytes().to_vec()).unwrap_or_else(|d| panic!("{payload}: {d:?}"))
}

#[test]
fn the_docs_page_trigger_works_unchanged() {
    let cluster = pg::cluster();
    let url = cluster.fresh_database("docs_trigger");
    cluster.psql(&url, TABLE);
    cluster.psql(&url, DOCS_TRIGGER);
    let payloads = notifications(
        &url,
        "INSERT INTO orders (status) VALUES ('pending'); \
         UPDATE orders SET status = 'paid'; DELETE FROM orders;",
    );
    assert_eq!(payloads.len(), 3, "{payloads:?}");
    let ops: Vec<_> = payloads.iter().map(|p| decode(p)).collect();
    assert_eq!(ops[0].operation, Operation::Insert);
    assert_eq!(ops[0].table, "orders");
    assert_eq!(ops[0].schema, None);
    let status = |row: &Option<simd_json::OwnedValue>| {
        row.as_ref()
            .unwrap()
            .get("status")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    assert_eq!(status(&ops[0].new).as_deref(), Some("pending"));
    assert_eq!(ops[1].operation, Operation::Update);
    assert_eq!(status(&ops[1].new).as_deref(), Some("paid"));
    assert_eq!(ops[2].operation, Operation::Delete);
    assert_eq!(status(&ops[2].old).as_deref(), Some("paid"));
}

#[test]
fn the_project_trigger_adds_schema_old_rows_and_survives_large_rows() {
    let cluster = pg::cluster();
    let url = cluster.fresh_database("own_trigger");
    cluster.psql(&url, TABLE);
    let sql = Command::new(env!("CARGO_BIN_EXE_postrust"))
        .args(["triggers", "sql", "orders"])
        .output()
        .unwrap();
    assert!(sql.status.success());
    cluster.psql(&url, &String::from_utf8(sql.stdout).unwrap());
    // Twice: attaching again replaces the triggers instead of failing or doubling them.
    let again = Command::new(env!("CARGO_BIN_EXE_postrust"))
        .args(["triggers", "sql", "public.orders"])
        .output()
        .unwrap();
    cluster.psql(&url, &String::from_utf8(again.stdout).unwrap());

    let big = "x".repeat(20_000);
    let payloads = notifications(
        &url,
        &format!(
            "INSERT INTO orders (status) VALUES ('pending'); \
             UPDATE orders SET status = 'paid' WHERE id = 1; \
             INSERT INTO orders (status, note) VALUES ('big', '{big}'); \
             UPDATE orders SET note = note || 'y' WHERE id = 2; \
             DELETE FROM orders WHERE id = 1; \
             TRUNCATE orders;"
        ),
    );
    assert_eq!(payloads.len(), 6, "{payloads:?}");
    let changes: Vec<_> = payloads.iter().map(|p| decode(p)).collect();
    assert!(
        changes
            .iter()
            .all(|c| c.schema.as_deref() == Some("public") && c.table == "orders")
    );

    let update = &changes[1];
    let field = |row: &Option<simd_json::OwnedValue>, key: &str| {
        row.as_ref().and_then(|r| r.get(key)).map(|v| v.encode())
    };
    assert_eq!(
        field(&update.old, "status").as_deref(),
        Some(r#""pending""#)
    );
    assert_eq!(field(&update.new, "status").as_deref(), Some(r#""paid""#));
    assert!(!update.truncated);

    // The 20 kB row: the write succeeded and the payload carries the key alone.
    for c in &changes[2..4] {
        assert!(c.truncated, "{c:?}");
        assert!(payloads.iter().all(|p| p.len() < 8000));
        assert_eq!(field(&c.new, "id").as_deref(), Some("2"));
        assert_eq!(field(&c.new, "note"), None);
    }
    assert_eq!(field(&changes[3].old, "id").as_deref(), Some("2"));

    assert_eq!(changes[4].operation, Operation::Delete);
    assert_eq!(field(&changes[4].old, "id").as_deref(), Some("1"));
    assert_eq!(changes[5].operation, Operation::Truncate);
    assert_eq!(cluster.psql(&url, "SELECT count(*) FROM orders"), "0");
}

/// Runs `postrust triggers install ARGS` against `url`; returns (success, stdout, stderr).
fn install(url: &str, env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_postrust"))
        .args(["triggers", "install"])
        .args(args)
        .env("POSTRUST_DATABASE_URL", url)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

/// `schema.table` of every table carrying the project's row trigger.
fn triggered(url: &str) -> Vec<String> {
    let list = pg::cluster().psql(
        url,
        "SELECT string_agg(c.relnamespace::regnamespace || '.' || c.relname, ',' ORDER BY 1) \
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
         WHERE t.tgname = 'postrust_notify_row'",
    );
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn triggers_install_attaches_the_function_to_named_or_all_exposed_tables() {
    let cluster = pg::cluster();
    let url = cluster.fresh_database("install");
    cluster.psql(
        &url,
        &format!(
            "{TABLE} CREATE SCHEMA app; CREATE TABLE app.items (id int PRIMARY KEY); \
                  CREATE TABLE app.tags (id int PRIMARY KEY); CREATE VIEW app.v AS SELECT 1;"
        ),
    );

    let (ok, out, err) = install(&url, &[], &["orders"]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "installed postrust.notify_change() on public.orders, notifying on channel \"table_change\"\n"
    );
    assert_eq!(triggered(&url), ["public.orders"]);
    let payloads = notifications(&url, "INSERT INTO orders (status) VALUES ('pending');");
    assert_eq!(payloads.len(), 1, "{payloads:?}");
    assert_eq!(decode(&payloads[0]).schema.as_deref(), Some("public"));

    // No table named: every table of the exposed schemas (views are not tables); again
    // over an installed one, which is replaced rather than doubled.
    let (ok, out, err) = install(&url, &[("POSTRUST_DB_SCHEMAS", "app,public")], &[]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(
        out.contains("on app.items,") && out.contains("on app.tags,"),
        "{out}"
    );
    assert_eq!(triggered(&url), ["app.items", "app.tags", "public.orders"]);
    let payloads = notifications(&url, "UPDATE orders SET status = 'paid';");
    assert_eq!(payloads.len(), 1, "one trigger per table: {payloads:?}");
}

#[test]
fn triggers_install_fails_with_a_message_and_changes_nothing() {
    let cluster = pg::cluster();
    let url = cluster.fresh_database("install_fail");
    cluster.psql(&url, TABLE);
    // One table does not exist: the whole installation rolls back.
    let (ok, out, err) = install(&url, &[], &["orders", "nope"]);
    assert!(!ok);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("public.nope") && err.contains("nothing was changed"),
        "{err}"
    );
    assert!(triggered(&url).is_empty());
    assert_eq!(
        cluster.psql(
            &url,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'postrust'"
        ),
        "0"
    );

    let (ok, _, err) = install(&url, &[("POSTRUST_DB_SCHEMAS", "empty")], &[]);
    assert!(!ok);
    assert!(err.contains("no tables in the exposed schemas"), "{err}");

    let (ok, _, err) = install(&url, &[], &["a.b.c"]);
    assert!(!ok);
    assert!(err.contains("is not a table name"), "{err}");

    let nowhere = format!(
        "postgres://postgres@127.0.0.1:{}/x",
        support::server::free_port()
    );
    let (ok, _, err) = install(&nowhere, &[], &["orders"]);
    assert!(!ok);
    assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
}

#[test]
fn triggers_install_replaces_the_docs_page_trigger_and_keeps_others() {
    let cluster = pg::cluster();
    let url = cluster.fresh_database("install_replace");
    cluster.psql(
        &url,
        &format!(
            "{TABLE} {DOCS_TRIGGER}
             CREATE FUNCTION audit() RETURNS trigger AS $$
             BEGIN PERFORM pg_notify('audit', TG_OP); RETURN NULL; END $$ LANGUAGE plpgsql;
             CREATE TRIGGER orders_audit AFTER INSERT ON orders
               FOR EACH ROW EXECUTE FUNCTION audit();"
        ),
    );
    let (ok, out, err) = install(&url, &[], &["orders"]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "installed postrust.notify_change() on public.orders, notifying on channel \
         \"table_change\"; replaced trigger orders_notify (notify_table_change()), which \
         notified on the same channel\n"
    );
    let remaining = cluster.psql(
        &url,
        "SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger \
         WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal",
    );
    assert_eq!(
        remaining,
        "orders_audit,postrust_notify_row,postrust_notify_truncate"
    );
    // One notification per change, and a row too large for NOTIFY is written.
    let payloads = notifications(
        &url,
        "INSERT INTO orders (status) VALUES ('pending');\n\
         INSERT INTO orders (status, note) VALUES ('pending', repeat('x', 9000));",
    );
    assert_eq!(payloads.len(), 2, "{payloads:?}");
    assert_eq!(cluster.psql(&url, "SELECT count(*) FROM orders"), "2");
}

#[test]
fn a_subscription_to_a_table_without_a_change_trigger_is_refused_not_left_silent() {
    use support::server::Server;
    use support::ws::Client;
    let url = support::gql::demo_database(
        "CREATE TABLE quiet (id int PRIMARY KEY); INSERT INTO quiet VALUES (1);",
    );
    let subscribe = |server: &Server| {
        let (mut ws, _) = Client::upgrade(server.connect(), Some("graphql-transport-ws"));
        ws.send_text(r#"{"type":"connection_init"}"#);
        assert_eq!(ws.recv_text(), r#"{"type":"connection_ack"}"#);
        ws.send_text(
            r#"{"id":"q","type":"subscribe","payload":{"query":"subscription { quiet { id } }"}}"#,
        );
        ws.recv_text()
    };
    let server = Server::start_on(&url, &[]);
    let refused = subscribe(&server);
    assert!(refused.contains(r#""type":"error""#), "{refused}");
    assert!(refused.contains("NO_CHANGE_TRIGGER"), "{refused}");
    assert!(refused.contains("public.quiet"), "{refused}");
    // A query of it works, and so does a subscription to a table with a trigger.
    let query = server.post_graphql(None, "{ quiet { id } }");
    assert!(
        query.ends_with(r#"{"data":{"quiet":[{"id":1}]}}"#),
        "{query}"
    );
    drop(server);

    let server = Server::start_on(&url, &[("POSTRUST_SUBSCRIBE_WITHOUT_TRIGGERS", "true")]);
    let accepted = subscribe(&server);
    assert_eq!(
        accepted,
        r#"{"id":"q","type":"next","payload":{"data":{"quiet":[{"id":1}]}}}"#
    );
}
