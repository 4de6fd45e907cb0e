//! Recovery plans: what `orch watch` and `orch failover` run when a source dies.
//!
//! Takes the desired topology (for promotion rules, delays and data centres), an
//! observation in which the dead server does not answer, and the policy; gives a [`Plan`]
//! in the step vocabulary, every step replayed on the step model as it is built (an
//! invariant broken is a bug: no plan), or the reason nothing can be done. Pure: no I/O.
//!
//! Dead primary: every replica of it stops its IO thread (nothing more arrives, and a
//! half-dead primary gets no acknowledgements from it), then applies its relay log. The
//! successor is the best promotable replica (`prefer` > `neutral` > `prefer_not`, never
//! `must_not`, delayed, errant, lagging beyond `max_lag`, without `log_bin` and
//! `log_slave_updates`, in another dc when `cross_dc: deny`, or newer than a replica it
//! will serve), the most advanced among equals. When a replica that cannot be promoted is
//! further ahead, the successor first replicates from it until it has everything, so
//! nothing that reached any replica is lost; when even that is impossible, the replicas
//! it would leave behind are named as lost before anything runs. Then the other replicas
//! move under the successor, and it is made writable last.
//!
//! Dead intermediate source: its replicas move under its own source.

use serde::{Deserialize, Serialize};

use super::build::placements;
use super::model::Model;
use super::{Desired, Lost, Observed, Plan};
use crate::gtid::GtidSet;
use crate::spec::policy::{CrossDc, ErrantGtid};
use crate::spec::{Policy, Promotion};
use crate::step::{Action, GtidPosition, Phase, Step};

/// One replica of the dead server, as the choice of a successor saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Considered {
    pub host: String,
    /// What it will have executed once it applied its relay log.
    pub position: String,
    /// `chosen`, `promotable`, or why not.
    pub verdict: String,
}

/// A candidate's position as people read it: an empty GTID set (a server that never
/// executed a transaction) says so rather than print nothing.
pub fn position_text(position: &str) -> &str {
    if position.is_empty() {
        "an empty GTID set"
    } else {
        position
    }
}

/// A recovery that can run.
#[derive(Clone, Debug, Serialize)]
pub struct Recovery {
    pub dead: String,
    /// The new primary (dead primary), or the new source of the orphans (intermediate).
    pub successor: String,
    /// The more advanced replica the successor catches up from first.
    pub catch_up_from: Option<String>,
    pub considered: Vec<Considered>,
    pub plan: Plan,
}

/// Why nothing is done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NoRecovery {
    pub reason: String,
    pub considered: Vec<Considered>,
}

impl std::fmt::Display for NoRecovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// A server an attempt of a failover showed it cannot count on (its applier never caught
/// up, or it could not pass on what it had), and why: the next attempt of the same
/// failover chooses without it instead of repeating a plan that cannot succeed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excluded {
    pub host: String,
    pub why: String,
}

/// Whom the failure of step `n` (index into the plan, `error` its message) of a failover
/// excludes from the next attempt: the successor or the replica it catches up from, when
/// the step was theirs (it did not apply what it received in time, did not stop, stopped
/// answering), or the catch-up source the successor could not reach. None when the step
/// was on another server or the successor was already reset (nothing to choose again).
pub fn excluded_by(recovery: &Recovery, n: usize, error: &str) -> Option<Excluded> {
    let steps = &recovery.plan.steps;
    let step = steps.get(n)?;
    let reset = steps[..n]
        .iter()
        .any(|s| s.host == recovery.successor && matches!(s.action, Action::ResetReplication));
    let what = format!(
        "step {} ({}) failed: {error}",
        step.number,
        step.action.describe()
    );
    match &step.action {
        Action::WaitForGtid { until, .. }
            if step.host == recovery.successor
                && recovery.catch_up_from.as_deref() == Some(until.as_str()) =>
        {
            Some(Excluded {
                host: until.clone(),
                why: format!("{} could not catch up from it: {what}", recovery.successor),
            })
        }
        _ if step.host == recovery.successor && !reset => Some(Excluded {
            host: step.host.clone(),
            why: what,
        }),
        _ if recovery.catch_up_from.as_deref() == Some(step.host.as_str()) && !reset => {
            Some(Excluded {
                host: step.host.clone(),
                why: what,
            })
        }
        _ => None,
    }
}

/// Steps replayed on the model as they are emitted.
struct Emitter {
    m: Model,
    steps: Vec<Step>,
    bug: Option<String>,
    /// The replica whose move the steps emitted now belong to (see [`Step::detachable`]).
    group: Option<String>,
}

impl Emitter {
    fn emit(&mut self, i: usize, action: Action, why: String) {
        super::build::emit(
            &mut self.m,
            &mut self.steps,
            &mut self.bug,
            Phase::Failover,
            i,
            action,
            why,
        );
        if let Some(step) = self.steps.last_mut() {
            step.detachable = self.group.clone();
        }
    }

    /// `CHANGE MASTER TO` `to`, GTID-positioned (the server replicates: slave_pos), with
    /// `delay_secs` of `MASTER_DELAY`.
    fn change_source(&mut self, r: usize, to: usize, why: String, delay_secs: u32) {
        let flavor = self.m.live(r).map(|l| l.flavor).expect("reachable");
        let action = Action::ChangeSource {
            source: self.id(to),
            source_address: self.m.nodes[to].address.clone(),
            gtid_position: if flavor == crate::gtid::Flavor::Mysql {
                GtidPosition::AutoPosition
            } else {
                GtidPosition::SlavePos
            },
            delay_secs,
            with_credentials: false,
        };
        self.emit(r, action, why);
    }

    fn id(&self, i: usize) -> String {
        self.m.nodes[i].id.clone()
    }

    /// `r` moves under `to` (which has everything `r` has, or waits for it first), with
    /// `delay_secs` of `MASTER_DELAY`.
    fn move_under(&mut self, r: usize, to: usize, why: String, wait_secs: u64, delay_secs: u32) {
        let (rid, tid) = (self.id(r), self.id(to));
        self.emit(
            r,
            Action::StopReplication,
            format!("{rid} stops before it changes source"),
        );
        if !self.m.contains(to, r) {
            self.emit(
                to,
                Action::WaitForGtid {
                    until: rid.clone(),
                    until_address: self.m.nodes[r].address.clone(),
                    timeout_secs: wait_secs,
                },
                format!(
                    "{tid} must have everything {rid} has executed before {rid} replicates from it"
                ),
            );
        }
        self.change_source(r, to, why, delay_secs);
        self.emit(
            r,
            Action::StartReplication,
            format!("{rid} replicates from {tid}"),
        );
    }

    fn finish(self, desired: &Desired, observed: &Observed) -> Result<Plan, String> {
        if let Some(bug) = self.bug {
            return Err(bug);
        }
        prove_detachable(&self.steps, desired, observed)?;
        let before = placements(&Model::of(desired, observed));
        Ok(Plan {
            schema: super::SCHEMA,
            cluster: desired.cluster.clone(),
            fingerprint: super::fingerprint(observed),
            files: Vec::new(),
            after: placements(&self.m),
            steps: self.steps,
            blocked: Vec::new(),
            lost: Vec::new(),
            warnings: Vec::new(),
            before,
        })
    }
}

/// The proof of a plan's detachable steps: for each replica whose steps may fail without
/// stopping the run, the plan replayed with that replica's steps cut short after each of
/// them (none run, the first, the first two, ...) still keeps every invariant: the others
/// never depended on it.
fn prove_detachable(steps: &[Step], desired: &Desired, observed: &Observed) -> Result<(), String> {
    let mut groups: Vec<&str> = steps
        .iter()
        .filter_map(|s| s.detachable.as_deref())
        .collect();
    groups.sort_unstable();
    groups.dedup();
    for g in groups {
        let members = steps
            .iter()
            .filter(|s| s.detachable.as_deref() == Some(g))
            .count();
        for kept in 0..members {
            let mut m = Model::of(desired, observed);
            let mut seen = 0;
            for s in steps {
                if s.detachable.as_deref() == Some(g) {
                    seen += 1;
                    if seen > kept {
                        continue;
                    }
                }
                let i = m
                    .find(&s.host)
                    .ok_or_else(|| format!("step {} names no server", s.number))?;
                m.apply(i, &s.action).map_err(|e| {
                    format!(
                        "with {g} left behind after {kept} of its steps, step {} on {}: {e}",
                        s.number, s.host
                    )
                })?;
            }
        }
    }
    Ok(())
}

fn rank(p: Promotion) -> u8 {
    match p {
        Promotion::Prefer => 0,
        Promotion::Neutral => 1,
        Promotion::PreferNot => 2,
        Promotion::MustNot => 3,
    }
}

/// The reachable declared servers replicating from `dead`.
fn orphans(m: &Model, declared: usize, dead: usize) -> Vec<usize> {
    (0..declared)
        .filter(|&i| m.live(i).is_some() && m.source(i) == Some(dead))
        .collect()
}

/// What `i` will have executed once it applied what it received.
fn eventual(m: &Model, i: usize) -> Option<GtidSet> {
    let live = m.live(i)?;
    match (&live.position, &live.received) {
        (Some(p), Some(r)) => p.merged(r).ok(),
        (Some(p), None) => Some(p.clone()),
        _ => None,
    }
}

fn show(p: &Option<GtidSet>) -> String {
    match p {
        None => "?".into(),
        Some(p) if p.is_empty() => "(empty)".into(),
        Some(p) => p.to_string(),
    }
}

fn covers(a: &Option<GtidSet>, b: &Option<GtidSet>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.contains(b).unwrap_or(false),
        _ => false,
    }
}

/// Who may succeed a dead primary.
#[derive(Clone, Copy)]
enum Choice<'a> {
    /// The best promotable replica.
    Best,
    /// Only this one (`orch failover --to`).
    Forced(&'a str),
    /// This one, chosen by an interrupted failover that may already have reset it or moved
    /// replicas under it: only the steps not yet done are planned.
    Committed(&'a str),
}

impl<'a> Choice<'a> {
    fn only(self) -> Option<&'a str> {
        match self {
            Choice::Best => None,
            Choice::Forced(c) | Choice::Committed(c) => Some(c),
        }
    }
}

/// The recovery of the dead primary `dead` (a declared host); `to` forces the successor.
pub fn dead_primary(
    desired: &Desired,
    observed: &Observed,
    policy: &Policy,
    dead: usize,
    to: Option<&str>,
) -> Result<Recovery, NoRecovery> {
    failover(
        desired,
        observed,
        policy,
        dead,
        to.map_or(Choice::Best, Choice::Forced),
        &[],
    )
}

/// The rest of a failover of `dead` to `successor` that was interrupted (its leader died,
/// or a step failed), planned from what the servers say now. While the successor still
/// replicates from the dead primary nothing irreversible was done: the same successor if
/// it still qualifies, else a new choice. Once it was reset or caught up elsewhere it is
/// the only successor: its replicas and the replicas still under the dead primary follow
/// it, and it is made writable if it is not yet. No steps: the failover had completed.
pub fn resume_failover(
    desired: &Desired,
    observed: &Observed,
    policy: &Policy,
    dead: usize,
    successor: &str,
    excluded: &[Excluded],
) -> Result<Recovery, NoRecovery> {
    let refused = |reason: String| NoRecovery {
        reason,
        considered: Vec::new(),
    };
    let Some(c) = desired.hosts.iter().position(|h| h.id == successor) else {
        return Err(refused(format!(
            "{successor}, the successor of the interrupted failover, is no longer in the file: `orch failover` decides"
        )));
    };
    let m = Model::of(desired, observed);
    if m.live(c).is_none() {
        return Err(refused(format!(
            "{successor}, the successor of the interrupted failover, does not answer: `orch failover` decides"
        )));
    }
    if m.link(c).is_none() && m.live(c).is_some_and(|l| !l.read_only) {
        // Promoted: the last step was done. Nothing more (a replica it left behind as
        // lost stays where it is).
        let dead_id = desired.hosts[dead].id.clone();
        let e = Emitter {
            m,
            steps: Vec::new(),
            bug: None,
            group: None,
        };
        let plan = e.finish(desired, observed).map_err(refused)?;
        return Ok(Recovery {
            dead: dead_id,
            successor: successor.to_string(),
            catch_up_from: None,
            considered: Vec::new(),
            plan,
        });
    }
    if m.source(c) == Some(dead) {
        // Nothing irreversible yet: the same successor unless an attempt excluded it.
        return failover(
            desired,
            observed,
            policy,
            dead,
            Choice::Forced(successor),
            excluded,
        )
        .or_else(|_| failover(desired, observed, policy, dead, Choice::Best, excluded));
    }
    failover(
        desired,
        observed,
        policy,
        dead,
        Choice::Committed(successor),
        excluded,
    )
}

fn failover(
    desired: &Desired,
    observed: &Observed,
    policy: &Policy,
    dead: usize,
    choice: Choice,
    excluded: &[Excluded],
) -> Result<Recovery, NoRecovery> {
    let m = Model::of(desired, observed);
    let declared = desired.hosts.len();
    let dead_id = desired.hosts[dead].id.clone();
    let mut replicas = orphans(&m, declared, dead);
    // A committed successor no longer under the dead primary is still a candidate: the
    // only one.
    let committed = match choice {
        Choice::Committed(id) => desired.hosts.iter().position(|h| h.id == id),
        _ => None,
    };
    if let Some(c) = committed
        && m.live(c).is_some()
        && !replicas.contains(&c)
    {
        replicas.push(c);
        replicas.sort_unstable();
    }
    let to = choice.only();
    if replicas.is_empty() {
        return Err(NoRecovery {
            reason: format!("{dead_id} has no reachable replica to promote"),
            considered: Vec::new(),
        });
    }
    // A primary that still answers (forced) is fenced and waited for first: every running
    // replica will then have everything it has.
    let live_primary = m.live(dead).and_then(|l| l.position.clone());
    let positions: Vec<Option<GtidSet>> = replicas
        .iter()
        .map(|&r| {
            let mine = eventual(&m, r);
            let running = m
                .link(r)
                .is_some_and(|l| l.state == super::model::LinkState::Running);
            match (&mine, &live_primary) {
                (Some(p), Some(theirs)) if running => p.merged(theirs).ok(),
                _ => mine,
            }
        })
        .collect();
    let errant = errant_among_replicas(&m, &replicas);
    // The delay each server keeps: the file's, or the one it has that the file does not
    // declare (reported, never erased by a recovery).
    let delays: Vec<u32> = (0..declared)
        .map(|r| {
            m.link(r)
                .map_or(0, |l| l.delay)
                .max(desired.hosts[r].delay_secs)
        })
        .collect();
    let delay = |r: usize| delays[r];
    // Why its applier will not apply what it received: only when something is left to
    // apply (a stopped SQL thread with nothing pending, as an interrupted failover leaves
    // its servers, is no obstacle).
    let stuck: Vec<Option<String>> = (0..declared)
        .map(|r| {
            let live = m.live(r)?;
            let pending = !covers(&live.position, &eventual(&m, r));
            live.applier_down.clone().filter(|_| pending)
        })
        .collect();
    let exclusion = |r: usize| {
        excluded
            .iter()
            .find(|x| x.host == desired.hosts[r].id)
            .map(|x| x.why.clone())
    };
    // Can it pass on what it received, now: applying, not delayed, not filtered, with the
    // binary log that serves replicas, not excluded by an attempt that failed.
    let provides = |k: usize| {
        let r = replicas[k];
        let live = m.live(r).expect("reachable");
        errant[k].is_none()
            && stuck[r].is_none()
            && delay(r) == 0
            && live.filters.is_empty()
            && live.log_bin
            && live.log_replica_updates
            && exclusion(r).is_none()
    };
    // The most advanced replica that can pass on what it received: it has what every
    // other such replica has.
    let clean: Vec<usize> = (0..replicas.len()).filter(|&k| provides(k)).collect();
    let ahead = clean
        .iter()
        .copied()
        .find(|&k| clean.iter().all(|&o| covers(&positions[k], &positions[o])));
    let wait = policy.failover.promote.wait_relay_log.as_secs().max(1);
    let max_lag = policy.failover.promote.max_lag.as_secs();
    let dead_dc = desired.hosts[dead].dc.clone();
    let why_not = |k: usize| -> Option<String> {
        let r = replicas[k];
        let h = &desired.hosts[r];
        let live = m.live(r).expect("reachable");
        let link = live.link.as_ref();
        if let Some(to) = to
            && h.id != to
        {
            return Some(match choice {
                Choice::Committed(_) => format!("not {to} (the interrupted failover's successor)"),
                _ => format!("not {to} (--to)"),
            });
        }
        if committed == Some(r) {
            // Chosen and checked by the interrupted failover; it may already be reset.
            return None;
        }
        if let Some(why) = exclusion(r) {
            return Some(format!("an earlier attempt of this failover: {why}"));
        }
        if h.promotion == Promotion::MustNot {
            return Some("promotion: must_not".into());
        }
        if delay(r) > 0 {
            return Some("a delayed replica: it never applies what it received in time".into());
        }
        if let Some(why) = &stuck[r] {
            return Some(why.clone());
        }
        if !live.filters.is_empty() {
            return Some(format!(
                "replication filters ({}): it may lack whole schemas the others have",
                live.filters.join(", ")
            ));
        }
        if !live.log_bin || !live.log_replica_updates {
            return Some(
                "log_bin or log_slave_updates is off: it could not serve the others".into(),
            );
        }
        if let Some(e) = &errant[k]
            && policy.failover.promote.errant_gtid == ErrantGtid::Exclude
        {
            return Some(e.clone());
        }
        if let Some(lag) = link.and_then(|l| l.seconds_behind)
            && lag > max_lag
        {
            return Some(format!("{lag}s behind (policy max_lag {max_lag}s)"));
        }
        if policy.failover.promote.cross_dc == CrossDc::Deny && dead_dc.is_some() && h.dc != dead_dc
        {
            return Some(format!(
                "in dc {} while the primary was in {} (cross_dc: deny)",
                h.dc.as_deref().unwrap_or("?"),
                dead_dc.as_deref().unwrap_or("?")
            ));
        }
        if let Some(&o) = replicas
            .iter()
            .find(|&&o| o != r && m.live(o).is_some_and(|lo| lo.release < live.release))
        {
            return Some(format!(
                "runs a newer version than {}, which it would serve",
                desired.hosts[o].id
            ));
        }
        if positions[k].is_none() {
            return Some("its GTID position could not be read".into());
        }
        None
    };
    let verdicts: Vec<Option<String>> = (0..replicas.len()).map(why_not).collect();
    let mut promotable: Vec<usize> = (0..replicas.len())
        .filter(|&k| verdicts[k].is_none())
        .collect();
    promotable.sort_by_key(|&k| {
        let h = &desired.hosts[replicas[k]];
        (
            rank(h.promotion),
            ahead.is_none_or(|a| !covers(&positions[k], &positions[a])),
            h.dc != dead_dc,
            h.id.clone(),
        )
    });
    let considered = |chosen: Option<usize>| -> Vec<Considered> {
        (0..replicas.len())
            .map(|k| Considered {
                host: desired.hosts[replicas[k]].id.clone(),
                position: positions[k].as_ref().map_or("?".into(), |p| p.to_string()),
                verdict: match (&verdicts[k], Some(k) == chosen) {
                    (_, true) => "chosen".into(),
                    (None, false) => "promotable".into(),
                    (Some(why), false) => why.clone(),
                },
            })
            .collect()
    };
    let Some(&ck) = promotable.first() else {
        return Err(NoRecovery {
            reason: format!("no replica of {dead_id} can be promoted"),
            considered: considered(None),
        });
    };
    let c = replicas[ck];
    // Catch up first from a more advanced replica that is not the successor.
    let catch_up = ahead
        .filter(|&a| replicas[a] != c && !covers(&positions[ck], &positions[a]))
        .filter(|&a| m.can_serve(replicas[a], c).is_ok());
    let mut e = Emitter {
        m,
        steps: Vec::new(),
        bug: None,
        group: None,
    };
    let cid = e.id(c);
    if e.m.live(dead).is_some() {
        // A primary that still answers (`orch failover --force`): fenced first, then every
        // replica takes what it has (bounded), so the forced failover loses nothing it
        // can reach.
        e.emit(
            dead,
            Action::Fence { kill_writers: true },
            format!("forced failover: {dead_id} still answers; it takes no more writes"),
        );
        for &r in &replicas {
            let rid = e.id(r);
            if e.m
                .link(r)
                .is_some_and(|l| l.state == super::model::LinkState::Running)
            {
                e.emit(
                    r,
                    Action::WaitForGtid {
                        until: dead_id.clone(),
                        until_address: desired.hosts[dead].address.clone(),
                        timeout_secs: wait,
                    },
                    format!("{rid} takes everything the fenced {dead_id} has"),
                );
            }
        }
    }
    // The successor and the replica it catches up from are waited for; nobody else is:
    // one replica that cannot apply (delayed, stopped, blocked on a lock) must not keep
    // the cluster without a primary.
    let needed: Vec<usize> = std::iter::once(c)
        .chain(catch_up.map(|a| replicas[a]))
        .collect();
    // A committed successor already reset has nothing to stop or apply.
    let replicating: Vec<usize> = replicas
        .iter()
        .copied()
        .filter(|&r| e.m.link(r).is_some())
        .collect();
    for &r in &replicating {
        if e.m.live(r).is_some_and(|l| l.ceiling.is_some()) {
            // Already receives nothing (watch stops them before it decides).
            continue;
        }
        let rid = e.id(r);
        e.group = (!needed.contains(&r)).then(|| rid.clone());
        e.emit(
            r,
            Action::StopIo,
            format!("stop receiving from the dead primary {dead_id} (a half-dead primary gets no acknowledgements)"),
        );
    }
    e.group = None;
    for &r in needed.iter().rev() {
        if e.m.link(r).is_none() {
            continue;
        }
        let rid = e.id(r);
        e.emit(
            r,
            Action::WaitRelayLog { timeout_secs: wait },
            format!("{rid} applies what it received before it passes it on"),
        );
    }
    let mut final_position = positions[ck].clone();
    if let Some(a) = catch_up {
        let x = replicas[a];
        let xid = e.id(x);
        e.emit(
            c,
            Action::StopReplication,
            format!("{cid} stops before it catches up from {xid}"),
        );
        e.change_source(
            c,
            x,
            format!("{xid} is further ahead but cannot be promoted: {cid} first takes what only {xid} has"),
            0,
        );
        e.emit(
            c,
            Action::StartReplication,
            format!("{cid} replicates from {xid}"),
        );
        e.emit(
            c,
            Action::WaitForGtid {
                until: xid.clone(),
                until_address: e.m.nodes[x].address.clone(),
                timeout_secs: wait,
            },
            format!("{cid} has everything {xid} has: nothing that reached a replica is lost"),
        );
        final_position = positions[a].clone();
    }
    // The successor stops and forgets its source before the others (the replica it caught
    // up from among them) move under it.
    if e.m.link(c).is_some() {
        e.emit(
            c,
            Action::StopReplication,
            format!("{cid} stops replicating"),
        );
        e.emit(
            c,
            Action::ResetReplication,
            format!("{cid} forgets its source (it stays read_only until the end)"),
        );
    }
    // The others follow the successor, each on its own (a failure leaves that one behind):
    // those with transactions it will never have stay where they are and are named.
    let mut lost = Vec::new();
    let mut warnings = Vec::new();
    for (k, &r) in replicas.iter().enumerate() {
        if r == c {
            continue;
        }
        let rid = e.id(r);
        let executed = e.m.live(r).and_then(|l| l.position.clone());
        let lose = |reason: String| Lost {
            host: rid.clone(),
            reason,
        };
        if let Some(why) = &errant[k] {
            lost.push(lose(format!(
                "{rid} {why}; {cid} lacks them: it is left stopped"
            )));
            continue;
        }
        let d = delay(r);
        // A delayed replica's SQL thread applies nothing recent within the failover: what
        // it executed is what it has (the apply engine checks it again before it moves).
        let has = if d > 0 {
            executed
        } else {
            positions[k].clone()
        };
        if !covers(&final_position, &has) {
            lost.push(lose(match &stuck[r] {
                Some(why) => format!(
                    "{rid} received transactions {cid} cannot get, and {why}: it is left where it is, its relay log kept"
                ),
                None => format!(
                    "{rid} has transactions {cid} cannot get (it cannot serve them): it is left stopped"
                ),
            }));
            continue;
        }
        if d > 0 && !covers(&final_position, &positions[k]) {
            warnings.push(super::Warning {
                code: "delayed-relay-log-discarded".into(),
                host: rid.clone(),
                message: format!(
                    "{rid}'s relay log holds transactions of the dead {dead_id} that {cid} never received ({} beyond {}): nobody that answers applied them; they are discarded when {rid} follows {cid}",
                    show(&positions[k]),
                    show(&final_position)
                ),
            });
        }
        if d > 0 && desired.hosts[r].delay_secs == 0 {
            warnings.push(super::Warning {
                code: "undeclared-delay".into(),
                host: rid.clone(),
                message: format!(
                    "{rid} replicates with MASTER_DELAY {d}s, which the file does not declare: it keeps it under {cid}; declare `delay:` (or remove it with `orch plan`)"
                ),
            });
        }
        e.group = Some(rid.clone());
        let why = format!("{rid} follows the new primary {cid}");
        match &stuck[r] {
            None => e.move_under(r, c, why, wait, d),
            Some(down) => {
                // Moved with no gap, but not started: a person fixes its applier first.
                e.emit(
                    r,
                    Action::StopReplication,
                    format!("{rid} stops before it changes source"),
                );
                e.change_source(r, c, why, d);
                lost.push(lose(format!(
                    "{rid} {down}: it is moved under {cid} but left stopped; start it once its applier is fixed"
                )));
            }
        }
        e.group = None;
    }
    // Replicas an interrupted failover moved under the successor but did not restart.
    let idle: Vec<usize> = (0..declared)
        .filter(|&r| {
            committed.is_some()
                && e.m.source(r) == Some(c)
                && stuck.get(r).is_none_or(|s| s.is_none())
                && e.m.link(r).is_some_and(|l| {
                    matches!(
                        l.state,
                        super::model::LinkState::Stopped
                            | super::model::LinkState::Broken { sql: false, .. }
                    )
                })
        })
        .collect();
    for r in idle {
        let why = format!("{} replicates from the new primary {cid}", e.id(r));
        e.group = Some(e.id(r));
        e.emit(r, Action::StartReplication, why);
        e.group = None;
    }
    if committed.is_none() || e.m.live(c).is_some_and(|l| l.read_only) {
        e.emit(
            c,
            Action::Promote,
            format!("{cid} is the new primary: writable last, when everything else is in place"),
        );
    }
    let catch_up_from = catch_up.map(|a| desired.hosts[replicas[a]].id.clone());
    let considered = considered(Some(ck));
    let mut plan = e.finish(desired, observed).map_err(|bug| NoRecovery {
        reason: format!(
            "internal error: the recovery failed its proof ({bug}); nothing was changed"
        ),
        considered: considered.clone(),
    })?;
    plan.lost = lost;
    plan.warnings = warnings;
    Ok(Recovery {
        dead: dead_id,
        successor: desired.hosts[c].id.clone(),
        catch_up_from,
        considered,
        plan,
    })
}

/// For each replica of a dead primary, its errant transactions: why it has transactions
/// that no other of them has and that did not come from the dead primary (whose server_id
/// they saw), or None.
///
/// MariaDB keeps one position per domain in `gtid_current_pos`, so a write made directly
/// on a replica hides behind the next replicated one; `gtid_binlog_state` keeps the last
/// GTID of every (domain, server_id) stream, so the streams are compared one by one with
/// the other replicas'. A stream of the dead primary is never errant (a replica ahead in
/// it is only more advanced). Where no other replica can be compared with (the only one,
/// or none of the others keeps its replicated transactions in its binary log), a replica
/// whose own writes are its latest position (`own_writes`) is errant, as on MySQL, where
/// the executed sets are compared by the model.
fn errant_among_replicas(m: &Model, replicas: &[usize]) -> Vec<Option<String>> {
    use crate::gtid::ServerGtids;
    let mariadb = |r: usize| match m.live(r).and_then(|l| l.gtids.as_ref()) {
        Some(ServerGtids::Mariadb(g)) => Some(g.clone()),
        _ => None,
    };
    // The dead primary's server_id, as most of its replicas last saw it.
    let mut seen: Vec<u32> = replicas
        .iter()
        .filter_map(|&r| m.link(r).map(|l| l.source_server_id))
        .filter(|&id| id != 0)
        .collect();
    seen.sort_unstable();
    let dead_id = seen
        .chunk_by(|a, b| a == b)
        .max_by_key(|run| run.len())
        .map(|run| run[0]);
    let comparable: Vec<usize> = replicas
        .iter()
        .copied()
        .filter(|&r| {
            m.live(r)
                .is_some_and(|l| l.log_bin && l.log_replica_updates)
        })
        .filter(|&r| mariadb(r).is_some())
        .collect();
    replicas
        .iter()
        .map(|&r| {
            let own = m.live(r).is_some_and(|l| l.own_writes);
            let peers: Vec<_> = comparable
                .iter()
                .filter(|&&o| o != r)
                .filter_map(|&o| mariadb(o))
                .collect();
            let Some(mine) = mariadb(r).filter(|_| !peers.is_empty()) else {
                return own.then(|| {
                    "has transactions of its own (errant) that the primary never had".to_string()
                });
            };
            let errant: Vec<String> = mine
                .binlog_state
                .iter()
                .filter(|g| Some(g.server_id) != dead_id)
                .filter(|g| {
                    !peers.iter().any(|p| {
                        let shared = p.binlog_state.get(g.domain_id, g.server_id);
                        // Without the dead primary's identity, a stream another replica
                        // has at all is one they share.
                        shared.is_some_and(|n| n >= g.seq_no || dead_id.is_none())
                            || p.current_pos.get(g.domain_id).is_some_and(|c| {
                                c.server_id == g.server_id && c.seq_no >= g.seq_no
                            })
                    })
                })
                .map(|g| g.to_string())
                .collect();
            (!errant.is_empty()).then(|| {
                format!(
                    "has transactions no other replica of the dead primary has, written on it or received from elsewhere (errant; the last of each stream: {})",
                    errant.join(", ")
                )
            })
        })
        .collect()
}

/// The recovery of a dead intermediate source `dead`: its replicas move under its own
/// source. The primary is never touched.
pub fn dead_intermediate(
    desired: &Desired,
    observed: &Observed,
    policy: &Policy,
    dead: usize,
) -> Result<Recovery, NoRecovery> {
    let m = Model::of(desired, observed);
    let dead_id = desired.hosts[dead].id.clone();
    let replicas = orphans(&m, desired.hosts.len(), dead);
    // Its source as the file says (a dead server shows none): the closest answering one.
    let mut up = desired.hosts[dead]
        .source
        .as_deref()
        .and_then(|s| m.find(s));
    while let Some(u) = up.filter(|&u| m.live(u).is_none()) {
        up = desired.hosts[u].source.as_deref().and_then(|s| m.find(s));
    }
    // A former primary has no source of its own: the replicas a failover left behind
    // under it (stuck, locked, errant) follow the primary, once they can.
    let up = up.or(m.primary.filter(|&p| p != dead && m.live(p).is_some()));
    let Some(up) = up else {
        return Err(NoRecovery {
            reason: format!("{dead_id}'s own source is not known to be alive"),
            considered: Vec::new(),
        });
    };
    if replicas.is_empty() {
        return Err(NoRecovery {
            reason: format!("{dead_id} has no reachable replica"),
            considered: Vec::new(),
        });
    }
    let wait = policy.failover.promote.wait_relay_log.as_secs().max(1);
    let mut e = Emitter {
        m,
        steps: Vec::new(),
        bug: None,
        group: None,
    };
    let upid = e.id(up);
    let mut considered = Vec::new();
    let mut lost = Vec::new();
    for &r in &replicas {
        let rid = e.id(r);
        let position = eventual(&e.m, r);
        // What `up` cannot be shown to have (errant writes, or more than it has while it
        // takes writes itself) stays where it is, named: never moved with a gap.
        let behind = e.m.live(r).is_some_and(|l| l.errant)
            || (e.m.primary == Some(up)
                && !covers(&e.m.live(up).and_then(|l| l.position.clone()), &position));
        if behind {
            let why = format!(
                "{rid} has transactions {upid} lacks: it stays under {dead_id}; compare them and re-seed {rid} (or move it by hand)"
            );
            considered.push(Considered {
                host: rid.clone(),
                position: show(&position),
                verdict: why.clone(),
            });
            lost.push(Lost {
                host: rid.clone(),
                reason: why,
            });
            continue;
        }
        considered.push(Considered {
            host: rid.clone(),
            position: show(&position),
            verdict: format!("moves under {upid}"),
        });
        let delay =
            e.m.link(r)
                .map_or(0, |l| l.delay)
                .max(desired.hosts[r].delay_secs);
        e.group = Some(rid.clone());
        e.move_under(
            r,
            up,
            format!("its source {dead_id} is dead: {rid} follows {dead_id}'s source {upid}"),
            wait,
            delay,
        );
        e.group = None;
    }
    if lost.len() == replicas.len() {
        return Err(NoRecovery {
            reason: format!("no replica of {dead_id} can follow {upid} without a gap"),
            considered,
        });
    }
    let mut plan = e.finish(desired, observed).map_err(|bug| NoRecovery {
        reason: format!(
            "internal error: the recovery failed its proof ({bug}); nothing was changed"
        ),
        considered: considered.clone(),
    })?;
    plan.lost = lost;
    Ok(Recovery {
        dead: dead_id,
        successor: upid,
        catch_up_from: None,
        considered,
        plan,
    })
}

#[cfg(test)]
#[path = "recover_tests.rs"]
mod tests;
