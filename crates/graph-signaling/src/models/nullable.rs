//! A property that may be absent, explicitly `null`, or set.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A JSON property that Graph may leave out, send as `null`, or fill in.
///
/// Graph's responses spell out many `null` properties while requests omit them. Keeping the
/// difference lets a parsed payload be written back exactly as it arrived.
///
/// Fields of this type carry `#[serde(default, skip_serializing_if = "Nullable::is_absent")]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Nullable<T> {
    /// The property is not in the JSON object.
    #[default]
    Absent,
    /// The property is present with the value `null`.
    Null,
    /// The property has a value.
    Value(T),
}

impl<T> Nullable<T> {
    /// True when the property is not in the object (used to skip it when serializing).
    pub fn is_absent(&self) -> bool {
        matches!(self, Nullable::Absent)
    }

    /// True when the property is explicitly `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Nullable::Null)
    }

    /// The value, if there is one.
    pub fn get(&self) -> Option<&T> {
        match self {
            Nullable::Value(v) => Some(v),
            _ => None,
        }
    }

    /// The value mutably, if there is one.
    pub fn get_mut(&mut self) -> Option<&mut T> {
        match self {
            Nullable::Value(v) => Some(v),
            _ => None,
        }
    }

    /// Converts into an `Option`, forgetting whether a missing value was absent or `null`.
    pub fn into_option(self) -> Option<T> {
        match self {
            Nullable::Value(v) => Some(v),
            _ => None,
        }
    }
}

impl Nullable<String> {
    /// The string value, if there is one.
    pub fn as_deref(&self) -> Option<&str> {
        self.get().map(String::as_str)
    }
}

impl<T> From<T> for Nullable<T> {
    fn from(v: T) -> Self {
        Nullable::Value(v)
    }
}

impl<T> From<Option<T>> for Nullable<T> {
    /// `None` becomes [`Nullable::Absent`]: requests we build leave unset properties out.
    fn from(v: Option<T>) -> Self {
        match v {
            Some(v) => Nullable::Value(v),
            None => Nullable::Absent,
        }
    }
}

impl<T: Serialize> Serialize for Nullable<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            // Absent fields are skipped by the field attribute; writing null is the safe fallback.
            Nullable::Absent | Nullable::Null => serializer.serialize_none(),
            Nullable::Value(v) => v.serialize(serializer),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Nullable<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(deserializer)? {
            Some(v) => Nullable::Value(v),
            None => Nullable::Null,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Probe {
        #[serde(default, skip_serializing_if = "Nullable::is_absent")]
        a: Nullable<u32>,
    }

    #[test]
    fn keeps_absent_null_and_value_apart() {
        for (text, want) in [
            ("{}", Nullable::Absent),
            (r#"{"a":null}"#, Nullable::Null),
            (r#"{"a":7}"#, Nullable::Value(7)),
        ] {
            let p: Probe = serde_json::from_str(text).unwrap();
            assert_eq!(p.a, want);
            assert_eq!(serde_json::to_string(&p).unwrap(), text);
        }
    }
}
