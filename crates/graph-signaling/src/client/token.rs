//! OAuth2 client-credentials tokens for outgoing requests: cached, refreshed before expiry,
//! fetched once however many requests wait for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;

use super::GraphError;
use crate::state::TokenLifetime;

/// Scope for Graph application permissions.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// The app registration's credentials and where to exchange them.
#[derive(Clone)]
pub struct ClientCredentials {
    /// Token endpoint (`https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`).
    pub token_url: String,
    /// App (client) id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// Scope requested.
    pub scope: String,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// Credentials for a tenant on the public cloud's token endpoint.
    pub fn new(
        tenant: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        ClientCredentials {
            token_url: format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            scope: GRAPH_SCOPE.to_owned(),
        }
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
        let resp = self
            .http
            .post(&creds.token_url)
            .timeout(Duration::from_secs(30))
            .form(&[
                ("client_id", creds.client_id.as_str()),
                ("client_secret", creds.client_secret.as_str()),
                ("scope", creds.scope.as_str()),
                ("grant_type", "client_credentials"),
            ])
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
                "HTTP {status}: {}",
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
