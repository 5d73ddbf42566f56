//! TLS to PostgreSQL: a cluster of this binary's own with `ssl = on` and a certificate from
//! a test CA made here with openssl, reached with every `sslmode`, with `sslrootcert` and
//! with `channel_binding`, by our client and by the real server.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use postrust::pg::{Client, ConnectConfig, ConnectOptions, Error, ErrorKind};
use support::pg::{Cluster, cluster as plain_cluster};
use support::run;
use support::server::Server;

struct Fixture {
    cluster: Cluster,
    port: u16,
    /// The CA that signed the server's certificate.
    ca: PathBuf,
    /// A CA that signed nothing the server shows.
    stranger: PathBuf,
}

/// The server's certificate names `localhost` only: reached as 127.0.0.1, its name is
/// wrong.
fn fixture() -> &'static Fixture {
    static TLS: OnceLock<Fixture> = OnceLock::new();
    TLS.get_or_init(|| {
        let cluster = Cluster::start_private();
        let data = cluster.dir().expect("own cluster").join("data");
        let certs = cluster.dir().unwrap().join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        make_ca(&certs, "ca");
        make_ca(&certs, "stranger");
        make_server_cert(&certs, "ca", &data);
        cluster.psql(&cluster.url, "ALTER SYSTEM SET ssl = on");
        cluster.psql(&cluster.url, "SELECT pg_reload_conf()");
        cluster.psql(
            &cluster.url,
            "SET password_encryption = 'scram-sha-256'; \
             CREATE ROLE app LOGIN PASSWORD 'secret'; CREATE ROLE trusted LOGIN; \
             CREATE ROLE cleartext LOGIN PASSWORD 'secret'; \
             SET password_encryption = 'md5'; CREATE ROLE hashed LOGIN PASSWORD 'secret'",
        );
        // The application roles may only come over TLS; postgres (the fixture) either way.
        cluster.set_hba(&[
            "hostssl all app 127.0.0.1/32 scram-sha-256",
            "hostssl all trusted 127.0.0.1/32 trust",
            "hostssl all cleartext 127.0.0.1/32 password",
            "hostssl all hashed 127.0.0.1/32 md5",
        ]);
        let port = cluster
            .url
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split_once('/'))
            .and_then(|(port, _)| port.parse().ok())
            .expect("port in the cluster URL");
        Fixture {
            port,
            ca: certs.join("ca.crt"),
            stranger: certs.join("stranger.crt"),
            cluster,
        }
    })
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_ca(dir: &Path, name: &str) {
    let key = dir.join(format!("{name}.key"));
    let crt = dir.join(format!("{name}.crt"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN=postrust test {name}"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        crt.to_str().unwrap(),
    ]);
}

/// A key and a certificate for `localhost` signed by CA `ca`, installed in the data
/// directory, owned by the server's user as PostgreSQL demands of a key.
fn make_server_cert(dir: &Path, ca: &str, data: &Path) {
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &path("server.key"),
        "-out",
        &path("server.csr"),
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &path("server.csr"),
        "-CA",
        &path(&format!("{ca}.crt")),
        "-CAkey",
        &path(&format!("{ca}.key")),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &path("server.ext"),
        "-out",
        &path("server.crt"),
    ]);
    for name in ["server.crt", "server.key"] {
        let target = data.join(name);
        std::fs::copy(dir.join(name), &target).unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let status = Command::new("chown")
                .arg("postgres:")
                .arg(&target)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let status = Command::new("chmod")
            .arg("600")
            .arg(&target)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

fn url(user: &str, host: &str, params: &str) -> String {
    let f = fixture();
    let auth = match user {
        "app" | "cleartext" | "hashed" => format!("{user}:secret"),
        _ => user.to_owned(),
    };
    format!("postgres://{auth}@{host}:{}/postgres?{params}", f.port)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

async fn connect(url: &str) -> Result<Client, Error> {
    Client::connect(&ConnectConfig::from_url(url)?, &ConnectOptions::default()).await
}

/// Whether the client's own connection is encrypted, as the server sees it.
async fn encrypted(client: &Client) -> String {
    let rows = client
        .simple_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .await
        .expect("pg_stat_ssl");
    rows[0].value(0, 0).expect("one row").to_owned()
}

#[test]
fn verify_full_with_the_ca_connects_over_tls_with_channel_binding() {
    let f = fixture();
    run(async {
        // channel_binding=require fails unless SCRAM-SHA-256-PLUS completed with the
        // certificate's hash the server computed too.
        let client = connect(&url(
            "app",
            "localhost",
            &format!(
                "sslmode=verify-full&sslrootcert={}&channel_binding=require",
                path(&f.ca)
            ),
        ))
        .await
        .expect("verify-full against the right CA and name");
        assert_eq!(encrypted(&client).await, "t");
        // A statement that needs more than one TLS record each way.
        let big = client
            .simple_query("SELECT length(repeat('x', 100000) || $$y$$)")
            .await
            .unwrap();
        assert_eq!(big[0].value(0, 0), Some("100001"));
    });
}

#[test]
fn a_wrong_host_name_is_refused_under_verify_full_but_not_verify_ca() {
    let f = fixture();
    run(async {
        let err = connect(&url(
            "app",
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={}", path(&f.ca)),
        ))
        .await
        .err()
        .expect("a certificate for localhost is not one for 127.0.0.1");
        assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
        assert!(err.to_string().contains("certificate"), "{err}");
        let client = connect(&url(
            "app",
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={}", path(&f.ca)),
        ))
        .await
        .expect("verify-ca checks the chain only");
        assert_eq!(encrypted(&client).await, "t");
    });
}

#[test]
fn a_certificate_from_an_untrusted_ca_is_refused() {
    let f = fixture();
    run(async {
        for mode in ["verify-full", "verify-ca", "require"] {
            let err = connect(&url(
                "app",
                "localhost",
                &format!("sslmode={mode}&sslrootcert={}", path(&f.stranger)),
            ))
            .await
            .err()
            .unwrap_or_else(|| panic!("sslmode={mode} trusted a stranger's certificate"));
            assert!(err.to_string().contains("certificate"), "{mode}: {err}");
        }
    });
}

#[test]
fn require_without_a_root_certificate_encrypts_without_judging() {
    fixture();
    run(async {
        // As in libpq: encryption against a passive listener, no proof of identity
        // (unless ~/.postgresql/root.crt exists, which this test's host has not).
        let client = connect(&url("app", "127.0.0.1", "sslmode=require"))
            .await
            .expect("require connects");
        assert_eq!(encrypted(&client).await, "t");
    });
}

#[test]
fn prefer_takes_tls_when_offered_and_the_clear_otherwise() {
    fixture();
    run(async {
        let client = connect(&url("app", "localhost", "")).await.expect("prefer");
        assert_eq!(encrypted(&client).await, "t", "prefer is the default");
        // A server without TLS answers N and the startup goes on in the clear.
        let plain = plain_cluster();
        let client = connect(&format!("{}?sslmode=prefer", plain.url))
            .await
            .expect("prefer against a server without TLS");
        assert_eq!(encrypted(&client).await, "f");
        let err = connect(&format!("{}?sslmode=require", plain.url))
            .await
            .err()
            .expect("require against a server without TLS");
        assert!(
            err.to_string().contains("does not accept TLS"),
            "the refusal says why: {err}"
        );
    });
}

#[test]
fn disable_is_refused_where_the_server_requires_tls_and_allow_retries_with_it() {
    fixture();
    run(async {
        let err = connect(&url("app", "localhost", "sslmode=disable"))
            .await
            .err()
            .expect("pg_hba admits app over TLS only");
        assert_eq!(err.code(), Some("28000"), "{err}");
        let client = connect(&url("app", "localhost", "sslmode=allow"))
            .await
            .expect("allow tries TLS after the clear was refused");
        assert_eq!(encrypted(&client).await, "t");
    });
}

#[test]
fn channel_binding_require_refuses_authentication_without_it() {
    fixture();
    run(async {
        // trust: the server authenticates nobody, so nothing binds.
        let err = connect(&url("trusted", "localhost", "channel_binding=require"))
            .await
            .err()
            .expect("trust cannot satisfy channel_binding=require");
        assert!(err.to_string().contains("channel_binding=require"), "{err}");
        let client = connect(&url("trusted", "localhost", ""))
            .await
            .expect("without the requirement, trust is fine");
        assert_eq!(encrypted(&client).await, "t");
        // A server asking for the password itself is refused before it gets it.
        for user in ["cleartext", "hashed"] {
            let err = connect(&url(
                user,
                "localhost",
                "sslmode=require&channel_binding=require",
            ))
            .await
            .err()
            .unwrap_or_else(|| panic!("{user}: a password request passed"));
            assert!(
                err.to_string().contains("the password was not sent"),
                "{user}: {err}"
            );
            connect(&url(user, "localhost", "sslmode=require"))
                .await
                .unwrap_or_else(|e| panic!("{user} without the requirement: {e}"));
        }
        // Over a connection that is not TLS there is nothing to bind to.
        let plain = plain_cluster();
        let err = connect(&format!("{}?channel_binding=require", plain.url))
            .await
            .err()
            .expect("no TLS, no channel binding");
        assert!(err.to_string().contains("channel_binding=require"), "{err}");
        let err = ConnectConfig::from_url(&format!(
            "{}?sslmode=disable&channel_binding=require",
            plain.url
        ))
        .expect_err("a contradiction in the URL");
        assert_eq!(err.kind(), ErrorKind::Config);
    });
}

#[test]
fn the_server_serves_from_a_database_reached_over_verify_full() {
    let f = fixture();
    let db = f.cluster.fresh_database("tls");
    f.cluster.psql(
        &db,
        "CREATE TABLE notes (id int PRIMARY KEY, body text); \
         INSERT INTO notes VALUES (1, 'over TLS'); \
         GRANT SELECT ON notes TO app",
    );
    let name = db.rsplit_once('/').unwrap().1;
    let server_url = format!(
        "postgres://app:secret@localhost:{}/{name}?sslmode=verify-full&sslrootcert={}",
        f.port,
        path(&f.ca)
    );
    let server = Server::start_on(
        &server_url,
        &[("POSTRUST_SUBSCRIBE_WITHOUT_TRIGGERS", "true")],
    );
    let response = server.post_graphql(None, "{ notes { id body } }");
    assert!(
        response.ends_with(r#"{"data":{"notes":[{"id":1,"body":"over TLS"}]}}"#),
        "{response}"
    );
    // Every connection the server holds to the database is encrypted.
    let clear = f.cluster.psql(
        &f.cluster.url,
        &format!(
            "SELECT count(*) FROM pg_stat_activity JOIN pg_stat_ssl USING (pid) \
             WHERE datname = '{name}' AND NOT ssl"
        ),
    );
    assert_eq!(clear, "0");
    let encrypted = f.cluster.psql(
        &f.cluster.url,
        &format!(
            "SELECT count(*) FROM pg_stat_activity JOIN pg_stat_ssl USING (pid) \
             WHERE datname = '{name}' AND ssl"
        ),
    );
    assert_ne!(encrypted, "0", "the server's own connections are there");
}
