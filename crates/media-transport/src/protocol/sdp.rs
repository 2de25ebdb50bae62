//! Reading the stream plan out of an offer's SDP: which m-line carries which participant
//! (`sourceId`), and which one the bot sends on.
//!
//! Labelling rule (see `docs/mpuri-protocol.md`): every participant m-line is `a=sendonly` (the
//! service sends toward the bot) and carries `a=msid:<sourceId> <trackId>`, the sourceId as the
//! roster's `mediaStreams[].sourceId` writes it (decimal). Exactly one active m-line is
//! `a=recvonly`: the bot sends its audio source context there. A stopped m-line (port 0) or an
//! `a=inactive` one carries nothing. This reader only looks at what the plan needs; the WebRTC
//! stack parses the full SDP afterwards.

use std::collections::HashSet;

use media_session::{SourceId, StreamDirection};

use super::messages::MAX_SDP_BYTES;

/// Most m-lines one offer may hold (participants plus the bot's line, stopped ones included).
pub const MAX_MEDIA_SECTIONS: usize = 128;

/// Most lines one SDP may hold.
pub const MAX_SDP_LINES: usize = 4096;

/// Longest `a=mid` value accepted (RFC 8843 allows 16 characters for RTP; we allow more).
pub const MAX_MID_LEN: usize = 32;

/// One m-line on which a participant's audio comes to the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantLine {
    /// The m-line's `a=mid`.
    pub mid: String,
    /// The participant's source id from `a=msid`.
    pub source: SourceId,
    /// Opus payload type on this line.
    pub opus_pt: u8,
    /// `telephone-event/48000` payload type, when offered.
    pub dtmf_pt: Option<u8>,
}

/// What an offer asks for, read from its SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferPlan {
    /// The m-line on which the bot sends.
    pub bot_line: BotLine,
    /// Active participant lines, in SDP order.
    pub participants: Vec<ParticipantLine>,
    /// Mids of stopped or inactive m-lines.
    pub stopped_mids: Vec<String>,
}

/// The m-line on which the bot sends its audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotLine {
    /// Its `a=mid`.
    pub mid: String,
    /// Opus payload type on it.
    pub opus_pt: u8,
    /// `telephone-event/48000` payload type, when offered.
    pub dtmf_pt: Option<u8>,
}

impl OfferPlan {
    /// The participant line for `source`, if active.
    pub fn participant(&self, source: SourceId) -> Option<&ParticipantLine> {
        self.participants.iter().find(|p| p.source == source)
    }

    /// The participant line with `mid`, if active.
    pub fn by_mid(&self, mid: &str) -> Option<&ParticipantLine> {
        self.participants.iter().find(|p| p.mid == mid)
    }
}

/// Why an offer's SDP was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// Longer than [`MAX_SDP_BYTES`] or [`MAX_SDP_LINES`] lines.
    #[error("sdp exceeds {MAX_SDP_BYTES} bytes or {MAX_SDP_LINES} lines")]
    TooLarge,
    /// Does not start with `v=0`.
    #[error("sdp must start with v=0")]
    NotSdp,
    /// More than [`MAX_MEDIA_SECTIONS`] m-lines.
    #[error("more than {MAX_MEDIA_SECTIONS} m-lines")]
    TooManySections,
    /// An m-line that is not `audio` (mediabot carries voice only).
    #[error("m-line {index} is {kind:?}; only audio is carried")]
    NotAudio {
        /// Zero-based index of the m-line.
        index: usize,
        /// Its media kind (shortened).
        kind: String,
    },
    /// A malformed `m=` line.
    #[error("m-line {index} is malformed")]
    BadMediaLine {
        /// Zero-based index of the m-line.
        index: usize,
    },
    /// An m-line without `a=mid`, or with an overlong one, or a mid used twice.
    #[error("m-line {index} has a missing, overlong or duplicate a=mid")]
    BadMid {
        /// Zero-based index of the m-line.
        index: usize,
    },
    /// An active m-line without Opus.
    #[error("m-line {mid} does not offer opus/48000/2")]
    NoOpus {
        /// Its mid.
        mid: String,
    },
    /// A participant m-line whose `a=msid` is missing or not a decimal sourceId.
    #[error("m-line {mid} must carry a=msid:<sourceId> <trackId> with a decimal sourceId")]
    BadLabel {
        /// Its mid.
        mid: String,
    },
    /// Two active m-lines labelled with one sourceId.
    #[error("sourceId {source_id} labels more than one active m-line")]
    DuplicateSource {
        /// The source id.
        source_id: SourceId,
    },
    /// An active m-line that is `sendrecv`: a participant line must be `sendonly`, the bot's
    /// line `recvonly`.
    #[error(
        "m-line {mid} is {direction}; participant lines are sendonly and the bot's line recvonly"
    )]
    BadDirection {
        /// Its mid.
        mid: String,
        /// Its direction, from the service's point of view.
        direction: StreamDirection,
    },
    /// No active `recvonly` m-line for the bot's audio, or more than one.
    #[error(
        "the offer must have exactly one active recvonly m-line for the bot's audio (found {found})"
    )]
    BotLine {
        /// How many were found.
        found: usize,
    },
}

#[derive(Default)]
struct Section {
    port_zero: bool,
    mid: Option<String>,
    direction: Option<StreamDirection>,
    msid_stream: Option<String>,
    opus_pt: Option<u8>,
    dtmf_pt: Option<u8>,
}

fn parse_rtpmap(value: &str) -> Option<(u8, String)> {
    let (pt, codec) = value.split_once(' ')?;
    let pt: u8 = pt.parse().ok()?;
    if pt > 127 {
        return None;
    }
    Some((pt, codec.trim().to_ascii_lowercase()))
}

/// Reads the stream plan of an offer. Never panics on any input.
pub fn read_offer(sdp: &str) -> Result<OfferPlan, SdpError> {
    if sdp.len() > MAX_SDP_BYTES {
        return Err(SdpError::TooLarge);
    }
    let mut lines = sdp.lines();
    if lines.next().map(str::trim_end) != Some("v=0") {
        return Err(SdpError::NotSdp);
    }
    let mut sections: Vec<Section> = Vec::new();
    for (n, line) in lines.enumerate() {
        if n >= MAX_SDP_LINES {
            return Err(SdpError::TooLarge);
        }
        let line = line.trim_end();
        if let Some(media) = line.strip_prefix("m=") {
            let index = sections.len();
            if index >= MAX_MEDIA_SECTIONS {
                return Err(SdpError::TooManySections);
            }
            let mut parts = media.split(' ');
            let kind = parts.next().unwrap_or("");
            if kind != "audio" {
                return Err(SdpError::NotAudio {
                    index,
                    kind: kind.chars().take(16).collect(),
                });
            }
            let port = parts
                .next()
                .and_then(|p| p.split('/').next())
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or(SdpError::BadMediaLine { index })?;
            sections.push(Section {
                port_zero: port == 0,
                ..Section::default()
            });
            continue;
        }
        let Some(section) = sections.last_mut() else {
            continue; // session-level lines carry nothing the plan needs
        };
        let Some(attr) = line.strip_prefix("a=") else {
            continue;
        };
        let (key, value) = attr.split_once(':').unwrap_or((attr, ""));
        match key {
            "mid" => section.mid = Some(value.to_owned()),
            "sendonly" | "recvonly" | "sendrecv" | "inactive" => {
                section.direction = key.parse().ok();
            }
            "msid" => {
                section.msid_stream = value.split(' ').next().map(str::to_owned);
            }
            "rtpmap" => {
                if let Some((pt, codec)) = parse_rtpmap(value) {
                    if codec == "opus/48000/2" && section.opus_pt.is_none() {
                        section.opus_pt = Some(pt);
                    } else if codec == "telephone-event/48000" && section.dtmf_pt.is_none() {
                        section.dtmf_pt = Some(pt);
                    }
                }
            }
            _ => {}
        }
    }

    let mut seen_mids = HashSet::new();
    let mut seen_sources = HashSet::new();
    let mut participants = Vec::new();
    let mut bot_lines = Vec::new();
    let mut stopped_mids = Vec::new();
    for (index, s) in sections.into_iter().enumerate() {
        let mid = match s.mid {
            Some(m) if !m.is_empty() && m.len() <= MAX_MID_LEN && seen_mids.insert(m.clone()) => m,
            _ => return Err(SdpError::BadMid { index }),
        };
        // SDP's default direction is sendrecv.
        let direction = s.direction.unwrap_or(StreamDirection::SendReceive);
        if s.port_zero || direction == StreamDirection::Inactive {
            stopped_mids.push(mid);
            continue;
        }
        let Some(opus_pt) = s.opus_pt else {
            return Err(SdpError::NoOpus { mid });
        };
        match direction {
            // The service sends: a participant's audio toward the bot.
            StreamDirection::SendOnly => {
                let source = s
                    .msid_stream
                    .as_deref()
                    .and_then(|v| v.parse::<SourceId>().ok())
                    .ok_or_else(|| SdpError::BadLabel { mid: mid.clone() })?;
                if !seen_sources.insert(source) {
                    return Err(SdpError::DuplicateSource { source_id: source });
                }
                participants.push(ParticipantLine {
                    mid,
                    source,
                    opus_pt,
                    dtmf_pt: s.dtmf_pt,
                });
            }
            StreamDirection::ReceiveOnly => bot_lines.push(BotLine {
                mid,
                opus_pt,
                dtmf_pt: s.dtmf_pt,
            }),
            other => {
                return Err(SdpError::BadDirection {
                    mid,
                    direction: other,
                });
            }
        }
    }
    if bot_lines.len() != 1 {
        return Err(SdpError::BotLine {
            found: bot_lines.len(),
        });
    }
    let bot_line = bot_lines.remove(0);
    Ok(OfferPlan {
        bot_line,
        participants,
        stopped_mids,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal offer: the bot's line first, then one sendonly line per source; `stopped` lists
    /// sources whose lines are stopped (port 0).
    pub(crate) fn offer(sources: &[u32], stopped: &[u32]) -> String {
        let mut s = String::from("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
        s.push_str(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111 126\r\na=mid:0\r\na=recvonly\r\n\
             a=rtpmap:111 opus/48000/2\r\na=rtpmap:126 telephone-event/48000\r\n",
        );
        for (i, src) in sources.iter().chain(stopped).enumerate() {
            let port = if stopped.contains(src) { 0 } else { 9 };
            s.push_str(&format!(
                "m=audio {port} UDP/TLS/RTP/SAVPF 111 126\r\na=mid:{}\r\na=sendonly\r\n\
                 a=msid:{src} track-{src}\r\na=rtpmap:111 opus/48000/2\r\n\
                 a=rtpmap:126 telephone-event/48000\r\n",
                i + 1
            ));
        }
        s
    }

    #[test]
    fn reads_labels_and_the_bot_line() {
        let plan = read_offer(&offer(&[10, 20], &[30])).unwrap();
        assert_eq!(plan.bot_line.mid, "0");
        assert_eq!(plan.bot_line.dtmf_pt, Some(126));
        let sources: Vec<u32> = plan.participants.iter().map(|p| p.source.0).collect();
        assert_eq!(sources, [10, 20]);
        assert_eq!(plan.participant(SourceId(20)).unwrap().mid, "2");
        assert_eq!(plan.stopped_mids, ["3"]);
    }

    #[test]
    fn refuses_broken_plans() {
        let base = offer(&[10], &[]);
        type Check = fn(&SdpError) -> bool;
        let cases: Vec<(String, Check)> = vec![
            ("".into(), |e| matches!(e, SdpError::NotSdp)),
            (
                base.replace("a=msid:10 track-10", "a=msid:alice track"),
                |e| matches!(e, SdpError::BadLabel { .. }),
            ),
            (base.replace("a=mid:1", "a=mid:0"), |e| {
                matches!(e, SdpError::BadMid { .. })
            }),
            (base.replace("a=recvonly", "a=sendrecv"), |e| {
                matches!(e, SdpError::BadDirection { .. })
            }),
            (base.replace("a=recvonly", "a=inactive"), |e| {
                matches!(e, SdpError::BotLine { found: 0 })
            }),
            (base.replace("opus/48000/2", "PCMU/8000"), |e| {
                matches!(e, SdpError::NoOpus { .. })
            }),
            (offer(&[10, 10], &[]), |e| {
                matches!(e, SdpError::DuplicateSource { .. })
            }),
            (format!("{base}m=video 9 RTP/AVP 96\r\n"), |e| {
                matches!(e, SdpError::NotAudio { .. })
            }),
            (format!("{base}m=audio x\r\n"), |e| {
                matches!(e, SdpError::BadMediaLine { .. })
            }),
        ];
        for (sdp, want) in cases {
            let e = read_offer(&sdp).unwrap_err();
            assert!(want(&e), "{e:?} for\n{sdp}");
        }
    }
}
