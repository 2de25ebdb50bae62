//! The axum endpoint the calling service posts notifications to.
//!
//! Each request is authenticated ([`TokenValidator`]), size-limited, parsed and queued; the
//! response (202) does not wait for processing: the batches are read from the queue by the
//! application, which routes each notification to the call it names.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::sync::mpsc;

use crate::auth::{TokenValidator, VerifiedCaller};
use crate::models::{CommsNotifications, MAX_NOTIFICATION_BYTES};

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

#[derive(Clone)]
struct Shared {
    validator: Arc<TokenValidator>,
    queue: mpsc::Sender<Inbound>,
    limits: NotificationLimits,
}

/// A router serving `POST {path}`; mount it in the app's router or serve it with [`serve`].
/// Authenticated, well-formed batches go to `queue`.
pub fn notification_router(
    path: &str,
    validator: Arc<TokenValidator>,
    queue: mpsc::Sender<Inbound>,
    limits: NotificationLimits,
) -> Router {
    Router::new().route(path, post(handle)).with_state(Shared {
        validator,
        queue,
        limits,
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
    let body = match axum::body::to_bytes(request.into_body(), shared.limits.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => return reply(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
    };
    let batch = match CommsNotifications::parse(&body) {
        Ok(b) => b,
        Err(e) => {
            tracing::info!(error = %e, "malformed notification");
            return reply(StatusCode::BAD_REQUEST, "malformed notification");
        }
    };
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
/// 503 with `Retry-After`, so the service redelivers).
pub fn pipeline(
    path: &str,
    validator: Arc<TokenValidator>,
    limits: NotificationLimits,
    queue_depth: usize,
) -> NotificationPipeline {
    let (tx, batches) = mpsc::channel(queue_depth.max(1));
    NotificationPipeline {
        router: notification_router(path, validator, tx, limits),
        batches,
    }
}
