//! Who is in a call: members standing for simulated users (and people), their audio sources,
//! joining (guests by way of the lobby), leaving, and the roster notifications the bot gets for
//! each change, full or delta.

use std::time::{Duration, Instant};

use graph_signaling::models::InvitationParticipantInfo;
use serde_json::Value;

use super::Sim;
use super::calls::{CallEnd, CallKind};
use super::notify::SimEvent;
use super::payloads::{self, ParticipantView};
use super::refusal::Refusal;
use super::sharing::Sharer;
use super::timers::TimerKind;
use crate::scenario::{IdentityKind, SimUser, Voice, is_e164};

/// Where a member is in the call's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MemberState {
    /// Invited or scheduled, not in the call yet.
    Pending,
    InLobby,
    Present,
    Left,
}

/// One participant other than the bot.
#[derive(Debug, Clone)]
pub(super) struct Member {
    /// The participant id in rosters.
    pub(super) id: String,
    pub(super) user: SimUser,
    pub(super) identity: Value,
    pub(super) source_id: u32,
    pub(super) state: MemberState,
    pub(super) muted: bool,
    /// Roster sequence number of the last change to this member.
    pub(super) sequence: Option<i64>,
}

impl Sim {
    /// The simulated user standing for an invitee: a scenario user with the same id or number,
    /// or a new one named after the identity.
    pub(super) fn member_for(
        &mut self,
        target: &InvitationParticipantInfo,
        can_dial_phones: bool,
    ) -> Result<Member, Refusal> {
        let identity = target
            .identity
            .get()
            .ok_or_else(|| Refusal::bad_request("each participant needs an identity"))?;
        let (kind, who) = if let Some(phone) = identity.phone.get() {
            let number = phone.id.as_deref().unwrap_or_default();
            if !is_e164(number) {
                return Err(Refusal::bad_request(format!(
                    "phone number {number:?} is not in E.164 form (+14255550123)"
                )));
            }
            if !can_dial_phones {
                return Err(Refusal::bad_request(
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
            return Err(Refusal::bad_request(
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

    /// A pending member for `user`, without an audio source yet.
    pub(super) fn new_member(&mut self, user: SimUser, user_id: &str) -> Member {
        let identity_id = user.phone.clone().unwrap_or_else(|| user_id.to_owned());
        let identity = payloads::identity_set(
            user.identity,
            &identity_id,
            &user.name,
            &self.config.tenant_id,
        );
        Member {
            id: self.new_id(),
            user,
            identity,
            source_id: 0,
            state: MemberState::Pending,
            muted: false,
            sequence: None,
        }
    }

    /// The call is up: the media side may connect, and the members follow their schedules.
    pub(super) fn on_established(&mut self, now: Instant, call_id: &str) {
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

    /// Member `i` joins (or enters the lobby) and the bot hears of it.
    pub(super) fn join(&mut self, now: Instant, call_id: &str, i: usize) {
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
                self.source_added(now, call_id, i);
                true
            }
        }
    }

    /// The lobby wait is over: member `i` is admitted, if still waiting.
    pub(super) fn admit(&mut self, now: Instant, call_id: &str, i: usize) {
        let changed = self.with_member(call_id, i, |m| {
            (m.state == MemberState::InLobby).then(|| m.state = MemberState::Present)
        });
        if changed.is_some() {
            self.source_added(now, call_id, i);
            self.emit_roster(now, call_id, &[i], false);
        }
    }

    /// Member `i` leaves; a peer-to-peer call ends when nobody but the bot is left.
    pub(super) fn leave(&mut self, now: Instant, call_id: &str, i: usize) {
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
        self.stop_share(now, call_id, Sharer::Member(i));
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
            self.terminate(now, call_id, CallEnd::OthersLeft);
        }
    }

    /// Member `i` mutes or unmutes; the bot hears of it only if that changes anything.
    pub(super) fn set_member_muted(&mut self, now: Instant, call_id: &str, i: usize, muted: bool) {
        let changed = self.with_member(call_id, i, |m| (m.muted != muted).then(|| m.muted = muted));
        if changed.is_some() {
            self.emit_roster(now, call_id, &[i], false);
        }
    }

    /// The index of the member in the call (or its lobby) with `source_id`, if the call has not
    /// ended.
    pub(super) fn member_with_source(&self, call_id: &str, source_id: u32) -> Option<usize> {
        let call = self.calls.get(call_id).filter(|c| !c.has_ended())?;
        call.members.iter().position(|m| {
            m.source_id == source_id
                && matches!(m.state, MemberState::Present | MemberState::InLobby)
        })
    }

    /// Member `i` is in the call: their audio starts and the keys they press are scheduled.
    fn source_added(&mut self, now: Instant, call_id: &str, i: usize) {
        let Some(m) = self.calls.get(call_id).and_then(|c| c.members.get(i)) else {
            return;
        };
        self.events.push_back(SimEvent::SourceAdded {
            call_id: call_id.to_owned(),
            name: m.user.name.clone(),
            source_id: m.source_id,
            voice: m.user.says.clone(),
            talks: m.user.talks,
        });
        self.schedule_share(now, call_id, i);
        let Some(m) = self.calls.get(call_id).and_then(|c| c.members.get(i)) else {
            return;
        };
        let presses = m.user.presses.0.clone();
        for (tone, ms) in presses {
            self.schedule(
                now + Duration::from_millis(ms),
                call_id,
                TimerKind::Press(i, tone),
            );
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

    /// The bot's roster entry as the service shows it now.
    pub(super) fn bot_entry(&self, call_id: &str, sequence: Option<i64>) -> Option<Value> {
        let call = self.calls.get(call_id)?;
        Some(payloads::participant(&ParticipantView {
            id: &call.bot_id,
            identity: call.bot_identity.clone(),
            source_id: call.bot_source,
            muted: call.bot_muted,
            in_lobby: call.bot_in_lobby,
            sequence,
            removed: false,
            extra_streams: self.extra_streams(call_id, Sharer::Bot),
        }))
    }

    /// Member `i`'s roster entry as the service shows it now (with the sequence number of its
    /// last change).
    pub(super) fn member_entry(&self, call_id: &str, i: usize) -> Option<Value> {
        let m = self.calls.get(call_id)?.members.get(i)?;
        Some(payloads::participant(&ParticipantView {
            id: &m.id,
            identity: m.identity.clone(),
            source_id: m.source_id,
            muted: m.muted,
            in_lobby: m.state == MemberState::InLobby,
            sequence: m.sequence,
            removed: m.state == MemberState::Left,
            extra_streams: self.extra_streams(call_id, Sharer::Member(i)),
        }))
    }

    /// The entries of everyone in the call or its lobby, the bot first.
    pub(super) fn full_roster(&self, call_id: &str) -> Vec<Value> {
        let Some(call) = self.calls.get(call_id) else {
            return Vec::new();
        };
        let mut entries: Vec<Value> = self.bot_entry(call_id, None).into_iter().collect();
        for (i, m) in call.members.iter().enumerate() {
            if matches!(m.state, MemberState::Present | MemberState::InLobby) {
                let mut entry = self.member_entry(call_id, i);
                if let Some(e) = entry.as_mut().and_then(Value::as_object_mut) {
                    // A full roster carries no sequence numbers.
                    e.remove("rosterSequenceNumber");
                }
                entries.extend(entry);
            }
        }
        entries
    }

    /// Posts the roster: everyone present (full roster), or just the members in `changed` and,
    /// with `include_bot`, the bot's own entry (delta roster).
    pub(super) fn emit_roster(
        &mut self,
        now: Instant,
        call_id: &str,
        changed: &[usize],
        include_bot: bool,
    ) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let data = if call.delta_roster {
            call.roster_sequence += 1;
            let seq = call.roster_sequence;
            for &i in changed {
                if let Some(m) = call.members.get_mut(i) {
                    m.sequence = Some(seq);
                }
            }
            let mut entries = Vec::new();
            if include_bot {
                entries.extend(self.bot_entry(call_id, Some(seq)));
            }
            for &i in changed {
                entries.extend(self.member_entry(call_id, i));
            }
            payloads::delta_roster(entries, seq)
        } else {
            Value::Array(self.full_roster(call_id))
        };
        self.notify(now, call_id, "updated", "/participants", data);
    }
}
