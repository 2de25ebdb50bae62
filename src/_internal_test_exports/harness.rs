//! A whole call without sockets, threads or sleeps: graph-sim's service core, the bot's
//! [`CallCore`]s and the audio engine's worker cores, stepped together on made-up time.
//!
//! What the bot does is the production code: each call's [`CallCore`] decides, its
//! [`PipelineBinding`] gates and binds sources into a real engine call (an engine started with
//! [`Engine::start_stepped`]), and Graph requests are the same [`PreparedRequest`] bytes the
//! client sends, answered by [`Sim::handle_request`] with the client's retry policy applied.
//! What replaces the network: notifications go straight from [`Sim::poll_notification`] to the
//! bot's dispatch (the early buffer and incoming offers included), the media session connects
//! a fixed time after the service asks for media, and each simulated user's voice is encoded
//! to Opus and handed to the binding as the transport would, every 20 ms.
//!
//! Every run with the same scenario and calls is the same run.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use audio_pipeline::codec::{MAX_ENCODED_BYTES, OpusConfig, OpusEncoder};
use audio_pipeline::engine::{SteppedWorkers, StreamCost};
use audio_pipeline::{CallMedia, Engine, EngineConfig, ReceiveEvent};
use bytes::Bytes;
use graph_signaling::build;
use graph_signaling::error::GraphError;
use graph_signaling::models::{
    AnswerBody, Call, CommsNotifications, CommsOperation, IdentitySet, MediaConfig, Modality,
};
use graph_signaling::request::{Answer, HttpMethod, PreparedRequest};
use graph_signaling::retry::{Attempt, Decision, RetryPolicy};
use graph_sim::media::voice::VoiceSource;
use graph_sim::scenario::Scenario;
use graph_sim::service::{ApiRequest, Caller, Method, PersonAction, Sim, SimConfig, SimEvent};
use media_session::{AudioSocketSettings, MediaSession, MpUri, SourceId, StreamDirection};
use media_transport::binding::GateConfig;
use media_transport::pipeline::PipelineBinding;
use media_transport::protocol::EndReason;
use media_transport::{AudioSink, IncomingAudio, MediaEvent};

use crate::bot::early::EarlyNotifications;
use crate::call_core::{
    ActionError, AppRequest, CallConfig, CallCore, CallEvent, Direction, GraphRequest, Input,
    MediaCommand, Output, Ticket, is_incoming_offer,
};

/// The bot's callback as the sim sees it (nothing listens: notifications are handed over).
const CALLBACK: &str = "http://127.0.0.1:9/callback";

/// Samples per 20 ms at 48 kHz.
const FRAME: usize = 960;

/// Mixed audio kept per call: a minute at 16 kHz.
const MAX_KEPT: usize = 60 * 16_000;

/// How a harness runs.
#[derive(Debug, Clone)]
pub struct HarnessConfig {
    /// The simulated service's behaviour (timeouts, delays).
    pub sim: SimConfig,
    /// Each call's settings; `app_id` is taken from `sim`.
    pub call: CallConfig,
    /// The engine's settings (one worker of each kind is plenty).
    pub engine: EngineConfig,
    /// How long after the service asks for media the media path is up.
    pub media_connect_delay: Duration,
    /// Play every mixed frame back into the call, as an echo bot does.
    pub echo: bool,
    /// Simulated users send audio (off: signaling and binds only, much faster).
    pub audio: bool,
    /// How requests answered 429/503 are retried.
    pub retry: RetryPolicy,
}

impl Default for HarnessConfig {
    fn default() -> Self {
        HarnessConfig {
            sim: SimConfig::default(),
            call: CallConfig::default(),
            engine: EngineConfig {
                send_threads: 1,
                receive_threads: 1,
                realtime_priority: None,
                // A fixed cost, not the host's: what the harness admits must not depend on
                // how fast the machine running it is.
                stream_cost: Some(StreamCost {
                    send_us: 300,
                    recv_us: 60,
                }),
                ..EngineConfig::default()
            },
            media_connect_delay: Duration::from_millis(40),
            echo: true,
            audio: true,
            retry: RetryPolicy::default(),
        }
    }
}

/// One call as the harness's bot holds it, with what the application saw.
#[derive(Debug)]
pub struct HarnessCall {
    core: CallCore,
    media: Option<CallMedia>,
    binding: Option<Arc<PipelineBinding>>,
    voices: BTreeMap<u32, Voice>,
    /// Events the application received, in order.
    pub events: Vec<CallEvent>,
    /// Outcomes of application requests, in order.
    pub replies: Vec<(Ticket, Result<Option<CommsOperation>, ActionError>)>,
    /// Unmixed frames delivered to the application, per source.
    pub unmixed: BTreeMap<SourceId, u64>,
    /// Mixed frames delivered to the application.
    pub mixed: u64,
    /// The mixed audio delivered to the application (16 kHz mono), the first minute of it.
    pub mixed_pcm: Vec<i16>,
    /// Opus packets the bot's engine produced for the call.
    pub packets_out: u64,
    /// Graph requests the core asked for, in order.
    pub requests: Vec<GraphRequest>,
}

impl HarnessCall {
    /// The call's core (state, roster).
    pub fn core(&self) -> &CallCore {
        &self.core
    }

    /// True once the core released the call and the harness freed its media.
    pub fn is_released(&self) -> bool {
        self.core.is_released() && self.media.is_none() && self.binding.is_none()
    }

    /// The sources with a receive stream in the engine now.
    pub fn streams(&self) -> Vec<SourceId> {
        self.media
            .as_ref()
            .and_then(CallMedia::registry)
            .map(|r| r.sources())
            .unwrap_or_default()
    }

    /// Packets of sources the roster never listed, dropped by the gate.
    pub fn gate_dropped(&self) -> u64 {
        self.binding
            .as_ref()
            .map_or(0, |b| b.gate_counters().dropped)
    }
}

/// A simulated user's voice toward the bot.
#[derive(Debug)]
struct Voice {
    source: VoiceSource,
    encoder: OpusEncoder,
    next: Instant,
    seq: u16,
    timestamp: u32,
    started: Instant,
}

/// Who waits for a Graph answer.
#[derive(Debug, Clone)]
enum Owner {
    Call(GraphRequest),
    Create(u64),
    Answer(String),
}

#[derive(Debug)]
enum Pending {
    Http {
        owner: Owner,
        request: PreparedRequest,
        attempt: u32,
    },
    Answer {
        owner: Owner,
        result: Result<Answer, GraphError>,
    },
    Media {
        call_id: String,
        event: MediaEvent,
    },
}

/// A call being placed, before the service named it.
#[derive(Debug)]
struct Placing {
    session: MediaSession,
    media: CallMedia,
    binding: Arc<PipelineBinding>,
    group: bool,
    result: Option<Result<String, GraphError>>,
}

/// The whole system on made-up time. See the [module docs](self).
pub struct Harness {
    config: HarnessConfig,
    now: Instant,
    sim: Sim,
    token: String,
    engine: Engine,
    workers: SteppedWorkers,
    mp_uri: MpUri,
    calls: BTreeMap<String, HarnessCall>,
    placing: BTreeMap<u64, Placing>,
    early: EarlyNotifications,
    offers: VecDeque<String>,
    timeline: BTreeMap<(Instant, u64), Pending>,
    seq: u64,
    next_ticket: u64,
    /// Notifications the sim posted, parsed.
    pub notifications: u64,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("calls", &self.calls.len())
            .finish_non_exhaustive()
    }
}

impl Harness {
    /// A harness for `scenario`, with a token already issued.
    pub fn new(scenario: Scenario, mut config: HarnessConfig) -> Harness {
        let now = Instant::now();
        config.call.app_id = Some(config.sim.app_id.clone());
        let mut sim = Sim::new(config.sim.clone(), scenario);
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", config.sim.app_id.as_str()),
            ("client_secret", config.sim.app_secret.as_str()),
            ("scope", "https://graph.microsoft.com/.default"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let (_, body) = sim.issue_token(now, std::time::SystemTime::now(), &form);
        let token = body["access_token"].as_str().unwrap_or_default().to_owned();
        // Invariant: the fixed default cost needs no measuring, and codec construction with
        // the default settings does not fail.
        let (engine, workers) =
            Engine::start_stepped(config.engine.clone(), now).expect("the engine starts");
        Harness {
            now,
            sim,
            token,
            engine,
            workers,
            // Invariant: a literal loopback host and port make a valid mpUri.
            mp_uri: MpUri::new("127.0.0.1", 8445).expect("a valid mpUri"),
            calls: BTreeMap::new(),
            placing: BTreeMap::new(),
            early: EarlyNotifications::default(),
            offers: VecDeque::new(),
            timeline: BTreeMap::new(),
            seq: 0,
            next_ticket: 0,
            notifications: 0,
            config,
        }
    }

    /// The made-up time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The simulated service, to look at.
    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// The simulated service, to act as a user would (what it then posts is handled as time
    /// runs).
    pub fn sim_mut(&mut self) -> &mut Sim {
        &mut self.sim
    }

    /// The object id of scenario user `index`.
    pub fn user_id(&self, index: usize) -> String {
        self.sim
            .directory()
            .nth(index)
            .map(|(_, id)| id.to_owned())
            .unwrap_or_default()
    }

    /// A call the bot holds (or held).
    pub fn call(&self, call_id: &str) -> Option<&HarnessCall> {
        self.calls.get(call_id)
    }

    /// Every call the bot holds or held, by id.
    pub fn calls(&self) -> impl Iterator<Item = (&str, &HarnessCall)> {
        self.calls.iter().map(|(id, c)| (id.as_str(), c))
    }

    /// Incoming calls offered and not taken yet.
    pub fn offers(&self) -> impl Iterator<Item = &str> {
        self.offers.iter().map(String::as_str)
    }

    /// Notifications of calls the bot does not hold, kept now.
    pub fn early_held(&self) -> usize {
        self.early.held()
    }

    // ---- what the application does ----

    /// Places a P2P call to `user_id` and runs until the service answered the request
    /// (retries included). Returns the call id.
    pub fn place_call(&mut self, user_id: &str) -> Result<String, GraphError> {
        let session = MediaSession::builder(self.mp_uri.clone())
            .audio(AudioSocketSettings::new(
                StreamDirection::SendReceive,
                media_session::AudioFormat::Pcm16K,
            ))
            .build()
            .map_err(|e| GraphError::Token(e.to_string()))?;
        let (media, binding) = self.open_media();
        let me = IdentitySet::application(&self.config.sim.app_id, Some("harness".into()));
        let body = build::p2p_user_call(
            CALLBACK,
            me,
            user_id,
            None,
            MediaConfig::app_hosted(session.blob()),
        );
        let group = build::is_group_call(&body);
        let request = PreparedRequest::create_call(&body)?;
        let slot = self.bump();
        self.placing.insert(
            slot,
            Placing {
                session,
                media,
                binding,
                group,
                result: None,
            },
        );
        self.schedule(
            self.now,
            Pending::Http {
                owner: Owner::Create(slot),
                request,
                attempt: 1,
            },
        );
        // A create-call request is answered within seconds, retries included.
        let give_up = self.now + Duration::from_secs(120);
        while self.placing.get(&slot).is_some_and(|p| p.result.is_none()) && self.now < give_up {
            self.step();
        }
        let placing = self.placing.remove(&slot);
        match placing.and_then(|p| p.result) {
            Some(r) => r,
            None => Err(GraphError::Token(
                "the create-call request never finished".into(),
            )),
        }
    }

    /// Answers offered call `call_id` (its core is created first, so nothing is missed).
    pub fn answer(&mut self, call_id: &str) -> Result<(), GraphError> {
        self.offers.retain(|id| id != call_id);
        let mut builder =
            MediaSession::builder(self.mp_uri.clone()).audio(AudioSocketSettings::new(
                StreamDirection::SendReceive,
                media_session::AudioFormat::Pcm16K,
            ));
        if let Ok(id) = uuid::Uuid::parse_str(call_id) {
            builder = builder.call_id(id);
        }
        let session = builder
            .build()
            .map_err(|e| GraphError::Token(e.to_string()))?;
        let body = AnswerBody {
            callback_uri: CALLBACK.into(),
            media_config: MediaConfig::app_hosted(session.blob()),
            accepted_modalities: vec![Modality::Audio],
            participant_capacity: None,
            call_options: None,
        };
        let request = PreparedRequest::answer(call_id, &body)?;
        let (media, binding) = self.open_media();
        self.start(call_id, Direction::Incoming, false, media, binding);
        self.schedule(
            self.now,
            Pending::Http {
                owner: Owner::Answer(call_id.to_owned()),
                request,
                attempt: 1,
            },
        );
        Ok(())
    }

    /// Asks call `call_id` for something; the outcome lands in its `replies` under the
    /// returned ticket.
    pub fn request(&mut self, call_id: &str, request: AppRequest) -> Ticket {
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        let request = match request {
            AppRequest::HangUp(_) => AppRequest::HangUp(ticket),
            AppRequest::Action(_, action) => AppRequest::Action(ticket, action),
            other => other,
        };
        self.input(call_id, Input::App(request));
        ticket
    }

    /// Media of `source` starts arriving in call `call_id` whether or not the roster lists it
    /// (a stream the service sends before, or without, announcing it).
    pub fn add_voice(&mut self, call_id: &str, source: u32, voice: &graph_sim::scenario::Voice) {
        let (Ok(v), Ok(encoder)) = (
            VoiceSource::new(voice, None, u64::from(source)),
            OpusEncoder::new(1, &OpusConfig::default()),
        ) else {
            return;
        };
        let now = self.now;
        if let Some(call) = self.calls.get_mut(call_id) {
            call.voices.insert(
                source,
                Voice {
                    source: v,
                    encoder,
                    next: now,
                    seq: 0,
                    timestamp: 0,
                    started: now,
                },
            );
        }
    }

    /// The call's media session ends on its own (the media path failed).
    pub fn media_fails(&mut self, call_id: &str) {
        self.input(
            call_id,
            Input::Media(MediaEvent::Ended(EndReason::MediaFailed {
                detail: "made-up failure".into(),
            })),
        );
    }

    /// The service offers the bot an incoming call from scenario user `from`.
    pub fn offer_incoming_call(&mut self, from: usize) -> Option<String> {
        let action = PersonAction::CallBot {
            callback_uri: CALLBACK,
            caller: Caller::ScenarioUser(from),
        };
        let id = self.sim.handle_person(self.now, action).ok()?.call_id;
        self.drain_sim();
        Some(id)
    }

    // ---- time ----

    /// Runs the whole system for `d` of made-up time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.next_time().is_some_and(|t| t <= end) {
            self.step();
        }
        self.now = end;
        self.run_due();
    }

    /// Runs until `done` holds or `within` passed; true if it held.
    pub fn run_until(&mut self, within: Duration, mut done: impl FnMut(&Harness) -> bool) -> bool {
        let end = self.now + within;
        while !done(self) {
            match self.next_time() {
                Some(t) if t <= end => self.step(),
                _ => {
                    self.now = end;
                    self.run_due();
                    return done(self);
                }
            }
        }
        true
    }

    fn next_time(&self) -> Option<Instant> {
        let timeline = self.timeline.keys().next().map(|(t, _)| *t);
        let cores = self.calls.values().filter_map(|c| c.core.poll_timeout());
        let voices = self
            .calls
            .values()
            .flat_map(|c| c.voices.values().map(|v| v.next));
        [
            timeline,
            self.sim.poll_timeout(),
            Some(self.workers.next_deadline()),
        ]
        .into_iter()
        .flatten()
        .chain(cores)
        .chain(voices)
        .min()
    }

    fn step(&mut self) {
        if let Some(t) = self.next_time() {
            self.now = self.now.max(t);
        }
        self.run_due();
    }

    /// Everything due at `now`, in a fixed order: the service, queued answers and media
    /// events, the calls' timers, the users' voices, then the engine.
    fn run_due(&mut self) {
        let now = self.now;
        if self.sim.poll_timeout().is_some_and(|t| t <= now) {
            self.sim.handle_timeout(now);
        }
        self.early.expire(now);
        self.drain_sim();
        while let Some(entry) = self.timeline.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let pending = entry.remove();
            self.run_pending(pending);
        }
        let due: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.core.poll_timeout().is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.input(&id, Input::Timeout);
        }
        self.speak();
        self.workers.run_until(now);
        self.collect_audio();
    }

    fn schedule(&mut self, at: Instant, pending: Pending) {
        let seq = self.bump();
        self.timeline.insert((at, seq), pending);
    }

    fn bump(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    // ---- the service ----

    fn drain_sim(&mut self) {
        while let Some(out) = self.sim.poll_notification(self.now) {
            // The bot parses the bytes it was posted, as the HTTP endpoint does.
            let bytes = serde_json::to_vec(&out.body).unwrap_or_default();
            let Ok(batch) = CommsNotifications::parse(&bytes) else {
                continue;
            };
            self.notifications += 1;
            for n in batch.value {
                self.dispatch(n);
            }
        }
        while let Some(event) = self.sim.poll_event() {
            self.sim_event(event);
        }
    }

    /// What the bot's dispatcher does with one notification.
    fn dispatch(&mut self, n: graph_signaling::models::CommsNotification) {
        let Some(id) = n.call_id().map(str::to_owned) else {
            return;
        };
        if self.calls.get(&id).is_some_and(|c| !c.core.is_ended()) {
            self.input(&id, Input::Notification(Box::new(n)));
            return;
        }
        let offer = is_incoming_offer(&n);
        if self.early.keep(&id, n, offer, self.now) {
            self.offers.push_back(id);
        }
    }

    fn sim_event(&mut self, event: SimEvent) {
        match event {
            SimEvent::MediaRequested { call_id, .. } => {
                let at = self.now + self.config.media_connect_delay;
                self.schedule(
                    at,
                    Pending::Media {
                        call_id,
                        event: MediaEvent::MediaConnected,
                    },
                );
            }
            SimEvent::SourceAdded {
                call_id,
                source_id,
                voice,
                talks,
                ..
            } if self.config.audio => {
                let Ok(source) = VoiceSource::new(&voice, None, u64::from(source_id)) else {
                    return;
                };
                let Ok(encoder) = OpusEncoder::new(1, &OpusConfig::default()) else {
                    return;
                };
                if let Some(call) = self.calls.get_mut(&call_id) {
                    call.voices.insert(
                        source_id,
                        Voice {
                            source: source.with_turns(talks),
                            encoder,
                            next: self.now,
                            seq: 0,
                            timestamp: 0,
                            started: self.now,
                        },
                    );
                }
            }
            SimEvent::SourceRemoved { call_id, source_id } => {
                if let Some(call) = self.calls.get_mut(&call_id) {
                    call.voices.remove(&source_id);
                }
            }
            SimEvent::Ended { call_id, .. } => {
                // The service's media side hangs the session up.
                if let Some(call) = self.calls.get_mut(&call_id) {
                    call.voices.clear();
                }
                let at = self.now + Duration::from_millis(10);
                self.schedule(
                    at,
                    Pending::Media {
                        call_id,
                        event: MediaEvent::Ended(EndReason::HangUpByService {
                            reason: "call ended".into(),
                        }),
                    },
                );
            }
            _ => {}
        }
    }

    fn run_pending(&mut self, pending: Pending) {
        match pending {
            Pending::Http {
                owner,
                request,
                attempt,
            } => self.send(owner, request, attempt),
            Pending::Answer { owner, result } => self.answered(owner, result),
            Pending::Media { call_id, event } => {
                if self
                    .calls
                    .get(&call_id)
                    .is_some_and(|c| !c.core.is_released())
                {
                    self.input(&call_id, Input::Media(event));
                }
            }
        }
    }

    /// Sends a request to the sim as the client would, retrying as the client would.
    fn send(&mut self, owner: Owner, request: PreparedRequest, attempt: u32) {
        let method = match request.method {
            HttpMethod::Get => Method::Get,
            HttpMethod::Post => Method::Post,
            HttpMethod::Delete => Method::Delete,
            HttpMethod::Patch => Method::Patch,
        };
        let path = format!("/{}", request.path);
        let auth = format!("Bearer {}", self.token);
        let response = self.sim.handle_request(
            self.now,
            &ApiRequest {
                method,
                path: &path,
                authorization: Some(&auth),
                body: request.body.as_deref().unwrap_or_default(),
            },
        );
        self.drain_sim();
        let client_request_id = format!("harness-{}", self.seq);
        let body = response
            .body
            .as_ref()
            .map(|b| serde_json::to_vec(b).unwrap_or_default())
            .unwrap_or_default();
        let result = if response.status < 400 {
            Ok(Answer {
                status: response.status,
                body,
                client_request_id,
            })
        } else {
            let retry_after = response.retry_after.map(Duration::from_secs);
            let outcome = Attempt::Status {
                status: response.status,
                retry_after,
            };
            // The middle of the jitter range: the same run every time.
            match self
                .config
                .retry
                .decide(attempt, request.idempotency, outcome, 0.5)
            {
                Decision::RetryAfter(delay) => {
                    let at = self.now + response.delay + delay;
                    self.schedule(
                        at,
                        Pending::Http {
                            owner,
                            request,
                            attempt: attempt + 1,
                        },
                    );
                    return;
                }
                _ => Err(GraphError::from_response(
                    response.status,
                    &body,
                    Some(response.request_id.clone()),
                    client_request_id,
                    retry_after,
                )),
            }
        };
        let at = self.now + response.delay;
        self.schedule(at, Pending::Answer { owner, result });
    }

    fn answered(&mut self, owner: Owner, result: Result<Answer, GraphError>) {
        match owner {
            Owner::Call(request) => {
                let result = request.read(result);
                let id = request.id;
                if self.calls.contains_key(&request.call_id) {
                    self.input(&request.call_id, Input::Response { id, result });
                }
            }
            Owner::Create(slot) => {
                let created: Result<Call, GraphError> = result.and_then(|a| a.parse("call"));
                let Some(mut placing) = self.placing.remove(&slot) else {
                    return;
                };
                match created.map(|c| c.id.into_option()) {
                    Ok(Some(id)) => {
                        if let Ok(uuid) = uuid::Uuid::parse_str(&id) {
                            placing.session.set_call_id(uuid);
                        }
                        self.start(
                            &id,
                            Direction::Outgoing,
                            placing.group,
                            placing.media,
                            placing.binding.clone(),
                        );
                        placing.result = Some(Ok(id));
                        // The media and binding moved to the call; the slot keeps the result.
                        let (media, binding) = self.open_media();
                        placing.media = media;
                        placing.binding = binding;
                    }
                    Ok(None) => {
                        placing.result = Some(Err(GraphError::Token("no call id".into())));
                    }
                    Err(e) => placing.result = Some(Err(e)),
                }
                self.placing.insert(slot, placing);
            }
            Owner::Answer(call_id) => {
                if result.is_err() {
                    // The service never took the call: its core ends it.
                    self.input(
                        &call_id,
                        Input::Notification(Box::new(crate::call_core::gone(&call_id))),
                    );
                }
            }
        }
    }

    // ---- the bot's calls ----

    fn open_media(&mut self) -> (CallMedia, Arc<PipelineBinding>) {
        // Invariant: the stepped engine has its workers, and 16 kHz mono is supported.
        let media = self
            .engine
            .open_call(
                crate::bot::PcmFormat::Pcm16K.spec(),
                StreamDirection::SendReceive,
            )
            .expect("the stepped engine opens calls");
        let registry = media
            .registry()
            .cloned()
            .expect("a sendReceive call receives");
        let binding = PipelineBinding::new(registry, GateConfig::default());
        (media, binding)
    }

    fn start(
        &mut self,
        call_id: &str,
        direction: Direction,
        group: bool,
        media: CallMedia,
        binding: Arc<PipelineBinding>,
    ) {
        let core = CallCore::new(
            call_id,
            direction,
            group,
            self.config.call.clone(),
            self.now,
        );
        self.calls.insert(
            call_id.to_owned(),
            HarnessCall {
                core,
                media: Some(media),
                binding: Some(binding),
                voices: BTreeMap::new(),
                events: Vec::new(),
                replies: Vec::new(),
                unmixed: BTreeMap::new(),
                mixed: 0,
                mixed_pcm: Vec::new(),
                packets_out: 0,
                requests: Vec::new(),
            },
        );
        for n in self.early.take(call_id) {
            self.input(call_id, Input::Notification(Box::new(n)));
        }
    }

    /// Feeds one input to a call's core and carries out what it asks, as the driver does.
    fn input(&mut self, call_id: &str, input: Input) {
        let now = self.now;
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        call.core.handle_input(input, now);
        let mut scheduled = Vec::new();
        while let Some(out) = call.core.poll_output() {
            match out {
                Output::Request(request) => {
                    call.requests.push(request.clone());
                    match request.prepare() {
                        Ok(prepared) => scheduled.push(Pending::Http {
                            owner: Owner::Call(request),
                            request: prepared,
                            attempt: 1,
                        }),
                        Err(e) => scheduled.push(Pending::Answer {
                            owner: Owner::Call(request),
                            result: Err(e.into()),
                        }),
                    }
                }
                Output::Bind(source) => {
                    if let Some(b) = &call.binding {
                        let _ = b.bind(source);
                    }
                }
                Output::Unbind(source) => {
                    if let Some(b) = &call.binding {
                        b.unbind(source);
                    }
                }
                Output::Media(MediaCommand::SetSending(on)) => {
                    if let Some(send) = call.media.as_ref().and_then(CallMedia::send) {
                        send.set_active(on);
                    }
                }
                Output::Media(MediaCommand::Close(reason)) => {
                    call.voices.clear();
                    scheduled.push(Pending::Media {
                        call_id: call_id.to_owned(),
                        event: MediaEvent::Ended(EndReason::HangUpByBot { reason }),
                    });
                }
                Output::Media(_) => {}
                Output::Event(e) => call.events.push(e),
                Output::Reply { ticket, result } => call.replies.push((ticket, result)),
                Output::Release => {
                    // What the driver frees: the media session, the binding, the engine call.
                    call.voices.clear();
                    if let Some(b) = call.binding.take() {
                        b.on_session_ended(&EndReason::HangUpByBot {
                            reason: "released".into(),
                        });
                    }
                    call.media = None;
                }
            }
        }
        for p in scheduled {
            // Answers and media events come back a little later, never in the same instant.
            let at = if matches!(p, Pending::Http { .. }) {
                now
            } else {
                now + Duration::from_millis(10)
            };
            self.schedule(at, p);
        }
    }

    /// Every voice due sends its 20 ms packet to the call's binding, as the transport would.
    fn speak(&mut self) {
        let now = self.now;
        for call in self.calls.values_mut() {
            let Some(binding) = call.binding.clone() else {
                continue;
            };
            for (&source, voice) in call.voices.iter_mut() {
                while voice.next <= now {
                    let mut pcm = [0i16; FRAME];
                    let at_ms = voice.next.duration_since(voice.started).as_millis() as u64;
                    voice.source.frame_at(at_ms, &mut pcm);
                    let mut packet = [0u8; MAX_ENCODED_BYTES];
                    if let Ok(n) = voice.encoder.encode(&pcm, &mut packet) {
                        binding.on_audio(IncomingAudio {
                            source: SourceId(source),
                            sequence: voice.seq,
                            timestamp: voice.timestamp,
                            ssrc: source,
                            marker: voice.seq == 0,
                            payload: Bytes::copy_from_slice(&packet[..n]),
                            arrival: voice.next,
                        });
                    }
                    voice.seq = voice.seq.wrapping_add(1);
                    voice.timestamp = voice.timestamp.wrapping_add(FRAME as u32);
                    voice.next += Duration::from_millis(20);
                }
            }
        }
    }

    /// What the engine made for each call: frames to the application (echoed back when asked)
    /// and packets toward the service.
    fn collect_audio(&mut self) {
        let echo = self.config.echo;
        for call in self.calls.values_mut() {
            let Some(media) = &call.media else { continue };
            if let Some(events) = media.events() {
                while let Ok(event) = events.try_recv() {
                    match event {
                        ReceiveEvent::Unmixed(f) => *call.unmixed.entry(f.source).or_default() += 1,
                        ReceiveEvent::Mixed { frame, .. } => {
                            call.mixed += 1;
                            if call.mixed_pcm.len() < MAX_KEPT {
                                call.mixed_pcm.extend_from_slice(frame.samples());
                            }
                            if echo && let Some(send) = media.send() {
                                send.push_samples(frame.samples());
                            }
                        }
                        ReceiveEvent::DominantSpeakerChanged(_) => {}
                    }
                }
            }
            if let Some(send) = media.send() {
                call.packets_out += send.packets().try_iter().count() as u64;
            }
        }
    }
}
