//! The thread-per-core runtime: shards, accepting, and shutdown.
//!
//! Each shard is one glommio executor pinned to a core. Every shard binds the listening
//! address itself (glommio sets SO_REUSEPORT), so the kernel spreads new connections over
//! the shards and a connection lives its whole life on the shard that accepted it. Shards
//! share nothing mutable: the main thread talks to them only through the channels created
//! here at start-up.
//!
//! The main thread blocks SIGINT and SIGTERM before starting the shards (so they
//! inherit the mask) and waits for them with `sigwait`. On SIGINT or SIGTERM it tells every
//! shard to stop; a shard stops accepting, sends 1001 (going away) on every WebSocket,
//! waits up to the shutdown grace for the close handshakes, and returns.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::net::TcpListener;
use glommio::timer::sleep;
use glommio::{Latency, LocalExecutorBuilder, Placement, Shares, TaskQueueHandle};

use crate::auth::Auth;
use crate::broadcast::{Broadcaster, Event};
use crate::config::Config;
use crate::connection::{self, ShardContext};
use crate::engine::Engine;
use crate::execute::PgRunner;
use crate::live::{Pacing, Registry};
use crate::metrics::ShardMetrics;
use crate::pg;

/// How long one task queue runs before the others get a turn (glommio's default is 100 ms).
const PREEMPT_TIMER: Duration = Duration::from_millis(10);
/// Pause after a failed accept (out of file descriptors, most likely) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Least time between two log lines about refused connections.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How often a draining shard checks whether its connections have all closed.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// A message from the main thread to a shard.
#[derive(Debug)]
enum Control {
    Shutdown,
}

/// What the main thread hands each shard at start.
struct ShardStart {
    index: usize,
    config: Arc<Config>,
    auth: Arc<Auth>,
    all_metrics: Arc<[ShardMetrics]>,
    settings: pg::Settings,
    engine: Arc<Engine>,
    /// Change events from the leader.
    changes: flume::Receiver<Event>,
    /// New engines from the leader after a schema reload.
    engines: flume::Receiver<Arc<Engine>>,
    /// Shard 0 only: what the leader needs.
    leader_of: Option<Leadership>,
}

/// The leader's channels: to every shard, and from the main thread.
struct Leadership {
    changes: Vec<flume::Sender<Event>>,
    engines: Vec<flume::Sender<Arc<Engine>>>,
    reloads: flume::Receiver<()>,
}

/// Why the server could not start or run.
#[derive(Debug)]
pub enum ServeError {
    /// A shard could not bind the listening address.
    Bind(SocketAddr, std::io::Error),
    /// glommio could not start an executor (io_uring or locked memory).
    Executor(String),
    Signals(std::io::Error),
    /// A setting that parsed but cannot be used (an unreadable key, say).
    Config(String),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Bind(addr, err) => write!(f, "cannot listen on {addr}: {err}"),
            ServeError::Executor(err) => write!(f, "cannot start a shard: {err}"),
            ServeError::Signals(err) => write!(f, "cannot set up signal handling: {err}"),
            ServeError::Config(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for ServeError {}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(mut config: Config) -> Result<(), ServeError> {
    config.listen = probe_listen_address(config.listen)?;
    let auth = Arc::new(Auth::from_config(&config).map_err(ServeError::Config)?);
    crate::cors::Cors::from_setting(&config.cors_origins).map_err(ServeError::Config)?;
    let settings =
        pg::Settings::from_config(&config).map_err(|e| ServeError::Config(e.to_string()))?;
    let engine = Arc::new(load_engine_now(&settings, &config)?);
    if !auth.is_enabled() {
        log::warn!(
            "JWT verification is OFF: every client runs as the database user of \
             POSTRUST_DATABASE_URL, reading and writing (mutations) what it may. Set \
             POSTRUST_JWT_SECRET or POSTRUST_JWT_PUBLIC_KEY to require tokens."
        );
    }
    let signals = block_signals()?;
    match raise_fd_limit() {
        Ok(limit) => log::info!("file descriptor limit: {limit}"),
        Err(err) => log::warn!("cannot read or raise the file descriptor limit: {err}"),
    }
    let config = Arc::new(config);
    let shards = config.shard_count();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());

    // Each shard reports once on `ready_tx` whether it bound the address; the main thread
    // receives all of them before announcing the server. Unbounded: one message per shard.
    let (ready_tx, ready_rx) = flume::unbounded::<Result<(), ServeError>>();
    let all_metrics: Arc<[ShardMetrics]> = (0..shards).map(|_| ShardMetrics::default()).collect();
    // The leader sends change events, each shard receives its own; bounded, and the leader
    // coalesces instead of waiting when one is full (see `broadcast`).
    let (change_txs, change_rxs): (Vec<_>, Vec<_>) = (0..shards)
        .map(|_| flume::bounded::<Event>(config.change_queue.0))
        .unzip();
    let mut change_rxs = change_rxs.into_iter();
    // A new engine after a schema reload, from the leader to each shard; unbounded because
    // reloads are rare and each must arrive.
    let (engine_txs, engine_rxs): (Vec<_>, Vec<_>) = (0..shards)
        .map(|_| flume::unbounded::<Arc<Engine>>())
        .unzip();
    let mut engine_rxs = engine_rxs.into_iter();
    // The main thread asks the leader to reload on SIGHUP.
    let (reload_tx, reload_rx) = flume::unbounded::<()>();
    let mut controls = Vec::with_capacity(shards);
    let mut handles = Vec::with_capacity(shards);
    for id in 0..shards {
        // Main thread sends, shard `id` receives; one message at most (Shutdown).
        let (control_tx, control_rx) = flume::bounded::<Control>(1);
        controls.push(control_tx);
        let start = ShardStart {
            index: id,
            config: Arc::clone(&config),
            auth: Arc::clone(&auth),
            all_metrics: Arc::clone(&all_metrics),
            settings: settings.clone(),
            engine: Arc::clone(&engine),
            changes: change_rxs.next().expect("one receiver per shard"),
            engines: engine_rxs.next().expect("one receiver per shard"),
            leader_of: (id == 0).then(|| Leadership {
                changes: change_txs.clone(),
                engines: engine_txs.clone(),
                reloads: reload_rx.clone(),
            }),
        };
        let ready_tx = ready_tx.clone();
        let handle = LocalExecutorBuilder::new(Placement::Fixed(id % cpus))
            .name("shard")
            .io_memory(config.io_memory)
            .preempt_timer(PREEMPT_TIMER)
            .spawn(move || shard_main(start, control_rx, ready_tx))
            .map_err(|err| ServeError::Executor(err.to_string()))?;
        handles.push(handle);
    }
    drop(ready_tx);

    let mut failure = None;
    for _ in 0..shards {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => failure = failure.or(Some(err)),
            Err(_) => {
                failure = failure.or(Some(ServeError::Executor("a shard exited early".into())))
            }
        }
    }
    if failure.is_none() {
        log::info!("listening on {} with {shards} shards", config.listen);
        wait_for_stop_signal(&signals, &reload_tx);
        log::info!("shutting down");
    }
    for control in &controls {
        let _ = control.send(Control::Shutdown);
    }
    for handle in handles {
        let _ = handle.join();
    }
    match failure {
        Some(err) => Err(err),
        None => {
            log::info!("stopped");
            Ok(())
        }
    }
}

/// Binds the address once without SO_REUSEPORT and lets it go again.
///
/// The shards bind with SO_REUSEPORT, which would let them join the sockets of another
/// process of the same user already listening there and silently split its traffic. A
/// plain bind fails on such a port, so a second server refuses to start instead. It also
/// fixes the port when the configured one is 0, so every shard binds the same one.
fn probe_listen_address(addr: SocketAddr) -> Result<SocketAddr, ServeError> {
    let probe = std::net::TcpListener::bind(addr).map_err(|err| ServeError::Bind(addr, err))?;
    probe
        .local_addr()
        .map_err(|err| ServeError::Bind(addr, err))
}

/// Puts each reloaded engine in place for new operations, and refreshes the live queries:
/// a view or a column may have changed under them.
async fn swap_engines(engines: flume::Receiver<Arc<Engine>>, shard: Rc<ShardContext>) {
    while let Ok(engine) = engines.recv_async().await {
        *shard.engine.borrow_mut() = engine;
        shard.live.borrow_mut().mark_all();
    }
}

/// Marks the live queries a change event concerns, until the leader goes away.
async fn apply_changes(
    changes: flume::Receiver<Event>,
    live: Rc<RefCell<Registry>>,
    metrics: Arc<[ShardMetrics]>,
    index: usize,
) {
    while let Ok(event) = changes.recv_async().await {
        let mut live = live.borrow_mut();
        match event {
            Event::Change(c) => {
                let (_, skipped) = live.mark_change(&c);
                metrics[index].refreshes_skipped.add(skipped as u64);
            }
            Event::Tables(tables) => {
                for (schema, table) in &tables {
                    live.mark_table(schema.as_deref(), table);
                }
            }
            Event::Everything => live.mark_all(),
        }
    }
}

/// Binds this shard's listening socket: SO_REUSEPORT so every shard binds the same address
/// and the kernel spreads connections over them, and a backlog of our choosing (glommio's
/// own `bind` fixes it at 1024, too few for a storm of reconnects at scale).
fn bind(addr: SocketAddr, backlog: usize) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::os::fd::{FromRawFd, IntoRawFd};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as usize) as i32)?;
    // SAFETY: a bound, listening TCP socket whose descriptor we hand over for good.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

/// Loads the catalog on the main thread before the shards start, on a short-lived executor.
fn load_engine_now(settings: &pg::Settings, config: &Config) -> Result<Engine, ServeError> {
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .name("catalog")
        .io_memory(config.io_memory)
        .make()
        .map_err(|err| ServeError::Executor(err.to_string()))?;
    let engine = executor
        .run(crate::leader::load_engine(settings, config))
        .map_err(ServeError::Config)?;
    log::info!("catalog loaded from schemas {:?}", config.db_schemas.0);
    Ok(engine)
}

async fn shard_main(
    start: ShardStart,
    control: flume::Receiver<Control>,
    ready: flume::Sender<Result<(), ServeError>>,
) {
    let ShardStart {
        index,
        config,
        auth,
        all_metrics,
        settings,
        engine,
        changes,
        engines,
        leader_of,
    } = start;
    let listener = match bind(config.listen, config.listen_backlog) {
        Ok(listener) => listener,
        Err(err) => {
            let _ = ready.send(Err(ServeError::Bind(config.listen, err)));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    // Connections read the settings often; a shard-local copy keeps them off the shared
    // cache line of the Arc's counters.
    let db = Rc::new(crate::replicas::Database::new(
        settings.pool(),
        settings.replica_pools(),
        config.db_read_wait.0,
        (config.db_backoff_min.0, config.db_backoff_max.0),
    ));
    let live = Rc::new(RefCell::new(Registry::default()));
    let runner = Rc::new(PgRunner {
        db: Rc::clone(&db),
        all_metrics: Arc::clone(&all_metrics),
        index,
    });
    let pacing = Pacing {
        tick: config.refresh_tick.0,
        concurrency: config.db_pool_size.0.saturating_sub(1).max(1),
        retry_after: config.db_backoff_max.0.min(config.refresh_retry.0),
        batch: config.refresh_batch.0,
    };
    glommio::spawn_local(crate::live::run(Rc::clone(&live), runner, pacing)).detach();
    glommio::spawn_local(apply_changes(
        changes,
        Rc::clone(&live),
        Arc::clone(&all_metrics),
        index,
    ))
    .detach();
    if let Some(lead) = leader_of {
        let metrics = Arc::clone(&all_metrics);
        let (settings, config) = (settings.clone(), Arc::clone(&config));
        glommio::spawn_local(async move {
            let leader = crate::leader::Leader {
                settings,
                config,
                broadcaster: Broadcaster::new(lead.changes),
                engines: lead.engines,
                reloads: lead.reloads,
            };
            leader.run(&metrics[0]).await
        })
        .detach();
    }
    let local = Rc::new(ShardContext {
        config: Config::clone(&config),
        auth,
        all_metrics,
        index,
        engine: RefCell::new(engine),
        db,
        live,
        compiled: RefCell::new(crate::connection::compiled::CompiledCache::new(
            config.operation_cache_bytes,
        )),
        cors: crate::cors::Cors::from_setting(&config.cors_origins)
            .expect("checked when the server started"),
        connections: RefCell::default(),
    });
    glommio::spawn_local(swap_engines(engines, Rc::clone(&local))).detach();
    // Client connections run in a task queue of their own. The database work (refreshes,
    // the leader's LISTEN connection, PostgreSQL connections' drivers) stays in the default
    // queue, so a burst of client work delays it by one preemption slice at most, not by a
    // turn of every connection on the shard.
    let clients = glommio::executor().create_task_queue(
        Shares::default(),
        Latency::NotImportant,
        "connections",
    );
    let acceptor = glommio::spawn_local(accept_loop(listener, Rc::clone(&local), clients));

    // Either Shutdown or the main thread going away ends the shard.
    let _ = control.recv_async().await;
    drop(acceptor);
    let open = local.connections.borrow().len();
    for outbox in local.connections.borrow().values() {
        outbox.go_away();
    }
    let deadline = Instant::now() + local.config.shutdown_grace.0;
    while !local.connections.borrow().is_empty() && Instant::now() < deadline {
        sleep(DRAIN_POLL).await;
    }
    let left = local.connections.borrow().len();
    if left > 0 {
        log::warn!("{left} of {open} connections did not close within the shutdown grace");
    }
}

/// Runs a client connection's task in the clients' queue.
fn spawn_client(task: impl std::future::Future<Output = ()> + 'static, clients: TaskQueueHandle) {
    match glommio::spawn_local_into(task, clients) {
        Ok(task) => {
            task.detach();
        }
        Err(err) => log::error!("cannot start a connection's task: {err}"),
    }
}

/// The most connections one shard holds: its own limit, and its share of the total.
fn connection_cap(config: &Config) -> usize {
    let unlimited = |n: usize| if n == 0 { usize::MAX } else { n };
    let share = match config.max_connections {
        0 => usize::MAX,
        total => total.div_ceil(config.shard_count()),
    };
    unlimited(config.max_connections_per_shard).min(share)
}

async fn accept_loop(listener: TcpListener, shard: Rc<ShardContext>, clients: TaskQueueHandle) {
    let cap = connection_cap(&shard.config);
    let mut next_id: u64 = 0;
    let mut last_refusal_log: Option<Instant> = None;
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(err) => {
                log::warn!("accept failed: {err}");
                sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if shard.connections.borrow().len() >= cap {
            // Refused with a response rather than a reset, so clients (graphql-ws retries
            // on it) and operators can tell a full server from a dead one.
            if last_refusal_log.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_INTERVAL) {
                log::warn!(
                    "connection limit of {cap} on this shard reached; refusing new connections"
                );
                last_refusal_log = Some(Instant::now());
            }
            shard.metrics().connections_refused.inc();
            spawn_client(connection::refuse_full(stream), clients);
            continue;
        }
        next_id += 1;
        shard.metrics().connections_accepted.inc();
        let conn = connection::Registered::new(Rc::clone(&shard), next_id);
        spawn_client(connection::serve(conn, stream), clients);
    }
}

/// Raises the soft descriptor limit to the hard one (many systems start services at 1024
/// with a far higher hard limit) and returns the limit now in force.
fn raise_fd_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(limit.rlim_cur)
}

/// The signals the main thread waits for, blocked in every thread.
struct SignalSet(libc::sigset_t);

fn block_signals() -> Result<SignalSet, ServeError> {
    // SAFETY: sigset_t is plain data initialised by sigemptyset before use, and
    // pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(ServeError::Signals(std::io::Error::from_raw_os_error(rc)));
        }
        Ok(SignalSet(set))
    }
}

/// Waits for SIGINT or SIGTERM; each SIGHUP on the way asks the leader to reload the
/// catalog.
fn wait_for_stop_signal(signals: &SignalSet, reload: &flume::Sender<()>) {
    loop {
        let mut signal: libc::c_int = 0;
        // SAFETY: the set was built by block_signals and outlives the call.
        let rc = unsafe { libc::sigwait(&signals.0, &mut signal) };
        if rc != 0 {
            return;
        }
        if signal == libc::SIGHUP {
            log::info!("SIGHUP: reloading the schema");
            let _ = reload.send(());
            continue;
        }
        log::info!("received signal {signal}");
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(vars: &[(&str, &str)]) -> usize {
        let config = Config::from_lookup(|k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        connection_cap(&config)
    }

    #[test]
    fn each_shard_takes_its_share_of_the_total_and_its_own_limit() {
        assert_eq!(cap(&[("POSTRUST_SHARDS", "2")]), usize::MAX);
        assert_eq!(
            cap(&[("POSTRUST_SHARDS", "2"), ("POSTRUST_MAX_CONNECTIONS", "5")]),
            3
        );
        assert_eq!(
            cap(&[
                ("POSTRUST_SHARDS", "4"),
                ("POSTRUST_MAX_CONNECTIONS_PER_SHARD", "10")
            ]),
            10
        );
        assert_eq!(
            cap(&[
                ("POSTRUST_SHARDS", "2"),
                ("POSTRUST_MAX_CONNECTIONS", "100"),
                ("POSTRUST_MAX_CONNECTIONS_PER_SHARD", "30"),
            ]),
            30
        );
    }
}
