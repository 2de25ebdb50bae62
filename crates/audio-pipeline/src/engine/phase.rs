//! Which sub-slot of the 20 ms cycle serves a call's packets soonest after they arrive.
//!
//! A call's receive tick is pinned to one of the worker's [`SLOTS`] sub-slots, and packets
//! come on their sender's clock, at a phase of the cycle the engine does not choose. With the
//! tick at a fixed slot every packet waits in the jitter buffer for the distance from its
//! arrival to the tick: anywhere from 0 to 20 ms depending on luck, the same for the whole
//! call. [`StreamTiming`] learns when each stream's packets are due, from their transit times
//! (arrival minus RTP timestamp, so a late packet counts as late and not as an early one of
//! the next frame), and [`best_slot`] picks the slot that takes the call's packets soonest,
//! weighting each stream by how much it talks: in a conversation the tick follows whoever has
//! the floor.
//!
//! A call is placed once as soon as its first packet arrives, before that packet is played:
//! the tick's phase then holds from the first frame on. Waiting for a full window of transit
//! times instead would move the tick (and the reply's send tick, which follows it) a few
//! hundred milliseconds into the call, by up to a whole frame: the far end's player would hear
//! that step as a gap or a cut in the first words.

use super::SLOTS;

/// A packet arriving in millisecond `b` of the cycle is taken by a tick at slot `b + SAFETY`:
/// the worker starts a tick's work up to a millisecond early
/// ([`super::EngineConfig::work_ahead`]), takes queued packets within a millisecond of their
/// arrival, and `b` covers a whole millisecond.
pub(crate) const SAFETY: usize = 3;

/// Transit times remembered per stream (two seconds of packets).
const WINDOW: usize = 100;

/// Transit times needed before a stream says when it is due (after the first placement).
const MIN_SAMPLES: usize = 10;

/// The share of a stream's packets the chosen tick may miss (they arrive after it and are
/// concealed): the 98th percentile of the transit times sets the due time.
const QUANTILE: f64 = 0.98;

/// Longest lateness planned for, in µs. A stream whose packets spread wider is one the jitter
/// buffer holds several frames of; the tick's phase then matters little.
const MAX_SPREAD_US: i64 = 15_000;

/// How fast a stream's talk activity follows its level, per frame.
const ACTIVITY_GAIN: f32 = 0.2;

/// Weight of a silent stream against one that talks all the time.
const SILENT_WEIGHT: f32 = 0.05;

/// A move must shorten the weighted mean wait by at least this many milliseconds: every move
/// shifts the call's audio once, so small gains are not worth it.
const MIN_GAIN_MS: f32 = 1.5;

/// Receive ticks of a call between two decisions (200 ms): in a conversation the tick should
/// reach a new talker early in their turn.
pub(crate) const DECIDE_EVERY_TICKS: u32 = 10;

/// When one stream's packets are due, learnt from their arrivals.
#[derive(Debug, Clone)]
pub(crate) struct StreamTiming {
    /// Recent transit times, µs: arrival on the engine's clock minus the RTP timestamp.
    transits: [i64; WINDOW],
    len: usize,
    next: usize,
    /// Last RTP timestamp and its extension to 64 bits, in 48 kHz units.
    last_ts: Option<(u32, i64)>,
    activity: f32,
}

impl Default for StreamTiming {
    fn default() -> Self {
        StreamTiming {
            transits: [0; WINDOW],
            len: 0,
            next: 0,
            last_ts: None,
            activity: 0.0,
        }
    }
}

impl StreamTiming {
    /// Records a packet with RTP `timestamp` (48 kHz) that arrived `arrival_us` after the
    /// engine's epoch.
    pub(crate) fn observe(&mut self, timestamp: u32, arrival_us: i64) {
        // Wrapping arithmetic: a hostile sender's timestamps (duplicates are observed too, and
        // carry any timestamp) could walk the extension to overflow; the figures would then be
        // nonsense for that call, never a panic.
        let ext = match self.last_ts {
            None => i64::from(timestamp),
            Some((last, ext)) => ext.wrapping_add(i64::from(timestamp.wrapping_sub(last) as i32)),
        };
        // Only forward steps move the reference, so a reordered packet does not drag it back.
        if self.last_ts.is_none_or(|(_, e)| ext > e) {
            self.last_ts = Some((timestamp, ext));
        }
        self.transits[self.next] = arrival_us.wrapping_sub(ts_us(ext));
        self.next = (self.next + 1) % WINDOW;
        self.len = (self.len + 1).min(WINDOW);
    }

    /// Forgets the transit times (the sender restarted: new timestamps, new clock).
    pub(crate) fn reset(&mut self) {
        self.len = 0;
        self.next = 0;
        self.last_ts = None;
    }

    /// Records whether this frame period's audio of the stream was speech.
    pub(crate) fn talked(&mut self, speech: bool) {
        let x = if speech { 1.0 } else { 0.0 };
        self.activity += (x - self.activity) * ACTIVITY_GAIN;
    }

    /// The earliest slot that takes nearly all of this stream's packets, and the stream's
    /// weight; `None` while too few packets were seen.
    pub(crate) fn due(&self) -> Option<(usize, f32)> {
        self.due_after(MIN_SAMPLES)
    }

    /// [`Self::due`] from whatever was seen, down to a single packet: for placing a call
    /// before its first frame plays (that packet's phase is the best guess there is).
    pub(crate) fn first_due(&self) -> Option<(usize, f32)> {
        self.due_after(1)
    }

    fn due_after(&self, min_samples: usize) -> Option<(usize, f32)> {
        let (_, last_ext) = self.last_ts?;
        if self.len < min_samples.max(1) {
            return None;
        }
        let mut sorted = self.transits;
        let window = &mut sorted[..self.len];
        window.sort_unstable();
        let fastest = window[0];
        let q = ((self.len - 1) as f64 * QUANTILE).round() as usize;
        let spread = window[q].wrapping_sub(fastest).clamp(0, MAX_SPREAD_US);
        // The last packet's due arrival on the fastest path, plus the spread: every packet's
        // timestamp is a whole number of frames from it, so the phase is the same for all.
        let due_us = fastest.wrapping_add(ts_us(last_ext)).wrapping_add(spread);
        let ms = due_us.rem_euclid(20_000) / 1000;
        let slot = (ms as usize + SAFETY) % SLOTS;
        Some((slot, SILENT_WEIGHT + self.activity))
    }
}

/// An RTP time in 48 kHz units, in µs.
fn ts_us(ts: i64) -> i64 {
    ts.wrapping_mul(125) / 6
}

/// How much a move must gain: every move of a playing call shifts its audio once, so small
/// gains are not worth it; before the first frame plays a move costs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Move {
    /// The call's first packet is in and none has played: any gain.
    First,
    /// The call is playing: at least [`MIN_GAIN_MS`].
    Playing,
}

/// The slot a call should move to, if a move is worth it: the one minimising the weighted
/// wait of its streams (`dues`: slot and weight of each), among the slots the worker allows
/// (its load balance). `None` to stay at `current`.
pub(crate) fn best_slot(
    current: usize,
    dues: impl Iterator<Item = (usize, f32)> + Clone,
    allowed: impl Fn(usize) -> bool,
    kind: Move,
) -> Option<usize> {
    let total: f32 = dues.clone().map(|(_, w)| w).sum();
    if total <= 0.0 {
        return None;
    }
    let wait = |slot: usize| -> f32 {
        dues.clone()
            .map(|(due, w)| w * ((slot + SLOTS - due) % SLOTS) as f32)
            .sum::<f32>()
            / total
    };
    let (slot, best) = (0..SLOTS)
        .filter(|&s| allowed(s))
        .map(|s| (s, wait(s)))
        // Ties go to the slot nearest after the current one: the smallest shift.
        .min_by(|a, b| {
            a.1.total_cmp(&b.1).then_with(|| {
                ((a.0 + SLOTS - current) % SLOTS).cmp(&((b.0 + SLOTS - current) % SLOTS))
            })
        })?;
    let min_gain = match kind {
        Move::First => f32::MIN_POSITIVE,
        Move::Playing => MIN_GAIN_MS,
    };
    (slot != current && wait(current) - best >= min_gain).then_some(slot)
}

/// How many sub-ticks ago the turn of a call at `slot` came, if it is to be served at sub-tick
/// `index`, given the sub-tick of its last serve; `None` when it is not due.
///
/// A call is due once per cycle, at the first turn of its slot at least half a cycle after its
/// last serve: after a move to a later slot within the same cycle, the new slot comes up too
/// soon and waits for the next cycle. A worker that learns of a move only part-way through a
/// cycle (the send tick follows the receive tick, which moves on another worker) may find the
/// new slot already behind it in this cycle: the call is then served at once, a few sub-ticks
/// late, rather than only when the sub-tick equals its slot, which skipped the cycle.
pub(crate) fn due_since(slot: usize, last_served: Option<u64>, index: u64) -> Option<u64> {
    let behind = (index + SLOTS as u64 - slot as u64 % SLOTS as u64) % SLOTS as u64;
    let turn = index.checked_sub(behind)?;
    match last_served {
        // Nothing to keep the pace with yet: the slot's own sub-tick.
        None => (behind == 0).then_some(0),
        Some(last) => (turn >= last + (SLOTS / 2) as u64).then_some(behind),
    }
}

/// The least loaded slot at or after `preferred` within `reach` slots, given the calls each
/// slot holds (`load`, which counts the moving call at `current`): balance first, then the
/// phase the call asks for.
pub(crate) fn balanced_slot(
    load: &[usize; SLOTS],
    current: usize,
    preferred: usize,
    reach: usize,
) -> usize {
    let others = |s: usize| load[s] - usize::from(s == current && load[s] > 0);
    let min = (0..SLOTS).map(others).min().unwrap_or(0);
    (0..=reach)
        .map(|k| (preferred + k) % SLOTS)
        .find(|&s| others(s) <= min + 1)
        .unwrap_or(preferred % SLOTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream whose packet `k` has timestamp `960 k + ts0` and arrives at
    /// `k × 20 ms + phase_us + late(k)`.
    fn stream(ts0: u32, phase_us: i64, late: impl Fn(i64) -> i64) -> StreamTiming {
        let mut s = StreamTiming::default();
        for k in 0..150i64 {
            s.observe(
                ts0.wrapping_add((k as u32).wrapping_mul(960)),
                k * 20_000 + phase_us + late(k),
            );
        }
        s
    }

    #[test]
    fn a_stream_on_time_is_due_just_after_its_arrival_phase() {
        let s = stream(12_345, 4_200, |_| 0);
        assert_eq!(s.due().map(|d| d.0), Some(4 + SAFETY));
        // The timestamps' own offset does not matter, nor does their wrap.
        let s = stream(u32::MAX - 960 * 40, 18_500, |_| 0);
        assert_eq!(s.due().map(|d| d.0), Some((18 + SAFETY) % SLOTS));
    }

    #[test]
    fn late_packets_push_the_due_time_but_rare_stragglers_do_not() {
        // One packet in ten is 4 ms late: the tick must wait for them.
        let s = stream(0, 2_100, |k| if k % 10 == 0 { 4_000 } else { 0 });
        assert_eq!(s.due().map(|d| d.0), Some(6 + SAFETY));
        // One in a hundred is 9 ms late: under the 2 % the tick may miss.
        let s = stream(0, 2_100, |k| if k == 120 { 9_000 } else { 0 });
        assert_eq!(s.due().map(|d| d.0), Some(2 + SAFETY));
    }

    #[test]
    fn a_late_packet_is_not_mistaken_for_an_early_one() {
        // Packets spread over 2–16 ms of lateness: a histogram of arrival phases alone would
        // see a spread with no gap; the transit times say they are due 16 ms after the fastest.
        let s = stream(0, 1_000, |k| (k * 7_000) % 15_000);
        let due = s.due().unwrap().0;
        assert_eq!(due, (1 + 14 + SAFETY) % SLOTS, "due {due}");
    }

    #[test]
    fn too_few_packets_say_nothing_and_a_reset_forgets() {
        let mut s = StreamTiming::default();
        for k in 0..(MIN_SAMPLES as i64 - 1) {
            s.observe((k * 960) as u32, k * 20_000 + 3_000);
        }
        assert_eq!(s.due(), None);
        s.observe(0, 3_000);
        assert!(s.due().is_some());
        s.reset();
        assert_eq!(s.due(), None);
    }

    #[test]
    fn one_packet_places_a_call_and_any_gain_moves_it_before_it_plays() {
        let mut s = StreamTiming::default();
        s.observe(4_321, 7_600);
        assert_eq!(s.due(), None, "too few for a playing call");
        let first = s.first_due().unwrap();
        assert_eq!(first.0, 7 + SAFETY);
        // One millisecond nearer is no reason to step a playing call's audio, but costs
        // nothing before the first frame plays.
        let dues = [first];
        assert_eq!(
            best_slot(first.0 + 1, dues.iter().copied(), |_| true, Move::Playing),
            None
        );
        assert_eq!(
            best_slot(first.0 + 1, dues.iter().copied(), |_| true, Move::First),
            Some(first.0)
        );
        assert_eq!(
            best_slot(first.0, dues.iter().copied(), |_| true, Move::First),
            None
        );
    }

    #[test]
    fn hostile_timestamps_never_panic() {
        // Steps as far forward as a 32-bit difference goes walk the extension up; where tens
        // of millions of them would take it (checked here from just below the edge), the
        // arithmetic wraps instead of overflowing.
        let mut s = StreamTiming {
            last_ts: Some((0, i64::MAX - 5)),
            ..StreamTiming::default()
        };
        for k in 0..50u32 {
            s.observe(k.wrapping_mul(0x7FFF_FFFF), i64::from(k) * 20_000);
        }
        let _ = s.due();
        s.observe(0, i64::MAX);
        s.observe(u32::MAX, i64::MIN);
        let _ = s.due();
    }

    #[test]
    fn the_slot_follows_the_stream_that_talks() {
        let mut alice = stream(0, 2_000, |_| 0);
        let mut bob = stream(777, 11_000, |_| 0);
        for _ in 0..50 {
            alice.talked(true);
            bob.talked(false);
        }
        let dues = [alice.due().unwrap(), bob.due().unwrap()];
        assert_eq!(
            best_slot(15, dues.iter().copied(), |_| true, Move::Playing),
            Some(2 + SAFETY)
        );
        for _ in 0..50 {
            alice.talked(false);
            bob.talked(true);
        }
        let dues = [alice.due().unwrap(), bob.due().unwrap()];
        assert_eq!(
            best_slot(2 + SAFETY, dues.iter().copied(), |_| true, Move::Playing),
            Some(11 + SAFETY)
        );
    }

    #[test]
    fn small_gains_do_not_move_a_call_and_the_worker_may_rule_slots_out() {
        let due = [(7usize, 1.0f32)];
        assert_eq!(
            best_slot(8, due.iter().copied(), |_| true, Move::Playing),
            None
        );
        assert_eq!(
            best_slot(9, due.iter().copied(), |_| true, Move::Playing),
            Some(7)
        );
        assert_eq!(
            best_slot(15, due.iter().copied(), |s| s != 7, Move::Playing),
            Some(8)
        );
        assert_eq!(
            best_slot(15, due.iter().copied(), |_| false, Move::Playing),
            None
        );
        assert_eq!(
            best_slot(15, std::iter::empty(), |_| true, Move::Playing),
            None
        );
    }

    #[test]
    fn a_call_whose_slot_moved_behind_the_worker_is_served_late_not_skipped() {
        // Steady at slot 14: due at its own sub-tick only.
        assert_eq!(due_since(14, Some(14), 34), Some(0));
        assert!((15..34).all(|i| due_since(14, Some(14), i).is_none()));
        // Moved from 14 to 9, learnt at sub-tick 32 of the next cycle: due at once, 3 late.
        assert_eq!(due_since(9, Some(14), 32), Some(3));
        // Moved from 4 to 9 within the cycle: the turn at 9 is too soon, the next one serves.
        assert_eq!(due_since(9, Some(4), 9), None);
        assert_eq!(due_since(9, Some(4), 12), None);
        assert_eq!(due_since(9, Some(4), 29), Some(0));
        // Moved from 9 to 4, learnt before 4 comes round: on time, 15 sub-ticks after 9.
        assert_eq!(due_since(4, Some(9), 24), Some(0));
        // Moved from 18 to 2, learnt at 25: 16 earlier is 4 later, so it waits for 42.
        assert_eq!(due_since(2, Some(18), 25), None);
        assert_eq!(due_since(2, Some(18), 42), Some(0));
        // Never served: only its own sub-tick, and never before the worker's first cycle.
        assert_eq!(due_since(5, None, 5), Some(0));
        assert_eq!(due_since(5, None, 6), None);
        assert_eq!(due_since(5, None, 3), None);
    }

    #[test]
    fn a_balanced_slot_is_near_the_preferred_one_without_crowding() {
        let mut load = [1usize; SLOTS];
        // Alone in its slot 3, the call prefers 7: taken (7 holds as many as any other).
        assert_eq!(balanced_slot(&load, 3, 7, 4), 7);
        // Slot 7 and 8 are crowded: the next slot within reach that is not.
        load[7] = 3;
        load[8] = 3;
        assert_eq!(balanced_slot(&load, 3, 7, 4), 9);
        // Nothing within reach: the preferred slot anyway.
        let mut load = [0usize; SLOTS];
        load[3] = 1;
        load[5..10].fill(5);
        assert_eq!(balanced_slot(&load, 3, 5, 4), 5);
    }
}
