//! The `legacy_first` fault: each call's first notification comes with a legacy-format form
//! to post before it, recognisable as such by a bot; every later one is Graph only.

use graph_signaling::models::is_legacy_notification;

use super::*;
use crate::faults::SignalingFaults;

fn legacy_scenario() -> Scenario {
    Scenario {
        signaling: SignalingFaults {
            legacy_first: true,
            ..SignalingFaults::default()
        },
        ..Scenario::two_users()
    }
}

fn is_legacy(v: &Value) -> bool {
    is_legacy_notification(&serde_json::to_vec(v).unwrap())
}

#[test]
fn an_outgoing_calls_first_notification_has_a_legacy_form_and_the_rest_do_not() {
    let mut h = Harness::new(legacy_scenario());
    let alice = user_id(&h, "Alice");
    let call = h.create_p2p(&alice);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.legacy.len(), 1, "one legacy form per call");
    let (id, legacy, graph) = &h.legacy[0];
    assert_eq!(id, &call);
    assert!(is_legacy(legacy), "{legacy}");
    assert_eq!(legacy["id"], call.as_str());
    assert_eq!(legacy["type"], "callStateChange");
    assert_eq!(legacy["currentState"], "establishing");
    // The Graph body that follows is the first one posted, unchanged by the fault.
    assert_eq!(graph, &h.posted[0]);
    assert_eq!(graph["value"][0]["resourceData"]["state"], "establishing");
    assert!(!is_legacy(graph));
    // The call went on as it does without the fault.
    assert_eq!(
        h.states(&call),
        [CallState::Establishing, CallState::Established]
    );

    // Without the fault there is no legacy form at all.
    let mut plain = Harness::new(Scenario::two_users());
    let alice = user_id(&plain, "Alice");
    plain.create_p2p(&alice);
    plain.advance(Duration::from_secs(1));
    assert!(plain.legacy.is_empty());
    assert_eq!(
        plain.posted, h.posted,
        "the same Graph notifications, fault or not"
    );
}

#[test]
fn an_incoming_offer_becomes_a_legacy_conversation() {
    let mut h = Harness::new(legacy_scenario());
    let call = h.offer_incoming(0);
    h.advance(Duration::from_millis(10));
    let (id, legacy, graph) = &h.legacy[0];
    assert_eq!(id, &call);
    assert!(is_legacy(legacy), "{legacy}");
    assert_eq!(legacy["callState"], "incoming");
    assert_eq!(legacy["links"]["callback"], "http://127.0.0.1:9/callback");
    assert_eq!(legacy["participants"][0]["originator"], true);
    assert_eq!(
        legacy["participants"][1]["identity"],
        format!("28:{}", SimConfig::default().app_id)
    );
    assert_eq!(graph["value"][0]["changeType"], "created");
    // A second call gets its own legacy first notification.
    h.offer_incoming(1);
    h.advance(Duration::from_millis(10));
    assert_eq!(h.legacy.len(), 2);
}
