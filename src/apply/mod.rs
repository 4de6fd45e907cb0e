//! Runs a [`Plan`] through an [`Executor`]: the one step engine of `orch apply` (and, later,
//! of watch's recoveries).
//!
//! Takes a plan, the addresses of the cluster's servers and an executor; gives a [`Report`]
//! (each step done / failed / not run). For each step: observe the cluster again and check
//! the step's `requires` against that fresh observation; execute; then wait, bounded by
//! [`Limits::expect_timeout`], until its `expects` hold. Stops at the first failure. A
//! switchover that fails after the old primary was fenced but before anything was
//! repointed is rolled back: the candidate replicates again and the old primary is
//! unfenced (it is still the primary, its replicas still follow it), and the report says
//! so. Does I/O only through the executor; progress goes to the [`Progress`] callback.

pub mod record;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::executor::{Executor, observe_all};
use crate::observe::{IoState, ServerState};
use crate::plan::Plan;
use crate::step::{Action, Condition, Step, StepError, StepOutcome};
use crate::topology::Address;

/// How long the engine waits for a step's promises.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// After a step ran, how long its `expects` may take to hold (e.g. the IO thread
    /// connecting after START SLAVE).
    pub expect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            expect_timeout: Duration::from_secs(10),
        }
    }
}

/// What happened to one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepResult {
    Done(StepOutcome),
    Failed(String),
    NotRun,
}

/// What the engine tells its caller as it goes.
pub trait Progress {
    fn started(&mut self, step: &Step);
    fn finished(&mut self, step: &Step, result: &StepResult, elapsed: Duration);
    /// A rollback step after a failure (not part of the plan).
    fn note(&mut self, message: &str);
}

/// The outcome of a run.
#[derive(Clone, Debug)]
pub struct Report {
    /// One per plan step, in order.
    pub results: Vec<StepResult>,
    /// Set when the run stopped on a signal before its last step.
    pub interrupted: bool,
    /// What was undone after a failure, for people.
    pub rolled_back: Vec<String>,
    /// Why no step ran: orch may not change a server of the plan (a missing privilege,
    /// a version it cannot drive, several replication channels). Nothing was changed.
    pub refused: Option<String>,
    /// Replicas whose detachable steps failed: the run went on without them.
    pub left_behind: Vec<LeftBehind>,
    /// The steps of those replicas (the failed one and the skipped ones after it).
    excused: Vec<usize>,
}

/// A replica a run went on without (see [`Step::detachable`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftBehind {
    pub host: String,
    /// The failed step's number and error.
    pub why: String,
}

impl Report {
    /// Every step done, except those of replicas left behind (but not all of them: a run
    /// that left behind everything it was to move did nothing).
    pub fn succeeded(&self) -> bool {
        self.refused.is_none()
            && !self.interrupted
            && (self.excused.len() < self.results.len() || self.results.is_empty())
            && self
                .results
                .iter()
                .enumerate()
                .all(|(n, r)| matches!(r, StepResult::Done(_)) || self.excused.contains(&n))
    }
}

/// The cluster the plan acts on: every server's name and address, and the observation
/// the plan was made from (checked before the first step, see [`crate::plan::preflight`]).
pub struct Cluster {
    pub servers: Vec<(String, Address)>,
    /// Empty: nothing is checked before the first step.
    pub states: Vec<ServerState>,
}

impl Cluster {
    /// Every server of an observation: the file's by id, the others by address.
    pub fn of(desired: &crate::plan::Desired, observed: &crate::plan::Observed) -> Cluster {
        Cluster {
            servers: crate::plan::names(desired, observed)
                .into_iter()
                .zip(
                    observed
                        .hosts
                        .iter()
                        .chain(&observed.undeclared)
                        .map(|s| s.address.clone()),
                )
                .collect(),
            states: observed
                .hosts
                .iter()
                .chain(&observed.undeclared)
                .cloned()
                .collect(),
        }
    }

    fn address(&self, host: &str) -> Option<&Address> {
        self.servers.iter().find(|(n, _)| n == host).map(|(_, a)| a)
    }
}

/// Runs `plan`; `stop` asks it to stop after the current step.
pub async fn run<E: Executor>(
    exec: Arc<E>,
    cluster: &Cluster,
    plan: &Plan,
    limits: Limits,
    stop: &AtomicBool,
    progress: &mut dyn Progress,
) -> Report {
    let mut report = Report {
        results: vec![StepResult::NotRun; plan.steps.len()],
        interrupted: false,
        rolled_back: Vec::new(),
        left_behind: Vec::new(),
        excused: Vec::new(),
        refused: None,
    };
    // The observation the plan was made from says whether orch may change its servers:
    // checked here, before any step, for every plan and recovery alike, without asking
    // the servers again.
    let refused = crate::plan::preflight::refusals(&plan.steps, &cluster.states);
    if !refused.is_empty() {
        let why = crate::plan::preflight::text(&refused);
        progress.note(&format!("refused before any change: {why}"));
        report.refused = Some(why);
        return report;
    }
    for (n, step) in plan.steps.iter().enumerate() {
        if stop.load(Ordering::SeqCst) {
            report.interrupted = true;
            break;
        }
        if let Some(h) = &step.detachable
            && report.left_behind.iter().any(|l| &l.host == h)
        {
            report.excused.push(n);
            continue;
        }
        progress.started(step);
        let began = Instant::now();
        let result = match run_step(&exec, cluster, step, limits).await {
            Ok(outcome) => StepResult::Done(outcome),
            Err(e) => StepResult::Failed(e),
        };
        progress.finished(step, &result, began.elapsed());
        if let (StepResult::Failed(e), Some(h)) = (&result, &step.detachable) {
            // The plan was proven without the rest of this replica's steps: go on.
            let why = format!("step {} failed: {e}", step.number);
            progress.note(&format!(
                "{h} is left behind ({why}); the change goes on without it"
            ));
            report.left_behind.push(LeftBehind {
                host: h.clone(),
                why,
            });
            report.excused.push(n);
            report.results[n] = result;
            continue;
        }
        let failed = matches!(result, StepResult::Failed(_));
        report.results[n] = result;
        if failed {
            report.rolled_back = roll_back(&exec, &plan.steps[..=n], progress).await;
            break;
        }
    }
    report
}

async fn run_step<E: Executor>(
    exec: &Arc<E>,
    cluster: &Cluster,
    step: &Step,
    limits: Limits,
) -> Result<StepOutcome, String> {
    let states = observe(exec, cluster, step, &step.requires).await;
    check(cluster, &states, step, &step.requires)
        .map_err(|why| format!("not run: a precondition does not hold: {why}"))?;
    let outcome = exec
        .execute(step)
        .await
        .map_err(|e: StepError| e.to_string())?;
    let deadline = Instant::now() + limits.expect_timeout;
    loop {
        let states = observe(exec, cluster, step, &step.expects).await;
        match check(cluster, &states, step, &step.expects) {
            Ok(()) => return Ok(outcome),
            Err(why) if Instant::now() >= deadline => {
                return Err(format!("ran, but after {:?} {why}", limits.expect_timeout));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// A fresh observation of what `conditions` need: the step's server, and every server
/// when one must be the only writable one. Each observation is a few milliseconds per
/// server, and the switchover's write-block window is made of them.
async fn observe<E: Executor>(
    exec: &Arc<E>,
    cluster: &Cluster,
    step: &Step,
    conditions: &[Condition],
) -> Vec<ServerState> {
    let mut addresses: Vec<Address> = if conditions.contains(&Condition::NoOtherWritable) {
        cluster.servers.iter().map(|(_, a)| a.clone()).collect()
    } else {
        vec![step.address.clone()]
    };
    for c in conditions {
        if let Some(host) = c.other_host()
            && let Some(a) = cluster.address(host)
            && !addresses.contains(a)
        {
            addresses.push(a.clone());
        }
    }
    observe_all(exec.clone(), &addresses, 32).await
}

/// Whether `conditions` hold for `step`'s server in a fresh observation.
fn check(
    cluster: &Cluster,
    states: &[ServerState],
    step: &Step,
    conditions: &[Condition],
) -> Result<(), String> {
    let host = &step.host;
    let state = states
        .iter()
        .find(|s| s.address == step.address)
        .ok_or_else(|| format!("{host} was not observed"))?;
    let other = |name: &str| {
        cluster
            .address(name)
            .and_then(|a| states.iter().find(|s| &s.address == a))
            .and_then(|s| s.info())
    };
    let is = |source: &str, r: &crate::observe::Replication| {
        cluster
            .address(source)
            .is_some_and(|a| a.host.eq_ignore_ascii_case(&r.source_host) && a.port == r.source_port)
    };
    for c in conditions {
        let Some(info) = state.info() else {
            return Err(format!("{host} is unreachable"));
        };
        let r = info.replication.as_ref();
        let ok = match c {
            Condition::Reachable => true,
            Condition::ReadOnly { on } => info.read_only == *on,
            Condition::ReplicationStopped => {
                r.is_none_or(|r| r.io == IoState::Stopped && !r.sql_running)
            }
            Condition::IoStopped => r.is_some_and(|r| r.io == IoState::Stopped),
            Condition::SourceIs { source } => r.is_some_and(|r| is(source, r)),
            Condition::ReplicatingFrom { source } => {
                r.is_some_and(|r| is(source, r) && r.io == IoState::Running && r.sql_running)
            }
            Condition::NotReplica => r.is_none(),
            Condition::Contains { host: them } => {
                let theirs = other(them).and_then(|i| i.gtid.executed());
                match (info.gtid.executed(), theirs) {
                    (Some(mine), Some(theirs)) if mine.contains(&theirs).unwrap_or(false) => true,
                    (Some(mine), Some(theirs)) => {
                        return Err(format!(
                            "{host} (at {mine}) lacks transactions {them} executed (at {theirs}): nothing more is changed; find where they came from before any server takes writes"
                        ));
                    }
                    _ => {
                        return Err(format!(
                            "cannot compare the GTIDs {host} and {them} executed (unreachable or unreadable)"
                        ));
                    }
                }
            }
            Condition::ContainedIn { host: them } => {
                let theirs = other(them).and_then(|i| i.gtid.executed());
                match (info.gtid.executed(), theirs) {
                    (Some(mine), Some(theirs)) if theirs.contains(&mine).unwrap_or(false) => true,
                    (Some(mine), Some(theirs)) => {
                        return Err(format!(
                            "{them} (at {theirs}) lacks transactions {host} executed (at {mine}): {host} would ask it for what it does not have; nothing more is changed"
                        ));
                    }
                    _ => {
                        return Err(format!(
                            "cannot compare the GTIDs {host} and {them} executed (unreachable or unreadable)"
                        ));
                    }
                }
            }
            Condition::NoOtherWritable => states
                .iter()
                .filter(|s| s.address != step.address)
                .all(|s| s.info().is_none_or(|i| i.read_only)),
            Condition::LagAtMost {
                host: them,
                seconds,
            } => {
                let lag = other(them)
                    .and_then(|i| i.replication.as_ref())
                    .and_then(|r| r.seconds_behind);
                match lag {
                    Some(l) if l <= *seconds => true,
                    Some(l) => {
                        return Err(format!(
                            "{them} is {l}s behind (policy max_lag {seconds}s): nothing was fenced; let it catch up and apply again"
                        ));
                    }
                    None => {
                        return Err(format!(
                            "{them}'s lag is unknown (not replicating, or unreachable): nothing was fenced"
                        ));
                    }
                }
            }
        };
        if !ok {
            return Err(format!("{host}: {}", describe(c)));
        }
    }
    Ok(())
}

fn describe(c: &Condition) -> String {
    match c {
        Condition::Reachable => "is not reachable".into(),
        Condition::ReadOnly { on } => {
            format!("read_only is not {}", if *on { "ON" } else { "OFF" })
        }
        Condition::ReplicationStopped => "replication is not stopped".into(),
        Condition::IoStopped => "its IO thread is not stopped".into(),
        Condition::SourceIs { source } => format!("does not replicate from {source}"),
        Condition::ReplicatingFrom { source } => {
            format!("is not replicating from {source} (both threads running)")
        }
        Condition::NotReplica => "still has a source configured".into(),
        Condition::Contains { host } => format!("lacks transactions of {host}"),
        Condition::ContainedIn { host } => format!("has transactions {host} lacks"),
        Condition::NoOtherWritable => "another server of the cluster is writable".into(),
        Condition::LagAtMost { host, seconds } => format!("{host} lags more than {seconds}s"),
    }
}

/// After a failure (the last step of `done`) inside a switchover that has fenced the old
/// primary but not yet reset the candidate or repointed anything: the candidate replicates again, the old primary
/// is writable again. Later failures are left as they are and reported (the candidate may
/// already be the only server with the newest transactions).
async fn roll_back<E: Executor>(
    exec: &Arc<E>,
    done: &[Step],
    progress: &mut dyn Progress,
) -> Vec<String> {
    let Some(fence) = done
        .iter()
        .position(|s| matches!(s.action, Action::Fence { kill_writers: true }))
    else {
        return Vec::new();
    };
    // The steps that completed after the fence (the last of `done` is the one that failed).
    let after = done.get(fence + 1..done.len() - 1).unwrap_or(&[]);
    let safe = after.iter().all(|s| {
        matches!(
            s.action,
            Action::WaitForGtid { .. } | Action::StopReplication
        )
    });
    let old = &done[fence];
    if let Some(promoted) = after.iter().find(|s| matches!(s.action, Action::Promote)) {
        let msg = format!(
            "the switchover failed after {} was promoted: it takes writes; {} stays fenced; plan again to finish (orch plan/apply repoints the rest)",
            promoted.host, old.host
        );
        progress.note(&msg);
        return vec![msg];
    }
    if !safe {
        let msg = format!(
            "the switchover failed after the candidate was reset or servers were repointed: {} stays fenced; fix the cause and plan again (orch will not guess which server should take writes)",
            old.host
        );
        progress.note(&msg);
        return vec![msg];
    }
    let mut undo: Vec<Step> = after
        .iter()
        .filter(|s| matches!(s.action, Action::StopReplication))
        .map(|s| Step {
            action: Action::StartReplication,
            why: "roll back: replicate again".into(),
            requires: Vec::new(),
            expects: Vec::new(),
            ..s.clone()
        })
        .collect();
    undo.push(Step {
        action: Action::Unfence,
        why: "roll back: the old primary is still the primary".into(),
        requires: Vec::new(),
        expects: Vec::new(),
        ..old.clone()
    });
    let mut said = Vec::new();
    for s in undo {
        let what = format!("roll back: {} on {}", s.action.describe(), s.host);
        let msg = match exec.execute(&s).await {
            Ok(_) => format!("{what}: done"),
            Err(e) => format!("{what}: failed: {e}"),
        };
        progress.note(&msg);
        said.push(msg);
    }
    said
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::sim::{Simulator, host_address};
    use crate::gtid::Flavor;
    use crate::plan::tests::{desired, execute, observe};
    use crate::plan::{Desired, PlanOptions};
    use crate::spec::Policy;

    /// The simulator, with step `fail` refused as a server would refuse it.
    struct Failing {
        sim: Arc<Simulator>,
        fail: usize,
    }

    impl Executor for Failing {
        async fn observe(&self, address: &Address) -> ServerState {
            self.sim.observe(address).await
        }
        async fn execute(&self, step: &Step) -> Result<StepOutcome, StepError> {
            if step.number == self.fail {
                return Err(StepError::Server {
                    code: 1290,
                    message: "injected".into(),
                    statement: "-".into(),
                });
            }
            let r = self.sim.execute(step).await;
            self.sim.tick();
            r
        }
    }

    /// The simulator, with a writer that survived the fence: it commits on the old primary
    /// (h0) right after step `at` ran.
    struct Sneaky {
        sim: Arc<Simulator>,
        at: usize,
    }

    impl Executor for Sneaky {
        async fn observe(&self, address: &Address) -> ServerState {
            self.sim.observe(address).await
        }
        async fn execute(&self, step: &Step) -> Result<StepOutcome, StepError> {
            let r = self.sim.execute(step).await;
            if step.number == self.at {
                self.sim.write(host_address(0), 1).unwrap();
            }
            self.sim.tick();
            r
        }
    }

    /// A write that lands on the fenced old primary after everything else moved (a session
    /// that could still write, reconnected): the promote step refuses, nothing is writable,
    /// and the error names the old primary.
    #[test]
    fn a_write_on_the_fenced_primary_stops_the_switchover_before_the_promotion() {
        let d = desired(&[("h0", Some("h1")), ("h1", None), ("h2", Some("h1"))]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
        sim.write(host_address(0), 10).unwrap();
        sim.tick();
        let plan = crate::plan::plan(
            &d,
            &observe(&sim, &d),
            &Policy::default(),
            PlanOptions::default(),
        )
        .unwrap();
        let promote = plan
            .steps
            .iter()
            .position(|s| matches!(s.action, Action::Promote))
            .expect("a promote step");
        // Right before the promotion: the old primary already replicates from the
        // candidate (a write before that breaks its replication, a failure too).
        let at = plan.steps[promote - 1].number;
        let exec = Arc::new(Sneaky {
            sim: sim.clone(),
            at,
        });
        let stop = AtomicBool::new(false);
        let report = rt.block_on(run(
            exec,
            &cluster(&d),
            &plan,
            Limits::default(),
            &stop,
            &mut Quiet,
        ));
        let StepResult::Failed(why) = &report.results[promote] else {
            panic!("the promotion must fail: {:?}", report.results);
        };
        assert!(why.contains("lacks transactions h0 executed"), "{why}");
        assert!(writable(&sim).is_empty(), "{:?}", writable(&sim));
    }

    struct Quiet;
    impl Progress for Quiet {
        fn started(&mut self, _: &Step) {}
        fn finished(&mut self, _: &Step, _: &StepResult, _: Duration) {}
        fn note(&mut self, _: &str) {}
    }

    fn writable(sim: &Simulator) -> Vec<Address> {
        sim.addresses()
            .into_iter()
            .filter(|a| {
                sim.server(a)
                    .is_some_and(|s| !s.read_only && s.replication.is_none())
            })
            .collect()
    }

    fn cluster(d: &Desired) -> Cluster {
        Cluster {
            servers: d
                .hosts
                .iter()
                .map(|h| (h.id.clone(), h.address.clone()))
                .collect(),
            states: Vec::new(),
        }
    }

    /// Every step of a switchover and of a reshape, failed in turn: the run stops there,
    /// never leaves two writable servers, a switchover failed before anything was
    /// repointed has its old primary writable again, and planning again converges.
    #[test]
    fn a_failure_at_every_step_keeps_the_invariants_and_replanning_converges() {
        let shapes: &[(&str, Desired)] = &[
            (
                "switchover",
                desired(&[
                    ("h0", Some("h1")),
                    ("h1", None),
                    ("h2", Some("h1")),
                    ("h3", Some("h0")),
                ]),
            ),
            (
                "star to chain",
                desired(&[
                    ("h0", None),
                    ("h1", Some("h0")),
                    ("h2", Some("h1")),
                    ("h3", Some("h2")),
                ]),
            ),
        ];
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let policy = Policy::default();
        for (name, d) in shapes {
            let base = Simulator::star(4, Flavor::Mariadb);
            base.write(host_address(0), 10).unwrap();
            base.tick();
            let sim = Arc::new(base);
            let plan =
                crate::plan::plan(d, &observe(&sim, d), &policy, PlanOptions::default()).unwrap();
            assert!(plan.steps.len() > 3, "{name}: {plan:#?}");
            for fail in 1..=plan.steps.len() {
                let sim = Arc::new(Simulator::star(4, Flavor::Mariadb));
                sim.write(host_address(0), 10).unwrap();
                sim.tick();
                let exec = Arc::new(Failing {
                    sim: sim.clone(),
                    fail,
                });
                let limits = Limits {
                    expect_timeout: Duration::from_millis(200),
                };
                let stop = AtomicBool::new(false);
                let report = rt.block_on(run(exec, &cluster(d), &plan, limits, &stop, &mut Quiet));
                let what = format!("{name}, step {fail} failing");
                assert!(!report.succeeded(), "{what}");
                assert!(
                    matches!(report.results[fail - 1], StepResult::Failed(_)),
                    "{what}: {:?}",
                    report.results
                );
                assert!(
                    report.results[fail..]
                        .iter()
                        .all(|r| *r == StepResult::NotRun),
                    "{what}: nothing after the failure ran"
                );
                assert!(writable(&sim).len() <= 1, "{what}: {:?}", writable(&sim));
                let fenced_at = plan
                    .steps
                    .iter()
                    .position(|s| matches!(s.action, Action::Fence { kill_writers: true }));
                let reset_at = plan
                    .steps
                    .iter()
                    .position(|s| matches!(s.action, Action::ResetReplication));
                if let (Some(f), Some(r)) = (fenced_at, reset_at)
                    && fail - 1 > f
                    && fail - 1 <= r
                {
                    assert_eq!(
                        writable(&sim),
                        vec![host_address(0)],
                        "{what}: rolled back, the old primary takes writes again"
                    );
                }
                // Planning again from wherever it stopped converges.
                for _ in 0..3 {
                    let again =
                        crate::plan::plan(d, &observe(&sim, d), &policy, PlanOptions::default())
                            .unwrap_or_else(|e| panic!("{what}: {e}\n{:#?}", observe(&sim, d)));
                    if again.steps.is_empty() {
                        break;
                    }
                    execute(&sim, &again);
                }
                let last = crate::plan::plan(d, &observe(&sim, d), &policy, PlanOptions::default())
                    .unwrap();
                assert!(
                    last.steps.is_empty() && last.blocked.is_empty(),
                    "{what}: converged: {last:#?}"
                );
            }
        }
    }
}
