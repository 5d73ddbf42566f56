//! Changes from logical replication (`POSTRUST_CHANGE_SOURCE=logical`): the `pgoutput`
//! plugin's messages from a temporary slot on a publication, turned into the same change
//! events a trigger's `NOTIFY` gives (see [`crate::change`]). Writes then pay for no trigger
//! and take no part in NOTIFY's cluster-wide lock.
//!
//! **Rows.** pgoutput sends every column as text with its type. A row is built in the shape
//! `row_to_json` gives it where the filter evaluator decides ([`crate::sql::eval`]):
//! integers as numbers, booleans as booleans, text and enum labels as strings; `json` and
//! `jsonb` are parsed, other numbers become numbers, and every other type stays text, which
//! the evaluator never decides on. A value the WAL does not carry (an unchanged TOASTed
//! column) makes the change untestable, so it refreshes every reader of its table.
//!
//! **Old rows.** Only a table with `REPLICA IDENTITY FULL` sends the whole old row of an
//! UPDATE or DELETE; otherwise at most its key arrives, which is treated as no old row (as
//! with the docs page's trigger): such a change refreshes the readers it might concern.
//!
//! **Visibility.** A commit reaches the slot once its WAL is flushed, which is before the
//! transaction is visible to other sessions (with synchronous replication, not until the
//! standby has answered). A refresh run at that moment would not see it, and nothing would
//! come later to correct that. So each transaction's changes are held until a snapshot of
//! the primary taken after the commit arrived sees the transaction ([`Snapshot::sees`]);
//! one snapshot clears every transaction that ended before it, so under load it costs one
//! query per burst, not one per commit. For commits the stream cannot name (those before
//! its slot was created, refreshed for as a whole when it starts, and a transaction whose
//! Begin was unreadable) everything is refreshed at once and again once every transaction
//! unfinished at that moment has ended.
//!
//! **Bounds.** A transaction's changes are held until its commit; past
//! `POSTRUST_CHANGE_QUEUE` of them, the rest are kept as the set of tables they touch.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::Task;
use simd_json::OwnedValue;
use simd_json::owned::Object;

use crate::change::{Change, Dirty, Operation};
use crate::pg::{self, ReplicationEvent, ReplicationOptions};

/// What the change source tells the leader: the events a LISTEN connection would give.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    /// The stream is running. `after_gap` after every reconnect: changes committed in
    /// between were not seen, so everything must be refreshed.
    Streaming { after_gap: bool },
    /// A change of a committed transaction that the primary's snapshots now see.
    Dirty(Dirty),
    /// The stream was lost and is reconnecting.
    Lost(String),
}

/// The `publication_names` option of `pgoutput`, and the slot's other options.
pub fn plugin_options(publication: &str) -> String {
    // A publication name is an identifier inside a string literal.
    let identifier = format!("\"{}\"", publication.replace('"', "\"\""));
    format!(
        "proto_version '1', publication_names '{}'",
        identifier.replace('\'', "''")
    )
}

/// The changes of a publication, decoded in a task of the current shard; dropping it stops
/// the task and the stream.
pub struct LogicalSource {
    /// Sent by the source's task, received by the leader. Bounded: when the leader is
    /// behind, the task stops reading the stream, whose slot keeps the rest.
    events: flume::Receiver<SourceEvent>,
    _task: Task<()>,
}

impl LogicalSource {
    /// Streams `publication`'s changes; `max_held` bounds the changes of one transaction
    /// held until its commit (`POSTRUST_CHANGE_QUEUE`).
    pub fn start(settings: &pg::Settings, publication: &str, max_held: usize) -> LogicalSource {
        let (tx, events) = flume::bounded(max_held.max(1));
        let stream = settings.replication_stream(ReplicationOptions {
            plugin: "pgoutput".into(),
            plugin_options: plugin_options(publication),
            queue: 64,
        });
        let pool = settings.pool();
        let task = glommio::spawn_local(run(stream, pool, max_held, tx));
        LogicalSource {
            events,
            _task: task,
        }
    }

    pub async fn next(&self) -> Option<SourceEvent> {
        self.events.recv_async().await.ok()
    }
}

async fn run(
    mut stream: pg::ReplicationStream,
    pool: pg::Pool,
    max_held: usize,
    events: flume::Sender<SourceEvent>,
) {
    let mut decoder = Decoder::default();
    let mut held = Held::new(max_held);
    let mut visibility = Visibility::new(pool.clone());
    // The latest pending refresh of everything once earlier commits are visible; a later
    // one covers what an earlier one waited for, so it replaces (and cancels) it.
    let mut barrier: Option<Task<()>> = None;
    while let Some(event) = stream.next().await {
        let out = match event {
            ReplicationEvent::Streaming { after_gap } => {
                // A new slot: relations are announced again. The slot begins after the
                // commits before its creation, so everything is refreshed now, and again
                // once any of those commits that was not visible yet is.
                decoder = Decoder::default();
                held = Held::new(max_held);
                barrier = Some(refresh_after_earlier_commits(pool.clone(), events.clone()));
                vec![SourceEvent::Streaming { after_gap }]
            }
            ReplicationEvent::Lost(e) => vec![SourceEvent::Lost(e.to_string())],
            ReplicationEvent::Data(data) => match decoder.decode(&data) {
                Ok(Decoded::Begin { xid }) => {
                    held.begin(Some(xid));
                    continue;
                }
                Ok(Decoded::Changes(dirt)) => {
                    held.add(dirt);
                    continue;
                }
                Ok(Decoded::Commit) => {
                    let (xid, dirt) = held.commit();
                    if dirt.is_empty() {
                        // A transaction of no published table (older servers send those).
                        continue;
                    }
                    match xid {
                        Some(xid) => visibility.wait_until_visible(xid).await,
                        // Its Begin could not be read: refreshed now, and again once it is
                        // surely visible.
                        None => {
                            barrier =
                                Some(refresh_after_earlier_commits(pool.clone(), events.clone()))
                        }
                    }
                    dirt.into_iter().map(SourceEvent::Dirty).collect()
                }
                Ok(Decoded::Other) => continue,
                Err(e) => {
                    log::warn!(
                        "unreadable change from logical replication ({e}): refreshing every \
                         live query"
                    );
                    if held.open {
                        // Sent with the transaction's other changes, once it is visible.
                        held.add(vec![Dirty::Everything]);
                        continue;
                    }
                    // Perhaps a Begin: what follows is held as a transaction of unknown id.
                    held.begin(None);
                    held.add(vec![Dirty::Everything]);
                    continue;
                }
            },
        };
        for event in out {
            if events.send_async(event).await.is_err() {
                return;
            }
        }
    }
    drop(barrier);
}

/// Refreshes everything (in a task of its own, so the stream goes on meanwhile) once every
/// transaction that may have committed before now is visible: for commits the stream does
/// not carry (those before its slot was created) or cannot name (an unreadable Begin).
/// PostgreSQL's functions cannot tell a committed transaction that is not visible yet
/// from one still running, so it waits for all of them; one left open long only delays
/// this second refresh.
fn refresh_after_earlier_commits(pool: pg::Pool, events: flume::Sender<SourceEvent>) -> Task<()> {
    glommio::spawn_local(async move {
        let mut pause = VISIBILITY_RETRY_MIN;
        let unfinished = loop {
            let asked = match pool.get().await {
                Ok(client) => unfinished_transactions(&client).await,
                Err(e) => Err(e.to_string()),
            };
            match asked {
                Ok(ids) => break ids,
                Err(e) => {
                    log::warn!("cannot read the primary's transactions ({e}); trying again");
                    glommio::timer::sleep(pause).await;
                    pause = (pause * 2).min(BARRIER_RETRY_MAX);
                }
            }
        };
        if unfinished.is_empty() {
            return;
        }
        pause = VISIBILITY_RETRY_MIN;
        loop {
            if let Ok(s) = current_snapshot(&pool).await
                && unfinished.iter().all(|x| s.has_ended(*x))
            {
                let _ = events
                    .send_async(SourceEvent::Dirty(Dirty::Everything))
                    .await;
                return;
            }
            glommio::timer::sleep(pause).await;
            pause = (pause * 2).min(BARRIER_RETRY_MAX);
        }
    })
}

/// Pause between two snapshots that did not yet see what is waited for; doubles up to
/// [`VISIBILITY_RETRY_MAX`].
const VISIBILITY_RETRY_MIN: Duration = Duration::from_millis(1);
const VISIBILITY_RETRY_MAX: Duration = Duration::from_millis(100);
/// The same for [`refresh_after_earlier_commits`], which nothing waits for.
const BARRIER_RETRY_MAX: Duration = Duration::from_secs(1);
/// A snapshot this old is taken again rather than reused: its `xmax` must stay within 2^31
/// transactions of the ids tested against it.
const SNAPSHOT_REUSE: Duration = Duration::from_secs(1);
/// Waiting this long for a committed transaction to become visible is worth a line in
/// the log.
const SLOW_VISIBILITY: Duration = Duration::from_secs(5);

/// Asks the primary whether committed transactions are visible yet.
struct Visibility {
    pool: pg::Pool,
    /// The last snapshot taken, and when: one snapshot clears every transaction that
    /// ended before it.
    last: Option<(Snapshot, Instant)>,
}

/// The ids of the transactions that may have committed without being visible yet: those
/// in progress in the current snapshot, and those started since it was taken (below the
/// id this statement takes for itself; its commit waits for no synchronous standby).
const UNFINISHED_SQL: &str = "\
SELECT set_config('synchronous_commit', 'local', true), \
       coalesce(string_agg(x::text, ','), '') \
FROM (SELECT pg_current_snapshot() AS s, pg_current_xact_id() AS b) AS now, \
LATERAL (SELECT x FROM pg_snapshot_xip(now.s) AS x \
         UNION ALL \
         SELECT (pg_snapshot_xmax(now.s)::text::bigint + g)::text::xid8 \
         FROM generate_series(0, least(now.b::text::bigint \
                                       - pg_snapshot_xmax(now.s)::text::bigint, 100000) - 1) AS g) \
     AS candidates";

impl Visibility {
    fn new(pool: pg::Pool) -> Visibility {
        Visibility { pool, last: None }
    }

    /// Waits until a snapshot of the primary sees committed transaction `xid`.
    async fn wait_until_visible(&mut self, xid: u32) {
        if let Some((snapshot, taken)) = &self.last
            && taken.elapsed() < SNAPSHOT_REUSE
            && snapshot.sees(xid)
        {
            return;
        }
        self.wait(&format!("transaction {xid}"), |s| s.sees(xid))
            .await;
    }

    /// Takes snapshots, pausing longer each time, until one satisfies `seen`.
    async fn wait(&mut self, what: &str, seen: impl Fn(&Snapshot) -> bool) {
        let started = Instant::now();
        let mut pause = VISIBILITY_RETRY_MIN;
        let (mut said_slow, mut said_error) = (false, false);
        loop {
            match current_snapshot(&self.pool).await {
                Ok(taken) => {
                    let done = seen(&taken);
                    self.last = Some((taken, Instant::now()));
                    if done {
                        return;
                    }
                    if !said_slow && started.elapsed() >= SLOW_VISIBILITY {
                        said_slow = true;
                        log::warn!(
                            "{what} has committed but is not visible yet (waiting for a \
                             synchronous standby?); changes wait until it is"
                        );
                    }
                }
                Err(e) => {
                    if !said_error {
                        said_error = true;
                        log::warn!(
                            "cannot read the primary's snapshot ({e}); changes wait until it \
                             can be read"
                        );
                    }
                }
            }
            glommio::timer::sleep(pause).await;
            pause = (pause * 2).min(VISIBILITY_RETRY_MAX);
        }
    }
}

/// The ids (64-bit) of the transactions that may have committed on the primary without
/// being visible yet (see [`UNFINISHED_SQL`]). Takes a transaction id of its own.
pub async fn unfinished_transactions(client: &pg::Client) -> Result<Vec<u64>, String> {
    let rows = client
        .query(UNFINISHED_SQL, &[])
        .await
        .map_err(|e| e.to_string())?;
    let list = rows.value(0, 1).unwrap_or("");
    list.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| x.parse().map_err(|_| format!("unreadable id {x:?}")))
        .collect()
}

async fn current_snapshot(pool: &pg::Pool) -> Result<Snapshot, String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let rows = client
        .query("SELECT pg_current_snapshot()::text", &[])
        .await
        .map_err(|e| e.to_string())?;
    let text = rows.value(0, 0).ok_or("no snapshot returned")?;
    Snapshot::parse(text).ok_or_else(|| format!("unreadable snapshot {text:?}"))
}

/// A snapshot of the primary, as `pg_current_snapshot()` writes it: `xmin:xmax:xip,...`
/// in 64-bit transaction ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    xmax: u64,
    in_progress: Vec<u64>,
}

impl Snapshot {
    pub fn parse(text: &str) -> Option<Snapshot> {
        let mut parts = text.trim().split(':');
        let _xmin: u64 = parts.next()?.parse().ok()?;
        let xmax: u64 = parts.next()?.parse().ok()?;
        let list = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        let in_progress = list
            .split(',')
            .filter(|x| !x.is_empty())
            .map(|x| x.parse().ok())
            .collect::<Option<Vec<u64>>>()?;
        Some(Snapshot { xmax, in_progress })
    }

    /// Whether a committed transaction with 32-bit id `xid` (as pgoutput sends it) is
    /// visible in this snapshot: it ended before the snapshot was taken. The id is taken to
    /// be the one nearest below `xmax` with those low 32 bits, as a transaction that
    /// committed recently is.
    pub fn sees(&self, xid: u32) -> bool {
        // How far `xid` lies below xmax, modulo 2^32; as a signed number a recent
        // transaction that has not ended (xid >= xmax) comes out negative or zero.
        let below = (self.xmax as u32).wrapping_sub(xid) as i32;
        if below <= 0 {
            return false;
        }
        self.xmax
            .checked_sub(below as u64)
            .is_some_and(|full| self.has_ended(full))
    }

    /// Whether transaction `xid` (64-bit) had ended when this snapshot was taken.
    pub fn has_ended(&self, xid: u64) -> bool {
        xid < self.xmax && !self.in_progress.contains(&xid)
    }
}

/// The changes of the open transaction, bounded.
struct Held {
    max: usize,
    /// Between a Begin and its Commit.
    open: bool,
    /// `None` when the Begin could not be read.
    xid: Option<u32>,
    dirt: Vec<Dirty>,
    /// Tables of the changes past `max`, refreshed as whole tables.
    overflow: BTreeSet<(String, String)>,
}

impl Held {
    fn new(max: usize) -> Held {
        Held {
            max,
            open: false,
            xid: None,
            dirt: Vec::new(),
            overflow: BTreeSet::new(),
        }
    }

    fn begin(&mut self, xid: Option<u32>) {
        self.open = true;
        self.xid = xid;
        self.dirt.clear();
        self.overflow.clear();
    }

    fn add(&mut self, dirt: Vec<Dirty>) {
        for d in dirt {
            if self.dirt.len() < self.max {
                self.dirt.push(d);
                continue;
            }
            match d {
                Dirty::Change(c) => {
                    self.overflow
                        .insert((c.schema.unwrap_or_default(), c.table));
                }
                Dirty::Table { schema, table } => {
                    self.overflow.insert((schema.unwrap_or_default(), table));
                }
                Dirty::Everything => self.dirt.push(Dirty::Everything),
            }
        }
    }

    /// The committed transaction's id and its changes, in order, the overflow last.
    fn commit(&mut self) -> (Option<u32>, Vec<Dirty>) {
        self.open = false;
        let mut dirt = std::mem::take(&mut self.dirt);
        dirt.extend(
            std::mem::take(&mut self.overflow)
                .into_iter()
                .map(|(schema, table)| Dirty::Table {
                    schema: Some(schema),
                    table,
                }),
        );
        (self.xid, dirt)
    }
}

/// What one pgoutput message means to the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Begin {
        xid: u32,
    },
    /// The changes of one INSERT, UPDATE, DELETE or TRUNCATE message.
    Changes(Vec<Dirty>),
    Commit,
    /// Relation and type announcements, origins: nothing to do now.
    Other,
}

/// A relation as a `Relation` message announced it.
#[derive(Debug, Clone)]
struct RelationInfo {
    schema: String,
    table: String,
    columns: Vec<(String, u32)>,
}

/// pgoutput's protocol version 1, with the relations announced on this stream.
#[derive(Debug, Default)]
pub struct Decoder {
    relations: HashMap<u32, RelationInfo>,
}

/// Type oids of `pg_catalog` (fixed in PostgreSQL's source).
mod oid {
    pub const BOOL: u32 = 16;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const NUMERIC: u32 = 1700;
    pub const JSONB: u32 = 3802;
}

impl Decoder {
    /// Decodes one message (an `XLogData` payload).
    pub fn decode(&mut self, data: &Bytes) -> Result<Decoded, String> {
        let mut r = Reader { data, at: 0 };
        match r.u8()? {
            b'B' => {
                let _final_lsn = r.u64()?;
                let _committed_at = r.u64()?;
                Ok(Decoded::Begin { xid: r.u32()? })
            }
            b'C' => Ok(Decoded::Commit),
            b'R' => {
                let id = r.u32()?;
                let schema = r.string()?;
                let table = r.string()?;
                let _identity = r.u8()?;
                let count = r.u16()?;
                let mut columns = Vec::with_capacity(usize::from(count));
                for _ in 0..count {
                    let _flags = r.u8()?;
                    let name = r.string()?;
                    let ty = r.u32()?;
                    let _modifier = r.u32()?;
                    columns.push((name, ty));
                }
                // pgoutput writes an empty namespace for pg_catalog.
                let schema = if schema.is_empty() {
                    "pg_catalog".to_owned()
                } else {
                    schema
                };
                self.relations.insert(
                    id,
                    RelationInfo {
                        schema,
                        table,
                        columns,
                    },
                );
                Ok(Decoded::Other)
            }
            b'I' => {
                let relation = self.relation(r.u32()?)?;
                expect(r.u8()?, b'N')?;
                let new = relation.tuple(&mut r)?;
                Ok(Decoded::Changes(vec![relation.change(
                    Operation::Insert,
                    Some(new),
                    None,
                )]))
            }
            b'U' => {
                let relation = self.relation(r.u32()?)?;
                let mut old = None;
                let mut tag = r.u8()?;
                if tag == b'K' || tag == b'O' {
                    let tuple = relation.tuple(&mut r)?;
                    // A key alone is not the old row.
                    old = (tag == b'O').then_some(tuple);
                    tag = r.u8()?;
                }
                expect(tag, b'N')?;
                let new = relation.tuple(&mut r)?;
                Ok(Decoded::Changes(vec![relation.change(
                    Operation::Update,
                    Some(new),
                    old,
                )]))
            }
            b'D' => {
                let relation = self.relation(r.u32()?)?;
                let tag = r.u8()?;
                if tag != b'K' && tag != b'O' {
                    return Err(format!("DELETE with tuple tag {tag}"));
                }
                let tuple = relation.tuple(&mut r)?;
                let old = (tag == b'O').then_some(tuple);
                Ok(Decoded::Changes(vec![relation.change(
                    Operation::Delete,
                    None,
                    old,
                )]))
            }
            b'T' => {
                let count = r.u32()?;
                let _options = r.u8()?;
                let mut dirt = Vec::new();
                for _ in 0..count {
                    let relation = self.relation(r.u32()?)?;
                    dirt.push(relation.change(Operation::Truncate, None, None));
                }
                Ok(Decoded::Changes(dirt))
            }
            b'Y' | b'O' | b'M' => Ok(Decoded::Other),
            tag => Err(format!("unknown message {:?}", char::from(tag))),
        }
    }

    fn relation(&self, id: u32) -> Result<&RelationInfo, String> {
        self.relations
            .get(&id)
            .ok_or_else(|| format!("relation {id} was never announced"))
    }
}

/// A tuple's values, and whether one was left out (an unchanged TOASTed value).
struct Tuple {
    row: Object,
    incomplete: bool,
}

impl RelationInfo {
    fn tuple(&self, r: &mut Reader<'_>) -> Result<Tuple, String> {
        let count = usize::from(r.u16()?);
        if count > self.columns.len() {
            return Err(format!(
                "{count} values for {} columns of {}",
                self.columns.len(),
                self.table
            ));
        }
        let mut row = Object::with_capacity_and_hasher(count, Default::default());
        let mut incomplete = false;
        for (name, ty) in &self.columns[..count] {
            match r.u8()? {
                b'n' => {
                    row.insert(
                        name.clone(),
                        OwnedValue::Static(simd_json::StaticNode::Null),
                    );
                }
                b'u' => incomplete = true,
                b't' => {
                    let len = r.u32()? as usize;
                    let text = std::str::from_utf8(r.bytes(len)?)
                        .map_err(|_| format!("column {name} is not UTF-8"))?;
                    row.insert(name.clone(), json_value(*ty, text));
                }
                tag => return Err(format!("unknown value tag {:?}", char::from(tag))),
            }
        }
        Ok(Tuple { row, incomplete })
    }

    fn change(&self, operation: Operation, new: Option<Tuple>, old: Option<Tuple>) -> Dirty {
        let incomplete = new.as_ref().is_some_and(|t| t.incomplete)
            || old.as_ref().is_some_and(|t| t.incomplete);
        Dirty::Change(Change {
            schema: Some(self.schema.clone()),
            table: self.table.clone(),
            operation,
            new: new.map(|t| OwnedValue::from(t.row)),
            old: old.map(|t| OwnedValue::from(t.row)),
            truncated: incomplete,
        })
    }
}

/// A column's text as `row_to_json` would render the value (see the module's notes).
fn json_value(ty: u32, text: &str) -> OwnedValue {
    match ty {
        oid::BOOL => match text {
            "t" => OwnedValue::from(true),
            "f" => OwnedValue::from(false),
            _ => OwnedValue::from(text),
        },
        oid::INT2 | oid::INT4 | oid::INT8 | oid::OID => match text.parse::<i64>() {
            Ok(n) => OwnedValue::from(n),
            Err(_) => OwnedValue::from(text),
        },
        // Non-finite values (NaN, Infinity) are strings in row_to_json too.
        oid::FLOAT4 | oid::FLOAT8 | oid::NUMERIC => match text.parse::<f64>() {
            Ok(n) if n.is_finite() => OwnedValue::from(n),
            _ => OwnedValue::from(text),
        },
        oid::JSON | oid::JSONB => {
            let mut bytes = text.as_bytes().to_vec();
            simd_json::to_owned_value(&mut bytes).unwrap_or_else(|_| OwnedValue::from(text))
        }
        _ => OwnedValue::from(text),
    }
}

fn expect(tag: u8, wanted: u8) -> Result<(), String> {
    if tag == wanted {
        Ok(())
    } else {
        Err(format!(
            "tuple tag {:?} where {:?} belongs",
            char::from(tag),
            char::from(wanted)
        ))
    }
}

/// Big-endian fields of one message, each read checked against its end.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.data.len())
            .ok_or("message ends early")?;
        let out = &self.data[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.bytes(8)?;
        let mut word = [0u8; 8];
        word.copy_from_slice(b);
        Ok(u64::from_be_bytes(word))
    }

    /// A NUL-terminated string.
    fn string(&mut self) -> Result<String, String> {
        let rest = &self.data[self.at..];
        let len = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or("string without its end")?;
        let text = std::str::from_utf8(&rest[..len]).map_err(|_| "string is not UTF-8")?;
        self.at += len + 1;
        Ok(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simd_json::prelude::*;

    /// Encodes pgoutput messages the way PostgreSQL does, for the decoder's tests.
    #[derive(Default)]
    struct Message(Vec<u8>);

    impl Message {
        fn tag(tag: u8) -> Message {
            Message(vec![tag])
        }
        fn u8(mut self, v: u8) -> Self {
            self.0.push(v);
            self
        }
        fn u16(mut self, v: u16) -> Self {
            self.0.extend(v.to_be_bytes());
            self
        }
        fn u32(mut self, v: u32) -> Self {
            self.0.extend(v.to_be_bytes());
            self
        }
        fn u64(mut self, v: u64) -> Self {
            self.0.extend(v.to_be_bytes());
            self
        }
        fn string(mut self, s: &str) -> Self {
            self.0.extend(s.as_bytes());
            self.0.push(0);
            self
        }
        /// A tuple: `None` is NULL, `Some("\u{0}")` an unchanged TOASTed value.
        fn tuple(mut self, values: &[Option<&str>]) -> Self {
            self = self.u16(values.len() as u16);
            for v in values {
                self = match v {
                    None => self.u8(b'n'),
                    Some("\u{0}") => self.u8(b'u'),
                    Some(text) => {
                        let s = self.u8(b't').u32(text.len() as u32);
                        let mut s = s;
                        s.0.extend(text.as_bytes());
                        s
                    }
                };
            }
            self
        }
        fn bytes(self) -> Bytes {
            Bytes::from(self.0)
        }
    }

    /// `orders(id int4, status text, paid bool, total numeric, doc jsonb, at timestamptz)`
    /// as relation 16400 of schema `sales`.
    fn decoder() -> Decoder {
        let mut d = Decoder::default();
        let mut m = Message::tag(b'R')
            .u32(16400)
            .string("sales")
            .string("orders")
            .u8(b'd')
            .u16(6);
        for (name, ty) in [
            ("id", 23),
            ("status", 25),
            ("paid", 16),
            ("total", 1700),
            ("doc", 3802),
            ("at", 1184),
        ] {
            m = m
                .u8(u8::from(name == "id"))
                .string(name)
                .u32(ty)
                .u32(u32::MAX);
        }
        assert_eq!(d.decode(&m.bytes()), Ok(Decoded::Other));
        d
    }

    fn change(decoded: Result<Decoded, String>) -> Change {
        match decoded {
            Ok(Decoded::Changes(mut dirt)) if dirt.len() == 1 => match dirt.remove(0) {
                Dirty::Change(c) => c,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    const ROW: [Option<&str>; 6] = [
        Some("7"),
        Some("paid"),
        Some("t"),
        Some("19.90"),
        Some(r#"{"a": [1, 2]}"#),
        Some("2026-12-02 10:00:00+00"),
    ];

    #[test]
    fn an_insert_becomes_the_row_row_to_json_would_send() {
        let mut d = decoder();
        let insert = Message::tag(b'I').u32(16400).u8(b'N').tuple(&ROW);
        let c = change(d.decode(&insert.bytes()));
        assert_eq!(c.schema.as_deref(), Some("sales"));
        assert_eq!(c.table, "orders");
        assert_eq!(c.operation, Operation::Insert);
        assert!(!c.truncated);
        let row = c.new.as_ref().expect("new row");
        assert_eq!(row.get("id").and_then(|v| v.as_i64()), Some(7));
        assert_eq!(row.get("status").and_then(|v| v.as_str()), Some("paid"));
        assert_eq!(row.get("paid").and_then(|v| v.as_bool()), Some(true));
        assert_eq!(row.get("total").and_then(|v| v.as_f64()), Some(19.9));
        let doc = row.get("doc").expect("doc");
        assert_eq!(
            doc.get("a").and_then(|v| v.as_array()).map(Vec::len),
            Some(2)
        );
        assert_eq!(
            row.get("at").and_then(|v| v.as_str()),
            Some("2026-12-02 10:00:00+00")
        );
        assert_eq!(c.old, None);
        assert_eq!(c.rows().map(|r| r.len()), Some(1));
    }

    #[test]
    fn old_rows_count_only_when_whole() {
        let mut d = decoder();
        // REPLICA IDENTITY FULL: the old row, so the change can be tested.
        let full = Message::tag(b'U')
            .u32(16400)
            .u8(b'O')
            .tuple(&ROW)
            .u8(b'N')
            .tuple(&ROW);
        assert_eq!(
            change(d.decode(&full.bytes())).rows().map(|r| r.len()),
            Some(2)
        );
        // The default identity sends the key when it changed: not an old row.
        let key = [Some("7"), None, None, None, None, None];
        let keyed = Message::tag(b'U')
            .u32(16400)
            .u8(b'K')
            .tuple(&key)
            .u8(b'N')
            .tuple(&ROW);
        let c = change(d.decode(&keyed.bytes()));
        assert_eq!((c.old.is_none(), c.rows()), (true, None));
        // And nothing when it did not.
        let plain = Message::tag(b'U').u32(16400).u8(b'N').tuple(&ROW);
        assert_eq!(change(d.decode(&plain.bytes())).rows(), None);
        let delete = Message::tag(b'D').u32(16400).u8(b'K').tuple(&key);
        let c = change(d.decode(&delete.bytes()));
        assert_eq!((c.operation, c.rows()), (Operation::Delete, None));
        let delete = Message::tag(b'D').u32(16400).u8(b'O').tuple(&ROW);
        assert_eq!(
            change(d.decode(&delete.bytes())).rows().map(|r| r.len()),
            Some(1)
        );
    }

    #[test]
    fn an_unchanged_toasted_value_makes_the_change_untestable() {
        let mut d = decoder();
        let mut row = ROW;
        row[4] = Some("\u{0}");
        let update = Message::tag(b'U').u32(16400).u8(b'N').tuple(&row);
        let c = change(d.decode(&update.bytes()));
        assert!(c.truncated);
        assert_eq!(c.rows(), None);
    }

    #[test]
    fn transactions_truncates_and_bad_messages() {
        let mut d = decoder();
        let begin = Message::tag(b'B').u64(1).u64(2).u32(4242);
        assert_eq!(d.decode(&begin.bytes()), Ok(Decoded::Begin { xid: 4242 }));
        let commit = Message::tag(b'C').u8(0).u64(1).u64(2).u64(3);
        assert_eq!(d.decode(&commit.bytes()), Ok(Decoded::Commit));
        let truncate = Message::tag(b'T').u32(1).u8(0).u32(16400);
        let c = change(d.decode(&truncate.bytes()));
        assert_eq!(
            (c.operation, c.table.as_str()),
            (Operation::Truncate, "orders")
        );

        // Unknown relations, short messages and too many values are errors, not panics.
        let stranger = Message::tag(b'I').u32(1).u8(b'N').tuple(&ROW);
        assert!(d.decode(&stranger.bytes()).is_err());
        let insert = Message::tag(b'I').u32(16400).u8(b'N').tuple(&ROW).bytes();
        for cut in 0..insert.len() {
            assert!(d.decode(&insert.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut seven = ROW.to_vec();
        seven.push(Some("extra"));
        let wide = Message::tag(b'I').u32(16400).u8(b'N').tuple(&seven);
        assert!(d.decode(&wide.bytes()).is_err());
        assert!(d.decode(&Message::tag(b'?').bytes()).is_err());
    }

    #[test]
    fn a_snapshot_sees_transactions_that_ended_before_it() {
        let s = Snapshot::parse("100:105:100,103").expect("snapshot");
        assert!(s.sees(99));
        assert!(!s.sees(100), "in progress");
        assert!(s.sees(101));
        assert!(!s.sees(103), "in progress");
        assert!(s.sees(104));
        assert!(
            !s.sees(105),
            "at xmax: not ended when the snapshot was taken"
        );
        assert!(!s.sees(106));
        // Across the 32-bit wrap: xmax is epoch 1's xid 4 (2^32 + 4), and epoch 1's xid 2
        // is in progress.
        let wrapped = Snapshot::parse("4294967290:4294967300:4294967298").expect("snapshot");
        assert!(wrapped.sees(4_294_967_295), "epoch 0's last xid");
        assert!(!wrapped.sees(2), "epoch 1's xid 2, in progress");
        assert!(wrapped.sees(3));
        assert!(!wrapped.sees(4));
        assert_eq!(Snapshot::parse("1:2"), None);
        assert_eq!(Snapshot::parse("1:2:x"), None);
        assert_eq!(Snapshot::parse("7:7:").map(|s| s.sees(6)), Some(true));
    }

    #[test]
    fn a_long_transaction_is_held_as_tables_past_the_bound() {
        let mut held = Held::new(2);
        held.begin(Some(9));
        let row = |table: &str| {
            Dirty::Change(Change {
                schema: Some("public".into()),
                table: table.into(),
                operation: Operation::Insert,
                new: None,
                old: None,
                truncated: false,
            })
        };
        held.add(vec![row("a"), row("b"), row("c"), row("c"), row("d")]);
        let (xid, dirt) = held.commit();
        assert_eq!(xid, Some(9));
        assert_eq!(dirt.len(), 4);
        assert_eq!(dirt[..2], [row("a"), row("b")]);
        let tables: Vec<_> = dirt[2..]
            .iter()
            .map(|d| match d {
                Dirty::Table { table, .. } => table.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(tables, ["c", "d"]);
        held.begin(None);
        assert_eq!(held.commit(), (None, vec![]));
    }

    #[test]
    fn the_publication_option_is_quoted_twice() {
        assert_eq!(
            plugin_options("postrust"),
            r#"proto_version '1', publication_names '"postrust"'"#
        );
        assert_eq!(
            plugin_options(r#"it's "x""#),
            r#"proto_version '1', publication_names '"it''s ""x"""'"#
        );
    }
}
