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

    /// Assigns a least loaded slot, the first at or after `preferred` (cyclically) among them:
    /// the load stays as even as with [`Slots::take`], and the call lands near the phase it
    /// asked for whenever that costs no balance.
    pub(crate) fn take_preferring(&mut self, preferred: usize) -> usize {
        let min = self.load.iter().copied().min().unwrap_or(0);
        let slot = (0..SLOTS)
            .map(|k| (preferred + k) % SLOTS)
            .find(|&i| self.load[i] == min)
            .unwrap_or(0);
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

    #[test]
    fn a_preferred_slot_is_taken_when_it_costs_no_balance() {
        let mut slots = Slots::default();
        assert_eq!(slots.take_preferring(5), 5);
        // Slot 5 is busier now: the next least loaded slot after it is chosen.
        assert_eq!(slots.take_preferring(5), 6);
        assert_eq!(slots.take_preferring(SLOTS - 1), SLOTS - 1);
        let mut slots = Slots::default();
        let all: Vec<usize> = (0..SLOTS).map(|_| slots.take_preferring(3)).collect();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (0..SLOTS).collect::<Vec<_>>(),
            "one call per slot first"
        );
        assert_eq!(all[0], 3);
        assert_eq!(slots.take_preferring(3), 3, "then the preferred one again");
    }
}
