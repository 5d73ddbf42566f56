//! Refreshes of one compiled statement under one role and claims, differing only in their
//! parameters, run as one multiplexed statement against a real PostgreSQL: each live query
//! gets its own answer, in order, under row-level security, and one whose parameters make
//! the statement fail fails alone.

mod support;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use postrust::catalog::QualifiedName;
use postrust::execute::PgRunner;
use postrust::live::{Compiled, Job, LiveKey, Registry, RunResult, Runner};
use postrust::metrics::ShardMetrics;
use postrust::outbox::Outbox;
use postrust::pg::{ConnectOptions, Pool, PoolOptions};
use postrust::replicas::Database;
use support::gql::psql;
use support::pg::cluster;
use support::{config, run};

/// The live query running `sql` with `params` as `role` with `claims`.
fn key(sql: &str, params: &[&str], role: &str, claims: &str) -> LiveKey {
    LiveKey {
        compiled: Rc::new(Compiled {
            sql: sql.into(),
            params: params.iter().map(|p| p.to_string()).collect(),
            tables: vec![QualifiedName {
                schema: "public".into(),
                name: "notes".into(),
            }],
            skip: Default::default(),
            multiplexed: Default::default(),
            alone: Default::default(),
        }),
        role: Some(role.into()),
        claims: claims.into(),
    }
}

/// Jobs for `keys`, as the refresh loop takes them (kept alive by the returned registry
/// and outbox).
fn jobs(keys: Vec<LiveKey>) -> (Registry, Rc<Outbox>, Vec<Job>) {
    let mut registry = Registry::default();
    let outbox = Rc::new(Outbox::default());
    for key in keys {
        let slot = outbox.open_slot(b"q");
        registry.subscribe(key, &outbox, slot);
    }
    let mut jobs = Vec::new();
    while let Some(job) = registry.take_first() {
        jobs.push(job);
    }
    (registry, outbox, jobs)
}

fn runner(url: &str) -> PgRunner {
    runner_with_timeout(url, Duration::from_secs(10))
}

fn runner_with_timeout(url: &str, statement_timeout: Duration) -> PgRunner {
    let pool = Pool::new(
        config(url),
        ConnectOptions::default(),
        PoolOptions {
            statement_timeout: Some(statement_timeout),
            ..PoolOptions::default()
        },
    );
    PgRunner {
        db: Rc::new(Database::new(
            pool,
            Vec::new(),
            Duration::ZERO,
            (Duration::ZERO, Duration::ZERO),
        )),
        all_metrics: Arc::from(vec![ShardMetrics::default()]),
        index: 0,
    }
}

fn data(result: &RunResult) -> &str {
    match result {
        RunResult::Data(d) => d,
        RunResult::Failed(e) => panic!("failed: {e:?}"),
        RunResult::Unavailable => panic!("unavailable"),
    }
}

const SETUP: &str = "
CREATE ROLE mux_user NOLOGIN;
CREATE TABLE notes (id int PRIMARY KEY, owner text NOT NULL, body text NOT NULL);
INSERT INTO notes VALUES (1, 'ann', 'a1'), (2, 'ann', 'a2'), (3, 'bob', 'b3'), (4, 'ann', 'it''s \"4\"');
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON notes TO mux_user
  USING (owner = current_setting('request.jwt.claims', true)::json->>'sub');
GRANT SELECT ON notes TO mux_user;
";

/// Each live query's note by id, as ann or bob sees it.
const BY_ID: &str = "SELECT json_build_object('notes', coalesce((SELECT json_agg(body ORDER BY id) \
     FROM notes WHERE id = $1::text::int), '[]'))::text";

#[test]
fn refreshes_differing_in_parameters_share_one_statement_and_get_their_own_answers() {
    let url = cluster().fresh_database("multiplex");
    // Roles are the cluster's: another test binary may have made it already.
    psql(
        &url,
        &SETUP.replace(
            "CREATE ROLE mux_user NOLOGIN;",
            "DO $$ BEGIN CREATE ROLE mux_user NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;",
        ),
    );
    let ann = r#"{"sub":"ann"}"#;
    let bob = r#"{"sub":"bob"}"#;
    let (_registry, _outbox, jobs) = jobs(vec![
        key(BY_ID, &["1"], "mux_user", ann),
        key(BY_ID, &["3"], "mux_user", bob),
        key(BY_ID, &["4"], "mux_user", ann),
        key(BY_ID, &["3"], "mux_user", ann),
        key(BY_ID, &["2"], "mux_user", ann),
    ]);
    let runner = runner(&url);
    let results = run(async { runner.run(&jobs).await });
    let got: Vec<&str> = results.iter().map(data).collect();
    assert_eq!(
        got,
        [
            r#"{"notes":["a1"]}"#,
            r#"{"notes":["b3"]}"#,
            r#"{"notes":["it's \"4\""]}"#,
            // Ann's claims hide Bob's note: the multiplexed statement ran as her.
            r#"{"notes":[]}"#,
            r#"{"notes":["a2"]}"#,
        ]
    );
    // Ann's four went as one statement; Bob's alone.
    assert_eq!(runner.all_metrics[0].refreshes_multiplexed.get(), 4);
}

#[test]
fn a_refresh_whose_parameters_fail_the_multiplexed_statement_fails_alone() {
    let url = cluster().fresh_database("multiplex_fail");
    psql(
        &url,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);",
    );
    // Dividing by the parameter: 0 makes the statement fail, for every run in it.
    let sql = "SELECT json_build_object('x', (SELECT 12 / $1::text::int FROM t))::text";
    let as_postgres = |p: &str| LiveKey {
        role: None,
        ..key(sql, &[p], "", "{}")
    };
    let (_registry, _outbox, jobs) =
        jobs(vec![as_postgres("3"), as_postgres("0"), as_postgres("4")]);
    let runner = runner(&url);
    let results = run(async { runner.run(&jobs).await });
    assert_eq!(data(&results[0]), r#"{"x":4}"#);
    match &results[1] {
        RunResult::Failed(errors) => {
            assert!(errors[0].message.contains("division by zero"), "{errors:?}")
        }
        _ => panic!("the refresh dividing by zero fails"),
    }
    assert_eq!(data(&results[2]), r#"{"x":3}"#);
    assert_eq!(
        runner.all_metrics[0].refreshes_multiplexed.get(),
        0,
        "the failed statement's refreshes ran again alone"
    );
}

#[test]
fn compiled_subscriptions_answer_multiplexed_what_they_answer_alone() {
    let url = support::gql::demo_database("");
    let engine = support::gql::engine(&url, &["public"]);
    // Variables in filters (`gte`, `in`) and in `limit` and `offset`, with nested
    // relations and `__typename`: the kinds of placeholder a subscription's statement has
    // go through the multiplexed statement.
    let document = "subscription S($min: Int!, $statuses: [String!], $n: Int, $skip: Int) { \
        orders(filter: { id: { gte: $min }, status: { in: $statuses } }, orderBy: { id: ASC }, \
               limit: $n, offset: $skip) { __typename id status customer { name orders { id } } } }";
    let variables = [
        r#"{"min": 1, "statuses": ["pending", "paid"], "n": 3, "skip": 0}"#,
        r#"{"min": 2, "statuses": ["shipped"], "n": 10, "skip": 0}"#,
        r#"{"min": 1, "statuses": [], "n": 1, "skip": 0}"#,
        r#"{"min": 1, "statuses": ["pending", "paid", "shipped", "cancelled"], "n": 2, "skip": 1}"#,
    ];
    let keys: Vec<LiveKey> = variables
        .iter()
        .map(|v| {
            let mut bytes = v.as_bytes().to_vec();
            let vars = simd_json::to_owned_value(&mut bytes).unwrap();
            let prepared = engine.prepare(document, Some(&vars), None).unwrap();
            let postrust::engine::Plan::Sql { sql, params } = prepared.plan else {
                panic!("a statement")
            };
            let params: Vec<&str> = params.iter().map(String::as_str).collect();
            LiveKey {
                role: None,
                ..key(&sql, &params, "", "{}")
            }
        })
        .collect();
    assert!(
        keys.windows(2)
            .all(|w| w[0].compiled.sql == w[1].compiled.sql),
        "one statement, differing in parameters"
    );
    let (_registry, _outbox, jobs) = jobs(keys);
    let runner = runner(&url);
    let (together, alone) = run(async {
        let text = |results: Vec<RunResult>| -> Vec<String> {
            results.iter().map(|r| data(r).to_owned()).collect()
        };
        let together = text(runner.run(&jobs).await);
        let mut alone = Vec::new();
        for job in &jobs {
            alone.extend(text(runner.run(std::slice::from_ref(job)).await));
        }
        (together, alone)
    });
    assert_eq!(runner.all_metrics[0].refreshes_multiplexed.get(), 4);
    assert_eq!(together, alone);
    assert!(
        together[0].contains(r#""__typename":"Orders""#),
        "{}",
        together[0]
    );
}

#[test]
fn refreshes_that_time_out_together_run_alone_from_then_on() {
    let url = cluster().fresh_database("multiplex_timeout");
    // Each run takes 0.3 s: alone within the 0.5 s timeout, three together past it.
    // (The sleep reads the parameter, so that it runs once per run, not once per statement.)
    let sql = "SELECT json_build_object('x', \
               (SELECT $1::text::int FROM pg_sleep(0.3 + 0 * $1::text::int)))::text";
    let as_postgres = |p: &str| LiveKey {
        role: None,
        ..key(sql, &[p], "", "{}")
    };
    let (_registry, _outbox, jobs) =
        jobs(vec![as_postgres("1"), as_postgres("2"), as_postgres("3")]);
    let runner = runner_with_timeout(&url, Duration::from_millis(500));
    let results = run(async { runner.run(&jobs).await });
    let got: Vec<&str> = results.iter().map(data).collect();
    assert_eq!(got, [r#"{"x":1}"#, r#"{"x":2}"#, r#"{"x":3}"#]);
    assert!(
        jobs.iter().all(|j| j.key.compiled.alone.get()),
        "marked to run alone"
    );
    assert_eq!(runner.all_metrics[0].refreshes_multiplexed.get(), 0);
}
