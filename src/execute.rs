//! Running a compiled operation against PostgreSQL as the client it belongs to.
//!
//! Every statement a client causes runs with its role and JWT claims set for the statement's
//! transaction (`set_config('role', …, true)`, `set_config('request.jwt.claims', …, true)`),
//! pipelined with the statement itself in one round trip, so row-level security policies
//! see exactly that client. Queries over HTTP and WebSocket and live-query refreshes all go
//! through [`run`].

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::auth::Identity;
use crate::graphql::json::compact;
use crate::live::{Job, RunResult, Runner};
use crate::metrics::ShardMetrics;
use crate::pg::{self, Pool};
use crate::protocol::{ErrorCode, GraphQLError};

/// The role name that makes `set_config('role', …)` keep the connection's own role: what
/// queries run as when JWT verification is off.
const SERVER_ROLE: &str = "none";

/// Why a statement produced no result.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// It cannot succeed as it is (permission denied, a dropped table, a bad value).
    Final(GraphQLError),
    /// PostgreSQL could not be reached in time; trying again later may work.
    Unavailable(GraphQLError),
}

impl Failure {
    pub fn error(&self) -> &GraphQLError {
        match self {
            Failure::Final(e) | Failure::Unavailable(e) => e,
        }
    }
}

/// Runs `sql` as `role` with `claims` and returns the `data` JSON, compacted.
pub async fn run(
    pool: &Pool,
    metrics: &ShardMetrics,
    role: Option<&str>,
    claims: &str,
    sql: &str,
    params: &[String],
) -> Result<String, Failure> {
    if role == Some(SERVER_ROLE) {
        // PostgreSQL would read it as "stay the login role", which may bypass every policy
        // (a superuser, or a role granted more than any client): never a client's role.
        let e = GraphQLError::server(
            ErrorCode::Forbidden,
            format!("the role \"{SERVER_ROLE}\" is not a role a client may use"),
        );
        metrics.error(e.code.as_str());
        return Err(Failure::Final(e));
    }
    let params: Vec<Option<&str>> = params.iter().map(|p| Some(p.as_str())).collect();
    metrics.db_statements.inc();
    // The statement's own time, without the wait for a connection, tells a timeout from
    // an operator's cancel.
    let mut started = None;
    let result = match pool.get().await {
        Ok(client) => {
            started = Some(Instant::now());
            let timeout = pool.statement_timeout_setting();
            let role = role.unwrap_or(SERVER_ROLE);
            client.query_as(role, claims, timeout, sql, &params).await
        }
        Err(err) => Err(err),
    };
    match result {
        Ok(Some(data)) => Ok(compact(&data)),
        Ok(None) => Ok("null".to_owned()),
        Err(err) => {
            let ran = started.map(|s| s.elapsed()).unwrap_or_default();
            let past_timeout = pool.statement_timeout().is_some_and(|limit| ran >= limit);
            let failure = classify(&err, past_timeout);
            metrics.error(failure.error().code.as_str());
            log::debug!("statement failed: {err}");
            Err(failure)
        }
    }
}

/// Runs an operation for `identity`.
pub async fn run_as(
    pool: &Pool,
    metrics: &ShardMetrics,
    identity: &Identity,
    sql: &str,
    params: &[String],
) -> Result<String, Failure> {
    run(
        pool,
        metrics,
        identity.role.as_deref(),
        &identity.claims,
        sql,
        params,
    )
    .await
}

/// What a failed statement means for its client; see the table in
/// `docs/graphql-errors.md`. `past_timeout`: the statement ran at least as long as
/// `POSTRUST_STATEMENT_TIMEOUT_MS`.
fn classify(err: &pg::Error, past_timeout: bool) -> Failure {
    use pg::sqlstate;
    let final_ = |code, message| Failure::Final(GraphQLError::server(code, message));
    match err.kind() {
        pg::ErrorKind::Db => {
            let message = match err.as_db_error() {
                Some(db) => db.message.clone(),
                None => err.to_string(),
            };
            match err.code().unwrap_or_default() {
                // Row-level security or grants said no.
                sqlstate::INSUFFICIENT_PRIVILEGE => final_(ErrorCode::Forbidden, message),
                // Cancelled by a timeout (ours, or the role's or database's: the message is
                // in the server's language, so it is read only as a second hint) or by an
                // operator. Running it again would only be cancelled again.
                sqlstate::QUERY_CANCELED
                    if past_timeout || message.contains("statement timeout") =>
                {
                    final_(ErrorCode::StatementTimeout, message)
                }
                sqlstate::QUERY_CANCELED => final_(ErrorCode::StatementCanceled, message),
                // The compiled SQL's only scalar subquery without a LIMIT 1 is a single-row
                // root field's (a view's own definition could raise it too, so PostgreSQL's
                // message goes along).
                sqlstate::CARDINALITY_VIOLATION => final_(
                    ErrorCode::NotSingleRow,
                    format!(
                        "a relation served as one object (@postrust single-row) has more \
                         than one row: {message}"
                    ),
                ),
                code if sqlstate::is_transient(code) => {
                    Failure::Unavailable(GraphQLError::server(ErrorCode::Unavailable, message))
                }
                // The statement itself cannot succeed: a bad value, a missing role or
                // table, a program limit.
                _ => final_(ErrorCode::Database, message),
            }
        }
        // A statement the client cannot send (too many parameters, a value over 1 GB).
        pg::ErrorKind::Config => final_(ErrorCode::Database, err.to_string()),
        _ => Failure::Unavailable(GraphQLError::server(
            ErrorCode::Unavailable,
            format!("the database is not available: {err}"),
        )),
    }
}

/// Live-query refreshes through the shard's pool.
pub struct PgRunner {
    pub pool: Pool,
    /// Every shard's metrics; this runner writes only `all_metrics[index]`.
    pub all_metrics: Arc<[ShardMetrics]>,
    pub index: usize,
}

impl Runner for PgRunner {
    fn run<'a>(&'a self, job: &'a Job) -> Pin<Box<dyn Future<Output = RunResult> + 'a>> {
        Box::pin(async move {
            let metrics = &self.all_metrics[self.index];
            let started = std::time::Instant::now();
            let result = run(
                &self.pool,
                metrics,
                job.role.as_deref(),
                &job.claims,
                &job.sql,
                &job.params,
            )
            .await;
            metrics.refreshes.inc();
            metrics.refresh_seconds.observe(started.elapsed());
            match result {
                Ok(data) => RunResult::Data(data),
                Err(Failure::Final(e)) => RunResult::Failed(Rc::from(vec![e])),
                Err(Failure::Unavailable(_)) => RunResult::Unavailable,
            }
        })
    }

    fn fanned_out(&self, took: std::time::Duration) {
        self.all_metrics[self.index].fanout_seconds.observe(took);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::DbError;

    fn db(code: &str, message: &str) -> pg::Error {
        pg::Error::db(DbError {
            code: code.into(),
            message: message.into(),
            ..DbError::default()
        })
    }

    fn code(failure: &Failure) -> (&'static str, bool) {
        let retried = matches!(failure, Failure::Unavailable(_));
        (failure.error().code.as_str(), retried)
    }

    #[test]
    fn what_each_failure_means_for_the_client() {
        let cancel = "canceling statement due to user request";
        let timeout = "canceling statement due to statement timeout";
        let cases = [
            (
                db("42501", "permission denied"),
                false,
                ("FORBIDDEN", false),
            ),
            (db("57014", cancel), true, ("STATEMENT_TIMEOUT", false)),
            (db("57014", timeout), false, ("STATEMENT_TIMEOUT", false)),
            (db("57014", cancel), false, ("STATEMENT_CANCELED", false)),
            (
                db("21000", "more than one row returned by a subquery"),
                false,
                ("NOT_SINGLE_ROW", false),
            ),
            (
                db("53200", "out of memory"),
                false,
                ("SERVICE_UNAVAILABLE", true),
            ),
            (
                db("53400", "temp_file_limit"),
                false,
                ("DATABASE_ERROR", false),
            ),
            (
                db("40001", "serialization"),
                false,
                ("SERVICE_UNAVAILABLE", true),
            ),
            (db("22P02", "bad uuid"), false, ("DATABASE_ERROR", false)),
            (
                pg::Error::config("too many parameters"),
                false,
                ("DATABASE_ERROR", false),
            ),
            (
                pg::Error::pool_timeout("no connection"),
                false,
                ("SERVICE_UNAVAILABLE", true),
            ),
        ];
        for (err, past_timeout, expected) in cases {
            assert_eq!(code(&classify(&err, past_timeout)), expected, "{err}");
        }
    }
}
