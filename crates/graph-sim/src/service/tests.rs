//! The simulated service driven with made-up time, its output fed to graph-signaling's own
//! parser and call state machine: what the sim says must be what a bot understands.

use std::time::{Duration, Instant};

use graph_signaling::models::{CallState, CommsNotifications};
use graph_signaling::state::{CallEvent, CallStateMachine};
use serde_json::{Value, json};

use super::*;
use crate::scenario::{IdentityKind, Scenario, SimUser, Voice};

const DOCUMENTED_BLOB: &str = include_str!("../../../media-session/testdata/documented-blob.json");

/// The bot's side: one state machine per call id, as a call owner keeps them.
struct CallRegistry {
    calls: std::collections::HashMap<String, CallStateMachine>,
    app_id: String,
}

impl CallRegistry {
    fn new(app_id: String) -> CallRegistry {
        CallRegistry {
            calls: Default::default(),
            app_id,
        }
    }

    fn get(&self, call_id: &str) -> Option<&CallStateMachine> {
        self.calls.get(call_id)
    }

    fn handle_batch(
        &mut self,
        batch: &CommsNotifications,
        now: Instant,
        out: &mut Vec<(String, CallEvent)>,
    ) {
        for n in &batch.value {
            let Some(id) = n.call_id() else { continue };
            let call = self
                .calls
                .entry(id.to_owned())
                .or_insert_with(|| CallStateMachine::new(id, Some(self.app_id.clone())));
            call.handle_notification(n, now);
            while let Some(e) = call.poll_event() {
                out.push((id.to_owned(), e));
            }
        }
    }
}

struct Harness {
    sim: Sim,
    now: Instant,
    token: String,
    registry: CallRegistry,
    events: Vec<(String, CallEvent)>,
    sim_events: Vec<SimEvent>,
    posted: Vec<Value>,
}

impl Harness {
    fn new(scenario: Scenario) -> Harness {
        Harness::with_config(SimConfig::default(), scenario)
    }

    fn with_config(config: SimConfig, scenario: Scenario) -> Harness {
        let app_id = config.app_id.clone();
        let secret = config.app_secret.clone();
        let mut sim = Sim::new(config, scenario);
        let now = Instant::now();
        let form = vec![
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            ("client_id".to_owned(), app_id.clone()),
            ("client_secret".to_owned(), secret),
            (
                "scope".to_owned(),
                "https://graph.microsoft.com/.default".to_owned(),
            ),
        ];
        let (status, body) = sim.issue_token(now, &form);
        assert_eq!(status, 200, "{body}");
        let token = body["access_token"].as_str().unwrap().to_owned();
        Harness {
            sim,
            now,
            token,
            registry: CallRegistry::new(app_id),
            events: Vec::new(),
            sim_events: Vec::new(),
            posted: Vec::new(),
        }
    }

    fn request(&mut self, method: Method, path: &str, body: &Value) -> ApiResponse {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(body).unwrap()
        };
        let auth = format!("Bearer {}", self.token);
        self.sim.handle_request(
            self.now,
            &ApiRequest {
                method,
                path,
                authorization: Some(&auth),
                body: &bytes,
            },
        )
    }

    /// Runs the clock forward by `d`, delivering notifications to the bot's state machine.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = self.sim.poll_timeout().filter(|t| *t <= end);
            let Some(at) = next else { break };
            self.now = self.now.max(at);
            self.sim.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(out) = self.sim.poll_notification(self.now) {
            let bytes = serde_json::to_vec(&out.body).unwrap();
            let parsed = CommsNotifications::parse(&bytes).unwrap_or_else(|e| {
                panic!(
                    "sim emitted a payload the bot cannot parse: {e}\n{}",
                    out.body
                )
            });
            let lines = graph_signaling::inspect::inspect(&String::from_utf8(bytes).unwrap());
            assert!(lines.is_ok(), "inspect refused {}: {lines:?}", out.body);
            self.registry
                .handle_batch(&parsed, self.now, &mut self.events);
            self.posted.push(out.body);
        }
        while let Some(e) = self.sim.poll_event() {
            self.sim_events.push(e);
        }
    }

    fn states(&self, call_id: &str) -> Vec<CallState> {
        self.events
            .iter()
            .filter(|(id, _)| id == call_id)
            .filter_map(|(_, e)| match e {
                CallEvent::StateChanged { to, .. } => Some(to.clone()),
                _ => None,
            })
            .collect()
    }

    fn bound_sources(&self, call_id: &str) -> Vec<u32> {
        let mut bound = Vec::new();
        for (id, e) in &self.events {
            if id != call_id {
                continue;
            }
            match e {
                CallEvent::StreamBind(s, _) => bound.push(s.get()),
                CallEvent::StreamUnbind(s, _) => bound.retain(|b| *b != s.get()),
                _ => {}
            }
        }
        bound.sort_unstable();
        bound
    }

    fn create_p2p(&mut self, user_id: &str) -> String {
        let body = p2p_body(user_id);
        let response = self.request(Method::Post, "/communications/calls", &body);
        assert_eq!(response.status, 201, "{:?}", response.body);
        let id = response.body.unwrap()["id"].as_str().unwrap().to_owned();
        assert_eq!(
            response.location.unwrap(),
            format!("http://127.0.0.1/v1.0/communications/calls/{id}")
        );
        id
    }
}

fn p2p_body(user_id: &str) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.call",
        "callbackUri": "http://127.0.0.1:9/callback",
        "source": {
            "@odata.type": "#microsoft.graph.participantInfo",
            "identity": {"@odata.type": "#microsoft.graph.identitySet",
                "application": {"@odata.type": "#microsoft.graph.identity", "displayName": "Bot", "id": SimConfig::default().app_id}}
        },
        "targets": [{
            "@odata.type": "#microsoft.graph.invitationParticipantInfo",
            "identity": {"@odata.type": "#microsoft.graph.identitySet",
                "user": {"@odata.type": "#microsoft.graph.identity", "displayName": "Alice", "id": user_id}}
        }],
        "requestedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.appHostedMediaConfig", "blob": DOCUMENTED_BLOB}
    })
}

fn user_id(h: &Harness, name: &str) -> String {
    h.sim
        .directory()
        .find(|(u, _)| u.name == name)
        .map(|(_, id)| id.to_owned())
        .unwrap()
}

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
        CallEvent::OperationFinished(op) => Some(op.clone()),
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
fn validation_follows_the_documented_rules() {
    let mut h = Harness::new(Scenario::two_users());
    let alice = user_id(&h, "Alice");
    let call = h.create_p2p(&alice);
    h.advance(Duration::from_secs(1));

    let user = |id: &str| json!({"identity": {"user": {"id": id, "displayName": id}}});
    let several = json!({"participants": [user("a"), user("b")]});
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/participants/invite"),
        &several,
    );
    assert_eq!(r.status, 400);
    assert!(
        r.body.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("group call")
    );

    let long = json!({"participants": [user("a")], "clientContext": "x".repeat(257)});
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/participants/invite"),
        &long,
    );
    assert_eq!(r.status, 400);

    let mut six = p2p_body("x");
    six["targets"] = json!((0..6).map(|i| user(&format!("u{i}"))).collect::<Vec<_>>());
    let r = h.request(Method::Post, "/communications/calls", &six);
    assert_eq!(r.status, 400);
    assert!(
        r.body.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 5")
    );

    let mut pstn = p2p_body("x");
    pstn["targets"] = json!([{"identity": {"phone": {"id": "4255550123"}}}]);
    let r = h.request(Method::Post, "/communications/calls", &pstn);
    assert_eq!(r.status, 400, "not E.164");
    pstn["targets"] = json!([{"identity": {"phone": {"id": "+14255550123"}}}]);
    let r = h.request(Method::Post, "/communications/calls", &pstn);
    assert_eq!(r.status, 400, "PSTN needs an applicationInstance source");
    pstn["source"]["identity"]["applicationInstance"] =
        json!({"id": "inst", "displayName": "Bot line"});
    let r = h.request(Method::Post, "/communications/calls", &pstn);
    assert_eq!(r.status, 201, "{:?}", r.body);

    let mut bad_blob = p2p_body("x");
    bad_blob["mediaConfig"]["blob"] = json!("{\"mpUri\":\"http://nope\"}");
    let r = h.request(Method::Post, "/communications/calls", &bad_blob);
    assert_eq!(r.status, 400);
    let body = r.body.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("mpUri"),
        "{body}"
    );
    assert!(body["error"]["innerError"]["request-id"].is_string());
}

#[test]
fn requests_need_a_valid_token_and_wrong_secrets_get_oauth_errors() {
    let mut h = Harness::new(Scenario::two_users());
    let form = vec![
        ("grant_type".to_owned(), "client_credentials".to_owned()),
        ("client_id".to_owned(), SimConfig::default().app_id),
        ("client_secret".to_owned(), "wrong".to_owned()),
        (
            "scope".to_owned(),
            "https://graph.microsoft.com/.default".to_owned(),
        ),
    ];
    let (status, body) = h.sim.issue_token(h.now, &form);
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    assert!(body["error_description"].is_string());

    h.token = "forged".into();
    let r = h.request(Method::Post, "/communications/calls", &p2p_body("x"));
    assert_eq!(r.status, 401);
    assert_eq!(
        r.body.unwrap()["error"]["code"],
        "InvalidAuthenticationToken"
    );
    assert_eq!(h.sim.active_calls().count(), 0, "nothing acted on");
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
    assert_eq!(h.sim.call_state(&kept), Some("established"));
    assert_eq!(h.sim.call_state(&dropped), Some("terminated"));
    let end = h.events.iter().find_map(|(id, e)| match e {
        CallEvent::Terminated(info) if *id == dropped => info.clone(),
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
    assert_eq!(h.sim.call_state(&call), Some("terminated"));
    assert!(
        h.events
            .iter()
            .any(|(_, e)| matches!(e, CallEvent::ParticipantLeft(..)))
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
fn incoming_call_answered_or_left_to_expire() {
    let mut h = Harness::new(Scenario::two_users());
    let call = h
        .sim
        .offer_incoming_call(h.now, "http://127.0.0.1:9/callback", 0)
        .unwrap();
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
    assert_eq!(h.sim.call_state(&call), Some("established"));
    assert_eq!(h.bound_sources(&call).len(), 1);

    let missed = h
        .sim
        .offer_incoming_call(h.now, "http://127.0.0.1:9/callback", 1)
        .unwrap();
    h.advance(Duration::from_secs(16));
    assert_eq!(h.sim.call_state(&missed), Some("terminated"));
    let late = h.request(
        Method::Post,
        &format!("/communications/calls/{missed}/answer"),
        &answer,
    );
    assert_eq!(late.status, 404);
}

#[test]
fn throttling_refuses_without_acting() {
    let mut scenario = Scenario::two_users();
    scenario.signaling.throttle = 1.0;
    scenario.signaling.retry_after_s = 3;
    let mut h = Harness::new(scenario);
    let r = h.request(Method::Post, "/communications/calls", &p2p_body("x"));
    assert_eq!(r.status, 429);
    assert_eq!(r.retry_after, Some(3));
    assert_eq!(h.sim.active_calls().count(), 0);
}

#[test]
fn replaces_call_id_moves_only_the_first_participant() {
    let mut h = Harness::new(Scenario::two_users());
    let alice = user_id(&h, "Alice");
    let mut body = p2p_body(&alice);
    body["chatInfo"] = json!({"threadId": "19:group@thread.v2", "messageId": "0"});
    let r = h.request(Method::Post, "/communications/calls", &body);
    let call = r.body.unwrap()["id"].as_str().unwrap().to_owned();
    h.advance(Duration::from_secs(1));
    let invite = json!({"participants": [
        {"identity": {"user": {"id": "m1", "displayName": "Moved"}}, "replacesCallId": "a7ebfb2d-871e-419c-87af-27290b22e8db"},
        {"identity": {"user": {"id": "m2", "displayName": "Ignored"}}}
    ]});
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/participants/invite"),
        &invite,
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    h.advance(Duration::from_secs(1));
    let names: Vec<String> = h
        .sim_events
        .iter()
        .filter_map(|e| match e {
            SimEvent::SourceAdded { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["Alice", "Moved"]);
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
fn callbacks_stay_on_loopback_unless_allowed() {
    for ok in [
        "http://127.0.0.1:8080/cb",
        "https://localhost/cb",
        "http://[::1]:1/x",
        "http://127.9.9.9/",
    ] {
        assert!(is_loopback_url(ok), "{ok}");
    }
    for bad in [
        "https://bot.example.com/cb",
        "http://10.0.0.1/cb",
        "http://127.0.0.1@evil.example/",
        "ftp://127.0.0.1/",
        "http://localhost.evil.example/",
    ] {
        assert!(!is_loopback_url(bad), "{bad}");
    }
    let mut h = Harness::new(Scenario::two_users());
    let mut body = p2p_body("x");
    body["callbackUri"] = json!("https://bot.example.com/callback");
    let r = h.request(Method::Post, "/communications/calls", &body);
    assert_eq!(r.status, 400);
    assert!(
        r.body.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("loopback")
    );
}

#[test]
fn incoming_calls_can_be_redirected_and_established_calls_transferred() {
    let mut h = Harness::new(Scenario::two_users());
    let incoming = h
        .sim
        .offer_incoming_call(h.now, "http://127.0.0.1:9/callback", 0)
        .unwrap();
    h.drain();
    let target = json!({"identity": {"user": {"id": "someone-else", "displayName": "Other"}}});
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{incoming}/redirect"),
        &json!({"targets": [target.clone()], "timeout": 30}),
    );
    assert_eq!(r.status, 202, "{:?}", r.body);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.sim.call_state(&incoming), Some("terminated"));
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
        CallEvent::OperationFinished(op) => Some(op.clone()),
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
    assert_eq!(h.sim.call_state(&declined), Some("terminated"));
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
fn a_declared_meeting_is_joined_only_by_its_id_and_passcode() {
    let mut scenario = Scenario::two_users();
    scenario.meeting = Some(crate::scenario::Meeting {
        join_meeting_id: "1234567890123".into(),
        passcode: Some("Xy7pQ2".into()),
    });
    let mut h = Harness::new(scenario);
    let mut join = |id: Value, passcode: Value| {
        let mut body = p2p_body("x");
        body.as_object_mut().unwrap().remove("targets");
        body["meetingInfo"] = json!({"@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo", "joinMeetingId": id, "passcode": passcode});
        let r = h.request(Method::Post, "/communications/calls", &body);
        let code = r.body.as_ref().map(|b| b["error"]["code"].clone());
        (r.status, code.and_then(|c| c.as_str().map(str::to_owned)))
    };
    let refused = [
        (json!("999"), json!("Xy7pQ2"), 404, "NotFound"),
        (Value::Null, json!("Xy7pQ2"), 404, "NotFound"),
        (json!("1234567890123"), json!("wrong"), 403, "Forbidden"),
        (json!("1234567890123"), json!("xy7pq2"), 403, "Forbidden"),
        (json!("1234567890123"), Value::Null, 403, "Forbidden"),
    ];
    for (id, passcode, status, code) in refused {
        let what = format!("{id} / {passcode}");
        assert_eq!(
            join(id, passcode),
            (status, Some(code.to_owned())),
            "{what}"
        );
    }
    assert_eq!(join(json!("1234567890123"), json!("Xy7pQ2")).0, 201);
    assert_eq!(
        h.sim.active_calls().count(),
        1,
        "refused joins create no call"
    );

    // Without a declared meeting any id is accepted, with or without a passcode.
    let mut h = Harness::new(Scenario::two_users());
    let mut body = p2p_body("x");
    body.as_object_mut().unwrap().remove("targets");
    body["meetingInfo"] =
        json!({"@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo", "joinMeetingId": "7"});
    let r = h.request(Method::Post, "/communications/calls", &body);
    assert_eq!(r.status, 201, "{:?}", r.body);
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
        Some("establishing"),
        "still in the lobby"
    );
    let in_lobby = h.posted.iter().any(|b| {
        b["value"][0]["resourceData"]
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p["isInLobby"] == true))
    });
    assert!(in_lobby, "the roster shows the bot in the lobby");
    h.advance(Duration::from_secs(3));
    assert_eq!(h.sim.call_state(&call), Some("established"));
    assert_eq!(
        h.bound_sources(&call).len(),
        2,
        "admitted: both users' streams bound"
    );
}

#[test]
fn group_calls_take_several_invitees_and_pstn_needs_an_application_instance() {
    let mut h = Harness::new(Scenario::two_users());
    let alice = user_id(&h, "Alice");
    let mut body = p2p_body(&alice);
    body["chatInfo"] = json!({"threadId": "19:group@thread.v2", "messageId": "0"});
    let r = h.request(Method::Post, "/communications/calls", &body);
    let group = r.body.unwrap()["id"].as_str().unwrap().to_owned();
    h.advance(Duration::from_secs(1));
    let user = |id: &str| json!({"identity": {"user": {"id": id, "displayName": id}}});
    let three =
        json!({"participants": [user("g1"), user("g2"), user("g3")], "clientContext": "many"});
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{group}/participants/invite"),
        &three,
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.bound_sources(&group).len(), 4);

    let phone = json!({"participants": [{"identity": {"phone": {"id": "+14255550100"}}}]});
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{group}/participants/invite"),
        &phone,
    );
    assert_eq!(
        r.status, 400,
        "a call from the app identity cannot dial phones"
    );

    let mut pstn_call = p2p_body(&alice);
    pstn_call["chatInfo"] = json!({"threadId": "19:pstn@thread.v2", "messageId": "0"});
    pstn_call["source"]["identity"]["applicationInstance"] =
        json!({"id": "inst", "displayName": "Bot line"});
    let r = h.request(Method::Post, "/communications/calls", &pstn_call);
    let with_number = r.body.unwrap()["id"].as_str().unwrap().to_owned();
    h.advance(Duration::from_secs(1));
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{with_number}/participants/invite"),
        &phone,
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    h.advance(Duration::from_secs(1));
    assert_eq!(
        h.bound_sources(&with_number).len(),
        2,
        "the phone participant joined"
    );
}
