//! Speech through the real send and receive chain (16k → 48k → Opus → 48k → 16k) still sounds
//! like itself by the test kit's similarity measure.

use audio_pipeline::codec::{MAX_ENCODED_BYTES, OpusConfig, OpusDecoder, OpusEncoder};
use audio_pipeline::resample::{FrameResampler, ResamplerKind};
use test_kit::fixtures::speech_16k;
use test_kit::similarity::spectral_similarity;

fn short_speech() -> Vec<i16> {
    // Three seconds keep the debug-build test quick.
    speech_16k()[..48_000].to_vec()
}

/// Speech through the real send and receive chain: 16k -> 48k -> Opus -> 48k -> 16k.
fn round_trip(speech: &[i16]) -> Vec<i16> {
    let kind = ResamplerKind::default();
    let mut up = FrameResampler::new(kind, 16_000, 48_000, 1).unwrap();
    let mut down = FrameResampler::new(kind, 48_000, 16_000, 1).unwrap();
    let mut enc = OpusEncoder::new(1, &OpusConfig::default()).unwrap();
    let mut dec = OpusDecoder::new(1).unwrap();
    let (mut a, mut b, mut pkt) = (vec![0i16; 960], vec![0i16; 960], [0u8; MAX_ENCODED_BYTES]);
    let mut frame = vec![0i16; 320];
    let mut out = Vec::with_capacity(speech.len());
    for chunk in speech.chunks_exact(320) {
        up.process(chunk, &mut a).unwrap();
        let n = enc.encode(&a, &mut pkt).unwrap();
        dec.decode(&pkt[..n], &mut b).unwrap();
        down.process(&b, &mut frame).unwrap();
        out.extend_from_slice(&frame);
    }
    out
}

#[test]
fn codec_round_trip_scores_high() {
    let s = short_speech();
    let out = round_trip(&s);
    let score = spectral_similarity(&s, &out, 16_000);
    assert!(score >= 0.9, "round trip scored {score}");
}
