//! A bounded reader of the Opus packet structure (RFC 6716, section 3).
//!
//! Every received payload passes through [`parse`] before the jitter buffer or libopus sees it,
//! so malformed packets are counted and dropped instead of being handed to C code, and the
//! jitter buffer knows each packet's duration.

/// Largest payload accepted: 120 ms of 1275-byte frames can never exceed this in practice, and
/// an RTP payload on a UDP datagram is smaller still.
pub const MAX_PACKET_BYTES: usize = 4000;

/// Largest compressed frame RFC 6716 allows.
const MAX_FRAME_BYTES: usize = 1275;

/// Longest packet duration at 48 kHz: 120 ms.
const MAX_PACKET_SAMPLES_48K: u32 = 5760;

/// Codec mode selected by the TOC byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpusMode {
    /// Linear-prediction (SILK) only.
    Silk,
    /// SILK for the low band plus CELT for the high band.
    Hybrid,
    /// Transform (CELT) only.
    Celt,
}

/// Audio bandwidth selected by the TOC byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpusBandwidth {
    /// 4 kHz.
    Narrowband,
    /// 6 kHz.
    Mediumband,
    /// 8 kHz.
    Wideband,
    /// 12 kHz.
    SuperWideband,
    /// 20 kHz.
    Fullband,
}

/// What a valid packet holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusPacketInfo {
    /// The TOC byte's configuration number (0..=31).
    pub config: u8,
    /// Codec mode.
    pub mode: OpusMode,
    /// Audio bandwidth.
    pub bandwidth: OpusBandwidth,
    /// True when the stereo flag is set.
    pub stereo: bool,
    /// Samples per frame at 48 kHz (120 = 2.5 ms up to 2880 = 60 ms).
    pub samples_per_frame_48k: u32,
    /// Number of frames (1..=48).
    pub frame_count: u8,
    /// Bytes of padding (code 3 only).
    pub padding: usize,
}

impl OpusPacketInfo {
    /// Total duration at 48 kHz.
    pub fn duration_samples_48k(&self) -> u32 {
        self.samples_per_frame_48k * u32::from(self.frame_count)
    }

    /// Total duration in microseconds.
    pub fn duration_us(&self) -> u32 {
        self.duration_samples_48k() * 1000 / 48
    }
}

/// Why a packet was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpusPacketError {
    /// Zero bytes: not even a TOC byte.
    #[error("empty packet")]
    Empty,
    /// Larger than [`MAX_PACKET_BYTES`].
    #[error("packet of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// A length field or frame runs past the end of the packet.
    #[error("packet truncated")]
    Truncated,
    /// Code 1 packet whose payload cannot split into two equal frames.
    #[error("code 1 packet with odd payload length")]
    OddCbrLength,
    /// Code 3 with zero frames or more than 120 ms of audio.
    #[error("invalid frame count {0}")]
    BadFrameCount(u8),
    /// Code 3 constant-bitrate payload not divisible by the frame count.
    #[error("code 3 CBR payload not divisible by frame count")]
    UnevenCbr,
    /// A frame longer than 1275 bytes.
    #[error("frame of {0} bytes exceeds 1275")]
    FrameTooLarge(usize),
}

/// Validates `packet` and describes it. Never panics and reads only inside `packet`.
///
/// The rules are RFC 6716 section 3.2 as libopus's `opus_packet_parse` applies them, so the two
/// accept exactly the same packets (the `opus_packet` fuzz target checks this).
pub fn parse(packet: &[u8]) -> Result<OpusPacketInfo, OpusPacketError> {
    if packet.len() > MAX_PACKET_BYTES {
        return Err(OpusPacketError::TooLarge(packet.len()));
    }
    let (&toc, mut rest) = packet.split_first().ok_or(OpusPacketError::Empty)?;
    let config = toc >> 3;
    let (mode, bandwidth, samples_per_frame_48k) = describe_config(config);
    let mut info = OpusPacketInfo {
        config,
        mode,
        bandwidth,
        stereo: toc & 0x04 != 0,
        samples_per_frame_48k,
        frame_count: 1,
        padding: 0,
    };
    let last_size = match toc & 0x03 {
        0 => rest.len(),
        1 => {
            info.frame_count = 2;
            if rest.len() % 2 != 0 {
                return Err(OpusPacketError::OddCbrLength);
            }
            rest.len() / 2
        }
        2 => {
            info.frame_count = 2;
            let (first, used) = read_size(rest)?;
            rest = &rest[used..];
            if first > rest.len() {
                return Err(OpusPacketError::Truncated);
            }
            rest.len() - first
        }
        _ => {
            let (&ch, tail) = rest.split_first().ok_or(OpusPacketError::Truncated)?;
            rest = tail;
            let count = ch & 0x3f;
            if count == 0 || u32::from(count) * samples_per_frame_48k > MAX_PACKET_SAMPLES_48K {
                return Err(OpusPacketError::BadFrameCount(count));
            }
            info.frame_count = count;
            if ch & 0x40 != 0 {
                // Padding length: bytes of 255 mean "254 more, and another length byte follows".
                loop {
                    let (&p, tail) = rest.split_first().ok_or(OpusPacketError::Truncated)?;
                    rest = tail;
                    let add = if p == 255 { 254 } else { usize::from(p) };
                    info.padding += add;
                    if p != 255 {
                        break;
                    }
                }
                // Padding sits at the end; what remains for frames must still be non-negative.
                if info.padding > rest.len() {
                    return Err(OpusPacketError::Truncated);
                }
                rest = &rest[..rest.len() - info.padding];
            }
            if ch & 0x80 != 0 {
                // VBR: a length for every frame but the last.
                let mut remaining = rest.len();
                let mut total_data = 0usize;
                for _ in 0..count - 1 {
                    let (size, used) = read_size(rest)?;
                    rest = &rest[used..];
                    remaining -= used;
                    if size > remaining {
                        return Err(OpusPacketError::Truncated);
                    }
                    total_data += size;
                }
                // The headers were all read; the frames' bytes follow them.
                rest.len()
                    .checked_sub(total_data)
                    .ok_or(OpusPacketError::Truncated)?
            } else {
                let n = usize::from(count);
                if rest.len() % n != 0 {
                    return Err(OpusPacketError::UnevenCbr);
                }
                rest.len() / n
            }
        }
    };
    if last_size > MAX_FRAME_BYTES {
        return Err(OpusPacketError::FrameTooLarge(last_size));
    }
    Ok(info)
}

/// Reads a frame length (one byte below 252, else two bytes).
fn read_size(data: &[u8]) -> Result<(usize, usize), OpusPacketError> {
    match data {
        [] => Err(OpusPacketError::Truncated),
        [b0, ..] if *b0 < 252 => Ok((usize::from(*b0), 1)),
        [_] => Err(OpusPacketError::Truncated),
        [b0, b1, ..] => Ok((usize::from(*b1) * 4 + usize::from(*b0), 2)),
    }
}

/// Mode, bandwidth and frame size for a TOC configuration number (RFC 6716 table 2).
fn describe_config(config: u8) -> (OpusMode, OpusBandwidth, u32) {
    use OpusBandwidth::*;
    match config {
        0..=11 => {
            let bw = match config / 4 {
                0 => Narrowband,
                1 => Mediumband,
                _ => Wideband,
            };
            // SILK: 10, 20, 40, 60 ms.
            let size = [480, 960, 1920, 2880][usize::from(config % 4)];
            (OpusMode::Silk, bw, size)
        }
        12..=15 => {
            let bw = if config < 14 { SuperWideband } else { Fullband };
            (OpusMode::Hybrid, bw, [480, 960][usize::from(config % 2)])
        }
        _ => {
            let bw = match (config - 16) / 4 {
                0 => Narrowband,
                1 => Wideband,
                2 => SuperWideband,
                _ => Fullband,
            };
            // CELT: 2.5, 5, 10, 20 ms.
            (
                OpusMode::Celt,
                bw,
                [120, 240, 480, 960][usize::from(config % 4)],
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn libopus_view(p: &[u8]) -> Option<(usize, usize)> {
        let parsed = opus::packet::parse(p).ok()?;
        let samples = opus::packet::get_nb_samples(p, 48_000).ok()?;
        Some((parsed.frames.len(), samples))
    }

    #[test]
    fn real_encoder_packets_parse() {
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let pcm: Vec<i16> = (0..960)
            .map(|i| ((i as f32 * 0.07).sin() * 8000.0) as i16)
            .collect();
        let mut out = [0u8; 1500];
        for _ in 0..5 {
            let n = enc.encode(&pcm, &mut out).unwrap();
            let info = parse(&out[..n]).unwrap();
            assert_eq!(info.frame_count, 1);
            assert_eq!(info.duration_samples_48k(), 960);
            assert_eq!(info.duration_us(), 20_000);
        }
    }

    #[test]
    fn frame_count_codes() {
        // Config 1 = SILK NB 20 ms.
        let toc = 1 << 3;
        assert_eq!(parse(&[toc, 1, 2, 3]).unwrap().frame_count, 1);
        assert_eq!(parse(&[toc | 1, 1, 2]).unwrap().frame_count, 2);
        assert_eq!(
            parse(&[toc | 1, 1, 2, 3]),
            Err(OpusPacketError::OddCbrLength)
        );
        assert_eq!(parse(&[toc | 2, 1, 9, 8]).unwrap().frame_count, 2);
        assert_eq!(parse(&[toc | 2, 5, 9]), Err(OpusPacketError::Truncated));
        assert_eq!(parse(&[toc | 2]), Err(OpusPacketError::Truncated));
        // Code 3, CBR, 3 frames of 1 byte.
        assert_eq!(parse(&[toc | 3, 3, 1, 2, 3]).unwrap().frame_count, 3);
        assert_eq!(parse(&[toc | 3, 3, 1, 2]), Err(OpusPacketError::UnevenCbr));
        // 7 x 20 ms > 120 ms.
        assert_eq!(parse(&[toc | 3, 7]), Err(OpusPacketError::BadFrameCount(7)));
        assert_eq!(parse(&[toc | 3, 0]), Err(OpusPacketError::BadFrameCount(0)));
        // Code 3, VBR, padding 2 bytes, 2 frames: sizes 1 and rest.
        let p = [toc | 3, 0x80 | 0x40 | 2, 2, 1, 0xaa, 0xbb, 0xcc, 0, 0];
        let info = parse(&p).unwrap();
        assert_eq!((info.frame_count, info.padding), (2, 2));
        assert_eq!(parse(&[]), Err(OpusPacketError::Empty));
        assert!(matches!(
            parse(&vec![0u8; MAX_PACKET_BYTES + 1]),
            Err(OpusPacketError::TooLarge(_))
        ));
        assert_eq!(
            parse(&vec![toc; 1277]),
            Err(OpusPacketError::FrameTooLarge(1276))
        );
    }

    #[test]
    fn agrees_with_libopus_on_handmade_packets() {
        let cases: Vec<Vec<u8>> = vec![
            vec![0x08, 1],
            vec![0x09, 1, 2],
            vec![0x0a, 1, 2, 3],
            vec![0x0b, 0xc2, 255, 3, 1, 2, 3],
            vec![0xfb, 0x83, 1, 1, 4, 5, 6],
            vec![0x0b, 0x41, 255],
            vec![0x0a, 252],
            vec![0x0a, 252, 0, 1],
        ];
        for p in cases {
            let ours = parse(&p).ok().map(|i| {
                (
                    usize::from(i.frame_count),
                    i.duration_samples_48k() as usize,
                )
            });
            assert_eq!(ours, libopus_view(&p), "packet {p:02x?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn matches_libopus(p in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let ours = parse(&p).ok().map(|i| (usize::from(i.frame_count), i.duration_samples_48k() as usize));
            proptest::prop_assert_eq!(ours, libopus_view(&p));
        }
    }
}
