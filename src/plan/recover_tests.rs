//! Tests of the recovery decisions on the simulator: the successor chosen and why the
//! others were not, plans run step by step and interrupted at every step, replicas that
//! cannot apply, delayed, filtered or errant ones.

use std::sync::Arc;

use super::*;
use crate::executor::sim::{Simulator, host_address};
use crate::gtid::Flavor;
use crate::observe::IoState;
use crate::plan::Plan;
use crate::plan::tests::{desired, execute, observe};

const STAR4: &[(&str, Option<&str>)] = &[
    ("h0", None),
    ("h1", Some("h0")),
    ("h2", Some("h0")),
    ("h3", Some("h0")),
];

#[test]
fn an_empty_position_is_said() {
    assert_eq!(position_text(""), "an empty GTID set");
    assert_eq!(position_text("0-1-5"), "0-1-5");
}

fn star(n: usize) -> Arc<Simulator> {
    let sim = Arc::new(Simulator::star(n, Flavor::Mariadb));
    sim.write(host_address(0), 5).unwrap();
    sim.tick();
    sim
}

fn source_of(sim: &Simulator, i: usize) -> Option<crate::topology::Address> {
    sim.server(host_address(i))
        .and_then(|s| s.replication)
        .map(|r| r.source)
}

fn writable(sim: &Simulator, n: usize) -> Vec<usize> {
    (0..n)
        .filter(|&i| {
            sim.server(host_address(i))
                .is_some_and(|s| s.health.process_running() && !s.read_only)
        })
        .collect()
}

/// The recovery runs on the simulator; afterwards exactly the successor is writable,
/// the others replicate from it, and a write on it reaches them.
fn run(sim: &Arc<Simulator>, d: &Desired, r: &Recovery, n: usize) {
    execute(sim, &r.plan);
    let c: usize = r.successor[1..].parse().unwrap();
    assert_eq!(writable(sim, n), vec![c], "{:#?}", r.plan.steps);
    sim.write(host_address(c), 2).unwrap();
    for _ in 0..3 {
        sim.tick();
    }
    let lost: Vec<&str> = r.plan.lost.iter().map(|l| l.host.as_str()).collect();
    for (i, h) in d.hosts.iter().enumerate() {
        if i == c || h.source.is_none() || lost.contains(&h.id.as_str()) {
            continue;
        }
        assert_eq!(source_of(sim, i), Some(host_address(c)), "{}", h.id);
        assert_eq!(
            sim.server(host_address(i)).unwrap().position(),
            sim.server(host_address(c)).unwrap().position(),
            "{} has every write",
            h.id
        );
    }
}

#[test]
fn a_dead_primary_is_replaced_by_the_most_advanced_replica() {
    let sim = star(4);
    // h2 received the last writes but has not applied them yet; h3 missed them.
    sim.stop_replication(host_address(3));
    sim.set_lag(host_address(2), 3);
    sim.write(host_address(0), 3).unwrap();
    sim.tick();
    sim.start_replication(host_address(3));
    sim.kill(host_address(0));
    sim.tick();
    let d = desired(STAR4);
    let r = dead_primary(&d, &observe(&sim, &d), &Policy::default(), 0, None).unwrap();
    // h1 and h2 both end with everything; h1 comes first by name. h3 catches up.
    assert_eq!(r.successor, "h1");
    assert_eq!(r.catch_up_from, None);
    assert!(r.plan.lost.is_empty(), "{:?}", r.plan.lost);
    let phases: Vec<Phase> = r.plan.steps.iter().map(|s| s.phase).collect();
    assert!(phases.iter().all(|p| *p == Phase::Failover));
    assert!(matches!(
        r.plan.steps.last().unwrap().action,
        Action::Promote
    ));
    run(&sim, &d, &r, 4);
}

#[test]
fn a_preferred_replica_catches_up_from_a_more_advanced_one_first() {
    let sim = star(4);
    // h1 (prefer) missed the last writes; h3 (must_not) has them.
    sim.stop_io(host_address(1));
    sim.stop_io(host_address(2));
    sim.write(host_address(0), 4).unwrap();
    sim.tick();
    sim.kill(host_address(0));
    sim.tick();
    let mut d = desired(STAR4);
    d.hosts[1].promotion = Promotion::Prefer;
    d.hosts[3].promotion = Promotion::MustNot;
    let r = dead_primary(&d, &observe(&sim, &d), &Policy::default(), 0, None).unwrap();
    assert_eq!(r.successor, "h1");
    assert_eq!(r.catch_up_from.as_deref(), Some("h3"));
    let verdicts: Vec<(&str, &str)> = r
        .considered
        .iter()
        .map(|c| (c.host.as_str(), c.verdict.as_str()))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("h1", "chosen"),
            ("h2", "promotable"),
            ("h3", "promotion: must_not")
        ]
    );
    run(&sim, &d, &r, 4);
}

#[test]
fn nothing_promotable_changes_nothing_and_says_why() {
    let sim = star(3);
    sim.kill(host_address(0));
    sim.tick();
    let mut d = desired(&STAR4[..3]);
    d.hosts[1].promotion = Promotion::MustNot;
    d.hosts[2].delay_secs = 3600;
    let e = dead_primary(&d, &observe(&sim, &d), &Policy::default(), 0, None).unwrap_err();
    assert!(e.reason.contains("no replica of h0 can be promoted"), "{e}");
    let why: Vec<&str> = e.considered.iter().map(|c| c.verdict.as_str()).collect();
    assert_eq!(
        why,
        [
            "promotion: must_not",
            "a delayed replica: it never applies what it received in time"
        ]
    );
}

#[test]
fn an_errant_replica_is_named_lost_and_left_alone() {
    let sim = star(4);
    sim.errant(host_address(3), 1);
    sim.kill(host_address(0));
    sim.tick();
    let d = desired(STAR4);
    let r = dead_primary(&d, &observe(&sim, &d), &Policy::default(), 0, None).unwrap();
    assert_eq!(r.successor, "h1");
    assert_eq!(r.plan.lost.len(), 1);
    assert_eq!(r.plan.lost[0].host, "h3");
    run(&sim, &d, &r, 4);
}

/// A replica's move that fails (its `STOP SLAVE` hangs behind a lock) leaves it
/// behind; the run goes on and promotes the successor. Runs the plan through the
/// apply engine, which skips the rest of a detachable group.
fn run_engine(sim: &Arc<Simulator>, d: &Desired, r: &Recovery) -> crate::apply::Report {
    struct Quiet;
    impl crate::apply::Progress for Quiet {
        fn started(&mut self, _: &crate::step::Step) {}
        fn finished(
            &mut self,
            _: &crate::step::Step,
            _: &crate::apply::StepResult,
            _: std::time::Duration,
        ) {
        }
        fn note(&mut self, _: &str) {}
    }
    let observed = observe(sim, d);
    let cluster = crate::apply::Cluster::of(d, &observed);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(crate::apply::run(
        sim.clone(),
        &cluster,
        &r.plan,
        crate::apply::Limits {
            expect_timeout: std::time::Duration::from_millis(200),
        },
        &std::sync::atomic::AtomicBool::new(false),
        &mut Quiet,
    ))
}

fn verdict<'a>(r: &'a [Considered], host: &str) -> &'a str {
    r.iter()
        .find(|c| c.host == host)
        .map(|c| c.verdict.as_str())
        .unwrap_or("?")
}

fn waits_on(r: &Recovery, host: &str) -> bool {
    r.plan.steps.iter().any(|s| {
        s.host == host
            && matches!(
                s.action,
                Action::WaitRelayLog { .. } | Action::WaitForGtid { .. }
            )
    })
}

/// h0 (of a 3-server star) killed: h1 (`promotion: prefer`) is passed over for h2, its
/// verdict saying `why`.
fn h2_chosen_over_h1(sim: &Arc<Simulator>, why: &str) -> (Desired, Recovery) {
    sim.kill(host_address(0));
    sim.tick();
    let mut d = desired(&STAR4[..3]);
    d.hosts[1].promotion = Promotion::Prefer;
    let r = dead_primary(&d, &observe(sim, &d), &Policy::default(), 0, None).unwrap();
    assert_eq!(r.successor, "h2");
    assert!(
        verdict(&r.considered, "h1").contains(why),
        "{:?}",
        r.considered
    );
    (d, r)
}

#[test]
fn a_candidate_whose_applier_failed_is_not_chosen() {
    let sim = star(3);
    // h1 (prefer) received everything but its SQL thread stopped on a duplicate key.
    sim.update(host_address(1), |s| {
        s.replication.as_mut().unwrap().lag = 3;
    });
    sim.write(host_address(0), 3).unwrap();
    sim.tick();
    sim.break_sql(
        host_address(1),
        1062,
        "Duplicate entry '1' for key 'PRIMARY'",
    );
    let (_, r) = h2_chosen_over_h1(&sim, "its SQL thread failed (error 1062");
    assert!(!waits_on(&r, "h1"), "{:#?}", r.plan.steps);
    // It received what h2 has: it moves under h2 with no gap, left stopped for a person.
    let lost = &r.plan.lost;
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(lost[0].reason.contains("left stopped"), "{lost:?}");
    execute(&sim, &r.plan);
    assert_eq!(writable(&sim, 3), vec![2]);
    assert_eq!(source_of(&sim, 1), Some(host_address(2)));
}

#[test]
fn a_delayed_replica_is_never_waited_for_and_keeps_its_delay() {
    for declared in [true, false] {
        let sim = star(3);
        sim.update(host_address(2), |s| {
            s.replication.as_mut().unwrap().sql_delay = 3600;
        });
        sim.write(host_address(0), 5).unwrap();
        sim.tick();
        sim.kill(host_address(0));
        sim.tick();
        let mut d = desired(&STAR4[..3]);
        if declared {
            d.hosts[2].delay_secs = 3600;
            d.hosts[2].promotion = Promotion::MustNot;
        }
        let r = dead_primary(&d, &observe(&sim, &d), &Policy::default(), 0, None).unwrap();
        assert_eq!(r.successor, "h1");
        assert!(!waits_on(&r, "h2"), "{:#?}", r.plan.steps);
        let undeclared = r.plan.warnings.iter().any(|w| w.code == "undeclared-delay");
        assert_eq!(undeclared, !declared, "{:?}", r.plan.warnings);
        execute(&sim, &r.plan);
        assert_eq!(writable(&sim, 3), vec![1]);
        let rep = sim.server(host_address(2)).unwrap().replication.unwrap();
        assert_eq!(rep.source, host_address(1));
        assert_eq!(rep.sql_delay, 3600, "declared: {declared}");
        assert_eq!((rep.io, rep.sql_running), (IoState::Running, true));
    }
}

#[test]
fn a_replica_that_cannot_stop_is_left_behind_and_the_failover_completes() {
    let sim = star(4);
    sim.write(host_address(0), 3).unwrap();
    sim.tick();
    // h3's SQL thread waits on a lock: STOP SLAVE does not return.
    sim.update(host_address(3), |s| {
        s.replication.as_mut().unwrap().blocked = true;
    });
    sim.kill(host_address(0));
    sim.tick();
    let d = desired(STAR4);
    let r = dead_primary(&d, &observe(&sim, &d), &Policy::default(), 0, None).unwrap();
    assert_eq!(r.successor, "h1");
    let report = run_engine(&sim, &d, &r);
    assert!(report.succeeded(), "{:?}", report.results);
    let left: Vec<&str> = report.left_behind.iter().map(|l| l.host.as_str()).collect();
    assert_eq!(left, ["h3"]);
    assert_eq!(writable(&sim, 4), vec![1]);
    assert_eq!(source_of(&sim, 2), Some(host_address(1)));
    assert_eq!(
        source_of(&sim, 3),
        Some(host_address(0)),
        "left where it was"
    );
    // The lock goes away and its STOP SLAVE completes: the replica the failover left
    // under the dead former primary follows the new primary.
    sim.update(host_address(3), |s| {
        s.replication.as_mut().unwrap().blocked = false;
    });
    sim.stop_replication(host_address(3));
    sim.tick();
    let later = dead_intermediate(&d, &observe(&sim, &d), &Policy::default(), 0).unwrap();
    assert_eq!(later.successor, "h1");
    execute(&sim, &later.plan);
    assert_eq!(source_of(&sim, 3), Some(host_address(1)));
    assert_eq!(
        sim.server(host_address(3)).unwrap().position(),
        sim.server(host_address(1)).unwrap().position()
    );
}

#[test]
fn a_successor_that_did_not_catch_up_is_excluded_and_the_next_best_chosen() {
    let sim = star(3);
    sim.write(host_address(0), 3).unwrap();
    sim.tick();
    sim.kill(host_address(0));
    sim.tick();
    let mut d = desired(&STAR4[..3]);
    d.hosts[1].promotion = Promotion::Prefer;
    let first = dead_primary(&d, &observe(&sim, &d), &Policy::default(), 0, None).unwrap();
    assert_eq!(first.successor, "h1");
    let wait = first
        .plan
        .steps
        .iter()
        .position(|s| s.host == "h1" && matches!(s.action, Action::WaitRelayLog { .. }))
        .expect("the successor is waited for");
    // The wait timed out (its applier blocked on a lock) before anything irreversible.
    execute(
        &sim,
        &Plan {
            steps: first.plan.steps[..wait].to_vec(),
            ..first.plan.clone()
        },
    );
    let x = excluded_by(&first, wait, "timed out").expect("the successor is excluded");
    assert_eq!(x.host, "h1");
    let next = resume_failover(
        &d,
        &observe(&sim, &d),
        &Policy::default(),
        0,
        "h1",
        std::slice::from_ref(&x),
    )
    .unwrap();
    assert_eq!(next.successor, "h2");
    assert!(
        verdict(&next.considered, "h1").starts_with("an earlier attempt of this failover"),
        "{:?}",
        next.considered
    );
    run(&sim, &d, &next, 3);
    // A step on another server excludes nobody.
    let other = first
        .plan
        .steps
        .iter()
        .position(|s| s.host == "h2")
        .unwrap();
    assert_eq!(excluded_by(&first, other, "timed out"), None);
}

#[test]
fn an_errant_write_hidden_behind_later_replicated_ones_is_found() {
    for domain in [0, 7] {
        let sim = star(4);
        sim.write(host_address(0), 5).unwrap();
        sim.tick();
        // Written directly on h1 (in the cluster's domain, or another), then the
        // primary's writes replicated past it: gtid_current_pos no longer shows it.
        // (In the cluster's domain only without gtid_strict_mode: with it, the next
        // replicated GTID would stop h1's SQL thread as out of order.)
        sim.update(host_address(1), |s| {
            s.domain_id = domain;
            s.gtid_strict_mode = false;
        });
        sim.errant(host_address(1), 2);
        sim.write(host_address(0), 10).unwrap();
        sim.tick();
        sim.kill(host_address(0));
        sim.tick();
        let mut d = desired(STAR4);
        d.hosts[1].promotion = Promotion::Prefer;
        let r = dead_primary(&d, &observe(&sim, &d), &Policy::default(), 0, None).unwrap();
        assert_ne!(r.successor, "h1", "domain {domain}");
        assert!(
            verdict(&r.considered, "h1").contains("errant"),
            "domain {domain}: {:?}",
            r.considered
        );
        assert!(
            r.plan.lost.iter().any(|l| l.host == "h1"),
            "domain {domain}"
        );
        run(&sim, &d, &r, 4);
    }
}

#[test]
fn a_filtered_replica_is_never_promoted_nor_a_source() {
    let sim = star(3);
    sim.update(host_address(1), |s| {
        s.replication.as_mut().unwrap().filters = vec!["replicate_do_db=shop".into()];
    });
    sim.write(host_address(0), 3).unwrap();
    sim.tick();
    let (d, r) = h2_chosen_over_h1(&sim, "replication filters (replicate_do_db=shop)");
    run(&sim, &d, &r, 3);
}

/// `orch failover --force`: the primary still answers; it is fenced first, every
/// replica takes what it has, then the failover runs. Nothing it wrote is lost.
#[test]
fn a_live_primary_is_fenced_and_waited_for_first() {
    let sim = star(3);
    let d = desired(&STAR4[..3]);
    let r = dead_primary(&d, &observe(&sim, &d), &Policy::default(), 0, None).unwrap();
    assert!(matches!(
        r.plan.steps[0].action,
        Action::Fence { kill_writers: true }
    ));
    assert_eq!(r.plan.steps[0].host, "h0");
    execute(&sim, &r.plan);
    assert!(sim.server(host_address(0)).unwrap().read_only);
    assert!(!sim.server(host_address(1)).unwrap().read_only);
    assert_eq!(
        sim.server(host_address(1)).unwrap().position(),
        sim.server(host_address(0)).unwrap().position()
    );
}

#[test]
fn to_forces_the_successor() {
    let sim = star(4);
    sim.kill(host_address(0));
    sim.tick();
    let d = desired(STAR4);
    let r = dead_primary(&d, &observe(&sim, &d), &Policy::default(), 0, Some("h3")).unwrap();
    assert_eq!(r.successor, "h3");
    run(&sim, &d, &r, 4);
}

/// A failover interrupted after any of its steps (its leader died, or the next step
/// failed) is finished from what the servers say: the same successor once anything
/// irreversible was done, every replica under it with every write, one writable
/// server; and resumed once more when already complete, nothing is left to do.
#[test]
fn an_interrupted_failover_is_finished_from_any_step() {
    type Setup = fn(&Simulator, &mut Desired);
    let scenarios: [(&str, Setup); 3] = [
        ("plain", |sim, _| {
            sim.set_lag(host_address(2), 3);
            sim.write(host_address(0), 3).unwrap();
            sim.tick();
        }),
        ("catch-up", |sim, d| {
            sim.stop_io(host_address(1));
            sim.stop_io(host_address(2));
            sim.write(host_address(0), 4).unwrap();
            sim.tick();
            d.hosts[1].promotion = Promotion::Prefer;
            d.hosts[3].promotion = Promotion::MustNot;
        }),
        ("errant", |sim, _| {
            sim.errant(host_address(3), 1);
        }),
    ];
    for (name, setup) in scenarios {
        let fresh = || {
            let sim = star(4);
            let mut d = desired(STAR4);
            setup(&sim, &mut d);
            sim.kill(host_address(0));
            sim.tick();
            (sim, d)
        };
        let (sim, d) = fresh();
        let whole = dead_primary(&d, &observe(&sim, &d), &Policy::default(), 0, None).unwrap();
        for done in 0..=whole.plan.steps.len() {
            let (sim, d) = fresh();
            let mut part = whole.plan.clone();
            part.steps.truncate(done);
            execute(&sim, &part);
            let context = format!("{name}, interrupted after step {done}");
            let rest = resume_failover(
                &d,
                &observe(&sim, &d),
                &Policy::default(),
                0,
                &whole.successor,
                &[],
            )
            .unwrap_or_else(|e| panic!("{context}: {e}"));
            assert_eq!(rest.successor, whole.successor, "{context}");
            if done < whole.plan.steps.len() {
                assert_eq!(rest.plan.lost, whole.plan.lost, "{context}");
            }
            assert!(
                rest.plan.steps.len() <= whole.plan.steps.len() + 1,
                "{context}: {:#?}",
                rest.plan.steps
            );
            let mut checked = rest.clone();
            checked.plan.lost = whole.plan.lost.clone();
            run(&sim, &d, &checked, 4);
            let again = resume_failover(
                &d,
                &observe(&sim, &d),
                &Policy::default(),
                0,
                &whole.successor,
                &[],
            )
            .unwrap_or_else(|e| panic!("{context}, resumed again: {e}"));
            assert!(
                again.plan.steps.is_empty(),
                "{context}, resumed again: {:#?}",
                again.plan.steps
            );
        }
    }
}

#[test]
fn a_successor_that_died_too_is_not_guessed_around() {
    let sim = star(4);
    sim.kill(host_address(0));
    sim.tick();
    let d = desired(STAR4);
    let whole = dead_primary(&d, &observe(&sim, &d), &Policy::default(), 0, None).unwrap();
    let mut part = whole.plan.clone();
    let reset = part
        .steps
        .iter()
        .position(|s| matches!(s.action, Action::ResetReplication))
        .unwrap();
    part.steps.truncate(reset + 1);
    execute(&sim, &part);
    sim.kill(host_address(1));
    sim.tick();
    let e = resume_failover(&d, &observe(&sim, &d), &Policy::default(), 0, "h1", &[]).unwrap_err();
    assert!(
        e.reason
            .contains("h1, the successor of the interrupted failover, does not answer"),
        "{e}"
    );
}

#[test]
fn a_dead_intermediate_source_hands_its_replicas_to_its_own_source() {
    let sim = Arc::new(Simulator::chain(4, Flavor::Mariadb));
    sim.write(host_address(0), 5).unwrap();
    for _ in 0..4 {
        sim.tick();
    }
    sim.kill(host_address(1));
    sim.tick();
    let d = desired(&[
        ("h0", None),
        ("h1", Some("h0")),
        ("h2", Some("h1")),
        ("h3", Some("h2")),
    ]);
    let r = dead_intermediate(&d, &observe(&sim, &d), &Policy::default(), 1).unwrap();
    assert_eq!(r.successor, "h0");
    execute(&sim, &r.plan);
    assert_eq!(source_of(&sim, 2), Some(host_address(0)));
    assert_eq!(source_of(&sim, 3), Some(host_address(2)));
    sim.write(host_address(0), 1).unwrap();
    for _ in 0..3 {
        sim.tick();
    }
    assert_eq!(
        sim.server(host_address(3)).unwrap().position(),
        sim.server(host_address(0)).unwrap().position()
    );
}
