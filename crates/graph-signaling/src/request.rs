//! Graph requests as data (sans-IO): what to send for each call action, already checked
//! against the calling rules, and how to read the answer.
//!
//! [`crate::client::GraphClient`] sends these over HTTP with tokens and retries; a test
//! harness can hand the same bytes to an emulator's core instead, so both see exactly what a
//! bot sends.

use crate::error::{GraphError, short_reason};
use crate::models::{
    AnswerBody, Call, ClientContextBody, CommsOperation, InvitationParticipantInfo,
    InviteParticipantsBody, MediaPrompt, Nullable, ParticipantInfo, PlayPromptBody,
    RecordResponseBody, RecordingStatus, RedirectBody, RejectBody, RejectReason, SendDtmfTonesBody,
    Tone, TransferBody, UpdateRecordingStatusBody,
};
use crate::retry::Idempotency;
use crate::validate::{self, ValidationError};

/// An HTTP method the calling API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// GET
    Get,
    /// POST
    Post,
    /// DELETE
    Delete,
}

impl HttpMethod {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Delete => "DELETE",
        }
    }
}

/// One request, validated and serialized, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedRequest {
    /// The method.
    pub method: HttpMethod,
    /// The path below the API's base URL, such as `communications/calls/{id}/keepAlive`.
    pub path: String,
    /// The JSON body, if any.
    pub body: Option<Vec<u8>>,
    /// Whether repeating it could act twice (decides what may be retried).
    pub idempotency: Idempotency,
}

/// The answer to a request that succeeded (status below 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body (empty when none).
    pub body: Vec<u8>,
    /// The `client-request-id` the request carried.
    pub client_request_id: String,
}

impl Answer {
    /// The body as `T`.
    pub fn parse<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, GraphError> {
        serde_json::from_slice(&self.body).map_err(|e| GraphError::BadResponse {
            client_request_id: self.client_request_id.clone(),
            reason: format!("{what} body (HTTP {}): {}", self.status, short_reason(&e)),
        })
    }

    /// The operation an action's answer carries; none for an empty body (the outcome then
    /// arrives only as a notification).
    pub fn operation(&self) -> Result<Option<CommsOperation>, GraphError> {
        if self.body.is_empty() {
            return Ok(None);
        }
        self.parse("operation").map(Some)
    }
}

fn json<T: serde::Serialize>(body: &T) -> Vec<u8> {
    // Invariant: request bodies are plain structs with string keys, which always serialize.
    serde_json::to_vec(body).expect("a request body serializes")
}

fn call_path(call_id: &str, action: &str) -> Result<String, ValidationError> {
    validate::path_id(call_id)?;
    Ok(if action.is_empty() {
        format!("communications/calls/{call_id}")
    } else {
        format!("communications/calls/{call_id}/{action}")
    })
}

fn post(path: String, body: Option<Vec<u8>>, idempotency: Idempotency) -> PreparedRequest {
    PreparedRequest {
        method: HttpMethod::Post,
        path,
        body,
        idempotency,
    }
}

impl PreparedRequest {
    /// `POST /communications/calls`: place a call or join a meeting.
    pub fn create_call(call: &Call) -> Result<Self, ValidationError> {
        validate::create_call(call)?;
        Ok(post(
            "communications/calls".into(),
            Some(json(call)),
            Idempotency::NonIdempotent,
        ))
    }

    /// `GET /communications/calls/{id}`.
    pub fn get_call(call_id: &str) -> Result<Self, ValidationError> {
        Ok(PreparedRequest {
            method: HttpMethod::Get,
            path: call_path(call_id, "")?,
            body: None,
            idempotency: Idempotency::Idempotent,
        })
    }

    /// `POST …/answer`.
    pub fn answer(call_id: &str, body: &AnswerBody) -> Result<Self, ValidationError> {
        Ok(post(
            call_path(call_id, "answer")?,
            Some(json(body)),
            Idempotency::NonIdempotent,
        ))
    }

    /// `POST …/reject`.
    pub fn reject(call_id: &str, reason: RejectReason) -> Result<Self, ValidationError> {
        let body = RejectBody {
            reason,
            callback_uri: None,
        };
        Ok(post(
            call_path(call_id, "reject")?,
            Some(json(&body)),
            Idempotency::NonIdempotent,
        ))
    }

    /// `POST …/redirect`.
    pub fn redirect(
        call_id: &str,
        targets: Vec<InvitationParticipantInfo>,
        timeout_secs: Option<u32>,
    ) -> Result<Self, ValidationError> {
        let path = call_path(call_id, "redirect")?;
        validate::invite(&targets, None, true)?;
        let body = RedirectBody {
            targets,
            timeout: timeout_secs,
            callback_uri: None,
        };
        Ok(post(path, Some(json(&body)), Idempotency::NonIdempotent))
    }

    /// `POST …/transfer`.
    pub fn transfer(
        call_id: &str,
        target: InvitationParticipantInfo,
        transferee: Option<ParticipantInfo>,
    ) -> Result<Self, ValidationError> {
        let path = call_path(call_id, "transfer")?;
        validate::invite(std::slice::from_ref(&target), None, false)?;
        let body = TransferBody {
            transfer_target: target,
            transferee,
        };
        Ok(post(path, Some(json(&body)), Idempotency::NonIdempotent))
    }

    /// `POST …/participants/invite`: several participants only into a `group` call (at most
    /// 5), `replacesCallId` with exactly one.
    pub fn invite(
        call_id: &str,
        participants: Vec<InvitationParticipantInfo>,
        client_context: &str,
        group: bool,
    ) -> Result<Self, ValidationError> {
        let path = call_path(call_id, "participants/invite")?;
        validate::invite(&participants, Some(client_context), group)?;
        let body = InviteParticipantsBody {
            participants,
            client_context: Nullable::Value(client_context.to_owned()),
            extra: Default::default(),
        };
        Ok(post(path, Some(json(&body)), Idempotency::NonIdempotent))
    }

    /// `POST …/mute` (the bot itself).
    pub fn mute_self(call_id: &str, client_context: &str) -> Result<Self, ValidationError> {
        Self::context_action(call_id, "mute", client_context)
    }

    /// `POST …/unmute` (the bot itself).
    pub fn unmute_self(call_id: &str, client_context: &str) -> Result<Self, ValidationError> {
        Self::context_action(call_id, "unmute", client_context)
    }

    /// `POST …/updateRecordingStatus`.
    pub fn update_recording_status(
        call_id: &str,
        status: RecordingStatus,
        client_context: &str,
    ) -> Result<Self, ValidationError> {
        let path = call_path(call_id, "updateRecordingStatus")?;
        validate::client_context(client_context)?;
        let body = UpdateRecordingStatusBody {
            status,
            client_context: Some(client_context.to_owned()),
        };
        Ok(post(path, Some(json(&body)), Idempotency::Idempotent))
    }

    /// `POST …/playPrompt` (service-hosted media): plays 1 to 20 prompts in order; the
    /// operation completes when the last one has played.
    pub fn play_prompt(
        call_id: &str,
        prompts: Vec<MediaPrompt>,
        client_context: &str,
    ) -> Result<Self, ValidationError> {
        let path = call_path(call_id, "playPrompt")?;
        validate::prompts("playPrompt", &prompts, 1, validate::MAX_PROMPTS)?;
        validate::client_context(client_context)?;
        let body = PlayPromptBody {
            prompts,
            client_context: Some(client_context.to_owned()),
        };
        Ok(post(path, Some(json(&body)), Idempotency::NonIdempotent))
    }

    /// `POST …/recordResponse` (service-hosted media): records what the caller says after an
    /// optional prompt; the finished operation names the recording. The body's
    /// `clientContext` is set to `client_context`.
    pub fn record_response(
        call_id: &str,
        mut body: RecordResponseBody,
        client_context: &str,
    ) -> Result<Self, ValidationError> {
        let path = call_path(call_id, "recordResponse")?;
        body.client_context = Some(client_context.to_owned());
        validate::record_response(&body)?;
        Ok(post(path, Some(json(&body)), Idempotency::NonIdempotent))
    }

    /// `POST …/subscribeToTone` (service-hosted media): keys the participants press arrive as
    /// `toneInfo` in call notifications.
    pub fn subscribe_to_tone(call_id: &str, client_context: &str) -> Result<Self, ValidationError> {
        Self::context_action(call_id, "subscribeToTone", client_context)
    }

    /// `POST …/cancelMediaProcessing`: cancels the prompts and recordings running or queued
    /// (their operations fail with 400/8508); a tone subscription stays.
    pub fn cancel_media_processing(
        call_id: &str,
        client_context: &str,
    ) -> Result<Self, ValidationError> {
        Self::context_action(call_id, "cancelMediaProcessing", client_context)
    }

    /// `POST …/sendDtmfTones`: the service sends these keys into the call.
    pub fn send_dtmf_tones(
        call_id: &str,
        tones: Vec<Tone>,
        delay_between_tones_ms: Option<u32>,
        client_context: &str,
    ) -> Result<Self, ValidationError> {
        let path = call_path(call_id, "sendDtmfTones")?;
        validate::dtmf_tones(&tones)?;
        validate::client_context(client_context)?;
        let body = SendDtmfTonesBody {
            tones,
            delay_between_tones_ms,
            client_context: Some(client_context.to_owned()),
        };
        Ok(post(path, Some(json(&body)), Idempotency::NonIdempotent))
    }

    /// `DELETE /communications/calls/{id}`: hang up (in a group call, leave).
    pub fn hang_up(call_id: &str) -> Result<Self, ValidationError> {
        Ok(PreparedRequest {
            method: HttpMethod::Delete,
            path: call_path(call_id, "")?,
            body: None,
            idempotency: Idempotency::Idempotent,
        })
    }

    /// `POST …/keepAlive`.
    pub fn keep_alive(call_id: &str) -> Result<Self, ValidationError> {
        Ok(post(
            call_path(call_id, "keepAlive")?,
            None,
            Idempotency::Idempotent,
        ))
    }

    fn context_action(
        call_id: &str,
        action: &str,
        client_context: &str,
    ) -> Result<Self, ValidationError> {
        let path = call_path(call_id, action)?;
        validate::client_context(client_context)?;
        let body = ClientContextBody {
            client_context: Some(client_context.to_owned()),
        };
        Ok(post(path, Some(json(&body)), Idempotency::Idempotent))
    }
}
