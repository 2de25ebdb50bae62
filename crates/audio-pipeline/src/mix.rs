//! Mixing participants' frames and tracking who is speaking.

use media_session::SourceId;

/// How the mixer keeps a loud sum inside 16 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MixMode {
    /// Sum and clamp to the i16 range: exact below full scale, hard clipping above.
    Saturate,
    /// Sum, then a smooth limiter above half scale: no hard clipping, slight compression of
    /// loud overlaps only.
    #[default]
    SoftClip,
}

/// Sums frames of the same layout into `out`. Scratch space is the caller's, so mixing never
/// allocates: `acc` must be at least `out.len()` long.
pub fn mix_into<'a>(
    mode: MixMode,
    frames: impl IntoIterator<Item = &'a [i16]>,
    acc: &mut [i32],
    out: &mut [i16],
) {
    let acc = &mut acc[..out.len()];
    acc.fill(0);
    for f in frames {
        for (a, &s) in acc.iter_mut().zip(f) {
            *a += i32::from(s);
        }
    }
    match mode {
        MixMode::Saturate => {
            for (o, &a) in out.iter_mut().zip(acc.iter()) {
                *o = a.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
            }
        }
        MixMode::SoftClip => {
            for (o, &a) in out.iter_mut().zip(acc.iter()) {
                *o = soft_clip(a);
            }
        }
    }
}

/// Identity up to half scale, then a rational knee that approaches but never reaches full
/// scale.
fn soft_clip(x: i32) -> i16 {
    const KNEE: f32 = 16_384.0;
    const HEAD: f32 = 32_767.0 - KNEE;
    let mag = x.unsigned_abs() as f32;
    if mag <= KNEE {
        return x as i16;
    }
    let over = mag - KNEE;
    let y = KNEE + HEAD * over / (over + HEAD);
    (y.copysign(x as f32)) as i16
}

/// Level of a frame in dBFS (−96 for digital silence).
pub fn level_dbfs(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return -96.0;
    }
    let energy: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (energy / samples.len() as f64).sqrt() / 32_768.0;
    (20.0 * rms.max(1e-9).log10()).max(-96.0) as f32
}

/// Settings of [`SpeakerTracker`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeakerConfig {
    /// Level at which a silent participant becomes active.
    pub on_dbfs: f32,
    /// Level below which an active participant counts as quiet (hysteresis: below `on_dbfs`).
    pub off_dbfs: f32,
    /// Frames above `on_dbfs` needed to become active.
    pub on_frames: u16,
    /// Quiet frames needed to become inactive (a pause between words keeps you active).
    pub off_frames: u16,
    /// Frames a new loudest speaker must lead before the dominant speaker changes.
    pub dominant_hold_frames: u16,
    /// At most this many active speakers are reported (loudest first).
    pub max_active: usize,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        SpeakerConfig {
            on_dbfs: -45.0,
            off_dbfs: -55.0,
            on_frames: 2,
            off_frames: 25,
            dominant_hold_frames: 25,
            max_active: 4,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct SpeakerState {
    source: SourceId,
    active: bool,
    loud_run: u16,
    quiet_run: u16,
    /// Smoothed level, for ranking.
    level: f32,
}

/// Active speakers (energy with hysteresis) and the dominant speaker. Sans-IO: feed one level
/// per participant per 20 ms tick, then call [`SpeakerTracker::end_tick`].
///
/// State lives in a vector sized at creation for `capacity` participants; it grows only when
/// more join.
#[derive(Debug, Clone)]
pub struct SpeakerTracker {
    config: SpeakerConfig,
    states: Vec<SpeakerState>,
    dominant: SourceId,
    challenger: SourceId,
    challenger_run: u16,
    active: Vec<SourceId>,
}

impl SpeakerTracker {
    /// A tracker with room for `capacity` participants before it allocates.
    pub fn new(config: SpeakerConfig, capacity: usize) -> SpeakerTracker {
        SpeakerTracker {
            config,
            states: Vec::with_capacity(capacity),
            dominant: SourceId::NONE,
            challenger: SourceId::NONE,
            challenger_run: 0,
            active: Vec::with_capacity(config.max_active),
        }
    }

    /// Records `source`'s frame level for this tick.
    pub fn observe(&mut self, source: SourceId, level_dbfs: f32) {
        let cfg = self.config;
        let st = match self.states.iter_mut().position(|s| s.source == source) {
            Some(i) => &mut self.states[i],
            None => {
                self.states.push(SpeakerState {
                    source,
                    active: false,
                    loud_run: 0,
                    quiet_run: 0,
                    level: -96.0,
                });
                self.states.last_mut().unwrap_or_else(|| unreachable!())
            }
        };
        st.level = 0.8 * st.level + 0.2 * level_dbfs;
        if level_dbfs >= cfg.on_dbfs {
            st.loud_run = st.loud_run.saturating_add(1);
        } else {
            st.loud_run = 0;
        }
        if level_dbfs < cfg.off_dbfs {
            st.quiet_run = st.quiet_run.saturating_add(1);
        } else {
            st.quiet_run = 0;
        }
        if !st.active && st.loud_run >= cfg.on_frames {
            st.active = true;
        } else if st.active && st.quiet_run >= cfg.off_frames {
            st.active = false;
        }
    }

    /// Forgets a participant who left.
    pub fn remove(&mut self, source: SourceId) {
        self.states.retain(|s| s.source != source);
        if self.dominant == source {
            self.dominant = SourceId::NONE;
        }
    }

    /// Closes the tick: updates the active list and returns the new dominant speaker if it
    /// changed (`SourceId::NONE` when nobody speaks any more).
    pub fn end_tick(&mut self) -> Option<SourceId> {
        self.active.clear();
        // Loudest first; insertion into a short, preallocated list (no sort buffer needed).
        for st in self.states.iter().filter(|s| s.active) {
            let pos = self
                .active
                .iter()
                .position(|a| {
                    self.states
                        .iter()
                        .find(|s| s.source == *a)
                        .is_some_and(|s| s.level < st.level)
                })
                .unwrap_or(self.active.len());
            if pos < self.config.max_active {
                if self.active.len() == self.config.max_active {
                    self.active.pop();
                }
                self.active.insert(pos, st.source);
            }
        }
        let loudest = self.active.first().copied().unwrap_or(SourceId::NONE);
        if loudest == self.dominant {
            self.challenger_run = 0;
            return None;
        }
        if self.dominant != SourceId::NONE && !self.active.contains(&self.dominant) {
            // The dominant speaker fell silent: hand over without waiting.
            self.dominant = loudest;
            self.challenger_run = 0;
            return Some(loudest);
        }
        if loudest == self.challenger {
            self.challenger_run += 1;
        } else {
            self.challenger = loudest;
            self.challenger_run = 1;
        }
        if self.dominant == SourceId::NONE
            || self.challenger_run >= self.config.dominant_hold_frames
        {
            self.dominant = loudest;
            self.challenger_run = 0;
            return Some(loudest);
        }
        None
    }

    /// Active speakers, loudest first.
    pub fn active(&self) -> &[SourceId] {
        &self.active
    }

    /// The dominant speaker, or `SourceId::NONE`.
    pub fn dominant(&self) -> SourceId {
        self.dominant
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturating_mix_clamps_and_soft_clip_stays_smooth() {
        let a = [20_000i16, -20_000, 100, 0];
        let b = [20_000i16, -20_000, 200, 0];
        let mut acc = [0i32; 4];
        let mut out = [0i16; 4];
        mix_into(MixMode::Saturate, [&a[..], &b[..]], &mut acc, &mut out);
        assert_eq!(out, [32_767, -32_768, 300, 0]);
        mix_into(MixMode::SoftClip, [&a[..], &b[..]], &mut acc, &mut out);
        assert!(out[0] > 24_000 && out[0] < 32_767, "{}", out[0]);
        assert_eq!(out[1], -out[0]);
        assert_eq!(&out[2..], &[300, 0]);
        // Monotonic: a louder sum never comes out quieter.
        let mut prev = i16::MIN;
        for x in (-70_000..70_000).step_by(97) {
            let y = soft_clip(x);
            assert!(y >= prev);
            prev = y;
        }
    }

    #[test]
    fn levels() {
        assert_eq!(level_dbfs(&[0; 320]), -96.0);
        assert_eq!(level_dbfs(&[]), -96.0);
        let full = vec![i16::MAX; 320];
        assert!(level_dbfs(&full) > -0.1);
    }

    #[test]
    fn hysteresis_keeps_a_speaker_active_through_short_pauses() {
        let mut t = SpeakerTracker::new(SpeakerConfig::default(), 4);
        let a = SourceId(1);
        let mut changes = Vec::new();
        let mut feed = |t: &mut SpeakerTracker, lvl: f32, n: usize| {
            for _ in 0..n {
                t.observe(a, lvl);
                changes.extend(t.end_tick());
            }
        };
        feed(&mut t, -20.0, 1);
        assert!(t.active().is_empty(), "one loud frame is not speech");
        feed(&mut t, -20.0, 1);
        assert_eq!(t.active(), &[a]);
        // A 200 ms pause between words, between the thresholds and then below: still active.
        feed(&mut t, -50.0, 10);
        feed(&mut t, -70.0, 10);
        assert_eq!(t.active(), &[a]);
        feed(&mut t, -70.0, 30);
        assert!(t.active().is_empty());
        assert_eq!(changes, vec![a, SourceId::NONE]);
    }

    #[test]
    fn dominant_speaker_changes_only_after_a_sustained_lead() {
        let cfg = SpeakerConfig::default();
        let mut t = SpeakerTracker::new(cfg, 4);
        let (a, b) = (SourceId(1), SourceId(2));
        let mut events = Vec::new();
        for i in 0..100 {
            t.observe(a, -20.0);
            // b interjects loudly for 10 frames, then takes over for good from frame 50.
            let b_level = if (20..30).contains(&i) || i >= 50 {
                -10.0
            } else {
                -80.0
            };
            t.observe(b, b_level);
            // a gets quieter once b takes over (but stays active).
            if let Some(d) = t.end_tick() {
                events.push((i, d));
            }
        }
        assert_eq!(events.first().map(|e| e.1), Some(a));
        assert_eq!(events.len(), 2, "{events:?}");
        let (at, who) = events[1];
        assert_eq!(who, b);
        assert!(
            at >= 50 + i32::from(cfg.dominant_hold_frames) - 1,
            "changed at {at}"
        );
        assert_eq!(t.active(), &[b, a]);
    }
}
