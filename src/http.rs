//! HTTP/1.1 request heads, parsed by hand with `httparse`, routing, and responses.
//!
//! Pure: bytes in, values out. The connection driver feeds it the bytes it has read so far
//! and gets back either "need more", a parsed head, or an error that maps to a status code.
//! Only the headers the server acts on are kept; everything else is skipped.

use std::fmt::Write as _;

/// Most headers a request may carry; more is treated like an oversized head (431).
const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Options,
    Other,
}

/// The parts of a request head the server acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Option<Method>,
    /// Path without the query string, e.g. `/graphql`.
    pub path: String,
    /// Raw query string after `?`, if any.
    pub query: Option<String>,
    /// Minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub minor_version: u8,
    /// `Upgrade: websocket` was present (case-insensitive).
    pub upgrade_websocket: bool,
    /// The `Connection` header lists `upgrade`.
    pub connection_upgrade: bool,
    /// The `Connection` header lists `close`.
    pub connection_close: bool,
    pub websocket_key: Option<String>,
    pub websocket_version: Option<String>,
    /// Sub-protocols offered in `Sec-WebSocket-Protocol`, in the client's order.
    pub websocket_protocols: Vec<String>,
    pub authorization: Option<String>,
    pub content_length: Option<usize>,
    pub content_type: Option<String>,
    /// `Origin`: the page's origin, sent by browsers (see `cors`).
    pub origin: Option<String>,
    /// `Host`: the authority the client addressed.
    pub host: Option<String>,
    /// `Access-Control-Request-Method`: present on a CORS preflight.
    pub access_control_request_method: Option<String>,
    /// `Access-Control-Request-Headers`: the headers a preflight asks to send.
    pub access_control_request_headers: Option<String>,
}

impl RequestHead {
    pub fn method(&self) -> Method {
        self.method.unwrap_or(Method::Other)
    }

    /// Whether the connection may carry another request after this one.
    pub fn keep_alive(&self) -> bool {
        self.minor_version >= 1 && !self.connection_close
    }
}

/// Why a request head was refused; each maps to one status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// The head is larger than the configured limit (or has too many headers): 431.
    TooLarge,
    /// Not valid HTTP/1.x: 400.
    Malformed(&'static str),
    /// A `Transfer-Encoding` header: 501. Without decoding it the body's end is unknown, and
    /// reading the body as the next request would let a proxy in front, which does decode
    /// it, smuggle a request past its own checks; so the connection is closed instead.
    TransferEncoding,
}

impl HeadError {
    pub fn status(&self) -> Status {
        match self {
            HeadError::TooLarge => Status::HeaderFieldsTooLarge,
            HeadError::Malformed(_) => Status::BadRequest,
            HeadError::TransferEncoding => Status::NotImplemented,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            HeadError::TooLarge => "request header fields too large",
            HeadError::Malformed(why) => why,
            HeadError::TransferEncoding => {
                "Transfer-Encoding is not supported: send the body with Content-Length"
            }
        }
    }
}

/// Parses a request head from the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete and still within `max_bytes`, and
/// `Ok(Some((head, len)))` once complete, where `len` is the number of bytes the head took
/// (the body, if any, starts there).
pub fn parse_head(buf: &[u8], max_bytes: usize) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let status = match req.parse(buf) {
        Ok(status) => status,
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed("malformed HTTP request")),
    };
    let len = match status {
        httparse::Status::Partial if buf.len() > max_bytes => return Err(HeadError::TooLarge),
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(len) if len > max_bytes => return Err(HeadError::TooLarge),
        httparse::Status::Complete(len) => len,
    };

    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (target, None),
    };
    let mut head = RequestHead {
        method: Some(match req.method.unwrap_or("") {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }),
        path: path.to_owned(),
        query,
        minor_version: req.version.unwrap_or(1),
        ..RequestHead::default()
    };

    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| HeadError::Malformed("header value is not UTF-8"))?
            .trim();
        let name = h.name;
        if name.eq_ignore_ascii_case("upgrade") {
            head.upgrade_websocket |= tokens(value).any(|t| t.eq_ignore_ascii_case("websocket"));
        } else if name.eq_ignore_ascii_case("connection") {
            for t in tokens(value) {
                head.connection_upgrade |= t.eq_ignore_ascii_case("upgrade");
                head.connection_close |= t.eq_ignore_ascii_case("close");
            }
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            head.websocket_key = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            head.websocket_version = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            head.websocket_protocols
                .extend(tokens(value).map(str::to_owned));
        } else if name.eq_ignore_ascii_case("authorization") {
            head.authorization = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse()
                .map_err(|_| HeadError::Malformed("invalid Content-Length"))?;
            if head.content_length.is_some_and(|prev| prev != n) {
                return Err(HeadError::Malformed("conflicting Content-Length headers"));
            }
            head.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("content-type") {
            head.content_type = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("origin") {
            head.origin = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("host") {
            head.host = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("access-control-request-method") {
            head.access_control_request_method = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("access-control-request-headers") {
            head.access_control_request_headers = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HeadError::TransferEncoding);
        }
    }
    Ok(Some((head, len)))
}

/// Comma-separated header tokens, trimmed, empty ones skipped.
fn tokens(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|t| !t.is_empty())
}

/// The status codes the server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    SwitchingProtocols,
    NoContent,
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    LengthRequired,
    PayloadTooLarge,
    UnsupportedMediaType,
    UpgradeRequired,
    HeaderFieldsTooLarge,
    InternalServerError,
    NotImplemented,
    ServiceUnavailable,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::NoContent => 204,
            Status::SwitchingProtocols => 101,
            Status::BadRequest => 400,
            Status::Unauthorized => 401,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::LengthRequired => 411,
            Status::PayloadTooLarge => 413,
            Status::UnsupportedMediaType => 415,
            Status::UpgradeRequired => 426,
            Status::HeaderFieldsTooLarge => 431,
            Status::InternalServerError => 500,
            Status::NotImplemented => 501,
            Status::ServiceUnavailable => 503,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::NoContent => "No Content",
            Status::SwitchingProtocols => "Switching Protocols",
            Status::BadRequest => "Bad Request",
            Status::Unauthorized => "Unauthorized",
            Status::Forbidden => "Forbidden",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::LengthRequired => "Length Required",
            Status::PayloadTooLarge => "Payload Too Large",
            Status::UnsupportedMediaType => "Unsupported Media Type",
            Status::UpgradeRequired => "Upgrade Required",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::InternalServerError => "Internal Server Error",
            Status::NotImplemented => "Not Implemented",
            Status::ServiceUnavailable => "Service Unavailable",
        }
    }
}

/// A complete response, ready to be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    pub content_type: &'static str,
    /// Extra header lines, each `Name: value` without the line ending.
    pub headers: Vec<String>,
    pub body: Vec<u8>,
    /// Ask the client to close (and close after writing).
    pub close: bool,
}

impl Response {
    pub fn json(status: Status, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.into(),
            close: false,
        }
    }

    /// No body at all (204).
    pub fn empty(status: Status) -> Response {
        Response::json(status, Vec::new())
    }

    /// A short error body: `{"error":"<message>"}`.
    pub fn error(status: Status, message: &str) -> Response {
        let mut body = String::from("{\"error\":");
        crate::graphql::json::quote(message, &mut body);
        body.push('}');
        Response::json(status, body)
    }

    pub fn with_header(mut self, line: impl Into<String>) -> Response {
        self.headers.push(line.into());
        self
    }

    pub fn closing(mut self) -> Response {
        self.close = true;
        self
    }

    /// Status line, headers and body. A `HEAD` request gets the same head without the body.
    pub fn encode(&self, head_only: bool, out: &mut Vec<u8>) {
        let mut text = String::with_capacity(160);
        let _ = write!(
            text,
            "HTTP/1.1 {} {}\r\n",
            self.status.code(),
            self.status.reason()
        );
        // A 204 has no body and says nothing about one (RFC 9110 8.6).
        if self.status != Status::NoContent {
            let _ = write!(
                text,
                "Content-Type: {}\r\nContent-Length: {}\r\n",
                self.content_type,
                self.body.len()
            );
        }
        for line in &self.headers {
            text.push_str(line);
            text.push_str("\r\n");
        }
        if self.close {
            text.push_str("Connection: close\r\n");
        }
        text.push_str("\r\n");
        out.extend_from_slice(text.as_bytes());
        if !head_only {
            out.extend_from_slice(&self.body);
        }
    }
}

/// The value of parameter `name` in a query string, percent-decoded (`+` is a space).
/// `None` when absent or not valid UTF-8 once decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key)? == name)
            .then(|| percent_decode(value))
            .flatten()
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// What the server does with a request, decided from its head alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /health`.
    Health,
    /// `GET /metrics`.
    Metrics,
    /// `GET /graphql` asking for a WebSocket upgrade.
    Upgrade,
    /// `POST /graphql`, once its body has been read.
    GraphqlPost,
    /// `GET /graphql?query=…`: a query in the URL.
    GraphqlGet,
    /// `OPTIONS /graphql`: a CORS preflight, or a question about the methods.
    Preflight,
    /// `GET /` and `GET /playground/<file>`: the playground's page and files, when it is on.
    Playground(&'static crate::playground::Asset),
    /// A request answered at once with this response.
    Respond(Response),
}

pub fn route(head: &RequestHead) -> Route {
    let method = head.method();
    match head.path.as_str() {
        "/health" => match method {
            Method::Get | Method::Head => Route::Health,
            _ => not_allowed("GET, HEAD"),
        },
        "/metrics" => match method {
            Method::Get | Method::Head => Route::Metrics,
            _ => not_allowed("GET, HEAD"),
        },
        "/graphql" => match method {
            Method::Get if head.upgrade_websocket => Route::Upgrade,
            Method::Get | Method::Head
                if head
                    .query
                    .as_deref()
                    .is_some_and(|q| query_param(q, "query").is_some()) =>
            {
                Route::GraphqlGet
            }
            Method::Get | Method::Head => Route::Respond(
                Response::error(
                    Status::UpgradeRequired,
                    "GET /graphql is for WebSocket subscriptions: send Upgrade: websocket, or POST a query",
                )
                .with_header("Upgrade: websocket")
                .with_header("Connection: Upgrade"),
            ),
            Method::Post => Route::GraphqlPost,
            Method::Options => Route::Preflight,
            Method::Other => not_allowed("GET, POST, OPTIONS"),
        },
        path if crate::playground::owns(path) => match (method, crate::playground::asset(path)) {
            (Method::Get | Method::Head, Some(asset)) => Route::Playground(asset),
            (Method::Get | Method::Head, None) => not_found(),
            _ => not_allowed("GET, HEAD"),
        },
        _ => not_found(),
    }
}

fn not_found() -> Route {
    Route::Respond(Response::error(Status::NotFound, "not found"))
}

fn not_allowed(allow: &str) -> Route {
    Route::Respond(
        Response::error(Status::MethodNotAllowed, "method not allowed")
            .with_header(format!("Allow: {allow}")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &[u8] = b"GET /graphql HTTP/1.1\r\n\
        Host: localhost:3000\r\n\
        Upgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Protocol: graphql-transport-ws, graphql-ws\r\n\
        Authorization: Bearer abc\r\n\r\n";

    fn parse(bytes: &[u8]) -> RequestHead {
        parse_head(bytes, 8192).unwrap().unwrap().0
    }

    #[test]
    fn a_transfer_encoding_is_refused_whatever_the_path_or_method() {
        for request in [
            &b"POST /graphql HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"GET /health HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            b"POST /graphql HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            let err = parse_head(request, 8192).unwrap_err();
            assert_eq!(err, HeadError::TransferEncoding);
            assert_eq!(err.status(), Status::NotImplemented);
        }
    }

    #[test]
    fn parses_a_websocket_upgrade() {
        let (head, len) = parse_head(UPGRADE, 8192).unwrap().unwrap();
        assert_eq!(len, UPGRADE.len());
        assert_eq!(head.method(), Method::Get);
        assert_eq!(head.path, "/graphql");
        assert!(head.upgrade_websocket && head.connection_upgrade);
        assert_eq!(
            head.websocket_key.as_deref(),
            Some("dGhlIHNhbXBsZSBub25jZQ==")
        );
        assert_eq!(head.websocket_version.as_deref(), Some("13"));
        assert_eq!(
            head.websocket_protocols,
            ["graphql-transport-ws", "graphql-ws"]
        );
        assert_eq!(head.authorization.as_deref(), Some("Bearer abc"));
        assert_eq!(route(&head), Route::Upgrade);
    }

    #[test]
    fn incomplete_heads_wait_for_more_bytes() {
        for cut in [0, 1, 10, UPGRADE.len() - 1] {
            assert_eq!(parse_head(&UPGRADE[..cut], 8192), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn oversized_heads_are_refused_complete_or_not() {
        assert_eq!(parse_head(UPGRADE, 64), Err(HeadError::TooLarge));
        assert_eq!(parse_head(&UPGRADE[..100], 64), Err(HeadError::TooLarge));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&many, 1 << 20), Err(HeadError::TooLarge));
        assert_eq!(HeadError::TooLarge.status().code(), 431);
    }

    #[test]
    fn garbage_is_a_bad_request() {
        let err = parse_head(
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
            8192,
        )
        .unwrap_err();
        assert_eq!(err.status(), Status::BadRequest);
        let err =
            parse_head(b"POST /graphql HTTP/1.1\r\nContent-Length: x\r\n\r\n", 8192).unwrap_err();
        assert_eq!(err, HeadError::Malformed("invalid Content-Length"));
        let err = parse_head(
            b"POST /graphql HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            8192,
        )
        .unwrap_err();
        assert_eq!(
            err,
            HeadError::Malformed("conflicting Content-Length headers")
        );
    }

    #[test]
    fn routes_answer_with_the_right_status() {
        let status = |req: &[u8]| match route(&parse(req)) {
            Route::Respond(r) => r.status.code(),
            Route::Health | Route::Metrics => 200,
            Route::Upgrade => 101,
            Route::GraphqlPost | Route::GraphqlGet => 0,
            Route::Preflight => 204,
            Route::Playground(_) => 200,
        };
        assert_eq!(status(b"GET /health HTTP/1.1\r\n\r\n"), 200);
        assert_eq!(status(b"HEAD /health HTTP/1.1\r\n\r\n"), 200);
        assert_eq!(status(b"DELETE /health HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status(b"GET /nowhere HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 200);
        assert_eq!(
            status(b"HEAD /playground/playground.js HTTP/1.1\r\n\r\n"),
            200
        );
        assert_eq!(status(b"GET /playground/none.js HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), 405);
        assert_eq!(status(b"GET /graphql HTTP/1.1\r\n\r\n"), 426);
        assert_eq!(status(b"PUT /graphql HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status(b"OPTIONS /graphql HTTP/1.1\r\n\r\n"), 204);
        assert_eq!(
            status(b"POST /graphql HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"),
            0
        );
    }

    #[test]
    fn query_parameters_are_percent_decoded() {
        let q = "query=%7B%20users%20%7B%20id%20%7D%20%7D&operationName=A+B&x";
        assert_eq!(query_param(q, "query").as_deref(), Some("{ users { id } }"));
        assert_eq!(query_param(q, "operationName").as_deref(), Some("A B"));
        assert_eq!(query_param(q, "x").as_deref(), Some(""));
        assert_eq!(query_param(q, "variables"), None);
        assert_eq!(query_param("query=%zz", "query"), None, "bad escape");
        assert_eq!(query_param("query=%ff", "query"), None, "not UTF-8");
        let get = parse(b"GET /graphql?query=%7Busers%7Bid%7D%7D HTTP/1.1\r\n\r\n");
        assert_eq!(route(&get), Route::GraphqlGet);
    }

    #[test]
    fn query_strings_and_keep_alive() {
        let head = parse(b"GET /graphql?query=%7B%7D HTTP/1.0\r\n\r\n");
        assert_eq!(head.path, "/graphql");
        assert_eq!(head.query.as_deref(), Some("query=%7B%7D"));
        assert!(!head.keep_alive());
        assert!(parse(b"GET / HTTP/1.1\r\n\r\n").keep_alive());
        assert!(!parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive());
    }

    #[test]
    fn responses_encode_with_length_and_escaped_errors() {
        let mut out = Vec::new();
        Response::error(Status::NotFound, "no \"such\" path\n")
            .closing()
            .encode(false, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\
             Connection: close\r\n\r\n{\"error\":\"no \\\"such\\\" path\\n\"}"
        );
        let mut head_only = Vec::new();
        Response::json(Status::Ok, "{}").encode(true, &mut head_only);
        assert!(head_only.ends_with(b"Content-Length: 2\r\n\r\n"));
    }
}
