//! The audio heart of mediabot: 20 ms PCM framing, Opus, resampling, a jitter buffer, mixing
//! and speaker detection, and the real-time threads that run them.
//!
//! Every algorithm is a sans-IO core (a plain struct fed input and the current time, returning
//! output): [`framer::Framer`], [`player::FramePlayer`], [`pacer::Pacer`],
//! [`jitter::JitterBuffer`], [`reception::ReceptionStats`] (RFC 3550 loss and jitter, which
//! media-transport reports too), [`mix`]'s mixer and [`mix::SpeakerTracker`]. The [`engine`] module
//! is the thin shell that runs them on dedicated OS threads at absolute 20 ms deadlines.
//!
//! # Send path (app → network)
//!
//! 1. The app calls [`engine::SendStream::push_audio`] with s16le bytes of any length. The chunk
//!    crosses to a send thread through a bounded lock-free queue (full: the oldest chunk is
//!    dropped and counted).
//! 2. On the call's deadline the send thread feeds queued chunks to the call's
//!    [`player::FramePlayer`], whose [`framer::Framer`] cuts them into exact 20 ms frames
//!    (odd byte counts and partial frames carry over), and takes one frame. Fewer than the
//!    low-water mark left raises [`engine::SendEvent::LowOnFrames`].
//! 3. [`resample::FrameResampler`] converts the frame to 48 kHz (exactly 960 samples per
//!    channel: a small FIFO absorbs rubato's varying output sizes).
//! 4. [`codec::OpusEncoder`] encodes it (VOIP mode, FEC on, complexity 5 by default) into an
//!    inline [`engine::EncodedPacket`] carrying its RTP sequence number and timestamp.
//! 5. The packet goes to the transport through another bounded queue
//!    ([`engine::SendStream::packets`]).
//!
//! # Receive path (network → app)
//!
//! 1. The transport looks the sender up in the call's [`registry::StreamRegistry`] by
//!    [`media_session::SourceId`] and calls [`registry::ReceiveStream::deliver`] with the RTP
//!    sequence number, timestamp, SSRC and the payload as [`bytes::Bytes`] (never copied again).
//! 2. The receive thread validates the payload with [`opus_packet::parse`] (malformed packets
//!    are counted and dropped, never reach libopus) and stores it in the stream's
//!    [`jitter::JitterBuffer`].
//! 3. On the call's deadline the jitter buffer says what to play: the next packet, FEC from the
//!    following packet, loss concealment, or silence. [`codec::OpusDecoder`] produces 20 ms at
//!    48 kHz, and [`resample::FrameResampler`] converts it to the app's format.
//! 4. Each participant's frame is delivered as [`engine::ReceiveEvent::Unmixed`]; then all of
//!    them are summed ([`mix::mix_into`], soft-clipped) into [`engine::ReceiveEvent::Mixed`]
//!    with the active speakers, and [`engine::ReceiveEvent::DominantSpeakerChanged`] follows
//!    when [`mix::SpeakerTracker`] says so.
//!
//! # Real-time rules
//!
//! Worker threads never block on anything but their own wake-up (they poll their queues with
//! `try_recv` and sleep on the clock: a blocking receive would register with a waker behind a
//! lock that producers on async threads also take, inviting priority inversion), never take a
//! lock that async code holds, and do not allocate per frame: frames and packets are stored inline and travel
//! through preallocated crossbeam array channels; codecs, resamplers and jitter buffers are
//! built on the control thread. A worker serves many calls, spread over 20 one-millisecond
//! slots so a busy worker still meets every call's deadline.
//!
//! # Test hooks
//!
//! The feature `_internal_test_exports` (enabled by the workspace's benchmarks and fuzz
//! targets, never by a bot) exposes the workers' per-frame paths driven with made-up time
//! (`_internal_test_exports::bench`) and the fuzz entry points (`_internal_test_exports::fuzz`).
//! Not a stable API.

pub mod codec;
pub mod engine;
pub mod frame;
pub mod framer;
pub mod jitter;
pub mod mix;
pub mod opus_packet;
pub mod pacer;
pub mod player;
pub mod reception;
pub mod registry;
pub mod resample;
pub mod stats;

#[cfg(feature = "_internal_test_exports")]
#[doc(hidden)]
pub mod _internal_test_exports;

#[cfg(test)]
mod alloc_counter;
mod delay_peaks;

pub use bytes::Bytes;
pub use engine::{
    ActiveSpeakers, CallMedia, EncodedPacket, Engine, EngineConfig, EngineError, ReceiveEvent,
    SendEvent, SendStatus, SendStream,
};
pub use frame::{AudioFrame, PcmSpec};
pub use jitter::RtpAudio;
pub use reception::ReceptionStats;
pub use registry::{ReceiveStream, StreamRegistry};
