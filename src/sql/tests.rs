//! The shape of compiled SQL: values only as parameters, identifiers quoted, order and
//! dependencies.

use super::*;
use crate::catalog::Catalog;
use crate::graphql::{Limits, validate};
use crate::schema::build::build;

fn schema() -> Schema {
    build(Catalog::from_json(include_str!("../../tests/fixtures/demo-catalog.json")).unwrap())
}

fn compile_text(query: &str, variables: Option<&str>) -> Statement {
    let s = schema();
    let vars = variables.map(|v| {
        let mut bytes = v.as_bytes().to_vec();
        simd_json::to_owned_value(&mut bytes).unwrap()
    });
    let op = validate(&s, query, vars.as_ref(), None, &Limits::default()).unwrap();
    compile(&s, &op, &|_| "null".to_owned()).unwrap()
}

#[test]
fn values_travel_as_parameters() {
    let evil = "x'); DROP TABLE orders; --";
    let q = format!(
        "{{ orders(filter: {{ status: {{ eq: \"{evil}\" }}, id: {{ in: [1, 2] }} }}, limit: 5, offset: 1) {{ id }} }}"
    );
    let st = compile_text(&q, None);
    assert!(!st.sql.contains("DROP"), "{}", st.sql);
    assert_eq!(st.params, [evil, "[\"1\",\"2\"]", "5", "1"]);
    assert!(
        st.sql
            .contains("(s1.\"status\" = $1::text::\"pg_catalog\".\"text\")")
    );
    assert!(st.sql.contains("json_array_elements_text($2::text::json)"));
    assert!(
        st.sql
            .contains("LIMIT $3::text::bigint OFFSET $4::text::bigint")
    );

    let st = compile_text(
        "query ($s: String) { orders(filter: { note: { ilike: $s } }) { id } }",
        Some(&format!("{{\"s\": \"{evil}\"}}")),
    );
    assert!(!st.sql.contains("DROP"));
    assert_eq!(st.params, [evil]);
    assert_eq!(
        st.roots[0].filter,
        Filter::All(vec![Filter::Compare {
            column: "note".into(),
            op: Op::Ilike,
            value: evil.into()
        }])
    );
}

#[test]
fn identifiers_are_quoted_and_rows_ordered() {
    let st = compile_text("{ orders { id customer { name } } }", None);
    assert_eq!(
        st.sql,
        "SELECT json_build_object('orders', (SELECT coalesce(json_agg(json_build_object('id', t1.\"id\", \
         'customer', (SELECT json_build_object('name', t2.\"name\") FROM (SELECT s2.\"name\" \
         FROM \"public\".\"customers\" s2 WHERE s2.\"id\" = t1.\"customer_id\" LIMIT 1) t2)) \
         ORDER BY t1.\"id\" ASC), '[]'::json) FROM (SELECT s1.\"customer_id\", s1.\"id\" \
         FROM \"public\".\"orders\" s1) t1))::text"
    );
    // A view without a key is ordered by its sortable columns, in order.
    let st = compile_text("{ salesHeadline { orderCount } }", None);
    assert!(
        st.sql
            .contains("ORDER BY t1.\"total_revenue\" ASC, t1.\"order_count\" ASC")
    );
    // A requested order is completed by the primary key.
    let st = compile_text("{ orders(orderBy: [{ status: DESC }]) { id } }", None);
    assert!(
        st.sql
            .contains("ORDER BY t1.\"status\" DESC, t1.\"id\" ASC")
    );
}

#[test]
fn dependencies_and_roots() {
    let st = compile_text(
        "{ a: users { id } b: customers { orders { orderItems { product { name } } } } }",
        None,
    );
    let names: Vec<String> = st.tables.iter().map(|t| t.to_string()).collect();
    assert_eq!(
        names,
        [
            "public.customers",
            "public.order_items",
            "public.orders",
            "public.products",
            "public.users"
        ]
    );
    let keys: Vec<&str> = st.roots.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["a", "b"]);
    assert!(st.roots.iter().all(|r| r.filter.is_empty()));
}

#[test]
fn wide_selections_avoid_the_argument_limit() {
    let fields: Vec<String> = (0..60).map(|i| format!("f{i}: id")).collect();
    let st = compile_text(&format!("{{ users {{ {} }} }}", fields.join(" ")), None);
    assert!(st.sql.contains("json_object_agg(k, v ORDER BY n)"));
}
