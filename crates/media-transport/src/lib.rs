//! mediabot's media processor: the endpoint at the blob's `mpUri` that the service side connects
//! to, carrying the call's audio as WebRTC Opus streams labelled by Graph `sourceId`.
//! `docs/mpuri-protocol.md` specifies the exchange.
//!
//! Always built (no async runtime, no WebRTC; the fuzz target uses these):
//! - [`protocol`]: the mpUri exchange as a sans-IO core: messages, the offer's stream plan,
//!   pending sessions, and the per-connection state machine [`protocol::BotSession`].
//! - [`dtmf`] (RFC 4733 events), [`stats`] (per-stream QoE figures, from audio-pipeline's RFC
//!   3550 `ReceptionStats`), [`binding`] (the roster gate that holds audio of sources that have
//!   no pipeline stream yet).
//!
//! With the default feature `runtime` (tokio, tokio-tungstenite, `webrtc` 0.21.1):
//! - [`endpoint`]: the bot side. [`MediaEndpoint::bind`] listens; [`MediaEndpoint::register`]
//!   makes a media session pending and returns its [`MediaCall`] (events, the bot's audio
//!   sender, DTMF, hang-up, stats); participants' audio goes to the [`AudioSink`] given. The
//!   listener holds at most [`ListenerLimits::max_connections`]: at the cap, the oldest
//!   connection that has not presented a registered session is closed to make room, and TLS
//!   plus the WebSocket upgrade must finish within [`ListenerLimits::handshake_timeout`];
//!   [`MediaEndpoint::listener_stats`] counts what was evicted, refused and timed out.
//! - [`service`]: the service side ([`ServiceSession`]) that graph-sim and the tests use.
//! - [`tls`]: optional `wss`.
//! - [`browser`]: a peer that answers a web browser's offer (graph-sim's softphone).
//!
//! Feature `pipeline` adds the `pipeline` module: the adapter feeding
//! `audio-pipeline`'s jitter buffers by sourceId and its paced encoder output to the send track.
//! Whether a source's audio is delivered is decided there, by the pipeline's stream registry
//! alone; the transport labels every packet with its `sourceId` and hands it over.
//!
//! ```no_run
//! # #[cfg(feature = "runtime")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use media_session::MediaSession;
//! use media_transport::{ChannelSink, EndpointConfig, MediaEndpoint, MediaEvent};
//!
//! let endpoint = MediaEndpoint::bind(EndpointConfig::default()).await?;
//! let session = MediaSession::builder(endpoint.mp_uri().clone()).build()?;
//! let (sink, mut audio) = ChannelSink::new(1024);
//! let mut call = endpoint.register(&session, Arc::new(sink))?;
//! // ... put session.blob() in the create-call request ...
//! while let Some(event) = call.next_event().await {
//!     if let MediaEvent::Ended(reason) = event {
//!         eprintln!("media ended: {reason}");
//!         break;
//!     }
//! }
//! # let _ = audio.try_recv();
//! # Ok(())
//! # }
//! ```
//!
//! # Reach
//! Microsoft's real media processor speaks a closed protocol with its own library and never
//! connects to a WebRTC endpoint. mediabot's mpUri is served for its own service side (graph-sim,
//! or any WebRTC-capable media relay). Against real Microsoft Graph, signaling works and media
//! does not: a registered session nobody connects for ends with
//! [`protocol::EndReason::NeverConnected`], whose text says exactly this.
//!
//! # Panics
//! Nothing here panics on input from the network: WebSocket messages and SDP are size-checked
//! and parsed into typed errors ([`protocol::MessageError`], [`protocol::SdpError`]), which are
//! answered with an `error` message carrying a code. There is no `unwrap`/`expect` outside
//! tests; a panic is a bug. Locks poisoned by a panic
//! elsewhere are recovered rather than propagated, so one failed call does not take others down.
//!
//! # Errors and logs
//! Failures of the local WebRTC stack are [`WebRtcError`]s (the stack's own error with the step
//! that failed). Logs go through `tracing` with structured fields (`media_session_id`, `seq`,
//! `source`, `error`): sessions starting and ending at `info`, failures at `warn`, offers and
//! streams at `debug`, nothing per packet above `trace`. Connections turned away before they
//! became a session (evicted, refused, past a deadline) are logged at `debug` with the running
//! count for their reason, so a flood costs no more than a line per connection at that level.

#[cfg(feature = "_internal_test_exports")]
#[doc(hidden)]
pub mod _internal_test_exports;
pub mod binding;
#[cfg(feature = "runtime")]
pub mod browser;
#[cfg(feature = "runtime")]
mod call;
#[cfg(feature = "runtime")]
mod connection;
pub mod dtmf;
#[cfg(feature = "runtime")]
pub mod endpoint;
#[cfg(feature = "runtime")]
mod error;
#[cfg(feature = "runtime")]
pub mod events;
#[cfg(feature = "runtime")]
mod listener;
#[cfg(feature = "runtime")]
mod peer;
#[cfg(feature = "pipeline")]
pub mod pipeline;
pub mod protocol;
#[cfg(feature = "runtime")]
pub mod service;
pub mod stats;
#[cfg(feature = "runtime")]
pub mod tls;

#[cfg(feature = "runtime")]
pub use call::{AudioSender, CallError, CallStats, MediaCall};
#[cfg(feature = "runtime")]
pub use endpoint::{EndpointConfig, EndpointError, MediaEndpoint};
#[cfg(feature = "runtime")]
pub use error::WebRtcError;
#[cfg(feature = "runtime")]
pub use events::{AudioSink, ChannelSink, IncomingAudio, MediaEvent};
#[cfg(feature = "runtime")]
pub use listener::{ListenerLimits, ListenerStats};
#[cfg(feature = "runtime")]
pub use peer::{DTMF_PAYLOAD_TYPE, OPUS_PAYLOAD_TYPE, SAMPLES_PER_FRAME, WebRtcConfig};
#[cfg(feature = "runtime")]
pub use service::{ParticipantAudio, ServiceConfig, ServiceError, ServiceEvent, ServiceSession};
#[cfg(feature = "runtime")]
pub use tls::{TlsClient, TlsError, TlsServer};
