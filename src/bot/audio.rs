//! A call's audio as the application sees it: frames in, PCM out.

use std::sync::Arc;

use audio_pipeline::{ActiveSpeakers, AudioFrame, CallMedia, PcmSpec, SendStatus};
use tokio::sync::mpsc;

/// The PCM layout the application reads and writes. The network side is always Opus at 48 kHz;
/// the engine converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PcmFormat {
    /// 16 kHz mono, 320 samples per 20 ms frame (the official library's default).
    #[default]
    Pcm16K,
    /// 44.1 kHz stereo, 882 samples per channel per 20 ms frame.
    Pcm44KStereo,
    /// Any rate the engine supports (`PcmSpec::SUPPORTED_RATES`), mono or stereo.
    Other(PcmSpec),
}

impl PcmFormat {
    /// The engine's description of the layout.
    pub fn spec(self) -> PcmSpec {
        match self {
            PcmFormat::Pcm16K => PcmSpec::new(16_000, 1),
            PcmFormat::Pcm44KStereo => PcmSpec::new(44_100, 2),
            PcmFormat::Other(spec) => Some(spec),
        }
        .unwrap_or_else(|| unreachable!("16 kHz mono and 44.1 kHz stereo are supported"))
    }

    /// The blob's audio format closest to this one (the blob knows only the two official ones).
    pub(crate) fn blob_format(self) -> media_session::AudioFormat {
        if self.spec().sample_rate >= 44_100 && self.spec().channels == 2 {
            media_session::AudioFormat::Pcm44KStereo
        } else {
            media_session::AudioFormat::Pcm16K
        }
    }
}

/// One 20 ms tick of received audio.
#[derive(Debug, Clone)]
pub enum ReceivedAudio {
    /// One participant's own audio (only participants who had audio this tick).
    Unmixed(AudioFrame),
    /// Everyone mixed, with the active speakers, loudest first; delivered every tick after the
    /// unmixed frames of the same tick.
    Mixed {
        /// The mix (`is_silence` when nobody had audio).
        frame: AudioFrame,
        /// Active speakers.
        active_speakers: ActiveSpeakers,
    },
}

/// Receives a call's audio. Frames arrive every 20 ms in the call's [`PcmFormat`]; if the
/// application falls behind by more than the queue holds, the oldest are dropped and counted
/// in the bot's metrics.
#[derive(Debug)]
pub struct AudioReceiver {
    pub(crate) rx: mpsc::Receiver<ReceivedAudio>,
    pub(crate) spec: PcmSpec,
}

impl AudioReceiver {
    /// The next frame; `None` once the call's media is closed.
    pub async fn recv(&mut self) -> Option<ReceivedAudio> {
        self.rx.recv().await
    }

    /// A frame if one is queued.
    pub fn try_recv(&mut self) -> Option<ReceivedAudio> {
        self.rx.try_recv().ok()
    }

    /// The layout of the frames.
    pub fn spec(&self) -> PcmSpec {
        self.spec
    }
}

/// Sends the bot's audio into a call. Chunks of any length are cut into exact 20 ms frames by
/// the engine's frame player and paced out; [`super::CallEvent::LowOnFrames`] says when to push
/// more. Cheap to clone; never blocks.
#[derive(Debug, Clone)]
pub struct AudioSender {
    pub(crate) media: Arc<CallMedia>,
}

impl AudioSender {
    fn stream(&self) -> Option<&audio_pipeline::SendStream> {
        self.media.send()
    }

    /// Queues samples (interleaved, in the call's format), any count.
    pub fn push_samples(&self, samples: &[i16]) {
        if let Some(s) = self.stream() {
            s.push_samples(samples);
        }
    }

    /// Queues s16le bytes in the call's format, any length (odd bytes carry over).
    pub fn push_bytes(&self, bytes: Vec<u8>) {
        if let Some(s) = self.stream() {
            s.push_audio(bytes);
        }
    }

    /// Queues one frame (for an echo, the frame just received).
    pub fn push_frame(&self, frame: &AudioFrame) {
        self.push_samples(frame.samples());
    }

    /// Whether pushed audio is being sent (the media path is up).
    pub fn status(&self) -> SendStatus {
        self.stream()
            .map_or(SendStatus::Inactive, audio_pipeline::SendStream::status)
    }

    /// Frames queued in the player, not yet sent.
    pub fn queued_frames(&self) -> u64 {
        self.stream()
            .map_or(0, |s| s.counters().queued_frames.get())
    }

    /// Ticks on which playback was running but nothing was queued: each is an audible gap in
    /// what the call hears (the player then waits for a few frames before playing again).
    pub fn underruns(&self) -> u64 {
        self.stream().map_or(0, |s| s.counters().underruns.get())
    }

    /// The layout the sender expects.
    pub fn spec(&self) -> PcmSpec {
        self.media.spec()
    }
}
