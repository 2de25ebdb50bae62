//! Scenario files: who the simulated users are, when they join and leave, what they say, and how
//! the network and the service misbehave. TOML or JSON.
//!
//! ```toml
//! seed = 7
//!
//! [[users]]
//! name = "Alice"
//! identity = "user"
//! says = { tone_hz = 440.0 }
//!
//! [[users]]
//! name = "Bob (phone)"
//! identity = "phone"
//! phone = "+14255550123"
//! join_ms = 3000
//! leave_ms = 9000
//! says = { wav = "bob.wav" }
//!
//! [[users]]
//! name = "Carol"
//! says = "speech"      # the built-in recording (the default)
//!
//! [media.to_bot]
//! loss = 0.05
//! jitter = 30
//!
//! [signaling]
//! throttle = 0.2
//! retry_after_s = 1
//! legacy_first = true  # each call's first notification in the legacy format first
//!
//! [meeting]                        # optional: see below
//! join_meeting_id = "1234567890123"
//! passcode = "Xy7pQ2"
//! # thread_id = "19:meeting_…@thread.v2"   # optional (derived from the join id)
//! # message_id = "1603984381935"           # a channel meeting's post
//! # organizer_id = "5810cede-…"             # optional (derived from the seed)
//! ```
//!
//! Without a `[meeting]` section the sim lets a bot join a meeting by any `joinMeetingId` (or
//! any other `meetingInfo`): the scenario's users are its attendees. With one, a join by
//! `joinMeetingId` must name that meeting (otherwise 404 `NotFound`) and give its passcode when
//! it has one (otherwise 403 `Forbidden`), as Graph refuses such a create-call request. A join
//! by organizer (`organizerMeetingInfo` with `chatInfo`, what a join link gives) must name the
//! meeting's thread, its organizer and, for a channel meeting, its channel post (otherwise 404
//! `NotFound`); it needs no passcode. Joins by token `meetingInfo` are accepted.

use std::collections::HashSet;
use std::path::PathBuf;

use graph_signaling::models::Tone;
use serde::{Deserialize, Serialize};

use crate::faults::SignalingFaults;
use crate::netem::{Impairment, ImpairmentError};

/// Largest scenario file read.
pub const MAX_SCENARIO_BYTES: usize = 1024 * 1024;

/// Most simulated users in one scenario (a large meeting's roster).
pub const MAX_USERS: usize = 250;

/// A whole simulation setup.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Seed for every random choice (impairments, faults, generated ids), so runs replay exactly.
    pub seed: u64,
    /// The simulated users, in the order they are invited or dialled.
    pub users: Vec<SimUser>,
    /// Network impairment of the media path.
    pub media: MediaImpairments,
    /// Misbehaviour of the signaling side.
    pub signaling: SignalingFaults,
    /// The meeting a bot can join by id and passcode; any id is accepted when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meeting: Option<Meeting>,
}

/// A Teams meeting the simulated users attend.
///
/// Besides its join id and passcode, a meeting has a chat thread and an organizer, which is
/// how its join link (and a join by `organizerMeetingInfo`) names it. A meeting held in a
/// channel has the channel's thread (`19:…@thread.tacv2`) and the id of the channel post it
/// hangs off.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meeting {
    /// The numeric id people type to join (`joinMeetingId`).
    pub join_meeting_id: String,
    /// The passcode a join must give; none when the meeting has no passcode.
    #[serde(default)]
    pub passcode: Option<String>,
    /// The meeting's chat thread; absent: one derived from the join id
    /// ([`Meeting::thread`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// The channel post a channel meeting hangs off (required for a channel thread, which
    /// ends in `@thread.tacv2` or `@thread.skype`; a meeting chat's message is `0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The organizer's object id (a GUID); absent: one derived from the scenario's seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organizer_id: Option<String>,
}

/// Longest `join_meeting_id` or passcode a scenario may declare.
pub const MAX_MEETING_FIELD: usize = 64;

/// Impairment of each direction of the media path.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaImpairments {
    /// Packets from the simulated users to the bot.
    pub to_bot: Impairment,
    /// Packets from the bot to the simulated users.
    pub from_bot: Impairment,
}

/// One simulated call participant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimUser {
    /// Display name in the roster.
    pub name: String,
    /// What kind of identity the roster shows.
    #[serde(default)]
    pub identity: IdentityKind,
    /// Identity id (user object id, guest id); generated from the seed when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// E.164 number, required for phone identities.
    #[serde(default)]
    pub phone: Option<String>,
    /// When the user joins, in ms after the call is established (0: at once).
    #[serde(default)]
    pub join_ms: u64,
    /// When the user leaves, in ms after the call is established, or for a user the bot
    /// invites, after they joined (absent: stays to the end).
    #[serde(default)]
    pub leave_ms: Option<u64>,
    /// What the user says.
    #[serde(default)]
    pub says: Voice,
    /// When the user talks, for conversations that take turns; absent: all the time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub talks: Option<Turns>,
    /// The user declines calls and invitations (the call or the invite operation fails).
    #[serde(default)]
    pub declines: bool,
    /// Keys the user presses, in ms after joining the call: `presses = "1@2000ms, #@3000ms"`.
    /// A bot with service-hosted media that subscribed to tones is told of each.
    #[serde(default, skip_serializing_if = "Presses::is_empty")]
    pub presses: Presses,
    /// When the user shares their screen, from joining the call:
    /// `shares = { from_ms = 2000, for_ms = 5000 }` (no `for_ms`: until they leave). The bot
    /// sees a content sharing session and a screen-sharing stream on the user's entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shares: Option<ScreenShare>,
}

/// A stretch of screen sharing, in ms after the user joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScreenShare {
    /// When sharing starts.
    #[serde(default)]
    pub from_ms: u64,
    /// How long it lasts; absent: until the user leaves (or someone else takes over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_ms: Option<u64>,
}

/// Keys pressed at times (ms after the user joined), written `"1@2000ms, #@3000ms"`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Presses(pub Vec<(Tone, u64)>);

/// Most key presses a user may script.
pub const MAX_PRESSES: usize = 64;

impl Presses {
    /// True when no key is pressed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<String> for Presses {
    type Error = String;

    fn try_from(text: String) -> Result<Presses, String> {
        let mut out = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if out.len() == MAX_PRESSES {
                return Err(format!("at most {MAX_PRESSES} presses"));
            }
            let bad = || format!("press {item:?} is not KEY@MSms (like 1@2000ms)");
            let (key, at) = item.split_once('@').ok_or_else(bad)?;
            let mut chars = key.trim().chars();
            let tone = chars.next().and_then(Tone::from_char).ok_or_else(bad)?;
            if chars.next().is_some() {
                return Err(bad());
            }
            let ms: u64 = at
                .trim()
                .strip_suffix("ms")
                .ok_or_else(bad)?
                .trim()
                .parse()
                .map_err(|_| bad())?;
            if ms > 3_600_000 {
                return Err(format!("press {item:?} is more than an hour in"));
            }
            out.push((tone, ms));
        }
        Ok(Presses(out))
    }
}

impl From<Presses> for String {
    fn from(p: Presses) -> String {
        p.0.iter()
            .map(|(t, ms)| format!("{}@{ms}ms", t.as_char().unwrap_or('?')))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Talk spurts on the call's media clock (ms since the simulated service connected to the
/// bot's media endpoint; with service-hosted media, since the call was established): the user
/// talks for `for_ms` every `every_ms`, from `from_ms` on, and
/// sends silence in between. In a scenario file:
/// `talks = { every_ms = 6000, for_ms = 3000, from_ms = 3000 }`.
///
/// Users who take turns let an echo be judged per person even when the bot sends back one mix
/// of everyone, as people in a conversation mostly do not talk over each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turns {
    /// Length of one cycle of talk and silence.
    pub every_ms: u64,
    /// Talk at the start of each cycle.
    pub for_ms: u64,
    /// Start of the first cycle; silence before it.
    #[serde(default)]
    pub from_ms: u64,
}

impl Turns {
    /// Whether the user talks at `ms` on the call's media clock.
    pub fn talking_at(&self, ms: u64) -> bool {
        ms >= self.from_ms && (ms - self.from_ms) % self.every_ms.max(1) < self.for_ms
    }

    fn validate(&self) -> Result<(), &'static str> {
        if self.every_ms < 20 || self.for_ms < 20 || self.for_ms > self.every_ms {
            return Err("talks needs 20 <= for_ms <= every_ms");
        }
        if self.every_ms > 3_600_000 || self.from_ms > 3_600_000 {
            return Err("talks: every_ms and from_ms must be within an hour");
        }
        Ok(())
    }
}

/// The kind of identity a simulated user has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum IdentityKind {
    /// A Teams user in the tenant.
    #[default]
    User,
    /// A phone (PSTN) participant.
    Phone,
    /// An anonymous guest; guests wait in the lobby until admitted.
    Guest,
}

/// What a simulated user sends into the call. In a scenario file: `says = "speech"`,
/// `says = { tone_hz = 440.0 }` or `says = { wav = "file.wav" }`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "VoiceRepr", into = "VoiceRepr")]
pub enum Voice {
    /// A sine tone, easy to recognise by frequency.
    Tone {
        /// Frequency in Hz, 50..=7000.
        tone_hz: f32,
    },
    /// A 16-bit PCM WAV file, looped.
    Wav {
        /// Path, relative to the scenario file.
        wav: PathBuf,
    },
    /// The built-in speech recording.
    #[default]
    Speech,
}

/// How a voice is written in a file: a name, or a table.
#[derive(Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum VoiceRepr {
    Named(String),
    Tone { tone_hz: f32 },
    Wav { wav: PathBuf },
}

impl TryFrom<VoiceRepr> for Voice {
    type Error = String;

    fn try_from(repr: VoiceRepr) -> Result<Voice, String> {
        match repr {
            VoiceRepr::Named(name) if name == "speech" => Ok(Voice::Speech),
            VoiceRepr::Named(name) => Err(format!(
                "unknown voice {name:?}: use \"speech\", {{ tone_hz = … }} or {{ wav = … }}"
            )),
            VoiceRepr::Tone { tone_hz } => Ok(Voice::Tone { tone_hz }),
            VoiceRepr::Wav { wav } => Ok(Voice::Wav { wav }),
        }
    }
}

impl From<Voice> for VoiceRepr {
    fn from(voice: Voice) -> VoiceRepr {
        match voice {
            Voice::Speech => VoiceRepr::Named("speech".into()),
            Voice::Tone { tone_hz } => VoiceRepr::Tone { tone_hz },
            Voice::Wav { wav } => VoiceRepr::Wav { wav },
        }
    }
}

/// Why a scenario was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// Larger than [`MAX_SCENARIO_BYTES`].
    #[error("scenario is {0} bytes; the limit is {MAX_SCENARIO_BYTES}")]
    TooLarge(usize),
    /// Not valid TOML or JSON for a scenario.
    #[error("cannot read scenario: {0}")]
    Syntax(String),
    /// More than [`MAX_USERS`] users.
    #[error("{0} users; at most {MAX_USERS} are simulated")]
    TooManyUsers(usize),
    /// A user is described inconsistently.
    #[error("user {user:?}: {reason}")]
    User {
        /// The user's name.
        user: String,
        /// What is wrong.
        reason: String,
    },
    /// The `[meeting]` section is not usable.
    #[error("meeting: {0}")]
    Meeting(String),
    /// An impairment value is out of range.
    #[error("media impairment: {0}")]
    Impairment(#[from] ImpairmentError),
    /// A signaling fault value is out of range.
    #[error("signaling faults: {0}")]
    Faults(String),
}

impl Scenario {
    /// Reads a scenario from TOML, or from JSON when the text starts with `{`.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        if text.len() > MAX_SCENARIO_BYTES {
            return Err(ScenarioError::TooLarge(text.len()));
        }
        let scenario: Scenario = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| ScenarioError::Syntax(e.to_string()))?
        } else {
            toml::from_str(text).map_err(|e| ScenarioError::Syntax(e.message().to_owned()))?
        };
        scenario.validate()?;
        Ok(scenario)
    }

    /// Checks every value is meaningful.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.users.len() > MAX_USERS {
            return Err(ScenarioError::TooManyUsers(self.users.len()));
        }
        let mut names = HashSet::new();
        for user in &self.users {
            user.validate()?;
            if !names.insert(user.name.as_str()) {
                return Err(user.error("another user has the same name"));
            }
        }
        if let Some(meeting) = &self.meeting {
            meeting.validate()?;
        }
        self.media.to_bot.validate()?;
        self.media.from_bot.validate()?;
        self.signaling.validate().map_err(ScenarioError::Faults)
    }

    /// The demo's default: two users saying distinct tones, no impairment.
    pub fn two_users() -> Scenario {
        Scenario {
            users: vec![
                SimUser::new("Alice", Voice::Speech),
                SimUser::new("Bob", Voice::Tone { tone_hz: 440.0 }),
            ],
            ..Scenario::default()
        }
    }
}

impl SimUser {
    /// A Teams user who joins at once, stays, and says `says`.
    pub fn new(name: impl Into<String>, says: Voice) -> SimUser {
        SimUser {
            name: name.into(),
            identity: IdentityKind::User,
            id: None,
            phone: None,
            join_ms: 0,
            leave_ms: None,
            says,
            talks: None,
            declines: false,
            presses: Presses::default(),
            shares: None,
        }
    }

    fn error(&self, reason: &str) -> ScenarioError {
        ScenarioError::User {
            user: self.name.clone(),
            reason: reason.to_owned(),
        }
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        if self.name.trim().is_empty() || self.name.chars().count() > 256 {
            return Err(self.error("name must be 1..=256 characters"));
        }
        match (self.identity, &self.phone) {
            (IdentityKind::Phone, None) => {
                return Err(self.error("a phone identity needs `phone` (E.164)"));
            }
            (IdentityKind::Phone, Some(number)) if !is_e164(number) => {
                return Err(self.error("`phone` must be E.164, like +14255550123"));
            }
            (IdentityKind::User | IdentityKind::Guest, Some(_)) => {
                return Err(self.error("`phone` is only for phone identities"));
            }
            _ => {}
        }
        if self.leave_ms.is_some_and(|leave| leave <= self.join_ms) {
            return Err(self.error("leave_ms must come after join_ms"));
        }
        if let Some(t) = &self.talks {
            t.validate().map_err(|reason| self.error(reason))?;
        }
        if let Some(share) = &self.shares
            && (share.from_ms > 3_600_000 || share.for_ms.is_some_and(|f| f == 0 || f > 3_600_000))
        {
            return Err(self.error("shares: from_ms and for_ms (> 0) must be within an hour"));
        }
        if let Voice::Tone { tone_hz } = self.says
            && !(50.0..=7000.0).contains(&tone_hz)
        {
            return Err(self.error("tone_hz must be within 50..=7000"));
        }
        Ok(())
    }
}

impl Meeting {
    fn validate(&self) -> Result<(), ScenarioError> {
        let id = &self.join_meeting_id;
        if id.is_empty() || id.len() > MAX_MEETING_FIELD || !id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ScenarioError::Meeting(format!(
                "join_meeting_id must be 1..={MAX_MEETING_FIELD} digits"
            )));
        }
        if let Some(code) = &self.passcode
            && (code.is_empty() || code.chars().count() > MAX_MEETING_FIELD)
        {
            return Err(ScenarioError::Meeting(format!(
                "passcode must be 1..={MAX_MEETING_FIELD} characters (leave it out for none)"
            )));
        }
        if let Some(thread) = &self.thread_id
            && !is_thread_id(thread)
        {
            return Err(ScenarioError::Meeting(
                "thread_id must look like 19:meeting_…@thread.v2 (or a channel's @thread.tacv2)"
                    .into(),
            ));
        }
        let digits =
            |m: &str| !m.is_empty() && m.len() <= 32 && m.bytes().all(|b| b.is_ascii_digit());
        match &self.message_id {
            Some(m) if !digits(m) => {
                return Err(ScenarioError::Meeting("message_id must be digits".into()));
            }
            Some(m) if self.is_channel() && m == "0" => {
                return Err(ScenarioError::Meeting(
                    "a channel meeting's message_id is its channel post, not 0".into(),
                ));
            }
            None if self.is_channel() => {
                return Err(ScenarioError::Meeting(
                    "a channel meeting needs message_id (its channel post)".into(),
                ));
            }
            _ => {}
        }
        if let Some(id) = &self.organizer_id
            && uuid::Uuid::parse_str(id).is_err()
        {
            return Err(ScenarioError::Meeting("organizer_id must be a GUID".into()));
        }
        Ok(())
    }

    /// The meeting's chat thread: as declared, or `19:meeting_sim{join id}@thread.v2`, which
    /// stays the same from run to run.
    pub fn thread(&self) -> String {
        self.thread_id
            .clone()
            .unwrap_or_else(|| format!("19:meeting_sim{}@thread.v2", self.join_meeting_id))
    }

    /// The message the meeting hangs off: the channel post, or `0` for a meeting chat.
    pub fn message(&self) -> &str {
        self.message_id.as_deref().unwrap_or("0")
    }

    /// True when the meeting is held in a channel (its thread is a channel's).
    pub fn is_channel(&self) -> bool {
        self.thread_id
            .as_deref()
            .is_some_and(|t| t.ends_with("@thread.tacv2") || t.ends_with("@thread.skype"))
    }
}

/// `19:{name}@thread.{kind}`, at most 256 characters, in the characters Teams uses.
fn is_thread_id(id: &str) -> bool {
    let Some((name, kind)) = id
        .strip_prefix("19:")
        .and_then(|rest| rest.rsplit_once("@thread."))
    else {
        return false;
    };
    id.len() <= 256
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'='))
        && !kind.is_empty()
        && kind.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `+` then 8 to 15 digits, the first not zero (ITU-T E.164).
pub fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const EXAMPLE: &str = r#"
seed = 7

[[users]]
name = "Alice"
identity = "user"
says = { tone_hz = 440.0 }

[[users]]
name = "Bob (phone)"
identity = "phone"
phone = "+14255550123"
join_ms = 3000
leave_ms = 9000
says = { wav = "bob.wav" }

[[users]]
name = "Guest"
identity = "guest"

[media.to_bot]
loss = 0.05
jitter = 30

[signaling]
throttle = 0.2
retry_after_s = 1
legacy_first = true

[meeting]
join_meeting_id = "1234567890123"
passcode = "Xy7pQ2"
"#;

    #[test]
    fn presses_are_read_and_written_back() {
        let p = Presses::try_from("1@2000ms, #@3000ms,*@0ms".to_owned()).unwrap();
        assert_eq!(
            p.0,
            vec![(Tone::Tone1, 2000), (Tone::Pound, 3000), (Tone::Star, 0)]
        );
        assert_eq!(String::from(p.clone()), "1@2000ms, #@3000ms, *@0ms");
        for bad in [
            "1",
            "1@2000",
            "x@1ms",
            "12@1ms",
            "1@-5ms",
            "1@99999999999ms",
        ] {
            assert!(Presses::try_from(bad.to_owned()).is_err(), "{bad:?}");
        }
        assert!(Presses::try_from(String::new()).unwrap().is_empty());
    }

    #[test]
    fn reads_the_documented_example() {
        let s = Scenario::parse(EXAMPLE).unwrap();
        assert_eq!(s.seed, 7);
        assert_eq!(s.users.len(), 3);
        assert_eq!(s.users[0].says, Voice::Tone { tone_hz: 440.0 });
        assert_eq!(s.users[1].identity, IdentityKind::Phone);
        assert_eq!(s.users[1].leave_ms, Some(9000));
        assert_eq!(
            s.users[1].says,
            Voice::Wav {
                wav: "bob.wav".into()
            }
        );
        assert_eq!(s.users[2].says, Voice::Speech);
        assert_eq!(s.users[2].identity, IdentityKind::Guest);
        assert_eq!(s.media.to_bot.jitter, Duration::from_millis(30));
        assert!(s.media.from_bot.is_clean());
        assert_eq!(s.signaling.throttle, 0.2);
        assert!(s.signaling.legacy_first);
        assert!(!Scenario::parse("").unwrap().signaling.legacy_first);
        let meeting = s.meeting.unwrap();
        assert_eq!(meeting.join_meeting_id, "1234567890123");
        assert_eq!(meeting.passcode.as_deref(), Some("Xy7pQ2"));
        assert_eq!(Scenario::parse("").unwrap().meeting, None);
    }

    #[test]
    fn json_and_toml_agree() {
        let toml_form = Scenario::parse(EXAMPLE).unwrap();
        let json = serde_json::to_string(&toml_form).unwrap();
        assert_eq!(Scenario::parse(&json).unwrap(), toml_form);
    }

    #[test]
    fn refuses_inconsistent_users_and_values() {
        let cases = [
            (
                r#"[[users]]
name = "P"
identity = "phone""#,
                "needs `phone`",
            ),
            (
                r#"[[users]]
name = "P"
identity = "phone"
phone = "4255550123""#,
                "E.164",
            ),
            (
                r#"[[users]]
name = "U"
phone = "+14255550123""#,
                "only for phone",
            ),
            (
                r#"[[users]]
name = "U"
join_ms = 5
leave_ms = 5"#,
                "after join_ms",
            ),
            (
                r#"[[users]]
name = "U"
says = { tone_hz = 20000.0 }"#,
                "tone_hz",
            ),
            (
                r#"[[users]]
name = "A"
[[users]]
name = "A""#,
                "same name",
            ),
            ("[meeting]\njoin_meeting_id = \"12a\"", "digits"),
            ("[meeting]\njoin_meeting_id = \"\"", "digits"),
            (
                "[meeting]\njoin_meeting_id = \"12\"\npasscode = \"\"",
                "passcode",
            ),
            ("[meeting]\npasscode = \"x\"", "cannot read"),
            (
                "[meeting]\njoin_meeting_id = \"12\"\nthread_id = \"meeting_x@thread.v2\"",
                "thread_id",
            ),
            (
                "[meeting]\njoin_meeting_id = \"12\"\nthread_id = \"19:c@thread.tacv2\"",
                "needs message_id",
            ),
            (
                "[meeting]\njoin_meeting_id = \"12\"\nthread_id = \"19:c@thread.tacv2\"\nmessage_id = \"0\"",
                "channel post",
            ),
            (
                "[meeting]\njoin_meeting_id = \"12\"\nmessage_id = \"x\"",
                "digits",
            ),
            (
                "[meeting]\njoin_meeting_id = \"12\"\norganizer_id = \"bob\"",
                "GUID",
            ),
            ("[media.to_bot]\nloss = 2.0", "loss"),
            ("[signaling]\nthrottle = -1.0", "throttle"),
            ("seed = \"x\"", "cannot read"),
            ("[[users]]\nname = \"U\"\nsurname = \"V\"", "cannot read"),
            ("[[users]]\nname = \"U\"\nsays = \"singing\"", "cannot read"),
        ];
        for (text, needle) in cases {
            let err = Scenario::parse(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        assert!(matches!(
            Scenario::parse(&" ".repeat(MAX_SCENARIO_BYTES + 1)),
            Err(ScenarioError::TooLarge(_))
        ));
    }

    #[test]
    fn e164() {
        for ok in ["+14255550123", "+4930123456", "+861234567890123"] {
            assert!(is_e164(ok), "{ok}");
        }
        for bad in [
            "14255550123",
            "+0425555",
            "+1425",
            "+1425555012345678",
            "+1-425-555",
            "",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }

    #[test]
    fn every_shipped_scenario_parses() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios");
        let mut count = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let scenario =
                Scenario::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!scenario.users.is_empty(), "{}", path.display());
            count += 1;
        }
        assert!(count >= 5, "{count} scenarios");
    }

    #[test]
    fn turns_alternate_talk_and_silence_on_the_call_clock() {
        let t = Turns {
            every_ms: 6000,
            for_ms: 2800,
            from_ms: 3000,
        };
        let talking: Vec<bool> = [0, 2999, 3000, 5799, 5800, 8999, 9000, 11_000]
            .iter()
            .map(|&ms| t.talking_at(ms))
            .collect();
        assert_eq!(
            talking,
            [false, false, true, true, false, false, true, true]
        );
        let text = "[[users]]\nname = \"A\"\ntalks = { every_ms = 6000, for_ms = 3000 }\n";
        let s = Scenario::parse(text).unwrap();
        assert_eq!(s.users[0].talks.unwrap().from_ms, 0);
        for bad in [
            "{ every_ms = 1000, for_ms = 2000 }",
            "{ every_ms = 10, for_ms = 10 }",
            "{ every_ms = 1000, for_ms = 0 }",
        ] {
            let text = format!("[[users]]\nname = \"A\"\ntalks = {bad}\n");
            assert!(Scenario::parse(&text).is_err(), "{bad}");
        }
    }
}
