//! The playground at `GET /`: GraphiQL with a fetcher of our own (queries over
//! `POST /graphql`, subscriptions over graphql-transport-ws) and a field for the bearer
//! token. Every file it loads is compiled into the binary from `assets/playground/`, so the
//! page needs nothing from another origin; `scripts/vendor-playground` refreshes the
//! third-party ones. `POSTRUST_PLAYGROUND=false` turns it off.

use crate::http::{Response, Status};

/// A file of the page.
#[derive(PartialEq, Eq)]
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

impl std::fmt::Debug for Asset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Asset({}, {} bytes)", self.name, self.bytes.len())
    }
}

macro_rules! assets {
    ($($name:literal => $type:literal),* $(,)?) => {
        &[$(Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!("../assets/playground/", $name)),
        }),*]
    };
}

const ASSETS: &[Asset] = assets! {
    "index.html" => "text/html; charset=utf-8",
    "playground.js" => "text/javascript; charset=utf-8",
    "playground.css" => "text/css; charset=utf-8",
    "graphiql.min.js" => "text/javascript; charset=utf-8",
    "graphiql.min.css" => "text/css; charset=utf-8",
    "react.production.min.js" => "text/javascript; charset=utf-8",
    "react-dom.production.min.js" => "text/javascript; charset=utf-8",
    "LICENSES.txt" => "text/plain; charset=utf-8",
};

/// The prefix of the page's own files; the page names them relative to itself.
const PREFIX: &str = "/playground/";

/// The file a request path names: `/` is the page, `/playground/<name>` its files.
pub fn asset(path: &str) -> Option<&'static Asset> {
    let name = match path {
        "/" => "index.html",
        _ => path.strip_prefix(PREFIX)?,
    };
    ASSETS.iter().find(|a| a.name == name)
}

/// Whether `path` is the playground's, served or not.
pub fn owns(path: &str) -> bool {
    path == "/" || path.starts_with(PREFIX)
}

/// The answer for `asset`.
pub fn response(asset: &Asset) -> Response {
    let response = Response {
        content_type: asset.content_type,
        ..Response::json(Status::Ok, asset.bytes)
    }
    .with_header("X-Content-Type-Options: nosniff");
    if asset.name == "index.html" {
        // Scripts, styles and connections to this server only (`connect-src 'self'` covers
        // its own ws: and wss:); GraphiQL injects a <style> element, and its icons and
        // fonts are data: URIs.
        response.with_header("Cache-Control: no-cache").with_header(
            "Content-Security-Policy: default-src 'none'; script-src 'self'; \
                 style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
                 connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        )
    } else {
        // The files change only with the binary; an hour of caching spares reloads.
        response.with_header("Cache-Control: public, max-age=3600")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_page_and_its_files_only() {
        assert_eq!(asset("/").unwrap().name, "index.html");
        assert_eq!(
            asset("/playground/graphiql.min.js").unwrap().content_type,
            "text/javascript; charset=utf-8"
        );
        for path in [
            "/index.html",
            "/playground/",
            "/playground/../Cargo.toml",
            "/playground/VENDORED.md",
            "/playgroundx/index.html",
        ] {
            assert!(asset(path).is_none(), "{path}");
        }
        assert!(owns("/playground/nothing") && owns("/") && !owns("/graphql"));
    }

    #[test]
    fn the_page_loads_every_file_it_names_from_the_binary() {
        let page = std::str::from_utf8(asset("/").unwrap().bytes).unwrap();
        let mut named = 0;
        // Attribute values only (`src="playground/…"`), not prose in comments.
        for part in page.split("=\"playground/").skip(1) {
            let file = part.split('"').next().unwrap();
            assert!(asset(&format!("{PREFIX}{file}")).is_some(), "{file}");
            named += 1;
        }
        assert!(named >= 5, "the page names its scripts and styles");
        assert!(!page.contains("http://") && !page.contains("https://"));
    }
}
