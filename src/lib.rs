//! Postrust realtime: live GraphQL subscriptions over WebSocket for a PostgreSQL database.
//!
//! # Map
//!
//! A request travels through these modules, in this order:
//!
//! ```text
//! client bytes ─▶ http        request head parsed by hand (httparse); upgrade or plain HTTP
//!              ─▶ websocket   frames in and out (tungstenite's frame types), close handshake
//!              ─▶ protocol    graphql-transport-ws and legacy graphql-ws session state machines
//!              ─▶ connection  the per-socket driver: timers, outbox, dispatch to the engine
//!                             (identical subscribes reuse one compilation per shard)
//! ```
//!
//! A GraphQL operation travels on through these, all pure (no I/O):
//!
//! ```text
//! query text ─▶ graphql        parse (async-graphql-parser), validate, coerce variables
//!            ─▶ introspection  `__schema` / `__type` answered from the schema in Rust
//!            ─▶ sql            one parameterized statement that builds the `data` JSON;
//!                              for a mutation (`sql::mutation`), a write and a read per
//!                              root field, run in order in one transaction
//!            ─▶ engine         the entry point the server calls: `Engine::prepare`
//! ```
//!
//! The compiled operation also names the base tables it reads and keeps each root field's
//! filter, which `sql::eval` tests change events against without a query.
//!
//! A committed change travels from PostgreSQL to every subscriber like this:
//!
//! ```text
//! NOTIFY ─▶ leader     the one LISTEN connection (shard 0); also reloads the catalog
//!        ─▶ change     the payload decoded once (docs page's trigger or the project's);
//!                      or, with POSTRUST_CHANGE_SOURCE=logical, `logical` decodes
//!                      pgoutput from a temporary replication slot into the same events,
//!                      each held until the primary's snapshots see its transaction
//!        ─▶ broadcast  to every shard over bounded channels, coalesced per table if one lags
//!        ─▶ live       the shard's live queries reading that table are marked dirty (or
//!                      skipped when their root filter provably excludes the rows; those
//!                      filtering a column on equality are found by the rows' values, not
//!                      tested one by one), refreshed
//!                      through `execute` as their role and claims (up to
//!                      `POSTRUST_REFRESH_BATCH` per round trip, each its own transaction;
//!                      those differing only in parameters as one statement,
//!                      `sql::multiplex`), compared with the last
//!                      result, and a changed result is encoded once
//!        ─▶ outbox     each subscriber's slot (latest wins), which its connection frames
//!                      as the socket drains
//! ```
//!
//! The schema they read is generated once per catalog:
//!
//! - [`catalog`]: the introspection query over `pg_catalog` and its JSON result.
//! - [`schema`]: the GraphQL types generated from the catalog (`Query`, `Subscription`, and
//!   `Mutation` for what client roles may write), naming rules, built-ins.
//!
//! Around them:
//!
//! - [`config`]: every `POSTRUST_` setting, from one table.
//! - [`auth`]: JWT verification and the database role a client's queries run as.
//! - [`cors`]: which browser origins may call the server (preflights, response headers,
//!   the `Origin` check on WebSocket upgrades).
//! - [`playground`]: the GraphiQL page at `GET /`, its files compiled in from
//!   `assets/playground/`.
//! - [`shard`]: the thread-per-core runtime. One glommio executor per core, each accepting on
//!   the shared port (SO_REUSEPORT) and owning its connections; shutdown on SIGINT/SIGTERM.
//! - [`logging`]: one line per event on standard error.
//! - [`change`]: what a `NOTIFY` payload says about a committed write.
//! - [`logical`]: the same from logical replication (`pgoutput` on a publication).
//! - [`outbox`]: a subscriber's slots for its live queries' latest results, written by
//!   `live` and drained by the subscriber's connection as its socket allows.
//! - [`broadcast`]: the leader's fan-out of change events to the shards, coalescing per
//!   table for a shard that lags instead of waiting for it.
//! - [`triggers`]: the project's own change trigger (`postrust triggers sql`).
//! - [`pg`]: our PostgreSQL client on glommio sockets: connect (TLS with libpq's `sslmode`)
//!   and authenticate, pipelined
//!   parameterized queries run under a subscriber's role and claims, the per-shard pool,
//!   the LISTEN connection that feeds the change stream, and the logical replication
//!   stream that can replace it.
//! - [`execute`]: runs a compiled statement (or a mutation's statements) as a client (role,
//!   claims, statement timeout) and maps failures to what the client sees (final or
//!   retried; `docs/graphql-errors.md`).
//! - [`replicas`]: where a read runs: a streaming replica that has replayed past the
//!   primary's position at the read's start, or the primary.
//! - [`metrics`]: per-shard counters served at `GET /metrics`.
//! - [`permits`]: waiting for a semaphore (pool, refresh slots, a connection's turns)
//!   without losing a wake-up when the waiter is cancelled.
//! - [`nesting`]: the bound on bracket nesting in client text, checked before any parser
//!   or walker recurses over it.
//!
//! The protocol layers (`http`, `websocket`, `protocol`) are pure: bytes in, values out, no
//! sockets and no executor types, so they are unit-tested with byte vectors.

pub mod auth;
pub mod broadcast;
pub mod catalog;
pub mod change;
pub mod config;
pub mod connection;
pub mod cors;
pub mod engine;
pub mod execute;
pub mod graphql;
pub mod http;
pub mod introspection;
pub mod leader;
pub mod live;
pub mod logging;
pub mod logical;
pub mod metrics;
pub mod nesting;
pub mod outbox;
pub mod permits;
pub mod pg;
pub mod playground;
pub mod protocol;
pub mod replicas;
pub mod schema;
pub mod shard;
pub mod sql;
pub mod triggers;
pub mod websocket;
