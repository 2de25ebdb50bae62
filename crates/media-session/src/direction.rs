//! Which way media flows on a socket or stream.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Direction of a media socket, from the bot's point of view.
///
/// Serialized with Microsoft Graph's `mediaDirection` names (`sendReceive`, `sendOnly`,
/// `receiveOnly`, `inactive`); the short forms `sendrecv`, `sendonly`, `recvonly` are accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StreamDirection {
    /// The bot both receives and sends.
    #[default]
    #[serde(alias = "sendrecv")]
    SendReceive,
    /// The bot only sends.
    #[serde(alias = "sendonly")]
    SendOnly,
    /// The bot only receives.
    #[serde(alias = "recvonly")]
    ReceiveOnly,
    /// Neither.
    Inactive,
}

impl StreamDirection {
    /// Every direction.
    pub const ALL: [StreamDirection; 4] = [
        StreamDirection::SendReceive,
        StreamDirection::SendOnly,
        StreamDirection::ReceiveOnly,
        StreamDirection::Inactive,
    ];

    /// True when the bot receives media in this direction (it needs a render context).
    pub const fn receives(self) -> bool {
        matches!(
            self,
            StreamDirection::SendReceive | StreamDirection::ReceiveOnly
        )
    }

    /// True when the bot sends media in this direction (it needs a source context).
    pub const fn sends(self) -> bool {
        matches!(
            self,
            StreamDirection::SendReceive | StreamDirection::SendOnly
        )
    }

    /// Graph's name for the direction.
    pub const fn as_str(self) -> &'static str {
        match self {
            StreamDirection::SendReceive => "sendReceive",
            StreamDirection::SendOnly => "sendOnly",
            StreamDirection::ReceiveOnly => "receiveOnly",
            StreamDirection::Inactive => "inactive",
        }
    }

    /// The short SDP-style name (`sendrecv`, `sendonly`, `recvonly`, `inactive`).
    pub const fn sdp_name(self) -> &'static str {
        match self {
            StreamDirection::SendReceive => "sendrecv",
            StreamDirection::SendOnly => "sendonly",
            StreamDirection::ReceiveOnly => "recvonly",
            StreamDirection::Inactive => "inactive",
        }
    }
}

impl fmt::Display for StreamDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned when a string names no direction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown direction {0:?} (expected sendrecv, sendonly, recvonly or inactive)")]
pub struct UnknownDirection(pub String);

impl FromStr for StreamDirection {
    type Err = UnknownDirection;

    /// Accepts Graph's names and the SDP-style short names, in any letter case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "sendreceive" | "sendrecv" => Ok(StreamDirection::SendReceive),
            "sendonly" => Ok(StreamDirection::SendOnly),
            "receiveonly" | "recvonly" => Ok(StreamDirection::ReceiveOnly),
            "inactive" => Ok(StreamDirection::Inactive),
            _ => Err(UnknownDirection(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_and_source_follow_direction() {
        use StreamDirection::*;
        let table = [
            (SendReceive, true, true),
            (SendOnly, false, true),
            (ReceiveOnly, true, false),
            (Inactive, false, false),
        ];
        for (d, receives, sends) in table {
            assert_eq!(d.receives(), receives, "{d}");
            assert_eq!(d.sends(), sends, "{d}");
        }
    }

    #[test]
    fn names_round_trip() {
        for d in StreamDirection::ALL {
            assert_eq!(d.as_str().parse(), Ok(d));
            assert_eq!(d.sdp_name().parse(), Ok(d));
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.as_str()));
            assert_eq!(serde_json::from_str::<StreamDirection>(&json).unwrap(), d);
        }
        let short: StreamDirection = serde_json::from_str("\"recvonly\"").unwrap();
        assert_eq!(short, StreamDirection::ReceiveOnly);
    }
}
