//! Spreading a worker's calls over the sub-periods of its 20 ms cycle.

use super::SLOTS;

/// How many calls each of a worker's [`SLOTS`] one-millisecond sub-periods serves. A new call
/// takes the emptiest slot, so the work of one frame period is spread evenly and a busy worker
/// still reaches each call near its deadline.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    load: [usize; SLOTS],
}

impl Slots {
    /// Assigns the least loaded slot to a new call.
    pub(crate) fn take(&mut self) -> usize {
        let slot = (0..SLOTS).min_by_key(|&i| self.load[i]).unwrap_or(0);
        self.load[slot] += 1;
        slot
    }

    /// Frees the slot of a call that left.
    pub(crate) fn release(&mut self, slot: usize) {
        if let Some(load) = self.load.get_mut(slot) {
            *load = load.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_spread_evenly_and_freed_slots_are_reused() {
        let mut slots = Slots::default();
        let taken: Vec<usize> = (0..SLOTS * 2).map(|_| slots.take()).collect();
        for s in 0..SLOTS {
            assert_eq!(taken.iter().filter(|&&t| t == s).count(), 2, "slot {s}");
        }
        slots.release(7);
        assert_eq!(slots.take(), 7, "the emptiest slot is the freed one");
        slots.release(SLOTS + 5); // out of range: ignored
    }
}
