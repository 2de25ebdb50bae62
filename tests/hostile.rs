//! Hostile load on the bot's listeners while a call runs: more idle connections than the cap,
//! slow headers and slow bodies on the callback port. The bot keeps answering `/healthz`,
//! keeps processing the service's notifications, and the call's audio keeps flowing; the
//! process never holds more connections than its cap.

use std::time::Duration;

use mediabot::bot::{Bot, CallEvent, CallTarget, LocalSim, ReceivedAudio, ServerLimits};
use mediabot::crates::audio_pipeline::EngineConfig;
use mediabot::crates::graph_sim::scenario::Scenario;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const CAP: usize = 24;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_peers_cannot_starve_the_callback() {
    let sim = LocalSim::start(Scenario::two_users()).await.unwrap();
    let bot = Bot::builder(sim.target())
        .engine(EngineConfig {
            send_threads: 1,
            receive_threads: 1,
            realtime_priority: None,
            ..EngineConfig::default()
        })
        .server_limits(ServerLimits {
            max_connections: CAP,
            header_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(4),
        })
        .build()
        .await
        .unwrap();
    let (alice, bob) = (sim.users()[0].clone(), sim.users()[1].clone());
    let mut call = bot
        .place_call(CallTarget::user(&alice.id, None))
        .await
        .unwrap();
    let mut audio = call.audio_receiver().unwrap();
    let frames = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = frames.clone();
    tokio::spawn(async move {
        while let Some(a) = audio.recv().await {
            if matches!(a, ReceivedAudio::Unmixed(_)) {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = call.next_event().await {
            if matches!(e, CallEvent::MediaConnected) {
                return;
            }
        }
    })
    .await
    .expect("media connected");

    let addr = bot.local_addr();
    let fds_before = open_fds();
    // Four times the cap of idle connections (not one byte sent), slow headers, slow bodies.
    let mut hostile = Vec::new();
    for _ in 0..CAP * 4 {
        if let Ok(s) = TcpStream::connect(addr).await {
            hostile.push(s);
        }
    }
    for i in 0..10 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(b"POST /callback HTTP/1.1\r\nhost: x\r\n").await;
        if i % 2 == 0 {
            // A slow body: the headers promise 1000 bytes that never come.
            let _ = s
                .write_all(b"content-type: application/json\r\ncontent-length: 1000\r\n\r\n{")
                .await;
        }
        hostile.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = open_fds().saturating_sub(fds_before);
    // Our own client sockets are fds of this process too: the bot's side of them is capped.
    assert!(
        held <= hostile.len() + CAP + 8,
        "{held} fds for {} hostile connections",
        hostile.len()
    );

    // The health endpoint answers at once.
    let http = reqwest::Client::new();
    let t0 = std::time::Instant::now();
    let r = http
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("/healthz answers under the flood");
    assert_eq!(r.status(), 200);
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());

    // The service's notifications are still processed: an invite goes through.
    let before = frames.load(std::sync::atomic::Ordering::Relaxed);
    let op = tokio::time::timeout(Duration::from_secs(10), call.invite(&bob.id, None))
        .await
        .expect("the invite's notification arrived")
        .unwrap();
    assert!(op.is_finished());
    // And the call's audio keeps flowing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = frames.load(std::sync::atomic::Ordering::Relaxed);
    assert!(after >= before + 40, "{before} -> {after} frames");
    let metrics = bot.metrics_text().await;
    assert!(
        metrics.contains("mediabot_http_connections_closed_total{why=\"evicted_idle\"}"),
        "{metrics}"
    );
    // Past the header timeout, the idle and slow ones are gone.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let text = bot.metrics_text().await;
    let open: f64 = text
        .lines()
        .find(|l| l.starts_with("mediabot_http_connections "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap();
    assert!(open <= 2.0, "{open} connections still open");
    drop(hostile);
    call.hang_up().await.unwrap();
    sim.finish().await.unwrap();
}
