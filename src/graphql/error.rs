//! GraphQL errors as clients see them: a message, source locations, an optional response
//! path, and a stable code in `extensions.code`.

use std::fmt;

use async_graphql_parser::Pos;

use super::json::quote;

/// The stable error codes; every error that reaches a client carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The document is not GraphQL.
    Parse,
    /// The document breaks a validation rule of the specification.
    Validation,
    /// Variable values do not fit their declared types.
    BadVariables,
    /// No operation, or not the one named, can be run.
    OperationResolution,
    /// The selection nests deeper than `POSTRUST_MAX_QUERY_DEPTH`.
    TooDeep,
    /// The selection, fragments expanded, has more fields than `POSTRUST_MAX_QUERY_FIELDS`.
    TooComplex,
    /// The document or message nests brackets deeper than `POSTRUST_MAX_INPUT_DEPTH`.
    InputTooDeep,
    /// A subscription reads a table whose changes notify nobody: it would never update.
    NoChangeTrigger,
    /// An argument is valid GraphQL but not a value the server accepts (a negative limit).
    BadArgument,
    /// The HTTP request around the operation is malformed (no query, a body that is not
    /// JSON).
    BadRequest,
    /// Operations were started faster than `POSTRUST_SUBSCRIBE_RATE` allows.
    RateLimited,
    /// The connection already runs `POSTRUST_MAX_SUBSCRIPTIONS_PER_CONNECTION` operations.
    TooManyOperations,
    /// PostgreSQL refused the role access (row-level security, missing privileges).
    Forbidden,
    /// PostgreSQL rejected the statement for another reason (its SQLSTATE is in the message).
    Database,
    /// PostgreSQL could not be reached in time; the operation may be retried.
    Unavailable,
    /// The statement ran past `POSTRUST_STATEMENT_TIMEOUT_MS` (or the role's or database's
    /// `statement_timeout`) and PostgreSQL cancelled it.
    StatementTimeout,
    /// An operator cancelled the statement (`pg_cancel_backend`).
    StatementCanceled,
    /// A relation served as one object (`@postrust single-row`) returned more than one row.
    NotSingleRow,
    /// A mutation would duplicate a key of a unique constraint.
    UniqueViolation,
    /// A mutation would leave a row pointing at no row (or remove a row still pointed at).
    ForeignKeyViolation,
    /// A mutation would leave a `NOT NULL` column null.
    NotNullViolation,
    /// A mutation would break a `CHECK` constraint.
    CheckViolation,
    /// A mutation would break another integrity constraint (an exclusion constraint).
    ConstraintViolation,
    /// PostgreSQL cannot take a value the client sent as its column's type (a malformed
    /// UUID or date, a number out of range, text too long).
    InvalidValue,
    /// The client's credentials were refused; the code names why (see `auth`).
    Auth(&'static str),
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Parse => "GRAPHQL_PARSE_FAILED",
            ErrorCode::Validation => "GRAPHQL_VALIDATION_FAILED",
            ErrorCode::BadVariables => "BAD_USER_INPUT",
            ErrorCode::OperationResolution => "OPERATION_RESOLUTION_FAILURE",
            ErrorCode::TooDeep => "QUERY_TOO_DEEP",
            ErrorCode::TooComplex => "QUERY_TOO_COMPLEX",
            ErrorCode::InputTooDeep => "INPUT_TOO_DEEP",
            ErrorCode::NoChangeTrigger => "NO_CHANGE_TRIGGER",
            ErrorCode::BadArgument => "BAD_ARGUMENT",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::TooManyOperations => "TOO_MANY_SUBSCRIPTIONS",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::Database => "DATABASE_ERROR",
            ErrorCode::Unavailable => "SERVICE_UNAVAILABLE",
            ErrorCode::StatementTimeout => "STATEMENT_TIMEOUT",
            ErrorCode::StatementCanceled => "STATEMENT_CANCELED",
            ErrorCode::NotSingleRow => "NOT_SINGLE_ROW",
            ErrorCode::UniqueViolation => "UNIQUE_VIOLATION",
            ErrorCode::ForeignKeyViolation => "FOREIGN_KEY_VIOLATION",
            ErrorCode::NotNullViolation => "NOT_NULL_VIOLATION",
            ErrorCode::CheckViolation => "CHECK_VIOLATION",
            ErrorCode::ConstraintViolation => "CONSTRAINT_VIOLATION",
            ErrorCode::InvalidValue => "INVALID_VALUE",
            ErrorCode::Auth(code) => code,
        }
    }
}

/// A line and column in the query text, both from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl From<Pos> for Location {
    fn from(p: Pos) -> Self {
        Location {
            line: p.line,
            column: p.column,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSegment {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GraphQLError {
    pub message: String,
    pub locations: Vec<Location>,
    pub path: Vec<PathSegment>,
    pub code: ErrorCode,
}

impl GraphQLError {
    pub fn new(code: ErrorCode, message: impl Into<String>, at: &[Pos]) -> Self {
        GraphQLError {
            message: message.into(),
            locations: at.iter().map(|p| Location::from(*p)).collect(),
            path: Vec::new(),
            code,
        }
    }

    /// An error that belongs to no place in the query text.
    pub fn server(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(code, message, &[])
    }

    pub fn validation(message: impl Into<String>, at: &[Pos]) -> Self {
        Self::new(ErrorCode::Validation, message, at)
    }

    /// The error as a JSON object of a response's `errors` list.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\"message\":");
        quote(&self.message, &mut out);
        if !self.locations.is_empty() {
            out.push_str(",\"locations\":[");
            for (i, l) in self.locations.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&format!("{{\"line\":{},\"column\":{}}}", l.line, l.column));
            }
            out.push(']');
        }
        if !self.path.is_empty() {
            out.push_str(",\"path\":[");
            for (i, p) in self.path.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match p {
                    PathSegment::Key(k) => quote(k, &mut out),
                    PathSegment::Index(n) => out.push_str(&n.to_string()),
                }
            }
            out.push(']');
        }
        out.push_str(",\"extensions\":{\"code\":\"");
        out.push_str(self.code.as_str());
        out.push_str("\"}}");
        out
    }

    /// `[{...},{...}]`, a response's `errors` value.
    pub fn list_json(errors: &[GraphQLError]) -> String {
        let parts: Vec<String> = errors.iter().map(GraphQLError::to_json).collect();
        format!("[{}]", parts.join(","))
    }
}

impl fmt::Display for GraphQLError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)?;
        for l in &self.locations {
            write!(f, " ({}:{})", l.line, l.column)?;
        }
        Ok(())
    }
}

impl std::error::Error for GraphQLError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_like_a_graphql_response_error() {
        let mut e = GraphQLError::validation("Unknown \"x\".", &[Pos { line: 2, column: 3 }]);
        e.path = vec![PathSegment::Key("orders".into()), PathSegment::Index(0)];
        assert_eq!(
            e.to_json(),
            r#"{"message":"Unknown \"x\".","locations":[{"line":2,"column":3}],"path":["orders",0],"extensions":{"code":"GRAPHQL_VALIDATION_FAILED"}}"#
        );
    }
}
