//! `mediabot bot`: the echo bot configured from flags and environment, end to end.

use std::process::Command;

fn mediabot() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediabot"));
    // The test decides every setting; nothing leaks in from the developer's shell.
    for (key, _) in std::env::vars() {
        if key.starts_with("MEDIABOT_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

#[test]
fn a_local_target_from_the_environment_calls_echoes_and_hangs_up() {
    let out = mediabot()
        .args(["bot", "--duration", "3"])
        .env("MEDIABOT_TARGET", "local")
        .output()
        .expect("run mediabot bot");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bot failed: {stderr}");
    for line in [
        "bot ready: callback http://127.0.0.1:",
        ": placed",
        ": established",
        ": media connected",
        ": terminated",
        ": ended",
    ] {
        assert!(stderr.contains(line), "missing {line:?} in {stderr}");
    }
}

#[test]
fn the_target_is_never_implied() {
    let out = mediabot()
        .args(["bot", "--duration", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--target"), "{stderr}");
}

#[test]
fn real_graph_needs_its_credentials_and_public_addresses() {
    let out = mediabot()
        .args(["bot", "--target", "graph", "--duration", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--app-id is required"), "{stderr}");

    // With credentials but no public callback or media host, the bot refuses to start rather
    // than handing Graph addresses it cannot reach.
    let out = mediabot()
        .args(["bot", "--target", "graph", "--duration", "1"])
        .env("MEDIABOT_APP_ID", "00000000-0000-0000-0000-000000000001")
        .env("MEDIABOT_APP_SECRET", "not-a-secret")
        .env("MEDIABOT_TENANT_ID", "00000000-0000-0000-0000-000000000002")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error: bot: configuration"), "{stderr}");
}

#[test]
fn a_meeting_passcode_needs_a_meeting() {
    let out = mediabot()
        .args(["bot", "--target", "local", "--passcode", "123"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--join-meeting-id"), "{stderr}");
}
