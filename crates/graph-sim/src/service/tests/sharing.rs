//! Screens shared by people and by the bot, and the large gallery, as the bot sees them.

use super::*;
use crate::scenario::ScreenShare;

/// A call to Alice, who shares her screen `share`; the call is established.
fn call_with_sharer(share: ScreenShare) -> (Harness, String) {
    let mut alice = SimUser::new("Alice", Voice::Speech);
    alice.shares = Some(share);
    let mut h = Harness::new(Scenario {
        users: vec![alice],
        ..Scenario::default()
    });
    let id = h.create_p2p(&user_id(&h, "Alice"));
    h.advance(Duration::from_millis(300));
    assert_eq!(h.states(&id).last(), Some(&CallState::Established));
    (h, id)
}

/// Sessions the bot was told of, in order: (started?, id).
fn sharing_events(h: &Harness) -> Vec<(bool, String)> {
    h.events
        .iter()
        .filter_map(|(_, e)| match e {
            SignalingEvent::ContentSharingStarted(id) => Some((true, id.clone())),
            SignalingEvent::ContentSharingEnded(id) => Some((false, id.clone())),
            _ => None,
        })
        .collect()
}

/// The media types of the latest entry the bot saw for `who` (`None`: the bot itself).
fn streams_of(h: &Harness, who: Option<&str>) -> Vec<String> {
    h.events
        .iter()
        .rev()
        .find_map(|(_, e)| match (e, who) {
            (SignalingEvent::SelfUpdated(p), None) => Some(p),
            (
                SignalingEvent::ParticipantJoined(_, p) | SignalingEvent::ParticipantUpdated(_, p),
                Some(name),
            ) if p.identity_label().contains(name) => Some(p),
            _ => None,
        })
        .map(|p| {
            p.media_streams
                .get()
                .into_iter()
                .flatten()
                .map(|s| {
                    format!(
                        "{}/{}",
                        s.media_type.as_str(),
                        serde_json::to_value(&s.direction)
                            .unwrap()
                            .as_str()
                            .unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn sessions(h: &mut Harness, call: &str) -> Vec<String> {
    let r = h.request(
        Method::Get,
        &format!("/communications/calls/{call}/contentSharingSessions"),
        &Value::Null,
    );
    assert_eq!(r.status, 200);
    r.body.unwrap()["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

fn role(h: &mut Harness, call: &str, role: &str) -> ApiResponse {
    h.request(
        Method::Post,
        &format!("/communications/calls/{call}/changeScreenSharingRole"),
        &json!({"role": role}),
    )
}

#[test]
fn a_person_sharing_a_screen_is_a_session_and_a_stream_for_its_length() {
    let (mut h, call) = call_with_sharer(ScreenShare {
        from_ms: 1_000,
        for_ms: Some(2_000),
    });
    let alice = user_id(&h, "Alice");
    assert!(sessions(&mut h, &call).is_empty());
    h.advance(Duration::from_millis(1_100));
    let started = sharing_events(&h);
    assert_eq!(started.len(), 1, "{started:?}");
    let sid = started[0].1.clone();
    assert_eq!(sessions(&mut h, &call), vec![sid.clone()]);
    let one = h.request(
        Method::Get,
        &format!("/communications/calls/{call}/contentSharingSessions/{sid}"),
        &Value::Null,
    );
    assert_eq!(one.status, 200);
    assert_eq!(
        streams_of(&h, Some(&alice)),
        ["audio/sendReceive", "videoBasedScreenSharing/sendOnly"]
    );
    h.advance(Duration::from_secs(2));
    assert_eq!(
        sharing_events(&h),
        vec![(true, sid.clone()), (false, sid.clone())]
    );
    assert!(sessions(&mut h, &call).is_empty());
    assert_eq!(streams_of(&h, Some(&alice)), ["audio/sendReceive"]);
    let gone = h.request(
        Method::Get,
        &format!("/communications/calls/{call}/contentSharingSessions/{sid}"),
        &Value::Null,
    );
    assert_eq!(gone.status, 404);
}

#[test]
fn the_bot_as_sharer_takes_over_and_as_viewer_stops() {
    let (mut h, call) = call_with_sharer(ScreenShare {
        from_ms: 0,
        for_ms: None,
    });
    let alice = user_id(&h, "Alice");
    h.advance(Duration::from_millis(100));
    let hers = sharing_events(&h)[0].1.clone();
    assert_eq!(role(&mut h, &call, "sharer").status, 202);
    h.advance(Duration::from_millis(100));
    let events = sharing_events(&h);
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[1], (false, hers), "her share ends first");
    assert!(events[2].0);
    assert_eq!(sessions(&mut h, &call), vec![events[2].1.clone()]);
    assert_eq!(streams_of(&h, Some(&alice)), ["audio/sendReceive"]);
    assert_eq!(
        streams_of(&h, None),
        ["audio/sendReceive", "videoBasedScreenSharing/sendOnly"]
    );
    assert_eq!(role(&mut h, &call, "viewer").status, 202);
    h.advance(Duration::from_millis(100));
    assert_eq!(sharing_events(&h).len(), 4);
    assert!(sessions(&mut h, &call).is_empty());
    assert_eq!(streams_of(&h, None), ["audio/sendReceive"]);
    assert_eq!(role(&mut h, &call, "presenter").status, 400);
}

#[test]
fn the_large_gallery_is_a_video_stream_on_the_bots_entry() {
    let (mut h, call) = call_with_sharer(ScreenShare {
        from_ms: 60_000,
        for_ms: None,
    });
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/addLargeGalleryView"),
        &json!({"clientContext": "g"}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    h.advance(Duration::from_millis(100));
    assert_eq!(
        streams_of(&h, None),
        ["audio/sendReceive", "video/receiveOnly"]
    );
}

#[test]
fn screen_sharing_and_gallery_need_app_hosted_media() {
    let mut h = Harness::new(Scenario::two_users());
    let mut body = p2p_body(&user_id(&h, "Alice"));
    body["mediaConfig"] = json!({"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"});
    let r = h.request(Method::Post, "/communications/calls", &body);
    let call = r.body.unwrap()["id"].as_str().unwrap().to_owned();
    h.advance(Duration::from_millis(300));
    assert_eq!(role(&mut h, &call, "sharer").status, 400);
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/addLargeGalleryView"),
        &json!({}),
    );
    assert_eq!(r.status, 400);
}
