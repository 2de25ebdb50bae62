//! Who takes part in a call: `identity`, `identitySet`, `participantInfo`,
//! `invitationParticipantInfo`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{EndpointType, Nullable};

/// One identity (`#microsoft.graph.identity` and its communications subtypes).
///
/// Open type: properties such as `identityProvider` are kept in [`Identity::extra`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// `@odata.type`, kept as sent.
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// The identity's id (an AAD object id, app id, or an E.164 number for phones).
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub id: Nullable<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub display_name: Nullable<String>,
    /// Tenant of the identity; a string, not necessarily a GUID.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub tenant_id: Nullable<String>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Identity {
    /// An identity with an id and an optional display name.
    pub fn new(id: impl Into<String>, display_name: Option<String>) -> Self {
        Identity {
            odata_type: Some("#microsoft.graph.identity".into()),
            id: Nullable::Value(id.into()),
            display_name: display_name.into(),
            ..Identity::default()
        }
    }
}

/// The identities of one party (`identitySet` / `communicationsIdentitySet`).
///
/// Open type: kinds this crate does not name (`encrypted`, `onPremises`, …) stay in
/// [`IdentitySet::extra`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySet {
    /// `@odata.type`, kept as sent.
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// A Teams / AAD user.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub user: Nullable<Identity>,
    /// An application (a bot).
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub application: Nullable<Identity>,
    /// An application instance (a bot with a phone number).
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub application_instance: Nullable<Identity>,
    /// A phone number (E.164 in `id`).
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub phone: Nullable<Identity>,
    /// A guest (anonymous) identity.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub guest: Nullable<Identity>,
    /// A device.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub device: Nullable<Identity>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl IdentitySet {
    fn with(f: impl FnOnce(&mut IdentitySet)) -> Self {
        let mut set = IdentitySet {
            odata_type: Some("#microsoft.graph.identitySet".into()),
            ..IdentitySet::default()
        };
        f(&mut set);
        set
    }

    /// A user identity.
    pub fn user(id: impl Into<String>, display_name: Option<String>) -> Self {
        Self::with(|s| s.user = Identity::new(id, display_name).into())
    }

    /// An application identity.
    pub fn application(id: impl Into<String>, display_name: Option<String>) -> Self {
        Self::with(|s| s.application = Identity::new(id, display_name).into())
    }

    /// An application instance identity.
    pub fn application_instance(id: impl Into<String>, display_name: Option<String>) -> Self {
        Self::with(|s| s.application_instance = Identity::new(id, display_name).into())
    }

    /// A phone identity; the number should be E.164.
    pub fn phone(number: impl Into<String>) -> Self {
        Self::with(|s| s.phone = Identity::new(number, None).into())
    }

    /// A guest identity.
    pub fn guest(id: impl Into<String>, display_name: Option<String>) -> Self {
        Self::with(|s| s.guest = Identity::new(id, display_name).into())
    }

    /// The first identity present, with its kind: user, application, applicationInstance,
    /// phone, guest, device, then any other kind found in `extra`.
    pub fn primary(&self) -> Option<(&'static str, &Identity)> {
        [
            ("user", &self.user),
            ("application", &self.application),
            ("applicationInstance", &self.application_instance),
            ("phone", &self.phone),
            ("guest", &self.guest),
            ("device", &self.device),
        ]
        .into_iter()
        .find_map(|(k, v)| v.get().map(|i| (k, i)))
    }

    /// A short label for logs and `inspect`: `kind:id` or `kind:displayName`, or `?`.
    pub fn label(&self) -> String {
        if let Some((kind, ident)) = self.primary() {
            let id = ident
                .id
                .as_deref()
                .or(ident.display_name.as_deref())
                .unwrap_or("?");
            return format!("{kind}:{id}");
        }
        for (kind, v) in &self.extra {
            if let Some(id) = v.get("id").and_then(Value::as_str) {
                return format!("{kind}:{id}");
            }
        }
        "?".to_owned()
    }

    /// A stable key for a party: the label, which includes the identity kind and id.
    pub fn key(&self) -> String {
        self.label()
    }
}

/// A party of a call (`participantInfo`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantInfo {
    /// `@odata.type`, kept as sent.
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// Who the party is.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub identity: Nullable<IdentitySet>,
    /// Endpoint type.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub endpoint_type: Nullable<EndpointType>,
    /// Home region.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub region: Nullable<String>,
    /// Language (`en-US`).
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub language_id: Nullable<String>,
    /// Country code.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub country_code: Nullable<String>,
    /// Participant id.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub participant_id: Nullable<String>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ParticipantInfo {
    /// A participantInfo for the given identity.
    pub fn new(identity: IdentitySet) -> Self {
        ParticipantInfo {
            odata_type: Some("#microsoft.graph.participantInfo".into()),
            identity: identity.into(),
            ..ParticipantInfo::default()
        }
    }
}

/// Someone to call or invite (`invitationParticipantInfo`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvitationParticipantInfo {
    /// `@odata.type`, kept as sent.
    #[serde(
        rename = "@odata.type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    /// Who to invite.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub identity: Nullable<IdentitySet>,
    /// Endpoint type.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub endpoint_type: Nullable<EndpointType>,
    /// A call this invitation replaces (moves the participant of that call here).
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub replaces_call_id: Nullable<String>,
    /// The participant to move (with `replacesCallId`).
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub participant_id: Nullable<String>,
    /// Hidden from the roster.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub hidden: Nullable<bool>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl InvitationParticipantInfo {
    /// An invitation for the given identity.
    pub fn new(identity: IdentitySet) -> Self {
        InvitationParticipantInfo {
            odata_type: Some("#microsoft.graph.invitationParticipantInfo".into()),
            identity: identity.into(),
            ..InvitationParticipantInfo::default()
        }
    }
}
