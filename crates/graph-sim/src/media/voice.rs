//! What a simulated participant says, as 20 ms frames of 48 kHz mono PCM.
//!
//! Tones are keyed on and off in a seeded, irregular rhythm (like syllables): a steady tone has
//! no envelope to time an echo by, while a keyed one is still recognised by its frequency.
//! Speech and WAV files are looped; speakers of the same recording start at different points of
//! it (by seed) so their echoes can be told apart in the bot's mix.

use std::f64::consts::TAU;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use audio_pipeline::resample::{FrameResampler, ResamplerKind};
use test_kit::fixtures::speech_16k;

use super::measure::{FRAME, RATE};
use crate::scenario::{Turns, Voice};

/// Longest WAV file played (it is held in memory, converted to 48 kHz).
pub const MAX_WAV_SECONDS: u32 = 120;

/// Level of generated tones (about −10 dBFS peak).
const TONE_AMPLITUDE: f64 = 10_000.0;

/// Why a voice cannot be played.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VoiceError {
    /// The WAV file cannot be read.
    #[error("cannot read {path}: {reason}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Produces one participant's audio frame by frame.
#[derive(Debug)]
pub struct VoiceSource {
    kind: Kind,
    turns: Option<Turns>,
}

#[derive(Debug)]
enum Kind {
    Tone(KeyedTone),
    Loop { pcm: Arc<[i16]>, pos: usize },
}

#[derive(Debug)]
struct KeyedTone {
    step: f64,
    phase: f64,
    rng: u64,
    on: bool,
    /// Samples left in the current on or off stretch.
    left: usize,
    /// Current gain 0..=1, ramped to avoid clicks.
    gain: f64,
}

impl KeyedTone {
    fn next_rand(&mut self) -> u64 {
        // xorshift64: tiny, seeded, and the same on every platform.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn sample(&mut self) -> i16 {
        if self.left == 0 {
            self.on = !self.on;
            let ms = if self.on {
                150 + self.next_rand() % 450
            } else {
                80 + self.next_rand() % 320
            };
            self.left = ms as usize * (RATE as usize / 1000);
        }
        self.left -= 1;
        // 5 ms ramps.
        let ramp = 1.0 / (0.005 * f64::from(RATE));
        self.gain = if self.on {
            (self.gain + ramp).min(1.0)
        } else {
            (self.gain - ramp).max(0.0)
        };
        let v = (self.phase.sin() * TONE_AMPLITUDE * self.gain) as i16;
        self.phase = (self.phase + self.step) % TAU;
        v
    }
}

impl VoiceSource {
    /// The source for `voice`; `base_dir` resolves relative WAV paths (the scenario file's
    /// folder), `seed` varies the rhythm of tones and the start point of recordings.
    pub fn new(
        voice: &Voice,
        base_dir: Option<&Path>,
        seed: u64,
    ) -> Result<VoiceSource, VoiceError> {
        let kind = match voice {
            Voice::Tone { tone_hz } => Kind::Tone(KeyedTone {
                step: TAU * f64::from(*tone_hz) / f64::from(RATE),
                phase: 0.0,
                // Never zero, which would stall xorshift.
                rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
                on: false,
                left: 0,
                gain: 0.0,
            }),
            Voice::Speech => looped(speech_48k(), seed),
            Voice::Wav { wav } => {
                let path = match base_dir {
                    Some(dir) if wav.is_relative() => dir.join(wav),
                    _ => wav.clone(),
                };
                let pcm = read_wav_48k(&path).map_err(|reason| VoiceError::Wav {
                    path: path.clone(),
                    reason,
                })?;
                looped(pcm.into(), seed)
            }
        };
        Ok(VoiceSource { kind, turns: None })
    }

    /// Talks only in these turns (see [`Turns`]); `None`: all the time.
    pub fn with_turns(mut self, turns: Option<Turns>) -> VoiceSource {
        self.turns = turns;
        self
    }

    /// Writes the 20 ms said from `at_ms` on the call's media clock: silence outside the
    /// user's turns. The voice pauses meanwhile, so each turn carries on where the last ended.
    pub fn frame_at(&mut self, at_ms: u64, out: &mut [i16; FRAME]) {
        match self.turns {
            Some(t) if !t.talking_at(at_ms) => out.fill(0),
            _ => self.next_frame(out),
        }
    }

    /// Writes the next 20 ms.
    pub fn next_frame(&mut self, out: &mut [i16; FRAME]) {
        match &mut self.kind {
            Kind::Tone(t) => out.iter_mut().for_each(|s| *s = t.sample()),
            Kind::Loop { pcm, pos } => {
                for s in out.iter_mut() {
                    *s = pcm[*pos];
                    *pos = (*pos + 1) % pcm.len();
                }
            }
        }
    }
}

fn looped(pcm: Arc<[i16]>, seed: u64) -> Kind {
    if pcm.is_empty() {
        return Kind::Loop {
            pcm: Arc::from(vec![0i16; FRAME]),
            pos: 0,
        };
    }
    // Start 2.3 s further in per seed, so two speakers of one recording differ.
    let pos = (seed.wrapping_mul(23 * u64::from(RATE) / 10) % pcm.len() as u64) as usize;
    Kind::Loop { pcm, pos }
}

/// The built-in speech converted to 48 kHz once per process.
fn speech_48k() -> Arc<[i16]> {
    static SPEECH: OnceLock<Arc<[i16]>> = OnceLock::new();
    SPEECH
        .get_or_init(|| {
            resample_to_48k(&speech_16k(), 16_000)
                .unwrap_or_default()
                .into()
        })
        .clone()
}

/// Converts mono `pcm` at `rate` to 48 kHz with the pipeline's resampler (20 ms at a time).
fn resample_to_48k(pcm: &[i16], rate: u32) -> Result<Vec<i16>, String> {
    if rate == RATE {
        return Ok(pcm.to_vec());
    }
    let mut r =
        FrameResampler::new(ResamplerKind::default(), rate, RATE, 1).map_err(|e| e.to_string())?;
    let (fin, fout) = (r.input_samples(), r.output_samples());
    let mut out = Vec::with_capacity(pcm.len() * fout / fin.max(1) + fout);
    let mut frame_out = vec![0i16; fout];
    let mut frame_in = vec![0i16; fin];
    for chunk in pcm.chunks(fin) {
        frame_in.fill(0);
        frame_in[..chunk.len()].copy_from_slice(chunk);
        r.process(&frame_in, &mut frame_out)
            .map_err(|e| e.to_string())?;
        out.extend_from_slice(&frame_out);
    }
    // Drop the resampler's start-up delay so the loop starts where the recording does.
    out.drain(..r.delay().min(out.len()));
    Ok(out)
}

/// Reads a 16-bit PCM WAV file as 48 kHz mono (channels averaged).
fn read_wav_48k(path: &Path) -> Result<Vec<i16>, String> {
    let mut reader = hound::WavReader::open(path).map_err(|e| e.to_string())?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err("only 16-bit PCM WAV files are supported".into());
    }
    if spec.sample_rate % 50 != 0 || !(8_000..=192_000).contains(&spec.sample_rate) {
        return Err(format!(
            "sample rate {} Hz is not supported",
            spec.sample_rate
        ));
    }
    let channels = usize::from(spec.channels.max(1));
    let max = (MAX_WAV_SECONDS * spec.sample_rate) as usize * channels;
    let mut interleaved = Vec::new();
    for s in reader.samples::<i16>().take(max) {
        interleaved.push(s.map_err(|e| e.to_string())?);
    }
    let mono: Vec<i16> = interleaved
        .chunks_exact(channels)
        .map(|c| (c.iter().map(|&v| i32::from(v)).sum::<i32>() / channels as i32) as i16)
        .collect();
    if mono.is_empty() {
        return Err("no samples".into());
    }
    resample_to_48k(&mono, spec.sample_rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(v: &mut VoiceSource, n: usize) -> Vec<i16> {
        let mut out = Vec::new();
        let mut f = [0i16; FRAME];
        for _ in 0..n {
            v.next_frame(&mut f);
            out.extend_from_slice(&f);
        }
        out
    }

    #[test]
    fn keyed_tone_is_reproducible_and_has_gaps() {
        let voice = Voice::Tone { tone_hz: 440.0 };
        let a = frames(&mut VoiceSource::new(&voice, None, 3).unwrap(), 100);
        let b = frames(&mut VoiceSource::new(&voice, None, 3).unwrap(), 100);
        let c = frames(&mut VoiceSource::new(&voice, None, 4).unwrap(), 100);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let silent = a
            .chunks(FRAME)
            .filter(|f| f.iter().all(|&s| s == 0))
            .count();
        let loud = a
            .chunks(FRAME)
            .filter(|f| f.iter().any(|&s| s.unsigned_abs() > 9_000))
            .count();
        assert!(silent > 5 && loud > 30, "{silent} silent, {loud} loud");
    }

    #[test]
    fn speech_is_48k_and_offset_by_seed() {
        let a = frames(&mut VoiceSource::new(&Voice::Speech, None, 0).unwrap(), 50);
        let b = frames(&mut VoiceSource::new(&Voice::Speech, None, 1).unwrap(), 50);
        assert_ne!(a, b);
        assert!(speech_48k().len() > 48_000 * 5, "{}", speech_48k().len());
    }

    #[test]
    fn wav_files_are_read_and_looped() {
        let dir = std::env::temp_dir().join(format!("graph-sim-voice-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(dir.join("two.wav"), spec).unwrap();
        for i in 0..16_000 {
            let v = ((i as f64 * TAU * 300.0 / 16_000.0).sin() * 8000.0) as i16;
            w.write_sample(v).unwrap();
            w.write_sample(v).unwrap();
        }
        w.finalize().unwrap();
        let voice = Voice::Wav {
            wav: "two.wav".into(),
        };
        let mut v = VoiceSource::new(&voice, Some(&dir), 0).unwrap();
        // Three seconds out of a one-second file: it loops.
        let pcm = frames(&mut v, 150);
        assert!(
            pcm[pcm.len() - FRAME..]
                .iter()
                .any(|&s| s.unsigned_abs() > 4000)
        );
        let missing = Voice::Wav {
            wav: "none.wav".into(),
        };
        assert!(VoiceSource::new(&missing, Some(&dir), 0).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
