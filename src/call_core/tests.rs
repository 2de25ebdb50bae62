//! The call core driven with made-up notifications, responses and time.

use std::time::{Duration, Instant};

use graph_signaling::client::GraphError;
use graph_signaling::models::{CallState, CommsNotifications, CommsOperation};
use media_session::SourceId;
use media_transport::MediaEvent;
use media_transport::protocol::EndReason;
use serde_json::json;

use super::*;

const CALL: &str = "c0ffee00-0000-4000-8000-000000000001";
const APP: &str = "2891555a-92ff-42e6-80fa-6e1300c6b5c6";
const SEC: Duration = Duration::from_secs(1);

fn config() -> CallConfig {
    CallConfig {
        app_id: Some(APP.into()),
        keepalive_interval: Duration::from_secs(900),
        operation_timeout: Duration::from_secs(60),
        quality_interval: Duration::from_secs(10),
        media_close_grace: Duration::from_secs(2),
        release_grace: Duration::from_secs(10),
        media: MediaHosting::App,
    }
}

fn core(t0: Instant) -> CallCore {
    CallCore::new(CALL, Direction::Outgoing, false, config(), t0)
}

fn notes(v: serde_json::Value) -> Vec<Input> {
    let batch: CommsNotifications = serde_json::from_value(v).unwrap();
    batch
        .value
        .into_iter()
        .map(|n| Input::Notification(Box::new(n)))
        .collect()
}

fn state(s: &str) -> Vec<Input> {
    notes(json!({"value": [{"changeType": "updated",
        "resourceUrl": format!("/communications/calls/{CALL}"),
        "resourceData": {"@odata.type": "#microsoft.graph.call", "state": s, "id": CALL}}]}))
}

fn terminated(code: i64, subcode: i64) -> Vec<Input> {
    notes(json!({"value": [{"changeType": "deleted",
        "resourceUrl": format!("/communications/calls/{CALL}"),
        "resourceData": {"@odata.type": "#microsoft.graph.call", "state": "terminated", "id": CALL,
            "resultInfo": {"code": code, "subcode": subcode}}}]}))
}

fn roster(people: &[(&str, u32)]) -> Vec<Input> {
    let participants: Vec<_> = people
        .iter()
        .map(|(id, source)| {
            json!({"@odata.type": "#microsoft.graph.participant", "id": id,
            "info": {"identity": {"user": {"id": format!("user-{id}")}}},
            "mediaStreams": [{"mediaType": "audio", "sourceId": source.to_string(),
                "direction": "sendReceive", "serverMuted": false}],
            "isMuted": false, "isInLobby": false})
        })
        .collect();
    notes(json!({"value": [{"changeType": "updated",
        "resourceUrl": format!("/communications/calls/{CALL}/participants"),
        "resourceData": participants}]}))
}

fn operation(id: Option<&str>, context: &str, status: &str) -> Vec<Input> {
    notes(json!({"value": [{"changeType": "deleted",
        "resourceUrl": format!("/communications/calls/{CALL}/operations/{}", id.unwrap_or("x")),
        "resourceData": {"@odata.type": "#microsoft.graph.inviteParticipantsOperation",
            "id": id, "status": status, "clientContext": context}}]}))
}

fn op(id: &str, status: &str) -> CommsOperation {
    serde_json::from_value(
        json!({"@odata.type": "#microsoft.graph.inviteParticipantsOperation",
        "id": id, "status": status}),
    )
    .unwrap()
}

fn http(status: u16) -> GraphError {
    GraphError::Http {
        status,
        code: Some("Test".into()),
        message: None,
        request_id: None,
        client_request_id: "t".into(),
        retry_after: None,
    }
}

/// Feeds inputs at `now` and returns everything the core then asked for.
fn feed(c: &mut CallCore, inputs: Vec<Input>, now: Instant) -> Vec<Output> {
    for i in inputs {
        c.handle_input(i, now);
    }
    std::iter::from_fn(|| c.poll_output()).collect()
}

fn tick(c: &mut CallCore, now: Instant) -> Vec<Output> {
    feed(c, vec![Input::Timeout], now)
}

fn requests(out: &[Output]) -> Vec<(RequestId, CallRequest)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Request(r) => Some((r.id, r.kind.clone())),
            _ => None,
        })
        .collect()
}

fn binds(out: &[Output]) -> Vec<(bool, SourceId)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Bind(s) => Some((true, *s)),
            Output::Unbind(s) => Some((false, *s)),
            _ => None,
        })
        .collect()
}

fn replies(out: Vec<Output>) -> Vec<(Ticket, Result<Option<CommsOperation>, ActionError>)> {
    out.into_iter()
        .filter_map(|o| match o {
            Output::Reply { ticket, result } => Some((ticket, result)),
            _ => None,
        })
        .collect()
}

fn media_connected(c: &mut CallCore, now: Instant) -> Vec<Output> {
    feed(c, vec![Input::Media(MediaEvent::MediaConnected)], now)
}

#[test]
fn states_and_rosters_become_events_and_binds() {
    let t0 = Instant::now();
    let mut c = core(t0);
    let out = feed(&mut c, state("established"), t0);
    assert!(matches!(
        &out[..],
        [Output::Event(CallEvent::StateChanged {
            to: CallState::Established,
            ..
        })]
    ));
    let out = feed(&mut c, roster(&[("a", 11), ("b", 12)]), t0);
    let mut bound = binds(&out);
    bound.sort();
    assert_eq!(bound, [(true, SourceId(11)), (true, SourceId(12))]);
    // The same roster again changes nothing; without b, b's source is unbound.
    assert!(feed(&mut c, roster(&[("a", 11), ("b", 12)]), t0).is_empty());
    let out = feed(&mut c, roster(&[("a", 11)]), t0);
    assert_eq!(binds(&out), [(false, SourceId(12))]);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Event(CallEvent::ParticipantLeft(..))))
    );
    assert_eq!(c.roster().len(), 1);
    assert_eq!(c.state(), Some(&CallState::Established));
}

#[test]
fn the_end_unbinds_everyone_closes_media_after_the_grace_and_releases_once() {
    let t0 = Instant::now();
    let mut c = core(t0);
    feed(&mut c, state("established"), t0);
    media_connected(&mut c, t0);
    feed(&mut c, roster(&[("a", 11)]), t0);
    let out = feed(&mut c, terminated(200, 0), t0 + SEC);
    assert_eq!(binds(&out), [(false, SourceId(11))]);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Event(CallEvent::Terminated(Some(_)))))
    );
    assert!(c.is_ended() && !c.is_released());
    // The service gets the grace to close media itself.
    assert_eq!(c.poll_timeout(), Some(t0 + SEC * 3));
    assert!(tick(&mut c, t0 + SEC * 2).is_empty());
    let out = tick(&mut c, t0 + SEC * 3);
    assert!(matches!(&out[..], [Output::Media(MediaCommand::Close(_))]));
    let out = feed(
        &mut c,
        vec![Input::Media(MediaEvent::Ended(EndReason::HangUpByBot {
            reason: "call ended".into(),
        }))],
        t0 + SEC * 3,
    );
    assert!(matches!(out.last(), Some(Output::Release)));
    assert!(c.is_released());
    assert_eq!(c.poll_timeout(), None);
    // Nothing more comes out of a released core.
    assert!(feed(&mut c, state("established"), t0 + SEC * 4).is_empty());
}

#[test]
fn media_closed_by_the_service_first_releases_at_the_end() {
    let t0 = Instant::now();
    let mut c = core(t0);
    media_connected(&mut c, t0);
    let out = feed(
        &mut c,
        vec![Input::Media(MediaEvent::Ended(
            EndReason::HangUpByService {
                reason: "bye".into(),
            },
        ))],
        t0,
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Media(MediaCommand::SetSending(false))))
    );
    assert!(!c.is_released(), "the call itself goes on");
    let out = feed(&mut c, terminated(200, 0), t0 + SEC);
    assert!(matches!(out.last(), Some(Output::Release)));
}

#[test]
fn an_invite_resolves_from_its_operation_by_id() {
    let t0 = Instant::now();
    let mut c = core(t0);
    let who = vec![];
    let out = feed(
        &mut c,
        vec![Input::App(AppRequest::Action(
            Ticket(7),
            CallAction::Invite(who),
        ))],
        t0,
    );
    let [
        (
            id,
            CallRequest::Invite {
                client_context,
                group: false,
                ..
            },
        ),
    ] = &requests(&out)[..]
    else {
        panic!("{out:?}")
    };
    assert!(client_context.contains(CALL));
    assert_eq!(c.poll_timeout(), Some(t0 + SEC * 60));
    let out = feed(
        &mut c,
        vec![Input::Response {
            id: *id,
            result: Ok(Some(op("op-1", "running"))),
        }],
        t0,
    );
    assert!(out.is_empty());
    // The outcome names the operation by id (and a different context): matched by id.
    let out = feed(
        &mut c,
        operation(Some("op-1"), "other", "completed"),
        t0 + SEC,
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Event(CallEvent::OperationFinished(_))))
    );
    let r = replies(out);
    assert!(matches!(&r[..], [(Ticket(7), Ok(Some(_)))]), "{r:?}");
    assert_eq!(c.pending_requests(), 0);
}

#[test]
fn an_action_without_a_response_body_resolves_by_client_context() {
    let t0 = Instant::now();
    let mut c = core(t0);
    let out = feed(
        &mut c,
        vec![Input::App(AppRequest::Action(
            Ticket(1),
            CallAction::MuteSelf,
        ))],
        t0,
    );
    let [(id, CallRequest::MuteSelf { client_context })] = &requests(&out)[..] else {
        panic!("{out:?}")
    };
    let ctx = client_context.clone();
    // The outcome may beat the HTTP response.
    let out = feed(&mut c, operation(None, &ctx, "failed"), t0);
    let r = replies(out);
    assert!(
        matches!(&r[..], [(Ticket(1), Err(ActionError::OperationFailed(_)))]),
        "{r:?}"
    );
    // The late response changes nothing and answers nobody twice.
    let out = feed(
        &mut c,
        vec![Input::Response {
            id: *id,
            result: Ok(None),
        }],
        t0,
    );
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn an_action_times_out_or_fails_with_the_services_error() {
    let t0 = Instant::now();
    let mut c = core(t0);
    let out = feed(
        &mut c,
        vec![
            Input::App(AppRequest::Action(Ticket(1), CallAction::UnmuteSelf)),
            Input::App(AppRequest::Action(
                Ticket(2),
                CallAction::UpdateRecordingStatus(
                    graph_signaling::models::RecordingStatus::Recording,
                ),
            )),
        ],
        t0,
    );
    let reqs = requests(&out);
    assert_eq!(reqs.len(), 2);
    let r = replies(feed(
        &mut c,
        vec![Input::Response {
            id: reqs[1].0,
            result: Err(http(403)),
        }],
        t0,
    ));
    assert!(
        matches!(&r[..], [(Ticket(2), Err(ActionError::Graph(e)))] if e.status() == Some(403)),
        "{r:?}"
    );
    assert!(tick(&mut c, t0 + SEC * 59).is_empty());
    let r = replies(tick(&mut c, t0 + SEC * 60));
    assert!(
        matches!(&r[..], [(Ticket(1), Err(ActionError::TimedOut))]),
        "{r:?}"
    );
}

#[test]
fn keepalive_repeats_retries_and_a_404_ends_the_call() {
    let t0 = Instant::now();
    let mut c = core(t0);
    feed(&mut c, roster(&[("a", 11)]), t0);
    let every = config().keepalive_interval;
    assert_eq!(c.poll_timeout(), Some(t0 + every));
    let out = tick(&mut c, t0 + every);
    let [(id, CallRequest::KeepAlive)] = &requests(&out)[..] else {
        panic!("{out:?}")
    };
    // While one is in flight, no second one.
    assert_eq!(c.poll_timeout(), None);
    feed(
        &mut c,
        vec![Input::Response {
            id: *id,
            result: Ok(None),
        }],
        t0 + every,
    );
    assert_eq!(c.poll_timeout(), Some(t0 + every * 2));
    let out = tick(&mut c, t0 + every * 2);
    let (id, _) = requests(&out)[0].clone();
    feed(
        &mut c,
        vec![Input::Response {
            id,
            result: Err(http(503)),
        }],
        t0 + every * 2,
    );
    // A failed keepAlive is retried within a minute, not a whole interval later.
    assert_eq!(c.poll_timeout(), Some(t0 + every * 2 + SEC * 60));
    let out = tick(&mut c, t0 + every * 2 + SEC * 60);
    let (id, _) = requests(&out)[0].clone();
    let out = feed(
        &mut c,
        vec![Input::Response {
            id,
            result: Err(http(404)),
        }],
        t0 + every * 3,
    );
    assert_eq!(binds(&out), [(false, SourceId(11))]);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Event(CallEvent::Terminated(None))))
    );
    assert!(c.is_ended());
}

#[test]
fn a_hang_up_is_answered_and_the_call_released_even_if_the_service_stays_silent() {
    let t0 = Instant::now();
    let mut c = core(t0);
    media_connected(&mut c, t0);
    feed(&mut c, roster(&[("a", 11)]), t0);
    let out = feed(&mut c, vec![Input::App(AppRequest::HangUp(Ticket(3)))], t0);
    let [(id, CallRequest::HangUp)] = &requests(&out)[..] else {
        panic!("{out:?}")
    };
    let r = replies(feed(
        &mut c,
        vec![Input::Response {
            id: *id,
            result: Ok(None),
        }],
        t0,
    ));
    assert!(matches!(&r[..], [(Ticket(3), Ok(None))]));
    // No terminated notification ever comes: after the release grace the call ends and
    // closes its media; its media's end releases it.
    let out = tick(&mut c, t0 + SEC * 10);
    assert_eq!(binds(&out), [(false, SourceId(11))]);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Media(MediaCommand::Close(_))))
    );
    assert!(matches!(out.last(), Some(Output::Release)), "{out:?}");
}

#[test]
fn a_session_nobody_connects_to_hangs_the_call_up() {
    let t0 = Instant::now();
    let mut c = core(t0);
    feed(&mut c, state("established"), t0);
    let out = feed(
        &mut c,
        vec![Input::Media(MediaEvent::Ended(EndReason::NeverConnected))],
        t0 + SEC * 60,
    );
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(CallEvent::MediaEnded(EndReason::NeverConnected))
    )));
    assert!(matches!(&requests(&out)[..], [(_, CallRequest::HangUp)]));
    let out = feed(&mut c, terminated(200, 0), t0 + SEC * 61);
    assert!(matches!(out.last(), Some(Output::Release)));
}

#[test]
fn an_interruption_of_connected_media_is_reported_and_does_not_stop_the_call() {
    let t0 = Instant::now();
    let mut c = core(t0);
    let interrupted =
        |c: &mut CallCore, now| feed(c, vec![Input::Media(MediaEvent::MediaInterrupted)], now);
    let resumed =
        |c: &mut CallCore, now| feed(c, vec![Input::Media(MediaEvent::MediaResumed)], now);
    // Before media connected there is nothing to interrupt.
    assert!(interrupted(&mut c, t0).is_empty());
    media_connected(&mut c, t0);
    let out = interrupted(&mut c, t0 + SEC);
    assert!(
        matches!(&out[..], [Output::Event(CallEvent::MediaInterrupted)]),
        "{out:?}"
    );
    // Sending stays on, the quality timer keeps its time, nothing is released.
    assert_eq!(c.poll_timeout(), Some(t0 + SEC * 10));
    let out = resumed(&mut c, t0 + SEC * 5);
    assert!(
        matches!(&out[..], [Output::Event(CallEvent::MediaResumed)]),
        "{out:?}"
    );
    // After media ended, a late report from the transport is nothing.
    feed(
        &mut c,
        vec![Input::Media(MediaEvent::Ended(EndReason::HangUpByBot {
            reason: "done".into(),
        }))],
        t0 + SEC * 6,
    );
    assert!(interrupted(&mut c, t0 + SEC * 7).is_empty());
    assert!(resumed(&mut c, t0 + SEC * 7).is_empty());
}

#[test]
fn connected_media_starts_sending_and_reports_quality_periodically() {
    let t0 = Instant::now();
    let mut c = core(t0);
    let out = media_connected(&mut c, t0);
    assert!(matches!(
        &out[..],
        [
            Output::Media(MediaCommand::SetSending(true)),
            Output::Event(CallEvent::MediaConnected)
        ]
    ));
    assert_eq!(c.poll_timeout(), Some(t0 + SEC * 10));
    for k in 1..=3 {
        let out = tick(&mut c, t0 + SEC * 10 * k);
        assert!(matches!(
            &out[..],
            [Output::Media(MediaCommand::ReportQuality)]
        ));
    }
}

#[test]
fn requests_pending_at_the_end_are_answered_call_ended() {
    let t0 = Instant::now();
    let mut c = core(t0);
    feed(
        &mut c,
        vec![Input::App(AppRequest::Action(
            Ticket(9),
            CallAction::MuteSelf,
        ))],
        t0,
    );
    let r = replies(feed(&mut c, terminated(200, 0), t0));
    assert!(matches!(&r[..], [(Ticket(9), Err(ActionError::CallEnded))]));
    // Asked after the end: answered at once.
    let r = replies(feed(
        &mut c,
        vec![
            Input::App(AppRequest::Action(Ticket(10), CallAction::UnmuteSelf)),
            Input::App(AppRequest::HangUp(Ticket(11))),
        ],
        t0,
    ));
    assert!(matches!(
        &r[..],
        [
            (Ticket(10), Err(ActionError::CallEnded)),
            (Ticket(11), Ok(None))
        ]
    ));
}

#[test]
fn time_that_goes_backwards_is_taken_as_the_last_time_seen() {
    let t0 = Instant::now();
    let mut c = core(t0 + SEC * 5);
    media_connected(&mut c, t0 + SEC * 5);
    // An input stamped earlier does not move the quality timer back.
    feed(&mut c, state("established"), t0);
    assert_eq!(c.poll_timeout(), Some(t0 + SEC * 15));
}

#[test]
fn notifications_of_other_calls_are_ignored() {
    let t0 = Instant::now();
    let mut c = CallCore::new("another", Direction::Incoming, false, config(), t0);
    assert!(feed(&mut c, state("established"), t0).is_empty());
    assert_eq!(c.state(), None);
}

#[test]
fn an_incoming_offer_is_recognised() {
    let offer = notes(json!({"value": [{"changeType": "created",
        "resourceUrl": format!("/communications/calls/{CALL}"),
        "resourceData": {"@odata.type": "#microsoft.graph.call", "state": "incoming", "id": CALL}}]}));
    let Input::Notification(n) = &offer[0] else {
        unreachable!()
    };
    assert!(is_incoming_offer(n));
    let Input::Notification(n) = &state("established")[0] else {
        unreachable!()
    };
    assert!(!is_incoming_offer(n));
    assert!(!is_incoming_offer(&gone(CALL)));
}

/// The documented completion of an invite (its operation id is `null`) resolves the invite by
/// `clientContext`, even when the context is the service's echo of what the bot sent.
#[test]
fn the_documented_invite_completion_resolves_by_client_context() {
    let t0 = Instant::now();
    let call = "7531d31f-d10d-44de-802f-c569dbca451c";
    let mut c = CallCore::new(call, Direction::Outgoing, true, config(), t0);
    let out = feed(
        &mut c,
        vec![Input::App(AppRequest::Action(
            Ticket(1),
            CallAction::Invite(Vec::new()),
        ))],
        t0,
    );
    let [(id, CallRequest::Invite { group: true, .. })] = &requests(&out)[..] else {
        panic!("{out:?}")
    };
    // The service echoes the context the bot chose; the documented text carries another
    // one, so it is swapped in as the service would have written it.
    let CallRequest::Invite { client_context, .. } = &requests(&out)[0].1 else {
        unreachable!()
    };
    let text = include_str!(
        "../../crates/graph-signaling/tests/fixtures/invite-participants-36-notification.json"
    )
    .replace("f2fa86af-3c51-4bc2-8fc0-475452d9764f", client_context);
    let batch = CommsNotifications::parse(text.as_bytes()).unwrap();
    feed(
        &mut c,
        vec![Input::Response {
            id: *id,
            result: Ok(None),
        }],
        t0,
    );
    let inputs = batch
        .value
        .into_iter()
        .map(|n| Input::Notification(Box::new(n)))
        .collect();
    let r = replies(feed(&mut c, inputs, t0 + SEC));
    let [(Ticket(1), Ok(Some(op)))] = &r[..] else {
        panic!("{r:?}")
    };
    assert!(op.is_finished() && op.id.get().is_none());
}

fn service_hosted(t0: Instant) -> CallCore {
    let config = CallConfig {
        media: MediaHosting::Service,
        ..config()
    };
    CallCore::new(CALL, Direction::Incoming, false, config, t0)
}

#[test]
fn a_service_hosted_call_binds_nothing_and_is_released_when_it_ends() {
    let t0 = Instant::now();
    let mut c = service_hosted(t0);
    feed(&mut c, state("established"), t0);
    let out = feed(&mut c, roster(&[("a", 11)]), t0);
    assert!(binds(&out).is_empty(), "no pipeline to bind to: {out:?}");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Event(CallEvent::ParticipantJoined(..))))
    );
    assert!(!c.media_connected());
    // A key is an event.
    let key = notes(json!({"value": [{"changeType": "updated",
        "resourceUrl": format!("/communications/calls/{CALL}"),
        "resourceData": {"@odata.type": "#microsoft.graph.call", "state": "established",
            "toneInfo": {"sequenceId": 1, "tone": "tone2"}}}]}));
    let out = feed(&mut c, key, t0);
    assert!(
        matches!(&out[..], [Output::Event(CallEvent::Tone(t))] if t.tone.as_char() == Some('2')),
        "{out:?}"
    );
    // No media session to close: the end is the release.
    let out = feed(&mut c, terminated(200, 0), t0 + SEC);
    assert!(binds(&out).is_empty());
    assert!(
        !out.iter().any(|o| matches!(o, Output::Media(_))),
        "no media commands: {out:?}"
    );
    assert!(matches!(out.last(), Some(Output::Release)), "{out:?}");
}

#[test]
fn a_prompt_is_played_through_an_operation_and_refused_on_app_hosted_media() {
    use graph_signaling::models::MediaPrompt;
    let t0 = Instant::now();
    let prompts = vec![MediaPrompt::new(
        "https://prompts.example.com/menu.wav",
        None,
    )];
    // App-hosted: refused at once, nothing sent.
    let mut app = core(t0);
    feed(&mut app, state("established"), t0);
    let out = feed(
        &mut app,
        vec![Input::App(AppRequest::Action(
            Ticket(1),
            CallAction::PlayPrompt(prompts.clone()),
        ))],
        t0,
    );
    assert!(requests(&out).is_empty());
    assert!(matches!(
        &replies(out)[..],
        [(
            Ticket(1),
            Err(ActionError::NeedsServiceHostedMedia("playPrompt"))
        )]
    ));
    // Service-hosted: sent, running, then completed by its notification.
    let mut c = service_hosted(t0);
    feed(&mut c, state("established"), t0);
    let out = feed(
        &mut c,
        vec![Input::App(AppRequest::Action(
            Ticket(2),
            CallAction::PlayPrompt(prompts),
        ))],
        t0,
    );
    let sent = requests(&out);
    let [(id, CallRequest::PlayPrompt { client_context, .. })] = &sent[..] else {
        panic!("{sent:?}");
    };
    let out = feed(
        &mut c,
        vec![Input::Response {
            id: *id,
            result: Ok(Some(op("op-1", "running"))),
        }],
        t0,
    );
    assert!(replies(out).is_empty(), "still running");
    let out = feed(
        &mut c,
        operation(Some("op-1"), client_context, "completed"),
        t0 + SEC,
    );
    assert!(matches!(&replies(out)[..], [(Ticket(2), Ok(Some(_)))]));
}
