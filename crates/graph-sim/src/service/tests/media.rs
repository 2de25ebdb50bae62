//! Service-hosted media: prompts, recordings, keys and DTMF, on made-up time, read back by the
//! bot's own parser and state machine.

use std::sync::Arc;

use super::*;
use crate::scenario::{Presses, Turns};

const MENU: &str = "http://127.0.0.1:9/prompts/menu.wav";

/// A scenario user who presses `presses`, called by the bot with service-hosted media; the
/// call is established.
fn service_hosted_call(presses: &str) -> (Harness, String) {
    service_hosted_call_with(presses, None, SimConfig::default())
}

/// As [`service_hosted_call`], Alice talking in `talks` (always when `None`), under `config`.
fn service_hosted_call_with(
    presses: &str,
    talks: Option<Turns>,
    config: SimConfig,
) -> (Harness, String) {
    let mut alice = SimUser::new("Alice", Voice::Speech);
    alice.presses = Presses::try_from(presses.to_owned()).unwrap();
    alice.talks = talks;
    let mut h = Harness::with_config(
        config,
        Scenario {
            users: vec![alice],
            ..Scenario::default()
        },
    );
    let mut body = p2p_body(&user_id(&h, "Alice"));
    body["mediaConfig"] = json!({"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"});
    let response = h.request(Method::Post, "/communications/calls", &body);
    assert_eq!(response.status, 201, "{:?}", response.body);
    let id = response.body.unwrap()["id"].as_str().unwrap().to_owned();
    h.advance(Duration::from_millis(300));
    assert_eq!(h.states(&id).last(), Some(&CallState::Established));
    (h, id)
}

/// One second of a recognisable signal.
fn one_second() -> PromptAudio {
    Ok(Arc::from(
        (0..16_000).map(|i| (i % 100) as i16).collect::<Vec<_>>(),
    ))
}

fn play(h: &mut Harness, call: &str, context: &str, uri: &str) -> ApiResponse {
    let body = json!({"clientContext": context, "prompts": [{
        "@odata.type": "#microsoft.graph.mediaPrompt",
        "mediaInfo": {"@odata.type": "#microsoft.graph.mediaInfo", "uri": uri}}]});
    h.request(
        Method::Post,
        &format!("/communications/calls/{call}/playPrompt"),
        &body,
    )
}

/// The operations the bot saw finish: (clientContext, status, code, subcode).
fn finished(h: &Harness) -> Vec<(String, String, i64, i64)> {
    h.events
        .iter()
        .filter_map(|(_, e)| match e {
            SignalingEvent::OperationFinished(op) => {
                let info = op.result_info.get();
                Some((
                    op.client_context.get().cloned().unwrap_or_default(),
                    op.status.get().map(|s| format!("{:?}", s.kind()))?,
                    info.and_then(|i| i.code.get().copied()).unwrap_or_default(),
                    info.and_then(|i| i.subcode.get().copied())
                        .unwrap_or_default(),
                ))
            }
            _ => None,
        })
        .collect()
}

fn played(h: &Harness) -> Vec<(Instant, usize)> {
    h.sim_events
        .iter()
        .filter_map(|e| match e {
            SimEvent::Played { at, audio, .. } => Some((*at, audio.len())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_prompt_plays_for_its_length_and_the_next_one_waits_its_turn() {
    let (mut h, call) = service_hosted_call("");
    let path = format!("/communications/calls/{call}/playPrompt");
    assert_eq!(
        h.sim.prompts_to_fetch(
            &path,
            br#"{"prompts":[{"mediaInfo":{"uri":"http://127.0.0.1:9/prompts/menu.wav"}}]}"#
        ),
        vec![MENU.to_owned()]
    );
    h.sim.provide_prompt(MENU, one_second());
    assert!(
        h.sim
            .prompts_to_fetch(
                &path,
                br#"{"prompts":[{"mediaInfo":{"uri":"http://127.0.0.1:9/prompts/menu.wav"}}]}"#
            )
            .is_empty()
    );
    let t0 = h.now;
    let first = play(&mut h, &call, "first", MENU);
    assert_eq!(first.status, 200, "{:?}", first.body);
    let body = first.body.unwrap();
    assert_eq!(body["@odata.type"], "#microsoft.graph.playPromptOperation");
    assert_eq!(body["status"], "running");
    assert!(
        first
            .location
            .unwrap()
            .ends_with(&format!("/operations/{}", body["id"].as_str().unwrap()))
    );
    let second = play(&mut h, &call, "second", MENU);
    assert_eq!(second.status, 200);
    h.drain();
    // Both are heard, one after the other.
    assert_eq!(
        played(&h),
        vec![(t0, 16_000), (t0 + Duration::from_secs(1), 16_000)]
    );
    h.advance(Duration::from_millis(990));
    assert!(finished(&h).is_empty());
    h.advance(Duration::from_millis(20));
    assert_eq!(
        finished(&h),
        vec![("first".into(), "Completed".into(), 200, 0)]
    );
    h.advance(Duration::from_secs(1));
    assert_eq!(finished(&h).len(), 2);
}

#[test]
fn media_actions_need_service_hosted_media_and_known_prompts() {
    let mut h = Harness::new(Scenario::two_users());
    let app_hosted = h.create_p2p(&user_id(&h, "Alice"));
    h.advance(Duration::from_millis(300));
    h.sim.provide_prompt(MENU, one_second());
    let refused = play(&mut h, &app_hosted, "x", MENU);
    assert_eq!(refused.status, 400);
    assert!(
        refused
            .body
            .unwrap()
            .to_string()
            .contains("serviceHostedMediaConfig")
    );
    // A prompt the service could not fetch fails its operation (the request itself is taken).
    let (mut h, call) = service_hosted_call("");
    h.sim.provide_prompt(MENU, Err("HTTP 404".into()));
    assert_eq!(play(&mut h, &call, "missing", MENU).status, 200);
    h.advance(Duration::from_millis(10));
    assert_eq!(
        finished(&h),
        vec![("missing".into(), "Failed".into(), 400, 8520)]
    );
    assert!(played(&h).is_empty(), "nothing is heard");
}

#[test]
fn cancelling_fails_the_queue_and_cuts_what_was_still_to_be_heard() {
    let (mut h, call) = service_hosted_call("");
    h.sim.provide_prompt(MENU, one_second());
    play(&mut h, &call, "a", MENU);
    play(&mut h, &call, "b", MENU);
    h.advance(Duration::from_millis(500));
    let cancel = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/cancelMediaProcessing"),
        &json!({"clientContext": "c"}),
    );
    assert_eq!(cancel.status, 200);
    assert_eq!(cancel.body.unwrap()["status"], "completed");
    h.advance(Duration::from_secs(3));
    let mut done = finished(&h);
    done.sort();
    assert_eq!(
        done,
        vec![
            ("a".into(), "Failed".into(), 400, 8508),
            ("b".into(), "Failed".into(), 400, 8508)
        ]
    );
    let cut = h.sim_events.iter().find_map(|e| match e {
        SimEvent::MediaCut { at, .. } => Some(*at),
        _ => None,
    });
    assert!(cut.is_some());
    let op = h
        .posted
        .iter()
        .rev()
        .find(|p| p.to_string().contains("operationCanceled"));
    assert!(op.is_some(), "the documented completionReason is sent");
}

fn tones(h: &Harness) -> Vec<(i64, char)> {
    h.events
        .iter()
        .filter_map(|(_, e)| match e {
            SignalingEvent::Tone(t) => Some((t.sequence_id, t.tone.as_char()?)),
            _ => None,
        })
        .collect()
}

#[test]
fn keys_pressed_reach_a_subscribed_bot_in_order() {
    // Alice answers 100 ms after the call is placed; her keys count from then.
    let (mut h, call) = service_hosted_call("1@400ms, #@900ms, 5@3000ms");
    h.advance(Duration::from_millis(200));
    assert!(tones(&h).is_empty(), "no subscription, no keys");
    let sub = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/subscribeToTone"),
        &json!({"clientContext": "tones"}),
    );
    assert_eq!(sub.status, 200);
    assert_eq!(
        sub.body.unwrap()["@odata.type"],
        "#microsoft.graph.subscribeToToneOperation"
    );
    h.advance(Duration::from_secs(3));
    assert_eq!(
        tones(&h),
        vec![(1, '#'), (2, '5')],
        "the key before subscribing is lost"
    );
}

#[test]
fn a_recorded_response_ends_at_a_key_and_is_served_with_its_token() {
    let (mut h, call) = service_hosted_call("9@2000ms");
    h.request(
        Method::Post,
        &format!("/communications/calls/{call}/subscribeToTone"),
        &json!({}),
    );
    h.sim.provide_prompt(MENU, one_second());
    let body = json!({"clientContext": "rec", "maxRecordDurationInSeconds": 10, "stopTones": ["9"],
        "prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": MENU}}]});
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/recordResponse"),
        &body,
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body.unwrap()["@odata.type"],
        "#microsoft.graph.recordOperation"
    );
    h.advance(Duration::from_secs(3));
    assert_eq!(
        finished(&h),
        vec![("rec".into(), "Completed".into(), 200, 8514)]
    );
    let op = h
        .events
        .iter()
        .find_map(|(_, e)| match e {
            SignalingEvent::OperationFinished(op) => op.recording(),
            _ => None,
        })
        .expect("a recording location");
    let id = op.location.rsplit('/').next().unwrap();
    assert_eq!(op.location, h.sim.recording_location(id));
    assert_eq!(h.sim.recording(id).unwrap().access_token, op.access_token);
    // Prompt (1 s) and beep (0.25 s) first; the recording runs until the key.
    let (from, to) = h
        .sim_events
        .iter()
        .find_map(|e| match e {
            SimEvent::Recorded { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .unwrap();
    assert!(to > from);
    assert_eq!(played(&h)[0].1, 16_000 + 4_000, "prompt and beep");
    // Out-of-range settings are refused as Graph refuses them.
    let bad = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/recordResponse"),
        &json!({"maxRecordDurationInSeconds": 121}),
    );
    assert_eq!(bad.status, 400);
}

#[test]
fn dtmf_the_service_sends_is_heard_and_completes() {
    let (mut h, call) = service_hosted_call("");
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/sendDtmfTones"),
        &json!({"tones": ["tone1", "pound"], "delayBetweenTonesMs": 200, "clientContext": "d"}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    h.drain();
    assert_eq!(played(&h)[0].1, 1_600 + 3_200 + 1_600);
    h.advance(Duration::from_millis(450));
    assert_eq!(finished(&h), vec![("d".into(), "Completed".into(), 200, 0)]);
    let bad = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/sendDtmfTones"),
        &json!({"tones": ["tone42"]}),
    );
    assert_eq!(bad.status, 400);
}

/// Starts a recorded response without prompt or beep; returns when it started.
fn record(h: &mut Harness, call: &str, body: Value) -> Instant {
    let mut body = body;
    body["clientContext"] = json!("rec");
    body["playBeep"] = json!(false);
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/recordResponse"),
        &body,
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    h.now
}

/// The completion reason of the recording operation the bot saw finish.
fn completion_reason(h: &Harness) -> Option<String> {
    h.events.iter().find_map(|(_, e)| match e {
        SignalingEvent::OperationFinished(op) => op.completion_reason.get().cloned(),
        _ => None,
    })
}

fn recorded_span(h: &Harness) -> Option<Duration> {
    h.sim_events.iter().find_map(|e| match e {
        SimEvent::Recorded { from, to, .. } => Some(*to - *from),
        _ => None,
    })
}

#[test]
fn only_the_stop_tones_end_a_recording() {
    let (mut h, call) = service_hosted_call("5@1000ms, #@2000ms");
    record(
        &mut h,
        &call,
        json!({"stopTones": ["#"], "maxRecordDurationInSeconds": 10}),
    );
    h.advance(Duration::from_millis(1_500));
    assert!(finished(&h).is_empty(), "5 is not a stop tone");
    h.advance(Duration::from_millis(1_000));
    assert_eq!(
        finished(&h),
        vec![("rec".into(), "Completed".into(), 200, 8514)]
    );
    assert_eq!(completion_reason(&h).as_deref(), Some("stopToneDetected"));
    // Without stop tones, keys never end it: the longest duration does.
    let (mut h, call) = service_hosted_call("1@500ms");
    record(&mut h, &call, json!({"maxRecordDurationInSeconds": 2}));
    h.advance(Duration::from_secs(3));
    assert_eq!(
        finished(&h),
        vec![("rec".into(), "Completed".into(), 200, 8515)]
    );
    assert_eq!(
        completion_reason(&h).as_deref(),
        Some("maxRecordDurationReached")
    );
    assert_eq!(recorded_span(&h), Some(Duration::from_secs(2)));
    // A stop tone must be a keypad key.
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/recordResponse"),
        &json!({"stopTones": ["tone1"]}),
    );
    assert_eq!(r.status, 400);
}

#[test]
fn a_caller_who_never_speaks_fails_the_recording_at_the_initial_silence_timeout() {
    // Alice only starts talking a minute into the call.
    let talks = Turns {
        every_ms: 120_000,
        for_ms: 1_000,
        from_ms: 60_000,
    };
    let (mut h, call) = service_hosted_call_with("", Some(talks), SimConfig::default());
    record(
        &mut h,
        &call,
        json!({"initialSilenceTimeoutInSeconds": 3, "maxRecordDurationInSeconds": 20}),
    );
    h.advance(Duration::from_millis(2_900));
    assert!(finished(&h).is_empty());
    h.advance(Duration::from_millis(200));
    assert_eq!(
        finished(&h),
        vec![("rec".into(), "Failed".into(), 400, 8517)]
    );
    assert_eq!(
        completion_reason(&h).as_deref(),
        Some("initialSilenceTimeout")
    );
    assert_eq!(recorded_span(&h), None, "nothing is kept");
    assert_eq!(h.sim.recordings_held(), 0);
}

#[test]
fn a_pause_after_speech_ends_the_recording_at_the_max_silence_timeout() {
    // From the call's start Alice talks 2 s of every 30 s.
    let talks = Turns {
        every_ms: 30_000,
        for_ms: 2_000,
        from_ms: 0,
    };
    let (mut h, call) = service_hosted_call_with("", Some(talks), SimConfig::default());
    record(
        &mut h,
        &call,
        json!({"maxSilenceTimeoutInSeconds": 1, "maxRecordDurationInSeconds": 30}),
    );
    h.advance(Duration::from_secs(5));
    assert_eq!(
        finished(&h),
        vec![("rec".into(), "Completed".into(), 200, 8516)]
    );
    assert_eq!(completion_reason(&h).as_deref(), Some("maxSilenceTimeout"));
    // Her turn ends 2 s after the call was established; one second of silence later (within
    // a 20 ms step) the recording ends.
    let (from, to, clock_ms) = h
        .sim_events
        .iter()
        .find_map(|e| match e {
            SimEvent::Recorded {
                from, to, clock_ms, ..
            } => Some((*from, *to, *clock_ms)),
            _ => None,
        })
        .unwrap();
    assert!(
        clock_ms < 2_000,
        "the recording started within her turn: {clock_ms} ms"
    );
    let end_ms = clock_ms + (to - from).as_millis() as u64;
    assert!((3_000..=3_040).contains(&end_ms), "ended at {end_ms} ms");
}

#[test]
fn recordings_are_discarded_a_while_after_their_call_ends() {
    let config = SimConfig {
        recording_retention: Duration::from_secs(60),
        ..SimConfig::default()
    };
    let (mut h, call) = service_hosted_call_with("", None, config);
    record(&mut h, &call, json!({"maxRecordDurationInSeconds": 1}));
    h.advance(Duration::from_secs(2));
    let op = h
        .events
        .iter()
        .find_map(|(_, e)| match e {
            SignalingEvent::OperationFinished(op) => op.recording(),
            _ => None,
        })
        .expect("a recording");
    let id = op.location.rsplit('/').next().unwrap().to_owned();
    let r = h.request(
        Method::Delete,
        &format!("/communications/calls/{call}"),
        &json!({}),
    );
    assert!(r.status < 300, "{r:?}");
    h.advance(Duration::from_secs(30));
    assert!(
        h.sim.recording(&id).is_some(),
        "still downloadable after the call"
    );
    h.advance(Duration::from_secs(31));
    assert!(h.sim.recording(&id).is_none());
    assert_eq!(h.sim.recordings_held(), 0);
    assert!(h.sim_events.iter().any(|e| matches!(e,
        SimEvent::RecordingsDiscarded { recording_ids, .. } if *recording_ids == [id.clone()])));
}

#[test]
fn a_prompt_that_failed_to_fetch_is_fetched_again_next_time() {
    let (mut h, call) = service_hosted_call("");
    let body = json!({"prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt",
        "mediaInfo": {"uri": MENU}}]});
    let path = format!("/communications/calls/{call}/playPrompt");
    let raw = serde_json::to_vec(&body).unwrap();
    assert_eq!(h.sim.prompts_to_fetch(&path, &raw), vec![MENU.to_owned()]);
    h.sim.provide_prompt(MENU, Err("HTTP 503".into()));
    play(&mut h, &call, "first", MENU);
    h.advance(Duration::from_millis(100));
    assert_eq!(
        finished(&h),
        vec![("first".into(), "Failed".into(), 400, 8520)]
    );
    assert_eq!(h.sim.prompts_to_fetch(&path, &raw), vec![MENU.to_owned()]);
    h.sim.provide_prompt(MENU, one_second());
    play(&mut h, &call, "second", MENU);
    assert!(
        h.sim.prompts_to_fetch(&path, &raw).is_empty(),
        "kept once fetched"
    );
    assert_eq!(h.sim.prompt_cache_size(), (1, 16_000));
}
