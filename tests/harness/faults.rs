//! Faults of the service: throttling, duplicated and reordered notifications.

use std::time::Duration;

use mediabot::call_core::{AppRequest, CallAction, CallEvent, Ticket};
use mediabot::crates::graph_signaling::models::{
    CallState, IdentitySet, InvitationParticipantInfo,
};
use mediabot::crates::graph_sim::faults::SignalingFaults;
use mediabot::crates::graph_sim::scenario::Scenario;

use crate::{SETTLE, call, hang_up, harness, placed, states, tones};

fn with_faults(signaling: SignalingFaults) -> Scenario {
    Scenario {
        signaling,
        ..tones(&[("Alice", 440.0), ("Bob", 660.0)])
    }
}

/// Three 429s with `Retry-After: 1` answer the first create-call attempts. The bot retries
/// (a 429 means the service did not act) and exactly one call is created, which works.
#[test]
fn a_429_storm_at_creation_creates_exactly_one_working_call() {
    let mut h = harness(with_faults(SignalingFaults {
        throttle_first: 3,
        retry_after_s: 1,
        ..SignalingFaults::default()
    }));
    let start = h.now();
    let id = placed(&mut h, 0);
    // Three waits of the Retry-After second.
    assert!(h.now() - start >= Duration::from_secs(3));
    assert_eq!(h.sim().active_calls().collect::<Vec<_>>(), [id.as_str()]);
    h.run_for(Duration::from_secs(1));
    assert!(call(&h, &id).unmixed.values().sum::<u64>() >= 40);
    hang_up(&mut h, &id);
}

/// Half the notifications are posted twice and a third held back behind the next. The
/// call's state and roster come out right and every event is seen once.
#[test]
fn duplicated_and_reordered_notifications_leave_state_and_roster_right() {
    let mut h = harness(with_faults(SignalingFaults {
        notification_duplicate: 0.5,
        notification_reorder: 0.3,
        ..SignalingFaults::default()
    }));
    let (alice, bob) = (h.user_id(0), h.user_id(1));
    let id = placed(&mut h, 0);
    let ticket = h.request(
        &id,
        AppRequest::Action(
            Ticket(0),
            CallAction::Invite(vec![InvitationParticipantInfo::new(IdentitySet::user(
                &bob, None,
            ))]),
        ),
    );
    assert!(h.run_until(SETTLE, |h| {
        call(h, &id).replies.iter().any(|(t, _)| *t == ticket)
    }));
    h.run_for(Duration::from_secs(2));
    hang_up(&mut h, &id);
    let c = call(&h, &id);
    assert!(h.notifications > 5);
    // Forward only, each state once.
    let seen = states(c);
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique, seen);
    assert_eq!(
        seen.iter()
            .filter(|s| **s == CallState::Established)
            .count(),
        1
    );
    let joined: Vec<String> = c
        .events
        .iter()
        .filter_map(|e| match e {
            CallEvent::ParticipantJoined(_, p) => Some(p.identity_label()),
            _ => None,
        })
        .filter(|label| label.starts_with("user:"))
        .collect();
    assert_eq!(joined.len(), 2, "Alice and Bob, once each: {joined:?}");
    assert!(joined.iter().any(|l| l.contains(&alice)));
    assert!(joined.iter().any(|l| l.contains(&bob)));
    let ops = c
        .events
        .iter()
        .filter(|e| matches!(e, CallEvent::OperationFinished(_)))
        .count();
    assert_eq!(ops, 1, "the invite finishes once");
    assert_eq!(c.replies.iter().filter(|(t, _)| *t == ticket).count(), 1);
    assert_eq!(
        c.events
            .iter()
            .filter(|e| matches!(e, CallEvent::Terminated(_)))
            .count(),
        1
    );
}
