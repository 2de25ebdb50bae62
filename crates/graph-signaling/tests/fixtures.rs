//! Every JSON example of the reference pages parses into the typed model and serializes back to
//! the same JSON; `inspect` describes each and refuses garbage.

use std::path::PathBuf;

use graph_signaling::inspect::{InspectError, Payload, PayloadKind, inspect};
use graph_signaling::models::{
    CallState, CommsNotifications, MediaConfig, MeetingInfo, Nullable, OperationStatusKind,
    ResourceItem,
};
use media_session::SourceId;
use serde_json::Value;

fn fixtures() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

fn fixture(prefix: &str) -> String {
    fixtures()
        .into_iter()
        .find(|(n, _)| n.starts_with(prefix))
        .unwrap_or_else(|| panic!("no fixture {prefix}"))
        .1
}

#[test]
fn there_is_a_fixture_for_every_reference_example() {
    let all = fixtures();
    // 29 examples in create-call.txt and 20 in invite-participants.txt.
    assert_eq!(
        all.iter()
            .filter(|(n, _)| n.starts_with("create-call"))
            .count(),
        29
    );
    assert_eq!(
        all.iter()
            .filter(|(n, _)| n.starts_with("invite-participants"))
            .count(),
        20
    );
}

#[test]
fn every_fixture_round_trips_through_its_typed_model() {
    for (name, text) in fixtures() {
        let original: Value = serde_json::from_str(&text).unwrap();
        let payload = Payload::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected_kind = if name.contains("notification") {
            PayloadKind::Notifications
        } else if name.contains("operation") {
            PayloadKind::Operation
        } else if name.contains("invite-request") {
            PayloadKind::InviteRequest
        } else {
            PayloadKind::Call
        };
        assert_eq!(payload.kind(), expected_kind, "{name}");
        let written = payload.to_value().unwrap();
        assert_eq!(written, original, "{name} did not round-trip");
    }
}

#[test]
fn notifications_type_their_resource_data() {
    let mut seen_call = 0;
    let mut seen_participant = 0;
    let mut seen_delta = 0;
    let mut seen_op = 0;
    let mut seen_sharing = 0;
    for (name, text) in fixtures()
        .into_iter()
        .filter(|(n, _)| n.contains("notification"))
    {
        let batch = CommsNotifications::parse(text.as_bytes()).unwrap();
        for n in &batch.value {
            assert!(n.call_id().is_some(), "{name}: no call id");
            for item in n.items() {
                match item {
                    ResourceItem::Call(_) => seen_call += 1,
                    ResourceItem::Participant(_) => seen_participant += 1,
                    ResourceItem::DeltaParticipants(_) => seen_delta += 1,
                    ResourceItem::Operation(_) => seen_op += 1,
                    ResourceItem::ContentSharingSession(_) => seen_sharing += 1,
                    ResourceItem::Other(v) => panic!("{name}: untyped item {v}"),
                }
            }
        }
    }
    assert_eq!((seen_call, seen_delta, seen_op, seen_sharing), (4, 1, 5, 3));
    assert!(seen_participant >= 7);
}

#[test]
fn typed_fields_carry_the_example_values() {
    // Delta roster: sourceIds become SourceId, the bot's own entry has a removedState.
    let batch = CommsNotifications::parse(fixture("create-call-19").as_bytes()).unwrap();
    let ResourceItem::DeltaParticipants(delta) = &batch.value[0].items()[0] else {
        panic!("not a delta roster")
    };
    assert_eq!(delta.sequence_number, Nullable::Value(1));
    let john = &delta.participants[0];
    assert_eq!(john.audio_sources().collect::<Vec<_>>(), vec![SourceId(1)]);
    assert_eq!(john.streams()[2].source_id, SourceId(8));
    assert_eq!(john.is_muted, Nullable::Value(true));
    assert!(delta.participants[1].removed_state.get().is_some());

    // Null participant ids stay null.
    let batch = CommsNotifications::parse(fixture("invite-participants-33").as_bytes()).unwrap();
    let ResourceItem::Participant(p) = &batch.value[0].items()[0] else {
        panic!()
    };
    assert!(p.id.is_null());

    // Operation status casing is read either way.
    let Payload::Operation(op) = Payload::parse(&fixture("invite-participants-31")).unwrap() else {
        panic!()
    };
    assert_eq!(
        op.status.get().unwrap().kind(),
        OperationStatusKind::Running
    );
    let batch = CommsNotifications::parse(fixture("invite-participants-36").as_bytes()).unwrap();
    let ResourceItem::Operation(op) = &batch.value[0].items()[0] else {
        panic!()
    };
    assert_eq!(
        op.status.get().unwrap().kind(),
        OperationStatusKind::Completed
    );
    assert!(op.id.is_null());

    // Media config and meeting info are typed by @odata.type.
    let Payload::Call(call) = Payload::parse(&fixture("create-call-09")).unwrap() else {
        panic!()
    };
    assert!(
        matches!(call.media_config.get(), Some(MediaConfig::AppHosted(a)) if a.blob.as_deref() == Some("<Media Session Configuration>"))
    );
    assert_eq!(call.state, Nullable::Value(CallState::Establishing));
    let Payload::Call(call) = Payload::parse(&fixture("create-call-23")).unwrap() else {
        panic!()
    };
    assert!(
        matches!(call.meeting_info.get(), Some(MeetingInfo::JoinMeetingId(j)) if j.passcode.as_deref() == Some("psw123"))
    );
    let Payload::Call(call) = Payload::parse(&fixture("create-call-21")).unwrap() else {
        panic!()
    };
    assert!(
        matches!(call.meeting_info.get(), Some(MeetingInfo::Organizer(o)) if o.allow_conversation_without_host == Nullable::Value(true))
    );
}

#[test]
fn unknown_enum_values_and_fields_are_kept() {
    let text = r##"{"@odata.type":"#microsoft.graph.commsNotifications","value":[{
        "@odata.type":"#microsoft.graph.commsNotification","changeType":"updated",
        "resourceUrl":"/communications/calls/abc","futureField":{"x":1},
        "resourceData":{"@odata.type":"#microsoft.graph.call","state":"ringing","id":"abc",
          "requestedModalities":["audio","hologram"],"newThing":[1,2]}}]}"##;
    let payload = Payload::parse(text).unwrap();
    assert_eq!(
        payload.to_value().unwrap(),
        serde_json::from_str::<Value>(text).unwrap()
    );
    let lines = inspect(text).unwrap();
    assert!(
        lines.iter().any(|l| l.contains("state=ringing")),
        "{lines:?}"
    );
}

#[test]
fn inspect_describes_every_fixture() {
    for (name, text) in fixtures() {
        let lines = inspect(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!lines.is_empty(), "{name}");
        assert!(lines.iter().all(|l| !l.contains('\n')), "{name}");
    }
    let lines = inspect(&fixture("create-call-18")).unwrap();
    assert!(
        lines.iter().any(|l| l.contains("participant 0d7664b6-6432-43ed-8d27-d9e7adec188c user:112f7296-5fa4-42ca-bae8-6a692b15d4b8 sources=[audio:1,video:2,videoBasedScreenSharing:8] lobby=false muted=true")),
        "{lines:?}"
    );
    let lines = inspect(&fixture("invite-participants-32")).unwrap();
    assert!(
        lines.iter().any(|l| l.contains("operation eec3812a-fdc3-4fb4-825c-a06c9f35414e inviteParticipantsOperation status=completed")),
        "{lines:?}"
    );
    let lines = inspect(&fixture("create-call-02")).unwrap();
    assert_eq!(
        lines[0],
        "call 2e1a0b00-2db4-4022-9570-243709c565ab state=establishing direction=outgoing media=serviceHosted source=application:2891555a-92ff-42e6-80fa-6e1300c6b5c6 myParticipantId=499ff390-7a72-40e8-83a0-8fac6295ae7e"
    );
}

#[test]
fn inspect_reads_an_error_body() {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/samples/error-body.json"),
    )
    .unwrap();
    let lines = inspect(&text).unwrap();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("error code=7503"), "{}", lines[0]);
    assert!(lines[0].contains("request-id=b7f2a1e0-0000-4000-8000-000000000001"));
    let payload = Payload::parse(&text).unwrap();
    assert_eq!(
        payload.to_value().unwrap(),
        serde_json::from_str::<Value>(&text).unwrap()
    );
}

#[test]
fn inspect_fails_cleanly_on_garbage() {
    type Check = fn(&InspectError) -> bool;
    let cases: &[(&str, Check)] = &[
        ("", |e| matches!(e, InspectError::NotJson(_))),
        ("not json", |e| matches!(e, InspectError::NotJson(_))),
        ("{\"value\": [", |e| matches!(e, InspectError::NotJson(_))),
        ("[1,2,3]", |e| matches!(e, InspectError::Unrecognised(_))),
        ("42", |e| matches!(e, InspectError::Unrecognised(_))),
        ("{}", |e| matches!(e, InspectError::Unrecognised(_))),
        (r##"{"@odata.type":"#microsoft.graph.user"}"##, |e| {
            matches!(e, InspectError::Unrecognised(_))
        }),
        (r##"{"value":[{"changeType":"updated"}]}"##, |e| {
            matches!(e, InspectError::Malformed { .. })
        }),
        (r##"{"value":[1]}"##, |e| {
            matches!(e, InspectError::Malformed { .. })
        }),
        (
            r##"{"value":[{"changeType":"updated","resourceData":[{"@odata.type":"#microsoft.graph.participant","mediaStreams":[{"mediaType":"audio","sourceId":"-1","direction":"sendReceive"}]}]}]}"##,
            |e| matches!(e, InspectError::Malformed { .. }),
        ),
        (
            r##"{"@odata.type":"#microsoft.graph.call","state":5}"##,
            |e| matches!(e, InspectError::Malformed { .. }),
        ),
    ];
    for (input, check) in cases {
        let err = inspect(input).expect_err(input);
        assert!(check(&err), "{input}: {err:?}");
        assert!(
            !err.to_string().contains('\n'),
            "{input}: multi-line reason"
        );
    }
    // Deep nesting hits serde_json's recursion limit instead of overflowing the stack.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(inspect(&deep), Err(InspectError::NotJson(_))));
    let big = " ".repeat(graph_signaling::models::MAX_NOTIFICATION_BYTES + 1);
    assert!(matches!(inspect(&big), Err(InspectError::TooLarge(_))));
}

#[test]
fn fuzz_entry_point_survives_fixtures_and_their_truncations() {
    for (_, text) in fixtures() {
        let bytes = text.as_bytes();
        graph_signaling::_internal_test_exports::fuzz::notification_parse(bytes);
        for cut in (0..bytes.len()).step_by(13) {
            graph_signaling::_internal_test_exports::fuzz::notification_parse(&bytes[..cut]);
        }
    }
}

#[test]
fn fuzz_regressions_pass() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        graph_signaling::_internal_test_exports::fuzz::notification_parse(
            &std::fs::read(entry.unwrap().path()).unwrap(),
        );
        n += 1;
    }
    assert!(n > 0);
}

#[test]
fn legacy_notifications_are_named_not_mistaken_for_graph_shapes() {
    // A legacy offer has a participants array, like an invite request body.
    let offer = r#"{"id":"leg-1","callState":"incoming","participants":[{"identity":"8:orgid:a"}],
        "links":{"callback":"https://x"}}"#;
    let payload = Payload::parse(offer).unwrap();
    assert_eq!(payload.kind(), PayloadKind::Legacy);
    assert_eq!(
        payload.to_value().unwrap(),
        serde_json::from_str::<Value>(offer).unwrap()
    );
    let lines = inspect(offer).unwrap();
    assert!(
        lines[0].starts_with("legacy notification")
            && lines[0].contains("id=leg-1")
            && lines[0].contains("offer callState=incoming")
            && lines[0].contains("participants=1"),
        "{lines:?}"
    );
    assert!(lines[1].contains("204"), "{lines:?}");
    let update = r#"{"id":"leg-2","type":"rosterUpdate","participants":[]}"#;
    let lines = inspect(update).unwrap();
    assert!(lines[0].contains("type=rosterUpdate"), "{lines:?}");
    // An invite body without an id stays an invite.
    let invite = r#"{"participants":[],"clientContext":"c"}"#;
    assert_eq!(
        Payload::parse(invite).unwrap().kind(),
        PayloadKind::InviteRequest
    );
}
