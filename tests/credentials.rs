//! Certificate credentials and legacy-format notifications end to end, through the bot API
//! against graph-sim in-process (loopback only): a bot proving itself with a certificate
//! places a call, one with a key the app never registered gets a clear error, and a call
//! whose first notification comes in the legacy format still establishes.

use std::time::Duration;

use mediabot::bot::{
    Bot, BotError, Call, CallEvent, CallTarget, CertificateCredential, Credential, LocalSim,
    LocalSimOptions,
};
use mediabot::crates::audio_pipeline::EngineConfig;
use mediabot::crates::graph_signaling::models::CallState;
use mediabot::crates::graph_sim::faults::SignalingFaults;
use mediabot::crates::graph_sim::scenario::Scenario;
use mediabot::crates::graph_sim::service::SimConfig;
use test_kit::certs::{TestCertificate, self_signed_rsa};

const WAIT: Duration = Duration::from_secs(10);

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

fn credential(cert: &TestCertificate) -> Credential {
    Credential::Certificate(
        CertificateCredential::from_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes()).unwrap(),
    )
}

/// A sim whose app has `registered` as its certificate.
async fn sim_with_certificate(registered: &TestCertificate) -> LocalSim {
    LocalSim::start_with(
        Scenario::two_users(),
        LocalSimOptions {
            config: SimConfig {
                app_certificate_pem: Some(registered.cert_pem.clone()),
                ..SimConfig::default()
            },
            ..LocalSimOptions::default()
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_with_the_registered_certificate_places_a_call() {
    let cert = self_signed_rsa("bot.sim.test");
    let sim = sim_with_certificate(&cert).await;
    let target = sim.target().with_credential(credential(&cert));
    let shown = format!("{target:?}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    let bot = Bot::builder(target)
        .engine(small_engine())
        .build()
        .await
        .unwrap();
    let alice = sim.users()[0].clone();
    let mut call = bot
        .place_call(CallTarget::user(&alice.id, Some(alice.name)))
        .await
        .expect("a token from the assertion, then the call");
    wait_for(&mut call, WAIT, |e| is_state(e, CallState::Established))
        .await
        .expect("established");
    call.hang_up().await.unwrap();
    wait_for(&mut call, WAIT, |e| matches!(e, CallEvent::Terminated(_)))
        .await
        .expect("terminated");
    sim.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_with_an_unregistered_key_gets_a_clear_error() {
    let registered = self_signed_rsa("bot.sim.test");
    let stranger = self_signed_rsa("elsewhere.test");
    let sim = sim_with_certificate(&registered).await;
    let bot = Bot::builder(sim.target().with_credential(credential(&stranger)))
        .engine(small_engine())
        .build()
        .await
        .unwrap();
    let alice = sim.users()[0].clone();
    let err = bot
        .place_call(CallTarget::user(&alice.id, Some(alice.name)))
        .await
        .expect_err("the token endpoint refuses the assertion");
    assert!(matches!(err, BotError::Graph(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("token request failed"), "{text}");
    assert!(text.contains("401"), "{text}");
    assert!(text.contains("AADSTS700027"), "{text}");
    assert!(text.contains("invalid_client"), "{text}");
    assert_eq!(bot.active_calls(), 0);
    sim.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_establish_when_their_first_notification_comes_in_the_legacy_format() {
    let scenario = Scenario {
        signaling: SignalingFaults {
            legacy_first: true,
            ..SignalingFaults::default()
        },
        ..Scenario::two_users()
    };
    let sim = LocalSim::start(scenario).await.unwrap();
    let mut bot = Bot::builder(sim.target())
        .engine(small_engine())
        .build()
        .await
        .unwrap();

    // An outgoing call: its `establishing` comes in the legacy format first.
    let alice = sim.users()[0].clone();
    let mut call = bot
        .place_call(CallTarget::user(&alice.id, Some(alice.name)))
        .await
        .unwrap();
    wait_for(&mut call, WAIT, |e| is_state(e, CallState::Established))
        .await
        .expect("established");
    assert_eq!(bot.legacy_notifications(), 1);

    // An incoming call: the offer itself comes in the legacy format first, as the real
    // service sends it to a bot it has not heard speak Graph.
    let (tx, mut answered) = tokio::sync::mpsc::unbounded_channel();
    assert!(bot.answer_incoming_with(move |call| {
        let _ = tx.send(call);
    }));
    sim.offer_incoming_call(bot.callback_url(), 1)
        .await
        .expect("offered");
    let mut incoming = tokio::time::timeout(WAIT, answered.recv())
        .await
        .expect("answered in time")
        .expect("a call");
    wait_for(&mut incoming, WAIT, |e| is_state(e, CallState::Established))
        .await
        .expect("the incoming call established");
    assert_eq!(bot.legacy_notifications(), 2);
    let stats = sim.notifier_stats().await;
    assert_eq!(stats.legacy_resent, 2, "{stats:?}");
    assert_eq!(stats.failed, 0, "{stats:?}");

    let metrics = reqwest::get(format!("http://{}/metrics", bot.local_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mediabot_notifications_legacy_total 2"),
        "{metrics}"
    );
    for c in [&mut call, &mut incoming] {
        c.hang_up().await.unwrap();
        wait_for(c, WAIT, |e| matches!(e, CallEvent::Terminated(_)))
            .await
            .expect("terminated");
    }
    sim.finish().await.unwrap();
}
