//! Per-frame cost of each audio-pipeline stage, on speech, with the engine's default settings.
//!
//! `cargo bench --bench pipeline_stages`

use std::hint::black_box;
use std::time::Instant;

use audio_pipeline::Bytes;
use audio_pipeline::PcmSpec;
use audio_pipeline::codec::{MAX_ENCODED_BYTES, OpusConfig, OpusDecoder, OpusEncoder};
use audio_pipeline::framer::Framer;
use audio_pipeline::jitter::{JitterBuffer, JitterConfig, RtpAudio};
use audio_pipeline::mix::{MixMode, mix_into};
use audio_pipeline::resample::{FrameResampler, ResamplerKind};
use criterion::{Criterion, criterion_group, criterion_main};
use test_kit::fixtures::speech_16k;

fn speech_frames() -> Vec<Vec<i16>> {
    speech_16k()
        .chunks_exact(320)
        .map(<[i16]>::to_vec)
        .collect()
}

fn speech_48k(frames: &[Vec<i16>]) -> Vec<Vec<i16>> {
    let mut up = FrameResampler::new(ResamplerKind::default(), 16_000, 48_000, 1).unwrap();
    frames
        .iter()
        .map(|f| {
            let mut out = vec![0i16; 960];
            up.process(f, &mut out).unwrap();
            out
        })
        .collect()
}

fn packets(frames48: &[Vec<i16>]) -> Vec<Bytes> {
    let mut enc = OpusEncoder::new(1, &OpusConfig::default()).unwrap();
    let mut buf = [0u8; MAX_ENCODED_BYTES];
    frames48
        .iter()
        .map(|f| {
            let n = enc.encode(f, &mut buf).unwrap();
            Bytes::copy_from_slice(&buf[..n])
        })
        .collect()
}

fn stages(c: &mut Criterion) {
    let frames = speech_frames();
    let frames48 = speech_48k(&frames);
    let pkts = packets(&frames48);
    let bytes: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| f.iter().flat_map(|s| s.to_le_bytes()).collect())
        .collect();
    let mut g = c.benchmark_group("stage");

    let mut framer = Framer::new(PcmSpec::new(16_000, 1).unwrap());
    let mut i = 0;
    g.bench_function("framer_640B", |b| {
        b.iter(|| {
            i = (i + 1) % bytes.len();
            framer.push(black_box(&bytes[i]), |f| {
                black_box(f);
            })
        })
    });

    for kind in [
        ResamplerKind::PolyCubic,
        ResamplerKind::Sinc64,
        ResamplerKind::Fft,
    ] {
        let mut up = FrameResampler::new(kind, 16_000, 48_000, 1).unwrap();
        let mut out = vec![0i16; 960];
        let mut i = 0;
        g.bench_function(format!("resample_up_16k_48k_{kind:?}"), |b| {
            b.iter(|| {
                i = (i + 1) % frames.len();
                up.process(black_box(&frames[i]), &mut out).unwrap();
            })
        });
        let mut down = FrameResampler::new(kind, 48_000, 16_000, 1).unwrap();
        let mut out = vec![0i16; 320];
        let mut i = 0;
        g.bench_function(format!("resample_down_48k_16k_{kind:?}"), |b| {
            b.iter(|| {
                i = (i + 1) % frames48.len();
                down.process(black_box(&frames48[i]), &mut out).unwrap();
            })
        });
    }

    let mut enc = OpusEncoder::new(1, &OpusConfig::default()).unwrap();
    let mut buf = [0u8; MAX_ENCODED_BYTES];
    let mut i = 0;
    g.bench_function("encode_opus_default", |b| {
        b.iter(|| {
            i = (i + 1) % frames48.len();
            enc.encode(black_box(&frames48[i]), &mut buf).unwrap()
        })
    });

    let mut dec = OpusDecoder::new(1).unwrap();
    let mut out = vec![0i16; 960];
    let mut i = 0;
    g.bench_function("decode_opus", |b| {
        b.iter(|| {
            i = (i + 1) % pkts.len();
            dec.decode(black_box(&pkts[i]), &mut out).unwrap()
        })
    });

    let mut jb = JitterBuffer::new(JitterConfig::default());
    let t0 = Instant::now();
    let mut seq = 0u16;
    g.bench_function("jitter_push_pop", |b| {
        b.iter(|| {
            let now = t0 + std::time::Duration::from_millis(u64::from(seq) * 20);
            jb.push(
                RtpAudio {
                    seq,
                    timestamp: u32::from(seq) * 960,
                    ssrc: 1,
                    payload: pkts[usize::from(seq) % pkts.len()].clone(),
                },
                now,
            );
            seq = seq.wrapping_add(1);
            black_box(jb.pop(now))
        })
    });

    for n in [2usize, 4, 8, 16] {
        let sources: Vec<&[i16]> = (0..n).map(|k| frames[k * 7].as_slice()).collect();
        let mut acc = vec![0i32; 320];
        let mut out = vec![0i16; 320];
        g.bench_function(format!("mix_{n}_sources"), |b| {
            b.iter(|| {
                mix_into(
                    MixMode::default(),
                    sources.iter().copied(),
                    &mut acc,
                    &mut out,
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
