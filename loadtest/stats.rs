//! Latency histograms that merge across worker processes, and the shared clock.

/// Nanoseconds on the host's monotonic clock (`CLOCK_MONOTONIC`), the same in every process
/// of the host, so a commit stamped by the coordinator and a receipt stamped by a worker
/// can be subtracted.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sub-buckets per power of two: relative error under 1/32 (about 3 %).
const SUB: u64 = 32;
const SUB_BITS: u32 = 5;
/// Values up to 2^40 ns (about 18 minutes).
const MAX_EXP: u32 = 40;

/// A log-linear histogram of nanosecond values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; ((MAX_EXP - SUB_BITS + 2) as u64 * SUB) as usize],
            total: 0,
            max: 0,
        }
    }
}

fn bucket(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros();
    let exp = exp.min(MAX_EXP);
    let shift = exp - SUB_BITS;
    let sub = (v >> shift).min(2 * SUB - 1) - SUB;
    ((u64::from(shift) + 1) * SUB + sub) as usize
}

/// The largest value that falls in bucket `i`.
fn bucket_top(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = i / SUB - 1;
    let sub = i % SUB + SUB;
    ((sub + 1) << shift) - 1
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        let i = bucket(v).min(self.counts.len() - 1);
        self.counts[i] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0.0 to 1.0), within the bucket error; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_top(i).min(self.max);
            }
        }
        self.max
    }

    /// Non-empty buckets as `index:count` pairs, for passing between processes.
    pub fn encode(&self) -> String {
        let mut out = format!("{} {}", self.total, self.max);
        for (i, c) in self.counts.iter().enumerate().filter(|(_, c)| **c > 0) {
            out.push_str(&format!(" {i}:{c}"));
        }
        out
    }

    pub fn decode(text: &str) -> Option<Histogram> {
        let mut parts = text.split_whitespace();
        let mut h = Histogram {
            total: parts.next()?.parse().ok()?,
            max: parts.next()?.parse().ok()?,
            ..Histogram::default()
        };
        for pair in parts {
            let (i, c) = pair.split_once(':')?;
            let i: usize = i.parse().ok()?;
            *h.counts.get_mut(i)? = c.parse().ok()?;
        }
        Some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_the_bucket_error() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for (q, want) in [
            (0.5, 50_000_000.0),
            (0.9, 90_000_000.0),
            (0.99, 99_000_000.0),
        ] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.04, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.quantile(1.0), 100_000_000);
        assert_eq!(h.max(), 100_000_000);
    }

    #[test]
    fn small_values_are_exact_and_buckets_are_monotonic() {
        let mut last = 0;
        for v in [0u64, 1, 31, 32, 33, 63, 64, 1000, 1 << 20, 1 << 39] {
            let i = bucket(v);
            assert!(i >= last);
            last = i;
            assert!(bucket_top(i) >= v, "{v}");
        }
        let mut h = Histogram::default();
        h.record(7);
        assert_eq!(h.quantile(0.5), 7);
    }

    #[test]
    fn histograms_merge_and_round_trip() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        a.record(1_000);
        b.record(2_000_000);
        b.record(3_000_000);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        let back = Histogram::decode(&a.encode()).unwrap();
        assert_eq!(back, a);
        assert!(Histogram::decode("x").is_none());
    }
}
