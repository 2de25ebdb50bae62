//! The bot-facing API: one [`Bot`] per process places, joins and answers calls, and each
//! [`Call`] gives the application its events, its audio and its controls.
//!
//! A bot is built for an explicit [`Target`]: a graph-sim instance ([`LocalSim`] runs one
//! in-process, with its media side) or real Microsoft Graph ([`Target::graph`]). Nothing falls
//! back to the sim. The bot owns one audio [`Engine`], one media
//! endpoint (the blob's `mpUri`), one Graph client and one HTTP server that serves the
//! notification callback, `/metrics` (Prometheus text) and `/healthz`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mediabot::bot::BotError> {
//! use mediabot::bot::{Bot, CallTarget, LocalSim, ReceivedAudio};
//!
//! let sim = LocalSim::start(mediabot::crates::graph_sim::scenario::Scenario::two_users()).await?;
//! let bot = Bot::builder(sim.target()).build().await?;
//! let user = &sim.users()[0];
//! let mut call = bot.place_call(CallTarget::user(&user.id, Some(user.name.clone()))).await?;
//! let (mut audio, out) = (call.audio_receiver().expect("first take"), call.audio_sender());
//! while let Some(frame) = audio.recv().await {
//!     if let ReceivedAudio::Mixed { frame, .. } = frame {
//!         out.push_frame(&frame); // echo
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Real Microsoft Graph
//! Signaling (placing, answering, inviting, muting, hanging up, authenticated notifications)
//! works against real Graph. Media does not: Teams' media processor connects to a bot's
//! `mpUri` with a closed protocol and never to mediabot's WebRTC endpoint. A call's media then
//! ends with [`media_transport::protocol::EndReason::NeverConnected`] after the endpoint's
//! pending timeout (60 s by default); the bot reports it as [`CallEvent::MediaEnded`] and hangs
//! the call up, so the call ends with a clear error instead of staying silent.

mod audio;
mod builder;
mod call;
#[cfg(feature = "cli")]
mod config;
mod driver;
pub(crate) mod early;
mod http;
mod lifecycle;
mod serve;
#[cfg(feature = "sim")]
mod sim;
mod target;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use audio_pipeline::{CallMedia, Engine};
use graph_signaling::client::GraphClient;
use graph_signaling::notify::{Admission, Inbound};
use media_session::SourceId;
use media_transport::MediaEndpoint;
use media_transport::pipeline::SendPump;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::call_core::{CallConfig, is_incoming_offer};
use graph_signaling::models::RecordingRef;

pub use crate::call_core::{ActionError, CallEvent, MediaHosting};
pub use audio::{AudioReceiver, AudioSender, PcmFormat, ReceivedAudio};
pub use builder::{BotBuilder, MediaSettings};
pub use call::{Call, CallControl, IncomingCall, IncomingCalls};
#[cfg(feature = "cli")]
pub use config::{BotArgs, TargetKind};
pub use driver::CallSnapshot;
pub use graph_signaling::client::{CertificateCredential, Credential, CredentialError};
pub use graph_signaling::join_url::{JoinUrlError, MeetingJoinUrl};
pub use graph_signaling::models::RecordingStatus;
pub use http::Health;
pub use lifecycle::{DrainReport, Phase};
pub use media_transport::ListenerLimits;
pub use serve::ServerLimits;
#[cfg(feature = "sim")]
pub use sim::{LocalSim, LocalSimOptions, SimUserInfo};
pub use target::{CallTarget, GRAPH_OPENID_CONFIG_URL, ServiceEndpoints, Target};

/// Why the bot or one of its calls could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BotError {
    /// The configuration is incomplete or inconsistent.
    #[error("configuration: {0}")]
    Config(String),
    /// The audio engine failed.
    #[error("audio engine: {0}")]
    Engine(#[from] audio_pipeline::EngineError),
    /// The media endpoint could not start or register a session.
    #[error("media endpoint: {0}")]
    Endpoint(#[from] media_transport::EndpointError),
    /// The media session could not be built.
    #[error("media session: {0}")]
    Session(#[from] media_session::SessionError),
    /// A Graph request failed.
    #[error("Graph: {0}")]
    Graph(#[from] graph_signaling::client::GraphError),
    /// A call action did not succeed (failed operation, no outcome in time, call over).
    #[error("call action: {0}")]
    Action(Box<ActionError>),
    /// The call is over: its owner no longer takes requests.
    #[error("the call is over")]
    CallOver,
    /// A socket or thread could not be created.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The simulator failed to start.
    #[error("graph-sim: {0}")]
    Sim(String),
    /// The calling service answered without a call id.
    #[error("the service's answer carries no call id")]
    NoCallId,
    /// A recording could not be downloaded.
    #[error("recording: {0}")]
    Recording(String),
}

/// Largest recording [`Bot::fetch_recording`] takes: the service records at most two minutes
/// (16 kHz 16-bit mono WAV is 3.84 MB), so this leaves room for other formats.
pub const MAX_RECORDING_BYTES: usize = 16 * 1024 * 1024;

impl From<ActionError> for BotError {
    fn from(e: ActionError) -> Self {
        BotError::Action(Box::new(e))
    }
}

/// Counters kept by the bot itself (the engine keeps its own).
#[derive(Debug, Default)]
struct BotCounters {
    notification_auth_failures: AtomicU64,
    /// Notifications posted to another instance's callback path, answered with 302.
    notifications_redirected: AtomicU64,
    /// Notifications in the legacy format, answered with 204 (the service resends them in
    /// Graph format).
    notifications_legacy: AtomicU64,
    app_frames_dropped: AtomicU64,
    media_stream_failures: AtomicU64,
    /// Calls whose media went silent for a few seconds (ICE disconnected) and were kept.
    media_interruptions: AtomicU64,
    calls_placed: AtomicU64,
    calls_answered: AtomicU64,
    /// Incoming calls declined because the engine had no room for them.
    calls_declined_busy: AtomicU64,
    /// Calls ended, by `http::CALL_OUTCOMES` (direction × completed/failed).
    calls_ended: [AtomicU64; 4],
    /// Figures of calls already released, so cumulative counters never go back.
    ended_frames_concealed: AtomicU64,
    ended_unlisted_dropped: AtomicU64,
}

/// How the bot reaches a call it holds. The call itself (state, roster, timers, operations)
/// lives in its driver task's [`crate::call_core::CallCore`]; this is the way in, plus the
/// call's audio streams for read-only figures.
struct CallEntry {
    inputs: mpsc::UnboundedSender<driver::DriverInput>,
    /// The call's audio in the engine; none with service-hosted media.
    media: Option<Arc<CallMedia>>,
}

/// The calls the bot holds, and notifications of calls it does not hold (yet).
#[derive(Default)]
struct Calls {
    live: HashMap<String, CallEntry>,
    early: early::EarlyNotifications,
}

/// State shared by the bot, its calls and its tasks.
struct Shared {
    target: Target,
    client: GraphClient,
    engine: Engine,
    /// Moves every call's encoded audio from the engine to its send track.
    send_pump: SendPump,
    endpoint: MediaEndpoint,
    format: PcmFormat,
    callback_url: String,
    display_name: String,
    capacity: usize,
    instance_id: String,
    call_config: CallConfig,
    calls: Mutex<Calls>,
    incoming: mpsc::UnboundedSender<call::Offer>,
    admission: Admission,
    lifecycle: lifecycle::Lifecycle,
    counters: BotCounters,
    server: Arc<serve::ServerCounters>,
    health: Mutex<http::HealthWindow>,
    metrics: http::MetricsState,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("target", &self.target)
            .field("callback_url", &self.callback_url)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not take every call down: the data stays usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Hands each notification of a batch to the call it names, or keeps it until the call is
    /// taken; offers incoming calls to the application.
    fn dispatch(&self, inbound: Inbound) {
        let now = tokio::time::Instant::now().into_std();
        let mut calls = lock(&self.calls);
        for n in inbound.batch.value {
            let Some(id) = n.call_id().map(str::to_owned) else {
                continue;
            };
            if let Some(entry) = calls.live.get(&id) {
                // A driver that just released its call drops what still arrives.
                let _ = entry
                    .inputs
                    .send(driver::DriverInput::Notification(Box::new(n)));
                continue;
            }
            let offer = is_incoming_offer(&n);
            let resource = offer
                .then(|| {
                    n.items().iter().find_map(|item| match item {
                        graph_signaling::models::ResourceItem::Call(c) => Some(c.clone()),
                        _ => None,
                    })
                })
                .flatten();
            if calls.early.keep(&id, n, offer, now) {
                let _ = self.incoming.send(call::Offer {
                    id,
                    received_at: now,
                    resource,
                });
            }
        }
    }

    /// Starts routing `call_id`'s notifications to its driver, replaying what came before.
    /// Holding the lock over both keeps the order: the dispatcher sends nothing in between.
    fn attach(&self, call_id: &str, entry: CallEntry) {
        let mut calls = lock(&self.calls);
        for n in calls.early.take(call_id) {
            let _ = entry
                .inputs
                .send(driver::DriverInput::Notification(Box::new(n)));
        }
        calls.live.insert(call_id.to_owned(), entry);
    }

    /// Forgets a released call (only the entry of that driver: an id is never reused, but a
    /// stale driver must not remove a newer one).
    fn detach(&self, call_id: &str, inputs: &mpsc::UnboundedSender<driver::DriverInput>) {
        let mut calls = lock(&self.calls);
        if calls
            .live
            .get(call_id)
            .is_some_and(|e| e.inputs.same_channel(inputs))
        {
            calls.live.remove(call_id);
        }
    }

    fn active_calls(&self) -> usize {
        lock(&self.calls).live.len()
    }
}

async fn dispatch_notifications(shared: Weak<Shared>, mut batches: mpsc::Receiver<Inbound>) {
    loop {
        // Notifications of calls nobody took expire even when no new ones arrive.
        let expiry = shared
            .upgrade()
            .and_then(|s| lock(&s.calls).early.poll_timeout());
        let sleep = tokio::time::sleep_until(
            expiry.map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std),
        );
        tokio::select! {
            inbound = batches.recv() => {
                let Some(inbound) = inbound else { return };
                let Some(shared) = shared.upgrade() else { return };
                shared.dispatch(inbound);
            }
            () = sleep, if expiry.is_some() => {
                let Some(shared) = shared.upgrade() else { return };
                let now = tokio::time::Instant::now().into_std();
                lock(&shared.calls).early.expire(now);
            }
        }
    }
}

/// A running bot. Dropping it stops its server and tasks (calls in progress are not hung up:
/// call [`Call::hang_up`] first).
#[derive(Debug)]
pub struct Bot {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    incoming: Option<mpsc::UnboundedReceiver<call::Offer>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Bot {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Bot {
    /// Starts configuring a bot for `target`.
    pub fn builder(target: Target) -> BotBuilder {
        BotBuilder::new(target)
    }

    /// Places a call or joins a meeting; returns once the service accepted the request (the
    /// call then moves through its states, reported as [`CallEvent::StateChanged`]).
    pub async fn place_call(&self, target: CallTarget) -> Result<Call, BotError> {
        call::place(&self.shared, target, MediaHosting::App).await
    }

    /// Places a call (or joins a meeting) with service-hosted media: the calling service plays
    /// prompts, records responses and reports keys on the bot's request; the bot holds no
    /// audio. This is what IVR and call-routing bots need, and it works against real Microsoft
    /// Graph (app-hosted media does not, see the crate docs).
    pub async fn place_service_hosted_call(&self, target: CallTarget) -> Result<Call, BotError> {
        call::place(&self.shared, target, MediaHosting::Service).await
    }

    /// Reports a teleconference device's media quality to the service
    /// (`logTeleconferenceDeviceQuality`).
    pub async fn log_teleconference_device_quality(
        &self,
        quality: graph_signaling::models::TeleconferenceDeviceQuality,
    ) -> Result<(), BotError> {
        Ok(self
            .shared
            .client
            .log_teleconference_device_quality(quality)
            .await?)
    }

    /// Downloads the audio a `recordResponse` left ([`CommsOperation::recording`]), with its
    /// access token. At most [`MAX_RECORDING_BYTES`]; the service keeps it only briefly.
    ///
    /// [`CommsOperation::recording`]: graph_signaling::models::CommsOperation::recording
    pub async fn fetch_recording(&self, recording: &RecordingRef) -> Result<Vec<u8>, BotError> {
        let fail = |why: String| BotError::Recording(why);
        let mut response = reqwest::Client::new()
            .get(&recording.location)
            .bearer_auth(&recording.access_token)
            .send()
            .await
            .map_err(|e| fail(format!("fetching {recording}: {e}")))?;
        if !response.status().is_success() {
            return Err(fail(format!(
                "fetching {recording}: HTTP {}",
                response.status()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| fail(format!("reading {recording}: {e}")))?
        {
            if body.len() + chunk.len() > MAX_RECORDING_BYTES {
                return Err(fail(format!(
                    "{recording} is larger than {MAX_RECORDING_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Incoming calls, to answer or reject one by one. `None` after the first take (there is
    /// one stream per bot), or when [`Bot::answer_incoming_with`] took it.
    pub fn incoming_calls(&mut self) -> Option<IncomingCalls> {
        let rx = self.incoming.take()?;
        Some(IncomingCalls {
            rx,
            shared: self.shared.clone(),
        })
    }

    /// The one handler for incoming calls: each is answered with app-hosted media and handed
    /// to `handler` (which usually spawns a task for it). Returns false if the incoming stream
    /// was taken already.
    pub fn answer_incoming_with(&mut self, mut handler: impl FnMut(Call) + Send + 'static) -> bool {
        let Some(mut calls) = self.incoming_calls() else {
            return false;
        };
        self.tasks.push(tokio::spawn(async move {
            while let Some(incoming) = calls.next().await {
                // A call that cannot be answered (window passed, service error) is skipped;
                // the service ends it.
                if let Ok(call) = incoming.answer().await {
                    handler(call);
                }
            }
        }));
        true
    }

    /// The URL the calling service posts notifications to.
    pub fn callback_url(&self) -> &str {
        &self.shared.callback_url
    }

    /// Where the HTTP server (callback, `/metrics`, `/healthz`) listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The media endpoint's `mpUri` written into every blob.
    pub fn mp_uri(&self) -> String {
        self.shared.endpoint.mp_uri().to_string()
    }

    /// This bot's instance id (in every log line about its calls).
    pub fn instance_id(&self) -> &str {
        &self.shared.instance_id
    }

    /// The target this bot talks to.
    pub fn target(&self) -> &Target {
        &self.shared.target
    }

    /// Calls the bot currently holds (placed or answered, not yet terminated).
    pub fn active_calls(&self) -> usize {
        self.shared.active_calls()
    }

    /// Where the bot is in its life: ready, draining, stopped.
    pub fn phase(&self) -> Phase {
        self.shared.lifecycle.phase()
    }

    /// True while the bot takes new calls: ready, and not overloaded (what `/readyz` says).
    pub fn is_ready(&self) -> bool {
        http::ready(&self.shared)
    }

    /// Stops taking new calls (incoming offers are answered 503 with `Retry-After`, so the
    /// service offers them again, elsewhere when a proxy balances the callback) and lets the
    /// calls in progress go on until they end or `timeout` passes; then hangs up what is left
    /// and waits for every call to be released. Call it on SIGTERM.
    pub async fn drain(&self, timeout: Duration) -> DrainReport {
        lifecycle::drain(&self.shared, timeout).await
    }

    /// Stops taking new calls and hangs up every call now, waiting for their release.
    pub async fn shutdown(&self) -> DrainReport {
        lifecycle::shutdown(&self.shared).await
    }

    /// Calls whose owner has not released them yet (ended calls still closing their media
    /// included): 0 once everything a call held is freed.
    pub fn unreleased_calls(&self) -> usize {
        self.shared.lifecycle.drivers()
    }

    /// Frames filled by loss concealment over the bot's life, calls ended and in progress
    /// together (what `mediabot_frames_concealed_total` reports).
    pub async fn frames_concealed(&self) -> u64 {
        let live: u64 = driver::snapshots(&self.shared)
            .await
            .iter()
            .map(|c| c.frames_concealed)
            .sum();
        self.shared
            .counters
            .ended_frames_concealed
            .load(Ordering::Relaxed)
            + live
    }

    /// Calls whose media the audio engine still holds open: 0 once every call is released.
    pub fn engine_calls(&self) -> usize {
        self.shared.engine.open_calls()
    }

    /// Calls whose outgoing packets the send pump moves: 0 once every call is released (as of
    /// the pump's last pass, which a call's end wakes).
    pub fn send_routes(&self) -> usize {
        self.shared.send_pump.routes()
    }

    /// Media sessions the media endpoint still holds (waiting for their connection, or
    /// connected): 0 once every call is released.
    pub fn media_sessions(&self) -> usize {
        self.shared.endpoint.held_sessions()
    }

    /// The platform health, as `/healthz` reports it.
    pub fn health(&self) -> Health {
        http::health(&self.shared).0
    }

    /// The audio engine's counters and per-stage latency histograms.
    pub fn engine_stats(&self) -> &audio_pipeline::engine::EngineStats {
        self.shared.engine.stats()
    }

    /// The Prometheus text `/metrics` serves.
    pub async fn metrics_text(&self) -> String {
        http::render_metrics(&self.shared).await
    }

    /// What each call in progress looks like now, asked of the calls' owners.
    pub async fn calls(&self) -> Vec<CallSnapshot> {
        driver::snapshots(&self.shared).await
    }

    /// Receive-side figures of each participant stream of a call, read while it runs.
    pub fn streams(&self, call_id: &str) -> Vec<StreamSnapshot> {
        let media = match lock(&self.shared.calls).live.get(call_id) {
            Some(CallEntry {
                media: Some(media), ..
            }) => media.clone(),
            _ => return Vec::new(),
        };
        let Some(registry) = media.registry() else {
            return Vec::new();
        };
        let mut out: Vec<StreamSnapshot> = registry
            .sources()
            .into_iter()
            .filter_map(|source| {
                let stream = registry.get(source)?;
                let c = stream.counters();
                Some(StreamSnapshot {
                    source,
                    received: c.received.get(),
                    concealed: c.concealed.get(),
                    depth_frames: c.depth_frames.get(),
                    jitter_ms: c.jitter_us.get() as f64 / 1000.0,
                })
            })
            .collect();
        out.sort_by_key(|s| s.source);
        out
    }

    /// Notifications refused because their token did not validate.
    pub fn notification_auth_failures(&self) -> u64 {
        self.shared
            .counters
            .notification_auth_failures
            .load(Ordering::Relaxed)
    }

    /// Notifications that came in the legacy format and were answered `204`, so the service
    /// posted them again in Graph format.
    pub fn legacy_notifications(&self) -> u64 {
        self.shared
            .counters
            .notifications_legacy
            .load(Ordering::Relaxed)
    }
}

/// Receive-side figures of one participant stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamSnapshot {
    /// The participant's source id.
    pub source: SourceId,
    /// Packets received.
    pub received: u64,
    /// Frames filled by loss concealment.
    pub concealed: u64,
    /// Current jitter-buffer depth in frames.
    pub depth_frames: u64,
    /// Interarrival jitter (RFC 3550), in ms.
    pub jitter_ms: f64,
}
