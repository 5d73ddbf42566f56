//! A token bucket: how often a connection may start operations.

use std::time::Instant;

/// Holds up to `burst` tokens, refilled at `per_second`; each operation takes one.
#[derive(Debug)]
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_second: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// Starts full. A rate of 0 means no limit.
    pub fn new(per_second: usize, burst: usize, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: burst as f64,
            burst: burst.max(1) as f64,
            per_second: per_second as f64,
            refilled: now,
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        if self.per_second == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_steady_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3, t0);
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(!b.take(t0), "burst spent");
        assert!(!b.take(t0 + Duration::from_millis(50)), "half a token");
        assert!(
            b.take(t0 + Duration::from_millis(100)),
            "one token per 100 ms"
        );
        assert!(!b.take(t0 + Duration::from_millis(100)));
        let later = t0 + Duration::from_secs(60);
        assert!(b.take(later) && b.take(later) && b.take(later));
        assert!(!b.take(later), "never more than the burst");
    }

    #[test]
    fn a_zero_rate_is_unlimited() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0, 0, t0);
        assert!((0..1000).all(|_| b.take(t0)));
    }
}
