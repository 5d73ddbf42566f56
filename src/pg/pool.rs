//! A shard's pool of PostgreSQL connections.
//!
//! Shard-local (`Rc`, `RefCell`, not `Send`, no locks): each shard builds its own. At most
//! `POSTRUST_DB_POOL_SIZE` connections exist; a caller takes one for the duration of a
//! request ([`PooledClient`]) and it returns to the pool when dropped, unless it closed or
//! was left inside a transaction. Connections are (re)opened on demand by the caller that
//! needs one, spaced by exponential backoff with jitter after failures, and a caller that
//! gets nothing within `POSTRUST_DB_POOL_TIMEOUT_MS` receives an
//! [`ErrorKind::PoolTimeout`](super::ErrorKind::PoolTimeout) error naming the last failure.

use std::cell::RefCell;
use std::ops::Deref;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{StreamExt, future};
use glommio::sync::{Semaphore, StaticPermit};

use super::backoff::{Backoff, jitter};
use super::cancel::cancel;
use super::client::Client;
use super::connect::ConnectOptions;
use super::error::{Error, ErrorKind};
use super::mailbox;
use super::sqlstate;
use super::url::ConnectConfig;

#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Connections at most.
    pub size: usize,
    /// How long `get` waits in total.
    pub timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// The `statement_timeout` [`Pool::query_as`] sets for each statement; `None` leaves
    /// the role's or database's own.
    pub statement_timeout: Option<Duration>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            size: 4,
            timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            statement_timeout: None,
        }
    }
}

/// The shard's pool; clones share it.
#[derive(Clone)]
pub struct Pool(Rc<PoolInner>);

struct PoolInner {
    config: ConnectConfig,
    connect: ConnectOptions,
    options: PoolOptions,
    /// One permit per connection the pool may have. `get` holds one for as long as its
    /// caller holds the connection; callers beyond the size wait here in FIFO order until a
    /// connection is returned, or their timeout ends the wait.
    permits: Rc<Semaphore>,
    /// Open connections nobody holds. Pushed when a `PooledClient` drops, popped by `get`;
    /// never longer than the pool size because each entry once held a permit.
    idle: RefCell<Vec<Client>>,
    /// Shared by every caller, so concurrent callers back off together.
    backoff: RefCell<Backoff>,
    /// The last connection failure, reported to callers that time out.
    last_error: RefCell<Option<Error>>,
    /// `statement_timeout` in milliseconds as text, the bind parameter `query_as` sends.
    statement_timeout: Option<String>,
    /// Connections dropped with a statement still running, each with its permit: sent by
    /// `PooledClient::drop`, received by the pool's canceller task (started by the first
    /// `get`, inside the executor), which sends a CancelRequest and only then lets the
    /// permit go, so the pool never has more statements running than its size. Never
    /// longer than the pool size, since each entry holds a permit.
    cancels: RefCell<Option<mailbox::Sender<(Client, StaticPermit)>>>,
}

impl Pool {
    pub fn new(config: ConnectConfig, connect: ConnectOptions, options: PoolOptions) -> Pool {
        let size = options.size.max(1);
        Pool(Rc::new(PoolInner {
            permits: Rc::new(Semaphore::new(size as u64)),
            idle: RefCell::new(Vec::with_capacity(size)),
            backoff: RefCell::new(Backoff::new(options.backoff_min, options.backoff_max)),
            last_error: RefCell::new(None),
            statement_timeout: options.statement_timeout.map(|t| t.as_millis().to_string()),
            cancels: RefCell::new(None),
            config,
            connect,
            options,
        }))
    }

    /// A connection for the caller's exclusive use, open and outside any transaction.
    pub async fn get(&self) -> Result<PooledClient, Error> {
        let timeout = self.0.options.timeout;
        future::or(self.acquire(), async {
            glommio::timer::sleep(timeout).await;
            let last = match &*self.0.last_error.borrow() {
                Some(e) => format!("; last connection error: {e}"),
                None => " (all connections are in use)".to_owned(),
            };
            Err(Error::pool_timeout(format!(
                "no PostgreSQL connection within {} ms{last}",
                timeout.as_millis()
            )))
        })
        .await
    }

    async fn acquire(&self) -> Result<PooledClient, Error> {
        self.start_canceller();
        let permit = crate::permits::acquire_static(&self.0.permits)
            .await
            .map_err(|e| Error::closed(format!("the pool is closed: {e}"), None))?;
        loop {
            let reused = self.0.idle.borrow_mut().pop();
            match reused {
                Some(client) if client.is_idle() => {
                    return Ok(PooledClient {
                        client: Some(client),
                        pool: self.0.clone(),
                        permit: Some(permit),
                    });
                }
                // Died while idle (the driver saw the socket close): drop it, try the next.
                Some(_) => continue,
                None => {}
            }
            let wait = self.0.backoff.borrow().wait(Instant::now());
            if !wait.is_zero() {
                glommio::timer::sleep(wait).await;
            }
            match Client::connect(&self.0.config, &self.0.connect).await {
                Ok(client) => {
                    self.0.backoff.borrow_mut().succeeded();
                    self.0.last_error.borrow_mut().take();
                    return Ok(PooledClient {
                        client: Some(client),
                        pool: self.0.clone(),
                        permit: Some(permit),
                    });
                }
                Err(e) => {
                    let wait = self.0.backoff.borrow_mut().failed(Instant::now(), jitter());
                    log::warn!(
                        target: "postrust::pg",
                        "{e}; retrying in {} ms",
                        wait.as_millis()
                    );
                    if !is_transient(&e) {
                        return Err(e);
                    }
                    *self.0.last_error.borrow_mut() = Some(e);
                }
            }
        }
    }

    /// [`Client::query_as`] on a connection of the pool: role, claims, SQL and parameters
    /// in, the JSON text out, one round trip once connected. What the query engine and
    /// live-query refreshes call.
    pub async fn query_as(
        &self,
        role: &str,
        claims: &str,
        sql: &str,
        params: &[Option<&str>],
    ) -> Result<Option<String>, Error> {
        self.get()
            .await?
            .query_as(role, claims, self.statement_timeout_setting(), sql, params)
            .await
    }

    /// The `statement_timeout` value (milliseconds, as text) that [`Pool::query_as`] sets,
    /// for callers that take a connection and run [`Client::query_as`] themselves.
    pub fn statement_timeout_setting(&self) -> Option<&str> {
        self.0.statement_timeout.as_deref()
    }

    fn start_canceller(&self) {
        if self.0.cancels.borrow().is_some() {
            return;
        }
        let (tx, mut rx) = mailbox::channel(None);
        *self.0.cancels.borrow_mut() = Some(tx);
        let (config, connect) = (self.0.config.clone(), self.0.connect.clone());
        glommio::spawn_local(async move {
            // Ends when the pool (the only sender) is gone.
            while let Some((client, permit)) = rx.next().await {
                let (config, connect) = (config.clone(), connect.clone());
                glommio::spawn_local(async move {
                    cancel_until_settled(&config, &connect, &client).await;
                    drop(client);
                    drop(permit);
                })
                .detach();
            }
        })
        .detach();
    }

    /// The statement timeout `query_as` sets, if any.
    pub fn statement_timeout(&self) -> Option<Duration> {
        self.0.options.statement_timeout
    }

    /// Open connections nobody holds right now.
    pub fn idle_count(&self) -> usize {
        self.0.idle.borrow().len()
    }

    /// The settings connections are opened with, password redacted by its `Display`.
    pub fn config(&self) -> &ConnectConfig {
        &self.0.config
    }
}

/// Cancel requests sent for one abandoned statement at most. A cancel that reaches the
/// server before the statement does (it was still on its way) cancels nothing, so the
/// canceller asks again until the connection has answered everything it was sent.
const CANCEL_ATTEMPTS: u32 = 5;
/// How long the first attempt waits for the answer; each further one waits twice as long
/// (1.55 s in all).
const CANCEL_SETTLE: Duration = Duration::from_millis(50);
/// How often the canceller looks whether the connection has answered.
const CANCEL_POLL: Duration = Duration::from_millis(5);

/// Cancels what `client` runs until it has answered every request (the cancelled statement
/// ends with an error), or the attempts run out; the connection is closed after either way.
async fn cancel_until_settled(config: &ConnectConfig, connect: &ConnectOptions, client: &Client) {
    for attempt in 0..CANCEL_ATTEMPTS {
        if let Err(e) = cancel(config, connect, client.cancel_key()).await {
            log::warn!(target: "postrust::pg", "{e}");
            return;
        }
        let settle = Instant::now() + CANCEL_SETTLE * 2u32.pow(attempt);
        while client.is_busy() && Instant::now() < settle {
            glommio::timer::sleep(CANCEL_POLL).await;
        }
        if !client.is_busy() {
            return;
        }
    }
}

/// Failures worth retrying: the server is unreachable, starting, stopping or full. A wrong
/// password or a missing database will not fix itself within a caller's timeout.
fn is_transient(e: &Error) -> bool {
    match e.kind() {
        ErrorKind::Config | ErrorKind::Protocol => false,
        ErrorKind::Connect => match e.code() {
            None => true,
            Some(code) => matches!(
                code,
                sqlstate::CANNOT_CONNECT_NOW
                    | sqlstate::ADMIN_SHUTDOWN
                    | sqlstate::CRASH_SHUTDOWN
                    | sqlstate::TOO_MANY_CONNECTIONS
            ),
        },
        _ => true,
    }
}

/// A connection taken from the pool; derefs to [`Client`], goes back when dropped.
pub struct PooledClient {
    client: Option<Client>,
    pool: Rc<PoolInner>,
    /// Released after the client is back in the idle list (fields drop after `drop` runs),
    /// so the caller woken by it finds the connection; or handed to the canceller with a
    /// connection whose statement still runs.
    permit: Option<StaticPermit>,
}

impl Deref for PooledClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until dropped")
    }
}

impl Drop for PooledClient {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if client.is_idle() {
            self.pool.idle.borrow_mut().push(client);
            return;
        }
        // A connection left in a transaction, or with an answer still on its way, is closed
        // rather than handed to someone else. An answer on its way means the caller gave up
        // (its client left, its live query ended): the statement is cancelled, not left to
        // run to its end for nobody.
        if client.is_busy()
            && let (Some(cancels), Some(permit)) =
                (&*self.pool.cancels.borrow(), self.permit.take())
            && let Err((client, permit)) = cancels.push((client, permit))
        {
            drop((client, permit));
        }
    }
}
