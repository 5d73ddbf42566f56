//! Live queries: subscriptions that share one SQL refresh and one encoded result.
//!
//! Each shard keeps a [`Registry`] of live queries keyed by their statement and parameters
//! ([`Compiled`], shared with the connection's cache of compiled subscriptions), role and
//! claims. A change event marks dirty the live queries that read its table (unless it provably
//! cannot alter their result, see [`SkipRule`]; those whose filters require a column value are
//! found by the changed rows' values, see `routes`); the shard's
//! refresh loop runs dirty ones within a short tick (many changes, one refresh), compares
//! the result with the last one, and delivers a changed result to every subscriber's
//! outbox slot, where a newer result replaces an unsent older one.

mod refresh;
mod registry;
mod routes;
mod skip;

pub use refresh::{Pacing, RunResult, Runner, run};
pub use registry::{Compiled, Job, LiveId, LiveKey, Outcome, Registry};
pub use skip::SkipRule;
