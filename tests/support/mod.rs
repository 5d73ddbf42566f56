//! Shared fixtures for the integration tests: a private PostgreSQL, the demo database and
//! the GraphQL engine over it, the real server, and a raw WebSocket client. Each test binary
//! uses the parts it needs.
#![allow(dead_code)]

pub mod docs;
pub mod gql;
pub mod pg;
pub mod server;
pub mod ws;
