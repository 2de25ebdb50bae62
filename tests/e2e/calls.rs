//! Two calls at once through the bot API on real sockets, without crossing audio. (Placing,
//! answering, invites, binds and keepAlive are covered on made-up time in `tests/harness`.)

use std::time::Duration;

use mediabot::bot::{Bot, CallEvent, CallTarget, LocalSim, LocalSimOptions, SimUserInfo};
use mediabot::crates::graph_sim::media::MediaOptions;
use mediabot::crates::graph_sim::scenario::{Scenario, SimUser, Voice};

use crate::common::{
    Echo, TempDir, WAIT, hang_up, read_wav, serial, small_engine, tone_power, wait_for,
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
