//! Aggregates (`ordersAggregate { count sum { … } avg { … } min { … } max { … } }`), at the
//! root and beside a one-to-many relation, compiled and run against PostgreSQL and compared
//! with the same aggregates computed by SQL written here; live, through the real server.
//! Under row-level security they count only the rows the role may read: `tests/rls.rs`.

mod support;

use serde_json::{Value, json};
use support::gql::{demo_database, engine, psql, run};
use support::live::{open_socket, subscribe_message};
use support::server::Server;
use support::ws::Client;

/// `query`'s data as JSON.
fn data(e: &postrust::engine::Engine, url: &str, query: &str) -> Value {
    serde_json::from_str(&run(e, url, query, None)).unwrap()
}

/// One row of SQL as a JSON value (the statement returns one json column).
fn sql_json(url: &str, sql: &str) -> Value {
    serde_json::from_str(&psql(url, sql)).unwrap()
}

#[test]
fn aggregates_at_the_root_agree_with_sql() {
    let url = demo_database("");
    let e = engine(&url, &["public"]);
    let got = data(
        &e,
        &url,
        "{ ordersAggregate { count sum { id total } avg { total } \
           min { id total createdAt priority status } max { total createdAt } } }",
    );
    let want = sql_json(
        &url,
        "SELECT json_build_object('ordersAggregate', json_build_object(
           'count', count(*),
           'sum', json_build_object('id', sum(id)::text, 'total', sum(total)::text),
           'avg', json_build_object('total', avg(total)::text),
           'min', json_build_object('id', min(id), 'total', min(total)::text,
                                    'createdAt', min(created_at), 'priority', min(priority),
                                    'status', min(status)),
           'max', json_build_object('total', max(total)::text, 'createdAt', max(created_at))))
         FROM orders",
    );
    assert_eq!(got, want);
    assert_eq!(got["ordersAggregate"]["count"], 5, "the demo's five orders");

    // A filter, and one that matches nothing: count 0, the rest null.
    let pending = data(
        &e,
        &url,
        r#"{ ordersAggregate(filter: { status: { eq: "pending" } }) { count sum { total } } }"#,
    );
    let want = sql_json(
        &url,
        "SELECT json_build_object('ordersAggregate', json_build_object('count', count(*),
           'sum', json_build_object('total', sum(total)::text)))
         FROM orders WHERE status = 'pending'",
    );
    assert_eq!(pending, want);
    let none = data(
        &e,
        &url,
        "{ ordersAggregate(filter: { id: { gt: 1000 } }) { count sum { total } max { createdAt } } }",
    );
    assert_eq!(
        none,
        json!({ "ordersAggregate": { "count": 0, "sum": { "total": null }, "max": { "createdAt": null } } })
    );
}

#[test]
fn an_aggregate_wider_than_one_json_call_still_counts() {
    let url = demo_database("");
    let e = engine(&url, &["public"]);
    // More keys than one json_build_object call takes: the object is built another way.
    let keys: Vec<String> = (0..60).map(|i| format!("c{i}: count")).collect();
    let got = data(
        &e,
        &url,
        &format!(
            "{{ ordersAggregate {{ {} max {{ total }} }} }}",
            keys.join(" ")
        ),
    );
    for i in 0..60 {
        assert_eq!(got["ordersAggregate"][format!("c{i}")], 5, "{got}");
    }
    assert_eq!(got["ordersAggregate"]["max"]["total"], "99.00");
}

#[test]
fn aggregates_beside_a_relation_agree_with_sql() {
    let url = demo_database("");
    let e = engine(&url, &["public"]);
    let got = data(
        &e,
        &url,
        r#"{ customers(orderBy: { id: ASC }) { id
             ordersAggregate { count max { total } }
             pending: ordersAggregate(filter: { status: { eq: "pending" } }) { count __typename } } }"#,
    );
    let want = sql_json(
        &url,
        "SELECT json_build_object('customers', json_agg(json_build_object(
           'id', c.id,
           'ordersAggregate', (SELECT json_build_object('count', count(*), 'max',
                                json_build_object('total', max(o.total)::text))
                               FROM orders o WHERE o.customer_id = c.id),
           'pending', (SELECT json_build_object('count', count(*), '__typename', 'OrdersAggregate')
                       FROM orders o WHERE o.customer_id = c.id AND o.status = 'pending'))
           ORDER BY c.id))
         FROM customers c",
    );
    assert_eq!(got, want);
}

#[test]
fn the_schema_offers_each_function_where_postgresql_has_it() {
    let url = demo_database("");
    let e = engine(&url, &["public"]);
    let fields = |ty: &str| -> Vec<String> {
        let q = format!("{{ __type(name: \"{ty}\") {{ fields {{ name }} }} }}");
        let v = data(&e, &url, &q);
        v["__type"]["fields"]
            .as_array()
            .unwrap_or_else(|| panic!("no type {ty}: {v}"))
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        fields("OrdersAggregate"),
        ["count", "sum", "avg", "min", "max"]
    );
    // Sums of numbers only; min and max of what PostgreSQL orders by them (not booleans,
    // JSON or arrays).
    assert_eq!(fields("OrdersSum"), ["id", "customerId", "total"]);
    let min = fields("OrdersMin");
    assert!(min.contains(&"createdAt".to_owned()) && min.contains(&"status".to_owned()));
    let rows = data(
        &e,
        &url,
        "{ __type(name: \"Query\") { fields { name type { kind ofType { name } } } } }",
    );
    let aggregate = rows["__type"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "ordersAggregate")
        .cloned()
        .expect("Query.ordersAggregate");
    assert_eq!(aggregate["type"]["kind"], "NON_NULL");
    assert_eq!(aggregate["type"]["ofType"]["name"], "OrdersAggregate");
}

/// Reads `next` results of subscriptions `a` and `b` until their latest data, kept in
/// `last`, are `want`'s.
fn until(c: &mut Client, last: &mut Value, want: &Value) {
    while last != want {
        let m: Value = serde_json::from_str(&c.recv_text()).unwrap();
        assert_eq!(m["type"], "next", "{m}");
        let id = m["id"].as_str().unwrap().to_owned();
        last[id] = m["payload"]["data"].clone();
    }
}

#[test]
fn subscribed_aggregates_follow_the_writes() {
    let url = demo_database("");
    let server = Server::start_on(&url, &[]);
    let mut c = open_socket(&server);
    c.send_text(&subscribe_message(
        "a",
        r#"subscription { ordersAggregate(filter: { status: { eq: "pending" } }) { count } }"#,
    ));
    c.send_text(&subscribe_message(
        "b",
        "subscription { customers(filter: { id: { eq: 1 } }) { ordersAggregate { count } } }",
    ));
    let count = |sql: &str| -> i64 { psql(&url, sql).parse().unwrap() };
    let mut last = json!({ "a": null, "b": null });
    let expected = || {
        json!({
            "a": { "ordersAggregate": {
                "count": count("SELECT count(*) FROM orders WHERE status = 'pending'") } },
            "b": { "customers": [{ "ordersAggregate": {
                "count": count("SELECT count(*) FROM orders WHERE customer_id = 1") } }] },
        })
    };
    until(&mut c, &mut last, &expected());
    psql(
        &url,
        "INSERT INTO orders (customer_id, total, status) VALUES (1, 5, 'pending')",
    );
    until(&mut c, &mut last, &expected());
    psql(
        &url,
        "UPDATE orders SET status = 'paid' WHERE status = 'pending'",
    );
    until(&mut c, &mut last, &expected());
    psql(
        &url,
        "DELETE FROM orders WHERE customer_id = 1 AND total = 5",
    );
    until(&mut c, &mut last, &expected());
}
