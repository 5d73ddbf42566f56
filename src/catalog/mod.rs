//! The PostgreSQL catalog of the exposed schemas: what the GraphQL schema is generated from.
//!
//! [`INTROSPECTION_SQL`] is one statement (parameter `$1`: the schema names as `text[]`) whose
//! single row holds a JSON document; [`Catalog::from_json`] reads it. Only relations and
//! columns that the connecting role may `SELECT` appear, so the schema never offers what the
//! database would refuse. [`Catalog::report`] (in `report`) says in words what is served and
//! what would quietly go wrong.

mod report;

pub use report::Report;

use std::fmt;

use simd_json::OwnedValue;
use simd_json::prelude::*;

/// The catalog query. `$1`: the exposed schemas, `text[]`; result: one row, one text column.
pub const INTROSPECTION_SQL: &str = include_str!("introspection.sql");

/// A schema-qualified name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QualifiedName {
    pub schema: String,
    pub name: String,
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    Table,
    View,
    MaterializedView,
    ForeignTable,
}

/// What kind of type a column holds (PostgreSQL's `typtype`, domains already resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeKind {
    Base,
    Enum,
    Composite,
    Other,
}

/// A column or attribute type: arrays are described by their element type plus `array`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgType {
    pub schema: String,
    pub name: String,
    pub kind: TypeKind,
    pub array: bool,
    /// Has a default btree operator class, so `ORDER BY` accepts it.
    pub sortable: bool,
}

impl PgType {
    pub fn qualified(&self) -> QualifiedName {
        QualifiedName {
            schema: self.schema.clone(),
            name: self.name.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: PgType,
    pub not_null: bool,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    /// The constraint name.
    pub name: String,
    pub columns: Vec<String>,
    pub references: QualifiedName,
    pub ref_columns: Vec<String>,
}

/// A table, view, materialized view or foreign table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub name: QualifiedName,
    pub kind: RelationKind,
    pub comment: Option<String>,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    pub foreign_keys: Vec<ForeignKey>,
    /// For a view: the tables and materialized views it reads, through views on views.
    pub reads: Vec<QualifiedName>,
    /// For a table: an enabled trigger notifies its changes. Always true for a view (its
    /// tables' triggers count).
    pub notifies: bool,
    /// A view run with its owner's rights over a table with row-level security.
    pub bypasses_row_security: bool,
}

impl Relation {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The tables whose changes can change this relation's rows.
    pub fn base_tables(&self) -> Vec<QualifiedName> {
        match self.kind {
            RelationKind::View => self.reads.clone(),
            _ => vec![self.name.clone()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub ty: PgType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composite {
    pub name: QualifiedName,
    pub comment: Option<String>,
    pub attributes: Vec<Attribute>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enum {
    pub name: QualifiedName,
    pub comment: Option<String>,
    pub values: Vec<String>,
}

/// Everything the schema generator needs, in a deterministic order (schemas in the order
/// configured, then by name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    pub relations: Vec<Relation>,
    pub composites: Vec<Composite>,
    pub enums: Vec<Enum>,
}

/// The catalog document does not have the shape [`INTROSPECTION_SQL`] produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogError(pub String);

impl CatalogError {
    pub const CODE: &'static str = "PR-CATALOG";
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: malformed catalog: {}", Self::CODE, self.0)
    }
}

impl std::error::Error for CatalogError {}

type Result<T> = std::result::Result<T, CatalogError>;

fn bad(what: &str) -> CatalogError {
    CatalogError(what.to_owned())
}

fn string(v: &OwnedValue, key: &str) -> Result<String> {
    v.get_str(key)
        .map(str::to_owned)
        .ok_or_else(|| bad(&format!("`{key}` is not a string")))
}

fn opt_string(v: &OwnedValue, key: &str) -> Option<String> {
    v.get_str(key).map(str::to_owned)
}

fn list<'a>(v: &'a OwnedValue, key: &str) -> Result<&'a Vec<OwnedValue>> {
    v.get_array(key)
        .ok_or_else(|| bad(&format!("`{key}` is not an array")))
}

fn strings(v: &OwnedValue, key: &str) -> Result<Vec<String>> {
    list(v, key)?
        .iter()
        .map(|s| s.as_str().map(str::to_owned).ok_or_else(|| bad(key)))
        .collect()
}

fn qualified(v: &OwnedValue) -> Result<QualifiedName> {
    Ok(QualifiedName {
        schema: string(v, "schema")?,
        name: string(v, "name")?,
    })
}

fn pg_type(v: &OwnedValue) -> Result<PgType> {
    let t = v.get("type").ok_or_else(|| bad("`type` missing"))?;
    Ok(PgType {
        schema: string(t, "schema")?,
        name: string(t, "name")?,
        kind: match t.get_str("kind") {
            Some("b") => TypeKind::Base,
            Some("e") => TypeKind::Enum,
            Some("c") => TypeKind::Composite,
            _ => TypeKind::Other,
        },
        array: t.get_bool("array").unwrap_or(false),
        sortable: t.get_bool("sortable").unwrap_or(false),
    })
}

impl Catalog {
    /// Reads the document that [`INTROSPECTION_SQL`] returns.
    pub fn from_json(text: &str) -> Result<Catalog> {
        let mut bytes = text.as_bytes().to_vec();
        let doc = simd_json::to_owned_value(&mut bytes).map_err(|e| bad(&e.to_string()))?;
        let relations = list(&doc, "relations")?
            .iter()
            .map(relation)
            .collect::<Result<_>>()?;
        let composites = list(&doc, "composites")?
            .iter()
            .map(|c| {
                Ok(Composite {
                    name: qualified(c)?,
                    comment: opt_string(c, "comment"),
                    attributes: list(c, "attributes")?
                        .iter()
                        .map(|a| {
                            Ok(Attribute {
                                name: string(a, "name")?,
                                ty: pg_type(a)?,
                            })
                        })
                        .collect::<Result<_>>()?,
                })
            })
            .collect::<Result<_>>()?;
        let enums = list(&doc, "enums")?
            .iter()
            .map(|e| {
                Ok(Enum {
                    name: qualified(e)?,
                    comment: opt_string(e, "comment"),
                    values: strings(e, "values")?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Catalog {
            relations,
            composites,
            enums,
        })
    }

    pub fn relation(&self, name: &QualifiedName) -> Option<&Relation> {
        self.relations.iter().find(|r| &r.name == name)
    }
}

fn relation(r: &OwnedValue) -> Result<Relation> {
    Ok(Relation {
        name: qualified(r)?,
        kind: match r.get_str("kind") {
            Some("r" | "p") => RelationKind::Table,
            Some("v") => RelationKind::View,
            Some("m") => RelationKind::MaterializedView,
            Some("f") => RelationKind::ForeignTable,
            _ => return Err(bad("relation `kind`")),
        },
        comment: opt_string(r, "comment"),
        columns: list(r, "columns")?
            .iter()
            .map(|c| {
                Ok(Column {
                    name: string(c, "name")?,
                    ty: pg_type(c)?,
                    not_null: c.get_bool("notNull").unwrap_or(false),
                    comment: opt_string(c, "comment"),
                })
            })
            .collect::<Result<_>>()?,
        primary_key: strings(r, "primaryKey")?,
        foreign_keys: list(r, "foreignKeys")?
            .iter()
            .map(|f| {
                Ok(ForeignKey {
                    name: string(f, "name")?,
                    columns: strings(f, "columns")?,
                    references: QualifiedName {
                        schema: string(f, "refSchema")?,
                        name: string(f, "refTable")?,
                    },
                    ref_columns: strings(f, "refColumns")?,
                })
            })
            .collect::<Result<_>>()?,
        reads: list(r, "reads")?
            .iter()
            .map(qualified)
            .collect::<Result<_>>()?,
        // Catalogs written before these were read assume the best.
        notifies: r.get_bool("notifies").unwrap_or(true),
        bypasses_row_security: r.get_bool("bypassesRowSecurity").unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_document_shape() {
        let text = r#"{"relations":[{"schema":"public","name":"v","kind":"v","comment":"c",
            "columns":[{"name":"xs","type":{"schema":"public","name":"product_sales","kind":"c",
            "array":true,"sortable":false},"notNull":false,"comment":null}],
            "primaryKey":[],"foreignKeys":[],"reads":[{"schema":"public","name":"t"}]}],
            "composites":[],"enums":[{"schema":"public","name":"e","comment":null,
            "values":["a","b"]}]}"#;
        let c = Catalog::from_json(text).unwrap();
        let v = &c.relations[0];
        assert_eq!(v.kind, RelationKind::View);
        assert_eq!(v.comment.as_deref(), Some("c"));
        assert!(v.columns[0].ty.array);
        assert_eq!(v.columns[0].ty.kind, TypeKind::Composite);
        assert_eq!(v.base_tables()[0].to_string(), "public.t");
        assert_eq!(c.enums[0].values, ["a", "b"]);
    }

    #[test]
    fn rejects_a_malformed_document() {
        let err = Catalog::from_json(r#"{"relations":{}}"#).unwrap_err();
        assert!(err.to_string().contains("relations"), "{err}");
        assert!(Catalog::from_json("not json").is_err());
    }
}
