//! Scale-out: three `mediabot bot` processes behind nginx running the shipped
//! `deploy/nginx/mediabot.conf`, and `mediabot sim` offering 30 incoming calls through the
//! proxy's shared `/callback`. Every call is answered by one instance and every later
//! notification of it reaches that instance through `/instances/{n}/callback`. Midway, the
//! first step of a rolling restart: instance 1 gets SIGTERM while its calls run. It turns
//! unready at once, nginx passes the offers it refuses (503) to the others, its calls go on
//! until their callers hang up, and it exits 0; no call anywhere fails.
//!
//! Needs Debian's nginx. Without it the test says so and passes, unless
//! `MEDIABOT_NGINX_TESTS=1` (as `.ci/run` sets), which makes a missing nginx a failure.
#![allow(clippy::print_stderr)] // the test reports its figures, skips and kept logs on stderr

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use test_kit::host_stalls::StallWatch;

const INSTANCES: usize = 3;
const CALLS: u64 = 30;
const EVERY_MS: u64 = 700;
const CALL_SECONDS: u64 = 8;
/// Instance 1 is stopped once this many calls were answered in all, right after one of its
/// own: round robin then holds its next offer more than one offer interval away.
const STOP_AFTER: u64 = 18;
/// Generous bound on any wait for a condition.
const WAIT: Duration = Duration::from_secs(60);
/// Host stalls at least this long are recorded and reported.
const STALL_SEEN: Duration = Duration::from_millis(20);
/// A call the host stalled at least this long is left out of the pause check and of the
/// worst call reported as the host's doing: the whole machine, not the bot, took that audio
/// away.
const STALL_EXCUSES: Duration = Duration::from_millis(60);
/// A call during which the hypervisor took at least this share of the host's CPU is excused
/// likewise: on 2026-12-03 every run whose worst call fell under 0.9 but one had 5-18 % of the
/// CPU stolen over the run, in slices too short for the stall watch; a call's own share varies
/// around its run's, so the line is drawn below the least of those.
const STEAL_EXCUSES: f64 = 0.03;

/// A child process killed (if still running) when the test ends, however it ends.
struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory for the processes' configuration and logs, removed when the test passes (kept
/// for reading when it fails).
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> ScratchDir {
        let dir = std::env::temp_dir().join(format!("mediabot-scale-out-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        ScratchDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            eprintln!("logs kept in {}", self.0.display());
        }
    }
}

fn free_port() -> u16 {
    // Freed at once: a port for a process that must be told its port up front (nginx's
    // upstreams, the sim the bots call).
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn find_nginx() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Each call's figures as its owner logged them when it released the call (the `call figures`
/// line of `bot-{n}.log`), by call id. Waits for the owners to release every call of `calls`.
fn bot_figures(calls: &[Value], logs: &dyn Fn(&str) -> String) -> BTreeMap<String, Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut found = BTreeMap::new();
        for n in 0..INSTANCES {
            for line in logs(&format!("bot-{n}.log")).lines() {
                let Ok(entry) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                if entry["fields"]["message"] == "call figures"
                    && let Some(id) = entry["span"]["call_id"].as_str()
                {
                    found.insert(id.to_owned(), entry["fields"].clone());
                }
            }
        }
        let missing: Vec<&str> = calls
            .iter()
            .filter_map(|c| c["call_id"].as_str())
            .filter(|id| !found.contains_key(*id))
            .collect();
        if missing.is_empty() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no call figures logged for {missing:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mediabot(args: &[String], log: &Path) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediabot"));
    for (key, _) in std::env::vars() {
        if key.starts_with("MEDIABOT_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(log).unwrap())
        .spawn()
        .expect("mediabot starts")
}

/// The shipped proxy configuration with this test's ports: nginx listens on `listen`, and
/// instance n's upstream is `backends[n]`.
fn nginx_config(dir: &Path, listen: u16, backends: &[u16]) -> String {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx/mediabot.conf"),
    )
    .expect("deploy/nginx/mediabot.conf");
    let mut site = shipped.replace("listen 8000;", &format!("listen 127.0.0.1:{listen};"));
    for (n, port) in backends.iter().enumerate() {
        site = site.replace(
            &format!("127.0.0.1:{};", 8080 + n),
            &format!("127.0.0.1:{port};"),
        );
    }
    assert!(
        site.contains(&format!("127.0.0.1:{listen}")),
        "the shipped config's listen line changed: update this test"
    );
    let d = dir.display();
    // One process (no master and worker): the test stops nginx by killing its child, and a
    // killed master left its worker running, holding the proxy's port, after every run.
    format!(
        "master_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n\
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{site}\n}}\n"
    )
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status(http: &reqwest::Client, url: &str) -> Option<u16> {
    let r = http.get(url).send().await.ok()?;
    Some(r.status().as_u16())
}

/// One instance's `/metrics`, `None` when unreachable.
async fn metrics_text(http: &reqwest::Client, base: &str) -> Option<String> {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// The sum of a metric's samples (all label sets) on one instance, `None` when unreachable.
async fn metric(http: &reqwest::Client, base: &str, name: &str) -> Option<f64> {
    let text = metrics_text(http, base).await?;
    Some(
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter(|l| matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{')))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

/// The sum of the samples of `prefix` whose labels contain `label`.
async fn metric_where(
    http: &reqwest::Client,
    base: &str,
    prefix: &str,
    label: &str,
) -> Option<f64> {
    let text = metrics_text(http, base).await?;
    Some(
        text.lines()
            .filter(|l| l.starts_with(prefix) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

async fn answered(http: &reqwest::Client, base: &str) -> Option<u64> {
    // Counted when the answer is sent; a call refused while draining is not counted.
    let text = metrics_text(http, base).await?;
    text.lines()
        .find(|l| l.starts_with("mediabot_calls_started_total{direction=\"incoming\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_behind_nginx_share_the_calls_and_one_drains_cleanly() {
    let Some(nginx) = find_nginx() else {
        assert!(
            std::env::var("MEDIABOT_NGINX_TESTS").as_deref() != Ok("1"),
            "MEDIABOT_NGINX_TESTS=1 but nginx is not installed"
        );
        eprintln!("skipped: nginx is not installed (apt-get install nginx)");
        return;
    };
    let dir = ScratchDir::new();
    let (proxy_port, sim_port) = (free_port(), free_port());
    let bot_ports: Vec<u16> = (0..INSTANCES).map(|_| free_port()).collect();
    let public = format!("http://127.0.0.1:{proxy_port}");
    let sim_url = format!("http://127.0.0.1:{sim_port}");
    let bases: Vec<String> = bot_ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();

    let mut bots: Vec<Option<Proc>> = (0..INSTANCES)
        .map(|n| {
            let args: Vec<String> = [
                // One JSON object per line: the test reads each call's figures from them.
                "--log-format",
                "json",
                "bot",
                "--target",
                "sim",
                "--sim-url",
                &sim_url,
                "--http-bind",
                &format!("127.0.0.1:{}", bot_ports[n]),
                "--public-url",
                &public,
                "--instance-id",
                &n.to_string(),
                "--drain-timeout",
                "60",
            ]
            .map(String::from)
            .to_vec();
            Some(Proc {
                child: mediabot(&args, &dir.path().join(format!("bot-{n}.log"))),
            })
        })
        .collect();

    std::fs::write(
        dir.path().join("nginx.conf"),
        nginx_config(dir.path(), proxy_port, &bot_ports),
    )
    .unwrap();
    let _nginx = Proc {
        child: Command::new(&nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(File::create(dir.path().join("nginx.stderr")).unwrap())
            .spawn()
            .expect("nginx starts"),
    };

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (n, base) in bases.iter().enumerate() {
        wait_until(&format!("instance {n} ready"), || async {
            status(&http, &format!("{base}/readyz")).await == Some(200)
        })
        .await;
        // And through the proxy, by its instance path (an unauthenticated post: 401 from it).
        let url = format!("{public}/instances/{n}/callback");
        wait_until(&format!("nginx routing to instance {n}"), || async {
            http.post(&url)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .is_ok_and(|r| r.status() == 401)
        })
        .await;
    }

    // Both callers talk (the sim's default Bob hums a tone, whose quiet bands fill with codec
    // noise and read as a lower similarity on a perfect echo).
    let scenario = dir.path().join("callers.toml");
    std::fs::write(
        &scenario,
        "seed = 1\n[[users]]\nname = \"Alice\"\nsays = \"speech\"\n\
         [[users]]\nname = \"Bob\"\nsays = \"speech\"\n",
    )
    .unwrap();
    let sim_args: Vec<String> = [
        "sim",
        "--scenario",
        &scenario.display().to_string(),
        "--listen",
        &format!("127.0.0.1:{sim_port}"),
        "--offer-incoming",
        &format!("{public}/callback"),
        "--incoming-calls",
        &CALLS.to_string(),
        "--incoming-every",
        &EVERY_MS.to_string(),
        "--call-seconds",
        &CALL_SECONDS.to_string(),
        "--json",
    ]
    .map(String::from)
    .to_vec();
    let watch = StallWatch::start(STALL_SEEN);
    let mut sim = Proc {
        child: mediabot(&sim_args, &dir.path().join("sim.log")),
    };

    // Stop instance 1 right after it answered one, once STOP_AFTER calls were answered.
    let mut last_on_1 = 0;
    let mut stopped_at = None;
    let mut sigterm_at = SystemTime::now();
    let deadline = Instant::now() + WAIT;
    while stopped_at.is_none() {
        assert!(Instant::now() < deadline, "calls did not come");
        let mut total = 0;
        let mut on_1 = 0;
        for (n, base) in bases.iter().enumerate() {
            let a = answered(&http, base).await.unwrap_or(0);
            total += a;
            if n == 1 {
                on_1 = a;
            }
        }
        if total >= STOP_AFTER && on_1 > last_on_1 {
            let bot = bots[1].as_ref().unwrap();
            let ok = Command::new("kill")
                .args(["-TERM", &bot.child.id().to_string()])
                .status()
                .unwrap()
                .success();
            assert!(ok, "SIGTERM sent");
            sigterm_at = SystemTime::now();
            stopped_at = Some(on_1);
        }
        last_on_1 = on_1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answered_by_1 = stopped_at.unwrap();
    // Unready at once (or gone already, if its calls ended first).
    wait_until("instance 1 unready", || async {
        status(&http, &format!("{}/readyz", bases[1])).await != Some(200)
    })
    .await;

    // The sim prints its summary when every call has ended.
    let out = tokio::task::spawn_blocking(move || {
        let output = sim.child.stdout.take().map(|mut s| {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut s, &mut text).unwrap();
            text
        });
        let status = sim.child.wait().unwrap();
        (status, output.unwrap_or_default(), sim)
    })
    .await
    .unwrap();
    let (sim_status, summary_text, _sim) = out;
    let host = watch.finish();
    // The whole summary, every call's figures, kept beside the test's line for reading a run
    // after it (the line names the lowest calls only).
    let _ = std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("scale_out_summary.json"),
        &summary_text,
    );
    let logs = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    let _ = &logs;
    let summary: Value = serde_json::from_str(summary_text.trim()).unwrap_or_else(|e| {
        panic!(
            "sim summary ({e}): {summary_text}\nsim log:\n{}",
            logs("sim.log")
        )
    });

    // Instance 1 finished its calls and exited on its own, with success.
    let bot1 = bots[1].as_mut().unwrap();
    let exit = tokio::task::block_in_place(|| {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = bot1.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "instance 1 did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    assert!(
        exit.success(),
        "instance 1 exit: {exit}\n{}",
        logs("bot-1.log")
    );
    bots[1] = None;

    let calls = summary["calls"].as_array().expect("calls").clone();
    let figures = tokio::task::block_in_place(|| bot_figures(&calls, &logs));
    let mut per_instance: BTreeMap<String, u64> = BTreeMap::new();
    let mut redirected = 0;
    let mut worst_similarity = f64::MAX;
    // The worst call the host did not stall (at least STALL_EXCUSES, or STEAL_EXCUSES of its
    // CPU), held to the 0.9.
    let mut worst_unstalled = f64::MAX;
    let mut worst_unstalled_call = String::new();
    let mut stalled_calls = 0;
    // The longest pause in the bot's stream of a call on instance 0 or 2 that ran across the
    // SIGTERM, and of any call, the host's longest stall within it aside.
    let (mut gap_across_sigterm, mut gap_any) = (0.0f64, 0.0f64);
    let mut calls_across_sigterm = 0;
    let mut similarities: Vec<(f64, String)> = Vec::new();
    for c in &calls {
        let id = c["call_id"].as_str().unwrap_or("?");
        let instance = c["instance"].as_str().unwrap_or("none").to_owned();
        *per_instance.entry(instance.clone()).or_default() += 1;
        let notes = &c["notifications"];
        redirected += notes["redirected"].as_u64().unwrap_or(0);
        assert_eq!(notes["failed"], 0, "call {id}: {c}");
        assert!(c["frames_to_bot"].as_u64() > Some(0), "call {id}: {c}");
        assert!(c["frames_from_bot"].as_u64() > Some(0), "call {id}: {c}");
        assert!(c["end"]["error"].is_null(), "call {id}: {c}");
        assert!(c["end"]["code"].as_u64() < Some(400), "call {id}: {c}");
        if let Some(s) = c["similarity"].as_f64() {
            // An echo was scored, so its delay was found (the summary's two are one measure).
            assert!(
                c["echo_delay_ms_p50"].as_f64() > Some(0.0),
                "call {id}: {c}"
            );
            let at = |key: &str| {
                let ms = c[key]
                    .as_u64()
                    .unwrap_or_else(|| panic!("call {id}: no {key}: {c}"));
                SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
            };
            let (from, to) = (at("offered_unix_ms"), at("ended_unix_ms"));
            assert!(from < to, "call {id}: {c}");
            let stalled = host
                .within(from, to)
                .map(|st| st.late)
                .max()
                .unwrap_or_default();
            worst_similarity = worst_similarity.min(s);
            let gap = c["bot_stream"]["longest_gap_ms"]
                .as_f64()
                .unwrap_or_else(|| panic!("call {id}: no longest gap: {c}"));
            let stolen = host.steal_within(from, to).unwrap_or(0.0);
            let across = instance != "1" && from < sigterm_at && sigterm_at < to;
            calls_across_sigterm += u32::from(across);
            if stalled >= STALL_EXCUSES || stolen >= STEAL_EXCUSES {
                stalled_calls += 1;
            } else {
                if s < worst_unstalled {
                    worst_unstalled_call = format!("{c}");
                }
                worst_unstalled = worst_unstalled.min(s);
                gap_any = gap_any.max(gap);
                if across {
                    gap_across_sigterm = gap_across_sigterm.max(gap);
                }
            }
            // How often the sim's listener moved its playout, and by how much audio: a move
            // is never of nothing, and nothing is moved without a move.
            let moves = |count: &str, ms: &str| {
                let b = &c["bot_stream"];
                let (Some(n), Some(t)) = (b[count].as_u64(), b[ms].as_f64()) else {
                    panic!("call {id}: no {count} or {ms}: {c}")
                };
                assert_eq!(n == 0, t == 0.0, "call {id}: {count} {n}, {ms} {t}");
                (n, t)
            };
            let later = moves("playout_delays", "playout_delayed_ms");
            let earlier = moves("playout_advances", "playout_advanced_ms");
            // The owner's own account of the call agrees with what the emulator counted: it
            // sent at least what arrived, and took in no more than was sent to it.
            let own = &figures[id];
            let figure = |key: &str| {
                own[key]
                    .as_u64()
                    .unwrap_or_else(|| panic!("call {id}: no {key} in {own}"))
            };
            let (bot_in, bot_out) = (figure("frames_in"), figure("frames_out"));
            let (to_bot, from_bot) = (
                c["frames_to_bot"].as_u64().unwrap_or(0),
                c["frames_from_bot"].as_u64().unwrap_or(0),
            );
            assert!(
                0 < bot_in && bot_in <= to_bot && from_bot <= bot_out,
                "call {id}: the bot's figures {own} against the emulator's {c}"
            );
            similarities.push((
                s,
                format!(
                    "{s:.3} (instance {instance}, echo delay {:.0} ms, frames from the bot {}, \
                     concealed {}, longest gap {:.0} ms, listener's playout moved later {} times \
                     ({:.0} ms) and earlier {} times ({:.0} ms), caller frames skipped {}, \
                     the bot concealed {} of the caller's frames ({} packets late, {} lost), \
                     sent {} with {} underruns and {} stale ticks skipped, \
                     ended by {}, longest host stall {} ms, CPU stolen {:.1} %)",
                    c["echo_delay_ms_p50"].as_f64().unwrap_or(f64::NAN),
                    c["frames_from_bot"],
                    c["bot_stream"]["concealed"],
                    gap,
                    later.0,
                    later.1,
                    earlier.0,
                    earlier.1,
                    c["frames_late"],
                    figure("frames_concealed"),
                    figure("packets_late"),
                    figure("packets_lost"),
                    bot_out,
                    figure("send_underruns"),
                    figure("send_stale_skipped"),
                    c["end"]["by"],
                    stalled.as_millis(),
                    stolen * 100.0,
                ),
            ));
        }
    }
    similarities.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mean_similarity =
        similarities.iter().map(|(s, _)| s).sum::<f64>() / similarities.len().max(1) as f64;
    let median_similarity = similarities
        .get(similarities.len() / 2)
        .map_or(0.0, |(s, _)| *s);
    let lowest: Vec<&str> = similarities
        .iter()
        .take(3)
        .map(|(_, d)| d.as_str())
        .collect();
    let worst_unstalled_text = if worst_unstalled == f64::MAX {
        "none (the host stalled every call)".to_owned()
    } else {
        format!("{worst_unstalled:.3}")
    };
    let line = format!(
        "scale-out: calls per instance {per_instance:?}; notifications redirected {redirected}; \
         worst echo similarity {worst_similarity:.3} (median {median_similarity:.3}, mean {mean_similarity:.3}); \
         worst call the host did not stall {worst_unstalled_text}; host stalls of {} ms or more: {} \
         (longest {} ms, watch {}, CPU stolen by the hypervisor {}), {stalled_calls} calls within one of {} ms or more \
         or with {:.0} % of the CPU stolen; \
         longest pause of the bot's stream in a call the host did not stall {gap_any:.0} ms, \
         in the {calls_across_sigterm} calls on 0 and 2 across the SIGTERM {gap_across_sigterm:.0} ms; \
         instance 1 answered {answered_by_1} before SIGTERM; lowest similarities {lowest:?}",
        STALL_SEEN.as_millis(),
        host.stalls.len(),
        host.longest().unwrap_or_default().as_millis(),
        if host.realtime {
            "real-time"
        } else {
            "not real-time: the stalls include the test's own load"
        },
        host.steal
            .map_or("not reported".to_owned(), |s| format!("{:.1} %", s * 100.0)),
        STALL_EXCUSES.as_millis(),
        STEAL_EXCUSES * 100.0,
    );
    eprintln!("{line}");
    // For CI's log, which shows no output of passing tests (.ci/run prints this file).
    let _ = std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("scale_out.txt"),
        format!("{line}\n"),
    );
    assert_eq!(calls.len() as u64, CALLS, "{summary}");
    assert!(sim_status.success() && summary["ok"] == true, "{summary}");
    for n in 0..INSTANCES {
        let count = per_instance.get(&n.to_string()).copied().unwrap_or(0);
        assert!(
            count >= 5,
            "instance {n} answered {count}: {per_instance:?}"
        );
    }
    assert_eq!(
        per_instance.get("1").copied(),
        Some(answered_by_1),
        "no call landed on instance 1 after its SIGTERM"
    );
    // Every call's echo sounds like what its caller said, across the SIGTERM and the proxy.
    // History of the worst call per run: 0.82-0.95 over many runs of the earlier measure, once
    // 0.60 in CI. That measure misplaced the echo near a call's ends (zeros past the recording
    // read as a match) and scored a jitter buffer's one-frame step inside a half-second piece as
    // damage. With both mended (graph-sim's measure.rs), on 2026-12-02: 0.900-0.949 in 50 of 52
    // runs, 0.892 and 0.595 in the other two (means 0.937-0.957, and 0.903 in the 0.595 run).
    // On 2026-12-03, 25 runs with the host watched (the line above prints the run's figures):
    // worst call 0.90-0.94 in 17; 0.81-0.90 in eight, seven of them while the hypervisor took
    // 5-18 % of the CPU (the watch's stalls of 20 ms or more came only in those), one at 0.5 %
    // (0.898, a 120 ms pause in that call's stream as received). A call the host stalled or
    // stole from is held to this floor only: it still fails an echo that is silence, noise, a
    // tone or another talker (those score below 0.4).
    let floor = 0.5;
    test_kit::figure::at_least(
        "scale_out worst echo similarity",
        worst_similarity,
        floor,
        &per_instance,
    );
    // The 0.9 for every call the host let run: not stalled for STALL_EXCUSES by the
    // watch (one real-time thread per CPU), nor with STEAL_EXCUSES of the CPU taken during it.
    // Measured 2026-12-04 on an idle host (no steal): worst call 0.938-0.954 in 14 runs. A
    // busy loop beside the test (another process's load, which neither watch nor steal sees)
    // brought it to 0.893-0.935 in 4 runs; the bound assumes a machine running this test
    // alone, as `cargo test` does (one test binary at a time).
    if worst_unstalled < f64::MAX {
        test_kit::figure::at_least(
            "scale_out worst echo similarity of a call the host let run",
            worst_unstalled,
            0.9,
            &format!("{line}\nthat call: {worst_unstalled_call}"),
        );
    }
    // The other instances' calls kept their stream across instance 1's SIGTERM: no pause
    // longer than half a second, the host's own stalls aside. Measured 2026-12-03 in 25 runs:
    // 28-171 ms (171 with the hypervisor taking 6 % of the CPU), and
    // up to 221 ms in calls nowhere near the SIGTERM, so such pauses come from the load of
    // three bots and the emulator on two cores, not from the drain; a drain that held the
    // other processes up would show here as seconds.
    assert!(calls_across_sigterm >= 3, "{line}");
    test_kit::figure::at_most(
        "scale_out longest pause of a stream across the SIGTERM",
        gap_across_sigterm,
        500.0,
        &line,
    );
    // The 0.9 is asserted for the typical call: medians 0.952-0.958 in six runs, and
    // no run's mean fell under 0.9 without an injected stall of the whole host (150 ms frozen
    // every 3 s: means 0.892-0.900). On 2026-12-03: 0.937-0.954 in 17 runs with under 5 % of
    // the CPU stolen, 0.907-0.930 in eight with 5-18 % stolen.
    test_kit::figure::at_least(
        "scale_out median echo similarity",
        median_similarity,
        0.9,
        &per_instance,
    );
    // Calls in progress across the SIGTERM kept their audio: no call lost a stretch of it.
    let fewest_frames = calls
        .iter()
        .filter_map(|c| c["frames_from_bot"].as_u64())
        .min()
        .unwrap_or(0);
    test_kit::figure::at_least(
        "scale_out fewest frames from the bot in a call",
        fewest_frames as f64,
        (CALL_SECONDS * 50 / 2) as f64,
        &per_instance,
    );
    // Nothing reached an instance that did not own it.
    for n in [0, 2] {
        for name in [
            "mediabot_notifications_redirected_total",
            "mediabot_unknown_call_notifications_dropped_total",
            "mediabot_unknown_call_notifications",
        ] {
            let v = metric(&http, &bases[n], name).await;
            assert_eq!(v, Some(0.0), "instance {n} {name}");
        }
        let failed = metric_where(
            &http,
            &bases[n],
            "mediabot_calls_total{",
            "outcome=\"failed\"",
        )
        .await;
        assert_eq!(failed, Some(0.0), "instance {n} failed calls");
    }
    // Instances 0 and 2 are killed with the rest when their guards drop.
    drop(bots);
}
