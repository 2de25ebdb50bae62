//! Errors of outgoing Graph requests.

use std::time::Duration;

use crate::models::GraphErrorBody;
use crate::validate::ValidationError;

/// A Graph request that did not succeed. Every variant that reached the network carries the
/// `client-request-id` sent, to find the request in the service's logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// The request breaks a calling rule; nothing was sent.
    #[error("invalid request: {0}")]
    Validation(#[from] ValidationError),
    /// The service answered with an error status.
    #[error("HTTP {status} {code}: {message} (request-id {request_id}, client-request-id {client_request_id})",
        code = code.as_deref().unwrap_or("-"), message = message.as_deref().unwrap_or(""),
        request_id = request_id.as_deref().unwrap_or("-"))]
    Http {
        /// HTTP status.
        status: u16,
        /// Graph error `code`.
        code: Option<String>,
        /// Graph error `message`.
        message: Option<String>,
        /// The service's `request-id`.
        request_id: Option<String>,
        /// The id this client sent.
        client_request_id: String,
        /// `Retry-After`, if given.
        retry_after: Option<Duration>,
    },
    /// The request may have reached the service but no answer came; a non-idempotent request
    /// is not repeated, since that could place a second call.
    #[error(
        "no answer to a request that may have been acted on; not retried (client-request-id {client_request_id}): {reason}"
    )]
    Ambiguous {
        /// The id this client sent.
        client_request_id: String,
        /// What failed.
        reason: String,
    },
    /// The network failed and retries were exhausted.
    #[error("network error (client-request-id {client_request_id}): {reason}")]
    Network {
        /// The id this client sent.
        client_request_id: String,
        /// What failed.
        reason: String,
    },
    /// The answer could not be read.
    #[error("bad response (client-request-id {client_request_id}): {reason}")]
    BadResponse {
        /// The id this client sent.
        client_request_id: String,
        /// What was wrong.
        reason: String,
    },
    /// No access token could be obtained.
    #[error("token request failed: {0}")]
    Token(String),
}

/// Longest reason the crate copies from a parser's error into its own, in bytes.
pub(crate) const MAX_REASON_BYTES: usize = 200;

/// A parser's error message as one short line. serde_json quotes the offending value, which
/// can be most of a hostile body: the reason ends up in logs, so it is cut.
pub(crate) fn short_reason(e: &impl std::fmt::Display) -> String {
    let mut text = e.to_string().replace(['\n', '\r'], " ");
    if text.len() > MAX_REASON_BYTES {
        let mut cut = MAX_REASON_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

impl GraphError {
    /// An HTTP error from a status, the `request-id` header, the body, the id this client
    /// sent and the parsed `Retry-After`.
    pub fn from_response(
        status: u16,
        body: &[u8],
        request_id_header: Option<String>,
        client_request_id: String,
        retry_after: Option<Duration>,
    ) -> GraphError {
        let parsed = serde_json::from_slice::<GraphErrorBody>(body).ok();
        let detail = parsed.as_ref().map(|b| &b.error);
        let inner_id = detail
            .and_then(|d| d.inner_error.get())
            .and_then(|i| i.request_id.as_deref())
            .map(str::to_owned);
        GraphError::Http {
            status,
            code: detail.and_then(|d| d.code.as_deref()).map(str::to_owned),
            message: detail.and_then(|d| d.message.as_deref()).map(str::to_owned),
            request_id: request_id_header.or(inner_id),
            client_request_id,
            retry_after,
        }
    }

    /// The HTTP status, for HTTP errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            GraphError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The `client-request-id` sent, when a request went out.
    pub fn client_request_id(&self) -> Option<&str> {
        match self {
            GraphError::Http {
                client_request_id, ..
            }
            | GraphError::Ambiguous {
                client_request_id, ..
            }
            | GraphError::Network {
                client_request_id, ..
            }
            | GraphError::BadResponse {
                client_request_id, ..
            } => Some(client_request_id),
            _ => None,
        }
    }
}
