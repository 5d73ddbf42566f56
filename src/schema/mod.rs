//! The GraphQL schema: a type system generated from the [`Catalog`], plus the built-in
//! scalars, directives and introspection types. Validation, introspection and the SQL
//! compiler all read this one model.
//!
//! - [`naming`]: identifiers to GraphQL names, collisions.
//! - [`build`]: generation from the catalog.
//! - [`meta`]: what every schema has (scalars, `@skip`/`@include`, `__Schema` and friends).

pub mod build;
pub mod meta;
pub mod naming;

use std::collections::HashMap;

use crate::catalog::Catalog;

pub type TypeId = usize;

/// A type as written in a field or argument: `[Orders!]!`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeRef {
    Named(TypeId),
    List(Box<TypeRef>),
    NonNull(Box<TypeRef>),
}

impl TypeRef {
    pub fn non_null(self) -> TypeRef {
        TypeRef::NonNull(Box::new(self))
    }

    pub fn list(self) -> TypeRef {
        TypeRef::List(Box::new(self))
    }

    /// The named type under all wrappers.
    pub fn named(&self) -> TypeId {
        match self {
            TypeRef::Named(id) => *id,
            TypeRef::List(t) | TypeRef::NonNull(t) => t.named(),
        }
    }
}

/// The built-in and custom scalars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    Int,
    Float,
    String,
    Boolean,
    Id,
    BigInt,
    BigFloat,
    Datetime,
    Date,
    Uuid,
    Json,
}

/// Where an object type's data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectOrigin {
    Query,
    Subscription,
    Mutation,
    /// Index into `catalog.relations`.
    Relation(usize),
    /// Index into `catalog.composites`.
    Composite(usize),
    /// `<Relation>Aggregate`, or one of its per-function objects (`<Relation>Sum`, …), over
    /// `catalog.relations[_]`.
    Aggregate(usize),
    /// An introspection type, answered in Rust.
    Meta,
}

/// What an input object type stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputOrigin {
    /// `<Relation>Filter`: one field per filterable column, plus `and`, `or`, `not`.
    Filter(usize),
    /// `<Relation>OrderBy`: one field per sortable column.
    OrderBy(usize),
    /// `<Scalar>Filter`: the comparison operators.
    Operators,
    /// `<Scalar>ListFilter`: the operators on an array column's elements.
    ListOperators,
    /// `JSONPathFilter`: a path in a JSON document and the value there.
    JsonPath,
    /// `<Relation>InsertInput`: one field per insertable column.
    Insert(usize),
    /// `<Relation>SetInput`: one field per updatable column.
    Set(usize),
    /// `<Relation>OnConflict`: a unique constraint and the columns to update.
    OnConflict(usize),
    /// `<Relation>RelationFilter`: `some`, `every`, `none` of the rows of relation `_`
    /// linked to a row.
    RelationFilter(usize),
}

#[derive(Debug, Clone)]
pub enum Kind {
    Scalar(Scalar),
    Object {
        fields: Vec<Field>,
        origin: ObjectOrigin,
    },
    Enum {
        values: Vec<EnumValue>,
        /// Index into `catalog.enums`, when the enum mirrors a PostgreSQL one.
        pg: Option<usize>,
    },
    Input {
        fields: Vec<InputValue>,
        origin: InputOrigin,
    },
}

#[derive(Debug, Clone)]
pub struct TypeDef {
    pub name: String,
    pub description: Option<String>,
    pub kind: Kind,
}

/// What a field reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A root field: all rows of `catalog.relations[_]`.
    Root(usize),
    /// Column `_` of the parent relation, or attribute `_` of the parent composite.
    Column(usize),
    /// Many-to-one: foreign key `fk` of the parent relation.
    ToOne {
        fk: usize,
    },
    /// One-to-many: the rows of relation `rel` whose foreign key `fk` points at the parent.
    ToMany {
        rel: usize,
        fk: usize,
    },
    /// A field of an introspection type.
    Meta,
    /// A mutation of `catalog.relations[_]`: insert rows, update or delete matching rows.
    Insert(usize),
    Update(usize),
    Delete(usize),
    /// A root aggregate over the rows of `catalog.relations[_]`.
    RootAggregate(usize),
    /// A root field of the rows `catalog.functions[_]` returns; its first arguments are
    /// the function's, in order.
    RootFunction(usize),
    /// An aggregate over the rows of relation `rel` whose foreign key `fk` points at the
    /// parent.
    ToManyAggregate {
        rel: usize,
        fk: usize,
    },
    /// `count` of an aggregate: the number of rows.
    Count,
    /// Computed field `_` of the parent relation (`catalog.relations[_].computed`).
    Computed(usize),
    /// `sum`, `avg`, `min` or `max` of an aggregate: an object of one field per column.
    Aggregate(AggregateFn),
}

/// The aggregate functions an aggregate offers per column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateFn {
    Sum,
    Avg,
    Min,
    Max,
}

impl AggregateFn {
    pub const ALL: [AggregateFn; 4] = [
        AggregateFn::Sum,
        AggregateFn::Avg,
        AggregateFn::Min,
        AggregateFn::Max,
    ];

    /// The field's name, and PostgreSQL's function.
    pub fn name(self) -> &'static str {
        match self {
            AggregateFn::Sum => "sum",
            AggregateFn::Avg => "avg",
            AggregateFn::Min => "min",
            AggregateFn::Max => "max",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub description: Option<String>,
    pub args: Vec<InputValue>,
    pub ty: TypeRef,
    pub source: Source,
}

#[derive(Debug, Clone)]
pub struct InputValue {
    pub name: String,
    pub description: Option<String>,
    pub ty: TypeRef,
    /// The default as a GraphQL literal, shown by introspection.
    pub default: Option<&'static str>,
    /// A filter, order-by, insert or set field's column index in its relation.
    pub column: Option<usize>,
    /// A filter field on a relation: [`Source::ToOne`] (the row pointed at matches) or
    /// [`Source::ToMany`] (`some`, `every` or `none` of the rows pointing here match).
    pub relation: Option<Source>,
}

#[derive(Debug, Clone)]
pub struct EnumValue {
    pub name: String,
    pub description: Option<String>,
    /// The PostgreSQL label (for enums mirroring a PostgreSQL enum) or the name itself.
    pub value: String,
}

#[derive(Debug, Clone)]
pub struct Directive {
    pub name: &'static str,
    pub description: &'static str,
    pub locations: &'static [&'static str],
    pub args: Vec<InputValue>,
}

/// A generated schema. Immutable once built; shared by every request.
#[derive(Debug, Clone)]
pub struct Schema {
    pub catalog: Catalog,
    pub types: Vec<TypeDef>,
    by_name: HashMap<String, TypeId>,
    pub query: TypeId,
    pub subscription: TypeId,
    /// `Mutation`, when some relation may be written.
    pub mutation: Option<TypeId>,
    pub directives: Vec<Directive>,
}

impl Schema {
    pub fn type_id(&self, name: &str) -> Option<TypeId> {
        self.by_name.get(name).copied()
    }

    pub fn ty(&self, id: TypeId) -> &TypeDef {
        &self.types[id]
    }

    pub fn name(&self, id: TypeId) -> &str {
        &self.types[id].name
    }

    /// The fields of an object type (empty for other kinds).
    pub fn fields(&self, id: TypeId) -> &[Field] {
        match &self.types[id].kind {
            Kind::Object { fields, .. } => fields,
            _ => &[],
        }
    }

    pub fn field(&self, id: TypeId, name: &str) -> Option<(usize, &Field)> {
        self.fields(id)
            .iter()
            .enumerate()
            .find(|(_, f)| f.name == name)
    }

    pub fn directive(&self, name: &str) -> Option<&Directive> {
        self.directives.iter().find(|d| d.name == name)
    }

    /// `[Orders!]!` as written in GraphQL.
    pub fn display(&self, t: &TypeRef) -> String {
        match t {
            TypeRef::Named(id) => self.name(*id).to_owned(),
            TypeRef::List(inner) => format!("[{}]", self.display(inner)),
            TypeRef::NonNull(inner) => format!("{}!", self.display(inner)),
        }
    }

    pub fn is_input_type(&self, id: TypeId) -> bool {
        matches!(
            self.types[id].kind,
            Kind::Scalar(_) | Kind::Enum { .. } | Kind::Input { .. }
        )
    }

    pub fn is_leaf(&self, id: TypeId) -> bool {
        matches!(self.types[id].kind, Kind::Scalar(_) | Kind::Enum { .. })
    }
}

/// Registers types by unique name while the schema is built.
#[derive(Debug, Default)]
pub(crate) struct TypeTable {
    pub types: Vec<TypeDef>,
    pub by_name: HashMap<String, TypeId>,
}

impl TypeTable {
    pub fn add(&mut self, def: TypeDef) -> TypeId {
        let id = self.types.len();
        let previous = self.by_name.insert(def.name.clone(), id);
        debug_assert!(previous.is_none(), "type {} added twice", def.name);
        self.types.push(def);
        id
    }

    pub fn id(&self, name: &str) -> TypeId {
        self.by_name[name]
    }
}

#[cfg(test)]
mod tests;
