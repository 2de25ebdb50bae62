//! The I/O shell: dedicated OS threads that run the sans-IO cores at 20 ms deadlines.
//!
//! Send workers own the frame player, upsampler and Opus encoder of each call's outgoing
//! stream; receive workers own each participant's jitter buffer, decoder and downsampler plus
//! the call's mixer and speaker tracker. Each worker serves many calls. To keep every frame
//! within 2 ms of its deadline even when a worker is busy for most of the 20 ms period, a
//! worker ticks every millisecond and each call is pinned to one of the 20 sub-slots (the
//! least loaded one), so the work of a frame period is spread over the whole period instead of
//! piling up at its start.
//!
//! By default each thread runs one send worker and one receive worker
//! ([`EngineConfig::shared_threads`]), both directions of its calls on one core's thread: the
//! engine's own threads never preempt one another, and a call's reply is encoded on the thread
//! that just delivered the frame it answers.

mod both;
mod capacity;
mod phase;
mod queue;
mod recv;
mod send;
mod slots;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use media_session::{SourceId, StreamDirection};

use crate::codec::{CodecError, MAX_ENCODED_BYTES, OpusConfig};
use crate::frame::{AudioFrame, PcmSpec};
use crate::jitter::JitterConfig;
use crate::mix::{MixMode, SpeakerConfig};
use crate::player::PlayerConfig;
use crate::registry::StreamRegistry;
use crate::resample::{ResampleError, ResamplerKind};
use crate::stats::{Counter, LatencyHistogram};
use slots::Slots;

pub(crate) use capacity::Budget;
pub use capacity::{Capacity, StreamCost};

pub(crate) use queue::{Doorbell, DropOldest};
pub(crate) use recv::{Inbound, RecvCommand, RecvStream, RecvWorker};
#[cfg(feature = "_internal_test_exports")]
pub(crate) use send::SendCall;
pub(crate) use send::{SendCommand, SendWorker};

/// Builds a send call (crate-internal constructor shared with the benchmark harness).
#[cfg(feature = "_internal_test_exports")]
#[allow(clippy::too_many_arguments)] // Mirrors SendCall::new.
pub(crate) fn send_call(
    config: &EngineConfig,
    id: u64,
    spec: PcmSpec,
    audio: Receiver<Vec<u8>>,
    packets: DropOldest<EncodedPacket>,
    events: DropOldest<SendEvent>,
    active: Arc<AtomicBool>,
    counters: Arc<SendCounters>,
) -> Result<SendCall, EngineError> {
    SendCall::new(config, id, spec, audio, packets, events, active, counters)
}

/// Builds a receive call (crate-internal constructor shared with the benchmark harness).
#[cfg(feature = "_internal_test_exports")]
pub(crate) fn recv_call(
    config: &EngineConfig,
    id: u64,
    spec: PcmSpec,
    events: DropOldest<ReceiveEvent>,
) -> recv::RecvCall {
    recv::RecvCall::new(config, id, spec, events)
}

/// How many sub-slots a call's send tick follows its receive tick (see `Engine::open_call`):
/// room for the application to be handed a frame and answer it.
pub(crate) const REPLY_LEAD_SLOTS: usize = 2;

/// How long after a call's receive tick its send tick comes ([`REPLY_LEAD_SLOTS`] sub-slots,
/// where the worker's load allows): the time an application has to answer a received frame
/// for the answer to go out in the same period.
pub const REPLY_LEAD: Duration = Duration::from_millis(REPLY_LEAD_SLOTS as u64);

/// Length of one sub-slot.
const SUB_TICK: Duration = Duration::from_millis(1);

/// Sub-slots per frame period (one per millisecond).
pub(crate) const SLOTS: usize = 20;

/// Engine settings. The defaults are production settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Workers that frame, resample, encode and pace outgoing audio.
    pub send_threads: usize,
    /// Workers that reorder, decode, resample and mix incoming audio.
    pub receive_threads: usize,
    /// Run a send worker and a receive worker on each thread (`max(send_threads,
    /// receive_threads)` threads, each direction with that many workers), a call's two
    /// directions on the same thread. With one thread per core, the engine's threads then never
    /// preempt each other: separate send and receive threads at real-time priority share the
    /// cores by preemption, and a stream's frame waits behind another thread's batch. `false`:
    /// separate threads per direction, receive one priority step above send.
    pub shared_threads: bool,
    /// Encoder settings.
    pub opus: OpusConfig,
    /// Resampling algorithm.
    pub resampler: ResamplerKind,
    /// Jitter buffer settings.
    pub jitter: JitterConfig,
    /// Frame player settings.
    pub player: PlayerConfig,
    /// Active/dominant speaker detection.
    pub speakers: SpeakerConfig,
    /// How mixed audio is kept within 16 bits.
    pub mix: MixMode,
    /// Capacity of each hand-off queue, in items (frames, packets, chunks or events).
    pub queue_capacity: usize,
    /// A frame handled later than this after its deadline counts as a deadline miss.
    pub deadline_slack: Duration,
    /// How long before a frame's deadline its work may start. Waking up takes the OS up to a
    /// couple of milliseconds on a busy machine; starting a little early absorbs that, so the
    /// packet or frame is ready by its deadline. The pace is unchanged: every frame is still
    /// produced exactly 20 ms after the previous one.
    pub work_ahead: Duration,
    /// Real-time (`SCHED_FIFO`) priority for the worker threads, 1..=99, or `None` to leave
    /// them at normal priority. Best effort: without the right (root, `CAP_SYS_NICE` or an
    /// `RLIMIT_RTPRIO` allowance) the threads keep normal priority, and
    /// [`EngineStats::realtime_threads`] says how many got it. On a machine shared with other
    /// work, normal-priority workers wake up milliseconds late and miss deadlines long before
    /// they run out of CPU. The kernel's real-time throttling still leaves other processes 5 %.
    pub realtime_priority: Option<u8>,
    /// Codec cost of a stream-frame, or `None` to measure it when the engine starts
    /// ([`StreamCost::measure`]).
    pub stream_cost: Option<StreamCost>,
    /// Share of the cores' time the engine admits calls up to; a call that would take it past
    /// this is refused with [`EngineError::OverCapacity`]. The default, 0.55, sits under what
    /// the `engine_scale` bench last found the engine carries within its deadlines on a 2-core
    /// machine with shared threads (100–106 streams, judged against the host's own noise, where
    /// 0.55 of the engine's own cost measure admits 69–93; see `benches/README.md`); set it
    /// from your own host's run. Values above 1 admit more than the CPU can carry.
    pub admit_share: f64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        EngineConfig {
            // One thread per core, each serving both directions of its calls.
            send_threads: cores.max(1),
            receive_threads: cores.max(1),
            shared_threads: true,
            opus: OpusConfig::default(),
            resampler: ResamplerKind::default(),
            jitter: JitterConfig::default(),
            player: PlayerConfig::default(),
            speakers: SpeakerConfig::default(),
            mix: MixMode::default(),
            queue_capacity: 64,
            deadline_slack: Duration::from_millis(2),
            work_ahead: Duration::from_millis(1),
            realtime_priority: Some(10),
            stream_cost: None,
            admit_share: 0.55,
        }
    }
}

/// Errors from the engine's control plane.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A codec could not be created.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A resampler could not be created.
    #[error(transparent)]
    Resample(#[from] ResampleError),
    /// The worker threads are gone.
    #[error("engine is shut down")]
    ShutDown,
    /// A worker thread could not be spawned.
    #[error("spawning a worker thread: {0}")]
    Spawn(#[from] std::io::Error),
    /// Opening the call would take the engine past its admission budget: the calls already
    /// running would start missing deadlines.
    #[error(
        "the audio engine is at capacity: a call needs {needed_us} µs of codec work per 20 ms \
         and {free_us} µs of the {limit_us} µs admitted are free (measured {send_us} µs send + \
         {recv_us} µs receive per stream-frame on this host)"
    )]
    OverCapacity {
        /// What the call would take, µs per frame period.
        needed_us: u64,
        /// What is left of the budget.
        free_us: u64,
        /// The whole budget.
        limit_us: u64,
        /// Cost of an outgoing stream-frame.
        send_us: u32,
        /// Cost of an incoming stream-frame.
        recv_us: u32,
    },
}

/// Engine-wide timing figures, readable while running.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Time to produce one outgoing packet from a queued app frame (player, resample, encode,
    /// hand-off).
    pub send_frame: LatencyHistogram,
    /// Time to produce one participant's app frame from the jitter buffer (pop, decode,
    /// resample, hand-off).
    pub recv_frame: LatencyHistogram,
    /// Resampling of one outgoing frame.
    pub stage_resample_up: LatencyHistogram,
    /// Opus encoding of one frame.
    pub stage_encode: LatencyHistogram,
    /// Opus decoding (or concealment) of one frame.
    pub stage_decode: LatencyHistogram,
    /// Resampling of one incoming frame.
    pub stage_resample_down: LatencyHistogram,
    /// Mixing and speaker tracking of one call's tick.
    pub stage_mix: LatencyHistogram,
    /// How long each played packet waited in its jitter buffer, from arrival to its tick.
    pub jitter_hold: LatencyHistogram,
    /// The same for packets that carried speech (level at or above −45 dBFS): what a talker's
    /// words wait, without the silent participants' packets, whose wait the tick's phase
    /// does not try to shorten.
    pub speech_hold: LatencyHistogram,
    /// How late after its deadline each outgoing packet was handed off.
    pub send_lateness: LatencyHistogram,
    /// How late after its deadline each incoming frame was delivered.
    pub recv_lateness: LatencyHistogram,
    /// Outgoing packets handed off later than the slack.
    pub send_deadline_misses: Counter,
    /// Incoming frames delivered later than the slack.
    pub recv_deadline_misses: Counter,
    /// Outgoing packets produced.
    pub packets_sent: Counter,
    /// Incoming frames delivered (per participant).
    pub frames_received: Counter,
    /// Sub-ticks skipped because a worker stalled for more than a second.
    pub skipped_ticks: Counter,
    /// Outgoing frames not sent because their turn came more than a frame period late (a
    /// stalled or overloaded send worker); the receiver conceals them.
    pub send_stale_skipped: Counter,
    /// Worker threads running with real-time priority.
    pub realtime_threads: Counter,
}

/// Raises the calling thread to `SCHED_FIFO` at `priority` if allowed; `None` does nothing.
#[doc(hidden)] // Used by the engine_scale bench to measure its baseline under the same policy.
pub fn promote_current_thread(priority: Option<u8>, stats: &EngineStats) {
    use thread_priority::{
        RealtimeThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    let Some(p) = priority else {
        return;
    };
    let Ok(value) = ThreadPriorityValue::try_from(p.clamp(1, 99)) else {
        return;
    };
    let ok = set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Crossplatform(value),
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
    )
    .is_ok();
    if ok {
        stats.realtime_threads.incr();
    }
}

/// One encoded 20 ms frame, ready for RTP packetization. The payload is stored inline so the
/// send thread does not allocate.
#[derive(Clone)]
pub struct EncodedPacket {
    data: [u8; MAX_ENCODED_BYTES],
    len: u16,
    /// RTP sequence number (starts at 0, wraps).
    pub seq: u16,
    /// RTP timestamp in 48 kHz units.
    pub rtp_timestamp: u32,
    /// The frame's send deadline.
    pub deadline: Instant,
}

impl EncodedPacket {
    /// The Opus payload.
    pub fn payload(&self) -> &[u8] {
        &self.data[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for EncodedPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedPacket")
            .field("len", &self.len)
            .field("seq", &self.seq)
            .field("rtp_timestamp", &self.rtp_timestamp)
            .finish()
    }
}

/// Whether the engine is sending a call's audio (the official library's send status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// The media path is up: queued audio is encoded and sent.
    Active,
    /// Not connected yet, or stopped: pushed audio is dropped.
    Inactive,
}

/// Events of a call's outgoing stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendEvent {
    /// The send status changed.
    StatusChanged(SendStatus),
    /// Fewer frames than the low-water mark are queued: push more.
    LowOnFrames {
        /// Frames still queued.
        queued: usize,
    },
}

/// Up to four active speakers, loudest first; fixed size so events never allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveSpeakers {
    ids: [SourceId; 4],
    len: u8,
}

impl ActiveSpeakers {
    pub(crate) fn from_slice(ids: &[SourceId]) -> ActiveSpeakers {
        let mut out = ActiveSpeakers {
            ids: [SourceId::NONE; 4],
            len: 0,
        };
        for (d, s) in out.ids.iter_mut().zip(ids) {
            *d = *s;
            out.len += 1;
        }
        out
    }

    /// The speakers.
    pub fn as_slice(&self) -> &[SourceId] {
        &self.ids[..usize::from(self.len)]
    }
}

/// What the receive side delivers to the app, every 20 ms.
#[derive(Debug, Clone)]
pub enum ReceiveEvent {
    /// One participant's own audio for this tick (only participants with audio this tick).
    Unmixed(AudioFrame),
    /// All participants mixed, with the active speakers; delivered every tick from the call's
    /// first received packet on, after the unmixed frames of the same tick.
    Mixed {
        /// The mix (`is_silence` when nobody had audio).
        frame: AudioFrame,
        /// Active speakers, loudest first.
        active_speakers: ActiveSpeakers,
    },
    /// The dominant speaker changed (`SourceId::NONE` when nobody speaks).
    DominantSpeakerChanged(SourceId),
}

/// Counters of a call's outgoing stream.
#[derive(Debug, Default)]
pub struct SendCounters {
    /// App chunks dropped because the queue to the send thread was full.
    pub queue_dropped: Arc<Counter>,
    /// Packets dropped because the transport did not take them in time.
    pub packets_dropped: Arc<Counter>,
    /// App chunks dropped because the stream was inactive.
    pub dropped_inactive: Counter,
    /// Packets produced.
    pub packets: Counter,
    /// Ticks with nothing queued while playing.
    pub underruns: Counter,
    /// Frames the player dropped because its queue was full.
    pub player_overflow: Counter,
    /// Frames currently queued in the player.
    pub queued_frames: Counter,
    /// Encoder or resampler failures (the frame was skipped).
    pub errors: Counter,
    /// Frames not sent because their turn came more than a frame period late.
    pub stale_skipped: Counter,
}

pub(crate) struct CallShared {
    id: u64,
    /// Worker and sub-slot of each direction.
    send_worker: Option<(usize, usize)>,
    recv_worker: Option<(usize, usize)>,
    /// What the call reserved from the budget when it opened.
    reserved_us: u64,
    engine: Arc<EngineShared>,
}

impl Drop for CallShared {
    fn drop(&mut self) {
        self.engine.open_calls.fetch_sub(1, Ordering::Relaxed);
        self.engine.budget.release(self.reserved_us);
        if let Some((w, slot)) = self.send_worker {
            self.engine.send[w].load.fetch_sub(1, Ordering::Relaxed);
            lock(&self.engine.send[w].slots).release(slot);
            let _ = self.engine.send[w]
                .commands
                .send(SendCommand::RemoveCall(self.id));
        }
        if let Some((w, slot)) = self.recv_worker {
            self.engine.recv[w].load.fetch_sub(1, Ordering::Relaxed);
            lock(&self.engine.recv[w].slots).release(slot);
            let _ = self.engine.recv[w]
                .commands
                .send(RecvCommand::RemoveCall(self.id));
        }
    }
}

/// A call's outgoing audio: the app pushes PCM in, the transport takes Opus packets out.
pub struct SendStream {
    audio: DropOldest<Vec<u8>>,
    packets: Receiver<EncodedPacket>,
    events: Receiver<SendEvent>,
    active: Arc<AtomicBool>,
    counters: Arc<SendCounters>,
    spec: PcmSpec,
    _call: Arc<CallShared>,
}

impl std::fmt::Debug for SendStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendStream")
            .field("spec", &self.spec)
            .field("active", &self.active.load(Ordering::Relaxed))
            .finish()
    }
}

impl SendStream {
    /// Queues app audio: s16le bytes in the call's format, any length. Never blocks; if the
    /// hand-off queue is full the oldest chunk is dropped and counted.
    pub fn push_audio(&self, bytes: Vec<u8>) {
        self.audio.push(bytes);
    }

    /// Queues one frame (or any number of samples) of app audio.
    pub fn push_samples(&self, samples: &[i16]) {
        self.audio
            .push(samples.iter().flat_map(|s| s.to_le_bytes()).collect());
    }

    /// Opus packets, one per 20 ms while active and audio is queued. The transport reads these.
    pub fn packets(&self) -> &Receiver<EncodedPacket> {
        &self.packets
    }

    /// Status changes and "low on frames".
    pub fn events(&self) -> &Receiver<SendEvent> {
        &self.events
    }

    /// Called by the transport when the media path comes up (true) or goes down (false).
    pub fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::Relaxed);
    }

    /// The current send status.
    pub fn status(&self) -> SendStatus {
        if self.active.load(Ordering::Relaxed) {
            SendStatus::Active
        } else {
            SendStatus::Inactive
        }
    }

    /// Counters, readable while running.
    pub fn counters(&self) -> &SendCounters {
        &self.counters
    }

    /// The app audio layout.
    pub fn spec(&self) -> PcmSpec {
        self.spec
    }
}

/// The media of one call: outgoing stream, receive-stream registry and receive events.
pub struct CallMedia {
    id: u64,
    spec: PcmSpec,
    /// When the receive worker's slot 0 starts its work (the epoch less the work-ahead), and
    /// the worker's current slot for this call.
    receive_slot: Option<(Instant, Arc<AtomicUsize>)>,
    send: Option<SendStream>,
    registry: Option<StreamRegistry>,
    events: Option<Receiver<ReceiveEvent>>,
}

impl std::fmt::Debug for CallMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallMedia")
            .field("id", &self.id)
            .field("spec", &self.spec)
            .finish()
    }
}

impl CallMedia {
    /// When this call's received frames are produced: the receive worker starts the call's
    /// tick at this instant plus whole multiples of 20 ms ([`EngineConfig::work_ahead`] before
    /// the tick's deadline), and the frames are ready a fraction of a millisecond later. An
    /// application that polls for them just after gets each frame at once; its reply to a frame
    /// reaches the send tick, which follows [`REPLY_LEAD`] later, in the same period. `None`
    /// for a send-only call.
    ///
    /// The phase moves during a call: the receive worker puts the call's tick just after its
    /// packets arrive (and the send tick with it), so ask again every period.
    pub fn receive_phase(&self) -> Option<Instant> {
        self.receive_slot
            .as_ref()
            .map(|(epoch, slot)| *epoch + SUB_TICK * slot.load(Ordering::Relaxed) as u32)
    }

    /// Engine-unique id of the call.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The app audio layout.
    pub fn spec(&self) -> PcmSpec {
        self.spec
    }

    /// The outgoing stream, if the direction sends.
    pub fn send(&self) -> Option<&SendStream> {
        self.send.as_ref()
    }

    /// The receive-stream registry, if the direction receives.
    pub fn registry(&self) -> Option<&StreamRegistry> {
        self.registry.as_ref()
    }

    /// Per-tick receive output, if the direction receives.
    pub fn events(&self) -> Option<&Receiver<ReceiveEvent>> {
        self.events.as_ref()
    }
}

pub(crate) struct WorkerLink<C> {
    pub(crate) commands: Sender<C>,
    pub(crate) load: AtomicUsize,
    /// Which sub-slots the worker's calls use. Only the control plane (opening and closing
    /// calls) touches it; the worker learns a call's slot with the call.
    pub(crate) slots: Mutex<Slots>,
}

pub(crate) struct EngineShared {
    /// Where every worker's tick schedule starts.
    pub(crate) epoch: Instant,
    pub(crate) config: EngineConfig,
    pub(crate) stats: Arc<EngineStats>,
    pub(crate) send: Vec<WorkerLink<SendCommand>>,
    pub(crate) recv: Vec<WorkerLink<RecvCommand>>,
    pub(crate) recv_packets: Vec<DropOldest<Inbound>>,
    pub(crate) recv_dropped: Arc<Counter>,
    next_id: AtomicU64,
    /// Calls opened and not yet dropped.
    open_calls: AtomicUsize,
    /// What the engine admits and how much of it the open calls take.
    pub(crate) budget: Budget,
    /// Rung by the send workers when they queued packets.
    doorbell: Arc<Doorbell>,
}

/// The workers of an engine before they run.
struct Workers {
    send: Vec<(SendWorker, Receiver<SendCommand>)>,
    recv: Vec<(RecvWorker, Receiver<RecvCommand>, Receiver<Inbound>)>,
}

impl Workers {
    /// Does what the worker threads would have done by `now` (made-up time: the stepped
    /// engine and the engine's own tests).
    #[cfg_attr(not(any(test, feature = "_internal_test_exports")), allow(dead_code))]
    fn run_until(&mut self, now: Instant) {
        for (worker, commands) in &mut self.send {
            while let Ok(cmd) = commands.try_recv() {
                worker.handle(cmd);
            }
            worker.run_due(now);
        }
        for (worker, commands, packets) in &mut self.recv {
            while let Ok(cmd) = commands.try_recv() {
                worker.handle(cmd);
            }
            while let Ok(p) = packets.try_recv() {
                worker.ingest(p);
            }
            worker.run_due(now);
        }
    }
}

/// The workers of an engine started with [`Engine::start_stepped`], run by the caller.
#[cfg(feature = "_internal_test_exports")]
#[doc(hidden)]
pub struct SteppedWorkers {
    workers: Workers,
}

#[cfg(feature = "_internal_test_exports")]
impl std::fmt::Debug for SteppedWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SteppedWorkers")
            .field("send", &self.workers.send.len())
            .field("recv", &self.workers.recv.len())
            .finish()
    }
}

#[cfg(feature = "_internal_test_exports")]
impl SteppedWorkers {
    /// Does what the worker threads would have done by `now`: applies commands, takes in
    /// queued packets, and runs every tick due.
    pub fn run_until(&mut self, now: Instant) {
        self.workers.run_until(now);
    }

    /// The earliest tick any worker has due.
    pub fn next_deadline(&self) -> Instant {
        let send = self.workers.send.iter().map(|(w, _)| w.next_deadline());
        let recv = self.workers.recv.iter().map(|(w, _, _)| w.next_deadline());
        send.chain(recv)
            .min()
            .unwrap_or_else(|| unreachable!("an engine has workers"))
    }
}

/// The running engine: owns the worker threads. Dropping it stops them.
pub struct Engine {
    shared: Arc<EngineShared>,
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("threads", &self.threads.len())
            .finish()
    }
}

impl Engine {
    /// Starts the worker threads, after measuring the codec cost on this host unless
    /// [`EngineConfig::stream_cost`] gives it.
    pub fn start(config: EngineConfig) -> Result<Engine, EngineError> {
        let (mut engine, workers) = Engine::build(config, Instant::now())?;
        let config = engine.shared.config.clone();
        let ahead = config.work_ahead;
        if config.shared_threads {
            let pairs = workers.send.into_iter().zip(workers.recv);
            for (i, ((send, send_rx), (recv, recv_rx, packets))) in pairs.enumerate() {
                let both = both::Both {
                    send,
                    send_commands: send_rx,
                    recv,
                    recv_commands: recv_rx,
                    packets,
                };
                engine.spawn_worker(
                    format!("ap-work-{i}"),
                    config.realtime_priority,
                    move |stop| both::run(both, stop, ahead),
                )?;
            }
            return Ok(engine);
        }
        for (i, (worker, rx)) in workers.send.into_iter().enumerate() {
            engine.spawn_worker(
                format!("ap-send-{i}"),
                config.realtime_priority,
                move |stop| send::run(worker, rx, stop, ahead),
            )?;
        }
        // One step above the send threads: a receive tick is short and must not wait behind a
        // send thread's batch of encodes on the same core.
        let recv_prio = config.realtime_priority.map(|p| p.saturating_add(1));
        for (i, (worker, rx, prx)) in workers.recv.into_iter().enumerate() {
            engine.spawn_worker(format!("ap-recv-{i}"), recv_prio, move |stop| {
                recv::run(worker, rx, prx, stop, ahead)
            })?;
        }
        Ok(engine)
    }

    /// Starts one worker thread named `name`, raised to real-time `priority` (when allowed)
    /// before it runs `body` until the engine's stop flag is set.
    fn spawn_worker(
        &mut self,
        name: String,
        priority: Option<u8>,
        body: impl FnOnce(Arc<AtomicBool>) + Send + 'static,
    ) -> Result<(), EngineError> {
        let stop = self.stop.clone();
        let stats = self.shared.stats.clone();
        self.threads
            .push(std::thread::Builder::new().name(name).spawn(move || {
                promote_current_thread(priority, &stats);
                body(stop)
            })?);
        Ok(())
    }

    /// The engine's control plane and, instead of threads, its workers, whose ticks start at
    /// `epoch`: the caller runs them (the real threads in [`Engine::start`], made-up time in
    /// tests).
    fn build(config: EngineConfig, epoch: Instant) -> Result<(Engine, Workers), EngineError> {
        let cost = match config.stream_cost {
            Some(c) => c,
            None => StreamCost::measure(&config)?,
        };
        // With shared threads both directions have one worker per thread.
        let (send_workers, recv_workers, threads) = if config.shared_threads {
            let n = config.send_threads.max(config.receive_threads).max(1);
            (n, n, n)
        } else {
            let (s, r) = (config.send_threads.max(1), config.receive_threads.max(1));
            (s, r, s + r)
        };
        // The workers can use no more cores than there are threads.
        let cores = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(threads);
        let budget = Budget::new(cost, cores, config.admit_share);
        let stats = Arc::new(EngineStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let recv_dropped = Arc::new(Counter::default());
        let doorbell = Arc::new(Doorbell::default());
        let mut send_links = Vec::new();
        let mut workers = Workers {
            send: Vec::new(),
            recv: Vec::new(),
        };
        for _ in 0..send_workers {
            let (tx, rx) = crossbeam_channel::unbounded();
            send_links.push(WorkerLink {
                commands: tx,
                load: AtomicUsize::new(0),
                slots: Mutex::default(),
            });
            let mut worker = SendWorker::new(stats.clone(), config.clone(), epoch);
            worker.set_doorbell(doorbell.clone());
            workers.send.push((worker, rx));
        }
        let mut recv_links = Vec::new();
        let mut recv_packets = Vec::new();
        for _ in 0..recv_workers {
            let (tx, rx) = crossbeam_channel::unbounded();
            recv_links.push(WorkerLink {
                commands: tx,
                load: AtomicUsize::new(0),
                slots: Mutex::default(),
            });
            // Packets of all the worker's streams share one queue, sized for a burst of a
            // frame from every stream a busy worker might serve.
            let (ptx, prx) = DropOldest::new(config.queue_capacity * 64, recv_dropped.clone());
            recv_packets.push(ptx);
            let worker = RecvWorker::new(stats.clone(), config.clone(), epoch, epoch);
            workers.recv.push((worker, rx, prx));
        }
        let shared = Arc::new(EngineShared {
            epoch,
            config,
            stats,
            send: send_links,
            recv: recv_links,
            recv_packets,
            recv_dropped,
            next_id: AtomicU64::new(1),
            open_calls: AtomicUsize::new(0),
            budget,
            doorbell,
        });
        let engine = Engine {
            shared,
            threads: Vec::new(),
            stop,
        };
        Ok((engine, workers))
    }

    /// An engine whose workers run only when [`SteppedWorkers::run_until`] is called, with
    /// made-up time starting at `epoch`: the same control plane, queues and worker code as
    /// [`Engine::start`], for deterministic tests of whole calls.
    #[cfg(feature = "_internal_test_exports")]
    #[doc(hidden)]
    pub fn start_stepped(
        config: EngineConfig,
        epoch: Instant,
    ) -> Result<(Engine, SteppedWorkers), EngineError> {
        let (engine, workers) = Engine::build(config, epoch)?;
        Ok((engine, SteppedWorkers { workers }))
    }

    /// Timing figures and counters, readable while running.
    pub fn stats(&self) -> &EngineStats {
        &self.shared.stats
    }

    /// Calls whose media is open (a [`CallMedia`] not yet dropped).
    pub fn open_calls(&self) -> usize {
        self.shared.open_calls.load(Ordering::Relaxed)
    }

    /// What the engine admits on this host and how much of it the open calls take. Health
    /// reports and readiness read it to turn away calls before frames start missing.
    pub fn capacity(&self) -> Capacity {
        self.shared.budget.snapshot()
    }

    /// Makes `thread` the one the send workers unpark ([`std::thread::Thread::unpark`]) after
    /// they queued outgoing packets, and when a call's send stream closes: one thread can then
    /// take the packets of every call ([`SendStream::packets`]) without a thread per call, and
    /// without blocking on a queue a real-time worker feeds. Wake-ups are coalesced (one per
    /// worker pass, not per packet) and may be spurious, so the woken thread drains every
    /// call's queue. Returns false, changing nothing, when a thread is already registered.
    pub fn wake_on_packets(&self, thread: std::thread::Thread) -> bool {
        self.shared.doorbell.register(thread)
    }

    /// Packets dropped because a receive worker's inbound queue was full.
    pub fn inbound_dropped(&self) -> u64 {
        self.shared.recv_dropped.get()
    }

    /// Opens a call's media with app audio in `spec`, sending and/or receiving per
    /// `direction`. Closing happens when the returned value is dropped.
    ///
    /// The call reserves its outgoing stream and its first incoming stream from the engine's
    /// budget ([`Engine::capacity`]); if they do not fit, it fails at once with
    /// [`EngineError::OverCapacity`] and takes nothing.
    pub fn open_call(
        &self,
        spec: PcmSpec,
        direction: StreamDirection,
    ) -> Result<CallMedia, EngineError> {
        let sh = &self.shared;
        let cost = sh.budget.cost;
        let needed_us = u64::from(cost.send_us) * u64::from(direction.sends())
            + u64::from(cost.recv_us) * u64::from(direction.receives());
        if !sh.budget.reserve(needed_us) {
            let now = sh.budget.snapshot();
            return Err(EngineError::OverCapacity {
                needed_us,
                free_us: now.limit_us.saturating_sub(now.used_us),
                limit_us: now.limit_us,
                send_us: cost.send_us,
                recv_us: cost.recv_us,
            });
        }
        let id = sh.next_id.fetch_add(1, Ordering::Relaxed);
        let recv_worker = direction.receives().then(|| {
            let w = least_loaded(&sh.recv);
            (w, lock(&sh.recv[w].slots).take())
        });
        // The send tick follows the receive tick by REPLY_LEAD_SLOTS: a reply to the frame
        // just handed out (an echo, a relay) is encoded within the same period, not the next.
        let send_worker = direction.sends().then(|| {
            // On shared threads a call's send stream goes to the thread of its receive side.
            let w = match recv_worker {
                Some((r, _)) if sh.config.shared_threads => {
                    sh.send[r].load.fetch_add(1, Ordering::Relaxed);
                    r
                }
                _ => least_loaded(&sh.send),
            };
            let preferred = recv_worker.map_or(0, |(_, r)| (r + REPLY_LEAD_SLOTS) % SLOTS);
            (w, lock(&sh.send[w].slots).take_preferring(preferred))
        });
        // The receive worker moves the call's tick to its packets' arrival phase and publishes
        // it here; the send worker and the application's pump follow.
        let recv_slot = recv_worker.map(|(_, slot)| Arc::new(AtomicUsize::new(slot)));
        self.shared.open_calls.fetch_add(1, Ordering::Relaxed);
        let call = Arc::new(CallShared {
            id,
            send_worker,
            recv_worker,
            reserved_us: needed_us,
            engine: sh.clone(),
        });
        let mut media = CallMedia {
            id,
            spec,
            receive_slot: None,
            send: None,
            registry: None,
            events: None,
        };
        if let Some((w, slot)) = send_worker {
            let counters = Arc::new(SendCounters::default());
            let cap = sh.config.queue_capacity;
            let (audio, audio_rx) = DropOldest::new(cap * 4, counters.queue_dropped.clone());
            let (packets_tx, packets) = DropOldest::new(cap, counters.packets_dropped.clone());
            let (events_tx, events) = DropOldest::new(cap, Arc::new(Counter::default()));
            let active = Arc::new(AtomicBool::new(false));
            let mut stream = send::SendCall::new(
                &sh.config,
                id,
                spec,
                audio_rx,
                packets_tx,
                events_tx,
                active.clone(),
                counters.clone(),
            )?;
            stream.slot = slot;
            stream.follow(recv_slot.clone());
            sh.send[w]
                .commands
                .send(SendCommand::AddCall(Box::new(stream)))
                .map_err(|_| EngineError::ShutDown)?;
            media.send = Some(SendStream {
                audio,
                packets,
                events,
                active,
                counters,
                spec,
                _call: call.clone(),
            });
        }
        if let Some((w, slot)) = recv_worker {
            let (events_tx, events) =
                DropOldest::new(sh.config.queue_capacity * 4, Arc::new(Counter::default()));
            let mut recv_call = recv::RecvCall::new(&sh.config, id, spec, events_tx);
            recv_call.slot = slot;
            if let Some(published) = &recv_slot {
                recv_call.published_slot = published.clone();
                let slot0 = sh
                    .epoch
                    .checked_sub(sh.config.work_ahead)
                    .unwrap_or(sh.epoch);
                media.receive_slot = Some((slot0, published.clone()));
            }
            sh.recv[w]
                .commands
                .send(RecvCommand::AddCall(Box::new(recv_call)))
                .map_err(|_| EngineError::ShutDown)?;
            media.registry = Some(StreamRegistry::new(id, spec, sh.clone(), w, call.clone()));
            media.events = Some(events);
        }
        Ok(media)
    }
}

/// Locks a control-plane table; a panic elsewhere leaves the slot counts usable.
fn lock(m: &Mutex<Slots>) -> MutexGuard<'_, Slots> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn least_loaded<C>(links: &[WorkerLink<C>]) -> usize {
    let (i, link) = links
        .iter()
        .enumerate()
        .min_by_key(|(_, l)| l.load.load(Ordering::Relaxed))
        .unwrap_or_else(|| unreachable!("engine has at least one worker of each kind"));
    link.load.fetch_add(1, Ordering::Relaxed);
    i
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
