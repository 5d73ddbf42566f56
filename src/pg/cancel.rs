//! Cancelling a running statement: PostgreSQL's CancelRequest.
//!
//! A statement nobody waits for any more (its HTTP client left, its live query's last
//! subscriber went, its operation was stopped) would otherwise run on in the server to the
//! end, holding a backend and its locks. The protocol cancels it out of band: a new
//! connection to the same server sends only the backend's process id and the secret key it
//! gave us at startup, and the server closes it without an answer. The cancel connection
//! negotiates TLS as the URL's `sslmode` says, as libpq 17 does, so the key does not travel
//! in the clear when the connection it cancels did not.

use bytes::BytesMut;
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use postgres_protocol::message::frontend;

use super::connect::ConnectOptions;
use super::error::Error;
use super::socket::Socket;
use super::url::ConnectConfig;

/// Which backend to cancel: what `BackendKeyData` said at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CancelKey {
    pub process_id: i32,
    pub secret_key: i32,
}

/// Asks the server to cancel what `key`'s backend is running now. Returns once the server
/// closed the cancel connection (it has then signalled the backend), or after the connect
/// timeout. Best effort, as in libpq: the statement may finish before the signal lands.
pub(crate) async fn cancel(
    config: &ConnectConfig,
    options: &ConnectOptions,
    key: CancelKey,
) -> Result<(), Error> {
    let attempt = async {
        let mut socket = None;
        let mut failure = None;
        for &negotiate in config.tls.attempts(&config.host) {
            match Socket::open(config, options.tcp_timeout, negotiate).await {
                Ok(s) => {
                    socket = Some(s);
                    break;
                }
                Err(e) => failure = Some(e.context("cancel request")),
            }
        }
        let Some(mut socket) = socket else {
            return Err(failure.expect("every mode makes at least one attempt"));
        };
        let mut out = BytesMut::new();
        frontend::cancel_request(key.process_id, key.secret_key, &mut out);
        socket
            .write_all(&out)
            .await
            .map_err(|e| Error::connect(format!("cancel request: {e}"), None))?;
        socket
            .flush()
            .await
            .map_err(|e| Error::connect(format!("cancel request: {e}"), None))?;
        // The server answers nothing and closes: wait for that, so the caller knows the
        // signal was sent before it reuses what the statement held.
        let _ = socket.read(&mut [0u8; 1]).await;
        Ok(())
    };
    let limit = options.connect_timeout;
    future::or(attempt, async {
        glommio::timer::sleep(limit).await;
        Err(Error::connect(
            format!("cancel request: no answer within {} ms", limit.as_millis()),
            None,
        ))
    })
    .await
}
