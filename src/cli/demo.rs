//! `mediabot demo`: graph-sim in-process plus an echo bot. The bot calls one simulated user,
//! invites the others one at a time, receives everyone's unmixed audio, sends the mix back, and
//! hangs up after `--duration` seconds; then the sim's measurements are reported.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audio_pipeline::engine::REPLY_LEAD;
use clap::Args;
use graph_sim::media::MediaReport;
use graph_sim::netem::Impairment;
use graph_sim::scenario::{Scenario, SimUser, Turns, Voice};
use mediabot::bot::{Bot, CallEvent, CallTarget, LocalSim, ReceivedAudio};
use serde_json::{Value, json};

use super::print_out;

/// Names of the simulated participants, in the order they join. All of them speak (the
/// built-in speech recording, each from a different point of it), taking turns.
const CAST: [&str; 5] = ["Alice", "Bob", "Carol", "Dave", "Erin"];

/// Each participant's turn to talk, and the pause before the next one takes over.
const TURN_MS: u64 = 3000;
const TURN_GAP_MS: u64 = 200;

/// Opus's algorithmic delay (look-ahead plus the decoder's overlap) at 20 ms frames.
const OPUS_LOOKAHEAD_MS: f64 = 6.5;

/// The echo delay no implementation can beat, as a person in the call hears it, without the
/// resamplers' part (measured, see [`floor_ms`]): 20 ms of capture framing (graph-sim places
/// what a user says 20 ms before its packet leaves), Opus's look-ahead both ways, and the
/// listener's 20 ms of playout (graph-sim plays the bot's audio a frame after it arrives).
/// Nothing forces a hold in the bot: a packet can be decoded, answered and the answer encoded
/// within a few milliseconds of its arrival.
const FIXED_FLOOR_MS: f64 = FRAME_MS + 2.0 * OPUS_LOOKAHEAD_MS + FRAME_MS;

/// The floor with the resamplers' delay (48 kHz ⇄ the app's rate, both ways) when known.
fn floor_ms(resampling_ms: Option<f64>) -> f64 {
    FIXED_FLOOR_MS + resampling_ms.unwrap_or(0.0)
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Seconds to stay in the call once it is established (default 15; with --softphone, until
    /// Ctrl-C).
    #[arg(long)]
    duration: Option<u64>,
    /// Packet loss in each direction, in percent.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Network jitter in each direction, in ms.
    #[arg(long, default_value_t = 0)]
    jitter: u64,
    /// Simulated participants (1 to 5): the first is called, the others invited.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=5))]
    participants: u8,
    /// Seed of every random choice (impairments, ids).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print only a JSON report on standard output.
    #[arg(long)]
    json: bool,
    /// Serve graph-sim's softphone page (its URL is printed on standard error) so a person can
    /// join the call from a browser; stays in the call until Ctrl-C unless --duration is given.
    #[arg(long)]
    softphone: bool,
}

/// What the echo task saw of each participant's unmixed audio.
#[derive(Default)]
struct Heard {
    frames: u64,
    level_dbfs: f32,
}

pub(crate) fn run(args: DemoArgs) -> Result<(), String> {
    if !(0.0..=100.0).contains(&args.loss) {
        return Err("--loss must be a percentage between 0 and 100".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let report = runtime.block_on(demo(&args))?;
    let ok = report["ok"].as_bool().unwrap_or(false);
    if args.json {
        print_out(&format!("{report:#}\n"))?;
    } else {
        print_out(&human(&report))?;
    }
    if ok {
        Ok(())
    } else {
        Err("the demo call did not go established → terminated with audio both ways for every participant".into())
    }
}

fn scenario(args: &DemoArgs) -> Scenario {
    let impairment = Impairment {
        loss: args.loss / 100.0,
        jitter: Duration::from_millis(args.jitter),
        ..Impairment::default()
    };
    let mut scenario = Scenario {
        seed: args.seed,
        ..Scenario::default()
    };
    // The participants take turns, as people in a conversation do: the bot sends everyone one
    // mix, and each person's echo can only be judged while the others are quiet.
    let n = u64::from(args.participants);
    scenario.users = CAST
        .iter()
        .take(usize::from(args.participants))
        .zip(0..)
        .map(|(name, i)| {
            let mut user = SimUser::new(*name, Voice::Speech);
            if n > 1 {
                user.talks = Some(Turns {
                    every_ms: n * TURN_MS,
                    for_ms: TURN_MS - TURN_GAP_MS,
                    from_ms: i * TURN_MS,
                });
            }
            user
        })
        .collect();
    scenario.media.to_bot = impairment.clone();
    scenario.media.from_bot = impairment;
    scenario
}

async fn demo(args: &DemoArgs) -> Result<Value, String> {
    let sim = if args.softphone {
        LocalSim::start_with_softphone(scenario(args)).await
    } else {
        LocalSim::start(scenario(args)).await
    }
    .map_err(|e| format!("graph-sim: {e}"))?;
    if let Some(url) = sim.softphone_url() {
        eprintln!("softphone: open {url} to join the call from a browser (Ctrl-C ends the demo)");
    }
    // `None`: stay until Ctrl-C.
    let duration = match (args.duration, args.softphone) {
        (Some(secs), _) => Some(Duration::from_secs(secs)),
        (None, false) => Some(Duration::from_secs(15)),
        (None, true) => None,
    };
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if args.softphone {
        let flag = interrupted.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    let bot = Bot::builder(sim.target())
        .build()
        .await
        .map_err(|e| format!("bot: {e}"))?;
    let users = sim.users().to_vec();
    let first = &users[0];
    let mut call = bot
        .place_call(CallTarget::user(first.id.clone(), Some(first.name.clone())))
        .await
        .map_err(|e| format!("placing the call: {e}"))?;
    let call_id = call.id().to_owned();

    let heard: Arc<Mutex<BTreeMap<u32, Heard>>> = Arc::default();
    let sent_frames = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut receiver = call
        .audio_receiver()
        .ok_or("the call's audio receiver was already taken")?;
    let sender = call.audio_sender();
    let queue: Arc<Mutex<Mean>> = Arc::default();
    let echo = {
        let heard = heard.clone();
        let sent_frames = sent_frames.clone();
        let queue = queue.clone();
        tokio::spawn(async move {
            while let Some(audio) = receiver.recv().await {
                match audio {
                    ReceivedAudio::Unmixed(frame) => {
                        let mut heard = heard.lock().unwrap_or_else(|p| p.into_inner());
                        let entry = heard.entry(frame.source.get()).or_default();
                        entry.frames += 1;
                        entry.level_dbfs = audio_pipeline::mix::level_dbfs(frame.samples());
                    }
                    // Send the mix straight back, in the same period; a frame still queued
                    // from a hiccup makes this one skipped rather than delayed.
                    ReceivedAudio::Mixed { frame, .. } => {
                        let queued = sender.queued_frames();
                        if sender.push_reply(&frame) {
                            sent_frames.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            // Frames ahead of this one: its wait in the send queue.
                            queue
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .add(queued as f64);
                        }
                    }
                }
            }
        })
    };

    let mut states: Vec<String> = Vec::new();
    let mut participants = 0usize;
    let mut established_at: Option<Instant> = None;
    let mut invited = false;
    let mut hung_up = false;
    let mut hung_up_at: Option<Instant> = None;
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let setup_limit = Duration::from_secs(30);
    loop {
        tokio::select! {
            event = call.next_event() => {
                let Some(event) = event else { break };
                match event {
                    CallEvent::StateChanged { to, .. } => {
                        let state = to.as_str().to_owned();
                        if state == "established" && established_at.is_none() {
                            established_at = Some(Instant::now());
                        }
                        states.push(state);
                    }
                    // The roster lists the bot itself too; count the people.
                    CallEvent::ParticipantJoined(..) => participants += 1,
                    CallEvent::ParticipantLeft(..) => participants = participants.saturating_sub(1),
                    CallEvent::Terminated(_) => break,
                    CallEvent::MediaEnded(reason) => {
                        eprintln!("media ended: {reason}");
                    }
                    _ => {}
                }
                if established_at.is_some() && !invited {
                    invited = true;
                    for user in &users[1..] {
                        if let Err(e) = call.invite(&user.id, Some(user.name.clone())).await {
                            eprintln!("inviting {}: {e}", user.name);
                        }
                    }
                }
            }
            _ = ticker.tick() => {
                status_line(&bot, &call_id, &states, participants, &heard, &sent_frames);
                let due = interrupted.load(std::sync::atomic::Ordering::Relaxed)
                    || established_at.zip(duration).is_some_and(|(t, d)| t.elapsed() >= d);
                let stuck = established_at.is_none() && started.elapsed() > setup_limit;
                if (due || stuck) && !hung_up {
                    hung_up = true;
                    hung_up_at = Some(Instant::now());
                    if let Err(e) = call.hang_up().await {
                        eprintln!("hang up: {e}");
                        break;
                    }
                }
                if hung_up_at.is_some_and(|t| t.elapsed() > setup_limit) {
                    break;
                }
            }
        }
    }
    if !states.iter().any(|s| s == "terminated") && call.is_ended() {
        states.push("terminated".into());
    }
    eprintln!();
    // The call's streams are gone once it ended; its figures live on in the bot's cumulative
    // counters when its owner releases it, so read them after that.
    let released_by = tokio::time::Instant::now() + Duration::from_secs(20);
    while bot.unreleased_calls() > 0 && tokio::time::Instant::now() < released_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let concealed = bot.frames_concealed().await;
    let auth_failures = bot.notification_auth_failures();
    echo.abort();
    let media = sim.finish().await.map_err(|e| format!("graph-sim: {e}"))?;
    let heard = heard.lock().unwrap_or_else(|p| p.into_inner());
    let holds = Holds {
        jitter_buffer_ms: {
            // What the talkers' words waited: a silent participant's packets wait wherever
            // the tick happens to be, and are not in the echo anyone listens for.
            let hold = bot.engine_stats().speech_hold.snapshot();
            (hold.count() > 0).then(|| hold.mean_us() / 1000.0)
        },
        send_queue_ms: queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get()
            .map(|f| f * FRAME_MS),
        resampling_ms: resampling_ms(),
    };
    Ok(report(
        &states,
        &media,
        &heard,
        sent_frames.load(std::sync::atomic::Ordering::Relaxed),
        concealed,
        auth_failures,
        &holds,
    ))
}

/// A running mean of samples.
#[derive(Debug, Default)]
struct Mean {
    sum: f64,
    n: u64,
}

impl Mean {
    fn add(&mut self, x: f64) {
        self.sum += x;
        self.n += 1;
    }

    fn get(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

const FRAME_MS: f64 = 20.0;

/// Where the bot held audio, measured during the call, for the delay breakdown.
struct Holds {
    /// Mean wait of a speech packet in the bot's jitter buffer, arrival to its playout tick.
    jitter_buffer_ms: Option<f64>,
    /// Mean wait of an echoed frame in the send queue (frames ahead of it when pushed).
    send_queue_ms: Option<f64>,
    /// The engine's resamplers (48 kHz ⇄ the app's 16 kHz), both ways together.
    resampling_ms: Option<f64>,
}

fn resampling_ms() -> Option<f64> {
    use audio_pipeline::resample::{FrameResampler, ResamplerKind};
    let kind = ResamplerKind::default();
    let down = FrameResampler::new(kind, 48_000, 16_000, 1).ok()?.delay() as f64 / 16.0;
    let up = FrameResampler::new(kind, 16_000, 48_000, 1).ok()?.delay() as f64 / 48.0;
    Some(down + up)
}

/// The measured echo delay set against its floor: the floor's parts, then what the bot added
/// (its jitter buffer's hold, the lead of its send tick over its receive tick, frames queued
/// ahead of a reply) and the rest (network, thread wake-ups). The parts add up to the
/// measured median.
fn breakdown(p50: Option<f64>, holds: &Holds) -> Value {
    let floor = floor_ms(holds.resampling_ms);
    let above = p50.map(|d| d - floor);
    let lead = REPLY_LEAD.as_secs_f64() * 1000.0;
    let rest = match (above, holds.jitter_buffer_ms, holds.send_queue_ms) {
        (Some(a), Some(j), Some(q)) => Some(a - j - lead - q),
        _ => None,
    };
    json!({
        "floor_ms": floor,
        "floor_parts_ms": {
            "capture_framing": FRAME_MS,
            "opus_lookahead_to_bot": OPUS_LOOKAHEAD_MS,
            "opus_lookahead_from_bot": OPUS_LOOKAHEAD_MS,
            "listener_playout": FRAME_MS,
            "resampling": holds.resampling_ms,
        },
        "measured_p50_ms": p50,
        "above_floor_ms": above,
        "above_floor_parts_ms": {
            "bot_jitter_buffer": holds.jitter_buffer_ms,
            "bot_reply_lead": lead,
            "bot_send_queue": holds.send_queue_ms,
            "network_and_scheduling": rest,
        },
    })
}

fn status_line(
    bot: &Bot,
    call_id: &str,
    states: &[String],
    participants: usize,
    heard: &Mutex<BTreeMap<u32, Heard>>,
    sent: &std::sync::atomic::AtomicU64,
) {
    let streams = bot.streams(call_id);
    let concealed: u64 = streams.iter().map(|s| s.concealed).sum();
    let hold = bot.engine_stats().jitter_hold.snapshot();
    let heard = heard.lock().unwrap_or_else(|p| p.into_inner());
    let frames_in: u64 = heard.values().map(|h| h.frames).sum();
    let meters: String = heard
        .iter()
        .map(|(source, h)| format!(" {source}:{}", meter(h.level_dbfs)))
        .collect();
    let state = states.last().map_or("placing", String::as_str);
    let mut err = std::io::stderr().lock();
    // On a terminal the line rewrites itself; in a log each second gets its own line.
    let start = if err.is_terminal() { "\r" } else { "" };
    let end = if err.is_terminal() { "" } else { "\n" };
    // A status line that cannot be written is not worth failing the demo over.
    let _ = write!(
        err,
        "{start}{state:<12} participants {participants}  in {frames_in:>5}  out {:>5}  concealed {concealed:>4}  jb {:>4.1} ms {meters}   {end}",
        sent.load(std::sync::atomic::Ordering::Relaxed),
        hold.mean_us() / 1000.0,
    );
    let _ = err.flush();
}

/// A small level meter: one block per 10 dB above -60 dBFS.
fn meter(dbfs: f32) -> String {
    let blocks = ((dbfs + 60.0) / 10.0).clamp(0.0, 6.0) as usize;
    format!("{:<6}", "█".repeat(blocks))
}

fn report(
    states: &[String],
    media: &MediaReport,
    heard: &BTreeMap<u32, Heard>,
    frames_sent: u64,
    frames_concealed: u64,
    auth_failures: u64,
    holds: &Holds,
) -> Value {
    let mut participants = Vec::new();
    let mut similarity = serde_json::Map::new();
    let mut flowing = true;
    let mut count = 0;
    for p in media.calls.iter().flat_map(|c| &c.participants) {
        count += 1;
        let bot_heard = heard.get(&p.source_id).map_or(0, |h| h.frames);
        flowing &= bot_heard > 0 && p.frames_received > 0;
        similarity.insert(p.name.clone(), json!(p.similarity));
        participants.push(json!({
            "name": p.name,
            "source_id": p.source_id,
            "frames_sent": p.frames_sent,
            "frames_received": p.frames_received,
            "bot_frames_heard": bot_heard,
            "to_bot_loss_pct": p.to_bot.loss_pct,
            "echo_delay_ms_p50": p.echo_delay_ms_p50,
            "echo_delay_ms_p95": p.echo_delay_ms_p95,
            "similarity": p.similarity,
        }));
    }
    let went_through = {
        let established = states.iter().position(|s| s == "established");
        let terminated = states.iter().position(|s| s == "terminated");
        matches!((established, terminated), (Some(e), Some(t)) if e < t)
    };
    let totals = &media.totals;
    json!({
        "states": states,
        "participants": participants,
        "frames_sent": frames_sent,
        "frames_received": heard.values().map(|h| h.frames).sum::<u64>(),
        "frames_concealed": frames_concealed,
        "echo_delay_ms_p50": totals.echo_delay_ms_p50,
        "echo_delay_ms_p95": totals.echo_delay_ms_p95,
        "echo_delay_floor_ms": floor_ms(holds.resampling_ms),
        "echo_delay_breakdown": breakdown(totals.echo_delay_ms_p50, holds),
        "echo_similarity": similarity,
        "notification_auth_failures": auth_failures,
        "ok": went_through && flowing && count > 0,
    })
}

fn human(report: &Value) -> String {
    let mut out = String::new();
    let states: Vec<&str> = report["states"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push_str(&format!("call states: {}\n", states.join(" → ")));
    for p in report["participants"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<6} source {:<3} said {:>5} frames, bot heard {:>5}, echo back {:>5}, delay p50 {}, similarity {}\n",
            p["name"].as_str().unwrap_or("?"),
            p["source_id"],
            p["frames_sent"],
            p["bot_frames_heard"],
            p["frames_received"],
            p["echo_delay_ms_p50"].as_f64().map_or("-".into(), |d| format!("{d:.0} ms")),
            p["similarity"].as_f64().map_or("-".into(), |s| format!("{s:.2}")),
        ));
    }
    out.push_str(&format!(
        "bot frames: {} received, {} sent, {} concealed; notification auth failures: {}\n",
        report["frames_received"],
        report["frames_sent"],
        report["frames_concealed"],
        report["notification_auth_failures"],
    ));
    if let Some(p50) = report["echo_delay_ms_p50"].as_f64() {
        let b = &report["echo_delay_breakdown"];
        let ms = |v: &Value| v.as_f64().map_or("-".into(), |d| format!("{d:.1}"));
        let floor = b["floor_ms"].as_f64().unwrap_or(FIXED_FLOOR_MS);
        out.push_str(&format!(
            "echo delay p50 {p50:.0} ms (p95 {}) against a floor of {floor:.1} ms (20 capture \
             framing + 2 × 6.5 Opus look-ahead + 20 listener playout + {} resampling): {:+.1} ms\n",
            report["echo_delay_ms_p95"]
                .as_f64()
                .map_or("-".into(), |d| format!("{d:.0} ms")),
            ms(&b["floor_parts_ms"]["resampling"]),
            p50 - floor,
        ));
        let parts = &b["above_floor_parts_ms"];
        out.push_str(&format!(
            "  above the floor: bot jitter buffer {} ms, reply lead {} ms, send queue {} ms, \
             network + scheduling {} ms\n",
            ms(&parts["bot_jitter_buffer"]),
            ms(&parts["bot_reply_lead"]),
            ms(&parts["bot_send_queue"]),
            ms(&parts["network_and_scheduling"]),
        ));
    }
    out.push_str(if report["ok"].as_bool() == Some(true) {
        "ok: established → terminated, audio both ways for every participant\n"
    } else {
        "NOT ok\n"
    });
    out
}
