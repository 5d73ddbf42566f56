//! Compiles a mutation: one statement per root field, which the server runs in document
//! order in one transaction (one `Sync` group), so a later field sees what an earlier one
//! wrote and a failure anywhere undoes them all.
//!
//! Each field is two statements. The write keeps the rows it returns in a setting local to
//! the transaction; the read, a statement of its own so that its nested fields see the
//! database after the write (a statement's subqueries see the snapshot from before its own
//! writes), builds their JSON like a query's rows:
//!
//! ```text
//! WITH m AS (INSERT INTO "public"."orders" AS w ("total") VALUES ($1::text::"pg_catalog"."numeric")
//!            RETURNING w."id", w."total")
//! SELECT FROM set_config('postrust.mutation_rows', (SELECT json_agg(m) … FROM m), true) AS s;
//! SELECT coalesce(json_agg(<object> ORDER BY t1."id"), '[]'::json)::text
//! FROM (SELECT s1."id", s1."total" FROM json_populate_recordset(NULL::"public"."orders",
//!       current_setting('postrust.mutation_rows')::json) s1) t1
//! ```
//!
//! As everywhere, values travel only as text bind parameters and identifiers come only from
//! the catalog (a constraint or column an `onConflict` names is an enum value of the
//! schema, mapped back to its catalog name).

use async_graphql_value::ConstValue;

use super::filter::{self, Filter, cast_type};
use super::quote::ident;
use super::{Compiler, Params, Scope, default_order, is_computed_marker, select_list};
use crate::catalog::{Column, Relation};
use crate::graphql::{ErrorCode, FieldRef, GraphQLError, Operation, PathSegment, Selected};
use crate::schema::{Field, Kind, Scalar, Schema, Source, TypeRef};

/// One root field of a mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A value known without the database (`__typename`, an insert of no rows).
    Value { key: String, json: String },
    /// Two statements: the write, then the read of the rows it wrote, whose one text value
    /// is the field's JSON. Each with its parameters.
    Sql {
        key: String,
        write: (String, Vec<String>),
        read: (String, Vec<String>),
    },
}

/// A field's two statements, before they get their key.
struct Compiled {
    write: (String, Vec<String>),
    read: (String, Vec<String>),
}

/// Where a write leaves the rows it returned for the read that follows it: a setting local
/// to the transaction, each write replacing the previous one's.
const ROWS_SETTING: &str = "postrust.mutation_rows";

/// Compiles the root fields of mutation `op`, in document order.
pub fn compile(
    schema: &Schema,
    op: &Operation,
    introspect: &dyn Fn(&Selected) -> String,
) -> Result<Vec<Step>, GraphQLError> {
    let mut steps = Vec::with_capacity(op.selection.len());
    for sel in &op.selection {
        let key = sel.key.clone();
        let field = match sel.field {
            FieldRef::Typename => {
                let mut json = String::new();
                crate::graphql::json::quote(schema.name(op.root), &mut json);
                steps.push(Step::Value { key, json });
                continue;
            }
            FieldRef::Schema | FieldRef::Type => {
                steps.push(Step::Value {
                    key,
                    json: introspect(sel),
                });
                continue;
            }
            FieldRef::Field(i) => &schema.fields(op.root)[i],
        };
        let mut c = Compiler {
            schema,
            params: Params::default(),
            tables: Default::default(),
            nested_tables: Default::default(),
            dependencies: Default::default(),
            read_directly: Default::default(),
            aliases: 0,
            path: vec![PathSegment::Key(key.clone())],
            introspect,
        };
        let compiled = match field.source {
            Source::Insert(rel) => match c.insert(sel, field, rel)? {
                Some(compiled) => compiled,
                None => {
                    steps.push(Step::Value {
                        key,
                        json: "[]".into(),
                    });
                    continue;
                }
            },
            Source::Update(rel) => c.update(sel, field, rel)?,
            Source::Delete(rel) => c.delete(sel, field, rel)?,
            _ => continue,
        };
        steps.push(Step::Sql {
            key,
            write: compiled.write,
            read: compiled.read,
        });
    }
    Ok(steps)
}

/// The writable fields of an input object type: (GraphQL name, column index, type).
fn input_fields<'s>(
    schema: &'s Schema,
    field: &Field,
    arg: &str,
) -> Vec<(&'s str, usize, &'s TypeRef)> {
    let Some(ty) = field
        .args
        .iter()
        .find(|a| a.name == arg)
        .map(|a| a.ty.named())
    else {
        return Vec::new();
    };
    match &schema.ty(ty).kind {
        Kind::Input { fields, .. } => fields
            .iter()
            .filter_map(|f| Some((f.name.as_str(), f.column?, &f.ty)))
            .collect(),
        _ => Vec::new(),
    }
}

impl Compiler<'_> {
    fn bad_argument(&self, sel: &Selected, message: String) -> GraphQLError {
        let mut e = GraphQLError::new(ErrorCode::BadArgument, message, &[sel.pos]);
        e.path = self.path.clone();
        e
    }

    /// `INSERT … VALUES`, or None for an empty `objects` list (nothing to run).
    fn insert(
        &mut self,
        sel: &Selected,
        field: &Field,
        rel: usize,
    ) -> Result<Option<Compiled>, GraphQLError> {
        let schema = self.schema;
        let relation = &schema.catalog.relations[rel];
        let Some(ConstValue::List(objects)) = sel.arg("objects") else {
            return Err(self.bad_argument(sel, "Argument \"objects\" is null.".into()));
        };
        if objects.is_empty() {
            return Ok(None);
        }
        // A null row (a variable left null) would be a row of defaults nobody asked for.
        if objects.iter().any(|o| !matches!(o, ConstValue::Object(_))) {
            return Err(self.bad_argument(sel, "Argument \"objects\" holds a null row.".into()));
        }
        let fields = input_fields(schema, field, "objects");
        // The columns any row gives, in column order; a row that leaves one out gets its
        // DEFAULT there.
        let mut used: Vec<&(&str, usize, &TypeRef)> = fields
            .iter()
            .filter(|(name, _, _)| {
                objects.iter().any(|o| match o {
                    ConstValue::Object(map) => map.contains_key(*name),
                    _ => false,
                })
            })
            .collect();
        used.sort_by_key(|(_, ci, _)| *ci);
        let target = format!("w{}", self.alias());
        let table = format!(
            "{}.{} AS {target}",
            ident(&relation.name.schema),
            ident(&relation.name.name)
        );
        let mut dml = format!("INSERT INTO {table}");
        if used.is_empty() {
            if objects.len() > 1 {
                return Err(self.bad_argument(
                    sel,
                    "Several rows that each leave every column out cannot be inserted in one \
                     statement; give a column, or insert them one by one."
                        .into(),
                ));
            }
            dml.push_str(" DEFAULT VALUES");
        } else {
            let names: Vec<String> = used
                .iter()
                .map(|(_, ci, _)| ident(&relation.columns[*ci].name))
                .collect();
            dml.push_str(&format!(" ({}) VALUES ", names.join(", ")));
            for (i, object) in objects.iter().enumerate() {
                let ConstValue::Object(map) = object else {
                    continue;
                };
                dml.push_str(if i == 0 { "(" } else { ", (" });
                for (j, (name, ci, ty)) in used.iter().enumerate() {
                    if j > 0 {
                        dml.push_str(", ");
                    }
                    match map.get(*name) {
                        Some(value) => {
                            let expr = self.input_value(&relation.columns[*ci], ty, value);
                            dml.push_str(&expr);
                        }
                        None => dml.push_str("DEFAULT"),
                    }
                }
                dml.push(')');
            }
        }
        if let Some(ConstValue::Object(on_conflict)) = sel.arg("onConflict") {
            dml.push_str(&self.on_conflict(field, relation, on_conflict));
        }
        self.returning(sel, field, rel, &dml, &target).map(Some)
    }

    /// ` ON CONFLICT ON CONSTRAINT … DO UPDATE SET … | DO NOTHING`.
    fn on_conflict(
        &self,
        field: &Field,
        relation: &Relation,
        on_conflict: &indexmap::IndexMap<async_graphql_value::Name, ConstValue>,
    ) -> String {
        let schema = self.schema;
        let Some(ty) = field
            .args
            .iter()
            .find(|a| a.name == "onConflict")
            .map(|a| a.ty.named())
        else {
            return String::new();
        };
        let Kind::Input { fields, .. } = &schema.ty(ty).kind else {
            return String::new();
        };
        // Enum values of the schema back to catalog names: nothing the client wrote
        // becomes an identifier.
        let label = |arg: &str, value: &ConstValue| -> Option<String> {
            let ConstValue::Enum(name) = value else {
                return None;
            };
            let enum_ty = fields.iter().find(|f| f.name == arg)?.ty.named();
            match &schema.ty(enum_ty).kind {
                Kind::Enum { values, .. } => values
                    .iter()
                    .find(|v| v.name == name.as_str())
                    .map(|v| v.value.clone()),
                _ => None,
            }
        };
        let Some(constraint) = on_conflict
            .get("constraint")
            .and_then(|v| label("constraint", v))
        else {
            return String::new();
        };
        let columns: Vec<String> = match on_conflict.get("updateColumns") {
            Some(ConstValue::List(items)) => items
                .iter()
                .filter_map(|v| label("updateColumns", v))
                .filter(|c| relation.column(c).is_some())
                .collect(),
            _ => Vec::new(),
        };
        if columns.is_empty() {
            return format!(
                " ON CONFLICT ON CONSTRAINT {} DO NOTHING",
                ident(&constraint)
            );
        }
        let sets: Vec<String> = columns
            .iter()
            .map(|c| format!("{} = EXCLUDED.{}", ident(c), ident(c)))
            .collect();
        format!(
            " ON CONFLICT ON CONSTRAINT {} DO UPDATE SET {}",
            ident(&constraint),
            sets.join(", ")
        )
    }

    /// `UPDATE … SET … WHERE <filter>`.
    fn update(
        &mut self,
        sel: &Selected,
        field: &Field,
        rel: usize,
    ) -> Result<Compiled, GraphQLError> {
        let schema = self.schema;
        let relation = &schema.catalog.relations[rel];
        let target = format!("w{}", self.alias());
        let fields = input_fields(schema, field, "set");
        let Some(ConstValue::Object(set)) = sel.arg("set") else {
            return Err(self.bad_argument(sel, "Argument \"set\" names no column.".into()));
        };
        let mut sets = Vec::new();
        for (name, ci, ty) in &fields {
            if let Some(value) = set.get(*name) {
                let column = &relation.columns[*ci];
                let expr = self.input_value(column, ty, value);
                sets.push(format!("{} = {expr}", ident(&column.name)));
            }
        }
        if sets.is_empty() {
            return Err(self.bad_argument(sel, "Argument \"set\" names no column.".into()));
        }
        let mut dml = format!(
            "UPDATE {}.{} AS {target} SET {}",
            ident(&relation.name.schema),
            ident(&relation.name.name),
            sets.join(", ")
        );
        self.where_filter(sel, field, relation, &target, &mut dml)?;
        self.returning(sel, field, rel, &dml, &target)
    }

    /// `DELETE … WHERE <filter>`.
    fn delete(
        &mut self,
        sel: &Selected,
        field: &Field,
        rel: usize,
    ) -> Result<Compiled, GraphQLError> {
        let relation = &self.schema.catalog.relations[rel];
        let target = format!("w{}", self.alias());
        let mut dml = format!(
            "DELETE FROM {}.{} AS {target}",
            ident(&relation.name.schema),
            ident(&relation.name.name)
        );
        self.where_filter(sel, field, relation, &target, &mut dml)?;
        self.returning(sel, field, rel, &dml, &target)
    }

    /// ` WHERE <filter>`; nothing for `filter: {}`, which the client had to write. A query's
    /// filter drops a null operand (an unset variable) and matches more; a write's must not
    /// widen that way, so a null anywhere in it, or an empty condition on a column, is
    /// refused.
    fn where_filter(
        &mut self,
        sel: &Selected,
        field: &Field,
        relation: &Relation,
        target: &str,
        dml: &mut String,
    ) -> Result<(), GraphQLError> {
        let schema = self.schema;
        let Some(value) = sel.arg("filter") else {
            return Err(self.bad_argument(
                sel,
                "Argument \"filter\" is null; write `filter: {}` to touch every row.".into(),
            ));
        };
        if let Some(why) = loose(value, true) {
            return Err(self.bad_argument(
                sel,
                format!(
                    "Argument \"filter\" holds {why}, which would match more rows than it \
                     says; write `filter: {{}}` to touch every row."
                ),
            ));
        }
        let filter = match filter::filter_type(schema, &field.args) {
            Some(ty) => Filter::from_value(schema, relation, ty, value),
            None => Filter::All(Vec::new()),
        };
        if !filter.is_empty() {
            dml.push_str(" WHERE ");
            filter.sql(
                &schema.catalog.relations,
                relation,
                target,
                &mut self.params,
                dml,
            );
        }
        Ok(())
    }

    /// The two statements of a field: `dml`, keeping the rows it returns (the columns the
    /// selection reads) in a transaction-local setting, then the read of those rows with
    /// the selection, after the write.
    fn returning(
        &mut self,
        sel: &Selected,
        field: &Field,
        rel: usize,
        dml: &str,
        target: &str,
    ) -> Result<Compiled, GraphQLError> {
        // The write's parameters are complete; the read's (nested filters, limits) start.
        let write_params = std::mem::take(&mut self.params);
        let Scope {
            relation,
            outer,
            inner,
            object,
            mut columns,
        } = self.scope(sel, field, rel, true)?;
        let order = default_order(relation);
        for (c, _) in &order {
            columns.insert(c.clone());
        }
        // Only what is read: RETURNING needs SELECT on each column it names, and a role
        // may read only some. A computed field's function takes the whole row, which is
        // rebuilt from what is returned: then every column is.
        let computed = columns.iter().any(|c| is_computed_marker(c));
        let returned = if computed {
            format!("{target}.*")
        } else if columns.is_empty() {
            "NULL".to_owned()
        } else {
            columns
                .iter()
                .map(|c| format!("{target}.{}", ident(c)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let agg_order = if order.is_empty() {
            String::new()
        } else {
            let keys: Vec<String> = order
                .iter()
                .map(|(c, dir)| format!("{outer}.{} {dir}", ident(c)))
                .collect();
            format!(" ORDER BY {}", keys.join(", "))
        };
        let write = format!(
            "WITH m AS ({dml} RETURNING {returned}) \
             SELECT FROM set_config('{ROWS_SETTING}', \
             (SELECT coalesce(json_agg(m), '[]'::json)::text FROM m), true) AS s"
        );
        // Typed again as rows of the relation, so nested fields correlate with them.
        let read = format!(
            "SELECT coalesce(json_agg({object}{agg_order}), '[]'::json)::text \
             FROM (SELECT {} FROM json_populate_recordset(NULL::{}.{}, \
             current_setting('{ROWS_SETTING}')::json) {inner}) {outer}",
            select_list(relation, &columns, &inner),
            ident(&relation.name.schema),
            ident(&relation.name.name),
        );
        Ok(Compiled {
            write: (write, write_params.0),
            read: (read, std::mem::take(&mut self.params).0),
        })
    }

    /// The SQL for a client's value of `column` (GraphQL input type `ty`): a typed bind
    /// parameter, or NULL.
    fn input_value(&mut self, column: &Column, ty: &TypeRef, value: &ConstValue) -> String {
        let element = cast_type(&column.ty);
        if matches!(value, ConstValue::Null) {
            let array = if column.ty.array { "[]" } else { "" };
            return format!("NULL::{element}{array}");
        }
        let json = matches!(self.schema.ty(ty.named()).kind, Kind::Scalar(Scalar::Json));
        if column.ty.array {
            // A JSON array of the elements' text forms, unpacked and cast by PostgreSQL.
            let items = match value {
                ConstValue::List(items) => items.as_slice(),
                other => std::slice::from_ref(other),
            };
            let mut list = String::from("[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    list.push(',');
                }
                match element_text(self.schema, ty, item, json) {
                    Some(text) => crate::graphql::json::quote(&text, &mut list),
                    None => list.push_str("null"),
                }
            }
            list.push(']');
            let p = self.params.push(list);
            return format!(
                "ARRAY(SELECT x::{element} FROM json_array_elements_text({p}::text::json) \
                 WITH ORDINALITY AS v(x, n) ORDER BY n)::{element}[]"
            );
        }
        let text = element_text(self.schema, ty, value, json).unwrap_or_default();
        let p = self.params.push(text);
        format!("{p}::text::{element}")
    }
}

/// What in a write's filter would be dropped and widen it: a null, or (below the top) an
/// empty object. Recurses once per nesting level of the value, which the document's and
/// variables' bracket depth bounds (`POSTRUST_MAX_INPUT_DEPTH`).
fn loose(value: &ConstValue, top: bool) -> Option<&'static str> {
    match value {
        ConstValue::Null => Some("a null"),
        ConstValue::Object(map) if map.is_empty() && !top => Some("an empty condition"),
        ConstValue::Object(map) => map.values().find_map(|v| loose(v, false)),
        ConstValue::List(items) => items.iter().find_map(|v| loose(v, false)),
        _ => None,
    }
}

/// One value's PostgreSQL text form; a JSON column's value is its JSON text. None for null.
fn element_text(schema: &Schema, ty: &TypeRef, value: &ConstValue, json: bool) -> Option<String> {
    if matches!(value, ConstValue::Null) {
        return None;
    }
    if json {
        return value.clone().into_json().ok().map(|v| v.to_string());
    }
    filter::text(value, schema, ty)
}
