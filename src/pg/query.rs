//! The extended query protocol: parameterized statements, prepared once per connection,
//! sent as one pipeline.
//!
//! Every statement is `[Parse Describe(statement)] Bind Execute`, parameters and results in
//! text format; `Parse` and `Describe` only the first time the connection sees the SQL
//! text, after which the cache knows the result columns. A batch of
//! statements is written in one go and read back in order, which is what makes a
//! multi-statement call cost a single round trip.
//!
//! `Sync` placement decides what an error does. In a [`SyncMode::Transaction`] batch there
//! is one `Sync` at the end, so all statements run in one transaction (the implicit one, or
//! the caller's `BEGIN` block); after an error the server skips to the `Sync`, the rest are
//! reported as skipped, and nothing of the batch is committed. In [`SyncMode::Each`] every
//! statement has its own `Sync` and fails alone; in [`SyncMode::ReadGroups`] every group
//! of statements does. Either way the connection is left idle: if
//! the batch opened a transaction block that failed, a `ROLLBACK` follows before returning.

use std::iter;
use std::rc::Rc;

use bytes::{BufMut, BytesMut};
use postgres_protocol::IsNull;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::client::{Client, Responses, TransactionStatus};
use super::error::Error;
use super::row::{Row, Rows, columns};
use super::statements::{Columns, Lookup};

/// One statement of a batch: SQL with `$1..$n` placeholders and their text values.
#[derive(Debug, Clone, Copy)]
pub struct Statement<'a> {
    pub sql: &'a str,
    pub params: &'a [Option<&'a str>],
}

/// How the statements of a batch are grouped into transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// One transaction: all or nothing.
    Transaction,
    /// Each statement on its own, as if sent one by one.
    Each,
    /// Every `n` statements (the last group may be shorter) one transaction, as if each
    /// group were sent on its own: an error ends only its group. For groups that only
    /// read, so that sending the batch again (after a stale statement) repeats nothing
    /// that matters.
    ReadGroups(usize),
}

impl SyncMode {
    /// Whether the `i`th of `len` statements is the last of its transaction (a `Sync`
    /// follows it).
    fn ends_group(self, i: usize, len: usize) -> bool {
        match self {
            SyncMode::Transaction => i + 1 == len,
            SyncMode::Each => true,
            SyncMode::ReadGroups(n) => (i + 1).is_multiple_of(n.max(1)) || i + 1 == len,
        }
    }
}

/// SQLSTATE `invalid_sql_statement_name`: the server does not have a statement we cached.
const UNKNOWN_STATEMENT: &str = "26000";
/// SQLSTATE `feature_not_supported`, which is what `cached plan must not change result
/// type` carries: a table under the statement changed shape since it was prepared.
const STALE_STATEMENT: &str = "0A000";

/// What the batch did for one statement, to read its answer and update the cache.
struct Plan {
    name: String,
    parse: bool,
    /// A `Describe` was sent: the cache learns the columns from its answer.
    describe: bool,
    /// Filled in from the `Describe` answer when it was not known.
    columns: Option<Columns>,
}

/// Runs `statements` in one round trip. The outer error means the connection is unusable;
/// per-statement errors (including [`ErrorKind::Skipped`](super::ErrorKind::Skipped)) are
/// in the vector, one entry per statement.
///
/// A statement prepared before a table under it changed shape fails with "cached plan must
/// not change result type"; the batch is then sent once more with the statement prepared
/// afresh, when that cannot run anything twice that matters: nothing of a one-transaction
/// batch or of a single statement committed, and groups that only read.
pub(crate) async fn batch(
    client: &Client,
    statements: &[Statement<'_>],
    mode: SyncMode,
) -> Result<Vec<Result<Rows, Error>>, Error> {
    let results = batch_once(client, statements, mode).await?;
    let stale = results
        .iter()
        .any(|r| r.as_ref().err().and_then(Error::code) == Some(STALE_STATEMENT));
    let again = match mode {
        SyncMode::Transaction | SyncMode::ReadGroups(_) => true,
        SyncMode::Each => statements.len() == 1,
    };
    if stale && again {
        return batch_once(client, statements, mode).await;
    }
    Ok(results)
}

async fn batch_once(
    client: &Client,
    statements: &[Statement<'_>],
    mode: SyncMode,
) -> Result<Vec<Result<Rows, Error>>, Error> {
    if statements.is_empty() {
        return Ok(Vec::new());
    }
    let mut buf = BytesMut::new();
    let mut plans: Vec<Plan> = Vec::with_capacity(statements.len());
    let mut syncs = 0;
    let closing = {
        let mut cache = client.shared.statements.borrow_mut();
        for (i, stmt) in statements.iter().enumerate() {
            let lookup = cache.lookup(stmt.sql);
            let encoded = encode(stmt, &lookup, &mut buf);
            if let Err(e) = encoded {
                // Nothing is sent: statements registered as new so far do not exist on
                // the server.
                for (stmt, plan) in statements.iter().zip(&plans) {
                    if plan.parse {
                        cache.forget(stmt.sql);
                    }
                }
                if lookup.parse {
                    cache.forget(stmt.sql);
                }
                return Err(e);
            }
            if mode.ends_group(i, statements.len()) {
                frontend::sync(&mut buf);
                syncs += 1;
            }
            plans.push(Plan {
                name: lookup.name,
                parse: lookup.parse,
                describe: lookup.columns.is_none(),
                columns: lookup.columns,
            });
        }
        cache.take_closing()
    };
    // After the batch's last Sync: a failure in the batch must not skip the Close.
    for name in &closing {
        frontend::close(b'S', name, &mut buf).map_err(|e| Error::config(e.to_string()))?;
    }
    if !closing.is_empty() {
        frontend::sync(&mut buf);
        syncs += 1;
    }

    let mut responses = client.send(buf, syncs)?;
    let mut results = Vec::with_capacity(statements.len());
    let mut failed = false;
    let mut status = TransactionStatus::Idle;
    for (i, (stmt, plan)) in statements.iter().zip(&mut plans).enumerate() {
        if failed {
            results.push(Err(Error::skipped()));
        } else {
            let result = read_statement(&mut responses, plan).await?;
            failed = result.is_err();
            results.push(result);
        }
        if plan.parse && plan.columns.is_none() {
            // Its Parse never completed (it failed, or an earlier failure skipped it).
            client.shared.statements.borrow_mut().forget(stmt.sql);
        }
        if mode.ends_group(i, statements.len()) {
            status = read_ready(&mut responses).await?;
            failed = false;
        }
    }
    for _ in &closing {
        match responses.next().await? {
            Message::CloseComplete => {}
            other => return Err(unexpected(&other, "closing a statement")),
        }
    }
    if !closing.is_empty() {
        read_ready(&mut responses).await?;
    }
    drop(responses);

    {
        let mut cache = client.shared.statements.borrow_mut();
        for ((stmt, plan), result) in statements.iter().zip(&plans).zip(&results) {
            match result.as_ref().err().and_then(Error::code) {
                Some(UNKNOWN_STATEMENT) => cache.forget(stmt.sql),
                Some(STALE_STATEMENT) => cache.retire(stmt.sql),
                _ => {
                    if let (true, Some(columns)) = (plan.describe, &plan.columns) {
                        cache.described(stmt.sql, &plan.name, columns.clone());
                    }
                }
            }
        }
    }
    if status == TransactionStatus::Failed {
        client.batch_execute("ROLLBACK").await?;
    }
    Ok(results)
}

/// `[Parse] [Describe] Bind Execute` for one statement.
fn encode(stmt: &Statement<'_>, lookup: &Lookup, buf: &mut BytesMut) -> Result<(), Error> {
    if lookup.parse {
        frontend::parse(&lookup.name, stmt.sql, iter::empty(), buf)
            .map_err(|e| Error::config(format!("statement cannot be sent: {e}")))?;
    }
    if lookup.columns.is_none() {
        frontend::describe(b'S', &lookup.name, buf).map_err(|e| Error::config(e.to_string()))?;
    }
    let bound = frontend::bind(
        "",
        &lookup.name,
        // No formats: every parameter and every result column in text.
        iter::empty(),
        stmt.params.iter(),
        |value, buf| match value {
            Some(text) => {
                buf.put_slice(text.as_bytes());
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        },
        iter::empty(),
        buf,
    );
    if bound.is_err() {
        return Err(Error::config(format!(
            "{} parameters or a value of 2 GiB cannot be sent in one statement",
            stmt.params.len()
        )));
    }
    frontend::execute("", 0, buf).map_err(|e| Error::config(e.to_string()))?;
    Ok(())
}

/// Reads one statement's messages up to its completion or error. The outer error is a dead
/// or confused connection; the inner one the statement's own failure. Fills in
/// `plan.columns` when the statement was described.
async fn read_statement(
    responses: &mut Responses<'_>,
    plan: &mut Plan,
) -> Result<Result<Rows, Error>, Error> {
    let mut rows = Rows::default();
    if let Some(columns) = &plan.columns {
        rows.set_columns(columns.clone());
    }
    loop {
        match responses.next().await? {
            Message::ParseComplete | Message::ParameterDescription(_) | Message::BindComplete => {}
            Message::RowDescription(body) => {
                let described = columns(&body)?;
                rows.set_columns(described.clone());
                plan.columns = Some(described);
            }
            Message::NoData => {
                plan.columns = Some(Rc::new([]));
            }
            Message::DataRow(body) => rows.push(Row::new(body)?),
            Message::CommandComplete(body) => {
                let tag = body
                    .tag()
                    .map_err(|e| Error::protocol(format!("bad command tag: {e}")))?;
                rows.set_tag(tag);
                return Ok(Ok(rows));
            }
            Message::EmptyQueryResponse => return Ok(Ok(rows)),
            Message::ErrorResponse(body) => {
                return Ok(Err(Error::from_response(&body)?));
            }
            Message::CopyInResponse(_) => {
                // The server now waits for COPY data and ignores Sync; which of the batch's
                // later messages it then skips depends on where the COPY stood, so the
                // answers can no longer be matched to requests. Close instead of hanging.
                responses.client().abort(Error::closed(
                    "COPY FROM STDIN is not supported by this client; the connection was \
                     closed",
                    None,
                ));
            }
            Message::CopyOutResponse(_) | Message::CopyData(_) | Message::CopyDone => {}
            other => return Err(unexpected(&other, "reading a statement's result")),
        }
    }
}

/// Reads up to the `ReadyForQuery` that ends a `Sync` group.
pub(crate) async fn read_ready(responses: &mut Responses<'_>) -> Result<TransactionStatus, Error> {
    match responses.next().await? {
        Message::ReadyForQuery(body) => Ok(match body.status() {
            b'T' => TransactionStatus::InTransaction,
            b'E' => TransactionStatus::Failed,
            _ => TransactionStatus::Idle,
        }),
        other => Err(unexpected(&other, "waiting for ReadyForQuery")),
    }
}

pub(crate) fn unexpected(message: &Message, doing: &str) -> Error {
    let tag = match message {
        Message::ReadyForQuery(_) => "ReadyForQuery",
        Message::DataRow(_) => "DataRow",
        Message::RowDescription(_) => "RowDescription",
        Message::CommandComplete(_) => "CommandComplete",
        Message::ParseComplete => "ParseComplete",
        Message::BindComplete => "BindComplete",
        Message::PortalSuspended => "PortalSuspended",
        _ => "another message",
    };
    Error::protocol(format!("unexpected {tag} while {doing}"))
}

impl Client {
    /// Runs one parameterized statement and returns its rows.
    pub async fn query(&self, sql: &str, params: &[Option<&str>]) -> Result<Rows, Error> {
        let mut results = batch(self, &[Statement { sql, params }], SyncMode::Each).await?;
        results.pop().unwrap_or_else(|| Ok(Rows::default()))
    }

    /// Runs one parameterized statement and returns the number of rows it affected.
    pub async fn execute(&self, sql: &str, params: &[Option<&str>]) -> Result<u64, Error> {
        Ok(self.query(sql, params).await?.affected())
    }

    /// Runs several statements in one round trip; see [`SyncMode`] for what an error does.
    /// The outer error means the connection died; otherwise one result per statement.
    pub async fn pipeline(
        &self,
        statements: &[Statement<'_>],
        mode: SyncMode,
    ) -> Result<Vec<Result<Rows, Error>>, Error> {
        batch(self, statements, mode).await
    }
}
