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
    match pool
        .query_as(role.unwrap_or(SERVER_ROLE), claims, sql, &params)
        .await
    {
        Ok(Some(data)) => Ok(compact(&data)),
        Ok(None) => Ok("null".to_owned()),
        Err(err) => {
            let failure = classify(&err);
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

fn classify(err: &pg::Error) -> Failure {
    match err.kind() {
        pg::ErrorKind::Db => {
            let message = match err.as_db_error() {
                Some(db) => db.message.clone(),
                None => err.to_string(),
            };
            match err.code() {
                // insufficient_privilege: row-level security or grants said no.
                Some("42501") => {
                    Failure::Final(GraphQLError::server(ErrorCode::Forbidden, message))
                }
                // A role that does not exist, or that the server's user may not become.
                Some(code) if code.starts_with("22") || code.starts_with("42") => {
                    Failure::Final(GraphQLError::server(ErrorCode::Database, message))
                }
                // Serialization failures, deadlocks, lock timeouts, admin cancels: transient.
                Some(code)
                    if code.starts_with("40")
                        || code.starts_with("55")
                        || code.starts_with("57") =>
                {
                    Failure::Unavailable(GraphQLError::server(ErrorCode::Unavailable, message))
                }
                _ => Failure::Final(GraphQLError::server(ErrorCode::Database, message)),
            }
        }
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
