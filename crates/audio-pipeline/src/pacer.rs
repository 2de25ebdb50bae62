//! Absolute 20 ms deadlines for paced sending and receiving. Sans-IO: time is passed in.

use std::time::{Duration, Instant};

use media_session::FRAME_MS;

/// One frame period.
pub const FRAME: Duration = Duration::from_millis(FRAME_MS as u64);

/// A due frame tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Frame number since the pacer started.
    pub index: u64,
    /// When the frame was due.
    pub deadline: Instant,
    /// How late the tick is handled.
    pub lateness: Duration,
}

/// Produces ticks at `start + n × 20 ms`.
///
/// Deadlines are computed from the start time and the frame number, never by adding 20 ms to
/// the previous wake-up, so late wake-ups do not accumulate into drift. If the caller falls so
/// far behind that more than `max_catch_up` frames are due at once (a stalled process), the
/// older ones are skipped and counted rather than sent in a burst.
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    period: Duration,
    next: u64,
    max_catch_up: u64,
    skipped: u64,
}

impl Pacer {
    /// A pacer whose first tick is due at `start`.
    pub fn new(start: Instant) -> Pacer {
        Pacer::with_period(start, FRAME)
    }

    /// A pacer ticking every `period` (at least 1 µs) instead of every frame; the engine's
    /// workers tick every millisecond and serve a twentieth of their calls on each tick.
    pub fn with_period(start: Instant, period: Duration) -> Pacer {
        Pacer {
            start,
            period: period.max(Duration::from_micros(1)),
            next: 0,
            max_catch_up: 5,
            skipped: 0,
        }
    }

    /// Sets how many overdue frames are still produced before older ones are skipped.
    pub fn with_max_catch_up(mut self, frames: u64) -> Pacer {
        self.max_catch_up = frames.max(1);
        self
    }

    /// Deadline of frame `index`.
    pub fn deadline(&self, index: u64) -> Instant {
        // Multiply rather than accumulate: exact for any index.
        let nanos = (self.period.as_nanos() as u64).saturating_mul(index);
        self.start + Duration::from_nanos(nanos)
    }

    /// When the next tick is due (sleep until then).
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        self.deadline(self.next)
    }

    /// The next due tick at `now`, if any. Call repeatedly until `None`.
    #[must_use]
    pub fn poll_tick(&mut self, now: Instant) -> Option<Tick> {
        let deadline = self.deadline(self.next);
        if now < deadline {
            return None;
        }
        let behind = ((now - deadline).as_nanos() / self.period.as_nanos()) as u64;
        if behind >= self.max_catch_up {
            let skip = behind + 1 - self.max_catch_up;
            self.skipped += skip;
            self.next += skip;
        }
        let deadline = self.deadline(self.next);
        let tick = Tick {
            index: self.next,
            deadline,
            lateness: now.saturating_duration_since(deadline),
        };
        self.next += 1;
        Some(tick)
    }

    /// Frames skipped because the caller fell too far behind.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_of_late_wakeups_does_not_drift() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        let mut x = 1u32;
        let mut count = 0u64;
        let mut now = t0;
        for _ in 0..180_000u32 {
            // Sleep until the deadline, then wake 0..3 ms late, as an OS timer would.
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            now = p.poll_timeout() + Duration::from_micros(u64::from(x >> 16) % 3000);
            while let Some(tick) = p.poll_tick(now) {
                assert!(tick.lateness < Duration::from_millis(3));
                count += 1;
            }
        }
        assert_eq!(count, 180_000);
        assert_eq!(p.poll_timeout(), t0 + Duration::from_secs(3600));
        assert_eq!(p.skipped(), 0);
        assert!(now < t0 + Duration::from_secs(3600));
    }

    #[test]
    fn nothing_is_due_early() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        assert_eq!(p.poll_tick(t0).map(|t| t.index), Some(0));
        assert_eq!(p.poll_tick(t0 + Duration::from_millis(19)), None);
        assert_eq!(
            p.poll_tick(t0 + Duration::from_millis(20)).map(|t| t.index),
            Some(1)
        );
    }

    #[test]
    fn a_stall_skips_old_frames_instead_of_bursting() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0).with_max_catch_up(3);
        let now = t0 + Duration::from_millis(1000);
        let ticks: Vec<u64> = std::iter::from_fn(|| p.poll_tick(now).map(|t| t.index)).collect();
        assert_eq!(ticks, vec![48, 49, 50]);
        assert_eq!(p.skipped(), 48);
        assert_eq!(p.poll_timeout(), t0 + Duration::from_millis(1020));
    }
}
