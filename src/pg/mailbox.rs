//! A shard-local queue between tasks: `Rc` + `RefCell`, no locks, not `Send`.
//!
//! The driver needs what glommio's local channels do not offer: *polling* for room
//! ([`Sender::poll_room`]) so it can stop reading the socket while a consumer is behind,
//! from inside its own `poll` function, and a sender count so the driver learns that every
//! [`Client`](super::Client) handle is gone. A capacity of `None` means unbounded; that is
//! used only where the producer's volume is bounded elsewhere (a request's own result).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures_lite::Stream;

struct Inner<T> {
    queue: VecDeque<T>,
    capacity: Option<usize>,
    senders: usize,
    receiver_alive: bool,
    /// The receiver waiting for an item.
    recv_waker: Option<Waker>,
    /// The sender waiting for room.
    room_waker: Option<Waker>,
}

pub(crate) struct Sender<T>(Rc<RefCell<Inner<T>>>);

pub(crate) struct Receiver<T>(Rc<RefCell<Inner<T>>>);

pub(crate) fn channel<T>(capacity: Option<usize>) -> (Sender<T>, Receiver<T>) {
    let inner = Rc::new(RefCell::new(Inner {
        queue: VecDeque::new(),
        capacity,
        senders: 1,
        receiver_alive: true,
        recv_waker: None,
        room_waker: None,
    }));
    (Sender(inner.clone()), Receiver(inner))
}

impl<T> Sender<T> {
    /// Queues `item` even past the capacity (callers that respect it check
    /// [`poll_room`](Self::poll_room) first). Gives the item back when the receiver is gone.
    pub(crate) fn push(&self, item: T) -> Result<(), T> {
        let mut inner = self.0.borrow_mut();
        if !inner.receiver_alive {
            return Err(item);
        }
        inner.queue.push_back(item);
        if let Some(w) = inner.recv_waker.take() {
            w.wake();
        }
        Ok(())
    }

    /// Ready when there is room for one more item or the receiver is gone (a push will then
    /// fail, which is how the sender learns it).
    pub(crate) fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.0.borrow_mut();
        match inner.capacity {
            Some(cap) if inner.receiver_alive && inner.queue.len() >= cap => {
                inner.room_waker = Some(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }

    /// Waits for room, then queues `item`; gives it back when the receiver is gone.
    pub(crate) async fn send(&self, item: T) -> Result<(), T> {
        std::future::poll_fn(|cx| self.poll_room(cx)).await;
        self.push(item)
    }

    pub(crate) fn is_closed(&self) -> bool {
        !self.0.borrow().receiver_alive
    }

    /// True when a push now would go past the capacity.
    pub(crate) fn is_full(&self) -> bool {
        let inner = self.0.borrow();
        inner.capacity.is_some_and(|cap| inner.queue.len() >= cap)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.borrow_mut().senders += 1;
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut inner = self.0.borrow_mut();
        inner.senders -= 1;
        if inner.senders == 0
            && let Some(w) = inner.recv_waker.take()
        {
            w.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// The next item; `None` once every sender is gone and the queue is drained.
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut inner = self.0.borrow_mut();
        if let Some(item) = inner.queue.pop_front() {
            if let Some(w) = inner.room_waker.take() {
                w.wake();
            }
            return Poll::Ready(Some(item));
        }
        if inner.senders == 0 {
            return Poll::Ready(None);
        }
        inner.recv_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    pub(crate) async fn recv(&self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Stops accepting items and drops those queued, so a sender blocked on room wakes up.
    pub(crate) fn close(&self) {
        let mut inner = self.0.borrow_mut();
        inner.receiver_alive = false;
        inner.queue.clear();
        if let Some(w) = inner.room_waker.take() {
            w.wake();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<T> Stream for Receiver<T> {
    type Item = T;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    #[test]
    fn items_arrive_in_order_then_end_when_senders_are_gone() {
        let (tx, rx) = channel(None);
        let tx2 = tx.clone();
        tx.push(1).unwrap();
        tx2.push(2).unwrap();
        drop(tx);
        assert_eq!(rx.poll_recv(&mut cx()), Poll::Ready(Some(1)));
        assert_eq!(rx.poll_recv(&mut cx()), Poll::Ready(Some(2)));
        assert_eq!(rx.poll_recv(&mut cx()), Poll::Pending, "one sender is left");
        drop(tx2);
        assert_eq!(rx.poll_recv(&mut cx()), Poll::Ready(None));
    }

    #[test]
    fn a_full_bounded_queue_has_no_room_until_the_receiver_takes_one() {
        let (tx, rx) = channel(Some(2));
        assert_eq!(tx.poll_room(&mut cx()), Poll::Ready(()));
        tx.push('a').unwrap();
        tx.push('b').unwrap();
        assert_eq!(tx.poll_room(&mut cx()), Poll::Pending);
        assert_eq!(rx.poll_recv(&mut cx()), Poll::Ready(Some('a')));
        assert_eq!(tx.poll_room(&mut cx()), Poll::Ready(()));
    }

    #[test]
    fn a_dropped_receiver_hands_items_back() {
        let (tx, rx) = channel(Some(1));
        tx.push(1).unwrap();
        assert!(!tx.is_closed());
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(
            tx.poll_room(&mut cx()),
            Poll::Ready(()),
            "so a waiting sender notices"
        );
        assert_eq!(tx.push(2), Err(2));
    }
}
