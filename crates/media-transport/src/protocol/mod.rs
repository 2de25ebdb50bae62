//! The mpUri exchange without I/O: messages, the offer's stream plan, the registry of pending
//! sessions and the per-connection state machine. Builds with no async runtime and no WebRTC, so
//! the fuzz target and any other shell can use it.

pub mod messages;
pub mod pending;
pub mod sdp;
pub mod session;

pub use messages::{
    BotMessage, ErrorCode, MAX_MESSAGE_BYTES, MAX_SDP_BYTES, MAX_TEXT_CHARS, MessageError,
    PROTOCOL_VERSION, ServiceMessage,
};
pub use pending::{ClaimError, PendingSessions, RegisterError};
pub use sdp::{BotLine, OfferPlan, ParticipantLine, SdpError, read_offer};
pub use session::{
    BotSession, CLOSED_PROTOCOL_NOTE, EndReason, Output, ProtocolConfig, TimeoutKind,
};
