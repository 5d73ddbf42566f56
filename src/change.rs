//! Change notifications: what a `NOTIFY` payload says about a committed write.
//!
//! Two payload shapes are understood, both JSON objects:
//!
//! - the product docs page's trigger function, exactly as written there:
//!   `{"table": …, "operation": …, "data": <row>}`, where `data` is the new row (the old row
//!   on DELETE);
//! - the project's own trigger (`postrust triggers sql`), a superset: it adds `"schema"`,
//!   `"old"` (the old row on UPDATE), and `"truncated": true` when the rows were cut down to
//!   their primary key to stay under NOTIFY's 8000-byte limit.
//!
//! A payload is a hint for scheduling refreshes and nothing else: it is never forwarded to
//! a client. A payload that cannot be read still marks work: its table when the table can
//! be found in it, otherwise everything.

use simd_json::prelude::*;
use simd_json::{BorrowedValue, OwnedValue};

/// The statement that changed a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Operation {
    fn parse(text: &str) -> Option<Operation> {
        match text.to_ascii_uppercase().as_str() {
            "INSERT" => Some(Operation::Insert),
            "UPDATE" => Some(Operation::Update),
            "DELETE" => Some(Operation::Delete),
            "TRUNCATE" => Some(Operation::Truncate),
            _ => None,
        }
    }
}

/// One decoded notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `None` for the docs page's trigger, which does not send it: the table is then looked
    /// up in every exposed schema.
    pub schema: Option<String>,
    pub table: String,
    pub operation: Operation,
    /// The row after the change (INSERT, UPDATE), as a JSON object.
    pub new: Option<OwnedValue>,
    /// The row before the change (DELETE; UPDATE with the project's trigger).
    pub old: Option<OwnedValue>,
    /// The rows hold only their primary key: they cannot be tested against filters.
    pub truncated: bool,
}

impl Change {
    /// Every version of the row the change touched, old and new, when the payload carries
    /// them all in full: `None` for an UPDATE without its old row (the docs page's trigger
    /// does not send it), rows cut down to their key, and TRUNCATE.
    pub fn rows(&self) -> Option<Vec<&OwnedValue>> {
        if self.truncated {
            return None;
        }
        match (self.operation, &self.new, &self.old) {
            (Operation::Insert, Some(new), _) => Some(vec![new]),
            (Operation::Update, Some(new), Some(old)) => Some(vec![new, old]),
            (Operation::Delete, _, Some(old)) => Some(vec![old]),
            _ => None,
        }
    }
}

/// What a notification makes dirty.
#[derive(Debug, Clone, PartialEq)]
pub enum Dirty {
    /// A readable change to one table.
    Change(Change),
    /// An unreadable payload that still names its table.
    Table {
        schema: Option<String>,
        table: String,
    },
    /// An unreadable payload: anything may have changed.
    Everything,
}

/// Decodes a payload (parsed in place with simd-json, so `payload` is scratch afterwards).
pub fn decode(payload: &mut [u8]) -> Result<Change, Dirty> {
    let Ok(value) = simd_json::to_borrowed_value(payload) else {
        return Err(Dirty::Everything);
    };
    let text = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let Some(table) = text("table").filter(|t| !t.is_empty()) else {
        return Err(Dirty::Everything);
    };
    let schema = text("schema").filter(|s| !s.is_empty());
    let Some(operation) = value
        .get("operation")
        .and_then(|v| v.as_str())
        .and_then(Operation::parse)
    else {
        return Err(Dirty::Table { schema, table });
    };
    let row = |key: &str| -> Result<Option<OwnedValue>, ()> {
        match value.get(key) {
            None => Ok(None),
            Some(v) if v.is_null() => Ok(None),
            Some(v @ BorrowedValue::Object(_)) => Ok(Some(OwnedValue::from(v.clone()))),
            Some(_) => Err(()),
        }
    };
    let (Ok(data), Ok(old)) = (row("data"), row("old")) else {
        return Err(Dirty::Table { schema, table });
    };
    let truncated = value.get("truncated").and_then(|v| v.as_bool()) == Some(true);
    // The docs page's trigger sends the old row as `data` on DELETE.
    let (new, old) = match operation {
        Operation::Delete => (None, old.or(data)),
        Operation::Truncate => (None, None),
        Operation::Insert | Operation::Update => (data, old),
    };
    Ok(Change {
        schema,
        table,
        operation,
        new,
        old,
        truncated,
    })
}

/// The dirt a payload leaves, decoded or not.
pub fn classify(payload: &mut [u8]) -> Dirty {
    match decode(payload) {
        Ok(change) => Dirty::Change(change),
        Err(dirty) => dirty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirty(text: &str) -> Dirty {
        classify(&mut text.as_bytes().to_vec())
    }

    fn change(text: &str) -> Change {
        match dirty(text) {
            Dirty::Change(c) => c,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn the_docs_page_trigger_payload() {
        // What `notify_table_change()` from the docs page sends for each operation.
        let insert = change(
            r#"{"table" : "orders", "operation" : "INSERT", "data" : {"id":7,"customer_id":2,"total":19.90,"status":"pending"}}"#,
        );
        assert_eq!(insert.schema, None);
        assert_eq!(insert.table, "orders");
        assert_eq!(insert.operation, Operation::Insert);
        let new = insert.new.unwrap();
        assert_eq!(new.get("status").and_then(|v| v.as_str()), Some("pending"));
        assert_eq!(new.get("id").and_then(|v| v.as_i64()), Some(7));
        assert_eq!(insert.old, None);
        assert!(!insert.truncated);

        let update =
            change(r#"{"table":"orders","operation":"UPDATE","data":{"id":7,"status":"paid"}}"#);
        assert!(update.new.is_some() && update.old.is_none());

        let delete =
            change(r#"{"table":"orders","operation":"DELETE","data":{"id":7,"status":"paid"}}"#);
        assert_eq!(delete.new, None);
        assert_eq!(
            delete.old.unwrap().get("id").and_then(|v| v.as_i64()),
            Some(7)
        );
    }

    #[test]
    fn the_project_trigger_payload_with_schema_old_row_and_truncation() {
        let update = change(
            r#"{"schema":"sales","table":"orders","operation":"UPDATE","data":{"id":1,"status":"paid"},"old":{"id":1,"status":"pending"}}"#,
        );
        assert_eq!(update.schema.as_deref(), Some("sales"));
        assert_eq!(
            update.old.unwrap().get("status").and_then(|v| v.as_str()),
            Some("pending")
        );

        let big = change(
            r#"{"schema":"public","table":"documents","operation":"UPDATE","data":{"id":9},"old":{"id":9},"truncated":true}"#,
        );
        assert!(big.truncated);

        let truncate = change(r#"{"schema":"public","table":"orders","operation":"TRUNCATE"}"#);
        assert_eq!(truncate.operation, Operation::Truncate);
        assert_eq!((truncate.new, truncate.old), (None, None));
    }

    #[test]
    fn unreadable_payloads_still_mark_work() {
        assert_eq!(dirty("not json"), Dirty::Everything);
        assert_eq!(dirty(r#"{"operation":"INSERT"}"#), Dirty::Everything);
        assert_eq!(dirty("[1,2]"), Dirty::Everything);
        assert_eq!(
            dirty(r#"{"table":"orders","operation":"MERGE","data":{}}"#),
            Dirty::Table {
                schema: None,
                table: "orders".into()
            }
        );
        assert_eq!(
            dirty(r#"{"schema":"s","table":"t","operation":"INSERT","data":"oops"}"#),
            Dirty::Table {
                schema: Some("s".into()),
                table: "t".into()
            }
        );
    }
}
