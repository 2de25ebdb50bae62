//! The axum endpoint the calling service posts notifications to.
//!
//! Each request is authenticated ([`TokenValidator`]), size-limited, parsed and queued; the
//! response (202) does not wait for processing: the batches are read from the queue by the
//! application, which routes each notification to the call it names.
//!
//! A notification in the legacy format ([`is_legacy_notification`]) is answered `204 No
//! Content` and not acted on: that answer is how a bot tells the service to post it again in
//! Graph format.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::sync::mpsc;

use crate::auth::{TokenValidator, VerifiedCaller};
use crate::models::{CommsNotifications, MAX_NOTIFICATION_BYTES, is_legacy_notification};

/// Limits of the endpoint.
#[derive(Debug, Clone, Copy)]
pub struct NotificationLimits {
    /// Largest body accepted (413 above).
    pub max_body_bytes: usize,
}

impl Default for NotificationLimits {
    fn default() -> Self {
        NotificationLimits {
            max_body_bytes: MAX_NOTIFICATION_BYTES,
        }
    }
}

/// An authenticated, parsed notification batch waiting to be applied.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The batch.
    pub batch: CommsNotifications,
    /// Who sent it.
    pub caller: VerifiedCaller,
}

/// Whether the endpoint takes notifications that offer a new incoming call. A draining bot
/// refuses them with 503 and `Retry-After`, so the service offers the call again, to another
/// instance when a proxy balances the callback. Cheap to clone; clones share the switch.
#[derive(Debug, Clone)]
pub struct Admission(Arc<AtomicBool>);

impl Default for Admission {
    fn default() -> Self {
        Admission(Arc::new(AtomicBool::new(true)))
    }
}

impl Admission {
    /// New calls are taken.
    pub fn accept_new_calls(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// New calls are refused (503); notifications of existing calls are still taken.
    pub fn refuse_new_calls(&self) {
        self.0.store(false, Ordering::Relaxed);
    }

    /// True while new calls are taken.
    pub fn accepts_new_calls(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// `Retry-After` of a refused incoming-call offer, in seconds: soon, within the offer's 15 s
/// answer window.
const OFFER_RETRY_AFTER: &str = "2";

#[derive(Clone)]
struct Shared {
    validator: Arc<TokenValidator>,
    queue: mpsc::Sender<Inbound>,
    limits: NotificationLimits,
    admission: Admission,
}

/// A router serving `POST {path}`; mount it in the app's router or serve it with [`serve`].
/// Authenticated, well-formed batches go to `queue`; offers of new calls only while
/// `admission` accepts them.
pub fn notification_router(
    path: &str,
    validator: Arc<TokenValidator>,
    queue: mpsc::Sender<Inbound>,
    limits: NotificationLimits,
    admission: Admission,
) -> Router {
    Router::new().route(path, post(handle)).with_state(Shared {
        validator,
        queue,
        limits,
        admission,
    })
}

fn reply(status: StatusCode, reason: &'static str) -> Response {
    (status, reason).into_response()
}

async fn handle(State(shared): State<Shared>, request: Request<Body>) -> Response {
    let auth = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Authenticate before reading the body: an unauthenticated sender costs no buffering.
    let caller = match shared.validator.validate_header(auth.as_deref()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(error = %e, "notification refused");
            let mut r = reply(StatusCode::UNAUTHORIZED, "unauthorized");
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    };
    // A declared length over the limit is refused before a byte is read.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > shared.limits.max_body_bytes as u64) {
        return reply(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
    }
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected application/json",
        );
    }
    let body = match axum::body::to_bytes(request.into_body(), shared.limits.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => return reply(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
    };
    let batch = match CommsNotifications::parse(&body) {
        Ok(b) => b,
        Err(_) if is_legacy_notification(&body) => {
            tracing::info!(
                "legacy-format notification answered 204: the service resends it in Graph format"
            );
            return StatusCode::NO_CONTENT.into_response();
        }
        Err(e) => {
            tracing::info!(error = %e, "malformed notification");
            return reply(StatusCode::BAD_REQUEST, "malformed notification");
        }
    };
    if !shared.admission.accepts_new_calls() && batch.value.iter().any(|n| n.offers_new_call()) {
        tracing::info!("incoming call refused: new calls are not taken (draining)");
        let mut r = reply(StatusCode::SERVICE_UNAVAILABLE, "not taking new calls");
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(OFFER_RETRY_AFTER),
        );
        return r;
    }
    match shared.queue.try_send(Inbound { batch, caller }) {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        // Backpressure: the service retries a 503 with Retry-After.
        Err(_) => {
            let mut r = reply(StatusCode::SERVICE_UNAVAILABLE, "busy");
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
    }
}

/// Serves `router` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

/// Everything needed to receive notifications, wired together: mount `router` (or [`serve`]
/// it) and read authenticated batches from `batches`.
#[derive(Debug)]
pub struct NotificationPipeline {
    /// The endpoint to mount or serve.
    pub router: Router,
    /// Authenticated, parsed batches, in the order they were accepted.
    pub batches: mpsc::Receiver<Inbound>,
}

/// Builds the endpoint at `path` with a queue of `queue_depth` batches (a full queue answers
/// 503 with `Retry-After`, so the service redelivers) and new calls admitted per `admission`.
pub fn pipeline(
    path: &str,
    validator: Arc<TokenValidator>,
    limits: NotificationLimits,
    queue_depth: usize,
    admission: Admission,
) -> NotificationPipeline {
    let (tx, batches) = mpsc::channel(queue_depth.max(1));
    NotificationPipeline {
        router: notification_router(path, validator, tx, limits, admission),
        batches,
    }
}
