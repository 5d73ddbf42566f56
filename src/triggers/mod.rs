//! The project's own change trigger: its SQL, and the statements that attach it to tables.
//!
//! `postrust triggers sql` prints [`function_sql`] and, for each table named, the
//! statements of [`attach_sql`]; `postrust triggers install` runs them ([`install`]). The
//! project's trigger adds the schema, the old row on UPDATE, TRUNCATE, and stays under
//! NOTIFY's 8000-byte payload limit (see `notify.sql`). `install` replaces a trigger it
//! finds notifying on the same channel (the docs page's `notify_table_change()`): kept
//! alongside, it would notify every change twice and still fail the write of a large row.

mod install;

pub use install::{Installed, install_now};

/// Creates (or replaces) `postrust.notify_change()`.
pub fn function_sql() -> &'static str {
    include_str!("notify.sql")
}

/// Quotes an identifier for SQL.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal for SQL.
pub(crate) fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A table to attach the trigger to: `schema.table` or `table` (in `public`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: String,
    pub table: String,
}

impl TableName {
    /// Reads `schema.table` or `table`. Quoting is not needed and not accepted: names are
    /// taken literally, so `Orders` means the table created as `"Orders"`.
    pub fn parse(text: &str) -> Result<TableName, String> {
        let (schema, table) = match text.split_once('.') {
            Some((s, t)) => (s, t),
            None => ("public", text),
        };
        if schema.is_empty() || table.is_empty() || table.contains('.') {
            return Err(format!(
                "{text:?} is not a table name (table or schema.table)"
            ));
        }
        Ok(TableName {
            schema: schema.to_owned(),
            table: table.to_owned(),
        })
    }

    pub(crate) fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// Statements that (re)attach the trigger to `table`, notifying on `channel`.
pub fn attach_sql(table: &TableName, channel: &str) -> String {
    let target = table.qualified();
    let channel = quote_literal(channel);
    format!(
        "DROP TRIGGER IF EXISTS postrust_notify_row ON {target};\n\
         CREATE TRIGGER postrust_notify_row AFTER INSERT OR UPDATE OR DELETE ON {target}\n  \
         FOR EACH ROW EXECUTE FUNCTION postrust.notify_change({channel});\n\
         DROP TRIGGER IF EXISTS postrust_notify_truncate ON {target};\n\
         CREATE TRIGGER postrust_notify_truncate AFTER TRUNCATE ON {target}\n  \
         FOR EACH STATEMENT EXECUTE FUNCTION postrust.notify_change({channel});\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_default_to_public_and_are_quoted() {
        assert_eq!(
            TableName::parse("orders").unwrap(),
            TableName {
                schema: "public".into(),
                table: "orders".into()
            }
        );
        let odd = TableName::parse("sales.Order\"s").unwrap();
        assert_eq!(odd.qualified(), r#""sales"."Order""s""#);
        assert!(TableName::parse("a.b.c").is_err());
        assert!(TableName::parse(".x").is_err());
    }

    #[test]
    fn attach_sql_is_idempotent_and_quotes_the_channel() {
        let sql = attach_sql(&TableName::parse("orders").unwrap(), "it's");
        assert!(
            sql.starts_with("DROP TRIGGER IF EXISTS postrust_notify_row ON \"public\".\"orders\";")
        );
        assert!(sql.contains("EXECUTE FUNCTION postrust.notify_change('it''s');"));
        assert!(sql.contains("AFTER TRUNCATE"));
    }
}
