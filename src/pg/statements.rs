//! The per-connection cache of prepared statements: SQL text to server-side name.
//!
//! A statement is parsed once per connection and then only bound and executed, which saves
//! the server the parse and plan work of the hot refresh queries. The cache is bounded; when
//! it is full the oldest statement is dropped and its name handed back so the caller closes
//! it on the server after its own request (never before: an earlier statement of the same
//! request may still use it).

use std::collections::{HashMap, VecDeque};

/// What a request must do for one statement.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Lookup {
    pub(crate) name: String,
    /// The statement is new: send `Parse` under `name` before binding it.
    pub(crate) parse: bool,
    /// A statement pushed out of the cache, to `Close` after this request.
    pub(crate) evicted: Option<String>,
}

pub(crate) struct StatementCache {
    by_sql: HashMap<String, String>,
    /// SQL texts, oldest first: the eviction order.
    order: VecDeque<String>,
    capacity: usize,
    next_id: u64,
}

impl StatementCache {
    pub(crate) fn new(capacity: usize) -> StatementCache {
        StatementCache {
            by_sql: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            next_id: 0,
        }
    }

    /// The statement's name, registering it as new when it is not cached.
    pub(crate) fn lookup(&mut self, sql: &str) -> Lookup {
        if let Some(name) = self.by_sql.get(sql) {
            return Lookup {
                name: name.clone(),
                parse: false,
                evicted: None,
            };
        }
        let evicted = if self.by_sql.len() >= self.capacity {
            self.order
                .pop_front()
                .and_then(|oldest| self.by_sql.remove(&oldest))
        } else {
            None
        };
        let name = format!("postrust_{}", self.next_id);
        self.next_id += 1;
        self.by_sql.insert(sql.to_owned(), name.clone());
        self.order.push_back(sql.to_owned());
        Lookup {
            name,
            parse: true,
            evicted,
        }
    }

    /// Drops a statement whose `Parse` did not succeed (or that the server no longer has),
    /// so the next use parses it again.
    pub(crate) fn forget(&mut self, sql: &str) {
        if self.by_sql.remove(sql).is_some() {
            self.order.retain(|s| s != sql);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_sql.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_is_parsed_once_then_reused() {
        let mut cache = StatementCache::new(8);
        let first = cache.lookup("SELECT 1");
        assert!(first.parse);
        let again = cache.lookup("SELECT 1");
        assert_eq!(again.name, first.name);
        assert!(!again.parse);
        assert_ne!(cache.lookup("SELECT 2").name, first.name);
    }

    #[test]
    fn the_oldest_statement_is_evicted_when_full() {
        let mut cache = StatementCache::new(2);
        let a = cache.lookup("a");
        cache.lookup("b");
        let c = cache.lookup("c");
        assert_eq!(c.evicted, Some(a.name));
        assert_eq!(cache.len(), 2);
        assert!(
            cache.lookup("a").parse,
            "an evicted statement is parsed again"
        );
    }

    #[test]
    fn a_forgotten_statement_is_parsed_again_and_frees_its_slot() {
        let mut cache = StatementCache::new(2);
        let a = cache.lookup("a");
        cache.forget("a");
        let again = cache.lookup("a");
        assert!(again.parse);
        assert_ne!(again.name, a.name, "a name is never reused");
        cache.lookup("b");
        assert_eq!(cache.lookup("c").evicted, Some(again.name));
    }
}
