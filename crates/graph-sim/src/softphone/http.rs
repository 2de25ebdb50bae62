//! The softphone's routes on the sim's server (see `docs/softphone.md`): the page and its
//! assets, the call list, join / create / mute / hang up, and the Server-Sent Events stream of
//! the chosen call's roster with levels.
//!
//! Everything from the page is untrusted: bodies are read up to [`MAX_BODY_BYTES`], parsed into
//! typed structs, names and ids are length-checked, and SDP is size-checked before the WebRTC
//! stack sees it; every refusal is a JSON `{"error": "…"}` with a 4xx status.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use media_transport::browser::BrowserPeer;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{MAX_PEOPLE, PAGE_PATH, Softphone, relay};
use crate::service::{Caller, PersonAction, PersonError, PersonOutcome};

/// Largest request body the softphone reads (an offer is a few kilobytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest call id accepted in a path.
const MAX_CALL_ID: usize = 128;

/// How often the events stream sends the call's state.
const PUSH_EVERY: Duration = Duration::from_millis(200);

/// A level above this (dBFS, peak-hold) shows as speaking.
const SPEAKING_DBFS: f32 = -45.0;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// A refusal: status and message.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<PersonError> for Refusal {
    fn from(e: PersonError) -> Refusal {
        let status = match e {
            PersonError::NoCall(_)
            | PersonError::NoParticipant { .. }
            | PersonError::NoScenarioUser(_) => StatusCode::NOT_FOUND,
            PersonError::BadName => StatusCode::BAD_REQUEST,
            _ => StatusCode::CONFLICT,
        };
        Refusal(status, e.to_string())
    }
}

/// Join or create: who the person is and the browser's offer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    name: String,
    sdp: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MuteBody {
    muted: bool,
}

/// The routes, with `softphone` as their state.
pub(crate) fn routes(softphone: Softphone) -> Router {
    Router::new()
        .route("/softphone", get(|| async { Redirect::to(PAGE_PATH) }))
        .route(
            PAGE_PATH,
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/softphone/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/softphone/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route("/softphone/api/calls", get(list_calls).post(create_call))
        .route("/softphone/api/calls/{call}/people", post(join))
        .route(
            "/softphone/api/calls/{call}/people/{source}",
            axum::routing::delete(hang_up),
        )
        .route(
            "/softphone/api/calls/{call}/people/{source}/mute",
            post(mute),
        )
        .route("/softphone/api/events", get(events))
        .with_state(softphone)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn read_json<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, Refusal> {
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            Refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {MAX_BODY_BYTES} bytes"),
            )
        })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Refusal(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))
}

fn check_call_id(call_id: &str) -> Result<(), Refusal> {
    if call_id.is_empty() || call_id.len() > MAX_CALL_ID {
        return Err(Refusal(StatusCode::BAD_REQUEST, "bad call id".into()));
    }
    Ok(())
}

fn unavailable() -> Refusal {
    Refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        "the softphone is not attached to a running sim".into(),
    )
}

/// The bot the "call the bot" button calls: the configured URL or the last one the sim saw.
fn bot_callback(sp: &Softphone) -> Option<String> {
    if let Some(url) = &sp.options().bot_callback_url {
        return Some(url.clone());
    }
    sp.sim()?
        .with_sim(|s, _| s.last_callback_uri().map(str::to_owned))
}

async fn list_calls(State(sp): State<Softphone>) -> Result<Response, Refusal> {
    let sim = sp.sim().ok_or_else(unavailable)?;
    let calls = sim.with_sim(|s, _| s.call_summaries());
    let can_create = bot_callback(&sp).is_some();
    Ok(axum::Json(json!({ "calls": calls, "canCreate": can_create })).into_response())
}

/// Answers the browser's offer, checking first that there is room for one more person.
async fn answer(sp: &Softphone, body: &JoinBody) -> Result<(BrowserPeer, String), Refusal> {
    if sp.people_count() >= MAX_PEOPLE {
        return Err(Refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("at most {MAX_PEOPLE} people at once"),
        ));
    }
    BrowserPeer::answer(&body.sdp, &sp.options().webrtc)
        .await
        .map_err(|e| Refusal(StatusCode::BAD_REQUEST, e.to_string()))
}

async fn join(
    State(sp): State<Softphone>,
    Path(call_id): Path<String>,
    body: Body,
) -> Result<Response, Refusal> {
    check_call_id(&call_id)?;
    let body: JoinBody = read_json(body).await?;
    let sim = sp.sim().ok_or_else(unavailable)?;
    let (peer, sdp) = answer(&sp, &body).await?;
    let (attach_tx, attach_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel();
    // The person is registered under the sim's lock, before the notifier can hand the media
    // side the `SourceAdded` this join queues.
    let source = sim.with_sim(|s, now| {
        let action = PersonAction::Join {
            call_id: &call_id,
            name: &body.name,
        };
        let source = s.handle_person(now, action)?.source_id;
        sp.add_person(&call_id, source, attach_tx, stop_tx);
        Ok::<u32, PersonError>(source)
    })?;
    relay::spawn(
        sp.clone(),
        call_id.clone(),
        source,
        peer,
        attach_rx,
        stop_rx,
    );
    Ok(axum::Json(json!({ "callId": call_id, "sourceId": source, "sdp": sdp })).into_response())
}

async fn create_call(State(sp): State<Softphone>, body: Body) -> Result<Response, Refusal> {
    let body: JoinBody = read_json(body).await?;
    let sim = sp.sim().ok_or_else(unavailable)?;
    let callback = bot_callback(&sp).ok_or_else(|| {
        Refusal(
            StatusCode::CONFLICT,
            "no bot to call: the sim has seen no bot yet and no callback URL was configured".into(),
        )
    })?;
    let (peer, sdp) = answer(&sp, &body).await?;
    let (attach_tx, attach_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel();
    let PersonOutcome {
        call_id,
        source_id: source,
    } = sim.with_sim(|s, now| {
        let action = PersonAction::CallBot {
            callback_uri: &callback,
            caller: Caller::Person(&body.name),
        };
        let called = s.handle_person(now, action)?;
        sp.add_person(&called.call_id, called.source_id, attach_tx, stop_tx);
        Ok::<_, PersonError>(called)
    })?;
    relay::spawn(
        sp.clone(),
        call_id.clone(),
        source,
        peer,
        attach_rx,
        stop_rx,
    );
    Ok(axum::Json(json!({ "callId": call_id, "sourceId": source, "sdp": sdp })).into_response())
}

async fn mute(
    State(sp): State<Softphone>,
    Path((call_id, source)): Path<(String, u32)>,
    body: Body,
) -> Result<Response, Refusal> {
    check_call_id(&call_id)?;
    let body: MuteBody = read_json(body).await?;
    let sim = sp.sim().ok_or_else(unavailable)?;
    if !sp.is_person(&call_id, source) {
        return Err(Refusal(StatusCode::NOT_FOUND, "no such person".into()));
    }
    let action = PersonAction::Mute {
        call_id: &call_id,
        source_id: source,
        muted: body.muted,
    };
    let done = sim.with_sim(|s, now| s.handle_person(now, action).is_ok());
    if done {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(Refusal(StatusCode::NOT_FOUND, "no such person".into()))
    }
}

async fn hang_up(
    State(sp): State<Softphone>,
    Path((call_id, source)): Path<(String, u32)>,
) -> Result<Response, Refusal> {
    check_call_id(&call_id)?;
    let sim = sp.sim().ok_or_else(unavailable)?;
    if !sp.is_person(&call_id, source) {
        return Err(Refusal(StatusCode::NOT_FOUND, "no such person".into()));
    }
    let action = PersonAction::Leave {
        call_id: &call_id,
        source_id: source,
    };
    // The call may have ended meanwhile, taking the person with it: hanging up is done anyway.
    let _ = sim.with_sim(|s, now| s.handle_person(now, action));
    sp.detach(&call_id, source);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The state the page shows: the calls, and the chosen call's roster with levels.
fn snapshot(sp: &Softphone, call: Option<&str>) -> Value {
    let Some(sim) = sp.sim() else {
        return json!({ "calls": [], "call": null });
    };
    let (calls, roster) = sim.with_sim(|s, _| {
        (
            s.call_summaries(),
            call.and_then(|id| s.roster(id).map(|r| (id.to_owned(), s.call_state(id), r))),
        )
    });
    let call = roster.map(|(id, state, roster)| {
        let (bot_level, levels) = sp.levels(&id).unwrap_or((-96.0, Vec::new()));
        let entries: Vec<Value> = roster
            .into_iter()
            .map(|r| {
                let level = if r.bot {
                    bot_level
                } else {
                    levels
                        .iter()
                        .find(|(s, _)| *s == r.source_id)
                        .map_or(-96.0, |(_, l)| *l)
                };
                let mut v = serde_json::to_value(&r).unwrap_or(Value::Null);
                if let Value::Object(o) = &mut v {
                    o.insert("levelDbfs".into(), json!((level * 10.0).round() / 10.0));
                    o.insert(
                        "speaking".into(),
                        json!(level > SPEAKING_DBFS && !r.muted && !r.in_lobby),
                    );
                    o.insert("person".into(), json!(sp.is_person(&id, r.source_id)));
                }
                v
            })
            .collect();
        json!({ "id": id, "state": state, "roster": entries })
    });
    json!({ "calls": calls, "call": call })
}

async fn events(State(sp): State<Softphone>, uri: Uri) -> Result<Response, Refusal> {
    // `?call=<id>` chooses the call whose roster is pushed.
    let call = uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "call")
            .map(|(_, v)| v.into_owned())
            .filter(|c| !c.is_empty())
    });
    if let Some(c) = &call {
        check_call_id(c)?;
    }
    let mut tick = tokio::time::interval(PUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures_util::stream::unfold((sp, call, tick), |(sp, call, mut tick)| async {
        tick.tick().await;
        let data = snapshot(&sp, call.as_deref()).to_string();
        let event = Event::default().event("state").data(data);
        Some((Ok::<_, Infallible>(event), (sp, call, tick)))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
