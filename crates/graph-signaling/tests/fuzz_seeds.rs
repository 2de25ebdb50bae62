//! Seeds for graph-signaling's fuzz targets (`fuzz/seeds/{notification_parse,graph_responses,
//! openid_documents,join_url}`): the reference payloads in `tests/fixtures`, the error body
//! sample, OpenID documents shaped like the calling service's, with the test keys of
//! `tests/keys`, and meeting join links.
//!
//! `write_fuzz_seeds` (ignored) writes them; rerun it after changing an entry point's input
//! format or the fixtures: `cargo test --workspace -- --ignored write_fuzz_seeds`. It
//! overwrites its own files and leaves others (crash regressions) alone.
//! `committed_seeds_pass_the_entry_points` runs every committed seed through its entry point
//! on each `cargo test`.

// The OpenID target needs the `server` feature (the default).
#![cfg(feature = "server")]

use std::path::{Path, PathBuf};

use graph_signaling::_internal_test_exports::fuzz;
use serde_json::{Value, json};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn seeds_dir(target: &str) -> PathBuf {
    test_kit::seeds::dir(env!("CARGO_MANIFEST_DIR"), target)
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = seeds_dir(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// The reference fixtures whose names contain `kind`, as (file name, bytes).
fn fixtures(kind: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(crate_dir().join("tests/fixtures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(kind))
        .map(|p| (name(&p), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// A response as the graph_responses entry point reads it: status, then body.
fn response(status: u16, body: &[u8]) -> Vec<u8> {
    let mut out = status.to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn jwks_keys(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(crate_dir().join("tests/keys").join(file)).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["keys"].as_array().unwrap().clone()
}

fn openid_seeds() {
    // The shape of the calling service's configuration (api.aps.skype.com), with its issuer.
    let config = json!({
        "issuer": "https://api.botframework.com",
        "authorization_endpoint": "https://invalid.botframework.com",
        "jwks_uri": "https://api.aps.skype.com/v1/.well-known/openid-configuration/keys",
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"]
    });
    write(
        "openid_documents",
        "openid-configuration.json",
        serde_json::to_string_pretty(&config).unwrap().as_bytes(),
    );
    let signing = jwks_keys("signing.jwks.json");
    let other = jwks_keys("other.jwks.json");
    write(
        "openid_documents",
        "jwks-rsa.json",
        serde_json::to_string_pretty(&json!({ "keys": signing }))
            .unwrap()
            .as_bytes(),
    );
    // Published sets carry more than the verifier needs (endorsements, thumbprints) and, after
    // a rotation, several keys; other key types must be skipped, not refuse the set.
    let mut rotated = other[0].clone();
    rotated["endorsements"] = json!(["msteams", "skype"]);
    rotated["x5t"] = json!("o0UiQta7qEjKWqLEh3aJaE3-5Ay");
    let mixed = json!({ "keys": [
        signing[0],
        rotated,
        {
            "kty": "EC", "use": "sig", "kid": "ec-key", "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
        },
        { "kty": "oct", "kid": "hmac-key", "k": "c2VjcmV0" },
        { "kty": "RSA", "use": "enc", "kid": "encryption-key", "n": "AQAB", "e": "AQAB" }
    ]});
    write(
        "openid_documents",
        "jwks-rotated-mixed.json",
        serde_json::to_string_pretty(&mixed).unwrap().as_bytes(),
    );
    let loopback = json!({ "jwks_uri": "http://127.0.0.1:8080/v1/.well-known/keys" });
    write(
        "openid_documents",
        "openid-configuration-loopback.json",
        loopback.to_string().as_bytes(),
    );
}

fn response_seeds() {
    for (name, body) in fixtures("call-response") {
        write("graph_responses", &name, &response(201, &body));
    }
    for (name, body) in fixtures("operation-response") {
        write("graph_responses", &name, &response(200, &body));
    }
    let error = std::fs::read(crate_dir().join("tests/samples/error-body.json")).unwrap();
    write("graph_responses", "error-403.json", &response(403, &error));
    let throttled = json!({ "error": {
        "code": "TooManyRequests",
        "message": "Too many requests.",
        "details": [{ "code": "throttled", "message": "Retry later." }],
        "innerError": { "request-id": "0c8d1e2a-0000-4000-8000-000000000003", "date": "2026-11-23T12:00:00" }
    }});
    write(
        "graph_responses",
        "error-429.json",
        &response(429, throttled.to_string().as_bytes()),
    );
    write("graph_responses", "accepted-empty.bin", &response(202, b""));
}

/// Join links in the shapes Teams writes: a scheduled meeting, a channel meeting (the post in
/// the path and the context), a government cloud host with upper-case escapes, and a link
/// that stops inside its context.
fn join_url_seeds() {
    let ctx = |extra: &str| {
        format!(
            "%7b%22Tid%22%3a%2272f988bf-86f1-41af-91ab-2d7cd011db47%22%2c%22Oid%22%3a%225810cede-f3cc-42eb-b2c1-e9bd5d53ec96%22{extra}%7d"
        )
    };
    let seeds = [
        (
            "meeting.txt",
            format!(
                "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NzA2ZmYxMjQtYjNjZS00ZTk4LWI2NzctYjIzMzk1ZDUwOGE0%40thread.v2/0?context={}",
                ctx("")
            ),
        ),
        (
            "channel-meeting.txt",
            format!(
                "https://teams.microsoft.com/l/meetup-join/19%3a4f3b8a2e9c1d4b7a8e6f5d4c3b2a1908%40thread.tacv2/1603984381935?context={}",
                ctx("%2c%22MessageId%22%3a%221603984381935%22")
            ),
        ),
        (
            "gov-upper-case.txt",
            format!(
                "https://gov.teams.microsoft.us/l/meetup-join/19%3Ameeting_abc%40thread.v2/0/?context={}&anon=true",
                ctx("").to_uppercase()
            ),
        ),
        (
            "cut-context.txt",
            "https://teams.microsoft.com/l/meetup-join/19%3ameeting_abc%40thread.v2/0?context=%7b%22Tid%22%3a%22".to_owned(),
        ),
    ];
    for (name, link) in seeds {
        write("join_url", name, link.as_bytes());
    }
}

fn notification_seeds() {
    for (name, body) in fixtures("notification") {
        write("notification_parse", &name, &body);
    }
}

#[test]
#[ignore = "writes fuzz/seeds; run to regenerate them"]
fn write_fuzz_seeds() {
    notification_seeds();
    response_seeds();
    openid_seeds();
    join_url_seeds();
}

#[test]
fn committed_seeds_pass_the_entry_points() {
    test_kit::seeds::check_committed(
        env!("CARGO_MANIFEST_DIR"),
        &[
            ("notification_parse", fuzz::notification_parse),
            ("graph_responses", fuzz::graph_responses),
            ("openid_documents", fuzz::openid_documents),
            ("join_url", fuzz::join_url),
        ],
    );
}

#[test]
fn the_openid_seeds_read_as_the_validator_reads_them() {
    use graph_signaling::auth::{parse_jwks, parse_openid_configuration};
    let read = |name: &str| std::fs::read(seeds_dir("openid_documents").join(name)).unwrap();
    let config = parse_openid_configuration(&read("openid-configuration.json")).unwrap();
    assert!(config.jwks_uri.starts_with("https://api.aps.skype.com/"));
    assert_eq!(
        config.issuer.as_deref(),
        Some("https://api.botframework.com")
    );
    let keys = parse_jwks(&read("jwks-rsa.json")).unwrap();
    assert!(keys.get("test-kid-1").is_some());
    let mixed = parse_jwks(&read("jwks-rotated-mixed.json")).unwrap();
    let mut kids: Vec<&str> = mixed.kids().collect();
    kids.sort_unstable();
    assert_eq!(kids, ["test-kid-1", "test-kid-other"]);
    assert_eq!(mixed.skipped(), 3);
}
