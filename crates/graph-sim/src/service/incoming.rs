//! Calls offered to the bot: the `created` notification of an incoming call, then the bot's
//! answer or rejection, or the answer window running out.

use std::time::Instant;

use graph_signaling::models::{AnswerBody, CallState, MediaConfig};
use serde_json::json;

use super::calls::{CallEnd, CallKind, SimCall};
use super::refusal::Refusal;
use super::timers::TimerKind;
use super::{Sim, payloads};
use crate::scenario::SimUser;

impl Sim {
    /// Offers the bot an incoming call from `user`; returns the call id. The caller is the
    /// call's first member.
    pub(super) fn offer_incoming_from(
        &mut self,
        now: Instant,
        callback_uri: &str,
        user: SimUser,
        user_id: &str,
    ) -> String {
        // A phone user dials the bot's number: the call is offered to its application instance.
        let by_phone = user.identity == crate::scenario::IdentityKind::Phone;
        let caller = self.new_member(user, user_id);
        let instance = self.config.application_instances.first().cloned();
        let target = if let (true, Some(instance)) = (by_phone, instance) {
            json!({
                "@odata.type": "#microsoft.graph.identitySet",
                "applicationInstance": {
                    "@odata.type": "#microsoft.graph.identity",
                    "id": instance.id,
                    "displayName": "Bot",
                },
                "phone": {
                    "@odata.type": "#microsoft.graph.identity",
                    "id": instance.phone_number,
                },
            })
        } else {
            payloads::application_identity(&self.config.app_id, "Bot")
        };
        let id = self.new_id();
        let bot_id = self.new_id();
        let resource = json!({
            "@odata.type": "#microsoft.graph.call",
            "id": id,
            "state": CallState::Incoming,
            "direction": "incoming",
            "callbackUri": callback_uri,
            "callChainId": self.new_id(),
            "source": {
                "@odata.type": "#microsoft.graph.participantInfo",
                "identity": caller.identity,
                "region": null,
                "languageId": null,
            },
            "targets": [{
                "@odata.type": "#microsoft.graph.invitationParticipantInfo",
                "identity": target.clone(),
            }],
            "requestedModalities": ["audio"],
            "tenantId": self.config.tenant_id,
            "myParticipantId": bot_id,
        });
        let mut call = SimCall::new(
            id.clone(),
            CallKind::PeerToPeer,
            callback_uri.to_owned(),
            CallState::Incoming,
            resource.clone(),
            bot_id,
            now,
        );
        call.awaiting_answer = true;
        call.bot_identity = target;
        call.add_member(caller);
        self.calls.insert(id.clone(), call);
        let body =
            payloads::notifications("created", &format!("/calls/{id}"), callback_uri, resource);
        self.post(now, &id, body);
        self.schedule(
            now + self.config.answer_window,
            &id,
            TimerKind::AnswerWindow,
        );
        id
    }

    pub(super) fn answer(&mut self, now: Instant, id: &str, body: &[u8]) -> Result<(), Refusal> {
        let call = self.live_call(id)?;
        if !call.awaiting_answer {
            return Err(Refusal::bad_request(
                "the call is not waiting for an answer",
            ));
        }
        let answer: AnswerBody = serde_json::from_slice(body)
            .map_err(|e| Refusal::bad_request(format!("the answer body is not valid: {e}")))?;
        let blob = match &answer.media_config {
            MediaConfig::AppHosted(app) => Some(
                media_session::parse(app.blob.as_deref().unwrap_or_default())
                    .map_err(|e| Refusal::bad_request(format!("mediaConfig.blob: {e}")))?,
            ),
            _ => None,
        };
        self.check_callback(&answer.callback_uri)?;
        let call = self.calls.get_mut(id).ok_or_else(|| Refusal::no_call(id))?;
        call.awaiting_answer = false;
        call.callback_uri = answer.callback_uri.clone();
        call.blob = blob;
        call.last_keepalive = now;
        self.set_state(id, CallState::Establishing);
        self.schedule(now + self.config.setup_delay, id, TimerKind::Established);
        self.schedule_keepalive_check(id, now);
        Ok(())
    }

    pub(super) fn reject(&mut self, now: Instant, id: &str, body: &[u8]) -> Result<(), Refusal> {
        let call = self.live_call(id)?;
        if !call.awaiting_answer {
            return Err(Refusal::bad_request(
                "only an incoming call can be rejected",
            ));
        }
        // The reason is optional; when given it must be one Graph knows.
        if !body.iter().all(u8::is_ascii_whitespace) {
            let reject: graph_signaling::models::RejectBody = serde_json::from_slice(body)
                .map_err(|e| Refusal::bad_request(format!("the reject body is not valid: {e}")))?;
            if matches!(
                reject.reason,
                graph_signaling::models::RejectReason::Unknown(_)
            ) {
                return Err(Refusal::bad_request(
                    "reason must be none, busy or forbidden",
                ));
            }
        }
        self.terminate(now, id, CallEnd::Rejected);
        Ok(())
    }

    /// The answer window closed: a call still ringing ends.
    pub(super) fn answer_window_closed(&mut self, now: Instant, call_id: &str) {
        if self.calls.get(call_id).is_some_and(|c| c.awaiting_answer) {
            self.terminate(now, call_id, CallEnd::Unanswered);
        }
    }
}
