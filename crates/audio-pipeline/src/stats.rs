//! Counters and latency histograms that real-time threads write and anyone may read.
//!
//! Everything is a relaxed atomic: a reader sees each value torn from no other, which is all a
//! statistics display needs, and writers never wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets of a [`LatencyHistogram`]: exact below 4 µs, then four per power of two up to
/// 2^22 µs (about 4.2 s), and one for everything above. Bucket `i` counts samples from
/// [`bucket_upper_us`]`(i - 1)` up to, not including, [`bucket_upper_us`]`(i)`; a quantile is
/// read to within 25 %, fine enough to set a lateness against a baseline a few ms wide.
pub const HISTOGRAM_BUCKETS: usize = 4 + 4 * 20 + 1;

/// Sub-buckets per power of two.
const PER_OCTAVE: usize = 4;

/// The bucket a sample of `us` µs falls in.
fn bucket_of(us: u64) -> usize {
    if us < PER_OCTAVE as u64 {
        return us as usize;
    }
    let octave = 63 - us.leading_zeros() as usize;
    // The two bits under the leading one pick the quarter of the octave.
    let quarter = ((us >> (octave - 2)) & 3) as usize;
    (PER_OCTAVE + (octave - 2) * PER_OCTAVE + quarter).min(HISTOGRAM_BUCKETS - 1)
}

/// The exclusive upper bound of bucket `i`, in µs; the last bucket is unbounded and reads as
/// 2^23 µs.
pub fn bucket_upper_us(i: usize) -> u64 {
    if i >= HISTOGRAM_BUCKETS - 1 {
        return 1 << 23;
    }
    if i < PER_OCTAVE {
        return i as u64 + 1;
    }
    let octave = (i - PER_OCTAVE) / PER_OCTAVE + 2;
    let quarter = ((i - PER_OCTAVE) % PER_OCTAVE) as u64;
    (PER_OCTAVE as u64 + quarter + 1) << (octave - 2)
}

/// A lock-free histogram of durations in log-linear microsecond buckets.
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; HISTOGRAM_BUCKETS],
    sum_us: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    /// Records one sample.
    pub fn record(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// A copy of the current counts.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// Counts of a [`LatencyHistogram`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Samples per bucket.
    pub counts: [u64; HISTOGRAM_BUCKETS],
    /// Sum of all samples in µs.
    pub sum_us: u64,
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        HistogramSnapshot {
            counts: [0; HISTOGRAM_BUCKETS],
            sum_us: 0,
        }
    }
}

impl HistogramSnapshot {
    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Mean in µs.
    pub fn mean_us(&self) -> f64 {
        let n = self.count();
        if n == 0 {
            0.0
        } else {
            self.sum_us as f64 / n as f64
        }
    }

    /// Upper bound of the bucket holding quantile `q` (0..=1), in µs.
    pub fn quantile_us(&self, q: f64) -> u64 {
        let n = self.count();
        if n == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_upper_us(i);
            }
        }
        bucket_upper_us(HISTOGRAM_BUCKETS - 1)
    }

    /// Counts recorded since `earlier`.
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: std::array::from_fn(|i| self.counts[i].saturating_sub(earlier.counts[i])),
            sum_us: self.sum_us.saturating_sub(earlier.sum_us),
        }
    }
}

/// A relaxed atomic counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one.
    pub fn incr(&self) {
        self.add(1);
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Overwrites the value (gauges).
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_quantiles() {
        let h = LatencyHistogram::default();
        for us in [0u64, 1, 3, 100, 100, 100, 100, 100, 100, 5000] {
            h.record(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 10);
        // 100 µs is in [96, 112); 5000 in [4096, 5120).
        assert_eq!(s.quantile_us(0.5), 112);
        assert_eq!(s.quantile_us(1.0), 5120);
        assert_eq!(s.quantile_us(0.1), 1);
        assert!((s.mean_us() - 560.4).abs() < 0.01);
        let later = {
            h.record(Duration::from_secs(100));
            h.snapshot()
        };
        assert_eq!(later.since(&s).count(), 1);
        assert_eq!(later.since(&s).quantile_us(0.5), 1 << 23);
    }

    #[test]
    fn every_sample_lands_in_the_bucket_its_bounds_say() {
        let mut lower = 0;
        for i in 0..HISTOGRAM_BUCKETS - 1 {
            let upper = bucket_upper_us(i);
            assert!(upper > lower, "bucket {i}");
            // A quarter of an octave wide at most.
            assert!(
                upper - lower <= (upper / 5).max(1),
                "bucket {i}: {lower}..{upper}"
            );
            for us in [lower, upper - 1] {
                assert_eq!(bucket_of(us), i, "{us} µs");
            }
            lower = upper;
        }
        assert_eq!(lower, 1 << 22);
        assert_eq!(bucket_of(1 << 22), HISTOGRAM_BUCKETS - 1);
        assert_eq!(bucket_of(u64::MAX), HISTOGRAM_BUCKETS - 1);
    }
}
