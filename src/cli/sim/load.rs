//! `mediabot sim --incoming-calls N`: a stream of incoming calls offered to a bot (or to a
//! proxy in front of several), each from a simulated user who talks and hangs up, and the
//! summary of what became of each.

use std::time::{Duration, SystemTime};

use graph_sim::media::MediaReport;
use graph_sim::server::SimHandle;
use graph_sim::service::{Caller, PersonAction};
use mediabot::CallState;
use serde_json::{Value, json};

/// What to offer.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) callback: String,
    pub(crate) calls: u32,
    pub(crate) every: Duration,
    pub(crate) delay: Duration,
    pub(crate) stay: Duration,
}

/// How long an offered call may take to be answered and established: the service's answer
/// window (15 s), plus redeliveries.
const ESTABLISH_WITHIN: Duration = Duration::from_secs(30);

/// How often a caller's task looks at its call.
const POLL: Duration = Duration::from_millis(20);

/// One offered call, as the load saw it.
#[derive(Debug, Clone)]
pub(crate) struct Offered {
    pub(crate) call_id: String,
    pub(crate) established: bool,
    /// When the call was offered and when it was seen ended (wall clock, so a test can set a
    /// call against what it measured of the host meanwhile).
    pub(crate) offered_at: SystemTime,
    pub(crate) ended_at: SystemTime,
}

/// Offers the calls of `plan` and returns once every one of them has ended (or could not be
/// offered at all).
pub(crate) async fn offer(sim: SimHandle, plan: Plan) -> Vec<Offered> {
    tokio::time::sleep(plan.delay).await;
    let users = sim.with_sim(|s, _| s.directory().count()).max(1);
    let mut callers = Vec::new();
    let mut next = tokio::time::Instant::now();
    for i in 0..plan.calls {
        tokio::time::sleep_until(next).await;
        next += plan.every;
        let action = PersonAction::CallBot {
            callback_uri: &plan.callback,
            caller: Caller::ScenarioUser(i as usize % users),
        };
        let Ok(offered) = sim.with_sim(|s, now| s.handle_person(now, action)) else {
            continue;
        };
        callers.push(tokio::spawn(caller(
            sim.clone(),
            offered.call_id,
            plan.stay,
        )));
    }
    let mut out = Vec::new();
    for c in callers {
        if let Ok(o) = c.await {
            out.push(o);
        }
    }
    out
}

/// The caller of one call: waits for the bot to answer, talks for `stay`, hangs up, and waits
/// for the call's end.
async fn caller(sim: SimHandle, call_id: String, stay: Duration) -> Offered {
    let offered_at = SystemTime::now();
    let state = |sim: &SimHandle| sim.with_sim(|s, _| s.call_state(&call_id));
    let deadline = tokio::time::Instant::now() + ESTABLISH_WITHIN;
    let mut established = false;
    while tokio::time::Instant::now() < deadline {
        match state(&sim) {
            Some(CallState::Established) => {
                established = true;
                break;
            }
            Some(s) if s.is_final() => break,
            _ => tokio::time::sleep(POLL).await,
        }
    }
    if established {
        tokio::time::sleep(stay).await;
        // The caller is the call's first member: their leaving ends the P2P call.
        let me = sim.with_sim(|s, _| {
            s.roster(&call_id)
                .and_then(|r| r.into_iter().find(|e| !e.bot).map(|e| e.source_id))
        });
        if let Some(source_id) = me {
            let _ = sim.with_sim(|s, now| {
                s.handle_person(
                    now,
                    PersonAction::Leave {
                        call_id: &call_id,
                        source_id,
                    },
                )
            });
        }
    }
    // However it goes, the call ends (the bot hangs up, or the answer window closes).
    let end = tokio::time::Instant::now() + ESTABLISH_WITHIN;
    while tokio::time::Instant::now() < end && !state(&sim).is_some_and(|s| s.is_final()) {
        tokio::time::sleep(POLL).await;
    }
    Offered {
        call_id,
        established,
        offered_at,
        ended_at: SystemTime::now(),
    }
}

/// The instance id in a callback URL's `/instances/{id}/` path, if any.
fn instance_of(callback: &str) -> Option<&str> {
    let mut parts = callback.split('/');
    parts.by_ref().find(|p| *p == "instances")?;
    parts.next().filter(|id| !id.is_empty())
}

/// Milliseconds since the Unix epoch (0 for a clock set before it).
fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The summary `--json` prints.
pub(crate) fn summary(sim: &SimHandle, offered: &[Offered], media: &MediaReport) -> Value {
    let mut ok = true;
    let calls: Vec<Value> = offered
        .iter()
        .map(|o| {
            let callback = sim.with_sim(|s, _| s.callback_uri(&o.call_id).map(str::to_owned));
            let notes = sim.call_notifications(&o.call_id);
            let report = media.calls.iter().find(|c| c.call_id == o.call_id);
            let p = report.and_then(|c| c.participants.first());
            let to_bot = p.map_or(0, |p| p.frames_sent);
            let from_bot = p.map_or(0, |p| p.frames_received);
            let clean = report
                .is_some_and(|c| c.error.is_none() && c.result.is_some_and(|(code, _)| code < 400));
            ok &= o.established && to_bot > 0 && from_bot > 0 && clean;
            json!({
                "call_id": o.call_id,
                "instance": callback.as_deref().and_then(instance_of),
                "notifications": {
                    "delivered": notes.delivered,
                    "redirected": notes.redirected,
                    "redelivered": notes.redelivered,
                    "failed": notes.failed,
                    "legacy_resent": notes.legacy_resent,
                },
                "frames_to_bot": to_bot,
                "frames_from_bot": from_bot,
                "similarity": p.and_then(|p| p.similarity),
                "echo_delay_ms_p50": p.and_then(|p| p.echo_delay_ms_p50),
                "frames_late": p.map_or(0, |p| p.frames_late),
                "bot_stream": report.map(|c| json!({
                    "concealed": c.bot.concealed,
                    "discarded": c.bot.discarded,
                    "jitter_ms": c.bot.jitter_ms,
                    "longest_gap_ms": c.bot.longest_gap_ms,
                    "playout_delays": c.bot.playout_delays,
                    "playout_delayed_ms": c.bot.playout_delayed_ms,
                    "playout_advances": c.bot.playout_advances,
                    "playout_advanced_ms": c.bot.playout_advanced_ms,
                })),
                "offered_unix_ms": unix_ms(o.offered_at),
                "ended_unix_ms": unix_ms(o.ended_at),
                "end": report.map(|c| json!({
                    "by": c.ended_by,
                    "code": c.result.map(|r| r.0),
                    "subcode": c.result.map(|r| r.1),
                    "error": c.error,
                })),
            })
        })
        .collect();
    json!({ "ok": ok && !offered.is_empty(), "calls": calls })
}

#[cfg(test)]
mod tests {
    use super::instance_of;

    #[test]
    fn the_instance_is_read_from_the_callback_path() {
        assert_eq!(
            instance_of("https://bot.example.com/instances/2/callback"),
            Some("2")
        );
        assert_eq!(instance_of("http://127.0.0.1:9/callback"), None);
        assert_eq!(instance_of("http://h/instances//callback"), None);
    }
}
