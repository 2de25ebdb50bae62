//! What the API accepts and refuses: tokens, validation, throttling, loopback callbacks,
//! meeting ids and passcodes, and the wire form of each refusal.

use super::*;

#[test]
fn validation_follows_the_documented_rules() {
    let mut h = Harness::new(Scenario::two_users());
    let alice = user_id(&h, "Alice");
    let call = h.create_p2p(&alice);
    h.advance(Duration::from_secs(1));

    let user = |id: &str| json!({"identity": {"user": {"id": id, "displayName": id}}});
    let several = json!({"participants": [user("a"), user("b")]});
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/participants/invite"),
        &several,
    );
    assert_eq!(r.status, 400);
    assert!(
        r.body.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("group call")
    );

    let long = json!({"participants": [user("a")], "clientContext": "x".repeat(257)});
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{call}/participants/invite"),
        &long,
    );
    assert_eq!(r.status, 400);

    let mut six = p2p_body("x");
    six["targets"] = json!((0..6).map(|i| user(&format!("u{i}"))).collect::<Vec<_>>());
    let r = h.request(Method::Post, "/communications/calls", &six);
    assert_eq!(r.status, 400);
    assert!(
        r.body.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 5")
    );

    let mut pstn = p2p_body("x");
    pstn["targets"] = json!([{"identity": {"phone": {"id": "4255550123"}}}]);
    let r = h.request(Method::Post, "/communications/calls", &pstn);
    assert_eq!(r.status, 400, "not E.164");
    pstn["targets"] = json!([{"identity": {"phone": {"id": "+14255550123"}}}]);
    let r = h.request(Method::Post, "/communications/calls", &pstn);
    assert_eq!(r.status, 400, "PSTN needs an applicationInstance source");
    pstn["source"]["identity"]["applicationInstance"] =
        json!({"id": SimConfig::default().application_instances[0].id, "displayName": "Bot line"});
    let r = h.request(Method::Post, "/communications/calls", &pstn);
    assert_eq!(r.status, 201, "{:?}", r.body);

    let mut bad_blob = p2p_body("x");
    bad_blob["mediaConfig"]["blob"] = json!("{\"mpUri\":\"http://nope\"}");
    let r = h.request(Method::Post, "/communications/calls", &bad_blob);
    assert_eq!(r.status, 400);
    let body = r.body.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("mpUri"),
        "{body}"
    );
    assert!(body["error"]["innerError"]["request-id"].is_string());
}

#[test]
fn requests_need_a_valid_token_and_wrong_secrets_get_oauth_errors() {
    let mut h = Harness::new(Scenario::two_users());
    let form = vec![
        ("grant_type".to_owned(), "client_credentials".to_owned()),
        ("client_id".to_owned(), SimConfig::default().app_id),
        ("client_secret".to_owned(), "wrong".to_owned()),
        (
            "scope".to_owned(),
            "https://graph.microsoft.com/.default".to_owned(),
        ),
    ];
    let (status, body) = h.sim.issue_token(h.now, SystemTime::now(), &form);
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    assert!(body["error_description"].is_string());

    h.token = "forged".into();
    let r = h.request(Method::Post, "/communications/calls", &p2p_body("x"));
    assert_eq!(r.status, 401);
    assert_eq!(
        r.body.unwrap()["error"]["code"],
        "InvalidAuthenticationToken"
    );
    assert_eq!(h.sim.active_calls().count(), 0, "nothing acted on");
}

#[test]
fn throttling_refuses_without_acting() {
    let mut scenario = Scenario::two_users();
    scenario.signaling.throttle = 1.0;
    scenario.signaling.retry_after_s = 3;
    let mut h = Harness::new(scenario);
    let r = h.request(Method::Post, "/communications/calls", &p2p_body("x"));
    assert_eq!(r.status, 429);
    assert_eq!(r.retry_after, Some(3));
    assert_eq!(h.sim.active_calls().count(), 0);
}

#[test]
fn callbacks_stay_on_loopback_unless_allowed() {
    for ok in [
        "http://127.0.0.1:8080/cb",
        "https://localhost/cb",
        "http://[::1]:1/x",
        "http://127.9.9.9/",
    ] {
        assert!(is_loopback_url(ok), "{ok}");
    }
    for bad in [
        "https://bot.example.com/cb",
        "http://10.0.0.1/cb",
        "http://127.0.0.1@evil.example/",
        "ftp://127.0.0.1/",
        "http://localhost.evil.example/",
    ] {
        assert!(!is_loopback_url(bad), "{bad}");
    }
    let mut h = Harness::new(Scenario::two_users());
    let mut body = p2p_body("x");
    body["callbackUri"] = json!("https://bot.example.com/callback");
    let r = h.request(Method::Post, "/communications/calls", &body);
    assert_eq!(r.status, 400);
    assert!(
        r.body.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("loopback")
    );
}

#[test]
fn a_declared_meeting_is_joined_only_by_its_id_and_passcode() {
    let mut scenario = Scenario::two_users();
    scenario.meeting = Some(crate::scenario::Meeting {
        join_meeting_id: "1234567890123".into(),
        passcode: Some("Xy7pQ2".into()),
        ..Default::default()
    });
    let mut h = Harness::new(scenario);
    let mut join = |id: Value, passcode: Value| {
        let mut body = p2p_body("x");
        body.as_object_mut().unwrap().remove("targets");
        body["meetingInfo"] = json!({"@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo", "joinMeetingId": id, "passcode": passcode});
        let r = h.request(Method::Post, "/communications/calls", &body);
        let code = r.body.as_ref().map(|b| b["error"]["code"].clone());
        (r.status, code.and_then(|c| c.as_str().map(str::to_owned)))
    };
    let refused = [
        (json!("999"), json!("Xy7pQ2"), 404, "NotFound"),
        (Value::Null, json!("Xy7pQ2"), 404, "NotFound"),
        (json!("1234567890123"), json!("wrong"), 403, "Forbidden"),
        (json!("1234567890123"), json!("xy7pq2"), 403, "Forbidden"),
        (json!("1234567890123"), Value::Null, 403, "Forbidden"),
    ];
    for (id, passcode, status, code) in refused {
        let what = format!("{id} / {passcode}");
        assert_eq!(
            join(id, passcode),
            (status, Some(code.to_owned())),
            "{what}"
        );
    }
    assert_eq!(join(json!("1234567890123"), json!("Xy7pQ2")).0, 201);
    assert_eq!(
        h.sim.active_calls().count(),
        1,
        "refused joins create no call"
    );

    // Without a declared meeting any id is accepted, with or without a passcode.
    let mut h = Harness::new(Scenario::two_users());
    let mut body = p2p_body("x");
    body.as_object_mut().unwrap().remove("targets");
    body["meetingInfo"] =
        json!({"@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo", "joinMeetingId": "7"});
    let r = h.request(Method::Post, "/communications/calls", &body);
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[test]
fn group_calls_take_several_invitees_and_pstn_needs_an_application_instance() {
    let mut h = Harness::new(Scenario::two_users());
    let alice = user_id(&h, "Alice");
    let mut body = p2p_body(&alice);
    body["chatInfo"] = json!({"threadId": "19:group@thread.v2", "messageId": "0"});
    let r = h.request(Method::Post, "/communications/calls", &body);
    let group = r.body.unwrap()["id"].as_str().unwrap().to_owned();
    h.advance(Duration::from_secs(1));
    let user = |id: &str| json!({"identity": {"user": {"id": id, "displayName": id}}});
    let three =
        json!({"participants": [user("g1"), user("g2"), user("g3")], "clientContext": "many"});
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{group}/participants/invite"),
        &three,
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.bound_sources(&group).len(), 4);

    let phone = json!({"participants": [{"identity": {"phone": {"id": "+14255550100"}}}]});
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{group}/participants/invite"),
        &phone,
    );
    assert_eq!(
        r.status, 400,
        "a call from the app identity cannot dial phones"
    );

    let mut pstn_call = p2p_body(&alice);
    pstn_call["chatInfo"] = json!({"threadId": "19:pstn@thread.v2", "messageId": "0"});
    pstn_call["source"]["identity"]["applicationInstance"] =
        json!({"id": SimConfig::default().application_instances[0].id, "displayName": "Bot line"});
    let r = h.request(Method::Post, "/communications/calls", &pstn_call);
    let with_number = r.body.unwrap()["id"].as_str().unwrap().to_owned();
    h.advance(Duration::from_secs(1));
    let r = h.request(
        Method::Post,
        &format!("/communications/calls/{with_number}/participants/invite"),
        &phone,
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    h.advance(Duration::from_secs(1));
    assert_eq!(
        h.bound_sources(&with_number).len(),
        2,
        "the phone participant joined"
    );
}

#[test]
fn each_refusal_has_graphs_wire_form() {
    use crate::service::refusal::Refusal;

    let secs = Duration::from_secs;
    let cases = [
        (Refusal::bad_request("why"), 400, "BadRequest", "why", None),
        (
            Refusal::InvalidToken,
            401,
            "InvalidAuthenticationToken",
            "Access token is missing, invalid or expired.",
            None,
        ),
        (
            Refusal::WrongPasscode,
            403,
            "Forbidden",
            "the passcode does not match the meeting's",
            None,
        ),
        (
            Refusal::PasscodeRequired,
            403,
            "Forbidden",
            "the meeting requires a passcode",
            None,
        ),
        (
            Refusal::NoResource { path: "/x".into() },
            404,
            "NotFound",
            "no resource at /x",
            None,
        ),
        (
            Refusal::no_call("c1"),
            404,
            "NotFound",
            "call c1 does not exist or has ended",
            None,
        ),
        (
            Refusal::NoMeeting { shown: "9".into() },
            404,
            "NotFound",
            "no meeting has joinMeetingId \"9\"",
            None,
        ),
        (
            Refusal::MethodNotAllowed {
                method: Method::Get,
                path: "/communications/calls".into(),
            },
            405,
            "MethodNotAllowed",
            "Get /communications/calls is not supported",
            None,
        ),
        (
            Refusal::NoMeetingThread {
                shown: "19:x@thread.v2".into(),
            },
            404,
            "NotFound",
            "no meeting with this organizer has chat thread \"19:x@thread.v2\"",
            None,
        ),
        (
            Refusal::UnknownApplicationInstance { shown: "i".into() },
            403,
            "Forbidden",
            "application instance \"i\" is not linked to this application",
            None,
        ),
        (
            Refusal::TooLarge,
            413,
            "RequestTooLarge",
            "Request body too large.",
            None,
        ),
        (
            Refusal::throttled(429, secs(3)),
            429,
            "TooManyRequests",
            "Simulated throttling.",
            Some(3),
        ),
        (
            Refusal::throttled(503, secs(2)),
            503,
            "ServiceUnavailable",
            "Simulated throttling.",
            Some(2),
        ),
    ];
    for (refusal, status, code, message, retry_after) in cases {
        let what = format!("{refusal:?}");
        let r = refusal.into_response("req-1".into(), secs(1));
        assert_eq!((r.status, r.retry_after), (status, retry_after), "{what}");
        assert_eq!((r.location, r.delay), (None, secs(1)), "{what}");
        let expected = json!({"error": {
            "code": code,
            "message": message,
            "innerError": {"request-id": "req-1", "date": "2026-01-01T00:00:00"}
        }});
        assert_eq!(r.body, Some(expected), "{what}");
    }
}

#[test]
fn unknown_paths_methods_and_huge_bodies_are_refused() {
    let mut h = Harness::new(Scenario::two_users());
    let r = h.request(Method::Get, "/communications/presences", &Value::Null);
    assert_eq!(r.status, 404);
    assert_eq!(r.body.unwrap()["error"]["code"], "NotFound");
    let r = h.request(Method::Delete, "/communications/calls/", &Value::Null);
    assert_eq!(r.status, 405);
    assert_eq!(
        r.body.unwrap()["error"]["message"],
        "Delete /communications/calls is not supported"
    );
    let huge = json!("x".repeat(MAX_REQUEST_BYTES));
    let r = h.request(Method::Post, "/communications/calls", &huge);
    assert_eq!(r.status, 413);
    assert_eq!(r.body.unwrap()["error"]["code"], "RequestTooLarge");
    assert_eq!(h.sim.active_calls().count(), 0);
}

/// A join by organizer, as a join link gives it: `chatInfo` and `organizerMeetingInfo`.
fn organizer_join(link: &graph_signaling::join_url::MeetingJoinUrl) -> Value {
    let mut body = p2p_body("x");
    body.as_object_mut().unwrap().remove("targets");
    body["chatInfo"] = serde_json::to_value(link.chat_info()).unwrap();
    body["meetingInfo"] = json!({
        "@odata.type": "#microsoft.graph.organizerMeetingInfo",
        "organizer": serde_json::to_value(link.organizer()).unwrap(),
        "allowConversationWithoutHost": true,
    });
    body["tenantId"] = json!(link.tenant_id);
    body
}

fn error_code(r: &ApiResponse) -> String {
    r.body.as_ref().unwrap()["error"]["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_declared_meeting_is_joined_by_its_link_and_organizer() {
    let mut scenario = Scenario::two_users();
    scenario.meeting = Some(crate::scenario::Meeting {
        join_meeting_id: "1234567890123".into(),
        passcode: Some("Xy7pQ2".into()),
        ..Default::default()
    });
    let mut h = Harness::new(scenario.clone());
    let link = h.sim.meeting_join_url().unwrap();
    assert_eq!(link.thread_id, "19:meeting_sim1234567890123@thread.v2");
    assert_eq!(link.message_id, "0");
    assert!(!link.is_channel_meeting());
    assert_eq!(
        Harness::new(scenario).sim.meeting_join_url(),
        Some(link.clone()),
        "the same link every run"
    );
    // The link the sim shows reads back as a bot would read it.
    let parsed = graph_signaling::join_url::MeetingJoinUrl::parse(&link.to_url()).unwrap();
    assert_eq!(parsed, link);

    let mut other_thread = link.clone();
    other_thread.thread_id = "19:meeting_other@thread.v2".into();
    let mut other_organizer = link.clone();
    other_organizer.organizer_id = "5810cede-f3cc-42eb-b2c1-e9bd5d53ec96".into();
    for wrong in [other_thread, other_organizer] {
        let r = h.request(
            Method::Post,
            "/communications/calls",
            &organizer_join(&wrong),
        );
        assert_eq!((r.status, error_code(&r).as_str()), (404, "NotFound"));
    }
    let mut no_chat = organizer_join(&link);
    no_chat.as_object_mut().unwrap().remove("chatInfo");
    let r = h.request(Method::Post, "/communications/calls", &no_chat);
    assert_eq!((r.status, error_code(&r).as_str()), (400, "BadRequest"));
    assert_eq!(
        h.sim.active_calls().count(),
        0,
        "refused joins create no call"
    );

    // No passcode needed: the organizer's link is the invitation.
    let r = h.request(
        Method::Post,
        "/communications/calls",
        &organizer_join(&link),
    );
    assert_eq!(r.status, 201, "{:?}", r.body);
    let call = r.body.unwrap()["id"].as_str().unwrap().to_owned();
    h.advance(Duration::from_secs(1));
    assert_eq!(h.sim.call_state(&call), Some(CallState::Established));
    let mut names: Vec<String> = h
        .sim
        .roster(&call)
        .unwrap()
        .into_iter()
        .filter(|e| !e.bot)
        .map(|e| e.name)
        .collect();
    names.sort();
    assert_eq!(names, ["Alice", "Bob"], "the scenario's attendees");
}

#[test]
fn a_channel_meeting_is_joined_by_its_channel_post() {
    let mut scenario = Scenario::two_users();
    scenario.meeting = Some(crate::scenario::Meeting {
        join_meeting_id: "42".into(),
        thread_id: Some("19:4f3b8a2e9c1d4b7a8e6f5d4c3b2a1908@thread.tacv2".into()),
        message_id: Some("1603984381935".into()),
        ..Default::default()
    });
    let mut h = Harness::new(scenario);
    let link = h.sim.meeting_join_url().unwrap();
    assert!(link.is_channel_meeting());
    assert_eq!(
        link.reply_chain_message_id.as_deref(),
        Some("1603984381935")
    );
    let other_post = graph_signaling::join_url::MeetingJoinUrl::new(
        link.thread_id.clone(),
        "1603984399999",
        link.tenant_id.clone(),
        link.organizer_id.clone(),
    );
    let r = h.request(
        Method::Post,
        "/communications/calls",
        &organizer_join(&other_post),
    );
    assert_eq!((r.status, error_code(&r).as_str()), (404, "NotFound"));
    let r = h.request(
        Method::Post,
        "/communications/calls",
        &organizer_join(&link),
    );
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[test]
fn guests_join_only_meetings_and_application_instances_must_be_the_apps() {
    let mut h = Harness::new(Scenario::two_users());
    let alice = user_id(&h, "Alice");
    let mut guest_p2p = p2p_body(&alice);
    guest_p2p["source"]["identity"] = json!({"guest": {"id": "g", "displayName": "Guest bot"}});
    let r = h.request(Method::Post, "/communications/calls", &guest_p2p);
    assert_eq!((r.status, error_code(&r).as_str()), (400, "BadRequest"));

    let mut nameless = p2p_body("x");
    nameless.as_object_mut().unwrap().remove("targets");
    nameless["source"]["identity"] = json!({"guest": {"id": "g"}});
    nameless["meetingInfo"] =
        json!({"@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo", "joinMeetingId": "42"});
    let r = h.request(Method::Post, "/communications/calls", &nameless);
    assert_eq!((r.status, error_code(&r).as_str()), (400, "BadRequest"));

    let mut pstn = p2p_body("x");
    pstn["targets"] = json!([{"identity": {"phone": {"id": "+14255550123"}}}]);
    pstn["source"]["identity"] =
        json!({"applicationInstance": {"id": "someone-elses-instance", "displayName": "Line"}});
    let r = h.request(Method::Post, "/communications/calls", &pstn);
    assert_eq!((r.status, error_code(&r).as_str()), (403, "Forbidden"));
    let body = r.body.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("someone-elses-instance"),
        "{body}"
    );
    assert_eq!(h.sim.active_calls().count(), 0);
}
