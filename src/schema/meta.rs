//! What every generated schema has regardless of the catalog: the scalars, the operator
//! filters per scalar, `SortDirection`, the directives and the introspection types.

use super::{
    Directive, EnumValue, Field, InputOrigin, InputValue, Kind, ObjectOrigin, Scalar, Source,
    TypeDef, TypeRef, TypeTable,
};

pub const SCALARS: &[(&str, Scalar, Option<&str>)] = &[
    ("Int", Scalar::Int, None),
    ("Float", Scalar::Float, None),
    ("String", Scalar::String, None),
    ("Boolean", Scalar::Boolean, None),
    ("ID", Scalar::Id, None),
    (
        "BigInt",
        Scalar::BigInt,
        Some("A 64-bit integer (PostgreSQL bigint), as a string so no digit is lost."),
    ),
    (
        "BigFloat",
        Scalar::BigFloat,
        Some("An arbitrary-precision decimal (PostgreSQL numeric), as a string."),
    ),
    (
        "Datetime",
        Scalar::Datetime,
        Some("A point in time, ISO 8601 (PostgreSQL timestamptz/timestamp)."),
    ),
    (
        "Date",
        Scalar::Date,
        Some("A calendar date, YYYY-MM-DD (PostgreSQL date)."),
    ),
    (
        "UUID",
        Scalar::Uuid,
        Some("A UUID in its canonical text form."),
    ),
    (
        "JSON",
        Scalar::Json,
        Some("Any JSON value (PostgreSQL json/jsonb)."),
    ),
];

/// Operators a filter offers for a scalar: comparisons for ordered types, `like`/`ilike`,
/// `startsWith`/`endsWith` and the regular expressions `matches`/`imatches` for strings,
/// `contains`/`hasKey` and equality at a path (`at`) for JSON.
pub fn operators(scalar: Scalar) -> &'static [&'static str] {
    const ORDERED: &[&str] = &[
        "eq", "neq", "gt", "gte", "lt", "lte", "in", "notIn", "isNull",
    ];
    match scalar {
        Scalar::String => &[
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
            "isNull",
        ],
        Scalar::Boolean => &["eq", "neq", "isNull"],
        Scalar::Json => &["contains", "hasKey", "at", "isNull"],
        _ => ORDERED,
    }
}

/// Operators of an enum's filter.
pub const ENUM_OPERATORS: &[&str] = &["eq", "neq", "in", "notIn", "isNull"];

/// Operators on an array column, each taking a list of elements: `contains` (every one of
/// them is in the array), `containedBy` (every element of the array is among them),
/// `overlaps` (some element is among them).
pub const LIST_OPERATORS: &[&str] = &["contains", "containedBy", "overlaps", "isNull"];

/// The filter of an array column whose elements are `element`.
pub(crate) fn list_filter(t: &TypeTable, name: String, element: TypeRef) -> TypeDef {
    let fields = LIST_OPERATORS
        .iter()
        .map(|op| match *op {
            "isNull" => input(op, TypeRef::Named(t.id("Boolean")), None),
            _ => input(op, element.clone().non_null().list(), None),
        })
        .collect();
    TypeDef {
        description: Some(format!(
            "Conditions on an array column of {name}; all must hold."
        )),
        name: format!("{name}ListFilter"),
        kind: Kind::Input {
            fields,
            origin: InputOrigin::ListOperators,
        },
    }
}

/// The filter input type of `value`'s type with `ops`.
pub(crate) fn operator_fields(t: &TypeTable, value: TypeRef, ops: &[&str]) -> Vec<InputValue> {
    ops.iter()
        .map(|op| {
            let ty = match *op {
                "in" | "notIn" => value.clone().non_null().list(),
                "isNull" => TypeRef::Named(t.id("Boolean")),
                "like" | "ilike" | "startsWith" | "endsWith" | "hasKey" | "matches"
                | "imatches" => TypeRef::Named(t.id("String")),
                "at" => TypeRef::Named(t.id(JSON_PATH_FILTER)),
                _ => value.clone(),
            };
            input(op, ty, None)
        })
        .collect()
}

pub fn input(name: &str, ty: TypeRef, description: Option<&str>) -> InputValue {
    InputValue {
        name: name.to_owned(),
        description: description.map(str::to_owned),
        ty,
        default: None,
        column: None,
        relation: None,
    }
}

pub const SORT_DIRECTION: &str = "SortDirection";
/// The input of JSON's `at`: a path and the value there.
pub const JSON_PATH_FILTER: &str = "JSONPathFilter";
pub const SORT_DIRECTIONS: &[&str] = &[
    "ASC",
    "DESC",
    "ASC_NULLS_FIRST",
    "ASC_NULLS_LAST",
    "DESC_NULLS_FIRST",
    "DESC_NULLS_LAST",
];

/// Parses a type written in SDL (`[__Type!]!`) against the types registered so far.
fn parse(t: &TypeTable, text: &str) -> TypeRef {
    if let Some(inner) = text.strip_suffix('!') {
        return parse(t, inner).non_null();
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return parse(t, inner).list();
    }
    TypeRef::Named(t.id(text))
}

const INCLUDE_DEPRECATED: &[(&str, &str, Option<&str>)] =
    &[("includeDeprecated", "Boolean", Some("false"))];

/// Introspection object types: name, then fields as (name, type, arguments).
type MetaField = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str, Option<&'static str>)],
);
const META_OBJECTS: &[(&str, &[MetaField])] = &[
    (
        "__Schema",
        &[
            ("description", "String", &[]),
            ("types", "[__Type!]!", &[]),
            ("queryType", "__Type!", &[]),
            ("mutationType", "__Type", &[]),
            ("subscriptionType", "__Type", &[]),
            ("directives", "[__Directive!]!", &[]),
        ],
    ),
    (
        "__Type",
        &[
            ("kind", "__TypeKind!", &[]),
            ("name", "String", &[]),
            ("description", "String", &[]),
            ("specifiedByURL", "String", &[]),
            ("fields", "[__Field!]", INCLUDE_DEPRECATED),
            ("interfaces", "[__Type!]", &[]),
            ("possibleTypes", "[__Type!]", &[]),
            ("enumValues", "[__EnumValue!]", INCLUDE_DEPRECATED),
            ("inputFields", "[__InputValue!]", INCLUDE_DEPRECATED),
            ("ofType", "__Type", &[]),
            ("isOneOf", "Boolean", &[]),
        ],
    ),
    (
        "__Field",
        &[
            ("name", "String!", &[]),
            ("description", "String", &[]),
            ("args", "[__InputValue!]!", INCLUDE_DEPRECATED),
            ("type", "__Type!", &[]),
            ("isDeprecated", "Boolean!", &[]),
            ("deprecationReason", "String", &[]),
        ],
    ),
    (
        "__InputValue",
        &[
            ("name", "String!", &[]),
            ("description", "String", &[]),
            ("type", "__Type!", &[]),
            ("defaultValue", "String", &[]),
            ("isDeprecated", "Boolean!", &[]),
            ("deprecationReason", "String", &[]),
        ],
    ),
    (
        "__EnumValue",
        &[
            ("name", "String!", &[]),
            ("description", "String", &[]),
            ("isDeprecated", "Boolean!", &[]),
            ("deprecationReason", "String", &[]),
        ],
    ),
    (
        "__Directive",
        &[
            ("name", "String!", &[]),
            ("description", "String", &[]),
            ("isRepeatable", "Boolean!", &[]),
            ("locations", "[__DirectiveLocation!]!", &[]),
            ("args", "[__InputValue!]!", INCLUDE_DEPRECATED),
        ],
    ),
];

const TYPE_KINDS: &[&str] = &[
    "SCALAR",
    "OBJECT",
    "INTERFACE",
    "UNION",
    "ENUM",
    "INPUT_OBJECT",
    "LIST",
    "NON_NULL",
];

const DIRECTIVE_LOCATIONS: &[&str] = &[
    "QUERY",
    "MUTATION",
    "SUBSCRIPTION",
    "FIELD",
    "FRAGMENT_DEFINITION",
    "FRAGMENT_SPREAD",
    "INLINE_FRAGMENT",
    "VARIABLE_DEFINITION",
    "SCHEMA",
    "SCALAR",
    "OBJECT",
    "FIELD_DEFINITION",
    "ARGUMENT_DEFINITION",
    "INTERFACE",
    "UNION",
    "ENUM",
    "ENUM_VALUE",
    "INPUT_OBJECT",
    "INPUT_FIELD_DEFINITION",
];

fn enum_type(name: &str, values: &[&str]) -> TypeDef {
    TypeDef {
        name: name.to_owned(),
        description: None,
        kind: Kind::Enum {
            values: values
                .iter()
                .map(|v| EnumValue {
                    name: (*v).to_owned(),
                    description: None,
                    value: (*v).to_owned(),
                })
                .collect(),
            pg: None,
        },
    }
}

fn args(t: &TypeTable, list: &[(&str, &str, Option<&'static str>)]) -> Vec<InputValue> {
    list.iter()
        .map(|(name, ty, default)| InputValue {
            default: *default,
            ..input(name, parse(t, ty), None)
        })
        .collect()
}

/// Registers the built-in types; returns the directives.
pub(crate) fn install(t: &mut TypeTable) -> Vec<Directive> {
    for (name, scalar, description) in SCALARS {
        t.add(TypeDef {
            name: (*name).to_owned(),
            description: description.map(str::to_owned),
            kind: Kind::Scalar(*scalar),
        });
    }
    let json = TypeRef::Named(t.id("JSON"));
    let keys = TypeRef::Named(t.id("String")).non_null().list().non_null();
    t.add(TypeDef {
        name: JSON_PATH_FILTER.to_owned(),
        description: Some(
            "The JSON value at a path of keys (and array indexes) equals a value.".into(),
        ),
        kind: Kind::Input {
            fields: vec![
                input("path", keys, Some("Keys from the top, as `#>` takes them.")),
                input("eq", json.non_null(), Some("The value there.")),
            ],
            origin: InputOrigin::JsonPath,
        },
    });
    for (name, scalar, _) in SCALARS {
        if *scalar == Scalar::Id {
            continue;
        }
        let fields = operator_fields(t, TypeRef::Named(t.id(name)), operators(*scalar));
        t.add(TypeDef {
            name: format!("{name}Filter"),
            description: Some(format!("Conditions on a {name} column; all must hold.")),
            kind: Kind::Input {
                fields,
                origin: InputOrigin::Operators,
            },
        });
    }
    // Arrays of JSON documents have no element operators.
    for (name, scalar, _) in SCALARS {
        if matches!(*scalar, Scalar::Id | Scalar::Json) {
            continue;
        }
        let def = list_filter(t, (*name).to_owned(), TypeRef::Named(t.id(name)));
        t.add(def);
    }
    t.add(enum_type(SORT_DIRECTION, SORT_DIRECTIONS));
    t.add(enum_type("__TypeKind", TYPE_KINDS));
    t.add(enum_type("__DirectiveLocation", DIRECTIVE_LOCATIONS));
    // Placeholders first: the introspection types refer to each other.
    for (name, _) in META_OBJECTS {
        t.add(TypeDef {
            name: (*name).to_owned(),
            description: None,
            kind: Kind::Object {
                fields: Vec::new(),
                origin: ObjectOrigin::Meta,
            },
        });
    }
    for (name, fields) in META_OBJECTS {
        let built = fields
            .iter()
            .map(|(fname, ty, fargs)| Field {
                name: (*fname).to_owned(),
                description: None,
                args: args(t, fargs),
                ty: parse(t, ty),
                source: Source::Meta,
            })
            .collect();
        let id = t.id(name);
        t.types[id].kind = Kind::Object {
            fields: built,
            origin: ObjectOrigin::Meta,
        };
    }
    vec![
        Directive {
            name: "include",
            description: "Directs the executor to include this field or fragment only when the `if` argument is true.",
            locations: &["FIELD", "FRAGMENT_SPREAD", "INLINE_FRAGMENT"],
            args: args(t, &[("if", "Boolean!", None)]),
        },
        Directive {
            name: "skip",
            description: "Directs the executor to skip this field or fragment when the `if` argument is true.",
            locations: &["FIELD", "FRAGMENT_SPREAD", "INLINE_FRAGMENT"],
            args: args(t, &[("if", "Boolean!", None)]),
        },
        Directive {
            name: "deprecated",
            description: "Marks an element of a GraphQL schema as no longer supported.",
            locations: &[
                "FIELD_DEFINITION",
                "ARGUMENT_DEFINITION",
                "INPUT_FIELD_DEFINITION",
                "ENUM_VALUE",
            ],
            args: args(t, &[("reason", "String", Some("\"No longer supported\""))]),
        },
        Directive {
            name: "specifiedBy",
            description: "Exposes a URL that specifies the behavior of this scalar.",
            locations: &["SCALAR"],
            args: args(t, &[("url", "String!", None)]),
        },
    ]
}
