//! The timing loop the micro-benchmarks share.

use std::time::Instant;

/// Runs `f` a tenth of `iterations` times to warm up, then `iterations` times, and prints
/// the mean time per call.
pub fn measure(name: &str, iterations: u32, mut f: impl FnMut()) {
    for _ in 0..iterations / 10 {
        f();
    }
    let started = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let ns = started.elapsed().as_nanos() as f64 / f64::from(iterations);
    println!("{name:<56} {ns:>10.1} ns/op");
}
