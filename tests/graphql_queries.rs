//! Filters, ordering, pagination, relations, views, composite arrays, enums, nulls and each
//! type family, compiled and run against PostgreSQL, compared as exact JSON.

mod support;

use simd_json::prelude::*;
use support::gql::{assert_data, demo_database, engine, run};

#[test]
fn every_filter_operator() {
    let url = demo_database("");
    let e = engine(&url, &["public"]);
    let ids = |filter: &str| -> String {
        let q = format!("{{ orders(filter: {filter}) {{ id }} }}");
        support::gql::compact(&run(&e, &url, &q, None))
    };
    let expect = |list: &[i32]| -> String {
        let items: Vec<String> = list.iter().map(|i| format!("{{\"id\":{i}}}")).collect();
        format!("{{\"orders\":[{}]}}", items.join(","))
    };
    let cases: &[(&str, &[i32])] = &[
        (r#"{ status: { eq: "pending" } }"#, &[1, 3]),
        (r#"{ status: { neq: "pending" } }"#, &[2, 4, 5]),
        (r#"{ total: { gt: "24.50" } }"#, &[1, 2]),
        (r#"{ total: { gte: 24.50 } }"#, &[1, 2, 4]),
        (r#"{ total: { lt: 19.98 } }"#, &[5]),
        (r#"{ total: { lte: "19.98" } }"#, &[3, 5]),
        (r#"{ id: { in: [2, 4, 99] } }"#, &[2, 4]),
        (r#"{ id: { notIn: [2, 4] } }"#, &[1, 3, 5]),
        (r#"{ id: { in: [] } }"#, &[]),
        (r#"{ status: { like: "p%" } }"#, &[1, 2, 3]),
        (r#"{ note: { ilike: "%DOOR" } }"#, &[1]),
        (r#"{ note: { isNull: true } }"#, &[2, 3, 5]),
        (r#"{ note: { isNull: false } }"#, &[1, 4]),
        (r#"{ priority: { eq: high } }"#, &[1]),
        (r#"{ priority: { in: [low, high] } }"#, &[1, 3, 5]),
        (r#"{ priority: { notIn: low } }"#, &[1, 2, 4]),
        (
            r#"{ createdAt: { gte: "2026-01-12T00:00:00Z" } }"#,
            &[3, 4, 5],
        ),
        (r#"{ id: { gt: 1, lt: 4 } }"#, &[2, 3]),
        (
            r#"{ status: { eq: "pending" }, priority: { eq: low } }"#,
            &[3],
        ),
        (
            r#"{ and: [{ status: { eq: "pending" } }, { priority: { neq: low } }] }"#,
            &[1],
        ),
        (
            r#"{ or: [{ status: { eq: "paid" } }, { status: { eq: "shipped" } }] }"#,
            &[2, 4],
        ),
        (r#"{ not: { status: { eq: "pending" } } }"#, &[2, 4, 5]),
        (
            r#"{ not: { or: [{ id: { eq: 1 } }, { and: [{ id: { gt: 3 } }, { note: { isNull: true } }] }] } }"#,
            &[2, 3, 4],
        ),
        (r#"{ and: [], or: [] }"#, &[]),
        (r#"{ and: [] }"#, &[1, 2, 3, 4, 5]),
        (r#"{ status: { eq: null } }"#, &[1, 2, 3, 4, 5]),
        (r#"{ customerId: { eq: 2 } }"#, &[3, 5]),
        // The operand of startsWith and endsWith is literal: no wildcards, no escapes.
        (r#"{ status: { startsWith: "p" } }"#, &[1, 2, 3]),
        (r#"{ status: { startsWith: "pa" } }"#, &[2]),
        (r#"{ status: { startsWith: "" } }"#, &[1, 2, 3, 4, 5]),
        (r#"{ status: { startsWith: "p%" } }"#, &[]),
        (r#"{ note: { startsWith: "_" } }"#, &[]),
        (r#"{ status: { endsWith: "ed" } }"#, &[4, 5]),
        (r#"{ note: { endsWith: "door" } }"#, &[1]),
        (r#"{ note: { endsWith: "\\" } }"#, &[]),
        (r#"{ not: { note: { startsWith: "Leave" } } }"#, &[4]),
    ];
    // The change-event evaluator agrees with PostgreSQL wherever it decides.
    let rows_json = support::gql::psql(
        &url,
        "SELECT json_agg(row_to_json(o) ORDER BY o.id) FROM orders o",
    );
    let mut bytes = rows_json.into_bytes();
    let rows = simd_json::to_owned_value(&mut bytes).unwrap();
    let rows = rows.as_array().unwrap();
    let orders = &e.prepare("{ orders { id } }", None, None).unwrap().roots[0].relation;
    let relation = e.schema().catalog.relation(orders).unwrap();
    let mut decided = 0;
    for (filter, expected) in cases {
        assert_eq!(ids(filter), expect(expected), "filter: {filter}");
        let q = format!("{{ orders(filter: {filter}) {{ id }} }}");
        let f = &e.prepare(&q, None, None).unwrap().roots[0].filter;
        for row in rows {
            let id = row.get("id").unwrap().as_i64().unwrap() as i32;
            if let Some(m) = f.matches(relation, row) {
                decided += 1;
                assert_eq!(m, expected.contains(&id), "filter {filter} on row {id}");
            }
        }
    }
    assert!(
        decided > 80,
        "the evaluator decides most of these ({decided})"
    );
    // Every scalar family filters: bool, uuid, date, float, bigint.
    assert_data(
        &e,
        &url,
        r#"{ customers(filter: { vip: { eq: true } }) { name }
             products(filter: { or: [{ sku: { eq: "00000000-0000-4000-8000-000000000002" } },
                                     { releasedOn: { lt: "2025-07-01" } },
                                     { weightKg: { gt: 100.5 } }] }) { name }
             orderItems(filter: { id: { in: ["5", 6] } }) { id } }"#,
        None,
        r#"{"customers":[{"name":"Acme Corp"}],"products":[{"name":"Widget"},{"name":"Gadget"}],
            "orderItems":[{"id":"5"},{"id":"6"}]}"#,
    );
    // JSON: containment and top-level keys.
    assert_data(
        &e,
        &url,
        r#"{ red: products(filter: { attributes: { contains: { color: "red" } } }) { name }
             withBattery: products(filter: { attributes: { hasKey: "battery" } }) { name }
             both: products(filter: { attributes: { contains: { color: "black", battery: true } } }) { name }
             none: products(filter: { attributes: { contains: { color: "blue" } } }) { name } }"#,
        None,
        r#"{"red":[{"name":"Widget"}],"withBattery":[{"name":"Gadget"}],"both":[{"name":"Gadget"}],"none":[]}"#,
    );
}

/// The names of the products `filter` selects, in name order, as the server answers.
fn product_names(e: &postrust::engine::Engine, url: &str, filter: &str) -> String {
    let q = format!("{{ products(filter: {filter}, orderBy: {{ name: ASC }}) {{ name }} }}");
    support::gql::compact(&run(e, url, &q, None))
}

/// The same answer computed by SQL: the products `condition` selects.
fn product_names_where(url: &str, condition: &str) -> String {
    let rows = support::gql::psql(
        url,
        &format!(
            "SELECT coalesce(json_agg(json_build_object('name', name) ORDER BY name), '[]') \
             FROM products WHERE {condition}"
        ),
    );
    format!("{{\"products\":{}}}", support::gql::compact(&rows))
}

/// Array columns: `contains`, `containedBy`, `overlaps` and `isNull` on the elements, as
/// PostgreSQL's `@>`, `<@` and `&&` decide them (`tags`: Widget {tools,small}, Gadget
/// {electronics}, Gizmo {}; a fourth product gets NULL tags here).
#[test]
fn array_operators() {
    let url = demo_database(
        "ALTER TABLE products ALTER COLUMN tags DROP NOT NULL; \
         INSERT INTO products (sku, name, price, tags) \
         VALUES ('00000000-0000-4000-8000-000000000004', 'Doohickey', 1, NULL); \
         CREATE DOMAIN posint AS int CHECK (VALUE > 0); \
         ALTER TABLE products ADD COLUMN sizes posint[]; \
         UPDATE products SET sizes = '{1,2}' WHERE name = 'Widget';",
    );
    let e = engine(&url, &["public"]);
    let names = |filter: &str| product_names(&e, &url, filter);
    let sql = |condition: &str| product_names_where(&url, condition);
    let cases = [
        (r#"{ tags: { contains: ["tools"] } }"#, "tags @> '{tools}'"),
        (
            r#"{ tags: { contains: ["tools", "small"] } }"#,
            "tags @> '{tools,small}'",
        ),
        (r#"{ tags: { contains: [] } }"#, "tags @> '{}'"),
        (
            r#"{ tags: { containedBy: ["tools", "small", "electronics"] } }"#,
            "tags <@ '{tools,small,electronics}'",
        ),
        (
            r#"{ tags: { overlaps: ["small", "electronics"] } }"#,
            "tags && '{small,electronics}'",
        ),
        (r#"{ tags: { overlaps: [] } }"#, "tags && '{}'"),
        ("{ tags: { isNull: true } }", "tags IS NULL"),
        (
            r#"{ not: { tags: { contains: ["tools"] } } }"#,
            "NOT (tags @> '{tools}')",
        ),
        // An array of a domain.
        ("{ sizes: { contains: [2] } }", "sizes::int[] @> '{2}'"),
    ];
    for (filter, condition) in cases {
        assert_eq!(names(filter), sql(condition), "{filter}");
    }
    assert_eq!(
        names(r#"{ tags: { contains: ["electronics"] } }"#),
        r#"{"products":[{"name":"Gadget"}]}"#
    );
}

/// Regular expressions on text (`matches`, `imatches`: PostgreSQL's `~`, `~*`) and equality
/// at a path of a JSON document (`at`: `#>` then `=` as jsonb), compared with the same SQL.
#[test]
fn regular_expressions_and_json_paths() {
    // Columns served as String that are not text: regular expressions read their text.
    let url = demo_database(
        "ALTER TABLE products ADD COLUMN host inet; \
         UPDATE products SET host = ('10.0.0.' || id)::inet; \
         CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false); \
         ALTER TABLE products ADD COLUMN code text COLLATE nocase; \
         UPDATE products SET code = upper(name);",
    );
    let e = engine(&url, &["public"]);
    let names = |filter: &str| product_names(&e, &url, filter);
    let sql = |condition: &str| product_names_where(&url, condition);
    let cases = [
        (r#"{ name: { matches: "^G" } }"#, "name ~ '^G'"),
        (r#"{ name: { matches: "^g" } }"#, "name ~ '^g'"),
        (r#"{ name: { imatches: "^g.*o$" } }"#, "name ~* '^g.*o$'"),
        (r#"{ host: { matches: "\\.2$" } }"#, r"host::text ~ '\.2$'"),
        (
            r#"{ code: { matches: "^WID" } }"#,
            r#"(code COLLATE "default") ~ '^WID'"#,
        ),
        (
            r#"{ attributes: { at: { path: ["color"], eq: "red" } } }"#,
            r#"attributes::jsonb #> '{color}' = '"red"'"#,
        ),
        (
            r#"{ attributes: { at: { path: ["battery"], eq: true } } }"#,
            "attributes::jsonb #> '{battery}' = 'true'",
        ),
        (
            r#"{ not: { attributes: { at: { path: ["color"], eq: "red" } } } }"#,
            r#"NOT (attributes::jsonb #> '{color}' = '"red"')"#,
        ),
    ];
    for (filter, condition) in cases {
        assert_eq!(names(filter), sql(condition), "{filter}");
    }
    assert_eq!(
        names(r#"{ name: { imatches: "GIZ" } }"#),
        r#"{"products":[{"name":"Gizmo"}]}"#
    );

    // A pattern PostgreSQL cannot compile is the client's value that cannot be read.
    let server = support::server::Server::start_on(&url, &[]);
    let response = server.post_graphql(
        None,
        r#"{ products(filter: { name: { matches: "(" } }) { name } }"#,
    );
    assert!(response.contains(r#""code":"INVALID_VALUE""#), "{response}");
}

#[test]
fn ordering_limit_and_offset() {
    let url = demo_database("");
    let e = engine(&url, &["public"]);
    assert_data(
        &e,
        &url,
        "{ orders(orderBy: { total: DESC }, limit: 3) { id total } }",
        None,
        r#"{"orders":[{"id":2,"total":"99.00"},{"id":1,"total":"44.48"},{"id":4,"total":"24.50"}]}"#,
    );
    assert_data(
        &e,
        &url,
        "{ orders(orderBy: [{ customerId: ASC }, { id: DESC }], offset: 1, limit: 3) { id customerId } }",
        None,
        r#"{"orders":[{"id":1,"customerId":1},{"id":5,"customerId":2},{"id":3,"customerId":2}]}"#,
    );
    assert_data(
        &e,
        &url,
        "{ orders(orderBy: { note: ASC_NULLS_FIRST }) { id } a: orders(orderBy: { note: DESC_NULLS_LAST }, limit: 2) { id } }",
        None,
        r#"{"orders":[{"id":2},{"id":3},{"id":5},{"id":4},{"id":1}],"a":[{"id":1},{"id":4}]}"#,
    );
    assert_data(
        &e,
        &url,
        "query ($o: [OrdersOrderBy!] = { total: ASC }, $n: Int = 2) { orders(orderBy: $o, limit: $n) { id } }",
        None,
        r#"{"orders":[{"id":5},{"id":3}]}"#,
    );
    assert_data(
        &e,
        &url,
        "query ($o: [OrdersOrderBy!] = { total: ASC }) { orders(orderBy: $o, limit: 2) { id } }",
        Some(r#"{"o": [{"status": "ASC", "total": "DESC"}]}"#),
        r#"{"orders":[{"id":5},{"id":2}]}"#,
    );
    assert_data(
        &e,
        &url,
        "{ orders(offset: 4) { id } none: orders(limit: 0) { id } }",
        None,
        r#"{"orders":[{"id":5}],"none":[]}"#,
    );
    let err = e
        .prepare("{ orders(limit: -1) { id } }", None, None)
        .unwrap_err();
    assert_eq!(
        err[0].message,
        "Argument \"limit\" must not be negative, got -1."
    );
}

#[test]
fn relations_both_directions_nested_three_deep() {
    let url = demo_database("");
    let e = engine(&url, &["public"]);
    assert_data(
        &e,
        &url,
        r#"{ customers(filter: { id: { lte: 2 } }) {
              name
              orders(orderBy: { total: ASC }, filter: { status: { neq: "cancelled" } }) {
                total
                orderItems(limit: 1) { quantity product { name } }
              }
            } }"#,
        None,
        r#"{"customers":[
            {"name":"Acme Corp","orders":[
              {"total":"44.48","orderItems":[{"quantity":2,"product":{"name":"Widget"}}]},
              {"total":"99.00","orderItems":[{"quantity":1,"product":{"name":"Gizmo"}}]}]},
            {"name":"Globex","orders":[
              {"total":"19.98","orderItems":[{"quantity":2,"product":{"name":"Widget"}}]}]}]}"#,
    );
    assert_data(
        &e,
        &url,
        "{ orderItems(limit: 2) { id order { id customer { name orders { id } } } } }",
        None,
        r#"{"orderItems":[
            {"id":"1","order":{"id":1,"customer":{"name":"Acme Corp","orders":[{"id":1},{"id":2}]}}},
            {"id":"2","order":{"id":1,"customer":{"name":"Acme Corp","orders":[{"id":1},{"id":2}]}}}]}"#,
    );
    let tables = e
        .prepare(
            "{ orderItems { order { customer { name } } product { name } } }",
            None,
            None,
        )
        .unwrap()
        .tables;
    let names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
    assert_eq!(
        names,
        [
            "public.customers",
            "public.order_items",
            "public.orders",
            "public.products"
        ]
    );
}

#[test]
fn views_views_on_views_composite_arrays_and_enums() {
    let url = demo_database("");
    let e = engine(&url, &["public"]);
    assert_data(
        &e,
        &url,
        "{ salesHeadline { totalRevenue orderCount }
           salesDashboard { topProducts { salesCount } }
           orders(filter: { id: { lte: 3 } }) { priority } }",
        None,
        r#"{"salesHeadline":[{"totalRevenue":"187.96","orderCount":"4"}],
            "salesDashboard":{"topProducts":[{"salesCount":"4"},{"salesCount":"2"},{"salesCount":"1"}]},
            "orders":[{"priority":"high"},{"priority":"normal"},{"priority":"low"}]}"#,
    );
    let tables = e
        .prepare("subscription { salesHeadline { orderCount } }", None, None)
        .unwrap()
        .tables;
    let names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
    assert_eq!(
        names,
        ["public.order_items", "public.orders", "public.products"]
    );
}

const TYPES_SQL: &str = r#"
CREATE TYPE mood AS ENUM ('happy', 'so so', 'true');
CREATE TYPE point2 AS (x int, y int);
CREATE TABLE samples (
  id int PRIMARY KEY,
  small int2, big int8, dec numeric, real4 float4, dbl float8,
  txt text, vc varchar(10), flag bool, uid uuid,
  at timestamptz, local timestamp, day date,
  doc json, docb jsonb,
  ints int[], texts text[], bigs int8[], moods mood[], feeling mood,
  spot point2, spots point2[],
  span interval, bytes bytea
);
INSERT INTO samples VALUES
  (1, 7, 9007199254740993, 12345678901234567890.5, 1.5, 2.25,
   'héllo "quoted"', 'short', true, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
   '2026-02-03 04:05:06.789+00', '2026-02-03 04:05:06', '2026-02-03',
   '{"a": [1, 2]}', '{"b": null}',
   '{1,NULL,3}', '{x,"y z"}', '{1,9007199254740993}', '{happy,"so so",NULL}', 'so so',
   ROW(1, 2), ARRAY[ROW(3, 4)::point2, NULL],
   '1 day 02:00:00', '\x0102'),
  (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, 'true', ROW(NULL, NULL), '{"(,)"}', NULL, NULL);
"#;

#[test]
fn each_type_family_and_nulls() {
    let url = demo_database(TYPES_SQL);
    let e = engine(&url, &["public"]);
    assert_data(
        &e,
        &url,
        "{ samples { id small big dec real4 dbl txt vc flag uid at local day doc docb
                      ints texts bigs moods feeling spot { x y } spots { x y } span bytes } }",
        None,
        r#"{"samples":[
          {"id":1,"small":7,"big":"9007199254740993","dec":"12345678901234567890.5","real4":1.5,
           "dbl":2.25,"txt":"héllo \"quoted\"","vc":"short","flag":true,
           "uid":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","at":"2026-02-03T04:05:06.789+00:00",
           "local":"2026-02-03T04:05:06","day":"2026-02-03","doc":{"a": [1, 2]},"docb":{"b": null},
           "ints":[1,null,3],"texts":["x","y z"],"bigs":["1","9007199254740993"],
           "moods":["happy","so_so",null],"feeling":"so_so","spot":{"x":1,"y":2},
           "spots":[{"x":3,"y":4},null],"span":"1 day 02:00:00","bytes":"\\x0102"},
          {"id":2,"small":null,"big":null,"dec":null,"real4":null,"dbl":null,"txt":null,"vc":null,
           "flag":null,"uid":null,"at":null,"local":null,"day":null,"doc":null,"docb":null,
           "ints":null,"texts":null,"bigs":null,"moods":null,"feeling":"true_",
           "spot":{"x":null,"y":null},"spots":[{"x":null,"y":null}],"span":null,"bytes":null}]}"#,
    );
    assert_data(
        &e,
        &url,
        r#"{ samples(filter: { feeling: { eq: so_so }, txt: { like: "%\"quoted\"" } }) { id } }"#,
        None,
        r#"{"samples":[{"id":1}]}"#,
    );
}

#[test]
fn wide_selections_and_clashing_column_names_run() {
    let url = demo_database(
        "CREATE TABLE clash (id int PRIMARY KEY, user_id int, \"userId\" int);
         INSERT INTO clash VALUES (1, 10, 20), (2, 30, 5);",
    );
    let e = engine(&url, &["public"]);
    let fields: Vec<String> = (0..60).map(|i| format!("f{i}: id")).collect();
    let q = format!("{{ users(limit: 1) {{ {} name }} }}", fields.join(" "));
    let mut expected: Vec<String> = (0..60).map(|i| format!("\"f{i}\":1")).collect();
    expected.push("\"name\":\"Ada Lovelace\"".into());
    assert_data(
        &e,
        &url,
        &q,
        None,
        &format!("{{\"users\":[{{{}}}]}}", expected.join(",")),
    );
    assert_data(
        &e,
        &url,
        "{ clash(orderBy: { userId2: ASC }, filter: { userId: { gt: 1 } }) { id userId userId2 } }",
        None,
        r#"{"clash":[{"id":2,"userId":30,"userId2":5},{"id":1,"userId":10,"userId2":20}]}"#,
    );
}
