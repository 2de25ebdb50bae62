//! Faults around a working call on real sockets: a forged notification, and a stranger
//! knocking on the media endpoint. (Throttling and duplicated or reordered notifications are
//! covered on made-up time in `tests/harness`.)

use std::time::Duration;

use mediabot::bot::{Bot, CallEvent, CallTarget, LocalSim};
use mediabot::crates::graph_signaling::models::CallState;
use mediabot::crates::graph_sim::faults::SignalingFaults;
use mediabot::crates::graph_sim::scenario::{Scenario, SimUser, Voice};
use mediabot::crates::graph_sim::server::{FORGER_KEY_PEM, sign_notification_token};
use mediabot::crates::graph_sim::service::SimConfig;
use mediabot::crates::media_session::MpUri;
use mediabot::crates::media_transport::protocol::ErrorCode;
use mediabot::crates::media_transport::{ServiceConfig, ServiceError, ServiceSession};

use crate::common::{
    Echo, EchoCall, WAIT, collect_for, echo_call, hang_up, is_state, serial, small_engine, wait_for,
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
