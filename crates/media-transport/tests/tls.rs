//! The mpUri WebSocket over TLS (`wss`).
#![cfg(feature = "runtime")]

mod common;

use std::time::Duration;

use common::*;
use media_session::SourceId;
use media_transport::protocol::ErrorCode;
use media_transport::{
    EndpointConfig, ServiceConfig, ServiceError, ServiceSession, TlsClient, TlsServer,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_session_over_wss_and_a_plain_client_is_turned_away() {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = key.cert.pem();
    let tls = TlsServer::from_pem(
        cert_pem.as_bytes(),
        key.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let mut bot = bot(EndpointConfig {
        public_host: Some("localhost".into()),
        tls: Some(tls),
        ..EndpointConfig::default()
    })
    .await;
    assert_eq!(bot.endpoint.mp_uri().host(), "localhost");

    // Without TLS the handshake cannot even start.
    let plain = ServiceSession::connect(
        bot.endpoint.mp_uri(),
        bot.endpoint.local_addr(),
        bot.session.media_session_id(),
        bot.session.call_id(),
        ServiceConfig {
            reply_timeout: Duration::from_secs(2),
            ..ServiceConfig::default()
        },
    )
    .await;
    assert!(
        matches!(
            plain,
            Err(ServiceError::Connect(_) | ServiceError::Timeout | ServiceError::Closed)
        ),
        "{plain:?}"
    );

    // A client trusting another certificate is refused by TLS itself.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let wrong = ServiceConfig {
        tls: Some(TlsClient::trusting_pem(other.cert.pem().as_bytes(), "localhost").unwrap()),
        ..ServiceConfig::default()
    };
    let refused = ServiceSession::connect(
        bot.endpoint.mp_uri(),
        bot.endpoint.local_addr(),
        bot.session.media_session_id(),
        bot.session.call_id(),
        wrong,
    )
    .await;
    assert!(
        matches!(refused, Err(ServiceError::Connect(_))),
        "{refused:?}"
    );

    let config = ServiceConfig {
        tls: Some(TlsClient::trusting_pem(cert_pem.as_bytes(), "localhost").unwrap()),
        ..ServiceConfig::default()
    };
    let mut svc = service(&bot, config.clone()).await;
    let p = svc.add_participant(SourceId(10)).await.unwrap();
    svc.negotiate().await.unwrap();
    let t = play(p, tone_packets(440.0, 100));
    let got = collect(&mut bot.audio, &[SourceId(10)], 20, Duration::from_secs(10)).await;
    assert!(got.get(&SourceId(10)).map_or(0, Vec::len) >= 20);
    t.abort();

    // The session is used now, over TLS too.
    let again = ServiceSession::connect(
        bot.endpoint.mp_uri(),
        bot.endpoint.local_addr(),
        bot.session.media_session_id(),
        bot.session.call_id(),
        config,
    )
    .await;
    assert!(matches!(
        again,
        Err(ServiceError::Refused {
            code: ErrorCode::SessionInUse,
            ..
        })
    ));
}
