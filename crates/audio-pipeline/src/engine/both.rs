//! A thread that runs one send worker and one receive worker: both directions of its calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::recv::{Inbound, RecvCommand, RecvWorker};
use super::send::{SendCommand, SendWorker};

/// The two workers of a shared thread and their inputs.
pub(crate) struct Both {
    pub(crate) send: SendWorker,
    pub(crate) send_commands: Receiver<SendCommand>,
    pub(crate) recv: RecvWorker,
    pub(crate) recv_commands: Receiver<RecvCommand>,
    pub(crate) packets: Receiver<Inbound>,
}

/// The thread body: apply both workers' commands, take queued packets, serve what is due
/// (receive first: a call's send tick follows its receive tick, and a reply waits on the frame
/// it answers), sleep until the next sub-tick of either. Never blocks on a channel (see
/// `send::run`).
pub(crate) fn run(mut w: Both, stop: Arc<AtomicBool>, ahead: Duration) {
    while !stop.load(Ordering::Relaxed) {
        while let Ok(cmd) = w.recv_commands.try_recv() {
            w.recv.handle(cmd);
        }
        while let Ok(cmd) = w.send_commands.try_recv() {
            w.send.handle(cmd);
        }
        while let Ok(p) = w.packets.try_recv() {
            w.recv.ingest_or_retry(p, &w.recv_commands);
        }
        let due = Instant::now() + ahead;
        w.recv.run_due(due);
        w.send.run_due(due);
        let wake = w
            .recv
            .next_deadline()
            .min(w.send.next_deadline())
            .checked_sub(ahead)
            .unwrap_or_else(Instant::now);
        let wait = wake.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}
