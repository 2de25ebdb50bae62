//! The token endpoint (OAuth2 client credentials grant) and the bearer check every API request
//! passes first. Tokens are opaque random strings remembered with their expiry.
//!
//! The app proves itself with its client secret or, when [`super::SimConfig::app_certificate_pem`]
//! registers a certificate, with a client assertion signed by that certificate's key (RFC 7523;
//! the claims Entra ID checks are listed in graph-signaling's `client::token` docs). Each way of
//! failing gets the `AADSTS` code Entra ID answers with, since that code is what an operator
//! searches for.

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Sim;

/// `client_assertion_type` of a JWT client assertion (RFC 7523 section 2.2).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Longest client assertion read; real ones are about 1.5 KiB.
const MAX_ASSERTION_BYTES: usize = 16 * 1024;

/// Clock skew tolerated on `nbf` and `exp`, as identity providers allow some.
const CLOCK_SKEW_SECS: u64 = 60;

/// Assertion ids remembered against replay. Each stays until its assertion expires; past this
/// many, new assertions are refused rather than the memory growing without bound.
const MAX_REMEMBERED_JTIS: usize = 100_000;

/// Why the token endpoint refuses a form. OAuth2 errors have their own shape
/// (`error`, `error_description`), unlike Graph's, so they are not [`super::refusal::Refusal`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenRefusal {
    UnsupportedGrantType,
    InvalidClient,
    InvalidScope,
    /// Neither a secret nor an assertion, or an assertion of an unknown type.
    NoCredential,
    /// Not a JWT, or a header or claims that cannot be read.
    MalformedAssertion,
    /// No certificate registered, a thumbprint of another certificate, or a signature that
    /// does not verify with the registered certificate's key.
    AssertionSignature,
    /// `iss` or `sub` is not the app.
    AssertionIssuer,
    /// `aud` is not this token endpoint.
    AssertionAudience,
    /// Expired, not yet valid, or without the time claims.
    AssertionTime,
    /// An assertion id seen before.
    AssertionReplayed,
}

impl TokenRefusal {
    fn status(self) -> u16 {
        match self {
            TokenRefusal::UnsupportedGrantType
            | TokenRefusal::InvalidScope
            | TokenRefusal::NoCredential => 400,
            _ => 401,
        }
    }

    fn body(self) -> Value {
        // Entra ID's own wording, which client libraries show as is.
        let (error, description) = match self {
            TokenRefusal::UnsupportedGrantType => (
                "unsupported_grant_type",
                "only client_credentials is supported",
            ),
            TokenRefusal::InvalidClient => (
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided.",
            ),
            TokenRefusal::InvalidScope => ("invalid_scope", "scope must end with /.default"),
            TokenRefusal::NoCredential => (
                "invalid_request",
                "AADSTS7000218: The request body must contain the following parameter: \
                 'client_assertion' or 'client_secret'.",
            ),
            TokenRefusal::MalformedAssertion => (
                "invalid_client",
                "AADSTS50027: JWT token is invalid or malformed.",
            ),
            TokenRefusal::AssertionSignature => (
                "invalid_client",
                "AADSTS700027: Client assertion failed signature validation, or the \
                 certificate it names (x5t) is not registered on the application.",
            ),
            TokenRefusal::AssertionIssuer => (
                "invalid_client",
                "AADSTS700021: Client assertion application identifier doesn't match \
                 'client_id' parameter (iss and sub must both be the client id).",
            ),
            TokenRefusal::AssertionAudience => (
                "invalid_client",
                "AADSTS700023: Client assertion audience claim does not match Realm issuer \
                 (aud must be the token endpoint's URL).",
            ),
            TokenRefusal::AssertionTime => (
                "invalid_client",
                "AADSTS700024: Client assertion is not within its valid time range.",
            ),
            // Entra ID documents no code of its own for a reused jti; the malformed-token code
            // with the reason is what the sim answers.
            TokenRefusal::AssertionReplayed => (
                "invalid_client",
                "AADSTS50027: JWT token is invalid or malformed: the client assertion's jti \
                 was already used.",
            ),
        };
        json!({"error": error, "error_description": description})
    }
}

/// The certificate registered with the app: its public key and thumbprints.
#[derive(Clone)]
pub(super) struct RegisteredCertificate {
    key: DecodingKey,
    x5t: String,
    x5t_s256: String,
}

impl std::fmt::Debug for RegisteredCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredCertificate")
            .field("x5t", &self.x5t)
            .finish_non_exhaustive()
    }
}

/// Why a configured certificate cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// No `CERTIFICATE` block in the PEM.
    #[error("no PEM CERTIFICATE block: {0}")]
    NotACertificate(String),
    /// Its public key cannot verify RS256 signatures.
    #[error("the certificate's public key is not a usable RSA key: {0}")]
    Key(String),
}

impl RegisteredCertificate {
    /// Reads the first `CERTIFICATE` block of `pem_text`.
    pub(super) fn from_pem(pem_text: &str) -> Result<RegisteredCertificate, CertificateError> {
        let blocks = pem::parse_many(pem_text.as_bytes())
            .map_err(|e| CertificateError::NotACertificate(e.to_string()))?;
        let leaf = blocks
            .into_iter()
            .find(|b| b.tag() == "CERTIFICATE")
            .ok_or_else(|| CertificateError::NotACertificate("none found".into()))?;
        let der = leaf.contents();
        let digest = |alg| URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(alg, der));
        let key = DecodingKey::from_rsa_pem(pem::encode(&leaf).as_bytes())
            .map_err(|e| CertificateError::Key(e.to_string()))?;
        Ok(RegisteredCertificate {
            key,
            x5t: digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY),
            x5t_s256: digest(&aws_lc_rs::digest::SHA256),
        })
    }
}

/// Checks that `pem_text` is a certificate the token endpoint can verify assertions with.
pub fn check_certificate(pem_text: &str) -> Result<(), CertificateError> {
    RegisteredCertificate::from_pem(pem_text).map(|_| ())
}

/// The claims of a client assertion that the endpoint reads; types are loose so that a
/// wrong type is a refusal of that claim rather than an unreadable token.
#[derive(Deserialize)]
struct AssertionClaims {
    aud: Option<Value>,
    iss: Option<String>,
    sub: Option<String>,
    jti: Option<String>,
    nbf: Option<u64>,
    exp: Option<u64>,
}

/// Assertion ids already used, each with its expiry (Unix seconds).
#[derive(Debug, Default)]
pub(super) struct UsedAssertions(HashMap<String, u64>);

impl Sim {
    /// Handles the token endpoint's form body (client credentials grant) at `now`, with
    /// `wall` the wall-clock time that assertion claims are read against. Returns the status
    /// and the OAuth2 JSON body.
    pub fn issue_token(
        &mut self,
        now: Instant,
        wall: SystemTime,
        form: &[(String, String)],
    ) -> (u16, Value) {
        if let Err(refusal) = self.check_token_form(wall, form) {
            return (refusal.status(), refusal.body());
        }
        let token = format!("sim.{}", self.new_id());
        self.tokens
            .insert(token.clone(), now + self.config.token_lifetime);
        self.tokens.retain(|_, expiry| *expiry > now);
        (
            200,
            json!({
                "token_type": "Bearer",
                "expires_in": self.config.token_lifetime.as_secs(),
                "ext_expires_in": self.config.token_lifetime.as_secs(),
                "access_token": token,
            }),
        )
    }

    fn check_token_form(
        &mut self,
        wall: SystemTime,
        form: &[(String, String)],
    ) -> Result<(), TokenRefusal> {
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if field("grant_type") != Some("client_credentials") {
            return Err(TokenRefusal::UnsupportedGrantType);
        }
        if field("client_id") != Some(self.config.app_id.as_str()) {
            return Err(TokenRefusal::InvalidClient);
        }
        match (field("client_secret"), field("client_assertion")) {
            (Some(secret), None) => {
                if secret != self.config.app_secret {
                    return Err(TokenRefusal::InvalidClient);
                }
            }
            (None, Some(assertion)) => {
                if field("client_assertion_type") != Some(CLIENT_ASSERTION_TYPE) {
                    return Err(TokenRefusal::NoCredential);
                }
                self.check_assertion(wall, assertion)?;
            }
            // Both at once is as wrong as neither: which one would be the proof?
            _ => return Err(TokenRefusal::NoCredential),
        }
        if !field("scope").is_some_and(|s| s.ends_with("/.default")) {
            return Err(TokenRefusal::InvalidScope);
        }
        Ok(())
    }

    /// Verifies a client assertion against the registered certificate and remembers its id.
    fn check_assertion(&mut self, wall: SystemTime, assertion: &str) -> Result<(), TokenRefusal> {
        if assertion.len() > MAX_ASSERTION_BYTES {
            return Err(TokenRefusal::MalformedAssertion);
        }
        let header =
            jsonwebtoken::decode_header(assertion).map_err(|_| TokenRefusal::MalformedAssertion)?;
        let Some(Ok(cert)) = &self.certificate else {
            return Err(TokenRefusal::AssertionSignature);
        };
        // The thumbprint names the certificate; any that is given must be the registered
        // one's, and at least one must be given.
        let x5t_ok = header.x5t.as_deref().is_none_or(|t| t == cert.x5t);
        let s256_ok = header
            .x5t_s256
            .as_deref()
            .is_none_or(|t| t == cert.x5t_s256);
        let named = header.x5t.is_some() || header.x5t_s256.is_some();
        if !(named && x5t_ok && s256_ok) {
            return Err(TokenRefusal::AssertionSignature);
        }
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::PS256) {
            return Err(TokenRefusal::AssertionSignature);
        }
        // Only the signature is checked here; every claim is checked below against the
        // injected clock and the sim's own values, each with its own refusal.
        let mut validation = Validation::new(header.alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &cert.key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::Json(_) => TokenRefusal::MalformedAssertion,
                _ => TokenRefusal::AssertionSignature,
            })?
            .claims;
        let app = self.config.app_id.as_str();
        if claims.iss.as_deref() != Some(app) || claims.sub.as_deref() != Some(app) {
            return Err(TokenRefusal::AssertionIssuer);
        }
        let token_url = self.config.token_url();
        let audience_ok = match &claims.aud {
            Some(Value::String(a)) => *a == token_url,
            // RFC 7519 allows an array of audiences; this endpoint must be among them.
            Some(Value::Array(all)) => all.iter().any(|a| a.as_str() == Some(&token_url)),
            _ => false,
        };
        if !audience_ok {
            return Err(TokenRefusal::AssertionAudience);
        }
        let now = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let (Some(exp), nbf) = (claims.exp, claims.nbf) else {
            return Err(TokenRefusal::AssertionTime);
        };
        if exp.saturating_add(CLOCK_SKEW_SECS) <= now
            || nbf.is_some_and(|nbf| nbf > now.saturating_add(CLOCK_SKEW_SECS))
        {
            return Err(TokenRefusal::AssertionTime);
        }
        let Some(jti) = claims.jti.filter(|j| !j.is_empty() && j.len() <= 256) else {
            return Err(TokenRefusal::MalformedAssertion);
        };
        let used = &mut self.used_assertions.0;
        used.retain(|_, expiry| expiry.saturating_add(CLOCK_SKEW_SECS) > now);
        if used.contains_key(&jti) {
            return Err(TokenRefusal::AssertionReplayed);
        }
        if used.len() >= MAX_REMEMBERED_JTIS {
            // Refusing is safe; forgetting an unexpired id would let it be replayed.
            return Err(TokenRefusal::AssertionReplayed);
        }
        used.insert(jti, exp);
        Ok(())
    }

    /// Whether an `Authorization` header carries a bearer token issued here and not expired.
    pub(super) fn is_authorized(&self, now: Instant, authorization: Option<&str>) -> bool {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim);
        token.is_some_and(|t| self.tokens.get(t).is_some_and(|exp| *exp > now))
    }
}
