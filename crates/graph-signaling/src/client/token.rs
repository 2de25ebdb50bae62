//! OAuth2 client-credentials tokens for outgoing requests: cached, refreshed before expiry,
//! fetched once however many requests wait for it.
//!
//! The app proves who it is with a [`Credential`]: a client secret, or a certificate. With a
//! certificate, every token request carries a fresh client assertion (RFC 7523, the
//! `private_key_jwt` method of OpenID Connect), as Microsoft's "certificate credentials" page
//! for the identity platform describes it:
//!
//! - header: `alg` RS256, `typ` JWT, `x5t` the base64url SHA-1 thumbprint of the
//!   certificate's DER (the header Entra ID matches registered certificates by), and
//!   `x5t#S256`, its SHA-256 counterpart, which newer revisions of that page ask for (they also
//!   suggest PS256; Entra ID accepts RS256, which every deployment of the older page uses);
//! - claims: `aud` the token endpoint URL itself, `iss` and `sub` both the app (client) id,
//!   `jti` a fresh GUID, `nbf` and `iat` now, `exp` a few minutes later (the page asks for at
//!   most 5 to 10 minutes after `nbf`; Entra ID does not enforce a limit);
//! - form fields: `client_assertion_type` =
//!   `urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and `client_assertion` = the JWT,
//!   in place of `client_secret`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::GraphError;
use crate::state::TokenLifetime;

/// Scope for Graph application permissions.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// `client_assertion_type` of a JWT client assertion (RFC 7523 section 2.2).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long a client assertion is valid. Each token request signs a new one, so it only has
/// to outlive one request, and a leaked assertion is soon useless.
pub const ASSERTION_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// Largest certificate or private-key PEM read. Real ones are a few KiB, chains included.
pub const MAX_PEM_BYTES: usize = 64 * 1024;

/// How the app proves its identity to the token endpoint.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credential {
    /// A client secret, sent as `client_secret`.
    Secret(String),
    /// A certificate registered with the app, proven by a signed client assertion.
    Certificate(CertificateCredential),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Never print the secret.
            Credential::Secret(_) => f.write_str("Secret(<redacted>)"),
            Credential::Certificate(c) => c.fmt(f),
        }
    }
}

impl Credential {
    /// A client secret.
    pub fn secret(secret: impl Into<String>) -> Credential {
        Credential::Secret(secret.into())
    }

    /// A certificate and its private key, both PEM; see [`CertificateCredential::from_pem`].
    pub fn certificate(
        certificate_pem: &[u8],
        private_key_pem: &[u8],
    ) -> Result<Credential, CredentialError> {
        CertificateCredential::from_pem(certificate_pem, private_key_pem)
            .map(Credential::Certificate)
    }
}

/// Why a certificate credential could not be set up. Raised when the credential is built, so a
/// misconfigured bot fails at start instead of at its first call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// A PEM input is larger than [`MAX_PEM_BYTES`].
    #[error("{what} is larger than {MAX_PEM_BYTES} bytes")]
    TooLarge {
        /// "certificate" or "private key".
        what: &'static str,
    },
    /// The certificate input holds no `CERTIFICATE` PEM block.
    #[error("no PEM CERTIFICATE block in the certificate: {0}")]
    NoCertificate(String),
    /// The certificate's public key is not an RSA key that can verify RS256.
    #[error("the certificate does not carry a usable RSA public key: {0}")]
    Certificate(String),
    /// The private key is not an RSA private key in PEM (PKCS#1 or PKCS#8).
    #[error("the private key is not an RSA private key in PEM (PKCS#1 or PKCS#8): {0}")]
    PrivateKey(String),
    /// The private key does not belong to the certificate.
    #[error("the private key does not match the certificate's public key")]
    KeyMismatch,
}

/// A certificate (its thumbprints) and the RSA private key that signs client assertions.
#[derive(Clone)]
pub struct CertificateCredential {
    key: EncodingKey,
    /// SHA-256 of the private key's PEM, so two credentials compare without keeping a copy
    /// of the key's text around.
    key_digest: Arc<[u8]>,
    x5t: String,
    x5t_s256: String,
}

impl PartialEq for CertificateCredential {
    fn eq(&self, other: &Self) -> bool {
        self.x5t_s256 == other.x5t_s256 && self.key_digest == other.key_digest
    }
}

impl Eq for CertificateCredential {}

impl std::fmt::Debug for CertificateCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The thumbprint is public (it names the certificate); the key never appears.
        f.debug_struct("CertificateCredential")
            .field("x5t", &self.x5t)
            .finish_non_exhaustive()
    }
}

/// The claims of a client assertion.
#[derive(Debug, Serialize)]
struct AssertionClaims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: &'a str,
    nbf: u64,
    iat: u64,
    exp: u64,
}

impl CertificateCredential {
    /// Reads a certificate (the first `CERTIFICATE` block of `certificate_pem`, which may be
    /// a chain with the leaf first) and its RSA private key. Checks that the key belongs to
    /// the certificate: a mismatch would otherwise only show as the token endpoint's refusal.
    pub fn from_pem(
        certificate_pem: &[u8],
        private_key_pem: &[u8],
    ) -> Result<CertificateCredential, CredentialError> {
        if certificate_pem.len() > MAX_PEM_BYTES {
            return Err(CredentialError::TooLarge {
                what: "certificate",
            });
        }
        if private_key_pem.len() > MAX_PEM_BYTES {
            return Err(CredentialError::TooLarge {
                what: "private key",
            });
        }
        let blocks = pem::parse_many(certificate_pem)
            .map_err(|e| CredentialError::NoCertificate(e.to_string()))?;
        let leaf = blocks
            .into_iter()
            .find(|b| b.tag() == "CERTIFICATE")
            .ok_or_else(|| CredentialError::NoCertificate("none found".into()))?;
        let der = leaf.contents();
        let x5t = URL_SAFE_NO_PAD.encode(sha1(der));
        let x5t_s256 = URL_SAFE_NO_PAD.encode(sha256(der));
        let key = EncodingKey::from_rsa_pem(private_key_pem)
            .map_err(|e| CredentialError::PrivateKey(e.to_string()))?;
        // jsonwebtoken reads the RSA public key out of a CERTIFICATE block itself.
        let public = DecodingKey::from_rsa_pem(pem::encode(&leaf).as_bytes())
            .map_err(|e| CredentialError::Certificate(e.to_string()))?;
        check_pair(&key, &public)?;
        Ok(CertificateCredential {
            key,
            key_digest: Arc::from(sha256(private_key_pem).as_slice()),
            x5t,
            x5t_s256,
        })
    }

    /// The certificate's SHA-1 thumbprint, base64url (the `x5t` header).
    pub fn x5t(&self) -> &str {
        &self.x5t
    }

    /// The certificate's SHA-256 thumbprint, base64url (the `x5t#S256` header).
    pub fn x5t_s256(&self) -> &str {
        &self.x5t_s256
    }

    /// A client assertion for `client_id` at `token_url`, valid from `now` for
    /// [`ASSERTION_LIFETIME`], with `jti` as its unique id. Pure: the caller supplies the
    /// clock and the id, so tests can pin both.
    pub fn assertion(
        &self,
        client_id: &str,
        token_url: &str,
        now: SystemTime,
        jti: &str,
    ) -> Result<String, CredentialError> {
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = AssertionClaims {
            aud: token_url,
            iss: client_id,
            sub: client_id,
            jti,
            nbf: now,
            iat: now,
            exp: now + ASSERTION_LIFETIME.as_secs(),
        };
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".into());
        header.x5t = Some(self.x5t.clone());
        header.x5t_s256 = Some(self.x5t_s256.clone());
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| CredentialError::PrivateKey(e.to_string()))
    }
}

/// Signs a probe with `key` and verifies it with `public`: they are one pair if it verifies.
fn check_pair(key: &EncodingKey, public: &DecodingKey) -> Result<(), CredentialError> {
    let probe = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &serde_json::json!({"probe": true}),
        key,
    )
    .map_err(|e| CredentialError::PrivateKey(e.to_string()))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<serde_json::Value>(&probe, public, &validation)
        .map(|_| ())
        .map_err(|_| CredentialError::KeyMismatch)
}

fn sha1(bytes: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes)
        .as_ref()
        .to_vec()
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

/// The app registration's credentials and where to exchange them.
#[derive(Clone)]
pub struct ClientCredentials {
    /// Token endpoint (`https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`).
    pub token_url: String,
    /// App (client) id.
    pub client_id: String,
    /// The secret or certificate the app proves itself with.
    pub credential: Credential,
    /// Scope requested.
    pub scope: String,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// Secret credentials for a tenant on the public cloud's token endpoint.
    pub fn new(
        tenant: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        ClientCredentials::with_credential(tenant, client_id, Credential::secret(client_secret))
    }

    /// Credentials of any kind for a tenant on the public cloud's token endpoint.
    pub fn with_credential(
        tenant: &str,
        client_id: impl Into<String>,
        credential: Credential,
    ) -> Self {
        ClientCredentials {
            token_url: format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"),
            client_id: client_id.into(),
            credential,
            scope: GRAPH_SCOPE.to_owned(),
        }
    }

    /// The token request's form: the grant, the scope and the proof of identity (a fresh
    /// assertion signed at `now` with id `jti` for a certificate).
    fn form(&self, now: SystemTime, jti: &str) -> Result<Vec<(&str, String)>, CredentialError> {
        let mut form = vec![
            ("client_id", self.client_id.clone()),
            ("scope", self.scope.clone()),
            ("grant_type", "client_credentials".to_owned()),
        ];
        match &self.credential {
            Credential::Secret(secret) => form.push(("client_secret", secret.clone())),
            Credential::Certificate(cert) => {
                let assertion = cert.assertion(&self.client_id, &self.token_url, now, jti)?;
                form.push(("client_assertion_type", CLIENT_ASSERTION_TYPE.to_owned()));
                form.push(("client_assertion", assertion));
            }
        }
        Ok(form)
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

enum Source {
    Credentials(ClientCredentials),
    Fixed(String),
}

/// Hands out access tokens.
pub struct TokenProvider {
    source: Source,
    http: reqwest::Client,
    // The async mutex is held across the fetch: concurrent callers wait for one fetch.
    cached: Mutex<Option<(String, TokenLifetime)>>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenProvider")
            .field("fetches", &self.fetches)
            .finish_non_exhaustive()
    }
}

impl TokenProvider {
    /// Tokens from the client-credentials flow.
    pub fn client_credentials(creds: ClientCredentials, http: reqwest::Client) -> Self {
        TokenProvider {
            source: Source::Credentials(creds),
            http,
            cached: Mutex::new(None),
            fetches: AtomicU64::new(0),
        }
    }

    /// Always the same token (emulators, tests).
    pub fn fixed(token: impl Into<String>) -> Self {
        TokenProvider {
            source: Source::Fixed(token.into()),
            http: reqwest::Client::new(),
            cached: Mutex::new(None),
            fetches: AtomicU64::new(0),
        }
    }

    /// Number of token requests made.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// A valid token, from cache when it is not close to expiry.
    pub async fn token(&self) -> Result<String, GraphError> {
        let creds = match &self.source {
            Source::Fixed(t) => return Ok(t.clone()),
            Source::Credentials(c) => c,
        };
        let mut cached = self.cached.lock().await;
        let now = tokio::time::Instant::now().into_std();
        if let Some((token, life)) = cached.as_ref()
            && !life.needs_refresh(now)
        {
            return Ok(token.clone());
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        // A certificate signs a new assertion per request: an assertion's id must not repeat.
        let jti = uuid::Uuid::new_v4().to_string();
        let form = creds
            .form(SystemTime::now(), &jti)
            .map_err(|e| GraphError::Token(format!("client assertion: {e}")))?;
        let resp = self
            .http
            .post(&creds.token_url)
            .timeout(Duration::from_secs(30))
            .form(&form)
            .send()
            .await
            .map_err(|e| GraphError::Token(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| GraphError::Token(e.to_string()))?;
        if !status.is_success() {
            return Err(GraphError::Token(format!(
                "{} answered HTTP {status}: {}",
                creds.token_url,
                String::from_utf8_lossy(&body[..body.len().min(512)])
            )));
        }
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| GraphError::Token(e.to_string()))?;
        let life = TokenLifetime::new(now, Duration::from_secs(parsed.expires_in));
        *cached = Some((parsed.access_token.clone(), life));
        Ok(parsed.access_token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_parts(jwt: &str) -> (serde_json::Value, serde_json::Value) {
        let mut parts = jwt.split('.');
        let mut next = || {
            let bytes = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
        };
        (next(), next())
    }

    #[test]
    fn an_assertion_carries_the_claims_entra_id_asks_for() {
        let cert = test_kit::certs::self_signed_rsa("bot.test");
        let cred =
            CertificateCredential::from_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes())
                .unwrap();
        let der = pem::parse(&cert.cert_pem).unwrap().into_contents();
        assert_eq!(cred.x5t(), URL_SAFE_NO_PAD.encode(sha1(&der)));
        assert_eq!(cred.x5t().len(), 27, "20 bytes, base64url without padding");
        assert_eq!(cred.x5t_s256(), URL_SAFE_NO_PAD.encode(sha256(&der)));

        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let url = "https://login.example/tenant/oauth2/v2.0/token";
        let jwt = cred.assertion("app-id", url, now, "jti-1").unwrap();
        let (header, claims) = decode_parts(&jwt);
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["x5t"], cred.x5t());
        assert_eq!(header["x5t#S256"], cred.x5t_s256());
        assert_eq!(claims["aud"], url);
        assert_eq!(claims["iss"], "app-id");
        assert_eq!(claims["sub"], "app-id");
        assert_eq!(claims["jti"], "jti-1");
        assert_eq!(claims["nbf"], 1_700_000_000);
        assert_eq!(claims["iat"], 1_700_000_000);
        assert_eq!(claims["exp"], 1_700_000_000 + 600);

        // The signature verifies against the certificate's public key.
        let public = DecodingKey::from_rsa_pem(cert.cert_pem.as_bytes()).unwrap();
        let mut v = Validation::new(Algorithm::RS256);
        v.validate_exp = false;
        v.set_audience(&[url]);
        jsonwebtoken::decode::<serde_json::Value>(&jwt, &public, &v).unwrap();
    }

    #[test]
    fn the_form_sends_an_assertion_instead_of_a_secret_and_a_new_one_each_time() {
        let cert = test_kit::certs::self_signed_rsa("bot.test");
        let credential =
            Credential::certificate(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes()).unwrap();
        let creds = ClientCredentials::with_credential("t", "app", credential);
        let now = SystemTime::now();
        let a = creds.form(now, "one").unwrap();
        let b = creds.form(now, "two").unwrap();
        let field = |form: &[(&str, String)], name: &str| {
            form.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(field(&a, "client_secret"), None);
        assert_eq!(
            field(&a, "client_assertion_type").as_deref(),
            Some(CLIENT_ASSERTION_TYPE)
        );
        assert_ne!(field(&a, "client_assertion"), field(&b, "client_assertion"));
        let secret = ClientCredentials::new("t", "app", "s3cret");
        let form = secret.form(now, "x").unwrap();
        assert_eq!(field(&form, "client_secret").as_deref(), Some("s3cret"));
        assert_eq!(field(&form, "client_assertion"), None);
    }

    #[test]
    fn bad_inputs_are_named_errors_and_debug_never_shows_keys() {
        let cert = test_kit::certs::self_signed_rsa("bot.test");
        let other = test_kit::certs::self_signed_rsa("other.test");
        let (c, k) = (cert.cert_pem.as_bytes(), cert.key_pem.as_bytes());
        assert_eq!(
            CertificateCredential::from_pem(c, other.key_pem.as_bytes()),
            Err(CredentialError::KeyMismatch)
        );
        assert!(matches!(
            CertificateCredential::from_pem(k, k),
            Err(CredentialError::NoCertificate(_))
        ));
        assert!(matches!(
            CertificateCredential::from_pem(c, c),
            Err(CredentialError::PrivateKey(_))
        ));
        assert!(matches!(
            CertificateCredential::from_pem(b"garbage", k),
            Err(CredentialError::NoCertificate(_))
        ));
        let huge = vec![b'A'; MAX_PEM_BYTES + 1];
        assert_eq!(
            CertificateCredential::from_pem(&huge, k),
            Err(CredentialError::TooLarge {
                what: "certificate"
            })
        );

        let cred = Credential::certificate(c, k).unwrap();
        let shown = format!("{cred:?}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
        let body = cert.key_pem.lines().nth(1).unwrap();
        assert!(!shown.contains(body), "{shown}");
        let shown = format!("{:?}", ClientCredentials::new("t", "app", "s3cret"));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
