//! The leader: the one LISTEN connection of the server, on shard 0, and the catalog.
//!
//! It reads every notification of `POSTRUST_NOTIFY_CHANNEL` once, decodes it once (see
//! [`crate::change`]) and offers it to every shard through the [`Broadcaster`], which
//! coalesces per table for a shard that lags instead of waiting for it. When the LISTEN
//! connection comes back after a gap, notifications may have been missed, so every shard is
//! told to refresh everything.
//!
//! It also reloads the catalog, on a notification on `POSTRUST_SCHEMA_CHANNEL` or on SIGHUP
//! (relayed by the main thread), and hands the new engine to every shard.

use std::sync::Arc;
use std::time::Duration;

use futures_lite::future;
use glommio::timer::sleep;

use crate::broadcast::Broadcaster;
use crate::catalog::{self, Catalog};
use crate::change::{self, Dirty};
use crate::config::Config;
use crate::engine::{self, Engine};
use crate::metrics::ShardMetrics;
use crate::pg::{self, ListenerEvent};

/// Pause between attempts to hand a lagging shard its backlog.
const BACKLOG_RETRY: Duration = Duration::from_millis(2);

/// Reads the catalog of the exposed schemas and builds the GraphQL engine over it.
pub async fn load_engine(settings: &pg::Settings, config: &Config) -> Result<Engine, String> {
    let pool = settings.pool();
    let schemas = engine::schemas_param(&config.db_schemas.0);
    let client = pool
        .get()
        .await
        .map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
    let rows = client
        .query(catalog::INTROSPECTION_SQL, &[Some(schemas.as_str())])
        .await
        .map_err(|e| format!("cannot read the catalog: {e}"))?;
    let text = rows
        .value(0, 0)
        .ok_or("the catalog query returned nothing")?;
    let catalog = Catalog::from_json(text).map_err(|e| format!("cannot read the catalog: {e}"))?;
    let report = catalog.report(&config.db_schemas.0);
    for line in &report.summary {
        log::info!("{line}");
    }
    for warning in &report.warnings {
        log::warn!("{warning}");
    }
    Ok(Engine::new(catalog, config))
}

/// What the leader owns.
pub struct Leader {
    pub settings: pg::Settings,
    pub config: Arc<Config>,
    pub broadcaster: Broadcaster,
    /// Every shard's channel for a reloaded engine.
    pub engines: Vec<flume::Sender<Arc<Engine>>>,
    /// SIGHUP, from the main thread.
    pub reloads: flume::Receiver<()>,
}

/// What woke the leader.
enum Wake {
    Listener(Option<ListenerEvent>),
    Reload,
    /// Time to offer a lagging shard its backlog again.
    Retry,
}

impl Leader {
    /// Listens for changes and schema reloads until the shard stops.
    pub async fn run(mut self, metrics: &ShardMetrics) {
        let changes = self.config.notify_channel.clone();
        let schema = self.config.schema_channel.clone();
        let mut listener = self
            .settings
            .listener(vec![changes.clone(), schema.clone()]);
        loop {
            let backlog = !self.broadcaster.flush();
            let wake = future::or(
                async { Wake::Listener(listener.next().await) },
                future::or(
                    async {
                        match self.reloads.recv_async().await {
                            Ok(()) => Wake::Reload,
                            // The main thread is gone: keep listening until shutdown.
                            Err(_) => future::pending().await,
                        }
                    },
                    async {
                        if backlog {
                            sleep(BACKLOG_RETRY).await;
                            Wake::Retry
                        } else {
                            future::pending().await
                        }
                    },
                ),
            )
            .await;
            match wake {
                Wake::Retry => {}
                Wake::Reload => self.reload(metrics).await,
                Wake::Listener(None) => return,
                Wake::Listener(Some(ListenerEvent::Notification(n))) if n.channel == schema => {
                    log::info!("notification on {schema}: reloading the schema");
                    self.reload(metrics).await;
                }
                Wake::Listener(Some(ListenerEvent::Notification(n))) => {
                    metrics.notifications.inc();
                    let mut payload = n.payload.into_bytes();
                    let dirty = change::classify(&mut payload);
                    match &dirty {
                        Dirty::Everything => log::warn!(
                            "unreadable notification on {changes}: refreshing every live query"
                        ),
                        Dirty::Table { table, .. } => log::warn!(
                            "unreadable notification for table {table}: refreshing its readers"
                        ),
                        Dirty::Change(_) => {}
                    }
                    self.broadcaster.publish(dirty);
                    metrics.changes_coalesced.set(self.broadcaster.coalesced());
                }
                Wake::Listener(Some(ListenerEvent::Listening { after_gap })) => {
                    if after_gap {
                        metrics.listen_reconnects.inc();
                        log::warn!(
                            "LISTEN {changes} is back after a gap: refreshing every live query"
                        );
                        self.broadcaster.publish(Dirty::Everything);
                    } else {
                        log::info!("listening for changes on {changes}");
                    }
                }
                Wake::Listener(Some(ListenerEvent::Lost(err))) => {
                    log::warn!("the LISTEN connection was lost ({err}); reconnecting")
                }
            }
        }
    }

    /// Reads the catalog again and hands the new engine to every shard; on failure the
    /// old one stays.
    async fn reload(&mut self, metrics: &ShardMetrics) {
        match load_engine(&self.settings, &self.config).await {
            Ok(engine) => {
                let engine = Arc::new(engine);
                for shard in &self.engines {
                    let _ = shard.send(Arc::clone(&engine));
                }
                log::info!("schema reloaded");
            }
            Err(err) => {
                metrics.error("SCHEMA_RELOAD_FAILED");
                log::error!("schema reload failed, keeping the previous schema: {err}")
            }
        }
    }
}
