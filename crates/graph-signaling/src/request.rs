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
use crate::models::{
    AudioRoutingGroup, ChangeScreenSharingRoleBody, LogTeleconferenceDeviceQualityBody,
    ScreenSharingRole, StartHoldMusicBody, TeleconferenceDeviceQuality,
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
    /// PATCH
    Patch,
}

impl HttpMethod {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Patch => "PATCH",
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

    /// `POST …/participants/{pid}/mute`: mutes another participant (server side); the
    /// participant can unmute themselves.
    pub fn mute_participant(
        call_id: &str,
        participant_id: &str,
        client_context: &str,
    ) -> Result<Self, ValidationError> {
        validate::path_id(participant_id)?;
        Self::context_action(
            call_id,
            &format!("participants/{participant_id}/mute"),
            client_context,
        )
    }

    /// `POST …/participants/{pid}/startHoldMusic`: puts a participant on hold with the
    /// service's music or `custom_prompt`.
    pub fn start_hold_music(
        call_id: &str,
        participant_id: &str,
        custom_prompt: Option<MediaPrompt>,
        client_context: &str,
    ) -> Result<Self, ValidationError> {
        validate::path_id(participant_id)?;
        let path = call_path(
            call_id,
            &format!("participants/{participant_id}/startHoldMusic"),
        )?;
        if let Some(p) = &custom_prompt {
            validate::prompts("startHoldMusic", std::slice::from_ref(p), 1, 1)?;
        }
        validate::client_context(client_context)?;
        let body = StartHoldMusicBody {
            custom_prompt,
            client_context: Some(client_context.to_owned()),
        };
        Ok(post(path, Some(json(&body)), Idempotency::NonIdempotent))
    }

    /// `POST …/participants/{pid}/stopHoldMusic`: takes a participant off hold.
    pub fn stop_hold_music(
        call_id: &str,
        participant_id: &str,
        client_context: &str,
    ) -> Result<Self, ValidationError> {
        validate::path_id(participant_id)?;
        Self::context_action(
            call_id,
            &format!("participants/{participant_id}/stopHoldMusic"),
            client_context,
        )
    }

    /// `DELETE …/participants/{pid}`: removes a participant from a group call or meeting.
    pub fn remove_participant(
        call_id: &str,
        participant_id: &str,
    ) -> Result<Self, ValidationError> {
        validate::path_id(participant_id)?;
        Ok(PreparedRequest {
            method: HttpMethod::Delete,
            path: call_path(call_id, &format!("participants/{participant_id}"))?,
            body: None,
            idempotency: Idempotency::Idempotent,
        })
    }

    /// `GET …/participants`: the roster now.
    pub fn list_participants(call_id: &str) -> Result<Self, ValidationError> {
        Self::get(call_path(call_id, "participants")?)
    }

    /// `GET …/participants/{pid}`.
    pub fn get_participant(call_id: &str, participant_id: &str) -> Result<Self, ValidationError> {
        validate::path_id(participant_id)?;
        Self::get(call_path(
            call_id,
            &format!("participants/{participant_id}"),
        )?)
    }

    /// `GET …/operations/{oid}`: an operation's status now.
    pub fn get_operation(call_id: &str, operation_id: &str) -> Result<Self, ValidationError> {
        validate::path_id(operation_id)?;
        Self::get(call_path(call_id, &format!("operations/{operation_id}"))?)
    }

    /// `POST …/changeScreenSharingRole`: the bot starts or stops sharing its screen (a
    /// video-based screen sharing bot).
    pub fn change_screen_sharing_role(
        call_id: &str,
        role: ScreenSharingRole,
    ) -> Result<Self, ValidationError> {
        let path = call_path(call_id, "changeScreenSharingRole")?;
        let body = ChangeScreenSharingRoleBody { role };
        Ok(post(path, Some(json(&body)), Idempotency::Idempotent))
    }

    /// `POST …/addLargeGalleryView`: adds the large gallery view to the call.
    pub fn add_large_gallery_view(
        call_id: &str,
        client_context: &str,
    ) -> Result<Self, ValidationError> {
        Self::context_action(call_id, "addLargeGalleryView", client_context)
    }

    /// `POST /communications/calls/logTeleconferenceDeviceQuality`: a teleconference device
    /// reports its media quality (not about one call of the bot).
    pub fn log_teleconference_device_quality(
        quality: TeleconferenceDeviceQuality,
    ) -> Result<Self, ValidationError> {
        if quality.media_quality_list.is_empty() {
            return Err(ValidationError::Missing("quality.mediaQualityList"));
        }
        let body = LogTeleconferenceDeviceQualityBody { quality };
        Ok(post(
            "communications/calls/logTeleconferenceDeviceQuality".into(),
            Some(json(&body)),
            Idempotency::NonIdempotent,
        ))
    }

    /// `POST …/audioRoutingGroups`: creates a routing group (app-hosted media).
    pub fn create_audio_routing_group(
        call_id: &str,
        group: &AudioRoutingGroup,
    ) -> Result<Self, ValidationError> {
        validate::routing_group(group)?;
        Ok(post(
            call_path(call_id, "audioRoutingGroups")?,
            Some(json(group)),
            Idempotency::NonIdempotent,
        ))
    }

    /// `GET …/audioRoutingGroups`.
    pub fn list_audio_routing_groups(call_id: &str) -> Result<Self, ValidationError> {
        Self::get(call_path(call_id, "audioRoutingGroups")?)
    }

    /// `GET …/audioRoutingGroups/{gid}`.
    pub fn get_audio_routing_group(call_id: &str, group_id: &str) -> Result<Self, ValidationError> {
        validate::path_id(group_id)?;
        Self::get(call_path(
            call_id,
            &format!("audioRoutingGroups/{group_id}"),
        )?)
    }

    /// `PATCH …/audioRoutingGroups/{gid}`: replaces the group's sources and receivers.
    pub fn update_audio_routing_group(
        call_id: &str,
        group_id: &str,
        group: &AudioRoutingGroup,
    ) -> Result<Self, ValidationError> {
        validate::path_id(group_id)?;
        validate::routing_group(group)?;
        Ok(PreparedRequest {
            method: HttpMethod::Patch,
            path: call_path(call_id, &format!("audioRoutingGroups/{group_id}"))?,
            body: Some(json(group)),
            idempotency: Idempotency::Idempotent,
        })
    }

    /// `DELETE …/audioRoutingGroups/{gid}`.
    pub fn delete_audio_routing_group(
        call_id: &str,
        group_id: &str,
    ) -> Result<Self, ValidationError> {
        validate::path_id(group_id)?;
        Ok(PreparedRequest {
            method: HttpMethod::Delete,
            path: call_path(call_id, &format!("audioRoutingGroups/{group_id}"))?,
            body: None,
            idempotency: Idempotency::Idempotent,
        })
    }

    /// `GET …/contentSharingSessions`: the screens being shared in the call.
    pub fn list_content_sharing_sessions(call_id: &str) -> Result<Self, ValidationError> {
        Self::get(call_path(call_id, "contentSharingSessions")?)
    }

    /// `GET …/contentSharingSessions/{sid}`.
    pub fn get_content_sharing_session(
        call_id: &str,
        session_id: &str,
    ) -> Result<Self, ValidationError> {
        validate::path_id(session_id)?;
        Self::get(call_path(
            call_id,
            &format!("contentSharingSessions/{session_id}"),
        )?)
    }

    fn get(path: String) -> Result<Self, ValidationError> {
        Ok(PreparedRequest {
            method: HttpMethod::Get,
            path,
            body: None,
            idempotency: Idempotency::Idempotent,
        })
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
