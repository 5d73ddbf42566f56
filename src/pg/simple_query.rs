//! The simple query protocol: SQL text without parameters, possibly several statements
//! separated by `;`, all in one implicit transaction. Used for session setup (`LISTEN`),
//! DDL and `ROLLBACK`; never for values from users, which travel as bind parameters.

use bytes::BytesMut;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::client::Client;
use super::error::Error;
use super::query::unexpected;
use super::row::{Row, Rows, columns};

impl Client {
    /// Runs `sql` and returns one [`Rows`] per statement. On an error the statements after
    /// the failing one do not run, and earlier ones are rolled back unless the text manages
    /// its own transactions.
    pub async fn simple_query(&self, sql: &str) -> Result<Vec<Rows>, Error> {
        let mut buf = BytesMut::new();
        frontend::query(sql, &mut buf)
            .map_err(|e| Error::config(format!("query cannot be sent: {e}")))?;
        let mut responses = self.send(buf, 1)?;
        let mut results = Vec::new();
        let mut current = Rows::default();
        let mut error = None;
        loop {
            match responses.next().await? {
                Message::RowDescription(body) => current.set_columns(columns(&body)?),
                Message::DataRow(body) => current.push(Row::new(body)?),
                Message::CommandComplete(body) => {
                    let tag = body
                        .tag()
                        .map_err(|e| Error::protocol(format!("bad command tag: {e}")))?;
                    current.set_tag(tag);
                    results.push(std::mem::take(&mut current));
                }
                Message::EmptyQueryResponse => {}
                Message::ErrorResponse(body) => {
                    error = Some(Error::from_response(&body)?);
                }
                Message::CopyInResponse(_) => self.refuse_copy_in()?,
                Message::CopyOutResponse(_) | Message::CopyData(_) | Message::CopyDone => {}
                Message::ReadyForQuery(_) => break,
                other => return Err(unexpected(&other, "running a simple query")),
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(results),
        }
    }

    /// Runs `sql` (one or more statements) for its effect.
    pub async fn batch_execute(&self, sql: &str) -> Result<(), Error> {
        self.simple_query(sql).await.map(drop)
    }
}
