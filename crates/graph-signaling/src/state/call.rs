//! The state of one call, driven by its notifications (sans-IO).

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use media_session::SourceId;

use super::roster::{ParticipantKey, Roster, RosterChange, SelfIdentity};
use crate::models::{
    Call, CallState, ChangeType, CommsNotification, CommsOperation, Participant, ResourceItem,
    ResultInfo, ToneInfo,
};

/// Something the application should know about a call.
#[derive(Debug, Clone, PartialEq)]
pub enum SignalingEvent {
    /// The call state moved forward.
    StateChanged {
        /// The previous state, if one was known.
        from: Option<CallState>,
        /// The new state.
        to: CallState,
    },
    /// A participant joined the roster. The bot's own entry is not one of them: it comes as
    /// [`SignalingEvent::SelfUpdated`].
    ParticipantJoined(ParticipantKey, Box<Participant>),
    /// A participant's roster entry changed (lobby, mute, streams).
    ParticipantUpdated(ParticipantKey, Box<Participant>),
    /// A participant left, with the `removedState` reason if any.
    ParticipantLeft(ParticipantKey, Option<String>),
    /// The bot's own roster entry appeared or changed (its identity as the service shows it:
    /// application, application instance or guest; its lobby and mute state). Recognised by
    /// `myParticipantId`.
    SelfUpdated(Box<Participant>),
    /// Receive the audio of this source id as this participant's stream.
    StreamBind(SourceId, ParticipantKey),
    /// Stop receiving this source id for this participant.
    StreamUnbind(SourceId, ParticipantKey),
    /// An operation completed or failed.
    OperationFinished(Box<CommsOperation>),
    /// A content sharing session started.
    ContentSharingStarted(String),
    /// A content sharing session changed.
    ContentSharingUpdated(String),
    /// A content sharing session ended.
    ContentSharingEnded(String),
    /// A participant pressed a key (service-hosted media after `subscribeToTone`); each key
    /// once, however often its notification is repeated.
    Tone(ToneInfo),
    /// The call ended; nothing follows. Carries the service's `resultInfo`.
    Terminated(Option<ResultInfo>),
}

/// Order of call states; a notification never moves a call to a lower rank.
fn rank(state: &CallState) -> Option<u8> {
    Some(match state {
        CallState::Incoming => 0,
        CallState::Establishing | CallState::Ringing => 1,
        CallState::Established
        | CallState::Hold
        | CallState::Transferring
        | CallState::TransferAccepted
        | CallState::Redirecting => 2,
        CallState::Terminating => 3,
        CallState::Terminated => 4,
        CallState::Unknown(_) => return None,
    })
}

/// One call's state: call state, roster, stream bindings and content sharing, fed with the
/// call's notifications. Plain data: no I/O, no clock; the caller passes `now`.
#[derive(Debug, Clone)]
pub struct CallStateMachine {
    call_id: String,
    state: Option<CallState>,
    result_info: Option<ResultInfo>,
    roster: Roster,
    me: SelfIdentity,
    sharing: BTreeSet<String>,
    events: VecDeque<SignalingEvent>,
    last_update: Option<Instant>,
    finished: bool,
    scratch: Vec<RosterChange>,
    /// The highest `toneInfo.sequenceId` reported: a redelivered or late key is not reported
    /// twice.
    last_tone: Option<i64>,
    /// The roster key of the bot's own entry, once seen.
    own_key: Option<ParticipantKey>,
}

impl CallStateMachine {
    /// A call known only by id. `bot_app_id` lets the roster recognise the bot's own entry
    /// before `myParticipantId` is known.
    pub fn new(call_id: impl Into<String>, bot_app_id: Option<String>) -> Self {
        let me = SelfIdentity {
            participant_id: None,
            app_id: bot_app_id,
        };
        CallStateMachine {
            call_id: call_id.into(),
            state: None,
            result_info: None,
            roster: Roster::new(me.clone()),
            me,
            sharing: BTreeSet::new(),
            events: VecDeque::new(),
            last_update: None,
            finished: false,
            scratch: Vec::new(),
            last_tone: None,
            own_key: None,
        }
    }

    /// A call from a create/get response (takes its state and `myParticipantId`).
    pub fn from_call(call: &Call, bot_app_id: Option<String>, now: Instant) -> Self {
        let mut m = CallStateMachine::new(call.id.as_deref().unwrap_or_default(), bot_app_id);
        m.apply_call(call, now);
        m
    }

    /// The call id.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The current call state, if one was reported.
    pub fn state(&self) -> Option<&CallState> {
        self.state.as_ref()
    }

    /// True once the call is terminated.
    pub fn is_terminated(&self) -> bool {
        self.state.as_ref().is_some_and(CallState::is_final)
    }

    /// Why the call ended.
    pub fn result_info(&self) -> Option<&ResultInfo> {
        self.result_info.as_ref()
    }

    /// The roster.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// The bot's participant id, once known.
    pub fn my_participant_id(&self) -> Option<&str> {
        self.me.participant_id.as_deref()
    }

    /// Ids of the content sharing sessions in progress.
    pub fn content_sharing_sessions(&self) -> impl Iterator<Item = &str> {
        self.sharing.iter().map(String::as_str)
    }

    /// When the last notification was applied.
    pub fn last_update(&self) -> Option<Instant> {
        self.last_update
    }

    /// Applies one notification about this call. Repeated notifications change nothing.
    pub fn handle_notification(&mut self, n: &CommsNotification, now: Instant) {
        if self.is_terminated() {
            return;
        }
        self.last_update = Some(now);
        let is_roster = n.resource_url.contains("/participants");
        // `deleted` on the call itself, even without resourceData, means the call is gone.
        let on_call_itself = n.call_id().is_some_and(|id| {
            n.resource_url
                .trim_end_matches('/')
                .ends_with(&format!("calls/{id}"))
        });
        if n.change_type == ChangeType::Deleted && on_call_itself && n.items().is_empty() {
            self.move_to(CallState::Terminated);
        }
        let mut full_roster: Vec<&Participant> = Vec::new();
        for item in n.items() {
            match item {
                ResourceItem::Call(call) => {
                    if n.change_type == ChangeType::Deleted && call.state.get().is_none() {
                        self.move_to(CallState::Terminated);
                    }
                    self.apply_call(call, now);
                }
                ResourceItem::Participant(p) => full_roster.push(p),
                ResourceItem::DeltaParticipants(d) => {
                    let mut changes = std::mem::take(&mut self.scratch);
                    self.roster.apply_delta(d, &mut changes);
                    self.emit_changes(&mut changes);
                    self.scratch = changes;
                }
                ResourceItem::Operation(op) => {
                    if n.change_type == ChangeType::Deleted || op.is_finished() {
                        self.events
                            .push_back(SignalingEvent::OperationFinished(op.clone()));
                    }
                }
                ResourceItem::ContentSharingSession(s) => {
                    let Some(id) = s.id.as_deref() else { continue };
                    match n.change_type {
                        ChangeType::Deleted => {
                            if self.sharing.remove(id) {
                                self.events
                                    .push_back(SignalingEvent::ContentSharingEnded(id.to_owned()));
                            }
                        }
                        _ => {
                            if self.sharing.insert(id.to_owned()) {
                                self.events.push_back(SignalingEvent::ContentSharingStarted(
                                    id.to_owned(),
                                ));
                            } else if n.change_type == ChangeType::Updated {
                                self.events.push_back(SignalingEvent::ContentSharingUpdated(
                                    id.to_owned(),
                                ));
                            }
                        }
                    }
                }
                ResourceItem::Other(_) => {}
            }
        }
        // A roster notification lists everyone present, even when that is one participant;
        // an empty array means everyone left.
        if !full_roster.is_empty()
            || (is_roster && n.items().is_empty() && n.resource_data.get().is_some())
        {
            let mut changes = std::mem::take(&mut self.scratch);
            self.roster.apply_full(&full_roster, &mut changes);
            self.emit_changes(&mut changes);
            self.scratch = changes;
        }
        if self.is_terminated() {
            self.finish();
        }
    }

    /// The next event, oldest first.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<SignalingEvent> {
        self.events.pop_front()
    }

    fn apply_call(&mut self, call: &Call, now: Instant) {
        self.last_update = Some(now);
        if self.call_id.is_empty()
            && let Some(id) = call.id.as_deref()
        {
            self.call_id = id.to_owned();
        }
        if let Some(me) = call.my_participant_id.as_deref()
            && self.me.participant_id.as_deref() != Some(me)
        {
            self.me.participant_id = Some(me.to_owned());
            self.roster.set_self(self.me.clone());
        }
        if let Some(r) = call.result_info.get() {
            self.result_info = Some(r.clone());
        }
        if let Some(s) = call.state.get() {
            self.move_to(s.clone());
        }
        if let Some(tone) = call.tone_info.get()
            && !self.is_terminated()
            && self.last_tone.is_none_or(|last| tone.sequence_id > last)
        {
            self.last_tone = Some(tone.sequence_id);
            self.events.push_back(SignalingEvent::Tone(tone.clone()));
        }
        if self.is_terminated() {
            self.finish();
        }
    }

    fn move_to(&mut self, to: CallState) {
        let from = self.state.clone();
        if let Some(cur) = &from {
            if cur.is_final() || *cur == to {
                return;
            }
            // Establishing may arrive after established: never move back.
            if let (Some(a), Some(b)) = (rank(cur), rank(&to))
                && b < a
            {
                return;
            }
        }
        self.state = Some(to.clone());
        self.events
            .push_back(SignalingEvent::StateChanged { from, to });
    }

    /// Releases every binding and reports the end, once.
    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let mut changes = std::mem::take(&mut self.scratch);
        self.roster.clear(&mut changes);
        self.emit_changes(&mut changes);
        self.scratch = changes;
        for id in std::mem::take(&mut self.sharing) {
            self.events
                .push_back(SignalingEvent::ContentSharingEnded(id));
        }
        self.events
            .push_back(SignalingEvent::Terminated(self.result_info.clone()));
    }

    fn emit_changes(&mut self, changes: &mut Vec<RosterChange>) {
        for c in changes.drain(..) {
            let event = match c {
                RosterChange::Joined(k) | RosterChange::Updated(k)
                    if self.roster.get(&k).is_some_and(|e| e.is_self) =>
                {
                    self.own_key = Some(k.clone());
                    let p = self
                        .roster
                        .get(&k)
                        .map(|e| Box::new(e.participant.clone()))
                        .unwrap_or_default();
                    SignalingEvent::SelfUpdated(p)
                }
                RosterChange::Joined(k) => {
                    let p = self
                        .roster
                        .get(&k)
                        .map(|e| Box::new(e.participant.clone()))
                        .unwrap_or_default();
                    SignalingEvent::ParticipantJoined(k, p)
                }
                RosterChange::Updated(k) => {
                    let p = self
                        .roster
                        .get(&k)
                        .map(|e| Box::new(e.participant.clone()))
                        .unwrap_or_default();
                    SignalingEvent::ParticipantUpdated(k, p)
                }
                // The bot leaving its own roster is the call's end, told as such.
                RosterChange::Left(k, _) if self.own_key.as_ref() == Some(&k) => continue,
                RosterChange::Left(k, r) => SignalingEvent::ParticipantLeft(k, r),
                RosterChange::Bind(s, k) => SignalingEvent::StreamBind(s, k),
                RosterChange::Unbind(s, k) => SignalingEvent::StreamUnbind(s, k),
            };
            self.events.push_back(event);
        }
    }
}
