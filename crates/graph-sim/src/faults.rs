//! Seeded signaling faults: throttled or failing requests, slow responses, and notifications that
//! arrive late, twice, out of order or not at all.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How the simulated service misbehaves on the signaling side. The default is well behaved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalingFaults {
    /// Share of API requests answered `429 Too Many Requests`, 0.0..=1.0.
    pub throttle: f64,
    /// A throttling storm: the first this many API requests are all answered `429` (with
    /// `Retry-After`), whatever `throttle` says; later ones follow the shares. With a fresh
    /// sim the first requests are the bot's first call creation and its retries.
    pub throttle_first: u32,
    /// Share of API requests answered `503 Service Unavailable`, 0.0..=1.0.
    pub unavailable: f64,
    /// `Retry-After` seconds sent with those answers.
    pub retry_after_s: u64,
    /// Extra time before every API response, in ms.
    pub slow_response_ms: u64,
    /// Delay before each notification is posted, in ms.
    pub notification_delay_ms: u64,
    /// Share of notifications posted twice.
    pub notification_duplicate: f64,
    /// Share of notifications held back and posted after the next one.
    pub notification_reorder: f64,
    /// Share of notifications never posted.
    pub notification_drop: f64,
    /// Post `established` before `establishing` (both orders happen in the real service).
    pub established_first: bool,
    /// Post each call's first notification in the legacy (pre-Graph, Skype bot calling)
    /// format first, as the real service may for an incoming call; when the bot answers `204
    /// No Content`, post the same notification again in Graph format. Any other success
    /// means the bot took the legacy format, which the sim does not speak: that
    /// notification counts as failed.
    pub legacy_first: bool,
}

impl Default for SignalingFaults {
    fn default() -> Self {
        SignalingFaults {
            throttle: 0.0,
            throttle_first: 0,
            unavailable: 0.0,
            retry_after_s: 1,
            slow_response_ms: 0,
            notification_delay_ms: 0,
            notification_duplicate: 0.0,
            notification_reorder: 0.0,
            notification_drop: 0.0,
            established_first: false,
            legacy_first: false,
        }
    }
}

impl SignalingFaults {
    /// Checks shares are within 0..=1 and times are sane; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        let shares = [
            ("throttle", self.throttle),
            ("unavailable", self.unavailable),
            ("notification_duplicate", self.notification_duplicate),
            ("notification_reorder", self.notification_reorder),
            ("notification_drop", self.notification_drop),
        ];
        for (name, share) in shares {
            if !(0.0..=1.0).contains(&share) {
                return Err(format!("{name} must be between 0 and 1"));
            }
        }
        if self.throttle + self.unavailable > 1.0 {
            return Err("throttle + unavailable must not exceed 1".into());
        }
        if self.throttle_first > 10_000 {
            return Err("throttle_first is over 10000 requests".into());
        }
        if self.retry_after_s > 3600 {
            return Err("retry_after_s is over an hour".into());
        }
        if self.slow_response_ms > 60_000 || self.notification_delay_ms > 60_000 {
            return Err("delays over 60 s are not simulated".into());
        }
        Ok(())
    }
}

/// How the service answers one API request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFate {
    /// Handle it normally, after `delay`.
    Serve {
        /// Time to wait before answering.
        delay: Duration,
    },
    /// Refuse it with this status (429 or 503) and `Retry-After`, without acting on it.
    Refuse {
        /// HTTP status.
        status: u16,
        /// The `Retry-After` value.
        retry_after: Duration,
    },
}

/// What happens to one notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotificationFate {
    /// Post it at all.
    pub deliver: bool,
    /// Post it twice.
    pub duplicate: bool,
    /// Hold it back so that notifications posted soon after overtake it.
    pub hold_back: bool,
    /// Wait this long first.
    pub delay: Duration,
}

/// What a bot's answer to a notification's legacy form means to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyAnswer {
    /// `204 No Content`: the bot speaks Graph; post the notification again in Graph format.
    ResendInGraphFormat,
    /// Another success: the bot took the legacy format, so the service would go on in it.
    KeptLegacy,
    /// Not a success: handled as for any notification (redirect, redelivery, failure).
    NotAccepted,
}

impl LegacyAnswer {
    /// Reads the HTTP status a bot answered a legacy-format notification with.
    pub fn from_status(status: u16) -> LegacyAnswer {
        match status {
            204 => LegacyAnswer::ResendInGraphFormat,
            200..=299 => LegacyAnswer::KeptLegacy,
            _ => LegacyAnswer::NotAccepted,
        }
    }
}

/// Draws the fate of requests and notifications from a seeded generator.
#[derive(Debug)]
pub struct FaultPlan {
    faults: SignalingFaults,
    rng: StdRng,
    /// API requests decided so far.
    requests: u64,
}

impl FaultPlan {
    /// A plan for `faults`, its randomness drawn from `seed`.
    pub fn new(faults: SignalingFaults, seed: u64) -> FaultPlan {
        FaultPlan {
            faults,
            rng: StdRng::seed_from_u64(seed),
            requests: 0,
        }
    }

    /// The settings this plan follows.
    pub fn faults(&self) -> &SignalingFaults {
        &self.faults
    }

    /// Decides how to answer the next API request.
    pub fn request(&mut self) -> RequestFate {
        let draw: f64 = self.rng.random();
        let retry_after = Duration::from_secs(self.faults.retry_after_s);
        self.requests += 1;
        if self.requests <= u64::from(self.faults.throttle_first) || draw < self.faults.throttle {
            RequestFate::Refuse {
                status: 429,
                retry_after,
            }
        } else if draw < self.faults.throttle + self.faults.unavailable {
            RequestFate::Refuse {
                status: 503,
                retry_after,
            }
        } else {
            RequestFate::Serve {
                delay: Duration::from_millis(self.faults.slow_response_ms),
            }
        }
    }

    /// Decides what happens to the next notification.
    pub fn notification(&mut self) -> NotificationFate {
        NotificationFate {
            deliver: !self.rng.random_bool(self.faults.notification_drop),
            duplicate: self.rng.random_bool(self.faults.notification_duplicate),
            hold_back: self.rng.random_bool(self.faults.notification_reorder),
            delay: Duration::from_millis(self.faults.notification_delay_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_behaved_by_default() {
        let mut plan = FaultPlan::new(SignalingFaults::default(), 1);
        for _ in 0..1000 {
            assert_eq!(
                plan.request(),
                RequestFate::Serve {
                    delay: Duration::ZERO
                }
            );
            let n = plan.notification();
            assert!(n.deliver && !n.duplicate && !n.hold_back);
        }
    }

    #[test]
    fn shares_are_honoured_and_reproducible() {
        let faults = SignalingFaults {
            throttle: 0.3,
            unavailable: 0.1,
            retry_after_s: 2,
            notification_drop: 0.2,
            ..SignalingFaults::default()
        };
        let draw = |seed| {
            let mut plan = FaultPlan::new(faults.clone(), seed);
            (0..10_000).map(|_| plan.request()).collect::<Vec<_>>()
        };
        let fates = draw(5);
        let count = |status| {
            fates
                .iter()
                .filter(|f| matches!(f, RequestFate::Refuse { status: s, .. } if *s == status))
                .count()
        };
        assert!((2700..3300).contains(&count(429)), "{}", count(429));
        assert!((800..1200).contains(&count(503)), "{}", count(503));
        assert!(fates.iter().all(|f| match f {
            RequestFate::Refuse { retry_after, .. } => *retry_after == Duration::from_secs(2),
            RequestFate::Serve { .. } => true,
        }));
        assert_eq!(fates, draw(5));
        let mut plan = FaultPlan::new(faults, 5);
        let dropped = (0..10_000).filter(|_| !plan.notification().deliver).count();
        assert!((1700..2300).contains(&dropped), "{dropped}");
    }

    #[test]
    fn a_storm_refuses_the_first_requests_then_follows_the_shares() {
        let faults = SignalingFaults {
            throttle_first: 3,
            retry_after_s: 2,
            ..SignalingFaults::default()
        };
        let mut plan = FaultPlan::new(faults, 9);
        let refused = RequestFate::Refuse {
            status: 429,
            retry_after: Duration::from_secs(2),
        };
        for _ in 0..3 {
            assert_eq!(plan.request(), refused);
        }
        for _ in 0..100 {
            assert!(matches!(plan.request(), RequestFate::Serve { .. }));
        }
        let bad = SignalingFaults {
            throttle_first: 10_001,
            ..SignalingFaults::default()
        };
        assert!(bad.validate().unwrap_err().contains("throttle_first"));
    }

    #[test]
    fn only_204_turns_a_legacy_notification_into_a_graph_one() {
        assert_eq!(
            LegacyAnswer::from_status(204),
            LegacyAnswer::ResendInGraphFormat
        );
        for ok in [200, 201, 202] {
            assert_eq!(LegacyAnswer::from_status(ok), LegacyAnswer::KeptLegacy);
        }
        for other in [302, 400, 401, 429, 500, 503] {
            assert_eq!(LegacyAnswer::from_status(other), LegacyAnswer::NotAccepted);
        }
    }

    #[test]
    fn validation_names_the_field() {
        let bad = SignalingFaults {
            notification_reorder: 1.5,
            ..SignalingFaults::default()
        };
        assert!(bad.validate().unwrap_err().contains("notification_reorder"));
        let both = SignalingFaults {
            throttle: 0.6,
            unavailable: 0.6,
            ..SignalingFaults::default()
        };
        assert!(both.validate().is_err());
    }
}
