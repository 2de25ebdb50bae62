//! RFC 3550 reception statistics of one RTP stream: the sequence-number bookkeeping of A.1, the
//! expected/lost figures of A.3 and the interarrival jitter of A.8. Sans-IO: each packet's
//! sequence number, RTP timestamp and arrival `Instant` are passed in.
//!
//! This is the one place mediabot computes these figures: the jitter buffer sizes itself from
//! the jitter, and media-transport reports loss and jitter per stream from it.

use std::time::{Duration, Instant};

/// A forward jump of at least this many sequence numbers is not taken as loss at once: it may
/// be a sender that restarted (RFC 3550 A.1's `MAX_DROPOUT`).
const MAX_DROPOUT: u16 = 3000;

/// A packet at most this many sequence numbers behind the highest one is late or a duplicate,
/// not a restart (RFC 3550 A.1's `MAX_MISORDER`).
const MAX_MISORDER: u16 = 100;

/// Reception statistics of one RTP stream (RFC 3550 appendix A.1, A.3, A.8).
///
/// Unlike A.1, a stream is valid from its first packet (no probation): SRTP has already
/// authenticated what arrives here, which is what probation guards against on plain RTP.
#[derive(Debug, Clone)]
pub struct ReceptionStats {
    clock_rate: u32,
    started: bool,
    base_seq: u16,
    max_seq: u16,
    /// Wraps of the sequence number, times 2^16 (A.1's `cycles`).
    cycles: u64,
    /// The sequence number after a suspicious jump: if it comes next, the sender restarted.
    bad_seq: Option<u16>,
    received: u64,
    reordered: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Arrival times are counted in RTP units from this instant; only differences matter.
    origin: Option<Instant>,
    /// Relative transit time of the last packet (A.8's `transit`), wrapping like the RFC's
    /// 32-bit arithmetic.
    transit: Option<u32>,
    /// Jitter in RTP units, scaled by 16 (the RFC's integer form).
    jitter_x16: u32,
}

impl ReceptionStats {
    /// Empty statistics of a stream whose RTP clock runs at `clock_rate` Hz (48 000 for Opus).
    pub fn new(clock_rate: u32) -> Self {
        ReceptionStats {
            clock_rate: clock_rate.max(1),
            started: false,
            base_seq: 0,
            max_seq: 0,
            cycles: 0,
            bad_seq: None,
            received: 0,
            reordered: 0,
            expected_prior: 0,
            received_prior: 0,
            origin: None,
            transit: None,
            jitter_x16: 0,
        }
    }

    /// Forgets everything: the stream starts again (a new SSRC).
    pub fn reset(&mut self) {
        *self = ReceptionStats::new(self.clock_rate);
    }

    /// Records one packet. Returns false when A.1 does not count it: the first packet after a
    /// jump too large to be loss (a second one in sequence restarts the statistics there).
    pub fn record(&mut self, seq: u16, timestamp: u32, arrival: Instant) -> bool {
        if !self.update_seq(seq) {
            return false;
        }
        self.update_jitter(timestamp, arrival);
        true
    }

    fn init_seq(&mut self, seq: u16) {
        self.started = true;
        self.base_seq = seq;
        self.max_seq = seq;
        self.cycles = 0;
        self.bad_seq = None;
        self.received = 0;
        self.reordered = 0;
        self.expected_prior = 0;
        self.received_prior = 0;
    }

    /// A.1's `update_seq`, without probation.
    fn update_seq(&mut self, seq: u16) -> bool {
        if !self.started {
            self.init_seq(seq);
            self.received = 1;
            return true;
        }
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta == 0 {
            // The highest packet again.
            self.reordered += 1;
        } else if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += 1 << 16;
            }
            self.max_seq = seq;
        } else if udelta <= u16::MAX - MAX_MISORDER + 1 {
            if self.bad_seq == Some(seq) {
                // Two packets in sequence after the jump: the sender restarted.
                self.init_seq(seq);
            } else {
                self.bad_seq = Some(seq.wrapping_add(1));
                return false;
            }
        } else {
            self.reordered += 1;
        }
        self.received += 1;
        true
    }

    /// A.8: J += (|D| - J) / 16, with D the change of the relative transit time.
    fn update_jitter(&mut self, timestamp: u32, arrival: Instant) {
        let origin = *self.origin.get_or_insert(arrival);
        let units = |d: Duration| {
            (d.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as u64 as u32
        };
        // Instants from a caller may run backwards; the RFC's wrapping arithmetic copes.
        let arrival_units = match arrival.checked_duration_since(origin) {
            Some(d) => units(d),
            None => units(origin - arrival).wrapping_neg(),
        };
        let transit = arrival_units.wrapping_sub(timestamp);
        if let Some(last) = self.transit {
            let d = (transit.wrapping_sub(last) as i32).unsigned_abs();
            let j = self.jitter_x16;
            self.jitter_x16 = j.saturating_add(d).saturating_sub((j + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// Packets counted (A.1's `received`: duplicates and late ones included).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Packets that were not ahead of the highest sequence number seen: late or duplicated.
    pub fn reordered(&self) -> u64 {
        self.reordered
    }

    /// The highest sequence number seen, extended with its wraps (A.1's `extended_max`).
    pub fn extended_max(&self) -> u64 {
        self.cycles + u64::from(self.max_seq)
    }

    /// Packets the sequence numbers say were sent (A.3).
    pub fn expected(&self) -> u64 {
        if !self.started {
            return 0;
        }
        self.extended_max() - u64::from(self.base_seq) + 1
    }

    /// Packets lost (A.3), never below zero although duplicates can make `received` exceed
    /// `expected`.
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// `lost` over `expected` since the stream started, 0.0–1.0.
    pub fn fraction_lost(&self) -> f64 {
        match self.expected() {
            0 => 0.0,
            expected => self.lost() as f64 / expected as f64,
        }
    }

    /// The fraction lost since the previous call, as the 8-bit fixed-point number a receiver
    /// report carries (A.3); 0 when nothing was lost or duplicates made up for it.
    pub fn take_interval_fraction_lost(&mut self) -> u8 {
        let expected = self.expected();
        let expected_interval = expected - self.expected_prior.min(expected);
        self.expected_prior = expected;
        let received_interval = self.received - self.received_prior.min(self.received);
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        if expected_interval == 0 || lost_interval == 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval).min(255) as u8
        }
    }

    /// Interarrival jitter in RTP timestamp units (fractional: the estimate is kept ×16).
    pub fn jitter_units(&self) -> f64 {
        f64::from(self.jitter_x16) / 16.0
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter_units() * 1000.0 / f64::from(self.clock_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOCK: u32 = 48_000;
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn counts_across_the_sequence_wrap() {
        let t0 = Instant::now();
        let mut s = ReceptionStats::new(CLOCK);
        for i in 0..100u32 {
            if i == 40 || i == 41 {
                continue; // 65 535 and 0: lost right at the wrap
            }
            let seq = 65_495u16.wrapping_add(i as u16);
            assert!(s.record(seq, i * 960, t0 + 20 * MS * i));
        }
        assert_eq!(s.extended_max(), 65_536 + 58);
        assert_eq!(s.expected(), 100);
        assert_eq!(s.received(), 98);
        assert_eq!(s.lost(), 2);
        assert!((s.fraction_lost() - 0.02).abs() < 1e-12);
        // 2 of 100: 5.12/256, truncated as the RFC does.
        assert_eq!(s.take_interval_fraction_lost(), 5);
        assert_eq!(s.take_interval_fraction_lost(), 0);
    }

    #[test]
    fn late_and_duplicate_packets_are_counted_not_lost() {
        let t0 = Instant::now();
        let mut s = ReceptionStats::new(CLOCK);
        for seq in [1u16, 2, 4, 3, 5, 5] {
            s.record(seq, u32::from(seq) * 960, t0);
        }
        assert_eq!((s.expected(), s.received(), s.lost()), (5, 6, 0));
        assert_eq!(s.reordered(), 2);
    }

    #[test]
    fn a_restarted_sender_restarts_the_counts() {
        let t0 = Instant::now();
        let mut s = ReceptionStats::new(CLOCK);
        for seq in 0..10u16 {
            s.record(seq, 0, t0);
        }
        // One stray packet far ahead is not taken as 20 000 losses.
        assert!(!s.record(20_000, 0, t0));
        assert_eq!(s.expected(), 10);
        // Two in sequence there: the sender restarted.
        assert!(!s.record(30_000, 0, t0));
        assert!(s.record(30_001, 0, t0));
        assert_eq!((s.expected(), s.received()), (1, 1));
    }

    #[test]
    fn jitter_follows_the_formula_on_a_made_up_pattern() {
        // 20 ms packets (960 units) arriving 0, 8, 0, 8 … ms late: every transit change is
        // 8 ms = 384 units, so J_n = J_{n-1} + (384 - J_{n-1}) / 16 from J_0 = 0.
        let t0 = Instant::now();
        let mut s = ReceptionStats::new(CLOCK);
        let mut expect = 0.0f64;
        for i in 0..200u32 {
            let late = if i % 2 == 1 { 8 * MS } else { Duration::ZERO };
            s.record(i as u16, i * 960, t0 + 20 * MS * i + late);
            if i > 0 {
                expect += (384.0 - expect) / 16.0;
            }
            // The integer form rounds; it stays within a unit of the exact recurrence.
            assert!(
                (s.jitter_units() - expect).abs() < 1.0,
                "{i}: {s:?} {expect}"
            );
        }
        assert!((s.jitter_ms() - 8.0).abs() < 0.05, "{}", s.jitter_ms());

        // Hand-checked first steps with one odd delay: D = 480 units (10 ms) once.
        let mut s = ReceptionStats::new(CLOCK);
        s.record(0, 0, t0);
        s.record(1, 960, t0 + 30 * MS);
        // J16 = 0 + 480 - ((0 + 8) >> 4) = 480, i.e. J = 30 units.
        assert_eq!(s.jitter_units(), 30.0);
        s.record(2, 1920, t0 + 50 * MS);
        // D = 0: J16 = 480 - ((480 + 8) >> 4) = 450.
        assert_eq!(s.jitter_units(), 450.0 / 16.0);
    }

    #[test]
    fn steady_stream_has_no_jitter_and_timestamps_may_wrap() {
        let t0 = Instant::now();
        let mut s = ReceptionStats::new(CLOCK);
        for i in 0..100u32 {
            let ts = (u32::MAX - 50 * 960).wrapping_add(i * 960);
            s.record(i as u16, ts, t0 + 20 * MS * i);
        }
        assert_eq!(s.jitter_units(), 0.0);
        assert_eq!(s.lost(), 0);
    }

    #[test]
    fn hostile_input_never_panics() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut s = ReceptionStats::new(CLOCK);
        for (i, seq) in [0u16, 65_535, 32_768, 1, 0, 40_000, 40_001]
            .into_iter()
            .enumerate()
        {
            let at = if i % 2 == 0 {
                t0 + Duration::from_secs(3600)
            } else {
                t0 - Duration::from_secs(5)
            };
            s.record(seq, u32::MAX / (i as u32 + 1), at);
        }
        assert!(s.jitter_ms().is_finite());
        assert!(s.fraction_lost() <= 1.0);
    }
}
