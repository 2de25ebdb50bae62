//! The task that owns one call: it feeds the call's [`CallCore`] with everything that happens
//! (notifications, media events, application requests, Graph responses, time) and carries out
//! what the core decides. When the core says [`Output::Release`], the task frees the call's
//! every resource in one place and ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use audio_pipeline::CallMedia;
use audio_pipeline::engine::SendCounters;
use graph_signaling::client::{GraphClient, GraphError};
use graph_signaling::models::{CallState, CommsNotification, CommsOperation};
use media_transport::pipeline::PipelineBinding;
use media_transport::protocol::EndReason;
use media_transport::{CallStats, MediaCall, MediaEvent};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Shared, lock};
use crate::call_core::{
    ActionError, AppRequest, CallCore, CallEvent, Direction, GraphRequest, Input, MediaCommand,
    Output, RequestId, Ticket,
};

/// The answer to an application request.
pub(crate) type Reply = Result<Option<CommsOperation>, ActionError>;

/// What reaches a call's driver from outside its own media session.
#[derive(Debug)]
pub(crate) enum DriverInput {
    /// A notification about the call.
    Notification(Box<CommsNotification>),
    /// An application request and, when someone waits for it, where its outcome goes.
    App(AppRequest, Option<oneshot::Sender<Reply>>),
    /// What the call looks like now.
    Snapshot(oneshot::Sender<CallSnapshot>),
    /// The media path's quality figures now (`None` when media is not connected).
    Quality(oneshot::Sender<Option<CallStats>>),
}

/// A call in progress as the bot's owner of it sees it (`/calls`, `/metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct CallSnapshot {
    /// The Graph call id.
    pub call_id: String,
    /// The state the service last reported (`None` before any).
    pub state: Option<CallState>,
    /// Who started the call.
    pub direction: Direction,
    /// Participants on the roster, the bot's own entry included.
    pub participants: usize,
    /// When the bot took the call.
    pub started_at: SystemTime,
    /// Packets received on the participants' streams.
    pub frames_in: u64,
    /// Packets the bot sent.
    pub frames_out: u64,
    /// Frames of the participants' streams filled by loss concealment.
    pub frames_concealed: u64,
    /// Worst interarrival jitter of the participants' streams at the last quality report, ms.
    pub jitter_ms: f64,
    /// Packets of sources the roster never listed, dropped.
    pub unlisted_dropped: u64,
}

/// A call's media, opened before the call's id is known.
pub(crate) struct CallParts {
    pub(crate) media: Arc<CallMedia>,
    pub(crate) binding: Arc<PipelineBinding>,
    pub(crate) media_call: MediaCall,
}

/// What the application's [`super::Call`] handle holds of a running driver.
pub(crate) struct Handle {
    pub(crate) inputs: mpsc::UnboundedSender<DriverInput>,
    pub(crate) events: mpsc::UnboundedReceiver<CallEvent>,
    pub(crate) ended: Arc<AtomicBool>,
}

/// Starts the driver of `core`, registers it with the bot and returns the application's side.
/// `pump` is the task moving the engine's output to the application; it is stopped on release.
pub(crate) fn spawn(
    shared: &Arc<Shared>,
    core: CallCore,
    parts: Option<CallParts>,
    pump: Option<JoinHandle<()>>,
    events_tx: mpsc::UnboundedSender<CallEvent>,
    events: mpsc::UnboundedReceiver<CallEvent>,
) -> Handle {
    let (inputs, inputs_rx) = mpsc::unbounded_channel();
    let ended = Arc::new(AtomicBool::new(false));
    let call_id = core.call_id().to_owned();
    shared.attach(
        &call_id,
        super::CallEntry {
            inputs: inputs.clone(),
            media: parts.as_ref().map(|p| p.media.clone()),
        },
    );
    let (responses, responses_rx) = mpsc::unbounded_channel();
    shared.lifecycle.driver_started();
    let driver = Driver {
        shared: Arc::downgrade(shared),
        client: shared.client.clone(),
        core,
        inputs: inputs_rx,
        own_inputs: inputs.clone(),
        responses,
        responses_rx,
        media_open: parts.is_some(),
        parts,
        events: events_tx,
        replies: HashMap::new(),
        next_ticket: 0,
        pump,
        ended: ended.clone(),
        quality: Arc::new(Mutex::new(None)),
        started_at: SystemTime::now(),
        failed: false,
        hanging_up: false,
        retired: StreamTotals::default(),
    };
    let span = tracing::info_span!("call", instance = %shared.instance_id, call_id = %call_id);
    tokio::spawn(tracing::Instrument::instrument(driver.run(), span));
    Handle {
        inputs,
        events,
        ended,
    }
}

struct Driver {
    shared: Weak<Shared>,
    client: GraphClient,
    core: CallCore,
    inputs: mpsc::UnboundedReceiver<DriverInput>,
    /// The sender the bot's entry holds, to detach exactly this driver.
    own_inputs: mpsc::UnboundedSender<DriverInput>,
    responses: mpsc::UnboundedSender<(RequestId, Result<Option<CommsOperation>, GraphError>)>,
    responses_rx: mpsc::UnboundedReceiver<(RequestId, Result<Option<CommsOperation>, GraphError>)>,
    /// The call's media; none with service-hosted media.
    parts: Option<CallParts>,
    media_open: bool,
    events: mpsc::UnboundedSender<CallEvent>,
    replies: HashMap<Ticket, oneshot::Sender<Reply>>,
    next_ticket: u64,
    pump: Option<JoinHandle<()>>,
    ended: Arc<AtomicBool>,
    /// The last quality report: media figures, written by the report's task.
    quality: Arc<Mutex<Option<CallStats>>>,
    started_at: SystemTime,
    /// The call ended badly: an error from the service, or media that failed or never came.
    failed: bool,
    /// The bot asked to hang up: how the media closes after that says nothing about the call.
    hanging_up: bool,
    /// Figures of the streams already unbound (a participant left): their counters go with
    /// them, so the call keeps their totals.
    retired: StreamTotals,
}

/// Totals of a call's receive streams.
#[derive(Debug, Default, Clone, Copy)]
struct StreamTotals {
    frames_in: u64,
    concealed: u64,
    late: u64,
    lost: u64,
}

impl std::ops::AddAssign for StreamTotals {
    fn add_assign(&mut self, other: StreamTotals) {
        self.frames_in += other.frames_in;
        self.concealed += other.concealed;
        self.late += other.late;
        self.lost += other.lost;
    }
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl Driver {
    async fn run(mut self) {
        loop {
            if self.carry_out() {
                break;
            }
            let timeout = self.core.poll_timeout();
            let sleep = tokio::time::sleep_until(
                timeout.map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std),
            );
            tokio::select! {
                input = self.inputs.recv() => match input {
                    Some(input) => self.on_input(input),
                    // Every sender is gone: the bot was dropped.
                    None => break,
                },
                Some((id, result)) = self.responses_rx.recv() => {
                    self.core.handle_input(Input::Response { id, result }, now());
                }
                event = next_media_event(&mut self.parts), if self.media_open => {
                    let event = event.unwrap_or_else(|| {
                        self.media_open = false;
                        MediaEvent::Ended(EndReason::ConnectionLost)
                    });
                    if matches!(event, MediaEvent::Ended(_)) {
                        self.media_open = false;
                    }
                    self.core.handle_input(Input::Media(event), now());
                }
                () = sleep, if timeout.is_some() => {
                    self.core.handle_input(Input::Timeout, now());
                }
            }
        }
        self.release().await;
    }

    fn on_input(&mut self, input: DriverInput) {
        match input {
            DriverInput::Notification(n) => {
                self.core.handle_input(Input::Notification(n), now());
            }
            DriverInput::App(request, reply) => {
                let request = match request {
                    AppRequest::HangUp(_) => {
                        self.hanging_up = true;
                        AppRequest::HangUp(self.ticket(reply))
                    }
                    AppRequest::Action(_, action) => AppRequest::Action(self.ticket(reply), action),
                    AppRequest::Control(_, action) => {
                        AppRequest::Control(self.ticket(reply), action)
                    }
                    other => other,
                };
                self.core.handle_input(Input::App(request), now());
            }
            DriverInput::Snapshot(reply) => {
                let _ = reply.send(self.snapshot());
            }
            DriverInput::Quality(reply) => match self
                .parts
                .as_ref()
                .and_then(|p| p.media_call.request_stats())
            {
                Some(rx) if self.core.media_connected() => {
                    tokio::spawn(async move {
                        let stats = tokio::time::timeout(Duration::from_secs(1), rx).await;
                        let _ = reply.send(stats.ok().and_then(Result::ok));
                    });
                }
                _ => {
                    let _ = reply.send(None);
                }
            },
        }
    }

    /// A ticket for a request whose outcome `reply` waits for.
    fn ticket(&mut self, reply: Option<oneshot::Sender<Reply>>) -> Ticket {
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        if let Some(reply) = reply {
            self.replies.insert(ticket, reply);
        }
        ticket
    }

    /// Carries out everything the core asked for; true once the call is released.
    fn carry_out(&mut self) -> bool {
        let mut released = false;
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Request(request) => {
                    tracing::debug!(request = ?request.kind, "graph request");
                    self.execute(request);
                }
                Output::Bind(source) => {
                    // A source that cannot be bound (engine shut down) stays held by the gate
                    // and is dropped and counted there; the call goes on.
                    let Some(parts) = &self.parts else { continue };
                    if let Err(e) = parts.binding.bind(source) {
                        tracing::warn!(source_id = %source, error = %e, "cannot bind a source");
                    } else {
                        tracing::debug!(source_id = %source, "source bound");
                    }
                }
                Output::Unbind(source) => {
                    tracing::debug!(source_id = %source, "source unbound");
                    let gone = self.stream_totals(Some(source));
                    self.retired += gone;
                    if let Some(parts) = &self.parts {
                        parts.binding.unbind(source);
                    }
                }
                Output::Media(command) => self.media(command),
                Output::Event(event) => {
                    log_event(&event);
                    // Once the call is over or being hung up, how its media closes says
                    // nothing about it.
                    let closing = self.hanging_up || self.ended.load(Ordering::Relaxed);
                    self.failed |= match &event {
                        CallEvent::MediaEnded(_) => !closing && is_failure(&event),
                        _ => is_failure(&event),
                    };
                    if matches!(event, CallEvent::MediaStreamFailed { .. })
                        && let Some(s) = self.shared.upgrade()
                    {
                        s.counters
                            .media_stream_failures
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    if matches!(event, CallEvent::MediaInterrupted)
                        && let Some(s) = self.shared.upgrade()
                    {
                        s.counters
                            .media_interruptions
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    if matches!(event, CallEvent::Terminated(_)) {
                        // No longer one of the bot's calls (health, `/calls`, routing); the
                        // driver lives on only to close the media session and release.
                        self.ended.store(true, Ordering::Relaxed);
                        if let Some(s) = self.shared.upgrade() {
                            s.detach(self.core.call_id(), &self.own_inputs);
                        }
                    }
                    // The application may have dropped its handle; the call goes on.
                    let _ = self.events.send(event);
                }
                Output::Reply { ticket, result } => {
                    if let Some(reply) = self.replies.remove(&ticket) {
                        let _ = reply.send(result);
                    }
                }
                Output::Release => {
                    tracing::debug!("call released");
                    released = true;
                }
            }
        }
        released
    }

    fn execute(&self, request: GraphRequest) {
        let client = self.client.clone();
        let responses = self.responses.clone();
        tokio::spawn(async move {
            let result = match request.prepare() {
                Ok(prepared) => request.read(client.send(&prepared).await),
                Err(e) => Err(e.into()),
            };
            let id = request.id;
            // The driver may be gone (call released meanwhile): nothing waits then.
            let _ = responses.send((id, result));
        });
    }

    fn media(&mut self, command: MediaCommand) {
        // The core sends no media commands for service-hosted media.
        let Some(media) = &self.parts else { return };
        match command {
            MediaCommand::SetSending(on) => {
                if let Some(send) = media.media.send() {
                    send.set_active(on);
                }
            }
            MediaCommand::Close(reason) => {
                // A session the service never connected to is withdrawn; a connected one is
                // hung up. Either way its end comes back as a media event.
                let id = media.media_call.media_session_id();
                let withdrawn = self.shared.upgrade().is_some_and(|s| s.endpoint.cancel(id));
                if !withdrawn {
                    let _ = media.media_call.hang_up(&reason);
                }
            }
            MediaCommand::SendDtmf(digit, duration) => {
                let _ = media.media_call.send_dtmf(digit, duration);
            }
            MediaCommand::ReportQuality => {
                if let Some(rx) = media.media_call.request_stats() {
                    let (events, quality) = (self.events.clone(), self.quality.clone());
                    tokio::spawn(async move {
                        if let Ok(Ok(stats)) =
                            tokio::time::timeout(Duration::from_secs(1), rx).await
                        {
                            *lock(&quality) = Some(stats.clone());
                            let _ = events.send(CallEvent::Quality(Box::new(stats)));
                        }
                    });
                }
            }
        }
    }

    /// Totals of the receive streams bound now, or of `only` that one.
    fn stream_totals(&self, only: Option<media_session::SourceId>) -> StreamTotals {
        let mut t = StreamTotals::default();
        if let Some(registry) = self.parts.as_ref().and_then(|p| p.media.registry()) {
            for source in registry.sources() {
                if only.is_some_and(|o| o != source) {
                    continue;
                }
                if let Some(stream) = registry.get(source) {
                    let c = stream.counters();
                    t.frames_in += c.received.get();
                    t.concealed += c.concealed.get();
                    t.late += c.late.get();
                    t.lost += c.lost.get();
                }
            }
        }
        t
    }

    fn snapshot(&self) -> CallSnapshot {
        let live = self.stream_totals(None);
        let frames_in = self.retired.frames_in + live.frames_in;
        let concealed = self.retired.concealed + live.concealed;
        let frames_out = self
            .parts
            .as_ref()
            .and_then(|p| p.media.send())
            .map_or(0, |s| s.counters().packets.get());
        let jitter_ms = lock(&self.quality).as_ref().map_or(0.0, |q| {
            q.received
                .iter()
                .map(|(_, s)| s.jitter_ms)
                .fold(0.0, f64::max)
        });
        CallSnapshot {
            call_id: self.core.call_id().to_owned(),
            state: self.core.state().cloned(),
            direction: self.core.direction(),
            participants: self.core.roster().len(),
            started_at: self.started_at,
            frames_in,
            frames_out,
            frames_concealed: concealed,
            jitter_ms,
            unlisted_dropped: self
                .parts
                .as_ref()
                .map_or(0, |p| p.binding.gate_counters().dropped),
        }
    }

    /// The call's audio figures at its end, for an operator following one call through the
    /// logs (and for the scale-out test, which reads them beside the emulator's measure).
    fn log_figures(&self, last: &CallSnapshot) {
        let mut streams = self.retired;
        streams += self.stream_totals(None);
        let send = self.parts.as_ref().and_then(|p| p.media.send());
        let sent = |f: fn(&SendCounters) -> u64| send.map_or(0, |s| f(s.counters()));
        tracing::info!(
            seconds = self.started_at.elapsed().unwrap_or_default().as_secs(),
            frames_in = last.frames_in,
            frames_out = last.frames_out,
            frames_concealed = last.frames_concealed,
            packets_late = streams.late,
            packets_lost = streams.lost,
            send_underruns = sent(|c| c.underruns.get()),
            send_stale_skipped = sent(|c| c.stale_skipped.get()),
            send_dropped = sent(|c| c.packets_dropped.get() + c.queue_dropped.get()),
            unlisted_dropped = last.unlisted_dropped,
            failed = self.failed,
            "call figures"
        );
    }

    /// Frees everything the call held, in one place: the bot's entry (if the call never
    /// terminated), the application's event stream, the pump, the media session and the
    /// engine's call (dropped with `self`).
    async fn release(mut self) {
        if let Some(shared) = self.shared.upgrade() {
            // The call's figures live on in the bot's cumulative counters.
            let last = self.snapshot();
            self.log_figures(&last);
            let c = &shared.counters;
            c.ended_frames_concealed
                .fetch_add(last.frames_concealed, Ordering::Relaxed);
            c.ended_unlisted_dropped
                .fetch_add(last.unlisted_dropped, Ordering::Relaxed);
            let outcome = usize::from(self.failed)
                + 2 * usize::from(self.core.direction() == Direction::Incoming);
            c.calls_ended[outcome].fetch_add(1, Ordering::Relaxed);
            shared.detach(self.core.call_id(), &self.own_inputs);
            // A session still registered (never connected) is withdrawn.
            if let Some(parts) = &self.parts {
                shared.endpoint.cancel(parts.media_call.media_session_id());
            }
        }
        self.ended.store(true, Ordering::Relaxed);
        if let Some(pump) = self.pump.as_mut() {
            pump.abort();
            // An aborted task's future (and the call's media it holds) is dropped by the
            // runtime later; waiting for it makes "released" mean the engine's call is gone.
            let _ = pump.await;
        }
        for (_, reply) in self.replies.drain() {
            let _ = reply.send(Err(ActionError::CallEnded));
        }
        // Counted as released only once everything it held is dropped.
        let shared = self.shared.clone();
        drop(self);
        if let Some(shared) = shared.upgrade() {
            shared.lifecycle.driver_released();
        }
    }
}

/// The next event of the call's media session; never, without one.
async fn next_media_event(parts: &mut Option<CallParts>) -> Option<MediaEvent> {
    match parts {
        Some(p) => p.media_call.next_event().await,
        None => std::future::pending().await,
    }
}

/// True for what makes a call count as failed: the service ending it with an error, or its
/// media failing or never connecting.
fn is_failure(event: &CallEvent) -> bool {
    match event {
        CallEvent::Terminated(Some(info)) => info.code.get().is_some_and(|c| *c >= 400),
        CallEvent::MediaEnded(reason) => !matches!(
            reason,
            EndReason::HangUpByBot { .. } | EndReason::HangUpByService { .. }
        ),
        _ => false,
    }
}

/// What an operator needs to follow a call, at `info`; the rest at `debug`.
fn log_event(event: &CallEvent) {
    match event {
        CallEvent::StateChanged { to, .. } => tracing::info!(state = to.as_str(), "call state"),
        CallEvent::ParticipantJoined(_, p) => tracing::info!(
            participant = %p.identity_label(),
            sources = ?p.audio_sources().collect::<Vec<_>>(),
            "participant joined"
        ),
        CallEvent::ParticipantLeft(key, reason) => {
            tracing::info!(participant = %key, reason = ?reason, "participant left");
        }
        CallEvent::ContentSharingStarted(id) => {
            tracing::info!(session = %id, "content sharing started");
        }
        CallEvent::ContentSharingEnded(id) => {
            tracing::info!(session = %id, "content sharing ended")
        }
        CallEvent::MediaConnected => tracing::info!("media connected"),
        CallEvent::MediaInterrupted => tracing::warn!("media interrupted"),
        CallEvent::MediaResumed => tracing::info!("media resumed"),
        CallEvent::MediaEnded(reason) => match reason {
            EndReason::HangUpByBot { .. } | EndReason::HangUpByService { .. } => {
                tracing::info!(reason = %reason, "media ended");
            }
            _ => tracing::warn!(reason = %reason, "media failed"),
        },
        CallEvent::MediaStreamFailed { source, detail } => {
            tracing::warn!(source_id = %source, detail = %detail, "media stream failed");
        }
        CallEvent::Terminated(info) => {
            let (code, subcode, message) = info.as_ref().map_or((None, None, None), |i| {
                (
                    i.code.get().copied(),
                    i.subcode.get().copied(),
                    i.message.get().cloned(),
                )
            });
            tracing::info!(
                ?code,
                ?subcode,
                message = message.as_deref().unwrap_or(""),
                "call terminated"
            );
        }
        CallEvent::OperationFinished(op) => {
            tracing::debug!(operation = op.kind(), status = ?op.status.get(), "operation finished");
        }
        other => tracing::trace!(event = ?other, "call event"),
    }
}

/// Asks every call's driver for its snapshot.
pub(crate) async fn snapshots(shared: &Shared) -> Vec<CallSnapshot> {
    let asks: Vec<oneshot::Receiver<CallSnapshot>> = {
        let calls = lock(&shared.calls);
        calls
            .live
            .values()
            .filter_map(|entry| {
                let (tx, rx) = oneshot::channel();
                entry.inputs.send(DriverInput::Snapshot(tx)).ok()?;
                Some(rx)
            })
            .collect()
    };
    let mut out = Vec::with_capacity(asks.len());
    for rx in asks {
        // A call released meanwhile has nothing to say.
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(1), rx).await {
            out.push(s);
        }
    }
    out.sort_by(|a, b| a.call_id.cmp(&b.call_id));
    out
}
