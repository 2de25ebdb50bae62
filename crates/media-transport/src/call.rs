//! A registered media session as the bot holds it: events, the bot's audio sender, DTMF,
//! hang-up and quality figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use media_session::SourceId;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::dtmf::DtmfDigit;
use crate::events::MediaEvent;
use crate::stats::StreamQuality;

/// Why a [`MediaCall`] could not take a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The send queue is full (the send task is behind); the packet was dropped.
    #[error("send queue full; packet dropped")]
    QueueFull,
    /// The media session has ended.
    #[error("the media session has ended")]
    Ended,
}

pub(crate) enum Command {
    HangUp(String),
    Dtmf(DtmfDigit, Duration),
    Stats(oneshot::Sender<CallStats>),
}

/// Quality figures of a media session (the QoE data the official library reports).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallStats {
    /// Per participant stream, by source id.
    pub received: Vec<(SourceId, StreamQuality)>,
    /// The bot's own stream (packets and bytes sent; loss/jitter as the service reports them).
    pub sent: StreamQuality,
    /// Round-trip time of the media path, when RTCP has measured one.
    pub rtt: Option<Duration>,
}

/// A registered media session: its events, and the bot's controls over it.
#[derive(Debug)]
pub struct MediaCall {
    pub(crate) media_session_id: Uuid,
    pub(crate) events: mpsc::UnboundedReceiver<MediaEvent>,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) audio_out: AudioSender,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::HangUp(r) => write!(f, "HangUp({r})"),
            Command::Dtmf(d, t) => write!(f, "Dtmf({d}, {t:?})"),
            Command::Stats(_) => f.write_str("Stats"),
        }
    }
}

/// One packet on its way from an [`AudioSender`] to the send track.
#[derive(Debug)]
pub(crate) struct OutgoingOpus {
    pub(crate) payload: Bytes,
    pub(crate) media_time: Option<u32>,
}

/// Sends the bot's encoded audio (one 20 ms Opus packet at a time) toward the service. Cheap to
/// clone; never blocks, so a real-time pacer thread may hold one.
#[derive(Debug, Clone)]
pub struct AudioSender {
    pub(crate) tx: mpsc::Sender<OutgoingOpus>,
    pub(crate) dropped: Arc<AtomicU64>,
}

impl AudioSender {
    /// Queues one Opus packet. Packets written before media connects are dropped by the stack.
    pub fn send_opus(&self, packet: Bytes) -> Result<(), CallError> {
        self.queue(OutgoingOpus {
            payload: packet,
            media_time: None,
        })
    }

    /// Queues one Opus packet of the frame that starts at `media_time` on the sender's own
    /// 48 kHz clock (as the audio pipeline's `EncodedPacket::rtp_timestamp` counts it). A
    /// sender that skips a period (no audio ready in time) then leaves a gap in RTP time too,
    /// which a receiver conceals as one lost frame; with [`AudioSender::send_opus`] it would
    /// place every later frame one frame late.
    pub fn send_opus_at(&self, packet: Bytes, media_time: u32) -> Result<(), CallError> {
        self.queue(OutgoingOpus {
            payload: packet,
            media_time: Some(media_time),
        })
    }

    fn queue(&self, packet: OutgoingOpus) -> Result<(), CallError> {
        self.tx.try_send(packet).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                CallError::QueueFull
            }
            mpsc::error::TrySendError::Closed(_) => CallError::Ended,
        })
    }

    /// Packets dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl MediaCall {
    /// The session's `mpMediaSessionId`.
    pub fn media_session_id(&self) -> Uuid {
        self.media_session_id
    }

    /// The next event; `None` after [`MediaEvent::Ended`] once the endpoint dropped the session.
    pub async fn next_event(&mut self) -> Option<MediaEvent> {
        self.events.recv().await
    }

    /// An event if one is queued.
    pub fn try_next_event(&mut self) -> Option<MediaEvent> {
        self.events.try_recv().ok()
    }

    /// The handle the audio pipeline's paced encoder writes to.
    pub fn audio_sender(&self) -> AudioSender {
        self.audio_out.clone()
    }

    /// Queues one Opus packet of the bot's audio.
    pub fn send_opus(&self, packet: Bytes) -> Result<(), CallError> {
        self.audio_out.send_opus(packet)
    }

    /// Sends a DTMF digit (RFC 4733) held for `duration`.
    pub fn send_dtmf(&self, digit: DtmfDigit, duration: Duration) -> Result<(), CallError> {
        self.commands
            .send(Command::Dtmf(digit, duration))
            .map_err(|_| CallError::Ended)
    }

    /// Hangs up: the service is told, the session ends within the protocol's close linger.
    pub fn hang_up(&self, reason: &str) -> Result<(), CallError> {
        self.commands
            .send(Command::HangUp(reason.to_owned()))
            .map_err(|_| CallError::Ended)
    }

    /// Asks for the quality figures without waiting: the receiver gets them once the session's
    /// task answers (never, before the service connected). `None` after the end.
    pub fn request_stats(&self) -> Option<oneshot::Receiver<CallStats>> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Stats(tx)).ok()?;
        Some(rx)
    }

    /// Quality figures now; `None` before the service connected or after the end.
    pub async fn stats(&self) -> Option<CallStats> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Stats(tx)).ok()?;
        // Before the service connects nobody reads commands; do not wait for that.
        tokio::time::timeout(Duration::from_secs(1), rx)
            .await
            .ok()?
            .ok()
    }
}
