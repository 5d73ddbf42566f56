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
//! Around them:
//!
//! - [`config`]: every `POSTRUST_` setting, from one table.
//! - [`shard`]: the thread-per-core runtime. One glommio executor per core, each accepting on
//!   the shared port (SO_REUSEPORT) and owning its connections; shutdown on SIGINT/SIGTERM.
//! - [`logging`]: one line per event on standard error.
//! - [`pg`]: our PostgreSQL client on glommio sockets: connect and authenticate, pipelined
//!   parameterized queries run under a subscriber's role and claims, the per-shard pool and
//!   the LISTEN connection that feeds the change stream.
//!
//! The protocol layers (`http`, `websocket`, `protocol`) are pure: bytes in, values out, no
//! sockets and no executor types, so they are unit-tested with byte vectors.

pub mod config;
pub mod logging;
pub mod pg;
