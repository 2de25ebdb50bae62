//! Admission at the mpUri port: how many connections the endpoint holds, how long one may take
//! to become a media session, and who makes room when a flood arrives.
//!
//! Until its `hello` claims a registered media session, a connection is an unauthenticated
//! socket that costs a file descriptor and nothing more. So the endpoint holds at most
//! [`ListenerLimits::max_connections`]; a newcomer at the cap closes the oldest connection that
//! has not claimed a session (still in the TLS handshake, the WebSocket upgrade, or waiting for
//! `hello`), and is itself refused only when every held connection carries a session. A flood of
//! idle sockets therefore cannot lock the calling service out, and cannot push the process
//! toward its open-file limit (where its other listeners would stop accepting too).
//!
//! Deadlines: TLS and the upgrade together must finish within
//! [`ListenerLimits::handshake_timeout`] of the accept; `hello` must then arrive within the
//! protocol core's own [`ProtocolConfig::hello_timeout`], which [`crate::protocol::BotSession`]
//! enforces (the listener only counts it). Should the shell be unable to act on that (stuck
//! writing to a peer that reads nothing), an unclaimed connection is dropped anyway once every
//! one of those deadlines and the close linger have passed.
//!
//! [`ProtocolConfig::hello_timeout`]: crate::protocol::ProtocolConfig::hello_timeout

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::endpoint::Shared;

/// How long the accept loop pauses after `accept` fails (out of file descriptors and the like),
/// so that it does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Added to the sum of the deadlines before an unclaimed connection is dropped regardless: the
/// core's own timers should always have closed it first, this only catches a stuck shell.
const STALL_SLACK: Duration = Duration::from_secs(1);

/// Limits of the endpoint's listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections held at once, whatever their phase. A newcomer at the cap closes the oldest
    /// connection that has not claimed a media session; when every held connection carries a
    /// session, the newcomer is closed at once instead. Established sessions are never closed
    /// to make room. 0 refuses every connection. Default 256.
    pub max_connections: usize,
    /// How long TLS (with `wss`) and the WebSocket upgrade together may take, counted from the
    /// TCP accept. Default 5 s. The wait for `hello` after the upgrade is
    /// [`ProtocolConfig::hello_timeout`](crate::protocol::ProtocolConfig::hello_timeout).
    pub handshake_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_connections: 256,
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// What the listener holds now and what it has turned away, from
/// [`MediaEndpoint::listener_stats`](crate::MediaEndpoint::listener_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerStats {
    /// Connections held now, in any phase.
    pub open: usize,
    /// Of those, the ones whose `hello` claimed a media session.
    pub sessions: usize,
    /// The most connections held at once since the endpoint started; never above
    /// [`ListenerLimits::max_connections`].
    pub peak_open: usize,
    /// Connections accepted from the socket, including those refused at once.
    pub accepted: u64,
    /// Connections without a media session closed to make room for a newcomer.
    pub evicted: u64,
    /// Newcomers closed at once because every held connection carried a media session.
    pub refused: u64,
    /// Connections closed because TLS and the WebSocket upgrade did not finish in time.
    pub handshake_timeouts: u64,
    /// Connections closed by the protocol core because no `hello` came in time.
    pub hello_timeouts: u64,
    /// Connections without a session dropped after all their deadlines had passed without the
    /// shell managing to close them (a peer that sends but never reads).
    pub stalled: u64,
    /// Failed `accept` calls (out of file descriptors and the like).
    pub accept_errors: u64,
}

/// How far a held connection has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// TLS and the WebSocket upgrade.
    Handshake,
    /// Upgraded; no session claimed (waiting for `hello`, or refused and lingering).
    Upgraded,
    /// Its `hello` claimed a registered media session.
    Session,
}

struct Held {
    phase: Phase,
    peer: SocketAddr,
    // The connection's task selects on the receiving half, so dropping this closes it.
    _close: oneshot::Sender<()>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    // Keyed by accept order: the first unclaimed entry is the oldest.
    held: BTreeMap<u64, Held>,
    stats: ListenerStats,
    // Whether the last accept failed: the first failure of a streak is worth a warning, the
    // rest (one per backoff) are not.
    accept_failing: bool,
}

impl Table {
    fn opened(&mut self) {
        self.stats.open = self.held.len();
        self.stats.peak_open = self.stats.peak_open.max(self.stats.open);
    }
}

/// The table of held connections, shared by the accept loop and the connection tasks.
pub(crate) struct Admission {
    limits: ListenerLimits,
    table: Mutex<Table>,
}

impl Admission {
    pub(crate) fn new(limits: ListenerLimits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            table: Mutex::new(Table::default()),
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // Counters and the table stay consistent under every operation, so a panic elsewhere
        // leaves nothing half-done here.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn limits(&self) -> ListenerLimits {
        self.limits
    }

    pub(crate) fn stats(&self) -> ListenerStats {
        self.table().stats
    }

    /// Admits a newly accepted connection, closing the oldest unclaimed one if the endpoint is
    /// at the cap. `None`: refused, the caller drops the socket. The receiver resolves when the
    /// connection must close (it was evicted).
    fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<(Ticket, oneshot::Receiver<()>)> {
        let mut t = self.table();
        t.accept_failing = false;
        t.stats.accepted += 1;
        if t.held.len() >= self.limits.max_connections {
            let oldest_unclaimed = t
                .held
                .iter()
                .find(|(_, h)| h.phase != Phase::Session)
                .map(|(id, _)| *id);
            match oldest_unclaimed.and_then(|id| t.held.remove(&id)) {
                Some(victim) => {
                    t.stats.evicted += 1;
                    tracing::debug!(
                        peer = %victim.peer,
                        phase = ?victim.phase,
                        newcomer = %peer,
                        evicted = t.stats.evicted,
                        "mpUri connection without a media session closed to make room"
                    );
                    // `victim` drops here, which wakes its task to close.
                }
                None => {
                    t.stats.refused += 1;
                    tracing::debug!(
                        %peer,
                        open = t.held.len(),
                        refused = t.stats.refused,
                        "mpUri connection refused: every held connection carries a media session"
                    );
                    return None;
                }
            }
        }
        let id = t.next_id;
        t.next_id += 1;
        let (close, closed) = oneshot::channel();
        t.held.insert(
            id,
            Held {
                phase: Phase::Handshake,
                peer,
                _close: close,
            },
        );
        t.opened();
        Some((
            Ticket {
                admission: self.clone(),
                id,
                peer,
            },
            closed,
        ))
    }

    fn accept_failed(&self, error: &std::io::Error) {
        let mut t = self.table();
        t.stats.accept_errors += 1;
        if t.accept_failing {
            tracing::debug!(%error, accept_errors = t.stats.accept_errors, "accept failed again");
        } else {
            tracing::warn!(
                %error,
                open = t.held.len(),
                accept_errors = t.stats.accept_errors,
                "the mpUri listener cannot accept; backing off until it can"
            );
        }
        t.accept_failing = true;
    }
}

/// A connection's place in the table, held by its task; dropping it frees the place.
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    peer: SocketAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut t = self.admission.table();
        // Absent when it was evicted: the place was taken over then.
        if let Some(held) = t.held.remove(&self.id) {
            if held.phase == Phase::Session {
                t.stats.sessions -= 1;
            }
            t.stats.open = t.held.len();
        }
    }
}

impl Ticket {
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// TLS and the upgrade are done.
    pub(crate) fn upgraded(&self) {
        if let Some(held) = self.admission.table().held.get_mut(&self.id) {
            held.phase = Phase::Upgraded;
        }
    }

    /// Runs `attempt`, which may claim a media session and says whether it did, so that no
    /// eviction can fall between the claim and the connection becoming a session: a claimed
    /// session must not be dropped without its end being reported. Returns false, without
    /// running `attempt`, when the connection has been evicted already.
    pub(crate) fn claim(&self, attempt: impl FnOnce() -> bool) -> bool {
        let mut t = self.admission.table();
        let Some(held) = t.held.get_mut(&self.id) else {
            return false;
        };
        if held.phase != Phase::Session && attempt() {
            held.phase = Phase::Session;
            t.stats.sessions += 1;
        }
        true
    }

    pub(crate) fn handshake_timed_out(&self) {
        let mut t = self.admission.table();
        t.stats.handshake_timeouts += 1;
        tracing::debug!(
            peer = %self.peer,
            handshake_timeouts = t.stats.handshake_timeouts,
            "mpUri connection closed: no TLS and WebSocket upgrade in time"
        );
    }

    pub(crate) fn hello_timed_out(&self) {
        let mut t = self.admission.table();
        t.stats.hello_timeouts += 1;
        tracing::debug!(
            peer = %self.peer,
            hello_timeouts = t.stats.hello_timeouts,
            "mpUri connection closed: no hello in time"
        );
    }

    /// Whether the connection is past its deadlines without a session and must go. Called
    /// from the connection's own task, so no claim can be half-done meanwhile.
    fn stalled(&self) -> bool {
        let mut t = self.admission.table();
        match t.held.get(&self.id).map(|h| h.phase) {
            Some(Phase::Session) => false,
            Some(_) => {
                t.stats.stalled += 1;
                tracing::debug!(
                    peer = %self.peer,
                    stalled = t.stats.stalled,
                    "mpUri connection without a media session dropped past its deadlines"
                );
                true
            }
            // Evicted: its task is closing anyway.
            None => true,
        }
    }
}

pub(crate) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                shared.admission.accept_failed(&e);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Refused: dropping the socket closes it.
        let Some((ticket, evicted)) = shared.admission.admit(peer) else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(run(shared.clone(), tcp, ticket, evicted));
    }
}

async fn run(shared: Arc<Shared>, tcp: TcpStream, ticket: Ticket, evicted: oneshot::Receiver<()>) {
    let handshake_by = Instant::now() + shared.admission.limits().handshake_timeout;
    let protocol = &shared.config.protocol;
    let give_up_by = handshake_by + protocol.hello_timeout + protocol.close_linger + STALL_SLACK;
    tokio::select! {
        biased;
        // The table has counted and logged the eviction.
        _ = evicted => {}
        () = handshake_and_serve(&shared, tcp, &ticket, handshake_by) => {}
        () = backstop(&ticket, give_up_by) => {}
    }
}

/// Resolves when an unclaimed connection outlives every deadline it had; never for a session.
async fn backstop(ticket: &Ticket, at: Instant) {
    tokio::time::sleep_until(at.into()).await;
    if !ticket.stalled() {
        std::future::pending::<()>().await;
    }
}

async fn handshake_and_serve(shared: &Arc<Shared>, tcp: TcpStream, ticket: &Ticket, by: Instant) {
    match shared.config.tls.clone() {
        None => upgrade_and_serve(shared, tcp, ticket, by).await,
        Some(tls) => match tokio::time::timeout_at(by.into(), tls.accept(tcp)).await {
            Ok(Ok(stream)) => upgrade_and_serve(shared, stream, ticket, by).await,
            Ok(Err(e)) => tracing::info!(peer = %ticket.peer(), error = %e, "TLS handshake failed"),
            Err(_) => ticket.handshake_timed_out(),
        },
    }
}

async fn upgrade_and_serve<S>(shared: &Arc<Shared>, stream: S, ticket: &Ticket, by: Instant)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match tokio::time::timeout_at(by.into(), crate::connection::upgrade(stream)).await {
        Ok(Ok(ws)) => {
            ticket.upgraded();
            crate::connection::serve(shared.clone(), ws, ticket).await;
        }
        Ok(Err(e)) => {
            tracing::info!(peer = %ticket.peer(), error = %e, "mpUri WebSocket handshake failed");
        }
        Err(_) => ticket.handshake_timed_out(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn admission(max_connections: usize) -> Arc<Admission> {
        Admission::new(ListenerLimits {
            max_connections,
            ..ListenerLimits::default()
        })
    }

    fn is_closed(rx: &mut oneshot::Receiver<()>) -> bool {
        matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Closed))
    }

    #[test]
    fn at_the_cap_the_oldest_unclaimed_connection_makes_room() {
        let a = admission(3);
        let (session, mut session_rx) = a.admit(addr(1)).unwrap();
        assert!(session.claim(|| true));
        let (old, mut old_rx) = a.admit(addr(2)).unwrap();
        old.upgraded();
        let (_young, mut young_rx) = a.admit(addr(3)).unwrap();
        assert_eq!(a.stats().open, 3);

        // The session is older, but only unclaimed connections make room.
        let (_new, mut new_rx) = a.admit(addr(4)).unwrap();
        assert!(is_closed(&mut old_rx));
        assert!(!is_closed(&mut session_rx) && !is_closed(&mut young_rx));
        assert!(!is_closed(&mut new_rx));
        let s = a.stats();
        assert_eq!((s.open, s.sessions, s.peak_open, s.evicted), (3, 1, 3, 1));

        // An evicted connection can no longer claim, and its end frees nothing twice.
        assert!(!old.claim(|| panic!("an evicted connection must not claim")));
        drop(old);
        assert_eq!(a.stats().open, 3);
    }

    #[test]
    fn when_every_connection_is_a_session_the_newcomer_is_refused() {
        let a = admission(2);
        let tickets: Vec<_> = (0..2)
            .map(|p| {
                let (t, rx) = a.admit(addr(p)).unwrap();
                assert!(t.claim(|| true));
                (t, rx)
            })
            .collect();
        assert!(a.admit(addr(9)).is_none());
        let s = a.stats();
        assert_eq!((s.open, s.sessions, s.refused, s.evicted), (2, 2, 1, 0));
        assert_eq!(s.accepted, 3);
        drop(tickets);
        let s = a.stats();
        assert_eq!((s.open, s.sessions), (0, 0));
        assert!(a.admit(addr(9)).is_some());
    }

    #[test]
    fn a_failed_claim_leaves_the_connection_evictable_and_a_stall_is_only_for_unclaimed() {
        let a = admission(1);
        let (t, _rx) = a.admit(addr(1)).unwrap();
        assert!(t.claim(|| false));
        assert_eq!(a.stats().sessions, 0);
        assert!(t.stalled());
        assert_eq!(a.stats().stalled, 1);
        let (_newcomer, _) = a.admit(addr(2)).unwrap();
        assert_eq!(a.stats().evicted, 1);

        let a = admission(1);
        let (t, _rx) = a.admit(addr(1)).unwrap();
        assert!(t.claim(|| true));
        assert!(!t.stalled());
        assert_eq!(a.stats().stalled, 0);
    }

    #[test]
    fn zero_refuses_everything() {
        let a = admission(0);
        assert!(a.admit(addr(1)).is_none());
        assert_eq!(a.stats().refused, 1);
    }
}
