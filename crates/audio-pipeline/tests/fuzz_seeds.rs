//! Seeds for the audio fuzz targets (`fuzz/seeds/{framer,opus_packet,jitter_buffer}`), made
//! from real audio: the speech fixture, encoded by the production encoder.
//!
//! `write_fuzz_seeds` (ignored) writes them; rerun it after changing an entry point's input
//! format: `cargo test --workspace -- --ignored write_fuzz_seeds`. It overwrites its own files
//! and leaves others (crash regressions) alone. `committed_seeds_pass_the_entry_points` runs
//! every committed seed through its entry point on each `cargo test`.

use std::path::PathBuf;

use audio_pipeline::_internal_test_exports::fuzz;
use audio_pipeline::codec::{OPUS_FRAME_SAMPLES, OpusConfig, OpusEncoder, has_inband_fec};

fn seeds_dir(target: &str) -> PathBuf {
    test_kit::seeds::dir(env!("CARGO_MANIFEST_DIR"), target)
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = seeds_dir(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// The speech fixture at 48 kHz (linear interpolation is enough for seeds).
fn speech_48k() -> Vec<i16> {
    let s = test_kit::fixtures::speech_16k();
    let mut out = Vec::with_capacity(s.len() * 3);
    for pair in s.windows(2) {
        let (a, b) = (i32::from(pair[0]), i32::from(pair[1]));
        for k in 0..3 {
            out.push((a + (b - a) * k / 3) as i16);
        }
    }
    out
}

/// The loudest 20 ms frame's index, so seeds carry speech rather than a pause.
fn loudest_frame(pcm: &[i16]) -> usize {
    pcm.chunks_exact(OPUS_FRAME_SAMPLES)
        .enumerate()
        .max_by_key(|(_, f)| f.iter().map(|&v| i64::from(v).abs()).sum::<i64>())
        .map_or(0, |(i, _)| i)
}

/// 20 ms packets of `pcm` from the production encoder with `config`.
fn encode(pcm: &[i16], config: &OpusConfig) -> Vec<Vec<u8>> {
    let mut enc = OpusEncoder::new(1, config).unwrap();
    let mut buf = [0u8; 1500];
    pcm.chunks_exact(OPUS_FRAME_SAMPLES)
        .map(|f| {
            let n = enc.encode(f, &mut buf).unwrap();
            buf[..n].to_vec()
        })
        .collect()
}

fn framer_seeds() {
    let pcm = test_kit::fixtures::speech_16k();
    // Four 50 ms pieces from around the loudest stretch.
    let start = (loudest_frame(&pcm) * OPUS_FRAME_SAMPLES).min(pcm.len() - 3200);
    // First byte: frame size - 1 (mod 64); then little-endian PCM, as the entry point reads it.
    for (name, frame, from) in [
        ("speech-frame20.bin", 19u8, start),
        ("speech-frame64.bin", 63, start + 800),
        ("speech-frame1.bin", 0, start + 1600),
        ("speech-frame33-odd.bin", 32, start + 2400),
    ] {
        let mut bytes = vec![frame];
        for &s in pcm.iter().skip(from).take(800) {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        if name.contains("odd") {
            // A trailing half sample: the framer must drop it.
            bytes.push(0x7f);
        }
        write("framer", name, &bytes);
    }
}

fn opus_seeds() {
    let pcm = speech_48k();
    let at = loudest_frame(&pcm) * OPUS_FRAME_SAMPLES;
    let voice = &pcm[at..at + OPUS_FRAME_SAMPLES * 4];
    let defaults = encode(voice, &OpusConfig::default());
    write("opus_packet", "voice-32k-fec.bin", &defaults[2]);
    let low = OpusConfig {
        bitrate: 12_000,
        ..OpusConfig::default()
    };
    write("opus_packet", "voice-12k-silk.bin", &encode(voice, &low)[2]);
    let silence = vec![0i16; OPUS_FRAME_SAMPLES * 20];
    let dtx = OpusConfig {
        dtx: true,
        ..OpusConfig::default()
    };
    let quiet = encode(&silence, &dtx);
    write("opus_packet", "silence-dtx.bin", quiet.last().unwrap());

    // Other encoder modes the far end may use: stereo music mode (CELT) in 10 ms frames.
    let mut celt =
        opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::Audio).unwrap();
    celt.set_bitrate(opus::Bitrate::Bits(96_000)).unwrap();
    let stereo: Vec<i16> = voice[..480].iter().flat_map(|&s| [s, s / 2]).collect();
    write(
        "opus_packet",
        "stereo-celt-10ms.bin",
        &celt.encode_vec(&stereo, 1500).unwrap(),
    );

    // Several frames in one packet (codes 1, 2 and 3) and padding, as a repacketizer makes them.
    let mut rp = opus::Repacketizer::new().unwrap();
    let mut out = [0u8; 4000];
    let n = rp.combine(&[&defaults[0], &defaults[0]], &mut out).unwrap();
    write("opus_packet", "two-equal-frames.bin", &out[..n]);
    let n = rp.combine(&[&defaults[0], &defaults[1]], &mut out).unwrap();
    write("opus_packet", "two-frames.bin", &out[..n]);
    let n = rp
        .combine(&[&defaults[0], &defaults[1], &defaults[2]], &mut out)
        .unwrap();
    write("opus_packet", "three-frames.bin", &out[..n]);
    let mut padded = defaults[3].clone();
    let len = padded.len();
    padded.resize(len + 40, 0);
    let n = opus::packet::pad(&mut padded, len).unwrap();
    write("opus_packet", "padded.bin", &padded[..n]);
}

/// One step of the jitter_buffer entry point's input (see its docs): `ms` (0-15) elapse first;
/// 8 or more also means SSRC 1 (the same bit).
fn step(ms: u8, push: bool, fec: bool, seq: u16, skew: i32) -> [u8; 6] {
    let payload = if fec { 0x00 } else { 0x04 };
    let kind = ms.min(15) << 4 | payload | u8::from(push);
    let [a, b] = seq.to_le_bytes();
    let [c, d, e, _] = skew.to_le_bytes();
    [kind, a, b, c, d, e]
}

fn jitter_seeds() {
    // A real stream's packets: which ones carry in-band FEC decides their stand-in payload (the
    // entry point's FEC and plain packets), so the buffer meets FEC where the encoder put it.
    let pcm = speech_48k();
    let at = loudest_frame(&pcm).saturating_sub(40) * OPUS_FRAME_SAMPLES;
    let end = (at + OPUS_FRAME_SAMPLES * 80).min(pcm.len());
    let fec: Vec<bool> = encode(&pcm[at..end], &OpusConfig::default())
        .iter()
        .map(|p| has_inband_fec(p))
        .collect();
    let base = 65_500u16; // wraps within the seeds

    let mut steady = Vec::new();
    for (i, &f) in fec.iter().enumerate() {
        let seq = base.wrapping_add(i as u16);
        // Every 20 ms a packet arrives (after 6 ms) and the buffer ticks (after 7 and 7 more).
        steady.extend(step(6, true, f, seq, 0));
        steady.extend(step(7, false, false, 0, 0));
        steady.extend(step(7, false, false, 0, 0));
    }
    write("jitter_buffer", "steady-wrap.bin", &steady);

    // Network trouble: every 7th lost, pairs swapped, a few duplicated, bursts after gaps.
    let mut rough = Vec::new();
    let mut i = 0usize;
    while i + 1 < fec.len() {
        let seq = base.wrapping_add(i as u16);
        match i % 10 {
            3 => {
                rough.extend(step(7, true, fec[i + 1], seq.wrapping_add(1), 0));
                rough.extend(step(0, true, fec[i], seq, 0));
                i += 1;
            }
            6 => {}
            8 => {
                rough.extend(step(7, true, fec[i], seq, 0));
                rough.extend(step(1, true, fec[i], seq, 0));
            }
            _ => rough.extend(step(
                if i.is_multiple_of(5) { 0 } else { 7 },
                true,
                fec[i],
                seq,
                0,
            )),
        }
        rough.extend(step(7, false, false, 0, 0));
        rough.extend(step(6, false, false, 0, 0));
        i += 1;
    }
    write("jitter_buffer", "loss-reorder-dup.bin", &rough);

    // The sender restarts: a timestamp jump, then a new SSRC, each followed by a steady run.
    let mut restart = Vec::new();
    for (i, &f) in fec.iter().take(60).enumerate() {
        let seq = 1000u16.wrapping_add(i as u16);
        let skew = match i {
            20 => 5_000_000,
            _ => 0,
        };
        if i < 40 {
            restart.extend(step(7, true, f, seq, skew));
            restart.extend(step(7, false, false, 0, 0));
            restart.extend(step(6, false, false, 0, 0));
        } else {
            // SSRC 1: the elapsed-time nibble's top bit is set, so 8 + 12 ms.
            restart.extend(step(8, true, f, seq, skew));
            restart.extend(step(12, false, false, 0, 0));
        }
    }
    write("jitter_buffer", "restart-ssrc.bin", &restart);
}

#[test]
#[ignore = "writes fuzz/seeds; run to regenerate them"]
fn write_fuzz_seeds() {
    framer_seeds();
    opus_seeds();
    jitter_seeds();
}

#[test]
fn committed_seeds_pass_the_entry_points() {
    test_kit::seeds::check_committed(
        env!("CARGO_MANIFEST_DIR"),
        &[
            ("framer", fuzz::framer),
            ("opus_packet", fuzz::opus_packet),
            ("jitter_buffer", fuzz::jitter_buffer),
        ],
    );
}
