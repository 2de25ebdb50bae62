//! The full per-frame send and receive paths of the engine (queues, frame player, jitter
//! buffer, mixer and all) against the bare libopus + rubato calls they wrap.
//!
//! `cargo bench --bench frame_path` — prints
//! `frame_path overhead_ratio=<x.xx> send_us=<x> recv_us=<x> bare_send_us=<x> bare_recv_us=<x>`.

#![allow(clippy::print_stdout)] // The summary line is this bench's output.

#[path = "common_audio/mod.rs"]
mod common_audio;

use std::cell::Cell;
use std::hint::black_box;
use std::time::Instant;

use audio_pipeline::_internal_test_exports::bench::{RecvHarness, SendHarness};
use audio_pipeline::{EngineConfig, PcmSpec, RtpAudio};
use common_audio::{BareRecv, BareSend, speech_chunks, speech_frames, speech_packets};
use criterion::{BatchSize, Criterion};

struct Paths {
    send: SendHarness,
    recv: RecvHarness,
    bare_send: BareSend,
    bare_recv: BareRecv,
    chunks: Vec<Vec<u8>>,
    frames: Vec<Vec<i16>>,
    packets: Vec<audio_pipeline::Bytes>,
    seq: u16,
    i: usize,
}

impl Paths {
    fn new() -> Paths {
        let spec = PcmSpec::new(16_000, 1).unwrap();
        let config = EngineConfig::default();
        let mut p = Paths {
            send: SendHarness::new(spec, &config).unwrap(),
            recv: RecvHarness::new(spec, &config).unwrap(),
            bare_send: BareSend::new(),
            bare_recv: BareRecv::new(),
            chunks: speech_chunks(),
            frames: speech_frames(),
            packets: speech_packets(),
            seq: 0,
            i: 0,
        };
        // Fill the player's pre-buffer and start the jitter buffer.
        for _ in 0..3 {
            p.send.push(p.chunks[0].clone());
            p.send.run_frame();
            p.recv_full(0);
        }
        p
    }

    fn next(&mut self) -> usize {
        self.i = (self.i + 1) % self.frames.len();
        self.i
    }

    fn rtp(&mut self, k: usize) -> RtpAudio {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        RtpAudio {
            seq,
            timestamp: u32::from(seq).wrapping_mul(960),
            ssrc: 1,
            payload: self.packets[k].clone(),
        }
    }

    fn recv_full(&mut self, k: usize) -> bool {
        let p = self.rtp(k);
        self.recv.deliver(p);
        self.recv.run_frame().is_some()
    }
}

/// µs per frame of each path. The four paths take turns frame by frame on the same speech,
/// so background load hits them alike; each path's figure is the mean of its fastest 80 % of
/// frames, which drops preemptions by other processes but keeps the speech/pause mix.
fn summary(p: &mut Paths) -> [f64; 4] {
    const FRAMES: usize = 3000;
    let mut samples: [Vec<f64>; 4] = Default::default();
    for _ in 0..FRAMES {
        let k = p.next();
        // The chunk and the RTP header are the app's and the transport's allocations.
        let chunk = p.chunks[k].clone();
        let rtp = p.rtp(k);
        let t = Instant::now();
        p.send.push(chunk);
        black_box(p.send.run_frame());
        samples[0].push(t.elapsed().as_secs_f64() * 1e6);

        let t = Instant::now();
        black_box(p.bare_send.run(&p.frames[k]));
        samples[2].push(t.elapsed().as_secs_f64() * 1e6);

        let t = Instant::now();
        p.recv.deliver(rtp);
        black_box(p.recv.run_frame());
        samples[1].push(t.elapsed().as_secs_f64() * 1e6);

        let t = Instant::now();
        black_box(p.bare_recv.run(&p.packets[k]));
        samples[3].push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.map(|mut v| {
        v.sort_by(f64::total_cmp);
        let keep = v.len() * 4 / 5;
        v[..keep].iter().sum::<f64>() / keep as f64
    })
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut p = Paths::new();
    {
        let mut g = c.benchmark_group("frame_path");
        let Paths {
            send,
            recv,
            bare_send,
            bare_recv,
            chunks,
            frames,
            packets,
            seq,
            ..
        } = &mut p;
        let n = frames.len();
        let cursor = Cell::new(0usize);
        let next = || {
            cursor.set((cursor.get() + 1) % n);
            cursor.get()
        };
        g.bench_function("full_send", |b| {
            b.iter_batched(
                || chunks[next()].clone(),
                |chunk| {
                    send.push(chunk);
                    send.run_frame()
                },
                BatchSize::SmallInput,
            )
        });
        let seq_cell = Cell::new(*seq);
        g.bench_function("full_recv", |b| {
            b.iter_batched(
                || {
                    let s = seq_cell.get();
                    seq_cell.set(s.wrapping_add(1));
                    RtpAudio {
                        seq: s,
                        timestamp: u32::from(s).wrapping_mul(960),
                        ssrc: 1,
                        payload: packets[next()].clone(),
                    }
                },
                |r| {
                    recv.deliver(r);
                    recv.run_frame()
                },
                BatchSize::SmallInput,
            )
        });
        *seq = seq_cell.get();
        g.bench_function("bare_send", |b| {
            b.iter(|| bare_send.run(black_box(&frames[next()])))
        });
        g.bench_function("bare_recv", |b| {
            b.iter(|| bare_recv.run(black_box(&packets[next()])))
        });
        g.finish();
    }
    let [send, recv, bare_send, bare_recv] = summary(&mut p);
    if std::env::var_os("FRAME_PATH_STAGES").is_some() {
        let st = p.recv.stats();
        println!(
            "recv stages: decode={:.1} resample_down={:.1} mix={:.1} whole={:.1}",
            st.stage_decode.snapshot().mean_us(),
            st.stage_resample_down.snapshot().mean_us(),
            st.stage_mix.snapshot().mean_us(),
            st.recv_frame.snapshot().mean_us()
        );
    }
    let ratio = (send + recv) / (bare_send + bare_recv);
    println!(
        "frame_path overhead_ratio={ratio:.2} send_us={send:.1} recv_us={recv:.1} bare_send_us={bare_send:.1} bare_recv_us={bare_recv:.1}"
    );
    c.final_summary();
}
