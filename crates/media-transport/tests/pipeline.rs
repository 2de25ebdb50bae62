//! The transport bound to the audio pipeline: participants' RTP feeds the pipeline stream of
//! their sourceId, the roster gate holds unlisted sources, and the pipeline's paced encoder
//! output reaches the service.
#![cfg(feature = "pipeline")]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use audio_pipeline::{Engine, EngineConfig, PcmSpec, ReceiveEvent};
use common::*;
use media_session::{SourceId, StreamDirection};
use media_transport::binding::GateConfig;
use media_transport::pipeline::{PipelineBinding, SendPump};
use media_transport::{EndpointConfig, MediaEndpoint, ServiceConfig, ServiceEvent, ServiceSession};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_feeds_the_pipeline_by_source_and_the_pipeline_feeds_the_send_track() {
    let engine = Engine::start(EngineConfig {
        send_threads: 1,
        receive_threads: 1,
        ..EngineConfig::default()
    })
    .unwrap();
    let spec = PcmSpec::new(48_000, 1).unwrap();
    let media = engine
        .open_call(spec, StreamDirection::SendReceive)
        .unwrap();
    let binding = PipelineBinding::new(media.registry().unwrap().clone(), GateConfig::default());
    binding.bind(SourceId(10)).unwrap(); // the roster lists 10 from the start

    let endpoint = MediaEndpoint::bind(EndpointConfig::default())
        .await
        .unwrap();
    let session = media_session::MediaSession::builder(endpoint.mp_uri().clone())
        .build()
        .unwrap();
    let call = endpoint.register(&session, binding.clone()).unwrap();
    let send = media.send().unwrap();
    let pump = SendPump::start(&engine).unwrap();
    pump.add(send.packets().clone(), call.audio_sender());
    send.set_active(true);
    let bot_pcm: Vec<i16> = (0..48_000 * 3)
        .map(|i| ((std::f32::consts::TAU * 660.0 * i as f32 / 48_000.0).sin() * 9000.0) as i16)
        .collect();
    send.push_samples(&bot_pcm);

    let mut svc = ServiceSession::connect(
        endpoint.mp_uri(),
        endpoint.local_addr(),
        session.media_session_id(),
        None,
        ServiceConfig::default(),
    )
    .await
    .unwrap();
    let p10 = svc.add_participant(SourceId(10)).await.unwrap();
    let p20 = svc.add_participant(SourceId(20)).await.unwrap();
    let p30 = svc.add_participant(SourceId(30)).await.unwrap();
    svc.negotiate().await.unwrap();
    let tasks = [
        play(p10, tone_packets(440.0, 100)),
        play(p20, tone_packets(1000.0, 100)),
        play(p30, tone_packets(880.0, 100)),
    ];
    // The roster catches up with source 20 a little after its audio started; 30 is never listed.
    tokio::time::sleep(Duration::from_millis(150)).await;
    binding.bind(SourceId(20)).unwrap();

    let events = media.events().unwrap().clone();
    let frames = tokio::task::spawn_blocking(move || {
        let mut by_source: HashMap<SourceId, Vec<i16>> = HashMap::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline
            && [10, 20]
                .iter()
                .any(|s| by_source.get(&SourceId(*s)).map_or(0, Vec::len) < 48_000)
        {
            if let Ok(ReceiveEvent::Unmixed(frame)) =
                events.recv_timeout(Duration::from_millis(100))
                && !frame.is_silence
            {
                by_source
                    .entry(frame.source)
                    .or_default()
                    .extend_from_slice(frame.samples());
            }
        }
        by_source
    })
    .await
    .unwrap();
    for (source, tone) in [(10, 440.0), (20, 1000.0)] {
        let pcm = &frames[&SourceId(source)];
        // Collected until 48 000 samples or the deadline: fewer means the deadline passed.
        assert!(
            pcm.len() >= 48_000,
            "source {source}: {} samples",
            pcm.len()
        );
        assert_eq!(
            dominant(&pcm[pcm.len() / 4..], &CANDIDATES),
            tone,
            "source {source}"
        );
    }
    assert!(
        !frames.contains_key(&SourceId(30)),
        "an unlisted source is never delivered"
    );
    let gate = binding.gate_counters();
    assert!(gate.released > 0, "held audio of 20 was released: {gate:?}");
    assert!(
        gate.dropped > 0,
        "audio of 30 was dropped and counted: {gate:?}"
    );

    // The pipeline's encoded audio reaches the service.
    let mut bot_audio = Vec::new();
    while bot_audio.len() < 40 {
        match svc
            .wait_for(Duration::from_secs(10), |e| {
                matches!(e, ServiceEvent::BotAudio { .. })
            })
            .await
        {
            Some(ServiceEvent::BotAudio { payload, .. }) => bot_audio.push(payload),
            other => panic!("bot audio missing: {other:?}"),
        }
    }
    let pcm = decode(&bot_audio);
    assert_eq!(dominant(&pcm[pcm.len() / 4..], &CANDIDATES), 660.0);
    for t in tasks {
        t.abort();
    }

    // The call ends as the bot ends one (its media call, binding and engine media go): its
    // route leaves the pump, which keeps no queue of it.
    assert_eq!(pump.routes(), 1);
    drop(call);
    drop(binding);
    drop(media);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while pump.routes() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(pump.routes(), 0, "a closed call's route is released");
}
