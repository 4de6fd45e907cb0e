//! How long `orch apply`'s step engine takes to run a plan on 10 and 1,000 simulated hosts:
//! a switchover, and a reshape that moves every leaf (a fanout-10 tree becomes a fanout-5
//! one). Each step is re-checked on a fresh observation, executed, and its promises waited
//! for, as on real servers; the simulator advances replication by one tick per step.
//! Run: `cargo bench --bench apply`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use orch::apply::{Cluster, Limits, Progress, StepResult, run};
use orch::executor::sim::{Simulator, host_address};
use orch::executor::{Executor, observe_all};
use orch::gtid::Flavor;
use orch::observe::ServerState;
use orch::plan::{Observed, Plan, PlanOptions, plan};
use orch::spec::Policy;
use orch::step::{Step, StepError, StepOutcome};
use orch::topology::Address;

mod common;
use common::desired;

/// The simulator, with replication advancing one tick after every step.
struct Ticking(Arc<Simulator>);

impl Executor for Ticking {
    async fn observe(&self, address: &Address) -> ServerState {
        self.0.observe(address).await
    }
    async fn execute(&self, step: &Step) -> Result<StepOutcome, StepError> {
        let r = self.0.execute(step).await;
        self.0.tick();
        r
    }
}

struct Quiet;
impl Progress for Quiet {
    fn started(&mut self, _: &Step) {}
    fn finished(&mut self, _: &Step, _: &StepResult, _: Duration) {}
    fn note(&mut self, _: &str) {}
}

fn cluster(n: usize) -> Simulator {
    let sim = Simulator::tree(n, 10, Flavor::Mariadb);
    sim.write(host_address(0), 100).unwrap();
    sim.tick();
    sim
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let policy = Policy::default();
    let mut group = c.benchmark_group("apply");
    group.sample_size(10);
    for n in [10usize, 1_000] {
        for (what, d) in [
            ("switchover", desired(n, 10, 1)),
            ("reshape", desired(n, 5, 0)),
        ] {
            let addresses: Vec<_> = d.hosts.iter().map(|h| h.address.clone()).collect();
            let hosts = rt.block_on(observe_all(Arc::new(cluster(n)), &addresses, 64));
            let observed = Observed {
                hosts,
                undeclared: Vec::new(),
            };
            let p: Plan = plan(&d, &observed, &policy, PlanOptions::default()).expect("proven");
            let servers = Cluster {
                servers: d
                    .hosts
                    .iter()
                    .map(|h| (h.id.clone(), h.address.clone()))
                    .collect(),
                states: Vec::new(),
            };
            let apply = |sim: Arc<Simulator>| {
                let stop = AtomicBool::new(false);
                rt.block_on(run(
                    Arc::new(Ticking(sim)),
                    &servers,
                    &p,
                    Limits::default(),
                    &stop,
                    &mut Quiet,
                ))
            };
            let report = apply(Arc::new(cluster(n)));
            assert!(
                report.succeeded(),
                "{what} {n}: {:?}",
                report
                    .results
                    .iter()
                    .find(|r| matches!(r, StepResult::Failed(_)))
            );
            eprintln!("apply {what} {n} hosts: {} steps", p.steps.len());
            group.bench_with_input(BenchmarkId::new(what, n), &n, |b, _| {
                b.iter_batched(|| Arc::new(cluster(n)), &apply, BatchSize::PerIteration)
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
