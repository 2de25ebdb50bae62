//! The bot's audio as the simulated service hears it: packets (after the `from_bot` impairment)
//! put back in sequence order, decoded with loss concealment, written to a WAV file and kept on
//! the call's clock for the echo measurements. A sans-IO core fed packets and arrival times.
//!
//! Placing the audio on the clock works like a listener's playout: frames follow each other
//! from one frame after the first packet's arrival on ([`PLAYOUT_FLOOR`]), and when a packet
//! comes later than its place (the bot paused, or the network held it) the gap is filled (up
//! to 60 ms with loss concealment, as a client stretches its audio, then silence) and playout
//! continues a frame after its arrival. A bot that sends only when it has something
//! to say (an echo bot that lost a packet from its input) is therefore placed right, and
//! network jitter adds at most its own spread, as a jitter buffer would. When packets keep
//! coming earlier than that (the bot moved its send tick earlier), playout moves earlier too,
//! by leaving out a little audio, as a client's jitter buffer shrinks: a frame plays one frame
//! after it arrives, whichever way the bot's timing moved.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Instant;

use audio_pipeline::codec::OpusDecoder;
use bytes::Bytes;
use serde::Serialize;

use super::measure::{FRAME, RATE, Timeline};

/// Packets that may arrive after a later one before the missing one is given up as lost.
const REORDER_WINDOW: u64 = 3;

/// A listener's jitter-buffer floor: a frame plays one frame's time after it arrives, as in a
/// Teams client (whose buffer never goes below 20 ms), so the echo delay is what a person hears.
pub const PLAYOUT_FLOOR: i64 = FRAME as i64;

/// A packet later than its place by more than this moves playout to its arrival.
const LATE_JUMP: i64 = (RATE / 100) as i64;

/// Longest wait for a late packet filled with loss concealment instead of silence.
const MAX_STRETCH: usize = 3 * FRAME;

/// Frames over which every packet must have come early before playout moves earlier (half a
/// second).
const EARLY_WINDOW: u32 = 25;

/// Earliness tolerated before playout moves (2 ms): a listener does not chase noise.
const EARLY_SLACK: i64 = (RATE / 500) as i64;

/// Longest silence inserted for a pause of the bot, so the recording stays bounded.
const MAX_PAUSE: i64 = 10 * RATE as i64;

/// Longest gap filled with concealment; a longer jump in sequence numbers (a restarted sender)
/// is bridged with this much only, so a wild sequence number cannot make the recording huge.
const MAX_GAP_FRAMES: u64 = 250;

/// Figures of the bot's stream as received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct BotStreamReport {
    /// Packets received (after the `from_bot` impairment).
    pub packets: u64,
    /// Packets dropped as duplicates or as arriving too late to be placed.
    pub discarded: u64,
    /// 20 ms frames missing from the sequence and concealed (lost on the way, or never sent).
    pub concealed: u64,
    /// Packets libopus refused (concealed instead).
    pub decode_errors: u64,
    /// RFC 3550 interarrival jitter, ms.
    pub jitter_ms: f64,
    /// Longest wait between two packets' arrivals, ms: the bot's stream stopped for that long
    /// (it sends a packet every 20 ms, silence included).
    pub longest_gap_ms: f64,
    /// Seconds of audio decoded.
    pub seconds: f64,
    /// Times playout moved later for a packet that came after its place (audio inserted).
    pub playout_delays: u64,
    /// Audio inserted by those moves, ms.
    pub playout_delayed_ms: f64,
    /// Times playout moved earlier after half a second of early packets (audio left out).
    pub playout_advances: u64,
    /// Audio left out by those moves, ms.
    pub playout_advanced_ms: f64,
}

/// Receives, decodes and records the bot's audio of one call.
pub struct BotStream {
    epoch: Instant,
    decoder: Option<OpusDecoder>,
    /// Extended sequence number of the first packet.
    first: Option<u64>,
    /// Next extended sequence number to decode.
    next: u64,
    /// Highest extended sequence number seen, to extend 16-bit ones.
    highest: u64,
    /// Packets waiting for an earlier one, with their arrival on the call's clock.
    pending: BTreeMap<u64, (Bytes, i64)>,
    pcm: Vec<i16>,
    max_samples: usize,
    /// Where playout started on the call's clock (a frame after the first packet's arrival).
    start: Option<i64>,
    /// Samples played out so far (past `max_samples` too).
    played: i64,
    /// Least earliness (samples before its place minus the floor) over the current window of
    /// placed frames, and the frames in it.
    min_early: i64,
    early_frames: u32,
    /// Samples still to leave out to bring playout earlier.
    skip: usize,
    arrivals: Vec<i64>,
    /// Longest wait between two arrivals, in samples.
    longest_gap: i64,
    last_transit: Option<f64>,
    jitter: f64,
    report: BotStreamReport,
    /// Peak-hold level of the decoded audio, dBFS.
    level: f32,
    wav: Option<hound::WavWriter<BufWriter<File>>>,
    wav_path: Option<PathBuf>,
}

impl std::fmt::Debug for BotStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotStream")
            .field("report", &self.report)
            .field("wav_path", &self.wav_path)
            .finish()
    }
}

/// `samples` at [`RATE`] in milliseconds.
fn ms(samples: i64) -> f64 {
    samples as f64 * 1000.0 / f64::from(RATE)
}

/// Position of `at` on the call's clock (48 kHz samples since `epoch`).
pub fn position(epoch: Instant, at: Instant) -> i64 {
    let (d, sign) = if at >= epoch {
        (at - epoch, 1)
    } else {
        (epoch - at, -1)
    };
    sign * i64::try_from(d.as_nanos() * u128::from(RATE) / 1_000_000_000).unwrap_or(i64::MAX)
}

impl BotStream {
    /// A stream on the clock starting at `epoch`, keeping at most `max_samples` decoded samples
    /// for measurement, and recording to `wav` when given.
    pub fn new(
        epoch: Instant,
        max_samples: usize,
        wav: Option<&Path>,
    ) -> std::io::Result<BotStream> {
        let writer = match wav {
            Some(path) => Some(
                hound::WavWriter::create(
                    path,
                    hound::WavSpec {
                        channels: 1,
                        sample_rate: RATE,
                        bits_per_sample: 16,
                        sample_format: hound::SampleFormat::Int,
                    },
                )
                .map_err(std::io::Error::other)?,
            ),
            None => None,
        };
        Ok(BotStream {
            epoch,
            decoder: OpusDecoder::new(1).ok(),
            first: None,
            next: 0,
            highest: 0,
            pending: BTreeMap::new(),
            pcm: Vec::new(),
            max_samples,
            start: None,
            played: 0,
            min_early: i64::MAX,
            early_frames: 0,
            skip: 0,
            arrivals: Vec::new(),
            longest_gap: 0,
            last_transit: None,
            jitter: 0.0,
            report: BotStreamReport::default(),
            level: super::report::SILENT_DBFS,
            wav: writer,
            wav_path: wav.map(Path::to_path_buf),
        })
    }

    fn extend(&mut self, seq: u16) -> u64 {
        if self.first.is_none() {
            // Start high so a slightly earlier packet still has room below.
            self.highest = (1 << 20) + u64::from(seq);
            return self.highest;
        }
        let base = self.highest & !0xFFFF;
        let mut cand = base | u64::from(seq);
        if cand + 0x8000 < self.highest {
            cand += 0x1_0000;
        } else if cand > self.highest + 0x8000 && cand >= 0x1_0000 {
            cand -= 0x1_0000;
        }
        self.highest = self.highest.max(cand);
        cand
    }

    /// One packet of the bot's audio, delivered at `at`.
    pub fn push(&mut self, seq: u16, timestamp: u32, payload: Bytes, at: Instant) {
        let pos = position(self.epoch, at);
        let ext = self.extend(seq);
        if self.first.is_none() {
            self.first = Some(ext);
            self.next = ext;
        }
        self.report.packets += 1;
        if let Some(&last) = self.arrivals.last() {
            self.longest_gap = self.longest_gap.max(pos - last);
        }
        self.arrivals.push(pos);
        if ext < self.next || self.pending.contains_key(&ext) {
            self.report.discarded += 1;
            return;
        }
        // RFC 3550 §6.4.1, in RTP units (48 kHz), over packets in arrival order.
        let transit = pos as f64 - f64::from(timestamp);
        if let Some(last) = self.last_transit {
            let mut d = (transit - last).abs();
            // A timestamp wrap shows as a jump of 2^32: ignore that one step.
            if d > f64::from(u32::MAX) / 2.0 {
                d = 0.0;
            }
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
        self.pending.insert(ext, (payload, pos));
        self.drain(false);
    }

    fn drain(&mut self, all: bool) {
        let mut frame = [0i16; FRAME];
        while let Some((&seq, _)) = self.pending.first_key_value() {
            if seq == self.next {
                let (payload, arrival) = self.pending.remove(&seq).unwrap_or_default();
                let ok = self
                    .decoder
                    .as_mut()
                    .is_some_and(|d| d.decode(&payload, &mut frame).is_ok());
                if !ok {
                    self.report.decode_errors += 1;
                    self.conceal(&mut frame, None);
                }
                self.place(arrival);
                self.emit(&frame);
                self.next += 1;
                continue;
            }
            let newest = self.pending.last_key_value().map_or(seq, |(k, _)| *k);
            if !all && newest - self.next < REORDER_WINDOW {
                break;
            }
            // `next` is lost: conceal up to the first packet held (bounded).
            let gap = seq - self.next;
            if gap > MAX_GAP_FRAMES {
                self.report.concealed += gap;
                for _ in 0..MAX_GAP_FRAMES {
                    self.emit(&[0; FRAME]);
                }
                self.next = seq;
                continue;
            }
            let following = (gap == 1)
                .then(|| self.pending.get(&seq).map(|(p, _)| p.clone()))
                .flatten();
            self.conceal(&mut frame, following.as_ref());
            self.emit(&frame);
            self.report.concealed += 1;
            self.next += 1;
        }
    }

    /// Fills `frame` for a missing packet: Opus FEC from the packet after it when there is one,
    /// otherwise the decoder's loss concealment.
    fn conceal(&mut self, frame: &mut [i16; FRAME], following: Option<&Bytes>) {
        let done = self.decoder.as_mut().is_some_and(|d| match following {
            Some(p) => d.decode_fec(p, frame).is_ok(),
            None => d.conceal(frame).is_ok(),
        });
        if !done {
            frame.fill(0);
        }
    }

    /// Before a received frame plays: starts playout, or inserts silence when the frame came
    /// later than its place.
    fn place(&mut self, arrival: i64) {
        let playable = arrival + PLAYOUT_FLOOR;
        let Some(start) = self.start else {
            self.start = Some(playable);
            return;
        };
        let late = playable - (start + self.played);
        self.min_early = self.min_early.min(-late);
        self.early_frames += 1;
        if self.early_frames >= EARLY_WINDOW {
            if self.min_early > EARLY_SLACK {
                self.skip = usize::try_from(self.min_early).unwrap_or(0);
                self.report.playout_advances += 1;
                self.report.playout_advanced_ms += ms(self.min_early);
            }
            self.min_early = i64::MAX;
            self.early_frames = 0;
        }
        if late > LATE_JUMP {
            self.min_early = i64::MAX;
            self.early_frames = 0;
            let inserted = late.min(MAX_PAUSE);
            self.report.playout_delays += 1;
            self.report.playout_delayed_ms += ms(inserted);
            let mut left = inserted as usize;
            // A client waiting briefly for a late packet stretches what it played last (Opus's
            // concealment, which fades by itself) rather than cutting to silence; a longer
            // pause (the bot sent nothing) is silence.
            let mut stretched = 0;
            let mut frame = [0i16; FRAME];
            while left > 0 {
                let n = left.min(FRAME);
                if stretched < MAX_STRETCH {
                    self.conceal(&mut frame, None);
                    stretched += n;
                } else {
                    frame.fill(0);
                }
                self.write(&frame[..n]);
                left -= n;
            }
        }
    }

    fn emit(&mut self, frame: &[i16; FRAME]) {
        self.level = super::report::decay_level(self.level, audio_pipeline::mix::level_dbfs(frame));
        self.report.seconds += FRAME as f64 / f64::from(RATE);
        // Moving playout earlier: the start of this frame is not played.
        let cut = self.skip.min(FRAME);
        self.skip -= cut;
        self.write(&frame[cut..]);
    }

    fn write(&mut self, samples: &[i16]) {
        if self.start.is_none() {
            return;
        }
        self.played += samples.len() as i64;
        if self.pcm.len() + samples.len() <= self.max_samples {
            self.pcm.extend_from_slice(samples);
        }
        if let Some(w) = self.wav.as_mut() {
            let mut ok = true;
            {
                let mut i16w = w.get_i16_writer(samples.len() as u32);
                for &s in samples {
                    i16w.write_sample(s);
                }
                ok &= i16w.flush().is_ok();
            }
            if !ok {
                // A full disk must not stop the call; stop recording instead.
                self.wav = None;
            }
        }
    }

    /// Decodes whatever is still held (the stream is over, nothing more will fill gaps) and
    /// finalises the WAV file. Returns the file's path.
    pub fn finish(&mut self) -> Option<PathBuf> {
        self.drain(true);
        if let Some(w) = self.wav.take() {
            let _ = w.finalize();
        }
        self.wav_path.clone()
    }

    /// Current level of the bot's audio (dBFS, peak-hold with decay).
    pub fn level(&self) -> f32 {
        self.level
    }

    /// The figures so far.
    pub fn report(&self) -> BotStreamReport {
        BotStreamReport {
            jitter_ms: self.jitter * 1000.0 / f64::from(RATE),
            longest_gap_ms: ms(self.longest_gap),
            ..self.report
        }
    }

    /// The decoded audio on the call's clock.
    pub fn timeline(&self) -> Timeline {
        Timeline {
            start: self.start.unwrap_or(0),
            samples: self.pcm.clone(),
        }
    }

    /// Packets that arrived within `from..to` of the call's clock.
    pub fn arrivals_between(&self, from: i64, to: i64) -> u64 {
        self.arrivals
            .iter()
            .filter(|&&p| p >= from && p < to)
            .count() as u64
    }

    /// Where the recording goes, if anywhere.
    pub fn wav_path(&self) -> Option<&Path> {
        self.wav_path.as_deref()
    }
}

impl Drop for BotStream {
    fn drop(&mut self) {
        if let Some(w) = self.wav.take() {
            let _ = w.finalize();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use audio_pipeline::codec::{MAX_ENCODED_BYTES, OpusConfig, OpusEncoder};

    use super::*;

    fn packets(n: usize) -> Vec<Bytes> {
        let mut enc = OpusEncoder::new(1, &OpusConfig::default()).unwrap();
        let mut buf = [0u8; MAX_ENCODED_BYTES];
        (0..n)
            .map(|f| {
                let pcm: Vec<i16> = (0..FRAME)
                    .map(|i| {
                        let t = (f * FRAME + i) as f64 / f64::from(RATE);
                        ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16
                    })
                    .collect();
                let k = enc.encode(&pcm, &mut buf).unwrap();
                Bytes::copy_from_slice(&buf[..k])
            })
            .collect()
    }

    #[test]
    fn reorders_conceals_and_places_on_the_clock() {
        let epoch = Instant::now();
        let mut s = BotStream::new(epoch, usize::MAX, None).unwrap();
        let p = packets(20);
        let tick = Duration::from_millis(20);
        // 65530.. wraps; packet 3 is lost, 6 and 7 swap, 9 arrives twice.
        let mut order: Vec<usize> = (0..20).filter(|&i| i != 3).collect();
        order.swap(5, 6);
        order.insert(9, 9);
        for &i in &order {
            let seq = 65_530u16.wrapping_add(i as u16);
            // Each packet arrives in its own slot, except 6, which comes after 7.
            let late = if i == 6 {
                tick + Duration::from_millis(1)
            } else {
                Duration::ZERO
            };
            let at = epoch + Duration::from_millis(100) + tick * i as u32 + late;
            s.push(seq, (i * FRAME) as u32, p[i].clone(), at);
        }
        s.finish();
        let r = s.report();
        assert_eq!(r.packets, 20);
        assert_eq!(r.discarded, 1, "{r:?}");
        assert_eq!(r.concealed, 1, "{r:?}");
        let t = s.timeline();
        // Playout starts a frame after packet 0 arrived; packet 6, 21 ms late, pushes the
        // rest back.
        assert_eq!(t.start, position(epoch, epoch + Duration::from_millis(120)));
        assert_eq!(t.samples.len(), 20 * FRAME + 21 * 48);
        assert!(r.jitter_ms > 0.0, "the late packet shows as jitter");
        // The lost packet 3 leaves 40 ms between 2 and 4; 6, a millisecond behind 7, leaves
        // 40 ms after 5 too.
        assert!((r.longest_gap_ms - 40.0).abs() < 0.1, "{r:?}");
        assert_eq!(s.arrivals_between(0, i64::MAX), 20);
        // That push back is the one move of playout: 21 ms of audio inserted.
        assert_eq!((r.playout_delays, r.playout_advances), (1, 0), "{r:?}");
        assert!((r.playout_delayed_ms - 21.0).abs() < 0.01, "{r:?}");
    }

    #[test]
    fn playout_follows_packets_that_come_earlier_for_good() {
        let epoch = Instant::now();
        let mut s = BotStream::new(epoch, usize::MAX, None).unwrap();
        let p = packets(300);
        let tick = Duration::from_millis(20);
        // From packet 100 on, the bot sends 8 ms earlier (its send tick moved).
        let arrival = |i: usize| {
            epoch + Duration::from_millis(100) + tick * i as u32
                - Duration::from_millis(if i >= 100 { 8 } else { 0 })
        };
        // Where playout stands when packet `i` is placed, against its arrival plus the floor.
        let mut offsets = Vec::new();
        for (i, packet) in p.iter().enumerate() {
            s.push(i as u16, (i * FRAME) as u32, packet.clone(), arrival(i));
            let place = s.start.unwrap() + s.played - FRAME as i64;
            offsets.push(place - (position(epoch, arrival(i)) + PLAYOUT_FLOOR));
        }
        assert_eq!(offsets[50], 0, "on time: played a frame after arrival");
        assert_eq!(offsets[110], 8 * 48, "just after the move: 8 ms more wait");
        // Within two windows playout has moved: a frame after arrival again.
        assert!(offsets[220..].iter().all(|&o| o == 0), "{offsets:?}");
        // Audio left out: 8 ms; a bot that goes back to its old timing is absorbed, not
        // chased (a packet up to 10 ms behind its place still plays at its place).
        let t = s.timeline();
        assert_eq!(t.samples.len(), 300 * FRAME - 8 * 48);
        let r = s.report();
        assert_eq!((r.playout_advances, r.playout_delays), (1, 0), "{r:?}");
        assert!((r.playout_advanced_ms - 8.0).abs() < 0.01, "{r:?}");
    }

    #[test]
    fn records_a_wav_file() {
        let path = std::env::temp_dir().join(format!("graph-sim-rec-{}.wav", std::process::id()));
        {
            let epoch = Instant::now();
            let mut s = BotStream::new(epoch, 0, Some(&path)).unwrap();
            for (i, p) in packets(10).into_iter().enumerate() {
                s.push(i as u16, (i * FRAME) as u32, p, epoch);
            }
            // Dropped without `finish`: the file is still finalised.
        }
        let r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.spec().sample_rate, RATE);
        // The last packets wait in the reorder window when not finished.
        assert!(r.len() as usize >= 7 * FRAME, "{}", r.len());
        let _ = std::fs::remove_file(&path);
    }
}
