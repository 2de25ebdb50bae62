//! Media source ids: how a call tells one participant's stream from another's.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A participant's media source id, as announced in the roster's `mediaStreams[].sourceId`.
///
/// Graph writes it as a decimal string (`"10"`); it is a `u32`. Deserialization also accepts a
/// JSON number, since some payloads carry one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceId(pub u32);

impl SourceId {
    /// The value the official library uses for "no dominant speaker" (`0xFFFFFFFF`).
    pub const NONE: SourceId = SourceId(u32::MAX);

    /// The raw id.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl From<u32> for SourceId {
    fn from(v: u32) -> Self {
        SourceId(v)
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Error returned for a source id that is not a decimal `u32`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sourceId {0:?}: expected a decimal number 0..=4294967295")]
pub struct InvalidSourceId(pub String);

impl FromStr for SourceId {
    type Err = InvalidSourceId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // u32::from_str accepts a leading '+'; Graph never writes one, so refuse it.
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidSourceId(s.to_owned()));
        }
        s.parse::<u32>()
            .map(SourceId)
            .map_err(|_| InvalidSourceId(s.to_owned()))
    }
}

impl Serialize for SourceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SourceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SourceIdVisitor;

        impl Visitor<'_> for SourceIdVisitor {
            type Value = SourceId;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a source id as a decimal string or an unsigned integer")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<SourceId, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SourceId, E> {
                u32::try_from(v)
                    .map(SourceId)
                    .map_err(|_| E::custom(InvalidSourceId(v.to_string())))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SourceId, E> {
                u32::try_from(v)
                    .map(SourceId)
                    .map_err(|_| E::custom(InvalidSourceId(v.to_string())))
            }
        }

        deserializer.deserialize_any(SourceIdVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_as_decimal_string() {
        assert_eq!(serde_json::to_string(&SourceId(10)).unwrap(), "\"10\"");
        assert_eq!(
            serde_json::from_str::<SourceId>("\"10\"").unwrap(),
            SourceId(10)
        );
        assert_eq!(
            serde_json::from_str::<SourceId>("10").unwrap(),
            SourceId(10)
        );
        assert_eq!(
            serde_json::from_str::<SourceId>("\"4294967295\"").unwrap(),
            SourceId::NONE
        );
    }

    #[test]
    fn rejects_non_decimal() {
        for bad in [
            "\"\"",
            "\"-1\"",
            "\"+1\"",
            "\"0x10\"",
            "\"4294967296\"",
            "-1",
            "1.5",
            "null",
        ] {
            assert!(
                serde_json::from_str::<SourceId>(bad).is_err(),
                "{bad} should be rejected"
            );
        }
    }
}
