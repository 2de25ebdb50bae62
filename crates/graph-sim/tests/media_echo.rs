//! The media side against an echo bot on 127.0.0.1: media-transport's bot-side endpoint sends
//! back what it hears. Timing bounds are generous on purpose; they only catch a broken clock.

mod common;

use std::sync::Arc;
use std::time::Duration;

use graph_sim::media::{MediaError, MediaOptions, MediaReport, MediaSide};
use graph_sim::netem::Impairment;
use graph_sim::scenario::{MediaImpairments, Voice};
use graph_sim::service::SimEvent;
use media_session::{MediaSession, MpUri};
use media_transport::{ChannelSink, EndpointConfig, MediaCall, MediaEndpoint};
use test_kit::{at_least, at_most};
use tokio::task::JoinHandle;

/// A bot that plays back what it receives: as is (one talker), or decoded, mixed every 20 ms
/// and re-encoded (several talkers, as a conference bot would).
struct EchoBot {
    _endpoint: MediaEndpoint,
    _call: MediaCall,
    session: MediaSession,
    task: JoinHandle<()>,
}

impl Drop for EchoBot {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo_bot(mix: bool) -> EchoBot {
    let endpoint = MediaEndpoint::bind(EndpointConfig::default())
        .await
        .unwrap();
    let mut session = MediaSession::builder(endpoint.mp_uri().clone())
        .build()
        .unwrap();
    session.set_call_id(uuid::Uuid::new_v4());
    let (sink, mut audio) = ChannelSink::new(4096);
    let call = endpoint.register(&session, Arc::new(sink)).unwrap();
    let out = call.audio_sender();
    let task = if mix {
        common::spawn_mixing_echo(audio, out, false)
    } else {
        tokio::spawn(async move {
            while let Some(p) = audio.recv().await {
                let _ = out.send_opus(p.payload);
            }
        })
    };
    EchoBot {
        _endpoint: endpoint,
        _call: call,
        session,
        task,
    }
}

fn requested(bot: &EchoBot, call_id: &str) -> SimEvent {
    let blob = media_session::parse(&bot.session.blob()).unwrap();
    SimEvent::MediaRequested {
        call_id: call_id.into(),
        blob: Box::new(blob),
    }
}

fn added(call_id: &str, name: &str, source_id: u32, voice: Voice) -> SimEvent {
    SimEvent::SourceAdded {
        call_id: call_id.into(),
        name: name.into(),
        source_id,
        voice,
        talks: None,
    }
}

/// Lets the participants talk for `talk`, ends the call and measures.
async fn talk_and_end(media: &mut MediaSide, call_id: &str, talk: Duration) -> MediaReport {
    tokio::time::sleep(talk).await;
    media
        .handle_event(SimEvent::Ended {
            call_id: call_id.into(),
            code: 200,
            subcode: 0,
            end: graph_sim::service::CallEnd::HungUp,
        })
        .unwrap();
    assert!(
        media.wait_ended(call_id, Duration::from_secs(10)).await,
        "the call winds down"
    );
    media.report()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)] // the measured figures go to the test log
async fn a_participant_comes_back_through_an_echo_bot_and_is_recorded() {
    let bot = echo_bot(false).await;
    let dir = std::env::temp_dir().join(format!("graph-sim-media-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut media = MediaSide::new(MediaOptions {
        record_dir: Some(dir.clone()),
        ..MediaOptions::default()
    });
    media.handle_event(requested(&bot, "call-1")).unwrap();
    media
        .handle_event(added("call-1", "Alice", 11, Voice::Speech))
        .unwrap();
    let report = talk_and_end(&mut media, "call-1", Duration::from_secs(6)).await;
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());

    let call = &report.calls[0];
    assert!(
        call.accepted && call.media_connected && call.ended,
        "{call:?}"
    );
    assert_eq!(call.error, None);
    let alice = &call.participants[0];
    assert_eq!((alice.name.as_str(), alice.source_id), ("Alice", 11));
    // 300 frames are due in 6 s.
    at_least("frames_sent", alice.frames_sent as f64, 200.0, alice);
    at_most("frames_sent", alice.frames_sent as f64, 400.0, alice);
    assert_eq!(alice.to_bot.lost, 0);
    at_least(
        "echoed_share_of_sent",
        alice.frames_received as f64 / alice.frames_sent as f64,
        0.7,
        alice,
    );
    let p50 = alice.echo_delay_ms_p50.expect("echo found");
    at_most("echo_delay_ms_p50", p50, 300.0, alice);
    let sim = alice.similarity.expect("similarity measured");
    at_least("echo_similarity", sim, 0.9, alice);
    assert_eq!(report.totals.participants, 1);
    assert!(report.totals.echo_delay_ms_p95.unwrap() >= p50);

    // The recording holds what the bot sent.
    let path = call.recording.clone().expect("recorded");
    let wav = hound::WavReader::open(&path).unwrap();
    assert_eq!(wav.spec().sample_rate, 48_000);
    assert!(wav.duration() > 48_000 * 4, "{} samples", wav.duration());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)]
async fn each_talker_is_measured_out_of_the_bots_mix_and_a_leaver_stops() {
    let bot = echo_bot(true).await;
    let mut media = MediaSide::new(MediaOptions::default());
    media.handle_event(requested(&bot, "call-2")).unwrap();
    media
        .handle_event(added("call-2", "Alice", 21, Voice::Speech))
        .unwrap();
    media
        .handle_event(added("call-2", "Bob", 22, Voice::Tone { tone_hz: 660.0 }))
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    media
        .handle_event(SimEvent::SourceRemoved {
            call_id: "call-2".into(),
            source_id: 22,
        })
        .unwrap();
    let report = talk_and_end(&mut media, "call-2", Duration::from_secs(2)).await;
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());

    let call = &report.calls[0];
    assert_eq!(call.error, None);
    let (alice, bob) = (&call.participants[0], &call.participants[1]);
    assert_eq!((alice.source_id, bob.source_id), (21, 22));
    // Bob left 2 s (100 frames) before the end.
    at_least(
        "alice_frames_beyond_bobs",
        alice.frames_sent as f64 - bob.frames_sent as f64,
        60.0,
        &"Bob left early",
    );
    for p in [alice, bob] {
        let d = p.echo_delay_ms_p50.unwrap_or_else(|| panic!("{p:?}"));
        at_most(&format!("{}_echo_delay_ms_p50", p.name), d, 300.0, p);
    }
    // Similarity compares the whole spectrum with the talker's own: the other talker's sound
    // in the mix counts against it, the more so for a tone, whose own spectrum is one band.
    // Measured over 10 runs: 0.643–0.649 (Alice), 0.457–0.476 (Bob).
    at_least(
        "alice_similarity",
        alice.similarity.unwrap_or(0.0),
        0.55,
        alice,
    );
    at_least("bob_similarity", bob.similarity.unwrap_or(0.0), 0.3, bob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)]
async fn impairments_apply_per_direction_and_are_measured() {
    let bot = echo_bot(false).await;
    let mut media = MediaSide::new(MediaOptions {
        impairments: MediaImpairments {
            to_bot: Impairment {
                loss: 0.2,
                ..Impairment::default()
            },
            from_bot: Impairment {
                delay: Duration::from_millis(60),
                jitter: Duration::from_millis(10),
                loss: 0.05,
                mean_burst: Some(2.0),
                reorder: 0.05,
                duplicate: 0.05,
            },
        },
        seed: 5,
        ..MediaOptions::default()
    });
    media.handle_event(requested(&bot, "call-3")).unwrap();
    media
        .handle_event(added("call-3", "Carol", 31, Voice::Tone { tone_hz: 440.0 }))
        .unwrap();
    let report = talk_and_end(&mut media, "call-3", Duration::from_secs(6)).await;
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());

    let call = &report.calls[0];
    let carol = &call.participants[0];
    assert!(
        (12.0..28.0).contains(&carol.to_bot.loss_pct),
        "{:?}",
        carol.to_bot
    );
    assert_eq!(carol.to_bot.sent, carol.frames_sent);
    // The echo bot only echoes what reached it.
    let share = call.bot.packets as f64 / carol.frames_sent as f64;
    at_least("echoed_share_after_20pct_loss", share, 0.55, &call.bot);
    at_most("echoed_share_after_20pct_loss", share, 0.9, &call.bot);
    // The bot's stream: its losses concealed, duplicates dropped, reordering undone.
    let (from_bot, bot) = (&call.from_bot, &call.bot);
    assert!(from_bot.lost > 0 && from_bot.duplicated > 0 && from_bot.reordered > 0);
    assert_eq!(bot.packets, from_bot.delivered);
    assert!(
        bot.concealed > 0 && bot.discarded >= from_bot.duplicated,
        "{bot:?}"
    );
    let p50 = carol.echo_delay_ms_p50.expect("echo found despite loss");
    at_least("echo_delay_ms_p50_with_60ms_delay", p50, 55.0, carol);
    at_most("echo_delay_ms_p50_with_60ms_delay", p50, 400.0, carol);
}

#[tokio::test]
async fn refuses_to_send_media_off_this_machine() {
    for host in ["example.com", "10.0.0.1", "[2001:db8::1]"] {
        let mut session = MediaSession::builder(MpUri::new(host, 8445).unwrap())
            .build()
            .unwrap();
        session.set_call_id(uuid::Uuid::new_v4());
        let mut media = MediaSide::new(MediaOptions::default());
        let err = media
            .handle_event(SimEvent::MediaRequested {
                call_id: "c".into(),
                blob: Box::new(session.blob_config()),
            })
            .unwrap_err();
        assert!(matches!(err, MediaError::RemoteMedia(_)), "{host}: {err}");
        // Its participants are ignored, and the report says why there is no media.
        media
            .handle_event(added("c", "Dan", 1, Voice::Speech))
            .unwrap();
        let report = media.report();
        let call = &report.calls[0];
        assert!(
            call.error.as_deref().unwrap().contains("loopback"),
            "{call:?}"
        );
        assert!(!call.accepted && call.ended);
    }
}
