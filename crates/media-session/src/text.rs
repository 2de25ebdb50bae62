//! Keeping untrusted text short enough to quote in a one-line error message.

/// Longest piece of input quoted in an error.
const MAX_QUOTED_CHARS: usize = 64;

/// `s` cut to 64 characters, with an ellipsis when cut.
pub(crate) fn shorten(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED_CHARS) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}
