//! The leader's fan-out of change events to every shard.
//!
//! The leader decodes each notification once and offers it to every shard's bounded
//! channel. It never waits for a shard: when a shard's channel is full, the event's row
//! detail is dropped and only its table is remembered, in that shard's backlog; the
//! backlog goes out as one coalesced event as soon as the channel has room, ahead of any
//! newer event. A lagging shard therefore refreshes more coarsely (every reader of the
//! table, no filter-based skipping) but never misses a table, and the leader's memory per
//! shard is bounded by the number of tables.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::change::{Change, Dirty};

/// A table as a notification names it: the schema is absent for the docs page's trigger.
pub type TableKey = (Option<String>, String);

/// What a shard is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// One decoded change, with its rows.
    Change(Arc<Change>),
    /// These tables changed; details were dropped (coalesced, or unreadable payloads).
    Tables(Vec<TableKey>),
    /// Anything may have changed (notifications may have been missed): refresh everything.
    Everything,
}

/// Dirt waiting for room in one shard's channel.
#[derive(Debug, Default)]
struct Backlog {
    everything: bool,
    tables: BTreeSet<TableKey>,
}

impl Backlog {
    fn is_empty(&self) -> bool {
        !self.everything && self.tables.is_empty()
    }

    fn add(&mut self, event: &Event) {
        match event {
            Event::Everything => {
                self.everything = true;
                self.tables.clear();
            }
            _ if self.everything => {}
            Event::Change(c) => {
                self.tables.insert((c.schema.clone(), c.table.clone()));
            }
            Event::Tables(tables) => self.tables.extend(tables.iter().cloned()),
        }
    }

    fn to_event(&self) -> Event {
        if self.everything {
            Event::Everything
        } else {
            Event::Tables(self.tables.iter().cloned().collect())
        }
    }
}

struct ShardLink {
    /// The leader sends, the shard's change task receives. Bounded: when full, events are
    /// coalesced into `backlog` instead of waiting.
    tx: flume::Sender<Event>,
    backlog: Backlog,
}

pub struct Broadcaster {
    shards: Vec<ShardLink>,
    /// Events coalesced because a shard lagged, for metrics.
    coalesced: u64,
}

impl Broadcaster {
    pub fn new(senders: Vec<flume::Sender<Event>>) -> Broadcaster {
        Broadcaster {
            shards: senders
                .into_iter()
                .map(|tx| ShardLink {
                    tx,
                    backlog: Backlog::default(),
                })
                .collect(),
            coalesced: 0,
        }
    }

    /// Offers what a notification made dirty to every shard.
    pub fn publish(&mut self, dirty: Dirty) {
        let event = match dirty {
            Dirty::Change(c) => Event::Change(Arc::new(c)),
            Dirty::Table { schema, table } => Event::Tables(vec![(schema, table)]),
            Dirty::Everything => Event::Everything,
        };
        for link in &mut self.shards {
            if !Self::drain(link) {
                link.backlog.add(&event);
                self.coalesced += 1;
                continue;
            }
            match link.tx.try_send(event.clone()) {
                Ok(()) | Err(flume::TrySendError::Disconnected(_)) => {}
                Err(flume::TrySendError::Full(event)) => {
                    link.backlog.add(&event);
                    self.coalesced += 1;
                }
            }
        }
    }

    /// Sends what the backlogs hold where there is room now; true when none is left.
    pub fn flush(&mut self) -> bool {
        // Every shard gets its chance, even after one is found still full.
        let mut all_empty = true;
        for link in &mut self.shards {
            all_empty &= Self::drain(link);
        }
        all_empty
    }

    /// Sends one shard's backlog if it has any and there is room; true when it is empty.
    fn drain(link: &mut ShardLink) -> bool {
        if link.backlog.is_empty() {
            return true;
        }
        match link.tx.try_send(link.backlog.to_event()) {
            Ok(()) | Err(flume::TrySendError::Disconnected(_)) => {
                link.backlog = Backlog::default();
                true
            }
            Err(flume::TrySendError::Full(_)) => false,
        }
    }

    /// How many events were folded into a backlog because a shard lagged.
    pub fn coalesced(&self) -> u64 {
        self.coalesced
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{Change, Operation};

    fn change(table: &str) -> Dirty {
        Dirty::Change(Change {
            schema: Some("public".into()),
            table: table.into(),
            operation: Operation::Insert,
            new: None,
            old: None,
            truncated: false,
        })
    }

    fn key(table: &str) -> TableKey {
        (Some("public".into()), table.into())
    }

    #[test]
    fn every_shard_gets_every_event_while_it_keeps_up() {
        let (a_tx, a_rx) = flume::bounded(8);
        let (b_tx, b_rx) = flume::bounded(8);
        let mut b = Broadcaster::new(vec![a_tx, b_tx]);
        b.publish(change("orders"));
        b.publish(Dirty::Everything);
        for rx in [a_rx, b_rx] {
            assert!(matches!(rx.try_recv(), Ok(Event::Change(c)) if c.table == "orders"));
            assert_eq!(rx.try_recv(), Ok(Event::Everything));
        }
        assert_eq!(b.coalesced(), 0);
    }

    #[test]
    fn a_lagging_shard_gets_its_tables_coalesced_and_never_blocks_the_others() {
        let (slow_tx, slow_rx) = flume::bounded(1);
        let (fast_tx, fast_rx) = flume::bounded(100);
        let mut b = Broadcaster::new(vec![slow_tx, fast_tx]);
        b.publish(change("orders"));
        for i in 0..50 {
            b.publish(change(if i % 2 == 0 { "orders" } else { "customers" }));
        }
        assert_eq!(
            fast_rx.len(),
            51,
            "the fast shard got every event with its rows"
        );
        assert_eq!(b.coalesced(), 50);
        assert!(!b.flush(), "still full");

        assert!(matches!(slow_rx.try_recv(), Ok(Event::Change(_))));
        assert!(b.flush());
        assert_eq!(
            slow_rx.try_recv(),
            Ok(Event::Tables(vec![key("customers"), key("orders")]))
        );
        // Newer events follow the backlog, in order.
        b.publish(change("products"));
        assert!(matches!(slow_rx.try_recv(), Ok(Event::Change(c)) if c.table == "products"));
    }

    #[test]
    fn everything_absorbs_tables_in_a_backlog() {
        let (tx, rx) = flume::bounded(1);
        let mut b = Broadcaster::new(vec![tx]);
        b.publish(change("a"));
        b.publish(change("b"));
        b.publish(Dirty::Everything);
        b.publish(Dirty::Table {
            schema: None,
            table: "c".into(),
        });
        rx.try_recv().unwrap();
        assert!(b.flush());
        assert_eq!(rx.try_recv(), Ok(Event::Everything));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_departed_shard_is_skipped() {
        let (tx, rx) = flume::bounded(1);
        drop(rx);
        let mut b = Broadcaster::new(vec![tx]);
        b.publish(change("orders"));
        assert!(b.flush());
        assert_eq!(b.coalesced(), 0);
    }
}
