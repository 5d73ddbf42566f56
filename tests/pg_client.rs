//! The PostgreSQL client against a real private server: parameters and types, errors,
//! pipelines, the role-and-claims call and the statement cache.

mod support;

use postrust::pg::{Client, ConnectOptions, ErrorKind, Statement, SyncMode, TransactionStatus};
use support::pg::cluster;
use support::relay::turn_counting_relay;
use support::{LIMIT, config, connect, run, within};

#[test]
fn startup_reports_parameters_and_the_backend_pid() {
    let url = cluster().fresh_database("params");
    run(async {
        let c = connect(&format!("{url}?application_name=param%20test")).await;
        let rows = c
            .query(
                "SELECT pg_backend_pid()::text, current_setting('application_name')",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(rows.value(0, 0), Some(c.process_id().to_string().as_str()));
        assert_eq!(rows.value(0, 1), Some("param test"));
        assert!(c.parameter("server_version").is_some());
        assert_eq!(c.parameter("client_encoding").as_deref(), Some("UTF8"));
        c.batch_execute("SET application_name = 'renamed'")
            .await
            .unwrap();
        assert_eq!(
            c.parameter("application_name").as_deref(),
            Some("renamed"),
            "ParameterStatus is tracked after startup too"
        );
    });
}

#[test]
fn parameters_round_trip_over_the_common_types() {
    let url = cluster().fresh_database("types");
    run(async {
        let c = connect(&url).await;
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("SELECT $1::int + 1", Some("41"), Some("42")),
            (
                "SELECT $1::bigint * 2",
                Some("4611686018427387903"),
                Some("9223372036854775806"),
            ),
            (
                "SELECT $1::numeric / 4",
                Some("1.10"),
                Some("0.27500000000000000000"),
            ),
            ("SELECT $1::float8 * 2", Some("1.5"), Some("3")),
            ("SELECT NOT $1::bool", Some("true"), Some("f")),
            (
                "SELECT $1::text || '!'",
                Some("grüße, 東京"),
                Some("grüße, 東京!"),
            ),
            ("SELECT $1::text IS NULL", None, Some("t")),
            ("SELECT $1::text", None, None),
            (
                "SELECT $1::uuid",
                Some("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
                Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            ),
            (
                "SELECT ($1::timestamptz AT TIME ZONE 'UTC')::text",
                Some("2024-02-29 23:30:00+01"),
                Some("2024-02-29 22:30:00"),
            ),
            (
                "SELECT $1::date + 1",
                Some("2024-12-31"),
                Some("2025-01-01"),
            ),
            (
                "SELECT $1::jsonb -> 'a'",
                Some(r#"{"a": [1, "x"]}"#),
                Some(r#"[1, "x"]"#),
            ),
            (
                "SELECT array_length($1::int[], 1)",
                Some("{1,2,3}"),
                Some("3"),
            ),
            ("SELECT $1::bytea", Some("\\x00ff"), Some("\\x00ff")),
            ("SELECT length($1)", Some(""), Some("0")),
        ];
        for (sql, param, expected) in cases {
            let rows = c
                .query(sql, &[*param])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert_eq!(rows.value(0, 0), *expected, "{sql} with {param:?}");
        }

        c.batch_execute(
            "CREATE TABLE item (id int PRIMARY KEY, name text, price numeric, tags text[])",
        )
        .await
        .unwrap();
        let n = c
            .execute(
                "INSERT INTO item VALUES ($1, $2, $3, $4), ($5, $6, NULL, NULL)",
                &[
                    Some("1"),
                    Some("tea"),
                    Some("2.50"),
                    Some("{hot,\"green tea\"}"),
                    Some("2"),
                    None,
                ],
            )
            .await
            .unwrap();
        assert_eq!(n, 2);
        let rows = c
            .query("SELECT id, name, price, tags[2] FROM item ORDER BY id", &[])
            .await
            .unwrap();
        assert_eq!(rows.columns(), ["id", "name", "price", "tags"]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows.rows()[0].get(3), Some("green tea"));
        assert_eq!(rows.value(1, 1), None);
        assert_eq!(rows.tag(), "SELECT 2");
    });
}

#[test]
fn sql_injection_through_parameters_is_inert() {
    let url = cluster().fresh_database("inject");
    run(async {
        let c = connect(&url).await;
        c.batch_execute("CREATE TABLE victim (v text)")
            .await
            .unwrap();
        let attacks = [
            "'); DROP TABLE victim; --",
            "x' OR '1'='1",
            "1; DELETE FROM victim",
            "$1",
            "\\'; SELECT pg_sleep(10); --",
        ];
        for attack in attacks {
            c.execute("INSERT INTO victim VALUES ($1)", &[Some(attack)])
                .await
                .unwrap();
        }
        let rows = c
            .query("SELECT v FROM victim WHERE v = $1", &[Some("x' OR '1'='1")])
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "the comparison is literal");
        let stored = c.query("SELECT v FROM victim", &[]).await.unwrap();
        let stored: Vec<_> = stored
            .rows()
            .iter()
            .map(|r| r.get(0).unwrap().to_owned())
            .collect();
        assert_eq!(
            stored, attacks,
            "every attack is stored verbatim, the table survives"
        );
    });
}

#[test]
fn a_statement_error_leaves_the_connection_usable() {
    let url = cluster().fresh_database("errors");
    run(async {
        let c = connect(&url).await;
        let err = c
            .query("SELECT 1 / $1::int", &[Some("0")])
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Db);
        assert_eq!(err.code(), Some("22012"));
        assert!(!err.is_closed());
        assert_eq!(
            c.query("SELECT 2", &[]).await.unwrap().value(0, 0),
            Some("2")
        );

        let err = c.query("SELEC 1", &[]).await.unwrap_err();
        assert_eq!(err.code(), Some("42601"));
        assert_eq!(err.as_db_error().unwrap().position, Some(1));
        let err = c.query("SELECT $1::int", &[Some("abc")]).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some("22P02"),
            "a bad value fails at Bind: {err}"
        );

        c.batch_execute(
            "CREATE FUNCTION fail() RETURNS int LANGUAGE plpgsql AS $$ BEGIN \
             RAISE EXCEPTION 'it broke' USING DETAIL = 'the detail', HINT = 'the hint', \
             ERRCODE = 'P0042'; END $$",
        )
        .await
        .unwrap();
        let err = c.query("SELECT fail()", &[]).await.unwrap_err();
        let db = err.as_db_error().unwrap();
        assert_eq!(
            (db.code.as_str(), db.message.as_str()),
            ("P0042", "it broke")
        );
        assert_eq!(db.detail.as_deref(), Some("the detail"));
        assert_eq!(db.hint.as_deref(), Some("the hint"));
        assert_eq!(db.severity, "ERROR");

        let err = c
            .batch_execute("SELECT 1; SELECT * FROM missing; SELECT 3")
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("42P01"));
        assert_eq!(c.transaction_status(), TransactionStatus::Idle);

        let rows = c.simple_query("SELECT 'a'; SELECT 'b', 'c'").await.unwrap();
        assert_eq!(
            (rows[0].value(0, 0), rows[1].value(0, 1)),
            (Some("a"), Some("c"))
        );
        assert_eq!(
            c.query("SELECT 4", &[]).await.unwrap().value(0, 0),
            Some("4")
        );

        // COPY FROM STDIN leaves the server waiting for data. A simple query answers with
        // CopyFail and goes on; in the extended protocol the connection is closed instead
        // of hung (the pool replaces it).
        c.batch_execute("CREATE TABLE copied (x int)")
            .await
            .unwrap();
        let copy = c.batch_execute("COPY copied FROM STDIN");
        let err = within(LIMIT, "COPY via simple query", copy)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("not supported by this client"),
            "{err}"
        );
        assert_eq!(
            c.query("SELECT 5", &[]).await.unwrap().value(0, 0),
            Some("5")
        );
        let copy = c.query("COPY copied FROM STDIN", &[]);
        let err = within(LIMIT, "COPY via query", copy).await.unwrap_err();
        assert!(err.is_closed(), "{err}");
        assert!(
            err.to_string().contains("not supported by this client"),
            "{err}"
        );
    });
}

#[test]
fn a_pipeline_error_in_the_middle_is_reported_and_cleaned_up() {
    let url = cluster().fresh_database("pipeline");
    run(async {
        let c = connect(&url).await;
        c.batch_execute("CREATE TABLE t (n int)").await.unwrap();
        let insert = "INSERT INTO t VALUES ($1::int)";
        let statements = [
            Statement {
                sql: insert,
                params: &[Some("1")],
            },
            Statement {
                sql: insert,
                params: &[Some("not a number")],
            },
            Statement {
                sql: insert,
                params: &[Some("3")],
            },
        ];

        let results = c
            .pipeline(&statements, SyncMode::Transaction)
            .await
            .unwrap();
        assert!(results[0].is_ok());
        assert_eq!(results[1].as_ref().unwrap_err().code(), Some("22P02"));
        assert_eq!(results[2].as_ref().unwrap_err().kind(), ErrorKind::Skipped);
        let count = c.query("SELECT count(*) FROM t", &[]).await.unwrap();
        assert_eq!(
            count.value(0, 0),
            Some("0"),
            "the whole transaction rolled back"
        );

        let results = c.pipeline(&statements, SyncMode::Each).await.unwrap();
        assert!(results[0].is_ok() && results[1].is_err() && results[2].is_ok());
        let count = c.query("SELECT count(*) FROM t", &[]).await.unwrap();
        assert_eq!(
            count.value(0, 0),
            Some("2"),
            "independent statements stand alone"
        );

        // The design's literal sequence with an explicit block that fails in the middle:
        // COMMIT is skipped, so the client must roll back before handing the connection on.
        let explicit = [
            Statement {
                sql: "BEGIN",
                params: &[],
            },
            Statement {
                sql: "SET LOCAL statement_timeout = '5s'",
                params: &[],
            },
            Statement {
                sql: insert,
                params: &[Some("4")],
            },
            Statement {
                sql: "SELECT 1 / 0",
                params: &[],
            },
            Statement {
                sql: "COMMIT",
                params: &[],
            },
        ];
        let results = c.pipeline(&explicit, SyncMode::Transaction).await.unwrap();
        assert_eq!(results[3].as_ref().unwrap_err().code(), Some("22012"));
        assert_eq!(results[4].as_ref().unwrap_err().kind(), ErrorKind::Skipped);
        assert_eq!(c.transaction_status(), TransactionStatus::Idle);
        assert!(c.is_idle());
        let count = c.query("SELECT count(*) FROM t", &[]).await.unwrap();
        assert_eq!(count.value(0, 0), Some("2"));

        // A batch that cannot be encoded sends nothing and leaves no trace in the cache.
        let unsendable = [
            Statement {
                sql: "SELECT 'fresh'",
                params: &[],
            },
            Statement {
                sql: "SELECT 'nul\0'",
                params: &[],
            },
        ];
        let err = c.pipeline(&unsendable, SyncMode::Each).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        let fresh = c.query("SELECT 'fresh'", &[]).await.unwrap();
        assert_eq!(fresh.value(0, 0), Some("fresh"));

        // Success through the same explicit block commits.
        let explicit = [
            Statement {
                sql: "BEGIN",
                params: &[],
            },
            Statement {
                sql: insert,
                params: &[Some("5")],
            },
            Statement {
                sql: "COMMIT",
                params: &[],
            },
        ];
        for r in c.pipeline(&explicit, SyncMode::Transaction).await.unwrap() {
            r.unwrap();
        }
        let count = c.query("SELECT count(*) FROM t", &[]).await.unwrap();
        assert_eq!(count.value(0, 0), Some("3"));
    });
}

#[test]
fn query_as_runs_under_the_role_and_claims_and_leaves_nothing_behind() {
    let url = cluster().fresh_database("roles");
    run(async {
        let c = connect(&url).await;
        c.batch_execute(
            "DO $$ BEGIN CREATE ROLE web_user NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
             CREATE TABLE note (owner text, body text);
             INSERT INTO note VALUES ('alice', 'a1'), ('alice', 'a2'), ('bob', 'b1');
             ALTER TABLE note ENABLE ROW LEVEL SECURITY;
             CREATE POLICY mine ON note TO web_user
               USING (owner = current_setting('request.jwt.claims', true)::json->>'sub');
             GRANT SELECT ON note TO web_user;",
        )
        .await
        .unwrap();
        let sql = "SELECT json_build_object('user', current_user, 'notes', \
                   (SELECT json_agg(body ORDER BY body) FROM note WHERE body LIKE $1))::text";
        let json = c
            .query_as(
                "web_user",
                r#"{"sub":"alice","role":"web_user"}"#,
                None,
                sql,
                &[Some("%")],
            )
            .await
            .unwrap();
        assert_eq!(
            json.as_deref(),
            Some(r#"{"user" : "web_user", "notes" : ["a1", "a2"]}"#)
        );
        let json = c
            .query_as("web_user", r#"{"sub":"bob"}"#, None, sql, &[Some("b%")])
            .await
            .unwrap();
        assert_eq!(
            json.as_deref(),
            Some(r#"{"user" : "web_user", "notes" : ["b1"]}"#)
        );

        let after = c
            .query(
                "SELECT current_user::text, current_setting('request.jwt.claims', true)",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            after.value(0, 0),
            Some("postgres"),
            "the role ended with the transaction"
        );
        assert_eq!(after.value(0, 1).unwrap_or(""), "", "so did the claims");

        let err = c
            .query_as("no_such_role", "{}", None, sql, &[Some("%")])
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("22023"), "{err}");
        let err = c
            .query_as("web_user", "{}", None, "SELECT * FROM nowhere", &[])
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("42P01"), "{err}");
        let err = c
            .query_as(
                "web_user",
                "{}",
                None,
                "SELECT json_agg(x)::text FROM pg_authid x",
                &[],
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some("42501"),
            "the role's privileges apply: {err}"
        );
        assert!(c.is_idle());
        assert_eq!(
            c.query("SELECT current_user::text", &[])
                .await
                .unwrap()
                .value(0, 0),
            Some("postgres")
        );
        let none = c
            .query_as("web_user", "{}", None, "SELECT NULL::text", &[])
            .await
            .unwrap();
        assert_eq!(none, None);

        // A statement timeout set in the same round trip bounds the query after it, and
        // ends with the transaction like the role.
        let err = c
            .query_as(
                "web_user",
                "{}",
                Some("50"),
                "SELECT pg_sleep(5)::text",
                &[],
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("57014"), "{err}");
        let fast = c
            .query_as("web_user", "{}", Some("5000"), "SELECT 'quick'", &[])
            .await
            .unwrap();
        assert_eq!(fast.as_deref(), Some("quick"));
        assert_eq!(
            c.query("SELECT current_setting('statement_timeout')", &[])
                .await
                .unwrap()
                .value(0, 0),
            Some("0"),
            "the timeout ended with the transaction"
        );

        // Several users' queries in one round trip: each sees only its own role, claims
        // and rows, a failing one fails alone, and nothing is left behind.
        let each = |role, claims, sql| postrust::pg::AsClient {
            role,
            claims,
            sql,
            params: &[Some("%")],
        };
        let answers = c
            .query_each_as(
                Some("5000"),
                &[
                    each("web_user", r#"{"sub":"alice"}"#, sql),
                    each("no_such_role", r#"{"sub":"alice"}"#, sql),
                    each("web_user", r#"{"sub":"bob"}"#, sql),
                    each(
                        "web_user",
                        r#"{"sub":"carol"}"#,
                        "SELECT 1 / 0 WHERE $1 <> ''",
                    ),
                    each(
                        "postgres",
                        r#"{"sub":"dave"}"#,
                        "SELECT current_user || ' ' || current_setting('request.jwt.claims') \
                         || ' ' || $1",
                    ),
                ],
            )
            .await
            .unwrap();
        assert_eq!(answers.len(), 5);
        assert_eq!(
            answers[0].as_ref().unwrap().as_deref(),
            Some(r#"{"user" : "web_user", "notes" : ["a1", "a2"]}"#)
        );
        assert_eq!(answers[1].as_ref().unwrap_err().code(), Some("22023"));
        assert_eq!(
            answers[2].as_ref().unwrap().as_deref(),
            Some(r#"{"user" : "web_user", "notes" : ["b1"]}"#),
            "bob's query after a failed one runs, as bob"
        );
        assert_eq!(answers[3].as_ref().unwrap_err().code(), Some("22012"));
        assert_eq!(
            answers[4].as_ref().unwrap().as_deref(),
            Some(r#"postgres {"sub":"dave"} %"#)
        );
        let after = c
            .query(
                "SELECT current_user::text, current_setting('request.jwt.claims', true), \
                 current_setting('statement_timeout')",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(after.value(0, 0), Some("postgres"));
        assert_eq!(after.value(0, 1).unwrap_or(""), "");
        assert_eq!(after.value(0, 2), Some("0"));
        assert!(c.is_idle());
    });
}

#[test]
fn prepared_statements_are_cached_and_bounded() {
    let url = cluster().fresh_database("cache");
    run(async {
        let options = ConnectOptions {
            statement_cache: 3,
            ..ConnectOptions::default()
        };
        let c = Client::connect(&config(&url), &options).await.unwrap();
        let count = "SELECT count(*)::text FROM pg_prepared_statements";
        for _ in 0..3 {
            c.query("SELECT $1::int", &[Some("1")]).await.unwrap();
        }
        // The counting statement itself is prepared too: two in the cache.
        assert_eq!(c.query(count, &[]).await.unwrap().value(0, 0), Some("2"));
        c.query("SELECT 'third'", &[]).await.unwrap();
        c.query("SELECT 'fourth'", &[]).await.unwrap();
        let rows = c.query(count, &[]).await.unwrap();
        assert_eq!(
            rows.value(0, 0),
            Some("3"),
            "the evicted statement is closed on the server"
        );
        // A statement whose Parse failed is not cached: it fails the same way again.
        for _ in 0..2 {
            let err = c.query("SELECT * FROM later", &[]).await.unwrap_err();
            assert_eq!(err.code(), Some("42P01"));
        }
        c.batch_execute("CREATE TABLE later (x int)").await.unwrap();
        c.query("SELECT * FROM later", &[]).await.unwrap();
    });
}

#[test]
fn a_statement_prepared_before_a_schema_change_is_prepared_again() {
    let url = cluster().fresh_database("stale");
    run(async {
        let c = connect(&url).await;
        c.batch_execute("CREATE TABLE s (a int); INSERT INTO s VALUES (1)")
            .await
            .unwrap();
        let rows = c.query("SELECT * FROM s", &[]).await.unwrap();
        assert_eq!(rows.columns(), ["a"]);
        c.batch_execute("ALTER TABLE s ADD COLUMN b text DEFAULT 'x'")
            .await
            .unwrap();
        let rows = c.query("SELECT * FROM s", &[]).await.unwrap();
        assert_eq!(rows.columns(), ["a", "b"]);
        assert_eq!(rows.value(0, 1), Some("x"));
        let json = c
            .query_as(
                "postgres",
                "{}",
                None,
                "SELECT json_agg(s)::text FROM (SELECT * FROM s) s",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(json.as_deref(), Some(r#"[{"a":1,"b":"x"}]"#));
        c.batch_execute("ALTER TABLE s ADD COLUMN c int")
            .await
            .unwrap();
        let json = c
            .query_as(
                "postgres",
                "{}",
                None,
                "SELECT json_agg(s)::text FROM (SELECT * FROM s) s",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(json.as_deref(), Some(r#"[{"a":1,"b":"x","c":null}]"#));

        // Several users' queries in one round trip are sent again as a whole.
        let each = postrust::pg::AsClient {
            role: "postgres",
            claims: "{}",
            sql: "SELECT b FROM s",
            params: &[],
        };
        let answers = c.query_each_as(None, &[each, each]).await.unwrap();
        assert_eq!(answers[0].as_ref().unwrap().as_deref(), Some("x"));
        c.batch_execute(
            "ALTER TABLE s ALTER COLUMN b DROP DEFAULT, ALTER COLUMN b TYPE int USING 7",
        )
        .await
        .unwrap();
        let answers = c.query_each_as(None, &[each, each]).await.unwrap();
        for answer in answers {
            assert_eq!(answer.unwrap().as_deref(), Some("7"));
        }
    });
}

#[test]
fn clones_share_a_connection_and_pipeline_their_requests() {
    let url = cluster().fresh_database("clones");
    run(async {
        let c = connect(&url).await;
        let queries: Vec<_> = (0..50)
            .map(|i| {
                let c = c.clone();
                glommio::spawn_local(async move {
                    let n = i.to_string();
                    let rows = c
                        .query("SELECT $1::int * 2, pg_backend_pid()", &[Some(&n)])
                        .await
                        .unwrap();
                    (
                        rows.value(0, 0).unwrap().to_owned(),
                        rows.value(0, 1).unwrap().to_owned(),
                    )
                })
            })
            .collect();
        for (i, q) in queries.into_iter().enumerate() {
            let (doubled, pid) = q.await;
            assert_eq!(doubled, (i * 2).to_string());
            assert_eq!(pid, c.process_id().to_string());
        }
    });
}

#[test]
fn query_as_and_a_transaction_pipeline_cost_one_round_trip() {
    let url = cluster().fresh_database("turns");
    let (authority, db) = url.rsplit_once('@').unwrap().1.split_once('/').unwrap();
    let (relay, turns) = turn_counting_relay(authority);
    run(async {
        let c = connect(&format!("postgres://postgres@{relay}/{db}")).await;
        c.batch_execute("CREATE TABLE t (n int)").await.unwrap();
        let turns_now = || turns.lock().unwrap().count;
        // The counter works: two awaited queries are two turns.
        let before = turns_now();
        c.query("SELECT 1", &[]).await.unwrap();
        c.query("SELECT 2", &[]).await.unwrap();
        assert_eq!(turns_now() - before, 2);

        for i in 0..3 {
            let before = turns_now();
            let n = i.to_string();
            let json = c
                .query_as(
                    "postgres",
                    r#"{"sub":"x"}"#,
                    None,
                    "SELECT json_build_object('n', $1::int)::text",
                    &[Some(&n)],
                )
                .await
                .unwrap();
            assert_eq!(json, Some(format!("{{\"n\" : {i}}}")));
            assert_eq!(
                turns_now() - before,
                1,
                "query_as #{i} (first one prepares too)"
            );
        }

        let before = turns_now();
        let params = [[Some("1")], [Some("2")], [Some("3")]];
        let queries: Vec<postrust::pg::AsClient> = params
            .iter()
            .map(|params| postrust::pg::AsClient {
                role: "postgres",
                claims: "{}",
                sql: "SELECT $1::text",
                params,
            })
            .collect();
        let answers = c.query_each_as(None, &queries).await.unwrap();
        let answers: Vec<_> = answers.into_iter().map(|a| a.unwrap()).collect();
        assert_eq!(
            answers,
            [Some("1".into()), Some("2".into()), Some("3".into())]
        );
        assert_eq!(
            turns_now() - before,
            1,
            "three users' queries in one round trip"
        );

        let before = turns_now();
        let statements = [
            Statement {
                sql: "BEGIN",
                params: &[],
            },
            Statement {
                sql: "SET LOCAL ROLE postgres",
                params: &[],
            },
            Statement {
                sql: "SELECT set_config('request.jwt.claims', $1, true)",
                params: &[Some("{}")],
            },
            Statement {
                sql: "INSERT INTO t VALUES ($1::int)",
                params: &[Some("1")],
            },
            Statement {
                sql: "SELECT count(*)::text FROM t",
                params: &[],
            },
            Statement {
                sql: "COMMIT",
                params: &[],
            },
        ];
        let results = c
            .pipeline(&statements, SyncMode::Transaction)
            .await
            .unwrap();
        assert_eq!(results[4].as_ref().unwrap().value(0, 0), Some("1"));
        assert_eq!(turns_now() - before, 1, "BEGIN … COMMIT in one round trip");
    });
}

#[test]
fn notices_are_logged_at_their_level_and_do_not_disturb_results() {
    support::logs::capture();
    let url = cluster().fresh_database("notices");
    run(async {
        let c = connect(&url).await;
        c.batch_execute(
            "CREATE FUNCTION chatty(n int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN \
             RAISE NOTICE 'chatty notice %', n; RAISE WARNING 'chatty warning %', n; \
             RETURN n + 1; END $$",
        )
        .await
        .unwrap();
        let rows = c
            .query("SELECT chatty($1::int)", &[Some("41")])
            .await
            .unwrap();
        assert_eq!(rows.value(0, 0), Some("42"));
        let notice = support::logs::containing("chatty notice 41");
        assert_eq!(notice.len(), 1, "{notice:?}");
        assert_eq!(notice[0].0, log::Level::Info);
        assert!(notice[0].1.contains("NOTICE 00000"), "{notice:?}");
        let warning = support::logs::containing("chatty warning 41");
        assert_eq!(warning.len(), 1, "{warning:?}");
        assert_eq!(warning[0].0, log::Level::Warn);
    });
}
