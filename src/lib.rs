//! mediabot: a Linux-native engine for Microsoft Graph calling bots with application-hosted media.
//!
//! The member crates are re-exported here so an application depends on one crate.

pub use audio_pipeline;
pub use graph_signaling;
#[cfg(feature = "sim")]
pub use graph_sim;
pub use media_session;
pub use media_transport;

#[cfg(feature = "_internal_test_exports")]
#[doc(hidden)]
pub mod _internal_test_exports;
pub mod bot;
pub mod call_core;
pub mod logging;
