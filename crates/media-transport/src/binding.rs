//! Binding received streams to the roster: audio of a source the roster lists passes; audio of a
//! source it does not list (yet) is held briefly, then released when the roster binds the
//! source, or dropped and counted when the hold runs out. Sans-IO: time is passed in.
//!
//! Media can outrun signaling: the service may start sending a joining participant's audio
//! before the roster notification that announces its `sourceId` arrives, so a short hold avoids
//! clipping the first words without ever delivering audio nobody listed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use media_session::SourceId;

/// Limits of the hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateConfig {
    /// How long a packet of an unlisted source is kept.
    pub hold: Duration,
    /// Packets kept per unlisted source (the oldest go first).
    pub max_held_per_source: usize,
    /// Unlisted sources held at once; packets of further ones are dropped at once.
    pub max_held_sources: usize,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            hold: Duration::from_millis(500),
            max_held_per_source: 25,
            max_held_sources: 8,
        }
    }
}

/// What the gate did with a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit<P> {
    /// The source is bound: deliver the packet now.
    Deliver(P),
    /// Held until the source is bound or the hold runs out.
    Held,
    /// Dropped (too many unlisted sources).
    Dropped,
}

/// Counts of what the gate did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GateCounters {
    /// Packets held at arrival.
    pub held: u64,
    /// Held packets released to a source bound in time.
    pub released: u64,
    /// Packets dropped: hold expired, per-source limit, too many sources, or source unbound.
    pub dropped: u64,
}

/// The roster gate in front of the pipeline.
#[derive(Debug)]
pub struct SourceGate<P> {
    config: GateConfig,
    bound: HashSet<SourceId>,
    held: HashMap<SourceId, VecDeque<(Instant, P)>>,
    counters: GateCounters,
}

impl<P> SourceGate<P> {
    /// An empty gate: no source bound.
    pub fn new(config: GateConfig) -> Self {
        SourceGate {
            config,
            bound: HashSet::new(),
            held: HashMap::new(),
            counters: GateCounters::default(),
        }
    }

    /// True when `source` is bound.
    pub fn is_bound(&self, source: SourceId) -> bool {
        self.bound.contains(&source)
    }

    /// What happened so far.
    pub fn counters(&self) -> GateCounters {
        self.counters
    }

    /// A packet of `source` arrived at `now`.
    pub fn admit(&mut self, now: Instant, source: SourceId, packet: P) -> Admit<P> {
        if self.bound.contains(&source) {
            return Admit::Deliver(packet);
        }
        self.handle_timeout(now);
        if !self.held.contains_key(&source) && self.held.len() >= self.config.max_held_sources {
            self.counters.dropped += 1;
            return Admit::Dropped;
        }
        let queue = self.held.entry(source).or_default();
        if queue.len() >= self.config.max_held_per_source.max(1) {
            queue.pop_front();
            self.counters.dropped += 1;
        }
        queue.push_back((now, packet));
        self.counters.held += 1;
        Admit::Held
    }

    /// The roster lists `source`: later packets pass, and the held ones still within the hold
    /// are returned in arrival order for delivery.
    pub fn bind(&mut self, now: Instant, source: SourceId) -> Vec<P> {
        self.handle_timeout(now);
        self.bound.insert(source);
        let released: Vec<P> = self
            .held
            .remove(&source)
            .map(|q| q.into_iter().map(|(_, p)| p).collect())
            .unwrap_or_default();
        self.counters.released += released.len() as u64;
        released
    }

    /// The roster no longer lists `source`: its packets are held (and expire) again.
    pub fn unbind(&mut self, source: SourceId) {
        self.bound.remove(&source);
    }

    /// When held packets next expire.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.held
            .values()
            .filter_map(|q| q.front().map(|(t, _)| *t + self.config.hold))
            .min()
    }

    /// Drops held packets older than the hold.
    pub fn handle_timeout(&mut self, now: Instant) {
        let hold = self.config.hold;
        let mut dropped = 0;
        self.held.retain(|_, q| {
            while q.front().is_some_and(|(t, _)| *t + hold <= now) {
                q.pop_front();
                dropped += 1;
            }
            !q.is_empty()
        });
        self.counters.dropped += dropped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn unlisted_audio_is_held_then_released_in_order() {
        let t0 = Instant::now();
        let mut g = SourceGate::new(GateConfig::default());
        assert_eq!(g.admit(t0, SourceId(5), 1), Admit::Held);
        assert_eq!(g.admit(t0 + 20 * MS, SourceId(5), 2), Admit::Held);
        assert_eq!(g.bind(t0 + 100 * MS, SourceId(5)), [1, 2]);
        assert_eq!(g.admit(t0 + 120 * MS, SourceId(5), 3), Admit::Deliver(3));
        assert_eq!(
            g.counters(),
            GateCounters {
                held: 2,
                released: 2,
                dropped: 0
            }
        );
    }

    #[test]
    fn unlisted_audio_expires_and_is_counted() {
        let t0 = Instant::now();
        let cfg = GateConfig {
            hold: 100 * MS,
            max_held_per_source: 3,
            max_held_sources: 1,
        };
        let mut g = SourceGate::new(cfg);
        for i in 0..5 {
            assert_eq!(g.admit(t0 + i * MS, SourceId(5), i), Admit::Held);
        }
        // Per-source limit: the two oldest went.
        assert_eq!(g.counters().dropped, 2);
        // A second unlisted source is over the source limit.
        assert_eq!(g.admit(t0, SourceId(6), 9), Admit::Dropped);
        assert_eq!(g.poll_timeout(), Some(t0 + 2 * MS + 100 * MS));
        g.handle_timeout(t0 + 200 * MS);
        assert_eq!(g.counters().dropped, 6);
        assert!(g.bind(t0 + 200 * MS, SourceId(5)).is_empty());
        g.unbind(SourceId(5));
        assert_eq!(g.admit(t0 + 300 * MS, SourceId(5), 7), Admit::Held);
    }
}
