//! mediabot: a Linux-native engine for Microsoft Graph calling bots with application-hosted
//! media.
//!
//! # For bot authors
//!
//! Everything a bot needs is at the crate's root: build a [`Bot`] for a [`Target`] (real
//! Microsoft Graph, or graph-sim), place or answer calls, and read each [`Call`]'s events and
//! audio. [`logging::init`] turns logging on; [`Bot::drain`] ends a bot gracefully.
//!
//! ```no_run
//! # async fn run() -> Result<(), mediabot::BotError> {
//! use mediabot::{Bot, CallTarget, ReceivedAudio};
//! use mediabot::sim::{LocalSim, Scenario};
//!
//! let sim = LocalSim::start(Scenario::two_users()).await?;
//! let bot = Bot::builder(sim.target()).build().await?;
//! let user = &sim.users()[0];
//! let mut call = bot.place_call(CallTarget::user(&user.id, Some(user.name.clone()))).await?;
//! let (mut audio, out) = (call.audio_receiver().expect("first take"), call.audio_sender());
//! while let Some(received) = audio.recv().await {
//!     if let ReceivedAudio::Mixed { frame, .. } = received {
//!         out.push_frame(&frame); // an echo
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # For power users
//!
//! The building blocks are reachable under [`crates`]: the media session and its blob, the
//! audio pipeline, Graph signaling, the media transport, and (feature `sim`) graph-sim.
//! [`call_core`] is the sans-IO owner of one call that the bot drives.

#[cfg(feature = "_internal_test_exports")]
#[doc(hidden)]
pub mod _internal_test_exports;
pub mod bot;
pub mod call_core;
pub mod logging;

pub use bot::MAX_RECORDING_BYTES;
pub use bot::{
    AudioReceiver, AudioSender, Bot, BotBuilder, BotError, Call, CallControl, CallSnapshot,
    CallTarget, DrainReport, GRAPH_OPENID_CONFIG_URL, Health, IncomingCall, IncomingCalls,
    JoinUrlError, ListenerLimits, MediaSettings, MeetingJoinUrl, PcmFormat, Phase, ReceivedAudio,
    RecordingStatus, ServerLimits, ServiceEndpoints, StreamSnapshot, Target,
};
#[cfg(feature = "cli")]
pub use bot::{BotArgs, TargetKind};
pub use call_core::{ActionError, CallEvent, MediaHosting};

/// Types a bot meets in events and settings, from the crates that define them.
pub use audio_pipeline::{ActiveSpeakers, AudioFrame, EngineConfig, PcmSpec, SendStatus};
pub use graph_signaling::models::{
    CallState, CommsOperation, MediaPrompt, Participant, RecordResponseBody, RecordingRef,
    ResultInfo, Tone, ToneInfo,
};
pub use graph_signaling::state::ParticipantKey;
pub use media_session::SourceId;
pub use media_transport::dtmf::DtmfDigit;
pub use media_transport::protocol::EndReason;

/// graph-sim in-process, for examples, tests and the demo (feature `sim`).
#[cfg(feature = "sim")]
pub mod sim {
    pub use crate::bot::{LocalSim, LocalSimOptions, SimUserInfo};
    pub use graph_sim::media::MediaOptions;
    pub use graph_sim::scenario::{Scenario, SimUser, Voice};
    pub use graph_sim::service::SimConfig;
}

/// The crates mediabot is built from, for what the bot API does not cover.
pub mod crates {
    pub use audio_pipeline;
    pub use graph_signaling;
    #[cfg(feature = "sim")]
    pub use graph_sim;
    pub use media_session;
    pub use media_transport;
}
