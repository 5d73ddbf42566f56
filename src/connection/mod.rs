//! One accepted socket, from its first byte to its close.
//!
//! A connection starts in the HTTP phase ([`serve`]): it reads request heads (and bodies)
//! under a deadline, answers plain requests, and keeps the connection alive between them.
//! An upgrade request hands the socket to the WebSocket phase ([`websocket::WsConn`]), which
//! drives the frame codec, the close handshake and the graphql-ws session until the socket
//! closes.

pub mod compiled;
mod deadlines;
mod graphql_http;
mod operations;
mod rate;
mod websocket;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::timer::Timer;

use crate::auth::{Auth, AuthError};
use crate::config::Config;
use crate::engine::Engine;
use crate::http::{self, RequestHead, Response, Route, Status};
use crate::live::Registry;
use crate::metrics::ShardMetrics;
use crate::outbox::Outbox;

/// Bytes asked of the socket per read in the HTTP phase.
const HTTP_READ_CHUNK: usize = 4096;

/// What every connection on a shard shares: read-only after start-up.
pub struct ShardContext {
    pub config: Config,
    pub auth: std::sync::Arc<Auth>,
    /// Every shard's metrics; this shard writes only `all_metrics[index]`.
    pub all_metrics: std::sync::Arc<[ShardMetrics]>,
    pub index: usize,
    /// The GraphQL engine over the current catalog.
    pub engine: RefCell<std::sync::Arc<Engine>>,
    /// This shard's PostgreSQL connections: the primary's pool and any read replicas'.
    pub db: Rc<crate::replicas::Database>,
    /// This shard's live queries.
    pub live: Rc<RefCell<Registry>>,
    /// Subscriptions compiled lately, for identical subscribes to reuse.
    pub compiled: RefCell<compiled::CompiledCache>,
    /// Which browser origins may call the server (`POSTRUST_CORS_ORIGINS`).
    pub cors: crate::cors::Cors,
    /// The shard's open connections, by id (see [`Registered`]).
    pub connections: RefCell<HashMap<u64, Rc<Outbox>>>,
}

impl ShardContext {
    /// This shard's own metrics.
    pub fn metrics(&self) -> &ShardMetrics {
        &self.all_metrics[self.index]
    }
}

/// 401 with a GraphQL-shaped error carrying the auth error's code (RFC 6750 challenge).
fn unauthorized(err: &AuthError) -> Response {
    let mut body = String::from("{\"errors\":[");
    body.push_str(
        &crate::protocol::GraphQLError::server(
            crate::protocol::ErrorCode::Auth(err.code()),
            err.to_string(),
        )
        .to_json(),
    );
    body.push_str("]}");
    Response::json(Status::Unauthorized, body).with_header(format!(
        "WWW-Authenticate: Bearer error=\"invalid_token\", error_description=\"{err}\""
    ))
}

/// How the HTTP phase ended.
enum End {
    /// The client asked for a WebSocket and got one.
    Upgraded {
        stream: TcpStream,
        /// Bytes the client sent after its upgrade request.
        leftover: Vec<u8>,
        protocol: Option<crate::websocket::SubProtocol>,
        authorization: Option<String>,
    },
    /// The client closed or the exchange finished.
    Finished,
    /// The client was too slow to send its request.
    Timeout,
    Io(std::io::Error),
}

/// An open connection's place in its shard: its entry in the shard's table of connections
/// (through which shutdown reaches its outbox) and its count in the metrics. Both are given
/// up when this is dropped, whichever phase the connection ends in.
pub struct Registered {
    pub shard: Rc<ShardContext>,
    pub outbox: Rc<Outbox>,
    id: u64,
}

impl Registered {
    pub fn new(shard: Rc<ShardContext>, id: u64) -> Registered {
        let outbox = Rc::new(Outbox::new(shard.config.db_statements_per_connection.0));
        shard
            .connections
            .borrow_mut()
            .insert(id, Rc::clone(&outbox));
        shard.metrics().connections_open.inc();
        Registered { shard, outbox, id }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shard.connections.borrow_mut().remove(&self.id);
        self.shard.metrics().connections_open.dec();
    }
}

/// Serves one accepted socket until it closes or becomes a WebSocket, which goes on in a
/// task of its own: a task's future is as large as its largest state, and the HTTP phase's
/// buffers must not stay with a WebSocket that lives for days.
pub async fn serve(conn: Registered, stream: TcpStream) {
    // Looked up for the debug log only: otherwise a system call and an allocation on
    // every accepted connection.
    let peer = Peer(
        log::log_enabled!(log::Level::Debug)
            .then(|| stream.peer_addr().ok())
            .flatten(),
    );
    let _ = stream.set_nodelay(true);
    match serve_http(stream, &conn.shard, &conn.outbox).await {
        End::Upgraded {
            stream,
            leftover,
            protocol,
            authorization,
        } => {
            let metrics = conn.shard.metrics();
            match protocol {
                Some(crate::websocket::SubProtocol::TransportWs) => {
                    metrics.websockets_transport.inc()
                }
                Some(crate::websocket::SubProtocol::Legacy) => metrics.websockets_legacy.inc(),
                None => {}
            }
            log::debug!("{peer}: upgraded to a websocket");
            websocket::spawn(websocket::Upgrade {
                stream,
                leftover,
                protocol,
                authorization,
                conn,
            });
        }
        End::Finished => log::debug!("{peer}: closed"),
        End::Timeout => log::debug!("{peer}: dropped, request not complete in time"),
        End::Io(err) => log::debug!("{peer}: {err}"),
    }
}

/// A client's address in log lines; `?` when unknown or not looked up.
struct Peer(Option<std::net::SocketAddr>);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("?"),
        }
    }
}

/// Answers a connection the shard has no room for with 503 and closes it.
pub async fn refuse_full(mut stream: TcpStream) {
    let resp = Response::error(Status::ServiceUnavailable, "server at its connection limit")
        .with_header("Retry-After: 1")
        .closing();
    let mut out = Vec::new();
    resp.encode(false, &mut out);
    let _ = stream.write_all(&out).await;
}

/// What reading a request produced.
enum Read {
    /// Boxed: a head is ten times the size of the other variants.
    Request {
        head: Box<RequestHead>,
        body: Vec<u8>,
    },
    /// The client closed before starting another request.
    Closed,
    /// Answer with this error and close.
    Refuse(Response),
}

async fn serve_http(mut stream: TcpStream, shard: &ShardContext, outbox: &Outbox) -> End {
    let config = &shard.config;
    let mut buf = Vec::new();
    loop {
        if outbox.is_going_away() {
            return End::Finished;
        }
        // The deadline covers the whole request, head and body, so a client that trickles
        // bytes (slow loris) is dropped as surely as one that sends nothing.
        let deadline = config.request_timeout.0;
        let read = future::or(
            async { Some(read_request(&mut stream, &mut buf, config).await) },
            future::or(
                async {
                    Timer::new(deadline).await;
                    None
                },
                async {
                    outbox.gone_away().await;
                    Some(Ok(Read::Closed))
                },
            ),
        )
        .await;
        let (head, body) = match read {
            None if buf.is_empty() => return End::Timeout,
            None => {
                let resp = Response::error(Status::RequestTimeout, "request not complete in time");
                return finish(&mut stream, resp.closing(), false, End::Timeout).await;
            }
            Some(Err(err)) => return End::Io(err),
            Some(Ok(Read::Closed)) => return End::Finished,
            Some(Ok(Read::Refuse(resp))) => {
                return finish(&mut stream, resp.closing(), false, End::Finished).await;
            }
            Some(Ok(Read::Request { head, body })) => (head, body),
        };
        let head_only = head.method() == http::Method::Head;
        let route = http::route(&head);
        let preflight = matches!(route, Route::Preflight);
        let response = match route {
            Route::Upgrade if !shard.cors.allows_upgrade(&head) => {
                let refused =
                    Response::error(Status::Forbidden, "this origin may not open a WebSocket");
                return finish(&mut stream, refused.closing(), false, End::Finished).await;
            }
            Route::Upgrade => {
                return match crate::websocket::accept(&head) {
                    Ok((handshake, protocol)) => {
                        if let Err(err) = stream.write_all(&handshake).await {
                            return End::Io(err);
                        }
                        End::Upgraded {
                            stream,
                            leftover: std::mem::take(&mut buf),
                            protocol,
                            authorization: head.authorization.clone(),
                        }
                    }
                    Err(resp) => finish(&mut stream, resp.closing(), false, End::Finished).await,
                };
            }
            Route::Health => Response::json(Status::Ok, "{\"status\":\"ok\"}"),
            Route::Metrics => Response {
                content_type: "text/plain; version=0.0.4",
                ..Response::json(Status::Ok, crate::metrics::render(&shard.all_metrics))
            },
            Route::GraphqlPost | Route::GraphqlGet => {
                let request = if head.method() == http::Method::Post {
                    graphql_http::post_request(&head, &body, config.max_input_depth.0)
                } else {
                    graphql_http::get_request(&head, config.max_input_depth.0)
                };
                match request {
                    Ok(request) => {
                        let answer = graphql_http::respond(shard, &head, request);
                        match unless_client_leaves(&mut stream, &mut buf, config, answer).await {
                            Some(response) => response,
                            // Dropping the answer cancels its statement.
                            None => return End::Finished,
                        }
                    }
                    Err(resp) => resp,
                }
            }
            Route::Preflight => shard.cors.preflight(&head),
            Route::Playground(asset) if config.playground => crate::playground::response(asset),
            Route::Playground(_) => Response::error(Status::NotFound, "not found"),
            Route::Respond(resp) => resp,
        };
        // A preflight's answer carries its grant already; a second one would be refused.
        let response = if preflight {
            response
        } else {
            shard.cors.decorate(&head, response)
        };
        let response = if head.keep_alive() {
            response
        } else {
            response.closing()
        };
        let mut out = Vec::new();
        response.encode(head_only, &mut out);
        if let Err(err) = stream.write_all(&out).await {
            return End::Io(err);
        }
        if response.close {
            return End::Finished;
        }
    }
}

/// Waits for `answer` while watching the socket: `None` if the client closes it first.
/// Bytes a client pipelines meanwhile are kept in `buf` for the next request, up to one
/// request's worth; past that the socket is no longer read until the answer is sent.
async fn unless_client_leaves<T>(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    config: &Config,
    answer: impl std::future::Future<Output = T>,
) -> Option<T> {
    let room = config.max_header_bytes + config.max_body_bytes;
    future::or(async { Some(answer.await) }, async {
        loop {
            if buf.len() > room {
                future::pending::<()>().await;
            }
            match read_more(stream, buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    })
    .await
}

/// Writes a final response and ends the connection.
async fn finish(stream: &mut TcpStream, resp: Response, head_only: bool, end: End) -> End {
    let mut out = Vec::new();
    resp.encode(head_only, &mut out);
    match stream.write_all(&out).await {
        Ok(()) => end,
        Err(err) => End::Io(err),
    }
}

/// Reads one request head and its body. Bytes after them stay in `buf` for the next
/// request (or as the first WebSocket bytes after an upgrade).
async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    config: &Config,
) -> std::io::Result<Read> {
    let (head, head_len) = loop {
        if !buf.is_empty() {
            match http::parse_head(buf, config.max_header_bytes) {
                Ok(Some(parsed)) => break parsed,
                Ok(None) => {}
                Err(err) => return Ok(Read::Refuse(Response::error(err.status(), err.message()))),
            }
        }
        if read_more(stream, buf).await? == 0 {
            return Ok(if buf.is_empty() {
                Read::Closed
            } else {
                Read::Refuse(Response::error(Status::BadRequest, "incomplete request"))
            });
        }
    };
    buf.drain(..head_len);
    let body_len = head.content_length.unwrap_or(0);
    if body_len > config.max_body_bytes {
        return Ok(Read::Refuse(Response::error(
            Status::PayloadTooLarge,
            &format!("request body over {} bytes", config.max_body_bytes),
        )));
    }
    while buf.len() < body_len {
        if read_more(stream, buf).await? == 0 {
            return Ok(Read::Closed);
        }
    }
    let body = buf.drain(..body_len).collect();
    Ok(Read::Request {
        head: Box::new(head),
        body,
    })
}

/// Appends what one read returns. Cancellation-safe: `buf` changes only after the read
/// completed, so the request deadline can drop this future at any point.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; HTTP_READ_CHUNK];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}
