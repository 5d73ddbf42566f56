//! Cross-origin requests from browsers (the Fetch standard's CORS protocol), and the same
//! origin check on WebSocket upgrades.
//!
//! Pure, like `http`: a request head in, response headers or a verdict out. With
//! `POSTRUST_CORS_ORIGINS` unset, no CORS header is ever sent, so a browser lets only pages
//! of the server's own origin read its answers. With a list, a page of a listed origin may
//! call `POST` and `GET /graphql` with `Content-Type` and `Authorization`, and a WebSocket
//! upgrade that names an `Origin` outside the list is refused (403): browsers always send
//! `Origin` on WebSocket handshakes and no CORS check protects WebSockets otherwise, so this
//! is what keeps another site's page from subscribing with a visitor's network position.
//! Clients other than browsers send no `Origin` and are not affected. `*` allows any origin.

use crate::http::{RequestHead, Response, Status};

/// How long a browser may cache a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE_S: u32 = 86_400;

/// Headers a page may send when it asks with no list of its own.
const DEFAULT_ALLOWED_HEADERS: &str = "Content-Type, Authorization";

/// The origins allowed to call the server from a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// No CORS headers at all.
    Off,
    /// Every origin (`*`).
    Any,
    /// These origins, as browsers write them: `scheme://host[:port]`, lowercase.
    Origins(Vec<String>),
}

impl Cors {
    /// From `POSTRUST_CORS_ORIGINS`: empty, `*`, or a comma-separated list of origins.
    pub fn from_setting(value: &str) -> Result<Cors, String> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(Cors::Off);
        }
        if value == "*" {
            return Ok(Cors::Any);
        }
        let mut origins = Vec::new();
        // A trailing slash is forgiven: browsers never send one, people often write one.
        let given = value.split(',').map(|o| o.trim().trim_end_matches('/'));
        for origin in given.filter(|o| !o.is_empty()) {
            let valid = origin.split_once("://").is_some_and(|(scheme, rest)| {
                !scheme.is_empty() && !rest.is_empty() && !rest.contains('/')
            });
            if !valid || origin == "*" {
                return Err(format!(
                    "POSTRUST_CORS_ORIGINS: {origin:?} is not an origin such as \
                     https://app.example.com (or * alone, for any)"
                ));
            }
            origins.push(origin.to_ascii_lowercase());
        }
        Ok(Cors::Origins(origins))
    }

    /// Whether `origin` may call the server.
    fn allows(&self, origin: &str) -> bool {
        match self {
            Cors::Off => false,
            Cors::Any => true,
            Cors::Origins(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }

    /// The value of `Access-Control-Allow-Origin` for this request, if it gets one.
    fn allow_origin(&self, head: &RequestHead) -> Option<String> {
        let origin = head.origin.as_deref()?;
        match self {
            Cors::Any => Some("*".to_owned()),
            _ if self.allows(origin) => Some(origin.to_owned()),
            _ => None,
        }
    }

    /// The answer to `OPTIONS`: a preflight from an allowed origin gets the methods and
    /// headers it may use; any other `OPTIONS` just what the resource allows.
    pub fn preflight(&self, head: &RequestHead) -> Response {
        let mut response =
            Response::empty(Status::NoContent).with_header("Allow: GET, POST, OPTIONS");
        let Some(origin) = head.origin.as_deref() else {
            return response;
        };
        // Not a preflight, or CORS is off: no grant (a browser then refuses the call).
        if head.access_control_request_method.is_none() || *self == Cors::Off {
            return response;
        }
        if !self.allows(origin) {
            return Response::error(Status::Forbidden, "this origin may not call the server")
                .with_header("Vary: Origin");
        }
        let headers = head
            .access_control_request_headers
            .as_deref()
            .unwrap_or(DEFAULT_ALLOWED_HEADERS);
        for line in [
            format!(
                "Access-Control-Allow-Origin: {}",
                self.allow_origin(head).unwrap_or_default()
            ),
            "Access-Control-Allow-Methods: GET, POST, OPTIONS".to_owned(),
            format!("Access-Control-Allow-Headers: {headers}"),
            format!("Access-Control-Max-Age: {PREFLIGHT_MAX_AGE_S}"),
            "Vary: Origin, Access-Control-Request-Headers".to_owned(),
        ] {
            response = response.with_header(line);
        }
        response
    }

    /// Adds what a browser needs to hand `response` to the page that asked.
    pub fn decorate(&self, head: &RequestHead, response: Response) -> Response {
        if matches!(self, Cors::Off) || head.origin.is_none() {
            return response;
        }
        let response = response.with_header("Vary: Origin");
        match self.allow_origin(head) {
            Some(origin) => response.with_header(format!("Access-Control-Allow-Origin: {origin}")),
            None => response,
        }
    }

    /// Whether a WebSocket upgrade may proceed: without a list, or without an `Origin`
    /// (not a browser), or from an allowed origin, or from a page of this server itself
    /// (the playground: its origin's authority is the `Host` it connects to, whatever
    /// scheme a proxy in front terminates).
    pub fn allows_upgrade(&self, head: &RequestHead) -> bool {
        match (self, head.origin.as_deref()) {
            (Cors::Off | Cors::Any, _) | (_, None) => true,
            (_, Some(origin)) => self.allows(origin) || same_authority(origin, head),
        }
    }
}

/// `origin` (`scheme://authority`) names the authority of the request's `Host`.
fn same_authority(origin: &str, head: &RequestHead) -> bool {
    let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
    head.host
        .as_deref()
        .is_some_and(|host| !host.is_empty() && host.eq_ignore_ascii_case(authority))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_head;

    fn head(text: &str) -> RequestHead {
        parse_head(text.as_bytes(), 8192).unwrap().unwrap().0
    }

    fn list() -> Cors {
        Cors::from_setting("https://app.example.com, http://localhost:5173").unwrap()
    }

    const PREFLIGHT: &str = "OPTIONS /graphql HTTP/1.1\r\nOrigin: https://app.example.com\r\n\
        Access-Control-Request-Method: POST\r\n\
        Access-Control-Request-Headers: content-type, authorization\r\n\r\n";

    #[test]
    fn the_setting_takes_origins_or_a_star_and_refuses_anything_else() {
        assert_eq!(Cors::from_setting("").unwrap(), Cors::Off);
        assert_eq!(Cors::from_setting(" * ").unwrap(), Cors::Any);
        assert_eq!(
            Cors::from_setting("https://A.example/,http://b:8080").unwrap(),
            Cors::Origins(vec!["https://a.example".into(), "http://b:8080".into()])
        );
        for bad in ["example.com", "https://a.example/app", "https://a, *"] {
            assert!(Cors::from_setting(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_preflight_from_a_listed_origin_gets_methods_and_headers() {
        let response = list().preflight(&head(PREFLIGHT));
        assert_eq!(response.status, Status::NoContent);
        let headers = response.headers.join("\n");
        assert!(headers.contains("Access-Control-Allow-Origin: https://app.example.com"));
        assert!(headers.contains("Access-Control-Allow-Methods: GET, POST, OPTIONS"));
        assert!(headers.contains("Access-Control-Allow-Headers: content-type, authorization"));
        assert!(headers.contains("Vary: Origin"));
    }

    #[test]
    fn an_unlisted_origin_gets_no_grant() {
        let other = PREFLIGHT.replace("https://app.example.com", "https://evil.example");
        let response = list().preflight(&head(&other));
        assert_eq!(response.status, Status::Forbidden);
        assert!(
            !response
                .headers
                .join("\n")
                .contains("Access-Control-Allow-Origin")
        );
        let post = head("POST /graphql HTTP/1.1\r\nOrigin: https://evil.example\r\n\r\n");
        let decorated = list().decorate(&post, Response::json(Status::Ok, "{}"));
        assert!(
            !decorated
                .headers
                .join("\n")
                .contains("Access-Control-Allow-Origin")
        );
        // Off: not even a preflight gets a grant.
        assert!(
            !Cors::Off
                .preflight(&head(PREFLIGHT))
                .headers
                .join("\n")
                .contains("Access-Control")
        );
    }

    #[test]
    fn answers_to_listed_origins_name_them_and_vary_by_origin() {
        let post = head("POST /graphql HTTP/1.1\r\nOrigin: http://localhost:5173\r\n\r\n");
        let decorated = list().decorate(&post, Response::json(Status::Ok, "{}"));
        let headers = decorated.headers.join("\n");
        assert!(headers.contains("Access-Control-Allow-Origin: http://localhost:5173"));
        assert!(headers.contains("Vary: Origin"));
        let any = Cors::Any.decorate(&post, Response::json(Status::Ok, "{}"));
        assert!(
            any.headers
                .join("\n")
                .contains("Access-Control-Allow-Origin: *")
        );
    }

    #[test]
    fn websocket_upgrades_are_checked_against_the_list_when_they_name_an_origin() {
        let upgrade = |origin: &str| {
            head(&format!(
                "GET /graphql HTTP/1.1\r\nUpgrade: websocket\r\n{origin}\r\n"
            ))
        };
        assert!(list().allows_upgrade(&upgrade("Origin: https://app.example.com\r\n")));
        assert!(!list().allows_upgrade(&upgrade("Origin: https://evil.example\r\n")));
        assert!(list().allows_upgrade(&upgrade("")), "not a browser");
        assert!(
            list().allows_upgrade(&upgrade(
                "Origin: http://realtime.example:3000\r\nHost: realtime.example:3000\r\n"
            )),
            "a page of the server itself (the playground)"
        );
        assert!(!list().allows_upgrade(&upgrade(
            "Origin: http://realtime.example:3000\r\nHost: other.example:3000\r\n"
        )));
        assert!(Cors::Off.allows_upgrade(&upgrade("Origin: https://evil.example\r\n")));
        assert!(Cors::Any.allows_upgrade(&upgrade("Origin: https://evil.example\r\n")));
    }
}
