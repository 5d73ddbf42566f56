//! Tests a changed row (as `row_to_json` renders it in a change notification) against a
//! [`Filter`] without asking PostgreSQL, so live queries can skip refreshes a change provably
//! cannot affect.
//!
//! The answer is conservative: `Some(true)` or `Some(false)` only where the result is certain
//! under PostgreSQL's semantics (three-valued logic included), `None` otherwise. Comparisons
//! that depend on collation, locale, time zones or numeric scale are never guessed: only
//! integers, booleans, enum labels, and text equality and `LIKE` under a deterministic
//! collation (where equal means equal bytes) are decided.

use simd_json::OwnedValue;
use simd_json::prelude::*;

use super::filter::{Filter, Op};
use crate::catalog::{Relation, TypeKind};

/// The values a condition may take under SQL's three-valued logic, as a set: a decided
/// condition has one, an undecided one all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Truths(u8);

impl Truths {
    const TRUE: Truths = Truths(1);
    const FALSE: Truths = Truths(2);
    const NULL: Truths = Truths(4);
    const ANY: Truths = Truths(7);

    fn from_bool(b: bool) -> Truths {
        if b { Truths::TRUE } else { Truths::FALSE }
    }

    fn has(self, t: Truths) -> bool {
        self.0 & t.0 != 0
    }

    fn each(self) -> impl Iterator<Item = Truths> {
        [Truths::TRUE, Truths::FALSE, Truths::NULL]
            .into_iter()
            .filter(move |t| self.has(*t))
    }

    /// Applies a binary connective to every pair of possible values.
    fn combine(self, other: Truths, op: fn(Truths, Truths) -> Truths) -> Truths {
        let mut out = Truths(0);
        for a in self.each() {
            for b in other.each() {
                out.0 |= op(a, b).0;
            }
        }
        out
    }
}

fn and(a: Truths, b: Truths) -> Truths {
    if a == Truths::FALSE || b == Truths::FALSE {
        Truths::FALSE
    } else if a == Truths::NULL || b == Truths::NULL {
        Truths::NULL
    } else {
        Truths::TRUE
    }
}

fn or(a: Truths, b: Truths) -> Truths {
    if a == Truths::TRUE || b == Truths::TRUE {
        Truths::TRUE
    } else if a == Truths::NULL || b == Truths::NULL {
        Truths::NULL
    } else {
        Truths::FALSE
    }
}

fn not(a: Truths) -> Truths {
    let mut out = Truths(0);
    for t in a.each() {
        out.0 |= match t {
            Truths::TRUE => Truths::FALSE.0,
            Truths::FALSE => Truths::TRUE.0,
            _ => Truths::NULL.0,
        };
    }
    out
}

/// How a column's values compare, as far as this module decides them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Integer,
    Text,
    Boolean,
    Enum,
}

fn family(relation: &Relation, column: &str) -> Option<Family> {
    let column = relation.column(column)?;
    let ty = &column.ty;
    if ty.array {
        return None;
    }
    match (ty.kind, ty.schema.as_str(), ty.name.as_str()) {
        (TypeKind::Enum, _, _) => Some(Family::Enum),
        (_, "pg_catalog", "int2" | "int4" | "int8") => Some(Family::Integer),
        // Under a case- or accent-insensitive collation, 'Rust' = 'rust': bytes say
        // nothing.
        (_, "pg_catalog", "text" | "varchar") if column.deterministic => Some(Family::Text),
        (_, "pg_catalog", "bool") => Some(Family::Boolean),
        _ => None,
    }
}

/// One element of a `LIKE` pattern between two `%`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LikeChar {
    /// `_`: any one character.
    One,
    Literal(char),
}

fn like_fits(text: &[char], segment: &[LikeChar]) -> bool {
    text.len() == segment.len()
        && text.iter().zip(segment).all(|(c, p)| match p {
            LikeChar::One => true,
            LikeChar::Literal(l) => c == l,
        })
}

/// `text LIKE pattern`, with `%`, `_` and the default escape `\`; `None` for a pattern
/// PostgreSQL refuses (one ending in the escape character).
///
/// The pattern is cut at its `%`s into segments of fixed length. The first segment must
/// match at the start, the last at the end, and each one between at its leftmost place
/// after the previous: a leftmost match never rules out a later segment that a further
/// right one would allow. So no choice is ever revisited, and the work is at most
/// `text × pattern` characters, whatever the number of `%` (a backtracking matcher is
/// exponential in it).
fn like(text: &[char], pattern: &[char]) -> Option<bool> {
    let mut segments: Vec<Vec<LikeChar>> = vec![Vec::new()];
    let mut chars = pattern.iter();
    while let Some(&c) = chars.next() {
        let item = match c {
            '%' => {
                segments.push(Vec::new());
                continue;
            }
            '_' => LikeChar::One,
            '\\' => LikeChar::Literal(*chars.next()?),
            c => LikeChar::Literal(c),
        };
        segments.last_mut().expect("starts with one").push(item);
    }
    let (first, rest) = segments.split_first().expect("starts with one");
    let Some((last, middle)) = rest.split_last() else {
        return Some(like_fits(text, first));
    };
    if text.len() < first.len() + last.len()
        || !like_fits(&text[..first.len()], first)
        || !like_fits(&text[text.len() - last.len()..], last)
    {
        return Some(false);
    }
    let mut window = &text[first.len()..text.len() - last.len()];
    for segment in middle {
        if segment.is_empty() {
            continue;
        }
        let Some(at) = window
            .windows(segment.len())
            .position(|w| like_fits(w, segment))
        else {
            return Some(false);
        };
        window = &window[at + segment.len()..];
    }
    Some(true)
}

/// `column op value` for a non-null column value.
fn compare(family: Family, op: Op, row: &OwnedValue, value: &str) -> Option<bool> {
    use std::cmp::Ordering;
    let ordering: Option<Ordering> = match family {
        Family::Integer => Some(row.as_i64()?.cmp(&value.parse::<i64>().ok()?)),
        Family::Boolean => {
            let v = match value {
                "true" => true,
                "false" => false,
                _ => return None,
            };
            Some(row.as_bool()?.cmp(&v))
        }
        // Equality of text and enum labels does not depend on collation (for the default,
        // deterministic collations); their order does, so only equality is decided.
        Family::Text | Family::Enum => {
            let s = row.as_str()?;
            return match op {
                Op::Eq => Some(s == value),
                Op::Neq => Some(s != value),
                Op::Like if family == Family::Text => {
                    let t: Vec<char> = s.chars().collect();
                    let p: Vec<char> = value.chars().collect();
                    like(&t, &p)
                }
                // LIKE with a literal prefix or suffix: characters compared as they are,
                // as under the deterministic collations this is decided for.
                Op::StartsWith if family == Family::Text => Some(s.starts_with(value)),
                Op::EndsWith if family == Family::Text => Some(s.ends_with(value)),
                _ => None,
            };
        }
    };
    let o = ordering?;
    Some(match op {
        Op::Eq => o.is_eq(),
        Op::Neq => o.is_ne(),
        Op::Gt => o.is_gt(),
        Op::Gte => o.is_ge(),
        Op::Lt => o.is_lt(),
        Op::Lte => o.is_le(),
        // Not decided in process: the change refreshes.
        Op::Like
        | Op::Ilike
        | Op::StartsWith
        | Op::EndsWith
        | Op::Contains
        | Op::HasKey
        | Op::Matches
        | Op::IMatches
        | Op::At => return None,
    })
}

/// Recurses once per level of the filter, a tree compiled from the client's document or
/// variables: its depth is bounded by `POSTRUST_MAX_INPUT_DEPTH`, checked before parsing.
fn truth(filter: &Filter, relation: &Relation, row: &OwnedValue) -> Truths {
    // A column missing from the payload (a notification cut down to the key) is unknown.
    let value = |column: &str| row.get(column);
    match filter {
        Filter::All(items) => items.iter().fold(Truths::TRUE, |acc, f| {
            acc.combine(truth(f, relation, row), and)
        }),
        Filter::Any(items) => items.iter().fold(Truths::FALSE, |acc, f| {
            acc.combine(truth(f, relation, row), or)
        }),
        Filter::Not(inner) => not(truth(inner, relation, row)),
        Filter::IsNull { column, is_null } => match value(column) {
            Some(v) => Truths::from_bool(v.is_null() == *is_null),
            None => Truths::ANY,
        },
        Filter::Compare {
            column,
            op,
            value: operand,
        } => match (value(column), family(relation, column)) {
            (Some(v), _) if v.is_null() => Truths::NULL,
            (Some(v), Some(fam)) => {
                compare(fam, *op, v, operand).map_or(Truths::ANY, Truths::from_bool)
            }
            _ => Truths::ANY,
        },
        // Other rows decide it, which the change does not show.
        Filter::Related { .. } => Truths::ANY,
        // Arrays are never decided here.
        Filter::Elements { .. } => Truths::ANY,
        Filter::In {
            column,
            values,
            negated,
        } => match (value(column), family(relation, column)) {
            // NULL = ANY('{}') is false and NULL <> ALL('{}') true; with elements, NULL.
            (Some(v), _) if v.is_null() => match (values.is_empty(), negated) {
                (true, false) => Truths::FALSE,
                (true, true) => Truths::TRUE,
                _ => Truths::NULL,
            },
            (Some(v), Some(fam)) => {
                let mut found = Some(false);
                for operand in values {
                    found = match (found, compare(fam, Op::Eq, v, operand)) {
                        (Some(f), Some(eq)) => Some(f || eq),
                        _ => None,
                    };
                }
                found.map_or(Truths::ANY, |f| Truths::from_bool(f != *negated))
            }
            _ => Truths::ANY,
        },
    }
}

/// A column value as far as equality goes, for the families whose equality this module
/// decides: two values with equal keys are equal in PostgreSQL, two with different keys
/// are not (`compare` with `Op::Eq` says exactly this, no more).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EqKey {
    Integer(i64),
    Boolean(bool),
    /// Text under a deterministic collation, or an enum label.
    Text(Box<str>),
}

impl EqKey {
    /// The key of a filter operand in PostgreSQL's text form; `None` where `compare` would
    /// not decide equality with it.
    fn of_operand(family: Family, value: &str) -> Option<EqKey> {
        Some(match family {
            Family::Integer => EqKey::Integer(value.parse().ok()?),
            Family::Boolean => match value {
                "true" => EqKey::Boolean(true),
                "false" => EqKey::Boolean(false),
                _ => return None,
            },
            Family::Text | Family::Enum => EqKey::Text(value.into()),
        })
    }
}

/// What a changed row holds in a column, as far as equality goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowKey {
    /// SQL NULL: equal to nothing, so a required equality is never true.
    Null,
    Key(EqKey),
    /// Missing from the payload, or a value `compare` would not decide.
    Unknown,
}

/// A condition every row a filter selects meets: its `column` holds one of `values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Required {
    pub column: String,
    /// How the column's values compare (from the relation the filter was compiled on).
    pub family: Family,
    pub values: Vec<EqKey>,
}

/// `row`'s value in `column`, of `family`, as an equality key: read exactly as `compare`
/// reads it.
pub fn row_key(family: Family, column: &str, row: &OwnedValue) -> RowKey {
    let Some(v) = row.get(column) else {
        return RowKey::Unknown;
    };
    if v.is_null() {
        return RowKey::Null;
    }
    let key = match family {
        Family::Integer => v.as_i64().map(EqKey::Integer),
        Family::Boolean => v.as_bool().map(EqKey::Boolean),
        Family::Text | Family::Enum => v.as_str().map(|s| EqKey::Text(s.into())),
    };
    key.map_or(RowKey::Unknown, RowKey::Key)
}

/// Why `Required` holds: it is one of the filter's conjuncts (`column = v` or
/// `column IN (v…)`, at the top or inside top-level `and`s), whose every operand has a key.
/// For a row whose `row_key` is `Null`, or a key outside `values`, that conjunct is NULL or
/// false (`compare` decides each equality false), so the conjunction is not true:
/// `Filter::matches` answers `Some(false)` whatever the other conjuncts say.
fn required(filter: &Filter, relation: &Relation, best: &mut Option<Required>) {
    let found = match filter {
        // Recurses once per level of `and`: bounded like `truth`.
        Filter::All(items) => {
            for item in items {
                required(item, relation, best);
            }
            return;
        }
        Filter::Compare {
            column,
            op: Op::Eq,
            value,
        } => (column, std::slice::from_ref(value)),
        Filter::In {
            column,
            values,
            negated: false,
        } => (column, values.as_slice()),
        _ => return,
    };
    let (column, operands) = found;
    let Some(family) = family(relation, column) else {
        return;
    };
    // `IN ()` selects nothing, but a live query filed under no value could not be found
    // even by a change that must mark every reader: leave it to the plain test.
    if operands.is_empty() {
        return;
    }
    let Some(mut values) = operands
        .iter()
        .map(|v| EqKey::of_operand(family, v))
        .collect::<Option<Vec<EqKey>>>()
    else {
        return;
    };
    // The fewest values make the narrowest entry.
    if best.as_ref().is_none_or(|b| values.len() < b.values.len()) {
        values.sort_unstable();
        values.dedup();
        *best = Some(Required {
            column: column.clone(),
            family,
            values,
        });
    }
}

impl Filter {
    /// A column-equality condition every selected row meets, if the filter has one whose
    /// equality this module decides (the one with the fewest values): a row whose value in
    /// that column is `Null` or a key outside its values is surely not selected.
    pub fn required(&self, relation: &Relation) -> Option<Required> {
        let mut best = None;
        required(self, relation, &mut best);
        best
    }

    /// Whether `row` (a JSON object keyed by column name) is selected by this filter on
    /// `relation`: `None` when that cannot be decided here.
    pub fn matches(&self, relation: &Relation, row: &OwnedValue) -> Option<bool> {
        let t = truth(self, relation, row);
        if t == Truths::TRUE {
            Some(true)
        } else if !t.has(Truths::TRUE) {
            Some(false)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn orders() -> Relation {
        let c = Catalog::from_json(include_str!("../../tests/fixtures/demo-catalog.json")).unwrap();
        c.relations
            .into_iter()
            .find(|r| r.name.name == "orders")
            .unwrap()
    }

    /// `LIKE` as the definition reads, trying every split at every `%`: exponential, for
    /// checking the matcher on small inputs only.
    fn reference_like(text: &[char], pattern: &[char]) -> Option<bool> {
        match pattern.split_first() {
            None => Some(text.is_empty()),
            Some(('%', rest)) => {
                let mut any = false;
                for i in 0..=text.len() {
                    any |= reference_like(&text[i..], rest)?;
                }
                Some(any)
            }
            Some(('_', rest)) => Some(!text.is_empty() && reference_like(&text[1..], rest)?),
            Some(('\\', [])) => None,
            Some(('\\', rest)) => {
                let fits = text.first() == rest.first();
                Some(fits && reference_like(&text[1..], &rest[1..])?)
            }
            Some((c, rest)) => {
                let fits = text.first() == Some(c);
                Some(fits && reference_like(&text[1..], rest)?)
            }
        }
    }

    /// Every string of `alphabet` up to `max` characters.
    fn strings(alphabet: &[char], max: usize) -> Vec<Vec<char>> {
        let mut all = vec![Vec::new()];
        let mut last = vec![Vec::new()];
        for _ in 0..max {
            last = last
                .iter()
                .flat_map(|s: &Vec<char>| {
                    alphabet.iter().map(move |c| {
                        let mut t = s.clone();
                        t.push(*c);
                        t
                    })
                })
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn like_agrees_with_the_definition_on_every_small_input() {
        let texts = strings(&['a', 'b', '%', '\\'], 5);
        for pattern in strings(&['a', 'b', '%', '_', '\\'], 5) {
            // PostgreSQL may answer before it reaches a trailing escape; undecided is safe.
            let escapes_at_end = pattern
                .rsplit(|c| *c != '\\')
                .next()
                .map_or(0, <[char]>::len);
            let trailing_escape = escapes_at_end % 2 == 1;
            for text in &texts {
                let expected = if trailing_escape {
                    None
                } else {
                    reference_like(text, &pattern)
                };
                assert_eq!(
                    like(text, &pattern),
                    expected,
                    "{:?} LIKE {:?}",
                    text.iter().collect::<String>(),
                    pattern.iter().collect::<String>()
                );
            }
        }
    }

    #[test]
    fn like_with_many_percent_signs_is_decided_without_backtracking() {
        // A backtracking matcher tries every split of the text among the `%`s: with 24 of
        // them and a text that almost matches, longer than the universe's age.
        let text: Vec<char> = "a".repeat(200).chars().collect();
        let pattern: Vec<char> = format!("{}b", "%a".repeat(24)).chars().collect();
        assert_eq!(like(&text, &pattern), Some(false));
        let pattern: Vec<char> = format!("{}%", "%a".repeat(24)).chars().collect();
        assert_eq!(like(&text, &pattern), Some(true));
    }

    fn row(json: &str) -> OwnedValue {
        let mut bytes = json.as_bytes().to_vec();
        simd_json::to_owned_value(&mut bytes).unwrap()
    }

    fn cmp(column: &str, op: Op, value: &str) -> Filter {
        Filter::Compare {
            column: column.into(),
            op,
            value: value.into(),
        }
    }

    #[test]
    fn decides_what_is_certain() {
        let rel = orders();
        let r = row(
            r#"{"id": 3, "status": "pending", "note": null, "priority": "low",
                        "total": 19.98, "customer_id": 2}"#,
        );
        let check = |f: Filter| f.matches(&rel, &r);
        assert_eq!(check(cmp("status", Op::Eq, "pending")), Some(true));
        assert_eq!(check(cmp("status", Op::Neq, "pending")), Some(false));
        assert_eq!(check(cmp("id", Op::Gt, "2")), Some(true));
        assert_eq!(check(cmp("id", Op::Lte, "2")), Some(false));
        assert_eq!(check(cmp("status", Op::Like, "p%d_ng")), Some(true));
        assert_eq!(check(cmp("status", Op::Like, "P%")), Some(false));
        assert_eq!(check(cmp("priority", Op::Eq, "low")), Some(true));
        // Numeric scale, text order and ILIKE are left to PostgreSQL.
        assert_eq!(check(cmp("total", Op::Eq, "19.98")), None);
        assert_eq!(check(cmp("status", Op::Gt, "a")), None);
        assert_eq!(check(cmp("status", Op::Ilike, "PENDING")), None);
        // A column missing from the payload is unknown.
        assert_eq!(check(cmp("updated_at", Op::Eq, "x")), None);
        let is_in = |values: &[&str], negated| Filter::In {
            column: "customer_id".into(),
            values: values.iter().map(|v| v.to_string()).collect(),
            negated,
        };
        assert_eq!(check(is_in(&["1", "2"], false)), Some(true));
        assert_eq!(check(is_in(&["1", "2"], true)), Some(false));
        assert_eq!(check(is_in(&[], false)), Some(false));
    }

    #[test]
    fn nulls_follow_three_valued_logic() {
        let rel = orders();
        let r = row(r#"{"id": 1, "note": null, "status": "paid"}"#);
        let check = |f: Filter| f.matches(&rel, &r);
        let note_eq = || cmp("note", Op::Eq, "x");
        assert_eq!(check(note_eq()), Some(false));
        // NOT (NULL) is NULL: the row is still excluded.
        assert_eq!(check(Filter::Not(Box::new(note_eq()))), Some(false));
        assert_eq!(
            check(Filter::Any(vec![note_eq(), cmp("id", Op::Eq, "1")])),
            Some(true)
        );
        assert_eq!(
            check(Filter::All(vec![note_eq(), cmp("total", Op::Eq, "1")])),
            Some(false),
            "NULL AND anything is never true"
        );
        // ... but under NOT it may be: NOT (NULL AND false) is true.
        assert_eq!(
            check(Filter::Not(Box::new(Filter::All(vec![
                note_eq(),
                cmp("total", Op::Eq, "1")
            ])))),
            None
        );
        assert_eq!(
            check(Filter::IsNull {
                column: "note".into(),
                is_null: true
            }),
            Some(true)
        );
        // Unknown beats NULL in OR: `NULL OR unknown` may be true.
        assert_eq!(
            check(Filter::Any(vec![note_eq(), cmp("total", Op::Gt, "1")])),
            None
        );
    }
}
