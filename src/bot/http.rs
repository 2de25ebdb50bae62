//! `/metrics` and `/healthz` of the bot's HTTP server (the notification callback is mounted
//! next to them by the builder).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

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

/// Health now, with the figures it was judged on: (health, calls, deadline-miss ratio).
pub(crate) fn health(shared: &Shared) -> (Health, usize, f64) {
    let stats = shared.engine.stats();
    let misses = stats.send_deadline_misses.get() + stats.recv_deadline_misses.get();
    let frames = stats.packets_sent.get() + stats.frames_received.get();
    let ratio = {
        let mut w = lock(&shared.health);
        let now = Instant::now();
        match w.started {
            Some(at) if now.duration_since(at) < HEALTH_WINDOW => {}
            _ => {
                let (dm, df) = (misses - w.misses.min(misses), frames - w.frames.min(frames));
                if w.started.is_some() {
                    w.miss_ratio = if df == 0 { 0.0 } else { dm as f64 / df as f64 };
                }
                *w = HealthWindow {
                    started: Some(now),
                    misses,
                    frames,
                    miss_ratio: w.miss_ratio,
                };
            }
        }
        w.miss_ratio
    };
    let calls = shared.active_calls();
    let by_calls = if calls > shared.capacity {
        Health::Overloaded
    } else if calls * 5 >= shared.capacity * 4 {
        Health::HeavilyLoaded
    } else {
        Health::Normal
    };
    let by_deadlines = if ratio > 0.10 {
        Health::Overloaded
    } else if ratio > 0.01 {
        Health::HeavilyLoaded
    } else {
        Health::Normal
    };
    (by_calls.max(by_deadlines), calls, ratio)
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

/// Brings every figure up to date on the bot's recorder, then renders the text format.
pub(crate) fn render_metrics(shared: &Shared) -> String {
    // Gathered first so no lock is held while the recorder works.
    let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
    let (mut participants, mut concealed, mut jitter_ms, mut gate_dropped) = (0u64, 0u64, 0f64, 0);
    {
        let routes = lock(&shared.routes);
        for r in routes.calls.values() {
            let state = r
                .state
                .as_ref()
                .map_or("unknown".to_owned(), |s| s.as_str().to_owned());
            *by_state.entry(state).or_default() += 1;
            participants += r.participants as u64;
            for source in r.registry.sources() {
                if let Some(stream) = r.registry.get(source) {
                    concealed += stream.counters().concealed.get();
                }
            }
            gate_dropped += r.binding.gate_counters().dropped;
            if let Some(q) = lock(&r.quality).as_ref() {
                for (_, s) in &q.received {
                    jitter_ms = jitter_ms.max(s.jitter_ms);
                }
            }
        }
    }
    let (level, _, miss_ratio) = health(shared);
    let stats = shared.engine.stats();
    let c = &shared.counters;
    metrics::with_local_recorder(&shared.metrics.recorder, || {
        for state in [
            "establishing",
            "established",
            "terminating",
            "incoming",
            "unknown",
        ] {
            by_state.entry(state.to_owned()).or_default();
        }
        for (state, n) in &by_state {
            metrics::gauge!("mediabot_calls", "state" => state.clone()).set(*n as f64);
        }
        metrics::gauge!("mediabot_participants").set(participants as f64);
        metrics::counter!("mediabot_frames_in_total").absolute(stats.frames_received.get());
        metrics::counter!("mediabot_frames_out_total").absolute(stats.packets_sent.get());
        metrics::counter!("mediabot_dropped_total", "where" => "engine_inbound")
            .absolute(shared.engine.inbound_dropped());
        metrics::counter!("mediabot_dropped_total", "where" => "app_receive")
            .absolute(c.app_frames_dropped.load(Ordering::Relaxed));
        metrics::counter!("mediabot_dropped_total", "where" => "unlisted_source")
            .absolute(gate_dropped);
        metrics::gauge!("mediabot_concealed_frames").set(concealed as f64);
        metrics::gauge!("mediabot_jitter_ms_max").set(jitter_ms);
        metrics::counter!("mediabot_deadline_misses_total", "direction" => "send")
            .absolute(stats.send_deadline_misses.get());
        metrics::counter!("mediabot_deadline_misses_total", "direction" => "receive")
            .absolute(stats.recv_deadline_misses.get());
        metrics::counter!("mediabot_notification_auth_failures_total")
            .absolute(c.notification_auth_failures.load(Ordering::Relaxed));
        metrics::counter!("mediabot_media_stream_failures_total")
            .absolute(c.media_stream_failures.load(Ordering::Relaxed));
        metrics::counter!("mediabot_calls_placed_total")
            .absolute(c.calls_placed.load(Ordering::Relaxed));
        metrics::counter!("mediabot_calls_answered_total")
            .absolute(c.calls_answered.load(Ordering::Relaxed));
        metrics::gauge!("mediabot_health_level").set(f64::from(level as u8));
        metrics::gauge!("mediabot_deadline_miss_ratio").set(miss_ratio);
        // The engine keeps its own lock-free histograms; they are exported as quantiles.
        for (stage, h) in [
            ("send_frame", &stats.send_frame),
            ("recv_frame", &stats.recv_frame),
            ("resample_up", &stats.stage_resample_up),
            ("encode", &stats.stage_encode),
            ("decode", &stats.stage_decode),
            ("resample_down", &stats.stage_resample_down),
            ("mix", &stats.stage_mix),
            ("send_lateness", &stats.send_lateness),
            ("recv_lateness", &stats.recv_lateness),
        ] {
            let snap = h.snapshot();
            for q in [0.5, 0.9, 0.99] {
                metrics::gauge!("mediabot_stage_latency_seconds", "stage" => stage, "quantile" => q.to_string())
                    .set(snap.quantile_us(q) as f64 / 1e6);
            }
            metrics::counter!("mediabot_stage_latency_count", "stage" => stage)
                .absolute(snap.count());
        }
    });
    shared.metrics.handle.render()
}

pub(crate) fn router(shared: Weak<Shared>) -> Router {
    let for_health = shared.clone();
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let shared = shared.clone();
                async move {
                    let Some(s) = shared.upgrade() else {
                        return StatusCode::SERVICE_UNAVAILABLE.into_response();
                    };
                    metrics_response(&s)
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let shared = for_health.clone();
                async move {
                    let Some(s) = shared.upgrade() else {
                        return StatusCode::SERVICE_UNAVAILABLE.into_response();
                    };
                    health_response(&s)
                }
            }),
        )
}

fn metrics_response(shared: &Arc<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render_metrics(shared),
    )
        .into_response()
}

fn health_response(shared: &Arc<Shared>) -> Response {
    let (level, calls, ratio) = health(shared);
    let body = serde_json::json!({
        "status": level.as_str(),
        "calls": calls,
        "capacity": shared.capacity,
        "deadline_miss_ratio": ratio,
    });
    // A load balancer stops sending new calls to an overloaded instance.
    let status = if level == Health::Overloaded {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, axum::Json(body)).into_response()
}
