//! The notification endpoint: JWT validation against a loopback OpenID server, limits, and
//! state changes only for authenticated notifications.
#![cfg(feature = "server")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::routing::get;
use graph_signaling::auth::{AuthConfig, TokenValidator};
use graph_signaling::models::CallState;
use graph_signaling::notify::{Admission, NotificationLimits, notification_router};
use graph_signaling::state::{CallStateMachine, SignalingEvent};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const APP_ID: &str = "bot-app-id";
const SIGNING_KEY: &[u8] = include_bytes!("keys/signing.der");
const OTHER_KEY: &[u8] = include_bytes!("keys/other.der");
const SIGNING_JWKS: &str = include_str!("keys/signing.jwks.json");
const OTHER_JWKS: &str = include_str!("keys/other.jwks.json");

struct KeyServer {
    base: String,
    jwks: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
    /// While set, `/keys` answers nothing until it is cleared (a stalled key server).
    stall: Arc<tokio::sync::watch::Sender<bool>>,
    /// `/keys` requests being answered now.
    in_flight: Arc<AtomicUsize>,
}

/// Counts a request in flight for as long as its handler lives (hyper drops the handler when
/// the client goes away).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(n: &Arc<AtomicUsize>) -> InFlight {
        n.fetch_add(1, Ordering::SeqCst);
        InFlight(n.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn key_server() -> KeyServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let jwks = Arc::new(Mutex::new(
        serde_json::from_str::<Value>(SIGNING_JWKS).unwrap(),
    ));
    let hits = Arc::new(AtomicUsize::new(0));
    let stall = Arc::new(tokio::sync::watch::Sender::new(false));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let keys_url = format!("{base}/keys");
    let (j, h, st, inf) = (jwks.clone(), hits.clone(), stall.clone(), in_flight.clone());
    let app = axum::Router::new()
        .route(
            "/openid",
            get(move || async move { Json(json!({ "jwks_uri": keys_url })) }),
        )
        .route(
            "/keys",
            get(move || async move {
                let _in_flight = InFlight::enter(&inf);
                h.fetch_add(1, Ordering::SeqCst);
                let mut released = st.subscribe();
                let _ = released.wait_for(|stalled| !stalled).await;
                Json(j.lock().unwrap().clone())
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    KeyServer {
        base,
        jwks,
        hits,
        stall,
        in_flight,
    }
}

struct Endpoint {
    url: String,
    admission: Admission,
    queue: mpsc::Receiver<graph_signaling::notify::Inbound>,
    keys: KeyServer,
}

async fn endpoint(max_body: usize) -> Endpoint {
    let keys = key_server().await;
    let mut cfg = AuthConfig::new(APP_ID);
    cfg.openid_config_url = format!("{}/openid", keys.base);
    let validator = Arc::new(TokenValidator::new(cfg));
    let (tx, rx) = mpsc::channel(16);
    let admission = Admission::default();
    let router = notification_router(
        "/api/calls",
        validator,
        tx,
        NotificationLimits {
            max_body_bytes: max_body,
        },
        admission.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/calls", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    Endpoint {
        url,
        admission,
        queue: rx,
        keys,
    }
}

fn claims() -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    json!({"iss": "https://api.botframework.com", "aud": APP_ID, "exp": now + 3600, "nbf": now - 10,
        "tid": "aa67bd4c-8475-432d-bd41-39f255720e0a"})
}

fn sign(claims: &Value, der: &[u8], kid: &str) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_rsa_der(der)).unwrap()
}

fn valid_token() -> String {
    sign(&claims(), SIGNING_KEY, "test-kid-1")
}

fn established(call: &str) -> String {
    json!({"@odata.type": "#microsoft.graph.commsNotifications", "value": [{
        "@odata.type": "#microsoft.graph.commsNotification", "changeType": "updated",
        "resourceUrl": format!("/communications/calls/{call}"),
        "resourceData": {"@odata.type": "#microsoft.graph.call", "state": "established", "id": call}}]})
    .to_string()
}

async fn post(url: &str, token: Option<&str>, body: String) -> reqwest::StatusCode {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req.send().await.unwrap().status()
}

#[tokio::test]
async fn a_valid_token_is_accepted_and_the_batch_queued() {
    let mut ep = endpoint(1 << 20).await;
    assert_eq!(
        post(&ep.url, Some(&valid_token()), established("c1")).await,
        202
    );
    let inbound = ep.queue.recv().await.unwrap();
    let n = &inbound.batch.value[0];
    assert_eq!(n.call_id(), Some("c1"));
    let mut call = CallStateMachine::new("c1", Some(APP_ID.into()));
    call.handle_notification(n, std::time::Instant::now());
    assert_eq!(
        call.poll_event(),
        Some(SignalingEvent::StateChanged {
            from: None,
            to: CallState::Established
        })
    );
    // The long tenant claim and the Graph issuer are accepted too.
    let mut c = claims();
    c.as_object_mut().unwrap().remove("tid");
    c["http://schemas.microsoft.com/identity/claims/tenantid"] = json!("t2");
    c["iss"] = json!("https://graph.microsoft.com");
    assert_eq!(
        post(
            &ep.url,
            Some(&sign(&c, SIGNING_KEY, "test-kid-1")),
            established("c2")
        )
        .await,
        202
    );
    assert_eq!(
        ep.queue.recv().await.unwrap().batch.value[0].call_id(),
        Some("c2")
    );
}

#[tokio::test]
async fn invalid_tokens_get_401_and_change_nothing() {
    let mut ep = endpoint(1 << 20).await;
    let now = jsonwebtoken::get_current_timestamp();
    let with = |k: &str, v: Value| {
        let mut c = claims();
        c[k] = v;
        c
    };
    let mut no_tenant = claims();
    no_tenant.as_object_mut().unwrap().remove("tid");
    let b64 = |v: &Value| {
        use std::fmt::Write;
        // base64url without padding, written by hand to keep dev-dependencies small.
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = v.to_string().into_bytes();
        let mut s = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                let _ = write!(s, "{}", T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        s
    };
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims())
    );
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("garbage", Some("not-a-jwt".into())),
        ("wrong key", Some(sign(&claims(), OTHER_KEY, "test-kid-1"))),
        (
            "wrong audience",
            Some(sign(
                &with("aud", json!("someone-else")),
                SIGNING_KEY,
                "test-kid-1",
            )),
        ),
        (
            "wrong issuer",
            Some(sign(
                &with("iss", json!("https://evil.example")),
                SIGNING_KEY,
                "test-kid-1",
            )),
        ),
        (
            "expired",
            Some(sign(
                &with("exp", json!(now - 3600)),
                SIGNING_KEY,
                "test-kid-1",
            )),
        ),
        (
            "missing tenant",
            Some(sign(&no_tenant, SIGNING_KEY, "test-kid-1")),
        ),
        ("alg none", Some(alg_none)),
        (
            "unknown kid",
            Some(sign(&claims(), OTHER_KEY, "test-kid-unknown")),
        ),
    ];
    for (name, token) in cases {
        let status = post(&ep.url, token.as_deref(), established("c1")).await;
        assert_eq!(status, 401, "{name}");
        assert!(
            ep.queue.try_recv().is_err(),
            "{name}: a refused notification was queued"
        );
    }
    // The valid token still works afterwards, and only it is queued.
    assert_eq!(
        post(&ep.url, Some(&valid_token()), established("c1")).await,
        202
    );
    assert!(ep.queue.try_recv().is_ok());
}

#[tokio::test]
async fn a_legacy_format_notification_is_answered_204_and_not_queued() {
    let mut ep = endpoint(1 << 20).await;
    let token = valid_token();
    let offer = json!({"id": "c9", "callState": "incoming", "presentedModalityTypes": ["audio"],
        "participants": [{"identity": "8:orgid:u1", "originator": true}],
        "links": {"callback": "https://bot.example/api/calls"}});
    assert_eq!(post(&ep.url, Some(&token), offer.to_string()).await, 204);
    let change = json!({"id": "c9", "type": "callStateChange", "currentState": "establishing"});
    assert_eq!(post(&ep.url, Some(&token), change.to_string()).await, 204);
    assert!(ep.queue.try_recv().is_err(), "nothing acted on");
    // Still authenticated first: a legacy body without a token is a 401.
    assert_eq!(post(&ep.url, None, offer.to_string()).await, 401);
    // The Graph form that follows is taken as usual.
    assert_eq!(post(&ep.url, Some(&token), established("c9")).await, 202);
    assert_eq!(
        ep.queue.recv().await.unwrap().batch.value[0].call_id(),
        Some("c9")
    );
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused() {
    let mut ep = endpoint(1024).await;
    let token = valid_token();
    let big = format!("{{\"value\":[],\"pad\":\"{}\"}}", "x".repeat(2048));
    assert_eq!(post(&ep.url, Some(&token), big).await, 413);
    assert_eq!(post(&ep.url, Some(&token), "{not json".into()).await, 400);
    assert_eq!(
        post(
            &ep.url,
            Some(&token),
            "{\"value\":[{\"changeType\":1}]}".into()
        )
        .await,
        400
    );
    assert!(ep.queue.try_recv().is_err());
    // Without a token the body is never read: 401, not 413.
    assert_eq!(post(&ep.url, None, "x".repeat(4096)).await, 401);
}

#[tokio::test]
async fn keys_are_cached_and_refetched_for_an_unknown_kid_at_a_limited_rate() {
    let ep = endpoint(1 << 20).await;
    for _ in 0..3 {
        assert_eq!(
            post(&ep.url, Some(&valid_token()), established("c1")).await,
            202
        );
    }
    assert_eq!(
        ep.keys.hits.load(Ordering::SeqCst),
        1,
        "keys fetched once and cached"
    );
    // The service rotates to a new key: the unknown kid triggers one refetch and is accepted.
    *ep.keys.jwks.lock().unwrap() = serde_json::from_str(OTHER_JWKS).unwrap();
    let rotated = sign(&claims(), OTHER_KEY, "test-kid-other");
    assert_eq!(post(&ep.url, Some(&rotated), established("c1")).await, 202);
    assert_eq!(ep.keys.hits.load(Ordering::SeqCst), 2);
    // Forged kids cannot make it fetch again within the rate limit.
    for i in 0..5 {
        let forged = sign(&claims(), OTHER_KEY, &format!("forged-{i}"));
        assert_eq!(post(&ep.url, Some(&forged), established("c1")).await, 401);
    }
    assert_eq!(ep.keys.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn keys_are_refreshed_after_the_interval() {
    let ep = endpoint(1 << 20).await;
    assert_eq!(
        post(&ep.url, Some(&valid_token()), established("c1")).await,
        202
    );
    assert_eq!(ep.keys.hits.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_secs(2 * 3600 + 1)).await;
    // Stale keys still verify; the refresh runs beside.
    assert_eq!(
        post(&ep.url, Some(&valid_token()), established("c1")).await,
        202
    );
    while ep.keys.hits.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Once, not once per notification.
    for _ in 0..3 {
        assert_eq!(
            post(&ep.url, Some(&valid_token()), established("c1")).await,
            202
        );
    }
    assert_eq!(ep.keys.hits.load(Ordering::SeqCst), 2);
}

/// A key fetch that hangs (an unknown `kid` asked for new keys, or the periodic refresh) does
/// not hold up notifications whose key is known: they are validated while it still hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_key_fetch_does_not_hold_up_tokens_with_known_keys() {
    let ep = endpoint(1 << 20).await;
    assert_eq!(
        post(&ep.url, Some(&valid_token()), established("c1")).await,
        202
    );
    ep.keys.stall.send_replace(true);
    let url = ep.url.clone();
    let unknown = tokio::spawn(async move {
        let token = sign(&claims(), OTHER_KEY, "test-kid-other");
        post(&url, Some(&token), established("c1")).await
    });
    // The unknown kid's fetch reaches the key server and hangs there.
    while ep.keys.in_flight.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..3 {
        assert_eq!(
            post(&ep.url, Some(&valid_token()), established("c1")).await,
            202
        );
    }
    assert_eq!(
        ep.keys.in_flight.load(Ordering::SeqCst),
        1,
        "answered while the fetch was still hanging"
    );
    assert!(!unknown.is_finished());
    ep.keys.stall.send_replace(false);
    // The key set still has only the signing key: the unknown kid stays unknown.
    assert_eq!(unknown.await.unwrap(), 401);
    assert_eq!(ep.keys.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_ready_pipeline_delivers_the_documented_roster() {
    let keys = key_server().await;
    let mut cfg = AuthConfig::new(APP_ID);
    cfg.openid_config_url = format!("{}/openid", keys.base);
    let mut p = graph_signaling::notify::pipeline(
        "/callback",
        Arc::new(TokenValidator::new(cfg)),
        NotificationLimits::default(),
        8,
        Default::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/callback", listener.local_addr().unwrap());
    tokio::spawn(graph_signaling::notify::serve(listener, p.router));
    let body = include_str!("fixtures/create-call-18-notification.json").to_owned();
    assert_eq!(post(&url, Some(&valid_token()), body).await, 202);
    let inbound = p.batches.recv().await.unwrap();
    let id = "2f1a1100-b174-40a0-aba7-0b405e01ed92";
    let mut call = CallStateMachine::new(id, Some("2891555a-92ff-42e6-80fa-6e1300c6b5c6".into()));
    for n in &inbound.batch.value {
        call.handle_notification(n, std::time::Instant::now());
    }
    let binds: Vec<_> = std::iter::from_fn(|| call.poll_event())
        .filter_map(|e| match e {
            SignalingEvent::StreamBind(s, _) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(binds, vec![media_session::SourceId(1)]);
    assert_eq!(call.roster().len(), 2);
}

fn incoming(call: &str) -> String {
    json!({"value": [{"changeType": "created",
        "resourceUrl": format!("/communications/calls/{call}"),
        "resourceData": {"@odata.type": "#microsoft.graph.call", "state": "incoming", "id": call}}]})
    .to_string()
}

/// A draining bot refuses offers of new calls with 503 and `Retry-After` (the service offers
/// them again), and still takes notifications of the calls it has.
#[tokio::test]
async fn while_refusing_new_calls_offers_get_503_and_the_rest_is_taken() {
    let mut ep = endpoint(1 << 20).await;
    ep.admission.refuse_new_calls();
    let r = reqwest::Client::new()
        .post(&ep.url)
        .header("content-type", "application/json")
        .bearer_auth(valid_token())
        .body(incoming("c9"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "2");
    assert_eq!(
        post(&ep.url, Some(&valid_token()), established("c1")).await,
        202
    );
    assert_eq!(
        ep.queue.recv().await.unwrap().batch.value[0].call_id(),
        Some("c1")
    );
    ep.admission.accept_new_calls();
    assert_eq!(
        post(&ep.url, Some(&valid_token()), incoming("c9")).await,
        202
    );
}

/// A declared length over the limit is refused before the body is read; a body that does not
/// say it is JSON is refused with 415.
#[tokio::test]
async fn oversized_declarations_and_other_content_types_are_refused_up_front() {
    let ep = endpoint(1024).await;
    let addr = ep
        .url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/calls HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 1000000000\r\n\r\n",
        valid_token()
    );
    tokio::io::AsyncWriteExt::write_all(&mut tcp, head.as_bytes())
        .await
        .unwrap();
    // Not one byte of the body is sent: the answer comes anyway.
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut tcp, &mut answer),
    )
    .await
    .expect("answered without the body")
    .unwrap();
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    let r = reqwest::Client::new()
        .post(&ep.url)
        .header("content-type", "text/plain")
        .bearer_auth(valid_token())
        .body(established("c1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
}
