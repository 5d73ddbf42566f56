//! The leader: the one change source of the server, on shard 0, and the catalog.
//!
//! It reads every notification of `POSTRUST_NOTIFY_CHANNEL` once, decodes it once (see
//! [`crate::change`]) and offers it to every shard through the [`Broadcaster`], which
//! coalesces per table for a shard that lags instead of waiting for it. With
//! `POSTRUST_CHANGE_SOURCE=logical` the changes come from logical replication instead
//! ([`crate::logical`]), as the same events. When the LISTEN connection or the replication
//! stream comes back after a gap, changes may have been missed, so every shard is told to
//! refresh everything.
//!
//! It also reloads the catalog, on a notification on `POSTRUST_SCHEMA_CHANNEL` or on SIGHUP
//! (relayed by the main thread), and hands the new engine to every shard.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future;
use glommio::timer::sleep;

use crate::broadcast::Broadcaster;
use crate::catalog::{self, Catalog, QualifiedName};
use crate::change::{self, Dirty};
use crate::config::{ChangeSource, Config};
use crate::engine::{self, Engine};
use crate::logical::{LogicalSource, SourceEvent};
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
    let mut catalog =
        Catalog::from_json(text).map_err(|e| format!("cannot read the catalog: {e}"))?;
    if config.change_source == ChangeSource::Logical {
        let published = published_tables(&client, &config.publication).await?;
        catalog.follow_publication(&config.publication, &published);
    }
    let report = catalog.report(&config.db_schemas.0);
    for line in &report.summary {
        log::info!("{line}");
    }
    for warning in &report.warnings {
        log::warn!("{warning}");
    }
    Ok(Engine::new(catalog, config))
}

/// The tables `publication` streams every change of, after checking that logical
/// replication can stream them at all.
async fn published_tables(
    client: &pg::Client,
    publication: &str,
) -> Result<BTreeSet<QualifiedName>, String> {
    let failed = |e: pg::Error| format!("cannot read publication \"{publication}\": {e}");
    // Replication needs the REPLICATION attribute, or (on Amazon RDS) the rds_replication
    // role.
    let rows = client
        .query(
            "SELECT current_setting('wal_level'), \
                    current_setting('server_version_num')::int >= 130000, \
                    (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user) \
                    OR EXISTS (SELECT FROM pg_roles r WHERE r.rolname = 'rds_replication' \
                               AND pg_has_role(current_user, r.oid, 'member')), \
                    current_user, \
                    (SELECT pubinsert AND pubupdate AND pubdelete AND pubtruncate \
                     FROM pg_publication WHERE pubname = $1), \
                    current_setting('server_version_num')::int >= 150000",
            &[Some(publication)],
        )
        .await
        .map_err(failed)?;
    let yes = |column| rows.value(0, column) == Some("t");
    let wal_level = rows.value(0, 0).unwrap_or("");
    if wal_level != "logical" {
        return Err(format!(
            "POSTRUST_CHANGE_SOURCE=logical needs wal_level = logical, and it is {wal_level}: \
             set it in postgresql.conf and restart PostgreSQL"
        ));
    }
    if !yes(1) {
        return Err("POSTRUST_CHANGE_SOURCE=logical needs PostgreSQL 13 or later".to_owned());
    }
    if !yes(2) {
        return Err(format!(
            "POSTRUST_CHANGE_SOURCE=logical needs a login that may replicate, and {} may not: \
             ALTER ROLE … REPLICATION",
            rows.value(0, 3).unwrap_or("this login")
        ));
    }
    match rows.value(0, 4) {
        None => {
            return Err(format!(
                "publication \"{publication}\" does not exist (POSTRUST_PUBLICATION): create \
                 it, for example CREATE PUBLICATION \"{publication}\" FOR TABLES IN SCHEMA public"
            ));
        }
        Some("t") => {}
        Some(_) => {
            return Err(format!(
                "publication \"{publication}\" leaves out some kinds of change (its publish \
                 option), which subscribers would then never see: ALTER PUBLICATION \
                 \"{publication}\" SET (publish = 'insert, update, delete, truncate')"
            ));
        }
    }
    // A row filter (PostgreSQL 15) keeps back the changes of rows outside it, which a
    // subscriber may still read: such a table counts as not published.
    let sql = if yes(5) {
        "SELECT schemaname, tablename FROM pg_publication_tables \
         WHERE pubname = $1 AND rowfilter IS NULL"
    } else {
        "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1"
    };
    let rows = client
        .query(sql, &[Some(publication)])
        .await
        .map_err(failed)?;
    Ok((0..rows.len())
        .filter_map(|i| {
            Some(QualifiedName {
                schema: rows.value(i, 0)?.to_owned(),
                name: rows.value(i, 1)?.to_owned(),
            })
        })
        .collect())
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
    /// The logical replication source, with `POSTRUST_CHANGE_SOURCE=logical`.
    Logical(Option<SourceEvent>),
    Reload,
    /// Time to offer a lagging shard its backlog again.
    Retry,
}

impl Leader {
    /// Listens for changes and schema reloads until the shard stops.
    pub async fn run(mut self, metrics: &ShardMetrics) {
        let schema = self.config.schema_channel.clone();
        // With logical replication the LISTEN connection only hears schema reloads.
        let (changes, source) = match self.config.change_source {
            ChangeSource::Notify => (self.config.notify_channel.clone(), None),
            ChangeSource::Logical => (
                format!("publication \"{}\"", self.config.publication),
                Some(LogicalSource::start(
                    &self.settings,
                    &self.config.publication,
                    self.config.change_queue.0,
                )),
            ),
        };
        let channels = match source {
            None => vec![changes.clone(), schema.clone()],
            Some(_) => vec![schema.clone()],
        };
        let mut listener = self.settings.listener(channels);
        loop {
            let backlog = !self.broadcaster.flush();
            let wake = future::or(
                async { Wake::Listener(listener.next().await) },
                future::or(
                    async {
                        match &source {
                            Some(source) => Wake::Logical(source.next().await),
                            None => future::pending().await,
                        }
                    },
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
                ),
            )
            .await;
            match wake {
                Wake::Retry => {}
                Wake::Logical(None) => return,
                Wake::Logical(Some(SourceEvent::Dirty(dirty))) => {
                    metrics.notifications.inc();
                    self.broadcaster.publish(dirty);
                    metrics.changes_coalesced.set(self.broadcaster.coalesced());
                }
                Wake::Logical(Some(SourceEvent::Streaming { after_gap })) => {
                    self.source_ready(metrics, &changes, after_gap)
                }
                Wake::Logical(Some(SourceEvent::Lost(err))) => {
                    log::warn!("the replication stream was lost ({err}); reconnecting")
                }
                Wake::Listener(Some(ListenerEvent::Listening { .. })) if source.is_some() => {
                    log::info!("listening for schema reloads on {schema}")
                }
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
                    self.source_ready(metrics, &changes, after_gap)
                }
                Wake::Listener(Some(ListenerEvent::Lost(err))) => {
                    log::warn!("the LISTEN connection was lost ({err}); reconnecting")
                }
            }
        }
    }

    /// The change source (LISTEN on `changes`, or the replication stream) is in place.
    /// Changes committed before it was may have been missed: after a gap, and at the start
    /// too, where a live query may have read its first result before the source was up. So
    /// everything is refreshed (nothing, when no live query exists yet).
    fn source_ready(&mut self, metrics: &ShardMetrics, changes: &str, after_gap: bool) {
        if after_gap {
            metrics.listen_reconnects.inc();
            log::warn!("{changes} is heard again after a gap: refreshing every live query");
        } else {
            log::info!("listening for changes on {changes}");
        }
        self.broadcaster.publish(Dirty::Everything);
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
