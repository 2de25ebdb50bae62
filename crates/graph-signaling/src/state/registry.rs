//! Every call this process owns, keyed by call id (sans-IO).

use std::collections::HashMap;
use std::time::Instant;

use super::call::{CallEvent, CallStateMachine};
use crate::models::{Call, CommsNotifications};

/// The calls owned by this process. Feeds each notification to its call's state machine and
/// collects the events, tagged with the call id.
#[derive(Debug, Default)]
pub struct CallRegistry {
    calls: HashMap<String, CallStateMachine>,
    bot_app_id: Option<String>,
}

impl CallRegistry {
    /// An empty registry; `bot_app_id` recognises the bot's own roster entry.
    pub fn new(bot_app_id: Option<String>) -> Self {
        CallRegistry {
            calls: HashMap::new(),
            bot_app_id,
        }
    }

    /// Starts tracking a call from its create/get response.
    pub fn track(&mut self, call: &Call, now: Instant) -> Option<&mut CallStateMachine> {
        let id = call.id.as_deref()?.to_owned();
        let app = self.bot_app_id.clone();
        let m = self
            .calls
            .entry(id)
            .or_insert_with(|| CallStateMachine::from_call(call, app, now));
        Some(m)
    }

    /// A call's state.
    pub fn get(&self, call_id: &str) -> Option<&CallStateMachine> {
        self.calls.get(call_id)
    }

    /// Number of calls tracked.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// True when no call is tracked.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Forgets terminated calls.
    pub fn prune_terminated(&mut self) {
        self.calls.retain(|_, c| !c.is_terminated());
    }

    /// Applies a batch; appends `(call id, event)` pairs to `out`. Notifications naming no call
    /// are ignored; a call seen for the first time (an incoming call) starts being tracked.
    pub fn handle_batch(
        &mut self,
        batch: &CommsNotifications,
        now: Instant,
        out: &mut Vec<(String, CallEvent)>,
    ) {
        for n in &batch.value {
            let Some(id) = n.call_id() else { continue };
            let app = self.bot_app_id.clone();
            let call = self
                .calls
                .entry(id.to_owned())
                .or_insert_with(|| CallStateMachine::new(id, app));
            call.handle_notification(n, now);
            while let Some(e) = call.poll_event() {
                out.push((id.to_owned(), e));
            }
        }
    }
}
