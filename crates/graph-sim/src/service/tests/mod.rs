//! The simulated service driven with made-up time, its output fed to graph-signaling's own
//! parser and call state machine: what the sim says must be what a bot understands.

use std::time::{Duration, Instant, SystemTime};

use graph_signaling::models::{Call, CallState, CommsNotifications};
use graph_signaling::state::{CallStateMachine, SignalingEvent};
use serde_json::{Value, json};

use super::*;
use crate::scenario::{IdentityKind, Scenario, SimUser, Voice};

mod calls;
mod legacy;
mod media;
mod people;
mod requests;
mod roster;
mod schema;
mod sharing;
mod tokens;

const DOCUMENTED_BLOB: &str =
    include_str!("../../../../media-session/testdata/documented-blob.json");

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
        out: &mut Vec<(String, SignalingEvent)>,
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
    events: Vec<(String, SignalingEvent)>,
    sim_events: Vec<SimEvent>,
    posted: Vec<Value>,
    /// Legacy forms posted ahead of a Graph body: (call id, legacy body, its Graph body).
    legacy: Vec<(String, Value, Value)>,
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
        let (status, body) = sim.issue_token(now, SystemTime::now(), &form);
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
            legacy: Vec::new(),
        }
    }

    fn request(&mut self, method: Method, path: &str, body: &Value) -> ApiResponse {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(body).unwrap()
        };
        let auth = format!("Bearer {}", self.token);
        let response = self.sim.handle_request(
            self.now,
            &ApiRequest {
                method,
                path,
                authorization: Some(&auth),
                body: &bytes,
            },
        );
        // As a bot does, the call's state starts from the create answer, which names the
        // bot's own participant id.
        if method == Method::Post
            && path == "/communications/calls"
            && response.status == 201
            && let Some(call) = response
                .body
                .as_ref()
                .and_then(|b| serde_json::from_value::<Call>(b.clone()).ok())
            && let Some(id) = call.id.get().cloned()
        {
            let machine =
                CallStateMachine::from_call(&call, Some(self.registry.app_id.clone()), self.now);
            self.registry.calls.insert(id, machine);
        }
        response
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
            if let Some(legacy) = out.legacy {
                self.legacy.push((out.call_id, legacy, out.body.clone()));
            }
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
                SignalingEvent::StateChanged { to, .. } => Some(to.clone()),
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
                SignalingEvent::StreamBind(s, _) => bound.push(s.get()),
                SignalingEvent::StreamUnbind(s, _) => bound.retain(|b| *b != s.get()),
                _ => {}
            }
        }
        bound.sort_unstable();
        bound
    }

    /// Scenario user `from` calls the bot; returns the call id.
    fn offer_incoming(&mut self, from: usize) -> String {
        let action = PersonAction::CallBot {
            callback_uri: "http://127.0.0.1:9/callback",
            caller: Caller::ScenarioUser(from),
        };
        self.sim.handle_person(self.now, action).unwrap().call_id
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
