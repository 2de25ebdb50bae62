//! What the softphone (a person in a web page, `crate::softphone`) needs of the core: the calls
//! and their rosters as plain data, and a person joining, muting and leaving a call as one more
//! participant. A person is a member like any simulated user: the bot learns of them from the
//! roster notifications, and the media side from `SourceAdded`/`SourceRemoved`.

use std::time::Instant;

use serde::Serialize;

use super::{CallKind, MemberState, Sim, SimCall, uuid_from};
use crate::scenario::{IdentityKind, SimUser, Voice};

/// Longest display name a person may give.
pub const MAX_PERSON_NAME_CHARS: usize = 64;

/// One call as the softphone lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallSummary {
    /// The call id.
    pub id: String,
    /// Graph's state name.
    pub state: &'static str,
    /// `peerToPeer`, `group` or `meeting`.
    pub kind: &'static str,
    /// The call carries app-hosted media (so a person's audio can reach the bot).
    pub app_hosted_media: bool,
    /// Participants in the call or its lobby, the bot included.
    pub participants: usize,
}

/// One roster entry as the softphone shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RosterEntry {
    /// Participant id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `sourceId` of the participant's audio.
    pub source_id: u32,
    /// This entry is the bot.
    pub bot: bool,
    /// Muted.
    pub muted: bool,
    /// Waiting in the lobby.
    pub in_lobby: bool,
}

/// Why a person cannot join.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// No such call, or it has ended.
    #[error("call {0} does not exist or has ended")]
    NoCall(String),
    /// The call is not established yet (or no longer).
    #[error("call {0} is {1}; join once it is established")]
    NotEstablished(String, &'static str),
    /// The call has no app-hosted media: nothing would carry the person's audio.
    #[error("call {0} has no app-hosted media")]
    NoMedia(String),
    /// The name is empty or too long.
    #[error("the name must have 1 to {MAX_PERSON_NAME_CHARS} characters")]
    BadName,
}

fn kind_name(kind: CallKind) -> &'static str {
    match kind {
        CallKind::PeerToPeer => "peerToPeer",
        CallKind::Group => "group",
        CallKind::Meeting => "meeting",
    }
}

fn check_name(name: &str) -> Result<String, JoinError> {
    let name = name.trim();
    let count = name.chars().count();
    if count == 0 || count > MAX_PERSON_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(JoinError::BadName);
    }
    Ok(name.to_owned())
}

impl SimCall {
    fn in_call(&self) -> impl Iterator<Item = &super::Member> {
        self.members
            .iter()
            .filter(|m| matches!(m.state, MemberState::Present | MemberState::InLobby))
    }
}

impl Sim {
    /// Calls that have not ended, sorted by id so the listing is stable.
    pub fn call_summaries(&self) -> Vec<CallSummary> {
        let mut list: Vec<CallSummary> = self
            .calls
            .values()
            .filter(|c| c.state != "terminated")
            .map(|c| CallSummary {
                id: c.id.clone(),
                state: c.state,
                kind: kind_name(c.kind),
                app_hosted_media: c.blob.is_some(),
                participants: 1 + c.in_call().count(),
            })
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    /// The roster of a call that has not ended: the bot first, then everyone in the call or
    /// its lobby.
    pub fn roster(&self, call_id: &str) -> Option<Vec<RosterEntry>> {
        let call = self
            .calls
            .get(call_id)
            .filter(|c| c.state != "terminated")?;
        let mut entries = vec![RosterEntry {
            id: call.bot_id.clone(),
            name: "Bot".to_owned(),
            source_id: call.bot_source,
            bot: true,
            muted: call.bot_muted,
            in_lobby: call.bot_in_lobby,
        }];
        entries.extend(call.in_call().map(|m| RosterEntry {
            id: m.id.clone(),
            name: m.user.name.clone(),
            source_id: m.source_id,
            bot: false,
            muted: m.muted,
            in_lobby: m.state == MemberState::InLobby,
        }));
        Some(entries)
    }

    /// A person joins an established call with app-hosted media as one more participant (a
    /// Teams user of the tenant, admitted at once). The bot gets a roster update and the media
    /// side a `SourceAdded` with the new `sourceId`, which is returned.
    pub fn join_person(
        &mut self,
        now: Instant,
        call_id: &str,
        name: &str,
    ) -> Result<u32, JoinError> {
        let name = check_name(name)?;
        let call = self
            .calls
            .get(call_id)
            .filter(|c| c.state != "terminated")
            .ok_or_else(|| JoinError::NoCall(call_id.to_owned()))?;
        if call.state != "established" {
            return Err(JoinError::NotEstablished(call_id.to_owned(), call.state));
        }
        if call.blob.is_none() {
            return Err(JoinError::NoMedia(call_id.to_owned()));
        }
        let user_id = uuid_from(&mut self.rng);
        let user = person(&name);
        let mut member = self.new_member(user, &user_id);
        let Some(call) = self.calls.get_mut(call_id) else {
            return Err(JoinError::NoCall(call_id.to_owned()));
        };
        member.source_id = call.allocate_source();
        let source = member.source_id;
        let i = call.members.len();
        call.members.push(member);
        self.join(now, call_id, i);
        Ok(source)
    }

    /// A person calls the bot at `callback_uri` (an incoming call for the bot). Returns the
    /// call id and the person's `sourceId`; their audio starts once the bot answers.
    pub fn call_bot_as_person(
        &mut self,
        now: Instant,
        callback_uri: &str,
        name: &str,
    ) -> Result<(String, u32), JoinError> {
        let name = check_name(name)?;
        let user_id = uuid_from(&mut self.rng);
        let id = self.offer_incoming_from(now, callback_uri, person(&name), &user_id);
        let source = self
            .calls
            .get(&id)
            .and_then(|c| c.members.first())
            .map(|m| m.source_id)
            .ok_or_else(|| JoinError::NoCall(id.clone()))?;
        Ok((id, source))
    }

    /// The callback URL of the most recent call a bot placed or was offered, to offer the next
    /// one to.
    pub fn last_callback_uri(&self) -> Option<&str> {
        self.calls
            .values()
            .max_by_key(|c| c.last_keepalive)
            .map(|c| c.callback_uri.as_str())
    }

    /// The participant with `source_id` leaves the call. False if nobody in the call has it.
    pub fn person_leaves(&mut self, now: Instant, call_id: &str, source_id: u32) -> bool {
        let Some(i) = self.member_index(call_id, source_id) else {
            return false;
        };
        self.leave(now, call_id, i);
        true
    }

    /// The participant with `source_id` mutes or unmutes; the bot gets a roster update. False
    /// if nobody in the call has that source.
    pub fn set_person_muted(
        &mut self,
        now: Instant,
        call_id: &str,
        source_id: u32,
        muted: bool,
    ) -> bool {
        let Some(i) = self.member_index(call_id, source_id) else {
            return false;
        };
        let changed = self.with_member(call_id, i, |m| (m.muted != muted).then(|| m.muted = muted));
        if changed.is_some() {
            self.emit_roster(now, call_id, &[i], false);
        }
        true
    }

    fn member_index(&self, call_id: &str, source_id: u32) -> Option<usize> {
        let call = self
            .calls
            .get(call_id)
            .filter(|c| c.state != "terminated")?;
        call.members.iter().position(|m| {
            m.source_id == source_id
                && matches!(m.state, MemberState::Present | MemberState::InLobby)
        })
    }
}

/// The simulated user standing for a person: a tenant user whose voice is never played (their
/// audio comes from the browser).
fn person(name: &str) -> SimUser {
    let mut user = SimUser::new(name, Voice::Speech);
    user.identity = IdentityKind::User;
    user
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::scenario::Scenario;
    use crate::service::{SimConfig, SimEvent};

    fn established_incoming(sim: &mut Sim, now: Instant) -> String {
        let id = sim
            .offer_incoming_call(now, "http://127.0.0.1:9/callback", 0)
            .unwrap();
        // Pretend the bot answered with app-hosted media: established with a blob.
        let call = sim.calls.get_mut(&id).unwrap();
        call.awaiting_answer = false;
        call.state = "established";
        call.blob = Some(
            media_session::MediaSession::builder(
                "net.tcp://127.0.0.1:9/MediaProcessor".parse().unwrap(),
            )
            .build()
            .unwrap()
            .blob_config(),
        );
        for m in &mut call.members {
            m.state = MemberState::Present;
        }
        id
    }

    #[test]
    fn a_person_joins_mutes_and_leaves_like_any_participant() {
        let mut sim = Sim::new(SimConfig::default(), Scenario::two_users());
        let now = Instant::now();
        let id = established_incoming(&mut sim, now);
        while sim.poll_event().is_some() {}
        let source = sim.join_person(now, &id, "  Pat  ").unwrap();
        let ev = sim.poll_event().unwrap();
        assert!(
            matches!(&ev, SimEvent::SourceAdded { source_id, name, .. } if *source_id == source && name == "Pat"),
            "{ev:?}"
        );
        let roster = sim.roster(&id).unwrap();
        assert!(roster[0].bot);
        assert!(
            roster
                .iter()
                .any(|r| r.name == "Pat" && r.source_id == source)
        );
        assert!(sim.set_person_muted(now, &id, source, true));
        assert!(
            sim.roster(&id)
                .unwrap()
                .iter()
                .any(|r| r.name == "Pat" && r.muted)
        );
        assert!(sim.person_leaves(now + Duration::from_secs(1), &id, source));
        assert!(matches!(
            sim.poll_event(),
            Some(SimEvent::SourceRemoved { source_id, .. }) if source_id == source
        ));
        assert!(!sim.person_leaves(now, &id, source));
        assert_eq!(sim.call_summaries().len(), 1);
    }

    #[test]
    fn joining_is_refused_with_a_reason() {
        let mut sim = Sim::new(SimConfig::default(), Scenario::two_users());
        let now = Instant::now();
        assert!(matches!(
            sim.join_person(now, "nope", "Pat"),
            Err(JoinError::NoCall(_))
        ));
        let id = sim
            .offer_incoming_call(now, "http://127.0.0.1:9/callback", 0)
            .unwrap();
        assert!(matches!(
            sim.join_person(now, &id, "Pat"),
            Err(JoinError::NotEstablished(..))
        ));
        let id = established_incoming(&mut sim, now);
        for bad in ["", "   ", "a\u{7}b", &"x".repeat(MAX_PERSON_NAME_CHARS + 1)] {
            assert_eq!(sim.join_person(now, &id, bad), Err(JoinError::BadName));
        }
    }

    #[test]
    fn a_person_can_call_the_bot() {
        let mut sim = Sim::new(SimConfig::default(), Scenario::two_users());
        let now = Instant::now();
        let (id, source) = sim
            .call_bot_as_person(now, "http://127.0.0.1:9/callback", "Pat")
            .unwrap();
        assert_eq!(sim.call_state(&id), Some("incoming"));
        assert!(source > 0);
        assert_eq!(sim.last_callback_uri(), Some("http://127.0.0.1:9/callback"));
    }
}
