//! Compiles a validated [`Operation`] into one parameterized SQL statement whose single row
//! and column is the response's `data` object, built by PostgreSQL (`json_build_object`,
//! `json_agg`, correlated subqueries for relations).
//!
//! User values travel only as text bind parameters (`$1::text::<type>`); identifiers come
//! only from the catalog and are always quoted. Rows come in a deterministic order: the
//! requested keys, then the primary key (or, without one, every sortable column).

pub mod eval;
pub mod filter;
pub mod multiplex;
pub mod mutation;
pub mod quote;

use std::collections::BTreeSet;

use async_graphql_value::ConstValue;

use crate::catalog::{PgType, QualifiedName, Relation, TypeKind};
use crate::graphql::{ErrorCode, FieldRef, GraphQLError, Operation, PathSegment, Selected};
use crate::schema::{AggregateFn, Field, Kind, Scalar, Schema, Source, TypeId};
pub use filter::{Filter, Op};
use quote::{ident, literal};

/// The bind parameters of a statement, all sent as text.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params(pub Vec<String>);

impl Params {
    /// Adds a value; returns its placeholder (`$3`).
    pub fn push(&mut self, value: String) -> String {
        self.0.push(value);
        format!("${}", self.0.len())
    }
}

/// A root field's relation and filter, for matching change events later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootRead {
    /// The response key.
    pub key: String,
    pub relation: QualifiedName,
    pub filter: Filter,
}

/// A compiled operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// One row, one text column: the `data` object.
    pub sql: String,
    pub params: Vec<String>,
    /// Base tables read, schema-qualified; views resolved to the tables under them.
    pub tables: BTreeSet<QualifiedName>,
    /// The base tables among `tables` read other than as a root field's own rows: through
    /// a nested relation or through a view. A root filter says nothing about them.
    pub nested_tables: BTreeSet<QualifiedName>,
    /// The tables among `tables` that only the row-level security policies of what the
    /// statement reads read (they decide which rows show), and
    /// [`QualifiedName::any_table`] when a function's reads cannot be known.
    pub dependencies: BTreeSet<QualifiedName>,
    pub roots: Vec<RootRead>,
}

/// A relation field being compiled: `outer` aliases its rows in the JSON-building query,
/// `inner` in the query that selects `columns` from the relation.
struct Scope<'s> {
    relation: &'s Relation,
    outer: String,
    inner: String,
    object: String,
    columns: BTreeSet<String>,
}

struct Compiler<'s> {
    schema: &'s Schema,
    params: Params,
    tables: BTreeSet<QualifiedName>,
    /// See [`Statement::nested_tables`].
    nested_tables: BTreeSet<QualifiedName>,
    /// See [`Statement::dependencies`]; before the tables also read for themselves are
    /// taken out.
    dependencies: BTreeSet<QualifiedName>,
    /// The base tables read for their own rows (a relation's, or its view's).
    read_directly: BTreeSet<QualifiedName>,
    aliases: usize,
    /// The response path of the field being compiled, for errors.
    path: Vec<PathSegment>,
    /// Writes a root `__schema`/`__type` value (introspection is answered in Rust).
    introspect: &'s dyn Fn(&Selected) -> String,
}

/// The most key/value pairs one `json_build_object` call takes: PostgreSQL functions take at
/// most 100 arguments (`FUNC_MAX_ARGS`).
const MAX_OBJECT_PAIRS: usize = 50;

/// A JSON object from (key, SQL expression) pairs, in order; wider objects than one
/// `json_build_object` call can build aggregate a `VALUES` list instead.
fn json_object(pairs: &[(String, String)]) -> String {
    if pairs.len() <= MAX_OBJECT_PAIRS {
        let args: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}, {v}", literal(k)))
            .collect();
        return format!("json_build_object({})", args.join(", "));
    }
    let rows: Vec<String> = pairs
        .iter()
        .enumerate()
        .map(|(i, (k, v))| format!("({i}, {}, to_json({v}))", literal(k)))
        .collect();
    format!(
        "(SELECT json_object_agg(k, v ORDER BY n) FROM (VALUES {}) AS o(n, k, v))",
        rows.join(", ")
    )
}

impl<'s> Compiler<'s> {
    fn alias(&mut self) -> usize {
        self.aliases += 1;
        self.aliases
    }

    /// `data`: the root selection.
    fn root(&mut self, op: &Operation) -> Result<(String, Vec<RootRead>), GraphQLError> {
        let mut pairs = Vec::new();
        let mut roots = Vec::new();
        for sel in &op.selection {
            let expr = match sel.field {
                FieldRef::Typename => literal(self.schema.name(op.root)),
                FieldRef::Schema | FieldRef::Type => {
                    let json = (self.introspect)(sel);
                    format!("{}::text::json", self.params.push(json))
                }
                FieldRef::Field(i) => {
                    let field = &self.schema.fields(op.root)[i];
                    let (rel, call) = match field.source {
                        Source::Root(rel) | Source::RootAggregate(rel) => (rel, None),
                        Source::RootFunction(fi) => {
                            let (rel, call) = self.function_call(sel, field, fi);
                            (rel, Some(call))
                        }
                        _ => continue,
                    };
                    self.path.push(PathSegment::Key(sel.key.clone()));
                    let (sql, filter) = if field.source == Source::RootAggregate(rel) {
                        self.aggregate(sel, field, rel, None)?
                    } else if call.is_none() && self.schema.catalog.relations[rel].single_row {
                        (self.single_row(sel, field, rel)?, Filter::All(Vec::new()))
                    } else {
                        self.rows(sel, field, rel, None, call)?
                    };
                    self.path.pop();
                    roots.push(RootRead {
                        key: sel.key.clone(),
                        relation: self.schema.catalog.relations[rel].name.clone(),
                        filter,
                    });
                    sql
                }
            };
            pairs.push((sel.key.clone(), expr));
        }
        Ok((json_object(&pairs), roots))
    }

    /// The call of set-returning function `fi` with `sel`'s arguments (each a parameter cast
    /// to the argument's type), and the relation whose rows it returns. What the function
    /// reads cannot be known, so the statement may read any table.
    fn function_call(&mut self, sel: &Selected, field: &Field, fi: usize) -> (usize, String) {
        let schema = self.schema;
        let f = &schema.catalog.functions[fi];
        let rel = schema
            .catalog
            .relation_index(&f.returns)
            .expect("the schema only serves functions of served relations");
        self.reads_any_table();
        let args: Vec<String> = f
            .args
            .iter()
            .zip(&field.args)
            .map(|(arg, def)| {
                // The declared type, from the catalog (a domain, say): the overload declared
                // with it is the one called.
                let cast = &arg.cast;
                match sel
                    .arg(&def.name)
                    .and_then(|v| filter::text(v, schema, &def.ty))
                {
                    Some(text) => format!("{}::text::{cast}", self.params.push(text)),
                    None => format!("NULL::{cast}"),
                }
            })
            .collect();
        let call = format!(
            "{}.{}({})",
            ident(&f.name.schema),
            ident(&f.name.name),
            args.join(", ")
        );
        (rel, call)
    }

    /// The rows of relation `rel` as a JSON array; `link` correlates them with a parent row:
    /// (foreign key columns here, parent key columns, parent alias). `call` reads them from
    /// a function call instead of the relation itself.
    fn rows(
        &mut self,
        sel: &Selected,
        field: &Field,
        rel: usize,
        link: Option<(&[String], &[String], &str)>,
        call: Option<String>,
    ) -> Result<(String, Filter), GraphQLError> {
        let Scope {
            relation,
            outer,
            inner,
            object,
            mut columns,
        } = self.scope(sel, field, rel, link.is_none())?;
        let filter = self.filter(sel, field, relation);
        let mut order = self.order(sel, relation);
        if order.is_empty() {
            order = default_order(relation);
        }
        let conditions = self.conditions(relation, &inner, link, &filter);
        let limit = self.count(sel, "limit")?;
        let offset = self.count(sel, "offset")?;
        for (c, _) in &order {
            columns.insert(c.clone());
        }
        let render_order = |alias: &str| -> String {
            order
                .iter()
                .map(|(c, dir)| format!("{alias}.{} {dir}", ident(c)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let source = call.unwrap_or_else(|| {
            format!(
                "{}.{}",
                ident(&relation.name.schema),
                ident(&relation.name.name)
            )
        });
        let mut from = format!(
            "SELECT {} FROM {source} {inner}",
            select_list(relation, &columns, &inner),
        );
        if !conditions.is_empty() {
            from.push_str(" WHERE ");
            from.push_str(&conditions.join(" AND "));
        }
        if limit.is_some() || offset.is_some() {
            from.push_str(&format!(" ORDER BY {}", render_order(&inner)));
            if let Some(l) = limit {
                from.push_str(&format!(" LIMIT {l}::text::bigint"));
            }
            if let Some(o) = offset {
                from.push_str(&format!(" OFFSET {o}::text::bigint"));
            }
        }
        let agg_order = if order.is_empty() {
            String::new()
        } else {
            format!(" ORDER BY {}", render_order(&outer))
        };
        Ok((
            format!(
                "(SELECT coalesce(json_agg({object}{agg_order}), '[]'::json) FROM ({from}) {outer})"
            ),
            filter,
        ))
    }

    /// The `WHERE` conditions on rows of `relation` aliased `inner`: the link to a parent
    /// row (see [`rows`](Self::rows)) and the filter.
    fn conditions(
        &mut self,
        relation: &Relation,
        inner: &str,
        link: Option<(&[String], &[String], &str)>,
        filter: &Filter,
    ) -> Vec<String> {
        let mut conditions = Vec::new();
        if let Some((here, there, parent)) = link {
            for (a, b) in here.iter().zip(there) {
                conditions.push(format!("{inner}.{} = {parent}.{}", ident(a), ident(b)));
            }
        }
        if !filter.is_empty() {
            let mut f = String::new();
            filter.sql(
                &self.schema.catalog.relations,
                relation,
                inner,
                &mut self.params,
                &mut f,
            );
            conditions.push(f);
        }
        conditions
    }

    /// A field's `filter` argument.
    fn filter(&mut self, sel: &Selected, field: &Field, relation: &Relation) -> Filter {
        let filter = match (
            sel.arg("filter"),
            filter::filter_type(self.schema, &field.args),
        ) {
            (Some(v), Some(ty)) => Filter::from_value(self.schema, relation, ty, v),
            _ => Filter::All(Vec::new()),
        };
        // The relations its related-row conditions read are read by the statement too,
        // never as a root field's own rows.
        let mut related = Vec::new();
        filter.related_relations(&mut related);
        let schema = self.schema;
        for rel in related {
            self.reads(&schema.catalog.relations[rel], false);
        }
        filter
    }

    /// An aggregate over the rows of relation `rel` (correlated with a parent row by `link`,
    /// as in [`rows`](Self::rows)) as a JSON object: `count`, and for `sum`, `avg`, `min`
    /// and `max` an object of the function over each selected column.
    fn aggregate(
        &mut self,
        sel: &Selected,
        field: &Field,
        rel: usize,
        link: Option<(&[String], &[String], &str)>,
    ) -> Result<(String, Filter), GraphQLError> {
        let schema = self.schema;
        let relation = &schema.catalog.relations[rel];
        self.reads(relation, link.is_none());
        let filter = self.filter(sel, field, relation);
        let inner = format!("s{}", self.alias());
        let conditions = self.conditions(relation, &inner, link, &filter);
        // The aggregates are computed in a derived table, one column each, and the JSON is
        // built from its one row: an object wider than one json_build_object call is built
        // from a VALUES list, where an aggregate would belong to the VALUES.
        let computed = format!("a{}", self.alias());
        let mut exprs = vec!["count(*)".to_owned()];
        let aggregate_type = field.ty.named();
        let mut pairs = Vec::new();
        for child in &sel.children {
            let expr = match child.field {
                FieldRef::Field(i) => {
                    let f = &schema.fields(aggregate_type)[i];
                    match f.source {
                        Source::Count => format!("{computed}.c0"),
                        Source::Aggregate(function) => self.aggregate_columns(
                            child,
                            f,
                            function,
                            relation,
                            (&inner, &computed),
                            &mut exprs,
                        ),
                        _ => continue,
                    }
                }
                _ => literal(schema.name(aggregate_type)),
            };
            pairs.push((child.key.clone(), expr));
        }
        let columns: Vec<String> = exprs
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{e} AS c{i}"))
            .collect();
        let mut sql = format!(
            "(SELECT {} FROM (SELECT {} FROM {}.{} {inner}",
            json_object(&pairs),
            columns.join(", "),
            ident(&relation.name.schema),
            ident(&relation.name.name)
        );
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(&format!(") {computed})"));
        Ok((sql, filter))
    }

    /// The object of `function` over the columns `sel` selects, of rows aliased `alias`:
    /// each aggregate joins `exprs`, the derived table `computed`'s columns, and the object
    /// reads it from there.
    fn aggregate_columns(
        &mut self,
        sel: &Selected,
        field: &Field,
        function: AggregateFn,
        relation: &Relation,
        (alias, computed): (&str, &str),
        exprs: &mut Vec<String>,
    ) -> String {
        let schema = self.schema;
        let object = field.ty.named();
        let mut pairs = Vec::new();
        for child in &sel.children {
            let expr = match child.field {
                FieldRef::Field(i) => {
                    let f = &schema.fields(object)[i];
                    let Source::Column(ci) = f.source else {
                        continue;
                    };
                    let c = &relation.columns[ci];
                    exprs.push(format!("{}({alias}.{})", function.name(), ident(&c.name)));
                    let value = format!("{computed}.c{}", exprs.len() - 1);
                    match function {
                        // The column's own type: rendered as the column is.
                        AggregateFn::Min | AggregateFn::Max => self.value(&value, &c.ty, child),
                        // BigInt and BigFloat travel as text, as everywhere.
                        AggregateFn::Sum | AggregateFn::Avg => match schema.ty(f.ty.named()).kind {
                            Kind::Scalar(Scalar::BigInt | Scalar::BigFloat) => {
                                format!("({value})::text")
                            }
                            _ => value,
                        },
                    }
                }
                _ => literal(schema.name(object)),
            };
            pairs.push((child.key.clone(), expr));
        }
        json_object(&pairs)
    }

    /// The one row of a single-row relation, or null. A scalar subquery: a relation that
    /// returns a second row fails the statement with SQLSTATE 21000, reported as
    /// `NOT_SINGLE_ROW`, rather than showing an arbitrary one of its rows.
    fn single_row(
        &mut self,
        sel: &Selected,
        field: &Field,
        rel: usize,
    ) -> Result<String, GraphQLError> {
        let Scope {
            relation,
            outer,
            inner,
            object,
            columns,
        } = self.scope(sel, field, rel, true)?;
        Ok(format!(
            "(SELECT {object} FROM (SELECT {} FROM {}.{} {inner}) {outer})",
            select_list(relation, &columns, &inner),
            ident(&relation.name.schema),
            ident(&relation.name.name),
        ))
    }

    /// The row of relation `rel` a many-to-one field points at, or null.
    fn one(
        &mut self,
        sel: &Selected,
        field: &Field,
        rel: usize,
        (here, there, parent): (&[String], &[String], &str),
    ) -> Result<String, GraphQLError> {
        let Scope {
            relation,
            outer,
            inner,
            object,
            columns,
        } = self.scope(sel, field, rel, false)?;
        let conditions: Vec<String> = there
            .iter()
            .zip(here)
            .map(|(t, h)| format!("{inner}.{} = {parent}.{}", ident(t), ident(h)))
            .collect();
        Ok(format!(
            "(SELECT {object} FROM (SELECT {} FROM {}.{} {inner} WHERE {} LIMIT 1) {outer})",
            select_list(relation, &columns, &inner),
            ident(&relation.name.schema),
            ident(&relation.name.name),
            conditions.join(" AND ")
        ))
    }

    /// Starts compiling a relation field (a root field when `at_root`): records the tables
    /// it reads, names its aliases and builds the object of one row.
    fn scope(
        &mut self,
        sel: &Selected,
        field: &Field,
        rel: usize,
        at_root: bool,
    ) -> Result<Scope<'s>, GraphQLError> {
        let relation = &self.schema.catalog.relations[rel];
        self.reads(relation, at_root);
        let n = self.alias();
        let (outer, inner) = (format!("t{n}"), format!("s{n}"));
        let mut columns = BTreeSet::new();
        let object = self.object(sel, field.ty.named(), relation, &outer, &mut columns)?;
        Ok(Scope {
            relation,
            outer,
            inner,
            object,
            columns,
        })
    }

    /// The statement calls a function whose reads cannot be known: it may read any table,
    /// and a change of any may change its result.
    fn reads_any_table(&mut self) {
        let any = QualifiedName::any_table();
        self.tables.insert(any.clone());
        self.nested_tables.insert(any.clone());
        self.dependencies.insert(any);
    }

    /// Records the tables reading `relation` (as a root field when `at_root`) depends on.
    fn reads(&mut self, relation: &Relation, at_root: bool) {
        let base = relation.base_tables();
        if !at_root || base != [relation.name.clone()] {
            self.nested_tables.extend(base.iter().cloned());
        }
        self.read_directly.extend(base.iter().cloned());
        self.tables.extend(base);
        // A change there can change which rows the policies let through: never skipped.
        let mut dependencies: Vec<QualifiedName> = relation.depends_on.clone();
        if relation.opaque {
            dependencies.push(QualifiedName::any_table());
        }
        for t in dependencies {
            self.tables.insert(t.clone());
            self.nested_tables.insert(t.clone());
            self.dependencies.insert(t);
        }
    }

    /// The JSON object of one row of `relation` (alias `alias`) for `sel`'s sub-selection.
    /// Columns the expression reads are added to `columns`.
    fn object(
        &mut self,
        sel: &Selected,
        type_id: TypeId,
        relation: &Relation,
        alias: &str,
        columns: &mut BTreeSet<String>,
    ) -> Result<String, GraphQLError> {
        let schema = self.schema;
        let mut pairs = Vec::new();
        for child in &sel.children {
            let expr = match child.field {
                FieldRef::Field(i) => {
                    let field = &schema.fields(type_id)[i];
                    match field.source {
                        Source::Column(ci) => {
                            let c = &relation.columns[ci];
                            columns.insert(c.name.clone());
                            let value = format!("{alias}.{}", ident(&c.name));
                            self.value(&value, &c.ty, child)
                        }
                        Source::ToOne { fk } => {
                            let fk = &relation.foreign_keys[fk];
                            let target = schema
                                .catalog
                                .relation_index(&fk.references)
                                .expect("the schema only links exposed relations");
                            columns.extend(fk.columns.iter().cloned());
                            self.path.push(PathSegment::Key(child.key.clone()));
                            let link = (fk.columns.as_slice(), fk.ref_columns.as_slice(), alias);
                            let one = self.one(child, field, target, link)?;
                            self.path.pop();
                            one
                        }
                        // The rows pointing here, or an aggregate over them.
                        Source::ToMany { rel, fk } | Source::ToManyAggregate { rel, fk } => {
                            let fk = &schema.catalog.relations[rel].foreign_keys[fk];
                            columns.extend(fk.ref_columns.iter().cloned());
                            let link = (fk.columns.as_slice(), fk.ref_columns.as_slice(), alias);
                            self.path.push(PathSegment::Key(child.key.clone()));
                            let sql = match field.source {
                                Source::ToMany { .. } => {
                                    self.rows(child, field, rel, Some(link), None)?.0
                                }
                                _ => self.aggregate(child, field, rel, Some(link))?.0,
                            };
                            self.path.pop();
                            sql
                        }
                        Source::Computed(k) => {
                            let computed = &relation.computed[k];
                            columns.insert(computed_marker(k));
                            // What the function reads cannot be known: a change anywhere
                            // may change its value.
                            self.reads_any_table();
                            let value = format!("{alias}.{}", ident(&computed_alias(relation, k)));
                            self.value(&value, &computed.ty, child)
                        }
                        Source::Root(_)
                        | Source::RootAggregate(_)
                        | Source::RootFunction(_)
                        | Source::Count
                        | Source::Aggregate(_)
                        | Source::Meta
                        | Source::Insert(_)
                        | Source::Update(_)
                        | Source::Delete(_) => continue,
                    }
                }
                _ => literal(schema.name(type_id)),
            };
            pairs.push((child.key.clone(), expr));
        }
        Ok(json_object(&pairs))
    }

    /// A column or attribute value as the JSON the schema promises.
    fn value(&mut self, expr: &str, ty: &PgType, sel: &Selected) -> String {
        let schema = self.schema;
        match ty.kind {
            TypeKind::Composite if !sel.children.is_empty() => {
                let Some(ci) = schema
                    .catalog
                    .composites
                    .iter()
                    .position(|c| c.name == ty.qualified())
                else {
                    return expr.to_owned();
                };
                let type_id = match sel.field {
                    FieldRef::Field(i) => schema.fields(sel.parent)[i].ty.named(),
                    _ => return expr.to_owned(),
                };
                if ty.array {
                    let n = self.alias();
                    let element = format!("({expr})[g{n}.i]");
                    let object = self.composite(&element, ci, type_id, sel);
                    format!(
                        "CASE WHEN {expr} IS NULL THEN NULL ELSE coalesce((SELECT json_agg(CASE WHEN {element} IS NOT DISTINCT FROM NULL THEN NULL ELSE {object} END ORDER BY g{n}.i) FROM generate_subscripts({expr}, 1) AS g{n}(i)), '[]'::json) END"
                    )
                } else {
                    let object = self.composite(expr, ci, type_id, sel);
                    // `IS NULL` is also true of a row whose fields are all null.
                    format!(
                        "CASE WHEN {expr} IS NOT DISTINCT FROM NULL THEN NULL ELSE {object} END"
                    )
                }
            }
            TypeKind::Base | TypeKind::Other => {
                match crate::schema::build::scalar_for(ty) {
                    // Beyond 2^53 a JSON number loses digits in JavaScript: send the text.
                    Scalar::BigInt | Scalar::BigFloat if ty.array => format!("{expr}::text[]"),
                    Scalar::BigInt | Scalar::BigFloat => format!("{expr}::text"),
                    _ => expr.to_owned(),
                }
            }
            TypeKind::Enum => self.enum_value(expr, ty),
            TypeKind::Composite => expr.to_owned(),
        }
    }

    /// Enum labels that are not GraphQL names are renamed in the schema; map them back.
    fn enum_value(&mut self, expr: &str, ty: &PgType) -> String {
        let schema = self.schema;
        let values = schema.types.iter().find_map(|t| match &t.kind {
            Kind::Enum {
                values,
                pg: Some(i),
            } if schema.catalog.enums[*i].name == ty.qualified() => Some(values),
            _ => None,
        });
        let Some(values) = values.filter(|vs| vs.iter().any(|v| v.name != v.value)) else {
            return expr.to_owned();
        };
        let arms: Vec<String> = values
            .iter()
            .map(|v| format!("WHEN {} THEN {}", literal(&v.value), literal(&v.name)))
            .collect();
        let arms = arms.join(" ");
        if !ty.array {
            return format!("CASE {expr}::text {arms} END");
        }
        let n = self.alias();
        format!(
            "CASE WHEN {expr} IS NULL THEN NULL ELSE coalesce((SELECT json_agg(CASE u{n}.x::text {arms} END ORDER BY u{n}.o) FROM unnest({expr}) WITH ORDINALITY AS u{n}(x, o)), '[]'::json) END"
        )
    }

    fn composite(&mut self, expr: &str, ci: usize, type_id: TypeId, sel: &Selected) -> String {
        let schema = self.schema;
        let composite = &schema.catalog.composites[ci];
        let mut pairs = Vec::new();
        for child in &sel.children {
            let value = match child.field {
                FieldRef::Field(i) => match schema.fields(type_id)[i].source {
                    Source::Column(ai) => {
                        let a = &composite.attributes[ai];
                        let v = format!("({expr}).{}", ident(&a.name));
                        self.value(&v, &a.ty, child)
                    }
                    _ => continue,
                },
                _ => literal(schema.name(type_id)),
            };
            pairs.push((child.key.clone(), value));
        }
        json_object(&pairs)
    }

    /// `orderBy` as (column, direction SQL) pairs, then the default order to break ties.
    fn order(&self, sel: &Selected, relation: &Relation) -> Vec<(String, &'static str)> {
        let mut out: Vec<(String, &'static str)> = Vec::new();
        let Some(ConstValue::List(keys)) = sel.arg("orderBy") else {
            return out;
        };
        let schema = self.schema;
        let FieldRef::Field(i) = sel.field else {
            return out;
        };
        let input = schema.fields(sel.parent)[i]
            .args
            .iter()
            .find(|a| a.name == "orderBy")
            .map(|a| a.ty.named());
        let Some(Kind::Input { fields, .. }) = input.map(|id| &schema.ty(id).kind) else {
            return out;
        };
        for key in keys {
            let ConstValue::Object(map) = key else {
                continue;
            };
            for (field, dir) in map {
                let Some(ci) = fields
                    .iter()
                    .find(|f| f.name == field.as_str())
                    .and_then(|f| f.column)
                else {
                    continue;
                };
                let dir = match dir {
                    ConstValue::Enum(d) => match d.as_str() {
                        "ASC" => "ASC",
                        "DESC" => "DESC",
                        "ASC_NULLS_FIRST" => "ASC NULLS FIRST",
                        "ASC_NULLS_LAST" => "ASC NULLS LAST",
                        "DESC_NULLS_FIRST" => "DESC NULLS FIRST",
                        "DESC_NULLS_LAST" => "DESC NULLS LAST",
                        _ => continue,
                    },
                    _ => continue,
                };
                let column = &relation.columns[ci].name;
                if !out.iter().any(|(c, _)| c == column) {
                    out.push((column.clone(), dir));
                }
            }
        }
        if !out.is_empty() {
            for (c, dir) in default_order(relation) {
                if !out.iter().any(|(o, _)| *o == c) {
                    out.push((c, dir));
                }
            }
        }
        out
    }

    /// A `limit` or `offset` argument as a parameter placeholder.
    fn count(&mut self, sel: &Selected, name: &str) -> Result<Option<String>, GraphQLError> {
        match sel.arg(name) {
            Some(ConstValue::Number(n)) => match n.as_i64() {
                Some(v) if v >= 0 => Ok(Some(self.params.push(v.to_string()))),
                _ => {
                    let message = format!("Argument \"{name}\" must not be negative, got {n}.");
                    let mut e = GraphQLError::new(ErrorCode::BadArgument, message, &[sel.pos]);
                    e.path = self.path.clone();
                    Err(e)
                }
            },
            _ => Ok(None),
        }
    }
}

/// The primary key, or every sortable column in order (views).
fn default_order(relation: &Relation) -> Vec<(String, &'static str)> {
    if !relation.primary_key.is_empty()
        && relation
            .primary_key
            .iter()
            .all(|k| relation.column(k).is_some())
    {
        return relation
            .primary_key
            .iter()
            .map(|k| (k.clone(), "ASC"))
            .collect();
    }
    relation
        .columns
        .iter()
        .filter(|c| c.ty.sortable)
        .map(|c| (c.name.clone(), "ASC"))
        .collect()
}

/// What [`select_list`] reads for computed field `k`: not a column name, as PostgreSQL's
/// names never hold a NUL.
fn computed_marker(k: usize) -> String {
    format!("\0{k}")
}

pub(crate) fn is_computed_marker(column: &str) -> bool {
    column.starts_with('\0')
}

/// The name computed field `k`'s value takes in the row subquery: short (PostgreSQL cuts
/// names at 63 bytes) and one per field, lengthened until no column of the relation has it.
fn computed_alias(relation: &Relation, k: usize) -> String {
    let mut alias = format!("postrust computed {k}");
    while relation.column(&alias).is_some() {
        alias.push('_');
    }
    alias
}

/// The select list of `relation`'s rows aliased `alias`: `columns`, and computed fields
/// (their markers) as their function called on the whole row.
fn select_list(relation: &Relation, columns: &BTreeSet<String>, alias: &str) -> String {
    if columns.is_empty() {
        // A row must have a value to count; a selection of only `__typename` reads none.
        return "1 AS one".to_owned();
    }
    columns
        .iter()
        .map(
            |c| match c.strip_prefix('\0').and_then(|k| k.parse::<usize>().ok()) {
                Some(k) => {
                    let f = &relation.computed[k].function;
                    // `alias.*`, not the bare alias: a column of that name would win.
                    format!(
                        "{}.{}({alias}.*) AS {}",
                        ident(&f.schema),
                        ident(&f.name),
                        ident(&computed_alias(relation, k))
                    )
                }
                None => format!("{alias}.{}", ident(c)),
            },
        )
        .collect::<Vec<_>>()
        .join(", ")
}

/// Compiles `op`; `introspect` writes the value of a root `__schema`/`__type` field.
pub fn compile(
    schema: &Schema,
    op: &Operation,
    introspect: &dyn Fn(&Selected) -> String,
) -> Result<Statement, GraphQLError> {
    let mut c = Compiler {
        schema,
        params: Params::default(),
        tables: BTreeSet::new(),
        nested_tables: BTreeSet::new(),
        dependencies: BTreeSet::new(),
        read_directly: BTreeSet::new(),
        aliases: 0,
        path: Vec::new(),
        introspect,
    };
    let (data, roots) = c.root(op)?;
    // A table read for itself somewhere is not only a dependency.
    let dependencies = c
        .dependencies
        .into_iter()
        .filter(|t| !c.read_directly.contains(t))
        .collect();
    Ok(Statement {
        sql: format!("SELECT {data}::text"),
        params: c.params.0,
        tables: c.tables,
        nested_tables: c.nested_tables,
        dependencies,
        roots,
    })
}

#[cfg(test)]
mod tests;
