//! TLS to PostgreSQL, with libpq's settings and meanings.
//!
//! PostgreSQL starts TLS inside its own protocol: on a fresh TCP connection the client sends
//! `SSLRequest`, the server answers one byte, `S` (then the TLS handshake runs on the same
//! socket) or `N` (it has no TLS; the startup goes on in the clear if the mode allows). Unix
//! sockets never use TLS, as in libpq.
//!
//! | `sslmode`     | TLS                          | certificate checked                  |
//! |---------------|------------------------------|--------------------------------------|
//! | `disable`     | never                        | -                                    |
//! | `allow`       | only if the plain try fails  | as for `require`                     |
//! | `prefer`      | if the server has it (default) | as for `require`                   |
//! | `require`     | always                       | chain, if a root certificate is found |
//! | `verify-ca`   | always                       | chain to `sslrootcert`               |
//! | `verify-full` | always                       | chain, and the host name             |
//!
//! `sslrootcert` names a PEM file of trusted CAs (default `~/.postgresql/root.crt`), or
//! `system` for the host's CA bundle, which needs `verify-full`. As in libpq, a root
//! certificate file that exists makes the weaker modes check the chain too; unlike libpq, a
//! file named explicitly that cannot be read is an error in every mode, not ignored.
//!
//! `channel_binding` (`disable`, `prefer` the default, `require`): over TLS, SCRAM
//! authentication binds itself to the server's certificate (`SCRAM-SHA-256-PLUS` with
//! `tls-server-end-point`, RFC 5929), so a man in the middle holding another certificate
//! cannot relay the exchange. `require` refuses any server that does not complete such an
//! exchange, whatever else it offers.
//!
//! The TLS library is rustls with ring for its cryptography.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::TlsConnector;
use futures_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use futures_rustls::rustls::client::{
    WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor,
};
use futures_rustls::rustls::crypto::{
    self, CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use futures_rustls::rustls::pki_types::pem::PemObject;
use futures_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use futures_rustls::rustls::server::ParsedCertificate;
use futures_rustls::rustls::{
    self as rustls, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use glommio::net::TcpStream;
use postgres_protocol::message::frontend;
use sha2::Digest;

use super::error::Error;
use super::socket::Socket;
use super::url::{ConnectConfig, Host};

/// `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub(crate) fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// `sslrootcert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    File(PathBuf),
    /// The host's CA bundle.
    System,
}

impl RootCert {
    pub(crate) fn parse(text: &str) -> RootCert {
        match text {
            "system" => RootCert::System,
            path => RootCert::File(PathBuf::from(path)),
        }
    }
}

/// `channel_binding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelBindingMode {
    Disable,
    Prefer,
    Require,
}

impl ChannelBindingMode {
    pub(crate) fn parse(text: &str) -> Option<ChannelBindingMode> {
        Some(match text {
            "disable" => ChannelBindingMode::Disable,
            "prefer" => ChannelBindingMode::Prefer,
            "require" => ChannelBindingMode::Require,
            _ => return None,
        })
    }
}

/// The TLS settings of a database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    pub mode: SslMode,
    pub root_cert: Option<RootCert>,
    pub channel_binding: ChannelBindingMode,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            mode: SslMode::Prefer,
            root_cert: None,
            channel_binding: ChannelBindingMode::Prefer,
        }
    }
}

/// How one connection attempt treats TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Negotiate {
    /// No `SSLRequest`.
    Plain,
    /// TLS if the server answers `S`, the clear if it answers `N`.
    IfOffered,
    /// TLS or nothing.
    Required,
}

impl TlsOptions {
    /// Combinations libpq refuses too.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.root_cert == Some(RootCert::System) && self.mode != SslMode::VerifyFull {
            return Err(format!(
                "sslrootcert=system needs sslmode=verify-full (not {}): the system's CAs \
                 vouch for any name they signed, so only the host name check makes them mean \
                 anything",
                self.mode.name()
            ));
        }
        if self.channel_binding == ChannelBindingMode::Require && self.mode == SslMode::Disable {
            return Err("channel_binding=require needs TLS, and sslmode=disable refuses it".into());
        }
        Ok(())
    }

    /// The attempts libpq makes, in order, until one connects: `prefer` falls back to the
    /// clear when TLS fails, `allow` tries TLS when the clear was refused.
    pub(crate) fn attempts(&self, host: &Host) -> &'static [Negotiate] {
        if matches!(host, Host::Unix(_)) {
            return &[Negotiate::Plain];
        }
        match self.mode {
            SslMode::Disable => &[Negotiate::Plain],
            SslMode::Allow => &[Negotiate::Plain, Negotiate::Required],
            SslMode::Prefer => &[Negotiate::IfOffered, Negotiate::Plain],
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => &[Negotiate::Required],
        }
    }

    pub(crate) fn mode_name(&self) -> &'static str {
        self.mode.name()
    }
}

/// The certificate checks a mode and the root certificates found call for.
enum Check {
    /// Only that the server holds the key of the certificate it shows.
    KeyOnly,
    /// The chain up to a trusted root, any host name.
    Chain(RootCertStore),
    /// The chain and the host name.
    ChainAndName(RootCertStore),
}

/// rustls's client configuration for `options`; reads the root certificates. Call it once
/// at start to report a bad file early; connections call it again (a file read, far below
/// the handshake's cost), so a renewed root file is picked up by new connections.
pub(crate) fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>, Error> {
    let provider = Arc::new(crypto::ring::default_provider());
    let check = match (options.mode, roots(options)?) {
        (SslMode::VerifyFull, Some(roots)) => Check::ChainAndName(roots),
        (SslMode::VerifyCa, Some(roots)) => Check::Chain(roots),
        (SslMode::VerifyFull | SslMode::VerifyCa, None) => {
            return Err(Error::config(format!(
                "sslmode={} needs the CA certificates to trust: set sslrootcert (a PEM file, \
                 or system), or put them in ~/.postgresql/root.crt",
                options.mode.name()
            )));
        }
        (_, Some(roots)) => Check::Chain(roots),
        (_, None) => Check::KeyOnly,
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("TLS: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match check {
        Check::KeyOnly => Arc::new(Lenient {
            roots: None,
            algorithms: provider.signature_verification_algorithms,
        }),
        Check::Chain(roots) => Arc::new(Lenient {
            roots: Some(Arc::new(roots)),
            algorithms: provider.signature_verification_algorithms,
        }),
        Check::ChainAndName(roots) => webpki_verifier(roots, provider)?,
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn webpki_verifier(
    roots: RootCertStore,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, Error> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| Error::config(format!("TLS root certificates: {e}")))
}

/// The trusted roots, or none when no file is named and the default one is absent.
fn roots(options: &TlsOptions) -> Result<Option<RootCertStore>, Error> {
    let path = match &options.root_cert {
        Some(RootCert::System) => return system_roots().map(Some),
        Some(RootCert::File(path)) => path.clone(),
        None => match default_root_file() {
            Some(path) if path.exists() => path,
            _ => return Ok(None),
        },
    };
    let mut roots = RootCertStore::empty();
    let bad = |why: String| Error::config(format!("sslrootcert {}: {why}", path.display()));
    for cert in CertificateDer::pem_file_iter(&path).map_err(|e| bad(e.to_string()))? {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the file".into()));
    }
    Ok(Some(roots))
}

/// libpq's default root file.
fn default_root_file() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    Some(Path::new(&home).join(".postgresql/root.crt"))
}

/// The host's CA bundle: `SSL_CERT_FILE`, or the first bundle found where Linux
/// distributions keep it.
fn system_roots() -> Result<RootCertStore, Error> {
    const BUNDLES: [&str; 4] = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ];
    let named = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let path = named
        .into_iter()
        .chain(BUNDLES.iter().map(PathBuf::from))
        .find(|p| p.exists())
        .ok_or_else(|| {
            Error::config(format!(
                "sslrootcert=system: no CA bundle found (SSL_CERT_FILE, {})",
                BUNDLES.join(", ")
            ))
        })?;
    let bad = |why: String| Error::config(format!("CA bundle {}: {why}", path.display()));
    let certs = CertificateDer::pem_file_iter(&path)
        .map_err(|e| bad(e.to_string()))?
        .filter_map(Result::ok);
    let mut roots = RootCertStore::empty();
    // A bundle may hold certificates webpki cannot use; the others still count.
    roots.add_parsable_certificates(certs);
    if roots.is_empty() {
        return Err(bad("no usable certificate".into()));
    }
    Ok(roots)
}

/// Sends `SSLRequest` on a fresh connection and, if the server agrees, runs the handshake.
pub(crate) async fn start(
    mut tcp: TcpStream,
    config: &ConnectConfig,
    negotiate: Negotiate,
) -> Result<Socket, Error> {
    let failed = |what: &str, e: io::Error| Error::connect(format!("TLS {what}: {e}"), None);
    let client = client_config(&config.tls)?;
    let mut request = BytesMut::new();
    frontend::ssl_request(&mut request);
    tcp.write_all(&request)
        .await
        .map_err(|e| failed("request", e))?;
    // Exactly one byte: anything the server sent after it, before the handshake, would be
    // unauthenticated bytes that must not be read as protocol (CVE-2021-23222).
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer)
        .await
        .map_err(|e| failed("request", e))?;
    match answer[0] {
        b'S' => {}
        b'N' if negotiate == Negotiate::IfOffered => return Ok(Socket::Tcp(tcp)),
        b'N' => {
            return Err(Error::connect(
                format!(
                    "the server does not accept TLS connections, and sslmode={} requires TLS",
                    config.tls.mode_name()
                ),
                None,
            ));
        }
        other => {
            return Err(Error::protocol(format!(
                "the server answered the TLS request with {:?} instead of S or N",
                char::from(other)
            )));
        }
    }
    let host = match &config.host {
        Host::Tcp(host) => host.as_str(),
        Host::Unix(_) => unreachable!("unix sockets never ask for TLS"),
    };
    let name = match ServerName::try_from(host.to_owned()) {
        Ok(name) => name,
        // Only verify-full reads the name; the others need one for the handshake alone.
        Err(_) if config.tls.mode != SslMode::VerifyFull => {
            ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into())
        }
        Err(e) => {
            return Err(Error::config(format!(
                "sslmode=verify-full: host {host:?} is not a name a certificate can hold: {e}"
            )));
        }
    };
    let stream = TlsConnector::from(client)
        .connect(name, tcp)
        .await
        .map_err(|e| failed("handshake", e))?;
    Ok(Socket::Tls(Box::new(stream)))
}

/// `tls-server-end-point` channel binding data (RFC 5929 section 4.1): the hash of the
/// server's certificate, with the hash of its signature algorithm, SHA-256 in place of MD5
/// and SHA-1. None when the algorithm names no single hash (RSA-PSS, Ed25519); PostgreSQL
/// cannot bind to such a certificate either.
pub(crate) fn server_end_point(certificate: &[u8]) -> Option<Vec<u8>> {
    let hash = signature_hash(certificate)?;
    Some(match hash {
        Hash::Sha224 => sha2::Sha224::digest(certificate).to_vec(),
        Hash::Sha256 => sha2::Sha256::digest(certificate).to_vec(),
        Hash::Sha384 => sha2::Sha384::digest(certificate).to_vec(),
        Hash::Sha512 => sha2::Sha512::digest(certificate).to_vec(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// The hash of a DER certificate's `signatureAlgorithm`: `Certificate ::= SEQUENCE {
/// tbsCertificate, signatureAlgorithm AlgorithmIdentifier, signature }`, and the
/// identifier's first element is the OID.
fn signature_hash(certificate: &[u8]) -> Option<Hash> {
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    let (body, _) = der(certificate, SEQUENCE)?;
    let (_, rest) = der(body, SEQUENCE)?;
    let (algorithm, _) = der(rest, SEQUENCE)?;
    let (oid, _) = der(algorithm, OID)?;
    // 1.2.840.113549.1.1.x: RSA with a hash.
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    // 1.2.840.10045.4.1 and 1.2.840.10045.4.3.x: ECDSA with a hash.
    const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
    const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    if oid == ECDSA_SHA1 {
        return Some(Hash::Sha256);
    }
    if let Some(last) = oid.strip_prefix(RSA) {
        return match last {
            // MD5, SHA-1: RFC 5929 says SHA-256.
            [0x04] | [0x05] | [0x0b] => Some(Hash::Sha256),
            [0x0c] => Some(Hash::Sha384),
            [0x0d] => Some(Hash::Sha512),
            [0x0e] => Some(Hash::Sha224),
            _ => None,
        };
    }
    if let Some(last) = oid.strip_prefix(ECDSA_SHA2) {
        return match last {
            [0x01] => Some(Hash::Sha224),
            [0x02] => Some(Hash::Sha256),
            [0x03] => Some(Hash::Sha384),
            [0x04] => Some(Hash::Sha512),
            _ => None,
        };
    }
    None
}

/// One DER element of tag `tag` at the start of `input`: its contents and what follows.
fn der(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&length, mut rest) = rest.split_first()?;
    let length = if length < 0x80 {
        usize::from(length)
    } else {
        // Long form: the low bits count the length bytes that follow, big-endian.
        let bytes = usize::from(length & 0x7f);
        if bytes == 0 || bytes > std::mem::size_of::<usize>() || rest.len() < bytes {
            return None;
        }
        let (digits, after) = rest.split_at(bytes);
        rest = after;
        digits
            .iter()
            .fold(0usize, |n, &d| (n << 8) | usize::from(d))
    };
    (rest.len() >= length).then(|| rest.split_at(length))
}

/// The weaker checks, rustls's own being `verify-full`'s. Either way the handshake proves
/// the server holds the key of the certificate it showed, which channel binding relies on.
/// - `roots: None` (`require` without a root certificate): no certificate is judged.
/// - `roots: Some` (`verify-ca`, and the weaker modes with a root file): the chain from the
///   server's certificate up to a trusted root, checked by webpki; the host name it names
///   is not looked at.
#[derive(Debug)]
struct Lenient {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let certificate = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &certificate,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DER certificate's skeleton: an empty `tbsCertificate`, the algorithm, no signature.
    fn skeleton(oid: &[u8]) -> Vec<u8> {
        let mut algorithm = vec![0x06, oid.len() as u8];
        algorithm.extend_from_slice(oid);
        algorithm.extend_from_slice(&[0x05, 0x00]);
        let mut body = vec![0x30, 0x00, 0x30, algorithm.len() as u8];
        body.extend_from_slice(&algorithm);
        body.extend_from_slice(&[0x03, 0x01, 0x00]);
        let mut cert = vec![0x30, body.len() as u8];
        cert.extend_from_slice(&body);
        cert
    }

    #[test]
    fn the_binding_hash_follows_the_signature_algorithm() {
        let rsa = |last: u8| [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, last];
        let ecdsa = |last: u8| [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, last];
        let cases: [(&[u8], Option<Hash>); 9] = [
            (&rsa(0x05), Some(Hash::Sha256)),
            (&rsa(0x0b), Some(Hash::Sha256)),
            (&rsa(0x0c), Some(Hash::Sha384)),
            (&rsa(0x0d), Some(Hash::Sha512)),
            (&rsa(0x0a), None),
            (&ecdsa(0x02), Some(Hash::Sha256)),
            (&ecdsa(0x03), Some(Hash::Sha384)),
            (
                &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01],
                Some(Hash::Sha256),
            ),
            (&[0x2b, 0x65, 0x70], None),
        ];
        for (oid, hash) in cases {
            assert_eq!(signature_hash(&skeleton(oid)), hash, "{oid:02x?}");
        }
        let cert = skeleton(&ecdsa(0x03));
        assert_eq!(
            server_end_point(&cert).unwrap(),
            sha2::Sha384::digest(&cert).to_vec()
        );
    }

    #[test]
    fn malformed_der_is_no_hash() {
        let good = skeleton(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]);
        for cut in 0..good.len() {
            assert_eq!(signature_hash(&good[..cut]), None, "cut at {cut}");
        }
        assert_eq!(signature_hash(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(signature_hash(&[0x30, 0x80]), None, "indefinite length");
        let long_form = der(&[0x04, 0x81, 0x02, 0xaa, 0xbb, 0xcc], 0x04).unwrap();
        assert_eq!(long_form, (&[0xaa, 0xbb][..], &[0xcc][..]));
    }

    #[test]
    fn attempts_follow_libpq() {
        let tcp = Host::Tcp("db".into());
        let options = |mode| TlsOptions {
            mode,
            ..TlsOptions::default()
        };
        assert_eq!(
            options(SslMode::Prefer).attempts(&tcp),
            [Negotiate::IfOffered, Negotiate::Plain]
        );
        assert_eq!(
            options(SslMode::Allow).attempts(&tcp),
            [Negotiate::Plain, Negotiate::Required]
        );
        assert_eq!(options(SslMode::Disable).attempts(&tcp), [Negotiate::Plain]);
        assert_eq!(
            options(SslMode::VerifyFull).attempts(&tcp),
            [Negotiate::Required]
        );
        assert_eq!(
            options(SslMode::VerifyFull).attempts(&Host::Unix("/run".into())),
            [Negotiate::Plain],
            "never TLS over a unix socket"
        );
    }

    #[test]
    fn verify_modes_need_roots() {
        let options = TlsOptions {
            mode: SslMode::VerifyCa,
            root_cert: Some(RootCert::File("/nonexistent/ca.pem".into())),
            channel_binding: ChannelBindingMode::Prefer,
        };
        let err = client_config(&options).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let options = TlsOptions {
            mode: SslMode::Require,
            ..options
        };
        assert!(
            client_config(&options).is_err(),
            "a file named explicitly must be readable in every mode"
        );
    }
}
