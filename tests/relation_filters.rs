//! Filters across relations: a many-to-one field takes the filter of the row it points at
//! (`orders(filter: { customer: { vip: { eq: true } } })`), a one-to-many field `some`,
//! `every` and `none` of the rows pointing here. Each case is compared with SQL written
//! here; a change to the related table reaches a live query filtering on it; and under
//! row-level security a filter sees only the related rows the role may read.

mod support;

use serde_json::{Value, json};
use support::gql::{demo_database, engine, psql, run};
use support::live::{next_data, open_socket, subscribe_message};
use support::server::{Server, demo_chat, demo_token};

/// The ids `query` returns under `key`, in order.
fn ids(e: &postrust::engine::Engine, url: &str, key: &str, query: &str) -> Vec<i64> {
    let data: Value = serde_json::from_str(&run(e, url, query, None)).unwrap();
    data[key]
        .as_array()
        .unwrap_or_else(|| panic!("{query}: {data}"))
        .iter()
        // `bigint` ids come as strings.
        .map(|row| {
            let id = &row["id"];
            id.as_i64()
                .or_else(|| id.as_str().and_then(|t| t.parse().ok()))
                .unwrap_or_else(|| panic!("no id in {row}"))
        })
        .collect()
}

/// The ids `sql` selects (one integer column), in order.
fn sql_ids(url: &str, sql: &str) -> Vec<i64> {
    psql(url, sql)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().unwrap())
        .collect()
}

#[test]
fn relation_filters_select_what_the_same_sql_does() {
    let url = demo_database(
        // A customer without orders, and an order with a note on a second customer, so
        // that `every` and `none` have something to tell apart.
        "INSERT INTO customers (name, email, vip) VALUES ('Hooli', 'x@hooli.test', true);",
    );
    let e = engine(&url, &["public"]);
    let cases: &[(&str, &str, &str)] = &[
        (
            "orders",
            "{ orders(filter: { customer: { vip: { eq: true } } }) { id } }",
            "SELECT o.id FROM orders o JOIN customers c ON c.id = o.customer_id \
             WHERE c.vip ORDER BY o.id",
        ),
        (
            "orders",
            r#"{ orders(filter: { or: [{ customer: { name: { eq: "Globex" } } }, { status: { eq: "shipped" } }] }) { id } }"#,
            "SELECT o.id FROM orders o JOIN customers c ON c.id = o.customer_id \
             WHERE c.name = 'Globex' OR o.status = 'shipped' ORDER BY o.id",
        ),
        (
            "customers",
            r#"{ customers(filter: { orders: { some: { status: { eq: "pending" } } } }) { id } }"#,
            "SELECT c.id FROM customers c WHERE EXISTS (SELECT FROM orders o \
             WHERE o.customer_id = c.id AND o.status = 'pending') ORDER BY c.id",
        ),
        (
            "customers",
            // Every order has a note: null notes do not count as matching.
            "{ customers(filter: { orders: { every: { note: { isNull: false } } } }) { id } }",
            "SELECT c.id FROM customers c WHERE NOT EXISTS (SELECT FROM orders o \
             WHERE o.customer_id = c.id AND o.note IS NULL) ORDER BY c.id",
        ),
        (
            "customers",
            r#"{ customers(filter: { orders: { every: { note: { eq: "Fragile" } } } }) { id } }"#,
            "SELECT c.id FROM customers c WHERE NOT EXISTS (SELECT FROM orders o \
             WHERE o.customer_id = c.id AND (o.note = 'Fragile') IS NOT TRUE) ORDER BY c.id",
        ),
        (
            "customers",
            r#"{ customers(filter: { orders: { none: { status: { eq: "cancelled" } } } }) { id } }"#,
            "SELECT c.id FROM customers c WHERE NOT EXISTS (SELECT FROM orders o \
             WHERE o.customer_id = c.id AND o.status = 'cancelled') ORDER BY c.id",
        ),
        (
            "customers",
            "{ customers(filter: { orders: { some: {} } }) { id } }",
            "SELECT c.id FROM customers c WHERE EXISTS (SELECT FROM orders o \
             WHERE o.customer_id = c.id) ORDER BY c.id",
        ),
        (
            "orderItems",
            // Two levels: items of orders of VIP customers, and a relation filter inside
            // a `not`.
            "{ orderItems(filter: { order: { customer: { vip: { eq: true } } }, \
               not: { product: { name: { eq: \"Widget\" } } } }) { id } }",
            "SELECT i.id FROM order_items i JOIN orders o ON o.id = i.order_id \
             JOIN customers c ON c.id = o.customer_id JOIN products p ON p.id = i.product_id \
             WHERE c.vip AND p.name <> 'Widget' ORDER BY i.id",
        ),
        (
            "customers",
            // Nested in a relation's own filter.
            r#"{ customers(filter: { orders: { some: { orderItems: { some: { quantity: { gt: 1 } } } } } }) { id } }"#,
            "SELECT DISTINCT c.id FROM customers c JOIN orders o ON o.customer_id = c.id \
             JOIN order_items i ON i.order_id = o.id WHERE i.quantity > 1 ORDER BY c.id",
        ),
    ];
    for (key, query, sql) in cases {
        let want = sql_ids(&url, sql);
        assert_eq!(ids(&e, &url, key, query), want, "{query}");
    }
    // Every case above selects something and leaves something out, or the comparison
    // would prove little: checked on the first and the `every` cases.
    assert!(!sql_ids(&url, cases[0].2).is_empty());
    assert_ne!(sql_ids(&url, cases[3].2).len(), 4);
    // Aggregates take the same filters.
    let data: Value = serde_json::from_str(&run(
        &e,
        &url,
        "{ ordersAggregate(filter: { customer: { vip: { eq: false } } }) { count } }",
        None,
    ))
    .unwrap();
    let want: i64 = psql(
        &url,
        "SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id WHERE NOT c.vip",
    )
    .parse()
    .unwrap();
    assert_eq!(data["ordersAggregate"]["count"], want);
}

#[test]
fn a_live_query_follows_changes_to_the_related_table() {
    let url = demo_database("");
    let server = Server::start_on(&url, &[]);
    let mut c = open_socket(&server);
    c.send_text(&subscribe_message(
        "v",
        "subscription { orders(filter: { customer: { vip: { eq: true } } }, orderBy: { id: ASC }) { id } }",
    ));
    let mut next = || next_data(&mut c, "orders");
    assert_eq!(next(), json!([{ "id": 1 }, { "id": 2 }]));
    // Only `customers` changes: the orders' own rows stay as they are.
    psql(
        &url,
        "UPDATE customers SET vip = true WHERE name = 'Globex'",
    );
    assert_eq!(
        next(),
        json!([{ "id": 1 }, { "id": 2 }, { "id": 3 }, { "id": 5 }])
    );
    psql(
        &url,
        "UPDATE customers SET vip = false WHERE name = 'Acme Corp'",
    );
    assert_eq!(next(), json!([{ "id": 3 }, { "id": 5 }]));
}

#[test]
fn a_relation_filter_sees_only_the_related_rows_the_role_may_read() {
    let (_admin, server) = demo_chat(&[]);
    let rooms = |sub: &str, filter: &str| -> Value {
        let query = format!("{{ rooms(filter: {filter}, orderBy: {{ id: ASC }}) {{ name }} }}");
        let response = server.post_graphql(Some(&demo_token(sub)), &query);
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"));
        v["data"]["rooms"].clone()
    };
    // Only bob is in `ops`, whose one message alice may not read.
    let deploy = r#"{ messages: { some: { body: { eq: "Deploy at noon." } } } }"#;
    assert_eq!(rooms("bob", deploy), json!([{ "name": "ops" }]));
    assert_eq!(rooms("alice", deploy), json!([]));
    // To alice, `ops` has no message at all.
    let silent = "{ messages: { none: {} } }";
    assert_eq!(rooms("alice", silent), json!([{ "name": "ops" }]));
    assert_eq!(rooms("bob", silent), json!([]));
}

#[test]
fn deeply_nested_relation_filters_keep_their_levels_apart() {
    // A chain of 90 employees, each managed by the one before.
    let url = demo_database(
        "CREATE TABLE employees (id int PRIMARY KEY, manager_id int REFERENCES employees (id)); \
         INSERT INTO employees SELECT g, nullif(g - 1, 0) FROM generate_series(1, 90) g;",
    );
    let config = postrust::config::Config::from_lookup(|k| {
        (k == "POSTRUST_MAX_INPUT_DEPTH").then(|| "200".to_owned())
    })
    .unwrap();
    let e = postrust::engine::Engine::new(support::gql::catalog(&url, &["public"]), &config);
    // 80 managers up is employee 1: only employee 81. Were two levels' subqueries to share
    // a name, a level would compare a row with itself and match others.
    let mut filter = "{ id: { eq: 1 } }".to_owned();
    for _ in 0..80 {
        filter = format!("{{ manager: {filter} }}");
    }
    let query = format!("{{ employees(filter: {filter}) {{ id }} }}");
    assert_eq!(ids(&e, &url, "employees", &query), [81]);
}
