//! Per-stream media quality (QoE) figures: what the official library reports per stream
//! (packets, loss, jitter, round-trip time), computed from the RTP headers as they arrive.
//! Plain data: the receive path feeds it one header at a time with the arrival `Instant`.

use std::time::{Duration, Instant};

/// RTP clock of Opus and telephone-event on these streams.
pub const RTP_CLOCK_HZ: u32 = 48_000;

/// Quality figures of one stream at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StreamQuality {
    /// RTP packets received (or sent, for the bot's own stream).
    pub packets: u64,
    /// Payload bytes received (or sent).
    pub bytes: u64,
    /// Packets expected from the sequence numbers and never received (RFC 3550 §6.4.1).
    pub lost: u64,
    /// `lost` over expected, 0.0–1.0.
    pub loss_fraction: f64,
    /// Interarrival jitter (RFC 3550 §6.4.1), in milliseconds.
    pub jitter_ms: f64,
    /// Packets that arrived out of order or twice.
    pub reordered: u64,
    /// Round-trip time from RTCP, when the stack has measured one.
    pub rtt: Option<Duration>,
}

/// Running receive statistics of one RTP stream.
#[derive(Debug, Clone, Default)]
pub struct ReceiveStats {
    packets: u64,
    bytes: u64,
    base_seq: Option<u32>,
    // Highest extended sequence number seen (cycles << 16 | seq).
    max_ext_seq: u32,
    reordered: u64,
    // RFC 3550 jitter estimate in RTP units, scaled by 16 as the RFC's integer form does.
    jitter_x16: u64,
    last_transit: Option<i64>,
    origin: Option<Instant>,
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
        match self.base_seq {
            None => {
                self.base_seq = Some(u32::from(seq));
                self.max_ext_seq = u32::from(seq);
            }
            Some(_) => {
                let max_seq = self.max_ext_seq as u16;
                let delta = seq.wrapping_sub(max_seq);
                if delta != 0 && delta < 0x8000 {
                    let mut cycles = self.max_ext_seq & !0xffff;
                    if seq < max_seq {
                        cycles = cycles.wrapping_add(1 << 16);
                    }
                    self.max_ext_seq = cycles | u32::from(seq);
                } else {
                    self.reordered += 1;
                }
            }
        }
        // Transit time in RTP units against an arbitrary origin; only its changes matter.
        let origin = *self.origin.get_or_insert(arrival);
        let arrival_units = (arrival.duration_since(origin).as_micros() as i64)
            * i64::from(RTP_CLOCK_HZ)
            / 1_000_000;
        let transit = arrival_units - i64::from(timestamp);
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs();
            // J += (|D| - J) / 16, kept ×16 to stay in integers.
            // Bogus timestamps from the network must not overflow the estimate.
            let d = d.min(u64::from(u32::MAX));
            let j = self.jitter_x16;
            self.jitter_x16 = j.saturating_add(d).saturating_sub((j + 8) >> 4);
        }
        self.last_transit = Some(transit);
    }

    /// The figures now.
    pub fn quality(&self) -> StreamQuality {
        let expected = match self.base_seq {
            Some(base) => u64::from(self.max_ext_seq.wrapping_sub(base)) + 1,
            None => 0,
        };
        let in_order = self.packets.saturating_sub(self.reordered);
        let lost = expected.saturating_sub(in_order);
        StreamQuality {
            packets: self.packets,
            bytes: self.bytes,
            lost,
            loss_fraction: if expected == 0 {
                0.0
            } else {
                lost as f64 / expected as f64
            },
            jitter_ms: (self.jitter_x16 as f64 / 16.0) * 1000.0 / f64::from(RTP_CLOCK_HZ),
            reordered: self.reordered,
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
