//! A call's deadlines in one table, indexed by what they are for.

use std::time::Instant;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The next `POST …/keepAlive`.
    KeepAlive,
    /// The earliest deadline of an operation the application waits for.
    Operation,
    /// Next quality (QoE) report while media is connected.
    Quality,
    /// Close the media session if the service has not after the call ended.
    MediaClose,
    /// Release the call even if its media never reports its end.
    Release,
}

const TIMERS: usize = 5;

impl Timer {
    const ALL: [Timer; TIMERS] = [
        Timer::KeepAlive,
        Timer::Operation,
        Timer::Quality,
        Timer::MediaClose,
        Timer::Release,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// One optional deadline per [`Timer`]; the earliest is when the call next needs the time.
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable {
    at: [Option<Instant>; TIMERS],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.at[timer.index()] = Some(at);
    }

    pub(crate) fn set_opt(&mut self, timer: Timer, at: Option<Instant>) {
        self.at[timer.index()] = at;
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.at[timer.index()] = None;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.at[timer.index()]
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// Clears and returns every timer due at `now`, in table order.
    pub(crate) fn expire(&mut self, now: Instant) -> impl Iterator<Item = Timer> + use<> {
        let mut due = [None; TIMERS];
        for t in Timer::ALL {
            if self.at[t.index()].is_some_and(|at| at <= now) {
                self.at[t.index()] = None;
                due[t.index()] = Some(t);
            }
        }
        due.into_iter().flatten()
    }

    pub(crate) fn clear(&mut self) {
        self.at = [None; TIMERS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_earliest_deadline_is_next_and_only_due_timers_expire() {
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Timer::KeepAlive, t0 + Duration::from_secs(10));
        t.set(Timer::MediaClose, t0 + Duration::from_secs(2));
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(2)));
        assert_eq!(t.expire(t0 + Duration::from_secs(1)).count(), 0);
        let due: Vec<Timer> = t.expire(t0 + Duration::from_secs(2)).collect();
        assert_eq!(due, [Timer::MediaClose]);
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(10)));
        t.stop(Timer::KeepAlive);
        assert_eq!(t.next(), None);
    }
}
