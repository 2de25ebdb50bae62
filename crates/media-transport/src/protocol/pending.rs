//! Media sessions the bot expects a service to connect for: registered when the blob is written,
//! claimed once by the connection whose `hello` names them, expired if nobody comes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::messages::ErrorCode;

/// Why a `hello` was refused. Refusals leave the registry as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    /// No pending session has this id (never registered, cancelled or expired).
    #[error("no pending media session {0}")]
    Unknown(Uuid),
    /// Another connection already claimed this session.
    #[error("media session {0} is already in use")]
    InUse(Uuid),
    /// The session is pending for another call.
    #[error("media session {session} belongs to call {expected}, not {presented}")]
    CallMismatch {
        /// The session.
        session: Uuid,
        /// The call id registered with it.
        expected: Uuid,
        /// The call id the hello presented.
        presented: Uuid,
    },
}

impl ClaimError {
    /// The error code the refusal is sent with.
    pub const fn code(&self) -> ErrorCode {
        match self {
            ClaimError::Unknown(_) => ErrorCode::UnknownSession,
            ClaimError::InUse(_) => ErrorCode::SessionInUse,
            ClaimError::CallMismatch { .. } => ErrorCode::CallMismatch,
        }
    }
}

/// Why a session could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The id is pending already or was used before; ids are single-use.
    #[error("media session {0} is already registered or was used")]
    Duplicate(Uuid),
}

#[derive(Debug, Clone)]
struct Pending {
    call_id: Option<Uuid>,
    deadline: Instant,
}

/// The registry of pending media sessions (sans-IO: time is passed in).
#[derive(Debug, Default)]
pub struct PendingSessions {
    pending: HashMap<Uuid, Pending>,
    // Ids claimed or expired, the most recent `MAX_REMEMBERED_USED`: a second connection for
    // one of them is told "in use", not "unknown", which is what an operator needs to see.
    // Bounded, so a process that carries calls for months does not grow by one id per call;
    // a forgotten id is refused all the same (as unknown: it is no longer pending).
    used: HashSet<Uuid>,
    used_order: VecDeque<Uuid>,
}

/// How many used session ids are remembered for the "in use" refusal.
pub const MAX_REMEMBERED_USED: usize = 4096;

impl PendingSessions {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Expects a connection for `session` within `wait` from `now`. `call_id` is the blob's
    /// `callId` when known.
    pub fn register(
        &mut self,
        now: Instant,
        session: Uuid,
        call_id: Option<Uuid>,
        wait: Duration,
    ) -> Result<(), RegisterError> {
        if self.pending.contains_key(&session) || self.used.contains(&session) {
            return Err(RegisterError::Duplicate(session));
        }
        self.pending.insert(
            session,
            Pending {
                call_id,
                deadline: now + wait,
            },
        );
        Ok(())
    }

    /// Records the call id of a pending session (an outgoing call learns it after the blob was
    /// written). Returns false when the session is not pending.
    pub fn set_call_id(&mut self, session: Uuid, call_id: Uuid) -> bool {
        match self.pending.get_mut(&session) {
            Some(p) => {
                p.call_id = Some(call_id);
                true
            }
            None => false,
        }
    }

    /// True while `session` waits for its connection.
    pub fn is_pending(&self, session: Uuid) -> bool {
        self.pending.contains_key(&session)
    }

    /// Claims `session` for one connection. A hello without a call id is accepted for any
    /// session (a blob written before the call existed has `callId: null`); one with a call id
    /// must match the registered one when that is known.
    pub fn claim(&mut self, session: Uuid, call_id: Option<Uuid>) -> Result<(), ClaimError> {
        let Some(p) = self.pending.get(&session) else {
            return Err(if self.used.contains(&session) {
                ClaimError::InUse(session)
            } else {
                ClaimError::Unknown(session)
            });
        };
        if let (Some(expected), Some(presented)) = (p.call_id, call_id)
            && expected != presented
        {
            return Err(ClaimError::CallMismatch {
                session,
                expected,
                presented,
            });
        }
        self.pending.remove(&session);
        self.remember_used(session);
        Ok(())
    }

    /// Withdraws a pending session (the call ended before media connected). Returns whether it
    /// was pending.
    pub fn cancel(&mut self, session: Uuid) -> bool {
        let was = self.pending.remove(&session).is_some();
        if was {
            self.remember_used(session);
        }
        was
    }

    /// The earliest expiry, if any session is pending.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// Expires every session whose wait has passed and returns their ids.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Uuid> {
        let expired: Vec<Uuid> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.pending.remove(id);
            self.remember_used(*id);
        }
        expired
    }

    /// Used session ids remembered now (at most [`MAX_REMEMBERED_USED`]).
    pub fn remembered_used(&self) -> usize {
        self.used.len()
    }

    fn remember_used(&mut self, id: Uuid) {
        if self.used.insert(id) {
            self.used_order.push_back(id);
        }
        while self.used_order.len() > MAX_REMEMBERED_USED {
            if let Some(old) = self.used_order.pop_front() {
                self.used.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_ids_are_remembered_up_to_the_bound_and_forgotten_ones_stay_refused() {
        let t0 = Instant::now();
        let mut r = PendingSessions::new();
        let first = Uuid::from_u128(1);
        for i in 1..=(MAX_REMEMBERED_USED as u128 + 10) {
            let id = Uuid::from_u128(i);
            r.register(t0, id, None, Duration::from_secs(1)).unwrap();
            r.claim(id, None).unwrap();
        }
        assert_eq!(r.remembered_used(), MAX_REMEMBERED_USED);
        // The oldest is forgotten, yet a second connection for it is still refused.
        assert_eq!(r.claim(first, None), Err(ClaimError::Unknown(first)));
        let recent = Uuid::from_u128(MAX_REMEMBERED_USED as u128 + 10);
        assert_eq!(r.claim(recent, None), Err(ClaimError::InUse(recent)));
    }

    #[test]
    fn claim_once_and_refusals_change_nothing() {
        let t0 = Instant::now();
        let (s, call, other) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let mut reg = PendingSessions::new();
        reg.register(t0, s, Some(call), Duration::from_secs(5))
            .unwrap();
        assert_eq!(
            reg.register(t0, s, None, Duration::from_secs(5)),
            Err(RegisterError::Duplicate(s))
        );
        assert_eq!(reg.claim(other, None), Err(ClaimError::Unknown(other)));
        assert!(matches!(
            reg.claim(s, Some(other)),
            Err(ClaimError::CallMismatch { .. })
        ));
        assert!(
            reg.is_pending(s),
            "a refused claim leaves the session pending"
        );
        reg.claim(s, Some(call)).unwrap();
        assert_eq!(reg.claim(s, Some(call)), Err(ClaimError::InUse(s)));
    }

    #[test]
    fn expiry_is_driven_by_the_clock_given() {
        let t0 = Instant::now();
        let mut reg = PendingSessions::new();
        let s = Uuid::from_u128(7);
        reg.register(t0, s, None, Duration::from_secs(30)).unwrap();
        assert_eq!(reg.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        assert!(reg.handle_timeout(t0 + Duration::from_secs(29)).is_empty());
        assert_eq!(reg.handle_timeout(t0 + Duration::from_secs(30)), [s]);
        assert_eq!(reg.poll_timeout(), None);
        assert_eq!(reg.claim(s, None), Err(ClaimError::InUse(s)));
    }
}
