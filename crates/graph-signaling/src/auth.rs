//! Validation of the `Authorization: Bearer` JWT the calling service puts on every notification.
//!
//! Keys come from an OpenID configuration (`jwks_uri`); they are refreshed periodically and when
//! a token names an unknown `kid`, at most once per [`AuthConfig::unknown_kid_refetch`] so a
//! flood of forged tokens cannot turn into a flood of key fetches.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

/// The calling service's OpenID configuration (production default).
pub const DEFAULT_OPENID_CONFIG_URL: &str =
    "https://api.aps.skype.com/v1/.well-known/OpenIdConfiguration";

/// Issuers the calling service signs with.
pub const DEFAULT_ISSUERS: [&str; 2] = [
    "https://api.botframework.com",
    "https://graph.microsoft.com",
];

/// The long form of the tenant id claim.
const TENANT_CLAIM_LONG: &str = "http://schemas.microsoft.com/identity/claims/tenantid";

/// Largest OpenID configuration or key set accepted.
const MAX_KEYS_DOCUMENT: usize = 1024 * 1024;

/// How notifications are authenticated.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The bot's app id: the tokens' required audience.
    pub app_id: String,
    /// OpenID configuration URL whose `jwks_uri` lists the signing keys.
    pub openid_config_url: String,
    /// Accepted issuers.
    pub issuers: Vec<String>,
    /// Allowed clock skew for `exp`/`nbf`.
    pub leeway: Duration,
    /// How often keys are fetched again regardless.
    pub refresh_interval: Duration,
    /// Minimum time between fetches caused by an unknown `kid`.
    pub unknown_kid_refetch: Duration,
}

impl AuthConfig {
    /// Production defaults for the given app id.
    pub fn new(app_id: impl Into<String>) -> Self {
        AuthConfig {
            app_id: app_id.into(),
            openid_config_url: DEFAULT_OPENID_CONFIG_URL.to_owned(),
            issuers: DEFAULT_ISSUERS.iter().map(|s| (*s).to_owned()).collect(),
            leeway: Duration::from_secs(60),
            refresh_interval: Duration::from_secs(2 * 3600),
            unknown_kid_refetch: Duration::from_secs(5 * 60),
        }
    }
}

/// Why a token was refused. Every variant maps to 401.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    MissingToken,
    /// The header is not a JWT, or names an algorithm other than RS256.
    #[error("bad token header: {0}")]
    BadHeader(String),
    /// No key with the token's `kid` (even after refreshing the keys).
    #[error("unknown signing key {0:?}")]
    UnknownKey(Option<String>),
    /// Signature, audience, issuer or expiry check failed.
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// No tenant id claim.
    #[error("token has no tenant id claim")]
    MissingTenant,
    /// The keys could not be fetched.
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedCaller {
    /// Tenant id (`tid` or the long claim).
    pub tenant_id: String,
    /// Issuer.
    pub issuer: String,
    /// All claims.
    pub claims: Map<String, Value>,
}

/// The key set and when it was fetched: the decisions of when to fetch, as data.
#[derive(Default)]
pub struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
    last_unknown_kid_fetch: Option<Instant>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("fetched_at", &self.fetched_at)
            .finish()
    }
}

impl KeyCache {
    /// True when the keys are missing or older than `refresh`.
    pub fn is_stale(&self, now: Instant, refresh: Duration) -> bool {
        self.fetched_at
            .is_none_or(|t| now.saturating_duration_since(t) >= refresh)
    }

    /// True when an unknown `kid` may trigger a fetch now (rate limit); records the attempt.
    pub fn allow_unknown_kid_fetch(&mut self, now: Instant, min_gap: Duration) -> bool {
        if self
            .last_unknown_kid_fetch
            .is_some_and(|t| now.saturating_duration_since(t) < min_gap)
        {
            return false;
        }
        self.last_unknown_kid_fetch = Some(now);
        true
    }

    /// Replaces the keys with those of a JWK set. Keys without `kid` or of unusable types are
    /// skipped.
    pub fn install(&mut self, set: &JwkSet, now: Instant) {
        self.keys = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                DecodingKey::from_jwk(jwk).ok().map(|k| (kid, k))
            })
            .collect();
        self.fetched_at = Some(now);
    }

    /// The key with this id.
    pub fn get(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys.get(kid)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is known.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[derive(Deserialize)]
struct OpenIdConfiguration {
    jwks_uri: String,
}

/// Validates notification tokens; fetches keys over HTTP as needed.
#[derive(Debug)]
pub struct TokenValidator {
    config: AuthConfig,
    http: reqwest::Client,
    cache: Mutex<KeyCache>,
    fetches: std::sync::atomic::AtomicU64,
}

impl TokenValidator {
    /// A validator with its own HTTP client.
    pub fn new(config: AuthConfig) -> Self {
        TokenValidator::with_client(config, reqwest::Client::new())
    }

    /// A validator using the given HTTP client.
    pub fn with_client(config: AuthConfig, http: reqwest::Client) -> Self {
        TokenValidator {
            config,
            http,
            cache: Mutex::new(KeyCache::default()),
            fetches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many times keys were fetched (for tests and metrics).
    pub fn key_fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Validates the value of an `Authorization` header.
    pub async fn validate_header(&self, header: Option<&str>) -> Result<VerifiedCaller, AuthError> {
        let token = header
            .and_then(|h| {
                let (scheme, rest) = h.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::MissingToken)?;
        self.validate(token).await
    }

    /// Validates a JWT: RS256 signature by a known key, audience, issuer, expiry, tenant.
    pub async fn validate(&self, token: &str) -> Result<VerifiedCaller, AuthError> {
        // decode_header refuses `alg: none` (not an algorithm jsonwebtoken knows).
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::BadHeader(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::BadHeader(format!(
                "algorithm {:?} not accepted",
                header.alg
            )));
        }
        let kid = header.kid.ok_or(AuthError::UnknownKey(None))?;
        let now = tokio::time::Instant::now().into_std();
        let mut cache = self.cache.lock().await;
        if cache.is_stale(now, self.config.refresh_interval) {
            // Keys that are merely old still verify; only fail when there are none at all.
            if let Err(e) = self.refresh(&mut cache, now).await {
                if cache.is_empty() {
                    return Err(e);
                }
                tracing::warn!(error = %e, "could not refresh notification signing keys");
            }
        }
        if cache.get(&kid).is_none()
            && cache.allow_unknown_kid_fetch(now, self.config.unknown_kid_refetch)
        {
            self.refresh(&mut cache, now).await?;
        }
        let key = cache
            .get(&kid)
            .ok_or_else(|| AuthError::UnknownKey(Some(kid.clone())))?;
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&[&self.config.app_id]);
        v.set_issuer(&self.config.issuers);
        v.set_required_spec_claims(&["exp", "aud", "iss"]);
        v.leeway = self.config.leeway.as_secs();
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &v)?;
        drop(cache);
        let claims = data.claims;
        let tenant = ["tid", TENANT_CLAIM_LONG]
            .iter()
            .find_map(|c| {
                claims
                    .get(*c)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            })
            .ok_or(AuthError::MissingTenant)?
            .to_owned();
        let issuer = claims
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(VerifiedCaller {
            tenant_id: tenant,
            issuer,
            claims,
        })
    }

    async fn refresh(&self, cache: &mut KeyCache, now: Instant) -> Result<(), AuthError> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let unavailable = |e: String| AuthError::KeysUnavailable(e);
        let config: OpenIdConfiguration = serde_json::from_slice(
            &self
                .fetch(&self.config.openid_config_url)
                .await
                .map_err(unavailable)?,
        )
        .map_err(|e| unavailable(e.to_string()))?;
        let set: JwkSet =
            serde_json::from_slice(&self.fetch(&config.jwks_uri).await.map_err(unavailable)?)
                .map_err(|e| unavailable(e.to_string()))?;
        cache.install(&set, now);
        Ok(())
    }

    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        let resp = self
            .http
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("{url}: HTTP {}", resp.status()));
        }
        if resp
            .content_length()
            .is_some_and(|l| l > MAX_KEYS_DOCUMENT as u64)
        {
            return Err(format!("{url}: document too large"));
        }
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        if body.len() > MAX_KEYS_DOCUMENT {
            return Err(format!("{url}: document too large"));
        }
        Ok(body.to_vec())
    }
}
