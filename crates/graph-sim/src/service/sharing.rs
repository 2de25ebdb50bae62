//! Screens shared in a call: one at a time, as in Teams.
//!
//! A scenario user shares by their `shares` setting; the bot shares once
//! `changeScreenSharingRole` makes it a sharer (it needs app-hosted media: a service-hosted bot
//! has no video to send). Whoever starts sharing takes over from the one sharing before. Each
//! share is a content sharing session the bot is told of (`created` and `deleted`
//! notifications on `…/contentSharingSessions/{id}`, listed and read by GET) and a
//! `videoBasedScreenSharing` stream on the sharer's roster entry. `addLargeGalleryView` gives
//! the bot a video stream of the gallery on its own entry.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Sim;
use super::calls::Hosting;
use super::payloads::{self, NS};
use super::refusal::Refusal;
use super::roster::MemberState;
use super::timers::TimerKind;

/// Who shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sharer {
    Bot,
    Member(usize),
}

/// The screen being shared in a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Share {
    pub(super) session_id: String,
    pub(super) sharer: Sharer,
    /// The source id of the screen-sharing stream.
    pub(super) source_id: u32,
}

impl Sim {
    /// Member `i` just joined: schedules their screen share, if they have one.
    pub(super) fn schedule_share(&mut self, now: Instant, call_id: &str, i: usize) {
        let Some(share) = self
            .calls
            .get(call_id)
            .and_then(|c| c.members.get(i))
            .and_then(|m| m.user.shares)
        else {
            return;
        };
        let start = now + Duration::from_millis(share.from_ms);
        self.schedule(start, call_id, TimerKind::ShareStart(i));
        if let Some(length) = share.for_ms {
            self.schedule(
                start + Duration::from_millis(length),
                call_id,
                TimerKind::ShareStop(i),
            );
        }
    }

    /// `sharer` starts sharing, taking over from whoever shared.
    pub(super) fn start_share(&mut self, now: Instant, call_id: &str, sharer: Sharer) {
        let present = match sharer {
            Sharer::Bot => true,
            Sharer::Member(i) => self
                .calls
                .get(call_id)
                .and_then(|c| c.members.get(i))
                .is_some_and(|m| m.state == MemberState::Present),
        };
        if !present {
            return;
        }
        if let Some(current) = self.calls.get(call_id).and_then(|c| c.sharing.as_ref()) {
            if current.sharer == sharer {
                return;
            }
            let previous = current.sharer;
            self.stop_share(now, call_id, previous);
        }
        let session_id = self.new_id();
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let source_id = call.allocate_source();
        call.sharing = Some(Share {
            session_id: session_id.clone(),
            sharer,
            source_id,
        });
        self.notify(
            now,
            call_id,
            "created",
            &format!("/contentSharingSessions/{session_id}"),
            session(&session_id),
        );
        self.show_sharer(now, call_id, sharer);
    }

    /// `sharer` stops sharing (nothing happens if they are not the one sharing).
    pub(super) fn stop_share(&mut self, now: Instant, call_id: &str, sharer: Sharer) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if call.sharing.as_ref().is_none_or(|s| s.sharer != sharer) {
            return;
        }
        let Some(share) = call.sharing.take() else {
            return;
        };
        self.notify(
            now,
            call_id,
            "deleted",
            &format!("/contentSharingSessions/{}", share.session_id),
            session(&share.session_id),
        );
        self.show_sharer(now, call_id, sharer);
    }

    /// Posts the sharer's roster entry, which gained or lost its screen-sharing stream.
    fn show_sharer(&mut self, now: Instant, call_id: &str, sharer: Sharer) {
        match sharer {
            Sharer::Bot => self.emit_roster(now, call_id, &[], true),
            Sharer::Member(i) => {
                let still_in = self
                    .calls
                    .get(call_id)
                    .and_then(|c| c.members.get(i))
                    .is_some_and(|m| m.state == MemberState::Present);
                if still_in {
                    self.emit_roster(now, call_id, &[i], false);
                }
            }
        }
    }

    /// The streams a roster entry shows besides its audio: the screen it shares and, for the
    /// bot, the large gallery it receives.
    pub(super) fn extra_streams(&self, call_id: &str, who: Sharer) -> Vec<Value> {
        let Some(call) = self.calls.get(call_id) else {
            return Vec::new();
        };
        let mut streams = Vec::new();
        if let Some(share) = call.sharing.as_ref().filter(|s| s.sharer == who) {
            streams.push(payloads::media_stream(
                "videoBasedScreenSharing",
                "main-vbss",
                "sendOnly",
                share.source_id,
            ));
        }
        if who == Sharer::Bot
            && let Some(source) = call.large_gallery
        {
            streams.push(payloads::media_stream(
                "video",
                "largeGalleryView",
                "receiveOnly",
                source,
            ));
        }
        streams
    }

    /// `POST …/changeScreenSharingRole`: `sharer` makes the bot share its screen, `viewer` ends
    /// its share.
    pub(super) fn set_bot_sharing(
        &mut self,
        now: Instant,
        call_id: &str,
        sharer: bool,
    ) -> Result<(), Refusal> {
        self.established_call_hosted(call_id, "changeScreenSharingRole", Hosting::App)?;
        if sharer {
            self.start_share(now, call_id, Sharer::Bot);
        } else {
            self.stop_share(now, call_id, Sharer::Bot);
        }
        Ok(())
    }

    /// `POST …/addLargeGalleryView`: the bot's entry gains a video stream of the gallery (once;
    /// adding it again changes nothing).
    pub(super) fn add_gallery(&mut self, now: Instant, call_id: &str) -> Result<(), Refusal> {
        self.established_call_hosted(call_id, "addLargeGalleryView", Hosting::App)?;
        let Some(call) = self.calls.get_mut(call_id) else {
            return Ok(());
        };
        if call.large_gallery.is_none() {
            call.large_gallery = Some(call.allocate_source());
            self.emit_roster(now, call_id, &[], true);
        }
        Ok(())
    }

    /// `GET …/contentSharingSessions`: the screen shared now, if any.
    pub(super) fn list_content_sharing(&self, call_id: &str) -> Result<Value, Refusal> {
        let call = self.live_call(call_id)?;
        let sessions: Vec<Value> = call
            .sharing
            .iter()
            .map(|s| session(&s.session_id))
            .collect();
        Ok(json!({ "value": sessions }))
    }

    /// `GET …/contentSharingSessions/{sid}`.
    pub(super) fn get_content_sharing(&self, call_id: &str, sid: &str) -> Result<Value, Refusal> {
        let call = self.live_call(call_id)?;
        call.sharing
            .as_ref()
            .filter(|s| s.session_id == sid)
            .map(|s| session(&s.session_id))
            .ok_or_else(|| Refusal::NoResource {
                path: format!("/communications/calls/{call_id}/contentSharingSessions/{sid}"),
            })
    }
}

fn session(id: &str) -> Value {
    json!({"@odata.type": format!("{NS}contentSharingSession"), "id": id})
}
