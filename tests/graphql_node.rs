//! graphql-js (in `tests/node`) checks our introspection result and the docs-page
//! operations: `buildClientSchema`, `validateSchema`, `validate`.

mod support;

use std::path::PathBuf;
use std::process::Command;

use postrust::engine::Plan;
use postrust::graphql::json::quote;
use support::docs::OPERATIONS;
use support::gql::{demo_database, engine};

fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// Installs the pinned graphql package when `node_modules` is missing.
fn npm_ci() {
    if node_dir().join("node_modules/graphql").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(node_dir())
        .status()
        .expect("npm is needed for the graphql-js checks");
    assert!(status.success(), "npm ci failed in tests/node");
}

/// Mistakes that Postrust and graphql-js must both reject, with the same message.
const REJECTED: &[&str] = &[
    "{ orders { nope } }",
    "{ orders(first: 1) { id } }",
    "{ orders { customer } }",
    "{ orders { id { x } } }",
    "subscription { users { id } orders { id } }",
    "subscription S { __typename }",
    "query Q($n: Int) { users { id } }",
    "{ users(limit: $n) { id } }",
    "query ($n: String) { users(limit: $n) { id } }",
    "{ orders(limit: \"ten\") { id } }",
    "{ orders(limit: 3000000000) { id } }",
    "{ orders(filter: { status: { eq: 5 } }) { id } }",
    "{ orders(filter: { nope: { eq: 5 } }) { id } }",
    "{ orders(filter: { priority: { eq: URGENT } }) { id } }",
    "{ orders(filter: { priority: { eq: \"high\" } }) { id } }",
    "{ orders(filter: { customerId: { isNull: 1 } }) { id } }",
    "{ orders(limit: 1, limit: 2) { id } }",
    "{ users { id @skip } }",
    "{ users { id @nope } }",
    "{ users { id @skip(if: true) @skip(if: false) } }",
    "query @skip(if: true) { users { id } }",
    "{ users { ...F } } fragment F on Orders { id }",
    "{ users { ...G } }",
    "{ users { id } } fragment F on Users { id }",
    "{ users { ...A } } fragment A on Users { ...B } fragment B on Users { ...A }",
    "{ users { ... on Nope { id } } }",
    "{ users { ... on Int { id } } }",
    "{ users { a: id a: name } }",
    "{ orders(limit: 1) { id } orders(limit: 2) { id } }",
    "query ($f: Users) { users { id } }",
    "{ __type { name } }",
];

#[test]
fn graphql_js_accepts_our_schema_and_the_docs_operations() {
    npm_ci();
    let out = Command::new("node")
        .arg("introspection-query.mjs")
        .current_dir(node_dir())
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let introspection_query = String::from_utf8(out.stdout).unwrap();

    let url = demo_database("");
    let e = engine(&url, &["public"]);
    let prepared = e.prepare(&introspection_query, None, None).unwrap();
    let Plan::Immediate(data) = prepared.plan else {
        panic!("introspection needs no SQL");
    };
    let mut fixture = format!("{{\"introspection\":{data},\"operations\":[");
    for (i, op) in OPERATIONS.iter().enumerate() {
        if i > 0 {
            fixture.push(',');
        }
        quote(op, &mut fixture);
    }
    fixture.push_str("],\"rejected\":[");
    for (i, query) in REJECTED.iter().enumerate() {
        let errors = e.prepare(query, None, None).expect_err(query);
        let message = &errors[0].message;
        if i > 0 {
            fixture.push(',');
        }
        fixture.push_str("{\"query\":");
        quote(query, &mut fixture);
        fixture.push_str(",\"message\":");
        quote(message, &mut fixture);
        fixture.push('}');
    }
    fixture.push_str("]}");
    let path = std::env::temp_dir().join(format!(
        "postrust-introspection-{}.json",
        std::process::id()
    ));
    std::fs::write(&path, fixture).unwrap();
    let out = Command::new("node")
        .args(["--test", "schema.test.mjs"])
        .env("POSTRUST_NODE_FIXTURE", &path)
        .current_dir(node_dir())
        .output()
        .expect("run node --test");
    let _ = std::fs::remove_file(&path);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "graphql-js checks failed:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // All three checks ran: none was skipped or left out.
    assert!(report.contains("# pass 3"), "{report}");
}
