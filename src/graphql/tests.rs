//! One test per validation rule: the message (graphql-js wording) and its locations.

use super::*;
use crate::catalog::Catalog;
use crate::schema::build::build;

fn schema() -> Schema {
    let json = include_str!("../../tests/fixtures/demo-catalog.json");
    build(Catalog::from_json(json).unwrap())
}

fn depth(max_depth: usize) -> Limits {
    Limits {
        max_depth,
        ..Limits::default()
    }
}

fn vars(json: &str) -> OwnedValue {
    let mut bytes = json.as_bytes().to_vec();
    simd_json::to_owned_value(&mut bytes).unwrap()
}

/// The errors for `query` as (message, [(line, column)]).
fn errors_with(
    query: &str,
    variables: Option<&str>,
    op: Option<&str>,
) -> Vec<(String, Vec<(usize, usize)>)> {
    let v = variables.map(vars);
    let errs = validate(&schema(), query, v.as_ref(), op, &Limits::default()).expect_err(query);
    errs.into_iter()
        .map(|e| {
            (
                e.message,
                e.locations.iter().map(|l| (l.line, l.column)).collect(),
            )
        })
        .collect()
}

fn errors(query: &str) -> Vec<(String, Vec<(usize, usize)>)> {
    errors_with(query, None, None)
}

fn one(query: &str, message: &str, at: &[(usize, usize)]) {
    assert_eq!(
        errors(query),
        vec![(message.to_owned(), at.to_vec())],
        "{query}"
    );
}

#[test]
fn syntax_errors_have_a_location() {
    let e = errors("{ users { id }");
    assert!(e[0].0.starts_with("Syntax Error: "), "{e:?}");
    assert_eq!(e[0].1, vec![(1, 15)]);
}

#[test]
fn fields_on_correct_type() {
    one(
        "{ users { nope } }",
        "Cannot query field \"nope\" on type \"Users\".",
        &[(1, 11)],
    );
    assert_eq!(
        errors("subscription { __schema { types { name } } }"),
        vec![
            (
                "Cannot query field \"__schema\" on type \"Subscription\".".to_owned(),
                vec![(1, 16)]
            ),
            (
                "Anonymous Subscription must not select an introspection top level field."
                    .to_owned(),
                vec![(1, 16)]
            ),
        ]
    );
}

#[test]
fn known_argument_names() {
    one(
        "{ users(first: 1) { id } }",
        "Unknown argument \"first\" on field \"Query.users\".",
        &[(1, 9)],
    );
    one(
        "{ users { id @skip(when: true, if: true) } }",
        "Unknown argument \"when\" on directive \"@skip\".",
        &[(1, 20)],
    );
}

#[test]
fn unique_argument_names() {
    one(
        "{ users(limit: 1, limit: 2) { id } }",
        "There can be only one argument named \"limit\".",
        &[(1, 19)],
    );
}

#[test]
fn provided_required_arguments() {
    one(
        "{ __type { name } }",
        "Field \"__type\" argument \"name\" of type \"String!\" is required, but it was not provided.",
        &[(1, 3)],
    );
    one(
        "{ users { id @include } }",
        "Directive \"@include\" argument \"if\" of type \"Boolean!\" is required, but it was not provided.",
        &[(1, 14)],
    );
}

#[test]
fn values_of_correct_type() {
    one(
        "{ users(limit: \"ten\") { id } }",
        "Int cannot represent non-integer value: \"ten\"",
        &[(1, 16)],
    );
    one(
        "{ orders(filter: { total: { gt: true } }) { id } }",
        "Expected value of type \"BigFloat\", found true.",
        &[(1, 18)],
    );
    one(
        "{ orders(filter: { nope: { eq: 1 } }) { id } }",
        "Field \"nope\" is not defined by type \"OrdersFilter\".",
        &[(1, 18)],
    );
    one(
        "{ orders(filter: { priority: { eq: URGENT } }) { id } }",
        "Value \"URGENT\" does not exist in \"OrderPriority\" enum.",
        &[(1, 18)],
    );
    one(
        "{ orders(orderBy: { total: \"DESC\" }) { id } }",
        "Enum \"SortDirection\" cannot represent non-enum value: \"DESC\".",
        &[(1, 19)],
    );
    one(
        "{ orders(filter: { status: \"pending\" }) { id } }",
        "Expected value of type \"StringFilter\", found \"pending\".",
        &[(1, 18)],
    );
}

#[test]
fn scalar_leafs() {
    one(
        "{ users { id { x } } }",
        "Field \"id\" must not have a selection since type \"Int!\" has no subfields.",
        &[(1, 14)],
    );
    one(
        "{ orders { customer } }",
        "Field \"customer\" of type \"Customers\" must have a selection of subfields. Did you mean \"customer { ... }\"?",
        &[(1, 12)],
    );
}

#[test]
fn known_directives_locations_and_uniqueness() {
    one(
        "{ users { id @nope } }",
        "Unknown directive \"@nope\".",
        &[(1, 14)],
    );
    one(
        "query @skip(if: true) { users { id } }",
        "Directive \"@skip\" may not be used on QUERY.",
        &[(1, 7)],
    );
    one(
        "{ users { id @skip(if: false) @skip(if: false) } }",
        "The directive \"@skip\" can only be used once at this location.",
        &[(1, 31)],
    );
}

#[test]
fn skip_and_include_apply() {
    let s = schema();
    let q = "query ($no: Boolean!) { users { id @skip(if: true) name @include(if: $no) email } }";
    let op = validate(
        &s,
        q,
        Some(&vars(r#"{"no": false}"#)),
        None,
        &Limits::default(),
    )
    .unwrap();
    let keys: Vec<&str> = op.selection[0]
        .children
        .iter()
        .map(|c| c.key.as_str())
        .collect();
    assert_eq!(keys, ["email"]);
}

#[test]
fn fragments() {
    one("{ users { ...F } }", "Unknown fragment \"F\".", &[(1, 11)]);
    one(
        "{ users { id } } fragment F on Users { id }",
        "Fragment \"F\" is never used.",
        &[(1, 18)],
    );
    one(
        "{ users { ...F } } fragment F on Orders { id }",
        "Fragment \"F\" cannot be spread here as objects of type \"Users\" can never be of type \"Orders\".",
        &[(1, 11)],
    );
    one(
        "{ users { ... on Orders { id } } }",
        "Fragment cannot be spread here as objects of type \"Users\" can never be of type \"Orders\".",
        &[(1, 11)],
    );
    one(
        "{ users { ... on Int { id } } }",
        "Fragment cannot condition on non composite type \"Int\".",
        &[(1, 18)],
    );
    one(
        "{ users { ... on Nope { id } } }",
        "Unknown type \"Nope\".",
        &[(1, 18)],
    );
    one(
        "{ users { ...F } } fragment F on Users { id } fragment F on Users { name }",
        "There can be only one fragment named \"F\".",
        &[(1, 20), (1, 47)],
    );
    let s = schema();
    let q = "{ users { ...F ... on Users { email } } } fragment F on Users { id name }";
    let op = validate(&s, q, None, None, &Limits::default()).unwrap();
    let keys: Vec<&str> = op.selection[0]
        .children
        .iter()
        .map(|c| c.key.as_str())
        .collect();
    assert_eq!(keys, ["id", "name", "email"]);
}

#[test]
fn no_fragment_cycles() {
    one(
        "{ users { ...A } } fragment A on Users { ...A }",
        "Cannot spread fragment \"A\" within itself.",
        &[(1, 42)],
    );
    one(
        "{ users { ...A } } fragment A on Users { ...B } fragment B on Users { ...A }",
        "Cannot spread fragment \"A\" within itself via \"B\".",
        &[(1, 42), (1, 71)],
    );
}

#[test]
fn variables() {
    one(
        "query ($n: Int, $n: Int) { users(limit: $n) { id } }",
        "There can be only one variable named \"$n\".",
        &[(1, 17)],
    );
    one(
        "query ($u: Users) { users(filter: $u) { id } }",
        "Variable \"$u\" cannot be non-input type \"Users\".",
        &[(1, 12)],
    );
    one(
        "query Q { users(limit: $n) { id } }",
        "Variable \"$n\" is not defined by operation \"Q\".",
        &[(1, 24), (1, 1)],
    );
    one(
        "query Q($n: Int) { users { id } }",
        "Variable \"$n\" is never used in operation \"Q\".",
        &[(1, 9)],
    );
    one(
        "query ($n: String) { users(limit: $n) { id } }",
        "Variable \"$n\" of type \"String\" used in position expecting type \"Int\".",
        &[(1, 8), (1, 35)],
    );
    one(
        "query ($n: Int = \"x\") { users(limit: $n) { id } }",
        "Int cannot represent non-integer value: \"x\"",
        &[(1, 18)],
    );
}

#[test]
fn variable_values_are_coerced() {
    let e = errors_with("query ($n: Int!) { users(limit: $n) { id } }", None, None);
    assert_eq!(
        e[0].0,
        "Variable \"$n\" of required type \"Int!\" was not provided."
    );
    let e = errors_with(
        "query ($n: Int) { users(limit: $n) { id } }",
        Some(r#"{"n": "ten"}"#),
        None,
    );
    assert_eq!(
        e[0].0,
        "Variable \"$n\" got invalid value \"ten\"; Expected type \"Int\"."
    );
    let e = errors_with(
        "query ($f: OrdersFilter) { orders(filter: $f) { id } }",
        Some(r#"{"f": {"status": {"eq": 1}}}"#),
        None,
    );
    assert!(e[0].0.contains("At \"status\""), "{e:?}");
}

#[test]
fn operation_selection() {
    let two = "query A { users { id } } query B { orders { id } }";
    assert_eq!(
        errors(two)[0].0,
        "Must provide operation name if query contains multiple operations."
    );
    assert_eq!(
        errors_with(two, None, Some("C"))[0].0,
        "Unknown operation named \"C\"."
    );
    let op = validate(&schema(), two, None, Some("B"), &Limits::default()).unwrap();
    assert_eq!(op.name.as_deref(), Some("B"));
    assert_eq!(op.selection[0].key, "orders");
    one(
        "{ users { id } } query A { users { id } }",
        "This anonymous operation must be the only defined operation.",
        &[(1, 1)],
    );
    one(
        "query A { users { id } } query A { users { id } }",
        "There can be only one operation named \"A\".",
        &[(1, 1), (1, 26)],
    );
    one(
        "mutation { users { id } }",
        "Cannot query field \"users\" on type \"Mutation\".",
        &[(1, 12)],
    );
    // A database no client role may write has no Mutation type.
    let mut catalog =
        Catalog::from_json(include_str!("../../tests/fixtures/demo-catalog.json")).unwrap();
    for r in &mut catalog.relations {
        r.writes = Default::default();
    }
    let read_only = build(catalog);
    assert!(read_only.mutation.is_none());
    let errs = validate(
        &read_only,
        "mutation { insertUsers(objects: []) { id } }",
        None,
        None,
        &Limits::default(),
    )
    .expect_err("no mutations");
    assert_eq!(
        errs[0].message,
        "Schema is not configured to execute mutation operation."
    );
}

#[test]
fn single_field_subscriptions() {
    one(
        "subscription S { users { id } orders { id } }",
        "Subscription \"S\" must select only one top level field.",
        &[(1, 31)],
    );
    one(
        "subscription { __typename }",
        "Anonymous Subscription must not select an introspection top level field.",
        &[(1, 16)],
    );
}

#[test]
fn overlapping_fields() {
    one(
        "{ users { a: id a: name } }",
        "Fields \"a\" conflict because \"id\" and \"name\" are different fields. Use different aliases on the fields to fetch both if this was intentional.",
        &[(1, 11), (1, 17)],
    );
    one(
        "{ users(limit: 1) { id } users(limit: 2) { id } }",
        "Fields \"users\" conflict because they have differing arguments. Use different aliases on the fields to fetch both if this was intentional.",
        &[(1, 3), (1, 26)],
    );
    let op = validate(
        &schema(),
        "{ users { id } users { name } }",
        None,
        None,
        &Limits::default(),
    )
    .unwrap();
    let keys: Vec<&str> = op.selection[0]
        .children
        .iter()
        .map(|c| c.key.as_str())
        .collect();
    assert_eq!(keys, ["id", "name"]);
}

#[test]
fn depth_limit() {
    let q = "{ orders { customer { orders { orderItems { order { id } } } } } }";
    assert!(validate(&schema(), q, None, None, &depth(5)).is_ok());
    let e = validate(&schema(), q, None, None, &depth(4)).unwrap_err();
    assert_eq!(e[0].code, ErrorCode::TooDeep);
    assert_eq!(
        e[0].message,
        "The selection nests 5 levels deep; at most 4 are allowed."
    );
    assert_eq!(
        e[0].locations,
        vec![Location {
            line: 1,
            column: 45
        }]
    );
}

#[test]
fn field_limit_stops_fragment_bombs() {
    // Each fragment spreads the next one under four aliases: 4^8 fields from a short text.
    let mut q = String::from("{ customers { ...F0 } }");
    for i in 0..8 {
        let (on, field) = if i % 2 == 0 {
            ("Customers", "orders")
        } else {
            ("Orders", "customer")
        };
        let n = i + 1;
        q.push_str(&format!(
            " fragment F{i} on {on} {{ a: {field} {{ ...F{n} }} b: {field} {{ ...F{n} }} c: {field} {{ ...F{n} }} d: {field} {{ ...F{n} }} }}"
        ));
    }
    q.push_str(" fragment F8 on Customers { id }");
    let e = validate(&schema(), &q, None, None, &Limits::default()).unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].code, ErrorCode::TooComplex);
    assert_eq!(e[0].message, "The operation selects more than 2000 fields.");
}

/// The codes of the errors `query` gets with the default limits.
fn codes(query: &str, variables: Option<&str>) -> Vec<ErrorCode> {
    let v = variables.map(vars);
    validate(&schema(), query, v.as_ref(), None, &Limits::default())
        .expect_err(query)
        .into_iter()
        .map(|e| e.code)
        .collect()
}

#[test]
fn nesting_past_the_limit_is_refused_before_parsing() {
    // 1,600 levels of lists (and 1,200 of objects) overflowed the parser's stack.
    let lists = format!(
        "{{ products(filter: {{id: {{in: {}1{}}}}}) {{ id }} }}",
        "[".repeat(1600),
        "]".repeat(1600)
    );
    assert_eq!(codes(&lists, None), [ErrorCode::InputTooDeep]);
    let objects = format!(
        "{{ orders(filter: {}{{id: {{eq: 1}}}}{}) {{ id }} }}",
        "{not: ".repeat(1200),
        "}".repeat(1200)
    );
    assert_eq!(codes(&objects, None), [ErrorCode::InputTooDeep]);
    // Just within the limit, the document is parsed and validated as usual.
    let within = format!(
        "{{ orders(filter: {}{{id: {{eq: 1}}}}{}) {{ id }} }}",
        "{not: ".repeat(30),
        "}".repeat(30)
    );
    assert!(validate(&schema(), &within, None, None, &Limits::default()).is_ok());
}

#[test]
fn a_fragment_bomb_is_checked_in_linear_time() {
    // Each fragment spreads the next twice: 2^40 paths through 40 fragments. The cycle check
    // enters each fragment once; the walk stops at the field limit.
    let mut doc = String::from("{ users { ...F0 } }");
    for i in 0..40 {
        doc.push_str(&format!(
            " fragment F{i} on Users {{ ...F{} ...F{} }}",
            i + 1,
            i + 1
        ));
    }
    doc.push_str(" fragment F40 on Users { id }");
    assert_eq!(codes(&doc, None), [ErrorCode::TooComplex]);
    // With a cycle at the end and no operation spreading them (so that the walk does not
    // stop first), the cycle check alone faces every path: it reports the cycle once.
    let cyclic = doc
        .replace("{ users { ...F0 } }", "{ users { id } }")
        .replace(
            "fragment F40 on Users { id }",
            "fragment F40 on Users { ...F0 }",
        );
    let e = errors(&cyclic);
    let cycles: Vec<_> = e
        .iter()
        .filter(|(m, _)| m.contains("within itself"))
        .collect();
    assert_eq!(cycles.len(), 1, "{e:?}");
    assert!(
        cycles[0]
            .0
            .starts_with("Cannot spread fragment \"F0\" within itself via")
    );
}

#[test]
fn a_long_chain_of_fragments_is_bounded_like_nesting() {
    let mut doc = String::from("{ users { ...F0 } }");
    for i in 0..5000 {
        doc.push_str(&format!(" fragment F{i} on Users {{ ...F{} }}", i + 1));
    }
    doc.push_str(" fragment F5000 on Users { id }");
    assert_eq!(codes(&doc, None), [ErrorCode::InputTooDeep]);
}

#[test]
fn errors_per_response_are_capped() {
    let doc = format!("{{ users {} {{ id }} }}", "@nosuch ".repeat(5000));
    let e = errors(&doc);
    assert_eq!(e.len(), 101);
    assert_eq!(
        e[100].0,
        "Too many validation errors, error limit reached. Validation aborted."
    );
}

#[test]
fn the_field_budget_covers_the_whole_document() {
    // Each operation alone is within the limit; together they are not.
    let fields: String = (0..100).map(|i| format!("f{i}: id ")).collect();
    let mut doc = format!("fragment F on Users {{ {fields} }}");
    for i in 0..100 {
        doc.push_str(&format!(" query Q{i} {{ users {{ ...F }} }}"));
    }
    let v = validate(&schema(), &doc, None, Some("Q0"), &Limits::default());
    let codes: Vec<ErrorCode> = v.expect_err("over budget").iter().map(|e| e.code).collect();
    assert_eq!(codes, [ErrorCode::TooComplex]);
}

#[test]
fn inline_fragments_inside_fragments_are_bounded_too() {
    // Each fragment nests 60 inline fragments, within the text's limit; spread in a chain,
    // the walk would recurse 60 levels per fragment.
    let inline =
        |inner: String| format!("{}{inner}{}", "... on Users { ".repeat(60), "}".repeat(60));
    let mut doc = String::from("{ users { ...F0 } }");
    for i in 0..40 {
        doc.push_str(&format!(
            " fragment F{i} on Users {{ {} }}",
            inline(format!("...F{} ", i + 1))
        ));
    }
    doc.push_str(" fragment F40 on Users { id }");
    let limits = Limits {
        max_input_depth: 64,
        max_fields: 100_000,
        ..Limits::default()
    };
    let errors = validate(&schema(), &doc, None, None, &limits).expect_err("too deep");
    assert_eq!(errors[0].code, ErrorCode::InputTooDeep, "{errors:?}");
}
