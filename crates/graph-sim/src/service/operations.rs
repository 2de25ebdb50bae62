//! Requests answered with an operation resource: inviting participants (which completes later,
//! by notification), muting or unmuting the bot and updating the recording status (which
//! complete at once).

use std::time::{Duration, Instant};

use graph_signaling::models::{
    CallState, ClientContextBody, InvitationParticipantInfo, InviteParticipantsBody,
    UpdateRecordingStatusBody,
};
use serde_json::Value;

use super::calls::{CallEnd, CallKind};
use super::refusal::Refusal;
use super::roster::MemberState;
use super::timers::TimerKind;
use super::{MAX_CLIENT_CONTEXT, MAX_GROUP_PARTICIPANTS, Sim, payloads};

impl Sim {
    /// Checks `replacesCallId` (and `participantId`) of an invitee into `call_id`: the call
    /// replaced is another live call of the bot's; without `participantId` it is an established
    /// peer-to-peer call, with it a call the participant is in.
    fn check_replaces(
        &self,
        call_id: &str,
        p: &InvitationParticipantInfo,
    ) -> Result<(String, Option<String>), Refusal> {
        let from = p.replaces_call_id.get().cloned().unwrap_or_default();
        if from == call_id {
            return Err(Refusal::bad_request("a call cannot replace itself"));
        }
        let replaced = self.live_call(&from)?;
        match p.participant_id.get() {
            None => {
                if replaced.kind != CallKind::PeerToPeer || replaced.state != CallState::Established
                {
                    return Err(Refusal::bad_request(
                        "replacesCallId without participantId needs an established peer-to-peer call",
                    ));
                }
                Ok((from, None))
            }
            Some(pid) => {
                let present = replaced.in_call().any(|m| m.id == *pid);
                if !present {
                    return Err(Refusal::bad_request(format!(
                        "participant {} is not in call {from}",
                        pid.chars().take(64).collect::<String>()
                    )));
                }
                Ok((from, Some(pid.clone())))
            }
        }
    }
}

/// An invitation still ringing, finished by [`Sim::finish_invite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PendingInvite {
    pub(super) operation_id: String,
    pub(super) client_context: Option<String>,
    /// Indexes of the invited members in the call.
    pub(super) members: Vec<usize>,
    /// The request's participants, echoed in the operation.
    pub(super) participants: Value,
    /// `replacesCallId` of the first participant, and its `participantId` when one is moved
    /// from another meeting.
    pub(super) replaces: Option<(String, Option<String>)>,
}

impl Sim {
    /// Starts an invitation; returns the operation's `Location` and the running operation.
    pub(super) fn invite(
        &mut self,
        now: Instant,
        id: &str,
        body: &[u8],
    ) -> Result<(String, Value), Refusal> {
        let call = self.live_call(id)?;
        let kind = call.kind;
        let can_dial_phones = call.can_dial_phones;
        let invite: InviteParticipantsBody = serde_json::from_slice(body)
            .map_err(|e| Refusal::bad_request(format!("the invite body is not valid: {e}")))?;
        let client_context = invite.client_context.get().cloned();
        check_client_context(client_context.as_deref())?;
        let count = invite.participants.len();
        if count == 0 {
            return Err(Refusal::bad_request(
                "invite needs at least one participant",
            ));
        }
        if count > MAX_GROUP_PARTICIPANTS {
            return Err(Refusal::bad_request(format!(
                "at most {MAX_GROUP_PARTICIPANTS} participants can be invited at once"
            )));
        }
        if count > 1 && kind == CallKind::PeerToPeer {
            return Err(Refusal::bad_request(
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
        let replaces = match invited.first() {
            Some(p) if replacing => Some(self.check_replaces(id, p)?),
            _ => None,
        };
        let mut new_members = Vec::new();
        for p in invited {
            new_members.push(self.member_for(p, can_dial_phones)?);
        }
        let operation_id = self.new_id();
        let participants = serde_json::to_value(&invite.participants).unwrap_or(Value::Null);
        let call = self.calls.get_mut(id).ok_or_else(|| Refusal::no_call(id))?;
        let members = new_members
            .into_iter()
            .map(|m| call.add_member(m))
            .collect();
        let body = payloads::operation(
            "inviteParticipantsOperation",
            &operation_id,
            "Running",
            client_context.as_deref(),
            None,
            Some(participants.clone()),
        );
        let location = format!(
            "{}/communications/calls/{id}/operations/{operation_id}",
            self.config.base_url
        );
        self.schedule(
            now + self.config.ring_delay,
            id,
            TimerKind::InviteDone(PendingInvite {
                operation_id,
                client_context,
                members,
                participants,
                replaces,
            }),
        );
        Ok((location, body))
    }

    /// The invitees answered: the operation completes (or fails if one declined) and, unless
    /// declined, they join.
    pub(super) fn finish_invite(&mut self, now: Instant, call_id: &str, invite: PendingInvite) {
        let Some(call) = self.calls.get(call_id) else {
            return;
        };
        let PendingInvite {
            operation_id,
            client_context,
            members,
            participants,
            replaces,
        } = invite;
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
            match replaces {
                // Moved from another meeting: they leave it.
                Some((from, Some(pid))) => {
                    let index = self.calls.get(&from).and_then(|c| {
                        c.members.iter().position(|m| {
                            m.id == pid
                                && matches!(m.state, MemberState::Present | MemberState::InLobby)
                        })
                    });
                    if let Some(i) = index {
                        self.leave(now, &from, i);
                    }
                }
                // The peer-to-peer call became this group call.
                Some((from, None)) => self.terminate(now, &from, CallEnd::Replaced),
                None => {}
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

    /// Mutes or unmutes the bot; returns the completed operation.
    pub(super) fn mute(
        &mut self,
        now: Instant,
        id: &str,
        mute: bool,
        body: &[u8],
    ) -> Result<Value, Refusal> {
        self.live_call(id)?;
        let request: ClientContextBody = if body.is_empty() {
            ClientContextBody::default()
        } else {
            serde_json::from_slice(body).map_err(|e| Refusal::bad_request(e.to_string()))?
        };
        check_client_context(request.client_context.as_deref())?;
        let operation_id = self.new_id();
        let kind = if mute {
            "muteParticipantOperation"
        } else {
            "unmuteParticipantOperation"
        };
        if let Some(call) = self.calls.get_mut(id) {
            call.bot_muted = mute;
        }
        self.emit_roster(now, id, &[], true);
        Ok(payloads::operation(
            kind,
            &operation_id,
            "completed",
            request.client_context.as_deref(),
            Some((200, 0, "Success")),
            None,
        ))
    }

    /// Records the bot's recording status; returns the completed operation.
    pub(super) fn update_recording_status(
        &mut self,
        id: &str,
        body: &[u8],
    ) -> Result<Value, Refusal> {
        self.live_call(id)?;
        let request: UpdateRecordingStatusBody = serde_json::from_slice(body).map_err(|e| {
            Refusal::bad_request(format!("the recording status body is not valid: {e}"))
        })?;
        check_client_context(request.client_context.as_deref())?;
        let operation_id = self.new_id();
        Ok(payloads::operation(
            "updateRecordingStatusOperation",
            &operation_id,
            "completed",
            request.client_context.as_deref(),
            Some((200, 0, "Success")),
            None,
        ))
    }
}

/// Refuses a `clientContext` longer than Graph takes (every action that carries one).
pub(super) fn check_client_context(context: Option<&str>) -> Result<(), Refusal> {
    match context {
        Some(c) if c.chars().count() > MAX_CLIENT_CONTEXT => Err(Refusal::bad_request(format!(
            "clientContext is {} characters; at most {MAX_CLIENT_CONTEXT} are allowed",
            c.chars().count()
        ))),
        _ => Ok(()),
    }
}
