//! People acting on calls from outside the bot: a person at the softphone (`crate::softphone`)
//! joining, muting, leaving or calling the bot, and a scenario user calling the bot. A person
//! is a member like any simulated user: the bot learns of them from the roster notifications,
//! and the media side from `SourceAdded`/`SourceRemoved`.
//!
//! [`Sim::handle_person`] takes these actions as [`Sim::handle_request`] takes API requests:
//! answered at once, with what follows queued.

use std::time::Instant;

use graph_signaling::models::CallState;

use super::Sim;
use crate::scenario::{IdentityKind, SimUser, Voice};

/// Longest display name a person may give.
pub const MAX_PERSON_NAME_CHARS: usize = 64;

/// Something a person (or a scenario user) does to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonAction<'a> {
    /// A person joins an established call with app-hosted media as one more participant (a
    /// Teams user of the tenant, admitted at once). The bot gets a roster update and the media
    /// side a `SourceAdded` with the new `sourceId`.
    Join {
        /// The call to join.
        call_id: &'a str,
        /// The person's display name (trimmed; 1 to [`MAX_PERSON_NAME_CHARS`] characters).
        name: &'a str,
    },
    /// Someone calls the bot at `callback_uri`: a new incoming call for the bot, whose caller's
    /// audio starts once the bot answers.
    CallBot {
        /// Where the bot gets its notifications.
        callback_uri: &'a str,
        /// Who calls.
        caller: Caller<'a>,
    },
    /// The participant with `source_id` mutes or unmutes; the bot gets a roster update if that
    /// changes anything.
    Mute {
        /// The call.
        call_id: &'a str,
        /// The participant's `sourceId`.
        source_id: u32,
        /// Muted or not.
        muted: bool,
    },
    /// The participant with `source_id` leaves the call (a peer-to-peer call ends with it).
    Leave {
        /// The call.
        call_id: &'a str,
        /// The participant's `sourceId`.
        source_id: u32,
    },
}

/// Who calls the bot in [`PersonAction::CallBot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller<'a> {
    /// The scenario user at this index (the order of [`Sim::directory`]).
    ScenarioUser(usize),
    /// A person giving this display name (trimmed; 1 to [`MAX_PERSON_NAME_CHARS`] characters).
    Person(&'a str),
}

/// Where an action left its person: the call, and their audio source in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonOutcome {
    /// The call acted on, or the new call for [`PersonAction::CallBot`].
    pub call_id: String,
    /// The person's `sourceId`: new for a join or a call to the bot, as given otherwise.
    pub source_id: u32,
}

/// Why a person's action is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PersonError {
    /// No such call, or it has ended.
    #[error("call {0} does not exist or has ended")]
    NoCall(String),
    /// The call is not established yet (or no longer).
    #[error("call {0} is {1}; join once it is established")]
    NotEstablished(String, CallState),
    /// The call has no app-hosted media: nothing would carry the person's audio.
    #[error("call {0} has no app-hosted media")]
    NoMedia(String),
    /// The name is empty or too long.
    #[error("the name must have 1 to {MAX_PERSON_NAME_CHARS} characters")]
    BadName,
    /// Nobody in the call or its lobby has this `sourceId`.
    #[error("nobody in call {call_id} has source {source_id}")]
    NoParticipant {
        /// The call.
        call_id: String,
        /// The `sourceId` asked for.
        source_id: u32,
    },
    /// The scenario has no user at this index.
    #[error("the scenario has no user {0}")]
    NoScenarioUser(usize),
}

impl Sim {
    /// Carries out what a person does to a call, and queues what follows (roster
    /// notifications, media events).
    pub fn handle_person(
        &mut self,
        now: Instant,
        action: PersonAction<'_>,
    ) -> Result<PersonOutcome, PersonError> {
        match action {
            PersonAction::Join { call_id, name } => self.person_joins(now, call_id, name),
            PersonAction::CallBot {
                callback_uri,
                caller,
            } => self.call_bot(now, callback_uri, caller),
            PersonAction::Mute {
                call_id,
                source_id,
                muted,
            } => {
                let i = self.participant(call_id, source_id)?;
                self.set_member_muted(now, call_id, i, muted);
                Ok(PersonOutcome {
                    call_id: call_id.to_owned(),
                    source_id,
                })
            }
            PersonAction::Leave { call_id, source_id } => {
                let i = self.participant(call_id, source_id)?;
                self.leave(now, call_id, i);
                Ok(PersonOutcome {
                    call_id: call_id.to_owned(),
                    source_id,
                })
            }
        }
    }

    fn person_joins(
        &mut self,
        now: Instant,
        call_id: &str,
        name: &str,
    ) -> Result<PersonOutcome, PersonError> {
        let name = check_name(name)?;
        let call = self
            .calls
            .get(call_id)
            .filter(|c| !c.has_ended())
            .ok_or_else(|| PersonError::NoCall(call_id.to_owned()))?;
        if call.state != CallState::Established {
            return Err(PersonError::NotEstablished(
                call_id.to_owned(),
                call.state.clone(),
            ));
        }
        if call.blob.is_none() {
            return Err(PersonError::NoMedia(call_id.to_owned()));
        }
        let user_id = self.new_id();
        let member = self.new_member(person(&name), &user_id);
        let Some(call) = self.calls.get_mut(call_id) else {
            return Err(PersonError::NoCall(call_id.to_owned()));
        };
        let i = call.add_member(member);
        let source_id = call.members[i].source_id;
        self.join(now, call_id, i);
        Ok(PersonOutcome {
            call_id: call_id.to_owned(),
            source_id,
        })
    }

    fn call_bot(
        &mut self,
        now: Instant,
        callback_uri: &str,
        caller: Caller<'_>,
    ) -> Result<PersonOutcome, PersonError> {
        let (user, user_id) = match caller {
            Caller::ScenarioUser(from) => {
                let user = self
                    .scenario
                    .users
                    .get(from)
                    .ok_or(PersonError::NoScenarioUser(from))?;
                (user.clone(), self.user_ids[from].clone())
            }
            Caller::Person(name) => {
                let name = check_name(name)?;
                (person(&name), self.new_id())
            }
        };
        let call_id = self.offer_incoming_from(now, callback_uri, user, &user_id);
        let source_id = self
            .calls
            .get(&call_id)
            .and_then(|c| c.members.first())
            .map(|m| m.source_id)
            .ok_or_else(|| PersonError::NoCall(call_id.clone()))?;
        Ok(PersonOutcome { call_id, source_id })
    }

    /// The member in a live call with `source_id`.
    fn participant(&self, call_id: &str, source_id: u32) -> Result<usize, PersonError> {
        if self.calls.get(call_id).is_none_or(|c| c.has_ended()) {
            return Err(PersonError::NoCall(call_id.to_owned()));
        }
        self.member_with_source(call_id, source_id)
            .ok_or_else(|| PersonError::NoParticipant {
                call_id: call_id.to_owned(),
                source_id,
            })
    }
}

fn check_name(name: &str) -> Result<String, PersonError> {
    let name = name.trim();
    let count = name.chars().count();
    if count == 0 || count > MAX_PERSON_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(PersonError::BadName);
    }
    Ok(name.to_owned())
}

/// The simulated user standing for a person: a tenant user whose voice is never played (their
/// audio comes from the browser).
fn person(name: &str) -> SimUser {
    let mut user = SimUser::new(name, Voice::Speech);
    user.identity = IdentityKind::User;
    user
}
