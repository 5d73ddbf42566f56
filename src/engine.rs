//! The GraphQL engine's entry point for the server: pure, no I/O.
//!
//! [`Engine::new`] generates the schema from a catalog once; [`Engine::prepare`] takes a
//! request (query text, variables, operation name) through parse, validate and compile, and
//! returns a [`Prepared`] operation: SQL and text parameters to run (one row, one text
//! column: the response's `data`), or an immediate result for pure introspection, plus the
//! base tables the result depends on.
//!
//! How the server uses it:
//!
//! ```text
//! start-up / reload:
//!   text    = run catalog::INTROSPECTION_SQL with $1 = schemas_param(&config.db_schemas.0)
//!   engine  = Engine::new(Catalog::from_json(&text)?, &config)
//! per request:
//!   match engine.prepare(query, variables, operation_name) {
//!     Err(errors)   => {"errors": GraphQLError::list_json(&errors)}
//!     Ok(prepared)  => match prepared.plan {
//!       Plan::Immediate(data)      => {"data": data}
//!       Plan::Sql { sql, params }  => {"data": <the one text value sql returns>}
//!       Plan::Mutation(steps)      => {"data": {<key>: <each step's value>, …}}, the
//!                                     statements run in order in one transaction
//!     }
//!   }
//! ```
//!
//! The SQL text and parameters identify a live query completely (the schema is fixed), so
//! they can key the sharing of results between subscribers, together with role and claims.

use std::collections::BTreeSet;

use simd_json::OwnedValue;

use crate::catalog::{Catalog, QualifiedName};
use crate::config::Config;
use crate::graphql::json::quote;
use crate::graphql::{self, FieldRef, GraphQLError, OperationKind, Selected};
use crate::introspection;
use crate::schema::{Schema, build};
use crate::sql::{self, RootRead};

pub use crate::graphql::{ErrorCode, Location, PathSegment};

/// What running a prepared operation takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Run `sql` with `params` (all text); the single value returned is the `data` object.
    Sql { sql: String, params: Vec<String> },
    /// The `data` object, already known (an operation with only introspection fields).
    Immediate(String),
    /// A mutation: its root fields' statements, run in order in one transaction, each
    /// giving its field's value (see [`sql::mutation`]).
    Mutation(Vec<sql::mutation::Step>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub kind: OperationKind,
    pub operation_name: Option<String>,
    pub plan: Plan,
    /// Base tables read, schema-qualified, views resolved through `pg_depend`.
    pub tables: BTreeSet<QualifiedName>,
    /// The tables among `tables` read through a nested relation or a view: a change to one
    /// of them is never skipped on the strength of a root filter.
    pub nested_tables: BTreeSet<QualifiedName>,
    /// Each root field's relation and filter, for testing change events against it.
    pub roots: Vec<RootRead>,
}

#[derive(Debug, Clone)]
pub struct Engine {
    schema: Schema,
    limits: graphql::Limits,
    /// Tables whose changes notify nobody (no change trigger): a subscription reading one
    /// would never update, so it is refused. Empty with
    /// `POSTRUST_SUBSCRIBE_WITHOUT_TRIGGERS`.
    silent: BTreeSet<QualifiedName>,
    /// Why those tables notify nobody, and what to do about it, for the refusal's message.
    silent_why: (&'static str, &'static str),
}

/// The value of `$1` for [`crate::catalog::INTROSPECTION_SQL`]: a PostgreSQL array literal.
pub fn schemas_param(schemas: &[String]) -> String {
    let quoted: Vec<String> = schemas
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

impl Engine {
    pub fn new(catalog: Catalog, config: &Config) -> Engine {
        let silent = if config.subscribe_without_triggers {
            BTreeSet::new()
        } else {
            catalog
                .relations
                .iter()
                .filter(|r| !r.notifies)
                .map(|r| r.name.clone())
                .collect()
        };
        let silent_why = match &catalog.publication {
            Some(_) => (
                "the publication does not stream the changes",
                "Add the table with ALTER PUBLICATION",
            ),
            None => (
                "no change trigger notifies the changes",
                "Run `postrust triggers install`",
            ),
        };
        Engine {
            silent,
            silent_why,
            schema: build::build(catalog),
            limits: graphql::Limits {
                max_depth: config.max_query_depth.0,
                max_fields: config.max_query_fields.0,
                max_input_depth: config.max_input_depth.0,
                max_errors: config.max_errors.0,
            },
        }
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Parses, validates and compiles one request.
    pub fn prepare(
        &self,
        query: &str,
        variables: Option<&OwnedValue>,
        operation_name: Option<&str>,
    ) -> Result<Prepared, Vec<GraphQLError>> {
        let schema = &self.schema;
        let op = graphql::validate(schema, query, variables, operation_name, &self.limits)?;
        let introspect = |sel: &Selected| {
            let mut out = String::new();
            introspection::resolve(schema, sel, &mut out);
            out
        };
        let pure = op
            .selection
            .iter()
            .all(|s| !matches!(s.field, FieldRef::Field(_)));
        if pure {
            let mut data = String::from("{");
            for (i, s) in op.selection.iter().enumerate() {
                if i > 0 {
                    data.push(',');
                }
                quote(&s.key, &mut data);
                data.push(':');
                match s.field {
                    FieldRef::Typename => quote(schema.name(op.root), &mut data),
                    _ => data.push_str(&introspect(s)),
                }
            }
            data.push('}');
            return Ok(Prepared {
                kind: op.kind,
                operation_name: op.name,
                plan: Plan::Immediate(data),
                tables: BTreeSet::new(),
                nested_tables: BTreeSet::new(),
                roots: Vec::new(),
            });
        }
        if op.kind == OperationKind::Mutation {
            let steps = sql::mutation::compile(schema, &op, &introspect).map_err(|e| vec![e])?;
            return Ok(Prepared {
                kind: op.kind,
                operation_name: op.name,
                plan: Plan::Mutation(steps),
                tables: BTreeSet::new(),
                nested_tables: BTreeSet::new(),
                roots: Vec::new(),
            });
        }
        let statement = sql::compile(schema, &op, &introspect).map_err(|e| vec![e])?;
        if op.kind == OperationKind::Subscription {
            // Tables only the policies read are followed when they notify; a subscription is
            // not refused for them (the start-up report names the ones that do not).
            let silent: Vec<String> = statement
                .tables
                .difference(&statement.dependencies)
                .filter(|t| self.silent.contains(*t))
                .map(ToString::to_string)
                .collect();
            if !silent.is_empty() {
                return Err(vec![GraphQLError::new(
                    ErrorCode::NoChangeTrigger,
                    format!(
                        "This subscription would never update: {} of {}. {}, or send a query \
                         instead.",
                        self.silent_why.0,
                        silent.join(", "),
                        self.silent_why.1
                    ),
                    &[],
                )]);
            }
        }
        Ok(Prepared {
            kind: op.kind,
            operation_name: op.name,
            plan: Plan::Sql {
                sql: statement.sql,
                params: statement.params,
            },
            tables: statement.tables,
            nested_tables: statement.nested_tables,
            roots: statement.roots,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(vars: &[(&str, &str)]) -> Engine {
        let config = Config::from_lookup(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap();
        let catalog =
            Catalog::from_json(include_str!("../tests/fixtures/demo-catalog.json")).unwrap();
        Engine::new(catalog, &config)
    }

    #[test]
    fn settings_reach_the_engine() {
        let deep = "{ orders { customer { orders { id } } } }";
        assert!(engine(&[]).prepare(deep, None, None).is_ok());
        let errors = engine(&[("POSTRUST_MAX_QUERY_DEPTH", "2")])
            .prepare(deep, None, None)
            .unwrap_err();
        assert_eq!(errors[0].code, ErrorCode::TooDeep);
        let config = Config::from_lookup(|k| {
            (k == "POSTRUST_DB_SCHEMAS").then(|| " public , app ".to_owned())
        })
        .unwrap();
        assert_eq!(config.db_schemas.0, ["public", "app"]);
        assert_eq!(schemas_param(&config.db_schemas.0), r#"{"public","app"}"#);
        assert_eq!(schemas_param(&[r#"we"ird\"#.into()]), r#"{"we\"ird\\"}"#);
        let bad = Config::from_lookup(|k| (k == "POSTRUST_DB_SCHEMAS").then(|| "a,,b".into()));
        assert_eq!(bad.unwrap_err().var, "POSTRUST_DB_SCHEMAS");
    }

    #[test]
    fn pure_introspection_needs_no_sql() {
        let p = engine(&[])
            .prepare(
                "query Q { __typename s: __schema { queryType { name } subscriptionType { name } } }",
                None,
                Some("Q"),
            )
            .unwrap();
        assert_eq!(p.kind, OperationKind::Query);
        assert_eq!(
            p.plan,
            Plan::Immediate(
                r#"{"__typename":"Query","s":{"queryType":{"name":"Query"},"subscriptionType":{"name":"Subscription"}}}"#
                    .into()
            )
        );
        assert!(p.tables.is_empty());
    }
}
