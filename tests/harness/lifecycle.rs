//! keepAlive, the service's timeout, hang-ups from either side, and what is left after the
//! end: nothing.

use std::time::Duration;

use mediabot::_internal_test_exports::harness::{Harness, HarnessConfig};
use mediabot::call_core::{AppRequest, CallAction, CallConfig, CallEvent, CallRequest, Ticket};
use mediabot::crates::graph_sim::service::{PersonAction, SimConfig};

use crate::{SETTLE, call, hang_up, placed, terminated, tones};

fn impatient(keepalive: Duration) -> Harness {
    Harness::new(
        tones(&[("Alice", 440.0)]),
        HarnessConfig {
            sim: SimConfig {
                keepalive_timeout: Duration::from_secs(2),
                ..SimConfig::default()
            },
            call: CallConfig {
                keepalive_interval: keepalive,
                ..CallConfig::default()
            },
            ..HarnessConfig::default()
        },
    )
}

#[test]
fn keepalive_keeps_a_call_past_the_services_timeout() {
    let mut h = impatient(Duration::from_millis(500));
    let id = placed(&mut h, 0);
    // Three times the service's timeout.
    h.run_for(Duration::from_secs(6));
    let c = call(&h, &id);
    assert!(!terminated(c), "{:?}", c.events);
    let keepalives = c
        .requests
        .iter()
        .filter(|r| r.kind == CallRequest::KeepAlive)
        .count();
    assert_eq!(keepalives, 12, "one every 500 ms");
    hang_up(&mut h, &id);
}

#[test]
fn a_call_without_keepalive_is_ended_by_the_service_and_released() {
    // The default interval (15 min) never fires within the sim's 2 s timeout.
    let mut h = impatient(CallConfig::default().keepalive_interval);
    let id = placed(&mut h, 0);
    assert!(h.run_until(SETTLE, |h| call(h, &id).is_released()));
    let c = call(&h, &id);
    let info = c
        .events
        .iter()
        .find_map(|e| match e {
            CallEvent::Terminated(info) => info.clone(),
            _ => None,
        })
        .expect("terminated with a resultInfo");
    assert_eq!(
        (info.code.get().copied(), info.subcode.get().copied()),
        (Some(408), Some(8537)),
        "{info:?}"
    );
    assert!(c.streams().is_empty());
}

/// The callee hangs up a P2P call: the service ends it, the bot's core releases it, and an
/// action asked afterwards fails at once as the call is over.
#[test]
fn the_service_ending_the_call_releases_it_and_pending_actions_fail() {
    let mut h = crate::harness(tones(&[("Alice", 440.0)]));
    let id = placed(&mut h, 0);
    let alice = call(&h, &id).streams()[0];
    let now = h.now();
    let leaves = PersonAction::Leave {
        call_id: &id,
        source_id: alice.get(),
    };
    assert!(h.sim_mut().handle_person(now, leaves).is_ok());
    assert!(h.run_until(SETTLE, |h| call(h, &id).is_released()));
    let ticket = h.request(&id, AppRequest::Action(Ticket(0), CallAction::MuteSelf));
    let c = call(&h, &id);
    assert!(terminated(c));
    // A released core takes no more input: nothing is asked of the service, no reply comes.
    assert!(!c.replies.iter().any(|(t, _)| *t == ticket));
    assert!(
        !c.requests
            .iter()
            .any(|r| matches!(r.kind, CallRequest::MuteSelf { .. }))
    );
}

/// 50 calls placed and ended one after another: every one is released with nothing left in
/// the engine or the early buffer.
#[test]
fn many_calls_leave_nothing_behind() {
    let mut h = crate::harness(tones(&[("Alice", 440.0)]));
    for _ in 0..50 {
        let id = placed(&mut h, 0);
        h.run_for(Duration::from_millis(100));
        hang_up(&mut h, &id);
    }
    assert_eq!(h.calls().count(), 50);
    assert!(
        h.calls()
            .all(|(_, c)| c.is_released() && c.core().pending_requests() == 0)
    );
    h.run_for(Duration::from_secs(61));
    assert_eq!(h.early_held(), 0, "late notifications expire");
    assert_eq!(h.sim().active_calls().count(), 0);
}
