//! Tests: a primary that thaws while its failover runs is fenced at once, whichever step
//! the failover is at, and the promotion goes on: never two writable servers, and the
//! failover completes in its first run; one that thaws before the decision (while its
//! replicas' IO threads are stopped for it) is no failover and keeps its replicas. On the simulator, in paused time; on real MariaDB
//! under a semi-sync write load in `tests/integration/failover_decisions.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::Watcher;
use crate::executor::Executor;
use crate::executor::sim::{Simulator, host_address};
use crate::gtid::Flavor;
use crate::observe::ServerState;
use crate::observe::classify::tests::topology;
use crate::spec::Policy;
use crate::state::{RunFilter, Store};
use crate::step::{Step, StepError, StepOutcome};
use crate::topology::Address;

/// The simulator, thawing the frozen h0 right after its `after`-th step.
struct ThawAfter {
    sim: Arc<Simulator>,
    after: usize,
    steps: AtomicUsize,
}

impl Executor for ThawAfter {
    async fn observe(&self, address: &Address) -> ServerState {
        self.sim.observe(address).await
    }

    async fn execute(&self, step: &Step) -> Result<StepOutcome, StepError> {
        let result = self.sim.execute(step).await;
        if self.steps.fetch_add(1, Ordering::SeqCst) + 1 == self.after {
            self.sim.thaw(host_address(0));
        }
        result
    }
}

fn writable(sim: &Simulator) -> Vec<usize> {
    (0..3)
        .filter(|&i| {
            sim.server(host_address(i))
                .is_some_and(|s| s.health == crate::executor::sim::Health::Up && !s.read_only)
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_primary_thawing_after_any_step_of_its_failover_is_fenced_at_once() {
    for after in 1..=9 {
        let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
        sim.write(host_address(0), 5).unwrap();
        sim.tick();
        let exec = Arc::new(ThawAfter {
            sim: sim.clone(),
            after,
            steps: AtomicUsize::new(0),
        });
        let dir = tempfile::tempdir().unwrap();
        let t = topology(&[None, Some(0), Some(0)]);
        let w = Watcher::new(
            t,
            Policy::default(),
            Vec::new(),
            exec,
            Store::open(dir.path()).unwrap(),
            false,
        )
        .unwrap();
        let mut twice = Vec::new();
        tokio::task::LocalSet::new()
            .run_until(async {
                let stop = Arc::new(AtomicBool::new(false));
                let task = tokio::task::spawn_local(w.run(stop.clone()));
                tokio::time::sleep(Duration::from_millis(1500)).await;
                sim.freeze(host_address(0));
                for _ in 0..1500 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    sim.tick();
                    let w = writable(&sim);
                    if w.len() > 1 {
                        twice.push(w);
                    }
                }
                stop.store(true, Ordering::SeqCst);
                task.await.unwrap();
            })
            .await;
        // Steps 1 and 2 stop the replicas' IO threads before the decision: a primary that
        // answers then is no failover, and keeps its replicas.
        if after <= 2 {
            assert!(twice.is_empty(), "thawed after step {after}: {twice:?}");
            assert_eq!(writable(&sim), vec![0], "thawed after step {after}");
            for i in [1, 2] {
                let rep = sim.server(host_address(i)).unwrap().replication.unwrap();
                assert_eq!(rep.source, host_address(0));
                assert_ne!(
                    rep.io,
                    crate::observe::IoState::Stopped,
                    "h{i} receives again"
                );
            }
            continue;
        }
        // Before the promotion the old primary is fenced before anything looks at it;
        // thawed right after it (the last step), within the guard's next probes.
        let allowed = if after == 9 { 10 } else { 0 };
        assert!(
            twice.len() <= allowed,
            "thawed after step {after}: two writable for {} ticks of 10ms",
            twice.len()
        );
        let up = writable(&sim);
        assert!(
            up.len() == 1 && up[0] != 0,
            "thawed after step {after}: {up:?}"
        );
        assert!(sim.server(host_address(0)).unwrap().read_only);
        let store = Store::open(dir.path()).unwrap();
        let runs = store.runs(&RunFilter::default()).unwrap();
        let failover = runs.last().expect("a run");
        assert_eq!(
            failover.outcome.as_str(),
            "succeeded",
            "thawed after step {after}: {runs:#?}"
        );
    }
}
