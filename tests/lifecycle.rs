//! A bot as a service: readiness, `/calls`, draining with calls in progress, incoming calls
//! refused while draining (and offered again by the service), shutting down, and nothing left
//! of a call once it ended.

use std::time::Duration;

use mediabot::bot::{Bot, BotError, CallEvent, CallTarget, LocalSim, Phase, ReceivedAudio};
use mediabot::crates::audio_pipeline::engine::StreamCost;
use mediabot::crates::audio_pipeline::{EngineConfig, EngineError};
use mediabot::crates::graph_sim::scenario::Scenario;

const WAIT: Duration = Duration::from_secs(10);

fn small_engine() -> EngineConfig {
    EngineConfig {
        send_threads: 1,
        receive_threads: 1,
        realtime_priority: None,
        ..EngineConfig::default()
    }
}

async fn get(bot: &Bot, path: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(format!("http://{}{path}", bot.local_addr()))
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

async fn wait_for(call: &mut mediabot::bot::Call, what: impl Fn(&CallEvent) -> bool) {
    tokio::time::timeout(WAIT, async {
        while let Some(e) = call.next_event().await {
            if what(&e) {
                return;
            }
        }
        panic!("the call's events ended first");
    })
    .await
    .expect("the event came in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_and_calls_describe_the_bot_and_its_calls() {
    let sim = LocalSim::start(Scenario::two_users()).await.unwrap();
    let bot = Bot::builder(sim.target())
        .engine(small_engine())
        .capacity(1)
        .build()
        .await
        .unwrap();
    assert_eq!(
        get(&bot, "/readyz").await,
        (200, serde_json::json!({"status": "ready"}))
    );
    assert_eq!(get(&bot, "/calls").await, (200, serde_json::json!([])));
    let alice = sim.users()[0].clone();
    let mut call = bot
        .place_call(CallTarget::user(&alice.id, None))
        .await
        .unwrap();
    // An echo, so the bot sends too.
    let (mut audio, out) = (call.audio_receiver().unwrap(), call.audio_sender());
    tokio::spawn(async move {
        while let Some(a) = audio.recv().await {
            if let ReceivedAudio::Mixed { frame, .. } = a {
                out.push_frame(&frame);
            }
        }
    });
    wait_for(&mut call, |e| matches!(e, CallEvent::MediaConnected)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, calls) = get(&bot, "/calls").await;
    assert_eq!(status, 200);
    let c = &calls[0];
    assert_eq!(c["call_id"], call.id());
    assert_eq!(c["state"], "established");
    assert_eq!(c["direction"], "outgoing");
    assert_eq!(c["participants"], 2, "the bot and Alice: {c}");
    assert!(c["frames_in"].as_u64().unwrap() > 0, "{c}");
    assert!(c["frames_out"].as_u64().unwrap() > 0, "{c}");
    let started = c["started_at"].as_str().unwrap();
    assert!(
        humantime::parse_rfc3339(started).is_ok(),
        "RFC 3339: {started}"
    );
    // Two calls on a bot sized for one: overloaded, so not ready.
    let bob = sim.users()[1].clone();
    let mut second = bot
        .place_call(CallTarget::user(&bob.id, None))
        .await
        .unwrap();
    assert_eq!(get(&bot, "/readyz").await.0, 503);
    assert!(!bot.is_ready());
    second.hang_up().await.unwrap();
    wait_for(&mut second, |e| matches!(e, CallEvent::Terminated(_))).await;
    assert_eq!(get(&bot, "/readyz").await.0, 200);
    call.hang_up().await.unwrap();
    wait_for(&mut call, |e| matches!(e, CallEvent::Terminated(_))).await;
    sim.finish().await.unwrap();
}

/// Draining: not ready at once; an incoming call is refused with 503 and the service offers it
/// again; the call in progress goes on until the deadline, then the bot hangs it up (the
/// service reports 200/5001, the bot's DELETE) and every call is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_refuses_new_calls_and_hangs_up_at_the_deadline() {
    let sim = LocalSim::start(Scenario::two_users()).await.unwrap();
    let mut bot = Bot::builder(sim.target())
        .engine(small_engine())
        .build()
        .await
        .unwrap();
    let (offered_tx, mut offered) = tokio::sync::mpsc::unbounded_channel();
    assert!(bot.answer_incoming_with(move |call| {
        let _ = offered_tx.send(call);
    }));
    let alice = sim.users()[0].clone();
    let mut call = bot
        .place_call(CallTarget::user(&alice.id, None))
        .await
        .unwrap();
    wait_for(&mut call, |e| matches!(e, CallEvent::MediaConnected)).await;
    let id = call.id().to_owned();

    let bot = std::sync::Arc::new(bot);
    let draining = {
        let bot = bot.clone();
        tokio::spawn(async move { bot.drain(Duration::from_secs(2)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(bot.phase(), Phase::Draining);
    assert_eq!(
        get(&bot, "/readyz").await,
        (503, serde_json::json!({"status": "draining"}))
    );

    // Bob calls meanwhile: refused, and offered again by the service.
    let before = sim.notifier_stats().await.redelivered;
    let offered_id = sim
        .offer_incoming_call(bot.callback_url(), 1)
        .await
        .expect("offered");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        sim.notifier_stats().await.redelivered > before,
        "the refused offer is posted again"
    );
    assert!(
        offered.try_recv().is_err(),
        "no call is answered while draining"
    );

    // The call in progress is still up before the deadline.
    assert_eq!(bot.active_calls(), 1);
    let report = tokio::time::timeout(WAIT * 3, draining)
        .await
        .expect("the drain ends")
        .unwrap();
    assert_eq!(
        (report.calls_at_start, report.hung_up, report.not_released),
        (1, 1, 0)
    );
    assert_eq!(bot.phase(), Phase::Stopped);
    assert_eq!(bot.unreleased_calls(), 0);
    wait_for(&mut call, |e| matches!(e, CallEvent::Terminated(_))).await;
    let media = sim.finish().await.unwrap();
    let ours = media.calls.iter().find(|c| c.call_id == id).unwrap();
    assert_eq!(
        ours.result,
        Some((200, 5001)),
        "hung up by the bot: {ours:?}"
    );
    assert!(media.calls.iter().all(|c| c.call_id != offered_id));
}

/// The engine's budget is known before frames miss: readiness turns off when no further call
/// fits, an incoming call past it is declined as busy at once (not left ringing), placing one
/// fails with a clear error before asking Graph, and a call ending gives the room back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_the_engine_budget_is_refused_at_once() {
    let sim = LocalSim::start(Scenario::two_users()).await.unwrap();
    let mut bot = Bot::builder(sim.target())
        .engine(EngineConfig {
            // A fixed cost, so the budget does not depend on this machine: 10 ms of codec
            // work per call against half of each core's 20 ms: one call per core.
            stream_cost: Some(StreamCost {
                send_us: 8_000,
                recv_us: 2_000,
            }),
            admit_share: 0.5,
            ..small_engine()
        })
        .build()
        .await
        .unwrap();
    let (answered_tx, mut answered) = tokio::sync::mpsc::unbounded_channel();
    assert!(bot.answer_incoming_with(move |call| {
        let _ = answered_tx.send(call);
    }));
    let (status, health) = get(&bot, "/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(health["engine"]["send_us_per_frame"], 8_000, "{health}");
    let fits = health["engine"]["calls_left"].as_u64().unwrap();
    assert!(fits >= 1, "{health}");
    assert_eq!(get(&bot, "/readyz").await.0, 200);

    let mut calls = Vec::new();
    for _ in 0..fits {
        sim.offer_incoming_call(bot.callback_url(), 0)
            .await
            .expect("offered");
        let call = tokio::time::timeout(WAIT, answered.recv())
            .await
            .expect("answered in time")
            .unwrap();
        calls.push(call);
    }
    // Full: not ready, and health says why.
    let (_, health) = get(&bot, "/healthz").await;
    assert_eq!(health["status"], "Overloaded", "{health}");
    assert_eq!(health["engine"]["calls_left"], 0, "{health}");
    assert_eq!(
        get(&bot, "/readyz").await,
        (503, serde_json::json!({"status": "overloaded"}))
    );

    // One more incoming call: declined on the spot.
    let declined = sim
        .offer_incoming_call(bot.callback_url(), 1)
        .await
        .expect("offered");
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while !sim
            .call_state(&declined)
            .await
            .is_some_and(|s| s.is_final())
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "declined within 5 s, not after the answer window"
    );
    assert!(answered.try_recv().is_err());
    let metrics = reqwest::get(format!("http://{}/metrics", bot.local_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"mediabot_calls_declined_total{why="over_capacity"} 1"#),
        "{metrics}"
    );
    // Placing one fails before any request, naming the budget.
    let alice = sim.users()[0].clone();
    match bot.place_call(CallTarget::user(&alice.id, None)).await {
        Err(BotError::Engine(EngineError::OverCapacity { needed_us, .. })) => {
            assert_eq!(needed_us, 10_000)
        }
        other => panic!(
            "expected OverCapacity, got {:?}",
            other.map(|c| c.id().to_owned())
        ),
    }
    assert_eq!(bot.active_calls(), fits as usize);

    // A call that ends gives its room back.
    let mut first = calls.remove(0);
    first.hang_up().await.unwrap();
    wait_for(&mut first, |e| matches!(e, CallEvent::Terminated(_))).await;
    tokio::time::timeout(WAIT, async {
        while get(&bot, "/readyz").await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("ready again once a call ended");
    for mut c in calls {
        c.hang_up().await.unwrap();
        wait_for(&mut c, |e| matches!(e, CallEvent::Terminated(_))).await;
    }
    sim.finish().await.unwrap();
}

/// Calls placed and ended one after another: every per-call structure is released and the
/// process's threads are back to where they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_calls_leave_nothing_behind() {
    let sim = LocalSim::start(Scenario::two_users()).await.unwrap();
    let bot = Bot::builder(sim.target())
        .engine(small_engine())
        .build()
        .await
        .unwrap();
    let alice = sim.users()[0].clone();
    let threads = || {
        std::fs::read_dir("/proc/self/task")
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let pump_threads = || {
        std::fs::read_dir("/proc/self/task")
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|t| {
                        std::fs::read_to_string(t.path().join("comm"))
                            .is_ok_and(|n| n.trim() == "mediabot-send-p")
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    let mut baseline = None;
    for i in 0..200 {
        let mut call = bot
            .place_call(CallTarget::user(&alice.id, None))
            .await
            .unwrap();
        wait_for(
            &mut call,
            |e| matches!(e, CallEvent::StateChanged { to, .. } if to.as_str() == "established"),
        )
        .await;
        if i == 0 {
            // What the end must bring back to zero is held while the call runs.
            tokio::time::timeout(WAIT, async {
                while (bot.engine_calls(), bot.media_sessions()) != (1, 1) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("one call's media held in the engine and the endpoint");
            tokio::time::timeout(WAIT, async {
                while bot.send_routes() != 1 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("the call's packets routed by the pump");
        }
        call.hang_up().await.unwrap();
        wait_for(&mut call, |e| matches!(e, CallEvent::Terminated(_))).await;
        drop(call);
        // Released: its owner is gone with everything it held.
        tokio::time::timeout(WAIT, async {
            while bot.unreleased_calls() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("released");
        tokio::time::timeout(WAIT, async {
            while bot.send_routes() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the call's route left the send pump");
        if i == 9 {
            // Lazily started pools (HTTP, DNS, blocking threads) exist by now.
            baseline = Some(threads());
        }
    }
    assert_eq!(bot.active_calls(), 0);
    assert_eq!(bot.unreleased_calls(), 0);
    assert_eq!(bot.engine_calls(), 0, "the engine holds no call's media");
    assert_eq!(
        bot.media_sessions(),
        0,
        "the endpoint holds no media session"
    );
    assert!(bot.calls().await.is_empty());
    let metrics = bot.metrics_text().await;
    assert!(
        metrics.contains("mediabot_unknown_call_notifications 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mediabot_calls_total{direction=\"outgoing\",outcome=\"completed\"} 200"),
        "{metrics}"
    );
    // Threads come and go with the runtime's blocking pool; none is kept per call, and one
    // pump moves every call's packets (the kernel keeps 15 bytes of a thread's name).
    assert_eq!(pump_threads(), 1);
    let (start, end) = (baseline.unwrap(), threads());
    assert!(end <= start + 2, "threads grew from {start} to {end}");
    sim.finish().await.unwrap();
}

/// Behind a shared public URL: the bot's calls get its instance callback, it takes both its
/// own and the shared callback path, points notifications for another instance at that
/// instance with 302 (without reading them), and refuses an instance id that is no path
/// segment. No call is placed: the public URL is never contacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_shared_public_url_each_instance_keeps_its_own_callback() {
    let sim = LocalSim::start(Scenario::two_users()).await.unwrap();
    let bad = Bot::builder(sim.target())
        .engine(small_engine())
        .instance_id("a/b")
        .public_url("https://bot.example.com")
        .build()
        .await;
    assert!(bad.is_err(), "an instance id with a slash is refused");

    let bot = Bot::builder(sim.target())
        .engine(small_engine())
        .instance_id("1")
        .public_url("https://bot.example.com/")
        .build()
        .await
        .unwrap();
    assert_eq!(
        bot.callback_url(),
        "https://bot.example.com/instances/1/callback"
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |path: &str| {
        http.post(format!("http://{}{path}", bot.local_addr()))
            .header("content-type", "application/json")
            .body(r#"{"value":[]}"#)
            .send()
    };
    // Its own and the shared path are notification endpoints (a token is needed).
    assert_eq!(post("/instances/1/callback").await.unwrap().status(), 401);
    assert_eq!(post("/callback").await.unwrap().status(), 401);
    // Another instance's path: pointed at that instance, unread.
    let r = post("/instances/2/callback").await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        "https://bot.example.com/instances/2/callback"
    );
    assert_eq!(
        post("/instances/x%20y/callback").await.unwrap().status(),
        404
    );
    let metrics = bot.metrics_text().await;
    assert!(
        metrics.contains("mediabot_notifications_redirected_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mediabot_notification_auth_failures_total 2"),
        "{metrics}"
    );
    bot.shutdown().await;
    sim.finish().await.unwrap();
}
