//! A short speech recording for tests, benchmarks, the simulator's voices and the demo.
//!
//! Nine seconds of synthetic (espeak-ng) English at 16 kHz mono, embedded in the library so
//! every consumer gets the same input without touching the file system.

static SPEECH_16K_WAV: &[u8] = include_bytes!("../testdata/speech_16k.wav");

/// The speech fixture as 16 kHz mono samples.
pub fn speech_16k() -> Vec<i16> {
    wav_samples(SPEECH_16K_WAV).unwrap_or_default()
}

/// Reads the samples of a 16-bit PCM WAV file held in memory, or `None` if the bytes are not
/// one (any channel count: samples stay interleaved).
pub fn wav_samples(wav: &[u8]) -> Option<Vec<i16>> {
    let reader = hound::WavReader::new(std::io::Cursor::new(wav)).ok()?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return None;
    }
    reader.into_samples::<i16>().collect::<Result<_, _>>().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn fixture_is_speech_length_and_loud_enough() {
        let s = super::speech_16k();
        assert!(s.len() > 16_000 * 5, "{} samples", s.len());
        let rms = (s.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / s.len() as f64).sqrt();
        // -35 dBFS of full scale.
        assert!(rms > 32_768.0 * 10f64.powf(-35.0 / 20.0), "rms {rms}");
        assert!(super::wav_samples(b"RIFF....WAVEjunk").is_none());
    }
}
