//! Service-hosted media: the service plays prompts into the call, records a caller's response,
//! reports the keys people press and sends DTMF, each on the bot's request.
//!
//! The core never fetches anything: the HTTP shell downloads the prompts a request names
//! before handing the request over ([`Sim::prompts_to_fetch`], [`Sim::provide_prompt`]), so a
//! prompt's length — and so when its operation completes — is known here. What people hear is
//! told to the media side as [`SimEvent::Played`] (and [`SimEvent::MediaCut`] when the bot
//! cancels), which keeps it in the call's recording.
//!
//! Media operations (prompts and recordings) play one after another, as the service queues
//! them; `cancelMediaProcessing` ends the running one and drops the queue; a tone subscription
//! and DTMF the service sends are outside that queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use graph_signaling::models::{
    ClientContextBody, PlayPromptBody, RecordResponseBody, SendDtmfTonesBody, Tone,
};
use serde_json::{Value, json};

use super::calls::Hosting;
use super::notify::SimEvent;
use super::operations::check_client_context;
use super::refusal::Refusal;
use super::timers::TimerKind;
use super::{Sim, payloads};

/// Sample rate of prompts, recordings and what people hear: Graph plays 16 kHz mono WAV.
pub const SERVICE_AUDIO_RATE: u32 = 16_000;

/// Most prompts one playPrompt plays (Graph's documented limit).
const MAX_PROMPTS: usize = 20;

/// Longest prompt the sim keeps (a bound on memory: 10 minutes at 16 kHz).
pub const MAX_PROMPT_SAMPLES: usize = 16_000 * 600;

/// Length of one DTMF key the service sends, and of the beep before a recording.
const KEY_LENGTH: Duration = Duration::from_millis(100);
const BEEP_LENGTH: Duration = Duration::from_millis(250);

/// A prompt's audio, or why it could not be had (the operation then fails).
pub type PromptAudio = Result<Arc<[i16]>, String>;

/// A media operation running or queued on a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MediaOp {
    id: String,
    /// `playPromptOperation`, `recordOperation` or `sendDtmfTonesOperation`.
    kind: &'static str,
    client_context: Option<String>,
    /// When it completes by itself.
    ends: Instant,
    /// Cancelled by cancelMediaProcessing (DTMF the service sends is not).
    in_queue: bool,
    /// Why it fails when its time comes (a prompt that could not be fetched).
    fails: Option<String>,
    /// The recording a recordOperation fills.
    recording: Option<Recording>,
}

/// What a recordOperation records, and how it ends unless a stop key comes first.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Recording {
    id: String,
    started: Instant,
    /// Keys that end it (`stopTones`); other keys are recorded like speech.
    stop_tones: Vec<Tone>,
    /// How it ends at `MediaOp::ends` if no stop key comes.
    end: RecordEnd,
}

/// How a recorded response ends by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordEnd {
    /// `maxRecordDurationInSeconds` passed.
    MaxDuration,
    /// Nobody spoke within `initialSilenceTimeoutInSeconds`: the operation fails.
    InitialSilence,
    /// Someone spoke, then everyone was silent for `maxSilenceTimeoutInSeconds`.
    MaxSilence,
}

/// The service-hosted media state of one call.
#[derive(Debug, Default)]
pub(super) struct ServiceMedia {
    ops: Vec<MediaOp>,
    /// When the last queued operation ends.
    queue_end: Option<Instant>,
    tones_subscribed: bool,
    tone_sequence: i64,
}

/// A recording the service made, served at its location with its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingInfo {
    /// The call it was made in.
    pub call_id: String,
    /// The bearer token its download needs.
    pub access_token: String,
}

impl Sim {
    /// The prompt URIs a request names that the core has no audio for yet: the shell fetches
    /// them and hands them over with [`Sim::provide_prompt`] before the request.
    pub fn prompts_to_fetch(&self, path: &str, body: &[u8]) -> Vec<String> {
        let uris: Vec<String> = if path.ends_with("/playPrompt") {
            serde_json::from_slice::<PlayPromptBody>(body)
                .map(|b| b.prompts.into_iter().map(|p| p.media_info.uri).collect())
                .unwrap_or_default()
        } else if path.ends_with("/recordResponse") {
            serde_json::from_slice::<RecordResponseBody>(body)
                .map(|b| b.prompts.into_iter().map(|p| p.media_info.uri).collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut out: Vec<String> = uris
            .into_iter()
            .filter(|u| !self.prompts.has(u))
            .take(MAX_PROMPTS)
            .collect();
        out.dedup();
        out
    }

    /// The audio of the prompt at `uri` (16 kHz mono), or why it could not be fetched.
    pub fn provide_prompt(&mut self, uri: &str, audio: PromptAudio) {
        let audio = audio.and_then(|a| {
            if a.len() > MAX_PROMPT_SAMPLES {
                Err(format!("longer than {} s", MAX_PROMPT_SAMPLES / 16_000))
            } else {
                Ok(a)
            }
        });
        self.prompts.insert(uri, audio);
    }

    /// Prompts the service keeps fetched, and their samples (bounded, see `PromptCache`).
    pub fn prompt_cache_size(&self) -> (usize, usize) {
        self.prompts.size()
    }

    /// Recordings still downloadable.
    pub fn recordings_held(&self) -> usize {
        self.recordings.len()
    }

    /// The recordings of an ended call go; the media side is told to drop their audio.
    pub(super) fn discard_recordings(&mut self, call_id: &str) {
        let mut recording_ids: Vec<String> = self
            .recordings
            .iter()
            .filter(|(_, r)| r.call_id == call_id)
            .map(|(id, _)| id.clone())
            .collect();
        if recording_ids.is_empty() {
            return;
        }
        recording_ids.sort();
        for id in &recording_ids {
            self.recordings.remove(id);
        }
        self.events.push_back(SimEvent::RecordingsDiscarded {
            call_id: call_id.to_owned(),
            recording_ids,
        });
    }

    /// A recording the service made, by id: whose it is and the token a download needs.
    pub fn recording(&self, id: &str) -> Option<&RecordingInfo> {
        self.recordings.get(id)
    }

    fn operation_location(&self, call_id: &str, op_id: &str) -> String {
        format!(
            "{}/communications/calls/{call_id}/operations/{op_id}",
            self.config.base_url
        )
    }

    /// `POST …/playPrompt`: the prompts play after whatever is queued; the operation completes
    /// when the last one has played.
    pub(super) fn play_prompt(
        &mut self,
        now: Instant,
        id: &str,
        body: &[u8],
    ) -> Result<(String, Value), Refusal> {
        self.established_call_hosted(id, "playPrompt", Hosting::Service)?;
        let req: PlayPromptBody = serde_json::from_slice(body)
            .map_err(|e| Refusal::bad_request(format!("the playPrompt body is not valid: {e}")))?;
        check_client_context(req.client_context.as_deref())?;
        if req.prompts.is_empty() || req.prompts.len() > MAX_PROMPTS {
            return Err(Refusal::bad_request(format!(
                "playPrompt takes 1 to {MAX_PROMPTS} prompts, got {}",
                req.prompts.len()
            )));
        }
        let uris: Vec<&str> = req
            .prompts
            .iter()
            .map(|p| p.media_info.uri.as_str())
            .collect();
        let op = self.queue_prompts(now, id, &uris, "playPromptOperation", req.client_context);
        Ok(self.running(id, &op))
    }

    /// Queues `uris` (then nothing else) as one operation of `kind`; returns it.
    fn queue_prompts(
        &mut self,
        now: Instant,
        call_id: &str,
        uris: &[&str],
        kind: &'static str,
        client_context: Option<String>,
    ) -> MediaOp {
        let (audio, fails) = self.prompt_audio(uris);
        let start = self.queue_start(call_id, now);
        let ends = start + samples_duration(audio.len());
        if !audio.is_empty() {
            self.events.push_back(SimEvent::Played {
                call_id: call_id.to_owned(),
                at: start,
                audio: audio.into(),
            });
        }
        let op = MediaOp {
            id: self.new_id(),
            kind,
            client_context,
            ends,
            in_queue: true,
            fails,
            recording: None,
        };
        self.enqueue_op(call_id, op.clone());
        op
    }

    /// The prompts' audio back to back, or why one is missing (then nothing plays).
    fn prompt_audio(&mut self, uris: &[&str]) -> (Vec<i16>, Option<String>) {
        let mut audio = Vec::new();
        for uri in uris {
            match self.prompts.get(uri) {
                Some(Ok(a)) => audio.extend_from_slice(&a),
                Some(Err(why)) => return (Vec::new(), Some(format!("prompt {uri}: {why}"))),
                None => return (Vec::new(), Some(format!("prompt {uri} was not fetched"))),
            }
        }
        (audio, None)
    }

    /// When an operation queued now starts: after the queue, or now.
    fn queue_start(&mut self, call_id: &str, now: Instant) -> Instant {
        let media = self.service_media.entry(call_id.to_owned()).or_default();
        media.queue_end.map_or(now, |end| end.max(now))
    }

    fn enqueue_op(&mut self, call_id: &str, op: MediaOp) {
        self.schedule(op.ends, call_id, TimerKind::MediaOpDone(op.id.clone()));
        let media = self.service_media.entry(call_id.to_owned()).or_default();
        if op.in_queue {
            media.queue_end = Some(op.ends);
        }
        media.ops.push(op);
    }

    /// The answer to an action that started a running operation.
    fn running(&self, call_id: &str, op: &MediaOp) -> (String, Value) {
        let mut body = payloads::operation(
            op.kind,
            &op.id,
            "running",
            op.client_context.as_deref(),
            None,
            None,
        );
        if op.kind == "recordOperation" {
            body["recordingLocation"] = Value::Null;
        }
        (self.operation_location(call_id, &op.id), body)
    }

    /// `POST …/recordResponse`: after its prompt and beep, records what the people in the call
    /// say until the longest duration or a stop key.
    pub(super) fn record_response(
        &mut self,
        now: Instant,
        id: &str,
        body: &[u8],
    ) -> Result<(String, Value), Refusal> {
        self.established_call_hosted(id, "recordResponse", Hosting::Service)?;
        let req: RecordResponseBody = serde_json::from_slice(body).map_err(|e| {
            Refusal::bad_request(format!("the recordResponse body is not valid: {e}"))
        })?;
        check_client_context(req.client_context.as_deref())?;
        if req.prompts.len() > 1 {
            return Err(Refusal::bad_request(
                "recordResponse plays at most one prompt",
            ));
        }
        for (name, v) in [
            (
                "maxRecordDurationInSeconds",
                req.max_record_duration_in_seconds,
            ),
            (
                "initialSilenceTimeoutInSeconds",
                req.initial_silence_timeout_in_seconds,
            ),
            (
                "maxSilenceTimeoutInSeconds",
                req.max_silence_timeout_in_seconds,
            ),
        ] {
            if v.is_some_and(|v| !(1..=120).contains(&v)) {
                return Err(Refusal::bad_request(format!(
                    "{name} must be 1 to 120 seconds"
                )));
            }
        }
        let stop_tones = req
            .stop_tones
            .iter()
            .map(|t| stop_tone(t))
            .collect::<Result<Vec<Tone>, Refusal>>()?;
        let uris: Vec<&str> = req
            .prompts
            .iter()
            .map(|p| p.media_info.uri.as_str())
            .collect();
        if req.barge_in_allowed == Some(true) {
            self.cancel_queue(now, id);
        }
        let (mut audio, fails) = self.prompt_audio(&uris);
        if req.play_beep.unwrap_or(true) && fails.is_none() {
            audio.extend(tone_samples(&[1000.0], BEEP_LENGTH));
        }
        let start = self.queue_start(id, now);
        let recording_starts = start + samples_duration(audio.len());
        if !audio.is_empty() {
            self.events.push_back(SimEvent::Played {
                call_id: id.to_owned(),
                at: start,
                audio: audio.into(),
            });
        }
        let seconds = |v: Option<u32>| Duration::from_secs(u64::from(v.unwrap_or(5)));
        let limits = RecordLimits {
            longest: seconds(req.max_record_duration_in_seconds),
            initial_silence: seconds(req.initial_silence_timeout_in_seconds),
            max_silence: seconds(req.max_silence_timeout_in_seconds),
        };
        let (ends, end) = self.record_end(id, recording_starts, limits);
        let recording_id = self.new_id();
        let op = MediaOp {
            id: self.new_id(),
            kind: "recordOperation",
            client_context: req.client_context,
            ends: if fails.is_some() { start } else { ends },
            in_queue: true,
            fails,
            recording: Some(Recording {
                id: recording_id,
                started: recording_starts,
                stop_tones,
                end,
            }),
        };
        self.enqueue_op(id, op.clone());
        Ok(self.running(id, &op))
    }

    /// When and how a recording starting at `from` ends by itself, judged by who talks then:
    /// the people present and unmuted, each by their scenario turns on the call's clock (from
    /// its establishment; without turns a person talks throughout). Decided when the request
    /// comes, for the people in the call then.
    fn record_end(
        &self,
        call_id: &str,
        from: Instant,
        limits: RecordLimits,
    ) -> (Instant, RecordEnd) {
        const STEP: Duration = Duration::from_millis(20);
        let until = from + limits.longest;
        let mut spoke = false;
        let mut silent_since = from;
        let mut at = from;
        while at < until {
            if self.someone_talks(call_id, at) {
                spoke = true;
                silent_since = at + STEP;
            } else if !spoke && at >= from + limits.initial_silence {
                return (from + limits.initial_silence, RecordEnd::InitialSilence);
            } else if spoke && at >= silent_since + limits.max_silence {
                return (silent_since + limits.max_silence, RecordEnd::MaxSilence);
            }
            at += STEP;
        }
        if !spoke && limits.initial_silence <= limits.longest {
            return (from + limits.initial_silence, RecordEnd::InitialSilence);
        }
        (until, RecordEnd::MaxDuration)
    }

    /// Whether anyone in the call (present, not muted) talks at `at`.
    fn someone_talks(&self, call_id: &str, at: Instant) -> bool {
        let Some(call) = self.calls.get(call_id) else {
            return false;
        };
        let clock_ms = call
            .established_at
            .map_or(0, |e| at.saturating_duration_since(e).as_millis() as u64);
        call.members.iter().any(|m| {
            m.state == super::roster::MemberState::Present
                && !m.muted
                && m.user.talks.is_none_or(|t| t.talking_at(clock_ms))
        })
    }

    /// `POST …/cancelMediaProcessing`: the running and queued prompts and recordings fail as
    /// cancelled; what was still to be heard is cut.
    pub(super) fn cancel_media_processing(
        &mut self,
        now: Instant,
        id: &str,
        body: &[u8],
    ) -> Result<(String, Value), Refusal> {
        self.established_call_hosted(id, "cancelMediaProcessing", Hosting::Service)?;
        let req: ClientContextBody = parse_or_default(body)?;
        check_client_context(req.client_context.as_deref())?;
        self.cancel_queue(now, id);
        let op_id = self.new_id();
        let body = payloads::operation(
            "cancelMediaProcessingOperation",
            &op_id,
            "completed",
            req.client_context.as_deref(),
            Some((200, 0, "Action completed successfully.")),
            None,
        );
        Ok((self.operation_location(id, &op_id), body))
    }

    fn cancel_queue(&mut self, now: Instant, call_id: &str) {
        let Some(media) = self.service_media.get_mut(call_id) else {
            return;
        };
        let (cancelled, kept): (Vec<MediaOp>, Vec<MediaOp>) =
            media.ops.drain(..).partition(|op| op.in_queue);
        media.ops = kept;
        media.queue_end = None;
        if cancelled.is_empty() {
            return;
        }
        self.events.push_back(SimEvent::MediaCut {
            call_id: call_id.to_owned(),
            at: now,
        });
        for op in cancelled {
            let mut data = payloads::operation(
                op.kind,
                &op.id,
                "failed",
                op.client_context.as_deref(),
                Some((400, 8508, "Action failed, the operation was cancelled.")),
                None,
            );
            data["completionReason"] = json!("operationCanceled");
            if op.kind == "recordOperation" {
                data["recordingLocation"] = json!("");
                data["recordingAccessToken"] = json!("");
            }
            self.notify(
                now,
                call_id,
                "deleted",
                &format!("/operations/{}", op.id),
                data,
            );
        }
    }

    /// `POST …/subscribeToTone`: from now on each key pressed is posted as `toneInfo`.
    pub(super) fn subscribe_to_tone(&mut self, id: &str, body: &[u8]) -> Result<Value, Refusal> {
        self.established_call_hosted(id, "subscribeToTone", Hosting::Service)?;
        let req: ClientContextBody = parse_or_default(body)?;
        check_client_context(req.client_context.as_deref())?;
        self.service_media
            .entry(id.to_owned())
            .or_default()
            .tones_subscribed = true;
        let op_id = self.new_id();
        Ok(payloads::operation(
            "subscribeToToneOperation",
            &op_id,
            "completed",
            req.client_context.as_deref(),
            None,
            None,
        ))
    }

    /// `POST …/sendDtmfTones`: the service plays the keys into the call; the operation
    /// completes once they are sent.
    pub(super) fn send_dtmf_tones(
        &mut self,
        now: Instant,
        id: &str,
        body: &[u8],
    ) -> Result<(String, Value), Refusal> {
        self.live_call(id)?;
        let req: SendDtmfTonesBody = serde_json::from_slice(body).map_err(|e| {
            Refusal::bad_request(format!("the sendDtmfTones body is not valid: {e}"))
        })?;
        check_client_context(req.client_context.as_deref())?;
        if req.tones.is_empty() || req.tones.iter().any(|t| freqs(t).is_none()) {
            return Err(Refusal::bad_request(
                "sendDtmfTones needs one or more known tones",
            ));
        }
        let gap =
            Duration::from_millis(u64::from(req.delay_between_tones_ms.unwrap_or(0)).min(5_000));
        let mut audio = Vec::new();
        for (i, t) in req.tones.iter().enumerate() {
            if i > 0 {
                audio.extend(std::iter::repeat_n(0, duration_samples(gap)));
            }
            audio.extend(tone_samples(&freqs(t).unwrap_or_default(), KEY_LENGTH));
        }
        let ends = now + samples_duration(audio.len());
        self.events.push_back(SimEvent::Played {
            call_id: id.to_owned(),
            at: now,
            audio: audio.into(),
        });
        let op = MediaOp {
            id: self.new_id(),
            kind: "sendDtmfTonesOperation",
            client_context: req.client_context,
            ends,
            in_queue: false,
            fails: None,
            recording: None,
        };
        self.enqueue_op(id, op.clone());
        Ok(self.running(id, &op))
    }

    /// A media operation's time came: it completes (or fails, for a prompt never fetched).
    pub(super) fn finish_media_op(&mut self, now: Instant, call_id: &str, op_id: &str) {
        let Some(media) = self.service_media.get_mut(call_id) else {
            return;
        };
        let Some(i) = media.ops.iter().position(|op| op.id == op_id) else {
            // Cancelled, or cut short by a stop key.
            return;
        };
        let op = media.ops.remove(i);
        self.complete(now, call_id, op, None);
    }

    /// Posts the outcome of `op`; `stopped_by` is the key that ended a recording.
    fn complete(&mut self, now: Instant, call_id: &str, op: MediaOp, stopped_by: Option<&Tone>) {
        let suffix = format!("/operations/{}", op.id);
        let data = if let Some(why) = &op.fails {
            let mut d = payloads::operation(
                op.kind,
                &op.id,
                "failed",
                op.client_context.as_deref(),
                Some((400, 8520, &format!("Action failed: {why}."))),
                None,
            );
            if op.kind == "recordOperation" {
                d["recordingLocation"] = json!("");
                d["recordingAccessToken"] = json!("");
            }
            d
        } else if let Some(rec) = &op.recording {
            let end = match stopped_by {
                Some(_) => None,
                None => Some(rec.end),
            };
            self.finish_recording(now, call_id, &op, rec, end)
        } else {
            let mut d = payloads::operation(
                op.kind,
                &op.id,
                "completed",
                op.client_context.as_deref(),
                Some((200, 0, "Action completed successfully.")),
                None,
            );
            if op.kind == "sendDtmfTonesOperation" {
                d["completionReason"] = json!("completedSuccessfully");
            }
            d
        };
        self.notify(now, call_id, "deleted", &suffix, data);
    }

    /// The outcome of a recordOperation ending at `now`, by `end` (`None`: a stop key).
    /// Codes: 200/8514 stop key, 200/8515 longest duration, 200/8516 silence after speech,
    /// 400/8517 nobody spoke (the operation fails and nothing is kept). The docs name the
    /// reasons, not all the codes: 8516 and 8517 are this emulator's choice.
    fn finish_recording(
        &mut self,
        now: Instant,
        call_id: &str,
        op: &MediaOp,
        rec: &Recording,
        end: Option<RecordEnd>,
    ) -> Value {
        let (status, result, reason) = match end {
            None => (
                "completed",
                (200, 8514, "Action completed, stop tone detected."),
                "stopToneDetected",
            ),
            Some(RecordEnd::MaxDuration) => (
                "completed",
                (200, 8515, "Action completed, max record duration reached."),
                "maxRecordDurationReached",
            ),
            Some(RecordEnd::MaxSilence) => (
                "completed",
                (200, 8516, "Action completed, max silence timeout reached."),
                "maxSilenceTimeout",
            ),
            Some(RecordEnd::InitialSilence) => (
                "failed",
                (400, 8517, "Action failed, initial silence timeout reached."),
                "initialSilenceTimeout",
            ),
        };
        let mut d = payloads::operation(
            op.kind,
            &op.id,
            status,
            op.client_context.as_deref(),
            Some(result),
            None,
        );
        d["completionReason"] = json!(reason);
        if status == "failed" {
            d["recordingLocation"] = json!("");
            d["recordingAccessToken"] = json!("");
            return d;
        }
        let token = self.new_id();
        self.recordings.insert(
            rec.id.clone(),
            RecordingInfo {
                call_id: call_id.to_owned(),
                access_token: token.clone(),
            },
        );
        let clock_ms = self
            .calls
            .get(call_id)
            .and_then(|c| c.established_at)
            .map_or(0, |e| {
                rec.started.saturating_duration_since(e).as_millis() as u64
            });
        self.events.push_back(SimEvent::Recorded {
            call_id: call_id.to_owned(),
            recording_id: rec.id.clone(),
            from: rec.started,
            to: now.max(rec.started),
            clock_ms,
        });
        d["recordingLocation"] = json!(self.recording_location(&rec.id));
        d["recordingAccessToken"] = json!(token);
        d
    }

    /// Where the recording `id` is served: beside the API, outside `/v1.0` (the real service
    /// serves recordings from a storage host of its own).
    pub fn recording_location(&self, id: &str) -> String {
        let root = self
            .config
            .base_url
            .trim_end_matches('/')
            .trim_end_matches("/v1.0");
        format!("{root}/recordings/{id}")
    }

    /// Member `member` of `call_id` pressed `tone`: with app-hosted media the key goes in band
    /// to the bot; with service-hosted media a subscribed bot is told, and a recording in
    /// progress ends.
    pub(super) fn press(&mut self, now: Instant, call_id: &str, member: usize, tone: Tone) {
        let present = self.calls.get(call_id).is_some_and(|c| {
            c.members
                .get(member)
                .is_some_and(|m| m.state == super::roster::MemberState::Present)
        });
        if !present {
            return;
        }
        let app_hosted = self.calls.get(call_id).and_then(|c| {
            let source = c.members.get(member)?.source_id;
            c.blob.is_some().then_some(source)
        });
        if let Some(source_id) = app_hosted {
            // The bot hosts the media: the key travels in band, on the person's stream
            // (RFC 4733), as a phone's would.
            self.events.push_back(SimEvent::Dtmf {
                call_id: call_id.to_owned(),
                source_id,
                tone,
            });
            return;
        }
        let Some(media) = self.service_media.get_mut(call_id) else {
            return;
        };
        if media.tones_subscribed {
            media.tone_sequence += 1;
            let data = json!({
                "@odata.type": "#microsoft.graph.call",
                "state": "established",
                "toneInfo": {
                    "@odata.type": "#microsoft.graph.toneInfo",
                    "sequenceId": media.tone_sequence,
                    "tone": tone.as_str(),
                },
            });
            self.post_call_update(now, call_id, data);
        }
        // One of its stop keys ends the recording in progress; other keys are just sound.
        let Some(media) = self.service_media.get_mut(call_id) else {
            return;
        };
        let recording = media.ops.iter().position(|op| {
            op.recording
                .as_ref()
                .is_some_and(|r| r.started <= now && now < op.ends && r.stop_tones.contains(&tone))
        });
        if let Some(i) = recording {
            let op = media.ops.remove(i);
            media.queue_end = media.queue_end.map(|end| end.min(now));
            self.complete(now, call_id, op, Some(&tone));
        }
    }

    /// Forgets the media state of a call that ended.
    pub(super) fn drop_service_media(&mut self, call_id: &str) {
        self.service_media.remove(call_id);
    }
}

/// The longest a recording runs, and the silences that end it.
#[derive(Debug, Clone, Copy)]
struct RecordLimits {
    longest: Duration,
    initial_silence: Duration,
    max_silence: Duration,
}

/// A `stopTones` entry: one keypad key (`0`-`9`, `*`, `#`, `A`-`D`).
fn stop_tone(t: &str) -> Result<Tone, Refusal> {
    let mut chars = t.chars();
    match (chars.next().and_then(Tone::from_char), chars.next()) {
        (Some(tone), None) if tone != Tone::Flash => Ok(tone),
        _ => Err(Refusal::bad_request(format!(
            "stop tone {:?} is not a keypad key",
            t.chars().take(8).collect::<String>()
        ))),
    }
}

/// A body that may be empty (`{}` or nothing) or a `clientContext` object.
fn parse_or_default(body: &[u8]) -> Result<ClientContextBody, Refusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ClientContextBody::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| Refusal::bad_request(format!("the request body is not valid: {e}")))
}

fn samples_duration(samples: usize) -> Duration {
    Duration::from_micros(samples as u64 * 1_000_000 / u64::from(SERVICE_AUDIO_RATE))
}

fn duration_samples(d: Duration) -> usize {
    (d.as_micros() * u128::from(SERVICE_AUDIO_RATE) / 1_000_000) as usize
}

/// The row and column frequencies of a DTMF key; a flash is a single low tone.
fn freqs(tone: &Tone) -> Option<Vec<f32>> {
    let c = tone.as_char()?;
    if c == '!' {
        return Some(vec![400.0]);
    }
    let keys = ["123A", "456B", "789C", "*0#D"];
    let row = keys.iter().position(|r| r.contains(c))?;
    let col = keys[row].find(c)?;
    let rows = [697.0, 770.0, 852.0, 941.0];
    let cols = [1209.0, 1336.0, 1477.0, 1633.0];
    Some(vec![rows[row], cols[col]])
}

/// `freqs` summed at −12 dBFS each, for `length`.
fn tone_samples(freqs: &[f32], length: Duration) -> Vec<i16> {
    let n = duration_samples(length);
    let amp = 8_000.0 / freqs.len().max(1) as f32;
    (0..n)
        .map(|i| {
            let t = i as f32 / SERVICE_AUDIO_RATE as f32;
            let v: f32 = freqs
                .iter()
                .map(|f| (2.0 * std::f32::consts::PI * f * t).sin() * amp)
                .sum();
            v as i16
        })
        .collect()
}
