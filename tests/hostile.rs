//! Hostile load on the bot's listeners while a call runs: more idle connections than the cap on
//! the media port and on the callback port, slow headers and slow bodies on the callback. The
//! bot keeps answering `/healthz`, keeps processing the service's notifications, and the call's
//! audio keeps flowing; the process never holds more connections than its caps. Every wait is
//! on a condition with a generous deadline: nothing depends on how fast the machine is.

use std::time::Duration;

use mediabot::bot::{
    Bot, CallEvent, CallTarget, ListenerLimits, LocalSim, MediaSettings, ReceivedAudio,
    ServerLimits,
};
use mediabot::crates::audio_pipeline::EngineConfig;
use mediabot::crates::graph_sim::scenario::Scenario;
use mediabot::crates::media_session::MpUri;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const CAP: usize = 24;
/// Far beyond any wait the bot's deadlines imply.
const GENEROUS: Duration = Duration::from_secs(30);

/// The value of the sample `name` (with its labels, if any) in a Prometheus text.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Waits until `frames` has grown by `n`, or panics with `what` after [`GENEROUS`].
async fn frames_grow(frames: &std::sync::atomic::AtomicU64, n: u64, what: &str) {
    let before = frames.load(std::sync::atomic::Ordering::Relaxed);
    let deadline = std::time::Instant::now() + GENEROUS;
    loop {
        let now = frames.load(std::sync::atomic::Ordering::Relaxed);
        if now >= before + n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: {before} -> {now} frames"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_peers_cannot_starve_either_listener() {
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
        .media(MediaSettings {
            limits: ListenerLimits {
                max_connections: CAP,
                handshake_timeout: Duration::from_secs(2),
            },
            ..MediaSettings::default()
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
    let mp_uri: MpUri = bot.mp_uri().parse().unwrap();
    let media_addr = std::net::SocketAddr::from(([127, 0, 0, 1], mp_uri.port()));
    let fds_before = open_fds();
    // Four times the cap of idle connections (not one byte sent) on each port, then slow
    // headers and slow bodies on the callback.
    let mut hostile = Vec::new();
    for target in [addr, media_addr] {
        for _ in 0..CAP * 4 {
            if let Ok(s) = TcpStream::connect(target).await {
                hostile.push(s);
            }
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
    // Wait until both listeners have taken in the whole flood: each then holds at most its cap.
    let deadline = std::time::Instant::now() + GENEROUS;
    loop {
        let m = bot.metrics_text().await;
        let turned_away = sample(
            &m,
            "mediabot_media_connections_closed_total{why=\"evicted\"}",
        ) + sample(
            &m,
            "mediabot_media_connections_closed_total{why=\"handshake_timeout\"}",
        );
        let http_evicted = sample(
            &m,
            "mediabot_http_connections_closed_total{why=\"evicted_idle\"}",
        );
        if turned_away >= (3 * CAP) as f64 && http_evicted >= (3 * CAP) as f64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the flood was not taken in: {m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = bot.metrics_text().await;
    assert!(
        sample(&m, "mediabot_media_connections") <= CAP as f64,
        "{m}"
    );
    assert!(sample(&m, "mediabot_http_connections") <= CAP as f64, "{m}");
    let held = open_fds().saturating_sub(fds_before);
    // Our own client sockets are fds of this process too: the bot's side of them is capped.
    assert!(
        held <= hostile.len() + 2 * CAP + 8,
        "{held} fds for {} hostile connections",
        hostile.len()
    );

    // The health endpoint answers.
    let http = reqwest::Client::new();
    let r = http
        .get(format!("http://{addr}/healthz"))
        .timeout(GENEROUS)
        .send()
        .await
        .expect("/healthz answers under the flood");
    assert_eq!(r.status(), 200);

    // The service's notifications are still processed: an invite goes through.
    let op = tokio::time::timeout(GENEROUS, call.invite(&bob.id, None))
        .await
        .expect("the invite's notification arrived")
        .unwrap();
    assert!(op.is_finished());
    // And the call's audio keeps flowing (two seconds of it).
    frames_grow(&frames, 100, "audio during the flood").await;

    // Past the deadlines, the idle and slow ones are gone from both listeners; only the
    // call's own media connection remains.
    let deadline = std::time::Instant::now() + GENEROUS;
    loop {
        let m = bot.metrics_text().await;
        let http_open = sample(&m, "mediabot_http_connections");
        let media_open = sample(&m, "mediabot_media_connections");
        if http_open <= 2.0 && media_open <= 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{http_open} HTTP and {media_open} media connections still open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    frames_grow(&frames, 50, "audio after the flood").await;
    drop(hostile);
    call.hang_up().await.unwrap();
    sim.finish().await.unwrap();
}
