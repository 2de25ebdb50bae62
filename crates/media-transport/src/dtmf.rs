//! DTMF as RFC 4733 telephone events: the 4-byte payload, a sender that turns a digit into its
//! packet train, and a receiver that reports each digit once however many packets carry it.
//! Plain data; the WebRTC shell moves the packets.

use std::fmt;

/// One DTMF key (RFC 4733 events 0–15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtmfDigit {
    /// `0`–`9`.
    Digit(u8),
    /// `*`.
    Star,
    /// `#`.
    Pound,
    /// `A`–`D`.
    Letter(char),
}

impl DtmfDigit {
    /// The digit for a key character (`0-9`, `*`, `#`, `A-D`).
    pub fn from_char(c: char) -> Option<DtmfDigit> {
        match c {
            '0'..='9' => Some(DtmfDigit::Digit(c as u8 - b'0')),
            '*' => Some(DtmfDigit::Star),
            '#' => Some(DtmfDigit::Pound),
            'A'..='D' => Some(DtmfDigit::Letter(c)),
            'a'..='d' => Some(DtmfDigit::Letter(c.to_ascii_uppercase())),
            _ => None,
        }
    }

    /// The key character.
    pub fn as_char(self) -> char {
        match self {
            DtmfDigit::Digit(d) => char::from(b'0' + d.min(9)),
            DtmfDigit::Star => '*',
            DtmfDigit::Pound => '#',
            DtmfDigit::Letter(c) => c,
        }
    }

    /// The RFC 4733 event code.
    pub fn event_code(self) -> u8 {
        match self {
            DtmfDigit::Digit(d) => d.min(9),
            DtmfDigit::Star => 10,
            DtmfDigit::Pound => 11,
            DtmfDigit::Letter(c) => 12 + (c as u8).saturating_sub(b'A').min(3),
        }
    }

    /// The digit for an event code, if it is one of the 16 DTMF events.
    pub fn from_event_code(code: u8) -> Option<DtmfDigit> {
        match code {
            0..=9 => Some(DtmfDigit::Digit(code)),
            10 => Some(DtmfDigit::Star),
            11 => Some(DtmfDigit::Pound),
            12..=15 => Some(DtmfDigit::Letter(char::from(b'A' + code - 12))),
            _ => None,
        }
    }
}

impl fmt::Display for DtmfDigit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

/// One RFC 4733 event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code (0–15 for DTMF).
    pub event: u8,
    /// The E bit: this packet ends the event.
    pub end: bool,
    /// Volume in -dBm0 (0–63).
    pub volume: u8,
    /// Duration so far, in RTP clock units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Reads the 4-byte payload; `None` if shorter.
    pub fn parse(payload: &[u8]) -> Option<TelephoneEvent> {
        let [event, flags, d0, d1, ..] = *payload else {
            return None;
        };
        Some(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// The 4-byte payload.
    pub fn to_bytes(self) -> [u8; 4] {
        let flags = (if self.end { 0x80 } else { 0 }) | (self.volume & 0x3f);
        let [d0, d1] = self.duration.to_be_bytes();
        [self.event, flags, d0, d1]
    }
}

/// One packet of a digit's train: payload plus whether it carries the RTP marker bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    /// The payload.
    pub event: TelephoneEvent,
    /// Set on the first packet of the event.
    pub marker: bool,
}

/// The packets that send `digit` for `duration_units` RTP clock units, one per
/// `step_units`: updates while the key is held, then the end packet three times as RFC 4733
/// recommends. All share the event's start timestamp.
pub fn event_train(digit: DtmfDigit, duration_units: u16, step_units: u16) -> Vec<EventPacket> {
    let step = step_units.max(1);
    let mut out = Vec::new();
    let mut d = step.min(duration_units.max(1));
    loop {
        let last = d >= duration_units;
        if last {
            break;
        }
        out.push(EventPacket {
            event: TelephoneEvent {
                event: digit.event_code(),
                end: false,
                volume: 10,
                duration: d,
            },
            marker: out.is_empty(),
        });
        d = d.saturating_add(step);
    }
    for _ in 0..3 {
        out.push(EventPacket {
            event: TelephoneEvent {
                event: digit.event_code(),
                end: true,
                volume: 10,
                duration: duration_units.max(1),
            },
            marker: out.is_empty(),
        });
    }
    out
}

/// Turns received telephone-event packets into digits, once per event.
///
/// An event is identified by its RTP timestamp: every packet of one key press repeats it, and
/// the end packet is sent three times.
#[derive(Debug, Default, Clone)]
pub struct DtmfReceiver {
    last_timestamp: Option<u32>,
}

impl DtmfReceiver {
    /// A receiver that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one packet (its RTP timestamp and payload); returns the digit when this packet is
    /// the first seen of a new event. An event's packets all carry its start timestamp and each
    /// press starts later than the one before, so a packet whose timestamp is not newer than
    /// the last reported one (modulo the 32-bit wrap) is a repeat or a straggler of an earlier
    /// press, reordered behind a later one, and is not reported again.
    pub fn push(&mut self, rtp_timestamp: u32, payload: &[u8]) -> Option<DtmfDigit> {
        let ev = TelephoneEvent::parse(payload)?;
        if let Some(last) = self.last_timestamp {
            // Serial-number comparison: newer when less than half the range ahead.
            let ahead = rtp_timestamp.wrapping_sub(last);
            if ahead == 0 || ahead >= 1 << 31 {
                return None;
            }
        }
        // An event that is not a digit (flash, a tone) is still a later press: stragglers of
        // the presses before it stay unreported.
        self.last_timestamp = Some(rtp_timestamp);
        DtmfDigit::from_event_code(ev.event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for c in "0123456789*#ABCD".chars() {
            let d = DtmfDigit::from_char(c).unwrap();
            assert_eq!(d.as_char(), c);
            assert_eq!(DtmfDigit::from_event_code(d.event_code()), Some(d));
        }
        assert_eq!(DtmfDigit::from_char('x'), None);
        assert_eq!(DtmfDigit::from_event_code(16), None);
        assert_eq!(DtmfDigit::Pound.event_code(), 11);
    }

    #[test]
    fn train_is_reported_once() {
        // 100 ms at 48 kHz in 20 ms steps.
        let train = event_train(DtmfDigit::Digit(7), 4800, 960);
        assert!(train[0].marker);
        assert!(train[1..].iter().all(|p| !p.marker));
        assert_eq!(train.iter().filter(|p| p.event.end).count(), 3);
        assert_eq!(train.last().unwrap().event.duration, 4800);
        let mut rx = DtmfReceiver::new();
        let got: Vec<DtmfDigit> = train
            .iter()
            .filter_map(|p| rx.push(1000, &p.event.to_bytes()))
            .collect();
        assert_eq!(got, [DtmfDigit::Digit(7)]);
        // The next press has a new timestamp.
        assert_eq!(
            rx.push(9000, &train[0].event.to_bytes()),
            Some(DtmfDigit::Digit(7))
        );
        assert_eq!(rx.push(9999, &[1, 2]), None);
        // A straggler of the first press, reordered behind the second, is not a third press.
        assert_eq!(rx.push(1000, &train[2].event.to_bytes()), None);
        // Presses across the timestamp wrap.
        let mut rx = DtmfReceiver::new();
        let bytes = train[0].event.to_bytes();
        assert_eq!(rx.push(u32::MAX - 100, &bytes), Some(DtmfDigit::Digit(7)));
        assert_eq!(rx.push(5000, &bytes), Some(DtmfDigit::Digit(7)));
        assert_eq!(rx.push(u32::MAX - 100, &bytes), None);
    }

    #[test]
    fn payload_layout() {
        let ev = TelephoneEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 0x1234,
        };
        assert_eq!(ev.to_bytes(), [11, 0x8a, 0x12, 0x34]);
        assert_eq!(TelephoneEvent::parse(&ev.to_bytes()), Some(ev));
    }
}
