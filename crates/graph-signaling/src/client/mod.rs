//! Outgoing Graph requests: calls, call actions, keepAlive.
//!
//! [`GraphClient`] is a stateless executor: it validates a request against the calling rules,
//! sends it with an access token, retries what may be retried ([`RetryPolicy`], honouring
//! `Retry-After`) and returns the answer or a [`GraphError`] with the service's context. It
//! keeps nothing per call: which requests a call needs, and matching an action to the
//! operation notification that finishes it, belong to the call's owner (mediabot's
//! `CallCore`, with [`crate::state::OperationMatcher`]).

mod token;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;

pub use crate::error::GraphError;
pub use crate::request::{Answer, HttpMethod, PreparedRequest};
pub use crate::retry::{Attempt, Decision, Idempotency, RetryPolicy, parse_retry_after};
pub use token::{
    ASSERTION_LIFETIME, CLIENT_ASSERTION_TYPE, CertificateCredential, ClientCredentials,
    Credential, CredentialError, GRAPH_SCOPE, MAX_PEM_BYTES, TokenProvider,
};

use crate::models::{
    AnswerBody, AudioRoutingGroup, Call, Collection, CommsOperation, ContentSharingSession,
    InvitationParticipantInfo, MediaPrompt, Participant, ParticipantInfo, RecordResponseBody,
    RecordingStatus, RejectReason, ScreenSharingRole, TeleconferenceDeviceQuality, Tone,
};
use crate::validate::ValidationError;

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
        self.send(&PreparedRequest::create_call(call)?)
            .await?
            .parse("call")
    }

    /// Reads a call.
    pub async fn get_call(&self, call_id: &str) -> Result<Call, GraphError> {
        self.send(&PreparedRequest::get_call(call_id)?)
            .await?
            .parse("call")
    }

    /// Answers an incoming call received at `received_at`; refused locally once the 15 s window
    /// has passed.
    pub async fn answer(
        &self,
        call_id: &str,
        body: &AnswerBody,
        received_at: Instant,
    ) -> Result<(), GraphError> {
        let request = PreparedRequest::answer(call_id, body)?;
        if tokio::time::Instant::now()
            .into_std()
            .saturating_duration_since(received_at)
            >= ANSWER_WINDOW
        {
            return Err(ValidationError::AnswerWindowElapsed.into());
        }
        self.send(&request).await.map(|_| ())
    }

    /// Rejects an incoming call.
    pub async fn reject(&self, call_id: &str, reason: RejectReason) -> Result<(), GraphError> {
        self.send(&PreparedRequest::reject(call_id, reason)?)
            .await
            .map(|_| ())
    }

    /// Redirects an incoming call.
    pub async fn redirect(
        &self,
        call_id: &str,
        targets: Vec<InvitationParticipantInfo>,
        timeout_secs: Option<u32>,
    ) -> Result<(), GraphError> {
        self.send(&PreparedRequest::redirect(call_id, targets, timeout_secs)?)
            .await
            .map(|_| ())
    }

    /// Transfers an active call.
    pub async fn transfer(
        &self,
        call_id: &str,
        target: InvitationParticipantInfo,
        transferee: Option<ParticipantInfo>,
    ) -> Result<(), GraphError> {
        self.send(&PreparedRequest::transfer(call_id, target, transferee)?)
            .await
            .map(|_| ())
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
        let request = PreparedRequest::invite(call_id, participants, client_context, group)?;
        self.send(&request).await?.operation()
    }

    /// Mutes the bot (`POST …/mute`).
    pub async fn mute_self(
        &self,
        call_id: &str,
        client_context: &str,
    ) -> Result<Option<CommsOperation>, GraphError> {
        let request = PreparedRequest::mute_self(call_id, client_context)?;
        self.send(&request).await?.operation()
    }

    /// Unmutes the bot (`POST …/unmute`).
    pub async fn unmute_self(
        &self,
        call_id: &str,
        client_context: &str,
    ) -> Result<Option<CommsOperation>, GraphError> {
        let request = PreparedRequest::unmute_self(call_id, client_context)?;
        self.send(&request).await?.operation()
    }

    /// Announces the bot's recording status; a recording bot must set `recording` before it
    /// records.
    pub async fn update_recording_status(
        &self,
        call_id: &str,
        status: RecordingStatus,
        client_context: &str,
    ) -> Result<Option<CommsOperation>, GraphError> {
        let request = PreparedRequest::update_recording_status(call_id, status, client_context)?;
        self.send(&request).await?.operation()
    }

    /// Hangs up (in a group call: removes only the bot). A call the service no longer knows
    /// (404) counts as hung up.
    pub async fn hang_up(&self, call_id: &str) -> Result<(), GraphError> {
        match self.send(&PreparedRequest::hang_up(call_id)?).await {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends one keepAlive (`POST …/keepAlive`). A 404 means the service ended the call.
    pub async fn keep_alive(&self, call_id: &str) -> Result<(), GraphError> {
        self.send(&PreparedRequest::keep_alive(call_id)?)
            .await
            .map(|_| ())
    }

    // ---- service-hosted media ----

    /// Plays prompts (service-hosted media); the outcome arrives as a notification.
    pub async fn play_prompt(
        &self,
        call_id: &str,
        prompts: Vec<MediaPrompt>,
        client_context: &str,
    ) -> Result<Option<CommsOperation>, GraphError> {
        let request = PreparedRequest::play_prompt(call_id, prompts, client_context)?;
        self.send(&request).await?.operation()
    }

    /// Records the caller's response (service-hosted media).
    pub async fn record_response(
        &self,
        call_id: &str,
        body: RecordResponseBody,
        client_context: &str,
    ) -> Result<Option<CommsOperation>, GraphError> {
        let request = PreparedRequest::record_response(call_id, body, client_context)?;
        self.send(&request).await?.operation()
    }

    /// Subscribes to the keys participants press (service-hosted media).
    pub async fn subscribe_to_tone(
        &self,
        call_id: &str,
        client_context: &str,
    ) -> Result<Option<CommsOperation>, GraphError> {
        let request = PreparedRequest::subscribe_to_tone(call_id, client_context)?;
        self.send(&request).await?.operation()
    }

    /// Cancels the prompts and recordings running or queued.
    pub async fn cancel_media_processing(
        &self,
        call_id: &str,
        client_context: &str,
    ) -> Result<Option<CommsOperation>, GraphError> {
        let request = PreparedRequest::cancel_media_processing(call_id, client_context)?;
        self.send(&request).await?.operation()
    }

    /// Has the service send DTMF keys into the call.
    pub async fn send_dtmf_tones(
        &self,
        call_id: &str,
        tones: Vec<Tone>,
        delay_between_tones_ms: Option<u32>,
        client_context: &str,
    ) -> Result<Option<CommsOperation>, GraphError> {
        let request = PreparedRequest::send_dtmf_tones(
            call_id,
            tones,
            delay_between_tones_ms,
            client_context,
        )?;
        self.send(&request).await?.operation()
    }

    // ---- participants and the call's other resources ----

    /// Mutes another participant (server side).
    pub async fn mute_participant(
        &self,
        call_id: &str,
        participant_id: &str,
        client_context: &str,
    ) -> Result<Option<CommsOperation>, GraphError> {
        let request = PreparedRequest::mute_participant(call_id, participant_id, client_context)?;
        self.send(&request).await?.operation()
    }

    /// Puts a participant on hold, with music.
    pub async fn start_hold_music(
        &self,
        call_id: &str,
        participant_id: &str,
        custom_prompt: Option<MediaPrompt>,
        client_context: &str,
    ) -> Result<Option<CommsOperation>, GraphError> {
        let request = PreparedRequest::start_hold_music(
            call_id,
            participant_id,
            custom_prompt,
            client_context,
        )?;
        self.send(&request).await?.operation()
    }

    /// Takes a participant off hold.
    pub async fn stop_hold_music(
        &self,
        call_id: &str,
        participant_id: &str,
        client_context: &str,
    ) -> Result<Option<CommsOperation>, GraphError> {
        let request = PreparedRequest::stop_hold_music(call_id, participant_id, client_context)?;
        self.send(&request).await?.operation()
    }

    /// Removes a participant from a group call or meeting.
    pub async fn remove_participant(
        &self,
        call_id: &str,
        participant_id: &str,
    ) -> Result<(), GraphError> {
        let request = PreparedRequest::remove_participant(call_id, participant_id)?;
        self.send(&request).await.map(|_| ())
    }

    /// The call's participants now.
    pub async fn list_participants(&self, call_id: &str) -> Result<Vec<Participant>, GraphError> {
        let request = PreparedRequest::list_participants(call_id)?;
        let list: Collection<Participant> = self.send(&request).await?.parse("participants")?;
        Ok(list.value)
    }

    /// One participant.
    pub async fn get_participant(
        &self,
        call_id: &str,
        participant_id: &str,
    ) -> Result<Participant, GraphError> {
        let request = PreparedRequest::get_participant(call_id, participant_id)?;
        self.send(&request).await?.parse("participant")
    }

    /// An operation's status now.
    pub async fn get_operation(
        &self,
        call_id: &str,
        operation_id: &str,
    ) -> Result<CommsOperation, GraphError> {
        let request = PreparedRequest::get_operation(call_id, operation_id)?;
        self.send(&request).await?.parse("operation")
    }

    /// Changes the bot's screen sharing role.
    pub async fn change_screen_sharing_role(
        &self,
        call_id: &str,
        role: ScreenSharingRole,
    ) -> Result<(), GraphError> {
        let request = PreparedRequest::change_screen_sharing_role(call_id, role)?;
        self.send(&request).await.map(|_| ())
    }

    /// Adds the large gallery view to the call.
    pub async fn add_large_gallery_view(
        &self,
        call_id: &str,
        client_context: &str,
    ) -> Result<Option<CommsOperation>, GraphError> {
        let request = PreparedRequest::add_large_gallery_view(call_id, client_context)?;
        self.send(&request).await?.operation()
    }

    /// Reports a teleconference device's media quality.
    pub async fn log_teleconference_device_quality(
        &self,
        quality: TeleconferenceDeviceQuality,
    ) -> Result<(), GraphError> {
        let request = PreparedRequest::log_teleconference_device_quality(quality)?;
        self.send(&request).await.map(|_| ())
    }

    /// Creates an audio routing group; returns it as the service stored it.
    pub async fn create_audio_routing_group(
        &self,
        call_id: &str,
        group: &AudioRoutingGroup,
    ) -> Result<AudioRoutingGroup, GraphError> {
        let request = PreparedRequest::create_audio_routing_group(call_id, group)?;
        self.send(&request).await?.parse("audioRoutingGroup")
    }

    /// The call's audio routing groups.
    pub async fn list_audio_routing_groups(
        &self,
        call_id: &str,
    ) -> Result<Vec<AudioRoutingGroup>, GraphError> {
        let request = PreparedRequest::list_audio_routing_groups(call_id)?;
        let list: Collection<AudioRoutingGroup> =
            self.send(&request).await?.parse("audioRoutingGroups")?;
        Ok(list.value)
    }

    /// One audio routing group.
    pub async fn get_audio_routing_group(
        &self,
        call_id: &str,
        group_id: &str,
    ) -> Result<AudioRoutingGroup, GraphError> {
        let request = PreparedRequest::get_audio_routing_group(call_id, group_id)?;
        self.send(&request).await?.parse("audioRoutingGroup")
    }

    /// Replaces an audio routing group's sources and receivers.
    pub async fn update_audio_routing_group(
        &self,
        call_id: &str,
        group_id: &str,
        group: &AudioRoutingGroup,
    ) -> Result<AudioRoutingGroup, GraphError> {
        let request = PreparedRequest::update_audio_routing_group(call_id, group_id, group)?;
        self.send(&request).await?.parse("audioRoutingGroup")
    }

    /// Deletes an audio routing group.
    pub async fn delete_audio_routing_group(
        &self,
        call_id: &str,
        group_id: &str,
    ) -> Result<(), GraphError> {
        let request = PreparedRequest::delete_audio_routing_group(call_id, group_id)?;
        self.send(&request).await.map(|_| ())
    }

    /// The screens shared in the call now.
    pub async fn list_content_sharing_sessions(
        &self,
        call_id: &str,
    ) -> Result<Vec<ContentSharingSession>, GraphError> {
        let request = PreparedRequest::list_content_sharing_sessions(call_id)?;
        let list: Collection<ContentSharingSession> =
            self.send(&request).await?.parse("contentSharingSessions")?;
        Ok(list.value)
    }

    /// One content sharing session.
    pub async fn get_content_sharing_session(
        &self,
        call_id: &str,
        session_id: &str,
    ) -> Result<ContentSharingSession, GraphError> {
        let request = PreparedRequest::get_content_sharing_session(call_id, session_id)?;
        self.send(&request).await?.parse("contentSharingSession")
    }

    // ---- the shell ----

    /// Sends a prepared request with an access token and a `client-request-id`, retrying what
    /// the [`RetryPolicy`] allows (honouring `Retry-After`); an answer of 400 or more is a
    /// [`GraphError::Http`] with the service's `code`, `message` and `request-id`.
    pub async fn send(&self, request: &PreparedRequest) -> Result<Answer, GraphError> {
        let method = match request.method {
            HttpMethod::Get => Method::GET,
            HttpMethod::Post => Method::POST,
            HttpMethod::Delete => Method::DELETE,
            HttpMethod::Patch => Method::PATCH,
        };
        self.execute(
            method,
            &request.path,
            request.body.as_deref(),
            request.idempotency,
        )
        .await
    }

    async fn execute(
        &self,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
        idem: Idempotency,
    ) -> Result<Answer, GraphError> {
        let cfg = &self.inner.config;
        let url = format!("{}/{path}", cfg.base_url.trim_end_matches('/'));
        let client_request_id = uuid::Uuid::new_v4().to_string();
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
                    .body(b.to_vec());
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
                        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
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
                        return Ok(Answer {
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
