//! One call as the application holds it: setting up its media, handing it to its driver
//! (the task that owns the call's [`crate::call_core::CallCore`]), and the handle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use audio_pipeline::{CallMedia, EngineError, ReceiveEvent, SendEvent};
use graph_signaling::build;
use graph_signaling::client::GraphClient;
use graph_signaling::models::{
    AnswerBody, AudioRoutingGroup, CommsOperation, ContentSharingSession, IdentitySet,
    InvitationParticipantInfo, MediaConfig, MediaPrompt, Modality, Nullable, Participant,
    ParticipantInfo, RecordResponseBody, RecordingStatus, RejectReason, ScreenSharingRole, Tone,
};
use media_session::{AudioSocketSettings, MediaSession, StreamDirection};
use media_transport::CallStats;
use media_transport::binding::GateConfig;
use media_transport::dtmf::DtmfDigit;
use media_transport::pipeline::PipelineBinding;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::driver::{self, CallParts, DriverInput, Reply};
use super::{
    AudioReceiver, AudioSender, BotError, CallEvent, CallTarget, ReceivedAudio, Shared, lock,
};
use crate::call_core::{
    AppRequest, CallAction, CallCore, ControlAction, Direction, MediaHosting, Ticket,
};

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
    // The route leaves the pump by itself when the engine closes the queue or the session ends.
    shared
        .send_pump
        .add(send.packets().clone(), media_call.audio_sender());
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
/// `opened` is the call's media; none with service-hosted media.
fn start(
    shared: &Arc<Shared>,
    call_id: String,
    direction: Direction,
    group: bool,
    opened: Option<Opened>,
    created: Option<graph_signaling::models::Call>,
) -> Call {
    let mut config = shared.call_config.clone();
    config.media = if opened.is_some() {
        MediaHosting::App
    } else {
        MediaHosting::Service
    };
    let now = tokio::time::Instant::now().into_std();
    let mut core = CallCore::new(call_id.clone(), direction, group, config, now);
    if let Some(created) = created {
        // The answer names the bot's own participant id. Told before any notification of the
        // call is replayed, the roster knows the bot's entry whatever identity it shows (a
        // guest, an application instance).
        let update = created_as_update(&call_id, created);
        core.handle_input(crate::call_core::Input::Notification(Box::new(update)), now);
    }
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let Some(Opened { session, parts }) = opened else {
        let handle = driver::spawn(shared, core, None, None, events_tx, events_rx);
        return Call {
            id: call_id.clone(),
            control: CallControl {
                call_id,
                inputs: handle.inputs,
                client: shared.client.clone(),
            },
            events: handle.events,
            audio: None,
            sender: AudioSender::detached(shared.format.spec()),
            ended: handle.ended,
            media: MediaHosting::Service,
        };
    };
    if let Ok(id) = Uuid::parse_str(&call_id) {
        // Outgoing calls learn their id after the blob; the endpoint then checks it.
        shared.endpoint.set_call_id(session.media_session_id(), id);
    }
    let (audio_tx, audio_rx) = mpsc::channel(APP_AUDIO_QUEUE);
    let media = parts.media.clone();
    let pump = tokio::spawn(pump_task(
        Arc::downgrade(shared),
        media.clone(),
        audio_tx,
        events_tx.clone(),
    ));
    let handle = driver::spawn(shared, core, Some(parts), Some(pump), events_tx, events_rx);
    Call {
        id: call_id.clone(),
        control: CallControl {
            call_id,
            inputs: handle.inputs,
            client: shared.client.clone(),
        },
        events: handle.events,
        audio: Some(AudioReceiver {
            rx: audio_rx,
            spec: media.spec(),
        }),
        sender: AudioSender::new(&media),
        ended: handle.ended,
        media: MediaHosting::App,
    }
}

pub(crate) async fn place(
    shared: &Arc<Shared>,
    target: CallTarget,
    hosting: MediaHosting,
) -> Result<Call, BotError> {
    let opened = match hosting {
        MediaHosting::App => Some(open_media(shared, None)?),
        MediaHosting::Service => None,
    };
    let media_config = media_config(opened.as_ref());
    let endpoints = shared.target.endpoints();
    let me = IdentitySet::application(&endpoints.app_id, Some(shared.display_name.clone()));
    let cb = &shared.callback_url;
    let request = target.request_body(cb, me, &endpoints.tenant_id, media_config);
    let withdraw = |opened: &Option<Opened>| {
        if let Some(o) = opened {
            shared.endpoint.cancel(o.session.media_session_id());
        }
    };
    let created = match shared.client.create_call(&request).await {
        Ok(c) => c,
        Err(e) => {
            withdraw(&opened);
            return Err(e.into());
        }
    };
    let Some(id) = created.id.get().cloned() else {
        withdraw(&opened);
        return Err(BotError::NoCallId);
    };
    let group = build::is_group_call(&request) || build::is_group_call(&created);
    shared.counters.calls_placed.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        instance = %shared.instance_id,
        call_id = %id,
        group,
        media = hosting.as_str(),
        "call placed"
    );
    Ok(start(
        shared,
        id,
        Direction::Outgoing,
        group,
        opened,
        Some(created),
    ))
}

/// The create-call answer as the `updated` notification of the call it describes.
fn created_as_update(
    call_id: &str,
    created: graph_signaling::models::Call,
) -> graph_signaling::models::CommsNotification {
    let mut n = crate::call_core::gone(call_id);
    n.change_type = graph_signaling::models::ChangeType::Updated;
    n.resource_data = Nullable::Value(graph_signaling::models::ResourceData::One(Box::new(
        graph_signaling::models::ResourceItem::Call(Box::new(created)),
    )));
    n
}

/// The `mediaConfig` of a call: app-hosted with the session's blob, or service-hosted.
fn media_config(opened: Option<&Opened>) -> MediaConfig {
    match opened {
        Some(o) => MediaConfig::app_hosted(o.session.blob()),
        None => MediaConfig::service_hosted(),
    }
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
///
/// A `Call` derefs to its [`CallControl`]: the actions (invite, prompts, transfer, hang up,
/// ...) are there, and [`Call::control`] hands out a clone of it, so a task can act on the
/// call while another reads its events.
#[derive(Debug)]
pub struct Call {
    id: String,
    control: CallControl,
    events: mpsc::UnboundedReceiver<CallEvent>,
    audio: Option<AudioReceiver>,
    sender: AudioSender,
    ended: Arc<AtomicBool>,
    media: MediaHosting,
}

impl std::ops::Deref for Call {
    type Target = CallControl;

    fn deref(&self) -> &CallControl {
        &self.control
    }
}

/// The actions on a call, cheap to clone and usable from any task while the [`Call`] reads
/// events. Each waits for its outcome; once the call is over they fail with
/// [`BotError::CallOver`] (hanging up still succeeds).
#[derive(Debug, Clone)]
pub struct CallControl {
    call_id: String,
    inputs: mpsc::UnboundedSender<DriverInput>,
    /// Reads (participants, operations, routing groups) go to the service directly: they
    /// change nothing the call's owner tracks.
    client: GraphClient,
}

impl Call {
    /// The Graph call id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A handle on the call's actions for another task.
    pub fn control(&self) -> CallControl {
        self.control.clone()
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

    /// Who hosts the call's media: the bot (audio through [`Call::audio_receiver`] and
    /// [`Call::audio_sender`]) or the service (prompts, recordings and keys on request).
    pub fn media_hosting(&self) -> MediaHosting {
        self.media
    }

    /// True once the call terminated.
    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }

    /// Quality of the media path now (QoE): per-stream packets, loss, jitter, round trip.
    /// `None` before media connected or after it ended.
    pub async fn quality(&self) -> Option<CallStats> {
        let (tx, rx) = oneshot::channel();
        self.control.inputs.send(DriverInput::Quality(tx)).ok()?;
        rx.await.ok().flatten()
    }
}

impl CallControl {
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

    /// Plays prompts to the call (service-hosted media): WAV files (16 kHz, mono, 16-bit) at
    /// URLs the calling service can fetch, in order. Returns when the last one has played (or
    /// was cancelled: then [`ActionError::OperationFailed`]).
    pub async fn play_prompt(&self, prompts: Vec<MediaPrompt>) -> Result<CommsOperation, BotError> {
        self.action(CallAction::PlayPrompt(prompts)).await
    }

    /// Records what the caller says (service-hosted media), after an optional prompt, until
    /// silence, a stop key or the longest duration. The returned operation's
    /// [`CommsOperation::recording`] says where to fetch the audio
    /// ([`super::Bot::fetch_recording`]); fetch it soon, the service drops it after the call.
    pub async fn record_response(
        &self,
        settings: RecordResponseBody,
    ) -> Result<CommsOperation, BotError> {
        self.action(CallAction::RecordResponse(Box::new(settings)))
            .await
    }

    /// Asks the service to report the keys participants press (service-hosted media): each
    /// arrives as [`CallEvent::Tone`].
    pub async fn subscribe_to_tone(&self) -> Result<CommsOperation, BotError> {
        self.action(CallAction::SubscribeToTone).await
    }

    /// Cancels the prompts and recordings running or queued (service-hosted media); their own
    /// calls return [`crate::ActionError::OperationFailed`] with 400/8508.
    pub async fn cancel_media_processing(&self) -> Result<CommsOperation, BotError> {
        self.action(CallAction::CancelMediaProcessing).await
    }

    /// Has the service send DTMF keys into the call (both kinds of media), `delay_ms` apart.
    pub async fn send_dtmf_tones(
        &self,
        tones: Vec<Tone>,
        delay_ms: Option<u32>,
    ) -> Result<CommsOperation, BotError> {
        self.action(CallAction::SendDtmfTones { tones, delay_ms })
            .await
    }

    /// Hangs up (in a group call the bot leaves) once the service took the request.
    /// [`CallEvent::Terminated`] follows; hanging up a call that is over succeeds.
    pub async fn hang_up(&self) -> Result<(), BotError> {
        match self.ask(AppRequest::HangUp(Ticket(0))).await {
            Ok(_) | Err(BotError::CallOver) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends a DTMF key (RFC 4733) on the bot's media path, held for `duration` (app-hosted
    /// media; with service-hosted media use [`Call::send_dtmf_tones`]).
    pub fn send_dtmf(&self, digit: DtmfDigit, duration: Duration) -> Result<(), BotError> {
        self.inputs
            .send(DriverInput::App(
                AppRequest::SendDtmf { digit, duration },
                None,
            ))
            .map_err(|_| BotError::CallOver)
    }

    /// Hands the established call to `target` (a Teams user, a phone number with an
    /// application instance) once the service took the request; the call's state then moves
    /// to `transferring` and, when the target answers, the bot's leg ends
    /// ([`CallEvent::Terminated`]). `transferee` names who is transferred in a group call.
    pub async fn transfer(
        &self,
        target: InvitationParticipantInfo,
        transferee: Option<ParticipantInfo>,
    ) -> Result<(), BotError> {
        self.ask(AppRequest::Control(
            Ticket(0),
            ControlAction::Transfer {
                target: Box::new(target),
                transferee: transferee.map(Box::new),
            },
        ))
        .await
        .map(|_| ())
    }

    async fn control_action(&self, action: ControlAction) -> Result<(), BotError> {
        self.ask(AppRequest::Control(Ticket(0), action))
            .await
            .map(|_| ())
    }

    /// Mutes another participant (server side; they can unmute themselves).
    pub async fn mute_participant(&self, participant_id: &str) -> Result<CommsOperation, BotError> {
        self.action(CallAction::MuteParticipant(participant_id.to_owned()))
            .await
    }

    /// Puts a participant on hold: they hear the service's music, or `custom_prompt` looped,
    /// until [`CallControl::stop_hold_music`].
    pub async fn start_hold_music(
        &self,
        participant_id: &str,
        custom_prompt: Option<MediaPrompt>,
    ) -> Result<CommsOperation, BotError> {
        self.action(CallAction::StartHoldMusic {
            participant_id: participant_id.to_owned(),
            custom_prompt,
        })
        .await
    }

    /// Takes a participant off hold.
    pub async fn stop_hold_music(&self, participant_id: &str) -> Result<CommsOperation, BotError> {
        self.action(CallAction::StopHoldMusic(participant_id.to_owned()))
            .await
    }

    /// Removes a participant from a group call or meeting; they leave the roster
    /// ([`CallEvent::ParticipantLeft`]).
    pub async fn remove_participant(&self, participant_id: &str) -> Result<(), BotError> {
        self.control_action(ControlAction::RemoveParticipant(participant_id.to_owned()))
            .await
    }

    /// Takes (`sharer`) or leaves (`viewer`) the screen sharer's role.
    pub async fn change_screen_sharing_role(
        &self,
        role: ScreenSharingRole,
    ) -> Result<(), BotError> {
        self.control_action(ControlAction::ChangeScreenSharingRole(role))
            .await
    }

    /// Adds the large gallery view to the call.
    pub async fn add_large_gallery_view(&self) -> Result<CommsOperation, BotError> {
        self.action(CallAction::AddLargeGalleryView).await
    }

    /// Invites several participants (users, phone numbers) in one request: only into a group
    /// call or meeting, at most five.
    pub async fn invite_all(
        &self,
        participants: Vec<InvitationParticipantInfo>,
    ) -> Result<CommsOperation, BotError> {
        self.action(CallAction::Invite(participants)).await
    }

    /// Invites a phone number (E.164) into the call; the bot must call from an application
    /// instance with a number.
    pub async fn invite_phone(&self, number: &str) -> Result<CommsOperation, BotError> {
        let who = InvitationParticipantInfo::new(IdentitySet::phone(number));
        self.action(CallAction::Invite(vec![who])).await
    }

    /// Turns the P2P call `replaces_call_id` into this group call by inviting its other party
    /// here: the service ends the P2P call once they joined.
    pub async fn invite_replacing(
        &self,
        user_id: &str,
        replaces_call_id: &str,
    ) -> Result<CommsOperation, BotError> {
        let mut who = InvitationParticipantInfo::new(IdentitySet::user(user_id, None));
        who.replaces_call_id = Nullable::Value(replaces_call_id.to_owned());
        self.action(CallAction::Invite(vec![who])).await
    }

    /// Moves participant `participant_id` of the bot's meeting call `from_call_id` into this
    /// one: they leave the other meeting.
    pub async fn move_participant(
        &self,
        user_id: &str,
        participant_id: &str,
        from_call_id: &str,
    ) -> Result<CommsOperation, BotError> {
        let mut who = InvitationParticipantInfo::new(IdentitySet::user(user_id, None));
        who.replaces_call_id = Nullable::Value(from_call_id.to_owned());
        who.participant_id = Nullable::Value(participant_id.to_owned());
        self.action(CallAction::Invite(vec![who])).await
    }

    /// The call resource as the service has it now (`GET /communications/calls/{id}`): state,
    /// media config, meeting and chat info, result.
    pub async fn resource(&self) -> Result<graph_signaling::models::Call, BotError> {
        Ok(self.client.get_call(&self.call_id).await?)
    }

    /// The call's participants as the service lists them now (the bot's own entry included).
    pub async fn participants(&self) -> Result<Vec<Participant>, BotError> {
        Ok(self.client.list_participants(&self.call_id).await?)
    }

    /// One participant as the service has it now.
    pub async fn participant(&self, participant_id: &str) -> Result<Participant, BotError> {
        Ok(self
            .client
            .get_participant(&self.call_id, participant_id)
            .await?)
    }

    /// An operation's status now (the actions above already wait for their outcome).
    pub async fn operation(&self, operation_id: &str) -> Result<CommsOperation, BotError> {
        Ok(self
            .client
            .get_operation(&self.call_id, operation_id)
            .await?)
    }

    /// Creates an audio routing group (app-hosted media): which participants' audio reaches
    /// which others.
    pub async fn create_audio_routing_group(
        &self,
        group: &AudioRoutingGroup,
    ) -> Result<AudioRoutingGroup, BotError> {
        Ok(self
            .client
            .create_audio_routing_group(&self.call_id, group)
            .await?)
    }

    /// The call's audio routing groups.
    pub async fn audio_routing_groups(&self) -> Result<Vec<AudioRoutingGroup>, BotError> {
        Ok(self.client.list_audio_routing_groups(&self.call_id).await?)
    }

    /// One audio routing group.
    pub async fn audio_routing_group(&self, group_id: &str) -> Result<AudioRoutingGroup, BotError> {
        Ok(self
            .client
            .get_audio_routing_group(&self.call_id, group_id)
            .await?)
    }

    /// Replaces an audio routing group's sources and receivers.
    pub async fn update_audio_routing_group(
        &self,
        group_id: &str,
        group: &AudioRoutingGroup,
    ) -> Result<AudioRoutingGroup, BotError> {
        Ok(self
            .client
            .update_audio_routing_group(&self.call_id, group_id, group)
            .await?)
    }

    /// Deletes an audio routing group.
    pub async fn delete_audio_routing_group(&self, group_id: &str) -> Result<(), BotError> {
        Ok(self
            .client
            .delete_audio_routing_group(&self.call_id, group_id)
            .await?)
    }

    /// The screens being shared in the call now.
    pub async fn content_sharing_sessions(&self) -> Result<Vec<ContentSharingSession>, BotError> {
        Ok(self
            .client
            .list_content_sharing_sessions(&self.call_id)
            .await?)
    }

    /// One content sharing session.
    pub async fn content_sharing_session(
        &self,
        session_id: &str,
    ) -> Result<ContentSharingSession, BotError> {
        Ok(self
            .client
            .get_content_sharing_session(&self.call_id, session_id)
            .await?)
    }
}

/// An incoming call waiting to be answered (within the service's 15 s window).
#[derive(Debug)]
pub struct IncomingCall {
    id: String,
    received_at: Instant,
    resource: Option<Box<graph_signaling::models::Call>>,
    shared: Arc<Shared>,
}

/// An incoming call as the dispatcher hands it over.
#[derive(Debug)]
pub(crate) struct Offer {
    pub(crate) id: String,
    pub(crate) received_at: Instant,
    pub(crate) resource: Option<Box<graph_signaling::models::Call>>,
}

impl IncomingCall {
    /// The Graph call id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The call as the service offered it: who calls (`source`), whom (`targets`: the bot's
    /// application, or its application instance for a call to its phone number), the
    /// requested modalities.
    pub fn offer(&self) -> Option<&graph_signaling::models::Call> {
        self.resource.as_deref()
    }

    /// Who calls (the offer's `source.identity`).
    pub fn caller(&self) -> Option<&IdentitySet> {
        self.resource.as_ref()?.source.get()?.identity.get()
    }

    /// Answers with app-hosted media; the call's events and audio flow as for a placed call.
    pub async fn answer(self) -> Result<Call, BotError> {
        self.answer_with(MediaHosting::App).await
    }

    /// Answers with service-hosted media: the service plays prompts, records responses and
    /// reports keys on the bot's request ([`Call::play_prompt`], [`Call::record_response`],
    /// [`Call::subscribe_to_tone`]); the bot holds no audio of the call. Such calls work
    /// against real Microsoft Graph.
    pub async fn answer_service_hosted(self) -> Result<Call, BotError> {
        self.answer_with(MediaHosting::Service).await
    }

    async fn answer_with(self, hosting: MediaHosting) -> Result<Call, BotError> {
        let call_uuid = Uuid::parse_str(&self.id).ok();
        let opened = match hosting {
            MediaHosting::Service => None,
            MediaHosting::App => match open_media(&self.shared, call_uuid) {
                Ok(o) => Some(o),
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
            },
        };
        let body = AnswerBody {
            callback_uri: self.shared.callback_url.clone(),
            media_config: media_config(opened.as_ref()),
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
            None,
        );
        if let Err(e) = self
            .shared
            .client
            .answer(&self.id, &body, self.received_at)
            .await
        {
            // The service never took the call: the core ends it and releases its media.
            let _ = call.control.inputs.send(DriverInput::Notification(Box::new(
                crate::call_core::gone(&self.id),
            )));
            return Err(e.into());
        }
        self.shared
            .counters
            .calls_answered
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            instance = %self.shared.instance_id,
            call_id = %self.id,
            media = hosting.as_str(),
            "call answered"
        );
        Ok(call)
    }

    /// Declines the call as busy.
    pub async fn reject(self) -> Result<(), BotError> {
        self.reject_with(RejectReason::Busy).await
    }

    /// Declines the call with `reason` (`none`, `busy`, `forbidden`).
    pub async fn reject_with(self, reason: RejectReason) -> Result<(), BotError> {
        let _ = lock(&self.shared.calls).early.take(&self.id);
        self.shared.client.reject(&self.id, reason).await?;
        Ok(())
    }

    /// Sends the call on to `targets` (users, phone numbers; at most five, ringing
    /// `timeout_secs`) without answering it; the bot is no longer part of it.
    pub async fn redirect(
        self,
        targets: Vec<InvitationParticipantInfo>,
        timeout_secs: Option<u32>,
    ) -> Result<(), BotError> {
        let _ = lock(&self.shared.calls).early.take(&self.id);
        self.shared
            .client
            .redirect(&self.id, targets, timeout_secs)
            .await?;
        Ok(())
    }
}

/// The stream of incoming calls ([`super::Bot::incoming_calls`]).
#[derive(Debug)]
pub struct IncomingCalls {
    pub(super) rx: mpsc::UnboundedReceiver<Offer>,
    pub(super) shared: Arc<Shared>,
}

impl IncomingCalls {
    /// The next incoming call; `None` when the bot stopped.
    pub async fn next(&mut self) -> Option<IncomingCall> {
        let Offer {
            id,
            received_at,
            resource,
        } = self.rx.recv().await?;
        Some(IncomingCall {
            id,
            received_at,
            resource,
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
