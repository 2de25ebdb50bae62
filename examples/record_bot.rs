//! A recording bot: calls graph-sim's simulated users, tells Graph it is recording, then writes
//! one WAV per participant (their own, unmixed audio) and one of the mix. It stops after
//! `--duration` seconds, when the service ends the call, or on SIGTERM, and in every case
//! finishes the WAV headers and prints one summary line per file.
//!
//! `cargo run --example record_bot -- --duration 10 --out recordings`
#![allow(clippy::print_stdout)] // an example reports to its terminal

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use mediabot::bot::{
    Bot, CallEvent, CallTarget, LocalSim, LocalSimOptions, ReceivedAudio, RecordingStatus,
    SimUserInfo,
};
use mediabot::crates::audio_pipeline::{AudioFrame, PcmSpec};
use mediabot::crates::graph_signaling::models::{CallState, Participant};
use mediabot::crates::graph_sim::media::MediaOptions;
use mediabot::crates::graph_sim::scenario::Scenario;
use mediabot::crates::media_session::SourceId;
use tokio::signal::unix::{SignalKind, signal};

type Error = Box<dyn std::error::Error>;

/// Records a call with graph-sim's simulated users into WAV files.
#[derive(Parser)]
struct Args {
    /// Seconds to record (the call may end sooner).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Folder for the WAV files; created if missing.
    #[arg(long, default_value = "recordings")]
    out: PathBuf,
    /// A graph-sim scenario file (default: two users, one talking, one playing a tone).
    #[arg(long)]
    scenario: Option<PathBuf>,
}

/// One WAV being written, with what the summary line reports.
struct Track {
    path: PathBuf,
    writer: hound::WavWriter<BufWriter<File>>,
    received: u64,
    written: u64,
}

/// Display names by the source id their audio carries, learnt from the roster.
#[derive(Default)]
struct Names(HashMap<SourceId, String>);

impl Names {
    fn note(&mut self, p: &Participant) {
        let identity = p.info.get().and_then(|i| i.identity.get());
        let name = identity
            .and_then(|s| s.primary())
            .and_then(|(_, who)| who.display_name.as_deref().or(who.id.as_deref()))
            .unwrap_or("unknown");
        for source in p.audio_sources() {
            self.0.insert(source, name.to_owned());
        }
    }
}

/// Every file of the recording: one per participant, keyed by the source id their audio
/// carries, plus the mix. The engine hands over a participant's frame only on ticks they had
/// audio, so their file holds those frames back to back; the mix has one frame every 20 ms and
/// is the call's timeline.
struct Recording {
    out: PathBuf,
    spec: hound::WavSpec,
    samples_per_frame: usize,
    tracks: BTreeMap<SourceId, Track>,
    mix: Track,
}

impl Recording {
    fn create(out: PathBuf, pcm: PcmSpec) -> Result<Recording, Error> {
        std::fs::create_dir_all(&out)?;
        let spec = hound::WavSpec {
            channels: pcm.channels,
            sample_rate: pcm.sample_rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mix = Track::create(out.join("mix.wav"), spec)?;
        Ok(Recording {
            out,
            spec,
            samples_per_frame: pcm.samples_per_frame(),
            tracks: BTreeMap::new(),
            mix,
        })
    }

    /// Appends a frame to its participant's file (created on their first frame, named after
    /// them) or to the mix.
    fn store(&mut self, names: &Names, audio: ReceivedAudio) -> Result<(), Error> {
        let (track, frame) = match audio {
            ReceivedAudio::Mixed { frame, .. } => (&mut self.mix, frame),
            ReceivedAudio::Unmixed(frame) => {
                let track = match self.tracks.entry(frame.source) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        let name = names.0.get(&frame.source).map_or("unknown", String::as_str);
                        let file = format!("{}-{}.wav", frame.source, file_safe(name));
                        e.insert(Track::create(self.out.join(file), self.spec)?)
                    }
                };
                (track, frame)
            }
        };
        track.write(&frame)
    }

    /// Finishes every file (a WAV header holds the data length, known only now) and prints a
    /// summary line per file.
    fn finish(self) -> Result<(), Error> {
        let per_frame = self.samples_per_frame;
        for track in self.tracks.into_values().chain([self.mix]) {
            println!(
                "summary frames_received={} frames_written={} samples_per_frame={per_frame} file={}",
                track.received,
                track.written,
                track.path.display()
            );
            track.writer.finalize()?;
        }
        Ok(())
    }
}

impl Track {
    fn create(path: PathBuf, spec: hound::WavSpec) -> Result<Track, Error> {
        let writer = hound::WavWriter::create(&path, spec)?;
        Ok(Track {
            path,
            writer,
            received: 0,
            written: 0,
        })
    }

    fn write(&mut self, frame: &AudioFrame) -> Result<(), Error> {
        self.received += 1;
        let mut samples = self.writer.get_i16_writer(frame.samples().len() as u32);
        for &s in frame.samples() {
            samples.write_sample(s);
        }
        samples.flush()?;
        self.written += 1;
        Ok(())
    }
}

/// Participant names come from the roster (untrusted): keep letters, digits, `-` and `_`.
fn file_safe(name: &str) -> String {
    name.chars()
        .take(40)
        .map(|c| {
            if c.is_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn call_target(users: &[SimUserInfo]) -> CallTarget {
    let who: Vec<(String, Option<String>)> = users
        .iter()
        .take(5) // a group call holds at most five invitees
        .map(|u| (u.id.clone(), Some(u.name.clone())))
        .collect();
    match who.as_slice() {
        [(id, name)] => CallTarget::user(id, name.clone()),
        _ => CallTarget::Group {
            users: who,
            subject: Some("Recorded call".into()),
        },
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let scenario = match &args.scenario {
        Some(path) => Scenario::parse(&std::fs::read_to_string(path)?)?,
        None => Scenario::two_users(),
    };
    let mut media = MediaOptions::for_scenario(&scenario);
    // A scenario's WAV voices are found next to its file.
    media.voice_dir = args
        .scenario
        .as_ref()
        .and_then(|p| p.parent())
        .map(PathBuf::from);
    let sim = LocalSim::start_with(
        scenario,
        LocalSimOptions {
            media: Some(media),
            ..LocalSimOptions::default()
        },
    )
    .await?;
    let bot = Bot::builder(sim.target()).build().await?;
    let mut call = bot.place_call(call_target(sim.users())).await?;
    let mut audio = call
        .audio_receiver()
        .expect("the first take of the receiver");
    let mut names = Names::default();

    // Nothing may be stored before the participants were told, and there is nothing to store
    // before media flows: wait for the call to be established with its media connected, then
    // for the service to confirm the recording status.
    let (mut established, mut media_up) = (false, false);
    while !(established && media_up) {
        match call.next_event().await {
            Some(CallEvent::StateChanged {
                to: CallState::Established,
                ..
            }) => established = true,
            Some(CallEvent::MediaConnected) => media_up = true,
            Some(CallEvent::ParticipantJoined(_, p) | CallEvent::ParticipantUpdated(_, p)) => {
                names.note(&p);
            }
            Some(CallEvent::MediaEnded(why)) => {
                return Err(format!("the call's media ended before recording: {why:?}").into());
            }
            Some(CallEvent::Terminated(info)) => {
                return Err(format!("the call ended before recording: {info:?}").into());
            }
            None => return Err("the call's events stopped".into()),
            Some(_) => {}
        }
    }
    let op = call
        .update_recording_status(RecordingStatus::Recording)
        .await?;
    let status = op.status.get().map(ToString::to_string);
    println!("recording status set: {}", status.unwrap_or_default());
    // Audio that arrived while the status was being set was heard before consent: drop it.
    let mut dropped = 0u64;
    while audio.try_recv().is_some() {
        dropped += 1;
    }
    println!(
        "recording to {} ({dropped} frames from before the status change dropped)",
        args.out.display()
    );
    // From here on SIGTERM ends the recording cleanly instead of killing the process with
    // half-written files (before, there was nothing to lose).
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut recording = Recording::create(args.out.clone(), audio.spec())?;

    let stop = tokio::time::sleep(Duration::from_secs(args.duration));
    tokio::pin!(stop);
    let mut progress = tokio::time::interval(Duration::from_secs(1));
    let why = loop {
        tokio::select! {
            // Roster events first, so a participant's name is known before their audio.
            biased;
            _ = sigterm.recv() => break "sigterm",
            event = call.next_event() => match event {
                Some(CallEvent::ParticipantJoined(_, p) | CallEvent::ParticipantUpdated(_, p)) => {
                    names.note(&p);
                }
                Some(CallEvent::Terminated(_)) | None => break "call ended by the service",
                Some(_) => {}
            },
            received = audio.recv() => match received {
                Some(received) => recording.store(&names, received)?,
                None => break "media closed",
            },
            () = &mut stop => break "duration reached",
            _ = progress.tick() => {
                let unmixed: u64 = recording.tracks.values().map(|t| t.written).sum();
                println!("progress mix_frames={} participant_frames={unmixed}", recording.mix.written);
            }
        }
    };
    // Frames already handed over by the engine count as received: store them too.
    while let Some(received) = audio.try_recv() {
        recording.store(&names, received)?;
    }
    println!("stopped: {why}");
    recording.finish()?;

    if !call.is_ended() {
        // Say the recording stopped before leaving, as participants were told it started.
        let _ = call
            .update_recording_status(RecordingStatus::NotRecording)
            .await;
    }
    // Hangs up (if the call is still up) and waits until the call is released.
    bot.shutdown().await;
    Ok(())
}
