//! The JSON messages of the mpUri exchange, and their parser for untrusted text.
//!
//! Every message is one WebSocket text frame holding one JSON object whose `type` field names it.
//! `docs/mpuri-protocol.md` is the specification; this module is its typed form.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Protocol version this crate speaks. `hello` carries it; a different value is refused.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest message (one WebSocket text frame) either side accepts.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Largest SDP body an `offer` or `answer` may carry.
pub const MAX_SDP_BYTES: usize = 48 * 1024;

/// Longest free text (`reason`, `message`) a peer may send; longer text is refused.
pub const MAX_TEXT_CHARS: usize = 512;

/// A message the service (the side that connects) sends to the bot's media processor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
#[non_exhaustive]
pub enum ServiceMessage {
    /// First message on a new connection: which pending media session this connection is for.
    #[serde(rename_all = "camelCase")]
    Hello {
        /// Must equal [`PROTOCOL_VERSION`].
        version: u32,
        /// The blob's `mpMediaSessionId`.
        media_session_id: Uuid,
        /// The blob's `callId` (the Graph call id), when the blob had one.
        call_id: Option<Uuid>,
    },
    /// An SDP offer. The first follows `accepted`; later ones renegotiate the streams.
    Offer {
        /// 1 for the first offer, then one more for each offer after it.
        seq: u64,
        /// The session description.
        sdp: String,
    },
    /// The service ends the media session.
    HangUp {
        /// Why, for logs.
        reason: String,
    },
    /// The service reports a fault; the connection ends after it.
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
}

/// A message the bot's media processor sends to the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
#[non_exhaustive]
pub enum BotMessage {
    /// The `hello` named a pending session and this connection now owns it.
    #[serde(rename_all = "camelCase")]
    Accepted {
        /// The session accepted.
        media_session_id: Uuid,
    },
    /// The SDP answer to the offer with the same `seq`.
    Answer {
        /// The `seq` of the offer answered.
        seq: u64,
        /// The session description.
        sdp: String,
    },
    /// The bot ends the media session.
    HangUp {
        /// Why, for logs.
        reason: String,
    },
    /// A refusal or fault. Refusals of one offer leave the session as it was; others end it
    /// (see [`ErrorCode::is_fatal`]).
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
        /// The offer refused, when the error is about one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
    },
}

/// Error codes either side may send. Written in camelCase on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum ErrorCode {
    /// Not JSON, not an object, unknown `type`, or a field missing or of the wrong type.
    BadMessage,
    /// The message or its SDP exceeds the size limits.
    TooLarge,
    /// `hello` carried another protocol version.
    UnsupportedVersion,
    /// `hello` named no pending media session.
    UnknownSession,
    /// `hello` named a session another connection already used.
    SessionInUse,
    /// `hello` named the right session with another call id.
    CallMismatch,
    /// The message is not allowed in the current state (an offer before `accepted`, a second
    /// `hello`, an offer while the previous one is unanswered, an answer from the service).
    UnexpectedMessage,
    /// An offer's `seq` is not the previous one plus one.
    OutOfOrder,
    /// The offer's SDP breaks the stream rules (labelling, directions, codecs).
    BadOffer,
    /// The session has ended; nothing more is accepted.
    SessionClosed,
    /// A peer did not send what it had to in time.
    Timeout,
    /// The media connection (ICE/DTLS) failed.
    MediaFailed,
    /// A fault inside the sender.
    Internal,
}

impl ErrorCode {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "badMessage",
            ErrorCode::TooLarge => "tooLarge",
            ErrorCode::UnsupportedVersion => "unsupportedVersion",
            ErrorCode::UnknownSession => "unknownSession",
            ErrorCode::SessionInUse => "sessionInUse",
            ErrorCode::CallMismatch => "callMismatch",
            ErrorCode::UnexpectedMessage => "unexpectedMessage",
            ErrorCode::OutOfOrder => "outOfOrder",
            ErrorCode::BadOffer => "badOffer",
            ErrorCode::SessionClosed => "sessionClosed",
            ErrorCode::Timeout => "timeout",
            ErrorCode::MediaFailed => "mediaFailed",
            ErrorCode::Internal => "internal",
        }
    }

    /// True when the bot closes the connection after sending this error. Refusing one offer
    /// (`badOffer`, `outOfOrder`, `tooLarge` or `badMessage` once accepted) keeps the session
    /// as it was, so the service may send a corrected offer.
    pub const fn is_fatal(self) -> bool {
        !matches!(
            self,
            ErrorCode::BadOffer
                | ErrorCode::OutOfOrder
                | ErrorCode::TooLarge
                | ErrorCode::BadMessage
                | ErrorCode::UnexpectedMessage
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Longer than [`MAX_MESSAGE_BYTES`].
    #[error("message is {len} bytes; the limit is {MAX_MESSAGE_BYTES}")]
    TooLarge {
        /// Size of the message.
        len: usize,
    },
    /// An SDP body longer than [`MAX_SDP_BYTES`].
    #[error("sdp is {len} bytes; the limit is {MAX_SDP_BYTES}")]
    SdpTooLarge {
        /// Size of the SDP.
        len: usize,
    },
    /// A free-text field longer than [`MAX_TEXT_CHARS`].
    #[error("text field is longer than {MAX_TEXT_CHARS} characters")]
    TextTooLong,
    /// Not a valid message (the JSON error, shortened).
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl MessageError {
    /// The error code to answer this fault with.
    pub const fn code(&self) -> ErrorCode {
        match self {
            MessageError::TooLarge { .. } | MessageError::SdpTooLarge { .. } => ErrorCode::TooLarge,
            MessageError::TextTooLong | MessageError::Malformed(_) => ErrorCode::BadMessage,
        }
    }
}

fn check_len(text: &str) -> Result<(), MessageError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(MessageError::TooLarge { len: text.len() });
    }
    Ok(())
}

fn check_sdp(sdp: &str) -> Result<(), MessageError> {
    if sdp.len() > MAX_SDP_BYTES {
        return Err(MessageError::SdpTooLarge { len: sdp.len() });
    }
    Ok(())
}

fn check_text(text: &str) -> Result<(), MessageError> {
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(MessageError::TextTooLong);
    }
    Ok(())
}

fn malformed(e: serde_json::Error) -> MessageError {
    // serde_json's messages can quote input; keep them short so logs stay readable.
    let mut text = e.to_string();
    if text.len() > 200 {
        let mut cut = 200;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    MessageError::Malformed(text)
}

/// Truncates `text` to [`MAX_TEXT_CHARS`] characters so what we send is within the limit.
pub(crate) fn bounded_text(text: &str) -> String {
    text.chars().take(MAX_TEXT_CHARS).collect()
}

impl ServiceMessage {
    /// Reads one message from untrusted text. Never panics; size limits are checked before and
    /// after parsing.
    pub fn parse(text: &str) -> Result<ServiceMessage, MessageError> {
        check_len(text)?;
        let msg: ServiceMessage = serde_json::from_str(text).map_err(malformed)?;
        match &msg {
            ServiceMessage::Hello { .. } => {}
            ServiceMessage::Offer { sdp, .. } => check_sdp(sdp)?,
            ServiceMessage::HangUp { reason } => check_text(reason)?,
            ServiceMessage::Error { message, .. } => check_text(message)?,
        }
        Ok(msg)
    }

    /// The message as one JSON text frame.
    pub fn to_json(&self) -> String {
        // Strings, integers, uuids and unit enums always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl BotMessage {
    /// Reads one message from untrusted text (the service side uses this). Never panics.
    pub fn parse(text: &str) -> Result<BotMessage, MessageError> {
        check_len(text)?;
        let msg: BotMessage = serde_json::from_str(text).map_err(malformed)?;
        match &msg {
            BotMessage::Accepted { .. } => {}
            BotMessage::Answer { sdp, .. } => check_sdp(sdp)?,
            BotMessage::HangUp { reason } => check_text(reason)?,
            BotMessage::Error { message, .. } => check_text(message)?,
        }
        Ok(msg)
    }

    /// The message as one JSON text frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// An error message with bounded text.
    pub fn error(code: ErrorCode, message: &str, seq: Option<u64>) -> BotMessage {
        BotMessage::Error {
            code,
            message: bounded_text(message),
            seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape_is_the_documented_one() {
        let id = Uuid::from_u128(1);
        let hello = ServiceMessage::Hello {
            version: 1,
            media_session_id: id,
            call_id: None,
        };
        assert_eq!(
            hello.to_json(),
            r#"{"type":"hello","version":1,"mediaSessionId":"00000000-0000-0000-0000-000000000001","callId":null}"#
        );
        let err = BotMessage::error(ErrorCode::UnknownSession, "no", None);
        assert_eq!(
            err.to_json(),
            r#"{"type":"error","code":"unknownSession","message":"no"}"#
        );
        let offer = r#"{"type":"offer","seq":3,"sdp":"v=0"}"#;
        assert_eq!(
            ServiceMessage::parse(offer).unwrap(),
            ServiceMessage::Offer {
                seq: 3,
                sdp: "v=0".into()
            }
        );
        let hang = r#"{"type":"hangUp","reason":"bye"}"#;
        assert_eq!(
            BotMessage::parse(hang).unwrap(),
            BotMessage::HangUp {
                reason: "bye".into()
            }
        );
    }

    #[test]
    fn refuses_malformed_and_oversized() {
        for bad in [
            "",
            "null",
            "[]",
            "{}",
            r#"{"type":"nope"}"#,
            r#"{"type":"offer","seq":-1,"sdp":""}"#,
            r#"{"type":"offer","sdp":"v=0"}"#,
            r#"{"type":"hello","version":1,"mediaSessionId":"x","callId":null}"#,
        ] {
            let e = ServiceMessage::parse(bad).unwrap_err();
            assert_eq!(e.code(), ErrorCode::BadMessage, "{bad}: {e}");
        }
        let huge = "x".repeat(MAX_MESSAGE_BYTES + 1);
        assert!(matches!(
            ServiceMessage::parse(&huge),
            Err(MessageError::TooLarge { .. })
        ));
        let big_sdp = ServiceMessage::Offer {
            seq: 1,
            sdp: "a".repeat(MAX_SDP_BYTES + 1),
        }
        .to_json();
        assert!(matches!(
            ServiceMessage::parse(&big_sdp),
            Err(MessageError::SdpTooLarge { .. })
        ));
        let long_reason = ServiceMessage::HangUp {
            reason: "r".repeat(MAX_TEXT_CHARS + 1),
        }
        .to_json();
        assert_eq!(
            ServiceMessage::parse(&long_reason),
            Err(MessageError::TextTooLong)
        );
    }
}
