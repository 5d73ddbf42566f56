//! Where a client's reads run: on a streaming replica that has caught up, or on the primary.
//!
//! With `POSTRUST_DB_READ_URL` set, every read (a query, a live query's first result or
//! refresh) first takes the primary's WAL insert position (`pg_current_wal_insert_lsn()`).
//! Everything committed before the read began, and so every commit whose notification
//! caused it, lies at or before that position. The read then runs on a replica only once
//! that replica has replayed past the position (`pg_last_wal_replay_lsn()`, asked on the
//! very connection the read then uses, waiting up to `POSTRUST_DB_READ_WAIT_MS`), so it
//! never sees an older database than the primary would have shown. A replica that is
//! down, is not a standby, or has not caught up within the wait is left out for a
//! backoff pause, and the primary serves meanwhile; so does a read that failed on a
//! replica for want of the replica (a lost connection, a conflict with recovery).
//!
//! Writes (mutations) and the LISTEN connection stay on the primary.

use std::cell::{Cell, RefCell};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::future;

use crate::metrics::ShardMetrics;
use crate::pg::{self, Backoff, Pool, PooledClient};

/// Longest a read waits for a connection to a replica before the primary serves it.
const CONNECT_BUDGET: Duration = Duration::from_millis(100);

/// Why a replica did not serve a read.
enum Behind {
    /// Its connections were all in use: the read goes to the primary, the replica stays in.
    Busy,
    /// It did not answer in time.
    Silent,
    /// It failed, is not a standby, or had not caught up within the wait: it is left out.
    Failed(String),
}

/// Sizes of WAL page headers: the first page of a segment has the long one.
const SHORT_PAGE_HEADER: u64 = 24;
const LONG_PAGE_HEADER: u64 = 40;

/// `pg_current_wal_insert_lsn()` as the end of the last record written. When the insert
/// position sits at the start of a page it points past the page's header, where no record
/// can end, while a replica that has replayed everything reports the end of the last record,
/// the page boundary itself; without this a replica would look behind until the next write.
pub fn record_end(lsn: u64, block: u64, segment: u64) -> u64 {
    if segment > 0 && lsn % segment == LONG_PAGE_HEADER {
        lsn - LONG_PAGE_HEADER
    } else if block > 0 && lsn % block == SHORT_PAGE_HEADER {
        lsn - SHORT_PAGE_HEADER
    } else {
        lsn
    }
}

/// A WAL position as PostgreSQL prints it (`16/B374D848`), as a number.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    let hi = u32::from_str_radix(hi, 16).ok()?;
    let lo = u32::from_str_radix(lo, 16).ok()?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

/// One replica's pool and whether it is in use.
struct Replica {
    pool: Pool,
    /// Where it is, for the log (no password).
    name: String,
    /// Pauses after failures: doubles per consecutive failure, reset by a read it served.
    backoff: RefCell<Backoff>,
    /// Left out until then.
    left_out_until: Cell<Option<Instant>>,
}

/// The primary's position, asked by one read at a time for every read waiting on it.
#[derive(Default)]
struct Position {
    /// A read is asking the primary now.
    asking: Cell<bool>,
    /// The last answer and when its question was sent.
    last: Cell<Option<(Instant, u64)>>,
    /// Reads waiting for the one asking.
    waiters: RefCell<Vec<Waker>>,
}

/// Ends a read's turn at asking the position, however it ends (answered, failed, or the
/// read dropped), and wakes the reads waiting for it.
struct Asking<'a>(&'a Position);

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        self.0.asking.set(false);
        for waker in self.0.waiters.take() {
            waker.wake();
        }
    }
}

/// The shard's primary and replicas.
pub struct Database {
    pub primary: Pool,
    replicas: Vec<Replica>,
    position: Position,
    /// Longest a read waits for a replica to replay past the primary's position.
    wait: Duration,
    /// The replica the next read tries first (round robin).
    next: Cell<usize>,
}

/// Where a read got its connection.
pub enum Reader {
    Primary,
    /// The index of the replica.
    Replica(usize),
}

impl Database {
    /// `replicas` are pools with the same settings as the primary's; `wait` bounds how long
    /// a read waits for one to catch up.
    pub fn new(
        primary: Pool,
        replicas: Vec<(Pool, String)>,
        wait: Duration,
        backoff: (Duration, Duration),
    ) -> Database {
        Database {
            primary,
            replicas: replicas
                .into_iter()
                .map(|(pool, name)| Replica {
                    pool,
                    name,
                    backoff: RefCell::new(Backoff::new(backoff.0, backoff.1)),
                    left_out_until: Cell::new(None),
                })
                .collect(),
            wait,
            next: Cell::new(0),
            position: Position::default(),
        }
    }

    /// A connection for a read, and where it is: a replica that has replayed everything the
    /// primary had written when the read began, or else the primary.
    pub async fn reader(
        &self,
        metrics: &ShardMetrics,
    ) -> Result<(PooledClient, Reader), pg::Error> {
        if let Some(found) = self.caught_up_replica().await {
            metrics.replica_reads.inc();
            return Ok(found);
        }
        if !self.replicas.is_empty() {
            metrics.replica_fallbacks.inc();
        }
        Ok((self.primary.get().await?, Reader::Primary))
    }

    /// A read that failed on replica `index` for want of the replica: it is left out, and
    /// the caller runs the read on the primary.
    pub fn replica_failed(&self, index: usize, why: &str) {
        if let Some(replica) = self.replicas.get(index) {
            self.leave_out(replica, why);
        }
    }

    async fn caught_up_replica(&self) -> Option<(PooledClient, Reader)> {
        let began = Instant::now();
        let now = began;
        let usable: Vec<usize> = (0..self.replicas.len())
            .map(|i| (self.next.get() + i) % self.replicas.len())
            .filter(|&i| {
                self.replicas[i]
                    .left_out_until
                    .get()
                    .is_none_or(|t| now >= t)
            })
            .collect();
        let first = *usable.first()?;
        self.next.set(first + 1);
        // Every commit visible before the read began lies at or before this position.
        let target = match self.primary_position_since(began).await {
            Ok(lsn) => lsn,
            Err(e) => {
                log::debug!("cannot read the primary's WAL position: {e}");
                return None;
            }
        };
        for index in usable {
            let replica = &self.replicas[index];
            // One budget for the whole attempt, so a replica that stops answering without
            // closing the connection cannot hold the read.
            let budget = self.wait + CONNECT_BUDGET;
            let attempt = future::or(self.wait_for(replica, target), async {
                glommio::timer::sleep(budget).await;
                Err(Behind::Silent)
            });
            match attempt.await {
                Ok(client) => {
                    replica.backoff.borrow_mut().succeeded();
                    if replica.left_out_until.take().is_some() {
                        log::info!("read replica {} is in use again", replica.name);
                    }
                    return Some((client, Reader::Replica(index)));
                }
                // Busy, not broken: this read goes elsewhere, the replica stays in.
                Err(Behind::Busy) => {}
                Err(Behind::Silent) => self.leave_out(
                    replica,
                    &format!("it did not answer within {} ms", budget.as_millis()),
                ),
                Err(Behind::Failed(why)) => self.leave_out(replica, &why),
            }
        }
        None
    }

    /// The primary's WAL insert position, as a record end, asked after `began`. Reads share
    /// the question: while one read asks, those that began meanwhile wait and then share
    /// the next answer, so the primary answers one question per round trip, however many
    /// reads there are.
    async fn primary_position_since(&self, began: Instant) -> Result<u64, pg::Error> {
        let position = &self.position;
        loop {
            if let Some((sent, lsn)) = position.last.get()
                && sent > began
            {
                return Ok(lsn);
            }
            if !position.asking.get() {
                position.asking.set(true);
                let _turn = Asking(position);
                let client = self.primary.get().await?;
                let sent = Instant::now();
                let lsn = self.ask_position(&client).await?;
                position.last.set(Some((sent, lsn)));
                return Ok(lsn);
            }
            future::poll_fn(|cx| {
                if position.asking.get() {
                    position.waiters.borrow_mut().push(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
        }
    }

    async fn ask_position(&self, client: &pg::Client) -> Result<u64, pg::Error> {
        let rows = client
            .query(
                "SELECT pg_current_wal_insert_lsn()::text, current_setting('wal_block_size'), \
                 pg_size_bytes(current_setting('wal_segment_size'))::text",
                &[],
            )
            .await?;
        let number = |column| rows.value(0, column).and_then(|v| v.parse::<u64>().ok());
        match (rows.value(0, 0).and_then(parse_lsn), number(1), number(2)) {
            (Some(lsn), Some(block), Some(segment)) => Ok(record_end(lsn, block, segment)),
            _ => Err(pg::Error::closed(
                "the primary's WAL position was unreadable",
                None,
            )),
        }
    }

    /// A connection to `replica` once it has replayed past `target`, within the wait.
    async fn wait_for(&self, replica: &Replica, target: u64) -> Result<PooledClient, Behind> {
        let deadline = Instant::now() + self.wait;
        let client = future::or(
            async {
                replica
                    .pool
                    .get()
                    .await
                    .map_err(|e| Behind::Failed(e.to_string()))
            },
            async {
                // A connection that cannot be had quickly is as good as none: the primary
                // serves this read.
                glommio::timer::sleep(CONNECT_BUDGET).await;
                Err(Behind::Busy)
            },
        )
        .await?;
        let mut pause = Duration::from_micros(500);
        loop {
            // A promoted standby is no longer a copy of the primary: null.
            let rows = client
                .query(
                    "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text END",
                    &[],
                )
                .await
                .map_err(|e| Behind::Failed(e.to_string()))?;
            let replayed = match rows.value(0, 0) {
                Some(text) => parse_lsn(text)
                    .ok_or_else(|| Behind::Failed(format!("unreadable position {text}")))?,
                None => return Err(Behind::Failed("it is not a standby".into())),
            };
            if replayed >= target {
                return Ok(client);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Behind::Failed(format!(
                    "it had not replayed the primary's position within {} ms \
                     (POSTRUST_DB_READ_WAIT_MS)",
                    self.wait.as_millis()
                )));
            }
            glommio::timer::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(8));
        }
    }

    fn leave_out(&self, replica: &Replica, why: &str) {
        // Reads that were under way when it was left out fail too: one failure per pause.
        if replica
            .left_out_until
            .get()
            .is_some_and(|until| Instant::now() < until)
        {
            return;
        }
        let pause = replica
            .backoff
            .borrow_mut()
            .failed(Instant::now(), pg::jitter());
        let was_in = replica
            .left_out_until
            .replace(Some(Instant::now() + pause))
            .is_none();
        let log = format!(
            "read replica {} left out for {} ms, the primary serves its reads: {why}",
            replica.name,
            pause.as_millis()
        );
        if was_in {
            log::warn!("{log}");
        } else {
            log::debug!("{log}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_insert_position_just_past_a_page_header_is_the_page_boundary() {
        let (block, segment) = (8192, 16 << 20);
        assert_eq!(record_end(3 * segment + 40, block, segment), 3 * segment);
        assert_eq!(
            record_end(3 * segment + 8192 + 24, block, segment),
            3 * segment + 8192
        );
        // Anywhere else it already is a record's end.
        for lsn in [3 * segment + 64, 3 * segment + 8192 + 48] {
            assert_eq!(record_end(lsn, block, segment), lsn);
        }
    }

    #[test]
    fn positions_read_as_postgresql_orders_them() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert!(parse_lsn("1/0").unwrap() > parse_lsn("0/FFFFFFFF").unwrap());
        assert_eq!(parse_lsn("FFFFFFFF/FFFFFFFF"), Some(u64::MAX));
        for bad in ["", "16", "16/", "/1", "x/1", "1/2/3", "100000000/0"] {
            assert_eq!(parse_lsn(bad), None, "{bad}");
        }
    }
}
