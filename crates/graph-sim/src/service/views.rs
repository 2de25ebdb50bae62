//! Read-only views of the service for its shells, tests and the softphone page: the directory of
//! simulated users, the calls and their states, and rosters as plain data.

use graph_signaling::models::CallState;
use serde::Serialize;

use super::Sim;
use super::calls::CallKind;
use super::roster::MemberState;
use crate::scenario::SimUser;

/// One call as the softphone lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallSummary {
    /// The call id.
    pub id: String,
    /// The call's state (serialized as Graph's name).
    pub state: CallState,
    /// The kind of call (serialized as `peerToPeer`, `group` or `meeting`).
    pub kind: CallKind,
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

impl Sim {
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
            .filter(|c| !c.has_ended())
            .map(|c| c.id.as_str())
    }

    /// The state of a call, if the sim knows it (ended calls included).
    pub fn call_state(&self, call_id: &str) -> Option<CallState> {
        self.calls.get(call_id).map(|c| c.state.clone())
    }

    /// Calls that have not ended, sorted by id so the listing is stable.
    pub fn call_summaries(&self) -> Vec<CallSummary> {
        let mut list: Vec<CallSummary> = self
            .calls
            .values()
            .filter(|c| !c.has_ended())
            .map(|c| CallSummary {
                id: c.id.clone(),
                state: c.state.clone(),
                kind: c.kind,
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
        let call = self.calls.get(call_id).filter(|c| !c.has_ended())?;
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

    /// Where the notifications of `call_id` go: the callback URL the bot placed or answered
    /// the call with (or, before an answer, the one it was offered at).
    pub fn callback_uri(&self, call_id: &str) -> Option<&str> {
        self.calls.get(call_id).map(|c| c.callback_uri.as_str())
    }

    /// The callback URL of the most recent call a bot placed or was offered, to offer the next
    /// one to.
    pub fn last_callback_uri(&self) -> Option<&str> {
        self.calls
            .values()
            .max_by_key(|c| c.last_keepalive)
            .map(|c| c.callback_uri.as_str())
    }
}
