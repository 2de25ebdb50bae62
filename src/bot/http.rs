//! `/metrics` and `/healthz` of the bot's HTTP server (the notification callback is mounted
//! next to them by the builder).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use audio_pipeline::engine::{Capacity, EngineStats};
use audio_pipeline::stats::{LatencyHistogram, bucket_upper_us};
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use super::lifecycle::Phase;
use super::{Shared, lock};

/// The platform's health, as the official library reports it, from the engine's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    /// Within capacity and meeting frame deadlines.
    Normal,
    /// At 80 % of the configured call capacity or more, or more than 1 % of frames missed
    /// their deadline recently: take no more calls if others can.
    HeavilyLoaded,
    /// Above capacity, or more than 10 % of frames late: audio is degrading.
    Overloaded,
}

impl Health {
    /// The name `/healthz` reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Normal => "Normal",
            Health::HeavilyLoaded => "HeavilyLoaded",
            Health::Overloaded => "Overloaded",
        }
    }
}

/// Deadline misses are judged over windows of at least this long.
const HEALTH_WINDOW: Duration = Duration::from_secs(2);

/// The engine's counters at the start of the current window, and the last window's ratio.
#[derive(Debug, Default)]
pub(crate) struct HealthWindow {
    started: Option<Instant>,
    misses: u64,
    frames: u64,
    miss_ratio: f64,
}

impl HealthWindow {
    /// Takes the engine's cumulative frame and deadline-miss counters at `now` and returns the
    /// miss ratio of the last complete window (at least [`HEALTH_WINDOW`] long).
    fn observe(&mut self, now: Instant, frames: u64, misses: u64) -> f64 {
        match self.started {
            Some(at) if now.duration_since(at) < HEALTH_WINDOW => {}
            _ => {
                let df = frames.saturating_sub(self.frames);
                let dm = misses.saturating_sub(self.misses);
                if self.started.is_some() {
                    self.miss_ratio = if df == 0 { 0.0 } else { dm as f64 / df as f64 };
                }
                self.started = Some(now);
                self.frames = frames;
                self.misses = misses;
            }
        }
        self.miss_ratio
    }
}

/// Judges health from the calls in progress against the configured capacity and the share of
/// frames that missed their deadline.
fn judge(calls: usize, capacity: usize, miss_ratio: f64) -> Health {
    let by_calls = if calls > capacity {
        Health::Overloaded
    } else if calls * 5 >= capacity * 4 {
        Health::HeavilyLoaded
    } else {
        Health::Normal
    };
    let by_deadlines = if miss_ratio > 0.10 {
        Health::Overloaded
    } else if miss_ratio > 0.01 {
        Health::HeavilyLoaded
    } else {
        Health::Normal
    };
    by_calls.max(by_deadlines)
}

/// Judges health from the engine's admission budget: Overloaded once no further call fits
/// (a new one would be refused), HeavilyLoaded from 80 % of it. This turns readiness off
/// before the CPU runs short, where the deadline-miss ratio only notices once it has.
fn judge_engine(engine: &Capacity) -> Health {
    if engine.calls_left() == 0 {
        Health::Overloaded
    } else if engine.load() >= 0.8 {
        Health::HeavilyLoaded
    } else {
        Health::Normal
    }
}

/// Health now, with the figures it was judged on: (health, calls, deadline-miss ratio).
pub(crate) fn health(shared: &Shared) -> (Health, usize, f64) {
    let stats = shared.engine.stats();
    let misses = stats.send_deadline_misses.get() + stats.recv_deadline_misses.get();
    let frames = stats.packets_sent.get() + stats.frames_received.get();
    let ratio = lock(&shared.health).observe(Instant::now(), frames, misses);
    let calls = shared.active_calls();
    let level = judge(calls, shared.capacity, ratio).max(judge_engine(&shared.engine.capacity()));
    (level, calls, ratio)
}

/// The Prometheus recorder of one bot (not the process-global one, so several bots, or a bot
/// and the application's own recorder, can coexist).
pub(crate) struct MetricsState {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for MetricsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsState")
    }
}

impl MetricsState {
    pub(crate) fn new() -> MetricsState {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        MetricsState { recorder, handle }
    }
}

/// True while the bot takes new calls: ready (not draining or stopped) and not overloaded.
pub(crate) fn ready(shared: &Shared) -> bool {
    shared.lifecycle.phase() == Phase::Ready && health(shared).0 != Health::Overloaded
}

/// The readiness state `/readyz` and `/metrics` report.
fn readiness(shared: &Shared) -> &'static str {
    match shared.lifecycle.phase() {
        Phase::Ready if health(shared).0 == Health::Overloaded => "overloaded",
        phase => phase.as_str(),
    }
}

const READINESS_STATES: [&str; 4] = ["ready", "draining", "stopped", "overloaded"];

/// Brings every figure up to date on the bot's recorder, then renders the text format.
pub(crate) async fn render_metrics(shared: &Shared) -> String {
    // Asked of the calls' owners first, so nothing is held while the recorder works.
    let calls = super::driver::snapshots(shared).await;
    let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
    let (mut participants, mut concealed, mut jitter_ms, mut gate_dropped) = (0u64, 0u64, 0f64, 0);
    for c in &calls {
        let state = c
            .state
            .as_ref()
            .map_or("unknown".to_owned(), |s| s.as_str().to_owned());
        *by_state.entry(state).or_default() += 1;
        participants += c.participants as u64;
        concealed += c.frames_concealed;
        gate_dropped += c.unlisted_dropped;
        jitter_ms = jitter_ms.max(c.jitter_ms);
    }
    let (early_held, early_dropped) = {
        let calls = lock(&shared.calls);
        (calls.early.held(), calls.early.dropped())
    };
    let (level, active, miss_ratio) = health(shared);
    let readiness = readiness(shared);
    let stats = shared.engine.stats();
    let c = &shared.counters;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    metrics::with_local_recorder(&shared.metrics.recorder, || {
        metrics::gauge!("mediabot_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        for h in [Health::Normal, Health::HeavilyLoaded, Health::Overloaded] {
            metrics::gauge!("mediabot_health", "status" => h.as_str())
                .set(f64::from(u8::from(h == level)));
        }
        for state in READINESS_STATES {
            metrics::gauge!("mediabot_readiness", "state" => state)
                .set(f64::from(u8::from(state == readiness)));
        }
        metrics::gauge!("mediabot_calls_active").set(active as f64);
        for state in [
            "incoming",
            "establishing",
            "established",
            "terminating",
            "unknown",
        ] {
            by_state.entry(state.to_owned()).or_default();
        }
        for (state, n) in &by_state {
            metrics::gauge!("mediabot_calls_by_state", "state" => state.clone()).set(*n as f64);
        }
        metrics::counter!("mediabot_calls_started_total", "direction" => "outgoing")
            .absolute(load(&c.calls_placed));
        metrics::counter!("mediabot_calls_started_total", "direction" => "incoming")
            .absolute(load(&c.calls_answered));
        metrics::counter!("mediabot_calls_declined_total", "why" => "over_capacity")
            .absolute(load(&c.calls_declined_busy));
        let engine = shared.engine.capacity();
        metrics::gauge!("mediabot_engine_load").set(engine.load());
        metrics::gauge!("mediabot_engine_calls_left").set(engine.calls_left() as f64);
        for (i, (direction, outcome)) in CALL_OUTCOMES.iter().enumerate() {
            metrics::counter!("mediabot_calls_total", "direction" => *direction, "outcome" => *outcome)
                .absolute(load(&c.calls_ended[i]));
        }
        metrics::gauge!("mediabot_participants").set(participants as f64);
        metrics::counter!("mediabot_frames_received_total").absolute(stats.frames_received.get());
        metrics::counter!("mediabot_packets_sent_total").absolute(stats.packets_sent.get());
        metrics::counter!("mediabot_frames_concealed_total")
            .absolute(load(&c.ended_frames_concealed) + concealed);
        metrics::counter!("mediabot_dropped_total", "where" => "engine_inbound")
            .absolute(shared.engine.inbound_dropped());
        metrics::counter!("mediabot_dropped_total", "where" => "send_stale")
            .absolute(stats.send_stale_skipped.get());
        metrics::counter!("mediabot_dropped_total", "where" => "app_receive")
            .absolute(load(&c.app_frames_dropped));
        metrics::counter!("mediabot_dropped_total", "where" => "unlisted_source")
            .absolute(load(&c.ended_unlisted_dropped) + gate_dropped);
        metrics::gauge!("mediabot_jitter_seconds_max").set(jitter_ms / 1000.0);
        metrics::counter!("mediabot_deadline_misses_total", "direction" => "send")
            .absolute(stats.send_deadline_misses.get());
        metrics::counter!("mediabot_deadline_misses_total", "direction" => "receive")
            .absolute(stats.recv_deadline_misses.get());
        metrics::gauge!("mediabot_deadline_miss_ratio").set(miss_ratio);
        metrics::counter!("mediabot_notification_auth_failures_total")
            .absolute(load(&c.notification_auth_failures));
        metrics::counter!("mediabot_notifications_redirected_total")
            .absolute(load(&c.notifications_redirected));
        metrics::counter!("mediabot_notifications_legacy_total")
            .absolute(load(&c.notifications_legacy));
        metrics::counter!("mediabot_media_stream_failures_total")
            .absolute(load(&c.media_stream_failures));
        metrics::counter!("mediabot_media_interruptions_total")
            .absolute(load(&c.media_interruptions));
        let server = &shared.server;
        metrics::gauge!("mediabot_http_connections")
            .set(server.open.load(Ordering::Relaxed) as f64);
        metrics::counter!("mediabot_http_connections_closed_total", "why" => "evicted_idle")
            .absolute(load(&server.evicted));
        metrics::counter!("mediabot_http_connections_closed_total", "why" => "refused_busy")
            .absolute(load(&server.refused));
        let media = shared.endpoint.listener_stats();
        metrics::gauge!("mediabot_media_connections").set(media.open as f64);
        for (why, n) in [
            ("evicted", media.evicted),
            ("refused", media.refused),
            ("handshake_timeout", media.handshake_timeouts),
            ("hello_timeout", media.hello_timeouts),
            ("stalled", media.stalled),
        ] {
            metrics::counter!("mediabot_media_connections_closed_total", "why" => why).absolute(n);
        }
        metrics::gauge!("mediabot_unknown_call_notifications").set(early_held as f64);
        metrics::counter!("mediabot_unknown_call_notifications_dropped_total")
            .absolute(early_dropped);
    });
    let mut text = shared.metrics.handle.render();
    render_stage_histograms(&mut text, stats);
    text
}

/// The `(direction, outcome)` pairs of `mediabot_calls_total`, in the order of
/// `BotCounters::calls_ended`.
pub(crate) const CALL_OUTCOMES: [(&str, &str); 4] = [
    ("outgoing", "completed"),
    ("outgoing", "failed"),
    ("incoming", "completed"),
    ("incoming", "failed"),
];

/// Stages of the engine's frame path exported as latency histograms: the whole send and
/// receive ticks, their parts, and how late each tick ran against its deadline.
type StageOf = fn(&EngineStats) -> &LatencyHistogram;
const STAGES: [(&str, StageOf); 10] = [
    ("send_frame", |s| &s.send_frame),
    ("recv_frame", |s| &s.recv_frame),
    ("resample_up", |s| &s.stage_resample_up),
    ("encode", |s| &s.stage_encode),
    ("decode", |s| &s.stage_decode),
    ("resample_down", |s| &s.stage_resample_down),
    ("mix", |s| &s.stage_mix),
    ("jitter_buffer", |s| &s.jitter_hold),
    ("send_lateness", |s| &s.send_lateness),
    ("recv_lateness", |s| &s.recv_lateness),
];

/// Appends the engine's per-stage latencies as one Prometheus histogram,
/// `mediabot_stage_latency_seconds{stage=...}`.
///
/// The real-time threads already count every sample into lock-free power-of-two buckets; the
/// recorder's own histograms would need each sample again (it keeps them until a scrape), so
/// the buckets are written out from those counts, at their power-of-two bounds (1 µs to about
/// 4 s; the finer quarter-octave buckets in between are summed into them).
fn render_stage_histograms(out: &mut String, stats: &EngineStats) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "# HELP mediabot_stage_latency_seconds Time spent per audio frame in each engine stage."
    );
    let _ = writeln!(out, "# TYPE mediabot_stage_latency_seconds histogram");
    for (stage, of) in STAGES {
        let snap = of(stats).snapshot();
        let mut cumulative = 0u64;
        for (i, count) in snap.counts.iter().enumerate() {
            cumulative += count;
            // The last bucket is unbounded: it only feeds `+Inf`.
            let upper = bucket_upper_us(i);
            if i + 1 < snap.counts.len() && upper.is_power_of_two() {
                let le = upper as f64 / 1e6;
                let _ = writeln!(
                    out,
                    "mediabot_stage_latency_seconds_bucket{{stage=\"{stage}\",le=\"{le}\"}} {cumulative}"
                );
            }
        }
        let _ = writeln!(
            out,
            "mediabot_stage_latency_seconds_bucket{{stage=\"{stage}\",le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "mediabot_stage_latency_seconds_sum{{stage=\"{stage}\"}} {}",
            snap.sum_us as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "mediabot_stage_latency_seconds_count{{stage=\"{stage}\"}} {cumulative}"
        );
    }
}

pub(crate) fn router(shared: Weak<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(on(shared.clone(), metrics_response)))
        .route("/healthz", get(on(shared.clone(), health_response)))
        .route("/readyz", get(on(shared.clone(), ready_response)))
        .route("/calls", get(on(shared, calls_response)))
}

/// A GET handler over the bot's shared state; 503 once the bot is gone.
fn on<F, Fut>(
    shared: Weak<Shared>,
    handler: F,
) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>> + Clone
where
    F: Fn(Arc<Shared>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response> + Send + 'static,
{
    move || {
        let (shared, handler) = (shared.clone(), handler.clone());
        Box::pin(async move {
            match shared.upgrade() {
                Some(s) => handler(s).await,
                None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            }
        })
    }
}

async fn ready_response(shared: Arc<Shared>) -> Response {
    let state = readiness(&shared);
    let status = if state == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(serde_json::json!({ "status": state }))).into_response()
}

async fn calls_response(shared: Arc<Shared>) -> Response {
    let calls: Vec<serde_json::Value> = super::driver::snapshots(&shared)
        .await
        .into_iter()
        .map(|c| {
            serde_json::json!({
                "call_id": c.call_id,
                "state": c.state.as_ref().map(|s| s.as_str().to_owned()),
                "direction": c.direction.as_str(),
                "participants": c.participants,
                "started_at": humantime::format_rfc3339_millis(c.started_at).to_string(),
                "frames_in": c.frames_in,
                "frames_out": c.frames_out,
            })
        })
        .collect();
    axum::Json(calls).into_response()
}

async fn metrics_response(shared: Arc<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render_metrics(&shared).await,
    )
        .into_response()
}

async fn health_response(shared: Arc<Shared>) -> Response {
    let (level, calls, ratio) = health(&shared);
    let engine = shared.engine.capacity();
    let body = serde_json::json!({
        "status": level.as_str(),
        "calls": calls,
        "capacity": shared.capacity,
        "deadline_miss_ratio": ratio,
        "engine": {
            "load": engine.load(),
            "calls_left": engine.calls_left(),
            "ceiling_streams": engine.ceiling_streams(),
            "send_us_per_frame": engine.cost.send_us,
            "recv_us_per_frame": engine.cost.recv_us,
        },
    });
    // Liveness: an overloaded instance is alive and carrying calls, and restarting it would
    // cut them. Taking no new calls is /readyz's answer (503 while Overloaded).
    (StatusCode::OK, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_against_capacity_set_the_level() {
        assert_eq!(judge(0, 10, 0.0), Health::Normal);
        assert_eq!(judge(7, 10, 0.0), Health::Normal);
        assert_eq!(judge(8, 10, 0.0), Health::HeavilyLoaded);
        assert_eq!(judge(10, 10, 0.0), Health::HeavilyLoaded);
        assert_eq!(judge(11, 10, 0.0), Health::Overloaded);
    }

    #[test]
    fn the_engine_budget_sets_the_level_before_frames_miss() {
        let at = |used_us| Capacity {
            cost: audio_pipeline::engine::StreamCost {
                send_us: 300,
                recv_us: 100,
            },
            cores: 2,
            admit_share: 0.5,
            limit_us: 20_000,
            used_us,
        };
        assert_eq!(judge_engine(&at(0)), Health::Normal);
        assert_eq!(judge_engine(&at(15_900)), Health::Normal);
        assert_eq!(judge_engine(&at(16_000)), Health::HeavilyLoaded);
        // 400 µs left: one more call fits.
        assert_eq!(judge_engine(&at(19_600)), Health::HeavilyLoaded);
        // 399 µs left: the next call would be refused.
        assert_eq!(judge_engine(&at(19_601)), Health::Overloaded);
        assert_eq!(judge_engine(&at(25_000)), Health::Overloaded);
    }

    #[test]
    fn missed_deadlines_over_a_window_set_the_level() {
        let t0 = Instant::now();
        let mut w = HealthWindow::default();
        assert_eq!(w.observe(t0, 0, 0), 0.0);
        // Within the window nothing is judged yet.
        assert_eq!(w.observe(t0 + Duration::from_millis(500), 100, 50), 0.0);
        // 1000 frames, 50 late: 5 %.
        let r = w.observe(t0 + HEALTH_WINDOW, 1000, 50);
        assert!((r - 0.05).abs() < 1e-9, "{r}");
        assert_eq!(judge(1, 10, r), Health::HeavilyLoaded);
        // The next window: 1000 more frames, 200 more late: 20 %.
        let r = w.observe(t0 + HEALTH_WINDOW * 2, 2000, 250);
        assert!((r - 0.2).abs() < 1e-9, "{r}");
        assert_eq!(judge(1, 10, r), Health::Overloaded);
        // A quiet window with no frames at all reads as healthy again.
        let r = w.observe(t0 + HEALTH_WINDOW * 3, 2000, 250);
        assert_eq!(r, 0.0);
        assert_eq!(judge(1, 10, r), Health::Normal);
    }
}
