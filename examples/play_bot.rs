//! A playing bot: calls a simulated user and plays a WAV file (any rate, any channel count) or a
//! generated tone into the call through the frame player, a little at a time: it pushes half a
//! second when the player says it is running low, rather than everything at once. At the end
//! it prints what it played and what the simulated user heard.
//!
//! `cargo run --example play_bot -- --tone 440 --duration 5`
//! `cargo run --example play_bot -- --wav music.wav --sim-record heard/`
#![allow(clippy::print_stdout)] // an example reports to its terminal

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use mediabot::bot::{Bot, CallEvent, CallTarget, LocalSim, LocalSimOptions, PcmFormat};
use mediabot::crates::audio_pipeline::{EngineConfig, PcmSpec};
use mediabot::crates::graph_sim::media::MediaOptions;
use mediabot::crates::graph_sim::scenario::{Scenario, SimUser, Voice};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

type Error = Box<dyn std::error::Error>;

/// Plays a WAV file or a tone into a call with a simulated user.
#[derive(Parser)]
struct Args {
    /// The WAV file to play (8 to 32-bit integer or 32-bit float PCM, any rate and channels).
    #[arg(long, conflicts_with = "tone")]
    wav: Option<PathBuf>,
    /// Frequency of a tone to play instead, in Hz.
    #[arg(long, default_value_t = 440.0)]
    tone: f32,
    /// Seconds to play at most, up to 600 (the clip is held in memory; a shorter WAV ends
    /// sooner).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=600))]
    duration: u64,
    /// Folder where the sim keeps what the simulated user heard (`<call id>.wav`).
    #[arg(long)]
    sim_record: Option<PathBuf>,
}

/// Audio to play, already in a layout the call accepts.
struct Clip {
    spec: PcmSpec,
    samples: Vec<i16>,
    what: String,
}

/// Each top-up pushes this many 20 ms frames (half a second).
const TOP_UP_FRAMES: usize = 25;

impl Clip {
    /// A sine tone at a third of full scale, in the call's default layout.
    fn tone(hz: f32, seconds: u64) -> Result<Clip, Error> {
        if !(20.0..=7_000.0).contains(&hz) {
            return Err("--tone must be within 20..=7000 Hz".into());
        }
        let spec = PcmFormat::Pcm16K.spec();
        let rate = spec.sample_rate as f32;
        let count = spec.sample_rate as usize * seconds as usize;
        let samples = (0..count)
            .map(|n| ((std::f32::consts::TAU * hz * n as f32 / rate).sin() * 10_000.0) as i16)
            .collect();
        Ok(Clip {
            spec,
            samples,
            what: format!("tone {hz} Hz"),
        })
    }

    /// Reads a WAV file into 16-bit samples the engine can take: up to two channels (more
    /// are mixed down to mono) at one of the engine's rates (others are resampled to 48 kHz).
    fn wav(path: &PathBuf, seconds: u64) -> Result<Clip, Error> {
        let mut reader = hound::WavReader::open(path)?;
        let spec = reader.spec();
        let channels = usize::from(spec.channels.max(1));
        let limit = spec.sample_rate as usize * channels * seconds as usize;
        // Every sample as a float in -1..1, whatever the file's width.
        let full_scale = 2f32.powi(i32::from(spec.bits_per_sample.clamp(1, 32)) - 1);
        let read: Result<Vec<f32>, hound::Error> = match spec.sample_format {
            hound::SampleFormat::Float => reader.samples::<f32>().take(limit).collect(),
            hound::SampleFormat::Int => reader
                .samples::<i32>()
                .take(limit)
                .map(|s| s.map(|v| v as f32 / full_scale))
                .collect(),
        };
        let mut samples = read?;
        let mut out_channels = spec.channels;
        if channels > 2 {
            samples = samples
                .chunks(channels)
                .map(|c| c.iter().sum::<f32>() / c.len() as f32)
                .collect();
            out_channels = 1;
        }
        let what = format!(
            "{} ({} Hz, {} channels, {}-bit)",
            path.display(),
            spec.sample_rate,
            spec.channels,
            spec.bits_per_sample
        );
        // The engine converts its own rates to Opus's 48 kHz; any other rate is converted
        // here, once for the whole clip, with rubato (the resampler the engine uses).
        let rate = if PcmSpec::new(spec.sample_rate, out_channels).is_some() {
            spec.sample_rate
        } else {
            let ch = usize::from(out_channels);
            let frames = samples.len() / ch;
            let mut resampler = Fft::<f32>::new(
                spec.sample_rate as usize,
                48_000,
                1024,
                ch,
                FixedSync::Input,
            )?;
            let input = InterleavedSlice::new(&samples, ch, frames)?;
            samples = resampler.process_all(&input, frames, None)?.take_data();
            48_000
        };
        Ok(Clip {
            spec: PcmSpec::new(rate, out_channels).ok_or("not a layout the engine takes")?,
            samples: samples
                .iter()
                .map(|&v| (v.clamp(-1.0, 1.0) * f32::from(i16::MAX)) as i16)
                .collect(),
            what,
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let mut clip = match &args.wav {
        Some(path) => Clip::wav(path, args.duration)?,
        None => Clip::tone(args.tone, args.duration)?,
    };
    // The player sends whole 20 ms frames only: pad the clip's tail with silence.
    let frame = clip.spec.samples_per_frame();
    clip.samples
        .resize(clip.samples.len().next_multiple_of(frame), 0);

    let scenario = Scenario {
        users: vec![SimUser::new("Alice", Voice::Speech)],
        ..Scenario::default()
    };
    let mut media = MediaOptions::for_scenario(&scenario);
    media.record_dir = args.sim_record.clone();
    let sim = LocalSim::start_with(
        scenario,
        LocalSimOptions {
            media: Some(media),
            ..LocalSimOptions::default()
        },
    )
    .await?;
    let mut engine = EngineConfig::default();
    // "Low on frames" at 200 ms left instead of 60 ms: room for this task to wake up late on a
    // busy machine before the player runs dry.
    engine.player.low_water_frames = 10;
    let bot = Bot::builder(sim.target())
        .audio_format(PcmFormat::Other(clip.spec))
        .engine(engine)
        .build()
        .await?;
    let alice = sim.users()[0].clone();
    let mut call = bot
        .place_call(CallTarget::user(alice.id, Some(alice.name)))
        .await?;
    let out = call.audio_sender();
    // This bot only talks: what it receives is not read.
    drop(call.audio_receiver());

    let chunk = TOP_UP_FRAMES * frame;
    let mut rest = clip.samples.chunks(chunk);
    let (mut pushes, mut pushed) = (0usize, 0usize);
    let mut top_up = || match rest.next() {
        Some(part) => {
            out.push_samples(part);
            pushes += 1;
            pushed += part.len();
            true
        }
        None => false,
    };
    // A bound on the whole call, in case the media never connects.
    let give_up = tokio::time::sleep(Duration::from_secs(args.duration + 10));
    tokio::pin!(give_up);
    loop {
        tokio::select! {
            event = call.next_event() => match event {
                // The first push once media flows (until then pushed audio would only wait),
                // then one more each time the player runs low, until the clip is out.
                Some(CallEvent::MediaConnected | CallEvent::LowOnFrames { .. }) => {
                    if !top_up() {
                        break;
                    }
                }
                Some(CallEvent::Terminated(_)) | None => break,
                Some(_) => {}
            },
            () = &mut give_up => break,
        }
    }
    // Let the player send what is still queued.
    while out.queued_frames() > 0 && !call.is_ended() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let frames = pushed / frame;
    println!(
        "played {}: {frames} frames ({:.2} s) in {pushes} pushes",
        clip.what,
        frames as f64 / 50.0
    );
    // Hangs up (if the call is still up) and waits until the call is released.
    bot.shutdown().await;
    // The sim's media side reports what the simulated user received from the bot.
    for c in sim.finish().await?.calls {
        let recording = c.recording.map(|p| p.display().to_string());
        println!(
            "sim heard: {:.2} s, {} packets, {} concealed; recording={}",
            c.bot.seconds,
            c.bot.packets,
            c.bot.concealed,
            recording.unwrap_or_else(|| "none".into())
        );
    }
    Ok(())
}
