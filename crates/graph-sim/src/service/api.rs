//! The Graph API as the sim serves it: a request passes the token check, the throttling fault
//! and the size limit, then its method and path choose the handler, and the handler's result
//! becomes the HTTP answer. The status codes of accepted requests are chosen here; those of
//! refusals come from [`Refusal`].

use std::time::{Duration, Instant};

use serde_json::Value;

use super::refusal::Refusal;
use super::{MAX_REQUEST_BYTES, Sim};
use crate::faults::RequestFate;

/// HTTP method of an API request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// DELETE
    Delete,
    /// PATCH
    Patch,
    /// Anything else.
    Other,
}

/// One API request, as the HTTP shell received it.
#[derive(Debug, Clone)]
pub struct ApiRequest<'a> {
    /// The method.
    pub method: Method,
    /// The path below the version prefix, such as `/communications/calls/{id}/keepAlive`.
    pub path: &'a str,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    /// The raw body.
    pub body: &'a [u8],
}

/// The answer to an API request.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// `Location` header.
    pub location: Option<String>,
    /// `Retry-After` header, in seconds.
    pub retry_after: Option<u64>,
    /// The `request-id` header (also in error bodies).
    pub request_id: String,
    /// JSON body, if any.
    pub body: Option<Value>,
    /// How long the shell waits before answering (slow-response fault).
    pub delay: Duration,
}

/// An accepted request's answer, before the shell's headers are added.
struct Reply {
    status: u16,
    location: Option<String>,
    body: Option<Value>,
}

impl Reply {
    fn empty(status: u16) -> Reply {
        Reply {
            status,
            location: None,
            body: None,
        }
    }

    fn with_body(status: u16, body: Value) -> Reply {
        Reply {
            status,
            location: None,
            body: Some(body),
        }
    }

    fn located(status: u16, (location, body): (String, Value)) -> Reply {
        Reply {
            status,
            location: Some(location),
            body: Some(body),
        }
    }
}

impl Sim {
    /// Answers one API request and queues what follows from it.
    pub fn handle_request(&mut self, now: Instant, request: &ApiRequest<'_>) -> ApiResponse {
        let response = self.serve(now, request);
        // The prompts fetched for this request have been used (or not): the cache goes back
        // within its bounds.
        self.prompts.settle();
        response
    }

    fn serve(&mut self, now: Instant, request: &ApiRequest<'_>) -> ApiResponse {
        self.request_counter += 1;
        let request_id = format!("sim-request-{}", self.request_counter);
        // Authentication comes first: an unauthenticated request learns nothing.
        if !self.is_authorized(now, request.authorization) {
            return Refusal::InvalidToken.into_response(request_id, Duration::ZERO);
        }
        let delay = match self.faults.request() {
            RequestFate::Refuse {
                status,
                retry_after,
            } => {
                return Refusal::throttled(status, retry_after)
                    .into_response(request_id, Duration::ZERO);
            }
            RequestFate::Serve { delay } => delay,
        };
        if request.body.len() > MAX_REQUEST_BYTES {
            return Refusal::TooLarge.into_response(request_id, delay);
        }
        match self.route(now, request) {
            Ok(reply) => ApiResponse {
                status: reply.status,
                location: reply.location,
                retry_after: None,
                request_id,
                body: reply.body,
                delay,
            },
            Err(refusal) => refusal.into_response(request_id, delay),
        }
    }

    fn route(&mut self, now: Instant, request: &ApiRequest<'_>) -> Result<Reply, Refusal> {
        let path = request.path.trim_end_matches('/');
        let rest = path
            .strip_prefix("/communications/calls")
            .or_else(|| path.strip_prefix("/app/calls"))
            .ok_or_else(|| Refusal::NoResource {
                path: path.to_owned(),
            })?;
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let body = request.body;
        let reply = self.route_call(now, request.method, &segments, body, path)?;
        // Every operation handed out can be read back (`GET …/operations/{id}`).
        if let (Some(id), Some(op)) = (segments.first(), reply.body.as_ref()) {
            let id = (*id).to_owned();
            let op = op.clone();
            self.remember_operation(&id, &op);
        }
        Ok(reply)
    }

    fn route_call(
        &mut self,
        now: Instant,
        method: Method,
        segments: &[&str],
        body: &[u8],
        path: &str,
    ) -> Result<Reply, Refusal> {
        match (method, segments) {
            (Method::Post, []) => self.create_call(now, body).map(|r| Reply::located(201, r)),
            (Method::Post, ["logTeleconferenceDeviceQuality"]) => self
                .log_teleconference_device_quality(body)
                .map(|()| Reply::empty(200)),
            (Method::Get, [id]) => self.get_call(id).map(|b| Reply::with_body(200, b)),
            (Method::Delete, [id]) => self.hang_up(now, id).map(|()| Reply::empty(204)),
            (Method::Post, [id, "keepAlive"]) => {
                self.keep_alive(now, id).map(|()| Reply::empty(200))
            }
            (Method::Post, [id, "answer"]) => {
                self.answer(now, id, body).map(|()| Reply::empty(202))
            }
            (Method::Post, [id, "reject"]) => {
                self.reject(now, id, body).map(|()| Reply::empty(202))
            }
            (Method::Post, [id, "participants", "invite"]) => {
                self.invite(now, id, body).map(|r| Reply::located(200, r))
            }
            (Method::Post, [id, action @ ("mute" | "unmute")]) => self
                .mute(now, id, *action == "mute", body)
                .map(|b| Reply::with_body(200, b)),
            (Method::Post, [id, "updateRecordingStatus"]) => self
                .update_recording_status(id, body)
                .map(|b| Reply::with_body(200, b)),
            (Method::Post, [id, "redirect"]) => {
                self.redirect(now, id, body).map(|()| Reply::empty(202))
            }
            (Method::Post, [id, "playPrompt"]) => self
                .play_prompt(now, id, body)
                .map(|r| Reply::located(200, r)),
            (Method::Post, [id, "recordResponse"]) => self
                .record_response(now, id, body)
                .map(|r| Reply::located(200, r)),
            (Method::Post, [id, "cancelMediaProcessing"]) => self
                .cancel_media_processing(now, id, body)
                .map(|r| Reply::located(200, r)),
            (Method::Post, [id, "subscribeToTone"]) => self
                .subscribe_to_tone(id, body)
                .map(|b| Reply::with_body(200, b)),
            (Method::Post, [id, "sendDtmfTones"]) => self
                .send_dtmf_tones(now, id, body)
                .map(|r| Reply::located(200, r)),
            (Method::Post, [id, "transfer"]) => {
                self.transfer(now, id, body).map(|()| Reply::empty(202))
            }
            (Method::Get, [id, "participants"]) => {
                self.list_participants(id).map(|b| Reply::with_body(200, b))
            }
            (Method::Get, [id, "participants", pid]) => self
                .get_participant(id, pid)
                .map(|b| Reply::with_body(200, b)),
            (Method::Delete, [id, "participants", pid]) => self
                .remove_participant(now, id, pid)
                .map(|()| Reply::empty(204)),
            (Method::Post, [id, "participants", pid, "mute"]) => self
                .mute_participant(now, id, pid, body)
                .map(|r| Reply::located(200, r)),
            (Method::Post, [id, "participants", pid, "startHoldMusic"]) => self
                .start_hold_music(now, id, pid, body)
                .map(|r| Reply::located(200, r)),
            (Method::Post, [id, "participants", pid, "stopHoldMusic"]) => self
                .stop_hold_music(now, id, pid, body)
                .map(|r| Reply::located(200, r)),
            (Method::Get, [id, "operations", op]) => {
                self.get_operation(id, op).map(|b| Reply::with_body(200, b))
            }
            (Method::Post, [id, "changeScreenSharingRole"]) => self
                .change_screen_sharing_role(now, id, body)
                .map(|()| Reply::empty(202)),
            (Method::Post, [id, "addLargeGalleryView"]) => self
                .add_large_gallery_view(now, id, body)
                .map(|r| Reply::located(200, r)),
            (Method::Post, [id, "audioRoutingGroups"]) => self
                .create_routing_group(id, body)
                .map(|b| Reply::with_body(201, b)),
            (Method::Get, [id, "audioRoutingGroups"]) => self
                .list_routing_groups(id)
                .map(|b| Reply::with_body(200, b)),
            (Method::Get, [id, "audioRoutingGroups", gid]) => self
                .get_routing_group(id, gid)
                .map(|b| Reply::with_body(200, b)),
            (Method::Patch, [id, "audioRoutingGroups", gid]) => self
                .update_routing_group(id, gid, body)
                .map(|b| Reply::with_body(200, b)),
            (Method::Delete, [id, "audioRoutingGroups", gid]) => self
                .delete_routing_group(id, gid)
                .map(|()| Reply::empty(204)),
            (Method::Get, [id, "contentSharingSessions"]) => self
                .list_content_sharing(id)
                .map(|b| Reply::with_body(200, b)),
            (Method::Get, [id, "contentSharingSessions", sid]) => self
                .get_content_sharing(id, sid)
                .map(|b| Reply::with_body(200, b)),
            _ => Err(Refusal::MethodNotAllowed {
                method,
                path: path.to_owned(),
            }),
        }
    }
}
