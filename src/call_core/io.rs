//! What goes into a [`super::CallCore`] and what comes out.

use std::time::Duration;

use graph_signaling::error::GraphError;
use graph_signaling::models::{
    CommsNotification, CommsOperation, InvitationParticipantInfo, MediaPrompt, ParticipantInfo,
    RecordResponseBody, RecordingStatus, ScreenSharingRole, Tone,
};
use graph_signaling::request::{Answer, PreparedRequest};
use graph_signaling::validate::ValidationError;
use media_session::SourceId;
use media_transport::MediaEvent;
use media_transport::dtmf::DtmfDigit;

use super::events::CallEvent;

/// Names a Graph request the core asked for, so its response can be fed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Names a request of the application, so its outcome can be handed back to whoever waits.
/// Chosen by the caller; the core only echoes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// Everything that can happen to a call. Fed to [`super::CallCore::handle_input`] with the
/// time it happened.
// A response is moved in once and consumed at once; boxing it would add an allocation per
// request for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Input {
    /// The calling service posted a notification about this call (already authenticated).
    Notification(Box<CommsNotification>),
    /// The call's media session reported something.
    Media(MediaEvent),
    /// The application asked for something.
    App(AppRequest),
    /// The answer to a [`GraphRequest`] the core emitted.
    Response {
        /// Which request.
        id: RequestId,
        /// The operation the response body carried (if any), or why the request failed.
        result: Result<Option<CommsOperation>, GraphError>,
    },
    /// Time passed: the core handles whatever is due at `now`.
    Timeout,
}

/// What the application can ask of a call.
#[derive(Debug, Clone, PartialEq)]
pub enum AppRequest {
    /// Hang up (in a group call, leave). Answered with [`Output::Reply`] once the service took
    /// the request.
    HangUp(Ticket),
    /// A call action whose outcome arrives as an operation; answered with [`Output::Reply`]
    /// when the operation completed, failed or timed out.
    Action(Ticket, CallAction),
    /// A request the service answers without an operation (transfer, ...); answered with
    /// [`Output::Reply`] once the service took it.
    Control(Ticket, ControlAction),
    /// Send a DTMF key on the media path.
    SendDtmf {
        /// The key.
        digit: DtmfDigit,
        /// How long it is held.
        duration: Duration,
    },
}

/// A call action the service answers with an operation.
#[derive(Debug, Clone, PartialEq)]
pub enum CallAction {
    /// Invite participants (several only into group calls).
    Invite(Vec<InvitationParticipantInfo>),
    /// Mute the bot.
    MuteSelf,
    /// Unmute the bot.
    UnmuteSelf,
    /// Announce the bot's recording status.
    UpdateRecordingStatus(RecordingStatus),
    /// Play prompts (service-hosted media); the outcome comes when the last one has played.
    PlayPrompt(Vec<MediaPrompt>),
    /// Record the caller's response (service-hosted media); the finished operation names the
    /// recording.
    RecordResponse(Box<RecordResponseBody>),
    /// Report the keys participants press as [`super::CallEvent::Tone`] (service-hosted media).
    SubscribeToTone,
    /// Cancel the prompts and recordings running or queued.
    CancelMediaProcessing,
    /// Have the service send DTMF keys into the call.
    SendDtmfTones {
        /// The keys.
        tones: Vec<Tone>,
        /// Pause between two keys, ms.
        delay_ms: Option<u32>,
    },
    /// Mute another participant (by participant id).
    MuteParticipant(String),
    /// Put a participant on hold with music (the service's, or this prompt).
    StartHoldMusic {
        /// The participant id.
        participant_id: String,
        /// Music of the bot's choice.
        custom_prompt: Option<MediaPrompt>,
    },
    /// Take a participant off hold.
    StopHoldMusic(String),
    /// Add the large gallery view.
    AddLargeGalleryView,
}

impl CallAction {
    /// Graph's name of the action.
    pub fn name(&self) -> &'static str {
        match self {
            CallAction::Invite(_) => "invite",
            CallAction::MuteSelf => "mute",
            CallAction::UnmuteSelf => "unmute",
            CallAction::UpdateRecordingStatus(_) => "updateRecordingStatus",
            CallAction::PlayPrompt(_) => "playPrompt",
            CallAction::RecordResponse(_) => "recordResponse",
            CallAction::SubscribeToTone => "subscribeToTone",
            CallAction::CancelMediaProcessing => "cancelMediaProcessing",
            CallAction::SendDtmfTones { .. } => "sendDtmfTones",
            CallAction::MuteParticipant(_) => "mute",
            CallAction::StartHoldMusic { .. } => "startHoldMusic",
            CallAction::StopHoldMusic(_) => "stopHoldMusic",
            CallAction::AddLargeGalleryView => "addLargeGalleryView",
        }
    }

    /// True for the actions the service supports only on calls with service-hosted media.
    pub fn needs_service_hosted_media(&self) -> bool {
        matches!(
            self,
            CallAction::PlayPrompt(_)
                | CallAction::RecordResponse(_)
                | CallAction::SubscribeToTone
                | CallAction::CancelMediaProcessing
        )
    }
}

/// A request about the call the service takes without an operation to follow: its outcome is
/// the HTTP answer, and what it does shows in the call's notifications.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ControlAction {
    /// Hand the established call to someone else (`transfer`); the bot's leg then ends.
    Transfer {
        /// Who takes the call.
        target: Box<InvitationParticipantInfo>,
        /// Who is transferred, in a group call.
        transferee: Option<Box<ParticipantInfo>>,
    },
    /// Remove a participant (by participant id) from a group call or meeting.
    RemoveParticipant(String),
    /// Take or leave the screen sharer's role.
    ChangeScreenSharingRole(ScreenSharingRole),
}

/// A Graph request about this call, for the shell's (stateless) client to execute.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphRequest {
    /// Feed the answer back as [`Input::Response`] with this id.
    pub id: RequestId,
    /// The call.
    pub call_id: String,
    /// What to send.
    pub kind: CallRequest,
}

impl GraphRequest {
    /// The HTTP request to send, checked against the calling rules.
    pub fn prepare(&self) -> Result<PreparedRequest, ValidationError> {
        let id = self.call_id.as_str();
        match &self.kind {
            CallRequest::KeepAlive => PreparedRequest::keep_alive(id),
            CallRequest::HangUp => PreparedRequest::hang_up(id),
            CallRequest::Invite {
                participants,
                client_context,
                group,
            } => PreparedRequest::invite(id, participants.clone(), client_context, *group),
            CallRequest::MuteSelf { client_context } => {
                PreparedRequest::mute_self(id, client_context)
            }
            CallRequest::UnmuteSelf { client_context } => {
                PreparedRequest::unmute_self(id, client_context)
            }
            CallRequest::UpdateRecordingStatus {
                status,
                client_context,
            } => PreparedRequest::update_recording_status(id, status.clone(), client_context),
            CallRequest::PlayPrompt {
                prompts,
                client_context,
            } => PreparedRequest::play_prompt(id, prompts.clone(), client_context),
            CallRequest::RecordResponse {
                body,
                client_context,
            } => PreparedRequest::record_response(id, (**body).clone(), client_context),
            CallRequest::SubscribeToTone { client_context } => {
                PreparedRequest::subscribe_to_tone(id, client_context)
            }
            CallRequest::CancelMediaProcessing { client_context } => {
                PreparedRequest::cancel_media_processing(id, client_context)
            }
            CallRequest::SendDtmfTones {
                tones,
                delay_ms,
                client_context,
            } => PreparedRequest::send_dtmf_tones(id, tones.clone(), *delay_ms, client_context),
            CallRequest::Transfer { target, transferee } => {
                PreparedRequest::transfer(id, (**target).clone(), transferee.as_deref().cloned())
            }
            CallRequest::MuteParticipant {
                participant_id,
                client_context,
            } => PreparedRequest::mute_participant(id, participant_id, client_context),
            CallRequest::StartHoldMusic {
                participant_id,
                custom_prompt,
                client_context,
            } => PreparedRequest::start_hold_music(
                id,
                participant_id,
                custom_prompt.clone(),
                client_context,
            ),
            CallRequest::StopHoldMusic {
                participant_id,
                client_context,
            } => PreparedRequest::stop_hold_music(id, participant_id, client_context),
            CallRequest::AddLargeGalleryView { client_context } => {
                PreparedRequest::add_large_gallery_view(id, client_context)
            }
            CallRequest::RemoveParticipant(pid) => PreparedRequest::remove_participant(id, pid),
            CallRequest::ChangeScreenSharingRole(role) => {
                PreparedRequest::change_screen_sharing_role(id, role.clone())
            }
        }
    }

    /// What the answer means for the core, to feed back as [`Input::Response`]: the operation
    /// an action's response carries; nothing for keepAlive and hang-up (for which a call the
    /// service no longer knows, 404, counts as hung up).
    pub fn read(
        &self,
        answer: Result<Answer, GraphError>,
    ) -> Result<Option<CommsOperation>, GraphError> {
        match (&self.kind, answer) {
            (CallRequest::HangUp, Err(e)) if e.status() == Some(404) => Ok(None),
            (
                CallRequest::KeepAlive
                | CallRequest::HangUp
                | CallRequest::Transfer { .. }
                | CallRequest::RemoveParticipant(_)
                | CallRequest::ChangeScreenSharingRole(_),
                a,
            ) => a.map(|_| None),
            (_, a) => a?.operation(),
        }
    }
}

/// The request bodies the core sends.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CallRequest {
    /// `POST …/keepAlive`.
    KeepAlive,
    /// `DELETE /communications/calls/{id}`.
    HangUp,
    /// `POST …/participants/invite`.
    Invite {
        /// Who.
        participants: Vec<InvitationParticipantInfo>,
        /// Matches the outcome notification.
        client_context: String,
        /// Whether the call is a group call (several invitees are allowed only there).
        group: bool,
    },
    /// `POST …/mute`.
    MuteSelf {
        /// Matches the outcome notification.
        client_context: String,
    },
    /// `POST …/unmute`.
    UnmuteSelf {
        /// Matches the outcome notification.
        client_context: String,
    },
    /// `POST …/updateRecordingStatus`.
    UpdateRecordingStatus {
        /// The status.
        status: RecordingStatus,
        /// Matches the outcome notification.
        client_context: String,
    },
    /// `POST …/playPrompt`.
    PlayPrompt {
        /// The prompts.
        prompts: Vec<MediaPrompt>,
        /// Matches the outcome notification.
        client_context: String,
    },
    /// `POST …/recordResponse`.
    RecordResponse {
        /// Settings (its clientContext is replaced).
        body: Box<RecordResponseBody>,
        /// Matches the outcome notification.
        client_context: String,
    },
    /// `POST …/subscribeToTone`.
    SubscribeToTone {
        /// Matches the outcome.
        client_context: String,
    },
    /// `POST …/cancelMediaProcessing`.
    CancelMediaProcessing {
        /// Matches the outcome.
        client_context: String,
    },
    /// `POST …/sendDtmfTones`.
    SendDtmfTones {
        /// The keys.
        tones: Vec<Tone>,
        /// Pause between keys, ms.
        delay_ms: Option<u32>,
        /// Matches the outcome notification.
        client_context: String,
    },
    /// `POST …/transfer`.
    Transfer {
        /// Who takes the call.
        target: Box<InvitationParticipantInfo>,
        /// Who is transferred (group calls).
        transferee: Option<Box<ParticipantInfo>>,
    },
    /// `POST …/participants/{pid}/mute`.
    MuteParticipant {
        /// Whom.
        participant_id: String,
        /// Matches the outcome.
        client_context: String,
    },
    /// `POST …/participants/{pid}/startHoldMusic`.
    StartHoldMusic {
        /// Whom.
        participant_id: String,
        /// Music of the bot's choice.
        custom_prompt: Option<MediaPrompt>,
        /// Matches the outcome.
        client_context: String,
    },
    /// `POST …/participants/{pid}/stopHoldMusic`.
    StopHoldMusic {
        /// Whom.
        participant_id: String,
        /// Matches the outcome.
        client_context: String,
    },
    /// `POST …/addLargeGalleryView`.
    AddLargeGalleryView {
        /// Matches the outcome.
        client_context: String,
    },
    /// `DELETE …/participants/{pid}`.
    RemoveParticipant(String),
    /// `POST …/changeScreenSharingRole`.
    ChangeScreenSharingRole(ScreenSharingRole),
}

/// What the shell does to the call's media session.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MediaCommand {
    /// Start (true) or stop (false) encoding and sending the bot's audio.
    SetSending(bool),
    /// Close the media session (or withdraw it if the service never connected).
    Close(String),
    /// Send a DTMF key.
    SendDtmf(DtmfDigit, Duration),
    /// Read the media path's quality figures and report them as [`CallEvent::Quality`].
    ReportQuality,
}

/// Why an application request did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActionError {
    /// The request failed (validation, HTTP status, network), with the service's context.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// The service reported the operation failed.
    #[error("the operation failed: {}", describe(.0))]
    OperationFailed(Box<CommsOperation>),
    /// No outcome arrived in time.
    #[error("no outcome of the operation arrived in time")]
    TimedOut,
    /// The call ended before the outcome was known.
    #[error("the call ended before the outcome was known")]
    CallEnded,
    /// The action works only on a call with service-hosted media (the service plays and
    /// listens); this call's media is the bot's own.
    #[error(
        "{0} needs a call with service-hosted media; this call has app-hosted media (play and \
         read its audio directly instead)"
    )]
    NeedsServiceHostedMedia(&'static str),
}

fn describe(op: &CommsOperation) -> String {
    match op.result_info.get() {
        Some(info) => format!(
            "{} {}/{} {}",
            op.kind(),
            info.code.get().copied().unwrap_or_default(),
            info.subcode.get().copied().unwrap_or_default(),
            info.message.get().map(String::as_str).unwrap_or_default()
        ),
        None => op.kind().to_owned(),
    }
}

/// What the core asks the shell to do, in order.
#[derive(Debug)]
#[non_exhaustive]
pub enum Output {
    /// Send this Graph request; feed its answer back.
    Request(GraphRequest),
    /// The roster lists `source`: deliver its audio to the pipeline.
    Bind(SourceId),
    /// The roster no longer lists `source`: stop delivering it.
    Unbind(SourceId),
    /// Act on the media session.
    Media(MediaCommand),
    /// Tell the application.
    Event(CallEvent),
    /// The outcome of an application request.
    Reply {
        /// The request's ticket.
        ticket: Ticket,
        /// The operation (for actions), nothing for a hang-up, or why it failed.
        result: Result<Option<CommsOperation>, ActionError>,
    },
    /// The call is over on both signaling and media: release everything it holds. Last
    /// output; the core ignores input afterwards.
    Release,
}
