//! One line to turn logging on: [`init`] installs a `tracing` subscriber that writes to stderr,
//! filtered by `RUST_LOG` (default [`DEFAULT_FILTER`]: `info` for mediabot's crates), as text or one JSON object per line, and bridges
//! records of dependencies that use the `log` crate (the WebRTC stack). Nothing in mediabot
//! installs one by itself: a library user who has their own subscriber keeps it.
//!
//! Every line about a call carries the call's id and the bot's instance id (each call's task
//! runs in a `call` span with both). Secrets (the app secret, access tokens, meeting
//! passcodes) are never part of any line at any level.
//!
//! ```no_run
//! mediabot::logging::init(mediabot::logging::LogFormat::Text).ok();
//! ```

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log format {other:?}: text or json")),
        }
    }
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoggingError {
    /// `RUST_LOG` does not parse as a filter.
    #[error("RUST_LOG: {0}")]
    Filter(String),
    /// A global subscriber or `log` logger is installed already.
    #[error("a logger is already installed: {0}")]
    AlreadyInstalled(String),
}

/// Without `RUST_LOG`: mediabot's own crates at `info`, other crates at `warn`, and the WebRTC
/// stack at `error` (it warns about normal steps of every connection's start).
pub const DEFAULT_FILTER: &str = "warn,mediabot=info,graph_signaling=info,graph_sim=info,\
media_transport=info,audio_pipeline=info,webrtc=error,rtc=error,rtc_ice=error,rtc_dtls=error,\
rtc_srtp=error,rtc_sctp=error,rtc_interceptor=error,rtc_mdns=error";

/// The filter `RUST_LOG` asks for; [`DEFAULT_FILTER`] when unset.
fn filter() -> Result<EnvFilter, LoggingError> {
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => {
            EnvFilter::try_new(spec).map_err(|e| LoggingError::Filter(e.to_string()))
        }
        _ => EnvFilter::try_new(DEFAULT_FILTER).map_err(|e| LoggingError::Filter(e.to_string())),
    }
}

/// Installs the process-wide subscriber: stderr, `RUST_LOG` (default `info`), `format`; and
/// routes `log` records into it.
pub fn init(format: LogFormat) -> Result<(), LoggingError> {
    let filter = filter()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::NONE);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    installed.map_err(|e| LoggingError::AlreadyInstalled(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_filter_parses() {
        assert!(EnvFilter::try_new(DEFAULT_FILTER).is_ok());
    }

    #[test]
    fn formats_parse_by_name() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("TEXT".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
