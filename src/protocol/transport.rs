//! `graphql-transport-ws`: the protocol of the `graphql-ws` library (its PROTOCOL.md).
//!
//! Every violation closes the socket with the code the library's own server uses, so the
//! client reacts to it exactly as it would there (some codes it retries, some it does not).

use std::collections::HashSet;

use simd_json::prelude::*;

use super::{Action, GraphQLError, credentials, operation_request, optional_object, typed_message};
use crate::graphql::json::quote;

/// Close codes of the protocol.
pub mod close {
    /// A malformed or unexpected message.
    pub const BAD_REQUEST: u16 = 4400;
    /// `subscribe` before `connection_ack`.
    pub const UNAUTHORIZED: u16 = 4401;
    /// `connection_init` refused.
    pub const FORBIDDEN: u16 = 4403;
    /// The client offered no sub-protocol the server speaks.
    pub const SUBPROTOCOL_NOT_ACCEPTABLE: u16 = 4406;
    /// No `connection_init` within the configured time.
    pub const INIT_TIMEOUT: u16 = 4408;
    /// `subscribe` with the id of an operation still running.
    pub const SUBSCRIBER_EXISTS: u16 = 4409;
    /// A second `connection_init`.
    pub const TOO_MANY_INIT: u16 = 4429;
    /// The server failed.
    pub const INTERNAL_ERROR: u16 = 4500;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Waiting for `connection_init`.
    #[default]
    AwaitingInit,
    /// `connection_init` arrived; the connection is deciding whether to accept it.
    Initialising,
    /// `connection_ack` sent: operations may run.
    Acknowledged,
}

#[derive(Debug, Default)]
pub struct TransportSession {
    state: State,
    /// Ids of running operations: a `subscribe` may not reuse one (4409).
    active: HashSet<String>,
}

fn bad_request(reason: impl Into<String>) -> Action {
    Action::Close(close::BAD_REQUEST, reason.into())
}

impl TransportSession {
    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    pub fn is_acknowledged(&self) -> bool {
        self.state == State::Acknowledged
    }

    pub fn on_message(&mut self, text: &mut [u8], out: &mut Vec<Action>) {
        let Ok(message) = simd_json::to_borrowed_value(text) else {
            return out.push(bad_request("Invalid message received: not JSON"));
        };
        let Some(kind) = message.get("type").and_then(|t| t.as_str()) else {
            return out.push(bad_request(
                "Invalid message received: the 'type' property must be a string",
            ));
        };
        let payload = message.get("payload");
        let id = || -> Result<String, Action> {
            match message.get("id").and_then(|v| v.as_str()) {
                Some(id) if !id.is_empty() => Ok(id.to_owned()),
                _ => Err(bad_request(format!(
                    "Invalid message received: \"{kind}\" needs a non-empty string 'id'"
                ))),
            }
        };
        match kind {
            "connection_init" | "ping" | "pong" => {
                let Ok(payload) = optional_object(payload) else {
                    return out.push(bad_request(format!(
                        "Invalid message received: the \"{kind}\" 'payload' must be an object or null"
                    )));
                };
                match kind {
                    "connection_init" if self.state != State::AwaitingInit => {
                        out.push(Action::Close(
                            close::TOO_MANY_INIT,
                            "Too many initialisation requests".into(),
                        ))
                    }
                    "connection_init" => {
                        self.state = State::Initialising;
                        out.push(Action::Init {
                            credentials: credentials(message.get("payload")),
                        });
                    }
                    "ping" => out.push(Action::Send(typed_message("pong", payload.as_deref()))),
                    _ => {}
                }
            }
            "subscribe" => {
                let id = match id() {
                    Ok(id) => id,
                    Err(close) => return out.push(close),
                };
                let request = match operation_request(payload) {
                    Ok(r) => r,
                    Err(why) => {
                        return out.push(bad_request(format!("Invalid message received: {why}")));
                    }
                };
                if self.state != State::Acknowledged {
                    return out.push(Action::Close(close::UNAUTHORIZED, "Unauthorized".into()));
                }
                if self.active.contains(&id) {
                    return out.push(Action::Close(
                        close::SUBSCRIBER_EXISTS,
                        format!("Subscriber for {id} already exists"),
                    ));
                }
                self.active.insert(id.clone());
                out.push(Action::Start { id, request });
            }
            "complete" => match id() {
                // A `complete` for an operation that already ended is not an error: the
                // server may have finished it while the client's message was in flight.
                Ok(id) if self.active.remove(&id) => out.push(Action::Stop { id }),
                Ok(_) => {}
                Err(close) => out.push(close),
            },
            "connection_ack" | "next" | "error" => out.push(bad_request(format!(
                "Unexpected message of type {kind} received"
            ))),
            other => out.push(bad_request(format!(
                "Invalid message 'type' property \"{}\"",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }

    pub fn accept_init(&mut self, out: &mut Vec<Action>) {
        self.state = State::Acknowledged;
        out.push(Action::Send(typed_message("connection_ack", None)));
    }

    pub fn reject_init(reason: &str, out: &mut Vec<Action>) {
        out.push(Action::Close(close::FORBIDDEN, reason.to_owned()));
    }

    /// The operation is over; its id may be used again.
    pub fn finish(&mut self, id: &str) {
        self.active.remove(id);
    }

    /// `{"id":…,"type":"error","payload":[…]}`; an `error` ends the operation.
    pub fn error(&mut self, id: &str, errors: &[GraphQLError]) -> String {
        self.finish(id);
        let mut out = String::from("{\"id\":");
        quote(id, &mut out);
        out.push_str(",\"type\":\"error\",\"payload\":");
        out.push_str(&GraphQLError::list_json(errors));
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(s: &mut TransportSession, text: &str) -> Vec<Action> {
        let mut bytes = text.as_bytes().to_vec();
        let mut out = Vec::new();
        s.on_message(&mut bytes, &mut out);
        out
    }

    fn acknowledged() -> TransportSession {
        let mut s = TransportSession::default();
        assert_eq!(
            send(
                &mut s,
                r#"{"type":"connection_init","payload":{"authorization":"Bearer x"}}"#
            ),
            [Action::Init {
                credentials: Some("Bearer x".into())
            }]
        );
        let mut out = Vec::new();
        s.accept_init(&mut out);
        assert_eq!(out, [Action::Send(r#"{"type":"connection_ack"}"#.into())]);
        s
    }

    fn close_code(actions: &[Action]) -> u16 {
        match actions {
            [Action::Close(code, _)] => *code,
            other => panic!("expected one close, got {other:?}"),
        }
    }

    const SUBSCRIBE: &str =
        r#"{"id":"1","type":"subscribe","payload":{"query":"subscription { users { id } }"}}"#;

    #[test]
    fn init_ack_subscribe_complete() {
        let mut s = acknowledged();
        let out = send(&mut s, SUBSCRIBE);
        assert!(matches!(&out[..], [Action::Start { id, request }]
            if id == "1" && request.query == "subscription { users { id } }"));
        assert_eq!(
            send(&mut s, r#"{"id":"1","type":"complete"}"#),
            [Action::Stop { id: "1".into() }]
        );
        assert_eq!(send(&mut s, r#"{"id":"1","type":"complete"}"#), []);
        assert!(
            matches!(&send(&mut s, SUBSCRIBE)[..], [Action::Start { .. }]),
            "id reusable"
        );
    }

    #[test]
    fn ping_is_answered_with_pong_carrying_its_payload_before_and_after_init() {
        let mut s = TransportSession::default();
        assert_eq!(
            send(&mut s, r#"{"type":"ping"}"#),
            [Action::Send(r#"{"type":"pong"}"#.into())]
        );
        let mut s = acknowledged();
        assert_eq!(
            send(&mut s, r#"{"type":"ping","payload":{"t":1}}"#),
            [Action::Send(r#"{"type":"pong","payload":{"t":1}}"#.into())]
        );
        assert_eq!(send(&mut s, r#"{"type":"pong"}"#), []);
    }

    #[test]
    fn subscribe_before_ack_is_4401() {
        let mut s = TransportSession::default();
        assert_eq!(close_code(&send(&mut s, SUBSCRIBE)), 4401);
        let mut s = TransportSession::default();
        send(&mut s, r#"{"type":"connection_init"}"#);
        assert_eq!(
            close_code(&send(&mut s, SUBSCRIBE)),
            4401,
            "init not yet accepted"
        );
    }

    #[test]
    fn duplicate_subscription_id_is_4409() {
        let mut s = acknowledged();
        send(&mut s, SUBSCRIBE);
        let out = send(&mut s, SUBSCRIBE);
        assert_eq!(
            out,
            [Action::Close(
                4409,
                "Subscriber for 1 already exists".into()
            )]
        );
    }

    #[test]
    fn second_init_is_4429() {
        let mut s = acknowledged();
        assert_eq!(
            close_code(&send(&mut s, r#"{"type":"connection_init"}"#)),
            4429
        );
    }

    #[test]
    fn malformed_and_unknown_messages_are_4400_with_a_reason() {
        for bad in [
            "not json",
            "[]",
            r#"{"type":5}"#,
            r#"{"type":"subscribe","payload":{"query":"{a}"}}"#,
            r#"{"id":"","type":"subscribe","payload":{"query":"{a}"}}"#,
            r#"{"id":"1","type":"subscribe","payload":{"query":7}}"#,
            r#"{"id":"1","type":"subscribe"}"#,
            r#"{"type":"complete"}"#,
            r#"{"type":"connection_init","payload":"token"}"#,
            r#"{"type":"ping","payload":[1]}"#,
            r#"{"type":"next","id":"1","payload":{}}"#,
            r#"{"type":"connection_ack"}"#,
            r#"{"type":"subscribe_please"}"#,
        ] {
            let mut s = acknowledged();
            match &send(&mut s, bad)[..] {
                [Action::Close(4400, reason)] => assert!(!reason.is_empty()),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn rejected_init_is_4403_and_errors_end_the_operation() {
        let mut out = Vec::new();
        TransportSession::reject_init("Forbidden", &mut out);
        assert_eq!(out, [Action::Close(4403, "Forbidden".into())]);
        let mut s = acknowledged();
        send(&mut s, SUBSCRIBE);
        let msg = s.error(
            "1",
            &[GraphQLError::server(
                super::super::ErrorCode::Database,
                "no",
            )],
        );
        assert_eq!(
            msg,
            r#"{"id":"1","type":"error","payload":[{"message":"no","extensions":{"code":"DATABASE_ERROR"}}]}"#
        );
        assert!(matches!(
            &send(&mut s, SUBSCRIBE)[..],
            [Action::Start { .. }]
        ));
    }
}
