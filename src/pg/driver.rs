//! The driver: the one task that owns a connection's socket.
//!
//! Every [`Client`](super::Client) handle hands it encoded requests; it writes them in
//! order and routes the server's answers back. The server answers requests strictly in the
//! order it receives them, so a FIFO of in-flight requests is all the routing needs: each
//! response message goes to the oldest unfinished request, which ends after as many
//! `ReadyForQuery` as it sent `Sync`/`Query` messages. Because writing never waits for
//! reading, requests pipeline: a caller can send many before the first answer arrives.
//!
//! Messages that belong to no request are handled here: `NotificationResponse` goes to the
//! notification stream, `NoticeResponse` to the log, `ParameterStatus` to the shared table,
//! and a `FATAL` error is kept as the reason the connection is about to close. When the
//! socket fails or the server closes it, every waiting request gets a closed error at once:
//! a dead connection never leaves a caller hanging.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use fallible_iterator::FallibleIterator;
use futures_lite::{AsyncRead, AsyncWrite};
use postgres_protocol::message::backend::{ErrorFields, Message};
use postgres_protocol::message::frontend;

use super::error::{DbError, Error};
use super::mailbox::{Receiver, Sender};
use super::socket::Socket;
use super::statements::StatementCache;

/// The lifecycle of a connection after startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Accepting requests.
    Open,
    /// Every client handle is gone; `Terminate` is being written, then the socket closes.
    Terminating,
    /// The socket is closed; requests fail at once with the reason.
    Closed,
}

/// A server notification from `NOTIFY` or `pg_notify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Backend process id of the notifying session.
    pub process_id: i32,
    pub channel: String,
    pub payload: String,
}

/// What a client handle asks of the driver.
pub(crate) enum Request {
    /// Encoded messages to write, and the way back to the caller.
    Messages {
        bytes: BytesMut,
        /// `Sync` and `Query` messages in `bytes`: the response ends after as many
        /// `ReadyForQuery`. Zero for a message that gets no answer of its own (`CopyFail`).
        syncs: usize,
        /// Sent by the driver, received by the caller. Unbounded: it holds one statement
        /// result, which the caller asked for and is reading.
        responses: Sender<Message>,
    },
    /// Close the connection now, for this reason: a caller found the server in a state
    /// this client cannot bring back to a known one.
    Abort(Error),
}

/// State the driver publishes to client handles.
pub(crate) struct Shared {
    pub(crate) state: Cell<ConnState>,
    /// Why the connection closed, handed to every later request.
    pub(crate) close_reason: RefCell<Option<Error>>,
    /// `ParameterStatus` values: server_version, TimeZone, application_name, ...
    pub(crate) parameters: RefCell<HashMap<String, String>>,
    /// The status byte of the last `ReadyForQuery`: `I` idle, `T` in a transaction block,
    /// `E` in a failed one.
    pub(crate) transaction_status: Cell<u8>,
    /// Requests handed to the driver whose responses have not fully arrived.
    pub(crate) pending: Cell<usize>,
    /// The backend's process id and the secret that cancels its statements.
    pub(crate) cancel_key: super::cancel::CancelKey,
    /// Notifications go here once someone asked for them (`Client::notifications`); sent by
    /// the driver, received by that consumer. Bounded: while it is full the driver stops
    /// reading the socket, and PostgreSQL keeps further notifications in its own queue.
    pub(crate) notifications: RefCell<Option<Sender<Notification>>>,
    pub(crate) statements: RefCell<StatementCache>,
}

impl Shared {
    pub(crate) fn closed_error(&self) -> Error {
        self.close_reason
            .borrow()
            .clone()
            .unwrap_or_else(|| Error::closed("connection closed", None))
    }
}

struct InFlight {
    responses: Sender<Message>,
    syncs_left: usize,
}

const COPY_BOTH_RESPONSE_TAG: u8 = b'W';
const COPY_OUT_RESPONSE_TAG: u8 = postgres_protocol::message::backend::COPY_OUT_RESPONSE_TAG;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;
/// Rounds of read-and-dispatch before the driver yields to other tasks of the shard, so a
/// burst of notifications cannot starve them.
const ROUNDS_PER_POLL: usize = 32;

pub(crate) struct Driver {
    socket: Socket,
    shared: Rc<Shared>,
    /// Sent by every client handle, received here. Unbounded: each entry is a caller
    /// awaiting its answer, so the callers themselves bound it.
    requests: Receiver<Request>,
    /// Written requests, oldest first, whose answers have not fully arrived: pushed when a
    /// request is taken, popped at its last `ReadyForQuery`. Unbounded like `requests`:
    /// one entry per waiting caller.
    in_flight: VecDeque<InFlight>,
    /// Encoded messages not yet written.
    output: BytesMut,
    /// Bytes were written since the last flush: TLS holds them until flushed.
    unflushed: bool,
    /// Bytes read but not yet parsed into a whole message.
    input: BytesMut,
    /// Where the socket reads into: allocated once, so a read that finds nothing costs no
    /// buffer preparation.
    scratch: Box<[u8]>,
    /// A `FATAL` error that belonged to no request: the server's reason for closing.
    last_word: Option<DbError>,
}

impl Driver {
    pub(crate) fn new(
        socket: Socket,
        input: BytesMut,
        shared: Rc<Shared>,
        requests: Receiver<Request>,
    ) -> Driver {
        Driver {
            socket,
            shared,
            requests,
            in_flight: VecDeque::new(),
            output: BytesMut::new(),
            unflushed: false,
            input,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            last_word: None,
        }
    }

    /// Runs until every client handle is gone or the connection fails.
    pub(crate) async fn run(mut self) {
        let outcome = std::future::poll_fn(|cx| self.poll_drive(cx)).await;
        let reason = match outcome {
            Ok(()) => Error::closed("connection closed by the client", None),
            Err(e) => {
                log::warn!(target: "postrust::pg", "PostgreSQL connection lost: {e}");
                e
            }
        };
        *self.shared.close_reason.borrow_mut() = Some(reason);
        self.shared.state.set(ConnState::Closed);
        self.shared.pending.set(0);
        self.shared.notifications.borrow_mut().take();
        // Dropping the senders ends every waiting response; closing the queue fails
        // requests that were sent but never written.
        self.in_flight.clear();
        self.requests.close();
    }

    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        for _ in 0..ROUNDS_PER_POLL {
            let mut progress = self.take_requests(cx)?;
            progress |= self.poll_write(cx)?;
            if self.shared.state.get() == ConnState::Terminating
                && self.output.is_empty()
                && !self.unflushed
            {
                return Poll::Ready(Ok(()));
            }
            progress |= self.poll_read(cx)?;
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn take_requests(&mut self, cx: &mut Context<'_>) -> Result<bool, Error> {
        let mut progress = false;
        while self.shared.state.get() == ConnState::Open {
            match self.requests.poll_recv(cx) {
                Poll::Ready(Some(Request::Messages {
                    bytes,
                    syncs,
                    responses,
                })) => {
                    self.output.extend_from_slice(&bytes);
                    if syncs > 0 {
                        self.in_flight.push_back(InFlight {
                            responses,
                            syncs_left: syncs,
                        });
                    }
                    progress = true;
                }
                Poll::Ready(Some(Request::Abort(reason))) => return Err(reason),
                Poll::Ready(None) => {
                    frontend::terminate(&mut self.output);
                    self.shared.state.set(ConnState::Terminating);
                    progress = true;
                }
                Poll::Pending => break,
            }
        }
        Ok(progress)
    }

    /// Writes what it can, then flushes; true when some bytes went out.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<bool, Error> {
        let mut progress = false;
        while !self.output.is_empty() {
            match Pin::new(&mut self.socket).poll_write(cx, &self.output) {
                Poll::Ready(Ok(0)) => return Err(self.lost("the socket closed")),
                Poll::Ready(Ok(n)) => {
                    self.output.advance(n);
                    self.unflushed = true;
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    return Err(self.lost(&format!("writing failed: {e}")));
                }
                Poll::Pending => return Ok(progress),
            }
        }
        if self.unflushed {
            match Pin::new(&mut self.socket).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Err(self.lost(&format!("writing failed: {e}"))),
                Poll::Pending => {}
            }
        }
        Ok(progress)
    }

    /// Reads and dispatches what it can; true when some bytes came in.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Result<bool, Error> {
        // A full notification stream stops the reading, so PostgreSQL keeps the rest in its
        // own queue; but not while a request waits for its reply, which may lie behind the
        // notifications: its caller may be the stream's consumer (the listener waits for
        // LISTEN's reply before it reads a notification), and would wait forever. Those
        // few requests' notifications are queued past the capacity.
        if self.in_flight.is_empty()
            && let Some(tx) = &*self.shared.notifications.borrow()
            && tx.poll_room(cx).is_pending()
        {
            return Ok(false);
        }
        // A bounded answer (a replication stream, which never ends on its own) whose reader
        // is behind stops the reading the same way: the server holds the rest.
        if let Some(front) = self.in_flight.front()
            && front.responses.poll_room(cx).is_pending()
        {
            return Ok(false);
        }
        let n = match Pin::new(&mut self.socket).poll_read(cx, &mut self.scratch[..]) {
            Poll::Ready(Ok(0)) => return Err(self.lost("the server closed the connection")),
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => return Err(self.lost(&format!("reading failed: {e}"))),
            Poll::Pending => return Ok(false),
        };
        self.input.extend_from_slice(&self.scratch[..n]);
        loop {
            // `CopyBothResponse` (the start of a replication stream) is laid out exactly as
            // `CopyOutResponse`, whose tag postgres-protocol knows and this one it does not:
            // it is read as that, and callers treat the two alike.
            if self.input.first() == Some(&COPY_BOTH_RESPONSE_TAG) {
                self.input[0] = COPY_OUT_RESPONSE_TAG;
            }
            let Some(message) = Message::parse(&mut self.input)
                .map_err(|e| Error::protocol(format!("malformed message from the server: {e}")))?
            else {
                break;
            };
            self.dispatch(message)?;
        }
        Ok(true)
    }

    fn dispatch(&mut self, message: Message) -> Result<(), Error> {
        match message {
            Message::NotificationResponse(body) => {
                let notification = Notification {
                    process_id: body.process_id(),
                    channel: lossy(body.channel()),
                    payload: lossy(body.message()),
                };
                let mut slot = self.shared.notifications.borrow_mut();
                match &*slot {
                    Some(tx) => {
                        if tx.push(notification).is_err() {
                            *slot = None;
                        }
                    }
                    None => log::debug!(
                        target: "postrust::pg",
                        "notification on {:?} with no consumer dropped",
                        notification.channel
                    ),
                }
            }
            Message::NoticeResponse(body) => log_notice(&mut body.fields()),
            Message::ParameterStatus(body) => {
                self.shared
                    .parameters
                    .borrow_mut()
                    .insert(lossy(body.name()), lossy(body.value()));
            }
            Message::ErrorResponse(body) if is_fatal(&mut body.fields()) => {
                // The server is about to close the connection; the request (if any) gets
                // the closed error carrying this reason instead of a statement error.
                self.last_word = DbError::parse(&mut body.fields()).ok();
            }
            message => {
                let Some(front) = self.in_flight.front_mut() else {
                    return Err(Error::protocol(
                        "the server sent a response nobody asked for",
                    ));
                };
                let done = match &message {
                    Message::ReadyForQuery(body) => {
                        self.shared.transaction_status.set(body.status());
                        front.syncs_left -= 1;
                        front.syncs_left == 0
                    }
                    _ => false,
                };
                // A caller that gave up (its future was dropped) no longer reads; its
                // answer is discarded.
                let _ = front.responses.push(message);
                if done {
                    self.in_flight.pop_front();
                    self.shared
                        .pending
                        .set(self.shared.pending.get().saturating_sub(1));
                }
            }
        }
        Ok(())
    }

    fn lost(&mut self, why: &str) -> Error {
        Error::closed(why, self.last_word.take())
    }
}

fn lossy(field: std::io::Result<&str>) -> String {
    field.unwrap_or("").to_owned()
}

fn is_fatal(fields: &mut ErrorFields<'_>) -> bool {
    let mut fatal = false;
    while let Ok(Some(field)) = fields.next() {
        if field.type_() == b'V' || field.type_() == b'S' {
            fatal |= matches!(field.value_bytes(), b"FATAL" | b"PANIC");
        }
    }
    fatal
}

/// Server notices (`RAISE NOTICE`, warnings) go to the log at a matching level.
pub(crate) fn log_notice(fields: &mut ErrorFields<'_>) {
    let Ok(notice) = DbError::parse(fields) else {
        return;
    };
    let level = match notice.severity.as_str() {
        "WARNING" => log::Level::Warn,
        "NOTICE" | "INFO" => log::Level::Info,
        _ => log::Level::Debug,
    };
    log::log!(target: "postrust::pg", level, "PostgreSQL says: {notice}");
}
