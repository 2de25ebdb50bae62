//! Microsoft Graph calling signaling for mediabot: place, join, answer and manage calls;
//! authenticated notifications; call and roster state; audio stream binding.
//!
//! - [`models`]: typed serde models (call, participants, notifications, operations, errors)
//!   that round-trip Graph's payloads, unknown fields and enum values included.
//! - [`join_url`]: Teams meeting join links read into the organizer and chat thread a join
//!   needs.
//! - [`inspect`]: the library side of `mediabot inspect` (kind detection, one line per item).
//! - [`state`]: the sans-IO state of one call (call state, roster, stream bind events),
//!   operation matching and token timing, fed with notifications and an injected `Instant`.
//! - [`validate`] and [`build`]: the calling rules checked before sending, and request bodies
//!   for the usual scenarios; [`request`]: every call request as data, ready to send, and how
//!   to read its answer; [`retry`]: when a request may be repeated; [`error`]: what failed.
//! - `client` (feature `client`): `GraphClient` over reqwest/rustls with token caching and
//!   bounded retries that never repeat a call-creating request after an ambiguous failure. It
//!   keeps nothing per call.
//! - `auth` and `notify` (feature `server`): JWT validation of the calling service's tokens and
//!   the axum notification endpoint.
//!
//! Without default features only models, parsing, inspect and state are built (the fuzz crate
//! uses that).
//!
//! # Panics
//! Nothing here panics on untrusted input (notification bodies, HTTP responses): failures are
//! typed errors.

#[cfg(feature = "_internal_test_exports")]
#[doc(hidden)]
pub mod _internal_test_exports;
#[cfg(feature = "server")]
pub mod auth;
pub mod build;
#[cfg(feature = "client")]
pub mod client;
pub mod error;
pub mod inspect;
pub mod join_url;
pub mod models;
#[cfg(feature = "server")]
pub mod notify;
pub mod request;
pub mod retry;
pub mod state;
pub mod validate;
