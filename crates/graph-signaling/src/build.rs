//! Request bodies for the call scenarios a bot places: P2P, group, meeting joins, PSTN, guest.

use crate::models::{
    Call, CallOptions, ChatInfo, IdentitySet, InvitationParticipantInfo, MediaConfig, MeetingInfo,
    Nullable, ParticipantInfo,
};

/// A P2P call from the bot to one user.
pub fn p2p_user_call(
    callback_uri: &str,
    bot: IdentitySet,
    user_id: &str,
    user_name: Option<String>,
    media: MediaConfig,
) -> Call {
    let mut call = Call::outgoing(callback_uri, media);
    call.source = Nullable::Value(ParticipantInfo::new(bot));
    call.targets = Nullable::Value(vec![InvitationParticipantInfo::new(IdentitySet::user(
        user_id, user_name,
    ))]);
    call
}

/// A group call with several users (at most five).
pub fn group_call(
    callback_uri: &str,
    bot: IdentitySet,
    users: &[(&str, Option<String>)],
    subject: Option<String>,
    media: MediaConfig,
) -> Call {
    let mut call = Call::outgoing(callback_uri, media);
    call.direction = Nullable::Value(crate::models::CallDirection::Outgoing);
    call.subject = subject.into();
    call.source = Nullable::Value(ParticipantInfo::new(bot));
    call.targets = Nullable::Value(
        users
            .iter()
            .map(|(id, name)| InvitationParticipantInfo::new(IdentitySet::user(*id, name.clone())))
            .collect(),
    );
    call
}

/// Joins a scheduled meeting by its chat thread and organizer.
pub fn join_meeting_by_organizer(
    callback_uri: &str,
    chat_info: ChatInfo,
    organizer: IdentitySet,
    tenant_id: &str,
    media: MediaConfig,
) -> Call {
    let mut call = Call::outgoing(callback_uri, media);
    call.direction = Nullable::Value(crate::models::CallDirection::Outgoing);
    call.chat_info = Nullable::Value(chat_info);
    call.meeting_info = Nullable::Value(MeetingInfo::organizer(organizer, Some(true)));
    call.tenant_id = Nullable::Value(tenant_id.to_owned());
    call
}

/// Joins a meeting by join id and optional passcode.
pub fn join_meeting_by_id(
    callback_uri: &str,
    join_meeting_id: &str,
    passcode: Option<String>,
    tenant_id: &str,
    media: MediaConfig,
) -> Call {
    let mut call = Call::outgoing(callback_uri, media);
    call.meeting_info = Nullable::Value(MeetingInfo::join_meeting_id(join_meeting_id, passcode));
    call.tenant_id = Nullable::Value(tenant_id.to_owned());
    call
}

/// Makes a meeting join appear as a guest with the given display name.
pub fn as_guest(mut call: Call, guest_id: &str, display_name: &str) -> Call {
    call.source = Nullable::Value(ParticipantInfo::new(IdentitySet::guest(
        guest_id,
        Some(display_name.to_owned()),
    )));
    call
}

/// A PSTN call from an application instance (with a number) to an E.164 number.
pub fn pstn_call(
    callback_uri: &str,
    application_instance_id: &str,
    display_name: Option<String>,
    number: &str,
    tenant_id: &str,
    media: MediaConfig,
) -> Call {
    let mut call = Call::outgoing(callback_uri, media);
    call.source = Nullable::Value(ParticipantInfo::new(IdentitySet::application_instance(
        application_instance_id,
        display_name,
    )));
    call.targets = Nullable::Value(vec![InvitationParticipantInfo::new(IdentitySet::phone(
        number,
    ))]);
    call.tenant_id = Nullable::Value(tenant_id.to_owned());
    call
}

/// Turns on delta rosters and content sharing notifications (recommended for large meetings).
pub fn with_delta_roster(mut call: Call) -> Call {
    call.call_options = Nullable::Value(CallOptions::outgoing(true, true));
    call
}

/// True when the call is a group call or meeting (chatInfo, meetingInfo, or several targets):
/// the calls that accept several participants per invite.
pub fn is_group_call(call: &Call) -> bool {
    call.chat_info.get().is_some()
        || call.meeting_info.get().is_some()
        || call.targets.get().is_some_and(|t| t.len() > 1)
}
