//! An IVR bot with service-hosted media: it answers an incoming call, plays a menu, listens for
//! a key, and either transfers the caller (key 2) or says goodbye and hangs up. The calling
//! service plays the prompts and reports the keys; the bot holds no audio, so this bot runs
//! against real Microsoft Graph as well as against the embedded graph-sim.
//!
//! Against the sim (the default), a simulated caller rings the bot, presses what
//! `--caller-presses` says and is transferred to a simulated agent; what the caller heard is
//! written to `--sim-record`:
//!
//! `cargo run --example ivr_bot -- --caller-presses "2@1500ms"`
//! `cargo run --example ivr_bot -- --sim-record heard/` (a silent caller hears the goodbye)
//!
//! Against Microsoft Graph, with an app registration allowed to answer calls
//! (Calls.Initiate.All) whose calling webhook is `--callback-url`, and the prompts where the
//! service can fetch them over https:
//!
//! ```text
//! MEDIABOT_APP_ID=… MEDIABOT_APP_SECRET=… MEDIABOT_TENANT_ID=… cargo run --example ivr_bot -- \
//!     --graph --callback-url https://bot.example.com/callback --listen 0.0.0.0:8443 \
//!     --prompt-base-url https://cdn.example.com/ivr --transfer-to <agent's object id>
//! ```
#![allow(clippy::print_stdout)] // an example reports to its terminal

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use mediabot::bot::{Bot, BotError, Call, CallEvent, LocalSim, LocalSimOptions, Target};
use mediabot::crates::graph_signaling::models::{IdentitySet, InvitationParticipantInfo};
use mediabot::crates::graph_sim::media::MediaOptions;
use mediabot::crates::graph_sim::scenario::{Presses, Scenario, SimUser, Voice};
use mediabot::{MediaPrompt, Tone};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Answers calls with a menu; key 2 transfers the caller, anything else (or nothing) ends the
/// call with a goodbye.
#[derive(Parser)]
struct Args {
    /// Talk to Microsoft Graph (credentials from MEDIABOT_APP_ID, MEDIABOT_APP_SECRET and
    /// MEDIABOT_TENANT_ID) instead of the embedded graph-sim.
    #[arg(long)]
    graph: bool,
    /// The public URL the calling service posts notifications to (with --graph).
    #[arg(long, requires = "graph")]
    callback_url: Option<String>,
    /// Where the bot's HTTP server listens (with --graph).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// URL under which the service fetches menu.wav, goodbye.wav and transfer.wav (16 kHz mono
    /// 16-bit). Without it the bot serves the files of --prompts itself, on loopback: enough
    /// for the sim, not for Microsoft's service.
    #[arg(long)]
    prompt_base_url: Option<String>,
    /// Folder holding menu.wav, goodbye.wav and transfer.wav.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/prompts"))]
    prompts: PathBuf,
    /// The Teams user (object id) a caller who presses 2 is transferred to. With the sim: a
    /// simulated agent.
    #[arg(long)]
    transfer_to: Option<String>,
    /// Seconds to wait for a key once the menu has played.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=60))]
    wait: u64,
    /// With the sim: the keys the simulated caller presses, ms after the call is answered
    /// (`"2@1500ms"`); none: the caller stays silent.
    #[arg(long, default_value = "")]
    caller_presses: String,
    /// With the sim: folder where what the caller heard is written (`<call id>-heard.wav`).
    #[arg(long)]
    sim_record: Option<PathBuf>,
    /// Calls to serve before exiting; 0: until stopped. Default: 1 with the sim, 0 with
    /// --graph.
    #[arg(long)]
    calls: Option<u64>,
}

/// The prompts as the service fetches them.
#[derive(Clone)]
struct Prompts {
    menu: MediaPrompt,
    goodbye: MediaPrompt,
    transfer: MediaPrompt,
}

impl Prompts {
    fn under(base: &str) -> Prompts {
        let base = base.trim_end_matches('/');
        let prompt = |name: &str| MediaPrompt::new(format!("{base}/{name}.wav"), Some(name.into()));
        Prompts {
            menu: prompt("menu"),
            goodbye: prompt("goodbye"),
            transfer: prompt("transfer"),
        }
    }
}

/// How a call ended, as printed.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Transferred,
    Goodbye,
    CallerLeft,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let prompt_base = match &args.prompt_base_url {
        Some(url) => url.clone(),
        None => serve_prompts(args.prompts.clone()).await?,
    };
    let prompts = Prompts::under(&prompt_base);
    if args.graph {
        run_on_graph(&args, prompts).await
    } else {
        run_on_sim(&args, prompts).await
    }
}

/// The embedded sim: a caller rings the bot, an agent waits for transfers.
async fn run_on_sim(args: &Args, prompts: Prompts) -> Result<(), Error> {
    let presses = Presses::try_from(args.caller_presses.clone())?;
    let mut caller = SimUser::new("Carol", Voice::Speech);
    caller.presses = presses;
    let scenario = Scenario {
        users: vec![caller, SimUser::new("Agent Dave", Voice::Speech)],
        ..Scenario::default()
    };
    let mut media = MediaOptions::for_scenario(&scenario);
    media.record_dir = args.sim_record.clone();
    if let Some(dir) = &args.sim_record {
        std::fs::create_dir_all(dir)?;
    }
    let sim = LocalSim::start_with(
        scenario,
        LocalSimOptions {
            media: Some(media),
            ..LocalSimOptions::default()
        },
    )
    .await?;
    let agent = args
        .transfer_to
        .clone()
        .unwrap_or_else(|| sim.users()[1].id.clone());
    let mut bot = Bot::builder(sim.target()).build().await?;
    let mut incoming = bot.incoming_calls().ok_or("incoming calls taken")?;
    let calls = args.calls.unwrap_or(1);
    for _ in 0..calls {
        sim.offer_incoming_call(bot.callback_url(), 0)
            .await
            .ok_or("the sim did not offer a call")?;
        let offered = incoming.next().await.ok_or("the bot stopped")?;
        let call = offered.answer_service_hosted().await?;
        serve(call, &prompts, Some(&agent), args.wait).await?;
    }
    bot.shutdown().await;
    let report = sim.finish().await?;
    for heard in &report.heard {
        println!(
            "heard call={} pieces={} sound_ms={} duration_ms={} file={}",
            heard.call_id,
            heard.pieces,
            heard.sound_ms,
            heard.duration_ms,
            heard
                .recording
                .as_ref()
                .map_or_else(String::new, |p| p.display().to_string())
        );
    }
    Ok(())
}

/// Microsoft Graph: answer every call that comes in, until stopped (or `--calls`).
async fn run_on_graph(args: &Args, prompts: Prompts) -> Result<(), Error> {
    let env = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    let target = Target::graph(
        env("MEDIABOT_APP_ID")?,
        env("MEDIABOT_APP_SECRET")?,
        env("MEDIABOT_TENANT_ID")?,
    );
    let callback = args
        .callback_url
        .clone()
        .ok_or("--callback-url is required with --graph")?;
    let mut bot = Bot::builder(target)
        .http_bind(args.listen)
        .callback_url(callback)
        .build()
        .await?;
    let mut incoming = bot.incoming_calls().ok_or("incoming calls taken")?;
    let limit = args.calls.unwrap_or(0);
    let mut served = 0;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            offered = incoming.next() => {
                let Some(offered) = offered else { break };
                let (prompts, agent, wait) = (prompts.clone(), args.transfer_to.clone(), args.wait);
                tasks.spawn(async move {
                    match offered.answer_service_hosted().await {
                        Ok(call) => {
                            if let Err(e) = serve(call, &prompts, agent.as_deref(), wait).await {
                                println!("call failed: {e}");
                            }
                        }
                        Err(e) => println!("answer failed: {e}"),
                    }
                });
                served += 1;
                if limit > 0 && served >= limit {
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    while tasks.join_next().await.is_some() {}
    bot.shutdown().await;
    Ok(())
}

/// One caller: menu, a key, then transfer or goodbye.
async fn serve(
    mut call: Call,
    prompts: &Prompts,
    agent: Option<&str>,
    wait: u64,
) -> Result<Outcome, Error> {
    println!(
        "call id={} answered media={}",
        call.id(),
        call.media_hosting().as_str()
    );
    wait_established(&mut call).await?;
    call.subscribe_to_tone().await?;
    let menu = {
        let control = call.control();
        let menu = prompts.menu.clone();
        tokio::spawn(async move { control.play_prompt(vec![menu]).await })
    };
    let Some(key) = wait_for_key(&mut call, menu, Duration::from_secs(wait)).await else {
        return report(Outcome::CallerLeft);
    };
    let outcome = match (key, agent) {
        (Some(Tone::Tone2), Some(agent)) => {
            call.play_prompt(vec![prompts.transfer.clone()]).await?;
            let target = InvitationParticipantInfo::new(IdentitySet::user(agent, None));
            call.transfer(target, None).await?;
            println!("transferring to={agent}");
            Outcome::Transferred
        }
        _ => {
            call.play_prompt(vec![prompts.goodbye.clone()]).await?;
            call.hang_up().await?;
            Outcome::Goodbye
        }
    };
    // The call ends: by the transfer, or by the hang-up.
    while let Some(event) = call.next_event().await {
        if let CallEvent::Terminated(info) = event {
            let (code, subcode) = info.map_or((0, 0), |i| {
                (
                    i.code.get().copied().unwrap_or_default(),
                    i.subcode.get().copied().unwrap_or_default(),
                )
            });
            println!("call ended code={code} subcode={subcode}");
            break;
        }
    }
    report(outcome)
}

fn report(outcome: Outcome) -> Result<Outcome, Error> {
    let word = match outcome {
        Outcome::Transferred => "transferred",
        Outcome::Goodbye => "goodbye",
        Outcome::CallerLeft => "caller_left",
    };
    println!("outcome={word}");
    Ok(outcome)
}

async fn wait_established(call: &mut Call) -> Result<(), BotError> {
    while let Some(event) = call.next_event().await {
        match event {
            CallEvent::StateChanged { to, .. } if to.as_str() == "established" => return Ok(()),
            CallEvent::Terminated(_) => return Err(BotError::CallOver),
            _ => {}
        }
    }
    Err(BotError::CallOver)
}

/// The first key pressed while the menu plays or within `wait` after it, `Some(None)` for
/// none; `None` when the call ended first. A key during the menu cuts it short.
async fn wait_for_key(
    call: &mut Call,
    mut menu: tokio::task::JoinHandle<Result<mediabot::CommsOperation, BotError>>,
    wait: Duration,
) -> Option<Option<Tone>> {
    let mut menu_done = false;
    let deadline = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            event = call.next_event() => match event {
                Some(CallEvent::Tone(info)) => {
                    println!("key tone={}", info.tone.as_char().unwrap_or('?'));
                    if !menu_done {
                        // Barge-in: the caller knows what they want.
                        let _ = call.cancel_media_processing().await;
                    }
                    return Some(Some(info.tone));
                }
                Some(CallEvent::Terminated(_)) | None => return None,
                Some(_) => {}
            },
            result = &mut menu, if !menu_done => {
                menu_done = true;
                if let Ok(Err(e)) = result {
                    println!("menu failed: {e}");
                }
                deadline.as_mut().reset(tokio::time::Instant::now() + wait);
            }
            () = &mut deadline => return Some(None),
        }
    }
}

/// Serves the three prompt files on loopback (read once, here); returns their base URL.
async fn serve_prompts(dir: PathBuf) -> Result<String, Error> {
    use axum::extract::Path;
    use axum::http::StatusCode;
    let mut files = std::collections::HashMap::new();
    for name in ["menu.wav", "goodbye.wav", "transfer.wav"] {
        let bytes = std::fs::read(dir.join(name))
            .map_err(|e| format!("{}: {e}", dir.join(name).display()))?;
        files.insert(name.to_owned(), bytes);
    }
    let files = std::sync::Arc::new(files);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/prompts/{name}",
        axum::routing::get(move |Path(name): Path<String>| {
            let files = files.clone();
            async move { files.get(&name).cloned().ok_or(StatusCode::NOT_FOUND) }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/prompts"))
}
