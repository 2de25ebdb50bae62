//! How a bot ends: draining (no new calls, calls in progress go on until they end or a
//! deadline, then are hung up) and shutting down (every call hung up at once).

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::driver::DriverInput;
use super::{Shared, lock};
use crate::call_core::{AppRequest, Ticket};

/// Where the bot is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Taking calls.
    Ready,
    /// Taking no new calls; the ones in progress go on.
    Draining,
    /// Every call is over (or was hung up); the bot is winding down.
    Stopped,
}

impl Phase {
    /// The name `/readyz` and `/metrics` report.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Ready => "ready",
            Phase::Draining => "draining",
            Phase::Stopped => "stopped",
        }
    }
}

/// What a drain or shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DrainReport {
    /// Calls in progress when it started.
    pub calls_at_start: usize,
    /// Calls still in progress at the deadline, hung up by the bot.
    pub hung_up: usize,
    /// Calls whose owner had not released them when the bot stopped waiting (0 unless the
    /// calling service never confirmed a hang-up).
    pub not_released: usize,
}

/// The bot's phase and its calls' owners still running.
#[derive(Debug, Default)]
pub(crate) struct Lifecycle {
    phase: AtomicU8,
    /// Call tasks that have not released their call yet (ended calls still closing media
    /// included).
    drivers: AtomicUsize,
    changed: Notify,
}

/// How long the bot waits, after hanging calls up, for their owners to release them: the
/// service confirms a hang-up in well under a second; the core itself releases a call at most
/// its release grace (10 s) after the hang-up.
const RELEASE_WAIT: Duration = Duration::from_secs(15);

impl Lifecycle {
    pub(crate) fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Ready,
            1 => Phase::Draining,
            _ => Phase::Stopped,
        }
    }

    fn set(&self, phase: Phase) {
        let v = match phase {
            Phase::Ready => 0,
            Phase::Draining => 1,
            Phase::Stopped => 2,
        };
        self.phase.fetch_max(v, Ordering::Relaxed);
    }

    pub(crate) fn driver_started(&self) {
        self.drivers.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn driver_released(&self) {
        self.drivers.fetch_sub(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub(crate) fn drivers(&self) -> usize {
        self.drivers.load(Ordering::Relaxed)
    }

    /// Waits until no call task is left or `within` passed; true if none is left.
    async fn wait_released(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.changed.notified();
            if self.drivers() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.drivers() == 0;
            }
        }
    }
}

/// Refuses new calls, lets the calls in progress go on for up to `timeout`, then hangs up
/// whatever is left and waits for every call to be released.
pub(crate) async fn drain(shared: &Shared, timeout: Duration) -> DrainReport {
    shared.admission.refuse_new_calls();
    shared.lifecycle.set(Phase::Draining);
    let calls_at_start = shared.lifecycle.drivers();
    tracing::info!(instance = %shared.instance_id, calls = calls_at_start, ?timeout, "drain started");
    shared.lifecycle.wait_released(timeout).await;
    finish(shared, calls_at_start).await
}

/// Refuses new calls and hangs up every call now.
pub(crate) async fn shutdown(shared: &Shared) -> DrainReport {
    shared.admission.refuse_new_calls();
    shared.lifecycle.set(Phase::Draining);
    let calls_at_start = shared.lifecycle.drivers();
    tracing::info!(instance = %shared.instance_id, calls = calls_at_start, "shutdown: hanging up every call");
    finish(shared, calls_at_start).await
}

async fn finish(shared: &Shared, calls_at_start: usize) -> DrainReport {
    let hung_up = {
        let calls = lock(&shared.calls);
        calls
            .live
            .values()
            .filter(|entry| {
                entry
                    .inputs
                    .send(DriverInput::App(AppRequest::HangUp(Ticket(0)), None))
                    .is_ok()
            })
            .count()
    };
    shared.lifecycle.wait_released(RELEASE_WAIT).await;
    let report = DrainReport {
        calls_at_start,
        hung_up,
        not_released: shared.lifecycle.drivers(),
    };
    shared.lifecycle.set(Phase::Stopped);
    tracing::info!(
        instance = %shared.instance_id,
        calls = report.calls_at_start,
        hung_up = report.hung_up,
        not_released = report.not_released,
        "drain finished"
    );
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phase_only_moves_forward() {
        let l = Lifecycle::default();
        assert_eq!(l.phase(), Phase::Ready);
        l.set(Phase::Stopped);
        l.set(Phase::Draining);
        assert_eq!(l.phase(), Phase::Stopped);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_ends_when_the_last_call_is_released_or_at_the_deadline() {
        let l = std::sync::Arc::new(Lifecycle::default());
        l.driver_started();
        l.driver_started();
        let l2 = l.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            l2.driver_released();
            tokio::time::sleep(Duration::from_secs(1)).await;
            l2.driver_released();
        });
        let t0 = tokio::time::Instant::now();
        assert!(l.wait_released(Duration::from_secs(10)).await);
        assert_eq!(t0.elapsed(), Duration::from_secs(2));
        l.driver_started();
        assert!(!l.wait_released(Duration::from_secs(3)).await);
        assert_eq!(t0.elapsed(), Duration::from_secs(5));
    }
}
