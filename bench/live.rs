//! The change path's hot steps, without the database: decoding a notification, finding the
//! live queries that read its table, routing a bulk statement's rows to the live queries
//! they concern, and the leader's broadcast to the shards.
//!
//! ```text
//! cargo bench --bench live
//! ```

#[path = "measure.rs"]
mod measure;

use std::hint::black_box;
use std::rc::Rc;

use measure::measure;
use postrust::broadcast::Broadcaster;
use postrust::catalog::QualifiedName;
use postrust::change::{self, Dirty};
use postrust::live::{Compiled, LiveKey, Outcome, Registry, SkipRule};
use postrust::outbox::Outbox;

/// A live query running `sql` as nobody in particular, reading `public.<table>`.
fn live_key(sql: String, table: &str, skip: SkipRule) -> LiveKey {
    LiveKey {
        compiled: Rc::new(Compiled {
            sql,
            params: Vec::new(),
            tables: vec![QualifiedName {
                schema: "public".into(),
                name: table.into(),
            }],
            skip,
            multiplexed: Default::default(),
            alone: Default::default(),
        }),
        role: None,
        claims: "{}".into(),
    }
}

/// What the docs page's trigger sends for an order.
const PAYLOAD: &[u8] = br#"{"table" : "orders", "operation" : "UPDATE", "data" : {"id":7,"customer_id":2,"total":19.90,"status":"pending","created_at":"2026-11-24T08:00:00+00:00"}}"#;

fn main() {
    let mut work = PAYLOAD.to_vec();
    measure("decode a docs-page notification (178 B)", 1_000_000, || {
        work.copy_from_slice(PAYLOAD);
        black_box(change::decode(black_box(&mut work)).is_ok());
    });

    for live_queries in [10usize, 10_000] {
        let mut registry = Registry::default();
        let outbox = Rc::new(Outbox::default());
        for i in 0..live_queries {
            let slot = outbox.open_slot(b"P");
            // Half read `orders`, half another table: the lookup must tell them apart.
            let table = if i % 2 == 0 { "orders" } else { "products" };
            registry.subscribe(
                live_key(format!("q{i}"), table, SkipRule::default()),
                &outbox,
                slot,
            );
        }
        // Each mark queues the dirty live queries once; taking them keeps the queue short.
        let name = format!("mark the readers of a table ({live_queries} live queries)");
        measure(
            &name,
            if live_queries > 100 { 2_000 } else { 200_000 },
            || {
                black_box(registry.mark_table(Some("public"), black_box("orders")));
                black_box(registry.take_dirty(usize::MAX).len());
            },
        );
    }

    bulk_update(10_000);

    let (senders, receivers): (Vec<_>, Vec<_>) = (0..2).map(|_| flume::bounded(1024)).unzip();
    let mut broadcaster = Broadcaster::new(senders);
    measure(
        "decode and broadcast to 2 shards (receivers drained)",
        200_000,
        || {
            work.copy_from_slice(PAYLOAD);
            let dirty: Dirty = change::classify(&mut work);
            broadcaster.publish(dirty);
            for rx in &receivers {
                while rx.try_recv().is_ok() {}
            }
        },
    );
}

/// One live query per customer, `orders(filter: {customerId: {eq: N}})`, and an UPDATE of
/// one order of each customer, as the project's trigger notifies it (old and new rows):
/// every change concerns one live query. Timed through the registry's routes, and against
/// the plain way of testing every reader of the table with the skip rule, on a sample of
/// the rows (it costs rows × live queries).
fn bulk_update(customers: usize) {
    use postrust::catalog::Catalog;
    use postrust::config::Config;
    use postrust::engine::Engine;
    use std::time::Instant;

    let catalog = Catalog::from_json(include_str!("../tests/fixtures/demo-catalog.json"))
        .expect("fixture catalog");
    let engine = Engine::new(catalog, &Config::from_lookup(|_| None).expect("defaults"));
    let mut registry = Registry::default();
    let outbox = Rc::new(Outbox::default());
    let mut rules = Vec::with_capacity(customers);
    for c in 1..=customers {
        let op = format!(
            "subscription {{ orders(filter: {{ customerId: {{ eq: {c} }} }}) {{ id total }} }}"
        );
        let prepared = engine.prepare(&op, None, None).expect("prepares");
        let skip = SkipRule::new(&prepared, &engine.schema().catalog);
        rules.push(skip.clone());
        registry.subscribe(
            live_key(op, "orders", skip),
            &outbox,
            outbox.open_slot(b"P"),
        );
    }
    // Their first refreshes, done: a change now queues a refresh.
    for job in registry.take_dirty(usize::MAX) {
        registry.finish(job.id, Outcome::Data("[]".into()));
    }
    let changes: Vec<_> = (1..=customers)
        .map(|c| {
            let payload = format!(
                r#"{{"schema":"public","table":"orders","operation":"UPDATE","data":{{"id":{c},"customer_id":{c},"total":2.00,"status":"paid"}},"old":{{"id":{c},"customer_id":{c},"total":1.00,"status":"paid"}}}}"#
            );
            change::decode(&mut payload.into_bytes()).expect("decodes")
        })
        .collect();

    let started = Instant::now();
    let mut marked = 0;
    for c in &changes {
        marked += registry.mark_change(black_box(c)).0;
    }
    let routed = started.elapsed();
    assert_eq!(marked, customers, "each change marks its own live query");
    assert_eq!(registry.take_dirty(usize::MAX).len(), customers);

    let sample = 200;
    let started = Instant::now();
    let mut plain = 0;
    for c in &changes[..sample] {
        plain += rules
            .iter()
            .filter(|r| !r.unaffected_by(black_box(c)))
            .count();
    }
    let tested = started.elapsed();
    assert_eq!(plain, sample);
    let per_row = |d: std::time::Duration, n: usize| d.as_nanos() as f64 / n as f64;
    println!(
        "{:<56} {:>10.1} ns/row",
        format!("route an UPDATE of {customers} rows ({customers} live queries)"),
        per_row(routed, customers)
    );
    println!(
        "{:<56} {:>10.1} ns/row",
        format!("  the same, testing every reader ({sample} rows sampled)"),
        per_row(tested, sample)
    );
}
