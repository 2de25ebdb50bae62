//! Long-running actions: `commsOperation` and its subtypes such as `inviteParticipantsOperation`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{InvitationParticipantInfo, Nullable, OperationStatus, ResultInfo};

/// A comms operation. One struct covers every subtype (`inviteParticipantsOperation`,
/// `muteParticipantOperation`, `updateRecordingStatusOperation`, …): they differ only in
/// `@odata.type` and, for invites, `participants`. Open type: other properties stay in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommsOperation {
    /// `@odata.type`: which operation.
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// Operation id; some notifications carry `null`, then `clientContext` identifies it.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub id: Nullable<String>,
    /// Status, case-insensitive.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub status: Nullable<OperationStatus>,
    /// The context string the bot sent with the request.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub client_context: Nullable<String>,
    /// Outcome details.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub result_info: Nullable<ResultInfo>,
    /// Invited participants (`inviteParticipantsOperation`).
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub participants: Nullable<Vec<InvitationParticipantInfo>>,
    /// Where a `recordOperation` left the recording (empty when it failed).
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub recording_location: Nullable<String>,
    /// Bearer token to fetch the recording with (`recordOperation`).
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub recording_access_token: Nullable<String>,
    /// Why a media operation ended (`sendDtmfTonesOperation`, and `operationCanceled` on a
    /// cancelled one).
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub completion_reason: Nullable<String>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CommsOperation {
    /// The operation's type name without the `#microsoft.graph.` prefix, or `commsOperation`.
    pub fn kind(&self) -> &str {
        self.odata_type
            .as_deref()
            .map_or("commsOperation", |t| t.rsplit('.').next().unwrap_or(t))
    }

    /// The recording a finished `recordOperation` left, when it names one.
    pub fn recording(&self) -> Option<super::RecordingRef> {
        let location = self.recording_location.get().filter(|l| !l.is_empty())?;
        Some(super::RecordingRef {
            location: location.clone(),
            access_token: self
                .recording_access_token
                .get()
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// True when the status is completed or failed.
    pub fn is_finished(&self) -> bool {
        self.status.get().is_some_and(OperationStatus::is_finished)
    }
}
