//! The simulator over real HTTP on loopback: tokens, a call, and notifications that a bot's own
//! validator accepts — and a forged one that it refuses.

use std::sync::Arc;
use std::time::Duration;

use graph_signaling::auth::{AuthConfig, TokenValidator};
use graph_signaling::models::CommsNotifications;
use graph_signaling::notify::server::{Inbound, NotificationLimits, notification_router};
use graph_sim::scenario::Scenario;
use graph_sim::server::{FORGER_KEY_PEM, ServerOptions, SimServer, sign_notification_token};
use graph_sim::service::{PersonAction, SimConfig, SimEvent};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const BLOB: &str = include_str!("../../media-session/testdata/documented-blob.json");

/// A bot's notification endpoint on loopback, validating against the sim's keys.
async fn bot_endpoint(openid: String, app_id: &str) -> (String, mpsc::Receiver<Inbound>) {
    let mut auth = AuthConfig::new(app_id);
    auth.openid_config_url = openid;
    let validator = Arc::new(TokenValidator::new(auth));
    let (tx, rx) = mpsc::channel(64);
    let router = notification_router(
        "/callback",
        validator,
        tx,
        NotificationLimits::default(),
        Default::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/callback", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (url, rx)
}

async fn token(http: &reqwest::Client, sim: &SimServer, secret: &str) -> (u16, Value) {
    let config = SimConfig::default();
    let r = http
        .post(sim.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", config.app_id.as_str()),
            ("client_secret", secret),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Places a call from the app to the scenario's Alice, with app-hosted media.
async fn place_call_to_alice(
    http: &reqwest::Client,
    sim: &SimServer,
    access: &str,
    callback: &str,
) -> reqwest::Response {
    let alice = sim.with_sim(|s, _| {
        s.directory()
            .find(|(u, _)| u.name == "Alice")
            .map(|(_, id)| id.to_owned())
            .unwrap()
    });
    let body = json!({
        "@odata.type": "#microsoft.graph.call",
        "callbackUri": callback,
        "targets": [{"identity": {"user": {"id": alice, "displayName": "Alice"}}}],
        "requestedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.appHostedMediaConfig", "blob": BLOB},
    });
    http.post(format!("{}/communications/calls", sim.api_url()))
        .bearer_auth(access)
        .header("client-request-id", "test-123")
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_call_over_http_notifies_the_bot_with_valid_tokens() {
    let config = SimConfig::default();
    let app_id = config.app_id.clone();
    let mut sim = SimServer::start(config, Scenario::two_users(), ServerOptions::default())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let (callback, mut inbox) = bot_endpoint(sim.openid_config_url(), &app_id).await;

    let (status, wrong) = token(&http, &sim, "wrong-secret").await;
    assert_eq!(status, 401);
    assert_eq!(wrong["error"], "invalid_client");
    let (status, good) = token(&http, &sim, "sim-secret").await;
    assert_eq!(status, 200);
    let access = good["access_token"].as_str().unwrap().to_owned();

    let r = place_call_to_alice(&http, &sim, &access, &callback).await;
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(r.headers()["client-request-id"], "test-123");
    assert!(r.headers().contains_key("request-id"));
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let call: Value = r.json().await.unwrap();
    let id = call["id"].as_str().unwrap();
    assert!(location.ends_with(&format!("/communications/calls/{id}")));

    // establishing, established, roster: all authenticated by the bot's validator.
    let mut states = Vec::new();
    let mut roster_seen = false;
    while !(roster_seen && states.len() >= 2) {
        let inbound = tokio::time::timeout(Duration::from_secs(10), inbox.recv())
            .await
            .expect("notifications arrive")
            .unwrap();
        assert!(!inbound.caller.tenant_id.is_empty());
        for n in &inbound.batch.value {
            let raw = serde_json::to_value(n).unwrap();
            if let Some(state) = raw["resourceData"]["state"].as_str() {
                states.push(state.to_owned());
            }
            if n.resource_url.ends_with("/participants") {
                roster_seen = true;
            }
        }
    }
    assert_eq!(states, ["establishing", "established"]);
    let mut media_requested = false;
    while let Some(e) = sim.try_event() {
        media_requested |= matches!(e, SimEvent::MediaRequested { .. });
    }
    assert!(media_requested);

    let r = http
        .delete(format!("{}/communications/calls/{id}", sim.api_url()))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let ended = tokio::time::timeout(Duration::from_secs(10), inbox.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.batch.value[0].change_type.as_str(), "deleted");
    // The bot queues a batch before its 202 reaches the sim, so the count may trail briefly.
    for _ in 0..100 {
        if sim.notifier_stats().delivered >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        sim.notifier_stats().delivered >= 4,
        "{:?}",
        sim.notifier_stats()
    );
    assert_eq!(sim.notifier_stats().failed, 0);

    // A forged notification, signed with a key the sim never published, is refused.
    let forged = sign_notification_token(FORGER_KEY_PEM, &app_id, "tenant").unwrap();
    let batch: CommsNotifications = ended.batch.clone();
    let r = http
        .post(&callback)
        .bearer_auth(forged)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn api_requires_a_token_and_refuses_remote_callbacks() {
    let sim = SimServer::start(
        SimConfig::default(),
        Scenario::two_users(),
        ServerOptions::default(),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/communications/calls/x", sim.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");

    let (_, good) = token(&http, &sim, "sim-secret").await;
    let access = good["access_token"].as_str().unwrap();
    let body = json!({
        "callbackUri": "https://bot.example.com/callback",
        "targets": [{"identity": {"user": {"id": "x"}}}],
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
    });
    let r = http
        .post(format!("{}/communications/calls", sim.api_url()))
        .bearer_auth(access)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let jwks: Value = http
        .get(sim.openid_config_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        jwks["jwks_uri"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
}

/// A task that sees a call end through the core (as the load generator does) and then drains
/// the events must get that call's `Ended`, even if the notifier has not run since.
#[tokio::test(flavor = "current_thread")]
async fn an_end_seen_in_the_core_is_among_the_events_at_once() {
    let config = SimConfig::default();
    let app_id = config.app_id.clone();
    let mut sim = SimServer::start(config, Scenario::two_users(), ServerOptions::default())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let (callback, _inbox) = bot_endpoint(sim.openid_config_url(), &app_id).await;
    let (_, good) = token(&http, &sim, "sim-secret").await;
    let access = good["access_token"].as_str().unwrap().to_owned();
    let r = place_call_to_alice(&http, &sim, &access, &callback).await;
    let call: Value = r.json().await.unwrap();
    let id = call["id"].as_str().unwrap().to_owned();
    let mut alice = None;
    for _ in 0..250 {
        alice = sim.with_sim(|s, _| {
            s.roster(&id)
                .and_then(|r| r.into_iter().find(|e| !e.bot).map(|e| e.source_id))
        });
        if alice.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let alice = alice.expect("Alice joined");
    while sim.try_event().is_some() {}

    // No await from here on: on this single-threaded runtime the notifier cannot run.
    sim.with_sim(|s, now| {
        s.handle_person(
            now,
            PersonAction::Leave {
                call_id: &id,
                source_id: alice,
            },
        )
    })
    .unwrap();
    assert!(
        sim.with_sim(|s, _| s.call_state(&id))
            .is_some_and(|s| s.is_final())
    );
    let mut events = Vec::new();
    while let Some(e) = sim.try_event() {
        events.push(e);
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SimEvent::Ended { call_id, .. } if *call_id == id)),
        "{events:?}"
    );
}
