//! The media session of a Microsoft Graph calling bot with application-hosted media, and the
//! serialized `appHostedMediaConfig.blob` that announces it to the calling service.
//!
//! ```
//! use media_session::{AudioFormat, AudioSocketSettings, MediaSession, StreamDirection};
//!
//! let mp_uri = "net.tcp://bot.example.com:18732/MediaProcessor".parse()?;
//! let session = MediaSession::builder(mp_uri)
//!     .audio(AudioSocketSettings::new(StreamDirection::SendReceive, AudioFormat::Pcm16K))
//!     .build()?;
//! let blob = session.blob(); // goes into mediaConfig.blob
//! assert_eq!(media_session::parse(&blob)?, session.blob_config());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! This crate also owns the small vocabulary the rest of mediabot shares: [`AudioFormat`],
//! [`StreamDirection`] and [`SourceId`].
//!
//! # Panics
//! Nothing here panics on input: blobs come from the network and from users' files, so every
//! failure is a typed [`BlobError`] naming the field at fault.

mod blob;
mod direction;
mod format;
mod mp_uri;
mod session;
mod source_id;
mod text;

pub use blob::{
    BlobConfig, BlobError, EngineVersions, FIELDS, MAX_BLOB_BYTES, MAX_CONTEXTS_PER_LIST,
    MAX_TEXT_LEN, MAX_VIDEO_FORMATS, parse, parse_blob_or_body,
};
pub use direction::{StreamDirection, UnknownDirection};
pub use format::{AudioFormat, FRAME_MS, FRAMES_PER_SECOND, UnknownFormat, VideoFormat};
pub use mp_uri::{MpUri, MpUriError};
pub use session::{
    AudioSocketSettings, MAX_VIDEO_SOCKETS, MediaSession, MediaSessionBuilder, SessionError,
    SocketContexts, VbssSocketSettings, VideoSocketSettings,
};
pub use source_id::{InvalidSourceId, SourceId};
