//! The JSON the simulated service sends, in the shapes of the Graph reference examples.

use graph_signaling::models::CallState;
use serde_json::{Value, json};

use crate::scenario::IdentityKind;

/// `@odata.type` prefix of every Graph type.
pub(crate) const NS: &str = "#microsoft.graph.";

/// Graph's error body: `{"error": {"code", "message", "innerError": {"request-id", "date"}}}`.
pub(crate) fn error_body(code: &str, message: &str, request_id: &str) -> Value {
    json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "request-id": request_id,
                "date": "2026-01-01T00:00:00"
            }
        }
    })
}

/// An `identitySet` with one identity of `kind`.
pub(crate) fn identity_set(kind: IdentityKind, id: &str, name: &str, tenant: &str) -> Value {
    let member = match kind {
        IdentityKind::User => "user",
        IdentityKind::Phone => "phone",
        IdentityKind::Guest => "guest",
    };
    let mut identity = json!({
        "@odata.type": format!("{NS}identity"),
        "id": id,
        "displayName": name,
    });
    if kind == IdentityKind::User {
        identity["tenantId"] = json!(tenant);
    }
    json!({
        "@odata.type": format!("{NS}identitySet"),
        member: identity,
    })
}

/// The bot's own `identitySet` (its application identity).
pub(crate) fn application_identity(app_id: &str, name: &str) -> Value {
    json!({
        "@odata.type": format!("{NS}identitySet"),
        "application": {
            "@odata.type": format!("{NS}identity"),
            "id": app_id,
            "displayName": name,
        }
    })
}

/// A `commsNotifications` body with one notification.
pub(crate) fn notifications(
    change_type: &str,
    resource_path: &str,
    callback_uri: &str,
    resource_data: Value,
) -> Value {
    json!({
        "@odata.type": format!("{NS}commsNotifications"),
        "value": [{
            "@odata.type": format!("{NS}commsNotification"),
            "changeType": change_type,
            "resource": format!("/app{resource_path}"),
            "resourceUrl": format!("/communications{resource_path}"),
            "callbackUri": callback_uri,
            "resourceData": resource_data,
        }]
    })
}

/// A call state change (`resourceData` of a call notification).
pub(crate) fn call_state(
    call_id: &str,
    state: &CallState,
    result: Option<(i64, i64, &str)>,
) -> Value {
    let mut data = json!({
        "@odata.type": format!("{NS}call"),
        "state": state.as_str(),
        "id": call_id,
    });
    if let Some((code, subcode, message)) = result {
        data["resultInfo"] = json!({
            "@odata.type": format!("{NS}resultInfo"),
            "code": code,
            "subcode": subcode,
            "message": message,
        });
    }
    data
}

/// An operation resource.
pub(crate) fn operation(
    kind: &str,
    id: &str,
    status: &str,
    client_context: Option<&str>,
    result: Option<(i64, i64, &str)>,
    participants: Option<Value>,
) -> Value {
    let mut op = json!({
        "@odata.type": format!("{NS}{kind}"),
        "id": id,
        "status": status,
        "clientContext": client_context,
        "resultInfo": result.map(|(code, subcode, message)| json!({
            "@odata.type": format!("{NS}resultInfo"),
            "code": code,
            "subcode": subcode,
            "message": message,
        })),
    });
    if let Some(p) = participants {
        op["participants"] = p;
    }
    op
}

/// A roster entry.
pub(crate) struct ParticipantView<'a> {
    pub(crate) id: &'a str,
    pub(crate) identity: Value,
    pub(crate) source_id: u32,
    pub(crate) muted: bool,
    pub(crate) in_lobby: bool,
    pub(crate) sequence: Option<i64>,
    pub(crate) removed: bool,
    /// Streams besides audio (a shared screen, the bot's large gallery).
    pub(crate) extra_streams: Vec<Value>,
}

/// One `mediaStream` of a roster entry.
pub(crate) fn media_stream(media_type: &str, label: &str, direction: &str, source: u32) -> Value {
    json!({
        "@odata.type": format!("{NS}mediaStream"),
        "mediaType": media_type,
        "label": label,
        "sourceId": source.to_string(),
        "direction": direction,
        "serverMuted": false,
    })
}

pub(crate) fn participant(p: &ParticipantView<'_>) -> Value {
    let mut v = json!({
        "@odata.type": format!("{NS}participant"),
        "id": p.id,
        "info": {
            "@odata.type": format!("{NS}participantInfo"),
            "identity": p.identity,
            "endpointType": "default",
        },
        "mediaStreams": [{
            "@odata.type": format!("{NS}mediaStream"),
            "mediaType": "audio",
            "sourceId": p.source_id.to_string(),
            "direction": "sendReceive",
            "serverMuted": false,
        }],
        "isMuted": p.muted,
        "isInLobby": p.in_lobby,
    });
    if let (Some(streams), false) = (v["mediaStreams"].as_array_mut(), p.removed) {
        streams.extend(p.extra_streams.iter().cloned());
    }
    if let Some(seq) = p.sequence {
        v["rosterSequenceNumber"] = json!(seq);
    }
    if p.removed {
        v["removedState"] = json!({ "reason": "Participant left the call" });
        v["mediaStreams"] = json!([]);
    }
    v
}

/// `resourceData` of a delta roster notification.
pub(crate) fn delta_roster(participants: Vec<Value>, sequence: i64) -> Value {
    json!([{
        "@odata.type": format!("{NS}deltaParticipants"),
        "participants": participants,
        "sequenceNumber": sequence,
    }])
}

/// The legacy (Skype bot calling, pre-Graph) form of a one-notification `commsNotifications`
/// body, as the service may post it before a bot has shown it speaks Graph. An incoming call's
/// offer becomes the legacy conversation (`callState: incoming`, its participants, the
/// presented modalities, the callback link); a call's state change becomes a
/// `callStateChange` notification; anything else a `rosterUpdate`. Enough of the shape for a
/// bot to recognise it; a bot that speaks Graph answers 204 and does not read further.
pub(crate) fn legacy(call_id: &str, app_id: &str, graph: &Value) -> Value {
    let n = &graph["value"][0];
    let data = &n["resourceData"];
    let state = data["state"].as_str();
    if n["changeType"] == "created" && state == Some("incoming") {
        // The caller: the first identity in the call's `source` (user, phone or guest).
        let caller = data["source"]["identity"]
            .as_object()
            .and_then(|m| m.values().find(|v| v.is_object()))
            .cloned()
            .unwrap_or(Value::Null);
        return json!({
            "id": call_id,
            "appId": app_id,
            "callState": "incoming",
            "isMultiparty": false,
            "presentedModalityTypes": ["audio"],
            "participants": [
                {
                    "identity": format!("8:orgid:{}", caller["id"].as_str().unwrap_or("")),
                    "displayName": caller["displayName"],
                    "originator": true,
                },
                { "identity": format!("28:{app_id}"), "originator": false },
            ],
            "links": { "callback": n["callbackUri"] },
        });
    }
    match state {
        Some(state) => json!({
            "id": call_id,
            "type": "callStateChange",
            "currentState": state,
        }),
        None => json!({
            "id": call_id,
            "type": "rosterUpdate",
            "participants": [],
        }),
    }
}
