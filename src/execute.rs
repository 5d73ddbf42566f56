//! Running a compiled operation against PostgreSQL as the client it belongs to.
//!
//! Every statement a client causes runs with its role and JWT claims set for the statement's
//! transaction (`set_config('role', …, true)`, `set_config('request.jwt.claims', …, true)`),
//! pipelined with the statement itself in one round trip, so row-level security policies
//! see exactly that client. Queries over HTTP and WebSocket and single live-query refreshes
//! go through [`run`]; standing refreshes that are due together go through
//! [`PgRunner::run_each`], which sends several of them in one round trip, each still in its
//! own transaction with its own role and claims.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::auth::Identity;
use crate::engine::Plan;
use crate::graphql::json::compact;
use crate::live::{Job, RunResult, Runner};
use crate::metrics::ShardMetrics;
use crate::pg;
use crate::protocol::{ErrorCode, GraphQLError};
use crate::replicas::{Database, Reader};
use crate::sql::multiplex;
use crate::sql::mutation::Step;

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

/// Refuses the role name PostgreSQL would read as "stay the login role", which may bypass
/// every policy (a superuser, or a role granted more than any client): never a client's.
fn refuse_server_role(metrics: &ShardMetrics, role: Option<&str>) -> Result<(), Failure> {
    if role != Some(SERVER_ROLE) {
        return Ok(());
    }
    let e = GraphQLError::server(
        ErrorCode::Forbidden,
        format!("the role \"{SERVER_ROLE}\" is not a role a client may use"),
    );
    metrics.error(e.code.as_str());
    Err(Failure::Final(e))
}

/// Runs `call` on a pooled connection with the statement timeout's setting, and says what
/// a failure means for the client (counted and logged). A read takes its connection from
/// [`Database::reader`] (a replica that has caught up, or the primary) and runs again on
/// the primary if it failed for want of the replica; a mutation always runs on the
/// primary.
async fn on_a_connection<T>(
    db: &Database,
    metrics: &ShardMetrics,
    mutation: bool,
    call: impl AsyncFn(&pg::Client, Option<&str>) -> Result<T, pg::Error>,
) -> Result<T, Failure> {
    metrics.db_statements.inc();
    let pool = &db.primary;
    // The statement's own time, without the wait for a connection, tells a timeout from
    // an operator's cancel.
    let mut started = None;
    let result = async {
        let (client, from) = match mutation {
            true => (pool.get().await?, Reader::Primary),
            false => db.reader(metrics).await?,
        };
        started = Some(Instant::now());
        let result = call(&client, pool.statement_timeout_setting()).await;
        match (result, from) {
            (Err(err), Reader::Replica(index))
                if matches!(classify(&err, false, false), Failure::Unavailable(_)) =>
            {
                drop(client);
                db.replica_failed(index, &err.to_string());
                metrics.replica_fallbacks.inc();
                let client = pool.get().await?;
                started = Some(Instant::now());
                call(&client, pool.statement_timeout_setting()).await
            }
            (result, _) => result,
        }
    }
    .await;
    result.map_err(|err| {
        let ran = started.map(|s| s.elapsed()).unwrap_or_default();
        let past_timeout = pool.statement_timeout().is_some_and(|limit| ran >= limit);
        let failure = classify(&err, past_timeout, mutation);
        metrics.error(failure.error().code.as_str());
        log::debug!("statement failed: {err}");
        failure
    })
}

/// Runs the statements of a mutation as `identity`, in order, in one transaction, and
/// returns the `data` object: each step's value under its key.
pub async fn run_mutation(
    db: &Database,
    metrics: &ShardMetrics,
    identity: &Identity,
    steps: &[Step],
) -> Result<String, Failure> {
    let role = identity.role.as_deref();
    refuse_server_role(metrics, role)?;
    // Each field's write, then its read: the read's value is the field's.
    let params: Vec<Vec<Option<&str>>> = steps
        .iter()
        .flat_map(|s| match s {
            Step::Sql { write, read, .. } => vec![&write.1, &read.1],
            Step::Value { .. } => Vec::new(),
        })
        .map(|params| params.iter().map(|p| Some(p.as_str())).collect())
        .collect();
    let statements: Vec<(&str, &[Option<&str>])> = steps
        .iter()
        .flat_map(|s| match s {
            Step::Sql { write, read, .. } => vec![write.0.as_str(), read.0.as_str()],
            Step::Value { .. } => Vec::new(),
        })
        .zip(params.iter().map(Vec::as_slice))
        .collect();
    let run = on_a_connection(db, metrics, true, async |client: &pg::Client, timeout| {
        let role = role.unwrap_or(SERVER_ROLE);
        client
            .query_all_as(role, &identity.claims, timeout, &statements)
            .await
    });
    // The whole transaction gets what one statement gets: it holds its row locks and a
    // pooled connection all along. Dropping the call cancels what still runs, and the
    // transaction is rolled back.
    let values = match db.primary.statement_timeout() {
        None => run.await?,
        Some(limit) => {
            let expired = async {
                glommio::timer::sleep(limit).await;
                let e = GraphQLError::server(
                    ErrorCode::StatementTimeout,
                    format!(
                        "the mutation ran past {} ms (POSTRUST_STATEMENT_TIMEOUT_MS) and was \
                         cancelled",
                        limit.as_millis()
                    ),
                );
                metrics.error(e.code.as_str());
                Err(Failure::Final(e))
            };
            futures_lite::future::or(run, expired).await?
        }
    };
    // The reads' values, in order.
    let mut values = values.into_iter().skip(1).step_by(2);
    let mut data = String::from("{");
    for (i, step) in steps.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        let (key, value) = match step {
            Step::Value { key, json } => (key, json.clone()),
            Step::Sql { key, .. } => (
                key,
                values
                    .next()
                    .flatten()
                    .map_or_else(|| "null".to_owned(), |v: String| compact(&v)),
            ),
        };
        crate::graphql::json::quote(key, &mut data);
        data.push(':');
        data.push_str(&value);
    }
    data.push('}');
    Ok(data)
}

/// Runs `sql` as `role` with `claims` and returns the `data` JSON, compacted.
pub async fn run(
    db: &Database,
    metrics: &ShardMetrics,
    role: Option<&str>,
    claims: &str,
    sql: &str,
    params: &[String],
) -> Result<String, Failure> {
    refuse_server_role(metrics, role)?;
    let params: Vec<Option<&str>> = params.iter().map(|p| Some(p.as_str())).collect();
    let data = on_a_connection(db, metrics, false, async |client: &pg::Client, timeout| {
        let role = role.unwrap_or(SERVER_ROLE);
        client.query_as(role, claims, timeout, sql, &params).await
    })
    .await?;
    Ok(data_json(data))
}

/// The `data` JSON a statement produced, compacted; `null` for none.
fn data_json(data: Option<String>) -> String {
    data.map_or_else(|| "null".to_owned(), |d| compact(&d))
}

/// Runs a query or a mutation once for `identity` and returns its `data` object.
pub async fn run_plan(
    db: &Database,
    metrics: &ShardMetrics,
    identity: &Identity,
    plan: &Plan,
) -> Result<String, Failure> {
    match plan {
        Plan::Sql { sql, params } => run_as(db, metrics, identity, sql, params).await,
        Plan::Mutation(steps) => run_mutation(db, metrics, identity, steps).await,
        Plan::Immediate(data) => Ok(data.clone()),
    }
}

/// Runs an operation for `identity`.
pub async fn run_as(
    db: &Database,
    metrics: &ShardMetrics,
    identity: &Identity,
    sql: &str,
    params: &[String],
) -> Result<String, Failure> {
    run(
        db,
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
fn classify(err: &pg::Error, past_timeout: bool, mutation: bool) -> Failure {
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
                // An upsert whose rows collide with each other ("ON CONFLICT DO UPDATE
                // command cannot affect row a second time").
                sqlstate::CARDINALITY_VIOLATION if mutation => final_(
                    ErrorCode::BadArgument,
                    format!("two rows of one insert collide on the same key: {message}"),
                ),
                sqlstate::CARDINALITY_VIOLATION => final_(
                    ErrorCode::NotSingleRow,
                    format!(
                        "a relation served as one object (@postrust single-row) has more \
                         than one row: {message}"
                    ),
                ),
                // A mutation's write refused by a constraint: the message names the
                // constraint but not the key values (PostgreSQL's detail holds those, and
                // could reveal a row the client's role may not read).
                sqlstate::UNIQUE_VIOLATION => final_(ErrorCode::UniqueViolation, message),
                sqlstate::FOREIGN_KEY_VIOLATION => final_(ErrorCode::ForeignKeyViolation, message),
                sqlstate::NOT_NULL_VIOLATION => final_(ErrorCode::NotNullViolation, message),
                sqlstate::CHECK_VIOLATION => final_(ErrorCode::CheckViolation, message),
                code if code.starts_with(sqlstate::CLASS_INTEGRITY) => {
                    final_(ErrorCode::ConstraintViolation, message)
                }
                code if sqlstate::is_bad_value(code) => final_(ErrorCode::InvalidValue, message),
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

/// Live-query refreshes through the shard's database (replicas for reads, if any).
pub struct PgRunner {
    pub db: Rc<Database>,
    /// Every shard's metrics; this runner writes only `all_metrics[index]`.
    pub all_metrics: Arc<[ShardMetrics]>,
    pub index: usize,
}

impl PgRunner {
    /// Runs several refreshes in one round trip on one pooled connection, each in its own
    /// transaction as its own role and claims ([`pg::Client::query_each_as`]). Refreshes of
    /// one compiled statement under the same role and claims, differing only in their
    /// parameters, go as one multiplexed statement ([`multiplex`]); should that statement
    /// fail, each of them runs again alone, in one more round trip, so that one live
    /// query's failure (a value its column rejects, a timeout) stays its own.
    async fn run_each(&self, jobs: &[Job]) -> Vec<Result<String, Failure>> {
        let metrics = &self.all_metrics[self.index];
        let mut answers: Vec<Option<Result<String, Failure>>> = jobs
            .iter()
            .map(|job| {
                refuse_server_role(metrics, job.key.role.as_deref())
                    .err()
                    .map(Err)
            })
            .collect();
        let runnable: Vec<usize> = (0..jobs.len()).filter(|&i| answers[i].is_none()).collect();
        let mut alone = Vec::new();
        let units = group(jobs, &runnable);
        let sent = self.send(jobs, &units).await;
        for (unit, answer) in units.into_iter().zip(sent) {
            match (unit, answer) {
                (Unit::One(i), answer) => answers[i] = Some(answer),
                (Unit::Many(many), Ok(value)) => {
                    let split: Vec<&str> = multiplex::answers(&value).collect();
                    if split.len() == many.len() {
                        metrics.refreshes_multiplexed.add(many.len() as u64);
                        for (i, data) in many.into_iter().zip(split) {
                            answers[i] = Some(Ok(compact(data)));
                        }
                    } else {
                        alone.extend(many);
                    }
                }
                // The connection failed, not the statement: every refresh of the group
                // waits for the retry, as a refresh sent alone would.
                (Unit::Many(many), Err(failure @ Failure::Unavailable(_))) => {
                    for i in many {
                        answers[i] = Some(Err(failure.clone()));
                    }
                }
                (Unit::Many(many), Err(failure)) => {
                    if failure.error().code == ErrorCode::StatementTimeout {
                        // Together they take longer than any one; from now on they run
                        // alone, each within the timeout on its own.
                        for &i in &many {
                            jobs[i].key.compiled.alone.set(true);
                        }
                        log::info!(
                            "a multiplexed refresh of {} live queries ran past the statement \
                             timeout; their statement refreshes alone from now on",
                            many.len()
                        );
                    }
                    log::debug!(
                        "a multiplexed refresh failed ({}); its {} live queries run again alone",
                        failure.error().message,
                        many.len()
                    );
                    alone.extend(many)
                }
            }
        }
        if !alone.is_empty() {
            let units: Vec<Unit> = alone.iter().copied().map(Unit::One).collect();
            for (i, answer) in alone.into_iter().zip(self.send(jobs, &units).await) {
                answers[i] = Some(answer);
            }
        }
        answers
            .into_iter()
            // Every job was refused or sent; one missing would be tried again.
            .map(|answer| answer.unwrap_or_else(|| Err(no_answer())))
            .collect()
    }

    /// Sends `units` of `jobs` in one round trip; each unit's answer, in order.
    async fn send(&self, jobs: &[Job], units: &[Unit]) -> Vec<Result<String, Failure>> {
        let metrics = &self.all_metrics[self.index];
        // What each unit sends: its SQL and parameters, owned here for the borrow below.
        let prepared: Vec<(std::borrow::Cow<'_, str>, Vec<std::borrow::Cow<'_, str>>)> = units
            .iter()
            .map(|unit| match unit {
                Unit::One(i) => {
                    let compiled = &jobs[*i].key.compiled;
                    (
                        compiled.sql.as_str().into(),
                        compiled.params.iter().map(|p| p.as_str().into()).collect(),
                    )
                }
                Unit::Many(many) => {
                    let compiled = &jobs[many[0]].key.compiled;
                    let runs: Vec<&[String]> = many
                        .iter()
                        .map(|&i| &jobs[i].key.compiled.params[..])
                        .collect();
                    (
                        compiled.multiplexed().into(),
                        multiplex::params(&runs)
                            .into_iter()
                            .map(Into::into)
                            .collect(),
                    )
                }
            })
            .collect();
        let params: Vec<Vec<Option<&str>>> = prepared
            .iter()
            .map(|(_, params)| params.iter().map(|p| Some(p.as_ref())).collect())
            .collect();
        let queries: Vec<pg::AsClient> = units
            .iter()
            .zip(&prepared)
            .zip(&params)
            .map(|((unit, (sql, _)), params)| {
                let key = &jobs[unit.first()].key;
                pg::AsClient {
                    role: key.role.as_deref().unwrap_or(SERVER_ROLE),
                    claims: &key.claims,
                    sql,
                    params,
                }
            })
            .collect();
        let ran = on_a_connection(
            &self.db,
            metrics,
            false,
            async |client: &pg::Client, timeout| {
                let started = Instant::now();
                let results = client.query_each_as(timeout, &queries).await?;
                Ok((started.elapsed(), results))
            },
        )
        .await;
        let results: Vec<Result<String, Failure>> = match ran {
            Ok((took, results)) => {
                let past_timeout = self
                    .db
                    .primary
                    .statement_timeout()
                    .is_some_and(|t| took >= t);
                results
                    .into_iter()
                    .zip(units)
                    .map(|(result, unit)| {
                        result.map(data_json).map_err(|err| {
                            let failure = classify(&err, past_timeout, false);
                            // A multiplexed statement's failure is not yet anyone's: its
                            // refreshes run again alone.
                            if let Unit::One(_) = unit {
                                metrics.error(failure.error().code.as_str());
                            }
                            failure
                        })
                    })
                    .collect()
            }
            // Every refresh of the batch shares the connection's fate.
            Err(failure) => vec![Err(failure); queries.len()],
        };
        // One answer per unit; were one missing, it is tried again.
        let mut results = results.into_iter();
        units
            .iter()
            .map(|_| results.next().unwrap_or_else(|| Err(no_answer())))
            .collect()
    }
}

/// A refresh whose answer never came: trying again is the safe reading.
fn no_answer() -> Failure {
    Failure::Unavailable(GraphQLError::server(
        ErrorCode::Unavailable,
        "the refresh got no answer",
    ))
}

/// What one statement of a batch of refreshes runs: one job, or several of one compiled
/// statement under one role and claims, multiplexed.
#[derive(Debug, PartialEq)]
enum Unit {
    One(usize),
    Many(Vec<usize>),
}

impl Unit {
    fn first(&self) -> usize {
        match self {
            Unit::One(i) => *i,
            Unit::Many(many) => many[0],
        }
    }
}

/// The statements that run the jobs at `indexes`: those of the same SQL, role and claims
/// together, in the order of their first job.
fn group(jobs: &[Job], indexes: &[usize]) -> Vec<Unit> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &i in indexes {
        let key = &jobs[i].key;
        if key.compiled.alone.get() {
            groups.push(vec![i]);
            continue;
        }
        let same = groups.iter_mut().find(|g| {
            let other = &jobs[g[0]].key;
            !other.compiled.alone.get()
                && other.compiled.sql == key.compiled.sql
                && other.compiled.params.len() == key.compiled.params.len()
                && other.role == key.role
                && other.claims == key.claims
        });
        match same {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
        .into_iter()
        .map(|g| match g.as_slice() {
            [one] => Unit::One(*one),
            _ => Unit::Many(g),
        })
        .collect()
}

impl Runner for PgRunner {
    fn run<'a>(&'a self, jobs: &'a [Job]) -> Pin<Box<dyn Future<Output = Vec<RunResult>> + 'a>> {
        Box::pin(async move {
            let metrics = &self.all_metrics[self.index];
            let started = std::time::Instant::now();
            let results = match jobs {
                [job] => vec![
                    run(
                        &self.db,
                        metrics,
                        job.key.role.as_deref(),
                        &job.key.claims,
                        &job.key.compiled.sql,
                        &job.key.compiled.params,
                    )
                    .await,
                ],
                _ => self.run_each(jobs).await,
            };
            let took = started.elapsed();
            results
                .into_iter()
                .map(|result| {
                    metrics.refreshes.inc();
                    metrics.refresh_seconds.observe(took);
                    match result {
                        Ok(data) => RunResult::Data(data),
                        Err(Failure::Final(e)) => RunResult::Failed(Rc::from(vec![e])),
                        Err(Failure::Unavailable(_)) => RunResult::Unavailable,
                    }
                })
                .collect()
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
            (db("22P02", "bad uuid"), false, ("INVALID_VALUE", false)),
            (
                db("22012", "division by zero"),
                false,
                ("DATABASE_ERROR", false),
            ),
            (
                db("22023", "role \"x\" does not exist"),
                false,
                ("DATABASE_ERROR", false),
            ),
            (
                db("23505", "duplicate key"),
                false,
                ("UNIQUE_VIOLATION", false),
            ),
            (
                db("23503", "foreign key"),
                false,
                ("FOREIGN_KEY_VIOLATION", false),
            ),
            (
                db("23502", "null value"),
                false,
                ("NOT_NULL_VIOLATION", false),
            ),
            (db("23514", "check"), false, ("CHECK_VIOLATION", false)),
            (
                db("23P01", "exclusion"),
                false,
                ("CONSTRAINT_VIOLATION", false),
            ),
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
            assert_eq!(
                code(&classify(&err, past_timeout, false)),
                expected,
                "{err}"
            );
        }
        // In a mutation, a cardinality violation is an upsert colliding with itself.
        let twice = db(
            "21000",
            "ON CONFLICT DO UPDATE command cannot affect row a second time",
        );
        assert_eq!(
            code(&classify(&twice, false, true)),
            ("BAD_ARGUMENT", false)
        );
        assert_eq!(
            code(&classify(&twice, false, false)),
            ("NOT_SINGLE_ROW", false)
        );
    }
}
