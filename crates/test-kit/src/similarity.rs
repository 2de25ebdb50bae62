//! A 0–1 measure of how alike two recordings sound, on short-time spectra.
//!
//! Used to check that speech survives the pipeline (codec round trip, network simulation,
//! demo). Byte-exact comparison is useless after a lossy codec, and plain waveform correlation
//! breaks on the codec's phase changes, so this compares what a listener hears: how energy is
//! spread over frequency bands, frame by frame.

/// Compares `candidate` with `reference`, both mono at `sample_rate`; 1.0 means the same
/// short-time spectra, 0 means unrelated.
///
/// Method: the candidate is first aligned to the reference by the lag (up to ±250 ms) that best
/// correlates their 1 ms energy envelopes, which absorbs codec and resampler delay. Both are cut
/// into 32 ms Hann windows every 10 ms; each window's power spectrum is summed into 24
/// log-spaced bands between 100 Hz and 7 kHz (or Nyquist) and taken in dB, floored at −80 dBFS.
/// The score is the Pearson correlation of the two band-energy matrices over the windows where
/// the reference is not silent, clamped to 0–1. A clean Opus round trip of speech scores above
/// 0.9; silence, noise, audio at the wrong sample rate or byte-swapped samples score below 0.3.
pub fn spectral_similarity(reference: &[i16], candidate: &[i16], sample_rate: u32) -> f32 {
    let rate = sample_rate.max(1000) as usize;
    let lag = best_lag(reference, candidate, rate, Lags::Around);
    similarity_at(reference, candidate, rate, lag)
}

/// Like [`spectral_similarity`], for a `candidate` longer than `reference` that holds the
/// reference's echo somewhere inside it: only placements of the whole reference within the
/// candidate are searched.
///
/// An echo found in a window cut with a margin around where it is expected is scored this way.
/// A lag at which the two overlap only in part compares a few hundred ms of envelope, and on
/// speech such a short stretch can correlate better by chance than the true, whole placement
/// (a half-second piece of a correct echo then scores near 0 against a stray syllable).
pub fn spectral_similarity_within(reference: &[i16], candidate: &[i16], sample_rate: u32) -> f32 {
    let rate = sample_rate.max(1000) as usize;
    let lag = best_lag(reference, candidate, rate, Lags::Inside);
    similarity_at(reference, candidate, rate, lag)
}

/// Like [`spectral_similarity_within`], but the placement whose envelope correlates best is
/// only one candidate: each of `expected` (placements the caller has reason to believe in,
/// in samples from the candidate's start, such as where the echo sat so far) is scored too,
/// and the best score wins. Returns it with its placement.
///
/// The envelope search is a cheap proxy and on speech it can prefer a placement a few tens of
/// ms off, where a pause lines up with a quieter stretch; scoring the believed placement as
/// well keeps such a slip from reading as damaged audio. Placements that do not hold the whole
/// reference inside the candidate are skipped. Taking the best of a handful cannot lift
/// unrelated audio far: every placement of it scores low.
pub fn spectral_similarity_within_best_of(
    reference: &[i16],
    candidate: &[i16],
    sample_rate: u32,
    expected: &[isize],
) -> (f32, isize) {
    let rate = sample_rate.max(1000) as usize;
    let room = candidate.len().saturating_sub(reference.len()) as isize;
    let found = best_lag(reference, candidate, rate, Lags::Inside);
    let mut best = (similarity_at(reference, candidate, rate, found), found);
    for (i, &lag) in expected.iter().enumerate() {
        if lag != found && !expected[..i].contains(&lag) && (0..=room).contains(&lag) {
            let score = similarity_at(reference, candidate, rate, lag);
            if score > best.0 {
                best = (score, lag);
            }
        }
    }
    best
}

/// [`spectral_similarity`] of `candidate` placed `lag` samples late against `reference`, with
/// no search: for a caller that knows where the echo sits.
pub fn spectral_similarity_at(
    reference: &[i16],
    candidate: &[i16],
    sample_rate: u32,
    lag: isize,
) -> f32 {
    similarity_at(reference, candidate, sample_rate.max(1000) as usize, lag)
}

/// Which lags [`best_lag`] searches.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lags {
    /// Up to ±250 ms, wherever at least 50 ms overlap.
    Around,
    /// Those placing the whole reference inside the candidate.
    Inside,
}

/// The score of `candidate` shifted by `lag` samples against `reference`.
fn similarity_at(reference: &[i16], candidate: &[i16], rate: usize, lag: isize) -> f32 {
    // Positive lag: the candidate is late by `lag` samples.
    // Negative lag: the candidate is early, so the reference is advanced instead.
    let cand: &[i16] = if lag >= 0 {
        candidate.get(lag as usize..).unwrap_or(&[])
    } else {
        candidate
    };
    let refr: &[i16] = if lag < 0 {
        reference.get((-lag) as usize..).unwrap_or(&[])
    } else {
        reference
    };
    let len = refr.len().min(cand.len());
    let win = (rate * 32 / 1000).next_power_of_two();
    let hop = rate / 100;
    if len < win {
        return 0.0;
    }
    let bands = band_edges(win, rate);
    let ref_spec = band_spectrogram(&refr[..len], win, hop, &bands);
    let cand_spec = band_spectrogram(&cand[..len], win, hop, &bands);
    let nb = bands.len() - 1;
    // Only windows where the reference has signal: leading and trailing silence would
    // otherwise inflate agreement.
    let floor = -80.0 + 15.0;
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for (r, c) in ref_spec.chunks(nb).zip(cand_spec.chunks(nb)) {
        let peak = r.iter().copied().fold(f32::MIN, f32::max);
        if peak > floor {
            xs.extend_from_slice(r);
            ys.extend_from_slice(c);
        }
    }
    pearson(&xs, &ys).clamp(0.0, 1.0)
}

fn pearson(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    if n < 2 {
        return 0.0;
    }
    let mx = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    let my = y.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0f64, 0f64, 0f64);
    for (&a, &b) in x.iter().zip(y) {
        let (a, b) = (f64::from(a) - mx, f64::from(b) - my);
        sxy += a * b;
        sxx += a * a;
        syy += b * b;
    }
    if sxx <= 1e-12 || syy <= 1e-12 {
        return 0.0;
    }
    (sxy / (sxx * syy).sqrt()) as f32
}

/// Lag (in samples, candidate relative to reference) among `lags` maximizing the correlation
/// of 1 ms log energy envelopes.
fn best_lag(reference: &[i16], candidate: &[i16], rate: usize, lags: Lags) -> isize {
    let block = (rate / 1000).max(1);
    let env = |s: &[i16]| -> Vec<f32> {
        s.chunks(block)
            .map(|c| {
                let e: f64 = c.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / c.len() as f64;
                (10.0 * (e + 1.0).log10()) as f32
            })
            .collect()
    };
    let (er, ec) = (env(reference), env(candidate));
    let range = match lags {
        Lags::Around => -250isize..=250,
        Lags::Inside => 0..=(ec.len().saturating_sub(er.len()) as isize),
    };
    let mut best = (f32::MIN, 0isize);
    for lag in range {
        let (a, b): (&[f32], &[f32]) = if lag >= 0 {
            (&er[..], ec.get(lag as usize..).unwrap_or(&[]))
        } else {
            (er.get((-lag) as usize..).unwrap_or(&[]), &ec[..])
        };
        let n = a.len().min(b.len());
        if n < 50 {
            continue;
        }
        let r = pearson(&a[..n], &b[..n]);
        if r > best.0 {
            best = (r, lag);
        }
    }
    best.1 * block as isize
}

/// FFT bin edges of 24 log-spaced bands from 100 Hz to min(7 kHz, Nyquist).
fn band_edges(win: usize, rate: usize) -> Vec<usize> {
    let lo = 100.0f64;
    let hi = (rate as f64 / 2.0).min(7000.0);
    let n = 24;
    let mut edges: Vec<usize> = (0..=n)
        .map(|i| {
            let f = lo * (hi / lo).powf(i as f64 / n as f64);
            ((f * win as f64 / rate as f64).round() as usize).min(win / 2)
        })
        .collect();
    // Every band gets at least one bin.
    for i in 1..edges.len() {
        if edges[i] <= edges[i - 1] {
            edges[i] = edges[i - 1] + 1;
        }
    }
    edges
}

fn band_spectrogram(x: &[i16], win: usize, hop: usize, edges: &[usize]) -> Vec<f32> {
    let nb = edges.len() - 1;
    let window: Vec<f32> = (0..win)
        .map(|i| 0.5 - 0.5 * (std::f32::consts::TAU * i as f32 / win as f32).cos())
        .collect();
    let tw = twiddles(win);
    let mut re = vec![0f32; win];
    let mut im = vec![0f32; win];
    let mut out = Vec::new();
    let mut start = 0;
    while start + win <= x.len() {
        for i in 0..win {
            re[i] = f32::from(x[start + i]) / 32_768.0 * window[i];
            im[i] = 0.0;
        }
        fft(&mut re, &mut im, &tw);
        for b in 0..nb {
            let (a, z) = (edges[b], edges[b + 1].min(win / 2 + 1));
            let p: f32 = (a..z.max(a + 1))
                .map(|k| re[k] * re[k] + im[k] * im[k])
                .sum();
            let p = p / win as f32;
            out.push((10.0 * p.max(1e-8).log10()).max(-80.0));
        }
        start += hop;
    }
    out
}

/// `(cos, sin)` of `-2πk/n` for `k < n/2`: the twiddle factors of an `n`-point [`fft`].
fn twiddles(n: usize) -> Vec<(f32, f32)> {
    (0..n / 2)
        .map(|k| {
            let (s, c) = (-std::f32::consts::TAU * k as f32 / n as f32).sin_cos();
            (c, s)
        })
        .collect()
}

/// In-place radix-2 FFT; `re.len()` must be a power of two and `tw` its [`twiddles`]. The
/// factors come from a table because computing them in the butterflies made the transform,
/// and so every similarity score, several times slower.
fn fft(re: &mut [f32], im: &mut [f32], tw: &[(f32, f32)]) {
    let n = re.len();
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let step = n / len;
        for start in (0..n).step_by(len) {
            for k in 0..len / 2 {
                let (c, s) = tw[k * step];
                let (a, b) = (start + k, start + k + len / 2);
                let tr = re[b] * c - im[b] * s;
                let ti = re[b] * s + im[b] * c;
                re[b] = re[a] - tr;
                im[b] = im[a] - ti;
                re[a] += tr;
                im[a] += ti;
            }
        }
        len <<= 1;
    }
}

/// Power of the frequency `hz` in `pcm` (mono at `sample_rate`), by the Goertzel recurrence:
/// how tests and tools check that a known tone came through, or that another did not. Not
/// normalised: compare powers over the same samples, or divide by `pcm.len()²`.
pub fn tone_power(pcm: &[i16], sample_rate: u32, hz: f64) -> f64 {
    let w = std::f64::consts::TAU * hz / f64::from(sample_rate.max(1));
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in pcm {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::speech_16k;

    fn short_speech() -> Vec<i16> {
        // Three seconds keep the debug-build test quick.
        speech_16k()[..48_000].to_vec()
    }

    #[test]
    fn identical_audio_scores_one() {
        let s = short_speech();
        assert!(spectral_similarity(&s, &s, 16_000) > 0.999);
    }

    #[test]
    fn early_or_late_candidates_are_aligned() {
        let s = short_speech();
        // 30 ms late, and 30 ms early (the candidate misses the reference's first 30 ms).
        let late: Vec<i16> = std::iter::repeat_n(0, 480)
            .chain(s.iter().copied())
            .collect();
        let early = &s[480..];
        for (name, candidate) in [("late", &late[..]), ("early", early)] {
            let score = spectral_similarity(&s, candidate, 16_000);
            assert!(score > 0.95, "{name} candidate scored {score}");
        }
    }

    #[test]
    fn an_echo_is_scored_where_the_whole_of_it_lies_not_at_a_stray_fragment() {
        // Half a second of speech, sought in a window with 100 ms of margin on each side.
        let s = short_speech();
        let reference = &s[8_000..16_000];
        let margin = vec![0i16; 1_600];
        let inside: Vec<i16> = margin
            .iter()
            .chain(reference)
            .chain(&margin)
            .copied()
            .collect();
        assert!(spectral_similarity_within(reference, &inside, 16_000) > 0.99);
        // The echo is missing, but the window starts with the reference's second half (as
        // if it had come 350 ms early): overlapping that half alone is not finding the echo.
        let fragment: Vec<i16> = reference[4_000..]
            .iter()
            .copied()
            .chain(std::iter::repeat_n(0, 7_200))
            .collect();
        let missing = spectral_similarity_within(reference, &fragment, 16_000);
        assert!(missing < 0.3, "a missing echo scored {missing}");
        let loose = spectral_similarity(reference, &fragment, 16_000);
        assert!(
            loose > 0.9,
            "the loose search found the fragment ({loose}): test is moot"
        );
    }

    #[test]
    fn silence_and_noise_score_low() {
        let s = short_speech();
        assert!(spectral_similarity(&s, &vec![0; s.len()], 16_000) < 0.3);
        let mut x = 0x1234_5678u32;
        let noise: Vec<i16> = (0..s.len())
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 20) as i16 - 2048
            })
            .collect();
        let score = spectral_similarity(&s, &noise, 16_000);
        assert!(score < 0.3, "noise scored {score}");
    }

    #[test]
    fn wrong_rate_and_byte_swap_score_low() {
        let s = short_speech();
        // The same samples played as if they were 24 kHz audio: resample 16k content by 2/3
        // (every third sample dropped), as a receiver with the wrong rate would hear it.
        let fast: Vec<i16> = s
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 2)
            .map(|(_, &v)| v)
            .collect();
        let score = spectral_similarity(&s, &fast, 16_000);
        assert!(score < 0.3, "wrong rate scored {score}");
        let swapped: Vec<i16> = s.iter().map(|v| v.swap_bytes()).collect();
        let score = spectral_similarity(&s, &swapped, 16_000);
        assert!(score < 0.3, "byte-swapped scored {score}");
    }

    #[test]
    fn tone_power_picks_the_tone_that_is_there() {
        let tone: Vec<i16> = (0..1600)
            .map(|i| {
                (8000.0 * (std::f64::consts::TAU * 440.0 * f64::from(i) / 16_000.0).sin()) as i16
            })
            .collect();
        let there = tone_power(&tone, 16_000, 440.0);
        let absent = tone_power(&tone, 16_000, 1230.0);
        assert!(there > 1000.0 * absent, "{there} vs {absent}");
        assert_eq!(tone_power(&[0; 320], 16_000, 440.0), 0.0);
    }
}
