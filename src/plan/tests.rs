//! Plans on the simulator: tables of scenarios (each check, each kind of change), then the
//! plan executed on the simulator, observed again and planned again (no steps left), and a
//! property test over random topologies and random desired shapes.

use std::sync::Arc;

use super::*;
use crate::executor::observe_all;
use crate::executor::sim::{Simulator, host_address};
use crate::gtid::Flavor;
use crate::step::{Action, GtidPosition, Phase};

/// `("h1", Some("h0"))`: host `hN` lives at `host_address(N)`.
pub(crate) fn desired(hosts: &[(&str, Option<&str>)]) -> Desired {
    Desired {
        cluster: "sim".into(),
        hosts: hosts
            .iter()
            .map(|(id, source)| DesiredHost {
                id: id.to_string(),
                address: host_address(id[1..].parse().expect("hN")),
                source: source.map(str::to_string),
                promotion: Promotion::Neutral,
                delay_secs: 0,
                dc: None,
            })
            .collect(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Observes what `plan` needs: the desired hosts, then the replicas they report that the
/// file does not declare.
pub(crate) fn observe(sim: &Arc<Simulator>, d: &Desired) -> Observed {
    let addresses: Vec<_> = d.hosts.iter().map(|h| h.address.clone()).collect();
    let rt = runtime();
    let hosts = rt.block_on(observe_all(sim.clone(), &addresses, 64));
    let undeclared = rt.block_on(crate::executor::observe_undeclared(
        sim.clone(),
        &addresses,
        &hosts,
        64,
    ));
    Observed { hosts, undeclared }
}

/// What `orch status --format json` would print for the hosts of `d` (problems aside).
fn snapshot_of(sim: &Arc<Simulator>, d: &Desired) -> crate::observe::Snapshot {
    let observed = observe(sim, d);
    crate::observe::Snapshot {
        schema: 1,
        cluster: d.cluster.clone(),
        hosts: d
            .hosts
            .iter()
            .zip(observed.hosts)
            .map(|(h, state)| crate::observe::ObservedHost {
                id: h.id.clone(),
                desired_source: h.source.clone(),
                state,
            })
            .collect(),
        undeclared: Vec::new(),
        problems: Vec::new(),
    }
}

fn policy() -> Policy {
    Policy::default()
}

fn plan_of(sim: &Arc<Simulator>, d: &Desired, options: PlanOptions) -> Plan {
    let observed = observe(sim, d);
    plan(d, &observed, &policy(), options).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs every step on the simulator (ticking so replication flows), checking after each
/// step that the cluster never has two writable servers or a cycle.
pub(crate) fn execute(sim: &Simulator, plan: &Plan) {
    for step in &plan.steps {
        sim.run_step(step).unwrap_or_else(|e| {
            panic!(
                "step {} {:?} on {}: {e}",
                step.number, step.action, step.host
            )
        });
        let writable: Vec<_> = sim
            .addresses()
            .into_iter()
            .filter(|a| {
                // A dead server takes no writes.
                sim.server(a).is_some_and(|s| {
                    s.health.process_running() && !s.read_only && s.replication.is_none()
                })
            })
            .collect();
        assert!(
            writable.len() <= 1,
            "after step {}: writable {writable:?}",
            step.number
        );
        sim.tick();
    }
    for _ in 0..3 {
        sim.tick();
    }
}

fn codes(p: &Plan) -> Vec<(BlockCode, String)> {
    p.blocked.iter().map(|b| (b.code, b.host.clone())).collect()
}

fn actions(p: &Plan) -> Vec<String> {
    p.steps
        .iter()
        .map(|s| {
            let what = match &s.action {
                Action::Fence { .. } => "fence".to_string(),
                Action::Unfence => "unfence".into(),
                Action::StopReplication => "stop".into(),
                Action::StopIo => "stop-io".into(),
                Action::WaitRelayLog { .. } => "relay".into(),
                Action::WaitForGtid { until, .. } => format!("wait:{until}"),
                Action::ChangeSource { source, .. } => format!("source:{source}"),
                Action::StartReplication => "start".into(),
                Action::Promote => "promote".into(),
                Action::ResetReplication => "reset".into(),
            };
            format!("{} {what}", s.host)
        })
        .collect()
}

/// Plans, checks the steps, executes them, and checks that planning again finds nothing.
fn converge(sim: &Arc<Simulator>, d: &Desired, options: PlanOptions, want_steps: &[&str]) -> Plan {
    write_on_primary(sim, 3);
    let p = plan_of(sim, d, options);
    assert_eq!(actions(&p), want_steps, "{p:#?}");
    execute(sim, &p);
    let again = plan_of(sim, d, options);
    assert!(again.steps.is_empty(), "planning again: {:#?}", again.steps);
    assert_eq!(
        codes(&again),
        codes(&p),
        "same blocked changes after applying"
    );
    p
}

/// Application traffic: writes on the live primary, replicated.
fn write_on_primary(sim: &Simulator, n: u64) {
    let primary = sim
        .addresses()
        .into_iter()
        .find(|a| {
            sim.server(a)
                .is_some_and(|s| !s.read_only && s.replication.is_none())
        })
        .expect("a writable primary");
    sim.write(&primary, n).expect("write");
    sim.tick();
}

const STAR3: &[(&str, Option<&str>)] = &[("h0", None), ("h1", Some("h0")), ("h2", Some("h0"))];

#[test]
fn healthy_topology_has_no_steps() {
    let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
    sim.tick();
    let p = plan_of(&sim, &desired(STAR3), PlanOptions::default());
    assert!(
        p.steps.is_empty() && p.blocked.is_empty() && p.warnings.is_empty(),
        "{p:#?}"
    );
    assert_eq!(p.exit_code(true), 0);
}

#[test]
fn star_to_subtree_waits_for_the_new_source() {
    let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
    let d = desired(&[("h0", None), ("h1", Some("h0")), ("h2", Some("h1"))]);
    let p = converge(
        &sim,
        &d,
        PlanOptions::default(),
        &["h2 stop", "h1 wait:h2", "h2 source:h1", "h2 start"],
    );
    assert_eq!(p.exit_code(true), 2);
    assert_eq!(p.exit_code(false), 0);
}

#[test]
fn moving_up_needs_no_wait() {
    let sim = Arc::new(Simulator::chain(3, Flavor::Mariadb));
    converge(
        &sim,
        &desired(STAR3),
        PlanOptions::default(),
        &["h2 stop", "h2 source:h0", "h2 start"],
    );
}

#[test]
fn swapping_parent_and_child_never_makes_a_cycle() {
    // h0 → h1 → h2 becomes h0 → h2 → h1: h2 must move first.
    let sim = Arc::new(Simulator::chain(3, Flavor::Mariadb));
    let d = desired(&[("h0", None), ("h1", Some("h2")), ("h2", Some("h0"))]);
    converge(
        &sim,
        &d,
        PlanOptions::default(),
        &[
            "h2 stop",
            "h2 source:h0",
            "h2 start",
            "h1 stop",
            "h2 wait:h1",
            "h1 source:h2",
            "h1 start",
        ],
    );
}

#[test]
fn deep_move_below_a_descendants_sibling() {
    // h0 → h1 → {h3, h4}, h0 → h2; h1 moves below h4's sibling h3? No: below h2, and h3
    // below h4 (a sibling).
    let sim = Arc::new(Simulator::new());
    sim.add_primary(host_address(0), Flavor::Mariadb)
        .add_replica(host_address(1), host_address(0))
        .add_replica(host_address(2), host_address(0))
        .add_replica(host_address(3), host_address(1))
        .add_replica(host_address(4), host_address(1));
    let d = desired(&[
        ("h0", None),
        ("h1", Some("h2")),
        ("h2", Some("h0")),
        ("h3", Some("h4")),
        ("h4", Some("h1")),
    ]);
    let p = converge(
        &sim,
        &d,
        PlanOptions::default(),
        &[
            "h1 stop",
            "h2 wait:h1",
            "h1 source:h2",
            "h1 start",
            "h3 stop",
            "h4 wait:h3",
            "h3 source:h4",
            "h3 start",
        ],
    );
    assert!(p.blocked.is_empty());
}

/// h0 → {h1, h2} becomes h1 → {h0, h2}.
/// The siblings move under the candidate while writes still flow; the write-block window
/// is only fence .. promote; the old primary follows last.
const SWITCHOVER: &[&str] = &[
    "h2 stop",
    "h1 wait:h2",
    "h2 source:h1",
    "h2 start",
    "h0 fence",
    "h1 wait:h0",
    "h1 stop",
    "h1 reset",
    "h1 promote",
    "h0 source:h1",
    "h0 start",
];

#[test]
fn switchover_fences_waits_repoints_and_promotes_last() {
    let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
    let d = desired(&[("h0", Some("h1")), ("h1", None), ("h2", Some("h1"))]);
    let p = converge(&sim, &d, PlanOptions::default(), SWITCHOVER);
    // The old primary's own writes are in gtid_current_pos only.
    let old = p
        .steps
        .iter()
        .find(|s| s.host == "h0" && matches!(s.action, Action::ChangeSource { .. }));
    assert!(matches!(
        old.map(|s| &s.action),
        Some(Action::ChangeSource {
            gtid_position: GtidPosition::CurrentPos,
            with_credentials: true,
            ..
        })
    ));
    assert!(matches!(
        p.steps[4].action,
        Action::Fence { kill_writers: true }
    ));
    // The new primary takes writes; they reach everyone.
    sim.write(host_address(1), 5).expect("writable");
    for _ in 0..3 {
        sim.tick();
    }
    let pos = |i| sim.server(host_address(i)).expect("server").position();
    assert_eq!(pos(0), pos(1));
    assert_eq!(pos(2), pos(1));
}

#[test]
fn switchover_on_mysql_uses_auto_position() {
    let sim = Arc::new(Simulator::star(3, Flavor::Mysql));
    let d = desired(&[("h0", Some("h1")), ("h1", None), ("h2", Some("h1"))]);
    let p = converge(&sim, &d, PlanOptions::default(), SWITCHOVER);
    assert!(p.steps.iter().all(|s| !matches!(
        s.action,
        Action::ChangeSource {
            gtid_position: GtidPosition::SlavePos | GtidPosition::CurrentPos,
            ..
        }
    )));
}

type Fault = fn(&Simulator);

/// What makes h1 unfit to serve as anyone's source (switchover candidate or new source).
const SOURCE_FAULTS: &[(&str, Fault, BlockCode)] = &[
    (
        "no binlog",
        |s| {
            s.update(host_address(1), |x| x.log_bin = false);
        },
        BlockCode::SourceWithoutBinlog,
    ),
    (
        "no log_slave_updates",
        |s| {
            s.update(host_address(1), |x| x.log_replica_updates = false);
        },
        BlockCode::SourceWithoutLogReplicaUpdates,
    ),
    (
        "newer",
        |s| {
            s.update(host_address(1), |x| x.version = "11.4.2-MariaDB-log".into());
        },
        BlockCode::SourceNewer,
    ),
];

/// The plan for `d` on a 3-host star with history, after `fault`.
fn plan_after(fault: fn(&Simulator), d: &Desired) -> Plan {
    let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
    sim.write(host_address(0), 200).expect("write");
    sim.tick();
    fault(&sim);
    sim.write(host_address(0), 200).expect("write");
    sim.tick();
    plan_of(&sim, d, PlanOptions::default())
}

#[test]
fn switchover_blocked_checks() {
    let d = desired(&[("h0", Some("h1")), ("h1", None), ("h2", Some("h1"))]);
    let cases: &[(&str, Fault, BlockCode)] = &[
        (
            "errant candidate",
            |s| s.errant(host_address(1), 1),
            BlockCode::ErrantGtid,
        ),
        (
            "stopped candidate",
            |s| s.stop_replication(host_address(1)),
            BlockCode::CandidateNotReplicating,
        ),
        (
            "broken candidate",
            |s| s.break_sql(host_address(1), 1062, "Duplicate entry"),
            BlockCode::ReplicationError,
        ),
        (
            "delayed candidate (MASTER_DELAY observed)",
            |s| {
                s.update(host_address(1), |x| {
                    x.replication.as_mut().expect("replica").sql_delay = 3600;
                });
            },
            BlockCode::Delayed,
        ),
    ];
    for (name, fault, code) in cases.iter().chain(SOURCE_FAULTS) {
        let p = plan_after(*fault, &d);
        assert_eq!(
            codes(&p).first(),
            Some(&(*code, "h1".to_string())),
            "{name}: {p:#?}"
        );
        assert!(
            p.steps.iter().all(|s| !matches!(
                s.action,
                Action::Promote | Action::Fence { kill_writers: true }
            )),
            "{name}: no switchover step: {:?}",
            actions(&p)
        );
    }
}

/// A switchover that would leave a replica under an old primary without log_slave_updates
/// is blocked (lost-replica) unless --allow-lost-replicas, and then the loss is reported.
#[test]
fn switchover_stranding_a_replica_needs_allow_lost_replicas() {
    let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
    sim.update(host_address(0), |x| x.log_replica_updates = false);
    // h2 stays under h0, the old primary.
    let d = desired(&[("h0", Some("h1")), ("h1", None), ("h2", Some("h0"))]);
    let p = plan_of(&sim, &d, PlanOptions::default());
    assert_eq!(
        codes(&p),
        [(BlockCode::LostReplica, "h1".to_string())],
        "{p:#?}"
    );
    assert!(p.lost.is_empty() && p.steps.is_empty(), "{:?}", actions(&p));
    let allow = PlanOptions {
        allow_lost_replicas: true,
        ..PlanOptions::default()
    };
    let p = plan_of(&sim, &d, allow);
    assert!(p.blocked.is_empty(), "{p:#?}");
    assert_eq!(p.lost.len(), 1, "{p:#?}");
    assert_eq!(p.lost[0].host, "h2");
}

/// Two servers with one server_id: no change involves either (the source would refuse the
/// replica with 4052 and the plans would alternate forever).
#[test]
fn duplicate_identity_blocks_every_change_involving_it() {
    let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
    let id1 = sim.server(host_address(1)).expect("h1").server_id;
    sim.update(host_address(2), |x| x.server_id = id1);
    let chain = desired(&[("h0", None), ("h1", Some("h0")), ("h2", Some("h1"))]);
    let p = plan_of(&sim, &chain, PlanOptions::default());
    assert_eq!(
        codes(&p),
        [(BlockCode::DuplicateIdentity, "h2".to_string())],
        "{p:#?}"
    );
    assert!(p.steps.is_empty(), "{:?}", actions(&p));
    let switchover = desired(&[("h0", Some("h1")), ("h1", None), ("h2", Some("h1"))]);
    let p = plan_of(&sim, &switchover, PlanOptions::default());
    assert_eq!(
        codes(&p).first(),
        Some(&(BlockCode::DuplicateIdentity, "h1".to_string())),
        "{p:#?}"
    );
    assert!(p.steps.is_empty(), "{:?}", actions(&p));
}

/// A replica is never moved under a delayed one unless it is declared delayed too; a
/// plan of only blocked changes exits 3 with --detailed-exitcode.
#[test]
fn delayed_source_blocks_a_move() {
    let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
    sim.update(host_address(1), |x| {
        x.replication.as_mut().expect("replica").sql_delay = 3600;
    });
    let mut d = desired(&[("h0", None), ("h1", Some("h0")), ("h2", Some("h1"))]);
    d.hosts[1].delay_secs = 3600;
    let p = plan_of(&sim, &d, PlanOptions::default());
    assert_eq!(
        codes(&p),
        [(BlockCode::Delayed, "h2".to_string())],
        "{p:#?}"
    );
    assert!(p.steps.is_empty(), "{:?}", actions(&p));
    assert_eq!((p.exit_code(true), p.exit_code(false)), (3, 0));
    // Declared delayed too: the move is planned.
    d.hosts[2].delay_secs = 7200;
    let p = plan_of(&sim, &d, PlanOptions::default());
    assert!(p.blocked.is_empty(), "{p:#?}");
    assert_eq!(p.exit_code(true), 2);
}

#[test]
fn drift_repairs() {
    // A stopped replica, a writable replica and a read-only primary.
    let sim = Arc::new(Simulator::star(4, Flavor::Mariadb));
    sim.tick();
    sim.stop_replication(host_address(1));
    sim.set_read_only(host_address(2), false);
    sim.set_read_only(host_address(0), true);
    let d = desired(&[
        ("h0", None),
        ("h1", Some("h0")),
        ("h2", Some("h0")),
        ("h3", Some("h0")),
    ]);
    let p = plan_of(&sim, &d, PlanOptions::default());
    assert_eq!(actions(&p), ["h2 fence", "h1 start", "h0 unfence"]);
    execute(&sim, &p);
    assert!(plan_of(&sim, &d, PlanOptions::default()).steps.is_empty());
}

#[test]
fn replication_error_is_blocked_not_skipped() {
    let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
    sim.break_sql(
        host_address(2),
        1062,
        "Duplicate entry '1' for key 'PRIMARY'",
    );
    let p = plan_of(&sim, &desired(STAR3), PlanOptions::default());
    assert_eq!(codes(&p), [(BlockCode::ReplicationError, "h2".into())]);
    assert!(p.steps.is_empty());
    assert!(
        p.blocked[0].reason.contains("1062"),
        "{}",
        p.blocked[0].reason
    );
}

#[test]
fn errant_replica_is_not_moved() {
    let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
    sim.tick();
    sim.errant(host_address(2), 1);
    let d = desired(&[("h0", None), ("h1", Some("h0")), ("h2", Some("h1"))]);
    let p = plan_of(&sim, &d, PlanOptions::default());
    assert_eq!(codes(&p), [(BlockCode::ErrantGtid, "h2".into())]);
    assert!(p.steps.is_empty());
    // Once the primary writes again, strict mode stops h2 on the out-of-order GTID: now a
    // replication error, still not skipped.
    write_on_primary(&sim, 1);
    let p = plan_of(&sim, &d, PlanOptions::default());
    assert_eq!(codes(&p), [(BlockCode::ReplicationError, "h2".into())]);
}

#[test]
fn source_checks_block_a_move() {
    let d = desired(&[("h0", None), ("h1", Some("h0")), ("h2", Some("h1"))]);
    let cases: &[(&str, Fault, BlockCode)] = &[
        (
            "unreachable source",
            |s| s.kill(host_address(1)),
            BlockCode::Unreachable,
        ),
        (
            "purged source",
            |s| {
                s.stop_replication(host_address(2));
                s.write(host_address(0), 5).ok();
                s.tick();
                s.purge_binlogs(host_address(1));
            },
            BlockCode::PurgedGtids,
        ),
    ];
    for (name, fault, code) in cases.iter().chain(SOURCE_FAULTS) {
        let p = plan_after(*fault, &d);
        assert!(
            codes(&p).contains(&(*code, "h2".to_string())),
            "{name}: {p:#?}"
        );
        if *code == BlockCode::PurgedGtids {
            // The primary still has what h1 purged: no re-seed needed, and no "is at )".
            let why = &p
                .blocked
                .iter()
                .find(|b| b.host == "h2")
                .expect("blocked")
                .reason;
            assert!(
                why.contains("catch up") && !why.contains("is at )"),
                "{why}"
            );
        }
        assert!(
            p.steps.iter().all(|s| s.host != "h2"),
            "{name}: {:?}",
            actions(&p)
        );
    }
}

#[test]
fn blocked_source_turns_a_dependent_move_into_a_cycle_block() {
    // h0 → h1 → h2; the file wants h0 → h2 → h1 but h2 has an errant transaction, so it
    // stays under h1, and h1 under h2 would be a cycle.
    let sim = Arc::new(Simulator::chain(3, Flavor::Mariadb));
    sim.tick();
    sim.errant(host_address(2), 1);
    let d = desired(&[("h0", None), ("h1", Some("h2")), ("h2", Some("h0"))]);
    let p = plan_of(&sim, &d, PlanOptions::default());
    assert_eq!(
        codes(&p),
        [
            (BlockCode::ErrantGtid, "h2".into()),
            (BlockCode::Cycle, "h1".into())
        ]
    );
    assert!(p.steps.is_empty());
}

#[test]
fn added_host_joins_when_seeded_and_is_blocked_when_not() {
    let sim = Arc::new(Simulator::star(2, Flavor::Mariadb));
    sim.add_primary(host_address(2), Flavor::Mariadb);
    let d = desired(STAR3);
    let p = converge(
        &sim,
        &d,
        PlanOptions::default(),
        &["h2 fence", "h2 source:h0", "h2 start"],
    );
    assert_eq!(p.steps[0].phase, Phase::Repair);
    assert_eq!(p.steps[1].phase, Phase::Join);

    // A server with data of its own is not a copy of the cluster.
    let sim = Arc::new(Simulator::star(2, Flavor::Mariadb));
    sim.add_primary(host_address(2), Flavor::Mariadb);
    sim.write(host_address(2), 3).expect("write");
    sim.set_read_only(host_address(2), true);
    let p = plan_of(&sim, &d, PlanOptions::default());
    assert_eq!(codes(&p), [(BlockCode::NotSeeded, "h2".into())]);

    // Data but no GTID history (loaded with sql_log_bin=0, or kept through RESET MASTER):
    // replicating from the beginning would create the schema again and stop.
    let sim = Arc::new(Simulator::star(2, Flavor::Mariadb));
    sim.add_primary(host_address(2), Flavor::Mariadb);
    sim.create_schema(host_address(2), "shop");
    let p = plan_of(&sim, &d, PlanOptions::default());
    assert_eq!(codes(&p), [(BlockCode::NotSeeded, "h2".into())]);
    assert!(p.blocked[0].reason.contains("schemas shop"), "{p:#?}");
}

#[test]
fn removed_host_is_reported_or_detached() {
    let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
    sim.tick();
    let d = desired(&[("h0", None), ("h1", Some("h0"))]);
    let p = plan_of(&sim, &d, PlanOptions::default());
    assert!(p.steps.is_empty());
    assert_eq!(p.warnings.len(), 1, "{:#?}", p.warnings);
    assert_eq!(p.warnings[0].code, "removed-host");
    assert_eq!(p.warnings[0].host, host_address(2).to_string());

    let detach = PlanOptions {
        detach_removed: true,
        ..PlanOptions::default()
    };
    let p = plan_of(&sim, &d, detach);
    let h2 = host_address(2).to_string();
    assert_eq!(actions(&p), [format!("{h2} stop"), format!("{h2} reset")]);
    execute(&sim, &p);
    assert!(
        sim.server(host_address(2))
            .expect("h2")
            .replication
            .is_none()
    );
    let again = plan_of(&sim, &d, detach);
    assert!(
        again.steps.is_empty() && again.warnings.is_empty(),
        "{again:#?}"
    );
}

/// The file's primary address points at another cluster's primary (h5, with its replica
/// h6), while the file's replicas h1 and h2 replicate from their real primary h0, which the
/// file does not name: nothing is planned, not even with --detach-removed (h6 would be
/// detached from its own cluster).
#[test]
fn a_primary_address_pointing_into_another_cluster_blocks_everything() {
    let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
    sim.add_primary(host_address(5), Flavor::Mariadb);
    sim.add_replica(host_address(6), host_address(5));
    sim.write(host_address(0), 3).expect("write");
    sim.write(host_address(5), 2).expect("write");
    sim.tick();
    let mut d = desired(&[("h0", None), ("h1", Some("h0")), ("h2", Some("h0"))]);
    d.hosts[0].address = host_address(5);
    let detach = PlanOptions {
        detach_removed: true,
        ..PlanOptions::default()
    };
    let p = plan_of(&sim, &d, detach);
    assert!(p.steps.is_empty(), "{:?}", actions(&p));
    assert_eq!(codes(&p), [(BlockCode::PrimaryMismatch, "h0".to_string())]);
    let why = &p.blocked[0].reason;
    assert!(
        why.contains("h1, h2 replicate from") && why.contains(&host_address(0).to_string()),
        "{why}"
    );
    // With the right address, nothing to do.
    let d = desired(&[("h0", None), ("h1", Some("h0")), ("h2", Some("h0"))]);
    let p = plan_of(&sim, &d, detach);
    assert!(p.steps.is_empty() && p.blocked.is_empty(), "{p:#?}");
}

/// After a failover to h1 (h0 dead, then back read_only and standalone), the file still
/// names h0: the plan warns and leaves the live primary alone.
fn after_failover() -> Arc<Simulator> {
    let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
    sim.write(host_address(0), 5).expect("write");
    sim.tick();
    sim.stop_replication(host_address(1));
    sim.reset_replication(host_address(1));
    sim.set_read_only(host_address(1), false);
    sim.stop_replication(host_address(2));
    sim.change_source(host_address(2), host_address(1));
    sim.start_replication(host_address(2));
    sim.set_read_only(host_address(0), true);
    sim.write(host_address(1), 5).expect("write");
    sim.tick();
    sim
}

#[test]
fn failover_drift_is_not_reversed() {
    let sim = after_failover();
    let p = converge(&sim, &desired(STAR3), PlanOptions::default(), &[]);
    assert_eq!(codes(&p), [(BlockCode::FailoverDrift, "h0".into())]);
    assert!(
        p.warnings.iter().any(|w| w.code == "failover-drift"),
        "{:#?}",
        p.warnings
    );
}

#[test]
fn switch_back_when_allowed() {
    let sim = after_failover();
    let allow = PlanOptions {
        allow_switch_back: true,
        ..PlanOptions::default()
    };
    converge(
        &sim,
        &desired(STAR3),
        allow,
        &[
            "h0 source:h1",
            "h0 start",
            "h2 stop",
            "h0 wait:h2",
            "h2 source:h0",
            "h2 start",
            "h1 fence",
            "h0 wait:h1",
            "h0 stop",
            "h0 reset",
            "h0 promote",
            "h1 source:h0",
            "h1 start",
        ],
    );
}

#[test]
fn switch_back_refused_when_the_old_primary_has_lost_writes() {
    let sim = after_failover();
    // Written on h0 after the failover (or never replicated before it died).
    sim.set_read_only(host_address(0), false);
    sim.write(host_address(0), 2).expect("write");
    sim.set_read_only(host_address(0), true);
    let allow = PlanOptions {
        allow_switch_back: true,
        ..PlanOptions::default()
    };
    let p = plan_of(&sim, &desired(STAR3), allow);
    // h2 cannot go under h0 either.
    assert_eq!(
        codes(&p),
        [
            (BlockCode::ErrantGtid, "h0".into()),
            (BlockCode::ErrantGtid, "h2".into())
        ]
    );
    assert!(p.steps.is_empty(), "{:?}", actions(&p));
}

#[test]
fn unreachable_primary_plans_nothing() {
    let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
    sim.kill(host_address(0));
    sim.tick();
    let p = plan_of(&sim, &desired(STAR3), PlanOptions::default());
    assert_eq!(codes(&p), [(BlockCode::PrimaryUnreachable, "h0".into())]);
    assert!(p.steps.is_empty());
}

#[test]
fn delay_and_gtid_mode_are_reconfigured_in_place() {
    let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
    let mut d = desired(STAR3);
    d.hosts[2].delay_secs = 3600;
    let p = converge(
        &sim,
        &d,
        PlanOptions::default(),
        &["h2 stop", "h2 source:h0", "h2 start"],
    );
    assert_eq!(p.steps[0].phase, Phase::Repair);
}

#[test]
fn the_proof_rejects_a_bad_plan() {
    let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
    sim.tick();
    let d = desired(&[("h0", Some("h1")), ("h1", None), ("h2", Some("h1"))]);
    let observed = observe(&sim, &d);
    let good = build::build(&d, &observed, &policy(), PlanOptions::default()).expect("built");
    proof::prove(&d, &observed, &good).expect("the planner's plan is proven");
    // Promote before fencing: two writable servers.
    let mut bad = good.clone();
    let promote = bad.steps.pop().expect("steps");
    bad.steps.insert(0, promote);
    for (n, s) in bad.steps.iter_mut().enumerate() {
        s.number = n + 1;
    }
    let e = proof::prove(&d, &observed, &bad).expect_err("promote first");
    assert!(e.contains("step 1"), "{e}");
    // A missing step: the desired state is not reached.
    let mut short = good.clone();
    short.steps.truncate(short.steps.len() - 1);
    assert!(proof::prove(&d, &observed, &short).is_err());
    // Without the wait, the old primary would be repointed at a server that may lack
    // its last writes.
    let mut nowait = good;
    nowait
        .steps
        .retain(|s| !matches!(s.action, Action::WaitForGtid { .. }));
    for (n, s) in nowait.steps.iter_mut().enumerate() {
        s.number = n + 1;
    }
    assert!(proof::prove(&d, &observed, &nowait).is_err());
}

#[test]
fn fingerprint_follows_shape_not_progress() {
    let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
    write_on_primary(&sim, 1);
    let d = desired(STAR3);
    let a = fingerprint(&observe(&sim, &d));
    sim.write(host_address(0), 10).expect("write");
    sim.tick();
    assert_eq!(
        a,
        fingerprint(&observe(&sim, &d)),
        "writes do not change it"
    );
    sim.set_read_only(host_address(2), false);
    assert_ne!(a, fingerprint(&observe(&sim, &d)), "read_only does");
    sim.set_read_only(host_address(2), true);
    sim.stop_replication(host_address(2));
    sim.change_source(host_address(2), host_address(1));
    sim.start_replication(host_address(2));
    assert_ne!(a, fingerprint(&observe(&sim, &d)), "the shape does");

    // A new stream on the primary (writes in another domain) shows on the primary only:
    // replicas receiving it later do not change the fingerprint again.
    let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
    write_on_primary(&sim, 1);
    let a = fingerprint(&observe(&sim, &d));
    sim.update(host_address(0), |s| s.domain_id = 1);
    sim.write(host_address(0), 2).expect("write");
    let written = fingerprint(&observe(&sim, &d));
    assert_ne!(a, written, "a new stream of the primary's own does");
    for _ in 0..3 {
        sim.tick();
    }
    assert_eq!(
        written,
        fingerprint(&observe(&sim, &d)),
        "its arrival on the replicas does not"
    );
    sim.errant(host_address(2), 1);
    assert_ne!(
        written,
        fingerprint(&observe(&sim, &d)),
        "an errant write does"
    );
}

#[test]
fn snapshot_round_trip_plans_the_same() {
    let sim = Arc::new(Simulator::star(4, Flavor::Mariadb));
    sim.tick();
    let d = desired(&[("h0", None), ("h1", Some("h0")), ("h2", Some("h1"))]);
    // The snapshot was taken with a file that still had h3.
    let old = desired(&[
        ("h0", None),
        ("h1", Some("h0")),
        ("h2", Some("h0")),
        ("h3", Some("h0")),
    ]);
    let snapshot = snapshot_of(&sim, &old);
    let json = serde_json::to_string(&snapshot).expect("json");
    let back: crate::observe::Snapshot = serde_json::from_str(&json).expect("reads back");
    let offline = Observed::from_snapshot(&d, &back).expect("matches");
    let live = observe(&sim, &d);
    let a = plan(&d, &offline, &policy(), PlanOptions::default()).expect("plan");
    let b = plan(&d, &live, &policy(), PlanOptions::default()).expect("plan");
    assert_eq!(a, b);
    assert_eq!(a.warnings[0].code, "removed-host");
    // Another cluster's snapshot is refused.
    let mut other = back;
    other.cluster = "shop".into();
    assert!(Observed::from_snapshot(&d, &other).is_err());
}

/// The servers of `d` with transactions the writable source-less server never had.
fn errant_servers(sim: &Arc<Simulator>, d: &Desired) -> Vec<String> {
    let observed = observe(sim, d);
    let infos: Vec<_> = observed.hosts.iter().map(|s| s.info()).collect();
    let Some(p) = infos
        .iter()
        .position(|i| i.is_some_and(|i| !i.read_only && i.replication.is_none()))
    else {
        return Vec::new();
    };
    let primary = infos[p].and_then(|i| i.gtid.server_gtids(i.server_id));
    (0..infos.len())
        .filter(|&i| i != p)
        .filter(|&i| {
            let mine = infos[i].and_then(|x| x.gtid.server_gtids(x.server_id));
            match (&mine, &primary) {
                (Some(m), Some(pg)) => m.errant_relative_to(pg).is_ok_and(|e| !e.is_empty()),
                _ => false,
            }
        })
        .map(|i| d.hosts[i].id.clone())
        .collect()
}

/// xorshift64: deterministic, so a failure reproduces from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A random tree over `n` hosts rooted at `root`: each other host's source is a random
/// host placed before it in a random order.
fn random_tree(rng: &mut Rng, n: usize, root: usize) -> Vec<Option<usize>> {
    let mut order: Vec<usize> = (0..n).filter(|&i| i != root).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order.insert(0, root);
    let mut parent = vec![None; n];
    for k in 1..n {
        parent[order[k]] = Some(order[rng.below(k)]);
    }
    parent
}

#[test]
fn random_topologies_converge() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for case in 0..300 {
        let n = 2 + rng.below(8);
        let flavor = if rng.below(4) == 0 {
            Flavor::Mysql
        } else {
            Flavor::Mariadb
        };
        let observed_tree = random_tree(&mut rng, n, 0);
        let sim = Arc::new(Simulator::new());
        sim.add_primary(host_address(0), flavor);
        // Sources first, so add_replica finds them.
        let mut added = vec![false; n];
        added[0] = true;
        while added.iter().any(|a| !a) {
            for i in 0..n {
                if let Some(p) = observed_tree[i]
                    && added[p]
                    && !added[i]
                {
                    sim.add_replica(host_address(i), host_address(p));
                    added[i] = true;
                }
            }
        }
        sim.write(host_address(0), 1 + rng.below(5) as u64)
            .expect("write");
        sim.tick();
        // Sometimes a fault or a feature the plan must respect.
        let fault = rng.below(11);
        let replica = host_address(1 + rng.below(n - 1));
        let victim = replica.to_string();
        match fault {
            0 if n > 2 => sim.errant(replica.clone(), 1),
            1 if n > 2 => sim.stop_replication(replica.clone()),
            2 if n > 2 => sim.set_read_only(replica.clone(), false),
            // A delayed replica (the file does not declare it).
            3 => {
                sim.update(replica, |s| {
                    if let Some(r) = s.replication.as_mut() {
                        r.sql_delay = 3600;
                    }
                });
            }
            // Two servers with one identity.
            4 if n > 2 => {
                let other = sim
                    .server(host_address(1 + rng.below(n - 1)))
                    .expect("server");
                sim.update(replica, |s| s.server_id = other.server_id);
            }
            // A second GTID domain written on the primary.
            5 => {
                sim.update(host_address(0), |s| s.domain_id = 1);
                sim.write(host_address(0), 2).expect("write");
            }
            // A replica that does not pass on what it replicates.
            6 => {
                sim.update(replica, |s| s.log_replica_updates = false);
            }
            // An application session on the primary that read_only does not stop
            // (READ_ONLY ADMIN through a role): it writes every tick until it is killed.
            7 => {
                sim.update(host_address(0), |s| s.privileged_writers = 1);
            }
            _ => {}
        }
        // Let the fault settle (an errant write reaches the errant server's replicas) so
        // the observation is what the plan will meet.
        for _ in 0..n {
            sim.tick();
        }
        let root = if rng.below(3) == 0 { rng.below(n) } else { 0 };
        let wanted = random_tree(&mut rng, n, root);
        let ids: Vec<String> = (0..n).map(|i| format!("h{i}")).collect();
        let hosts: Vec<(&str, Option<&str>)> = (0..n)
            .map(|i| (ids[i].as_str(), wanted[i].map(|p| ids[p].as_str())))
            .collect();
        let d = desired(&hosts);
        eprintln!(
            "case {case}: fault {fault} on {victim}, observed {observed_tree:?} wanted {wanted:?}"
        );
        let p = plan_of(&sim, &d, PlanOptions::default());
        eprintln!("  plan {:?} blocked {:?}", actions(&p), codes(&p));
        execute(&sim, &p);
        for _ in 0..n {
            sim.tick();
        }
        // Nothing written on a server that was fenced; nothing errant but the fault's.
        if fault != 0 {
            let errant = errant_servers(&sim, &d);
            assert!(
                errant.is_empty(),
                "case {case} (fault {fault}): errant transactions on {errant:?} after {:?}",
                actions(&p)
            );
        }
        let again = plan_of(&sim, &d, PlanOptions::default());
        assert!(
            again.steps.is_empty(),
            "case {case}: observed {observed_tree:?} wanted {wanted:?}: planning again gives {:?}\nfirst plan {:?} blocked {:?}",
            actions(&again),
            actions(&p),
            codes(&p)
        );
        // Everything not blocked is where the file says.
        let blocked: Vec<&str> = p.blocked.iter().map(|b| b.host.as_str()).collect();
        for (i, h) in d.hosts.iter().enumerate() {
            let switchover_blocked = root != 0 && blocked.contains(&ids[root].as_str());
            if blocked.contains(&h.id.as_str()) || (switchover_blocked && i == 0) {
                continue;
            }
            let server = sim.server(&h.address).expect("server");
            let source = server.replication.as_ref().map(|r| r.source.clone());
            assert_eq!(
                source,
                wanted[i].map(host_address),
                "case {case}: {} ({:?})",
                h.id,
                actions(&p)
            );
        }
    }
}

/// The golden fixtures' inputs, made here from simulator scenarios so they stay
/// reproducible: each `tests/golden/plan/NAME/` gets `topology.yaml` (the desired
/// topology) and `observed.json` (an `orch status --format json` snapshot). The
/// integration test `golden` runs `orch plan --observed` on them and compares the output
/// with `plan.txt` and `plan.json`. `ORCH_BLESS=1` rewrites all of them.
#[test]
fn golden_fixture_inputs() {
    type Setup = fn(&Simulator);
    type Shape<'a> = &'a [(&'a str, Option<&'a str>)];
    let star = |n| Simulator::star(n, Flavor::Mariadb);
    let scenarios: Vec<(&str, Simulator, Setup, Shape)> = vec![
        ("no-changes", star(3), |_| {}, STAR3),
        (
            "star-to-subtree",
            star(4),
            |_| {},
            &[
                ("h0", None),
                ("h1", Some("h0")),
                ("h2", Some("h1")),
                ("h3", Some("h2")),
            ],
        ),
        (
            "switchover",
            star(3),
            |_| {},
            &[("h0", Some("h1")), ("h1", None), ("h2", Some("h1"))],
        ),
        (
            "errant-replica",
            star(3),
            |s| s.errant(host_address(2), 1),
            &[("h0", None), ("h1", Some("h0")), ("h2", Some("h1"))],
        ),
        (
            "drift",
            star(4),
            |s| {
                s.stop_replication(host_address(1));
                s.set_read_only(host_address(2), false);
                s.set_read_only(host_address(0), true);
            },
            &[
                ("h0", None),
                ("h1", Some("h0")),
                ("h2", Some("h0")),
                ("h3", Some("h0")),
            ],
        ),
        (
            "added-and-removed",
            star(3),
            |s| {
                s.add_primary(host_address(3), Flavor::Mariadb);
            },
            &[("h0", None), ("h1", Some("h0")), ("h3", Some("h1"))],
        ),
        (
            "failover-drift",
            star(3),
            |s| {
                s.stop_replication(host_address(1));
                s.reset_replication(host_address(1));
                s.set_read_only(host_address(1), false);
                s.stop_replication(host_address(2));
                s.change_source(host_address(2), host_address(1));
                s.start_replication(host_address(2));
                s.set_read_only(host_address(0), true);
            },
            STAR3,
        ),
        (
            "blocked-sources",
            star(4),
            |s| {
                s.update(host_address(1), |x| x.log_replica_updates = false);
                s.update(host_address(2), |x| x.version = "11.4.2-MariaDB-log".into());
            },
            &[
                ("h0", None),
                ("h1", Some("h2")),
                ("h2", Some("h0")),
                ("h3", Some("h1")),
            ],
        ),
    ];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/plan");
    let bless = std::env::var_os("ORCH_BLESS").is_some();
    for (name, sim, setup, hosts) in scenarios {
        let sim = Arc::new(sim);
        sim.write(host_address(0), 4).expect("write");
        sim.tick();
        setup(&sim);
        sim.tick();
        // The snapshot is taken with the file as it was before the change under review
        // (the live shape), plus any host that is new in the desired file.
        let d = desired(hosts);
        let mut seen = desired(STAR3);
        seen.hosts = sim
            .addresses()
            .iter()
            .enumerate()
            .map(|(i, a)| DesiredHost {
                id: format!("h{i}"),
                address: a.clone(),
                source: None,
                promotion: Promotion::Neutral,
                delay_secs: 0,
                dc: None,
            })
            .collect();
        let snapshot = snapshot_of(&sim, &seen);
        let mut yaml = format!(
            "# Golden fixture `{name}`: made by src/plan/tests.rs (ORCH_BLESS=1 cargo test golden).\ncluster: {}\ncredentials:\n  user: orch\n  password: ${{ORCH_PASSWORD}}\npolicy: safe\nhosts:\n",
            d.cluster
        );
        for h in &d.hosts {
            let source = h
                .source
                .as_ref()
                .map_or(String::new(), |s| format!(", source: {s}"));
            yaml.push_str(&format!(
                "  {}: {{ address: \"{}\"{source} }}\n",
                h.id, h.address
            ));
        }
        let json = serde_json::to_string_pretty(&snapshot).expect("json") + "\n";
        let dir = root.join(name);
        for (file, want) in [("topology.yaml", &yaml), ("observed.json", &json)] {
            let path = dir.join(file);
            if bless {
                std::fs::create_dir_all(&dir).expect("mkdir");
                std::fs::write(&path, want).expect("write");
            } else {
                let got = std::fs::read_to_string(&path).unwrap_or_default();
                assert!(
                    &got == want,
                    "{} is stale: run ORCH_BLESS=1 cargo test golden",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn unreachable_intermediate_leaves_its_replicas_lost() {
    let sim = Arc::new(Simulator::chain(3, Flavor::Mariadb));
    sim.kill(host_address(1));
    sim.tick();
    let d = desired(&[("h0", None), ("h1", Some("h0")), ("h2", Some("h1"))]);
    let p = plan_of(&sim, &d, PlanOptions::default());
    assert!(p.steps.is_empty());
    assert_eq!(codes(&p), [(BlockCode::Unreachable, "h2".into())]);
    assert_eq!(
        p.lost,
        [Lost {
            host: "h2".into(),
            reason: "its source h1 is unreachable".into()
        }]
    );
    // The file moves h2 under the primary: that repairs it.
    let d = desired(&[("h0", None), ("h1", Some("h0")), ("h2", Some("h0"))]);
    let p = plan_of(&sim, &d, PlanOptions::default());
    assert_eq!(actions(&p), ["h2 stop", "h2 source:h0", "h2 start"]);
    assert!(p.lost.is_empty());
    execute(&sim, &p);
    assert!(
        sim.server(host_address(2))
            .expect("h2")
            .replication
            .as_ref()
            .is_some_and(|r| r.io == crate::observe::IoState::Running)
    );
}

#[test]
fn file_position_replica_is_moved_to_gtid_when_safe() {
    let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
    write_on_primary(&sim, 2);
    let d = desired(STAR3);
    let mut observed = observe(&sim, &d);
    let set_file_position = |o: &mut Observed, empty_slave_pos: bool| {
        let crate::observe::Reach::Reachable(inf) = &mut o.hosts[2].reach else {
            panic!("h2")
        };
        inf.replication.as_mut().expect("replica").gtid_mode = "No".into();
        if empty_slave_pos
            && let crate::observe::Gtids::Mariadb {
                current_pos,
                slave_pos,
                ..
            } = &mut inf.gtid
        {
            current_pos.clear();
            slave_pos.clear();
        }
    };
    set_file_position(&mut observed, false);
    let p = plan(&d, &observed, &policy(), PlanOptions::default()).expect("plan");
    assert_eq!(actions(&p), ["h2 stop", "h2 source:h0", "h2 start"]);
    assert_eq!(p.steps[1].phase, Phase::Repair);
    // Without a gtid_slave_pos the position would be a guess: blocked.
    let mut observed = observe(&sim, &d);
    set_file_position(&mut observed, true);
    let p = plan(&d, &observed, &policy(), PlanOptions::default()).expect("plan");
    assert_eq!(codes(&p), [(BlockCode::GtidDisabled, "h2".into())]);
}
