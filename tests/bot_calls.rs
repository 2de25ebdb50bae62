//! Call control through the bot API against graph-sim in-process (loopback only): invite and
//! mute in a placed call, the incoming-call handler, a call whose media never connects (what
//! real Microsoft Graph does) ending with a clear error instead of hanging, `/healthz`,
//! `/metrics` and the callback's authentication, and the flags.

use std::time::Duration;

use mediabot::bot::{
    Bot, Call, CallEvent, CallTarget, LocalSim, MediaSettings, PcmFormat, ReceivedAudio,
    RecordingStatus, ServiceEndpoints, Target,
};
use mediabot::crates::audio_pipeline::EngineConfig;
use mediabot::crates::graph_signaling::client::Credential;
use mediabot::crates::graph_signaling::models::CallState;
use mediabot::crates::graph_sim::scenario::Scenario;
use mediabot::crates::graph_sim::server::{ServerOptions, SimServer};
use mediabot::crates::graph_sim::service::SimConfig;
use mediabot::crates::media_transport::protocol::EndReason;

fn small_engine() -> EngineConfig {
    // The tests share two cores with other work.
    EngineConfig {
        send_threads: 1,
        receive_threads: 1,
        ..EngineConfig::default()
    }
}

async fn wait_for(
    call: &mut Call,
    within: Duration,
    what: impl Fn(&CallEvent) -> bool,
) -> Option<CallEvent> {
    tokio::time::timeout(within, async {
        while let Some(e) = call.next_event().await {
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

fn is_state(e: &CallEvent, state: CallState) -> bool {
    matches!(e, CallEvent::StateChanged { to, .. } if *to == state)
}

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_and_mute_in_a_placed_call() {
    let sim = LocalSim::start(Scenario::two_users()).await.unwrap();
    let bot = Bot::builder(sim.target())
        .engine(small_engine())
        .build()
        .await
        .unwrap();
    let (alice, bob) = (sim.users()[0].clone(), sim.users()[1].clone());
    let mut call = bot
        .place_call(CallTarget::user(&alice.id, Some(alice.name)))
        .await
        .unwrap();
    wait_for(&mut call, WAIT, |e| is_state(e, CallState::Established))
        .await
        .expect("established");
    let op = call.invite(&bob.id, Some(bob.name)).await.unwrap();
    assert!(op.client_context.get().is_some(), "{op:?}");
    call.mute().await.unwrap();
    call.unmute().await.unwrap();
    for status in [RecordingStatus::Recording, RecordingStatus::NotRecording] {
        let op = call.update_recording_status(status).await.unwrap();
        assert_eq!(op.kind(), "updateRecordingStatusOperation", "{op:?}");
        assert!(op.is_finished(), "{op:?}");
    }
    assert_eq!(bot.active_calls(), 1);
    call.hang_up().await.unwrap();
    wait_for(&mut call, WAIT, |e| matches!(e, CallEvent::Terminated(_)))
        .await
        .expect("terminated");
    assert_eq!(bot.active_calls(), 0);
    sim.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incoming_call_handler_answers_with_media() {
    let sim = LocalSim::start(Scenario::two_users()).await.unwrap();
    let mut bot = Bot::builder(sim.target())
        .engine(small_engine())
        .audio_format(PcmFormat::Pcm44KStereo)
        .build()
        .await
        .unwrap();
    let (tx, mut answered) = tokio::sync::mpsc::unbounded_channel();
    assert!(bot.answer_incoming_with(move |call| {
        let _ = tx.send(call);
    }));
    let id = sim
        .offer_incoming_call(bot.callback_url(), 0)
        .await
        .expect("offered");
    let mut call = tokio::time::timeout(WAIT, answered.recv())
        .await
        .expect("answered in time")
        .expect("a call");
    assert_eq!(call.id(), id);
    wait_for(&mut call, WAIT, |e| matches!(e, CallEvent::MediaConnected))
        .await
        .expect("media connected");
    // The application's format: 20 ms of 44.1 kHz stereo per frame.
    let mut audio = call.audio_receiver().unwrap();
    let frame = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(ReceivedAudio::Unmixed(f)) = audio.recv().await {
                return f;
            }
        }
    })
    .await
    .expect("the caller's audio");
    assert_eq!(frame.samples().len(), 882 * 2);
    call.hang_up().await.unwrap();
    wait_for(&mut call, WAIT, |e| matches!(e, CallEvent::Terminated(_)))
        .await
        .expect("terminated");
    let report = sim.finish().await.unwrap();
    assert!(report.calls[0].media_connected, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_that_never_connects_ends_the_call_with_a_clear_error() {
    // The sim without its media side: signaling works, nobody connects to the mpUri, as
    // with real Microsoft Graph.
    let config = SimConfig::default();
    let sim = SimServer::start(
        config.clone(),
        Scenario::two_users(),
        ServerOptions::default(),
    )
    .await
    .unwrap();
    let target = Target::Sim(ServiceEndpoints {
        api_url: sim.api_url(),
        token_url: sim.token_url(),
        openid_config_url: sim.openid_config_url(),
        app_id: config.app_id,
        credential: Credential::Secret(config.app_secret),
        tenant_id: config.tenant_id,
    });
    let bot = Bot::builder(target)
        .engine(small_engine())
        .media(MediaSettings {
            connect_timeout: Duration::from_secs(2),
            ..MediaSettings::default()
        })
        .build()
        .await
        .unwrap();
    let user = sim.with_sim(|s, _| s.directory().next().map(|(_, id)| id.to_owned()));
    let mut call = bot
        .place_call(CallTarget::user(user.unwrap(), None))
        .await
        .unwrap();
    let ended = wait_for(&mut call, WAIT, |e| matches!(e, CallEvent::MediaEnded(_)))
        .await
        .expect("media ends instead of hanging");
    let CallEvent::MediaEnded(reason) = ended else {
        unreachable!()
    };
    assert_eq!(reason, EndReason::NeverConnected);
    assert!(reason.to_string().contains("closed"), "{reason}");
    wait_for(&mut call, WAIT, |e| matches!(e, CallEvent::Terminated(_)))
        .await
        .expect("the bot hangs the call up");
}

#[tokio::test]
async fn real_graph_needs_a_public_callback_and_media_host() {
    let target = Target::graph("app", "secret", "tenant");
    let err = Bot::builder(target.clone()).build().await.unwrap_err();
    assert!(err.to_string().contains("callback"), "{err}");
    let err = Bot::builder(target)
        .callback_url("https://bot.example.com/callback")
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("public host"), "{err}");
}

#[test]
fn flags_and_environment_name_the_target_explicitly() {
    use clap::Parser;
    use mediabot::bot::{BotArgs, TargetKind};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bot: BotArgs,
    }
    // No target: refused, never a silent default.
    assert!(Cli::try_parse_from(["bot"]).is_err());
    let cli = Cli::try_parse_from([
        "bot",
        "--target",
        "graph",
        "--app-id",
        "a",
        "--app-secret",
        "s",
        "--tenant-id",
        "t",
        "--media-port-range",
        "40000-40099",
        "--audio-format",
        "48000/2",
    ])
    .unwrap();
    assert_eq!(cli.bot.target, TargetKind::Graph);
    let target = cli.bot.target().unwrap().unwrap();
    assert!(!target.is_sim());
    assert_eq!(target.endpoints().tenant_id, "t");
    assert_eq!(cli.bot.media_port_range, Some(40000..=40099));
    let cli = Cli::try_parse_from(["bot", "--target", "sim"]).unwrap();
    assert!(cli.bot.target().is_err(), "--sim-url is required");
    let cli = Cli::try_parse_from(["bot", "--target", "sim", "--sim-url", "http://127.0.0.1:9/"])
        .unwrap();
    let target = cli.bot.target().unwrap().unwrap();
    assert_eq!(target.endpoints().api_url, "http://127.0.0.1:9/v1.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_metrics_and_callback_auth_over_http() {
    let sim = LocalSim::start(Scenario::two_users()).await.unwrap();
    let bot = Bot::builder(sim.target())
        .engine(small_engine())
        .capacity(1)
        .build()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{}", bot.local_addr());
    let status = |body: serde_json::Value| body["status"].as_str().unwrap_or_default().to_owned();

    let idle: serde_json::Value = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status(idle), "Normal");

    // One call on a bot sized for one: the engine is at capacity.
    let alice = sim.users()[0].clone();
    let mut call = bot
        .place_call(CallTarget::user(&alice.id, None))
        .await
        .unwrap();
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let loaded: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status(loaded.clone()), "HeavilyLoaded", "{loaded}");
    assert_eq!(bot.health(), mediabot::bot::Health::HeavilyLoaded);

    // A notification without the service's token is refused and counted.
    let r = http
        .post(bot.callback_url())
        .body("{\"value\":[]}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("mediabot_notification_auth_failures_total 1"),
        "{text}"
    );
    assert!(text.contains("mediabot_stage_latency_seconds"), "{text}");

    wait_for(&mut call, Duration::from_secs(10), |e| {
        matches!(
            e,
            CallEvent::StateChanged {
                to: CallState::Established,
                ..
            }
        )
    })
    .await
    .expect("established");
    // Once audio flows, the per-stage latencies are real Prometheus histograms: cumulative
    // buckets that end in +Inf and agree with the count.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let decoded = loop {
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let buckets: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with("mediabot_stage_latency_seconds_bucket{stage=\"decode\""))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(text.contains("# TYPE mediabot_stage_latency_seconds histogram"));
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
        let count = text
            .lines()
            .find(|l| l.starts_with("mediabot_stage_latency_seconds_count{stage=\"decode\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .expect("a decode count");
        assert_eq!(buckets.last(), Some(&count));
        if count > 0 || tokio::time::Instant::now() > deadline {
            break count;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        decoded > 0,
        "no frame was decoded after the call was established"
    );
    call.hang_up().await.unwrap();
    wait_for(&mut call, Duration::from_secs(10), |e| {
        matches!(e, CallEvent::Terminated(_))
    })
    .await
    .expect("terminated");
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    let after: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status(after), "Normal");
    drop(call);
    sim.finish().await.unwrap();
}
