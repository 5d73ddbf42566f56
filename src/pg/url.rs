//! Connection settings parsed from `POSTRUST_DATABASE_URL`.
//!
//! The accepted form is libpq's URI:
//! `postgres[ql]://[user[:password]@][host][:port][/dbname][?param=value&...]`, every part
//! percent-decoded. Query parameters: `host` (a directory starting with `/` means a unix
//! socket, as in `?host=/var/run/postgresql`), `port`, `user`, `password`, `dbname`,
//! `application_name`, and for TLS `sslmode`, `sslrootcert` and `channel_binding` with
//! libpq's meanings (see [`super::tls`]). Anything else is refused with its name, so a typo
//! (or a libpq parameter this client does not implement, such as `sslcert`) is not silently
//! ignored. Parsing is pure and unit-tested; nothing here touches a socket or a file.

use std::fmt;
use std::path::PathBuf;

use super::error::Error;
use super::tls::{ChannelBindingMode, RootCert, SslMode, TlsOptions};

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A host name or IP address, reached over TCP.
    Tcp(String),
    /// A directory holding the server's unix socket `.s.PGSQL.<port>`.
    Unix(PathBuf),
}

/// Everything needed to open one connection. `Display` redacts the password, so this can be
/// logged as is.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectConfig {
    pub host: Host,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    pub application_name: String,
    pub tls: TlsOptions,
    /// Open a logical replication connection (`replication=database` at startup), which
    /// takes replication commands such as `START_REPLICATION` besides SQL. Not read from
    /// the URL: the change stream sets it on its own copy.
    pub replication: bool,
}

const DEFAULT_PORT: u16 = 5432;
const DEFAULT_USER: &str = "postgres";
const DEFAULT_APPLICATION_NAME: &str = "postrust";

impl ConnectConfig {
    /// Parses a `postgres://` URL.
    pub fn from_url(url: &str) -> Result<ConnectConfig, Error> {
        let bad = |why: &str| Error::config(format!("database URL is not valid: {why}"));
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| bad("it must start with postgres:// or postgresql://"))?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (rest, None),
        };
        // The password may contain '@' only percent-encoded, but be lenient like libpq and
        // split at the last '@'.
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };

        let mut user = None;
        let mut password = None;
        if let Some(userinfo) = userinfo {
            let (u, p) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !u.is_empty() {
                user = Some(decode(u).map_err(|e| bad(&e))?);
            }
            if let Some(p) = p {
                password = Some(decode(p).map_err(|e| bad(&e))?);
            }
        }

        let (host, port) = split_host_port(hostport).map_err(|e| bad(&e))?;
        let mut host = match host {
            "" => None,
            h => Some(decode(h).map_err(|e| bad(&e))?),
        };
        let mut port = match port {
            Some(p) => Some(parse_port(p).map_err(|e| bad(&e))?),
            None => None,
        };
        let mut dbname = match path {
            Some(p) if !p.is_empty() => Some(decode(p).map_err(|e| bad(&e))?),
            _ => None,
        };
        let mut application_name = None;
        let mut tls = TlsOptions::default();
        let mut ssl_mode = None;

        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            if pair.is_empty() {
                continue;
            }
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| bad(&format!("parameter {pair:?} has no value")))?;
            let value = decode(value).map_err(|e| bad(&e))?;
            match key {
                "host" => host = Some(value),
                "port" => port = Some(parse_port(&value).map_err(|e| bad(&e))?),
                "user" => user = Some(value),
                "password" => password = Some(value),
                "dbname" => dbname = Some(value),
                "application_name" => application_name = Some(value),
                "sslmode" => {
                    ssl_mode = Some(
                        SslMode::parse(&value)
                            .ok_or_else(|| bad(&format!("unknown sslmode {value:?}")))?,
                    );
                }
                "sslrootcert" => tls.root_cert = Some(RootCert::parse(&value)),
                "channel_binding" => {
                    tls.channel_binding = ChannelBindingMode::parse(&value)
                        .ok_or_else(|| bad(&format!("unknown channel_binding {value:?}")))?;
                }
                other => return Err(bad(&format!("unsupported parameter {other:?}"))),
            }
        }

        let host = match host {
            Some(h) if h.starts_with('/') => Host::Unix(PathBuf::from(h)),
            Some(h) => Host::Tcp(h),
            None => Host::Tcp("localhost".to_owned()),
        };
        let user = user.unwrap_or_else(|| DEFAULT_USER.to_owned());
        tls.mode = ssl_mode.unwrap_or(match tls.root_cert {
            // libpq 16's default for the system's CAs: only a name check gives them meaning.
            Some(RootCert::System) => SslMode::VerifyFull,
            _ => SslMode::Prefer,
        });
        tls.check().map_err(|e| bad(&e))?;
        Ok(ConnectConfig {
            host,
            port: port.unwrap_or(DEFAULT_PORT),
            dbname: dbname.unwrap_or_else(|| user.clone()),
            user,
            password,
            application_name: application_name
                .unwrap_or_else(|| DEFAULT_APPLICATION_NAME.to_owned()),
            tls,
            replication: false,
        })
    }

    /// `host:port` or the socket path, for error messages.
    pub fn address(&self) -> String {
        match &self.host {
            Host::Tcp(h) if h.contains(':') => format!("[{h}]:{}", self.port),
            Host::Tcp(h) => format!("{h}:{}", self.port),
            Host::Unix(dir) => self
                .socket_path()
                .map_or_else(|| dir.display().to_string(), |p| p.display().to_string()),
        }
    }

    /// The unix socket file for a [`Host::Unix`] directory.
    pub fn socket_path(&self) -> Option<PathBuf> {
        match &self.host {
            Host::Unix(dir) => Some(dir.join(format!(".s.PGSQL.{}", self.port))),
            Host::Tcp(_) => None,
        }
    }
}

impl fmt::Display for ConnectConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "postgres://{}", self.user)?;
        if self.password.is_some() {
            f.write_str(":***")?;
        }
        match &self.host {
            Host::Tcp(_) => write!(f, "@{}/{}", self.address(), self.dbname)?,
            Host::Unix(dir) => write!(f, "@:{}/{}?host={}", self.port, self.dbname, dir.display())?,
        }
        Ok(())
    }
}

impl fmt::Debug for ConnectConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectConfig({self})")
    }
}

/// Splits `host:port`, `[v6]:port`, `host` or `:port`.
fn split_host_port(s: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed '[' in {s:?}"))?;
        return match after {
            "" => Ok((host, None)),
            _ => after
                .strip_prefix(':')
                .map(|p| (host, Some(p)))
                .ok_or_else(|| format!("unexpected {after:?} after an IPv6 address")),
        };
    }
    Ok(match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    })
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("port {p:?} is not a number from 1 to 65535"))
}

/// Percent-decoding; the result must be UTF-8.
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-escape in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::ErrorKind;

    fn parse(url: &str) -> ConnectConfig {
        ConnectConfig::from_url(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn full_url() {
        let c = parse("postgres://app:s3cret@db.example:6543/shop?application_name=live");
        assert_eq!(c.host, Host::Tcp("db.example".into()));
        assert_eq!(c.port, 6543);
        assert_eq!(c.user, "app");
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        assert_eq!(c.dbname, "shop");
        assert_eq!(c.application_name, "live");
    }

    #[test]
    fn defaults() {
        let c = parse("postgresql://");
        assert_eq!(c.host, Host::Tcp("localhost".into()));
        assert_eq!(c.port, 5432);
        assert_eq!(c.user, "postgres");
        assert_eq!(c.password, None);
        assert_eq!(c.dbname, "postgres", "dbname defaults to the user name");
        assert_eq!(c.application_name, "postrust");
        assert_eq!(parse("postgres://bob@h").dbname, "bob");
    }

    #[test]
    fn percent_decoding_everywhere() {
        let c = parse("postgres://us%40er:p%3Aa%2Fss%20w%C3%B6rd@h/my%20db");
        assert_eq!(c.user, "us@er");
        assert_eq!(c.password.as_deref(), Some("p:a/ss wörd"));
        assert_eq!(c.dbname, "my db");
        let c = parse("postgres://u@%2Fvar%2Frun%2Fpostgresql:5433/db");
        assert_eq!(c.host, Host::Unix("/var/run/postgresql".into()));
        assert_eq!(
            c.socket_path().unwrap(),
            PathBuf::from("/var/run/postgresql/.s.PGSQL.5433")
        );
    }

    #[test]
    fn unix_socket_directory_as_parameter() {
        let c = parse("postgres://u:pw@/db?host=/tmp/pg%20dir/socket&port=5999");
        assert_eq!(c.host, Host::Unix("/tmp/pg dir/socket".into()));
        assert_eq!(c.port, 5999);
        assert_eq!(c.address(), "/tmp/pg dir/socket/.s.PGSQL.5999");
        assert_eq!(
            c.to_string(),
            "postgres://u:***@:5999/db?host=/tmp/pg dir/socket"
        );
    }

    #[test]
    fn ipv6_hosts() {
        let c = parse("postgres://u@[::1]:7000/d");
        assert_eq!(c.host, Host::Tcp("::1".into()));
        assert_eq!(c.port, 7000);
        assert_eq!(c.address(), "[::1]:7000");
        assert_eq!(parse("postgres://u@[::1]/d").port, 5432);
    }

    #[test]
    fn password_is_redacted_in_display_and_debug() {
        let c = parse("postgres://app:hunter2@127.0.0.1:5432/shop");
        assert_eq!(c.to_string(), "postgres://app:***@127.0.0.1:5432/shop");
        assert!(!format!("{c:?}").contains("hunter2"));
        let c = parse("postgres://app@127.0.0.1/shop");
        assert_eq!(c.to_string(), "postgres://app@127.0.0.1:5432/shop");
    }

    #[test]
    fn tls_parameters_have_libpq_meanings() {
        let c = parse("postgres://u@h/d");
        assert_eq!(c.tls.mode, SslMode::Prefer, "libpq's default");
        assert_eq!(c.tls.root_cert, None);
        assert_eq!(c.tls.channel_binding, ChannelBindingMode::Prefer);
        for (text, mode) in [
            ("disable", SslMode::Disable),
            ("allow", SslMode::Allow),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            assert_eq!(
                parse(&format!("postgres://u@h/d?sslmode={text}")).tls.mode,
                mode
            );
        }
        let c = parse(
            "postgres://u@h/d?sslmode=verify-ca&sslrootcert=%2Fetc%2Fca.pem&channel_binding=require",
        );
        assert_eq!(c.tls.root_cert, Some(RootCert::File("/etc/ca.pem".into())));
        assert_eq!(c.tls.channel_binding, ChannelBindingMode::Require);
        let c = parse("postgres://u@h/d?sslmode=verify-full&sslrootcert=system");
        assert_eq!(c.tls.root_cert, Some(RootCert::System));
        // As in libpq 16: the system's CAs vouch for any name they signed, so only a name
        // check makes them mean anything.
        let err = ConnectConfig::from_url("postgres://u@h/d?sslmode=require&sslrootcert=system")
            .unwrap_err();
        assert!(err.to_string().contains("verify-full"), "{err}");
        assert_eq!(
            parse("postgres://u@h/d?sslrootcert=system").tls.mode,
            SslMode::VerifyFull,
            "sslrootcert=system without a mode means verify-full, as in libpq"
        );
    }

    #[test]
    fn malformed_urls_are_refused() {
        for url in [
            "mysql://u@h/d",
            "postgres://u@h:notaport/d",
            "postgres://u@h:0/d",
            "postgres://u@h/d?colour=blue",
            "postgres://u@h/d?sslmode=maybe",
            "postgres://u@h/d?channel_binding=always",
            "postgres://u@h/d?sslcert=client.pem",
            "postgres://u@h/d%zz",
            "postgres://u@h/d%C3",
            "postgres://u@[::1/d",
            "postgres://u@h/d?host",
        ] {
            let err = ConnectConfig::from_url(url).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{url}");
        }
    }
}
