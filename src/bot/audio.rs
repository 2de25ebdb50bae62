//! A call's audio as the application sees it: frames in, PCM out.

use std::sync::{Arc, Weak};

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
    /// Everyone mixed, with the active speakers, loudest first; delivered every tick from the
    /// call's first received packet on, after the unmixed frames of the same tick.
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
/// more. Cheap to clone; never blocks. Once the call has ended, pushed audio goes nowhere: the
/// sender does not keep the call's media alive, so a handle the application still holds does
/// not hold the engine's room for the call.
#[derive(Debug, Clone)]
pub struct AudioSender {
    pub(crate) media: Weak<CallMedia>,
    pub(crate) spec: PcmSpec,
}

impl AudioSender {
    pub(crate) fn new(media: &Arc<CallMedia>) -> AudioSender {
        AudioSender {
            media: Arc::downgrade(media),
            spec: media.spec(),
        }
    }

    /// A sender of a call without audio of the bot's (service-hosted media): what is pushed
    /// goes nowhere.
    pub(crate) fn detached(spec: PcmSpec) -> AudioSender {
        AudioSender {
            media: Weak::new(),
            spec,
        }
    }

    fn with_stream<R>(&self, f: impl FnOnce(&audio_pipeline::SendStream) -> R) -> Option<R> {
        let media = self.media.upgrade()?;
        media.send().map(f)
    }

    /// Queues samples (interleaved, in the call's format), any count.
    pub fn push_samples(&self, samples: &[i16]) {
        self.with_stream(|s| s.push_samples(samples));
    }

    /// Queues s16le bytes in the call's format, any length (odd bytes carry over).
    pub fn push_bytes(&self, bytes: Vec<u8>) {
        self.with_stream(|s| s.push_audio(bytes));
    }

    /// Queues one frame.
    pub fn push_frame(&self, frame: &AudioFrame) {
        self.push_samples(frame.samples());
    }

    /// Queues `frame` as the answer to a frame just received (an echo, a relay, a
    /// translation), keeping the reply path at its shortest: pushed as the received frame is
    /// handed over, it goes out at this period's send tick (the call's send tick follows its
    /// receive tick). When a frame from before is still queued (the app woke late once, or
    /// frames piled up before it started reading), this one is skipped instead, so a hiccup
    /// costs one frame of audio rather than 20 ms more delay for the rest of the call.
    /// Returns whether the frame was queued.
    pub fn push_reply(&self, frame: &AudioFrame) -> bool {
        if self.queued_frames() > 0 {
            return false;
        }
        self.push_frame(frame);
        true
    }

    /// Whether pushed audio is being sent (the media path is up).
    pub fn status(&self) -> SendStatus {
        self.with_stream(audio_pipeline::SendStream::status)
            .unwrap_or(SendStatus::Inactive)
    }

    /// Frames queued in the player, not yet sent.
    pub fn queued_frames(&self) -> u64 {
        self.with_stream(|s| s.counters().queued_frames.get())
            .unwrap_or(0)
    }

    /// Ticks on which playback was running but nothing was queued: each is an audible gap in
    /// what the call hears (the player then waits for a few frames before playing again).
    pub fn underruns(&self) -> u64 {
        self.with_stream(|s| s.counters().underruns.get())
            .unwrap_or(0)
    }

    /// The layout the sender expects.
    pub fn spec(&self) -> PcmSpec {
        self.spec
    }
}
