//! The moments a WebSocket connection must act on its own, behind one timer.

use std::time::Instant;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// `connection_init` must have arrived (4408).
    Init,
    /// The legacy protocol's next `ka`.
    Keepalive,
    /// The peer must have answered our close frame.
    CloseReply,
    /// The client's token expires (4403).
    TokenExpiry,
    /// Queued bytes have made no progress into the socket since the send timeout began.
    SendStall,
}

const ALL: [Deadline; 5] = [
    Deadline::Init,
    Deadline::Keepalive,
    Deadline::CloseReply,
    Deadline::TokenExpiry,
    Deadline::SendStall,
];

/// At most one instant per kind of deadline. The connection keeps a single timer armed
/// for [`Deadlines::next`], which is cheaper than one timer per kind on every socket.
#[derive(Debug, Default)]
pub struct Deadlines {
    at: [Option<Instant>; 5],
}

impl Deadlines {
    pub fn set(&mut self, which: Deadline, at: Instant) {
        self.at[which as usize] = Some(at);
    }

    pub fn is_set(&self, which: Deadline) -> bool {
        self.at[which as usize].is_some()
    }

    pub fn clear(&mut self, which: Deadline) {
        self.at[which as usize] = None;
    }

    /// The earliest pending instant.
    pub fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// Removes and returns the earliest deadline due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<Deadline> {
        let due = ALL
            .into_iter()
            .filter(|d| self.at[*d as usize].is_some_and(|at| at <= now))
            .min_by_key(|d| self.at[*d as usize])?;
        self.at[due as usize] = None;
        Some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_earliest_due_deadline_comes_first_and_only_once() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        assert_eq!(d.next(), None);
        d.set(Deadline::Keepalive, t0 + Duration::from_secs(25));
        d.set(Deadline::TokenExpiry, t0 + Duration::from_secs(5));
        d.set(Deadline::Init, t0 + Duration::from_secs(3));
        assert_eq!(d.next(), Some(t0 + Duration::from_secs(3)));
        d.clear(Deadline::Init);
        assert_eq!(d.next(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(d.pop_due(t0 + Duration::from_secs(4)), None);
        let later = t0 + Duration::from_secs(30);
        assert_eq!(d.pop_due(later), Some(Deadline::TokenExpiry));
        assert_eq!(d.pop_due(later), Some(Deadline::Keepalive));
        assert_eq!(d.pop_due(later), None);
    }
}
