//! How many bidirectional streams the real threaded engine carries on this host, judged against
//! what the host alone does to a real-time thread in the same run.
//!
//! Each stream is one call: the app pushes a 20 ms speech frame every 20 ms, the engine encodes
//! and paces it, the packets are looped back as the call's one received Opus stream, which the
//! engine decodes to 16 kHz frames. For each N the run lasts `ENGINE_SCALE_SECS` (default 10)
//! seconds after a 1 s warm-up, and right before it a probe runs for `ENGINE_SCALE_PROBE_SECS`
//! (default 3): on every core a thread at the workers' real-time priority does one bare
//! stream-frame of codec work due every millisecond, and its lateness (done minus due) is what
//! the host's noise alone costs a real-time thread now. N is carried when every frame was
//! delivered (none dropped as stale), the engine's p99 send and delivery lateness are within the
//! probe's p99 + 2 ms, and their p99.9 within 20 ms (one frame, what a receiver's jitter buffer
//! absorbs). The search starts at 90 % of the codec-bound ceiling (cores × 20 ms ÷ bare cost of
//! a bidirectional stream-frame, measured in the same run). `ENGINE_SCALE_N=<n>` runs one N.
//!
//! `ENGINE_SCALE_MATCHED=1` also runs, after each N, the same load as a bare schedule (see
//! `matched_schedule`): what the verdict would say of the most favourable engine possible.
//!
//! `cargo bench --bench engine_scale` — prints
//! `engine_scale max_streams=N ceiling_streams=C probe_p99_us=P probe_p999_us=Q cpu_us_per_stream_frame=U`.

#![allow(clippy::print_stdout)] // The report lines are this bench's output.

#[path = "common_audio/mod.rs"]
mod common_audio;

use std::hint::black_box;
use std::time::{Duration, Instant};

use audio_pipeline::engine::ReceiveEvent;
use audio_pipeline::{Bytes, Engine, EngineConfig, PcmSpec, ReceiveStream, RtpAudio};
use common_audio::{BareRecv, BareSend, speech_chunks, speech_frames, speech_packets};
use media_session::{SourceId, StreamDirection};

/// What the host did to a bare real-time thread: lateness quantiles in µs.
#[derive(Debug, Clone, Copy)]
struct Probe {
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
}

/// Runs the host probe for `secs` on every core (see the module docs).
fn probe(cores: usize, secs: u64) -> Probe {
    let threads: Vec<_> = (0..cores)
        .map(|_| std::thread::spawn(move || probe_here(secs)))
        .collect();
    quantiles(
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap_or_default())
            .collect(),
    )
}

/// The calling thread raised to the engine workers' real-time priority (when allowed), with
/// speech frames, their packets and a bare send and receive path: the probe and the baseline
/// run their codec work the way the workers do.
fn bare_rig_at_worker_priority() -> (Vec<Vec<i16>>, Vec<Bytes>, BareSend, BareRecv) {
    let scratch = audio_pipeline::engine::EngineStats::default();
    audio_pipeline::engine::promote_current_thread(
        EngineConfig::default().realtime_priority,
        &scratch,
    );
    (
        speech_frames(),
        speech_packets(),
        BareSend::new(),
        BareRecv::new(),
    )
}

fn probe_here(secs: u64) -> Vec<f64> {
    let (frames, packets, mut s, mut r) = bare_rig_at_worker_priority();
    let period = Duration::from_millis(1);
    let start = Instant::now() + period;
    let ticks = secs * 1000;
    let mut late = Vec::with_capacity(ticks as usize);
    let mut k = 0u32;
    while u64::from(k) < ticks {
        // Deadlines on a fixed grid, as the workers keep them: a late wake-up does not move
        // the next one.
        let due = start + period * k;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let i = k as usize % frames.len();
        black_box(s.run(&frames[i]));
        black_box(r.run(&packets[i]));
        late.push(Instant::now().duration_since(due).as_secs_f64() * 1e6);
        // Like the engine's pacer, a tick whose successor is already due is not made up.
        let behind = Instant::now().duration_since(start).as_millis() as u32;
        k = (k + 1).max(behind);
    }
    late
}

/// What the host does to a bare schedule carrying the engine's load at `n` streams.
///
/// On every core a thread at the workers' priority runs its share of `n` bare stream-frames
/// per 20 ms, spread over the 20 one-millisecond sub-slots as the engine spreads its calls and
/// started up to 1 ms ahead as the engine's work-ahead does, with one encoder and one decoder
/// per thread, hot in cache: the most favourable case, with none of an engine's per-call state.
/// Lateness is done minus the sub-slot's deadline for every stream-frame; a frame whose turn
/// comes over 20 ms late is not worked and counts as stale, as the engine's do. Where this
/// schedule itself misses the verdict, no engine can meet it on this host at that load.
fn matched_schedule(n: usize, cores: usize, secs: u64) -> (Probe, u64) {
    let threads: Vec<_> = (0..cores)
        .map(|i| {
            let share = n / cores + usize::from(i < n % cores);
            std::thread::spawn(move || matched_here(share, secs))
        })
        .collect();
    let mut late = Vec::new();
    let mut stale = 0;
    for t in threads {
        let (l, s) = t.join().unwrap_or_default();
        late.extend(l);
        stale += s;
    }
    (quantiles(late), stale)
}

fn matched_here(streams: usize, secs: u64) -> (Vec<f64>, u64) {
    let (frames, packets, mut s, mut r) = bare_rig_at_worker_priority();
    let sub = Duration::from_millis(1);
    let start = Instant::now() + sub * 2;
    let mut late = Vec::with_capacity(streams * secs as usize * 50);
    let mut stale = 0u64;
    for k in 0..secs * 1000 {
        let deadline = start + sub * k as u32;
        if let Some(wait) = (deadline - sub).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let slot = (k % 20) as usize;
        let due = streams / 20 + usize::from(slot < streams % 20);
        for j in 0..due {
            if Instant::now().saturating_duration_since(deadline) > Duration::from_millis(20) {
                stale += 1;
                continue;
            }
            let i = (k as usize / 20 + j) % frames.len();
            black_box(s.run(&frames[i]));
            black_box(r.run(&packets[i]));
            let done = Instant::now().saturating_duration_since(deadline);
            late.push(done.as_secs_f64() * 1e6);
        }
    }
    (late, stale)
}

/// p50, p99 and p99.9 of `late` (µs).
fn quantiles(mut late: Vec<f64>) -> Probe {
    late.sort_by(f64::total_cmp);
    let q = |q: f64| {
        let i = ((late.len() as f64 * q).ceil() as usize).clamp(1, late.len().max(1)) - 1;
        late.get(i).copied().unwrap_or(f64::NAN)
    };
    Probe {
        p50_us: q(0.5),
        p99_us: q(0.99),
        p999_us: q(0.999),
    }
}

struct RunResult {
    n: usize,
    probe: Probe,
    misses: u64,
    send_misses: u64,
    cpu_us_per_stream_frame: f64,
    send_p50: u64,
    send_p99: u64,
    recv_p50: u64,
    recv_p99: u64,
    delivered_ratio: f64,
    send_late_p99: u64,
    recv_late_p99: u64,
    send_late_p999: u64,
    recv_late_p999: u64,
    stale: u64,
    realtime: u64,
}

impl RunResult {
    /// The verdict of the module docs, or why not.
    fn carried(&self) -> Result<(), String> {
        verdict(
            &self.probe,
            self.delivered_ratio,
            self.stale,
            self.send_late_p99.max(self.recv_late_p99) as f64,
            self.send_late_p999.max(self.recv_late_p999) as f64,
        )
    }
}

/// The module docs' rule, against `probe`: every frame delivered (none stale), p99 lateness
/// within the probe's p99 + 2 ms, p99.9 within 20 ms. Lateness in µs, the worse direction's.
fn verdict(
    probe: &Probe,
    delivered_ratio: f64,
    stale: u64,
    late_p99_us: f64,
    late_p999_us: f64,
) -> Result<(), String> {
    let allowed = probe.p99_us + 2_000.0;
    if delivered_ratio < 0.99 || stale > 0 {
        return Err(format!(
            "frames lost: delivered {delivered_ratio:.3}, {stale} stale"
        ));
    }
    if late_p99_us > allowed {
        return Err(format!(
            "p99 lateness over the probe's p99 + 2 ms ({allowed:.0} µs)"
        ));
    }
    if late_p999_us > 20_000.0 {
        return Err("p99.9 lateness over 20 ms".into());
    }
    Ok(())
}

/// CPU time (user + system) of the engine's worker threads, in µs.
fn engine_cpu_us() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut ticks = 0u64;
    for entry in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with("ap-") {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
        let ut: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
        let st: u64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        ticks += ut + st;
    }
    // Linux reports in USER_HZ, 100 per second.
    ticks * 10_000
}

/// Time the calling thread has run on a CPU, ns (the kernel's schedstat: preemptions excluded).
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Bare cost of one bidirectional stream-frame in µs: send and receive take turns frame by
/// frame over 3000 speech frames. Returns each direction's mean of its fastest 80 % of frames
/// (by wall time, preemptions dropped) and the whole loop's time on the CPU per frame (the
/// kernel's count, preemptions excluded, every frame included: the figure the ceiling is
/// computed from, since dropping the dearest fifth of frames understates the cost by about
/// 5 %). The measuring thread runs at the engine workers' real-time priority when allowed, so
/// the baseline and the engine are measured alike.
fn bare_us() -> (f64, f64, f64) {
    // A thread of its own, so the driver (the app and the network) stays at normal priority.
    std::thread::spawn(bare_us_here)
        .join()
        .unwrap_or((f64::NAN, f64::NAN, f64::NAN))
}

fn bare_us_here() -> (f64, f64, f64) {
    let (frames, packets, mut s, mut r) = bare_rig_at_worker_priority();
    let (mut send, mut recv) = (Vec::new(), Vec::new());
    let cpu0 = thread_cpu_ns();
    for k in 0..3000 {
        let i = k % frames.len();
        let t = Instant::now();
        black_box(s.run(&frames[i]));
        send.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        black_box(r.run(&packets[i]));
        recv.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let on_cpu = match (cpu0, thread_cpu_ns()) {
        (Some(a), Some(b)) => (b - a) as f64 / 1000.0 / 3000.0,
        _ => f64::NAN,
    };
    let fastest_80 = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let keep = v.len() * 4 / 5;
        v[..keep].iter().sum::<f64>() / keep as f64
    };
    (fastest_80(send), fastest_80(recv), on_cpu)
}

fn run(n: usize, secs: u64, probe: Probe) -> RunResult {
    let spec = PcmSpec::new(16_000, 1).unwrap();
    // Past the engine's own admission budget on purpose: the bench finds where it should be.
    // `ENGINE_SCALE_SPLIT=1` runs separate send and receive threads (the layout before
    // shared threads), for comparing the two in the same conditions.
    let split = std::env::var("ENGINE_SCALE_SPLIT").is_ok_and(|v| v == "1");
    let defaults = EngineConfig::default();
    let engine = Engine::start(EngineConfig {
        admit_share: f64::INFINITY,
        shared_threads: !split,
        receive_threads: if split {
            defaults.receive_threads.div_ceil(2)
        } else {
            defaults.receive_threads
        },
        ..defaults
    })
    .unwrap();
    let chunks = speech_chunks();
    let mut calls = Vec::with_capacity(n);
    let mut streams: Vec<ReceiveStream> = Vec::with_capacity(n);
    for _ in 0..n {
        let call = engine
            .open_call(spec, StreamDirection::SendReceive)
            .unwrap();
        let stream = call.registry().unwrap().add(SourceId(1)).unwrap();
        call.send().unwrap().set_active(true);
        streams.push(stream);
        calls.push(call);
    }
    let start = Instant::now();
    let warm = Duration::from_secs(1);
    let end = warm + Duration::from_secs(secs);
    let stats = engine.stats();
    let mut base = None;
    let mut delivered = 0u64;
    let mut tick = 0u32;
    loop {
        let due = start + Duration::from_millis(20) * tick;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let elapsed = start.elapsed();
        if elapsed >= end {
            break;
        }
        if base.is_none() && elapsed >= warm {
            base = Some((
                stats.send_deadline_misses.get(),
                stats.recv_deadline_misses.get(),
                engine_cpu_us(),
                stats.send_frame.snapshot(),
                stats.recv_frame.snapshot(),
                Instant::now(),
                (
                    stats.send_lateness.snapshot(),
                    stats.recv_lateness.snapshot(),
                    stats.send_stale_skipped.get(),
                ),
            ));
            delivered = 0;
        }
        // The app: one frame per call per tick. The network: loop each packet back.
        let chunk = &chunks[tick as usize % chunks.len()];
        for (call, stream) in calls.iter().zip(&streams) {
            let send = call.send().unwrap();
            send.push_audio(chunk.clone());
            for p in send.packets().try_iter() {
                stream.deliver(
                    RtpAudio {
                        seq: p.seq,
                        timestamp: p.rtp_timestamp,
                        ssrc: 1,
                        payload: Bytes::copy_from_slice(p.payload()),
                    },
                    Instant::now(),
                );
            }
            for ev in call.events().unwrap().try_iter() {
                if matches!(ev, ReceiveEvent::Unmixed(_)) {
                    delivered += 1;
                }
            }
        }
        tick += 1;
    }
    let realtime = stats.realtime_threads.get();
    let (send_misses0, recv_misses0, cpu0, send0, recv0, t0, (send_late0, recv_late0, stale0)) =
        base.unwrap_or_else(|| unreachable!());
    let send_late = stats.send_lateness.snapshot().since(&send_late0);
    let recv_late = stats.recv_lateness.snapshot().since(&recv_late0);
    let window = t0.elapsed().as_secs_f64();
    let send_misses = stats.send_deadline_misses.get() - send_misses0;
    let misses = send_misses + stats.recv_deadline_misses.get() - recv_misses0;
    let cpu = engine_cpu_us() - cpu0;
    let send = stats.send_frame.snapshot().since(&send0);
    let recv = stats.recv_frame.snapshot().since(&recv0);
    let stream_frames = (n as f64 * window * 50.0).max(1.0);
    let result = RunResult {
        n,
        probe,
        misses,
        send_misses,
        cpu_us_per_stream_frame: cpu as f64 / stream_frames,
        send_p50: send.quantile_us(0.5),
        send_p99: send.quantile_us(0.99),
        recv_p50: recv.quantile_us(0.5),
        recv_p99: recv.quantile_us(0.99),
        delivered_ratio: delivered as f64 / stream_frames,
        realtime,
        send_late_p99: send_late.quantile_us(0.99),
        recv_late_p99: recv_late.quantile_us(0.99),
        send_late_p999: send_late.quantile_us(0.999),
        recv_late_p999: recv_late.quantile_us(0.999),
        stale: stats.send_stale_skipped.get() - stale0,
    };
    drop(calls);
    drop(streams);
    drop(engine);
    result
}

fn report(r: &RunResult) {
    println!(
        "engine_scale_probe p50_us={:.0} p99_us={:.0} p999_us={:.0}",
        r.probe.p50_us, r.probe.p99_us, r.probe.p999_us
    );
    println!(
        "engine_scale_run n={} {} misses={} (send {}) cpu_us_per_stream_frame={:.1} send_p50_us<={} send_p99_us<={} recv_p50_us<={} recv_p99_us<={} delivered={:.3} stale={} send_late_p99_us<={} recv_late_p99_us<={} send_late_p999_us<={} recv_late_p999_us<={} realtime_threads={}",
        r.n,
        match r.carried() {
            Ok(()) => "carried".to_owned(),
            Err(why) => format!("not_carried ({why})"),
        },
        r.misses,
        r.send_misses,
        r.cpu_us_per_stream_frame,
        r.send_p50,
        r.send_p99,
        r.recv_p50,
        r.recv_p99,
        r.delivered_ratio,
        r.stale,
        r.send_late_p99,
        r.recv_late_p99,
        r.send_late_p999,
        r.recv_late_p999,
        r.realtime
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let secs: u64 = std::env::var("ENGINE_SCALE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
        .max(1);
    let probe_secs: u64 = std::env::var("ENGINE_SCALE_PROBE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (bare_send, bare_recv, on_cpu) = bare_us();
    // Without the kernel's count (not Linux), the fastest-80 % figures stand in.
    let bare = if on_cpu.is_finite() {
        on_cpu
    } else {
        bare_send + bare_recv
    };
    let ceiling = (cores as f64 * 20_000.0 / bare).floor() as usize;
    println!(
        "engine_scale_bare cores={cores} bare_send_us={bare_send:.1} bare_recv_us={bare_recv:.1} bare_on_cpu_us={on_cpu:.1} ceiling_streams={ceiling}"
    );
    // What the engine itself measures at start and admits by default, to set against the
    // max_streams this run finds.
    if let Ok(engine) = Engine::start(EngineConfig::default()) {
        let c = engine.capacity();
        println!(
            "engine_scale_admission send_us={} recv_us={} ceiling_streams={} admit_share={} admits_streams={}",
            c.cost.send_us,
            c.cost.recv_us,
            c.ceiling_streams(),
            c.admit_share,
            c.calls_left()
        );
    }
    // The driver plays the app and the network for every stream; at real-time priority below
    // the workers it is neither starved by other processes nor in the workers' way.
    let scratch = audio_pipeline::engine::EngineStats::default();
    audio_pipeline::engine::promote_current_thread(Some(5), &scratch);
    let mut best: Option<RunResult> = None;
    // `ENGINE_SCALE_MATCHED=1`: after each N, the bare schedule at the same load.
    let matched = std::env::var("ENGINE_SCALE_MATCHED").is_ok_and(|v| v == "1");
    let measure = |n: usize| {
        let r = run(n, secs, probe(cores, probe_secs));
        if matched {
            let (m, stale) = matched_schedule(n, cores, secs);
            // Frames of the bare schedule that were not stale were all worked.
            let verdict = match verdict(&r.probe, 1.0, stale, m.p99_us, m.p999_us) {
                Ok(()) => "within".to_owned(),
                Err(why) => format!("not_within ({why})"),
            };
            println!(
                "engine_scale_matched n={n} {verdict} late_p50_us={:.0} late_p99_us={:.0} late_p999_us={:.0} stale={stale}",
                m.p50_us, m.p99_us, m.p999_us
            );
        }
        r
    };
    let consider = |r: RunResult, best: &mut Option<RunResult>| -> bool {
        report(&r);
        let ok = r.carried().is_ok();
        if ok && best.as_ref().is_none_or(|b| r.n > b.n) {
            *best = Some(r);
        }
        ok
    };
    if let Some(n) = std::env::var("ENGINE_SCALE_N")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        consider(measure(n), &mut best);
    } else {
        // Start at 90 % of the ceiling; climb in 5 % steps while clean, else bisect down.
        let step = (ceiling / 20).max(1);
        let mut n = (ceiling * 9 / 10).max(1);
        let mut lo = 0usize;
        let mut hi = usize::MAX;
        for _ in 0..8 {
            if consider(measure(n), &mut best) {
                lo = n;
                if n + step >= hi {
                    break;
                }
                n += step;
            } else {
                hi = n;
                if hi <= lo + step.max(2) / 2 {
                    break;
                }
                n = if lo == 0 { n * 2 / 3 } else { (lo + hi) / 2 };
            }
            if n <= lo || n >= hi {
                break;
            }
        }
    }
    // The probe figures are those of the best run's own probe (its verdict's baseline).
    let (max, cpu, p) = best.as_ref().map_or((0, 0.0, None), |b| {
        (b.n, b.cpu_us_per_stream_frame, Some(b.probe))
    });
    let (p99, p999) = p.map_or((f64::NAN, f64::NAN), |p| (p.p99_us, p.p999_us));
    println!(
        "engine_scale max_streams={max} ceiling_streams={ceiling} probe_p99_us={p99:.0} probe_p999_us={p999:.0} cpu_us_per_stream_frame={cpu:.1}"
    );
}
