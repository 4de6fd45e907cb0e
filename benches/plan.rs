//! How long `plan` (build and proof) takes on 10, 1,000 and 10,000 simulated hosts, for
//! three shapes of work: nothing to do (what every `orch plan` on a healthy cluster
//! costs), a switchover, and a reshape that moves every leaf (a fanout-10 tree becomes a
//! fanout-5 one). Run: `cargo bench --bench plan`.

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use orch::executor::observe_all;
use orch::executor::sim::{Simulator, host_address};
use orch::gtid::Flavor;
use orch::plan::{Observed, PlanOptions, plan};
use orch::spec::Policy;

mod common;
use common::desired;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().build().unwrap();
    let policy = Policy::default();
    let mut group = c.benchmark_group("plan");
    group.sample_size(10);
    for n in [10usize, 1_000, 10_000] {
        let sim = Simulator::tree(n, 10, Flavor::Mariadb);
        sim.write(host_address(0), 100).unwrap();
        sim.tick();
        let sim = Arc::new(sim);
        let cases = [
            ("no changes", desired(n, 10, 0)),
            ("switchover", desired(n, 10, 1)),
            ("reshape", desired(n, 5, 0)),
        ];
        for (what, d) in cases {
            let addresses: Vec<_> = d.hosts.iter().map(|h| h.address.clone()).collect();
            let hosts = rt.block_on(observe_all(sim.clone(), &addresses, 64));
            let observed = Observed {
                hosts,
                undeclared: Vec::new(),
            };
            let p = plan(&d, &observed, &policy, PlanOptions::default()).expect("proven");
            assert!(p.blocked.is_empty(), "{what} {n}: {:?}", p.blocked.first());
            group.bench_with_input(BenchmarkId::new(what, n), &n, |b, _| {
                b.iter(|| plan(&d, &observed, &policy, PlanOptions::default()).expect("proven"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
