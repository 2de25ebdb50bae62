//! The two cores of the mpUri exchange stepped against each other: the bot's [`BotSession`] and
//! the service's [`ServiceProtocol`], on made-up time, with no socket and no WebRTC. A fake
//! stack on each side stands in for WebRTC: the service's writes offers whose m-lines keep
//! their mids as a real stack's transceivers do, the bot's answers at once (or never).

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use media_session::SourceId;
use uuid::Uuid;

use super::messages::{BotMessage, ErrorCode};
use super::pending::PendingSessions;
use super::service_session::{
    ServiceOutput, ServiceProtocol, ServiceProtocolConfig, ServiceProtocolError,
};
use super::session::{BotSession, EndReason, Output, ProtocolConfig, TimeoutKind};

const SESSION: Uuid = Uuid::from_u128(0x5E55);
const CALL: Uuid = Uuid::from_u128(0xCA11);

/// One direction of the WebSocket.
#[derive(Debug)]
enum Frame {
    Text(String),
    Close,
}

/// The service's WebRTC stack as far as offers go: one transceiver per participant ever added,
/// mid 1, 2, … in order of creation after the bot's line (mid 0); a removed participant's line
/// stays, stopped.
#[derive(Debug, Default)]
struct ServiceStack {
    lines: Vec<(SourceId, bool)>,
}

impl ServiceStack {
    fn add(&mut self, source: SourceId) {
        self.lines.push((source, true));
    }

    fn stop(&mut self, source: SourceId) {
        for line in self.lines.iter_mut().filter(|l| l.0 == source) {
            line.1 = false;
        }
    }

    fn offer(&self) -> String {
        let mut s = String::from("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
        s.push_str(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111 126\r\na=mid:0\r\na=recvonly\r\n\
             a=rtpmap:111 opus/48000/2\r\na=rtpmap:126 telephone-event/48000\r\n",
        );
        for (i, (source, active)) in self.lines.iter().enumerate() {
            let port = if *active { 9 } else { 0 };
            s.push_str(&format!(
                "m=audio {port} UDP/TLS/RTP/SAVPF 111 126\r\na=mid:{}\r\na=sendonly\r\n\
                 a=msid:{source} audio-{source}\r\na=rtpmap:111 opus/48000/2\r\n\
                 a=rtpmap:126 telephone-event/48000\r\n",
                i + 1
            ));
        }
        s
    }
}

/// Both cores and the wire between them.
struct Pair {
    now: Instant,
    pending: PendingSessions,
    bot: BotSession,
    svc: ServiceProtocol,
    stack: ServiceStack,
    to_bot: VecDeque<Frame>,
    to_svc: VecDeque<Frame>,
    /// Frames are lost both ways (a network that swallows them).
    black_hole: bool,
    /// The bot's fake stack holds its answers instead of answering at once.
    bot_stack_stalls: bool,
    stalled: Vec<u64>,
    /// The streams the bot has bound, from its `ApplyOffer` outputs.
    bot_streams: BTreeSet<SourceId>,
    bot_accepted: bool,
    bot_ended: Vec<EndReason>,
    bot_dropped_socket: bool,
    /// The service outputs the test looks at (everything but messages and close frames).
    svc_seen: Vec<ServiceOutput>,
}

impl Pair {
    /// A bot with `registered` pending for [`CALL`] and a service connecting for `presented`
    /// with `call`.
    fn new(
        registered: Uuid,
        presented: Uuid,
        call: Uuid,
        svc_config: ServiceProtocolConfig,
    ) -> Pair {
        let now = Instant::now();
        let mut pending = PendingSessions::new();
        pending
            .register(now, registered, Some(CALL), Duration::from_secs(60))
            .unwrap();
        Pair {
            now,
            pending,
            bot: BotSession::new(now, ProtocolConfig::default()),
            svc: ServiceProtocol::new(now, presented, Some(call), svc_config),
            stack: ServiceStack::default(),
            to_bot: VecDeque::new(),
            to_svc: VecDeque::new(),
            black_hole: false,
            bot_stack_stalls: false,
            stalled: Vec::new(),
            bot_streams: BTreeSet::new(),
            bot_accepted: false,
            bot_ended: Vec::new(),
            bot_dropped_socket: false,
            svc_seen: Vec::new(),
        }
    }

    fn connected() -> Pair {
        let mut p = Pair::new(SESSION, SESSION, CALL, ServiceProtocolConfig::default());
        p.settle();
        assert_eq!(
            p.take_seen(),
            [ServiceOutput::Accepted {
                media_session_id: SESSION
            }]
        );
        assert!(p.bot_accepted);
        p
    }

    /// Moves outputs and frames until neither side has anything left to do.
    fn settle(&mut self) {
        loop {
            let mut busy = false;
            while let Some(out) = self.svc.poll_output() {
                busy = true;
                match out {
                    ServiceOutput::Send(m) => self.to_bot.push_back(Frame::Text(m.to_json())),
                    ServiceOutput::CloseSocket => self.to_bot.push_back(Frame::Close),
                    other => self.svc_seen.push(other),
                }
            }
            while let Some(out) = self.bot.poll_output() {
                busy = true;
                match out {
                    Output::Send(m) => self.to_svc.push_back(Frame::Text(m.to_json())),
                    Output::Accepted {
                        media_session_id,
                        call_id,
                    } => {
                        assert_eq!((media_session_id, call_id), (SESSION, Some(CALL)));
                        self.bot_accepted = true;
                    }
                    Output::ApplyOffer {
                        seq,
                        added,
                        removed,
                        ..
                    } => {
                        for line in removed {
                            self.bot_streams.remove(&line.source);
                        }
                        self.bot_streams.extend(added.iter().map(|l| l.source));
                        if self.bot_stack_stalls {
                            self.stalled.push(seq);
                        } else {
                            self.bot
                                .handle_answer(self.now, seq, format!("answer {seq}"));
                        }
                    }
                    Output::Ended(reason) => self.bot_ended.push(reason),
                    Output::CloseSocket => self.to_svc.push_back(Frame::Close),
                    Output::DropSocket => self.bot_dropped_socket = true,
                }
            }
            if let Some(frame) = self.to_bot.pop_front() {
                busy = true;
                match frame {
                    _ if self.black_hole || self.bot_dropped_socket => {}
                    Frame::Text(t) => self.bot.handle_text(self.now, &t, &mut self.pending),
                    Frame::Close => self.bot.handle_connection_lost(self.now),
                }
            }
            if let Some(frame) = self.to_svc.pop_front() {
                busy = true;
                match frame {
                    _ if self.black_hole => {}
                    Frame::Text(t) => self.svc.handle_text(self.now, &t),
                    Frame::Close => self.svc.handle_closed(self.now),
                }
            }
            if !busy {
                return;
            }
        }
    }

    /// Lets `d` pass, firing each side's timers when they are due.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = [self.bot.poll_timeout(), self.svc.poll_timeout()]
                .into_iter()
                .flatten()
                .filter(|t| *t <= end)
                .min();
            let Some(t) = next else { break };
            self.now = t;
            if self.bot.poll_timeout().is_some_and(|b| b <= t) {
                self.bot.handle_timeout(t);
            }
            if self.svc.poll_timeout().is_some_and(|s| s <= t) {
                self.svc.handle_timeout(t);
            }
            self.settle();
        }
        self.now = end;
    }

    fn take_seen(&mut self) -> Vec<ServiceOutput> {
        std::mem::take(&mut self.svc_seen)
    }

    fn add(&mut self, source: u32) {
        self.svc.add_participant(SourceId(source)).unwrap();
        self.stack.add(SourceId(source));
    }

    fn remove(&mut self, source: u32) {
        self.svc.remove_participant(SourceId(source)).unwrap();
        self.stack.stop(SourceId(source));
    }

    /// Offers the current participants and settles; returns what the service made of it.
    fn negotiate(&mut self) -> ServiceOutput {
        let seq = self.svc.next_offer_seq().unwrap();
        assert_eq!(self.svc.offer(self.now, self.stack.offer()), Ok(seq));
        self.settle();
        let seen = self.take_seen();
        let [outcome] = &seen[..] else {
            panic!("one outcome expected: {seen:?}")
        };
        outcome.clone()
    }

    fn streams(&self) -> Vec<u32> {
        self.bot_streams.iter().map(|s| s.0).collect()
    }
}

fn sources(list: &[u32]) -> Vec<SourceId> {
    list.iter().copied().map(SourceId).collect()
}

#[test]
fn connect_offer_renegotiate_and_the_service_hangs_up() {
    let mut p = Pair::connected();
    assert!(p.svc.is_open());

    p.add(10);
    p.add(20);
    assert_eq!(
        p.negotiate(),
        ServiceOutput::ApplyAnswer {
            seq: 1,
            sdp: "answer 1".into(),
            negotiated: sources(&[10, 20]),
        }
    );
    assert_eq!(p.streams(), [10, 20]);

    // Media connects on both sides; only the bot's media wait was running.
    p.bot.handle_media_connected(p.now);
    p.svc.handle_media_connected(p.now);
    p.settle();
    assert_eq!(p.take_seen(), [ServiceOutput::MediaConnected]);
    assert_eq!((p.bot.poll_timeout(), p.svc.poll_timeout()), (None, None));

    // A participant joins: the renegotiation adds one stream and negotiates only it.
    p.add(30);
    assert_eq!(
        p.negotiate(),
        ServiceOutput::ApplyAnswer {
            seq: 2,
            sdp: "answer 2".into(),
            negotiated: sources(&[30]),
        }
    );
    assert_eq!(p.streams(), [10, 20, 30]);

    // One leaves: its m-line is stopped and the bot unbinds it.
    p.remove(10);
    assert_eq!(
        p.negotiate(),
        ServiceOutput::ApplyAnswer {
            seq: 3,
            sdp: "answer 3".into(),
            negotiated: vec![],
        }
    );
    assert_eq!(p.streams(), [20, 30]);
    assert_eq!(p.bot.current_plan().unwrap().participants.len(), 2);

    // The service hangs up: the bot ends with its reason, the close frame follows, and the
    // bot drops its side at once (it had nothing left to linger for).
    p.svc.hang_up(p.now, "call ended").unwrap();
    p.settle();
    assert_eq!(
        p.bot_ended,
        [EndReason::HangUpByService {
            reason: "call ended".into()
        }]
    );
    assert!(p.bot_dropped_socket);
    assert!(!p.svc.is_open());
    assert_eq!(
        p.svc.next_offer_seq(),
        Err(ServiceProtocolError::Closed),
        "no offer after a hang-up"
    );
}

#[test]
fn the_bot_hangs_up_and_closes_after_its_linger() {
    let mut p = Pair::connected();
    p.add(10);
    assert!(matches!(
        p.negotiate(),
        ServiceOutput::ApplyAnswer { seq: 1, .. }
    ));
    p.bot.hang_up(p.now, "done talking");
    p.settle();
    assert_eq!(
        p.take_seen(),
        [ServiceOutput::HungUp {
            reason: "done talking".into()
        }]
    );
    assert_eq!(
        p.bot_ended,
        [EndReason::HangUpByBot {
            reason: "done talking".into()
        }]
    );
    assert_eq!(p.svc.next_offer_seq(), Err(ServiceProtocolError::Closed));
    // The bot keeps the socket for its linger, then closes it.
    p.advance(ProtocolConfig::default().close_linger);
    assert_eq!(p.take_seen(), [ServiceOutput::Closed]);
    assert!(p.bot_dropped_socket);
}

#[test]
fn refusals_unknown_session_mismatched_call_and_a_bad_offer() {
    // A hello for no pending session, or for the right one with another call: refused, the
    // bot closes, and its registry is untouched.
    for (session, call, code) in [
        (Uuid::from_u128(9), CALL, ErrorCode::UnknownSession),
        (SESSION, Uuid::from_u128(9), ErrorCode::CallMismatch),
    ] {
        let mut p = Pair::new(SESSION, session, call, ServiceProtocolConfig::default());
        p.settle();
        let seen = p.take_seen();
        assert!(
            matches!(
                &seen[..],
                [
                    ServiceOutput::ConnectFailed(ServiceProtocolError::Refused { code: c, .. }),
                    ServiceOutput::Closed
                ] if *c == code
            ),
            "{seen:?}"
        );
        assert!(!p.bot_accepted && p.bot_ended.is_empty());
        assert!(p.pending.is_pending(SESSION));
        assert_eq!(p.svc.next_offer_seq(), Err(ServiceProtocolError::Closed));
    }

    // An offer the bot refuses changes nothing; the corrected one reuses its seq.
    let mut p = Pair::connected();
    p.add(10);
    p.svc
        .offer(p.now, "v=0\r\nm=video 9 RTP/AVP 96\r\n".into())
        .unwrap();
    p.settle();
    let seen = p.take_seen();
    assert!(
        matches!(
            &seen[..],
            [ServiceOutput::OfferFailed {
                seq: 1,
                error: ServiceProtocolError::Refused {
                    code: ErrorCode::BadOffer,
                    ..
                },
                roll_back: true,
            }]
        ),
        "{seen:?}"
    );
    assert!(p.streams().is_empty());
    assert!(matches!(
        p.negotiate(),
        ServiceOutput::ApplyAnswer { seq: 1, ref negotiated, .. } if *negotiated == sources(&[10])
    ));
    assert_eq!(p.streams(), [10]);
}

#[test]
fn timeouts_on_either_side() {
    // Nothing gets through: the service gives up after its reply timeout (the bot gave up
    // after its hello timeout, but its error was lost too).
    let cfg = ServiceProtocolConfig::default();
    let mut p = Pair::new(SESSION, SESSION, CALL, cfg.clone());
    p.black_hole = true;
    p.settle();
    p.advance(cfg.reply_timeout);
    assert_eq!(
        p.take_seen(),
        [ServiceOutput::ConnectFailed(ServiceProtocolError::Timeout)]
    );

    // Accepted, but the service never offers: the bot's first-offer wait runs out, which ends
    // the session on both sides.
    let mut p = Pair::connected();
    p.advance(ProtocolConfig::default().first_offer_timeout);
    assert_eq!(p.bot_ended, [EndReason::Timeout(TimeoutKind::FirstOffer)]);
    let seen = p.take_seen();
    assert!(
        matches!(
            &seen[..],
            [ServiceOutput::BotError {
                code: ErrorCode::Timeout,
                ..
            }]
        ),
        "{seen:?}"
    );
    assert_eq!(p.svc.next_offer_seq(), Err(ServiceProtocolError::Closed));

    // The bot's stack is slow: with a shorter reply timeout the service gives up on the offer
    // first, and the late answer is a stray reply, not taken for a later offer.
    let short = ServiceProtocolConfig {
        reply_timeout: Duration::from_secs(2),
    };
    let mut p = Pair::new(SESSION, SESSION, CALL, short.clone());
    p.settle();
    p.take_seen();
    p.add(10);
    p.bot_stack_stalls = true;
    p.svc.offer(p.now, p.stack.offer()).unwrap();
    p.settle();
    p.advance(short.reply_timeout);
    assert_eq!(
        p.take_seen(),
        [ServiceOutput::OfferFailed {
            seq: 1,
            error: ServiceProtocolError::Timeout,
            roll_back: false,
        }]
    );
    let seq = p.stalled.pop().unwrap();
    p.bot.handle_answer(p.now, seq, "late".into());
    p.settle();
    assert!(matches!(
        &p.take_seen()[..],
        [ServiceOutput::Reply(BotMessage::Answer { seq: 1, .. })]
    ));
    // Had it not answered at all, the bot's own answer wait would have ended the session.
    let mut p = Pair::connected();
    p.add(10);
    p.bot_stack_stalls = true;
    p.svc.offer(p.now, p.stack.offer()).unwrap();
    p.settle();
    p.advance(ProtocolConfig::default().answer_timeout);
    assert_eq!(p.bot_ended, [EndReason::Timeout(TimeoutKind::Answer)]);
    let seen = p.take_seen();
    assert!(
        matches!(
            &seen[..],
            [
                ServiceOutput::BotError {
                    code: ErrorCode::Internal,
                    ..
                },
                ServiceOutput::OfferFailed {
                    seq: 1,
                    roll_back: false,
                    ..
                }
            ]
        ),
        "{seen:?}"
    );
}
