//! Matching operation outcomes to the requests that started them (sans-IO).

use std::collections::VecDeque;
use std::time::Instant;

use crate::models::CommsOperation;

/// Identifies one awaited operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OperationToken(u64);

/// How an awaited operation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum OperationOutcome {
    /// A completed or failed operation arrived (check its status).
    Finished(Box<CommsOperation>),
    /// No outcome arrived before the deadline.
    TimedOut,
}

#[derive(Debug, Clone)]
struct Pending {
    token: OperationToken,
    call_id: String,
    operation_id: Option<String>,
    client_context: Option<String>,
    deadline: Instant,
}

/// Operations waiting for their completed/failed notification.
///
/// Matched by operation id; when a notification's id is `null` (the invite examples have such
/// ids), by `clientContext` within the same call.
#[derive(Debug, Default)]
pub struct OperationMatcher {
    pending: Vec<Pending>,
    next: u64,
    outcomes: VecDeque<(OperationToken, OperationOutcome)>,
}

impl OperationMatcher {
    /// An empty matcher.
    pub fn new() -> Self {
        OperationMatcher::default()
    }

    /// Starts waiting for an operation of `call_id` until `deadline`.
    pub fn register(
        &mut self,
        call_id: &str,
        operation_id: Option<String>,
        client_context: Option<String>,
        deadline: Instant,
    ) -> OperationToken {
        let token = OperationToken(self.next);
        self.next += 1;
        self.pending.push(Pending {
            token,
            call_id: call_id.to_owned(),
            operation_id,
            client_context,
            deadline,
        });
        token
    }

    /// Records the operation id once the action's response names it.
    pub fn set_operation_id(&mut self, token: OperationToken, operation_id: String) {
        if let Some(p) = self.pending.iter_mut().find(|p| p.token == token) {
            p.operation_id = Some(operation_id);
        }
    }

    /// Stops waiting (the caller gave up).
    pub fn cancel(&mut self, token: OperationToken) {
        self.pending.retain(|p| p.token != token);
    }

    /// Number of operations still awaited.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Feeds an operation seen in a notification of `call_id`. Finished operations resolve the
    /// matching waiter; returns its token. Unmatched or unfinished operations change nothing.
    pub fn handle_operation(
        &mut self,
        call_id: &str,
        op: &CommsOperation,
    ) -> Option<OperationToken> {
        if !op.is_finished() {
            return None;
        }
        let by_id = op.id.as_deref().and_then(|id| {
            self.pending
                .iter()
                .position(|p| p.operation_id.as_deref() == Some(id))
        });
        let idx = by_id.or_else(|| {
            let ctx = op.client_context.as_deref()?;
            self.pending.iter().position(|p| {
                p.client_context.as_deref() == Some(ctx)
                    && (p.call_id == call_id || call_id.is_empty())
            })
        })?;
        let p = self.pending.swap_remove(idx);
        self.outcomes
            .push_back((p.token, OperationOutcome::Finished(Box::new(op.clone()))));
        Some(p.token)
    }

    /// The earliest deadline, for the caller's timer.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.deadline).min()
    }

    /// Expires waiters whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].deadline <= now {
                let p = self.pending.swap_remove(i);
                self.outcomes
                    .push_back((p.token, OperationOutcome::TimedOut));
            } else {
                i += 1;
            }
        }
    }

    /// The next resolved operation.
    #[must_use]
    pub fn poll_outcome(&mut self) -> Option<(OperationToken, OperationOutcome)> {
        self.outcomes.pop_front()
    }
}
