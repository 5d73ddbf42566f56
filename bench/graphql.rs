//! Parse + validate + compile of the docs page's subscriptions, per operation.
//!
//!     cargo bench --bench graphql
//!
//! Prints nanoseconds per `Engine::prepare` call (and per parse alone) for each operation, on
//! the demo catalog
//! (`tests/fixtures/demo-catalog.json`); no database is involved.

#[path = "../tests/support/docs.rs"]
mod docs;

use std::hint::black_box;
use std::time::{Duration, Instant};

use postrust::catalog::Catalog;
use postrust::config::Config;
use postrust::engine::Engine;

/// Runs `f` for at least `budget`, in rounds, and returns the fastest round's ns per call.
fn measure(budget: Duration, mut f: impl FnMut()) -> f64 {
    const ROUND: u32 = 200;
    let start = Instant::now();
    let mut best = f64::MAX;
    while start.elapsed() < budget {
        let t = Instant::now();
        for _ in 0..ROUND {
            f();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / f64::from(ROUND));
    }
    best
}

fn main() {
    let catalog = Catalog::from_json(include_str!("../tests/fixtures/demo-catalog.json"))
        .expect("fixture catalog");
    let config = Config::from_lookup(|_| None).expect("default config");
    let engine = Engine::new(catalog, &config);
    let names = [
        "users",
        "pending orders",
        "sales dashboard",
        "js client",
        "apollo",
    ];
    for (name, op) in names.iter().zip(docs::OPERATIONS) {
        engine
            .prepare(op, None, None)
            .expect("docs operation prepares");
        let ns = measure(Duration::from_millis(500), || {
            black_box(engine.prepare(black_box(op), None, None).ok());
        });
        let parse = measure(Duration::from_millis(200), || {
            black_box(async_graphql_parser::parse_query(black_box(op)).ok());
        });
        println!("prepare {name:<16} {ns:>9.0} ns/op   (of which parsing {parse:>7.0} ns)");
    }
}
