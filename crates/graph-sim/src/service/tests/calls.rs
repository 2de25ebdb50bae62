//! A call's life: placed, established, kept alive, hung up; incoming calls answered, left to
//! ring out, redirected; transfers and declines.

use super::*;

#[test]
fn p2p_call_establishes_binds_and_hangs_up() {
    let mut h = Harness::new(Scenario::two_users());
    let alice = user_id(&h, "Alice");
    let call = h.create_p2p(&alice);
    h.advance(Duration::from_secs(1));
    assert_eq!(
        h.states(&call),
        [CallState::Establishing, CallState::Established]
    );
    assert_eq!(
        h.bound_sources(&call).len(),
        1,
        "Alice's stream is bound, the bot's is not"
    );
    assert!(
        h.sim_events
            .iter()
            .any(|e| matches!(e, SimEvent::MediaRequested { blob, .. }
        if blob.mp_uri.to_string() == "net.tcp://bot.contoso.com:18732/MediaProcessor"))
    );
    assert!(
        h.sim_events
            .iter()
            .any(|e| matches!(e, SimEvent::SourceAdded { name, .. } if name == "Alice"))
    );

    let get = h.request(
        Method::Get,
        &format!("/communications/calls/{call}"),
        &Value::Null,
    );
    assert_eq!(get.body.unwrap()["state"], "established");

    let del = h.request(
        Method::Delete,
        &format!("/communications/calls/{call}"),
        &Value::Null,
    );
    assert_eq!(del.status, 204);
    h.advance(Duration::from_millis(10));
    assert_eq!(h.states(&call).last(), Some(&CallState::Terminated));
    assert!(h.bound_sources(&call).is_empty(), "terminated call unbinds");
    let again = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/keepAlive"),
        &Value::Null,
    );
    assert_eq!(again.status, 404);
}

#[test]
fn keepalive_keeps_a_call_and_its_absence_ends_it() {
    let config = SimConfig {
        keepalive_timeout: Duration::from_secs(60),
        ..SimConfig::default()
    };
    let mut h = Harness::with_config(config, Scenario::two_users());
    let alice = user_id(&h, "Alice");
    let kept = h.create_p2p(&alice);
    let dropped = h.create_p2p(&alice);
    for _ in 0..5 {
        h.advance(Duration::from_secs(40));
        let r = h.request(
            Method::Post,
            &format!("/communications/calls/{kept}/keepAlive"),
            &Value::Null,
        );
        assert_eq!(r.status, 200);
    }
    assert_eq!(h.sim.call_state(&kept), Some(CallState::Established));
    assert_eq!(h.sim.call_state(&dropped), Some(CallState::Terminated));
    let end = h.events.iter().find_map(|(id, e)| match e {
        SignalingEvent::Terminated(info) if *id == dropped => info.clone(),
        _ => None,
    });
    let end = end.expect("terminated with resultInfo");
    assert_eq!(
        (end.code.get().copied(), end.subcode.get().copied()),
        (Some(408), Some(8537))
    );
}

#[test]
fn reversed_establishing_order_never_regresses() {
    let mut scenario = Scenario::two_users();
    scenario.signaling.established_first = true;
    let mut h = Harness::new(scenario);
    let alice = user_id(&h, "Alice");
    let call = h.create_p2p(&alice);
    h.advance(Duration::from_secs(1));
    let posted_states: Vec<&str> = h
        .posted
        .iter()
        .filter_map(|b| b["value"][0]["resourceData"]["state"].as_str())
        .collect();
    assert_eq!(posted_states, ["established", "establishing"]);
    assert_eq!(
        h.registry.get(&call).unwrap().state(),
        Some(&CallState::Established)
    );
}

#[test]
fn incoming_call_answered_or_left_to_expire() {
    let mut h = Harness::new(Scenario::two_users());
    let call = h.offer_incoming(0);
    h.drain();
    let created = &h.posted[0]["value"][0];
    assert_eq!(created["changeType"], "created");
    assert_eq!(created["resourceData"]["state"], "incoming");
    assert_eq!(created["resourceData"]["direction"], "incoming");
    let answer = json!({
        "callbackUri": "http://127.0.0.1:9/callback",
        "mediaConfig": {"@odata.type": "#microsoft.graph.appHostedMediaConfig", "blob": DOCUMENTED_BLOB},
        "acceptedModalities": ["audio"]
    });
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/answer"),
        &answer,
    );
    assert_eq!(r.status, 202, "{:?}", r.body);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.sim.call_state(&call), Some(CallState::Established));
    assert_eq!(h.bound_sources(&call).len(), 1);

    let missed = h.offer_incoming(1);
    h.advance(Duration::from_secs(16));
    assert_eq!(h.sim.call_state(&missed), Some(CallState::Terminated));
    let late = h.request(
        Method::Post,
        &format!("/communications/calls/{missed}/answer"),
        &answer,
    );
    assert_eq!(late.status, 404);
}

#[test]
fn incoming_calls_can_be_redirected_and_established_calls_transferred() {
    let mut h = Harness::new(Scenario::two_users());
    let incoming = h.offer_incoming(0);
    h.drain();
    let target = json!({"identity": {"user": {"id": "someone-else", "displayName": "Other"}}});
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{incoming}/redirect"),
        &json!({"targets": [target.clone()], "timeout": 30}),
    );
    assert_eq!(r.status, 202, "{:?}", r.body);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.sim.call_state(&incoming), Some(CallState::Terminated));
    assert!(h.states(&incoming).contains(&CallState::Redirecting));

    let alice = user_id(&h, "Alice");
    let call = h.create_p2p(&alice);
    let early = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/transfer"),
        &json!({"transferTarget": target}),
    );
    assert_eq!(early.status, 400, "not established yet");
    h.advance(Duration::from_secs(1));
    let bad_phone = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/transfer"),
        &json!({"transferTarget": {"identity": {"phone": {"id": "12345"}}}}),
    );
    assert_eq!(bad_phone.status, 400);
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/transfer"),
        &json!({"transferTarget": target}),
    );
    assert_eq!(r.status, 202, "{:?}", r.body);
    h.advance(Duration::from_secs(1));
    let states = h.states(&call);
    assert!(states.contains(&CallState::Transferring), "{states:?}");
    assert!(states.contains(&CallState::TransferAccepted), "{states:?}");
    assert_eq!(states.last(), Some(&CallState::Terminated));
}

#[test]
fn declining_users_fail_invites_and_p2p_calls() {
    let mut scenario = Scenario::two_users();
    scenario.users[1].declines = true;
    let mut h = Harness::new(scenario);
    let alice = user_id(&h, "Alice");
    let bob = user_id(&h, "Bob");
    let call = h.create_p2p(&alice);
    h.advance(Duration::from_secs(1));
    let invite = json!({"participants": [{"identity": {"user": {"id": bob, "displayName": "Bob"}}}], "clientContext": "c"});
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/participants/invite"),
        &invite,
    );
    assert_eq!(r.status, 200);
    h.advance(Duration::from_secs(1));
    let op = h.events.iter().find_map(|(_, e)| match e {
        SignalingEvent::OperationFinished(op) => Some(op.clone()),
        _ => None,
    });
    let op = op.expect("operation notification");
    assert_eq!(
        op.status.get().map(|s| s.kind()),
        Some(graph_signaling::models::OperationStatusKind::Failed)
    );
    assert_eq!(h.bound_sources(&call).len(), 1, "Bob never joined");

    let declined = h.create_p2p(&bob);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.sim.call_state(&declined), Some(CallState::Terminated));
}
