//! The simulated calling service as a sans-IO core.
//!
//! [`Sim`] is fed API requests ([`Sim::handle_request`]) and the passing of time
//! ([`Sim::handle_timeout`]); it answers each request at once and queues what the real service
//! would do later: notifications to the bot ([`Sim::poll_notification`]) and media events for the
//! media side ([`Sim::poll_event`]). [`Sim::poll_timeout`] says when it next needs the clock. The
//! HTTP server, the notification poster and the media player are thin shells around it, so every
//! behaviour here is tested deterministically with made-up `Instant`s.
//!
//! Each call is owned by this one `Sim` and keyed by its id.

mod payloads;
mod softphone;

pub use softphone::{CallSummary, JoinError, MAX_PERSON_NAME_CHARS, RosterEntry};

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use graph_signaling::models::{
    Call, ClientContextBody, InvitationParticipantInfo, InviteParticipantsBody, MediaConfig,
    MeetingInfo, RedirectBody, TransferBody, UpdateRecordingStatusBody,
};
use media_session::BlobConfig;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::faults::{FaultPlan, RequestFate};
use crate::scenario::{IdentityKind, Scenario, SimUser, Turns, Voice, is_e164};
use payloads::ParticipantView;

/// Largest request body the simulated service reads (Graph refuses bodies of megabytes too).
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// Longest `clientContext` Graph accepts.
pub const MAX_CLIENT_CONTEXT: usize = 256;

/// How long the reorder fault holds a notification back.
const HOLD_BACK: Duration = Duration::from_millis(150);

/// Most participants of a group call, and most invitees per request.
pub const MAX_GROUP_PARTICIPANTS: usize = 5;

/// How the simulated service behaves; the defaults are quick, for tests and the demo.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The bot's application (client) id.
    pub app_id: String,
    /// The bot's client secret, checked by the token endpoint.
    pub app_secret: String,
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
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            app_id: "00000000-0000-0000-0000-00000000b07a".into(),
            app_secret: "sim-secret".into(),
            tenant_id: "00000000-0000-0000-0000-0000000071e1".into(),
            base_url: "http://127.0.0.1/v1.0".into(),
            setup_delay: Duration::from_millis(50),
            ring_delay: Duration::from_millis(100),
            keepalive_timeout: Duration::from_secs(45 * 60),
            answer_window: Duration::from_secs(15),
            lobby_admit_after: Duration::from_secs(2),
            token_lifetime: Duration::from_secs(3599),
            allow_remote_callbacks: false,
        }
    }
}

/// HTTP method of an API request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// DELETE
    Delete,
    /// Anything else.
    Other,
}

/// One API request, as the HTTP shell received it.
#[derive(Debug, Clone)]
pub struct ApiRequest<'a> {
    /// The method.
    pub method: Method,
    /// The path below the version prefix, such as `/communications/calls/{id}/keepAlive`.
    pub path: &'a str,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    /// The raw body.
    pub body: &'a [u8],
}

/// The answer to an API request.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// `Location` header.
    pub location: Option<String>,
    /// `Retry-After` header, in seconds.
    pub retry_after: Option<u64>,
    /// The `request-id` header (also in error bodies).
    pub request_id: String,
    /// JSON body, if any.
    pub body: Option<Value>,
    /// How long the shell waits before answering (slow-response fault).
    pub delay: Duration,
}

/// A notification the service posts to a bot.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    /// The call it is about.
    pub call_id: String,
    /// Where to post it.
    pub callback_uri: String,
    /// The `commsNotifications` body.
    pub body: Value,
}

/// What the media side and observers need to know.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SimEvent {
    /// A call with app-hosted media is established: connect to the blob's mpUri.
    MediaRequested {
        /// The call.
        call_id: String,
        /// The parsed blob.
        blob: Box<BlobConfig>,
    },
    /// A simulated user's audio starts: they are in the call (not in the lobby).
    SourceAdded {
        /// The call.
        call_id: String,
        /// Display name.
        name: String,
        /// Their `sourceId` in the roster.
        source_id: u32,
        /// What they say.
        voice: Voice,
        /// When they talk (absent: all the time).
        talks: Option<Turns>,
    },
    /// A simulated user left.
    SourceRemoved {
        /// The call.
        call_id: String,
        /// Their `sourceId`.
        source_id: u32,
    },
    /// A call changed state.
    StateChanged {
        /// The call.
        call_id: String,
        /// The new state (Graph's name).
        state: &'static str,
    },
    /// A call ended.
    Ended {
        /// The call.
        call_id: String,
        /// `resultInfo.code`.
        code: i64,
        /// `resultInfo.subcode`.
        subcode: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallKind {
    PeerToPeer,
    Group,
    Meeting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemberState {
    /// Invited or scheduled, not in the call yet.
    Pending,
    InLobby,
    Present,
    Left,
}

#[derive(Debug, Clone)]
struct Member {
    id: String,
    user: SimUser,
    identity: Value,
    source_id: u32,
    state: MemberState,
    muted: bool,
    /// Roster sequence number of the last change to this member.
    sequence: Option<i64>,
}

#[derive(Debug)]
struct SimCall {
    id: String,
    kind: CallKind,
    callback_uri: String,
    state: &'static str,
    /// The call resource as created, kept for GET; `state` is patched in on read.
    resource: Value,
    delta_roster: bool,
    roster_sequence: i64,
    bot_id: String,
    bot_source: u32,
    bot_muted: bool,
    members: Vec<Member>,
    next_source: u32,
    last_keepalive: Instant,
    blob: Option<BlobConfig>,
    /// An incoming call not yet answered.
    awaiting_answer: bool,
    /// The bot called from an application instance with a number, so it may dial phones.
    can_dial_phones: bool,
    /// The bot joined a meeting as a guest and waits in the lobby until admitted.
    bot_in_lobby: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TimerKind {
    Establishing,
    Established,
    Join(usize),
    Leave(usize),
    Admit(usize),
    InviteDone {
        operation_id: String,
        client_context: Option<String>,
        members: Vec<usize>,
        participants: Value,
    },
    KeepAliveCheck,
    AnswerWindow,
    /// Post a roster showing the guest bot in the lobby.
    BotInLobby,
    /// A step of a redirect or transfer: post `state`, and end the bot's leg when `end` is set.
    Handover {
        state: &'static str,
        end: Option<(i64, i64, &'static str)>,
    },
}

#[derive(Debug, PartialEq, Eq)]
struct Timer {
    at: Instant,
    order: u64,
    call_id: String,
    kind: TimerKind,
}

impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timer {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

#[derive(Debug)]
struct QueuedNotification {
    due: Instant,
    order: u64,
    outbound: Outbound,
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
    order: u64,
    notifications: Vec<QueuedNotification>,
    events: VecDeque<SimEvent>,
    tokens: HashMap<String, Instant>,
    /// Ids of scenario users, fixed at start so a bot can target them.
    user_ids: Vec<String>,
    request_counter: u64,
}

/// A request error: status, Graph error code, message.
type Refusal = (u16, &'static str, String);

fn bad_request(message: impl Into<String>) -> Refusal {
    (400, "BadRequest", message.into())
}

fn not_found(call_id: &str) -> Refusal {
    (
        404,
        "NotFound",
        format!("call {call_id} does not exist or has ended"),
    )
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
        Sim {
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
            request_counter: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The simulated users with the ids a bot uses to call or invite them.
    pub fn directory(&self) -> impl Iterator<Item = (&SimUser, &str)> {
        self.scenario
            .users
            .iter()
            .zip(self.user_ids.iter().map(String::as_str))
    }

    /// Ids of calls that have not ended.
    pub fn active_calls(&self) -> impl Iterator<Item = &str> {
        self.calls
            .values()
            .filter(|c| c.state != "terminated")
            .map(|c| c.id.as_str())
    }

    /// The state of a call (Graph's name), if the sim knows it.
    pub fn call_state(&self, call_id: &str) -> Option<&'static str> {
        self.calls.get(call_id).map(|c| c.state)
    }

    /// Handles the token endpoint's form body (client credentials grant). Returns the status and
    /// the OAuth2 JSON body.
    pub fn issue_token(&mut self, now: Instant, form: &[(String, String)]) -> (u16, Value) {
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if field("grant_type") != Some("client_credentials") {
            return (
                400,
                json!({"error": "unsupported_grant_type", "error_description": "only client_credentials is supported"}),
            );
        }
        if field("client_id") != Some(self.config.app_id.as_str())
            || field("client_secret") != Some(self.config.app_secret.as_str())
        {
            return (
                401,
                json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}),
            );
        }
        if !field("scope").is_some_and(|s| s.ends_with("/.default")) {
            return (
                400,
                json!({"error": "invalid_scope", "error_description": "scope must end with /.default"}),
            );
        }
        let token = format!("sim.{}", uuid_from(&mut self.rng));
        self.tokens
            .insert(token.clone(), now + self.config.token_lifetime);
        self.tokens.retain(|_, expiry| *expiry > now);
        (
            200,
            json!({
                "token_type": "Bearer",
                "expires_in": self.config.token_lifetime.as_secs(),
                "ext_expires_in": self.config.token_lifetime.as_secs(),
                "access_token": token,
            }),
        )
    }

    /// Answers one API request and queues what follows from it.
    pub fn handle_request(&mut self, now: Instant, request: &ApiRequest<'_>) -> ApiResponse {
        self.request_counter += 1;
        let request_id = format!("sim-request-{}", self.request_counter);
        let respond = |status, body: Option<Value>, delay| ApiResponse {
            status,
            location: None,
            retry_after: None,
            request_id: request_id.clone(),
            body,
            delay,
        };
        // Authentication comes first: an unauthenticated request learns nothing.
        let token = request
            .authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim);
        let valid = token.is_some_and(|t| self.tokens.get(t).is_some_and(|exp| *exp > now));
        if !valid {
            let body = payloads::error_body(
                "InvalidAuthenticationToken",
                "Access token is missing, invalid or expired.",
                &request_id,
            );
            return respond(401, Some(body), Duration::ZERO);
        }
        let delay = match self.faults.request() {
            RequestFate::Refuse {
                status,
                retry_after,
            } => {
                let code = if status == 429 {
                    "TooManyRequests"
                } else {
                    "ServiceUnavailable"
                };
                let body = payloads::error_body(code, "Simulated throttling.", &request_id);
                let mut r = respond(status, Some(body), Duration::ZERO);
                r.retry_after = Some(retry_after.as_secs());
                return r;
            }
            RequestFate::Serve { delay } => delay,
        };
        if request.body.len() > MAX_REQUEST_BYTES {
            let body =
                payloads::error_body("RequestTooLarge", "Request body too large.", &request_id);
            return respond(413, Some(body), delay);
        }
        match self.route(now, request) {
            Ok((status, location, body)) => {
                let mut r = respond(status, body, delay);
                r.location = location;
                r
            }
            Err((status, code, message)) => {
                let body = payloads::error_body(code, &message, &request_id);
                respond(status, Some(body), delay)
            }
        }
    }

    fn route(
        &mut self,
        now: Instant,
        request: &ApiRequest<'_>,
    ) -> Result<(u16, Option<String>, Option<Value>), Refusal> {
        let path = request.path.trim_end_matches('/');
        let rest = path
            .strip_prefix("/communications/calls")
            .or_else(|| path.strip_prefix("/app/calls"))
            .ok_or_else(|| (404, "NotFound", format!("no resource at {path}")))?;
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        match (request.method, segments.as_slice()) {
            (Method::Post, []) => self.create_call(now, request.body),
            (Method::Get, [id]) => self.get_call(id).map(|b| (200, None, Some(b))),
            (Method::Delete, [id]) => self.hang_up(now, id).map(|()| (204, None, None)),
            (Method::Post, [id, "keepAlive"]) => {
                self.keep_alive(now, id).map(|()| (200, None, None))
            }
            (Method::Post, [id, "answer"]) => self
                .answer(now, id, request.body)
                .map(|()| (202, None, None)),
            (Method::Post, [id, "reject"]) => self.reject(now, id).map(|()| (202, None, None)),
            (Method::Post, [id, "participants", "invite"]) => self.invite(now, id, request.body),
            (Method::Post, [id, action @ ("mute" | "unmute")]) => {
                self.mute(now, id, *action == "mute", request.body)
            }
            (Method::Post, [id, "updateRecordingStatus"]) => {
                self.update_recording_status(id, request.body)
            }
            (Method::Post, [id, "redirect"]) => self
                .redirect(now, id, request.body)
                .map(|()| (202, None, None)),
            (Method::Post, [id, "transfer"]) => self
                .transfer(now, id, request.body)
                .map(|()| (202, None, None)),
            _ => Err((
                405,
                "MethodNotAllowed",
                format!("{:?} {path} is not supported", request.method),
            )),
        }
    }

    fn live_call(&self, id: &str) -> Result<&SimCall, Refusal> {
        self.calls
            .get(id)
            .filter(|c| c.state != "terminated")
            .ok_or_else(|| not_found(id))
    }

    fn create_call(
        &mut self,
        now: Instant,
        body: &[u8],
    ) -> Result<(u16, Option<String>, Option<Value>), Refusal> {
        let call: Call = serde_json::from_slice(body)
            .map_err(|e| bad_request(format!("the call body is not valid: {e}")))?;
        let callback_uri = call
            .callback_uri
            .get()
            .cloned()
            .ok_or_else(|| bad_request("callbackUri is required"))?;
        self.check_callback(&callback_uri)?;
        let blob = match call.media_config.get() {
            Some(MediaConfig::AppHosted(app)) => {
                let text = app
                    .blob
                    .as_deref()
                    .ok_or_else(|| bad_request("appHostedMediaConfig needs a blob"))?;
                Some(
                    media_session::parse(text)
                        .map_err(|e| bad_request(format!("mediaConfig.blob: {e}")))?,
                )
            }
            Some(_) => None,
            None => return Err(bad_request("mediaConfig is required")),
        };
        if let Some(info) = call.meeting_info.get() {
            self.check_meeting(info)?;
        }
        let targets = call.targets.get().map(Vec::as_slice).unwrap_or_default();
        let kind = if call.meeting_info.get().is_some() {
            CallKind::Meeting
        } else if targets.is_empty() {
            return Err(bad_request("a call needs targets or meetingInfo"));
        } else if targets.len() > MAX_GROUP_PARTICIPANTS {
            return Err(bad_request(format!(
                "a group call supports at most {MAX_GROUP_PARTICIPANTS} participants, {} were requested",
                targets.len()
            )));
        } else if targets.len() == 1 && call.chat_info.get().is_none() {
            CallKind::PeerToPeer
        } else {
            CallKind::Group
        };
        let source_identity = call.source.get().and_then(|s| s.identity.get());
        let can_dial_phones =
            source_identity.is_some_and(|i| i.application_instance.get().is_some());
        // A bot joining a meeting as a guest waits in the lobby like any guest.
        let bot_in_lobby =
            kind == CallKind::Meeting && source_identity.is_some_and(|i| i.guest.get().is_some());
        let mut members = Vec::new();
        for target in targets {
            members.push(self.member_for(target, can_dial_phones)?);
        }
        if kind == CallKind::Meeting {
            for i in 0..self.scenario.users.len() {
                let user = self.scenario.users[i].clone();
                let id = self.user_ids[i].clone();
                members.push(self.new_member(user, &id));
            }
        }
        let id = uuid_from(&mut self.rng);
        let bot_id = uuid_from(&mut self.rng);
        let mut resource = serde_json::to_value(&call).map_err(|e| bad_request(e.to_string()))?;
        resource["id"] = json!(id);
        resource["state"] = json!("establishing");
        resource["direction"] = json!("outgoing");
        resource["callChainId"] = json!(uuid_from(&mut self.rng));
        resource["tenantId"] = json!(self.config.tenant_id);
        resource["myParticipantId"] = json!(bot_id);
        resource["@odata.type"] = json!("#microsoft.graph.call");
        let delta_roster = call
            .call_options
            .get()
            .and_then(|o| o.is_delta_roster_enabled.get().copied())
            .unwrap_or(false);
        let mut sim_call = SimCall {
            id: id.clone(),
            kind,
            callback_uri,
            state: "establishing",
            resource: resource.clone(),
            delta_roster,
            roster_sequence: 0,
            bot_id,
            bot_source: 0,
            bot_muted: false,
            members: Vec::new(),
            next_source: 1,
            last_keepalive: now,
            blob,
            awaiting_answer: false,
            can_dial_phones,
            bot_in_lobby,
        };
        sim_call.bot_source = sim_call.allocate_source();
        for mut m in members {
            m.source_id = sim_call.allocate_source();
            sim_call.members.push(m);
        }
        self.calls.insert(id.clone(), sim_call);
        let (first, second) = if self.scenario.signaling.established_first {
            (TimerKind::Established, TimerKind::Establishing)
        } else {
            (TimerKind::Establishing, TimerKind::Established)
        };
        let lobby_wait = if bot_in_lobby {
            self.config.lobby_admit_after
        } else {
            Duration::ZERO
        };
        self.schedule(now + self.config.setup_delay, &id, first);
        self.schedule(now + self.config.setup_delay * 2 + lobby_wait, &id, second);
        if bot_in_lobby {
            // The roster shows the bot waiting in the lobby until it is admitted.
            self.schedule(now + self.config.setup_delay, &id, TimerKind::BotInLobby);
        }
        self.schedule_keepalive_check(&id, now);
        let location = format!("{}/communications/calls/{id}", self.config.base_url);
        Ok((201, Some(location), Some(resource)))
    }

    /// Checks a join by `joinMeetingId` against the scenario's meeting, if it declares one: an
    /// unknown id is 404 and a missing or wrong passcode 403, before any call exists. Other
    /// kinds of `meetingInfo`, and any join when no meeting is declared, are accepted.
    fn check_meeting(&self, info: &MeetingInfo) -> Result<(), Refusal> {
        let (Some(meeting), MeetingInfo::JoinMeetingId(join)) = (&self.scenario.meeting, info)
        else {
            return Ok(());
        };
        let id = join.join_meeting_id.get().map(String::as_str);
        if id != Some(meeting.join_meeting_id.as_str()) {
            // Only a bounded prefix of what the caller sent goes back into the message.
            let shown: String = id.unwrap_or_default().chars().take(64).collect();
            return Err((
                404,
                "NotFound",
                format!("no meeting has joinMeetingId {shown:?}"),
            ));
        }
        match (&meeting.passcode, join.passcode.get()) {
            (Some(expected), Some(given)) if expected == given => Ok(()),
            (Some(_), Some(_)) => Err((
                403,
                "Forbidden",
                "the passcode does not match the meeting's".to_owned(),
            )),
            (Some(_), None) => Err((
                403,
                "Forbidden",
                "the meeting requires a passcode".to_owned(),
            )),
            // A meeting without a passcode ignores one given anyway.
            (None, _) => Ok(()),
        }
    }

    /// The simulated user standing for an invitee: a scenario user with the same id or number,
    /// or a new one named after the identity.
    fn member_for(
        &mut self,
        target: &InvitationParticipantInfo,
        can_dial_phones: bool,
    ) -> Result<Member, Refusal> {
        let identity = target
            .identity
            .get()
            .ok_or_else(|| bad_request("each participant needs an identity"))?;
        let (kind, who) = if let Some(phone) = identity.phone.get() {
            let number = phone.id.as_deref().unwrap_or_default();
            if !is_e164(number) {
                return Err(bad_request(format!(
                    "phone number {number:?} is not in E.164 form (+14255550123)"
                )));
            }
            if !can_dial_phones {
                return Err(bad_request(
                    "a PSTN call needs source.identity.applicationInstance with a phone number",
                ));
            }
            (IdentityKind::Phone, phone)
        } else if let Some(guest) = identity.guest.get() {
            (IdentityKind::Guest, guest)
        } else if let Some(user) = identity.user.get() {
            (IdentityKind::User, user)
        } else if let Some(app) = identity.application.get() {
            (IdentityKind::User, app)
        } else {
            return Err(bad_request(
                "participant identity needs user, phone, guest or application",
            ));
        };
        let id = who.id.as_deref().unwrap_or_default().to_owned();
        let known = self
            .scenario
            .users
            .iter()
            .zip(&self.user_ids)
            .find(|(u, uid)| **uid == id || u.phone.as_deref() == Some(id.as_str()));
        let (user, user_id) = match known {
            Some((u, uid)) => (u.clone(), uid.clone()),
            None => {
                let mut user = SimUser::new(
                    who.display_name.as_deref().unwrap_or("Simulated user"),
                    Voice::Speech,
                );
                user.identity = kind;
                if kind == IdentityKind::Phone {
                    user.phone = Some(id.clone());
                }
                (user, id)
            }
        };
        Ok(self.new_member(user, &user_id))
    }

    fn new_member(&mut self, user: SimUser, user_id: &str) -> Member {
        let identity_id = user.phone.clone().unwrap_or_else(|| user_id.to_owned());
        let identity = payloads::identity_set(
            user.identity,
            &identity_id,
            &user.name,
            &self.config.tenant_id,
        );
        Member {
            id: uuid_from(&mut self.rng),
            user,
            identity,
            source_id: 0,
            state: MemberState::Pending,
            muted: false,
            sequence: None,
        }
    }

    fn check_callback(&self, uri: &str) -> Result<(), Refusal> {
        if self.config.allow_remote_callbacks || is_loopback_url(uri) {
            Ok(())
        } else {
            Err(bad_request(format!(
                "callbackUri {uri:?} is not on loopback; graph-sim posts only to 127.0.0.0/8, ::1 or localhost unless allow_remote_callbacks is set"
            )))
        }
    }

    fn get_call(&self, id: &str) -> Result<Value, Refusal> {
        let call = self.calls.get(id).ok_or_else(|| not_found(id))?;
        let mut resource = call.resource.clone();
        resource["state"] = json!(call.state);
        Ok(resource)
    }

    fn hang_up(&mut self, now: Instant, id: &str) -> Result<(), Refusal> {
        self.live_call(id)?;
        self.terminate(now, id, (200, 5001, "The conversation has ended."));
        Ok(())
    }

    fn keep_alive(&mut self, now: Instant, id: &str) -> Result<(), Refusal> {
        self.live_call(id)?;
        if let Some(call) = self.calls.get_mut(id) {
            call.last_keepalive = now;
        }
        Ok(())
    }

    fn answer(&mut self, now: Instant, id: &str, body: &[u8]) -> Result<(), Refusal> {
        let call = self.live_call(id)?;
        if !call.awaiting_answer {
            return Err(bad_request("the call is not waiting for an answer"));
        }
        let answer: graph_signaling::models::AnswerBody = serde_json::from_slice(body)
            .map_err(|e| bad_request(format!("the answer body is not valid: {e}")))?;
        let blob = match &answer.media_config {
            MediaConfig::AppHosted(app) => Some(
                media_session::parse(app.blob.as_deref().unwrap_or_default())
                    .map_err(|e| bad_request(format!("mediaConfig.blob: {e}")))?,
            ),
            _ => None,
        };
        self.check_callback(&answer.callback_uri)?;
        let call = self.calls.get_mut(id).ok_or_else(|| not_found(id))?;
        call.awaiting_answer = false;
        call.callback_uri = answer.callback_uri.clone();
        call.blob = blob;
        call.last_keepalive = now;
        self.set_state(id, "establishing");
        self.schedule(now + self.config.setup_delay, id, TimerKind::Established);
        self.schedule_keepalive_check(id, now);
        Ok(())
    }

    fn reject(&mut self, now: Instant, id: &str) -> Result<(), Refusal> {
        let call = self.live_call(id)?;
        if !call.awaiting_answer {
            return Err(bad_request("only an incoming call can be rejected"));
        }
        self.terminate(now, id, (200, 5002, "The call was rejected by the bot."));
        Ok(())
    }

    fn redirect(&mut self, now: Instant, id: &str, body: &[u8]) -> Result<(), Refusal> {
        let call = self.live_call(id)?;
        if !call.awaiting_answer {
            return Err(bad_request("only an incoming call can be redirected"));
        }
        let redirect: RedirectBody = serde_json::from_slice(body)
            .map_err(|e| bad_request(format!("the redirect body is not valid: {e}")))?;
        if redirect.targets.is_empty() || redirect.targets.len() > MAX_GROUP_PARTICIPANTS {
            return Err(bad_request(format!(
                "redirect needs 1 to {MAX_GROUP_PARTICIPANTS} targets"
            )));
        }
        for target in &redirect.targets {
            // Checks identities and E.164 numbers the same way as for a call.
            self.member_for(target, true)?;
        }
        if let Some(call) = self.calls.get_mut(id) {
            call.awaiting_answer = false;
        }
        self.set_state(id, "redirecting");
        self.notify_state(now, id, "redirecting");
        self.schedule(
            now + self.config.ring_delay,
            id,
            TimerKind::Handover {
                state: "redirecting",
                end: Some((200, 5003, "The call was redirected.")),
            },
        );
        Ok(())
    }

    fn transfer(&mut self, now: Instant, id: &str, body: &[u8]) -> Result<(), Refusal> {
        let call = self.live_call(id)?;
        if call.state != "established" {
            return Err(bad_request("only an established call can be transferred"));
        }
        let kind = call.kind;
        let transfer: TransferBody = serde_json::from_slice(body)
            .map_err(|e| bad_request(format!("the transfer body is not valid: {e}")))?;
        if kind != CallKind::PeerToPeer && transfer.transferee.is_none() {
            return Err(bad_request(
                "transferring a group call or meeting needs a transferee",
            ));
        }
        self.member_for(&transfer.transfer_target, true)?;
        self.set_state(id, "transferring");
        self.notify_state(now, id, "transferring");
        self.schedule(
            now + self.config.ring_delay,
            id,
            TimerKind::Handover {
                state: "transferAccepted",
                end: None,
            },
        );
        self.schedule(
            now + self.config.ring_delay * 2,
            id,
            TimerKind::Handover {
                state: "transferAccepted",
                end: Some((200, 5004, "The call was transferred.")),
            },
        );
        Ok(())
    }

    fn invite(
        &mut self,
        now: Instant,
        id: &str,
        body: &[u8],
    ) -> Result<(u16, Option<String>, Option<Value>), Refusal> {
        let call = self.live_call(id)?;
        let kind = call.kind;
        let can_dial_phones = call.can_dial_phones;
        let invite: InviteParticipantsBody = serde_json::from_slice(body)
            .map_err(|e| bad_request(format!("the invite body is not valid: {e}")))?;
        let client_context = invite.client_context.get().cloned();
        check_client_context(client_context.as_deref())?;
        let count = invite.participants.len();
        if count == 0 {
            return Err(bad_request("invite needs at least one participant"));
        }
        if count > MAX_GROUP_PARTICIPANTS {
            return Err(bad_request(format!(
                "at most {MAX_GROUP_PARTICIPANTS} participants can be invited at once"
            )));
        }
        if count > 1 && kind == CallKind::PeerToPeer {
            return Err(bad_request(
                "several participants can be invited only into a group call",
            ));
        }
        // With replacesCallId the service moves only the first participant of the request.
        let replacing = invite
            .participants
            .first()
            .is_some_and(|p| p.replaces_call_id.get().is_some());
        let invited = if replacing {
            &invite.participants[..1]
        } else {
            &invite.participants[..]
        };
        let mut new_members = Vec::new();
        for p in invited {
            new_members.push(self.member_for(p, can_dial_phones)?);
        }
        let operation_id = uuid_from(&mut self.rng);
        let participants = serde_json::to_value(&invite.participants).unwrap_or(Value::Null);
        let call = self.calls.get_mut(id).ok_or_else(|| not_found(id))?;
        let mut indexes = Vec::new();
        for mut m in new_members {
            m.source_id = call.allocate_source();
            indexes.push(call.members.len());
            call.members.push(m);
        }
        let body = payloads::operation(
            "inviteParticipantsOperation",
            &operation_id,
            "Running",
            client_context.as_deref(),
            None,
            Some(participants.clone()),
        );
        self.schedule(
            now + self.config.ring_delay,
            id,
            TimerKind::InviteDone {
                operation_id: operation_id.clone(),
                client_context,
                members: indexes,
                participants,
            },
        );
        let location = format!(
            "{}/communications/calls/{id}/operations/{operation_id}",
            self.config.base_url
        );
        Ok((200, Some(location), Some(body)))
    }

    fn mute(
        &mut self,
        now: Instant,
        id: &str,
        mute: bool,
        body: &[u8],
    ) -> Result<(u16, Option<String>, Option<Value>), Refusal> {
        self.live_call(id)?;
        let request: ClientContextBody = if body.is_empty() {
            ClientContextBody::default()
        } else {
            serde_json::from_slice(body).map_err(|e| bad_request(e.to_string()))?
        };
        check_client_context(request.client_context.as_deref())?;
        let operation_id = uuid_from(&mut self.rng);
        let kind = if mute {
            "muteParticipantOperation"
        } else {
            "unmuteParticipantOperation"
        };
        if let Some(call) = self.calls.get_mut(id) {
            call.bot_muted = mute;
        }
        self.emit_roster(now, id, &[], true);
        let body = payloads::operation(
            kind,
            &operation_id,
            "completed",
            request.client_context.as_deref(),
            Some((200, 0, "Success")),
            None,
        );
        Ok((200, None, Some(body)))
    }

    fn update_recording_status(
        &mut self,
        id: &str,
        body: &[u8],
    ) -> Result<(u16, Option<String>, Option<Value>), Refusal> {
        self.live_call(id)?;
        let request: UpdateRecordingStatusBody = serde_json::from_slice(body)
            .map_err(|e| bad_request(format!("the recording status body is not valid: {e}")))?;
        check_client_context(request.client_context.as_deref())?;
        let operation_id = uuid_from(&mut self.rng);
        let body = payloads::operation(
            "updateRecordingStatusOperation",
            &operation_id,
            "completed",
            request.client_context.as_deref(),
            Some((200, 0, "Success")),
            None,
        );
        Ok((200, None, Some(body)))
    }

    /// Offers the bot an incoming call from scenario user `from` (an index into the scenario's
    /// users), posted to `callback_uri`. Returns the call id.
    pub fn offer_incoming_call(
        &mut self,
        now: Instant,
        callback_uri: &str,
        from: usize,
    ) -> Option<String> {
        let user = self.scenario.users.get(from)?.clone();
        let user_id = self.user_ids[from].clone();
        Some(self.offer_incoming_from(now, callback_uri, user, &user_id))
    }

    /// Offers the bot an incoming call from `user`; returns the call id. The caller is the
    /// call's first member.
    fn offer_incoming_from(
        &mut self,
        now: Instant,
        callback_uri: &str,
        user: SimUser,
        user_id: &str,
    ) -> String {
        let caller = self.new_member(user, user_id);
        let id = uuid_from(&mut self.rng);
        let bot_id = uuid_from(&mut self.rng);
        let resource = json!({
            "@odata.type": "#microsoft.graph.call",
            "id": id,
            "state": "incoming",
            "direction": "incoming",
            "callbackUri": callback_uri,
            "callChainId": uuid_from(&mut self.rng),
            "source": {
                "@odata.type": "#microsoft.graph.participantInfo",
                "identity": caller.identity,
                "region": null,
                "languageId": null,
            },
            "targets": [{
                "@odata.type": "#microsoft.graph.invitationParticipantInfo",
                "identity": payloads::application_identity(&self.config.app_id, "Bot"),
            }],
            "requestedModalities": ["audio"],
            "tenantId": self.config.tenant_id,
            "myParticipantId": bot_id,
        });
        let mut call = SimCall {
            id: id.clone(),
            kind: CallKind::PeerToPeer,
            callback_uri: callback_uri.to_owned(),
            state: "incoming",
            resource: resource.clone(),
            delta_roster: false,
            roster_sequence: 0,
            bot_id,
            bot_source: 0,
            bot_muted: false,
            members: Vec::new(),
            next_source: 1,
            last_keepalive: now,
            blob: None,
            awaiting_answer: true,
            can_dial_phones: false,
            bot_in_lobby: false,
        };
        call.bot_source = call.allocate_source();
        let mut caller = caller;
        caller.source_id = call.allocate_source();
        call.members.push(caller);
        self.calls.insert(id.clone(), call);
        let body =
            payloads::notifications("created", &format!("/calls/{id}"), callback_uri, resource);
        self.post(now, &id, body);
        self.schedule(
            now + self.config.answer_window,
            &id,
            TimerKind::AnswerWindow,
        );
        id
    }

    /// Advances time: fires every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while self.timers.peek().is_some_and(|Reverse(t)| t.at <= now) {
            let Some(Reverse(timer)) = self.timers.pop() else {
                break;
            };
            self.fire(timer.at, &timer.call_id, timer.kind);
        }
    }

    /// When the core next needs [`Sim::handle_timeout`], counting queued notifications.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse(t)| t.at);
        let notification = self.notifications.iter().map(|n| n.due).min();
        match (timer, notification) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next notification due at or before `now`, in posting order.
    #[must_use]
    pub fn poll_notification(&mut self, now: Instant) -> Option<Outbound> {
        let (index, _) = self
            .notifications
            .iter()
            .enumerate()
            .filter(|(_, n)| n.due <= now)
            .min_by_key(|(_, n)| (n.due, n.order))?;
        Some(self.notifications.remove(index).outbound)
    }

    /// The next event for the media side and observers.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<SimEvent> {
        self.events.pop_front()
    }

    fn fire(&mut self, now: Instant, call_id: &str, kind: TimerKind) {
        let Some(call) = self.calls.get(call_id) else {
            return;
        };
        if call.state == "terminated" {
            return;
        }
        match kind {
            TimerKind::Establishing => {
                if call.state == "establishing" {
                    self.notify_state(now, call_id, "establishing");
                } else {
                    // `established` went first (the reversed-order fault): say `establishing`
                    // late, as the real service sometimes does, without changing the state.
                    let data = payloads::call_state(call_id, "establishing", None);
                    self.post_call_update(now, call_id, data);
                }
            }
            TimerKind::Established => {
                if call.state == "established" {
                    return;
                }
                let declined = call.kind == CallKind::PeerToPeer
                    && call.members.iter().all(|m| m.user.declines);
                if declined && !call.members.is_empty() {
                    self.terminate(now, call_id, (603, 0, "The callee declined the call."));
                    return;
                }
                if let Some(call) = self.calls.get_mut(call_id) {
                    call.bot_in_lobby = false;
                }
                self.set_state(call_id, "established");
                self.notify_state(now, call_id, "established");
                self.on_established(now, call_id);
            }
            TimerKind::Join(i) => self.join(now, call_id, i),
            TimerKind::Leave(i) => self.leave(now, call_id, i),
            TimerKind::Admit(i) => {
                let changed = self.with_member(call_id, i, |m| {
                    (m.state == MemberState::InLobby).then(|| m.state = MemberState::Present)
                });
                if changed.is_some() {
                    self.source_added(call_id, i);
                    self.emit_roster(now, call_id, &[i], false);
                }
            }
            TimerKind::InviteDone {
                operation_id,
                client_context,
                members,
                participants,
            } => {
                let declined = members
                    .iter()
                    .any(|&i| call.members.get(i).is_some_and(|m| m.user.declines));
                let (status, result) = if declined {
                    (
                        "failed",
                        (603, 0, "The participant declined the invitation."),
                    )
                } else {
                    ("completed", (200, 0, "Success"))
                };
                let op = payloads::operation(
                    "inviteParticipantsOperation",
                    &operation_id,
                    status,
                    client_context.as_deref(),
                    Some(result),
                    Some(participants),
                );
                let suffix = format!("/operations/{operation_id}");
                // An invited user's `leave_ms` counts from when they join.
                let leaves: Vec<(usize, u64)> = members
                    .iter()
                    .filter_map(|&i| Some((i, call.members.get(i)?.user.leave_ms?)))
                    .collect();
                self.notify(now, call_id, "deleted", &suffix, op);
                if !declined {
                    for i in members {
                        self.join(now, call_id, i);
                    }
                    for (i, leave) in leaves {
                        self.schedule(
                            now + Duration::from_millis(leave),
                            call_id,
                            TimerKind::Leave(i),
                        );
                    }
                }
            }
            TimerKind::KeepAliveCheck => {
                let deadline = call.last_keepalive + self.config.keepalive_timeout;
                if deadline <= now {
                    self.terminate(now, call_id, (408, 8537, "The call was not kept alive."));
                } else {
                    self.schedule(deadline, call_id, TimerKind::KeepAliveCheck);
                }
            }
            TimerKind::BotInLobby => self.emit_roster(now, call_id, &[], true),
            TimerKind::Handover { state, end } => match end {
                Some(result) => self.terminate(now, call_id, result),
                None => {
                    self.set_state(call_id, state);
                    self.notify_state(now, call_id, state);
                }
            },
            TimerKind::AnswerWindow => {
                if call.awaiting_answer {
                    self.terminate(now, call_id, (408, 0, "The bot did not answer in time."));
                }
            }
        }
    }

    fn on_established(&mut self, now: Instant, call_id: &str) {
        let Some(call) = self.calls.get(call_id) else {
            return;
        };
        if let Some(blob) = &call.blob {
            self.events.push_back(SimEvent::MediaRequested {
                call_id: call_id.to_owned(),
                blob: Box::new(blob.clone()),
            });
        }
        let plan: Vec<(usize, u64, Option<u64>)> = call
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.state == MemberState::Pending)
            .map(|(i, m)| (i, m.user.join_ms, m.user.leave_ms))
            .collect();
        // Whoever is there from the start (the callee who answered, attendees already in the
        // meeting) is on the first roster, beside the bot.
        let mut present = Vec::new();
        for &(i, join_ms, leave_ms) in &plan {
            if join_ms == 0 {
                if self.admit_or_lobby(now, call_id, i) {
                    present.push(i);
                }
            } else {
                self.schedule(
                    now + Duration::from_millis(join_ms),
                    call_id,
                    TimerKind::Join(i),
                );
            }
            if let Some(leave) = leave_ms {
                self.schedule(
                    now + Duration::from_millis(leave),
                    call_id,
                    TimerKind::Leave(i),
                );
            }
        }
        self.emit_roster(now, call_id, &present, true);
    }

    fn join(&mut self, now: Instant, call_id: &str, i: usize) {
        if self.admit_or_lobby(now, call_id, i) {
            self.emit_roster(now, call_id, &[i], false);
        }
    }

    /// Moves a pending member into the call (guests into the lobby, to be admitted later).
    /// Returns whether anything changed.
    fn admit_or_lobby(&mut self, now: Instant, call_id: &str, i: usize) -> bool {
        let guest = self.with_member(call_id, i, |m| {
            if m.state != MemberState::Pending {
                return None;
            }
            let guest = m.user.identity == IdentityKind::Guest;
            m.state = if guest {
                MemberState::InLobby
            } else {
                MemberState::Present
            };
            Some(guest)
        });
        match guest {
            None => false,
            Some(true) => {
                self.schedule(
                    now + self.config.lobby_admit_after,
                    call_id,
                    TimerKind::Admit(i),
                );
                true
            }
            Some(false) => {
                self.source_added(call_id, i);
                true
            }
        }
    }

    fn leave(&mut self, now: Instant, call_id: &str, i: usize) {
        let source = self.with_member(call_id, i, |m| {
            matches!(m.state, MemberState::Present | MemberState::InLobby).then(|| {
                let was_present = m.state == MemberState::Present;
                m.state = MemberState::Left;
                (m.source_id, was_present)
            })
        });
        let Some((source_id, was_present)) = source else {
            return;
        };
        if was_present {
            self.events.push_back(SimEvent::SourceRemoved {
                call_id: call_id.to_owned(),
                source_id,
            });
        }
        self.emit_roster(now, call_id, &[i], false);
        let everyone_left = self.calls.get(call_id).is_some_and(|c| {
            c.members
                .iter()
                .all(|m| matches!(m.state, MemberState::Left | MemberState::Pending))
        });
        let p2p = self
            .calls
            .get(call_id)
            .is_some_and(|c| c.kind == CallKind::PeerToPeer);
        if p2p && everyone_left {
            self.terminate(now, call_id, (200, 5002, "All other participants left."));
        }
    }

    fn source_added(&mut self, call_id: &str, i: usize) {
        if let Some(m) = self.calls.get(call_id).and_then(|c| c.members.get(i)) {
            self.events.push_back(SimEvent::SourceAdded {
                call_id: call_id.to_owned(),
                name: m.user.name.clone(),
                source_id: m.source_id,
                voice: m.user.says.clone(),
                talks: m.user.talks,
            });
        }
    }

    fn with_member<R>(
        &mut self,
        call_id: &str,
        i: usize,
        f: impl FnOnce(&mut Member) -> Option<R>,
    ) -> Option<R> {
        self.calls
            .get_mut(call_id)
            .and_then(|c| c.members.get_mut(i))
            .and_then(f)
    }

    /// Posts the roster: everyone present (full roster), or just the members in `changed` and,
    /// with `include_bot`, the bot's own entry (delta roster).
    fn emit_roster(&mut self, now: Instant, call_id: &str, changed: &[usize], include_bot: bool) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let bot_identity = payloads::application_identity(&self.config.app_id, "Bot");
        let bot = ParticipantView {
            id: &call.bot_id,
            identity: bot_identity,
            source_id: call.bot_source,
            muted: call.bot_muted,
            in_lobby: call.bot_in_lobby,
            sequence: None,
            removed: false,
        };
        let data = if call.delta_roster {
            call.roster_sequence += 1;
            let seq = call.roster_sequence;
            let mut entries = Vec::new();
            if include_bot {
                entries.push(payloads::participant(&ParticipantView {
                    sequence: Some(seq),
                    ..bot
                }));
            }
            for &i in changed {
                if let Some(m) = call.members.get_mut(i) {
                    m.sequence = Some(seq);
                }
                if let Some(m) = call.members.get(i) {
                    entries.push(payloads::participant(&member_view(m, Some(seq))));
                }
            }
            payloads::delta_roster(entries, seq)
        } else {
            let mut entries = vec![payloads::participant(&bot)];
            entries.extend(
                call.members
                    .iter()
                    .filter(|m| matches!(m.state, MemberState::Present | MemberState::InLobby))
                    .map(|m| payloads::participant(&member_view(m, None))),
            );
            Value::Array(entries)
        };
        self.notify(now, call_id, "updated", "/participants", data);
    }

    fn set_state(&mut self, call_id: &str, state: &'static str) {
        if let Some(call) = self.calls.get_mut(call_id) {
            call.state = state;
            self.events.push_back(SimEvent::StateChanged {
                call_id: call_id.to_owned(),
                state,
            });
        }
    }

    fn notify_state(&mut self, now: Instant, call_id: &str, state: &str) {
        let data = payloads::call_state(call_id, state, None);
        self.post_call_update(now, call_id, data);
    }

    fn post_call_update(&mut self, now: Instant, call_id: &str, data: Value) {
        self.notify(now, call_id, "updated", "", data);
    }

    /// Posts a notification about `/calls/{call_id}{suffix}` to the call's callback.
    fn notify(
        &mut self,
        now: Instant,
        call_id: &str,
        change_type: &str,
        suffix: &str,
        data: Value,
    ) {
        let Some(callback) = self.calls.get(call_id).map(|c| c.callback_uri.clone()) else {
            return;
        };
        let path = format!("/calls/{call_id}{suffix}");
        let body = payloads::notifications(change_type, &path, &callback, data);
        self.post(now, call_id, body);
    }

    fn terminate(
        &mut self,
        now: Instant,
        call_id: &str,
        (code, subcode, message): (i64, i64, &str),
    ) {
        let Some(call) = self.calls.get(call_id) else {
            return;
        };
        if call.state == "terminated" {
            return;
        }
        let left: Vec<u32> = call
            .members
            .iter()
            .filter(|m| m.state == MemberState::Present)
            .map(|m| m.source_id)
            .collect();
        for source_id in left {
            self.events.push_back(SimEvent::SourceRemoved {
                call_id: call_id.to_owned(),
                source_id,
            });
        }
        self.set_state(call_id, "terminated");
        let data = payloads::call_state(call_id, "terminated", Some((code, subcode, message)));
        // The real service reports the end as the deletion of the call resource.
        self.notify(now, call_id, "deleted", "", data);
        self.events.push_back(SimEvent::Ended {
            call_id: call_id.to_owned(),
            code,
            subcode,
        });
    }

    /// Queues a notification through the signaling fault plan.
    fn post(&mut self, now: Instant, call_id: &str, body: Value) {
        let Some(callback_uri) = self.calls.get(call_id).map(|c| c.callback_uri.clone()) else {
            return;
        };
        let outbound = Outbound {
            call_id: call_id.to_owned(),
            callback_uri,
            body,
        };
        let fate = self.faults.notification();
        if !fate.deliver {
            return;
        }
        // A held-back notification is delayed past the ones that follow it; if none follows
        // soon, it still arrives, late.
        let due = now
            + fate.delay
            + if fate.hold_back {
                HOLD_BACK
            } else {
                Duration::ZERO
            };
        let copies = if fate.duplicate { 2 } else { 1 };
        for _ in 0..copies {
            self.enqueue(due, outbound.clone());
        }
    }

    fn enqueue(&mut self, due: Instant, outbound: Outbound) {
        self.order += 1;
        self.notifications.push(QueuedNotification {
            due,
            order: self.order,
            outbound,
        });
    }

    fn schedule(&mut self, at: Instant, call_id: &str, kind: TimerKind) {
        self.order += 1;
        self.timers.push(Reverse(Timer {
            at,
            order: self.order,
            call_id: call_id.to_owned(),
            kind,
        }));
    }

    fn schedule_keepalive_check(&mut self, call_id: &str, now: Instant) {
        self.schedule(
            now + self.config.keepalive_timeout,
            call_id,
            TimerKind::KeepAliveCheck,
        );
    }
}

impl SimCall {
    fn allocate_source(&mut self) -> u32 {
        let id = self.next_source;
        self.next_source += 1;
        id
    }
}

/// True for `http(s)://` URLs whose host is localhost, 127.0.0.0/8 or `[::1]`.
pub fn is_loopback_url(uri: &str) -> bool {
    let Some(rest) = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Credentials in the authority would hide the real host.
    if authority.contains('@') {
        return false;
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn member_view(m: &Member, sequence: Option<i64>) -> ParticipantView<'_> {
    ParticipantView {
        id: &m.id,
        identity: m.identity.clone(),
        source_id: m.source_id,
        muted: m.muted,
        in_lobby: m.state == MemberState::InLobby,
        sequence,
        removed: m.state == MemberState::Left,
    }
}

fn check_client_context(context: Option<&str>) -> Result<(), Refusal> {
    match context {
        Some(c) if c.chars().count() > MAX_CLIENT_CONTEXT => Err(bad_request(format!(
            "clientContext is {} characters; at most {MAX_CLIENT_CONTEXT} are allowed",
            c.chars().count()
        ))),
        _ => Ok(()),
    }
}

fn uuid_from(rng: &mut StdRng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests;
