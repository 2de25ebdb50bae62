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

    /// True when the status is completed or failed.
    pub fn is_finished(&self) -> bool {
        self.status.get().is_some_and(OperationStatus::is_finished)
    }
}
