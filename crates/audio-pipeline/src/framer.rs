//! Turns app audio chunks of any length into exact 20 ms frames.

use crate::frame::PcmSpec;

/// Cuts a stream of s16le bytes, delivered in chunks of any size, into whole frames.
///
/// Chunks may split a sample in half (odd byte counts) or a frame anywhere; what does not fill a
/// frame carries over to the next chunk. [`Framer::flush`] pads the last partial frame with
/// silence. The framer owns one frame of buffer, allocated up front, so steady-state use does
/// not allocate.
#[derive(Debug, Clone)]
pub struct Framer {
    frame: Vec<i16>,
    filled: usize,
    odd_byte: Option<u8>,
}

impl Framer {
    /// A framer producing frames of `spec`.
    pub fn new(spec: PcmSpec) -> Framer {
        Framer::with_frame_samples(spec.samples_per_frame())
    }

    /// A framer producing frames of `samples` interleaved samples (at least one).
    pub fn with_frame_samples(samples: usize) -> Framer {
        Framer {
            frame: vec![0; samples.max(1)],
            filled: 0,
            odd_byte: None,
        }
    }

    /// Samples per frame.
    pub fn frame_samples(&self) -> usize {
        self.frame.len()
    }

    /// Samples (whole ones) waiting for the rest of their frame.
    pub fn pending_samples(&self) -> usize {
        self.filled
    }

    /// True when a lone byte (half a sample) is waiting for its partner.
    pub fn has_odd_byte(&self) -> bool {
        self.odd_byte.is_some()
    }

    /// Feeds `bytes` and calls `emit` once per completed frame, in order. Returns how many frames
    /// were emitted.
    pub fn push(&mut self, mut bytes: &[u8], mut emit: impl FnMut(&[i16])) -> usize {
        let mut emitted = 0;
        if let Some(lo) = self.odd_byte {
            let Some((&hi, rest)) = bytes.split_first() else {
                return 0;
            };
            self.odd_byte = None;
            bytes = rest;
            emitted += self.put(i16::from_le_bytes([lo, hi]), &mut emit);
        }
        let mut pairs = bytes.chunks_exact(2);
        for pair in pairs.by_ref() {
            emitted += self.put(i16::from_le_bytes([pair[0], pair[1]]), &mut emit);
        }
        if let [last] = pairs.remainder() {
            self.odd_byte = Some(*last);
        }
        emitted
    }

    /// Feeds whole samples, like [`Framer::push`]. A pending odd byte is dropped first, since
    /// samples and half-samples cannot be combined meaningfully.
    pub fn push_samples(&mut self, samples: &[i16], mut emit: impl FnMut(&[i16])) -> usize {
        self.odd_byte = None;
        let mut emitted = 0;
        let mut rest = samples;
        while !rest.is_empty() {
            let room = self.frame.len() - self.filled;
            let take = room.min(rest.len());
            self.frame[self.filled..self.filled + take].copy_from_slice(&rest[..take]);
            self.filled += take;
            rest = &rest[take..];
            if self.filled == self.frame.len() {
                emit(&self.frame);
                self.filled = 0;
                emitted += 1;
            }
        }
        emitted
    }

    /// Emits the partial frame, padded with silence, if there is one; a lone odd byte is
    /// dropped. Returns whether a frame was emitted.
    pub fn flush(&mut self, mut emit: impl FnMut(&[i16])) -> bool {
        self.odd_byte = None;
        if self.filled == 0 {
            return false;
        }
        self.frame[self.filled..].fill(0);
        emit(&self.frame);
        self.filled = 0;
        true
    }

    fn put(&mut self, sample: i16, emit: &mut impl FnMut(&[i16])) -> usize {
        self.frame[self.filled] = sample;
        self.filled += 1;
        if self.filled == self.frame.len() {
            emit(&self.frame);
            self.filled = 0;
            1
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes_of(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    fn collect(framer: &mut Framer, chunks: &[&[u8]], flush: bool) -> Vec<Vec<i16>> {
        let mut out = Vec::new();
        for c in chunks {
            framer.push(c, |f| out.push(f.to_vec()));
        }
        if flush {
            framer.flush(|f| out.push(f.to_vec()));
        }
        out
    }

    #[test]
    fn exact_frame_in_one_chunk() {
        let mut fr = Framer::new(PcmSpec::new(16_000, 1).unwrap());
        let samples: Vec<i16> = (0..320).collect();
        let out = collect(&mut fr, &[&bytes_of(&samples)], false);
        assert_eq!(out, vec![samples]);
        assert_eq!(fr.pending_samples(), 0);
    }

    #[test]
    fn odd_byte_counts_carry_half_samples() {
        let mut fr = Framer::with_frame_samples(4);
        let b = bytes_of(&[0x0102, -2, 0x7fff, i16::MIN, 5]);
        // Split inside samples: 3 bytes, 1 byte, 5 bytes, 1 byte.
        let out = collect(&mut fr, &[&b[..3], &b[3..4], &b[4..9], &b[9..]], false);
        assert_eq!(out, vec![vec![0x0102, -2, 0x7fff, i16::MIN]]);
        assert_eq!(fr.pending_samples(), 1);
        assert!(!fr.has_odd_byte());
    }

    #[test]
    fn empty_chunk_keeps_odd_byte() {
        let mut fr = Framer::with_frame_samples(2);
        let b = bytes_of(&[300, 400]);
        let out = collect(&mut fr, &[&b[..1], &[], &b[1..]], false);
        assert_eq!(out, vec![vec![300, 400]]);
    }

    #[test]
    fn flush_pads_with_silence_and_drops_odd_byte() {
        let mut fr = Framer::with_frame_samples(4);
        let mut b = bytes_of(&[9, 8]);
        b.push(0x55);
        let out = collect(&mut fr, &[&b], true);
        assert_eq!(out, vec![vec![9, 8, 0, 0]]);
        assert!(!fr.flush(|_| panic!("nothing left to flush")));
        assert!(!fr.has_odd_byte());
    }

    #[test]
    fn burst_of_many_frames() {
        let mut fr = Framer::with_frame_samples(320);
        let samples: Vec<i16> = (0..320 * 5 + 7).map(|i| i as i16).collect();
        let out = collect(&mut fr, &[&bytes_of(&samples)], false);
        assert_eq!(out.len(), 5);
        assert_eq!(out[4][0], 1280);
        assert_eq!(fr.pending_samples(), 7);
    }

    #[test]
    fn push_samples_matches_push_bytes() {
        let samples: Vec<i16> = (0..1000).map(|i| (i * 37) as i16).collect();
        let mut a = Framer::with_frame_samples(320);
        let mut b = Framer::with_frame_samples(320);
        let mut fa = Vec::new();
        let mut fb = Vec::new();
        for c in samples.chunks(77) {
            a.push_samples(c, |f| fa.push(f.to_vec()));
        }
        b.push(&bytes_of(&samples), |f| fb.push(f.to_vec()));
        assert_eq!(fa, fb);
    }

    proptest! {
        // Any chunking yields the same frames as feeding everything at once.
        #[test]
        fn chunking_never_changes_output(samples in prop::collection::vec(any::<i16>(), 0..2000),
                                         cuts in prop::collection::vec(0usize..4000, 0..20)) {
            let bytes = bytes_of(&samples);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut prev = 0;
            for c in cuts { chunks.push(&bytes[prev..c]); prev = c; }
            chunks.push(&bytes[prev..]);
            let mut fr = Framer::with_frame_samples(320);
            let got = collect(&mut fr, &chunks, true);
            let expected_frames = samples.len().div_ceil(320);
            prop_assert_eq!(got.len(), expected_frames);
            let flat: Vec<i16> = got.concat();
            prop_assert_eq!(&flat[..samples.len()], &samples[..]);
            prop_assert!(flat[samples.len()..].iter().all(|&s| s == 0));
        }
    }
}
