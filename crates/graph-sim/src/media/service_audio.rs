//! Service-hosted media as the people in a call hear it, and the responses the service records.
//!
//! With service-hosted media there is no media session to the bot: the simulated service itself
//! plays prompts and DTMF into the call. Each call's [`HeardAudio`] keeps those samples on the
//! call's clock (16 kHz mono, the prompts' own format, so a prompt is found in it sample for
//! sample), written out as `<call id>-heard.wav` and summed up in the report. A recorded
//! response is rendered from the voices of the people in the call and kept in the
//! [`RecordingStore`] the server serves recordings from.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::measure::FRAME;
use super::voice::VoiceSource;
use crate::service::SERVICE_AUDIO_RATE;

/// Longest stretch of heard audio kept per call (memory: 1.9 MB per minute).
const MAX_HEARD: Duration = Duration::from_secs(600);

/// Recordings the service made, as WAV files, by recording id. Shared by the media side (which
/// renders them) and the server (which serves them at their location).
#[derive(Debug, Clone, Default)]
pub struct RecordingStore(Arc<Mutex<HashMap<String, Arc<[u8]>>>>);

impl RecordingStore {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<[u8]>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the WAV bytes of recording `id`.
    pub fn put(&self, id: &str, wav: Vec<u8>) {
        self.lock().insert(id.to_owned(), wav.into());
    }

    /// Forgets recording `id` (the service discarded it).
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Number of recordings held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no recording is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The WAV bytes of recording `id`, once rendered.
    pub fn get(&self, id: &str) -> Option<Arc<[u8]>> {
        self.lock().get(id).cloned()
    }
}

/// What the people in one service-hosted call heard from the service.
#[derive(Debug)]
pub(super) struct HeardAudio {
    epoch: Instant,
    samples: Vec<i16>,
    /// Voices of the people in the call, by source id, for recordings.
    voices: Vec<(u32, VoiceSource)>,
    /// Pieces played (prompts, beeps, DTMF), cut ones included.
    pieces: u32,
}

/// A service-hosted call's heard audio, in the media report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HeardReport {
    /// The call.
    pub call_id: String,
    /// Pieces the service played (prompts, beeps, DTMF), cut ones included.
    pub pieces: u32,
    /// Length of the heard timeline, ms (from the call's first event to the end of the last
    /// piece).
    pub duration_ms: u64,
    /// Milliseconds that carried sound (a 20 ms block above −50 dBFS).
    pub sound_ms: u64,
    /// The WAV file of it, when recordings are kept.
    pub recording: Option<PathBuf>,
}

impl HeardAudio {
    pub(super) fn new(epoch: Instant) -> HeardAudio {
        HeardAudio {
            epoch,
            samples: Vec::new(),
            voices: Vec::new(),
            pieces: 0,
        }
    }

    fn offset(&self, at: Instant) -> usize {
        let d = at.saturating_duration_since(self.epoch);
        (d.as_micros() * u128::from(SERVICE_AUDIO_RATE) / 1_000_000) as usize
    }

    /// Mixes `audio` in from `at`.
    pub(super) fn play(&mut self, at: Instant, audio: &[i16]) {
        let start = self.offset(at);
        let limit = (MAX_HEARD.as_secs() * u64::from(SERVICE_AUDIO_RATE)) as usize;
        let end = (start + audio.len()).min(limit);
        if start >= end {
            return;
        }
        if self.samples.len() < end {
            self.samples.resize(end, 0);
        }
        for (out, s) in self.samples[start..end].iter_mut().zip(audio) {
            *out = out.saturating_add(*s);
        }
        self.pieces += 1;
    }

    /// Drops everything from `at` on (the bot cancelled what was still to play).
    pub(super) fn cut(&mut self, at: Instant) {
        let at = self.offset(at);
        self.samples.truncate(at);
    }

    /// A person in the call (their voice is what a recording takes).
    pub(super) fn add_voice(&mut self, source: u32, voice: VoiceSource) {
        self.voices.retain(|(s, _)| *s != source);
        self.voices.push((source, voice));
    }

    /// A person left.
    pub(super) fn remove_voice(&mut self, source: u32) {
        self.voices.retain(|(s, _)| *s != source);
    }

    /// What the people in the call said over `from..to`, as a 16 kHz mono WAV file; `clock_ms`
    /// is `from` on the call's clock, which their talk turns follow.
    pub(super) fn render_recording(
        &mut self,
        from: Instant,
        to: Instant,
        clock_ms: u64,
    ) -> Vec<u8> {
        let frames = (to.saturating_duration_since(from).as_millis() / 20) as usize;
        let per_frame = FRAME / 3;
        let mut mixed = vec![0i16; frames * per_frame];
        let mut said = [0i16; FRAME];
        for (_, voice) in &mut self.voices {
            for (n, frame) in mixed.chunks_exact_mut(per_frame).enumerate() {
                voice.frame_at(clock_ms + 20 * n as u64, &mut said);
                // 48 kHz to 16 kHz: the mean of each three samples (a plain low-pass, enough
                // for speech whose energy is far below 8 kHz).
                for (m, three) in frame.iter_mut().zip(said.chunks_exact(3)) {
                    let mean = three.iter().map(|&s| i32::from(s)).sum::<i32>() / 3;
                    *m = m.saturating_add(mean as i16);
                }
            }
        }
        wav_bytes(&mixed)
    }

    /// Writes the heard audio to `dir/<call>-heard.wav` (when `dir` is set) and sums it up.
    pub(super) fn finish(&self, call_id: &str, dir: Option<&Path>) -> HeardReport {
        let recording = dir.and_then(|dir| {
            let path = dir.join(format!("{call_id}-heard.wav"));
            std::fs::write(&path, wav_bytes(&self.samples)).ok()?;
            Some(path)
        });
        let sound_blocks = self
            .samples
            .chunks(320)
            .filter(|b| {
                let energy: f64 = b.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
                let rms = (energy / b.len().max(1) as f64).sqrt();
                rms > 32768.0 * 10f64.powf(-50.0 / 20.0)
            })
            .count() as u64;
        HeardReport {
            call_id: call_id.to_owned(),
            pieces: self.pieces,
            duration_ms: self.samples.len() as u64 * 1000 / u64::from(SERVICE_AUDIO_RATE),
            sound_ms: sound_blocks * 20,
            recording,
        }
    }
}

/// 16 kHz mono 16-bit WAV bytes of `samples`.
fn wav_bytes(samples: &[i16]) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SERVICE_AUDIO_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = Cursor::new(Vec::new());
    // Writing to memory fails only on sizes beyond 4 GB, which MAX_HEARD rules out.
    if let Ok(mut w) = hound::WavWriter::new(&mut out, spec) {
        for s in samples {
            let _ = w.write_sample(*s);
        }
        let _ = w.finalize();
    }
    out.into_inner()
}

/// Reads a prompt as Graph takes it: a WAV file of 16 kHz, mono, 16-bit PCM.
pub fn decode_prompt(bytes: &[u8]) -> Result<Vec<i16>, String> {
    let reader =
        hound::WavReader::new(Cursor::new(bytes)).map_err(|e| format!("not a WAV file: {e}"))?;
    let spec = reader.spec();
    if spec.sample_rate != SERVICE_AUDIO_RATE
        || spec.channels != 1
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(format!(
            "a prompt must be 16 kHz mono 16-bit PCM, this one is {} Hz, {} channel(s), {} bits",
            spec.sample_rate, spec.channels, spec.bits_per_sample
        ));
    }
    if reader.len() as usize > crate::service::MAX_PROMPT_SAMPLES {
        return Err("the prompt is too long".into());
    }
    reader
        .into_samples::<i16>()
        .collect::<Result<Vec<i16>, _>>()
        .map_err(|e| format!("reading the WAV samples: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_land_on_the_calls_clock_and_a_cut_drops_the_rest() {
        let t0 = Instant::now();
        let mut heard = HeardAudio::new(t0);
        heard.play(t0 + Duration::from_millis(100), &[1000; 1600]);
        assert_eq!(heard.samples.len(), 1600 + 1600);
        assert!(heard.samples[..1600].iter().all(|&s| s == 0));
        heard.cut(t0 + Duration::from_millis(150));
        assert_eq!(heard.samples.len(), 2400);
        let report = heard.finish("c", None);
        assert_eq!(report.pieces, 1);
        assert_eq!(report.duration_ms, 150);
        assert_eq!(
            report.sound_ms, 60,
            "the blocks from 100 ms to 150 ms (three 20 ms blocks)"
        );
    }

    #[test]
    fn prompts_are_read_only_in_graphs_format() {
        let ok = wav_bytes(&[1, 2, 3]);
        assert_eq!(decode_prompt(&ok), Ok(vec![1, 2, 3]));
        assert!(decode_prompt(b"RIFF....").is_err());
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut stereo = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut stereo, spec).unwrap();
        w.write_sample(0i16).unwrap();
        w.write_sample(0i16).unwrap();
        w.finalize().unwrap();
        assert!(
            decode_prompt(&stereo.into_inner())
                .unwrap_err()
                .contains("mono")
        );
    }
}
