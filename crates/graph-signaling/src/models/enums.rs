//! Graph enumerations that tolerate values this crate does not know yet.
//!
//! Graph adds enum members over time (`ringing`, `unknownFutureValue`, new modalities); a
//! notification carrying one must still parse, so each enum has an `Unknown` variant that keeps
//! the text and writes it back unchanged.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Declares a string enum with an `Unknown(String)` fallback.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this version does not know; the text is kept as received.
            Unknown(String),
        }

        impl $name {
            /// Graph's spelling of the value.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $text, )+
                    $name::Unknown(s) => s,
                }
            }

            /// Maps Graph's spelling to a value; anything else becomes `Unknown`.
            pub fn from_graph(s: &str) -> Self {
                match s {
                    $( $text => $name::$variant, )+
                    other => $name::Unknown(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
                Ok($name::from_graph(&s))
            }
        }
    };
}

open_enum! {
    /// State of a call (`callState`).
    pub enum CallState {
        /// An incoming call the bot has not answered yet.
        Incoming => "incoming",
        /// The call is being set up.
        Establishing => "establishing",
        /// Ringing (named by the docs, absent from the v1.0 schema).
        Ringing => "ringing",
        /// The call is up.
        Established => "established",
        /// On hold.
        Hold => "hold",
        /// Being transferred.
        Transferring => "transferring",
        /// The transfer target accepted.
        TransferAccepted => "transferAccepted",
        /// Being redirected.
        Redirecting => "redirecting",
        /// Being torn down.
        Terminating => "terminating",
        /// Ended; final.
        Terminated => "terminated",
    }
}

impl CallState {
    /// True for `terminated`, after which nothing about the call changes.
    pub fn is_final(&self) -> bool {
        matches!(self, CallState::Terminated)
    }
}

open_enum! {
    /// A kind of media (`modality`, also `mediaStream.mediaType`).
    pub enum Modality {
        /// Audio.
        Audio => "audio",
        /// Video.
        Video => "video",
        /// Screen sharing carried as video.
        VideoBasedScreenSharing => "videoBasedScreenSharing",
        /// Data.
        Data => "data",
    }
}

open_enum! {
    /// Whether the call was placed or received (`callDirection`).
    pub enum CallDirection {
        /// The call came to the bot.
        Incoming => "incoming",
        /// The bot placed the call.
        Outgoing => "outgoing",
    }
}

open_enum! {
    /// What a notification reports about its resource (`changeType`).
    pub enum ChangeType {
        /// The resource was created.
        Created => "created",
        /// The resource changed.
        Updated => "updated",
        /// The resource is gone (for operations: finished).
        Deleted => "deleted",
    }
}

open_enum! {
    /// Kind of endpoint a participant uses (`endpointType`).
    pub enum EndpointType {
        /// A regular client.
        Default => "default",
        /// Voicemail.
        Voicemail => "voicemail",
        /// Skype for Business.
        SkypeForBusiness => "skypeForBusiness",
        /// Skype for Business VoIP phone.
        SkypeForBusinessVoipPhone => "skypeForBusinessVoipPhone",
    }
}

open_enum! {
    /// Why an incoming call is rejected (`rejectReason`).
    pub enum RejectReason {
        /// No reason given.
        None => "none",
        /// The bot is busy.
        Busy => "busy",
        /// The bot refuses the call.
        Forbidden => "forbidden",
    }
}

open_enum! {
    /// Recording status a bot announces with `updateRecordingStatus`.
    pub enum RecordingStatus {
        /// Status not known (Graph's `unknown` member).
        Unspecified => "unknown",
        /// Not recording.
        NotRecording => "notRecording",
        /// Recording.
        Recording => "recording",
        /// Recording failed.
        Failed => "failed",
    }
}

/// The four operation outcomes Graph knows, without their spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationStatusKind {
    /// Not started yet.
    NotStarted,
    /// In progress; the outcome arrives later as a notification.
    Running,
    /// Finished successfully.
    Completed,
    /// Finished with a failure; see `resultInfo`.
    Failed,
    /// A value this version does not know.
    Unknown,
}

/// Status of a comms operation, read case-insensitively.
///
/// The schema spells members `Running`/`Completed`, the examples mix those with `completed`;
/// the spelling that was read is kept so a round trip writes it back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OperationStatus {
    kind: OperationStatusKind,
    text: String,
}

impl OperationStatus {
    /// A status with the docs' spelling (`notStarted`, `running`, `completed`, `failed`).
    pub fn new(kind: OperationStatusKind) -> Self {
        let text = match kind {
            OperationStatusKind::NotStarted => "notStarted",
            OperationStatusKind::Running => "running",
            OperationStatusKind::Completed => "completed",
            OperationStatusKind::Failed => "failed",
            OperationStatusKind::Unknown => "unknownFutureValue",
        };
        OperationStatus {
            kind,
            text: text.to_owned(),
        }
    }

    /// Parses any casing of a status name.
    pub fn parse(text: &str) -> Self {
        let kind = match text.to_ascii_lowercase().as_str() {
            "notstarted" => OperationStatusKind::NotStarted,
            "running" => OperationStatusKind::Running,
            "completed" => OperationStatusKind::Completed,
            "failed" => OperationStatusKind::Failed,
            _ => OperationStatusKind::Unknown,
        };
        OperationStatus {
            kind,
            text: text.to_owned(),
        }
    }

    /// The status without its spelling.
    pub fn kind(&self) -> OperationStatusKind {
        self.kind
    }

    /// The status as it was written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True for completed or failed: no further notification will follow.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.kind,
            OperationStatusKind::Completed | OperationStatusKind::Failed
        )
    }
}

impl fmt::Display for OperationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for OperationStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for OperationStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(OperationStatus::parse(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_survive_a_round_trip() {
        let s: CallState = serde_json::from_str("\"parked\"").unwrap();
        assert_eq!(s, CallState::Unknown("parked".into()));
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"parked\"");
        let r: CallState = serde_json::from_str("\"ringing\"").unwrap();
        assert_eq!(r, CallState::Ringing);
        let m: Modality = serde_json::from_str("\"hologram\"").unwrap();
        assert_eq!(m.as_str(), "hologram");
    }

    #[test]
    fn operation_status_ignores_case_and_keeps_spelling() {
        for (text, kind) in [
            ("Running", OperationStatusKind::Running),
            ("completed", OperationStatusKind::Completed),
            ("COMPLETED", OperationStatusKind::Completed),
            ("Failed", OperationStatusKind::Failed),
            ("notStarted", OperationStatusKind::NotStarted),
            ("bogus", OperationStatusKind::Unknown),
        ] {
            let s: OperationStatus = serde_json::from_str(&format!("\"{text}\"")).unwrap();
            assert_eq!(s.kind(), kind, "{text}");
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{text}\""));
        }
    }
}

open_enum! {
    /// A DTMF key (`tone`): what a caller pressed (`toneInfo`) or what the bot sends
    /// (`sendDtmfTones`).
    pub enum Tone {
        /// Key 0.
        Tone0 => "tone0",
        /// Key 1.
        Tone1 => "tone1",
        /// Key 2.
        Tone2 => "tone2",
        /// Key 3.
        Tone3 => "tone3",
        /// Key 4.
        Tone4 => "tone4",
        /// Key 5.
        Tone5 => "tone5",
        /// Key 6.
        Tone6 => "tone6",
        /// Key 7.
        Tone7 => "tone7",
        /// Key 8.
        Tone8 => "tone8",
        /// Key 9.
        Tone9 => "tone9",
        /// Key `*`.
        Star => "star",
        /// Key `#`.
        Pound => "pound",
        /// Key A.
        A => "a",
        /// Key B.
        B => "b",
        /// Key C.
        C => "c",
        /// Key D.
        D => "d",
        /// Hook flash.
        Flash => "flash",
    }
}

impl Tone {
    /// The key as a character as a keypad shows it (`0`–`9`, `*`, `#`, `A`–`D`; `!` for a
    /// flash), `None` for a value this version does not know.
    pub fn as_char(&self) -> Option<char> {
        Some(match self {
            Tone::Tone0 => '0',
            Tone::Tone1 => '1',
            Tone::Tone2 => '2',
            Tone::Tone3 => '3',
            Tone::Tone4 => '4',
            Tone::Tone5 => '5',
            Tone::Tone6 => '6',
            Tone::Tone7 => '7',
            Tone::Tone8 => '8',
            Tone::Tone9 => '9',
            Tone::Star => '*',
            Tone::Pound => '#',
            Tone::A => 'A',
            Tone::B => 'B',
            Tone::C => 'C',
            Tone::D => 'D',
            Tone::Flash => '!',
            Tone::Unknown(_) => return None,
        })
    }

    /// The key a keypad character names (case-insensitive for `A`–`D`; `!` is a flash).
    pub fn from_char(c: char) -> Option<Tone> {
        Some(match c.to_ascii_uppercase() {
            '0' => Tone::Tone0,
            '1' => Tone::Tone1,
            '2' => Tone::Tone2,
            '3' => Tone::Tone3,
            '4' => Tone::Tone4,
            '5' => Tone::Tone5,
            '6' => Tone::Tone6,
            '7' => Tone::Tone7,
            '8' => Tone::Tone8,
            '9' => Tone::Tone9,
            '*' => Tone::Star,
            '#' => Tone::Pound,
            'A' => Tone::A,
            'B' => Tone::B,
            'C' => Tone::C,
            'D' => Tone::D,
            '!' => Tone::Flash,
            _ => return None,
        })
    }
}

open_enum! {
    /// How an audio routing group routes (`routingMode`).
    pub enum RoutingMode {
        /// Each source to each receiver separately.
        OneToOne => "oneToOne",
        /// Every source to every receiver.
        Multicast => "multicast",
    }
}

open_enum! {
    /// The bot's role in a screen share (`changeScreenSharingRole`).
    pub enum ScreenSharingRole {
        /// Watches the shared screen.
        Viewer => "viewer",
        /// Shares its screen.
        Sharer => "sharer",
    }
}
