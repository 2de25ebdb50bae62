//! Test helpers: Opus test tones and a frequency check on decoded audio.

#![allow(dead_code)] // each test file uses a different subset

use std::f32::consts::TAU;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use media_session::{MediaSession, SourceId};
use media_transport::{
    ChannelSink, EndpointConfig, IncomingAudio, MediaCall, MediaEndpoint, MediaEvent,
    ServiceConfig, ServiceSession,
};
use tokio::sync::mpsc;

pub(crate) const RATE: u32 = 48_000;
pub(crate) const FRAME: usize = 960;

/// `frames` Opus packets (20 ms each, mono 48 kHz) of a sine at `freq` Hz.
pub(crate) fn tone_packets(freq: f32, frames: usize) -> Vec<Bytes> {
    let mut enc = opus::Encoder::new(RATE, opus::Channels::Mono, opus::Application::Audio).unwrap();
    let mut out = Vec::with_capacity(frames);
    let mut buf = [0u8; 1500];
    for f in 0..frames {
        let pcm: Vec<i16> = (0..FRAME)
            .map(|i| {
                let t = (f * FRAME + i) as f32 / RATE as f32;
                ((TAU * freq * t).sin() * 9000.0) as i16
            })
            .collect();
        let n = enc.encode(&pcm, &mut buf).unwrap();
        out.push(Bytes::copy_from_slice(&buf[..n]));
    }
    out
}

/// Decodes Opus packets (mono 48 kHz) in order.
pub(crate) fn decode(packets: &[Bytes]) -> Vec<i16> {
    let mut dec = opus::Decoder::new(RATE, opus::Channels::Mono).unwrap();
    let mut pcm = Vec::new();
    let mut frame = vec![0i16; FRAME * 6];
    for p in packets {
        let n = dec.decode(p, &mut frame, false).unwrap();
        pcm.extend_from_slice(&frame[..n]);
    }
    pcm
}

/// Which of `candidates` dominates `pcm`.
pub(crate) fn dominant(pcm: &[i16], candidates: &[f32]) -> f32 {
    let mut best = (candidates[0], f64::MIN);
    for &c in candidates {
        let p = test_kit::similarity::tone_power(pcm, RATE, f64::from(c));
        if p > best.1 {
            best = (c, p);
        }
    }
    best.0
}

pub(crate) const CANDIDATES: [f32; 5] = [440.0, 660.0, 880.0, 1000.0, 1320.0];

/// Plays `packets` at 20 ms pacing on a participant stream.
pub(crate) fn play(
    audio: media_transport::ParticipantAudio,
    packets: Vec<Bytes>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for p in packets {
            tick.tick().await;
            if audio.send_opus(p).await.is_err() {
                // Stopped streams refuse writes; keep pacing so timing stays realistic.
            }
        }
    })
}

/// Plays the bot's audio at 20 ms pacing.
pub(crate) fn play_bot(
    sender: media_transport::AudioSender,
    packets: Vec<Bytes>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for p in packets {
            tick.tick().await;
            let _ = sender.send_opus(p);
        }
    })
}

pub(crate) struct Call {
    pub(crate) endpoint: MediaEndpoint,
    pub(crate) session: MediaSession,
    pub(crate) call: MediaCall,
    pub(crate) audio: mpsc::Receiver<IncomingAudio>,
    pub(crate) sink: Arc<ChannelSink>,
}

/// An endpoint on 127.0.0.1 with one registered session.
pub(crate) async fn bot(config: EndpointConfig) -> Call {
    let endpoint = MediaEndpoint::bind(config).await.unwrap();
    let mut session = MediaSession::builder(endpoint.mp_uri().clone())
        .build()
        .unwrap();
    session.set_call_id(uuid::Uuid::new_v4());
    let (sink, audio) = ChannelSink::new(4096);
    let sink = Arc::new(sink);
    let call = endpoint.register(&session, sink.clone()).unwrap();
    Call {
        endpoint,
        session,
        call,
        audio,
        sink,
    }
}

/// The service side connected for `call`.
pub(crate) async fn service(call: &Call, config: ServiceConfig) -> ServiceSession {
    ServiceSession::connect(
        call.endpoint.mp_uri(),
        call.endpoint.local_addr(),
        call.session.media_session_id(),
        call.session.call_id(),
        config,
    )
    .await
    .unwrap()
}

/// Waits up to `within` for a bot event matching `pred`.
pub(crate) async fn wait_event(
    call: &mut MediaCall,
    within: Duration,
    mut pred: impl FnMut(&MediaEvent) -> bool,
) -> Option<MediaEvent> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let ev = tokio::time::timeout_at(deadline, call.next_event())
            .await
            .ok()??;
        if pred(&ev) {
            return Some(ev);
        }
    }
}

/// Collects packets per source until each of `want` has `n`, or `within` passes.
pub(crate) async fn collect(
    audio: &mut mpsc::Receiver<IncomingAudio>,
    want: &[SourceId],
    n: usize,
    within: Duration,
) -> std::collections::HashMap<SourceId, Vec<IncomingAudio>> {
    let mut got: std::collections::HashMap<SourceId, Vec<IncomingAudio>> = Default::default();
    let deadline = tokio::time::Instant::now() + within;
    while want.iter().any(|s| got.get(s).map_or(0, Vec::len) < n) {
        match tokio::time::timeout_at(deadline, audio.recv()).await {
            Ok(Some(p)) => got.entry(p.source).or_default().push(p),
            _ => break,
        }
    }
    got
}
