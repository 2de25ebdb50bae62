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
fn a_local_target_takes_the_certificate_it_is_given() {
    // The in-process sim registers the certificate, and the bot proves itself with a client
    // assertion signed by its key: a certificate is tried end to end on one machine.
    let cert = test_kit::certs::self_signed_rsa("cli.sim.test");
    let dir = std::env::temp_dir().join(format!("mediabot-cli-cert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, &cert.cert_pem).unwrap();
    std::fs::write(&key_path, &cert.key_pem).unwrap();
    let out = mediabot()
        .args(["bot", "--target", "local", "--duration", "2"])
        .arg("--app-certificate")
        .arg(&cert_path)
        .arg("--app-private-key")
        .arg(&key_path)
        .output()
        .expect("run mediabot bot");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bot failed: {stderr}");
    assert!(stderr.contains(": established"), "{stderr}");
    // A key that is not the certificate's is refused before anything starts.
    let other = test_kit::certs::self_signed_rsa("other.sim.test");
    std::fs::write(&key_path, &other.key_pem).unwrap();
    let out = mediabot()
        .args(["bot", "--target", "local", "--duration", "1"])
        .arg("--app-certificate")
        .arg(&cert_path)
        .arg("--app-private-key")
        .arg(&key_path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--app-certificate"), "{stderr}");
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
fn a_secret_and_a_certificate_together_are_refused_by_name() {
    let dir = std::env::temp_dir().join(format!("mediabot-cli-creds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = test_kit::certs::self_signed_rsa("bot.test");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, &cert.cert_pem).unwrap();
    std::fs::write(&key_path, &cert.key_pem).unwrap();
    // The secret from the environment, the certificate from flags: still two credentials.
    let out = mediabot()
        .args(["bot", "--target", "graph", "--duration", "1"])
        .args(["--app-id", "a", "--tenant-id", "t"])
        .arg("--app-certificate")
        .arg(&cert_path)
        .arg("--app-private-key")
        .arg(&key_path)
        .env("MEDIABOT_APP_SECRET", "not-a-secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("mutually exclusive"), "{stderr}");
    assert!(!stderr.contains("not-a-secret"), "{stderr}");

    // The sim refuses to register a file that holds no certificate, and names it.
    let out = mediabot()
        .args(["sim", "--duration", "1", "--app-certificate"])
        .arg(&key_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("key.pem") && stderr.contains("CERTIFICATE"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
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

/// `mediabot bot` as a running service, its stderr read line by line as it comes.
struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = mediabot()
            .args(args)
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("mediabot bot starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one contains `text`; returns it.
    fn wait_for(&mut self, text: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!("no {text:?} in:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill(1) runs");
        assert!(status.success());
    }

    /// Waits for the exit; the status and how long after `since` it came.
    fn exit(mut self, since: std::time::Instant) -> (std::process::ExitStatus, Duration) {
        let status = self.child.wait().unwrap();
        (status, since.elapsed())
    }
}

use std::time::Duration;

fn sim_url(sim: &mediabot::bot::LocalSim) -> String {
    sim.target()
        .endpoints()
        .api_url
        .trim_end_matches("/v1.0")
        .to_owned()
}

/// The metrics address a `bot ready:` line names.
fn metrics_url(ready_line: &str) -> String {
    ready_line
        .split("metrics ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("the metrics address")
        .trim_end_matches(',')
        .to_owned()
}

fn http_base(ready_line: &str) -> String {
    // "bot ready: callback http://127.0.0.1:PORT/callback, …"
    let url = ready_line
        .split("callback ")
        .nth(1)
        .and_then(|s| s.split('/').nth(2))
        .expect("the callback's address");
    format!("http://{}", url.trim_end_matches(','))
}

/// graph-sim in this process and a `mediabot bot` calling its first user, with the given
/// drain timeout (seconds).
async fn sim_and_bot_calling_alice(drain_timeout: &str) -> (mediabot::bot::LocalSim, Running) {
    let sim = mediabot::bot::LocalSim::start(
        mediabot::crates::graph_sim::scenario::Scenario::two_users(),
    )
    .await
    .unwrap();
    let alice = sim.users()[0].id.clone();
    let url = sim_url(&sim);
    let bot = Running::start(&[
        "bot",
        "--target",
        "sim",
        "--sim-url",
        &url,
        "--call",
        &alice,
        "--drain-timeout",
        drain_timeout,
    ]);
    (sim, bot)
}

/// Ends the sim and checks that its one call was hung up by the bot (the service reports the
/// bot's DELETE: 200/5001).
async fn assert_hung_up_by_the_bot(sim: mediabot::bot::LocalSim) {
    let report = sim.finish().await.unwrap();
    assert_eq!(
        report.calls[0].result,
        Some((200, 5001)),
        "{:?}",
        report.calls[0]
    );
}

/// SIGTERM mid-call: not ready at once, the call goes on until the drain timeout, then the bot
/// hangs it up (the service reports the bot's DELETE: 200/5001) and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_hangs_up_and_exits_cleanly() {
    let (sim, mut bot) = sim_and_bot_calling_alice("2").await;
    let base = http_base(&bot.wait_for("bot ready:"));
    bot.wait_for("media connected");
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);

    let t0 = std::time::Instant::now();
    bot.signal("TERM");
    bot.wait_for("SIGTERM: draining");
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    // The call is still up during the drain.
    let calls: serde_json::Value = reqwest::get(format!("{base}/calls"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls.as_array().map(Vec::len), Some(1), "{calls}");
    bot.wait_for("drain finished");
    let (status, after) = bot.exit(t0);
    assert!(status.success(), "{status:?}");
    assert!(
        after >= Duration::from_secs(2),
        "left before the drain timeout: {after:?}"
    );
    assert!(after < Duration::from_secs(20), "{after:?}");
    assert_hung_up_by_the_bot(sim).await;
}

/// A bot whose host stalls for longer than ICE's disconnected timeout (3 s) keeps its call:
/// both ends count the silence as an interruption and carry on when traffic resumes, instead
/// of ending the call with a media failure (which turned every stall of a shared cloud CPU into
/// failed calls). The stall is a SIGSTOP of the bot's whole process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_survives_a_stall_of_the_bots_host() {
    let (sim, mut bot) = sim_and_bot_calling_alice("1").await;
    let metrics_url = metrics_url(&bot.wait_for("bot ready:"));
    bot.wait_for("media connected");
    bot.signal("STOP");
    // Past the 3 s after which ICE reports disconnected, short of the 5 s more to failed.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    bot.signal("CONT");
    // Time for both ends to notice the silence and for traffic to resume.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics = reqwest::get(&metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let interruptions = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mediabot_media_interruptions_total "))
        .and_then(|v| v.parse::<f64>().ok());
    let t0 = std::time::Instant::now();
    bot.signal("TERM");
    bot.wait_for("drain finished");
    let failed: Vec<&String> = bot
        .seen
        .iter()
        .filter(|l| l.contains("media failed"))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    // The service side always sees the silence. Whether the bot does depends on which it
    // reads first when it wakes: its clock (past the 3 s) or the packets queued meanwhile.
    // Either way the count of interruptions is what it logged, and each one resumed.
    let logged = |text: &str| bot.seen.iter().filter(|l| l.contains(text)).count();
    let interrupted = logged("media interrupted: no traffic");
    assert_eq!(interruptions, Some(interrupted as f64), "{:#?}", bot.seen);
    assert_eq!(logged("media resumed after an interruption"), interrupted);
    let (status, _) = bot.exit(t0);
    assert!(status.success(), "{status:?}");
    // Hung up by the bot at the end of its drain, as with no stall at all: not a media failure.
    assert_hung_up_by_the_bot(sim).await;
}

/// A second signal during a drain hangs up at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_hangs_up_at_once() {
    let (sim, mut bot) = sim_and_bot_calling_alice("60").await;
    bot.wait_for("media connected");
    let t0 = std::time::Instant::now();
    bot.signal("INT");
    bot.wait_for("SIGINT: draining");
    bot.signal("TERM");
    bot.wait_for("SIGTERM: hanging up every call");
    let (status, after) = bot.exit(t0);
    assert!(status.success(), "{status:?}");
    assert!(after < Duration::from_secs(15), "{after:?}");
    assert_hung_up_by_the_bot(sim).await;
}

/// At `trace`, with a known secret and a meeting passcode, a whole call's log holds neither,
/// nor an access token or a signed notification token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_even_at_trace() {
    const SECRET: &str = "Zq8-known-secret-77f1";
    let meeting: mediabot::crates::graph_sim::scenario::Scenario = toml_meeting();
    let passcode = meeting.meeting.as_ref().unwrap().passcode.clone().unwrap();
    let join_id = meeting.meeting.as_ref().unwrap().join_meeting_id.clone();
    let sim = mediabot::bot::LocalSim::start_with(
        meeting,
        mediabot::bot::LocalSimOptions {
            config: mediabot::crates::graph_sim::service::SimConfig {
                app_secret: SECRET.into(),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let url = sim_url(&sim);
    let out = tokio::task::spawn_blocking(move || {
        mediabot()
            .args([
                "--log-format",
                "json",
                "bot",
                "--target",
                "sim",
                "--sim-url",
                &url,
                "--app-secret",
                SECRET,
                "--join-meeting-id",
                &join_id,
                "--passcode",
                &passcode,
                "--duration",
                "3",
            ])
            .env("RUST_LOG", "trace")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}",
        &log[log.len().saturating_sub(3000)..]
    );
    // The run did log a call at trace (so the check below means something).
    assert!(log.contains("\"level\":\"TRACE\""));
    assert!(log.contains("participant joined"));
    // The released call's figures, in the call's span, from its live counters: the meeting's
    // talkers were heard and the bot sent its stream.
    let figures: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["fields"]["message"] == "call figures")
        .collect();
    assert_eq!(figures.len(), 1, "{figures:?}");
    let f = &figures[0];
    assert!(
        f["span"]["call_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{f}"
    );
    assert!(f["fields"]["frames_in"].as_u64() > Some(0), "{f}");
    assert!(f["fields"]["frames_out"].as_u64() > Some(0), "{f}");
    assert_eq!(f["fields"]["failed"], false, "{f}");
    let passcode = sim_meeting_passcode();
    for (what, needle) in [
        ("the app secret", SECRET),
        ("the meeting passcode", passcode.as_str()),
        ("an access token", "sim."),
        ("a signed token", "eyJ"),
    ] {
        assert!(!log.contains(needle), "{what} is in the log");
    }
    sim.finish().await.unwrap();
}

const MEETING: &str = include_str!("../crates/graph-sim/scenarios/meeting-passcode.toml");

fn toml_meeting() -> mediabot::crates::graph_sim::scenario::Scenario {
    mediabot::crates::graph_sim::scenario::Scenario::parse(MEETING).unwrap()
}

fn sim_meeting_passcode() -> String {
    toml_meeting().meeting.unwrap().passcode.unwrap()
}
