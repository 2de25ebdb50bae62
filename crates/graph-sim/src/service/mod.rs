//! The simulated calling service as a sans-IO core.
//!
//! [`Sim`] is fed API requests ([`Sim::handle_request`]), what people on the far side of a call
//! do ([`Sim::handle_person`]) and the passing of time ([`Sim::handle_timeout`]); it answers each
//! at once and queues what the real service would do later: notifications to the bot
//! ([`Sim::poll_notification`]) and media events for the media side ([`Sim::poll_event`]).
//! [`Sim::poll_timeout`] says when it next needs the clock. The HTTP server, the notification
//! poster, the softphone and the media player are thin shells around it, so every behaviour here
//! is tested deterministically with made-up `Instant`s.
//!
//! Each call is owned by this one `Sim` and keyed by its id. The parts:
//!
//! - `api`: request routing (method and path to handler) and the request/response types;
//!   `refusal`: every way a request is refused, worded as Graph words it; `tokens`: the token
//!   endpoint (client secrets and certificate assertions) and the bearer check.
//! - `calls`: placing, reading, keeping alive and hanging up a call, its state and its end;
//!   `incoming`: calls offered to the bot, answered or rejected; `handover`: redirect and
//!   transfer; `operations`: invite, mute and recording status.
//! - `roster`: members joining, leaving, waiting in the lobby, their sources and the roster
//!   notifications.
//! - `timers`: everything that happens later; `notify`: notifications through the fault plan,
//!   and the media side's events.
//! - `media_ops`: service-hosted media — prompts, recorded responses, keys pressed, DTMF the
//!   service sends.
//! - `resources`: participants read, muted, held and removed; operations read back; audio
//!   routing groups; content sharing sessions; the small call actions.
//! - `people`: a person (or a scenario user) acting on a call from outside the bot; `views`:
//!   read-only views of calls and rosters; `payloads`: the JSON shapes.

mod api;
mod calls;
mod handover;
mod incoming;
mod media_ops;
mod notify;
mod operations;
mod payloads;
mod people;
mod prompt_cache;
mod refusal;
mod resources;
mod roster;
mod sharing;
mod timers;
mod tokens;
mod views;

pub use api::{ApiRequest, ApiResponse, Method};
pub use calls::{CallEnd, CallKind, is_loopback_url};
pub use media_ops::{MAX_PROMPT_SAMPLES, PromptAudio, RecordingInfo, SERVICE_AUDIO_RATE};
pub use notify::{Outbound, SimEvent};
pub use people::{Caller, MAX_PERSON_NAME_CHARS, PersonAction, PersonError, PersonOutcome};
pub use tokens::{CLIENT_ASSERTION_TYPE, CertificateError, check_certificate};
pub use views::{CallSummary, RosterEntry};

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use graph_signaling::join_url::MeetingJoinUrl;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::faults::FaultPlan;
use crate::scenario::Scenario;
use calls::SimCall;
use notify::QueuedNotification;
use timers::Timer;

/// Largest request body the simulated service reads (Graph refuses bodies of megabytes too).
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// Longest `clientContext` Graph accepts.
pub const MAX_CLIENT_CONTEXT: usize = 256;

/// Most participants of a group call, and most invitees per request.
pub const MAX_GROUP_PARTICIPANTS: usize = 5;

/// How the simulated service behaves; the defaults are quick, for tests and the demo.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The bot's application (client) id.
    pub app_id: String,
    /// The bot's client secret, checked by the token endpoint.
    pub app_secret: String,
    /// A certificate (PEM) registered with the app: the token endpoint then also accepts
    /// client assertions signed with its private key. `None`: secrets only.
    pub app_certificate_pem: Option<String>,
    /// The tenant the calls belong to.
    pub tenant_id: String,
    /// Base URL of the API (up to and including `/v1.0`), used in `Location` headers.
    pub base_url: String,
    /// Time from a call's creation to `establishing`, and again to `established`.
    pub setup_delay: Duration,
    /// Time a simulated user takes to answer an invitation.
    pub ring_delay: Duration,
    /// A call without a successful keepAlive for this long is ended with 408/8537.
    pub keepalive_timeout: Duration,
    /// An incoming call not answered within this window is ended.
    pub answer_window: Duration,
    /// Guests wait this long in the lobby before they are admitted.
    pub lobby_admit_after: Duration,
    /// Lifetime of issued access tokens.
    pub token_lifetime: Duration,
    /// Accept callback URLs outside loopback. Off by default, so a test can never make the sim
    /// post to the outside world.
    pub allow_remote_callbacks: bool,
    /// The application instances (bot accounts with a phone number) linked to the app. A call
    /// from `source.identity.applicationInstance` must name one of them, as Graph checks the
    /// instance against the app of the token; only such a call may dial phone numbers.
    pub application_instances: Vec<ApplicationInstance>,
    /// How long the recordings a call made stay downloadable after it ends (Graph discards
    /// them "shortly after the call ends").
    pub recording_retention: Duration,
}

/// An application instance: the directory object that gives a bot a phone number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationInstance {
    /// Its object id, which a call names as `source.identity.applicationInstance.id`.
    pub id: String,
    /// The number assigned to it (E.164), shown to the people it calls.
    pub phone_number: String,
}

impl Default for ApplicationInstance {
    fn default() -> Self {
        ApplicationInstance {
            id: "00000000-0000-0000-0000-0000000a1105".into(),
            phone_number: "+14255550199".into(),
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            app_id: "00000000-0000-0000-0000-00000000b07a".into(),
            app_secret: "sim-secret".into(),
            app_certificate_pem: None,
            tenant_id: "00000000-0000-0000-0000-0000000071e1".into(),
            base_url: "http://127.0.0.1/v1.0".into(),
            setup_delay: Duration::from_millis(50),
            ring_delay: Duration::from_millis(100),
            keepalive_timeout: Duration::from_secs(45 * 60),
            answer_window: Duration::from_secs(15),
            lobby_admit_after: Duration::from_secs(2),
            token_lifetime: Duration::from_secs(3599),
            allow_remote_callbacks: false,
            application_instances: vec![ApplicationInstance::default()],
            recording_retention: Duration::from_secs(300),
        }
    }
}

impl SimConfig {
    /// The token endpoint's URL for the configured tenant, next to the API's base URL: what a
    /// client assertion's `aud` must be.
    pub fn token_url(&self) -> String {
        let base = self.base_url.trim_end_matches('/');
        let base = base.strip_suffix("/v1.0").unwrap_or(base);
        format!("{base}/{}/oauth2/v2.0/token", self.tenant_id)
    }
}

/// The simulated service. See the module docs for how to drive it.
#[derive(Debug)]
pub struct Sim {
    config: SimConfig,
    scenario: Scenario,
    rng: StdRng,
    faults: FaultPlan,
    calls: HashMap<String, SimCall>,
    timers: BinaryHeap<Reverse<Timer>>,
    /// One counter orders both timers and notifications, so equal instants keep posting order.
    order: u64,
    notifications: Vec<QueuedNotification>,
    events: VecDeque<SimEvent>,
    tokens: HashMap<String, Instant>,
    /// The registered certificate, read once (an unreadable one refuses every assertion).
    certificate: Option<Result<tokens::RegisteredCertificate, CertificateError>>,
    used_assertions: tokens::UsedAssertions,
    /// Ids of scenario users, fixed at start so a bot can target them.
    user_ids: Vec<String>,
    /// The organizer of the scenario's meeting, fixed at start so its join link is stable.
    meeting_organizer: Option<String>,
    request_counter: u64,
    /// Prompt audio by URI, fetched by the shell.
    prompts: prompt_cache::PromptCache,
    /// Service-hosted media state by call id.
    service_media: HashMap<String, media_ops::ServiceMedia>,
    /// Recordings made by recordResponse, by id.
    recordings: HashMap<String, RecordingInfo>,
    /// Per call: routing groups, participants on hold.
    resources: HashMap<String, resources::CallResources>,
    /// The latest form of each operation, by id, with its call.
    operations: HashMap<String, (String, serde_json::Value)>,
    /// `logTeleconferenceDeviceQuality` reports taken.
    device_quality_reports: u64,
}

impl Sim {
    /// A service following `config` and simulating the users and faults of `scenario`.
    pub fn new(config: SimConfig, scenario: Scenario) -> Sim {
        let mut rng = StdRng::seed_from_u64(scenario.seed);
        let user_ids = scenario
            .users
            .iter()
            .map(|u| u.id.clone().unwrap_or_else(|| uuid_from(&mut rng)))
            .collect();
        let faults = FaultPlan::new(scenario.signaling.clone(), scenario.seed ^ 0x5157_0001);
        let certificate = config
            .app_certificate_pem
            .as_deref()
            .map(tokens::RegisteredCertificate::from_pem);
        // A generator of its own, so ids drawn for calls stay what they were before meetings
        // had organizers.
        let meeting_organizer = scenario.meeting.as_ref().map(|m| {
            m.organizer_id.clone().unwrap_or_else(|| {
                uuid_from(&mut StdRng::seed_from_u64(scenario.seed ^ 0x0e6a_0001))
            })
        });
        Sim {
            certificate,
            used_assertions: Default::default(),
            config,
            scenario,
            rng,
            faults,
            calls: HashMap::new(),
            timers: BinaryHeap::new(),
            order: 0,
            notifications: Vec::new(),
            events: VecDeque::new(),
            tokens: HashMap::new(),
            user_ids,
            meeting_organizer,
            request_counter: 0,
            prompts: prompt_cache::PromptCache::default(),
            service_media: HashMap::new(),
            recordings: HashMap::new(),
            resources: HashMap::new(),
            operations: HashMap::new(),
            device_quality_reports: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The join link of the scenario's meeting, as Teams shows it to attendees (`None` without
    /// a `[meeting]`): its thread, its organizer in the sim's tenant and, for a channel meeting,
    /// its channel post.
    pub fn meeting_join_url(&self) -> Option<MeetingJoinUrl> {
        let meeting = self.scenario.meeting.as_ref()?;
        let organizer = self.meeting_organizer.clone()?;
        let link = MeetingJoinUrl::new(
            meeting.thread(),
            meeting.message(),
            self.config.tenant_id.clone(),
            organizer,
        );
        Some(if meeting.is_channel() {
            link.with_reply_chain(meeting.message())
        } else {
            link
        })
    }

    /// A fresh id from the seeded generator, so a run with the same seed replays the same ids.
    fn new_id(&mut self) -> String {
        uuid_from(&mut self.rng)
    }
}

fn uuid_from(rng: &mut StdRng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests;
