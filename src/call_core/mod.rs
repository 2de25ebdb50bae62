//! The one owner of a call: [`CallCore`], a sans-IO state machine.
//!
//! Everything the bot knows and decides about a call lives here: its signaling state and
//! roster (graph-signaling's [`CallStateMachine`]), which audio sources are bound to the
//! pipeline, the operations the application waits for, keepAlive, the media session's
//! lifecycle, and when the call's resources are released. It does no I/O and reads no clock.
//!
//! # Driving it
//!
//! One door in, one door out, time passed in:
//! - [`CallCore::handle_input`] takes an [`Input`] (a notification, a media event, an
//!   application request, a Graph response, or [`Input::Timeout`]) and the time it happened.
//!   Time that goes backwards is taken as the last time seen.
//! - [`CallCore::poll_output`] yields what to do, in order, until `None`: Graph requests to
//!   execute (their answers come back as [`Input::Response`]), binds and unbinds of audio
//!   sources, commands to the media session, events and replies for the application, and
//!   finally [`Output::Release`].
//! - [`CallCore::poll_timeout`] says when to feed [`Input::Timeout`] next.
//!
//! After every `handle_input`, drain `poll_output` and re-read `poll_timeout`.
//!
//! # Ending
//!
//! A call ends on the service's word (a terminated or deleted notification), or when the
//! service says the call is gone (404 on keepAlive or hang-up was followed by no word within a
//! grace period). Its media session then gets [`CallConfig::media_close_grace`] to close from
//! the service side before the core closes it. Once both signaling and media are over,
//! [`Output::Release`] tells the shell to free everything: nothing of the call outlives it.

mod events;
mod io;
mod timers;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use graph_signaling::models::CallState;
use graph_signaling::models::{
    ChangeType, CommsNotification, CommsOperation, Nullable, OperationStatusKind,
};
use graph_signaling::state::{
    CallStateMachine, OperationMatcher, OperationOutcome, OperationToken, Roster, SignalingEvent,
};
use media_transport::MediaEvent;
use media_transport::protocol::EndReason;

pub use events::CallEvent;
pub use io::{
    ActionError, AppRequest, CallAction, CallRequest, ControlAction, GraphRequest, Input,
    MediaCommand, Output, RequestId, Ticket,
};
use timers::{Timer, TimerTable};

/// Retry delay after a failed keepAlive, so one lost request does not cost a whole interval.
const KEEPALIVE_RETRY: Duration = Duration::from_secs(60);

/// Settings of one call.
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// The bot's app id, to recognise its own roster entry.
    pub app_id: Option<String>,
    /// How often `POST …/keepAlive` is sent. The service ends calls silent for 45 minutes.
    pub keepalive_interval: Duration,
    /// How long an operation's outcome is awaited.
    pub operation_timeout: Duration,
    /// How often media quality is reported while media is connected.
    pub quality_interval: Duration,
    /// After the call ended, how long the service gets to close the media session itself
    /// (it removes the participants' streams first).
    pub media_close_grace: Duration,
    /// After the core closed the media session (or hung up), how long until the call is
    /// released whatever the media session or the service still say.
    pub release_grace: Duration,
    /// Who hosts the call's media.
    pub media: MediaHosting,
}

/// Who hosts a call's media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaHosting {
    /// The bot: its media session carries the call's audio (`appHostedMediaConfig`).
    #[default]
    App,
    /// The calling service: it plays prompts, records responses and reports keys on the bot's
    /// request (`serviceHostedMediaConfig`). No media session, no audio in the bot.
    Service,
}

impl MediaHosting {
    /// `app` or `service`, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaHosting::App => "app",
            MediaHosting::Service => "service",
        }
    }
}

impl Default for CallConfig {
    fn default() -> Self {
        CallConfig {
            app_id: None,
            keepalive_interval: graph_signaling::state::DEFAULT_KEEPALIVE_INTERVAL,
            operation_timeout: Duration::from_secs(60),
            quality_interval: Duration::from_secs(10),
            media_close_grace: Duration::from_secs(2),
            release_grace: Duration::from_secs(10),
            media: MediaHosting::App,
        }
    }
}

/// Who started the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The bot placed it (or joined a meeting).
    Outgoing,
    /// The bot answered it.
    Incoming,
}

impl Direction {
    /// `outgoing` or `incoming`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outgoing => "outgoing",
            Direction::Incoming => "incoming",
        }
    }
}

/// Where the call's media session is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MediaPhase {
    /// Registered; the service has not connected yet.
    Pending,
    /// Media flows.
    Connected,
    /// Over.
    Ended,
}

/// A Graph request in flight.
#[derive(Debug)]
enum InFlight {
    KeepAlive,
    HangUp(Option<Ticket>),
    Action(OperationToken, Ticket),
    /// A request answered by its HTTP status alone.
    Control(Ticket),
}

/// One call, owned. See the [module docs](self) for how to drive it.
#[derive(Debug)]
pub struct CallCore {
    call_id: String,
    direction: Direction,
    group: bool,
    config: CallConfig,
    signaling: CallStateMachine,
    operations: OperationMatcher,
    waiting: HashMap<OperationToken, Ticket>,
    in_flight: HashMap<RequestId, InFlight>,
    next_request: u64,
    timers: TimerTable,
    media: MediaPhase,
    keepalive_in_flight: bool,
    hung_up: bool,
    ended: bool,
    released: bool,
    out: VecDeque<Output>,
    now: Instant,
}

impl CallCore {
    /// The core of a call the service knows by `call_id`, created at `now` (placed and
    /// accepted, or answered). `group` allows inviting several participants at once. Its media
    /// session is registered and waits for the service.
    pub fn new(
        call_id: impl Into<String>,
        direction: Direction,
        group: bool,
        config: CallConfig,
        now: Instant,
    ) -> CallCore {
        let call_id = call_id.into();
        let mut timers = TimerTable::default();
        timers.set(Timer::KeepAlive, now + config.keepalive_interval);
        // Service-hosted media has no session of the bot's to wait for or to close.
        let media = match config.media {
            MediaHosting::App => MediaPhase::Pending,
            MediaHosting::Service => MediaPhase::Ended,
        };
        CallCore {
            signaling: CallStateMachine::new(call_id.clone(), config.app_id.clone()),
            call_id,
            direction,
            group,
            config,
            operations: OperationMatcher::new(),
            waiting: HashMap::new(),
            in_flight: HashMap::new(),
            next_request: 0,
            timers,
            media,
            keepalive_in_flight: false,
            hung_up: false,
            ended: false,
            released: false,
            out: VecDeque::new(),
            now,
        }
    }

    // ---- getters ----

    /// The Graph call id.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Who started the call.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The call state the service last reported.
    pub fn state(&self) -> Option<&CallState> {
        self.signaling.state()
    }

    /// The roster (the bot's own entry included) and which sources are bound to whom.
    pub fn roster(&self) -> &Roster {
        self.signaling.roster()
    }

    /// True once the call ended on the signaling side.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// True once [`Output::Release`] was emitted.
    pub fn is_released(&self) -> bool {
        self.released
    }

    /// True while the media path is connected.
    pub fn media_connected(&self) -> bool {
        self.media == MediaPhase::Connected
    }

    /// Application requests whose outcome is still awaited.
    pub fn pending_requests(&self) -> usize {
        self.waiting.len() + self.in_flight.len()
    }

    // ---- the doors ----

    /// Feeds one input that happened at `now`.
    pub fn handle_input(&mut self, input: Input, now: Instant) {
        if self.released {
            return;
        }
        self.now = now.max(self.now);
        match input {
            Input::Notification(n) => self.on_notification(&n),
            Input::Media(event) => self.on_media(event),
            Input::App(request) => self.on_app(request),
            Input::Response { id, result } => self.on_response(id, result),
            Input::Timeout => self.on_timeout(),
        }
        self.timers
            .set_opt(Timer::Operation, self.operations.poll_timeout());
        if self.ended && self.media == MediaPhase::Ended {
            self.release();
        }
    }

    /// The next thing to do, oldest first.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Input::Timeout`] is next due; `None` once released.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.released {
            None
        } else {
            self.timers.next()
        }
    }

    // ---- inputs ----

    fn on_notification(&mut self, n: &CommsNotification) {
        if n.call_id() != Some(self.call_id.as_str()) {
            return;
        }
        self.signaling.handle_notification(n, self.now);
        self.drain_signaling();
    }

    fn drain_signaling(&mut self) {
        while let Some(event) = self.signaling.poll_event() {
            let out = match event {
                SignalingEvent::StateChanged { from, to } => CallEvent::StateChanged { from, to },
                SignalingEvent::ParticipantJoined(k, p) => CallEvent::ParticipantJoined(k, p),
                SignalingEvent::ParticipantUpdated(k, p) => CallEvent::ParticipantUpdated(k, p),
                SignalingEvent::ParticipantLeft(k, why) => CallEvent::ParticipantLeft(k, why),
                SignalingEvent::SelfUpdated(p) => CallEvent::SelfUpdated(p),
                SignalingEvent::ContentSharingStarted(id) => CallEvent::ContentSharingStarted(id),
                SignalingEvent::ContentSharingUpdated(id) => CallEvent::ContentSharingUpdated(id),
                SignalingEvent::ContentSharingEnded(id) => CallEvent::ContentSharingEnded(id),
                SignalingEvent::StreamBind(source, _) => {
                    if self.config.media == MediaHosting::App {
                        self.out.push_back(Output::Bind(source));
                    }
                    continue;
                }
                SignalingEvent::StreamUnbind(source, _) => {
                    if self.config.media == MediaHosting::App {
                        self.out.push_back(Output::Unbind(source));
                    }
                    continue;
                }
                SignalingEvent::Tone(tone) => CallEvent::Tone(tone),
                SignalingEvent::OperationFinished(op) => {
                    if self
                        .operations
                        .handle_operation(&self.call_id, &op)
                        .is_some()
                    {
                        self.resolve_outcomes();
                    }
                    CallEvent::OperationFinished(op)
                }
                SignalingEvent::Terminated(info) => {
                    self.on_ended();
                    CallEvent::Terminated(info)
                }
            };
            self.out.push_back(Output::Event(out));
        }
    }

    fn on_media(&mut self, event: MediaEvent) {
        match event {
            MediaEvent::MediaConnected if self.media == MediaPhase::Pending => {
                self.media = MediaPhase::Connected;
                self.out
                    .push_back(Output::Media(MediaCommand::SetSending(true)));
                self.out.push_back(Output::Event(CallEvent::MediaConnected));
                self.timers
                    .set(Timer::Quality, self.now + self.config.quality_interval);
            }
            MediaEvent::MediaInterrupted if self.media == MediaPhase::Connected => {
                self.out
                    .push_back(Output::Event(CallEvent::MediaInterrupted));
            }
            MediaEvent::MediaResumed if self.media == MediaPhase::Connected => {
                self.out.push_back(Output::Event(CallEvent::MediaResumed));
            }
            MediaEvent::Dtmf { source, digit } => {
                self.out
                    .push_back(Output::Event(CallEvent::Dtmf { source, digit }));
            }
            MediaEvent::StreamFailed { source, detail } => {
                self.out
                    .push_back(Output::Event(CallEvent::MediaStreamFailed {
                        source,
                        detail,
                    }));
            }
            MediaEvent::Ended(reason) if self.media != MediaPhase::Ended => {
                self.media = MediaPhase::Ended;
                self.timers.stop(Timer::Quality);
                self.timers.stop(Timer::MediaClose);
                self.out
                    .push_back(Output::Media(MediaCommand::SetSending(false)));
                let never = reason == EndReason::NeverConnected;
                self.out
                    .push_back(Output::Event(CallEvent::MediaEnded(reason)));
                if never && !self.ended && !self.hung_up {
                    // Nobody will ever connect (real Graph's media processor cannot): end the
                    // call rather than leave it open and silent.
                    self.send(CallRequest::HangUp, InFlight::HangUp(None));
                }
            }
            // Acceptance and stream negotiation are the transport's business: which sources
            // are bound is decided by the roster.
            _ => {}
        }
    }

    fn on_app(&mut self, request: AppRequest) {
        match request {
            AppRequest::HangUp(ticket) => {
                if self.ended {
                    self.reply(ticket, Ok(None));
                } else {
                    self.send(CallRequest::HangUp, InFlight::HangUp(Some(ticket)));
                }
            }
            AppRequest::Action(ticket, action) => {
                if self.ended {
                    self.reply(ticket, Err(ActionError::CallEnded));
                    return;
                }
                if action.needs_service_hosted_media() && self.config.media != MediaHosting::Service
                {
                    // The service would refuse it; say why without a round trip.
                    let name = action.name();
                    self.reply(ticket, Err(ActionError::NeedsServiceHostedMedia(name)));
                    return;
                }
                let context = format!("mediabot-{}-{}", self.call_id, self.next_request);
                let deadline = self.now + self.config.operation_timeout;
                let token =
                    self.operations
                        .register(&self.call_id, None, Some(context.clone()), deadline);
                self.waiting.insert(token, ticket);
                let kind = match action {
                    CallAction::Invite(participants) => CallRequest::Invite {
                        participants,
                        client_context: context,
                        group: self.group,
                    },
                    CallAction::MuteSelf => CallRequest::MuteSelf {
                        client_context: context,
                    },
                    CallAction::UnmuteSelf => CallRequest::UnmuteSelf {
                        client_context: context,
                    },
                    CallAction::UpdateRecordingStatus(status) => {
                        CallRequest::UpdateRecordingStatus {
                            status,
                            client_context: context,
                        }
                    }
                    CallAction::PlayPrompt(prompts) => CallRequest::PlayPrompt {
                        prompts,
                        client_context: context,
                    },
                    CallAction::RecordResponse(body) => CallRequest::RecordResponse {
                        body,
                        client_context: context,
                    },
                    CallAction::SubscribeToTone => CallRequest::SubscribeToTone {
                        client_context: context,
                    },
                    CallAction::CancelMediaProcessing => CallRequest::CancelMediaProcessing {
                        client_context: context,
                    },
                    CallAction::SendDtmfTones { tones, delay_ms } => CallRequest::SendDtmfTones {
                        tones,
                        delay_ms,
                        client_context: context,
                    },
                    CallAction::MuteParticipant(participant_id) => CallRequest::MuteParticipant {
                        participant_id,
                        client_context: context,
                    },
                    CallAction::StartHoldMusic {
                        participant_id,
                        custom_prompt,
                    } => CallRequest::StartHoldMusic {
                        participant_id,
                        custom_prompt,
                        client_context: context,
                    },
                    CallAction::StopHoldMusic(participant_id) => CallRequest::StopHoldMusic {
                        participant_id,
                        client_context: context,
                    },
                    CallAction::AddLargeGalleryView => CallRequest::AddLargeGalleryView {
                        client_context: context,
                    },
                };
                self.send(kind, InFlight::Action(token, ticket));
            }
            AppRequest::Control(ticket, action) => {
                if self.ended {
                    self.reply(ticket, Err(ActionError::CallEnded));
                    return;
                }
                let kind = match action {
                    ControlAction::Transfer { target, transferee } => {
                        CallRequest::Transfer { target, transferee }
                    }
                    ControlAction::RemoveParticipant(pid) => CallRequest::RemoveParticipant(pid),
                    ControlAction::ChangeScreenSharingRole(role) => {
                        CallRequest::ChangeScreenSharingRole(role)
                    }
                };
                self.send(kind, InFlight::Control(ticket));
            }
            AppRequest::SendDtmf { digit, duration } => {
                if self.media == MediaPhase::Connected {
                    self.out
                        .push_back(Output::Media(MediaCommand::SendDtmf(digit, duration)));
                }
            }
        }
    }

    fn on_response(
        &mut self,
        id: RequestId,
        result: Result<Option<CommsOperation>, graph_signaling::client::GraphError>,
    ) {
        let Some(what) = self.in_flight.remove(&id) else {
            return;
        };
        match what {
            InFlight::KeepAlive => {
                self.keepalive_in_flight = false;
                match result {
                    Ok(_) => self.arm_keepalive(self.config.keepalive_interval),
                    // The service no longer knows the call: it is over.
                    Err(e) if e.status() == Some(404) => self.end_locally(),
                    Err(_) => {
                        self.arm_keepalive(KEEPALIVE_RETRY.min(self.config.keepalive_interval))
                    }
                }
            }
            InFlight::HangUp(ticket) => match result {
                Ok(_) => self.after_hang_up(ticket),
                // Already gone is what was asked for.
                Err(e) if e.status() == Some(404) => self.after_hang_up(ticket),
                Err(e) => {
                    if let Some(t) = ticket {
                        self.reply(t, Err(ActionError::Graph(e)));
                    }
                }
            },
            InFlight::Control(ticket) => {
                let result = result.map(|_| None).map_err(ActionError::Graph);
                self.reply(ticket, result);
            }
            // Answered only while still awaited: the outcome notification (or the call's end)
            // may have come first.
            InFlight::Action(token, ticket) => match result {
                Ok(Some(op)) if op.is_finished() => {
                    self.operations.cancel(token);
                    if self.waiting.remove(&token).is_some() {
                        self.reply(ticket, finished(op));
                    }
                }
                Ok(Some(op)) => {
                    if let Some(op_id) = op.id.get() {
                        self.operations.set_operation_id(token, op_id.clone());
                    }
                }
                // No body: the outcome notification is matched by clientContext.
                Ok(None) => {}
                Err(e) => {
                    self.operations.cancel(token);
                    if self.waiting.remove(&token).is_some() {
                        self.reply(ticket, Err(ActionError::Graph(e)));
                    }
                }
            },
        }
    }

    fn on_timeout(&mut self) {
        let now = self.now;
        for timer in self.timers.expire(now) {
            match timer {
                Timer::KeepAlive => {
                    if !self.ended && !self.keepalive_in_flight {
                        self.keepalive_in_flight = true;
                        self.send(CallRequest::KeepAlive, InFlight::KeepAlive);
                    }
                }
                Timer::Operation => {
                    self.operations.handle_timeout(now);
                    self.resolve_outcomes();
                }
                Timer::Quality => {
                    if self.media == MediaPhase::Connected {
                        self.out
                            .push_back(Output::Media(MediaCommand::ReportQuality));
                        self.timers
                            .set(Timer::Quality, now + self.config.quality_interval);
                    }
                }
                Timer::MediaClose => self.close_media("call ended"),
                Timer::Release => {
                    // Nothing more will come that matters: finish whatever is still open.
                    if !self.ended {
                        self.end_locally();
                    }
                    if self.media != MediaPhase::Ended {
                        self.close_media("call released");
                        self.media = MediaPhase::Ended;
                    }
                }
            }
        }
    }

    // ---- helpers ----

    fn send(&mut self, kind: CallRequest, what: InFlight) {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.in_flight.insert(id, what);
        self.out.push_back(Output::Request(GraphRequest {
            id,
            call_id: self.call_id.clone(),
            kind,
        }));
    }

    fn reply(&mut self, ticket: Ticket, result: Result<Option<CommsOperation>, ActionError>) {
        self.out.push_back(Output::Reply { ticket, result });
    }

    fn arm_keepalive(&mut self, after: Duration) {
        if !self.ended {
            self.timers.set(Timer::KeepAlive, self.now + after);
        }
    }

    fn resolve_outcomes(&mut self) {
        while let Some((token, outcome)) = self.operations.poll_outcome() {
            self.resolve(token, outcome);
        }
    }

    fn resolve(&mut self, token: OperationToken, outcome: OperationOutcome) {
        let Some(ticket) = self.waiting.remove(&token) else {
            return;
        };
        let result = match outcome {
            OperationOutcome::Finished(op) => finished(*op),
            OperationOutcome::TimedOut => Err(ActionError::TimedOut),
        };
        self.reply(ticket, result);
    }

    /// The hang-up was taken: the service ends the call; if it never says so, the call is
    /// released anyway after the grace.
    fn after_hang_up(&mut self, ticket: Option<Ticket>) {
        self.hung_up = true;
        if let Some(t) = ticket {
            self.reply(t, Ok(None));
        }
        if self.timers.get(Timer::Release).is_none() {
            self.timers
                .set(Timer::Release, self.now + self.config.release_grace);
        }
    }

    /// The call ended on the signaling side (the state machine reported `Terminated`).
    fn on_ended(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.timers.stop(Timer::KeepAlive);
        // Nothing will resolve what is still awaited.
        let waiting: Vec<(OperationToken, Ticket)> = self.waiting.drain().collect();
        for (token, ticket) in waiting {
            self.operations.cancel(token);
            self.reply(ticket, Err(ActionError::CallEnded));
        }
        if self.media != MediaPhase::Ended && self.timers.get(Timer::MediaClose).is_none() {
            self.timers
                .set(Timer::MediaClose, self.now + self.config.media_close_grace);
        }
    }

    /// Ends the call as if the service had deleted it: the roster is released the same way.
    fn end_locally(&mut self) {
        self.signaling
            .handle_notification(&gone(&self.call_id), self.now);
        self.drain_signaling();
    }

    fn close_media(&mut self, reason: &str) {
        if self.media == MediaPhase::Ended {
            return;
        }
        self.out
            .push_back(Output::Media(MediaCommand::Close(reason.to_owned())));
        if self.timers.get(Timer::Release).is_none() {
            self.timers
                .set(Timer::Release, self.now + self.config.release_grace);
        }
    }

    fn release(&mut self) {
        if self.released {
            return;
        }
        for (_, ticket) in self.waiting.drain() {
            self.out.push_back(Output::Reply {
                ticket,
                result: Err(ActionError::CallEnded),
            });
        }
        // Actions in flight are among `waiting`; a hang-up in flight has what it asked for.
        for (_, what) in self.in_flight.drain() {
            let (ticket, result) = match what {
                InFlight::HangUp(Some(ticket)) => (ticket, Ok(None)),
                InFlight::Control(ticket) => (ticket, Err(ActionError::CallEnded)),
                _ => continue,
            };
            self.out.push_back(Output::Reply { ticket, result });
        }
        self.timers.clear();
        self.released = true;
        self.out.push_back(Output::Release);
    }
}

fn finished(op: CommsOperation) -> Result<Option<CommsOperation>, ActionError> {
    match op.status.get().map(|s| s.kind()) {
        Some(OperationStatusKind::Failed) => Err(ActionError::OperationFailed(Box::new(op))),
        _ => Ok(Some(op)),
    }
}

/// The notification the service sends when `call_id` is deleted (no resource data): fed to a
/// core, it ends the call the way the service would.
pub fn gone(call_id: &str) -> CommsNotification {
    CommsNotification {
        odata_type: None,
        change_type: ChangeType::Deleted,
        resource_url: format!("/communications/calls/{call_id}"),
        resource: Nullable::Absent,
        callback_uri: Nullable::Absent,
        resource_data: Nullable::Absent,
        extra: Default::default(),
    }
}

/// True when `n` offers a new incoming call (a call resource in state `incoming`): what the
/// bot answers or rejects before any [`CallCore`] exists for it.
pub fn is_incoming_offer(n: &CommsNotification) -> bool {
    n.offers_new_call()
}
