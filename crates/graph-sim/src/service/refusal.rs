//! Every way the simulated service refuses an API request. Each refusal knows its HTTP status,
//! Graph's error `code` and the message, so a handler says *why* it refuses and the wire form
//! (status, `{"error": {...}}` body, `Retry-After`) is decided in one place.

use std::time::Duration;

use super::api::{ApiResponse, Method};
use super::payloads;

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// No bearer token, or one the token endpoint did not issue or that has expired.
    InvalidToken,
    /// The throttling fault as Graph's 429.
    TooManyRequests {
        /// When the client may try again.
        retry_after: Duration,
    },
    /// The throttling fault as a 503.
    ServiceUnavailable {
        /// When the client may try again.
        retry_after: Duration,
    },
    /// The body is over [`super::MAX_REQUEST_BYTES`].
    TooLarge,
    /// Nothing lives at this path.
    NoResource {
        /// The path asked for, without its trailing slashes.
        path: String,
    },
    /// The path exists but not with this method.
    MethodNotAllowed {
        /// The method used.
        method: Method,
        /// The path asked for, without its trailing slashes.
        path: String,
    },
    /// The call does not exist or has ended.
    NoCall {
        /// The id asked for.
        call_id: String,
    },
    /// The scenario's meeting has another `joinMeetingId`.
    NoMeeting {
        /// A bounded prefix of the id given, so a huge id is not echoed back.
        shown: String,
    },
    /// A join by organizer names a thread, organizer or channel post that is not the
    /// scenario's meeting.
    NoMeetingThread {
        /// A bounded prefix of the thread id given.
        shown: String,
    },
    /// `source.identity.applicationInstance` is not an instance linked to the app.
    UnknownApplicationInstance {
        /// A bounded prefix of the id given.
        shown: String,
    },
    /// The meeting has a passcode and the join gave another one.
    WrongPasscode,
    /// The meeting has a passcode and the join gave none.
    PasscodeRequired,
    /// The request breaks one of Graph's documented rules; the message says which.
    BadRequest(String),
}

impl Refusal {
    /// A [`Refusal::BadRequest`] with `message`.
    pub(super) fn bad_request(message: impl Into<String>) -> Refusal {
        Refusal::BadRequest(message.into())
    }

    /// A [`Refusal::NoCall`] for `call_id`.
    pub(super) fn no_call(call_id: &str) -> Refusal {
        Refusal::NoCall {
            call_id: call_id.to_owned(),
        }
    }

    /// The throttling fault's refusal: 429 is Graph's throttle, anything else its 503.
    pub(super) fn throttled(status: u16, retry_after: Duration) -> Refusal {
        if status == 429 {
            Refusal::TooManyRequests { retry_after }
        } else {
            Refusal::ServiceUnavailable { retry_after }
        }
    }

    /// The HTTP status.
    pub(super) fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::InvalidToken => 401,
            Refusal::WrongPasscode
            | Refusal::PasscodeRequired
            | Refusal::UnknownApplicationInstance { .. } => 403,
            Refusal::NoResource { .. }
            | Refusal::NoCall { .. }
            | Refusal::NoMeeting { .. }
            | Refusal::NoMeetingThread { .. } => 404,
            Refusal::MethodNotAllowed { .. } => 405,
            Refusal::TooLarge => 413,
            Refusal::TooManyRequests { .. } => 429,
            Refusal::ServiceUnavailable { .. } => 503,
        }
    }

    /// Graph's error `code`.
    pub(super) fn code(&self) -> &'static str {
        match self {
            Refusal::BadRequest(_) => "BadRequest",
            Refusal::InvalidToken => "InvalidAuthenticationToken",
            Refusal::WrongPasscode
            | Refusal::PasscodeRequired
            | Refusal::UnknownApplicationInstance { .. } => "Forbidden",
            Refusal::NoResource { .. }
            | Refusal::NoCall { .. }
            | Refusal::NoMeeting { .. }
            | Refusal::NoMeetingThread { .. } => "NotFound",
            Refusal::MethodNotAllowed { .. } => "MethodNotAllowed",
            Refusal::TooLarge => "RequestTooLarge",
            Refusal::TooManyRequests { .. } => "TooManyRequests",
            Refusal::ServiceUnavailable { .. } => "ServiceUnavailable",
        }
    }

    /// The error `message`.
    pub(super) fn message(&self) -> String {
        match self {
            Refusal::BadRequest(message) => message.clone(),
            Refusal::InvalidToken => "Access token is missing, invalid or expired.".to_owned(),
            Refusal::WrongPasscode => "the passcode does not match the meeting's".to_owned(),
            Refusal::PasscodeRequired => "the meeting requires a passcode".to_owned(),
            Refusal::NoResource { path } => format!("no resource at {path}"),
            Refusal::NoCall { call_id } => {
                format!("call {call_id} does not exist or has ended")
            }
            Refusal::NoMeeting { shown } => format!("no meeting has joinMeetingId {shown:?}"),
            Refusal::NoMeetingThread { shown } => {
                format!("no meeting with this organizer has chat thread {shown:?}")
            }
            Refusal::UnknownApplicationInstance { shown } => {
                format!("application instance {shown:?} is not linked to this application")
            }
            Refusal::MethodNotAllowed { method, path } => {
                format!("{method:?} {path} is not supported")
            }
            Refusal::TooLarge => "Request body too large.".to_owned(),
            Refusal::TooManyRequests { .. } | Refusal::ServiceUnavailable { .. } => {
                "Simulated throttling.".to_owned()
            }
        }
    }

    /// The `Retry-After` header, in whole seconds, for the refusals that carry one.
    pub(super) fn retry_after(&self) -> Option<u64> {
        match self {
            Refusal::TooManyRequests { retry_after }
            | Refusal::ServiceUnavailable { retry_after } => Some(retry_after.as_secs()),
            _ => None,
        }
    }

    /// The response carrying this refusal, with Graph's error body.
    pub(super) fn into_response(self, request_id: String, delay: Duration) -> ApiResponse {
        let body = payloads::error_body(self.code(), &self.message(), &request_id);
        ApiResponse {
            status: self.status(),
            location: None,
            retry_after: self.retry_after(),
            request_id,
            body: Some(body),
            delay,
        }
    }
}
