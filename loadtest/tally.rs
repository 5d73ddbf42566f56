//! A worker's accounting, free of I/O: what each subscription shows, the commit-to-receipt
//! latency of the steady subscriptions (overall and per interval of receipt time), and the
//! churn of the others.
//!
//! A *slot* is a place for one subscription on one socket: `connection × subs_per_conn +
//! slot`. A steady slot keeps its first subscription. A churning slot is completed and
//! subscribed again and again; each resubscription takes the next *generation* of the
//! slot's operation id (see `wire.rs`), so a result still in flight for a completed
//! operation is recognised and left out. A resubscription's first result must be at least
//! as new as the newest commit the worker knew of when it subscribed.

use crate::stats::Histogram;

/// Length of one interval of the latency-over-time report.
pub const INTERVAL_NS: u64 = 1_000_000_000;

/// `Slot::last` before the subscription's first result.
const NONE: u64 = u64::MAX;

#[derive(Clone, Copy)]
struct Slot {
    /// Newest value of the current subscription; `NONE` until its first result.
    last: u64,
    /// Generation of the current subscription's operation id.
    generation: u64,
    churns: bool,
    /// A resubscription waiting for its first result: when it was sent, and the newest
    /// commit known then.
    awaiting: Option<(u64, u64)>,
}

/// What a `next` message was.
#[derive(Debug, PartialEq, Eq)]
pub enum Receipt {
    /// A result of a slot's current subscription.
    Result,
    /// The first result of a resubscription.
    Resubscribed,
    /// A result of an operation the slot has completed, sent before the server saw the
    /// `complete`: not counted.
    Superseded,
    /// An id no subscription of the socket has had: counted as an error.
    Unknown,
}

/// One interval's steady receipts and their latency.
pub struct Interval {
    pub index: usize,
    pub receipts: u64,
    pub latency: Histogram,
}

/// Latency per interval of receipt time, from the start of the writes.
struct Intervals {
    start: u64,
    /// Receipts and latency per interval, the first at `start`.
    buckets: Vec<(u64, Histogram)>,
    /// Intervals already taken.
    taken: usize,
}

pub struct Tally {
    subs_per_conn: usize,
    slots: Vec<Slot>,
    /// Slots whose first subscription has its first result.
    primed: usize,
    /// Commit time of each value (by index); 0 while not known.
    commits: Vec<u64>,
    newest_commit: u64,
    /// Steady receipts whose commit time is not known yet: (value, received at).
    pending: Vec<(u64, u64)>,
    intervals: Option<Intervals>,
    /// Commit-to-receipt of the steady slots.
    pub latency: Histogram,
    /// Subscribe-to-first-result of resubscriptions.
    pub resubscribe: Histogram,
    /// Steady receipts of written values.
    pub received: u64,
    /// Unknown ids, unreadable messages, closed sockets, stale first results.
    pub errors: u64,
    /// Resubscriptions whose first result was older than a commit known when subscribing.
    pub stale_first: u64,
    /// Resubscriptions that got their first result.
    pub cycles: u64,
    /// First and last steady receipt of a written value.
    pub first_ns: u64,
    pub last_ns: u64,
}

impl Tally {
    /// `churn` of the `connections × subs_per_conn` slots churn: slot 0 of every socket,
    /// then slot 1 of every socket, and so on, so churn spreads over the sockets first.
    pub fn new(connections: usize, subs_per_conn: usize, churn: usize) -> Tally {
        let slots = (0..connections * subs_per_conn)
            .map(|s| Slot {
                last: NONE,
                generation: 0,
                churns: (s % subs_per_conn) * connections + s / subs_per_conn < churn,
                awaiting: None,
            })
            .collect();
        Tally {
            subs_per_conn,
            slots,
            primed: 0,
            commits: Vec::new(),
            newest_commit: 0,
            pending: Vec::new(),
            intervals: None,
            latency: Histogram::default(),
            resubscribe: Histogram::default(),
            received: 0,
            errors: 0,
            stale_first: 0,
            cycles: 0,
            first_ns: 0,
            last_ns: 0,
        }
    }

    /// The churning slots of socket `conn`.
    pub fn churning(&self, conn: usize) -> Vec<usize> {
        let first = conn * self.subs_per_conn;
        (0..self.subs_per_conn)
            .filter(|s| self.slots[first + s].churns)
            .collect()
    }

    /// Every slot's first subscription has its first result.
    pub fn ready(&self) -> bool {
        self.primed == self.slots.len()
    }

    /// Writes start at `at`; with `intervals`, latency is also kept per interval from then.
    pub fn start(&mut self, at: u64, intervals: bool) {
        if intervals {
            self.intervals = Some(Intervals {
                start: at,
                buckets: Vec::new(),
                taken: 0,
            });
        }
    }

    /// A `next` for operation `id` on socket `conn` carrying `v`, read at `at`.
    pub fn next(&mut self, conn: usize, id: u64, v: u64, at: u64) -> Receipt {
        let per = self.subs_per_conn as u64;
        let Some(index) = id.checked_sub(1) else {
            return self.unknown();
        };
        let (slot, generation) = ((index % per) as usize, index / per);
        let Some(slot) = self.slots.get_mut(conn * self.subs_per_conn + slot) else {
            return self.unknown();
        };
        if generation < slot.generation {
            return Receipt::Superseded;
        }
        if generation > slot.generation {
            return self.unknown();
        }
        if slot.last == NONE && generation == 0 {
            self.primed += 1;
        }
        slot.last = v;
        if let Some((sent_at, known)) = slot.awaiting.take() {
            self.resubscribe.record(at.saturating_sub(sent_at));
            self.cycles += 1;
            if v < known {
                self.stale_first += 1;
                self.errors += 1;
            }
            return Receipt::Resubscribed;
        }
        // 0 is the result before any write.
        if slot.churns || v == 0 {
            return Receipt::Result;
        }
        self.received += 1;
        if self.first_ns == 0 {
            self.first_ns = at;
        }
        self.last_ns = at;
        match self.commits.get(v as usize) {
            Some(&c) if c > 0 => self.record(at.saturating_sub(c), at),
            _ => self.pending.push((v, at)),
        }
        Receipt::Result
    }

    fn unknown(&mut self) -> Receipt {
        self.errors += 1;
        Receipt::Unknown
    }

    /// A message that is not a `next` this worker can read, or a socket that closed.
    pub fn error(&mut self) {
        self.errors += 1;
    }

    /// Slot `slot` of socket `conn` is completed and subscribed again at `at`: returns the
    /// operation id to complete and the one to subscribe with.
    pub fn resubscribe(&mut self, conn: usize, slot: usize, at: u64) -> (u64, u64) {
        let per = self.subs_per_conn as u64;
        let s = &mut self.slots[conn * self.subs_per_conn + slot];
        let old = s.generation * per + slot as u64 + 1;
        s.generation += 1;
        s.last = NONE;
        s.awaiting = Some((at, self.newest_commit));
        (old, old + per)
    }

    /// Value `k` was committed at `at`.
    pub fn commit(&mut self, k: u64, at: u64) {
        let k = k as usize;
        if self.commits.len() <= k {
            self.commits.resize(k + 1, 0);
        }
        self.commits[k] = at;
        self.newest_commit = self.newest_commit.max(k as u64);
        let mut pending = std::mem::take(&mut self.pending);
        pending.retain(|&(v, t)| {
            if v as usize == k {
                self.record(t.saturating_sub(at), t);
                false
            } else {
                true
            }
        });
        self.pending = pending;
    }

    fn record(&mut self, latency: u64, received_at: u64) {
        self.latency.record(latency);
        if let Some(iv) = &mut self.intervals {
            let i = (received_at.saturating_sub(iv.start) / INTERVAL_NS) as usize;
            if iv.buckets.len() <= i {
                iv.buckets.resize_with(i + 1, Default::default);
            }
            let (receipts, hist) = &mut iv.buckets[i];
            *receipts += 1;
            hist.record(latency);
        }
    }

    /// Slots whose current subscription does not show `k`.
    pub fn lost(&self, k: u64) -> usize {
        self.slots.iter().filter(|s| s.last != k).count()
    }

    /// Intervals not taken yet that ended by `now` and whose receipts all have their commit
    /// time, oldest first; with `all`, also the interval `now` is in.
    pub fn take_intervals(&mut self, now: u64, all: bool) -> Vec<Interval> {
        let Some(iv) = &mut self.intervals else {
            return Vec::new();
        };
        let current = (now.saturating_sub(iv.start) / INTERVAL_NS) as usize;
        let upto = if all { current + 1 } else { current };
        let oldest_pending = self.pending.iter().map(|&(_, t)| t).min();
        let mut out = Vec::new();
        while iv.taken < upto {
            let end = iv.start + (iv.taken as u64 + 1) * INTERVAL_NS;
            if !all && oldest_pending.is_some_and(|t| t < end) {
                break;
            }
            let (receipts, latency) = iv.buckets.get(iv.taken).cloned().unwrap_or_default();
            out.push(Interval {
                index: iv.taken,
                receipts,
                latency,
            });
            iv.taken += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn churn_spreads_over_sockets_first() {
        let t = Tally::new(3, 2, 4);
        assert_eq!(t.churning(0), [0, 1]);
        assert_eq!(t.churning(1), [0]);
        assert_eq!(t.churning(2), [0]);
        assert!(Tally::new(3, 2, 0).churning(0).is_empty());
    }

    #[test]
    fn steady_receipts_get_their_commit_latency_whichever_comes_first() {
        let mut t = Tally::new(1, 2, 0);
        assert_eq!(t.next(0, 1, 0, 5), Receipt::Result);
        assert!(!t.ready());
        assert_eq!(t.next(0, 2, 0, 5), Receipt::Result);
        assert!(t.ready());
        assert_eq!((t.received, t.latency.count()), (0, 0), "0 is not a write");
        t.commit(1, 100 * MS);
        t.next(0, 1, 1, 103 * MS);
        // Received before the coordinator reported the commit: settled when it does.
        t.next(0, 2, 2, 200 * MS);
        assert_eq!(t.latency.count(), 1);
        t.commit(2, 190 * MS);
        assert_eq!(t.latency.count(), 2);
        assert_eq!(t.latency.max(), 10 * MS);
        assert_eq!(t.received, 2);
        assert_eq!((t.first_ns, t.last_ns), (103 * MS, 200 * MS));
        assert_eq!(t.lost(2), 1);
        t.next(0, 1, 2, 201 * MS);
        assert_eq!(t.lost(2), 0);
        assert_eq!(t.errors, 0);
    }

    #[test]
    fn ids_no_subscription_had_are_errors() {
        let mut t = Tally::new(2, 3, 0);
        assert_eq!(t.next(0, 0, 1, 1), Receipt::Unknown);
        // Generation 1 of slot 0 before any resubscription.
        assert_eq!(t.next(0, 4, 1, 1), Receipt::Unknown);
        // A socket past the last.
        assert_eq!(t.next(2, 1, 1, 1), Receipt::Unknown);
        assert_eq!(t.errors, 3);
    }

    #[test]
    fn a_resubscription_is_timed_and_its_first_result_checked() {
        let mut t = Tally::new(2, 2, 2);
        for (c, id) in [(0, 1), (0, 2), (1, 1), (1, 2)] {
            t.next(c, id, 0, 0);
        }
        assert_eq!(t.churning(1), [0]);
        t.commit(1, 10 * MS);
        // Slot 0 of socket 1: operation 1 is completed, operation 3 subscribed.
        assert_eq!(t.resubscribe(1, 0, 20 * MS), (1, 3));
        assert_eq!(t.lost(1), 4, "nothing shows 1 yet");
        // A result of the completed operation, still in flight.
        assert_eq!(t.next(1, 1, 1, 21 * MS), Receipt::Superseded);
        assert_eq!(t.next(1, 3, 1, 23 * MS), Receipt::Resubscribed);
        assert_eq!((t.cycles, t.resubscribe.max()), (1, 3 * MS));
        // Later results of a churning slot are not steady receipts.
        t.commit(2, 30 * MS);
        assert_eq!(t.next(1, 3, 2, 31 * MS), Receipt::Result);
        assert_eq!((t.received, t.latency.count()), (0, 0));
        assert_eq!(t.errors, 0);

        // Subscribed after commit 2 was known, first result 1: stale.
        assert_eq!(t.resubscribe(1, 0, 40 * MS), (3, 5));
        assert_eq!(t.next(1, 5, 1, 41 * MS), Receipt::Resubscribed);
        assert_eq!((t.stale_first, t.errors, t.cycles), (1, 1, 2));
        // The old id is superseded for good; the one after the current is unknown.
        assert_eq!(t.next(1, 3, 2, 42 * MS), Receipt::Superseded);
        assert_eq!(t.next(1, 7, 2, 42 * MS), Receipt::Unknown);
    }

    #[test]
    fn intervals_are_taken_once_over_and_settled() {
        let start = 1_000 * MS;
        let mut t = Tally::new(1, 1, 0);
        t.next(0, 1, 0, 0);
        t.start(start, true);
        t.commit(1, start + 10 * MS);
        t.next(0, 1, 1, start + 12 * MS);
        // Interval 1: received before its commit is known.
        t.next(0, 1, 2, start + 1_500 * MS);
        assert!(t.take_intervals(start + 900 * MS, false).is_empty());
        let first = t.take_intervals(start + 2_100 * MS, false);
        assert_eq!(first.len(), 1, "interval 1 waits for its commit time");
        assert_eq!((first[0].index, first[0].receipts), (0, 1));
        assert_eq!(first[0].latency.max(), 2 * MS);
        t.commit(2, start + 1_490 * MS);
        let second = t.take_intervals(start + 2_100 * MS, false);
        assert_eq!(second.len(), 1);
        assert_eq!((second[0].index, second[0].receipts), (1, 1));
        assert_eq!(second[0].latency.max(), 10 * MS);
        // At the end, the interval under way too, even when empty.
        let rest = t.take_intervals(start + 3_100 * MS, true);
        let indexes: Vec<usize> = rest.iter().map(|i| i.index).collect();
        assert_eq!(indexes, [2, 3]);
        assert!(rest.iter().all(|i| i.receipts == 0));
        assert!(t.take_intervals(start + 3_100 * MS, true).is_empty());
        // Without `start(…, true)` there are none.
        assert!(
            Tally::new(1, 1, 0)
                .take_intervals(u64::MAX, true)
                .is_empty()
        );
    }
}
