//! One accepted WebSocket connection: the shell around [`BotSession`] that moves messages
//! between it, the socket, the WebRTC peer and the application.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use media_session::SourceId;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use uuid::Uuid;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{RTCPeerConnectionState, RTCSessionDescription};
use webrtc::rtp_transceiver::RtpSender;

use crate::call::{CallStats, Command};
use crate::dtmf::DtmfReceiver;
use crate::endpoint::{CallSlot, MEDIA_PROCESSOR_PATH, Shared};
use crate::error::WebRtcError;
use crate::events::{IncomingAudio, MediaEvent};
use crate::listener::Ticket;
use crate::peer::{
    Peer, RtpWriter, WebRtcConfig, as_local, audio_track, build_peer, negotiated_payload_types,
    random_ssrc, set_local_and_gather,
};
use crate::protocol::{
    BotSession, EndReason, MAX_MESSAGE_BYTES, OfferPlan, Output, ParticipantLine,
};
use crate::stats::{ReceiveStats, StreamQuality};

fn ws_config() -> WebSocketConfig {
    // Slightly above the protocol's limit, so an oversized message gets the protocol's
    // `tooLarge` error; far larger frames break the connection in the WebSocket layer.
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES * 4))
        .max_frame_size(Some(MAX_MESSAGE_BYTES * 4))
}

#[allow(clippy::result_large_err)] // the signature is tungstenite's callback type
fn check_path(req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
    if req.uri().path() == MEDIA_PROCESSOR_PATH {
        Ok(resp)
    } else {
        let mut err = ErrorResponse::new(Some(format!(
            "the media processor is at {MEDIA_PROCESSOR_PATH}"
        )));
        *err.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::NOT_FOUND;
        Err(err)
    }
}

/// Per-source receive state shared with the track reader: which payload type carries DTMF on
/// the source's m-line, and its QoE figures. Which sources are delivered is not decided here
/// but by the sink (the pipeline's stream registry, for a bot); the transport labels every
/// packet of an answered m-line with its `sourceId` and hands it over.
struct Route {
    dtmf_pt: Option<u8>,
    stats: Mutex<ReceiveStats>,
}

/// Why an accepted session got no media.
#[derive(Debug, thiserror::Error)]
enum MediaSetupError {
    /// The application withdrew the session between the claim and the setup.
    #[error("the session was withdrawn")]
    Withdrawn,
    /// The WebRTC peer could not be made.
    #[error(transparent)]
    WebRtc(#[from] WebRtcError),
}

/// The media side of an accepted connection.
struct CallMedia {
    media_session_id: Uuid,
    peer: Peer,
    slot: CallSlot,
    writer: Arc<RtpWriter>,
    bot_sender: Arc<dyn RtpSender>,
    routes: Arc<Mutex<HashMap<SourceId, Arc<Route>>>>,
    connected: bool,
    send_task: Option<JoinHandle<()>>,
}

impl CallMedia {
    fn routes(&self) -> std::sync::MutexGuard<'_, HashMap<SourceId, Arc<Route>>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

enum Wake {
    Ws(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Command(Option<Command>),
    Status,
    StatusClosed,
    Track(Arc<dyn TrackRemote>),
    Timer,
}

/// The WebSocket upgrade at [`MEDIA_PROCESSOR_PATH`]; the caller bounds how long it may take.
pub(crate) async fn upgrade<S>(
    stream: S,
) -> Result<WebSocketStream<S>, tokio_tungstenite::tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio_tungstenite::accept_hdr_async_with_config(stream, check_path, Some(ws_config())).await
}

/// Serves an upgraded connection until it closes. `ticket` is its place at the listener: the
/// `hello` claims through it, so that the listener never evicts a connection that holds a
/// session.
pub(crate) async fn serve<S>(shared: Arc<Shared>, ws: WebSocketStream<S>, ticket: &Ticket)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut ws_tx, mut ws_rx) = ws.split();
    let mut session = BotSession::new(Instant::now(), shared.config.protocol.clone());
    let mut media: Option<CallMedia> = None;
    let mut socket_closed = false;

    'conn: loop {
        while let Some(out) = session.poll_output() {
            match out {
                Output::Send(msg) => {
                    if !socket_closed && ws_tx.send(Message::text(msg.to_json())).await.is_err() {
                        session.handle_connection_lost(Instant::now());
                    }
                }
                Output::Accepted {
                    media_session_id,
                    call_id,
                } => match start_media(&shared, media_session_id).await {
                    Ok(m) => {
                        tracing::info!(
                            %media_session_id,
                            call_id = ?call_id,
                            "media session accepted"
                        );
                        let _ = m.slot.events.send(MediaEvent::Accepted {
                            media_session_id,
                            call_id,
                        });
                        media = Some(m);
                    }
                    Err(e) => {
                        tracing::warn!(%media_session_id, error = %e, "no media for the session");
                        session.handle_media_failed(Instant::now(), &e.to_string());
                    }
                },
                Output::ApplyOffer {
                    seq,
                    sdp,
                    plan,
                    added,
                    removed,
                } => {
                    let Some(m) = media.as_mut() else {
                        session.handle_answer_failed(Instant::now(), seq, "no media session");
                        continue;
                    };
                    let started = Instant::now();
                    let id = m.media_session_id;
                    match apply_offer(m, sdp, &plan).await {
                        Ok(answer) => {
                            tracing::debug!(
                                media_session_id = %id,
                                seq,
                                elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                                added = added.len(),
                                removed = removed.len(),
                                "offer answered"
                            );
                            session.handle_answer(Instant::now(), seq, answer);
                            bind_streams(m, &added, &removed);
                        }
                        Err(e) => {
                            tracing::warn!(
                                media_session_id = %id,
                                seq,
                                error = %e,
                                "offer refused by the WebRTC stack"
                            );
                            session.handle_answer_failed(Instant::now(), seq, &e.to_string());
                        }
                    }
                }
                Output::Ended(reason) => {
                    if let Some(m) = media.as_mut() {
                        log_end(m.media_session_id, &reason);
                        end_media(m, &reason).await;
                    }
                }
                Output::CloseSocket => {
                    if !socket_closed {
                        socket_closed = true;
                        let _ = ws_tx.send(Message::Close(None)).await;
                    }
                }
                Output::DropSocket => break 'conn,
            }
        }

        let deadline = session.poll_timeout();
        let wake = {
            let timer = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            match media.as_mut() {
                Some(m) if !session.is_closed() => tokio::select! {
                    msg = ws_rx.next() => Wake::Ws(msg),
                    cmd = m.slot.commands.recv() => Wake::Command(cmd),
                    changed = m.peer.status.changed() => {
                        if changed.is_ok() { Wake::Status } else { Wake::StatusClosed }
                    }
                    Some(track) = m.peer.tracks.recv() => Wake::Track(track),
                    () = timer => Wake::Timer,
                },
                _ => tokio::select! {
                    msg = ws_rx.next() => Wake::Ws(msg),
                    () = timer => Wake::Timer,
                },
            }
        };
        let now = Instant::now();
        match wake {
            Wake::Ws(Some(Ok(Message::Text(text)))) => {
                let mut reg = shared.registry();
                if session.media_session_id().is_some() || session.is_closed() {
                    session.handle_text(now, text.as_str(), &mut reg.pending);
                } else if !ticket.claim(|| {
                    session.handle_text(now, text.as_str(), &mut reg.pending);
                    session.media_session_id().is_some()
                }) {
                    // Evicted to make room: the listener is closing this connection.
                    break 'conn;
                }
            }
            Wake::Ws(Some(Ok(Message::Binary(_)))) => {
                let mut reg = shared.registry();
                session.handle_text(now, "binary frames are not messages", &mut reg.pending);
            }
            Wake::Ws(Some(Ok(Message::Close(_)) | Err(_)) | None) => {
                session.handle_connection_lost(now);
            }
            Wake::Ws(Some(Ok(_))) => {} // ping/pong are answered by the WebSocket layer
            Wake::Command(Some(Command::HangUp(reason))) => session.hang_up(now, &reason),
            Wake::Command(Some(Command::Dtmf(digit, duration))) => {
                if let Some(m) = &media {
                    let writer = m.writer.clone();
                    let id = m.media_session_id;
                    tokio::spawn(async move {
                        if let Err(e) = writer.write_dtmf(digit, duration).await {
                            tracing::warn!(
                                media_session_id = %id,
                                %digit,
                                error = %e,
                                "DTMF digit not sent"
                            );
                        }
                    });
                }
            }
            Wake::Command(Some(Command::Stats(tx))) => {
                if let Some(m) = &media {
                    let _ = tx.send(collect_stats(m).await);
                }
            }
            Wake::Command(None) => {
                // The application dropped its MediaCall: that is a hang-up.
                session.hang_up(now, "the bot dropped the call");
            }
            Wake::Status => {
                if let Some(m) = media.as_mut() {
                    let state = m.peer.status.borrow_and_update().connection;
                    match state {
                        RTCPeerConnectionState::Connected if !m.connected => {
                            m.connected = true;
                            tracing::info!(media_session_id = %m.media_session_id, "media connected");
                            session.handle_media_connected(now);
                            let _ = m.slot.events.send(MediaEvent::MediaConnected);
                        }
                        RTCPeerConnectionState::Connected => {
                            if session.media_interrupted() {
                                tracing::info!(
                                    media_session_id = %m.media_session_id,
                                    "media resumed after an interruption"
                                );
                                let _ = m.slot.events.send(MediaEvent::MediaResumed);
                            }
                            session.handle_media_connected(now);
                        }
                        RTCPeerConnectionState::Disconnected => {
                            let was = session.media_interrupted();
                            session.handle_media_interrupted(now);
                            if !was && session.media_interrupted() {
                                tracing::warn!(
                                    media_session_id = %m.media_session_id,
                                    "media interrupted: no traffic from the service; waiting for it to resume"
                                );
                                let _ = m.slot.events.send(MediaEvent::MediaInterrupted);
                            }
                        }
                        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                            session.handle_media_failed(now, &format!("media connection {state}"));
                        }
                        _ => {}
                    }
                }
            }
            Wake::StatusClosed => session.handle_media_failed(now, "media connection closed"),
            Wake::Track(track) => {
                if let Some(m) = &media {
                    spawn_reader(m, track);
                }
            }
            Wake::Timer => {
                let awaiting_hello = session.media_session_id().is_none() && !session.is_closed();
                session.handle_timeout(now);
                if awaiting_hello && session.is_closed() {
                    ticket.hello_timed_out();
                }
            }
        }
    }

    if let Some(mut m) = media {
        if !session.is_closed() {
            session.handle_connection_lost(Instant::now());
            while let Some(out) = session.poll_output() {
                if let Output::Ended(reason) = out {
                    log_end(m.media_session_id, &reason);
                    end_media(&mut m, &reason).await;
                }
            }
        }
        let _ = m.peer.pc.close().await;
        if let Some(t) = m.send_task.take() {
            t.abort();
        }
    }
}

async fn start_media(
    shared: &Arc<Shared>,
    media_session_id: Uuid,
) -> Result<CallMedia, MediaSetupError> {
    let slot = shared
        .registry()
        .slots
        .remove(&media_session_id)
        .ok_or(MediaSetupError::Withdrawn)?;
    match build_media(&shared.config.webrtc, media_session_id).await {
        Ok((peer, writer, bot_sender)) => Ok(CallMedia {
            media_session_id,
            peer,
            slot,
            writer,
            bot_sender,
            routes: Arc::new(Mutex::new(HashMap::new())),
            connected: false,
            send_task: None,
        }),
        Err(e) => {
            // The session core will report the failure to the service; the application hears
            // it here, since no CallMedia exists to carry the end.
            let reason = EndReason::MediaFailed {
                detail: e.to_string(),
            };
            slot.sink.on_session_ended(&reason);
            let _ = slot.events.send(MediaEvent::Ended(reason));
            Err(e.into())
        }
    }
}

async fn build_media(
    config: &WebRtcConfig,
    media_session_id: Uuid,
) -> Result<(Peer, Arc<RtpWriter>, Arc<dyn RtpSender>), WebRtcError> {
    let peer = build_peer(config).await?;
    let ssrc = random_ssrc();
    let track = audio_track("bot", &media_session_id.to_string(), ssrc);
    // A sendonly transceiver made before the first offer is matched to the offer's recvonly
    // m-line; adding the track after the offer would bind it to the first participant's line.
    let transceiver = peer
        .pc
        .add_transceiver_from_track(
            as_local(&track),
            Some(rtc::rtp_transceiver::RTCRtpTransceiverInit {
                direction: rtc::rtp_transceiver::RTCRtpTransceiverDirection::Sendonly,
                streams: vec![],
                send_encodings: vec![],
            }),
        )
        .await
        .map_err(WebRtcError::stack("cannot add the bot's track"))?;
    let bot_sender = transceiver
        .sender()
        .await
        .ok()
        .flatten()
        .ok_or(WebRtcError::NoSender)?;
    Ok((peer, Arc::new(RtpWriter::new(track, ssrc)), bot_sender))
}

async fn apply_offer(
    m: &mut CallMedia,
    sdp: String,
    plan: &OfferPlan,
) -> Result<String, WebRtcError> {
    let offer = RTCSessionDescription::offer(sdp).map_err(WebRtcError::stack("offer rejected"))?;
    m.peer
        .pc
        .set_remote_description(offer)
        .await
        .map_err(WebRtcError::stack("offer rejected"))?;
    let answer = m
        .peer
        .pc
        .create_answer(None)
        .await
        .map_err(WebRtcError::stack("cannot answer"))?;
    let sdp = set_local_and_gather(&mut m.peer, answer).await?;
    if m.send_task.is_none() {
        // The payload types are the offer's numbering as negotiated for the bot's sender.
        let (opus_pt, dtmf_pt) = negotiated_payload_types(&m.bot_sender)
            .await
            .unwrap_or((plan.bot_line.opus_pt, plan.bot_line.dtmf_pt));
        m.writer.set_payload_types(opus_pt, dtmf_pt);
        let writer = m.writer.clone();
        let mut rx = std::mem::replace(&mut m.slot.audio_out, mpsc::channel(1).1);
        m.send_task = Some(tokio::spawn(async move {
            while let Some(packet) = rx.recv().await {
                // Before DTLS completes the stack refuses writes; the frame is simply lost,
                // as it would be on the wire.
                let _ = writer
                    .write_opus_at(packet.payload, packet.media_time)
                    .await;
            }
        }));
    }
    Ok(sdp)
}

fn bind_streams(m: &mut CallMedia, added: &[ParticipantLine], removed: &[ParticipantLine]) {
    for p in removed {
        tracing::debug!(media_session_id = %m.media_session_id, source = %p.source, mid = %p.mid, "stream removed");
        m.routes().remove(&p.source);
        m.slot.sink.on_stream_unbound(p.source);
        let _ = m
            .slot
            .events
            .send(MediaEvent::StreamRemoved { source: p.source });
    }
    for p in added {
        tracing::debug!(media_session_id = %m.media_session_id, source = %p.source, mid = %p.mid, "stream added");
        m.routes().insert(
            p.source,
            Arc::new(Route {
                dtmf_pt: p.dtmf_pt,
                stats: Mutex::new(ReceiveStats::new()),
            }),
        );
        m.slot.sink.on_stream_bound(p.source);
        let _ = m
            .slot
            .events
            .send(MediaEvent::StreamAdded { source: p.source });
    }
}

fn spawn_reader(m: &CallMedia, track: Arc<dyn TrackRemote>) {
    let id = m.media_session_id;
    let routes = m.routes.clone();
    let sink = m.slot.sink.clone();
    let events = m.slot.events.clone();
    tokio::spawn(async move {
        let label = track.stream_id().await;
        let Ok(source) = label.parse::<SourceId>() else {
            tracing::info!(
                media_session_id = %id,
                label = %label,
                "track is not a participant stream; ignored"
            );
            drain(track).await;
            return;
        };
        let route = routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&source)
            .cloned();
        let Some(route) = route else {
            tracing::info!(
                media_session_id = %id,
                %source,
                "track is not in the answered plan; ignored"
            );
            drain(track).await;
            return;
        };
        let mut dtmf = DtmfReceiver::new();
        while let Some(event) = track.poll().await {
            match event {
                TrackRemoteEvent::OnRtpPacket(pkt) => {
                    let h = &pkt.header;
                    if Some(h.payload_type) == route.dtmf_pt {
                        if let Some(digit) = dtmf.push(h.timestamp, &pkt.payload) {
                            tracing::debug!(media_session_id = %id, %source, %digit, "DTMF digit");
                            let _ = events.send(MediaEvent::Dtmf { source, digit });
                        }
                        continue;
                    }
                    let arrival = Instant::now();
                    route
                        .stats
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .record(h.sequence_number, h.timestamp, pkt.payload.len(), arrival);
                    sink.on_audio(IncomingAudio {
                        source,
                        sequence: h.sequence_number,
                        timestamp: h.timestamp,
                        ssrc: h.ssrc,
                        marker: h.marker,
                        payload: pkt.payload,
                        arrival,
                    });
                }
                TrackRemoteEvent::OnError => {
                    tracing::warn!(media_session_id = %id, %source, "the WebRTC stack reported a stream error");
                    let _ = events.send(MediaEvent::StreamFailed {
                        source,
                        detail: "the WebRTC stack reported an error on the stream".into(),
                    });
                }
                TrackRemoteEvent::OnEnded => break,
                _ => {}
            }
        }
    });
}

async fn drain(track: Arc<dyn TrackRemote>) {
    while track.poll().await.is_some() {}
}

/// Hang-ups end a session normally; anything else is a failure worth a warning.
fn log_end(media_session_id: Uuid, reason: &EndReason) {
    match reason {
        EndReason::HangUpByBot { .. } | EndReason::HangUpByService { .. } => {
            tracing::info!(%media_session_id, %reason, "media session ended");
        }
        _ => tracing::warn!(%media_session_id, %reason, "media session ended"),
    }
}

async fn end_media(m: &mut CallMedia, reason: &EndReason) {
    if let Some(t) = m.send_task.take() {
        t.abort();
    }
    m.slot.sink.on_session_ended(reason);
    let _ = m.slot.events.send(MediaEvent::Ended(reason.clone()));
    let _ = m.peer.pc.close().await;
}

async fn collect_stats(m: &CallMedia) -> CallStats {
    let received = m
        .routes()
        .iter()
        .map(|(s, r)| {
            (
                *s,
                r.stats
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .quality(),
            )
        })
        .collect();
    let (packets, bytes) = m.writer.counters();
    let rtt = crate::stats::rtt_from_report(&m.peer.pc).await;
    CallStats {
        received,
        sent: StreamQuality {
            packets,
            bytes,
            rtt,
            ..StreamQuality::default()
        },
        rtt,
    }
}
