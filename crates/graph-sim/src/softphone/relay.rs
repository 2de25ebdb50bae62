//! One person's relay between their browser and the call's service session toward the bot.
//!
//! Toward the bot, a browser packet holding exactly 20 ms of Opus (what browsers send by
//! default, `ptime` 20) is forwarded as it came: the payload is not decoded and re-encoded, only
//! its RTP header is rewritten by the session's writer (its own SSRC, sequence and timestamp).
//! Packets of another duration (10, 40, 60 ms…) cannot go out as they are, since the protocol
//! carries 20 ms frames, so they are decoded and re-encoded as 20 ms frames; the relay counts
//! both kinds. Every packet is also decoded once so the sim can meter and measure what the
//! person said, as it does for simulated users. Toward the browser the bot's 20 ms packets go
//! out unchanged too.

use std::sync::{Arc, Mutex};

use audio_pipeline::codec::{MAX_ENCODED_BYTES, OpusConfig, OpusEncoder};
use audio_pipeline::opus_packet;
use bytes::Bytes;
use media_transport::ParticipantAudio;
use media_transport::browser::{BrowserLinkState, BrowserPeer};
use tokio::sync::{mpsc, oneshot};

use super::Softphone;
use crate::media::measure::FRAME;
use crate::media::report::CallMeasure;

/// Longest Opus packet: 120 ms at 48 kHz.
const MAX_PACKET_SAMPLES: usize = 5760;

/// What the media side gives a relay once the person's stream toward the bot exists.
pub(crate) struct Attach {
    /// The person's display name, for the measurements.
    pub(crate) name: String,
    /// The person's stream toward the bot.
    pub(crate) to_bot: ParticipantAudio,
    /// The bot's Opus packets, for the browser.
    pub(crate) from_bot: mpsc::Receiver<Bytes>,
    /// The call's measurements (what the person said is recorded there).
    pub(crate) measure: Arc<Mutex<CallMeasure>>,
}

/// What a relay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RelayCounts {
    /// Browser packets forwarded to the bot unchanged.
    pub(crate) forwarded: u64,
    /// 20 ms packets made by re-encoding browser packets of another duration.
    pub(crate) reencoded: u64,
    /// Browser packets that were not valid Opus (dropped).
    pub(crate) malformed: u64,
    /// Bot packets sent to the browser.
    pub(crate) to_browser: u64,
}

/// Browser packets toward the bot: decides forward or re-encode, and meters.
struct Forwarder {
    source: u32,
    decoder: Option<opus::Decoder>,
    encoder: Option<OpusEncoder>,
    pcm: Vec<i16>,
    /// Decoded audio not yet handed to the measurements (they take whole 20 ms frames).
    said: Vec<i16>,
    decoded: Vec<i16>,
    /// The measurements list the person from their first packet on, so their track starts
    /// when their audio does (not when the browser's media was still connecting).
    name: Option<String>,
    counts: RelayCounts,
}

impl Forwarder {
    fn new(source: u32, name: Option<String>) -> Forwarder {
        Forwarder {
            source,
            decoder: opus::Decoder::new(48_000, opus::Channels::Mono).ok(),
            encoder: None,
            pcm: Vec::new(),
            said: Vec::new(),
            decoded: vec![0; MAX_PACKET_SAMPLES],
            name,
            counts: RelayCounts::default(),
        }
    }

    /// Handles one browser packet; returns what to send toward the bot.
    fn packet(&mut self, payload: Bytes, measure: &Mutex<CallMeasure>) -> Vec<Bytes> {
        let Ok(info) = opus_packet::parse(&payload) else {
            self.counts.malformed += 1;
            return Vec::new();
        };
        let n = self
            .decoder
            .as_mut()
            .and_then(|d| d.decode(&payload, &mut self.decoded, false).ok())
            .unwrap_or(0);
        if let Some(name) = self.name.take() {
            let mut m = measure.lock().unwrap_or_else(|p| p.into_inner());
            m.add_participant(self.source, &name, std::time::Instant::now());
        }
        self.said.extend_from_slice(&self.decoded[..n]);
        if self.said.len() >= FRAME {
            let mut m = measure.lock().unwrap_or_else(|p| p.into_inner());
            for chunk in self.said.chunks_exact(FRAME) {
                if let Ok(frame) = <&[i16; FRAME]>::try_from(chunk) {
                    m.said(self.source, frame, true);
                }
            }
            let whole = self.said.len() / FRAME * FRAME;
            self.said.drain(..whole);
        }
        if info.duration_samples_48k() as usize == FRAME {
            self.counts.forwarded += 1;
            return vec![payload];
        }
        // Another duration: re-frame to 20 ms and encode again.
        self.pcm.extend_from_slice(&self.decoded[..n]);
        let mut out = Vec::new();
        if self.encoder.is_none() {
            self.encoder = OpusEncoder::new(1, &OpusConfig::default()).ok();
        }
        let Some(encoder) = self.encoder.as_mut() else {
            self.pcm.clear();
            return out;
        };
        let mut buf = [0u8; MAX_ENCODED_BYTES];
        while self.pcm.len() >= FRAME {
            if let Ok(len) = encoder.encode(&self.pcm[..FRAME], &mut buf) {
                out.push(Bytes::copy_from_slice(&buf[..len]));
                self.counts.reencoded += 1;
            }
            self.pcm.drain(..FRAME);
        }
        out
    }
}

/// Starts the relay of person `source` of `call_id`: until the media side attaches it, the
/// browser's packets are read and dropped; after, they flow both ways until `stop` fires (or
/// is dropped) or the browser goes away, in which case the person leaves the call.
pub(crate) fn spawn(
    softphone: Softphone,
    call_id: String,
    source: u32,
    peer: BrowserPeer,
    attach: oneshot::Receiver<Attach>,
    stop: oneshot::Receiver<()>,
) {
    tokio::spawn(async move {
        let (gone, counts) = run(source, peer, attach, stop).await;
        tracing::info!(
            call = %call_id,
            source,
            forwarded = counts.forwarded,
            reencoded = counts.reencoded,
            malformed = counts.malformed,
            to_browser = counts.to_browser,
            "softphone relay ended"
        );
        if gone {
            softphone.person_gone(&call_id, source);
        }
    });
}

/// Returns whether the browser went away, and the counts.
async fn run(
    source: u32,
    mut peer: BrowserPeer,
    mut attach: oneshot::Receiver<Attach>,
    mut stop: oneshot::Receiver<()>,
) -> (bool, RelayCounts) {
    let mut state = peer.state();
    let counts = RelayCounts::default();
    let attached = loop {
        tokio::select! {
            a = &mut attach => break a.ok(),
            _ = &mut stop => break None,
            p = peer.next_packet() => if p.is_none() { break None },
            changed = state.changed() => {
                if changed.is_err() || *state.borrow() == BrowserLinkState::Gone {
                    peer.close().await;
                    return (true, counts);
                }
            }
        }
    };
    let Some(Attach {
        name,
        to_bot,
        mut from_bot,
        measure,
    }) = attached
    else {
        peer.close().await;
        return (false, counts);
    };
    let mut forwarder = Forwarder::new(source, Some(name));
    let to_browser = peer.sender();
    let gone = loop {
        tokio::select! {
            _ = &mut stop => break false,
            p = peer.next_packet() => match p {
                Some(p) => {
                    for packet in forwarder.packet(p.payload, &measure) {
                        // Refused before media connects or after the session ends: lost.
                        let _ = to_bot.send_opus(packet).await;
                    }
                }
                None => break true,
            },
            b = from_bot.recv() => match b {
                Some(packet) => {
                    if to_browser.send_opus(packet).await.is_ok() {
                        forwarder.counts.to_browser += 1;
                    }
                }
                // The call's media ended; the person's session ends with it.
                None => break false,
            },
            changed = state.changed() => {
                if changed.is_err() || *state.borrow() == BrowserLinkState::Gone {
                    break true;
                }
            }
        }
    };
    peer.close().await;
    (gone, forwarder.counts)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::media::recorder::BotStream;

    fn measure() -> Mutex<CallMeasure> {
        let epoch = Instant::now();
        let m = CallMeasure::new(
            epoch,
            "call",
            "net.tcp://127.0.0.1:1/MediaProcessor",
            48_000 * 10,
            BotStream::new(epoch, 48_000, None).unwrap(),
        );
        Mutex::new(m)
    }

    fn tone(samples: usize) -> Vec<i16> {
        (0..samples)
            .map(|i| ((i as f32 * 1000.0 * std::f32::consts::TAU / 48_000.0).sin() * 8000.0) as i16)
            .collect()
    }

    fn encode(ms: usize) -> Bytes {
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let mut out = [0u8; 4000];
        let n = enc.encode(&tone(48 * ms), &mut out).unwrap();
        Bytes::copy_from_slice(&out[..n])
    }

    #[test]
    fn twenty_ms_packets_are_forwarded_unchanged() {
        let m = measure();
        let mut f = Forwarder::new(7, Some("Pat".into()));
        let p = encode(20);
        let out = f.packet(p.clone(), &m);
        assert_eq!(out, vec![p]);
        assert_eq!(f.counts.forwarded, 1);
        assert_eq!(f.counts.reencoded, 0);
        let (_, levels) = m.lock().unwrap().levels();
        assert!(levels[0].1 > -40.0, "{levels:?}");
    }

    #[test]
    fn other_durations_are_reframed_to_twenty_ms() {
        let m = measure();
        let mut f = Forwarder::new(7, Some("Pat".into()));
        let out = f.packet(encode(40), &m);
        assert_eq!(out.len(), 2);
        for p in &out {
            assert_eq!(
                opus_packet::parse(p).unwrap().duration_samples_48k() as usize,
                FRAME
            );
        }
        assert!(f.packet(encode(10), &m).is_empty());
        assert_eq!(f.packet(encode(10), &m).len(), 1);
        assert_eq!(f.counts.reencoded, 3);
    }

    #[test]
    fn garbage_is_dropped_and_counted() {
        let m = measure();
        let mut f = Forwarder::new(7, Some("Pat".into()));
        for junk in [&b""[..], &[0xff], &[0x03, 0xff, 0xff]] {
            assert!(f.packet(Bytes::copy_from_slice(junk), &m).is_empty());
        }
        assert_eq!(f.counts.forwarded, 0);
        assert_eq!(f.counts.malformed, 3);
    }
}
