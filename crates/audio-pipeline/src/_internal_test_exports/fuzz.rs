//! Entry points for the fuzz targets in `fuzz/`, kept here so the targets stay one-liners and
//! the fuzzed code is the shipped code. Not a stable API.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::framer::Framer;
use crate::jitter::{JitterBuffer, JitterConfig, Playout, PushOutcome, RtpAudio};
use crate::opus_packet;

/// Splits `data` into chunks (sizes taken from the data itself) and checks that the framer
/// emits exactly the bytes fed, in whole frames, padded only by `flush`.
pub fn framer(data: &[u8]) {
    let Some((&size_seed, rest)) = data.split_first() else {
        return;
    };
    let frame = usize::from(size_seed % 64) + 1;
    let mut framer = Framer::with_frame_samples(frame);
    let mut out: Vec<i16> = Vec::new();
    let mut pos = 0;
    let mut i = 0usize;
    while pos < rest.len() {
        // Chunk lengths cycle through the bytes themselves: 0..=255, odd ones included.
        let len = usize::from(rest[i % rest.len()]).min(rest.len() - pos);
        let emitted = framer.push(&rest[pos..pos + len], |f| {
            assert_eq!(f.len(), frame);
            out.extend_from_slice(f);
        });
        assert!(emitted <= len / 2 / frame + 1);
        pos += len;
        i += 1;
        if i > rest.len() * 2 {
            // All-zero chunk lengths: feed the rest at once.
            framer.push(&rest[pos..], |f| out.extend_from_slice(f));
            break;
        }
    }
    framer.flush(|f| out.extend_from_slice(f));
    let whole = rest.len() / 2;
    assert_eq!(out.len(), whole.div_ceil(frame) * frame);
    for (k, pair) in rest.chunks_exact(2).enumerate() {
        assert_eq!(out[k], i16::from_le_bytes([pair[0], pair[1]]));
    }
    assert!(out[whole..].iter().all(|&s| s == 0));
}

/// Parses `data` with our reader and with libopus's; wherever libopus accepts the packet, both
/// must agree on frame count and duration, and ours must accept exactly what libopus accepts.
pub fn opus_packet(data: &[u8]) {
    let ours = opus_packet::parse(data);
    if data.len() > opus_packet::MAX_PACKET_BYTES {
        assert!(ours.is_err());
        return;
    }
    let theirs = opus::packet::parse(data).ok().and_then(|p| {
        let samples = opus::packet::get_nb_samples(data, 48_000).ok()?;
        Some((p.frames.len(), samples))
    });
    match (ours, theirs) {
        (Ok(info), Some((frames, samples))) => {
            assert_eq!(usize::from(info.frame_count), frames, "frame count");
            assert_eq!(info.duration_samples_48k() as usize, samples, "duration");
        }
        (Err(_), None) => {}
        (ours, theirs) => panic!("disagree on {data:02x?}: ours {ours:?}, libopus {theirs:?}"),
    }
}

/// RTP timestamp units per 20 ms packet at 48 kHz.
const TS_PER_PACKET: i32 = 960;

/// Drives a jitter buffer with packets and ticks decoded from `data` and checks its counters
/// stay consistent.
///
/// Six bytes per step: `kind`, the sequence number (2 bytes, little-endian) and a timestamp
/// skew (3 bytes, little-endian, signed). `kind`'s high nibble is the milliseconds elapsed
/// before the step (its top bit also picks the SSRC), bits 0-1 choose a tick (0) or a push,
/// bits 2-3 the payload. A pushed packet's timestamp is the last pushed one's moved by 960 per
/// sequence step, plus the skew: a well-behaved sender is skew 0 throughout (sequence wraps
/// included), a restart is a large skew.
pub fn jitter_buffer(data: &[u8]) {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let mut now = t0;
    let mut pushed = 0u64;
    let (mut last_seq, mut last_ts) = (0u16, 0u32);
    for op in data.chunks(6) {
        let [kind, a, b, c, d, e] = match *op {
            [k, a, b, c, d, e] => [k, a, b, c, d, e],
            _ => return,
        };
        now += Duration::from_millis(u64::from(kind >> 4));
        match kind & 3 {
            0 => {
                let _ = jb.pop(now);
            }
            _ => {
                let seq = u16::from_le_bytes([a, b]);
                let skew = i32::from_le_bytes([c, d, e, if e & 0x80 == 0 { 0 } else { 0xff }]);
                let steps = i32::from(seq.wrapping_sub(last_seq) as i16);
                let ts = last_ts
                    .wrapping_add_signed(steps * TS_PER_PACKET)
                    .wrapping_add_signed(skew);
                (last_seq, last_ts) = (seq, ts);
                let payload = match kind & 0x0c {
                    0 => Bytes::from_static(&[0x08, 0x40, 0x11]),
                    4 => Bytes::from_static(&[0x08, 0x00]),
                    8 => Bytes::copy_from_slice(op),
                    _ => Bytes::new(),
                };
                let ssrc = u32::from(kind >> 7);
                let out = jb.push(
                    RtpAudio {
                        seq,
                        timestamp: ts,
                        ssrc,
                        payload,
                    },
                    now,
                );
                pushed += 1;
                if let PushOutcome::Malformed(_) = out {
                    assert!(kind & 0x0c >= 8);
                }
            }
        }
        if let Playout::Fec(p) | Playout::Packet(p) = jb.pop(now) {
            assert!(opus_packet::parse(&p).is_ok());
        }
    }
    let s = jb.stats();
    assert_eq!(s.received + s.duplicate + s.late + s.malformed, pushed);
    assert!(s.fec_recovered <= s.concealed);
}

#[cfg(test)]
mod tests {
    #[test]
    fn entry_points_accept_odd_inputs() {
        super::framer(&[]);
        super::framer(&[3, 0, 0, 0]);
        super::framer(&[0, 1, 2, 3, 4, 5, 6, 7, 8]);
        super::opus_packet(&[]);
        super::opus_packet(&[0x0b, 0x41, 255]);
        super::jitter_buffer(&[1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xff]);
    }
}
