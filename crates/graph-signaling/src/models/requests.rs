//! Bodies of the call actions the bot posts (invite, answer, reject, …).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    CallOptions, InvitationParticipantInfo, MediaConfig, Modality, Nullable, ParticipantInfo,
    RecordingStatus, RejectReason,
};

/// Body of `POST …/participants/invite`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InviteParticipantsBody {
    /// Who to invite.
    pub participants: Vec<InvitationParticipantInfo>,
    /// Unique context string (≤ 256 characters) to match the outcome notification.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub client_context: Nullable<String>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of `POST …/answer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnswerBody {
    /// Where notifications go.
    pub callback_uri: String,
    /// Who hosts the media.
    pub media_config: MediaConfig,
    /// Modalities accepted.
    pub accepted_modalities: Vec<Modality>,
    /// Concurrent calls the bot can take (policy recording).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant_capacity: Option<u32>,
    /// Options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_options: Option<CallOptions>,
}

/// Body of `POST …/reject`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectBody {
    /// Reason.
    pub reason: RejectReason,
    /// Callback, optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_uri: Option<String>,
}

/// Body of `POST …/redirect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedirectBody {
    /// Where to redirect.
    pub targets: Vec<InvitationParticipantInfo>,
    /// Seconds to ring the targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
    /// Callback, optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_uri: Option<String>,
}

/// Body of `POST …/transfer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferBody {
    /// Who takes the call.
    pub transfer_target: InvitationParticipantInfo,
    /// Who is transferred (group calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transferee: Option<ParticipantInfo>,
}

/// Body of `POST …/mute` and `…/unmute`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientContextBody {
    /// Unique context string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_context: Option<String>,
}

/// Body of `POST …/updateRecordingStatus`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRecordingStatusBody {
    /// New status.
    pub status: RecordingStatus,
    /// Unique context string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_context: Option<String>,
}
