//! One call as the application holds it: setting up its media, handing it to its driver
//! (the task that owns the call's [`crate::call_core::CallCore`]), and the handle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use audio_pipeline::{CallMedia, EngineError, ReceiveEvent, SendEvent};
use graph_signaling::build;
use graph_signaling::models::{
    AnswerBody, CommsOperation, IdentitySet, InvitationParticipantInfo, MediaConfig, Modality,
    RecordingStatus, RejectReason,
};
use media_session::{AudioSocketSettings, MediaSession, StreamDirection};
use media_transport::CallStats;
use media_transport::binding::GateConfig;
use media_transport::dtmf::DtmfDigit;
use media_transport::pipeline::{PipelineBinding, spawn_send_pump};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::driver::{self, CallParts, DriverInput, Reply};
use super::{
    AudioReceiver, AudioSender, BotError, CallEvent, CallTarget, ReceivedAudio, Shared, lock,
};
use crate::call_core::{AppRequest, CallAction, CallCore, Direction, Ticket};

/// Frames queued toward the application's [`AudioReceiver`] (2 s of 20 ms ticks, counting
/// the unmixed frames of a few talkers).
const APP_AUDIO_QUEUE: usize = 400;

/// How often engine output of a send-only call is moved to the application (a call that
/// receives is polled in step with its receive tick instead). Polling, not a blocking wait:
/// the engine's queues are fed by real-time threads, which must not wake async tasks.
const PUMP_PERIOD: Duration = Duration::from_millis(10);

/// A call's media before the call id is known, and its media session.
struct Opened {
    session: MediaSession,
    parts: CallParts,
}

fn open_media(shared: &Shared, call_id: Option<Uuid>) -> Result<Opened, BotError> {
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
    Ok(Opened {
        session,
        parts: CallParts {
            media,
            binding,
            media_call,
        },
    })
}

/// Hands a call whose id is known to a new driver and returns the application's handle.
fn start(
    shared: &Arc<Shared>,
    call_id: String,
    direction: Direction,
    group: bool,
    opened: Opened,
) -> Call {
    let Opened { session, parts } = opened;
    if let Ok(id) = Uuid::parse_str(&call_id) {
        // Outgoing calls learn their id after the blob; the endpoint then checks it.
        shared.endpoint.set_call_id(session.media_session_id(), id);
    }
    let core = CallCore::new(
        call_id.clone(),
        direction,
        group,
        shared.call_config.clone(),
        tokio::time::Instant::now().into_std(),
    );
    let (audio_tx, audio_rx) = mpsc::channel(APP_AUDIO_QUEUE);
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let media = parts.media.clone();
    let pump = tokio::spawn(pump_task(
        Arc::downgrade(shared),
        media.clone(),
        audio_tx,
        events_tx.clone(),
    ));
    let handle = driver::spawn(shared, core, parts, pump, events_tx, events_rx);
    Call {
        id: call_id,
        inputs: handle.inputs,
        events: handle.events,
        audio: Some(AudioReceiver {
            rx: audio_rx,
            spec: media.spec(),
        }),
        sender: AudioSender::new(&media),
        ended: handle.ended,
    }
}

pub(crate) async fn place(shared: &Arc<Shared>, target: CallTarget) -> Result<Call, BotError> {
    let opened = open_media(shared, None)?;
    let media_config = MediaConfig::app_hosted(opened.session.blob());
    let endpoints = shared.target.endpoints();
    let me = IdentitySet::application(&endpoints.app_id, Some(shared.display_name.clone()));
    let cb = &shared.callback_url;
    let request = target.request_body(cb, me, &endpoints.tenant_id, media_config);
    let session_id = opened.session.media_session_id();
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
    let group = build::is_group_call(&request) || build::is_group_call(&created);
    shared.counters.calls_placed.fetch_add(1, Ordering::Relaxed);
    tracing::info!(instance = %shared.instance_id, call_id = %id, group, "call placed");
    Ok(start(shared, id, Direction::Outgoing, group, opened))
}

/// The engine produces a call's frames every 20 ms.
const FRAME_PERIOD: Duration = Duration::from_millis(20);

/// How long after the receive worker starts a call's tick its frames are collected: the
/// tick's work takes well under a millisecond (a late one is caught by the retries below).
const PUMP_LAG: Duration = Duration::from_micros(500);

/// How often, and how soon, the pump looks again when its wake-up found no frame.
const RETRIES: u32 = 3;
const RETRY_AFTER: Duration = Duration::from_millis(1);

/// The first instant of `phase + k × 20 ms` (k ≥ 0) at or after `now`.
fn next_tick(phase: Instant, now: Instant) -> Instant {
    if now <= phase {
        return phase;
    }
    let periods = (now - phase).as_nanos().div_ceil(FRAME_PERIOD.as_nanos());
    phase + FRAME_PERIOD * u32::try_from(periods).unwrap_or(u32::MAX)
}

/// Moves the engine's output (frames, speaker changes, send events) to the application.
/// Ends when the application dropped both its audio receiver and its call handle, or when
/// the call's driver aborts it at release.
async fn pump_task(
    shared: std::sync::Weak<Shared>,
    media: Arc<CallMedia>,
    audio: mpsc::Sender<ReceivedAudio>,
    events: mpsc::UnboundedSender<CallEvent>,
) {
    // Without a receive side there is nothing to be in step with: poll on a plain period.
    let mut plain = media.receive_phase().is_none().then(|| {
        let mut t = tokio::time::interval(PUMP_PERIOD);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut last_wake = Instant::now();
    // Set when a wake-up in step with the engine found no frame yet (the receive worker ran
    // late): look again a millisecond later rather than a period later, so the frame is not
    // handed over together with the next one (an app answering each frame would then push
    // two at once and stay a frame behind).
    let mut retries_left = 0u32;
    loop {
        if audio.is_closed() && events.is_closed() {
            break;
        }
        match (plain.as_mut(), media.receive_phase()) {
            (Some(t), _) => {
                t.tick().await;
            }
            (None, Some(_)) if retries_left > 0 => {
                retries_left -= 1;
                tokio::time::sleep(RETRY_AFTER).await;
            }
            // In step with the engine: wake just after each frame is produced, so it reaches
            // the application at once and a reply makes this period's send tick. The phase
            // moves when the engine moves the call's tick, so it is read every period.
            (None, Some(phase)) => {
                let at = next_tick(phase + PUMP_LAG, last_wake + PUMP_LAG);
                tokio::time::sleep_until(at.into()).await;
                last_wake = Instant::now();
                retries_left = RETRIES;
            }
            (None, None) => break,
        }
        let mut frames = 0u32;
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
                frames += 1;
                if audio.try_send(frame).is_err() {
                    dropped += 1;
                }
            }
        }
        if frames > 0 {
            retries_left = 0;
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
/// application; it does not hang up (call [`Call::hang_up`]). The call itself is owned by its
/// driver task, which releases everything once the call is over.
#[derive(Debug)]
pub struct Call {
    id: String,
    inputs: mpsc::UnboundedSender<DriverInput>,
    events: mpsc::UnboundedReceiver<CallEvent>,
    audio: Option<AudioReceiver>,
    sender: AudioSender,
    ended: Arc<AtomicBool>,
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

    /// Asks the call's owner and waits for the outcome.
    async fn ask(&self, request: AppRequest) -> Result<Option<CommsOperation>, BotError> {
        let (tx, rx) = oneshot::channel::<Reply>();
        self.inputs
            .send(DriverInput::App(request, Some(tx)))
            .map_err(|_| BotError::CallOver)?;
        Ok(rx.await.map_err(|_| BotError::CallOver)??)
    }

    async fn action(&self, action: CallAction) -> Result<CommsOperation, BotError> {
        // The ticket is the driver's to assign.
        let op = self.ask(AppRequest::Action(Ticket(0), action)).await?;
        Ok(op.unwrap_or_default())
    }

    /// Invites a Teams user into the call and waits for the outcome.
    pub async fn invite(
        &self,
        user_id: &str,
        name: Option<String>,
    ) -> Result<CommsOperation, BotError> {
        let who = InvitationParticipantInfo::new(IdentitySet::user(user_id, name));
        self.action(CallAction::Invite(vec![who])).await
    }

    /// Mutes the bot (server side) and waits for the outcome.
    pub async fn mute(&self) -> Result<CommsOperation, BotError> {
        self.action(CallAction::MuteSelf).await
    }

    /// Unmutes the bot and waits for the outcome.
    pub async fn unmute(&self) -> Result<CommsOperation, BotError> {
        self.action(CallAction::UnmuteSelf).await
    }

    /// Tells the service (and so every participant's client) whether the bot records, and
    /// waits for the outcome. Teams policy requires [`RecordingStatus::Recording`] to succeed
    /// *before* a bot stores any of the call's media, and a status change back when it stops.
    pub async fn update_recording_status(
        &self,
        status: RecordingStatus,
    ) -> Result<CommsOperation, BotError> {
        self.action(CallAction::UpdateRecordingStatus(status)).await
    }

    /// Hangs up (in a group call the bot leaves) once the service took the request.
    /// [`CallEvent::Terminated`] follows; hanging up a call that is over succeeds.
    pub async fn hang_up(&self) -> Result<(), BotError> {
        match self.ask(AppRequest::HangUp(Ticket(0))).await {
            Ok(_) | Err(BotError::CallOver) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends a DTMF key (RFC 4733) on the media path, held for `duration`.
    pub fn send_dtmf(&self, digit: DtmfDigit, duration: Duration) -> Result<(), BotError> {
        self.inputs
            .send(DriverInput::App(
                AppRequest::SendDtmf { digit, duration },
                None,
            ))
            .map_err(|_| BotError::CallOver)
    }

    /// Quality of the media path now (QoE): per-stream packets, loss, jitter, round trip.
    /// `None` before media connected or after it ended.
    pub async fn quality(&self) -> Option<CallStats> {
        let (tx, rx) = oneshot::channel();
        self.inputs.send(DriverInput::Quality(tx)).ok()?;
        rx.await.ok().flatten()
    }
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
        let opened = match open_media(&self.shared, call_uuid) {
            Ok(o) => o,
            Err(e @ BotError::Engine(EngineError::OverCapacity { .. })) => {
                // Declined at once, so the caller hears busy now rather than ringing out
                // the service's answer window, and a proxy's next instance can take the
                // next call.
                tracing::warn!(
                    instance = %self.shared.instance_id,
                    call_id = %self.id,
                    error = %e,
                    "incoming call declined: over capacity"
                );
                self.shared
                    .counters
                    .calls_declined_busy
                    .fetch_add(1, Ordering::Relaxed);
                let id = self.id.clone();
                if let Err(r) = self.reject().await {
                    tracing::warn!(call_id = %id, error = %r, "declining the call failed");
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let body = AnswerBody {
            callback_uri: self.shared.callback_url.clone(),
            media_config: MediaConfig::app_hosted(opened.session.blob()),
            accepted_modalities: vec![Modality::Audio],
            participant_capacity: None,
            call_options: None,
        };
        // Owned before answering, so no notification of the answered call is missed.
        let call = start(
            &self.shared,
            self.id.clone(),
            Direction::Incoming,
            false,
            opened,
        );
        if let Err(e) = self
            .shared
            .client
            .answer(&self.id, &body, self.received_at)
            .await
        {
            // The service never took the call: the core ends it and releases its media.
            let _ = call
                .inputs
                .send(DriverInput::Notification(Box::new(crate::call_core::gone(
                    &self.id,
                ))));
            return Err(e.into());
        }
        self.shared
            .counters
            .calls_answered
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(instance = %self.shared.instance_id, call_id = %self.id, "call answered");
        Ok(call)
    }

    /// Declines the call.
    pub async fn reject(self) -> Result<(), BotError> {
        let _ = lock(&self.shared.calls).early.take(&self.id);
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
