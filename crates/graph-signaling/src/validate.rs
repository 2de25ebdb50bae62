//! Client-side checks of the Graph calling rules, so a request that the service would refuse
//! (or worse, half-apply) fails before it is sent.

use crate::models::{Call, IdentitySet, InvitationParticipantInfo, MeetingInfo};

/// Longest `clientContext` the service accepts.
pub const MAX_CLIENT_CONTEXT: usize = 256;

/// Most VoIP users a group call (or one invite request) may hold.
pub const MAX_GROUP_PARTICIPANTS: usize = 5;

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
