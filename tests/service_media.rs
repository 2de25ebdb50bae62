//! Service-hosted media through the bot API against graph-sim (HTTP, signed notifications):
//! the service plays prompts, records a response the bot downloads, reports keys, sends DTMF,
//! and the bot holds no audio of the call.

use std::net::SocketAddr;
use std::time::Duration;

use mediabot::bot::{Bot, BotError, Call, CallEvent, CallTarget, LocalSim};
use mediabot::crates::graph_sim::scenario::{Presses, Scenario, SimUser, Voice};
use mediabot::{ActionError, MediaHosting, MediaPrompt, RecordResponseBody, Tone};

const WAIT: Duration = Duration::from_secs(20);

/// A second of a 440 Hz tone as a 16 kHz mono WAV file, served on loopback like a CDN would.
async fn serve_prompt() -> (String, SocketAddr) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut wav, spec).unwrap();
    for i in 0..16_000 {
        let t = i as f32 / 16_000.0;
        w.write_sample(((t * 440.0 * std::f32::consts::TAU).sin() * 8000.0) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
    let bytes = wav.into_inner();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/beep.wav",
        axum::routing::get(move || {
            let bytes = bytes.clone();
            async move { bytes }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/beep.wav"), addr)
}

async fn established(call: &mut Call) {
    tokio::time::timeout(WAIT, async {
        while let Some(e) = call.next_event().await {
            if let CallEvent::StateChanged { to, .. } = &e
                && to.as_str() == "established"
            {
                return;
            }
        }
        panic!("the call ended first");
    })
    .await
    .expect("established in time");
}

async fn next_tone(call: &mut Call) -> char {
    tokio::time::timeout(WAIT, async {
        while let Some(e) = call.next_event().await {
            if let CallEvent::Tone(t) = e {
                return t.tone.as_char().unwrap();
            }
        }
        panic!("the call ended first");
    })
    .await
    .expect("a key in time")
}

fn scenario(presses: &str) -> Scenario {
    let mut alice = SimUser::new("Alice", Voice::Speech);
    alice.presses = Presses::try_from(presses.to_owned()).unwrap();
    Scenario {
        users: vec![alice],
        ..Scenario::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_keys_and_a_recorded_response_on_a_placed_call() {
    let (uri, _) = serve_prompt().await;
    // Alice presses 4 once she can be heard, and # a little later (ending the recording).
    let sim = LocalSim::start(scenario("4@3000ms, #@6000ms"))
        .await
        .unwrap();
    let bot = Bot::builder(sim.target()).build().await.unwrap();
    let alice = sim.users()[0].clone();
    let mut call = bot
        .place_service_hosted_call(CallTarget::user(&alice.id, None))
        .await
        .unwrap();
    assert_eq!(call.media_hosting(), MediaHosting::Service);
    assert!(call.audio_receiver().is_none(), "no audio of the bot's own");
    established(&mut call).await;
    assert_eq!(
        bot.media_sessions(),
        0,
        "no media session for service-hosted media"
    );
    let sub = call.subscribe_to_tone().await.unwrap();
    assert_eq!(sub.kind(), "subscribeToToneOperation");
    let op = call
        .play_prompt(vec![MediaPrompt::new(&uri, Some("beep".into()))])
        .await
        .unwrap();
    assert_eq!(op.kind(), "playPromptOperation");
    assert_eq!(next_tone(&mut call).await, '4');
    // The recording runs from after its beep until Alice's # (or 20 s).
    let settings = RecordResponseBody {
        max_record_duration_in_seconds: Some(20),
        stop_tones: vec!["#".into()],
        ..RecordResponseBody::default()
    };
    let recorded = call.record_response(settings).await.unwrap();
    let where_ = recorded.recording().expect("a recording location");
    let wav = bot.fetch_recording(&where_).await.unwrap();
    let reader = hound::WavReader::new(std::io::Cursor::new(wav)).unwrap();
    assert_eq!(reader.spec().sample_rate, 16_000);
    let samples: Vec<i16> = reader.into_samples::<i16>().map(Result::unwrap).collect();
    assert!(samples.len() >= 16_000, "a second or more of Alice's words");
    assert!(
        samples.iter().any(|s| s.abs() > 1000),
        "Alice talks all the time: the recording is not silent"
    );
    // The token is needed.
    let wrong = mediabot::RecordingRef {
        location: where_.location.clone(),
        access_token: "not-the-token".into(),
    };
    assert!(matches!(
        bot.fetch_recording(&wrong).await,
        Err(BotError::Recording(_))
    ));
    let dtmf = call
        .send_dtmf_tones(vec![Tone::Tone1, Tone::Pound], Some(100))
        .await
        .unwrap();
    assert_eq!(dtmf.kind(), "sendDtmfTonesOperation");
    call.hang_up().await.unwrap();
    let report = sim.finish().await.unwrap();
    let heard = report
        .heard
        .iter()
        .find(|h| h.call_id == call.id())
        .expect("what Alice heard");
    // The prompt, the recording's beep and two keys.
    assert_eq!(heard.pieces, 3, "{heard:?}");
    assert!(heard.sound_ms >= 1000 + 250 + 200, "{heard:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_ends_a_long_prompt_and_app_hosted_calls_refuse_media_actions() {
    let (uri, _) = serve_prompt().await;
    let sim = LocalSim::start(scenario("")).await.unwrap();
    let mut bot = Bot::builder(sim.target()).build().await.unwrap();
    let mut incoming = bot.incoming_calls().unwrap();
    sim.offer_incoming_call(bot.callback_url(), 0)
        .await
        .unwrap();
    let mut call = incoming
        .next()
        .await
        .unwrap()
        .answer_service_hosted()
        .await
        .unwrap();
    established(&mut call).await;
    // Twenty seconds of prompts, cancelled after a moment.
    let control = call.control();
    let long = tokio::spawn(async move {
        control
            .play_prompt(vec![MediaPrompt::new(&uri, None); 20])
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    call.cancel_media_processing().await.unwrap();
    let outcome = tokio::time::timeout(WAIT, long).await.unwrap().unwrap();
    let Err(BotError::Action(e)) = outcome else {
        panic!("the cancelled prompt fails: {outcome:?}");
    };
    let ActionError::OperationFailed(op) = *e else {
        panic!("{e}");
    };
    let info = op.result_info.get().unwrap();
    assert_eq!(
        (info.code.get().copied(), info.subcode.get().copied()),
        (Some(400), Some(8508))
    );
    call.hang_up().await.unwrap();

    // The same action on an app-hosted call is refused before anything is sent.
    let alice = sim.users()[0].clone();
    let app = bot
        .place_call(CallTarget::user(&alice.id, None))
        .await
        .unwrap();
    let refused = app.play_prompt(vec![MediaPrompt::new("https://x/y.wav", None)]);
    match refused.await {
        Err(BotError::Action(e)) => {
            assert!(matches!(
                *e,
                ActionError::NeedsServiceHostedMedia("playPrompt")
            ));
        }
        other => panic!("{other:?}"),
    }
    app.hang_up().await.unwrap();
    let report = sim.finish().await.unwrap();
    let heard = report
        .heard
        .iter()
        .find(|h| h.call_id == call.id())
        .unwrap();
    assert!(
        heard.duration_ms < 5_000,
        "the rest of the twenty seconds was cut: {heard:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_reach_an_app_hosted_bot_in_band() {
    // With app-hosted media the service does not report keys: they arrive on the person's
    // stream (RFC 4733), as a phone's would.
    let sim = LocalSim::start(scenario("7@4000ms, *@5000ms"))
        .await
        .unwrap();
    let bot = Bot::builder(sim.target()).build().await.unwrap();
    let alice = sim.users()[0].clone();
    let mut call = bot
        .place_call(CallTarget::user(&alice.id, None))
        .await
        .unwrap();
    let keys = tokio::time::timeout(WAIT, async {
        let mut keys = String::new();
        while let Some(e) = call.next_event().await {
            if let CallEvent::Dtmf { digit, .. } = e {
                keys.push(digit.as_char());
                if keys.len() == 2 {
                    break;
                }
            }
        }
        keys
    })
    .await
    .expect("two keys in time");
    assert_eq!(keys, "7*");
    // subscribeToTone is refused for app-hosted media: the keys come in band.
    assert!(matches!(
        call.subscribe_to_tone().await,
        Err(BotError::Action(e)) if matches!(*e, ActionError::NeedsServiceHostedMedia(_))
    ));
    call.hang_up().await.unwrap();
    sim.finish().await.unwrap();
}
