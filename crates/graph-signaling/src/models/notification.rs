//! What the calling service posts to the bot's callback: `commsNotifications`.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::{
    Call, ChangeType, CommsOperation, ContentSharingSession, DeltaParticipants, Nullable,
    Participant, odata_kind,
};

/// Largest notification body this crate parses; larger bodies are refused before parsing.
///
/// A full roster of a 1000-person meeting is well under 4 MiB.
pub const MAX_NOTIFICATION_BYTES: usize = 4 * 1024 * 1024;

/// A batch of notifications (`#microsoft.graph.commsNotifications`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CommsNotifications {
    /// `@odata.type`, kept as sent.
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// The notifications, in the order the service sent them.
    pub value: Vec<CommsNotification>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why a notification body was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotificationParseError {
    /// The body is larger than [`MAX_NOTIFICATION_BYTES`].
    #[error("notification body of {0} bytes exceeds the {MAX_NOTIFICATION_BYTES} byte limit")]
    TooLarge(usize),
    /// The body is not a commsNotifications object.
    #[error("malformed notification: {0}")]
    Malformed(#[from] serde_json::Error),
}

impl CommsNotifications {
    /// Parses an untrusted notification body. Never panics; refuses oversized bodies.
    pub fn parse(body: &[u8]) -> Result<Self, NotificationParseError> {
        if body.len() > MAX_NOTIFICATION_BYTES {
            return Err(NotificationParseError::TooLarge(body.len()));
        }
        Ok(serde_json::from_slice(body)?)
    }
}

/// Whether `body` is a notification in the legacy format: the Skype bot calling protocol that
/// came before Graph's. The calling service may post a call's first notification (an incoming
/// call's offer) in it; a bot that speaks Graph answers `204 No Content` and the service posts
/// it again as `commsNotifications`.
///
/// Recognised: a JSON object without Graph's `value` array and with a non-empty string `id`,
/// that is either a legacy conversation (an offer: `callState` and a `participants` array) or
/// a legacy notification (`type` of `callStateChange` or `rosterUpdate`). Anything else is not
/// legacy, and a body that is not Graph either stays malformed. Never panics; a body over
/// [`MAX_NOTIFICATION_BYTES`] is not legacy.
pub fn is_legacy_notification(body: &[u8]) -> bool {
    if body.len() > MAX_NOTIFICATION_BYTES {
        return false;
    }
    serde_json::from_slice::<Value>(body).is_ok_and(|v| is_legacy_value(&v))
}

/// [`is_legacy_notification`] for a body already parsed.
pub fn is_legacy_value(v: &Value) -> bool {
    let Value::Object(o) = v else {
        return false;
    };
    let has_id = o
        .get("id")
        .and_then(Value::as_str)
        .is_some_and(|id| !id.is_empty());
    if o.contains_key("value") || !has_id {
        return false;
    }
    let conversation = o.get("callState").is_some_and(Value::is_string)
        && o.get("participants").is_some_and(Value::is_array);
    let notification = matches!(
        o.get("type").and_then(Value::as_str),
        Some("callStateChange" | "rosterUpdate")
    );
    conversation || notification
}

/// One notification (`#microsoft.graph.commsNotification`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommsNotification {
    /// `@odata.type`, kept as sent.
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// What happened to the resource.
    pub change_type: ChangeType,
    /// The resource (`/communications/calls/{id}/…`); required by the schema.
    pub resource_url: String,
    /// The resource in the deprecated `/app/calls/…` form.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub resource: Nullable<String>,
    /// The callback the notification was sent to.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub callback_uri: Nullable<String>,
    /// The resource's new state: an object, or an array for rosters and content sharing.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub resource_data: Nullable<ResourceData>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CommsNotification {
    /// The call id named by `resourceUrl` (or `resource`): the segment after `calls/`.
    pub fn call_id(&self) -> Option<&str> {
        call_id_of(&self.resource_url).or_else(|| self.resource.as_deref().and_then(call_id_of))
    }

    /// True when this offers a new incoming call (a call resource in state `incoming`): what a
    /// bot answers or rejects, and what a draining bot refuses.
    pub fn offers_new_call(&self) -> bool {
        self.change_type != ChangeType::Deleted
            && self.items().iter().any(|item| {
                matches!(item, ResourceItem::Call(c)
                    if c.state.get() == Some(&super::CallState::Incoming))
            })
    }

    /// The items of `resourceData`, whether it was an object or an array.
    pub fn items(&self) -> &[ResourceItem] {
        match self.resource_data.get() {
            Some(ResourceData::One(item)) => std::slice::from_ref(item.as_ref()),
            Some(ResourceData::Many(items)) => items,
            None => &[],
        }
    }
}

/// The call id in a resource path such as `/communications/calls/{id}/participants`.
pub fn call_id_of(resource: &str) -> Option<&str> {
    let mut segments = resource.split('/');
    segments.by_ref().find(|s| *s == "calls")?;
    segments.next().filter(|id| !id.is_empty())
}

/// `resourceData`: one object or an array of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ResourceData {
    /// A single object (calls, operations).
    One(Box<ResourceItem>),
    /// An array (rosters, content sharing sessions).
    Many(Vec<ResourceItem>),
}

impl<'de> Deserialize<'de> for ResourceData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Array(items) => items
                .into_iter()
                .map(ResourceItem::from_value)
                .collect::<Result<Vec<_>, _>>()
                .map(ResourceData::Many)
                .map_err(D::Error::custom),
            other => ResourceItem::from_value(other)
                .map(|i| ResourceData::One(Box::new(i)))
                .map_err(D::Error::custom),
        }
    }
}

/// One item of `resourceData`, typed by its `@odata.type`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ResourceItem {
    /// A call's new state.
    Call(Box<Call>),
    /// A roster entry (full roster).
    Participant(Box<Participant>),
    /// A delta roster update.
    DeltaParticipants(DeltaParticipants),
    /// An operation's outcome.
    Operation(Box<CommsOperation>),
    /// A content sharing session.
    ContentSharingSession(ContentSharingSession),
    /// Anything else, kept as received.
    Other(Value),
}

impl ResourceItem {
    /// Types a JSON value by its `@odata.type`. A known type that does not fit its model is an
    /// error (a roster entry with a bad sourceId must not pass silently).
    pub fn from_value(v: Value) -> Result<Self, serde_json::Error> {
        let kind = match &v {
            Value::Object(m) => odata_kind(m).map(str::to_owned),
            _ => None,
        };
        Ok(match kind.as_deref() {
            Some("call") => ResourceItem::Call(Box::new(serde_json::from_value(v)?)),
            Some("participant") => ResourceItem::Participant(Box::new(serde_json::from_value(v)?)),
            Some("deltaParticipants") => {
                ResourceItem::DeltaParticipants(serde_json::from_value(v)?)
            }
            Some("contentSharingSession") => {
                ResourceItem::ContentSharingSession(serde_json::from_value(v)?)
            }
            Some(k) if k.ends_with("Operation") => {
                ResourceItem::Operation(Box::new(serde_json::from_value(v)?))
            }
            _ => ResourceItem::Other(v),
        })
    }
}

#[cfg(test)]
mod legacy_tests {
    use super::*;

    #[test]
    fn legacy_offers_and_notifications_are_recognised_and_graph_bodies_are_not() {
        let offer = br#"{"id":"c1","appId":"a","callState":"incoming","isMultiparty":false,
            "presentedModalityTypes":["audio"],"participants":[{"identity":"8:orgid:u",
            "originator":true}],"links":{"callback":"https://bot/cb"}}"#;
        let change = br#"{"id":"c1","type":"callStateChange","currentState":"established"}"#;
        let roster = br#"{"id":"c1","type":"rosterUpdate","participants":[]}"#;
        for legacy in [&offer[..], change, roster] {
            assert!(
                is_legacy_notification(legacy),
                "{}",
                String::from_utf8_lossy(legacy)
            );
            assert!(CommsNotifications::parse(legacy).is_err());
        }
        let graph =
            br##"{"value":[{"changeType":"created","resourceUrl":"/communications/calls/c1",
            "resourceData":{"@odata.type":"#microsoft.graph.call","state":"incoming"}}]}"##;
        assert!(CommsNotifications::parse(graph).is_ok());
        for not_legacy in [
            &graph[..],
            br#"{"id":"c1","value":[],"type":"callStateChange"}"#,
            br#"{"type":"callStateChange"}"#,
            br#"{"id":"","type":"callStateChange"}"#,
            br#"{"id":7,"type":"callStateChange"}"#,
            br#"{"id":"c1","type":"somethingElse"}"#,
            br#"{"id":"c1","callState":"incoming"}"#,
            br#"{"id":"c1","callState":"incoming","participants":{}}"#,
            br#"["id","type"]"#,
            b"not json",
            b"",
            &[b'['; 10_000][..],
        ] {
            assert!(
                !is_legacy_notification(not_legacy),
                "{}",
                String::from_utf8_lossy(not_legacy)
            );
        }
    }
}
