//! The planner: decides what to change and in which order, on a [`Model`] that every
//! emitted step is applied to, so each decision sees the steps before it.
//!
//! Order: fence writable replicas; the switchover (when the file names another primary);
//! then every replica in the desired tree's breadth-first order, so a server's new source
//! is always already in its final place (that order alone rules out cycles; a blocked
//! source is caught by the model); detach removed servers; unfence the primary last.

use std::collections::{HashSet, VecDeque};

use super::model::{LinkState, Model};
use super::{BlockCode, Blocked, Desired, Lost, Observed, Placement, Plan, PlanOptions, Warning};
use crate::gtid::Flavor;
use crate::spec::Policy;
use crate::step::{Action, Condition, GtidPosition, Phase, Step};

struct Builder<'a> {
    desired: &'a Desired,
    policy: &'a Policy,
    options: PlanOptions,
    m: Model,
    steps: Vec<Step>,
    blocked: Vec<Blocked>,
    warnings: Vec<Warning>,
    lost: Vec<Lost>,
    /// Hosts the plan does not touch (unreachable, blocked, a former primary left alone).
    exempt: HashSet<usize>,
    /// Servers sharing their identity (server_id, or server_uuid) with another: a source
    /// refuses a replica with its own server_id (error 4052), and GTIDs of one cannot be
    /// told from the other's. No change involves them.
    duplicates: Vec<Option<String>>,
    /// The desired source of each declared host (model index), after substitutions.
    target: Vec<Option<usize>>,
    /// A step the model refused while planning: a planner bug, reported as a failed proof.
    bug: Option<String>,
}

pub fn build(
    desired: &Desired,
    observed: &Observed,
    policy: &Policy,
    options: PlanOptions,
) -> Result<Plan, String> {
    let m = Model::of(desired, observed);
    let before = placements(&m);
    let mut b = Builder {
        desired,
        policy,
        options,
        target: Vec::new(),
        m,
        steps: Vec::new(),
        blocked: Vec::new(),
        warnings: Vec::new(),
        lost: Vec::new(),
        exempt: HashSet::new(),
        duplicates: duplicate_identities(observed),
        bug: None,
    };
    b.run();
    if let Some(bug) = b.bug {
        return Err(bug);
    }
    let after = placements(&b.m);
    Ok(Plan {
        schema: super::SCHEMA,
        cluster: desired.cluster.clone(),
        fingerprint: super::fingerprint(observed),
        files: Vec::new(),
        steps: b.steps,
        blocked: b.blocked,
        lost: b.lost,
        warnings: b.warnings,
        before,
        after,
    })
}

/// Where every server stands in a model.
pub fn placements(m: &Model) -> Vec<Placement> {
    (0..m.nodes.len())
        .map(|i| {
            let n = &m.nodes[i];
            let link = m.link(i);
            Placement {
                host: n.id.clone(),
                role: match (link, m.primary == Some(i)) {
                    (Some(_), _) => "replica",
                    (None, true) => "primary",
                    (None, false) => "standalone",
                }
                .into(),
                source: link.map(|l| match l.source {
                    Some(s) => m.nodes[s].id.clone(),
                    None => l.source_name.clone(),
                }),
                replication: match link.map(|l| &l.state) {
                    None => "none",
                    Some(LinkState::Running) => "running",
                    Some(LinkState::Stopped) => "stopped",
                    Some(LinkState::Broken { .. }) => "broken",
                }
                .into(),
                read_only: m.live(i).map(|l| l.read_only),
                reachable: n.live.is_some(),
            }
        })
        .collect()
}

/// Appends the step of `action` on server `i`, replaying it on the model as it goes; the
/// first invariant it breaks is kept in `bug` (the plan is then refused).
pub(super) fn emit(
    m: &mut Model,
    steps: &mut Vec<Step>,
    bug: &mut Option<String>,
    phase: Phase,
    i: usize,
    action: Action,
    why: String,
) {
    let (requires, expects) = conditions(m, i, &action);
    if let Err(e) = m.apply(i, &action)
        && bug.is_none()
    {
        *bug = Some(format!(
            "step {} on {}: {e}",
            steps.len() + 1,
            m.nodes[i].id
        ));
    }
    steps.push(Step {
        number: steps.len() + 1,
        phase,
        host: m.nodes[i].id.clone(),
        address: m.nodes[i].address.clone(),
        action,
        why,
        requires,
        expects,
        detachable: None,
    });
}

/// What a step needs before it runs and promises after.
pub(super) fn conditions(m: &Model, i: usize, action: &Action) -> (Vec<Condition>, Vec<Condition>) {
    use Condition as C;
    let source = || {
        m.source(i)
            .map(|s| m.nodes[s].id.clone())
            .unwrap_or_default()
    };
    match action {
        Action::Fence { .. } => (vec![C::Reachable], vec![C::ReadOnly { on: true }]),
        Action::Unfence => (
            vec![C::Reachable, C::NotReplica, C::NoOtherWritable],
            vec![C::ReadOnly { on: false }],
        ),
        Action::StopReplication => (vec![C::Reachable], vec![C::ReplicationStopped]),
        Action::StopIo => (vec![C::Reachable], vec![C::IoStopped]),
        Action::WaitRelayLog { .. } => (vec![C::Reachable, C::IoStopped], Vec::new()),
        Action::WaitForGtid { until, .. } => (
            vec![C::Reachable, C::ReplicatingFrom { source: source() }],
            vec![C::Contains {
                host: until.clone(),
            }],
        ),
        Action::ChangeSource { source, .. } => (
            vec![
                C::Reachable,
                C::ReplicationStopped,
                C::ContainedIn {
                    host: source.clone(),
                },
            ],
            vec![
                C::SourceIs {
                    source: source.clone(),
                },
                C::ReplicationStopped,
            ],
        ),
        Action::StartReplication => (
            vec![C::Reachable, C::SourceIs { source: source() }],
            vec![C::ReplicatingFrom { source: source() }],
        ),
        Action::Promote => (
            vec![C::Reachable, C::NotReplica, C::NoOtherWritable],
            vec![C::ReadOnly { on: false }],
        ),
        Action::ResetReplication => (
            vec![C::Reachable, C::ReplicationStopped],
            vec![C::NotReplica],
        ),
    }
}

impl Builder<'_> {
    fn id(&self, i: usize) -> &str {
        &self.m.nodes[i].id
    }

    fn emit(&mut self, phase: Phase, i: usize, action: Action, why: String) {
        emit(
            &mut self.m,
            &mut self.steps,
            &mut self.bug,
            phase,
            i,
            action,
            why,
        );
    }

    fn block(&mut self, code: BlockCode, i: usize, change: String, reason: String) {
        self.exempt.insert(i);
        self.blocked.push(Blocked {
            code,
            host: self.id(i).to_string(),
            change,
            reason,
        });
    }

    fn warn(&mut self, code: &str, i: usize, message: String) {
        self.warnings.push(Warning {
            code: code.into(),
            host: self.id(i).to_string(),
            message,
        });
    }

    fn max_lag_secs(&self) -> u64 {
        self.policy.failover.promote.max_lag.as_secs()
    }

    fn run(&mut self) {
        let declared = self.desired.hosts.len();
        let pd = self
            .desired
            .primary()
            .expect("a validated topology has a primary");
        self.target = self
            .desired
            .hosts
            .iter()
            .map(|h| h.source.as_deref().and_then(|s| self.m.find(s)))
            .collect();
        for i in 0..declared {
            if self.m.live(i).is_none() {
                self.exempt.insert(i);
                self.warn(
                    "unreachable",
                    i,
                    format!(
                        "{} ({}) could not be observed: nothing is planned for it",
                        self.id(i),
                        self.m.nodes[i].address
                    ),
                );
            }
        }
        let Some(po) = self.m.primary else {
            if self.m.live(pd).is_none() {
                self.block(BlockCode::PrimaryUnreachable, pd, "keep the primary".into(), format!(
                    "the primary {} cannot be observed, so nothing can be planned safely; if it is dead this is a failover (orch watch), not a plan",
                    self.id(pd)
                ));
            } else {
                let roots: Vec<String> = (0..declared)
                    .filter(|&i| self.m.live(i).is_some_and(|l| l.link.is_none()))
                    .map(|i| self.id(i).to_string())
                    .collect();
                self.block(BlockCode::PrimaryUnknown, pd, "keep the primary".into(), format!(
                    "cannot tell which server is the primary: {}; fix the topology by hand (or give the others a source), then plan again",
                    if roots.is_empty() { "every server has a source".to_string() } else { crate::topology::agree(&roots, "{} has no source", "{} have no source") }
                ));
            }
            return;
        };

        if let Some(reason) = self.foreign_source(po) {
            self.block(
                BlockCode::PrimaryMismatch,
                pd,
                "keep the primary".into(),
                reason,
            );
            return;
        }

        // Who will be the primary when the plan is done.
        let mut primary = po;
        let mut switchover: Option<(usize, bool)> = None;
        if po != pd {
            let pd_replicates = self.m.source(pd).is_some();
            if pd_replicates || self.interrupted_switchover(po, pd) {
                switchover = Some((pd, false));
            } else if self.options.allow_switch_back && self.m.live(pd).is_some() {
                switchover = Some((pd, true));
            } else {
                self.warn("failover-drift", pd, format!(
                    "the file names {} as the primary but {} is the live primary and {} does not replicate from it (a failover happened?): update the file, or plan with --allow-switch-back to make {} the primary again",
                    self.id(pd), self.id(po), self.id(pd), self.id(pd)
                ));
                let (a, b) = (self.id(pd).to_string(), self.id(po).to_string());
                self.block(BlockCode::FailoverDrift, pd, format!("make {a} the primary"), format!(
                    "{b} is the live primary; switching back is not automatic (--allow-switch-back)"
                ));
                // Read the file as if it named the live primary.
                for t in self.target.iter_mut() {
                    if *t == Some(pd) {
                        *t = Some(po);
                    }
                }
                self.target[po] = None;
            }
        }

        self.fence_writable_replicas(primary, pd);
        if let Some((candidate, switch_back)) = switchover
            && self.switchover(po, candidate, switch_back)
        {
            primary = candidate;
        }
        self.place_replicas(primary);
        self.detach_removed();
        self.unfence_primary(primary, pd);
        self.report_lost();
    }

    /// read_only on every declared server that should not take writes.
    fn fence_writable_replicas(&mut self, primary: usize, pd: usize) {
        for i in 0..self.desired.hosts.len() {
            if i == primary || !self.m.writable(i) {
                continue;
            }
            let why = if i == pd {
                format!(
                    "{} is writable beside the live primary {}: never two writable servers",
                    self.id(i),
                    self.id(primary)
                )
            } else if self.m.link(i).is_none() {
                "a server joining the cluster is made read_only before it replicates".into()
            } else {
                "a writable replica: a stray write there becomes an errant transaction".into()
            };
            self.emit(
                Phase::Repair,
                i,
                Action::Fence {
                    kill_writers: false,
                },
                why,
            );
        }
    }

    /// Why the file may not describe the servers it names: more of its replicas replicate
    /// (through their chains of sources) from one server the file does not name than from
    /// the live primary `po`. Then the file's addresses may point into another cluster, and
    /// any change (detaching that cluster's replicas, fencing its primary) could damage
    /// it.
    fn foreign_source(&self, po: usize) -> Option<String> {
        let declared = self.desired.hosts.len();
        let mut inside = 0;
        let mut outside: Vec<(String, Vec<String>)> = Vec::new();
        for i in (0..declared).filter(|&i| i != po && self.m.link(i).is_some()) {
            let mut x = i;
            for _ in 0..self.m.nodes.len() {
                match self.m.source(x) {
                    Some(s) => x = s,
                    None => break,
                }
            }
            if x == po {
                inside += 1;
            } else if let Some(link) = self.m.link(x).filter(|l| l.source.is_none()) {
                match outside.iter_mut().find(|(a, _)| *a == link.source_name) {
                    Some((_, who)) => who.push(self.id(i).to_string()),
                    None => outside.push((link.source_name.clone(), vec![self.id(i).to_string()])),
                }
            }
        }
        let (address, who) = outside.into_iter().max_by_key(|(_, w)| w.len())?;
        (who.len() > inside).then(|| {
            format!(
                "{} from {address}, which the file does not name, and {} of the file's replicas from its live primary {} ({}): the file's addresses may point at another cluster, or the primary moved outside orch; nothing is planned: check the addresses, or declare {address}",
                crate::topology::agree(&who, "{} replicates", "{} replicate"),
                inside,
                self.id(po),
                self.m.nodes[po].address
            )
        })
    }

    /// The graceful switchover from `old` to `candidate`; false when blocked.
    fn switchover(&mut self, old: usize, c: usize, switch_back: bool) -> bool {
        let change = format!(
            "make {} the primary instead of {}",
            self.id(c),
            self.id(old)
        );
        if let Some((code, reason)) = self.candidate_problem(old, c, switch_back) {
            self.block(code, c, change, reason);
            self.exempt.insert(old);
            return false;
        }
        if let Some(reason) = self.switchover_strands(old, c) {
            self.block(BlockCode::LostReplica, c, change, reason);
            self.exempt.insert(old);
            return false;
        }
        // A stopped link between the candidate and the old primary would keep it from
        // catching up: start it first (nothing else about it changes).
        let mut x = c;
        while let Some(s) = self.m.source(x) {
            if self
                .m
                .link(x)
                .is_some_and(|l| l.state == LinkState::Stopped)
                && x != c
            {
                let why = format!(
                    "replication is stopped between {} and the primary",
                    self.id(c)
                );
                self.emit(Phase::Repair, x, Action::StartReplication, why);
            }
            if s == old {
                break;
            }
            x = s;
        }
        let flavor = self.m.live(c).map(|l| l.flavor).expect("checked");
        let (cid, oid) = (self.id(c).to_string(), self.id(old).to_string());
        if switch_back {
            self.emit(
                Phase::Switchover,
                c,
                Action::ChangeSource {
                    source: oid.clone(),
                    source_address: self.m.nodes[old].address.clone(),
                    gtid_position: position_choice(flavor, true),
                    delay_secs: 0,
                    with_credentials: self.m.link(c).is_none(),
                },
                format!("switch back: {cid} first catches up with the live primary {oid}"),
            );
            self.emit(
                Phase::Switchover,
                c,
                Action::StartReplication,
                format!("{cid} replicates from {oid} until the switchover"),
            );
        }
        let first = self.steps.len();
        // The old primary's other replicas move under the candidate while writes still
        // flow (the candidate passes them on: it has log_slave_updates), so the fence
        // does not wait for them. Those on the candidate's own path move after it is
        // promoted.
        let mut on_path = Vec::new();
        let mut x = c;
        while let Some(s) = self.m.source(x) {
            if s == old {
                on_path.push(x);
                break;
            }
            x = s;
        }
        on_path.retain(|&r| r != c);
        let off_path: Vec<usize> = self
            .m
            .replicas_of(old)
            .iter()
            .copied()
            .filter(|&r| r != c && !on_path.contains(&r))
            .collect();
        self.move_siblings(old, c, &off_path);
        self.emit(
            Phase::Switchover,
            old,
            Action::Fence { kill_writers: true },
            format!(
                "switchover: stop writes on {oid}: read_only takes effect at once and an open transaction fails at COMMIT (error 1290); sessions that could still write (READ_ONLY ADMIN holders) are killed, rolling back what they had open"
            ),
        );
        // Lag is not part of the plan's fingerprint: the candidate's is checked again when
        // the switchover starts and right before the fence, so a candidate that fell
        // behind since planning is neither waited for nor waited for with writes blocked.
        if !switch_back && self.m.link(c).is_some() {
            let lag = Condition::LagAtMost {
                host: cid.clone(),
                seconds: self.policy.failover.promote.max_lag.as_secs(),
            };
            let fence = self.steps.len() - 1;
            for n in [first, fence] {
                if !self.steps[n].requires.contains(&lag) {
                    self.steps[n].requires.push(lag.clone());
                }
            }
        }
        // Resuming a switchover that stopped after the candidate was reset: it already has
        // everything the fenced old primary has, and no source to stop or forget.
        let resuming = self.m.link(c).is_none() && !switch_back;
        if !resuming {
            self.emit(
                Phase::Switchover,
                c,
                Action::WaitForGtid {
                    until: oid.clone(),
                    until_address: self.m.nodes[old].address.clone(),
                    timeout_secs: self.policy.failover.promote.wait_relay_log.as_secs().max(1),
                },
                format!(
                    "{cid} must have executed every transaction {oid} wrote before it takes writes"
                ),
            );
            self.emit(
                Phase::Switchover,
                c,
                Action::StopReplication,
                format!("{cid} stops replicating from the fenced {oid}"),
            );
            // Forget the old source now, so that the old primary replicating from the
            // candidate never meets a candidate configured to replicate from it.
            self.emit(
                Phase::Switchover,
                c,
                Action::ResetReplication,
                format!("{cid} forgets {oid} as its source (it stays read_only)"),
            );
        }
        self.emit(
            Phase::Switchover,
            c,
            Action::Promote,
            format!(
                "{cid} is the new primary; it is made writable last, when nothing else can write"
            ),
        );
        // The fence must have held until now: nothing the candidate lacks appeared on the
        // old primary (a session or event that could still write), or nothing is promoted.
        let promote = self.steps.last_mut().expect("just emitted");
        promote
            .requires
            .push(Condition::Contains { host: oid.clone() });
        // Replicas on the candidate's path could only move once it stopped replicating
        // through them; the old primary follows the new one last: both are read_only
        // and take no writes, so none of this is inside the write-block window.
        self.move_siblings(old, c, &on_path);
        self.emit(
            Phase::Switchover,
            old,
            Action::ChangeSource {
                source: cid.clone(),
                source_address: self.m.nodes[c].address.clone(),
                gtid_position: position_choice(flavor, true),
                delay_secs: self.desired.hosts.get(old).map_or(0, |h| h.delay_secs),
                with_credentials: self.m.link(old).is_none(),
            },
            format!("the old primary {oid} becomes a replica of {cid} (its own writes are in {cid} already)"),
        );
        self.emit(
            Phase::Switchover,
            old,
            Action::StartReplication,
            format!("{oid} replicates from {cid}"),
        );
        true
    }

    /// During a switchover from `old` to `c`: each of `siblings` (replicas of `old`) that
    /// belongs under `c` moves there; if `old` cannot pass on what it replicates (no binlog
    /// or no log_slave_updates), every one not kept under it does, and those kept are lost.
    fn move_siblings(&mut self, old: usize, c: usize, siblings: &[usize]) {
        let old_serves = self
            .m
            .live(old)
            .is_some_and(|l| l.log_bin && l.log_replica_updates);
        let (cid, oid) = (self.id(c).to_string(), self.id(old).to_string());
        for &r in siblings {
            if self.exempt.contains(&r) || self.m.live(r).is_none() {
                continue;
            }
            let t = self.target.get(r).copied().flatten();
            if t == Some(c) || (!old_serves && t != Some(old)) {
                if let Some((code, reason)) = self.move_problem(r, c, Phase::Switchover) {
                    let change = format!("move from {oid} to {cid}");
                    self.block(code, r, change, reason);
                    continue;
                }
                self.move_replica(
                    Phase::Switchover,
                    r,
                    c,
                    0,
                    format!("{} follows the new primary {cid}", self.id(r)),
                );
            } else if !old_serves {
                let why = format!(
                    "stays under {oid}, which as a replica without log_slave_updates will not pass on new transactions"
                );
                self.lost.push(Lost {
                    host: self.id(r).to_string(),
                    reason: why,
                });
                self.m.lost.insert(r);
            }
        }
    }

    /// Why server `x` may not take part in any change, when it shares its identity.
    fn duplicate(&self, x: usize) -> Option<String> {
        self.duplicates.get(x).cloned().flatten()
    }

    /// A switchover apply left half done: the file's primary `pd` was reset (no source,
    /// read_only) after catching up with the fenced live primary `po`, and nothing is
    /// writable. Finishing it is safe: `pd` has everything `po` has.
    fn interrupted_switchover(&self, po: usize, pd: usize) -> bool {
        let (Some(lo), Some(ld)) = (self.m.live(po), self.m.live(pd)) else {
            return false;
        };
        lo.read_only && ld.read_only && ld.link.is_none() && self.m.contains(pd, po)
    }

    /// Replicas the file keeps under `old` that would stop getting transactions once `old`
    /// is a replica without log_slave_updates; refused unless `--allow-lost-replicas`.
    fn switchover_strands(&self, old: usize, c: usize) -> Option<String> {
        let old_serves = self
            .m
            .live(old)
            .is_some_and(|l| l.log_bin && l.log_replica_updates);
        if old_serves || self.options.allow_lost_replicas {
            return None;
        }
        let stranded: Vec<&str> = self
            .m
            .replicas_of(old)
            .iter()
            .copied()
            .filter(|&r| r != c && !self.exempt.contains(&r) && self.m.live(r).is_some())
            .filter(|&r| self.target.get(r).copied().flatten() == Some(old))
            .map(|r| self.id(r))
            .collect();
        (!stranded.is_empty()).then(|| {
            let them = if stranded.len() == 1 { "it" } else { "them" };
            format!(
                "{} would stay under {}, which as a replica without log_slave_updates passes on nothing: put {them} under {} in the file, or accept losing {them} with --allow-lost-replicas",
                stranded.join(", "),
                self.id(old),
                self.id(c)
            )
        })
    }

    /// Why `c` cannot take over from `old`, if it cannot.
    fn candidate_problem(
        &self,
        old: usize,
        c: usize,
        switch_back: bool,
    ) -> Option<(BlockCode, String)> {
        let cid = self.id(c);
        for x in [c, old] {
            if let Some(why) = self.duplicate(x) {
                return Some((BlockCode::DuplicateIdentity, why));
            }
        }
        let live = self.m.live(c)?;
        let observed_delay = live.link.as_ref().map_or(0, |l| l.delay);
        let declared_delay = self.desired.hosts.get(c).map_or(0, |h| h.delay_secs);
        if observed_delay > 0 || declared_delay > 0 {
            return Some((
                BlockCode::Delayed,
                format!(
                    "{cid} is a delayed replica (MASTER_DELAY {}s observed, delay {}s in the file): it is behind on purpose and never a switchover candidate",
                    observed_delay, declared_delay
                ),
            ));
        }
        if !live.filters.is_empty() {
            return Some((
                BlockCode::ReplicationFilters,
                format!(
                    "{cid} replicates with filters ({}): it may lack whole schemas, and as the primary it would serve them to no one",
                    live.filters.join(", ")
                ),
            ));
        }
        if live.errant {
            return Some((
                BlockCode::ErrantGtid,
                format!(
                    "{cid} has transactions the primary {} never had; promoting it would publish them and strand the other replicas: remove them (or re-seed {cid}) first",
                    self.id(old)
                ),
            ));
        }
        if !switch_back {
            let link = live.link.as_ref()?;
            match &link.state {
                LinkState::Broken { error, .. } => {
                    return Some((BlockCode::ReplicationError, format!("{cid}: {error}")));
                }
                LinkState::Stopped => {
                    return Some((
                        BlockCode::CandidateNotReplicating,
                        format!(
                            "{cid}'s replication is stopped: start it and let it catch up, then plan again"
                        ),
                    ));
                }
                LinkState::Running => {}
            }
            if link.source.is_none() {
                return Some((
                    BlockCode::CandidateNotReplicating,
                    format!(
                        "{cid} replicates from {}, which is not a server of this cluster",
                        link.source_name
                    ),
                ));
            }
            if let Some(lag) = link.seconds_behind
                && lag > self.max_lag_secs()
            {
                return Some((
                    BlockCode::Lagging,
                    format!(
                        "{cid} is {lag}s behind (policy max_lag {}s): the fenced primary would refuse writes until it catches up",
                        self.max_lag_secs()
                    ),
                ));
            }
            // Its replication chain must lead to the old primary through servers that answer
            // and replicate (stopped links are started first).
            let mut x = c;
            for _ in 0..self.m.nodes.len() {
                let Some(s) = self.m.source(x) else {
                    return Some((
                        BlockCode::CandidateNotReplicating,
                        format!(
                            "{cid} does not replicate from {} (its chain ends at {})",
                            self.id(old),
                            self.id(x)
                        ),
                    ));
                };
                if let Some(LinkState::Broken { error, .. }) = self.m.link(x).map(|l| &l.state) {
                    return Some((
                        BlockCode::ReplicationError,
                        format!("{} (between {cid} and the primary): {error}", self.id(x)),
                    ));
                }
                if s == old {
                    break;
                }
                x = s;
            }
        }
        if !live.log_bin {
            return Some((
                BlockCode::SourceWithoutBinlog,
                format!("{cid} has log_bin off: a primary must binlog for its replicas"),
            ));
        }
        if !live.log_replica_updates {
            return Some((
                BlockCode::SourceWithoutLogReplicaUpdates,
                format!(
                    "{cid} has log_slave_updates off: the old primary's last transactions would not reach the other replicas through it"
                ),
            ));
        }
        if let Err((code, why)) = self.m.can_serve(c, old) {
            return Some((code, why));
        }
        None
    }

    /// Replicas in the desired tree's breadth-first order.
    fn place_replicas(&mut self, primary: usize) {
        let declared = self.desired.hosts.len();
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); declared];
        for (i, t) in self.target.iter().enumerate() {
            if let Some(t) = t {
                children[*t].push(i);
            }
        }
        let mut order = Vec::with_capacity(declared);
        let mut seen = vec![false; declared];
        let mut queue = VecDeque::from([primary]);
        seen[primary] = true;
        while let Some(x) = queue.pop_front() {
            order.push(x);
            for &c in &children[x] {
                if !std::mem::replace(&mut seen[c], true) {
                    queue.push_back(c);
                }
            }
        }
        order.extend((0..declared).filter(|&i| !seen[i]));
        for i in order {
            if i == primary || self.exempt.contains(&i) {
                continue;
            }
            let Some(t) = self.target[i] else { continue };
            self.place(i, t);
        }
    }

    /// Puts declared replica `i` under `t` as the file says, or says why not.
    fn place(&mut self, i: usize, t: usize) {
        let delay = self.desired.hosts[i].delay_secs;
        let (id, tid) = (self.id(i).to_string(), self.id(t).to_string());
        let link = self.m.link(i).cloned();
        if self.m.live(t).is_none() {
            self.block(BlockCode::Unreachable, i, format!("replicate from {tid}"), format!(
                "its source {tid} cannot be observed: nothing is planned for {id} until it is back (or the file moves {id})"
            ));
            return;
        }
        if let Some(l) = &link
            && l.source == Some(t)
            && l.gtid
            && l.delay == delay
        {
            match &l.state {
                LinkState::Running => {}
                LinkState::Stopped => {
                    if let Some(why) = self.duplicate(i).or_else(|| self.duplicate(t)) {
                        self.block(
                            BlockCode::DuplicateIdentity,
                            i,
                            format!("start replication from {tid}"),
                            why,
                        );
                    } else if let Err((code, why)) = self.m.can_serve(t, i) {
                        self.block(code, i, format!("start replication from {tid}"), why);
                    } else {
                        self.emit(
                            Phase::Repair,
                            i,
                            Action::StartReplication,
                            "replication is stopped".into(),
                        );
                    }
                }
                LinkState::Broken { error, .. } => {
                    self.block(BlockCode::ReplicationError, i, format!("replicate from {tid}"), format!(
                        "{error}; orch never skips transactions: fix the cause (or re-seed {id}), then plan again"
                    ));
                }
            }
            return;
        }
        let (phase, change, why) = match &link {
            None => (
                Phase::Join,
                format!("start replicating from {tid}"),
                format!("{id} is new in the file: it joins under {tid}"),
            ),
            Some(l) if l.source == Some(t) => {
                let what = if !l.gtid {
                    "GTID positioning".to_string()
                } else {
                    format!("delay {}s (now {}s)", delay, l.delay)
                };
                (
                    Phase::Repair,
                    format!("replicate from {tid} with {what}"),
                    format!("reconfigure replication from {tid}: {what}"),
                )
            }
            Some(l) => {
                let from = l
                    .source
                    .map_or(l.source_name.clone(), |s| self.id(s).to_string());
                (
                    Phase::Move,
                    format!("move from {from} to {tid}"),
                    format!("the file puts {id} under {tid} (now under {from})"),
                )
            }
        };
        if let Some((code, reason)) = self.move_problem(i, t, phase) {
            self.block(code, i, change, reason);
            return;
        }
        self.move_replica(phase, i, t, delay, why);
    }

    /// Why replica `i` cannot be put under `t` now, if it cannot.
    fn move_problem(&self, i: usize, t: usize, phase: Phase) -> Option<(BlockCode, String)> {
        let (id, tid) = (self.id(i), self.id(t));
        for x in [i, t] {
            if let Some(why) = self.duplicate(x) {
                return Some((BlockCode::DuplicateIdentity, why));
            }
        }
        let li = self.m.live(i)?;
        let Some(lt) = self.m.live(t) else {
            return Some((
                BlockCode::Unreachable,
                format!("its new source {tid} cannot be observed"),
            ));
        };
        if self.m.is_ancestor(i, t) {
            return Some((
                BlockCode::Cycle,
                format!(
                    "{tid} replicates (directly or not) from {id}: {id} under {tid} would be a cycle (was {tid}'s own change blocked?)"
                ),
            ));
        }
        if let Some(LinkState::Broken { sql: true, error }) = li.link.as_ref().map(|l| &l.state) {
            return Some((
                BlockCode::ReplicationError,
                format!("{error}; orch never skips transactions: fix it, then plan again"),
            ));
        }
        let delayed = |x: usize| {
            self.m.link(x).is_some_and(|l| l.delay > 0)
                || self.desired.hosts.get(x).is_some_and(|h| h.delay_secs > 0)
        };
        if delayed(t) && self.desired.hosts.get(i).is_none_or(|h| h.delay_secs == 0) {
            return Some((
                BlockCode::Delayed,
                format!(
                    "{tid} is a delayed replica: {id} under it would be as stale as {tid} on purpose is; declare a delay on {id} too if that is what you want"
                ),
            ));
        }
        if phase == Phase::Join && li.position.as_ref().is_none_or(|p| p.is_empty()) {
            match &li.user_schemas {
                Some(s) if s.is_empty() => {}
                Some(s) => {
                    return Some((
                        BlockCode::NotSeeded,
                        format!(
                            "{id} has no GTID history but holds data (schemas {}): replicating from the beginning would create them again and stop (errors 1007, 1050, 1062); seed it from a backup of the cluster with its GTID position, or drop them if it is meant to be empty",
                            s.join(", ")
                        ),
                    ));
                }
                None => {
                    return Some((
                        BlockCode::NotSeeded,
                        format!(
                            "{id} has no GTID history and whether it holds data is unknown (the observation has no schema list: orch needs SHOW DATABASES)"
                        ),
                    ));
                }
            }
        }
        if li.errant {
            let code = if phase == Phase::Join {
                BlockCode::NotSeeded
            } else {
                BlockCode::ErrantGtid
            };
            return Some((
                code,
                format!(
                    "{id} has transactions the primary never had: {tid} would not have them (and strict mode stops on them); remove them or re-seed {id} from a backup"
                ),
            ));
        }
        if lt.errant && self.m.primary != Some(t) {
            return Some((
                BlockCode::ErrantGtid,
                format!("its new source {tid} has transactions the primary never had"),
            ));
        }
        for (who, l) in [(id, li), (tid, lt)] {
            if let Some(lag) = l.link.as_ref().and_then(|k| k.seconds_behind)
                && lag > self.max_lag_secs()
            {
                return Some((
                    BlockCode::Lagging,
                    format!(
                        "{who} is {lag}s behind its source (policy max_lag {}s): move it once it has caught up",
                        self.max_lag_secs()
                    ),
                ));
            }
        }
        if !li.gtid_enabled || !lt.gtid_enabled {
            let who = if !li.gtid_enabled { id } else { tid };
            return Some((
                BlockCode::GtidDisabled,
                format!("{who} has gtid_mode off: orch moves replicas by GTID only"),
            ));
        }
        if li.link.as_ref().is_some_and(|l| !l.gtid)
            && li.position.as_ref().is_none_or(|p| p.is_empty())
            && lt.position.as_ref().is_some_and(|p| !p.is_empty())
        {
            return Some((
                BlockCode::GtidDisabled,
                format!(
                    "{id} replicates by binlog file and position and its gtid_slave_pos is empty: set it (SET GLOBAL gtid_slave_pos from BINLOG_GTID_POS of its current position) first"
                ),
            ));
        }
        if let Err(e) = self.m.can_serve(t, i) {
            return Some(e);
        }
        // The new source must come to have everything `i` has; if it does not yet, it must
        // be replicating from something that does.
        if !self.m.contains(t, i) {
            let top = self.m.chain_top(t);
            let running = self
                .m
                .link(t)
                .is_some_and(|l| l.state == LinkState::Running);
            if !running || !self.m.contains(top, i) {
                return Some((
                    BlockCode::SourceBlocked,
                    format!(
                        "{tid} is behind {id} and not replicating from a server that has {id}'s transactions, so it cannot catch up"
                    ),
                ));
            }
        }
        None
    }

    /// Stop, (wait), change source, start: `i` replicates from `t`.
    fn move_replica(&mut self, phase: Phase, i: usize, t: usize, delay: u32, why: String) {
        let (id, tid) = (self.id(i).to_string(), self.id(t).to_string());
        let live = self.m.live(i).expect("checked").clone();
        if live
            .link
            .as_ref()
            .is_some_and(|l| l.state != LinkState::Stopped)
        {
            self.emit(
                phase,
                i,
                Action::StopReplication,
                format!("{id} stops before it changes source"),
            );
        }
        if !self.m.contains(t, i) {
            self.emit(
                phase,
                t,
                Action::WaitForGtid {
                    until: id.clone(),
                    until_address: self.m.nodes[i].address.clone(),
                    timeout_secs: self.policy.failover.promote.wait_relay_log.as_secs().max(1),
                },
                format!(
                    "{tid} must have everything {id} has executed before {id} replicates from it"
                ),
            );
        }
        let former_primary = live.link.is_none() || live.own_writes;
        self.emit(
            phase,
            i,
            Action::ChangeSource {
                source: tid.clone(),
                source_address: self.m.nodes[t].address.clone(),
                gtid_position: position_choice(live.flavor, former_primary),
                delay_secs: delay,
                with_credentials: live.link.is_none(),
            },
            why,
        );
        self.emit(
            phase,
            i,
            Action::StartReplication,
            format!("{id} replicates from {tid}"),
        );
    }

    /// Servers replicating from the cluster that the file does not name.
    fn detach_removed(&mut self) {
        for i in self.desired.hosts.len()..self.m.nodes.len() {
            let Some(link) = self.m.link(i).cloned() else {
                continue;
            };
            let from = link
                .source
                .map_or(link.source_name.clone(), |s| self.id(s).to_string());
            if !self.options.detach_removed {
                self.warn("removed-host", i, format!(
                    "{} replicates from {from} but is not in the file: left alone (--detach-removed stops its replication)",
                    self.id(i)
                ));
                continue;
            }
            if link.state != LinkState::Stopped {
                self.emit(
                    Phase::Detach,
                    i,
                    Action::StopReplication,
                    format!("{} is not in the file", self.id(i)),
                );
            }
            self.emit(
                Phase::Detach,
                i,
                Action::ResetReplication,
                format!(
                    "{} no longer replicates from {from} (--detach-removed)",
                    self.id(i)
                ),
            );
        }
    }

    /// read_only off on a read-only primary, when the file and the topology agree on it.
    fn unfence_primary(&mut self, primary: usize, pd: usize) {
        if primary != pd || self.m.writable(primary) || self.exempt.contains(&primary) {
            return;
        }
        let others = self.m.other_writable(primary);
        if let Some(&w) = others.first() {
            let wid = self.id(w).to_string();
            self.block(BlockCode::SourceBlocked, primary, "make the primary writable".into(), format!(
                "{wid} is still writable: the primary is made writable only when nothing else is"
            ));
            return;
        }
        self.emit(
            Phase::Repair,
            primary,
            Action::Unfence,
            "the primary is read_only: the cluster takes no writes".into(),
        );
    }

    /// Replicas left without a live source when the plan is done.
    fn report_lost(&mut self) {
        for i in 0..self.m.nodes.len() {
            let Some(link) = self.m.link(i) else { continue };
            let reason = match link.source {
                Some(s) if self.m.live(s).is_none() => {
                    format!("its source {} is unreachable", self.id(s))
                }
                None if i < self.desired.hosts.len() => format!(
                    "its source {} is not a server of this cluster",
                    link.source_name
                ),
                _ => continue,
            };
            if !self.lost.iter().any(|l| l.host == self.id(i)) {
                self.lost.push(Lost {
                    host: self.id(i).to_string(),
                    reason,
                });
            }
        }
    }
}

/// `MASTER_USE_GTID` for a MariaDB server that becomes a replica: `current_pos` when it
/// wrote transactions of its own (a former primary: its writes are not in gtid_slave_pos,
/// and slave_pos would ask for them again), `slave_pos` otherwise.
fn position_choice(flavor: Flavor, own_writes: bool) -> GtidPosition {
    match (flavor, own_writes) {
        (Flavor::Mysql, _) => GtidPosition::AutoPosition,
        (Flavor::Mariadb, true) => GtidPosition::CurrentPos,
        (Flavor::Mariadb, false) => GtidPosition::SlavePos,
    }
}

/// For each observed server (desired hosts, then undeclared), why it shares its identity
/// with another, if it does: the same `server_id`, or the same `server_uuid` (MySQL).
fn duplicate_identities(observed: &Observed) -> Vec<Option<String>> {
    use std::collections::HashMap;
    let servers: Vec<_> = observed.hosts.iter().chain(&observed.undeclared).collect();
    let mut by_id: HashMap<u32, Vec<usize>> = HashMap::new();
    let mut by_uuid: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, s) in servers.iter().enumerate() {
        if let Some(inf) = s.info() {
            by_id.entry(inf.server_id).or_default().push(i);
            if let Some(u) = inf.server_uuid.as_deref() {
                by_uuid.entry(u).or_default().push(i);
            }
        }
    }
    let mut out: Vec<Option<String>> = vec![None; servers.len()];
    let groups = by_id
        .iter()
        .map(|(id, v)| (format!("server_id {id}"), v))
        .chain(by_uuid.iter().map(|(u, v)| (format!("server_uuid {u}"), v)));
    for (what, members) in groups {
        if members.len() < 2 {
            continue;
        }
        let addresses: Vec<String> = members
            .iter()
            .map(|&m| servers[m].address.to_string())
            .collect();
        for &m in members {
            out[m] = Some(format!(
                "{} report the same {what}: a source refuses a replica with its own server_id (error 4052) and their GTIDs cannot be told apart; give each server its own identity, then plan again",
                addresses.join(" and ")
            ));
        }
    }
    out
}
