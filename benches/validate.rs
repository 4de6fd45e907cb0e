//! How long `orch validate` takes on a 10,000-host topology (read, parse, check).
//! Run: `cargo bench --bench validate`.

use criterion::{Criterion, criterion_group, criterion_main};

fn big_topology(hosts: usize) -> String {
    let mut text = String::from(
        "cluster: big\ncredentials:\n  user: orch\n  password: ${ORCH_PASSWORD}\n  replication_user: repl\n  replication_password: ${ORCH_REPL_PASSWORD}\npolicy: safe\nhosts:\n",
    );
    text.push_str("  h0: { address: \"10.0.0.0:3306\", dc: dc0, promotion: prefer }\n");
    for i in 1..hosts {
        // A tree: every host replicates from one 10 below it, spread over 4 dcs.
        let source = i / 10;
        text.push_str(&format!(
            "  h{i}: {{ address: \"10.{}.{}.{}:3306\", dc: dc{}, source: h{source} }}\n",
            i / 65536,
            (i / 256) % 256,
            i % 256,
            i % 4
        ));
    }
    text
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    std::fs::write(&path, big_topology(10_000)).unwrap();
    let report = orch::validate::run(std::slice::from_ref(&path));
    assert_eq!(report.errors, 0, "{:?}", report.diagnostics.first());
    c.bench_function("validate 10,000 hosts", |b| {
        b.iter(|| orch::validate::run(std::slice::from_ref(&path)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
