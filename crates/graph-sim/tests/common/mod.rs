//! Test helpers shared by the media tests.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use audio_pipeline::codec::{MAX_ENCODED_BYTES, OpusConfig, OpusDecoder, OpusEncoder};
use bytes::Bytes;
use media_session::SourceId;
use media_transport::{AudioSender, IncomingAudio};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A conference bot's echo: decodes every talker, mixes them each 20 ms, re-encodes and sends the
/// mix back. With `send_silence` the stream runs steadily even when nobody talks, as mediabot's
/// paced sender does; without it only mixes with audio are sent.
pub(crate) fn spawn_mixing_echo(
    mut audio: mpsc::Receiver<IncomingAudio>,
    out: AudioSender,
    send_silence: bool,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut talkers: HashMap<SourceId, (OpusDecoder, VecDeque<Vec<i16>>)> = HashMap::new();
        let mut enc = OpusEncoder::new(1, &OpusConfig::default()).unwrap();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut buf = [0u8; MAX_ENCODED_BYTES];
        loop {
            tokio::select! {
                p = audio.recv() => {
                    let Some(p) = p else { return };
                    let (dec, queue) = talkers
                        .entry(p.source)
                        .or_insert_with(|| (OpusDecoder::new(1).unwrap(), VecDeque::new()));
                    let mut frame = vec![0i16; 960];
                    if dec.decode(&p.payload, &mut frame).is_ok() {
                        queue.push_back(frame);
                        // Keep the echo prompt: never more than 60 ms queued per talker.
                        while queue.len() > 3 {
                            queue.pop_front();
                        }
                    }
                }
                _ = tick.tick() => {
                    let mut sum = vec![0i32; 960];
                    let mut any = false;
                    for (_, queue) in talkers.values_mut() {
                        if let Some(f) = queue.pop_front() {
                            any = true;
                            sum.iter_mut().zip(&f).for_each(|(s, &v)| *s += i32::from(v));
                        }
                    }
                    if any || send_silence {
                        let pcm: Vec<i16> = sum.iter().map(|&v| v.clamp(-32_768, 32_767) as i16).collect();
                        let n = enc.encode(&pcm, &mut buf).unwrap();
                        let _ = out.send_opus(Bytes::copy_from_slice(&buf[..n]));
                    }
                }
            }
        }
    })
}
