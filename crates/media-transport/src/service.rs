//! The service side of the mpUri exchange: what connects to a bot's media processor, offers one
//! m-line per participant source (labelled `a=msid:<sourceId> …`) plus one on which it receives
//! the bot's audio, sends participants' Opus, receives the bot's, and hangs up.
//!
//! graph-sim and the tests use this; a WebRTC-capable media relay would too. Every protocol
//! decision (the hello, offer numbering, which reply answers which offer, timeouts, hang-ups) is
//! [`ServiceProtocol`]'s; this module is its shell: the WebSocket, the WebRTC peer that writes
//! the offers and applies the answers, and the tasks that read the bot's audio.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use media_session::{BlobConfig, MpUri, SourceId};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{RTCPeerConnectionState, RTCSessionDescription};
use webrtc::rtp_transceiver::RtpTransceiver;

use crate::dtmf::{DtmfDigit, DtmfReceiver};
use crate::endpoint::MEDIA_PROCESSOR_PATH;
use crate::error::WebRtcError;
use crate::peer::{
    Peer, RtpWriter, WebRtcConfig, as_local, audio_track, build_peer, negotiated_payload_types,
    random_ssrc, set_local_and_gather, voice_codecs,
};
use crate::protocol::{
    BotMessage, ErrorCode, ServiceOutput, ServiceProtocol, ServiceProtocolConfig,
    ServiceProtocolError,
};
use crate::tls::TlsClient;

/// Settings of the service-side client.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// WebRTC settings.
    pub webrtc: WebRtcConfig,
    /// Connect with `wss` using this TLS configuration.
    pub tls: Option<TlsClient>,
    /// How long to wait for `accepted` and for each answer.
    pub reply_timeout: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            webrtc: WebRtcConfig::default(),
            tls: None,
            reply_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a service-side operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// TCP, TLS or the WebSocket handshake failed.
    #[error("cannot connect to the media processor: {0}")]
    Connect(String),
    /// The bot refused with an error message.
    #[error("refused: {code}: {message}")]
    Refused {
        /// Its code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// The bot did not reply in time.
    #[error("no reply from the media processor in time")]
    Timeout,
    /// The connection is gone or the session over.
    #[error("the media session has ended")]
    Closed,
    /// The local WebRTC stack failed.
    #[error("WebRTC: {0}")]
    WebRtc(#[from] WebRtcError),
    /// The participant is already present (add) or absent (remove).
    #[error("sourceId {0} is {1}")]
    Participant(SourceId, &'static str),
    /// An earlier offer is still waiting for its answer.
    #[error("offer {0} is not answered yet")]
    OfferPending(u64),
}

impl From<ServiceProtocolError> for ServiceError {
    fn from(e: ServiceProtocolError) -> Self {
        match e {
            ServiceProtocolError::Refused { code, message } => {
                ServiceError::Refused { code, message }
            }
            ServiceProtocolError::UnexpectedReply(_) => ServiceError::Connect(e.to_string()),
            ServiceProtocolError::Timeout => ServiceError::Timeout,
            ServiceProtocolError::Closed => ServiceError::Closed,
            ServiceProtocolError::OfferPending(seq) => ServiceError::OfferPending(seq),
            ServiceProtocolError::Participant(source, what) => {
                ServiceError::Participant(source, what)
            }
        }
    }
}

/// Something the service side observed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceEvent {
    /// One RTP packet of the bot's audio.
    BotAudio {
        /// RTP sequence number.
        sequence: u16,
        /// RTP timestamp.
        timestamp: u32,
        /// Opus payload.
        payload: Bytes,
        /// When it was read.
        arrival: Instant,
    },
    /// The bot sent a DTMF digit.
    Dtmf(DtmfDigit),
    /// ICE and DTLS connected.
    MediaConnected,
    /// ICE disconnected or failed, or DTLS closed.
    MediaFailed(String),
    /// The bot hung up.
    HungUp {
        /// Its reason.
        reason: String,
    },
    /// The bot sent an error not tied to an offer (fatal ones end the session).
    Error {
        /// Its code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// The WebSocket closed.
    Closed,
}

/// A participant's send stream: write its Opus packets here.
#[derive(Clone)]
pub struct ParticipantAudio {
    source: SourceId,
    writer: Arc<RtpWriter>,
}

impl std::fmt::Debug for ParticipantAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ParticipantAudio({})", self.source)
    }
}

impl ParticipantAudio {
    /// The participant's source id.
    pub fn source(&self) -> SourceId {
        self.source
    }

    /// Sends one 20 ms Opus packet (dropped by the stack before media connects).
    pub async fn send_opus(&self, packet: Bytes) -> Result<(), ServiceError> {
        self.writer
            .write_opus(packet)
            .await
            .map_err(ServiceError::WebRtc)
    }

    /// Sends a DTMF digit held for `duration`.
    pub async fn send_dtmf(
        &self,
        digit: DtmfDigit,
        duration: Duration,
    ) -> Result<(), ServiceError> {
        self.writer
            .write_dtmf(digit, duration)
            .await
            .map_err(ServiceError::WebRtc)
    }
}

struct Participant {
    transceiver: Arc<dyn RtpTransceiver>,
    audio: ParticipantAudio,
}

/// How long [`ServiceSession::hang_up`] waits for the bot to close the WebSocket before it
/// closes the peer connection anyway.
const HANG_UP_LINGER: Duration = Duration::from_secs(2);

/// What the socket and the peer report, in the order they happened.
enum Inbound {
    Text(String),
    Closed,
    Media(RTCPeerConnectionState),
}

/// How an offer ended, as the core reported it.
enum Outcome {
    Answered {
        seq: u64,
        sdp: String,
        negotiated: Vec<SourceId>,
    },
    Failed {
        seq: u64,
        error: ServiceProtocolError,
        roll_back: bool,
    },
}

impl Outcome {
    fn seq(&self) -> u64 {
        match self {
            Outcome::Answered { seq, .. } | Outcome::Failed { seq, .. } => *seq,
        }
    }
}

/// Tasks that die with their owner.
#[derive(Default)]
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// The core with the channels around it: everything of a session but the WebRTC peer.
struct Link {
    core: ServiceProtocol,
    out: mpsc::UnboundedSender<Message>,
    inbound: mpsc::UnboundedReceiver<Inbound>,
    inbound_open: bool,
    connect: Option<Result<(), ServiceProtocolError>>,
    events: VecDeque<ServiceEvent>,
    replies: VecDeque<BotMessage>,
    outcomes: VecDeque<Outcome>,
}

impl Link {
    /// Carries out what the core decided. Returns false when a message could not be queued
    /// because the socket's writer is gone.
    fn drain(&mut self) -> bool {
        let mut queued = true;
        while let Some(out) = self.core.poll_output() {
            match out {
                ServiceOutput::Send(msg) => {
                    queued &= self.out.send(Message::text(msg.to_json())).is_ok();
                }
                ServiceOutput::CloseSocket => {
                    let _ = self.out.send(Message::Close(None));
                }
                ServiceOutput::Accepted { .. } => self.connect = Some(Ok(())),
                ServiceOutput::ConnectFailed(e) => self.connect = Some(Err(e)),
                ServiceOutput::ApplyAnswer {
                    seq,
                    sdp,
                    negotiated,
                } => self.outcomes.push_back(Outcome::Answered {
                    seq,
                    sdp,
                    negotiated,
                }),
                ServiceOutput::OfferFailed {
                    seq,
                    error,
                    roll_back,
                } => self.outcomes.push_back(Outcome::Failed {
                    seq,
                    error,
                    roll_back,
                }),
                ServiceOutput::Reply(msg) => self.replies.push_back(msg),
                ServiceOutput::HungUp { reason } => {
                    self.events.push_back(ServiceEvent::HungUp { reason });
                }
                ServiceOutput::BotError { code, message } => {
                    self.events.push_back(ServiceEvent::Error { code, message });
                }
                ServiceOutput::MediaConnected => {
                    self.events.push_back(ServiceEvent::MediaConnected)
                }
                ServiceOutput::MediaFailed(detail) => {
                    self.events.push_back(ServiceEvent::MediaFailed(detail));
                }
                ServiceOutput::Closed => self.events.push_back(ServiceEvent::Closed),
            }
        }
        queued
    }

    /// Waits for the next frame, peer state or timer, and feeds it to the core. Returns false
    /// when nothing can come any more. Cancel-safe: nothing is taken before the wait ends.
    async fn step(&mut self) -> bool {
        let deadline = self.core.poll_timeout();
        if !self.inbound_open && deadline.is_none() {
            return false;
        }
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            inbound = self.inbound.recv(), if self.inbound_open => {
                let now = Instant::now();
                match inbound {
                    Some(Inbound::Text(text)) => self.core.handle_text(now, &text),
                    Some(Inbound::Closed) => self.core.handle_closed(now),
                    Some(Inbound::Media(state)) => match state {
                        RTCPeerConnectionState::Connected => self.core.handle_media_connected(now),
                        // Transient: ICE reconnects by itself when traffic resumes (a stalled
                        // host, a lossy stretch of network); it reports Failed if it does not.
                        RTCPeerConnectionState::Disconnected => {}
                        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                            self.core.handle_media_failed(now, &state.to_string());
                        }
                        _ => {}
                    },
                    None => {
                        self.inbound_open = false;
                        self.core.handle_closed(now);
                    }
                }
            }
            () = timer => self.core.handle_timeout(Instant::now()),
        }
        self.drain();
        true
    }

    /// Waits for the outcome of offer `seq`.
    async fn outcome(&mut self, seq: u64) -> Outcome {
        loop {
            if let Some(i) = self.outcomes.iter().position(|o| o.seq() == seq)
                && let Some(o) = self.outcomes.remove(i)
            {
                return o;
            }
            if !self.step().await {
                return Outcome::Failed {
                    seq,
                    error: ServiceProtocolError::Closed,
                    roll_back: false,
                };
            }
        }
    }
}

/// One media session as the service sees it: a shell around [`ServiceProtocol`], which makes
/// every protocol decision. This side writes the offers with its WebRTC peer, applies the
/// answers, and reads the bot's audio.
pub struct ServiceSession {
    link: Link,
    media: mpsc::UnboundedReceiver<ServiceEvent>,
    // Held so the media queue never ends while the session lives: `next_event` waits rather
    // than returning `None` once the bot's track is gone.
    media_tx: mpsc::UnboundedSender<ServiceEvent>,
    peer: Peer,
    participants: HashMap<SourceId, Participant>,
    tasks: Tasks,
}

impl std::fmt::Debug for ServiceSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceSession")
            .field("media_session_id", &self.link.core.media_session_id())
            .field("seq", &self.link.core.last_seq())
            .finish()
    }
}

impl Drop for ServiceSession {
    fn drop(&mut self) {
        self.peer.close_detached();
    }
}

/// Opens the raw WebSocket to a media processor (no hello sent). For tools and tests that
/// speak the protocol by hand.
pub async fn open_websocket(
    addr: SocketAddr,
    host: &str,
    tls: Option<&TlsClient>,
) -> Result<tokio_tungstenite::WebSocketStream<Box<dyn AsyncStream>>, ServiceError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| ServiceError::Connect(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let (stream, scheme): (Box<dyn AsyncStream>, &str) = match tls {
        None => (Box::new(tcp), "ws"),
        Some(tls) => (
            Box::new(
                tls.connect(tcp)
                    .await
                    .map_err(|e| ServiceError::Connect(format!("TLS: {e}")))?,
            ),
            "wss",
        ),
    };
    let url = format!("{scheme}://{host}:{}{MEDIA_PROCESSOR_PATH}", addr.port());
    let (ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .map_err(|e| ServiceError::Connect(e.to_string()))?;
    Ok(ws)
}

/// A byte stream the WebSocket runs over (TCP or TLS).
pub trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncStream for T {}

impl ServiceSession {
    /// Connects to the media processor at `mp_uri` (resolved to `addr`), presents the session
    /// and call ids from the blob, and waits for `accepted`.
    pub async fn connect(
        mp_uri: &MpUri,
        addr: SocketAddr,
        media_session_id: Uuid,
        call_id: Option<Uuid>,
        config: ServiceConfig,
    ) -> Result<ServiceSession, ServiceError> {
        let ws = open_websocket(addr, mp_uri.host(), config.tls.as_ref()).await?;
        let (mut ws_tx, mut ws_rx) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (inbound_tx, inbound) = mpsc::unbounded_channel();
        let mut tasks = Tasks::default();
        tasks.0.push(tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                let close = matches!(m, Message::Close(_));
                if ws_tx.send(m).await.is_err() || close {
                    break;
                }
            }
        }));
        let frames = inbound_tx.clone();
        tasks.0.push(tokio::spawn(async move {
            while let Some(msg) = ws_rx.next().await {
                match msg {
                    Ok(Message::Text(t)) => {
                        if frames.send(Inbound::Text(t.as_str().to_owned())).is_err() {
                            return;
                        }
                    }
                    Ok(Message::Close(_)) | Err(_) => break,
                    // The bot sends text only; pings are answered by the WebSocket layer.
                    Ok(_) => {}
                }
            }
            let _ = frames.send(Inbound::Closed);
        }));

        let core = ServiceProtocol::new(
            Instant::now(),
            media_session_id,
            call_id,
            ServiceProtocolConfig {
                reply_timeout: config.reply_timeout,
            },
        );
        let mut link = Link {
            core,
            out,
            inbound,
            inbound_open: true,
            connect: None,
            events: VecDeque::new(),
            replies: VecDeque::new(),
            outcomes: VecDeque::new(),
        };
        link.drain();
        loop {
            match link.connect.take() {
                Some(Ok(())) => break,
                Some(Err(e)) => {
                    tracing::info!(%media_session_id, error = %e, "the media processor did not accept");
                    return Err(e.into());
                }
                None if !link.step().await => return Err(ServiceError::Closed),
                None => {}
            }
        }

        let peer = build_peer(&config.webrtc).await?;
        // The bot's line first: it is then mid 0 and stays so.
        let bot_line = peer
            .pc
            .add_transceiver_from_kind(
                RtpCodecKind::Audio,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    streams: vec![],
                    send_encodings: vec![],
                }),
            )
            .await
            .map_err(WebRtcError::stack("cannot add the bot's line"))?;
        bot_line
            .set_codec_preferences(voice_codecs())
            .await
            .map_err(WebRtcError::stack("cannot set the codec preferences"))?;
        tracing::debug!(%media_session_id, "connected to the media processor");

        let (media_tx, media) = mpsc::unbounded_channel();
        let mut session = ServiceSession {
            link,
            media,
            media_tx,
            peer,
            participants: HashMap::new(),
            tasks,
        };
        session.spawn_watchers(inbound_tx);
        Ok(session)
    }

    /// Connects as the blob says: resolves its `mpUri` and presents its `mpMediaSessionId` and
    /// `callId`. This is how graph-sim reaches a bot.
    pub async fn connect_to_blob(
        blob: &BlobConfig,
        config: ServiceConfig,
    ) -> Result<ServiceSession, ServiceError> {
        let uri = &blob.mp_uri;
        let addr = tokio::net::lookup_host((uri.bare_host(), uri.port()))
            .await
            .map_err(|e| ServiceError::Connect(format!("cannot resolve {uri}: {e}")))?
            .next()
            .ok_or_else(|| ServiceError::Connect(format!("{uri} resolves to no address")))?;
        Self::connect(uri, addr, blob.mp_media_session_id, blob.call_id, config).await
    }

    fn spawn_watchers(&mut self, inbound: mpsc::UnboundedSender<Inbound>) {
        // Connection states go to the core, in order with the socket's frames.
        let mut status = self.peer.status.clone();
        self.tasks.0.push(tokio::spawn(async move {
            while status.changed().await.is_ok() {
                let state = status.borrow_and_update().connection;
                if inbound.send(Inbound::Media(state)).is_err() {
                    break;
                }
                if matches!(
                    state,
                    RTCPeerConnectionState::Disconnected
                        | RTCPeerConnectionState::Failed
                        | RTCPeerConnectionState::Closed
                ) {
                    break;
                }
            }
        }));
        // The bot's track: drained at once into media events.
        let mut incoming = std::mem::replace(&mut self.peer.tracks, mpsc::unbounded_channel().1);
        let ev = self.media_tx.clone();
        self.tasks.0.push(tokio::spawn(async move {
            while let Some(track) = incoming.recv().await {
                tokio::spawn(read_bot_track(track, ev.clone()));
            }
        }));
    }

    /// The session presented.
    pub fn media_session_id(&self) -> Uuid {
        self.link.core.media_session_id()
    }

    /// Adds a participant's send stream labelled `source`. It reaches the bot with the next
    /// [`ServiceSession::negotiate`].
    pub async fn add_participant(
        &mut self,
        source: SourceId,
    ) -> Result<ParticipantAudio, ServiceError> {
        self.link.core.add_participant(source)?;
        match self.add_line(source).await {
            Ok(p) => {
                let audio = p.audio.clone();
                self.participants.insert(source, p);
                Ok(audio)
            }
            Err(e) => {
                let _ = self.link.core.remove_participant(source);
                Err(e.into())
            }
        }
    }

    async fn add_line(&mut self, source: SourceId) -> Result<Participant, WebRtcError> {
        let ssrc = random_ssrc();
        let track = audio_track(&source.to_string(), &format!("audio-{source}"), ssrc);
        let transceiver = self
            .peer
            .pc
            .add_transceiver_from_track(
                as_local(&track),
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendonly,
                    streams: vec![],
                    send_encodings: vec![],
                }),
            )
            .await
            .map_err(WebRtcError::stack("cannot add the participant's track"))?;
        transceiver
            .set_codec_preferences(voice_codecs())
            .await
            .map_err(WebRtcError::stack("cannot set the codec preferences"))?;
        Ok(Participant {
            transceiver,
            audio: ParticipantAudio {
                source,
                writer: Arc::new(RtpWriter::new(track, ssrc)),
            },
        })
    }

    /// Stops a participant's stream; its m-line is stopped in the next offer.
    pub async fn remove_participant(&mut self, source: SourceId) -> Result<(), ServiceError> {
        self.link.core.remove_participant(source)?;
        let Some(p) = self.participants.remove(&source) else {
            return Ok(());
        };
        p.transceiver
            .stop()
            .await
            .map_err(|e| WebRtcError::stack("cannot stop the participant's line")(e).into())
    }

    /// Sends an offer with the current participants and applies the bot's answer. Returns how
    /// long the exchange took (offer sent → answer applied).
    pub async fn negotiate(&mut self) -> Result<Duration, ServiceError> {
        self.settle_earlier_offers().await;
        self.link.core.next_offer_seq()?;
        let offer = self
            .peer
            .pc
            .create_offer(None)
            .await
            .map_err(WebRtcError::stack("cannot create an offer"))?;
        let sdp = set_local_and_gather(&mut self.peer, offer).await?;
        let seq = self.link.core.offer(Instant::now(), sdp)?;
        self.link.drain();
        let sent = Instant::now();
        let outcome = self.link.outcome(seq).await;
        if let Outcome::Failed { error, .. } = &outcome {
            tracing::info!(
                media_session_id = %self.media_session_id(),
                seq,
                %error,
                "offer not answered"
            );
        }
        self.settle(outcome).await?;
        Ok(sent.elapsed())
    }

    /// Brings the local description up to what the bot agreed to when an earlier
    /// [`ServiceSession::negotiate`] was cancelled before its outcome arrived.
    async fn settle_earlier_offers(&mut self) {
        if let Some(seq) = self.link.core.pending_offer() {
            let outcome = self.link.outcome(seq).await;
            self.link.outcomes.push_back(outcome);
        }
        while let Some(outcome) = self.link.outcomes.pop_front() {
            let _ = self.settle(outcome).await;
        }
    }

    /// Applies an offer's outcome to the WebRTC peer.
    async fn settle(&mut self, outcome: Outcome) -> Result<(), ServiceError> {
        match outcome {
            Outcome::Answered {
                sdp, negotiated, ..
            } => {
                let answer = RTCSessionDescription::answer(sdp)
                    .map_err(WebRtcError::stack("the answer is not usable"))?;
                self.peer
                    .pc
                    .set_remote_description(answer)
                    .await
                    .map_err(WebRtcError::stack("the answer is not usable"))?;
                for source in negotiated {
                    let Some(p) = self.participants.get(&source) else {
                        continue;
                    };
                    if let Ok(Some(sender)) = p.transceiver.sender().await
                        && let Some((opus, dtmf)) = negotiated_payload_types(&sender).await
                    {
                        p.audio.writer.set_payload_types(opus, dtmf);
                    }
                }
                Ok(())
            }
            Outcome::Failed {
                error, roll_back, ..
            } => {
                if roll_back {
                    // Back to the last agreed state so a corrected offer can follow.
                    let rollback = RTCSessionDescription::rollback(None)
                        .map_err(WebRtcError::stack("cannot roll the offer back"))?;
                    let _ = self.peer.pc.set_local_description(rollback).await;
                }
                Err(error.into())
            }
        }
    }

    /// The next event; `None` once the session is dropped. The bot's audio arrives here too
    /// (50 packets a second) on an unbounded queue: read promptly.
    pub async fn next_event(&mut self) -> Option<ServiceEvent> {
        loop {
            if let Some(ev) = self.link.events.pop_front() {
                return Some(ev);
            }
            tokio::select! {
                biased;
                more = self.link.step() => {
                    if !more {
                        return self.media.recv().await;
                    }
                }
                ev = self.media.recv() => return ev,
            }
        }
    }

    /// Waits up to `within` for an event matching `pred`, discarding others. `None` on timeout
    /// or when the events end.
    pub async fn wait_for(
        &mut self,
        within: Duration,
        mut pred: impl FnMut(&ServiceEvent) -> bool,
    ) -> Option<ServiceEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.next_event())
                .await
                .ok()??;
            if pred(&ev) {
                return Some(ev);
            }
        }
    }

    /// Sends `hangUp` and closes the media connection.
    pub async fn hang_up(&mut self, reason: &str) -> Result<(), ServiceError> {
        self.link.core.hang_up(Instant::now(), reason)?;
        if !self.link.drain() {
            return Err(ServiceError::Closed);
        }
        // The bot must read the hang-up before it sees the media go, or it takes the end for a
        // lost connection. It reads the socket in order and answers the closing frame after
        // the hang-up, so its close means it has the hang-up; only then (or after a short
        // linger, for a bot that does not answer) is the peer connection closed.
        let link = &mut self.link;
        let _ = tokio::time::timeout(HANG_UP_LINGER, async {
            while let Some(inbound) = link.inbound.recv().await {
                if matches!(inbound, Inbound::Closed) {
                    break;
                }
            }
        })
        .await;
        tracing::debug!(media_session_id = %self.media_session_id(), reason, "hung up");
        let _ = self.peer.pc.close().await;
        Ok(())
    }

    /// Closes the media connection without a word on the WebSocket: what the bot sees when the
    /// network path dies.
    pub async fn drop_media_silently(&mut self) {
        let _ = self.peer.pc.close().await;
    }

    /// Sends raw text on the WebSocket (protocol tests and tools). The core does not see it:
    /// replies to it come back through [`ServiceSession::next_reply`].
    pub fn send_raw(&self, text: String) -> Result<(), ServiceError> {
        self.link
            .out
            .send(Message::text(text))
            .map_err(|_| ServiceError::Closed)
    }

    /// Waits for the next reply tied to an offer that [`ServiceSession::negotiate`] did not
    /// send (an `answer` or an `error` with a seq).
    pub async fn next_reply(&mut self, within: Duration) -> Option<BotMessage> {
        tokio::time::timeout(within, async {
            loop {
                if let Some(reply) = self.link.replies.pop_front() {
                    return Some(reply);
                }
                if !self.link.step().await {
                    return None;
                }
            }
        })
        .await
        .ok()?
    }
}

async fn read_bot_track(track: Arc<dyn TrackRemote>, ev: mpsc::UnboundedSender<ServiceEvent>) {
    let mut dtmf = DtmfReceiver::new();
    // Opus is the only other codec on the line: anything else is a telephone event.
    let opus_pt = crate::peer::OPUS_PAYLOAD_TYPE;
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(pkt) => {
                let h = &pkt.header;
                if h.payload_type != opus_pt {
                    if let Some(d) = dtmf.push(h.timestamp, &pkt.payload) {
                        let _ = ev.send(ServiceEvent::Dtmf(d));
                    }
                    continue;
                }
                let _ = ev.send(ServiceEvent::BotAudio {
                    sequence: h.sequence_number,
                    timestamp: h.timestamp,
                    payload: pkt.payload,
                    arrival: Instant::now(),
                });
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
}
