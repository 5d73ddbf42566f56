//! Start-up conditions: an unprivileged user under a small locked-memory limit, and many
//! connections at once through the load-test harness.

mod support;

use std::process::Command;

use support::server::{Server, free_port};

/// io_uring buffer registration counts against `ulimit -l` for users other than root;
/// the server must start there too. Runs only where it can switch users (as root).
#[test]
fn starts_as_an_unprivileged_user_under_an_8_mib_memlock_limit() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: this test needs to switch to the postgres user; skipped");
        return;
    }
    // The build directory may not be readable by other users; run a copy.
    let dir = std::env::temp_dir().join(format!("postrust-unprivileged-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("postrust");
    std::fs::copy(env!("CARGO_BIN_EXE_postrust"), &bin).unwrap();
    Command::new("chmod")
        .args(["-R", "a+rx"])
        .arg(&dir)
        .status()
        .unwrap();

    let port = free_port();
    let script = format!(
        "ulimit -l 8192 && POSTRUST_LISTEN=127.0.0.1:{port} POSTRUST_SHARDS=2 \
         POSTRUST_DATABASE_URL={} POSTRUST_LOG=info timeout --preserve-status -s TERM 2 {} ; \
         echo exit=$?",
        support::server::shared_demo(),
        bin.display()
    );
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--", "bash", "-c", &script])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("listening on 127.0.0.1:{port} with 2 shards")),
        "{stderr}"
    );
    assert!(stderr.contains("stopped"), "{stderr}");
    // `timeout` sent SIGTERM; the server shut down and exited 0.
    assert!(stdout.contains("exit=0"), "{stdout}\n{stderr}");
}

#[test]
fn every_shard_listens_with_the_configured_backlog() {
    let server = Server::start(&[("POSTRUST_SHARDS", "2"), ("POSTRUST_LISTEN_BACKLOG", "77")]);
    // `/health` answers once the first shard listens; the second may bind a moment later.
    let started = std::time::Instant::now();
    let (text, backlogs) = loop {
        let out = Command::new("ss")
            .args(["-ltnH", &format!("sport = :{}", server.addr.port())])
            .output()
            .expect("run ss");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let backlogs: Vec<String> = text
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
            .collect();
        if backlogs.len() >= 2 || started.elapsed() > support::LIMIT {
            break (text, backlogs);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(
        backlogs,
        ["77", "77"],
        "one listening socket per shard: {text}"
    );
}

#[test]
fn the_soft_descriptor_limit_is_raised_to_the_hard_limit() {
    let port = free_port();
    let script = format!(
        "ulimit -Sn 256 && POSTRUST_LISTEN=127.0.0.1:{port} POSTRUST_SHARDS=1 \
         POSTRUST_DATABASE_URL={} timeout --preserve-status -s TERM 1 {}",
        support::server::shared_demo(),
        env!("CARGO_BIN_EXE_postrust")
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let hard = Command::new("bash")
        .args(["-c", "ulimit -Hn"])
        .output()
        .unwrap();
    let hard = String::from_utf8_lossy(&hard.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("file descriptor limit: {hard}")),
        "soft limit 256 raised to the hard limit {hard}: {stderr}"
    );
}

/// Runs the load-test harness with `args`, asserts it exited 0, and returns its output.
fn harness(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_postrust-loadtest"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_load_test_harness_opens_and_initialises_many_connections() {
    let server = Server::start(&[]);
    let url = format!("ws://{}/graphql", server.addr);
    let out = harness(&[
        "idle",
        "--url",
        &url,
        "--connections",
        "300",
        "--concurrency",
        "64",
        "--sources",
        "3",
    ]);
    assert!(out.contains(r#""connections":300,"errors":0"#), "{out}");
}

/// Every small fan-out run: 200 sockets × 3 subscriptions over 2 workers.
const SMALL: [&str; 8] = [
    "--connections",
    "200",
    "--subs-per-conn",
    "3",
    "--workers",
    "2",
    "--sources",
    "2",
];
/// 5 changes, 50 ms apart.
const CHANGES: [&str; 4] = ["--writes", "5", "--interval-ms", "50"];
/// 120 subscriptions churning every 10 ms while 10 changes are made 50 ms apart.
const CHURN: [&str; 8] = [
    "--writes",
    "10",
    "--interval-ms",
    "50",
    "--churn",
    "120",
    "--churn-pause-ms",
    "10",
];
/// 20 changes a second for 3 seconds.
const RATE: [&str; 4] = ["--rate", "20", "--duration-secs", "3"];

/// Runs a small fan-out of `load` against `target` (the flags that name it and the
/// scenario) with a quiet time of `quiet` seconds, and returns the output.
fn small_fanout(target: &[&str], load: &[&str], quiet: &str) -> String {
    let mut args = vec!["fanout"];
    args.extend(target);
    args.extend(SMALL);
    args.extend(load);
    args.extend(["--json", "--quiet-secs", quiet]);
    harness(&args)
}

/// A small fan-out of `load` against the floor.
fn floor_fanout(load: &[&str]) -> String {
    small_fanout(&["--target", "floor"], load, "5")
}

#[test]
fn the_fan_out_harness_runs_against_the_floor_without_loss() {
    let out = floor_fanout(&CHANGES);
    assert!(
        out.contains(r#""connections":200,"subscriptions":600"#),
        "{out}"
    );
    assert!(
        out.contains(r#""received":3000,"#),
        "600 subscriptions × 5 changes: {out}"
    );
    assert!(out.contains(r#""lost":0,"errors":0"#), "{out}");
}

/// A database with the load-test table, and the server on it without a subscribe rate.
fn loadtest_server() -> (String, Server) {
    let cluster = support::pg::cluster();
    let url = cluster.fresh_database("loadtest");
    let schema = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("loadtest/schema.sql");
    cluster.psql(&url, &std::fs::read_to_string(schema).unwrap());
    let server = Server::start_on(&url, &[("POSTRUST_SUBSCRIBE_RATE", "0")]);
    (url, server)
}

/// A small fan-out of `scenario` and `load` against the server of [`loadtest_server`].
fn fanout_against(server: &(String, Server), scenario: &str, load: &[&str]) -> String {
    let (url, server) = server;
    let ws = format!("ws://{}/graphql", server.addr);
    let target = ["--target", "postrust", "--scenario", scenario];
    let target = [&target[..], &["--url", &ws, "--database-url", url]].concat();
    small_fanout(&target, load, "10")
}

#[test]
fn the_fan_out_harness_runs_against_the_server_without_loss() {
    let server = loadtest_server();
    for scenario in ["shared", "distinct"] {
        let out = fanout_against(&server, scenario, &CHANGES);
        assert!(
            out.contains(r#""connections":200,"subscriptions":600"#),
            "{scenario}: {out}"
        );
        // Latest wins: a result replaced before it was sent is not lost, so only the final
        // value of every subscription is required.
        assert!(out.contains(r#""lost":0,"errors":0"#), "{scenario}: {out}");
    }
}

/// The report of `label` among the harness's JSON lines.
fn report(out: &str, label: &str) -> serde_json::Value {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["label"] == label)
        .unwrap_or_else(|| panic!("no {label} report: {out}"))
}

/// Checks a churn report: the run churned, and every subscription, the churning ones too,
/// came to show the last value.
fn assert_churned(r: &serde_json::Value) {
    assert_eq!(r["subscriptions"], 600, "{r}");
    assert_eq!(r["churn"], 120, "{r}");
    assert!(r["churn_cycles"].as_u64().unwrap() > 0, "{r}");
    assert!(r["resub_max_ns"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["stale_first"], 0, "{r}");
    assert_eq!((&r["lost"], &r["errors"]), (&0.into(), &0.into()), "{r}");
}

#[test]
fn the_harness_churns_subscriptions_against_the_floor() {
    let r = report(&floor_fanout(&CHURN), "floor");
    assert_churned(&r);
    // The floor sends every change to every subscription: 480 steady ones × 10 changes.
    assert_eq!(r["received"], 4800, "{r}");
}

#[test]
fn the_harness_churns_subscriptions_against_the_server() {
    let server = loadtest_server();
    // `shared`: every resubscription joins a running live query, and its first result must
    // not predate a commit the client knew of; `distinct`: each resubscription starts a
    // live query of its own.
    for scenario in ["shared", "distinct"] {
        let out = fanout_against(&server, scenario, &CHURN);
        assert_churned(&report(&out, "postrust"));
    }
}

/// Checks a steady-rate report: every write made, a second per second of writing at least,
/// and the seconds account for every steady receipt.
fn assert_steady(r: &serde_json::Value) {
    assert_eq!(r["subscriptions"], 600, "{r}");
    assert_eq!((&r["rate"], &r["writes"]), (&20.into(), &60.into()), "{r}");
    assert!(r["achieved_rate"].as_f64().unwrap() > 0.0, "{r}");
    let seconds = r["intervals"].as_array().unwrap();
    assert!(seconds.len() >= 3, "{r}");
    let writes: u64 = seconds.iter().map(|s| s["writes"].as_u64().unwrap()).sum();
    assert_eq!(writes, 60, "{r}");
    let receipts: u64 = seconds
        .iter()
        .map(|s| s["receipts"].as_u64().unwrap())
        .sum();
    assert_eq!(receipts, r["received"].as_u64().unwrap(), "{r}");
    assert_eq!((&r["lost"], &r["errors"]), (&0.into(), &0.into()), "{r}");
}

#[test]
fn the_harness_writes_at_a_steady_rate_against_the_floor() {
    let r = report(&floor_fanout(&RATE), "floor");
    assert_steady(&r);
    assert_eq!(r["received"], 600 * 60, "{r}");
}

#[test]
fn the_harness_writes_at_a_steady_rate_against_the_server() {
    let server = loadtest_server();
    let out = fanout_against(&server, "shared", &RATE);
    assert_steady(&report(&out, "postrust"));
}

#[test]
fn the_floor_refuses_a_port_someone_listens_on() {
    // The floor exits with the reason instead of serving half-bound: the harness relies on
    // that exit to start it again on other ports.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let control = format!("127.0.0.1:{}", free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_postrust-loadtest"))
        .args(["floor", "--listen", &listen, "--control", &control])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("the floor's port"), "{stderr}");
}

#[test]
fn the_version_is_printed_whatever_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_postrust"))
        .arg("--version")
        .env("POSTRUST_SHARDS", "not a number")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("postrust {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_misspelt_setting_is_warned_about_at_start() {
    let port = free_port();
    let script = format!(
        "POSTRUST_LISTEN=127.0.0.1:{port} POSTRUST_SHARD=2 POSTRUST_LOG=warn \
         POSTRUST_DATABASE_URL={} timeout --preserve-status -s TERM 1 {}",
        support::server::shared_demo(),
        env!("CARGO_BIN_EXE_postrust")
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "POSTRUST_SHARD is not a setting and is ignored; did you mean POSTRUST_SHARDS?"
        ),
        "{stderr}"
    );
}

#[test]
fn the_start_summarises_what_is_served_and_warns_about_what_would_go_wrong() {
    let url = support::gql::demo_database(
        "CREATE TABLE quiet (id int PRIMARY KEY);\n\
         ALTER TABLE customers ENABLE ROW LEVEL SECURITY;\n\
         CREATE VIEW vip_customers AS SELECT * FROM customers WHERE vip;\n\
         CREATE VIEW vip_customers_checked WITH (security_invoker = true) AS \
           SELECT * FROM customers WHERE vip;",
    );
    let port = free_port();
    let script = format!(
        "POSTRUST_LISTEN=127.0.0.1:{port} POSTRUST_DB_SCHEMAS=public,nosuch POSTRUST_LOG=info \
         POSTRUST_DATABASE_URL={url} timeout --preserve-status -s TERM 2 {}",
        env!("CARGO_BIN_EXE_postrust")
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "serving schema \"public\": tables customers, order_items, orders, products, quiet, users; \
         views sales_dashboard, sales_headline, vip_customers, vip_customers_checked",
        "schema \"nosuch\" serves nothing",
        "public.quiet has no change trigger",
        "view public.vip_customers reads a table with row-level security",
    ] {
        assert!(stderr.contains(expected), "{expected:?} not in:\n{stderr}");
    }
    assert!(
        !stderr.contains("public.orders has no change trigger"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("view public.vip_customers_checked"),
        "{stderr}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let port = free_port();
    let script = format!(
        "POSTRUST_LISTEN=127.0.0.1:{port} POSTRUST_LOG_FORMAT=json POSTRUST_SHARDS=1 \
         POSTRUST_DATABASE_URL={} timeout --preserve-status -s TERM 1 {}",
        support::server::shared_demo(),
        env!("CARGO_BIN_EXE_postrust")
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["msg"].as_str().unwrap().starts_with("listening on")),
        "{stderr}"
    );
}
