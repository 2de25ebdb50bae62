//! Teams meeting join URLs, read into what Graph needs to join the meeting by its organizer.
//!
//! A scheduled meeting (and a meeting held in a channel) is announced with a link of the form
//!
//! ```text
//! https://teams.microsoft.com/l/meetup-join/{threadId}/{messageId}?context={json}
//! ```
//!
//! where both path segments are percent-encoded (`19%3ameeting_…%40thread.v2`) and `context` is
//! percent-encoded JSON naming the organizer's tenant (`Tid`) and object id (`Oid`); a channel
//! meeting's context also names the channel post (`MessageId`, sometimes
//! `replyChainMessageId`). That is exactly what an `organizerMeetingInfo` join needs:
//! [`MeetingJoinUrl::chat_info`] and [`MeetingJoinUrl::organizer`] give the two halves, and
//! [`crate::build::join_meeting_by_organizer`] turns them into a create-call body.
//!
//! # Hosts
//! Accepted: `teams.microsoft.com` and the US government clouds' `teams.microsoft.us`,
//! `gov.teams.microsoft.us` and `dod.teams.microsoft.us` (same link shape). Refused with
//! [`JoinUrlError::ConsumerTeams`]: `teams.live.com`, whose links (`/meet/{id}`) name meetings of
//! personal Teams accounts that carry no organizer or thread and that Graph's calling API cannot
//! join. Links wrapped by mail scanners (Safe Links) must be unwrapped by the caller.
//!
//! # Untrusted input
//! A join URL usually comes from a person (pasted into a chat, a form, a command line). Parsing
//! never panics; links longer than [`MAX_JOIN_URL_BYTES`] are refused before they are read, and
//! every part is checked for its documented shape so nothing odd reaches a request body.

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};
use url::Url;

use crate::models::{ChatInfo, IdentitySet, Nullable};

/// Longest join URL read. Real links are 300 to 700 bytes; a few kilobytes leaves room for
/// extra query parameters without letting a pasted document through.
pub const MAX_JOIN_URL_BYTES: usize = 4096;

/// Longest thread or message id accepted (real ones are under 150 characters).
pub const MAX_ID_CHARS: usize = 256;

/// The path prefix of a meeting join link.
const MEETUP_JOIN: &str = "meetup-join";

/// What [`MeetingJoinUrl::to_url`] escapes in a path segment: all but unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Hosts whose links carry a meeting's thread and organizer.
const TEAMS_HOSTS: [&str; 4] = [
    "teams.microsoft.com",
    "teams.microsoft.us",
    "gov.teams.microsoft.us",
    "dod.teams.microsoft.us",
];

/// Why a join URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinUrlError {
    /// Longer than [`MAX_JOIN_URL_BYTES`].
    #[error("join URL is {0} bytes; at most {MAX_JOIN_URL_BYTES} are read")]
    TooLong(usize),
    /// Not a URL at all.
    #[error("not a URL: {0}")]
    NotAUrl(String),
    /// Not `https`.
    #[error("a Teams join URL is https, not {0:?}")]
    NotHttps(String),
    /// A Teams free (personal account) link: it names no organizer or thread.
    #[error("teams.live.com meetings (personal Teams accounts) cannot be joined through Graph")]
    ConsumerTeams,
    /// Another host than Teams'.
    #[error("{0:?} is not a Teams host")]
    UnknownHost(String),
    /// A Teams link, but not to a meeting (`/l/meetup-join/{thread}/{message}`).
    #[error("not a meeting join link: the path must be /l/meetup-join/{{threadId}}/{{messageId}}")]
    NotAMeetingLink,
    /// The thread id is not `19:…@thread.…`.
    #[error("the thread id is not a Teams thread (19:…@thread.v2, .tacv2 or .skype)")]
    BadThreadId,
    /// A message id is not a decimal number.
    #[error("{0} is not a message id (digits)")]
    BadMessageId(&'static str),
    /// No `context` query parameter.
    #[error("the link has no context parameter (organizer and tenant)")]
    MissingContext,
    /// `context` is not a JSON object.
    #[error("the context parameter is not a JSON object: {0}")]
    BadContext(String),
    /// `context` lacks a field Graph needs.
    #[error("the context has no {0}")]
    MissingField(&'static str),
    /// A context field is not a GUID.
    #[error("the context's {0} is not a GUID")]
    NotAGuid(&'static str),
}

/// What a meeting join link names: the meeting's chat thread and message, and its organizer.
///
/// Build one with [`MeetingJoinUrl::parse`], or from known parts with [`MeetingJoinUrl::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MeetingJoinUrl {
    /// The meeting's chat thread (`19:meeting_…@thread.v2`, or a channel's
    /// `19:…@thread.tacv2` / `@thread.skype`).
    pub thread_id: String,
    /// The message the meeting hangs off: `0` for a scheduled meeting, the channel post for a
    /// channel meeting.
    pub message_id: String,
    /// The channel post that starts the reply chain (channel meetings only).
    pub reply_chain_message_id: Option<String>,
    /// The organizer's tenant.
    pub tenant_id: String,
    /// The organizer's object id.
    pub organizer_id: String,
}

impl MeetingJoinUrl {
    /// A meeting from its parts; they are not checked (the service checks them).
    pub fn new(
        thread_id: impl Into<String>,
        message_id: impl Into<String>,
        tenant_id: impl Into<String>,
        organizer_id: impl Into<String>,
    ) -> MeetingJoinUrl {
        MeetingJoinUrl {
            thread_id: thread_id.into(),
            message_id: message_id.into(),
            reply_chain_message_id: None,
            tenant_id: tenant_id.into(),
            organizer_id: organizer_id.into(),
        }
    }

    /// The same meeting, with the channel post its reply chain starts from.
    pub fn with_reply_chain(mut self, message_id: impl Into<String>) -> MeetingJoinUrl {
        self.reply_chain_message_id = Some(message_id.into());
        self
    }

    /// Reads a join link. See the module docs for the accepted shape.
    pub fn parse(link: &str) -> Result<MeetingJoinUrl, JoinUrlError> {
        if link.len() > MAX_JOIN_URL_BYTES {
            return Err(JoinUrlError::TooLong(link.len()));
        }
        let url = Url::parse(link.trim()).map_err(|e| JoinUrlError::NotAUrl(e.to_string()))?;
        if url.scheme() != "https" {
            return Err(JoinUrlError::NotHttps(short(url.scheme())));
        }
        let host = url.host_str().unwrap_or_default();
        if host == "teams.live.com" {
            return Err(JoinUrlError::ConsumerTeams);
        }
        if !TEAMS_HOSTS.contains(&host) {
            return Err(JoinUrlError::UnknownHost(short(host)));
        }
        let segments: Vec<&str> = url
            .path_segments()
            .map(|s| s.filter(|p| !p.is_empty()).collect())
            .unwrap_or_default();
        let [l, kind, thread, message] = segments[..] else {
            return Err(JoinUrlError::NotAMeetingLink);
        };
        if l != "l" || kind != MEETUP_JOIN {
            return Err(JoinUrlError::NotAMeetingLink);
        }
        let thread_id = decode(thread).ok_or(JoinUrlError::BadThreadId)?;
        if !is_thread_id(&thread_id) {
            return Err(JoinUrlError::BadThreadId);
        }
        let message_id = decode(message)
            .filter(|m| is_message_id(m))
            .ok_or(JoinUrlError::BadMessageId("messageId"))?;
        let context = url
            .query_pairs()
            .find(|(k, _)| k.eq_ignore_ascii_case("context"))
            .map(|(_, v)| v.into_owned())
            .ok_or(JoinUrlError::MissingContext)?;
        let context: Map<String, Value> = serde_json::from_str(&context)
            .map_err(|e| JoinUrlError::BadContext(short(&e.to_string())))?;
        let tenant_id = guid_field(&context, "Tid")?;
        let organizer_id = guid_field(&context, "Oid")?;
        // Channel links name the post twice (path and context); Graph wants it as the reply
        // chain. A scheduled meeting's context has no post, or "0".
        let reply_chain_message_id =
            match field(&context, "replyChainMessageId").or_else(|| field(&context, "MessageId")) {
                Some(id) if !is_message_id(&id) => {
                    return Err(JoinUrlError::BadMessageId("replyChainMessageId"));
                }
                Some(id) if id != "0" => Some(id),
                _ => None,
            };
        Ok(MeetingJoinUrl {
            thread_id,
            message_id,
            reply_chain_message_id,
            tenant_id,
            organizer_id,
        })
    }

    /// True for a meeting held in a channel (the thread is a channel's, not a meeting chat's).
    pub fn is_channel_meeting(&self) -> bool {
        self.thread_id.ends_with("@thread.tacv2") || self.thread_id.ends_with("@thread.skype")
    }

    /// The `chatInfo` of an organizer join.
    pub fn chat_info(&self) -> ChatInfo {
        let mut info = ChatInfo::new(&self.thread_id, &self.message_id);
        info.reply_chain_message_id = self.reply_chain_message_id.clone().into();
        info
    }

    /// The organizer as `meetingInfo.organizer` names them: a user with their tenant.
    pub fn organizer(&self) -> IdentitySet {
        let mut set = IdentitySet::user(&self.organizer_id, None);
        if let Some(user) = set.user.get_mut() {
            // Graph finds the organizer in their own tenant, which may not be the bot's.
            user.tenant_id = Nullable::Value(self.tenant_id.clone());
        }
        set
    }

    /// The link as Teams writes it (`teams.microsoft.com`), which [`MeetingJoinUrl::parse`]
    /// reads back to the same value.
    pub fn to_url(&self) -> String {
        // Field order as Teams writes it (a map would sort them).
        #[derive(serde::Serialize)]
        struct Context<'a> {
            #[serde(rename = "Tid")]
            tid: &'a str,
            #[serde(rename = "Oid")]
            oid: &'a str,
            #[serde(rename = "MessageId", skip_serializing_if = "Option::is_none")]
            message_id: Option<&'a str>,
        }
        let context = Context {
            tid: &self.tenant_id,
            oid: &self.organizer_id,
            message_id: self.reply_chain_message_id.as_deref(),
        };
        // Teams escapes the thread's `:` and `@` too, which URL path rules would leave as is.
        let segment = |s: &str| utf8_percent_encode(s, SEGMENT).to_string();
        let link = format!(
            "https://teams.microsoft.com/l/{MEETUP_JOIN}/{}/{}",
            segment(&self.thread_id),
            segment(&self.message_id)
        );
        let mut url = Url::parse(&link)
            .unwrap_or_else(|_| unreachable!("a Teams host and escaped segments form a URL"));
        // Strings only: serializing cannot fail.
        let context = serde_json::to_string(&context).unwrap_or_default();
        url.query_pairs_mut().append_pair("context", &context);
        url.into()
    }
}

impl fmt::Display for MeetingJoinUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_url())
    }
}

impl std::str::FromStr for MeetingJoinUrl {
    type Err = JoinUrlError;

    fn from_str(s: &str) -> Result<MeetingJoinUrl, JoinUrlError> {
        MeetingJoinUrl::parse(s)
    }
}

/// A bounded, printable prefix of untrusted text for an error message.
fn short(text: &str) -> String {
    text.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn decode(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// `19:{name}@thread.{kind}`, with the characters Teams uses in thread names.
fn is_thread_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("19:") else {
        return false;
    };
    let Some((name, kind)) = rest.rsplit_once("@thread.") else {
        return false;
    };
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'='))
    };
    id.chars().count() <= MAX_ID_CHARS
        && name_ok(name)
        && !kind.is_empty()
        && kind.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn is_message_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_digit())
}

/// A context field by name, case-insensitively (links spell them `Tid`, `tid`, `MessageId`,
/// `messageId`); numbers are taken as their decimal text.
fn field(context: &Map<String, Value>, name: &str) -> Option<String> {
    context
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
}

fn guid_field(context: &Map<String, Value>, name: &'static str) -> Result<String, JoinUrlError> {
    let value = field(context, name).ok_or(JoinUrlError::MissingField(name))?;
    let guid = uuid::Uuid::parse_str(&value).map_err(|_| JoinUrlError::NotAGuid(name))?;
    // The hyphenated lower-case form, whatever form the link used.
    Ok(guid.hyphenated().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const ORGANIZER: &str = "5810cede-f3cc-42eb-b2c1-e9bd5d53ec96";

    /// A scheduled meeting's link as Outlook and Teams write it: lower-case escapes, the
    /// context's quotes and braces escaped too.
    const MEETING: &str = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NzA2ZmYxMjQtYjNjZS00ZTk4LWI2NzctYjIzMzk1ZDUwOGE0%40thread.v2/0?context=%7b%22Tid%22%3a%2272f988bf-86f1-41af-91ab-2d7cd011db47%22%2c%22Oid%22%3a%225810cede-f3cc-42eb-b2c1-e9bd5d53ec96%22%7d";

    /// A channel meeting: the channel's thread, the post's id in the path and the context.
    const CHANNEL: &str = "https://teams.microsoft.com/l/meetup-join/19%3a4f3b8a2e9c1d4b7a8e6f5d4c3b2a1908%40thread.tacv2/1603984381935?context=%7b%22Tid%22%3a%2272f988bf-86f1-41af-91ab-2d7cd011db47%22%2c%22Oid%22%3a%225810cede-f3cc-42eb-b2c1-e9bd5d53ec96%22%2c%22MessageId%22%3a%221603984381935%22%7d";

    #[test]
    fn reads_a_scheduled_meeting_link() {
        let m = MeetingJoinUrl::parse(MEETING).unwrap();
        assert_eq!(
            m.thread_id,
            "19:meeting_NzA2ZmYxMjQtYjNjZS00ZTk4LWI2NzctYjIzMzk1ZDUwOGE0@thread.v2"
        );
        assert_eq!(m.message_id, "0");
        assert_eq!(m.reply_chain_message_id, None);
        assert_eq!(m.tenant_id, TENANT);
        assert_eq!(m.organizer_id, ORGANIZER);
        assert!(!m.is_channel_meeting());

        let chat = serde_json::to_value(m.chat_info()).unwrap();
        assert_eq!(chat["threadId"], m.thread_id.as_str());
        assert_eq!(chat["messageId"], "0");
        assert!(chat.get("replyChainMessageId").is_none(), "{chat}");
        let organizer = serde_json::to_value(m.organizer()).unwrap();
        assert_eq!(organizer["user"]["id"], ORGANIZER);
        assert_eq!(organizer["user"]["tenantId"], TENANT);
    }

    #[test]
    fn reads_a_channel_meeting_link() {
        let m = MeetingJoinUrl::parse(CHANNEL).unwrap();
        assert_eq!(
            m.thread_id,
            "19:4f3b8a2e9c1d4b7a8e6f5d4c3b2a1908@thread.tacv2"
        );
        assert_eq!(m.message_id, "1603984381935");
        assert_eq!(m.reply_chain_message_id.as_deref(), Some("1603984381935"));
        assert!(m.is_channel_meeting());
        let chat = serde_json::to_value(m.chat_info()).unwrap();
        assert_eq!(chat["replyChainMessageId"], "1603984381935");

        // Older channels (@thread.skype) and the spelled-out context key.
        let skype = "https://teams.microsoft.com/l/meetup-join/19%3aabc123%40thread.skype/1577836800000?context=%7B%22Tid%22%3A%2272f988bf-86f1-41af-91ab-2d7cd011db47%22%2C%22Oid%22%3A%225810cede-f3cc-42eb-b2c1-e9bd5d53ec96%22%2C%22replyChainMessageId%22%3A%221577836800000%22%7D";
        let m = MeetingJoinUrl::parse(skype).unwrap();
        assert!(m.is_channel_meeting());
        assert_eq!(m.reply_chain_message_id.as_deref(), Some("1577836800000"));
    }

    #[test]
    fn accepts_the_variations_real_links_show() {
        // Upper-case escapes, a GUID in upper case, an extra query parameter, a trailing slash,
        // surrounding whitespace, a government cloud host.
        let link = " https://gov.teams.microsoft.us/l/meetup-join/19%3Ameeting_abc%40thread.v2/0/?context=%7B%22Tid%22%3A%2272F988BF-86F1-41AF-91AB-2D7CD011DB47%22%2C%22Oid%22%3A%225810cede-f3cc-42eb-b2c1-e9bd5d53ec96%22%7D&anon=true ";
        let m = MeetingJoinUrl::parse(link).unwrap();
        assert_eq!(m.thread_id, "19:meeting_abc@thread.v2");
        assert_eq!(m.tenant_id, TENANT, "GUIDs are normalised");
        // A context whose MessageId is "0" is a scheduled meeting, not a channel post.
        let zero = MeetingJoinUrl::new("19:meeting_x@thread.v2", "0", TENANT, ORGANIZER)
            .with_reply_chain("0")
            .to_url();
        assert_eq!(
            MeetingJoinUrl::parse(&zero).unwrap().reply_chain_message_id,
            None
        );
    }

    #[test]
    fn writes_links_it_reads_back() {
        let written = MeetingJoinUrl::parse(MEETING).unwrap().to_url();
        assert!(
            written.starts_with("https://teams.microsoft.com/l/meetup-join/19%3Ameeting_NzA2"),
            "{written}"
        );
        assert!(
            written.contains("%40thread.v2/0?context=%7B%22Tid%22"),
            "{written}"
        );
        for m in [
            MeetingJoinUrl::parse(MEETING).unwrap(),
            MeetingJoinUrl::parse(CHANNEL).unwrap(),
        ] {
            let again: MeetingJoinUrl = m.to_string().parse().unwrap();
            assert_eq!(again, m);
        }
    }

    #[test]
    fn refuses_what_is_not_a_meeting_link() {
        let ctx = "?context=%7b%22Tid%22%3a%2272f988bf-86f1-41af-91ab-2d7cd011db47%22%2c%22Oid%22%3a%225810cede-f3cc-42eb-b2c1-e9bd5d53ec96%22%7d";
        let base = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_abc%40thread.v2/0";
        let cases: Vec<(String, JoinUrlError)> = vec![
            ("not a url".into(), JoinUrlError::NotAUrl(String::new())),
            (
                format!(
                    "http://teams.microsoft.com/l/meetup-join/19%3ameeting_abc%40thread.v2/0{ctx}"
                ),
                JoinUrlError::NotHttps("http".into()),
            ),
            (
                "https://teams.live.com/meet/9876543210?p=abc".into(),
                JoinUrlError::ConsumerTeams,
            ),
            (
                format!(
                    "https://teams.microsoft.com.evil.example/l/meetup-join/19%3ameeting_abc%40thread.v2/0{ctx}"
                ),
                JoinUrlError::UnknownHost("teams.microsoft.com.evil.example".into()),
            ),
            (
                format!("https://teams.microsoft.com/l/chat/19%3ameeting_abc%40thread.v2/0{ctx}"),
                JoinUrlError::NotAMeetingLink,
            ),
            (
                format!(
                    "https://teams.microsoft.com/l/meetup-join/19%3ameeting_abc%40thread.v2{ctx}"
                ),
                JoinUrlError::NotAMeetingLink,
            ),
            (
                format!("https://teams.microsoft.com/l/meetup-join/meeting_abc%40thread.v2/0{ctx}"),
                JoinUrlError::BadThreadId,
            ),
            (
                format!(
                    "https://teams.microsoft.com/l/meetup-join/19%3ameeting%22%3cscript%40thread.v2/0{ctx}"
                ),
                JoinUrlError::BadThreadId,
            ),
            (
                format!(
                    "https://teams.microsoft.com/l/meetup-join/19%3ameeting_abc%ff%40thread.v2/0{ctx}"
                ),
                JoinUrlError::BadThreadId,
            ),
            (
                format!(
                    "https://teams.microsoft.com/l/meetup-join/19%3ameeting_abc%40thread.v2/x1{ctx}"
                ),
                JoinUrlError::BadMessageId("messageId"),
            ),
            (base.into(), JoinUrlError::MissingContext),
            (
                format!("{base}?context=%7b%22Tid%22"),
                JoinUrlError::BadContext(String::new()),
            ),
            (
                format!("{base}?context=%5b1%5d"),
                JoinUrlError::BadContext(String::new()),
            ),
            (
                format!(
                    "{base}?context=%7b%22Oid%22%3a%225810cede-f3cc-42eb-b2c1-e9bd5d53ec96%22%7d"
                ),
                JoinUrlError::MissingField("Tid"),
            ),
            (
                format!(
                    "{base}?context=%7b%22Tid%22%3a%2272f988bf-86f1-41af-91ab-2d7cd011db47%22%7d"
                ),
                JoinUrlError::MissingField("Oid"),
            ),
            (
                format!(
                    "{base}?context=%7b%22Tid%22%3a%22contoso%22%2c%22Oid%22%3a%225810cede-f3cc-42eb-b2c1-e9bd5d53ec96%22%7d"
                ),
                JoinUrlError::NotAGuid("Tid"),
            ),
            (
                format!(
                    "{base}?context=%7b%22Tid%22%3a%2272f988bf-86f1-41af-91ab-2d7cd011db47%22%2c%22Oid%22%3a%225810cede-f3cc-42eb-b2c1-e9bd5d53ec96%22%2c%22MessageId%22%3a%22abc%22%7d"
                ),
                JoinUrlError::BadMessageId("replyChainMessageId"),
            ),
        ];
        for (link, expected) in cases {
            let got = MeetingJoinUrl::parse(&link).expect_err(&link);
            // Messages that quote a library's wording are compared by kind only.
            assert_eq!(
                std::mem::discriminant(&got),
                std::mem::discriminant(&expected),
                "{link}: {got:?}"
            );
            if !matches!(got, JoinUrlError::NotAUrl(_) | JoinUrlError::BadContext(_)) {
                assert_eq!(got, expected, "{link}");
            }
        }
        let huge = format!("{base}{ctx}&pad={}", "a".repeat(MAX_JOIN_URL_BYTES));
        assert!(matches!(
            MeetingJoinUrl::parse(&huge),
            Err(JoinUrlError::TooLong(_))
        ));
    }

    #[test]
    fn hostile_text_never_panics() {
        let mut inputs: Vec<String> = vec![
            String::new(),
            "https://".into(),
            "https://teams.microsoft.com".into(),
            "https://teams.microsoft.com/l/meetup-join/%/%?context=%".into(),
            "https://teams.microsoft.com/l/meetup-join/19%3a%40thread./0?context={}".into(),
            "https://teams.microsoft.com/l/meetup-join/19%3a%40thread.v2/0?context=null".into(),
            "https://[::1]/l/meetup-join/a/b".into(),
            "https://teams.microsoft.com/l/meetup-join/19%3a\u{0}%40thread.v2/0".into(),
        ];
        // Every prefix of a real link.
        inputs.extend((0..CHANNEL.len()).map(|n| CHANNEL[..n].to_owned()));
        for input in inputs {
            let _ = MeetingJoinUrl::parse(&input);
        }
    }
}
