//! An executor that guards a failover against the primary it replaces. Takes an executor
//! and the failed primary's address; gives the same executor, except that whenever the
//! failed primary is seen answering while the failover runs (a hung server that thaws, a
//! crashed one restarted with `read_only=0` in its configuration) it is fenced at once
//! (read_only, its writing sessions killed) before anything else looks at it.
//!
//! Why at once, and not after the run: a thawed primary's commits held for semi-sync
//! acknowledgements wait for replicas whose IO threads the failover has stopped; after
//! `rpl_semi_sync_master_timeout` they are acknowledged to their clients, and the new
//! primary never has them. The fence kills those sessions first (a killed session's
//! commit is never acknowledged). [`Guarded::watch`] probes the failed primary every
//! [`PROBE_EVERY`] while the run's steps take their time; every observation of it by the
//! run (a promotion checks that no other server is writable) fences it first too, so a
//! promotion that finds the old primary writable fences it and goes on. Each probe is
//! bounded by [`PROBE_TIMEOUT`]: a frozen server accepts connections but never answers,
//! and the run must not wait the whole read timeout for it. I/O: through the inner
//! executor only.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Executor, Gate, Hold};
use crate::observe::{Reach, ServerState, Unreachable};
use crate::step::{Action, Condition, Phase, Step, StepError, StepOutcome};
use crate::topology::Address;

/// How often [`Guarded::watch`] looks at the failed primary.
pub const PROBE_EVERY: Duration = Duration::from_millis(50);
/// How long one look may take: a server that answers at all answers a handshake in
/// milliseconds.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// `inner`, guarding against the failed primary `former` (None: a plain pass-through).
pub struct Guarded<E> {
    pub inner: E,
    former: Option<(String, Address)>,
    /// Fence it when it answers writable (false: only bound the look, for a decision
    /// that is not made yet: a primary that answers again is no failover).
    fence: bool,
    /// What the guard did, for the run's report: one line per fence.
    fenced: Mutex<Vec<String>>,
}

impl<E: Executor> Guarded<E> {
    /// Guards against `former` (its host id and address), if any.
    pub fn new(inner: E, former: Option<(String, Address)>) -> Guarded<E> {
        Guarded {
            inner,
            former,
            fence: true,
            fenced: Mutex::new(Vec::new()),
        }
    }

    /// Looks at `former` within [`PROBE_TIMEOUT`] and never fences it: for observing
    /// before a failover is decided.
    pub fn probing(inner: E, former: Option<(String, Address)>) -> Guarded<E> {
        Guarded {
            fence: false,
            ..Guarded::new(inner, former)
        }
    }

    /// What the guard fenced, in order.
    pub fn fenced(&self) -> Vec<String> {
        self.fenced.lock().expect("not poisoned").clone()
    }

    /// Looks at the failed primary every [`PROBE_EVERY`] until `done`, fencing it the
    /// moment it answers writable.
    pub async fn watch(&self, done: &AtomicBool) {
        let Some((_, address)) = &self.former else {
            return;
        };
        while !done.load(Ordering::SeqCst) {
            let _ = self.observe_former(address).await;
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    /// After the failover: looks at the failed primary (never fencing it itself) until it
    /// is seen read_only or `stop`, calling `answered` each time it answers writable, every
    /// [`PROBE_EVERY`] for the first minute, then every second: the watch, woken, fences
    /// it through its recorded runs, which name what it holds that the new primary lacks.
    /// The moment between the last step and the next poll is not left to chance.
    pub async fn watch_until_fenced(&self, stop: &AtomicBool, answered: impl Fn()) {
        let Some((_, address)) = &self.former else {
            return;
        };
        let began = tokio::time::Instant::now();
        while !stop.load(Ordering::SeqCst) {
            match self.probe(address).await.info() {
                Some(i) if i.read_only => return,
                Some(_) => answered(),
                None => {}
            }
            let every = if began.elapsed() < Duration::from_secs(60) {
                PROBE_EVERY
            } else {
                Duration::from_secs(1)
            };
            tokio::time::sleep(every).await;
        }
    }

    /// The failed primary as it is now, fenced first if it answers writable.
    async fn observe_former(&self, address: &Address) -> ServerState {
        let seen = self.probe(address).await;
        if !self.fence || seen.info().is_none_or(|i| i.read_only) {
            return seen;
        }
        let (host, _) = self.former.as_ref().expect("guarding");
        let fence = Step {
            number: 0,
            phase: Phase::Failover,
            host: host.clone(),
            address: address.clone(),
            action: Action::Fence { kill_writers: true },
            why: format!("{host}, the primary this failover replaces, answers writable"),
            requires: vec![Condition::Reachable],
            expects: vec![Condition::ReadOnly { on: true }],
            detachable: None,
        };
        let line = match self.inner.execute(&fence).await {
            Ok(_) => format!(
                "{host}, the primary this failover replaces, answered writable while it ran: fenced at once (read_only, writing sessions killed)"
            ),
            Err(e) => format!(
                "{host}, the primary this failover replaces, answered writable while it ran; fencing it failed: {e}"
            ),
        };
        tracing::warn!("{line}");
        self.fenced.lock().expect("not poisoned").push(line);
        self.probe(address).await
    }

    async fn probe(&self, address: &Address) -> ServerState {
        match tokio::time::timeout(PROBE_TIMEOUT, self.inner.observe(address)).await {
            Ok(state) => state,
            Err(_) => ServerState {
                address: address.clone(),
                reach: Reach::Unreachable {
                    cause: Unreachable::HungAfterConnect,
                    detail: format!(
                        "did not answer within {}ms (probed while its failover runs)",
                        PROBE_TIMEOUT.as_millis()
                    ),
                },
            },
        }
    }
}

impl<E: Executor> Executor for Guarded<E> {
    async fn observe(&self, address: &Address) -> ServerState {
        match &self.former {
            Some((_, former)) if former == address => self.observe_former(address).await,
            _ => self.inner.observe(address).await,
        }
    }

    fn execute(
        &self,
        step: &Step,
    ) -> impl std::future::Future<Output = Result<StepOutcome, StepError>> + Send {
        self.inner.execute(step)
    }

    fn execute_gated(
        &self,
        step: &Step,
        gate: Gate<'_>,
    ) -> impl std::future::Future<Output = Result<StepOutcome, StepError>> + Send {
        self.inner.execute_gated(step, gate)
    }

    fn hold(&self, address: &Address, length: Duration) -> impl std::future::Future<Output = Hold> {
        self.inner.hold(address, length)
    }

    fn close(&self) -> impl std::future::Future<Output = ()> {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::executor::sim::{Simulator, host_address};
    use crate::gtid::Flavor;

    fn guarded(sim: &Arc<Simulator>) -> Guarded<Arc<Simulator>> {
        Guarded::new(sim.clone(), Some(("h0".into(), host_address(0))))
    }

    #[tokio::test(start_paused = true)]
    async fn the_failed_primary_is_fenced_the_moment_it_answers_and_only_it() {
        let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
        sim.freeze(host_address(0));
        let g = guarded(&sim);
        let done = AtomicBool::new(false);
        let thaw = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(g.fenced().is_empty(), "nothing fenced while it is frozen");
            sim.thaw(host_address(0));
            tokio::time::sleep(PROBE_EVERY * 3).await;
            done.store(true, Ordering::SeqCst);
        };
        tokio::join!(g.watch(&done), thaw);
        assert!(sim.server(host_address(0)).unwrap().read_only);
        assert_eq!(g.fenced().len(), 1, "{:?}", g.fenced());
        // Other servers pass through untouched.
        sim.set_read_only(host_address(1), false);
        let seen = g.observe(&host_address(1)).await;
        assert!(seen.info().is_some_and(|i| !i.read_only));
    }

    #[tokio::test(start_paused = true)]
    async fn an_observation_of_the_writable_failed_primary_fences_it_first() {
        let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
        let g = guarded(&sim);
        let seen = g.observe(&host_address(0)).await;
        assert!(seen.info().is_some_and(|i| i.read_only), "{seen:?}");
        assert_eq!(g.fenced().len(), 1);
        // A frozen one costs the probe's bound, not the read timeout.
        sim.freeze(host_address(0));
        let began = tokio::time::Instant::now();
        let seen = g.observe(&host_address(0)).await;
        assert!(seen.info().is_none());
        assert!(began.elapsed() <= PROBE_TIMEOUT, "{:?}", began.elapsed());
        // No former primary: a pass-through.
        let plain = Guarded::new(sim.clone(), None);
        sim.thaw(host_address(0));
        sim.set_read_only(host_address(0), false);
        assert!(
            plain
                .observe(&host_address(0))
                .await
                .info()
                .is_some_and(|i| !i.read_only)
        );
        let done = AtomicBool::new(false);
        plain.watch(&done).await;
    }
}
