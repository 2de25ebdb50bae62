//! The token endpoint (OAuth2 client credentials grant) and the bearer check every API request
//! passes first. Tokens are opaque random strings remembered with their expiry.

use std::time::Instant;

use serde_json::{Value, json};

use super::Sim;

/// Why the token endpoint refuses a form. OAuth2 errors have their own shape
/// (`error`, `error_description`), unlike Graph's, so they are not [`super::refusal::Refusal`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenRefusal {
    UnsupportedGrantType,
    InvalidClient,
    InvalidScope,
}

impl TokenRefusal {
    fn status(self) -> u16 {
        match self {
            TokenRefusal::InvalidClient => 401,
            TokenRefusal::UnsupportedGrantType | TokenRefusal::InvalidScope => 400,
        }
    }

    fn body(self) -> Value {
        let (error, description) = match self {
            TokenRefusal::UnsupportedGrantType => (
                "unsupported_grant_type",
                "only client_credentials is supported",
            ),
            // Entra ID's own wording, which client libraries show as is.
            TokenRefusal::InvalidClient => (
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided.",
            ),
            TokenRefusal::InvalidScope => ("invalid_scope", "scope must end with /.default"),
        };
        json!({"error": error, "error_description": description})
    }
}

impl Sim {
    /// Handles the token endpoint's form body (client credentials grant). Returns the status and
    /// the OAuth2 JSON body.
    pub fn issue_token(&mut self, now: Instant, form: &[(String, String)]) -> (u16, Value) {
        if let Err(refusal) = self.check_token_form(form) {
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

    fn check_token_form(&self, form: &[(String, String)]) -> Result<(), TokenRefusal> {
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if field("grant_type") != Some("client_credentials") {
            return Err(TokenRefusal::UnsupportedGrantType);
        }
        if field("client_id") != Some(self.config.app_id.as_str())
            || field("client_secret") != Some(self.config.app_secret.as_str())
        {
            return Err(TokenRefusal::InvalidClient);
        }
        if !field("scope").is_some_and(|s| s.ends_with("/.default")) {
            return Err(TokenRefusal::InvalidScope);
        }
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
