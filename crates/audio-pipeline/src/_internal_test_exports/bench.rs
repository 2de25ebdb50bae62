//! The engine's per-frame paths without threads, for the `frame_path` benchmark: the same
//! worker code and queues as the real threads, driven with injected time so one call runs one
//! frame. Not a stable API.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use media_session::SourceId;

use crate::engine::{
    DropOldest, EncodedPacket, EngineConfig, EngineError, EngineStats, Inbound, ReceiveEvent,
    RecvCommand, RecvStream, RecvWorker, SendCommand, SendCounters, SendEvent, SendWorker,
    recv_call, send_call,
};
use crate::frame::{AudioFrame, PcmSpec};
use crate::jitter::RtpAudio;
use crate::pacer::FRAME;
use crate::registry::RecvCounters;
use crate::stats::Counter;

const LAST_SUBTICK: Duration = Duration::from_millis(19);

/// One call's send path: app chunk → queue → frame player → resampler → encoder → queue.
pub struct SendHarness {
    worker: SendWorker,
    audio: DropOldest<Vec<u8>>,
    packets: Receiver<EncodedPacket>,
    events: Receiver<SendEvent>,
    t0: Instant,
    frame: u32,
}

impl std::fmt::Debug for SendHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendHarness")
            .field("frame", &self.frame)
            .finish()
    }
}

impl SendHarness {
    /// An active send stream of `spec` with `config`'s settings.
    pub fn new(spec: PcmSpec, config: &EngineConfig) -> Result<SendHarness, EngineError> {
        let t0 = Instant::now();
        let counters = Arc::new(SendCounters::default());
        let (audio, audio_rx) =
            DropOldest::new(config.queue_capacity * 4, Arc::new(Counter::default()));
        let (ptx, packets) = DropOldest::new(config.queue_capacity, Arc::new(Counter::default()));
        let (etx, events) = DropOldest::new(config.queue_capacity, Arc::new(Counter::default()));
        let call = send_call(
            config,
            1,
            spec,
            audio_rx,
            ptx,
            etx,
            Arc::new(AtomicBool::new(true)),
            counters,
        )?;
        let mut worker = SendWorker::new(Arc::new(EngineStats::default()), config.clone(), t0);
        worker.handle(SendCommand::AddCall(Box::new(call)));
        Ok(SendHarness {
            worker,
            audio,
            packets,
            events,
            t0,
            frame: 0,
        })
    }

    /// Hands app audio to the send queue, as [`crate::engine::SendStream::push_audio`] does.
    pub fn push(&self, chunk: Vec<u8>) {
        self.audio.push(chunk);
    }

    /// Runs one frame period and returns the packet it produced, if any.
    pub fn run_frame(&mut self) -> Option<EncodedPacket> {
        let now = self.t0 + FRAME * self.frame + LAST_SUBTICK;
        self.frame += 1;
        self.worker.run_due(now);
        while self.events.try_recv().is_ok() {}
        let mut last = None;
        while let Ok(p) = self.packets.try_recv() {
            last = Some(p);
        }
        last
    }
}

/// One participant's receive path: packet → queue → jitter buffer → decoder → resampler →
/// mixer → queue.
pub struct RecvHarness {
    stats: Arc<EngineStats>,
    worker: RecvWorker,
    inbound: DropOldest<Inbound>,
    inbound_rx: Receiver<Inbound>,
    events: Receiver<ReceiveEvent>,
    t0: Instant,
    frame: u32,
    source: SourceId,
}

impl std::fmt::Debug for RecvHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvHarness")
            .field("frame", &self.frame)
            .finish()
    }
}

impl RecvHarness {
    /// A call with one receive stream delivering app audio in `spec`.
    pub fn new(spec: PcmSpec, config: &EngineConfig) -> Result<RecvHarness, EngineError> {
        let t0 = Instant::now();
        let source = SourceId(1);
        let (etx, events) =
            DropOldest::new(config.queue_capacity * 4, Arc::new(Counter::default()));
        let (inbound, inbound_rx) =
            DropOldest::new(config.queue_capacity, Arc::new(Counter::default()));
        let stats = Arc::new(EngineStats::default());
        let mut worker = RecvWorker::new(stats.clone(), config.clone(), t0, t0);
        worker.handle(RecvCommand::AddCall(Box::new(recv_call(
            config, 1, spec, etx,
        ))));
        let chain = RecvStream::new(
            source,
            spec,
            config.jitter,
            config.resampler,
            Arc::new(RecvCounters::default()),
        )?;
        worker.handle(RecvCommand::AddStream(Box::new(chain), 1));
        Ok(RecvHarness {
            stats,
            worker,
            inbound,
            inbound_rx,
            events,
            t0,
            frame: 0,
            source,
        })
    }

    /// The per-stage timings recorded so far.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Hands a packet to the receive queue, as [`crate::registry::ReceiveStream::deliver`] does.
    pub fn deliver(&self, packet: RtpAudio) {
        self.inbound.push(Inbound {
            call: 1,
            source: self.source,
            packet,
            arrival: self.t0 + FRAME * self.frame,
        });
    }

    /// Runs one frame period and returns the participant's frame, if one was delivered.
    pub fn run_frame(&mut self) -> Option<AudioFrame> {
        while let Ok(p) = self.inbound_rx.try_recv() {
            self.worker.ingest(p);
        }
        let now = self.t0 + FRAME * self.frame + LAST_SUBTICK;
        self.frame += 1;
        self.worker.run_due(now);
        let mut unmixed = None;
        while let Ok(ev) = self.events.try_recv() {
            if let ReceiveEvent::Unmixed(f) = ev {
                unmixed = Some(f);
            }
        }
        unmixed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_kit::fixtures::speech_16k;
    use test_kit::similarity::spectral_similarity;

    #[test]
    fn harnesses_carry_speech_frame_by_frame() {
        let spec = PcmSpec::new(16_000, 1).unwrap();
        let config = EngineConfig::default();
        let mut send = SendHarness::new(spec, &config).unwrap();
        let mut recv = RecvHarness::new(spec, &config).unwrap();
        let speech = speech_16k();
        let mut out = Vec::new();
        let mut packets = 0u16;
        for f in speech.chunks_exact(320).take(150) {
            send.push(f.iter().flat_map(|s| s.to_le_bytes()).collect());
            if let Some(p) = send.run_frame() {
                recv.deliver(RtpAudio {
                    seq: packets,
                    timestamp: p.rtp_timestamp,
                    ssrc: 9,
                    payload: bytes::Bytes::copy_from_slice(p.payload()),
                });
                packets += 1;
            }
            if let Some(frame) = recv.run_frame() {
                out.extend_from_slice(frame.samples());
            }
        }
        // No pre-buffering on the send side (a frame pushed before a tick goes out at it),
        // none lost.
        assert_eq!(packets, 150);
        assert!(out.len() >= 148 * 320);
        assert!(spectral_similarity(&speech[..out.len()], &out, 16_000) > 0.9);
    }

    #[test]
    fn stereo_44k_frames_stay_exact_end_to_end() {
        let spec: PcmSpec = media_session::AudioFormat::Pcm44KStereo.into();
        let config = EngineConfig::default();
        let mut send = SendHarness::new(spec, &config).unwrap();
        let mut recv = RecvHarness::new(spec, &config).unwrap();
        // A 440 Hz tone on the left, 660 Hz on the right.
        let tone = |i: usize, f: f32| {
            ((i as f32 * f * std::f32::consts::TAU / 44_100.0).sin() * 8000.0) as i16
        };
        let mut seq = 0u16;
        let mut frames = 0;
        let mut left_energy = 0f64;
        for k in 0..60usize {
            let chunk: Vec<u8> = (0..882)
                .flat_map(|i| {
                    let n = k * 882 + i;
                    [tone(n, 440.0), tone(n, 660.0)]
                })
                .flat_map(|s| s.to_le_bytes())
                .collect();
            send.push(chunk);
            if let Some(p) = send.run_frame() {
                recv.deliver(RtpAudio {
                    seq,
                    timestamp: p.rtp_timestamp,
                    ssrc: 3,
                    payload: bytes::Bytes::copy_from_slice(p.payload()),
                });
                seq += 1;
            }
            if let Some(f) = recv.run_frame() {
                assert_eq!(f.samples().len(), 1764);
                assert_eq!(f.spec, spec);
                frames += 1;
                if k > 20 {
                    left_energy += f
                        .samples()
                        .iter()
                        .step_by(2)
                        .map(|&s| f64::from(s).powi(2))
                        .sum::<f64>();
                }
            }
        }
        assert!(frames >= 55, "{frames}");
        // RMS of an 8000-peak sine is ~5657; the codec keeps it within a few dB.
        let rms = (left_energy / (39.0 * 882.0)).sqrt();
        assert!(rms > 3000.0 && rms < 8000.0, "left rms {rms}");
    }
}
