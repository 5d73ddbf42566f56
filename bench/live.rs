//! The change path's hot steps, without the database: decoding a notification, finding the
//! live queries that read its table, and the leader's broadcast to the shards.
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
use postrust::change::{self, Dirty};
use postrust::connection::Outbox;
use postrust::live::{LiveKey, Plan, Registry, SkipRule, TableRef};

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
            let key = LiveKey {
                operation: format!("q{i}").into(),
                variables: "".into(),
                role: None,
                claims: "{}".into(),
            };
            registry.subscribe(
                key,
                || Plan {
                    sql: String::new(),
                    params: Vec::new(),
                    tables: vec![TableRef {
                        schema: "public".into(),
                        table: table.into(),
                    }],
                    skip: SkipRule::default(),
                },
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
                for id in 0..live_queries / 2 {
                    let _ = id;
                }
            },
        );
    }

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
