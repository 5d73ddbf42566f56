//! Who a client is: JWT verification and the database role it maps to.
//!
//! A client presents `Bearer <token>`, in `connection_init`'s `payload.authorization` or in
//! the HTTP `Authorization` header. With `POSTRUST_JWT_SECRET` the token must be HS256/384/512;
//! with `POSTRUST_JWT_PUBLIC_KEY` (PEM, or a JWKS document) RS256/384/512 or ES256/384. The
//! algorithms a key verifies are fixed by the key, so a token cannot choose its own
//! verification (`alg: none`, or HS256 signed with the public key, fail). In a JWKS each key
//! has its own: its `alg` if it names one, else its type (`kty`) and curve (`crv`), so RSA
//! and EC keys can share a set. `exp` and `nbf` are enforced with `POSTRUST_JWT_LEEWAY_S` of
//! leeway; with `POSTRUST_JWT_AUD` set, `aud` is required and must contain it.
//!
//! The role is the claim named by `POSTRUST_JWT_ROLE_CLAIM`; a client without a token, or a
//! token without that claim, gets `POSTRUST_ANON_ROLE` if one is configured and is refused
//! otherwise. With no key configured at all, verification is off and every client runs as
//! the server's own database user.

use std::fmt;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::config::Config;

/// A verified client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The role queries run as; `None` when verification is off (the server's own role).
    pub role: Option<String>,
    /// The token's claims as canonical JSON (keys sorted), `{}` without a token. Two
    /// clients share a live query only when this text is identical.
    pub claims: String,
    /// `exp` in seconds since the Unix epoch, if the token has one.
    pub expires_at: Option<u64>,
}

/// Why a client was refused. Each has a stable code, sent to clients and logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No token, and no anonymous role.
    Missing,
    /// The credentials are not `Bearer <token>`.
    NotBearer,
    /// Not a JWT at all.
    Malformed,
    /// The token's algorithm does not belong to the configured key's family (this includes
    /// `none`).
    WrongAlgorithm,
    BadSignature,
    Expired,
    NotYetValid,
    WrongAudience,
    /// A JWKS is configured and no key matches the token's `kid` (or, without a `kid`, no
    /// single key verifies the token's algorithm).
    UnknownKey,
    /// The role claim is not a string, or absent with no anonymous role configured.
    NoRole,
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "AUTH_TOKEN_REQUIRED",
            AuthError::NotBearer => "AUTH_NOT_BEARER",
            AuthError::Malformed => "AUTH_TOKEN_MALFORMED",
            AuthError::WrongAlgorithm => "AUTH_WRONG_ALGORITHM",
            AuthError::BadSignature => "AUTH_BAD_SIGNATURE",
            AuthError::Expired => "AUTH_TOKEN_EXPIRED",
            AuthError::NotYetValid => "AUTH_TOKEN_NOT_YET_VALID",
            AuthError::WrongAudience => "AUTH_WRONG_AUDIENCE",
            AuthError::UnknownKey => "AUTH_UNKNOWN_KEY",
            AuthError::NoRole => "AUTH_NO_ROLE",
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthError::Missing => "a bearer token is required",
            AuthError::NotBearer => "credentials must be \"Bearer <token>\"",
            AuthError::Malformed => "the token is not a valid JWT",
            AuthError::WrongAlgorithm => "the token's algorithm is not accepted",
            AuthError::BadSignature => "the token's signature is invalid",
            AuthError::Expired => "token expired",
            AuthError::NotYetValid => "the token is not valid yet",
            AuthError::WrongAudience => "the token's audience is not accepted",
            AuthError::UnknownKey => "no configured key matches the token's kid",
            AuthError::NoRole => "the token names no role and there is no anonymous role",
        })
    }
}

/// The keys tokens are checked against.
enum Keys {
    /// Verification off: everyone is the server's own database user.
    Off,
    One(DecodingKey),
    /// A JWKS: the token's `kid` picks the key.
    Set(Vec<SetKey>),
}

/// One usable key of a JWKS.
struct SetKey {
    kid: Option<String>,
    key: DecodingKey,
    /// The algorithms this key verifies, and no others.
    algorithms: Vec<Algorithm>,
}

pub struct Auth {
    keys: Keys,
    /// Algorithms a token may use: those of the configured key, or of any key in a JWKS.
    algorithms: Vec<Algorithm>,
    audience: Option<String>,
    leeway: u64,
    role_claim: String,
    anon_role: Option<String>,
}

/// Shortest HS secret accepted: shorter ones can be brute-forced.
const MIN_SECRET_BYTES: usize = 32;

const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const RSA: [Algorithm; 3] = [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512];
const EC: [Algorithm; 2] = [Algorithm::ES256, Algorithm::ES384];

impl Auth {
    /// Builds the verifier from the settings; an unusable key stops start-up with a message
    /// naming the variable.
    pub fn from_config(config: &Config) -> Result<Auth, String> {
        let secret = config.jwt_secret.0.as_bytes();
        let public = config.jwt_public_key.trim();
        let (keys, algorithms) = match (secret.is_empty(), public.is_empty()) {
            (false, false) => {
                return Err(
                    "set POSTRUST_JWT_SECRET or POSTRUST_JWT_PUBLIC_KEY, not both".to_owned(),
                );
            }
            (true, true) => (Keys::Off, Vec::new()),
            (false, true) => {
                if secret.len() < MIN_SECRET_BYTES {
                    return Err(format!(
                        "POSTRUST_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes"
                    ));
                }
                (Keys::One(DecodingKey::from_secret(secret)), HMAC.to_vec())
            }
            (true, false) => public_keys(public)?,
        };
        Ok(Auth {
            keys,
            algorithms,
            audience: Some(config.jwt_aud.clone()).filter(|a| !a.is_empty()),
            leeway: config.jwt_leeway_s as u64,
            role_claim: config.jwt_role_claim.clone(),
            anon_role: Some(config.anon_role.clone()).filter(|r| !r.is_empty()),
        })
    }

    /// Whether tokens are verified at all.
    pub fn is_enabled(&self) -> bool {
        !matches!(self.keys, Keys::Off)
    }

    /// Checks `credentials` (`Bearer <token>`, or nothing).
    pub fn authenticate(&self, credentials: Option<&str>) -> Result<Identity, AuthError> {
        if let Keys::Off = self.keys {
            return Ok(Identity {
                role: None,
                claims: "{}".to_owned(),
                expires_at: None,
            });
        }
        let Some(credentials) = credentials.map(str::trim).filter(|c| !c.is_empty()) else {
            return self.anonymous();
        };
        let token = match credentials.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(AuthError::NotBearer),
        };
        let claims = self.verify(token)?;
        let expires_at = claims.get("exp").and_then(Value::as_u64);
        let role = match claims.get(&self.role_claim) {
            Some(Value::String(role)) if !role.is_empty() => role.clone(),
            None => self.anon_role.clone().ok_or(AuthError::NoRole)?,
            Some(_) => return Err(AuthError::NoRole),
        };
        Ok(Identity {
            role: Some(role),
            claims: claims.to_string(),
            expires_at,
        })
    }

    fn anonymous(&self) -> Result<Identity, AuthError> {
        match &self.anon_role {
            Some(role) => Ok(Identity {
                role: Some(role.clone()),
                claims: "{}".to_owned(),
                expires_at: None,
            }),
            None => Err(AuthError::Missing),
        }
    }

    fn verify(&self, token: &str) -> Result<Value, AuthError> {
        // The header is read only to pick the key; its algorithm must still be one the
        // configured key's family allows, which `Validation::algorithms` enforces.
        let header = jsonwebtoken::decode_header(token).map_err(|_| header_error(token))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(AuthError::WrongAlgorithm);
        }
        let key = match &self.keys {
            Keys::Off => unreachable!("checked by authenticate"),
            Keys::One(key) => key,
            Keys::Set(set) => &set_key(set, header.kid.as_deref(), header.alg)?.key,
        };
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.required_spec_claims.clear();
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                // Unchecked otherwise: a token without `aud` would pass.
                validation.required_spec_claims.insert("aud".to_owned());
            }
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Value>(token, key, &validation).map_err(|err| {
            use jsonwebtoken::errors::ErrorKind as K;
            match err.kind() {
                K::ExpiredSignature => AuthError::Expired,
                K::ImmatureSignature => AuthError::NotYetValid,
                K::InvalidAudience => AuthError::WrongAudience,
                K::MissingRequiredClaim(claim) if claim == "aud" => AuthError::WrongAudience,
                K::InvalidSignature => AuthError::BadSignature,
                K::InvalidAlgorithm | K::MissingAlgorithm => AuthError::WrongAlgorithm,
                _ => AuthError::Malformed,
            }
        })?;
        match data.claims {
            claims @ Value::Object(_) => Ok(claims),
            _ => Err(AuthError::Malformed),
        }
    }
}

/// The key of a JWKS that verifies a token with this `kid` and algorithm: the key named by
/// the `kid`, or without one the only key for the algorithm.
fn set_key<'a>(
    set: &'a [SetKey],
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<&'a SetKey, AuthError> {
    match kid {
        Some(kid) => {
            let key = set
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .ok_or(AuthError::UnknownKey)?;
            // A key's algorithm binds: an RS512 token is not verified with an RS256 key.
            if key.algorithms.contains(&alg) {
                Ok(key)
            } else {
                Err(AuthError::WrongAlgorithm)
            }
        }
        None => {
            let mut fitting = set.iter().filter(|k| k.algorithms.contains(&alg));
            match (fitting.next(), fitting.next()) {
                (Some(key), None) => Ok(key),
                _ => Err(AuthError::UnknownKey),
            }
        }
    }
}

/// The algorithms a JWK verifies: the one its `alg` names, else those its type and curve
/// allow. Empty for keys this server does not verify with (encryption keys, HMAC, EdDSA).
fn jwk_algorithms(jwk: &Jwk) -> Vec<Algorithm> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, KeyAlgorithm, PublicKeyUse};
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Vec::new();
    }
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA.to_vec(),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let named = match jwk.common.key_algorithm {
        None => return by_type,
        Some(KeyAlgorithm::RS256) => Algorithm::RS256,
        Some(KeyAlgorithm::RS384) => Algorithm::RS384,
        Some(KeyAlgorithm::RS512) => Algorithm::RS512,
        Some(KeyAlgorithm::ES256) => Algorithm::ES256,
        Some(KeyAlgorithm::ES384) => Algorithm::ES384,
        Some(_) => return Vec::new(),
    };
    // An `alg` that contradicts the key's type makes the key unusable, not the type.
    by_type.into_iter().filter(|a| *a == named).collect()
}

/// Why a token's header was refused: a header that is JSON with an `alg` the library does
/// not know (`none`, typically) is a wrong algorithm, anything else is malformed.
fn header_error(token: &str) -> AuthError {
    use base64::Engine as _;
    let names_an_algorithm = token
        .split('.')
        .next()
        .and_then(|h| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .is_some_and(|header| header.get("alg").is_some_and(Value::is_string));
    if names_an_algorithm {
        AuthError::WrongAlgorithm
    } else {
        AuthError::Malformed
    }
}

/// `POSTRUST_JWT_PUBLIC_KEY`: PEM text, JWKS text, or the path of a file holding either.
fn public_keys(value: &str) -> Result<(Keys, Vec<Algorithm>), String> {
    let text = if value.starts_with("-----BEGIN") || value.starts_with('{') {
        value.to_owned()
    } else {
        std::fs::read_to_string(value)
            .map_err(|err| format!("POSTRUST_JWT_PUBLIC_KEY: cannot read {value}: {err}"))?
    };
    let text = text.trim();
    if text.starts_with('{') {
        let set: JwkSet = serde_json::from_str(text)
            .map_err(|err| format!("POSTRUST_JWT_PUBLIC_KEY: not a JWKS document: {err}"))?;
        let mut keys = Vec::new();
        let mut algorithms: Vec<Algorithm> = Vec::new();
        for jwk in &set.keys {
            let accepts = jwk_algorithms(jwk);
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            if accepts.is_empty() {
                continue;
            }
            for alg in &accepts {
                if !algorithms.contains(alg) {
                    algorithms.push(*alg);
                }
            }
            keys.push(SetKey {
                kid: jwk.common.key_id.clone(),
                key,
                algorithms: accepts,
            });
        }
        if keys.is_empty() {
            return Err(
                "POSTRUST_JWT_PUBLIC_KEY: the JWKS has no RSA or EC (P-256, P-384) signing key"
                    .to_owned(),
            );
        }
        return Ok((Keys::Set(keys), algorithms));
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(text.as_bytes()) {
        return Ok((Keys::One(key), RSA.to_vec()));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(text.as_bytes()) {
        return Ok((Keys::One(key), EC.to_vec()));
    }
    Err("POSTRUST_JWT_PUBLIC_KEY: not an RSA or EC public key in PEM form, nor a JWKS".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";
    const RSA_PRIVATE: &str = include_str!("../tests/fixtures/jwt/rsa_private.pem");
    const RSA_PUBLIC: &str = include_str!("../tests/fixtures/jwt/rsa_public.pem");
    const EC_PRIVATE: &str = include_str!("../tests/fixtures/jwt/ec_private.pem");
    const EC_PUBLIC: &str = include_str!("../tests/fixtures/jwt/ec_public.pem");
    const JWKS: &str = include_str!("../tests/fixtures/jwt/jwks.json");

    fn auth(vars: &[(&str, &str)]) -> Result<Auth, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let config = Config::from_lookup(|k| {
            vars.iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
        })
        .unwrap();
        Auth::from_config(&config)
    }

    fn hs() -> Auth {
        auth(&[("POSTRUST_JWT_SECRET", SECRET)]).unwrap()
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn hs_token(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    fn b64url(bytes: &[u8]) -> String {
        const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn a_valid_hs256_token_gives_its_role_and_sorted_claims() {
        let exp = now() + 600;
        let id = hs()
            .authenticate(Some(&bearer(&hs_token(
                json!({"sub":"u1","role":"web_user","exp":exp}),
            ))))
            .unwrap();
        assert_eq!(id.role.as_deref(), Some("web_user"));
        assert_eq!(
            id.claims,
            format!(r#"{{"exp":{exp},"role":"web_user","sub":"u1"}}"#)
        );
        assert_eq!(id.expires_at, Some(exp));
        let lower = hs().authenticate(Some(&format!("bearer {}", hs_token(json!({"role":"r"})))));
        assert!(lower.is_ok(), "the scheme is case-insensitive");
    }

    #[test]
    fn rsa_ec_and_jwks_keys_verify_their_own_tokens() {
        let claims = json!({"role":"app","exp": now() + 600});
        let rs = encode(
            &Header::new(Algorithm::RS256),
            &claims,
            &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap();
        let es = encode(
            &Header::new(Algorithm::ES256),
            &claims,
            &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap();
        let rsa = auth(&[("POSTRUST_JWT_PUBLIC_KEY", RSA_PUBLIC)]).unwrap();
        let ec = auth(&[("POSTRUST_JWT_PUBLIC_KEY", EC_PUBLIC)]).unwrap();
        assert_eq!(
            rsa.authenticate(Some(&bearer(&rs)))
                .unwrap()
                .role
                .as_deref(),
            Some("app")
        );
        assert_eq!(
            ec.authenticate(Some(&bearer(&es))).unwrap().role.as_deref(),
            Some("app")
        );
        assert_eq!(
            rsa.authenticate(Some(&bearer(&es))),
            Err(AuthError::WrongAlgorithm)
        );
        assert_eq!(
            ec.authenticate(Some(&bearer(&rs))),
            Err(AuthError::WrongAlgorithm)
        );

        let jwks = auth(&[("POSTRUST_JWT_PUBLIC_KEY", JWKS)]).unwrap();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("test-rsa".into());
        let with_kid = encode(
            &header,
            &claims,
            &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(jwks.authenticate(Some(&bearer(&with_kid))).is_ok());
        header.kid = Some("other".into());
        let unknown = encode(
            &header,
            &claims,
            &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(
            jwks.authenticate(Some(&bearer(&unknown))),
            Err(AuthError::UnknownKey)
        );
    }

    #[test]
    fn forged_none_and_confused_tokens_are_refused() {
        let good = hs_token(json!({"role":"web_user"}));
        let (head_and_claims, _sig) = good.rsplit_once('.').unwrap();
        let forged = format!("{head_and_claims}.{}", b64url(b"not the signature at all"));
        assert_eq!(
            hs().authenticate(Some(&bearer(&forged))),
            Err(AuthError::BadSignature)
        );

        let none = format!(
            "{}.{}.",
            b64url(br#"{"alg":"none","typ":"JWT"}"#),
            b64url(br#"{"role":"postgres"}"#)
        );
        assert_eq!(
            hs().authenticate(Some(&bearer(&none))),
            Err(AuthError::WrongAlgorithm)
        );

        // HS256 signed with the RSA public key as the HMAC secret: the classic confusion.
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &json!({"role":"postgres"}),
            &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        )
        .unwrap();
        let rsa = auth(&[("POSTRUST_JWT_PUBLIC_KEY", RSA_PUBLIC)]).unwrap();
        assert_eq!(
            rsa.authenticate(Some(&bearer(&confused))),
            Err(AuthError::WrongAlgorithm)
        );

        assert_eq!(
            hs().authenticate(Some("Bearer abc")),
            Err(AuthError::Malformed)
        );
        assert_eq!(hs().authenticate(Some(&good)), Err(AuthError::NotBearer));
        assert_eq!(
            hs().authenticate(Some(&format!("Basic {good}"))),
            Err(AuthError::NotBearer)
        );
    }

    #[test]
    fn time_and_audience_claims_are_enforced_with_leeway() {
        let expired = hs_token(json!({"role":"r","exp": now() - 120}));
        assert_eq!(
            hs().authenticate(Some(&bearer(&expired))),
            Err(AuthError::Expired)
        );
        let just_expired = hs_token(json!({"role":"r","exp": now() - 5}));
        assert!(
            hs().authenticate(Some(&bearer(&just_expired))).is_ok(),
            "within 30 s leeway"
        );
        let future = hs_token(json!({"role":"r","nbf": now() + 120}));
        assert_eq!(
            hs().authenticate(Some(&bearer(&future))),
            Err(AuthError::NotYetValid)
        );

        let with_aud = auth(&[
            ("POSTRUST_JWT_SECRET", SECRET),
            ("POSTRUST_JWT_AUD", "postrust"),
        ])
        .unwrap();
        let right = hs_token(json!({"role":"r","aud":"postrust"}));
        let wrong = hs_token(json!({"role":"r","aud":"someone-else"}));
        assert!(with_aud.authenticate(Some(&bearer(&right))).is_ok());
        assert_eq!(
            with_aud.authenticate(Some(&bearer(&wrong))),
            Err(AuthError::WrongAudience)
        );
        let without = hs_token(json!({"role":"r"}));
        assert_eq!(
            with_aud.authenticate(Some(&bearer(&without))),
            Err(AuthError::WrongAudience),
            "aud required when configured"
        );
        let among = hs_token(json!({"role":"r","aud":["other","postrust"]}));
        assert!(with_aud.authenticate(Some(&bearer(&among))).is_ok());
        assert!(
            hs().authenticate(Some(&bearer(&wrong))).is_ok(),
            "aud unchecked when unset"
        );
    }

    /// The test EC public key as a JWK: a P-256 SubjectPublicKeyInfo ends with the point,
    /// `04 || x || y`.
    fn ec_jwk(kid: &str, alg: Option<&str>) -> serde_json::Value {
        use base64::Engine as _;
        let body: String = EC_PUBLIC
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        let point = &der[der.len() - 64..];
        let mut jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": kid,
            "x": b64url(&point[..32]), "y": b64url(&point[32..]),
        });
        if let Some(alg) = alg {
            jwk["alg"] = json!(alg);
        }
        jwk
    }

    fn signed(alg: Algorithm, kid: Option<&str>, private: &str) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(private.as_bytes()),
            _ => EncodingKey::from_rsa_pem(private.as_bytes()),
        };
        bearer(
            &encode(
                &header,
                &json!({"role":"app","exp": now() + 600}),
                &key.unwrap(),
            )
            .unwrap(),
        )
    }

    #[test]
    fn a_jwks_of_rsa_and_ec_keys_picks_each_keys_own_algorithms() {
        let mut set: serde_json::Value = serde_json::from_str(JWKS).unwrap();
        let rsa = set["keys"][0].clone();
        set["keys"]
            .as_array_mut()
            .unwrap()
            .push(ec_jwk("test-ec", None));
        let mixed = auth(&[("POSTRUST_JWT_PUBLIC_KEY", &set.to_string())]).unwrap();
        let es = signed(Algorithm::ES256, Some("test-ec"), EC_PRIVATE);
        let rs = signed(Algorithm::RS256, Some("test-rsa"), RSA_PRIVATE);
        assert_eq!(
            mixed.authenticate(Some(&es)).unwrap().role.as_deref(),
            Some("app")
        );
        assert!(mixed.authenticate(Some(&rs)).is_ok());
        // Without a kid, the one key for the algorithm verifies.
        assert!(
            mixed
                .authenticate(Some(&signed(Algorithm::ES256, None, EC_PRIVATE)))
                .is_ok()
        );
        assert!(
            mixed
                .authenticate(Some(&signed(Algorithm::RS256, None, RSA_PRIVATE)))
                .is_ok()
        );
        // A token naming the EC key but signed RS256 is refused by the EC key's algorithms.
        assert_eq!(
            mixed.authenticate(Some(&signed(
                Algorithm::RS256,
                Some("test-ec"),
                RSA_PRIVATE
            ))),
            Err(AuthError::WrongAlgorithm)
        );

        // The RSA key's `alg` is RS256: an RS512 token is refused, though RSA can verify it.
        let rs512 = signed(Algorithm::RS512, Some("test-rsa"), RSA_PRIVATE);
        assert_eq!(
            mixed.authenticate(Some(&rs512)),
            Err(AuthError::WrongAlgorithm)
        );
        // Without `alg`, the key verifies every RSA algorithm.
        let mut open = rsa.clone();
        open.as_object_mut().unwrap().remove("alg");
        let unbound = auth(&[(
            "POSTRUST_JWT_PUBLIC_KEY",
            &json!({ "keys": [open] }).to_string(),
        )])
        .unwrap();
        assert!(unbound.authenticate(Some(&rs512)).is_ok());
        // An EC key whose `alg` contradicts its curve verifies nothing.
        let contradicting = json!({ "keys": [ec_jwk("bad", Some("ES384"))] }).to_string();
        assert!(auth(&[("POSTRUST_JWT_PUBLIC_KEY", &contradicting)]).is_err());
    }

    #[test]
    fn roles_come_from_the_configured_claim_or_the_anonymous_role() {
        assert_eq!(hs().authenticate(None), Err(AuthError::Missing));
        assert_eq!(
            hs().authenticate(Some(&bearer(&hs_token(json!({"sub":"x"}))))),
            Err(AuthError::NoRole)
        );
        assert_eq!(
            hs().authenticate(Some(&bearer(&hs_token(json!({"role":7}))))),
            Err(AuthError::NoRole)
        );
        let anon = auth(&[
            ("POSTRUST_JWT_SECRET", SECRET),
            ("POSTRUST_ANON_ROLE", "web_anon"),
            ("POSTRUST_JWT_ROLE_CLAIM", "db_role"),
        ])
        .unwrap();
        assert_eq!(
            anon.authenticate(None).unwrap().role.as_deref(),
            Some("web_anon")
        );
        let custom = hs_token(json!({"db_role":"editor","role":"ignored"}));
        assert_eq!(
            anon.authenticate(Some(&bearer(&custom)))
                .unwrap()
                .role
                .as_deref(),
            Some("editor")
        );
    }

    #[test]
    fn without_keys_verification_is_off_and_everyone_is_the_server_role() {
        let off = auth(&[]).unwrap();
        assert!(!off.is_enabled());
        let id = off.authenticate(Some("Bearer anything")).unwrap();
        assert_eq!((id.role, id.claims.as_str()), (None, "{}"));
    }

    #[test]
    fn unusable_keys_stop_start_up_with_the_variable_named() {
        let short = auth(&[("POSTRUST_JWT_SECRET", "short")]).err().unwrap();
        assert!(
            short.contains("POSTRUST_JWT_SECRET must be at least 32 bytes"),
            "{short}"
        );
        let both = auth(&[
            ("POSTRUST_JWT_SECRET", SECRET),
            ("POSTRUST_JWT_PUBLIC_KEY", RSA_PUBLIC),
        ])
        .err()
        .unwrap();
        assert!(both.contains("not both"), "{both}");
        let missing = auth(&[("POSTRUST_JWT_PUBLIC_KEY", "/nonexistent/key.pem")])
            .err()
            .unwrap();
        assert!(
            missing.contains("cannot read /nonexistent/key.pem"),
            "{missing}"
        );
        let garbage = auth(&[("POSTRUST_JWT_PUBLIC_KEY", "-----BEGIN nonsense")])
            .err()
            .unwrap();
        assert!(garbage.contains("not an RSA or EC public key"), "{garbage}");
    }
}
