//! Recurring delay peaks of one received stream, for its jitter buffer.
//!
//! The RFC 3550 jitter that sizes a jitter buffer's target is a smoothed mean deviation: a
//! stream that is on time except for a 150 ms hold-up every few seconds (a host that stalls
//! now and then, a Wi-Fi scan, a congested uplink flushing its queue) keeps a small jitter, so
//! after each hold-up the buffer drains back to its small target and the next one finds it
//! empty again, to be waited out with concealment once more. When hold-ups keep coming, holding
//! enough for the largest of them costs a steady delay but no more gaps; when they stop, the
//! hold ends and the buffer drains. (WebRTC's NetEq has a delay peak detector for the same
//! reason.) Sans-IO: the caller passes the time.

use std::time::{Duration, Instant};

/// Two hold-ups further apart than this are taken as unrelated.
pub(crate) const MAX_PEAK_PERIOD: Duration = Duration::from_secs(10);

/// A hold-up of fewer frame periods (a packet less than 40 ms later than its pace) is
/// ordinary jitter, which the target already covers.
pub(crate) const MIN_PEAK_FRAMES: u16 = 2;

/// The hold-ups of one stream, and whether they recur.
#[derive(Debug, Default, Clone)]
pub(crate) struct DelayPeaks {
    /// The last hold-up: when it ended, and how many frame periods late it left the stream.
    last: Option<(Instant, u16)>,
    /// Time between the last two hold-ups, when they came within [`MAX_PEAK_PERIOD`].
    period: Option<Duration>,
    /// Frames to hold while the hold-ups recur: the larger of the last two.
    height: u16,
}

impl DelayPeaks {
    /// A packet came at `now`, `frames` frame periods later than the stream's pace.
    pub(crate) fn record(&mut self, frames: u16, now: Instant) {
        if frames < MIN_PEAK_FRAMES {
            return;
        }
        self.period = None;
        if let Some((at, height)) = self.last {
            let gap = now.saturating_duration_since(at);
            if gap <= MAX_PEAK_PERIOD {
                self.period = Some(gap);
                self.height = height.max(frames);
            }
        }
        self.last = Some((now, frames));
    }

    /// Frames the buffer should hold at `now`: the recent hold-ups' size while they recur (until
    /// two of their periods have passed without one), else 0.
    pub(crate) fn hold(&self, now: Instant) -> u16 {
        match (self.last, self.period) {
            (Some((at, _)), Some(period)) if now.saturating_duration_since(at) <= period * 2 => {
                self.height
            }
            _ => 0,
        }
    }

    /// Forgets every hold-up (the stream restarted).
    pub(crate) fn reset(&mut self) {
        *self = DelayPeaks::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn one_hold_up_asks_for_nothing() {
        let t0 = Instant::now();
        let mut p = DelayPeaks::default();
        p.record(7, at(t0, 1000));
        assert_eq!(p.hold(at(t0, 1020)), 0);
    }

    #[test]
    fn recurring_hold_ups_hold_the_larger_until_two_periods_pass() {
        let t0 = Instant::now();
        let mut p = DelayPeaks::default();
        p.record(5, at(t0, 1000));
        p.record(8, at(t0, 4000));
        assert_eq!(p.hold(at(t0, 4020)), 8);
        assert_eq!(p.hold(at(t0, 10_000)), 8);
        assert_eq!(p.hold(at(t0, 10_001)), 0);
        // The next hold-up renews it, with the size of the last two.
        p.record(6, at(t0, 7000));
        assert_eq!(p.hold(at(t0, 7020)), 8);
        p.record(3, at(t0, 9000));
        assert_eq!(p.hold(at(t0, 9020)), 6);
    }

    #[test]
    fn hold_ups_far_apart_or_small_are_not_peaks() {
        let t0 = Instant::now();
        let mut p = DelayPeaks::default();
        p.record(7, at(t0, 0));
        p.record(7, at(t0, 10_001));
        assert_eq!(p.hold(at(t0, 10_020)), 0);
        p.record(MIN_PEAK_FRAMES - 1, at(t0, 11_000));
        assert_eq!(p.hold(at(t0, 11_020)), 0);
        p.record(4, at(t0, 12_000));
        assert_eq!(p.hold(at(t0, 12_020)), 7);
        p.reset();
        assert_eq!(p.hold(at(t0, 12_020)), 0);
    }
}
