//! Hostile input through filter values, variables, aliases and operation names stays inert:
//! it only ever reaches PostgreSQL as a bind parameter, and finds nothing.

mod support;

use postrust::engine::Plan;
use support::gql::{assert_data, demo_database, engine, execute, psql};

const PAYLOADS: &[&str] = &[
    "'; DROP TABLE orders; --",
    "pending' OR '1'='1",
    "\" OR 1=1 --",
    "$v0$; DROP TABLE orders; $v0$",
    "$$; DROP TABLE orders; $$",
    "\\'; DROP TABLE orders; --",
    "%' OR 'x' LIKE '%",
];

#[test]
fn filter_values_and_variables_are_inert() {
    let url = demo_database("");
    let e = engine(&url, &["public"]);
    for payload in PAYLOADS {
        let mut literal = String::new();
        postrust::graphql::json::quote(payload, &mut literal);
        let q = format!("{{ orders(filter: {{ status: {{ eq: {literal} }} }}) {{ id }} }}");
        assert_data(&e, &url, &q, None, r#"{"orders":[]}"#);
        let q = format!("{{ orders(filter: {{ note: {{ in: [{literal}, \"x\"] }} }}) {{ id }} }}");
        assert_data(&e, &url, &q, None, r#"{"orders":[]}"#);
        let vars = format!("{{\"f\": {{\"or\": [{{\"status\": {{\"like\": {literal}}}}}]}}}}");
        assert_data(
            &e,
            &url,
            "query Evil($f: OrdersFilter) { orders(filter: $f) { id } }",
            Some(&vars),
            r#"{"orders":[]}"#,
        );
        let prepared = e
            .prepare(
                &format!("{{ orders(filter: {{ note: {{ like: {literal} }} }}) {{ id }} }}"),
                None,
                None,
            )
            .unwrap();
        let Plan::Sql { sql, params } = &prepared.plan else {
            panic!("needs SQL")
        };
        assert!(!sql.contains(payload), "{sql}");
        assert!(params.iter().any(|p| p == payload));
        execute(&url, &prepared);
    }
    assert_eq!(psql(&url, "SELECT count(*) FROM orders"), "5");
}

#[test]
fn names_cannot_carry_sql() {
    let url = demo_database("");
    let e = engine(&url, &["public"]);
    // Aliases and operation names are GraphQL names: the parser refuses anything else.
    assert!(e.prepare("{ \"x'\": orders { id } }", None, None).is_err());
    let err = e
        .prepare(
            "query A { users { id } }",
            None,
            Some("A'; DROP TABLE users; --"),
        )
        .unwrap_err();
    assert_eq!(
        err[0].message,
        "Unknown operation named \"A'; DROP TABLE users; --\"."
    );
    assert_data(
        &e,
        &url,
        "query DROP_TABLE_users { select: users(limit: 1) { from: id } }",
        None,
        r#"{"select":[{"from":1}]}"#,
    );
    assert_eq!(psql(&url, "SELECT count(*) FROM users"), "3");
}

#[test]
fn introspection_mixes_with_table_fields() {
    let url = demo_database("");
    let e = engine(&url, &["public"]);
    assert_data(
        &e,
        &url,
        r#"{ __typename users(limit: 1) { __typename id }
             t: __type(name: "OrderPriority") { kind enumValues { name } }
             salesDashboard { topProducts { __typename name } } }"#,
        None,
        r#"{"__typename":"Query","users":[{"__typename":"Users","id":1}],
            "t":{"kind":"ENUM","enumValues":[{"name":"low"},{"name":"normal"},{"name":"high"}]},
            "salesDashboard":{"topProducts":[{"__typename":"ProductSales","name":"Widget"},
              {"__typename":"ProductSales","name":"Gadget"},{"__typename":"ProductSales","name":"Gizmo"}]}}"#,
    );
    let pure = e
        .prepare("{ __typename __type(name: \"Nope\") { name } }", None, None)
        .unwrap();
    assert_eq!(
        pure.plan,
        Plan::Immediate(r#"{"__typename":"Query","__type":null}"#.into())
    );
}
