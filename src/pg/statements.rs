//! The per-connection cache of prepared statements: SQL text to server-side name and
//! result columns.
//!
//! A statement is parsed and described once per connection and then only bound and
//! executed, which saves the server the parse and plan work of the hot refresh queries
//! and the wire a column description per execution. The cache is bounded; a statement
//! pushed out (or found stale) is queued for `Close`, which the next request sends after
//! its own statements (never before: one of them may still use it).

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// Column names of a statement's result, shared by every result of that statement.
pub(crate) type Columns = Rc<[String]>;

/// What a request must do for one statement.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Lookup {
    pub(crate) name: String,
    /// The statement is new: send `Parse` under `name` before binding it.
    pub(crate) parse: bool,
    /// Known result columns; `None` means send `Describe` for them (new statement, or one
    /// whose first description is still on its way).
    pub(crate) columns: Option<Columns>,
}

struct Entry {
    name: String,
    columns: Option<Columns>,
}

pub(crate) struct StatementCache {
    by_sql: HashMap<String, Entry>,
    /// SQL texts, oldest first: the eviction order.
    order: VecDeque<String>,
    /// Names to `Close` on the server: pushed by eviction and `retire`, drained by the next
    /// request, so it holds at most what one request's lookups pushed out.
    closing: Vec<String>,
    capacity: usize,
    next_id: u64,
}

impl StatementCache {
    pub(crate) fn new(capacity: usize) -> StatementCache {
        StatementCache {
            by_sql: HashMap::new(),
            order: VecDeque::new(),
            closing: Vec::new(),
            capacity: capacity.max(1),
            next_id: 0,
        }
    }

    /// The statement's name, registering it as new when it is not cached.
    pub(crate) fn lookup(&mut self, sql: &str) -> Lookup {
        if let Some(entry) = self.by_sql.get(sql) {
            return Lookup {
                name: entry.name.clone(),
                parse: false,
                columns: entry.columns.clone(),
            };
        }
        if self.by_sql.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
            && let Some(entry) = self.by_sql.remove(&oldest)
        {
            self.closing.push(entry.name);
        }
        let name = format!("postrust_{}", self.next_id);
        self.next_id += 1;
        self.by_sql.insert(
            sql.to_owned(),
            Entry {
                name: name.clone(),
                columns: None,
            },
        );
        self.order.push_back(sql.to_owned());
        Lookup {
            name,
            parse: true,
            columns: None,
        }
    }

    /// Records the columns `Describe` reported for statement `name` of `sql`, unless the
    /// entry was replaced meanwhile.
    pub(crate) fn described(&mut self, sql: &str, name: &str, columns: Columns) {
        if let Some(entry) = self.by_sql.get_mut(sql)
            && entry.name == name
        {
            entry.columns = Some(columns);
        }
    }

    /// Drops a statement whose `Parse` did not succeed or that the server no longer has,
    /// so the next use parses it again.
    pub(crate) fn forget(&mut self, sql: &str) {
        if self.by_sql.remove(sql).is_some() {
            self.order.retain(|s| s != sql);
        }
    }

    /// Drops a statement the server still has but can no longer run as prepared (its
    /// result type changed), closing it with the next request.
    pub(crate) fn retire(&mut self, sql: &str) {
        if let Some(entry) = self.by_sql.remove(sql) {
            self.order.retain(|s| s != sql);
            self.closing.push(entry.name);
        }
    }

    /// Names to close with the request being built.
    pub(crate) fn take_closing(&mut self) -> Vec<String> {
        std::mem::take(&mut self.closing)
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
    fn a_statement_is_parsed_and_described_once_then_reused() {
        let mut cache = StatementCache::new(8);
        let first = cache.lookup("SELECT 1");
        assert!(first.parse);
        assert_eq!(first.columns, None);
        let pending = cache.lookup("SELECT 1");
        assert_eq!((pending.parse, pending.columns), (false, None));
        let columns: Columns = vec!["a".to_owned()].into();
        cache.described("SELECT 1", &first.name, columns.clone());
        let again = cache.lookup("SELECT 1");
        assert_eq!(again.name, first.name);
        assert_eq!((again.parse, again.columns), (false, Some(columns)));
        assert_ne!(cache.lookup("SELECT 2").name, first.name);
    }

    #[test]
    fn the_oldest_statement_is_evicted_and_closed_when_full() {
        let mut cache = StatementCache::new(2);
        let a = cache.lookup("a");
        cache.lookup("b");
        assert!(cache.take_closing().is_empty());
        cache.lookup("c");
        assert_eq!(cache.take_closing(), [a.name]);
        assert!(cache.take_closing().is_empty(), "closed once");
        assert_eq!(cache.len(), 2);
        assert!(
            cache.lookup("a").parse,
            "an evicted statement is parsed again"
        );
    }

    #[test]
    fn forgotten_and_retired_statements_are_parsed_again() {
        let mut cache = StatementCache::new(2);
        let a = cache.lookup("a");
        cache.forget("a");
        let again = cache.lookup("a");
        assert!(again.parse);
        assert_ne!(again.name, a.name, "a name is never reused");
        assert!(
            cache.take_closing().is_empty(),
            "a failed Parse left nothing to close"
        );
        cache.retire("a");
        assert_eq!(cache.take_closing(), [again.name]);
        cache.lookup("b");
        assert!(cache.lookup("c").parse);
        assert!(
            cache.take_closing().is_empty(),
            "retired entries free their slot"
        );
    }

    #[test]
    fn a_stale_description_is_not_recorded() {
        let mut cache = StatementCache::new(2);
        let old = cache.lookup("a");
        cache.forget("a");
        let new = cache.lookup("a");
        cache.described("a", &old.name, vec!["x".to_owned()].into());
        assert_eq!(cache.lookup("a").columns, None);
        cache.described("a", &new.name, vec!["y".to_owned()].into());
        assert!(cache.lookup("a").columns.is_some());
    }
}
