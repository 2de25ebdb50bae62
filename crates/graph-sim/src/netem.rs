//! Seeded, reproducible network impairment for one direction of a media path.
//!
//! [`Link`] is a sans-IO core: packets go in with [`Link::send`] at a given `Instant`, come out of
//! [`Link::poll_output`] once their delivery time has come, and [`Link::poll_timeout`] says when to
//! look again. The same seed and the same inputs always give the same outputs, so an impaired test
//! run can be replayed exactly.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How one direction of a link is impaired. The default impairs nothing.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Impairment {
    /// Share of packets lost, 0.0..=1.0.
    pub loss: f64,
    /// When set, losses come in bursts of this mean length (packets) instead of independently,
    /// with the same long-run loss share (a two-state Gilbert model).
    pub mean_burst: Option<f64>,
    /// Fixed one-way delay.
    #[serde(with = "millis")]
    pub delay: Duration,
    /// Extra delay drawn uniformly from 0..=jitter per packet. Packets still leave in order unless
    /// `reorder` says otherwise, as on a real path where queues vary but do not overtake.
    #[serde(with = "millis")]
    pub jitter: Duration,
    /// Share of packets held back behind the packet that follows them, 0.0..=1.0.
    pub reorder: f64,
    /// Share of packets delivered twice, 0.0..=1.0.
    pub duplicate: f64,
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Why an [`Impairment`] was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ImpairmentError {
    /// A share is not within 0.0..=1.0.
    #[error("{0} must be between 0 and 1")]
    Share(&'static str),
    /// The mean burst length is below one packet.
    #[error("mean_burst must be at least 1 packet")]
    Burst,
    /// Delay or jitter beyond ten seconds: no call survives that, so it is a typo.
    #[error("{0} is over 10 s")]
    TooLong(&'static str),
}

impl Impairment {
    /// Checks the values are meaningful.
    pub fn validate(&self) -> Result<(), ImpairmentError> {
        for (name, share) in [
            ("loss", self.loss),
            ("reorder", self.reorder),
            ("duplicate", self.duplicate),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(ImpairmentError::Share(name));
            }
        }
        if self.mean_burst.is_some_and(|b| b.is_nan() || b < 1.0) {
            return Err(ImpairmentError::Burst);
        }
        for (name, d) in [("delay", self.delay), ("jitter", self.jitter)] {
            if d > Duration::from_secs(10) {
                return Err(ImpairmentError::TooLong(name));
            }
        }
        Ok(())
    }

    /// True when nothing is impaired, so a caller may bypass the link entirely.
    pub fn is_clean(&self) -> bool {
        *self == Impairment::default()
    }
}

/// What a link did to the packets it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStats {
    /// Packets handed to [`Link::send`].
    pub sent: u64,
    /// Packets dropped.
    pub lost: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Packets held back to arrive after a later one.
    pub reordered: u64,
    /// Packets (copies included) handed out by [`Link::poll_output`].
    pub delivered: u64,
}

/// One direction of an impaired path. See the module docs.
#[derive(Debug)]
pub struct Link<T> {
    impairment: Impairment,
    rng: StdRng,
    /// Gilbert model state: true while in a loss burst.
    in_burst: bool,
    /// Delivery time of the last in-order packet, so jitter never makes packets overtake.
    last_due: Option<Instant>,
    /// Packets waiting, earliest delivery first; the counter keeps equal times in send order.
    queue: BinaryHeap<Reverse<Pending<T>>>,
    /// A packet held back until the next one is sent, to swap their order.
    held: Option<T>,
    counter: u64,
    stats: LinkStats,
}

#[derive(Debug)]
struct Pending<T> {
    due: Instant,
    order: u64,
    packet: T,
}

impl<T> PartialEq for Pending<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.order) == (other.due, other.order)
    }
}
impl<T> Eq for Pending<T> {}
impl<T> PartialOrd for Pending<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Pending<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.order).cmp(&(other.due, other.order))
    }
}

impl<T: Clone> Link<T> {
    /// A link with `impairment`, its randomness drawn from `seed`.
    pub fn new(impairment: Impairment, seed: u64) -> Result<Self, ImpairmentError> {
        impairment.validate()?;
        Ok(Link {
            impairment,
            rng: StdRng::seed_from_u64(seed),
            in_burst: false,
            last_due: None,
            queue: BinaryHeap::new(),
            held: None,
            counter: 0,
            stats: LinkStats::default(),
        })
    }

    /// What the link has done so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Hands the link a packet sent at `now`.
    pub fn send(&mut self, now: Instant, packet: T) {
        self.stats.sent += 1;
        if self.lose() {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.rng.random_bool(self.impairment.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        let hold = self.held.is_none() && self.rng.random_bool(self.impairment.reorder);
        for copy in 0..copies {
            let packet = if copy + 1 < copies {
                packet.clone()
            } else {
                // The last copy takes the original; no clone needed.
                return self.place(now, packet, hold);
            };
            self.schedule(now, packet);
        }
    }

    fn place(&mut self, now: Instant, packet: T, hold: bool) {
        if hold {
            self.stats.reordered += 1;
            self.held = Some(packet);
            return;
        }
        self.schedule(now, packet);
        // A held packet goes out right behind the one that overtook it.
        if let Some(held) = self.held.take() {
            self.schedule(now, held);
        }
    }

    fn schedule(&mut self, now: Instant, packet: T) {
        let jitter = self.impairment.jitter;
        let extra = if jitter.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(
                self.rng
                    .random_range(0..=u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX)),
            )
        };
        let mut due = now + self.impairment.delay + extra;
        if let Some(last) = self.last_due {
            due = due.max(last);
        }
        self.last_due = Some(due);
        self.counter += 1;
        self.queue.push(Reverse(Pending {
            due,
            order: self.counter,
            packet,
        }));
    }

    /// Decides whether the next packet is lost, following the Gilbert model when bursts are set.
    fn lose(&mut self) -> bool {
        let loss = self.impairment.loss;
        if loss <= 0.0 {
            return false;
        }
        let Some(burst) = self.impairment.mean_burst else {
            return self.rng.random_bool(loss);
        };
        if loss >= 1.0 {
            return true;
        }
        // Leave a burst with probability 1/burst; enter one at the rate that keeps the long-run
        // share of time in bursts equal to `loss`.
        let leave = 1.0 / burst;
        let enter = (loss * leave / (1.0 - loss)).min(1.0);
        self.in_burst = if self.in_burst {
            !self.rng.random_bool(leave)
        } else {
            self.rng.random_bool(enter)
        };
        self.in_burst
    }

    /// The next packet due at or before `now`, if any.
    #[must_use]
    pub fn poll_output(&mut self, now: Instant) -> Option<T> {
        if self.queue.peek().is_some_and(|Reverse(p)| p.due <= now) {
            self.stats.delivered += 1;
            return self.queue.pop().map(|Reverse(p)| p.packet);
        }
        None
    }

    /// When the next packet falls due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(p)| p.due)
    }

    /// Releases a packet still held for reordering (at the end of a stream nothing follows it).
    pub fn flush_held(&mut self, now: Instant) {
        if let Some(held) = self.held.take() {
            self.schedule(now, held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(20);

    /// Sends `n` numbered packets 20 ms apart and collects what comes out, in order.
    fn run(impairment: Impairment, seed: u64, n: u32) -> (Vec<(u32, Instant)>, LinkStats, Instant) {
        let start = Instant::now();
        let mut link = Link::new(impairment, seed).unwrap();
        let mut out = Vec::new();
        let mut now = start;
        for i in 0..n {
            now = start + TICK * i;
            // Anything due between ticks comes out at its due time, then this tick's packet goes in.
            while let Some(due) = link.poll_timeout().filter(|d| *d <= now) {
                while let Some(p) = link.poll_output(due) {
                    out.push((p, due));
                }
            }
            link.send(now, i);
            while let Some(p) = link.poll_output(now) {
                out.push((p, now));
            }
        }
        link.flush_held(now);
        while let Some(due) = link.poll_timeout() {
            while let Some(p) = link.poll_output(due) {
                out.push((p, due));
            }
        }
        (out, link.stats(), start)
    }

    #[test]
    fn clean_link_delivers_everything_in_order_at_once() {
        let (out, stats, start) = run(Impairment::default(), 1, 100);
        let ids: Vec<u32> = out.iter().map(|(p, _)| *p).collect();
        assert_eq!(ids, (0..100).collect::<Vec<_>>());
        assert_eq!(stats.lost + stats.duplicated + stats.reordered, 0);
        assert_eq!(out[5].1, start + TICK * 5, "no delay when none is set");
    }

    #[test]
    fn delay_and_jitter_bound_arrival_and_keep_order() {
        let imp = Impairment {
            delay: Duration::from_millis(40),
            jitter: Duration::from_millis(30),
            ..Impairment::default()
        };
        let (out, _, start) = run(imp, 7, 500);
        assert_eq!(out.len(), 500);
        let ids: Vec<u32> = out.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            ids,
            (0..500).collect::<Vec<_>>(),
            "jitter alone never reorders"
        );
        let mut spread = Vec::new();
        for (p, at) in &out {
            let sent = start + TICK * *p;
            // Delivery happens at the poll after the due time, which this harness polls exactly.
            let lag = *at - sent;
            assert!(lag >= Duration::from_millis(40), "{lag:?}");
            spread.push(lag);
        }
        assert!(
            spread.iter().any(|l| *l > Duration::from_millis(55)),
            "jitter has effect"
        );
    }

    #[test]
    fn random_loss_hits_its_share_and_is_reproducible() {
        let imp = Impairment {
            loss: 0.15,
            ..Impairment::default()
        };
        let (a, stats, _) = run(imp.clone(), 42, 20_000);
        let share = stats.lost as f64 / stats.sent as f64;
        assert!((0.14..0.16).contains(&share), "{share}");
        let (b, _, _) = run(imp.clone(), 42, 20_000);
        let ids = |v: &[(u32, Instant)]| v.iter().map(|(p, _)| *p).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b), "same seed, same losses");
        let (c, _, _) = run(imp, 43, 20_000);
        assert_ne!(ids(&a), ids(&c), "another seed, other losses");
    }

    #[test]
    fn bursty_loss_keeps_share_and_makes_runs() {
        let imp = Impairment {
            loss: 0.1,
            mean_burst: Some(4.0),
            ..Impairment::default()
        };
        let (out, stats, _) = run(imp, 3, 50_000);
        let share = stats.lost as f64 / stats.sent as f64;
        assert!((0.085..0.115).contains(&share), "{share}");
        // Mean length of runs of consecutive lost packets.
        let got: Vec<u32> = out.iter().map(|(p, _)| *p).collect();
        let mut runs = Vec::new();
        for w in got.windows(2) {
            let gap = w[1] - w[0] - 1;
            if gap > 0 {
                runs.push(gap);
            }
        }
        let mean = runs.iter().sum::<u32>() as f64 / runs.len() as f64;
        assert!((3.2..4.8).contains(&mean), "mean burst {mean}");
    }

    #[test]
    fn reorder_swaps_neighbours_and_duplicate_copies() {
        let imp = Impairment {
            reorder: 0.1,
            duplicate: 0.05,
            ..Impairment::default()
        };
        let (out, stats, _) = run(imp, 9, 10_000);
        let ids: Vec<u32> = out.iter().map(|(p, _)| *p).collect();
        let inversions = ids.windows(2).filter(|w| w[1] < w[0]).count() as u64;
        assert!(stats.reordered > 700, "{stats:?}");
        assert_eq!(
            inversions, stats.reordered,
            "each held packet lands after one later packet"
        );
        assert_eq!(out.len() as u64, 10_000 + stats.duplicated);
        assert!((400..600).contains(&stats.duplicated), "{stats:?}");
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 10_000, "nothing lost");
    }

    #[test]
    fn rejects_meaningless_settings() {
        let bad = [
            Impairment {
                loss: 1.5,
                ..Impairment::default()
            },
            Impairment {
                reorder: -0.1,
                ..Impairment::default()
            },
            Impairment {
                duplicate: f64::NAN,
                ..Impairment::default()
            },
            Impairment {
                mean_burst: Some(0.5),
                ..Impairment::default()
            },
            Impairment {
                delay: Duration::from_secs(11),
                ..Impairment::default()
            },
        ];
        for imp in bad {
            assert!(Link::<u8>::new(imp.clone(), 0).is_err(), "{imp:?}");
        }
    }

    #[test]
    fn impairment_reads_from_config_in_milliseconds() {
        let imp: Impairment =
            serde_json::from_str(r#"{"loss":0.05,"jitter":30,"delay":10,"reorder":0.01}"#).unwrap();
        assert_eq!(imp.jitter, Duration::from_millis(30));
        assert_eq!(imp.delay, Duration::from_millis(10));
        assert!(!imp.is_clean());
        assert!(serde_json::from_str::<Impairment>(r#"{"los":0.05}"#).is_err());
    }
}
