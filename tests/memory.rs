//! What an idle WebSocket and a live query of its own cost the server, in heap bytes,
//! counted exactly.
//!
//! The server runs in this process under a counting allocator; the clients run in a child
//! process (the load-test harness), so every byte counted here is the server's. The count
//! is of live allocations, so it does not depend on timing or on the allocator's caching.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use support::server::free_port;

/// Sizes up to this are counted one by one; larger ones share the last bucket.
const SIZES: usize = 4096;

struct Counting;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_BY_SIZE: [AtomicI64; SIZES + 1] = [const { AtomicI64::new(0) }; SIZES + 1];

fn count(size: usize, delta: i64) {
    LIVE_BYTES.fetch_add(delta * size as i64, Ordering::Relaxed);
    LIVE_BY_SIZE[size.min(SIZES)].fetch_add(delta, Ordering::Relaxed);
    if delta > 0 {
        trace(size);
    }
}

/// `POSTRUST_TRACE_ALLOC_SIZES=2048,496` prints where the first allocation of each of those
/// sizes comes from once the connections under test open: the way to find what to shrink.
static TRACE_SIZES: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
static TRACING: AtomicBool = AtomicBool::new(false);
static TRACED: [AtomicBool; SIZES + 1] = [const { AtomicBool::new(false) }; SIZES + 1];

thread_local! {
    /// Set while a trace is taken, whose own allocations must not be traced.
    static IN_TRACE: Cell<bool> = const { Cell::new(false) };
}

fn trace(size: usize) {
    if !TRACING.load(Ordering::Relaxed) || size > SIZES {
        return;
    }
    let Some(sizes) = TRACE_SIZES.get() else {
        return;
    };
    if !sizes.contains(&size) || IN_TRACE.with(Cell::get) {
        return;
    }
    if TRACED[size].swap(true, Ordering::Relaxed) {
        return;
    }
    IN_TRACE.with(|t| t.set(true));
    eprintln!(
        "allocation of {size} B:\n{}",
        std::backtrace::Backtrace::force_capture()
    );
    IN_TRACE.with(|t| t.set(false));
}

// SAFETY: every call is passed straight to the system allocator; the counting on the side
// neither allocates nor touches the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size(), 1);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size(), 1);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        count(layout.size(), -1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(layout.size(), -1);
            count(new_size, 1);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_by_size() -> Vec<i64> {
    LIVE_BY_SIZE
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect()
}

/// The target of the load-test issue: an idle connection holds under 2 KB of the server's
/// memory beyond the kernel's.
const BUDGET_PER_CONNECTION: i64 = 2048;

/// The tests count one process-wide heap, so they take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn an_idle_websocket_holds_less_than_two_kilobytes_of_heap() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = support::pg::cluster();
    let url = cluster.fresh_database("memory");
    let port = serve_here(&url, &[]);

    let connections = 2000;
    // Warm up: the first connections grow the shard's tables and buffers once.
    let warm = hold_idle(port, 200);
    drop(warm);
    wait_until_closed(port);
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let sizes_before = live_by_size();
    let sizes = std::env::var("POSTRUST_TRACE_ALLOC_SIZES").unwrap_or_default();
    let _ = TRACE_SIZES.set(sizes.split(',').filter_map(|s| s.parse().ok()).collect());
    TRACING.store(true, Ordering::Relaxed);
    let held = hold_idle(port, connections);
    let after = LIVE_BYTES.load(Ordering::Relaxed);
    let sizes_after = live_by_size();
    TRACING.store(false, Ordering::Relaxed);
    drop(held);

    let per_connection = (after - before) / connections as i64;
    let table = grown(&sizes_before, &sizes_after, connections);
    eprintln!("heap per idle connection: {per_connection} B\n{table}");
    assert!(
        per_connection < BUDGET_PER_CONNECTION,
        "an idle connection holds {per_connection} B of heap; the budget is \
         {BUDGET_PER_CONNECTION} B. Live allocations that grew with the connections:\n{table}"
    );
}

/// Starts the server in this process, on one shard, on the database at `url` with the
/// settings `extra`; it runs until the test process exits. Returns its port.
fn serve_here(url: &str, extra: &[(&str, &str)]) -> u16 {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let config = postrust::config::Config::from_lookup(|name| match name {
        "POSTRUST_DATABASE_URL" => Some(url.to_owned()),
        "POSTRUST_LISTEN" => Some(listen.clone()),
        "POSTRUST_SHARDS" => Some("1".into()),
        _ => extra
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string()),
    })
    .unwrap();
    std::thread::spawn(move || postrust::shard::run(config));
    support::server::wait_for_health(port);
    port
}

/// The allocation sizes whose live count grew by at least half of `n` between two counts,
/// largest total first, one line each.
fn grown(before: &[i64], after: &[i64], n: usize) -> String {
    let mut grown: Vec<(usize, i64)> = before
        .iter()
        .zip(after)
        .enumerate()
        .map(|(size, (b, a))| (size, a - b))
        .filter(|(_, d)| *d >= n as i64 / 2)
        .collect();
    grown.sort_by_key(|(size, d)| -(*size as i64 * d));
    grown
        .iter()
        .map(|(size, d)| format!("  {d} allocations of {size} B\n"))
        .collect()
}

/// Waits until the server has closed every connection but the one asking.
fn wait_until_closed(port: u16) {
    let started = std::time::Instant::now();
    loop {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let metrics = support::server::exchange(
            &mut stream,
            b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        if metrics.lines().any(|l| l == "postrust_connections 1") {
            return;
        }
        assert!(
            started.elapsed() < support::LIMIT,
            "connections still open: {metrics}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Opens `n` initialised WebSockets from a child process and returns it once they are all
/// open (and the server has settled); they close when it is dropped.
fn hold_idle(port: u16, n: usize) -> HeldClients {
    let mut child = Command::new(env!("CARGO_BIN_EXE_postrust-loadtest"))
        .args(["idle", "--url", &format!("ws://127.0.0.1:{port}/graphql")])
        .args(["--connections", &n.to_string(), "--hold-secs", "600"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    // The JSON line comes once every connection is open and initialised.
    let report = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.starts_with('{'))
        .expect("the harness reports");
    assert!(
        report.contains(&format!("\"connections\":{n},\"errors\":0")),
        "{report}"
    );
    HeldClients(child)
}

struct HeldClients(std::process::Child);

impl Drop for HeldClients {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The target of the variety issue: a live query of its own (a user's claims) costs the
/// server at most 1.5 KiB beyond what a subscriber of a shared one costs.
const BUDGET_PER_LIVE_QUERY: i64 = 1536;

const JWT_SECRET: &str = "memory-test-secret-of-at-least-32-bytes";

#[test]
fn a_live_query_of_its_own_holds_less_than_one_and_a_half_kilobytes_of_heap() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = support::pg::cluster();
    let url = cluster.fresh_database("memory_live");
    let schema = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("loadtest/schema.sql");
    support::gql::psql(&url, &std::fs::read_to_string(schema).unwrap());
    let port = serve_here(
        &url,
        &[
            ("POSTRUST_JWT_SECRET", JWT_SECRET),
            ("POSTRUST_SUBSCRIBE_RATE", "0"),
        ],
    );

    let sockets = 2000;
    // Warm up both shapes: tables, buffers and the compiled subscription grow once.
    for per_user in [false, true] {
        drop(hold_subscribed(port, 200, per_user));
        wait_until_closed(port);
    }
    // Every socket subscribed under one `sub`: one live query for all.
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let shared = hold_subscribed(port, sockets, false);
    let shared_bytes = LIVE_BYTES.load(Ordering::Relaxed) - before;
    drop(shared);
    wait_until_closed(port);
    // Every socket its own `sub`: a live query each.
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let sizes_before = live_by_size();
    let per_user = hold_subscribed(port, sockets, true);
    let per_user_bytes = LIVE_BYTES.load(Ordering::Relaxed) - before;
    let sizes_after = live_by_size();
    drop(per_user);

    let per_live_query = (per_user_bytes - shared_bytes) / (sockets as i64 - 1);
    let table = grown(&sizes_before, &sizes_after, sockets);
    eprintln!(
        "heap for {sockets} subscribers: shared {shared_bytes} B, per-user {per_user_bytes} B; \
         per extra live query {per_live_query} B\n{table}"
    );
    assert!(
        per_live_query < BUDGET_PER_LIVE_QUERY,
        "a live query of its own holds {per_live_query} B of heap; the budget is \
         {BUDGET_PER_LIVE_QUERY} B. Live allocations of the per-user run:\n{table}"
    );
}

/// Opens `n` WebSockets from a harness worker, each subscribed to row 1 with a token of its
/// own (its own `sub` when `per_user`), and returns once every subscription has its first
/// result; they close when it is dropped.
fn hold_subscribed(port: u16, n: usize, per_user: bool) -> HeldClients {
    let mut command = Command::new(env!("CARGO_BIN_EXE_postrust-loadtest"));
    command
        .args(["worker", "--url", &format!("ws://127.0.0.1:{port}/graphql")])
        .args(["--connections", &n.to_string(), "--sources", "1"])
        .args([
            "--query",
            "subscription { loadtestValues(filter: { id: { eq: 1 } }) { id v } }",
        ])
        .args(["--jwt-secret", JWT_SECRET]);
    if per_user {
        command.arg("--per-user");
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .next()
        .expect("the worker reports");
    assert_eq!(line, format!("ready {n} {n}"), "the worker subscribed all");
    HeldClients(child)
}
