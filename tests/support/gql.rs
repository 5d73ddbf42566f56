//! Runs the GraphQL engine against a real database: loads the demo SQL, reads the catalog
//! with the introspection query, and executes compiled statements through psql until the
//! wire client is wired in.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use postrust::catalog::{Catalog, INTROSPECTION_SQL};
use postrust::config::Config;
use postrust::engine::{Engine, Plan, Prepared, schemas_param};
use postrust::graphql::GraphQLError;

use super::pg::cluster;

/// Runs a script through psql (UTC, so timestamps compare exactly); returns its output.
pub fn psql(url: &str, script: &str) -> String {
    let mut child = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            url,
            "-f",
            "-",
        ])
        .env("PGTZ", "UTC")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run psql");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "psql failed: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `value` as a dollar-quoted literal whose tag does not occur in it.
pub fn dollar_quote(value: &str) -> String {
    let mut n = 0;
    loop {
        let tag = format!("$v{n}$");
        if !value.contains(&tag) {
            return format!("{tag}{value}{tag}");
        }
        n += 1;
    }
}

/// Executes a prepared plan; returns the `data` JSON text.
pub fn execute(url: &str, prepared: &Prepared) -> String {
    match &prepared.plan {
        Plan::Immediate(data) => data.clone(),
        Plan::Sql { sql, params } => {
            let types = vec!["text"; params.len()].join(", ");
            let values: Vec<String> = params.iter().map(|p| dollar_quote(p)).collect();
            let (decl, args) = if params.is_empty() {
                (String::new(), String::new())
            } else {
                (format!("({types})"), format!("({})", values.join(", ")))
            };
            psql(url, &format!("PREPARE q{decl} AS {sql};\nEXECUTE q{args};"))
        }
        Plan::Mutation(_) => panic!("mutations run through the server (tests/mutations.rs)"),
    }
}

pub fn demo_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("demo")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

/// A fresh database with the demo schema and data plus `extra` SQL.
pub fn demo_database(extra: &str) -> String {
    let url = cluster().fresh_database("gql");
    psql(
        &url,
        &format!(
            "{}\n{}\n{extra}",
            demo_file("schema.sql"),
            demo_file("data.sql")
        ),
    );
    url
}

/// The catalog of `schemas` in the database at `url`.
pub fn catalog(url: &str, schemas: &[&str]) -> Catalog {
    let list: Vec<String> = schemas.iter().map(|s| s.to_string()).collect();
    let json = psql(
        url,
        &format!(
            "PREPARE c(text[]) AS {INTROSPECTION_SQL};\nEXECUTE c({});",
            dollar_quote(&schemas_param(&list))
        ),
    );
    Catalog::from_json(&json).unwrap()
}

pub fn engine(url: &str, schemas: &[&str]) -> Engine {
    let config = Config::from_lookup(|_| None).unwrap();
    Engine::new(catalog(url, schemas), &config)
}

/// Prepares and runs `query`; returns the `data` JSON text.
pub fn run(engine: &Engine, url: &str, query: &str, variables: Option<&str>) -> String {
    let vars = variables.map(|v| {
        let mut bytes = v.as_bytes().to_vec();
        simd_json::to_owned_value(&mut bytes).unwrap()
    });
    let prepared = engine
        .prepare(query, vars.as_ref(), None)
        .unwrap_or_else(|e| panic!("{query}: {}", GraphQLError::list_json(&e)));
    execute(url, &prepared)
}

pub use postrust::graphql::json::compact;

/// Asserts that `query` returns exactly `expected` (compared without whitespace).
pub fn assert_data(engine: &Engine, url: &str, query: &str, vars: Option<&str>, expected: &str) {
    let got = compact(&run(engine, url, query, vars));
    assert_eq!(got, compact(expected), "\nquery: {query}");
}
