//! GraphClient against a loopback fake of Graph and the token endpoint.
#![cfg(feature = "client")]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use graph_signaling::build;
use graph_signaling::client::{
    ClientCredentials, GraphClient, GraphClientConfig, GraphError, TokenProvider,
};
use graph_signaling::models::{
    AnswerBody, ChatInfo, IdentitySet, InvitationParticipantInfo, MediaConfig, Modality, Nullable,
    RecordingStatus,
};
use graph_signaling::validate::ValidationError;
use serde_json::{Value, json};

const GROUP_CALL: &str = "7531d31f-d10d-44de-802f-c569dbca451c";
const CTX: &str = "f2fa86af-3c51-4bc2-8fc0-475452d9764f";

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    client_request_id: Option<String>,
    auth: Option<String>,
    body: Value,
}

#[derive(Clone)]
struct Scripted {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Option<Value>,
    delay: Duration,
}

fn scripted(status: u16, body: Option<Value>) -> Scripted {
    Scripted {
        status,
        headers: vec![],
        body,
        delay: Duration::ZERO,
    }
}

#[derive(Clone, Default)]
struct Fake {
    log: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<HashMap<String, VecDeque<Scripted>>>>,
    token_fetches: Arc<AtomicUsize>,
}

impl Fake {
    fn push(&self, key: &str, s: Scripted) {
        self.script
            .lock()
            .unwrap()
            .entry(key.to_owned())
            .or_default()
            .push_back(s);
    }
    fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }
    fn count(&self, method: &str, suffix: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.path.ends_with(suffix))
            .count()
    }
}

async fn handle(fake: Fake, req: Request<Body>) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let (client_request_id, auth) = {
        let header = |n: &str| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (header("client-request-id"), header("authorization"))
    };
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap();
    if path == "/token" {
        let n = fake.token_fetches.fetch_add(1, Ordering::SeqCst) + 1;
        let form = String::from_utf8_lossy(&bytes).to_string();
        assert!(form.contains("grant_type=client_credentials"), "{form}");
        // Slow token endpoint, so concurrent callers overlap.
        tokio::time::sleep(Duration::from_millis(50)).await;
        return axum::Json(
            json!({"token_type": "Bearer", "expires_in": 3600, "access_token": format!("tok-{n}")}),
        )
        .into_response();
    }
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    fake.log.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        client_request_id,
        auth,
        body: body.clone(),
    });
    let key = format!("{method} {}", path.rsplit('/').next().unwrap_or_default());
    let next = fake
        .script
        .lock()
        .unwrap()
        .get_mut(&key)
        .and_then(VecDeque::pop_front);
    let s = next.unwrap_or_else(|| default_answer(&method, &path, &body));
    tokio::time::sleep(s.delay).await;
    let mut resp = match s.body {
        Some(b) => (StatusCode::from_u16(s.status).unwrap(), axum::Json(b)).into_response(),
        None => StatusCode::from_u16(s.status).unwrap().into_response(),
    };
    for (k, v) in s.headers {
        resp.headers_mut().insert(k, v.parse().unwrap());
    }
    resp
}

fn default_answer(method: &str, path: &str, body: &Value) -> Scripted {
    let last = path.rsplit('/').next().unwrap_or_default();
    match (method, last) {
        ("POST", "calls") => {
            let mut call = body.clone();
            call["id"] = json!(GROUP_CALL);
            call["state"] = json!("establishing");
            call["myParticipantId"] = json!("05491616-385f-44a8-9974-18cc5f9933c1");
            scripted(201, Some(call))
        }
        ("POST", "invite")
        | ("POST", "mute")
        | ("POST", "unmute")
        | ("POST", "updateRecordingStatus") => scripted(
            200,
            Some(
                json!({"@odata.type": "#microsoft.graph.commsOperation", "id": format!("op-{last}"),
                "status": "Running", "clientContext": body["clientContext"], "resultInfo": null}),
            ),
        ),
        ("POST", "keepAlive") => scripted(200, None),
        ("DELETE", _) => scripted(204, None),
        ("GET", id) => scripted(
            200,
            Some(json!({"@odata.type": "#microsoft.graph.call", "id": id, "state": "established"})),
        ),
        _ => scripted(202, None),
    }
}

async fn setup() -> (GraphClient, Fake) {
    setup_with(|_| {}).await
}

async fn setup_with(f: impl FnOnce(&mut GraphClientConfig)) -> (GraphClient, Fake) {
    let fake = Fake::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let f2 = fake.clone();
    let app = axum::Router::new().fallback(move |req: Request<Body>| handle(f2.clone(), req));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut creds = ClientCredentials::new("tenant", "client-id", "secret");
    creds.token_url = format!("{base}/token");
    let http = reqwest::Client::new();
    let mut cfg = GraphClientConfig {
        base_url: format!("{base}/v1.0"),
        ..GraphClientConfig::default()
    };
    f(&mut cfg);
    (
        GraphClient::with_http(
            cfg,
            TokenProvider::client_credentials(creds, http.clone()),
            http,
        ),
        fake,
    )
}

fn bot() -> IdentitySet {
    IdentitySet::application(
        "2891555a-92ff-42e6-80fa-6e1300c6b5c6",
        Some("Calling Bot".into()),
    )
}

fn blob() -> MediaConfig {
    MediaConfig::app_hosted("{\"mpUri\":\"net.tcp://bot.contoso.com:18732/MediaProcessor\"}")
}

fn group_call() -> graph_signaling::models::Call {
    build::group_call(
        "https://bot.contoso.com/callback",
        bot(),
        &[("u1", None), ("u2", None)],
        None,
        blob(),
    )
}

fn user(id: &str) -> InvitationParticipantInfo {
    InvitationParticipantInfo::new(IdentitySet::user(id, None))
}

#[tokio::test(start_paused = true)]
async fn p2p_call_sends_app_hosted_media_with_token_and_request_id() {
    let (client, fake) = setup().await;
    let call = build::p2p_user_call(
        "https://bot.contoso.com/callback",
        bot(),
        "112f7296",
        Some("John".into()),
        blob(),
    );
    let created = client.create_call(&call).await.unwrap();
    assert_eq!(created.id.as_deref(), Some(GROUP_CALL));
    let seen = &fake.seen()[0];
    assert_eq!(seen.path, "/v1.0/communications/calls");
    assert_eq!(seen.auth.as_deref(), Some("Bearer tok-1"));
    assert!(
        seen.client_request_id
            .as_deref()
            .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok())
    );
    assert_eq!(
        seen.body["mediaConfig"]["@odata.type"],
        "#microsoft.graph.appHostedMediaConfig"
    );
    assert_eq!(
        seen.body["targets"][0]["identity"]["user"]["id"],
        "112f7296"
    );
    assert_eq!(
        seen.body["source"]["identity"]["application"]["id"],
        "2891555a-92ff-42e6-80fa-6e1300c6b5c6"
    );
}

#[tokio::test(start_paused = true)]
async fn token_is_cached_single_flight_and_refreshed_before_expiry() {
    let (client, fake) = setup().await;
    for _ in 0..3 {
        client.get_call("c1").await.unwrap();
    }
    assert_eq!(fake.token_fetches.load(Ordering::SeqCst), 1);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.get_call("c1").await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        fake.token_fetches.load(Ordering::SeqCst),
        1,
        "concurrent callers share one fetch"
    );
    // 3600 s tokens are refreshed 5 minutes before expiry.
    tokio::time::sleep(Duration::from_secs(3200)).await;
    client.get_call("c1").await.unwrap();
    assert_eq!(fake.token_fetches.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_secs(101)).await;
    client.get_call("c1").await.unwrap();
    assert_eq!(fake.token_fetches.load(Ordering::SeqCst), 2);
    assert_eq!(
        fake.seen().last().unwrap().auth.as_deref(),
        Some("Bearer tok-2")
    );
}

#[tokio::test(start_paused = true)]
async fn create_call_honours_retry_after_and_is_sent_once_per_success() {
    let (client, fake) = setup().await;
    let mut throttled = scripted(
        429,
        Some(json!({"error": {"code": "TooManyRequests", "message": "slow down"}})),
    );
    throttled.headers.push(("retry-after", "7".into()));
    fake.push("POST calls", throttled);
    let t0 = tokio::time::Instant::now();
    client.create_call(&group_call()).await.unwrap();
    assert!(
        t0.elapsed() >= Duration::from_secs(7),
        "Retry-After not honoured: {:?}",
        t0.elapsed()
    );
    let posts: Vec<_> = fake
        .seen()
        .into_iter()
        .filter(|s| s.method == "POST")
        .collect();
    assert_eq!(posts.len(), 2);
    assert_eq!(
        posts[0].client_request_id, posts[1].client_request_id,
        "one logical request, one id"
    );
    // 503 with Retry-After is also a refusal the service did not act on.
    let mut unavailable = scripted(503, None);
    unavailable.headers.push(("retry-after", "1".into()));
    fake.push("POST invite", unavailable);
    client
        .invite(GROUP_CALL, vec![user("a")], CTX, true)
        .await
        .unwrap();
    assert_eq!(fake.count("POST", "/invite"), 2);
}

#[tokio::test(start_paused = true)]
async fn ambiguous_failures_never_place_a_second_call() {
    let (client, fake) = setup().await;
    fake.push("POST calls", scripted(504, None));
    let err = client.create_call(&group_call()).await.unwrap_err();
    assert!(matches!(err, GraphError::Ambiguous { .. }), "{err:?}");
    assert!(err.client_request_id().is_some());
    assert_eq!(fake.count("POST", "/calls"), 1);
    // A lost answer (request timeout) is ambiguous too.
    let mut slow = scripted(201, Some(json!({"id": "late"})));
    slow.delay = Duration::from_secs(120);
    fake.push("POST calls", slow);
    let err = client.create_call(&group_call()).await.unwrap_err();
    assert!(matches!(err, GraphError::Ambiguous { .. }), "{err:?}");
    assert_eq!(fake.count("POST", "/calls"), 2);
    // The same failure on an idempotent request is retried.
    fake.push("GET c9", scripted(504, None));
    client.get_call("c9").await.unwrap();
    assert_eq!(fake.count("GET", "/c9"), 2);
}

#[tokio::test(start_paused = true)]
async fn connection_refused_is_not_ambiguous() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let cfg = GraphClientConfig {
        base_url: format!("http://{addr}/v1.0"),
        ..GraphClientConfig::default()
    };
    let client = GraphClient::new(cfg, TokenProvider::fixed("t"));
    let err = client.create_call(&group_call()).await.unwrap_err();
    assert!(matches!(err, GraphError::Network { .. }), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn graph_errors_are_typed() {
    let (client, fake) = setup().await;
    let mut forbidden = scripted(
        403,
        Some(json!({"error": {"code": "7503", "message": "not allowed",
        "innerError": {"request-id": "inner-id", "date": "2026-11-23T00:00:00"}}})),
    );
    forbidden.headers.push(("request-id", "hdr-id".into()));
    fake.push("POST calls", forbidden);
    let err = client.create_call(&group_call()).await.unwrap_err();
    let GraphError::Http {
        status,
        code,
        message,
        request_id,
        client_request_id,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (
            *status,
            code.as_deref(),
            message.as_deref(),
            request_id.as_deref()
        ),
        (403, Some("7503"), Some("not allowed"), Some("hdr-id"))
    );
    assert_eq!(
        Some(client_request_id.clone()),
        fake.seen()[0].client_request_id
    );
    assert!(err.to_string().contains("7503"));
    assert_eq!(fake.count("POST", "/calls"), 1, "4xx is final");
}

#[tokio::test(start_paused = true)]
async fn rule_violations_fail_before_any_request() {
    let (client, fake) = setup().await;
    let p2p = client
        .create_call(&build::p2p_user_call(
            "https://bot.contoso.com/cb",
            bot(),
            "u",
            None,
            blob(),
        ))
        .await
        .unwrap();
    let p2p_id = p2p.id.into_option().unwrap();
    fake.log.lock().unwrap().clear();
    let v = |e: GraphError| match e {
        GraphError::Validation(v) => v,
        other => panic!("expected a validation error, got {other:?}"),
    };
    // clientContext longer than 256 characters.
    let e = client
        .invite(&p2p_id, vec![user("a")], &"x".repeat(257), false)
        .await
        .unwrap_err();
    assert_eq!(v(e), ValidationError::ClientContext(257));
    // Several participants into a P2P call.
    let e = client
        .invite(&p2p_id, vec![user("a"), user("b")], CTX, false)
        .await
        .unwrap_err();
    assert_eq!(v(e), ValidationError::SeveralOnlyInGroupCalls);
    // Six participants into a group call.
    let six: Vec<_> = (0..6).map(|i| user(&format!("u{i}"))).collect();
    let e = client.invite(GROUP_CALL, six, CTX, true).await.unwrap_err();
    assert_eq!(v(e), ValidationError::TooManyParticipants(6));
    // replacesCallId with two participants.
    let mut a = user("a");
    a.replaces_call_id = Nullable::Value("old".into());
    let e = client
        .invite(GROUP_CALL, vec![a.clone(), user("b")], CTX, true)
        .await
        .unwrap_err();
    assert_eq!(v(e), ValidationError::ReplacesNeedsExactlyOne(2));
    // participantId without replacesCallId.
    let mut moved = user("m");
    moved.participant_id = Nullable::Value("pid".into());
    let e = client
        .invite(GROUP_CALL, vec![moved], CTX, true)
        .await
        .unwrap_err();
    assert_eq!(v(e), ValidationError::ParticipantIdWithoutReplaces);
    // Phone numbers must be E.164.
    let phone = InvitationParticipantInfo::new(IdentitySet::phone("555-1234"));
    let e = client
        .invite(GROUP_CALL, vec![phone], CTX, true)
        .await
        .unwrap_err();
    assert_eq!(v(e), ValidationError::NotE164("555-1234".into()));
    let e = client
        .create_call(&build::pstn_call(
            "https://cb",
            "inst",
            None,
            "12345678901",
            "t",
            MediaConfig::service_hosted(),
        ))
        .await
        .unwrap_err();
    assert_eq!(v(e), ValidationError::NotE164("12345678901".into()));
    // PSTN needs an application instance as source.
    let mut pstn = build::pstn_call("https://cb", "inst", None, "+12345678901", "t", blob());
    pstn.source = Nullable::Value(graph_signaling::models::ParticipantInfo::new(bot()));
    assert_eq!(
        v(client.create_call(&pstn).await.unwrap_err()),
        ValidationError::PstnNeedsApplicationInstance
    );
    // A group call of six.
    let users: Vec<(&str, Option<String>)> = ["1", "2", "3", "4", "5", "6"]
        .iter()
        .map(|u| (*u, None))
        .collect();
    let e = client
        .create_call(&build::group_call(
            "https://cb",
            bot(),
            &users,
            None,
            blob(),
        ))
        .await
        .unwrap_err();
    assert_eq!(v(e), ValidationError::TooManyParticipants(6));
    // Meeting by organizer without chatInfo; join id that is not digits.
    let mut meeting = build::join_meeting_by_organizer(
        "https://cb",
        ChatInfo::new("19:x@thread.v2", "0"),
        IdentitySet::user("org", None),
        "t",
        blob(),
    );
    meeting.chat_info = Nullable::Absent;
    assert_eq!(
        v(client.create_call(&meeting).await.unwrap_err()),
        ValidationError::MeetingNeedsChatInfo
    );
    let by_id = build::join_meeting_by_id("https://cb", "12ab", None, "t", blob());
    assert_eq!(
        v(client.create_call(&by_id).await.unwrap_err()),
        ValidationError::JoinMeetingId("12ab".into())
    );
    // Answering after the 15 s window.
    let body = AnswerBody {
        callback_uri: "https://cb".into(),
        media_config: blob(),
        accepted_modalities: vec![Modality::Audio],
        participant_capacity: None,
        call_options: None,
    };
    let received = tokio::time::Instant::now().into_std();
    tokio::time::sleep(Duration::from_secs(16)).await;
    assert_eq!(
        v(client
            .answer("incoming-1", &body, received)
            .await
            .unwrap_err()),
        ValidationError::AnswerWindowElapsed
    );
    // Ids that would escape the URL path.
    assert!(matches!(
        v(client.hang_up("../x").await.unwrap_err()),
        ValidationError::BadId(_)
    ));
    assert!(
        fake.seen().is_empty(),
        "a request was sent: {:?}",
        fake.seen()
    );
}

#[tokio::test(start_paused = true)]
async fn every_call_scenario_reaches_the_service() {
    let (client, fake) = setup().await;
    let cb = "https://bot.contoso.com/callback";
    let organizer = IdentitySet::user("5810cede", Some("Bob".into()));
    let chat = ChatInfo::new("19:meeting_x@thread.v2", "0");
    let calls = [
        build::join_meeting_by_organizer(cb, chat.clone(), organizer.clone(), "tenant", blob()),
        build::join_meeting_by_id(cb, "1234567", Some("psw123".into()), "tenant", blob()),
        build::pstn_call(
            cb,
            "3d913abb",
            Some("Calling Bot".into()),
            "+12345678901",
            "tenant",
            blob(),
        ),
        build::as_guest(
            build::join_meeting_by_organizer(cb, chat, organizer, "tenant", blob()),
            "guest-1",
            "Guest Bot",
        ),
        build::with_delta_roster(group_call()),
    ];
    for c in &calls {
        client.create_call(c).await.unwrap();
    }
    let bodies: Vec<Value> = fake.seen().into_iter().map(|s| s.body).collect();
    assert_eq!(
        bodies[0]["meetingInfo"]["@odata.type"],
        "#microsoft.graph.organizerMeetingInfo"
    );
    assert_eq!(bodies[1]["meetingInfo"]["passcode"], "psw123");
    assert_eq!(
        bodies[2]["source"]["identity"]["applicationInstance"]["id"],
        "3d913abb"
    );
    assert_eq!(
        bodies[2]["targets"][0]["identity"]["phone"]["id"],
        "+12345678901"
    );
    assert_eq!(
        bodies[3]["source"]["identity"]["guest"]["displayName"],
        "Guest Bot"
    );
    assert_eq!(bodies[4]["callOptions"]["isDeltaRosterEnabled"], true);
    // Answer, reject, redirect, transfer, mute, unmute, recording status, hang up.
    let body = AnswerBody {
        callback_uri: cb.into(),
        media_config: blob(),
        accepted_modalities: vec![Modality::Audio],
        participant_capacity: None,
        call_options: None,
    };
    client
        .answer("in-1", &body, tokio::time::Instant::now().into_std())
        .await
        .unwrap();
    client
        .reject("in-2", graph_signaling::models::RejectReason::Busy)
        .await
        .unwrap();
    client
        .redirect("in-3", vec![user("x")], Some(30))
        .await
        .unwrap();
    client
        .transfer(
            GROUP_CALL,
            InvitationParticipantInfo::new(IdentitySet::phone("+4930123456")),
            None,
        )
        .await
        .unwrap();
    client.mute_self(GROUP_CALL, "m-1").await.unwrap();
    client.unmute_self(GROUP_CALL, "u-1").await.unwrap();
    client
        .update_recording_status(GROUP_CALL, RecordingStatus::Recording, "rec-1")
        .await
        .unwrap();
    client.hang_up(GROUP_CALL).await.unwrap();
    let seen = fake.seen();
    let find = |suffix: &str| {
        seen.iter()
            .find(|s| s.path.ends_with(suffix))
            .unwrap_or_else(|| panic!("{suffix}"))
            .clone()
    };
    assert_eq!(find("/in-1/answer").body["acceptedModalities"][0], "audio");
    assert_eq!(find("/in-2/reject").body["reason"], "busy");
    assert_eq!(find("/in-3/redirect").body["timeout"], 30);
    assert_eq!(
        find("/transfer").body["transferTarget"]["identity"]["phone"]["id"],
        "+4930123456"
    );
    assert_eq!(find("/mute").body["clientContext"], "m-1");
    assert_eq!(find("/unmute").body["clientContext"], "u-1");
    assert_eq!(
        find("/updateRecordingStatus").body,
        json!({"status": "recording", "clientContext": "rec-1"})
    );
    assert_eq!(seen.last().unwrap().method, "DELETE");
}

#[tokio::test(start_paused = true)]
async fn an_action_returns_the_operation_its_response_carries() {
    let (client, fake) = setup().await;
    fake.push(
        "POST invite",
        scripted(
            200,
            Some(json!({"id": "op-1", "status": "running", "clientContext": CTX})),
        ),
    );
    let op = client
        .invite(GROUP_CALL, vec![user("a")], CTX, true)
        .await
        .unwrap()
        .expect("the response's operation");
    assert_eq!(
        (
            op.id.as_deref(),
            op.client_context.as_deref(),
            op.is_finished()
        ),
        (Some("op-1"), Some(CTX), false)
    );
    // An empty body carries none: the outcome comes by notification only.
    fake.push("POST mute", scripted(202, None));
    assert_eq!(client.mute_self(GROUP_CALL, CTX).await.unwrap(), None);
    // A call the service no longer knows counts as hung up; keepAlive reports the 404.
    let gone = || {
        scripted(
            404,
            Some(json!({"error": {"code": "8514", "message": "call not found"}})),
        )
    };
    fake.push("DELETE c9", gone());
    client.hang_up("c9").await.unwrap();
    fake.push("POST keepAlive", gone());
    let err = client.keep_alive(GROUP_CALL).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
}
