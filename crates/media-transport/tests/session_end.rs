//! How a media session ends: hang-up either way, the media path dying, nobody connecting.
#![cfg(feature = "runtime")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use media_session::SourceId;
use media_transport::protocol::{EndReason, ErrorCode, ProtocolConfig, TimeoutKind};
use media_transport::{EndpointConfig, MediaEvent, ServiceConfig, ServiceEvent};

async fn connected() -> (Call, media_transport::ServiceSession) {
    let mut bot = bot(EndpointConfig::default()).await;
    let mut svc = service(&bot, ServiceConfig::default()).await;
    let p = svc.add_participant(SourceId(10)).await.unwrap();
    svc.negotiate().await.unwrap();
    tokio::spawn(async move {
        let _ = play(p, tone_packets(440.0, 500)).await;
    });
    let ev = wait_event(&mut bot.call, Duration::from_secs(5), |e| {
        matches!(e, MediaEvent::MediaConnected)
    })
    .await;
    assert!(ev.is_some(), "media connects");
    (bot, svc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_hang_up_ends_the_session_within_two_seconds() {
    let (mut bot, mut svc) = connected().await;
    let t = Instant::now();
    svc.hang_up("call over").await.unwrap();
    let ev = wait_event(&mut bot.call, Duration::from_secs(2), |e| {
        matches!(e, MediaEvent::Ended(_))
    })
    .await;
    assert_eq!(
        ev,
        Some(MediaEvent::Ended(EndReason::HangUpByService {
            reason: "call over".into()
        }))
    );
    test_kit::at_most("hang_up_to_end_s", t.elapsed().as_secs_f64(), 2.0, &ev);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_hang_up_reaches_the_service() {
    let (mut bot, mut svc) = connected().await;
    bot.call.hang_up("bot leaves").unwrap();
    let ev = svc
        .wait_for(Duration::from_secs(2), |e| {
            matches!(e, ServiceEvent::HungUp { .. })
        })
        .await;
    assert_eq!(
        ev,
        Some(ServiceEvent::HungUp {
            reason: "bot leaves".into()
        })
    );
    let ev = wait_event(&mut bot.call, Duration::from_secs(2), |e| {
        matches!(e, MediaEvent::Ended(_))
    })
    .await;
    assert!(matches!(
        ev,
        Some(MediaEvent::Ended(EndReason::HangUpByBot { .. }))
    ));
    // After the end the bot's send path is closed.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match bot.call.send_opus(bytes::Bytes::from_static(&[0xf8])) {
            Err(media_transport::CallError::Ended) => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("send path still open after the end: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_path_loss_ends_the_session_promptly() {
    let (mut bot, mut svc) = connected().await;
    let t = Instant::now();
    // The service's media stack vanishes without a word on the WebSocket.
    svc.drop_media_silently().await;
    // ICE reports the silence as an interruption after 3 s and as a failure 5 s later
    // (`WebRtcConfig`); only the failure ends the session.
    let ev = wait_event(&mut bot.call, Duration::from_secs(15), |e| {
        matches!(e, MediaEvent::Ended(_))
    })
    .await;
    let Some(MediaEvent::Ended(EndReason::MediaFailed { detail })) = ev else {
        panic!("expected a media failure, got {ev:?}")
    };
    assert!(
        detail.contains("failed") || detail.contains("closed"),
        "{detail}"
    );
    let after = t.elapsed().as_secs_f64();
    assert!(
        after >= 7.0,
        "ended {after:.1} s after the loss: before ICE failed"
    );
    test_kit::at_most("media_loss_to_end_s", after, 12.0, &detail);
    // The service is told with an error code.
    let ev = svc
        .wait_for(Duration::from_secs(2), |e| {
            matches!(e, ServiceEvent::Error { .. })
        })
        .await;
    assert!(
        matches!(
            ev,
            Some(ServiceEvent::Error {
                code: ErrorCode::MediaFailed,
                ..
            })
        ),
        "{ev:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_nobody_connects_for_ends_naming_the_closed_protocol() {
    let config = EndpointConfig {
        protocol: ProtocolConfig {
            pending_timeout: Duration::from_millis(300),
            ..ProtocolConfig::default()
        },
        ..EndpointConfig::default()
    };
    let mut bot = bot(config).await;
    let ev = wait_event(&mut bot.call, Duration::from_secs(5), |e| {
        matches!(e, MediaEvent::Ended(_))
    })
    .await;
    assert_eq!(ev, Some(MediaEvent::Ended(EndReason::NeverConnected)));
    let text = EndReason::NeverConnected.to_string();
    assert!(
        text.contains("closed protocol") && text.contains("Microsoft"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_offer_after_accept_times_out() {
    let config = EndpointConfig {
        protocol: ProtocolConfig {
            first_offer_timeout: Duration::from_millis(300),
            ..ProtocolConfig::default()
        },
        ..EndpointConfig::default()
    };
    let mut bot = bot(config).await;
    let mut svc = service(&bot, ServiceConfig::default()).await;
    let ev = wait_event(&mut bot.call, Duration::from_secs(5), |e| {
        matches!(e, MediaEvent::Ended(_))
    })
    .await;
    assert_eq!(
        ev,
        Some(MediaEvent::Ended(EndReason::Timeout(
            TimeoutKind::FirstOffer
        )))
    );
    let ev = svc
        .wait_for(Duration::from_secs(2), |e| {
            matches!(e, ServiceEvent::Error { .. })
        })
        .await;
    assert!(matches!(
        ev,
        Some(ServiceEvent::Error {
            code: ErrorCode::Timeout,
            ..
        })
    ));
}
