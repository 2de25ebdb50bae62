//! What the media side measured, per call and per participant, and the sans-IO bookkeeping
//! behind it ([`CallMeasure`]): the shells only feed it what was said, sent and received.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use super::measure::{DelayParams, FRAME, Timeline, echo_report, percentile};
use super::recorder::{BotStream, BotStreamReport, position};
use crate::netem::LinkStats;

/// Everything measured on the media side, for the demo's report (serialises to JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MediaReport {
    /// One entry per call the media side was asked to serve, in order.
    pub calls: Vec<CallReport>,
    /// Over every participant of every call.
    pub totals: Totals,
    /// Each call with service-hosted media: what its people heard from the service.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub heard: Vec<super::HeardReport>,
}

/// One call's media.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CallReport {
    /// The call.
    pub call_id: String,
    /// The bot's media processor.
    pub mp_uri: String,
    /// The bot accepted the media session.
    pub accepted: bool,
    /// ICE and DTLS connected.
    pub media_connected: bool,
    /// Why media failed or was refused, if it did.
    pub error: Option<String>,
    /// The media session is over (hung up by either side, or the call ended).
    pub ended: bool,
    /// Why it ended, when the bot or the connection ended it (not the simulated service).
    pub end_reason: Option<String>,
    /// The service's `resultInfo` `(code, subcode)` when the call ended: 200/5001 when the bot
    /// hung up, 408/8537 when it was not kept alive, and so on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<(i64, i64)>,
    /// Who ended the call: `bot`, `user` or `service`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<&'static str>,
    /// The WAV file of the bot's audio.
    pub recording: Option<PathBuf>,
    /// Each simulated participant, by source id.
    pub participants: Vec<ParticipantReport>,
    /// The bot's stream as received.
    pub bot: BotStreamReport,
    /// What the `from_bot` impairment did to it.
    pub from_bot: LinkReport,
}

/// One simulated participant.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ParticipantReport {
    /// Display name.
    pub name: String,
    /// `sourceId`.
    pub source_id: u32,
    /// 20 ms frames sent toward the bot (before the `to_bot` impairment).
    pub frames_sent: u64,
    /// Frames not sent because the sender fell more than 200 ms behind its schedule.
    pub frames_late: u64,
    /// What the `to_bot` impairment did to this participant's packets.
    pub to_bot: LinkReport,
    /// Frames of the bot's audio received while this participant was in the call.
    pub frames_received: u64,
    /// Stretches of speech whose echo was found.
    pub echo_detections: usize,
    /// Detections set aside as false peaks.
    pub echo_rejected: usize,
    /// Median delay from saying something to hearing it back from the bot, ms.
    pub echo_delay_ms_p50: Option<f64>,
    /// 95th percentile of that delay, ms.
    pub echo_delay_ms_p95: Option<f64>,
    /// How alike the echo sounds (audio-pipeline's spectral similarity, 0–1).
    pub similarity: Option<f32>,
}

/// Packets through one impaired direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LinkReport {
    /// Packets put on the link.
    pub sent: u64,
    /// Packets dropped.
    pub lost: u64,
    /// Extra copies.
    pub duplicated: u64,
    /// Packets held back behind a later one.
    pub reordered: u64,
    /// Packets (copies included) delivered.
    pub delivered: u64,
    /// `lost / sent` in percent.
    pub loss_pct: f64,
}

impl From<LinkStats> for LinkReport {
    fn from(s: LinkStats) -> Self {
        LinkReport {
            sent: s.sent,
            lost: s.lost,
            duplicated: s.duplicated,
            reordered: s.reordered,
            delivered: s.delivered,
            loss_pct: if s.sent == 0 {
                0.0
            } else {
                100.0 * s.lost as f64 / s.sent as f64
            },
        }
    }
}

/// Figures over all participants.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Participants played.
    pub participants: usize,
    /// Frames sent by all of them.
    pub frames_sent: u64,
    /// Frames of the bot's audio received, summed over participants.
    pub frames_received: u64,
    /// Packets the `to_bot` impairment dropped.
    pub to_bot_lost: u64,
    /// Median of every echo delay detected, ms.
    pub echo_delay_ms_p50: Option<f64>,
    /// 95th percentile of every echo delay detected, ms.
    pub echo_delay_ms_p95: Option<f64>,
    /// Lowest per-participant similarity.
    pub similarity_min: Option<f32>,
    /// Mean per-participant similarity.
    pub similarity_mean: Option<f32>,
}

impl MediaReport {
    /// Puts `calls` together and works out the totals; `delays` are every participant's
    /// individual echo delay detections.
    pub(crate) fn new(calls: Vec<CallReport>, delays: &[f64]) -> MediaReport {
        let ps: Vec<&ParticipantReport> = calls.iter().flat_map(|c| &c.participants).collect();
        let sims: Vec<f32> = ps.iter().filter_map(|p| p.similarity).collect();
        let totals = Totals {
            participants: ps.len(),
            frames_sent: ps.iter().map(|p| p.frames_sent).sum(),
            frames_received: ps.iter().map(|p| p.frames_received).sum(),
            to_bot_lost: ps.iter().map(|p| p.to_bot.lost).sum(),
            echo_delay_ms_p50: percentile(delays, 0.5),
            echo_delay_ms_p95: percentile(delays, 0.95),
            similarity_min: sims.iter().copied().reduce(f32::min),
            similarity_mean: (!sims.is_empty())
                .then(|| sims.iter().sum::<f32>() / sims.len() as f32),
        };
        MediaReport {
            calls,
            totals,
            heard: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
struct Track {
    name: String,
    said: Timeline,
    frames_sent: u64,
    frames_late: u64,
    link: LinkStats,
    joined: i64,
    left: Option<i64>,
    /// Peak-hold level of what was said, dBFS (for the softphone's meters).
    level: f32,
}

/// Level reported for silence, dBFS.
pub(crate) const SILENT_DBFS: f32 = -96.0;

/// A peak meter: jumps up to a louder frame, falls by 1 dB per 20 ms frame (50 dB/s).
pub(crate) fn decay_level(previous: f32, frame_dbfs: f32) -> f32 {
    frame_dbfs.max(previous - 1.0).max(SILENT_DBFS)
}

/// The measurements of one call as they accumulate. Times are placed on the call's clock, which
/// starts at the `epoch` given.
#[derive(Debug)]
pub struct CallMeasure {
    epoch: Instant,
    call_id: String,
    mp_uri: String,
    max_samples: usize,
    tracks: BTreeMap<u32, Track>,
    bot: BotStream,
    from_bot: LinkStats,
    /// The bot accepted the session.
    pub accepted: bool,
    /// Media connected.
    pub media_connected: bool,
    /// Why media failed, if it did.
    pub error: Option<String>,
    /// The session is over.
    pub ended: bool,
    /// Why, when the bot or the connection ended it.
    pub end_reason: Option<String>,
    /// The service's `resultInfo` `(code, subcode)` when the call ended (a bot's hang-up is
    /// 200/5001).
    pub result: Option<(i64, i64)>,
    /// Who ended the call: `bot`, `user` or `service`.
    pub ended_by: Option<&'static str>,
}

/// A copy of a [`CallMeasure`]'s data, to analyse without holding the call's lock.
#[derive(Debug, Clone)]
pub struct CallSnapshot {
    report: CallReport,
    tracks: Vec<(u32, Track)>,
    heard: Timeline,
    arrivals: Vec<(u32, u64)>,
}

impl CallMeasure {
    /// Measurements of `call_id`, keeping at most `max_samples` of each signal for analysis.
    pub fn new(
        epoch: Instant,
        call_id: &str,
        mp_uri: &str,
        max_samples: usize,
        bot: BotStream,
    ) -> CallMeasure {
        CallMeasure {
            epoch,
            call_id: call_id.to_owned(),
            mp_uri: mp_uri.to_owned(),
            max_samples,
            tracks: BTreeMap::new(),
            bot,
            from_bot: LinkStats::default(),
            accepted: false,
            media_connected: false,
            error: None,
            ended: false,
            end_reason: None,
            result: None,
            ended_by: None,
        }
    }

    /// The call's id.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The call's clock origin.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// A participant starts talking: its first frame is said at `start`.
    pub fn add_participant(&mut self, source: u32, name: &str, start: Instant) {
        let at = position(self.epoch, start);
        // The first frame leaves at `start` and holds the 20 ms a microphone captured before
        // it: what is said is placed there, so capture framing counts in the echo delay as
        // it does for a person.
        let said_from = at - FRAME as i64;
        self.tracks.insert(
            source,
            Track {
                name: name.to_owned(),
                said: Timeline::starting_at(said_from),
                frames_sent: 0,
                frames_late: 0,
                link: LinkStats::default(),
                joined: at,
                left: None,
                level: SILENT_DBFS,
            },
        );
    }

    /// The participant said `frame` (the next 20 ms after its previous one); `sent` is false
    /// when the sender was too far behind to send it.
    pub fn said(&mut self, source: u32, frame: &[i16; FRAME], sent: bool) {
        let Some(t) = self.tracks.get_mut(&source) else {
            return;
        };
        t.level = decay_level(t.level, audio_pipeline::mix::level_dbfs(frame));
        if sent {
            t.frames_sent += 1;
        } else {
            t.frames_late += 1;
        }
        if t.said.samples.len() + FRAME <= self.max_samples {
            t.said.samples.extend_from_slice(frame);
        }
    }

    /// The `to_bot` impairment's figures for a participant so far.
    pub fn set_link_stats(&mut self, source: u32, stats: LinkStats) {
        if let Some(t) = self.tracks.get_mut(&source) {
            t.link = stats;
        }
    }

    /// The participant left at `at`.
    pub fn participant_left(&mut self, source: u32, at: Instant) {
        let pos = position(self.epoch, at);
        if let Some(t) = self.tracks.get_mut(&source) {
            t.left.get_or_insert(pos);
        }
    }

    /// Current levels (dBFS, peak-hold with decay) of the bot's audio and of each participant's,
    /// by `sourceId`.
    pub fn levels(&self) -> (f32, Vec<(u32, f32)>) {
        (
            self.bot.level(),
            self.tracks.iter().map(|(&s, t)| (s, t.level)).collect(),
        )
    }

    /// The bot's stream.
    pub fn bot(&mut self) -> &mut BotStream {
        &mut self.bot
    }

    /// The `from_bot` impairment's figures so far.
    pub fn set_from_bot_stats(&mut self, stats: LinkStats) {
        self.from_bot = stats;
    }

    /// Copies what the analysis needs.
    pub fn snapshot(&self) -> CallSnapshot {
        let arrivals = self
            .tracks
            .iter()
            .map(|(&s, t)| {
                (
                    s,
                    self.bot
                        .arrivals_between(t.joined, t.left.unwrap_or(i64::MAX)),
                )
            })
            .collect();
        CallSnapshot {
            report: CallReport {
                call_id: self.call_id.clone(),
                mp_uri: self.mp_uri.clone(),
                accepted: self.accepted,
                media_connected: self.media_connected,
                error: self.error.clone(),
                ended: self.ended,
                end_reason: self.end_reason.clone(),
                result: self.result,
                ended_by: self.ended_by,
                recording: self.bot.wav_path().map(Into::into),
                participants: Vec::new(),
                bot: self.bot.report(),
                from_bot: self.from_bot.into(),
            },
            tracks: self.tracks.iter().map(|(&s, t)| (s, t.clone())).collect(),
            heard: self.bot.timeline(),
            arrivals,
        }
    }
}

impl CallSnapshot {
    /// Runs the echo analysis. Returns the report and every delay detection (for totals).
    /// Costs tens of milliseconds per participant-minute: call it off the real-time path.
    pub fn analyse(self, params: &DelayParams) -> (CallReport, Vec<f64>) {
        let mut report = self.report;
        let mut all = Vec::new();
        for (source, t) in &self.tracks {
            let echo = echo_report(&t.said, &self.heard, params);
            all.extend_from_slice(&echo.delays_ms);
            report.participants.push(ParticipantReport {
                name: t.name.clone(),
                source_id: *source,
                frames_sent: t.frames_sent,
                frames_late: t.frames_late,
                to_bot: t.link.into(),
                frames_received: self
                    .arrivals
                    .iter()
                    .find(|(s, _)| s == source)
                    .map_or(0, |(_, n)| *n),
                echo_detections: echo.detections,
                echo_rejected: echo.rejected,
                echo_delay_ms_p50: echo.delay_ms_p50,
                echo_delay_ms_p95: echo.delay_ms_p95,
                similarity: echo.similarity,
            });
        }
        (report, all)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn totals_add_up_and_empty_reports_are_none() {
        let empty = MediaReport::new(Vec::new(), &[]);
        assert_eq!(empty.totals.echo_delay_ms_p50, None);
        assert_eq!(empty.totals.similarity_mean, None);
        let p = |sent, sim| ParticipantReport {
            frames_sent: sent,
            frames_received: 10,
            similarity: Some(sim),
            ..ParticipantReport::default()
        };
        let call = CallReport {
            participants: vec![p(100, 0.9), p(50, 0.7)],
            ..CallReport::default()
        };
        let r = MediaReport::new(vec![call], &[80.0, 90.0, 100.0]);
        assert_eq!(r.totals.participants, 2);
        assert_eq!(r.totals.frames_sent, 150);
        assert_eq!(r.totals.frames_received, 20);
        assert_eq!(r.totals.echo_delay_ms_p50, Some(90.0));
        assert_eq!(r.totals.similarity_min, Some(0.7));
        assert!((r.totals.similarity_mean.unwrap() - 0.8).abs() < 1e-6);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["totals"]["echo_delay_ms_p95"].is_number());
    }

    #[test]
    fn a_call_measure_counts_frames_and_presence() {
        let epoch = Instant::now();
        let bot = BotStream::new(epoch, 1 << 20, None).unwrap();
        let mut m = CallMeasure::new(
            epoch,
            "c",
            "net.tcp://127.0.0.1:1/MediaProcessor",
            1 << 20,
            bot,
        );
        m.add_participant(7, "Alice", epoch + Duration::from_millis(40));
        for i in 0..10 {
            m.said(7, &[1; FRAME], i != 3);
        }
        m.participant_left(7, epoch + Duration::from_secs(1));
        let (r, delays) = m.snapshot().analyse(&DelayParams::default());
        let p = &r.participants[0];
        assert_eq!((p.frames_sent, p.frames_late), (9, 1));
        assert_eq!(p.name, "Alice");
        assert!(delays.is_empty());
        assert_eq!(p.echo_delay_ms_p50, None);
    }
}
