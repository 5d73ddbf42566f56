//! The LISTEN connection: one long-lived connection that listens on given channels and
//! survives the server going away.
//!
//! Its owner (the leader shard) reads a stream of [`ListenerEvent`]s. PostgreSQL does not
//! queue notifications for a session that is not listening, so whenever the connection
//! drops, notifications may be lost until `LISTEN` is in place again; the listener says so
//! with [`ListenerEvent::Listening`] `{ after_gap: true }`, and the owner must treat it as
//! "anything may have changed" (the live queries refresh everything).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_lite::Stream;
use glommio::Task;

use super::backoff::{Backoff, jitter};
use super::client::{Client, Notifications};
use super::connect::ConnectOptions;
use super::driver::Notification;
use super::error::Error;
use super::mailbox::{self, Receiver, Sender};
use super::pool::PoolOptions;
use super::url::ConnectConfig;

/// What the listener tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerEvent {
    /// `LISTEN` is in place on every channel. `after_gap` is false the first time and true
    /// after every reconnect: notifications sent in between may have been missed.
    Listening {
        after_gap: bool,
    },
    Notification(Notification),
    /// The connection dropped; the listener is reconnecting with backoff.
    Lost(Error),
}

/// Listens on channels in a task of the current shard; dropping it stops the task and
/// closes the connection.
pub struct Listener {
    /// Sent by the listener task, received by the owner. Bounded by
    /// `POSTRUST_DB_NOTIFY_QUEUE`: when full the task stops reading the connection, and
    /// PostgreSQL keeps further notifications in its own queue.
    events: Receiver<ListenerEvent>,
    _task: Task<()>,
}

/// The listener task's lifecycle.
enum State {
    /// Opening a connection and issuing `LISTEN`.
    Connecting,
    /// Forwarding notifications until the connection drops.
    Listening(Client, Notifications),
    /// Backing off after a failed attempt.
    Waiting,
}

impl Listener {
    /// Starts listening on `channels` (names as given to `NOTIFY`, quoted here). Uses the
    /// pool's backoff settings for reconnecting.
    pub fn start(
        config: ConnectConfig,
        connect: ConnectOptions,
        backoff: &PoolOptions,
        channels: Vec<String>,
    ) -> Listener {
        let (tx, events) = mailbox::channel(Some(connect.notify_queue));
        let backoff = Backoff::new(backoff.backoff_min, backoff.backoff_max);
        let task = glommio::spawn_local(run(config, connect, backoff, channels, tx));
        Listener {
            events,
            _task: task,
        }
    }

    pub async fn next(&mut self) -> Option<ListenerEvent> {
        self.events.recv().await
    }
}

impl Stream for Listener {
    type Item = ListenerEvent;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ListenerEvent>> {
        self.events.poll_recv(cx)
    }
}

async fn run(
    config: ConnectConfig,
    connect: ConnectOptions,
    mut backoff: Backoff,
    channels: Vec<String>,
    events: Sender<ListenerEvent>,
) {
    let listen_sql: String = channels
        .iter()
        .map(|c| format!("LISTEN \"{}\";", c.replace('"', "\"\"")))
        .collect();
    let mut listened_before = false;
    let mut state = State::Connecting;
    while !events.is_closed() {
        state = match state {
            State::Connecting => match listen(&config, &connect, &listen_sql).await {
                Ok((client, notifications)) => {
                    backoff.succeeded();
                    let event = ListenerEvent::Listening {
                        after_gap: listened_before,
                    };
                    listened_before = true;
                    if events.send(event).await.is_err() {
                        return;
                    }
                    log::info!(target: "postrust::pg", "listening on {channels:?} ({config})");
                    State::Listening(client, notifications)
                }
                Err(e) => {
                    let wait = backoff.failed(Instant::now(), jitter());
                    log::warn!(
                        target: "postrust::pg",
                        "LISTEN connection: {e}; retrying in {} ms",
                        wait.as_millis()
                    );
                    State::Waiting
                }
            },
            State::Listening(client, mut notifications) => {
                while let Some(n) = notifications.next().await {
                    if events.send(ListenerEvent::Notification(n)).await.is_err() {
                        return;
                    }
                }
                let reason = client
                    .close_reason()
                    .unwrap_or_else(|| Error::closed("notification stream ended", None));
                if events.send(ListenerEvent::Lost(reason)).await.is_err() {
                    return;
                }
                State::Connecting
            }
            State::Waiting => {
                glommio::timer::sleep(backoff.wait(Instant::now())).await;
                State::Connecting
            }
        };
    }
}

/// Connects and listens; the notification stream is taken before `LISTEN` so nothing that
/// arrives right after it is dropped.
async fn listen(
    config: &ConnectConfig,
    connect: &ConnectOptions,
    listen_sql: &str,
) -> Result<(Client, Notifications), Error> {
    let client = Client::connect(config, connect).await?;
    let notifications = client.notifications();
    // A server that never answers LISTEN must not hold the listener: it tries again.
    let limit = connect.connect_timeout;
    futures_lite::future::or(client.batch_execute(listen_sql), async {
        glommio::timer::sleep(limit).await;
        Err(Error::closed(
            format!("LISTEN had no answer within {} ms", limit.as_millis()),
            None,
        ))
    })
    .await?;
    Ok((client, notifications))
}
