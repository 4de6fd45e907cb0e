//! How long observing a 1,000-host topology takes when the servers answer at once: the
//! cost of `observe_all` itself (task spawning, the semaphore, building 1,000
//! `ServerState`s) on the simulator, with 32 observations in flight as `orch status` runs.
//! Run: `cargo bench --bench observe`.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use orch::executor::observe_all;
use orch::executor::sim::{Simulator, host_address};
use orch::gtid::Flavor;

fn bench(c: &mut Criterion) {
    // A tree of fanout 10 with some history, so GTID strings and replica lists are real.
    let sim = Simulator::tree(1_000, 10, Flavor::Mariadb);
    sim.write(host_address(0), 100).unwrap();
    sim.tick();
    let addresses = sim.addresses();
    let sim = Arc::new(sim);
    let rt = tokio::runtime::Builder::new_multi_thread().build().unwrap();
    let states = rt.block_on(observe_all(sim.clone(), &addresses, 32));
    assert_eq!(states.len(), 1_000);
    assert!(states.iter().all(|s| s.info().is_some()));

    c.bench_function("observe 1,000 simulated hosts (32 at once)", |b| {
        b.iter(|| rt.block_on(observe_all(sim.clone(), &addresses, 32)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
