//! The serialized `appHostedMediaConfig.blob`: writing it in the documented shape and reading it
//! back from untrusted text.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::text::shorten;
use crate::{AudioFormat, MpUri, MpUriError, VideoFormat};

/// Largest blob text [`parse`] reads. A blob with every socket the official library allows is
/// under 2 KiB; anything near this limit is not a blob.
pub const MAX_BLOB_BYTES: usize = 64 * 1024;

/// Most ids one context list may hold (10 video sockets plus screen sharing need 11).
pub const MAX_CONTEXTS_PER_LIST: usize = 64;

/// Most entries in `videoSinkEncodingFormats`.
pub const MAX_VIDEO_FORMATS: usize = 16;

/// Longest string accepted in a free-text field (versions, regionAffinity, format names).
pub const MAX_TEXT_LEN: usize = 256;

/// Version strings mediabot writes in the blob to identify itself to the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineVersions {
    /// Written as `skypeMediaBotsVersion`: the bot-side media library (mediabot).
    pub media_bots: String,
    /// Written as `mediaStackVersion`: the media stack (mediabot's audio pipeline).
    pub media_stack: String,
    /// Written as `mpVersion`: the media processor (mediabot's transport).
    pub media_processor: String,
}

impl Default for EngineVersions {
    /// All three are this crate's version in the four-part dotted form the service's examples use.
    fn default() -> Self {
        let v = concat!(env!("CARGO_PKG_VERSION"), ".0").to_owned();
        EngineVersions {
            media_bots: v.clone(),
            media_stack: v.clone(),
            media_processor: v,
        }
    }
}

/// Everything the blob carries, typed. [`BlobConfig::to_blob`] writes it with the documented field
/// names in the documented order; [`parse`] reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobConfig {
    /// `mpUri`: where the bot's media processor listens.
    pub mp_uri: MpUri,
    /// `audioRenderContexts`: audio sinks (the bot receives).
    pub audio_render_contexts: Vec<Uuid>,
    /// `videoRenderContexts`: video and screen sharing sinks.
    pub video_render_contexts: Vec<Uuid>,
    /// `audioSourceContexts`: audio sources (the bot sends).
    pub audio_source_contexts: Vec<Uuid>,
    /// `videoSourceContexts`: video sources.
    pub video_source_contexts: Vec<Uuid>,
    /// `dataRenderContexts`: written as `null` when absent, as in the documentation.
    pub data_render_contexts: Option<Vec<Uuid>>,
    /// `dataSourceContexts`: written as `null` when absent.
    pub data_source_contexts: Option<Vec<Uuid>>,
    /// `supportedAudioFormat`; a blob without it means `Pcm16K`, the only format early libraries had.
    pub supported_audio_format: AudioFormat,
    /// `videoSinkEncodingFormats`.
    pub video_sink_encoding_formats: Vec<VideoFormat>,
    /// `mpMediaSessionId`.
    pub mp_media_session_id: Uuid,
    /// `regionAffinity`.
    pub region_affinity: Option<String>,
    /// `skypeMediaBotsVersion`.
    pub skype_media_bots_version: Option<String>,
    /// `mediaStackVersion`.
    pub media_stack_version: Option<String>,
    /// `mpVersion`.
    pub mp_version: Option<String>,
    /// `callId`, `null` until the call is known.
    pub call_id: Option<Uuid>,
    /// Names of fields the parsed blob had that are not documented. They are reported, not kept:
    /// [`BlobConfig::to_blob`] writes only documented fields.
    pub unknown_fields: Vec<String>,
}

/// The documented field names, in the documented order.
pub const FIELDS: [&str; 15] = [
    "mpUri",
    "audioRenderContexts",
    "videoRenderContexts",
    "audioSourceContexts",
    "videoSourceContexts",
    "dataRenderContexts",
    "dataSourceContexts",
    "supportedAudioFormat",
    "videoSinkEncodingFormats",
    "mpMediaSessionId",
    "regionAffinity",
    "skypeMediaBotsVersion",
    "mediaStackVersion",
    "mpVersion",
    "callId",
];

/// Wire shape used only for writing: serde emits fields in declaration order, which is the
/// documented order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireBlob<'a> {
    mp_uri: String,
    audio_render_contexts: &'a [Uuid],
    video_render_contexts: &'a [Uuid],
    audio_source_contexts: &'a [Uuid],
    video_source_contexts: &'a [Uuid],
    data_render_contexts: Option<&'a [Uuid]>,
    data_source_contexts: Option<&'a [Uuid]>,
    supported_audio_format: &'static str,
    video_sink_encoding_formats: Vec<&'a str>,
    mp_media_session_id: Uuid,
    region_affinity: Option<&'a str>,
    skype_media_bots_version: Option<&'a str>,
    media_stack_version: Option<&'a str>,
    mp_version: Option<&'a str>,
    call_id: Option<Uuid>,
}

impl BlobConfig {
    /// Writes the blob: compact JSON, documented field names in documented order, `null` for absent
    /// optional values.
    pub fn to_blob(&self) -> String {
        let wire = WireBlob {
            mp_uri: self.mp_uri.to_string(),
            audio_render_contexts: &self.audio_render_contexts,
            video_render_contexts: &self.video_render_contexts,
            audio_source_contexts: &self.audio_source_contexts,
            video_source_contexts: &self.video_source_contexts,
            data_render_contexts: self.data_render_contexts.as_deref(),
            data_source_contexts: self.data_source_contexts.as_deref(),
            supported_audio_format: self.supported_audio_format.as_str(),
            video_sink_encoding_formats: self
                .video_sink_encoding_formats
                .iter()
                .map(VideoFormat::as_str)
                .collect(),
            mp_media_session_id: self.mp_media_session_id,
            region_affinity: self.region_affinity.as_deref(),
            skype_media_bots_version: self.skype_media_bots_version.as_deref(),
            media_stack_version: self.media_stack_version.as_deref(),
            mp_version: self.mp_version.as_deref(),
            call_id: self.call_id,
        };
        // Serializing strings, uuids and options into a String cannot fail.
        serde_json::to_string(&wire).expect("blob serialization is infallible")
    }

    /// The blob as the JSON string literal it travels as inside `mediaConfig` (escaped once more).
    pub fn to_json_string_literal(&self) -> String {
        Value::String(self.to_blob()).to_string()
    }

    /// Every context id in the blob, each with the list it sits in.
    pub fn contexts(&self) -> impl Iterator<Item = (&'static str, Uuid)> + '_ {
        let lists: [(&'static str, &[Uuid]); 6] = [
            ("audioRenderContexts", &self.audio_render_contexts),
            ("videoRenderContexts", &self.video_render_contexts),
            ("audioSourceContexts", &self.audio_source_contexts),
            ("videoSourceContexts", &self.video_source_contexts),
            (
                "dataRenderContexts",
                self.data_render_contexts.as_deref().unwrap_or(&[]),
            ),
            (
                "dataSourceContexts",
                self.data_source_contexts.as_deref().unwrap_or(&[]),
            ),
        ];
        lists
            .into_iter()
            .flat_map(|(name, ids)| ids.iter().map(move |id| (name, *id)))
    }
}

/// Why a blob was refused. Every variant that concerns one field names it (see [`BlobError::field`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// The input is larger than [`MAX_BLOB_BYTES`].
    #[error("blob is {len} bytes; the limit is {limit}")]
    TooLarge {
        /// Size of the input.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The input is not valid JSON (or not a valid JSON string literal).
    #[error("not valid JSON: {0}")]
    Syntax(String),
    /// The blob is valid JSON but not an object.
    #[error("blob must be a JSON object, found {0}")]
    NotAnObject(&'static str),
    /// A required field is absent or `null`.
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    /// A field has the wrong JSON type.
    #[error("field `{field}` must be {expected}, found {found}")]
    WrongType {
        /// Path of the field, such as `audioRenderContexts[1]`.
        field: String,
        /// What was expected.
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
    },
    /// A field that holds an id is not a UUID.
    #[error("field `{field}` is not a UUID: {value:?}")]
    InvalidUuid {
        /// Path of the field.
        field: String,
        /// The offending text, shortened to 64 characters.
        value: String,
    },
    /// `mpUri` is not `net.tcp://host:port/MediaProcessor`.
    #[error("field `mpUri` {value:?} is invalid: {reason}")]
    InvalidMpUri {
        /// The offending text, shortened to 64 characters.
        value: String,
        /// Why.
        reason: MpUriError,
    },
    /// `supportedAudioFormat` names no known format.
    #[error("field `supportedAudioFormat` {0:?} is not Pcm16K or Pcm44KStereo")]
    UnknownAudioFormat(String),
    /// The same context id appears twice.
    #[error("field `{second}` repeats context id {id} already listed in `{first}`")]
    DuplicateContext {
        /// The repeated id.
        id: Uuid,
        /// Where it first appears.
        first: String,
        /// Where it appears again.
        second: String,
    },
    /// A list or string is longer than its limit.
    #[error("field `{field}` has {len} entries or characters; the limit is {limit}")]
    TooLong {
        /// Path of the field.
        field: String,
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The input is a call or answer body without `mediaConfig.blob`.
    #[error("the payload has no mediaConfig.blob")]
    NoBlobInPayload,
}

impl BlobError {
    /// The field the error is about, when it is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            BlobError::Missing(f) => Some(f),
            BlobError::WrongType { field, .. }
            | BlobError::InvalidUuid { field, .. }
            | BlobError::DuplicateContext { second: field, .. }
            | BlobError::TooLong { field, .. } => Some(field),
            BlobError::InvalidMpUri { .. } => Some("mpUri"),
            BlobError::UnknownAudioFormat(_) => Some("supportedAudioFormat"),
            BlobError::TooLarge { .. }
            | BlobError::Syntax(_)
            | BlobError::NotAnObject(_)
            | BlobError::NoBlobInPayload => None,
        }
    }
}

/// Parses a blob given as raw JSON text (`{"mpUri":…}`), as the JSON string literal it travels as
/// (`"{\"mpUri\":…}"`), or as the escaped text between those quotes (`{\"mpUri\":…}`, as the
/// documentation prints it).
///
/// Unknown fields are accepted and listed in [`BlobConfig::unknown_fields`]; missing optional
/// fields and `null` entries in context lists (older libraries write `[null]`) are accepted.
/// Wrong types, malformed UUIDs, a bad mpUri, repeated context ids and oversized input are refused.
pub fn parse(input: &str) -> Result<BlobConfig, BlobError> {
    match decode(input)? {
        Value::Object(map) => from_object(&map),
        other => Err(BlobError::NotAnObject(type_name(&other))),
    }
}

/// Parses a blob, or finds it in a call or answer body (`mediaConfig.blob`) and parses that.
/// This is what a user pasting "whatever the bot sent" wants.
pub fn parse_blob_or_body(input: &str) -> Result<BlobConfig, BlobError> {
    let map = match decode(input)? {
        Value::Object(map) => map,
        other => return Err(BlobError::NotAnObject(type_name(&other))),
    };
    if map.contains_key("mpUri") || !map.contains_key("mediaConfig") {
        return from_object(&map);
    }
    match map.get("mediaConfig").and_then(|m| m.get("blob")) {
        Some(Value::String(blob)) => parse(blob),
        Some(other) => Err(BlobError::WrongType {
            field: "mediaConfig.blob".into(),
            expected: "a string",
            found: type_name(other),
        }),
        None => Err(BlobError::NoBlobInPayload),
    }
}

/// Turns any of the accepted text forms into a JSON value, decoding at most one string layer so
/// nesting cannot make us loop.
fn decode(input: &str) -> Result<Value, BlobError> {
    if input.len() > MAX_BLOB_BYTES {
        return Err(BlobError::TooLarge {
            len: input.len(),
            limit: MAX_BLOB_BYTES,
        });
    }
    let text = input.trim();
    let syntax = |e: serde_json::Error| BlobError::Syntax(e.to_string());
    if text.starts_with("{\\\"") {
        // The escaped form the documentation prints: add the quotes it travels in.
        let unescaped: String = serde_json::from_str(&format!("\"{text}\"")).map_err(syntax)?;
        return serde_json::from_str(&unescaped).map_err(syntax);
    }
    match serde_json::from_str(text).map_err(syntax)? {
        Value::String(inner) => serde_json::from_str(&inner).map_err(syntax),
        value => Ok(value),
    }
}

fn from_object(map: &Map<String, Value>) -> Result<BlobConfig, BlobError> {
    let mp_uri_text = required_str(map, "mpUri")?;
    let mp_uri = mp_uri_text
        .parse::<MpUri>()
        .map_err(|reason| BlobError::InvalidMpUri {
            value: shorten(mp_uri_text),
            reason,
        })?;
    let supported_audio_format = match optional_str(map, "supportedAudioFormat")? {
        None => AudioFormat::Pcm16K,
        // Matched exactly: the blob is machine-written, so `pcm16k` would be a bug somewhere.
        Some(name) => AudioFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == name)
            .ok_or_else(|| BlobError::UnknownAudioFormat(shorten(name)))?,
    };
    let config = BlobConfig {
        mp_uri,
        audio_render_contexts: context_list(map, "audioRenderContexts")?.unwrap_or_default(),
        video_render_contexts: context_list(map, "videoRenderContexts")?.unwrap_or_default(),
        audio_source_contexts: context_list(map, "audioSourceContexts")?.unwrap_or_default(),
        video_source_contexts: context_list(map, "videoSourceContexts")?.unwrap_or_default(),
        data_render_contexts: context_list(map, "dataRenderContexts")?,
        data_source_contexts: context_list(map, "dataSourceContexts")?,
        supported_audio_format,
        video_sink_encoding_formats: video_formats(map)?,
        mp_media_session_id: uuid_field(
            required(map, "mpMediaSessionId")?,
            "mpMediaSessionId".into(),
        )?,
        region_affinity: optional_text(map, "regionAffinity")?,
        skype_media_bots_version: optional_text(map, "skypeMediaBotsVersion")?,
        media_stack_version: optional_text(map, "mediaStackVersion")?,
        mp_version: optional_text(map, "mpVersion")?,
        call_id: match optional(map, "callId") {
            None => None,
            Some(v) => Some(uuid_field(v, "callId".into())?),
        },
        unknown_fields: map
            .keys()
            .filter(|k| !FIELDS.contains(&k.as_str()))
            .map(|k| shorten(k))
            .collect(),
    };
    check_unique_contexts(&config)?;
    Ok(config)
}

fn check_unique_contexts(config: &BlobConfig) -> Result<(), BlobError> {
    let mut seen: HashMap<Uuid, &'static str> = HashMap::new();
    for (list, id) in config.contexts() {
        if let Some(first) = seen.insert(id, list) {
            return Err(BlobError::DuplicateContext {
                id,
                first: first.to_owned(),
                second: list.to_owned(),
            });
        }
    }
    Ok(())
}

/// A present, non-null field.
fn optional<'a>(map: &'a Map<String, Value>, field: &'static str) -> Option<&'a Value> {
    map.get(field).filter(|v| !v.is_null())
}

fn required<'a>(map: &'a Map<String, Value>, field: &'static str) -> Result<&'a Value, BlobError> {
    optional(map, field).ok_or(BlobError::Missing(field))
}

fn required_str<'a>(
    map: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, BlobError> {
    let v = required(map, field)?;
    v.as_str()
        .ok_or_else(|| wrong_type(field.into(), "a string", v))
}

fn optional_str<'a>(
    map: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, BlobError> {
    optional(map, field)
        .map(|v| {
            v.as_str()
                .ok_or_else(|| wrong_type(field.into(), "a string", v))
        })
        .transpose()
}

fn optional_text(
    map: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, BlobError> {
    let Some(s) = optional_str(map, field)? else {
        return Ok(None);
    };
    let len = s.chars().count();
    if len > MAX_TEXT_LEN {
        return Err(BlobError::TooLong {
            field: field.into(),
            len,
            limit: MAX_TEXT_LEN,
        });
    }
    Ok(Some(s.to_owned()))
}

/// A context list: `null` or absent is `None`; `null` entries are skipped.
fn context_list(
    map: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<Vec<Uuid>>, BlobError> {
    let Some(v) = optional(map, field) else {
        return Ok(None);
    };
    let items = v
        .as_array()
        .ok_or_else(|| wrong_type(field.into(), "an array of UUID strings", v))?;
    if items.len() > MAX_CONTEXTS_PER_LIST {
        return Err(BlobError::TooLong {
            field: field.into(),
            len: items.len(),
            limit: MAX_CONTEXTS_PER_LIST,
        });
    }
    items
        .iter()
        .enumerate()
        .filter(|(_, item)| !item.is_null())
        .map(|(i, item)| uuid_field(item, format!("{field}[{i}]")))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn video_formats(map: &Map<String, Value>) -> Result<Vec<VideoFormat>, BlobError> {
    const FIELD: &str = "videoSinkEncodingFormats";
    let Some(v) = optional(map, FIELD) else {
        return Ok(Vec::new());
    };
    let items = v
        .as_array()
        .ok_or_else(|| wrong_type(FIELD.into(), "an array of strings", v))?;
    if items.len() > MAX_VIDEO_FORMATS {
        return Err(BlobError::TooLong {
            field: FIELD.into(),
            len: items.len(),
            limit: MAX_VIDEO_FORMATS,
        });
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = format!("{FIELD}[{i}]");
            let name = item
                .as_str()
                .ok_or_else(|| wrong_type(field.clone(), "a string", item))?;
            if name.is_empty() || name.chars().count() > MAX_TEXT_LEN {
                return Err(BlobError::TooLong {
                    field,
                    len: name.chars().count(),
                    limit: MAX_TEXT_LEN,
                });
            }
            Ok(VideoFormat::from_blob_name(name))
        })
        .collect()
}

fn uuid_field(v: &Value, field: String) -> Result<Uuid, BlobError> {
    let s = v
        .as_str()
        .ok_or_else(|| wrong_type(field.clone(), "a UUID string", v))?;
    // Only the hyphenated form: uuid::parse_str also takes braced, URN and simple forms, which
    // the service never writes and which would not survive a round trip unchanged.
    if s.len() != 36 {
        return Err(BlobError::InvalidUuid {
            field,
            value: shorten(s),
        });
    }
    Uuid::try_parse(s).map_err(|_| BlobError::InvalidUuid {
        field,
        value: shorten(s),
    })
}

fn wrong_type(field: String, expected: &'static str, found: &Value) -> BlobError {
    BlobError::WrongType {
        field,
        expected,
        found: type_name(found),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
