//! Bounded hand-off queues that drop the oldest item when full, and the doorbell that wakes
//! their consumer.

use std::sync::{Arc, OnceLock};
use std::thread::Thread;

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

/// Wakes the one thread that takes every call's outgoing packets (a transport's pump) when a
/// send worker queued some.
///
/// A consumer blocked in crossbeam's `recv` would make the real-time producer take the
/// channel's waker lock, which the consumer, at normal priority, also takes. Unparking a
/// thread is an atomic swap plus, only when it sleeps, one futex wake: no lock the two share.
/// Rung once per pass of a worker that queued packets (not once per packet), and when a call
/// leaves (so the consumer sees its queue close).
#[derive(Debug, Default)]
pub(crate) struct Doorbell {
    thread: OnceLock<Thread>,
    #[cfg(test)]
    pub(crate) rings: std::sync::atomic::AtomicU64,
}

impl Doorbell {
    /// Makes `thread` the one woken. False when another thread already is.
    pub(crate) fn register(&self, thread: Thread) -> bool {
        self.thread.set(thread).is_ok()
    }

    pub(crate) fn ring(&self) {
        #[cfg(test)]
        self.rings
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.get() {
            t.unpark();
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

    #[test]
    fn a_ring_wakes_the_registered_thread_only() {
        let bell = Doorbell::default();
        // Nobody registered: ringing is harmless.
        bell.ring();
        assert!(bell.register(std::thread::current()));
        assert!(!bell.register(std::thread::current()), "one thread only");
        bell.ring();
        // The ring left the thread's token set, so parking returns at once instead of
        // sleeping out the (far longer) timeout.
        let t0 = std::time::Instant::now();
        std::thread::park_timeout(std::time::Duration::from_secs(60));
        assert!(t0.elapsed() < std::time::Duration::from_secs(30));
    }
}
