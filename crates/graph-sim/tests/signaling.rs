//! graph-signaling's client and notification endpoint — a real bot's signaling — against the
//! simulator over HTTP on loopback, and the sim's payloads against the reference shapes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use graph_signaling::auth::{AuthConfig, TokenValidator};
use graph_signaling::build;
use graph_signaling::client::{
    ClientCredentials, Credential, GraphClient, GraphClientConfig, RetryPolicy, TokenProvider,
};
use graph_signaling::models::{CallState, IdentitySet, InvitationParticipantInfo, MediaConfig};
use graph_signaling::notify::{NotificationLimits, pipeline};
use graph_signaling::state::{CallStateMachine, SignalingEvent};
use graph_sim::scenario::Scenario;
use graph_sim::server::{ServerOptions, SimServer};
use graph_sim::service::SimConfig;
use serde_json::Value;
use tokio::sync::mpsc;

const BLOB: &str = include_str!("../../media-session/testdata/documented-blob.json");

struct Bot {
    client: GraphClient,
    callback: String,
    events: mpsc::UnboundedReceiver<(String, SignalingEvent)>,
}

async fn bot(sim: &SimServer, retry: RetryPolicy) -> Bot {
    let config = SimConfig::default();
    let mut auth = AuthConfig::new(&config.app_id);
    auth.openid_config_url = sim.openid_config_url();
    let mut p = pipeline(
        "/callback",
        Arc::new(TokenValidator::new(auth)),
        NotificationLimits::default(),
        64,
        Default::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callback = format!("http://{}/callback", listener.local_addr().unwrap());
    let router = p.router;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let http = reqwest::Client::new();
    let creds = ClientCredentials {
        token_url: sim.token_url(),
        client_id: config.app_id.clone(),
        credential: Credential::secret(config.app_secret.clone()),
        scope: "https://graph.microsoft.com/.default".into(),
    };
    let client = GraphClient::new(
        GraphClientConfig {
            base_url: sim.api_url(),
            retry,
            ..GraphClientConfig::default()
        },
        TokenProvider::client_credentials(creds, http),
    );
    // One state machine per call, as a call owner keeps them; every event goes to the test.
    let (tx, events) = mpsc::unbounded_channel();
    let app_id = config.app_id.clone();
    tokio::spawn(async move {
        let mut calls = std::collections::HashMap::new();
        while let Some(inbound) = p.batches.recv().await {
            for n in &inbound.batch.value {
                let Some(id) = n.call_id() else { continue };
                let call = calls
                    .entry(id.to_owned())
                    .or_insert_with(|| CallStateMachine::new(id, Some(app_id.clone())));
                call.handle_notification(n, std::time::Instant::now());
                while let Some(event) = call.poll_event() {
                    if tx.send((id.to_owned(), event)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    Bot {
        client,
        callback,
        events,
    }
}

fn bot_identity() -> IdentitySet {
    IdentitySet::application(SimConfig::default().app_id, Some("Bot".to_owned()))
}

fn user_id(sim: &SimServer, name: &str) -> String {
    sim.with_sim(|s, _| {
        s.directory()
            .find(|(u, _)| u.name == name)
            .map(|(_, id)| id.to_owned())
            .unwrap()
    })
}

async fn wait_for(bot: &mut Bot, what: impl Fn(&SignalingEvent) -> bool) -> SignalingEvent {
    loop {
        let (_, event) = tokio::time::timeout(Duration::from_secs(10), bot.events.recv())
            .await
            .expect("event in time")
            .expect("event stream open");
        if what(&event) {
            return event;
        }
    }
}

#[tokio::test]
async fn a_throttling_storm_still_creates_the_call_exactly_once() {
    let mut scenario = Scenario::two_users();
    scenario.seed = 3;
    scenario.signaling.throttle = 0.5;
    scenario.signaling.unavailable = 0.2;
    scenario.signaling.retry_after_s = 0;
    let sim = SimServer::start(SimConfig::default(), scenario, ServerOptions::default())
        .await
        .unwrap();
    let retry = RetryPolicy {
        max_attempts: 30,
        ..RetryPolicy::default()
    };
    let mut bot = bot(&sim, retry).await;
    let call = build::p2p_user_call(
        &bot.callback,
        bot_identity(),
        &user_id(&sim, "Alice"),
        Some("Alice".into()),
        MediaConfig::app_hosted(BLOB),
    );
    let created = bot
        .client
        .create_call(&call)
        .await
        .expect("created despite 429/503");
    let id = created.id.get().cloned().unwrap();
    wait_for(&mut bot, |e| {
        matches!(
            e,
            SignalingEvent::StateChanged {
                to: CallState::Established,
                ..
            }
        )
    })
    .await;
    let active: Vec<String> = sim.with_sim(|s, _| s.active_calls().map(str::to_owned).collect());
    assert_eq!(active, [id], "exactly one call exists");
}

#[tokio::test]
async fn invite_resolves_from_its_notification_and_binds_the_new_stream() {
    let sim = SimServer::start(
        SimConfig::default(),
        Scenario::two_users(),
        ServerOptions::default(),
    )
    .await
    .unwrap();
    let mut bot = bot(&sim, RetryPolicy::default()).await;
    let call = build::p2p_user_call(
        &bot.callback,
        bot_identity(),
        &user_id(&sim, "Alice"),
        Some("Alice".into()),
        MediaConfig::app_hosted(BLOB),
    );
    let created = bot.client.create_call(&call).await.unwrap();
    let id = created.id.get().cloned().unwrap();
    wait_for(&mut bot, |e| matches!(e, SignalingEvent::StreamBind(..))).await;
    let bob =
        InvitationParticipantInfo::new(IdentitySet::user(user_id(&sim, "Bob"), Some("Bob".into())));
    bot.client
        .invite(&id, vec![bob], "invite-bob", false)
        .await
        .unwrap();
    let SignalingEvent::OperationFinished(op) = wait_for(&mut bot, |e| {
        matches!(e, SignalingEvent::OperationFinished(op) if op.client_context.as_deref() == Some("invite-bob"))
    })
    .await
    else {
        unreachable!()
    };
    assert!(op.is_finished());
    wait_for(&mut bot, |e| matches!(e, SignalingEvent::StreamBind(..))).await;
    bot.client.hang_up(&id).await.unwrap();
    wait_for(&mut bot, |e| matches!(e, SignalingEvent::Terminated(_))).await;
}

#[tokio::test]
async fn join_by_meeting_id_as_a_guest_and_pstn_calls_are_placed() {
    let sim = SimServer::start(
        SimConfig::default(),
        Scenario::two_users(),
        ServerOptions::default(),
    )
    .await
    .unwrap();
    let mut bot = bot(&sim, RetryPolicy::default()).await;
    let tenant = SimConfig::default().tenant_id;
    let meeting = build::join_meeting_by_id(
        &bot.callback,
        "1234567890",
        Some("pass".into()),
        &tenant,
        MediaConfig::app_hosted(BLOB),
    );
    let meeting = build::as_guest(meeting, "guest-1", "Guest bot");
    bot.client
        .create_call(&meeting)
        .await
        .expect("meeting join");
    let bound = wait_for(&mut bot, |e| matches!(e, SignalingEvent::StreamBind(..))).await;
    assert!(matches!(bound, SignalingEvent::StreamBind(..)));

    // The instance the sim links to the app (another one is refused, as Graph refuses it).
    let instance = SimConfig::default().application_instances[0].id.clone();
    let pstn = build::pstn_call(
        &bot.callback,
        &instance,
        Some("Bot line".into()),
        "+14255550100",
        &tenant,
        MediaConfig::app_hosted(BLOB),
    );
    bot.client.create_call(&pstn).await.expect("PSTN call");
    let calls = sim.with_sim(|s, _| s.active_calls().count());
    assert_eq!(calls, 2);
}

/// Every key path in a JSON value, arrays collapsed (`value[].resourceData.state`).
fn key_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let path = format!("{prefix}.{k}");
                out.insert(path.clone());
                key_paths(child, &path, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                key_paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

fn fixture_keys(name_contains: &str) -> BTreeSet<String> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../graph-signaling/tests/fixtures"
    );
    let mut keys = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains(name_contains) {
            let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            key_paths(&v, "", &mut keys);
        }
    }
    assert!(!keys.is_empty(), "no fixtures for {name_contains}");
    keys
}

#[tokio::test]
async fn the_sims_payloads_use_only_keys_the_reference_shows() {
    let reference = fixture_keys("notification");
    let sim = SimServer::start(
        SimConfig::default(),
        Scenario::two_users(),
        ServerOptions::default(),
    )
    .await
    .unwrap();
    // Capture raw bodies with a bare endpoint.
    let (tx, mut bodies) = mpsc::unbounded_channel::<Value>();
    let router = axum::Router::new().route(
        "/cb",
        axum::routing::post(move |body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
                axum::http::StatusCode::ACCEPTED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callback = format!("http://{}/cb", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let mut bot = bot(&sim, RetryPolicy::default()).await;
    bot.callback = callback;
    let call = build::p2p_user_call(
        &bot.callback,
        bot_identity(),
        &user_id(&sim, "Alice"),
        Some("Alice".into()),
        MediaConfig::app_hosted(BLOB),
    );
    let created = bot.client.create_call(&call).await.unwrap();
    let response_keys = {
        let mut k = BTreeSet::new();
        key_paths(&serde_json::to_value(&created).unwrap(), "", &mut k);
        k
    };
    let call_reference: BTreeSet<String> = fixture_keys("call-response")
        .union(&fixture_keys("call-request"))
        .cloned()
        .collect();
    let extra: Vec<_> = response_keys.difference(&call_reference).collect();
    assert!(
        extra.is_empty(),
        "create-call response keys not in the reference: {extra:?}"
    );

    let mut seen = 0;
    while seen < 3 {
        let body = tokio::time::timeout(Duration::from_secs(10), bodies.recv())
            .await
            .unwrap()
            .unwrap();
        let mut keys = BTreeSet::new();
        key_paths(&body, "", &mut keys);
        let extra: Vec<_> = keys.difference(&reference).collect();
        assert!(
            extra.is_empty(),
            "notification keys not in the reference: {extra:?}\n{body}"
        );
        seen += 1;
    }
}
