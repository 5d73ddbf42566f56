//! Live-subscription proofs: random operations over the demo tables, random writes, many
//! subscribers over a few raw WebSockets, and the check that each one's last result is what
//! a fresh query of the same operation returns.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::server::Server;
use super::ws::{Client, Frame};

/// A small deterministic generator (xorshift), so a failing seed can be replayed with
/// `POSTRUST_TEST_SEED`.
pub struct Rng(u64);

impl Rng {
    /// From `POSTRUST_TEST_SEED`, else the clock; the seed is printed for replay.
    pub fn from_env(what: &str) -> Rng {
        let seed = std::env::var("POSTRUST_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{what}: POSTRUST_TEST_SEED={seed}");
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const STATUSES: [&str; 4] = ["pending", "paid", "shipped", "cancelled"];
const PRIORITIES: [&str; 3] = ["low", "normal", "high"];

fn money(rng: &mut Rng) -> String {
    format!("{}.{:02}", rng.below(200), rng.below(100))
}

/// A random filter on `orders`: single conditions, several at once, and/or/not, and
/// conditions on related rows.
pub fn order_filter(rng: &mut Rng, depth: u32) -> String {
    let atom = |rng: &mut Rng| -> String {
        match rng.below(12) {
            // Across relations: the customer pointed at, the items pointing here.
            9 => format!("customer: {{ vip: {{ eq: {} }} }}", rng.chance(50)),
            10 => format!(
                "orderItems: {{ some: {{ quantity: {{ gt: {} }} }} }}",
                rng.below(3)
            ),
            11 => format!(
                "orderItems: {{ {}: {{ quantity: {{ lt: {} }} }} }}",
                if rng.chance(50) { "every" } else { "none" },
                1 + rng.below(3)
            ),
            0 => format!(r#"status: {{ eq: "{}" }}"#, rng.pick(&STATUSES)),
            1 => format!(r#"status: {{ neq: "{}" }}"#, rng.pick(&STATUSES)),
            2 => format!("priority: {{ eq: {} }}", rng.pick(&PRIORITIES)),
            3 => format!(
                "priority: {{ in: [{}, {}] }}",
                rng.pick(&PRIORITIES),
                rng.pick(&PRIORITIES)
            ),
            4 => format!(r#"total: {{ gt: "{}" }}"#, money(rng)),
            5 => format!("id: {{ lt: {} }}", rng.below(60)),
            6 => format!(
                "id: {{ in: [{}, {}, {}] }}",
                rng.below(40),
                rng.below(40),
                rng.below(40)
            ),
            7 => format!("note: {{ isNull: {} }}", rng.chance(50)),
            _ => format!("customerId: {{ eq: {} }}", 1 + rng.below(6)),
        }
    };
    match (depth, rng.below(6)) {
        (0, _) | (_, 0..=2) => format!("{{ {} }}", atom(rng)),
        (_, 3) => format!("{{ {}, {} }}", atom(rng), atom(rng)),
        (_, 4) => format!(
            "{{ or: [{}, {}] }}",
            order_filter(rng, depth - 1),
            order_filter(rng, depth - 1)
        ),
        _ => format!("{{ not: {} }}", order_filter(rng, depth - 1)),
    }
}

/// One random root field over the demo tables, with or without nested relations, or an
/// aggregate.
fn root_field(rng: &mut Rng, alias: &str) -> String {
    match rng.below(8) {
        0 | 1 => {
            let limit = if rng.chance(25) {
                format!(", limit: {}", 1 + rng.below(5))
            } else {
                String::new()
            };
            let customer = if rng.chance(40) {
                " customer { name vip }"
            } else {
                ""
            };
            let items = if rng.chance(30) {
                " orderItems(orderBy: { id: ASC }) { quantity product { name price } }"
            } else {
                ""
            };
            format!(
                "{alias}: orders(filter: {}, orderBy: {{ id: ASC }}{limit}) {{ id total status priority note{customer}{items} }}",
                order_filter(rng, 2)
            )
        }
        2 => format!(
            "{alias}: customers(filter: {{ vip: {{ eq: {} }} }}, orderBy: {{ id: ASC }}) {{ id name vip orders(orderBy: {{ id: ASC }}, filter: {}) {{ id status total }} }}",
            rng.chance(50),
            order_filter(rng, 1)
        ),
        3 => format!(
            "{alias}: orderItems(filter: {{ quantity: {{ gt: {} }} }}, orderBy: {{ id: ASC }}) {{ id quantity order {{ status customer {{ name }} }} }}",
            rng.below(4)
        ),
        4 => format!("{alias}: users(orderBy: {{ id: ASC }}) {{ id name email }}"),
        6 => format!(
            "{alias}: ordersAggregate(filter: {}) {{ count sum {{ total }} max {{ total createdAt }} }}",
            order_filter(rng, 2)
        ),
        7 => format!(
            "{alias}: customers(orderBy: {{ id: ASC }}) {{ id ordersAggregate(filter: {}) {{ count avg {{ total }} }} }}",
            order_filter(rng, 1)
        ),
        _ => format!(
            "{alias}: salesDashboard {{ totalRevenue orderCount topProducts {{ name salesCount }} }}"
        ),
    }
}

/// A random subscription (one root field, as GraphQL requires of subscriptions).
pub fn random_operation(rng: &mut Rng) -> String {
    format!("subscription {{ {} }}", root_field(rng, "a"))
}

/// Random writes that never fail on their own (deletes guard foreign keys, inserts pick
/// existing parents), a few grouped in transactions, some of which roll back.
pub struct Writer {
    rng: Rng,
    serial: u64,
}

impl Writer {
    pub fn new(rng: Rng) -> Writer {
        Writer { rng, serial: 0 }
    }

    fn statement(&mut self) -> String {
        self.serial += 1;
        let n = self.serial;
        let r = &mut self.rng;
        // Ids past the current ones make some statements touch nothing, which is fine.
        let id = 1 + r.below(60);
        match r.below(18) {
            // Bulk statements: many rows per statement, some moving between customers
            // (out of one `customerId` filter and into another).
            16 => format!(
                "UPDATE orders SET customer_id = (SELECT id FROM customers ORDER BY random() LIMIT 1), \
                 status = '{}' WHERE customer_id = {};",
                r.pick(&STATUSES),
                1 + r.below(6)
            ),
            17 => format!("UPDATE orders SET total = total + {};", money(r)),
            0..=2 => format!(
                "INSERT INTO orders (customer_id, total, status, priority, note) \
                 SELECT id, {}, '{}', '{}', {} FROM customers ORDER BY random() LIMIT 1;",
                money(r),
                r.pick(&STATUSES),
                r.pick(&PRIORITIES),
                if r.chance(50) {
                    "NULL".to_owned()
                } else {
                    format!("'n{n}'")
                }
            ),
            3..=5 => format!(
                "UPDATE orders SET status = '{}', total = {} WHERE id = {id};",
                r.pick(&STATUSES),
                money(r)
            ),
            6 => format!(
                "UPDATE orders SET priority = '{}', note = {} WHERE id = {id};",
                r.pick(&PRIORITIES),
                if r.chance(50) {
                    "NULL".to_owned()
                } else {
                    format!("'n{n}'")
                }
            ),
            7 => format!("DELETE FROM orders WHERE id = {id};"),
            8 => format!(
                "INSERT INTO order_items (order_id, product_id, quantity, unit_price) \
                 SELECT id, {}, {}, 9.99 FROM orders ORDER BY random() LIMIT 1;",
                1 + r.below(3),
                1 + r.below(5)
            ),
            9 => format!(
                "UPDATE order_items SET quantity = {} WHERE id = {id};",
                1 + r.below(5)
            ),
            10 => format!("DELETE FROM order_items WHERE id = {id};"),
            11 => format!(
                "INSERT INTO customers (name, email, vip) VALUES ('C{n}', 'c{n}@x.test', {});",
                r.chance(50)
            ),
            12 => format!(
                "UPDATE customers SET vip = NOT vip, name = 'C{n}' WHERE id = {};",
                1 + r.below(8)
            ),
            13 => format!(
                "DELETE FROM customers c WHERE c.id = {} \
                 AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id);",
                1 + r.below(8)
            ),
            14 => format!(
                "UPDATE products SET price = {} WHERE id = {};",
                money(r),
                1 + r.below(3)
            ),
            _ => match r.below(3) {
                0 => format!("INSERT INTO users (name, email) VALUES ('U{n}', 'u{n}@x.test');"),
                1 => format!(
                    "UPDATE users SET name = 'U{n}' WHERE id = {};",
                    1 + r.below(10)
                ),
                _ => format!("DELETE FROM users WHERE id = {};", 1 + r.below(10)),
            },
        }
    }

    /// A script of about `statements` statements.
    pub fn script(&mut self, statements: usize) -> String {
        let mut out = String::new();
        let mut left = statements;
        while left > 0 {
            if self.rng.chance(15) {
                let k = (2 + self.rng.below(5) as usize).min(left);
                out.push_str("BEGIN;\n");
                for _ in 0..k {
                    out.push_str(&self.statement());
                    out.push('\n');
                }
                let end = if self.rng.chance(20) {
                    "ROLLBACK"
                } else {
                    "COMMIT"
                };
                out.push_str(end);
                out.push_str(";\n");
                left -= k;
            } else {
                out.push_str(&self.statement());
                out.push('\n');
                left -= 1;
            }
        }
        out
    }
}

/// The latest `data` each subscription received, by subscription id.
type Latest = Arc<Mutex<HashMap<String, Value>>>;

/// Subscribers spread over a few sockets, each socket read by a thread of its own.
pub struct Subscribers {
    /// `(subscription id, operation)`.
    pub operations: Vec<(String, String)>,
    latest: Latest,
    /// The first result of each subscription, to tell that later ones came.
    initial: HashMap<String, Value>,
    /// Error messages the server sent, which no proof expects.
    errors: Arc<Mutex<Vec<String>>>,
    writers: Vec<TcpStream>,
    readers: Vec<JoinHandle<()>>,
}

pub const INIT: &str = r#"{"type":"connection_init","payload":{}}"#;

/// Waits until a server on the database at `url` has its LISTEN connection in place, so
/// that the refresh of everything that follows it has happened before a test counts
/// refreshes.
pub fn wait_until_listening(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while super::gql::psql(
        url,
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    ) == "0"
    {
        assert!(Instant::now() < deadline, "the server never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The leader hears its LISTEN answered a moment after PostgreSQL shows it.
    std::thread::sleep(Duration::from_millis(50));
}

/// The next message on `c`, which must be a result: its data's `key`.
pub fn next_data(c: &mut Client, key: &str) -> Value {
    let m: Value = serde_json::from_str(&c.recv_text()).unwrap();
    assert_eq!(m["type"], "next", "{m}");
    m["payload"]["data"][key].clone()
}

/// A graphql-transport-ws socket to `server`, initialised and acknowledged.
pub fn open_socket(server: &Server) -> Client {
    let (mut c, _) = Client::upgrade(server.connect(), Some("graphql-transport-ws"));
    c.send_text(INIT);
    assert_eq!(c.recv_text(), r#"{"type":"connection_ack"}"#);
    c
}

pub fn subscribe_message(id: &str, query: &str) -> String {
    serde_json::json!({"id": id, "type": "subscribe", "payload": {"query": query}}).to_string()
}

impl Subscribers {
    /// Opens `sockets` sockets and subscribes `operations` over them, round robin; returns
    /// once every subscription has its first result.
    pub fn open(server: &Server, sockets: usize, operations: &[String]) -> Subscribers {
        let latest: Latest = Arc::default();
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut writers = Vec::new();
        let mut readers = Vec::new();
        let mut named = Vec::new();
        for s in 0..sockets {
            let (mut client, _) = Client::upgrade(server.connect(), Some("graphql-transport-ws"));
            client.send_text(INIT);
            assert_eq!(client.recv_text(), r#"{"type":"connection_ack"}"#);
            client.stream.set_read_timeout(None).unwrap();
            let mut reader = Client {
                stream: client.stream.try_clone().unwrap(),
            };
            let (latest, errors) = (Arc::clone(&latest), Arc::clone(&errors));
            readers.push(std::thread::spawn(move || {
                read_results(&mut reader, &latest, &errors)
            }));
            for (i, op) in operations.iter().enumerate().skip(s).step_by(sockets) {
                let id = format!("s{i}");
                client.send_text(&subscribe_message(&id, op));
                named.push((id, op.clone()));
            }
            writers.push(client.stream);
        }
        named.sort_by_key(|(id, _)| id[1..].parse::<usize>().unwrap());
        let mut subs = Subscribers {
            operations: named,
            latest,
            initial: HashMap::new(),
            errors,
            writers,
            readers,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while subs.latest.lock().unwrap().len() < operations.len() {
            subs.assert_no_errors();
            assert!(
                Instant::now() < deadline,
                "initial results did not all arrive"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        subs.initial = subs.latest.lock().unwrap().clone();
        subs
    }

    /// How many subscriptions hold a result other than their first one.
    pub fn changed(&self) -> usize {
        let latest = self.latest.lock().unwrap();
        latest
            .iter()
            .filter(|(id, v)| self.initial.get(*id) != Some(*v))
            .count()
    }

    pub fn assert_no_errors(&self) {
        let errors = self.errors.lock().unwrap();
        assert!(
            errors.is_empty(),
            "server sent: {:?}",
            &errors[..errors.len().min(5)]
        );
    }

    /// Waits until every subscription's last result equals `expected` for its operation,
    /// up to `limit`; returns the mismatches left (subscription id, operation, got, want).
    pub fn converge(
        &self,
        expected: &HashMap<String, Value>,
        limit: Duration,
    ) -> Vec<(String, String, Value, Value)> {
        let deadline = Instant::now() + limit;
        loop {
            self.assert_no_errors();
            let latest = self.latest.lock().unwrap();
            let wrong: Vec<_> = self
                .operations
                .iter()
                .filter_map(|(id, op)| {
                    let got = latest.get(id).cloned().unwrap_or(Value::Null);
                    let want = &expected[op];
                    (got != *want).then(|| (id.clone(), op.clone(), got, want.clone()))
                })
                .collect();
            drop(latest);
            if wrong.is_empty() || Instant::now() > deadline {
                return wrong;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Closes every socket and waits for the reader threads.
    pub fn close(self) {
        for w in &self.writers {
            let _ = w.shutdown(std::net::Shutdown::Both);
        }
        for r in self.readers {
            let _ = r.join();
        }
    }
}

fn read_results(client: &mut Client, latest: &Latest, errors: &Mutex<Vec<String>>) {
    loop {
        let text = match client.recv_frame_lenient() {
            Some(Frame::Text(t)) => t,
            Some(Frame::Ping(_) | Frame::Pong(_)) => continue,
            _ => return,
        };
        let message: Value = serde_json::from_str(&text).expect("server JSON");
        match message["type"].as_str() {
            Some("next") if message["payload"].get("errors").is_none() => {
                let id = message["id"].as_str().unwrap().to_owned();
                latest
                    .lock()
                    .unwrap()
                    .insert(id, message["payload"]["data"].clone());
            }
            Some("ping") | Some("pong") => {}
            _ => errors.lock().unwrap().push(text),
        }
    }
}

impl Client {
    /// Like `recv`, but `None` where the connection breaks instead of panicking.
    pub fn recv_frame_lenient(&mut self) -> Option<Frame> {
        let mut head = [0u8; 2];
        self.stream.read_exact(&mut head).ok()?;
        let mut len = (head[1] & 0x7f) as usize;
        if len == 126 {
            let mut b = [0u8; 2];
            self.stream.read_exact(&mut b).ok()?;
            len = u16::from_be_bytes(b) as usize;
        } else if len == 127 {
            let mut b = [0u8; 8];
            self.stream.read_exact(&mut b).ok()?;
            len = u64::from_be_bytes(b) as usize;
        }
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload).ok()?;
        Some(match head[0] & 0x0f {
            0x1 => Frame::Text(String::from_utf8(payload).ok()?),
            0x9 => Frame::Ping(payload),
            0xa => Frame::Pong(payload),
            0x8 => {
                let code =
                    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                Frame::Close(
                    code,
                    String::from_utf8_lossy(payload.get(2..).unwrap_or(&[])).into(),
                )
            }
            _ => return None,
        })
    }
}

/// What a fresh query of each distinct operation returns now, through `POST /graphql`.
pub fn fresh_results(server: &Server, operations: &[String]) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    for op in operations {
        if out.contains_key(op) {
            continue;
        }
        let query = op.replacen("subscription", "query", 1);
        let body = serde_json::json!({ "query": query }).to_string();
        let response = post_graphql(server, &body);
        let value: Value = serde_json::from_str(&response).expect("JSON response");
        assert!(value.get("errors").is_none(), "{query}: {response}");
        out.insert(op.clone(), value["data"].clone());
    }
    out
}

/// Sends one HTTP request and returns the response body.
fn http(server: &Server, request: &str) -> String {
    let mut s = server.connect();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

pub fn post_graphql(server: &Server, body: &str) -> String {
    http(
        server,
        &format!(
            "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// The value of metric `name` at `GET /metrics`.
pub fn metric(server: &Server, name: &str) -> u64 {
    let text = http(
        server,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
}
