//! A shard's recently compiled subscriptions, so that a burst of identical subscribes (every
//! client of an application sends the same few documents) parses, validates and compiles
//! each document once.
//!
//! An entry is keyed by everything `Engine::prepare` reads: the document, the operation
//! name and the variables (their JSON as sent), under one engine. It holds the compiled
//! subscription its live queries share. Only successful subscriptions are
//! kept: an error is cheap to produce again and a hostile client's documents would only
//! push useful entries out.
//!
//! Memory is bounded by `POSTRUST_OPERATION_CACHE_BYTES` per shard, counted as the bytes of
//! each entry's texts plus a fixed overhead. Entries live in two generations: lookups hit
//! either and move what they find into the young one; when the young one holds half the
//! budget, the old one is dropped and the young one becomes old. So an entry used since the
//! last turn survives it, and every step is constant time.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use crate::engine::Engine;
use crate::live::Compiled;

/// Bytes counted for an entry beyond its texts: the maps' slots, the skip rule's tree and
/// the table list.
const ENTRY_OVERHEAD: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub query: Box<str>,
    pub operation_name: Option<Box<str>>,
    /// The variables' JSON as the client sent it (an equal object written otherwise is
    /// another key, which costs a compile, never a wrong answer).
    pub variables: Option<Box<str>>,
}

/// What an entry counts against the budget.
fn entry_bytes(key: &Key, c: &Compiled) -> usize {
    let texts = key.query.len()
        + key.operation_name.as_deref().map_or(0, str::len)
        + key.variables.as_deref().map_or(0, str::len)
        + c.sql.len()
        + c.params.iter().map(String::len).sum::<usize>();
    texts + ENTRY_OVERHEAD
}

type Generation = HashMap<Key, (Rc<Compiled>, usize)>;

pub struct CompiledCache {
    /// The engine the entries were compiled with: another one (a schema reload) empties
    /// the cache before it is used.
    engine: Option<Arc<Engine>>,
    young: Generation,
    old: Generation,
    young_bytes: usize,
    budget: usize,
}

impl CompiledCache {
    /// A cache of at most `budget` bytes; 0 keeps nothing.
    pub fn new(budget: usize) -> CompiledCache {
        CompiledCache {
            engine: None,
            young: HashMap::new(),
            old: HashMap::new(),
            young_bytes: 0,
            budget,
        }
    }

    /// Forgets everything when `engine` is not the one the entries came from.
    fn check_engine(&mut self, engine: &Arc<Engine>) {
        if !self.engine.as_ref().is_some_and(|e| Arc::ptr_eq(e, engine)) {
            self.young.clear();
            self.old.clear();
            self.young_bytes = 0;
            self.engine = Some(Arc::clone(engine));
        }
    }

    pub fn get(&mut self, engine: &Arc<Engine>, key: &Key) -> Option<Rc<Compiled>> {
        self.check_engine(engine);
        if let Some((c, _)) = self.young.get(key) {
            return Some(Rc::clone(c));
        }
        let (key, (c, bytes)) = self.old.remove_entry(key)?;
        let found = Rc::clone(&c);
        self.put(key, c, bytes);
        Some(found)
    }

    pub fn insert(&mut self, engine: &Arc<Engine>, key: Key, compiled: Rc<Compiled>) {
        self.check_engine(engine);
        let bytes = entry_bytes(&key, &compiled);
        // One entry larger than a generation would turn the generations over for nothing.
        if bytes > self.budget / 2 {
            return;
        }
        self.old.remove(&key);
        self.put(key, compiled, bytes);
    }

    fn put(&mut self, key: Key, compiled: Rc<Compiled>, bytes: usize) {
        if self.young_bytes + bytes > self.budget / 2 {
            self.old = std::mem::take(&mut self.young);
            self.young_bytes = 0;
        }
        self.young_bytes += bytes;
        if let Some((_, replaced)) = self.young.insert(key, (compiled, bytes)) {
            self.young_bytes -= replaced;
        }
    }

    /// Bytes held, as counted against the budget.
    pub fn bytes(&self) -> usize {
        self.young_bytes + self.old.values().map(|(_, b)| b).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::config::Config;
    use crate::live::SkipRule;

    fn engine() -> Arc<Engine> {
        let catalog =
            Catalog::from_json(include_str!("../../tests/fixtures/demo-catalog.json")).unwrap();
        Arc::new(Engine::new(
            catalog,
            &Config::from_lookup(|_| None).unwrap(),
        ))
    }

    fn key(n: usize) -> Key {
        Key {
            query: format!("subscription {{ orders(limit: {n}) {{ id }} }}").into(),
            operation_name: None,
            variables: None,
        }
    }

    fn compiled(n: usize) -> Rc<Compiled> {
        Rc::new(Compiled {
            sql: format!("select {n}"),
            params: Vec::new(),
            tables: Vec::new(),
            skip: SkipRule::default(),
            multiplexed: Default::default(),
            alone: Default::default(),
        })
    }

    #[test]
    fn entries_are_found_until_the_engine_changes() {
        let (e1, e2) = (engine(), engine());
        let mut cache = CompiledCache::new(1 << 20);
        cache.insert(&e1, key(1), compiled(1));
        assert_eq!(cache.get(&e1, &key(1)).unwrap().sql, "select 1");
        assert!(cache.get(&e1, &key(2)).is_none());
        // Another engine (a reload): compiled under the old schema, so not handed out.
        assert!(cache.get(&e2, &key(1)).is_none());
        assert!(cache.get(&e1, &key(1)).is_none(), "emptied, not kept aside");
    }

    #[test]
    fn memory_stays_within_the_budget_and_used_entries_survive() {
        let e = engine();
        let budget = 20 * (ENTRY_OVERHEAD + 100);
        let mut cache = CompiledCache::new(budget);
        cache.insert(&e, key(0), compiled(0));
        for n in 1..1000 {
            cache.insert(&e, key(n), compiled(n));
            assert!(cache.bytes() <= budget, "{} > {budget}", cache.bytes());
            // Entry 0 is used all along: every turnover finds it young or old, and keeps it.
            assert!(cache.get(&e, &key(0)).is_some(), "lost at {n}");
        }
        assert!(cache.get(&e, &key(1)).is_none(), "an unused entry went");
        assert!(cache.get(&e, &key(999)).is_some());
        let mut off = CompiledCache::new(0);
        off.insert(&e, key(1), compiled(1));
        assert!(
            off.get(&e, &key(1)).is_none(),
            "a budget of 0 keeps nothing"
        );
    }
}
