//! Seeds for media-transport's fuzz targets (`fuzz/seeds/{dtmf_payload,browser_offer}`):
//! real telephone-event packets from the sender's own [`event_train`], and browser offers.
//!
//! `write_fuzz_seeds` (ignored) writes them; rerun it after changing an entry point's input
//! format: `cargo test --workspace -- --ignored write_fuzz_seeds`. It overwrites its own files
//! and leaves others (crash regressions) alone. `committed_seeds_pass_the_entry_points` runs
//! every committed seed through its entry point on each `cargo test`.

// The browser target needs the `runtime` feature (the default).
#![cfg(feature = "runtime")]

use std::path::PathBuf;

use media_transport::_internal_test_exports::fuzz;
use media_transport::dtmf::{DtmfDigit, event_train};

/// 20 ms at the 48 kHz telephone-event clock.
const STEP: u16 = 960;

fn seeds_dir(target: &str) -> PathBuf {
    test_kit::seeds::dir(env!("CARGO_MANIFEST_DIR"), target)
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = seeds_dir(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn digit(c: char) -> DtmfDigit {
    DtmfDigit::from_char(c).unwrap()
}

/// Presses as the entry point's raw packet format carries them: a header byte (payload length
/// 4; the first packet of a press also brings its 32-bit timestamp), then the payload.
fn raw_presses(presses: &[(char, u32, u16)]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(key, timestamp, duration) in presses {
        for (i, p) in event_train(digit(key), duration, STEP).iter().enumerate() {
            if i == 0 {
                out.push(0x08 | 4);
                out.extend_from_slice(&timestamp.to_be_bytes());
            } else {
                out.push(4);
            }
            out.extend_from_slice(&p.event.to_bytes());
        }
    }
    out
}

/// Presses in the entry point's train format: base timestamp, count, (code, duration / 160 - 1,
/// gap / 40) per press, then delivery steps.
fn trains(base: u32, presses: &[(char, u8, u8)], schedule: &[u8]) -> Vec<u8> {
    let mut out = base.to_be_bytes().to_vec();
    out.push(presses.len() as u8 - 1);
    for &(key, duration, gap) in presses {
        out.extend_from_slice(&[digit(key).event_code(), duration, gap]);
    }
    out.extend_from_slice(schedule);
    out
}

fn dtmf_seeds() {
    let five = event_train(digit('5'), 4800, STEP);
    write(
        "dtmf_payload",
        "event-5-first.bin",
        &five[0].event.to_bytes(),
    );
    let pound = event_train(digit('#'), 7680, STEP);
    write(
        "dtmf_payload",
        "event-pound-end.bin",
        &pound.last().unwrap().event.to_bytes(),
    );
    write(
        "dtmf_payload",
        "raw-presses-7-then-star.bin",
        &raw_presses(&[('7', 160_000, 4800), ('*', 170_560, 3840)]),
    );
    // Delivery steps: 0 deliver, 1 drop, 2 deliver twice, 3 | k << 2 deliver k places ahead
    // first.
    write(
        "dtmf_payload",
        "trains-in-order.bin",
        &trains(48_000, &[('1', 29, 25), ('#', 35, 50), ('A', 19, 10)], &[]),
    );
    write(
        "dtmf_payload",
        "trains-lossy-reordered.bin",
        &trains(
            0xffff_f000, // the timestamps wrap
            &[('9', 29, 2), ('0', 29, 2)],
            &[0, 1, 0, 2, 0, 3 | 2 << 2, 0, 0, 0, 0, 3 | 7 << 2, 1, 1, 0],
        ),
    );
}

fn browser_seeds() {
    let chrome = include_str!("../testdata/chrome-audio-offer.sdp");
    let firefox = include_str!("../testdata/firefox-audio-offer.sdp");
    write("browser_offer", "chrome-audio.sdp", chrome.as_bytes());
    write("browser_offer", "firefox-audio.sdp", firefox.as_bytes());
    // Some clients end lines with LF only; the stack takes both.
    write(
        "browser_offer",
        "chrome-audio-lf.sdp",
        chrome.replace("\r\n", "\n").as_bytes(),
    );
    write(
        "browser_offer",
        "minimal-audio.sdp",
        b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
          c=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n",
    );
}

#[test]
#[ignore = "writes fuzz/seeds; run to regenerate them"]
fn write_fuzz_seeds() {
    dtmf_seeds();
    browser_seeds();
}

#[test]
fn committed_seeds_pass_the_entry_points() {
    test_kit::seeds::check_committed(
        env!("CARGO_MANIFEST_DIR"),
        &[
            ("dtmf_payload", fuzz::dtmf_payload),
            ("browser_offer", fuzz::browser_offer),
        ],
    );
}
