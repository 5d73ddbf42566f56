//! The handle callers hold: cheap to clone, shard-local, talks to the driver.
//!
//! The operations themselves live one per file, as in tokio-postgres: [`connect`](super::connect)
//! (startup and authentication), [`query`](super::query) (extended protocol, prepared
//! statements, pipelines), [`simple_query`](super::simple_query) and
//! [`pipeline`](super::pipeline) (the role-and-claims call). This file only queues requests
//! and reads what the driver published.

use std::rc::Rc;

use bytes::BytesMut;
use futures_lite::Stream;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::driver::{ConnState, Notification, Request, Shared};
use super::error::Error;
use super::mailbox::{self, Receiver, Sender};

/// A connection to PostgreSQL. Clones share the connection; requests from all of them are
/// pipelined in the order they are made. The connection closes when the last clone is
/// dropped.
#[derive(Clone)]
pub struct Client {
    pub(crate) shared: Rc<Shared>,
    /// Sent by every clone of this handle, received by the connection's driver. Unbounded:
    /// each request is a caller awaiting its answer, so callers bound it.
    requests: Sender<Request>,
    /// Capacity of the notification stream, when one is asked for.
    notify_queue: usize,
}

/// Transaction state as of the last answer from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    Idle,
    InTransaction,
    /// In a transaction block where a statement failed: only `ROLLBACK` works.
    Failed,
}

/// The answer to one request: the messages the driver routes to it, in order.
pub(crate) struct Responses<'a> {
    client: &'a Client,
    /// Sent by the driver, received here. Unbounded: it holds this request's own answer,
    /// which the caller is reading; dropping it makes the driver discard the rest.
    rx: Receiver<Message>,
}

impl Responses<'_> {
    /// The next message, or the connection's closed error when it died first.
    pub(crate) async fn next(&mut self) -> Result<Message, Error> {
        match self.rx.recv().await {
            Some(message) => Ok(message),
            None => Err(self.client.shared.closed_error()),
        }
    }

    pub(crate) fn client(&self) -> &Client {
        self.client
    }
}

impl Client {
    pub(crate) fn new(
        shared: Rc<Shared>,
        requests: Sender<Request>,
        notify_queue: usize,
    ) -> Client {
        Client {
            shared,
            requests,
            notify_queue,
        }
    }

    /// Hands encoded messages with `syncs` `Sync`/`Query` messages to the driver.
    pub(crate) fn send(&self, bytes: BytesMut, syncs: usize) -> Result<Responses<'_>, Error> {
        let rx = self.send_bounded(bytes, syncs, None)?;
        Ok(Responses { client: self, rx })
    }

    /// [`send`](Self::send) with the answer's queue bounded by `capacity`: while it is full
    /// the driver stops reading the socket. For an answer that never ends on its own (a
    /// replication stream); a bounded answer must be read, or the connection stalls.
    pub(crate) fn send_bounded(
        &self,
        bytes: BytesMut,
        syncs: usize,
        capacity: Option<usize>,
    ) -> Result<Receiver<Message>, Error> {
        if self.shared.state.get() != ConnState::Open {
            return Err(self.shared.closed_error());
        }
        let (tx, rx) = mailbox::channel(capacity);
        let request = Request::Messages {
            bytes,
            syncs,
            responses: tx,
        };
        if self.requests.push(request).is_err() {
            return Err(self.shared.closed_error());
        }
        if syncs > 0 {
            self.shared.pending.set(self.shared.pending.get() + 1);
        }
        Ok(rx)
    }

    /// Answers a `CopyInResponse` to a simple query with `CopyFail`: the server would
    /// otherwise wait for COPY data forever; this way the statement fails.
    pub(crate) fn refuse_copy_in(&self) -> Result<(), Error> {
        let mut fail = BytesMut::new();
        frontend::copy_fail("COPY FROM STDIN is not supported by this client", &mut fail)
            .map_err(|e| Error::config(e.to_string()))?;
        self.send(fail, 0).map(drop)
    }

    /// Closes the connection for `reason`; every waiting request gets it as its error.
    pub(crate) fn abort(&self, reason: Error) {
        // A failed push means the driver is already gone, which is the goal.
        let _ = self.requests.push(Request::Abort(reason));
    }

    /// True once the connection is gone; a pool drops such a client.
    pub fn is_closed(&self) -> bool {
        self.shared.state.get() != ConnState::Open
    }

    pub fn state(&self) -> ConnState {
        self.shared.state.get()
    }

    /// Why the connection closed, if it did.
    pub fn close_reason(&self) -> Option<Error> {
        self.shared.close_reason.borrow().clone()
    }

    /// The server process serving this connection (what `pg_backend_pid()` returns).
    pub fn process_id(&self) -> i32 {
        self.shared.cancel_key.process_id
    }

    /// A run-time parameter the server reported (`server_version`, `TimeZone`, ...).
    pub fn parameter(&self, name: &str) -> Option<String> {
        self.shared.parameters.borrow().get(name).cloned()
    }

    pub fn transaction_status(&self) -> TransactionStatus {
        match self.shared.transaction_status.get() {
            b'T' => TransactionStatus::InTransaction,
            b'E' => TransactionStatus::Failed,
            _ => TransactionStatus::Idle,
        }
    }

    /// Open, outside any transaction, and with no request waiting for an answer: safe to
    /// hand to another caller.
    pub fn is_idle(&self) -> bool {
        !self.is_closed()
            && self.shared.pending.get() == 0
            && self.transaction_status() == TransactionStatus::Idle
    }

    /// Open, with a request whose answer has not fully arrived: a statement may be running.
    pub fn is_busy(&self) -> bool {
        !self.is_closed() && self.shared.pending.get() > 0
    }

    pub(crate) fn cancel_key(&self) -> super::cancel::CancelKey {
        self.shared.cancel_key
    }

    /// The notifications this connection receives (after `LISTEN`). Asking again replaces
    /// the previous stream, which then ends.
    pub fn notifications(&self) -> Notifications {
        let (tx, rx) = mailbox::channel(Some(self.notify_queue));
        if self.is_closed() {
            drop(tx);
        } else {
            *self.shared.notifications.borrow_mut() = Some(tx);
        }
        Notifications { rx }
    }
}

/// A stream of [`Notification`]s; it ends when the connection closes.
pub struct Notifications {
    /// Sent by the driver, received by whoever holds this stream. Bounded by
    /// `POSTRUST_DB_NOTIFY_QUEUE`: when full, the driver stops reading the socket.
    rx: Receiver<Notification>,
}

impl Notifications {
    pub async fn next(&mut self) -> Option<Notification> {
        self.rx.recv().await
    }
}

impl Stream for Notifications {
    type Item = Notification;
    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Notification>> {
        self.rx.poll_recv(cx)
    }
}
