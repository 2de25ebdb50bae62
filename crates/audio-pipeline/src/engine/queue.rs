//! Bounded hand-off queues that drop the oldest item when full.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::stats::Counter;

/// The producer side of a bounded lock-free queue whose overflow policy is "drop the oldest".
///
/// Real-time producers must never block, and for audio the newest frame is worth more than the
/// oldest, so on a full queue the producer pops one item itself (it holds a receiver too) and
/// counts it. crossbeam's array channel does this without locks or allocation.
#[derive(Debug)]
pub(crate) struct DropOldest<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
    dropped: Arc<Counter>,
}

impl<T> Clone for DropOldest<T> {
    fn clone(&self) -> Self {
        DropOldest {
            tx: self.tx.clone(),
            rx: self.rx.clone(),
            dropped: self.dropped.clone(),
        }
    }
}

impl<T> DropOldest<T> {
    /// A queue of `capacity` items, its consumer end, and the shared drop counter.
    pub(crate) fn new(capacity: usize, dropped: Arc<Counter>) -> (DropOldest<T>, Receiver<T>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        (
            DropOldest {
                tx,
                rx: rx.clone(),
                dropped,
            },
            rx,
        )
    }

    /// Enqueues `item`, dropping the oldest queued item if full. Returns false only when every
    /// consumer is gone.
    pub(crate) fn push(&self, mut item: T) -> bool {
        loop {
            match self.tx.try_send(item) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    item = back;
                    if self.rx.try_recv().is_ok() {
                        self.dropped.incr();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_drops_oldest_and_counts() {
        let dropped = Arc::new(Counter::default());
        let (q, rx) = DropOldest::new(3, dropped.clone());
        for i in 0..5 {
            assert!(q.push(i));
        }
        assert_eq!(dropped.get(), 2);
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![2, 3, 4]);
        drop(rx);
    }
}
