//! One participant's paced sender: every 20 ms (by absolute deadline) the next frame of its
//! voice is encoded and sent toward the bot, through the `to_bot` impairment when there is one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audio_pipeline::codec::{MAX_ENCODED_BYTES, OpusConfig, OpusEncoder};
use bytes::Bytes;
use media_transport::ParticipantAudio;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::lock;
use super::measure::FRAME;
use super::report::CallMeasure;
use super::voice::VoiceSource;
use crate::netem::{Link, LinkStats};

/// A frame due longer ago than this is not sent (a participant's device drops audio it could
/// not send in time); shorter stalls are caught up at once, as a device's buffer would.
pub(crate) const MAX_LATE: Duration = Duration::from_millis(200);

const TICK: Duration = Duration::from_millis(20);

/// A running sender; stopping it returns its `to_bot` link's figures.
#[derive(Debug)]
pub(crate) struct Sender {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<LinkStats>,
}

impl Sender {
    /// Starts sending `voice` as `source` from now on.
    pub(crate) fn spawn(
        source: u32,
        audio: ParticipantAudio,
        voice: VoiceSource,
        link: Option<Link<Bytes>>,
        measure: Arc<Mutex<CallMeasure>>,
        start: Instant,
    ) -> Sender {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(source, audio, voice, link, measure, start, stopped));
        Sender {
            stop: Some(stop),
            task,
        }
    }

    /// Stops the sender and waits for it (briefly).
    pub(crate) async fn stop(mut self) -> Option<LinkStats> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(2), &mut self.task)
            .await
            .ok()?
            .ok()
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    source: u32,
    audio: ParticipantAudio,
    mut voice: VoiceSource,
    mut link: Option<Link<Bytes>>,
    measure: Arc<Mutex<CallMeasure>>,
    start: Instant,
    mut stopped: oneshot::Receiver<()>,
) -> LinkStats {
    let Ok(mut encoder) = OpusEncoder::new(1, &OpusConfig::default()) else {
        return LinkStats::default();
    };
    let mut frame = [0i16; FRAME];
    let mut packet = [0u8; MAX_ENCODED_BYTES];
    let mut k: u32 = 0;
    // Without an impairment every packet goes straight out; count it the same way.
    let mut clean = LinkStats::default();
    let epoch = lock(&measure).epoch();
    loop {
        let deadline = start + TICK * k;
        // Wake for the next frame, or earlier when the impaired link has a packet due.
        let wake = link
            .as_ref()
            .and_then(Link::poll_timeout)
            .map_or(deadline, |due| due.min(deadline));
        tokio::select! {
            _ = &mut stopped => break,
            () = tokio::time::sleep_until(wake.into()) => {}
        }
        let now = Instant::now();
        if let Some(l) = link.as_mut() {
            deliver(l, now, &audio).await;
        }
        if now < deadline {
            continue;
        }
        // The frame holds the 20 ms a microphone captured before its deadline.
        let said_at = (deadline - TICK).saturating_duration_since(epoch);
        voice.frame_at(
            u64::try_from(said_at.as_millis()).unwrap_or(u64::MAX),
            &mut frame,
        );
        let send = now.saturating_duration_since(deadline) <= MAX_LATE;
        lock(&measure).said(source, &frame, send);
        k = k.wrapping_add(1);
        if !send {
            continue;
        }
        let Ok(n) = encoder.encode(&frame, &mut packet) else {
            continue;
        };
        let bytes = Bytes::copy_from_slice(&packet[..n]);
        match link.as_mut() {
            Some(l) => {
                // The frame's own deadline, not the wake-up time: the impairment then depends
                // on the schedule only, not on how promptly this task ran.
                l.send(deadline, bytes);
                deliver(l, now, &audio).await;
                lock(&measure).set_link_stats(source, l.stats());
            }
            // Stopped streams and streams not yet connected refuse or drop writes; keep pacing.
            None => {
                let _ = audio.send_opus(bytes).await;
                clean.sent += 1;
                clean.delivered += 1;
                lock(&measure).set_link_stats(source, clean);
            }
        }
    }
    link.as_ref().map_or(clean, Link::stats)
}

async fn deliver(link: &mut Link<Bytes>, now: Instant, audio: &ParticipantAudio) {
    while let Some(p) = link.poll_output(now) {
        let _ = audio.send_opus(p).await;
    }
}
