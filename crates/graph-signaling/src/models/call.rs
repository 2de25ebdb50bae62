//! The `call` resource and the types it is made of.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::{
    CallDirection, CallState, IdentitySet, InvitationParticipantInfo, Modality, Nullable,
    ParticipantInfo, odata_kind,
};

/// Outcome of a call or operation (`resultInfo`): `code`/`subcode` as in the termination table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultInfo {
    /// `@odata.type`, kept as sent.
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// Main code (HTTP-like: 200, 408, 410, …).
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub code: Nullable<i64>,
    /// Sub code (5001, 8537, …).
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub subcode: Nullable<i64>,
    /// Human-readable reason.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub message: Nullable<String>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ResultInfo {
    /// `code/subcode message` for logs.
    pub fn summary(&self) -> String {
        let num = |n: &Nullable<i64>| n.get().map_or_else(|| "-".to_owned(), i64::to_string);
        let mut s = format!("{}/{}", num(&self.code), num(&self.subcode));
        if let Some(m) = self.message.as_deref() {
            s.push(' ');
            s.push_str(m);
        }
        s
    }
}

/// A media file the service fetches ahead of playing it (`mediaInfo`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaInfo {
    /// Where the file is.
    pub uri: String,
    /// An id for the cached resource.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub resource_id: Nullable<String>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Media hosted by the bot itself; `blob` comes from media-session.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppHostedMediaConfig {
    /// `@odata.type` (`#microsoft.graph.appHostedMediaConfig`).
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// The serialized media session configuration.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub blob: Nullable<String>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Media hosted by the calling service.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceHostedMediaConfig {
    /// `@odata.type` (`#microsoft.graph.serviceHostedMediaConfig`).
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// Prompts to fetch ahead.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub pre_fetch_media: Nullable<Vec<MediaInfo>>,
    /// Any other property (such as `removeFromDefaultAudioGroup`), written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Who hosts the call's media (`mediaConfig`), chosen by `@odata.type`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MediaConfig {
    /// Application-hosted media.
    AppHosted(AppHostedMediaConfig),
    /// Service-hosted media.
    ServiceHosted(ServiceHostedMediaConfig),
    /// Another or missing `@odata.type`, kept as received.
    Other(Map<String, Value>),
}

impl MediaConfig {
    /// App-hosted media with the given blob.
    pub fn app_hosted(blob: impl Into<String>) -> Self {
        MediaConfig::AppHosted(AppHostedMediaConfig {
            odata_type: Some("#microsoft.graph.appHostedMediaConfig".into()),
            blob: Nullable::Value(blob.into()),
            extra: Map::new(),
        })
    }

    /// Service-hosted media.
    pub fn service_hosted() -> Self {
        MediaConfig::ServiceHosted(ServiceHostedMediaConfig {
            odata_type: Some("#microsoft.graph.serviceHostedMediaConfig".into()),
            ..ServiceHostedMediaConfig::default()
        })
    }

    /// `appHosted`, `serviceHosted` or `other` for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            MediaConfig::AppHosted(_) => "appHosted",
            MediaConfig::ServiceHosted(_) => "serviceHosted",
            MediaConfig::Other(_) => "other",
        }
    }
}

impl<'de> Deserialize<'de> for MediaConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = Map::<String, Value>::deserialize(deserializer)?;
        Ok(match odata_kind(&map) {
            Some("appHostedMediaConfig") => MediaConfig::AppHosted(
                serde_json::from_value(Value::Object(map)).map_err(D::Error::custom)?,
            ),
            Some("serviceHostedMediaConfig") => MediaConfig::ServiceHosted(
                serde_json::from_value(Value::Object(map)).map_err(D::Error::custom)?,
            ),
            _ => MediaConfig::Other(map),
        })
    }
}

/// The chat thread of a meeting or group call (`chatInfo`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatInfo {
    /// `@odata.type`, kept as sent.
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// Thread id (`19:meeting_…@thread.v2`).
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub thread_id: Nullable<String>,
    /// Message id (`0` for meetings).
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub message_id: Nullable<String>,
    /// Reply chain message id.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub reply_chain_message_id: Nullable<String>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatInfo {
    /// A chatInfo for a thread and message.
    pub fn new(thread_id: impl Into<String>, message_id: impl Into<String>) -> Self {
        ChatInfo {
            odata_type: Some("#microsoft.graph.chatInfo".into()),
            thread_id: Nullable::Value(thread_id.into()),
            message_id: Nullable::Value(message_id.into()),
            ..ChatInfo::default()
        }
    }
}

/// A meeting identified by its organizer (`organizerMeetingInfo`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrganizerMeetingInfo {
    /// `@odata.type`, kept as sent.
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// The organizer.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub organizer: Nullable<IdentitySet>,
    /// Whether the meeting may go on without its host.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub allow_conversation_without_host: Nullable<bool>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A meeting identified by join id and passcode (`joinMeetingIdMeetingInfo`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinMeetingIdMeetingInfo {
    /// `@odata.type`, kept as sent.
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// The numeric join id.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub join_meeting_id: Nullable<String>,
    /// The passcode, if the meeting needs one.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub passcode: Nullable<String>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A meeting identified by a token (`tokenMeetingInfo`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenMeetingInfo {
    /// `@odata.type`, kept as sent.
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// The token.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub token: Nullable<String>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Which meeting to join (`meetingInfo`), chosen by `@odata.type`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MeetingInfo {
    /// By organizer (with chatInfo).
    Organizer(Box<OrganizerMeetingInfo>),
    /// By join id and passcode.
    JoinMeetingId(JoinMeetingIdMeetingInfo),
    /// By token.
    Token(TokenMeetingInfo),
    /// Another or missing `@odata.type`, kept as received.
    Other(Map<String, Value>),
}

impl<'de> Deserialize<'de> for MeetingInfo {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = Map::<String, Value>::deserialize(deserializer)?;
        Ok(match odata_kind(&map) {
            Some("organizerMeetingInfo") => MeetingInfo::Organizer(Box::new(
                serde_json::from_value(Value::Object(map)).map_err(D::Error::custom)?,
            )),
            Some("joinMeetingIdMeetingInfo") => MeetingInfo::JoinMeetingId(
                serde_json::from_value(Value::Object(map)).map_err(D::Error::custom)?,
            ),
            Some("tokenMeetingInfo") => MeetingInfo::Token(
                serde_json::from_value(Value::Object(map)).map_err(D::Error::custom)?,
            ),
            _ => MeetingInfo::Other(map),
        })
    }
}

impl MeetingInfo {
    /// A meeting by organizer.
    pub fn organizer(
        organizer: IdentitySet,
        allow_conversation_without_host: Option<bool>,
    ) -> Self {
        MeetingInfo::Organizer(Box::new(OrganizerMeetingInfo {
            odata_type: Some("#microsoft.graph.organizerMeetingInfo".into()),
            organizer: organizer.into(),
            allow_conversation_without_host: allow_conversation_without_host.into(),
            extra: Map::new(),
        }))
    }

    /// A meeting by join id and optional passcode.
    pub fn join_meeting_id(join_meeting_id: impl Into<String>, passcode: Option<String>) -> Self {
        MeetingInfo::JoinMeetingId(JoinMeetingIdMeetingInfo {
            odata_type: Some("#microsoft.graph.joinMeetingIdMeetingInfo".into()),
            join_meeting_id: Nullable::Value(join_meeting_id.into()),
            passcode: passcode.into(),
            extra: Map::new(),
        })
    }
}

/// Call options (`outgoingCallOptions` / `incomingCallOptions`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallOptions {
    /// `@odata.type`: which of the two subtypes.
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// Hide the bot once the call is escalated.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub hide_bot_after_escalation: Nullable<bool>,
    /// Send content sharing session notifications.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub is_content_sharing_notification_enabled: Nullable<bool>,
    /// Send delta rosters instead of full ones.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub is_delta_roster_enabled: Nullable<bool>,
    /// Interactive roster.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub is_interactive_roster_enabled: Nullable<bool>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CallOptions {
    /// Outgoing call options with delta roster and content sharing notifications on or off.
    pub fn outgoing(delta_roster: bool, content_sharing: bool) -> Self {
        CallOptions {
            odata_type: Some("#microsoft.graph.outgoingCallOptions".into()),
            is_delta_roster_enabled: delta_roster.into(),
            is_content_sharing_notification_enabled: content_sharing.into(),
            ..CallOptions::default()
        }
    }
}

/// A call (`#microsoft.graph.call`): the body of create-call requests and responses, and the
/// `resourceData` of call state notifications.
///
/// Open type: everything this crate does not name (`callRoutes`, `toneInfo`, …) is kept in
/// [`Call::extra`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    /// `@odata.type`, kept as sent.
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// `@odata.context`, kept as sent.
    #[serde(
        rename = "@odata.context",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_context: Option<String>,
    /// Call id.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub id: Nullable<String>,
    /// Call state.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub state: Nullable<CallState>,
    /// Direction.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub direction: Nullable<CallDirection>,
    /// Where notifications go.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub callback_uri: Nullable<String>,
    /// Id shared by every leg of the call.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub call_chain_id: Nullable<String>,
    /// Subject (group calls).
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub subject: Nullable<String>,
    /// The caller.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub source: Nullable<ParticipantInfo>,
    /// Who is called.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub targets: Nullable<Vec<InvitationParticipantInfo>>,
    /// Modalities asked for.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub requested_modalities: Nullable<Vec<Modality>>,
    /// Modalities in use.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub active_modalities: Nullable<Vec<Modality>>,
    /// Who hosts the media.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub media_config: Nullable<MediaConfig>,
    /// Meeting chat.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub chat_info: Nullable<ChatInfo>,
    /// Meeting to join.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub meeting_info: Nullable<MeetingInfo>,
    /// Options.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub call_options: Nullable<CallOptions>,
    /// Tenant; a string, not necessarily a GUID.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub tenant_id: Nullable<String>,
    /// The bot's own participant id in this call.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub my_participant_id: Nullable<String>,
    /// Why the call ended (on terminated).
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub result_info: Nullable<ResultInfo>,
    /// The key a participant pressed, in the notification that reports it (service-hosted
    /// media, after `subscribeToTone`).
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub tone_info: Nullable<super::ToneInfo>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Call {
    /// An outgoing call skeleton with `@odata.type`, callback and media config set.
    pub fn outgoing(callback_uri: impl Into<String>, media_config: MediaConfig) -> Self {
        Call {
            odata_type: Some("#microsoft.graph.call".into()),
            callback_uri: Nullable::Value(callback_uri.into()),
            requested_modalities: Nullable::Value(vec![Modality::Audio]),
            media_config: Nullable::Value(media_config),
            ..Call::default()
        }
    }
}
