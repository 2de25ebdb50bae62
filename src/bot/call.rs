//! One call: setting up its media, the tasks that feed the application, and the handle.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use audio_pipeline::{CallMedia, ReceiveEvent, SendEvent};
use graph_signaling::build;
use graph_signaling::client::OperationHandle;
use graph_signaling::models::{
    AnswerBody, CommsOperation, IdentitySet, InvitationParticipantInfo, MediaConfig, Modality,
    RecordingStatus, RejectReason,
};
use media_session::{AudioSocketSettings, MediaSession, StreamDirection};
use media_transport::binding::GateConfig;
use media_transport::pipeline::{PipelineBinding, spawn_send_pump};
use media_transport::protocol::EndReason;
use media_transport::{CallStats, MediaCall, MediaEvent};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{
    AudioReceiver, AudioSender, BotError, CallEvent, CallTarget, ReceivedAudio, Route, Shared, lock,
};

/// Frames queued toward the application's [`AudioReceiver`] (2 s of 20 ms ticks, counting
/// the unmixed frames of a few talkers).
const APP_AUDIO_QUEUE: usize = 400;

/// How often engine output of a send-only call is moved to the application (a call that
/// receives is polled in step with its receive tick instead). Polling, not a blocking wait:
/// the engine's queues are fed by real-time threads, which must not wake async tasks.
const PUMP_PERIOD: Duration = Duration::from_millis(10);

/// After a hang-up the calling service closes the media session itself (it removes the
/// participants' streams first); the bot closes it only if the service has not within this.
const MEDIA_CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Requests to the task that owns a call's media session.
#[derive(Debug)]
pub(crate) enum MediaCommand {
    HangUp(String),
    Stats(oneshot::Sender<Option<CallStats>>),
}

/// A call's media before the call id is known.
struct MediaParts {
    session: MediaSession,
    media: Arc<CallMedia>,
    binding: Arc<PipelineBinding>,
    media_call: MediaCall,
}

fn open_media(shared: &Shared, call_id: Option<Uuid>) -> Result<MediaParts, BotError> {
    let mut builder = MediaSession::builder(shared.endpoint.mp_uri().clone()).audio(
        AudioSocketSettings::new(StreamDirection::SendReceive, shared.format.blob_format()),
    );
    if let Some(id) = call_id {
        builder = builder.call_id(id);
    }
    let session = builder.build()?;
    let media = Arc::new(
        shared
            .engine
            .open_call(shared.format.spec(), StreamDirection::SendReceive)?,
    );
    let (Some(registry), Some(send)) = (media.registry(), media.send()) else {
        unreachable!("a sendReceive call has both directions");
    };
    let binding = PipelineBinding::new(registry.clone(), GateConfig::default());
    let media_call = shared.endpoint.register(&session, binding.clone())?;
    // The pump thread ends by itself when the engine closes the queue or the session ends.
    spawn_send_pump(send.packets().clone(), media_call.audio_sender())?;
    Ok(MediaParts {
        session,
        media,
        binding,
        media_call,
    })
}

/// Wires a call whose id is known: routes, tasks, handle.
fn attach(shared: &Arc<Shared>, call_id: String, parts: MediaParts) -> Call {
    let MediaParts {
        session,
        media,
        binding,
        media_call,
    } = parts;
    if let Ok(id) = Uuid::parse_str(&call_id) {
        // Outgoing calls learn their id after the blob; the endpoint then checks it.
        shared.endpoint.set_call_id(session.media_session_id(), id);
    }
    let (events_tx, events) = mpsc::unbounded_channel();
    let (audio_tx, audio_rx) = mpsc::channel(APP_AUDIO_QUEUE);
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let ended = Arc::new(AtomicBool::new(false));
    let quality = Arc::new(Mutex::new(None));
    let registry = media
        .registry()
        .cloned()
        .unwrap_or_else(|| unreachable!("a sendReceive call receives"));
    tokio::spawn(media_task(
        Arc::downgrade(shared),
        call_id.clone(),
        media_call,
        commands_rx,
        events_tx.clone(),
        media.clone(),
        quality.clone(),
        ended.clone(),
    ));
    tokio::spawn(pump_task(
        Arc::downgrade(shared),
        media.clone(),
        audio_tx,
        events_tx.clone(),
        ended.clone(),
    ));
    shared.attach(
        &call_id,
        Route {
            binding,
            registry,
            events: events_tx,
            state: None,
            participants: 0,
            quality,
            ended: ended.clone(),
            media_commands: commands.clone(),
        },
    );
    Call {
        id: call_id,
        shared: shared.clone(),
        events,
        audio: Some(AudioReceiver {
            rx: audio_rx,
            spec: media.spec(),
        }),
        sender: AudioSender { media },
        commands,
        ended,
    }
}

pub(crate) async fn place(shared: &Arc<Shared>, target: CallTarget) -> Result<Call, BotError> {
    let parts = open_media(shared, None)?;
    let media_config = MediaConfig::app_hosted(parts.session.blob());
    let endpoints = shared.target.endpoints();
    let me = IdentitySet::application(&endpoints.app_id, Some(shared.display_name.clone()));
    let cb = &shared.callback_url;
    let request = match target {
        CallTarget::User { id, name } => build::p2p_user_call(cb, me, &id, name, media_config),
        CallTarget::Group { users, subject } => {
            let users: Vec<(&str, Option<String>)> = users
                .iter()
                .map(|(id, n)| (id.as_str(), n.clone()))
                .collect();
            build::group_call(cb, me, &users, subject, media_config)
        }
        CallTarget::Meeting {
            join_meeting_id,
            passcode,
        } => build::join_meeting_by_id(
            cb,
            &join_meeting_id,
            passcode,
            &endpoints.tenant_id,
            media_config,
        ),
    };
    let session_id = parts.session.media_session_id();
    let created = match shared.client.create_call(&request).await {
        Ok(c) => c,
        Err(e) => {
            shared.endpoint.cancel(session_id);
            return Err(e.into());
        }
    };
    let Some(id) = created.id.get().cloned() else {
        shared.endpoint.cancel(session_id);
        return Err(BotError::NoCallId);
    };
    shared.counters.calls_placed.fetch_add(1, Ordering::Relaxed);
    Ok(attach(shared, id, parts))
}

/// Owns the media session: turns its events into call events, answers hang-up and stats
/// requests, reports quality periodically.
#[allow(clippy::too_many_arguments)] // One task's whole state, passed once.
async fn media_task(
    shared: Weak<Shared>,
    call_id: String,
    mut media_call: MediaCall,
    mut commands: mpsc::UnboundedReceiver<MediaCommand>,
    events: mpsc::UnboundedSender<CallEvent>,
    media: Arc<CallMedia>,
    quality: Arc<Mutex<Option<CallStats>>>,
    ended: Arc<AtomicBool>,
) {
    let period = shared
        .upgrade()
        .map_or(Duration::from_secs(10), |s| s.qoe_interval);
    let mut qoe = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut connected = false;
    let mut closing: Option<(tokio::time::Instant, String)> = None;
    loop {
        let close_at = closing.as_ref().map(|(at, _)| *at);
        tokio::select! {
            event = media_call.next_event() => {
                let Some(event) = event else { break };
                let out = match event {
                    MediaEvent::MediaConnected => {
                        connected = true;
                        if let Some(s) = media.send() {
                            s.set_active(true);
                        }
                        CallEvent::MediaConnected
                    }
                    MediaEvent::Dtmf { source, digit } => CallEvent::Dtmf { source, digit },
                    MediaEvent::StreamFailed { source, detail } => {
                        if let Some(s) = shared.upgrade() {
                            s.counters.media_stream_failures.fetch_add(1, Ordering::Relaxed);
                        }
                        CallEvent::MediaStreamFailed { source, detail }
                    }
                    MediaEvent::Ended(reason) => {
                        connected = false;
                        if let Some(s) = media.send() {
                            s.set_active(false);
                        }
                        if reason == EndReason::NeverConnected
                            && !ended.load(Ordering::Relaxed)
                            && let Some(s) = shared.upgrade()
                        {
                            // Nobody will ever connect (real Graph's media processor cannot):
                            // end the call rather than leave it open and silent.
                            let (client, id) = (s.client.clone(), call_id.clone());
                            tokio::spawn(async move {
                                let _ = client.hang_up(&id).await;
                            });
                        }
                        CallEvent::MediaEnded(reason)
                    }
                    _ => continue,
                };
                let _ = events.send(out);
            }
            Some(command) = commands.recv() => match command {
                MediaCommand::HangUp(reason) => {
                    if closing.is_none() {
                        closing = Some((tokio::time::Instant::now() + MEDIA_CLOSE_GRACE, reason));
                    }
                }
                MediaCommand::Stats(reply) => {
                    let _ = reply.send(media_call.stats().await);
                }
            },
            () = tokio::time::sleep_until(close_at.unwrap_or_else(tokio::time::Instant::now)),
                if close_at.is_some() =>
            {
                if let Some((_, reason)) = closing.take() {
                    let _ = media_call.hang_up(&reason);
                }
            }
            _ = qoe.tick(), if connected => {
                if let Some(stats) = media_call.stats().await {
                    *lock(&quality) = Some(stats.clone());
                    let _ = events.send(CallEvent::Quality(Box::new(stats)));
                }
            }
        }
    }
}

/// The engine produces a call's frames every 20 ms.
const FRAME_PERIOD: Duration = Duration::from_millis(20);

/// How long after a call's receive tick its frames are collected: the tick's work starts a
/// millisecond early and takes well under one, so they are ready by then.
const PUMP_LAG: Duration = Duration::from_millis(1);

/// The first instant of `phase + k × 20 ms` (k ≥ 0) at or after `now`.
fn next_tick(phase: Instant, now: Instant) -> Instant {
    if now <= phase {
        return phase;
    }
    let periods = (now - phase).as_nanos().div_ceil(FRAME_PERIOD.as_nanos());
    phase + FRAME_PERIOD * u32::try_from(periods).unwrap_or(u32::MAX)
}

/// Moves the engine's output (frames, speaker changes, send events) to the application.
async fn pump_task(
    shared: Weak<Shared>,
    media: Arc<CallMedia>,
    audio: mpsc::Sender<ReceivedAudio>,
    events: mpsc::UnboundedSender<CallEvent>,
    ended: Arc<AtomicBool>,
) {
    let mut tick = match media.receive_phase() {
        // In step with the engine: wake just after each frame is produced, so it reaches the
        // application at once and a reply makes this period's send tick.
        Some(phase) => {
            let first = next_tick(phase + PUMP_LAG, Instant::now());
            let mut t = tokio::time::interval_at(first.into(), FRAME_PERIOD);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            t
        }
        None => {
            let mut t = tokio::time::interval(PUMP_PERIOD);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        }
    };
    loop {
        let app_gone = audio.is_closed() && events.is_closed();
        if ended.load(Ordering::Relaxed) || app_gone {
            break;
        }
        tick.tick().await;
        let mut dropped = 0u64;
        if let Some(rx) = media.events() {
            while let Ok(event) = rx.try_recv() {
                let frame = match event {
                    ReceiveEvent::Unmixed(f) => ReceivedAudio::Unmixed(f),
                    ReceiveEvent::Mixed {
                        frame,
                        active_speakers,
                    } => ReceivedAudio::Mixed {
                        frame,
                        active_speakers,
                    },
                    ReceiveEvent::DominantSpeakerChanged(s) => {
                        let _ = events.send(CallEvent::DominantSpeakerChanged(s));
                        continue;
                    }
                };
                if audio.try_send(frame).is_err() {
                    dropped += 1;
                }
            }
        }
        if let Some(send) = media.send() {
            while let Ok(event) = send.events().try_recv() {
                let out = match event {
                    SendEvent::StatusChanged(s) => CallEvent::SendStatusChanged(s),
                    SendEvent::LowOnFrames { queued } => CallEvent::LowOnFrames { queued },
                };
                let _ = events.send(out);
            }
        }
        if dropped > 0
            && let Some(s) = shared.upgrade()
        {
            s.counters
                .app_frames_dropped
                .fetch_add(dropped, Ordering::Relaxed);
        }
    }
}

/// A call the bot placed or answered. Dropping it stops delivering audio and events to the
/// application; it does not hang up (call [`Call::hang_up`]).
#[derive(Debug)]
pub struct Call {
    id: String,
    shared: Arc<Shared>,
    events: mpsc::UnboundedReceiver<CallEvent>,
    audio: Option<AudioReceiver>,
    sender: AudioSender,
    commands: mpsc::UnboundedSender<MediaCommand>,
    ended: Arc<AtomicBool>,
}

impl Drop for Call {
    fn drop(&mut self) {
        // Stops the pump so the engine's call closes once the route lets go of it too.
        self.ended.store(true, Ordering::Relaxed);
    }
}

impl Call {
    /// The Graph call id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The next event; `None` once the call is over and every event was read.
    pub async fn next_event(&mut self) -> Option<CallEvent> {
        self.events.recv().await
    }

    /// An event if one is queued.
    pub fn try_next_event(&mut self) -> Option<CallEvent> {
        self.events.try_recv().ok()
    }

    /// The call's received audio (per participant and mixed, every 20 ms). `None` after the
    /// first take.
    pub fn audio_receiver(&mut self) -> Option<AudioReceiver> {
        self.audio.take()
    }

    /// Sends the bot's audio into the call.
    pub fn audio_sender(&self) -> AudioSender {
        self.sender.clone()
    }

    /// True once the call terminated.
    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }

    /// Invites a Teams user into the call and waits for the outcome.
    pub async fn invite(
        &self,
        user_id: &str,
        name: Option<String>,
    ) -> Result<CommsOperation, BotError> {
        let who = InvitationParticipantInfo::new(IdentitySet::user(user_id, name));
        let handle = self.shared.client.invite(&self.id, vec![who], None).await?;
        wait(handle).await
    }

    /// Mutes the bot (server side) and waits for the outcome.
    pub async fn mute(&self) -> Result<CommsOperation, BotError> {
        wait(self.shared.client.mute_self(&self.id, None).await?).await
    }

    /// Unmutes the bot and waits for the outcome.
    pub async fn unmute(&self) -> Result<CommsOperation, BotError> {
        wait(self.shared.client.unmute_self(&self.id, None).await?).await
    }

    /// Tells the service (and so every participant's client) whether the bot records, and
    /// waits for the outcome. Teams policy requires [`RecordingStatus::Recording`] to succeed
    /// *before* a bot stores any of the call's media, and a status change back when it stops.
    pub async fn update_recording_status(
        &self,
        status: RecordingStatus,
    ) -> Result<CommsOperation, BotError> {
        let handle = self
            .shared
            .client
            .update_recording_status(&self.id, status, None)
            .await?;
        wait(handle).await
    }

    /// Hangs up (in a group call the bot leaves). [`CallEvent::Terminated`] follows.
    pub async fn hang_up(&self) -> Result<(), BotError> {
        self.shared.client.hang_up(&self.id).await?;
        let _ = self
            .commands
            .send(MediaCommand::HangUp("bot hung up".into()));
        Ok(())
    }

    /// Quality of the media path now (QoE): per-stream packets, loss, jitter, round trip.
    /// `None` before media connected or after it ended.
    pub async fn quality(&self) -> Option<CallStats> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(MediaCommand::Stats(tx)).ok()?;
        rx.await.ok().flatten()
    }
}

async fn wait(handle: OperationHandle) -> Result<CommsOperation, BotError> {
    Ok(handle.wait().await?)
}

/// An incoming call waiting to be answered (within the service's 15 s window).
#[derive(Debug)]
pub struct IncomingCall {
    id: String,
    received_at: Instant,
    shared: Arc<Shared>,
}

impl IncomingCall {
    /// The Graph call id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Answers with app-hosted media; the call's events and audio flow as for a placed call.
    pub async fn answer(self) -> Result<Call, BotError> {
        let call_uuid = Uuid::parse_str(&self.id).ok();
        let parts = open_media(&self.shared, call_uuid)?;
        let body = AnswerBody {
            callback_uri: self.shared.callback_url.clone(),
            media_config: MediaConfig::app_hosted(parts.session.blob()),
            accepted_modalities: vec![Modality::Audio],
            participant_capacity: None,
            call_options: None,
        };
        let session_id = parts.session.media_session_id();
        // Attached before answering, so no notification of the answered call is missed.
        let call = attach(&self.shared, self.id.clone(), parts);
        if let Err(e) = self
            .shared
            .client
            .answer(&self.id, &body, self.received_at)
            .await
        {
            self.shared.endpoint.cancel(session_id);
            lock(&self.shared.routes).calls.remove(&self.id);
            return Err(e.into());
        }
        self.shared
            .counters
            .calls_answered
            .fetch_add(1, Ordering::Relaxed);
        Ok(call)
    }

    /// Declines the call.
    pub async fn reject(self) -> Result<(), BotError> {
        lock(&self.shared.routes).early.remove(&self.id);
        self.shared
            .client
            .reject(&self.id, RejectReason::Busy)
            .await?;
        Ok(())
    }
}

/// The stream of incoming calls ([`super::Bot::incoming_calls`]).
#[derive(Debug)]
pub struct IncomingCalls {
    pub(super) rx: mpsc::UnboundedReceiver<(String, Instant)>,
    pub(super) shared: Arc<Shared>,
}

impl IncomingCalls {
    /// The next incoming call; `None` when the bot stopped.
    pub async fn next(&mut self) -> Option<IncomingCall> {
        let (id, received_at) = self.rx.recv().await?;
        Some(IncomingCall {
            id,
            received_at,
            shared: self.shared.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pump_wakes_on_the_next_tick_of_the_phase() {
        let phase = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(next_tick(phase + ms(5), phase), phase + ms(5));
        assert_eq!(next_tick(phase, phase), phase);
        assert_eq!(next_tick(phase, phase + ms(1)), phase + ms(20));
        assert_eq!(next_tick(phase, phase + ms(20)), phase + ms(20));
        assert_eq!(next_tick(phase, phase + ms(41)), phase + ms(60));
    }
}
