//! Every authentication method the client supports, configured in `pg_hba.conf` of a
//! cluster of this binary's own, with success and failure.

mod support;

use std::sync::OnceLock;

use postrust::pg::{Client, ConnectConfig, ConnectOptions, Error, ErrorKind};
use support::pg::Cluster;
use support::run;

/// Per user: the hba method and how the password is stored.
const USERS: &[(&str, &str, &str)] = &[
    ("trust_user", "trust", "scram-sha-256"),
    ("password_user", "password", "scram-sha-256"),
    ("md5_user", "md5", "md5"),
    ("scram_user", "scram-sha-256", "scram-sha-256"),
];
/// Exercises percent-decoding of the URL on the way.
const PASSWORD: &str = "p@ss:w/rd %ü";
const PASSWORD_IN_URL: &str = "p%40ss%3Aw%2Frd%20%25%C3%BC";

fn cluster() -> &'static Cluster {
    static AUTH: OnceLock<Cluster> = OnceLock::new();
    AUTH.get_or_init(|| {
        let cluster = Cluster::start_private();
        let mut rules = Vec::new();
        for (user, method, encryption) in USERS {
            cluster.psql(
                &cluster.url,
                &format!(
                    "SET password_encryption = '{encryption}'; \
                     CREATE ROLE {user} LOGIN PASSWORD '{PASSWORD}'"
                ),
            );
            rules.push(format!("host all {user} 127.0.0.1/32 {method}"));
        }
        // The server log then names the method each connection authenticated with.
        cluster.psql(&cluster.url, "ALTER SYSTEM SET log_connections = on");
        rules.push("host all nobody_here 127.0.0.1/32 trust".into());
        rules.push("host all all 127.0.0.1/32 scram-sha-256".into());
        let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
        cluster.set_hba(&rules);
        cluster
    })
}

fn url(user: &str, password: Option<&str>, db: &str) -> String {
    let base = cluster().url.rsplit_once('@').expect("URL with user").1;
    let host = base.rsplit_once('/').expect("URL with database").0;
    match password {
        Some(p) => format!("postgres://{user}:{p}@{host}/{db}"),
        None => format!("postgres://{user}@{host}/{db}"),
    }
}

async fn connect(url: &str) -> Result<Client, Error> {
    Client::connect(&ConnectConfig::from_url(url)?, &ConnectOptions::default()).await
}

async fn current_user(url: &str) -> String {
    let c = connect(url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let rows = c.query("SELECT current_user::text", &[]).await.unwrap();
    rows.value(0, 0).unwrap().to_owned()
}

#[test]
fn every_method_accepts_the_right_password() {
    run(async {
        for (user, method, _) in USERS {
            let got = current_user(&url(user, Some(PASSWORD_IN_URL), "postgres")).await;
            assert_eq!(&got, user, "{method}");
        }
        // Trust needs no password at all.
        assert_eq!(
            current_user(&url("trust_user", None, "postgres")).await,
            "trust_user"
        );
    });
}

#[test]
fn every_password_method_refuses_a_wrong_password_with_its_sqlstate() {
    run(async {
        for (user, method, _) in USERS.iter().filter(|(_, m, _)| *m != "trust") {
            let err = connect(&url(user, Some("wrong"), "postgres"))
                .await
                .err()
                .unwrap();
            assert_eq!(err.kind(), ErrorKind::Connect, "{method}: {err}");
            assert_eq!(err.code(), Some("28P01"), "{method}: {err}");
            let text = err.to_string();
            assert!(text.contains("password authentication failed"), "{text}");
            assert!(text.contains(user), "{text}");
            assert!(!text.contains("wrong"), "no password in errors: {text}");
        }
    });
}

#[test]
fn a_missing_password_is_a_clear_configuration_error() {
    run(async {
        for (user, method, _) in USERS.iter().filter(|(_, m, _)| *m != "trust") {
            let err = connect(&url(user, None, "postgres")).await.err().unwrap();
            assert_eq!(err.kind(), ErrorKind::Config, "{err}");
            assert!(
                err.to_string().contains("has no password"),
                "{method}: {err}"
            );
        }
    });
}

#[test]
fn unknown_user_and_unknown_database_say_what_failed() {
    run(async {
        let err = connect(&url("nobody_here", None, "postgres"))
            .await
            .err()
            .unwrap();
        assert_eq!(err.code(), Some("28000"), "{err}");
        assert!(
            err.to_string()
                .contains("role \"nobody_here\" does not exist"),
            "{err}"
        );

        // Under scram-sha-256 the server does not reveal whether the role exists.
        let err = connect(&url("ghost", Some("x"), "postgres"))
            .await
            .err()
            .unwrap();
        assert_eq!(err.code(), Some("28P01"), "{err}");

        let err = connect(&url("scram_user", Some(PASSWORD_IN_URL), "no_such_db"))
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::Connect);
        assert_eq!(err.code(), Some("3D000"), "{err}");
        assert!(
            err.to_string()
                .contains("database \"no_such_db\" does not exist"),
            "{err}"
        );
    });
}

#[test]
fn the_unix_socket_directory_from_the_url_is_used() {
    let dir = cluster().dir().expect("private cluster").join("socket");
    let port = cluster()
        .url
        .rsplit_once(':')
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    run(async {
        let url = format!(
            "postgres://trust_user@/postgres?host={}&port={port}&application_name=via%20unix",
            dir.display()
        );
        let c = connect(&url).await.unwrap();
        let rows = c
            .query("SELECT current_user::text, inet_client_addr() IS NULL, current_setting('application_name')", &[])
            .await
            .unwrap();
        assert_eq!(rows.value(0, 0), Some("trust_user"));
        assert_eq!(
            rows.value(0, 1),
            Some("t"),
            "no client address: a unix socket"
        );
        assert_eq!(rows.value(0, 2), Some("via unix"));
    });
}

/// A server that asks for SCRAM, then accepts whatever the client sends without ever
/// proving it knows the password, as a man in the middle would.
fn impostor() -> std::net::SocketAddr {
    use support::fake_pg::{STARTUP_DONE, message, read_message, read_startup, send};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        read_startup(&mut s);
        // AuthenticationSASL offering SCRAM-SHA-256.
        let mut out = Vec::new();
        message(&mut out, b'R', b"\0\0\0\x0aSCRAM-SHA-256\0\0");
        send(&mut s, &out);
        // The client's first SCRAM message; then no SASL continue, no final: straight to
        // AuthenticationOk.
        read_message(&mut s);
        send(&mut s, STARTUP_DONE);
        // Hold the socket open until the client gives up on it.
        let _ = std::io::Read::read(&mut s, &mut [0u8; 64]);
    });
    addr
}

#[test]
fn a_server_that_skips_the_scram_proof_is_refused() {
    let addr = impostor();
    run(async {
        let err = connect(&format!(
            "postgres://scram_user:secret@{addr}/postgres?sslmode=disable"
        ))
        .await
        .err()
        .expect("an impostor must not be accepted");
        assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
        assert!(err.to_string().contains("without proving"), "{err}");
    });
}
