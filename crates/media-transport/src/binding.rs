//! The roster gate: audio of a source that has no pipeline stream yet is held briefly, then
//! released when the source gets its stream, or dropped and counted when the hold runs out.
//! Sans-IO: time is passed in.
//!
//! Media can outrun signaling: the service may start sending a joining participant's audio
//! before the roster notification that announces its `sourceId` arrives, so a short hold avoids
//! clipping the first words without ever delivering audio nobody listed.
//!
//! The gate keeps no record of which sources are bound. Whoever owns the streams (the audio
//! pipeline's `StreamRegistry`, through `pipeline::PipelineBinding`) asks only the gate to hold
//! what it cannot deliver and to release a source's packets once that source has a stream.

use std::collections::{HashMap, VecDeque};
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

/// What the gate did with a packet of a source that has no stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
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
    /// Packets dropped: hold expired, per-source limit, too many sources, or the session ended.
    pub dropped: u64,
}

/// The roster gate in front of the pipeline: packets of sources without a stream.
#[derive(Debug)]
pub struct SourceGate<P> {
    config: GateConfig,
    held: HashMap<SourceId, VecDeque<(Instant, P)>>,
    counters: GateCounters,
}

impl<P> SourceGate<P> {
    /// An empty gate.
    pub fn new(config: GateConfig) -> Self {
        SourceGate {
            config,
            held: HashMap::new(),
            counters: GateCounters::default(),
        }
    }

    /// What happened so far.
    pub fn counters(&self) -> GateCounters {
        self.counters
    }

    /// A packet arrived at `now` for `source`, which has no stream to take it.
    pub fn hold(&mut self, now: Instant, source: SourceId, packet: P) -> Admit {
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

    /// `source` now has a stream: its held packets still within the hold are returned in
    /// arrival order for delivery.
    pub fn release(&mut self, now: Instant, source: SourceId) -> Vec<P> {
        self.handle_timeout(now);
        let released: Vec<P> = self
            .held
            .remove(&source)
            .map(|q| q.into_iter().map(|(_, p)| p).collect())
            .unwrap_or_default();
        self.counters.released += released.len() as u64;
        released
    }

    /// When held packets next expire.
    #[must_use]
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

    /// Drops everything held (the session ended), counting it.
    pub fn clear(&mut self) {
        let dropped: usize = self.held.values().map(VecDeque::len).sum();
        self.held.clear();
        self.counters.dropped += dropped as u64;
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
        assert_eq!(g.hold(t0, SourceId(5), 1), Admit::Held);
        assert_eq!(g.hold(t0 + 20 * MS, SourceId(5), 2), Admit::Held);
        assert_eq!(g.release(t0 + 100 * MS, SourceId(5)), [1, 2]);
        // Released once: nothing is left for a second release.
        assert!(g.release(t0 + 120 * MS, SourceId(5)).is_empty());
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
            assert_eq!(g.hold(t0 + i * MS, SourceId(5), i), Admit::Held);
        }
        // Per-source limit: the two oldest went.
        assert_eq!(g.counters().dropped, 2);
        // A second unlisted source is over the source limit.
        assert_eq!(g.hold(t0, SourceId(6), 9), Admit::Dropped);
        assert_eq!(g.poll_timeout(), Some(t0 + 2 * MS + 100 * MS));
        g.handle_timeout(t0 + 200 * MS);
        assert_eq!(g.counters().dropped, 6);
        assert!(g.release(t0 + 200 * MS, SourceId(5)).is_empty());
        // Room again for another source once the first one's packets expired.
        assert_eq!(g.hold(t0 + 300 * MS, SourceId(6), 7), Admit::Held);
        assert_eq!(g.poll_timeout(), Some(t0 + 400 * MS));
        g.clear();
        assert_eq!(g.counters().dropped, 7);
        assert_eq!(g.poll_timeout(), None);
    }
}
