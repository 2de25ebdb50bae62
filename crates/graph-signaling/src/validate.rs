//! Client-side checks of the Graph calling rules, so a request that the service would refuse
//! (or worse, half-apply) fails before it is sent.

use crate::models::{
    AudioRoutingGroup, Call, IdentitySet, InvitationParticipantInfo, MediaPrompt, MeetingInfo,
    RecordResponseBody, Tone,
};

/// Longest `clientContext` the service accepts.
pub const MAX_CLIENT_CONTEXT: usize = 256;

/// Most VoIP users a group call (or one invite request) may hold.
pub const MAX_GROUP_PARTICIPANTS: usize = 5;

/// Most prompts one `playPrompt` plays.
pub const MAX_PROMPTS: usize = 20;

/// Most prompts one `recordResponse` plays before recording.
pub const MAX_RECORD_PROMPTS: usize = 1;

/// Range of `recordResponse`'s timeouts and duration, seconds.
pub const RECORD_SECONDS: std::ops::RangeInclusive<u32> = 1..=120;

/// Longest prompt URL accepted (a bound on what a bot sends, well above real CDN URLs).
pub const MAX_PROMPT_URI: usize = 2048;

/// Most keys one `sendDtmfTones` sends (a bound of ours: dial strings are short).
pub const MAX_DTMF_TONES: usize = 64;

/// A request that breaks a calling rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// `clientContext` is empty or longer than 256 characters.
    #[error("clientContext must be 1..=256 characters, got {0}")]
    ClientContext(usize),
    /// A phone identity is not E.164 (`+` then 2 to 15 digits, first not 0).
    #[error("phone number {0:?} is not E.164 (+ followed by up to 15 digits)")]
    NotE164(String),
    /// No participants / targets.
    #[error("at least one participant is required")]
    NoParticipants,
    /// More than five participants.
    #[error("at most {MAX_GROUP_PARTICIPANTS} participants per request, got {0}")]
    TooManyParticipants(usize),
    /// Several participants in a request for a call that is not a group call.
    #[error("several participants can be invited only into a group call")]
    SeveralOnlyInGroupCalls,
    /// `replacesCallId` with more than one participant: the service would move only the first.
    #[error(
        "replacesCallId needs exactly one participant (the service moves only the first), got {0}"
    )]
    ReplacesNeedsExactlyOne(usize),
    /// `participantId` (moving a participant) without `replacesCallId`.
    #[error("participantId requires replacesCallId")]
    ParticipantIdWithoutReplaces,
    /// A participant or target has no identity.
    #[error("participant {0} has no identity")]
    MissingIdentity(usize),
    /// A required property is missing.
    #[error("{0} is required")]
    Missing(&'static str),
    /// A PSTN target needs an application instance as the call's source.
    #[error("calling a phone number needs source.identity.applicationInstance")]
    PstnNeedsApplicationInstance,
    /// A meeting join needs chatInfo with organizer meetingInfo.
    #[error("joining a meeting by organizer needs chatInfo.threadId")]
    MeetingNeedsChatInfo,
    /// joinMeetingId must be non-empty digits.
    #[error("joinMeetingId {0:?} must be digits")]
    JoinMeetingId(String),
    /// A call id that cannot be put in a URL path.
    #[error("call id {0:?} is not a valid id")]
    BadId(String),
    /// The 15 s window to answer an incoming call has passed.
    #[error("the 15 s window to answer the incoming call has passed")]
    AnswerWindowElapsed,
    /// A prompt list is empty or too long.
    #[error("{action} takes {min}..={max} prompts, got {got}")]
    PromptCount {
        /// The action.
        action: &'static str,
        /// Fewest allowed.
        min: usize,
        /// Most allowed.
        max: usize,
        /// How many were given.
        got: usize,
    },
    /// A prompt's URI is not an absolute http(s) URL.
    #[error("prompt uri {0:?} must be an absolute http(s) URL of at most 2048 characters")]
    PromptUri(String),
    /// A recordResponse timeout or duration is outside 1..=120 seconds.
    #[error("{0} must be 1..=120 seconds, got {1}")]
    RecordSeconds(&'static str, u32),
    /// A stop tone is not a keypad key.
    #[error("stop tone {0:?} is not a keypad key (0-9, *, #, A-D)")]
    StopTone(String),
    /// An audio routing group without sources or receivers, or with a bad participant id.
    #[error("an audio routing group needs 1..=100 sources and receivers (participant ids)")]
    RoutingGroup,
    /// sendDtmfTones without keys, with too many, or with one this version does not know.
    #[error("sendDtmfTones needs 1..=64 known keys, got {0}")]
    DtmfTones(usize),
}

/// Checks an id that goes into a URL path (call or participant id).
pub fn path_id(id: &str) -> Result<(), ValidationError> {
    let ok = !id.is_empty()
        && id.len() <= 256
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::BadId(id.to_owned()))
    }
}

/// Checks a `clientContext`.
pub fn client_context(ctx: &str) -> Result<(), ValidationError> {
    let n = ctx.chars().count();
    if n == 0 || n > MAX_CLIENT_CONTEXT {
        return Err(ValidationError::ClientContext(n));
    }
    Ok(())
}

/// Checks the prompts of `action`: `min..=max` of them, each an absolute http(s) URL (the
/// service fetches them itself).
pub fn prompts(
    action: &'static str,
    list: &[MediaPrompt],
    min: usize,
    max: usize,
) -> Result<(), ValidationError> {
    if !(min..=max).contains(&list.len()) {
        return Err(ValidationError::PromptCount {
            action,
            min,
            max,
            got: list.len(),
        });
    }
    for p in list {
        let uri = p.media_info.uri.as_str();
        let scheme_ok = ["https://", "http://"]
            .iter()
            .any(|s| uri.len() > s.len() && uri[..s.len()].eq_ignore_ascii_case(s));
        if !scheme_ok || uri.len() > MAX_PROMPT_URI || uri.chars().any(char::is_whitespace) {
            return Err(ValidationError::PromptUri(uri.chars().take(80).collect()));
        }
    }
    Ok(())
}

/// Checks a recordResponse body: at most one prompt, timeouts and duration in 1..=120 s, stop
/// tones keypad keys, clientContext length.
pub fn record_response(body: &RecordResponseBody) -> Result<(), ValidationError> {
    prompts("recordResponse", &body.prompts, 0, MAX_RECORD_PROMPTS)?;
    for (name, value) in [
        (
            "initialSilenceTimeoutInSeconds",
            body.initial_silence_timeout_in_seconds,
        ),
        (
            "maxSilenceTimeoutInSeconds",
            body.max_silence_timeout_in_seconds,
        ),
        (
            "maxRecordDurationInSeconds",
            body.max_record_duration_in_seconds,
        ),
    ] {
        if let Some(v) = value
            && !RECORD_SECONDS.contains(&v)
        {
            return Err(ValidationError::RecordSeconds(name, v));
        }
    }
    for t in &body.stop_tones {
        let mut chars = t.chars();
        let key = chars.next().and_then(Tone::from_char);
        if chars.next().is_some() || !matches!(key, Some(k) if k != Tone::Flash) {
            return Err(ValidationError::StopTone(t.chars().take(8).collect()));
        }
    }
    if let Some(ctx) = &body.client_context {
        client_context(ctx)?;
    }
    Ok(())
}

/// Checks an audio routing group: 1..=100 sources and receivers, each a participant id.
pub fn routing_group(group: &AudioRoutingGroup) -> Result<(), ValidationError> {
    let ok =
        |ids: &[String]| (1..=100).contains(&ids.len()) && ids.iter().all(|id| path_id(id).is_ok());
    if ok(&group.sources) && ok(&group.receivers) {
        Ok(())
    } else {
        Err(ValidationError::RoutingGroup)
    }
}

/// Checks the keys of a sendDtmfTones: 1..=64, all known.
pub fn dtmf_tones(tones: &[Tone]) -> Result<(), ValidationError> {
    if tones.is_empty()
        || tones.len() > MAX_DTMF_TONES
        || tones.iter().any(|t| matches!(t, Tone::Unknown(_)))
    {
        return Err(ValidationError::DtmfTones(tones.len()));
    }
    Ok(())
}

/// Checks an E.164 number: `+`, then 2..=15 digits, the first not `0`.
pub fn e164(number: &str) -> Result<(), ValidationError> {
    let bad = || ValidationError::NotE164(number.to_owned());
    let digits = number.strip_prefix('+').ok_or_else(bad)?;
    if !(2..=15).contains(&digits.len())
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || digits.starts_with('0')
    {
        return Err(bad());
    }
    Ok(())
}

fn identity_set(set: &IdentitySet) -> Result<(), ValidationError> {
    if let Some(phone) = set.phone.get() {
        e164(phone.id.as_deref().unwrap_or_default())?;
    }
    Ok(())
}

fn participants(list: &[InvitationParticipantInfo]) -> Result<bool, ValidationError> {
    if list.is_empty() {
        return Err(ValidationError::NoParticipants);
    }
    if list.len() > MAX_GROUP_PARTICIPANTS {
        return Err(ValidationError::TooManyParticipants(list.len()));
    }
    let mut any_phone = false;
    for (i, p) in list.iter().enumerate() {
        let set = p
            .identity
            .get()
            .ok_or(ValidationError::MissingIdentity(i))?;
        identity_set(set)?;
        any_phone |= set.phone.get().is_some();
        if p.participant_id.get().is_some() && p.replaces_call_id.get().is_none() {
            return Err(ValidationError::ParticipantIdWithoutReplaces);
        }
    }
    Ok(any_phone)
}

/// Checks an invite: 1..=5 participants, several only into a group call, `replacesCallId` with
/// exactly one, phones in E.164, clientContext length.
pub fn invite(
    list: &[InvitationParticipantInfo],
    client_context_value: Option<&str>,
    group_call: bool,
) -> Result<(), ValidationError> {
    participants(list)?;
    if list.len() > 1 && !group_call {
        return Err(ValidationError::SeveralOnlyInGroupCalls);
    }
    if list.iter().any(|p| p.replaces_call_id.get().is_some()) && list.len() != 1 {
        return Err(ValidationError::ReplacesNeedsExactlyOne(list.len()));
    }
    if let Some(ctx) = client_context_value {
        client_context(ctx)?;
    }
    Ok(())
}

/// Checks a create-call body: callback and media config present; targets (if any) 1..=5 with
/// valid identities; a phone target needs an application instance source; meeting info
/// consistent.
pub fn create_call(call: &Call) -> Result<(), ValidationError> {
    if call.callback_uri.get().is_none() {
        return Err(ValidationError::Missing("callbackUri"));
    }
    if call.media_config.get().is_none() {
        return Err(ValidationError::Missing("mediaConfig"));
    }
    let targets = call.targets.get().map_or(&[][..], Vec::as_slice);
    let meeting = call.meeting_info.get();
    if meeting.is_none() {
        let any_phone = participants(targets)?;
        if any_phone {
            let has_instance = call
                .source
                .get()
                .and_then(|s| s.identity.get())
                .is_some_and(|i| i.application_instance.get().is_some());
            if !has_instance {
                return Err(ValidationError::PstnNeedsApplicationInstance);
            }
        }
    } else if !targets.is_empty() {
        participants(targets)?;
    }
    match meeting {
        Some(MeetingInfo::Organizer(o)) => {
            if o.organizer.get().is_none() {
                return Err(ValidationError::Missing("meetingInfo.organizer"));
            }
            if call
                .chat_info
                .get()
                .and_then(|c| c.thread_id.get())
                .is_none()
            {
                return Err(ValidationError::MeetingNeedsChatInfo);
            }
        }
        Some(MeetingInfo::JoinMeetingId(j)) => {
            let id = j.join_meeting_id.as_deref().unwrap_or_default();
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ValidationError::JoinMeetingId(id.to_owned()));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_numbers() {
        for ok in ["+12345678901", "+4930123456", "+123456789012345"] {
            assert_eq!(e164(ok), Ok(()), "{ok}");
        }
        for bad in [
            "12345678901",
            "+",
            "+1",
            "+0123456",
            "+1234567890123456",
            "+1 234",
            "+1-234",
            "",
        ] {
            assert!(e164(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prompt_rules() {
        let ok = MediaPrompt::new("https://cdn.example.com/menu.wav", None);
        assert_eq!(
            prompts("playPrompt", std::slice::from_ref(&ok), 1, 20),
            Ok(())
        );
        assert!(matches!(
            prompts("playPrompt", &[], 1, 20),
            Err(ValidationError::PromptCount { got: 0, .. })
        ));
        assert!(matches!(
            prompts("playPrompt", &vec![ok.clone(); 21], 1, 20),
            Err(ValidationError::PromptCount { got: 21, .. })
        ));
        for bad in [
            "",
            "menu.wav",
            "ftp://x/y.wav",
            "https://",
            "https://a b/c.wav",
        ] {
            let p = MediaPrompt::new(bad, None);
            assert!(
                matches!(
                    prompts("playPrompt", &[p], 1, 20),
                    Err(ValidationError::PromptUri(_))
                ),
                "{bad:?}"
            );
        }
        let long = MediaPrompt::new(format!("https://x/{}", "a".repeat(3000)), None);
        assert!(prompts("playPrompt", &[long], 1, 20).is_err());
    }

    #[test]
    fn record_response_rules() {
        let mut body = RecordResponseBody {
            max_record_duration_in_seconds: Some(120),
            initial_silence_timeout_in_seconds: Some(1),
            stop_tones: vec!["#".into(), "1".into(), "*".into()],
            ..RecordResponseBody::default()
        };
        assert_eq!(record_response(&body), Ok(()));
        body.max_record_duration_in_seconds = Some(121);
        assert_eq!(
            record_response(&body),
            Err(ValidationError::RecordSeconds(
                "maxRecordDurationInSeconds",
                121
            ))
        );
        body.max_record_duration_in_seconds = None;
        body.max_silence_timeout_in_seconds = Some(0);
        assert!(record_response(&body).is_err());
        body.max_silence_timeout_in_seconds = None;
        for bad in ["##", "x", "", "!"] {
            body.stop_tones = vec![bad.into()];
            assert!(record_response(&body).is_err(), "{bad:?}");
        }
        body.stop_tones.clear();
        body.prompts = vec![MediaPrompt::new("https://x/a.wav", None); 2];
        assert!(matches!(
            record_response(&body),
            Err(ValidationError::PromptCount { got: 2, max: 1, .. })
        ));
    }

    #[test]
    fn dtmf_tone_rules() {
        assert_eq!(dtmf_tones(&[Tone::Tone1, Tone::Pound]), Ok(()));
        assert!(dtmf_tones(&[]).is_err());
        assert!(dtmf_tones(&vec![Tone::Tone1; 65]).is_err());
        assert!(dtmf_tones(&[Tone::Unknown("tone42".into())]).is_err());
    }

    #[test]
    fn client_context_length() {
        assert!(client_context(&"a".repeat(256)).is_ok());
        assert_eq!(
            client_context(&"a".repeat(257)),
            Err(ValidationError::ClientContext(257))
        );
        assert_eq!(client_context(""), Err(ValidationError::ClientContext(0)));
        // Characters, not bytes.
        assert!(client_context(&"é".repeat(256)).is_ok());
    }
}
