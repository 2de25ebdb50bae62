//! The adapter between this crate and `audio-pipeline` (feature `pipeline`), kept in one module
//! so it can follow the pipeline's API alone.
//!
//! - Receive: [`PipelineBinding`] is the [`AudioSink`] of a call. Each participant's RTP goes to
//!   the pipeline's receive stream of its `sourceId` (its jitter buffer), looked up in the
//!   call's [`StreamRegistry`]. Audio of a source the roster does not list (yet) passes the
//!   [`SourceGate`]: held briefly, then delivered when the roster binds it, or dropped and
//!   counted.
//! - Roster: the call's owner (mediabot's `CallCore`) decides from the roster which sources
//!   are bound and calls [`PipelineBinding::bind`] and [`PipelineBinding::unbind`].
//! - Send: [`spawn_send_pump`] moves the pipeline's paced encoder output to the call's send
//!   track.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use audio_pipeline::{EncodedPacket, EngineError, RtpAudio, StreamRegistry};
use bytes::Bytes;
use media_session::SourceId;

use crate::binding::{Admit, GateConfig, GateCounters, SourceGate};
use crate::call::{AudioSender, CallError};
use crate::events::{AudioSink, IncomingAudio};
use crate::protocol::EndReason;

/// Delivers a call's received streams into the audio pipeline, gated by the roster.
#[derive(Debug)]
pub struct PipelineBinding {
    registry: StreamRegistry,
    gate: Mutex<SourceGate<(RtpAudio, Instant)>>,
}

impl PipelineBinding {
    /// A binding over the call's receive-stream registry.
    pub fn new(registry: StreamRegistry, config: GateConfig) -> Arc<Self> {
        Arc::new(PipelineBinding {
            registry,
            gate: Mutex::new(SourceGate::new(config)),
        })
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, SourceGate<(RtpAudio, Instant)>> {
        self.gate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The roster lists `source`: create its pipeline stream and deliver what was held.
    pub fn bind(&self, source: SourceId) -> Result<(), EngineError> {
        let stream = self.registry.add(source)?;
        let held = self.gate().bind(Instant::now(), source);
        for (packet, arrival) in held {
            stream.deliver(packet, arrival);
        }
        Ok(())
    }

    /// The roster no longer lists `source`: remove its pipeline stream.
    pub fn unbind(&self, source: SourceId) {
        self.gate().unbind(source);
        self.registry.remove(source);
    }

    /// What the roster gate did (held, released, dropped packets).
    pub fn gate_counters(&self) -> GateCounters {
        self.gate().counters()
    }
}

impl AudioSink for PipelineBinding {
    fn on_audio(&self, p: IncomingAudio) {
        let packet = RtpAudio {
            seq: p.sequence,
            timestamp: p.timestamp,
            ssrc: p.ssrc,
            payload: p.payload,
        };
        // Fast path: a listed source goes straight to its jitter buffer.
        if let Some(stream) = self.registry.get(p.source) {
            stream.deliver(packet, p.arrival);
            return;
        }
        let now = Instant::now();
        if let Admit::Deliver((packet, arrival)) =
            self.gate().admit(now, p.source, (packet, p.arrival))
        {
            // Bound in the gate but gone from the registry (removed meanwhile): try once more.
            if let Some(stream) = self.registry.get(p.source) {
                stream.deliver(packet, arrival);
            }
        }
    }

    fn on_session_ended(&self, _reason: &EndReason) {
        self.gate()
            .handle_timeout(Instant::now() + std::time::Duration::from_secs(3600));
    }
}

/// Moves the pipeline's encoded packets to the send track on a thread of its own (the
/// pipeline's queue is a blocking crossbeam channel). Ends when the pipeline closes the queue or
/// the media session ends.
///
/// One copy per packet into `Bytes` is forced by the RTP stack, which owns payloads as `Bytes`.
pub fn spawn_send_pump(
    packets: crossbeam_channel::Receiver<EncodedPacket>,
    sender: AudioSender,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("mediabot-send-pump".into())
        .spawn(move || {
            while let Ok(packet) = packets.recv() {
                match sender.send_opus(Bytes::copy_from_slice(packet.payload())) {
                    Ok(()) | Err(CallError::QueueFull) => {}
                    Err(_) => break,
                }
            }
        })
}
