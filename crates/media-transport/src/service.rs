//! The service side of the mpUri exchange: what connects to a bot's media processor, offers one
//! m-line per participant source (labelled `a=msid:<sourceId> …`) plus one on which it receives
//! the bot's audio, sends participants' Opus, receives the bot's, and hangs up.
//!
//! graph-sim and the tests use this; a WebRTC-capable media relay would too.

use std::collections::HashMap;
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
use crate::protocol::{BotMessage, ErrorCode, PROTOCOL_VERSION, ServiceMessage};
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
    negotiated: bool,
}

/// One media session as the service sees it.
pub struct ServiceSession {
    media_session_id: Uuid,
    out: mpsc::UnboundedSender<Message>,
    replies: mpsc::UnboundedReceiver<BotMessage>,
    events: mpsc::UnboundedReceiver<ServiceEvent>,
    events_tx: mpsc::UnboundedSender<ServiceEvent>,
    peer: Peer,
    participants: HashMap<SourceId, Participant>,
    seq: u64,
    config: ServiceConfig,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ServiceSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceSession")
            .field("media_session_id", &self.media_session_id)
            .field("seq", &self.seq)
            .finish()
    }
}

impl Drop for ServiceSession {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
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
        let hello = ServiceMessage::Hello {
            version: PROTOCOL_VERSION,
            media_session_id,
            call_id,
        };
        ws_tx
            .send(Message::text(hello.to_json()))
            .await
            .map_err(|e| ServiceError::Connect(e.to_string()))?;
        let first = tokio::time::timeout(config.reply_timeout, ws_rx.next())
            .await
            .map_err(|_| ServiceError::Timeout)?;
        match first {
            Some(Ok(Message::Text(t))) => match BotMessage::parse(t.as_str()) {
                Ok(BotMessage::Accepted { .. }) => {}
                Ok(BotMessage::Error { code, message, .. }) => {
                    return Err(ServiceError::Refused { code, message });
                }
                other => {
                    return Err(ServiceError::Connect(format!(
                        "unexpected first reply {other:?}"
                    )));
                }
            },
            _ => return Err(ServiceError::Closed),
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

        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (replies_tx, replies) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let writer = tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                let close = matches!(m, Message::Close(_));
                if ws_tx.send(m).await.is_err() || close {
                    break;
                }
            }
        });
        let ev = events_tx.clone();
        let reader = tokio::spawn(async move {
            while let Some(msg) = ws_rx.next().await {
                let Ok(Message::Text(t)) = msg else {
                    if matches!(msg, Ok(Message::Close(_)) | Err(_)) {
                        break;
                    }
                    continue;
                };
                match BotMessage::parse(t.as_str()) {
                    Ok(m @ BotMessage::Answer { .. })
                    | Ok(m @ BotMessage::Error { seq: Some(_), .. }) => {
                        let _ = replies_tx.send(m);
                    }
                    Ok(BotMessage::HangUp { reason }) => {
                        let _ = ev.send(ServiceEvent::HungUp { reason });
                    }
                    Ok(BotMessage::Error { code, message, .. }) => {
                        let _ = ev.send(ServiceEvent::Error { code, message });
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = ev.send(ServiceEvent::Error {
                            code: e.code(),
                            message: e.to_string(),
                        });
                    }
                }
            }
            let _ = ev.send(ServiceEvent::Closed);
        });
        let mut session = ServiceSession {
            media_session_id,
            out,
            replies,
            events,
            events_tx,
            peer,
            participants: HashMap::new(),
            seq: 0,
            config,
            tasks: vec![writer, reader],
        };
        session.spawn_watchers();
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

    fn spawn_watchers(&mut self) {
        // Connection state changes become events.
        let mut status = self.peer.status.clone();
        let ev = self.events_tx.clone();
        self.tasks.push(tokio::spawn(async move {
            let mut reported_connected = false;
            while status.changed().await.is_ok() {
                let state = status.borrow_and_update().connection;
                match state {
                    RTCPeerConnectionState::Connected if !reported_connected => {
                        reported_connected = true;
                        let _ = ev.send(ServiceEvent::MediaConnected);
                    }
                    RTCPeerConnectionState::Disconnected
                    | RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed => {
                        let _ = ev.send(ServiceEvent::MediaFailed(state.to_string()));
                        break;
                    }
                    _ => {}
                }
            }
        }));
        // The bot's track: drained at once into events.
        let mut incoming = std::mem::replace(&mut self.peer.tracks, mpsc::unbounded_channel().1);
        let ev = self.events_tx.clone();
        self.tasks.push(tokio::spawn(async move {
            while let Some(track) = incoming.recv().await {
                tokio::spawn(read_bot_track(track, ev.clone()));
            }
        }));
    }

    /// The session presented.
    pub fn media_session_id(&self) -> Uuid {
        self.media_session_id
    }

    /// Adds a participant's send stream labelled `source`. It reaches the bot with the next
    /// [`ServiceSession::negotiate`].
    pub async fn add_participant(
        &mut self,
        source: SourceId,
    ) -> Result<ParticipantAudio, ServiceError> {
        if self.participants.contains_key(&source) {
            return Err(ServiceError::Participant(source, "already present"));
        }
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
        let audio = ParticipantAudio {
            source,
            writer: Arc::new(RtpWriter::new(track, ssrc)),
        };
        self.participants.insert(
            source,
            Participant {
                transceiver,
                audio: audio.clone(),
                negotiated: false,
            },
        );
        Ok(audio)
    }

    /// Stops a participant's stream; its m-line is stopped in the next offer.
    pub async fn remove_participant(&mut self, source: SourceId) -> Result<(), ServiceError> {
        let p = self
            .participants
            .remove(&source)
            .ok_or(ServiceError::Participant(source, "not present"))?;
        p.transceiver
            .stop()
            .await
            .map_err(|e| WebRtcError::stack("cannot stop the participant's line")(e).into())
    }

    /// Sends an offer with the current participants and applies the bot's answer. Returns how
    /// long the exchange took (offer sent → answer applied).
    pub async fn negotiate(&mut self) -> Result<Duration, ServiceError> {
        let offer = self
            .peer
            .pc
            .create_offer(None)
            .await
            .map_err(WebRtcError::stack("cannot create an offer"))?;
        let sdp = set_local_and_gather(&mut self.peer, offer).await?;
        let seq = self.seq + 1;
        self.send(ServiceMessage::Offer { seq, sdp })?;
        let sent = Instant::now();
        let answer = loop {
            let reply = tokio::time::timeout(self.config.reply_timeout, self.replies.recv())
                .await
                .map_err(|_| ServiceError::Timeout)?
                .ok_or(ServiceError::Closed)?;
            match reply {
                BotMessage::Answer { seq: s, sdp } if s == seq => break sdp,
                BotMessage::Error {
                    code,
                    message,
                    seq: Some(s),
                } if s == seq => {
                    // Back to the last agreed state so a corrected offer can follow.
                    let rollback = RTCSessionDescription::rollback(None)
                        .map_err(WebRtcError::stack("cannot roll the offer back"))?;
                    let _ = self.peer.pc.set_local_description(rollback).await;
                    return Err(ServiceError::Refused { code, message });
                }
                _ => continue, // a reply to an earlier raw message
            }
        };
        let answer = RTCSessionDescription::answer(answer)
            .map_err(WebRtcError::stack("the answer is not usable"))?;
        self.peer
            .pc
            .set_remote_description(answer)
            .await
            .map_err(WebRtcError::stack("the answer is not usable"))?;
        self.seq = seq;
        for p in self.participants.values_mut() {
            if !p.negotiated {
                p.negotiated = true;
                if let Ok(Some(sender)) = p.transceiver.sender().await
                    && let Some((opus, dtmf)) = negotiated_payload_types(&sender).await
                {
                    p.audio.writer.set_payload_types(opus, dtmf);
                }
            }
        }
        Ok(sent.elapsed())
    }

    /// The next event; `None` once the session is dropped. The bot's audio arrives here too
    /// (50 packets a second) on an unbounded queue: read promptly.
    pub async fn next_event(&mut self) -> Option<ServiceEvent> {
        self.events.recv().await
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
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .ok()??;
            if pred(&ev) {
                return Some(ev);
            }
        }
    }

    /// Sends `hangUp` and closes the media connection.
    pub async fn hang_up(&mut self, reason: &str) -> Result<(), ServiceError> {
        self.send(ServiceMessage::HangUp {
            reason: reason.to_owned(),
        })?;
        let _ = self.out.send(Message::Close(None));
        let _ = self.peer.pc.close().await;
        Ok(())
    }

    /// Closes the media connection without a word on the WebSocket: what the bot sees when the
    /// network path dies.
    pub async fn drop_media_silently(&mut self) {
        let _ = self.peer.pc.close().await;
    }

    /// Sends raw text on the WebSocket (protocol tests and tools).
    pub fn send_raw(&self, text: String) -> Result<(), ServiceError> {
        self.out
            .send(Message::text(text))
            .map_err(|_| ServiceError::Closed)
    }

    /// Waits for the next reply tied to an offer (an `answer` or an `error` with a seq).
    pub async fn next_reply(&mut self, within: Duration) -> Option<BotMessage> {
        tokio::time::timeout(within, self.replies.recv())
            .await
            .ok()?
    }

    fn send(&self, msg: ServiceMessage) -> Result<(), ServiceError> {
        self.send_raw(msg.to_json())
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
