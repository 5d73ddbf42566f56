//! Configuration from `POSTRUST_` environment variables.
//!
//! Every setting is one row of the `settings!` table below: its field, type, variable name,
//! default and a one-line description. The same table produces the [`Config`] struct, the
//! parser, the start-up log line and the list that `tuning.md` is checked against, so a
//! setting cannot exist in one place and be missing in another.
//!
//! A bad value stops start-up with a [`ConfigError`] that names the variable and the form it
//! accepts.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// One documented setting, as listed in `tuning.md`.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub var: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

/// A variable whose value does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={:?} is not valid: expected {}",
            self.var, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

/// A value type a setting can hold: how it parses and how it is shown in the log.
pub trait SettingValue: Sized {
    /// The accepted form, shown in errors.
    const FORM: &'static str;
    fn parse_setting(raw: &str) -> Option<Self>;
    fn show(&self) -> String;
}

impl SettingValue for usize {
    const FORM: &'static str = "a non-negative integer";
    fn parse_setting(raw: &str) -> Option<Self> {
        raw.parse().ok()
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

/// A count that must be at least one (shards, pool sizes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count(pub usize);

impl SettingValue for Count {
    const FORM: &'static str = "an integer of at least 1";
    fn parse_setting(raw: &str) -> Option<Self> {
        raw.parse().ok().filter(|n| *n >= 1).map(Count)
    }
    fn show(&self) -> String {
        self.0.to_string()
    }
}

/// A duration given in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis(pub Duration);

impl SettingValue for Millis {
    const FORM: &'static str = "a duration in milliseconds (a non-negative integer)";
    fn parse_setting(raw: &str) -> Option<Self> {
        raw.parse().ok().map(|ms| Millis(Duration::from_millis(ms)))
    }
    fn show(&self) -> String {
        format!("{}ms", self.0.as_millis())
    }
}

impl SettingValue for SocketAddr {
    const FORM: &'static str = "an address and port such as 0.0.0.0:3000";
    fn parse_setting(raw: &str) -> Option<Self> {
        raw.parse().ok()
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for String {
    const FORM: &'static str = "a string";
    fn parse_setting(raw: &str) -> Option<Self> {
        Some(raw.to_owned())
    }
    fn show(&self) -> String {
        self.clone()
    }
}

/// A secret: parsed like a string, never printed.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl SettingValue for Secret {
    const FORM: &'static str = "a string";
    fn parse_setting(raw: &str) -> Option<Self> {
        Some(Secret(raw.to_owned()))
    }
    fn show(&self) -> String {
        if self.0.is_empty() {
            String::new()
        } else {
            "(set)".to_owned()
        }
    }
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLevel(pub log::LevelFilter);

impl SettingValue for LogLevel {
    const FORM: &'static str = "one of error, warn, info, debug, trace, off";
    fn parse_setting(raw: &str) -> Option<Self> {
        raw.parse().ok().map(LogLevel)
    }
    fn show(&self) -> String {
        self.0.to_string().to_lowercase()
    }
}

impl SettingValue for bool {
    const FORM: &'static str = "true or false";
    fn parse_setting(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Some(true),
            "false" | "off" | "no" | "0" => Some(false),
            _ => None,
        }
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-11-24T07:30:00.123Z INFO  [shard-0] message`
    Text,
    /// One JSON object per line: `ts`, `level`, `shard`, `msg`.
    Json,
}

impl SettingValue for LogFormat {
    const FORM: &'static str = "text or json";
    fn parse_setting(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
    fn show(&self) -> String {
        match self {
            LogFormat::Text => "text".to_owned(),
            LogFormat::Json => "json".to_owned(),
        }
    }
}

/// Where committed changes are heard from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeSource {
    /// `NOTIFY` from triggers on `POSTRUST_NOTIFY_CHANNEL`.
    Notify,
    /// Logical replication: `pgoutput` on `POSTRUST_PUBLICATION`, from a temporary slot.
    Logical,
}

impl SettingValue for ChangeSource {
    const FORM: &'static str = "notify or logical";
    fn parse_setting(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "notify" => Some(ChangeSource::Notify),
            "logical" => Some(ChangeSource::Logical),
            _ => None,
        }
    }
    fn show(&self) -> String {
        match self {
            ChangeSource::Notify => "notify".to_owned(),
            ChangeSource::Logical => "logical".to_owned(),
        }
    }
}

/// A comma-separated list of names (PostgreSQL schemas), at least one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameList(pub Vec<String>);

impl SettingValue for NameList {
    const FORM: &'static str = "a comma-separated list of names, such as public,app";
    fn parse_setting(raw: &str) -> Option<Self> {
        let names: Vec<String> = raw.split(',').map(|n| n.trim().to_owned()).collect();
        (!names.iter().any(String::is_empty)).then_some(NameList(names))
    }
    fn show(&self) -> String {
        self.0.join(",")
    }
}

macro_rules! settings {
    ($( $(#[doc = $doc:literal])+ $field:ident: $ty:ty = $var:literal, $default:expr; )+) => {
        /// The effective configuration. Built once at start-up and shared read-only by all
        /// shards.
        #[derive(Debug, Clone)]
        pub struct Config {
            $( $(#[doc = $doc])+ pub $field: $ty, )+
        }

        /// Every setting, in the order `tuning.md` documents them.
        pub const SETTINGS: &[Setting] = &[
            $( Setting { var: $var, default: $default, doc: concat!($($doc),+) }, )+
        ];

        impl Config {
            /// Reads every setting through `lookup` (the environment in production, a map in
            /// tests); an unset or empty variable takes its default.
            pub fn from_lookup(
                lookup: impl Fn(&str) -> Option<String>,
            ) -> Result<Config, ConfigError> {
                Ok(Config {
                    $( $field: parse_one::<$ty>($var, $default, &lookup)?, )+
                })
            }

            /// `(variable, shown value)` for every setting, for the start-up log.
            pub fn effective(&self) -> Vec<(&'static str, String)> {
                vec![ $( ($var, SettingValue::show(&self.$field)), )+ ]
            }
        }
    };
}

fn parse_one<T: SettingValue>(
    var: &'static str,
    default: &str,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<T, ConfigError> {
    let raw = lookup(var).filter(|v| !v.trim().is_empty());
    let text = raw.as_deref().unwrap_or(default).trim();
    T::parse_setting(text).ok_or_else(|| ConfigError {
        var,
        value: text.to_owned(),
        expected: T::FORM,
    })
}

settings! {
    /// Address and port the server listens on; every shard binds it with SO_REUSEPORT.
    listen: SocketAddr = "POSTRUST_LISTEN", "0.0.0.0:3000";
    /// Length of each shard's queue of connections not yet accepted (capped by the kernel's net.core.somaxconn).
    listen_backlog: usize = "POSTRUST_LISTEN_BACKLOG", "4096";
    /// Number of shards (executor threads, one per core); 0 means one per available CPU.
    shards: usize = "POSTRUST_SHARDS", "0";
    /// PostgreSQL connection URL, `postgres://user:pass@host:port/db`.
    database_url: Secret = "POSTRUST_DATABASE_URL", "";
    /// Bytes of io_uring buffer memory each shard registers; kept small so that all shards fit under an 8 MiB locked-memory limit.
    io_memory: usize = "POSTRUST_IO_MEMORY", "131072";
    /// Largest HTTP request head (request line and headers) in bytes; a larger one gets 431.
    max_header_bytes: usize = "POSTRUST_MAX_HEADER_BYTES", "8192";
    /// Largest HTTP request body in bytes; a larger one gets 413.
    max_body_bytes: usize = "POSTRUST_MAX_BODY_BYTES", "1048576";
    /// Time a client has to send a complete HTTP request; a slower one is dropped.
    request_timeout: Millis = "POSTRUST_REQUEST_TIMEOUT_MS", "10000";
    /// Largest WebSocket message (after reassembling fragments) in bytes; a larger one closes the socket with 1009.
    max_message_bytes: usize = "POSTRUST_MAX_MESSAGE_BYTES", "262144";
    /// Time a graphql-transport-ws client has to send `connection_init`; then the socket is closed with 4408.
    connection_init_timeout: Millis = "POSTRUST_CONNECTION_INIT_TIMEOUT_MS", "3000";
    /// Interval of the legacy protocol's `ka` keep-alive message; 0 turns it off.
    keepalive_interval: Millis = "POSTRUST_KEEPALIVE_MS", "25000";
    /// Time a WebSocket may go without its queued bytes draining into the socket; then it is dropped (the client reconnects and gets fresh results).
    send_timeout: Millis = "POSTRUST_SEND_TIMEOUT_MS", "10000";
    /// Bytes of frames a connection encodes from its outbox at a time; larger batches mean fewer writes per busy socket.
    write_batch_bytes: usize = "POSTRUST_WRITE_BATCH_BYTES", "65536";
    /// Time a closing WebSocket waits for the peer's close frame before the socket is dropped.
    close_timeout: Millis = "POSTRUST_CLOSE_TIMEOUT_MS", "2000";
    /// Time shutdown waits for open connections to finish their close handshake.
    shutdown_grace: Millis = "POSTRUST_SHUTDOWN_GRACE_MS", "5000";
    /// Origins whose pages may call the server from a browser: a comma-separated list such as https://app.example.com, or * for any; empty sends no CORS headers. When a list is set, a WebSocket upgrade naming another Origin is refused with 403.
    cors_origins: String = "POSTRUST_CORS_ORIGINS", "";
    /// Serve the playground (GraphiQL, its files compiled into the binary) at GET /; false answers 404 there.
    playground: bool = "POSTRUST_PLAYGROUND", "true";
    /// Log verbosity.
    log_level: LogLevel = "POSTRUST_LOG", "info";
    /// How log lines are written: text for people, json (one object per line) for log collectors.
    log_format: LogFormat = "POSTRUST_LOG_FORMAT", "text";
    /// Where committed changes are heard from: notify (triggers' NOTIFY on POSTRUST_NOTIFY_CHANNEL) or logical (logical replication of POSTRUST_PUBLICATION from a temporary slot; needs wal_level = logical and a role with REPLICATION).
    change_source: ChangeSource = "POSTRUST_CHANGE_SOURCE", "notify";
    /// The publication whose tables' changes are streamed when POSTRUST_CHANGE_SOURCE is logical; subscriptions reading a table outside it are refused with NO_CHANGE_TRIGGER.
    publication: String = "POSTRUST_PUBLICATION", "postrust";
    /// Channel the change triggers notify on and the server listens to.
    notify_channel: String = "POSTRUST_NOTIFY_CHANNEL", "table_change";
    /// Accept subscriptions to tables with no change trigger, for a database that notifies POSTRUST_NOTIFY_CHANNEL some other way; otherwise such a subscription is refused with NO_CHANGE_TRIGGER, since it would never update.
    subscribe_without_triggers: bool = "POSTRUST_SUBSCRIBE_WITHOUT_TRIGGERS", "false";
    /// Channel on which any notification makes the server reload the catalog (after a migration).
    schema_channel: String = "POSTRUST_SCHEMA_CHANNEL", "postrust_schema";
    /// Window in which changes are gathered into one refresh per live query.
    refresh_tick: Millis = "POSTRUST_REFRESH_TICK_MS", "0";
    /// Refreshes of different live queries sent to PostgreSQL in one round trip, each still in its own transaction as its own role and claims; 1 sends each alone.
    refresh_batch: Count = "POSTRUST_REFRESH_BATCH", "16";
    /// Pause before a refresh that found the database unreachable is tried again.
    refresh_retry: Millis = "POSTRUST_REFRESH_RETRY_MS", "500";
    /// Change events that may wait for one shard before the leader coalesces them per table; with logical replication also the changes of one transaction held until its commit, past which its tables are refreshed whole.
    change_queue: Count = "POSTRUST_CHANGE_QUEUE", "1024";
    /// Bytes each shard keeps of recently compiled subscriptions, so identical subscribes skip parsing, validation and compilation; 0 turns the cache off.
    operation_cache_bytes: usize = "POSTRUST_OPERATION_CACHE_BYTES", "4194304";
    /// Most operations (subscriptions and queries) running at once on one WebSocket; 0 means no limit.
    max_subscriptions_per_connection: usize = "POSTRUST_MAX_SUBSCRIPTIONS_PER_CONNECTION", "1000";
    /// Operations a WebSocket may start per second, on average; 0 means no limit.
    subscribe_rate: usize = "POSTRUST_SUBSCRIBE_RATE", "100";
    /// Operations a WebSocket may start at once before `POSTRUST_SUBSCRIBE_RATE` applies.
    subscribe_burst: usize = "POSTRUST_SUBSCRIBE_BURST", "200";
    /// Most open connections on the whole server (each shard takes an equal share); 0 means no limit beyond the process's file descriptors.
    max_connections: usize = "POSTRUST_MAX_CONNECTIONS", "0";
    /// Most open connections on one shard; 0 means no limit of its own.
    max_connections_per_shard: usize = "POSTRUST_MAX_CONNECTIONS_PER_SHARD", "0";
    /// HMAC secret (at least 32 bytes) that HS256/384/512 tokens are verified with.
    jwt_secret: Secret = "POSTRUST_JWT_SECRET", "";
    /// Public key for RS256/384/512 or ES256/384 tokens: PEM text, a JWKS document, or the path of a file holding either.
    jwt_public_key: String = "POSTRUST_JWT_PUBLIC_KEY", "";
    /// Audience a token's `aud` must contain; empty means `aud` is not checked.
    jwt_aud: String = "POSTRUST_JWT_AUD", "";
    /// Claim that names the database role a client's queries run as.
    jwt_role_claim: String = "POSTRUST_JWT_ROLE_CLAIM", "role";
    /// Seconds of clock skew allowed when checking `exp` and `nbf`.
    jwt_leeway_s: usize = "POSTRUST_JWT_LEEWAY_S", "30";
    /// Role for clients without a token (or whose token names no role); empty refuses them.
    anon_role: String = "POSTRUST_ANON_ROLE", "";
    /// PostgreSQL schemas whose tables and views are served, comma-separated; on a name clash the earlier schema keeps the plain name.
    db_schemas: NameList = "POSTRUST_DB_SCHEMAS", "public";
    /// Deepest nesting of object fields a GraphQL operation may select (introspection excluded); a deeper one is refused before any SQL runs.
    max_query_depth: Count = "POSTRUST_MAX_QUERY_DEPTH", "10";
    /// Most fields (and fragment spreads) a GraphQL document may select, all its operations together, each fragment counted wherever it is spread; a larger one is refused before any SQL runs.
    max_query_fields: Count = "POSTRUST_MAX_QUERY_FIELDS", "2000";
    /// Deepest nesting of brackets (`{`, `[`, `(`) in a client's GraphQL document or JSON message, variables included; deeper input is refused before it is parsed, which bounds every recursion over it.
    max_input_depth: Count = "POSTRUST_MAX_INPUT_DEPTH", "64";
    /// Most errors one response carries; past them one last error says the rest were left out.
    max_errors: Count = "POSTRUST_MAX_ERRORS", "100";
    /// Longest a statement run for a client (a query or a live query's refresh) may take; PostgreSQL cancels a longer one, which fails with STATEMENT_TIMEOUT. It replaces the login role's or database's statement_timeout; 0: the server sets none, and theirs applies.
    statement_timeout: Millis = "POSTRUST_STATEMENT_TIMEOUT_MS", "10000";
    /// Statements one client connection may have running at once: its queries and the first refreshes of the live queries it creates; more wait their turn, so one client cannot hold a shard's whole pool.
    db_statements_per_connection: Count = "POSTRUST_DB_STATEMENTS_PER_CONNECTION", "2";
    /// Streaming replicas that reads (queries, first results, refreshes) run on once they have replayed past the primary's position at the read's start, comma-separated URLs with the same options as POSTRUST_DATABASE_URL; empty: every read runs on the primary.
    db_read_url: Secret = "POSTRUST_DB_READ_URL", "";
    /// Longest a read waits for a replica to replay past the primary's position before the primary serves it and the replica is left out for a backoff pause.
    db_read_wait: Millis = "POSTRUST_DB_READ_WAIT_MS", "50";
    /// PostgreSQL connections each shard's pool keeps at most.
    db_pool_size: Count = "POSTRUST_DB_POOL_SIZE", "4";
    /// Time a caller waits for a pooled PostgreSQL connection before it gets an error.
    db_pool_timeout: Millis = "POSTRUST_DB_POOL_TIMEOUT_MS", "5000";
    /// Time one PostgreSQL connection attempt (TCP connect, startup, authentication) may take.
    db_connect_timeout: Millis = "POSTRUST_DB_CONNECT_TIMEOUT_MS", "5000";
    /// First wait before reconnecting to PostgreSQL after a failure; doubles per failure.
    db_backoff_min: Millis = "POSTRUST_DB_BACKOFF_MIN_MS", "100";
    /// Longest wait between two reconnection attempts.
    db_backoff_max: Millis = "POSTRUST_DB_BACKOFF_MAX_MS", "10000";
    /// Prepared statements each PostgreSQL connection keeps; the oldest is closed past this.
    db_statement_cache: Count = "POSTRUST_DB_STATEMENT_CACHE", "256";
    /// Notifications buffered between the LISTEN connection and its consumer; when full, the socket is not read and PostgreSQL holds the rest in its queue.
    db_notify_queue: Count = "POSTRUST_DB_NOTIFY_QUEUE", "8192";
    /// A TCP connection to PostgreSQL whose peer stays silent this long (host down, network cut) is declared dead; 0 leaves the kernel defaults.
    db_tcp_timeout: Millis = "POSTRUST_DB_TCP_TIMEOUT_MS", "30000";
}

/// A warning for each `POSTRUST_` variable among `names` that is no setting: a misspelt
/// one would otherwise be ignored without a word. Names the closest setting when one is
/// within two edits.
pub fn unknown_variables(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut warnings = Vec::new();
    for name in names {
        if !name.starts_with("POSTRUST_") || SETTINGS.iter().any(|s| s.var == name) {
            continue;
        }
        let closest = SETTINGS
            .iter()
            .map(|s| (edit_distance(&name, s.var), s.var))
            .min()
            .filter(|(d, _)| *d <= 2);
        warnings.push(match closest {
            Some((_, var)) => {
                format!("{name} is not a setting and is ignored; did you mean {var}?")
            }
            None => format!("{name} is not a setting and is ignored (tuning.md lists them all)"),
        });
    }
    warnings.sort();
    warnings
}

/// Levenshtein distance between two ASCII names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// The number of shards to run: the configured one, or one per available CPU.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        let c = config(&[("POSTRUST_SHARDS", "")]).unwrap();
        assert_eq!(c.listen, "0.0.0.0:3000".parse().unwrap());
        assert_eq!(c.shards, 0);
        assert_eq!(c.connection_init_timeout, Millis(Duration::from_secs(3)));
        assert_eq!(c.log_level, LogLevel(log::LevelFilter::Info));
    }

    #[test]
    fn values_override_defaults() {
        let c = config(&[
            ("POSTRUST_LISTEN", "127.0.0.1:4000"),
            ("POSTRUST_SHARDS", "3"),
            ("POSTRUST_CONNECTION_INIT_TIMEOUT_MS", " 250 "),
        ])
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:4000".parse().unwrap());
        assert_eq!(c.shard_count(), 3);
        assert_eq!(c.connection_init_timeout.0, Duration::from_millis(250));
    }

    #[test]
    fn a_bad_value_names_the_variable_and_the_form() {
        let err = config(&[("POSTRUST_MAX_MESSAGE_BYTES", "lots")]).unwrap_err();
        assert_eq!(err.var, "POSTRUST_MAX_MESSAGE_BYTES");
        assert_eq!(
            err.to_string(),
            "POSTRUST_MAX_MESSAGE_BYTES=\"lots\" is not valid: expected a non-negative integer"
        );
        let err = config(&[("POSTRUST_LISTEN", "3000")]).unwrap_err();
        assert!(err.to_string().contains("such as 0.0.0.0:3000"), "{err}");
        let err = config(&[("POSTRUST_LOG", "loud")]).unwrap_err();
        assert_eq!(err.var, "POSTRUST_LOG");
    }

    #[test]
    fn secrets_are_not_shown() {
        let c = config(&[("POSTRUST_DATABASE_URL", "postgres://u:hunter2@h/db")]).unwrap();
        let shown = c.effective();
        let (_, url) = shown
            .iter()
            .find(|(var, _)| *var == "POSTRUST_DATABASE_URL")
            .unwrap();
        assert_eq!(url, "(set)");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn unknown_variables_are_named_with_the_closest_setting() {
        let names = [
            "POSTRUST_SHARD",
            "POSTRUST_SHARDS",
            "POSTRUST_NOPE_AT_ALL",
            "PATH",
        ];
        assert_eq!(
            unknown_variables(names.map(String::from)),
            [
                "POSTRUST_NOPE_AT_ALL is not a setting and is ignored (tuning.md lists them all)",
                "POSTRUST_SHARD is not a setting and is ignored; did you mean POSTRUST_SHARDS?",
            ]
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn every_setting_is_documented_in_tuning_md() {
        let tuning = include_str!("../tuning.md");
        for s in SETTINGS {
            assert!(
                tuning.contains(s.var),
                "{} is missing from tuning.md",
                s.var
            );
        }
        assert_eq!(
            SETTINGS.len(),
            Config::from_lookup(|_| None).unwrap().effective().len()
        );
    }
}
