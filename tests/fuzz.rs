//! Fuzzing on the stable toolchain: every parser and state machine that client (or
//! database) bytes reach, fed mutations of a committed corpus for a bounded time.
//!
//! cargo-fuzz needs a nightly compiler, which these machines cannot fetch, so this is a
//! mutational harness of our own: each target first replays every file of
//! `tests/fuzz/corpus/<target>/` (crashes and hangs found earlier are kept there as
//! regression inputs), then runs mutations of them (bit flips, byte edits, spliced corpus
//! entries, dictionary tokens, and runs of one token repeated hundreds of times, which is
//! how nesting bombs are made) until its time is up. Each target checks a property beyond
//! "does not panic": the HTTP head parser agrees with itself on the head it found, the
//! WebSocket decoder gives the same events however the bytes are split into reads, and the
//! in-process filter evaluator never contradicts a plain reference evaluator.
//!
//! `POSTRUST_FUZZ_SECONDS` sets each target's time (default 2, what CI runs);
//! `POSTRUST_FUZZ_SEED` replays a run (its seed is printed at the start). An input that
//! takes longer than `HANG` aborts the run and prints the input, as libFuzzer's `-timeout`
//! does.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postrust::catalog::{Catalog, Relation};
use postrust::config::Config;
use postrust::engine::Engine;
use postrust::protocol::{Action, Session};
use postrust::sql::{Filter, Op};
use postrust::websocket::{Decoded, Decoder, Event, SubProtocol};
use simd_json::OwnedValue;

/// Each target's time: `POSTRUST_FUZZ_SECONDS`, 2 by default (what CI runs).
fn seconds() -> u64 {
    std::env::var("POSTRUST_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2)
}

/// JSON's punctuation, for the targets that read JSON.
const JSON_TOKENS: &[&[u8]] = &[b"{", b"}", b"[", b"]", b"\"", b":", b",", b"null"];

/// One input taking this long is reported as a hang.
const HANG: Duration = Duration::from_secs(10);

struct Rng(u64);

impl Rng {
    fn new(target: &str) -> Rng {
        let seed = std::env::var("POSTRUST_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("fuzz {target}: POSTRUST_FUZZ_SEED={seed}");
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus for {target}");
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// One to four stacked mutations of `input`.
fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>], dictionary: &[&[u8]]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(8) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.next() as u8;
            }
            2 => out.insert(at, rng.next() as u8),
            3 if !out.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            4 => {
                let token = *rng.pick(dictionary);
                out.splice(at..at, token.iter().copied());
            }
            5 => {
                // A run of one token: nesting and repetition bombs.
                let token = *rng.pick(dictionary);
                let times = 1 + rng.below(2000);
                let run: Vec<u8> = token.repeat(times);
                out.splice(at..at, run);
            }
            6 => {
                let other = rng.pick(corpus);
                let from = rng.below(other.len() + 1);
                let to = from + rng.below(other.len() - from + 1);
                out.splice(at..at, other[from..to].iter().copied());
            }
            _ if !out.is_empty() => {
                let from = rng.below(out.len());
                let to = (from + 1 + rng.below(32)).min(out.len());
                let copy = out[from..to].to_vec();
                out.splice(at..at, copy);
            }
            _ => {}
        }
    }
    out
}

/// The input being run, for the watchdog and for the report of a failure.
struct Current {
    started: Instant,
    input: Vec<u8>,
}

fn show(input: &[u8]) -> String {
    let text = String::from_utf8_lossy(input);
    if text.len() > 2000 {
        format!(
            "{}… ({} bytes)",
            &text[..text.floor_char_boundary(2000)],
            input.len()
        )
    } else {
        format!("{text:?}")
    }
}

/// Replays the corpus of `target`, then runs mutations of it for the time budget.
fn fuzz(target: &str, dictionary: &[&[u8]], mut check: impl FnMut(&[u8])) {
    let seconds = seconds();
    let corpus = corpus(target);
    let mut rng = Rng::new(target);
    let current = Arc::new(Mutex::new(None::<Current>));
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (current, done, target) = (Arc::clone(&current), Arc::clone(&done), target.to_owned());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if let Some(c) = &*current.lock().unwrap()
                    && c.started.elapsed() > HANG
                {
                    eprintln!("fuzz {target}: hang over {HANG:?} on {}", show(&c.input));
                    std::process::abort();
                }
            }
        })
    };
    let mut run = |input: &[u8]| {
        *current.lock().unwrap() = Some(Current {
            started: Instant::now(),
            input: input.to_vec(),
        });
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(input))) {
            eprintln!("fuzz {target}: failed on {}", show(input));
            std::panic::resume_unwind(panic);
        }
    };
    for input in &corpus {
        run(input);
    }
    let started = Instant::now();
    let mut runs = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let base = rng.pick(&corpus).clone();
        let input = mutate(&mut rng, &base, &corpus, dictionary);
        run(&input);
        runs += 1;
    }
    done.store(true, Ordering::Relaxed);
    watchdog.join().unwrap();
    eprintln!(
        "fuzz {target}: {} corpus inputs, then {runs} mutations in {:.1} s",
        corpus.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn fuzz_http_head() {
    let dictionary: &[&[u8]] = &[
        b"\r\n",
        b": ",
        b"Content-Length: ",
        b"Transfer-Encoding: chunked",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Protocol: ",
        b",",
        b"%",
        b" ",
        b"\t",
        b"\0",
    ];
    fuzz("http", dictionary, |input| {
        if let Ok(Some((head, len))) = postrust::http::parse_head(input, 8192) {
            assert!(len <= input.len());
            // The head ends where the parser said: the same bytes alone parse the same.
            let again = postrust::http::parse_head(&input[..len], 8192);
            match again {
                Ok(Some((h, l))) => {
                    assert_eq!(l, len);
                    assert_eq!(h.path, head.path);
                    assert_eq!(h.content_length, head.content_length);
                }
                other => panic!("the head alone parsed as {other:?}"),
            }
        }
    });
}

/// Every event the decoder gives for `bytes` read in `chunks`, up to the first error.
fn decode_all(bytes: &[u8], chunks: &[usize]) -> Vec<String> {
    let mut decoder = Decoder::new(1024);
    let mut buf = Vec::new();
    let mut events = Vec::new();
    let mut fed = 0;
    let mut cuts = chunks.iter();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Decoded::Frame { consumed, event }) => {
                events.push(match event {
                    Event::Text(mut p) => format!("text {:?}", p.as_mut_slice()),
                    other => format!("{other:?}"),
                });
                buf.drain(..consumed);
            }
            Ok(Decoded::Incomplete) if fed < bytes.len() => {
                let n = cuts.next().copied().unwrap_or(bytes.len()).max(1);
                let end = (fed + n).min(bytes.len());
                buf.extend_from_slice(&bytes[fed..end]);
                fed = end;
            }
            Ok(Decoded::Incomplete) => return events,
            Err(e) => {
                events.push(format!("error {e:?}"));
                return events;
            }
        }
    }
}

#[test]
fn fuzz_websocket_decoder() {
    let dictionary: &[&[u8]] = &[
        b"\x81\x85",
        b"\x01\x80",
        b"\x80\x82",
        b"\x89\x80",
        b"\x88\x82\x00\x00\x00\x00\x03\xe8",
        b"\xfe\x01\x00",
        b"\xff\x00\x00\x00\x00\x00\x00\x10\x00",
        b"\x01\x02\x03\x04",
    ];
    let mut rng = Rng::new("websocket-splits");
    fuzz("websocket", dictionary, |input| {
        let whole = decode_all(input, &[input.len()]);
        let chunks: Vec<usize> = (0..input.len()).map(|_| 1 + rng.below(9)).collect();
        assert_eq!(decode_all(input, &chunks), whole, "split into {chunks:?}");
    });
}

#[test]
fn fuzz_protocol_sessions() {
    let extra: &[&[u8]] = &[
        b"\0",
        b"\"type\"",
        b"\"id\"",
        b"\"payload\"",
        b"\"subscribe\"",
        b"\"start\"",
        b"\"complete\"",
        b"\"stop\"",
        b"\"connection_init\"",
        b"\\u0000",
    ];
    fuzz("protocol", &[JSON_TOKENS, extra].concat(), |input| {
        for protocol in [SubProtocol::TransportWs, SubProtocol::Legacy] {
            let mut session = Session::new(protocol);
            let mut out = Vec::new();
            for message in input.split(|b| *b == 0) {
                let mut text = message.to_vec();
                session.on_message(&mut text, 64, &mut out);
                if out.iter().any(|a| matches!(a, Action::Init { .. })) {
                    session.accept_init(&mut out);
                }
                if out.iter().any(|a| matches!(a, Action::Close(..))) {
                    break;
                }
                out.clear();
            }
        }
    });
}

fn engine() -> Engine {
    let json = include_str!("fixtures/demo-catalog.json");
    let config = Config::from_lookup(|_| None).unwrap();
    Engine::new(Catalog::from_json(json).unwrap(), &config)
}

#[test]
fn fuzz_graphql_prepare() {
    let engine = engine();
    let dictionary: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"(",
        b")",
        b"]",
        b"...",
        b"fragment F on Users ",
        b"...F ",
        b"{not: ",
        b"filter: ",
        b"@include(if: true) ",
        b"@skip(if: $v) ",
        b"$v",
        b"\"",
        b"\"\"\"",
        b"#",
        b"query ($v: Boolean) ",
        b"subscription ",
        b"__typename ",
        b"\\u",
        b"like: \"%",
        b"in: [",
        b"and: [{",
        b"orders ",
        b"customer ",
        b"\0",
    ];
    fuzz("graphql", dictionary, |input| {
        let (query, variables) = match input.iter().position(|b| *b == 0) {
            Some(i) => (&input[..i], Some(&input[i + 1..])),
            None => (input, None),
        };
        let query = String::from_utf8_lossy(query);
        // The protocol layer bounds a variables object's nesting before parsing it.
        let variables: Option<OwnedValue> = variables
            .filter(|v| postrust::nesting::check_json(v, 64).is_ok())
            .and_then(|v| simd_json::to_owned_value(&mut v.to_vec()).ok());
        if let Err(errors) = engine.prepare(&query, variables.as_ref(), None) {
            assert!(!errors.is_empty());
            assert!(errors.len() <= 101, "{} errors", errors.len());
        }
    });
}

#[test]
fn fuzz_change_payload() {
    let extra: &[&[u8]] = &[
        b"\"data\"",
        b"\"old\"",
        b"\"table\"",
        b"\"schema\"",
        b"\"operation\"",
        b"\"UPDATE\"",
        b"\"DELETE\"",
        b"1e999",
    ];
    fuzz("change", &[JSON_TOKENS, extra].concat(), |input| {
        let _ = postrust::change::decode(&mut input.to_vec());
        let _ = postrust::change::classify(&mut input.to_vec());
    });
}

/// SQL's three-valued logic: `None` is NULL.
type Truth = Option<bool>;

fn sql_like(text: &[char], pattern: &[char], fold: bool) -> bool {
    let same = |a: char, b: char| {
        if fold {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('%', rest)) => (0..=text.len()).any(|i| sql_like(&text[i..], rest, fold)),
        Some(('_', rest)) => !text.is_empty() && sql_like(&text[1..], rest, fold),
        Some(('\\', [c, rest @ ..])) => {
            text.first().is_some_and(|t| same(*t, *c)) && sql_like(&text[1..], rest, fold)
        }
        Some((c, rest)) => {
            text.first().is_some_and(|t| same(*t, *c)) && sql_like(&text[1..], rest, fold)
        }
    }
}

fn and3(a: Truth, b: Truth) -> Truth {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (None, _) | (_, None) => None,
        _ => Some(true),
    }
}

fn or3(a: Truth, b: Truth) -> Truth {
    match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (None, _) | (_, None) => None,
        _ => Some(false),
    }
}

/// What PostgreSQL computes for `filter` on `row` (C collation, every column present), as
/// plainly as it can be written.
fn reference(filter: &Filter, row: &serde_json::Value) -> Truth {
    match filter {
        Filter::All(items) => {
            let mut all = Some(true);
            for f in items {
                all = and3(all, reference(f, row));
            }
            all
        }
        Filter::Any(items) => {
            let mut any = Some(false);
            for f in items {
                any = or3(any, reference(f, row));
            }
            any
        }
        Filter::Not(inner) => reference(inner, row).map(|b| !b),
        Filter::Related { .. } | Filter::Elements { .. } => {
            unreachable!("the target builds no related-row or array condition")
        }
        Filter::IsNull { column, is_null } => Some(row[column].is_null() == *is_null),
        Filter::Compare { column, op, value } => compare(&row[column], *op, value),
        Filter::In {
            column,
            values,
            negated,
        } => {
            let v = &row[column];
            if v.is_null() {
                return if values.is_empty() {
                    Some(*negated)
                } else {
                    None
                };
            }
            let mut found = Some(false);
            for operand in values {
                found = or3(found, compare(v, Op::Eq, operand));
            }
            found.map(|f| f != *negated)
        }
    }
}

fn compare(v: &serde_json::Value, op: Op, operand: &str) -> Truth {
    use std::cmp::Ordering;
    if v.is_null() {
        return None;
    }
    let ordering: Ordering = match v {
        serde_json::Value::Number(n) if n.is_i64() => n.as_i64()?.cmp(&operand.parse().ok()?),
        serde_json::Value::Number(n) => n.as_f64()?.partial_cmp(&operand.parse().ok()?)?,
        serde_json::Value::Bool(b) => b.cmp(&operand.parse().ok()?),
        serde_json::Value::String(s) => {
            let (t, p): (Vec<char>, Vec<char>) = (s.chars().collect(), operand.chars().collect());
            match op {
                Op::Like => return Some(sql_like(&t, &p, false)),
                Op::Ilike => return Some(sql_like(&t, &p, true)),
                _ => s.as_str().cmp(operand),
            }
        }
        _ => return None,
    };
    Some(match op {
        Op::Eq => ordering.is_eq(),
        Op::Neq => ordering.is_ne(),
        Op::Gt => ordering.is_gt(),
        Op::Gte => ordering.is_ge(),
        Op::Lt => ordering.is_lt(),
        Op::Lte => ordering.is_le(),
        _ => return None,
    })
}

/// A random filter over `orders`, at most `depth` levels of connectives deep.
fn random_filter(rng: &mut Rng, depth: usize) -> Filter {
    let texts = [
        "", "a", "b", "ab", "a%", "%b", "_", "a_b", "%a%", "\\%", "a\\_", "%%",
    ];
    let ints = ["-1", "0", "1", "2", "x"];
    match rng.below(if depth == 0 { 3 } else { 6 }) {
        0 => {
            let (column, values): (&str, &[&str]) = match rng.below(4) {
                0 => ("id", &ints),
                1 => ("status", &texts),
                2 => ("note", &texts),
                _ => ("total", &["0.5", "1", "2.25"]),
            };
            let op = *rng.pick(&[
                Op::Eq,
                Op::Neq,
                Op::Gt,
                Op::Gte,
                Op::Lt,
                Op::Lte,
                Op::Like,
                Op::Ilike,
            ]);
            let op = if column == "id" || column == "total" {
                if matches!(op, Op::Like | Op::Ilike) {
                    Op::Eq
                } else {
                    op
                }
            } else {
                op
            };
            Filter::Compare {
                column: column.into(),
                op,
                value: (*rng.pick(values)).into(),
            }
        }
        1 => {
            let (column, values): (&str, &[&str]) = if rng.below(2) == 0 {
                ("id", &ints)
            } else {
                ("note", &texts)
            };
            let n = rng.below(3);
            Filter::In {
                column: column.into(),
                values: (0..n).map(|_| (*rng.pick(values)).to_owned()).collect(),
                negated: rng.below(2) == 0,
            }
        }
        2 => Filter::IsNull {
            column: (*rng.pick(&["note", "id"])).into(),
            is_null: rng.below(2) == 0,
        },
        3 => Filter::All(
            (0..rng.below(4))
                .map(|_| random_filter(rng, depth - 1))
                .collect(),
        ),
        4 => Filter::Any(
            (0..rng.below(4))
                .map(|_| random_filter(rng, depth - 1))
                .collect(),
        ),
        _ => Filter::Not(Box::new(random_filter(rng, depth - 1))),
    }
}

fn random_row(rng: &mut Rng) -> serde_json::Value {
    let texts = ["", "a", "b", "ab", "ba", "aab", "%", "_", "a%b", "A"];
    let note = if rng.below(3) == 0 {
        serde_json::Value::Null
    } else {
        serde_json::json!(rng.pick(&texts))
    };
    serde_json::json!({
        "id": rng.below(4) as i64 - 1,
        "customer_id": 1,
        "total": *rng.pick(&[0.5, 1.0, 2.25]),
        "status": rng.pick(&texts),
        "priority": "normal",
        "note": note,
    })
}

#[test]
fn fuzz_filter_evaluator_against_the_reference() {
    let json = include_str!("fixtures/demo-catalog.json");
    let orders: Relation = Catalog::from_json(json)
        .unwrap()
        .relations
        .into_iter()
        .find(|r| r.name.name == "orders")
        .unwrap();
    let seconds = seconds();
    let mut rng = Rng::new("filter");
    let started = Instant::now();
    let (mut runs, mut decided) = (0u64, 0u64);
    while started.elapsed() < Duration::from_secs(seconds) {
        let filter = random_filter(&mut rng, 4);
        let row = random_row(&mut rng);
        let payload: OwnedValue =
            simd_json::to_owned_value(&mut row.to_string().into_bytes()).unwrap();
        let expected = reference(&filter, &row) == Some(true);
        if let Some(selected) = filter.matches(&orders, &payload) {
            decided += 1;
            assert_eq!(selected, expected, "{filter:?} on {row}");
        }
        runs += 1;
    }
    eprintln!("fuzz filter: {runs} filters and rows, {decided} decided in process, all agreeing");
    assert!(decided > 0);
}
