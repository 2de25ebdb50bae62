// Shared by the frame_path and engine_scale benches: speech input and the "bare" codec path
// (the same libopus and rubato calls the engine makes, with the same settings and
// preallocated buffers, and nothing around them).

#![allow(dead_code)] // Each bench uses a different part of this file.

use audio_pipeline::codec::{MAX_ENCODED_BYTES, OpusConfig};
use audio_pipeline::resample::ResamplerKind;
use bytes::{Bytes, BytesMut};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, Fft, FixedAsync, FixedSync, PolynomialDegree, Resampler, WindowFunction};
use test_kit::fixtures::speech_16k;

/// Speech as 20 ms frames at 16 kHz.
pub(crate) fn speech_frames() -> Vec<Vec<i16>> {
    speech_16k()
        .chunks_exact(320)
        .map(<[i16]>::to_vec)
        .collect()
}

/// The same speech frames as s16le byte chunks, as an app would push them.
pub(crate) fn speech_chunks() -> Vec<Vec<u8>> {
    speech_frames()
        .iter()
        .map(|f| f.iter().flat_map(|s| s.to_le_bytes()).collect())
        .collect()
}

/// rubato, built exactly as `audio_pipeline::resample::FrameResampler` builds it.
pub(crate) fn rubato_for(
    kind: ResamplerKind,
    rate_in: u32,
    rate_out: u32,
) -> Box<dyn Resampler<f32>> {
    let chunk = (rate_in / 50) as usize;
    let ratio = f64::from(rate_out) / f64::from(rate_in);
    match kind {
        ResamplerKind::PolyCubic => Box::new(
            Async::<f32>::new_poly(
                ratio,
                1.0,
                PolynomialDegree::Cubic,
                chunk,
                1,
                FixedAsync::Input,
            )
            .unwrap(),
        ),
        ResamplerKind::Sinc64 => {
            let p = audio_pipeline::resample::sinc_parameters(rate_in, rate_out);
            Box::new(Async::<f32>::new_sinc(ratio, 1.0, &p, chunk, 1, FixedAsync::Input).unwrap())
        }
        ResamplerKind::Fft => Box::new(
            Fft::<f32>::new_custom(
                rate_in as usize,
                rate_out as usize,
                chunk,
                1,
                1,
                WindowFunction::BlackmanHarris2,
                FixedSync::Input,
            )
            .unwrap(),
        ),
    }
}

fn opus_encoder(cfg: &OpusConfig) -> opus::Encoder {
    let mut e = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    e.set_bitrate(opus::Bitrate::Bits(cfg.bitrate)).unwrap();
    e.set_complexity(cfg.complexity).unwrap();
    e.set_inband_fec(cfg.inband_fec).unwrap();
    e.set_packet_loss_perc(cfg.expected_loss_pct).unwrap();
    e.set_dtx(cfg.dtx).unwrap();
    e
}

fn run_rubato(r: &mut dyn Resampler<f32>, input: &[f32], out: &mut [f32]) -> usize {
    let a = InterleavedSlice::new(input, 1, input.len()).unwrap();
    let n = out.len();
    let mut b = InterleavedSlice::new_mut(out, 1, n).unwrap();
    r.process_into_buffer(&a, &mut b, None).unwrap().1
}

/// Bare send: 16 kHz frame → rubato → libopus encode.
pub(crate) struct BareSend {
    up: Box<dyn Resampler<f32>>,
    enc: opus::Encoder,
    fin: Vec<f32>,
    fout: Vec<f32>,
    pcm48: Vec<i16>,
    pkt: [u8; MAX_ENCODED_BYTES],
}

impl BareSend {
    pub(crate) fn new() -> BareSend {
        let up = rubato_for(ResamplerKind::default(), 16_000, 48_000);
        let max = up.output_frames_max();
        BareSend {
            up,
            enc: opus_encoder(&OpusConfig::default()),
            fin: vec![0.0; 320],
            fout: vec![0.0; max],
            pcm48: vec![0; 960],
            pkt: [0; MAX_ENCODED_BYTES],
        }
    }

    pub(crate) fn run(&mut self, frame: &[i16]) -> usize {
        for (d, &s) in self.fin.iter_mut().zip(frame) {
            *d = f32::from(s) / 32768.0;
        }
        let n = run_rubato(self.up.as_mut(), &self.fin, &mut self.fout).min(960);
        for (d, &s) in self.pcm48.iter_mut().zip(&self.fout[..n]) {
            *d = (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        }
        self.enc.encode(&self.pcm48, &mut self.pkt).unwrap()
    }
}

/// Bare receive: libopus decode → rubato → 16 kHz frame.
pub(crate) struct BareRecv {
    dec: opus::Decoder,
    down: Box<dyn Resampler<f32>>,
    pcm48: Vec<i16>,
    fin: Vec<f32>,
    fout: Vec<f32>,
    out: Vec<i16>,
}

impl BareRecv {
    pub(crate) fn new() -> BareRecv {
        let down = rubato_for(ResamplerKind::default(), 48_000, 16_000);
        let max = down.output_frames_max();
        BareRecv {
            dec: opus::Decoder::new(48_000, opus::Channels::Mono).unwrap(),
            down,
            pcm48: vec![0; 960],
            fin: vec![0.0; 960],
            fout: vec![0.0; max],
            out: vec![0; 320],
        }
    }

    pub(crate) fn run(&mut self, packet: &[u8]) -> i16 {
        self.dec.decode(packet, &mut self.pcm48, false).unwrap();
        for (d, &s) in self.fin.iter_mut().zip(&self.pcm48) {
            *d = f32::from(s) / 32768.0;
        }
        let n = run_rubato(self.down.as_mut(), &self.fin, &mut self.fout).min(320);
        for (d, &s) in self.out.iter_mut().zip(&self.fout[..n]) {
            *d = (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        }
        self.out[0]
    }
}

/// Speech encoded with the default settings, as frozen `Bytes` (what a transport hands over).
pub(crate) fn speech_packets() -> Vec<Bytes> {
    let mut bare = BareSend::new();
    speech_frames()
        .iter()
        .map(|f| {
            let n = bare.run(f);
            BytesMut::from(&bare.pkt[..n]).freeze()
        })
        .collect()
}
