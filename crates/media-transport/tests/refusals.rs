//! Connections the endpoint must refuse, and offers it must refuse while changing nothing.
#![cfg(feature = "runtime")]

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use media_session::SourceId;
use media_transport::protocol::{BotMessage, ErrorCode, MAX_MESSAGE_BYTES, ServiceMessage};
use media_transport::service::open_websocket;
use media_transport::{EndpointConfig, MediaEvent, ServiceConfig, ServiceError, ServiceSession};
use tokio_tungstenite::tungstenite::Message;

async fn connect_with(
    call: &Call,
    session: uuid::Uuid,
    call_id: Option<uuid::Uuid>,
) -> Result<ServiceSession, ServiceError> {
    ServiceSession::connect(
        call.endpoint.mp_uri(),
        call.endpoint.local_addr(),
        session,
        call_id,
        ServiceConfig::default(),
    )
    .await
}

fn refused_with(r: Result<ServiceSession, ServiceError>) -> ErrorCode {
    match r {
        Err(ServiceError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_used_and_mismatched_sessions_are_refused() {
    let mut bot = bot(EndpointConfig::default()).await;
    let id = bot.session.media_session_id();
    let call_id = bot.session.call_id();

    let unknown = connect_with(&bot, uuid::Uuid::new_v4(), None).await;
    assert_eq!(refused_with(unknown), ErrorCode::UnknownSession);
    let mismatch = connect_with(&bot, id, Some(uuid::Uuid::new_v4())).await;
    assert_eq!(refused_with(mismatch), ErrorCode::CallMismatch);

    // The refusals changed nothing: the real service still gets in, once.
    let _svc = connect_with(&bot, id, call_id).await.unwrap();
    let again = connect_with(&bot, id, call_id).await;
    assert_eq!(refused_with(again), ErrorCode::SessionInUse);
    let ev = wait_event(&mut bot.call, Duration::from_secs(5), |e| {
        matches!(e, MediaEvent::Accepted { .. })
    })
    .await;
    assert!(ev.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_path_and_malformed_first_messages_are_refused() {
    let bot = bot(EndpointConfig::default()).await;
    // Another path: the WebSocket handshake itself is refused.
    let tcp = tokio::net::TcpStream::connect(bot.endpoint.local_addr())
        .await
        .unwrap();
    let url = format!("ws://127.0.0.1:{}/Other", bot.endpoint.local_addr().port());
    assert!(tokio_tungstenite::client_async(url, tcp).await.is_err());

    for (text, code) in [
        ("not json".to_owned(), ErrorCode::BadMessage),
        ("x".repeat(MAX_MESSAGE_BYTES + 1), ErrorCode::TooLarge),
        (
            ServiceMessage::Offer {
                seq: 1,
                sdp: "v=0".into(),
            }
            .to_json(),
            ErrorCode::UnexpectedMessage,
        ),
    ] {
        let mut ws = open_websocket(bot.endpoint.local_addr(), "127.0.0.1", None)
            .await
            .unwrap();
        ws.send(Message::text(text)).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Message::Text(t) = reply else {
            panic!("{reply:?}")
        };
        let Ok(BotMessage::Error { code: got, .. }) = BotMessage::parse(t.as_str()) else {
            panic!("{t}")
        };
        assert_eq!(got, code);
    }
    // Still pending after all that.
    let svc = ServiceSession::connect(
        bot.endpoint.mp_uri(),
        bot.endpoint.local_addr(),
        bot.session.media_session_id(),
        bot.session.call_id(),
        ServiceConfig::default(),
    )
    .await;
    assert!(svc.is_ok());
}

fn error_code(m: Option<BotMessage>) -> Option<(ErrorCode, Option<u64>)> {
    match m {
        Some(BotMessage::Error { code, seq, .. }) => Some((code, seq)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_offers_are_refused_and_offers_after_the_end_too() {
    let mut bot = bot(EndpointConfig::default()).await;
    let mut svc = service(&bot, ServiceConfig::default()).await;
    let _p = svc.add_participant(SourceId(10)).await.unwrap();

    // Malformed SDP, a participant line without a sourceId label, a wrong seq.
    svc.send_raw(
        ServiceMessage::Offer {
            seq: 1,
            sdp: "v=0\r\nm=video 9 RTP/AVP 96\r\n".into(),
        }
        .to_json(),
    )
    .unwrap();
    assert_eq!(
        error_code(svc.next_reply(Duration::from_secs(5)).await),
        Some((ErrorCode::BadOffer, Some(1)))
    );
    let unlabelled = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\na=rtpmap:111 opus/48000/2\r\n\
                      m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n";
    svc.send_raw(
        ServiceMessage::Offer {
            seq: 1,
            sdp: unlabelled.into(),
        }
        .to_json(),
    )
    .unwrap();
    assert_eq!(
        error_code(svc.next_reply(Duration::from_secs(5)).await),
        Some((ErrorCode::BadOffer, Some(1)))
    );
    svc.send_raw(
        ServiceMessage::Offer {
            seq: 5,
            sdp: unlabelled.into(),
        }
        .to_json(),
    )
    .unwrap();
    assert_eq!(
        error_code(svc.next_reply(Duration::from_secs(5)).await),
        Some((ErrorCode::OutOfOrder, Some(5)))
    );

    // Nothing changed: the proper first offer is still seq 1 and works.
    svc.negotiate().await.unwrap();
    let ev = wait_event(&mut bot.call, Duration::from_secs(5), |e| {
        matches!(e, MediaEvent::StreamAdded { .. })
    })
    .await;
    assert_eq!(
        ev,
        Some(MediaEvent::StreamAdded {
            source: SourceId(10)
        })
    );

    // After the service hangs up, an offer is refused as sessionClosed.
    svc.send_raw(
        ServiceMessage::HangUp {
            reason: "done".into(),
        }
        .to_json(),
    )
    .unwrap();
    svc.send_raw(
        ServiceMessage::Offer {
            seq: 2,
            sdp: unlabelled.into(),
        }
        .to_json(),
    )
    .unwrap();
    assert_eq!(
        error_code(svc.next_reply(Duration::from_secs(5)).await),
        Some((ErrorCode::SessionClosed, Some(2)))
    );
    let ended = wait_event(&mut bot.call, Duration::from_secs(2), |e| {
        matches!(e, MediaEvent::Ended(_))
    })
    .await;
    assert!(ended.is_some());
}
