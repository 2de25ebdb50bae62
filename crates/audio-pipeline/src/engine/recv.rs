//! The receive worker: jitter buffer → Opus decoder → downsampler → unmixed and mixed frames.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use media_session::SourceId;

use super::phase::{self, DECIDE_EVERY_TICKS, Move, StreamTiming};
use super::{
    ActiveSpeakers, DropOldest, EngineConfig, EngineError, EngineStats, ReceiveEvent, SLOTS,
};
use crate::codec::{OPUS_FRAME_SAMPLES, OpusDecoder};
use crate::frame::{AudioFrame, OPUS_RATE, PcmSpec, TICKS_PER_SECOND};
use crate::jitter::{JitterBuffer, JitterConfig, Playout, PushOutcome, RtpAudio};
use crate::mix::{MixMode, SpeakerTracker, level_dbfs, mix_into};
use crate::pacer::{FRAME, Pacer};
use crate::registry::RecvCounters;
use crate::resample::{FrameResampler, ResamplerKind};

/// A packet on its way from the transport to a receive worker.
pub(crate) struct Inbound {
    pub(crate) call: u64,
    pub(crate) source: SourceId,
    pub(crate) packet: RtpAudio,
    pub(crate) arrival: Instant,
}

/// Control messages for a receive worker.
pub(crate) enum RecvCommand {
    AddCall(Box<RecvCall>),
    RemoveCall(u64),
    AddStream(Box<RecvStream>, u64),
    RemoveStream { call: u64, source: SourceId },
}

/// One participant's receive chain.
pub(crate) struct RecvStream {
    source: SourceId,
    jitter: JitterBuffer,
    decoder: OpusDecoder,
    down: FrameResampler,
    pcm48: Vec<i16>,
    app: Vec<i16>,
    has_audio: bool,
    counters: Arc<RecvCounters>,
    timing: StreamTiming,
}

impl RecvStream {
    /// Builds the chain on the caller's (control) thread, so the worker never constructs
    /// codecs or resampler tables.
    pub(crate) fn new(
        source: SourceId,
        spec: PcmSpec,
        jitter: JitterConfig,
        resampler: ResamplerKind,
        counters: Arc<RecvCounters>,
    ) -> Result<RecvStream, EngineError> {
        Ok(RecvStream {
            source,
            jitter: JitterBuffer::new(jitter),
            decoder: OpusDecoder::new(spec.channels)?,
            down: FrameResampler::new(resampler, OPUS_RATE, spec.sample_rate, spec.channels)?,
            pcm48: vec![0; OPUS_FRAME_SAMPLES * usize::from(spec.channels)],
            app: vec![0; spec.samples_per_frame()],
            has_audio: false,
            counters,
            timing: StreamTiming::default(),
        })
    }

    fn publish(&self) {
        let s = self.jitter.stats();
        let c = &self.counters;
        c.received.set(s.received);
        c.lost.set(s.lost);
        c.late.set(s.late);
        c.duplicate.set(s.duplicate);
        c.malformed.set(s.malformed);
        c.concealed.set(s.concealed);
        c.fec_recovered.set(s.fec_recovered);
        c.resyncs.set(s.resyncs);
        c.depth_frames.set(u64::from(s.depth_frames));
        c.jitter_us.set((s.jitter_ms * 1000.0) as u64);
    }
}

/// One call's receive side: its participants, mixer and speaker tracker.
pub(crate) struct RecvCall {
    id: u64,
    pub(crate) slot: usize,
    /// The slot, published for the call's send stream and its application pump, which follow
    /// it (see `phase`).
    pub(crate) published_slot: Arc<AtomicUsize>,
    last_served: Option<u64>,
    serves: u32,
    /// Whether the tick was placed by the call's first packet (see `phase`).
    placed: bool,
    spec: PcmSpec,
    mix_mode: MixMode,
    streams: Vec<RecvStream>,
    tracker: SpeakerTracker,
    mix_acc: Vec<i32>,
    mix_out: Vec<i16>,
    events: DropOldest<ReceiveEvent>,
}

impl RecvCall {
    pub(crate) fn new(
        config: &EngineConfig,
        id: u64,
        spec: PcmSpec,
        events: DropOldest<ReceiveEvent>,
    ) -> RecvCall {
        RecvCall {
            id,
            slot: 0,
            published_slot: Arc::new(AtomicUsize::new(0)),
            last_served: None,
            serves: 0,
            placed: false,
            spec,
            mix_mode: config.mix,
            streams: Vec::with_capacity(16),
            tracker: SpeakerTracker::new(config.speakers, 16),
            mix_acc: vec![0; spec.samples_per_frame()],
            mix_out: vec![0; spec.samples_per_frame()],
            events,
        }
    }
}

/// The sans-IO state of a receive thread.
pub(crate) struct RecvWorker {
    calls: Vec<RecvCall>,
    pacer: Pacer,
    stats: Arc<EngineStats>,
    slack: Duration,
    epoch: Instant,
    unknown: u64,
}

impl RecvWorker {
    pub(crate) fn new(
        stats: Arc<EngineStats>,
        config: EngineConfig,
        epoch: Instant,
        start: Instant,
    ) -> RecvWorker {
        RecvWorker {
            calls: Vec::new(),
            pacer: Pacer::with_period(start, FRAME / SLOTS as u32).with_max_catch_up(100),
            stats,
            slack: config.deadline_slack,
            epoch,
            unknown: 0,
        }
    }

    pub(crate) fn handle(&mut self, cmd: RecvCommand) {
        match cmd {
            RecvCommand::AddCall(call) => {
                // The slot was chosen by the control plane (`Engine::open_call`).
                self.calls.push(*call);
            }
            RecvCommand::RemoveCall(id) => {
                if let Some(i) = self.calls.iter().position(|c| c.id == id) {
                    self.calls.swap_remove(i);
                }
            }
            RecvCommand::AddStream(stream, call_id) => {
                let call = self.calls.iter_mut().find(|c| c.id == call_id);
                if let Some(call) =
                    call.filter(|c| !c.streams.iter().any(|s| s.source == stream.source))
                {
                    call.streams.push(*stream);
                }
            }
            RecvCommand::RemoveStream { call, source } => {
                if let Some(call) = self.calls.iter_mut().find(|c| c.id == call) {
                    call.streams.retain(|s| s.source != source);
                    call.tracker.remove(source);
                }
            }
        }
    }

    /// Routes a packet to its stream's jitter buffer. Returns false for an unknown stream.
    pub(crate) fn ingest(&mut self, inbound: Inbound) -> bool {
        let Some(i) = self.calls.iter().position(|c| c.id == inbound.call) else {
            self.unknown += 1;
            return false;
        };
        let call = &mut self.calls[i];
        let Some(stream) = call.streams.iter_mut().find(|s| s.source == inbound.source) else {
            self.unknown += 1;
            return false;
        };
        let timestamp = inbound.packet.timestamp;
        match stream.jitter.push(inbound.packet, inbound.arrival) {
            PushOutcome::Malformed(_) => return true,
            PushOutcome::Resynced => stream.timing.reset(),
            _ => {}
        }
        let arrival_us = inbound
            .arrival
            .saturating_duration_since(self.epoch)
            .as_micros();
        stream
            .timing
            .observe(timestamp, i64::try_from(arrival_us).unwrap_or(i64::MAX));
        if !call.placed {
            self.retime(i, Move::First);
        }
        true
    }

    pub(crate) fn next_deadline(&self) -> Instant {
        self.pacer.poll_timeout()
    }

    /// Serves every sub-tick due at `now`.
    pub(crate) fn run_due(&mut self, now: Instant) {
        let before = self.pacer.skipped();
        while let Some(tick) = self.pacer.poll_tick(now) {
            let ts =
                (tick.deadline - self.epoch).as_nanos() as u64 / (1_000_000_000 / TICKS_PER_SECOND);
            for i in 0..self.calls.len() {
                let call = &mut self.calls[i];
                let Some(behind) = phase::due_since(call.slot, call.last_served, tick.index) else {
                    continue;
                };
                call.last_served = Some(tick.index - behind);
                // Lateness counts from this sub-tick. A turn found behind the worker is either
                // a first placement that moved the call there (its packet came just after the
                // new slot; nothing waited for that turn) or one the pacer skipped after a
                // stall longer than its catch-up, whose lateness this sub-tick carries already.
                serve(call, tick.deadline, now, ts, &self.stats, self.slack);
                call.serves = call.serves.wrapping_add(1);
                if call.serves.is_multiple_of(DECIDE_EVERY_TICKS) {
                    self.retime(i, Move::Playing);
                }
            }
        }
        self.stats.skipped_ticks.add(self.pacer.skipped() - before);
    }

    /// Moves call `i`'s tick to just after its streams' packets arrive (weighted by who
    /// talks), among the slots that keep the worker's load even.
    fn retime(&mut self, i: usize, kind: Move) {
        let mut load = [0usize; SLOTS];
        for c in &self.calls {
            load[c.slot] += 1;
        }
        let call = &self.calls[i];
        // Enough for any call's streams; a call with more ranks by its first ones.
        let mut dues = [(0usize, 0f32); 32];
        let mut n = 0;
        let due = |s: &RecvStream| match kind {
            Move::First => s.timing.first_due(),
            Move::Playing => s.timing.due(),
        };
        for due in call.streams.iter().filter_map(due).take(dues.len()) {
            dues[n] = due;
            n += 1;
        }
        if n == 0 {
            return;
        }
        let current = call.slot;
        let others = |s: usize| load[s] - usize::from(s == current);
        let min = (0..SLOTS).map(others).min().unwrap_or(0);
        let best = phase::best_slot(
            current,
            dues[..n].iter().copied(),
            |s| others(s) <= min + 1,
            kind,
        );
        let call = &mut self.calls[i];
        call.placed = true;
        if let Some(slot) = best {
            call.slot = slot;
            call.published_slot.store(slot, Ordering::Relaxed);
            for st in &mut call.streams {
                st.jitter.tick_moved();
            }
        }
    }
}

/// A frame at or above this level counts as speech for the choice of the call's tick (the
/// speaker tracker's default threshold for an active speaker).
const SPEECH_DBFS: f32 = -45.0;

fn serve(
    call: &mut RecvCall,
    deadline: Instant,
    now: Instant,
    timestamp: u64,
    stats: &EngineStats,
    slack: Duration,
) {
    let spec = call.spec;
    for st in call.streams.iter_mut() {
        let t0 = Instant::now();
        if st.jitter.take_resync() {
            let _ = st.decoder.reset();
            st.down.reset();
        }
        let decoded = match st.jitter.pop(now) {
            Playout::Packet(p) => st
                .decoder
                .decode(&p, &mut st.pcm48)
                .or_else(|_| st.decoder.conceal(&mut st.pcm48))
                .is_ok(),
            Playout::Fec(next) => st.decoder.decode_fec(&next, &mut st.pcm48).is_ok(),
            Playout::Conceal => st.decoder.conceal(&mut st.pcm48).is_ok(),
            Playout::Silence => false,
        };
        let hold = st.jitter.last_hold();
        if let Some(hold) = hold {
            stats.jitter_hold.record(hold);
        }
        let t1 = Instant::now();
        st.has_audio = decoded && st.down.process(&st.pcm48, &mut st.app).is_ok();
        let t2 = Instant::now();
        st.publish();
        let level = if st.has_audio {
            call.events
                .push(ReceiveEvent::Unmixed(AudioFrame::from_samples(
                    spec, &st.app, timestamp, st.source,
                )));
            st.counters.frames.incr();
            stats.frames_received.incr();
            level_dbfs(&st.app)
        } else {
            -96.0
        };
        call.tracker.observe(st.source, level);
        let speech = level >= SPEECH_DBFS;
        st.timing.talked(speech);
        if let (true, Some(hold)) = (speech, hold) {
            stats.speech_hold.record(hold);
        }
        let done = Instant::now();
        if decoded {
            stats.stage_decode.record(t1 - t0);
            stats.stage_resample_down.record(t2 - t1);
            stats.recv_frame.record(done - t0);
            let late = done.saturating_duration_since(deadline);
            stats.recv_lateness.record(late);
            if late > slack {
                stats.recv_deadline_misses.incr();
            }
        }
    }
    let t_mix = Instant::now();
    mix_into(
        call.mix_mode,
        call.streams
            .iter()
            .filter(|s| s.has_audio)
            .map(|s| s.app.as_slice()),
        &mut call.mix_acc,
        &mut call.mix_out,
    );
    let dominant = call.tracker.end_tick();
    // Before the call's first packet there is nothing to mix and the tick has no phase yet:
    // an app answering each mixed frame (an echo) would start sending at a phase the call
    // leaves when its first packet places it, a step its listeners hear.
    if !call.placed {
        return;
    }
    call.events.push(ReceiveEvent::Mixed {
        frame: AudioFrame::from_samples(spec, &call.mix_out, timestamp, SourceId::NONE),
        active_speakers: ActiveSpeakers::from_slice(call.tracker.active()),
    });
    if let Some(d) = dominant {
        call.events.push(ReceiveEvent::DominantSpeakerChanged(d));
    }
    stats.stage_mix.record(t_mix.elapsed());
}

/// The thread body: apply commands, take queued packets, serve what is due, sleep until the
/// next sub-tick. Like the send worker it never blocks on a channel (see `send::run`), so
/// packets wait at most one sub-tick (1 ms) in the queue; their arrival time was stamped by
/// the transport.
pub(crate) fn run(
    mut worker: RecvWorker,
    commands: Receiver<RecvCommand>,
    packets: Receiver<Inbound>,
    stop: Arc<AtomicBool>,
    ahead: Duration,
) {
    while !stop.load(Ordering::Relaxed) {
        while let Ok(cmd) = commands.try_recv() {
            worker.handle(cmd);
        }
        while let Ok(p) = packets.try_recv() {
            // A packet for a stream that is gone (or never was) is dropped.
            worker.ingest_or_retry(p, &commands);
        }
        worker.run_due(Instant::now() + ahead);
        let wake = worker
            .next_deadline()
            .checked_sub(ahead)
            .unwrap_or_else(Instant::now);
        let wait = wake.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

impl RecvWorker {
    /// Like [`RecvWorker::ingest`], but first applies pending commands if the stream is not
    /// known yet: a stream's packets can overtake the command that adds it.
    pub(crate) fn ingest_or_retry(&mut self, p: Inbound, commands: &Receiver<RecvCommand>) -> bool {
        let known = self
            .calls
            .iter()
            .any(|c| c.id == p.call && c.streams.iter().any(|s| s.source == p.source));
        if !known {
            while let Ok(cmd) = commands.try_recv() {
                self.handle(cmd);
            }
        }
        self.ingest(p)
    }
}

#[cfg(test)]
impl RecvWorker {
    pub(crate) fn worker_calls(&self) -> &[RecvCall] {
        &self.calls
    }
}

#[cfg(test)]
impl RecvCall {
    pub(crate) fn stream_counters(&self, i: usize) -> &RecvCounters {
        &self.streams[i].counters
    }
}
