//! The call's resources besides its state: participants (read, muted, held with music,
//! removed), operations (read back), audio routing groups, content sharing sessions, and the
//! small call actions (screen sharing role, large gallery view, device quality reports).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use graph_signaling::models::{
    AudioRoutingGroup, ChangeScreenSharingRoleBody, ClientContextBody,
    LogTeleconferenceDeviceQualityBody, ScreenSharingRole, StartHoldMusicBody,
};
use serde_json::{Value, json};

use super::notify::SimEvent;
use super::operations::check_client_context;
use super::payloads;
use super::refusal::Refusal;
use super::roster::MemberState;
use super::timers::TimerKind;
use super::{SERVICE_AUDIO_RATE, Sim};

/// Hold music is played in pieces of this length while a participant is held.
const HOLD_PIECE: Duration = Duration::from_secs(5);

/// Most audio routing groups a call keeps (a bound of the sim's).
const MAX_ROUTING_GROUPS: usize = 32;

/// What the sim keeps per call beyond the roster.
#[derive(Debug, Default)]
pub(super) struct CallResources {
    /// Audio routing groups by id, as stored.
    routing_groups: Vec<AudioRoutingGroup>,
    /// Members on hold: index → the custom prompt's audio, if any.
    held: HashMap<usize, Option<String>>,
}

impl Sim {
    /// Index of the member with participant id `pid` still in the call.
    fn member_index(&self, call_id: &str, pid: &str) -> Result<usize, Refusal> {
        let call = self.live_call(call_id)?;
        call.members
            .iter()
            .position(|m| {
                m.id == pid && matches!(m.state, MemberState::Present | MemberState::InLobby)
            })
            .ok_or_else(|| Refusal::NoResource {
                path: format!("/communications/calls/{call_id}/participants/{pid}"),
            })
    }

    /// Keeps the latest form of every operation, for `GET …/operations/{id}`.
    pub(super) fn remember_operation(&mut self, call_id: &str, op: &Value) {
        let Some(id) = op.get("id").and_then(Value::as_str) else {
            return;
        };
        let is_op = op
            .get("@odata.type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.ends_with("Operation"));
        if is_op {
            self.operations
                .insert(id.to_owned(), (call_id.to_owned(), op.clone()));
        }
    }

    /// `GET …/operations/{id}`.
    pub(super) fn get_operation(&self, call_id: &str, op_id: &str) -> Result<Value, Refusal> {
        self.live_call(call_id)?;
        match self.operations.get(op_id) {
            Some((owner, op)) if owner == call_id => Ok(op.clone()),
            _ => Err(Refusal::NoResource {
                path: format!("/communications/calls/{call_id}/operations/{op_id}"),
            }),
        }
    }

    fn completed_operation(
        &mut self,
        call_id: &str,
        kind: &str,
        client_context: Option<&str>,
    ) -> (String, Value) {
        let op_id = self.new_id();
        let op = payloads::operation(
            kind,
            &op_id,
            "completed",
            client_context,
            Some((200, 0, "Action completed successfully.")),
            None,
        );
        self.remember_operation(call_id, &op);
        let location = format!(
            "{}/communications/calls/{call_id}/operations/{op_id}",
            self.config.base_url
        );
        (location, op)
    }

    /// `GET …/participants`: the bot and everyone in the call or its lobby.
    pub(super) fn list_participants(&self, call_id: &str) -> Result<Value, Refusal> {
        self.live_call(call_id)?;
        Ok(json!({
            "@odata.context": format!("{}/$metadata#communications/calls('{call_id}')/participants", self.config.base_url),
            "value": self.full_roster(call_id),
        }))
    }

    /// `GET …/participants/{pid}`.
    pub(super) fn get_participant(&self, call_id: &str, pid: &str) -> Result<Value, Refusal> {
        let list = self.list_participants(call_id)?;
        list["value"]
            .as_array()
            .and_then(|v| v.iter().find(|p| p["id"] == pid).cloned())
            .ok_or_else(|| Refusal::NoResource {
                path: format!("/communications/calls/{call_id}/participants/{pid}"),
            })
    }

    /// `POST …/participants/{pid}/mute`: a server mute, shown in the roster.
    pub(super) fn mute_participant(
        &mut self,
        now: Instant,
        call_id: &str,
        pid: &str,
        body: &[u8],
    ) -> Result<(String, Value), Refusal> {
        let ctx = context_body(body)?;
        let i = self.member_index(call_id, pid)?;
        self.set_member_muted(now, call_id, i, true);
        Ok(self.completed_operation(
            call_id,
            "muteParticipantOperation",
            ctx.client_context.as_deref(),
        ))
    }

    /// `DELETE …/participants/{pid}`: the participant leaves (a P2P call then ends).
    pub(super) fn remove_participant(
        &mut self,
        now: Instant,
        call_id: &str,
        pid: &str,
    ) -> Result<(), Refusal> {
        if self.live_call(call_id)?.bot_id == pid {
            return Err(Refusal::bad_request(
                "the bot leaves a call by deleting the call, not its participant",
            ));
        }
        let i = self.member_index(call_id, pid)?;
        self.leave(now, call_id, i);
        Ok(())
    }

    /// `POST …/participants/{pid}/startHoldMusic`: the participant hears music (the service's
    /// or the custom prompt, looped) until stopHoldMusic.
    pub(super) fn start_hold_music(
        &mut self,
        now: Instant,
        call_id: &str,
        pid: &str,
        body: &[u8],
    ) -> Result<(String, Value), Refusal> {
        let req: StartHoldMusicBody = parse(body, "startHoldMusic")?;
        check_client_context(req.client_context.as_deref())?;
        let i = self.member_index(call_id, pid)?;
        let custom = req.custom_prompt.map(|p| p.media_info.uri);
        if let Some(uri) = &custom
            && !matches!(self.prompts.get(uri), Some(Ok(_)))
        {
            return Err(Refusal::bad_request(format!(
                "the hold music prompt {uri} could not be fetched"
            )));
        }
        let resources = self.resources.entry(call_id.to_owned()).or_default();
        let already = resources.held.insert(i, custom).is_some();
        if !already {
            self.play_hold_piece(now, call_id, i);
        }
        Ok(self.completed_operation(
            call_id,
            "startHoldMusicOperation",
            req.client_context.as_deref(),
        ))
    }

    /// The next piece of hold music for member `i`, while they are held.
    pub(super) fn play_hold_piece(&mut self, now: Instant, call_id: &str, i: usize) {
        let Some(custom) = self
            .resources
            .get(call_id)
            .and_then(|r| r.held.get(&i))
            .cloned()
        else {
            return;
        };
        let audio: Vec<i16> = match custom.and_then(|uri| self.prompts.get(&uri)) {
            Some(Ok(a)) => a.iter().copied().collect(),
            _ => hold_music(HOLD_PIECE),
        };
        let length =
            Duration::from_micros(audio.len() as u64 * 1_000_000 / u64::from(SERVICE_AUDIO_RATE));
        self.events.push_back(SimEvent::Played {
            call_id: call_id.to_owned(),
            at: now,
            audio: audio.into(),
        });
        self.schedule(
            now + length.max(Duration::from_millis(20)),
            call_id,
            TimerKind::HoldMusic(i),
        );
    }

    /// `POST …/participants/{pid}/stopHoldMusic`: the music stops now.
    pub(super) fn stop_hold_music(
        &mut self,
        now: Instant,
        call_id: &str,
        pid: &str,
        body: &[u8],
    ) -> Result<(String, Value), Refusal> {
        let ctx = context_body(body)?;
        let i = self.member_index(call_id, pid)?;
        let was_held = self
            .resources
            .get_mut(call_id)
            .is_some_and(|r| r.held.remove(&i).is_some());
        if !was_held {
            return Err(Refusal::bad_request("the participant is not on hold"));
        }
        self.events.push_back(SimEvent::MediaCut {
            call_id: call_id.to_owned(),
            at: now,
        });
        Ok(self.completed_operation(
            call_id,
            "stopHoldMusicOperation",
            ctx.client_context.as_deref(),
        ))
    }

    /// Whether member `i` of `call_id` is on hold.
    pub fn is_on_hold(&self, call_id: &str, participant_id: &str) -> bool {
        self.member_index(call_id, participant_id)
            .ok()
            .is_some_and(|i| {
                self.resources
                    .get(call_id)
                    .is_some_and(|r| r.held.contains_key(&i))
            })
    }

    /// `POST …/changeScreenSharingRole`.
    pub(super) fn change_screen_sharing_role(
        &mut self,
        now: Instant,
        call_id: &str,
        body: &[u8],
    ) -> Result<(), Refusal> {
        self.live_call(call_id)?;
        let req: ChangeScreenSharingRoleBody = parse(body, "changeScreenSharingRole")?;
        match req.role {
            ScreenSharingRole::Sharer => self.set_bot_sharing(now, call_id, true),
            ScreenSharingRole::Viewer => self.set_bot_sharing(now, call_id, false),
            _ => Err(Refusal::bad_request("role must be viewer or sharer")),
        }
    }

    /// `POST …/addLargeGalleryView`.
    pub(super) fn add_large_gallery_view(
        &mut self,
        now: Instant,
        call_id: &str,
        body: &[u8],
    ) -> Result<(String, Value), Refusal> {
        self.live_call(call_id)?;
        let ctx = context_body(body)?;
        self.add_gallery(now, call_id)?;
        Ok(self.completed_operation(
            call_id,
            "addLargeGalleryViewOperation",
            ctx.client_context.as_deref(),
        ))
    }

    /// `POST /communications/calls/logTeleconferenceDeviceQuality`.
    pub(super) fn log_teleconference_device_quality(&mut self, body: &[u8]) -> Result<(), Refusal> {
        let req: LogTeleconferenceDeviceQualityBody =
            parse(body, "logTeleconferenceDeviceQuality")?;
        if req.quality.media_quality_list.is_empty() {
            return Err(Refusal::bad_request("quality.mediaQualityList is required"));
        }
        self.device_quality_reports += 1;
        Ok(())
    }

    /// Device quality reports received.
    pub fn device_quality_reports(&self) -> u64 {
        self.device_quality_reports
    }

    fn routing_group_checked(
        &self,
        call_id: &str,
        body: &[u8],
    ) -> Result<AudioRoutingGroup, Refusal> {
        let call = self.live_call(call_id)?;
        if call.blob.is_none() {
            return Err(Refusal::bad_request(
                "audio routing groups need a call with appHostedMediaConfig",
            ));
        }
        let group: AudioRoutingGroup = parse(body, "audioRoutingGroup")?;
        let known = |pid: &String| *pid == call.bot_id || call.in_call().any(|m| m.id == *pid);
        if group.sources.is_empty() || group.receivers.is_empty() {
            return Err(Refusal::bad_request(
                "an audio routing group needs sources and receivers",
            ));
        }
        if let Some(unknown) = group
            .sources
            .iter()
            .chain(&group.receivers)
            .find(|p| !known(p))
        {
            return Err(Refusal::bad_request(format!(
                "participant {} is not in the call",
                unknown.chars().take(64).collect::<String>()
            )));
        }
        Ok(group)
    }

    /// `POST …/audioRoutingGroups`.
    pub(super) fn create_routing_group(
        &mut self,
        call_id: &str,
        body: &[u8],
    ) -> Result<Value, Refusal> {
        let mut group = self.routing_group_checked(call_id, body)?;
        let id = group.id.clone().unwrap_or_else(|| self.new_id());
        let resources = self.resources.entry(call_id.to_owned()).or_default();
        if resources.routing_groups.len() >= MAX_ROUTING_GROUPS {
            return Err(Refusal::bad_request("too many audio routing groups"));
        }
        if resources
            .routing_groups
            .iter()
            .any(|g| g.id.as_deref() == Some(&id))
        {
            return Err(Refusal::bad_request(format!(
                "audio routing group {id} exists"
            )));
        }
        group.id = Some(id);
        resources.routing_groups.push(group.clone());
        Ok(serde_json::to_value(group).unwrap_or(Value::Null))
    }

    /// `GET …/audioRoutingGroups`.
    pub(super) fn list_routing_groups(&self, call_id: &str) -> Result<Value, Refusal> {
        self.live_call(call_id)?;
        let groups = self
            .resources
            .get(call_id)
            .map_or(&[][..], |r| &r.routing_groups[..]);
        Ok(json!({"value": groups}))
    }

    fn routing_group_index(&self, call_id: &str, gid: &str) -> Result<usize, Refusal> {
        self.live_call(call_id)?;
        self.resources
            .get(call_id)
            .and_then(|r| {
                r.routing_groups
                    .iter()
                    .position(|g| g.id.as_deref() == Some(gid))
            })
            .ok_or_else(|| Refusal::NoResource {
                path: format!("/communications/calls/{call_id}/audioRoutingGroups/{gid}"),
            })
    }

    /// `GET …/audioRoutingGroups/{gid}`.
    pub(super) fn get_routing_group(&self, call_id: &str, gid: &str) -> Result<Value, Refusal> {
        let i = self.routing_group_index(call_id, gid)?;
        let group = &self.resources[call_id].routing_groups[i];
        Ok(serde_json::to_value(group).unwrap_or(Value::Null))
    }

    /// `PATCH …/audioRoutingGroups/{gid}`.
    pub(super) fn update_routing_group(
        &mut self,
        call_id: &str,
        gid: &str,
        body: &[u8],
    ) -> Result<Value, Refusal> {
        let i = self.routing_group_index(call_id, gid)?;
        let mut group = self.routing_group_checked(call_id, body)?;
        group.id = Some(gid.to_owned());
        if let Some(r) = self.resources.get_mut(call_id) {
            r.routing_groups[i] = group.clone();
        }
        Ok(serde_json::to_value(group).unwrap_or(Value::Null))
    }

    /// `DELETE …/audioRoutingGroups/{gid}`.
    pub(super) fn delete_routing_group(&mut self, call_id: &str, gid: &str) -> Result<(), Refusal> {
        let i = self.routing_group_index(call_id, gid)?;
        if let Some(r) = self.resources.get_mut(call_id) {
            r.routing_groups.remove(i);
        }
        Ok(())
    }

    /// Forgets what a call that ended kept.
    pub(super) fn drop_resources(&mut self, call_id: &str) {
        self.resources.remove(call_id);
        self.operations.retain(|_, (owner, _)| owner != call_id);
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, Refusal> {
    serde_json::from_slice(body)
        .map_err(|e| Refusal::bad_request(format!("the {what} body is not valid: {e}")))
}

fn context_body(body: &[u8]) -> Result<ClientContextBody, Refusal> {
    let ctx: ClientContextBody = if body.iter().all(u8::is_ascii_whitespace) {
        ClientContextBody::default()
    } else {
        parse(body, "request")?
    };
    check_client_context(ctx.client_context.as_deref())?;
    Ok(ctx)
}

/// The service's hold music: a slow arpeggio, quiet, easy to tell from speech and prompts.
fn hold_music(length: Duration) -> Vec<i16> {
    let rate = SERVICE_AUDIO_RATE as f32;
    let n = (length.as_secs_f32() * rate) as usize;
    let notes = [261.6_f32, 329.6, 392.0, 523.3];
    (0..n)
        .map(|i| {
            let t = i as f32 / rate;
            let note = notes[(t * 2.0) as usize % notes.len()];
            ((std::f32::consts::TAU * note * t).sin() * 4000.0) as i16
        })
        .collect()
}
