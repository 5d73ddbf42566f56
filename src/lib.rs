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
//! ```
//!
//! A GraphQL operation travels on through these, all pure (no I/O):
//!
//! ```text
//! query text ─▶ graphql        parse (async-graphql-parser), validate, coerce variables
//!            ─▶ introspection  `__schema` / `__type` answered from the schema in Rust
//!            ─▶ sql            one parameterized statement that builds the `data` JSON
//!            ─▶ engine         the entry point the server calls: `Engine::prepare`
//! ```
//!
//! The compiled operation also names the base tables it reads and keeps each root field's
//! filter, which `sql::eval` tests change events against without a query.
//!
//! The schema they read is generated once per catalog:
//!
//! - [`catalog`]: the introspection query over `pg_catalog` and its JSON result.
//! - [`schema`]: the GraphQL types generated from the catalog, naming rules, built-ins.
//!
//! Around them:
//!
//! - [`config`]: every `POSTRUST_` setting, from one table.
//! - [`shard`]: the thread-per-core runtime. One glommio executor per core, each accepting on
//!   the shared port (SO_REUSEPORT) and owning its connections; shutdown on SIGINT/SIGTERM.
//! - [`logging`]: one line per event on standard error.
//!
//! The protocol layers (`http`, `websocket`, `protocol`) are pure: bytes in, values out, no
//! sockets and no executor types, so they are unit-tested with byte vectors.

pub mod catalog;
pub mod config;
pub mod engine;
pub mod graphql;
pub mod introspection;
pub mod logging;
pub mod schema;
pub mod sql;
