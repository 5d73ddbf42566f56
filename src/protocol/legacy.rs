//! `graphql-ws`: the protocol of subscriptions-transport-ws (its PROTOCOL.md).
//!
//! Gentler than graphql-transport-ws: most mistakes are answered with an `error` or
//! `connection_error` message and the socket stays open, as the reference server does.

use std::collections::HashSet;

use simd_json::prelude::*;

use super::transport::close;
use super::{Action, GraphQLError, credentials, operation_request, typed_message};
use crate::graphql::json::quote;
use crate::websocket::close_code;

/// The keep-alive message, sent right after `connection_ack` and then periodically.
pub const KEEPALIVE: &str = r#"{"type":"ka"}"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    AwaitingInit,
    /// `connection_init` arrived; the connection is deciding whether to accept it.
    Initialising,
    Acknowledged,
}

#[derive(Debug, Default)]
pub struct LegacySession {
    state: State,
    /// Ids of running operations; a `start` with a running id replaces that operation.
    active: HashSet<String>,
}

/// `{"type":"<kind>","id":…,"payload":{"message":…}}`
pub(super) fn error_message(kind: &str, id: Option<&str>, message: &str) -> String {
    let mut out = format!("{{\"type\":\"{kind}\"");
    if let Some(id) = id {
        out.push_str(",\"id\":");
        quote(id, &mut out);
    }
    out.push_str(",\"payload\":{\"message\":");
    quote(message, &mut out);
    out.push_str("}}");
    out
}

impl LegacySession {
    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    pub fn is_acknowledged(&self) -> bool {
        self.state == State::Acknowledged
    }

    pub fn on_message(&mut self, text: &mut [u8], out: &mut Vec<Action>) {
        let Ok(message) = simd_json::to_borrowed_value(text) else {
            return out.push(Action::Send(error_message(
                "connection_error",
                None,
                "Message must be JSON-parseable.",
            )));
        };
        let id = message
            .get("id")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        match message.get("type").and_then(|t| t.as_str()) {
            Some("connection_init") => match self.state {
                State::AwaitingInit => {
                    self.state = State::Initialising;
                    out.push(Action::Init {
                        credentials: credentials(message.get("payload")),
                    });
                }
                State::Initialising => {}
                State::Acknowledged => self.accept_init(out),
            },
            Some("start") => {
                let Some(id) = id else {
                    return out.push(Action::Send(error_message(
                        "error",
                        None,
                        "start needs a string 'id'",
                    )));
                };
                if self.state != State::Acknowledged {
                    return out.push(Action::Send(error_message(
                        "error",
                        Some(&id),
                        "connection_init must be acknowledged before start",
                    )));
                }
                let request = match operation_request(message.get("payload")) {
                    Ok(r) => r,
                    Err(why) => {
                        return out.push(Action::Send(error_message("error", Some(&id), &why)));
                    }
                };
                if !self.active.insert(id.clone()) {
                    out.push(Action::Stop { id: id.clone() });
                }
                out.push(Action::Start { id, request });
            }
            Some("stop") => {
                if let Some(id) = id.filter(|id| self.active.remove(id)) {
                    out.push(Action::Stop { id: id.clone() });
                    out.push(Action::Send(super::complete_message(&id)));
                }
            }
            Some("connection_terminate") => out.push(Action::Close(
                close_code::NORMAL,
                "connection terminated".into(),
            )),
            _ => out.push(Action::Send(error_message(
                "error",
                id.as_deref(),
                "Invalid message type!",
            ))),
        }
    }

    pub fn accept_init(&mut self, out: &mut Vec<Action>) {
        self.state = State::Acknowledged;
        out.push(Action::Send(typed_message("connection_ack", None)));
        out.push(Action::Send(KEEPALIVE.to_owned()));
    }

    pub fn reject_init(reason: &str, out: &mut Vec<Action>) {
        out.push(Action::Send(error_message(
            "connection_error",
            None,
            reason,
        )));
        out.push(Action::Close(close::FORBIDDEN, reason.to_owned()));
    }

    pub fn finish(&mut self, id: &str) {
        self.active.remove(id);
    }

    /// `{"id":…,"type":"error","payload":{"message":…,"errors":[…]}}`: the protocol's
    /// payload is one error object; all of them travel in `errors`, which Apollo's legacy
    /// client reads first.
    pub fn error(&mut self, id: &str, errors: &[GraphQLError]) -> String {
        self.finish(id);
        let mut out = String::from("{\"id\":");
        quote(id, &mut out);
        out.push_str(",\"type\":\"error\",\"payload\":{\"message\":");
        quote(
            errors.first().map_or("error", |e| e.message.as_str()),
            &mut out,
        );
        out.push_str(",\"errors\":");
        out.push_str(&GraphQLError::list_json(errors));
        out.push_str("}}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(s: &mut LegacySession, text: &str) -> Vec<Action> {
        let mut bytes = text.as_bytes().to_vec();
        let mut out = Vec::new();
        s.on_message(&mut bytes, &mut out);
        out
    }

    fn acknowledged() -> LegacySession {
        let mut s = LegacySession::default();
        assert_eq!(
            send(
                &mut s,
                r#"{"type":"connection_init","payload":{"headers":{"Authorization":"Bearer t"}}}"#
            ),
            [Action::Init {
                credentials: Some("Bearer t".into())
            }]
        );
        let mut out = Vec::new();
        s.accept_init(&mut out);
        assert_eq!(
            out,
            [
                Action::Send(r#"{"type":"connection_ack"}"#.into()),
                Action::Send(r#"{"type":"ka"}"#.into())
            ]
        );
        s
    }

    const START: &str = r#"{"id":"1","type":"start","payload":{"query":"subscription { orders { id } }","variables":{}}}"#;

    #[test]
    fn start_stop_complete() {
        let mut s = acknowledged();
        assert!(matches!(&send(&mut s, START)[..], [Action::Start { id, .. }] if id == "1"));
        assert_eq!(
            send(&mut s, r#"{"id":"1","type":"stop"}"#),
            [
                Action::Stop { id: "1".into() },
                Action::Send(r#"{"id":"1","type":"complete"}"#.into())
            ]
        );
        assert_eq!(send(&mut s, r#"{"id":"1","type":"stop"}"#), []);
    }

    #[test]
    fn a_restarted_id_replaces_the_running_operation() {
        let mut s = acknowledged();
        send(&mut s, START);
        let out = send(&mut s, START);
        assert!(
            matches!(&out[..], [Action::Stop { .. }, Action::Start { .. }]),
            "{out:?}"
        );
    }

    #[test]
    fn mistakes_are_answered_without_closing() {
        let mut s = LegacySession::default();
        let out = send(&mut s, START);
        assert!(
            matches!(&out[..], [Action::Send(m)] if m.contains("\"type\":\"error\"") && m.contains("\"id\":\"1\""))
        );
        let out = send(&mut s, "{oops");
        assert!(
            matches!(&out[..], [Action::Send(m)] if m.starts_with(r#"{"type":"connection_error""#))
        );
        let out = send(&mut s, r#"{"type":"subscribe"}"#);
        assert_eq!(
            out,
            [Action::Send(
                r#"{"type":"error","payload":{"message":"Invalid message type!"}}"#.into()
            )]
        );
        let mut s = acknowledged();
        let out = send(
            &mut s,
            r#"{"id":"2","type":"start","payload":{"query":false}}"#,
        );
        assert!(matches!(&out[..], [Action::Send(m)] if m.contains("payload.query")));
    }

    #[test]
    fn terminate_closes_normally_and_rejection_sends_connection_error() {
        let mut s = acknowledged();
        assert_eq!(
            send(&mut s, r#"{"type":"connection_terminate"}"#),
            [Action::Close(1000, "connection terminated".into())]
        );
        let mut out = Vec::new();
        LegacySession::reject_init("bad token", &mut out);
        assert_eq!(
            out,
            [
                Action::Send(
                    r#"{"type":"connection_error","payload":{"message":"bad token"}}"#.into()
                ),
                Action::Close(4403, "bad token".into())
            ]
        );
    }

    #[test]
    fn errors_carry_one_message_and_all_errors() {
        let mut s = acknowledged();
        send(&mut s, START);
        let msg = s.error(
            "1",
            &[
                GraphQLError::server(super::super::ErrorCode::RateLimited, "first"),
                GraphQLError::server(super::super::ErrorCode::Database, "second"),
            ],
        );
        assert_eq!(
            msg,
            r#"{"id":"1","type":"error","payload":{"message":"first","errors":[{"message":"first","extensions":{"code":"RATE_LIMITED"}},{"message":"second","extensions":{"code":"DATABASE_ERROR"}}]}}"#
        );
    }
}
