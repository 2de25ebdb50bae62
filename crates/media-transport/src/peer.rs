//! WebRTC plumbing both sides share: the codec set, loopback-friendly settings, the event
//! handler that turns callbacks into channel messages, and the RTP writer of a send track.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_TELEPHONE_EVENT,
};
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateType, RTCIceGatheringState, RTCPeerConnectionState,
    SettingEngineBuilder, configure_rtcp_reports,
};

use crate::dtmf::{DtmfDigit, event_train};
use crate::error::{GATHER_TIMEOUT, WebRtcError};

/// Opus payload type both sides register (the browsers' number).
pub const OPUS_PAYLOAD_TYPE: u8 = 111;
/// `telephone-event/48000` payload type both sides register.
pub const DTMF_PAYLOAD_TYPE: u8 = 126;
/// RTP timestamp units in one 20 ms Opus frame.
pub const SAMPLES_PER_FRAME: u32 = 960;

/// WebRTC settings of one side. Defaults suit loopback and one host: UDP on 127.0.0.1, no mDNS,
/// no ICE servers, ICE checks every 20 ms; after 3 s without traffic ICE reports the media
/// interrupted (the session waits for it to resume), after 5 s more failed (the session ends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRtcConfig {
    /// Address the media UDP socket binds (the internal address).
    pub udp_bind_ip: IpAddr,
    /// Ports the media socket may use; `None` lets the OS choose.
    pub udp_port_range: Option<RangeInclusive<u16>>,
    /// Public addresses advertised in ICE candidates instead of the bind address (1:1 NAT).
    pub public_ips: Vec<IpAddr>,
    /// Delay between ICE connectivity checks. The default 200 ms of the stack delays DTLS (and
    /// so the first audio) by that much on loopback.
    pub ice_check_interval: Duration,
    /// Silence after which ICE reports disconnected: the media session counts as interrupted
    /// and waits for traffic to resume.
    pub ice_disconnected_timeout: Duration,
    /// Further silence after which ICE reports failed, which ends the media session. A host
    /// that stalls for a few seconds, or a network that drops everything for as long, should
    /// not end every call it carries.
    pub ice_failed_timeout: Duration,
    /// Keepalive interval while no media flows; must be well under the disconnected timeout.
    pub ice_keepalive_interval: Duration,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        WebRtcConfig {
            udp_bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            udp_port_range: None,
            public_ips: Vec::new(),
            ice_check_interval: Duration::from_millis(20),
            ice_disconnected_timeout: Duration::from_secs(3),
            ice_failed_timeout: Duration::from_secs(5),
            ice_keepalive_interval: Duration::from_secs(1),
        }
    }
}

impl WebRtcConfig {
    /// The UDP address to bind: the first free port of the range, or port 0.
    ///
    /// The port is probed by binding and releasing it, so another process could take it in
    /// between; the stack then fails to bind and the offer is refused, which is visible.
    fn udp_addr(&self) -> std::io::Result<SocketAddr> {
        let Some(range) = &self.udp_port_range else {
            return Ok(SocketAddr::new(self.udp_bind_ip, 0));
        };
        for port in range.clone() {
            let addr = SocketAddr::new(self.udp_bind_ip, port);
            if UdpSocket::bind(addr).is_ok() {
                return Ok(addr);
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("no free UDP port in {range:?}"),
        ))
    }
}

/// The Opus codec as both sides register it.
pub(crate) fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// Opus and telephone-event with their payload types. Set as a transceiver's codec
/// preferences so its sender may write both (a sender otherwise only knows its track's codec).
pub(crate) fn voice_codecs() -> Vec<RTCRtpCodecParameters> {
    vec![
        RTCRtpCodecParameters {
            rtp_codec: opus_codec(),
            payload_type: OPUS_PAYLOAD_TYPE,
        },
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_TELEPHONE_EVENT.to_owned(),
                clock_rate: 48_000,
                channels: 0,
                sdp_fmtp_line: "0-16".to_owned(),
                rtcp_feedback: vec![],
            },
            payload_type: DTMF_PAYLOAD_TYPE,
        },
    ]
}

fn media_engine() -> webrtc::error::Result<MediaEngine> {
    let mut me = MediaEngine::default();
    for codec in voice_codecs() {
        me.register_codec(codec, RtpCodecKind::Audio)?;
    }
    Ok(me)
}

/// What the peer's callbacks report that the shells wait on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerStatus {
    pub(crate) gathering_complete: bool,
    pub(crate) connection: RTCPeerConnectionState,
}

struct Handler {
    status: watch::Sender<PeerStatus>,
    tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.status.send_modify(|s| s.gathering_complete = true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.status.send_modify(|s| s.connection = state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        // The receiver may be gone when the session ended; nothing to do then.
        let _ = self.tracks.send(track);
    }
}

/// A peer connection with its status and incoming tracks.
pub(crate) struct Peer {
    pub(crate) pc: Arc<dyn PeerConnection>,
    pub(crate) status: watch::Receiver<PeerStatus>,
    pub(crate) tracks: mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
}

impl Peer {
    /// Closes the connection without waiting, for a `Drop` (which cannot await): the close runs
    /// on the current runtime; outside one there is nothing left to close it on.
    pub(crate) fn close_detached(&self) {
        let pc = self.pc.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

/// Builds a peer connection with Opus and telephone-event, RTCP reports, and `config`.
pub(crate) async fn build_peer(config: &WebRtcConfig) -> Result<Peer, WebRtcError> {
    let mut setting = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_ice_connection_attempts(Some(config.ice_check_interval), None)
        .with_ice_timeouts(
            Some(config.ice_disconnected_timeout),
            Some(config.ice_failed_timeout),
            Some(config.ice_keepalive_interval),
        );
    if !config.public_ips.is_empty() {
        setting = setting.with_nat_1to1_ips(
            config.public_ips.iter().map(IpAddr::to_string).collect(),
            RTCIceCandidateType::Host,
        );
    }
    let (status_tx, status) = watch::channel(PeerStatus {
        gathering_complete: false,
        connection: RTCPeerConnectionState::New,
    });
    let (tracks_tx, tracks) = mpsc::unbounded_channel();
    let addr = config
        .udp_addr()
        .map_err(|e| WebRtcError::Socket(Arc::new(e)))?;
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(
            media_engine().map_err(WebRtcError::stack("cannot register the voice codecs"))?,
        )
        .with_interceptor_registry(configure_rtcp_reports(Registry::new()))
        .with_setting_engine(setting.build())
        .with_handler(Arc::new(Handler {
            status: status_tx,
            tracks: tracks_tx,
        }))
        .with_udp_addrs(vec![addr])
        .build()
        .await
        .map_err(WebRtcError::stack("cannot create the WebRTC peer"))?;
    Ok(Peer {
        pc: Arc::new(pc),
        status,
        tracks,
    })
}

/// Sets `desc` as the local description and returns it with the gathered candidates.
///
/// Candidates are not trickled: the exchange carries complete descriptions, so the first one
/// waits for gathering (host candidates only, a few milliseconds).
pub(crate) async fn set_local_and_gather(
    peer: &mut Peer,
    desc: webrtc::peer_connection::RTCSessionDescription,
) -> Result<String, WebRtcError> {
    peer.pc
        .set_local_description(desc)
        .await
        .map_err(WebRtcError::stack("cannot set the local description"))?;
    let wait = peer.status.wait_for(|s| s.gathering_complete);
    match tokio::time::timeout(GATHER_TIMEOUT, wait).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => return Err(WebRtcError::ClosedWhileGathering),
        Err(_) => return Err(WebRtcError::GatheringTimedOut),
    }
    peer.pc
        .local_description()
        .await
        .map(|d| d.sdp)
        .ok_or(WebRtcError::NoLocalDescription)
}

/// A local audio track sending Opus (and telephone events) on one SSRC, labelled
/// `a=msid:<stream_id> <track_id>`.
pub(crate) fn audio_track(stream_id: &str, track_id: &str, ssrc: u32) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        stream_id.to_owned(),
        track_id.to_owned(),
        track_id.to_owned(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: opus_codec(),
            ..Default::default()
        }],
    )))
}

/// A fresh random SSRC.
pub(crate) fn random_ssrc() -> u32 {
    let b = uuid::Uuid::new_v4().into_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]).max(1)
}

/// Longest stretch of the sender's media time without packets carried into RTP time (one
/// minute at 48 kHz).
const MAX_SKIPPED_MEDIA_TIME: u32 = 60 * 48_000;

#[derive(Debug)]
struct Sequencing {
    seq: u16,
    timestamp: u32,
    started: bool,
    /// The sender's own media time of the last frame written with one ([`RtpWriter::write_opus_at`]).
    last_media_time: Option<u32>,
    packets: u64,
    bytes: u64,
    opus_pt: u8,
    dtmf_pt: Option<u8>,
}

impl Sequencing {
    /// Moves the next timestamp past the frames the sender's clock passed without a packet
    /// since its last frame.
    fn carry_skipped_media_time(&mut self, media_time: u32) {
        if let Some(last) = self.last_media_time {
            let skipped = media_time
                .wrapping_sub(last)
                .wrapping_sub(SAMPLES_PER_FRAME);
            // A clock that went back, or leapt further than any pause of a live sender, is
            // not a gap to reproduce.
            if skipped <= MAX_SKIPPED_MEDIA_TIME {
                self.timestamp = self.timestamp.wrapping_add(skipped);
            }
        }
        self.last_media_time = Some(media_time);
    }
}

/// What an RTP packet of a send track carries, with what only that kind needs to be numbered.
#[derive(Debug, Clone, Copy)]
enum PacketKind {
    /// A 20 ms Opus frame; it advances the timestamp by one frame. `media_time` is the sender's
    /// own 48 kHz clock at the frame's start, when it has one.
    Opus { media_time: Option<u32> },
    /// One packet of an RFC 4733 event: every packet of an event carries the timestamp the
    /// event `start`s at and does not advance it; `marker` starts the event.
    TelephoneEvent { start: u32, marker: bool },
}

/// Numbers and writes the RTP packets of one send track: Opus frames advance the timestamp by
/// one frame each, and by the frames the sender skipped when it says when each frame is;
/// telephone events share the timestamp of the frame they start at.
pub(crate) struct RtpWriter {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    seq: Mutex<Sequencing>,
}

impl RtpWriter {
    pub(crate) fn new(track: Arc<TrackLocalStaticRTP>, ssrc: u32) -> Self {
        let r = uuid::Uuid::new_v4().into_bytes();
        RtpWriter {
            track,
            ssrc,
            // Random starting points, as RFC 3550 asks.
            seq: Mutex::new(Sequencing {
                seq: u16::from_be_bytes([r[0], r[1]]),
                timestamp: u32::from_be_bytes([r[2], r[3], r[4], r[5]]),
                started: false,
                last_media_time: None,
                packets: 0,
                bytes: 0,
                opus_pt: OPUS_PAYLOAD_TYPE,
                dtmf_pt: Some(DTMF_PAYLOAD_TYPE),
            }),
        }
    }

    /// Uses the payload types the answer negotiated.
    pub(crate) fn set_payload_types(&self, opus_pt: u8, dtmf_pt: Option<u8>) {
        let mut s = self.seq.lock().unwrap_or_else(PoisonError::into_inner);
        s.opus_pt = opus_pt;
        s.dtmf_pt = dtmf_pt;
    }

    pub(crate) fn counters(&self) -> (u64, u64) {
        let s = self.seq.lock().unwrap_or_else(PoisonError::into_inner);
        (s.packets, s.bytes)
    }

    /// The next header for a packet of `kind` with a payload of `len` bytes; None when it is a
    /// telephone event and those were not negotiated (the packet must not be sent).
    fn next_header(&self, kind: PacketKind, len: usize) -> Option<rtp::header::Header> {
        let mut s = self.seq.lock().unwrap_or_else(PoisonError::into_inner);
        let (payload_type, marker, timestamp) = match kind {
            PacketKind::Opus { media_time } => {
                // Read under the same lock that numbers the packet, so two writers cannot
                // interleave between the carry and the numbering.
                if let Some(t) = media_time {
                    s.carry_skipped_media_time(t);
                }
                let timestamp = s.timestamp;
                s.timestamp = s.timestamp.wrapping_add(SAMPLES_PER_FRAME);
                (s.opus_pt, false, timestamp)
            }
            PacketKind::TelephoneEvent { start, marker } => (s.dtmf_pt?, marker, start),
        };
        let seq = s.seq;
        s.seq = s.seq.wrapping_add(1);
        // The first audio packet of the stream starts a talk spurt.
        let marker = marker || !s.started;
        s.started = true;
        s.packets += 1;
        s.bytes += len as u64;
        Some(rtp::header::Header {
            version: 2,
            marker,
            payload_type,
            sequence_number: seq,
            timestamp,
            ssrc: self.ssrc,
            ..Default::default()
        })
    }

    /// Writes one 20 ms Opus frame.
    pub(crate) async fn write_opus(&self, payload: Bytes) -> Result<(), WebRtcError> {
        self.write_opus_at(payload, None).await
    }

    /// Writes one 20 ms Opus frame that starts at `media_time` on the sender's own 48 kHz
    /// clock, when it has one: frames that clock passed without a packet (periods the sender
    /// skipped) advance the RTP timestamp too, so a receiver conceals them as lost instead of
    /// hearing everything after them a frame late.
    pub(crate) async fn write_opus_at(
        &self,
        payload: Bytes,
        media_time: Option<u32>,
    ) -> Result<(), WebRtcError> {
        let Some(header) = self.next_header(PacketKind::Opus { media_time }, payload.len()) else {
            return Ok(());
        };
        self.track
            .write_rtp(rtp::Packet { header, payload })
            .await
            .map_err(WebRtcError::stack("cannot send an Opus packet"))
    }

    /// Sends `digit` for `duration` as RFC 4733 events, one packet per 20 ms.
    pub(crate) async fn write_dtmf(
        &self,
        digit: DtmfDigit,
        duration: Duration,
    ) -> Result<(), WebRtcError> {
        let units = u16::try_from(duration.as_millis() * 48).unwrap_or(u16::MAX);
        let start = {
            let s = self.seq.lock().unwrap_or_else(PoisonError::into_inner);
            s.timestamp
        };
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for p in event_train(digit, units, SAMPLES_PER_FRAME as u16) {
            tick.tick().await;
            let payload = Bytes::copy_from_slice(&p.event.to_bytes());
            let kind = PacketKind::TelephoneEvent {
                start,
                marker: p.marker,
            };
            let header = self
                .next_header(kind, payload.len())
                .ok_or(WebRtcError::DtmfNotNegotiated)?;
            self.track
                .write_rtp(rtp::Packet { header, payload })
                .await
                .map_err(WebRtcError::stack("cannot send a telephone event"))?;
        }
        Ok(())
    }
}

/// The payload types of Opus and telephone-event negotiated for a sender.
pub(crate) async fn negotiated_payload_types(
    sender: &Arc<dyn webrtc::rtp_transceiver::RtpSender>,
) -> Option<(u8, Option<u8>)> {
    let params = sender.get_parameters().await.ok()?;
    let find = |mime: &str| {
        params
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
            .map(|c| c.payload_type)
    };
    Some((find(MIME_TYPE_OPUS)?, find(MIME_TYPE_TELEPHONE_EVENT)))
}

/// The track as the trait object the peer connection takes.
pub(crate) fn as_local(track: &Arc<TrackLocalStaticRTP>) -> Arc<dyn TrackLocal> {
    track.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_port_comes_from_the_configured_range() {
        // Hold the first port of a range so the probe must move on.
        let held = UdpSocket::bind("127.0.0.1:0").unwrap();
        let first = held.local_addr().unwrap().port();
        let Some(last) = first.checked_add(20) else {
            return; // no room above an ephemeral port this high; nothing to check
        };
        let config = WebRtcConfig {
            udp_port_range: Some(first..=last),
            ..WebRtcConfig::default()
        };
        let addr = config.udp_addr().unwrap();
        assert!(addr.port() > first && addr.port() <= last, "{addr}");
        assert_eq!(addr.ip(), config.udp_bind_ip);
        let full = WebRtcConfig {
            udp_port_range: Some(first..=first),
            ..WebRtcConfig::default()
        };
        assert!(full.udp_addr().is_err());
        assert_eq!(WebRtcConfig::default().udp_addr().unwrap().port(), 0);
    }
}
