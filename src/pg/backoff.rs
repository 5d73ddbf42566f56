//! When to try connecting again after failures: exponential backoff with jitter.
//!
//! The wait doubles per consecutive failure from `min` up to `max`; each wait is drawn
//! between half and all of that value ("equal jitter"), so shards and instances that lost
//! the database at the same moment do not all come back at the same moment. Pure: the
//! caller passes the clock and the random draw, so tests need neither.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
    /// No attempt before this instant.
    not_before: Option<Instant>,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            failures: 0,
            not_before: None,
        }
    }

    /// Records a failed attempt at `now`; `draw` is a random number in `[0, 1)`. Returns the
    /// wait before the next attempt.
    pub fn failed(&mut self, now: Instant, draw: f64) -> Duration {
        let ceiling = self
            .min
            .checked_mul(1u32 << self.failures.min(20))
            .map_or(self.max, |d| d.min(self.max));
        self.failures = self.failures.saturating_add(1);
        let wait = ceiling.div_f64(2.0).mul_f64(1.0 + draw.clamp(0.0, 1.0));
        self.not_before = Some(now + wait);
        wait
    }

    /// Records a success: the next failure starts from `min` again.
    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.not_before = None;
    }

    /// How long to wait at `now` before the next attempt is allowed.
    pub fn wait(&self, now: Instant) -> Duration {
        self.not_before
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now))
    }
}

/// A random draw in `[0, 1)` for [`Backoff::failed`].
pub fn jitter() -> f64 {
    rand::random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_double_up_to_the_maximum() {
        let now = Instant::now();
        let mut b = Backoff::new(100 * MS, 1000 * MS);
        assert_eq!(
            b.wait(now),
            Duration::ZERO,
            "the first attempt does not wait"
        );
        // A draw of 1.0 gives the ceiling itself.
        let ceilings: Vec<_> = (0..6).map(|_| b.failed(now, 1.0)).collect();
        assert_eq!(
            ceilings,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
        assert_eq!(b.wait(now), 1000 * MS);
        assert_eq!(b.wait(now + 400 * MS), 600 * MS);
        assert_eq!(b.wait(now + 2000 * MS), Duration::ZERO);
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_ceiling() {
        let now = Instant::now();
        let mut low = Backoff::new(100 * MS, 1000 * MS);
        let mut high = low.clone();
        for _ in 0..3 {
            low.failed(now, 0.0);
            high.failed(now, 0.999);
        }
        assert_eq!(low.wait(now), 200 * MS);
        let high = high.wait(now);
        assert!(high > 390 * MS && high <= 400 * MS, "{high:?}");
        let drawn = jitter();
        assert!((0.0..1.0).contains(&drawn));
    }

    #[test]
    fn success_resets() {
        let now = Instant::now();
        let mut b = Backoff::new(100 * MS, 1000 * MS);
        for _ in 0..5 {
            b.failed(now, 1.0);
        }
        b.succeeded();
        assert_eq!(b.wait(now), Duration::ZERO);
        assert_eq!(b.failed(now, 1.0), 100 * MS);
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        let now = Instant::now();
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..100 {
            b.failed(now, 1.0);
        }
        assert_eq!(b.failed(now, 1.0), Duration::from_secs(30));
    }
}
