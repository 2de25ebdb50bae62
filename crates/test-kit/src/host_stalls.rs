//! A watch on the host's own stalls, kept while a test runs, so a figure that a stall of the
//! whole machine can spoil is judged against the noise measured in the same run.
//!
//! A shared cloud host now and then does not run a process for tens or hundreds of
//! milliseconds (another tenant, the hypervisor, the kernel). A call caught in such a stall is
//! heard with a gap whatever the bot does, so a test that holds every call to a quality bound
//! must know which calls the host itself interrupted. The watch is one thread per CPU, pinned
//! to it, that sleeps a millisecond at a time and records every wake-up that comes later than a
//! threshold: a hypervisor that holds one virtual CPU back while the other runs stalls whatever
//! was queued there, and a single unpinned watch would go on running on the other one. Each
//! asks for `SCHED_FIFO` at a priority above the bot's workers, so the load of the processes
//! under test does not delay it: what it records is time the host took. Without the right to
//! that policy (not root, no `CAP_SYS_NICE`) it runs as an ordinary thread and says so, and its
//! stalls then include the test's own load.
//!
//! A hypervisor can also take a few milliseconds many times a second: no single stall, but a
//! share of every call's CPU. The watch reads the host's steal time every [`STEAL_EVERY`], so
//! the share stolen during any span of the run can be read back
//! ([`StallReport::steal_within`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// The watch's real-time priority: above the bot's audio workers (10 and 11 by default) and
/// anything else a test starts, below the kernel's own threads at 99.
const PRIORITY: u8 = 80;

/// The watch's tick.
const TICK: Duration = Duration::from_millis(1);

/// How often the host's CPU times are read for [`StallReport::steal_within`].
pub const STEAL_EVERY: Duration = Duration::from_millis(20);

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
    /// The host's CPU times read every [`STEAL_EVERY`] (empty without a steal column).
    cpu_samples: Vec<(SystemTime, CpuTimes)>,
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

    /// The share of the host's CPU time stolen by the hypervisor between the last reading at
    /// or before `from` and the first at or after `to` (so the span is covered whole); `None`
    /// without two such readings.
    pub fn steal_within(&self, from: SystemTime, to: SystemTime) -> Option<f64> {
        let first = self
            .cpu_samples
            .iter()
            .rev()
            .find(|(at, _)| *at <= from)
            .or_else(|| self.cpu_samples.first())?;
        let last = self
            .cpu_samples
            .iter()
            .find(|(at, _)| *at >= to)
            .or_else(|| self.cpu_samples.last())?;
        last.1.steal_since(&first.1)
    }
}

/// The running watch; [`StallWatch::finish`] stops it and returns what it saw.
pub struct StallWatch {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Watched>>,
    cpu_before: Option<CpuTimes>,
}

/// What one CPU's watch thread saw.
#[derive(Default)]
struct Watched {
    stalls: Vec<Stall>,
    ticks: u64,
    realtime: bool,
    cpu_samples: Vec<(SystemTime, CpuTimes)>,
}

impl StallWatch {
    /// Starts watching for wake-ups at least `threshold` late.
    pub fn start(threshold: Duration) -> StallWatch {
        StallWatch::with_sleep(threshold, std::thread::sleep)
    }

    /// As [`StallWatch::start`], sleeping with `sleep` (a test puts a stall in it).
    pub fn with_sleep(
        threshold: Duration,
        sleep: impl Fn(Duration) + Send + Sync + 'static,
    ) -> StallWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let sleep = Arc::new(sleep);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (0..cpus)
            .map(|cpu| {
                let stopping = Arc::clone(&stop);
                let sleep = Arc::clone(&sleep);
                std::thread::Builder::new()
                    .name(format!("host-stall-watch-{cpu}"))
                    .spawn(move || {
                        // Unpinned where the CPU cannot be chosen (a cpuset without it): the
                        // watch still sees whole-host stalls then.
                        let _ = pin_to(cpu);
                        watch(&stopping, threshold, &*sleep, cpu == 0)
                    })
                    .expect("the stall watch's thread starts")
            })
            .collect();
        StallWatch {
            stop,
            threads,
            cpu_before: cpu_times(),
        }
    }

    /// Stops the watch and returns what it saw.
    pub fn finish(mut self) -> StallReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = StallReport {
            realtime: true,
            ..StallReport::default()
        };
        for thread in self.threads.drain(..) {
            let watched = thread.join().unwrap_or_default();
            report.stalls.extend(watched.stalls);
            report.ticks += watched.ticks;
            report.realtime &= watched.realtime;
            report.cpu_samples.extend(watched.cpu_samples);
        }
        report.stalls.sort_by_key(|s| s.from);
        report.steal = self
            .cpu_before
            .zip(cpu_times())
            .and_then(|(a, b)| b.steal_since(&a));
        report
    }
}

/// One CPU's watch: ticks until `stop`, recording late wake-ups; the one that `samples` also
/// reads the host's CPU times every [`STEAL_EVERY`].
fn watch(
    stop: &AtomicBool,
    threshold: Duration,
    sleep: &dyn Fn(Duration),
    samples: bool,
) -> Watched {
    let mut w = Watched {
        realtime: promote(),
        ..Watched::default()
    };
    // A host that stalls more than this is reported by the count alone.
    w.stalls.reserve(MAX_STALLS.min(1024));
    let mut next_sample = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let (wall, start) = (SystemTime::now(), Instant::now());
        if samples && start >= next_sample {
            next_sample = start + STEAL_EVERY;
            if let Some(t) = cpu_times() {
                w.cpu_samples.push((wall, t));
            }
        }
        sleep(TICK);
        w.ticks += 1;
        let late = start.elapsed().saturating_sub(TICK);
        if late >= threshold && w.stalls.len() < MAX_STALLS {
            w.stalls.push(Stall { from: wall, late });
        }
    }
    w
}

/// Pins the calling thread to CPU `cpu`; false if the kernel refused.
#[allow(unsafe_code)] // sched_setaffinity has no safe wrapper among the workspace's dependencies
fn pin_to(cpu: usize) -> bool {
    if cpu >= libc::CPU_SETSIZE as usize {
        return false;
    }
    // SAFETY: `cpu_set_t` is plain data for which all zeroes is the empty set; CPU_SET writes
    // inside it (the index was checked against CPU_SETSIZE); sched_setaffinity reads
    // `size_of::<cpu_set_t>()` bytes from a valid reference, and pid 0 is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
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
    fn the_steal_of_a_span_is_read_from_the_samples_around_it() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Every 20 ms two CPUs give 4 ticks; from 40 to 100 ms the hypervisor takes half.
        let steal = [0, 0, 0, 2, 4, 6, 6, 6];
        let report = StallReport {
            cpu_samples: steal
                .iter()
                .enumerate()
                .map(|(i, &s)| {
                    let ticks = 4 * i as u64;
                    (
                        at(20 * i as u64),
                        CpuTimes {
                            total: ticks,
                            steal: s,
                        },
                    )
                })
                .collect(),
            ..StallReport::default()
        };
        assert_eq!(report.steal_within(at(40), at(100)), Some(0.5));
        // A span between readings is widened to them: 45-95 ms reads 40-100.
        assert_eq!(report.steal_within(at(45), at(95)), Some(0.5));
        assert_eq!(report.steal_within(at(0), at(40)), Some(0.0));
        assert_eq!(report.steal_within(at(0), at(140)), Some(6.0 / 28.0));
        // Past the readings: from the last one before to the last one there is.
        assert_eq!(report.steal_within(at(100), at(500)), Some(0.0));
        assert_eq!(StallReport::default().steal_within(at(0), at(9)), None);
    }

    #[test]
    fn every_cpu_is_watched_and_the_steal_is_sampled() {
        let watch = StallWatch::start(Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(200));
        let report = watch.finish();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        // Each CPU's thread ticked (about 200 each; a loaded host gives fewer).
        assert!(report.ticks >= 20 * cpus, "{report:?}");
        if report.steal.is_some() {
            // Readings every 20 ms over 200 ms (a few may be lost to a busy host).
            assert!(report.cpu_samples.len() >= 3, "{report:?}");
            assert!(report.cpu_samples.windows(2).all(|w| w[0].0 <= w[1].0));
        }
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
            cpu_samples: Vec::new(),
        };
        assert_eq!(report.within(t0 + ms(200), t0 + ms(4_000)).count(), 0);
        assert_eq!(report.within(t0, t0 + ms(5_000)).count(), 2);
        assert_eq!(report.longest(), Some(ms(99)));
    }
}
