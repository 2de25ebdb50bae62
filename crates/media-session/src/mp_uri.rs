//! The media processor address written in the blob's `mpUri`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::text::shorten;

const SCHEME: &str = "net.tcp://";
const PATH: &str = "/MediaProcessor";
/// Longest host name DNS allows.
const MAX_HOST_LEN: usize = 253;

/// Where the bot's media processor accepts the service's media connection:
/// exactly `net.tcp://host:port/MediaProcessor`.
///
/// The host is a DNS name, an IPv4 address or a bracketed IPv6 address; the port is 1..=65535.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MpUri {
    host: String,
    port: u16,
}

/// Why an mpUri was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MpUriError {
    /// It does not start with `net.tcp://`.
    #[error("must start with net.tcp://")]
    Scheme,
    /// It does not end with `/MediaProcessor`, or has a query, fragment or other path.
    #[error("path must be exactly /MediaProcessor")]
    Path,
    /// The port is missing, not a number, or zero.
    #[error("port must be a number 1..=65535")]
    Port,
    /// The host is empty, too long, or not a DNS name or IP address (quoted up to 64 characters).
    #[error("host {0:?} is not a DNS name or IP address")]
    Host(String),
}

impl MpUri {
    /// Builds an mpUri from configuration. An IPv6 host may be given with or without brackets.
    pub fn new(host: &str, port: u16) -> Result<MpUri, MpUriError> {
        if port == 0 {
            return Err(MpUriError::Port);
        }
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        validate_host(&host)?;
        Ok(MpUri { host, port })
    }

    /// The host as written in the URI (IPv6 in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The host in the form socket APIs want (IPv6 without brackets).
    pub fn bare_host(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

fn validate_host(host: &str) -> Result<(), MpUriError> {
    let bad = || MpUriError::Host(shorten(host));
    if host.is_empty() || host.len() > MAX_HOST_LEN {
        return Err(bad());
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(bad)?;
        return inner.parse::<Ipv6Addr>().map(|_| ()).map_err(|_| bad());
    }
    // A name made only of digits and dots is meant as IPv4, so it must be a valid one.
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return host.parse::<Ipv4Addr>().map(|_| ()).map_err(|_| bad());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(bad())
    }
}

impl FromStr for MpUri {
    type Err = MpUriError;

    fn from_str(s: &str) -> Result<MpUri, MpUriError> {
        let rest = s.strip_prefix(SCHEME).ok_or(MpUriError::Scheme)?;
        let authority = rest.strip_suffix(PATH).ok_or(MpUriError::Path)?;
        if authority.contains('/') || authority.contains('?') || authority.contains('#') {
            return Err(MpUriError::Path);
        }
        let (host, port) = authority.rsplit_once(':').ok_or(MpUriError::Port)?;
        // The port must be plain digits: u16::from_str would also take a leading '+'.
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MpUriError::Port);
        }
        let port: u16 = port.parse().map_err(|_| MpUriError::Port)?;
        if host.contains(':') && !host.starts_with('[') {
            return Err(MpUriError::Host(shorten(host)));
        }
        MpUri::new(host, port)
    }
}

impl fmt::Display for MpUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}:{}{PATH}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_documented_and_ip_forms() {
        for ok in [
            "net.tcp://bot.contoso.com:18732/MediaProcessor",
            "net.tcp://127.0.0.1:1/MediaProcessor",
            "net.tcp://[::1]:65535/MediaProcessor",
            "net.tcp://localhost:8445/MediaProcessor",
        ] {
            let uri: MpUri = ok.parse().unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(uri.to_string(), ok);
        }
        let v6 = MpUri::new("::1", 9).unwrap();
        assert_eq!(v6.host(), "[::1]");
        assert_eq!(v6.bare_host(), "::1");
    }

    #[test]
    fn rejects_anything_else() {
        let cases = [
            ("http://bot:1/MediaProcessor", MpUriError::Scheme),
            ("net.tcp://bot:1/mediaprocessor", MpUriError::Path),
            ("net.tcp://bot:1/MediaProcessor/", MpUriError::Path),
            ("net.tcp://bot:1/x/MediaProcessor", MpUriError::Path),
            ("net.tcp://bot/MediaProcessor", MpUriError::Port),
            ("net.tcp://bot:0/MediaProcessor", MpUriError::Port),
            ("net.tcp://bot:65536/MediaProcessor", MpUriError::Port),
            ("net.tcp://bot:+80/MediaProcessor", MpUriError::Port),
            (
                "net.tcp://:80/MediaProcessor",
                MpUriError::Host(String::new()),
            ),
            (
                "net.tcp://bad_host:80/MediaProcessor",
                MpUriError::Host("bad_host".into()),
            ),
            (
                "net.tcp://-a.b:80/MediaProcessor",
                MpUriError::Host("-a.b".into()),
            ),
            (
                "net.tcp://1.2.3.999:80/MediaProcessor",
                MpUriError::Host("1.2.3.999".into()),
            ),
            (
                "net.tcp://[::zz]:80/MediaProcessor",
                MpUriError::Host("[::zz]".into()),
            ),
            (
                "net.tcp://::1:80/MediaProcessor",
                MpUriError::Host("::1".into()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<MpUri>(), Err(want), "{input}");
        }
    }
}
