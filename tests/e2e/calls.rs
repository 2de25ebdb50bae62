//! Calls through the bot API: two at once without crossing audio, an incoming call, a stream
//! bound by its `sourceId` on invite and unbound on leave, and keepAlive.

use std::time::Duration;

use mediabot::bot::{Bot, CallEvent, CallTarget, LocalSim, LocalSimOptions, SimUserInfo};
use mediabot::graph_signaling::models::CallState;
use mediabot::graph_sim::media::MediaOptions;
use mediabot::graph_sim::scenario::{Scenario, SimUser, Voice};
use mediabot::graph_sim::service::SimConfig;
use mediabot::media_session::SourceId;

use crate::common::{
    Echo, EchoCall, TempDir, WAIT, collect_for, echo_call, hang_up, is_state, is_terminated,
    read_wav, serial, small_engine, tone_power, wait_for,
};
use test_kit::at_least;

/// Distinct, not harmonically related tones, one per call.
const TONES: [f64; 2] = [440.0, 1230.0];

/// A clean echo of a steady tone scores about 0.8 on the spectral measure (it is tuned for
/// speech); what this test proves about crossing is the tone-power ratios. This floor only
/// says the echo is the call's tone and not noise or silence (< 0.3).
const TONE_ECHO_SIMILARITY: f32 = 0.5;

fn two_talkers() -> Scenario {
    Scenario {
        seed: 3,
        users: vec![
            SimUser::new("Alice", Voice::Tone { tone_hz: 440.0 }),
            SimUser::new("Bob", Voice::Tone { tone_hz: 1230.0 }),
        ],
        ..Scenario::default()
    }
}

/// One sim (one calling service, as in production) and one bot holding a P2P call with each
/// of its two users: Alice says 440 Hz, Bob 1230 Hz. The bot runs both calls on one engine
/// and one media endpoint, so this is where crossed routing would show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)]
async fn two_concurrent_calls_never_cross_audio() {
    let _turn = serial().await;
    let dir = TempDir::new("two-calls");
    let scenario = two_talkers();
    let media = MediaOptions {
        record_dir: Some(dir.0.clone()),
        ..MediaOptions::for_scenario(&scenario)
    };
    let sim = LocalSim::start_with(
        scenario,
        LocalSimOptions {
            media: Some(media),
            ..LocalSimOptions::default()
        },
    )
    .await
    .unwrap();
    let bot = Bot::builder(sim.target())
        .engine(small_engine())
        .build()
        .await
        .unwrap();
    let users: Vec<SimUserInfo> = sim.users().to_vec();
    let mut calls = Vec::new();
    let mut echoes = Vec::new();
    for u in &users {
        let mut call = bot
            .place_call(CallTarget::user(&u.id, Some(u.name.clone())))
            .await
            .unwrap();
        echoes.push(Echo::start(&mut call, true));
        calls.push(call);
    }
    assert_ne!(calls[0].id(), calls[1].id());
    for call in &mut calls {
        let mut seen = Vec::new();
        wait_for(call, &mut seen, WAIT, |e| {
            matches!(e, CallEvent::MediaConnected)
        })
        .await
        .expect("media connected");
    }
    assert_eq!(bot.active_calls(), 2);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let heard: Vec<_> = echoes.iter().map(Echo::stats).collect();
    let ids: Vec<String> = calls.iter().map(|c| c.id().to_owned()).collect();
    for call in &mut calls {
        hang_up(call, &mut Vec::new()).await;
    }
    let report = sim.finish().await.unwrap();

    for (i, (h, id)) in heard.iter().zip(&ids).enumerate() {
        let (own, other) = (TONES[i], TONES[1 - i]);
        // What the bot received in this call: its own user's tone only.
        assert!(
            h.mixed_pcm.len() > 16_000 * 2,
            "call {i}: {} samples",
            h.mixed_pcm.len()
        );
        let (p_own, p_other) = (
            tone_power(&h.mixed_pcm, h.sample_rate, own),
            tone_power(&h.mixed_pcm, h.sample_rate, other),
        );
        eprintln!("call {i} received: {own} Hz {p_own:.3e}, {other} Hz {p_other:.3e}");
        at_least(
            &format!("call{i}_received_own_over_other_tone_db"),
            10.0 * (p_own / p_other).log10(),
            30.0,
            &(p_own, p_other),
        );
        assert_eq!(h.unmixed.len(), 1, "one source per call: {:?}", h.unmixed);
        // What this call's user heard back (the sim's recording of the bot's audio).
        let c = report
            .calls
            .iter()
            .find(|c| &c.call_id == id)
            .expect("the sim served the call");
        assert!(c.media_connected && c.error.is_none(), "{c:?}");
        let (pcm, rate) = read_wav(c.recording.as_deref().expect("recorded"));
        let (e_own, e_other) = (tone_power(&pcm, rate, own), tone_power(&pcm, rate, other));
        eprintln!("call {i} echo: {own} Hz {e_own:.3e}, {other} Hz {e_other:.3e}");
        at_least(
            &format!("call{i}_echoed_own_over_other_tone_db"),
            10.0 * (e_own / e_other).log10(),
            30.0,
            &(e_own, e_other),
        );
        let p = &c.participants[0];
        at_least(
            &format!("call{i}_echo_similarity"),
            p.similarity.unwrap_or(0.0),
            TONE_ECHO_SIMILARITY,
            p,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_call_is_answered_within_the_window() {
    let _turn = serial().await;
    let sim = LocalSim::start(two_talkers()).await.unwrap();
    let mut bot = Bot::builder(sim.target())
        .engine(small_engine())
        .build()
        .await
        .unwrap();
    let (tx, mut answered) = tokio::sync::mpsc::unbounded_channel();
    assert!(bot.answer_incoming_with(move |call| {
        let _ = tx.send(call);
    }));
    let id = sim
        .offer_incoming_call(bot.callback_url(), 1)
        .await
        .expect("offered");
    // The sim's answer window is 15 s; the handler must have the call well within it.
    let mut call = tokio::time::timeout(WAIT, answered.recv())
        .await
        .expect("answered within the window")
        .expect("a call");
    assert_eq!(call.id(), id);
    let echo = Echo::start(&mut call, false);
    let mut seen = Vec::new();
    wait_for(&mut call, &mut seen, WAIT, |e| {
        is_state(e, CallState::Established)
    })
    .await
    .expect("established");
    collect_for(&mut call, &mut seen, Duration::from_secs(2)).await;
    assert!(
        seen.iter().any(|e| matches!(e, CallEvent::MediaConnected)),
        "{seen:?}"
    );
    // 100 frames are due in those 2 s.
    at_least(
        "caller_frames_in_2s",
        echo.stats().unmixed.values().sum::<u64>() as f64,
        25.0,
        &"the caller's audio",
    );
    assert!(
        bot.metrics_text()
            .await
            .contains("mediabot_calls_answered_total 1")
    );
    hang_up(&mut call, &mut seen).await;
    let report = sim.finish().await.unwrap();
    let c = &report.calls[0];
    assert!(
        c.media_connected && c.participants[0].frames_received > 0,
        "{c:?}"
    );
}

fn roster_change() -> Scenario {
    Scenario {
        seed: 5,
        users: vec![
            SimUser::new("Alice", Voice::Tone { tone_hz: 440.0 }),
            SimUser::new("Bob", Voice::Speech),
        ],
        ..Scenario::default()
    }
}

/// The sources a participant event announces for `user`.
fn sources_of(e: &CallEvent, user: &SimUserInfo) -> Vec<SourceId> {
    match e {
        CallEvent::ParticipantJoined(_, p) if p.identity_label().contains(&user.id) => {
            p.audio_sources().collect()
        }
        _ => Vec::new(),
    }
}

/// Alice answers the P2P call; Bob is invited. Bob's stream must be bound by the `sourceId` his
/// roster entry names (his audio arrives as unmixed frames of that source). Once that is seen,
/// Alice hangs up (ordered by the test, not by a timer racing the machine) and her stream must
/// be unbound while Bob's goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitee_is_bound_by_source_id_and_a_leaver_unbound() {
    let _turn = serial().await;
    let sim = LocalSim::start(roster_change()).await.unwrap();
    let (alice, bob) = (sim.users()[0].clone(), sim.users()[1].clone());
    let EchoCall {
        bot,
        mut call,
        echo,
        mut seen,
    } = echo_call(Bot::builder(sim.target()), &alice).await;
    let alice_source = match seen
        .iter()
        .find_map(|e| sources_of(e, &alice).first().copied())
    {
        Some(s) => s,
        None => {
            let joined = wait_for(&mut call, &mut seen, WAIT, |e| {
                !sources_of(e, &alice).is_empty()
            })
            .await
            .expect("Alice on the roster");
            sources_of(&joined, &alice)[0]
        }
    };

    let op = call.invite(&bob.id, Some(bob.name.clone())).await.unwrap();
    assert!(op.client_context.get().is_some(), "{op:?}");
    let joined = wait_for(&mut call, &mut seen, WAIT, |e| {
        !sources_of(e, &bob).is_empty()
    })
    .await
    .expect("Bob joins");
    let bob_source = sources_of(&joined, &bob)[0];
    assert_ne!(bob_source, alice_source);
    // Bound: the stream exists under Bob's sourceId and carries his audio.
    let bound = tokio::time::timeout(WAIT, async {
        loop {
            let streams = bot.streams(call.id());
            if echo.unmixed(bob_source) > 10
                && streams
                    .iter()
                    .any(|s| s.source == bob_source && s.received > 0)
            {
                return streams;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("Bob's audio arrives under his sourceId");
    let sources: Vec<SourceId> = bound.iter().map(|s| s.source).collect();
    assert!(sources.contains(&alice_source), "{sources:?}");

    // Alice leaves: her stream is unbound, Bob's stays.
    assert!(sim.participant_leaves(call.id(), alice_source).await);
    wait_for(&mut call, &mut seen, WAIT, |e| {
        matches!(e, CallEvent::ParticipantLeft(..))
    })
    .await
    .expect("Alice leaves");
    let streams = bot.streams(call.id());
    let sources: Vec<SourceId> = streams.iter().map(|s| s.source).collect();
    assert_eq!(sources, vec![bob_source], "{streams:?}");
    // A frame already in flight may still come; then nothing more from her.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = echo.unmixed(alice_source);
    let bob_before = echo.unmixed(bob_source);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        echo.unmixed(alice_source),
        before,
        "no audio after the unbind"
    );
    // 50 frames are due in that second.
    at_least(
        "bob_frames_in_1s_after_unbind",
        (echo.unmixed(bob_source) - bob_before) as f64,
        25.0,
        &"Bob still heard",
    );
    assert!(!call.is_ended(), "Bob keeps the call going");

    // The bot's own entry is on the roster too; the users joined once each.
    let joins = seen
        .iter()
        .filter(|e| matches!(e, CallEvent::ParticipantJoined(_, p) if p.identity_label().starts_with("user:")))
        .count();
    let lefts = seen
        .iter()
        .filter(|e| matches!(e, CallEvent::ParticipantLeft(..)))
        .count();
    assert_eq!((joins, lefts), (2, 1), "{seen:?}");
    hang_up(&mut call, &mut seen).await;
    sim.finish().await.unwrap();
}

fn one_talker() -> Scenario {
    Scenario {
        seed: 9,
        users: vec![SimUser::new("Alice", Voice::Tone { tone_hz: 440.0 })],
        ..Scenario::default()
    }
}

/// A sim that ends calls not kept alive for 2 s.
async fn impatient_sim() -> LocalSim {
    LocalSim::start_with(
        one_talker(),
        LocalSimOptions {
            config: SimConfig {
                keepalive_timeout: Duration::from_secs(2),
                ..SimConfig::default()
            },
            ..LocalSimOptions::default()
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_keeps_a_call_past_the_services_timeout() {
    let _turn = serial().await;
    let sim = impatient_sim().await;
    let alice = sim.users()[0].clone();
    let EchoCall {
        bot,
        mut call,
        echo: _echo,
        mut seen,
    } = echo_call(
        Bot::builder(sim.target()).keepalive_interval(Duration::from_millis(500)),
        &alice,
    )
    .await;
    // Three times the service's timeout.
    collect_for(&mut call, &mut seen, Duration::from_secs(6)).await;
    assert!(!seen.iter().any(is_terminated), "{seen:?}");
    assert!(!call.is_ended());
    assert_eq!(bot.active_calls(), 1);
    hang_up(&mut call, &mut seen).await;
    sim.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_keepalive_is_ended_by_the_service() {
    let _turn = serial().await;
    let sim = impatient_sim().await;
    // The default interval (15 min) never fires within the sim's 2 s timeout.
    let alice = sim.users()[0].clone();
    let EchoCall {
        bot,
        mut call,
        echo: _echo,
        mut seen,
    } = echo_call(Bot::builder(sim.target()), &alice).await;
    let ended = wait_for(&mut call, &mut seen, WAIT, is_terminated)
        .await
        .expect("the service ends the call");
    let CallEvent::Terminated(Some(info)) = ended else {
        panic!("no resultInfo: {ended:?}")
    };
    assert_eq!(
        (info.code.get().copied(), info.subcode.get().copied()),
        (Some(408), Some(8537)),
        "{info:?}"
    );
    assert_eq!(bot.active_calls(), 0);
    sim.finish().await.unwrap();
}
