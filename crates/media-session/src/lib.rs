//! The media session of a Microsoft Graph calling bot with application-hosted media, and the
//! serialized `appHostedMediaConfig.blob` that announces it to the calling service.
//!
//! This crate also owns the small vocabulary the rest of mediabot shares: [`AudioFormat`],
//! [`StreamDirection`] and [`SourceId`].
//!
//! # Panics
//! Nothing in this crate panics on input: blobs come from the network and from users' files, so
//! every failure is a typed [`BlobError`].

mod direction;
mod format;
mod mp_uri;
mod source_id;

pub use direction::{StreamDirection, UnknownDirection};
pub use format::{AudioFormat, FRAME_MS, FRAMES_PER_SECOND, UnknownFormat, VideoFormat};
pub use mp_uri::{MpUri, MpUriError};
pub use source_id::{InvalidSourceId, SourceId};
