//! Resources under a call besides its participants and operations: audio routing groups, and
//! the bodies of the participant and call actions that are not media processing.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{MediaPrompt, RoutingMode, ScreenSharingRole};

/// `audioRoutingGroup`: which participants' audio (by participant id) reaches which others,
/// for a bot with app-hosted media that mixes for some participants only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioRoutingGroup {
    /// `#microsoft.graph.audioRoutingGroup`.
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// The group's id (set by the service, or by the bot on create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// How audio is routed.
    pub routing_mode: RoutingMode,
    /// Participant ids whose audio is routed.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Participant ids that receive it.
    #[serde(default)]
    pub receivers: Vec<String>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AudioRoutingGroup {
    /// A group routing `sources` to `receivers`.
    pub fn new(mode: RoutingMode, sources: Vec<String>, receivers: Vec<String>) -> Self {
        AudioRoutingGroup {
            odata_type: Some("#microsoft.graph.audioRoutingGroup".into()),
            id: None,
            routing_mode: mode,
            sources,
            receivers,
            extra: Map::new(),
        }
    }
}

/// A list answer of Graph (`{"value": [...]}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Collection<T> {
    /// The items.
    pub value: Vec<T>,
    /// Any other property (`@odata.context`, `@odata.nextLink`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of `POST …/participants/{id}/startHoldMusic`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartHoldMusicBody {
    /// Music of the bot's choice instead of the service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_prompt: Option<MediaPrompt>,
    /// Unique context string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_context: Option<String>,
}

/// Body of `POST …/changeScreenSharingRole`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeScreenSharingRoleBody {
    /// The role to take.
    pub role: ScreenSharingRole,
}

/// `teleconferenceDeviceQuality`: media quality a teleconference device reports
/// (`POST /communications/calls/logTeleconferenceDeviceQuality`). Open type: the
/// per-modality `mediaQualityList` entries are kept as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TeleconferenceDeviceQuality {
    /// The call chain the device took part in.
    pub call_chain_id: String,
    /// The participant the device was.
    pub participant_id: String,
    /// The media leg.
    pub media_leg_id: String,
    /// The device's name.
    pub device_name: String,
    /// The device's description.
    pub device_description: String,
    /// Quality per modality (`teleconferenceDeviceAudioQuality`, ...).
    pub media_quality_list: Vec<Value>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of `logTeleconferenceDeviceQuality`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogTeleconferenceDeviceQualityBody {
    /// The report.
    pub quality: TeleconferenceDeviceQuality,
}
