//! Faults around a working call: throttling at creation, notifications duplicated and out of
//! order, a forged notification, and a stranger knocking on the media endpoint.

use std::time::Duration;

use mediabot::bot::{Bot, CallEvent, CallTarget, LocalSim};
use mediabot::graph_signaling::models::CallState;
use mediabot::graph_sim::faults::SignalingFaults;
use mediabot::graph_sim::scenario::{Scenario, SimUser, Voice};
use mediabot::graph_sim::server::{FORGER_KEY_PEM, sign_notification_token};
use mediabot::graph_sim::service::SimConfig;
use mediabot::media_session::MpUri;
use mediabot::media_transport::protocol::ErrorCode;
use mediabot::media_transport::{ServiceConfig, ServiceError, ServiceSession};

use crate::common::{
    Echo, EchoCall, WAIT, collect_for, echo_call, hang_up, is_state, is_terminated, serial,
    small_engine, wait_for,
};
use test_kit::at_least;

fn with_faults(signaling: SignalingFaults) -> Scenario {
    Scenario {
        seed: 17,
        users: vec![
            SimUser::new("Alice", Voice::Speech),
            SimUser::new("Bob", Voice::Tone { tone_hz: 660.0 }),
        ],
        signaling,
        ..Scenario::default()
    }
}

/// Three 429s with `Retry-After: 1` answer the first create-call attempts. The bot retries
/// (a 429 means the service did not act) and exactly one call is created, which works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_at_creation_creates_exactly_one_working_call() {
    let _turn = serial().await;
    let sim = LocalSim::start(with_faults(SignalingFaults {
        throttle_first: 3,
        retry_after_s: 1,
        ..SignalingFaults::default()
    }))
    .await
    .unwrap();
    let alice = sim.users()[0].clone();
    let EchoCall {
        bot,
        mut call,
        echo,
        mut seen,
    } = echo_call(Bot::builder(sim.target()), &alice).await;
    collect_for(&mut call, &mut seen, Duration::from_secs(3)).await;
    // 150 frames are due in 3 s.
    at_least(
        "mixed_frames_in_3s",
        echo.stats().mixed as f64,
        50.0,
        &"audio flows",
    );
    assert!(
        bot.metrics_text()
            .await
            .contains("mediabot_calls_placed_total 1"),
        "one call placed"
    );
    hang_up(&mut call, &mut seen).await;
    let report = sim.finish().await.unwrap();
    // Every call the service created gets its media requested: one only.
    assert_eq!(report.calls.len(), 1, "{report:?}");
    assert_eq!(report.calls[0].call_id, call.id());
    let p = &report.calls[0].participants[0];
    assert!(p.frames_received > 0 && p.similarity.is_some(), "{p:?}");
}

/// Half the notifications are posted twice and a third held back behind the next. The
/// call's state and roster come out right and every event is seen once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_and_reordered_notifications_leave_state_and_roster_right() {
    let _turn = serial().await;
    let sim = LocalSim::start(with_faults(SignalingFaults {
        notification_duplicate: 0.5,
        notification_reorder: 0.3,
        ..SignalingFaults::default()
    }))
    .await
    .unwrap();
    let (alice, bob) = (sim.users()[0].clone(), sim.users()[1].clone());
    let EchoCall {
        bot: _bot,
        mut call,
        echo: _echo,
        mut seen,
    } = echo_call(Bot::builder(sim.target()), &alice).await;
    call.invite(&bob.id, None).await.expect("invite completes");
    collect_for(&mut call, &mut seen, Duration::from_secs(2)).await;
    hang_up(&mut call, &mut seen).await;
    sim.finish().await.unwrap();

    let states: Vec<&CallState> = seen
        .iter()
        .filter_map(|e| match e {
            CallEvent::StateChanged { to, .. } => Some(to),
            _ => None,
        })
        .collect();
    // Forward only, each state once.
    let mut unique = states.clone();
    unique.dedup();
    assert_eq!(unique, states, "{states:?}");
    assert_eq!(
        states
            .iter()
            .filter(|s| ***s == CallState::Established)
            .count(),
        1,
        "{states:?}"
    );
    let joined: Vec<String> = seen
        .iter()
        .filter_map(|e| match e {
            CallEvent::ParticipantJoined(_, p) => Some(p.identity_label()),
            _ => None,
        })
        // The bot's own entry is on the roster too.
        .filter(|label| label.starts_with("user:"))
        .collect();
    assert_eq!(joined.len(), 2, "Alice and Bob, once each: {joined:?}");
    assert!(joined.iter().any(|l| l.contains(&alice.id)), "{joined:?}");
    assert!(joined.iter().any(|l| l.contains(&bob.id)), "{joined:?}");
    let ops = seen
        .iter()
        .filter(|e| matches!(e, CallEvent::OperationFinished(_)))
        .count();
    assert_eq!(ops, 1, "the invite finishes once");
    assert_eq!(seen.iter().filter(|e| is_terminated(e)).count(), 1);
}

/// A notification signed with a key not in the service's key set, saying the call ended, is
/// refused with 401 and changes nothing; the refusal is counted and on `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_notification_is_refused_and_counted() {
    let _turn = serial().await;
    let sim = LocalSim::start(with_faults(SignalingFaults::default()))
        .await
        .unwrap();
    let alice = sim.users()[0].clone();
    let EchoCall {
        bot,
        mut call,
        echo,
        mut seen,
    } = echo_call(Bot::builder(sim.target()), &alice).await;

    let config = SimConfig::default();
    let token =
        sign_notification_token(FORGER_KEY_PEM, &config.app_id, &config.tenant_id).expect("signed");
    let forged = serde_json::json!({
        "value": [{
            "@odata.type": "#microsoft.graph.commsNotification",
            "changeType": "deleted",
            "resource": format!("/app/calls/{}", call.id()),
            "resourceUrl": format!("/communications/calls/{}", call.id()),
            "resourceData": {
                "@odata.type": "#microsoft.graph.call",
                "state": "terminated",
                "resultInfo": { "code": 200, "subcode": 5001, "message": "forged" }
            }
        }]
    });
    let before = bot.notification_auth_failures();
    let http = reqwest::Client::new();
    let r = http
        .post(bot.callback_url())
        .bearer_auth(token)
        .json(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(bot.notification_auth_failures(), before + 1);
    let metrics = http
        .get(format!("http://{}/metrics", bot.local_addr()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = format!("mediabot_notification_auth_failures_total {}", before + 1);
    assert!(metrics.contains(&line), "{metrics}");

    // The call goes on: no state change, still held, audio still flowing.
    let frames = echo.stats().mixed;
    collect_for(&mut call, &mut seen, Duration::from_secs(1)).await;
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, CallEvent::Terminated(_)) || is_state(e, CallState::Terminated)),
        "{seen:?}"
    );
    assert!(!call.is_ended());
    assert_eq!(bot.active_calls(), 1);
    // 50 frames are due in 1 s.
    at_least(
        "mixed_frames_in_1s_after_forgery",
        (echo.stats().mixed - frames) as f64,
        25.0,
        &"audio goes on",
    );
    hang_up(&mut call, &mut seen).await;
    sim.finish().await.unwrap();
}

/// Someone connects to the bot's mpUri with a media session id it never issued: refused as
/// an unknown session, and the bot's call carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_session_probing_the_media_endpoint_is_refused() {
    let _turn = serial().await;
    let sim = LocalSim::start(with_faults(SignalingFaults::default()))
        .await
        .unwrap();
    let bot = Bot::builder(sim.target())
        .engine(small_engine())
        .build()
        .await
        .unwrap();
    let alice = sim.users()[0].clone();
    let mut call = bot
        .place_call(CallTarget::user(&alice.id, None))
        .await
        .unwrap();
    let echo = Echo::start(&mut call, false);
    let mut seen = Vec::new();
    wait_for(&mut call, &mut seen, WAIT, |e| {
        matches!(e, CallEvent::MediaConnected)
    })
    .await
    .expect("media connected");

    let uri: MpUri = bot.mp_uri().parse().expect("the bot's mpUri");
    let addr = tokio::net::lookup_host((uri.bare_host(), uri.port()))
        .await
        .unwrap()
        .next()
        .unwrap();
    assert!(addr.ip().is_loopback());
    for call_id in [None, Some(uuid::Uuid::new_v4())] {
        let probe = ServiceSession::connect(
            &uri,
            addr,
            uuid::Uuid::new_v4(),
            call_id,
            ServiceConfig::default(),
        )
        .await;
        match probe {
            Err(ServiceError::Refused { code, .. }) => assert_eq!(code, ErrorCode::UnknownSession),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    let frames = echo.stats().mixed;
    collect_for(&mut call, &mut seen, Duration::from_secs(2)).await;
    // 100 frames are due in 2 s.
    at_least(
        "mixed_frames_in_2s_after_probe",
        (echo.stats().mixed - frames) as f64,
        50.0,
        &"the call's audio goes on",
    );
    assert!(
        !seen.iter().any(|e| matches!(
            e,
            CallEvent::MediaEnded(_) | CallEvent::MediaStreamFailed { .. }
        )),
        "{seen:?}"
    );
    hang_up(&mut call, &mut seen).await;
    let report = sim.finish().await.unwrap();
    let c = &report.calls[0];
    assert!(c.media_connected && c.error.is_none(), "{c:?}");
    at_least(
        "echo_similarity",
        c.participants[0].similarity.unwrap_or(0.0),
        0.8,
        c,
    );
}
