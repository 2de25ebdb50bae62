//! The service side of one mpUri connection as a sans-IO state machine: the mirror of
//! [`BotSession`](super::BotSession).
//!
//! It sends `hello` and waits for `accepted` or a refusal, numbers the offers and waits for
//! each one's answer or refusal, keeps the participant set the offers carry, hangs up, and
//! reads the bot's hang-ups and errors. Feed it what happens with the current `Instant`; take
//! what to do from [`ServiceProtocol::poll_output`]. The WebRTC stack that writes the offers'
//! SDP and applies the answers stays in the shell (`media_transport::ServiceSession`).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use media_session::SourceId;
use uuid::Uuid;

use super::messages::{BotMessage, ErrorCode, PROTOCOL_VERSION, ServiceMessage, bounded_text};

/// Settings of the service side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceProtocolConfig {
    /// How long to wait for `accepted` after `hello`, and for each offer's answer.
    pub reply_timeout: Duration,
}

impl Default for ServiceProtocolConfig {
    fn default() -> Self {
        ServiceProtocolConfig {
            reply_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the service side could not do what it was asked, or what ended a wait.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceProtocolError {
    /// The bot refused with an `error` message.
    #[error("refused: {code}: {message}")]
    Refused {
        /// Its code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// The bot's first reply was neither `accepted` nor an `error`.
    #[error("unexpected first reply: {0}")]
    UnexpectedReply(String),
    /// The bot did not reply in time.
    #[error("no reply from the media processor in time")]
    Timeout,
    /// The connection is gone or the session over.
    #[error("the media session has ended")]
    Closed,
    /// An offer is still waiting for its answer; offers go one at a time.
    #[error("offer {0} is not answered yet")]
    OfferPending(u64),
    /// The participant is already present (add) or absent (remove).
    #[error("sourceId {0} is {1}")]
    Participant(SourceId, &'static str),
}

/// What the shell must do next, or what it should tell the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceOutput {
    /// Send this message.
    Send(ServiceMessage),
    /// The bot accepted the `hello`: the session is this connection's; set up media and offer.
    Accepted {
        /// The session.
        media_session_id: Uuid,
    },
    /// Connecting failed (refused, timed out, closed, or a reply that makes no sense). Drop
    /// the socket.
    ConnectFailed(ServiceProtocolError),
    /// The bot answered offer `seq`: apply the answer to the WebRTC stack.
    ApplyAnswer {
        /// The offer answered.
        seq: u64,
        /// The answer's SDP.
        sdp: String,
        /// Participants this answer negotiates for the first time (their send streams learn
        /// the negotiated payload types now).
        negotiated: Vec<SourceId>,
    },
    /// Offer `seq` got no answer. The bot's streams are as the last answered offer left them.
    OfferFailed {
        /// The offer.
        seq: u64,
        /// Why.
        error: ServiceProtocolError,
        /// Set the local description back to the last agreed state (the bot refused the offer
        /// and waits for a corrected one).
        roll_back: bool,
    },
    /// An answer or offer refusal that answers no offer of this core: a reply to a message a
    /// tool sent by hand.
    Reply(BotMessage),
    /// The bot hung up; the session is over.
    HungUp {
        /// Its reason.
        reason: String,
    },
    /// The bot sent an error not tied to an offer; a fatal one ends the session.
    BotError {
        /// Its code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// ICE and DTLS connected (reported once).
    MediaConnected,
    /// ICE failed or DTLS closed (reported once).
    MediaFailed(String),
    /// The WebSocket closed (reported once).
    Closed,
    /// Send a WebSocket close frame after the queued messages.
    CloseSocket,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingAccept,
    Open,
    /// Hung up by either side, a fatal error, or a failed connect: no more offers.
    Over,
}

#[derive(Debug, Clone)]
struct PendingOffer {
    seq: u64,
    deadline: Instant,
    /// The participants the offer carries.
    offered: Vec<SourceId>,
}

/// The service side of one connection. See the [module docs](self).
#[derive(Debug)]
pub struct ServiceProtocol {
    config: ServiceProtocolConfig,
    media_session_id: Uuid,
    phase: Phase,
    accept_deadline: Option<Instant>,
    /// The seq of the last offer the bot answered.
    last_seq: u64,
    pending: Option<PendingOffer>,
    /// Participants and whether an answered offer carried them yet.
    participants: BTreeMap<SourceId, bool>,
    hung_up: bool,
    socket_closed: bool,
    media_connected: bool,
    media_failed: bool,
    out: VecDeque<ServiceOutput>,
}

impl ServiceProtocol {
    /// A connection that just opened at `now`, presenting the blob's session and call ids: the
    /// `hello` is the first output.
    pub fn new(
        now: Instant,
        media_session_id: Uuid,
        call_id: Option<Uuid>,
        config: ServiceProtocolConfig,
    ) -> Self {
        let mut out = VecDeque::new();
        out.push_back(ServiceOutput::Send(ServiceMessage::Hello {
            version: PROTOCOL_VERSION,
            media_session_id,
            call_id,
        }));
        ServiceProtocol {
            accept_deadline: Some(now + config.reply_timeout),
            config,
            media_session_id,
            phase: Phase::AwaitingAccept,
            last_seq: 0,
            pending: None,
            participants: BTreeMap::new(),
            hung_up: false,
            socket_closed: false,
            media_connected: false,
            media_failed: false,
            out,
        }
    }

    /// The session presented.
    pub fn media_session_id(&self) -> Uuid {
        self.media_session_id
    }

    /// True while offers may be made: accepted, not hung up, the socket open.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open && !self.socket_closed
    }

    /// The seq of the last offer the bot answered (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The offer waiting for its answer, if any.
    pub fn pending_offer(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.seq)
    }

    /// The participants the next offer carries, in ascending order.
    pub fn participants(&self) -> impl Iterator<Item = SourceId> + '_ {
        self.participants.keys().copied()
    }

    /// Next thing to do.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<ServiceOutput> {
        self.out.pop_front()
    }

    /// When [`ServiceProtocol::handle_timeout`] must be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.accept_deadline,
            self.pending.as_ref().map(|p| p.deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Adds a participant's send stream; the next offer carries it.
    pub fn add_participant(&mut self, source: SourceId) -> Result<(), ServiceProtocolError> {
        if self.participants.contains_key(&source) {
            return Err(ServiceProtocolError::Participant(source, "already present"));
        }
        self.participants.insert(source, false);
        Ok(())
    }

    /// Removes a participant; the next offer stops its m-line.
    pub fn remove_participant(&mut self, source: SourceId) -> Result<(), ServiceProtocolError> {
        self.participants
            .remove(&source)
            .map(|_| ())
            .ok_or(ServiceProtocolError::Participant(source, "not present"))
    }

    /// The seq the next offer will carry, or why none may be made now. Ask before building the
    /// offer, so a closed session costs no WebRTC work.
    pub fn next_offer_seq(&self) -> Result<u64, ServiceProtocolError> {
        if !self.is_open() {
            return Err(ServiceProtocolError::Closed);
        }
        if let Some(p) = &self.pending {
            return Err(ServiceProtocolError::OfferPending(p.seq));
        }
        // One more than the last answered offer: a refused or unanswered one is retried with
        // the same seq, which is what the bot expects.
        Ok(self.last_seq + 1)
    }

    /// Sends an offer of the current participants (`sdp` from the WebRTC stack) and waits for
    /// its answer. Returns its seq.
    pub fn offer(&mut self, now: Instant, sdp: String) -> Result<u64, ServiceProtocolError> {
        let seq = self.next_offer_seq()?;
        self.pending = Some(PendingOffer {
            seq,
            deadline: now + self.config.reply_timeout,
            offered: self.participants.keys().copied().collect(),
        });
        self.out
            .push_back(ServiceOutput::Send(ServiceMessage::Offer { seq, sdp }));
        Ok(seq)
    }

    /// Ends the session: `hangUp`, then the close frame. Hanging up again does nothing.
    pub fn hang_up(&mut self, _now: Instant, reason: &str) -> Result<(), ServiceProtocolError> {
        if self.socket_closed {
            return Err(ServiceProtocolError::Closed);
        }
        if self.hung_up {
            return Ok(());
        }
        self.hung_up = true;
        self.out
            .push_back(ServiceOutput::Send(ServiceMessage::HangUp {
                reason: bounded_text(reason),
            }));
        self.out.push_back(ServiceOutput::CloseSocket);
        self.finish(ServiceProtocolError::Closed);
        Ok(())
    }

    /// ICE and DTLS connected.
    pub fn handle_media_connected(&mut self, _now: Instant) {
        if !self.media_connected {
            self.media_connected = true;
            self.out.push_back(ServiceOutput::MediaConnected);
        }
    }

    /// ICE failed or DTLS closed. The bot notices too and ends the session with
    /// `mediaFailed`; this side only reports it. (ICE disconnected is not reported here: it
    /// is transient, see `BotSession::handle_media_interrupted`.)
    pub fn handle_media_failed(&mut self, _now: Instant, detail: &str) {
        if !self.media_failed {
            self.media_failed = true;
            self.out
                .push_back(ServiceOutput::MediaFailed(bounded_text(detail)));
        }
    }

    /// The WebSocket closed or broke.
    pub fn handle_closed(&mut self, _now: Instant) {
        if self.socket_closed {
            return;
        }
        self.socket_closed = true;
        if self.phase == Phase::AwaitingAccept {
            self.connect_failed(ServiceProtocolError::Closed);
        } else {
            self.finish(ServiceProtocolError::Closed);
        }
        self.out.push_back(ServiceOutput::Closed);
    }

    /// The clock reached [`ServiceProtocol::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.accept_deadline.is_some_and(|d| d <= now) {
            self.connect_failed(ServiceProtocolError::Timeout);
        }
        if let Some(p) = self.pending.take_if(|p| p.deadline <= now) {
            // No roll-back: the answer may still come, and is then a stray reply.
            self.out.push_back(ServiceOutput::OfferFailed {
                seq: p.seq,
                error: ServiceProtocolError::Timeout,
                roll_back: false,
            });
        }
    }

    /// A text frame from the bot arrived.
    pub fn handle_text(&mut self, now: Instant, text: &str) {
        let msg = match BotMessage::parse(text) {
            Ok(m) => m,
            Err(e) => {
                if self.phase == Phase::AwaitingAccept {
                    self.connect_failed(ServiceProtocolError::UnexpectedReply(e.to_string()));
                } else {
                    self.out.push_back(ServiceOutput::BotError {
                        code: e.code(),
                        message: e.to_string(),
                    });
                }
                return;
            }
        };
        if self.phase == Phase::AwaitingAccept {
            self.handle_first_reply(now, msg);
            return;
        }
        match msg {
            BotMessage::Answer { seq, sdp } => match self.pending.take_if(|p| p.seq == seq) {
                Some(p) => self.answered(p, sdp),
                None => self
                    .out
                    .push_back(ServiceOutput::Reply(BotMessage::Answer { seq, sdp })),
            },
            BotMessage::Error {
                code,
                message,
                seq: Some(seq),
            } => match self.pending.take_if(|p| p.seq == seq) {
                Some(_) => self.out.push_back(ServiceOutput::OfferFailed {
                    seq,
                    error: ServiceProtocolError::Refused { code, message },
                    roll_back: true,
                }),
                None => self.out.push_back(ServiceOutput::Reply(BotMessage::Error {
                    code,
                    message,
                    seq: Some(seq),
                })),
            },
            BotMessage::Error {
                code,
                message,
                seq: None,
            } => {
                self.out.push_back(ServiceOutput::BotError {
                    code,
                    message: message.clone(),
                });
                if code.is_fatal() {
                    // The bot closes the connection after a fatal error.
                    self.finish(ServiceProtocolError::Refused { code, message });
                }
            }
            BotMessage::HangUp { reason } => {
                self.out.push_back(ServiceOutput::HungUp { reason });
                self.finish(ServiceProtocolError::Closed);
            }
            // A second `accepted` says nothing new.
            BotMessage::Accepted { .. } => {}
        }
    }

    fn handle_first_reply(&mut self, _now: Instant, msg: BotMessage) {
        match msg {
            BotMessage::Accepted { media_session_id }
                if media_session_id == self.media_session_id =>
            {
                self.phase = Phase::Open;
                self.accept_deadline = None;
                self.out
                    .push_back(ServiceOutput::Accepted { media_session_id });
            }
            BotMessage::Error { code, message, .. } => {
                self.connect_failed(ServiceProtocolError::Refused { code, message });
            }
            other => {
                self.connect_failed(ServiceProtocolError::UnexpectedReply(format!("{other:?}")));
            }
        }
    }

    fn answered(&mut self, offer: PendingOffer, sdp: String) {
        self.last_seq = offer.seq;
        let mut negotiated = Vec::new();
        for source in offer.offered {
            // A participant removed while the offer was out is not negotiated by its answer.
            if let Some(done) = self.participants.get_mut(&source)
                && !*done
            {
                *done = true;
                negotiated.push(source);
            }
        }
        self.out.push_back(ServiceOutput::ApplyAnswer {
            seq: offer.seq,
            sdp,
            negotiated,
        });
    }

    fn connect_failed(&mut self, error: ServiceProtocolError) {
        if self.phase != Phase::AwaitingAccept {
            return;
        }
        self.phase = Phase::Over;
        self.accept_deadline = None;
        self.out.push_back(ServiceOutput::ConnectFailed(error));
    }

    /// No more offers; an offer still out fails with `error`.
    fn finish(&mut self, error: ServiceProtocolError) {
        if self.phase == Phase::AwaitingAccept {
            self.connect_failed(error);
            return;
        }
        self.phase = Phase::Over;
        if let Some(p) = self.pending.take() {
            self.out.push_back(ServiceOutput::OfferFailed {
                seq: p.seq,
                error,
                roll_back: false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Uuid = Uuid::from_u128(0x51);

    fn drain(p: &mut ServiceProtocol) -> Vec<ServiceOutput> {
        std::iter::from_fn(|| p.poll_output()).collect()
    }

    fn accepted(t0: Instant) -> ServiceProtocol {
        let mut p = ServiceProtocol::new(t0, S, None, ServiceProtocolConfig::default());
        p.handle_text(
            t0,
            &BotMessage::Accepted {
                media_session_id: S,
            }
            .to_json(),
        );
        drain(&mut p);
        p
    }

    #[test]
    fn hello_first_then_accepted() {
        let t0 = Instant::now();
        let call = Uuid::from_u128(7);
        let mut p = ServiceProtocol::new(t0, S, Some(call), ServiceProtocolConfig::default());
        assert_eq!(
            drain(&mut p),
            [ServiceOutput::Send(ServiceMessage::Hello {
                version: PROTOCOL_VERSION,
                media_session_id: S,
                call_id: Some(call),
            })]
        );
        assert_eq!(p.next_offer_seq(), Err(ServiceProtocolError::Closed));
        p.handle_text(
            t0,
            &BotMessage::Accepted {
                media_session_id: S,
            }
            .to_json(),
        );
        assert_eq!(
            drain(&mut p),
            [ServiceOutput::Accepted {
                media_session_id: S
            }]
        );
        assert_eq!(p.poll_timeout(), None);
        assert_eq!(p.next_offer_seq(), Ok(1));
    }

    #[test]
    fn odd_first_replies_fail_the_connect() {
        let t0 = Instant::now();
        for (text, want) in [
            (
                BotMessage::Accepted {
                    media_session_id: Uuid::from_u128(9),
                }
                .to_json(),
                "unexpected",
            ),
            (
                BotMessage::Answer {
                    seq: 1,
                    sdp: "v=0".into(),
                }
                .to_json(),
                "unexpected",
            ),
            ("{".to_owned(), "unexpected"),
            (
                BotMessage::error(ErrorCode::SessionInUse, "in use", None).to_json(),
                "refused",
            ),
        ] {
            let mut p = ServiceProtocol::new(t0, S, None, ServiceProtocolConfig::default());
            drain(&mut p);
            p.handle_text(t0, &text);
            let out = drain(&mut p);
            let [ServiceOutput::ConnectFailed(e)] = &out[..] else {
                panic!("{text}: {out:?}")
            };
            assert!(e.to_string().starts_with(want), "{text}: {e}");
            assert!(!p.is_open());
        }
    }

    #[test]
    fn offers_go_one_at_a_time_and_refusals_keep_the_seq() {
        let t0 = Instant::now();
        let mut p = accepted(t0);
        p.add_participant(SourceId(10)).unwrap();
        assert_eq!(
            p.add_participant(SourceId(10)),
            Err(ServiceProtocolError::Participant(
                SourceId(10),
                "already present"
            ))
        );
        assert_eq!(p.offer(t0, "o1".into()), Ok(1));
        assert_eq!(
            p.offer(t0, "again".into()),
            Err(ServiceProtocolError::OfferPending(1))
        );
        drain(&mut p);
        p.handle_text(
            t0,
            &BotMessage::error(ErrorCode::BadOffer, "no", Some(1)).to_json(),
        );
        assert!(matches!(
            &drain(&mut p)[..],
            [ServiceOutput::OfferFailed {
                seq: 1,
                roll_back: true,
                ..
            }]
        ));
        assert_eq!(p.offer(t0, "o1 again".into()), Ok(1));
        drain(&mut p);
        // A stray reply is handed on, not taken for this offer's answer.
        let stray = BotMessage::Answer {
            seq: 7,
            sdp: "x".into(),
        };
        p.handle_text(t0, &stray.to_json());
        assert_eq!(drain(&mut p), [ServiceOutput::Reply(stray)]);
        p.handle_text(
            t0,
            &BotMessage::Answer {
                seq: 1,
                sdp: "a1".into(),
            }
            .to_json(),
        );
        assert_eq!(
            drain(&mut p),
            [ServiceOutput::ApplyAnswer {
                seq: 1,
                sdp: "a1".into(),
                negotiated: vec![SourceId(10)],
            }]
        );
        assert_eq!((p.last_seq(), p.next_offer_seq()), (1, Ok(2)));
    }

    #[test]
    fn an_unanswered_offer_times_out_and_a_closed_socket_fails_it() {
        let t0 = Instant::now();
        let cfg = ServiceProtocolConfig::default();
        let mut p = accepted(t0);
        p.offer(t0, "o1".into()).unwrap();
        drain(&mut p);
        assert_eq!(p.poll_timeout(), Some(t0 + cfg.reply_timeout));
        p.handle_timeout(t0 + cfg.reply_timeout);
        assert_eq!(
            drain(&mut p),
            [ServiceOutput::OfferFailed {
                seq: 1,
                error: ServiceProtocolError::Timeout,
                roll_back: false,
            }]
        );
        p.offer(t0, "o1".into()).unwrap();
        drain(&mut p);
        p.handle_closed(t0);
        assert_eq!(
            drain(&mut p),
            [
                ServiceOutput::OfferFailed {
                    seq: 1,
                    error: ServiceProtocolError::Closed,
                    roll_back: false,
                },
                ServiceOutput::Closed
            ]
        );
        assert_eq!(p.hang_up(t0, "late"), Err(ServiceProtocolError::Closed));
    }

    #[test]
    fn media_state_is_reported_once_each() {
        let t0 = Instant::now();
        let mut p = accepted(t0);
        p.handle_media_connected(t0);
        p.handle_media_connected(t0);
        p.handle_media_failed(t0, "failed");
        p.handle_media_failed(t0, "closed");
        assert_eq!(
            drain(&mut p),
            [
                ServiceOutput::MediaConnected,
                ServiceOutput::MediaFailed("failed".into())
            ]
        );
    }
}
