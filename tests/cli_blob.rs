//! `mediabot blob new` / `blob check` as a user runs them: exit codes, output, no panics.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const DOCUMENTED_ESCAPED: &str =
    include_str!("../crates/media-session/testdata/documented-blob-escaped.txt");
const CALL_BODY: &str =
    include_str!("../crates/media-session/testdata/create-call-p2p-app-hosted.json");

fn mediabot(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mediabot"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mediabot");
    // A child that exits before reading everything closes the pipe; that is not a test failure.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_accepts_documented_example_and_call_body() {
    for input in [DOCUMENTED_ESCAPED, CALL_BODY] {
        let out = mediabot(&["blob", "check", "-"], input);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains("net.tcp://bot.contoso.com:18732/MediaProcessor"),
            "{stdout}"
        );
        assert!(stdout.contains("Pcm16K"));
        assert!(stdout.contains("14778cc4-f54c-43c7-989f-9092e34ef784"));
    }
}

#[test]
fn new_then_check_round_trips() {
    let out = mediabot(
        &[
            "blob",
            "new",
            "--mp-uri",
            "net.tcp://127.0.0.1:18732/MediaProcessor",
            "--call-id",
            "1b69b141-7f1a-4033-9c34-202737190a20",
            "--format",
            "pcm44k-stereo",
            "--direction",
            "recvonly",
            "--unmixed",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let blob = text(&out.stdout);
    let config = media_session::parse(&blob).unwrap();
    assert_eq!(
        config.supported_audio_format,
        media_session::AudioFormat::Pcm44KStereo
    );
    assert_eq!(config.audio_render_contexts.len(), 1);
    assert!(config.audio_source_contexts.is_empty());
    assert_eq!(
        config.call_id.unwrap().to_string(),
        "1b69b141-7f1a-4033-9c34-202737190a20"
    );

    let escaped = mediabot(
        &[
            "blob",
            "new",
            "--mp-uri",
            "net.tcp://[::1]:9/MediaProcessor",
            "--escaped",
        ],
        "",
    );
    let literal = text(&escaped.stdout);
    assert!(literal.starts_with("\"{\\\"mpUri\\\":\\\"net.tcp://[::1]:9/MediaProcessor"));
    let checked = mediabot(&["blob", "check", "-"], &literal);
    assert!(checked.status.success(), "{}", text(&checked.stderr));
}

#[test]
fn check_rejects_malformed_blobs_with_one_line_naming_the_field() {
    let cases = [
        (
            r#"{"mpUri":"net.tcp://bot:1/Wrong","mpMediaSessionId":"2379cf46-acf3-4fef-a914-be9627075320"}"#,
            "mpUri",
        ),
        (
            r#"{"mpUri":"net.tcp://bot:1/MediaProcessor"}"#,
            "mpMediaSessionId",
        ),
        (
            r#"{"mpUri":"net.tcp://bot:1/MediaProcessor","mpMediaSessionId":"2379cf46-acf3-4fef-a914-be9627075320","audioRenderContexts":[1]}"#,
            "audioRenderContexts[0]",
        ),
        ("not json at all", "not valid JSON"),
        ("", "not valid JSON"),
        ("[]", "JSON object"),
    ];
    for (input, needle) in cases {
        let out = mediabot(&["blob", "check", "-"], input);
        assert_eq!(out.status.code(), Some(1), "{input}");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(stderr.contains(needle), "{input}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn check_reports_unreadable_files() {
    let out = mediabot(&["blob", "check", "/nonexistent/blob.json"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read /nonexistent/blob.json"));
}

#[test]
fn new_rejects_bad_mp_uri() {
    let out = mediabot(
        &["blob", "new", "--mp-uri", "net.tcp://bot/MediaProcessor"],
        "",
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("port"));
}
