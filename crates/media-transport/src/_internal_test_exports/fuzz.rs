//! Entry points for the fuzz targets in `fuzz/`: the targets are one-line shims, so the checks
//! live here, next to the code they check, and run in `cargo test` too. Not a stable API.

use crate::dtmf::{DtmfDigit, DtmfReceiver, TelephoneEvent, event_train};

/// RTP clock units per 20 ms at the telephone-event clock WebRTC uses (48 kHz).
const UNITS_PER_PACKET: u16 = 960;

/// Most event trains one input describes (keeps the trains' timestamp span small; see
/// [`dtmf_payload`]).
const MAX_TRAINS: usize = 8;

/// Feeds `data` to the RFC 4733 reader and the digit detector three ways and checks:
///
/// - the payload reader: every input reads as an event exactly when it has 4 bytes or more,
///   and a 4-byte payload written back gives the same 4 bytes;
/// - raw packets (timestamps and payloads taken from the bytes): the detector never panics and
///   never reports a packet that follows an event packet with the same timestamp;
/// - event trains as a sender makes them ([`event_train`]), with timestamps moving forward,
///   delivered with losses, duplicates and bounded reordering chosen by the bytes: each train
///   is reported at most once, as its own digit, and exactly once when one of its packets
///   arrives before any packet of a later train.
///
/// # Panics
/// Only when one of those properties is broken (that is the fuzzer's finding).
pub fn dtmf_payload(data: &[u8]) {
    payload_round_trip(data);
    for chunk in data.chunks(4) {
        payload_round_trip(chunk);
    }
    raw_packets(data);
    trains(data);
}

fn payload_round_trip(payload: &[u8]) {
    let parsed = TelephoneEvent::parse(payload);
    assert_eq!(parsed.is_some(), payload.len() >= 4, "{payload:02x?}");
    if let Some(event) = parsed {
        let written = event.to_bytes();
        assert_eq!(TelephoneEvent::parse(&written), Some(event));
        if payload.len() == 4 {
            // RFC 4733's R bit is ignored on reading and sent as zero, so it does not survive.
            let expected = [payload[0], payload[1] & !0x40, payload[2], payload[3]];
            assert_eq!(written, expected, "round trip of {payload:02x?}");
        }
    }
}

/// Packets straight from the bytes: a header byte per packet (low 3 bits: payload length; bit
/// 3: a new 32-bit timestamp follows, else the timestamp moves by the high nibble, so repeats
/// of one timestamp are common), then the payload.
fn raw_packets(data: &[u8]) {
    let mut rx = DtmfReceiver::new();
    let mut rest = data;
    let mut ts = 0u32;
    // The timestamp of the packet before, when it was an event (4 bytes or more).
    let mut previous_event: Option<u32> = None;
    while let Some((&head, tail)) = rest.split_first() {
        rest = tail;
        if head & 0x08 != 0 {
            let Some((bytes, tail)) = rest.split_first_chunk::<4>() else {
                return;
            };
            ts = u32::from_be_bytes(*bytes);
            rest = tail;
        } else {
            ts = ts.wrapping_add(u32::from(head >> 4));
        }
        let len = usize::from(head & 0x07).min(rest.len());
        let (payload, tail) = rest.split_at(len);
        rest = tail;
        if let Some(digit) = rx.push(ts, payload) {
            assert_eq!(Some(digit), DtmfDigit::from_event_code(payload[0]));
            // Whether that packet was taken as a new press or ignored as an old one, a packet
            // of the same press right behind it is no new press.
            assert_ne!(previous_event, Some(ts), "reported twice in a row for {ts}");
        }
        previous_event = (payload.len() >= 4).then_some(ts);
    }
}

/// One key press as a sender emits it: its start timestamp, event code and packets.
struct Train {
    timestamp: u32,
    code: u8,
    payloads: Vec<[u8; 4]>,
}

/// Event trains described by the bytes: a 4-byte base timestamp, a train count, 3 bytes per
/// train (event code, duration, gap before the next press), then one delivery byte per step
/// (low 2 bits: deliver, drop, deliver twice, or deliver the packet up to 7 places ahead
/// first). Packets left when the bytes run out are delivered in order.
fn trains(data: &[u8]) {
    let Some((base, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let Some((&count, rest)) = rest.split_first() else {
        return;
    };
    let count = usize::from(count) % MAX_TRAINS + 1;
    let Some((specs, schedule)) = rest.split_at_checked(count * 3) else {
        return;
    };
    let mut timestamp = u32::from_be_bytes(*base);
    let mut trains = Vec::new();
    for spec in specs.chunks_exact(3) {
        let (code, duration, gap) = (spec[0], spec[1], spec[2]);
        let duration = (u16::from(duration) + 1) * 160;
        // Any code, DTMF or not: the packets are a real train's with the code put in.
        let payloads = event_train(DtmfDigit::Digit(0), duration, UNITS_PER_PACKET)
            .iter()
            .map(|p| {
                TelephoneEvent {
                    event: code,
                    ..p.event
                }
                .to_bytes()
            })
            .collect();
        trains.push(Train {
            timestamp,
            code,
            payloads,
        });
        // The next press starts after this one ends: the sender's clock moves on.
        timestamp = timestamp.wrapping_add(u32::from(duration) + u32::from(gap) * 40 + 1);
    }

    // (train, packet) in sending order.
    let mut pending: Vec<(usize, usize)> = trains
        .iter()
        .enumerate()
        .flat_map(|(t, train)| (0..train.payloads.len()).map(move |p| (t, p)))
        .collect();
    pending.reverse();
    let mut delivered: Vec<(usize, usize)> = Vec::new();
    for &op in schedule {
        let Some(&next) = pending.last() else { break };
        match op & 3 {
            0 => {
                pending.pop();
                delivered.push(next);
            }
            1 => {
                pending.pop();
            }
            2 => delivered.push(next),
            _ => {
                let ahead = usize::from(op >> 2) % 8;
                let at = pending.len() - 1 - ahead.min(pending.len() - 1);
                delivered.push(pending.remove(at));
            }
        }
    }
    delivered.extend(pending.iter().rev());

    let mut rx = DtmfReceiver::new();
    let mut reports = vec![0usize; trains.len()];
    let mut reachable = vec![false; trains.len()];
    let mut newest_train: Option<usize> = None;
    for &(t, p) in &delivered {
        let train = &trains[t];
        // Nothing of a later press has arrived yet: this packet can announce its press.
        if newest_train.is_none_or(|n| n <= t) {
            reachable[t] = true;
        }
        newest_train = newest_train.max(Some(t));
        if let Some(digit) = rx.push(train.timestamp, &train.payloads[p]) {
            assert_eq!(Some(digit), DtmfDigit::from_event_code(train.code));
            reports[t] += 1;
        }
    }
    for (t, train) in trains.iter().enumerate() {
        let dtmf = DtmfDigit::from_event_code(train.code).is_some();
        let expected = usize::from(reachable[t] && dtmf);
        assert_eq!(
            reports[t], expected,
            "train {t} (code {}) reported {} times; deliveries {delivered:?}",
            train.code, reports[t]
        );
    }
}

/// Runs a browser's offer text through what the softphone runs before the WebRTC stack
/// ([`check_offer_size`](crate::browser::check_offer_size)), then, for an offer it lets
/// through, through the stack's own SDP reader, and checks that the accepted offer is within
/// the documented limits: at most [`MAX_SDP_BYTES`](crate::protocol::MAX_SDP_BYTES) bytes and
/// [`MAX_OFFER_LINES`](crate::browser::MAX_OFFER_LINES) lines, and, as the stack reads it,
/// exactly one media section, an audio one.
///
/// # Panics
/// Only when one of those properties is broken (that is the fuzzer's finding).
#[cfg(feature = "runtime")]
pub fn browser_offer(data: &[u8]) {
    use crate::browser::{MAX_OFFER_LINES, check_offer_size};
    use crate::protocol::MAX_SDP_BYTES;

    // The offer arrives as a JSON string, so it is always UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if check_offer_size(text).is_err() {
        return;
    }
    assert!(text.len() <= MAX_SDP_BYTES, "{} bytes accepted", text.len());
    // Counted the way the stack reads lines: up to each LF.
    let lines = text.split_terminator('\n').count();
    assert!(lines <= MAX_OFFER_LINES, "{lines} lines accepted");
    let Ok(offer) = webrtc::peer_connection::RTCSessionDescription::offer(text.to_owned()) else {
        return;
    };
    let Ok(parsed) = offer.unmarshal() else {
        return;
    };
    let media: Vec<&str> = parsed
        .media_descriptions
        .iter()
        .map(|m| m.media_name.media.as_str())
        .collect();
    assert_eq!(media, ["audio"], "the stack reads these media sections");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmf_entry_point_takes_garbage_and_real_trains() {
        dtmf_payload(&[]);
        dtmf_payload(&[1, 2, 3]);
        dtmf_payload(&[0xff; 64]);
        dtmf_payload(&[0x0b, 0x8a, 0x12, 0x34]);
        for digit in "0123456789*#ABCD".chars().filter_map(DtmfDigit::from_char) {
            for p in event_train(digit, 4800, UNITS_PER_PACKET) {
                dtmf_payload(&p.event.to_bytes());
            }
        }
        // Two presses, the second's first packet overtaking the first's end packets.
        dtmf_payload(&[0, 0, 0, 1, 1, 5, 20, 3, 11, 10, 0, 0, 0, 0, 0x0b, 0, 0, 0]);
    }

    #[cfg(feature = "runtime")]
    #[test]
    fn browser_offer_entry_point_takes_offers_and_garbage() {
        let chrome = include_str!("../../testdata/chrome-audio-offer.sdp");
        let firefox = include_str!("../../testdata/firefox-audio-offer.sdp");
        for offer in [chrome, firefox] {
            crate::browser::check_offer_size(offer).expect("a browser's offer passes the check");
            browser_offer(offer.as_bytes());
            browser_offer(offer.replace("\r\n", "\n").as_bytes());
            for cut in (0..offer.len()).step_by(97) {
                browser_offer(&offer.as_bytes()[..cut]);
            }
        }
        browser_offer(b"");
        browser_offer(b"m=audio");
        browser_offer(b"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=video 9 x 96\r\n");
        browser_offer(&[0xff, 0xfe, b'm', b'=']);
    }
}
