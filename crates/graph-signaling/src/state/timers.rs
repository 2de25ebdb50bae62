//! Timers kept as data (sans-IO): when to send keepAlive, when to refresh a token.

use std::time::{Duration, Instant};

/// Default keepAlive interval: the service ends calls silent for 45 minutes; 15 leaves margin.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// Retry delay after a failed keepAlive, so one lost request does not cost a whole interval.
const KEEPALIVE_RETRY: Duration = Duration::from_secs(60);

/// What the keepAlive timer wants done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAliveAction {
    /// Nothing yet.
    Wait,
    /// Send `POST …/keepAlive` now.
    Send,
}

/// KeepAlive schedule of one call. The shell asks [`KeepAliveTimer::poll_timeout`], sleeps until
/// then, calls [`KeepAliveTimer::handle_timeout`], and reports the request's result.
#[derive(Debug, Clone)]
pub struct KeepAliveTimer {
    interval: Duration,
    due: Option<Instant>,
    in_flight: bool,
    ended: bool,
}

impl KeepAliveTimer {
    /// A schedule whose first keepAlive is one interval after `now` (the call's start).
    pub fn new(interval: Duration, now: Instant) -> Self {
        KeepAliveTimer {
            interval,
            due: Some(now + interval),
            in_flight: false,
            ended: false,
        }
    }

    /// When the next keepAlive is due; `None` once the call ended or while one is in flight.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended || self.in_flight {
            None
        } else {
            self.due
        }
    }

    /// Tells the timer the time; says whether to send a keepAlive now.
    pub fn handle_timeout(&mut self, now: Instant) -> KeepAliveAction {
        match self.poll_timeout() {
            Some(due) if due <= now => {
                self.in_flight = true;
                KeepAliveAction::Send
            }
            _ => KeepAliveAction::Wait,
        }
    }

    /// The keepAlive succeeded at `now`.
    pub fn on_success(&mut self, now: Instant) {
        self.in_flight = false;
        self.due = Some(now + self.interval);
    }

    /// The keepAlive failed; `call_gone` (404) ends the schedule, otherwise it retries soon.
    pub fn on_failure(&mut self, now: Instant, call_gone: bool) {
        self.in_flight = false;
        if call_gone {
            self.end();
        } else {
            self.due = Some(now + KEEPALIVE_RETRY.min(self.interval));
        }
    }

    /// The call ended: no more keepAlives.
    pub fn end(&mut self) {
        self.ended = true;
        self.due = None;
    }

    /// True once ended.
    pub fn is_ended(&self) -> bool {
        self.ended
    }
}

/// An access token's lifetime, to decide when to fetch a new one.
#[derive(Debug, Clone, Copy)]
pub struct TokenLifetime {
    /// When the token was obtained.
    pub obtained: Instant,
    /// When it expires.
    pub expires: Instant,
}

impl TokenLifetime {
    /// Refresh this long before expiry so a request never carries an expired token.
    pub const MARGIN: Duration = Duration::from_secs(5 * 60);

    /// A token obtained at `now` valid for `expires_in`.
    pub fn new(now: Instant, expires_in: Duration) -> Self {
        TokenLifetime {
            obtained: now,
            expires: now + expires_in,
        }
    }

    /// When to refresh: `MARGIN` before expiry, but never before half the lifetime (short-lived
    /// tokens would otherwise be refreshed on every request).
    pub fn refresh_at(&self) -> Instant {
        let life = self.expires.saturating_duration_since(self.obtained);
        let margin = Self::MARGIN.min(life / 2);
        self.expires - margin
    }

    /// True when the token should be replaced at `now`.
    pub fn needs_refresh(&self, now: Instant) -> bool {
        now >= self.refresh_at()
    }
}
