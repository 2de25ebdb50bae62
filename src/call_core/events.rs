//! What a call tells the application: signaling, media path and audio engine events merged
//! into one stream.

use audio_pipeline::SendStatus;
use graph_signaling::models::{CallState, CommsOperation, Participant, ResultInfo, ToneInfo};
use graph_signaling::state::ParticipantKey;
use media_session::SourceId;
use media_transport::CallStats;
use media_transport::dtmf::DtmfDigit;
use media_transport::protocol::EndReason;

/// Something that happened to a call, in the order it was seen.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CallEvent {
    /// The call state moved forward (establishing, established, terminating, ...).
    StateChanged {
        /// The previous state, if one was known.
        from: Option<CallState>,
        /// The new state.
        to: CallState,
    },
    /// A participant joined the roster (someone other than the bot: its own entry comes as
    /// [`CallEvent::SelfUpdated`]).
    ParticipantJoined(ParticipantKey, Box<Participant>),
    /// A participant's roster entry changed (lobby, mute, streams).
    ParticipantUpdated(ParticipantKey, Box<Participant>),
    /// A participant left, with the `removedState` reason if any.
    ParticipantLeft(ParticipantKey, Option<String>),
    /// The bot's own roster entry appeared or changed: its identity as the service shows it
    /// (application, application instance, guest), lobby and mute state, and its streams
    /// (a screen-sharing stream while it shares).
    SelfUpdated(Box<Participant>),
    /// Someone started sharing content (a screen) in the call: the session's id, for
    /// [`crate::CallControl::content_sharing_session`].
    ContentSharingStarted(String),
    /// A content sharing session changed.
    ContentSharingUpdated(String),
    /// A content sharing session ended.
    ContentSharingEnded(String),
    /// An operation (invite, mute, ...) completed or failed.
    OperationFinished(Box<CommsOperation>),
    /// The loudest participant changed (`SourceId::NONE` when nobody speaks).
    DominantSpeakerChanged(SourceId),
    /// The bot's outgoing audio started or stopped flowing.
    SendStatusChanged(SendStatus),
    /// Fewer frames than the player's low-water mark are queued: push more audio.
    LowOnFrames {
        /// Frames still queued.
        queued: usize,
    },
    /// The media path connected (ICE and DTLS up).
    MediaConnected,
    /// No media traffic came for a few seconds; the call goes on and waits for it to resume
    /// ([`CallEvent::MediaResumed`]) or to fail ([`CallEvent::MediaEnded`]).
    MediaInterrupted,
    /// Media traffic came back after [`CallEvent::MediaInterrupted`].
    MediaResumed,
    /// A DTMF tone arrived on a participant's stream.
    Dtmf {
        /// Whose stream carried it.
        source: SourceId,
        /// The key.
        digit: DtmfDigit,
    },
    /// A participant pressed a key, reported by the service (service-hosted media, after
    /// subscribing to tones). App-hosted calls get keys in band as [`CallEvent::Dtmf`].
    Tone(ToneInfo),
    /// A participant's media stream failed.
    MediaStreamFailed {
        /// Its source id.
        source: SourceId,
        /// What the stack reported.
        detail: String,
    },
    /// Quality of the media path (QoE), reported periodically while media is connected.
    Quality(Box<CallStats>),
    /// The media session ended. With [`EndReason::NeverConnected`] the calling service never
    /// connected to the bot's media endpoint (always the case on real Microsoft Graph); the bot
    /// then hangs the call up rather than leaving it silent.
    MediaEnded(EndReason),
    /// The call ended; nothing follows. Carries the service's `resultInfo`.
    Terminated(Option<ResultInfo>),
}
