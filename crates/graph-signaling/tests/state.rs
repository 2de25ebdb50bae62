//! The sans-IO call state machine, roster, binding, operation matcher and timers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use graph_signaling::models::{CallState, CommsNotifications, ResourceItem};
use graph_signaling::state::{
    CallStateMachine, OperationMatcher, OperationOutcome, ParticipantKey, SignalingEvent,
    TokenLifetime,
};
use media_session::SourceId;
use serde_json::json;

const BOT_APP: &str = "2891555a-92ff-42e6-80fa-6e1300c6b5c6";

fn fixture(prefix: &str) -> CommsNotifications {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let path = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap();
    CommsNotifications::parse(&std::fs::read(path).unwrap()).unwrap()
}

fn batch(v: serde_json::Value) -> CommsNotifications {
    serde_json::from_value(v).unwrap()
}

fn drain(m: &mut CallStateMachine) -> Vec<SignalingEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

fn feed(m: &mut CallStateMachine, b: &CommsNotifications) -> Vec<SignalingEvent> {
    for n in &b.value {
        m.handle_notification(n, Instant::now());
    }
    drain(m)
}

fn state_note(call: &str, state: &str) -> CommsNotifications {
    batch(
        json!({"value": [{"changeType": "updated", "resourceUrl": format!("/communications/calls/{call}"),
        "resourceData": {"@odata.type": "#microsoft.graph.call", "state": state, "id": call}}]}),
    )
}

fn participant(
    id: Option<&str>,
    user: &str,
    audio: &[u32],
    seq: Option<i64>,
    removed: bool,
) -> serde_json::Value {
    let streams: Vec<_> = audio
        .iter()
        .map(|s| json!({"mediaType": "audio", "sourceId": s.to_string(), "direction": "sendReceive", "serverMuted": false}))
        .collect();
    let mut p = json!({"@odata.type": "#microsoft.graph.participant",
        "info": {"identity": {"user": {"id": user}}}, "mediaStreams": streams,
        "isMuted": false, "isInLobby": false, "id": id});
    if let Some(s) = seq {
        p["rosterSequenceNumber"] = json!(s);
    }
    if removed {
        p["removedState"] = json!({"reason": "left"});
    }
    p
}

fn delta(call: &str, seq: i64, participants: Vec<serde_json::Value>) -> CommsNotifications {
    batch(json!({"value": [{"changeType": "updated",
        "resourceUrl": format!("/communications/calls/{call}/participants"),
        "resourceData": [{"@odata.type": "#microsoft.graph.deltaParticipants",
            "participants": participants, "sequenceNumber": seq}]}]}))
}

#[test]
fn established_before_establishing_never_regresses() {
    let established = fixture("create-call-04");
    let establishing = state_note("2e1a0b00-b3c5-4b0f-99b3-c133bc1e6116", "establishing");
    let mut m = CallStateMachine::new("2e1a0b00-b3c5-4b0f-99b3-c133bc1e6116", None);
    let ev = feed(&mut m, &established);
    assert_eq!(
        ev,
        vec![SignalingEvent::StateChanged {
            from: None,
            to: CallState::Established
        }]
    );
    assert!(feed(&mut m, &establishing).is_empty());
    assert_eq!(m.state(), Some(&CallState::Established));
    // In order works too, and a duplicate changes nothing.
    let mut m = CallStateMachine::new("2e1a0b00-b3c5-4b0f-99b3-c133bc1e6116", None);
    assert_eq!(feed(&mut m, &establishing).len(), 1);
    assert_eq!(feed(&mut m, &established).len(), 1);
    assert!(feed(&mut m, &established).is_empty());
}

#[test]
fn terminated_is_final_and_carries_result_info() {
    let mut m = CallStateMachine::new("c1", None);
    feed(&mut m, &state_note("c1", "established"));
    feed(
        &mut m,
        &delta(
            "c1",
            1,
            vec![participant(Some("p1"), "u1", &[5], Some(1), false)],
        ),
    );
    let end = batch(
        json!({"value": [{"changeType": "deleted", "resourceUrl": "/communications/calls/c1",
        "resourceData": {"@odata.type": "#microsoft.graph.call", "state": "terminated", "id": "c1",
            "resultInfo": {"code": 408, "subcode": 8537, "message": "keep alive timeout"}}}]}),
    );
    let ev = feed(&mut m, &end);
    assert!(ev.contains(&SignalingEvent::StreamUnbind(
        SourceId(5),
        ParticipantKey::Id("p1".into())
    )));
    let Some(SignalingEvent::Terminated(Some(r))) = ev.last() else {
        panic!("{ev:?}")
    };
    assert_eq!(r.subcode.get(), Some(&8537));
    assert!(m.is_terminated());
    assert_eq!(m.roster().bound_sources(), 0);
    assert!(feed(&mut m, &state_note("c1", "established")).is_empty());
    assert!(
        feed(
            &mut m,
            &delta(
                "c1",
                2,
                vec![participant(Some("p2"), "u2", &[6], Some(2), false)]
            )
        )
        .is_empty()
    );
}

#[test]
fn unknown_call_states_do_not_break_the_machine() {
    let mut m = CallStateMachine::new("c1", None);
    feed(&mut m, &state_note("c1", "ringing"));
    feed(&mut m, &state_note("c1", "parkedInTheFuture"));
    assert_eq!(
        m.state(),
        Some(&CallState::Unknown("parkedInTheFuture".into()))
    );
    feed(&mut m, &state_note("c1", "established"));
    assert_eq!(m.state(), Some(&CallState::Established));
}

/// The bound sources, as a call owner keeps them from the bind events; a double bind or an
/// unbind of the wrong participant fails the test.
#[derive(Default)]
struct Binder(BTreeMap<SourceId, String>);

impl Binder {
    fn apply(&mut self, e: &SignalingEvent) {
        match e {
            SignalingEvent::StreamBind(source, participant) => self.bind(*source, participant),
            SignalingEvent::StreamUnbind(source, participant) => self.unbind(*source, participant),
            _ => {}
        }
    }
    fn bind(&mut self, source: SourceId, participant: &ParticipantKey) {
        assert!(
            self.0.insert(source, participant.to_string()).is_none(),
            "double bind {source}"
        );
    }
    fn unbind(&mut self, source: SourceId, participant: &ParticipantKey) {
        assert_eq!(
            self.0.remove(&source).as_deref(),
            Some(participant.to_string().as_str())
        );
    }
}

#[test]
fn full_roster_binds_audio_but_never_the_bot_itself() {
    let roster = fixture("create-call-18");
    let mut m = CallStateMachine::new("2f1a1100-b174-40a0-aba7-0b405e01ed92", Some(BOT_APP.into()));
    let mut binder = Binder::default();
    for e in feed(&mut m, &roster) {
        binder.apply(&e);
    }
    // John's audio (1) is bound; his video (2) and the bot's own audio (10) are not.
    assert_eq!(
        binder.0.keys().copied().collect::<Vec<_>>(),
        vec![SourceId(1)]
    );
    assert_eq!(m.roster().len(), 2);
    // Same roster again: nothing changes.
    assert!(feed(&mut m, &roster).is_empty());
    // myParticipantId alone also recognises the bot.
    let call: graph_signaling::models::Call =
        serde_json::from_value(json!({"id": "2f1a1100-b174-40a0-aba7-0b405e01ed92",
        "myParticipantId": "05491616-385f-44a8-9974-18cc5f9933c1", "state": "establishing"}))
        .unwrap();
    let mut m = CallStateMachine::from_call(&call, None, Instant::now());
    assert_eq!(drain(&mut m).len(), 1, "the response's state is reported");
    let mut binder = Binder::default();
    for e in feed(&mut m, &roster) {
        binder.apply(&e);
    }
    assert_eq!(binder.0.len(), 1);
}

#[test]
fn full_roster_departures_unbind() {
    let mut m = CallStateMachine::new("c1", None);
    let full = |ps: Vec<serde_json::Value>| {
        batch(
            json!({"value": [{"changeType": "updated", "resourceUrl": "/communications/calls/c1/participants", "resourceData": ps}]}),
        )
    };
    let mut binder = Binder::default();
    for e in feed(
        &mut m,
        &full(vec![
            participant(Some("a"), "ua", &[1], None, false),
            participant(Some("b"), "ub", &[2], None, false),
        ]),
    ) {
        binder.apply(&e);
    }
    assert_eq!(binder.0.len(), 2);
    let ev = feed(
        &mut m,
        &full(vec![participant(Some("b"), "ub", &[2, 3], None, false)]),
    );
    for e in &ev {
        binder.apply(e);
    }
    assert!(ev.contains(&SignalingEvent::ParticipantLeft(
        ParticipantKey::Id("a".into()),
        None
    )));
    assert!(ev.iter().any(
        |e| matches!(e, SignalingEvent::ParticipantUpdated(k, _) if *k == ParticipantKey::Id("b".into()))
    ));
    assert_eq!(
        binder.0.keys().copied().collect::<Vec<_>>(),
        vec![SourceId(2), SourceId(3)]
    );
    // An empty roster: everyone left.
    for e in feed(&mut m, &full(vec![])) {
        binder.apply(&e);
    }
    assert!(binder.0.is_empty());
    assert!(m.roster().is_empty());
}

#[test]
fn delta_rosters_apply_in_sequence_order_whatever_the_arrival_order() {
    let d1 = delta(
        "c1",
        1,
        vec![participant(Some("a"), "ua", &[1], Some(1), false)],
    );
    let d2 = delta(
        "c1",
        2,
        vec![participant(Some("a"), "ua", &[1, 4], Some(2), false)],
    );
    let d3 = delta(
        "c1",
        3,
        vec![participant(Some("a"), "ua", &[1, 4], Some(3), true)],
    );
    let orders: [[&CommsNotifications; 3]; 4] = [
        [&d1, &d2, &d3],
        [&d3, &d1, &d2],
        [&d2, &d1, &d3],
        [&d3, &d2, &d1],
    ];
    for order in orders {
        let mut m = CallStateMachine::new("c1", None);
        let mut binder = Binder::default();
        for d in order {
            for e in feed(&mut m, d) {
                binder.apply(&e);
            }
        }
        assert!(m.roster().is_empty(), "participant must end removed");
        assert!(binder.0.is_empty());
    }
    // Stale delta after a newer one is ignored.
    let mut m = CallStateMachine::new("c1", None);
    feed(&mut m, &d2);
    assert!(feed(&mut m, &d1).is_empty());
    let entry = m.roster().get(&ParticipantKey::Id("a".into())).unwrap();
    assert_eq!(entry.bound.len(), 2);
}

#[test]
fn delta_fixture_removes_the_bot_entry_and_binds_john() {
    let mut m = CallStateMachine::new("421f7700-f4ad-4ea9-a3fc-c1d2195675ad", Some(BOT_APP.into()));
    let ev = feed(&mut m, &fixture("create-call-19"));
    assert!(ev.contains(&SignalingEvent::StreamBind(
        SourceId(1),
        ParticipantKey::Id("0d7664b6-6432-43ed-8d27-d9e7adec188c".into())
    )));
    assert!(
        !ev.iter()
            .any(|e| matches!(e, SignalingEvent::StreamBind(SourceId(10), _)))
    );
    assert_eq!(m.roster().len(), 1);
}

#[test]
fn null_id_entries_are_keyed_by_identity_and_source() {
    let mut m = CallStateMachine::new("7531d31f-d10d-44de-802f-c569dbca451c", None);
    let ev = feed(&mut m, &fixture("invite-participants-37"));
    let binds: Vec<_> = ev
        .iter()
        .filter(|e| matches!(e, SignalingEvent::StreamBind(..)))
        .collect();
    assert_eq!(binds.len(), 2, "{ev:?}");
    assert_eq!(m.roster().len(), 2);
    let key = ParticipantKey::Anonymous {
        identity: "user:1e126418-44a0-4a94-a6f8-0efe1ad71acb".into(),
        source: Some(SourceId(3)),
    };
    assert!(m.roster().get(&key).is_some());
}

#[test]
fn lobby_and_mute_changes_are_updates() {
    let mut m = CallStateMachine::new("c1", None);
    feed(
        &mut m,
        &delta(
            "c1",
            1,
            vec![participant(Some("a"), "ua", &[1], Some(1), false)],
        ),
    );
    let mut p = participant(Some("a"), "ua", &[1], Some(2), false);
    p["isInLobby"] = json!(true);
    p["isMuted"] = json!(true);
    let ev = feed(&mut m, &delta("c1", 2, vec![p]));
    assert_eq!(ev.len(), 1, "{ev:?}");
    let SignalingEvent::ParticipantUpdated(_, p) = &ev[0] else {
        panic!()
    };
    assert_eq!(p.is_in_lobby.get(), Some(&true));
}

#[test]
fn content_sharing_sessions_start_update_and_end() {
    let mut m = CallStateMachine::new("421f4c00-4436-4c3a-9d9a-c4924cf98e67", None);
    let id = "F7D9EF30FF0A9BD3F64B274387FB8FF8E96B6CFBA8F87F8305A74DE99AF007BC".to_owned();
    assert_eq!(
        feed(&mut m, &fixture("create-call-05")),
        vec![SignalingEvent::ContentSharingStarted(id.clone())]
    );
    assert_eq!(
        feed(&mut m, &fixture("create-call-06")),
        vec![SignalingEvent::ContentSharingUpdated(id.clone())]
    );
    assert_eq!(m.content_sharing_sessions().count(), 1);
    assert_eq!(
        feed(&mut m, &fixture("create-call-07")),
        vec![SignalingEvent::ContentSharingEnded(id)]
    );
    assert!(feed(&mut m, &fixture("create-call-07")).is_empty());
}

#[test]
fn an_operation_notification_is_reported_once_per_call() {
    let n = fixture("invite-participants-32");
    let id = n.value[0].call_id().unwrap().to_owned();
    assert_eq!(id, "ab6233a5-20b7-4c5e-bea2-ce56c9776429");
    let mut m = CallStateMachine::new(&id, None);
    assert!(matches!(
        &feed(&mut m, &n)[..],
        [SignalingEvent::OperationFinished(_)]
    ));
    // Another call's notification is the caller's to route: here it is simply another call.
    let mut other = CallStateMachine::new("2e1a0b00-2db4-4022-9570-243709c565ab", None);
    feed(&mut other, &fixture("create-call-03"));
    assert_eq!(other.state(), Some(&CallState::Establishing));
}

fn op_of(b: &CommsNotifications) -> graph_signaling::models::CommsOperation {
    match &b.value[0].items()[0] {
        ResourceItem::Operation(op) => (**op).clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn operations_match_by_id_then_by_client_context() {
    let t0 = Instant::now();
    let mut ops = OperationMatcher::new();
    // Example 1: the notification carries the id.
    let a = ops.register(
        "ab6233a5-20b7-4c5e-bea2-ce56c9776429",
        Some("eec3812a-fdc3-4fb4-825c-a06c9f35414e".into()),
        Some("other".into()),
        t0 + Duration::from_secs(30),
    );
    // Example 2: the notification's id is null; clientContext identifies it.
    let b = ops.register(
        "7531d31f-d10d-44de-802f-c569dbca451c",
        Some("eec3812a-0000".into()),
        Some("f2fa86af-3c51-4bc2-8fc0-475452d9764f".into()),
        t0 + Duration::from_secs(30),
    );
    let n1 = fixture("invite-participants-32");
    assert_eq!(
        ops.handle_operation(n1.value[0].call_id().unwrap(), &op_of(&n1)),
        Some(a)
    );
    let n2 = fixture("invite-participants-36");
    assert_eq!(
        ops.handle_operation(n2.value[0].call_id().unwrap(), &op_of(&n2)),
        Some(b)
    );
    // Duplicates find nobody waiting.
    assert_eq!(
        ops.handle_operation(n2.value[0].call_id().unwrap(), &op_of(&n2)),
        None
    );
    let outcomes: Vec<_> = std::iter::from_fn(|| ops.poll_outcome()).collect();
    assert_eq!(outcomes.len(), 2);
    assert!(matches!(&outcomes[0].1, OperationOutcome::Finished(op) if op.is_finished()));
    // A running status resolves nothing.
    let running: graph_signaling::models::CommsOperation =
        serde_json::from_value(json!({"id": "x", "status": "Running"})).unwrap();
    let c = ops.register("c", Some("x".into()), None, t0 + Duration::from_secs(5));
    assert_eq!(ops.handle_operation("c", &running), None);
    assert_eq!(ops.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    ops.handle_timeout(t0 + Duration::from_secs(4));
    assert!(ops.poll_outcome().is_none());
    ops.handle_timeout(t0 + Duration::from_secs(5));
    assert_eq!(ops.poll_outcome(), Some((c, OperationOutcome::TimedOut)));
    assert_eq!(ops.pending(), 0);
}

#[test]
fn token_refreshes_before_expiry() {
    let t0 = Instant::now();
    let life = TokenLifetime::new(t0, Duration::from_secs(3600));
    assert_eq!(life.refresh_at(), t0 + Duration::from_secs(3300));
    assert!(!life.needs_refresh(t0 + Duration::from_secs(3299)));
    assert!(life.needs_refresh(t0 + Duration::from_secs(3300)));
    let short = TokenLifetime::new(t0, Duration::from_secs(60));
    assert_eq!(short.refresh_at(), t0 + Duration::from_secs(30));
}

#[test]
fn entries_sharing_a_key_in_one_update_apply_once() {
    // Two entries without id, identity or audio collapse to one key: the last one counts, so a
    // repeated delivery of the batch changes nothing.
    let anon = |muted: bool| json!({"@odata.type": "#microsoft.graph.participant", "isMuted": muted, "isInLobby": false});
    let b = delta("c1", 1, vec![anon(true), anon(false)]);
    let mut m = CallStateMachine::new("c1", None);
    let first = feed(&mut m, &b);
    assert_eq!(first.len(), 1, "{first:?}");
    let SignalingEvent::ParticipantJoined(_, p) = &first[0] else {
        panic!("{first:?}")
    };
    assert_eq!(p.is_muted.get(), Some(&false));
    let full = batch(
        json!({"value": [{"changeType": "updated", "resourceUrl": "/communications/calls/c1/participants",
        "resourceData": [anon(true), anon(false)]}]}),
    );
    feed(&mut m, &full);
    assert!(feed(&mut m, &full).is_empty());
}

#[test]
fn deleting_the_call_resource_terminates_even_without_data() {
    let mut m = CallStateMachine::new("c1", None);
    feed(&mut m, &state_note("c1", "established"));
    // Deleting a sub-resource (an operation) does not end the call.
    let op_gone = batch(
        json!({"value": [{"changeType": "deleted", "resourceUrl": "/communications/calls/c1/operations/o1"}]}),
    );
    assert!(feed(&mut m, &op_gone).is_empty());
    let gone = batch(
        json!({"value": [{"changeType": "deleted", "resourceUrl": "/communications/calls/c1"}]}),
    );
    let ev = feed(&mut m, &gone);
    assert!(
        matches!(ev.last(), Some(SignalingEvent::Terminated(None))),
        "{ev:?}"
    );
    assert!(m.is_terminated());
}

/// The documented tone notification: a call update carrying `toneInfo`.
fn tone_note(call: &str, seq: i64, tone: &str) -> CommsNotifications {
    batch(json!({"value": [{"changeType": "updated",
        "resourceUrl": format!("/communications/calls/{call}"),
        "resourceData": {"@odata.type": "#microsoft.graph.call", "state": "established",
            "toneInfo": {"@odata.type": "#microsoft.graph.toneInfo", "sequenceId": seq, "tone": tone}}}]}))
}

#[test]
fn each_key_pressed_is_reported_once_in_order() {
    use graph_signaling::models::Tone;
    let call = "5f1f2a00-1111-4222-8333-944455556666";
    let mut m = CallStateMachine::new(call, Some(BOT_APP.into()));
    feed(&mut m, &state_note(call, "established"));
    let tones = |events: Vec<SignalingEvent>| -> Vec<(i64, Tone)> {
        events
            .into_iter()
            .filter_map(|e| match e {
                SignalingEvent::Tone(t) => Some((t.sequence_id, t.tone)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        tones(feed(&mut m, &tone_note(call, 1, "tone2"))),
        vec![(1, Tone::Tone2)]
    );
    // Redelivered: nothing new.
    assert!(tones(feed(&mut m, &tone_note(call, 1, "tone2"))).is_empty());
    assert_eq!(
        tones(feed(&mut m, &tone_note(call, 2, "pound"))),
        vec![(2, Tone::Pound)]
    );
    // A late copy of an older key is not a new key.
    assert!(tones(feed(&mut m, &tone_note(call, 1, "tone2"))).is_empty());
    // A key this version does not know still arrives, spelled as sent.
    assert_eq!(
        tones(feed(&mut m, &tone_note(call, 3, "tone42"))),
        vec![(3, Tone::Unknown("tone42".into()))]
    );
    feed(&mut m, &state_note(call, "terminated"));
    assert!(
        tones(feed(&mut m, &tone_note(call, 4, "tone1"))).is_empty(),
        "after the end"
    );
}

#[test]
fn the_bots_own_entry_is_reported_apart_from_the_people() {
    // The bot joined as a guest: only myParticipantId tells its entry apart.
    let call: graph_signaling::models::Call = serde_json::from_value(
        json!({"id": "c-self", "myParticipantId": "me", "state": "establishing"}),
    )
    .unwrap();
    let mut m = CallStateMachine::from_call(&call, Some(BOT_APP.into()), Instant::now());
    drain(&mut m);
    let mut me = participant(Some("me"), "ignored", &[7], Some(1), false);
    me["info"]["identity"] = json!({"guest": {"id": "g1", "displayName": "Visitor"}});
    let alice = participant(Some("a"), "alice", &[1], Some(1), false);
    let ev = feed(&mut m, &delta("c-self", 1, vec![me.clone(), alice]));
    let selves: Vec<String> = ev
        .iter()
        .filter_map(|e| match e {
            SignalingEvent::SelfUpdated(p) => Some(p.identity_label()),
            _ => None,
        })
        .collect();
    assert_eq!(selves, ["guest:g1"]);
    let joined: Vec<String> = ev
        .iter()
        .filter_map(|e| match e {
            SignalingEvent::ParticipantJoined(_, p) => Some(p.identity_label()),
            _ => None,
        })
        .collect();
    assert_eq!(joined, ["user:alice"], "the bot is not one of the people");
    // Its own audio is never bound; a change to its entry is again its own.
    assert!(
        !ev.iter()
            .any(|e| matches!(e, SignalingEvent::StreamBind(SourceId(7), _)))
    );
    let mut muted = me.clone();
    muted["isMuted"] = json!(true);
    muted["rosterSequenceNumber"] = json!(2);
    let ev = feed(&mut m, &delta("c-self", 2, vec![muted]));
    assert!(matches!(&ev[..], [SignalingEvent::SelfUpdated(p)] if p.is_muted.get() == Some(&true)));
    // Its removal is no participant leaving.
    let mut gone = me;
    gone["removedState"] = json!({"reason": "removed"});
    gone["rosterSequenceNumber"] = json!(3);
    let ev = feed(&mut m, &delta("c-self", 3, vec![gone]));
    assert!(
        !ev.iter()
            .any(|e| matches!(e, SignalingEvent::ParticipantLeft(..))),
        "{ev:?}"
    );
}
