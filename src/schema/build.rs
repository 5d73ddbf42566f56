//! Generates the GraphQL schema from the catalog: an object type per relation and composite
//! type, an enum per PostgreSQL enum, filter and order-by inputs per relation, relation fields
//! from foreign keys, the `Query` and `Subscription` roots, and the `Mutation` root with its
//! input types for the relations some client role may write.

use std::collections::HashMap;

use super::meta::{self, ENUM_OPERATORS, SORT_DIRECTION};
use super::naming::{Namespace, by_columns, lower_camel, to_one_name, upper_camel};
use super::{
    AggregateFn, EnumValue, Field, InputOrigin, InputValue, Kind, ObjectOrigin, Scalar, Schema,
    Source, TypeDef, TypeId, TypeRef, TypeTable,
};
use crate::catalog::{Catalog, PgType, QualifiedName, Relation, TypeKind};

/// The GraphQL scalar for a PostgreSQL base type; anything unknown travels as its text form.
pub fn scalar_for(pg: &PgType) -> Scalar {
    if pg.schema != "pg_catalog" {
        return Scalar::String;
    }
    match pg.name.as_str() {
        "int2" | "int4" => Scalar::Int,
        "int8" => Scalar::BigInt,
        "float4" | "float8" => Scalar::Float,
        "numeric" | "money" => Scalar::BigFloat,
        "bool" => Scalar::Boolean,
        "uuid" => Scalar::Uuid,
        "timestamptz" | "timestamp" => Scalar::Datetime,
        "date" => Scalar::Date,
        "json" | "jsonb" => Scalar::Json,
        _ => Scalar::String,
    }
}

struct Builder<'c> {
    catalog: &'c Catalog,
    t: TypeTable,
    names: Namespace,
    enums: HashMap<QualifiedName, TypeId>,
    composites: HashMap<QualifiedName, TypeId>,
    objects: Vec<TypeId>,
    /// Enum type to its operator filter type.
    enum_filters: HashMap<TypeId, TypeId>,
    /// Enum type to the filter of arrays of it.
    enum_list_filters: HashMap<TypeId, TypeId>,
    /// Per relation: its filter and order-by input types.
    inputs: Vec<(TypeId, TypeId)>,
    /// Per relation: its `<Relation>Aggregate` type (none for a single-row relation).
    aggregates: Vec<Option<TypeId>>,
}

impl Builder<'_> {
    /// A type name for a catalog object, qualified by its schema when the plain one is taken.
    fn type_name(&mut self, name: &QualifiedName) -> String {
        let plain = upper_camel(&name.name);
        if self.names.is_taken(&plain) {
            self.names
                .claim(upper_camel(&format!("{}_{}", name.schema, name.name)))
        } else {
            self.names.claim(plain)
        }
    }

    /// The output type of a column, nullable; `None` when it cannot be exposed.
    fn column_type(&self, pg: &PgType) -> TypeRef {
        let q = pg.qualified();
        let named = match pg.kind {
            TypeKind::Enum => self.enums.get(&q).copied(),
            TypeKind::Composite => self.composites.get(&q).copied(),
            _ => None,
        };
        let named = named.unwrap_or_else(|| {
            let scalar = match pg.kind {
                TypeKind::Composite => Scalar::Json,
                _ => scalar_for(pg),
            };
            let name = meta::SCALARS
                .iter()
                .find(|(_, s, _)| *s == scalar)
                .map(|(n, _, _)| *n)
                .expect("every scalar is listed");
            self.t.id(name)
        });
        let t = TypeRef::Named(named);
        if pg.array { t.list() } else { t }
    }

    /// The operator filter type for a column, if it can be filtered on: its scalar's or
    /// enum's, or for an array column its element type's list filter.
    fn filter_type(&self, pg: &PgType) -> Option<TypeId> {
        let named = self.column_type(pg).named();
        match (&self.t.types[named].kind, pg.array) {
            (Kind::Scalar(_), array) => {
                let suffix = if array { "ListFilter" } else { "Filter" };
                let name = format!("{}{suffix}", self.t.types[named].name);
                self.t.by_name.get(&name).copied()
            }
            (Kind::Enum { .. }, false) => self.enum_filters.get(&named).copied(),
            (Kind::Enum { .. }, true) => self.enum_list_filters.get(&named).copied(),
            _ => None,
        }
    }

    /// The type of column `pg` under aggregate function `f`, nullable (no rows, or only
    /// nulls, give null); `None` when the function does not apply to it.
    fn aggregate_type(&self, f: AggregateFn, pg: &PgType) -> Option<TypeRef> {
        if pg.array {
            return None;
        }
        let builtin = if pg.schema == "pg_catalog" {
            pg.name.as_str()
        } else {
            ""
        };
        let scalar = |name: &str| Some(TypeRef::Named(self.t.id(name)));
        match (f, builtin) {
            // PostgreSQL's own result types: sum(int4) is bigint, sum(int8) numeric, avg of
            // integers numeric.
            (AggregateFn::Sum, "int2" | "int4") => scalar("BigInt"),
            (AggregateFn::Sum | AggregateFn::Avg, "int2" | "int4" | "int8" | "numeric") => {
                scalar("BigFloat")
            }
            (AggregateFn::Sum | AggregateFn::Avg, "float4" | "float8") => scalar("Float"),
            (AggregateFn::Sum | AggregateFn::Avg, _) => None,
            (
                AggregateFn::Min | AggregateFn::Max,
                "int2" | "int4" | "int8" | "numeric" | "float4" | "float8" | "text" | "varchar"
                | "bpchar" | "date" | "timestamp" | "timestamptz",
            ) => Some(self.column_type(pg)),
            (AggregateFn::Min | AggregateFn::Max, _) if pg.kind == TypeKind::Enum => {
                Some(self.column_type(pg))
            }
            (AggregateFn::Min | AggregateFn::Max, _) => None,
        }
    }

    /// `<Relation>Aggregate` for relation `rel`: `count`, and `sum`, `avg`, `min`, `max`
    /// objects of the columns each applies to (left out when it applies to none).
    fn aggregate_object(&mut self, rel: usize) -> TypeId {
        let r = &self.catalog.relations[rel];
        let object = self.t.types[self.objects[rel]].name.clone();
        let name = self.names.claim(format!("{object}Aggregate"));
        let id = self.t.add(object_type(
            name,
            Some(format!("Aggregates over rows of `{}`.", r.name)),
            ObjectOrigin::Aggregate(rel),
        ));
        let names = column_names(r.columns.iter().map(|c| c.name.as_str()));
        let mut fields = vec![Field {
            name: "count".into(),
            description: Some("The number of rows.".into()),
            args: Vec::new(),
            ty: TypeRef::Named(self.t.id("Int")).non_null(),
            source: Source::Count,
        }];
        for f in AggregateFn::ALL {
            let columns: Vec<Field> = r
                .columns
                .iter()
                .enumerate()
                .filter_map(|(ci, c)| {
                    Some(Field {
                        name: names[ci].clone(),
                        description: None,
                        args: Vec::new(),
                        ty: self.aggregate_type(f, &c.ty)?,
                        source: Source::Column(ci),
                    })
                })
                .collect();
            if columns.is_empty() {
                continue;
            }
            let sub_name = self
                .names
                .claim(format!("{object}{}", upper_camel(f.name())));
            let sub = self.t.add(TypeDef {
                name: sub_name,
                description: Some(format!(
                    "`{}` of each column of `{}` it applies to, over the rows; null without \
                     any.",
                    f.name(),
                    r.name
                )),
                kind: Kind::Object {
                    fields: columns,
                    origin: ObjectOrigin::Aggregate(rel),
                },
            });
            fields.push(Field {
                name: f.name().into(),
                description: None,
                args: Vec::new(),
                ty: TypeRef::Named(sub),
                source: Source::Aggregate(f),
            });
        }
        self.t.types[id].kind = Kind::Object {
            fields,
            origin: ObjectOrigin::Aggregate(rel),
        };
        id
    }

    /// The arguments of an aggregate field: the relation's filter.
    fn aggregate_args(&self, rel: usize) -> Vec<InputValue> {
        vec![meta::input(
            "filter",
            TypeRef::Named(self.inputs[rel].0),
            Some("Only rows matching all of these conditions."),
        )]
    }

    fn list_args(&self, rel: usize) -> Vec<InputValue> {
        let (filter, order) = self.inputs[rel];
        vec![
            meta::input(
                "filter",
                TypeRef::Named(filter),
                Some("Only rows matching all of these conditions."),
            ),
            meta::input(
                "orderBy",
                TypeRef::Named(order).non_null().list(),
                Some("Sort keys, most significant first; the primary key breaks ties."),
            ),
            meta::input(
                "limit",
                TypeRef::Named(self.t.id("Int")),
                Some("At most this many rows."),
            ),
            meta::input(
                "offset",
                TypeRef::Named(self.t.id("Int")),
                Some("Skip this many rows first."),
            ),
        ]
    }

    fn rows_type(&self, rel: usize) -> TypeRef {
        TypeRef::Named(self.objects[rel])
            .non_null()
            .list()
            .non_null()
    }

    fn relation_fields(&self, index: usize) -> Vec<Field> {
        let catalog = self.catalog;
        let rel = &catalog.relations[index];
        let names = column_names(rel.columns.iter().map(|c| c.name.as_str()));
        let mut fields: Vec<Field> = rel
            .columns
            .iter()
            .zip(names)
            .enumerate()
            .map(|(i, (c, name))| {
                let ty = self.column_type(&c.ty);
                Field {
                    name,
                    description: c.comment.clone(),
                    args: Vec::new(),
                    ty: if c.not_null { ty.non_null() } else { ty },
                    source: Source::Column(i),
                }
            })
            .collect();
        // Relation fields: short names unless two want the same one or a column has it.
        let mut wanted: Vec<(String, String, Field)> = Vec::new();
        for (fk_index, fk) in rel.foreign_keys.iter().enumerate() {
            if let Some(target) = exposed_target(catalog, rel, fk_index) {
                wanted.push((
                    to_one_name(&fk.columns, &fk.references.name),
                    by_columns(&lower_camel(&fk.references.name), &fk.columns),
                    Field {
                        name: String::new(),
                        description: Some(format!(
                            "The row of `{}` this row points at.",
                            fk.references
                        )),
                        args: Vec::new(),
                        ty: TypeRef::Named(self.objects[target]),
                        source: Source::ToOne { fk: fk_index },
                    },
                ));
            }
        }
        for (other_index, other) in catalog.relations.iter().enumerate() {
            for (fk_index, fk) in other.foreign_keys.iter().enumerate() {
                if fk.references == rel.name
                    && exposed_target(catalog, other, fk_index) == Some(index)
                {
                    let short = lower_camel(&other.name.name);
                    wanted.push((
                        short.clone(),
                        by_columns(&short, &fk.columns),
                        Field {
                            name: String::new(),
                            description: Some(format!(
                                "The rows of `{}` that point at this row.",
                                other.name
                            )),
                            args: self.list_args(other_index),
                            ty: self.rows_type(other_index),
                            source: Source::ToMany {
                                rel: other_index,
                                fk: fk_index,
                            },
                        },
                    ));
                }
            }
        }
        let mut names = Namespace::default();
        for f in &fields {
            names.claim(f.name.clone());
        }
        for (short, long, mut field) in wanted.clone() {
            let shared = wanted.iter().filter(|(s, _, _)| *s == short).count() > 1;
            let name = if shared || names.is_taken(&short) {
                long
            } else {
                short
            };
            field.name = names.claim(name);
            fields.push(field);
        }
        // Each one-to-many field has its aggregate beside it: `orders`, `ordersAggregate`.
        let to_many: Vec<(String, usize, usize)> = fields
            .iter()
            .filter_map(|f| match f.source {
                Source::ToMany { rel, fk } => Some((f.name.clone(), rel, fk)),
                _ => None,
            })
            .collect();
        for (name, rel, fk) in to_many {
            let Some(aggregate) = self.aggregates[rel] else {
                continue;
            };
            fields.push(Field {
                name: names.claim(format!("{name}Aggregate")),
                description: Some(format!(
                    "Aggregates over the rows of `{}` that point at this row.",
                    self.catalog.relations[rel].name
                )),
                args: self.aggregate_args(rel),
                ty: TypeRef::Named(aggregate).non_null(),
                source: Source::ToManyAggregate { rel, fk },
            });
        }
        // Computed fields last, so that adding a function never renames a column's, a
        // relation's or an aggregate's field.
        for (k, computed) in rel.computed.iter().enumerate() {
            // `customers_label(customers)` is `Customers.label`.
            let function = &computed.function.name;
            let short = function
                .strip_prefix(&format!("{}_", rel.name.name))
                .filter(|rest| !rest.is_empty())
                .unwrap_or(function);
            fields.push(Field {
                name: names.claim(lower_camel(short)),
                description: computed.comment.clone(),
                args: Vec::new(),
                ty: self.column_type(&computed.ty),
                source: Source::Computed(k),
            });
        }
        fields
    }
}

/// Adds to each relation's filter a field per relation field of its object, named alike:
/// a many-to-one field takes the filter of the row pointed at (`customer: CustomersFilter`),
/// a one-to-many field `some`, `every` and `none` of the rows pointing here
/// (`orders: OrdersRelationFilter`). Runs once every object has its fields.
fn relation_filters(b: &mut Builder<'_>) {
    let mut quantified: HashMap<usize, TypeId> = HashMap::new();
    for i in 0..b.catalog.relations.len() {
        let links: Vec<(String, Source)> = b
            .t
            .types
            .get(b.objects[i])
            .map(|t| match &t.kind {
                Kind::Object { fields, .. } => fields
                    .iter()
                    .filter(|f| matches!(f.source, Source::ToOne { .. } | Source::ToMany { .. }))
                    .map(|f| (f.name.clone(), f.source))
                    .collect(),
                _ => Vec::new(),
            })
            .unwrap_or_default();
        let mut added = Vec::new();
        for (name, source) in links {
            let ty = match source {
                Source::ToOne { fk } => {
                    let rel = &b.catalog.relations[i];
                    let target = exposed_target(b.catalog, rel, fk).expect("an exposed link");
                    b.inputs[target].0
                }
                Source::ToMany { rel, .. } => match quantified.get(&rel) {
                    Some(id) => *id,
                    None => {
                        let id = quantified_filter(b, rel);
                        quantified.insert(rel, id);
                        id
                    }
                },
                _ => continue,
            };
            added.push((name, ty, source));
        }
        let filter_id = b.inputs[i].0;
        let Kind::Input { fields, .. } = &mut b.t.types[filter_id].kind else {
            continue;
        };
        let mut taken = Namespace::default();
        for f in fields.iter() {
            taken.claim(f.name.clone());
        }
        for (name, ty, source) in added {
            // The combinators keep their names, as against columns.
            let name = if matches!(name.as_str(), "and" | "or" | "not") {
                format!("{name}Relation")
            } else {
                name
            };
            fields.push(InputValue {
                relation: Some(source),
                ..meta::input(&taken.claim(name), TypeRef::Named(ty), None)
            });
        }
    }
}

/// The root field of set-returning function `fi`: its arguments (required, named in
/// lowerCamelCase), then the list arguments of the relation it returns. `None` for a
/// function whose relation is not served, that takes an argument GraphQL cannot pass as
/// a scalar or enum, or one named like a list argument.
fn function_root(b: &Builder<'_>, fi: usize, roots: &mut Namespace) -> Option<Field> {
    let f = &b.catalog.functions[fi];
    let rel = b.catalog.relation_index(&f.returns)?;
    let mut taken = Namespace::default();
    for name in ["filter", "orderBy", "limit", "offset"] {
        taken.claim(name.to_owned());
    }
    let mut args = Vec::new();
    for arg in &f.args {
        let (name, ty) = (&arg.name, &arg.ty);
        let arg_type = b.column_type(ty);
        let passable = !ty.array
            && match &b.t.types[arg_type.named()].kind {
                Kind::Scalar(scalar) => *scalar != Scalar::Json,
                Kind::Enum { .. } => true,
                _ => false,
            };
        let name = lower_camel(name);
        if !passable || taken.is_taken(&name) {
            return None;
        }
        args.push(meta::input(&taken.claim(name), arg_type.non_null(), None));
    }
    args.extend(b.list_args(rel));
    Some(Field {
        name: roots.claim(lower_camel(&f.name.name)),
        description: f.comment.clone(),
        args,
        ty: b.rows_type(rel),
        source: Source::RootFunction(fi),
    })
}

/// `<Relation>RelationFilter`: `some`, `every`, `none` of the rows of relation `rel` that
/// point at a row.
fn quantified_filter(b: &mut Builder<'_>, rel: usize) -> TypeId {
    let object = b.t.types[b.objects[rel]].name.clone();
    let filter = TypeRef::Named(b.inputs[rel].0);
    let name = b.names.claim(format!("{object}RelationFilter"));
    b.t.add(TypeDef {
        name,
        description: Some(format!(
            "Conditions on the rows of `{}` that point at a row; all given must hold.",
            b.catalog.relations[rel].name
        )),
        kind: Kind::Input {
            fields: vec![
                meta::input(
                    "some",
                    filter.clone(),
                    Some("At least one of them matches."),
                ),
                meta::input(
                    "every",
                    filter.clone(),
                    Some("Every one of them matches (true when there are none)."),
                ),
                meta::input("none", filter, Some("None of them matches.")),
            ],
            origin: InputOrigin::RelationFilter(rel),
        },
    })
}

/// The field names of a relation's (or composite's) columns: lowerCamelCase, numbered on
/// a clash in column order.
fn column_names<'a>(columns: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut names = Namespace::default();
    columns.map(|c| names.claim(lower_camel(c))).collect()
}

/// The index of the relation a foreign key points at, when it and every column involved is
/// exposed.
fn exposed_target(catalog: &Catalog, rel: &Relation, fk: usize) -> Option<usize> {
    let fk = &rel.foreign_keys[fk];
    let target = catalog.relation_index(&fk.references)?;
    let t = &catalog.relations[target];
    let all = fk.columns.iter().all(|c| rel.column(c).is_some())
        && fk.ref_columns.iter().all(|c| t.column(c).is_some());
    all.then_some(target)
}

fn object_type(name: String, description: Option<String>, origin: ObjectOrigin) -> TypeDef {
    TypeDef {
        name,
        description,
        kind: Kind::Object {
            fields: Vec::new(),
            origin,
        },
    }
}

/// The `Mutation` root: `insert<Type>`, `update<Type>` and `delete<Type>` for each relation
/// some client role may write, in catalog order, with their input types. None when nothing
/// may be written.
fn mutations(b: &mut Builder<'_>) -> Option<TypeId> {
    let catalog = b.catalog;
    if !catalog.relations.iter().any(|r| r.writes.any()) {
        return None;
    }
    let root = b.t.add(object_type(
        "Mutation".into(),
        Some(
            "Each operation is one transaction: its fields run in order, as the client's \
             role, and a failure undoes them all."
                .into(),
        ),
        ObjectOrigin::Mutation,
    ));
    let mut fields = Vec::new();
    let mut taken = Namespace::default();
    for (i, r) in catalog.relations.iter().enumerate() {
        if !r.writes.any() {
            continue;
        }
        let object = b.t.types[b.objects[i]].name.clone();
        let rows = b.rows_type(i);
        let filter = TypeRef::Named(b.inputs[i].0).non_null();
        let names = column_names(r.columns.iter().map(|c| c.name.as_str()));
        // Composite columns are objects on output, which GraphQL cannot take as input.
        let writable = |c: &crate::catalog::Column| c.ty.kind != TypeKind::Composite;
        // GraphQL has no empty input objects: a relation with no column a client role may
        // give a value gets no insert field.
        let insertable = r.columns.iter().any(|c| c.insertable && writable(c));
        if r.writes.insert && insertable {
            let input_fields = r
                .columns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.insertable && writable(c))
                .map(|(ci, c)| {
                    let ty = b.column_type(&c.ty);
                    let required = c.not_null && !c.has_default;
                    InputValue {
                        column: Some(ci),
                        ..meta::input(&names[ci], if required { ty.non_null() } else { ty }, None)
                    }
                })
                .collect();
            let input_name = b.names.claim(format!("{object}InsertInput"));
            let input = b.t.add(TypeDef {
                name: input_name,
                description: Some(format!(
                    "A row to insert into `{}`; a column left out takes its default.",
                    r.name
                )),
                kind: Kind::Input {
                    fields: input_fields,
                    origin: InputOrigin::Insert(i),
                },
            });
            let mut args = vec![meta::input(
                "objects",
                TypeRef::Named(input).non_null().list().non_null(),
                Some("The rows to insert."),
            )];
            if let Some(on_conflict) = on_conflict_type(b, i, &object, &names) {
                args.push(meta::input(
                    "onConflict",
                    TypeRef::Named(on_conflict),
                    Some("What to do with a row that collides with one of a unique constraint."),
                ));
            }
            fields.push(Field {
                name: taken.claim(format!("insert{object}")),
                description: Some(format!(
                    "Inserts rows into `{}` and returns them as inserted.",
                    r.name
                )),
                args,
                ty: rows.clone(),
                source: Source::Insert(i),
            });
        }
        if r.writes.update {
            let set_fields: Vec<InputValue> = r
                .columns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.updatable && writable(c))
                .map(|(ci, c)| InputValue {
                    column: Some(ci),
                    ..meta::input(&names[ci], b.column_type(&c.ty), None)
                })
                .collect();
            if !set_fields.is_empty() {
                let set_name = b.names.claim(format!("{object}SetInput"));
                let set = b.t.add(TypeDef {
                    name: set_name,
                    description: Some(format!(
                        "New values for columns of `{}`; a column left out keeps its value.",
                        r.name
                    )),
                    kind: Kind::Input {
                        fields: set_fields,
                        origin: InputOrigin::Set(i),
                    },
                });
                fields.push(Field {
                    name: taken.claim(format!("update{object}")),
                    description: Some(format!(
                        "Updates the rows of `{}` matching `filter` (`{{}}` for all) and \
                         returns them as updated.",
                        r.name
                    )),
                    args: vec![
                        meta::input("filter", filter.clone(), Some("The rows to update.")),
                        meta::input(
                            "set",
                            TypeRef::Named(set).non_null(),
                            Some("The new values."),
                        ),
                    ],
                    ty: rows.clone(),
                    source: Source::Update(i),
                });
            }
        }
        if r.writes.delete {
            fields.push(Field {
                name: taken.claim(format!("delete{object}")),
                description: Some(format!(
                    "Deletes the rows of `{}` matching `filter` (`{{}}` for all) and returns \
                     them as they were.",
                    r.name
                )),
                args: vec![meta::input("filter", filter, Some("The rows to delete."))],
                ty: rows,
                source: Source::Delete(i),
            });
        }
    }
    b.t.types[root].kind = Kind::Object {
        fields,
        origin: ObjectOrigin::Mutation,
    };
    Some(root)
}

/// `<Type>OnConflict` with its `<Type>Constraint` and `<Type>UpdateColumn` enums, for a
/// relation with a primary key or unique constraint over exposed columns.
fn on_conflict_type(
    b: &mut Builder<'_>,
    rel: usize,
    object: &str,
    names: &[String],
) -> Option<TypeId> {
    let r = &b.catalog.relations[rel];
    let mut taken = Namespace::default();
    let keys: Vec<EnumValue> = r
        .unique_keys
        .iter()
        .filter(|k| k.columns.iter().all(|c| r.column(c).is_some()))
        .map(|k| EnumValue {
            name: enum_value_name(&k.name, &mut taken),
            description: Some(format!("On ({})", k.columns.join(", "))),
            value: k.name.clone(),
        })
        .collect();
    if keys.is_empty() {
        return None;
    }
    let constraint_name = b.names.claim(format!("{object}Constraint"));
    let constraint = b.t.add(TypeDef {
        name: constraint_name,
        description: Some(format!("The unique constraints of `{}`.", r.name)),
        kind: Kind::Enum {
            values: keys,
            pg: None,
        },
    });
    let mut column_values = Namespace::default();
    let columns: Vec<EnumValue> = r
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.updatable && c.ty.kind != TypeKind::Composite)
        .map(|(ci, c)| EnumValue {
            // A field may be called `null`; an enum value may not.
            name: enum_value_name(&names[ci], &mut column_values),
            description: None,
            value: c.name.clone(),
        })
        .collect();
    let mut fields = vec![meta::input(
        "constraint",
        TypeRef::Named(constraint).non_null(),
        Some("The constraint whose collision this handles."),
    )];
    if !columns.is_empty() {
        let column_name = b.names.claim(format!("{object}UpdateColumn"));
        let column = b.t.add(TypeDef {
            name: column_name,
            description: Some(format!("The columns of `{}` an upsert may update.", r.name)),
            kind: Kind::Enum {
                values: columns,
                pg: None,
            },
        });
        fields.push(meta::input(
            "updateColumns",
            TypeRef::Named(column).non_null().list(),
            Some(
                "The columns to set from the row that collided (an upsert); none or absent: \
                 the row is left as it is and not returned.",
            ),
        ));
    }
    let name = b.names.claim(format!("{object}OnConflict"));
    Some(b.t.add(TypeDef {
        name,
        description: Some(format!(
            "An insert's handling of collisions in `{}`.",
            r.name
        )),
        kind: Kind::Input {
            fields,
            origin: InputOrigin::OnConflict(rel),
        },
    }))
}

/// GraphQL enum values must be names and not `true`, `false` or `null`.
fn enum_value_name(label: &str, taken: &mut Namespace) -> String {
    let mut name: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    if matches!(name.as_str(), "true" | "false" | "null") {
        name.push('_');
    }
    taken.claim(name)
}

/// Generates the schema of `catalog`.
pub fn build(catalog: Catalog) -> Schema {
    let mut t = TypeTable::default();
    let directives = meta::install(&mut t);
    let mut names = Namespace::default();
    for ty in &t.types {
        names.claim(ty.name.clone());
    }
    for reserved in ["Query", "Subscription", "Mutation"] {
        names.claim(reserved.to_owned());
    }
    let mut b = Builder {
        catalog: &catalog,
        t,
        names,
        enums: HashMap::new(),
        composites: HashMap::new(),
        objects: Vec::new(),
        inputs: Vec::new(),
        aggregates: Vec::new(),
        enum_filters: HashMap::new(),
        enum_list_filters: HashMap::new(),
    };
    let query =
        b.t.add(object_type("Query".into(), None, ObjectOrigin::Query));
    let subscription = b.t.add(object_type(
        "Subscription".into(),
        Some("Each field sends the current result, then a new one whenever it changes.".into()),
        ObjectOrigin::Subscription,
    ));

    for (i, e) in catalog.enums.iter().enumerate() {
        let name = b.type_name(&e.name);
        let mut taken = Namespace::default();
        let values = e
            .values
            .iter()
            .map(|label| EnumValue {
                name: enum_value_name(label, &mut taken),
                description: None,
                value: label.clone(),
            })
            .collect();
        let id = b.t.add(TypeDef {
            name: name.clone(),
            description: e.comment.clone(),
            kind: Kind::Enum {
                values,
                pg: Some(i),
            },
        });
        b.enums.insert(e.name.clone(), id);
        let filter_name = b.names.claim(format!("{name}Filter"));
        let fields = meta::operator_fields(&b.t, TypeRef::Named(id), ENUM_OPERATORS);
        let filter_id = b.t.add(TypeDef {
            name: filter_name,
            description: Some(format!("Conditions on a {name} column; all must hold.")),
            kind: Kind::Input {
                fields,
                origin: InputOrigin::Operators,
            },
        });
        b.enum_filters.insert(id, filter_id);
        let mut list = meta::list_filter(&b.t, name.clone(), TypeRef::Named(id));
        list.name = b.names.claim(list.name);
        let list_id = b.t.add(list);
        b.enum_list_filters.insert(id, list_id);
    }
    for (i, c) in catalog.composites.iter().enumerate() {
        let name = b.type_name(&c.name);
        let id = b.t.add(object_type(
            name,
            c.comment.clone(),
            ObjectOrigin::Composite(i),
        ));
        b.composites.insert(c.name.clone(), id);
    }
    for (i, r) in catalog.relations.iter().enumerate() {
        let name = b.type_name(&r.name);
        let id = b.t.add(object_type(
            name,
            r.comment.clone(),
            ObjectOrigin::Relation(i),
        ));
        b.objects.push(id);
    }
    // Inputs before fields: relation fields take them as arguments.
    for (i, r) in catalog.relations.iter().enumerate() {
        let object = b.t.types[b.objects[i]].name.clone();
        let filter_name = b.names.claim(format!("{object}Filter"));
        let order_name = b.names.claim(format!("{object}OrderBy"));
        let filter_id = b.t.add(TypeDef {
            name: filter_name,
            description: Some(format!(
                "Conditions on rows of `{}`; all given conditions must hold.",
                r.name
            )),
            kind: Kind::Input {
                fields: Vec::new(),
                origin: InputOrigin::Filter(i),
            },
        });
        let sort = TypeRef::Named(b.t.id(SORT_DIRECTION));
        let names = column_names(r.columns.iter().map(|c| c.name.as_str()));
        let order_fields = r
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.ty.sortable)
            .map(|(ci, _)| InputValue {
                column: Some(ci),
                ..meta::input(&names[ci], sort.clone(), None)
            })
            .collect();
        let order_id = b.t.add(TypeDef {
            name: order_name,
            description: Some(format!("A sort key on `{}`.", r.name)),
            kind: Kind::Input {
                fields: order_fields,
                origin: InputOrigin::OrderBy(i),
            },
        });
        let mut filter_fields: Vec<InputValue> = r
            .columns
            .iter()
            .enumerate()
            .filter_map(|(ci, c)| {
                let ft = b.filter_type(&c.ty)?;
                Some(InputValue {
                    column: Some(ci),
                    ..meta::input(&names[ci], TypeRef::Named(ft), None)
                })
            })
            .collect();
        let own = TypeRef::Named(filter_id);
        let mut taken = Namespace::default();
        for f in &filter_fields {
            taken.claim(f.name.clone());
        }
        // Combinators keep their names; a column called `and`, `or` or `not` yields.
        for f in &mut filter_fields {
            if matches!(f.name.as_str(), "and" | "or" | "not") {
                f.name = taken.claim(format!("{}Column", f.name));
            }
        }
        filter_fields.push(meta::input(
            "and",
            own.clone().non_null().list(),
            Some("All of these hold."),
        ));
        filter_fields.push(meta::input(
            "or",
            own.clone().non_null().list(),
            Some("At least one of these holds."),
        ));
        filter_fields.push(meta::input("not", own, Some("This does not hold.")));
        b.inputs.push((filter_id, order_id));
        b.t.types[filter_id].kind = Kind::Input {
            fields: filter_fields,
            origin: InputOrigin::Filter(i),
        };
    }
    for (i, c) in catalog.composites.iter().enumerate() {
        let names = column_names(c.attributes.iter().map(|a| a.name.as_str()));
        let fields = c
            .attributes
            .iter()
            .zip(names)
            .enumerate()
            .map(|(ai, (a, name))| Field {
                name,
                description: None,
                args: Vec::new(),
                ty: b.column_type(&a.ty),
                source: Source::Column(ai),
            })
            .collect();
        let id = b.composites[&c.name];
        b.t.types[id].kind = Kind::Object {
            fields,
            origin: ObjectOrigin::Composite(i),
        };
    }
    // Aggregates before fields: relation fields have them beside their lists.
    for (i, r) in catalog.relations.iter().enumerate() {
        let aggregate = (!r.single_row).then(|| b.aggregate_object(i));
        b.aggregates.push(aggregate);
    }
    let mut roots = Namespace::default();
    let mut root_fields = Vec::new();
    for (i, r) in catalog.relations.iter().enumerate() {
        let plain = lower_camel(&r.name.name);
        let name = if roots.is_taken(&plain) {
            roots.claim(lower_camel(&format!("{}_{}", r.name.schema, r.name.name)))
        } else {
            roots.claim(plain)
        };
        // A single-row relation is one object, null when it has no row; no arguments,
        // as there is nothing to filter, order or page.
        let (args, ty) = if r.single_row {
            (Vec::new(), TypeRef::Named(b.objects[i]))
        } else {
            (b.list_args(i), b.rows_type(i))
        };
        root_fields.push(Field {
            name,
            description: r.comment.clone(),
            args,
            ty,
            source: Source::Root(i),
        });
        let fields = b.relation_fields(i);
        b.t.types[b.objects[i]].kind = Kind::Object {
            fields,
            origin: ObjectOrigin::Relation(i),
        };
    }
    relation_filters(&mut b);
    // Root aggregates after every relation's own root field, so that adding them renamed
    // none: `ordersAggregate` beside `orders`.
    for (i, aggregate) in b.aggregates.clone().into_iter().enumerate() {
        let Some(aggregate) = aggregate else {
            continue;
        };
        let rows = &root_fields[i];
        let description = format!(
            "Aggregates over the rows of `{}`.",
            catalog.relations[i].name
        );
        let name = roots.claim(format!("{}Aggregate", rows.name));
        root_fields.push(Field {
            name,
            description: Some(description),
            args: b.aggregate_args(i),
            ty: TypeRef::Named(aggregate).non_null(),
            source: Source::RootAggregate(i),
        });
    }
    // Functions last: adding one renames no relation's or aggregate's field.
    for fi in 0..catalog.functions.len() {
        if let Some(field) = function_root(&b, fi, &mut roots) {
            root_fields.push(field);
        }
    }
    b.t.types[query].kind = Kind::Object {
        fields: root_fields.clone(),
        origin: ObjectOrigin::Query,
    };
    b.t.types[subscription].kind = Kind::Object {
        fields: root_fields,
        origin: ObjectOrigin::Subscription,
    };
    let mutation = mutations(&mut b);
    let TypeTable { types, by_name } = b.t;
    Schema {
        catalog,
        types,
        by_name,
        query,
        subscription,
        mutation,
        directives,
    }
}
