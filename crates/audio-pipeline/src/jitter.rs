//! Per-stream jitter buffer: reorders received Opus packets and releases one 20 ms frame's
//! worth of playout decision per tick. Sans-IO: arrival and tick times are passed in.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::{OPUS_FRAME_SAMPLES, has_inband_fec};
use crate::delay_peaks::DelayPeaks;
use crate::frame::OPUS_RATE;
use crate::opus_packet::{self, OpusPacketError};
use crate::pacer::FRAME;
use crate::reception::ReceptionStats;

/// Ticks judged after the playout tick moved (see [`JitterBuffer::tick_moved`]).
const QUICK_WINDOW_TICKS: u32 = 5;

/// Ticks a stream must stay held beyond its target before quiet frames are dropped to bring
/// the delay down: long enough that a reordered packet or a two-packet clump is just played.
const QUIET_DROP_AFTER_TICKS: u32 = 5;

/// RTP timestamp units per 20 ms frame (Opus RTP always counts at 48 kHz).
const TS_PER_FRAME: i64 = OPUS_FRAME_SAMPLES as i64;

/// One received RTP audio packet, reduced to what the jitter buffer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpAudio {
    /// RTP sequence number.
    pub seq: u16,
    /// RTP timestamp (48 kHz units for Opus).
    pub timestamp: u32,
    /// Synchronization source; a change means a new stream.
    pub ssrc: u32,
    /// The Opus payload, shared with the transport's receive buffer (no copy).
    pub payload: Bytes,
}

/// Settings of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Smallest target depth in frames (the 20 ms floor is 1).
    pub min_depth_frames: u16,
    /// Largest target depth in frames.
    pub max_depth_frames: u16,
    /// Target depth while a stream starts (and after a resync), before its jitter has been
    /// measured. From the floor (the default), the buffer grows by concealing a tick whose
    /// packet is not there yet, and each such step shifts the stream's delay by a frame; on a
    /// 30 ms-jitter path that happens a few times in the first seconds. Starting deeper avoids
    /// those steps, but the held depth comes down only while it exceeds the target by more
    /// than two frames, so on a clean path a stream keeps this depth: 3 costs 40 ms of delay
    /// for the whole call. Worth it only where links are known to be jittery.
    /// Clamped to `min_depth_frames..=max_depth_frames`.
    pub start_depth_frames: u16,
    /// Packets held at most; also the widest sequence gap tolerated before a resync.
    pub capacity: u16,
    /// A timestamp that disagrees with the sequence number by more than this many frames
    /// means the sender restarted: the buffer resyncs.
    pub resync_jump_frames: u32,
    /// Ticks the target must stay below the current depth before the buffer drops a frame to
    /// shrink (growth is immediate).
    pub shrink_after_ticks: u32,
    /// Consecutive concealed ticks after which the buffer stops concealing and rebuffers.
    pub max_conceal_run: u16,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            min_depth_frames: 1,
            max_depth_frames: 25,
            start_depth_frames: 1,
            capacity: 64,
            resync_jump_frames: 250,
            shrink_after_ticks: 100,
            max_conceal_run: 10,
        }
    }
}

/// What happened to a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored for playout.
    Accepted,
    /// Stored, after the buffer reset itself for a new stream (SSRC change or timestamp jump).
    Resynced,
    /// Already held or played.
    Duplicate,
    /// Arrived after its playout time; dropped.
    Late,
    /// Not a valid Opus packet of at most 20 ms; dropped without reaching libopus.
    Malformed(MalformedReason),
}

/// Why a packet was refused as malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MalformedReason {
    /// The Opus structure is invalid.
    Structure(OpusPacketError),
    /// Valid Opus, but longer than one 20 ms frame.
    Duration(u32),
}

/// What the decoder should produce for this tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// Decode this packet.
    Packet(Bytes),
    /// The packet for this tick is lost; the next one carries FEC for it: decode it in FEC mode.
    Fec(Bytes),
    /// The packet for this tick is lost: run loss concealment.
    Conceal,
    /// Nothing to play (not started, rebuffering, or the stream went quiet): output silence.
    Silence,
}

/// Counters and gauges of a jitter buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JitterStats {
    /// Packets accepted.
    pub received: u64,
    /// Sequence numbers whose packet never arrived in time.
    pub lost: u64,
    /// Packets that arrived after their playout time.
    pub late: u64,
    /// Packets received twice.
    pub duplicate: u64,
    /// Malformed packets dropped.
    pub malformed: u64,
    /// Ticks filled by concealment (PLC or FEC).
    pub concealed: u64,
    /// Of those, ticks rebuilt from FEC.
    pub fec_recovered: u64,
    /// Packets dropped to shrink the depth or make room.
    pub dropped: u64,
    /// Resyncs (SSRC change, timestamp jump, or a sequence gap wider than the capacity).
    pub resyncs: u64,
    /// Frames currently held ahead of playout.
    pub depth_frames: u16,
    /// Target depth in frames.
    pub target_frames: u16,
    /// Frames held because the stream's hold-ups recur (0 while they do not): the buffer keeps
    /// at least this many beyond the next frame.
    pub peak_hold_frames: u16,
    /// Interarrival jitter (RFC 3550 A.8, [`ReceptionStats`]), milliseconds.
    pub jitter_ms: f64,
}

#[derive(Debug, Clone)]
struct Slot {
    ext_seq: u64,
    payload: Bytes,
    arrived: Instant,
}

/// An adaptive jitter buffer for one remote audio stream.
///
/// Packets are keyed by their extended (wrap-free) sequence number. Playout starts once the
/// target depth is buffered. When the packet due at a tick has not arrived and nothing newer
/// has either, the tick is concealed and the packet is still awaited, so the depth follows the
/// network's delay; when something newer has arrived the packet counts as lost and the tick is
/// concealed with FEC from its successor if that carries any, else with PLC. The target depth
/// starts at the floor, grows at once to about three times the measured RFC 3550 jitter, and
/// shrinks by a frame only after the target stayed lower for
/// [`JitterConfig::shrink_after_ticks`] ticks. While more than two frames above the target
/// are held (the stream was held up, then came in a burst), the excess goes: at the next pause
/// in one cut (a packet much smaller than the talker's louder ones is taken for a pause), or a
/// frame every quarter of that period when no pause comes. Hold-ups that recur within seconds
/// of each other (a host that stalls now and then) are ridden out instead: while they do, the
/// buffer keeps enough for the largest of the last two.
/// The slot array is allocated once; push and pop never allocate.
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    slots: Vec<Option<Slot>>,
    seen: Vec<u64>,
    ssrc: Option<u32>,
    /// Highest extended sequence number received, and its timestamp.
    highest: Option<(u64, u32)>,
    /// Next extended sequence number to play; `None` while (re)buffering.
    next_play: Option<u64>,
    /// Set by a resync; cleared by [`JitterBuffer::take_resync`].
    resync_pending: bool,
    /// The RFC 3550 figures of the packets accepted since the last resync; its jitter sizes
    /// the target depth.
    reception: ReceptionStats,
    target: u16,
    shrink_ticks: u32,
    /// Ticks the stream has been held beyond its target, without a break.
    excess_ticks: u32,
    /// Hold-ups the playout waited out, and whether they recur.
    peaks: DelayPeaks,
    /// Frames held while hold-ups recur (from `peaks`, as of the last tick).
    peak_hold: u16,
    /// The newest packet received: its extended sequence number, RTP timestamp and arrival.
    last_arrival: Option<(u64, u32, Instant)>,
    /// Ticks held beyond the target since a frame was last dropped for it.
    since_drop: u32,
    /// Size of the stream's louder packets (bytes, ×256): a slowly falling peak, against
    /// which a packet well under it is taken for a pause (see [`JitterBuffer::is_quiet`]).
    loud_bytes: u32,
    conceal_run: u16,
    last_hold: Option<Duration>,
    /// Shortest wait of a played packet since `held_ticks` was last reset (see
    /// [`JitterBuffer::note_hold`]).
    min_hold: Duration,
    held_ticks: u32,
    /// The playout tick moved: judge the next few ticks alone (see
    /// [`JitterBuffer::tick_moved`]).
    quick_window: bool,
    /// Ticks since a packet was found lost (counting up to the shrink window).
    since_loss: u32,
    stats: JitterStats,
}

impl JitterBuffer {
    /// An empty buffer.
    pub fn new(config: JitterConfig) -> JitterBuffer {
        let capacity = config.capacity.max(4);
        JitterBuffer {
            config: JitterConfig { capacity, ..config },
            slots: vec![None; usize::from(capacity)],
            seen: vec![u64::MAX; usize::from(capacity)],
            ssrc: None,
            highest: None,
            next_play: None,
            resync_pending: false,
            reception: ReceptionStats::new(OPUS_RATE),
            target: start_target(&config),
            shrink_ticks: 0,
            excess_ticks: 0,
            peaks: DelayPeaks::default(),
            peak_hold: 0,
            last_arrival: None,
            since_drop: 0,
            loud_bytes: 0,
            conceal_run: 0,
            last_hold: None,
            min_hold: Duration::MAX,
            held_ticks: 0,
            quick_window: false,
            since_loss: u32::MAX,
            stats: JitterStats::default(),
        }
    }

    /// Counters and gauges.
    pub fn stats(&self) -> JitterStats {
        JitterStats {
            depth_frames: self.depth(),
            target_frames: self.target,
            peak_hold_frames: self.peak_hold,
            jitter_ms: self.reception.jitter_ms(),
            ..self.stats
        }
    }

    /// RFC 3550 reception figures of the packets accepted since the last resync.
    pub fn reception(&self) -> &ReceptionStats {
        &self.reception
    }

    /// True once after each resync: the decoder should reset its state.
    pub fn take_resync(&mut self) -> bool {
        std::mem::take(&mut self.resync_pending)
    }

    /// Offers a received packet, which arrived at `now`.
    pub fn push(&mut self, packet: RtpAudio, now: Instant) -> PushOutcome {
        match opus_packet::parse(&packet.payload) {
            Err(e) => {
                self.stats.malformed += 1;
                return PushOutcome::Malformed(MalformedReason::Structure(e));
            }
            Ok(info) if info.duration_samples_48k() as usize > OPUS_FRAME_SAMPLES => {
                self.stats.malformed += 1;
                return PushOutcome::Malformed(MalformedReason::Duration(
                    info.duration_samples_48k(),
                ));
            }
            Ok(_) => {}
        }
        let mut resynced = false;
        if self.ssrc.is_some_and(|s| s != packet.ssrc) {
            self.resync();
            resynced = true;
        }
        self.ssrc = Some(packet.ssrc);

        let ext = match self.highest {
            None => (1u64 << 32) + u64::from(packet.seq),
            Some((high, high_ts)) => {
                let delta = i64::from(packet.seq.wrapping_sub(high as u16) as i16);
                let ts_delta = i64::from(packet.timestamp.wrapping_sub(high_ts) as i32);
                let skew = (ts_delta - delta * TS_PER_FRAME).abs();
                let cap = i64::from(self.config.capacity);
                if delta <= -cap {
                    // Older than anything the window remembers.
                    self.stats.late += 1;
                    return PushOutcome::Late;
                }
                if skew > i64::from(self.config.resync_jump_frames) * TS_PER_FRAME || delta >= cap {
                    self.resync();
                    resynced = true;
                    (1u64 << 32) + u64::from(packet.seq)
                } else {
                    (high as i64 + delta) as u64
                }
            }
        };

        let idx = self.index(ext);
        // `seen` remembers the last sequence number received per slot, played or not, so a
        // copy of a packet is a duplicate even after its payload left the buffer.
        if self.seen[idx] == ext {
            self.stats.duplicate += 1;
            return PushOutcome::Duplicate;
        }
        if self.next_play.is_some_and(|next| ext < next) {
            self.stats.late += 1;
            return PushOutcome::Late;
        }
        if self.slots[idx].is_some() {
            // The slot holds a packet one capacity older that was never played: it is stale.
            self.stats.dropped += 1;
        }
        self.seen[idx] = ext;
        self.reception.record(packet.seq, packet.timestamp, now);
        let bytes = (packet.payload.len() as u32) << 8;
        // The peak halves in about 3.5 s of quieter packets: it follows a talker who gets
        // softer, but a pause of a few seconds still reads as quiet against it.
        self.loud_bytes = bytes.max(self.loud_bytes - self.loud_bytes / 256);
        self.slots[idx] = Some(Slot {
            ext_seq: ext,
            payload: packet.payload,
            arrived: now,
        });
        self.stats.received += 1;
        if let Some((_, ts, at)) = self.last_arrival.filter(|(prev, ..)| ext == prev + 1) {
            // The time since the packet before it, less the audio between them: how long the
            // stream was held up, which playout needs as many frames held to ride out. (A
            // sender that went quiet, DTX, advanced its timestamps by the pause: no hold-up.)
            let waited = now.saturating_duration_since(at).as_micros() as i64;
            let media = i64::from(packet.timestamp.wrapping_sub(ts) as i32) * 1000 / 48;
            let late = waited.saturating_sub(media).max(0) as u128 / FRAME.as_micros();
            self.peaks
                .record(u16::try_from(late).unwrap_or(u16::MAX), now);
        }
        if self.last_arrival.is_none_or(|(prev, ..)| ext > prev) {
            self.last_arrival = Some((ext, packet.timestamp, now));
        }
        if self.highest.is_none_or(|(h, _)| ext > h) {
            self.highest = Some((ext, packet.timestamp));
        }
        // Keep the playout point within the slot window.
        if let Some(next) = self.next_play {
            let cap = u64::from(self.config.capacity);
            if ext >= next + cap {
                let new_next = ext + 1 - cap;
                for s in next..new_next {
                    self.skip(s);
                }
                self.next_play = Some(new_next);
            }
        }
        if resynced {
            PushOutcome::Resynced
        } else {
            PushOutcome::Accepted
        }
    }

    /// Decides what to play for the tick at `now` (call once per 20 ms).
    pub fn pop(&mut self, now: Instant) -> Playout {
        self.last_hold = None;
        let Some((highest, _)) = self.highest else {
            return Playout::Silence;
        };
        let next = match self.next_play {
            Some(n) => n,
            None => {
                // Buffering: start once the target depth of consecutive-or-not packets is held.
                let Some(lowest) = self.lowest_held() else {
                    return Playout::Silence;
                };
                if highest + 1 - lowest < u64::from(self.target) {
                    return Playout::Silence;
                }
                self.conceal_run = 0;
                lowest
            }
        };
        self.peak_hold = self.peaks.hold(now);
        // Adapting may drop the oldest frame: what plays is what it leaves.
        let next = self.adapt_depth(next, highest);
        self.next_play = Some(next);
        self.since_loss = self.since_loss.saturating_add(1);
        let idx = self.index(next);
        let mut spare_frame = false;
        let out = match self.slots[idx].take() {
            Some(slot) if slot.ext_seq == next => {
                self.conceal_run = 0;
                let hold = now.saturating_duration_since(slot.arrived);
                self.last_hold = Some(hold);
                spare_frame = self.note_hold(hold);
                Playout::Packet(slot.payload)
            }
            other => {
                self.slots[idx] = other;
                self.forget_holds();
                self.stats.concealed += 1;
                if next > highest {
                    // Nothing newer has arrived: the packet may only be late. Conceal this
                    // tick without giving up on it; the stream slips one frame, which is how
                    // the depth grows when the network's delay does.
                    self.conceal_run += 1;
                    if self.conceal_run > self.config.max_conceal_run {
                        // The stream went quiet (DTX, mute, hold): stop extrapolating and
                        // wait for packets again.
                        self.stats.concealed -= 1;
                        self.next_play = None;
                        return Playout::Silence;
                    }
                    return Playout::Conceal;
                }
                // A newer packet exists, so this one is lost.
                self.conceal_run = 0;
                self.since_loss = 0;
                self.stats.lost += 1;
                let after = self.index(next + 1);
                match &self.slots[after] {
                    Some(s) if s.ext_seq == next + 1 && has_inband_fec(&s.payload) => {
                        self.stats.fec_recovered += 1;
                        Playout::Fec(s.payload.clone())
                    }
                    _ => Playout::Conceal,
                }
            }
        };
        self.next_play = Some(next + 1);
        if spare_frame {
            // Every packet of the window waited a whole frame longer than the target needs
            // (the stream slipped behind a late packet once and stayed there): skip the next
            // frame, so the stream's delay comes back down by one frame.
            let skip = next + 1;
            let idx = self.index(skip);
            if self.slots[idx].as_ref().is_some_and(|s| s.ext_seq == skip) {
                self.slots[idx] = None;
                self.stats.dropped += 1;
                self.next_play = Some(skip + 1);
            }
        }
        out
    }

    /// Tracks the shortest wait of the played packets over a window of
    /// [`JitterConfig::shrink_after_ticks`] ticks without concealment. True when the window
    /// closes with every packet having waited at least the target depth: one frame of the
    /// held delay is not needed. The depth adaptation above shrinks the *target* when jitter
    /// falls; this catches a buffer held deeper than its target by the way playout started or
    /// slipped, which the depth count alone cannot tell from jitter.
    fn note_hold(&mut self, hold: Duration) -> bool {
        self.min_hold = self.min_hold.min(hold);
        self.held_ticks += 1;
        let window = if self.quick_window {
            QUICK_WINDOW_TICKS
        } else {
            self.config.shrink_after_ticks.max(1)
        };
        if self.held_ticks < window {
            return false;
        }
        // A frame held beyond the target after losses is what lets in-band FEC from the next
        // packet replace a lost one: kept while packets go missing.
        let spare = self.min_hold >= FRAME * u32::from(self.target.max(self.peak_hold))
            && self.since_loss >= self.config.shrink_after_ticks;
        self.forget_holds();
        self.quick_window = false;
        spare
    }

    /// Tells the buffer its playout ticks now come at another phase of the frame period (the
    /// engine moved the call's tick toward another stream's packets, or back). A stream whose
    /// packets now arrive just after the tick is played a frame later than it could be (the
    /// packet of this period waits for the next tick while the last one plays); the next few
    /// ticks are judged on their own, so such a stream drops its spare frame within about
    /// 100 ms instead of after a whole window.
    pub fn tick_moved(&mut self) {
        self.forget_holds();
        self.quick_window = true;
    }

    fn forget_holds(&mut self) {
        self.min_hold = Duration::MAX;
        self.held_ticks = 0;
    }

    /// How long the packet played by the last [`JitterBuffer::pop`] waited here, from its
    /// arrival to that tick; `None` when the tick played no packet.
    pub fn last_hold(&self) -> Option<Duration> {
        self.last_hold
    }

    /// Frames held from the playout point to the newest packet.
    fn depth(&self) -> u16 {
        match (self.highest, self.next_play) {
            (Some((h, _)), Some(n)) if h >= n => (h + 1 - n).min(u64::from(u16::MAX)) as u16,
            (Some(_), None) => self.slots.iter().flatten().count() as u16,
            _ => 0,
        }
    }

    /// Moves the target depth toward the measured jitter; returns the frame to play at this
    /// tick, `next` or a later one when held frames beyond the target were dropped.
    fn adapt_depth(&mut self, next: u64, highest: u64) -> u64 {
        // About three jitters of headroom, rounded up to frames.
        let want = ((3.0 * self.reception.jitter_units() / TS_PER_FRAME as f64).ceil() as u16)
            .clamp(
                self.config.min_depth_frames.max(1),
                self.config.max_depth_frames,
            );
        if want > self.target {
            self.target = want;
            self.shrink_ticks = 0;
        } else if want < self.target {
            self.shrink_ticks += 1;
            if self.shrink_ticks >= self.config.shrink_after_ticks {
                self.target -= 1;
                self.shrink_ticks = 0;
            }
        } else {
            self.shrink_ticks = 0;
        }
        // Held well beyond the target for a while (after a burst, or after shrinking): drop
        // frames so latency comes down; a short burst is simply played out.
        // While hold-ups recur, enough is kept for the next to be played from the buffer (its
        // frames, the one playing, and one of margin).
        let limit = (u64::from(self.target) + 2).max(u64::from(self.peak_hold) + 2);
        let excess = (highest + 1).saturating_sub(next).saturating_sub(limit);
        self.excess_ticks = if excess > 0 { self.excess_ticks + 1 } else { 0 };
        self.since_drop = if excess > 0 { self.since_drop + 1 } else { 0 };
        if self.excess_ticks >= QUIET_DROP_AFTER_TICKS && self.is_quiet(next) {
            // Leaving out part of a pause is not heard. As much of it as the excess allows
            // goes in one cut, so the delay takes one step, not one per tick.
            let mut end = next;
            while end < next + excess && self.is_quiet(end) {
                self.skip(end);
                end += 1;
            }
            self.since_drop = 0;
            return end;
        }
        if self.since_drop < self.config.shrink_after_ticks / 4 {
            return next;
        }
        // No pause came for a while (a steady tone, a talker who never stops): cut a frame.
        self.since_drop = 0;
        self.skip(next);
        next + 1
    }

    /// Leaves frame `ext` unplayed: dropped if held, else counted lost.
    fn skip(&mut self, ext: u64) {
        let idx = self.index(ext);
        if self.slots[idx].as_ref().is_some_and(|s| s.ext_seq == ext) {
            self.slots[idx] = None;
            self.stats.dropped += 1;
        } else {
            self.stats.lost += 1;
        }
    }

    /// True when frame `ext` is held and its packet is well under the size of the stream's
    /// louder ones. A VBR speech codec spends few bytes on a pause (Opus at 32 kb/s: 20-40
    /// bytes against 70-130 for speech), so the size tells a pause without decoding.
    fn is_quiet(&self, ext: u64) -> bool {
        self.slots[self.index(ext)]
            .as_ref()
            .is_some_and(|s| s.ext_seq == ext && (s.payload.len() as u32) << 9 <= self.loud_bytes)
    }

    fn lowest_held(&self) -> Option<u64> {
        self.slots.iter().flatten().map(|s| s.ext_seq).min()
    }

    fn index(&self, ext: u64) -> usize {
        (ext % u64::from(self.config.capacity)) as usize
    }

    fn resync(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = None);
        self.seen.iter_mut().for_each(|s| *s = u64::MAX);
        self.highest = None;
        self.next_play = None;
        self.reception.reset();
        self.target = start_target(&self.config);
        self.shrink_ticks = 0;
        self.excess_ticks = 0;
        self.peaks.reset();
        self.peak_hold = 0;
        self.last_arrival = None;
        self.since_drop = 0;
        self.loud_bytes = 0;
        self.conceal_run = 0;
        self.forget_holds();
        self.resync_pending = true;
        self.stats.resyncs += 1;
    }
}

/// The target depth a stream starts with.
fn start_target(config: &JitterConfig) -> u16 {
    let floor = config.min_depth_frames.max(1);
    config
        .start_depth_frames
        .clamp(floor, config.max_depth_frames.max(floor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const PLAIN: &[u8] = &[0x08, 0x00, 0x11];
    const WITH_FEC: &[u8] = &[0x08, 0x40, 0x22];

    struct Rig {
        jb: JitterBuffer,
        t0: Instant,
    }

    impl Rig {
        /// A buffer that starts at the 20 ms floor, so each test sees its packets at once.
        fn new() -> Rig {
            Rig::with(JitterConfig {
                start_depth_frames: 1,
                ..JitterConfig::default()
            })
        }
        fn with(config: JitterConfig) -> Rig {
            Rig {
                jb: JitterBuffer::new(config),
                t0: Instant::now(),
            }
        }
        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }
        fn push_at(&mut self, seq: u16, ms: u64, payload: &'static [u8]) -> PushOutcome {
            self.push_full(seq, u32::from(seq).wrapping_mul(960), 7, ms, payload)
        }
        fn push_full(
            &mut self,
            seq: u16,
            ts: u32,
            ssrc: u32,
            ms: u64,
            payload: &'static [u8],
        ) -> PushOutcome {
            let now = self.at(ms);
            self.jb.push(
                RtpAudio {
                    seq,
                    timestamp: ts,
                    ssrc,
                    payload: Bytes::from_static(payload),
                },
                now,
            )
        }
        fn pop_at(&mut self, ms: u64) -> Playout {
            let now = self.at(ms);
            self.jb.pop(now)
        }
    }

    fn tagged(seq: u16) -> &'static [u8] {
        // A distinct valid payload per sequence number, so tests can tell packets apart.
        Box::leak(vec![0x08, 0x00, seq as u8, (seq >> 8) as u8].into_boxed_slice())
    }

    fn seq_of(p: &Playout) -> Option<u16> {
        match p {
            Playout::Packet(b) => Some(u16::from(b[2]) | u16::from(b[3]) << 8),
            _ => None,
        }
    }

    #[test]
    fn in_order_stream_plays_every_packet() {
        let mut r = Rig::new();
        let mut played = Vec::new();
        for i in 0..100u16 {
            assert_eq!(
                r.push_at(i, u64::from(i) * 20, tagged(i)),
                PushOutcome::Accepted
            );
            played.extend(seq_of(&r.pop_at(u64::from(i) * 20 + 1)));
        }
        assert_eq!(played, (0..100).collect::<Vec<_>>());
        let s = r.jb.stats();
        assert_eq!((s.received, s.lost, s.concealed, s.late), (100, 0, 0, 0));
        assert_eq!(s.target_frames, 1);
    }

    #[test]
    fn a_played_packet_reports_how_long_it_waited() {
        let mut r = Rig::new();
        r.push_at(0, 5, tagged(0));
        r.push_at(1, 27, tagged(1));
        assert_eq!(seq_of(&r.pop_at(20)), Some(0));
        assert_eq!(r.jb.last_hold(), Some(Duration::from_millis(15)));
        assert_eq!(seq_of(&r.pop_at(40)), Some(1));
        assert_eq!(r.jb.last_hold(), Some(Duration::from_millis(13)));
        // Packet 2 never came: the tick is concealed and nothing was held.
        assert!(matches!(r.pop_at(60), Playout::Conceal));
        assert_eq!(r.jb.last_hold(), None);
    }

    #[test]
    fn a_stream_that_slipped_behind_one_late_packet_comes_back_a_frame() {
        // Packets every 20 ms, ticks 1 ms after each arrival; packet 10 is 5 ms late, misses
        // its tick, and from then on every packet waits 21 ms instead of 1.
        let mut r = Rig::new();
        let mut holds = Vec::new();
        for i in 0..400u16 {
            let tick = u64::from(i) * 20 + 1;
            if i == 10 {
                let _ = r.pop_at(tick);
                r.push_at(i, tick + 5, tagged(i));
            } else {
                r.push_at(i, u64::from(i) * 20, tagged(i));
                let _ = r.pop_at(tick);
            }
            holds.push(r.jb.last_hold().map(|h| h.as_millis()));
        }
        assert_eq!(holds[5], Some(1));
        assert_eq!(holds[10], None, "the late packet's tick is concealed");
        assert_eq!(holds[12], Some(21), "the stream slipped a frame");
        // Within two windows of 100 ticks the spare frame is dropped, once.
        assert!(holds[250..].iter().all(|&h| h == Some(1)), "{holds:?}");
        let s = r.jb.stats();
        assert_eq!((s.concealed, s.dropped, s.lost), (1, 1, 0));
        // A buffer playing at its target is left alone: the original 1 ms wait stays.
        let mut r = Rig::new();
        for i in 0..400u16 {
            r.push_at(i, u64::from(i) * 20, tagged(i));
            let _ = r.pop_at(u64::from(i) * 20 + 19);
        }
        assert_eq!(r.jb.stats().dropped, 0);
        assert_eq!(r.jb.last_hold(), Some(Duration::from_millis(19)));
    }

    #[test]
    fn starting_deeper_spares_a_jittery_stream_its_delay_steps() {
        // Packets every 20 ms, each up to 30 ms late, in order (a queue that varies but never
        // lets one overtake another), and ticks 5 ms after each nominal arrival.
        let late = [0u64, 25, 30, 12, 3, 28, 30, 7, 19, 30, 1, 22];
        let mut runs = Vec::new();
        for config in [
            JitterConfig {
                start_depth_frames: 3,
                ..JitterConfig::default()
            },
            JitterConfig::default(),
        ] {
            let mut r = Rig::with(config);
            let (mut due, mut last) = (Vec::new(), 0u64);
            for i in 0..150u64 {
                last = last.max(i * 20 + late[i as usize % late.len()]);
                due.push(last);
            }
            let mut k = 0;
            let mut played = Vec::new();
            for tick in 0..160u64 {
                let now = tick * 20 + 5;
                while k < due.len() && due[k] <= now {
                    r.push_at(k as u16, due[k], tagged(k as u16));
                    k += 1;
                }
                played.extend(seq_of(&r.pop_at(now)));
                if played.len() == due.len() {
                    break;
                }
            }
            // Every packet plays, in order.
            assert_eq!(played, (0..150).collect::<Vec<_>>(), "{config:?}");
            runs.push(r.jb.stats().concealed);
        }
        // Started three frames deep the buffer never had to grow; started at the floor (the
        // default) it grew by concealing, each step a jump of the delay.
        assert_eq!(runs[0], 0, "{runs:?}");
        assert!(runs[1] > 0, "{runs:?}");
    }

    #[test]
    fn reordered_packets_play_in_sequence() {
        let mut r = Rig::new();
        for (k, seq) in [2u16, 0, 1, 4, 3].into_iter().enumerate() {
            r.push_at(seq, k as u64, tagged(seq));
        }
        let played: Vec<_> = (0..5).filter_map(|k| seq_of(&r.pop_at(10 + k))).collect();
        assert_eq!(played, vec![0, 1, 2, 3, 4]);
        assert_eq!(r.jb.stats().lost, 0);
    }

    #[test]
    fn duplicates_are_dropped_before_and_after_playout() {
        let mut r = Rig::new();
        assert_eq!(r.push_at(0, 0, tagged(0)), PushOutcome::Accepted);
        assert_eq!(r.push_at(0, 1, tagged(0)), PushOutcome::Duplicate);
        assert_eq!(seq_of(&r.pop_at(2)), Some(0));
        assert_eq!(r.push_at(0, 3, tagged(0)), PushOutcome::Duplicate);
        assert_eq!(r.jb.stats().duplicate, 2);
        assert_eq!(r.jb.stats().received, 1);
    }

    #[test]
    fn late_packet_is_counted_and_dropped() {
        let mut r = Rig::new();
        r.push_at(0, 0, tagged(0));
        r.pop_at(1);
        r.push_at(2, 40, tagged(2));
        assert_eq!(r.pop_at(41), Playout::Conceal); // seq 1 missing, 2 has no FEC flag
        assert_eq!(r.push_at(1, 45, tagged(1)), PushOutcome::Late);
        assert_eq!(seq_of(&r.pop_at(61)), Some(2));
        let s = r.jb.stats();
        assert_eq!((s.late, s.lost, s.concealed), (1, 1, 1));
    }

    #[test]
    fn loss_uses_fec_when_the_next_packet_has_it() {
        let mut r = Rig::new();
        r.push_at(0, 0, PLAIN);
        assert!(matches!(r.pop_at(1), Playout::Packet(_)));
        r.push_at(2, 40, WITH_FEC);
        assert_eq!(r.pop_at(41), Playout::Fec(Bytes::from_static(WITH_FEC)));
        assert_eq!(r.pop_at(61), Playout::Packet(Bytes::from_static(WITH_FEC)));
        let s = r.jb.stats();
        assert_eq!((s.lost, s.concealed, s.fec_recovered), (1, 1, 1));
    }

    #[test]
    fn sequence_wrap_is_seamless() {
        let mut r = Rig::new();
        let mut played = Vec::new();
        for k in 0..20u16 {
            let seq = 65_530u16.wrapping_add(k);
            r.push_at(seq, u64::from(k) * 20, tagged(seq));
            played.extend(seq_of(&r.pop_at(u64::from(k) * 20 + 1)));
        }
        let expected: Vec<u16> = (0..20u16).map(|k| 65_530u16.wrapping_add(k)).collect();
        assert_eq!(played, expected);
        assert_eq!(r.jb.stats().lost, 0);
    }

    #[test]
    fn ssrc_change_and_timestamp_jump_resync() {
        let mut r = Rig::new();
        for i in 0..5u16 {
            r.push_at(i, u64::from(i) * 20, tagged(i));
            r.pop_at(u64::from(i) * 20 + 1);
        }
        assert!(!r.jb.take_resync());
        // New sender: different SSRC and unrelated numbering.
        assert_eq!(
            r.push_full(9000, 123, 8, 100, tagged(9000)),
            PushOutcome::Resynced
        );
        assert!(r.jb.take_resync());
        assert!(!r.jb.take_resync());
        assert_eq!(seq_of(&r.pop_at(101)), Some(9000));
        // Same SSRC, next sequence number, but the timestamp leaps 100 s.
        assert_eq!(
            r.push_full(9001, 123 + 4_800_000, 8, 120, tagged(9001)),
            PushOutcome::Resynced
        );
        assert_eq!(seq_of(&r.pop_at(121)), Some(9001));
        assert_eq!(r.jb.stats().resyncs, 2);
        assert_eq!(r.jb.stats().lost, 0);
    }

    #[test]
    fn malformed_and_overlong_packets_never_enter() {
        let mut r = Rig::new();
        assert!(matches!(r.push_at(0, 0, &[]), PushOutcome::Malformed(_)));
        assert!(matches!(
            r.push_at(1, 0, &[0x08 | 3, 0]),
            PushOutcome::Malformed(_)
        ));
        // 40 ms SILK packet.
        assert_eq!(
            r.push_at(2, 0, &[0x10, 0]),
            PushOutcome::Malformed(MalformedReason::Duration(1920))
        );
        assert_eq!(r.jb.stats().malformed, 3);
        assert_eq!(r.pop_at(1), Playout::Silence);
    }

    #[test]
    fn depth_grows_with_jitter_and_shrinks_slowly() {
        let mut r = Rig::new();
        // Packets every 20 ms on average but alternating 0 / 40 ms late.
        let mut t = 0u64;
        for i in 0..200u16 {
            let jitter = if i % 2 == 0 { 0 } else { 40 };
            r.push_at(i, u64::from(i) * 20 + jitter, tagged(i));
            r.pop_at(t);
            t += 20;
        }
        let grown = r.jb.stats();
        assert!(grown.jitter_ms > 10.0, "jitter {}", grown.jitter_ms);
        assert!(grown.target_frames >= 3, "target {}", grown.target_frames);
        // Then a perfectly regular stream: the target comes down, one frame at a time.
        let mut targets = Vec::new();
        for i in 200..800u16 {
            r.push_at(i, u64::from(i) * 20 + 40, tagged(i));
            r.pop_at(t);
            t += 20;
            targets.push(r.jb.stats().target_frames);
        }
        assert!(
            targets.windows(2).all(|w| w[1] + 1 >= w[0]),
            "shrinks at most one frame per step"
        );
        assert_eq!(*targets.last().unwrap(), 1);
        assert!(targets[50] > 1, "must not collapse at once");
    }

    /// A valid payload of `len` bytes (at least 4) tagged with its sequence number.
    fn sized(seq: u16, len: usize) -> &'static [u8] {
        let mut p = vec![0u8; len.max(4)];
        p[..4].copy_from_slice(&[0x08, 0x00, seq as u8, (seq >> 8) as u8]);
        Box::leak(p.into_boxed_slice())
    }

    /// Speech as a VBR codec sends it: 360 ms of 100-byte packets, then a 140 ms pause of
    /// 30-byte ones.
    fn speech_size(seq: u16) -> usize {
        if seq % 25 < 18 { 100 } else { 30 }
    }

    /// One tick of [`play`]: when, what played, and the depth and target after it.
    struct Tick {
        ms: u64,
        out: Playout,
        depth: u16,
        target: u16,
    }

    /// Plays a stream whose packet `i` (of `size(i)` bytes) arrives at `arrival(i)` ms
    /// (never decreasing), with a tick every 20 ms, 10 ms after the packets' pace, until
    /// `end_ms`.
    fn play(
        r: &mut Rig,
        size: impl Fn(u16) -> usize,
        arrival: impl Fn(u16) -> u64,
        end_ms: u64,
    ) -> Vec<Tick> {
        let mut seq = 0u16;
        let mut ticks = Vec::new();
        for ms in (10..end_ms).step_by(20) {
            while arrival(seq) <= ms {
                r.push_at(seq, arrival(seq), sized(seq, size(seq)));
                seq += 1;
            }
            let out = r.pop_at(ms);
            let s = r.jb.stats();
            ticks.push(Tick {
                ms,
                out,
                depth: s.depth_frames,
                target: s.target_frames,
            });
        }
        ticks
    }

    /// Where the played sequence skips: (tick, last played before, first played after).
    fn cuts_of(ticks: &[Tick]) -> Vec<(u64, u16, u16)> {
        let played: Vec<(u64, u16)> = ticks
            .iter()
            .filter_map(|t| seq_of(&t.out).map(|s| (t.ms, s)))
            .collect();
        played
            .windows(2)
            .filter(|w| w[1].1 != w[0].1 + 1)
            .map(|w| (w[1].0, w[0].1, w[1].1))
            .collect()
    }

    /// Packets on time every 20 ms, except that those due during each hold-up (start, length
    /// in ms) come together when it ends.
    fn held_up(seq: u16, holds: &[(u64, u64)]) -> u64 {
        let due = u64::from(seq) * 20;
        holds
            .iter()
            .find(|(start, len)| due >= *start && due < start + len)
            .map_or(due, |(start, len)| start + len)
    }

    #[test]
    fn a_held_up_stream_drains_its_excess_at_the_next_pause_in_one_cut() {
        let mut r = Rig::new();
        // One 200 ms hold-up, in the middle of a stretch of speech.
        let ticks = play(&mut r, speech_size, |i| held_up(i, &[(2000, 200)]), 5000);
        let after: Vec<&Tick> = ticks.iter().filter(|t| t.ms > 2200).collect();
        assert!(
            after[0].depth >= after[0].target + 6,
            "the hold-up left an excess: depth {} target {}",
            after[0].depth,
            after[0].target
        );
        // Every packet after the burst is played or left out whole: nothing concealed.
        assert!(
            after.iter().all(|t| matches!(t.out, Playout::Packet(_))),
            "a frame was concealed after the burst"
        );
        // By the end of the next pause (2.36-2.5 s) the excess is gone...
        let drained = after.iter().position(|t| t.depth <= t.target + 2).unwrap();
        assert!(
            after[drained].ms <= 2600,
            "drained at {} ms",
            after[drained].ms
        );
        // ... in one cut; and what is cut, then or later as the target shrinks, is pause:
        // every speech frame was played.
        let cuts = cuts_of(&ticks);
        let by_then = cuts.iter().filter(|c| c.0 <= after[drained].ms).count();
        assert_eq!(by_then, 1, "cuts {cuts:?}");
        assert!(
            cuts.iter()
                .all(|(_, from, to)| (from + 1..*to).all(|s| speech_size(s) == 30)),
            "speech cut: {cuts:?}"
        );
        let cut: u16 = cuts.iter().map(|(_, from, to)| to - from - 1).sum();
        assert_eq!(r.jb.stats().dropped, u64::from(cut));
    }

    #[test]
    fn a_talker_who_never_pauses_is_drained_a_frame_at_a_time() {
        let mut r = Rig::new();
        let ticks = play(&mut r, |_| 100, |i| held_up(i, &[(2000, 200)]), 8000);
        let after: Vec<&Tick> = ticks.iter().filter(|t| t.ms > 2200).collect();
        assert!(after.iter().all(|t| matches!(t.out, Playout::Packet(_))));
        let cuts: Vec<u16> = cuts_of(&ticks)
            .iter()
            .map(|(_, from, to)| to - from - 1)
            .collect();
        assert!(
            cuts.len() >= 4 && cuts.iter().all(|g| *g == 1),
            "cuts {cuts:?}"
        );
        let last = after.last().unwrap();
        assert!(
            last.depth <= last.target + 2,
            "depth {} target {}",
            last.depth,
            last.target
        );
    }

    #[test]
    fn hold_ups_that_recur_are_ridden_out_from_the_buffer() {
        let mut r = Rig::new();
        let holds = [(1000, 160), (3000, 160), (5000, 160), (7000, 160)];
        let ticks = play(&mut r, speech_size, |i| held_up(i, &holds), 16_000);
        let concealed_in = |from: u64| {
            ticks
                .iter()
                .filter(|t| t.ms >= from && t.ms < from + 400 && t.out == Playout::Conceal)
                .count()
        };
        // The first is waited out, and the second partly (the buffer had drained since)...
        assert!(concealed_in(1000) >= 5, "{}", concealed_in(1000));
        assert!(concealed_in(3000) >= 1, "{}", concealed_in(3000));
        // ... then the buffer holds enough for the next ones.
        assert_eq!((concealed_in(5000), concealed_in(7000)), (0, 0));
        assert!(
            r.jb.stats().peak_hold_frames == 0,
            "the hold ends when they stop"
        );
        let last = ticks.last().unwrap();
        assert!(last.depth <= last.target + 2, "and the buffer drains");
        let held = ticks.iter().find(|t| t.ms == 6990).unwrap();
        assert!(held.depth >= 8, "held {}", held.depth);
    }

    #[test]
    fn pauses_of_a_dtx_sender_are_not_hold_ups() {
        // 1 s of packets, then 400 ms without any, four times over; `skips` says whether the
        // timestamps account for the gap (a sender that went quiet) or not (a held-up stream).
        let hold_after = |skips: bool| {
            let mut r = Rig::new();
            let (mut seq, mut at, mut ts) = (0u16, 0u64, 0u32);
            for _ in 0..4 {
                for _ in 0..50 {
                    r.push_full(seq, ts, 7, at, PLAIN);
                    r.pop_at(at + 10);
                    seq += 1;
                    at += 20;
                    ts = ts.wrapping_add(960);
                }
                at += 400;
                if skips {
                    ts = ts.wrapping_add(400 * 48);
                }
            }
            r.jb.stats().peak_hold_frames
        };
        assert_eq!(hold_after(true), 0);
        assert!(hold_after(false) >= 20, "{}", hold_after(false));
    }

    #[test]
    fn quiet_stream_stops_concealing_and_rebuffers() {
        let mut r = Rig::new();
        r.push_at(0, 0, tagged(0));
        r.pop_at(1);
        let outs: Vec<Playout> = (1..30).map(|k| r.pop_at(1 + k * 20)).collect();
        let conceals = outs.iter().filter(|p| **p == Playout::Conceal).count();
        assert_eq!(
            conceals,
            usize::from(JitterConfig::default().max_conceal_run)
        );
        assert_eq!(*outs.last().unwrap(), Playout::Silence);
        // The stream comes back further on and plays again.
        r.push_at(40, 900, tagged(40));
        assert_eq!(seq_of(&r.pop_at(901)), Some(40));
    }

    proptest::proptest! {
        // Arbitrary packet sequences: never panics, and the counters stay consistent.
        #[test]
        fn arbitrary_sequences_keep_invariants(
            ops in proptest::collection::vec((proptest::prelude::any::<u16>(), 0u32..4, 0u8..3, proptest::prelude::any::<bool>()), 0..300)
        ) {
            let mut r = Rig::new();
            let mut t = 0u64;
            let mut pushed = 0u64;
            for (seq, ssrc, kind, pop) in ops {
                let payload: &'static [u8] = match kind { 0 => PLAIN, 1 => WITH_FEC, _ => &[0xff, 0xff] };
                let out = r.push_full(seq, u32::from(seq).wrapping_mul(960), ssrc, t, payload);
                pushed += 1;
                if let PushOutcome::Malformed(_) = out { proptest::prop_assert_eq!(kind, 2); }
                if pop { r.pop_at(t); t += 20; }
            }
            let s = r.jb.stats();
            proptest::prop_assert_eq!(s.received + s.duplicate + s.late + s.malformed, pushed);
            proptest::prop_assert!(s.fec_recovered <= s.concealed);
            proptest::prop_assert!(s.depth_frames <= JitterConfig::default().capacity);
        }
    }
}
