//! `mediabot inspect` on every reference example and on garbage.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn inspect(stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mediabot"))
        .args(["inspect", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mediabot");
    // The child may exit before reading everything; that is not a failure of the test.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn every_reference_example_is_described() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/graph-signaling/tests/fixtures"
    );
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let out = inspect(&std::fs::read(&path).unwrap());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.lines().count() >= 1, "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 40, "only {seen} fixtures found");
}

#[test]
fn roster_lines_name_source_ids_and_lobby() {
    let roster = br##"{"value":[{"changeType":"updated","resourceUrl":"/communications/calls/c1/participants",
        "resourceData":[{"@odata.type":"#microsoft.graph.participant","id":"p1",
        "info":{"identity":{"user":{"id":"u1","displayName":"Alice"}}},
        "mediaStreams":[{"mediaType":"audio","sourceId":"10","direction":"sendReceive","serverMuted":false}],
        "isMuted":false,"isInLobby":true}]}]}"##;
    let out = inspect(roster);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("10"), "{stdout}");
    assert!(stdout.contains("lobby"), "{stdout}");
}

#[test]
fn garbage_fails_with_one_line_and_no_panic() {
    let inputs: [&[u8]; 6] = [
        b"",
        b"not json",
        b"[1,2]",
        b"{}",
        b"{\"value\": 5}",
        &[0xff, 0xfe, 0x00],
    ];
    for input in inputs {
        let out = inspect(input);
        assert_eq!(out.status.code(), Some(1), "{input:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(!stderr.contains("panicked"));
    }
}
