//! Whole calls on made-up time (`mediabot::_internal_test_exports::harness`): graph-sim's
//! service core, the bot's call cores and the audio engine's workers stepped together, with no
//! sockets, threads or sleeps. Each test is the same run every time, however fast or loaded the
//! machine is; the real-time suite (`tests/e2e`) keeps what needs real sockets.

mod calls;
mod faults;
mod lifecycle;

use std::time::Duration;

use mediabot::_internal_test_exports::harness::{Harness, HarnessCall, HarnessConfig};
use mediabot::call_core::{AppRequest, CallEvent, Ticket};
use mediabot::crates::graph_signaling::models::CallState;
use mediabot::crates::graph_sim::scenario::{Scenario, SimUser, Voice};

/// Longer than anything signaling takes in the sim (its default delays are tens of ms).
pub(crate) const SETTLE: Duration = Duration::from_secs(5);

pub(crate) fn tones(tones: &[(&str, f32)]) -> Scenario {
    Scenario {
        seed: 11,
        users: tones
            .iter()
            .map(|(name, hz)| SimUser::new(*name, Voice::Tone { tone_hz: *hz }))
            .collect(),
        ..Scenario::default()
    }
}

pub(crate) fn harness(scenario: Scenario) -> Harness {
    Harness::new(scenario, HarnessConfig::default())
}

pub(crate) fn call<'a>(h: &'a Harness, id: &str) -> &'a HarnessCall {
    h.call(id).expect("the bot holds the call")
}

pub(crate) fn states(c: &HarnessCall) -> Vec<CallState> {
    c.events
        .iter()
        .filter_map(|e| match e {
            CallEvent::StateChanged { to, .. } => Some(to.clone()),
            _ => None,
        })
        .collect()
}

pub(crate) fn established(h: &Harness, id: &str) -> bool {
    h.call(id)
        .is_some_and(|c| c.core().state() == Some(&CallState::Established))
}

pub(crate) fn terminated(c: &HarnessCall) -> bool {
    c.events
        .iter()
        .any(|e| matches!(e, CallEvent::Terminated(_)))
}

/// Places a call to scenario user `user` and runs until it is established with media up.
pub(crate) fn placed(h: &mut Harness, user: usize) -> String {
    let id = h.place_call(&h.user_id(user)).expect("the call is placed");
    assert!(
        h.run_until(SETTLE, |h| {
            established(h, &id) && h.call(&id).is_some_and(|c| c.core().media_connected())
        }),
        "established with media: {:?}",
        h.call(&id).map(|c| &c.events)
    );
    id
}

/// Hangs call `id` up from the bot and runs until it is released.
pub(crate) fn hang_up(h: &mut Harness, id: &str) -> Ticket {
    let ticket = h.request(id, AppRequest::HangUp(Ticket(0)));
    assert!(
        h.run_until(SETTLE * 4, |h| h
            .call(id)
            .is_some_and(HarnessCall::is_released)),
        "released after the hang-up: {:?}",
        h.call(id).map(|c| &c.events)
    );
    ticket
}
