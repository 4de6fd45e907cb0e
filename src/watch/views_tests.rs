//! Tests: after a failover, every view the watcher feeds (the API's problems and cluster
//! document, the page, `/metrics`) judges the cluster against the primary orch holds, the
//! way `orch status --state` does: `failover-drift` and the former primary that is gone,
//! never a dead primary that alerts forever. On the simulator, in paused time; the same
//! on real MariaDB is in `tests/integration/watch_http.rs`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::Watcher;
use crate::executor::sim::{Simulator, host_address};
use crate::gtid::Flavor;
use crate::observe::classify::tests::topology;
use crate::observe::snapshot::tests::failed_over;
use crate::spec::Policy;
use crate::state::Store;

/// A watcher on a 3-server star file (h0 the primary) with the state store in `dir`.
fn watcher(sim: &Arc<Simulator>, dir: &std::path::Path) -> Watcher<Simulator> {
    let t = topology(&[None, Some(0), Some(0)]);
    let store = Store::open(dir).unwrap();
    Watcher::new(t, Policy::default(), Vec::new(), sim.clone(), store, false).unwrap()
}

/// What the views show of cluster `sim`: the API's problems (code and host), the codes
/// in the cluster document the page reads, and the codes `orch_problems` counts.
fn views(
    w_hub: &super::Hub,
) -> (
    BTreeSet<(String, String)>,
    BTreeSet<String>,
    BTreeSet<String>,
) {
    let snapshot = w_hub
        .with("sim", |c| c.snapshot.clone())
        .flatten()
        .expect("observed");
    let api = snapshot
        .problems
        .iter()
        .map(|p| (p.code.name().to_string(), p.host.clone()))
        .collect();
    let doc = w_hub.cluster_json("sim").flatten().expect("observed");
    let page = doc["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap().to_string())
        .collect();
    let metrics = w_hub
        .metrics
        .encode()
        .lines()
        .filter_map(|l| l.strip_prefix("orch_problems{"))
        .filter_map(|l| l.split("code=\"").nth(1))
        .filter_map(|l| l.split('"').next())
        .map(str::to_string)
        .collect();
    (api, page, metrics)
}

/// The views agree with each other and show the failover to `new` as drift only.
fn assert_judged_against_new_primary(hub: &super::Hub) {
    let (api, page, metrics) = views(hub);
    let want: BTreeSet<(String, String)> = [("failover-drift", "h0"), ("unreachable", "h0")]
        .into_iter()
        .map(|(c, h)| (c.to_string(), h.to_string()))
        .collect();
    assert_eq!(api, want);
    let codes: BTreeSet<String> = want.into_iter().map(|(c, _)| c).collect();
    assert_eq!(page, codes);
    assert_eq!(metrics, codes);
}

/// Polls `w` once (its first poll), inside a LocalSet as `run` would.
async fn first_poll(mut w: Watcher<Simulator>) -> Arc<super::Hub> {
    let hub = w.hub.clone();
    tokio::task::LocalSet::new()
        .run_until(async move {
            let _commands = w.attach();
            let stop = Arc::new(AtomicBool::new(false));
            w.poll(&stop).await.unwrap();
        })
        .await;
    hub
}

#[tokio::test(start_paused = true)]
async fn every_view_judges_a_failover_against_the_new_primary() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
    sim.write(host_address(0), 5).unwrap();
    sim.tick();
    let w = watcher(&sim, dir.path());
    let hub = w.hub.clone();
    tokio::task::LocalSet::new()
        .run_until(async {
            let stop = Arc::new(AtomicBool::new(false));
            let task = tokio::task::spawn_local(w.run(stop.clone()));
            for n in 0..600 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                sim.tick();
                if n == 200 {
                    sim.kill(host_address(0));
                }
            }
            stop.store(true, Ordering::SeqCst);
            task.await.unwrap();
        })
        .await;
    let primary = Store::open(dir.path())
        .unwrap()
        .cluster_state("sim")
        .unwrap()
        .current_primary;
    // The recovery promotes the most advanced replica; with equal positions, h1.
    assert_eq!(primary.as_deref(), Some("h1"), "failed over");
    assert_judged_against_new_primary(&hub);
}

/// A watcher started after the failover (the store remembers h1) judges against h1 from
/// its first poll.
#[tokio::test(start_paused = true)]
async fn a_restarted_watcher_judges_against_the_recorded_primary_from_its_first_poll() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Arc::new(failed_over(3));
    Store::open(dir.path())
        .unwrap()
        .record_primary("sim", "h1")
        .unwrap();
    let hub = first_poll(watcher(&sim, dir.path())).await;
    assert_judged_against_new_primary(&hub);
}

/// A watcher that did not make the failover (an etcd follower, or one whose store never
/// saw it) learns the new primary from its first observation, and judges that very
/// observation against it.
#[tokio::test(start_paused = true)]
async fn a_watcher_that_follows_a_failover_judges_against_the_new_primary_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Arc::new(failed_over(3));
    let hub = first_poll(watcher(&sim, dir.path())).await;
    let primary = Store::open(dir.path())
        .unwrap()
        .cluster_state("sim")
        .unwrap()
        .current_primary;
    assert_eq!(primary.as_deref(), Some("h1"), "followed");
    assert_judged_against_new_primary(&hub);
}
