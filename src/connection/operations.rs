//! A WebSocket's running operations: what each id is, and how it starts, reports and ends.
//!
//! A subscription joins a live query of the shard (sharing its refreshes and its encoded
//! result with every identical subscription) through a slot of the connection's outbox. A
//! query runs once in a task of its own and reports back through the outbox. An operation
//! made only of introspection fields is answered at once.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use super::{ShardContext, compiled};
use crate::auth::Identity;
use crate::engine::Plan as EnginePlan;
use crate::execute;
use crate::graphql::OperationKind;
use crate::live::{Compiled, LiveId, LiveKey, SkipRule};
use crate::outbox::{OpEvent, Outbox, SlotId};
use crate::protocol::{OperationRequest, Session};

enum Op {
    /// Shares live query `live`; results arrive in `slot`.
    Subscription { live: LiveId, slot: SlotId },
    /// Running once; its result arrives as `OpEvent::QueryDone { token }`. Dropping `_task`
    /// (the client stopped it, or left) cancels the query, its statement included.
    Query {
        token: u64,
        _task: glommio::Task<()>,
    },
}

/// What operations need from the connection.
pub struct Context<'a> {
    pub shard: &'a Rc<ShardContext>,
    pub outbox: &'a Rc<Outbox>,
}

#[derive(Default)]
pub struct Operations {
    by_id: HashMap<String, Op>,
    /// The operation id of each subscription slot, to answer a failed live query.
    ids: HashMap<SlotId, String>,
    next_token: u64,
}

/// `<prefix>{"data":<data>}}`: a `next` (or legacy `data`) message.
fn result_message(session: &Session, id: &str, data: &str) -> String {
    let mut m = session.result_prefix(id);
    m.reserve(data.len() + 10);
    m.push_str("{\"data\":");
    m.push_str(data);
    m.push_str("}}");
    m
}

impl Operations {
    /// Starts operation `id` for `identity`; messages to send right away go to `out`.
    pub fn start(
        &mut self,
        cx: &Context<'_>,
        session: &mut Session,
        identity: &Identity,
        id: String,
        request: OperationRequest,
        out: &mut Vec<String>,
    ) {
        let engine = Arc::clone(&cx.shard.engine.borrow());
        let key = compiled::Key {
            query: request.query.into(),
            operation_name: request.operation_name.map(Into::into),
            variables: request
                .variables
                .as_ref()
                .map(|v| simd_json::prelude::Writable::encode(v).into()),
        };
        let cached = cx.shard.compiled.borrow_mut().get(&engine, &key);
        if let Some(c) = cached {
            cx.shard.metrics().compiled_reused.inc();
            self.subscribe(cx, session, identity, id, c);
            return;
        }
        let prepared = match engine.prepare(
            &key.query,
            request.variables.as_ref(),
            key.operation_name.as_deref(),
        ) {
            Ok(p) => p,
            Err(errors) => {
                for e in &errors {
                    cx.shard.metrics().error(e.code.as_str());
                }
                out.push(session.error(&id, &errors));
                return;
            }
        };
        // Built before `prepared.plan` moves out below; only subscriptions need it.
        let skip = if prepared.kind == OperationKind::Subscription {
            SkipRule::new(&prepared, &engine.schema().catalog)
        } else {
            SkipRule::default()
        };
        match (prepared.kind, prepared.plan) {
            (_, EnginePlan::Immediate(data)) => {
                out.push(result_message(session, &id, &data));
                out.push(session.complete(&id));
            }
            (OperationKind::Subscription, EnginePlan::Sql { sql, params }) => {
                let c = Rc::new(Compiled {
                    sql,
                    params,
                    tables: prepared.tables.into_iter().collect(),
                    skip,
                    multiplexed: Default::default(),
                    alone: Default::default(),
                });
                cx.shard
                    .compiled
                    .borrow_mut()
                    .insert(&engine, key, Rc::clone(&c));
                self.subscribe(cx, session, identity, id, c);
            }
            (_, plan) => {
                self.next_token += 1;
                let token = self.next_token;
                let (shard, outbox) = (Rc::clone(cx.shard), Rc::clone(cx.outbox));
                let identity = identity.clone();
                let task = glommio::spawn_local(async move {
                    // One of the connection's turns at the database (see `Outbox::db_turn`).
                    let turn = outbox.db_turn().await;
                    // A query, or a mutation (dropping this task before it ends cancels the
                    // statement, and its transaction is rolled back).
                    let result = execute::run_plan(&shard.db, shard.metrics(), &identity, &plan)
                        .await
                        .map_err(|f| f.error().clone());
                    drop(turn);
                    outbox.report(OpEvent::QueryDone { token, result });
                });
                self.by_id.insert(id, Op::Query { token, _task: task });
            }
        }
    }

    /// Joins (or creates) the live query of subscription `id`.
    fn subscribe(
        &mut self,
        cx: &Context<'_>,
        session: &Session,
        identity: &Identity,
        id: String,
        compiled: Rc<Compiled>,
    ) {
        let slot = cx.outbox.open_slot(session.result_prefix(&id).as_bytes());
        let key = LiveKey {
            compiled,
            role: identity.role.as_deref().map(Into::into),
            claims: identity.claims.as_str().into(),
        };
        let mut live = cx.shard.live.borrow_mut();
        let live_id = live.subscribe(key, cx.outbox, slot);
        let metrics = cx.shard.metrics();
        metrics.subscriptions_active.inc();
        metrics.live_queries.set(live.len() as u64);
        self.ids.insert(slot, id.clone());
        self.by_id.insert(
            id,
            Op::Subscription {
                live: live_id,
                slot,
            },
        );
    }

    /// The client no longer wants operation `id`.
    pub fn stop(&mut self, cx: &Context<'_>, id: &str) {
        match self.by_id.remove(id) {
            Some(Op::Subscription { live, slot }) => self.leave(cx, live, slot),
            // Dropping the task cancels the query.
            Some(Op::Query { .. }) | None => {}
        }
    }

    fn leave(&mut self, cx: &Context<'_>, live: LiveId, slot: SlotId) {
        let mut registry = cx.shard.live.borrow_mut();
        registry.unsubscribe(live, cx.outbox, slot);
        cx.outbox.close_slot(slot);
        self.ids.remove(&slot);
        let metrics = cx.shard.metrics();
        metrics.subscriptions_active.dec();
        metrics.live_queries.set(registry.len() as u64);
    }

    /// Answers an outcome another task reported.
    pub fn on_event(
        &mut self,
        cx: &Context<'_>,
        session: &mut Session,
        event: OpEvent,
        out: &mut Vec<String>,
    ) {
        match event {
            OpEvent::Failed { slot, errors } => {
                // The registry has already dropped the live query and the outbox the slot;
                // what is left is this connection's record of it.
                if let Some(id) = self.ids.remove(&slot) {
                    self.by_id.remove(&id);
                    out.push(session.error(&id, &errors));
                    let metrics = cx.shard.metrics();
                    metrics.subscriptions_active.dec();
                    metrics
                        .live_queries
                        .set(cx.shard.live.borrow().len() as u64);
                }
            }
            OpEvent::QueryDone { token, result } => {
                let Some(id) = self
                    .by_id
                    .iter()
                    .find(|(_, op)| matches!(op, Op::Query { token: t, .. } if *t == token))
                    .map(|(id, _)| id.clone())
                else {
                    return;
                };
                self.by_id.remove(&id);
                match result {
                    Ok(data) => {
                        out.push(result_message(session, &id, &data));
                        out.push(session.complete(&id));
                    }
                    Err(e) => out.push(session.error(&id, &[e])),
                }
            }
        }
    }

    /// The connection is over: leave every live query.
    pub fn release_all(&mut self, cx: &Context<'_>) {
        let subscriptions: Vec<(LiveId, SlotId)> = self
            .by_id
            .drain()
            .filter_map(|(_, op)| match op {
                Op::Subscription { live, slot } => Some((live, slot)),
                Op::Query { .. } => None,
            })
            .collect();
        for (live, slot) in subscriptions {
            self.leave(cx, live, slot);
        }
    }
}
