//! Two in-process peers on 127.0.0.1: the bot's endpoint and the service side.
#![cfg(feature = "runtime")]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use media_session::SourceId;
use media_transport::{EndpointConfig, MediaEvent, ServiceConfig, ServiceEvent};

const S10: SourceId = SourceId(10);
const S20: SourceId = SourceId(20);
const S30: SourceId = SourceId(30);

/// Decoded audio of `packets` (sorted by sequence) after skipping the codec's warm-up.
fn tone_of(packets: &[media_transport::IncomingAudio]) -> f32 {
    let mut sorted: Vec<_> = packets.iter().collect();
    sorted.sort_by_key(|p| p.sequence);
    let payloads: Vec<Bytes> = sorted.iter().map(|p| p.payload.clone()).collect();
    let pcm = decode(&payloads);
    dominant(&pcm[pcm.len() / 4..], &CANDIDATES)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)] // the measured offer → first frame time goes to the test log
async fn two_participants_arrive_unmixed_and_the_bots_audio_reaches_the_service() {
    let mut bot = bot(EndpointConfig::default()).await;
    let mut svc = service(&bot, ServiceConfig::default()).await;
    let p10 = svc.add_participant(S10).await.unwrap();
    let p20 = svc.add_participant(S20).await.unwrap();
    let offer_at = Instant::now();
    svc.negotiate().await.unwrap();
    let t10 = play(p10, tone_packets(440.0, 60));
    let t20 = play(p20, tone_packets(1000.0, 60));
    let tb = play_bot(bot.call.audio_sender(), tone_packets(660.0, 500));

    // First packet decoded on the bot side, timed from the offer.
    let first = tokio::time::timeout(Duration::from_secs(10), bot.audio.recv())
        .await
        .expect("audio within 10 s")
        .unwrap();
    decode(std::slice::from_ref(&first.payload));
    let first_frame = offer_at.elapsed();
    eprintln!("offer -> first decoded bot-received frame: {first_frame:?}");

    let got = collect(&mut bot.audio, &[S10, S20], 40, Duration::from_secs(10)).await;
    assert!(
        got[&S10].len() >= 40 && got[&S20].len() >= 40,
        "{:?}",
        got.keys()
    );
    assert_eq!(tone_of(&got[&S10]), 440.0, "source 10 carries its own tone");
    assert_eq!(
        tone_of(&got[&S20]),
        1000.0,
        "source 20 carries its own tone"
    );

    // The bot's audio at the service.
    let mut bot_audio = Vec::new();
    while bot_audio.len() < 40 {
        match svc
            .wait_for(Duration::from_secs(10), |e| {
                matches!(e, ServiceEvent::BotAudio { .. })
            })
            .await
        {
            Some(ServiceEvent::BotAudio { payload, .. }) => bot_audio.push(payload),
            other => panic!("bot audio missing: {other:?} after {}", bot_audio.len()),
        }
    }
    let pcm = decode(&bot_audio);
    assert_eq!(dominant(&pcm[pcm.len() / 4..], &CANDIDATES), 660.0);

    // Events: accepted, both streams bound, media connected.
    let mut added = Vec::new();
    let mut connected = false;
    while let Some(ev) = bot.call.try_next_event() {
        match ev {
            MediaEvent::StreamAdded { source } => added.push(source),
            MediaEvent::MediaConnected => connected = true,
            _ => {}
        }
    }
    added.sort();
    assert_eq!(added, [S10, S20]);
    assert!(connected);

    let stats = bot.call.stats().await.unwrap();
    let q10 = stats.received.iter().find(|(s, _)| *s == S10).unwrap().1;
    assert!(q10.packets >= 40);
    assert_eq!(q10.lost, 0);
    assert!(stats.sent.packets >= 40);
    // RTT comes from RTCP receiver reports or the ICE checks; allow a few intervals.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut rtt = stats.rtt;
    while rtt.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        rtt = bot.call.stats().await.and_then(|s| s.rtt);
    }
    eprintln!("media round-trip time: {rtt:?}");
    assert!(rtt.is_some_and(|r| r < Duration::from_secs(1)), "{rtt:?}");
    for t in [t10, t20, tb] {
        t.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_added_mid_call_is_bound_and_a_removed_one_unbound() {
    let mut bot = bot(EndpointConfig::default()).await;
    let mut svc = service(&bot, ServiceConfig::default()).await;
    let p10 = svc.add_participant(S10).await.unwrap();
    svc.negotiate().await.unwrap();
    let t10 = play(p10, tone_packets(440.0, 150));
    let got = collect(&mut bot.audio, &[S10], 10, Duration::from_secs(10)).await;
    assert!(got.get(&S10).map_or(0, Vec::len) >= 10);

    // A third participant joins mid-call.
    let p30 = svc.add_participant(S30).await.unwrap();
    svc.negotiate().await.unwrap();
    let ev = wait_event(
        &mut bot.call,
        Duration::from_secs(5),
        |e| matches!(e, MediaEvent::StreamAdded { source } if *source == S30),
    )
    .await;
    assert!(ev.is_some(), "source 30 is bound");
    let t30 = play(p30, tone_packets(880.0, 150));
    let got = collect(&mut bot.audio, &[S10, S30], 40, Duration::from_secs(10)).await;
    assert!(
        got.get(&S30).map_or(0, Vec::len) >= 40,
        "audio of source 30 arrives"
    );
    assert_eq!(tone_of(&got[&S30]), 880.0);
    assert_eq!(tone_of(&got[&S10]), 440.0, "source 10 is unaffected");

    // Source 10 leaves: its m-line is stopped in the next offer.
    svc.remove_participant(S10).await.unwrap();
    svc.negotiate().await.unwrap();
    let ev = wait_event(
        &mut bot.call,
        Duration::from_secs(5),
        |e| matches!(e, MediaEvent::StreamRemoved { source } if *source == S10),
    )
    .await;
    assert!(ev.is_some(), "source 10 is unbound");
    // Let in-flight packets drain, then nothing more from 10 while 30 keeps flowing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while bot.audio.try_recv().is_ok() {}
    let got = collect(&mut bot.audio, &[S30], 25, Duration::from_secs(10)).await;
    assert!(got.get(&S30).map_or(0, Vec::len) >= 25);
    assert_eq!(
        got.get(&S10).map_or(0, Vec::len),
        0,
        "no audio of a removed source"
    );
    t10.abort();
    t30.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_both_ways() {
    let mut bot = bot(EndpointConfig::default()).await;
    // The service side as graph-sim runs it: from the blob in the create-call request.
    let blob = media_session::parse(&bot.session.blob()).unwrap();
    let mut svc = media_transport::ServiceSession::connect_to_blob(&blob, ServiceConfig::default())
        .await
        .unwrap();
    let p10 = svc.add_participant(S10).await.unwrap();
    svc.negotiate().await.unwrap();
    let tb = play_bot(bot.call.audio_sender(), tone_packets(660.0, 150));
    let t10 = play(p10.clone(), tone_packets(440.0, 150));
    assert!(
        wait_event(&mut bot.call, Duration::from_secs(5), |e| matches!(
            e,
            MediaEvent::MediaConnected
        ))
        .await
        .is_some()
    );
    svc.wait_for(Duration::from_secs(5), |e| {
        matches!(e, ServiceEvent::MediaConnected)
    })
    .await;

    let digit = media_transport::dtmf::DtmfDigit::Pound;
    p10.send_dtmf(digit, Duration::from_millis(100))
        .await
        .unwrap();
    let ev = wait_event(&mut bot.call, Duration::from_secs(5), |e| {
        matches!(e, MediaEvent::Dtmf { .. })
    })
    .await;
    assert_eq!(ev, Some(MediaEvent::Dtmf { source: S10, digit }));
    // Exactly one event for the whole key press.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut more = 0;
    while let Some(e) = bot.call.try_next_event() {
        more += usize::from(matches!(e, MediaEvent::Dtmf { .. }));
    }
    assert_eq!(more, 0);

    let seven = media_transport::dtmf::DtmfDigit::Digit(7);
    bot.call
        .send_dtmf(seven, Duration::from_millis(100))
        .unwrap();
    let ev = svc
        .wait_for(Duration::from_secs(5), |e| {
            matches!(e, ServiceEvent::Dtmf(_))
        })
        .await;
    assert_eq!(ev, Some(ServiceEvent::Dtmf(seven)));
    tb.abort();
    t10.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periods_the_sender_skips_advance_rtp_time() {
    let bot = bot(EndpointConfig::default()).await;
    let mut svc = service(&bot, ServiceConfig::default()).await;
    let _p10 = svc.add_participant(S10).await.unwrap();
    svc.negotiate().await.unwrap();
    // Frame k starts at k × 960 on the sender's clock and carries k in its payload. Frames 70,
    // 90 and 91 are skipped, as an engine skips a period whose audio was not ready in time.
    let sender = bot.call.audio_sender();
    let skipped = [70u8, 90, 91];
    let tb = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for k in 0..150u8 {
            tick.tick().await;
            if !skipped.contains(&k) {
                let _ = sender.send_opus_at(Bytes::from(vec![0xf8, k]), u32::from(k) * 960);
            }
        }
    });
    // (Packets written before DTLS completes are lost: the service sees a later start.)
    let mut got: Vec<(u8, u32)> = Vec::new();
    while got.last().is_none_or(|&(k, _)| k < 110) {
        match svc
            .wait_for(Duration::from_secs(10), |e| {
                matches!(e, ServiceEvent::BotAudio { .. })
            })
            .await
        {
            Some(ServiceEvent::BotAudio {
                timestamp, payload, ..
            }) => got.push((payload[1], timestamp)),
            other => panic!("bot audio missing: {other:?} after {got:?}"),
        }
    }
    let (k0, ts0) = got[0];
    assert!(k0 < 70, "media connected too late for the test: {got:?}");
    for &(k, ts) in &got {
        assert_eq!(
            ts.wrapping_sub(ts0),
            u32::from(k - k0) * 960,
            "frame {k}: {got:?}"
        );
    }
    tb.abort();
}
