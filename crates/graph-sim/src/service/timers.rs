//! Everything the service does later: a table of timers ordered by due time (then by the order
//! they were set, so equal instants keep cause before effect), fired by
//! [`Sim::handle_timeout`], each handing its work to the part of the service it belongs to.

use std::cmp::{Ordering, Reverse};
use std::time::Instant;

use graph_signaling::models::{CallState, Tone};

use super::Sim;
use super::calls::CallEnd;
use super::operations::PendingInvite;
use super::sharing::Sharer;

/// What a timer does when it fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TimerKind {
    /// The call setup's `establishing` step.
    Establishing,
    /// The call setup's `established` step.
    Established,
    /// Member `n` joins.
    Join(usize),
    /// Member `n` leaves.
    Leave(usize),
    /// Member `n` is admitted from the lobby.
    Admit(usize),
    /// An invitation is answered.
    InviteDone(PendingInvite),
    /// Has the call been kept alive?
    KeepAliveCheck,
    /// An incoming call stops ringing.
    AnswerWindow,
    /// Post a roster showing the guest bot in the lobby.
    BotInLobby,
    /// A step of a redirect or transfer: post `state`, or end the bot's leg when `end` is set.
    Handover {
        state: CallState,
        end: Option<CallEnd>,
    },
    /// A media operation (prompt, recording, DTMF) has run its course.
    MediaOpDone(String),
    /// Member `n` presses a key.
    Press(usize, Tone),
    /// Member `n`, on hold, hears the next piece of music.
    HoldMusic(usize),
    /// The recordings of an ended call are discarded.
    DiscardRecordings,
    /// Member `n` starts sharing their screen.
    ShareStart(usize),
    /// Member `n` stops sharing their screen.
    ShareStop(usize),
}

#[derive(Debug, PartialEq, Eq)]
pub(super) struct Timer {
    at: Instant,
    order: u64,
    call_id: String,
    kind: TimerKind,
}

impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timer {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

impl Sim {
    /// Advances time: fires every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while self.timers.peek().is_some_and(|Reverse(t)| t.at <= now) {
            let Some(Reverse(timer)) = self.timers.pop() else {
                break;
            };
            self.fire(timer.at, &timer.call_id, timer.kind);
        }
    }

    /// When the core next needs [`Sim::handle_timeout`], counting queued notifications.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse(t)| t.at);
        let notification = self.notifications.iter().map(|n| n.due).min();
        match (timer, notification) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(super) fn schedule(&mut self, at: Instant, call_id: &str, kind: TimerKind) {
        self.order += 1;
        self.timers.push(Reverse(Timer {
            at,
            order: self.order,
            call_id: call_id.to_owned(),
            kind,
        }));
    }

    /// Checks the call's keepAlive one timeout from `now`.
    pub(super) fn schedule_keepalive_check(&mut self, call_id: &str, now: Instant) {
        self.schedule(
            now + self.config.keepalive_timeout,
            call_id,
            TimerKind::KeepAliveCheck,
        );
    }

    /// Fires one timer at its due time. Timers of ended (or unknown) calls do nothing, but
    /// for the clean-up that follows a call's end.
    fn fire(&mut self, now: Instant, call_id: &str, kind: TimerKind) {
        if kind == TimerKind::DiscardRecordings {
            self.discard_recordings(call_id);
            return;
        }
        if self.calls.get(call_id).is_none_or(|c| c.has_ended()) {
            return;
        }
        match kind {
            TimerKind::Establishing => self.announce_establishing(now, call_id),
            TimerKind::Established => self.establish(now, call_id),
            TimerKind::Join(i) => self.join(now, call_id, i),
            TimerKind::Leave(i) => self.leave(now, call_id, i),
            TimerKind::Admit(i) => self.admit(now, call_id, i),
            TimerKind::InviteDone(invite) => self.finish_invite(now, call_id, invite),
            TimerKind::KeepAliveCheck => self.check_keepalive(now, call_id),
            TimerKind::AnswerWindow => self.answer_window_closed(now, call_id),
            TimerKind::BotInLobby => self.emit_roster(now, call_id, &[], true),
            TimerKind::Handover { state, end } => self.handover_step(now, call_id, state, end),
            TimerKind::MediaOpDone(op) => self.finish_media_op(now, call_id, &op),
            TimerKind::Press(i, tone) => self.press(now, call_id, i, tone),
            TimerKind::HoldMusic(i) => self.play_hold_piece(now, call_id, i),
            TimerKind::DiscardRecordings => {}
            TimerKind::ShareStart(i) => self.start_share(now, call_id, Sharer::Member(i)),
            TimerKind::ShareStop(i) => self.stop_share(now, call_id, Sharer::Member(i)),
        }
    }
}
