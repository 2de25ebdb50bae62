//! Sans-IO state: calls, rosters, stream binding, operation matching and timers.
//!
//! Everything here is plain data fed with inputs and an injected `Instant`; the async shells in
//! `client` and `notify` only move bytes and sleep.

pub mod call;
pub mod operations;
pub mod registry;
pub mod roster;
pub mod timers;

pub use call::{CallEvent, CallStateMachine, StreamBinder};
pub use operations::{OperationMatcher, OperationOutcome, OperationToken};
pub use registry::CallRegistry;
pub use roster::{ParticipantKey, Roster, RosterChange, RosterEntry, SelfIdentity};
pub use timers::{DEFAULT_KEEPALIVE_INTERVAL, KeepAliveAction, KeepAliveTimer, TokenLifetime};
