//! Service-hosted media: prompts the service plays, responses it records, keys it reports.
//!
//! These actions work only on calls placed or answered with `serviceHostedMediaConfig`: the
//! calling service itself plays and listens, and the bot steers it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{MediaInfo, Tone};

/// A prompt the service plays: a WAV file (16 kHz, mono, 16-bit PCM) at a URL it can fetch
/// (`mediaPrompt`, the only kind of `prompt`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaPrompt {
    /// `#microsoft.graph.mediaPrompt`.
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// Where the audio is.
    pub media_info: MediaInfo,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl MediaPrompt {
    /// A prompt playing the WAV file at `uri`; `resource_id` names it for the service's cache.
    pub fn new(uri: impl Into<String>, resource_id: Option<String>) -> MediaPrompt {
        MediaPrompt {
            odata_type: Some("#microsoft.graph.mediaPrompt".into()),
            media_info: MediaInfo {
                uri: uri.into(),
                resource_id: resource_id.into(),
                extra: Map::new(),
            },
            extra: Map::new(),
        }
    }
}

/// Body of `POST …/playPrompt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlayPromptBody {
    /// Played in order (1 to 20).
    pub prompts: Vec<MediaPrompt>,
    /// Unique context string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_context: Option<String>,
}

/// Body of `POST …/recordResponse`. Absent settings take the service's defaults (5 s
/// timeouts and duration, a beep).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordResponseBody {
    /// Played before recording starts (at most one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<MediaPrompt>,
    /// Start at once, cutting short media operations queued or running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barge_in_allowed: Option<bool>,
    /// Silence allowed before the caller starts speaking (1–120 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_silence_timeout_in_seconds: Option<u32>,
    /// Pause allowed once the caller spoke (1–120 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_silence_timeout_in_seconds: Option<u32>,
    /// Longest recording (1–120 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_record_duration_in_seconds: Option<u32>,
    /// Beep when recording starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub play_beep: Option<bool>,
    /// Keys that end the recording, as keypad characters (`"#"`, `"1"`, `"*"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop_tones: Vec<String>,
    /// Unique context string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_context: Option<String>,
}

/// Body of `POST …/sendDtmfTones`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendDtmfTonesBody {
    /// The keys, in order.
    pub tones: Vec<Tone>,
    /// Pause between two keys, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_between_tones_ms: Option<u32>,
    /// Unique context string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_context: Option<String>,
}

/// A key a participant pressed (`toneInfo` in a call's notification, after `subscribeToTone`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToneInfo {
    /// `#microsoft.graph.toneInfo`.
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// Rises by one per key pressed in the call: a repeated notification repeats it.
    pub sequence_id: i64,
    /// The key.
    pub tone: Tone,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ToneInfo {
    /// Key number `sequence_id` of a call.
    pub fn new(sequence_id: i64, tone: Tone) -> ToneInfo {
        ToneInfo {
            odata_type: Some("#microsoft.graph.toneInfo".into()),
            sequence_id,
            tone,
            extra: Map::new(),
        }
    }
}

/// Where a finished `recordResponse` left its audio (`recordOperation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRef {
    /// URL of the recording; fetch it with the token soon (the service drops it after the
    /// call).
    pub location: String,
    /// Bearer token for the fetch.
    pub access_token: String,
}

impl std::fmt::Display for RecordingRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a credential: it stays out of logs.
        f.write_str(&self.location)
    }
}
