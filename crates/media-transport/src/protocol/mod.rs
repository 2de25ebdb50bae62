//! The mpUri exchange without I/O: messages, the offer's stream plan, the registry of pending
//! sessions, and a state machine for each side of a connection ([`BotSession`] for the bot,
//! [`ServiceProtocol`] for the service). Builds with no async runtime and no WebRTC, so the
//! fuzz target and any other shell can use it.

pub mod messages;
pub mod pending;
pub mod sdp;
pub mod service_session;
pub mod session;
#[cfg(test)]
mod two_peers;

pub use messages::{
    BotMessage, ErrorCode, MAX_MESSAGE_BYTES, MAX_SDP_BYTES, MAX_TEXT_CHARS, MessageError,
    PROTOCOL_VERSION, ServiceMessage,
};
pub use pending::{ClaimError, PendingSessions, RegisterError};
pub use sdp::{BotLine, OfferPlan, ParticipantLine, SdpError, read_offer};
pub use service_session::{
    ServiceOutput, ServiceProtocol, ServiceProtocolConfig, ServiceProtocolError,
};
pub use session::{
    BotSession, CLOSED_PROTOCOL_NOTE, EndReason, Output, ProtocolConfig, TimeoutKind,
};
