//! `mediabot sim`: run the Graph calling emulator on its own, for a bot under development.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use graph_sim::media::{MediaOptions, MediaSide};
use graph_sim::scenario::Scenario;
use graph_sim::server::{ServerOptions, SimServer};
use graph_sim::service::{Caller, PersonAction, SimConfig, SimEvent};
use graph_sim::softphone::{Softphone, SoftphoneOptions};

use super::print_out;

mod load;

#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// Scenario file (TOML or JSON): simulated users, impairments, faults. Default: two users.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The bot's application id the sim accepts.
    #[arg(long, env = "MEDIABOT_APP_ID")]
    app_id: Option<String>,
    /// The bot's client secret the sim accepts.
    #[arg(long, env = "MEDIABOT_APP_SECRET", hide_env_values = true)]
    app_secret: Option<String>,
    /// A certificate (PEM file) registered with the app: the token endpoint then also accepts
    /// client assertions signed with its private key (a bot's --app-certificate).
    #[arg(long, env = "MEDIABOT_APP_CERTIFICATE", value_name = "PEM")]
    app_certificate: Option<PathBuf>,
    /// Offer an incoming call from the scenario's first user to this callback URL, once started
    /// (with --incoming-calls: a stream of them).
    #[arg(long, value_name = "URL")]
    offer_incoming: Option<String>,
    /// Offer this many incoming calls, one every --incoming-every, each from a simulated user
    /// who talks and hangs up after --call-seconds; the sim exits once every call ended.
    #[arg(long, value_name = "N", requires = "offer_incoming")]
    incoming_calls: Option<u32>,
    /// Milliseconds between two offers.
    #[arg(long, value_name = "MS", default_value = "1000")]
    incoming_every: u64,
    /// Milliseconds before the first offer (so the bots can start).
    #[arg(long, value_name = "MS", default_value = "0")]
    incoming_delay: u64,
    /// How long each caller stays once the call is established.
    #[arg(long, value_name = "SECONDS", default_value = "5")]
    call_seconds: f64,
    /// With --incoming-calls: print one JSON summary on stdout when done (and nothing else
    /// there).
    #[arg(long)]
    json: bool,
    /// Post notifications to callback URLs outside loopback.
    #[arg(long)]
    allow_remote_callbacks: bool,
    /// Connect media to mpUri hosts outside loopback.
    #[arg(long)]
    allow_remote_media: bool,
    /// Write what each bot sends to `<call id>.wav` in this folder.
    #[arg(long, value_name = "DIR")]
    record_dir: Option<PathBuf>,
    /// Stop after this many seconds (default: run until interrupted).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<u64>,
}

pub(crate) fn run(args: SimArgs) -> Result<(), String> {
    let scenario = match &args.scenario {
        Some(path) => {
            let text = super::read_input(&path.to_string_lossy())?;
            Scenario::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Scenario::two_users(),
    };
    let mut config = SimConfig::default();
    if let Some(id) = args.app_id.clone() {
        config.app_id = id;
    }
    if let Some(secret) = args.app_secret.clone() {
        config.app_secret = secret;
    }
    if let Some(path) = &args.app_certificate {
        let pem = super::read_input(&path.to_string_lossy())?;
        graph_sim::service::check_certificate(&pem)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        config.app_certificate_pem = Some(pem);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(serve(args, config, scenario))
}

async fn serve(args: SimArgs, config: SimConfig, scenario: Scenario) -> Result<(), String> {
    // The softphone page is served on loopback only: its WebRTC peers bind 127.0.0.1.
    let softphone = args.listen.ip().is_loopback().then(|| {
        Softphone::new(SoftphoneOptions {
            bot_callback_url: args.offer_incoming.clone(),
            ..SoftphoneOptions::default()
        })
    });
    let options = ServerOptions {
        bind: args.listen,
        allow_remote_callbacks: args.allow_remote_callbacks,
        softphone: softphone.clone(),
        ..ServerOptions::default()
    };
    let (app_id, secret, tenant) = (
        config.app_id.clone(),
        config.app_secret.clone(),
        config.tenant_id.clone(),
    );
    let certificate = match &args.app_certificate {
        Some(path) => format!("  app certificate      {}\n", path.display()),
        None => String::new(),
    };
    let mut sim = SimServer::start(config, scenario.clone(), options)
        .await
        .map_err(|e| e.to_string())?;
    let mut media = MediaSide::new(MediaOptions {
        allow_remote_media: args.allow_remote_media,
        record_dir: args.record_dir.clone(),
        // Relative WAV voices are found next to the scenario file.
        voice_dir: args
            .scenario
            .as_ref()
            .and_then(|p| p.parent().map(PathBuf::from)),
        softphone,
        recordings: Some(sim.recordings()),
        ..MediaOptions::for_scenario(&scenario)
    });
    let mut banner = format!(
        "graph-sim listening on http://{}\n  Graph API base URL   {}\n  token endpoint       {}\n  OpenID configuration {}\n  app id               {app_id}\n  app secret           {secret}\n{certificate}  tenant id            {tenant}\n  simulated users:\n",
        sim.addr(),
        sim.api_url(),
        sim.token_url(),
        sim.openid_config_url(),
    );
    let users: Vec<String> = sim.with_sim(|s, _| {
        s.directory()
            .map(|(u, id)| format!("    {:<20} {:?} id {id}\n", u.name, u.identity))
            .collect()
    });
    banner.extend(users);
    if let Some(url) = sim.softphone_url() {
        banner.push_str(&format!(
            "  softphone            {url}  (join a call from a browser)\n"
        ));
    }
    let quiet = args.json;
    let out = |text: &str| -> Result<(), String> {
        if quiet {
            eprint!("{text}");
            Ok(())
        } else {
            print_out(text)
        }
    };
    out(&banner)?;
    let load = match (&args.offer_incoming, args.incoming_calls) {
        (Some(callback), Some(n)) => Some(tokio::spawn(load::offer(
            sim.handle(),
            load::Plan {
                callback: callback.clone(),
                calls: n,
                every: Duration::from_millis(args.incoming_every.max(1)),
                delay: Duration::from_millis(args.incoming_delay),
                stay: Duration::from_secs_f64(args.call_seconds.max(0.0)),
            },
        ))),
        _ => None,
    };
    if let (Some(callback), None) = (&args.offer_incoming, args.incoming_calls) {
        let action = PersonAction::CallBot {
            callback_uri: callback,
            caller: Caller::ScenarioUser(0),
        };
        match sim.with_sim(|s, now| s.handle_person(now, action)) {
            Ok(offered) => out(&format!(
                "offered incoming call {} to {callback}\n",
                offered.call_id
            ))?,
            Err(_) => return Err("the scenario has no user to place the incoming call".into()),
        }
    }
    let stop = async {
        match args.duration {
            Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
            None => {
                // If signals cannot be watched, run until killed.
                if tokio::signal::ctrl_c().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    };
    tokio::pin!(stop);
    let load_done = async {
        match load {
            Some(task) => task.await.ok(),
            None => std::future::pending().await,
        }
    };
    tokio::pin!(load_done);
    let mut offered = None;
    loop {
        tokio::select! {
            () = &mut stop => break,
            calls = &mut load_done => {
                offered = calls;
                break;
            }
            event = sim.next_event() => match event {
                Some(e) => {
                    out(&format!("{}\n", describe(&e)))?;
                    if let Err(err) = media.handle_event(e) {
                        out(&format!("media: {err}\n"))?;
                    }
                }
                None => break,
            },
        }
    }
    // Events already queued (the last calls' ends) still reach the media side.
    while let Some(e) = sim.try_event() {
        let _ = media.handle_event(e);
    }
    let report = media.shutdown().await;
    if let Some(calls) = offered {
        let summary = load::summary(&sim.handle(), &calls, &report);
        let ok = summary["ok"] == true;
        if args.json {
            print_out(&format!("{summary}\n"))?;
        } else {
            print_out(&format!(
                "{}\n",
                serde_json::to_string_pretty(&summary).unwrap_or_default()
            ))?;
        }
        return if ok {
            Ok(())
        } else {
            Err(
                "not every offered call was answered, carried audio both ways and ended cleanly"
                    .into(),
            )
        };
    }
    for call in &report.calls {
        for p in &call.participants {
            print_out(&format!(
                "  {:<16} source {:<3} sent {:>6} frames, bot frames received {:>6}, echo delay p50 {}, similarity {}\n",
                p.name,
                p.source_id,
                p.frames_sent,
                p.frames_received,
                p.echo_delay_ms_p50
                    .map_or("-".into(), |d| format!("{d:.0} ms")),
                p.similarity.map_or("-".into(), |s| format!("{s:.2}")),
            ))?;
        }
    }
    let stats = sim.notifier_stats();
    print_out(&format!(
        "graph-sim stopping: {} notifications delivered, {} failed\n",
        stats.delivered, stats.failed
    ))
}

fn describe(event: &SimEvent) -> String {
    match event {
        SimEvent::MediaRequested { call_id, blob } => {
            format!("call {call_id}: app-hosted media at {}", blob.mp_uri)
        }
        SimEvent::SourceAdded {
            call_id,
            name,
            source_id,
            ..
        } => format!("call {call_id}: {name} joined as source {source_id}"),
        SimEvent::SourceRemoved { call_id, source_id } => {
            format!("call {call_id}: source {source_id} left")
        }
        SimEvent::StateChanged { call_id, state } => format!("call {call_id}: {state}"),
        SimEvent::Ended {
            call_id,
            code,
            subcode,
            end,
        } => format!(
            "call {call_id}: ended by the {} {code}/{subcode}",
            end.ended_by()
        ),
        other => format!("{other:?}"),
    }
}
