//! What other tasks on the shard leave for a connection to send.
//!
//! A live query delivers each new result to every subscriber's slot here; the connection
//! turns slots into frames only as fast as its socket drains. A slot holds at most one
//! result: a newer one replaces an unsent older one (latest wins), so a slow reader costs
//! one pointer per subscription, never a queue. The result itself is shared by all its
//! subscribers (`Rc<[u8]>`, encoded once); only the envelope prefix is per subscription.
//!
//! Messages that must all arrive, in order (a query's result then `complete`, an operation's
//! `error`), go through [`Outbox::push_message`] instead.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Waker;

use crate::protocol::GraphQLError;
use crate::websocket::encode_text_parts;

/// A result encoded once and shared by every subscriber of a live query.
pub type SharedPayload = Rc<[u8]>;

/// A subscription's place in its connection's outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotId(usize);

/// The longest prefix kept inside its slot: room for
/// `{"id":"<a UUID>","type":"next","payload":`, the ids graphql-ws clients make.
const INLINE_PREFIX: usize = 70;

/// A subscription's message prefix. Kept inside the slot when it fits, so that framing a
/// connection's results reads one contiguous array instead of one small allocation per
/// subscription, which is cold in memory by the time a change arrives.
#[derive(Debug)]
enum Prefix {
    Inline { len: u8, bytes: [u8; INLINE_PREFIX] },
    Heap(Box<[u8]>),
}

impl Prefix {
    fn new(prefix: &[u8]) -> Prefix {
        if prefix.len() > INLINE_PREFIX {
            return Prefix::Heap(prefix.into());
        }
        let mut bytes = [0; INLINE_PREFIX];
        bytes[..prefix.len()].copy_from_slice(prefix);
        Prefix::Inline {
            len: prefix.len() as u8,
            bytes,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Prefix::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Prefix::Heap(bytes) => bytes,
        }
    }
}

#[derive(Debug)]
struct Slot {
    /// `{"id":…,"type":"next","payload":` for this subscription.
    prefix: Prefix,
    /// The newest result not yet written, if any.
    pending: Option<SharedPayload>,
    /// Whether the slot is in `ready` (so it is queued at most once).
    queued: bool,
}

#[derive(Debug, Default)]
struct Inner {
    /// Slots by id; a freed one is `None` and its index is reused.
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    /// Slots with a pending result, in the order they became ready.
    ready: VecDeque<usize>,
    /// Text messages to send before any further results, in order.
    messages: VecDeque<String>,
    /// Outcomes of operations run by other tasks, for the connection to answer in its
    /// protocol's words.
    events: VecDeque<OpEvent>,
}

/// What another task reports about one of the connection's operations.
#[derive(Debug)]
pub enum OpEvent {
    /// A subscription's live query failed for good; its slot is already closed.
    Failed {
        slot: SlotId,
        errors: Rc<[GraphQLError]>,
    },
    /// A query (run once) finished: the `data` JSON, or why not.
    QueryDone {
        token: u64,
        result: Result<String, GraphQLError>,
    },
}

/// Shared between a connection (which drains it) and the tasks that fill it.
#[derive(Debug)]
pub struct Outbox {
    inner: RefCell<Inner>,
    /// The connection's share of the shard's database pool: one permit per statement it may
    /// have running at once (`POSTRUST_DB_STATEMENTS_PER_CONNECTION`). Taken by its queries
    /// and by the refreshes that bring its subscriptions their first results; whoever finds
    /// none waits its turn, so one client cannot hold the whole pool.
    db_turns: glommio::sync::Semaphore,
    /// Set by the shard at shutdown; the connection closes with 1001 when it sees it.
    going_away: Cell<bool>,
    /// The connection task's waker, stored each time it parks; whoever adds work wakes it.
    waker: RefCell<Option<Waker>>,
    /// Results that replaced an unsent older one, for metrics.
    replaced: Cell<u64>,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox::new(1)
    }
}

impl Outbox {
    /// An outbox whose connection may run `db_share` statements at once.
    pub fn new(db_share: usize) -> Outbox {
        Outbox {
            inner: RefCell::default(),
            db_turns: glommio::sync::Semaphore::new(db_share.max(1) as u64),
            going_away: Cell::default(),
            waker: RefCell::default(),
            replaced: Cell::default(),
        }
    }

    /// Waits for one of the connection's database turns; it is given back when the permit
    /// drops.
    pub async fn db_turn(&self) -> Option<glommio::sync::Permit<'_>> {
        crate::permits::acquire(&self.db_turns).await.ok()
    }

    /// Asks the connection to close (server shutdown) and wakes it.
    pub fn go_away(&self) {
        self.going_away.set(true);
        self.wake();
    }

    pub fn is_going_away(&self) -> bool {
        self.going_away.get()
    }

    /// Resolves once shutdown has asked this connection to go away.
    pub(super) async fn gone_away(&self) {
        futures_lite::future::poll_fn(|cx| {
            if self.going_away.get() {
                std::task::Poll::Ready(())
            } else {
                self.park(cx.waker());
                std::task::Poll::Pending
            }
        })
        .await
    }

    pub(super) fn park(&self, waker: &Waker) {
        let mut slot = self.waker.borrow_mut();
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Opens a slot for a subscription whose results start with `prefix`.
    pub fn open_slot(&self, prefix: &[u8]) -> SlotId {
        let mut inner = self.inner.borrow_mut();
        let slot = Slot {
            prefix: Prefix::new(prefix),
            pending: None,
            queued: false,
        };
        match inner.free.pop() {
            Some(i) => {
                inner.slots[i] = Some(slot);
                SlotId(i)
            }
            None => {
                inner.slots.push(Some(slot));
                SlotId(inner.slots.len() - 1)
            }
        }
    }

    /// Drops a slot and any result it still holds.
    pub fn close_slot(&self, id: SlotId) {
        let mut inner = self.inner.borrow_mut();
        if let Some(slot) = inner.slots.get_mut(id.0).and_then(Option::take) {
            if slot.queued {
                inner.ready.retain(|i| *i != id.0);
            }
            inner.free.push(id.0);
        }
    }

    /// Delivers a result to a slot, replacing an unsent older one.
    pub fn deliver(&self, id: SlotId, payload: &SharedPayload) {
        let mut inner = self.inner.borrow_mut();
        let Some(Some(slot)) = inner.slots.get_mut(id.0) else {
            return;
        };
        if slot.pending.replace(Rc::clone(payload)).is_some() {
            self.replaced.set(self.replaced.get() + 1);
        }
        if !slot.queued {
            slot.queued = true;
            inner.ready.push_back(id.0);
        }
        drop(inner);
        self.wake();
    }

    /// Ends a subscription with errors: its slot is dropped, and the connection sends the
    /// errors in its protocol's form once it takes the event with [`Outbox::take_event`].
    pub fn fail(&self, slot: SlotId, errors: Rc<[GraphQLError]>) {
        self.close_slot(slot);
        self.report(OpEvent::Failed { slot, errors });
    }

    /// Reports an operation's outcome to the connection.
    pub fn report(&self, event: OpEvent) {
        self.inner.borrow_mut().events.push_back(event);
        self.wake();
    }

    /// The next reported outcome, if any.
    pub fn take_event(&self) -> Option<OpEvent> {
        self.inner.borrow_mut().events.pop_front()
    }

    /// Queues a message that must be sent, after those queued before it.
    pub fn push_message(&self, text: String) {
        self.inner.borrow_mut().messages.push_back(text);
        self.wake();
    }

    /// Encodes queued frames into `out` until it holds at least `limit` bytes or nothing is
    /// left: messages first, then results in the order they became ready. Returns how many
    /// results (messages not counted) it encoded. Results are framed around the shared
    /// payload in place, with no per-subscriber copy of it besides the socket buffer.
    pub fn fill(&self, out: &mut Vec<u8>, limit: usize) -> u64 {
        let mut results = 0;
        let mut inner = self.inner.borrow_mut();
        while out.len() < limit {
            if let Some(m) = inner.messages.pop_front() {
                encode_text_parts(&[m.as_bytes()], out);
                continue;
            }
            let Some(i) = inner.ready.pop_front() else {
                break;
            };
            if let Some(Some(slot)) = inner.slots.get_mut(i) {
                slot.queued = false;
                if let Some(payload) = slot.pending.take() {
                    encode_text_parts(&[slot.prefix.as_bytes(), &payload, b"}"], out);
                    results += 1;
                }
            }
        }
        results
    }

    /// How many results were replaced before they were sent since the last call.
    pub fn take_replaced(&self) -> u64 {
        self.replaced.replace(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(text: &str) -> SharedPayload {
        Rc::from(text.as_bytes())
    }

    /// The text of every frame `fill` writes, one frame at a time.
    fn take_text(outbox: &Outbox) -> Option<String> {
        let mut out = Vec::new();
        outbox.fill(&mut out, 1);
        if out.is_empty() {
            return None;
        }
        assert_eq!(out[0], 0x81, "one unfragmented text frame");
        let (len, start) = match out[1] {
            126 => (u16::from_be_bytes([out[2], out[3]]) as usize, 4),
            n => (n as usize, 2),
        };
        assert_eq!(out.len(), start + len, "exactly one frame");
        Some(String::from_utf8(out[start..].to_vec()).unwrap())
    }

    #[test]
    fn prefixes_short_and_long_frame_the_same() {
        let outbox = Outbox::default();
        let fits = "a".repeat(INLINE_PREFIX);
        let long = "b".repeat(INLINE_PREFIX + 1);
        let a = outbox.open_slot(fits.as_bytes());
        let b = outbox.open_slot(long.as_bytes());
        let empty = outbox.open_slot(b"");
        let data = payload("{\"data\":1}");
        for s in [a, b, empty] {
            outbox.deliver(s, &data);
        }
        assert_eq!(take_text(&outbox), Some(format!("{fits}{{\"data\":1}}}}")));
        assert_eq!(take_text(&outbox), Some(format!("{long}{{\"data\":1}}}}")));
        assert_eq!(take_text(&outbox).as_deref(), Some("{\"data\":1}}"));
    }

    #[test]
    fn fill_stops_at_the_limit_and_resumes() {
        let outbox = Outbox::default();
        let big = payload(&"x".repeat(300));
        let slots: Vec<_> = (0..3).map(|_| outbox.open_slot(b"P:")).collect();
        for s in &slots {
            outbox.deliver(*s, &big);
        }
        let mut out = Vec::new();
        assert_eq!(outbox.fill(&mut out, 400), 2);
        assert_eq!(
            out.len(),
            2 * (4 + 2 + 300 + 1),
            "two frames reach the limit"
        );
        out.clear();
        assert_eq!(outbox.fill(&mut out, 400), 1);
        assert_eq!(out.len(), 4 + 2 + 300 + 1);
        assert_eq!(outbox.fill(&mut out, 4000), 0);
    }

    #[test]
    fn a_newer_result_replaces_an_unsent_one() {
        let outbox = Outbox::default();
        let a = outbox.open_slot(b"A:");
        outbox.deliver(a, &payload("1"));
        outbox.deliver(a, &payload("2"));
        outbox.deliver(a, &payload("3"));
        assert_eq!(take_text(&outbox).as_deref(), Some("A:3}"));
        assert_eq!(take_text(&outbox), None);
        assert_eq!(outbox.take_replaced(), 2);
        assert_eq!(outbox.take_replaced(), 0);
    }

    #[test]
    fn messages_are_written_but_not_counted_as_results() {
        let outbox = Outbox::default();
        outbox.push_message("ack".into());
        let mut out = Vec::new();
        assert_eq!(outbox.fill(&mut out, usize::MAX), 0);
        assert_eq!(out, b"\x81\x03ack");
    }

    #[test]
    fn messages_go_first_and_results_keep_their_arrival_order() {
        let outbox = Outbox::default();
        let a = outbox.open_slot(b"A:");
        let b = outbox.open_slot(b"B:");
        outbox.deliver(b, &payload("b1"));
        outbox.deliver(a, &payload("a1"));
        outbox.push_message("ack".into());
        outbox.deliver(b, &payload("b2"));
        let all: Vec<_> = std::iter::from_fn(|| take_text(&outbox)).collect();
        assert_eq!(all, ["ack", "B:b2}", "A:a1}"]);
    }

    #[test]
    fn closing_a_slot_drops_its_pending_result_and_frees_it_for_reuse() {
        let outbox = Outbox::default();
        let a = outbox.open_slot(b"A:");
        outbox.deliver(a, &payload("1"));
        outbox.close_slot(a);
        assert_eq!(take_text(&outbox), None);
        outbox.deliver(a, &payload("late"));
        assert_eq!(
            take_text(&outbox),
            None,
            "delivery to a closed slot is ignored"
        );
        let b = outbox.open_slot(b"B:");
        assert_eq!(b, a, "index reused");
        outbox.deliver(b, &payload("2"));
        assert_eq!(take_text(&outbox).as_deref(), Some("B:2}"));
    }

    #[test]
    fn a_failure_drops_the_pending_result_and_is_taken_once() {
        let outbox = Outbox::default();
        let a = outbox.open_slot(b"A:");
        outbox.deliver(a, &payload("1"));
        outbox.fail(
            a,
            Rc::from(vec![GraphQLError::server(
                crate::protocol::ErrorCode::Database,
                "gone",
            )]),
        );
        assert_eq!(take_text(&outbox), None);
        match outbox.take_event() {
            Some(OpEvent::Failed { slot, errors }) => {
                assert_eq!((slot, errors[0].message.as_str()), (a, "gone"))
            }
            other => panic!("{other:?}"),
        }
        assert!(outbox.take_event().is_none());
    }

    #[test]
    fn delivery_wakes_the_parked_connection() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::task::Wake;
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let outbox = Outbox::default();
        let a = outbox.open_slot(b"A:");
        outbox.park(&waker);
        outbox.deliver(a, &payload("1"));
        outbox.deliver(a, &payload("2"));
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "woken once until it parks again"
        );
        outbox.park(&waker);
        outbox.go_away();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert!(outbox.is_going_away());
    }
}
