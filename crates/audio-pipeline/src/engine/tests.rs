//! Worker tests with injected time (sans threads), plus one smoke test of the real threads.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use crossbeam_channel::Receiver;
use media_session::{SourceId, StreamDirection};

use super::recv::{Inbound, RecvCall, RecvCommand, RecvStream, RecvWorker};
use super::send::{SendCall, SendCommand, SendWorker};
use super::*;
use crate::codec::{MAX_ENCODED_BYTES, OpusEncoder};
use crate::pacer::FRAME;
use crate::registry::{ReceiveStream, RecvCounters};
use crate::resample::FrameResampler;
use test_kit::fixtures::speech_16k;
use test_kit::similarity::spectral_similarity;

const MS: Duration = Duration::from_millis(1);

fn spec16() -> PcmSpec {
    PcmSpec::new(16_000, 1).unwrap()
}

/// Speech frames encoded as a remote participant would send them, as `Bytes` the way a
/// transport produces them (frozen `BytesMut`, so clones are reference-count bumps).
fn encoded_speech(frames: usize) -> Vec<Bytes> {
    let speech = speech_16k();
    let mut up = FrameResampler::new(ResamplerKind::default(), 16_000, 48_000, 1).unwrap();
    let mut enc = OpusEncoder::new(1, &OpusConfig::default()).unwrap();
    let mut pcm48 = vec![0i16; 960];
    let mut buf = [0u8; MAX_ENCODED_BYTES];
    speech
        .chunks_exact(320)
        .cycle()
        .take(frames)
        .map(|f| {
            up.process(f, &mut pcm48).unwrap();
            let n = enc.encode(&pcm48, &mut buf).unwrap();
            BytesMut::from(&buf[..n]).freeze()
        })
        .collect()
}

fn encoded_silence(frames: usize) -> Vec<Bytes> {
    let mut enc = OpusEncoder::new(1, &OpusConfig::default()).unwrap();
    let mut buf = [0u8; MAX_ENCODED_BYTES];
    (0..frames)
        .map(|_| {
            let n = enc.encode(&[0; 960], &mut buf).unwrap();
            BytesMut::from(&buf[..n]).freeze()
        })
        .collect()
}

struct SendRig {
    worker: SendWorker,
    audio: DropOldest<Vec<u8>>,
    packets: Receiver<EncodedPacket>,
    events: Receiver<SendEvent>,
    active: Arc<AtomicBool>,
    counters: Arc<SendCounters>,
}

fn send_rig(t0: Instant, stats: Arc<EngineStats>) -> SendRig {
    let config = EngineConfig::default();
    let counters = Arc::new(SendCounters::default());
    let (audio, audio_rx) = DropOldest::new(256, counters.queue_dropped.clone());
    let (ptx, packets) = DropOldest::new(64, counters.packets_dropped.clone());
    let (etx, events) = DropOldest::new(64, Arc::new(Counter::default()));
    let active = Arc::new(AtomicBool::new(false));
    let call = SendCall::new(
        &config,
        1,
        spec16(),
        audio_rx,
        ptx,
        etx,
        active.clone(),
        counters.clone(),
    )
    .unwrap();
    let mut worker = SendWorker::new(stats, config, t0);
    worker.handle(SendCommand::AddCall(Box::new(call)));
    SendRig {
        worker,
        audio,
        packets,
        events,
        active,
        counters,
    }
}

struct RecvRig {
    worker: RecvWorker,
    events: Receiver<ReceiveEvent>,
}

fn recv_rig(t0: Instant, stats: Arc<EngineStats>, sources: &[SourceId]) -> RecvRig {
    let config = EngineConfig::default();
    let (etx, events) = DropOldest::new(256, Arc::new(Counter::default()));
    let mut worker = RecvWorker::new(stats, config.clone(), t0, t0);
    worker.handle(RecvCommand::AddCall(Box::new(RecvCall::new(
        &config,
        1,
        spec16(),
        etx,
    ))));
    for &s in sources {
        let chain = RecvStream::new(
            s,
            spec16(),
            config.jitter,
            config.resampler,
            Arc::new(RecvCounters::default()),
        )
        .unwrap();
        worker.handle(RecvCommand::AddStream(Box::new(chain), 1));
    }
    RecvRig { worker, events }
}

fn inbound(source: SourceId, seq: u16, payload: Bytes, arrival: Instant) -> Inbound {
    Inbound {
        call: 1,
        source,
        packet: crate::jitter::RtpAudio {
            seq,
            timestamp: u32::from(seq) * 960,
            ssrc: source.0,
            payload,
        },
        arrival,
    }
}

#[test]
fn send_worker_paces_packets_on_exact_deadlines() {
    let t0 = Instant::now();
    let mut rig = send_rig(t0, Arc::new(EngineStats::default()));
    rig.active.store(true, std::sync::atomic::Ordering::Relaxed);
    let speech = speech_16k();
    // A 200 ms burst in one chunk with an odd byte count split across two pushes.
    let bytes: Vec<u8> = speech[..3200]
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    rig.audio.push(bytes[..1001].to_vec());
    rig.audio.push(bytes[1001..].to_vec());
    for ms in 0..400u32 {
        rig.worker.run_due(t0 + MS * ms);
    }
    let packets: Vec<EncodedPacket> = rig.packets.try_iter().collect();
    assert_eq!(packets.len(), 10);
    for (i, p) in packets.iter().enumerate() {
        assert_eq!(p.seq, i as u16);
        assert!(!p.payload().is_empty());
        if i > 0 {
            assert_eq!(p.deadline - packets[i - 1].deadline, FRAME);
            assert_eq!(p.rtp_timestamp - packets[i - 1].rtp_timestamp, 960);
        }
    }
    let events: Vec<SendEvent> = rig.events.try_iter().collect();
    assert_eq!(events[0], SendEvent::StatusChanged(SendStatus::Active));
    assert!(events.contains(&SendEvent::LowOnFrames { queued: 2 }));
    assert_eq!(rig.counters.underruns.get(), 0);
}

#[test]
fn the_send_worker_rings_once_per_pass_that_queued_packets_and_when_a_call_leaves() {
    let t0 = Instant::now();
    let mut rig = send_rig(t0, Arc::new(EngineStats::default()));
    let bell = Arc::new(Doorbell::default());
    rig.worker.set_doorbell(bell.clone());
    let rings = || bell.rings.load(std::sync::atomic::Ordering::Relaxed);
    // Passes that queue nothing (the call is not active yet) wake nobody.
    for ms in 0..100u32 {
        rig.worker.run_due(t0 + MS * ms);
    }
    assert_eq!(rings(), 0);
    rig.active.store(true, std::sync::atomic::Ordering::Relaxed);
    let bytes: Vec<u8> = speech_16k()[..3200]
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    rig.audio.push(bytes);
    // One pass a millisecond: ten of them queue a packet each.
    for ms in 100..500u32 {
        rig.worker.run_due(t0 + MS * ms);
    }
    assert_eq!(rig.packets.try_iter().count(), 10);
    assert_eq!(rings(), 10);
    // The call leaves: one more ring, and its queue is closed by then.
    rig.worker.handle(SendCommand::RemoveCall(1));
    assert_eq!(rings(), 11);
    assert!(matches!(
        rig.packets.try_recv(),
        Err(crossbeam_channel::TryRecvError::Disconnected)
    ));
}

/// What a send worker stalled for `stall` ms did: each packet with the (injected) time it was
/// handed off, and the call's counters.
struct StallRun {
    packets: Vec<(EncodedPacket, Instant)>,
    stall_end: Instant,
    queued_before: u64,
    queued_after: u64,
    counters: Arc<SendCounters>,
    stats: Arc<EngineStats>,
}

/// An app pushes a 20 ms frame every 20 ms for a second; the send worker is not run at all
/// from 400 ms for `stall` ms (the host stalled it), then runs every millisecond again.
fn send_through_a_stall(stall: u32) -> StallRun {
    let t0 = Instant::now();
    let stats = Arc::new(EngineStats::default());
    let mut rig = send_rig(t0, stats.clone());
    rig.active.store(true, std::sync::atomic::Ordering::Relaxed);
    let speech = speech_16k();
    let mut frames = speech.chunks_exact(320).cycle();
    let (stall_at, total) = (400u32, 1000 + stall);
    let mut packets = Vec::new();
    let mut queued_before = 0;
    for ms in 0..total {
        if ms % 20 == 0 {
            let frame: Vec<u8> = frames
                .next()
                .unwrap()
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect();
            rig.audio.push(frame);
        }
        if (stall_at..stall_at + stall).contains(&ms) {
            continue;
        }
        if ms + 1 == stall_at {
            queued_before = rig.counters.queued_frames.get();
        }
        let now = t0 + MS * ms;
        rig.worker.run_due(now);
        packets.extend(rig.packets.try_iter().map(|p| (p, now)));
    }
    StallRun {
        packets,
        stall_end: t0 + MS * (stall_at + stall),
        queued_before,
        queued_after: rig.counters.queued_frames.get(),
        counters: rig.counters,
        stats,
    }
}

#[test]
fn a_stalled_send_worker_pays_for_the_stall_only() {
    let mut skipped = Vec::new();
    for stall in [100u32, 400] {
        let run = send_through_a_stall(stall);
        assert!(!run.packets.is_empty());
        for (p, sent) in &run.packets {
            let late = sent.saturating_duration_since(p.deadline);
            // Nothing goes out more than a frame late, however long the stall...
            assert!(late <= FRAME, "stall {stall} ms: a packet {late:?} late");
            // ...and from one frame after it, everything is on time again.
            if *sent > run.stall_end + FRAME {
                assert!(
                    late.is_zero(),
                    "stall {stall} ms: {late:?} late at {sent:?}"
                );
            }
        }
        // The RTP clock ran through the gap: timestamps follow the deadlines.
        for pair in run.packets.windows(2) {
            let (a, b) = (&pair[0].0, &pair[1].0);
            let frames = ((b.deadline - a.deadline).as_millis() / 20) as u32;
            assert_eq!(b.rtp_timestamp.wrapping_sub(a.rtp_timestamp), 960 * frames);
        }
        // The app's audio kept its pace: no backlog left to delay the call from then on.
        assert!(
            run.queued_after <= run.queued_before + 1,
            "stall {stall} ms: {} frames queued after, {} before",
            run.queued_after,
            run.queued_before
        );
        assert_eq!(run.counters.underruns.get(), 0);
        assert_eq!(run.stats.skipped_ticks.get(), 0);
        assert_eq!(
            run.stats.send_stale_skipped.get(),
            run.counters.stale_skipped.get()
        );
        skipped.push(run.counters.stale_skipped.get());
    }
    // The frames lost are the stall's own: about one per 20 ms beyond the first frame.
    assert!((3..=5).contains(&skipped[0]), "{skipped:?}");
    assert!((18..=20).contains(&skipped[1]), "{skipped:?}");
}

#[test]
fn inactive_stream_drops_app_audio() {
    let t0 = Instant::now();
    let mut rig = send_rig(t0, Arc::new(EngineStats::default()));
    rig.audio.push(vec![0u8; 640 * 5]);
    for ms in 0..100u32 {
        rig.worker.run_due(t0 + MS * ms);
    }
    assert_eq!(rig.packets.try_iter().count(), 0);
    assert_eq!(rig.counters.dropped_inactive.get(), 1);
}

#[test]
fn receive_worker_delivers_unmixed_mixed_and_speakers() {
    let t0 = Instant::now();
    let (talker, quiet) = (SourceId(10), SourceId(20));
    let mut rig = recv_rig(t0, Arc::new(EngineStats::default()), &[talker, quiet]);
    let speech = encoded_speech(150);
    let silence = encoded_silence(150);
    let mut unmixed_talker = Vec::new();
    let mut mixed = Vec::new();
    let mut dominant = Vec::new();
    let mut last_active = Vec::new();
    for k in 0..150u16 {
        let at = t0 + FRAME * u32::from(k);
        rig.worker
            .ingest(inbound(talker, k, speech[usize::from(k)].clone(), at));
        rig.worker
            .ingest(inbound(quiet, k, silence[usize::from(k)].clone(), at));
        for ms in 0..20u32 {
            rig.worker.run_due(at + MS * ms);
        }
        for ev in rig.events.try_iter() {
            match ev {
                ReceiveEvent::Unmixed(f) if f.source == talker => {
                    unmixed_talker.extend_from_slice(f.samples())
                }
                ReceiveEvent::Unmixed(f) => assert_eq!(f.source, quiet),
                ReceiveEvent::Mixed {
                    frame,
                    active_speakers,
                } => {
                    mixed.extend_from_slice(frame.samples());
                    last_active = active_speakers.as_slice().to_vec();
                }
                ReceiveEvent::DominantSpeakerChanged(s) => dominant.push(s),
            }
        }
    }
    assert!(
        unmixed_talker.len() >= 140 * 320,
        "{}",
        unmixed_talker.len()
    );
    // Every tick delivers a mix, once playout has started.
    assert!(mixed.len() >= 145 * 320);
    assert_eq!(dominant.first(), Some(&talker));
    assert!(!dominant.contains(&quiet));
    assert!(!last_active.contains(&quiet));
    // The mix of a talker and a silent participant sounds like the talker.
    let reference = &speech_16k()[..unmixed_talker.len()];
    assert!(spectral_similarity(reference, &unmixed_talker, 16_000) > 0.85);
    assert!(spectral_similarity(&unmixed_talker, &mixed, 16_000) > 0.95);
}

#[test]
fn receive_worker_conceals_loss_with_fec() {
    let t0 = Instant::now();
    let src = SourceId(7);
    let stats = Arc::new(EngineStats::default());
    let mut rig = recv_rig(t0, stats, &[src]);
    let speech = encoded_speech(100);
    let mut frames = 0;
    for k in 0..100u16 {
        let at = t0 + FRAME * u32::from(k);
        // Every tenth packet is lost.
        if k % 10 != 5 {
            rig.worker
                .ingest(inbound(src, k, speech[usize::from(k)].clone(), at));
        }
        for ms in 0..20u32 {
            rig.worker.run_due(at + MS * ms);
        }
        frames += rig
            .events
            .try_iter()
            .filter(|e| matches!(e, ReceiveEvent::Unmixed(_)))
            .count();
    }
    // Lost frames are concealed, not skipped: a frame every tick once started.
    assert!(frames >= 98, "{frames}");
    let call = &rig.worker.worker_calls()[0];
    let c = call.stream_counters(0);
    assert_eq!(c.lost.get(), 10);
    // The first loss also costs a waiting tick (the depth grows by one frame, which is what
    // lets FEC from the following packet cover the later losses).
    assert_eq!(c.concealed.get(), 11);
    assert!(c.fec_recovered.get() >= 5, "fec {}", c.fec_recovered.get());
}

#[test]
fn steady_state_send_and_receive_do_not_allocate() {
    let t0 = Instant::now();
    let stats = Arc::new(EngineStats::default());
    let mut send = send_rig(t0, stats.clone());
    send.active
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let src = SourceId(3);
    let mut recv = recv_rig(t0, stats.clone(), &[src]);
    let speech = speech_16k();
    let packets = encoded_speech(200);
    // The app's chunks are allocated by the app, before the measured window.
    let chunks: Vec<Vec<u8>> = speech
        .chunks_exact(320)
        .take(200)
        .map(|f| f.iter().flat_map(|s| s.to_le_bytes()).collect())
        .collect();
    let mut chunks = chunks.into_iter();
    let mut arrivals: Vec<Inbound> = packets
        .iter()
        .enumerate()
        .map(|(k, p)| inbound(src, k as u16, p.clone(), t0 + FRAME * k as u32))
        .collect();
    arrivals.reverse();
    let mut run_frame = |k: u32, send: &mut SendRig, recv: &mut RecvRig| {
        let at = t0 + FRAME * k;
        if let Some(c) = chunks.next() {
            send.audio.push(c);
        }
        if let Some(p) = arrivals.pop() {
            recv.worker.ingest(p);
        }
        for ms in 0..20u32 {
            send.worker.run_due(at + MS * ms);
            recv.worker.run_due(at + MS * ms);
        }
        // The transport and the app drain their queues (on their own threads in production).
        send.packets.try_iter().for_each(drop);
        recv.events.try_iter().for_each(drop);
    };
    for k in 0..60 {
        run_frame(k, &mut send, &mut recv);
    }
    let before = crate::alloc_counter::thread_allocs();
    for k in 60..180 {
        run_frame(k, &mut send, &mut recv);
    }
    let allocs = crate::alloc_counter::thread_allocs() - before;
    assert_eq!(allocs, 0, "allocations in 120 steady-state frames");
    assert!(stats.packets_sent.get() >= 170);
    assert!(stats.frames_received.get() >= 170);
}

#[test]
fn threaded_engine_loops_speech_back() {
    let engine = Engine::start(EngineConfig {
        send_threads: 1,
        receive_threads: 1,
        ..EngineConfig::default()
    })
    .unwrap();
    let call = engine
        .open_call(spec16(), StreamDirection::SendReceive)
        .unwrap();
    let send = call.send().unwrap();
    let registry = call.registry().unwrap();
    let me = registry.add(SourceId(42)).unwrap();
    assert_eq!(registry.sources(), vec![SourceId(42)]);
    assert!(registry.get(SourceId(42)).is_some());
    send.set_active(true);
    let speech = speech_16k();
    send.push_samples(&speech[..16_000]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = 0;
    while got < 45 && Instant::now() < deadline {
        if let Ok(p) = send.packets().recv_timeout(Duration::from_millis(100)) {
            me.deliver(
                crate::jitter::RtpAudio {
                    seq: p.seq,
                    timestamp: p.rtp_timestamp,
                    ssrc: 1,
                    payload: Bytes::copy_from_slice(p.payload()),
                },
                Instant::now(),
            );
            got += 1;
        }
    }
    assert_eq!(got, 45, "packets from the send thread");
    let events = call.events().unwrap();
    let mut unmixed = 0;
    while let Ok(ev) = events.recv_timeout(Duration::from_millis(500)) {
        if matches!(ev, ReceiveEvent::Unmixed(ref f) if f.source == SourceId(42)) {
            unmixed += 1;
        }
        if unmixed >= 40 {
            break;
        }
    }
    assert!(unmixed >= 40, "unmixed frames {unmixed}");
    let sent = engine.stats().send_frame.snapshot().count();
    assert!(sent >= 40, "{sent}");
    assert!(registry.remove(SourceId(42)));
    assert!(registry.is_empty());
}

#[test]
fn a_call_past_the_budget_is_refused_at_once_and_takes_nothing() {
    let cost = StreamCost {
        // 5 000 µs a call: half of each core's 20 ms is a whole number of calls.
        send_us: 4_000,
        recv_us: 1_000,
    };
    let engine = Engine::start(EngineConfig {
        send_threads: 1,
        receive_threads: 1,
        realtime_priority: None,
        stream_cost: Some(cost),
        admit_share: 0.5,
        ..EngineConfig::default()
    })
    .unwrap();
    let cap = engine.capacity();
    assert_eq!(cap.cost, cost);
    let fits = (cap.limit_us / cost.both_us()) as usize;
    assert!(fits >= 2, "{cap:?}");
    let open = || engine.open_call(spec16(), StreamDirection::SendReceive);
    let mut calls: Vec<CallMedia> = (0..fits).map(|_| open().unwrap()).collect();
    assert_eq!(engine.capacity().calls_left(), 0);
    match open() {
        Err(EngineError::OverCapacity {
            needed_us, free_us, ..
        }) => {
            assert_eq!(needed_us, 5_000);
            assert_eq!(free_us, 0);
        }
        other => panic!("expected OverCapacity, got {:?}", other.map(|_| ())),
    }
    assert_eq!(engine.open_calls(), fits);

    // Participants joining an admitted call are taken past the budget; their first stream was
    // reserved with the call.
    let registry = calls[0].registry().unwrap().clone();
    let used = engine.capacity().used_us;
    for s in 1..=3 {
        registry.add(SourceId(s)).unwrap();
    }
    assert_eq!(engine.capacity().used_us, used + 2_000);
    assert!(registry.remove(SourceId(2)));
    assert_eq!(engine.capacity().used_us, used + 1_000);

    // A call that ends gives its room back, streams and all.
    calls.remove(1);
    assert!(open().is_err(), "the extra stream still takes room");
    drop(registry);
    calls.remove(0);
    calls.push(open().unwrap());
    drop(calls);
    assert_eq!(engine.capacity().used_us, 0);
}

/// One engine with a send and a receive worker driven by injected time, and one call on it
/// whose outgoing stream is active and whose participant 7 talks: what the phase tests echo
/// through.
struct EchoRig {
    t0: Instant,
    engine: Engine,
    workers: Workers,
    call: CallMedia,
    participant: ReceiveStream,
    speech: Vec<Bytes>,
}

impl EchoRig {
    fn new(frames: usize) -> EchoRig {
        let t0 = Instant::now();
        let config = EngineConfig {
            send_threads: 1,
            receive_threads: 1,
            realtime_priority: None,
            stream_cost: Some(StreamCost {
                send_us: 300,
                recv_us: 60,
            }),
            ..EngineConfig::default()
        };
        let (engine, workers) = Engine::build(config, t0).unwrap();
        let call = engine
            .open_call(spec16(), StreamDirection::SendReceive)
            .unwrap();
        call.send().unwrap().set_active(true);
        let participant = call.registry().unwrap().add(SourceId(7)).unwrap();
        EchoRig {
            t0,
            engine,
            workers,
            call,
            participant,
            speech: encoded_speech(frames),
        }
    }

    fn send(&self) -> &SendStream {
        self.call.send().unwrap()
    }

    fn events(&self) -> &Receiver<ReceiveEvent> {
        self.call.events().unwrap()
    }

    /// The participant's `k`-th frame of speech, arriving at `arrival`.
    fn deliver(&self, k: u32, arrival: Instant) {
        self.participant.deliver(
            crate::jitter::RtpAudio {
                seq: k as u16,
                timestamp: k * 960,
                ssrc: 1,
                payload: self.speech[k as usize].clone(),
            },
            arrival,
        );
    }
}

#[test]
fn a_calls_ticks_move_to_just_after_its_packets_and_an_echo_leaves_in_the_same_period() {
    let mut rig = EchoRig::new(150);
    let t0 = rig.t0;
    let first_phase = rig.call.receive_phase().unwrap();
    // The participant's packets arrive 9.4 ms into each cycle of the engine's clock.
    let arrival = |k: u32| t0 + FRAME * k + Duration::from_micros(9_400);
    let mut sent_phases = Vec::new();
    for ms in 0..150 * 20u32 {
        let now = t0 + MS * ms;
        if ms % 20 == 9 {
            let k = ms / 20;
            rig.deliver(k, arrival(k));
        }
        rig.workers.run_until(now);
        // The app echoes each frame the moment it gets it (the pump's job in the bot).
        while let Ok(ev) = rig.events().try_recv() {
            if let ReceiveEvent::Unmixed(f) = ev {
                rig.send().push_samples(f.samples());
            }
        }
        while let Ok(p) = rig.send().packets().try_recv() {
            sent_phases.push((p.deadline - t0).as_millis() % 20);
        }
    }
    // The receive tick moved from where the control plane put it to 9.4 ms + 3 slots (the
    // phase says when the worker starts the tick: a millisecond earlier).
    let phase = rig.call.receive_phase().unwrap();
    assert_ne!(phase, first_phase);
    assert_eq!((phase + MS - t0).as_millis() % 20, 12);
    // Most packets waited 2.6 ms in the jitter buffer: arriving at 9.4 ms, each was played
    // by the tick due at 12 ms, where the fixed slot 0 held them 10.6 ms. (The histogram's
    // quarter-octave bucket of 2.6 ms ends at 3.07 ms.)
    let hold = rig.engine.stats().jitter_hold.snapshot();
    assert!(hold.count() >= 140, "{}", hold.count());
    assert!(hold.quantile_us(0.5) < 4_000, "{}", hold.quantile_us(0.5));
    // The send tick followed, REPLY_LEAD after the receive tick, and every echo of the last
    // second went out at that tick: 14 ms into the cycle, 4.6 ms after its packet arrived.
    assert_eq!(REPLY_LEAD, Duration::from_millis(2));
    let last: Vec<u128> = sent_phases[sent_phases.len() - 50..].to_vec();
    assert!(last.iter().all(|&p| p == 14), "{last:?}");
    assert_eq!(rig.engine.stats().send_stale_skipped.get(), 0);
}

#[test]
fn an_echo_of_the_mix_leaves_at_one_phase_from_its_first_packet() {
    // The bot's echo answers every mixed frame. The participant starts talking 300 ms after
    // the call opened, its packets 9.4 ms into each cycle: had the ticks run (and the echo
    // sent) at the control plane's slot until the phase was learnt, the listener would hear
    // the send tick step once the call moved.
    let mut rig = EchoRig::new(100);
    let t0 = rig.t0;
    const FIRST: u32 = 15;
    let mut mixed_before_first = 0;
    let mut sent_phases = Vec::new();
    for ms in 0..(FIRST + 100) * 20 {
        let now = t0 + MS * ms;
        if ms % 20 == 9 && ms / 20 >= FIRST {
            let k = ms / 20 - FIRST;
            rig.deliver(k, t0 + FRAME * (FIRST + k) + Duration::from_micros(9_400));
        }
        rig.workers.run_until(now);
        while let Ok(ev) = rig.events().try_recv() {
            if let ReceiveEvent::Mixed { frame, .. } = ev {
                if ms < FIRST * 20 + 9 {
                    mixed_before_first += 1;
                }
                rig.send().push_samples(frame.samples());
            }
        }
        while let Ok(p) = rig.send().packets().try_recv() {
            sent_phases.push((p.deadline - t0).as_millis() % 20);
        }
    }
    assert_eq!(
        mixed_before_first, 0,
        "nothing to mix before the first packet"
    );
    // One echo per received frame (the last may still be on its way), every one at the
    // phase the first packet set: 9.4 ms + 3 slots for the receive tick, REPLY_LEAD after.
    assert!(sent_phases.len() >= 98, "{}", sent_phases.len());
    assert!(sent_phases.iter().all(|&p| p == 14), "{sent_phases:?}");
}

#[test]
fn a_reply_up_to_nine_ms_late_goes_out_late_in_its_own_period() {
    // An echo whose task wakes late now and then: the send tick waits for the reply rather
    // than leaving a gap (which a listener fills with concealment, then the app runs a frame
    // behind). Replies to frame 40 come 7 ms after the tick, to frame 70 12 ms after.
    let mut rig = EchoRig::new(100);
    let t0 = rig.t0;
    let mut held: Option<(u32, AudioFrame)> = None;
    let mut replies = 0u32;
    let mut sent = Vec::new();
    for ms in 0..100 * 20u32 {
        let now = t0 + MS * ms;
        if ms % 20 == 9 {
            let k = ms / 20;
            rig.deliver(k, t0 + FRAME * k + Duration::from_micros(9_400));
        }
        rig.workers.run_until(now);
        if let Some((_, frame)) = held.take_if(|(at, _)| *at <= ms) {
            rig.send().push_samples(frame.samples());
        }
        while let Ok(ev) = rig.events().try_recv() {
            if let ReceiveEvent::Mixed { frame, .. } = ev {
                // Handed over at 12 ms into the cycle; the worker sees a push at the next
                // millisecond, the send tick is at 14.
                let delay = match replies {
                    40 => Some(7 + 1),
                    70 => Some(12 + 1),
                    _ => None,
                };
                replies += 1;
                match delay {
                    Some(d) => held = Some((ms + d, frame)),
                    None => rig.send().push_samples(frame.samples()),
                }
            }
        }
        while let Ok(p) = rig.send().packets().try_recv() {
            sent.push((p.rtp_timestamp, (p.deadline - t0).as_millis() % 20));
        }
    }
    let late: Vec<u128> = sent.iter().map(|s| s.1).filter(|&p| p != 14).collect();
    // The 7 ms late reply left at 14 + 7 ms, in its own period; the 12 ms one missed it: a
    // gap, one frame of RTP time with no packet.
    assert_eq!(late, vec![1], "{sent:?}");
    let gaps = sent
        .windows(2)
        .filter(|w| w[1].0.wrapping_sub(w[0].0) != 960)
        .count();
    assert_eq!(gaps, 1, "{sent:?}");
}

#[test]
fn a_send_tick_moved_earlier_mid_cycle_still_sends_that_cycle() {
    // The participant's packets come 9.4 ms into each cycle, then from frame 100 on 5 ms
    // earlier. Once the receive tick follows (two seconds of transit times later), the send
    // tick moves 5 ms earlier too; the send worker learns of it at the receive tick, past the
    // new send slot of that cycle. Serving the call only when the sub-tick equals its slot
    // skipped that cycle: a 35 ms hole on the wire and the echo a frame behind from then on.
    let mut rig = EchoRig::new(260);
    let t0 = rig.t0;
    let arrival = |k: u32| {
        let phase = if k < 100 { 9_400 } else { 4_400 };
        t0 + FRAME * k + Duration::from_micros(phase)
    };
    let mut sent = Vec::new();
    let mut k = 0u32;
    for ms in 0..260 * 20u32 {
        let now = t0 + MS * ms;
        while k < 260 && arrival(k) <= now {
            rig.deliver(k, arrival(k));
            k += 1;
        }
        rig.workers.run_until(now);
        while let Ok(ev) = rig.events().try_recv() {
            if let ReceiveEvent::Unmixed(f) = ev {
                rig.send().push_samples(f.samples());
            }
        }
        while let Ok(p) = rig.send().packets().try_recv() {
            sent.push((p.deadline - t0).as_micros());
        }
    }
    let phases: Vec<u128> = sent.iter().map(|d| d / 1000 % 20).collect();
    // The send tick did move: 14 ms into the cycle before, 9 after.
    assert_eq!(phases.first(), Some(&14), "{phases:?}");
    assert_eq!(phases.last(), Some(&9), "{phases:?}");
    // Every cycle sent its frame: no two packets more than a frame apart.
    let widest = sent.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(widest <= 20_000, "a {widest} µs hole: {phases:?}");
    // And the echo kept its delay: every frame played was answered within its own cycle,
    // none waits in the player.
    assert_eq!(rig.send().counters().queued_frames.get(), 0);
}

#[test]
fn shared_threads_keep_a_calls_two_directions_on_one_thread() {
    let config = |shared| EngineConfig {
        send_threads: 2,
        receive_threads: 2,
        shared_threads: shared,
        realtime_priority: None,
        stream_cost: Some(StreamCost {
            send_us: 300,
            recv_us: 60,
        }),
        ..EngineConfig::default()
    };
    let engine = Engine::start(config(true)).unwrap();
    assert_eq!(engine.threads.len(), 2, "one thread per worker pair");
    // A receive-only call first: the send loads then no longer mirror the receive loads, so
    // a send side picked on its own would land on the other thread.
    let listener = engine
        .open_call(spec16(), StreamDirection::ReceiveOnly)
        .unwrap();
    let calls: Vec<CallMedia> = (0..6)
        .map(|_| {
            engine
                .open_call(spec16(), StreamDirection::SendReceive)
                .unwrap()
        })
        .collect();
    let workers: Vec<(usize, usize)> = calls
        .iter()
        .map(|c| {
            let shared = &c.send().unwrap()._call;
            (shared.send_worker.unwrap().0, shared.recv_worker.unwrap().0)
        })
        .collect();
    assert!(workers.iter().all(|(s, r)| s == r), "{workers:?}");
    // And the calls are spread over both threads, the listener's counted.
    assert_eq!(
        workers.iter().filter(|(s, _)| *s == 0).count(),
        3,
        "{workers:?}"
    );
    drop((listener, calls));
    drop(engine);
    // Separate threads per direction: four of them.
    let split = Engine::start(config(false)).unwrap();
    assert_eq!(split.threads.len(), 4);
}
