//! Any bytes into the mpUri exchange: both message parsers, the offer's SDP reader, and both
//! sides' state machines: the bot's fed the text after a valid hello, the service's as the
//! bot's first reply and as a reply while an offer is out. Nothing may panic, and what a
//! parser accepts must survive a write and re-read unchanged.
//!
//! The bytes are also read as a script of what the bot's WebRTC stack and clock report to its
//! session (connected, interrupted, failed, time passing, the text again): the session must
//! end at most once, and connected media is never left marked interrupted.
#![no_main]

use std::time::{Duration, Instant};

use media_transport::protocol::{
    BotMessage, BotSession, Output, PendingSessions, ProtocolConfig, ServiceMessage,
    ServiceProtocol, ServiceProtocolConfig, read_offer,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(msg) = ServiceMessage::parse(text) {
        assert_eq!(ServiceMessage::parse(&msg.to_json()).ok(), Some(msg));
    }
    if let Ok(msg) = BotMessage::parse(text) {
        assert_eq!(BotMessage::parse(&msg.to_json()).ok(), Some(msg));
    }
    let _ = read_offer(text);

    // A claimed session receiving the input, as an offer body and as a raw message.
    let now = Instant::now();
    let id = uuid::Uuid::from_u128(1);
    let (mut session, mut pending) = greeted_session(now, id);
    let offer = ServiceMessage::Offer {
        seq: 1,
        sdp: text.to_owned(),
    };
    session.handle_text(now, &offer.to_json(), &mut pending);
    session.handle_answer(now, 1, String::new());
    session.handle_text(now, text, &mut pending);
    while session.poll_output().is_some() {}
    media_script(data, text, now, id);

    let mut first = ServiceProtocol::new(now, id, None, ServiceProtocolConfig::default());
    first.handle_text(now, text);
    while first.poll_output().is_some() {}
    let mut service = ServiceProtocol::new(now, id, None, ServiceProtocolConfig::default());
    service.handle_text(
        now,
        &BotMessage::Accepted {
            media_session_id: id,
        }
        .to_json(),
    );
    let _ = service.add_participant(media_session::SourceId(10));
    let _ = service.offer(now, String::new());
    service.handle_text(now, text);
    service.handle_timeout(now + Duration::from_secs(3600));
    while service.poll_output().is_some() {}
});

/// Drives a bot session that received a hello with media events taken from `data`, one byte
/// each (the low three bits pick the event, the rest how far the clock moves first).
fn media_script(data: &[u8], text: &str, start: Instant, id: uuid::Uuid) {
    let mut now = start;
    let (mut session, mut pending) = greeted_session(now, id);
    let mut ended = 0;
    for &b in data.iter().take(256) {
        now += Duration::from_millis(u64::from(b >> 3) * 250);
        match b & 7 {
            0 | 1 => session.handle_media_connected(now),
            2 | 3 => session.handle_media_interrupted(now),
            4 => session.handle_media_failed(now, text),
            5 => session.handle_text(now, text, &mut pending),
            6 => {
                if let Some(t) = session.poll_timeout() {
                    now = now.max(t);
                }
                session.handle_timeout(now);
            }
            _ => session.hang_up(now, text),
        }
        if b & 7 < 2 && !session.is_closed() {
            assert!(
                !session.media_interrupted(),
                "connected media still interrupted"
            );
        }
        while let Some(out) = session.poll_output() {
            if matches!(out, Output::Ended(_)) {
                ended += 1;
            }
        }
        assert!(ended <= 1, "the session ended {ended} times");
    }
}

/// A bot session for a registered media session `id` that has received the service's hello.
fn greeted_session(now: Instant, id: uuid::Uuid) -> (BotSession, PendingSessions) {
    let mut pending = PendingSessions::new();
    let _ = pending.register(now, id, None, Duration::from_secs(60));
    let mut session = BotSession::new(now, ProtocolConfig::default());
    let hello = ServiceMessage::Hello {
        version: 1,
        media_session_id: id,
        call_id: None,
    };
    session.handle_text(now, &hello.to_json(), &mut pending);
    (session, pending)
}
