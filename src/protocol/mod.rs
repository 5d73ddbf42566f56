//! GraphQL over WebSocket: the session state machines of the two sub-protocols.
//!
//! - [`transport`]: `graphql-transport-ws`, as the graphql-ws library's PROTOCOL.md defines
//!   it (the `graphql-ws` npm client).
//! - [`legacy`]: `graphql-ws`, the protocol of subscriptions-transport-ws, still used by
//!   older Apollo set-ups.
//!
//! Both are pure: a text message goes in (parsed in place with simd-json), [`Action`]s come
//! out, and the connection carries them out. Messages the server originates (results,
//! errors, completion, keep-alive) are encoded by [`Session`], so the connection never needs
//! to know which protocol it speaks.

pub mod legacy;
pub mod transport;

use simd_json::prelude::*;
use simd_json::{BorrowedValue, OwnedValue};

use crate::graphql::json::quote;
pub use crate::graphql::{ErrorCode, GraphQLError};
use crate::websocket::SubProtocol;

/// What a client asked to run: the `payload` of `subscribe` (or legacy `start`).
#[derive(Debug, Clone, PartialEq)]
pub struct OperationRequest {
    pub query: String,
    /// `variables`, an object, if given and not null.
    pub variables: Option<OwnedValue>,
    pub operation_name: Option<String>,
}

/// What the connection must do after a client message.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this text message.
    Send(String),
    /// Close the socket with this code and reason.
    Close(u16, String),
    /// The client asked to connect, presenting these credentials (`Bearer <token>`), if
    /// any. The connection decides and answers with [`Session::accept_init`] or
    /// [`Session::reject_init`].
    Init { credentials: Option<String> },
    /// Run an operation under this id.
    Start {
        id: String,
        request: OperationRequest,
    },
    /// The client no longer wants results for this id.
    Stop { id: String },
}

/// One connection's protocol session, whichever sub-protocol it speaks.
#[derive(Debug)]
pub enum Session {
    Transport(transport::TransportSession),
    Legacy(legacy::LegacySession),
}

impl Session {
    pub fn new(protocol: SubProtocol) -> Session {
        match protocol {
            SubProtocol::TransportWs => Session::Transport(transport::TransportSession::default()),
            SubProtocol::Legacy => Session::Legacy(legacy::LegacySession::default()),
        }
    }

    /// Handles one text message from the client; `text` is parsed in place, once its
    /// nesting is known to be within `max_depth` (`POSTRUST_MAX_INPUT_DEPTH`).
    pub fn on_message(&mut self, text: &mut [u8], max_depth: usize, out: &mut Vec<Action>) {
        if let Err(deep) = crate::nesting::check_json(text, max_depth) {
            let reason = format!("Invalid message received: {deep}");
            return out.push(match self {
                Session::Transport(_) => Action::Close(transport::close::BAD_REQUEST, reason),
                Session::Legacy(_) => {
                    Action::Send(legacy::error_message("connection_error", None, &reason))
                }
            });
        }
        match self {
            Session::Transport(s) => s.on_message(text, out),
            Session::Legacy(s) => s.on_message(text, out),
        }
    }

    /// Operations running now.
    pub fn active_count(&self) -> usize {
        match self {
            Session::Transport(s) => s.active_count(),
            Session::Legacy(s) => s.active_count(),
        }
    }

    /// The connection accepted `connection_init`.
    pub fn accept_init(&mut self, out: &mut Vec<Action>) {
        match self {
            Session::Transport(s) => s.accept_init(out),
            Session::Legacy(s) => s.accept_init(out),
        }
    }

    /// The connection refused `connection_init` (for example a bad token).
    pub fn reject_init(&mut self, reason: &str, out: &mut Vec<Action>) {
        match self {
            Session::Transport(_) => transport::TransportSession::reject_init(reason, out),
            Session::Legacy(_) => legacy::LegacySession::reject_init(reason, out),
        }
    }

    /// The close for a client whose `connection_init` did not arrive in time.
    pub const INIT_TIMEOUT: (u16, &'static str) = (
        transport::close::INIT_TIMEOUT,
        "Connection initialisation timeout",
    );

    /// The envelope that goes before a result payload for `id`; the result and a closing
    /// `}` follow it. Built once per subscription, reused for every result.
    pub fn result_prefix(&self, id: &str) -> String {
        let kind = match self {
            Session::Transport(_) => "next",
            Session::Legacy(_) => "data",
        };
        let mut out = String::with_capacity(id.len() + 32);
        out.push_str("{\"id\":");
        quote(id, &mut out);
        out.push_str(",\"type\":\"");
        out.push_str(kind);
        out.push_str("\",\"payload\":");
        out
    }

    /// The operation `id` failed before producing results; it is over.
    pub fn error(&mut self, id: &str, errors: &[GraphQLError]) -> String {
        match self {
            Session::Transport(s) => s.error(id, errors),
            Session::Legacy(s) => s.error(id, errors),
        }
    }

    /// The operation `id` ended on the server's side; it is over.
    pub fn complete(&mut self, id: &str) -> String {
        match self {
            Session::Transport(s) => s.finish(id),
            Session::Legacy(s) => s.finish(id),
        }
        complete_message(id)
    }

    /// The legacy protocol's periodic keep-alive, if this session sends one.
    pub fn keepalive(&self) -> Option<&'static str> {
        match self {
            Session::Legacy(s) if s.is_acknowledged() => Some(legacy::KEEPALIVE),
            _ => None,
        }
    }
}

fn complete_message(id: &str) -> String {
    let mut out = String::from("{\"id\":");
    quote(id, &mut out);
    out.push_str(",\"type\":\"complete\"}");
    out
}

/// `{"type":"<kind>"}` or `{"type":"<kind>","payload":<payload>}`.
fn typed_message(kind: &str, payload: Option<&str>) -> String {
    match payload {
        Some(p) => format!("{{\"type\":\"{kind}\",\"payload\":{p}}}"),
        None => format!("{{\"type\":\"{kind}\"}}"),
    }
}

/// Reads the `payload` of a `subscribe`/`start` message.
pub fn operation_request(payload: Option<&BorrowedValue<'_>>) -> Result<OperationRequest, String> {
    let payload = payload
        .filter(|p| p.is_object())
        .ok_or("the 'payload' property must be an object")?;
    let query = payload
        .get("query")
        .and_then(|q| q.as_str())
        .ok_or("the 'payload.query' property must be a string")?
        .to_owned();
    let variables = match payload.get("variables") {
        None => None,
        Some(v) if v.is_null() => None,
        Some(v) if v.is_object() => Some(OwnedValue::from(v.clone())),
        Some(_) => return Err("the 'payload.variables' property must be an object".into()),
    };
    let operation_name = match payload.get("operationName") {
        None => None,
        Some(v) if v.is_null() => None,
        Some(v) => Some(
            v.as_str()
                .ok_or("the 'payload.operationName' property must be a string")?
                .to_owned(),
        ),
    };
    Ok(OperationRequest {
        query,
        variables,
        operation_name,
    })
}

/// The credentials in a `connection_init` payload: `authorization` as the product docs
/// show it, or `headers.Authorization` as some Apollo set-ups send it (either case).
fn credentials(payload: Option<&BorrowedValue<'_>>) -> Option<String> {
    let find = |object: &BorrowedValue<'_>| {
        ["authorization", "Authorization"]
            .iter()
            .find_map(|key| object.get(*key).and_then(|v| v.as_str()))
            .map(str::to_owned)
    };
    let payload = payload?;
    find(payload).or_else(|| payload.get("headers").and_then(find))
}

/// A message's `payload` when it must be an object or absent/null, as JSON text.
fn optional_object(payload: Option<&BorrowedValue<'_>>) -> Result<Option<String>, ()> {
    match payload {
        None => Ok(None),
        Some(p) if p.is_null() => Ok(None),
        Some(p) if p.is_object() => Ok(Some(p.encode())),
        Some(_) => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_prefixes_differ_by_protocol() {
        let t = Session::new(SubProtocol::TransportWs);
        let l = Session::new(SubProtocol::Legacy);
        assert_eq!(
            t.result_prefix("1"),
            r#"{"id":"1","type":"next","payload":"#
        );
        assert_eq!(
            l.result_prefix("a\"b"),
            r#"{"id":"a\"b","type":"data","payload":"#
        );
    }

    #[test]
    fn operation_requests_are_checked_field_by_field() {
        let parse = |json: &str| {
            let mut bytes = json.as_bytes().to_vec();
            let v = simd_json::to_borrowed_value(&mut bytes).unwrap();
            operation_request(Some(&v))
        };
        let ok = parse(r#"{"query":"{ a }","variables":{"x":1},"operationName":"Q"}"#).unwrap();
        assert_eq!(ok.query, "{ a }");
        assert_eq!(
            ok.variables.map(|v| v.encode()).as_deref(),
            Some(r#"{"x":1}"#)
        );
        assert_eq!(ok.operation_name.as_deref(), Some("Q"));
        let nulls = parse(r#"{"query":"{ a }","variables":null,"operationName":null}"#).unwrap();
        assert_eq!((nulls.variables, nulls.operation_name), (None, None));
        assert!(
            parse(r#"{"query":1}"#)
                .unwrap_err()
                .contains("payload.query")
        );
        assert!(
            parse(r#"{"query":"q","variables":[]}"#)
                .unwrap_err()
                .contains("variables")
        );
        assert!(
            parse(r#"{"query":"q","operationName":2}"#)
                .unwrap_err()
                .contains("operationName")
        );
        assert!(parse("[]").unwrap_err().contains("'payload'"));
    }
}
