//! Roster entries: `participant`, `mediaStream`, `deltaParticipants`.

use std::fmt;

use media_session::{SourceId, StreamDirection};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::{Modality, Nullable, ParticipantInfo};

/// Direction of a roster media stream: media-session's [`StreamDirection`], or a value Graph
/// added later, kept as text so the roster still parses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MediaDirection {
    /// One of the four directions Graph defines.
    Known(StreamDirection),
    /// Anything else, kept as received.
    Unknown(String),
}

impl MediaDirection {
    /// The known direction, if it is one.
    pub fn known(&self) -> Option<StreamDirection> {
        match self {
            MediaDirection::Known(d) => Some(*d),
            MediaDirection::Unknown(_) => None,
        }
    }
}

impl fmt::Display for MediaDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaDirection::Known(d) => f.write_str(d.as_str()),
            MediaDirection::Unknown(s) => f.write_str(s),
        }
    }
}

impl From<StreamDirection> for MediaDirection {
    fn from(d: StreamDirection) -> Self {
        MediaDirection::Known(d)
    }
}

impl Serialize for MediaDirection {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            MediaDirection::Known(d) => d.serialize(serializer),
            MediaDirection::Unknown(s) => serializer.serialize_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for MediaDirection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        // Only Graph's exact names map to Known, so a round trip writes back what was read.
        Ok(
            match StreamDirection::ALL
                .into_iter()
                .find(|d| d.as_str() == s.as_ref())
            {
                Some(d) => MediaDirection::Known(d),
                None => MediaDirection::Unknown(s.into_owned()),
            },
        )
    }
}

/// One media stream of a participant (`mediaStream`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaStream {
    /// `@odata.type`, kept as sent.
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// What the stream carries.
    pub media_type: Modality,
    /// The source id media packets of this stream carry.
    pub source_id: SourceId,
    /// Direction, from the participant's point of view.
    pub direction: MediaDirection,
    /// Muted by the server.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub server_muted: Nullable<bool>,
    /// Label.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub label: Nullable<String>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why a participant left the roster (`removedState`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemovedState {
    /// The reason given.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub reason: Nullable<String>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A roster entry (`#microsoft.graph.participant`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    /// `@odata.type`, kept as sent.
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// Participant id; the examples also show `null`.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub id: Nullable<String>,
    /// Who the participant is.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub info: Nullable<ParticipantInfo>,
    /// The participant's media streams.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub media_streams: Nullable<Vec<MediaStream>>,
    /// Muted.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub is_muted: Nullable<bool>,
    /// Waiting in the lobby.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub is_in_lobby: Nullable<bool>,
    /// Set when the participant left (delta rosters).
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub removed_state: Nullable<RemovedState>,
    /// Order of this entry among delta roster updates.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub roster_sequence_number: Nullable<i64>,
    /// Application metadata.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub metadata: Nullable<String>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Participant {
    /// The participant's streams (empty when absent or null).
    pub fn streams(&self) -> &[MediaStream] {
        self.media_streams.get().map_or(&[], Vec::as_slice)
    }

    /// Source ids of the participant's audio streams.
    pub fn audio_sources(&self) -> impl Iterator<Item = SourceId> + '_ {
        self.streams()
            .iter()
            .filter(|s| s.media_type == Modality::Audio)
            .map(|s| s.source_id)
    }

    /// Label of the participant's identity for logs (`user:…`, `application:…`).
    pub fn identity_label(&self) -> String {
        self.info
            .get()
            .and_then(|i| i.identity.get())
            .map_or_else(|| "?".to_owned(), |s| s.label())
    }
}

/// A delta roster update (`#microsoft.graph.deltaParticipants`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeltaParticipants {
    /// `@odata.type`, kept as sent.
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// Participants that joined, changed or left.
    #[serde(default)]
    pub participants: Vec<Participant>,
    /// Order of this update.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub sequence_number: Nullable<i64>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A content sharing session (`#microsoft.graph.contentSharingSession`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentSharingSession {
    /// `@odata.type`, kept as sent.
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// Session id.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub id: Nullable<String>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
