//! A call as the bot places and drives it: creating a peer-to-peer call, a group call or a
//! meeting join, reading it back, keeping it alive and hanging up; and what every path shares,
//! the state changes and the one way a call ends.

use std::time::{Duration, Instant};

use graph_signaling::models::{
    Call, CallState, ChatInfo, Identity, IdentitySet, JoinMeetingIdMeetingInfo, MediaConfig,
    MeetingInfo,
};
use media_session::BlobConfig;
use serde::Serialize;
use serde_json::{Value, json};

use super::notify::SimEvent;
use super::refusal::Refusal;
use super::roster::{Member, MemberState};
use super::sharing::Share;
use super::timers::TimerKind;
use super::{MAX_GROUP_PARTICIPANTS, Sim, payloads};

/// What kind of call it is, which decides who may join and when it ends on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CallKind {
    /// The bot and one other participant; it ends when the other one leaves.
    PeerToPeer,
    /// Several participants (or one, in a chat).
    Group,
    /// A Teams meeting the bot joined; its attendees are the scenario's users.
    Meeting,
}

/// One call the service holds, live or ended.
#[derive(Debug)]
pub(super) struct SimCall {
    pub(super) id: String,
    pub(super) kind: CallKind,
    pub(super) callback_uri: String,
    pub(super) state: CallState,
    /// The call resource as created, kept for GET; `state` is patched in on read.
    pub(super) resource: Value,
    pub(super) delta_roster: bool,
    pub(super) roster_sequence: i64,
    pub(super) bot_id: String,
    pub(super) bot_source: u32,
    pub(super) bot_muted: bool,
    pub(super) members: Vec<Member>,
    next_source: u32,
    pub(super) last_keepalive: Instant,
    pub(super) blob: Option<BlobConfig>,
    /// An incoming call not yet answered.
    pub(super) awaiting_answer: bool,
    /// The bot called from an application instance with a number, so it may dial phones.
    pub(super) can_dial_phones: bool,
    /// The bot joined a meeting as a guest and waits in the lobby until admitted.
    pub(super) bot_in_lobby: bool,
    /// A notification of this call has been posted (the legacy-format fault applies to the
    /// first one only).
    pub(super) notified: bool,
    /// When the call was established: the start of the clock people's talk turns follow in a
    /// call whose media the service hosts.
    pub(super) established_at: Option<Instant>,
    /// The bot's identity in rosters: as its request gave it (a guest, an application
    /// instance), else the application.
    pub(super) bot_identity: Value,
    /// The screen shared in the call now.
    pub(super) sharing: Option<Share>,
    /// The source id of the large gallery video the bot asked for.
    pub(super) large_gallery: Option<u32>,
}

impl SimCall {
    /// A call in `state` with nobody but the bot, whose audio source is the first one.
    pub(super) fn new(
        id: String,
        kind: CallKind,
        callback_uri: String,
        state: CallState,
        resource: Value,
        bot_id: String,
        now: Instant,
    ) -> SimCall {
        let mut call = SimCall {
            id,
            kind,
            callback_uri,
            state,
            resource,
            delta_roster: false,
            roster_sequence: 0,
            bot_id,
            bot_source: 0,
            bot_muted: false,
            members: Vec::new(),
            next_source: 1,
            last_keepalive: now,
            blob: None,
            awaiting_answer: false,
            can_dial_phones: false,
            bot_in_lobby: false,
            notified: false,
            established_at: None,
            bot_identity: Value::Null,
            sharing: None,
            large_gallery: None,
        };
        call.bot_source = call.allocate_source();
        call
    }

    pub(super) fn allocate_source(&mut self) -> u32 {
        let id = self.next_source;
        self.next_source += 1;
        id
    }

    /// Adds `member` with the next free audio source; returns its index.
    pub(super) fn add_member(&mut self, mut member: Member) -> usize {
        member.source_id = self.allocate_source();
        self.members.push(member);
        self.members.len() - 1
    }

    /// The call has ended; nothing about it changes any more.
    pub(super) fn has_ended(&self) -> bool {
        self.state.is_final()
    }

    /// Members in the call or its lobby.
    pub(super) fn in_call(&self) -> impl Iterator<Item = &Member> {
        self.members
            .iter()
            .filter(|m| matches!(m.state, MemberState::Present | MemberState::InLobby))
    }
}

/// How a call ends, each with the `resultInfo` Graph reports for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallEnd {
    /// The bot hung up.
    HungUp,
    /// The bot sent no keepAlive within the timeout.
    NotKeptAlive,
    /// A peer-to-peer call's other participant left.
    OthersLeft,
    /// The bot rejected an incoming call.
    Rejected,
    /// The bot redirected an incoming call.
    Redirected,
    /// The bot transferred the call.
    Transferred,
    /// The callee of a peer-to-peer call declined.
    Declined,
    /// The bot let an incoming call ring out.
    Unanswered,
    /// The bot turned this peer-to-peer call into a group call (`replacesCallId`): its other
    /// party moved there.
    Replaced,
}

impl CallEnd {
    /// Who ended the call: `bot`, `user` or `service`.
    pub fn ended_by(self) -> &'static str {
        match self {
            CallEnd::HungUp
            | CallEnd::Rejected
            | CallEnd::Redirected
            | CallEnd::Transferred
            | CallEnd::Replaced => "bot",
            CallEnd::OthersLeft | CallEnd::Declined => "user",
            CallEnd::NotKeptAlive | CallEnd::Unanswered => "service",
        }
    }

    /// `resultInfo.code`.
    pub fn code(self) -> i64 {
        match self {
            CallEnd::NotKeptAlive | CallEnd::Unanswered => 408,
            CallEnd::Declined => 603,
            _ => 200,
        }
    }

    /// `resultInfo.subcode`.
    pub fn subcode(self) -> i64 {
        match self {
            CallEnd::HungUp => 5001,
            CallEnd::OthersLeft | CallEnd::Rejected => 5002,
            CallEnd::Redirected => 5003,
            CallEnd::Transferred => 5004,
            // Graph documents no code for this; the sim's own, next to the others.
            CallEnd::Replaced => 5005,
            CallEnd::NotKeptAlive => 8537,
            CallEnd::Declined | CallEnd::Unanswered => 0,
        }
    }

    fn message(&self) -> &str {
        match self {
            CallEnd::HungUp => "The conversation has ended.",
            CallEnd::NotKeptAlive => "The call was not kept alive.",
            CallEnd::OthersLeft => "All other participants left.",
            CallEnd::Rejected => "The call was rejected by the bot.",
            CallEnd::Redirected => "The call was redirected.",
            CallEnd::Transferred => "The call was transferred.",
            CallEnd::Declined => "The callee declined the call.",
            CallEnd::Unanswered => "The bot did not answer in time.",
            CallEnd::Replaced => "The call was replaced by a group call.",
        }
    }
}

/// Where a call's media is processed, as an action requires it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hosting {
    /// By the bot (`appHostedMediaConfig`).
    App,
    /// By the calling service (`serviceHostedMediaConfig`).
    Service,
}

impl Sim {
    /// The call `id` if it has not ended.
    pub(super) fn live_call(&self, id: &str) -> Result<&SimCall, Refusal> {
        self.calls
            .get(id)
            .filter(|c| !c.has_ended())
            .ok_or_else(|| Refusal::no_call(id))
    }

    /// The live call `id`, refused 400 unless it is established with its media hosted as
    /// `action` needs (the service's media actions and the bot's own video views each work on
    /// one kind only).
    pub(super) fn established_call_hosted(
        &self,
        id: &str,
        action: &str,
        hosting: Hosting,
    ) -> Result<&SimCall, Refusal> {
        let call = self.live_call(id)?;
        match (hosting, call.blob.is_some()) {
            (Hosting::App, false) => {
                return Err(Refusal::bad_request(format!(
                    "{action} needs a call with app-hosted media"
                )));
            }
            (Hosting::Service, true) => {
                return Err(Refusal::bad_request(format!(
                    "{action} is supported only for calls with serviceHostedMediaConfig"
                )));
            }
            _ => {}
        }
        if call.state.as_str() != "established" {
            return Err(Refusal::bad_request(format!(
                "{action} needs an established call; the call is {}",
                call.state.as_str()
            )));
        }
        Ok(call)
    }

    /// How rosters show the bot of a call it placed as `source`: a guest by the name it gave,
    /// an application instance with its number, otherwise the application.
    fn bot_identity_for(&self, source: Option<&IdentitySet>) -> Value {
        let Some(set) = source else {
            return payloads::application_identity(&self.config.app_id, "Bot");
        };
        if let Some(guest) = set.guest.get() {
            return json!({
                "@odata.type": "#microsoft.graph.identitySet",
                "guest": {
                    "@odata.type": "#microsoft.graph.identity",
                    "id": guest.id.as_deref().unwrap_or(&self.config.app_id),
                    "displayName": guest.display_name.get(),
                },
            });
        }
        if let Some(instance) = set.application_instance.get() {
            let id = instance.id.as_deref().unwrap_or_default();
            let number = self
                .config
                .application_instances
                .iter()
                .find(|a| a.id == id)
                .map(|a| a.phone_number.clone());
            let mut v = json!({
                "@odata.type": "#microsoft.graph.identitySet",
                "applicationInstance": {
                    "@odata.type": "#microsoft.graph.identity",
                    "id": id,
                    "displayName": instance.display_name.get().map_or("Bot", String::as_str),
                },
            });
            if let Some(number) = number {
                v["phone"] = json!({"@odata.type": "#microsoft.graph.identity", "id": number});
            }
            return v;
        }
        payloads::application_identity(&self.config.app_id, "Bot")
    }

    /// Creates a call from the bot's request; returns its `Location` and resource.
    pub(super) fn create_call(
        &mut self,
        now: Instant,
        body: &[u8],
    ) -> Result<(String, Value), Refusal> {
        let call: Call = serde_json::from_slice(body)
            .map_err(|e| Refusal::bad_request(format!("the call body is not valid: {e}")))?;
        let callback_uri = call
            .callback_uri
            .get()
            .cloned()
            .ok_or_else(|| Refusal::bad_request("callbackUri is required"))?;
        self.check_callback(&callback_uri)?;
        let blob = match call.media_config.get() {
            Some(MediaConfig::AppHosted(app)) => {
                let text = app
                    .blob
                    .as_deref()
                    .ok_or_else(|| Refusal::bad_request("appHostedMediaConfig needs a blob"))?;
                Some(
                    media_session::parse(text)
                        .map_err(|e| Refusal::bad_request(format!("mediaConfig.blob: {e}")))?,
                )
            }
            Some(_) => None,
            None => return Err(Refusal::bad_request("mediaConfig is required")),
        };
        if let Some(info) = call.meeting_info.get() {
            self.check_meeting(info, call.chat_info.get())?;
        }
        let source_identity = call.source.get().and_then(|s| s.identity.get());
        if let Some(instance) = source_identity.and_then(|i| i.application_instance.get()) {
            self.check_application_instance(instance)?;
        }
        if let Some(guest) = source_identity.and_then(|i| i.guest.get()) {
            // Graph's guest joins are for meetings only, and a guest is known by their name.
            if call.meeting_info.get().is_none() {
                return Err(Refusal::bad_request(
                    "a guest identity can only join a meeting (meetingInfo is required)",
                ));
            }
            if guest.display_name.get().is_none_or(|n| n.trim().is_empty()) {
                return Err(Refusal::bad_request("a guest identity needs a displayName"));
            }
        }
        let targets = call.targets.get().map(Vec::as_slice).unwrap_or_default();
        let kind = if call.meeting_info.get().is_some() {
            CallKind::Meeting
        } else if targets.is_empty() {
            return Err(Refusal::bad_request("a call needs targets or meetingInfo"));
        } else if targets.len() > MAX_GROUP_PARTICIPANTS {
            return Err(Refusal::bad_request(format!(
                "a group call supports at most {MAX_GROUP_PARTICIPANTS} participants, {} were requested",
                targets.len()
            )));
        } else if targets.len() == 1 && call.chat_info.get().is_none() {
            CallKind::PeerToPeer
        } else {
            CallKind::Group
        };
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
        let id = self.new_id();
        let bot_id = self.new_id();
        let mut resource =
            serde_json::to_value(&call).map_err(|e| Refusal::bad_request(e.to_string()))?;
        resource["id"] = json!(id);
        resource["state"] = json!(CallState::Establishing);
        resource["direction"] = json!("outgoing");
        resource["callChainId"] = json!(self.new_id());
        resource["tenantId"] = json!(self.config.tenant_id);
        resource["myParticipantId"] = json!(bot_id);
        resource["@odata.type"] = json!("#microsoft.graph.call");
        let mut sim_call = SimCall::new(
            id.clone(),
            kind,
            callback_uri,
            CallState::Establishing,
            resource.clone(),
            bot_id,
            now,
        );
        sim_call.delta_roster = call
            .call_options
            .get()
            .and_then(|o| o.is_delta_roster_enabled.get().copied())
            .unwrap_or(false);
        sim_call.blob = blob;
        sim_call.bot_identity = self.bot_identity_for(source_identity);
        sim_call.can_dial_phones = can_dial_phones;
        sim_call.bot_in_lobby = bot_in_lobby;
        for m in members {
            sim_call.add_member(m);
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
        Ok((location, resource))
    }

    /// Checks a meeting join against the scenario's meeting, if it declares one. By
    /// `joinMeetingId`: an unknown id is 404 and a missing or wrong passcode 403. By organizer:
    /// `chatInfo.threadId` and the organizer's user id are required (400 without, whether or
    /// not a meeting is declared); another thread, organizer or channel post is 404. Token
    /// joins, and any join when no meeting is declared, are accepted.
    fn check_meeting(&self, info: &MeetingInfo, chat: Option<&ChatInfo>) -> Result<(), Refusal> {
        match info {
            MeetingInfo::JoinMeetingId(join) => self.check_join_meeting_id(join),
            MeetingInfo::Organizer(by) => {
                let organizer = by
                    .organizer
                    .get()
                    .and_then(|o| o.user.get())
                    .and_then(|u| u.id.get())
                    .ok_or_else(|| {
                        Refusal::bad_request("organizerMeetingInfo needs organizer.user.id")
                    })?;
                let thread = chat.and_then(|c| c.thread_id.get()).ok_or_else(|| {
                    Refusal::bad_request("joining a meeting by organizer needs chatInfo.threadId")
                })?;
                let Some(meeting) = &self.scenario.meeting else {
                    return Ok(());
                };
                let same_organizer = self
                    .meeting_organizer
                    .as_deref()
                    .is_some_and(|o| o.eq_ignore_ascii_case(organizer));
                // A channel meeting is one post among the channel's: the join must name it.
                let same_post = !meeting.is_channel()
                    || chat.is_some_and(|c| {
                        [&c.reply_chain_message_id, &c.message_id]
                            .iter()
                            .any(|m| m.get().map(String::as_str) == Some(meeting.message()))
                    });
                if *thread == meeting.thread() && same_organizer && same_post {
                    Ok(())
                } else {
                    let shown = thread.chars().take(64).collect();
                    Err(Refusal::NoMeetingThread { shown })
                }
            }
            _ => Ok(()),
        }
    }

    fn check_join_meeting_id(&self, join: &JoinMeetingIdMeetingInfo) -> Result<(), Refusal> {
        let Some(meeting) = &self.scenario.meeting else {
            return Ok(());
        };
        let id = join.join_meeting_id.get().map(String::as_str);
        if id != Some(meeting.join_meeting_id.as_str()) {
            let shown = id.unwrap_or_default().chars().take(64).collect();
            return Err(Refusal::NoMeeting { shown });
        }
        match (&meeting.passcode, join.passcode.get()) {
            (Some(expected), Some(given)) if expected == given => Ok(()),
            (Some(_), Some(_)) => Err(Refusal::WrongPasscode),
            (Some(_), None) => Err(Refusal::PasscodeRequired),
            // A meeting without a passcode ignores one given anyway.
            (None, _) => Ok(()),
        }
    }

    /// A call from an application instance must name one linked to the app (Graph matches it
    /// against the app of the token).
    fn check_application_instance(&self, instance: &Identity) -> Result<(), Refusal> {
        let id = instance.id.get().map(String::as_str).unwrap_or_default();
        if self
            .config
            .application_instances
            .iter()
            .any(|known| known.id.eq_ignore_ascii_case(id))
        {
            Ok(())
        } else {
            let shown = id.chars().take(64).collect();
            Err(Refusal::UnknownApplicationInstance { shown })
        }
    }

    /// Refuses callbacks off loopback unless the configuration allows them.
    pub(super) fn check_callback(&self, uri: &str) -> Result<(), Refusal> {
        if self.config.allow_remote_callbacks || is_loopback_url(uri) {
            Ok(())
        } else {
            Err(Refusal::bad_request(format!(
                "callbackUri {uri:?} is not on loopback; graph-sim posts only to 127.0.0.0/8, ::1 or localhost unless allow_remote_callbacks is set"
            )))
        }
    }

    /// The call resource with its current state; ended calls can still be read.
    pub(super) fn get_call(&self, id: &str) -> Result<Value, Refusal> {
        let call = self.calls.get(id).ok_or_else(|| Refusal::no_call(id))?;
        let mut resource = call.resource.clone();
        resource["state"] = json!(call.state);
        Ok(resource)
    }

    pub(super) fn hang_up(&mut self, now: Instant, id: &str) -> Result<(), Refusal> {
        self.live_call(id)?;
        self.terminate(now, id, CallEnd::HungUp);
        Ok(())
    }

    pub(super) fn keep_alive(&mut self, now: Instant, id: &str) -> Result<(), Refusal> {
        self.live_call(id)?;
        if let Some(call) = self.calls.get_mut(id) {
            call.last_keepalive = now;
        }
        Ok(())
    }

    /// The keepAlive check fired: end the call if it was not kept alive since, or look again
    /// when it next could expire.
    pub(super) fn check_keepalive(&mut self, now: Instant, call_id: &str) {
        let Some(call) = self.calls.get(call_id) else {
            return;
        };
        let deadline = call.last_keepalive + self.config.keepalive_timeout;
        if deadline <= now {
            self.terminate(now, call_id, CallEnd::NotKeptAlive);
        } else {
            self.schedule(deadline, call_id, TimerKind::KeepAliveCheck);
        }
    }

    /// The setup's `establishing` step is due.
    pub(super) fn announce_establishing(&mut self, now: Instant, call_id: &str) {
        let Some(call) = self.calls.get(call_id) else {
            return;
        };
        if call.state == CallState::Establishing {
            self.notify_state(now, call_id, &CallState::Establishing);
        } else {
            // `established` went first (the reversed-order fault): say `establishing` late, as
            // the real service sometimes does, without changing the state.
            let data = payloads::call_state(call_id, &CallState::Establishing, None);
            self.post_call_update(now, call_id, data);
        }
    }

    /// The setup's `established` step is due: the call is up, unless the only callee declined.
    pub(super) fn establish(&mut self, now: Instant, call_id: &str) {
        let Some(call) = self.calls.get(call_id) else {
            return;
        };
        if call.state == CallState::Established {
            return;
        }
        let declined =
            call.kind == CallKind::PeerToPeer && call.members.iter().all(|m| m.user.declines);
        if declined && !call.members.is_empty() {
            self.terminate(now, call_id, CallEnd::Declined);
            return;
        }
        if let Some(call) = self.calls.get_mut(call_id) {
            call.bot_in_lobby = false;
            call.established_at = Some(now);
        }
        self.set_state(call_id, CallState::Established);
        self.notify_state(now, call_id, &CallState::Established);
        self.on_established(now, call_id);
    }

    /// Moves the call to `state` and tells the media side (not the bot: callers decide whether
    /// and how the bot hears of it).
    pub(super) fn set_state(&mut self, call_id: &str, state: CallState) {
        if let Some(call) = self.calls.get_mut(call_id) {
            call.state = state.clone();
            self.events.push_back(SimEvent::StateChanged {
                call_id: call_id.to_owned(),
                state,
            });
        }
    }

    /// Ends the call once: everyone's audio stops and the bot learns why.
    pub(super) fn terminate(&mut self, now: Instant, call_id: &str, end: CallEnd) {
        let Some(call) = self.calls.get(call_id) else {
            return;
        };
        if call.has_ended() {
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
        self.set_state(call_id, CallState::Terminated);
        // Prompts and recordings of the call end with it, unannounced (the call's end says it).
        // What it recorded stays downloadable a while, then goes.
        self.drop_service_media(call_id);
        self.schedule(
            now + self.config.recording_retention,
            call_id,
            TimerKind::DiscardRecordings,
        );
        self.drop_resources(call_id);
        let result = (end.code(), end.subcode(), end.message());
        let data = payloads::call_state(call_id, &CallState::Terminated, Some(result));
        // The real service reports the end as the deletion of the call resource.
        self.notify(now, call_id, "deleted", "", data);
        self.events.push_back(SimEvent::Ended {
            call_id: call_id.to_owned(),
            code: end.code(),
            subcode: end.subcode(),
            end,
        });
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
