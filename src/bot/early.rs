//! Notifications of calls the bot does not hold (yet): kept briefly and in bounded number.
//!
//! A notification can overtake the create-call response that names its call, and an incoming
//! call is announced before the application answers it; what arrives meanwhile is replayed to
//! the call's core once it exists. Nothing else is kept: notifications of calls nobody ever
//! takes expire, and a flood of made-up call ids cannot grow the process.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use graph_signaling::models::CommsNotification;

/// Calls whose notifications are kept at once; the oldest goes when a new one arrives.
pub(crate) const MAX_CALLS: usize = 1024;
/// Notifications kept per call (the oldest are kept: they set the call up).
pub(crate) const MAX_PER_CALL: usize = 64;
/// How long a call's notifications are kept: longer than the 15 s answer window and any
/// create-call response.
pub(crate) const KEPT_FOR: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Held {
    first: Instant,
    notifications: Vec<CommsNotification>,
    offered: bool,
}

/// The notifications kept, by call id.
#[derive(Debug, Default)]
pub(crate) struct EarlyNotifications {
    calls: HashMap<String, Held>,
    /// Notifications not kept (limits), ever.
    dropped: u64,
}

impl EarlyNotifications {
    /// Keeps `n` for `call_id`; returns true the first time the call is offered to the bot
    /// (`offer`), so the application hears of an incoming call once.
    pub(crate) fn keep(
        &mut self,
        call_id: &str,
        n: CommsNotification,
        offer: bool,
        now: Instant,
    ) -> bool {
        self.expire(now);
        if !self.calls.contains_key(call_id)
            && self.calls.len() >= MAX_CALLS
            && let Some(oldest) = self
                .calls
                .iter()
                .min_by_key(|(_, h)| h.first)
                .map(|(id, _)| id.clone())
            && let Some(h) = self.calls.remove(&oldest)
        {
            self.dropped += h.notifications.len() as u64;
        }
        let held = self.calls.entry(call_id.to_owned()).or_insert(Held {
            first: now,
            notifications: Vec::new(),
            offered: false,
        });
        if held.notifications.len() < MAX_PER_CALL {
            held.notifications.push(n);
        } else {
            self.dropped += 1;
        }
        let first_offer = offer && !held.offered;
        held.offered |= offer;
        first_offer
    }

    /// Takes what was kept for `call_id`, oldest first.
    pub(crate) fn take(&mut self, call_id: &str) -> Vec<CommsNotification> {
        self.calls
            .remove(call_id)
            .map(|h| h.notifications)
            .unwrap_or_default()
    }

    /// When the oldest call's notifications expire (for the shell's timer).
    #[must_use]
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.calls.values().map(|h| h.first + KEPT_FOR).min()
    }

    /// Forgets calls kept longer than [`KEPT_FOR`].
    pub(crate) fn expire(&mut self, now: Instant) {
        let mut dropped = 0;
        self.calls.retain(|_, h| {
            let keep = now.saturating_duration_since(h.first) < KEPT_FOR;
            if !keep {
                dropped += h.notifications.len() as u64;
            }
            keep
        });
        self.dropped += dropped;
    }

    /// Calls with notifications kept now.
    #[cfg(test)]
    pub(crate) fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Notifications kept now.
    pub(crate) fn held(&self) -> usize {
        self.calls.values().map(|h| h.notifications.len()).sum()
    }

    /// Notifications dropped (over a limit or expired) since the start.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use graph_signaling::models::{ChangeType, Nullable};

    fn note(id: &str) -> CommsNotification {
        CommsNotification {
            odata_type: None,
            change_type: ChangeType::Updated,
            resource_url: format!("/communications/calls/{id}"),
            resource: Nullable::Absent,
            callback_uri: Nullable::Absent,
            resource_data: Nullable::Absent,
            extra: Default::default(),
        }
    }

    #[test]
    fn kept_notifications_come_back_in_order_and_an_offer_is_made_once() {
        let t0 = Instant::now();
        let mut e = EarlyNotifications::default();
        assert!(e.keep("a", note("a"), true, t0));
        assert!(!e.keep("a", note("a"), true, t0));
        assert!(!e.keep("b", note("b"), false, t0));
        assert_eq!((e.calls(), e.held()), (2, 3));
        assert_eq!(e.take("a").len(), 2);
        assert!(e.take("a").is_empty());
    }

    #[test]
    fn a_flood_of_unknown_calls_stays_bounded_in_count_and_age() {
        let t0 = Instant::now();
        let mut e = EarlyNotifications::default();
        for i in 0..MAX_CALLS + 500 {
            e.keep(&format!("c{i}"), note("x"), false, t0);
        }
        assert_eq!(e.calls(), MAX_CALLS);
        assert_eq!(e.dropped(), 500);
        // A new call evicts one (its one notification is dropped); past the per-call limit
        // the newest notifications are dropped.
        for _ in 0..MAX_PER_CALL + 3 {
            e.keep("new", note("x"), false, t0);
        }
        assert_eq!(e.dropped(), 504);
        assert_eq!(e.held(), MAX_CALLS - 1 + MAX_PER_CALL);
        assert_eq!(e.poll_timeout(), Some(t0 + KEPT_FOR));
        e.expire(t0 + KEPT_FOR);
        assert_eq!((e.calls(), e.held()), (0, 0));
        assert_eq!(e.poll_timeout(), None);
        assert_eq!(e.dropped(), 504 + (MAX_CALLS - 1 + MAX_PER_CALL) as u64);
    }
}
