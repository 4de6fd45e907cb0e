//! The one I/O boundary between orch and servers: an intent-level [`Executor`].
//!
//! Takes intents ("observe this server", "run this step"), gives results in orch's vocabulary. Two
//! implementations: [`mysql::MysqlExecutor`] over mysql_async (the only code that knows SQL
//! and flavour differences) and [`sim::Simulator`], an in-memory topology with fault
//! injection for fast tests and benchmarks. Every scenario test runs on both.

pub mod fenced;
pub mod guarded;
pub mod mysql;
pub mod sim;

use std::future::Future;
use std::sync::Arc;

use crate::observe::{ServerState, Snapshot};
use crate::step::{Step, StepError, StepOutcome};
use crate::topology::Address;

pub trait Executor: Send + Sync + 'static {
    /// Observes one server. Never fails: an unreachable server is a [`ServerState`] too.
    fn observe(&self, address: &Address) -> impl Future<Output = ServerState> + Send;

    /// Runs one step on its server: the step's statements, or the bounded wait it names.
    /// The caller checks `requires` before and `expects` after (on a fresh observation).
    fn execute(&self, step: &Step) -> impl Future<Output = Result<StepOutcome, StepError>> + Send;

    /// [`Executor::execute`], asking `gate` before each statement that changes the server:
    /// an `Err` stops the step there, unsent (a watcher whose leadership ran out while the
    /// step ran: see [`fenced::Fenced`]). By default `gate` is asked once, first.
    fn execute_gated(
        &self,
        step: &Step,
        gate: Gate<'_>,
    ) -> impl Future<Output = Result<StepOutcome, StepError>> + Send {
        async move {
            gate().map_err(StepError::Precondition)?;
            self.execute(step).await
        }
    }

    /// Holds a connection to `address` open for up to `length`, returning early when it
    /// breaks (a killed server): how watch notices a crash before its next poll. An
    /// executor without connections never returns early.
    fn hold(&self, address: &Address, length: std::time::Duration) -> impl Future<Output = Hold> {
        let _ = address;
        async move {
            tokio::time::sleep(length).await;
            Hold::Ended
        }
    }

    /// Closes the connections it keeps (none by default).
    fn close(&self) -> impl Future<Output = ()> {
        async {}
    }
}

/// A shared executor: what a fence wraps around one kept for a whole watch.
impl<E: Executor> Executor for Arc<E> {
    fn observe(&self, address: &Address) -> impl Future<Output = ServerState> + Send {
        (**self).observe(address)
    }

    fn execute(&self, step: &Step) -> impl Future<Output = Result<StepOutcome, StepError>> + Send {
        (**self).execute(step)
    }

    fn execute_gated(
        &self,
        step: &Step,
        gate: Gate<'_>,
    ) -> impl Future<Output = Result<StepOutcome, StepError>> + Send {
        (**self).execute_gated(step, gate)
    }

    fn hold(&self, address: &Address, length: std::time::Duration) -> impl Future<Output = Hold> {
        (**self).hold(address, length)
    }

    fn close(&self) -> impl Future<Output = ()> {
        (**self).close()
    }
}

/// Asked before a statement is sent: `Err(why)` stops the step ([`Executor::execute_gated`]).
pub type Gate<'a> = &'a (dyn Fn() -> Result<(), String> + Sync);

/// How a held connection ([`Executor::hold`]) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// The hold ran its length: the server is alive.
    Ended,
    /// The connection broke: the server died, or the session was killed.
    Lost,
    /// No connection could be made.
    NoConnection,
}

/// Observes every address concurrently (at most `concurrency` at once); the result is in
/// the order of `addresses`. One hung server costs its own timeout, not everyone's.
pub async fn observe_all<E: Executor>(
    exec: Arc<E>,
    addresses: &[Address],
    concurrency: usize,
) -> Vec<ServerState> {
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, address) in addresses.iter().cloned().enumerate() {
        let (exec, limit) = (exec.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("never closed");
            (i, exec.observe(&address).await)
        });
    }
    let mut out: Vec<Option<ServerState>> = vec![None; addresses.len()];
    while let Some(joined) = tasks.join_next().await {
        let (i, state) = joined.expect("observation tasks do not panic");
        out[i] = Some(state);
    }
    out.into_iter()
        .map(|s| s.expect("every address observed"))
        .collect()
}

/// How many servers outside the file one observation follows.
pub const MAX_UNDECLARED: usize = 256;

/// Observes every declared server of `t` and the undeclared replicas they report, and
/// classifies the result against `primary`, the primary orch holds (None: the file's):
/// one [`Snapshot`] of the cluster (see [`Snapshot::new`]).
pub async fn observe_cluster<E: Executor>(
    exec: Arc<E>,
    t: &crate::spec::Topology,
    policy: &crate::spec::Policy,
    primary: Option<&str>,
    concurrency: usize,
) -> Snapshot {
    let addresses: Vec<Address> = t
        .hosts
        .iter()
        .map(|h| {
            h.address
                .as_ref()
                .map(|a| a.value.clone())
                .expect("validated")
        })
        .collect();
    let states = observe_all(exec.clone(), &addresses, concurrency).await;
    let undeclared = observe_undeclared(exec, &addresses, &states, concurrency).await;
    Snapshot::new(t, policy, primary, states, undeclared)
}

/// The servers the file does not name that replicate from the cluster, through any number
/// of them (a removed intermediate keeps its own replicas), breadth first, at most
/// [`MAX_UNDECLARED`].
pub async fn observe_undeclared<E: Executor>(
    exec: Arc<E>,
    declared: &[Address],
    states: &[ServerState],
    concurrency: usize,
) -> Vec<ServerState> {
    let mut known: Vec<Address> = declared.to_vec();
    let mut found: Vec<ServerState> = Vec::new();
    let mut frontier: Vec<ServerState> = states.to_vec();
    while found.len() < MAX_UNDECLARED {
        let mut extra = crate::observe::undeclared_replicas(&known, &frontier);
        extra.truncate(MAX_UNDECLARED - found.len());
        if extra.is_empty() {
            break;
        }
        known.extend(extra.iter().cloned());
        frontier = observe_all(exec.clone(), &extra, concurrency).await;
        found.extend(frontier.iter().cloned());
    }
    found
}
