//! Validation of the `Authorization: Bearer` JWT the calling service puts on every notification.
//!
//! Keys come from an OpenID configuration (`jwks_uri`); they are refreshed periodically and when
//! a token names an unknown `kid`, at most once per [`AuthConfig::unknown_kid_refetch`] so a
//! flood of forged tokens cannot turn into a flood of key fetches.
//!
//! No fetch holds the lock every validation reads the keys under: a periodic refresh runs in
//! the background while the current keys go on verifying, and only a validation that cannot
//! succeed without new keys (none yet, or an unknown `kid` within the rate limit) waits for a
//! fetch. Fetches are one at a time.
//!
//! Both documents come from the network, so they are read by pure functions,
//! [`parse_openid_configuration`] and [`parse_jwks`], with size limits and typed errors
//! ([`KeysDocumentError`]); the fuzz target `openid_documents` drives them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

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

/// Largest OpenID configuration or key set accepted, in bytes. Real ones are a few kilobytes.
pub const MAX_KEYS_DOCUMENT: usize = 1024 * 1024;

/// After a failed periodic refresh, how long until the next try (the old keys keep verifying
/// meanwhile), so that an unreachable key server is not asked once per notification.
const REFRESH_RETRY: Duration = Duration::from_secs(30);

/// Most keys a key set may list. The calling service publishes a handful; a set much larger
/// than that is not a key set this validator should keep in memory.
pub const MAX_KEYS: usize = 64;

/// Longest `jwks_uri` or `issuer` accepted, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// Longest key id kept, in bytes; keys with longer ids are skipped.
pub const MAX_KID_BYTES: usize = 256;

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
    /// The OpenID configuration or the key set was fetched but could not be used.
    #[error("signing keys unusable: {0}")]
    KeysDocument(#[from] KeysDocumentError),
}

/// Why an OpenID configuration or key set document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeysDocumentError {
    /// The document is larger than [`MAX_KEYS_DOCUMENT`].
    #[error("the document is {len} bytes; the limit is {MAX_KEYS_DOCUMENT}")]
    TooLarge {
        /// Its size.
        len: usize,
    },
    /// The document is not JSON of the expected shape.
    #[error("the document is malformed: {0}")]
    Malformed(String),
    /// The OpenID configuration names no `jwks_uri`.
    #[error("the OpenID configuration has no jwks_uri")]
    MissingJwksUri,
    /// `jwks_uri` is not an absolute http or https URL.
    #[error("jwks_uri is not an http(s) URL: {0}")]
    BadJwksUri(String),
    /// A text field is longer than [`MAX_URL_BYTES`].
    #[error("{field} is {len} bytes; the limit is {MAX_URL_BYTES}")]
    FieldTooLong {
        /// The field's name.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// The key set lists more than [`MAX_KEYS`] keys.
    #[error("the key set lists {count} keys; the limit is {MAX_KEYS}")]
    TooManyKeys {
        /// How many it lists.
        count: usize,
    },
}

/// What the validator takes from the calling service's OpenID configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenIdConfiguration {
    /// Where the signing keys are published.
    pub jwks_uri: String,
    /// The issuer the configuration names, if any. Informational: accepted issuers come from
    /// [`AuthConfig::issuers`], never from the network.
    pub issuer: Option<String>,
}

/// The configuration's members this module reads; everything else in it is ignored.
#[derive(Deserialize)]
struct RawOpenIdConfiguration {
    jwks_uri: Option<String>,
    issuer: Option<String>,
}

/// Reads `body` as a JSON object into `T`. Both documents are objects; serde would also take
/// a struct from an array of its fields in order, which no key server sends.
fn json_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, KeysDocumentError> {
    let value: Value = serde_json::from_slice(body).map_err(malformed)?;
    if !value.is_object() {
        return Err(malformed(<serde_json::Error as serde::de::Error>::custom(
            "expected a JSON object",
        )));
    }
    serde_json::from_value(value).map_err(malformed)
}

/// Reads an OpenID configuration document: `jwks_uri` must be an absolute http(s) URL, and
/// the document and its fields are size-limited.
pub fn parse_openid_configuration(body: &[u8]) -> Result<OpenIdConfiguration, KeysDocumentError> {
    check_document_size(body)?;
    let raw: RawOpenIdConfiguration = json_object(body)?;
    let jwks_uri = raw.jwks_uri.ok_or(KeysDocumentError::MissingJwksUri)?;
    check_field("jwks_uri", &jwks_uri)?;
    if let Some(issuer) = &raw.issuer {
        check_field("issuer", issuer)?;
    }
    let url =
        reqwest::Url::parse(&jwks_uri).map_err(|e| KeysDocumentError::BadJwksUri(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(KeysDocumentError::BadJwksUri(format!(
            "scheme {:?} and host {:?}",
            url.scheme(),
            url.host_str().unwrap_or_default()
        )));
    }
    // The URL as it will be fetched: the parser drops surrounding blanks and escapes what it
    // must, so the checked form is the one kept.
    let jwks_uri = url.as_str().to_owned();
    check_field("jwks_uri", &jwks_uri)?;
    Ok(OpenIdConfiguration {
        jwks_uri,
        issuer: raw.issuer,
    })
}

/// The key set's shape: each key stays raw JSON until it is read on its own, so one key of a
/// type this validator does not know does not make the whole set unreadable.
#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<Value>,
}

/// The members of one JWK that an RS256 verification key needs.
#[derive(Deserialize)]
struct RawRsaJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    key_use: Option<String>,
    alg: Option<String>,
    n: String,
    e: String,
}

/// Reads a JWK set into the keys tokens can be verified with, by key id. The document and the
/// number of keys are limited; a key that cannot verify RS256 tokens (not RSA, another
/// algorithm or use, no or an overlong `kid`, components that are not base64url) is skipped
/// and counted, as is a second key with an id already taken (the first one is kept).
pub fn parse_jwks(body: &[u8]) -> Result<SigningKeys, KeysDocumentError> {
    check_document_size(body)?;
    let raw: RawJwks = json_object(body)?;
    if raw.keys.len() > MAX_KEYS {
        return Err(KeysDocumentError::TooManyKeys {
            count: raw.keys.len(),
        });
    }
    let mut keys = SigningKeys::default();
    for jwk in raw.keys {
        match rs256_key(jwk) {
            Some((kid, key)) if !keys.keys.contains_key(&kid) => {
                keys.keys.insert(kid, key);
            }
            _ => keys.skipped += 1,
        }
    }
    Ok(keys)
}

/// The key id and verification key of a JWK usable for RS256, or `None`.
fn rs256_key(jwk: Value) -> Option<(String, DecodingKey)> {
    let jwk: RawRsaJwk = serde_json::from_value(jwk).ok()?;
    let kid = jwk
        .kid
        .filter(|k| !k.is_empty() && k.len() <= MAX_KID_BYTES)?;
    let usable = jwk.kty == "RSA"
        && jwk.key_use.as_deref().is_none_or(|u| u == "sig")
        && jwk.alg.as_deref().is_none_or(|a| a == "RS256");
    if !usable {
        return None;
    }
    let key = DecodingKey::from_rsa_components(&jwk.n, &jwk.e).ok()?;
    Some((kid, key))
}

fn check_document_size(body: &[u8]) -> Result<(), KeysDocumentError> {
    if body.len() > MAX_KEYS_DOCUMENT {
        return Err(KeysDocumentError::TooLarge { len: body.len() });
    }
    Ok(())
}

fn check_field(field: &'static str, value: &str) -> Result<(), KeysDocumentError> {
    if value.len() > MAX_URL_BYTES {
        return Err(KeysDocumentError::FieldTooLong {
            field,
            len: value.len(),
        });
    }
    Ok(())
}

fn malformed(e: serde_json::Error) -> KeysDocumentError {
    KeysDocumentError::Malformed(crate::error::short_reason(&e))
}

/// RS256 verification keys by key id, as read by [`parse_jwks`].
#[derive(Default, Clone)]
pub struct SigningKeys {
    keys: HashMap<String, DecodingKey>,
    skipped: usize,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl SigningKeys {
    /// The key with this id.
    pub fn get(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys.get(kid)
    }

    /// The key ids, in no particular order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys of the document that were not kept (unusable, or a repeated id).
    pub fn skipped(&self) -> usize {
        self.skipped
    }
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
#[derive(Debug, Default)]
pub struct KeyCache {
    keys: SigningKeys,
    fetched_at: Option<Instant>,
    last_unknown_kid_fetch: Option<Instant>,
    refresh_attempted_at: Option<Instant>,
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

    /// True when the keys are stale and no periodic refresh was tried within the last
    /// [`REFRESH_RETRY`]; records the attempt.
    fn begin_periodic_refresh(&mut self, now: Instant, refresh: Duration) -> bool {
        if !self.is_stale(now, refresh)
            || self
                .refresh_attempted_at
                .is_some_and(|t| now.saturating_duration_since(t) < REFRESH_RETRY)
        {
            return false;
        }
        self.refresh_attempted_at = Some(now);
        true
    }

    /// Replaces the keys with those read from a key set ([`parse_jwks`]).
    pub fn install(&mut self, keys: SigningKeys, now: Instant) {
        self.keys = keys;
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

/// Validates notification tokens; fetches keys over HTTP as needed.
#[derive(Debug)]
pub struct TokenValidator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: AuthConfig,
    http: reqwest::Client,
    // Held only to read or replace the keys, never across an await.
    cache: std::sync::Mutex<KeyCache>,
    // One fetch at a time; only validations that need new keys wait here.
    fetching: Arc<tokio::sync::Mutex<()>>,
    fetches: AtomicU64,
}

impl TokenValidator {
    /// A validator with its own HTTP client.
    pub fn new(config: AuthConfig) -> Self {
        TokenValidator::with_client(config, reqwest::Client::new())
    }

    /// A validator using the given HTTP client.
    pub fn with_client(config: AuthConfig, http: reqwest::Client) -> Self {
        TokenValidator {
            inner: Arc::new(Inner {
                config,
                http,
                cache: std::sync::Mutex::new(KeyCache::default()),
                fetching: Arc::new(tokio::sync::Mutex::new(())),
                fetches: AtomicU64::new(0),
            }),
        }
    }

    /// How many times keys were fetched (for tests and metrics).
    pub fn key_fetches(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
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
        let key = self.inner.key_for(&kid).await?;
        let config = &self.inner.config;
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&[&config.app_id]);
        v.set_issuer(&config.issuers);
        v.set_required_spec_claims(&["exp", "aud", "iss"]);
        v.leeway = config.leeway.as_secs();
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)?;
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
}

impl Inner {
    fn cache(&self) -> std::sync::MutexGuard<'_, KeyCache> {
        // The cache is replaced whole or not at all, so a panic elsewhere leaves it usable.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key named `kid`, fetching keys first only when there are none yet or `kid` is
    /// unknown (within the rate limit).
    async fn key_for(self: &Arc<Self>, kid: &str) -> Result<DecodingKey, AuthError> {
        let now = tokio::time::Instant::now().into_std();
        let (key, empty, refresh_in_background) = {
            let mut cache = self.cache();
            let refresh = !cache.is_empty()
                && cache.begin_periodic_refresh(now, self.config.refresh_interval);
            (cache.get(kid).cloned(), cache.is_empty(), refresh)
        };
        if refresh_in_background {
            self.spawn_refresh();
        }
        if let Some(key) = key {
            return Ok(key);
        }
        if empty {
            self.refresh_unless_filled(|c| !c.is_empty()).await?;
        } else {
            let allowed = self
                .cache()
                .allow_unknown_kid_fetch(now, self.config.unknown_kid_refetch);
            if allowed {
                self.refresh_unless_filled(|c| c.get(kid).is_some()).await?;
            }
        }
        self.cache()
            .get(kid)
            .cloned()
            .ok_or_else(|| AuthError::UnknownKey(Some(kid.to_owned())))
    }

    /// Refreshes the keys in a task of its own; the current keys keep verifying meanwhile.
    fn spawn_refresh(self: &Arc<Self>) {
        // A fetch already running will install fresh keys: nothing to add.
        let Ok(turn) = self.fetching.clone().try_lock_owned() else {
            return;
        };
        let inner = self.clone();
        tokio::spawn(async move {
            let _turn = turn;
            if let Err(e) = inner.refresh().await {
                tracing::warn!(error = %e, "could not refresh notification signing keys");
            }
        });
    }

    /// Waits for its turn to fetch and fetches, unless a fetch that finished meanwhile already
    /// gave what the caller needs.
    async fn refresh_unless_filled(
        &self,
        satisfied: impl Fn(&KeyCache) -> bool,
    ) -> Result<(), AuthError> {
        let _turn = self.fetching.lock().await;
        if satisfied(&self.cache()) {
            return Ok(());
        }
        self.refresh().await
    }

    async fn refresh(&self) -> Result<(), AuthError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let unavailable = |e: String| AuthError::KeysUnavailable(e);
        let config = parse_openid_configuration(
            &self
                .fetch(&self.config.openid_config_url)
                .await
                .map_err(unavailable)?,
        )?;
        let keys = parse_jwks(&self.fetch(&config.jwks_uri).await.map_err(unavailable)?)?;
        if keys.skipped() > 0 {
            tracing::debug!(
                kept = keys.len(),
                skipped = keys.skipped(),
                "some published keys cannot verify RS256 tokens"
            );
        }
        let now = tokio::time::Instant::now().into_std();
        self.cache().install(keys, now);
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
