//! Sample-rate conversion between the app's rate and Opus's 48 kHz, in exact 20 ms frames.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, FixedAsync, PolynomialDegree, Resampler, SincInterpolationParameters,
    SincInterpolationType, WindowFunction,
};
#[cfg(feature = "fft-resampler")]
use rubato::{Fft, FixedSync};

/// Which resampling algorithm to use.
///
/// Figures are per 20 ms mono speech frame (16 kHz ⇄ 48 kHz) on the reference machine:
///
/// | kind | up | down | delay | notes |
/// |---|---|---|---|---|
/// | [`ResamplerKind::PolyCubic`] | ~7 µs | ~2 µs | ~0.1 ms | no anti-aliasing filter |
/// | [`ResamplerKind::Sinc64`] | ~22 µs | ~8 µs | ~2 ms | band-limited, the default |
/// | `ResamplerKind::Fft` | ~3 µs | ~3 µs | ~10 ms | band-limited, but latency (feature `fft-resampler`) |
///
/// The default is [`ResamplerKind::Sinc64`]: the decoder's 48 kHz output can carry content up
/// to 20 kHz, which a filterless downsampler folds into the speech band, and the FFT
/// resampler's 20 ms round trip delay is too much for a conversation. The extra ~25 µs is about
/// a tenth of an Opus encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResamplerKind {
    /// `rubato::Async::new_poly` with cubic interpolation.
    PolyCubic,
    /// `rubato::Async::new_sinc` with a 64-tap Blackman-Harris windowed sinc.
    #[default]
    Sinc64,
    /// `rubato::Fft`, a synchronous FFT resampler (feature `fft-resampler`, which brings in an
    /// FFT library the default resampler does not need).
    #[cfg(feature = "fft-resampler")]
    Fft,
}

/// Errors from building or running a resampler.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// rubato refused the parameters.
    #[error("resampler construction: {0}")]
    Construction(#[from] rubato::ResamplerConstructionError),
    /// rubato failed while processing.
    #[error("resampling: {0}")]
    Process(#[from] rubato::ResampleError),
    /// Input or output slice of the wrong length.
    #[error("buffer holds {got} samples, expected {expected}")]
    BadLength {
        /// Samples given.
        got: usize,
        /// Samples needed.
        expected: usize,
    },
}

/// Converts exact 20 ms frames at one rate into exact 20 ms frames at another.
///
/// rubato's asynchronous resamplers produce a slightly varying number of output samples per
/// call, so the output goes through a small FIFO that starts with a few samples of silence;
/// every call then takes exactly one frame out of it. All buffers are allocated in
/// [`FrameResampler::new`]; [`FrameResampler::process`] does not allocate.
pub struct FrameResampler {
    inner: Option<Box<dyn Resampler<f32>>>,
    channels: usize,
    in_frame: usize,
    out_frame: usize,
    in_buf: Vec<f32>,
    out_buf: Vec<f32>,
    fifo: Vec<f32>,
    fifo_len: usize,
    prefill: usize,
    underruns: u64,
}

impl std::fmt::Debug for FrameResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameResampler")
            .field("in_frame", &self.in_frame)
            .field("out_frame", &self.out_frame)
            .field("channels", &self.channels)
            .field("passthrough", &self.inner.is_none())
            .finish()
    }
}

/// Samples per channel of silence the output FIFO starts with, so that the first calls, which
/// yield up to a few input samples' worth less than a frame while the interpolator fills its
/// history, still complete a frame each.
///
/// When the output rate is a whole multiple of the input rate the prefill is a whole number of
/// input samples, so a round trip through an up- and a downsampler delays by whole samples.
fn fifo_prefill(rate_in: u32, rate_out: u32) -> usize {
    let step = rate_out.div_ceil(rate_in) as usize;
    let want = 4 * step + 4;
    want.div_ceil(step) * step
}

/// Most sinc phases a table may hold before the interpolating variant is used instead.
const MAX_EXACT_PHASES: u32 = 256;

/// The 64-tap sinc's parameters for a conversion from `rate_in` to `rate_out`.
///
/// Stepping through the input by `rate_in / rate_out` lands on only `rate_out / gcd` distinct
/// fractional positions (three for 16 kHz → 48 kHz, one for 48 kHz → 16 kHz). A table with
/// exactly those phases, read without interpolation, is exact, and it is tiny: a few hundred
/// bytes instead of the 32 KB that 128 phases take. rubato's default (128 phases, cubic
/// interpolation between four of them) costs four dot products per output sample and, with a
/// hundred calls each holding their own table, keeps missing the cache. Rates whose ratio has
/// a large denominator keep the interpolating table.
pub fn sinc_parameters(rate_in: u32, rate_out: u32) -> SincInterpolationParameters {
    let params = SincInterpolationParameters::new(64, WindowFunction::BlackmanHarris2);
    let phases = rate_out / gcd(rate_in, rate_out);
    if phases <= MAX_EXACT_PHASES {
        params
            .oversampling_factor(phases as usize)
            .interpolation(SincInterpolationType::Nearest)
    } else {
        params
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

impl FrameResampler {
    /// A resampler from `rate_in` to `rate_out` for `channels` interleaved channels.
    pub fn new(
        kind: ResamplerKind,
        rate_in: u32,
        rate_out: u32,
        channels: u16,
    ) -> Result<FrameResampler, ResampleError> {
        let ch = usize::from(channels.max(1));
        let in_frame = (rate_in / 50) as usize;
        let out_frame = (rate_out / 50) as usize;
        let inner: Option<Box<dyn Resampler<f32>>> = if rate_in == rate_out {
            None
        } else {
            let ratio = f64::from(rate_out) / f64::from(rate_in);
            Some(match kind {
                ResamplerKind::PolyCubic => Box::new(Async::<f32>::new_poly(
                    ratio,
                    1.0,
                    PolynomialDegree::Cubic,
                    in_frame,
                    ch,
                    FixedAsync::Input,
                )?),
                ResamplerKind::Sinc64 => {
                    let params = sinc_parameters(rate_in, rate_out);
                    Box::new(Async::<f32>::new_sinc(
                        ratio,
                        1.0,
                        &params,
                        in_frame,
                        ch,
                        FixedAsync::Input,
                    )?)
                }
                // One sub-chunk: rubato would otherwise split the frame and round the
                // sub-chunks up, so a call would consume more than one frame.
                #[cfg(feature = "fft-resampler")]
                ResamplerKind::Fft => Box::new(Fft::<f32>::new_custom(
                    rate_in as usize,
                    rate_out as usize,
                    in_frame,
                    1,
                    ch,
                    WindowFunction::BlackmanHarris2,
                    FixedSync::Input,
                )?),
            })
        };
        let out_max = inner.as_ref().map_or(out_frame, |r| r.output_frames_max());
        let prefill = if inner.is_some() {
            fifo_prefill(rate_in, rate_out)
        } else {
            0
        };
        let fifo_cap = (out_max + out_frame + 2 * prefill) * ch;
        let fifo = vec![0.0; fifo_cap];
        Ok(FrameResampler {
            channels: ch,
            in_frame,
            out_frame,
            in_buf: vec![0.0; in_frame * ch],
            out_buf: vec![0.0; out_max * ch],
            fifo,
            fifo_len: prefill * ch,
            prefill,
            underruns: 0,
            inner,
        })
    }

    /// Interleaved input samples per call.
    pub fn input_samples(&self) -> usize {
        self.in_frame * self.channels
    }

    /// Interleaved output samples per call.
    pub fn output_samples(&self) -> usize {
        self.out_frame * self.channels
    }

    /// Delay from input to output, in output samples per channel.
    pub fn delay(&self) -> usize {
        self.inner
            .as_ref()
            .map_or(0, |r| r.output_delay() + self.prefill)
    }

    /// Times the FIFO ran dry and the frame was completed with silence (should stay 0).
    pub fn underruns(&self) -> u64 {
        self.underruns
    }

    /// Converts one frame. `input` and `output` must hold exactly one frame each.
    pub fn process(&mut self, input: &[i16], output: &mut [i16]) -> Result<(), ResampleError> {
        check_len(input.len(), self.input_samples())?;
        check_len(output.len(), self.output_samples())?;
        let Some(inner) = self.inner.as_mut() else {
            output.copy_from_slice(input);
            return Ok(());
        };
        for (d, &s) in self.in_buf.iter_mut().zip(input) {
            *d = f32::from(s) * (1.0 / 32768.0);
        }
        let ch = self.channels;
        let frames_out_cap = self.out_buf.len() / ch;
        // These adapters only borrow the buffers; creating them does not allocate.
        let in_adapter = InterleavedSlice::new(&self.in_buf, ch, self.in_frame).map_err(|_| {
            ResampleError::BadLength {
                got: self.in_buf.len(),
                expected: self.in_frame * ch,
            }
        })?;
        let mut out_adapter = InterleavedSlice::new_mut(&mut self.out_buf, ch, frames_out_cap)
            .map_err(|_| ResampleError::BadLength {
                got: frames_out_cap,
                expected: frames_out_cap,
            })?;
        let (_, produced) = inner.process_into_buffer(&in_adapter, &mut out_adapter, None)?;
        let produced = produced * ch;
        // Append to the FIFO; if it would overflow (cannot happen at a fixed ratio), drop the
        // oldest samples rather than fail.
        let room = self.fifo.len() - self.fifo_len;
        if produced > room {
            let drop = produced - room;
            self.fifo.copy_within(drop..self.fifo_len, 0);
            self.fifo_len -= drop;
        }
        self.fifo[self.fifo_len..self.fifo_len + produced]
            .copy_from_slice(&self.out_buf[..produced]);
        self.fifo_len += produced;
        let want = output.len();
        let have = want.min(self.fifo_len);
        for (d, &s) in output.iter_mut().zip(&self.fifo[..have]) {
            *d = to_i16(s);
        }
        if have < want {
            output[have..].fill(0);
            self.underruns += 1;
        }
        self.fifo.copy_within(have..self.fifo_len, 0);
        self.fifo_len -= have;
        Ok(())
    }

    /// Clears history and the FIFO (after a stream resync).
    pub fn reset(&mut self) {
        if let Some(r) = self.inner.as_mut() {
            r.reset();
        }
        self.fifo[..self.prefill * self.channels].fill(0.0);
        self.fifo_len = self.prefill * self.channels;
    }
}

fn check_len(got: usize, expected: usize) -> Result<(), ResampleError> {
    if got == expected {
        Ok(())
    } else {
        Err(ResampleError::BadLength { got, expected })
    }
}

fn to_i16(s: f32) -> i16 {
    (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, freq: f32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                ((i as f32 * freq * std::f32::consts::TAU / rate as f32).sin() * 10_000.0) as i16
            })
            .collect()
    }

    /// Runs 16k -> 48k -> 16k and returns the SNR in dB after aligning the total delay.
    fn round_trip_snr(kind: ResamplerKind) -> f64 {
        let mut up = FrameResampler::new(kind, 16_000, 48_000, 1).unwrap();
        let mut down = FrameResampler::new(kind, 48_000, 16_000, 1).unwrap();
        let input = tone(16_000, 1000.0, 320 * 40);
        let mut mid = vec![0i16; 960];
        let mut out = Vec::new();
        let mut frame = vec![0i16; 320];
        for f in input.chunks(320) {
            up.process(f, &mut mid).unwrap();
            down.process(&mid, &mut frame).unwrap();
            out.extend_from_slice(&frame);
        }
        assert_eq!(up.underruns() + down.underruns(), 0);
        // The round trip delays by a fractional number of input samples, so align by fitting
        // the best 1 kHz sinusoid (any phase, i.e. any delay) to the output after start-up;
        // whatever the fit does not explain is noise and distortion.
        let seg: Vec<f64> = out[320 * 10..].iter().map(|&s| f64::from(s)).collect();
        let w = std::f64::consts::TAU * 1000.0 / 16_000.0;
        let (mut ss, mut sc, mut cc, mut ys, mut yc) = (0f64, 0f64, 0f64, 0f64, 0f64);
        for (i, &y) in seg.iter().enumerate() {
            let (s, c) = (w * i as f64).sin_cos();
            ss += s * s;
            sc += s * c;
            cc += c * c;
            ys += y * s;
            yc += y * c;
        }
        let det = ss * cc - sc * sc;
        let a = (ys * cc - yc * sc) / det;
        let b = (yc * ss - ys * sc) / det;
        let (mut sig, mut err) = (0f64, 0f64);
        for (i, &y) in seg.iter().enumerate() {
            let (s, c) = (w * i as f64).sin_cos();
            let fit = a * s + b * c;
            sig += fit * fit;
            err += (y - fit) * (y - fit);
        }
        // The fit must carry the tone's full amplitude, or a silent output would pass.
        let amplitude = (a * a + b * b).sqrt();
        assert!(
            (amplitude - 10_000.0).abs() < 500.0,
            "amplitude {amplitude}"
        );
        10.0 * (sig / err.max(1e-9)).log10()
    }

    #[test]
    fn default_kind_keeps_a_1khz_tone_above_40_db() {
        let snr = round_trip_snr(ResamplerKind::default());
        assert!(snr >= 40.0, "SNR {snr:.1} dB");
    }

    #[test]
    fn every_kind_keeps_a_1khz_tone_above_40_db() {
        for kind in [
            ResamplerKind::PolyCubic,
            #[cfg(feature = "fft-resampler")]
            ResamplerKind::Fft,
        ] {
            let snr = round_trip_snr(kind);
            assert!(snr >= 40.0, "{kind:?}: SNR {snr:.1} dB");
        }
    }

    #[test]
    fn frames_stay_exact_for_every_app_rate() {
        for rate in [8_000, 16_000, 24_000, 32_000, 44_100, 48_000] {
            for ch in [1u16, 2] {
                let mut up =
                    FrameResampler::new(ResamplerKind::default(), rate, 48_000, ch).unwrap();
                let mut down =
                    FrameResampler::new(ResamplerKind::default(), 48_000, rate, ch).unwrap();
                let n_in = (rate / 50) as usize * usize::from(ch);
                let input = vec![1000i16; n_in];
                let mut mid = vec![0i16; 960 * usize::from(ch)];
                let mut out = vec![0i16; n_in];
                for _ in 0..60 {
                    up.process(&input, &mut mid).unwrap();
                    down.process(&mid, &mut out).unwrap();
                }
                assert_eq!(up.underruns() + down.underruns(), 0, "{rate} Hz x{ch}");
                // A DC input comes back as DC once the delay has passed.
                assert!(
                    (i32::from(out[n_in / 2]) - 1000).abs() < 30,
                    "{rate}: {}",
                    out[0]
                );
            }
        }
    }

    #[test]
    fn exact_phase_tables_for_rates_with_a_small_ratio() {
        let phases = |a, b| sinc_parameters(a, b).oversampling_factor;
        assert_eq!(phases(16_000, 48_000), 3);
        assert_eq!(phases(48_000, 16_000), 1);
        assert_eq!(phases(44_100, 48_000), 160);
        assert_eq!(phases(8_000, 48_000), 6);
        let odd = sinc_parameters(44_100, 47_999);
        assert_eq!(odd.interpolation, SincInterpolationType::Cubic);
        assert_eq!(odd.oversampling_factor, 128);
    }

    /// The three-phase table gives what a finely interpolated one does: a 384-phase table holds
    /// the same three phases (every 128th), and cubic interpolation read exactly on a phase
    /// returns it, so both must agree sample for sample (to rounding).
    #[test]
    fn exact_phases_match_a_fine_table() {
        let exact = sinc_parameters(16_000, 48_000);
        let fine = SincInterpolationParameters::new(64, WindowFunction::BlackmanHarris2)
            .oversampling_factor(384)
            .interpolation(SincInterpolationType::Cubic);
        let mut outputs = Vec::new();
        for params in [exact, fine] {
            let mut r =
                Async::<f32>::new_sinc(3.0, 1.0, &params, 320, 1, FixedAsync::Input).unwrap();
            let input: Vec<f32> = tone(16_000, 1234.0, 320 * 5)
                .iter()
                .map(|&s| f32::from(s) / 32768.0)
                .collect();
            let mut out = Vec::new();
            let mut buf = vec![0f32; r.output_frames_max()];
            for chunk in input.chunks(320) {
                let a = InterleavedSlice::new(chunk, 1, 320).unwrap();
                let n = buf.len();
                let mut b = InterleavedSlice::new_mut(&mut buf, 1, n).unwrap();
                let (_, produced) = r.process_into_buffer(&a, &mut b, None).unwrap();
                out.extend_from_slice(&buf[..produced]);
            }
            outputs.push(out);
        }
        assert_eq!(outputs[0].len(), outputs[1].len());
        let peak = outputs[0].iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!(peak > 0.25, "peak {peak}");
        // The cubic read lags the nearest one by one output sample (a constant 21 µs, from
        // how rubato indexes the two); past the start-up they agree to -60 dB once aligned.
        let worst = |shift: usize| {
            outputs[0][200..]
                .iter()
                .zip(&outputs[1][200 + shift..])
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max)
        };
        assert!(worst(1) < 1e-3, "worst difference {}", worst(1));
        // And the shift is real: unaligned they differ by the tone's slope.
        assert!(worst(0) > 1e-2);
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let mut r = FrameResampler::new(ResamplerKind::default(), 16_000, 48_000, 1).unwrap();
        let mut out = vec![0i16; 960];
        assert!(r.process(&[0; 319], &mut out).is_err());
        assert!(r.process(&[0; 320], &mut out[..10]).is_err());
        assert!(r.delay() > 0);
    }
}
