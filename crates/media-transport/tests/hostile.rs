//! The media endpoint under connections that never become media sessions: idle sockets,
//! upgrades that stop halfway and WebSockets that never say hello, while one call's audio
//! flows and another call connects. Every wait is on a condition with a generous deadline; no
//! assertion depends on how fast the machine is.
#![cfg(feature = "runtime")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use media_session::{MediaSession, SourceId};
use media_transport::protocol::ProtocolConfig;
use media_transport::service::open_websocket;
use media_transport::{
    ChannelSink, EndpointConfig, ListenerLimits, ListenerStats, MediaEndpoint, ServiceConfig,
    ServiceSession, TlsServer,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const CAP: usize = 16;
const S10: SourceId = SourceId(10);
const S20: SourceId = SourceId(20);
/// Far beyond any wait the endpoint's deadlines imply.
const GENEROUS: Duration = Duration::from_secs(30);

/// Polls the listener's figures until `pred` holds or `within` passes, checking on every look
/// that the endpoint holds no more than the cap.
async fn wait_stats(
    endpoint: &MediaEndpoint,
    cap: usize,
    within: Duration,
    pred: impl Fn(&ListenerStats) -> bool,
) -> ListenerStats {
    let deadline = Instant::now() + within;
    loop {
        let s = endpoint.listener_stats();
        assert!(s.open <= cap && s.peak_open <= cap, "over the cap: {s:?}");
        if pred(&s) || Instant::now() >= deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `frames` packets of a tone (20 ms each): far longer than the test needs, so that a slow
/// machine never runs out of audio.
fn looped(freq: f32, frames: usize) -> Vec<bytes::Bytes> {
    tone_packets(freq, 250)
        .into_iter()
        .cycle()
        .take(frames)
        .collect()
}

/// Whether the endpoint closes `tcp` (end of stream or reset) before `deadline`.
async fn closed_by_endpoint(tcp: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // Whatever it says before closing (nothing, for these) does not matter.
            Ok(Ok(_)) => {}
        }
    }
}

/// Packets of `source` arriving within `within`, after discarding what was queued already.
async fn fresh_packets(
    audio: &mut tokio::sync::mpsc::Receiver<media_transport::IncomingAudio>,
    source: SourceId,
    n: usize,
    within: Duration,
) -> usize {
    while audio.try_recv().is_ok() {}
    collect(audio, &[source], n, within)
        .await
        .get(&source)
        .map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_open_floods_neither_stop_a_call_nor_lock_out_the_next() {
    let deadlines = Duration::from_secs(3);
    let mut a = bot(EndpointConfig {
        limits: ListenerLimits {
            max_connections: CAP,
            handshake_timeout: deadlines,
        },
        protocol: ProtocolConfig {
            hello_timeout: deadlines,
            ..ProtocolConfig::default()
        },
        ..EndpointConfig::default()
    })
    .await;
    let addr = a.endpoint.local_addr();

    // Call A is established and its audio flows for the whole test.
    let mut svc_a = service(&a, ServiceConfig::default()).await;
    let p10 = svc_a.add_participant(S10).await.unwrap();
    svc_a.negotiate().await.unwrap();
    let t10 = play(p10, looped(440.0, 6000));
    assert!(fresh_packets(&mut a.audio, S10, 10, GENEROUS).await >= 10);

    // Call B is registered; its service connects only once the flood is in.
    let session_b = MediaSession::builder(a.endpoint.mp_uri().clone())
        .build()
        .unwrap();
    let (sink_b, mut audio_b) = ChannelSink::new(4096);
    let _call_b = a.endpoint.register(&session_b, Arc::new(sink_b)).unwrap();

    // The flood: four times the cap of sockets that send nothing, then upgrades that stop
    // before the blank line ending the request head.
    let mut idle = Vec::new();
    for _ in 0..4 * CAP {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    for _ in 0..4 {
        let mut t = TcpStream::connect(addr).await.unwrap();
        t.write_all(
            b"GET /MediaProcessor HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\n",
        )
        .await
        .unwrap();
        idle.push(t);
    }
    let flood = idle.len() as u64;
    let s = wait_stats(&a.endpoint, CAP, GENEROUS, |s| s.accepted == 1 + flood).await;
    assert_eq!(s.accepted, 1 + flood, "{s:?}");
    assert_eq!(s.sessions, 1, "{s:?}");
    assert_eq!(
        s.refused, 0,
        "there was always an unclaimed connection to close"
    );
    // Every flood connection no longer held was evicted or timed out.
    assert!(
        s.evicted + s.handshake_timeouts >= 1 + flood - s.open as u64,
        "{s:?}"
    );
    assert!(s.evicted > 0, "{s:?}");

    // B's service connects into a full endpoint: an unclaimed connection makes room for it.
    let evicted_before = s.evicted;
    let mut svc_b = ServiceSession::connect(
        a.endpoint.mp_uri(),
        addr,
        session_b.media_session_id(),
        session_b.call_id(),
        ServiceConfig::default(),
    )
    .await
    .expect("a legitimate service connects during the flood");
    let s = a.endpoint.listener_stats();
    assert_eq!(s.sessions, 2, "{s:?}");
    // Room comes from an eviction unless the flood's own deadline freed a place first (only
    // on a machine slower than the handshake timeout).
    assert!(
        s.evicted > evicted_before || s.handshake_timeouts > 0,
        "{s:?}"
    );
    let p20 = svc_b.add_participant(S20).await.unwrap();
    svc_b.negotiate().await.unwrap();
    let t20 = play(p20, looped(880.0, 6000));
    assert!(
        fresh_packets(&mut audio_b, S20, 25, GENEROUS).await >= 25,
        "call B gets media"
    );
    assert!(
        fresh_packets(&mut a.audio, S10, 25, GENEROUS).await >= 25,
        "call A's audio keeps flowing"
    );

    // WebSockets that upgrade and never send a message.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(open_websocket(addr, "127.0.0.1", None).await.unwrap());
    }

    // Past the deadlines only the two calls are held.
    let s = wait_stats(&a.endpoint, CAP, GENEROUS, |s| s.open == 2).await;
    assert_eq!((s.open, s.sessions), (2, 2), "{s:?}");
    let s = a.endpoint.listener_stats();
    let others = flood + silent.len() as u64;
    assert_eq!(s.accepted, 2 + others, "{s:?}");
    assert_eq!(
        s.evicted + s.handshake_timeouts + s.hello_timeouts + s.stalled,
        others,
        "each connection that was not a call was evicted or timed out: {s:?}"
    );
    assert!(s.handshake_timeouts >= 4, "the half-open upgrades: {s:?}");
    assert_eq!(s.hello_timeouts, 3, "the silent WebSockets: {s:?}");
    assert_eq!(s.refused, 0);
    assert!(s.peak_open <= CAP, "{s:?}");

    // And they are closed at the socket, not merely forgotten.
    let deadline = Instant::now() + GENEROUS;
    for (i, t) in idle.iter_mut().enumerate() {
        assert!(
            closed_by_endpoint(t, deadline).await,
            "flood socket {i} still open"
        );
    }
    for (i, ws) in silent.iter_mut().enumerate() {
        let ended = tokio::time::timeout_at(deadline, async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        assert!(ended.is_ok(), "silent WebSocket {i} still open");
    }

    assert!(fresh_packets(&mut a.audio, S10, 25, GENEROUS).await >= 25);
    assert!(fresh_packets(&mut audio_b, S20, 25, GENEROUS).await >= 25);
    t10.abort();
    t20.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_held_connection_is_a_call_a_newcomer_is_refused() {
    let mut a = bot(EndpointConfig {
        limits: ListenerLimits {
            max_connections: 1,
            ..ListenerLimits::default()
        },
        ..EndpointConfig::default()
    })
    .await;
    let mut svc = service(&a, ServiceConfig::default()).await;
    let p10 = svc.add_participant(S10).await.unwrap();
    svc.negotiate().await.unwrap();
    let t10 = play(p10, looped(440.0, 3000));
    assert!(fresh_packets(&mut a.audio, S10, 10, GENEROUS).await >= 10);

    let mut newcomer = TcpStream::connect(a.endpoint.local_addr()).await.unwrap();
    assert!(closed_by_endpoint(&mut newcomer, Instant::now() + GENEROUS).await);
    let s = a.endpoint.listener_stats();
    assert_eq!(
        (s.open, s.sessions, s.refused, s.evicted),
        (1, 1, 1, 0),
        "{s:?}"
    );
    assert!(
        fresh_packets(&mut a.audio, S10, 25, GENEROUS).await >= 25,
        "the call is untouched"
    );
    t10.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_handshake_that_never_starts_is_closed_at_the_deadline() {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let tls = TlsServer::from_pem(
        key.cert.pem().as_bytes(),
        key.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let endpoint = MediaEndpoint::bind(EndpointConfig {
        tls: Some(tls),
        limits: ListenerLimits {
            handshake_timeout: Duration::from_secs(1),
            ..ListenerLimits::default()
        },
        ..EndpointConfig::default()
    })
    .await
    .unwrap();
    let mut silent = TcpStream::connect(endpoint.local_addr()).await.unwrap();
    assert!(closed_by_endpoint(&mut silent, Instant::now() + GENEROUS).await);
    let s = wait_stats(&endpoint, usize::MAX, GENEROUS, |s| s.open == 0).await;
    assert_eq!((s.open, s.handshake_timeouts), (0, 1), "{s:?}");
}
