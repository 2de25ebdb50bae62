//! The bot's HTTP server (notification callback, `/metrics`, `/healthz`, `/readyz`, `/calls`),
//! hardened against idle and slow peers.
//!
//! Each connection must deliver a request's headers within [`ServerLimits::header_timeout`]
//! (also how long an idle keep-alive connection may wait for its next request) and finish the
//! whole request within [`ServerLimits::request_timeout`] (408 otherwise), so a slow-header or
//! slow-body sender is cut off. At most [`ServerLimits::max_connections`] are open at once;
//! when a new one arrives at the cap, the oldest connection with no request in progress is
//! closed to make room (a flood of idle connections cannot lock the calling service out), and
//! only when every connection is busy is the new one refused.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

/// Limits of the bot's HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers (and may sit idle between
    /// requests).
    pub header_timeout: Duration,
    /// How long one request may take, body included.
    pub request_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// What the server refused or cut off, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct ServerCounters {
    /// Idle connections closed to make room for a new one.
    pub(crate) evicted: AtomicU64,
    /// New connections refused because every open one was busy.
    pub(crate) refused: AtomicU64,
    /// Connections open now.
    pub(crate) open: AtomicUsize,
}

struct Connection {
    accepted: Instant,
    /// Requests of this connection in progress.
    busy: Arc<AtomicUsize>,
    task: AbortHandle,
}

#[derive(Default)]
struct Table {
    next: u64,
    open: BTreeMap<u64, Connection>,
}

fn lock(m: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Table {
    /// Makes room for one more connection: true if there is (or now is) room.
    fn make_room(&mut self, max: usize, counters: &ServerCounters) -> bool {
        if self.open.len() < max {
            return true;
        }
        let idle = self
            .open
            .iter()
            .filter(|(_, c)| c.busy.load(Ordering::Relaxed) == 0)
            .min_by_key(|(_, c)| c.accepted)
            .map(|(id, _)| *id);
        match idle.and_then(|id| self.open.remove(&id)) {
            Some(c) => {
                c.task.abort();
                counters.evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// Serves `router` on `listener` within `limits` until the task is aborted.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    counters: Arc<ServerCounters>,
) {
    let router = router.layer(tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    ));
    let table = Arc::new(Mutex::new(Table::default()));
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let mut t = lock(&table);
        if !t.make_room(limits.max_connections, &counters) {
            // Every connection is busy: this one is closed at once (dropped).
            continue;
        }
        let id = t.next;
        t.next += 1;
        let busy = Arc::new(AtomicUsize::new(0));
        let service = {
            let busy = busy.clone();
            let router = router.clone();
            tower::service_fn(
                move |request: axum::extract::Request<hyper::body::Incoming>| {
                    let busy = busy.clone();
                    let router = router.clone();
                    async move {
                        busy.fetch_add(1, Ordering::Relaxed);
                        let response = tower::ServiceExt::oneshot(router, request).await;
                        busy.fetch_sub(1, Ordering::Relaxed);
                        response
                    }
                },
            )
        };
        let (table2, counters2) = (table.clone(), counters.clone());
        counters.open.fetch_add(1, Ordering::Relaxed);
        let task = tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let conn = http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service));
            // Closing early is the peer's or the timeouts' doing; nothing to report.
            let _ = conn.await;
            lock(&table2).open.remove(&id);
            counters2.open.fetch_sub(1, Ordering::Relaxed);
        });
        let abort = task.abort_handle();
        t.open.insert(
            id,
            Connection {
                accepted: Instant::now(),
                busy,
                task: abort,
            },
        );
        drop(t);
        // An evicted connection's task is aborted before it can clean up after itself.
        let (table3, counters3) = (table.clone(), counters.clone());
        tokio::spawn(async move {
            if let Err(e) = task.await
                && e.is_cancelled()
            {
                lock(&table3).open.remove(&id);
                counters3.open.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }
}
