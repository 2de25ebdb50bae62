//! Where the bot's signaling goes, and what a call is placed to.

use graph_signaling::client::{CertificateCredential, Credential, DEFAULT_GRAPH_BASE, GRAPH_SCOPE};

/// The calling service the bot talks to. Chosen explicitly: nothing falls back to the sim.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// A graph-sim instance (in-process through [`super::LocalSim`], or `mediabot sim`).
    Sim(ServiceEndpoints),
    /// Real Microsoft Graph. Signaling works; media does not (see the module docs): a call's
    /// media ends with [`media_transport::protocol::EndReason::NeverConnected`].
    Graph(ServiceEndpoints),
}

/// URLs and credentials of a calling service.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceEndpoints {
    /// Graph API base, up to and including `/v1.0`.
    pub api_url: String,
    /// OAuth token endpoint (client credentials).
    pub token_url: String,
    /// OpenID configuration whose keys sign the service's notifications.
    pub openid_config_url: String,
    /// The bot's application (client) id.
    pub app_id: String,
    /// How the bot proves itself to the token endpoint: its client secret, or a certificate
    /// registered with the app ([`Credential::Certificate`], a signed client assertion per
    /// token request).
    pub credential: Credential,
    /// The tenant the bot places calls in.
    pub tenant_id: String,
}

impl std::fmt::Debug for ServiceEndpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `Credential`'s own Debug keeps the secret and the key out of logs.
        f.debug_struct("ServiceEndpoints")
            .field("api_url", &self.api_url)
            .field("token_url", &self.token_url)
            .field("openid_config_url", &self.openid_config_url)
            .field("app_id", &self.app_id)
            .field("credential", &self.credential)
            .field("tenant_id", &self.tenant_id)
            .finish()
    }
}

/// The OpenID configuration of the Microsoft calling service's notification tokens.
pub const GRAPH_OPENID_CONFIG_URL: &str =
    "https://api.aps.skype.com/v1/.well-known/OpenIdConfiguration";

impl Target {
    /// Real Microsoft Graph for the app registration `app_id`/`app_secret` in `tenant_id`.
    pub fn graph(
        app_id: impl Into<String>,
        app_secret: impl Into<String>,
        tenant_id: impl Into<String>,
    ) -> Target {
        Target::graph_with_credential(app_id, Credential::secret(app_secret), tenant_id)
    }

    /// Real Microsoft Graph for the app registration `app_id` in `tenant_id`, proven with a
    /// certificate registered with the app (see [`CertificateCredential::from_pem`]).
    pub fn graph_with_certificate(
        app_id: impl Into<String>,
        certificate: CertificateCredential,
        tenant_id: impl Into<String>,
    ) -> Target {
        Target::graph_with_credential(app_id, Credential::Certificate(certificate), tenant_id)
    }

    /// Real Microsoft Graph for the app registration `app_id` in `tenant_id`, with any kind
    /// of credential.
    pub fn graph_with_credential(
        app_id: impl Into<String>,
        credential: Credential,
        tenant_id: impl Into<String>,
    ) -> Target {
        let tenant_id = tenant_id.into();
        Target::Graph(ServiceEndpoints {
            api_url: DEFAULT_GRAPH_BASE.to_owned(),
            token_url: format!("https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token"),
            openid_config_url: GRAPH_OPENID_CONFIG_URL.to_owned(),
            app_id: app_id.into(),
            credential,
            tenant_id,
        })
    }

    /// The same service, with the bot proving itself with `credential` instead (a
    /// [`super::LocalSim`]'s target with a certificate the sim was started with, say).
    pub fn with_credential(self, credential: Credential) -> Target {
        match self {
            Target::Sim(e) => Target::Sim(ServiceEndpoints { credential, ..e }),
            Target::Graph(e) => Target::Graph(ServiceEndpoints { credential, ..e }),
        }
    }

    /// The service's URLs and credentials.
    pub fn endpoints(&self) -> &ServiceEndpoints {
        match self {
            Target::Sim(e) | Target::Graph(e) => e,
        }
    }

    /// True for a graph-sim target.
    pub fn is_sim(&self) -> bool {
        matches!(self, Target::Sim(_))
    }

    pub(crate) fn scope(&self) -> &'static str {
        GRAPH_SCOPE
    }
}

/// What [`super::Bot::place_call`] calls.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallTarget {
    /// A P2P call to one Teams user.
    User {
        /// The user's object id.
        id: String,
        /// Display name, if known.
        name: Option<String>,
    },
    /// A group call with several users (at most five).
    Group {
        /// `(object id, display name)` of each user.
        users: Vec<(String, Option<String>)>,
        /// The call's subject.
        subject: Option<String>,
    },
    /// Joins a meeting by its join id and passcode.
    Meeting {
        /// The meeting's join id.
        join_meeting_id: String,
        /// Its passcode, if it has one.
        passcode: Option<String>,
    },
}

impl std::fmt::Debug for CallTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallTarget::User { id, name } => f
                .debug_struct("User")
                .field("id", id)
                .field("name", name)
                .finish(),
            CallTarget::Group { users, subject } => f
                .debug_struct("Group")
                .field("users", users)
                .field("subject", subject)
                .finish(),
            // A passcode is a secret: it stays out of logs.
            CallTarget::Meeting {
                join_meeting_id,
                passcode,
            } => f
                .debug_struct("Meeting")
                .field("join_meeting_id", join_meeting_id)
                .field("passcode", &passcode.as_ref().map(|_| "<redacted>"))
                .finish(),
        }
    }
}

impl CallTarget {
    /// A P2P call to the user with this object id.
    pub fn user(id: impl Into<String>, name: Option<String>) -> CallTarget {
        CallTarget::User {
            id: id.into(),
            name,
        }
    }
}
