//! The softphone in a real browser: graph-sim with its softphone page and an echo bot on the
//! Bot API, and Debian's `chromium` (headless, driven by npm `playwright-core` from
//! `tests/browser/`) joining the bot's call with a fake microphone playing a keyed 1 kHz tone.
//!
//! Checked: the bot receives the browser's sourceId with the tone dominant in its unmixed
//! frames; the page receives RTP (getStats `inbound-rtp.packetsReceived`) and hears the tone in
//! the echo (WebAudio `AnalyserNode`); the page's roster lists the bot, the simulated user and
//! the browser user. A screenshot is written to `$MEDIABOT_SOFTPHONE_SCREENSHOT` (default: the
//! test's temporary folder).
//!
//! Needs `/usr/bin/chromium` (or `$CHROMIUM`), `node`, and `npm ci` run in `tests/browser`.
//! When one is missing the test fails if `MEDIABOT_BROWSER_TESTS=1` (CI sets it) and is skipped
//! with a notice otherwise.
#![allow(clippy::print_stderr)] // the test reports its timing and skips on stderr

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use graph_sim::scenario::{Scenario, SimUser, Voice};
use mediabot::bot::{Bot, CallEvent, CallTarget, LocalSim, ReceivedAudio};
use mediabot::crates::graph_sim;
use serde_json::Value;

const TONE_HZ: f64 = 1000.0;
const ALICE_HZ: f32 = 440.0;

/// Why the browser test cannot run here, if it cannot.
fn missing_prerequisite(browser_dir: &Path) -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!(
            "{chromium} not found (apt-get install -y chromium, or set CHROMIUM)"
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node not found".into());
    }
    if !browser_dir.join("node_modules/playwright-core").exists() {
        return Some(format!(
            "playwright-core not installed (run `npm ci` in {})",
            browser_dir.display()
        ));
    }
    None
}

/// A 48 kHz mono WAV of a 1 kHz tone keyed on (150–450 ms) and off (100–300 ms) in a seeded,
/// irregular rhythm: a regular one would make the sim's echo-delay search ambiguous.
fn write_tone_wav(path: &Path) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let mut rng: u64 = 0x5eed_0001;
    let mut next = |lo: u64, span: u64| {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (lo + (rng >> 33) % span) * 48
    };
    let (mut on, mut left, mut i) = (false, 0u64, 0u64);
    let mut gain = 0.0f64;
    while i < 48_000 * 10 {
        if left == 0 {
            on = !on;
            left = if on { next(150, 300) } else { next(100, 200) };
        }
        // Ramp the gain over 10 ms so the keying does not click.
        let target = if on { 1.0 } else { 0.0 };
        gain += (target - gain).clamp(-1.0 / 480.0, 1.0 / 480.0);
        let t = i as f64 / 48_000.0;
        let v = (t * TONE_HZ * std::f64::consts::TAU).sin() * 12_000.0 * gain;
        w.write_sample(v as i16).unwrap();
        left -= 1;
        i += 1;
    }
    w.finalize().unwrap();
}

/// Share of a frame's energy at `hz` (Goertzel), and the frame's level in dBFS.
fn tone_share(samples: &[i16], rate: f64, hz: f64) -> (f64, f64) {
    let n = samples.len() as f64;
    // The nearest bin centre, where a pure tone's power is exactly energy * n / 2.
    let bin_hz = (n * hz / rate).round() * rate / n;
    let energy: f64 = samples.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    let power = test_kit::similarity::tone_power(samples, rate as u32, bin_hz);
    // A pure tone at a bin centre has power = energy * n / 2.
    let share = if energy > 0.0 {
        power / (energy * n / 2.0)
    } else {
        0.0
    };
    let rms = (energy / n.max(1.0)).sqrt();
    let db = if rms > 0.0 {
        20.0 * (rms / 32768.0).log10()
    } else {
        -96.0
    };
    (share, db)
}

/// Frames of one source the bot heard: all, loud ones, and loud ones dominated by the tone.
#[derive(Debug, Default, Clone, Copy)]
struct Heard {
    frames: u64,
    loud: u64,
    tone: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_joins_the_bots_call_and_hears_the_echo() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let browser_dir = root.join("tests/browser");
    let required = std::env::var("MEDIABOT_BROWSER_TESTS").is_ok_and(|v| v == "1");
    if let Some(why) = missing_prerequisite(&browser_dir) {
        assert!(
            !required,
            "MEDIABOT_BROWSER_TESTS=1 but the browser test cannot run: {why}"
        );
        eprintln!(
            "skipping the softphone browser test: {why} (set MEDIABOT_BROWSER_TESTS=1 to make this an error)"
        );
        return;
    }
    let started = Instant::now();
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("softphone-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let wav = tmp.join("tone-1k.wav");
    write_tone_wav(&wav);
    let screenshot = std::env::var("MEDIABOT_SOFTPHONE_SCREENSHOT")
        .map_or_else(|_| tmp.join("softphone.png"), PathBuf::from);

    let scenario = Scenario {
        users: vec![SimUser::new("Alice", Voice::Tone { tone_hz: ALICE_HZ })],
        ..Scenario::default()
    };
    let sim = LocalSim::start_with_softphone(scenario).await.unwrap();
    let url = sim.softphone_url().unwrap().to_owned();
    let bot = Bot::builder(sim.target()).build().await.unwrap();
    let alice = sim.users()[0].clone();
    let mut call = bot
        .place_call(CallTarget::user(alice.id, Some(alice.name)))
        .await
        .unwrap();
    let call_id = call.id().to_owned();

    // The echo bot: the mix goes straight back; each source's unmixed frames are analysed.
    let heard: Arc<Mutex<HashMap<u32, Heard>>> = Arc::default();
    let mut audio = call.audio_receiver().unwrap();
    let out = call.audio_sender();
    let seen = heard.clone();
    let echo = tokio::spawn(async move {
        while let Some(received) = audio.recv().await {
            match received {
                ReceivedAudio::Unmixed(frame) => {
                    let (share, db) = tone_share(frame.samples(), 16_000.0, TONE_HZ);
                    let mut h = seen.lock().unwrap();
                    let e = h.entry(frame.source.get()).or_default();
                    e.frames += 1;
                    if db > -40.0 {
                        e.loud += 1;
                        if share > 0.5 {
                            e.tone += 1;
                        }
                    }
                }
                ReceivedAudio::Mixed { frame, .. } => {
                    out.push_reply(&frame);
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(ev) = call.next_event().await {
            if let CallEvent::StateChanged { to, .. } = ev
                && to.as_str() == "established"
            {
                return;
            }
        }
        panic!("the call ended before it was established");
    })
    .await
    .expect("the call was established");
    let script = browser_dir.join("softphone.mjs");
    let args = [
        script.to_string_lossy().into_owned(),
        url.clone(),
        wav.to_string_lossy().into_owned(),
        screenshot.to_string_lossy().into_owned(),
        call_id.clone(),
        TONE_HZ.to_string(),
    ];
    let browser_started = Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(&args)
            .current_dir(&browser_dir)
            .output()
    })
    .await
    .unwrap()
    .expect("node runs");
    let browser_secs = browser_started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let result: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| {
            panic!("the browser script printed no JSON ({e}); stdout {stdout}; stderr {stderr}")
        });
    eprintln!("browser result: {result:#}");
    assert_eq!(result["ok"], true, "the browser script failed: {result:#}");

    let source = u32::try_from(result["sourceId"].as_u64().expect("a sourceId")).unwrap();
    let bot_heard = heard
        .lock()
        .unwrap()
        .get(&source)
        .copied()
        .unwrap_or_default();
    eprintln!("the bot heard the browser's source {source}: {bot_heard:?}");
    test_kit::at_least(
        "bot_frames_of_browser",
        bot_heard.frames as f64,
        100.0,
        &bot_heard,
    );
    test_kit::at_least(
        "bot_loud_frames_of_browser",
        bot_heard.loud as f64,
        50.0,
        &bot_heard,
    );
    // The 1 kHz tone is dominant in the browser's unmixed frames.
    test_kit::at_least(
        "tone_share_of_loud_frames",
        bot_heard.tone as f64 / bot_heard.loud.max(1) as f64,
        0.8,
        &bot_heard,
    );

    let inbound = result["inbound"]["packetsReceived"].as_u64().unwrap_or(0);
    test_kit::at_least(
        "page_rtp_packets_received",
        inbound as f64,
        100.0,
        &result["inbound"],
    );
    let detected = result["heard"]["detected"].as_u64().unwrap_or(0);
    let samples = result["heard"]["samples"].as_u64().unwrap_or(0);
    assert!(samples > 0, "the page took no samples: {}", result["heard"]);
    // The page hears the 1 kHz tone in the echo.
    test_kit::at_least(
        "page_tone_detected_share",
        detected as f64 / samples as f64,
        0.25,
        &result["heard"],
    );
    let names: Vec<&str> = result["roster"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    for expected in ["Bot", "Alice", "Browser tester"] {
        assert!(
            names.contains(&expected),
            "the roster lacks {expected}: {names:?}"
        );
    }

    // The bot ends the call; the sim's report covers the browser participant too.
    call.hang_up().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = call.next_event().await {
            if matches!(ev, CallEvent::Terminated(_)) {
                break;
            }
        }
    })
    .await;
    echo.abort();
    let report = sim.finish().await.unwrap();
    let person = report
        .calls
        .iter()
        .flat_map(|c| &c.participants)
        .find(|p| p.source_id == source)
        .cloned();
    eprintln!("the sim's report on the browser participant: {person:?}");
    assert!(
        person.is_some_and(|p| p.frames_sent > 100),
        "the sim did not measure the browser participant"
    );
    eprintln!(
        "softphone browser test: {:.1} s in all, {browser_secs:.1} s in the browser",
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
