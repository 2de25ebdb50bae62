//! A WebRTC peer for a browser: answers one browser's offer (one audio line, the browser's
//! microphone out and a speaker track back), hands out the Opus packets the browser sends, and
//! writes Opus packets toward it.
//!
//! graph-sim's softphone uses this so a person in a web page joins a simulated call. The
//! browser offers, this side answers with every candidate in the answer (no trickle); the
//! browser's own candidates may be mDNS names or none at all, since the answerer learns the
//! browser's address from its connectivity checks (peer-reflexive).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{RTCPeerConnectionState, RTCSessionDescription};

use crate::error::WebRtcError;
use crate::peer::{
    OPUS_PAYLOAD_TYPE, Peer, RtpWriter, WebRtcConfig, as_local, audio_track, build_peer,
    negotiated_payload_types, random_ssrc, set_local_and_gather, voice_codecs,
};
use crate::protocol::MAX_SDP_BYTES;

/// Most lines a browser offer may have (a browser's audio-only offer has about 40).
pub const MAX_OFFER_LINES: usize = 1024;

/// Packets from the browser queued for the reader; more are dropped (and counted).
const QUEUE: usize = 256;

/// Why a browser's offer was not answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BrowserPeerError {
    /// The offer is larger than [`MAX_SDP_BYTES`] or has more than [`MAX_OFFER_LINES`] lines.
    #[error("the offer is too large ({0})")]
    TooLarge(String),
    /// The offer is not an SDP offer with one audio line the stack accepts.
    #[error("the offer is not usable: {0}")]
    BadOffer(String),
    /// The local WebRTC stack failed.
    #[error("WebRTC: {0}")]
    WebRtc(#[from] WebRtcError),
}

/// One RTP packet of the browser's microphone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserPacket {
    /// RTP sequence number.
    pub sequence: u16,
    /// RTP timestamp (48 kHz).
    pub timestamp: u32,
    /// The Opus payload, untouched.
    pub payload: Bytes,
    /// When it was read.
    pub arrival: Instant,
}

/// Connection state of a browser peer as the shells need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrowserLinkState {
    /// ICE and DTLS are still connecting.
    Connecting,
    /// Media can flow.
    Connected,
    /// Disconnected, failed or closed: the session is over.
    Gone,
}

/// A browser's media session; see the module docs. Dropping it closes the peer connection.
pub struct BrowserPeer {
    peer: Peer,
    writer: Arc<RtpWriter>,
    packets: mpsc::Receiver<BrowserPacket>,
    state: watch::Receiver<BrowserLinkState>,
    dropped: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for BrowserPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserPeer")
            .field("state", &*self.state.borrow())
            .finish()
    }
}

impl Drop for BrowserPeer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.peer.close_detached();
    }
}

/// Checks an offer's size before any parser sees it.
pub fn check_offer_size(sdp: &str) -> Result<(), BrowserPeerError> {
    if sdp.len() > MAX_SDP_BYTES {
        return Err(BrowserPeerError::TooLarge(format!(
            "{} bytes; the limit is {MAX_SDP_BYTES}",
            sdp.len()
        )));
    }
    let lines = sdp.lines().count();
    if lines > MAX_OFFER_LINES {
        return Err(BrowserPeerError::TooLarge(format!(
            "{lines} lines; the limit is {MAX_OFFER_LINES}"
        )));
    }
    // The SDP reader skips CRs before each line's type letter, so "\r\rm=audio" is an m-line
    // to it as well (a fuzzer found an offer with a second, hidden m-section that way).
    let keys = || sdp.lines().map(|l| l.trim_start_matches('\r'));
    let audio = keys().filter(|l| l.starts_with("m=audio")).count();
    let other = keys()
        .filter(|l| l.starts_with("m=") && !l.starts_with("m=audio"))
        .count();
    if audio != 1 || other != 0 {
        return Err(BrowserPeerError::BadOffer(format!(
            "expected exactly one audio m-line and no other media, found {audio} audio and {other} other"
        )));
    }
    Ok(())
}

/// The payload type our answer gives Opus (the offer's numbering).
fn answered_opus_pt(answer: &str) -> u8 {
    answer
        .lines()
        .filter_map(|l| l.strip_prefix("a=rtpmap:"))
        .find_map(|rest| {
            let (pt, codec) = rest.split_once(' ')?;
            codec
                .to_ascii_lowercase()
                .starts_with("opus/48000")
                .then(|| pt.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(OPUS_PAYLOAD_TYPE)
}

impl BrowserPeer {
    /// Answers a browser's offer. Returns the peer and the answer SDP to give back to the page.
    pub async fn answer(
        offer_sdp: &str,
        config: &WebRtcConfig,
    ) -> Result<(BrowserPeer, String), BrowserPeerError> {
        check_offer_size(offer_sdp)?;
        let mut peer = build_peer(config).await?;
        let ssrc = random_ssrc();
        let track = audio_track("graph-sim", "call-audio", ssrc);
        // Made before the offer so it is matched to the browser's sendrecv line: the browser's
        // microphone comes in on it and the call's audio goes out on it.
        let transceiver = peer
            .pc
            .add_transceiver_from_track(
                as_local(&track),
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendrecv,
                    streams: vec![],
                    send_encodings: vec![],
                }),
            )
            .await
            .map_err(WebRtcError::stack("cannot add the call's track"))?;
        transceiver
            .set_codec_preferences(voice_codecs())
            .await
            .map_err(WebRtcError::stack("cannot set the codec preferences"))?;
        let offer = RTCSessionDescription::offer(offer_sdp.to_owned())
            .map_err(|e| BrowserPeerError::BadOffer(e.to_string()))?;
        peer.pc
            .set_remote_description(offer)
            .await
            .map_err(|e| BrowserPeerError::BadOffer(e.to_string()))?;
        let answer = peer
            .pc
            .create_answer(None)
            .await
            .map_err(|e| BrowserPeerError::BadOffer(e.to_string()))?;
        let sdp = set_local_and_gather(&mut peer, answer).await?;
        let writer = Arc::new(RtpWriter::new(track, ssrc));
        if let Ok(Some(sender)) = transceiver.sender().await
            && let Some((opus, dtmf)) = negotiated_payload_types(&sender).await
        {
            writer.set_payload_types(opus, dtmf);
        }
        let opus_pt = answered_opus_pt(&sdp);

        let (packets_tx, packets) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let (state_tx, state) = watch::channel(BrowserLinkState::Connecting);
        let mut tasks = Vec::new();
        let mut status = peer.status.clone();
        tasks.push(tokio::spawn(async move {
            while status.changed().await.is_ok() {
                let s = match status.borrow_and_update().connection {
                    RTCPeerConnectionState::Connected => BrowserLinkState::Connected,
                    RTCPeerConnectionState::Disconnected
                    | RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed => BrowserLinkState::Gone,
                    _ => continue,
                };
                let _ = state_tx.send(s);
                if s == BrowserLinkState::Gone {
                    break;
                }
            }
            let _ = state_tx.send(BrowserLinkState::Gone);
        }));
        let mut tracks = std::mem::replace(&mut peer.tracks, mpsc::unbounded_channel().1);
        let lost = dropped.clone();
        tasks.push(tokio::spawn(async move {
            // One audio line, so one track; later ones (a renegotiating page) are read the same.
            while let Some(track) = tracks.recv().await {
                tokio::spawn(read_track(track, opus_pt, packets_tx.clone(), lost.clone()));
            }
        }));
        Ok((
            BrowserPeer {
                peer,
                writer,
                packets,
                state,
                dropped,
                tasks,
            },
            sdp,
        ))
    }

    /// The next packet from the browser's microphone; `None` once the peer is closed.
    pub async fn next_packet(&mut self) -> Option<BrowserPacket> {
        self.packets.recv().await
    }

    /// A receiver of the connection state.
    pub fn state(&self) -> watch::Receiver<BrowserLinkState> {
        self.state.clone()
    }

    /// Packets from the browser dropped because the reader was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// A handle that writes 20 ms Opus packets toward the browser.
    pub fn sender(&self) -> BrowserSender {
        BrowserSender {
            writer: self.writer.clone(),
        }
    }

    /// Closes the peer connection.
    pub async fn close(&self) {
        let _ = self.peer.pc.close().await;
    }
}

/// Writes Opus packets toward a browser (cheap to clone).
#[derive(Clone)]
pub struct BrowserSender {
    writer: Arc<RtpWriter>,
}

impl std::fmt::Debug for BrowserSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (packets, bytes) = self.writer.counters();
        write!(f, "BrowserSender({packets} packets, {bytes} bytes)")
    }
}

impl BrowserSender {
    /// Sends one 20 ms Opus packet (dropped by the stack before media connects).
    pub async fn send_opus(&self, packet: Bytes) -> Result<(), WebRtcError> {
        self.writer.write_opus(packet).await
    }
}

async fn read_track(
    track: Arc<dyn TrackRemote>,
    opus_pt: u8,
    out: mpsc::Sender<BrowserPacket>,
    dropped: Arc<AtomicU64>,
) {
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(pkt) => {
                if pkt.header.payload_type != opus_pt || pkt.payload.is_empty() {
                    continue;
                }
                let p = BrowserPacket {
                    sequence: pkt.header.sequence_number,
                    timestamp: pkt.header.timestamp,
                    payload: pkt.payload,
                    arrival: Instant::now(),
                };
                match out.try_send(p) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_are_size_checked_before_parsing() {
        let big = "a=x\r\n".repeat(MAX_OFFER_LINES + 1);
        assert!(matches!(
            check_offer_size(&big),
            Err(BrowserPeerError::TooLarge(_))
        ));
        let huge = "v".repeat(MAX_SDP_BYTES + 1);
        assert!(matches!(
            check_offer_size(&huge),
            Err(BrowserPeerError::TooLarge(_))
        ));
        assert!(matches!(
            check_offer_size("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=video 9 x 96\r\n"),
            Err(BrowserPeerError::BadOffer(_))
        ));
        assert!(check_offer_size("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n").is_ok());
        // CRs before a line's type letter do not hide a second m-section.
        assert!(matches!(
            check_offer_size("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\n\r\r\rm=audio 9 x 111\r\n"),
            Err(BrowserPeerError::BadOffer(_))
        ));
    }

    #[test]
    fn opus_payload_type_is_read_from_the_answer() {
        let answer = "m=audio 9 x 109 0\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:109 opus/48000/2\r\n";
        assert_eq!(answered_opus_pt(answer), 109);
        assert_eq!(answered_opus_pt("nothing"), OPUS_PAYLOAD_TYPE);
    }

    #[tokio::test]
    async fn garbage_offers_are_refused_not_panicked_on() {
        for offer in [
            "",
            "m=audio",
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
            "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio x y z\r\n",
        ] {
            let r = BrowserPeer::answer(offer, &WebRtcConfig::default()).await;
            assert!(r.is_err(), "{offer:?}");
        }
    }
}
