//! The adapter between this crate and `audio-pipeline` (feature `pipeline`), kept in one module
//! so it can follow the pipeline's API alone.
//!
//! - Receive: [`PipelineBinding`] is the [`AudioSink`] of a call. Each participant's RTP goes to
//!   the pipeline's receive stream of its `sourceId` (its jitter buffer), looked up in the
//!   call's [`StreamRegistry`]. Audio of a source without a stream passes the [`SourceGate`]:
//!   held briefly, then delivered when the roster binds it, or dropped and counted.
//! - Roster: the call's owner (mediabot's `CallCore`) decides from the roster which sources
//!   are bound and calls [`PipelineBinding::bind`] and [`PipelineBinding::unbind`].
//! - Send: one [`SendPump`] per engine moves every call's paced encoder output to its send
//!   track.
//!
//! The registry is the only record of which sources are bound: a source is live exactly while
//! it has a receive stream there. The transport labels packets with their `sourceId` and hands
//! all of them here; the gate only holds what the registry cannot take yet.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use audio_pipeline::{EncodedPacket, Engine, EngineError, RtpAudio, StreamRegistry};
use bytes::Bytes;
use media_session::SourceId;

use crate::binding::{GateConfig, GateCounters, SourceGate};
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
        // The stream exists before the gate is asked, so a packet that finds no stream under
        // the gate's lock (see `on_audio`) is held before this release, never after it.
        let stream = self.registry.add(source)?;
        let held = self.gate().release(Instant::now(), source);
        for (packet, arrival) in held {
            stream.deliver(packet, arrival);
        }
        Ok(())
    }

    /// The roster no longer lists `source`: remove its pipeline stream. Its later packets are
    /// held (and expire) like those of any source without a stream.
    pub fn unbind(&self, source: SourceId) {
        self.registry.remove(source);
    }

    /// True while `source` has a receive stream: the registry's answer, the only one.
    pub fn is_bound(&self, source: SourceId) -> bool {
        self.registry.get(source).is_some()
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
        // Fast path: a bound source goes straight to its jitter buffer.
        if let Some(stream) = self.registry.get(p.source) {
            stream.deliver(packet, p.arrival);
            return;
        }
        let mut gate = self.gate();
        // Asked again under the gate's lock: `bind` may have added the stream and released
        // the held packets since the look-up above.
        match self.registry.get(p.source) {
            Some(stream) => {
                drop(gate);
                stream.deliver(packet, p.arrival);
            }
            None => {
                gate.hold(Instant::now(), p.source, (packet, p.arrival));
            }
        }
    }

    fn on_session_ended(&self, _reason: &EndReason) {
        self.gate().clear();
    }
}

/// How long the pump sleeps when no worker wakes it. Wake-ups are not lost (an unpark before
/// the park makes the park return at once), so this is only a backstop for a wake-up that never
/// comes: the pump still looks at every route this often.
const IDLE_SWEEP: Duration = Duration::from_secs(1);

/// One call's queue of encoded packets and where they go.
struct Route {
    packets: crossbeam_channel::Receiver<EncodedPacket>,
    sender: AudioSender,
}

impl Route {
    /// Moves every queued packet to the send track; false once either end is gone (checked
    /// with nothing queued too, so a call whose media session ended while its app sent
    /// nothing does not keep its route until the app drops the call).
    fn drain(&self) -> bool {
        loop {
            match self.packets.try_recv() {
                Ok(packet) => {
                    let payload = Bytes::copy_from_slice(packet.payload());
                    match self.sender.send_opus_at(payload, packet.rtp_timestamp) {
                        Ok(()) | Err(CallError::QueueFull) => {}
                        Err(_) => return false,
                    }
                }
                Err(crossbeam_channel::TryRecvError::Empty) => return !self.sender.tx.is_closed(),
                Err(crossbeam_channel::TryRecvError::Disconnected) => return false,
            }
        }
    }
}

/// Moves every call's encoded packets from the audio pipeline to its send track, on one thread
/// for the whole engine.
///
/// The engine's send workers wake the thread ([`Engine::wake_on_packets`]) after a pass that
/// queued packets, and the thread drains every call's queue: a thread per call would cost a
/// stack and a wake-up per packet each, and blocking on a queue a real-time worker feeds would
/// share its waker lock with that worker. A call's route goes when its engine stream closes
/// (the worker wakes the pump then), or at the pump's next pass once its media session has
/// ended (the next packet of any call, or the idle sweep within a second). Dropping the pump
/// stops the thread.
///
/// One copy per packet into `Bytes` is forced by the RTP stack, which owns payloads as `Bytes`.
pub struct SendPump {
    routes: crossbeam_channel::Sender<Route>,
    live: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for SendPump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendPump")
            .field("routes", &self.routes())
            .finish()
    }
}

impl SendPump {
    /// Starts the pump thread and registers it with `engine`. Fails when the engine already
    /// wakes another thread (one pump per engine) or the thread cannot start.
    pub fn start(engine: &Engine) -> std::io::Result<SendPump> {
        let (routes, incoming) = crossbeam_channel::unbounded::<Route>();
        let live = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("mediabot-send-pump".into())
            .spawn({
                let live = live.clone();
                let stop = stop.clone();
                move || {
                    let mut active: Vec<Route> = Vec::new();
                    while !stop.load(Ordering::Acquire) {
                        active.extend(incoming.try_iter());
                        active.retain(Route::drain);
                        live.store(active.len(), Ordering::Relaxed);
                        std::thread::park_timeout(IDLE_SWEEP);
                    }
                }
            })?;
        if !engine.wake_on_packets(thread.thread().clone()) {
            stop.store(true, Ordering::Release);
            thread.thread().unpark();
            let _ = thread.join();
            return Err(std::io::Error::other(
                "the engine already wakes another packet pump",
            ));
        }
        Ok(SendPump {
            routes,
            live,
            stop,
            thread: Some(thread),
        })
    }

    /// Moves the call's packets (`packets`, its engine [`audio_pipeline::SendStream::packets`])
    /// to `sender` from now on.
    pub fn add(&self, packets: crossbeam_channel::Receiver<EncodedPacket>, sender: AudioSender) {
        // The thread only ends when the pump is dropped, which `&self` rules out.
        let _ = self.routes.send(Route { packets, sender });
        if let Some(t) = &self.thread {
            // Packets may have been queued before the route existed.
            t.thread().unpark();
        }
    }

    /// Calls whose packets the pump moves, as of its last pass.
    pub fn routes(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}

impl Drop for SendPump {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use audio_pipeline::{Engine, EngineConfig, PcmSpec};
    use media_session::StreamDirection;

    use super::*;

    fn packet(source: u32, seq: u16) -> IncomingAudio {
        IncomingAudio {
            source: SourceId(source),
            sequence: seq,
            timestamp: u32::from(seq) * 960,
            ssrc: 1,
            marker: false,
            payload: Bytes::from_static(&[0x08, 0x00, 0x11]),
            arrival: Instant::now(),
        }
    }

    fn small_engine() -> Engine {
        Engine::start(EngineConfig {
            send_threads: 1,
            receive_threads: 1,
            realtime_priority: None,
            ..EngineConfig::default()
        })
        .unwrap()
    }

    /// A call whose media session ended leaves the pump even if its app never sends another
    /// frame and keeps the call open: the idle sweep finds its send track closed.
    #[test]
    fn a_route_whose_media_session_ended_goes_without_a_packet() {
        let engine = small_engine();
        let pump = SendPump::start(&engine).unwrap();
        let call = engine
            .open_call(
                PcmSpec::new(16_000, 1).unwrap(),
                StreamDirection::SendReceive,
            )
            .unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let sender = AudioSender {
            tx,
            dropped: Arc::default(),
        };
        pump.add(call.send().unwrap().packets().clone(), sender);
        let until = |want: usize| {
            let deadline = Instant::now() + IDLE_SWEEP * 5;
            while pump.routes() != want && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            pump.routes()
        };
        assert_eq!(until(1), 1);
        // The media session ends (its send track's queue closes); the engine call stays.
        drop(rx);
        assert_eq!(until(0), 0);
        assert_eq!(engine.open_calls(), 1);
    }

    /// One engine, one pump: a second registration is refused rather than leaving one of them
    /// never woken.
    #[test]
    fn an_engine_wakes_one_pump() {
        let engine = small_engine();
        let _pump = SendPump::start(&engine).unwrap();
        assert!(SendPump::start(&engine).is_err());
    }

    #[test]
    fn the_registry_alone_says_what_is_delivered() {
        let engine = small_engine();
        let media = engine
            .open_call(
                PcmSpec::new(16_000, 1).unwrap(),
                StreamDirection::SendReceive,
            )
            .unwrap();
        let registry = media.registry().unwrap().clone();
        let binding = PipelineBinding::new(registry.clone(), GateConfig::default());
        let delivered = |s: u32| {
            registry
                .get(SourceId(s))
                .map(|st| st.counters().delivered.get())
        };

        // Before the roster lists 7, its audio is held, not delivered.
        binding.on_audio(packet(7, 1));
        binding.on_audio(packet(7, 2));
        assert!(!binding.is_bound(SourceId(7)));
        assert_eq!(binding.gate_counters().held, 2);

        // Bound: the held packets reach the new stream, later ones go straight to it.
        binding.bind(SourceId(7)).unwrap();
        assert!(binding.is_bound(SourceId(7)));
        assert_eq!(registry.sources(), [SourceId(7)]);
        assert_eq!(delivered(7), Some(2));
        binding.on_audio(packet(7, 3));
        assert_eq!(delivered(7), Some(3));
        assert_eq!(binding.gate_counters().released, 2);

        // A stream removed behind the binding's back is unbound too: there is no other record.
        registry.remove(SourceId(7));
        assert!(!binding.is_bound(SourceId(7)));
        binding.on_audio(packet(7, 4));
        assert_eq!(binding.gate_counters().held, 3);

        // Unbound through the binding: held again, and dropped when the session ends.
        binding.bind(SourceId(7)).unwrap();
        binding.unbind(SourceId(7));
        assert!(registry.is_empty());
        binding.on_audio(packet(7, 5));
        binding.on_session_ended(&EndReason::ConnectionLost);
        let gate = binding.gate_counters();
        assert_eq!((gate.held, gate.released, gate.dropped), (4, 3, 1));
    }
}
