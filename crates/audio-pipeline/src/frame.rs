//! Frame types: one 20 ms block of PCM audio and the sample layout it is in.

use media_session::{AudioFormat, FRAMES_PER_SECOND, SourceId};

/// Timestamps count 100 ns ticks, as the official library's buffers do.
pub const TICKS_PER_SECOND: u64 = 10_000_000;

/// Ticks in one 20 ms frame.
pub const TICKS_PER_FRAME: u64 = TICKS_PER_SECOND / FRAMES_PER_SECOND as u64;

/// The Opus side of the pipeline always runs at this rate.
pub const OPUS_RATE: u32 = 48_000;

/// Largest frame any supported layout produces: 20 ms of 48 kHz stereo.
///
/// Frames store their samples inline with this capacity so they can travel through bounded
/// queues without a heap allocation per frame.
pub const MAX_FRAME_SAMPLES: usize = (OPUS_RATE / FRAMES_PER_SECOND) as usize * 2;

/// Sample layout of app-side PCM: signed 16-bit, interleaved channels.
///
/// [`AudioFormat`] names the two layouts the Graph blob announces; apps that feed the engine
/// directly may also use 8, 24, 32 or 48 kHz, which is why this is a separate, wider type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PcmSpec {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Interleaved channels (1 or 2).
    pub channels: u16,
}

impl PcmSpec {
    /// Rates the pipeline accepts on the app side.
    pub const SUPPORTED_RATES: [u32; 6] = [8_000, 16_000, 24_000, 32_000, 44_100, 48_000];

    /// A layout, if the rate and channel count are supported.
    pub fn new(sample_rate: u32, channels: u16) -> Option<PcmSpec> {
        (Self::SUPPORTED_RATES.contains(&sample_rate) && (channels == 1 || channels == 2))
            .then_some(PcmSpec {
                sample_rate,
                channels,
            })
    }

    /// Samples per channel in a 20 ms frame.
    pub const fn samples_per_channel_per_frame(self) -> usize {
        (self.sample_rate / FRAMES_PER_SECOND) as usize
    }

    /// Interleaved samples in a 20 ms frame.
    pub const fn samples_per_frame(self) -> usize {
        self.samples_per_channel_per_frame() * self.channels as usize
    }

    /// Bytes in a 20 ms s16le frame.
    pub const fn bytes_per_frame(self) -> usize {
        self.samples_per_frame() * 2
    }
}

impl From<AudioFormat> for PcmSpec {
    fn from(f: AudioFormat) -> Self {
        PcmSpec {
            sample_rate: f.sample_rate(),
            channels: f.channels(),
        }
    }
}

/// One 20 ms block of audio.
///
/// The samples live inline (see [`MAX_FRAME_SAMPLES`]); [`AudioFrame::samples`] returns the
/// used part. Moving a frame copies a few kilobytes, which costs far less than a heap allocation
/// and keeps the real-time threads allocation-free.
#[derive(Clone)]
pub struct AudioFrame {
    data: [i16; MAX_FRAME_SAMPLES],
    len: u16,
    /// Layout of the samples.
    pub spec: PcmSpec,
    /// Capture or playout time in 100 ns ticks.
    pub timestamp: u64,
    /// Whose audio this is ([`SourceId::NONE`] for a mix or the bot's own audio).
    pub source: SourceId,
    /// True when the frame carries no audible signal (digital silence, or nothing was received).
    pub is_silence: bool,
}

impl AudioFrame {
    /// A silent frame of the given layout.
    pub fn silence(spec: PcmSpec, timestamp: u64, source: SourceId) -> AudioFrame {
        AudioFrame {
            data: [0; MAX_FRAME_SAMPLES],
            len: spec.samples_per_frame().min(MAX_FRAME_SAMPLES) as u16,
            spec,
            timestamp,
            source,
            is_silence: true,
        }
    }

    /// A frame holding `samples`; extra samples beyond one frame are ignored and missing ones
    /// are zero. `is_silence` is computed from the samples.
    pub fn from_samples(
        spec: PcmSpec,
        samples: &[i16],
        timestamp: u64,
        source: SourceId,
    ) -> AudioFrame {
        let mut f = AudioFrame::silence(spec, timestamp, source);
        f.copy_from(samples);
        f
    }

    /// Overwrites the samples (and recomputes `is_silence`) without touching the metadata.
    pub fn copy_from(&mut self, samples: &[i16]) {
        let n = self.len as usize;
        let k = samples.len().min(n);
        self.data[..k].copy_from_slice(&samples[..k]);
        self.data[k..n].fill(0);
        self.is_silence = self.data[..n].iter().all(|&s| s == 0);
    }

    /// The frame's samples, interleaved.
    pub fn samples(&self) -> &[i16] {
        &self.data[..self.len as usize]
    }

    /// Mutable access to the samples. Callers that change them should update `is_silence`.
    pub fn samples_mut(&mut self) -> &mut [i16] {
        &mut self.data[..self.len as usize]
    }

    /// The samples as s16le bytes, the wire layout of the official library's buffers.
    pub fn write_le_bytes(&self, out: &mut Vec<u8>) {
        out.reserve(self.len as usize * 2);
        for s in self.samples() {
            out.extend_from_slice(&s.to_le_bytes());
        }
    }
}

impl std::fmt::Debug for AudioFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioFrame")
            .field("spec", &self.spec)
            .field("samples", &self.len)
            .field("timestamp", &self.timestamp)
            .field("source", &self.source)
            .field("is_silence", &self.is_silence)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_format() {
        let s: PcmSpec = AudioFormat::Pcm16K.into();
        assert_eq!(s.samples_per_frame(), 320);
        assert_eq!(s.bytes_per_frame(), 640);
        let s: PcmSpec = AudioFormat::Pcm44KStereo.into();
        assert_eq!(s.samples_per_frame(), 1764);
        assert_eq!(TICKS_PER_FRAME, 200_000);
        assert!(PcmSpec::new(48_000, 2).unwrap().samples_per_frame() <= MAX_FRAME_SAMPLES);
        assert!(PcmSpec::new(11_025, 1).is_none());
        assert!(PcmSpec::new(16_000, 3).is_none());
    }

    #[test]
    fn silence_flag_follows_samples() {
        let spec = PcmSpec::new(16_000, 1).unwrap();
        let f = AudioFrame::from_samples(spec, &[0, 0, 1], 7, SourceId(3));
        assert!(!f.is_silence);
        assert_eq!(f.samples().len(), 320);
        assert_eq!(f.samples()[2], 1);
        let f = AudioFrame::from_samples(spec, &[0; 400], 7, SourceId(3));
        assert!(f.is_silence);
    }
}
