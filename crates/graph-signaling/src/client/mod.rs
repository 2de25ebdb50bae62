//! Outgoing Graph requests: calls, call actions, keepAlive.
//!
//! [`GraphClient`] is a stateless executor: it validates a request against the calling rules,
//! sends it with an access token, retries what may be retried ([`RetryPolicy`], honouring
//! `Retry-After`) and returns the answer or a [`GraphError`] with the service's context. It
//! keeps nothing per call: which requests a call needs, and matching an action to the
//! operation notification that finishes it, belong to the call's owner (mediabot's
//! `CallCore`, with [`crate::state::OperationMatcher`]).

mod error;
mod retry;
mod token;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::Serialize;

pub use error::GraphError;
pub use retry::{Attempt, Decision, Idempotency, RetryPolicy, parse_retry_after};
pub use token::{ClientCredentials, GRAPH_SCOPE, TokenProvider};

use crate::models::{
    AnswerBody, Call, ClientContextBody, CommsOperation, InvitationParticipantInfo,
    InviteParticipantsBody, Nullable, ParticipantInfo, RecordingStatus, RedirectBody, RejectBody,
    RejectReason, TransferBody, UpdateRecordingStatusBody,
};
use crate::validate::{self, ValidationError};

/// Graph v1.0 (production default).
pub const DEFAULT_GRAPH_BASE: &str = "https://graph.microsoft.com/v1.0";

/// Time an incoming call may wait for its answer.
pub const ANSWER_WINDOW: Duration = Duration::from_secs(15);

/// Largest response body read.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Client settings.
#[derive(Debug, Clone)]
pub struct GraphClientConfig {
    /// Base URL (`https://graph.microsoft.com/v1.0`, or an emulator).
    pub base_url: String,
    /// Retry limits.
    pub retry: RetryPolicy,
    /// Timeout of one attempt.
    pub request_timeout: Duration,
}

impl Default for GraphClientConfig {
    fn default() -> Self {
        GraphClientConfig {
            base_url: DEFAULT_GRAPH_BASE.to_owned(),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
        }
    }
}

struct Inner {
    http: reqwest::Client,
    config: GraphClientConfig,
    tokens: TokenProvider,
}

/// A successful answer.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    body: Vec<u8>,
    client_request_id: String,
}

/// Client for Graph's calling API. Cheap to clone; holds no per-call state.
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("base_url", &self.inner.config.base_url)
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    /// A client with the given settings and token source.
    pub fn new(config: GraphClientConfig, tokens: TokenProvider) -> Self {
        GraphClient::with_http(config, tokens, reqwest::Client::new())
    }

    /// A client sharing an existing HTTP client.
    pub fn with_http(
        config: GraphClientConfig,
        tokens: TokenProvider,
        http: reqwest::Client,
    ) -> Self {
        GraphClient {
            inner: Arc::new(Inner {
                http,
                config,
                tokens,
            }),
        }
    }

    /// The token provider (to inspect its cache in tests and metrics).
    pub fn tokens(&self) -> &TokenProvider {
        &self.inner.tokens
    }

    // ---- calls ----

    /// Places a call or joins a meeting (`POST /communications/calls`). The body is checked
    /// against the calling rules first. The caller keeps the call alive (keepAlive).
    pub async fn create_call(&self, call: &Call) -> Result<Call, GraphError> {
        validate::create_call(call)?;
        let resp = self
            .execute(
                Method::POST,
                "communications/calls",
                Some(call),
                Idempotency::NonIdempotent,
            )
            .await?;
        self.parse(&resp, "call")
    }

    /// Reads a call.
    pub async fn get_call(&self, call_id: &str) -> Result<Call, GraphError> {
        validate::path_id(call_id)?;
        let resp = self
            .execute::<()>(
                Method::GET,
                &format!("communications/calls/{call_id}"),
                None,
                Idempotency::Idempotent,
            )
            .await?;
        self.parse(&resp, "call")
    }

    /// Answers an incoming call received at `received_at`; refused locally once the 15 s window
    /// has passed.
    pub async fn answer(
        &self,
        call_id: &str,
        body: &AnswerBody,
        received_at: Instant,
    ) -> Result<(), GraphError> {
        validate::path_id(call_id)?;
        if tokio::time::Instant::now()
            .into_std()
            .saturating_duration_since(received_at)
            >= ANSWER_WINDOW
        {
            return Err(ValidationError::AnswerWindowElapsed.into());
        }
        self.execute(
            Method::POST,
            &format!("communications/calls/{call_id}/answer"),
            Some(body),
            Idempotency::NonIdempotent,
        )
        .await?;
        Ok(())
    }

    /// Rejects an incoming call.
    pub async fn reject(&self, call_id: &str, reason: RejectReason) -> Result<(), GraphError> {
        validate::path_id(call_id)?;
        let body = RejectBody {
            reason,
            callback_uri: None,
        };
        self.execute(
            Method::POST,
            &format!("communications/calls/{call_id}/reject"),
            Some(&body),
            Idempotency::NonIdempotent,
        )
        .await?;
        Ok(())
    }

    /// Redirects an incoming call.
    pub async fn redirect(
        &self,
        call_id: &str,
        targets: Vec<InvitationParticipantInfo>,
        timeout_secs: Option<u32>,
    ) -> Result<(), GraphError> {
        validate::path_id(call_id)?;
        validate::invite(&targets, None, true)?;
        let body = RedirectBody {
            targets,
            timeout: timeout_secs,
            callback_uri: None,
        };
        self.execute(
            Method::POST,
            &format!("communications/calls/{call_id}/redirect"),
            Some(&body),
            Idempotency::NonIdempotent,
        )
        .await?;
        Ok(())
    }

    /// Transfers an active call.
    pub async fn transfer(
        &self,
        call_id: &str,
        target: InvitationParticipantInfo,
        transferee: Option<ParticipantInfo>,
    ) -> Result<(), GraphError> {
        validate::path_id(call_id)?;
        validate::invite(std::slice::from_ref(&target), None, false)?;
        let body = TransferBody {
            transfer_target: target,
            transferee,
        };
        self.execute(
            Method::POST,
            &format!("communications/calls/{call_id}/transfer"),
            Some(&body),
            Idempotency::NonIdempotent,
        )
        .await?;
        Ok(())
    }

    /// Invites participants (`POST …/participants/invite`): several only into a `group` call
    /// (at most 5), `replacesCallId` with exactly one. Returns the operation the response
    /// carried; its outcome arrives as a notification matched by `client_context`.
    pub async fn invite(
        &self,
        call_id: &str,
        participants: Vec<InvitationParticipantInfo>,
        client_context: &str,
        group: bool,
    ) -> Result<Option<CommsOperation>, GraphError> {
        validate::path_id(call_id)?;
        validate::invite(&participants, Some(client_context), group)?;
        let body = InviteParticipantsBody {
            participants,
            client_context: Nullable::Value(client_context.to_owned()),
            extra: Default::default(),
        };
        self.operation(
            call_id,
            "participants/invite",
            &body,
            Idempotency::NonIdempotent,
        )
        .await
    }

    /// Mutes the bot (`POST …/mute`).
    pub async fn mute_self(
        &self,
        call_id: &str,
        client_context: &str,
    ) -> Result<Option<CommsOperation>, GraphError> {
        self.context_action(call_id, "mute", client_context).await
    }

    /// Unmutes the bot (`POST …/unmute`).
    pub async fn unmute_self(
        &self,
        call_id: &str,
        client_context: &str,
    ) -> Result<Option<CommsOperation>, GraphError> {
        self.context_action(call_id, "unmute", client_context).await
    }

    /// Announces the bot's recording status; a recording bot must set `recording` before it
    /// records.
    pub async fn update_recording_status(
        &self,
        call_id: &str,
        status: RecordingStatus,
        client_context: &str,
    ) -> Result<Option<CommsOperation>, GraphError> {
        validate::path_id(call_id)?;
        validate::client_context(client_context)?;
        let body = UpdateRecordingStatusBody {
            status,
            client_context: Some(client_context.to_owned()),
        };
        self.operation(
            call_id,
            "updateRecordingStatus",
            &body,
            Idempotency::Idempotent,
        )
        .await
    }

    /// Hangs up (in a group call: removes only the bot). A call the service no longer knows
    /// (404) counts as hung up.
    pub async fn hang_up(&self, call_id: &str) -> Result<(), GraphError> {
        validate::path_id(call_id)?;
        let r = self
            .execute::<()>(
                Method::DELETE,
                &format!("communications/calls/{call_id}"),
                None,
                Idempotency::Idempotent,
            )
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends one keepAlive (`POST …/keepAlive`). A 404 means the service ended the call.
    pub async fn keep_alive(&self, call_id: &str) -> Result<(), GraphError> {
        validate::path_id(call_id)?;
        self.execute::<()>(
            Method::POST,
            &format!("communications/calls/{call_id}/keepAlive"),
            None,
            Idempotency::Idempotent,
        )
        .await
        .map(|_| ())
    }

    // ---- internals ----

    async fn context_action(
        &self,
        call_id: &str,
        action: &str,
        client_context: &str,
    ) -> Result<Option<CommsOperation>, GraphError> {
        validate::path_id(call_id)?;
        validate::client_context(client_context)?;
        let body = ClientContextBody {
            client_context: Some(client_context.to_owned()),
        };
        self.operation(call_id, action, &body, Idempotency::Idempotent)
            .await
    }

    /// Posts a call action and reads the operation its response carries (none for an empty
    /// body).
    async fn operation<B: Serialize>(
        &self,
        call_id: &str,
        action: &str,
        body: &B,
        idem: Idempotency,
    ) -> Result<Option<CommsOperation>, GraphError> {
        let resp = self
            .execute(
                Method::POST,
                &format!("communications/calls/{call_id}/{action}"),
                Some(body),
                idem,
            )
            .await?;
        if resp.body.is_empty() {
            return Ok(None);
        }
        self.parse(&resp, "operation").map(Some)
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        resp: &RawResponse,
        what: &str,
    ) -> Result<T, GraphError> {
        serde_json::from_slice(&resp.body).map_err(|e| GraphError::BadResponse {
            client_request_id: resp.client_request_id.clone(),
            reason: format!("{what} body (HTTP {}): {e}", resp.status),
        })
    }

    async fn execute<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        idem: Idempotency,
    ) -> Result<RawResponse, GraphError> {
        let cfg = &self.inner.config;
        let url = format!("{}/{path}", cfg.base_url.trim_end_matches('/'));
        let client_request_id = uuid::Uuid::new_v4().to_string();
        let body = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| GraphError::BadResponse {
                client_request_id: client_request_id.clone(),
                reason: format!("request body: {e}"),
            })?),
            None => None,
        };
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let token = self.inner.tokens.token().await?;
            let mut req = self
                .inner
                .http
                .request(method.clone(), &url)
                .bearer_auth(token)
                .header("client-request-id", &client_request_id)
                .timeout(cfg.request_timeout);
            if let Some(b) = &body {
                req = req
                    .header("content-type", "application/json")
                    .body(b.clone());
            } else if method == Method::POST {
                req = req.header("content-length", "0");
            }
            let jitter: f64 = rand::random();
            let (outcome, failure) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    let request_id = resp
                        .headers()
                        .get("request-id")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let body =
                        read_limited(resp)
                            .await
                            .map_err(|reason| GraphError::BadResponse {
                                client_request_id: client_request_id.clone(),
                                reason,
                            })?;
                    if status < 400 {
                        tracing::debug!(%method, %url, status, %client_request_id, "graph request done");
                        return Ok(RawResponse {
                            status,
                            body,
                            client_request_id,
                        });
                    }
                    let err = GraphError::from_response(
                        status,
                        &body,
                        request_id,
                        client_request_id.clone(),
                        retry_after,
                    );
                    (
                        Attempt::Status {
                            status,
                            retry_after,
                        },
                        err,
                    )
                }
                Err(e) => {
                    let outcome = if e.is_connect() {
                        Attempt::NotSent
                    } else {
                        Attempt::NoAnswer
                    };
                    (
                        outcome,
                        GraphError::Network {
                            client_request_id: client_request_id.clone(),
                            reason: e.to_string(),
                        },
                    )
                }
            };
            match cfg.retry.decide(attempt, idem, outcome, jitter) {
                Decision::RetryAfter(delay) => {
                    tracing::warn!(%method, %url, attempt, ?delay, %client_request_id, error = %failure, "retrying graph request");
                    tokio::time::sleep(delay).await;
                }
                Decision::Ambiguous => {
                    tracing::error!(%method, %url, %client_request_id, error = %failure, "not retrying a request the service may have acted on");
                    return Err(GraphError::Ambiguous {
                        client_request_id,
                        reason: failure.to_string(),
                    });
                }
                Decision::Done | Decision::GiveUp => {
                    tracing::warn!(%method, %url, attempt, %client_request_id, error = %failure, "graph request failed");
                    return Err(failure);
                }
            }
        }
    }
}

async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    if resp
        .content_length()
        .is_some_and(|l| l > MAX_RESPONSE_BYTES as u64)
    {
        return Err("response body too large".into());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err("response body too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
