//! The client's one error type.
//!
//! Like tokio-postgres, the error is opaque: callers ask it questions ([`Error::is_closed`],
//! [`Error::code`], [`Error::kind`], [`Error::as_db_error`]) instead of matching on its
//! insides, so new causes can be added without breaking them. An `ErrorResponse` from the
//! server becomes a [`DbError`] with every field the server sent.

use std::fmt;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{ErrorFields, ErrorResponseBody};

/// What went wrong, coarsely; stable for matching and for log codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The server answered a statement with an `ErrorResponse`; the connection is still usable.
    Db,
    /// The connection is gone (server closed it, socket error, or the driver stopped). The
    /// request may or may not have run.
    Closed,
    /// Connecting or authenticating failed, including a `FATAL` error during startup.
    Connect,
    /// The connection URL or settings are unusable (bad syntax, TLS required, no password).
    Config,
    /// The server sent something this client does not understand; the connection is closed.
    Protocol,
    /// No pooled connection became available within `POSTRUST_DB_POOL_TIMEOUT_MS`.
    PoolTimeout,
    /// A statement of a pipeline was not run because an earlier one in the same transaction
    /// failed.
    Skipped,
}

impl ErrorKind {
    /// A stable code for logs and for errors passed on to clients.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Db => "PG-DB",
            ErrorKind::Closed => "PG-CLOSED",
            ErrorKind::Connect => "PG-CONNECT",
            ErrorKind::Config => "PG-CONFIG",
            ErrorKind::Protocol => "PG-PROTOCOL",
            ErrorKind::PoolTimeout => "PG-POOL-TIMEOUT",
            ErrorKind::Skipped => "PG-SKIPPED",
        }
    }
}

/// An error reported by the server (`ErrorResponse`, or a `NoticeResponse` read the same way).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DbError {
    /// `ERROR`, `FATAL` or `PANIC` (the non-localized severity when the server sends it).
    pub severity: String,
    /// The SQLSTATE, e.g. `42P01`.
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// 1-based character position in the statement.
    pub position: Option<u32>,
    pub where_: Option<String>,
    pub schema: Option<String>,
    pub table: Option<String>,
    pub column: Option<String>,
    pub constraint: Option<String>,
}

impl DbError {
    /// Reads the fields of an `ErrorResponse` or `NoticeResponse` body.
    pub fn parse(fields: &mut ErrorFields<'_>) -> std::io::Result<DbError> {
        let mut e = DbError::default();
        let mut localized_severity = None;
        while let Some(field) = fields.next()? {
            let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
            match field.type_() {
                b'S' => localized_severity = Some(value),
                b'V' => e.severity = value,
                b'C' => e.code = value,
                b'M' => e.message = value,
                b'D' => e.detail = Some(value),
                b'H' => e.hint = Some(value),
                b'P' => e.position = value.parse().ok(),
                b'W' => e.where_ = Some(value),
                b's' => e.schema = Some(value),
                b't' => e.table = Some(value),
                b'c' => e.column = Some(value),
                b'n' => e.constraint = Some(value),
                // File, line, routine and internal-query fields help PostgreSQL developers,
                // not our users.
                _ => {}
            }
        }
        if e.severity.is_empty() {
            e.severity = localized_severity.unwrap_or_default();
        }
        Ok(e)
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " (detail: {detail})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for DbError {}

/// An error of the PostgreSQL client. Cheap to clone so one cause can be handed to every
/// request that was waiting on a connection when it died.
#[derive(Clone, PartialEq, Eq)]
pub struct Error(Box<Inner>);

#[derive(Clone, PartialEq, Eq)]
struct Inner {
    kind: ErrorKind,
    /// What we were doing, e.g. `connecting to 127.0.0.1:5432 as app`.
    context: String,
    db: Option<DbError>,
}

impl Error {
    fn new(kind: ErrorKind, context: impl Into<String>, db: Option<DbError>) -> Error {
        Error(Box::new(Inner {
            kind,
            context: context.into(),
            db,
        }))
    }

    pub(crate) fn db(db: DbError) -> Error {
        Error::new(ErrorKind::Db, String::new(), Some(db))
    }

    /// A statement's `ErrorResponse`; an unreadable one is a protocol error (outer).
    pub(crate) fn from_response(body: &ErrorResponseBody) -> Result<Error, Error> {
        DbError::parse(&mut body.fields())
            .map(Error::db)
            .map_err(|e| Error::protocol(format!("malformed ErrorResponse: {e}")))
    }

    /// The connection closed; `why` says how we noticed, `db` is the server's last word
    /// (e.g. `57P01 terminating connection due to administrator command`) if it sent one.
    pub(crate) fn closed(why: impl Into<String>, db: Option<DbError>) -> Error {
        Error::new(ErrorKind::Closed, why, db)
    }

    pub(crate) fn connect(context: impl Into<String>, db: Option<DbError>) -> Error {
        Error::new(ErrorKind::Connect, context, db)
    }

    pub(crate) fn config(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Config, message, None)
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Protocol, message, None)
    }

    pub(crate) fn pool_timeout(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::PoolTimeout, message, None)
    }

    pub(crate) fn skipped() -> Error {
        Error::new(
            ErrorKind::Skipped,
            "not run: an earlier statement of the same transaction failed",
            None,
        )
    }

    /// The same error with more context in front, e.g. which server we were connecting to.
    pub(crate) fn context(mut self, context: impl fmt::Display) -> Error {
        self.0.context = if self.0.context.is_empty() {
            context.to_string()
        } else {
            format!("{context}: {}", self.0.context)
        };
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// True when the connection is unusable: the caller should drop it (the pool does) and
    /// may retry on a new one.
    pub fn is_closed(&self) -> bool {
        matches!(self.0.kind, ErrorKind::Closed | ErrorKind::Protocol)
    }

    /// The SQLSTATE the server sent, if it sent one.
    pub fn code(&self) -> Option<&str> {
        self.0.db.as_ref().map(|db| db.code.as_str())
    }

    pub fn as_db_error(&self) -> Option<&DbError> {
        self.0.db.as_ref()
    }
}

impl Error {
    /// What happened, without the kind's code: context, then the server's error.
    pub(crate) fn message(&self) -> String {
        match (&self.0.db, self.0.context.is_empty()) {
            (Some(db), true) => db.to_string(),
            (Some(db), false) => format!("{}: {db}", self.0.context),
            (None, _) => self.0.context.clone(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.0.kind.code())?;
        let message = self.message();
        if !message.is_empty() {
            write!(f, " {message}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use postgres_protocol::message::backend::Message;

    /// An `ErrorResponse` as the server sends it: tag, length, `type value\0` pairs, `\0`.
    fn error_response(fields: &[(u8, &str)]) -> BytesMut {
        let mut body = Vec::new();
        for (t, v) in fields {
            body.push(*t);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut msg = BytesMut::new();
        msg.extend_from_slice(b"E");
        msg.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        msg.extend_from_slice(&body);
        msg
    }

    fn parse(fields: &[(u8, &str)]) -> DbError {
        let mut buf = error_response(fields);
        match Message::parse(&mut buf).unwrap().unwrap() {
            Message::ErrorResponse(body) => DbError::parse(&mut body.fields()).unwrap(),
            _ => panic!("not an ErrorResponse"),
        }
    }

    #[test]
    fn error_response_fields_are_kept() {
        let db = parse(&[
            (b'S', "FEHLER"),
            (b'V', "ERROR"),
            (b'C', "23505"),
            (
                b'M',
                "duplicate key value violates unique constraint \"t_pkey\"",
            ),
            (b'D', "Key (id)=(1) already exists."),
            (b'H', "use another id"),
            (b'P', "15"),
            (b's', "public"),
            (b't', "t"),
            (b'n', "t_pkey"),
            (b'F', "nbtinsert.c"),
            (b'L', "666"),
        ]);
        assert_eq!(db.severity, "ERROR", "non-localized severity wins");
        assert_eq!(db.code, "23505");
        assert_eq!(db.detail.as_deref(), Some("Key (id)=(1) already exists."));
        assert_eq!(db.hint.as_deref(), Some("use another id"));
        assert_eq!(db.position, Some(15));
        assert_eq!(db.table.as_deref(), Some("t"));
        assert_eq!(db.constraint.as_deref(), Some("t_pkey"));
        let err = Error::db(db);
        assert_eq!(err.code(), Some("23505"));
        assert!(!err.is_closed());
        assert_eq!(
            err.to_string(),
            "[PG-DB] ERROR 23505: duplicate key value violates unique constraint \"t_pkey\" \
             (detail: Key (id)=(1) already exists.) (hint: use another id)"
        );
    }

    #[test]
    fn old_servers_without_v_field_use_the_localized_severity() {
        let db = parse(&[(b'S', "FATAL"), (b'C', "28P01"), (b'M', "no")]);
        assert_eq!(db.severity, "FATAL");
    }

    #[test]
    fn closed_errors_carry_the_servers_last_word() {
        let db = parse(&[
            (b'V', "FATAL"),
            (b'C', "57P01"),
            (b'M', "terminating connection due to administrator command"),
        ]);
        let err = Error::closed("server closed the connection", Some(db)).context("query");
        assert!(err.is_closed());
        assert_eq!(err.kind(), ErrorKind::Closed);
        assert_eq!(err.code(), Some("57P01"));
        assert_eq!(
            err.to_string(),
            "[PG-CLOSED] query: server closed the connection: FATAL 57P01: terminating \
             connection due to administrator command"
        );
    }
}
