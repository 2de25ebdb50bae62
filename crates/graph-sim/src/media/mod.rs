//! The simulated service's media side: for each call with app-hosted media it connects to the
//! bot's mpUri with media-transport's [`ServiceSession`], plays every simulated participant as
//! its own source, records what the bot sends, and measures the echo of each participant.
//!
//! [`MediaSide`] is driven by the core's [`SimEvent`]s (from [`crate::server::SimServer`]'s
//! `next_event`, or made by hand in tests):
//!
//! - `MediaRequested`: connect to the blob's mpUri (loopback only unless
//!   [`MediaOptions::allow_remote_media`]), presenting the blob's session and call ids;
//! - `SourceAdded`: add the participant's stream labelled with its `sourceId`, renegotiate, and
//!   start its paced 20 ms sender ([`voice`] → Opus → `to_bot` impairment → the bot);
//! - `SourceRemoved`: stop that sender and renegotiate;
//! - `Ended`: hang up, finalise the recording.
//!
//! The bot's audio goes through the `from_bot` impairment, is decoded ([`recorder`]) and kept
//! on the call's clock next to what each participant said; [`MediaSide::report`] runs the
//! analysis ([`measure`]) and returns a [`MediaReport`].
//!
//! ```no_run
//! # async fn demo(mut server: graph_sim::server::SimServer, scenario: graph_sim::scenario::Scenario) {
//! use graph_sim::media::{MediaOptions, MediaSide};
//!
//! let mut media = MediaSide::new(MediaOptions::for_scenario(&scenario));
//! while let Some(event) = server.next_event().await {
//!     let last = matches!(event, graph_sim::service::SimEvent::Ended { .. });
//!     if let Err(e) = media.handle_event(event) {
//!         eprintln!("media: {e}");
//!     }
//!     if last {
//!         break;
//!     }
//! }
//! let report = media.shutdown().await;
//! println!("{}", serde_json::to_string_pretty(&report).unwrap());
//! # }
//! ```

pub mod measure;
mod player;
pub mod recorder;
pub mod report;
mod service_audio;
pub mod voice;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use media_session::{BlobConfig, SourceId};
use media_transport::{ServiceConfig, ServiceEvent, ServiceSession};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use measure::DelayParams;
pub use recorder::BotStreamReport;
pub use report::{CallReport, LinkReport, MediaReport, ParticipantReport, Totals};
pub use service_audio::{HeardReport, RecordingStore, decode_prompt};

use crate::netem::Link;
use crate::scenario::{MediaImpairments, Scenario, Turns, Voice};
use crate::service::SimEvent;
use crate::softphone::{Attach, Softphone};
use player::Sender;
use recorder::BotStream;
use report::CallMeasure;
use voice::VoiceSource;

/// How the media side behaves.
#[derive(Debug, Clone)]
pub struct MediaOptions {
    /// Connect to mpUris whose host is not loopback. Off by default: a simulator should not
    /// send media to other machines unless told so.
    pub allow_remote_media: bool,
    /// Impairment of each direction.
    pub impairments: MediaImpairments,
    /// Seed of the impairments (with the call id and source id mixed in per stream).
    pub seed: u64,
    /// Folder for the recordings of the bot's audio (`<call id>.wav`); none when `None`.
    pub record_dir: Option<PathBuf>,
    /// Folder relative WAV voices are found in (the scenario file's folder).
    pub voice_dir: Option<PathBuf>,
    /// The service-side client's settings.
    pub service: ServiceConfig,
    /// Audio kept per signal for the analysis (memory: 96 kB per second per participant).
    pub max_analysis: Duration,
    /// How echo delay is searched for.
    pub delay: DelayParams,
    /// The softphone whose people this media side relays (the server's too).
    pub softphone: Option<Softphone>,
    /// Where recorded responses go for the server to serve ([`SimServer::recordings`]);
    /// none: they are not kept.
    ///
    /// [`SimServer::recordings`]: crate::server::SimServer::recordings
    pub recordings: Option<RecordingStore>,
}

impl Default for MediaOptions {
    fn default() -> Self {
        MediaOptions {
            allow_remote_media: false,
            impairments: MediaImpairments::default(),
            seed: 0,
            record_dir: None,
            voice_dir: None,
            service: ServiceConfig::default(),
            max_analysis: Duration::from_secs(120),
            delay: DelayParams::default(),
            softphone: None,
            recordings: None,
        }
    }
}

impl MediaOptions {
    /// The scenario's seed and impairments, other settings by default.
    pub fn for_scenario(scenario: &Scenario) -> MediaOptions {
        MediaOptions {
            impairments: scenario.media.clone(),
            seed: scenario.seed,
            ..MediaOptions::default()
        }
    }
}

/// Why the media side refused or failed an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The mpUri's host is not loopback and remote media is not allowed.
    #[error("mpUri {0} is not a loopback address; set allow_remote_media to connect to it")]
    RemoteMedia(String),
    /// A second `MediaRequested` for a call already served.
    #[error("call {0} already has media")]
    Duplicate(String),
    /// An impairment setting is out of range.
    #[error("media impairment: {0}")]
    Impairment(#[from] crate::netem::ImpairmentError),
    /// The recording file cannot be created.
    #[error("cannot create the recording: {0}")]
    Recording(#[from] std::io::Error),
    /// A participant's voice cannot be played.
    #[error(transparent)]
    Voice(#[from] voice::VoiceError),
    /// Called outside a tokio runtime.
    #[error("the media side runs on a tokio runtime")]
    NoRuntime,
}

enum Command {
    Add {
        source: u32,
        name: String,
        voice: Box<VoiceSource>,
    },
    /// A softphone person: relay their browser instead of playing a voice.
    AddPerson {
        source: u32,
        name: String,
    },
    Remove {
        source: u32,
    },
    /// A key pressed by the person with this source, sent in band.
    Dtmf {
        source: u32,
        digit: media_transport::dtmf::DtmfDigit,
    },
    HangUp,
}

struct CallHandle {
    measure: Arc<Mutex<CallMeasure>>,
    commands: Option<mpsc::UnboundedSender<Command>>,
    task: Option<JoinHandle<()>>,
}

/// Serves the media of every call of a simulation. See the module docs.
pub struct MediaSide {
    options: Arc<MediaOptions>,
    calls: HashMap<String, CallHandle>,
    order: Vec<String>,
    /// Calls with service-hosted media (no session): what their people hear.
    heard: HashMap<String, service_audio::HeardAudio>,
    heard_done: Vec<HeardReport>,
}

impl std::fmt::Debug for MediaSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSide")
            .field("calls", &self.order)
            .finish()
    }
}

/// Locks a call's measurements; a panic elsewhere does not make them unreadable.
fn lock(m: &Mutex<CallMeasure>) -> MutexGuard<'_, CallMeasure> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// FNV-1a: a stable hash, so seeds derived from call ids replay across Rust versions.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// True when `host` (bare, without brackets) names this machine without a DNS lookup.
fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl MediaSide {
    /// A media side with no calls yet.
    pub fn new(options: MediaOptions) -> MediaSide {
        MediaSide {
            options: Arc::new(options),
            calls: HashMap::new(),
            order: Vec::new(),
            heard: HashMap::new(),
            heard_done: Vec::new(),
        }
    }

    /// Acts on one event of the simulated service. Must run inside a tokio runtime: connecting
    /// and playing happen on tasks, so this returns at once. Events of calls without
    /// app-hosted media are ignored.
    pub fn handle_event(&mut self, event: SimEvent) -> Result<(), MediaError> {
        match event {
            SimEvent::MediaRequested { call_id, blob } => self.start_call(call_id, *blob),
            SimEvent::SourceAdded {
                call_id,
                name,
                source_id,
                voice,
                talks,
            } => {
                let person = self
                    .options
                    .softphone
                    .as_ref()
                    .is_some_and(|sp| sp.is_person(&call_id, source_id));
                if person {
                    self.send(
                        &call_id,
                        Command::AddPerson {
                            source: source_id,
                            name,
                        },
                    );
                    Ok(())
                } else if self.calls.contains_key(&call_id) {
                    self.add_source(&call_id, source_id, name, &voice, talks)
                } else {
                    // No media session: the service hosts this call's media; the voice is
                    // what a recorded response takes.
                    let voice = VoiceSource::new(
                        &voice,
                        self.options.voice_dir.as_deref(),
                        u64::from(source_id),
                    )?
                    .with_turns(talks);
                    self.heard_audio(&call_id).add_voice(source_id, voice);
                    Ok(())
                }
            }
            SimEvent::SourceRemoved { call_id, source_id } => {
                if let Some(h) = self.heard.get_mut(&call_id) {
                    h.remove_voice(source_id);
                }
                self.send(&call_id, Command::Remove { source: source_id });
                Ok(())
            }
            SimEvent::Played { call_id, at, audio } => {
                self.heard_audio(&call_id).play(at, &audio);
                Ok(())
            }
            SimEvent::MediaCut { call_id, at } => {
                self.heard_audio(&call_id).cut(at);
                Ok(())
            }
            SimEvent::Recorded {
                call_id,
                recording_id,
                from,
                to,
                clock_ms,
            } => {
                let wav = self
                    .heard_audio(&call_id)
                    .render_recording(from, to, clock_ms);
                if let Some(store) = &self.options.recordings {
                    store.put(&recording_id, wav);
                }
                Ok(())
            }
            SimEvent::RecordingsDiscarded { recording_ids, .. } => {
                if let Some(store) = &self.options.recordings {
                    for id in &recording_ids {
                        store.remove(id);
                    }
                }
                Ok(())
            }
            SimEvent::Ended {
                call_id,
                code,
                subcode,
                end,
            } => {
                if let Some(call) = self.calls.get(&call_id) {
                    let mut measure = lock(&call.measure);
                    measure.result = Some((code, subcode));
                    measure.ended_by = Some(end.ended_by());
                }
                self.send(&call_id, Command::HangUp);
                if let Some(h) = self.heard.remove(&call_id) {
                    let report = h.finish(&call_id, self.options.record_dir.as_deref());
                    self.heard_done.push(report);
                }
                Ok(())
            }
            SimEvent::Dtmf {
                call_id,
                source_id,
                tone,
            } => {
                let digit = tone
                    .as_char()
                    .and_then(media_transport::dtmf::DtmfDigit::from_char);
                if let Some(digit) = digit {
                    self.send(
                        &call_id,
                        Command::Dtmf {
                            source: source_id,
                            digit,
                        },
                    );
                }
                Ok(())
            }
            SimEvent::StateChanged { .. } => Ok(()),
        }
    }

    /// The heard audio of a service-hosted call, started at its first event.
    fn heard_audio(&mut self, call_id: &str) -> &mut service_audio::HeardAudio {
        self.heard
            .entry(call_id.to_owned())
            .or_insert_with(|| service_audio::HeardAudio::new(Instant::now()))
    }

    fn send(&self, call_id: &str, command: Command) {
        if let Some(tx) = self.calls.get(call_id).and_then(|c| c.commands.as_ref()) {
            let _ = tx.send(command);
        }
    }

    fn add_source(
        &mut self,
        call_id: &str,
        source: u32,
        name: String,
        voice: &Voice,
        talks: Option<Turns>,
    ) -> Result<(), MediaError> {
        if !self.calls.contains_key(call_id) {
            return Ok(());
        }
        let voice = VoiceSource::new(voice, self.options.voice_dir.as_deref(), u64::from(source))?
            .with_turns(talks);
        self.send(
            call_id,
            Command::Add {
                source,
                name,
                voice: Box::new(voice),
            },
        );
        Ok(())
    }

    fn start_call(&mut self, call_id: String, blob: BlobConfig) -> Result<(), MediaError> {
        if self.calls.contains_key(&call_id) {
            return Err(MediaError::Duplicate(call_id));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| MediaError::NoRuntime)?;
        let epoch = Instant::now();
        let opts = &self.options;
        let max_samples =
            usize::try_from(opts.max_analysis.as_millis()).unwrap_or(usize::MAX / 96) * 48;
        let uri = blob.mp_uri.to_string();
        let refused = !opts.allow_remote_media && !is_loopback_host(blob.mp_uri.bare_host());
        let wav = match (&opts.record_dir, refused) {
            (Some(dir), false) => Some(dir.join(format!("{}.wav", file_safe(&call_id)))),
            _ => None,
        };
        let bot = BotStream::new(epoch, max_samples, wav.as_deref())?;
        let measure = Arc::new(Mutex::new(CallMeasure::new(
            epoch,
            &call_id,
            &uri,
            max_samples,
            bot,
        )));
        if let Some(sp) = &opts.softphone {
            sp.call_started(&call_id, measure.clone());
        }
        let mut handle = CallHandle {
            measure: measure.clone(),
            commands: None,
            task: None,
        };
        let result = if refused {
            let err = MediaError::RemoteMedia(uri);
            let mut m = lock(&measure);
            m.error = Some(err.to_string());
            m.ended = true;
            Err(err)
        } else {
            let seed = opts.seed ^ fnv(&call_id);
            let from_bot = if opts.impairments.from_bot.is_clean() {
                None
            } else {
                Some(Link::new(opts.impairments.from_bot.clone(), seed)?)
            };
            // Validated here so a bad setting fails the event, not a sender later.
            opts.impairments.to_bot.validate()?;
            let (tx, rx) = mpsc::unbounded_channel();
            let call = CallTask {
                blob,
                options: self.options.clone(),
                measure,
                from_bot,
                senders: HashMap::new(),
                streams: HashMap::new(),
                people: HashMap::new(),
                seed,
            };
            handle.commands = Some(tx);
            handle.task = Some(runtime.spawn(call.run(rx)));
            Ok(())
        };
        self.order.push(call_id.clone());
        self.calls.insert(call_id, handle);
        result
    }

    /// True once the bot accepted the media session of `call_id`.
    pub fn is_accepted(&self, call_id: &str) -> bool {
        self.calls
            .get(call_id)
            .is_some_and(|c| lock(&c.measure).accepted)
    }

    /// True once media of `call_id` connected (ICE and DTLS).
    pub fn is_media_connected(&self, call_id: &str) -> bool {
        self.calls
            .get(call_id)
            .is_some_and(|c| lock(&c.measure).media_connected)
    }

    /// Measures every call so far (calls still running included). The analysis runs on the
    /// calling thread without holding the calls' locks; it costs tens of milliseconds per
    /// participant-minute.
    pub fn report(&self) -> MediaReport {
        let mut calls = Vec::new();
        let mut delays = Vec::new();
        for id in &self.order {
            if let Some(c) = self.calls.get(id) {
                let snapshot = lock(&c.measure).snapshot();
                let (report, d) = snapshot.analyse(&self.options.delay);
                calls.push(report);
                delays.extend(d);
            }
        }
        let mut report = MediaReport::new(calls, &delays);
        report.heard = self.heard_done.clone();
        let running = self.heard.iter().map(|(id, h)| h.finish(id, None));
        report.heard.extend(running);
        report
    }

    /// Hangs up every call still running, waits for them to wind down (a few seconds at
    /// most), finalises the recordings and returns the report.
    pub async fn shutdown(&mut self) -> MediaReport {
        for c in self.calls.values_mut() {
            if let Some(tx) = c.commands.take() {
                let _ = tx.send(Command::HangUp);
            }
        }
        for c in self.calls.values_mut() {
            if let Some(task) = c.task.take() {
                let abort = task.abort_handle();
                if tokio::time::timeout(Duration::from_secs(5), task)
                    .await
                    .is_err()
                {
                    abort.abort();
                }
            }
        }
        self.report()
    }

    /// Waits until the media session of `call_id` is over (hung up by either side, failed, or
    /// refused), up to `within`. True if it is.
    pub async fn wait_ended(&mut self, call_id: &str, within: Duration) -> bool {
        let Some(c) = self.calls.get_mut(call_id) else {
            return false;
        };
        if let Some(task) = c.task.as_mut() {
            if tokio::time::timeout(within, task).await.is_err() {
                return false;
            }
            c.task = None;
        }
        lock(&c.measure).ended
    }
}

impl Drop for MediaSide {
    fn drop(&mut self) {
        for c in self.calls.values() {
            if let Some(t) = &c.task {
                t.abort();
            }
        }
    }
}

/// Keeps letters, digits, `-` and `_`: call ids come from the bot's requests.
fn file_safe(id: &str) -> String {
    let s: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(100)
        .collect();
    if s.is_empty() { "call".into() } else { s }
}

/// How long a key a simulated person presses is held.
const DTMF_KEY_LENGTH: Duration = Duration::from_millis(120);

/// One call's media, on its own task: the service session, the senders, the bot's audio.
struct CallTask {
    blob: BlobConfig,
    options: Arc<MediaOptions>,
    measure: Arc<Mutex<CallMeasure>>,
    from_bot: Option<Link<(u16, u32, Bytes)>>,
    senders: HashMap<u32, Sender>,
    /// Each simulated person's stream, for keys sent in band beside their voice.
    streams: HashMap<u32, media_transport::ParticipantAudio>,
    /// Softphone people of this call: where the bot's packets go for each.
    people: HashMap<u32, mpsc::Sender<Bytes>>,
    seed: u64,
}

impl CallTask {
    async fn resolve(&self) -> Result<SocketAddr, String> {
        let uri = &self.blob.mp_uri;
        let addrs = tokio::net::lookup_host((uri.bare_host(), uri.port()))
            .await
            .map_err(|e| format!("cannot resolve {uri}: {e}"))?;
        let mut addrs = addrs.filter(|a| self.options.allow_remote_media || a.ip().is_loopback());
        addrs
            .next()
            .ok_or_else(|| format!("{uri} resolves to no usable address"))
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let connected = match self.resolve().await {
            Ok(addr) => ServiceSession::connect(
                &self.blob.mp_uri,
                addr,
                self.blob.mp_media_session_id,
                self.blob.call_id,
                self.options.service.clone(),
            )
            .await
            .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let mut session = match connected {
            Ok(s) => s,
            Err(e) => {
                let mut m = lock(&self.measure);
                m.error = Some(e);
                m.ended = true;
                return;
            }
        };
        lock(&self.measure).accepted = true;
        loop {
            let wake = self.from_bot.as_ref().and_then(Link::poll_timeout);
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Add { source, name, voice }) => {
                        self.add(&mut session, source, &name, *voice).await;
                    }
                    Some(Command::AddPerson { source, name }) => {
                        self.add_person(&mut session, source, &name).await;
                    }
                    Some(Command::Remove { source }) => self.remove(&mut session, source).await,
                    Some(Command::Dtmf { source, digit }) => {
                        if let Some(stream) = self.streams.get(&source) {
                            let _ = stream.send_dtmf(digit, DTMF_KEY_LENGTH).await;
                        }
                    }
                    Some(Command::HangUp) | None => {
                        let _ = session.hang_up("call ended").await;
                        break;
                    }
                },
                event = session.next_event() => match event {
                    Some(ServiceEvent::BotAudio { sequence, timestamp, payload, arrival }) => {
                        self.bot_audio(arrival, (sequence, timestamp, payload));
                    }
                    Some(ServiceEvent::MediaConnected) => lock(&self.measure).media_connected = true,
                    Some(ServiceEvent::MediaFailed(why)) => {
                        lock(&self.measure).error.get_or_insert(format!("media failed: {why}"));
                    }
                    Some(ServiceEvent::HungUp { reason }) => {
                        lock(&self.measure).end_reason = Some(format!("the bot hung up: {reason}"));
                        break;
                    }
                    Some(ServiceEvent::Closed) | None => {
                        lock(&self.measure).end_reason = Some("the media connection closed".into());
                        break;
                    }
                    Some(_) => {}
                },
                () = sleep_until(wake), if wake.is_some() => self.deliver(Instant::now()),
            }
        }
        self.finish().await;
    }

    async fn add(
        &mut self,
        session: &mut ServiceSession,
        source: u32,
        name: &str,
        voice: VoiceSource,
    ) {
        let audio = match session.add_participant(SourceId(source)).await {
            Ok(a) => a,
            Err(e) => {
                lock(&self.measure)
                    .error
                    .get_or_insert(format!("sourceId {source}: {e}"));
                return;
            }
        };
        if let Err(e) = session.negotiate().await {
            lock(&self.measure)
                .error
                .get_or_insert(format!("offer for sourceId {source}: {e}"));
        }
        let to_bot = &self.options.impairments.to_bot;
        let link = if to_bot.is_clean() {
            None
        } else {
            let seed = self.seed ^ u64::from(source).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            Link::new(to_bot.clone(), seed).ok()
        };
        let start = Instant::now();
        lock(&self.measure).add_participant(source, name, start);
        self.streams.insert(source, audio.clone());
        let sender = Sender::spawn(source, audio, voice, link, self.measure.clone(), start);
        if let Some(old) = self.senders.insert(source, sender) {
            old.stop().await;
        }
    }

    /// Adds a softphone person's stream toward the bot and hands it to their relay.
    async fn add_person(&mut self, session: &mut ServiceSession, source: u32, name: &str) {
        let Some(softphone) = self.options.softphone.clone() else {
            return;
        };
        let call_id = lock(&self.measure).call_id().to_owned();
        let audio = match session.add_participant(SourceId(source)).await {
            Ok(a) => a,
            Err(e) => {
                lock(&self.measure)
                    .error
                    .get_or_insert(format!("sourceId {source}: {e}"));
                softphone.detach(&call_id, source);
                return;
            }
        };
        if let Err(e) = session.negotiate().await {
            lock(&self.measure)
                .error
                .get_or_insert(format!("offer for sourceId {source}: {e}"));
        }
        // 50 packets a second; a browser that stalls for a second loses the excess.
        let (tx, rx) = mpsc::channel(50);
        self.people.insert(source, tx);
        softphone.attach(
            &call_id,
            source,
            Attach {
                name: name.to_owned(),
                to_bot: audio,
                from_bot: rx,
                measure: self.measure.clone(),
            },
        );
    }

    async fn remove(&mut self, session: &mut ServiceSession, source: u32) {
        if self.people.remove(&source).is_some() {
            if let Some(sp) = &self.options.softphone {
                let call_id = lock(&self.measure).call_id().to_owned();
                sp.detach(&call_id, source);
            }
            lock(&self.measure).participant_left(source, Instant::now());
            if session.remove_participant(SourceId(source)).await.is_ok() {
                let _ = session.negotiate().await;
            }
            return;
        }
        self.streams.remove(&source);
        let Some(sender) = self.senders.remove(&source) else {
            return;
        };
        self.stopped(source, sender).await;
        if session.remove_participant(SourceId(source)).await.is_ok()
            && let Err(e) = session.negotiate().await
        {
            lock(&self.measure)
                .error
                .get_or_insert(format!("offer removing sourceId {source}: {e}"));
        }
    }

    async fn stopped(&mut self, source: u32, sender: Sender) {
        let stats = sender.stop().await;
        let mut m = lock(&self.measure);
        m.participant_left(source, Instant::now());
        if let Some(s) = stats {
            m.set_link_stats(source, s);
        }
    }

    fn bot_audio(&mut self, arrival: Instant, packet: (u16, u32, Bytes)) {
        // People hear the bot as it sends, before the sim's own `from_bot` impairment.
        for tx in self.people.values() {
            let _ = tx.try_send(packet.2.clone());
        }
        match self.from_bot.as_mut() {
            Some(link) => {
                link.send(arrival, packet);
                self.deliver(Instant::now());
            }
            None => {
                let (seq, ts, payload) = packet;
                lock(&self.measure).bot().push(seq, ts, payload, arrival);
            }
        }
    }

    /// Hands the bot's packets the `from_bot` link releases by `now` to the recorder.
    fn deliver(&mut self, now: Instant) {
        let Some(link) = self.from_bot.as_mut() else {
            return;
        };
        let mut m = lock(&self.measure);
        while let Some(due) = link.poll_timeout().filter(|d| *d <= now) {
            while let Some((seq, ts, payload)) = link.poll_output(due) {
                m.bot().push(seq, ts, payload, due);
            }
        }
        m.set_from_bot_stats(link.stats());
    }

    async fn finish(&mut self) {
        if let Some(sp) = &self.options.softphone {
            let call_id = lock(&self.measure).call_id().to_owned();
            for source in self.people.keys() {
                sp.detach(&call_id, *source);
            }
        }
        self.people.clear();
        let senders: Vec<(u32, Sender)> = self.senders.drain().collect();
        for (source, sender) in senders {
            self.stopped(source, sender).await;
        }
        // What is still on the impaired link when the call ends never arrives.
        let mut m = lock(&self.measure);
        m.bot().finish();
        m.ended = true;
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
