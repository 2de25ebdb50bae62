//! Where the bot's signaling goes, and what a call is placed to.

use graph_signaling::build;
use graph_signaling::client::{CertificateCredential, Credential, DEFAULT_GRAPH_BASE, GRAPH_SCOPE};
use graph_signaling::join_url::{JoinUrlError, MeetingJoinUrl};
use graph_signaling::models::{Call, IdentitySet, MediaConfig};
use graph_signaling::validate::{self, ValidationError};

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

/// What [`super::Bot::place_call`] calls: a user, a group, a meeting (by join id, join link,
/// organizer or channel post; as the bot or as a guest), or a phone number.
///
/// ```
/// use mediabot::bot::CallTarget;
///
/// let link = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NzA2ZmYx%40thread.v2/0?context=%7b%22Tid%22%3a%2272f988bf-86f1-41af-91ab-2d7cd011db47%22%2c%22Oid%22%3a%225810cede-f3cc-42eb-b2c1-e9bd5d53ec96%22%7d";
/// let meeting = CallTarget::meeting_url(link)?;
/// // The same meeting, with the bot shown as a guest waiting in the lobby.
/// let as_guest = meeting.clone().as_guest("Note taker");
/// # Ok::<(), mediabot::bot::JoinUrlError>(())
/// ```
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
    /// Joins a meeting by its organizer and chat thread: what a join link names
    /// ([`CallTarget::meeting_url`]), a scheduled meeting's chat
    /// ([`CallTarget::meeting_by_organizer`]) or a channel post
    /// ([`CallTarget::channel_meeting`]). No passcode is needed.
    OrganizerMeeting(MeetingJoinUrl),
    /// Joins `meeting` (one of the meeting targets) as an anonymous guest shown by
    /// `display_name` instead of as the bot's application; guests wait in the lobby until
    /// admitted. Graph refuses guest calls to anything but a meeting.
    Guest {
        /// The name the roster shows.
        display_name: String,
        /// The meeting to join.
        meeting: Box<CallTarget>,
    },
    /// A PSTN call to a phone number, placed from the bot's application instance (the
    /// directory object that gives the bot a number).
    Phone {
        /// The E.164 number to call.
        number: String,
        /// The application instance's object id.
        application_instance_id: String,
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
            CallTarget::OrganizerMeeting(m) => f.debug_tuple("OrganizerMeeting").field(m).finish(),
            CallTarget::Guest {
                display_name,
                meeting,
            } => f
                .debug_struct("Guest")
                .field("display_name", display_name)
                .field("meeting", meeting)
                .finish(),
            CallTarget::Phone {
                number,
                application_instance_id,
            } => f
                .debug_struct("Phone")
                .field("number", number)
                .field("application_instance_id", application_instance_id)
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

    /// A meeting by join id and passcode.
    pub fn meeting(join_meeting_id: impl Into<String>, passcode: Option<String>) -> CallTarget {
        CallTarget::Meeting {
            join_meeting_id: join_meeting_id.into(),
            passcode,
        }
    }

    /// The meeting a Teams join link (`https://teams.microsoft.com/l/meetup-join/…`) names, a
    /// scheduled or a channel meeting. See [`graph_signaling::join_url`] for what is accepted.
    pub fn meeting_url(link: &str) -> Result<CallTarget, JoinUrlError> {
        MeetingJoinUrl::parse(link).map(CallTarget::OrganizerMeeting)
    }

    /// A scheduled meeting by its chat thread (`19:meeting_…@thread.v2`) and its organizer (a
    /// user's object id in `tenant_id`), as the Get onlineMeeting API gives them.
    pub fn meeting_by_organizer(
        thread_id: impl Into<String>,
        organizer_id: impl Into<String>,
        tenant_id: impl Into<String>,
    ) -> CallTarget {
        CallTarget::OrganizerMeeting(MeetingJoinUrl::new(thread_id, "0", tenant_id, organizer_id))
    }

    /// A meeting held in a channel: the channel's thread (`19:…@thread.tacv2`), the channel
    /// post the meeting hangs off, and its organizer.
    pub fn channel_meeting(
        thread_id: impl Into<String>,
        message_id: impl Into<String>,
        organizer_id: impl Into<String>,
        tenant_id: impl Into<String>,
    ) -> CallTarget {
        let message_id = message_id.into();
        CallTarget::OrganizerMeeting(
            MeetingJoinUrl::new(thread_id, message_id.clone(), tenant_id, organizer_id)
                .with_reply_chain(message_id),
        )
    }

    /// This meeting, joined as a guest shown as `display_name`.
    pub fn as_guest(self, display_name: impl Into<String>) -> CallTarget {
        CallTarget::Guest {
            display_name: display_name.into(),
            meeting: Box::new(self),
        }
    }

    /// A PSTN call to `number` (E.164, `+14255550123`) from the application instance
    /// `application_instance_id`; refused here when the number is not E.164.
    pub fn phone(
        number: impl Into<String>,
        application_instance_id: impl Into<String>,
    ) -> Result<CallTarget, ValidationError> {
        let number = number.into();
        validate::e164(&number)?;
        Ok(CallTarget::Phone {
            number,
            application_instance_id: application_instance_id.into(),
        })
    }

    /// The create-call body for this target: `me` is the bot's application identity (its
    /// display name also names a PSTN call's application instance), `tenant` the tenant the
    /// call is placed in.
    pub(crate) fn request_body(
        &self,
        callback: &str,
        me: IdentitySet,
        tenant: &str,
        media: MediaConfig,
    ) -> Call {
        match self {
            CallTarget::User { id, name } => {
                build::p2p_user_call(callback, me, id, name.clone(), media)
            }
            CallTarget::Group { users, subject } => {
                let users: Vec<(&str, Option<String>)> = users
                    .iter()
                    .map(|(id, n)| (id.as_str(), n.clone()))
                    .collect();
                build::group_call(callback, me, &users, subject.clone(), media)
            }
            CallTarget::Meeting {
                join_meeting_id,
                passcode,
            } => build::join_meeting_by_id(
                callback,
                join_meeting_id,
                passcode.clone(),
                tenant,
                media,
            ),
            CallTarget::OrganizerMeeting(m) => build::join_meeting_by_organizer(
                callback,
                m.chat_info(),
                m.organizer(),
                tenant,
                media,
            ),
            CallTarget::Guest {
                display_name,
                meeting,
            } => {
                let call = meeting.request_body(callback, me, tenant, media);
                // Each join is a new anonymous guest; nothing links two of them.
                let guest_id = uuid::Uuid::new_v4().to_string();
                build::as_guest(call, &guest_id, display_name)
            }
            CallTarget::Phone {
                number,
                application_instance_id,
            } => {
                let name = me
                    .application
                    .get()
                    .and_then(|a| a.display_name.get())
                    .cloned();
                build::pstn_call(
                    callback,
                    application_instance_id,
                    name,
                    number,
                    tenant,
                    media,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    const LINK: &str = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NzA2ZmYx%40thread.v2/0?context=%7b%22Tid%22%3a%2272f988bf-86f1-41af-91ab-2d7cd011db47%22%2c%22Oid%22%3a%225810cede-f3cc-42eb-b2c1-e9bd5d53ec96%22%7d";

    fn body(target: &CallTarget) -> Value {
        let me = IdentitySet::application("app-id", Some("Bot".into()));
        let media = MediaConfig::app_hosted("{}");
        let call = target.request_body("http://127.0.0.1:1/cb", me, "tenant", media);
        validate::create_call(&call).unwrap();
        serde_json::to_value(call).unwrap()
    }

    #[test]
    fn every_target_builds_a_valid_create_call_body() {
        let meeting = body(&CallTarget::meeting_url(LINK).unwrap());
        assert_eq!(
            meeting["chatInfo"]["threadId"],
            "19:meeting_NzA2ZmYx@thread.v2"
        );
        assert_eq!(meeting["chatInfo"]["messageId"], "0");
        assert_eq!(
            meeting["meetingInfo"]["@odata.type"],
            "#microsoft.graph.organizerMeetingInfo"
        );
        assert_eq!(
            meeting["meetingInfo"]["organizer"]["user"]["tenantId"],
            "72f988bf-86f1-41af-91ab-2d7cd011db47"
        );
        assert_eq!(
            body(&CallTarget::meeting_by_organizer(
                "19:meeting_a@thread.v2",
                "o",
                "t"
            )),
            body(&CallTarget::OrganizerMeeting(MeetingJoinUrl::new(
                "19:meeting_a@thread.v2",
                "0",
                "t",
                "o"
            )))
        );

        let channel = body(&CallTarget::channel_meeting(
            "19:c@thread.tacv2",
            "16",
            "o",
            "t",
        ));
        assert_eq!(channel["chatInfo"]["messageId"], "16");
        assert_eq!(channel["chatInfo"]["replyChainMessageId"], "16");

        let guest = body(&CallTarget::meeting("123", Some("pw".into())).as_guest("Visitor"));
        assert_eq!(
            guest["source"]["identity"]["guest"]["displayName"],
            "Visitor"
        );
        assert!(guest["source"]["identity"].get("application").is_none());
        assert_eq!(guest["meetingInfo"]["joinMeetingId"], "123");

        let phone = body(&CallTarget::phone("+14255550123", "instance").unwrap());
        assert_eq!(
            phone["targets"][0]["identity"]["phone"]["id"],
            "+14255550123"
        );
        assert_eq!(
            phone["source"]["identity"]["applicationInstance"],
            serde_json::json!({"@odata.type": "#microsoft.graph.identity", "id": "instance", "displayName": "Bot"})
        );
        assert!(matches!(
            CallTarget::phone("4255550123", "instance"),
            Err(ValidationError::NotE164(_))
        ));
        assert!(CallTarget::meeting_url("https://teams.live.com/meet/1").is_err());
    }

    #[test]
    fn debug_keeps_passcodes_out() {
        let target = CallTarget::meeting("123", Some("hunter2".into())).as_guest("Visitor");
        let shown = format!("{target:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("Visitor"),
            "{shown}"
        );
    }
}
