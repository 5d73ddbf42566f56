//! Schema generation: names, fields, arguments and the clash rules of `docs/naming.md`.

use super::build::build;
use super::*;
use crate::catalog::{
    Catalog, Column, ForeignKey, PgType, QualifiedName, Relation, RelationKind, TypeKind,
};

fn demo() -> Schema {
    build(Catalog::from_json(include_str!("../../tests/fixtures/demo-catalog.json")).unwrap())
}

fn field_names(s: &Schema, type_name: &str) -> Vec<String> {
    s.fields(s.type_id(type_name).unwrap())
        .iter()
        .map(|f| f.name.clone())
        .collect()
}

fn input_names(s: &Schema, type_name: &str) -> Vec<String> {
    match &s.ty(s.type_id(type_name).unwrap()).kind {
        Kind::Input { fields, .. } => fields.iter().map(|f| f.name.clone()).collect(),
        _ => panic!("{type_name} is not an input"),
    }
}

#[test]
fn demo_schema_roots_types_and_relations() {
    let s = demo();
    // Each relation's rows, then the aggregates of those that are lists, which come after
    // every relation's own field so that they never rename one.
    let roots = [
        "customers",
        "orderItems",
        "orders",
        "products",
        "salesDashboard",
        "salesHeadline",
        "users",
        "customersAggregate",
        "orderItemsAggregate",
        "ordersAggregate",
        "productsAggregate",
        "salesHeadlineAggregate",
        "usersAggregate",
    ];
    assert_eq!(field_names(&s, "Query"), roots);
    assert_eq!(field_names(&s, "Subscription"), roots);
    assert_eq!(
        field_names(&s, "Orders"),
        [
            "id",
            "customerId",
            "total",
            "status",
            "priority",
            "note",
            "createdAt",
            "updatedAt",
            "customer",
            "orderItems",
            "orderItemsAggregate"
        ]
    );
    assert_eq!(
        field_names(&s, "Customers").last().unwrap(),
        "ordersAggregate"
    );
    assert_eq!(
        s.display(&s.field(s.query, "ordersAggregate").unwrap().1.ty),
        "OrdersAggregate!"
    );
    assert_eq!(field_names(&s, "ProductSales"), ["name", "salesCount"]);
    let orders = s.field(s.query, "orders").unwrap().1;
    assert_eq!(s.display(&orders.ty), "[Orders!]!");
    let args: Vec<String> = orders
        .args
        .iter()
        .map(|a| format!("{}: {}", a.name, s.display(&a.ty)))
        .collect();
    assert_eq!(
        args,
        [
            "filter: OrdersFilter",
            "orderBy: [OrdersOrderBy!]",
            "limit: Int",
            "offset: Int"
        ]
    );
    let customer = s.field(s.type_id("Orders").unwrap(), "customer").unwrap().1;
    assert_eq!(s.display(&customer.ty), "Customers");
    assert!(customer.args.is_empty());
    let dash = s.type_id("SalesDashboard").unwrap();
    let types: Vec<String> = s
        .fields(dash)
        .iter()
        .map(|f| format!("{}: {}", f.name, s.display(&f.ty)))
        .collect();
    assert_eq!(
        types,
        [
            "totalRevenue: BigFloat",
            "orderCount: BigInt",
            "averageOrderValue: BigFloat",
            "topProducts: [ProductSales]"
        ]
    );
    assert_eq!(
        input_names(&s, "OrdersFilter"),
        [
            "id",
            "customerId",
            "total",
            "status",
            "priority",
            "note",
            "createdAt",
            "updatedAt",
            "and",
            "or",
            "not",
            "customer",
            "orderItems"
        ]
    );
    // Across relations: the row pointed at, and some/every/none of the rows pointing here.
    assert_eq!(
        input_names(&s, "OrderItemsRelationFilter"),
        ["some", "every", "none"]
    );
    assert_eq!(
        input_names(&s, "StringFilter"),
        [
            "eq",
            "neq",
            "gt",
            "gte",
            "lt",
            "lte",
            "in",
            "notIn",
            "like",
            "ilike",
            "startsWith",
            "endsWith",
            "matches",
            "imatches",
            "isNull"
        ]
    );
    assert_eq!(
        input_names(&s, "JSONFilter"),
        ["contains", "hasKey", "at", "isNull"]
    );
    assert_eq!(input_names(&s, "JSONPathFilter"), ["path", "eq"]);
    assert_eq!(
        input_names(&s, "OrderPriorityFilter"),
        ["eq", "neq", "in", "notIn", "isNull"]
    );
    // A composite array cannot be sorted or filtered on.
    assert!(!input_names(&s, "SalesDashboardOrderBy").contains(&"topProducts".to_owned()));
    assert!(!input_names(&s, "SalesDashboardFilter").contains(&"topProducts".to_owned()));
}

fn ty(name: &str) -> PgType {
    PgType {
        schema: "pg_catalog".into(),
        name: name.into(),
        kind: TypeKind::Base,
        array: false,
        sortable: true,
    }
}

fn col(name: &str) -> Column {
    Column {
        name: name.into(),
        ty: ty("int4"),
        not_null: true,
        comment: None,
        deterministic: true,
        has_default: false,
        insertable: false,
        updatable: false,
    }
}

fn qn(schema: &str, name: &str) -> QualifiedName {
    QualifiedName {
        schema: schema.into(),
        name: name.into(),
    }
}

fn table(schema: &str, name: &str, columns: &[&str], fks: &[(&str, &str)]) -> Relation {
    Relation {
        name: qn(schema, name),
        kind: RelationKind::Table,
        comment: None,
        columns: columns.iter().map(|c| col(c)).collect(),
        primary_key: vec!["id".into()],
        unique_keys: Vec::new(),
        writes: Default::default(),
        foreign_keys: fks
            .iter()
            .map(|(column, target)| ForeignKey {
                name: format!("{name}_{column}_fkey"),
                columns: vec![(*column).into()],
                references: qn(schema, target),
                ref_columns: vec!["id".into()],
            })
            .collect(),
        reads: Vec::new(),
        depends_on: Vec::new(),
        opaque: false,
        notifies: true,
        bypasses_row_security: false,
        single_row: false,
        computed: Vec::new(),
    }
}

#[test]
fn clashes_resolve_as_documented() {
    let catalog = Catalog {
        relations: vec![
            table("public", "people", &["id", "user_id", "userId", "and"], &[]),
            table(
                "public",
                "invoices",
                &["id", "billing_id", "shipping_id", "people"],
                &[
                    ("billing_id", "people"),
                    ("shipping_id", "people"),
                    ("people", "people"),
                ],
            ),
            table("public", "query", &["id"], &[]),
            table("public", "people_filter", &["id"], &[]),
            table("app", "people", &["id"], &[]),
            table("public", "people_aggregate", &["id"], &[]),
        ],
        composites: Vec::new(),
        enums: Vec::new(),
        functions: Vec::new(),
        publication: None,
    };
    let s = build(catalog);
    // A table's own root field and type keep their names; the generated aggregate of
    // `people` yields to the table `people_aggregate`.
    assert_eq!(
        field_names(&s, "Query"),
        [
            "people",
            "invoices",
            "query",
            "peopleFilter",
            "appPeople",
            "peopleAggregate",
            "peopleAggregate2",
            "invoicesAggregate",
            "queryAggregate",
            "peopleFilterAggregate",
            "appPeopleAggregate",
            "peopleAggregateAggregate"
        ]
    );
    assert_eq!(
        s.display(&s.field(s.query, "peopleAggregate2").unwrap().1.ty),
        "PeopleAggregate2!"
    );
    assert_eq!(
        field_names(&s, "People"),
        [
            "id",
            "userId",
            "userId2",
            "and",
            "invoicesByBillingId",
            "invoicesByShippingId",
            "invoicesByPeople",
            "invoicesByBillingIdAggregate",
            "invoicesByShippingIdAggregate",
            "invoicesByPeopleAggregate"
        ]
    );
    assert_eq!(
        field_names(&s, "Invoices"),
        [
            "id",
            "billingId",
            "shippingId",
            "people",
            "billing",
            "shipping",
            "peopleByPeople"
        ]
    );
    assert!(s.type_id("PublicQuery").is_some(), "table `query` yields");
    assert!(
        s.type_id("PeopleFilter2").is_some(),
        "generated input yields to a table"
    );
    assert!(s.type_id("AppPeople").is_some());
    let filter = input_names(&s, "PeopleFilter2");
    assert!(filter.contains(&"andColumn".to_owned()) && filter.contains(&"and".to_owned()));
}
