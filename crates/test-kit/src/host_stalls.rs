//! A watch on the host's own stalls, kept while a test runs, so a figure that a stall of the
//! whole machine can spoil is judged against the noise measured in the same run.
//!
//! A shared cloud host now and then does not run a process for tens or hundreds of
//! milliseconds (another tenant, the hypervisor, the kernel). A call caught in such a stall is
//! heard with a gap whatever the bot does, so a test that holds every call to a quality bound
//! must know which calls the host itself interrupted. The watch is one thread that sleeps a
//! millisecond at a time and records every wake-up that comes later than a threshold. It asks
//! for `SCHED_FIFO` at a priority above the bot's workers, so the load of the processes under
//! test does not delay it: what it records is time the host took from everyone. Without the
//! right to that policy (not root, no `CAP_SYS_NICE`) it runs as an ordinary thread and says
//! so, and its stalls then include the test's own load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// The watch's real-time priority: above the bot's audio workers (10 and 11 by default) and
/// anything else a test starts, below the kernel's own threads at 99.
const PRIORITY: u8 = 80;

/// The watch's tick.
const TICK: Duration = Duration::from_millis(1);

/// Stalls kept at most; a host that stalls more often than this in one test is reported as
/// such by the count of ticks, and the list stays bounded.
const MAX_STALLS: usize = 10_000;

/// One wake-up of the watch that came later than the threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stall {
    /// When the watch went to sleep (wall clock, so it compares with times other processes
    /// report).
    pub from: SystemTime,
    /// How much later than asked it woke.
    pub late: Duration,
}

impl Stall {
    /// When the stall ended.
    pub fn to(&self) -> SystemTime {
        self.from + TICK + self.late
    }

    /// Whether the stall overlaps the span `[from, to]`.
    pub fn touches(&self, from: SystemTime, to: SystemTime) -> bool {
        self.from <= to && self.to() >= from
    }
}

/// What the watch saw.
#[derive(Debug, Clone, Default)]
pub struct StallReport {
    /// Every wake-up later than the threshold, in time order.
    pub stalls: Vec<Stall>,
    /// Ticks the watch slept.
    pub ticks: u64,
    /// Whether the watch ran with real-time priority (else its stalls include the load of
    /// the processes under test).
    pub realtime: bool,
    /// The share of the host's CPU time the hypervisor gave to others while the watch ran
    /// ("steal" in `/proc/stat`), where the kernel reports it.
    pub steal: Option<f64>,
}

impl StallReport {
    /// The stalls that overlap `[from, to]`.
    pub fn within(&self, from: SystemTime, to: SystemTime) -> impl Iterator<Item = &Stall> {
        self.stalls.iter().filter(move |s| s.touches(from, to))
    }

    /// The longest stall, if any.
    pub fn longest(&self) -> Option<Duration> {
        self.stalls.iter().map(|s| s.late).max()
    }
}

/// The running watch; [`StallWatch::finish`] stops it and returns what it saw.
pub struct StallWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<StallReport>>,
}

impl StallWatch {
    /// Starts watching for wake-ups at least `threshold` late.
    pub fn start(threshold: Duration) -> StallWatch {
        StallWatch::with_sleep(threshold, std::thread::sleep)
    }

    /// As [`StallWatch::start`], sleeping with `sleep` (a test puts a stall in it).
    pub fn with_sleep(
        threshold: Duration,
        sleep: impl Fn(Duration) + Send + 'static,
    ) -> StallWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let cpu_before = cpu_times();
        let thread = std::thread::Builder::new()
            .name("host-stall-watch".into())
            .spawn(move || {
                let mut report = StallReport {
                    realtime: promote(),
                    ..StallReport::default()
                };
                // A host that stalls more than this is reported by the count alone.
                report.stalls.reserve(MAX_STALLS.min(1024));
                while !stopping.load(Ordering::Relaxed) {
                    let (wall, start) = (SystemTime::now(), Instant::now());
                    sleep(TICK);
                    report.ticks += 1;
                    let late = start.elapsed().saturating_sub(TICK);
                    if late >= threshold && report.stalls.len() < MAX_STALLS {
                        report.stalls.push(Stall { from: wall, late });
                    }
                }
                report.steal = cpu_before
                    .zip(cpu_times())
                    .and_then(|(a, b)| b.steal_since(&a));
                report
            })
            .expect("the stall watch's thread starts");
        StallWatch {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the watch and returns what it saw.
    pub fn finish(mut self) -> StallReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for StallWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The host's CPU time so far, from the first line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTimes {
    total: u64,
    steal: u64,
}

impl CpuTimes {
    /// Reads `cpu  user nice system idle iowait irq softirq steal ...`; `None` without the
    /// steal column (an old kernel, or not Linux).
    fn parse(stat: &str) -> Option<CpuTimes> {
        let line = stat.lines().next()?;
        let mut fields = line.split_whitespace();
        if fields.next()? != "cpu" {
            return None;
        }
        let ticks: Vec<u64> = fields
            .take(8)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        (ticks.len() == 8).then(|| CpuTimes {
            total: ticks.iter().sum(),
            steal: ticks[7],
        })
    }

    /// The share of the time between `earlier` and `self` that was stolen.
    fn steal_since(&self, earlier: &CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total).filter(|t| *t > 0)?;
        let steal = self.steal.checked_sub(earlier.steal)?;
        Some(steal as f64 / total as f64)
    }
}

fn cpu_times() -> Option<CpuTimes> {
    CpuTimes::parse(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Raises the calling thread to `SCHED_FIFO` at [`PRIORITY`]; false if not allowed.
fn promote() -> bool {
    use thread_priority::{
        RealtimeThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    let Ok(value) = ThreadPriorityValue::try_from(PRIORITY) else {
        return false;
    };
    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Crossplatform(value),
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn a_wake_up_later_than_the_threshold_is_recorded_with_its_lateness() {
        let calls = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&calls);
        let before = SystemTime::now();
        // The fifth sleep is held 120 ms past its tick: the host stalled.
        let watch = StallWatch::with_sleep(Duration::from_millis(50), move |d| {
            let n = counted.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(if n == 4 {
                d + Duration::from_millis(120)
            } else {
                d
            });
        });
        while calls.load(Ordering::Relaxed) < 20 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let report = watch.finish();
        let after = SystemTime::now();
        assert!(report.ticks >= 20, "{report:?}");
        // The held sleep, and the on-time ticks not (a real stall of this host could add one
        // or two more, so the bound is loose; a watch keeping every tick would hold 20).
        assert!(report.stalls.len() <= 3, "{report:?}");
        let stall = *report
            .stalls
            .iter()
            .find(|s| s.late >= Duration::from_millis(120))
            .expect("the held sleep is recorded");
        assert!(stall.late < Duration::from_millis(1000), "{stall:?}");
        assert!(before <= stall.from && stall.to() <= after, "{stall:?}");
        assert!(report.longest() >= Some(stall.late), "{report:?}");
    }

    #[test]
    fn steal_is_the_hypervisors_share_of_the_cpu_time_between_two_readings() {
        let before =
            CpuTimes::parse("cpu  100 5 50 800 10 0 5 30 0 0\ncpu0 50 2 25 400 5 0 2 15 0 0\n")
                .unwrap();
        assert_eq!(
            before,
            CpuTimes {
                total: 1000,
                steal: 30
            }
        );
        let after = CpuTimes::parse("cpu  150 5 70 1530 10 0 5 230 0 0\n").unwrap();
        assert_eq!(after.steal_since(&before), Some(0.2));
        // No time passed, or a reading without the steal column: no figure.
        assert_eq!(before.steal_since(&before), None);
        assert_eq!(CpuTimes::parse("cpu  100 5 50 800\n"), None);
        assert_eq!(CpuTimes::parse("intr 1 2 3 4 5 6 7 8\n"), None);
        assert_eq!(CpuTimes::parse("cpu  a b c d e f g h\n"), None);
    }

    #[test]
    fn a_stall_touches_the_spans_it_overlaps_and_no_other() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let ms = Duration::from_millis;
        let stall = Stall {
            from: t0,
            late: ms(99),
        };
        // It lasts from t0 to t0 + 100 ms.
        assert_eq!(stall.to(), t0 + ms(100));
        assert!(stall.touches(t0 - ms(500), t0));
        assert!(stall.touches(t0 + ms(100), t0 + ms(900)));
        assert!(stall.touches(t0 + ms(40), t0 + ms(60)));
        assert!(stall.touches(t0 - ms(10), t0 + ms(200)));
        assert!(!stall.touches(t0 - ms(500), t0 - ms(1)));
        assert!(!stall.touches(t0 + ms(101), t0 + ms(900)));
        let report = StallReport {
            stalls: vec![
                stall,
                Stall {
                    from: t0 + ms(5_000),
                    late: ms(60),
                },
            ],
            ticks: 10,
            realtime: true,
            steal: None,
        };
        assert_eq!(report.within(t0 + ms(200), t0 + ms(4_000)).count(), 0);
        assert_eq!(report.within(t0, t0 + ms(5_000)).count(), 2);
        assert_eq!(report.longest(), Some(ms(99)));
    }
}
