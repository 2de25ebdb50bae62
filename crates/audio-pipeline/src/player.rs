//! The frame player: queues app audio of any length and hands out one frame per tick.
//! Sans-IO; the send thread calls it on each paced tick.

use crate::frame::PcmSpec;
use crate::framer::Framer;

/// Settings of a [`FramePlayer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayerConfig {
    /// Frames held at most; pushing more drops the oldest.
    pub capacity_frames: usize,
    /// Frames that must be queued before playback (re)starts. One (the default) sends a frame
    /// at the first tick after it was pushed: an app that answers each received frame (an echo,
    /// a relay, a translator) adds no frame of delay. An app that pushes one frame at a time on
    /// its own timer and is late for a tick leaves a one-frame gap once; its next push then
    /// finds a frame still queued, and playback runs a frame deeper from there on. Two frames
    /// absorb ±10 ms of such an app's timing jitter from the start, for 20 ms more delay.
    pub start_frames: usize,
    /// "Low on frames" is raised when fewer than this many frames remain after a tick.
    pub low_water_frames: usize,
}

impl Default for PlayerConfig {
    fn default() -> Self {
        PlayerConfig {
            capacity_frames: 500,
            start_frames: 1,
            low_water_frames: 3,
        }
    }
}

/// What a tick produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayerOutput {
    /// `out` holds the next frame.
    Frame,
    /// Playback was running but the queue was empty: an audible gap (counted).
    Underrun,
    /// Not playing (nothing queued yet, or waiting for `start_frames`); `out` holds silence.
    Idle,
}

/// Events for the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayerEvent {
    /// Fewer than the low-water mark remain queued: push more audio.
    LowOnFrames {
        /// Frames still queued.
        queued: usize,
    },
}

/// Counters of a [`FramePlayer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlayerStats {
    /// Frames played.
    pub played: u64,
    /// Ticks with an empty queue while playing.
    pub underruns: u64,
    /// Frames dropped because the queue was full.
    pub overflow_dropped: u64,
    /// "Low on frames" events raised.
    pub low_events: u64,
}

/// A paced frame queue with pre-buffering and a low-water event, like the official library's
/// audio frame player. The ring of samples is allocated once.
#[derive(Debug)]
pub struct FramePlayer {
    config: PlayerConfig,
    framer: Framer,
    ring: Vec<i16>,
    frame: usize,
    head: usize,
    frames: usize,
    playing: bool,
    low_armed: bool,
    pending_event: Option<PlayerEvent>,
    stats: PlayerStats,
}

impl FramePlayer {
    /// A player for audio in `spec`.
    pub fn new(spec: PcmSpec, config: PlayerConfig) -> FramePlayer {
        let frame = spec.samples_per_frame();
        let cap = config.capacity_frames.max(1);
        FramePlayer {
            config: PlayerConfig {
                capacity_frames: cap,
                ..config
            },
            framer: Framer::new(spec),
            ring: vec![0; frame * cap],
            frame,
            head: 0,
            frames: 0,
            playing: false,
            low_armed: true,
            pending_event: None,
            stats: PlayerStats::default(),
        }
    }

    /// Queues s16le bytes (any length; partial frames wait for the rest).
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        let Self {
            framer,
            ring,
            frame,
            head,
            frames,
            config,
            stats,
            ..
        } = self;
        framer.push(bytes, |f| {
            enqueue(ring, *frame, head, frames, config.capacity_frames, stats, f)
        });
        self.rearm();
    }

    /// Queues samples (any length).
    pub fn push_samples(&mut self, samples: &[i16]) {
        let Self {
            framer,
            ring,
            frame,
            head,
            frames,
            config,
            stats,
            ..
        } = self;
        framer.push_samples(samples, |f| {
            enqueue(ring, *frame, head, frames, config.capacity_frames, stats, f)
        });
        self.rearm();
    }

    /// Pads and queues a trailing partial frame (end of a clip).
    pub fn flush(&mut self) {
        let Self {
            framer,
            ring,
            frame,
            head,
            frames,
            config,
            stats,
            ..
        } = self;
        framer.flush(|f| enqueue(ring, *frame, head, frames, config.capacity_frames, stats, f));
        self.rearm();
    }

    /// Produces this tick's frame into `out` (one frame long).
    pub fn tick(&mut self, out: &mut [i16]) -> PlayerOutput {
        if !self.playing {
            if self.frames >= self.config.start_frames.max(1) {
                self.playing = true;
            } else {
                out.fill(0);
                return PlayerOutput::Idle;
            }
        }
        if self.frames == 0 {
            self.playing = false;
            self.stats.underruns += 1;
            out.fill(0);
            self.low_check();
            return PlayerOutput::Underrun;
        }
        let start = self.head * self.frame;
        let n = out.len().min(self.frame);
        out[..n].copy_from_slice(&self.ring[start..start + n]);
        out[n..].fill(0);
        self.head = (self.head + 1) % self.config.capacity_frames;
        self.frames -= 1;
        self.stats.played += 1;
        if self.frames == 0 && self.framer.pending_samples() == 0 {
            // The clip ended cleanly: go idle rather than report underruns forever.
            self.playing = false;
        }
        self.low_check();
        PlayerOutput::Frame
    }

    /// Takes the pending event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<PlayerEvent> {
        self.pending_event.take()
    }

    /// Whole frames queued.
    pub fn queued_frames(&self) -> usize {
        self.frames
    }

    /// True while playing out (as opposed to idle or pre-buffering).
    pub fn is_playing(&self) -> bool {
        self.playing
    }

    /// Counters.
    pub fn stats(&self) -> PlayerStats {
        self.stats
    }

    fn low_check(&mut self) {
        if self.low_armed && self.frames < self.config.low_water_frames {
            self.low_armed = false;
            self.stats.low_events += 1;
            self.pending_event = Some(PlayerEvent::LowOnFrames {
                queued: self.frames,
            });
        }
    }

    fn rearm(&mut self) {
        if self.frames >= self.config.low_water_frames {
            self.low_armed = true;
        }
    }
}

fn enqueue(
    ring: &mut [i16],
    frame: usize,
    head: &mut usize,
    frames: &mut usize,
    cap: usize,
    stats: &mut PlayerStats,
    f: &[i16],
) {
    if *frames == cap {
        *head = (*head + 1) % cap;
        *frames -= 1;
        stats.overflow_dropped += 1;
    }
    let slot = (*head + *frames) % cap;
    ring[slot * frame..(slot + 1) * frame].copy_from_slice(f);
    *frames += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PcmSpec {
        PcmSpec::new(16_000, 1).unwrap()
    }

    #[test]
    fn plays_a_long_clip_in_frames_then_goes_idle() {
        let mut p = FramePlayer::new(spec(), PlayerConfig::default());
        let clip: Vec<i16> = (0..320 * 3 + 100).map(|i| i as i16).collect();
        p.push_samples(&clip);
        p.flush();
        let mut out = vec![0i16; 320];
        let mut got = Vec::new();
        for _ in 0..6 {
            if p.tick(&mut out) == PlayerOutput::Frame {
                got.extend_from_slice(&out);
            }
        }
        assert_eq!(got.len(), 320 * 4);
        assert_eq!(&got[..clip.len()], &clip[..]);
        assert_eq!(p.stats().underruns, 0);
        assert!(!p.is_playing());
    }

    #[test]
    fn one_frame_at_a_time_with_5ms_jitter_never_underruns() {
        // The app pushes frame k at 20k ms ± 5 ms; ticks come every 20 ms at every phase offset.
        for phase in 0..20u64 {
            let config = PlayerConfig {
                start_frames: 2,
                ..PlayerConfig::default()
            };
            let mut p = FramePlayer::new(spec(), config);
            let mut x = 7u32 + phase as u32;
            let pushes: Vec<i64> = (0..3000i64)
                .map(|k| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    let jitter = i64::from(x >> 16) % 11 - 5;
                    20 * k + jitter + 5 // +5 keeps the first push at t >= 0
                })
                .collect();
            let frame = vec![1i16; 320];
            let mut out = vec![0i16; 320];
            let mut next_push = 0;
            let mut played = 0;
            let mut tick_t = phase as i64;
            while next_push < pushes.len() || p.queued_frames() > 0 {
                // Everything the app pushed up to this tick is queued (pushes come in order of
                // their jittered times, as a real app's sends would).
                while next_push < pushes.len() && pushes[next_push] <= tick_t {
                    p.push_samples(&frame);
                    next_push += 1;
                }
                if p.tick(&mut out) == PlayerOutput::Frame {
                    played += 1;
                }
                tick_t += 20;
            }
            assert_eq!(p.stats().underruns, 0, "phase {phase}");
            assert_eq!(played, 3000);
        }
    }

    #[test]
    fn low_on_frames_fires_once_per_dip() {
        let cfg = PlayerConfig {
            low_water_frames: 3,
            ..PlayerConfig::default()
        };
        let mut p = FramePlayer::new(spec(), cfg);
        p.push_samples(&vec![5i16; 320 * 5]);
        let mut out = vec![0i16; 320];
        let mut events = Vec::new();
        for _ in 0..4 {
            p.tick(&mut out);
            events.extend(p.poll_event());
        }
        assert_eq!(events, vec![PlayerEvent::LowOnFrames { queued: 2 }]);
        p.push_samples(&vec![5i16; 320 * 5]);
        for _ in 0..6 {
            p.tick(&mut out);
            events.extend(p.poll_event());
        }
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn overflow_drops_the_oldest_and_counts() {
        let cfg = PlayerConfig {
            capacity_frames: 3,
            ..PlayerConfig::default()
        };
        let mut p = FramePlayer::new(spec(), cfg);
        for v in 1..=5i16 {
            p.push_samples(&vec![v; 320]);
        }
        assert_eq!(p.stats().overflow_dropped, 2);
        let mut out = vec![0i16; 320];
        let mut firsts = Vec::new();
        while p.tick(&mut out) == PlayerOutput::Frame {
            firsts.push(out[0]);
        }
        assert_eq!(firsts, vec![3, 4, 5]);
    }

    #[test]
    fn a_frame_pushed_before_a_tick_plays_at_that_tick_and_a_late_one_deepens_the_queue() {
        let mut p = FramePlayer::new(spec(), PlayerConfig::default());
        let mut out = vec![0i16; 320];
        // An echo: each tick's frame is pushed just before the next tick.
        for k in 0..10 {
            p.push_samples(&vec![k as i16 + 1; 320]);
            assert_eq!(p.tick(&mut out), PlayerOutput::Frame, "tick {k}");
            assert_eq!(out[0], k as i16 + 1, "the frame just pushed");
            assert_eq!(p.queued_frames(), 0);
        }
        // One push misses its tick: that tick is a gap, and the queue is a frame deeper after.
        assert_eq!(p.tick(&mut out), PlayerOutput::Idle);
        p.push_samples(&[11; 320]);
        p.push_samples(&[12; 320]);
        assert_eq!(p.tick(&mut out), PlayerOutput::Frame);
        assert_eq!((out[0], p.queued_frames()), (11, 1));
        p.push_samples(&[13; 320]);
        assert_eq!(p.tick(&mut out), PlayerOutput::Frame);
        assert_eq!((out[0], p.queued_frames()), (12, 1));
    }

    #[test]
    fn underrun_is_counted_and_playback_rebuffers() {
        let mut p = FramePlayer::new(spec(), PlayerConfig::default());
        let mut out = vec![0i16; 320];
        p.push_samples(&vec![1i16; 320 * 2 + 10]);
        assert_eq!(p.tick(&mut out), PlayerOutput::Frame);
        assert_eq!(p.tick(&mut out), PlayerOutput::Frame);
        assert_eq!(p.tick(&mut out), PlayerOutput::Underrun);
        assert_eq!(p.tick(&mut out), PlayerOutput::Idle);
        assert_eq!(p.stats().underruns, 1);
    }
}
