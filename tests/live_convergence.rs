//! Convergence: many subscribers with random filters and nestings, thousands of random
//! writes, then quiet: every subscriber's last result equals a fresh query of the same
//! operation. Also with the LISTEN connection killed while the writes go on, and with one
//! subscription per customer (the same shapes, different values: multiplexed refreshes)
//! under both triggers.

mod support;

use std::time::Duration;

use support::gql::{demo_database, psql};
use support::live::{Rng, Subscribers, Writer, fresh_results, random_operation};
use support::server::Server;

/// Subscribers, sockets they share, and write statements in scripts of this size.
const SUBSCRIBERS: usize = 120;
const SOCKETS: usize = 6;
const WRITES: usize = 2000;
const SCRIPT: usize = 50;

/// How long the results may take to settle after the last write: a hang guard.
const SETTLE: Duration = Duration::from_secs(15);

fn setup(env: &[(&str, &str)]) -> (String, Server, Rng) {
    setup_on(demo_database(""), env)
}

fn setup_on(url: String, env: &[(&str, &str)]) -> (String, Server, Rng) {
    let server = Server::start_on(&url, env);
    (url, server, Rng::from_env("live convergence"))
}

/// A demo database whose tables notify through the project's trigger instead of the docs
/// page's (`postrust triggers install`).
fn project_trigger_database() -> String {
    let url = demo_database(
        "DROP TRIGGER users_notify ON users; DROP TRIGGER customers_notify ON customers;
         DROP TRIGGER products_notify ON products; DROP TRIGGER orders_notify ON orders;
         DROP TRIGGER order_items_notify ON order_items;",
    );
    let install = std::process::Command::new(env!("CARGO_BIN_EXE_postrust"))
        .args(["triggers", "install"])
        .env("POSTRUST_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(install.status.success(), "{install:?}");
    url
}

fn operations(rng: &mut Rng) -> Vec<String> {
    let mut ops: Vec<String> = (0..SUBSCRIBERS).map(|_| random_operation(rng)).collect();
    // Some identical subscriptions share a live query, on the same socket or not.
    for i in (0..SUBSCRIBERS).step_by(7) {
        ops[i] = ops[i / 2].clone();
    }
    ops
}

/// Every subscriber's last result equals a fresh query of its operation.
fn assert_same_as_fresh(server: &Server, subs: &Subscribers, ops: &[String]) {
    let expected = fresh_results(server, ops);
    let wrong = subs.converge(&expected, SETTLE);
    for (id, op, got, want) in wrong.iter().take(3) {
        eprintln!("{id}: {op}\n  got:  {got}\n  want: {want}");
    }
    assert_eq!(wrong.len(), 0, "of {} subscribers", ops.len());
}

fn assert_converged(server: &Server, subs: &Subscribers, ops: &[String]) {
    assert_same_as_fresh(server, subs, ops);
    // Guards against a vacuous pass: the writes did move most results.
    let changed = subs.changed();
    eprintln!(
        "{changed} of {} subscribers saw their result change",
        ops.len()
    );
    assert!(changed > ops.len() / 2, "only {changed} results changed");
}

#[test]
fn every_subscriber_converges_after_random_writes() {
    let (url, server, rng) = setup(&[]);
    random_writes_converge(&url, &server, rng);
}

/// The project's trigger sends the old row on UPDATE, so updates that stay outside a root
/// filter are skipped too: the skip rule at work on every kind of write.
#[test]
fn every_subscriber_converges_with_the_project_trigger_skipping_refreshes() {
    let url = project_trigger_database();
    let (url, server, rng) = setup_on(url, &[]);
    random_writes_converge(&url, &server, rng);
    let skipped = support::live::metric(&server, "postrust_refreshes_skipped_total");
    eprintln!("{skipped} refreshes skipped");
    assert!(skipped > 0, "the skip rule was exercised");
}

/// A change queue of two makes the leader coalesce per table for a lagging shard: events
/// lose their rows (no skipping) but never their tables.
#[test]
fn every_subscriber_converges_when_changes_coalesce_for_lagging_shards() {
    let (url, server, rng) = setup(&[("POSTRUST_CHANGE_QUEUE", "2")]);
    random_writes_converge(&url, &server, rng);
    let coalesced = support::live::metric(&server, "postrust_changes_coalesced_total");
    eprintln!("{coalesced} change events coalesced");
    assert!(coalesced > 0, "the shards lagged and the leader coalesced");
}

fn random_writes_converge(url: &str, server: &Server, mut rng: Rng) {
    let ops = operations(&mut rng);
    let subs = Subscribers::open(server, SOCKETS, &ops);
    let mut writer = Writer::new(Rng::from_env("writes"));
    for _ in 0..WRITES / SCRIPT {
        psql(url, &writer.script(SCRIPT));
    }
    assert_converged(server, &subs, &ops);
    subs.close();
}

/// Kills the server's LISTEN connection; returns how many backends were terminated.
fn kill_listener(url: &str) -> u64 {
    psql(
        url,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%';",
    )
    .parse()
    .unwrap()
}

fn listening(url: &str) -> bool {
    psql(
        url,
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%';",
    ) != "0"
}

#[test]
fn every_subscriber_converges_when_the_listen_connection_is_killed_during_writes() {
    let (url, server, mut rng) = setup(&[
        ("POSTRUST_DB_BACKOFF_MIN_MS", "20"),
        ("POSTRUST_DB_BACKOFF_MAX_MS", "200"),
        // What the LISTEN connection went through, should the leader not listen again.
        ("POSTRUST_LOG", "info"),
    ]);
    let ops = operations(&mut rng);
    let subs = Subscribers::open(&server, SOCKETS, &ops);
    let mut writer = Writer::new(Rng::from_env("writes"));
    let mut killed = 0;
    for round in 0..WRITES / SCRIPT {
        if round % 10 == 5 {
            killed += kill_listener(&url);
        }
        psql(&url, &writer.script(SCRIPT));
    }
    assert!(
        killed >= 2,
        "the LISTEN connection was found and killed ({killed})"
    );
    // The last kill may leave no listener for a moment; converge must not depend on luck.
    let deadline = std::time::Instant::now() + SETTLE;
    while !listening(&url) {
        assert!(
            std::time::Instant::now() < deadline,
            "the leader never listened again; the database's sessions:\n{}",
            psql(
                &url,
                "SELECT string_agg(format('%s %s %s', pid, state, left(query, 60)), E'\\n') \
                 FROM pg_stat_activity WHERE datname = current_database();"
            )
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_converged(&server, &subs, &ops);
    subs.close();
}

/// One subscription per customer, the same shapes with different values: their live
/// queries differ only in parameters, so refreshes that come due together run multiplexed.
fn per_variable_operations() -> Vec<String> {
    (1..=12)
        .flat_map(|n| {
            [
                format!(
                    "subscription {{ orders(filter: {{ customerId: {{ eq: {n} }} }}, \
                     orderBy: {{ id: ASC }}) {{ id total status customerId }} }}"
                ),
                format!(
                    "subscription {{ customers(filter: {{ id: {{ eq: {n} }} }}) \
                     {{ id name vip orders(orderBy: {{ id: ASC }}) {{ id total }} }} }}"
                ),
            ]
        })
        .collect()
}

/// Per-variable subscribers under bulk statements that move rows between customers.
fn per_variable_writes_converge(url: &str, server: &Server) {
    let ops = per_variable_operations();
    let subs = Subscribers::open(server, SOCKETS, &ops);
    let mut writer = Writer::new(Rng::from_env("writes"));
    for _ in 0..WRITES / SCRIPT {
        psql(url, &writer.script(SCRIPT));
    }
    assert_same_as_fresh(server, &subs, &ops);
    let multiplexed = support::live::metric(server, "postrust_refreshes_multiplexed_total");
    eprintln!("{multiplexed} refreshes multiplexed");
    assert!(multiplexed > 0, "refreshes ran multiplexed");
    subs.close();
}

#[test]
fn per_variable_subscribers_converge_with_multiplexed_refreshes_under_both_triggers() {
    // The docs page's trigger: no old row, so every change to a table marks all its readers.
    let (url, server, _) = setup(&[]);
    per_variable_writes_converge(&url, &server);
    // The project's trigger: old and new rows, so changes find their live queries by value.
    let url = project_trigger_database();
    let (url, server, _) = setup_on(url, &[]);
    per_variable_writes_converge(&url, &server);
}
