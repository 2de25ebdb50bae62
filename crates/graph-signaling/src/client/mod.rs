//! Outgoing Graph requests: calls, call actions, operations, keepAlive.
//!
//! [`GraphClient`] is a thin async shell: retry decisions ([`RetryPolicy`]), keepAlive timing
//! ([`KeepAliveTimer`]) and operation matching ([`OperationMatcher`]) are sans-IO state.

mod error;
mod retry;
mod token;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::Serialize;
use tokio::sync::oneshot;

pub use error::GraphError;
pub use retry::{Attempt, Decision, Idempotency, RetryPolicy, parse_retry_after};
pub use token::{ClientCredentials, GRAPH_SCOPE, TokenProvider};

use crate::models::{
    AnswerBody, Call, ClientContextBody, CommsOperation, InvitationParticipantInfo,
    InviteParticipantsBody, Nullable, OperationStatusKind, ParticipantInfo, RecordingStatus,
    RedirectBody, RejectBody, RejectReason, TransferBody, UpdateRecordingStatusBody,
};
use crate::state::{
    CallEvent, DEFAULT_KEEPALIVE_INTERVAL, KeepAliveAction, KeepAliveTimer, OperationMatcher,
    OperationOutcome, OperationToken,
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
    /// How long an operation handle waits for its outcome notification.
    pub operation_timeout: Duration,
    /// KeepAlive interval.
    pub keepalive_interval: Duration,
}

impl Default for GraphClientConfig {
    fn default() -> Self {
        GraphClientConfig {
            base_url: DEFAULT_GRAPH_BASE.to_owned(),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            operation_timeout: Duration::from_secs(60),
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
        }
    }
}

#[derive(Default)]
struct Ops {
    matcher: OperationMatcher,
    waiters: HashMap<OperationToken, oneshot::Sender<OperationOutcome>>,
}

impl Ops {
    fn deliver(&mut self) {
        while let Some((token, outcome)) = self.matcher.poll_outcome() {
            if let Some(tx) = self.waiters.remove(&token) {
                // The handle may have been dropped; nothing waits then.
                let _ = tx.send(outcome);
            }
        }
    }
}

#[derive(Default)]
struct CallEntry {
    group: bool,
    ended: bool,
    keepalive: Option<tokio::task::AbortHandle>,
}

struct Inner {
    http: reqwest::Client,
    config: GraphClientConfig,
    tokens: TokenProvider,
    ops: Mutex<Ops>,
    calls: Mutex<HashMap<String, CallEntry>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // State stays consistent across a panic elsewhere; keep serving.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A successful answer.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    body: Vec<u8>,
    client_request_id: String,
}

/// Client for Graph's calling API. Cheap to clone.
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

/// Resolves when an operation's outcome is known.
#[derive(Debug)]
pub struct OperationHandle {
    state: HandleState,
}

#[derive(Debug)]
enum HandleState {
    Ready(Box<CommsOperation>),
    Pending {
        rx: oneshot::Receiver<OperationOutcome>,
        token: OperationToken,
        deadline: tokio::time::Instant,
        client: Weak<Inner>,
    },
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GraphClient")
    }
}

fn finished(op: CommsOperation) -> Result<CommsOperation, GraphError> {
    match op.status.get().map(|s| s.kind()) {
        Some(OperationStatusKind::Failed) => Err(GraphError::OperationFailed(Box::new(op))),
        _ => Ok(op),
    }
}

impl OperationHandle {
    /// True when the action's response already carried the outcome.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, HandleState::Ready(_))
    }

    /// Waits for the outcome: the completed operation, [`GraphError::OperationFailed`], or
    /// [`GraphError::OperationTimedOut`].
    pub async fn wait(self) -> Result<CommsOperation, GraphError> {
        match self.state {
            HandleState::Ready(op) => finished(*op),
            HandleState::Pending {
                rx,
                token,
                deadline,
                client,
            } => {
                let outcome = tokio::time::timeout_at(deadline, rx).await;
                if let Some(inner) = client.upgrade() {
                    let mut ops = lock(&inner.ops);
                    ops.matcher.cancel(token);
                    ops.waiters.remove(&token);
                }
                match outcome {
                    Ok(Ok(OperationOutcome::Finished(op))) => finished(*op),
                    _ => Err(GraphError::OperationTimedOut),
                }
            }
        }
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
                ops: Mutex::new(Ops::default()),
                calls: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The token provider (to inspect its cache in tests and metrics).
    pub fn tokens(&self) -> &TokenProvider {
        &self.inner.tokens
    }

    // ---- calls ----

    /// Places a call or joins a meeting (`POST /communications/calls`). The body is checked
    /// against the calling rules first; keepAlive starts for the new call.
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
        let created: Call = self.parse(&resp, "call")?;
        if let Some(id) = created.id.as_deref() {
            let group = crate::build::is_group_call(call) || crate::build::is_group_call(&created);
            self.track(id, group);
        }
        Ok(created)
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
    /// has passed. KeepAlive starts.
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
        let group = lock(&self.inner.calls)
            .get(call_id)
            .is_some_and(|c| c.group);
        self.track(call_id, group);
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

    /// Invites participants. Several only into group calls (at most 5); `replacesCallId` with
    /// exactly one. Without `client_context` a random one is used to match the outcome.
    pub async fn invite(
        &self,
        call_id: &str,
        participants: Vec<InvitationParticipantInfo>,
        client_context: Option<String>,
    ) -> Result<OperationHandle, GraphError> {
        validate::path_id(call_id)?;
        let ctx = client_context.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let group = lock(&self.inner.calls)
            .get(call_id)
            .is_some_and(|c| c.group);
        validate::invite(&participants, Some(&ctx), group)?;
        let body = InviteParticipantsBody {
            participants,
            client_context: Nullable::Value(ctx.clone()),
            extra: Default::default(),
        };
        self.operation(
            call_id,
            "participants/invite",
            &body,
            ctx,
            Idempotency::NonIdempotent,
        )
        .await
    }

    /// Mutes the bot.
    pub async fn mute_self(
        &self,
        call_id: &str,
        client_context: Option<String>,
    ) -> Result<OperationHandle, GraphError> {
        self.context_action(call_id, "mute", client_context).await
    }

    /// Unmutes the bot.
    pub async fn unmute_self(
        &self,
        call_id: &str,
        client_context: Option<String>,
    ) -> Result<OperationHandle, GraphError> {
        self.context_action(call_id, "unmute", client_context).await
    }

    /// Announces the bot's recording status; a recording bot must set `recording` before it
    /// records.
    pub async fn update_recording_status(
        &self,
        call_id: &str,
        status: RecordingStatus,
        client_context: Option<String>,
    ) -> Result<OperationHandle, GraphError> {
        validate::path_id(call_id)?;
        let ctx = client_context.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        validate::client_context(&ctx)?;
        let body = UpdateRecordingStatusBody {
            status,
            client_context: Some(ctx.clone()),
        };
        self.operation(
            call_id,
            "updateRecordingStatus",
            &body,
            ctx,
            Idempotency::Idempotent,
        )
        .await
    }

    /// Hangs up (in a group call: removes only the bot). KeepAlive stops.
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
            Ok(_) => {}
            // Already gone is what we wanted.
            Err(e) if e.status() == Some(404) => {}
            Err(e) => return Err(e),
        }
        self.mark_ended(call_id);
        Ok(())
    }

    /// Sends one keepAlive; a 404 marks the call ended.
    pub async fn keep_alive(&self, call_id: &str) -> Result<(), GraphError> {
        validate::path_id(call_id)?;
        let r = self
            .execute::<()>(
                Method::POST,
                &format!("communications/calls/{call_id}/keepAlive"),
                None,
                Idempotency::Idempotent,
            )
            .await;
        if let Err(e) = &r {
            if e.status() == Some(404) {
                self.mark_ended(call_id);
            }
        }
        r.map(|_| ())
    }

    /// True once the call is known to have ended (hang up, 404 on keepAlive, terminated).
    pub fn call_ended(&self, call_id: &str) -> bool {
        lock(&self.inner.calls)
            .get(call_id)
            .is_some_and(|c| c.ended)
    }

    /// Declares whether a call not created by this client (an answered one) is a group call,
    /// which decides whether several participants may be invited at once.
    pub fn set_group_call(&self, call_id: &str, group: bool) {
        lock(&self.inner.calls)
            .entry(call_id.to_owned())
            .or_default()
            .group = group;
    }

    /// Feeds a call event from the notification processor: finished operations resolve their
    /// handles, termination stops keepAlive.
    pub fn handle_event(&self, call_id: &str, event: &CallEvent) {
        match event {
            CallEvent::OperationFinished(op) => self.handle_operation(call_id, op),
            CallEvent::Terminated(_) => self.mark_ended(call_id),
            _ => {}
        }
    }

    /// Feeds an operation outcome seen in a notification.
    pub fn handle_operation(&self, call_id: &str, op: &CommsOperation) {
        let mut ops = lock(&self.inner.ops);
        ops.matcher.handle_operation(call_id, op);
        ops.matcher
            .handle_timeout(tokio::time::Instant::now().into_std());
        ops.deliver();
    }

    // ---- internals ----

    async fn context_action(
        &self,
        call_id: &str,
        action: &str,
        client_context: Option<String>,
    ) -> Result<OperationHandle, GraphError> {
        validate::path_id(call_id)?;
        let ctx = client_context.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        validate::client_context(&ctx)?;
        let body = ClientContextBody {
            client_context: Some(ctx.clone()),
        };
        self.operation(call_id, action, &body, ctx, Idempotency::Idempotent)
            .await
    }

    async fn operation<B: Serialize>(
        &self,
        call_id: &str,
        action: &str,
        body: &B,
        ctx: String,
        idem: Idempotency,
    ) -> Result<OperationHandle, GraphError> {
        let deadline = tokio::time::Instant::now() + self.inner.config.operation_timeout;
        // Registered before sending: the outcome notification can beat the HTTP response.
        let (token, rx) = {
            let mut ops = lock(&self.inner.ops);
            let token = ops
                .matcher
                .register(call_id, None, Some(ctx), deadline.into_std());
            let (tx, rx) = oneshot::channel();
            ops.waiters.insert(token, tx);
            (token, rx)
        };
        let cancel = |inner: &Inner| {
            let mut ops = lock(&inner.ops);
            ops.matcher.cancel(token);
            ops.waiters.remove(&token);
        };
        let resp = match self
            .execute(
                Method::POST,
                &format!("communications/calls/{call_id}/{action}"),
                Some(body),
                idem,
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                cancel(&self.inner);
                return Err(e);
            }
        };
        let op: Option<CommsOperation> = if resp.body.is_empty() {
            None
        } else {
            Some(self.parse(&resp, "operation")?)
        };
        if let Some(op) = op {
            if op.is_finished() {
                cancel(&self.inner);
                return Ok(OperationHandle {
                    state: HandleState::Ready(Box::new(op)),
                });
            }
            if let Some(id) = op.id.as_deref() {
                lock(&self.inner.ops)
                    .matcher
                    .set_operation_id(token, id.to_owned());
            }
        }
        Ok(OperationHandle {
            state: HandleState::Pending {
                rx,
                token,
                deadline,
                client: Arc::downgrade(&self.inner),
            },
        })
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

    fn track(&self, call_id: &str, group: bool) {
        let mut calls = lock(&self.inner.calls);
        let entry = calls.entry(call_id.to_owned()).or_default();
        entry.group = group;
        if entry.keepalive.is_none() && !entry.ended {
            let weak = Arc::downgrade(&self.inner);
            let id = call_id.to_owned();
            let interval = self.inner.config.keepalive_interval;
            let task = tokio::spawn(keepalive_loop(weak, id, interval));
            entry.keepalive = Some(task.abort_handle());
        }
    }

    fn mark_ended(&self, call_id: &str) {
        let mut calls = lock(&self.inner.calls);
        let entry = calls.entry(call_id.to_owned()).or_default();
        entry.ended = true;
        if let Some(k) = entry.keepalive.take() {
            k.abort();
        }
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

async fn keepalive_loop(inner: Weak<Inner>, call_id: String, interval: Duration) {
    let mut timer = KeepAliveTimer::new(interval, tokio::time::Instant::now().into_std());
    while let Some(due) = timer.poll_timeout() {
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
        let now = tokio::time::Instant::now().into_std();
        if timer.handle_timeout(now) != KeepAliveAction::Send {
            continue;
        }
        let Some(inner) = inner.upgrade() else { return };
        let client = GraphClient { inner };
        let result = client.keep_alive(&call_id).await;
        let now = tokio::time::Instant::now().into_std();
        match result {
            Ok(()) => timer.on_success(now),
            Err(e) => {
                let gone = e.status() == Some(404);
                tracing::warn!(%call_id, error = %e, gone, "keepAlive failed");
                timer.on_failure(now, gone);
            }
        }
    }
}
