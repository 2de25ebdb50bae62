//! Everything the sim answers and posts, and every body the bot's client sends, checked against
//! Graph's v1.0 schema (`testdata/graph-v1-calling-schema.json`, extracted from the official
//! CSDL metadata): an object's keys are its type's properties (base types included), OData
//! annotations, and for open types only the extra keys Graph's own pages show.
//!
//! A call of each kind runs through every action the sim serves; each JSON object found is
//! checked against the type its `@odata.type` names or its place in the parent declares.

use std::collections::BTreeSet;
use std::sync::Arc;

use graph_signaling::models::{
    AnswerBody, AudioRoutingGroup, IdentitySet, InvitationParticipantInfo, MediaConfig,
    MediaPrompt, Modality, RecordResponseBody, RoutingMode, ScreenSharingRole, Tone,
};
use graph_signaling::request::PreparedRequest;

use super::*;
use crate::scenario::Presses;

const SCHEMA: &str = include_str!("../../../testdata/graph-v1-calling-schema.json");

/// Keys Graph's pages show on open types beyond their declared properties, with the page.
const DOCUMENTED_EXTRAS: &[(&str, &[&str])] = &[
    // api-reference/v1.0/resources/commsnotification.md and every notification example.
    (
        "commsNotification",
        &["resourceData", "resource", "callbackUri"],
    ),
    // call-cancelmediaprocessing.md: a cancelled recordOperation carries completionReason.
    ("recordOperation", &["completionReason"]),
    ("playPromptOperation", &["completionReason"]),
    // Operations echo what they act on (invite examples show participants).
    ("inviteParticipantsOperation", &["participants"]),
    // call.md: tenantId on identities in rosters; the docs' deltaParticipants examples.
    ("identity", &["tenantId", "identityProvider"]),
    // organizerMeetingInfo examples carry allowConversationWithoutHost.
    ("organizerMeetingInfo", &["allowConversationWithoutHost"]),
];

/// Annotations any object may carry.
const ANNOTATIONS: &[&str] = &["@odata.type", "@odata.id", "@odata.etag", "@odata.context"];

struct Schema {
    types: serde_json::Map<String, Value>,
}

impl Schema {
    fn load() -> Schema {
        let doc: Value = serde_json::from_str(SCHEMA).unwrap();
        Schema {
            types: doc["types"].as_object().unwrap().clone(),
        }
    }

    /// Declared properties of `ty` and its base types: name → type text.
    fn properties(&self, ty: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut current = Some(ty.to_owned());
        while let Some(t) = current {
            let Some(def) = self.types.get(&t) else { break };
            for key in ["properties", "navigationProperties"] {
                if let Some(props) = def.get(key).and_then(Value::as_object) {
                    for (k, v) in props {
                        out.push((k.clone(), v.as_str().unwrap_or_default().to_owned()));
                    }
                }
            }
            current = def
                .get("BaseType")
                .and_then(Value::as_str)
                .map(|b| b.trim_start_matches("graph.").to_owned());
        }
        out
    }

    fn is_open(&self, ty: &str) -> bool {
        let mut current = Some(ty.to_owned());
        while let Some(t) = current {
            let Some(def) = self.types.get(&t) else { break };
            if def.get("OpenType").and_then(Value::as_str) == Some("true") {
                return true;
            }
            current = def
                .get("BaseType")
                .and_then(Value::as_str)
                .map(|b| b.trim_start_matches("graph.").to_owned());
        }
        false
    }

    /// Checks `value` as a `ty` (a `graph.` type name without prefix); `path` names it in
    /// failures.
    fn check(&self, value: &Value, ty: &str, path: &str, problems: &mut Vec<String>) {
        match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.check(item, ty, &format!("{path}[{i}]"), problems);
                }
            }
            Value::Object(map) => {
                // A subtype named by the object itself wins over the declared type.
                let ty = map
                    .get("@odata.type")
                    .and_then(Value::as_str)
                    .map(|t| t.trim_start_matches("#microsoft.graph.").to_owned())
                    .unwrap_or_else(|| ty.to_owned());
                if !self.types.contains_key(&ty) {
                    problems.push(format!("{path}: type {ty} is not in the schema"));
                    return;
                }
                let props = self.properties(&ty);
                let extras: Vec<&str> = DOCUMENTED_EXTRAS
                    .iter()
                    .filter(|(t, _)| *t == ty && self.is_open(&ty))
                    .flat_map(|(_, keys)| keys.iter().copied())
                    .collect();
                for (key, child) in map {
                    if ANNOTATIONS.contains(&key.as_str()) {
                        continue;
                    }
                    match props.iter().find(|(k, _)| k == key) {
                        Some((_, declared)) => {
                            if let Some(child_ty) = graph_type(declared) {
                                self.check(child, &child_ty, &format!("{path}.{key}"), problems);
                            }
                        }
                        None if extras.contains(&key.as_str()) => {
                            if key == "resourceData" {
                                self.check_resource_data(child, &format!("{path}.{key}"), problems);
                            }
                        }
                        None => problems.push(format!("{path}: {ty} has no property {key}")),
                    }
                }
            }
            _ => {}
        }
    }

    /// `resourceData` is whatever the resource is; each item names its type.
    fn check_resource_data(&self, value: &Value, path: &str, problems: &mut Vec<String>) {
        let items: Vec<&Value> = match value {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        for (i, item) in items.into_iter().enumerate() {
            match item.get("@odata.type").and_then(Value::as_str) {
                Some(_) => self.check(item, "entity", &format!("{path}[{i}]"), problems),
                None => problems.push(format!("{path}[{i}]: resource data without @odata.type")),
            }
        }
    }
}

/// `graph.x`, `graph.x (Nullable=false)` or `Collection(graph.x)` → `x`; `Edm.*` → none.
fn graph_type(declared: &str) -> Option<String> {
    let t = declared.split(' ').next().unwrap_or_default();
    let t = t
        .strip_prefix("Collection(")
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or(t);
    t.strip_prefix("graph.").map(str::to_owned)
}

/// Runs one call of each media kind through every action the sim serves and returns every
/// body the sim answered or posted, with the type each answers as.
fn everything_the_sim_says() -> Vec<(String, Value)> {
    let mut said = Vec::new();
    let keep = |ty: &str, r: &ApiResponse, said: &mut Vec<(String, Value)>| {
        assert!(r.status < 400, "{ty}: {:?}", r.body);
        if let Some(b) = &r.body {
            said.push((ty.to_owned(), b.clone()));
        }
    };
    // App-hosted group call with three people: the participant and resource actions.
    let mut scenario = Scenario {
        users: ["Alice", "Bob", "Carol", "Dan"]
            .iter()
            .map(|n| SimUser::new(*n, Voice::Speech))
            .collect(),
        ..Scenario::default()
    };
    scenario.users[0].presses = Presses::try_from("5@300ms".to_owned()).unwrap();
    // Bob shares his screen for a while; the bot takes over later.
    scenario.users[1].shares = Some(crate::scenario::ScreenShare {
        from_ms: 200,
        for_ms: Some(500),
    });
    let mut h = Harness::new(scenario);
    let ids: Vec<String> = ["Alice", "Bob", "Carol", "Dan"]
        .iter()
        .map(|n| user_id(&h, n))
        .collect();
    let mut body = p2p_body(&ids[0]);
    body["targets"] = json!([
        {"@odata.type": "#microsoft.graph.invitationParticipantInfo",
         "identity": {"@odata.type": "#microsoft.graph.identitySet", "user": {"@odata.type": "#microsoft.graph.identity", "id": ids[0]}}},
        {"@odata.type": "#microsoft.graph.invitationParticipantInfo",
         "identity": {"@odata.type": "#microsoft.graph.identitySet", "user": {"@odata.type": "#microsoft.graph.identity", "id": ids[1]}}}
    ]);
    let r = h.request(Method::Post, "/communications/calls", &body);
    keep("call", &r, &mut said);
    let call = r.body.unwrap()["id"].as_str().unwrap().to_owned();
    h.advance(Duration::from_secs(1));
    let base = format!("/communications/calls/{call}");
    let r = h.request(Method::Get, &base, &Value::Null);
    keep("call", &r, &mut said);
    let r = h.request(Method::Get, &format!("{base}/participants"), &Value::Null);
    keep("participants", &r, &mut said);
    let pids: Vec<String> = r.body.unwrap()["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    let (alice, bob) = (&pids[1], &pids[2]);
    let r = h.request(
        Method::Get,
        &format!("{base}/participants/{alice}"),
        &Value::Null,
    );
    keep("participant", &r, &mut said);
    let ctx = json!({"clientContext": "c"});
    for action in ["mute", "startHoldMusic"] {
        let r = h.request(
            Method::Post,
            &format!("{base}/participants/{bob}/{action}"),
            &ctx,
        );
        keep("commsOperation", &r, &mut said);
    }
    h.advance(Duration::from_secs(1));
    let r = h.request(
        Method::Post,
        &format!("{base}/participants/{bob}/stopHoldMusic"),
        &ctx,
    );
    keep("commsOperation", &r, &mut said);
    let op = r.body.unwrap()["id"].as_str().unwrap().to_owned();
    let r = h.request(
        Method::Get,
        &format!("{base}/operations/{op}"),
        &Value::Null,
    );
    keep("commsOperation", &r, &mut said);
    let invite = json!({"participants": [{"@odata.type": "#microsoft.graph.invitationParticipantInfo",
        "identity": {"@odata.type": "#microsoft.graph.identitySet", "user": {"@odata.type": "#microsoft.graph.identity", "id": ids[2]}}}],
        "clientContext": "i"});
    let r = h.request(
        Method::Post,
        &format!("{base}/participants/invite"),
        &invite,
    );
    keep("commsOperation", &r, &mut said);
    let r = h.request(Method::Post, &format!("{base}/addLargeGalleryView"), &ctx);
    keep("commsOperation", &r, &mut said);
    let r = h.request(
        Method::Post,
        &format!("{base}/updateRecordingStatus"),
        &json!({"status": "recording", "clientContext": "r"}),
    );
    keep("commsOperation", &r, &mut said);
    for action in ["mute", "unmute"] {
        let r = h.request(Method::Post, &format!("{base}/{action}"), &ctx);
        keep("commsOperation", &r, &mut said);
    }
    let group = json!({"@odata.type": "#microsoft.graph.audioRoutingGroup", "routingMode": "oneToOne",
        "sources": [alice], "receivers": [bob]});
    let r = h.request(Method::Post, &format!("{base}/audioRoutingGroups"), &group);
    keep("audioRoutingGroup", &r, &mut said);
    let gid = r.body.unwrap()["id"].as_str().unwrap().to_owned();
    let r = h.request(
        Method::Patch,
        &format!("{base}/audioRoutingGroups/{gid}"),
        &group,
    );
    keep("audioRoutingGroup", &r, &mut said);
    let r = h.request(
        Method::Get,
        &format!("{base}/audioRoutingGroups"),
        &Value::Null,
    );
    keep("audioRoutingGroups", &r, &mut said);
    let r = h.request(
        Method::Post,
        &format!("{base}/changeScreenSharingRole"),
        &json!({"role": "sharer"}),
    );
    assert_eq!(r.status, 202);
    let r = h.request(
        Method::Get,
        &format!("{base}/contentSharingSessions"),
        &Value::Null,
    );
    keep("contentSharingSessions", &r, &mut said);
    let sid = r.body.unwrap()["value"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = h.request(
        Method::Get,
        &format!("{base}/contentSharingSessions/{sid}"),
        &Value::Null,
    );
    keep("contentSharingSession", &r, &mut said);
    let r = h.request(
        Method::Post,
        &format!("{base}/changeScreenSharingRole"),
        &json!({"role": "viewer"}),
    );
    assert_eq!(r.status, 202);
    let r = h.request(
        Method::Delete,
        &format!("{base}/participants/{bob}"),
        &Value::Null,
    );
    keep("none", &r, &mut said);
    h.advance(Duration::from_secs(2));
    let r = h.request(Method::Delete, &base, &Value::Null);
    keep("none", &r, &mut said);
    h.advance(Duration::from_secs(1));
    said.extend(
        h.posted
            .drain(..)
            .map(|b| ("commsNotifications".to_owned(), b)),
    );

    // Service-hosted call: every media action.
    let mut alice_presses = SimUser::new("Alice", Voice::Speech);
    alice_presses.presses = Presses::try_from("1@1500ms, #@2500ms".to_owned()).unwrap();
    let mut h = Harness::new(Scenario {
        users: vec![alice_presses],
        ..Scenario::default()
    });
    let mut body = p2p_body(&user_id(&h, "Alice"));
    body["mediaConfig"] = json!({"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"});
    let r = h.request(Method::Post, "/communications/calls", &body);
    keep("call", &r, &mut said);
    let call = r.body.unwrap()["id"].as_str().unwrap().to_owned();
    h.advance(Duration::from_millis(300));
    let base = format!("/communications/calls/{call}");
    let uri = "http://127.0.0.1:9/p.wav";
    h.sim.provide_prompt(uri, Ok(Arc::from(vec![100i16; 8000])));
    let prompt = json!([{"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"@odata.type": "#microsoft.graph.mediaInfo", "uri": uri}}]);
    let r = h.request(Method::Post, &format!("{base}/subscribeToTone"), &ctx);
    keep("commsOperation", &r, &mut said);
    let r = h.request(
        Method::Post,
        &format!("{base}/playPrompt"),
        &json!({"prompts": prompt, "clientContext": "p"}),
    );
    keep("commsOperation", &r, &mut said);
    let r = h.request(
        Method::Post,
        &format!("{base}/recordResponse"),
        &json!({"prompts": prompt, "clientContext": "rec", "maxRecordDurationInSeconds": 5}),
    );
    keep("commsOperation", &r, &mut said);
    h.advance(Duration::from_secs(3));
    let r = h.request(
        Method::Post,
        &format!("{base}/playPrompt"),
        &json!({"prompts": prompt, "clientContext": "p2"}),
    );
    keep("commsOperation", &r, &mut said);
    let r = h.request(Method::Post, &format!("{base}/cancelMediaProcessing"), &ctx);
    keep("commsOperation", &r, &mut said);
    let r = h.request(
        Method::Post,
        &format!("{base}/sendDtmfTones"),
        &json!({"tones": ["tone1"], "clientContext": "d"}),
    );
    keep("commsOperation", &r, &mut said);
    h.advance(Duration::from_secs(2));
    let r = h.request(Method::Post, &format!("{base}/transfer"), &json!({"transferTarget": {"@odata.type": "#microsoft.graph.invitationParticipantInfo",
        "identity": {"@odata.type": "#microsoft.graph.identitySet", "user": {"@odata.type": "#microsoft.graph.identity", "id": "agent"}}}}));
    keep("none", &r, &mut said);
    h.advance(Duration::from_secs(2));
    said.extend(
        h.posted
            .drain(..)
            .map(|b| ("commsNotifications".to_owned(), b)),
    );
    said
}

#[test]
fn everything_the_sim_says_has_the_documented_shape() {
    let schema = Schema::load();
    let said = everything_the_sim_says();
    let mut problems = Vec::new();
    let mut types_seen = BTreeSet::new();
    for (i, (ty, body)) in said.iter().enumerate() {
        let (ty, body) = match ty.as_str() {
            // List answers: `value` holds the items.
            "participants" => ("participant", &body["value"]),
            "audioRoutingGroups" => ("audioRoutingGroup", &body["value"]),
            "contentSharingSessions" => ("contentSharingSession", &body["value"]),
            other => (other, body),
        };
        if let Some(t) = body.get("@odata.type").and_then(Value::as_str) {
            types_seen.insert(t.to_owned());
        }
        schema.check(body, ty, &format!("#{i} {ty}"), &mut problems);
    }
    // Notification batches are checked item by item, down into the resource data.
    for (_, body) in said.iter().filter(|(t, _)| t == "commsNotifications") {
        for n in body["value"].as_array().unwrap() {
            if let Some(t) = n["resourceData"].get("@odata.type").and_then(Value::as_str) {
                types_seen.insert(t.to_owned());
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The run did reach the new shapes.
    for t in [
        "#microsoft.graph.playPromptOperation",
        "#microsoft.graph.recordOperation",
        "#microsoft.graph.subscribeToToneOperation",
        "#microsoft.graph.cancelMediaProcessingOperation",
        "#microsoft.graph.sendDtmfTonesOperation",
        "#microsoft.graph.muteParticipantOperation",
        "#microsoft.graph.startHoldMusicOperation",
        "#microsoft.graph.stopHoldMusicOperation",
        "#microsoft.graph.addLargeGalleryViewOperation",
        "#microsoft.graph.audioRoutingGroup",
        "#microsoft.graph.contentSharingSession",
    ] {
        assert!(types_seen.contains(t), "{t} not seen: {types_seen:?}");
    }
}

#[test]
fn every_body_the_client_sends_has_the_documented_shape() {
    let schema = Schema::load();
    let call = "57dab8b1-894c-409a-b240-bd8beae78896";
    let prompt = MediaPrompt::new("https://cdn.example.com/menu.wav", Some("menu".into()));
    let user = InvitationParticipantInfo::new(IdentitySet::user("u1", Some("U".into())));
    let mut replacing = user.clone();
    replacing.replaces_call_id = graph_signaling::models::Nullable::Value(call.into());
    let answer = AnswerBody {
        callback_uri: "https://bot.example.com/callback".into(),
        media_config: MediaConfig::service_hosted(),
        accepted_modalities: vec![Modality::Audio],
        participant_capacity: None,
        call_options: None,
    };
    let record = RecordResponseBody {
        prompts: vec![prompt.clone()],
        max_record_duration_in_seconds: Some(10),
        stop_tones: vec!["#".into()],
        play_beep: Some(true),
        ..RecordResponseBody::default()
    };
    let group = AudioRoutingGroup::new(RoutingMode::OneToOne, vec!["a".into()], vec!["b".into()]);
    let requests = vec![
        PreparedRequest::answer(call, &answer).unwrap(),
        PreparedRequest::play_prompt(call, vec![prompt.clone()], "c").unwrap(),
        PreparedRequest::record_response(call, record, "c").unwrap(),
        PreparedRequest::subscribe_to_tone(call, "c").unwrap(),
        PreparedRequest::cancel_media_processing(call, "c").unwrap(),
        PreparedRequest::send_dtmf_tones(call, vec![Tone::Tone1, Tone::Pound], Some(100), "c")
            .unwrap(),
        PreparedRequest::mute_participant(call, "p1", "c").unwrap(),
        PreparedRequest::start_hold_music(call, "p1", Some(prompt), "c").unwrap(),
        PreparedRequest::stop_hold_music(call, "p1", "c").unwrap(),
        PreparedRequest::change_screen_sharing_role(call, ScreenSharingRole::Sharer).unwrap(),
        PreparedRequest::add_large_gallery_view(call, "c").unwrap(),
        PreparedRequest::create_audio_routing_group(call, &group).unwrap(),
        PreparedRequest::update_audio_routing_group(call, "g1", &group).unwrap(),
        PreparedRequest::invite(call, vec![replacing], "c", true).unwrap(),
        PreparedRequest::transfer(call, user.clone(), None).unwrap(),
        PreparedRequest::redirect(call, vec![user], Some(20)).unwrap(),
        PreparedRequest::reject(call, graph_signaling::models::RejectReason::Busy).unwrap(),
        PreparedRequest::mute_self(call, "c").unwrap(),
    ];
    let doc: Value = serde_json::from_str(SCHEMA).unwrap();
    let actions = doc["actions"].as_array().unwrap();
    let mut problems = Vec::new();
    for r in &requests {
        let body: Value = serde_json::from_slice(r.body.as_deref().unwrap()).unwrap();
        let last = r.path.rsplit('/').next().unwrap();
        if let Some(action) = actions.iter().find(|a| a["name"] == last) {
            // An action: its keys are its parameters, each checked by its type.
            for (key, value) in body.as_object().unwrap() {
                match action["parameters"].get(key).and_then(Value::as_str) {
                    Some(declared) => {
                        if let Some(t) = graph_type(declared) {
                            schema.check(value, &t, &format!("{} {key}", r.path), &mut problems);
                        }
                    }
                    None => problems.push(format!("{}: {last} has no parameter {key}", r.path)),
                }
            }
        } else {
            // A resource: audioRoutingGroup.
            schema.check(&body, "audioRoutingGroup", &r.path, &mut problems);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_finds_keys_the_schema_does_not_have() {
    let schema = Schema::load();
    let mut problems = Vec::new();
    // An undocumented key on an operation, and one deep in a notification's resource data.
    let op = json!({"@odata.type": "#microsoft.graph.playPromptOperation", "id": "1",
        "status": "completed", "recordingLocation": "x"});
    schema.check(&op, "commsOperation", "op", &mut problems);
    let batch = json!({"value": [{"changeType": "updated", "resourceUrl": "/x",
        "resourceData": [{"@odata.type": "#microsoft.graph.participant", "id": "p",
            "info": {"identity": {"user": {"id": "u", "nickname": "n"}}, "shoeSize": 44}}]}]});
    schema.check(&batch, "commsNotifications", "batch", &mut problems);
    let body = json!({"prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt",
        "mediaInfo": {"uri": "u", "loop": true}}]});
    schema.check(&body["prompts"], "prompt", "body", &mut problems);
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert!(problems[0].contains("playPromptOperation has no property recordingLocation"));
    // Open types too: only the extra keys Graph's pages show.
    assert!(
        problems[1].contains("identity has no property nickname"),
        "{problems:?}"
    );
    assert!(problems[2].contains("participantInfo has no property shoeSize"));
    assert!(problems[3].contains("mediaInfo has no property loop"));
}
