//! The PostgreSQL catalog of the exposed schemas: what the GraphQL schema is generated from.
//!
//! [`INTROSPECTION_SQL`] is one statement (parameter `$1`: the schema names as `text[]`) whose
//! single row holds a JSON document; [`Catalog::from_json`] reads it. Only relations and
//! columns that the connecting role may `SELECT` appear, so the schema never offers what the
//! database would refuse. [`Catalog::report`] (in `report`) says in words what is served and
//! what would quietly go wrong.

mod report;

pub use report::Report;

use std::collections::BTreeSet;
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
    /// Equal values are equal bytes: its collation (if any) is deterministic.
    pub deterministic: bool,
    /// An INSERT may leave it out: it has a default or is an identity.
    pub has_default: bool,
    /// Some client role may give it a value in an INSERT, or change it in an UPDATE
    /// (never for generated columns, `GENERATED ALWAYS` identities, or view columns
    /// PostgreSQL cannot write through).
    pub insertable: bool,
    pub updatable: bool,
}

/// What some client role may do to a relation's rows, where PostgreSQL can.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Writes {
    pub insert: bool,
    pub update: bool,
    pub delete: bool,
}

impl Writes {
    pub fn any(self) -> bool {
        self.insert || self.update || self.delete
    }
}

/// A primary key or unique constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueKey {
    pub name: String,
    pub columns: Vec<String>,
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
    /// Primary key and unique constraints, by name.
    pub unique_keys: Vec<UniqueKey>,
    pub foreign_keys: Vec<ForeignKey>,
    pub writes: Writes,
    /// For a view: the tables and materialized views it reads, through views on views.
    pub reads: Vec<QualifiedName>,
    /// Tables its rows depend on beyond its own (and a view's `reads`): those the
    /// row-level security policies of everything it reads read, transitively.
    pub depends_on: Vec<QualifiedName>,
    /// A view rule or policy of what it reads calls a function of the database's own
    /// schemas: what that reads cannot be known, so any change may alter its rows.
    pub opaque: bool,
    /// For a table: an enabled trigger notifies its changes. Always true for a view (its
    /// tables' triggers count).
    pub notifies: bool,
    /// A view run with its owner's rights over a table with row-level security.
    pub bypasses_row_security: bool,
    /// Served as one object instead of a list: its comment has the line
    /// `@postrust single-row` (see [`split_directives`]).
    pub single_row: bool,
    /// Functions taking one row of this relation and returning one value: its computed
    /// fields.
    pub computed: Vec<Computed>,
}

/// A computed field: a STABLE or IMMUTABLE function of one row of its relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Computed {
    pub function: QualifiedName,
    pub ty: PgType,
    pub comment: Option<String>,
}

impl QualifiedName {
    /// Stands for every table in a live query's tables: no PostgreSQL name holds a NUL.
    pub fn any_table() -> QualifiedName {
        QualifiedName {
            schema: "\0".into(),
            name: ANY_TABLE.into(),
        }
    }
}

/// The table name of [`QualifiedName::any_table`].
pub const ANY_TABLE: &str = "\0any";

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

/// A function returning a set of rows of a served relation: a root field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub name: QualifiedName,
    pub comment: Option<String>,
    /// The relation whose rows it returns.
    pub returns: QualifiedName,
    /// Its input arguments, in order.
    pub args: Vec<FunctionArg>,
}

/// An input argument of a [`Function`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionArg {
    pub name: String,
    /// The type as the schema sees it (a domain resolved to its base type).
    pub ty: PgType,
    /// The declared type as PostgreSQL writes it, quoted and qualified as needed: what a
    /// value is cast to, so that the overload declared with it runs.
    pub cast: String,
}

/// Everything the schema generator needs, in a deterministic order (schemas in the order
/// configured, then by name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    pub relations: Vec<Relation>,
    pub composites: Vec<Composite>,
    pub enums: Vec<Enum>,
    /// Set-returning functions over served relations, served as root fields.
    pub functions: Vec<Function>,
    /// When changes come from logical replication: the publication they are read from, set
    /// by [`Catalog::follow_publication`]. A relation's `notifies` then says whether its
    /// changes are in it.
    pub publication: Option<String>,
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
        // Catalogs written before functions were read have none.
        let functions = match doc.get("functions") {
            None => Vec::new(),
            Some(_) => list(&doc, "functions")?
                .iter()
                .map(|f| {
                    let returns = f.get("returns").ok_or_else(|| bad("`returns` missing"))?;
                    Ok(Function {
                        name: qualified(f)?,
                        comment: opt_string(f, "comment"),
                        returns: qualified(returns)?,
                        args: list(f, "args")?
                            .iter()
                            .map(|a| {
                                Ok(FunctionArg {
                                    name: string(a, "name")?,
                                    ty: pg_type(a)?,
                                    cast: string(a, "cast")?,
                                })
                            })
                            .collect::<Result<_>>()?,
                    })
                })
                .collect::<Result<_>>()?,
        };
        Ok(Catalog {
            relations,
            composites,
            enums,
            functions,
            publication: None,
        })
    }

    /// Changes are heard from `publication`, which publishes the tables `published`: a
    /// table notifies when it is one of them. Views still notify through their tables, and
    /// materialized views never do.
    pub fn follow_publication(&mut self, publication: &str, published: &BTreeSet<QualifiedName>) {
        for r in &mut self.relations {
            if matches!(r.kind, RelationKind::Table | RelationKind::ForeignTable) {
                r.notifies = published.contains(&r.name);
            }
        }
        self.publication = Some(publication.to_owned());
    }

    pub fn relation(&self, name: &QualifiedName) -> Option<&Relation> {
        self.relations.iter().find(|r| &r.name == name)
    }

    /// The index of relation `name` in [`Catalog::relations`].
    pub fn relation_index(&self, name: &QualifiedName) -> Option<usize> {
        self.relations.iter().position(|r| &r.name == name)
    }
}

/// The directive line that serves a relation as one object.
pub const SINGLE_ROW_DIRECTIVE: &str = "@postrust single-row";

/// Splits a relation's comment into its description and its directives: lines that start
/// with `@postrust` are for the server, not for the GraphQL description. Returns the
/// description (None when nothing else is left) and whether `@postrust single-row` is
/// there; an unknown directive is logged and ignored, so a typo does not stop the server.
pub fn split_directives(name: &QualifiedName, comment: Option<String>) -> (Option<String>, bool) {
    let Some(comment) = comment else {
        return (None, false);
    };
    if !comment.contains("@postrust") {
        return (Some(comment), false);
    }
    let mut single_row = false;
    let mut description = Vec::new();
    for line in comment.lines() {
        match line.trim() {
            SINGLE_ROW_DIRECTIVE => single_row = true,
            other if other.starts_with("@postrust") => log::warn!(
                target: "postrust::catalog",
                "{name}: unknown directive {other:?} in its comment is ignored (known: \
                 {SINGLE_ROW_DIRECTIVE:?})"
            ),
            _ => description.push(line),
        }
    }
    let description = description.join("\n").trim().to_owned();
    ((!description.is_empty()).then_some(description), single_row)
}

fn relation(r: &OwnedValue) -> Result<Relation> {
    let name = qualified(r)?;
    let (comment, single_row) = split_directives(&name, opt_string(r, "comment"));
    Ok(Relation {
        name,
        kind: match r.get_str("kind") {
            Some("r" | "p") => RelationKind::Table,
            Some("v") => RelationKind::View,
            Some("m") => RelationKind::MaterializedView,
            Some("f") => RelationKind::ForeignTable,
            _ => return Err(bad("relation `kind`")),
        },
        comment,
        columns: list(r, "columns")?
            .iter()
            .map(|c| {
                Ok(Column {
                    name: string(c, "name")?,
                    ty: pg_type(c)?,
                    not_null: c.get_bool("notNull").unwrap_or(false),
                    comment: opt_string(c, "comment"),
                    // Catalogs written before collations were read claim nothing: the
                    // server then compares no text itself.
                    deterministic: c.get_bool("deterministic").unwrap_or(false),
                    // Catalogs written before mutations were read allow no writes.
                    has_default: c.get_bool("hasDefault").unwrap_or(false),
                    insertable: c.get_bool("insertable").unwrap_or(false),
                    updatable: c.get_bool("updatable").unwrap_or(false),
                })
            })
            .collect::<Result<_>>()?,
        primary_key: strings(r, "primaryKey")?,
        unique_keys: match r.get("uniqueKeys") {
            None => Vec::new(),
            Some(_) => list(r, "uniqueKeys")?
                .iter()
                .map(|k| {
                    Ok(UniqueKey {
                        name: string(k, "name")?,
                        columns: strings(k, "columns")?,
                    })
                })
                .collect::<Result<_>>()?,
        },
        writes: r.get("writes").map_or(Writes::default(), |w| Writes {
            insert: w.get_bool("insert").unwrap_or(false),
            update: w.get_bool("update").unwrap_or(false),
            delete: w.get_bool("delete").unwrap_or(false),
        }),
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
        depends_on: match r.get("dependsOn") {
            None => Vec::new(),
            Some(_) => list(r, "dependsOn")?
                .iter()
                .map(qualified)
                .collect::<Result<_>>()?,
        },
        // Catalogs written before it was read: nothing is known, so everything may matter.
        opaque: r.get_bool("opaque").unwrap_or(true),
        // Catalogs written before these were read assume the best.
        notifies: r.get_bool("notifies").unwrap_or(true),
        bypasses_row_security: r.get_bool("bypassesRowSecurity").unwrap_or(false),
        single_row,
        // Catalogs written before computed fields were read have none.
        computed: match r.get("computed") {
            None => Vec::new(),
            Some(_) => list(r, "computed")?
                .iter()
                .map(|f| {
                    Ok(Computed {
                        function: qualified(f)?,
                        ty: pg_type(f)?,
                        comment: opt_string(f, "comment"),
                    })
                })
                .collect::<Result<_>>()?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_leave_the_description() {
        let name = QualifiedName {
            schema: "public".into(),
            name: "v".into(),
        };
        let split = |c: &str| split_directives(&name, Some(c.to_owned()));
        assert_eq!(split("Totals."), (Some("Totals.".into()), false));
        assert_eq!(
            split("Totals.\n@postrust single-row"),
            (Some("Totals.".into()), true)
        );
        assert_eq!(split("  @postrust single-row  "), (None, true));
        assert_eq!(
            split("Line one.\n@postrust single-row\nLine two."),
            (Some("Line one.\nLine two.".into()), true)
        );
        assert_eq!(
            split("Totals.\n@postrust singlerow"),
            (Some("Totals.".into()), false),
            "an unknown directive is dropped, not served as description"
        );
        assert_eq!(
            split("Mentions @postrust single-row in prose."),
            (
                Some("Mentions @postrust single-row in prose.".into()),
                false
            ),
            "only a line of its own is a directive"
        );
        assert_eq!(split_directives(&name, None), (None, false));
    }

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
