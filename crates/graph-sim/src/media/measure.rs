//! Echo measurements as plain functions: where a participant's speech comes back in the bot's
//! audio (echo delay) and how alike it sounds (similarity).
//!
//! Everything works on [`Timeline`]s: mono 48 kHz signals placed on one sample clock that starts
//! when the call's media side starts, so what a participant said and what the bot sent back can
//! be compared sample for sample.
//!
//! Echo delay is estimated on how the level of each frequency band changes over time rather than
//! on waveforms: Opus keeps how speech sounds but not its phase, so waveform correlation gives
//! weak, smeared peaks after the codec, while band levels survive it. Band levels also pick one
//! participant out of the bot's mix: another talker's changes do not correlate with this one's,
//! and a tone occupies one band, not all. A steady tone has no changes to time an echo by, which
//! is why the simulator's tones are keyed on and off (see [`super::voice`]).

use realfft::RealFftPlanner;
use serde::Serialize;

/// The sample rate of every timeline: Opus's native rate.
pub const RATE: u32 = 48_000;

/// Samples in one 20 ms frame at [`RATE`].
pub const FRAME: usize = 960;

/// Step of the feature grid the delay is searched on (5 ms); peaks are interpolated between.
const HOP: usize = (RATE / 200) as usize;

/// Analysis window of each feature frame (about 10.7 ms).
const WIN: usize = 512;

/// Frequency bands of the features.
const BANDS: usize = 16;

/// Level below which a band counts as silent, dB relative to full scale.
const FLOOR_DB: f32 = -60.0;

/// A mono signal starting at sample `start` of the call's clock.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    /// Position of the first sample on the call's clock.
    pub start: i64,
    /// The samples, at [`RATE`].
    pub samples: Vec<i16>,
}

impl Timeline {
    /// An empty signal starting at `start`.
    pub fn starting_at(start: i64) -> Timeline {
        Timeline {
            start,
            samples: Vec::new(),
        }
    }

    /// Position one past the last sample.
    pub fn end(&self) -> i64 {
        self.start + self.samples.len() as i64
    }

    /// The samples in `from..to` of the call's clock (silence where the signal has none).
    pub fn window(&self, from: i64, to: i64) -> Vec<i16> {
        (from..to)
            .map(|p| {
                usize::try_from(p - self.start)
                    .ok()
                    .and_then(|i| self.samples.get(i).copied())
                    .unwrap_or(0)
            })
            .collect()
    }
}

/// How echo delay is searched for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DelayParams {
    /// Length of each analysed stretch of the participant's speech, in ms.
    pub window_ms: usize,
    /// Step between stretches, in ms.
    pub hop_ms: usize,
    /// Longest delay searched, in ms.
    pub max_delay_ms: usize,
    /// Weakest normalised correlation peak (0–1) accepted as a detection.
    pub min_peak: f32,
}

impl Default for DelayParams {
    fn default() -> Self {
        DelayParams {
            window_ms: 2000,
            hop_ms: 1000,
            max_delay_ms: 1000,
            min_peak: 0.4,
        }
    }
}

/// Band levels of `t` every 5 ms on the absolute grid of the call's clock: frame `i` starts at
/// sample `(first + i) * HOP`, and holds [`BANDS`] levels in dB. Returns `(first, frames)`.
///
/// Per-band levels rather than one envelope pick a talker out of a mix: another talker (a tone,
/// say) dominates a few bands, not all of them.
fn band_levels(t: &Timeline) -> (i64, Vec<[f32; BANDS]>) {
    let first = t.start.div_euclid(HOP as i64) + 1;
    let offset = (first * HOP as i64 - t.start) as usize;
    let mut planner = RealFftPlanner::<f32>::new();
    let fft = planner.plan_fft_forward(WIN);
    let window: Vec<f32> = (0..WIN)
        .map(|i| 0.5 - 0.5 * (std::f32::consts::TAU * i as f32 / WIN as f32).cos())
        .collect();
    // Log-spaced band edges (in FFT bins) from 150 Hz to 7 kHz, each at least one bin wide.
    let mut edges = [0usize; BANDS + 1];
    for (i, e) in edges.iter_mut().enumerate() {
        let f = 150.0 * (7000.0f64 / 150.0).powf(i as f64 / BANDS as f64);
        *e = (f * WIN as f64 / f64::from(RATE)).round() as usize;
    }
    for i in 1..edges.len() {
        edges[i] = edges[i].max(edges[i - 1] + 1);
    }
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut frames = Vec::new();
    let mut at = offset;
    while at + WIN <= t.samples.len() {
        for (x, (s, w)) in input
            .iter_mut()
            .zip(t.samples[at..at + WIN].iter().zip(&window))
        {
            *x = f32::from(*s) / 32_768.0 * w;
        }
        let mut levels = [FLOOR_DB; BANDS];
        if fft.process(&mut input, &mut spectrum).is_ok() {
            for (b, level) in levels.iter_mut().enumerate() {
                let p: f32 = spectrum[edges[b]..edges[b + 1].min(spectrum.len())]
                    .iter()
                    .map(|c| c.norm_sqr())
                    .sum::<f32>()
                    / WIN as f32;
                *level = (10.0 * p.max(1e-12).log10()).max(FLOOR_DB);
            }
        }
        frames.push(levels);
        at += HOP;
    }
    (first, frames)
}

/// Cross-correlation `c[l] = Σ_n a[n]·b[n+l]` for `l` in `0..=max_lag`, by FFT. `b` must hold
/// at least `a.len() + max_lag` values (missing ones count as zero).
fn xcorr(a: &[f32], b: &[f32], max_lag: usize) -> Vec<f32> {
    let n = (a.len() + max_lag + 1).next_power_of_two() * 2;
    let mut planner = RealFftPlanner::<f32>::new();
    let fwd = planner.plan_fft_forward(n);
    let inv = planner.plan_fft_inverse(n);
    let mut ta = vec![0f32; n];
    ta[..a.len()].copy_from_slice(a);
    let mut tb = vec![0f32; n];
    let nb = b.len().min(n);
    tb[..nb].copy_from_slice(&b[..nb]);
    let mut fa = fwd.make_output_vec();
    let mut fb = fwd.make_output_vec();
    // Lengths match the plan, so these cannot fail.
    if fwd.process(&mut ta, &mut fa).is_err() || fwd.process(&mut tb, &mut fb).is_err() {
        return vec![0.0; max_lag + 1];
    }
    // conj(A)·B gives the correlation of a against b shifted forward.
    for (x, y) in fa.iter_mut().zip(&fb) {
        *x = x.conj() * y;
    }
    let mut out = inv.make_output_vec();
    if inv.process(&mut fa, &mut out).is_err() {
        return vec![0.0; max_lag + 1];
    }
    let scale = 1.0 / n as f32;
    out.truncate(max_lag + 1);
    out.iter_mut().for_each(|v| *v *= scale);
    out
}

/// One delay estimate per analysed stretch of `said` in which the participant talks and the
/// echo is recognisable, in ms (fractional: the peak is interpolated between 5 ms steps).
///
/// For each stretch, every band's level over time (its mean removed) is cross-correlated with
/// the same band of `heard` at each delay; the correlations are summed over bands and
/// normalised, so the score is 1 when `heard` holds the same level changes, however loud.
pub fn echo_delays(said: &Timeline, heard: &Timeline, params: &DelayParams) -> Vec<f64> {
    let step_ms = 1000.0 * HOP as f64 / f64::from(RATE);
    let (s0, sf) = band_levels(said);
    let (h0, hf) = band_levels(heard);
    let w = ((params.window_ms as f64 / step_ms) as usize).max(10);
    let hop = ((params.hop_ms as f64 / step_ms) as usize).max(1);
    let lmax = (params.max_delay_ms as f64 / step_ms) as usize;
    let mut out = Vec::new();
    let mut i = 0;
    while i + w <= sf.len() {
        let at = i;
        i += hop;
        let start = s0 + at as i64;
        let (mut num, mut r_energy, mut h_var) = (vec![0f64; lmax + 1], 0f64, vec![0f64; lmax + 1]);
        let means: Vec<f32> = (0..BANDS)
            .map(|b| sf[at..at + w].iter().map(|f| f[b]).sum::<f32>() / w as f32)
            .collect();
        let loudest = means.iter().copied().fold(FLOOR_DB, f32::max);
        for (b, &mean) in means.iter().enumerate() {
            // Bands far below the talker's loudest hold leakage and noise, and in a mix
            // mostly other talkers: leave them out.
            if mean < loudest - 30.0 {
                continue;
            }
            let r: Vec<f32> = sf[at..at + w].iter().map(|f| f[b]).collect();
            let centred: Vec<f32> = r.iter().map(|v| v - mean).collect();
            let e: f32 = centred.iter().map(|v| v * v).sum();
            // A band that does not change says nothing about timing.
            if e / (w as f32) < 1.0 {
                continue;
            }
            r_energy += f64::from(e);
            let h: Vec<f32> = (0..(w + lmax) as i64)
                .map(|k| {
                    usize::try_from(start + k - h0)
                        .ok()
                        .and_then(|j| hf.get(j))
                        .map_or(FLOOR_DB, |f| f[b])
                })
                .collect();
            let c = xcorr(&centred, &h, lmax);
            // Each delay's normaliser is the variance of `h` under the window, by prefix sums.
            let (mut p1, mut p2) = (vec![0f64; h.len() + 1], vec![0f64; h.len() + 1]);
            for (k, &v) in h.iter().enumerate() {
                p1[k + 1] = p1[k] + f64::from(v);
                p2[k + 1] = p2[k] + f64::from(v) * f64::from(v);
            }
            for l in 0..=lmax {
                num[l] += f64::from(c[l]);
                let s = p1[l + w] - p1[l];
                h_var[l] += ((p2[l + w] - p2[l]) - s * s / w as f64).max(0.0);
            }
        }
        // Too little variation: silence or a steady sound.
        if r_energy < (w * 4) as f64 {
            continue;
        }
        let score: Vec<f64> = (0..=lmax)
            .map(|l| {
                if h_var[l] <= 1e-9 {
                    0.0
                } else {
                    num[l] / (r_energy * h_var[l]).sqrt()
                }
            })
            .collect();
        let Some((best, &peak)) = score.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)) else {
            continue;
        };
        if peak < f64::from(params.min_peak) {
            continue;
        }
        // Parabolic interpolation through the peak and its neighbours.
        let mut lag = best as f64;
        if best > 0 && best < lmax {
            let (a, c) = (score[best - 1], score[best + 1]);
            let d = a - 2.0 * peak + c;
            if d < 0.0 {
                lag += (0.5 * (a - c) / d).clamp(-0.5, 0.5);
            }
        }
        out.push(lag * step_ms);
    }
    out
}

/// The `q`-quantile (0–1) of `values` by nearest rank; `None` when empty.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// Longest stretch scored for similarity: the score settles long before, and the measure's cost
/// grows with length.
const MAX_SIMILARITY_SAMPLES: usize = 20 * RATE as usize;

/// Length of each piece of speech scored on its own (see [`echo_similarity`]).
const SIMILARITY_PIECE: i64 = RATE as i64 / 2;

/// How far the echo of a piece is searched for around the median delay: a receiver's jitter
/// buffer that grows or shrinks moves the delay by whole frames, and one that waited out a
/// stall of the sender's host (100–130 ms seen on a shared 2-core machine) plays everything
/// after it that much later until it catches up.
const ALIGN_MARGIN: i64 = RATE as i64 / 5;

/// A piece in which less than this share of 20 ms frames carries speech is not scored.
const MIN_VOICED_SHARE: f64 = 0.2;

/// How alike `said` and what came back around `delay_ms` later sound, with audio-pipeline's
/// [`test_kit::similarity`] score (the project's one definition of it).
///
/// The stretch where both signals exist (at most 20 s, less the last [`ALIGN_MARGIN`] before
/// the recording ends) is scored in half-second pieces and the scores are averaged, weighted
/// by how much of each piece is speech. Each piece is placed on its own within ±200 ms of the
/// median delay: where its band envelope matches best, at the median delay or where the piece
/// before sat, whichever scores highest; or, when it scores higher, as a step inside the
/// piece (its first half where the piece before sat, its second placed on its own). A
/// receiver's jitter buffer adapts to the network by moving the delay a frame at a time, or
/// by a stall's length after waiting one out; a listener does not hear that as a change in
/// how the echo sounds, and placing each piece this way keeps it from reading as one.
pub fn echo_similarity(said: &Timeline, heard: &Timeline, delay_ms: f64) -> Option<f32> {
    let shift = (delay_ms * f64::from(RATE) / 1000.0).round() as i64;
    let from = said.start.max(heard.start - shift);
    // What was said in the last moments before a hang-up may not have come back yet: at a
    // delay above the median its echo would fall after the recording's end.
    let to = said
        .end()
        .min(heard.end() - shift - ALIGN_MARGIN)
        .min(from + MAX_SIMILARITY_SAMPLES as i64);
    if to - from < i64::from(RATE) / 2 {
        return None;
    }
    let (mut sum, mut weight) = (0f64, 0f64);
    // Where the previous piece's echo sat, in samples after what was said: after a stall the
    // echo stays that much later until the receiver catches up.
    let mut last = shift;
    let mut a = from;
    while a < to {
        // A short tail is scored with the piece before it.
        let b = if to - (a + SIMILARITY_PIECE) < SIMILARITY_PIECE / 2 {
            to
        } else {
            a + SIMILARITY_PIECE
        };
        if let Some(whole) = score_span(said, heard, a, b, shift, last) {
            // A delay that moved inside the piece leaves no one placement right for all of
            // it. Read as a step, the first half where the piece before sat and the second
            // placed on its own, it is; the better reading is kept. (Placing both halves
            // freely would also lift unrelated speech: 0.42 against 0.32 in the tests.)
            let m = a + (b - a) / 2;
            let first = score_at(said, heard, a, m, last);
            let second = first.and_then(|f| score_span(said, heard, m, b, shift, f.delay));
            let span = match (first, second) {
                (Some(x), Some(y)) => {
                    let stepped = (x.score * x.weight + y.score * y.weight) / (x.weight + y.weight);
                    if stepped > whole.score {
                        Span {
                            score: stepped,
                            delay: y.delay,
                            ..whole
                        }
                    } else {
                        whole
                    }
                }
                _ => whole,
            };
            sum += span.score * span.weight;
            weight += span.weight;
            last = span.delay;
        }
        a = b;
    }
    (weight > 0.0).then(|| (sum / weight) as f32)
}

/// One stretch of speech scored against its echo.
#[derive(Debug, Clone, Copy)]
struct Span {
    score: f64,
    /// How much of the stretch is speech, in samples.
    weight: f64,
    /// Where its echo was placed, in samples after what was said.
    delay: i64,
}

/// Scores `said` over `a..b` against `heard` `delay` samples later, with no search. `None`
/// when the stretch is too quiet to score.
fn score_at(said: &Timeline, heard: &Timeline, a: i64, b: i64, delay: i64) -> Option<Span> {
    let reference = said.window(a, b);
    let voiced = voiced_share(&reference);
    (voiced >= MIN_VOICED_SHARE).then(|| Span {
        score: f64::from(test_kit::similarity::spectral_similarity_at(
            &reference,
            &heard.window(a + delay, b + delay),
            RATE,
            0,
        )),
        weight: voiced * (b - a) as f64,
        delay,
    })
}

/// Scores `said` over `a..b` against its echo in `heard`, searched within [`ALIGN_MARGIN`] of
/// `shift` (the median delay), also trying `shift` itself and `last` (where the stretch before
/// sat). `None` when the stretch is too quiet to score.
fn score_span(
    said: &Timeline,
    heard: &Timeline,
    a: i64,
    b: i64,
    shift: i64,
    last: i64,
) -> Option<Span> {
    let reference = said.window(a, b);
    let voiced = voiced_share(&reference);
    if voiced < MIN_VOICED_SHARE {
        return None;
    }
    // The candidate reaches the margin beyond both ends, so the echo is inside it wherever
    // within the margin it landed. It stops where the recording does: past its ends there is
    // no audio, only the zeros `window` pads with, and a placement that lays the reference's
    // quiet edge over those can match better than the true echo does.
    let first = (a + shift - ALIGN_MARGIN).max(heard.start);
    let candidate = heard.window(first, (b + shift + ALIGN_MARGIN).min(heard.end()));
    let expected = [a + shift - first, a + last - first].map(|l| l as isize);
    let (score, lag) = test_kit::similarity::spectral_similarity_within_best_of(
        &reference, &candidate, RATE, &expected,
    );
    Some(Span {
        score: f64::from(score),
        weight: voiced * (b - a) as f64,
        delay: first + lag as i64 - a,
    })
}

/// Share of the 20 ms frames of `pcm` louder than -50 dBFS.
fn voiced_share(pcm: &[i16]) -> f64 {
    let frames = pcm.chunks(FRAME);
    let n = frames.len().max(1);
    let voiced = pcm
        .chunks(FRAME)
        .filter(|f| audio_pipeline::mix::level_dbfs(f) > -50.0)
        .count();
    voiced as f64 / n as f64
}

/// Echo delay and similarity of one participant.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EchoReport {
    /// Stretches in which a delay was detected.
    pub detections: usize,
    /// Detections set aside as false peaks (over [`MAX_DEVIATION_MS`] from the median).
    pub rejected: usize,
    /// Median echo delay, ms.
    pub delay_ms_p50: Option<f64>,
    /// 95th percentile echo delay, ms.
    pub delay_ms_p95: Option<f64>,
    /// Similarity (0–1) of what came back to what was said, aligned by the median delay.
    pub similarity: Option<f32>,
    /// The individual detections, ms (kept for totals over participants).
    #[serde(skip)]
    pub delays_ms: Vec<f64>,
}

/// Detections further than this from the median are taken for false peaks (a tone's rhythm
/// matching itself one beat off, say) rather than a change of delay.
pub const MAX_DEVIATION_MS: f64 = 100.0;

/// Measures how `said` comes back in `heard`.
pub fn echo_report(said: &Timeline, heard: &Timeline, params: &DelayParams) -> EchoReport {
    let mut delays = echo_delays(said, heard, params);
    let mut rejected = 0;
    if let Some(median) = percentile(&delays, 0.5).filter(|_| delays.len() >= 3) {
        let before = delays.len();
        delays.retain(|d| (d - median).abs() <= MAX_DEVIATION_MS);
        rejected = before - delays.len();
    }
    let p50 = percentile(&delays, 0.5);
    EchoReport {
        detections: delays.len(),
        rejected,
        delay_ms_p50: p50,
        delay_ms_p95: percentile(&delays, 0.95),
        similarity: p50.and_then(|d| echo_similarity(said, heard, d)),
        delays_ms: delays,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::voice::VoiceSource;
    use crate::scenario::Voice;

    fn render(voice: &Voice, seed: u64, frames: usize) -> Vec<i16> {
        let mut v = VoiceSource::new(voice, None, seed).unwrap();
        let mut out = Vec::new();
        let mut f = [0i16; FRAME];
        for _ in 0..frames {
            v.next_frame(&mut f);
            out.extend_from_slice(&f);
        }
        out
    }

    fn delayed(signal: &[i16], start: i64, delay: usize) -> Timeline {
        let mut samples = vec![0i16; delay];
        samples.extend_from_slice(signal);
        Timeline { start, samples }
    }

    #[test]
    fn finds_a_known_delay_of_keyed_tone_and_speech() {
        for (voice, seed) in [(Voice::Tone { tone_hz: 440.0 }, 1), (Voice::Speech, 2)] {
            let said = render(&voice, seed, 300);
            let start = 12_345;
            let heard = delayed(&said, start, 48 * 87); // 87 ms
            let r = echo_report(
                &Timeline {
                    start,
                    samples: said.clone(),
                },
                &heard,
                &DelayParams::default(),
            );
            let p50 = r.delay_ms_p50.expect("detected");
            assert!((p50 - 87.0).abs() < 1.5, "{voice:?}: {p50}");
            assert!(r.detections >= 3, "{voice:?}: {r:?}");
            assert!(r.similarity.unwrap() > 0.95, "{voice:?}: {r:?}");
        }
    }

    #[test]
    fn an_echo_that_comes_back_later_after_a_stall_still_sounds_alike() {
        // Eight seconds of speech echoed 60 ms later; at 2.25 s the listener's buffer grew by
        // a frame (80 ms from then on, the median), and at 4.25 s it waited out a 120 ms
        // stall (silence) and played the rest that much later.
        let said = render(&Voice::Speech, 5, 400);
        let start = 48_000;
        let ms = |n: usize| 48 * n;
        let mut echo = vec![0i16; ms(60)];
        echo.extend_from_slice(&said[..ms(2_250)]);
        echo.extend(std::iter::repeat_n(0, ms(20)));
        echo.extend_from_slice(&said[ms(2_250)..ms(4_250)]);
        echo.extend(std::iter::repeat_n(0, ms(120)));
        echo.extend_from_slice(&said[ms(4_250)..]);
        let heard = Timeline {
            start,
            samples: echo,
        };
        let said = Timeline {
            start,
            samples: said,
        };
        let score = echo_similarity(&said, &heard, 80.0).unwrap();
        assert!(score > 0.9, "{score}");
    }

    /// `pcm` through an Opus encoder and decoder, twice over (the caller's and the bot's), as
    /// an echo bot's audio reaches the simulator.
    fn through_opus_twice(pcm: &[i16]) -> Vec<i16> {
        use audio_pipeline::codec::{OpusConfig, OpusDecoder, OpusEncoder};
        let mut signal = pcm.to_vec();
        for _ in 0..2 {
            let mut enc = OpusEncoder::new(1, &OpusConfig::default()).unwrap();
            let mut dec = OpusDecoder::new(1).unwrap();
            let (mut packet, mut out) = ([0u8; 1500], [0i16; FRAME]);
            let mut next = Vec::with_capacity(signal.len());
            for frame in signal.chunks_exact(FRAME) {
                let n = enc.encode(frame, &mut packet).unwrap();
                dec.decode(&packet[..n], &mut out).unwrap();
                next.extend_from_slice(&out);
            }
            signal = next;
        }
        signal
    }

    /// Eight seconds of speech and its echo through the codec, recorded from the echo's first
    /// sample on: 60 ms late, 20 ms later after each of `grows` (the receiver's buffer grew by
    /// a frame of silence there) and 20 ms earlier after each of `shrinks` (a frame left out),
    /// all on the said audio's clock in ms, and ending where the caller hung up.
    fn moving_echo(seed: u64, grows: &[usize], shrinks: &[usize]) -> (Timeline, Timeline) {
        let said = render(&Voice::Speech, seed, 400);
        let coded = through_opus_twice(&said);
        let ms = |n: usize| 48 * n;
        let mut cuts: Vec<(usize, bool)> = grows.iter().map(|&t| (t, true)).collect();
        cuts.extend(shrinks.iter().map(|&t| (t, false)));
        cuts.sort_unstable();
        let (mut echo, mut at) = (Vec::new(), 0);
        for (t, grow) in cuts {
            echo.extend_from_slice(&coded[at..ms(t)]);
            if grow {
                echo.extend(std::iter::repeat_n(0, ms(20)));
                at = ms(t);
            } else {
                at = ms(t + 20);
            }
        }
        echo.extend_from_slice(&coded[at..]);
        let start = 48_000;
        // The hang-up: the recording stops when the caller's audio does.
        echo.truncate(said.len() - ms(60));
        (
            Timeline {
                start,
                samples: said,
            },
            Timeline {
                start: start + ms(60) as i64,
                samples: echo,
            },
        )
    }

    #[test]
    fn an_echo_whose_delay_moves_inside_pieces_and_at_the_ends_scores_as_a_steady_one() {
        let (said, steady) = moving_echo(7, &[], &[]);
        let reference = echo_similarity(&said, &steady, 60.0).unwrap();
        assert!(reference > 0.93, "a steady echo scored {reference}");
        // Steps mid-piece, the last two just before the hang-up, as a buffer growing under a
        // stall and shrinking after it moves the delay; and one right at the start.
        let (said, moving) = moving_echo(7, &[130, 1_370, 3_120, 7_610, 7_700], &[5_880]);
        let median = 80.0;
        let score = echo_similarity(&said, &moving, median).unwrap();
        assert!(
            score > reference - 0.02,
            "moving echo {score} against steady {reference}"
        );
    }

    #[test]
    fn what_is_not_the_echo_scores_low_however_it_is_placed() {
        let said = Timeline {
            start: 0,
            samples: render(&Voice::Speech, 7, 400),
        };
        let other_talker = render(&Voice::Speech, 8_000, 420);
        let mut x = 0x9e37_79b9u32;
        let noise: Vec<i16> = (0..other_talker.len())
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 19) as i16 - 4096
            })
            .collect();
        let tone = render(&Voice::Tone { tone_hz: 440.0 }, 3, 420);
        for (name, heard) in [
            ("another talker", other_talker),
            ("noise", noise),
            ("tone", tone),
        ] {
            let heard = Timeline {
                start: 0,
                samples: heard,
            };
            let score = echo_similarity(&said, &heard, 80.0).unwrap_or(0.0);
            assert!(score < 0.4, "{name} scored {score}");
        }
    }

    #[test]
    fn picks_each_talker_out_of_a_mix() {
        let a = render(&Voice::Speech, 3, 300);
        let b = render(&Voice::Tone { tone_hz: 1000.0 }, 4, 300);
        // The "bot" mixes both at half level, a 60 ms late.
        let d = 48 * 60;
        let mut mix = vec![0i16; a.len() + d];
        for (i, m) in mix.iter_mut().enumerate().skip(d) {
            *m = ((i32::from(a[i - d]) + i32::from(b[i - d])) / 2) as i16;
        }
        let heard = Timeline {
            start: 0,
            samples: mix,
        };
        for said in [a, b] {
            let said = Timeline {
                start: 0,
                samples: said,
            };
            let r = echo_report(&said, &heard, &DelayParams::default());
            let p50 = r.delay_ms_p50.expect("detected");
            assert!((p50 - 60.0).abs() < 2.0, "{p50}");
        }
    }

    #[test]
    fn silence_and_unrelated_audio_give_no_delay() {
        let said = Timeline {
            start: 0,
            samples: render(&Voice::Speech, 5, 200),
        };
        let silent = Timeline {
            start: 0,
            samples: vec![0; said.samples.len()],
        };
        assert_eq!(
            echo_report(&said, &silent, &DelayParams::default()).detections,
            0
        );
        let other = Timeline {
            start: 0,
            samples: render(&Voice::Tone { tone_hz: 700.0 }, 99, 200),
        };
        let r = echo_report(&said, &other, &DelayParams::default());
        assert!(r.detections <= 1, "{r:?}");
    }

    #[test]
    fn a_lone_far_detection_is_set_aside() {
        // Said: speech; heard: its echo 40 ms late for 6 s, then 700 ms late for 2 s.
        let said = render(&Voice::Speech, 6, 400);
        let mut heard = vec![0i16; said.len() + 48 * 800];
        let split = 300 * FRAME;
        heard[48 * 40..48 * 40 + split].copy_from_slice(&said[..split]);
        heard[split + 48 * 700..48 * 700 + said.len()].copy_from_slice(&said[split..]);
        let r = echo_report(
            &Timeline {
                start: 0,
                samples: said,
            },
            &Timeline {
                start: 0,
                samples: heard,
            },
            &DelayParams::default(),
        );
        assert!(r.rejected >= 1, "{r:?}");
        assert!(r.delay_ms_p95.unwrap() < 60.0, "{r:?}");
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&v, 0.5), Some(3.0));
        assert_eq!(percentile(&v, 0.95), Some(5.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn timeline_windows_pad_with_silence() {
        let t = Timeline {
            start: 10,
            samples: vec![1, 2, 3],
        };
        assert_eq!(t.window(8, 15), vec![0, 0, 1, 2, 3, 0, 0]);
        assert_eq!(t.end(), 13);
    }
}
