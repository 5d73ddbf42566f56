//! The WebSocket phase of a connection: one task, one hand-written poll loop.
//!
//! Each turn of the loop flushes what is queued for the socket, reacts to shutdown and to
//! the connection's one timer, then reads. Reads go into a buffer shared by the whole shard
//! and only the unfinished tail of a frame is kept per connection, so an idle socket holds
//! no read buffer at all; the write buffer likewise exists only while it has bytes.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use glommio::timer::Timer;
use tungstenite::protocol::frame::coding::{Control, OpCode};

use super::Registered;
use super::deadlines::{Deadline, Deadlines};
use super::operations::{self, Operations};
use super::rate::TokenBucket;
use crate::auth::{AuthError, Identity};
use crate::config::Config;
use crate::metrics::ShardMetrics;
use crate::protocol::transport::close as gql_close;
use crate::protocol::{Action, ErrorCode, GraphQLError, OperationRequest, Session};
use crate::websocket::{
    CloseHandshake, CloseState, Decoded, Decoder, Event, SubProtocol, WsError, close_code,
    encode_close, encode_frame,
};

/// Size of the shard's shared read buffer: the most one read takes from a socket.
const READ_CHUNK: usize = 64 * 1024;
/// Loop turns before the task yields to its neighbours on the shard, so one busy client
/// cannot monopolise it.
const TURNS_PER_POLL: usize = 32;

thread_local! {
    /// The shard's read buffer. Borrowed only inside one synchronous poll step, never across
    /// an await, so connections take turns with it.
    static READ_BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// What a WebSocket connection is given by the HTTP phase that upgraded it.
pub struct Upgrade {
    pub stream: TcpStream,
    /// Bytes the client sent after its upgrade request.
    pub leftover: Vec<u8>,
    pub protocol: Option<SubProtocol>,
    /// The upgrade request's `Authorization` header, used when `connection_init` carries no
    /// credentials.
    pub authorization: Option<String>,
    pub conn: Registered,
}

/// Runs the WebSocket in a task of its own, whose future is the connection itself: an idle
/// socket costs the task, this struct and glommio's poll of the socket, and nothing else.
pub fn spawn(up: Upgrade) {
    let mut conn = WsConn::new(up);
    conn.take_leftover();
    glommio::spawn_local(conn).detach();
}

/// One WebSocket; as a future, ready when the connection is over.
pub struct WsConn {
    stream: TcpStream,
    /// The shard and the outbox.
    conn: Registered,
    /// The operations running on this connection.
    ops: Operations,
    authorization: Option<String>,
    /// Who the client is, once `connection_init` was accepted.
    identity: Option<Identity>,
    /// Bytes of a frame that has not fully arrived yet.
    inbuf: Vec<u8>,
    /// Encoded frames waiting for the socket; `written` of them have gone out.
    outbuf: Vec<u8>,
    written: usize,
    decoder: Decoder,
    close: CloseHandshake,
    /// `None` when the client offered no sub-protocol we speak: it is closed with 4406.
    session: Option<Session>,
    deadlines: Deadlines,
    /// Armed for `deadlines.next()`, at the instant it was armed for.
    timer: Option<(Instant, Timer)>,
    /// Scratch list of protocol actions, reused between messages.
    actions: Vec<Action>,
    /// The socket stopped draining for longer than the send timeout: drop it.
    stalled: bool,
    /// Limits how fast operations may be started.
    subscribe_rate: TokenBucket,
}

impl Future for WsConn {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let over = this.poll_turns(cx);
        if over.is_ready() {
            this.ops.release_all(&op_context(&this.conn));
            log::debug!("websocket closed");
        }
        over
    }
}

impl WsConn {
    fn new(up: Upgrade) -> WsConn {
        let config = &up.conn.shard.config;
        let mut conn = WsConn {
            stream: up.stream,
            ops: Operations::default(),
            authorization: up.authorization,
            identity: None,
            inbuf: up.leftover,
            outbuf: Vec::new(),
            written: 0,
            decoder: Decoder::new(config.max_message_bytes),
            close: CloseHandshake::default(),
            session: up.protocol.map(Session::new),
            deadlines: Deadlines::default(),
            timer: None,
            actions: Vec::new(),
            stalled: false,
            subscribe_rate: TokenBucket::new(
                config.subscribe_rate,
                config.subscribe_burst,
                Instant::now(),
            ),
            conn: up.conn,
        };
        if conn.session.is_some() {
            conn.arm(Deadline::Init, conn.config().connection_init_timeout.0);
        } else {
            conn.close_with(
                gql_close::SUBPROTOCOL_NOT_ACCEPTABLE,
                "Subprotocol not acceptable",
            );
        }
        conn
    }

    fn config(&self) -> &Config {
        &self.conn.shard.config
    }

    fn metrics(&self) -> &ShardMetrics {
        self.conn.shard.metrics()
    }

    /// Handles what the client sent right after its upgrade request; only the unfinished
    /// tail of a frame is kept.
    fn take_leftover(&mut self) {
        let mut early = std::mem::take(&mut self.inbuf);
        let used = self.process(&mut early);
        if used < early.len() {
            self.inbuf = early[used..].to_vec();
        }
    }

    /// Ready when the connection is over.
    fn poll_turns(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..TURNS_PER_POLL {
            match self.turn(cx) {
                Turn::Again => continue,
                Turn::Park => {
                    self.conn.outbox.park(cx.waker());
                    return Poll::Pending;
                }
                Turn::Over => return Poll::Ready(()),
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn turn(&mut self, cx: &mut Context<'_>) -> Turn {
        if self.stalled {
            return Turn::Over;
        }
        if self.take_events() {
            return Turn::Again;
        }
        match self.flush(cx) {
            Poll::Ready(Err(_)) => return Turn::Over,
            Poll::Ready(Ok(())) if self.close.state() == CloseState::Done => return Turn::Over,
            _ => {}
        }
        if self.conn.outbox.is_going_away() && self.close.is_open() {
            self.close_with(close_code::GOING_AWAY, "server shutting down");
            return Turn::Again;
        }
        if self.poll_deadlines(cx) {
            return Turn::Again;
        }
        // A client that does not read its replies stops being read, so what we owe it
        // cannot grow without bound.
        if self.outbuf.len() - self.written >= self.config().max_message_bytes {
            return Turn::Park;
        }
        match self.poll_read(cx) {
            Poll::Ready(true) => Turn::Again,
            Poll::Ready(false) => Turn::Over,
            Poll::Pending => Turn::Park,
        }
    }

    /// Writes until the socket would block, refilling from the outbox in batches while the
    /// connection is open. A write that makes no progress for the send timeout ends the
    /// connection (see [`Deadline::SendStall`]).
    fn flush(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let batch = self.config().write_batch_bytes;
        loop {
            if self.close.is_open() && self.outbuf.len() - self.written < batch {
                if self.written > 0 {
                    self.outbuf.drain(..self.written);
                    self.written = 0;
                }
                let results = self.conn.outbox.fill(&mut self.outbuf, batch);
                if results > 0 {
                    let metrics = self.conn.shard.metrics();
                    metrics.results_sent.add(results);
                    metrics
                        .results_replaced
                        .add(self.conn.outbox.take_replaced());
                }
            }
            if self.written == self.outbuf.len() {
                break;
            }
            match Pin::new(&mut self.stream).poll_write(cx, &self.outbuf[self.written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.written += n;
                    self.deadlines.clear(Deadline::SendStall);
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {
                    if !self.deadlines.is_set(Deadline::SendStall) {
                        self.arm(Deadline::SendStall, self.config().send_timeout.0);
                    }
                    return Poll::Pending;
                }
            }
        }
        // Freed once drained: an idle socket keeps no write buffer.
        self.outbuf = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Reads once into the shard's buffer and handles every whole frame. `Ready(false)`
    /// when the peer closed the socket or it failed.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        READ_BUFFER.with(|shared| {
            let mut shared = shared.borrow_mut();
            let n = match Pin::new(&mut self.stream).poll_read(cx, &mut shared[..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(false),
                Poll::Ready(Ok(n)) => n,
                Poll::Pending => return Poll::Pending,
            };
            if self.inbuf.is_empty() {
                let used = self.process(&mut shared[..n]);
                self.inbuf.extend_from_slice(&shared[used..n]);
            } else {
                self.inbuf.extend_from_slice(&shared[..n]);
                let mut pending = std::mem::take(&mut self.inbuf);
                let used = self.process(&mut pending);
                pending.drain(..used);
                self.inbuf = pending;
            }
            if self.inbuf.is_empty() {
                self.inbuf = Vec::new();
            }
            Poll::Ready(true)
        })
    }

    /// Decodes and handles every whole frame in `buf`; returns how many bytes were used.
    fn process(&mut self, buf: &mut [u8]) -> usize {
        let mut used = 0;
        while self.close.state() != CloseState::Done {
            match self.decoder.decode(&mut buf[used..]) {
                Ok(Decoded::Incomplete) => break,
                Ok(Decoded::Frame { consumed, event }) => {
                    used += consumed;
                    self.on_event(event);
                }
                Err(err) => {
                    self.protocol_violation(err);
                    return buf.len();
                }
            }
        }
        if self.close.state() == CloseState::Done {
            // Nothing after the close frame matters.
            return buf.len();
        }
        used
    }

    fn protocol_violation(&mut self, err: WsError) {
        log::debug!("websocket protocol violation: {}", err.reason());
        self.close_with(err.close_code(), err.reason());
    }

    fn on_event(&mut self, event: Event<'_>) {
        match event {
            Event::Close(frame) => {
                if let Some(code) = self.close.on_peer_close(frame.map(|(code, _)| code)) {
                    encode_close(code, "", &mut self.outbuf);
                }
            }
            // After our close frame the peer's data is dropped (RFC 6455 1.4).
            _ if !self.close.is_open() => {}
            Event::Ping(payload) => {
                encode_frame(OpCode::Control(Control::Pong), payload, &mut self.outbuf)
            }
            Event::Pong | Event::Fragment => {}
            Event::Text(mut text) => {
                if let Some(session) = &mut self.session {
                    session.on_message(
                        text.as_mut_slice(),
                        self.conn.shard.config.max_input_depth.0,
                        &mut self.actions,
                    );
                    self.apply_actions();
                }
            }
        }
    }

    /// Carries out the session's actions, including any they lead to.
    fn apply_actions(&mut self) {
        // The session is taken out while actions run, so they can use it and the connection
        // side by side; actions may queue more actions.
        let Some(mut session) = self.session.take() else {
            self.actions.clear();
            return;
        };
        let mut i = 0;
        while i < self.actions.len() {
            let action = std::mem::replace(&mut self.actions[i], Action::Send(String::new()));
            i += 1;
            match action {
                Action::Send(text) => self.send_text(&text),
                Action::Close(code, reason) => self.close_with(code, &reason),
                Action::Init { credentials } => self.init(&mut session, credentials),
                Action::Start { id, request } => self.start(&mut session, id, request),
                Action::Stop { id } => self.ops.stop(&op_context(&self.conn), &id),
            }
        }
        // Freed rather than kept for the next message: most sockets are idle.
        self.actions = Vec::new();
        self.session = Some(session);
    }

    fn init(&mut self, session: &mut Session, credentials: Option<String>) {
        self.deadlines.clear(Deadline::Init);
        let credentials = credentials.or_else(|| self.authorization.take());
        match self.conn.shard.auth.authenticate(credentials.as_deref()) {
            Ok(identity) => {
                session.accept_init(&mut self.actions);
                let keepalive = self.config().keepalive_interval.0;
                if session.keepalive().is_some() && !keepalive.is_zero() {
                    self.arm(Deadline::Keepalive, keepalive);
                }
                if let Some(exp) = identity.expires_at {
                    self.arm(Deadline::TokenExpiry, until_unix(exp));
                }
                self.identity = Some(identity);
            }
            Err(err) => {
                log::debug!("connection_init refused: {} ({err})", err.code());
                self.metrics().error(err.code());
                session.reject_init(&err.to_string(), &mut self.actions);
            }
        }
    }

    fn start(&mut self, session: &mut Session, id: String, request: OperationRequest) {
        let refusal = refuse_start(
            &self.conn.shard.config,
            &mut self.subscribe_rate,
            session.active_count(),
        );
        if let Some(refusal) = refusal {
            self.metrics().error(refusal.code.as_str());
            let message = session.error(&id, &[refusal]);
            self.send_text(&message);
            return;
        }
        // The session acknowledged `connection_init`, so there is an identity.
        let Some(identity) = self.identity.clone() else {
            return;
        };
        let mut out = Vec::new();
        self.ops.start(
            &op_context(&self.conn),
            session,
            &identity,
            id,
            request,
            &mut out,
        );
        for message in out {
            self.send_text(&message);
        }
    }

    /// Answers what other tasks reported about this connection's operations.
    fn take_events(&mut self) -> bool {
        let mut any = false;
        let mut out = Vec::new();
        let cx = op_context(&self.conn);
        while let Some(event) = self.conn.outbox.take_event() {
            any = true;
            if let Some(session) = self.session.as_mut() {
                self.ops.on_event(&cx, session, event, &mut out);
            }
        }
        for message in out {
            self.send_text(&message);
        }
        any
    }

    /// Polls the timer and acts on every deadline that is due. True if one was.
    fn poll_deadlines(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(next) = self.deadlines.next() else {
            self.timer = None;
            return false;
        };
        if !matches!(&self.timer, Some((armed, _)) if *armed == next) {
            self.timer = Some((
                next,
                Timer::new(next.saturating_duration_since(Instant::now())),
            ));
        }
        let Some((_, timer)) = &mut self.timer else {
            return false;
        };
        if Pin::new(timer).poll(cx).is_pending() {
            return false;
        }
        self.timer = None;
        let now = Instant::now();
        while let Some(due) = self.deadlines.pop_due(now) {
            self.on_deadline(due);
        }
        true
    }

    fn on_deadline(&mut self, deadline: Deadline) {
        match deadline {
            Deadline::Init => {
                let (code, reason) = Session::INIT_TIMEOUT;
                self.close_with(code, reason);
            }
            Deadline::TokenExpiry => {
                self.close_with(gql_close::FORBIDDEN, &AuthError::Expired.to_string());
            }
            Deadline::Keepalive => {
                if let Some(ka) = self.session.as_ref().and_then(Session::keepalive) {
                    self.send_text(ka);
                    self.arm(Deadline::Keepalive, self.config().keepalive_interval.0);
                }
            }
            Deadline::CloseReply => self.close.abandon(),
            Deadline::SendStall => {
                // The peer reads nothing, so a close frame would not reach it either.
                log::debug!(
                    "closing a connection that has not drained for {:?}",
                    self.config().send_timeout.0
                );
                self.close.abandon();
                self.stalled = true;
            }
        }
    }

    fn arm(&mut self, deadline: Deadline, after: Duration) {
        self.deadlines.set(deadline, Instant::now() + after);
    }

    fn send_text(&mut self, text: &str) {
        if self.close.is_open() {
            encode_frame(
                OpCode::Data(tungstenite::protocol::frame::coding::Data::Text),
                text.as_bytes(),
                &mut self.outbuf,
            );
        }
    }

    /// Starts the close handshake (once) and waits a bounded time for the reply.
    fn close_with(&mut self, code: u16, reason: &str) {
        if let Some(code) = self.close.initiate(code) {
            self.metrics().error(close_code::name(code));
            encode_close(code, reason, &mut self.outbuf);
            self.arm(Deadline::CloseReply, self.config().close_timeout.0);
        }
    }
}

fn op_context(conn: &Registered) -> operations::Context<'_> {
    operations::Context {
        shard: &conn.shard,
        outbox: &conn.outbox,
    }
}

/// Why a new operation may not start: the connection's subscribe rate or its number of
/// running operations (`active` counts the new one).
fn refuse_start(config: &Config, rate: &mut TokenBucket, active: usize) -> Option<GraphQLError> {
    let max = config.max_subscriptions_per_connection;
    if max > 0 && active > max {
        return Some(GraphQLError::server(
            ErrorCode::TooManyOperations,
            format!("this connection already runs {max} operations, the most allowed"),
        ));
    }
    if !rate.take(Instant::now()) {
        return Some(GraphQLError::server(
            ErrorCode::RateLimited,
            "operations are started too fast on this connection; try again shortly",
        ));
    }
    None
}

/// Time from now until `unix_secs`; zero if it has passed.
fn until_unix(unix_secs: u64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(unix_secs).saturating_sub(now)
}

enum Turn {
    /// Progress was made; go round again.
    Again,
    /// Nothing to do until the socket, the timer or the outbox wakes the task.
    Park,
    /// The connection is over.
    Over,
}
