//! Timers kept as data (sans-IO): how often to keep a call alive, when to refresh a token.

use std::time::{Duration, Instant};

/// Default keepAlive interval: the service ends calls silent for 45 minutes; 15 leaves margin.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15 * 60);

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
