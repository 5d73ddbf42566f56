//! The leader: the one LISTEN connection of the server, on shard 0, and the catalog.
//!
//! It reads every notification of `POSTRUST_NOTIFY_CHANNEL` once, decodes it once (see
//! [`crate::change`]) and offers it to every shard through the [`Broadcaster`], which
//! coalesces per table for a shard that lags instead of waiting for it. When the LISTEN
//! connection comes back after a gap, notifications may have been missed, so every shard is
//! told to refresh everything.

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
    Ok(Engine::new(catalog, config))
}

/// Listens for changes and broadcasts them until the shard stops.
pub async fn run(
    settings: pg::Settings,
    channel: String,
    mut broadcaster: Broadcaster,
    metrics: &ShardMetrics,
) {
    let mut listener = settings.listener(vec![channel.clone()]);
    loop {
        let event = if broadcaster.flush() {
            listener.next().await
        } else {
            // A shard is behind: offer its backlog again soon, while still listening.
            match future::or(async { Some(listener.next().await) }, async {
                sleep(BACKLOG_RETRY).await;
                None
            })
            .await
            {
                Some(event) => event,
                None => continue,
            }
        };
        match event {
            Some(ListenerEvent::Notification(n)) => {
                metrics.notifications.inc();
                let mut payload = n.payload.into_bytes();
                let dirty = change::classify(&mut payload);
                match &dirty {
                    Dirty::Everything => log::warn!(
                        "unreadable notification on {channel}: refreshing every live query"
                    ),
                    Dirty::Table { table, .. } => {
                        log::warn!(
                            "unreadable notification for table {table}: refreshing its readers"
                        )
                    }
                    Dirty::Change(_) => {}
                }
                broadcaster.publish(dirty);
            }
            Some(ListenerEvent::Listening { after_gap }) => {
                if after_gap {
                    metrics.listen_reconnects.inc();
                    log::warn!("LISTEN {channel} is back after a gap: refreshing every live query");
                    broadcaster.publish(Dirty::Everything);
                } else {
                    log::info!("listening for changes on {channel}");
                }
            }
            Some(ListenerEvent::Lost(err)) => {
                log::warn!("the LISTEN connection was lost ({err}); reconnecting")
            }
            None => return,
        }
    }
}
