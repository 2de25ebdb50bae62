//! Audio and video formats that a media session announces.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Duration of one audio frame in milliseconds. Every format in the blob exchanges 20 ms frames.
pub const FRAME_MS: u32 = 20;

/// Audio frames per second (1000 / [`FRAME_MS`]).
pub const FRAMES_PER_SECOND: u32 = 1000 / FRAME_MS;

/// PCM format of the audio the bot exchanges with the engine, as named in the blob's
/// `supportedAudioFormat` field.
///
/// Samples are signed 16-bit little-endian; stereo samples are interleaved left, right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum AudioFormat {
    /// 16 kHz, mono: 320 samples = 640 bytes per 20 ms frame.
    #[default]
    Pcm16K,
    /// 44.1 kHz, stereo: 882 samples per channel = 3528 bytes per 20 ms frame.
    Pcm44KStereo,
}

impl AudioFormat {
    /// Every format, in the order the official library lists them.
    pub const ALL: [AudioFormat; 2] = [AudioFormat::Pcm16K, AudioFormat::Pcm44KStereo];

    /// Sample rate in Hz.
    pub const fn sample_rate(self) -> u32 {
        match self {
            AudioFormat::Pcm16K => 16_000,
            AudioFormat::Pcm44KStereo => 44_100,
        }
    }

    /// Number of interleaved channels.
    pub const fn channels(self) -> u16 {
        match self {
            AudioFormat::Pcm16K => 1,
            AudioFormat::Pcm44KStereo => 2,
        }
    }

    /// Samples per channel in one 20 ms frame.
    pub const fn samples_per_channel_per_frame(self) -> usize {
        (self.sample_rate() / FRAMES_PER_SECOND) as usize
    }

    /// Interleaved samples (all channels) in one 20 ms frame.
    pub const fn samples_per_frame(self) -> usize {
        self.samples_per_channel_per_frame() * self.channels() as usize
    }

    /// Bytes in one 20 ms frame of s16le audio.
    pub const fn bytes_per_frame(self) -> usize {
        self.samples_per_frame() * 2
    }

    /// The name the blob uses (`Pcm16K`, `Pcm44KStereo`).
    pub const fn as_str(self) -> &'static str {
        match self {
            AudioFormat::Pcm16K => "Pcm16K",
            AudioFormat::Pcm44KStereo => "Pcm44KStereo",
        }
    }
}

impl fmt::Display for AudioFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned when a string names no known format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format {0:?}")]
pub struct UnknownFormat(pub String);

impl FromStr for AudioFormat {
    type Err = UnknownFormat;

    /// Accepts the blob names and the command-line spellings `pcm16k`, `pcm44k-stereo`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "pcm16k" => Ok(AudioFormat::Pcm16K),
            "pcm44kstereo" | "pcm44k-stereo" => Ok(AudioFormat::Pcm44KStereo),
            _ => Err(UnknownFormat(s.to_owned())),
        }
    }
}

/// Encoding format of a video sink, as listed in the blob's `videoSinkEncodingFormats`.
///
/// mediabot only announces video in the blob; it has no video media path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VideoFormat {
    /// H.264 encoded video.
    H264,
    /// Raw YUV (NV12) frames.
    Yuv,
    /// A format named by a newer or older library; kept so a parsed blob loses nothing.
    Other(String),
}

impl VideoFormat {
    /// The name the blob uses.
    pub fn as_str(&self) -> &str {
        match self {
            VideoFormat::H264 => "H264",
            VideoFormat::Yuv => "Yuv",
            VideoFormat::Other(name) => name,
        }
    }

    /// Maps a blob name to a format; names other than `H264` and `Yuv` become [`VideoFormat::Other`].
    pub fn from_blob_name(name: &str) -> VideoFormat {
        match name {
            "H264" => VideoFormat::H264,
            "Yuv" => VideoFormat::Yuv,
            other => VideoFormat::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for VideoFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes_match_the_documented_figures() {
        assert_eq!(AudioFormat::Pcm16K.samples_per_frame(), 320);
        assert_eq!(AudioFormat::Pcm16K.bytes_per_frame(), 640);
        assert_eq!(
            AudioFormat::Pcm44KStereo.samples_per_channel_per_frame(),
            882
        );
        assert_eq!(AudioFormat::Pcm44KStereo.bytes_per_frame(), 3528);
    }

    #[test]
    fn parses_blob_and_cli_spellings() {
        for f in AudioFormat::ALL {
            assert_eq!(f.as_str().parse::<AudioFormat>(), Ok(f));
        }
        assert_eq!("pcm44k-stereo".parse(), Ok(AudioFormat::Pcm44KStereo));
        assert!("pcm8k".parse::<AudioFormat>().is_err());
    }
}
