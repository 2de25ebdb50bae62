//! Helpers shared by the suite: taking turns, a small engine, waiting for events, an echo bot
//! that keeps count, and a tone detector.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mediabot::bot::{
    AudioSender, Bot, BotBuilder, Call, CallEvent, CallTarget, ReceivedAudio, SimUserInfo,
};
use mediabot::crates::audio_pipeline::EngineConfig;
use mediabot::crates::graph_signaling::models::CallState;
use mediabot::crates::media_session::SourceId;
use tokio::task::JoinHandle;

/// Generous deadline for anything signaling does (it takes milliseconds when all is well).
pub(crate) const WAIT: Duration = Duration::from_secs(10);

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits for this test's turn. Hold the guard for the whole test: the tests of this binary
/// run one at a time, so no call competes with another's real-time threads. A test that
/// panics releases its turn (a tokio mutex is not poisoned).
pub(crate) async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    TURN.lock().await
}

/// One send and one receive worker at normal priority: the suite shares two cores with other
/// work, and asking for `SCHED_FIFO` there only helps one process at the others' expense.
pub(crate) fn small_engine() -> EngineConfig {
    EngineConfig {
        send_threads: 1,
        receive_threads: 1,
        realtime_priority: None,
        ..EngineConfig::default()
    }
}

/// Reads events until one matches, up to `within`; every event read is appended to `seen`.
pub(crate) async fn wait_for(
    call: &mut Call,
    seen: &mut Vec<CallEvent>,
    within: Duration,
    what: impl Fn(&CallEvent) -> bool,
) -> Option<CallEvent> {
    tokio::time::timeout(within, async {
        while let Some(e) = call.next_event().await {
            seen.push(e.clone());
            if what(&e) {
                return Some(e);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

/// Reads every event that arrives within `period`, appending them to `seen`.
pub(crate) async fn collect_for(call: &mut Call, seen: &mut Vec<CallEvent>, period: Duration) {
    let until = tokio::time::Instant::now() + period;
    while let Ok(Some(e)) = tokio::time::timeout_at(until, call.next_event()).await {
        seen.push(e);
    }
}

pub(crate) fn is_state(e: &CallEvent, state: CallState) -> bool {
    matches!(e, CallEvent::StateChanged { to, .. } if *to == state)
}

pub(crate) fn is_terminated(e: &CallEvent) -> bool {
    matches!(e, CallEvent::Terminated(_))
}

/// A bot holding an established call with one simulated user and echoing what it hears.
pub(crate) struct EchoCall {
    /// Kept alive for the call: dropping the bot stops its server.
    pub(crate) bot: Bot,
    pub(crate) call: Call,
    pub(crate) echo: Echo,
    /// Every event read so far.
    pub(crate) seen: Vec<CallEvent>,
}

/// Builds `bot` on the small engine, has it call `user` and echo, and waits until the call is
/// established.
pub(crate) async fn echo_call(bot: BotBuilder, user: &SimUserInfo) -> EchoCall {
    let bot = bot.engine(small_engine()).build().await.expect("bot built");
    let mut call = bot
        .place_call(CallTarget::user(&user.id, Some(user.name.clone())))
        .await
        .expect("call placed");
    let echo = Echo::start(&mut call, false);
    let mut seen = Vec::new();
    wait_for(&mut call, &mut seen, WAIT, |e| {
        is_state(e, CallState::Established)
    })
    .await
    .expect("established");
    EchoCall {
        bot,
        call,
        echo,
        seen,
    }
}

/// Hangs up and waits for the call to end.
pub(crate) async fn hang_up(call: &mut Call, seen: &mut Vec<CallEvent>) {
    call.hang_up().await.expect("hang-up accepted");
    wait_for(call, seen, WAIT, is_terminated)
        .await
        .expect("terminated after the hang-up");
}

/// What the echo task saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct EchoStats {
    /// Mixed frames received (one per 20 ms tick).
    pub(crate) mixed: u64,
    /// Unmixed frames received, per source.
    pub(crate) unmixed: HashMap<SourceId, u64>,
    /// The mixed audio received, when kept (at the call's rate, mono).
    pub(crate) mixed_pcm: Vec<i16>,
    /// Sample rate of `mixed_pcm`.
    pub(crate) sample_rate: u32,
}

/// An echo bot on one call: every mixed frame is sent back. It starts with 60 ms of silence
/// so a late wake-up of this task on a busy machine does not run the player dry, and it skips
/// a frame when more than 120 ms are queued, so a burst cannot build a standing delay.
pub(crate) struct Echo {
    stats: Arc<Mutex<EchoStats>>,
    sender: AudioSender,
    task: JoinHandle<()>,
}

/// Most mixed audio kept for analysis: 30 s at 16 kHz.
const MAX_KEPT: usize = 30 * 16_000;

fn lock(m: &Mutex<EchoStats>) -> MutexGuard<'_, EchoStats> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Echo {
    /// Starts echoing `call`'s audio; `keep_pcm` keeps the mixed audio for [`EchoStats`].
    pub(crate) fn start(call: &mut Call, keep_pcm: bool) -> Echo {
        let mut audio = call.audio_receiver().expect("the audio is taken once");
        let out = call.audio_sender();
        let stats = Arc::new(Mutex::new(EchoStats {
            sample_rate: audio.spec().sample_rate,
            ..EchoStats::default()
        }));
        let (shared, sender) = (stats.clone(), out.clone());
        let task = tokio::spawn(async move {
            while let Some(a) = audio.recv().await {
                match a {
                    ReceivedAudio::Mixed { frame, .. } => {
                        let first = {
                            let mut s = lock(&shared);
                            s.mixed += 1;
                            if keep_pcm && s.mixed_pcm.len() < MAX_KEPT {
                                s.mixed_pcm.extend_from_slice(frame.samples());
                            }
                            s.mixed == 1
                        };
                        if first {
                            out.push_samples(&vec![0i16; frame.samples().len() * 3]);
                        }
                        if out.queued_frames() < 6 {
                            out.push_frame(&frame);
                        }
                    }
                    ReceivedAudio::Unmixed(frame) => {
                        *lock(&shared).unmixed.entry(frame.source).or_default() += 1;
                    }
                }
            }
        });
        Echo {
            stats,
            sender,
            task,
        }
    }

    /// What the echo has seen so far.
    pub(crate) fn stats(&self) -> EchoStats {
        lock(&self.stats).clone()
    }

    /// Ticks on which the bot's output ran dry (audible gaps in what the call hears).
    pub(crate) fn underruns(&self) -> u64 {
        self.sender.underruns()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Power of `freq` in `pcm` at `rate` (Goertzel), normalised by the length.
pub(crate) fn tone_power(pcm: &[i16], rate: u32, freq: f64) -> f64 {
    let n = pcm.len().max(1) as f64;
    test_kit::similarity::tone_power(pcm, rate, freq) / (n * n)
}

/// Mono samples of a 16-bit WAV file (the sim's recording of what the bot sent).
pub(crate) fn read_wav(path: &std::path::Path) -> (Vec<i16>, u32) {
    let mut reader = hound::WavReader::open(path).expect("the recording opens");
    let rate = reader.spec().sample_rate;
    let samples = reader
        .samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .expect("16-bit samples");
    (samples, rate)
}

/// A folder of its own under the system's temporary folder, removed on drop.
pub(crate) struct TempDir(pub(crate) std::path::PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("mediabot-e2e-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&path).expect("temporary folder");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
