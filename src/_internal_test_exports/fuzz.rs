//! The sequence fuzz target over the service core and the bot's call cores: arbitrary
//! sequences of service, application and time inputs, with the invariants every run must keep.

use std::collections::BTreeSet;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use graph_signaling::models::{CallState, IdentitySet, InvitationParticipantInfo, RecordingStatus};
use graph_signaling::state::ParticipantKey;
use graph_sim::faults::SignalingFaults;
use graph_sim::scenario::{Scenario, SimUser, Voice};
use graph_sim::service::PersonAction;

use super::harness::{Harness, HarnessCall, HarnessConfig};
use crate::call_core::{AppRequest, CallAction, CallEvent, Ticket};

/// One thing that happens.
#[derive(Debug, Arbitrary)]
enum Step {
    /// Time passes (up to about 6.5 s).
    Advance(u16),
    /// The bot calls a user.
    Place(u8),
    /// A user calls the bot.
    Offer(u8),
    /// The bot answers an offered call.
    Answer(u8),
    /// The bot hangs a call up.
    HangUp(u8),
    /// The bot invites a user into a call.
    Invite(u8, u8),
    /// The bot mutes or unmutes itself.
    Mute(u8, bool),
    /// The bot sets its recording status.
    Recording(u8, bool),
    /// A member of a call hangs up.
    Leave(u8, u8),
    /// A call's media path fails.
    MediaFails(u8),
}

/// A run: how the service misbehaves, then what happens.
#[derive(Debug, Arbitrary)]
struct Plan {
    duplicate: u8,
    reorder: u8,
    throttle_first: u8,
    steps: Vec<Step>,
}

/// Runs the plan `data` describes and checks, after every step and at the end:
/// - a call's states only move forward, each once, nothing after `terminated`;
/// - every source bound in the engine belongs to a participant on the core's roster, and
///   every participant's bound source has its stream;
/// - a released call holds nothing: no streams, no media, no request awaited;
/// - every application request gets exactly one reply once its call is released;
/// - at the end, after the service and the bot have had time to settle, calls the service
///   still holds have the service's roster, every other call is released, and no stray
///   notification is kept.
///
/// # Panics
/// When an invariant breaks (that is the fuzzer's finding).
pub fn call_sequence(data: &[u8]) {
    let Ok(plan) = Plan::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let scenario = Scenario {
        seed: 5,
        users: ["Alice", "Bob", "Carol"]
            .iter()
            .map(|n| SimUser::new(*n, Voice::Tone { tone_hz: 440.0 }))
            .collect(),
        signaling: SignalingFaults {
            notification_duplicate: f64::from(plan.duplicate) / 512.0,
            notification_reorder: f64::from(plan.reorder) / 512.0,
            throttle_first: u32::from(plan.throttle_first % 4),
            retry_after_s: 1,
            ..SignalingFaults::default()
        },
        ..Scenario::default()
    };
    let mut config = HarnessConfig {
        audio: false,
        ..HarnessConfig::default()
    };
    // No audio flows: the cheapest resampler keeps opening calls fast.
    config.engine.resampler = audio_pipeline::resample::ResamplerKind::PolyCubic;
    let mut h = Harness::new(scenario, config);
    let mut asked: Vec<(String, Ticket)> = Vec::new();
    for step in plan.steps.into_iter().take(64) {
        run(&mut h, step, &mut asked);
        check(&h, &asked, false);
    }
    // Past every grace and expiry: the release grace, the early buffer's minute.
    h.run_for(Duration::from_secs(75));
    check(&h, &asked, true);
}

fn nth_call(h: &Harness, i: u8) -> Option<String> {
    let n = h.calls().count();
    (n > 0).then(|| {
        h.calls()
            .nth(usize::from(i) % n)
            .map(|(id, _)| id.to_owned())
    })?
}

fn run(h: &mut Harness, step: Step, asked: &mut Vec<(String, Ticket)>) {
    let mut ask = |h: &mut Harness, call: u8, request: AppRequest| {
        if let Some(id) = nth_call(h, call) {
            let ticket = h.request(&id, request);
            asked.push((id, ticket));
        }
    };
    match step {
        Step::Advance(ms) => h.run_for(Duration::from_millis(u64::from(ms) / 10)),
        Step::Place(user) => {
            let id = h.user_id(usize::from(user % 3));
            let _ = h.place_call(&id);
        }
        Step::Offer(user) => {
            let _ = h.offer_incoming_call(usize::from(user % 3));
        }
        Step::Answer(i) => {
            let offers: Vec<String> = h.offers().map(str::to_owned).collect();
            if !offers.is_empty() {
                let _ = h.answer(&offers[usize::from(i) % offers.len()]);
            }
        }
        Step::HangUp(call) => ask(h, call, AppRequest::HangUp(Ticket(0))),
        Step::Invite(call, user) => {
            let who = IdentitySet::user(h.user_id(usize::from(user % 3)), None);
            let action = CallAction::Invite(vec![InvitationParticipantInfo::new(who)]);
            ask(h, call, AppRequest::Action(Ticket(0), action));
        }
        Step::Mute(call, on) => {
            let action = if on {
                CallAction::MuteSelf
            } else {
                CallAction::UnmuteSelf
            };
            ask(h, call, AppRequest::Action(Ticket(0), action));
        }
        Step::Recording(call, on) => {
            let status = if on {
                RecordingStatus::Recording
            } else {
                RecordingStatus::NotRecording
            };
            let action = CallAction::UpdateRecordingStatus(status);
            ask(h, call, AppRequest::Action(Ticket(0), action));
        }
        Step::Leave(call, member) => {
            if let Some(id) = nth_call(h, call)
                && let Some(roster) = h.sim().roster(&id)
            {
                let people: Vec<u32> = roster
                    .iter()
                    .filter(|e| !e.bot)
                    .map(|e| e.source_id)
                    .collect();
                if !people.is_empty() {
                    let source = people[usize::from(member) % people.len()];
                    let now = h.now();
                    let action = PersonAction::Leave {
                        call_id: &id,
                        source_id: source,
                    };
                    let _ = h.sim_mut().handle_person(now, action);
                }
            }
        }
        Step::MediaFails(call) => {
            if let Some(id) = nth_call(h, call) {
                h.media_fails(&id);
            }
        }
    }
}

/// Order of call states; a call never moves to a lower one.
fn rank(state: &CallState) -> u8 {
    match state {
        CallState::Incoming => 0,
        CallState::Establishing | CallState::Ringing => 1,
        CallState::Terminating => 3,
        CallState::Terminated => 4,
        _ => 2,
    }
}

fn check(h: &Harness, asked: &[(String, Ticket)], settled: bool) {
    for (id, call) in h.calls() {
        check_states(id, call);
        check_binds(id, call);
        if call.core().is_released() {
            assert!(
                call.is_released(),
                "{id}: the core released, the harness did not"
            );
            assert!(
                call.streams().is_empty(),
                "{id}: streams left after the release"
            );
            assert_eq!(call.core().pending_requests(), 0, "{id}: requests left");
            for (_, ticket) in asked.iter().filter(|(c, _)| c == id) {
                let replies = call.replies.iter().filter(|(t, _)| t == ticket).count();
                assert!(replies <= 1, "{id}: {ticket:?} answered {replies} times");
            }
        }
    }
    if !settled {
        return;
    }
    assert_eq!(h.early_held(), 0, "stray notifications are still kept");
    let live: BTreeSet<String> = h.sim().active_calls().map(str::to_owned).collect();
    for (id, call) in h.calls() {
        match h.sim().roster(id) {
            Some(roster) if live.contains(id) => {
                // The service still holds the call: the bot's roster is the service's.
                let mut theirs: Vec<String> = roster.into_iter().map(|e| e.id).collect();
                theirs.sort();
                let mut ours: Vec<String> = call
                    .core()
                    .roster()
                    .entries()
                    .filter_map(|(k, _)| match k {
                        ParticipantKey::Id(id) => Some(id.clone()),
                        _ => None,
                    })
                    .collect();
                ours.sort();
                assert_eq!(ours, theirs, "{id}: the roster did not converge");
            }
            _ => {
                assert!(
                    call.is_released(),
                    "{id}: over at the service, not released"
                );
                // Every request asked of a released call was answered, once.
                for (_, ticket) in asked.iter().filter(|(c, _)| c == id) {
                    let n = call.replies.iter().filter(|(t, _)| t == ticket).count();
                    assert_eq!(n, 1, "{id}: {ticket:?} answered {n} times");
                }
            }
        }
    }
}

fn check_states(id: &str, call: &HarnessCall) {
    let mut last: Option<&CallState> = None;
    let mut over = false;
    for e in &call.events {
        assert!(!over, "{id}: {e:?} after the call terminated");
        match e {
            CallEvent::StateChanged { to, .. } => {
                if let Some(prev) = last {
                    assert!(
                        rank(to) >= rank(prev) && to != prev,
                        "{id}: {prev:?} -> {to:?}"
                    );
                }
                last = Some(to);
            }
            CallEvent::Terminated(_) => over = true,
            _ => {}
        }
    }
}

fn check_binds(id: &str, call: &HarnessCall) {
    if call.core().is_released() {
        return;
    }
    let bound: BTreeSet<_> = call
        .core()
        .roster()
        .entries()
        .flat_map(|(_, e)| e.bound.iter().copied())
        .collect();
    let streams: BTreeSet<_> = call.streams().into_iter().collect();
    assert_eq!(
        streams, bound,
        "{id}: streams and the roster's binds differ"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few hand-written plans, so the target's checks are exercised by `cargo test` too.
    #[test]
    fn plans_keep_the_invariants() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for len in [0usize, 16, 64, 256, 1024] {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    (rng >> 24) as u8
                })
                .collect();
            call_sequence(&data);
        }
    }
}
