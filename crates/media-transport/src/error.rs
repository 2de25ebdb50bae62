//! Failures of the local WebRTC stack, typed, for every shell that drives it (the bot's
//! connections, the service side, the browser peer).

use std::sync::Arc;
use std::time::Duration;

/// How long gathering the local candidates may take before a description is given up on.
pub(crate) const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// What failed in the local WebRTC stack.
///
/// Cheap to clone (the stack's errors are shared), so it can travel in events and in other
/// errors; two values are equal when they name the same failure with the same cause.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WebRtcError {
    /// A call into the `webrtc` crate failed.
    #[error("{what}: {source}")]
    Stack {
        /// The step that failed, as a short phrase ("cannot answer").
        what: &'static str,
        /// The stack's error.
        #[source]
        source: Arc<webrtc::error::Error>,
    },
    /// No UDP address could be bound for the media socket.
    #[error("cannot bind the media socket: {0}")]
    Socket(#[source] Arc<std::io::Error>),
    /// Gathering the local ICE candidates did not complete within 5 s.
    #[error("ICE gathering did not complete in {} s", GATHER_TIMEOUT.as_secs())]
    GatheringTimedOut,
    /// The peer connection closed while its candidates were being gathered.
    #[error("peer connection closed while gathering")]
    ClosedWhileGathering,
    /// The stack has no local description after setting one.
    #[error("no local description")]
    NoLocalDescription,
    /// The stack made a transceiver without a sender.
    #[error("the transceiver has no sender")]
    NoSender,
    /// A DTMF digit was to be sent on a stream that did not negotiate telephone-event.
    #[error("telephone-event was not negotiated")]
    DtmfNotNegotiated,
}

impl WebRtcError {
    /// Wraps a stack error with the step that failed, for `map_err`.
    pub(crate) fn stack(what: &'static str) -> impl FnOnce(webrtc::error::Error) -> WebRtcError {
        move |e| WebRtcError::Stack {
            what,
            source: Arc::new(e),
        }
    }
}

impl PartialEq for WebRtcError {
    fn eq(&self, other: &Self) -> bool {
        use WebRtcError::*;
        match (self, other) {
            (Stack { what, source }, Stack { what: w, source: s }) => what == w && **source == **s,
            // `io::Error` has no equality; its kind and text say what it was.
            (Socket(a), Socket(b)) => a.kind() == b.kind() && a.to_string() == b.to_string(),
            (GatheringTimedOut, GatheringTimedOut)
            | (ClosedWhileGathering, ClosedWhileGathering)
            | (NoLocalDescription, NoLocalDescription)
            | (NoSender, NoSender)
            | (DtmfNotNegotiated, DtmfNotNegotiated) => true,
            _ => false,
        }
    }
}

impl Eq for WebRtcError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_step_and_the_cause() {
        let e = WebRtcError::stack("cannot answer")(webrtc::error::Error::ErrConnectionClosed);
        assert!(e.to_string().starts_with("cannot answer: "), "{e}");
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(e.clone(), e);
        assert_ne!(e, WebRtcError::NoSender);
        let io = || {
            WebRtcError::Socket(Arc::new(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "no free UDP port",
            )))
        };
        assert_eq!(io(), io());
        assert_eq!(
            WebRtcError::GatheringTimedOut.to_string(),
            "ICE gathering did not complete in 5 s"
        );
    }
}
