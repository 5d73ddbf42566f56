//! A shard's live queries: shared by key, indexed by the tables they read, marked dirty by
//! changes, and fed results that are fanned out to their subscribers.

use std::cell::Cell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::SkipRule;
use super::routes::Routes;
use crate::catalog::QualifiedName;
use crate::change::Change;
use crate::outbox::{Outbox, SharedPayload, SlotId};
use crate::protocol::GraphQLError;

/// A compiled subscription: how to compute a live query's result. One is shared (`Rc`)
/// by every live query compiled from the same document and variables, which differ only
/// in who runs them, and by the shard's cache of compiled subscriptions.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    /// One statement whose single value is the JSON of the response's `data`.
    pub sql: String,
    pub params: Vec<String>,
    /// Every base table the statement reads (views resolved, nested relations included).
    pub tables: Vec<QualifiedName>,
    /// Which changes provably leave the result as it is.
    pub skip: SkipRule,
    /// `sql` multiplexed ([`crate::sql::multiplex`]), made the first time several live
    /// queries of it refresh together.
    pub multiplexed: std::cell::OnceCell<String>,
    /// Set when a multiplexed run of this statement ran past the statement timeout: several
    /// runs together take longer than one, so it refreshes alone from then on.
    pub alone: std::cell::Cell<bool>,
}

impl Compiled {
    /// The statement that runs `sql` for several parameter sets at once.
    pub fn multiplexed(&self) -> &str {
        self.multiplexed
            .get_or_init(|| crate::sql::multiplex::multiplexed(&self.sql, self.params.len()))
    }
}

/// What makes two subscriptions the same live query: the same statement with the same
/// parameters, run as the same role with the same claims. Anything less could show one
/// client rows meant for another. Cloning it (for each refresh) copies pointers only.
#[derive(Debug, Clone)]
pub struct LiveKey {
    pub compiled: Rc<Compiled>,
    pub role: Option<Rc<str>>,
    pub claims: Rc<str>,
}

impl PartialEq for LiveKey {
    fn eq(&self, other: &LiveKey) -> bool {
        let same = Rc::ptr_eq(&self.compiled, &other.compiled)
            || (self.compiled.sql == other.compiled.sql
                && self.compiled.params == other.compiled.params);
        same && self.role == other.role && self.claims == other.claims
    }
}

impl Eq for LiveKey {}

impl std::hash::Hash for LiveKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.compiled.sql.hash(state);
        self.compiled.params.hash(state);
        self.role.hash(state);
        self.claims.hash(state);
    }
}

/// A refresh to run: the live query's key says what to run and as whom.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: LiveId,
    pub key: LiveKey,
    /// For the first refresh of a new live query: the connection of its first waiting
    /// subscriber (the one that created it, unless it left), in whose turn it runs (see
    /// `refresh::run`). `None` for a live query with standing subscribers.
    pub owner: Option<Rc<Outbox>>,
    /// Set when the live query goes while this refresh runs.
    pub abandoned: Rc<Abandon>,
}

/// Tells a running refresh that its live query is gone (its last subscriber left): the
/// refresh loop stops waiting for the statement, which cancels it, and never records the
/// result under an id that may by then belong to another live query.
#[derive(Default)]
pub struct Abandon {
    set: Cell<bool>,
    /// The refresh task waiting in [`Abandon::wait`].
    waker: Cell<Option<Waker>>,
}

impl std::fmt::Debug for Abandon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Abandon({})", self.set.get())
    }
}

impl Abandon {
    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    fn set(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Resolves once the live query is gone.
    pub async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.set.get() {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LiveId(pub(super) usize);

struct Subscriber {
    outbox: Rc<Outbox>,
    slot: SlotId,
}

struct LiveQuery {
    key: LiveKey,
    subscribers: Vec<Subscriber>,
    /// Subscribers still waiting for their first result, each with the first refresh whose
    /// result it may be given (see `Registry::subscribe`).
    waiting: Vec<(Subscriber, u64)>,
    /// Refreshes started so far; the running or last one is number `refreshes`.
    refreshes: u64,
    /// The last result sent, `{"data":…}`: a refresh that reads the same sends it to the
    /// waiting subscribers only.
    last: Option<SharedPayload>,
    /// A refresh is wanted (queued in `lane` unless `refreshing`).
    dirty: bool,
    /// Which of the registry's queues holds it while it is dirty and not refreshing.
    lane: Lane,
    /// A refresh is running; a change meanwhile sets `dirty` so another one follows.
    refreshing: bool,
    /// The running refresh's flag, set if the live query goes before it ends.
    running: Option<Rc<Abandon>>,
}

/// The two queues of dirty live queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// A new live query, every subscriber waiting for a first result: run in the turn of
    /// the connection that created it.
    First,
    /// A live query with standing subscribers: run in one of the shard's refresh slots.
    Standing,
}

/// What a refresh produced.
pub enum Outcome {
    /// The `data` JSON of the result.
    Data(String),
    /// The query failed for good (a permission revoked, a table dropped): subscribers get
    /// these errors and the live query ends.
    Failed(Rc<[GraphQLError]>),
}

#[derive(Default)]
pub struct Registry {
    queries: Vec<Option<LiveQuery>>,
    free: Vec<usize>,
    by_key: HashMap<LiveKey, LiveId>,
    /// The live queries reading each table, filed by the values their filters require.
    routes: Routes,
    /// Live queries waiting for a refresh, oldest first, in two lanes (see `Lane`). An
    /// entry whose live query is no longer queued there (taken, or gone and its id reused
    /// by a live query queued elsewhere) is skipped when met.
    firsts: VecDeque<LiveId>,
    dirty: VecDeque<LiveId>,
    /// The refresh loop's waker while it waits for dirty live queries.
    waker: Option<Waker>,
    /// Tables every reader of which is dirty, as changes name them (no schema: that name in
    /// every schema): a further change to one marks nothing new, so it is not looked at,
    /// which keeps a bulk statement under the docs page's trigger (each row a notification
    /// without its old values, so each marks every reader) at one lookup per row. A table
    /// leaves the set when a refresh of one of its readers starts.
    all_dirty: HashSet<(Option<String>, String)>,
}

impl Registry {
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Adds a subscriber. A new live query is created and made dirty, so it runs at the
    /// next refresh. Joining an existing one, the subscriber waits for the first refresh
    /// that starts after it joined (queued unless one is already pending). The cached
    /// result is never handed out: it may predate a commit the client saw complete before
    /// subscribing, whose notification is still on its way to this shard. Subscribers
    /// arriving together share one refresh, and at most one runs per live query, so a burst
    /// of them costs one query per refresh period.
    pub fn subscribe(&mut self, key: LiveKey, outbox: &Rc<Outbox>, slot: SlotId) -> LiveId {
        let subscriber = Subscriber {
            outbox: Rc::clone(outbox),
            slot,
        };
        if let Some(&id) = self.by_key.get(&key) {
            let q = self.get_mut(id);
            q.waiting.push((subscriber, q.refreshes + 1));
            self.mark(id);
            return id;
        }
        let id = match self.free.pop() {
            Some(i) => LiveId(i),
            None => {
                self.queries.push(None);
                LiveId(self.queries.len() - 1)
            }
        };
        self.routes.add(id, &key.compiled);
        self.by_key.insert(key.clone(), id);
        self.queries[id.0] = Some(LiveQuery {
            key,
            subscribers: Vec::new(),
            waiting: vec![(subscriber, 1)],
            refreshes: 0,
            last: None,
            dirty: false,
            lane: Lane::First,
            refreshing: false,
            running: None,
        });
        self.mark(id);
        id
    }

    /// Removes a subscriber; the live query goes when its last subscriber does.
    pub fn unsubscribe(&mut self, id: LiveId, outbox: &Rc<Outbox>, slot: SlotId) {
        let Some(Some(q)) = self.queries.get_mut(id.0) else {
            return;
        };
        let other = |s: &Subscriber| !(Rc::ptr_eq(&s.outbox, outbox) && s.slot == slot);
        q.subscribers.retain(other);
        q.waiting.retain(|(s, _)| other(s));
        if q.subscribers.is_empty() && q.waiting.is_empty() {
            self.remove(id);
        }
    }

    fn remove(&mut self, id: LiveId) {
        let Some(q) = self.queries[id.0].take() else {
            return;
        };
        if let Some(running) = &q.running {
            running.set();
        }
        self.by_key.remove(&q.key);
        self.routes.remove(id, &q.key.compiled);
        self.dirty.retain(|d| *d != id);
        self.firsts.retain(|d| *d != id);
        self.free.push(id.0);
    }

    fn get_mut(&mut self, id: LiveId) -> &mut LiveQuery {
        self.queries[id.0].as_mut().expect("live query exists")
    }

    fn mark(&mut self, id: LiveId) {
        let q = self.get_mut(id);
        let queue = !q.dirty && !q.refreshing;
        q.dirty = true;
        if queue {
            self.queue(id);
        }
    }

    /// Queues a dirty live query in its lane: the first-result lane while nobody has a
    /// result yet (a new live query; its subscribers all wait), else the standing lane,
    /// which also serves subscribers who joined a running live query. Queued in the first
    /// lane, a live query keeps waiting subscribers until it runs or goes, so its lane never
    /// needs to change.
    fn queue(&mut self, id: LiveId) {
        let q = self.get_mut(id);
        q.lane = if q.subscribers.is_empty() {
            Lane::First
        } else {
            Lane::Standing
        };
        match q.lane {
            Lane::First => self.firsts.push_back(id),
            Lane::Standing => self.dirty.push_back(id),
        }
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    fn is_queued(&self, id: LiveId, lane: Lane) -> bool {
        matches!(self.queries.get(id.0), Some(Some(q)) if q.dirty && !q.refreshing && q.lane == lane)
    }

    /// Drops the skipped entries at the front of `lane`'s queue.
    fn prune(&mut self, lane: Lane) {
        loop {
            let front = match lane {
                Lane::First => self.firsts.front(),
                Lane::Standing => self.dirty.front(),
            };
            match front {
                Some(&id) if !self.is_queued(id, lane) => {}
                _ => return,
            }
            match lane {
                Lane::First => self.firsts.pop_front(),
                Lane::Standing => self.dirty.pop_front(),
            };
        }
    }

    /// Ready once some live query is dirty; the refresh loop waits on it.
    pub fn poll_dirty(&mut self, cx: &Context<'_>) -> Poll<()> {
        self.prune(Lane::First);
        self.prune(Lane::Standing);
        if self.firsts.is_empty() && self.dirty.is_empty() {
            self.waker = Some(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Ready once some live query has subscribers waiting for a first result; the refresh
    /// loop waits on it while every refresh slot is taken.
    pub fn poll_first(&mut self, cx: &Context<'_>) -> Poll<()> {
        self.prune(Lane::First);
        if self.firsts.is_empty() {
            self.waker = Some(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Marks every live query that reads `table` (in `schema`, or in any schema when the
    /// notification did not say). Returns how many were marked.
    pub fn mark_table(&mut self, schema: Option<&str>, table: &str) -> usize {
        if self.is_all_dirty(schema, table) {
            return self.routes.count(schema, table);
        }
        let ids = self.routes.readers(schema, table);
        for id in &ids {
            self.mark(*id);
        }
        if !ids.is_empty() {
            self.all_dirty
                .insert((schema.map(str::to_owned), table.to_owned()));
        }
        ids.len()
    }

    /// Marks every live query that reads the changed table, except those the change
    /// provably cannot alter: only the candidates `Routes` finds are tested. Returns how
    /// many were marked and how many of the table's readers were not.
    pub fn mark_change(&mut self, change: &Change) -> (usize, usize) {
        let schema = change.schema.as_deref();
        let readers = self.routes.count(schema, &change.table);
        if self.is_all_dirty(schema, &change.table) {
            return (readers, 0);
        }
        let ids = self.routes.candidates(change);
        let mut marked = 0;
        for id in &ids {
            if !self.get_mut(*id).key.compiled.skip.unaffected_by(change) {
                self.mark(*id);
                marked += 1;
            }
        }
        if readers > 0 && marked == readers {
            self.all_dirty
                .insert((change.schema.clone(), change.table.clone()));
        }
        (marked, readers.saturating_sub(marked))
    }

    /// Every reader of `table` (in `schema`, or in every schema) is dirty.
    fn is_all_dirty(&self, schema: Option<&str>, table: &str) -> bool {
        let key = |schema: Option<&str>| (schema.map(str::to_owned), table.to_owned());
        // No allocation unless some table is in the set.
        !self.all_dirty.is_empty()
            && (self.all_dirty.contains(&key(None))
                || (schema.is_some() && self.all_dirty.contains(&key(schema))))
    }

    /// Marks every live query (notifications may have been missed).
    pub fn mark_all(&mut self) {
        let ids: Vec<LiveId> = self.by_key.values().copied().collect();
        for id in ids {
            self.mark(id);
        }
    }

    pub fn has_dirty(&self) -> bool {
        let queued = |lane| move |id: &LiveId| self.is_queued(*id, lane);
        self.firsts.iter().any(queued(Lane::First)) || self.dirty.iter().any(queued(Lane::Standing))
    }

    /// Some live query is queued for its standing subscribers only.
    pub fn has_standing(&mut self) -> bool {
        self.prune(Lane::Standing);
        !self.dirty.is_empty()
    }

    /// Takes a live query whose subscribers wait for a first result, oldest first.
    pub fn take_first(&mut self) -> Option<Job> {
        self.prune(Lane::First);
        let id = self.firsts.pop_front()?;
        Some(self.start(id))
    }

    /// Takes up to `max` dirty live queries to refresh: those with subscribers waiting for
    /// a first result, then the rest, oldest first in each.
    pub fn take_dirty(&mut self, max: usize) -> Vec<Job> {
        let mut jobs = Vec::new();
        while jobs.len() < max {
            if let Some(job) = self.take_first() {
                jobs.push(job);
                continue;
            }
            let Some(job) = self.take_standing() else {
                break;
            };
            jobs.push(job);
        }
        jobs
    }

    /// Takes a live query queued for its standing subscribers only, oldest first.
    pub fn take_standing(&mut self) -> Option<Job> {
        self.prune(Lane::Standing);
        let id = self.dirty.pop_front()?;
        Some(self.start(id))
    }

    /// Marks a queued live query as refreshing and describes the refresh to run.
    fn start(&mut self, id: LiveId) -> Job {
        if !self.all_dirty.is_empty() {
            let tables = &self.get_mut(id).key.compiled.tables;
            if tables.iter().any(|t| t.name == crate::catalog::ANY_TABLE) {
                // A reader of every table: none has every reader dirty any more.
                self.all_dirty.clear();
            } else {
                let names: Vec<(Option<String>, String)> = tables
                    .iter()
                    .flat_map(|t| {
                        [
                            (None, t.name.clone()),
                            (Some(t.schema.clone()), t.name.clone()),
                        ]
                    })
                    .collect();
                for name in &names {
                    self.all_dirty.remove(name);
                }
            }
        }
        let q = self.get_mut(id);
        q.dirty = false;
        q.refreshing = true;
        q.refreshes += 1;
        let abandoned = Rc::new(Abandon::default());
        q.running = Some(Rc::clone(&abandoned));
        Job {
            id,
            key: q.key.clone(),
            owner: match q.lane {
                Lane::First => q.waiting.first().map(|(s, _)| Rc::clone(&s.outbox)),
                Lane::Standing => None,
            },
            abandoned,
        }
    }

    /// Records a refresh's outcome: a changed result goes to every subscriber (encoded
    /// once), an unchanged one to nobody but the waiting subscribers it was run for. A
    /// change that arrived during the refresh queues another. Returns the failed
    /// subscribers' `(outbox, slot)` when the query failed.
    pub fn finish(&mut self, id: LiveId, outcome: Outcome) -> Vec<(Rc<Outbox>, SlotId)> {
        let Some(Some(q)) = self.queries.get_mut(id.0) else {
            // Every subscriber left while the refresh ran.
            return Vec::new();
        };
        q.refreshing = false;
        q.running = None;
        match outcome {
            Outcome::Data(data) => {
                let unchanged = q
                    .last
                    .as_ref()
                    .is_some_and(|last| is_same_data(last, data.as_bytes()));
                if !unchanged {
                    let payload = envelope(&data);
                    for s in &q.subscribers {
                        s.outbox.deliver(s.slot, &payload);
                    }
                    q.last = Some(payload);
                }
                if let Some(last) = &q.last {
                    let refresh = q.refreshes;
                    for (s, _) in q.waiting.extract_if(.., |(_, from)| *from <= refresh) {
                        s.outbox.deliver(s.slot, last);
                        q.subscribers.push(s);
                    }
                }
                if q.dirty {
                    self.queue(id);
                }
                Vec::new()
            }
            Outcome::Failed(_) => {
                let waiting = q.waiting.drain(..).map(|(s, _)| s);
                let failed = q
                    .subscribers
                    .drain(..)
                    .chain(waiting)
                    .map(|s| (s.outbox, s.slot))
                    .collect();
                self.remove(id);
                failed
            }
        }
    }

    /// A refresh that could not run (no database connection): try again later.
    pub fn retry(&mut self, id: LiveId) {
        if let Some(Some(q)) = self.queries.get_mut(id.0) {
            // Queued whether or not a change arrived meanwhile: while the refresh ran the
            // live query was off the queue, with or without `dirty` set.
            q.refreshing = false;
            q.running = None;
            q.dirty = true;
            self.queue(id);
        }
    }
}

/// `{"data":<data>}`, the payload of a `next` message.
fn envelope(data: &str) -> SharedPayload {
    let mut out = Vec::with_capacity(data.len() + 9);
    out.extend_from_slice(b"{\"data\":");
    out.extend_from_slice(data.as_bytes());
    out.push(b'}');
    Rc::from(out)
}

fn is_same_data(payload: &[u8], data: &[u8]) -> bool {
    payload.len() == data.len() + 9 && &payload[8..payload.len() - 1] == data
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ANY_TABLE;

    /// A live query running `op` (as its SQL) as `role`, reading `tables` of `public`.
    fn key_reading(op: &str, role: &str, tables: &[&str], skip: SkipRule) -> LiveKey {
        LiveKey {
            compiled: Rc::new(Compiled {
                sql: op.into(),
                params: vec![],
                tables: tables
                    .iter()
                    .map(|t| QualifiedName {
                        schema: "public".into(),
                        name: (*t).into(),
                    })
                    .collect(),
                skip,
                multiplexed: Default::default(),
                alone: Default::default(),
            }),
            role: Some(role.into()),
            claims: "{}".into(),
        }
    }

    fn key(op: &str, role: &str) -> LiveKey {
        key_reading(op, role, &["orders"], SkipRule::default())
    }

    /// Every frame currently in the outbox, as text payloads.
    fn sent(outbox: &Outbox) -> Vec<String> {
        let mut out = Vec::new();
        outbox.fill(&mut out, usize::MAX);
        let mut texts = Vec::new();
        let mut rest = &out[..];
        while !rest.is_empty() {
            let (len, start) = match rest[1] {
                126 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
                n => (n as usize, 2),
            };
            texts.push(String::from_utf8(rest[start..start + len].to_vec()).unwrap());
            rest = &rest[start + len..];
        }
        texts
    }

    #[test]
    fn a_refresh_whose_live_query_went_is_abandoned_and_its_id_reused_safely() {
        let mut r = Registry::default();
        let (a, b) = (Rc::new(Outbox::default()), Rc::new(Outbox::default()));
        let (sa, sb) = (a.open_slot(b"A:"), b.open_slot(b"B:"));
        let first = r.subscribe(key("q", "alice"), &a, sa);
        let job = r.take_dirty(1).remove(0);
        assert!(!job.abandoned.is_set());
        // The last subscriber leaves while the refresh runs: the refresh is told.
        r.unsubscribe(first, &a, sa);
        assert!(job.abandoned.is_set());
        // Another role's live query takes the freed id.
        let second = r.subscribe(key("q", "bob"), &b, sb);
        assert_eq!(second, first, "the id is reused");
        // The refresh loop records nothing for an abandoned job; had it done so, alice's
        // rows would reach bob's subscriber. The new live query runs its own refresh.
        let job = r.take_dirty(1).remove(0);
        assert!(!job.abandoned.is_set());
        r.finish(job.id, Outcome::Data(r#"{"bob":1}"#.into()));
        assert_eq!(sent(&b), [r#"B:{"data":{"bob":1}}}"#]);
    }

    #[test]
    fn a_new_live_query_runs_in_its_creators_turn_and_a_standing_one_in_a_slot() {
        let mut r = Registry::default();
        let (a, b) = (Rc::new(Outbox::default()), Rc::new(Outbox::default()));
        let (sa, sb) = (a.open_slot(b"A:"), b.open_slot(b"B:"));
        let id = r.subscribe(key("s", "web"), &a, sa);
        assert!(!r.has_standing());
        let job = r
            .take_first()
            .expect("a new live query waits for its first result");
        assert!(Rc::ptr_eq(job.owner.as_ref().unwrap(), &a), "in a's turn");
        r.finish(job.id, Outcome::Data("{}".into()));
        // A change, and b joins before its refresh starts: one refresh, for the standing
        // subscriber and the joiner, in a slot rather than in anyone's turn.
        r.mark_table(None, "orders");
        assert_eq!(r.subscribe(key("s", "web"), &b, sb), id);
        assert!(r.take_first().is_none());
        let job = r.take_standing().expect("queued once, for everyone");
        assert!(job.owner.is_none());
        assert!(!r.has_dirty());
        r.finish(job.id, Outcome::Data("{}".into()));
        assert_eq!(sent(&b), [r#"B:{"data":{}}}"#]);

        // A joiner that leaves before the refresh starts changes nothing about its lane.
        let c = Rc::new(Outbox::default());
        let sc = c.open_slot(b"C:");
        r.mark_table(None, "orders");
        r.subscribe(key("s", "web"), &c, sc);
        r.unsubscribe(id, &c, sc);
        assert!(r.take_first().is_none());
        assert!(r.take_standing().is_some_and(|job| job.owner.is_none()));
    }

    #[test]
    fn identical_subscriptions_share_one_live_query_and_one_refresh() {
        let mut r = Registry::default();
        let (a, b) = (Rc::new(Outbox::default()), Rc::new(Outbox::default()));
        let (sa, sb) = (a.open_slot(b"A:"), b.open_slot(b"B:"));
        let id = r.subscribe(key("q", "web"), &a, sa);
        assert_eq!(r.subscribe(key("q", "web"), &b, sb), id);
        let other_role = r.subscribe(key("q", "admin"), &b, sb);
        assert_ne!(other_role, id, "a different role never shares");
        assert_eq!(r.len(), 2);

        let jobs = r.take_dirty(10);
        assert_eq!(
            jobs.len(),
            2,
            "one refresh per live query, not per subscriber"
        );
        r.finish(jobs[0].id, Outcome::Data(r#"{"orders":[]}"#.into()));
        assert_eq!(sent(&a), [r#"A:{"data":{"orders":[]}}}"#]);
        assert_eq!(sent(&b), [r#"B:{"data":{"orders":[]}}}"#]);
    }

    /// A live query with subscriber `1:` on outbox `a`, its first result `{"n":1}` sent.
    fn primed() -> (Registry, Rc<Outbox>, LiveId) {
        let mut r = Registry::default();
        let a = Rc::new(Outbox::default());
        let s1 = a.open_slot(b"1:");
        let id = r.subscribe(key("q", "web"), &a, s1);
        let job = r.take_dirty(1).remove(0);
        r.finish(job.id, Outcome::Data("{\"n\":1}".into()));
        sent(&a);
        (r, a, id)
    }

    #[test]
    fn a_late_subscriber_gets_a_result_read_after_it_joined() {
        let (mut r, a, id) = primed();
        // No change is pending, yet one may have committed whose notification is on its
        // way: the cached result is not handed out, a refresh is queued.
        let s2 = a.open_slot(b"2:");
        assert_eq!(r.subscribe(key("q", "web"), &a, s2), id);
        assert_eq!(sent(&a), Vec::<String>::new());
        assert_eq!(r.take_dirty(10).len(), 1);
        r.finish(id, Outcome::Data("{\"n\":1}".into()));
        assert_eq!(sent(&a), ["2:{\"data\":{\"n\":1}}}"]);
        assert!(!r.has_dirty());
    }

    #[test]
    fn a_subscriber_joining_while_a_change_is_pending_waits_for_a_newer_refresh() {
        let (mut r, a, id) = primed();

        // A change is pending, so the cached result may predate a commit the client saw:
        // none is sent, and subscribers joining meanwhile share the pending refresh.
        r.mark_table(None, "orders");
        let s2 = a.open_slot(b"2:");
        let s3 = a.open_slot(b"3:");
        r.subscribe(key("q", "web"), &a, s2);
        r.subscribe(key("q", "web"), &a, s3);
        assert_eq!(sent(&a), Vec::<String>::new());
        assert_eq!(r.take_dirty(10).len(), 1, "one refresh for both");
        // An unchanged result reaches the subscribers that waited for it, only them.
        r.finish(id, Outcome::Data("{\"n\":1}".into()));
        let mut got = sent(&a);
        got.sort();
        assert_eq!(got, ["2:{\"data\":{\"n\":1}}}", "3:{\"data\":{\"n\":1}}}"]);
        assert!(!r.has_dirty());

        // Joining during a refresh that began before it: another refresh is queued, and
        // the running one's result goes only to the earlier subscribers.
        r.mark_table(None, "orders");
        r.take_dirty(1);
        let s4 = a.open_slot(b"4:");
        r.subscribe(key("q", "web"), &a, s4);
        r.finish(id, Outcome::Data("{\"n\":2}".into()));
        assert_eq!(sent(&a).len(), 3, "1, 2 and 3 get the new result");
        assert_eq!(
            r.take_dirty(10).len(),
            1,
            "a refresh for the late subscriber"
        );
        r.finish(id, Outcome::Data("{\"n\":2}".into()));
        assert_eq!(sent(&a), ["4:{\"data\":{\"n\":2}}}"]);
        assert!(!r.has_dirty());

        // Leaving while waiting, and failing, cover the waiting subscribers too.
        r.mark_table(None, "orders");
        let s5 = a.open_slot(b"5:");
        let s6 = a.open_slot(b"6:");
        r.subscribe(key("q", "web"), &a, s5);
        r.subscribe(key("q", "web"), &a, s6);
        r.unsubscribe(id, &a, s5);
        r.take_dirty(1);
        let failed = r.finish(id, Outcome::Failed(Rc::from(Vec::new())));
        let slots: Vec<SlotId> = failed.iter().map(|(_, s)| *s).collect();
        assert_eq!(slots.len(), 5, "1 to 4 and the waiting 6: {slots:?}");
        assert!(slots.contains(&s6) && !slots.contains(&s5));
        assert!(r.is_empty());
    }

    #[test]
    fn a_change_after_a_refresh_started_marks_its_live_query_again_when_all_were_dirty() {
        let mut r = Registry::default();
        let a = Rc::new(Outbox::default());
        let (sa, sb) = (a.open_slot(b"A:"), a.open_slot(b"B:"));
        let first = r.subscribe(key("a", "web"), &a, sa);
        let second = r.subscribe(key("b", "web"), &a, sb);
        for job in r.take_dirty(2) {
            r.finish(job.id, Outcome::Data("{}".into()));
        }
        // A row change without its old values marks every reader, each time.
        let update = Change {
            schema: None,
            table: "orders".into(),
            operation: crate::change::Operation::Update,
            new: None,
            old: None,
            truncated: false,
        };
        assert_eq!(r.mark_change(&update), (2, 0));
        assert_eq!(r.mark_change(&update), (2, 0), "both still dirty");
        let running = r.take_standing().expect("queued");
        assert_eq!(running.id, first);
        // The same change while the first one's refresh runs: it must run again after.
        assert_eq!(r.mark_change(&update), (2, 0));
        r.finish(running.id, Outcome::Data("{}".into()));
        let mut queued: Vec<LiveId> =
            std::iter::from_fn(|| r.take_standing().map(|j| j.id)).collect();
        queued.sort_by_key(|id| id.0);
        assert_eq!(
            queued,
            [first, second],
            "the first runs again, the second once"
        );
        // The same through coalesced table events.
        for id in [first, second] {
            r.finish(id, Outcome::Data("{}".into()));
        }
        assert_eq!(r.mark_table(None, "orders"), 2);
        let running = r.take_standing().expect("queued");
        assert_eq!(r.mark_table(None, "orders"), 2);
        r.finish(running.id, Outcome::Data("{}".into()));
        assert_eq!(
            std::iter::from_fn(|| r.take_standing()).count(),
            2,
            "the one that ran is queued again"
        );
    }

    #[test]
    fn every_reader_dirty_holds_per_schema_and_for_readers_of_any_table() {
        let update = |schema: Option<&str>, table: &str| Change {
            schema: schema.map(str::to_owned),
            table: table.into(),
            operation: crate::change::Operation::Update,
            new: None,
            old: None,
            truncated: false,
        };
        // Whether `reader` refreshes again for `change` arriving while its refresh runs,
        // after the same change had made every reader dirty (twice) before it started.
        let requeued = |r: &mut Registry, reader: LiveId, change: &Change| {
            r.mark_change(change);
            r.mark_change(change);
            let running: Vec<LiveId> =
                std::iter::from_fn(|| r.take_standing().map(|j| j.id)).collect();
            assert!(running.contains(&reader), "queued by the change");
            r.mark_change(change);
            for id in &running {
                r.finish(*id, Outcome::Data("{}".into()));
            }
            let again: Vec<LiveId> =
                std::iter::from_fn(|| r.take_standing().map(|j| j.id)).collect();
            for id in &again {
                r.finish(*id, Outcome::Data("{}".into()));
            }
            again.contains(&reader)
        };
        let mut r = Registry::default();
        let a = Rc::new(Outbox::default());
        let (sa, sb) = (a.open_slot(b"A:"), a.open_slot(b"B:"));
        let orders = r.subscribe(key("o", "web"), &a, sa);
        for job in r.take_dirty(1) {
            r.finish(job.id, Outcome::Data("{}".into()));
        }
        assert!(
            requeued(&mut r, orders, &update(Some("public"), "orders")),
            "a schema-qualified change"
        );
        // A table only a reader of any table reads: its refresh starting must end the
        // table's every-reader-dirty state although it does not name the table.
        let any = r.subscribe(
            key_reading("any", "web", &[ANY_TABLE], SkipRule::default()),
            &a,
            sb,
        );
        for job in r.take_dirty(1) {
            r.finish(job.id, Outcome::Data("{}".into()));
        }
        assert!(
            requeued(&mut r, any, &update(None, "invoices")),
            "a reader of any table"
        );
    }

    #[test]
    fn changes_mark_readers_of_the_table_and_unchanged_results_send_nothing() {
        let mut r = Registry::default();
        let a = Rc::new(Outbox::default());
        let slot = a.open_slot(b"A:");
        let id = r.subscribe(
            key_reading("q", "web", &["orders", "customers"], SkipRule::default()),
            &a,
            slot,
        );
        let job = r.take_dirty(1).remove(0);
        r.finish(job.id, Outcome::Data("{\"v\":1}".into()));
        sent(&a);

        assert_eq!(r.mark_table(Some("public"), "products"), 0);
        assert_eq!(
            r.mark_table(Some("other"), "orders"),
            0,
            "another schema's table"
        );
        assert_eq!(r.mark_table(None, "customers"), 1, "no schema: any schema");
        let job = r.take_dirty(1).remove(0);
        assert_eq!(job.id, id);
        r.finish(id, Outcome::Data("{\"v\":1}".into()));
        assert!(sent(&a).is_empty(), "same result, nothing sent");

        // A live query that may read anything is marked by any table's change, once.
        let b = Rc::new(Outbox::default());
        let other = b.open_slot(b"B:");
        let any = r.subscribe(
            key_reading("opaque", "web", &[ANY_TABLE, "orders"], SkipRule::default()),
            &b,
            other,
        );
        let job = r.take_dirty(1).remove(0);
        r.finish(job.id, Outcome::Data("{\"v\":2}".into()));
        assert_eq!(r.mark_table(Some("elsewhere"), "anything"), 1);
        assert_eq!(r.mark_table(Some("public"), "orders"), 2, "each one once");
        let jobs = r.take_dirty(2);
        assert!(jobs.iter().any(|j| j.id == any), "{:?}", jobs.len());
        for j in jobs {
            r.finish(j.id, Outcome::Data("{\"v\":1}".into()));
        }

        // Which dirty live query comes out first is not specified: finish them all.
        r.mark_all();
        let jobs = r.take_dirty(10);
        assert_eq!(jobs.len(), 2, "every live query");
        for j in jobs {
            r.finish(j.id, Outcome::Data("{\"v\":2}".into()));
        }
        assert_eq!(sent(&a), ["A:{\"data\":{\"v\":2}}}"]);
    }

    #[test]
    fn a_change_the_skip_rule_clears_marks_nothing() {
        let catalog = crate::catalog::Catalog::from_json(include_str!(
            "../../tests/fixtures/demo-catalog.json"
        ))
        .unwrap();
        let engine = crate::engine::Engine::new(
            catalog,
            &crate::config::Config::from_lookup(|_| None).unwrap(),
        );
        let op = r#"subscription { orders(filter: { status: { eq: "pending" } }) { id } }"#;
        let prepared = engine.prepare(op, None, None).unwrap();
        let mut r = Registry::default();
        let a = Rc::new(Outbox::default());
        let slot = a.open_slot(b"A");
        let skip = SkipRule::new(&prepared, &engine.schema().catalog);
        r.subscribe(key_reading(op, "web", &["orders"], skip), &a, slot);
        let job = r.take_dirty(1).remove(0);
        r.finish(job.id, Outcome::Data("{}".into()));
        let change =
            |payload: &str| crate::change::decode(&mut payload.as_bytes().to_vec()).unwrap();
        let paid =
            change(r#"{"table":"orders","operation":"INSERT","data":{"id":9,"status":"paid"}}"#);
        assert_eq!(r.mark_change(&paid), (0, 1));
        assert!(!r.has_dirty());
        let pending =
            change(r#"{"table":"orders","operation":"INSERT","data":{"id":9,"status":"pending"}}"#);
        assert_eq!(r.mark_change(&pending), (1, 0));
        assert!(r.has_dirty());
    }

    #[test]
    fn a_change_during_a_refresh_queues_another_and_marks_coalesce() {
        let mut r = Registry::default();
        let a = Rc::new(Outbox::default());
        let slot = a.open_slot(b"A:");
        let id = r.subscribe(key("q", "web"), &a, slot);
        let job = r.take_dirty(1).remove(0);
        r.mark_table(None, "orders");
        r.mark_table(None, "orders");
        assert!(!r.has_dirty(), "queued only after the running refresh");
        r.finish(job.id, Outcome::Data("{}".into()));
        assert_eq!(r.take_dirty(10).len(), 1, "two changes, one more refresh");
        r.retry(id);
        assert_eq!(
            r.take_dirty(10).len(),
            1,
            "a refresh that could not run is retried"
        );
    }

    #[test]
    fn a_refresh_retried_after_a_change_during_it_is_queued_again() {
        let mut r = Registry::default();
        let a = Rc::new(Outbox::default());
        let s1 = a.open_slot(b"1:");
        let id = r.subscribe(key("q", "web"), &a, s1);
        r.take_dirty(1);
        // A change (or a new subscriber) while the refresh runs, which then finds no
        // database connection.
        r.mark_table(None, "orders");
        r.retry(id);
        assert_eq!(r.take_dirty(10).len(), 1, "retried once, not lost");
        r.finish(id, Outcome::Data("{}".into()));
        assert_eq!(sent(&a).len(), 1);
        assert!(!r.has_dirty());
    }

    #[test]
    fn the_last_unsubscribe_removes_the_query_and_its_index_entries() {
        let mut r = Registry::default();
        let a = Rc::new(Outbox::default());
        let (s1, s2) = (a.open_slot(b"1"), a.open_slot(b"2"));
        let id = r.subscribe(key("q", "web"), &a, s1);
        r.subscribe(key("q", "web"), &a, s2);
        r.unsubscribe(id, &a, s1);
        assert_eq!(r.len(), 1);
        r.unsubscribe(id, &a, s2);
        assert!(r.is_empty());
        assert!(r.routes.is_empty());
        assert!(!r.has_dirty());
        assert_eq!(r.mark_table(None, "orders"), 0);
        r.finish(id, Outcome::Data("{}".into()));
        assert!(
            sent(&a).is_empty(),
            "a refresh finishing for nobody sends nothing"
        );
    }

    #[test]
    fn a_failed_query_hands_back_its_subscribers_and_ends() {
        let mut r = Registry::default();
        let a = Rc::new(Outbox::default());
        let slot = a.open_slot(b"A");
        let id = r.subscribe(key("q", "web"), &a, slot);
        r.take_dirty(1);
        let failed = r.finish(
            id,
            Outcome::Failed(Rc::from(vec![GraphQLError::server(
                crate::protocol::ErrorCode::Forbidden,
                "denied",
            )])),
        );
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].1, slot);
        assert!(r.is_empty());
    }
}
