//! What a loaded catalog serves, in words for the log: one summary line per schema, and a
//! warning for each thing that would quietly go wrong (an empty schema, a table whose
//! changes notify nobody, a view that hides row-level security from the client's role) or
//! cost more than it seems (a relation whose live queries refresh on every change).

use super::{Catalog, RelationKind};

/// The lines to log after loading the catalog of `schemas`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub summary: Vec<String>,
    pub warnings: Vec<String>,
}

impl Catalog {
    pub fn report(&self, schemas: &[String]) -> Report {
        let mut report = Report::default();
        for schema in schemas {
            let in_schema: Vec<_> = self
                .relations
                .iter()
                .filter(|r| &r.name.schema == schema)
                .collect();
            if in_schema.is_empty() {
                report.warnings.push(format!(
                    "schema \"{schema}\" serves nothing: it does not exist, holds no table or \
                     view, or no role the server may become can read one (POSTRUST_DB_SCHEMAS)"
                ));
                continue;
            }
            let names = |kind: RelationKind| -> Vec<&str> {
                in_schema
                    .iter()
                    .filter(|r| r.kind == kind)
                    .map(|r| r.name.name.as_str())
                    .collect()
            };
            let mut parts = Vec::new();
            for (kind, label) in [
                (RelationKind::Table, "tables"),
                (RelationKind::View, "views"),
                (RelationKind::MaterializedView, "materialized views"),
                (RelationKind::ForeignTable, "foreign tables"),
            ] {
                let list = names(kind);
                if !list.is_empty() {
                    parts.push(format!("{label} {}", list.join(", ")));
                }
            }
            report
                .summary
                .push(format!("serving schema \"{schema}\": {}", parts.join("; ")));
        }
        for r in &self.relations {
            if !r.notifies {
                let warning = match (&self.publication, r.kind) {
                    (_, RelationKind::MaterializedView) => format!(
                        "{} has no change trigger (a materialized view changes only when \
                         refreshed, which notifies nobody): subscriptions reading it are \
                         refused with NO_CHANGE_TRIGGER (unless \
                         POSTRUST_SUBSCRIBE_WITHOUT_TRIGGERS)",
                        r.name
                    ),
                    (Some(publication), _) => format!(
                        "{} is not in publication \"{publication}\" (or only with a row \
                         filter): its changes reach no subscriber, so subscriptions reading it \
                         are refused with NO_CHANGE_TRIGGER (unless \
                         POSTRUST_SUBSCRIBE_WITHOUT_TRIGGERS); add it with ALTER PUBLICATION",
                        r.name
                    ),
                    (None, _) => format!(
                        "{} has no change trigger (no enabled trigger of it notifies): its \
                         changes reach no subscriber, so subscriptions reading it are refused \
                         with NO_CHANGE_TRIGGER (unless POSTRUST_SUBSCRIBE_WITHOUT_TRIGGERS); \
                         run `postrust triggers install`",
                        r.name
                    ),
                };
                report.warnings.push(warning);
            }
            if r.opaque {
                report.warnings.push(format!(
                    "{} depends on a function of this database (called by a view or a row-level \
                     security policy it reads through): what the function reads cannot be known, \
                     so live queries reading {} refresh on every change of any table; use \
                     built-in functions in its views and policies to avoid that",
                    r.name, r.name
                ));
            }
            if r.bypasses_row_security {
                report.warnings.push(format!(
                    "view {} reads a table with row-level security with its owner's rights: the \
                     policies check the owner, not each client's role (not at all if the owner \
                     owns the table); make it ALTER VIEW … SET (security_invoker = true)",
                    r.name
                ));
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::QualifiedName;
    use std::collections::BTreeSet;

    fn demo() -> Catalog {
        Catalog::from_json(include_str!("../../tests/fixtures/demo-catalog.json")).unwrap()
    }

    #[test]
    fn a_healthy_catalog_gets_a_summary_and_no_warning() {
        let report = demo().report(&["public".to_owned()]);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert_eq!(report.summary.len(), 1);
        assert!(
            report.summary[0].starts_with("serving schema \"public\": tables "),
            "{}",
            report.summary[0]
        );
        assert!(report.summary[0].contains("views sales_dashboard"));
    }

    #[test]
    fn silent_tables_hidden_policies_and_empty_schemas_are_warned_about() {
        let mut catalog = demo();
        for r in &mut catalog.relations {
            match r.name.name.as_str() {
                "orders" => r.notifies = false,
                "sales_dashboard" => r.bypasses_row_security = true,
                "sales_headline" => r.opaque = true,
                _ => {}
            }
        }
        let report = catalog.report(&["public".to_owned(), "nosuch".to_owned()]);
        let all = report.warnings.join("\n");
        assert_eq!(report.warnings.len(), 4, "{all}");
        assert!(all.contains("public.sales_headline depends on a function of this database"));
        assert!(all.contains("schema \"nosuch\" serves nothing"));
        assert!(all.contains("public.orders has no change trigger"));
        assert!(all.contains("view public.sales_dashboard reads a table with row-level security"));
    }

    #[test]
    fn with_a_publication_the_tables_outside_it_are_warned_about() {
        let mut catalog = demo();
        let published: BTreeSet<QualifiedName> = catalog
            .relations
            .iter()
            .filter(|r| r.name.name != "orders")
            .map(|r| r.name.clone())
            .collect();
        catalog.follow_publication("live", &published);
        let report = catalog.report(&["public".to_owned()]);
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert!(
            report.warnings[0].starts_with("public.orders is not in publication \"live\""),
            "{}",
            report.warnings[0]
        );
        // Views notify through their tables whatever the publication lists.
        assert!(
            catalog
                .relations
                .iter()
                .all(|r| r.notifies || r.name.name == "orders")
        );
    }
}
