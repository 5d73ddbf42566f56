//! Opening a connection: socket (TLS as `sslmode` says), startup message, authentication,
//! then the driver.
//!
//! Authentication methods: trust, cleartext password, md5 and SCRAM-SHA-256, over TLS
//! SCRAM-SHA-256-PLUS bound to the server's certificate (see [`super::tls`]). GSS, SSPI and
//! Kerberos are refused by name. A
//! `FATAL` error from the server (wrong password, unknown role, unknown database, too many
//! connections) becomes an [`ErrorKind::Connect`](super::ErrorKind::Connect) error with the
//! server's SQLSTATE and message.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use futures_lite::{AsyncReadExt, AsyncWriteExt, future};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{self, ChannelBinding, ScramSha256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::cancel::CancelKey;
use super::client::Client;
use super::driver::{ConnState, Driver, Shared, log_notice};
use super::error::{DbError, Error};
use super::mailbox;
use super::socket::Socket;
use super::statements::StatementCache;
use super::tls::{ChannelBindingMode, Negotiate};
use super::url::ConnectConfig;

/// Per-connection limits, from the `POSTRUST_DB_*` settings.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Limit on one attempt: connect, startup and authentication.
    pub connect_timeout: Duration,
    /// Prepared statements kept per connection.
    pub statement_cache: usize,
    /// Capacity of a connection's notification stream.
    pub notify_queue: usize,
    /// A TCP peer silent this long is declared dead (keepalive and `TCP_USER_TIMEOUT`);
    /// zero leaves the kernel defaults.
    pub tcp_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: Duration::from_secs(5),
            statement_cache: 256,
            notify_queue: 8192,
            tcp_timeout: Duration::from_secs(30),
        }
    }
}

/// Where authentication stands while the startup exchange runs.
enum Phase {
    /// Waiting for the server to name a method, or to accept us.
    Authenticating,
    /// In a SCRAM exchange; bound to the TLS certificate when `bound`.
    Scram {
        scram: Box<ScramSha256>,
        bound: bool,
    },
    /// The server's final SCRAM message proved it knows the password; only now may it
    /// accept us.
    ScramVerified { bound: bool },
    /// Authenticated; collecting parameters and the key until `ReadyForQuery`.
    Starting,
}

/// What startup learned, handed to the driver.
struct Started {
    key: CancelKey,
    parameters: HashMap<String, String>,
}

impl Client {
    /// Connects on the current shard and starts the connection's driver task there.
    pub async fn connect(
        config: &ConnectConfig,
        options: &ConnectOptions,
    ) -> Result<Client, Error> {
        let context = format!(
            "connecting to {} as {} (database {})",
            config.address(),
            config.user,
            config.dbname
        );
        let timeout = options.connect_timeout;
        let attempt = future::or(start(config, options.tcp_timeout), async {
            glommio::timer::sleep(timeout).await;
            Err(Error::connect(
                format!("no answer within {} ms", timeout.as_millis()),
                None,
            ))
        });
        let (socket, input, started) = attempt.await.map_err(|e| e.context(&context))?;

        let (requests_tx, requests_rx) = mailbox::channel(None);
        let shared = Rc::new(Shared {
            state: Cell::new(ConnState::Open),
            close_reason: RefCell::new(None),
            parameters: RefCell::new(started.parameters),
            transaction_status: Cell::new(b'I'),
            pending: Cell::new(0),
            cancel_key: started.key,
            notifications: RefCell::new(None),
            statements: RefCell::new(StatementCache::new(options.statement_cache)),
        });
        // The driver runs in the executor's default task queue whoever opened the connection,
        // so a connection opened by a client's task is not starved along with that task's
        // queue (the server keeps client connections in a queue of their own).
        let driver = Driver::new(socket, input, shared.clone(), requests_rx).run();
        glommio::spawn_local_into(driver, glommio::TaskQueueHandle::default())
            .map_err(|e| {
                Error::connect(format!("cannot start the connection's driver: {e}"), None)
            })?
            .detach();
        Ok(Client::new(shared, requests_tx, options.notify_queue))
    }
}

/// The startup exchange, tried as `sslmode` says (libpq's `prefer` tries the clear after a
/// failed TLS attempt, `allow` tries TLS after a failed clear one); returns the socket, bytes
/// already read past `ReadyForQuery`, and what the server told us.
async fn start(
    config: &ConnectConfig,
    tcp_timeout: Duration,
) -> Result<(Socket, BytesMut, Started), Error> {
    let attempts = config.tls.attempts(&config.host);
    let mut failure: Option<Error> = None;
    for &negotiate in attempts {
        match start_once(config, tcp_timeout, negotiate).await {
            Ok(started) => return Ok(started),
            // Every attempt's reason is told, as libpq does: the last one alone may hide
            // the cause (a TLS refusal, then a plain connection pg_hba does not admit).
            Err(e) => {
                let how = match negotiate {
                    Negotiate::Plain => "in the clear",
                    Negotiate::IfOffered | Negotiate::Required => "over TLS",
                };
                let e = e.context(how);
                failure = Some(match failure {
                    None => e,
                    Some(earlier) => e.context(format_args!("{}; then", earlier.message())),
                });
            }
        }
    }
    Err(failure.expect("every mode makes at least one attempt"))
}

async fn start_once(
    config: &ConnectConfig,
    tcp_timeout: Duration,
    negotiate: Negotiate,
) -> Result<(Socket, BytesMut, Started), Error> {
    let mut socket = Socket::open(config, tcp_timeout, negotiate).await?;
    let binding_mode = config.tls.channel_binding;
    // Read before the exchange: whether, and to what, SCRAM can bind.
    let mut end_point = match binding_mode {
        ChannelBindingMode::Disable => None,
        _ => socket.server_end_point(),
    };
    let mut out = BytesMut::new();
    let params = [
        ("user", config.user.as_str()),
        ("database", config.dbname.as_str()),
        ("application_name", config.application_name.as_str()),
        // Rows are handed out as &str: ask for UTF-8 whatever the database encoding.
        ("client_encoding", "UTF8"),
    ];
    let replication = config.replication.then_some(("replication", "database"));
    frontend::startup_message(params.iter().copied().chain(replication), &mut out)
        .map_err(|e| Error::config(format!("startup parameters: {e}")))?;
    send(&mut socket, &mut out).await?;

    let mut input = BytesMut::new();
    let mut phase = Phase::Authenticating;
    let mut started = Started {
        key: CancelKey {
            process_id: 0,
            secret_key: 0,
        },
        parameters: HashMap::new(),
    };
    loop {
        let message = read(&mut socket, &mut input).await?;
        phase = match (phase, message) {
            (_, Message::ErrorResponse(body)) => {
                let db = DbError::parse(&mut body.fields()).ok();
                return Err(Error::connect("the server refused", db));
            }
            (phase, Message::NoticeResponse(body)) => {
                log_notice(&mut body.fields());
                phase
            }
            // With channel_binding=require, only a SCRAM exchange bound to this TLS
            // connection's certificate shows the server is the one we meant.
            (
                Phase::Authenticating | Phase::ScramVerified { bound: false },
                Message::AuthenticationOk,
            ) if binding_mode == ChannelBindingMode::Require => {
                return Err(Error::connect(
                    "channel_binding=require, but the server authenticated us without a SCRAM \
                     exchange bound to the TLS connection",
                    None,
                ));
            }
            // Not from `Scram`: a server that skips its final signature has not shown that
            // it knows the password, and may be anyone between us and the real one.
            (Phase::Authenticating | Phase::ScramVerified { .. }, Message::AuthenticationOk) => {
                Phase::Starting
            }
            (Phase::Scram { .. }, Message::AuthenticationOk) => {
                return Err(Error::connect(
                    "the server accepted the SCRAM exchange without proving it knows the \
                     password (no final signature)",
                    None,
                ));
            }
            // Refused before the password goes out: a server that asks for it this way may
            // be the impostor channel binding is there to unmask.
            (
                Phase::Authenticating,
                Message::AuthenticationCleartextPassword | Message::AuthenticationMd5Password(_),
            ) if binding_mode == ChannelBindingMode::Require => {
                return Err(Error::connect(
                    "channel_binding=require, but the server asks for a password (password or \
                     md5 authentication) instead of a SCRAM exchange bound to the TLS \
                     connection; the password was not sent",
                    None,
                ));
            }
            (Phase::Authenticating, Message::AuthenticationCleartextPassword) => {
                frontend::password_message(password(config, "password")?, &mut out)
                    .map_err(|e| Error::config(e.to_string()))?;
                send(&mut socket, &mut out).await?;
                Phase::Authenticating
            }
            (Phase::Authenticating, Message::AuthenticationMd5Password(body)) => {
                let hash = md5_hash(
                    config.user.as_bytes(),
                    password(config, "md5")?,
                    body.salt(),
                );
                frontend::password_message(hash.as_bytes(), &mut out)
                    .map_err(|e| Error::config(e.to_string()))?;
                send(&mut socket, &mut out).await?;
                Phase::Authenticating
            }
            (Phase::Authenticating, Message::AuthenticationSasl(body)) => {
                let mut mechanisms = body.mechanisms();
                let (mut plain, mut plus) = (false, false);
                while let Some(m) = mechanisms.next().map_err(bad_message)? {
                    plain |= m == sasl::SCRAM_SHA_256;
                    plus |= m == sasl::SCRAM_SHA_256_PLUS;
                }
                // RFC 5802's flags: `p` binds; `y` says we could have bound but the server
                // offered no PLUS (so a server that did offer it sees the downgrade); `n`
                // says we cannot bind at all.
                let (mechanism, binding, bound) = match (binding_mode, end_point.take(), plus) {
                    (ChannelBindingMode::Disable, _, _) => {
                        (sasl::SCRAM_SHA_256, ChannelBinding::unsupported(), false)
                    }
                    (_, Some(data), true) => (
                        sasl::SCRAM_SHA_256_PLUS,
                        ChannelBinding::tls_server_end_point(data),
                        true,
                    ),
                    (ChannelBindingMode::Require, _, _) => {
                        return Err(Error::connect(
                            if socket.is_tls() {
                                "channel_binding=require, but the server offers no SCRAM with \
                                 channel binding (SCRAM-SHA-256-PLUS) for this certificate"
                            } else {
                                "channel_binding=require, but the connection is not TLS"
                            },
                            None,
                        ));
                    }
                    (ChannelBindingMode::Prefer, Some(_), false) => {
                        (sasl::SCRAM_SHA_256, ChannelBinding::unrequested(), false)
                    }
                    (ChannelBindingMode::Prefer, None, _) => {
                        (sasl::SCRAM_SHA_256, ChannelBinding::unsupported(), false)
                    }
                };
                if mechanism == sasl::SCRAM_SHA_256 && !plain {
                    return Err(Error::connect(
                        "the server offers no SASL mechanism this client can use here \
                         (SCRAM-SHA-256, or SCRAM-SHA-256-PLUS over TLS)",
                        None,
                    ));
                }
                let password = password(config, "scram-sha-256")?;
                let scram = ScramSha256::new(password, binding);
                frontend::sasl_initial_response(mechanism, scram.message(), &mut out)
                    .map_err(|e| Error::config(e.to_string()))?;
                send(&mut socket, &mut out).await?;
                Phase::Scram {
                    scram: Box::new(scram),
                    bound,
                }
            }
            (Phase::Scram { mut scram, bound }, Message::AuthenticationSaslContinue(body)) => {
                scram
                    .update(body.data())
                    .map_err(|e| Error::connect(format!("SCRAM exchange failed: {e}"), None))?;
                frontend::sasl_response(scram.message(), &mut out)
                    .map_err(|e| Error::config(e.to_string()))?;
                send(&mut socket, &mut out).await?;
                Phase::Scram { scram, bound }
            }
            (Phase::Scram { mut scram, bound }, Message::AuthenticationSaslFinal(body)) => {
                // Verifies the server's signature: it proves the server knows the password
                // too, so a man in the middle cannot fake the exchange.
                scram.finish(body.data()).map_err(|e| {
                    Error::connect(format!("the server's SCRAM signature is wrong: {e}"), None)
                })?;
                Phase::ScramVerified { bound }
            }
            (
                Phase::Authenticating,
                Message::AuthenticationGss
                | Message::AuthenticationSspi
                | Message::AuthenticationKerberosV5
                | Message::AuthenticationScmCredential,
            ) => {
                return Err(Error::connect(
                    "the server asks for GSS/SSPI/Kerberos authentication, which this client \
                     does not support; use scram-sha-256, md5, password or trust in pg_hba.conf",
                    None,
                ));
            }
            (Phase::Starting, Message::BackendKeyData(body)) => {
                started.key = CancelKey {
                    process_id: body.process_id(),
                    secret_key: body.secret_key(),
                };
                Phase::Starting
            }
            (Phase::Starting, Message::ParameterStatus(body)) => {
                let (name, value) = (body.name().map_err(bad_message)?, body.value());
                started
                    .parameters
                    .insert(name.to_owned(), value.map_err(bad_message)?.to_owned());
                Phase::Starting
            }
            (Phase::Starting, Message::ReadyForQuery(_)) => return Ok((socket, input, started)),
            (_, other) => return Err(super::query::unexpected(&other, "starting up")),
        };
    }
}

fn password<'a>(config: &'a ConnectConfig, method: &str) -> Result<&'a [u8], Error> {
    config
        .password
        .as_deref()
        .map(str::as_bytes)
        .ok_or_else(|| {
            Error::config(format!(
                "the server asks for {method} authentication but the database URL has no password"
            ))
        })
}

fn bad_message(e: std::io::Error) -> Error {
    Error::protocol(format!("malformed startup message: {e}"))
}

async fn send(socket: &mut Socket, out: &mut BytesMut) -> Result<(), Error> {
    let failed = |e: std::io::Error| Error::connect(format!("writing: {e}"), None);
    socket.write_all(out).await.map_err(failed)?;
    socket.flush().await.map_err(failed)?;
    out.clear();
    Ok(())
}

async fn read(socket: &mut Socket, input: &mut BytesMut) -> Result<Message, Error> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(message) = Message::parse(input).map_err(bad_message)? {
            return Ok(message);
        }
        let n = socket
            .read(&mut chunk)
            .await
            .map_err(|e| Error::connect(format!("reading: {e}"), None))?;
        if n == 0 {
            return Err(Error::connect(
                "the server closed the connection during startup",
                None,
            ));
        }
        input.extend_from_slice(&chunk[..n]);
    }
}
