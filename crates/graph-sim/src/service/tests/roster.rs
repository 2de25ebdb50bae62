//! Who is in a call: invitees, scheduled joins and leaves, guests in the lobby, delta rosters
//! under duplicated and reordered notifications, and the shipped scenarios.

use super::*;

#[test]
fn invite_resolves_by_notification_and_adds_a_bound_stream() {
    let mut h = Harness::new(Scenario::two_users());
    let alice = user_id(&h, "Alice");
    let bob = user_id(&h, "Bob");
    let call = h.create_p2p(&alice);
    h.advance(Duration::from_secs(1));
    let invite = json!({
        "participants": [{
            "@odata.type": "#microsoft.graph.invitationParticipantInfo",
            "identity": {"@odata.type": "#microsoft.graph.identitySet",
                "user": {"@odata.type": "#microsoft.graph.identity", "id": bob, "displayName": "Bob"}}
        }],
        "clientContext": "ctx-1"
    });
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/participants/invite"),
        &invite,
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let op = r.body.unwrap();
    assert_eq!(op["status"], "Running");
    assert_eq!(op["clientContext"], "ctx-1");
    h.advance(Duration::from_secs(1));
    let finished = h.events.iter().find_map(|(_, e)| match e {
        SignalingEvent::OperationFinished(op) => Some(op.clone()),
        _ => None,
    });
    let finished = finished.expect("operation notification");
    assert_eq!(finished.client_context.as_deref(), Some("ctx-1"));
    assert_eq!(h.bound_sources(&call).len(), 2);
    assert!(h.sim_events.iter().any(|e| matches!(e, SimEvent::SourceAdded { name, voice: Voice::Tone { .. }, .. } if name == "Bob")));
}

#[test]
fn an_invitee_leaves_leave_ms_after_joining() {
    let mut scenario = Scenario::two_users();
    scenario.users[1].leave_ms = Some(3000);
    let mut h = Harness::new(scenario);
    let alice = user_id(&h, "Alice");
    let bob = user_id(&h, "Bob");
    let call = h.create_p2p(&alice);
    h.advance(Duration::from_secs(5));
    let invite = json!({
        "participants": [{
            "identity": {"user": {"id": bob, "displayName": "Bob"}}
        }]
    });
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/participants/invite"),
        &invite,
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.bound_sources(&call).len(), 2, "Bob joined");
    h.advance(Duration::from_secs(2));
    assert_eq!(
        h.bound_sources(&call).len(),
        2,
        "Bob stays until 3 s after joining"
    );
    h.advance(Duration::from_secs(2));
    assert_eq!(h.bound_sources(&call).len(), 1, "then leaves");
    assert!(
        h.sim_events
            .iter()
            .any(|e| matches!(e, SimEvent::SourceRemoved { .. }))
    );
}

#[test]
fn delta_roster_and_scheduled_leave_end_a_p2p_call() {
    let mut scenario = Scenario::two_users();
    scenario.users[0].leave_ms = Some(3000);
    let mut h = Harness::new(scenario);
    let alice = user_id(&h, "Alice");
    let mut body = p2p_body(&alice);
    body["callOptions"] = json!({"@odata.type": "#microsoft.graph.outgoingCallOptions", "isDeltaRosterEnabled": true});
    let r = h.request(Method::Post, "/communications/calls", &body);
    let call = r.body.unwrap()["id"].as_str().unwrap().to_owned();
    h.advance(Duration::from_secs(2));
    assert_eq!(h.bound_sources(&call).len(), 1);
    assert!(
        h.posted
            .iter()
            .any(|b| b["value"][0]["resourceData"][0]["sequenceNumber"].is_i64())
    );
    h.advance(Duration::from_secs(2));
    assert!(h.bound_sources(&call).is_empty());
    assert_eq!(h.sim.call_state(&call), Some(CallState::Terminated));
    assert!(
        h.events
            .iter()
            .any(|(_, e)| matches!(e, SignalingEvent::ParticipantLeft(..)))
    );
}

#[test]
fn guests_wait_in_the_lobby_in_meetings() {
    let mut scenario = Scenario::two_users();
    let mut guest = SimUser::new("Visitor", Voice::Speech);
    guest.identity = IdentityKind::Guest;
    scenario.users.push(guest);
    let config = SimConfig {
        lobby_admit_after: Duration::from_secs(5),
        ..SimConfig::default()
    };
    let mut h = Harness::with_config(config, scenario);
    let mut body = p2p_body("x");
    body.as_object_mut().unwrap().remove("targets");
    body["meetingInfo"] = json!({"@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo", "joinMeetingId": "1234567890", "passcode": "abc"});
    body["chatInfo"] = json!({"@odata.type": "#microsoft.graph.chatInfo", "threadId": "19:meeting@thread.v2", "messageId": "0"});
    let r = h.request(Method::Post, "/communications/calls", &body);
    assert_eq!(r.status, 201, "{:?}", r.body);
    let call = r.body.unwrap()["id"].as_str().unwrap().to_owned();
    h.advance(Duration::from_secs(1));
    assert_eq!(
        h.bound_sources(&call).len(),
        3,
        "everyone's stream is announced"
    );
    let visitor_added = |h: &Harness| {
        h.sim_events
            .iter()
            .any(|e| matches!(e, SimEvent::SourceAdded { name, .. } if name == "Visitor"))
    };
    assert!(!visitor_added(&h), "no audio from the lobby");
    let lobby = h.posted.iter().rev().find_map(|b| {
        b["value"][0]["resourceData"].as_array().and_then(|a| {
            a.iter()
                .find(|p| p["info"]["identity"]["guest"].is_object())
                .cloned()
        })
    });
    assert_eq!(lobby.unwrap()["isInLobby"], true);
    h.advance(Duration::from_secs(6));
    assert!(visitor_added(&h), "admitted after the lobby wait");
}

#[test]
fn replaces_call_id_moves_only_the_first_participant() {
    let mut h = Harness::new(Scenario::two_users());
    let alice = user_id(&h, "Alice");
    let bob = user_id(&h, "Bob");
    // The P2P call to be replaced.
    let p2p = h.create_p2p(&bob);
    let mut body = p2p_body(&alice);
    body["chatInfo"] = json!({"threadId": "19:group@thread.v2", "messageId": "0"});
    let r = h.request(Method::Post, "/communications/calls", &body);
    let call = r.body.unwrap()["id"].as_str().unwrap().to_owned();
    h.advance(Duration::from_secs(1));
    let invite = |replaces: &str| {
        json!({"participants": [
            {"identity": {"user": {"id": "m1", "displayName": "Moved"}}, "replacesCallId": replaces},
            {"identity": {"user": {"id": "m2", "displayName": "Ignored"}}}
        ]})
    };
    let path = format!("/communications/calls/{call}/participants/invite");
    // A call that does not exist cannot be replaced.
    let r = h.request(
        Method::Post,
        &path,
        &invite("a7ebfb2d-871e-419c-87af-27290b22e8db"),
    );
    assert_eq!(r.status, 404, "{:?}", r.body);
    let r = h.request(Method::Post, &path, &invite(&p2p));
    assert_eq!(r.status, 200, "{:?}", r.body);
    h.advance(Duration::from_secs(1));
    let names: Vec<String> = h
        .sim_events
        .iter()
        .filter_map(|e| match e {
            SimEvent::SourceAdded { name, call_id, .. } if *call_id == call => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["Alice", "Moved"]);
    // The P2P call is over: it became the group call.
    assert_eq!(h.states(&p2p).last(), Some(&CallState::Terminated));
}

#[test]
fn duplicated_and_reordered_notifications_still_converge() {
    let mut reordered_runs = 0;
    for seed in 0..20 {
        let mut scenario = Scenario::two_users();
        scenario.seed = seed;
        scenario.signaling.notification_duplicate = 0.5;
        scenario.signaling.notification_reorder = 0.5;
        // Bob joins and leaves 100 ms apart, inside the hold-back time, so the two updates can swap.
        scenario.users[1].join_ms = 500;
        scenario.users[1].leave_ms = Some(600);
        let mut h = Harness::new(scenario);
        let alice = user_id(&h, "Alice");
        let bob = user_id(&h, "Bob");
        let mut body = p2p_body(&alice);
        // A group call with delta rosters: sequence numbers let reordered updates converge.
        body["targets"] = json!([body["targets"][0].clone(), {"identity": {"user": {"id": bob, "displayName": "Bob"}}}]);
        body["callOptions"] = json!({"isDeltaRosterEnabled": true});
        let r = h.request(Method::Post, "/communications/calls", &body);
        let call = r.body.unwrap()["id"].as_str().unwrap().to_owned();
        h.advance(Duration::from_secs(3));
        let seqs: Vec<i64> = h
            .posted
            .iter()
            .filter_map(|b| b["value"][0]["resourceData"][0]["sequenceNumber"].as_i64())
            .collect();
        if seqs.windows(2).any(|w| w[0] > w[1]) {
            reordered_runs += 1;
        }
        let machine = h.registry.get(&call).unwrap();
        assert_eq!(
            machine.state(),
            Some(&CallState::Established),
            "seed {seed}"
        );
        assert_eq!(
            h.bound_sources(&call).len(),
            1,
            "seed {seed}: only Alice remains bound"
        );
    }
    assert!(
        reordered_runs > 0,
        "the fault plan reordered roster updates in some runs"
    );
}

#[test]
fn every_shipped_scenario_runs_a_meeting_to_a_consistent_roster() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let scenario = Scenario::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = path.display().to_string();
        let users = scenario.users.clone();
        // A scenario that declares its meeting is joined by that meeting's id and passcode.
        let (join_id, passcode) = scenario
            .meeting
            .clone()
            .map_or(("42".to_owned(), None), |m| (m.join_meeting_id, m.passcode));
        let mut h = Harness::new(scenario);
        let mut body = p2p_body("x");
        body.as_object_mut().unwrap().remove("targets");
        body["meetingInfo"] = json!({"@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo", "joinMeetingId": join_id, "passcode": passcode});
        // A throttling scenario refuses some requests: retry as a client would.
        let call = loop {
            let r = h.request(Method::Post, "/communications/calls", &body);
            match r.status {
                201 => break r.body.unwrap()["id"].as_str().unwrap().to_owned(),
                429 | 503 => h.advance(Duration::from_secs(r.retry_after.unwrap_or(1))),
                other => panic!("{name}: {other} {:?}", r.body),
            }
        };
        h.advance(Duration::from_secs(30));
        let machine = h.registry.get(&call).unwrap();
        assert_eq!(machine.state(), Some(&CallState::Established), "{name}");
        // After 30 s everyone without a leave time is in (guests admitted), nobody else.
        let staying = users
            .iter()
            .filter(|u| u.leave_ms.is_none_or(|l| l > 30_000))
            .count();
        let dropped = h.posted.len() < 3;
        assert!(!dropped, "{name}: too few notifications");
        if !name.contains("faults") {
            // The faults scenario may drop notifications, so only the others must match exactly.
            assert_eq!(h.bound_sources(&call).len(), staying, "{name}");
        }
    }
}

#[test]
fn a_bot_joining_as_guest_waits_in_the_lobby() {
    let config = SimConfig {
        lobby_admit_after: Duration::from_secs(3),
        ..SimConfig::default()
    };
    let mut h = Harness::with_config(config, Scenario::two_users());
    let mut body = p2p_body("x");
    body.as_object_mut().unwrap().remove("targets");
    body["source"]["identity"] = json!({"guest": {"id": "guest-bot", "displayName": "Guest bot"}});
    body["meetingInfo"] =
        json!({"@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo", "joinMeetingId": "42"});
    let r = h.request(Method::Post, "/communications/calls", &body);
    let call = r.body.unwrap()["id"].as_str().unwrap().to_owned();
    h.advance(Duration::from_secs(1));
    assert_eq!(
        h.sim.call_state(&call),
        Some(CallState::Establishing),
        "still in the lobby"
    );
    let in_lobby = h.posted.iter().any(|b| {
        b["value"][0]["resourceData"]
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p["isInLobby"] == true))
    });
    assert!(in_lobby, "the roster shows the bot in the lobby");
    h.advance(Duration::from_secs(3));
    assert_eq!(h.sim.call_state(&call), Some(CallState::Established));
    assert_eq!(
        h.bound_sources(&call).len(),
        2,
        "admitted: both users' streams bound"
    );
    // The roster shows the bot as the guest it joined as, and the bot knows that entry as its
    // own: it is never reported as one of the people.
    let me = h.events.iter().rev().find_map(|(_, e)| match e {
        SignalingEvent::SelfUpdated(p) => Some(p.identity_label()),
        _ => None,
    });
    assert_eq!(me.as_deref(), Some("guest:guest-bot"));
    assert!(!h.events.iter().any(|(_, e)| matches!(e,
        SignalingEvent::ParticipantJoined(_, p) | SignalingEvent::ParticipantUpdated(_, p)
            if p.identity_label().starts_with("guest:guest-bot") || p.identity_label().starts_with("application:"))));
}
