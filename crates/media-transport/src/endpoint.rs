//! The bot side: a listener at the mpUri port that accepts the service's WebSocket for a
//! registered, pending media session, answers its offers with a WebRTC peer, delivers each
//! participant's audio to an [`AudioSink`] and sends the bot's audio.
//!
//! This module holds the endpoint and the registry of pending sessions. `listener.rs` accepts
//! connections within [`ListenerLimits`]; each admitted connection runs in `connection.rs`, a
//! shell around [`crate::protocol::BotSession`], which makes every protocol decision.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use media_session::{BlobConfig, MediaSession, MpUri};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::call::{AudioSender, Command, MediaCall};
use crate::events::{AudioSink, MediaEvent};
use crate::listener::{Admission, ListenerLimits, ListenerStats};
use crate::peer::WebRtcConfig;
use crate::protocol::{EndReason, PendingSessions, ProtocolConfig, RegisterError};
use crate::tls::TlsServer;

/// The WebSocket path the service opens.
pub const MEDIA_PROCESSOR_PATH: &str = "/MediaProcessor";

/// Packets of the bot's own audio queued toward the send track (1 s of 20 ms frames).
pub const SEND_QUEUE_PACKETS: usize = 50;

/// Settings of the bot-side endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Where the WebSocket listener binds (the internal address); port 0 picks a free port.
    pub bind: SocketAddr,
    /// The host written into the mpUri (public address or FQDN); the bind IP when `None`.
    pub public_host: Option<String>,
    /// The port written into the mpUri (when a load balancer maps ports); the bound port when
    /// `None`.
    pub public_port: Option<u16>,
    /// WebRTC settings (UDP bind address and port range, public IPs, ICE timing).
    pub webrtc: WebRtcConfig,
    /// Protocol timeouts.
    pub protocol: ProtocolConfig,
    /// Serve `wss` with this TLS configuration instead of plain `ws`.
    pub tls: Option<TlsServer>,
    /// How many connections the listener holds and how long one may take to upgrade.
    pub limits: ListenerLimits,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_host: None,
            public_port: None,
            webrtc: WebRtcConfig::default(),
            protocol: ProtocolConfig::default(),
            tls: None,
            limits: ListenerLimits::default(),
        }
    }
}

/// Why the endpoint could not start or a session could not be registered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// Binding the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configured public host and port do not make a valid mpUri.
    #[error("public address does not make an mpUri: {0}")]
    MpUri(#[from] media_session::MpUriError),
    /// The session id is pending already or was used.
    #[error(transparent)]
    Register(#[from] RegisterError),
    /// The endpoint has shut down.
    #[error("the media endpoint has shut down")]
    Closed,
}

pub(crate) struct CallSlot {
    pub(crate) events: mpsc::UnboundedSender<MediaEvent>,
    pub(crate) commands: mpsc::UnboundedReceiver<Command>,
    pub(crate) audio_out: mpsc::Receiver<crate::call::OutgoingOpus>,
    pub(crate) sink: Arc<dyn AudioSink>,
}

pub(crate) struct Registry {
    pub(crate) pending: PendingSessions,
    pub(crate) slots: HashMap<Uuid, CallSlot>,
}

pub(crate) struct Shared {
    pub(crate) config: EndpointConfig,
    pub(crate) admission: Arc<Admission>,
    registry: Mutex<Registry>,
    registry_changed: Notify,
}

impl Shared {
    pub(crate) fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic elsewhere must not take every call down with it: the data stays usable.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The bot's media processor endpoint. Dropping it stops accepting connections.
pub struct MediaEndpoint {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    mp_uri: MpUri,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for MediaEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaEndpoint")
            .field("local_addr", &self.local_addr)
            .field("mp_uri", &self.mp_uri)
            .finish()
    }
}

impl Drop for MediaEndpoint {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl MediaEndpoint {
    /// Starts listening. Must be called inside a tokio runtime.
    pub async fn bind(config: EndpointConfig) -> Result<MediaEndpoint, EndpointError> {
        let listener =
            TcpListener::bind(config.bind)
                .await
                .map_err(|source| EndpointError::Bind {
                    addr: config.bind,
                    source,
                })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| EndpointError::Bind {
                addr: config.bind,
                source,
            })?;
        let host = config
            .public_host
            .clone()
            .unwrap_or_else(|| local_addr.ip().to_string());
        let mp_uri = MpUri::new(&host, config.public_port.unwrap_or(local_addr.port()))?;
        let shared = Arc::new(Shared {
            admission: Admission::new(config.limits),
            config,
            registry: Mutex::new(Registry {
                pending: PendingSessions::new(),
                slots: HashMap::new(),
            }),
            registry_changed: Notify::new(),
        });
        let accept = tokio::spawn(crate::listener::accept_loop(shared.clone(), listener));
        let expiry = tokio::spawn(expiry_loop(shared.clone()));
        Ok(MediaEndpoint {
            shared,
            local_addr,
            mp_uri,
            tasks: vec![accept, expiry],
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The mpUri to build media sessions with (public host and port).
    pub fn mp_uri(&self) -> &MpUri {
        &self.mp_uri
    }

    /// Media sessions the endpoint holds now: registered and waiting for their connection
    /// (their slot), or carried by a connection. 0 once every call's session has ended. (A
    /// session being set up is briefly counted both ways.)
    pub fn held_sessions(&self) -> usize {
        let waiting = self.shared.registry().slots.len();
        waiting + self.shared.admission.stats().sessions
    }

    /// What the listener holds now and what it has evicted, refused and timed out so far.
    pub fn listener_stats(&self) -> ListenerStats {
        self.shared.admission.stats()
    }

    /// Expects the service to connect for `session` (its blob's `mpMediaSessionId` and call id).
    /// Audio of participants goes to `sink`.
    pub fn register(
        &self,
        session: &MediaSession,
        sink: Arc<dyn AudioSink>,
    ) -> Result<MediaCall, EndpointError> {
        self.register_ids(session.media_session_id(), session.call_id(), sink)
    }

    /// As [`MediaEndpoint::register`], from a parsed blob.
    pub fn register_blob(
        &self,
        blob: &BlobConfig,
        sink: Arc<dyn AudioSink>,
    ) -> Result<MediaCall, EndpointError> {
        self.register_ids(blob.mp_media_session_id, blob.call_id, sink)
    }

    /// As [`MediaEndpoint::register`], from the two ids.
    pub fn register_ids(
        &self,
        media_session_id: Uuid,
        call_id: Option<Uuid>,
        sink: Arc<dyn AudioSink>,
    ) -> Result<MediaCall, EndpointError> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (audio_tx, audio_rx) = mpsc::channel(SEND_QUEUE_PACKETS);
        {
            let mut reg = self.shared.registry();
            reg.pending.register(
                Instant::now(),
                media_session_id,
                call_id,
                self.shared.config.protocol.pending_timeout,
            )?;
            reg.slots.insert(
                media_session_id,
                CallSlot {
                    events: events_tx,
                    commands: commands_rx,
                    audio_out: audio_rx,
                    sink,
                },
            );
        }
        self.shared.registry_changed.notify_one();
        tracing::debug!(%media_session_id, call_id = ?call_id, "media session registered");
        Ok(MediaCall {
            media_session_id,
            events,
            commands,
            audio_out: AudioSender {
                tx: audio_tx,
                dropped: Arc::new(AtomicU64::new(0)),
            },
        })
    }

    /// Records the call id of a pending session (outgoing calls learn it after the blob).
    pub fn set_call_id(&self, media_session_id: Uuid, call_id: Uuid) -> bool {
        self.shared
            .registry()
            .pending
            .set_call_id(media_session_id, call_id)
    }

    /// Withdraws a pending session; its [`MediaCall`] ends with
    /// [`EndReason::HangUpByBot`]. Returns whether it was pending.
    pub fn cancel(&self, media_session_id: Uuid) -> bool {
        let slot = {
            let mut reg = self.shared.registry();
            if !reg.pending.cancel(media_session_id) {
                return false;
            }
            reg.slots.remove(&media_session_id)
        };
        if let Some(slot) = slot {
            let reason = EndReason::HangUpByBot {
                reason: "cancelled before the service connected".into(),
            };
            slot.sink.on_session_ended(&reason);
            let _ = slot.events.send(MediaEvent::Ended(reason));
        }
        true
    }
}

async fn expiry_loop(shared: Arc<Shared>) {
    loop {
        let next = shared.registry().pending.poll_timeout();
        let notified = shared.registry_changed.notified();
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = notified => continue,
                }
            }
            None => {
                notified.await;
                continue;
            }
        }
        let expired: Vec<(Uuid, CallSlot)> = {
            let mut reg = shared.registry();
            let ids = reg.pending.handle_timeout(Instant::now());
            ids.into_iter()
                .filter_map(|id| reg.slots.remove(&id).map(|slot| (id, slot)))
                .collect()
        };
        for (media_session_id, slot) in expired {
            tracing::warn!(
                %media_session_id,
                reason = %EndReason::NeverConnected,
                "media session ended"
            );
            slot.sink.on_session_ended(&EndReason::NeverConnected);
            let _ = slot
                .events
                .send(MediaEvent::Ended(EndReason::NeverConnected));
        }
    }
}
