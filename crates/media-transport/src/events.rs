//! What the bot-side endpoint hands the application: per-packet audio through an [`AudioSink`]
//! (the narrow interface the audio pipeline binds to), and everything else as [`MediaEvent`]s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use media_session::SourceId;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::dtmf::DtmfDigit;
use crate::protocol::EndReason;

/// One received Opus packet of a participant's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingAudio {
    /// The participant's source id (the m-line's `a=msid` label).
    pub source: SourceId,
    /// RTP sequence number.
    pub sequence: u16,
    /// RTP timestamp (48 kHz).
    pub timestamp: u32,
    /// RTP SSRC; a change means the sender restarted.
    pub ssrc: u32,
    /// RTP marker bit (start of a talk spurt).
    pub marker: bool,
    /// The Opus payload, shared with the WebRTC stack's buffer (not copied).
    pub payload: Bytes,
    /// When the packet was read from the stack.
    pub arrival: Instant,
}

/// Receives participants' audio as it arrives.
///
/// Called on the task that drains the WebRTC stack's track, for every packet: implementations
/// must not block (push into a jitter buffer or a bounded queue and return). The stack's own
/// queue in front of this holds 256 packets and drops on overflow.
pub trait AudioSink: Send + Sync + 'static {
    /// One Opus packet from `packet.source`.
    fn on_audio(&self, packet: IncomingAudio);
    /// A participant stream was negotiated; packets for `source` may follow.
    fn on_stream_bound(&self, _source: SourceId) {}
    /// A participant stream was removed by renegotiation; no more packets for `source`.
    fn on_stream_unbound(&self, _source: SourceId) {}
    /// The media session ended.
    fn on_session_ended(&self, _reason: &EndReason) {}
}

/// An [`AudioSink`] that forwards packets into a bounded channel, dropping (and counting) when
/// it is full. Useful for tests and for applications that read audio on their own task.
#[derive(Debug)]
pub struct ChannelSink {
    tx: mpsc::Sender<IncomingAudio>,
    dropped: AtomicU64,
}

impl ChannelSink {
    /// A sink holding at most `capacity` packets, and the receiving end.
    pub fn new(capacity: usize) -> (ChannelSink, mpsc::Receiver<IncomingAudio>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            ChannelSink {
                tx,
                dropped: AtomicU64::new(0),
            },
            rx,
        )
    }

    /// Packets dropped because the channel was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl AudioSink for ChannelSink {
    fn on_audio(&self, packet: IncomingAudio) {
        if self.tx.try_send(packet).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Something that happened to a registered media session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaEvent {
    /// The service connected and presented this session.
    Accepted {
        /// The session.
        media_session_id: Uuid,
        /// The call id it presented.
        call_id: Option<Uuid>,
    },
    /// ICE and DTLS connected; media flows.
    MediaConnected,
    /// No traffic came from the service for a few seconds (ICE disconnected). The session
    /// goes on and waits for traffic to resume: a stalled host or a lossy stretch of network
    /// recovers by itself; if it does not, [`MediaEvent::Ended`] follows.
    MediaInterrupted,
    /// Traffic came back after [`MediaEvent::MediaInterrupted`].
    MediaResumed,
    /// A participant's stream was negotiated (first offer or a renegotiation).
    StreamAdded {
        /// Its source id.
        source: SourceId,
    },
    /// A participant's stream was removed by renegotiation.
    StreamRemoved {
        /// Its source id.
        source: SourceId,
    },
    /// A DTMF digit arrived on a participant's stream.
    Dtmf {
        /// Whose stream carried it.
        source: SourceId,
        /// The key.
        digit: DtmfDigit,
    },
    /// The stack reported an error on one participant's stream.
    StreamFailed {
        /// Its source id.
        source: SourceId,
        /// What was reported.
        detail: String,
    },
    /// The media session is over. Always the last event.
    Ended(EndReason),
}
