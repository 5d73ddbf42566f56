//! The `filter` argument as a tree of conditions on columns. The compiler renders it as SQL;
//! live queries keep it to test a changed row against a subscription without a query.

use async_graphql_value::ConstValue;

use super::Params;
use super::quote::ident;
use crate::catalog::{PgType, Relation};
use crate::graphql::json::quote;
use crate::schema::{InputOrigin, Kind, Schema, Source, TypeId, TypeRef};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Like,
    Ilike,
    /// The text begins with the operand, taken literally (no wildcards).
    StartsWith,
    /// The text ends with the operand, taken literally.
    EndsWith,
    /// The JSON value contains the operand (`@>`, as jsonb).
    Contains,
    /// The JSON object has the operand as a top-level key (`?`, as jsonb).
    HasKey,
    /// The text matches the operand, a POSIX regular expression (`~`).
    Matches,
    /// The same, ignoring case (`~*`).
    IMatches,
    /// The JSON value at a path equals a value; the operand is `[path, value]` as JSON.
    At,
}

impl Op {
    fn parse(name: &str) -> Option<Op> {
        Some(match name {
            "eq" => Op::Eq,
            "neq" => Op::Neq,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "like" => Op::Like,
            "ilike" => Op::Ilike,
            "startsWith" => Op::StartsWith,
            "endsWith" => Op::EndsWith,
            "contains" => Op::Contains,
            "hasKey" => Op::HasKey,
            "matches" => Op::Matches,
            "imatches" => Op::IMatches,
            "at" => Op::At,
            _ => return None,
        })
    }

    fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Neq => "<>",
            Op::Gt => ">",
            Op::Gte => ">=",
            Op::Lt => "<",
            Op::Lte => "<=",
            Op::Like | Op::StartsWith | Op::EndsWith => "LIKE",
            Op::Ilike => "ILIKE",
            Op::Contains => "@>",
            Op::HasKey => "?",
            Op::Matches => "~",
            Op::IMatches => "~*",
            Op::At => "=",
        }
    }
}

/// A condition on rows of one relation. Values are in PostgreSQL's text form and are only
/// ever sent as bind parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Not(Box<Filter>),
    Compare {
        column: String,
        op: Op,
        value: String,
    },
    /// `in` (or `notIn` when `negated`).
    In {
        column: String,
        values: Vec<String>,
        negated: bool,
    },
    IsNull {
        column: String,
        is_null: bool,
    },
    /// A condition on an array column's elements, against a list of them.
    Elements {
        column: String,
        op: ElementsOp,
        values: Vec<String>,
    },
    /// A condition on related rows: `relation` (an index into the catalog's relations) is
    /// linked by equal columns, (its column, this row's column) pairs.
    Related {
        quantifier: Quantifier,
        relation: usize,
        link: Vec<(String, String)>,
        filter: Box<Filter>,
    },
}

/// The operators on an array column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementsOp {
    /// Every listed element is in the array (`@>`).
    Contains,
    /// Every element of the array is listed (`<@`).
    ContainedBy,
    /// Some element of the array is listed (`&&`).
    Overlaps,
}

impl ElementsOp {
    fn parse(name: &str) -> Option<ElementsOp> {
        Some(match name {
            "contains" => ElementsOp::Contains,
            "containedBy" => ElementsOp::ContainedBy,
            "overlaps" => ElementsOp::Overlaps,
            _ => return None,
        })
    }

    fn sql(self) -> &'static str {
        match self {
            ElementsOp::Contains => "@>",
            ElementsOp::ContainedBy => "<@",
            ElementsOp::Overlaps => "&&",
        }
    }
}

/// How many of the related rows must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantifier {
    /// At least one (the row a many-to-one field points at, or `some`).
    Some,
    /// Every one, none being vacuously every one.
    Every,
    /// Not one.
    None,
}

/// A scalar or enum constant in PostgreSQL's text form. Enum values map back to their labels.
pub(super) fn text(value: &ConstValue, schema: &Schema, ty: &TypeRef) -> Option<String> {
    Some(match value {
        ConstValue::String(s) => s.clone(),
        ConstValue::Number(n) => n.to_string(),
        ConstValue::Boolean(b) => b.to_string(),
        ConstValue::Enum(name) => match &schema.ty(ty.named()).kind {
            Kind::Enum { values, .. } => values
                .iter()
                .find(|v| v.name == name.as_str())?
                .value
                .clone(),
            _ => name.to_string(),
        },
        _ => return None,
    })
}

impl Filter {
    /// Builds the filter from a coerced `filter` argument of input type `ty`. Recurses once
    /// per level of `and`/`or`/`not`: at most `POSTRUST_MAX_INPUT_DEPTH`, the bound on the
    /// document and variables it came from.
    pub fn from_value(schema: &Schema, rel: &Relation, ty: TypeId, value: &ConstValue) -> Filter {
        let (ConstValue::Object(map), Kind::Input { fields, .. }) = (value, &schema.ty(ty).kind)
        else {
            return Filter::All(Vec::new());
        };
        let mut all = Vec::new();
        for (key, v) in map {
            let Some(def) = fields.iter().find(|f| f.name == key.as_str()) else {
                continue;
            };
            let nested = |v: &ConstValue| Filter::from_value(schema, rel, ty, v);
            match (def.column, key.as_str(), v) {
                (_, _, ConstValue::Null) => {}
                (None, "and", ConstValue::List(items)) => {
                    all.push(Filter::All(items.iter().map(nested).collect()))
                }
                (None, "or", ConstValue::List(items)) => {
                    all.push(Filter::Any(items.iter().map(nested).collect()))
                }
                (None, "not", v) => all.push(Filter::Not(Box::new(nested(v)))),
                (None, _, v) if def.relation.is_some() => {
                    if let Some(related) = related(schema, rel, def, v) {
                        all.extend(related);
                    }
                }
                (Some(ci), _, ConstValue::Object(ops)) => {
                    let column = rel.columns[ci].name.clone();
                    let Kind::Input {
                        fields: op_defs,
                        origin,
                    } = &schema.ty(def.ty.named()).kind
                    else {
                        continue;
                    };
                    if *origin == InputOrigin::ListOperators {
                        elements(schema, column, op_defs, ops, &mut all);
                        continue;
                    }
                    for (op, operand) in ops {
                        let Some(op_def) = op_defs.iter().find(|d| d.name == op.as_str()) else {
                            continue;
                        };
                        let column = column.clone();
                        match (op.as_str(), operand) {
                            (_, ConstValue::Null) => {}
                            ("isNull", ConstValue::Boolean(b)) => all.push(Filter::IsNull {
                                column,
                                is_null: *b,
                            }),
                            ("in" | "notIn", ConstValue::List(items)) => all.push(Filter::In {
                                column,
                                values: items
                                    .iter()
                                    .filter_map(|i| text(i, schema, &op_def.ty))
                                    .collect(),
                                negated: op.as_str() == "notIn",
                            }),
                            (name, operand) => {
                                let value = match name {
                                    // A JSON operand travels as its JSON text.
                                    "contains" => {
                                        operand.clone().into_json().ok().map(|v| v.to_string())
                                    }
                                    // The path and the value, as one JSON array.
                                    "at" => at_operand(operand),
                                    _ => text(operand, schema, &op_def.ty),
                                };
                                if let (Some(op), Some(value)) = (Op::parse(name), value) {
                                    all.push(Filter::Compare { column, op, value });
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Filter::All(all)
    }

    /// The relations the filter's related-row conditions read, at any depth.
    pub fn related_relations(&self, out: &mut Vec<usize>) {
        match self {
            Filter::All(items) | Filter::Any(items) => {
                for f in items {
                    f.related_relations(out);
                }
            }
            Filter::Not(inner) => inner.related_relations(out),
            Filter::Related {
                relation, filter, ..
            } => {
                out.push(*relation);
                filter.related_relations(out);
            }
            Filter::Compare { .. }
            | Filter::In { .. }
            | Filter::IsNull { .. }
            | Filter::Elements { .. } => {}
        }
    }

    /// True when the filter holds for every row.
    pub fn is_empty(&self) -> bool {
        matches!(self, Filter::All(items) if items.iter().all(Filter::is_empty))
    }

    /// Renders the condition on rows of `rel` aliased `alias`; `relations` are the catalog's,
    /// which related-row conditions name.
    pub(super) fn sql(
        &self,
        relations: &[Relation],
        rel: &Relation,
        alias: &str,
        params: &mut Params,
        out: &mut String,
    ) {
        self.sql_at(0, relations, rel, alias, params, out)
    }

    /// [`sql`](Self::sql) inside `depth` related-row subqueries.
    fn sql_at(
        &self,
        depth: usize,
        relations: &[Relation],
        rel: &Relation,
        alias: &str,
        params: &mut Params,
        out: &mut String,
    ) {
        let col = |name: &str| format!("{alias}.{}", ident(name));
        let cast = |name: &str| {
            rel.column(name)
                .map(|c| cast_type(&c.ty))
                .unwrap_or_default()
        };
        match self {
            Filter::All(items) | Filter::Any(items) => {
                let (joiner, empty) = match self {
                    Filter::All(_) => (" AND ", "true"),
                    _ => (" OR ", "false"),
                };
                if items.is_empty() {
                    out.push_str(empty);
                    return;
                }
                out.push('(');
                for (i, f) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(joiner);
                    }
                    f.sql_at(depth, relations, rel, alias, params, out);
                }
                out.push(')');
            }
            Filter::Not(inner) => {
                out.push_str("(NOT ");
                inner.sql_at(depth, relations, rel, alias, params, out);
                out.push(')');
            }
            Filter::Compare { column, op, value } => {
                let p = params.push(value.clone());
                // The operand of `startsWith` and `endsWith` is literal text: LIKE's
                // wildcards and escape character in it are escaped.
                let literal = || {
                    format!(
                        "replace(replace(replace({p}::text, '\\', '\\\\'), '%', '\\%'), \
                         '_', '\\_')"
                    )
                };
                let (lhs, rhs) = match op {
                    Op::Like | Op::Ilike => (col(column), format!("{p}::text")),
                    Op::StartsWith => (col(column), format!("({} || '%')", literal())),
                    Op::EndsWith => (col(column), format!("('%' || {})", literal())),
                    Op::Contains => (
                        format!("{}::jsonb", col(column)),
                        format!("{p}::text::jsonb"),
                    ),
                    Op::HasKey => (format!("{}::jsonb", col(column)), format!("{p}::text")),
                    // As text under the database's default collation: the operators exist
                    // for text only, and PostgreSQL refuses them under a nondeterministic
                    // collation.
                    Op::Matches | Op::IMatches => (
                        format!("({}::text COLLATE \"default\")", col(column)),
                        format!("{p}::text"),
                    ),
                    Op::At => (
                        format!(
                            "({}::jsonb #> ARRAY(SELECT json_array_elements_text(({p}::text::json) -> 0)))",
                            col(column)
                        ),
                        format!("(({p}::text::jsonb) -> 1)"),
                    ),
                    _ => (col(column), format!("{p}::text::{}", cast(column))),
                };
                out.push_str(&format!("({lhs} {} {rhs})", op.sql()));
            }
            Filter::In {
                column,
                values,
                negated,
            } => {
                let p = params.push(json_list(values));
                let (cmp, quantifier) = if *negated {
                    ("<>", "ALL")
                } else {
                    ("=", "ANY")
                };
                out.push_str(&format!(
                    "({} {cmp} {quantifier} (ARRAY(SELECT x::{} FROM json_array_elements_text({p}::text::json) AS v(x))))",
                    col(column),
                    cast(column)
                ));
            }
            Filter::IsNull { column, is_null } => {
                let not = if *is_null { "" } else { " NOT" };
                out.push_str(&format!("({} IS{not} NULL)", col(column)));
            }
            Filter::Elements { column, op, values } => {
                let p = params.push(json_list(values));
                // The column cast to an array of its base type too: an array of a domain
                // has no operators of its own.
                out.push_str(&format!(
                    "({}::{}[] {} ARRAY(SELECT x::{} FROM json_array_elements_text({p}::text::json) AS v(x)))",
                    col(column),
                    cast(column),
                    op.sql(),
                    cast(column)
                ));
            }
            Filter::Related {
                quantifier,
                relation,
                link,
                filter,
            } => {
                let target = &relations[*relation];
                // Unique along the path of nested subqueries, which is all a name must be,
                // and short however deep (PostgreSQL cuts names at 63 bytes, which would
                // merge two levels' aliases).
                let inner = format!("r{}", depth + 1);
                let mut conditions: Vec<String> = link
                    .iter()
                    .map(|(there, here)| format!("{inner}.{} = {}", ident(there), col(here)))
                    .collect();
                if !filter.is_empty() {
                    let mut f = String::new();
                    filter.sql_at(depth + 1, relations, target, &inner, params, &mut f);
                    // `every` looks for a row where the filter is not true (false or null).
                    if *quantifier == Quantifier::Every {
                        f = format!("({f} IS NOT TRUE)");
                    }
                    conditions.push(f);
                } else if *quantifier == Quantifier::Every {
                    conditions.push("false".to_owned());
                }
                let exists = format!(
                    "EXISTS (SELECT FROM {}.{} {inner} WHERE {})",
                    ident(&target.name.schema),
                    ident(&target.name.name),
                    conditions.join(" AND ")
                );
                out.push_str(&match quantifier {
                    Quantifier::Some => format!("({exists})"),
                    Quantifier::Every | Quantifier::None => format!("(NOT {exists})"),
                });
            }
        }
    }
}

/// The conditions of an array column's filter (`tags: { contains: ["a"] }`).
fn elements(
    schema: &Schema,
    column: String,
    op_defs: &[crate::schema::InputValue],
    ops: &async_graphql_value::indexmap::IndexMap<async_graphql_value::Name, ConstValue>,
    all: &mut Vec<Filter>,
) {
    for (op, operand) in ops {
        let Some(op_def) = op_defs.iter().find(|d| d.name == op.as_str()) else {
            continue;
        };
        match (op.as_str(), operand) {
            (_, ConstValue::Null) => {}
            ("isNull", ConstValue::Boolean(b)) => all.push(Filter::IsNull {
                column: column.clone(),
                is_null: *b,
            }),
            (name, ConstValue::List(items)) => {
                if let Some(op) = ElementsOp::parse(name) {
                    all.push(Filter::Elements {
                        column: column.clone(),
                        op,
                        values: items
                            .iter()
                            .filter_map(|i| text(i, schema, &op_def.ty))
                            .collect(),
                    });
                }
            }
            _ => {}
        }
    }
}

/// The conditions a relation field of a filter (`customer: {…}`, `orders: { some: {…} }`)
/// puts on rows of `rel`. Recurses into the related filter: one level of the client's
/// input per level, bounded like [`Filter::from_value`].
fn related(
    schema: &Schema,
    rel: &Relation,
    def: &crate::schema::InputValue,
    value: &ConstValue,
) -> Option<Vec<Filter>> {
    let relations = &schema.catalog.relations;
    match def.relation? {
        Source::ToOne { fk } => {
            let fk = &rel.foreign_keys[fk];
            let target = schema.catalog.relation_index(&fk.references)?;
            let link = fk
                .ref_columns
                .iter()
                .cloned()
                .zip(fk.columns.iter().cloned())
                .collect();
            let filter = Filter::from_value(schema, &relations[target], def.ty.named(), value);
            Some(vec![Filter::Related {
                quantifier: Quantifier::Some,
                relation: target,
                link,
                filter: Box::new(filter),
            }])
        }
        Source::ToMany { rel: other, fk } => {
            let fk = &relations[other].foreign_keys[fk];
            let link: Vec<(String, String)> = fk
                .columns
                .iter()
                .cloned()
                .zip(fk.ref_columns.iter().cloned())
                .collect();
            let (ConstValue::Object(map), Kind::Input { fields, .. }) =
                (value, &schema.ty(def.ty.named()).kind)
            else {
                return None;
            };
            let mut out = Vec::new();
            for (key, v) in map {
                let quantifier = match key.as_str() {
                    "some" => Quantifier::Some,
                    "every" => Quantifier::Every,
                    "none" => Quantifier::None,
                    _ => continue,
                };
                let (Some(f), false) = (
                    fields.iter().find(|f| f.name == key.as_str()),
                    *v == ConstValue::Null,
                ) else {
                    continue;
                };
                let filter = Filter::from_value(schema, &relations[other], f.ty.named(), v);
                out.push(Filter::Related {
                    quantifier,
                    relation: other,
                    link: link.clone(),
                    filter: Box::new(filter),
                });
            }
            Some(out)
        }
        _ => None,
    }
}

/// The operand of JSON's `at` (`{ path: [...], eq: value }`) as `[path, value]` JSON text.
fn at_operand(operand: &ConstValue) -> Option<String> {
    let ConstValue::Object(fields) = operand else {
        return None;
    };
    let path = fields.get("path")?.clone().into_json().ok()?;
    let value = fields.get("eq")?.clone().into_json().ok()?;
    Some(serde_json::Value::Array(vec![path, value]).to_string())
}

/// Values as a JSON array of strings, the one parameter a list of them travels as.
fn json_list(values: &[String]) -> String {
    let mut list = String::from("[");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        quote(v, &mut list);
    }
    list.push(']');
    list
}

/// The quoted, schema-qualified name of a column's (element) type, for casts.
pub(super) fn cast_type(ty: &PgType) -> String {
    format!("{}.{}", ident(&ty.schema), ident(&ty.name))
}

/// The input type a `filter` argument of a list field has.
pub(super) fn filter_type(schema: &Schema, args: &[crate::schema::InputValue]) -> Option<TypeId> {
    args.iter()
        .find(|a| a.name == "filter")
        .map(|a| a.ty.named())
        .filter(|id| {
            matches!(
                schema.ty(*id).kind,
                Kind::Input {
                    origin: InputOrigin::Filter(_),
                    ..
                }
            )
        })
}
