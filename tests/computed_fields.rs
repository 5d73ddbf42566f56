//! Functions of the database in the schema. Computed fields: a STABLE or IMMUTABLE
//! function taking one row of a table becomes a field of its type
//! (`customers_label(customers)` → `Customers.label`), selected like a column at any depth.
//! Root functions: a STABLE function returning a set of a served relation's rows becomes a
//! root field with its arguments and the relation's list arguments. A live query using
//! either refreshes on any change, since what the function reads cannot be known.

mod support;

use serde_json::{Value, json};
use support::gql::{demo_database, engine, psql, run};
use support::live::{next_data, open_socket, subscribe_message};
use support::server::Server;

const FUNCTIONS: &str = "
CREATE FUNCTION customers_label(c customers) RETURNS text LANGUAGE sql STABLE
  AS $$ SELECT c.name || ' <' || c.email || '>' $$;
COMMENT ON FUNCTION customers_label(customers) IS 'Name and address.';
CREATE FUNCTION item_count(o orders) RETURNS bigint LANGUAGE sql STABLE
  AS $$ SELECT count(*) FROM order_items i WHERE i.order_id = o.id $$;
-- Reads other rows of its own table.
CREATE FUNCTION orders_richer(o orders) RETURNS bigint LANGUAGE sql STABLE
  AS $$ SELECT count(*) FROM orders x WHERE x.total > o.total $$;
-- Root fields: sets of a relation's rows.
CREATE FUNCTION search_products(term text) RETURNS SETOF products LANGUAGE sql STABLE
  AS $$ SELECT * FROM products WHERE name ILIKE '%' || term || '%' $$;
CREATE FUNCTION orders_of_status(wanted text, at_least numeric) RETURNS SETOF orders
  LANGUAGE sql STABLE AS $$ SELECT * FROM orders WHERE status = wanted AND total >= at_least $$;
CREATE FUNCTION noisy_orders() RETURNS SETOF orders LANGUAGE sql VOLATILE AS $$ SELECT * FROM orders $$;
-- Not fields: volatile, a set, two arguments.
CREATE FUNCTION customers_touch(c customers) RETURNS int LANGUAGE sql VOLATILE AS $$ SELECT 1 $$;
CREATE FUNCTION customers_all(c customers) RETURNS SETOF int LANGUAGE sql STABLE AS $$ SELECT 1 $$;
CREATE FUNCTION customers_plus(c customers, n int) RETURNS int LANGUAGE sql STABLE AS $$ SELECT n $$;
";

/// A demo database with [`FUNCTIONS`], the server on it, and a socket subscribed to
/// `query`; the server is returned to keep it running.
fn subscribed(query: &str) -> (String, Server, support::ws::Client) {
    let url = demo_database(FUNCTIONS);
    let server = Server::start_on(&url, &[]);
    let mut c = open_socket(&server);
    c.send_text(&subscribe_message("s", query));
    (url, server, c)
}

#[test]
fn a_function_of_a_row_is_a_field_of_its_type() {
    let url = demo_database(FUNCTIONS);
    let e = engine(&url, &["public"]);
    let got: Value = serde_json::from_str(&run(
        &e,
        &url,
        "{ customers(orderBy: { id: ASC }) { id label }
           orders(filter: { id: { lt: 3 } }, orderBy: { id: ASC }) { id itemCount customer { label } } }",
        None,
    ))
    .unwrap();
    let want: Value = serde_json::from_str(&psql(
        &url,
        "SELECT json_build_object(
           'customers', (SELECT json_agg(json_build_object('id', id, 'label', customers_label(c))
                                         ORDER BY id) FROM customers c),
           'orders', (SELECT json_agg(json_build_object('id', o.id,
                                        'itemCount', item_count(o)::text,
                                        'customer', json_build_object('label', customers_label(c)))
                                      ORDER BY o.id)
                      FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id < 3))",
    ))
    .unwrap();
    assert_eq!(got, want);
    assert_eq!(got["customers"][0]["label"], "Acme Corp <buyer@acme.test>");

    // Only functions of one row returning one value, that may run inside a query.
    let fields: Value = serde_json::from_str(&run(
        &e,
        &url,
        r#"{ __type(name: "Customers") { fields { name description } } }"#,
        None,
    ))
    .unwrap();
    let fields = fields["__type"]["fields"].as_array().unwrap();
    let names: Vec<&str> = fields.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"label"), "{names:?}");
    for absent in ["touch", "all", "plus", "customersTouch"] {
        assert!(!names.contains(&absent), "{absent} in {names:?}");
    }
    let label = fields.iter().find(|f| f["name"] == "label").unwrap();
    assert_eq!(label["description"], "Name and address.");
}

#[test]
fn a_live_query_with_a_computed_field_refreshes_on_any_change() {
    let (url, _server, mut c) =
        subscribed("subscription { orders(filter: { id: { eq: 1 } }) { id itemCount } }");
    let mut next = || next_data(&mut c, "orders");
    let count = |url: &str| psql(url, "SELECT count(*) FROM order_items WHERE order_id = 1");
    assert_eq!(next(), json!([{ "id": 1, "itemCount": count(&url) }]));
    // The query reads `orders` only; the function reads `order_items`.
    psql(
        &url,
        "INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES (1, 3, 1, 99)",
    );
    assert_eq!(next(), json!([{ "id": 1, "itemCount": count(&url) }]));
}

#[test]
fn a_change_outside_the_root_filter_still_refreshes_a_computed_field() {
    let (url, _server, mut c) =
        subscribed("subscription { orders(filter: { id: { eq: 1 } }) { id richer } }");
    let mut next = || next_data(&mut c, "orders");
    let richer = |url: &str| {
        psql(
            url,
            "SELECT count(*) FROM orders WHERE total > (SELECT total FROM orders WHERE id = 1)",
        )
    };
    assert_eq!(next(), json!([{ "id": 1, "richer": richer(&url) }]));
    // A row the filter leaves out, which the function reads: not to be skipped.
    psql(
        &url,
        "INSERT INTO orders (customer_id, total, status) VALUES (2, 1000, 'pending')",
    );
    assert_eq!(next(), json!([{ "id": 1, "richer": richer(&url) }]));
}

#[test]
fn a_function_returning_rows_is_a_root_field() {
    let url = demo_database(FUNCTIONS);
    let e = engine(&url, &["public"]);
    let got: Value = serde_json::from_str(&run(
        &e,
        &url,
        r#"query($term: String!) {
             searchProducts(term: $term, orderBy: { name: ASC }) { name }
             ordersOfStatus(wanted: "pending", atLeast: "10", filter: { priority: { neq: low } }, limit: 5) { id total }
           }"#,
        Some(r#"{"term": "ge"}"#),
    ))
    .unwrap();
    let want: Value = serde_json::from_str(&psql(
        &url,
        "SELECT json_build_object(
           'searchProducts', (SELECT json_agg(json_build_object('name', name) ORDER BY name)
                              FROM search_products('ge')),
           'ordersOfStatus', (SELECT json_agg(json_build_object('id', id, 'total', total::text)
                                              ORDER BY id)
                              FROM orders_of_status('pending', 10) WHERE priority <> 'low'))",
    ))
    .unwrap();
    assert_eq!(got, want);
    assert_eq!(
        got["searchProducts"].as_array().map(Vec::len),
        Some(2),
        "{got}"
    );
    // An argument is a value, never SQL.
    let quoted: Value = serde_json::from_str(&run(
        &e,
        &url,
        r#"{ searchProducts(term: "x' OR '1'='1") { name } }"#,
        None,
    ))
    .unwrap();
    assert_eq!(quoted, json!({ "searchProducts": [] }));
    // Volatile functions are not served.
    let roots: Value = serde_json::from_str(&run(
        &e,
        &url,
        r#"{ __type(name: "Query") { fields { name } } }"#,
        None,
    ))
    .unwrap();
    let names: Vec<&str> = roots["__type"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"ordersOfStatus") && !names.contains(&"noisyOrders"),
        "{names:?}"
    );
}

#[test]
fn a_subscribed_root_function_follows_the_writes() {
    let (url, _server, mut c) = subscribed(
        r#"subscription { ordersOfStatus(wanted: "paid", atLeast: "0", orderBy: { id: ASC }) { id } }"#,
    );
    let mut next = || next_data(&mut c, "ordersOfStatus");
    assert_eq!(next(), json!([{ "id": 2 }]));
    psql(&url, "UPDATE orders SET status = 'paid' WHERE id = 3");
    assert_eq!(next(), json!([{ "id": 2 }, { "id": 3 }]));
}

/// Shapes that once broke: a mutation returning a computed field (the function needs the
/// whole row back), a column named like the statement's own row alias, a function named
/// like a relation's aggregate, domain-typed overloads of a root function, and polymorphic
/// functions (never served).
#[test]
fn computed_fields_and_functions_in_awkward_shapes() {
    let url = demo_database(&format!(
        "{FUNCTIONS}
         CREATE FUNCTION customers_orders_aggregate(c customers) RETURNS int LANGUAGE sql STABLE
           AS $$ SELECT 7 $$;
         CREATE TABLE aliased (id int PRIMARY KEY, s1 int, s2 int, s3 int, s4 int);
         CREATE TRIGGER aliased_notify AFTER INSERT OR UPDATE OR DELETE ON aliased
           FOR EACH ROW EXECUTE FUNCTION notify_table_change();
         INSERT INTO aliased VALUES (1, 10, 20, 30, 40);
         CREATE FUNCTION aliased_total(a aliased) RETURNS int LANGUAGE sql STABLE
           AS $$ SELECT a.s1 + a.s2 + a.s3 + a.s4 $$;
         CREATE DOMAIN posint AS int CHECK (VALUE > 0);
         CREATE FUNCTION pick(n int) RETURNS SETOF aliased LANGUAGE sql STABLE
           AS $$ SELECT * FROM aliased WHERE n = 1 $$;
         CREATE FUNCTION pick(n posint) RETURNS SETOF aliased LANGUAGE sql STABLE
           AS $$ SELECT * FROM aliased WHERE n = 2 $$;
         CREATE FUNCTION anything(x anyelement) RETURNS SETOF aliased LANGUAGE sql STABLE
           AS $$ SELECT * FROM aliased $$;"
    ));
    let server = Server::start_on(&url, &[]);
    let post = |query: &str| -> Value {
        let response = server.post_graphql(None, query);
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
    };
    let inserted = post(
        r#"mutation { insertCustomers(objects: [{ name: "Hooli", email: "h@hooli.test" }]) { label } }"#,
    );
    assert_eq!(
        inserted["data"]["insertCustomers"],
        json!([{ "label": "Hooli <h@hooli.test>" }]),
        "{inserted}"
    );
    assert_eq!(
        post("{ aliased { s1 total } }")["data"]["aliased"],
        json!([{ "s1": 10, "total": 100 }])
    );
    // The aggregate keeps its name; the function yields.
    let customers = post(
        "{ customers(filter: { id: { eq: 1 } }) { ordersAggregate { count } ordersAggregate2 } }",
    );
    assert_eq!(
        customers["data"]["customers"][0]["ordersAggregate2"], 7,
        "{customers}"
    );
    // Each overload runs for its own field: `pick(int)` matches 1, `pick(posint)` 2.
    let picked = post("{ one: pick(n: 1) { id } other: pick2(n: 2) { id } }");
    assert_eq!(
        picked["data"],
        json!({ "one": [{ "id": 1 }], "other": [{ "id": 1 }] }),
        "{picked}"
    );
    let none = post("{ one: pick(n: 2) { id } other: pick2(n: 1) { id } }");
    assert_eq!(none["data"], json!({ "one": [], "other": [] }), "{none}");
    let roots = post(r#"{ __type(name: "Query") { fields { name } } }"#);
    assert!(!roots.to_string().contains("\"anything\""), "{roots}");
}
