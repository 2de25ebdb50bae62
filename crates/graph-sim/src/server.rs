//! The HTTP shell around [`Sim`]: Graph's API, the token endpoint, the OpenID configuration and
//! key set, and a task that fires the core's timers and posts its notifications, each signed with
//! a JWT as the real calling service does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;

use crate::media::RecordingStore;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method as HttpMethod, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::faults::LegacyAnswer;
use crate::scenario::Scenario;
use crate::service::is_loopback_url;
use crate::service::{ApiRequest, MAX_REQUEST_BYTES, Method, Outbound, Sim, SimConfig, SimEvent};
use crate::softphone::{PAGE_PATH, Softphone};

/// The simulator's development signing key (public on purpose; see `keys/README.md`).
pub const DEV_SIGNING_KEY_PEM: &str = include_str!("../keys/dev-signing.pem");

/// A key that is never in the sim's key set, for tests of forged notifications.
pub const FORGER_KEY_PEM: &str = include_str!("../keys/forger.pem");

/// The issuer the sim writes in its tokens (the real service's).
pub const ISSUER: &str = "https://api.botframework.com";

const KEY_ID: &str = "graph-sim-dev";

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Where to listen; loopback with an ephemeral port by default.
    pub bind: SocketAddr,
    /// PEM of the RSA key that signs notifications (the development key by default).
    pub signing_key_pem: String,
    /// Post notifications to callback URLs outside loopback. Off by default so a test can never
    /// reach the outside world by mistake.
    pub allow_remote_callbacks: bool,
    /// Serve the softphone page and its API under `/softphone/` (off by default). Give the
    /// same [`Softphone`] to the media side's options.
    pub softphone: Option<Softphone>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            signing_key_pem: DEV_SIGNING_KEY_PEM.to_owned(),
            allow_remote_callbacks: false,
            softphone: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The signing key is not an RSA private key in PEM.
    #[error("signing key: {0}")]
    Key(#[from] jsonwebtoken::errors::Error),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Client(String),
    /// The app's configured certificate cannot verify client assertions.
    #[error("app certificate: {0}")]
    Certificate(#[from] crate::service::CertificateError),
}

/// Counters of what the notifier did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotifierStats {
    /// Notifications the bot acknowledged (2xx).
    pub delivered: u64,
    /// Notifications the bot refused or that could not be posted.
    pub failed: u64,
    /// Notifications posted again after the bot answered 503 or 429 (it was draining or
    /// busy), as the calling service redelivers.
    pub redelivered: u64,
    /// Redirects followed (a bot answered `302 Found` naming the call's owner).
    pub redirected: u64,
    /// Notifications posted in the legacy format first (the `legacy_first` fault) and posted
    /// again in Graph format after the bot's `204`.
    pub legacy_resent: u64,
}

/// What became of one call's notifications.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CallNotifications {
    /// Acknowledged by a bot (2xx), directly or after redirects.
    pub delivered: u64,
    /// Redirects followed (`302 Found` to the instance that owns the call).
    pub redirected: u64,
    /// Posted again after a 503 or 429.
    pub redelivered: u64,
    /// Refused, unreachable, or out of attempts.
    pub failed: u64,
    /// Posted in the legacy format first and again in Graph format after the bot's `204`.
    pub legacy_resent: u64,
}

/// Redirects followed for one post: a bot names the owner of a call; a chain means a loop.
const MAX_REDIRECTS: u32 = 3;

/// Attempts at posting one notification the bot answers with 503 or 429.
const MAX_DELIVERY_ATTEMPTS: u32 = 6;

/// Redelivery delay when the bot's 503 or 429 names none, and the longest honoured.
const REDELIVERY_DEFAULT: Duration = Duration::from_secs(1);
const REDELIVERY_MAX: Duration = Duration::from_secs(10);

/// What became of one post.
enum Delivery {
    Done,
    Failed,
    /// Post again after this long.
    Again(Duration),
}

struct Shared {
    sim: Mutex<Sim>,
    wake: Notify,
    signer: Signer,
    app_id: String,
    tenant_id: String,
    base_url: String,
    jwks: Value,
    stats: Mutex<NotifierStats>,
    per_call: Mutex<HashMap<String, CallNotifications>>,
    /// Redirects may lead outside loopback (as callbacks may).
    remote_callbacks: bool,
    /// Recorded responses, rendered by the media side.
    recordings: RecordingStore,
    /// Fetches prompts (loopback only unless remote callbacks are allowed).
    http: reqwest::Client,
}

impl Shared {
    fn sim(&self) -> MutexGuard<'_, Sim> {
        // A panic while holding the lock is a bug elsewhere; the core's state is still usable.
        self.sim.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A cloneable way into a running [`SimServer`]'s core, for tasks beside the one reading its
/// events (a load generator, the softphone): the core locked, and the notifier woken afterwards
/// to act on what was queued.
#[derive(Clone)]
pub struct SimHandle(Arc<Shared>);

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimHandle")
    }
}

impl SimHandle {
    /// Runs `f` on the core, then wakes the notifier.
    pub fn with_sim<R>(&self, f: impl FnOnce(&mut Sim, Instant) -> R) -> R {
        let r = f(&mut self.0.sim(), Instant::now());
        self.0.wake.notify_one();
        r
    }

    /// What the notifier did with one call's notifications.
    pub fn call_notifications(&self, call_id: &str) -> CallNotifications {
        self.0
            .per_call
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(call_id)
            .copied()
            .unwrap_or_default()
    }
}

struct Signer {
    key: EncodingKey,
}

impl Signer {
    fn token(&self, app_id: &str, tenant_id: &str) -> Result<String, jsonwebtoken::errors::Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = json!({
            "iss": ISSUER,
            "aud": app_id,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "tid": tenant_id,
            "serviceurl": "graph-sim",
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(KEY_ID.to_owned());
        jsonwebtoken::encode(&header, &claims, &self.key)
    }
}

/// Signs a notification token with any PEM key, as the sim does; tests use it with
/// [`FORGER_KEY_PEM`] to forge notifications.
pub fn sign_notification_token(
    key_pem: &str,
    app_id: &str,
    tenant_id: &str,
) -> Result<String, jsonwebtoken::errors::Error> {
    Signer {
        key: EncodingKey::from_rsa_pem(key_pem.as_bytes())?,
    }
    .token(app_id, tenant_id)
}

/// A running simulator. Dropping it stops the server and the notifier.
pub struct SimServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    events: mpsc::UnboundedReceiver<SimEvent>,
    tasks: Vec<JoinHandle<()>>,
    softphone: bool,
}

impl Drop for SimServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl SimServer {
    /// Starts the simulator on `options.bind`.
    pub async fn start(
        mut config: SimConfig,
        scenario: Scenario,
        options: ServerOptions,
    ) -> Result<SimServer, ServerError> {
        if let Some(pem) = &config.app_certificate_pem {
            crate::service::check_certificate(pem)?;
        }
        let listener = tokio::net::TcpListener::bind(options.bind)
            .await
            .map_err(|source| ServerError::Bind {
                addr: options.bind,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: options.bind,
            source,
        })?;
        let base_url = format!("http://{addr}");
        config.base_url = format!("{base_url}/v1.0");
        config.allow_remote_callbacks = options.allow_remote_callbacks;
        let key = EncodingKey::from_rsa_pem(options.signing_key_pem.as_bytes())?;
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256)?;
        jwk.common.key_id = Some(KEY_ID.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::RS256);
        let jwks = serde_json::to_value(JwkSet { keys: vec![jwk] })
            .map_err(|e| ServerError::Client(e.to_string()))?;
        let shared = Arc::new(Shared {
            app_id: config.app_id.clone(),
            tenant_id: config.tenant_id.clone(),
            sim: Mutex::new(Sim::new(config, scenario)),
            wake: Notify::new(),
            signer: Signer { key },
            base_url: base_url.clone(),
            jwks,
            stats: Mutex::new(NotifierStats::default()),
            per_call: Mutex::new(HashMap::new()),
            remote_callbacks: options.allow_remote_callbacks,
            recordings: RecordingStore::default(),
            http: reqwest::Client::builder()
                .timeout(PROMPT_FETCH_TIMEOUT)
                .build()
                .map_err(|e| ServerError::Client(e.to_string()))?,
        });
        let mut router = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route(
                "/v1/.well-known/OpenIdConfiguration",
                get(openid_configuration),
            )
            .route("/v1/.well-known/keys", get(keys))
            .route("/v1.0/{*path}", axum::routing::any(api))
            .route("/recordings/{id}", get(recording))
            .with_state(shared.clone());
        if let Some(softphone) = &options.softphone {
            softphone.attach_sim(SimHandle(shared.clone()));
            router = router.merge(crate::softphone::routes(softphone.clone()));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            // A redirected notification is posted again, as is, to the new location (reqwest
            // would turn the POST into a GET).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ServerError::Client(e.to_string()))?;
        let (events_tx, events) = mpsc::unbounded_channel();
        let server = tokio::spawn(async move {
            // The server ends only when its task is aborted.
            let _ = axum::serve(listener, router).await;
        });
        let notifier = tokio::spawn(notifier(shared.clone(), http, events_tx));
        Ok(SimServer {
            addr,
            shared,
            events,
            tasks: vec![server, notifier],
            softphone: options.softphone.is_some(),
        })
    }

    /// Where the media side puts recorded responses for this server to serve: give it to
    /// [`crate::media::MediaOptions::recordings`].
    pub fn recordings(&self) -> RecordingStore {
        self.shared.recordings.clone()
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of the Graph API (`http://127.0.0.1:PORT/v1.0`), to configure a bot's client.
    pub fn api_url(&self) -> String {
        format!("{}/v1.0", self.shared.base_url)
    }

    /// The token endpoint of the sim's tenant.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.shared.base_url, self.shared.tenant_id
        )
    }

    /// The OpenID configuration a bot validates notifications against.
    pub fn openid_config_url(&self) -> String {
        format!(
            "{}/v1/.well-known/OpenIdConfiguration",
            self.shared.base_url
        )
    }

    /// The softphone page's URL, when the server serves it.
    pub fn softphone_url(&self) -> Option<String> {
        self.softphone
            .then(|| format!("{}{PAGE_PATH}", self.shared.base_url))
    }

    /// Runs `f` on the core (to read state or offer an incoming call), then lets the notifier
    /// act on whatever `f` queued.
    pub fn with_sim<R>(&self, f: impl FnOnce(&mut Sim, Instant) -> R) -> R {
        let r = f(&mut self.shared.sim(), Instant::now());
        self.shared.wake.notify_one();
        r
    }

    /// The next media event (a source added or removed, media requested, a call ended).
    pub async fn next_event(&mut self) -> Option<SimEvent> {
        self.events.recv().await
    }

    /// A media event if one is waiting, including one the core has queued but the notifier
    /// has not moved to the channel yet: a caller that just saw a call's state turn final
    /// through [`SimServer::with_sim`] also gets that call's `Ended`.
    pub fn try_event(&mut self) -> Option<SimEvent> {
        // The notifier moves events while holding the core's lock, so with the lock held the
        // channel holds every event older than the ones still in the core: order is kept.
        let mut sim = self.shared.sim();
        match self.events.try_recv() {
            Ok(e) => Some(e),
            Err(_) => sim.poll_event(),
        }
    }

    /// What the notifier has done so far.
    pub fn notifier_stats(&self) -> NotifierStats {
        *self.shared.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A handle on the core for other tasks.
    pub fn handle(&self) -> SimHandle {
        SimHandle(self.shared.clone())
    }
}

/// Fires the core's timers and posts its notifications, one at a time and in order; posts
/// again, later, what the bot refused with 503 or 429.
async fn notifier(
    shared: Arc<Shared>,
    http: reqwest::Client,
    events: mpsc::UnboundedSender<SimEvent>,
) {
    let mut retries: Vec<(Instant, Outbound, u32)> = Vec::new();
    loop {
        let (mut due, next) = {
            let mut sim = shared.sim();
            let now = Instant::now();
            sim.handle_timeout(now);
            let mut due = Vec::new();
            while let Some(n) = sim.poll_notification(now) {
                due.push((n, 1));
            }
            while let Some(e) = sim.poll_event() {
                // Nobody listening is fine: the sim runs without a media side too.
                let _ = events.send(e);
            }
            (due, sim.poll_timeout())
        };
        let now = Instant::now();
        let (ready, later): (Vec<_>, Vec<_>) = retries.drain(..).partition(|(at, _, _)| *at <= now);
        retries = later;
        due.extend(ready.into_iter().map(|(_, n, attempt)| (n, attempt)));
        for (mut n, attempt) in due {
            let (delivery, posted) = post_notification(&shared, &http, &n).await;
            let mut per_call = shared.per_call.lock().unwrap_or_else(|p| p.into_inner());
            let call = per_call.entry(n.call_id.clone()).or_default();
            call.redirected += u64::from(posted.redirects);
            call.legacy_resent += u64::from(posted.legacy_resent);
            {
                let mut stats = lock_stats(&shared);
                stats.redirected += u64::from(posted.redirects);
                stats.legacy_resent += u64::from(posted.legacy_resent);
            }
            match delivery {
                Delivery::Again(after) if attempt < MAX_DELIVERY_ATTEMPTS => {
                    // The bot already asked for the Graph format: the redelivery is in it.
                    if posted.legacy_resent {
                        n.legacy = None;
                    }
                    call.redelivered += 1;
                    lock_stats(&shared).redelivered += 1;
                    retries.push((Instant::now() + after, n, attempt + 1));
                }
                Delivery::Done => {
                    call.delivered += 1;
                    lock_stats(&shared).delivered += 1;
                }
                Delivery::Again(_) | Delivery::Failed => {
                    call.failed += 1;
                    lock_stats(&shared).failed += 1;
                }
            }
        }
        let next = retries.iter().map(|(at, _, _)| *at).chain(next).min();
        let sleep = match next {
            Some(at) => at.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = shared.wake.notified() => {}
        }
    }
}

fn lock_stats(shared: &Shared) -> std::sync::MutexGuard<'_, NotifierStats> {
    shared.stats.lock().unwrap_or_else(|p| p.into_inner())
}

/// What posting one notification took besides its outcome.
#[derive(Default)]
struct Posted {
    /// Redirects followed.
    redirects: u32,
    /// Whether a legacy form was answered `204` and the Graph body posted after it.
    legacy_resent: bool,
}

/// Posts one notification, following redirects to the call's owner, and, when it has a legacy
/// form, that form first and the Graph body after the bot's `204`.
async fn post_notification(
    shared: &Shared,
    http: &reqwest::Client,
    n: &Outbound,
) -> (Delivery, Posted) {
    let token = match shared.signer.token(&shared.app_id, &shared.tenant_id) {
        Ok(token) => token,
        Err(e) => {
            tracing::error!(error = %e, "cannot sign notification");
            return (Delivery::Failed, Posted::default());
        }
    };
    let mut url = n.callback_uri.clone();
    let mut posted = Posted::default();
    let mut body = n.first_body();
    let mut legacy = n.legacy.is_some();
    loop {
        let response = http.post(&url).bearer_auth(&token).json(body).send().await;
        let delivery = match response {
            Ok(r) if legacy && r.status().is_success() => {
                match LegacyAnswer::from_status(r.status().as_u16()) {
                    LegacyAnswer::ResendInGraphFormat => {
                        tracing::debug!(call = %n.call_id, "the bot answered 204 to the legacy format; posting the Graph format");
                        body = &n.body;
                        legacy = false;
                        posted.legacy_resent = true;
                        continue;
                    }
                    _ => {
                        tracing::warn!(call = %n.call_id, status = r.status().as_u16(), "the bot accepted a legacy-format notification instead of answering 204");
                        Delivery::Failed
                    }
                }
            }
            Ok(r) if r.status().is_success() => Delivery::Done,
            Ok(r) if r.status().is_redirection() && posted.redirects < MAX_REDIRECTS => {
                let next = r
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|l| reqwest::Url::parse(&url).ok()?.join(l).ok());
                match next {
                    // The same signed notification goes to the owner, as the service does.
                    Some(next) if shared.remote_callbacks || is_loopback_url(next.as_str()) => {
                        tracing::debug!(call = %n.call_id, to = %next, "following a redirect");
                        url = next.to_string();
                        posted.redirects += 1;
                        continue;
                    }
                    _ => {
                        tracing::warn!(call = %n.call_id, "a redirect without a usable location");
                        Delivery::Failed
                    }
                }
            }
            Ok(r) if matches!(r.status().as_u16(), 429 | 503) => {
                let after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or(REDELIVERY_DEFAULT, Duration::from_secs)
                    .min(REDELIVERY_MAX);
                tracing::info!(call = %n.call_id, status = r.status().as_u16(), ?after, "the bot asked for redelivery");
                Delivery::Again(after)
            }
            Ok(r) => {
                tracing::warn!(call = %n.call_id, status = r.status().as_u16(), "notification refused");
                Delivery::Failed
            }
            Err(e) => {
                tracing::warn!(call = %n.call_id, error = %e, "notification not delivered");
                Delivery::Failed
            }
        };
        return (delivery, posted);
    }
}

async fn token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let form: Vec<(String, String)> = form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let (status, body) = shared
        .sim()
        .issue_token(Instant::now(), SystemTime::now(), &form);
    json_response(status, &body)
}

async fn openid_configuration(State(shared): State<Arc<Shared>>) -> Response {
    let body = json!({
        "issuer": ISSUER,
        "authorization_endpoint": format!("{}/{}/oauth2/v2.0/authorize", shared.base_url, shared.tenant_id),
        "jwks_uri": format!("{}/v1/.well-known/keys", shared.base_url),
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
    });
    json_response(200, &body)
}

async fn keys(State(shared): State<Arc<Shared>>) -> Response {
    json_response(200, &shared.jwks)
}

async fn api(
    State(shared): State<Arc<Shared>>,
    Path(path): Path<String>,
    method: HttpMethod,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    let Ok(body) = axum::body::to_bytes(body, MAX_REQUEST_BYTES).await else {
        return json_response(
            413,
            &json!({"error": {"code": "RequestTooLarge", "message": "Request body too large."}}),
        );
    };
    let method = match method {
        HttpMethod::GET => Method::Get,
        HttpMethod::POST => Method::Post,
        HttpMethod::DELETE => Method::Delete,
        HttpMethod::PATCH => Method::Patch,
        _ => Method::Other,
    };
    // Query strings ($select and friends) do not change what the sim answers.
    let _ = uri;
    let full_path = format!("/{path}");
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // The service fetches a request's prompts before acting on it; the core is handed their
    // audio, so it knows how long each plays.
    // They are handed over with the request under one lock, so no other request can evict
    // them from the core's cache in between.
    let wanted = shared.sim().prompts_to_fetch(&full_path, &body);
    let mut fetched = Vec::with_capacity(wanted.len());
    for uri in wanted {
        let audio = fetch_prompt(&shared, &uri).await;
        fetched.push((uri, audio));
    }
    let response = {
        let mut sim = shared.sim();
        for (uri, audio) in fetched {
            sim.provide_prompt(&uri, audio.map(Into::into));
        }
        sim.handle_request(
            Instant::now(),
            &ApiRequest {
                method,
                path: &full_path,
                authorization,
                body: &body,
            },
        )
    };
    shared.wake.notify_one();
    if !response.delay.is_zero() {
        tokio::time::sleep(response.delay).await;
    }
    let mut r = match &response.body {
        Some(b) => json_response(response.status, b),
        None => status_only(response.status),
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&response.request_id) {
        h.insert("request-id", v);
    }
    if let Some(client_request_id) = headers.get("client-request-id") {
        h.insert("client-request-id", client_request_id.clone());
    }
    if let Some(location) = response
        .location
        .and_then(|l| HeaderValue::from_str(&l).ok())
    {
        h.insert(header::LOCATION, location);
    }
    if let Some(secs) = response.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

/// How long fetching one prompt may take.
const PROMPT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest prompt file fetched (10 minutes of 16 kHz 16-bit mono, and the header).
const MAX_PROMPT_BYTES: usize = 16_000 * 2 * 600 + 4096;

/// Downloads and decodes the prompt at `uri`, or says why not.
async fn fetch_prompt(shared: &Shared, uri: &str) -> Result<Vec<i16>, String> {
    if !shared.remote_callbacks && !crate::service::is_loopback_url(uri) {
        return Err("the sim fetches prompts only from loopback addresses".into());
    }
    let mut response = shared
        .http
        .get(uri)
        .send()
        .await
        .map_err(|e| format!("cannot fetch it: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("fetching it answered HTTP {}", response.status()));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading it: {e}"))?
    {
        if bytes.len() + chunk.len() > MAX_PROMPT_BYTES {
            return Err("it is too large".into());
        }
        bytes.extend_from_slice(&chunk);
    }
    crate::media::decode_prompt(&bytes)
}

/// `GET /recordings/{id}` with the recording's access token: the WAV file of a recorded
/// response. It is rendered right after the operation completes, so a fetch that comes first
/// waits for it a little.
async fn recording(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let expected = shared.sim().recording(&id).map(|r| r.access_token.clone());
    match (expected, token) {
        (None, _) => return status_only(404),
        (Some(e), Some(t)) if e == t => {}
        _ => return status_only(401),
    }
    for _ in 0..100 {
        if let Some(wav) = shared.recordings.get(&id) {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/octet-stream")],
                wav.to_vec(),
            )
                .into_response();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    status_only(404)
}

fn status_only(status: u16) -> Response {
    StatusCode::from_u16(status)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        .into_response()
}

fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
