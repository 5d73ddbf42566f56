//! Whether a change provably cannot alter a live query's result, so its refresh is skipped.
//!
//! Only one case is decided: the changed table is read by the query only as a root field's
//! own rows (never through a nested relation or a view), and every such root field's filter
//! rejects every row the change carries, the old one and the new one. Rows outside a root
//! field's filter are not part of its result, whatever its order and limit, so such a change
//! leaves the result as it was. Anything less certain refreshes: an UPDATE without its old
//! row (the docs page's trigger does not send it), rows cut down to their key, TRUNCATE,
//! and any filter the evaluator cannot decide (`sql::eval`).

use crate::catalog::{Catalog, QualifiedName, Relation};
use crate::change::Change;
use crate::engine::Prepared;
use crate::sql::Filter;
use crate::sql::eval::Required;

/// A root field over a base table, with its filter.
#[derive(Debug, Clone, PartialEq)]
struct RootFilter {
    table: QualifiedName,
    /// The table's columns and types, which the filter is evaluated against.
    relation: Relation,
    filter: Filter,
}

/// What a live query reads, as far as skipping is concerned. The default skips nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SkipRule {
    roots: Vec<RootFilter>,
    /// Tables read through a nested relation or a view: never skipped.
    nested: Vec<QualifiedName>,
}

impl SkipRule {
    /// The rule for a prepared operation over `catalog`.
    pub fn new(prepared: &Prepared, catalog: &Catalog) -> SkipRule {
        let mut nested: Vec<QualifiedName> = prepared.nested_tables.iter().cloned().collect();
        let mut roots = Vec::new();
        for root in &prepared.roots {
            match catalog.relation(&root.relation) {
                // A root over a view reads its base tables, already in `nested`.
                Some(rel) if rel.base_tables() == [rel.name.clone()] => roots.push(RootFilter {
                    table: rel.name.clone(),
                    relation: rel.clone(),
                    filter: root.filter.clone(),
                }),
                Some(_) => {}
                // Cannot happen for a compiled operation; if it did, never skip the table.
                None => nested.push(root.relation.clone()),
            }
        }
        SkipRule { roots, nested }
    }

    /// For a table the live query reads only as root fields' own rows, one condition per
    /// such root that every row it selects meets (`Filter::required`). A change whose rows
    /// all fail every one of them is one `unaffected_by` accepts, so the live query can be
    /// filed under these values (`Routes`) and left out of other changes to the table.
    /// `None` when the table is read otherwise, or some root's filter has no such
    /// condition.
    pub fn required(&self, table: &QualifiedName) -> Option<Vec<Required>> {
        if self.nested.contains(table) || self.reads_any_table() {
            return None;
        }
        let mut out = Vec::new();
        for root in self.roots.iter().filter(|r| r.table == *table) {
            out.push(root.filter.required(&root.relation)?);
        }
        (!out.is_empty()).then_some(out)
    }

    /// A function whose reads cannot be known (a computed field, a view or policy calling
    /// one) may read any table, the roots' own included, other rows of which may change
    /// what it returns for the rows a root filter selects: nothing can be skipped.
    fn reads_any_table(&self) -> bool {
        self.nested.iter().any(|t| *t == QualifiedName::any_table())
    }

    /// True when `change` provably leaves the result unchanged.
    pub fn unaffected_by(&self, change: &Change) -> bool {
        let Some(rows) = change.rows() else {
            return false;
        };
        // The docs page's trigger does not name the schema: any schema's table may be meant.
        let named = |t: &QualifiedName| {
            t.name == change.table && change.schema.as_deref().is_none_or(|s| s == t.schema)
        };
        if self.reads_any_table() || self.nested.iter().any(named) {
            return false;
        }
        let mut read = false;
        for root in self.roots.iter().filter(|r| named(&r.table)) {
            read = true;
            if rows
                .iter()
                .any(|row| root.filter.matches(&root.relation, row) != Some(false))
            {
                return false;
            }
        }
        read
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::decode;
    use crate::config::Config;
    use crate::engine::Engine;

    fn rule(query: &str) -> SkipRule {
        let catalog =
            Catalog::from_json(include_str!("../../tests/fixtures/demo-catalog.json")).unwrap();
        let engine = Engine::new(catalog, &Config::from_lookup(|_| None).unwrap());
        let prepared = engine.prepare(query, None, None).unwrap();
        SkipRule::new(&prepared, &engine.schema().catalog)
    }

    fn skips(rule: &SkipRule, payload: &str) -> bool {
        rule.unaffected_by(&decode(&mut payload.as_bytes().to_vec()).unwrap())
    }

    const PENDING: &str =
        r#"subscription { orders(filter: { status: { eq: "pending" } }) { id } }"#;

    #[test]
    fn a_change_outside_the_root_filter_is_skipped_only_with_every_row_known() {
        let r = rule(PENDING);
        let paid = r#"{"id":9,"status":"paid"}"#;
        let pending = r#"{"id":9,"status":"pending"}"#;
        let insert =
            |row: &str| format!(r#"{{"table":"orders","operation":"INSERT","data":{row}}}"#);
        assert!(skips(&r, &insert(paid)));
        assert!(!skips(&r, &insert(pending)));
        let delete = format!(r#"{{"table":"orders","operation":"DELETE","data":{paid}}}"#);
        assert!(
            skips(&r, &delete),
            "the docs trigger's DELETE carries the old row"
        );
        let update = format!(r#"{{"table":"orders","operation":"UPDATE","data":{paid}}}"#);
        assert!(!skips(&r, &update), "an UPDATE without its old row");
        let update = |old: &str| {
            format!(
                r#"{{"schema":"public","table":"orders","operation":"UPDATE","data":{paid},"old":{old}}}"#
            )
        };
        assert!(skips(&r, &update(paid)));
        assert!(!skips(&r, &update(pending)), "the row leaves the result");
        let cut = r#"{"schema":"public","table":"orders","operation":"DELETE","data":{"id":9},"truncated":true}"#;
        assert!(!skips(&r, cut));
        let truncate = r#"{"schema":"public","table":"orders","operation":"TRUNCATE"}"#;
        assert!(!skips(&r, truncate));
        let other_schema = r#"{"schema":"sales","table":"orders","operation":"INSERT","data":{"id":9,"status":"paid"}}"#;
        assert!(!skips(&r, other_schema), "a table the query does not read");
    }

    #[test]
    fn undecidable_filters_nested_reads_and_views_never_skip() {
        let numeric = rule(r#"subscription { orders(filter: { total: { gt: "50" } }) { id } }"#);
        let row = r#"{"table":"orders","operation":"INSERT","data":{"id":9,"total":1.00}}"#;
        assert!(!skips(&numeric, row), "numeric comparisons are not decided");
        let nested = rule(
            r#"subscription { customers(filter: { vip: { eq: true } }) { orders(filter: { status: { eq: "pending" } }) { id } } }"#,
        );
        let paid = r#"{"table":"orders","operation":"INSERT","data":{"id":9,"status":"paid"}}"#;
        assert!(!skips(&nested, paid));
        let plain = r#"{"table":"customers","operation":"INSERT","data":{"id":9,"vip":false}}"#;
        assert!(skips(&nested, plain), "the root table itself still skips");
        let to_one = rule(
            r#"subscription { orders(filter: { status: { eq: "pending" } }) { customer { name } } }"#,
        );
        let customer = r#"{"table":"customers","operation":"INSERT","data":{"id":9,"vip":false}}"#;
        assert!(!skips(&to_one, customer));
        let view = rule("subscription { salesDashboard { orderCount } }");
        assert!(!skips(&view, paid), "a table read through a view");
    }
}
