//! Entry points for fuzz targets: thin `fuzz/` shims call these, so the checks live (and are
//! tested) here.

use std::collections::HashMap;
use std::time::Instant;

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::GraphError;
use crate::inspect;
use crate::models::{Call, CommsNotifications, GraphErrorBody};
use crate::request::Answer;
use crate::state::CallStateMachine;

/// The bot's app id the fuzzed calls recognise their own roster entry by.
const APP_ID: &str = "00000000-0000-0000-0000-000000000000";

/// One state machine per call id, as a call owner keeps them.
fn apply(calls: &mut HashMap<String, CallStateMachine>, batch: &CommsNotifications) {
    let now = Instant::now();
    for n in &batch.value {
        let Some(id) = n.call_id() else { continue };
        let call = calls
            .entry(id.to_owned())
            .or_insert_with(|| CallStateMachine::new(id, Some(APP_ID.into())));
        call.handle_notification(n, now);
        while call.poll_event().is_some() {}
    }
}

/// Parses arbitrary bytes as a notification body, then checks what must hold for any input:
/// no panic; a parsed batch serializes to JSON that parses back to the same JSON; applying it
/// to call state and describing it with `inspect` do not panic.
///
/// # Panics
/// Only when one of those properties is broken (that is the fuzzer's finding).
pub fn notification_parse(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = inspect::inspect(text);
    }
    let Ok(batch) = CommsNotifications::parse(data) else {
        return;
    };
    let first = serde_json::to_value(&batch).expect("a parsed batch serializes");
    let again: CommsNotifications =
        serde_json::from_value(first.clone()).expect("serialized batch parses again");
    let second = serde_json::to_value(&again).expect("a parsed batch serializes");
    assert_eq!(first, second, "round trip is not stable");
    let mut calls = HashMap::new();
    apply(&mut calls, &batch);
    // A second delivery of the same batch must be harmless: it leaves the state as it was.
    let before = fingerprint(&calls, &batch);
    apply(&mut calls, &batch);
    assert_eq!(
        before,
        fingerprint(&calls, &batch),
        "a duplicate batch changed state"
    );
}

/// Longest error text a response body may produce: the reason ends up in logs, and the body
/// is the service's (or whoever answered's) text.
const MAX_ERROR_TEXT: usize = 1024;

/// Reads arbitrary bytes as the answer to a Graph request: the first two bytes are the HTTP
/// status, the rest the body. Checks what must hold for any input: nothing panics; a body that
/// reads as a [`Call`], a [`CommsOperation`] or a [`GraphErrorBody`] serializes to JSON that
/// reads back to the same JSON (the models keep unknown fields); a body that does not read
/// gives a short, one-line [`GraphError::BadResponse`]; [`GraphError::from_response`] takes any
/// status and body and keeps what it was given.
///
/// # Panics
/// Only when one of those properties is broken (that is the fuzzer's finding).
pub fn graph_responses(data: &[u8]) {
    let Some((status, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let status = u16::from_be_bytes(*status);
    let answer = Answer {
        status,
        body: body.to_vec(),
        client_request_id: "fuzz".into(),
    };
    match answer.parse::<Call>("call") {
        Ok(call) => round_trip(&call),
        Err(e) => check_bad_response(&e),
    }
    match answer.operation() {
        Ok(Some(op)) => round_trip(&op),
        Ok(None) => assert!(body.is_empty(), "no operation read from a body"),
        Err(e) => check_bad_response(&e),
    }
    if let Ok(err) = answer.parse::<GraphErrorBody>("error") {
        round_trip(&err);
    }

    // The request-id header and Retry-After, present or not, taken from the status bits.
    let header = (status & 1 == 1).then(|| "header-id".to_owned());
    let retry_after = (status & 2 == 2).then(|| Duration::from_secs(u64::from(status)));
    let err = GraphError::from_response(status, body, header.clone(), "fuzz".into(), retry_after);
    let _ = err.to_string();
    assert_eq!(err.status(), Some(status));
    assert_eq!(err.client_request_id(), Some("fuzz"));
    let GraphError::Http {
        code,
        message,
        request_id,
        retry_after: kept_retry,
        ..
    } = &err
    else {
        panic!("from_response gave {err:?}");
    };
    assert_eq!(*kept_retry, retry_after);
    if header.is_some() {
        assert_eq!(*request_id, header, "the header's request id wins");
    }
    match serde_json::from_slice::<GraphErrorBody>(body) {
        Ok(parsed) => {
            assert_eq!(code.as_deref(), parsed.error.code.as_deref());
            assert_eq!(message.as_deref(), parsed.error.message.as_deref());
        }
        Err(_) => assert!(code.is_none() && message.is_none()),
    }
}

/// A parsed model written as JSON reads back to a model that writes the same JSON.
fn round_trip<T: Serialize + DeserializeOwned>(model: &T) {
    let first = serde_json::to_value(model).expect("a parsed model serializes");
    let bytes = serde_json::to_vec(model).expect("a parsed model serializes");
    let again: T = serde_json::from_slice(&bytes).expect("serialized model parses again");
    let second = serde_json::to_value(&again).expect("a parsed model serializes");
    assert_eq!(first, second, "round trip is not stable");
}

fn check_bad_response(e: &GraphError) {
    assert!(
        matches!(e, GraphError::BadResponse { .. }),
        "a body that does not read gave {e:?}"
    );
    let text = e.to_string();
    assert!(!text.contains('\n'), "multi-line error");
    assert!(
        text.len() <= MAX_ERROR_TEXT,
        "error text of {} bytes",
        text.len()
    );
}

/// Reads arbitrary bytes as the two documents notification tokens are checked against: the
/// OpenID configuration and the JWK set. Checks: nothing panics; a document over the size
/// limit is refused as too large; an accepted configuration has a bounded http(s) `jwks_uri`;
/// an accepted key set has at most [`MAX_KEYS`](crate::auth::MAX_KEYS) keys, every key of the
/// document is either kept or counted as skipped, every RSA signing key with an id and
/// base64url components can be looked up by that id, and verifying a token with any kept key
/// fails cleanly.
///
/// # Panics
/// Only when one of those properties is broken (that is the fuzzer's finding).
#[cfg(feature = "server")]
pub fn openid_documents(data: &[u8]) {
    use crate::auth::{
        KeysDocumentError, MAX_KEYS, MAX_KEYS_DOCUMENT, MAX_URL_BYTES, parse_jwks,
        parse_openid_configuration,
    };

    let too_large = data.len() > MAX_KEYS_DOCUMENT;
    match parse_openid_configuration(data) {
        Ok(config) => {
            assert!(!too_large);
            assert!(config.jwks_uri.len() <= MAX_URL_BYTES);
            let scheme = config
                .jwks_uri
                .split_once(':')
                .map(|(s, _)| s.to_ascii_lowercase());
            assert!(
                matches!(scheme.as_deref(), Some("http" | "https")),
                "jwks_uri {:?}",
                config.jwks_uri
            );
            assert!(config.issuer.is_none_or(|i| i.len() <= MAX_URL_BYTES));
        }
        Err(e) => {
            assert_eq!(too_large, matches!(e, KeysDocumentError::TooLarge { .. }));
            assert!(!e.to_string().contains('\n'));
        }
    }
    match parse_jwks(data) {
        Ok(keys) => {
            assert!(!too_large);
            assert!(keys.len() <= MAX_KEYS);
            for kid in keys.kids() {
                assert!(keys.get(kid).is_some());
            }
            let doc: Value = serde_json::from_slice(data).expect("an accepted key set is JSON");
            let listed = doc["keys"]
                .as_array()
                .expect("an accepted key set has keys");
            assert_eq!(keys.len() + keys.skipped(), listed.len());
            for jwk in listed {
                if let Some(kid) = expected_rs256_kid(jwk) {
                    assert!(keys.get(kid).is_some(), "key {kid:?} was not kept");
                }
            }
            verify_with_each(&keys);
        }
        Err(e) => {
            assert_eq!(too_large, matches!(e, KeysDocumentError::TooLarge { .. }));
            assert!(!e.to_string().contains('\n'));
        }
    }
}

/// The id of a JWK any RS256 verifier should keep, worked out from the JSON on its own.
#[cfg(feature = "server")]
fn expected_rs256_kid(jwk: &Value) -> Option<&str> {
    let text = |name: &str| jwk.get(name).filter(|v| !v.is_null()).map(Value::as_str);
    let kid = text("kid")??;
    let rsa = text("kty")? == Some("RSA");
    let sig = text("use").is_none_or(|u| u == Some("sig"));
    let rs256 = text("alg").is_none_or(|a| a == Some("RS256"));
    let (n, e) = (text("n")??, text("e")??);
    let decodes = jsonwebtoken::DecodingKey::from_rsa_components(n, e).is_ok();
    let short = !kid.is_empty() && kid.len() <= crate::auth::MAX_KID_BYTES;
    (rsa && sig && rs256 && decodes && short).then_some(kid)
}

/// Checks a token's signature with a few of the keys: whatever the key's components, the
/// crypto library must refuse, not panic.
#[cfg(feature = "server")]
fn verify_with_each(keys: &crate::auth::SigningKeys) {
    // {"alg":"RS256","kid":"k"} . {"aud":"a"} . 64 bytes of signature that matches nothing.
    const TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.eyJhdWQiOiJhIn0.\
        AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0-Pw";
    let v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    for kid in keys.kids().take(2) {
        if let Some(key) = keys.get(kid) {
            let r = jsonwebtoken::decode::<serde_json::Map<String, Value>>(TOKEN, key, &v);
            assert!(r.is_err(), "a made-up signature verified");
        }
    }
}

/// Everything observable about the calls a batch names.
fn fingerprint(
    calls: &HashMap<String, CallStateMachine>,
    batch: &CommsNotifications,
) -> Vec<String> {
    let mut out = Vec::new();
    for id in batch.value.iter().filter_map(|n| n.call_id()) {
        let Some(call) = calls.get(id) else {
            continue;
        };
        out.push(format!("{id} {:?} {:?}", call.state(), call.result_info()));
        let mut entries: Vec<String> = call
            .roster()
            .entries()
            .map(|(k, e)| format!("{k:?} {} {:?} {:?}", e.is_self, e.bound, e.participant))
            .collect();
        entries.sort();
        out.extend(entries);
        out.extend(call.content_sharing_sessions().map(str::to_owned));
    }
    out
}

/// Reads arbitrary bytes as what service-hosted media brings back: a notification batch whose
/// call updates may carry `toneInfo` and whose operations may carry recording metadata, and
/// the list answers of the call's resources. Checks what must hold for any input: nothing
/// panics; each call reports a key at most once and in rising `sequenceId` order however the
/// batch repeats; a recording is reported only with a non-empty location; list answers and
/// the media request bodies round-trip through JSON unchanged.
///
/// # Panics
/// Only when one of those properties is broken (that is the fuzzer's finding).
pub fn media_events(data: &[u8]) {
    use crate::models::{
        AudioRoutingGroup, Collection, CommsOperation, Participant, PlayPromptBody,
        RecordResponseBody, SendDtmfTonesBody,
    };
    use crate::state::SignalingEvent;
    if let Ok(batch) = CommsNotifications::parse(data) {
        let now = Instant::now();
        let mut calls: HashMap<String, CallStateMachine> = HashMap::new();
        let mut last: HashMap<String, i64> = HashMap::new();
        // Twice: a redelivered batch reports no key again.
        for _ in 0..2 {
            for n in &batch.value {
                let Some(id) = n.call_id() else { continue };
                let call = calls
                    .entry(id.to_owned())
                    .or_insert_with(|| CallStateMachine::new(id, Some(APP_ID.into())));
                call.handle_notification(n, now);
                while let Some(e) = call.poll_event() {
                    if let SignalingEvent::Tone(t) = e {
                        let previous = last.insert(id.to_owned(), t.sequence_id);
                        assert!(
                            previous.is_none_or(|p| t.sequence_id > p),
                            "a key reported twice or out of order"
                        );
                    }
                }
            }
        }
        for item in batch.value.iter().flat_map(|n| n.items()) {
            if let crate::models::ResourceItem::Operation(op) = item
                && let Some(r) = op.recording()
            {
                assert!(!r.location.is_empty());
                let _ = r.to_string();
            }
        }
    }
    if let Ok(op) = serde_json::from_slice::<CommsOperation>(data) {
        round_trip(&op);
        if let Some(r) = op.recording() {
            assert!(!r.location.is_empty());
        }
    }
    if let Ok(list) = serde_json::from_slice::<Collection<Participant>>(data) {
        round_trip(&list);
    }
    if let Ok(list) = serde_json::from_slice::<Collection<AudioRoutingGroup>>(data) {
        round_trip(&list);
    }
    if let Ok(body) = serde_json::from_slice::<RecordResponseBody>(data) {
        let _ = crate::validate::record_response(&body);
        round_trip(&body);
    }
    if let Ok(body) = serde_json::from_slice::<PlayPromptBody>(data) {
        let _ = crate::validate::prompts("playPrompt", &body.prompts, 1, 20);
        round_trip(&body);
    }
    if let Ok(body) = serde_json::from_slice::<SendDtmfTonesBody>(data) {
        let _ = crate::validate::dtmf_tones(&body.tones);
        round_trip(&body);
    }
}

/// Reads arbitrary bytes as a meeting join link. Checks what must hold for any input: no
/// panic; a link that reads writes back (`to_url`) to a link that reads to the same meeting;
/// its chatInfo and organizer serialize; a refusal's message is one short line.
///
/// # Panics
/// Only when one of those properties is broken (that is the fuzzer's finding).
pub fn join_url(data: &[u8]) {
    use crate::join_url::MeetingJoinUrl;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match MeetingJoinUrl::parse(text) {
        Ok(meeting) => {
            let again = MeetingJoinUrl::parse(&meeting.to_url())
                .expect("a link written from a parsed one reads again");
            assert_eq!(again, meeting, "round trip is not stable");
            serde_json::to_value(meeting.chat_info()).expect("chatInfo serializes");
            serde_json::to_value(meeting.organizer()).expect("organizer serializes");
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.len() <= MAX_ERROR_TEXT && !message.contains('\n'),
                "refusal message too long or several lines: {message:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body with the status in front, as the graph_responses target reads its input.
    fn response(status: u16, body: &str) -> Vec<u8> {
        let mut out = status.to_be_bytes().to_vec();
        out.extend_from_slice(body.as_bytes());
        out
    }

    #[test]
    fn graph_responses_takes_bodies_and_garbage() {
        for (status, body) in [
            (
                201,
                r##"{"@odata.type":"#microsoft.graph.call","id":"a","state":"establishing","x":[1,{"y":null}]}"##,
            ),
            (
                200,
                r##"{"@odata.type":"#microsoft.graph.inviteParticipantsOperation","id":"o","status":"Running"}"##,
            ),
            (
                403,
                r#"{"error":{"code":"7503","message":"no","innerError":{"request-id":"r"}}}"#,
            ),
            (500, ""),
            (0, "not json"),
            (u16::MAX, r#"{"error":5}"#),
            (202, r#""a string where an object belongs""#),
            (200, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["),
        ] {
            graph_responses(&response(status, body));
        }
        graph_responses(&[]);
        graph_responses(&[1]);
        graph_responses(&[0xff, 0xfe, 0x80, 0x00, 0xc3]);
    }

    #[test]
    fn an_unreadable_body_gives_a_short_reason() {
        let long = format!("\"{}\"", "x".repeat(100_000));
        graph_responses(&response(200, &long));
    }

    #[cfg(feature = "server")]
    #[test]
    fn openid_documents_takes_documents_and_garbage() {
        for doc in [
            r#"{"issuer":"https://api.botframework.com","jwks_uri":"https://login.example.com/keys"}"#,
            r#"{"jwks_uri":"ftp://example.com/keys"}"#,
            r#"{"jwks_uri":"https://"}"#,
            r#"{"jwks_uri":5}"#,
            r#"{"keys":[]}"#,
            r#"{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"},{"kty":"EC","kid":"b"},7,null]}"#,
            r#"{"keys":[{"kty":"RSA","kid":"a","n":"!!","e":"AQAB"},{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}]}"#,
            r#"{"keys":[{"kty":"RSA","kid":"","n":"AQAB","e":"AQAB","use":"enc"}]}"#,
            "",
            "null",
            "{",
        ] {
            openid_documents(doc.as_bytes());
        }
        openid_documents(&[0xff; 16]);
    }

    #[test]
    fn join_url_takes_links_and_garbage() {
        for link in [
            "https://teams.microsoft.com/l/meetup-join/19%3ameeting_abc%40thread.v2/0?context=%7b%22Tid%22%3a%2272f988bf-86f1-41af-91ab-2d7cd011db47%22%2c%22Oid%22%3a%225810cede-f3cc-42eb-b2c1-e9bd5d53ec96%22%7d",
            "https://teams.microsoft.com/l/meetup-join/19%3ameeting_abc%40thread.v2/0?context=%7b%22Tid%22%3a%22",
            "https://teams.live.com/meet/123",
            "",
        ] {
            join_url(link.as_bytes());
        }
        join_url(&[0xff; 16]);
    }
}
