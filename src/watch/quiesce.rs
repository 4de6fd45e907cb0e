//! Before a failover runs: the failed primary's replicas stop receiving, and the servers
//! are observed again, so the decision is made on positions that no longer move.
//!
//! Why: a failover decides from one observation, and a primary that was only hung may
//! thaw between that observation and the steps that stop its replicas' IO threads. A
//! replica that reconnects in that moment receives transactions the successor chosen
//! before never gets; it can then not follow the successor (the apply engine refuses the
//! move: it would ask for transactions the successor lacks) and is left behind. Stopping
//! every replica's IO thread first (each stop is harmless: a replica of a dead primary
//! receives nothing anyway) and deciding again closes that window; a decision that no
//! longer holds (the primary answers again, nobody can be promoted) starts them again.
//! Observing again costs milliseconds: the failed primary is looked at through
//! [`Guarded::probing`], bounded by its probe timeout (a frozen server would otherwise
//! cost the whole read timeout); one that answers again is no failover, and is not fenced
//! (its replicas receive again). I/O: the servers, through the watcher's executor.

use std::sync::Arc;

use super::{Watcher, log};
use crate::executor::Executor;
use crate::executor::guarded::Guarded;
use crate::observe::classify::observed_sources;
use crate::observe::{IoState, Snapshot};
use crate::step::{Action, Condition, Phase, Step};

impl<E: Executor> Watcher<E> {
    /// Stops the IO thread of every reachable server `snapshot` shows replicating from
    /// the unreachable `dead` (a host id), concurrently: the host ids stopped.
    pub(super) async fn stop_receiving(&self, snapshot: &Snapshot, dead: &str) -> Vec<String> {
        let Some(x) = self.index(dead) else {
            return Vec::new();
        };
        if snapshot.hosts[x].state.info().is_some() {
            // It answers (a forced failover): its plan fences it first.
            return Vec::new();
        }
        let states: Vec<_> = snapshot.hosts.iter().map(|h| h.state.clone()).collect();
        let sources = observed_sources(&states);
        let receiving: Vec<usize> = (0..snapshot.hosts.len())
            .filter(|&i| i != x && sources[i] == Some(x))
            .filter(|&i| {
                snapshot.hosts[i]
                    .state
                    .info()
                    .and_then(|inf| inf.replication.as_ref())
                    .is_some_and(|r| r.io != IoState::Stopped)
            })
            .collect();
        let steps: Vec<Step> = receiving
            .iter()
            .map(|&i| {
                self.io_step(
                    i,
                    Action::StopIo,
                    "stop receiving from the failed primary before the decision",
                )
            })
            .collect();
        let done = self.run_all(steps).await;
        if !done.is_empty() {
            log(
                self.cluster(),
                &format!(
                    "{} stopped receiving from {dead}: deciding on positions that no longer move",
                    done.join(", ")
                ),
            );
        }
        done
    }

    /// Starts the IO threads [`Watcher::stop_receiving`] stopped again: the failover it
    /// prepared does not happen.
    pub(super) async fn start_receiving(&self, hosts: &[String]) {
        if hosts.is_empty() {
            return;
        }
        let steps: Vec<Step> = hosts
            .iter()
            .filter_map(|h| self.index(h))
            // START SLAVE starts only what is stopped: the IO thread here.
            .map(|i| {
                self.io_step(
                    i,
                    Action::StartReplication,
                    "the failover it was stopped for does not happen",
                )
            })
            .collect();
        let done = self.run_all(steps).await;
        log(
            self.cluster(),
            &format!(
                "no failover: {} receive again",
                if done.is_empty() {
                    "none of the stopped replicas could be started; they".to_string()
                } else {
                    done.join(", ")
                }
            ),
        );
    }

    /// A step on declared host `i`, outside any plan (the engine's checks are not run).
    fn io_step(&self, i: usize, action: Action, why: &str) -> Step {
        Step {
            number: 0,
            phase: Phase::Failover,
            host: self.id(i).to_string(),
            address: self.desired.hosts[i].address.clone(),
            action,
            why: why.to_string(),
            requires: vec![Condition::Reachable],
            expects: Vec::new(),
            detachable: None,
        }
    }

    /// Runs `steps` concurrently; the hosts whose step succeeded (a failure is logged).
    async fn run_all(&self, steps: Vec<Step>) -> Vec<String> {
        let mut tasks = tokio::task::JoinSet::new();
        for step in steps {
            let exec = self.exec.clone();
            tasks.spawn(async move {
                let result = exec.execute(&step).await;
                (step, result)
            });
        }
        let mut done = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (step, result) = joined.expect("steps do not panic");
            match result {
                Ok(_) => done.push(step.host),
                Err(e) => tracing::warn!(
                    cluster = self.cluster(),
                    "{}: {}: {e}",
                    step.host,
                    step.action.describe()
                ),
            }
        }
        done.sort();
        done
    }

    /// The cluster observed again, the failed primary `dead` through [`Guarded::probing`].
    pub(super) async fn observe_guarding(&self, dead: &str) -> Snapshot {
        let former = self
            .index(dead)
            .map(|x| (dead.to_string(), self.desired.hosts[x].address.clone()));
        crate::executor::observe_cluster(
            Arc::new(Guarded::probing(self.exec.clone(), former)),
            &self.topology,
            &self.policy,
            Some(self.id(self.primary)),
            32,
        )
        .await
    }
}
