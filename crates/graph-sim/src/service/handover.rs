//! Handing a call to someone else: redirecting an incoming call before answering it, and
//! transferring an established one. Both end the bot's leg after the steps the real service
//! reports, scheduled as [`TimerKind::Handover`].

use std::time::Instant;

use graph_signaling::models::{CallState, RedirectBody, TransferBody};

use super::calls::{CallEnd, CallKind};
use super::refusal::Refusal;
use super::timers::TimerKind;
use super::{MAX_GROUP_PARTICIPANTS, Sim};

impl Sim {
    pub(super) fn redirect(&mut self, now: Instant, id: &str, body: &[u8]) -> Result<(), Refusal> {
        let call = self.live_call(id)?;
        if !call.awaiting_answer {
            return Err(Refusal::bad_request(
                "only an incoming call can be redirected",
            ));
        }
        let redirect: RedirectBody = serde_json::from_slice(body)
            .map_err(|e| Refusal::bad_request(format!("the redirect body is not valid: {e}")))?;
        if redirect.targets.is_empty() || redirect.targets.len() > MAX_GROUP_PARTICIPANTS {
            return Err(Refusal::bad_request(format!(
                "redirect needs 1 to {MAX_GROUP_PARTICIPANTS} targets"
            )));
        }
        for target in &redirect.targets {
            // Checks identities and E.164 numbers the same way as for a call.
            self.member_for(target, true)?;
        }
        if let Some(call) = self.calls.get_mut(id) {
            call.awaiting_answer = false;
        }
        self.set_state(id, CallState::Redirecting);
        self.notify_state(now, id, &CallState::Redirecting);
        self.schedule(
            now + self.config.ring_delay,
            id,
            TimerKind::Handover {
                state: CallState::Redirecting,
                end: Some(CallEnd::Redirected),
            },
        );
        Ok(())
    }

    pub(super) fn transfer(&mut self, now: Instant, id: &str, body: &[u8]) -> Result<(), Refusal> {
        let call = self.live_call(id)?;
        if call.state != CallState::Established {
            return Err(Refusal::bad_request(
                "only an established call can be transferred",
            ));
        }
        let kind = call.kind;
        let transfer: TransferBody = serde_json::from_slice(body)
            .map_err(|e| Refusal::bad_request(format!("the transfer body is not valid: {e}")))?;
        if kind != CallKind::PeerToPeer && transfer.transferee.is_none() {
            return Err(Refusal::bad_request(
                "transferring a group call or meeting needs a transferee",
            ));
        }
        self.member_for(&transfer.transfer_target, true)?;
        self.set_state(id, CallState::Transferring);
        self.notify_state(now, id, &CallState::Transferring);
        self.schedule(
            now + self.config.ring_delay,
            id,
            TimerKind::Handover {
                state: CallState::TransferAccepted,
                end: None,
            },
        );
        self.schedule(
            now + self.config.ring_delay * 2,
            id,
            TimerKind::Handover {
                state: CallState::TransferAccepted,
                end: Some(CallEnd::Transferred),
            },
        );
        Ok(())
    }

    /// A step of a handover is due: the call ends with `end`, or moves to `state`.
    pub(super) fn handover_step(
        &mut self,
        now: Instant,
        call_id: &str,
        state: CallState,
        end: Option<CallEnd>,
    ) {
        match end {
            Some(end) => self.terminate(now, call_id, end),
            None => {
                self.set_state(call_id, state.clone());
                self.notify_state(now, call_id, &state);
            }
        }
    }
}
