//! Sans-IO state of one call: call state and roster, stream binding, operation matching,
//! token timing.
//!
//! Everything here is plain data fed with inputs and an injected `Instant`; the async shells in
//! `client` and `notify` only move bytes and sleep.

pub mod call;
pub mod operations;
pub mod roster;
pub mod timers;

pub use call::{CallStateMachine, SignalingEvent};
pub use operations::{OperationMatcher, OperationOutcome, OperationToken};
pub use roster::{ParticipantKey, Roster, RosterChange, RosterEntry, SelfIdentity};
pub use timers::{DEFAULT_KEEPALIVE_INTERVAL, TokenLifetime};
