//! Dead connections and the pool: a terminated backend is reported as closed (never a
//! hang), the pool replaces it, and a caller gives up after the pool timeout.

mod support;

use std::time::Duration;

use postrust::pg::{ConnectOptions, ErrorKind, Pool, PoolOptions};
use support::pg::cluster;
use support::{LIMIT, config, connect, fast_pool_options, run, within};

#[test]
fn a_killed_connection_is_reported_closed_not_hung() {
    let cluster = cluster();
    let url = cluster.fresh_database("killed");
    run(async {
        let c = connect(&url).await;
        let admin = connect(&url).await;
        let waiting = c.query("SELECT pg_sleep(30)", &[]);
        let kill = async {
            glommio::timer::sleep(Duration::from_millis(200)).await;
            admin
                .query(
                    "SELECT pg_terminate_backend($1::int)",
                    &[Some(&c.process_id().to_string())],
                )
                .await
                .unwrap();
        };
        let (result, ()) = within(
            LIMIT,
            "killed query",
            futures_lite::future::zip(waiting, kill),
        )
        .await;
        let err = result.unwrap_err();
        assert!(err.is_closed(), "{err}");
        assert_eq!(
            err.code(),
            Some("57P01"),
            "the server's reason is kept: {err}"
        );
        let again = c.query("SELECT 1", &[]).await.unwrap_err();
        assert!(again.is_closed(), "later requests fail at once: {again}");
        assert!(c.is_closed());
    });
}

#[test]
fn the_pool_replaces_a_terminated_connection() {
    let cluster = cluster();
    let url = cluster.fresh_database("pool_kill");
    run(async {
        let pool = Pool::new(
            config(&url),
            ConnectOptions::default(),
            fast_pool_options(1),
        );
        let first_pid = pool.get().await.unwrap().process_id();
        assert_eq!(pool.idle_count(), 1);
        cluster.psql(&url, &format!("SELECT pg_terminate_backend({first_pid})"));
        // The driver may or may not have seen the close yet; either way the next request
        // either succeeds on a new connection or says "closed", and the one after works.
        let mut outcomes = Vec::new();
        for _ in 0..2 {
            let c = within(LIMIT, "pool get", pool.get()).await.unwrap();
            outcomes.push(
                c.query("SELECT pg_backend_pid()::text", &[])
                    .await
                    .map(|r| r.value(0, 0).map(str::to_owned)),
            );
        }
        for o in &outcomes {
            if let Err(e) = o {
                assert!(e.is_closed(), "{e}");
            }
        }
        let new_pid = outcomes
            .last()
            .unwrap()
            .as_ref()
            .expect("recovered")
            .clone()
            .unwrap();
        assert_ne!(new_pid, first_pid.to_string());
    });
}

#[test]
fn a_caller_gives_up_after_the_pool_timeout() {
    let url = cluster().fresh_database("pool_timeout");
    run(async {
        let options = PoolOptions {
            timeout: Duration::from_millis(300),
            ..fast_pool_options(1)
        };
        let pool = Pool::new(config(&url), ConnectOptions::default(), options.clone());
        let held = pool.get().await.unwrap();
        let err = within(LIMIT, "pool timeout", pool.get())
            .await
            .err()
            .expect("times out");
        assert_eq!(err.kind(), ErrorKind::PoolTimeout);
        assert!(err.to_string().contains("within 300 ms"), "{err}");
        assert!(err.to_string().contains("in use"), "{err}");
        drop(held);
        pool.get().await.expect("free again");

        // Nothing listens on port 1: the error names the last connection failure.
        let nowhere = Pool::new(
            config("postgres://postgres@127.0.0.1:1/x"),
            ConnectOptions::default(),
            options,
        );
        let err = within(LIMIT, "pool timeout", nowhere.get())
            .await
            .err()
            .expect("times out");
        assert_eq!(err.kind(), ErrorKind::PoolTimeout);
        assert!(err.to_string().contains("last connection error"), "{err}");
        assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    });
}

#[test]
fn pooled_query_as_reuses_one_connection() {
    let url = cluster().fresh_database("pool_query_as");
    run(async {
        let pool = Pool::new(
            config(&url),
            ConnectOptions::default(),
            fast_pool_options(2),
        );
        let mut pids = Vec::new();
        for i in 0..5 {
            let n = i.to_string();
            let json = pool
                .query_as(
                    "postgres",
                    r#"{"sub":"x"}"#,
                    "SELECT json_build_object('n', $1::int, 'pid', pg_backend_pid())::text",
                    &[Some(&n)],
                )
                .await
                .unwrap()
                .unwrap();
            assert!(
                json.starts_with(&format!("{{\"n\" : {i}, \"pid\" : ")),
                "{json}"
            );
            pids.push(json);
            assert_eq!(pool.idle_count(), 1, "the connection went back to the pool");
        }
        let pid = |j: &String| backend_pid(j);
        assert!(pids.iter().all(|j| pid(j) == pid(&pids[0])), "{pids:?}");
    });
}

#[test]
fn connections_close_when_their_last_handle_goes_or_they_are_left_in_a_transaction() {
    let cluster = cluster();
    let url = cluster.fresh_database("pool_drop");
    run(async {
        let backends = |name: &str| {
            cluster.psql(
                &url,
                &format!("SELECT count(*) FROM pg_stat_activity WHERE application_name = '{name}'"),
            )
        };
        let gone = |name: &'static str| async move {
            while backends(name) != "0" {
                glommio::timer::sleep(Duration::from_millis(20)).await;
            }
        };

        let c = connect(&format!("{url}?application_name=dropped")).await;
        let clone = c.clone();
        drop(c);
        assert_eq!(
            backends("dropped"),
            "1",
            "a clone keeps the connection open"
        );
        drop(clone);
        within(LIMIT, "backend exit after the last handle", gone("dropped")).await;

        let pool = Pool::new(
            config(&format!("{url}?application_name=abandoned")),
            ConnectOptions::default(),
            fast_pool_options(1),
        );
        let c = pool.get().await.unwrap();
        c.batch_execute("BEGIN; CREATE TABLE half_done (x int)")
            .await
            .unwrap();
        drop(c);
        assert_eq!(
            pool.idle_count(),
            0,
            "not handed to the next caller mid-transaction"
        );
        within(LIMIT, "abandoned backend exit", gone("abandoned")).await;
        let c = pool.get().await.unwrap();
        let rows = c
            .query("SELECT to_regclass('half_done') IS NULL", &[])
            .await
            .unwrap();
        assert_eq!(
            rows.value(0, 0),
            Some("t"),
            "the abandoned transaction rolled back"
        );
    });
}

#[test]
fn concurrent_callers_share_the_pool_size_and_all_get_their_own_answer() {
    let url = cluster().fresh_database("pool_busy");
    run(async {
        let pool = Pool::new(
            config(&url),
            ConnectOptions::default(),
            fast_pool_options(2),
        );
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let pool = pool.clone();
                glommio::spawn_local(async move {
                    let n = i.to_string();
                    let claims = format!(r#"{{"sub":"user{i}"}}"#);
                    let sql = "SELECT json_build_object('n', $1::int, \
                               'sub', current_setting('request.jwt.claims')::json->>'sub', \
                               'pid', pg_backend_pid())::text";
                    pool.query_as("postgres", &claims, sql, &[Some(&n)])
                        .await
                        .unwrap()
                        .unwrap()
                })
            })
            .collect();
        let mut pids = std::collections::HashSet::new();
        for (i, task) in tasks.into_iter().enumerate() {
            let json = within(LIMIT, "pooled query", task).await;
            let expected = format!(r#"{{"n" : {i}, "sub" : "user{i}", "pid" : "#);
            assert!(json.starts_with(&expected), "{json}");
            pids.insert(backend_pid(&json));
        }
        assert!(
            pids.len() <= 2,
            "never more connections than the pool size: {pids:?}"
        );
        assert_eq!(pool.idle_count(), pids.len());
    });
}

/// The `pid` member of the JSON the tests above build, e.g. `{"n" : 1, "pid" : 4242}`.
fn backend_pid(json: &str) -> u32 {
    let (_, after) = json.split_once("\"pid\" : ").expect("a pid member");
    after.trim_end_matches('}').parse().expect("a number")
}

/// Starts a 30 s statement on `pool` and drops it once `when` is ready, as a caller that
/// gave up would.
async fn give_up(pool: &Pool, when: impl std::future::Future<Output = ()>) {
    let gave_up = futures_lite::future::or(
        async {
            Some(
                pool.query_as("postgres", "{}", "SELECT pg_sleep(30)::text", &[])
                    .await,
            )
        },
        async {
            when.await;
            None
        },
    )
    .await;
    assert!(gave_up.is_none(), "the statement ended: {gave_up:?}");
}

#[test]
fn a_statement_nobody_waits_for_is_cancelled_in_the_server() {
    let cluster = cluster();
    let url = cluster.fresh_database("pool_cancel");
    let sleeping = || {
        cluster.psql(
            &url,
            "SELECT count(*) FROM pg_stat_activity \
             WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(30)%'",
        )
    };
    run(async {
        let pool = Pool::new(
            config(&url),
            ConnectOptions::default(),
            fast_pool_options(1),
        );
        // The caller gives up after 300 ms, as a client that left would.
        give_up(&pool, glommio::timer::sleep(Duration::from_millis(300))).await;
        // The pool's one connection is given back once the cancel request went out.
        let answer = pool
            .query_as("postgres", "{}", "SELECT 'next'", &[])
            .await
            .unwrap();
        assert_eq!(answer.as_deref(), Some("next"));
        // Without the cancel, the abandoned statement would sleep on for 30 s.
        let stopped = || async {
            for _ in 0..100 {
                if sleeping() == "0" {
                    return true;
                }
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
            false
        };
        assert!(
            stopped().await,
            "the abandoned statement still runs in the server"
        );

        // Given up at once, before or just after the statement was sent: it must not run on
        // either way (a cancel that arrives before the statement is repeated).
        for _ in 0..20 {
            give_up(&pool, futures_lite::future::yield_now()).await;
        }
        let answer = pool
            .query_as("postgres", "{}", "SELECT 'after'", &[])
            .await
            .unwrap();
        assert_eq!(answer.as_deref(), Some("after"));
        assert!(stopped().await, "a statement given up at once still runs");
    });
}
