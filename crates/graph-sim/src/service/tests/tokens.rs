//! The token endpoint's certificate credentials: a client assertion is accepted only when it
//! is signed by the registered certificate's key, names that certificate and carries the right
//! audience, issuer and subject, in time, with an id never used before.

use graph_signaling::client::CertificateCredential;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use test_kit::certs::{TestCertificate, self_signed_rsa};

use super::*;

/// 2023-11-14T22:13:20Z: a fixed wall clock for the claims.
fn wall() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

struct Endpoint {
    sim: Sim,
    cert: TestCertificate,
    now: Instant,
}

impl Endpoint {
    fn new() -> Endpoint {
        let cert = self_signed_rsa("bot.sim.test");
        let config = SimConfig {
            app_certificate_pem: Some(cert.cert_pem.clone()),
            ..SimConfig::default()
        };
        Endpoint {
            sim: Sim::new(config, Scenario::two_users()),
            cert,
            now: Instant::now(),
        }
    }

    fn token_url(&self) -> String {
        self.sim.config().token_url()
    }

    fn app(&self) -> String {
        self.sim.config().app_id.clone()
    }

    fn credential(&self) -> CertificateCredential {
        CertificateCredential::from_pem(self.cert.cert_pem.as_bytes(), self.cert.key_pem.as_bytes())
            .unwrap()
    }

    fn ask(&mut self, assertion: &str, at: SystemTime) -> (u16, Value) {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", &self.app()),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", assertion),
            ("scope", "https://graph.microsoft.com/.default"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        self.sim.issue_token(self.now, at, &form)
    }
}

/// Signs `claims` with `key_pem`, naming the certificate by `x5t`.
fn sign(key_pem: &str, x5t: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.x5t = x5t.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn claims(e: &Endpoint, jti: &str) -> Value {
    let now = 1_700_000_000u64;
    json!({
        "aud": e.token_url(), "iss": e.app(), "sub": e.app(), "jti": jti,
        "nbf": now, "iat": now, "exp": now + 600,
    })
}

fn refused_with(answer: (u16, Value), code: &str) {
    let (status, body) = answer;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client", "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(description.starts_with(code), "{description}");
}

#[test]
fn an_assertion_from_graph_signalings_client_is_accepted() {
    let mut e = Endpoint::new();
    let jwt = e
        .credential()
        .assertion(&e.app(), &e.token_url(), wall(), "4f6b7c1e-jti")
        .unwrap();
    let (status, body) = e.ask(&jwt, wall());
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert!(e.sim.is_authorized(e.now, Some(&format!("Bearer {token}"))));
    // The same assertion again is a replay, however valid it still is.
    refused_with(e.ask(&jwt, wall()), "AADSTS50027");
}

#[test]
fn a_key_or_certificate_other_than_the_registered_one_is_refused() {
    let mut e = Endpoint::new();
    let other = self_signed_rsa("intruder.test");
    let x5t = e.credential().x5t().to_owned();
    // The registered certificate's thumbprint, signed with another key.
    let forged = sign(&other.key_pem, Some(&x5t), &claims(&e, "a"));
    refused_with(e.ask(&forged, wall()), "AADSTS700027");
    // Another certificate altogether, consistent in itself.
    let stranger =
        CertificateCredential::from_pem(other.cert_pem.as_bytes(), other.key_pem.as_bytes())
            .unwrap();
    let jwt = stranger
        .assertion(&e.app(), &e.token_url(), wall(), "b")
        .unwrap();
    refused_with(e.ask(&jwt, wall()), "AADSTS700027");
    // The right key, but a thumbprint of another certificate, or none at all.
    let key = e.cert.key_pem.clone();
    let wrong = sign(&key, Some(stranger.x5t()), &claims(&e, "c"));
    refused_with(e.ask(&wrong, wall()), "AADSTS700027");
    let unnamed = sign(&key, None, &claims(&e, "d"));
    refused_with(e.ask(&unnamed, wall()), "AADSTS700027");
    // And the right key and thumbprint pass, so the refusals above were for what they said.
    let good = sign(&key, Some(&x5t), &claims(&e, "e"));
    assert_eq!(e.ask(&good, wall()).0, 200);
}

#[test]
fn claims_out_of_place_or_time_are_refused() {
    let mut e = Endpoint::new();
    let key = e.cert.key_pem.clone();
    let x5t = e.credential().x5t().to_owned();
    let mut with = |patch: Value, at: SystemTime| {
        let mut c = claims(&e, &uuid::Uuid::new_v4().to_string());
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        let jwt = sign(&key, Some(&x5t), &c);
        e.ask(&jwt, at)
    };
    refused_with(
        with(
            json!({"aud": "https://login.microsoftonline.com/x/oauth2/v2.0/token"}),
            wall(),
        ),
        "AADSTS700023",
    );
    refused_with(with(json!({"iss": "someone-else"}), wall()), "AADSTS700021");
    refused_with(with(json!({"sub": "someone-else"}), wall()), "AADSTS700021");
    // Expired: ten minutes of validity, read two hours later.
    refused_with(
        with(json!({}), wall() + Duration::from_secs(7200)),
        "AADSTS700024",
    );
    // Not yet valid: read an hour before nbf.
    refused_with(
        with(json!({}), wall() - Duration::from_secs(3600)),
        "AADSTS700024",
    );
    refused_with(with(json!({"exp": null}), wall()), "AADSTS700024");
    refused_with(with(json!({"jti": null}), wall()), "AADSTS50027");
    // A list of audiences that includes this endpoint is fine (RFC 7519 section 4.1.3).
    let aud = json!([e_url(), "https://other.example"]);
    assert_eq!(with(json!({ "aud": aud }), wall()).0, 200);
}

fn e_url() -> String {
    SimConfig::default().token_url()
}

#[test]
fn hostile_or_confused_forms_get_oauth_errors_without_panicking() {
    let mut e = Endpoint::new();
    for junk in ["", "a.b.c", "not a jwt", "....", &"A".repeat(40_000)] {
        let (status, body) = e.ask(junk, wall());
        assert_eq!(status, 401, "{junk:?}: {body}");
        assert_eq!(body["error"], "invalid_client");
    }
    // A secret and an assertion at once, or an assertion of another type.
    let app = e.app();
    let both = [
        ("grant_type", "client_credentials"),
        ("client_id", app.as_str()),
        ("client_secret", "sim-secret"),
        ("client_assertion_type", CLIENT_ASSERTION_TYPE),
        ("client_assertion", "x"),
        ("scope", "https://graph.microsoft.com/.default"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let (status, body) = e.sim.issue_token(e.now, wall(), &both);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // Without a registered certificate every assertion is refused, and the secret still works.
    let mut plain = Sim::new(SimConfig::default(), Scenario::two_users());
    let jwt = e
        .credential()
        .assertion(&app, &e.token_url(), wall(), "z")
        .unwrap();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", app.as_str()),
        ("client_assertion_type", CLIENT_ASSERTION_TYPE),
        ("client_assertion", jwt.as_str()),
        ("scope", "https://graph.microsoft.com/.default"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    refused_with(plain.issue_token(e.now, wall(), &form), "AADSTS700027");
    // An unreadable configured certificate is caught by the check the server runs first.
    assert!(
        check_certificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .is_err()
    );
    assert!(check_certificate(&e.cert.key_pem).is_err());
    assert!(check_certificate(&e.cert.cert_pem).is_ok());
}
