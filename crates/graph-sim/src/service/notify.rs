//! What the service tells the outside: notifications to the bot's callback, queued through the
//! signaling fault plan (dropped, delayed, held back or duplicated), and events for the media
//! side and observers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use graph_signaling::models::CallState;
use media_session::BlobConfig;
use serde_json::Value;

use super::{Sim, payloads};
use crate::scenario::{Turns, Voice};

/// How long the reorder fault holds a notification back.
const HOLD_BACK: Duration = Duration::from_millis(150);

/// A notification the service posts to a bot.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    /// The call it is about.
    pub call_id: String,
    /// Where to post it.
    pub callback_uri: String,
    /// The `commsNotifications` body.
    pub body: Value,
    /// The same notification in the legacy format, to post first (the `legacy_first` fault):
    /// `body` follows once the bot answers `204` (see [`crate::faults::LegacyAnswer`]).
    pub legacy: Option<Value>,
}

impl Outbound {
    /// What to post first: the legacy form when there is one, else the Graph body.
    pub fn first_body(&self) -> &Value {
        self.legacy.as_ref().unwrap_or(&self.body)
    }
}

/// What the media side and observers need to know.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SimEvent {
    /// A call with app-hosted media is established: connect to the blob's mpUri.
    MediaRequested {
        /// The call.
        call_id: String,
        /// The parsed blob.
        blob: Box<BlobConfig>,
    },
    /// A simulated user's audio starts: they are in the call (not in the lobby).
    SourceAdded {
        /// The call.
        call_id: String,
        /// Display name.
        name: String,
        /// Their `sourceId` in the roster.
        source_id: u32,
        /// What they say.
        voice: Voice,
        /// When they talk (absent: all the time).
        talks: Option<Turns>,
    },
    /// A simulated user left.
    SourceRemoved {
        /// The call.
        call_id: String,
        /// Their `sourceId`.
        source_id: u32,
    },
    /// A call changed state.
    StateChanged {
        /// The call.
        call_id: String,
        /// The new state.
        state: CallState,
    },
    /// Service-hosted media: the service plays `audio` (16 kHz mono) into the call from `at`;
    /// everyone in it hears it.
    Played {
        /// The call.
        call_id: String,
        /// When it starts.
        at: Instant,
        /// The samples.
        audio: Arc<[i16]>,
    },
    /// Service-hosted media: what was still to be played from `at` on is cancelled.
    MediaCut {
        /// The call.
        call_id: String,
        /// From when.
        at: Instant,
    },
    /// Service-hosted media: a recorded response spans `from..to`; the media side renders what
    /// the call's people said then, to be served as recording `recording_id`.
    Recorded {
        /// The call.
        call_id: String,
        /// The recording.
        recording_id: String,
        /// Start.
        from: Instant,
        /// End.
        to: Instant,
        /// Where `from` is on the call's clock (ms since it was established), which the
        /// people's talk turns follow.
        clock_ms: u64,
    },
    /// Service-hosted media: the service discarded these recordings (some time after their
    /// call ended); they are no longer served.
    RecordingsDiscarded {
        /// The call they were made in.
        call_id: String,
        /// The recordings.
        recording_ids: Vec<String>,
    },
    /// A person pressed a key in a call with app-hosted media: send it in band on their
    /// stream.
    Dtmf {
        /// The call.
        call_id: String,
        /// Their `sourceId`.
        source_id: u32,
        /// The key.
        tone: graph_signaling::models::Tone,
    },
    /// A call ended.
    Ended {
        /// The call.
        call_id: String,
        /// `resultInfo.code`.
        code: i64,
        /// `resultInfo.subcode`.
        subcode: i64,
        /// How it ended, and so who ended it.
        end: super::CallEnd,
    },
}

/// A notification waiting for its due time.
#[derive(Debug)]
pub(super) struct QueuedNotification {
    pub(super) due: Instant,
    order: u64,
    outbound: Outbound,
}

impl Sim {
    /// The next notification due at or before `now`, in posting order.
    #[must_use]
    pub fn poll_notification(&mut self, now: Instant) -> Option<Outbound> {
        let (index, _) = self
            .notifications
            .iter()
            .enumerate()
            .filter(|(_, n)| n.due <= now)
            .min_by_key(|(_, n)| (n.due, n.order))?;
        Some(self.notifications.remove(index).outbound)
    }

    /// The next event for the media side and observers.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<SimEvent> {
        self.events.pop_front()
    }

    /// Tells the bot the call is now in `state`.
    pub(super) fn notify_state(&mut self, now: Instant, call_id: &str, state: &CallState) {
        let data = payloads::call_state(call_id, state, None);
        self.post_call_update(now, call_id, data);
    }

    /// Posts an update of the call resource itself.
    pub(super) fn post_call_update(&mut self, now: Instant, call_id: &str, data: Value) {
        self.notify(now, call_id, "updated", "", data);
    }

    /// Posts a notification about `/calls/{call_id}{suffix}` to the call's callback.
    pub(super) fn notify(
        &mut self,
        now: Instant,
        call_id: &str,
        change_type: &str,
        suffix: &str,
        data: Value,
    ) {
        let Some(callback) = self.calls.get(call_id).map(|c| c.callback_uri.clone()) else {
            return;
        };
        if suffix.starts_with("/operations/") {
            self.remember_operation(call_id, &data);
        }
        let path = format!("/calls/{call_id}{suffix}");
        let body = payloads::notifications(change_type, &path, &callback, data);
        self.post(now, call_id, body);
    }

    /// Queues a notification through the signaling fault plan.
    pub(super) fn post(&mut self, now: Instant, call_id: &str, body: Value) {
        let legacy_first = self.faults.faults().legacy_first;
        let app_id = self.config.app_id.clone();
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let first = !std::mem::replace(&mut call.notified, true);
        let legacy = (legacy_first && first).then(|| payloads::legacy(call_id, &app_id, &body));
        let outbound = Outbound {
            call_id: call_id.to_owned(),
            callback_uri: call.callback_uri.clone(),
            body,
            legacy,
        };
        let fate = self.faults.notification();
        if !fate.deliver {
            return;
        }
        // A held-back notification is delayed past the ones that follow it; if none follows
        // soon, it still arrives, late.
        let due = now
            + fate.delay
            + if fate.hold_back {
                HOLD_BACK
            } else {
                Duration::ZERO
            };
        let copies = if fate.duplicate { 2 } else { 1 };
        for _ in 0..copies {
            self.enqueue(due, outbound.clone());
        }
    }

    fn enqueue(&mut self, due: Instant, outbound: Outbound) {
        self.order += 1;
        self.notifications.push(QueuedNotification {
            due,
            order: self.order,
            outbound,
        });
    }
}
