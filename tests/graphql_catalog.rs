//! The introspection query against real catalogs: privileges, multi-column foreign keys,
//! several schemas and their name clashes, comments, views on views.

mod support;

use postrust::catalog::{Catalog, RelationKind};
use support::gql::{assert_data, catalog, demo_database, dollar_quote, engine, psql};

#[test]
fn the_checked_in_fixture_is_the_demo_catalog() {
    let url = demo_database("");
    let live = catalog(&url, &["public"]);
    let fixture = Catalog::from_json(include_str!("fixtures/demo-catalog.json")).unwrap();
    assert_eq!(live, fixture, "regenerate tests/fixtures/demo-catalog.json");
    let dash = live
        .relations
        .iter()
        .find(|r| r.name.name == "sales_dashboard")
        .unwrap();
    assert_eq!(dash.kind, RelationKind::View);
    assert_eq!(
        dash.comment.as_deref(),
        Some("Revenue and best sellers over all orders that are not cancelled."),
        "the directive line is not part of the description"
    );
    assert!(dash.single_row);
    let orders = live
        .relations
        .iter()
        .find(|r| r.name.name == "orders")
        .unwrap();
    assert_eq!(orders.primary_key, ["id"]);
    assert_eq!(orders.foreign_keys[0].columns, ["customer_id"]);
    assert_eq!(
        orders.column("total").unwrap().comment.as_deref(),
        Some("Order total in the shop currency.")
    );
}

const MULTI: &str = r#"
CREATE SCHEMA inventory;
CREATE TABLE inventory.warehouses (
  region text, code int, label text,
  PRIMARY KEY (region, code)
);
CREATE TABLE inventory.stock (
  id int PRIMARY KEY,
  region text, code int, qty int,
  FOREIGN KEY (region, code) REFERENCES inventory.warehouses (region, code)
);
CREATE TABLE inventory.orders (id int PRIMARY KEY, ref text);
CREATE MATERIALIZED VIEW inventory.totals AS
  SELECT region, sum(qty) AS qty FROM inventory.stock GROUP BY region;
CREATE VIEW inventory.stock_view AS SELECT * FROM inventory.stock;
CREATE VIEW inventory.stock_view_view AS SELECT id FROM inventory.stock_view;
INSERT INTO inventory.warehouses VALUES ('eu', 1, 'Berlin'), ('eu', 2, 'Paris'), ('us', 1, 'Austin');
INSERT INTO inventory.stock VALUES (1, 'eu', 2, 5), (2, 'us', 1, 7), (3, 'eu', 1, 1);
INSERT INTO inventory.orders VALUES (1, 'inv-1');
REFRESH MATERIALIZED VIEW inventory.totals;
"#;

#[test]
fn several_schemas_multi_column_keys_and_name_clashes() {
    let url = demo_database(MULTI);
    let e = engine(&url, &["public", "inventory"]);
    let kinds: Vec<(String, RelationKind)> = e
        .schema()
        .catalog
        .relations
        .iter()
        .map(|r| (r.name.to_string(), r.kind))
        .collect();
    assert!(kinds.contains(&("inventory.totals".into(), RelationKind::MaterializedView)));
    let view = e
        .schema()
        .catalog
        .relations
        .iter()
        .find(|r| r.name.name == "stock_view_view")
        .unwrap();
    assert_eq!(view.reads[0].to_string(), "inventory.stock");
    assert_data(
        &e,
        &url,
        "{ stock { id qty warehouses { label } }
           warehouses(filter: { region: { eq: \"eu\" } }) { label stock { qty } }
           orders(limit: 1) { id } inventoryOrders { ref }
           totals { region qty } stockViewView { id } }",
        None,
        r#"{"stock":[{"id":1,"qty":5,"warehouses":{"label":"Paris"}},
                     {"id":2,"qty":7,"warehouses":{"label":"Austin"}},
                     {"id":3,"qty":1,"warehouses":{"label":"Berlin"}}],
            "warehouses":[{"label":"Berlin","stock":[{"qty":1}]},{"label":"Paris","stock":[{"qty":5}]}],
            "orders":[{"id":1}],"inventoryOrders":[{"ref":"inv-1"}],
            "totals":[{"region":"eu","qty":"6"},{"region":"us","qty":"7"}],
            "stockViewView":[{"id":1},{"id":2},{"id":3}]}"#,
    );
    // The clashing table's type is qualified by its schema.
    assert!(e.schema().type_id("InventoryOrders").is_some());
    let tables = e
        .prepare("{ stockViewView { id } }", None, None)
        .unwrap()
        .tables;
    assert_eq!(tables.iter().next().unwrap().to_string(), "inventory.stock");
}

#[test]
fn only_what_the_role_may_select_is_exposed() {
    let url = demo_database(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gql_reader') THEN
             CREATE ROLE gql_reader;
           END IF;
         END $$;
         GRANT USAGE ON SCHEMA public TO gql_reader;
         GRANT SELECT (id, name) ON users TO gql_reader;
         GRANT SELECT ON orders, customers TO gql_reader;",
    );
    let json = psql(
        &url,
        &format!(
            "SET ROLE gql_reader;\nPREPARE c(text[]) AS {};\nEXECUTE c({});",
            postrust::catalog::INTROSPECTION_SQL,
            dollar_quote("{public}")
        ),
    );
    let c = Catalog::from_json(&json).unwrap();
    let names: Vec<&str> = c.relations.iter().map(|r| r.name.name.as_str()).collect();
    assert_eq!(names, ["customers", "orders", "users"]);
    let users = &c.relations[2];
    let cols: Vec<&str> = users.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(cols, ["id", "name"]);
    // Under that role the compiled SQL reads only granted columns.
    let config = postrust::config::Config::from_lookup(|_| None).unwrap();
    let e = postrust::engine::Engine::new(c, &config);
    let p = e.prepare("{ users { name } }", None, None).unwrap();
    let postrust::engine::Plan::Sql { sql, .. } = p.plan else {
        panic!()
    };
    let out = psql(&url, &format!("SET ROLE gql_reader;\n{sql};"));
    assert_eq!(
        support::gql::compact(&out),
        r#"{"users":[{"name":"Ada Lovelace"},{"name":"Grace Hopper"},{"name":"Linus Torvalds"}]}"#
    );
}

#[test]
fn the_demo_roles_see_what_they_are_granted() {
    let roles = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/roles.sql"),
    )
    .unwrap();
    let url = demo_database(&format!("{roles}\n{roles}"));
    let exposed = |role: &str| -> Vec<String> {
        let json = psql(
            &url,
            &format!(
                "SET ROLE {role};\nPREPARE c(text[]) AS {};\nEXECUTE c({});",
                postrust::catalog::INTROSPECTION_SQL,
                dollar_quote("{public}")
            ),
        );
        let c = Catalog::from_json(&json).unwrap();
        c.relations
            .iter()
            .map(|r| {
                let cols: Vec<&str> = r.columns.iter().map(|c| c.name.as_str()).collect();
                format!("{}({})", r.name.name, cols.len())
            })
            .collect()
    };
    assert_eq!(
        exposed("web_anon"),
        ["products(8)", "sales_dashboard(4)", "sales_headline(2)"]
    );
    assert_eq!(
        exposed("web_user"),
        [
            "customers(5)",
            "order_items(5)",
            "orders(8)",
            "products(8)",
            "sales_dashboard(4)",
            "sales_headline(2)",
            "users(2)"
        ]
    );
}
