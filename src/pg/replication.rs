//! A logical replication stream: a connection in replication mode, a temporary slot, and
//! what the slot's output plugin decodes from the WAL, surviving the server going away.
//!
//! The slot is `TEMPORARY`: PostgreSQL drops it when the connection ends, so a server that
//! dies or is stopped leaves no slot holding WAL back. The price is the listener's: changes
//! committed while no slot exists are not seen, so after every reconnect the owner hears
//! [`ReplicationEvent::Streaming`] `{ after_gap: true }` and must refresh everything.
//!
//! The stream answers the server's keepalives itself and reports the position it has
//! received, so the slot never holds more WAL than the stream is behind by. It reports
//! promptly (within [`PROMPT_REPORT`], and always before it waits for its owner): where
//! `synchronous_standby_names` is `*`, PostgreSQL counts this stream as a synchronous
//! standby, and commits wait for its report. An owner that stays behind longer than the
//! server's `wal_sender_timeout` gets the stream dropped and a gap reported.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use glommio::Task;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::backoff::{Backoff, jitter};
use super::client::Client;
use super::connect::ConnectOptions;
use super::error::Error;
use super::mailbox::{self, Receiver, Sender};
use super::pool::PoolOptions;
use super::query::unexpected;
use super::url::ConnectConfig;

/// What the stream tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationEvent {
    /// A new temporary slot is streaming. `after_gap` is false the first time and true after
    /// every reconnect: changes committed in between were not seen.
    Streaming { after_gap: bool },
    /// The output plugin's bytes for one piece of WAL (an `XLogData` message's payload), in
    /// WAL order.
    Data(Bytes),
    /// The connection dropped or the stream failed; the stream is reconnecting with backoff.
    Lost(Error),
}

/// Which output plugin streams, and how.
#[derive(Debug, Clone)]
pub struct ReplicationOptions {
    /// The output plugin, such as `pgoutput`.
    pub plugin: String,
    /// The plugin's options as `START_REPLICATION` takes them, such as
    /// `proto_version '1', publication_names '"postrust"'`.
    pub plugin_options: String,
    /// `XLogData` messages buffered between the stream and its owner; when full, the socket
    /// is not read and the slot keeps the rest.
    pub queue: usize,
}

/// Streams in a task of the current shard; dropping it stops the task and closes the
/// connection, which drops the slot.
pub struct ReplicationStream {
    /// Sent by the stream's task, received by the owner. Bounded by
    /// [`ReplicationOptions::queue`].
    events: Receiver<ReplicationEvent>,
    _task: Task<()>,
}

/// A status report goes out this soon after WAL arrives, so the slot lets go of the WAL
/// the stream has received, and a commit waiting for this stream as a synchronous standby
/// waits no longer.
const PROMPT_REPORT: Duration = Duration::from_millis(1);
/// How the replication connection names itself (`application_name`, seen in
/// `pg_stat_replication`), after the login's own name.
const NAME_SUFFIX: &str = "_changes";
/// Unix time of PostgreSQL's epoch, 2000-01-01, which replication messages count from.
const PG_EPOCH_UNIX_SECONDS: u64 = 946_684_800;
/// `XLogData`: tag, start position, end of WAL, send time, then the plugin's bytes.
const XLOG_DATA_HEADER: usize = 1 + 8 + 8 + 8;
/// Primary keepalive: tag, end of WAL, send time, reply requested.
const KEEPALIVE_LEN: usize = 1 + 8 + 8 + 1;
/// Messages of the replication answer the driver queues before it stops reading.
const ANSWER_QUEUE: usize = 64;

impl ReplicationStream {
    /// Starts streaming from a new temporary slot. `config` is copied and switched to
    /// replication mode; the pool's backoff settings pace the reconnects.
    pub fn start(
        config: ConnectConfig,
        connect: ConnectOptions,
        backoff: &PoolOptions,
        options: ReplicationOptions,
    ) -> ReplicationStream {
        let (tx, events) = mailbox::channel(Some(options.queue.max(1)));
        let config = ConnectConfig {
            replication: true,
            application_name: format!("{}{NAME_SUFFIX}", config.application_name),
            ..config
        };
        let backoff = Backoff::new(backoff.backoff_min, backoff.backoff_max);
        let task = glommio::spawn_local(run(config, connect, backoff, options, tx));
        ReplicationStream {
            events,
            _task: task,
        }
    }

    pub async fn next(&mut self) -> Option<ReplicationEvent> {
        self.events.recv().await
    }
}

async fn run(
    config: ConnectConfig,
    connect: ConnectOptions,
    mut backoff: Backoff,
    options: ReplicationOptions,
    events: Sender<ReplicationEvent>,
) {
    let mut streamed_before = false;
    while !events.is_closed() {
        let opened = match open(&config, &connect, &options).await {
            Ok((client, answer)) => {
                let event = ReplicationEvent::Streaming {
                    after_gap: streamed_before,
                };
                streamed_before = true;
                if events.send(event).await.is_err() {
                    return;
                }
                log::info!(
                    target: "postrust::pg",
                    "streaming changes with {} ({config})",
                    options.plugin
                );
                stream(&client, &answer, &events, &mut backoff).await
            }
            Err(e) => Err(e),
        };
        let reason = match opened {
            Ok(()) => return,
            Err(e) => e,
        };
        // Backoff here too: a stream that fails as soon as it starts (its publication was
        // dropped) must not spin.
        let wait = backoff.failed(Instant::now(), jitter());
        log::warn!(
            target: "postrust::pg",
            "replication stream: {reason}; retrying in {} ms",
            wait.as_millis()
        );
        if streamed_before && events.send(ReplicationEvent::Lost(reason)).await.is_err() {
            return;
        }
        glommio::timer::sleep(backoff.wait(Instant::now())).await;
    }
}

/// Connects in replication mode, creates a temporary slot and starts streaming from it;
/// returns the connection and the queue its stream arrives on.
async fn open(
    config: &ConnectConfig,
    connect: &ConnectOptions,
    options: &ReplicationOptions,
) -> Result<(Client, Receiver<Message>), Error> {
    let client = Client::connect(config, connect).await?;
    // Slot names are cluster-wide: the backend's process id keeps each connection's own.
    let slot = format!("postrust_{}", client.process_id());
    let create = format!(
        "CREATE_REPLICATION_SLOT {slot} TEMPORARY LOGICAL {} NOEXPORT_SNAPSHOT",
        options.plugin
    );
    // The slot waits for the transactions running at its creation to end, however long
    // one stays open. Giving up would not help: the server goes on waiting (it does not
    // notice a client that left while it waits for a lock), holding a WAL sender and a
    // slot, and the next attempt waits for the same transaction. So it waits, and says why.
    {
        let creating = client.batch_execute(&create);
        futures_lite::pin!(creating);
        let started = Instant::now();
        loop {
            let patience = glommio::timer::sleep(connect.connect_timeout);
            let done = futures_lite::future::or(async { Some(creating.as_mut().await) }, async {
                patience.await;
                None
            })
            .await;
            match done {
                Some(result) => {
                    result?;
                    break;
                }
                None => log::warn!(
                    target: "postrust::pg",
                    "creating the replication slot has waited {} s for the transactions running \
                     at its start to end (one idle in transaction holds it up: see \
                     pg_stat_activity); changes are not heard until it is created",
                    started.elapsed().as_secs()
                ),
            }
        }
    }
    let start = format!(
        "START_REPLICATION SLOT {slot} LOGICAL 0/0 ({})",
        options.plugin_options
    );
    let mut buf = BytesMut::new();
    frontend::query(&start, &mut buf)
        .map_err(|e| Error::config(format!("START_REPLICATION cannot be sent: {e}")))?;
    let answer = client.send_bounded(buf, 1, Some(ANSWER_QUEUE))?;
    match answer.recv().await {
        // The driver reads `CopyBothResponse` as `CopyOutResponse`.
        Some(Message::CopyOutResponse(_)) => Ok((client, answer)),
        Some(Message::ErrorResponse(body)) => Err(Error::from_response(&body)?),
        Some(other) => Err(unexpected(&other, "starting replication")),
        None => Err(client.shared.closed_error()),
    }
}

/// Forwards `XLogData` until the stream fails; `Ok` when the owner is gone. The backoff is
/// reset once the stream has shown it works (a message arrived).
async fn stream(
    client: &Client,
    answer: &Receiver<Message>,
    events: &Sender<ReplicationEvent>,
    backoff: &mut Backoff,
) -> Result<(), Error> {
    // The furthest WAL position received: reported as written, flushed and applied, which
    // for a temporary slot only lets PostgreSQL recycle the WAL before it.
    let mut received = 0u64;
    let mut reported_position = 0u64;
    let mut reported = Instant::now();
    let mut working = false;
    loop {
        // With WAL received and not reported, a quiet moment is the time to report it.
        let next = if received > reported_position {
            let quiet = glommio::timer::sleep(PROMPT_REPORT);
            futures_lite::future::or(async { Some(answer.recv().await) }, async {
                quiet.await;
                None
            })
            .await
        } else {
            Some(answer.recv().await)
        };
        let message = match next {
            Some(Some(message)) => message,
            Some(None) => return Err(client.shared.closed_error()),
            None => {
                report(client, received)?;
                reported_position = received;
                reported = Instant::now();
                continue;
            }
        };
        let bytes = match message {
            Message::CopyData(body) => body.into_bytes(),
            Message::ErrorResponse(body) => return Err(Error::from_response(&body)?),
            other => return Err(unexpected(&other, "streaming changes")),
        };
        if !working {
            working = true;
            backoff.succeeded();
        }
        match bytes.first() {
            Some(b'w') if bytes.len() >= XLOG_DATA_HEADER => {
                // The message's end: its start plus the plugin's bytes.
                let end = be_u64(&bytes[1..9]) + (bytes.len() - XLOG_DATA_HEADER) as u64;
                received = received.max(end);
                if received > reported_position
                    && (events.is_full() || reported.elapsed() >= PROMPT_REPORT)
                {
                    report(client, received)?;
                    reported_position = received;
                    reported = Instant::now();
                }
                let data = bytes.slice(XLOG_DATA_HEADER..);
                if events.send(ReplicationEvent::Data(data)).await.is_err() {
                    return Ok(());
                }
            }
            Some(b'k') if bytes.len() >= KEEPALIVE_LEN => {
                received = received.max(be_u64(&bytes[1..9]));
                if bytes[KEEPALIVE_LEN - 1] != 0 || received > reported_position {
                    report(client, received)?;
                    reported_position = received;
                    reported = Instant::now();
                }
            }
            _ => {
                return Err(Error::protocol(format!(
                    "unreadable replication message of {} bytes",
                    bytes.len()
                )));
            }
        }
    }
}

/// Sends a standby status update saying everything up to `position` was received.
fn report(client: &Client, position: u64) -> Result<(), Error> {
    let mut body = BytesMut::with_capacity(1 + 8 * 4 + 1);
    body.put_u8(b'r');
    body.put_u64(position);
    body.put_u64(position);
    body.put_u64(position);
    body.put_i64(pg_now());
    body.put_u8(0);
    let mut buf = BytesMut::new();
    frontend::CopyData::new(body.freeze())
        .map_err(|e| Error::config(format!("status update cannot be sent: {e}")))?
        .write(&mut buf);
    client.send_bounded(buf, 0, None).map(drop)
}

/// Microseconds since PostgreSQL's epoch.
fn pg_now() -> i64 {
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let micros = since_unix
        .as_micros()
        .saturating_sub(u128::from(PG_EPOCH_UNIX_SECONDS) * 1_000_000);
    i64::try_from(micros).unwrap_or(i64::MAX)
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(word)
}
