//! The receive-stream registry of a call, keyed by [`SourceId`].
//!
//! This is where signaling and transport meet: the call's owner adds and removes streams as
//! the roster announces participants' sources, media-transport looks a source up and delivers
//! its packets. It is the one record of which sources are live: a source's audio is delivered
//! exactly while it has a stream here. Both sides run in async code; the registry's lock is
//! taken only there. The receive thread learns about streams through a command queue and gets
//! packets through a lock-free queue, so it never touches this lock; its own list of streams
//! follows these commands and keeps nothing else.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use media_session::SourceId;

use crate::engine::{CallShared, EngineError, EngineShared, Inbound, RecvCommand, RecvStream};
use crate::frame::PcmSpec;
use crate::jitter::RtpAudio;
use crate::stats::Counter;

/// Counters of one receive stream, readable while running.
#[derive(Debug, Default)]
pub struct RecvCounters {
    /// Packets handed to the engine.
    pub delivered: Counter,
    /// Packets the jitter buffer accepted.
    pub received: Counter,
    /// Sequence numbers lost.
    pub lost: Counter,
    /// Packets too late to play.
    pub late: Counter,
    /// Duplicate packets.
    pub duplicate: Counter,
    /// Malformed packets dropped before the decoder.
    pub malformed: Counter,
    /// Frames concealed (PLC or FEC).
    pub concealed: Counter,
    /// Of those, frames rebuilt from FEC.
    pub fec_recovered: Counter,
    /// Jitter buffer resyncs.
    pub resyncs: Counter,
    /// Current jitter buffer depth in frames.
    pub depth_frames: Counter,
    /// Measured interarrival jitter in µs.
    pub jitter_us: Counter,
    /// Frames delivered to the app.
    pub frames: Counter,
}

/// The handle transport uses to deliver one participant's packets.
#[derive(Clone)]
pub struct ReceiveStream {
    source: SourceId,
    call: u64,
    engine: Arc<EngineShared>,
    worker: usize,
    counters: Arc<RecvCounters>,
}

impl std::fmt::Debug for ReceiveStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiveStream")
            .field("source", &self.source)
            .field("call", &self.call)
            .finish()
    }
}

impl ReceiveStream {
    /// The participant's source id.
    pub fn source(&self) -> SourceId {
        self.source
    }

    /// Hands a received packet to the receive thread. `arrival` is when the datagram arrived
    /// (it feeds the jitter estimate). Never blocks; a full queue drops the oldest packet.
    ///
    /// Build the payload by freezing a `BytesMut` (or slicing a frozen receive buffer): such
    /// `Bytes` clone by reference count. A `Bytes` made from a `Vec` allocates on its first
    /// clone, which the receive thread may do for FEC.
    pub fn deliver(&self, packet: RtpAudio, arrival: Instant) -> bool {
        self.counters.delivered.incr();
        self.engine.recv_packets[self.worker].push(Inbound {
            call: self.call,
            source: self.source,
            packet,
            arrival,
        })
    }

    /// Counters, readable while running.
    pub fn counters(&self) -> &RecvCounters {
        &self.counters
    }
}

struct Inner {
    call: u64,
    spec: PcmSpec,
    engine: Arc<EngineShared>,
    worker: usize,
    streams: RwLock<HashMap<SourceId, ReceiveStream>>,
    _call: Arc<CallShared>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Streams beyond the first were added to the budget one by one; the first goes back
        // with the call's own reservation.
        let streams = self
            .streams
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        let budget = &self.engine.budget;
        budget.release(u64::from(budget.cost.recv_us) * streams.saturating_sub(1) as u64);
    }
}

/// The receive streams of one call. Cheap to clone; all clones share the same set.
#[derive(Clone)]
pub struct StreamRegistry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StreamRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRegistry")
            .field("call", &self.inner.call)
            .field("streams", &self.len())
            .finish()
    }
}

impl StreamRegistry {
    pub(crate) fn new(
        call: u64,
        spec: PcmSpec,
        engine: Arc<EngineShared>,
        worker: usize,
        guard: Arc<CallShared>,
    ) -> StreamRegistry {
        StreamRegistry {
            inner: Arc::new(Inner {
                call,
                spec,
                engine,
                worker,
                streams: RwLock::new(HashMap::new()),
                _call: guard,
            }),
        }
    }

    /// Adds a receive stream for `source` (idempotent: an existing stream is returned).
    ///
    /// The stream's decoder and resampler are built here, on the caller's thread, and handed to
    /// the receive thread ready to run.
    pub fn add(&self, source: SourceId) -> Result<ReceiveStream, EngineError> {
        let mut map = self
            .inner
            .streams
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(&source) {
            return Ok(s.clone());
        }
        let budget = &self.inner.engine.budget;
        let counters = Arc::new(RecvCounters::default());
        let config = &self.inner.engine.config;
        let chain = RecvStream::new(
            source,
            self.inner.spec,
            config.jitter,
            config.resampler,
            counters.clone(),
        )?;
        self.inner.engine.recv[self.inner.worker]
            .commands
            .send(RecvCommand::AddStream(Box::new(chain), self.inner.call))
            .map_err(|_| EngineError::ShutDown)?;
        let stream = ReceiveStream {
            source,
            call: self.inner.call,
            engine: self.inner.engine.clone(),
            worker: self.inner.worker,
            counters,
        };
        // The call's first stream was reserved when it opened; more are taken as they come.
        if !map.is_empty() {
            budget.add(u64::from(budget.cost.recv_us));
        }
        map.insert(source, stream.clone());
        Ok(stream)
    }

    /// Removes `source`'s stream; returns whether it existed.
    pub fn remove(&self, source: SourceId) -> bool {
        let mut map = self
            .inner
            .streams
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let removed = map.remove(&source).is_some();
        if removed && !map.is_empty() {
            let budget = &self.inner.engine.budget;
            budget.release(u64::from(budget.cost.recv_us));
        }
        drop(map);
        if removed {
            let _ = self.inner.engine.recv[self.inner.worker].commands.send(
                RecvCommand::RemoveStream {
                    call: self.inner.call,
                    source,
                },
            );
        }
        removed
    }

    /// Looks `source`'s stream up.
    pub fn get(&self, source: SourceId) -> Option<ReceiveStream> {
        self.inner
            .streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&source)
            .cloned()
    }

    /// The registered sources, in ascending order.
    pub fn sources(&self) -> Vec<SourceId> {
        let mut v: Vec<SourceId> = self
            .inner
            .streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        v.sort_unstable();
        v
    }

    /// Number of streams.
    pub fn len(&self) -> usize {
        self.inner
            .streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// True when no stream is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
