//! The library side of `mediabot inspect`: recognise a Graph calling payload and describe it
//! one line per item.

use std::fmt::Write as _;

use serde_json::Value;

use crate::models::{
    Call, CommsNotification, CommsNotifications, CommsOperation, GraphErrorBody,
    InviteParticipantsBody, MAX_NOTIFICATION_BYTES, Participant, ResourceItem, is_legacy_value,
    odata_kind,
};

/// Why a payload could not be inspected. `Display` is a single line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// The input is larger than the notification size limit.
    #[error("input of {0} bytes is larger than the {MAX_NOTIFICATION_BYTES} byte limit")]
    TooLarge(usize),
    /// The input is not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// The JSON is not an object, or an object of no known kind.
    #[error("unrecognised payload: {0}")]
    Unrecognised(String),
    /// The kind was recognised but the content does not fit its model.
    #[error("malformed {kind}: {reason}")]
    Malformed {
        /// The detected kind.
        kind: PayloadKind,
        /// What did not fit.
        reason: String,
    },
}

/// The kinds of payload `inspect` recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// A call (create-call request or response, get call).
    Call,
    /// A `commsNotifications` batch.
    Notifications,
    /// A comms operation (invite response, mute response, …).
    Operation,
    /// An invite request body.
    InviteRequest,
    /// A Graph error body.
    Error,
    /// A notification in the legacy format (the Skype bot calling protocol).
    Legacy,
}

impl std::fmt::Display for PayloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PayloadKind::Call => "call",
            PayloadKind::Notifications => "commsNotifications",
            PayloadKind::Operation => "operation",
            PayloadKind::InviteRequest => "invite request",
            PayloadKind::Error => "error body",
            PayloadKind::Legacy => "legacy notification",
        })
    }
}

/// A parsed payload of one of the recognised kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A call.
    Call(Box<Call>),
    /// A notification batch.
    Notifications(CommsNotifications),
    /// An operation.
    Operation(Box<CommsOperation>),
    /// An invite request body.
    InviteRequest(InviteParticipantsBody),
    /// An error body.
    Error(GraphErrorBody),
    /// A legacy-format notification, kept as JSON (mediabot never acts on one: it answers
    /// `204 No Content` and the service posts it again in Graph's format).
    Legacy(Box<Value>),
}

impl Payload {
    /// Detects the kind of a JSON payload and parses it into its model.
    pub fn parse(input: &str) -> Result<Payload, InspectError> {
        if input.len() > MAX_NOTIFICATION_BYTES {
            return Err(InspectError::TooLarge(input.len()));
        }
        let value: Value =
            serde_json::from_str(input).map_err(|e| InspectError::NotJson(e.to_string()))?;
        Payload::from_value(value)
    }

    /// Detects the kind of an already parsed JSON value and types it.
    pub fn from_value(value: Value) -> Result<Payload, InspectError> {
        let kind = detect(&value)?;
        let typed = |e: serde_json::Error| InspectError::Malformed {
            kind,
            reason: e.to_string(),
        };
        Ok(match kind {
            PayloadKind::Call => {
                Payload::Call(Box::new(serde_json::from_value(value).map_err(typed)?))
            }
            PayloadKind::Notifications => {
                Payload::Notifications(serde_json::from_value(value).map_err(typed)?)
            }
            PayloadKind::Operation => {
                Payload::Operation(Box::new(serde_json::from_value(value).map_err(typed)?))
            }
            PayloadKind::InviteRequest => {
                Payload::InviteRequest(serde_json::from_value(value).map_err(typed)?)
            }
            PayloadKind::Error => Payload::Error(serde_json::from_value(value).map_err(typed)?),
            PayloadKind::Legacy => Payload::Legacy(Box::new(value)),
        })
    }

    /// The payload's kind.
    pub fn kind(&self) -> PayloadKind {
        match self {
            Payload::Call(_) => PayloadKind::Call,
            Payload::Notifications(_) => PayloadKind::Notifications,
            Payload::Operation(_) => PayloadKind::Operation,
            Payload::InviteRequest(_) => PayloadKind::InviteRequest,
            Payload::Error(_) => PayloadKind::Error,
            Payload::Legacy(_) => PayloadKind::Legacy,
        }
    }

    /// Serializes the typed payload back to JSON.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        match self {
            Payload::Call(c) => serde_json::to_value(c),
            Payload::Notifications(n) => serde_json::to_value(n),
            Payload::Operation(o) => serde_json::to_value(o),
            Payload::InviteRequest(i) => serde_json::to_value(i),
            Payload::Error(e) => serde_json::to_value(e),
            Payload::Legacy(v) => Ok((**v).clone()),
        }
    }
}

fn detect(value: &Value) -> Result<PayloadKind, InspectError> {
    let Value::Object(map) = value else {
        return Err(InspectError::Unrecognised(
            "top level is not a JSON object".into(),
        ));
    };
    // Before the other shapes: a legacy offer has a `participants` array too.
    if is_legacy_value(value) {
        return Ok(PayloadKind::Legacy);
    }
    let kind = odata_kind(map);
    if kind == Some("commsNotifications") || map.get("value").is_some_and(Value::is_array) {
        return Ok(PayloadKind::Notifications);
    }
    if kind == Some("call") {
        return Ok(PayloadKind::Call);
    }
    if kind.is_some_and(|k| k.ends_with("Operation")) {
        return Ok(PayloadKind::Operation);
    }
    if map.get("error").is_some_and(Value::is_object) {
        return Ok(PayloadKind::Error);
    }
    if kind.is_none() {
        if map.contains_key("callbackUri") {
            return Ok(PayloadKind::Call);
        }
        if map.contains_key("status") {
            return Ok(PayloadKind::Operation);
        }
        if map.get("participants").is_some_and(Value::is_array) {
            return Ok(PayloadKind::InviteRequest);
        }
    }
    Err(InspectError::Unrecognised(match kind {
        Some(k) => format!("@odata.type {k} is not a call, commsNotifications or operation"),
        None => "no @odata.type and no call, notification, operation, invite or error shape".into(),
    }))
}

/// A legacy notification: what it is about, and what a Graph bot does with it.
fn describe_legacy(v: &Value, lines: &mut Vec<String>) {
    let text = |key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .map(|s| s.chars().take(128).collect::<String>())
    };
    let mut l = String::from("legacy notification (Skype bot calling protocol, not Graph)");
    if let Some(id) = text("id") {
        let _ = write!(l, " id={id}");
    }
    match (text("type"), text("callState")) {
        (Some(kind), _) => {
            let _ = write!(l, " type={kind}");
        }
        (None, Some(state)) => {
            let _ = write!(l, " offer callState={state}");
        }
        (None, None) => {}
    }
    if let Some(n) = v.get("participants").and_then(Value::as_array) {
        let _ = write!(l, " participants={}", n.len());
    }
    lines.push(l);
    lines.push(
        "  a Graph bot answers 204 No Content; the service then posts it as commsNotifications"
            .into(),
    );
}

/// Reads any supported payload and returns the lines `mediabot inspect` prints: the first names
/// the kind, then one line per item.
pub fn inspect(input: &str) -> Result<Vec<String>, InspectError> {
    Ok(describe(&Payload::parse(input)?))
}

/// Describes a parsed payload, one line per item.
pub fn describe(payload: &Payload) -> Vec<String> {
    let mut lines = Vec::new();
    match payload {
        Payload::Call(call) => describe_call(call, &mut lines),
        Payload::Legacy(v) => describe_legacy(v, &mut lines),
        Payload::Notifications(batch) => {
            lines.push(format!(
                "commsNotifications: {} notification(s)",
                batch.value.len()
            ));
            for n in &batch.value {
                describe_notification(n, &mut lines);
            }
        }
        Payload::Operation(op) => {
            lines.push(operation_line(op));
            for p in op.participants.get().into_iter().flatten() {
                lines.push(format!("  participant {}", identity_of(p.identity.get())));
            }
        }
        Payload::InviteRequest(body) => {
            lines.push(format!(
                "invite clientContext={} participants={}",
                body.client_context.as_deref().unwrap_or("-"),
                body.participants.len()
            ));
            for p in &body.participants {
                let mut l = format!("  participant {}", identity_of(p.identity.get()));
                if let Some(r) = p.replaces_call_id.as_deref() {
                    let _ = write!(l, " replacesCallId={r}");
                }
                if let Some(id) = p.participant_id.as_deref() {
                    let _ = write!(l, " participantId={id}");
                }
                lines.push(l);
            }
        }
        Payload::Error(body) => {
            let e = &body.error;
            let inner = e.inner_error.get();
            lines.push(format!(
                "error code={} message={:?} request-id={} client-request-id={}",
                e.code.as_deref().unwrap_or("-"),
                e.message.as_deref().unwrap_or(""),
                inner.and_then(|i| i.request_id.as_deref()).unwrap_or("-"),
                inner
                    .and_then(|i| i.client_request_id.as_deref())
                    .unwrap_or("-"),
            ));
        }
    }
    lines
}

fn identity_of(set: Option<&crate::models::IdentitySet>) -> String {
    set.map_or_else(|| "?".to_owned(), |s| s.label())
}

fn describe_call(call: &Call, lines: &mut Vec<String>) {
    let mut l = format!(
        "call {} state={} direction={}",
        call.id.as_deref().unwrap_or("-"),
        call.state.get().map_or("-", |s| s.as_str()),
        call.direction.get().map_or("-", |d| d.as_str()),
    );
    if let Some(m) = call.media_config.get() {
        let _ = write!(l, " media={}", m.kind());
    }
    if let Some(src) = call.source.get() {
        let _ = write!(l, " source={}", identity_of(src.identity.get()));
    }
    if let Some(me) = call.my_participant_id.as_deref() {
        let _ = write!(l, " myParticipantId={me}");
    }
    if let Some(r) = call.result_info.get() {
        let _ = write!(l, " result={}", r.summary());
    }
    lines.push(l);
    for t in call.targets.get().into_iter().flatten() {
        lines.push(format!("  target {}", identity_of(t.identity.get())));
    }
    if let Some(m) = call.meeting_info.get() {
        use crate::models::MeetingInfo;
        lines.push(match m {
            MeetingInfo::Organizer(o) => {
                format!("  meeting organizer={}", identity_of(o.organizer.get()))
            }
            MeetingInfo::JoinMeetingId(j) => format!(
                "  meeting joinMeetingId={} passcode={}",
                j.join_meeting_id.as_deref().unwrap_or("-"),
                if j.passcode.get().is_some() {
                    "set"
                } else {
                    "none"
                }
            ),
            MeetingInfo::Token(_) => "  meeting token".to_owned(),
            MeetingInfo::Other(_) => "  meeting (unrecognised meetingInfo)".to_owned(),
        });
    }
}

fn operation_line(op: &CommsOperation) -> String {
    let mut l = format!(
        "operation {} {} status={} clientContext={}",
        op.id.as_deref().unwrap_or("null"),
        op.kind(),
        op.status.get().map_or("-", |s| s.as_str()),
        op.client_context.as_deref().unwrap_or("-"),
    );
    if let Some(r) = op.result_info.get() {
        let _ = write!(l, " result={}", r.summary());
    }
    l
}

/// One line for a roster entry: id, identity, audio/video sourceIds, lobby, muted, removal.
pub fn participant_line(p: &Participant) -> String {
    let sources: Vec<String> = p
        .streams()
        .iter()
        .map(|s| format!("{}:{}", s.media_type, s.source_id))
        .collect();
    let mut l = format!(
        "participant {} {} sources=[{}] lobby={} muted={}",
        p.id.as_deref().unwrap_or("null"),
        p.identity_label(),
        sources.join(","),
        p.is_in_lobby.get().map_or("-".into(), bool::to_string),
        p.is_muted.get().map_or("-".into(), bool::to_string),
    );
    if let Some(n) = p.roster_sequence_number.get() {
        let _ = write!(l, " seq={n}");
    }
    if let Some(r) = p.removed_state.get() {
        let _ = write!(l, " removed={:?}", r.reason.as_deref().unwrap_or(""));
    }
    l
}

fn describe_notification(n: &CommsNotification, lines: &mut Vec<String>) {
    let call = n.call_id().unwrap_or("-");
    let head = format!("{} call={call}", n.change_type);
    let items = n.items();
    if items.is_empty() {
        lines.push(format!("{head} {}", n.resource_url));
    }
    for item in items {
        match item {
            ResourceItem::Call(c) => {
                let mut l = format!(
                    "{head} call {} state={}",
                    c.id.as_deref().unwrap_or("-"),
                    c.state.get().map_or("-", |s| s.as_str())
                );
                if let Some(r) = c.result_info.get() {
                    let _ = write!(l, " result={}", r.summary());
                }
                lines.push(l);
            }
            ResourceItem::Participant(p) => lines.push(format!("{head} {}", participant_line(p))),
            ResourceItem::DeltaParticipants(d) => {
                lines.push(format!(
                    "{head} roster delta seq={} participants={}",
                    d.sequence_number.get().map_or("-".into(), i64::to_string),
                    d.participants.len()
                ));
                for p in &d.participants {
                    lines.push(format!("{head} {}", participant_line(p)));
                }
            }
            ResourceItem::Operation(op) => lines.push(format!("{head} {}", operation_line(op))),
            ResourceItem::ContentSharingSession(s) => lines.push(format!(
                "{head} contentSharingSession {}",
                s.id.as_deref().unwrap_or("-")
            )),
            ResourceItem::Other(v) => {
                let kind = v.as_object().and_then(odata_kind).unwrap_or("untyped");
                lines.push(format!("{head} {kind} (not interpreted)"));
            }
        }
    }
}
