//! Runs the compiled example bots (cargo builds the examples before it runs integration tests)
//! against their in-process graph-sim, and checks what they leave behind: WAV files and the
//! counts they print, the tone the simulated user heard, the meeting roster. Examples run one
//! at a time: each brings up a sim, a bot and their media threads on a two-core machine.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError, mpsc};
use std::time::{Duration, Instant};

use mediabot::crates::graph_sim::scenario::Scenario;

/// Longest an example may take before the test gives up on it (a hang guard: what the tests
/// assert never depends on how long a run took).
const HANG_GUARD: Duration = Duration::from_secs(120);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    // A failed test must not fail the others.
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The example binary next to this test's: `target/<profile>/deps/examples-…` →
/// `target/<profile>/examples/<name>`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "example binary {} is missing: `cargo test` builds examples; after a plain \
         `cargo build`, run `cargo build --examples` first",
        path.display()
    );
    path
}

/// An empty folder for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("examples")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running example whose stdout is read line by line.
struct Running {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

/// What a finished example printed.
struct Finished {
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: String,
}

impl Finished {
    fn text(&self) -> String {
        format!(
            "status {}\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.stdout.join("\n"),
            self.stderr
        )
    }
}

impl Running {
    fn start(name: &str, args: &[&str]) -> Running {
        let mut child = Command::new(example(name))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            name: name.to_owned(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads output until a line satisfies `found`; returns it.
    fn wait_for(&mut self, found: impl Fn(&str) -> bool) -> String {
        loop {
            match self.lines.recv_timeout(HANG_GUARD) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if found(&line) {
                        return line;
                    }
                }
                Err(e) => {
                    let _ = self.child.kill();
                    panic!("{}: no such line ({e}); saw {:#?}", self.name, self.seen);
                }
            }
        }
    }

    /// Sends SIGTERM, as a service manager stopping the bot would.
    fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the end and collects the rest of the output.
    fn finish(mut self) -> Finished {
        let deadline = Instant::now() + HANG_GUARD;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the example") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("{} did not exit; saw {:#?}", self.name, self.seen);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The reader thread ends at end of file, which follows the exit.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(line);
        }
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        Finished {
            status,
            stdout: self.seen,
            stderr,
        }
    }
}

fn run(name: &str, args: &[&str]) -> Finished {
    Running::start(name, args).finish()
}

/// The `key=value` field of a line (`file=` takes the rest of the line: paths may hold spaces).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    let rest = &line[at..];
    Some(if key == "file" {
        rest
    } else {
        rest.split_whitespace().next().unwrap_or_default()
    })
}

fn number(line: &str, key: &str) -> u64 {
    field(line, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {key}= in {line:?}"))
}

/// Checks every file a record_bot run reported: a WAV hound reads, holding exactly the frames
/// written, as many as were received, not silent. Returns the file names.
fn check_recording(run: &Finished, dir: &Path) -> Vec<String> {
    let summaries: Vec<&String> = run
        .stdout
        .iter()
        .filter(|l| l.starts_with("summary "))
        .collect();
    let status_at = run
        .stdout
        .iter()
        .position(|l| l == "recording status set: completed");
    let first_summary = run.stdout.iter().position(|l| l.starts_with("summary "));
    assert!(
        status_at.is_some() && status_at < first_summary,
        "the recording status is set before anything is stored\n{}",
        run.text()
    );
    let mut names = Vec::new();
    for line in &summaries {
        let received = number(line, "frames_received");
        let written = number(line, "frames_written");
        let per_frame = number(line, "samples_per_frame");
        let path = PathBuf::from(field(line, "file").unwrap());
        assert_eq!(received, written, "{line}");
        test_kit::at_least("frames_written", written as f64, 1.0, line);
        let reader = hound::WavReader::open(&path)
            .unwrap_or_else(|e| panic!("{}: not a finished WAV: {e}", path.display()));
        let spec = reader.spec();
        assert_eq!((spec.sample_rate, spec.channels), (16_000, 1), "{line}");
        assert_eq!(
            u64::from(reader.len()),
            written * per_frame,
            "the header's length is the frames written: {line}"
        );
        let peak = reader
            .into_samples::<i16>()
            .map(|s| s.unwrap().unsigned_abs())
            .max()
            .unwrap_or(0);
        test_kit::at_least("recording_peak", f64::from(peak), 1000.0, line);
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    let on_disk = std::fs::read_dir(dir).unwrap().count();
    assert_eq!(
        on_disk,
        summaries.len(),
        "one summary per file\n{}",
        run.text()
    );
    assert!(
        names.iter().any(|n| n == "mix.wav"),
        "{names:?}\n{}",
        run.text()
    );
    names
}

#[test]
fn record_bot_writes_one_wav_per_participant_and_the_mix() {
    let _one = one_at_a_time();
    let dir = scratch("record");
    let out = dir.to_str().unwrap();
    let run = run("record_bot", &["--duration", "3", "--out", out]);
    assert!(run.status.success(), "{}", run.text());
    assert!(run.stdout.iter().any(|l| l == "stopped: duration reached"));
    let names = check_recording(&run, &dir);
    // Two participants (Alice and Bob of the default scenario), each in a file of their own.
    assert_eq!(names.len(), 3, "{names:?}");
    for who in ["Alice", "Bob"] {
        assert!(
            names.iter().any(|n| n.ends_with(&format!("-{who}.wav"))),
            "{names:?}"
        );
    }
}

#[test]
fn record_bot_stopped_by_sigterm_leaves_finished_wavs() {
    let _one = one_at_a_time();
    let dir = scratch("record-sigterm");
    let out = dir.to_str().unwrap();
    let mut bot = Running::start("record_bot", &["--duration", "60", "--out", out]);
    // Participants' audio is being stored: stop the bot mid-call.
    bot.wait_for(|l| l.starts_with("progress ") && number(l, "participant_frames") >= 50);
    bot.terminate();
    let run = bot.finish();
    assert!(run.status.success(), "{}", run.text());
    assert!(
        run.stdout.iter().any(|l| l == "stopped: sigterm"),
        "{}",
        run.text()
    );
    assert_eq!(check_recording(&run, &dir).len(), 3);
}

#[test]
fn record_bot_finishes_its_wavs_when_the_service_ends_the_call() {
    let _one = one_at_a_time();
    let dir = scratch("record-ended");
    let wavs = dir.join("wavs");
    // The only callee hangs up after 2.5 s, so the service ends the P2P call.
    let scenario = dir.join("leaves.toml");
    std::fs::write(
        &scenario,
        "[[users]]\nname = \"Alice\"\nsays = { tone_hz = 300.0 }\nleave_ms = 2500\n",
    )
    .unwrap();
    let run = run(
        "record_bot",
        &[
            "--duration",
            "60",
            "--out",
            wavs.to_str().unwrap(),
            "--scenario",
            scenario.to_str().unwrap(),
        ],
    );
    assert!(run.status.success(), "{}", run.text());
    assert!(
        run.stdout
            .iter()
            .any(|l| l == "stopped: call ended by the service"),
        "{}",
        run.text()
    );
    let names = check_recording(&run, &wavs);
    assert_eq!(names.len(), 2, "{names:?}");
}

/// The frequency of the loud part of a recording: zero crossings counted over the 20 ms
/// windows that carry signal.
fn tone_hz(samples: &[i16], rate: u32) -> f64 {
    let window = rate as usize / 50;
    let (mut crossings, mut windows) = (0usize, 0usize);
    for w in samples.chunks_exact(window) {
        if w.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0) < 2000 {
            continue;
        }
        windows += 1;
        crossings += w.windows(2).filter(|p| (p[0] < 0) != (p[1] < 0)).count();
    }
    assert!(windows > 0, "nothing loud was heard");
    crossings as f64 / 2.0 / (windows as f64 * 0.02)
}

/// Runs play_bot and returns its output and what the simulated user heard (samples, rate).
fn play(test: &str, args: &[&str]) -> (Finished, Vec<i16>, u32) {
    let dir = scratch(test);
    let mut all = args.to_vec();
    all.extend(["--sim-record", dir.to_str().unwrap()]);
    let run = run("play_bot", &all);
    assert!(run.status.success(), "{}", run.text());
    let heard = run
        .stdout
        .iter()
        .find_map(|l| field(l, "recording"))
        .unwrap_or_else(|| panic!("no recording\n{}", run.text()))
        .to_owned();
    let reader = hound::WavReader::open(&heard).unwrap();
    let rate = reader.spec().sample_rate;
    let samples = reader.into_samples::<i16>().map(Result::unwrap).collect();
    (run, samples, rate)
}

#[test]
fn play_bot_tone_is_what_the_simulated_user_hears() {
    let _one = one_at_a_time();
    let (run, heard, rate) = play("play-tone", &["--tone", "440", "--duration", "3"]);
    let played = run
        .stdout
        .iter()
        .find(|l| l.starts_with("played tone 440 Hz: 150 frames"))
        .unwrap_or_else(|| panic!("{}", run.text()));
    // Topped up half a second at a time, not pushed all at once.
    let pushes: usize = played
        .split(" in ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert_eq!(pushes, 6, "{played}");
    let hz = tone_hz(&heard, rate);
    test_kit::at_most("heard_tone_error", (hz - 440.0).abs() / 440.0, 0.03, &hz);
}

#[test]
fn play_bot_converts_a_wav_the_engine_cannot_take_as_is() {
    let _one = one_at_a_time();
    // 11.025 kHz, three channels: resampled and mixed down by the example.
    let dir = scratch("play-wav-source");
    let path = dir.join("three-channels.wav");
    let spec = hound::WavSpec {
        channels: 3,
        sample_rate: 11_025,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for n in 0..11_025 * 2 {
        let v = (std::f64::consts::TAU * 600.0 * f64::from(n) / 11_025.0).sin() * 8000.0;
        for _ in 0..3 {
            w.write_sample(v as i16).unwrap();
        }
    }
    w.finalize().unwrap();
    let (run, heard, rate) = play(
        "play-wav",
        &["--wav", path.to_str().unwrap(), "--duration", "3"],
    );
    let played = run
        .stdout
        .iter()
        .find_map(|l| l.split_once("(11025 Hz, 3 channels, 16-bit): "))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("{}", run.text()));
    // Two seconds, and at most one more frame the resampler's rounding may add.
    assert!((100..=101).contains(&played), "{}", run.text());
    let hz = tone_hz(&heard, rate);
    test_kit::at_most("heard_tone_error", (hz - 600.0).abs() / 600.0, 0.03, &hz);
}

const MEETING: &str = include_str!("../crates/graph-sim/scenarios/meeting-passcode.toml");

#[test]
fn meeting_bot_reports_every_attendee_then_leaves() {
    let _one = one_at_a_time();
    let run = run("meeting_bot", &["--duration", "4"]);
    assert!(run.status.success(), "{}", run.text());
    let joined: Vec<&String> = run
        .stdout
        .iter()
        .filter(|l| l.starts_with("joined "))
        .collect();
    for user in Scenario::parse(MEETING).unwrap().users {
        let name = format!("name={:?}", user.name);
        assert!(
            joined.iter().any(|l| l.contains(&name)),
            "{} not in the roster\n{}",
            user.name,
            run.text()
        );
    }
    let lines = run.stdout.join("\n");
    // The guest waits in the lobby and is admitted; the drop-in leaves again.
    assert!(lines.contains("joined  name=\"Visitor\" kind=guest muted=false lobby=true"));
    assert!(lines.contains("updated name=\"Visitor\" kind=guest muted=false lobby=false"));
    assert!(lines.contains("left    name=\"Drop-in Dev\" kind=user"));
    assert!(lines.contains("joined  name=\"Dana\" kind=user"));
    assert!(lines.ends_with("left the meeting"), "{lines}");
}

#[test]
fn meeting_bot_joins_by_the_meetings_join_link() {
    let _one = one_at_a_time();
    let run = run("meeting_bot", &["--by-link", "--duration", "3"]);
    assert!(run.status.success(), "{}", run.text());
    let lines = run.stdout.join("\n");
    assert!(lines.contains("joining meeting by its link"), "{lines}");
    assert!(lines.contains("call established"), "{lines}");
    assert!(lines.contains("joined  name=\"Dana\" kind=user"), "{lines}");
    assert!(lines.ends_with("left the meeting"), "{lines}");
    // A link that is not a Teams meeting's is refused before anything is sent.
    let refused = self::run(
        "meeting_bot",
        &["--join-url", "https://example.com/not-a-meeting"],
    );
    assert!(!refused.status.success(), "{}", refused.text());
    assert!(
        !refused.stdout.iter().any(|l| l.starts_with("joining")),
        "{}",
        refused.text()
    );
}

#[test]
fn meeting_bot_is_refused_a_wrong_passcode_or_unknown_meeting() {
    let _one = one_at_a_time();
    for (args, expected) in [
        (&["--passcode", "wrong"][..], "HTTP 403 Forbidden"),
        (&["--join-id", "1"][..], "HTTP 404 NotFound"),
    ] {
        let run = run("meeting_bot", args);
        assert!(!run.status.success(), "{}", run.text());
        let error = run.stdout.last().map_or("", String::as_str);
        assert!(
            error.starts_with("error: join refused") && error.contains(expected),
            "{}",
            run.text()
        );
        assert!(!run.stdout.iter().any(|l| l.starts_with("joined ")));
    }
}

/// The samples of a 16 kHz mono WAV file.
fn wav_samples(path: &Path) -> Vec<i16> {
    let mut reader = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let spec = reader.spec();
    assert_eq!((spec.sample_rate, spec.channels), (16_000, 1), "{path:?}");
    reader.samples::<i16>().map(Result::unwrap).collect()
}

/// Where `needle` occurs in `haystack` sample for sample. The service-hosted media of the sim
/// mixes prompts into what the caller hears without a codec, so a prompt played is found
/// exactly.
fn find(haystack: &[i16], needle: &[i16]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack
        .windows(needle.len())
        .position(|w| w[0] == needle[0] && w == needle)
}

fn prompt(name: &str) -> Vec<i16> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/prompts")
        .join(format!("{name}.wav"));
    let samples = wav_samples(&path);
    // The files start and end with a little silence; the voice is what identifies them.
    let first = samples.iter().position(|&s| s.abs() > 300).unwrap_or(0);
    let last = samples.iter().rposition(|&s| s.abs() > 300).unwrap_or(0);
    samples[first..=last].to_vec()
}

/// Runs ivr_bot against its sim; returns its output and what the caller heard.
fn ivr(test: &str, presses: &str) -> (Finished, Vec<i16>) {
    let _one = one_at_a_time();
    let dir = scratch(test);
    let run = run(
        "ivr_bot",
        &[
            "--caller-presses",
            presses,
            "--wait",
            "2",
            "--sim-record",
            dir.to_str().unwrap(),
        ],
    );
    assert!(run.status.success(), "{}", run.text());
    let heard_line = run
        .stdout
        .iter()
        .find(|l| l.starts_with("heard "))
        .unwrap_or_else(|| panic!("no heard line\n{}", run.text()));
    let file = field(heard_line, "file").unwrap();
    let heard = wav_samples(Path::new(file));
    (run, heard)
}

#[test]
fn ivr_bot_transfers_a_caller_who_presses_2() {
    let (run, heard) = ivr("ivr_transfer", "2@1500ms");
    let lines = run.stdout.join("\n");
    assert!(lines.contains("answered media=service"), "{lines}");
    assert!(lines.contains("key tone=2"), "{lines}");
    assert!(lines.contains("transferring to="), "{lines}");
    // The service ends the bot's leg once the agent took the call: 200/5004 (transferred).
    assert!(
        lines.contains("call ended code=200 subcode=5004"),
        "{lines}"
    );
    assert!(lines.contains("outcome=transferred"), "{lines}");
    // The caller heard the start of the menu, cut short by the key, then the transfer prompt
    // and never the goodbye.
    let menu = prompt("menu");
    let menu_at = find(&heard, &menu[..16_000]).expect("the menu's first second was heard");
    assert!(
        find(&heard, &menu).is_none(),
        "the menu was cut short by the key"
    );
    let transfer_at = find(&heard, &prompt("transfer")).expect("the transfer prompt was heard");
    assert!(transfer_at > menu_at);
    assert!(find(&heard, &prompt("goodbye")).is_none());
}

#[test]
fn ivr_bot_says_goodbye_to_a_silent_caller() {
    let (run, heard) = ivr("ivr_goodbye", "");
    let lines = run.stdout.join("\n");
    assert!(!lines.contains("key tone="), "{lines}");
    assert!(lines.contains("outcome=goodbye"), "{lines}");
    // The bot hung up: 200/5001.
    assert!(
        lines.contains("call ended code=200 subcode=5001"),
        "{lines}"
    );
    let menu_at = find(&heard, &prompt("menu")).expect("the whole menu was heard");
    let goodbye = prompt("goodbye");
    let goodbye_at = find(&heard, &goodbye).expect("the goodbye prompt was heard, whole");
    // After the menu and the wait for a key (2 s).
    assert!(goodbye_at >= menu_at + prompt("menu").len() + 2 * 16_000 - 1_600);
    assert!(find(&heard, &prompt("transfer")).is_none());
}
