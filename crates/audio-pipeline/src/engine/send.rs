//! The send worker: frame player → upsampler → Opus encoder → packet queue, on deadlines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::phase;
use super::{
    Doorbell, DropOldest, EncodedPacket, EngineConfig, EngineError, EngineStats, REPLY_LEAD_SLOTS,
    SLOTS, SUB_TICK, SendCounters, SendEvent, SendStatus,
};
use crate::codec::{MAX_ENCODED_BYTES, OPUS_FRAME_SAMPLES, OpusEncoder};
use crate::frame::{OPUS_RATE, PcmSpec};
use crate::pacer::{FRAME, Pacer};
use crate::player::{FramePlayer, PlayerEvent, PlayerOutput};
use crate::resample::FrameResampler;

/// Control messages for a send worker.
pub(crate) enum SendCommand {
    AddCall(Box<SendCall>),
    RemoveCall(u64),
}

/// One call's outgoing stream, owned by a send worker.
pub(crate) struct SendCall {
    id: u64,
    pub(crate) slot: usize,
    player: FramePlayer,
    up: FrameResampler,
    encoder: OpusEncoder,
    app: Vec<i16>,
    pcm48: Vec<i16>,
    audio: Receiver<Vec<u8>>,
    packets: DropOldest<EncodedPacket>,
    events: DropOldest<SendEvent>,
    active: Arc<AtomicBool>,
    was_active: bool,
    counters: Arc<SendCounters>,
    packet: EncodedPacket,
    /// The receive slot this call's send tick follows, and the value last acted on.
    follows: Option<(Arc<AtomicUsize>, usize)>,
    last_served: Option<u64>,
    /// A serve that is waiting for the app's frame: its sub-tick index and deadline.
    waiting: Option<(u64, Instant)>,
    /// Whether the last serve sent a frame (the app is streaming).
    streaming: bool,
}

impl SendCall {
    #[allow(clippy::too_many_arguments)] // Internal constructor fed by Engine::open_call only.
    pub(crate) fn new(
        config: &EngineConfig,
        id: u64,
        spec: PcmSpec,
        audio: Receiver<Vec<u8>>,
        packets: DropOldest<EncodedPacket>,
        events: DropOldest<SendEvent>,
        active: Arc<AtomicBool>,
        counters: Arc<SendCounters>,
    ) -> Result<SendCall, EngineError> {
        Ok(SendCall {
            id,
            slot: 0,
            player: FramePlayer::new(spec, config.player),
            up: FrameResampler::new(config.resampler, spec.sample_rate, OPUS_RATE, spec.channels)?,
            encoder: OpusEncoder::new(spec.channels, &config.opus)?,
            app: vec![0; spec.samples_per_frame()],
            pcm48: vec![0; OPUS_FRAME_SAMPLES * usize::from(spec.channels)],
            audio,
            packets,
            events,
            active,
            was_active: false,
            counters,
            packet: EncodedPacket {
                data: [0; MAX_ENCODED_BYTES],
                len: 0,
                seq: 0,
                rtp_timestamp: 0,
                deadline: Instant::now(),
            },
            follows: None,
            last_served: None,
            waiting: None,
            streaming: false,
        })
    }

    /// Makes the send tick follow the call's receive tick (published by the receive worker)
    /// by [`REPLY_LEAD_SLOTS`], so a reply to a received frame goes out in the same period.
    pub(crate) fn follow(&mut self, receive_slot: Option<Arc<AtomicUsize>>) {
        self.follows = receive_slot.map(|s| {
            let now = s.load(Ordering::Relaxed);
            (s, now)
        });
    }
}

/// The sans-IO state of a send thread: its calls and its millisecond pacer.
pub(crate) struct SendWorker {
    calls: Vec<SendCall>,
    pacer: Pacer,
    stats: Arc<EngineStats>,
    slack: Duration,
    doorbell: Arc<Doorbell>,
}

impl SendWorker {
    pub(crate) fn new(stats: Arc<EngineStats>, config: EngineConfig, start: Instant) -> SendWorker {
        SendWorker {
            calls: Vec::new(),
            // Overdue sub-ticks are cheap (see `STALE_AFTER`), so a stalled worker walks
            // through up to a second of them and keeps every call's timeline; longer stalls
            // skip the rest.
            pacer: Pacer::with_period(start, FRAME / SLOTS as u32).with_max_catch_up(1000),
            stats,
            slack: config.deadline_slack,
            doorbell: Arc::default(),
        }
    }

    /// Rings `doorbell` after every pass that queued packets and when a call leaves.
    pub(crate) fn set_doorbell(&mut self, doorbell: Arc<Doorbell>) {
        self.doorbell = doorbell;
    }

    pub(crate) fn handle(&mut self, cmd: SendCommand) {
        match cmd {
            SendCommand::AddCall(call) => {
                // The slot was chosen by the control plane (`Engine::open_call`).
                self.calls.push(*call);
            }
            SendCommand::RemoveCall(id) => {
                if let Some(i) = self.calls.iter().position(|c| c.id == id) {
                    // Dropped here, closing its packet queue, before the consumer is woken
                    // to find it closed.
                    self.calls.swap_remove(i);
                    self.doorbell.ring();
                }
            }
        }
    }

    pub(crate) fn next_deadline(&self) -> Instant {
        self.pacer.poll_timeout()
    }

    /// Serves every sub-tick due at `now`.
    pub(crate) fn run_due(&mut self, now: Instant) {
        let before = self.pacer.skipped();
        let mut queued = false;
        while let Some(tick) = self.pacer.poll_tick(now) {
            let stale = tick.lateness > STALE_AFTER;
            self.follow_receive_ticks();
            for call in self.calls.iter_mut() {
                if let Some(behind) = phase::due_since(call.slot, call.last_served, tick.index) {
                    let turn = tick.index - behind;
                    call.last_served = Some(turn);
                    call.waiting = Some((turn, tick.deadline - SUB_TICK * behind as u32));
                }
                let Some((index, deadline)) = call.waiting else {
                    continue;
                };
                let waited = tick.index - index;
                if waited < MAX_WAIT_SUB_TICKS && call.streaming && !stale && !call.has_frame() {
                    continue;
                }
                call.waiting = None;
                // The wait was deliberate: lateness counts from the sub-tick it ended on.
                let deadline = deadline + FRAME / SLOTS as u32 * waited as u32;
                queued |= serve(call, deadline, stale, &self.stats, self.slack);
            }
        }
        self.stats.skipped_ticks.add(self.pacer.skipped() - before);
        if queued {
            self.doorbell.ring();
        }
    }

    /// Moves the send tick of every call whose receive tick moved: [`REPLY_LEAD_SLOTS`] after
    /// it, or a little later where that keeps the worker's load even.
    fn follow_receive_ticks(&mut self) {
        for i in 0..self.calls.len() {
            let Some((published, seen)) = &self.calls[i].follows else {
                continue;
            };
            let now = published.load(Ordering::Relaxed);
            if now == *seen {
                continue;
            }
            let mut load = [0usize; SLOTS];
            for c in &self.calls {
                load[c.slot] += 1;
            }
            let call = &mut self.calls[i];
            let preferred = (now + REPLY_LEAD_SLOTS) % SLOTS;
            call.slot = phase::balanced_slot(&load, call.slot, preferred, 3);
            if let Some((_, seen)) = call.follows.as_mut() {
                *seen = now;
            }
        }
    }
}

/// How many sub-ticks a send tick waits for the frame of an app that is streaming one frame
/// per period (an echo, a relay) when it has not come yet.
///
/// Such an app answers each received frame a few milliseconds before the send tick
/// ([`REPLY_LEAD_SLOTS`]); when a wake-up of its task comes late, the frame misses the tick.
/// Sending nothing then, and the frame at the next tick, would leave a gap and put the app one
/// frame behind for the rest of the call (the player does not drop audio to catch up). Waiting
/// costs the receiver a little jitter instead, and up to 9 ms it costs nothing audible: the
/// packet still comes over 10 ms before a receiver at the 20 ms playout floor plays it.
/// (With 3, an echo bot's normal-priority task missed the window often enough under a loaded
/// host that every scale-out call had a few such gaps; with 9 they went from 17-26 to 3-17
/// late packets per 30 calls.)
const MAX_WAIT_SUB_TICKS: u64 = 9;

/// A frame whose turn comes more than this after its deadline is played out of the queue but
/// not encoded or sent.
///
/// After a stall of the host, sending every overdue frame would cost the full codec work for
/// each, in a burst that makes every call on the worker late for several times the stall's
/// length; and the receiver, whose jitter buffer has already concealed those slots, would drop
/// them or grow its buffer (and the call's delay) to play them. Skipping them costs a player
/// tick each, so the worker is back on its deadlines one frame after the stall, and the damage
/// is the stall's own frames: a gap the receiver conceals. The RTP clock still advances over
/// the gap, so the receiver sees it as loss, not as a shift in time.
pub(crate) const STALE_AFTER: Duration = FRAME;

impl SendCall {
    /// Takes the app's queued audio into the player; true when a frame is ready to play.
    fn has_frame(&mut self) -> bool {
        self.absorb();
        self.player.queued_frames() > 0
    }

    fn absorb(&mut self) {
        let active = self.active.load(Ordering::Relaxed);
        while let Ok(chunk) = self.audio.try_recv() {
            if active {
                self.player.push_bytes(&chunk);
            } else {
                self.counters.dropped_inactive.incr();
            }
        }
    }
}

/// One frame period of one call. A `stale` frame is taken from the player (the app's audio
/// keeps its pace) but not encoded. True when a packet was queued.
fn serve(
    call: &mut SendCall,
    deadline: Instant,
    stale: bool,
    stats: &EngineStats,
    slack: Duration,
) -> bool {
    let t0 = Instant::now();
    let active = call.active.load(Ordering::Relaxed);
    if active != call.was_active {
        call.was_active = active;
        let status = if active {
            SendStatus::Active
        } else {
            SendStatus::Inactive
        };
        call.events.push(SendEvent::StatusChanged(status));
    }
    call.absorb();
    let before = call.player.stats();
    let out = call.player.tick(&mut call.app);
    let after = call.player.stats();
    call.counters
        .player_overflow
        .add(after.overflow_dropped - before.overflow_dropped);
    call.counters
        .queued_frames
        .set(call.player.queued_frames() as u64);
    if let Some(PlayerEvent::LowOnFrames { queued }) = call.player.poll_event() {
        call.events.push(SendEvent::LowOnFrames { queued });
    }
    // RTP time advances with wall-clock frames, sent or not.
    let rtp_timestamp = call.packet.rtp_timestamp;
    call.packet.rtp_timestamp = rtp_timestamp.wrapping_add(OPUS_FRAME_SAMPLES as u32);
    call.streaming = out == PlayerOutput::Frame;
    match out {
        PlayerOutput::Frame => {}
        PlayerOutput::Underrun => {
            call.counters.underruns.incr();
            return false;
        }
        PlayerOutput::Idle => return false,
    }
    if stale {
        call.counters.stale_skipped.incr();
        stats.send_stale_skipped.incr();
        return false;
    }
    let t1 = Instant::now();
    if call.up.process(&call.app, &mut call.pcm48).is_err() {
        call.counters.errors.incr();
        return false;
    }
    let t2 = Instant::now();
    let len = match call.encoder.encode(&call.pcm48, &mut call.packet.data) {
        Ok(n) => n,
        Err(_) => {
            call.counters.errors.incr();
            return false;
        }
    };
    let t3 = Instant::now();
    let mut packet = call.packet.clone();
    packet.len = len as u16;
    packet.rtp_timestamp = rtp_timestamp;
    packet.deadline = deadline;
    call.packet.seq = call.packet.seq.wrapping_add(1);
    call.packets.push(packet);
    let done = Instant::now();
    call.counters.packets.incr();
    stats.packets_sent.incr();
    stats.stage_resample_up.record(t2 - t1);
    stats.stage_encode.record(t3 - t2);
    stats.send_frame.record(done - t0);
    let late = done.saturating_duration_since(deadline);
    stats.send_lateness.record(late);
    if late > slack {
        stats.send_deadline_misses.incr();
    }
    true
}

/// The thread body: apply commands, serve what is due, sleep until the next sub-tick.
///
/// The worker never blocks on a channel: crossbeam's blocking receive registers with a waker
/// behind a lock that senders take too, so a sender preempted at normal priority could hold up
/// this real-time thread. Polling with `try_recv` and sleeping on the clock avoids that lock.
pub(crate) fn run(
    mut worker: SendWorker,
    commands: Receiver<SendCommand>,
    stop: Arc<AtomicBool>,
    ahead: Duration,
) {
    while !stop.load(Ordering::Relaxed) {
        while let Ok(cmd) = commands.try_recv() {
            worker.handle(cmd);
        }
        worker.run_due(Instant::now() + ahead);
        let wake = worker
            .next_deadline()
            .checked_sub(ahead)
            .unwrap_or_else(Instant::now);
        let wait = wake.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}
