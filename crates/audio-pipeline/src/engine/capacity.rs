//! What the engine can carry on this host: the CPU cost of one stream-frame in each direction,
//! measured when the engine starts, against a share of the cores' time.
//!
//! Admission works on this budget rather than on a call count: a call's cost depends on the
//! host (a slower vCPU encodes slower) and on how many participants it receives. A call is
//! admitted only if its outgoing stream and its first incoming stream fit; streams of calls
//! already admitted (participants joining) are never refused, they only use up the room left
//! for new calls, so a call in progress is never cut because another one arrived.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{EngineConfig, EngineError};
use crate::codec::{MAX_ENCODED_BYTES, OPUS_FRAME_SAMPLES, OpusDecoder, OpusEncoder};
use crate::frame::OPUS_RATE;
use crate::pacer::FRAME;
use crate::resample::FrameResampler;

/// The app rate the cost is measured at (the blob's `Pcm16K`).
const MEASURE_RATE: u32 = 16_000;

/// Frames timed in each direction, after a few untimed ones that warm caches and the codec.
const MEASURE_FRAMES: usize = 150;
const WARM_UP_FRAMES: usize = 10;

/// CPU time of one 20 ms frame of one stream, in each direction, on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCost {
    /// Outgoing: resampling the app's frame to 48 kHz and encoding it, in µs.
    pub send_us: u32,
    /// Incoming: decoding a packet and resampling it to the app's rate, in µs.
    pub recv_us: u32,
}

impl StreamCost {
    /// Times the codec work of a stream-frame on the calling thread, with a voice-like signal
    /// (the encoder works harder on it than on silence or a tone). Each direction's figure is
    /// the mean of its fastest 80 % of frames, so a preemption during the measure does not
    /// inflate it. Takes about 160 stream-frames of CPU (50 ms in a release build).
    pub fn measure(config: &EngineConfig) -> Result<StreamCost, EngineError> {
        let mut up = FrameResampler::new(config.resampler, MEASURE_RATE, OPUS_RATE, 1)?;
        let mut down = FrameResampler::new(config.resampler, OPUS_RATE, MEASURE_RATE, 1)?;
        let mut encoder = OpusEncoder::new(1, &config.opus)?;
        let mut decoder = OpusDecoder::new(1)?;
        let app_samples = (MEASURE_RATE as usize) / 50;
        let mut app = vec![0i16; app_samples];
        let mut pcm48 = vec![0i16; OPUS_FRAME_SAMPLES];
        let mut packet = [0u8; MAX_ENCODED_BYTES];
        let mut voice = VoiceLike::default();
        let (mut send, mut recv) = (Vec::new(), Vec::new());
        for i in 0..WARM_UP_FRAMES + MEASURE_FRAMES {
            voice.fill(&mut app);
            let t0 = Instant::now();
            up.process(&app, &mut pcm48)?;
            let len = encoder.encode(&pcm48, &mut packet)?;
            let t1 = Instant::now();
            decoder.decode(&packet[..len], &mut pcm48)?;
            down.process(&pcm48, &mut app)?;
            let t2 = Instant::now();
            black_box(&app);
            if i >= WARM_UP_FRAMES {
                send.push(t1 - t0);
                recv.push(t2 - t1);
            }
        }
        Ok(StreamCost {
            send_us: fastest_mean_us(send),
            recv_us: fastest_mean_us(recv),
        })
    }

    /// Both directions of one stream-frame, in µs.
    pub fn both_us(&self) -> u64 {
        u64::from(self.send_us) + u64::from(self.recv_us)
    }
}

/// Mean of the fastest 80 % of `times`, in whole µs (at least 1).
fn fastest_mean_us(mut times: Vec<Duration>) -> u32 {
    times.sort();
    let keep = (times.len() * 4 / 5).max(1);
    let sum: Duration = times.iter().take(keep).sum();
    let mean = sum.as_micros() / keep as u128;
    u32::try_from(mean).unwrap_or(u32::MAX).max(1)
}

/// A harmonic signal whose pitch glides, with a little noise: enough like speech that the
/// encoder does its usual work.
#[derive(Default)]
struct VoiceLike {
    n: u64,
    noise: u32,
}

impl VoiceLike {
    fn fill(&mut self, out: &mut [i16]) {
        for s in out.iter_mut() {
            let t = self.n as f32 / MEASURE_RATE as f32;
            let pitch = 120.0 + 40.0 * (t * 3.0).sin();
            let phase = std::f32::consts::TAU * pitch * t;
            let v = (1..=6)
                .map(|h| (phase * h as f32).sin() / h as f32)
                .sum::<f32>();
            self.noise = self
                .noise
                .wrapping_mul(1_664_525)
                .wrapping_add(1_013_904_223);
            let noise = (self.noise >> 16) as f32 / 65_536.0 - 0.5;
            *s = ((v * 0.4 + noise * 0.05) * 12_000.0) as i16;
            self.n += 1;
        }
    }
}

/// The engine's admission budget: how many µs of codec work per frame period it takes on, and
/// how much of that is in use. Lock-free: opening a call reserves with a compare-and-swap, so
/// two calls opened at once can never both take the last room.
#[derive(Debug)]
pub(crate) struct Budget {
    pub(crate) cost: StreamCost,
    pub(crate) cores: usize,
    pub(crate) admit_share: f64,
    limit_us: u64,
    used_us: AtomicU64,
}

impl Budget {
    pub(crate) fn new(cost: StreamCost, cores: usize, admit_share: f64) -> Budget {
        let period_us = FRAME.as_micros() as f64;
        let limit = cores.max(1) as f64 * period_us * admit_share.max(0.0);
        Budget {
            cost,
            cores: cores.max(1),
            admit_share,
            limit_us: if limit.is_finite() {
                limit as u64
            } else {
                u64::MAX
            },
            used_us: AtomicU64::new(0),
        }
    }

    /// Reserves `us` if it fits; on refusal, the budget is unchanged.
    pub(crate) fn reserve(&self, us: u64) -> bool {
        self.used_us
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(us).filter(|&u| u <= self.limit_us)
            })
            .is_ok()
    }

    /// Takes `us` whether it fits or not (a stream of a call already admitted).
    pub(crate) fn add(&self, us: u64) {
        self.used_us.fetch_add(us, Ordering::AcqRel);
    }

    /// Gives back what [`Budget::reserve`] or [`Budget::add`] took.
    pub(crate) fn release(&self, us: u64) {
        let _ = self
            .used_us
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(us))
            });
    }

    pub(crate) fn snapshot(&self) -> Capacity {
        Capacity {
            cost: self.cost,
            cores: self.cores,
            admit_share: self.admit_share,
            limit_us: self.limit_us,
            used_us: self.used_us.load(Ordering::Acquire),
        }
    }
}

/// What the engine can carry and how much of it is in use ([`super::Engine::capacity`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// The measured (or configured) cost of a stream-frame.
    pub cost: StreamCost,
    /// Cores the workers share.
    pub cores: usize,
    /// Share of the cores' time the engine admits calls up to
    /// ([`EngineConfig::admit_share`]).
    pub admit_share: f64,
    /// µs of codec work per frame period the engine admits.
    pub limit_us: u64,
    /// µs per frame period the open calls' streams take.
    pub used_us: u64,
}

impl Capacity {
    /// Share of the admission budget in use (1.0 = full).
    pub fn load(&self) -> f64 {
        if self.limit_us == 0 {
            return 1.0;
        }
        self.used_us as f64 / self.limit_us as f64
    }

    /// How many more one-to-one calls (one stream each way) fit.
    pub fn calls_left(&self) -> u64 {
        self.limit_us.saturating_sub(self.used_us) / self.cost.both_us().max(1)
    }

    /// Streams (both directions) the cores could carry at 100 % CPU: the codec-bound
    /// ceiling no engine can pass on this host.
    pub fn ceiling_streams(&self) -> u64 {
        (self.cores as u64 * FRAME.as_micros() as u64) / self.cost.both_us().max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COST: StreamCost = StreamCost {
        send_us: 3_000,
        recv_us: 1_000,
    };

    #[test]
    fn the_budget_admits_up_to_its_share_and_never_past_it() {
        // 2 cores × 20 ms × 0.5 = 20 000 µs: five calls of 4 000 µs.
        let b = Budget::new(COST, 2, 0.5);
        for _ in 0..5 {
            assert!(b.reserve(COST.both_us()));
        }
        assert!(!b.reserve(COST.both_us()));
        assert_eq!(b.snapshot().used_us, 20_000);
        assert_eq!(b.snapshot().calls_left(), 0);
        // A participant joining an admitted call is taken anyway and shows as over 100 %.
        b.add(u64::from(COST.recv_us));
        assert!(b.snapshot().load() > 1.0);
        b.release(u64::from(COST.recv_us) + COST.both_us());
        assert_eq!(b.snapshot().calls_left(), 1);
        assert!(b.reserve(COST.both_us()));
        assert_eq!(b.snapshot().ceiling_streams(), 10);
    }

    #[test]
    fn a_measured_cost_is_plausible() {
        let cost = StreamCost::measure(&EngineConfig::default()).unwrap();
        // Encoding a frame costs more than decoding it, and neither takes a whole frame.
        assert!(cost.send_us > cost.recv_us, "{cost:?}");
        assert!(cost.both_us() < FRAME.as_micros() as u64, "{cost:?}");
    }
}
