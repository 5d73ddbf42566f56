//! The call every GraphQL query and live-query refresh makes: run one SQL statement as a
//! subscriber's role with their JWT claims, in one round trip, and return the single JSON
//! text it produces.
//!
//! It is the design's `BEGIN; SET LOCAL ROLE r; SELECT set_config('request.jwt.claims', c,
//! true); SELECT …; COMMIT` with the same meaning and fewer messages: the statements go in
//! one `Sync` group, which PostgreSQL runs as one implicit transaction, and the role is set
//! with `set_config('role', r, true)`, the function form of `SET LOCAL ROLE` that takes the
//! role as a bind parameter (no identifier quoting, no injection). Both settings end with
//! the transaction, so nothing leaks to the next caller of the connection; and since there
//! is no explicit block, an error anywhere ends in an idle connection without a `ROLLBACK`
//! round trip.

use super::client::Client;
use super::error::Error;
use super::query::{Statement, SyncMode, batch};

/// Sets the transaction's role and claims; `$1` role name, `$2` claims JSON text. Called
/// in FROM so the result has no columns: `set_config` returns the value it set, and the
/// claims would otherwise travel back to us with every query.
const SET_ROLE_AND_CLAIMS: &str =
    "SELECT FROM set_config('role', $1, true) r, set_config('request.jwt.claims', $2, true) c";

/// The same, and `statement_timeout` (`$3`, milliseconds) for the transaction, in place of
/// the session's. PostgreSQL starts the timer afresh for each Execute message, so it bounds
/// the query that follows on its own. (Taking the stricter of it and the session's own, in
/// SQL, cost 9% of `query_as`'s throughput: bench/pg_roundtrip.sh.)
const SET_ROLE_CLAIMS_AND_TIMEOUT: &str = "SELECT FROM set_config('role', $1, true) r, \
     set_config('request.jwt.claims', $2, true) c, set_config('statement_timeout', $3, true) t";

impl Client {
    /// Runs `statements` in order, as one transaction, as `role` with `claims` (see
    /// [`Client::query_as`]), and returns each one's first value (None for a statement
    /// without columns or rows). A failure of any of them
    /// fails the call and undoes them all: the group ends at one `Sync`, and PostgreSQL
    /// skips what follows an error and rolls the implicit transaction back. One round trip.
    pub async fn query_all_as(
        &self,
        role: &str,
        claims: &str,
        statement_timeout: Option<&str>,
        statements: &[(&str, &[Option<&str>])],
    ) -> Result<Vec<Option<String>>, Error> {
        let (sql, params, n) = settings(role, claims, statement_timeout);
        let mut all = Vec::with_capacity(statements.len() + 1);
        all.push(Statement {
            sql,
            params: &params[..n],
        });
        all.extend(
            statements
                .iter()
                .map(|&(sql, params)| Statement { sql, params }),
        );
        let results = batch(self, &all, SyncMode::Transaction).await?;
        let mut values = Vec::with_capacity(statements.len());
        let mut settings_done = false;
        for result in results {
            // The first error is the cause; the entries after it only say they were
            // skipped.
            let rows = result?;
            if !settings_done {
                settings_done = true;
                continue;
            }
            // A statement without columns (a write that keeps its rows for a later read)
            // has no value.
            let value = if rows.columns().is_empty() {
                None
            } else {
                rows.value(0, 0).map(str::to_owned)
            };
            values.push(value);
        }
        Ok(values)
    }

    /// Runs `sql` with `params` as `role` with JWT `claims` (JSON text, readable in SQL and
    /// row-level-security policies as `current_setting('request.jwt.claims', true)`), and
    /// returns the first column of its first row: the JSON document the compiled query
    /// builds. `None` when that value is NULL or there is no row.
    ///
    /// With `statement_timeout` (milliseconds, as text), PostgreSQL cancels the statement
    /// past it (SQLSTATE 57014); without, the role's or database's setting applies.
    ///
    /// One round trip; the role, claims and timeout last only for this statement's
    /// transaction.
    pub async fn query_as(
        &self,
        role: &str,
        claims: &str,
        statement_timeout: Option<&str>,
        sql: &str,
        params: &[Option<&str>],
    ) -> Result<Option<String>, Error> {
        let (settings_sql, settings_params, n) = settings(role, claims, statement_timeout);
        let statements = [
            Statement {
                sql: settings_sql,
                params: &settings_params[..n],
            },
            Statement { sql, params },
        ];
        let mut results = batch(self, &statements, SyncMode::Transaction).await?;
        let rows = results.pop().unwrap_or_else(|| Err(Error::skipped()));
        // The role statement's error (e.g. no such role) is the cause; the query's entry
        // then only says it was skipped.
        if let Some(Err(e)) = results.pop() {
            return Err(e);
        }
        Ok(rows?.value(0, 0).map(str::to_owned))
    }
}

/// One query of [`Client::query_each_as`]: SQL and parameters, run as `role` with
/// `claims`.
#[derive(Debug, Clone, Copy)]
pub struct AsClient<'a> {
    pub role: &'a str,
    pub claims: &'a str,
    pub sql: &'a str,
    pub params: &'a [Option<&'a str>],
}

impl Client {
    /// Runs several queries, each as its own role and claims in its own transaction (as
    /// [`Client::query_as`] would, one after the other), in one round trip: one write and
    /// one read for all of them, instead of one of each per query. Each group of
    /// statements ends at its own `Sync`, so a query's settings last only for its own
    /// transaction, and a query that fails fails alone. The outer error means the
    /// connection died; otherwise one answer per query, in order.
    ///
    /// Only for queries that read: after a statement went stale, the whole batch is sent
    /// again.
    pub async fn query_each_as(
        &self,
        statement_timeout: Option<&str>,
        queries: &[AsClient<'_>],
    ) -> Result<Vec<Result<Option<String>, Error>>, Error> {
        let settings: Vec<_> = queries
            .iter()
            .map(|q| settings(q.role, q.claims, statement_timeout))
            .collect();
        let mut statements = Vec::with_capacity(queries.len() * 2);
        for (q, (sql, params, n)) in queries.iter().zip(&settings) {
            statements.push(Statement {
                sql,
                params: &params[..*n],
            });
            statements.push(Statement {
                sql: q.sql,
                params: q.params,
            });
        }
        let results = batch(self, &statements, SyncMode::ReadGroups(2)).await?;
        let mut results = results.into_iter();
        let mut answers = Vec::with_capacity(queries.len());
        while let (Some(set), Some(query)) = (results.next(), results.next()) {
            // As in query_as: the settings' error is the cause, the query's only says it
            // was skipped.
            answers.push(
                set.and(query)
                    .map(|rows| rows.value(0, 0).map(str::to_owned)),
            );
        }
        Ok(answers)
    }
}

/// The statement that sets role, claims and (if given) the statement timeout: its SQL and
/// its parameters (the first `n` of the array), kept on the caller's stack.
fn settings<'a>(
    role: &'a str,
    claims: &'a str,
    statement_timeout: Option<&'a str>,
) -> (&'static str, [Option<&'a str>; 3], usize) {
    match statement_timeout {
        Some(ms) => (
            SET_ROLE_CLAIMS_AND_TIMEOUT,
            [Some(role), Some(claims), Some(ms)],
            3,
        ),
        None => (SET_ROLE_AND_CLAIMS, [Some(role), Some(claims), None], 2),
    }
}
