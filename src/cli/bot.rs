//! `mediabot bot`: an echo bot configured entirely from flags and `MEDIABOT_*` variables, for
//! any target: graph-sim in-process, a running graph-sim, or real Microsoft Graph.
//!
//! It answers every incoming call and, when asked, places one call or joins one meeting; each
//! call plays back what it hears. One line per call event goes to stderr. Against real Graph
//! the signaling goes through, and the media side ends the call with a clear "never connected"
//! error, because Teams' media processor cannot reach a WebRTC mpUri.

use std::time::Duration;

use clap::Args;
use graph_sim::scenario::Scenario;
use media_transport::protocol::EndReason;
use mediabot::bot::{
    BotArgs, Call, CallEvent, CallTarget, LocalSim, LocalSimOptions, ReceivedAudio, TargetKind,
};
use tokio::sync::mpsc;

#[derive(Debug, Args)]
pub(crate) struct BotCommandArgs {
    #[command(flatten)]
    bot: BotArgs,
    /// Place a P2P call to this user (object id). With `--target local` the default is the
    /// first simulated user.
    #[arg(long, env = "MEDIABOT_CALL_USER", value_name = "USER_ID")]
    call: Option<String>,
    /// Join the meeting with this join id instead of calling a user.
    #[arg(long, env = "MEDIABOT_JOIN_MEETING_ID", conflicts_with = "call")]
    join_meeting_id: Option<String>,
    /// The meeting's passcode.
    #[arg(long, env = "MEDIABOT_MEETING_PASSCODE", requires = "join_meeting_id")]
    passcode: Option<String>,
    /// Hang up and stop after this many seconds (default: run until SIGTERM or Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<u64>,
    /// On SIGTERM or SIGINT, how long calls in progress may go on before they are hung up.
    /// A second signal hangs up at once.
    #[arg(
        long,
        env = "MEDIABOT_DRAIN_TIMEOUT",
        value_name = "SECONDS",
        default_value = "60"
    )]
    drain_timeout: u64,
}

pub(crate) fn run(args: BotCommandArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(serve(args))
}

/// What the command reports of each call when it ends.
struct Outcome {
    id: String,
    established: bool,
    error: Option<String>,
}

async fn serve(args: BotCommandArgs) -> Result<(), String> {
    // A local target brings its own sim, which must outlive the bot.
    let (local, target) = match args.bot.target().map_err(|e| e.to_string())? {
        Some(target) => (None, target),
        None => {
            // The sim registers the credential given, so the bot proves itself with it.
            let (config, credential) = args.bot.local_registration().map_err(|e| e.to_string())?;
            let options = LocalSimOptions {
                config,
                ..LocalSimOptions::default()
            };
            let sim = LocalSim::start_with(Scenario::two_users(), options)
                .await
                .map_err(|e| format!("graph-sim: {e}"))?;
            let target = match credential {
                Some(c) => sim.target().with_credential(c),
                None => sim.target(),
            };
            (Some(sim), target)
        }
    };
    let mut bot = args
        .bot
        .builder(target)
        .build()
        .await
        .map_err(|e| format!("bot: {e}"))?;
    eprintln!(
        "bot ready: callback {}, mpUri {}, metrics http://{}/metrics",
        bot.callback_url(),
        bot.mp_uri(),
        bot.local_addr()
    );
    if args.bot.target == TargetKind::Graph {
        eprintln!(
            "note: against Microsoft Graph, signaling works but Teams' media processor cannot \
             connect to a WebRTC mpUri; calls end with a media 'never connected' error"
        );
    }

    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Outcome>();
    {
        let done = done_tx.clone();
        bot.answer_incoming_with(move |call| {
            eprintln!("call {}: answered", call.id());
            tokio::spawn(echo(call, done.clone()));
        });
    }

    let placed = match (&args.call, &args.join_meeting_id, &local) {
        (Some(user), _, _) => Some(CallTarget::user(user.clone(), None)),
        (None, Some(id), _) => Some(CallTarget::Meeting {
            join_meeting_id: id.clone(),
            passcode: args.passcode.clone(),
        }),
        (None, None, Some(sim)) => sim
            .users()
            .first()
            .map(|u| CallTarget::user(u.id.clone(), Some(u.name.clone()))),
        (None, None, None) => None,
    };
    let mut waiting_for_placed = false;
    if let Some(target) = placed {
        let call = bot
            .place_call(target)
            .await
            .map_err(|e| format!("placing the call: {e}"))?;
        eprintln!("call {}: placed", call.id());
        waiting_for_placed = true;
        tokio::spawn(echo(call, done_tx.clone()));
    } else {
        eprintln!("waiting for incoming calls");
    }
    drop(done_tx);

    let mut signals = Signals::new().map_err(|e| format!("cannot watch signals: {e}"))?;
    let deadline = async {
        match args.duration {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut failures = Vec::new();
    let stop = loop {
        tokio::select! {
            () = &mut deadline => break Stop::Duration,
            signal = signals.next() => break Stop::Signal(signal),
            Some(outcome) = done_rx.recv() => {
                report(&outcome, &mut failures);
                // A command that placed its call is done once that call is over.
                if waiting_for_placed && bot.active_calls() == 0 {
                    break Stop::CallOver;
                }
            }
        }
    };
    let drained = match stop {
        Stop::Signal(name) => {
            eprintln!(
                "{name}: draining: no new calls; calls in progress may go on for {} s \
                 (another signal hangs up at once)",
                args.drain_timeout
            );
            tokio::select! {
                report = bot.drain(Duration::from_secs(args.drain_timeout)) => report,
                name = signals.next() => {
                    eprintln!("{name}: hanging up every call");
                    bot.shutdown().await
                }
            }
        }
        Stop::Duration | Stop::CallOver => bot.shutdown().await,
    };
    eprintln!(
        "stopped: {} call(s) in progress at the stop, {} hung up by the bot",
        drained.calls_at_start, drained.hung_up
    );
    // The calls' tasks report their ends as their events run out.
    while let Ok(Some(outcome)) = tokio::time::timeout(Duration::from_secs(5), done_rx.recv()).await
    {
        report(&outcome, &mut failures);
    }
    drop(bot);
    if let Some(sim) = local {
        sim.finish().await.map_err(|e| format!("graph-sim: {e}"))?;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// Why the command stops.
enum Stop {
    Duration,
    CallOver,
    Signal(&'static str),
}

/// SIGTERM and SIGINT, as one stream.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

fn report(outcome: &Outcome, failures: &mut Vec<String>) {
    let ended = if outcome.established {
        "ended"
    } else {
        "ended before it was established"
    };
    match &outcome.error {
        Some(error) => {
            eprintln!("call {}: {ended}: {error}", outcome.id);
            failures.push(format!("call {}: {error}", outcome.id));
        }
        None => eprintln!("call {}: {ended}", outcome.id),
    }
}

/// Plays back what a call hears until it ends or the command stops, reporting its events.
async fn echo(mut call: Call, done: mpsc::UnboundedSender<Outcome>) {
    let id = call.id().to_owned();
    if let Some(mut audio) = call.audio_receiver() {
        let out = call.audio_sender();
        tokio::spawn(async move {
            while let Some(received) = audio.recv().await {
                // Answered in the same period; a hiccup costs a frame, not lasting delay.
                if let ReceivedAudio::Mixed { frame, .. } = received {
                    out.push_reply(&frame);
                }
            }
        });
    }
    let mut outcome = Outcome {
        id: id.clone(),
        established: false,
        error: None,
    };
    // The bot hangs calls up itself when the command stops (drain or shutdown); its media then
    // ends as a hang-up and the call terminates normally, so neither reads as an error.
    while let Some(event) = call.next_event().await {
        match event {
            CallEvent::StateChanged { to, .. } => {
                outcome.established |= to.as_str() == "established";
                eprintln!("call {id}: {}", to.as_str());
            }
            CallEvent::ParticipantJoined(key, p) => {
                eprintln!("call {id}: + {} (participant {key})", p.identity_label());
            }
            CallEvent::ParticipantLeft(key, reason) => {
                eprintln!(
                    "call {id}: - participant {key} {}",
                    reason.unwrap_or_default()
                );
            }
            CallEvent::MediaConnected => eprintln!("call {id}: media connected"),
            CallEvent::MediaEnded(reason) => {
                eprintln!("call {id}: media ended: {reason}");
                // A hang-up by either side ends media normally; anything else is the error
                // the user must see (on real Graph: the media processor never connected).
                let normal = matches!(
                    reason,
                    EndReason::HangUpByBot { .. } | EndReason::HangUpByService { .. }
                );
                if !normal {
                    outcome.error = Some(format!("media: {reason}"));
                }
            }
            CallEvent::MediaStreamFailed { source, detail } => {
                eprintln!("call {id}: stream {} failed: {detail}", source.get());
            }
            CallEvent::Terminated(info) => {
                let code = info
                    .as_ref()
                    .and_then(|i| i.code.get().copied())
                    .unwrap_or(0);
                if outcome.error.is_none() && code >= 400 {
                    let message = info.as_ref().and_then(|i| i.message.get().cloned());
                    outcome.error = Some(format!(
                        "terminated by the service: {code} {}",
                        message.unwrap_or_default()
                    ));
                }
                break;
            }
            _ => {}
        }
    }
    let _ = done.send(outcome);
}
