//! Opus encoder and decoder at 48 kHz with 20 ms frames, configured for speech.

use crate::frame::OPUS_RATE;
use crate::opus_packet::{self, OpusPacketError};

/// Samples per channel in a 20 ms frame at 48 kHz.
pub const OPUS_FRAME_SAMPLES: usize = 960;

/// Room for one encoded 20 ms frame: a TOC byte plus the largest frame RFC 6716 allows.
pub const MAX_ENCODED_BYTES: usize = 1276;

/// Encoder settings.
///
/// The defaults are what production calls should use: 32 kb/s is transparent for wideband
/// speech, complexity 5 halves the encoder's cost against 10 for a barely audible difference,
/// in-band FEC with 10 % expected loss lets the receiver rebuild a lost packet from the next
/// one, and DTX stays off so the far end's jitter buffer sees a steady packet stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusConfig {
    /// Target bitrate in bits per second (6 000..=510 000).
    pub bitrate: i32,
    /// Encoder complexity (0..=10).
    pub complexity: i32,
    /// In-band forward error correction.
    pub inband_fec: bool,
    /// Packet loss the encoder should expect, in percent; FEC only kicks in above 0.
    pub expected_loss_pct: i32,
    /// Discontinuous transmission (send almost nothing during silence).
    pub dtx: bool,
}

impl Default for OpusConfig {
    fn default() -> Self {
        OpusConfig {
            bitrate: 32_000,
            complexity: 5,
            inband_fec: true,
            expected_loss_pct: 10,
            dtx: false,
        }
    }
}

/// Errors from the codec layer.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// libopus refused a call.
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
    /// The payload is not a valid Opus packet; it never reached libopus.
    #[error("malformed packet: {0}")]
    Malformed(#[from] OpusPacketError),
    /// The packet holds more than one 20 ms frame, which this pipeline does not accept.
    #[error("packet lasts {0} samples at 48 kHz, expected at most 960")]
    UnsupportedDuration(u32),
    /// Input or output buffer of the wrong size.
    #[error("buffer holds {got} samples, expected {expected}")]
    BadLength {
        /// Samples given.
        got: usize,
        /// Samples needed.
        expected: usize,
    },
    /// Only mono and stereo are supported.
    #[error("unsupported channel count {0}")]
    Channels(u16),
}

fn channels(n: u16) -> Result<opus::Channels, CodecError> {
    match n {
        1 => Ok(opus::Channels::Mono),
        2 => Ok(opus::Channels::Stereo),
        other => Err(CodecError::Channels(other)),
    }
}

/// A 48 kHz, 20 ms, VOIP-mode Opus encoder.
pub struct OpusEncoder {
    inner: opus::Encoder,
    channels: u16,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("channels", &self.channels)
            .finish()
    }
}

impl OpusEncoder {
    /// An encoder for `channels` (1 or 2) with `config` applied.
    pub fn new(channels: u16, config: &OpusConfig) -> Result<OpusEncoder, CodecError> {
        let mut inner = opus::Encoder::new(
            OPUS_RATE,
            self::channels(channels)?,
            opus::Application::Voip,
        )?;
        inner.set_bitrate(opus::Bitrate::Bits(config.bitrate))?;
        inner.set_complexity(config.complexity)?;
        inner.set_inband_fec(config.inband_fec)?;
        inner.set_packet_loss_perc(config.expected_loss_pct)?;
        inner.set_dtx(config.dtx)?;
        Ok(OpusEncoder { inner, channels })
    }

    /// Encodes one 20 ms frame (960 samples per channel, interleaved) into `out`; returns the
    /// packet length.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        let expected = OPUS_FRAME_SAMPLES * usize::from(self.channels);
        if pcm.len() != expected {
            return Err(CodecError::BadLength {
                got: pcm.len(),
                expected,
            });
        }
        Ok(self.inner.encode(pcm, out)?)
    }
}

/// A 48 kHz Opus decoder with loss concealment.
pub struct OpusDecoder {
    inner: opus::Decoder,
    channels: u16,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder")
            .field("channels", &self.channels)
            .finish()
    }
}

impl OpusDecoder {
    /// A decoder producing `channels` (1 or 2) at 48 kHz.
    pub fn new(channels: u16) -> Result<OpusDecoder, CodecError> {
        Ok(OpusDecoder {
            inner: opus::Decoder::new(OPUS_RATE, self::channels(channels)?)?,
            channels,
        })
    }

    /// Channels produced.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    fn check_out(&self, out: &[i16]) -> Result<(), CodecError> {
        let expected = OPUS_FRAME_SAMPLES * usize::from(self.channels);
        if out.len() != expected {
            return Err(CodecError::BadLength {
                got: out.len(),
                expected,
            });
        }
        Ok(())
    }

    /// Decodes one packet into a 20 ms frame. The packet is validated by our own parser first;
    /// packets lasting other than 20 ms or less are refused, and shorter ones leave the rest of
    /// `out` as concealment.
    pub fn decode(&mut self, packet: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        self.check_out(out)?;
        let info = opus_packet::parse(packet)?;
        let dur = info.duration_samples_48k();
        if dur as usize > OPUS_FRAME_SAMPLES {
            return Err(CodecError::UnsupportedDuration(dur));
        }
        let n = self.inner.decode(packet, out, false)?;
        if n < OPUS_FRAME_SAMPLES {
            // A short packet (2.5..10 ms): fill the remainder with concealment.
            let ch = usize::from(self.channels);
            self.inner.decode(&[], &mut out[n * ch..], false)?;
        }
        Ok(OPUS_FRAME_SAMPLES)
    }

    /// Rebuilds a lost frame from the in-band FEC data of `next_packet` (the packet that follows
    /// the lost one). Falls back to plain concealment if the packet is malformed.
    pub fn decode_fec(&mut self, next_packet: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        self.check_out(out)?;
        if opus_packet::parse(next_packet).is_err() {
            return self.conceal(out);
        }
        Ok(self.inner.decode(next_packet, out, true)?)
    }

    /// Packet loss concealment: extrapolates one 20 ms frame from the decoder's history.
    pub fn conceal(&mut self, out: &mut [i16]) -> Result<usize, CodecError> {
        self.check_out(out)?;
        Ok(self.inner.decode(&[], out, false)?)
    }

    /// Forgets all history (after a stream resync).
    pub fn reset(&mut self) -> Result<(), CodecError> {
        Ok(self.inner.reset_state()?)
    }
}

/// True when the packet carries in-band FEC data for the frame before it (SILK or hybrid
/// mode with the LBRR flag set). Cheap: reads the first bits of the first frame only.
pub fn has_inband_fec(packet: &[u8]) -> bool {
    let Ok(info) = opus_packet::parse(packet) else {
        return false;
    };
    if info.mode == opus_packet::OpusMode::Celt || packet.len() < 2 {
        return false;
    }
    // For a single-frame (code 0) packet the first frame starts right after the TOC. The SILK
    // header's first bits are: VAD flag(s) then the LBRR flag, per channel, MSB first.
    if packet[0] & 0x03 != 0 {
        // Other framings need length parsing; libopus handles FEC for them anyway, so claim
        // FEC may be present and let the decoder decide.
        return true;
    }
    let frames_per_packet = match info.samples_per_frame_48k {
        1920 => 2,
        2880 => 3,
        _ => 1,
    };
    let mid = packet[1] >> (7 - frames_per_packet) & 1 == 1;
    let side = info.stereo && packet[1] >> (6 - 2 * frames_per_packet) & 1 == 1;
    mid || side
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, freq: f32) -> Vec<i16> {
        (0..n)
            .map(|i| ((i as f32 * freq * std::f32::consts::TAU / 48_000.0).sin() * 8000.0) as i16)
            .collect()
    }

    #[test]
    fn defaults_are_production_worthy() {
        let c = OpusConfig::default();
        assert!(c.complexity >= 5 && c.inband_fec && !c.dtx && c.expected_loss_pct > 0);
    }

    #[test]
    fn round_trip_keeps_a_tone() {
        let mut enc = OpusEncoder::new(1, &OpusConfig::default()).unwrap();
        let mut dec = OpusDecoder::new(1).unwrap();
        let pcm = tone(960 * 20, 440.0);
        let mut pkt = [0u8; MAX_ENCODED_BYTES];
        let mut out = vec![0i16; 960];
        let mut energy = 0f64;
        for f in pcm.chunks(960) {
            let n = enc.encode(f, &mut pkt).unwrap();
            assert!(n > 2 && n < 400);
            dec.decode(&pkt[..n], &mut out).unwrap();
            energy += out.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
        }
        let rms = (energy / pcm.len() as f64).sqrt();
        // A 8000-peak sine has RMS ~5657; allow for the codec's start-up.
        assert!(rms > 4000.0 && rms < 7000.0, "rms {rms}");
    }

    #[test]
    fn fec_is_present_with_defaults_and_used_for_loss() {
        let mut enc = OpusEncoder::new(1, &OpusConfig::default()).unwrap();
        let mut dec = OpusDecoder::new(1).unwrap();
        let pcm = tone(960 * 30, 300.0);
        let mut packets = Vec::new();
        let mut pkt = [0u8; MAX_ENCODED_BYTES];
        for f in pcm.chunks(960) {
            let n = enc.encode(f, &mut pkt).unwrap();
            packets.push(pkt[..n].to_vec());
        }
        assert!(packets[10..].iter().any(|p| has_inband_fec(p)));
        let mut out = vec![0i16; 960];
        for p in &packets[..20] {
            dec.decode(p, &mut out).unwrap();
        }
        // Packet 20 is lost: rebuild it from packet 21's FEC.
        assert_eq!(dec.decode_fec(&packets[21], &mut out).unwrap(), 960);
        assert!(out.iter().any(|&s| s != 0));
        assert_eq!(dec.conceal(&mut out).unwrap(), 960);
    }

    #[test]
    fn malformed_and_wrong_sizes_are_refused() {
        let mut dec = OpusDecoder::new(1).unwrap();
        let mut out = vec![0i16; 960];
        assert!(matches!(
            dec.decode(&[], &mut out),
            Err(CodecError::Malformed(_))
        ));
        assert!(matches!(
            dec.decode(&[0x08 | 3, 3, 1, 2], &mut out),
            Err(CodecError::Malformed(_))
        ));
        // 40 ms SILK packet is valid Opus but not a 20 ms frame.
        assert!(matches!(
            dec.decode(&[0x10, 0], &mut out),
            Err(CodecError::UnsupportedDuration(1920))
        ));
        let mut short = vec![0i16; 100];
        assert!(matches!(
            dec.conceal(&mut short),
            Err(CodecError::BadLength { .. })
        ));
        let mut enc = OpusEncoder::new(1, &OpusConfig::default()).unwrap();
        assert!(enc.encode(&[0; 10], &mut [0; 100]).is_err());
        assert!(OpusEncoder::new(3, &OpusConfig::default()).is_err());
    }
}
