//! The media session a bot hosts: its sockets, their contexts, and where its media processor listens.

use uuid::Uuid;

use crate::blob::{BlobConfig, EngineVersions};
use crate::{AudioFormat, MpUri, StreamDirection, VideoFormat};

/// Most video sockets one session may have (the official library's limit).
pub const MAX_VIDEO_SOCKETS: usize = 10;

/// Settings of the session's audio socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioSocketSettings {
    /// Which way audio flows for the bot.
    pub direction: StreamDirection,
    /// PCM format the application exchanges.
    pub format: AudioFormat,
    /// Deliver each speaker's audio separately (mediabot delivers the mix as well).
    ///
    /// The blob has no field for this; it stays in the session.
    pub receive_unmixed: bool,
}

impl Default for AudioSocketSettings {
    fn default() -> Self {
        AudioSocketSettings::new(StreamDirection::SendReceive, AudioFormat::Pcm16K)
    }
}

impl AudioSocketSettings {
    /// Audio in `direction` and `format`, mixed only.
    pub fn new(direction: StreamDirection, format: AudioFormat) -> Self {
        AudioSocketSettings {
            direction,
            format,
            receive_unmixed: false,
        }
    }

    /// Sets whether per-speaker (unmixed) audio is delivered.
    pub fn receive_unmixed(mut self, yes: bool) -> Self {
        self.receive_unmixed = yes;
        self
    }
}

/// Settings of one video socket. mediabot announces video in the blob but has no video media path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoSocketSettings {
    /// Which way video flows for the bot.
    pub direction: StreamDirection,
    /// Encoding formats the socket accepts when it receives (`H264`, `Yuv`).
    pub receive_formats: Vec<VideoFormat>,
}

impl Default for VideoSocketSettings {
    fn default() -> Self {
        VideoSocketSettings {
            direction: StreamDirection::ReceiveOnly,
            receive_formats: vec![VideoFormat::H264],
        }
    }
}

/// Settings of the receive-only video-based screen sharing (VBSS) socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VbssSocketSettings {
    /// Encoding formats accepted for shared screens.
    pub receive_formats: Vec<VideoFormat>,
}

impl Default for VbssSocketSettings {
    fn default() -> Self {
        VbssSocketSettings {
            receive_formats: vec![VideoFormat::H264],
        }
    }
}

/// Context ids of one socket: a render context exists when the bot receives, a source context when
/// it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SocketContexts {
    /// Id of the sink that receives media, if the direction receives.
    pub render: Option<Uuid>,
    /// Id of the source that sends media, if the direction sends.
    pub source: Option<Uuid>,
}

impl SocketContexts {
    fn for_direction(direction: StreamDirection, new_id: &mut dyn FnMut() -> Uuid) -> Self {
        SocketContexts {
            render: direction.receives().then(&mut *new_id),
            source: direction.sends().then(&mut *new_id),
        }
    }
}

/// Why a session could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// More than [`MAX_VIDEO_SOCKETS`] video sockets.
    #[error("{0} video sockets requested; at most {MAX_VIDEO_SOCKETS} are allowed")]
    TooManyVideoSockets(usize),
    /// A video socket names a format other than H264 or Yuv.
    #[error("video format {0:?} is not supported (use H264 or Yuv)")]
    UnsupportedVideoFormat(String),
    /// A receiving video or VBSS socket has no format to receive in.
    #[error("a receiving video socket needs at least one receive format")]
    NoVideoFormat,
}

/// A bot's media session: sockets, their fresh context ids, the media processor address and the
/// call it belongs to. [`MediaSession::blob`] serializes what the calling service must know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSession {
    mp_uri: MpUri,
    media_session_id: Uuid,
    audio: AudioSocketSettings,
    audio_contexts: SocketContexts,
    video: Vec<(VideoSocketSettings, SocketContexts)>,
    vbss: Option<(VbssSocketSettings, Uuid)>,
    call_id: Option<Uuid>,
    region_affinity: Option<String>,
    versions: EngineVersions,
}

/// Builds a [`MediaSession`]; see [`MediaSession::builder`].
#[derive(Debug, Clone)]
pub struct MediaSessionBuilder {
    mp_uri: MpUri,
    audio: AudioSocketSettings,
    video: Vec<VideoSocketSettings>,
    vbss: Option<VbssSocketSettings>,
    call_id: Option<Uuid>,
    region_affinity: Option<String>,
    versions: EngineVersions,
}

impl MediaSessionBuilder {
    /// Sets the audio socket (default: sendReceive, Pcm16K, mixed only).
    pub fn audio(mut self, settings: AudioSocketSettings) -> Self {
        self.audio = settings;
        self
    }

    /// Adds a video socket (at most [`MAX_VIDEO_SOCKETS`]).
    pub fn add_video(mut self, settings: VideoSocketSettings) -> Self {
        self.video.push(settings);
        self
    }

    /// Adds the receive-only screen sharing socket.
    pub fn vbss(mut self, settings: VbssSocketSettings) -> Self {
        self.vbss = Some(settings);
        self
    }

    /// Sets the call id, when it is already known (an incoming call, say).
    pub fn call_id(mut self, call_id: Uuid) -> Self {
        self.call_id = Some(call_id);
        self
    }

    /// Sets the preferred region.
    pub fn region_affinity(mut self, region: impl Into<String>) -> Self {
        self.region_affinity = Some(region.into());
        self
    }

    /// Overrides the engine version strings written in the blob.
    pub fn versions(mut self, versions: EngineVersions) -> Self {
        self.versions = versions;
        self
    }

    /// Builds the session with fresh random (v4) ids.
    pub fn build(self) -> Result<MediaSession, SessionError> {
        self.build_with_ids(&mut Uuid::new_v4)
    }

    /// Builds the session taking every id (session id first, then contexts) from `new_id`, so
    /// tests and replays can be deterministic. The ids must be distinct for a valid blob.
    pub fn build_with_ids(
        self,
        new_id: &mut dyn FnMut() -> Uuid,
    ) -> Result<MediaSession, SessionError> {
        if self.video.len() > MAX_VIDEO_SOCKETS {
            return Err(SessionError::TooManyVideoSockets(self.video.len()));
        }
        let receive_formats = self
            .video
            .iter()
            .filter(|v| v.direction.receives())
            .map(|v| &v.receive_formats)
            .chain(self.vbss.iter().map(|v| &v.receive_formats));
        for formats in receive_formats {
            if formats.is_empty() {
                return Err(SessionError::NoVideoFormat);
            }
            if let Some(VideoFormat::Other(name)) =
                formats.iter().find(|f| matches!(f, VideoFormat::Other(_)))
            {
                return Err(SessionError::UnsupportedVideoFormat(name.clone()));
            }
        }

        let media_session_id = new_id();
        let audio_contexts = SocketContexts::for_direction(self.audio.direction, new_id);
        let video = self
            .video
            .into_iter()
            .map(|v| {
                let contexts = SocketContexts::for_direction(v.direction, new_id);
                (v, contexts)
            })
            .collect();
        let vbss = self.vbss.map(|v| (v, new_id()));
        Ok(MediaSession {
            mp_uri: self.mp_uri,
            media_session_id,
            audio: self.audio,
            audio_contexts,
            video,
            vbss,
            call_id: self.call_id,
            region_affinity: self.region_affinity,
            versions: self.versions,
        })
    }
}

impl MediaSession {
    /// Starts a session whose media processor listens at `mp_uri`.
    pub fn builder(mp_uri: MpUri) -> MediaSessionBuilder {
        MediaSessionBuilder {
            mp_uri,
            audio: AudioSocketSettings::default(),
            video: Vec::new(),
            vbss: None,
            call_id: None,
            region_affinity: None,
            versions: EngineVersions::default(),
        }
    }

    /// Where the media processor listens.
    pub fn mp_uri(&self) -> &MpUri {
        &self.mp_uri
    }

    /// The `mpMediaSessionId` the service presents when it connects.
    pub fn media_session_id(&self) -> Uuid {
        self.media_session_id
    }

    /// The audio socket's settings.
    pub fn audio(&self) -> &AudioSocketSettings {
        &self.audio
    }

    /// The audio socket's context ids.
    pub fn audio_contexts(&self) -> SocketContexts {
        self.audio_contexts
    }

    /// The video sockets and their contexts, in the order they were added.
    pub fn video(&self) -> impl ExactSizeIterator<Item = (&VideoSocketSettings, SocketContexts)> {
        self.video.iter().map(|(s, c)| (s, *c))
    }

    /// The screen sharing socket and its render context.
    pub fn vbss(&self) -> Option<(&VbssSocketSettings, Uuid)> {
        self.vbss.as_ref().map(|(s, id)| (s, *id))
    }

    /// The call this session belongs to, once known.
    pub fn call_id(&self) -> Option<Uuid> {
        self.call_id
    }

    /// Records the call id (outgoing calls learn it from the create-call response).
    pub fn set_call_id(&mut self, call_id: Uuid) {
        self.call_id = Some(call_id);
    }

    /// The preferred region, if set.
    pub fn region_affinity(&self) -> Option<&str> {
        self.region_affinity.as_deref()
    }

    /// What the blob carries of this session.
    pub fn blob_config(&self) -> BlobConfig {
        let video_render_contexts = self
            .video
            .iter()
            .filter_map(|(_, c)| c.render)
            .chain(self.vbss.iter().map(|(_, id)| *id))
            .collect();
        let mut video_sink_encoding_formats: Vec<VideoFormat> = Vec::new();
        let receiving_formats = self
            .video
            .iter()
            .filter(|(s, _)| s.direction.receives())
            .flat_map(|(s, _)| &s.receive_formats)
            .chain(self.vbss.iter().flat_map(|(s, _)| &s.receive_formats));
        for format in receiving_formats {
            if !video_sink_encoding_formats.contains(format) {
                video_sink_encoding_formats.push(format.clone());
            }
        }
        BlobConfig {
            mp_uri: self.mp_uri.clone(),
            audio_render_contexts: self.audio_contexts.render.into_iter().collect(),
            video_render_contexts,
            audio_source_contexts: self.audio_contexts.source.into_iter().collect(),
            video_source_contexts: self.video.iter().filter_map(|(_, c)| c.source).collect(),
            data_render_contexts: None,
            data_source_contexts: None,
            supported_audio_format: self.audio.format,
            video_sink_encoding_formats,
            mp_media_session_id: self.media_session_id,
            region_affinity: self.region_affinity.clone(),
            skype_media_bots_version: Some(self.versions.media_bots.clone()),
            media_stack_version: Some(self.versions.media_stack.clone()),
            mp_version: Some(self.versions.media_processor.clone()),
            call_id: self.call_id,
            unknown_fields: Vec::new(),
        }
    }

    /// The string that goes into `mediaConfig.blob`.
    pub fn blob(&self) -> String {
        self.blob_config().to_blob()
    }
}
