//! When to retry a Graph request, as data (sans-IO).
//!
//! A call-creating request must never be sent twice for one intent: the service would place two
//! calls. So non-idempotent requests are retried only when the service provably did not act on
//! them (429 and 503 answers, or a connection that failed before the request went out).

use std::time::{Duration, SystemTime};

/// Whether repeating a request could do something twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Safe to repeat (GET, DELETE, keepAlive, mute, recording status).
    Idempotent,
    /// Not safe (create call, invite, answer, reject, redirect, transfer).
    NonIdempotent,
}

/// What happened to one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The service answered with this status.
    Status {
        /// HTTP status.
        status: u16,
        /// Parsed `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The connection failed before the request was sent.
    NotSent,
    /// The request may have been sent, but no answer came (timeout, reset).
    NoAnswer,
}

/// The decision for an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The attempt's outcome is final (success or a non-retryable error).
    Done,
    /// Try again after this delay.
    RetryAfter(Duration),
    /// Retryable, but attempts are exhausted.
    GiveUp,
    /// The outcome is unknown and repeating could act twice.
    Ambiguous,
}

/// Retry limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, including the first.
    pub max_attempts: u32,
    /// First backoff delay; doubles per attempt.
    pub base_backoff: Duration,
    /// Longest backoff delay.
    pub max_backoff: Duration,
    /// Longest `Retry-After` honoured; longer values are capped.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Decides after attempt number `attempt` (1-based). `jitter` in `[0, 1)` spreads backoffs
    /// of many clients apart; it scales the backoff into `[50%, 100%)`.
    pub fn decide(
        &self,
        attempt: u32,
        idem: Idempotency,
        outcome: Attempt,
        jitter: f64,
    ) -> Decision {
        let retryable = match outcome {
            Attempt::Status { status, .. } if status < 400 => return Decision::Done,
            // The service refused without acting: safe for every request.
            Attempt::Status {
                status: 429 | 503, ..
            }
            | Attempt::NotSent => true,
            // A gateway timeout or a lost answer may hide a call that was placed.
            Attempt::Status {
                status: 502 | 504, ..
            }
            | Attempt::NoAnswer => {
                if idem == Idempotency::NonIdempotent {
                    return Decision::Ambiguous;
                }
                true
            }
            Attempt::Status { .. } => return Decision::Done,
        };
        debug_assert!(retryable);
        if attempt >= self.max_attempts {
            return Decision::GiveUp;
        }
        if let Attempt::Status {
            retry_after: Some(after),
            ..
        } = outcome
        {
            return Decision::RetryAfter(after.min(self.max_retry_after));
        }
        Decision::RetryAfter(self.backoff(attempt, jitter))
    }

    /// Exponential backoff with jitter for attempt `attempt` (1-based).
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self
            .base_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_backoff);
        exp.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// Parses `Retry-After` (RFC 9110 section 10.2.3): delay-seconds, the form Graph uses, or an
/// HTTP date, read against `now` (the wall clock, passed in so the parse stays pure). A date
/// already past means "retry now" ([`Duration::ZERO`]); a far one is returned as is and capped
/// by [`RetryPolicy::max_retry_after`] like a large number of seconds. Anything else reads as
/// absent, and the policy's own backoff applies.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    // The longest IMF-fixdate is 29 bytes; anything much longer is not worth parsing.
    if value.is_empty() || value.len() > 64 {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is still "a very long time": the cap decides.
        return Some(
            value
                .parse::<u64>()
                .map_or(Duration::MAX, Duration::from_secs),
        );
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Idempotency::*;

    #[test]
    fn non_idempotent_requests_retry_only_when_the_service_did_not_act() {
        let p = RetryPolicy::default();
        let s = |status, ra: Option<u64>| Attempt::Status {
            status,
            retry_after: ra.map(Duration::from_secs),
        };
        assert_eq!(
            p.decide(1, NonIdempotent, s(429, Some(3)), 0.0),
            Decision::RetryAfter(Duration::from_secs(3))
        );
        assert_eq!(
            p.decide(1, NonIdempotent, s(503, Some(2)), 0.0),
            Decision::RetryAfter(Duration::from_secs(2))
        );
        assert!(matches!(
            p.decide(1, NonIdempotent, Attempt::NotSent, 0.5),
            Decision::RetryAfter(_)
        ));
        assert_eq!(
            p.decide(1, NonIdempotent, s(504, None), 0.0),
            Decision::Ambiguous
        );
        assert_eq!(
            p.decide(1, NonIdempotent, Attempt::NoAnswer, 0.0),
            Decision::Ambiguous
        );
        assert!(matches!(
            p.decide(1, Idempotent, s(504, None), 0.0),
            Decision::RetryAfter(_)
        ));
        assert!(matches!(
            p.decide(1, Idempotent, Attempt::NoAnswer, 0.0),
            Decision::RetryAfter(_)
        ));
        assert_eq!(
            p.decide(1, NonIdempotent, s(400, None), 0.0),
            Decision::Done
        );
        assert_eq!(
            p.decide(1, NonIdempotent, s(201, None), 0.0),
            Decision::Done
        );
        assert_eq!(
            p.decide(4, Idempotent, s(429, Some(1)), 0.0),
            Decision::GiveUp
        );
    }

    #[test]
    fn retry_after_is_bounded_and_backoff_grows_with_jitter() {
        let p = RetryPolicy::default();
        let long = Attempt::Status {
            status: 429,
            retry_after: Some(Duration::from_secs(3600)),
        };
        assert_eq!(
            p.decide(1, Idempotent, long, 0.0),
            Decision::RetryAfter(Duration::from_secs(60))
        );
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(500));
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(250));
        assert_eq!(p.backoff(2, 0.0), Duration::from_millis(500));
        assert_eq!(p.backoff(30, 1.0), Duration::from_secs(10));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        // 2015-10-21T07:28:00Z, the example date of RFC 9110.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        // Thirty seconds ahead, in each of the three date forms RFC 9110 accepts.
        for date in [
            "Wed, 21 Oct 2015 07:28:30 GMT",
            "Wednesday, 21-Oct-15 07:28:30 GMT",
            "Wed Oct 21 07:28:30 2015",
        ] {
            assert_eq!(
                parse_retry_after(date, now),
                Some(Duration::from_secs(30)),
                "{date}"
            );
        }
        // A date already past: retry now.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        for junk in [
            "",
            "soon",
            "-5",
            "1.5",
            "Wed, 99 Oct 2015 07:28:00 GMT",
            &"9".repeat(100),
        ] {
            assert_eq!(parse_retry_after(junk, now), None, "{junk:?}");
        }
    }

    #[test]
    fn absurd_retry_after_values_are_capped_by_the_policy() {
        let p = RetryPolicy::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let throttled = |after| Attempt::Status {
            status: 429,
            retry_after: after,
        };
        let far_date = parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT", now);
        let huge_seconds = parse_retry_after("99999999999999999999999", now);
        assert_eq!(huge_seconds, Some(Duration::MAX));
        for after in [far_date, huge_seconds] {
            assert_eq!(
                p.decide(1, Idempotent, throttled(after), 0.0),
                Decision::RetryAfter(p.max_retry_after)
            );
        }
        let past = parse_retry_after("Thu, 01 Jan 2015 00:00:00 GMT", now);
        assert_eq!(
            p.decide(1, NonIdempotent, throttled(past), 0.0),
            Decision::RetryAfter(Duration::ZERO)
        );
    }
}
