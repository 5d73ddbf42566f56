//! Our PostgreSQL client, on glommio sockets, layered on `postgres-protocol` the way
//! tokio-postgres is.
//!
//! ```text
//! POSTRUST_DATABASE_URL ─▶ url        ConnectConfig (password redacted in Display)
//!                       ─▶ connect    socket, TLS (tls), startup,
//!                                     trust/password/md5/SCRAM(-PLUS) ─▶ Client
//! Client ── requests ──▶ driver       owns the socket; FIFO of in-flight requests;
//!        ◀─ responses ──              notifications, notices, ParameterStatus
//! query / simple_query / pipeline     one file per protocol operation
//! pool                                per-shard connections, reconnect with backoff;
//!                                     a statement nobody waits for is cancelled (cancel)
//! listener                            the LISTEN connection and its gap events
//! replication                         a logical replication stream from a temporary slot,
//!                                     and its gap events
//! ```
//!
//! Everything is shard-local: `Rc` and `RefCell`, no locks, nothing `Send`. A connection
//! and its driver task live on the shard that opened them.
//!
//! Entry points for the rest of the server:
//! - [`Settings::from_config`], then per shard [`Settings::pool`] and, on the leader,
//!   [`Settings::listener`];
//! - [`Pool::query_as`] (role + claims + SQL + params, one round trip, returns the JSON
//!   text), or [`Pool::get`] and then [`Client::query_as`], [`Client::query`],
//!   [`Client::pipeline`], [`Client::simple_query`];
//! - [`Listener`], a stream of [`ListenerEvent`]s: notifications, `Lost`, and
//!   `Listening { after_gap: true }` after a reconnect, when everything must be refreshed;
//! - [`ReplicationStream`], the same for an output plugin's bytes from a logical slot.
//!
//! Errors: [`Error::is_closed`] means drop the connection (the pool does) and retry on
//! another; [`Error::code`] is the SQLSTATE, named in [`sqlstate`]; [`ErrorKind::code`] a
//! stable code for logs.

mod backoff;
mod cancel;
mod client;
mod connect;
mod driver;
mod error;
mod listener;
mod mailbox;
mod pipeline;
mod pool;
mod query;
mod replication;
mod row;
mod simple_query;
mod socket;
pub mod sqlstate;
mod statements;
pub mod tls;
mod url;

pub use backoff::{Backoff, jitter};
pub use client::{Client, Notifications, TransactionStatus};
pub use connect::ConnectOptions;
pub use driver::{ConnState, Notification};
pub use error::{DbError, Error, ErrorKind};
pub use listener::{Listener, ListenerEvent};
pub use pipeline::AsClient;
pub use pool::{Pool, PoolOptions, PooledClient};
pub use query::{Statement, SyncMode};
pub use replication::{ReplicationEvent, ReplicationOptions, ReplicationStream};
pub use row::{Row, Rows};
pub use url::{ConnectConfig, Host};

use crate::config::Config;

/// The database settings of [`Config`], parsed and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub connect_config: ConnectConfig,
    /// Read replicas (`POSTRUST_DB_READ_URL`), in the order given.
    pub replicas: Vec<ConnectConfig>,
    pub connect: ConnectOptions,
    pub pool: PoolOptions,
}

impl Settings {
    pub fn from_config(config: &Config) -> Result<Settings, Error> {
        if config.database_url.0.is_empty() {
            return Err(Error::config("POSTRUST_DATABASE_URL is not set"));
        }
        let connect_config = ConnectConfig::from_url(&config.database_url.0)
            .map_err(|e| e.context("POSTRUST_DATABASE_URL"))?;
        // Reads the root certificates now, so a missing file stops the start, not every
        // later connection.
        if connect_config.tls.attempts(&connect_config.host) != [tls::Negotiate::Plain] {
            tls::client_config(&connect_config.tls)
                .map_err(|e| e.context("POSTRUST_DATABASE_URL"))?;
        }
        let replicas = config
            .db_read_url
            .0
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(|url| {
                let replica =
                    ConnectConfig::from_url(url).map_err(|e| e.context("POSTRUST_DB_READ_URL"))?;
                if replica.tls.attempts(&replica.host) != [tls::Negotiate::Plain] {
                    tls::client_config(&replica.tls)
                        .map_err(|e| e.context("POSTRUST_DB_READ_URL"))?;
                }
                Ok(replica)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Settings {
            connect_config,
            replicas,
            connect: ConnectOptions {
                connect_timeout: config.db_connect_timeout.0,
                statement_cache: config.db_statement_cache.0,
                notify_queue: config.db_notify_queue.0,
                tcp_timeout: config.db_tcp_timeout.0,
            },
            pool: PoolOptions {
                size: config.db_pool_size.0,
                timeout: config.db_pool_timeout.0,
                backoff_min: config.db_backoff_min.0,
                backoff_max: config.db_backoff_max.0,
                statement_timeout: Some(config.statement_timeout.0).filter(|t| !t.is_zero()),
            },
        })
    }

    /// A pool for the current shard.
    pub fn pool(&self) -> Pool {
        Pool::new(
            self.connect_config.clone(),
            self.connect.clone(),
            self.pool.clone(),
        )
    }

    /// A pool for the current shard on each read replica, with its name for the log.
    pub fn replica_pools(&self) -> Vec<(Pool, String)> {
        self.replicas
            .iter()
            .map(|replica| {
                let name = replica.to_string();
                let pool = Pool::new(replica.clone(), self.connect.clone(), self.pool.clone());
                (pool, name)
            })
            .collect()
    }

    /// The LISTEN connection on `channels`, for the current shard.
    pub fn listener(&self, channels: Vec<String>) -> Listener {
        Listener::start(
            self.connect_config.clone(),
            self.connect.clone(),
            &self.pool,
            channels,
        )
    }

    /// A logical replication stream from the primary, reconnecting as the pool does.
    pub fn replication_stream(&self, options: ReplicationOptions) -> ReplicationStream {
        ReplicationStream::start(
            self.connect_config.clone(),
            self.connect.clone(),
            &self.pool,
            options,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_the_config_table() {
        let vars = [
            (
                "POSTRUST_DATABASE_URL",
                "postgres://app:pw@db:5433/shop?application_name=x",
            ),
            ("POSTRUST_DB_POOL_SIZE", "7"),
            ("POSTRUST_DB_POOL_TIMEOUT_MS", "250"),
        ];
        let config = Config::from_lookup(|k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        let s = Settings::from_config(&config).unwrap();
        assert_eq!(s.connect_config.port, 5433);
        assert_eq!(s.pool.size, 7);
        assert_eq!(s.pool.timeout.as_millis(), 250);
        assert_eq!(s.connect.statement_cache, 256);
    }

    #[test]
    fn a_missing_url_or_root_file_is_a_config_error_naming_the_variable() {
        let err = Settings::from_config(&Config::from_lookup(|_| None).unwrap()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("POSTRUST_DATABASE_URL"), "{err}");
        let config = Config::from_lookup(|k| {
            (k == "POSTRUST_DATABASE_URL")
                .then(|| "postgres://u@h/d?sslmode=verify-full&sslrootcert=/no/such.pem".into())
        })
        .unwrap();
        let err = Settings::from_config(&config).unwrap_err();
        assert!(err.to_string().contains("POSTRUST_DATABASE_URL"), "{err}");
        assert!(err.to_string().contains("/no/such.pem"), "{err}");
    }
}
