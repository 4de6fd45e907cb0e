//! An executor that acts only while a right to act holds: a watch leader's leadership, a
//! cluster lock in etcd or in the state store (fences nest: a run under the state store's
//! lock by a watch leader is checked against both). Before each step the [`Fence`] is
//! checked where it is kept (etcd: the key still has the create revision this process won
//! with, a fencing token; the state store: a heartbeat found the lock still ours) and by
//! the clock; before each statement of the step, by the clock again. What no check closes
//! is the moment between the last look and the statement reaching its server: MySQL cannot
//! check a token itself. Observations and held connections pass through. I/O: none of its
//! own.

use std::sync::Arc;
use std::time::Duration;

use super::{Executor, Gate, Hold};
use crate::observe::ServerState;
use crate::step::{Step, StepError, StepOutcome};
use crate::topology::Address;

/// A right to act that can run out.
pub trait Fence: Send + Sync + 'static {
    /// Before a step: it still holds, where it is kept (etcd, the state store) and by the
    /// clock. Err says why not.
    fn check(&self) -> impl std::future::Future<Output = Result<(), String>> + Send;
    /// Before each statement: it still holds by the clock (no I/O).
    fn holds(&self) -> Result<(), String>;
}

/// `inner`, whose steps each first check `fence` (None: every step runs).
pub struct Fenced<E, F> {
    pub inner: E,
    pub fence: Option<Arc<F>>,
}

impl<E: Executor, F: Fence> Executor for Fenced<E, F> {
    fn observe(&self, address: &Address) -> impl std::future::Future<Output = ServerState> + Send {
        self.inner.observe(address)
    }

    async fn execute(&self, step: &Step) -> Result<StepOutcome, StepError> {
        self.execute_gated(step, &|| Ok(())).await
    }

    /// Fences nest: `gate` (an outer fence's) is asked with this one before each statement.
    async fn execute_gated(&self, step: &Step, gate: Gate<'_>) -> Result<StepOutcome, StepError> {
        let Some(fence) = &self.fence else {
            return self.inner.execute_gated(step, gate).await;
        };
        fence
            .check()
            .await
            .map_err(|why| StepError::Precondition(format!("{why}: not run")))?;
        // The step's own connection and waits take time, during which this process may be
        // paused and replaced.
        let both = || {
            fence.holds()?;
            gate()
        };
        self.inner.execute_gated(step, &both).await
    }

    fn hold(&self, address: &Address, length: Duration) -> impl std::future::Future<Output = Hold> {
        self.inner.hold(address, length)
    }

    fn close(&self) -> impl std::future::Future<Output = ()> {
        self.inner.close()
    }
}
