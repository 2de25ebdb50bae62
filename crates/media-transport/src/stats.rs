//! Per-stream media quality (QoE) figures: what the official library reports per stream
//! (packets, loss, jitter, round-trip time), computed from the RTP headers as they arrive.
//! Plain data: the receive path feeds it one header at a time with the arrival `Instant`.

use std::time::{Duration, Instant};

use audio_pipeline::ReceptionStats;

/// RTP clock of Opus and telephone-event on these streams.
pub const RTP_CLOCK_HZ: u32 = 48_000;

/// Quality figures of one stream at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StreamQuality {
    /// RTP packets received (or sent, for the bot's own stream).
    pub packets: u64,
    /// Payload bytes received (or sent).
    pub bytes: u64,
    /// Packets expected from the sequence numbers and never received (RFC 3550 §6.4.1, A.3).
    pub lost: u64,
    /// `lost` over expected, 0.0–1.0.
    pub loss_fraction: f64,
    /// Interarrival jitter (RFC 3550 §6.4.1), in milliseconds.
    pub jitter_ms: f64,
    /// Packets that arrived out of order or twice. They count as received, so a late packet
    /// is not also counted as lost.
    pub reordered: u64,
    /// Round-trip time from RTCP, when the stack has measured one.
    pub rtt: Option<Duration>,
}

/// Running receive statistics of one RTP stream: packet and byte counts, and the RFC 3550
/// figures from audio-pipeline's [`ReceptionStats`] (the jitter buffer computes its own from
/// the same type).
#[derive(Debug, Clone)]
pub struct ReceiveStats {
    packets: u64,
    bytes: u64,
    reception: ReceptionStats,
}

impl Default for ReceiveStats {
    fn default() -> Self {
        ReceiveStats {
            packets: 0,
            bytes: 0,
            reception: ReceptionStats::new(RTP_CLOCK_HZ),
        }
    }
}

impl ReceiveStats {
    /// Empty statistics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one packet: its sequence number, RTP timestamp, payload size and arrival time.
    pub fn record(&mut self, seq: u16, timestamp: u32, payload_len: usize, arrival: Instant) {
        self.packets += 1;
        self.bytes += payload_len as u64;
        self.reception.record(seq, timestamp, arrival);
    }

    /// The figures now.
    pub fn quality(&self) -> StreamQuality {
        let r = &self.reception;
        StreamQuality {
            packets: self.packets,
            bytes: self.bytes,
            lost: r.lost(),
            loss_fraction: r.fraction_lost(),
            jitter_ms: r.jitter_ms(),
            reordered: r.reordered(),
            rtt: None,
        }
    }
}

/// The round-trip time the stack measured: from RTCP receiver reports about the bot's stream
/// (remote-inbound-rtp) when there are any, else from the ICE candidate pair's STUN checks.
#[cfg(feature = "runtime")]
pub(crate) async fn rtt_from_report(
    pc: &std::sync::Arc<dyn webrtc::peer_connection::PeerConnection>,
) -> Option<Duration> {
    use webrtc::peer_connection::{RTCStatsReportEntry, StatsSelector};
    let report = pc.get_stats(Instant::now(), StatsSelector::None).await;
    let positive =
        |secs: f64| (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs));
    let rtcp = report.iter().find_map(|entry| match entry {
        RTCStatsReportEntry::RemoteInboundRtp(s) => positive(s.round_trip_time),
        _ => None,
    });
    rtcp.or_else(|| {
        report.iter().find_map(|entry| match entry {
            RTCStatsReportEntry::IceCandidatePair(p) => positive(p.current_round_trip_time),
            _ => None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: Duration = Duration::from_millis(20);

    #[test]
    fn steady_stream_has_no_loss_and_no_jitter() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new();
        for i in 0..100u32 {
            s.record(65_500u16.wrapping_add(i as u16), i * 960, 60, t0 + STEP * i);
        }
        let q = s.quality();
        assert_eq!((q.packets, q.bytes, q.lost, q.reordered), (100, 6000, 0, 0));
        assert!(q.jitter_ms < 0.01, "{}", q.jitter_ms);
    }

    #[test]
    fn gaps_count_as_loss_and_wobble_as_jitter() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new();
        for i in 0..100u32 {
            if i % 10 == 3 {
                continue; // lost
            }
            let wobble = if i % 2 == 0 {
                Duration::ZERO
            } else {
                Duration::from_millis(8)
            };
            s.record(i as u16, i * 960, 60, t0 + STEP * i + wobble);
        }
        let q = s.quality();
        assert_eq!(q.lost, 10);
        assert!((q.loss_fraction - 0.1).abs() < 1e-9);
        assert!(q.jitter_ms > 2.0, "{}", q.jitter_ms);
    }
}
