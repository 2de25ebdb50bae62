//! The bot side of one mpUri connection as a sans-IO state machine.
//!
//! Feed it what happens (a text frame arrived, the WebRTC stack produced an answer, media
//! connected, the clock passed [`BotSession::poll_timeout`]) with the current `Instant`; take
//! what to do from [`BotSession::poll_output`]. It never touches a socket or a clock itself, so
//! every rule of `docs/mpuri-protocol.md` is tested here without I/O.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::messages::{BotMessage, ErrorCode, PROTOCOL_VERSION, ServiceMessage, bounded_text};
use super::pending::PendingSessions;
use super::sdp::{OfferPlan, ParticipantLine, read_offer};

/// What Microsoft's own media processor would need, said once so every "never connected" error
/// names it.
pub const CLOSED_PROTOCOL_NOTE: &str = "no media connection arrived at the mpUri: mediabot's \
    media processor speaks WebRTC to its own service side (graph-sim or a WebRTC media relay); \
    Microsoft's media processor uses a closed protocol and never connects to it, so against \
    real Microsoft Graph signaling works and media does not";

/// Timeouts of the exchange. Defaults are those `docs/mpuri-protocol.md` states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolConfig {
    /// From the WebSocket opening to `hello`.
    pub hello_timeout: Duration,
    /// From `accepted` to the first `offer`.
    pub first_offer_timeout: Duration,
    /// From an `offer` to the bot's own answer (a bound on the local WebRTC stack).
    pub answer_timeout: Duration,
    /// From the first `answer` to ICE and DTLS connected.
    pub media_connect_timeout: Duration,
    /// After the bot closes, how long it keeps reading (refusing offers) before dropping the
    /// socket.
    pub close_linger: Duration,
    /// How long a registered session waits for the service to connect.
    pub pending_timeout: Duration,
    /// How long connected media may stay interrupted (ICE disconnected: no traffic for
    /// [`crate::WebRtcConfig::ice_disconnected_timeout`]) before the session ends, if the
    /// WebRTC stack has not declared it failed by then.
    pub media_resume_timeout: Duration,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            hello_timeout: Duration::from_secs(5),
            first_offer_timeout: Duration::from_secs(10),
            answer_timeout: Duration::from_secs(5),
            media_connect_timeout: Duration::from_secs(10),
            close_linger: Duration::from_secs(2),
            pending_timeout: Duration::from_secs(60),
            media_resume_timeout: Duration::from_secs(10),
        }
    }
}

/// Which wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// No `hello` after the socket opened.
    Hello,
    /// No first `offer` after `accepted`.
    FirstOffer,
    /// The local WebRTC stack did not answer.
    Answer,
    /// ICE/DTLS did not connect after the first answer.
    MediaConnect,
    /// Connected media was interrupted and did not resume.
    MediaResume,
}

/// Why a media session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The service sent `hangUp`.
    HangUpByService {
        /// Its reason.
        reason: String,
    },
    /// The bot hung up.
    HangUpByBot {
        /// Its reason.
        reason: String,
    },
    /// The service sent an `error`.
    ServiceError {
        /// Its code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// A wait ran out.
    Timeout(TimeoutKind),
    /// ICE failed or DTLS closed.
    MediaFailed {
        /// What the stack reported.
        detail: String,
    },
    /// The WebSocket closed without a hang-up.
    ConnectionLost,
    /// Nobody connected for the session in time (see [`CLOSED_PROTOCOL_NOTE`]).
    NeverConnected,
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::HangUpByService { reason } => write!(f, "service hung up: {reason}"),
            EndReason::HangUpByBot { reason } => write!(f, "bot hung up: {reason}"),
            EndReason::ServiceError { code, message } => {
                write!(f, "service error {code}: {message}")
            }
            EndReason::Timeout(kind) => write!(f, "timed out waiting for {kind:?}"),
            EndReason::MediaFailed { detail } => write!(f, "media failed: {detail}"),
            EndReason::ConnectionLost => f.write_str("media connection lost without hang-up"),
            EndReason::NeverConnected => f.write_str(CLOSED_PROTOCOL_NOTE),
        }
    }
}

/// What the shell must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Send this message.
    Send(BotMessage),
    /// The connection now owns this media session.
    Accepted {
        /// The session.
        media_session_id: Uuid,
        /// The call id the service presented.
        call_id: Option<Uuid>,
    },
    /// Apply this validated offer to the WebRTC stack, then report
    /// [`BotSession::handle_answer`] or [`BotSession::handle_answer_failed`].
    ApplyOffer {
        /// The offer's seq.
        seq: u64,
        /// Its SDP.
        sdp: String,
        /// What it asks for.
        plan: OfferPlan,
        /// Participant lines new in this offer.
        added: Vec<ParticipantLine>,
        /// Participant lines active before and gone (stopped or absent) now.
        removed: Vec<ParticipantLine>,
    },
    /// The media session is over; tell the pipeline and signaling. Emitted once.
    Ended(EndReason),
    /// Send a WebSocket close frame after the queued messages. After an accepted session ends
    /// this comes when the close linger has passed (offers meanwhile get `sessionClosed`).
    CloseSocket,
    /// Stop reading and drop the socket.
    DropSocket,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitingHello,
    Accepted,
    Active,
    Closed,
}

/// The bot side of one connection.
#[derive(Debug)]
pub struct BotSession {
    config: ProtocolConfig,
    state: State,
    session: Option<Uuid>,
    last_seq: u64,
    pending_offer: Option<(u64, OfferPlan)>,
    current: Option<OfferPlan>,
    media_connected: bool,
    ended: bool,
    hello_deadline: Option<Instant>,
    first_offer_deadline: Option<Instant>,
    answer_deadline: Option<Instant>,
    media_deadline: Option<Instant>,
    /// Set while connected media is interrupted: when the session gives up on it.
    resume_deadline: Option<Instant>,
    linger_deadline: Option<Instant>,
    out: VecDeque<Output>,
}

impl BotSession {
    /// A connection that just opened at `now`.
    pub fn new(now: Instant, config: ProtocolConfig) -> Self {
        BotSession {
            hello_deadline: Some(now + config.hello_timeout),
            config,
            state: State::AwaitingHello,
            session: None,
            last_seq: 0,
            pending_offer: None,
            current: None,
            media_connected: false,
            ended: false,
            first_offer_deadline: None,
            answer_deadline: None,
            media_deadline: None,
            resume_deadline: None,
            linger_deadline: None,
            out: VecDeque::new(),
        }
    }

    /// The session this connection owns, once accepted.
    pub fn media_session_id(&self) -> Option<Uuid> {
        self.session
    }

    /// The stream plan of the last answered offer.
    pub fn current_plan(&self) -> Option<&OfferPlan> {
        self.current.as_ref()
    }

    /// True once the session is over (no more offers are applied).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Next thing to do.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`BotSession::handle_timeout`] must be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.hello_deadline,
            self.first_offer_deadline,
            self.answer_deadline,
            self.media_deadline,
            self.resume_deadline,
            self.linger_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn send_error(&mut self, code: ErrorCode, message: &str, seq: Option<u64>) {
        self.out
            .push_back(Output::Send(BotMessage::error(code, message, seq)));
    }

    fn end(&mut self, now: Instant, reason: EndReason) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.hello_deadline = None;
        self.first_offer_deadline = None;
        self.answer_deadline = None;
        self.media_deadline = None;
        self.resume_deadline = None;
        self.pending_offer = None;
        self.linger_deadline = Some(now + self.config.close_linger);
        if self.session.is_some() {
            if !self.ended {
                self.ended = true;
                self.out.push_back(Output::Ended(reason));
            }
            // The socket stays open for the linger so that an offer racing the end is answered
            // with `sessionClosed` rather than lost; the close frame follows.
        } else {
            // Nothing was claimed: close at once.
            self.out.push_back(Output::CloseSocket);
        }
    }

    fn fatal(&mut self, now: Instant, code: ErrorCode, message: &str, reason: EndReason) {
        self.send_error(code, message, None);
        self.end(now, reason);
    }

    /// A text frame arrived. `pending` is the registry the `hello` claims from.
    pub fn handle_text(&mut self, now: Instant, text: &str, pending: &mut PendingSessions) {
        let msg = match ServiceMessage::parse(text) {
            Ok(m) => m,
            Err(e) => {
                match self.state {
                    // Before a session is claimed there is nothing to keep.
                    State::AwaitingHello => {
                        let code = e.code();
                        self.send_error(code, &e.to_string(), None);
                        self.end(now, EndReason::ConnectionLost);
                    }
                    State::Closed => {
                        self.send_error(ErrorCode::SessionClosed, "the session has ended", None)
                    }
                    _ => self.send_error(e.code(), &e.to_string(), None),
                }
                return;
            }
        };
        match (self.state, msg) {
            (State::Closed, ServiceMessage::Offer { seq, .. }) => self.send_error(
                ErrorCode::SessionClosed,
                "the session has ended; offers are no longer accepted",
                Some(seq),
            ),
            (State::Closed, _) => {}
            (
                State::AwaitingHello,
                ServiceMessage::Hello {
                    version,
                    media_session_id,
                    call_id,
                },
            ) => {
                if version != PROTOCOL_VERSION {
                    let text = format!("version {version} is not spoken; use {PROTOCOL_VERSION}");
                    self.send_error(ErrorCode::UnsupportedVersion, &text, None);
                    self.end(now, EndReason::ConnectionLost);
                    return;
                }
                match pending.claim(media_session_id, call_id) {
                    Ok(()) => {
                        self.session = Some(media_session_id);
                        self.state = State::Accepted;
                        self.hello_deadline = None;
                        self.first_offer_deadline = Some(now + self.config.first_offer_timeout);
                        self.out
                            .push_back(Output::Send(BotMessage::Accepted { media_session_id }));
                        self.out.push_back(Output::Accepted {
                            media_session_id,
                            call_id,
                        });
                    }
                    Err(e) => {
                        self.send_error(e.code(), &e.to_string(), None);
                        self.end(now, EndReason::ConnectionLost);
                    }
                }
            }
            (State::AwaitingHello, _) => {
                self.send_error(
                    ErrorCode::UnexpectedMessage,
                    "the first message must be hello",
                    None,
                );
                self.end(now, EndReason::ConnectionLost);
            }
            (_, ServiceMessage::Hello { .. }) => self.send_error(
                ErrorCode::UnexpectedMessage,
                "hello was already accepted on this connection",
                None,
            ),
            (_, ServiceMessage::Offer { seq, sdp }) => self.handle_offer(now, seq, sdp),
            (_, ServiceMessage::HangUp { reason }) => {
                self.end(now, EndReason::HangUpByService { reason });
            }
            (_, ServiceMessage::Error { code, message }) => {
                self.end(now, EndReason::ServiceError { code, message });
            }
        }
    }

    fn handle_offer(&mut self, _now: Instant, seq: u64, sdp: String) {
        if self.pending_offer.is_some() {
            self.send_error(
                ErrorCode::UnexpectedMessage,
                "the previous offer is not answered yet",
                Some(seq),
            );
            return;
        }
        if seq != self.last_seq + 1 {
            let text = format!("offer seq {seq}; expected {}", self.last_seq + 1);
            self.send_error(ErrorCode::OutOfOrder, &text, Some(seq));
            return;
        }
        let plan = match read_offer(&sdp) {
            Ok(p) => p,
            Err(e) => {
                self.send_error(ErrorCode::BadOffer, &e.to_string(), Some(seq));
                return;
            }
        };
        let (added, removed) = match &self.current {
            None => (plan.participants.clone(), Vec::new()),
            Some(cur) => {
                if cur.bot_line.mid != plan.bot_line.mid {
                    let text = format!(
                        "the bot's m-line must stay mid {}; got {}",
                        cur.bot_line.mid, plan.bot_line.mid
                    );
                    self.send_error(ErrorCode::BadOffer, &bounded_text(&text), Some(seq));
                    return;
                }
                // A mid keeps the source it was first labelled with: the WebRTC stack reuses
                // the transceiver, so relabelling would mix two participants' audio.
                if let Some(p) = plan.participants.iter().find(|p| {
                    cur.by_mid(&p.mid).is_some_and(|old| old.source != p.source)
                        || (cur
                            .participant(p.source)
                            .is_some_and(|old| old.mid != p.mid))
                }) {
                    let text = format!(
                        "m-line {} (sourceId {}) changes an earlier mid/sourceId pairing",
                        p.mid, p.source
                    );
                    self.send_error(ErrorCode::BadOffer, &bounded_text(&text), Some(seq));
                    return;
                }
                let added = plan
                    .participants
                    .iter()
                    .filter(|p| cur.by_mid(&p.mid).is_none())
                    .cloned()
                    .collect();
                let removed = cur
                    .participants
                    .iter()
                    .filter(|p| plan.by_mid(&p.mid).is_none())
                    .cloned()
                    .collect();
                (added, removed)
            }
        };
        self.first_offer_deadline = None;
        self.answer_deadline = Some(_now + self.config.answer_timeout);
        self.pending_offer = Some((seq, plan.clone()));
        self.out.push_back(Output::ApplyOffer {
            seq,
            sdp,
            plan,
            added,
            removed,
        });
    }

    /// The WebRTC stack answered offer `seq`.
    pub fn handle_answer(&mut self, now: Instant, seq: u64, sdp: String) {
        let Some((pending_seq, plan)) = self.pending_offer.take() else {
            return;
        };
        if pending_seq != seq || self.state == State::Closed {
            self.pending_offer = Some((pending_seq, plan));
            return;
        }
        self.answer_deadline = None;
        self.last_seq = seq;
        self.current = Some(plan);
        self.state = State::Active;
        if !self.media_connected && self.media_deadline.is_none() {
            self.media_deadline = Some(now + self.config.media_connect_timeout);
        }
        self.out
            .push_back(Output::Send(BotMessage::Answer { seq, sdp }));
    }

    /// The WebRTC stack refused offer `seq`. The offer is refused with `badOffer` and the
    /// session keeps its previous streams.
    pub fn handle_answer_failed(&mut self, _now: Instant, seq: u64, detail: &str) {
        if self
            .pending_offer
            .as_ref()
            .is_some_and(|(pending, _)| *pending == seq)
        {
            self.pending_offer = None;
            self.answer_deadline = None;
            if self.current.is_none() {
                // The first offer failed: wait for a corrected one as for the first.
                self.first_offer_deadline = Some(_now + self.config.first_offer_timeout);
            }
            self.send_error(ErrorCode::BadOffer, detail, Some(seq));
        }
    }

    /// ICE and DTLS connected, or connected again after an interruption.
    pub fn handle_media_connected(&mut self, _now: Instant) {
        self.media_connected = true;
        self.media_deadline = None;
        self.resume_deadline = None;
    }

    /// ICE reports connected media as disconnected: no traffic came for a few seconds.
    ///
    /// That is not the end of the session. A host that stalled for a few seconds (a shared
    /// cloud CPU), or a network that dropped packets for as long, leaves both ends silent
    /// until it recovers, and ICE then reconnects on its own; ending the session here turned
    /// every such stall into a failure of every call on the host. ICE declares the media
    /// failed if the silence goes on ([`Self::handle_media_failed`]), and the session also
    /// gives up after [`ProtocolConfig::media_resume_timeout`] in case it never does.
    pub fn handle_media_interrupted(&mut self, now: Instant) {
        if self.state == State::Closed || !self.media_connected || self.resume_deadline.is_some() {
            return;
        }
        self.resume_deadline = Some(now + self.config.media_resume_timeout);
    }

    /// Whether connected media is interrupted now.
    pub fn media_interrupted(&self) -> bool {
        self.resume_deadline.is_some()
    }

    /// ICE failed or DTLS closed: the media session is over.
    pub fn handle_media_failed(&mut self, now: Instant, detail: &str) {
        if self.state == State::Closed {
            return;
        }
        self.fatal(
            now,
            ErrorCode::MediaFailed,
            detail,
            EndReason::MediaFailed {
                detail: bounded_text(detail),
            },
        );
    }

    /// The bot hangs up.
    pub fn hang_up(&mut self, now: Instant, reason: &str) {
        if self.state == State::Closed {
            return;
        }
        let reason = bounded_text(reason);
        self.out.push_back(Output::Send(BotMessage::HangUp {
            reason: reason.clone(),
        }));
        self.end(now, EndReason::HangUpByBot { reason });
    }

    /// The WebSocket closed or broke.
    pub fn handle_connection_lost(&mut self, now: Instant) {
        if self.state == State::Closed {
            self.linger_deadline = None;
            self.out.push_back(Output::DropSocket);
            return;
        }
        self.end(now, EndReason::ConnectionLost);
        self.linger_deadline = None;
        self.out.push_back(Output::DropSocket);
    }

    /// The clock reached [`BotSession::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        let due = |d: Option<Instant>| d.is_some_and(|d| d <= now);
        if due(self.linger_deadline) {
            self.linger_deadline = None;
            self.out.push_back(Output::CloseSocket);
            self.out.push_back(Output::DropSocket);
            return;
        }
        if due(self.hello_deadline) {
            self.fatal(
                now,
                ErrorCode::Timeout,
                "no hello in time",
                EndReason::Timeout(TimeoutKind::Hello),
            );
        } else if due(self.first_offer_deadline) {
            self.fatal(
                now,
                ErrorCode::Timeout,
                "no offer in time",
                EndReason::Timeout(TimeoutKind::FirstOffer),
            );
        } else if due(self.answer_deadline) {
            self.fatal(
                now,
                ErrorCode::Internal,
                "the bot's media stack did not answer in time",
                EndReason::Timeout(TimeoutKind::Answer),
            );
        } else if due(self.media_deadline) {
            self.fatal(
                now,
                ErrorCode::MediaFailed,
                "ICE/DTLS did not connect in time",
                EndReason::Timeout(TimeoutKind::MediaConnect),
            );
        } else if due(self.resume_deadline) {
            self.fatal(
                now,
                ErrorCode::MediaFailed,
                "media was interrupted and did not resume in time",
                EndReason::Timeout(TimeoutKind::MediaResume),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::sdp::tests::offer;
    use super::*;

    const S: Uuid = Uuid::from_u128(0x51);
    const CALL: Uuid = Uuid::from_u128(0xCA11);

    fn hello(session: Uuid, call: Option<Uuid>) -> String {
        ServiceMessage::Hello {
            version: PROTOCOL_VERSION,
            media_session_id: session,
            call_id: call,
        }
        .to_json()
    }

    fn offer_msg(seq: u64, sdp: &str) -> String {
        ServiceMessage::Offer {
            seq,
            sdp: sdp.to_owned(),
        }
        .to_json()
    }

    fn drain(s: &mut BotSession) -> Vec<Output> {
        std::iter::from_fn(|| s.poll_output()).collect()
    }

    fn error_code(outputs: &[Output]) -> Option<ErrorCode> {
        outputs.iter().find_map(|o| match o {
            Output::Send(BotMessage::Error { code, .. }) => Some(*code),
            _ => None,
        })
    }

    fn setup() -> (Instant, PendingSessions, BotSession) {
        let t0 = Instant::now();
        let mut reg = PendingSessions::new();
        reg.register(t0, S, Some(CALL), Duration::from_secs(60))
            .unwrap();
        (t0, reg, BotSession::new(t0, ProtocolConfig::default()))
    }

    fn accepted_and_answered(sources: &[u32]) -> (Instant, PendingSessions, BotSession) {
        let (t0, mut reg, mut s) = setup();
        s.handle_text(t0, &hello(S, Some(CALL)), &mut reg);
        s.handle_text(t0, &offer_msg(1, &offer(sources, &[])), &mut reg);
        drain(&mut s);
        s.handle_answer(t0, 1, "v=0 answer".into());
        drain(&mut s);
        (t0, reg, s)
    }

    #[test]
    fn hello_offer_answer() {
        let (t0, mut reg, mut s) = setup();
        s.handle_text(t0, &hello(S, Some(CALL)), &mut reg);
        let out = drain(&mut s);
        assert!(matches!(
            &out[..],
            [Output::Send(BotMessage::Accepted { .. }), Output::Accepted { media_session_id, .. }]
                if *media_session_id == S
        ));
        s.handle_text(t0, &offer_msg(1, &offer(&[10, 20], &[])), &mut reg);
        let out = drain(&mut s);
        let [
            Output::ApplyOffer {
                seq,
                added,
                removed,
                ..
            },
        ] = &out[..]
        else {
            panic!("{out:?}")
        };
        assert_eq!(*seq, 1);
        assert_eq!(added.len(), 2);
        assert!(removed.is_empty());
        s.handle_answer(t0, 1, "answer".into());
        assert_eq!(
            drain(&mut s),
            [Output::Send(BotMessage::Answer {
                seq: 1,
                sdp: "answer".into()
            })]
        );
        assert_eq!(s.current_plan().unwrap().participants.len(), 2);
    }

    #[test]
    fn refused_hellos_change_nothing() {
        let (t0, mut reg, _) = setup();
        for (text, code) in [
            (hello(Uuid::from_u128(9), None), ErrorCode::UnknownSession),
            (hello(S, Some(Uuid::from_u128(9))), ErrorCode::CallMismatch),
            (offer_msg(1, "v=0"), ErrorCode::UnexpectedMessage),
            ("{".to_owned(), ErrorCode::BadMessage),
            (
                ServiceMessage::Hello {
                    version: 2,
                    media_session_id: S,
                    call_id: None,
                }
                .to_json(),
                ErrorCode::UnsupportedVersion,
            ),
        ] {
            let mut s = BotSession::new(t0, ProtocolConfig::default());
            s.handle_text(t0, &text, &mut reg);
            let out = drain(&mut s);
            assert_eq!(error_code(&out), Some(code), "{text}");
            assert!(out.contains(&Output::CloseSocket));
            assert!(!out.iter().any(|o| matches!(o, Output::Ended(_))));
            assert!(reg.is_pending(S));
        }
        // A used session is refused as in use.
        let mut first = BotSession::new(t0, ProtocolConfig::default());
        first.handle_text(t0, &hello(S, None), &mut reg);
        let mut second = BotSession::new(t0, ProtocolConfig::default());
        second.handle_text(t0, &hello(S, None), &mut reg);
        assert_eq!(
            error_code(&drain(&mut second)),
            Some(ErrorCode::SessionInUse)
        );
    }

    #[test]
    fn renegotiation_reports_added_and_removed() {
        let (t0, mut reg, mut s) = accepted_and_answered(&[10, 20]);
        // 10 leaves (stopped), 30 joins.
        let sdp = offer(&[20, 30], &[10]);
        // Keep mids stable: build by hand so 20 stays mid 2.
        let sdp = sdp
            .replace(
                "a=mid:1\r\na=sendonly\r\na=msid:20",
                "a=mid:2\r\na=sendonly\r\na=msid:20",
            )
            .replace(
                "a=mid:2\r\na=sendonly\r\na=msid:30",
                "a=mid:4\r\na=sendonly\r\na=msid:30",
            )
            .replace(
                "a=mid:3\r\na=sendonly\r\na=msid:10",
                "a=mid:1\r\na=sendonly\r\na=msid:10",
            );
        s.handle_text(t0, &offer_msg(2, &sdp), &mut reg);
        let out = drain(&mut s);
        let [Output::ApplyOffer { added, removed, .. }] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(added.iter().map(|p| p.source.0).collect::<Vec<_>>(), [30]);
        assert_eq!(removed.iter().map(|p| p.source.0).collect::<Vec<_>>(), [10]);
    }

    #[test]
    fn bad_offers_are_refused_and_change_nothing() {
        let (t0, mut reg, mut s) = accepted_and_answered(&[10]);
        let before = s.current_plan().cloned();
        let relabel = offer(&[11], &[]);
        for (text, code) in [
            (offer_msg(3, &offer(&[10], &[])), ErrorCode::OutOfOrder),
            (offer_msg(2, "nonsense"), ErrorCode::BadOffer),
            (offer_msg(2, &relabel), ErrorCode::BadOffer),
            ("[1]".to_owned(), ErrorCode::BadMessage),
            (hello(S, None), ErrorCode::UnexpectedMessage),
        ] {
            s.handle_text(t0, &text, &mut reg);
            let out = drain(&mut s);
            assert_eq!(error_code(&out), Some(code), "{text}");
            assert_eq!(out.len(), 1, "{out:?}");
            assert_eq!(s.current_plan().cloned(), before);
        }
        // An offer while one is unanswered.
        s.handle_text(t0, &offer_msg(2, &offer(&[10], &[])), &mut reg);
        drain(&mut s);
        s.handle_text(t0, &offer_msg(3, &offer(&[10], &[])), &mut reg);
        assert_eq!(
            error_code(&drain(&mut s)),
            Some(ErrorCode::UnexpectedMessage)
        );
        // The stack refuses the pending one: refused with badOffer, plan unchanged.
        s.handle_answer_failed(t0, 2, "stack said no");
        assert_eq!(error_code(&drain(&mut s)), Some(ErrorCode::BadOffer));
        assert_eq!(s.current_plan().cloned(), before);
    }

    #[test]
    fn hang_up_either_way_ends_once_and_later_offers_are_refused() {
        let (t0, mut reg, mut s) = accepted_and_answered(&[10]);
        s.handle_text(
            t0,
            &ServiceMessage::HangUp {
                reason: "bye".into(),
            }
            .to_json(),
            &mut reg,
        );
        let out = drain(&mut s);
        assert_eq!(
            out,
            [Output::Ended(EndReason::HangUpByService {
                reason: "bye".into()
            })]
        );
        s.handle_text(t0, &offer_msg(2, &offer(&[10], &[])), &mut reg);
        assert_eq!(error_code(&drain(&mut s)), Some(ErrorCode::SessionClosed));
        s.hang_up(t0, "again");
        assert!(drain(&mut s).is_empty());
        // The socket is dropped after the linger.
        let t = s.poll_timeout().unwrap();
        assert_eq!(t, t0 + ProtocolConfig::default().close_linger);
        s.handle_timeout(t);
        assert_eq!(drain(&mut s), [Output::CloseSocket, Output::DropSocket]);

        let (t0, _, mut s) = accepted_and_answered(&[10]);
        s.hang_up(t0, "done");
        let out = drain(&mut s);
        assert!(matches!(&out[0], Output::Send(BotMessage::HangUp { .. })));
        assert!(matches!(
            &out[1],
            Output::Ended(EndReason::HangUpByBot { .. })
        ));
    }

    #[test]
    fn timeouts_are_data() {
        let cfg = ProtocolConfig::default();
        // No hello.
        let (t0, _, mut s) = setup();
        assert_eq!(s.poll_timeout(), Some(t0 + cfg.hello_timeout));
        s.handle_timeout(t0 + cfg.hello_timeout);
        assert_eq!(error_code(&drain(&mut s)), Some(ErrorCode::Timeout));
        // No first offer.
        let (t0, mut reg, mut s) = setup();
        s.handle_text(t0, &hello(S, None), &mut reg);
        drain(&mut s);
        let t = s.poll_timeout().unwrap();
        assert_eq!(t, t0 + cfg.first_offer_timeout);
        s.handle_timeout(t - Duration::from_millis(1));
        assert!(drain(&mut s).is_empty());
        s.handle_timeout(t);
        assert!(
            drain(&mut s).contains(&Output::Ended(EndReason::Timeout(TimeoutKind::FirstOffer)))
        );
        // Media never connects after the answer.
        let (t0, _, mut s) = accepted_and_answered(&[10]);
        assert_eq!(s.poll_timeout(), Some(t0 + cfg.media_connect_timeout));
        s.handle_timeout(t0 + cfg.media_connect_timeout);
        let out = drain(&mut s);
        assert_eq!(error_code(&out), Some(ErrorCode::MediaFailed));
        assert!(out.contains(&Output::Ended(EndReason::Timeout(
            TimeoutKind::MediaConnect
        ))));
        // Connected media clears that wait; a later failure ends the session.
        let (t0, _, mut s) = accepted_and_answered(&[10]);
        s.handle_media_connected(t0);
        assert_eq!(s.poll_timeout(), None);
        s.handle_media_failed(t0, "ICE failed");
        assert!(
            drain(&mut s).contains(&Output::Ended(EndReason::MediaFailed {
                detail: "ICE failed".into()
            }))
        );
    }

    #[test]
    fn interrupted_media_that_resumes_keeps_the_session_and_one_that_does_not_ends_it() {
        let cfg = ProtocolConfig::default();
        let (t0, _, mut s) = accepted_and_answered(&[10]);
        // An interruption before media ever connected changes nothing: the connect wait rules.
        s.handle_media_interrupted(t0);
        assert!(!s.media_interrupted());
        assert_eq!(s.poll_timeout(), Some(t0 + cfg.media_connect_timeout));
        s.handle_media_connected(t0);
        drain(&mut s);

        // Interrupted, then connected again before the limit: nothing ends, no wait is left.
        let t1 = t0 + Duration::from_secs(30);
        s.handle_media_interrupted(t1);
        assert!(s.media_interrupted());
        let limit = t1 + cfg.media_resume_timeout;
        assert_eq!(s.poll_timeout(), Some(limit));
        // A repeated report does not push the limit back.
        s.handle_media_interrupted(t1 + Duration::from_secs(2));
        assert_eq!(s.poll_timeout(), Some(limit));
        s.handle_timeout(limit - Duration::from_millis(1));
        s.handle_media_connected(limit - Duration::from_millis(1));
        assert!(!s.media_interrupted());
        assert_eq!(s.poll_timeout(), None);
        assert!(drain(&mut s).is_empty());
        assert!(!s.is_closed());

        // Interrupted again, and it never resumes: the session ends at the limit.
        let t2 = t1 + Duration::from_secs(60);
        s.handle_media_interrupted(t2);
        s.handle_timeout(t2 + cfg.media_resume_timeout);
        let out = drain(&mut s);
        assert_eq!(error_code(&out), Some(ErrorCode::MediaFailed));
        assert!(out.contains(&Output::Ended(EndReason::Timeout(TimeoutKind::MediaResume))));
        assert!(s.is_closed());
        // After the end an interruption is nothing.
        s.handle_media_interrupted(t2 + Duration::from_secs(20));
        assert!(!s.media_interrupted());
    }
}
