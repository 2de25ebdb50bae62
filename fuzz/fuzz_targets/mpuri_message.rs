//! Any bytes into the mpUri exchange: both message parsers, the offer's SDP reader, and a
//! connection's state machine fed the text after a valid hello. Nothing may panic, and what a
//! parser accepts must survive a write and re-read unchanged.
#![no_main]

use std::time::{Duration, Instant};

use media_transport::protocol::{
    BotMessage, BotSession, PendingSessions, ProtocolConfig, ServiceMessage, read_offer,
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
    let mut pending = PendingSessions::new();
    let _ = pending.register(now, id, None, Duration::from_secs(60));
    let mut session = BotSession::new(now, ProtocolConfig::default());
    let hello = ServiceMessage::Hello {
        version: 1,
        media_session_id: id,
        call_id: None,
    };
    session.handle_text(now, &hello.to_json(), &mut pending);
    let offer = ServiceMessage::Offer {
        seq: 1,
        sdp: text.to_owned(),
    };
    session.handle_text(now, &offer.to_json(), &mut pending);
    session.handle_answer(now, 1, String::new());
    session.handle_text(now, text, &mut pending);
    while session.poll_output().is_some() {}
});
