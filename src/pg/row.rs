//! Query results in text format.
//!
//! A [`Row`] keeps the `DataRow` message's buffer (reference-counted, not copied) and the
//! byte range of each value, so reading a large JSON document out of a row costs no copy
//! until the caller asks for an owned string.

use std::ops::Range;
use std::rc::Rc;

use bytes::Bytes;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{DataRowBody, RowDescriptionBody};

use super::error::Error;
use super::statements::Columns;

/// One row; values in the server's text format, `None` for NULL.
#[derive(Debug, Clone)]
pub struct Row {
    buffer: Bytes,
    ranges: Vec<Option<Range<usize>>>,
}

impl Row {
    pub(crate) fn new(body: DataRowBody) -> Result<Row, Error> {
        let ranges: Vec<_> = body
            .ranges()
            .collect()
            .map_err(|e| Error::protocol(format!("malformed DataRow: {e}")))?;
        let buffer = body.buffer_bytes().clone();
        // Validated once here so `get` can hand out `&str` without failing. The connection
        // asks for client_encoding UTF8, so this only fails on a broken server.
        for range in ranges.iter().flatten() {
            std::str::from_utf8(&buffer[range.clone()])
                .map_err(|_| Error::protocol("a value is not valid UTF-8"))?;
        }
        Ok(Row { buffer, ranges })
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The value of column `index` (0-based), `None` for NULL.
    ///
    /// # Panics
    /// When `index` is out of range, like slice indexing.
    pub fn get(&self, index: usize) -> Option<&str> {
        let range = self.ranges[index].clone()?;
        std::str::from_utf8(&self.buffer[range]).ok()
    }
}

/// The column names a `RowDescription` lists.
pub(crate) fn columns(body: &RowDescriptionBody) -> Result<Columns, Error> {
    let names: Vec<String> = body
        .fields()
        .map(|f| Ok(f.name().to_owned()))
        .collect()
        .map_err(|e| Error::protocol(format!("malformed RowDescription: {e}")))?;
    Ok(names.into())
}

/// The result of one statement: column names, rows and the command tag.
#[derive(Debug, Clone)]
pub struct Rows {
    columns: Columns,
    rows: Vec<Row>,
    tag: String,
}

impl Default for Rows {
    fn default() -> Self {
        Rows {
            columns: Rc::new([]),
            rows: Vec::new(),
            tag: String::new(),
        }
    }
}

impl Rows {
    pub(crate) fn set_columns(&mut self, columns: Columns) {
        self.columns = columns;
    }

    pub(crate) fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub(crate) fn set_tag(&mut self, tag: &str) {
        tag.clone_into(&mut self.tag);
    }

    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The command tag, e.g. `SELECT 3`, `INSERT 0 1`.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Rows inserted, updated, deleted, selected, ... as counted in the command tag.
    pub fn affected(&self) -> u64 {
        self.tag
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Row `row`, column `column`; `None` for NULL or when there is no such row.
    pub fn value(&self, row: usize, column: usize) -> Option<&str> {
        self.rows.get(row).and_then(|r| r.get(column))
    }

    pub fn into_rows(self) -> Vec<Row> {
        self.rows
    }
}

impl<'a> IntoIterator for &'a Rows {
    type Item = &'a Row;
    type IntoIter = std::slice::Iter<'a, Row>;
    fn into_iter(self) -> Self::IntoIter {
        self.rows.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use postgres_protocol::message::backend::Message;

    /// A `DataRow` as sent by the server: count, then length-prefixed values (-1 = NULL).
    fn data_row(values: &[Option<&[u8]>]) -> DataRowBody {
        let mut body = Vec::new();
        body.extend_from_slice(&(values.len() as u16).to_be_bytes());
        for v in values {
            match v {
                Some(v) => {
                    body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    body.extend_from_slice(v);
                }
                None => body.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        let mut msg = BytesMut::from(&b"D"[..]);
        msg.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        msg.extend_from_slice(&body);
        match Message::parse(&mut msg).unwrap().unwrap() {
            Message::DataRow(body) => body,
            _ => unreachable!(),
        }
    }

    #[test]
    fn values_and_nulls() {
        let row = Row::new(data_row(&[
            Some(b"42"),
            None,
            Some(b""),
            Some("wörd".as_bytes()),
        ]))
        .unwrap();
        assert_eq!(row.len(), 4);
        assert_eq!(row.get(0), Some("42"));
        assert_eq!(row.get(1), None);
        assert_eq!(row.get(2), Some(""));
        assert_eq!(row.get(3), Some("wörd"));
    }

    #[test]
    fn invalid_utf8_is_a_protocol_error() {
        let err = Row::new(data_row(&[Some(b"\xff")])).unwrap_err();
        assert!(
            err.is_closed(),
            "a protocol error closes the connection: {err}"
        );
    }

    #[test]
    fn affected_rows_come_from_the_tag() {
        let mut rows = Rows::default();
        for (tag, n) in [
            ("INSERT 0 5", 5),
            ("UPDATE 3", 3),
            ("SELECT 0", 0),
            ("BEGIN", 0),
        ] {
            rows.set_tag(tag);
            assert_eq!(rows.affected(), n, "{tag}");
        }
    }
}
