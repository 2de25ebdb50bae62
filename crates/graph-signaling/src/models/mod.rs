//! Typed serde models of what a calling bot sends to and receives from Graph.
//!
//! Graph marks most of these types open, so each struct keeps properties it does not name in an
//! `extra` map and writes them back; `null` and absent properties are told apart
//! ([`Nullable`]), so a payload parsed and serialized again is the same JSON.

mod call;
mod enums;
mod error;
mod identity;
mod media;
mod notification;
mod nullable;
mod operation;
mod participant;
mod requests;
mod resources;

pub use call::{
    AppHostedMediaConfig, Call, CallOptions, ChatInfo, JoinMeetingIdMeetingInfo, MediaConfig,
    MediaInfo, MeetingInfo, OrganizerMeetingInfo, ResultInfo, ServiceHostedMediaConfig,
    TokenMeetingInfo,
};
pub use enums::{
    CallDirection, CallState, ChangeType, EndpointType, Modality, OperationStatus,
    OperationStatusKind, RecordingStatus, RejectReason, RoutingMode, ScreenSharingRole, Tone,
};
pub use error::{GraphErrorBody, GraphErrorDetail, InnerError};
pub use identity::{Identity, IdentitySet, InvitationParticipantInfo, ParticipantInfo};
pub use media::{
    MediaPrompt, PlayPromptBody, RecordResponseBody, RecordingRef, SendDtmfTonesBody, ToneInfo,
};
pub use notification::{
    CommsNotification, CommsNotifications, MAX_NOTIFICATION_BYTES, NotificationParseError,
    ResourceData, ResourceItem, call_id_of, is_legacy_notification, is_legacy_value,
};
pub use nullable::Nullable;
pub use operation::CommsOperation;
pub use participant::{
    ContentSharingSession, DeltaParticipants, MediaDirection, MediaStream, Participant,
    RemovedState,
};
pub use requests::{
    AnswerBody, ClientContextBody, InviteParticipantsBody, RedirectBody, RejectBody, TransferBody,
    UpdateRecordingStatusBody,
};
pub use resources::{
    AudioRoutingGroup, ChangeScreenSharingRoleBody, Collection, LogTeleconferenceDeviceQualityBody,
    StartHoldMusicBody, TeleconferenceDeviceQuality,
};

use serde_json::{Map, Value};

/// The type name in an object's `@odata.type`, without `#microsoft.graph.` (or any namespace).
pub fn odata_kind(map: &Map<String, Value>) -> Option<&str> {
    let t = map.get("@odata.type")?.as_str()?;
    let t = t.strip_prefix('#').unwrap_or(t);
    Some(t.rsplit('.').next().unwrap_or(t))
}
