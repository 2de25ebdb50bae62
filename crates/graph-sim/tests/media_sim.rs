//! The media side driven by the real simulator over HTTP, the way the demo runs it: a bot places
//! a group call with app-hosted media, the sim's events start the media side, and a mixing echo
//! bot on 127.0.0.1 plays everyone back.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use graph_sim::media::{MediaOptions, MediaSide};
use graph_sim::scenario::Scenario;
use graph_sim::server::{ServerOptions, SimServer};
use graph_sim::service::{SimConfig, SimEvent};
use media_session::MediaSession;
use media_transport::{ChannelSink, EndpointConfig, MediaEndpoint};
use serde_json::{Value, json};

/// A callback that accepts every notification (this test is about media).
async fn callback() -> String {
    let router = axum::Router::new().route(
        "/callback",
        axum::routing::post(|| async { StatusCode::ACCEPTED }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/callback", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)] // the measured figures go to the test log
async fn a_simulated_group_call_is_played_to_a_mixing_echo_bot_and_measured() {
    // The bot's media processor: decodes every participant, mixes each 20 ms, sends it back.
    let endpoint = MediaEndpoint::bind(EndpointConfig::default())
        .await
        .unwrap();
    let session = MediaSession::builder(endpoint.mp_uri().clone())
        .build()
        .unwrap();
    let (sink, audio) = ChannelSink::new(4096);
    let bot_call = endpoint.register(&session, Arc::new(sink)).unwrap();
    let out = bot_call.audio_sender();
    let echo = common::spawn_mixing_echo(audio, out, true);

    // The simulator with its default two users (speech and a 440 Hz tone).
    let scenario = Scenario::two_users();
    let mut sim = SimServer::start(
        SimConfig::default(),
        scenario.clone(),
        ServerOptions::default(),
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let config = SimConfig::default();
    let token: Value = http
        .post(sim.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", config.app_id.as_str()),
            ("client_secret", config.app_secret.as_str()),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = token["access_token"].as_str().unwrap().to_owned();
    let targets: Vec<Value> = sim.with_sim(|s, _| {
        s.directory()
            .map(|(u, id)| json!({"identity": {"user": {"id": id, "displayName": u.name}}}))
            .collect()
    });
    let body = json!({
        "@odata.type": "#microsoft.graph.call",
        "callbackUri": callback().await,
        "targets": targets,
        "requestedModalities": ["audio"],
        "mediaConfig": {
            "@odata.type": "#microsoft.graph.appHostedMediaConfig",
            "blob": session.blob(),
        },
    });
    let r = http
        .post(format!("{}/communications/calls", sim.api_url()))
        .bearer_auth(&access)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let call: Value = r.json().await.unwrap();
    let call_id = call["id"].as_str().unwrap().to_owned();

    // The demo's loop: every event of the sim goes to the media side.
    let mut media = MediaSide::new(MediaOptions::for_scenario(&scenario));
    let talk_until = tokio::time::Instant::now() + Duration::from_secs(8);
    let mut sources = 0;
    let mut hung_up = false;
    loop {
        let deadline = if hung_up {
            tokio::time::Instant::now() + Duration::from_secs(10)
        } else {
            talk_until
        };
        match tokio::time::timeout_at(deadline, sim.next_event()).await {
            Ok(Some(event)) => {
                sources += usize::from(matches!(event, SimEvent::SourceAdded { .. }));
                let ended = matches!(event, SimEvent::Ended { .. });
                media.handle_event(event).unwrap();
                if ended {
                    break;
                }
            }
            Ok(None) => break,
            Err(_) if !hung_up => {
                // Enough talking: the bot hangs up, and the sim ends the call.
                hung_up = true;
                let r = http
                    .delete(format!("{}/communications/calls/{call_id}", sim.api_url()))
                    .bearer_auth(&access)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 204);
            }
            Err(_) => panic!("no Ended event after the hang-up"),
        }
    }
    assert_eq!(sources, 2);
    assert!(media.wait_ended(&call_id, Duration::from_secs(10)).await);
    let report = media.shutdown().await;
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    echo.abort();

    let call = &report.calls[0];
    assert!(call.media_connected && call.error.is_none(), "{call:?}");
    assert_eq!(call.participants.len(), 2);
    for p in &call.participants {
        let who = &p.name;
        test_kit::at_least(
            &format!("{who}_frames_sent"),
            p.frames_sent as f64,
            300.0,
            p,
        );
        test_kit::at_least(
            &format!("{who}_frames_received"),
            p.frames_received as f64,
            300.0,
            p,
        );
        let d = p.echo_delay_ms_p50.unwrap_or_else(|| panic!("{p:?}"));
        test_kit::at_most(&format!("{who}_echo_delay_ms_p50"), d, 300.0, p);
        test_kit::at_least(
            &format!("{who}_similarity"),
            p.similarity.unwrap_or(0.0),
            0.3,
            p,
        );
    }
    assert!(report.totals.echo_delay_ms_p95 >= report.totals.echo_delay_ms_p50);
}
