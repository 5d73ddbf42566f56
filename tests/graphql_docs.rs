//! Every operation on the product docs page (`shared/seed/realtime-subscriptions.txt`), as
//! written there, run as a query and as a subscription against the demo database.

mod support;

use postrust::catalog::QualifiedName;
use postrust::graphql::OperationKind;
use support::docs::{APOLLO, DASHBOARD, JS_CLIENT, PENDING_ORDERS, USERS};
use support::gql::{assert_data, demo_database, engine, execute};

fn as_query(op: &str) -> String {
    op.replacen("subscription", "query", 1)
}

fn table(name: &str) -> QualifiedName {
    QualifiedName {
        schema: "public".into(),
        name: name.into(),
    }
}

#[test]
fn docs_page_operations_return_the_demo_data() {
    let url = demo_database("");
    let e = engine(&url, &["public"]);
    let cases = [
        (
            USERS,
            r#"{"users":[
              {"id":1,"name":"Ada Lovelace","email":"ada@example.com","updatedAt":"2026-01-05T09:00:00+00:00"},
              {"id":2,"name":"Grace Hopper","email":"grace@example.com","updatedAt":"2026-01-06T10:30:00+00:00"},
              {"id":3,"name":"Linus Torvalds","email":"linus@example.com","updatedAt":"2026-01-07T12:15:00+00:00"}]}"#,
        ),
        (
            PENDING_ORDERS,
            r#"{"orders":[
              {"id":1,"total":"44.48","status":"pending","customer":{"name":"Acme Corp","email":"buyer@acme.test"}},
              {"id":3,"total":"19.98","status":"pending","customer":{"name":"Globex","email":"orders@globex.test"}}]}"#,
        ),
        (
            DASHBOARD,
            r#"{"salesDashboard":{"totalRevenue":"187.96","orderCount":"4","averageOrderValue":"46.99",
              "topProducts":[{"name":"Widget","salesCount":"4"},{"name":"Gadget","salesCount":"2"},
              {"name":"Gizmo","salesCount":"1"}]}}"#,
        ),
        (
            JS_CLIENT,
            r#"{"orders":[{"id":1,"total":"44.48","status":"pending"},
              {"id":3,"total":"19.98","status":"pending"}]}"#,
        ),
        (
            APOLLO,
            r#"{"orders":[{"id":1,"total":"44.48","status":"pending","customer":{"name":"Acme Corp"}},
              {"id":3,"total":"19.98","status":"pending","customer":{"name":"Globex"}}]}"#,
        ),
    ];
    for (op, expected) in cases {
        assert_data(&e, &url, &as_query(op), None, expected);
        let sub = e.prepare(op, None, None).unwrap();
        assert_eq!(sub.kind, OperationKind::Subscription);
        let query = e.prepare(&as_query(op), None, None).unwrap();
        assert_eq!(
            support::gql::compact(&execute(&url, &sub)),
            support::gql::compact(&execute(&url, &query)),
            "{op}"
        );
    }
}

#[test]
fn docs_page_operations_report_the_tables_they_read() {
    let url = demo_database("");
    let e = engine(&url, &["public"]);
    let tables = |op: &str| e.prepare(op, None, None).unwrap().tables;
    assert_eq!(tables(USERS), [table("users")].into());
    assert_eq!(
        tables(PENDING_ORDERS),
        [table("customers"), table("orders")].into()
    );
    assert_eq!(tables(JS_CLIENT), [table("orders")].into());
    assert_eq!(
        tables(DASHBOARD),
        [table("order_items"), table("orders"), table("products")].into()
    );
    let apollo = e.prepare(APOLLO, None, None).unwrap();
    assert_eq!(apollo.operation_name.as_deref(), Some("OnOrderUpdate"));
    assert_eq!(apollo.roots[0].relation, table("orders"));
    assert_eq!(
        apollo.roots[0].filter,
        postrust::sql::Filter::All(vec![postrust::sql::Filter::Compare {
            column: "status".into(),
            op: postrust::sql::Op::Eq,
            value: "pending".into()
        }])
    );
}
