//! The bot API end to end against graph-sim in-process (loopback only): a P2P call placed
//! through `Bot::place_call`, the sim's media side playing the user, the bot echoing the mixed
//! audio, and the sim measuring what came back. It runs alone in its binary: other calls on
//! the same two cores would disturb the timing being measured.

use std::time::Duration;

use mediabot::bot::{Bot, CallEvent, CallTarget, LocalSim, ReceivedAudio};
use mediabot::crates::audio_pipeline::EngineConfig;
use mediabot::crates::graph_signaling::models::CallState;
use mediabot::crates::graph_sim::scenario::{Scenario, SimUser, Voice};

fn one_talker() -> Scenario {
    Scenario {
        users: vec![SimUser::new("Alice", Voice::Speech)],
        ..Scenario::default()
    }
}

fn small_engine() -> EngineConfig {
    // The test shares two cores with other work.
    EngineConfig {
        send_threads: 1,
        receive_threads: 1,
        ..EngineConfig::default()
    }
}

/// Reads events until one matches, up to `within`.
async fn wait_for(
    call: &mut mediabot::bot::Call,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)] // the measured figures go to the test log
async fn an_echo_bot_call_placed_through_the_api_plays_the_user_back() {
    let sim = LocalSim::start(one_talker()).await.unwrap();
    let bot = Bot::builder(sim.target())
        .engine(small_engine())
        .qoe_interval(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let alice = sim.users()[0].clone();
    let mut call = bot
        .place_call(CallTarget::user(&alice.id, Some(alice.name.clone())))
        .await
        .unwrap();
    let mut audio = call.audio_receiver().unwrap();
    let out = call.audio_sender();
    let echo = tokio::spawn(async move {
        let (mut mixed, mut unmixed) = (0u32, 0u32);
        while let Some(a) = audio.recv().await {
            match a {
                ReceivedAudio::Mixed { frame, .. } => {
                    if mixed == 0 {
                        // 60 ms of margin, so a late wake-up of this task on a busy machine
                        // does not run the player dry (each restart would shift the echo).
                        let silence = vec![0i16; frame.samples().len() * 3];
                        out.push_samples(&silence);
                    }
                    mixed += 1;
                    // Bounded latency: a burst of frames must not leave a standing backlog.
                    if out.queued_frames() < 6 {
                        out.push_frame(&frame);
                    }
                }
                ReceivedAudio::Unmixed(_) => unmixed += 1,
            }
        }
        (mixed, unmixed)
    });

    // Talk for a while, collecting what the call reports.
    let mut events = Vec::new();
    let talk_until = tokio::time::Instant::now() + Duration::from_secs(8);
    while let Ok(Some(e)) = tokio::time::timeout_at(talk_until, call.next_event()).await {
        events.push(e);
    }
    let established = events.iter().any(|e| {
        matches!(
            e,
            CallEvent::StateChanged {
                to: CallState::Established,
                ..
            }
        )
    });
    assert!(established, "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, CallEvent::MediaConnected)),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, CallEvent::ParticipantJoined(..))),
        "{events:?}"
    );
    let kinds: Vec<String> = events
        .iter()
        .map(|e| {
            format!("{e:?}")
                .split(['(', ' '])
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    eprintln!("events: {kinds:?}");
    for wanted in [
        "Quality",
        "DominantSpeakerChanged",
        "SendStatusChanged",
        "ParticipantJoined",
    ] {
        assert!(kinds.iter().any(|k| k == wanted), "no {wanted}: {kinds:?}");
    }
    let metrics = bot.metrics_text().await;
    assert!(
        metrics.contains("mediabot_frames_received_total"),
        "metrics:\n{metrics}"
    );

    call.hang_up().await.unwrap();
    let end = wait_for(&mut call, Duration::from_secs(10), |e| {
        matches!(e, CallEvent::Terminated(_))
    })
    .await;
    assert!(end.is_some(), "the call terminates after the hang-up");
    let report = sim.finish().await.unwrap();
    drop(call);
    let (mixed, unmixed) = tokio::time::timeout(Duration::from_secs(5), echo)
        .await
        .map_or((0, 0), |r| r.unwrap_or((0, 0)));
    eprintln!("bot received {mixed} mixed and {unmixed} unmixed frames");
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());

    let c = &report.calls[0];
    assert!(c.media_connected && c.error.is_none(), "{c:?}");
    let p = &c.participants[0];
    eprintln!(
        "Alice: frames sent {}, bot frames received {}, echo delay p50 {:?} ms, similarity {:?}",
        p.frames_sent, p.frames_received, p.echo_delay_ms_p50, p.similarity
    );
    assert!(p.frames_received > 0, "{p:?}");
    test_kit::at_least("echo_similarity", p.similarity.unwrap_or(0.0), 0.8, p);
    assert!(mixed > 0 && unmixed > 0);
}
