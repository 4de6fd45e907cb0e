//! The snapshot: one observation of a cluster (every declared server, the undeclared
//! replicas found through them) with the problems classified from it.
//!
//! Takes observed [`ServerState`]s, the topology they were observed for and the primary
//! orch holds (the file's, or the one a failover made), gives a [`Snapshot`] value: what
//! `orch status --format json` prints, what `orch plan --observed` reads back, what apply
//! and watch observe each time, and what the watcher's API, page and metrics show. Pure:
//! the observation itself is the executor's job.
//!
//! After a failover the file still names the former primary until someone edits it. Judged
//! against the file as written, a healthy failed-over cluster would look broken everywhere
//! (a dead primary, a writable replica, every replica on the wrong source) and alerts on
//! those would fire forever. So the one judgement here reads the file as if it named the
//! recorded primary, and says the difference once, as `failover-drift`. Every view calls
//! [`Snapshot::new`]; none judges on its own.

use anyhow::bail;
use serde::{Deserialize, Serialize};

use super::classify::{Problem, ProblemCode, classify};
use super::{Reach, ServerState, Unreachable};
use crate::spec::{Policy, Topology};
use crate::topology::Address;

/// The observed topology and its problems; `--format json` prints exactly this, and
/// `plan --observed` reads it back. Field names are stable.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    /// Version of this schema.
    pub schema: u32,
    pub cluster: String,
    pub hosts: Vec<ObservedHost>,
    /// Servers replicating from the cluster that the file does not declare, found through
    /// `SHOW SLAVE HOSTS` (they need `report_host` and `report_port`) and observed too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undeclared: Vec<ServerState>,
    pub problems: Vec<Problem>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObservedHost {
    /// The host id in the topology file.
    pub id: String,
    /// The source the file declares (None: the primary).
    pub desired_source: Option<String>,
    #[serde(flatten)]
    pub state: ServerState,
}

impl Snapshot {
    /// The snapshot of `states` (one per host of `t`, in file order) and the undeclared
    /// servers observed beside them, classified against `t` and `policy`, with `primary`
    /// the primary orch holds (recorded after a failover; None, or the file's own: the
    /// file as written). When a failover moved it, the hosts' desired sources and every
    /// problem are those of the file read as if it named `primary`
    /// ([`as_if_primary`]), and a `failover-drift` problem names the file's primary.
    pub fn new(
        t: &Topology,
        policy: &Policy,
        primary: Option<&str>,
        states: Vec<ServerState>,
        undeclared: Vec<ServerState>,
    ) -> Snapshot {
        let file_primary = t.hosts.iter().find(|h| h.source.is_none()).map(|h| &h.id);
        // A recorded primary the file no longer declares (the file changed since) cannot
        // be judged against: the file as written is all there is.
        let moved = primary.filter(|p| {
            Some(*p) != file_primary.map(String::as_str) && t.hosts.iter().any(|h| h.id == *p)
        });
        let judged = moved.map(|live| as_if_primary(t, live));
        let t = judged.as_ref().unwrap_or(t);
        let mut problems = classify(t, policy, &states);
        if let (Some(live), Some(was)) = (moved, file_primary) {
            problems.push(Problem {
                code: ProblemCode::FailoverDrift,
                severity: ProblemCode::FailoverDrift.severity(),
                host: was.clone(),
                message: format!(
                    "the file names {was} as the primary, but orch failed over to {live} (orch history): shown as if the file named {live}; update the file"
                ),
            });
        }
        // Replicas of servers the file does not name (a removed intermediate's own).
        for u in &undeclared {
            for r in u.info().map_or(&[][..], |i| &i.replicas[..]) {
                let Some(port) = r.port else { continue };
                let at = format!("{}:{port}", r.host);
                if problems.iter().any(|p| p.host == at) {
                    continue;
                }
                problems.push(Problem {
                    code: ProblemCode::UnknownReplica,
                    severity: ProblemCode::UnknownReplica.severity(),
                    host: at,
                    message: format!(
                        "replicates from {}, which is not in the file either",
                        u.address
                    ),
                });
            }
        }
        problems.sort_by(|a, b| (a.severity, &a.host, a.code).cmp(&(b.severity, &b.host, b.code)));
        let hosts = t
            .hosts
            .iter()
            .zip(states)
            .map(|(h, state)| ObservedHost {
                id: h.id.clone(),
                desired_source: h.source.as_ref().map(|s| s.value.clone()),
                state,
            })
            .collect();
        Snapshot {
            schema: 1,
            cluster: t.cluster.clone(),
            hosts,
            undeclared,
            problems,
        }
    }

    /// This snapshot judged again, against `primary` (see [`Snapshot::new`]): for a
    /// watcher that learnt of a new primary from the very observation it made.
    pub fn judged_against(self, t: &Topology, policy: &Policy, primary: Option<&str>) -> Snapshot {
        let states = self.hosts.into_iter().map(|h| h.state).collect();
        Snapshot::new(t, policy, primary, states, self.undeclared)
    }

    /// 0 healthy, 2 problems found.
    pub fn exit_code(&self) -> u8 {
        if self.problems.is_empty() { 0 } else { 2 }
    }

    /// Refuses a snapshot that says nothing: no server answered. Access denied everywhere
    /// is a credentials problem, said as such.
    pub fn check_usable(&self) -> anyhow::Result<()> {
        let reachable = self.hosts.iter().any(|h| h.state.info().is_some());
        if reachable {
            return Ok(());
        }
        let denied = self.hosts.iter().all(|h| {
            matches!(
                h.state.reach,
                Reach::Unreachable {
                    cause: Unreachable::AccessDenied,
                    ..
                }
            )
        });
        if denied {
            bail!(
                "every server of cluster {} refused orch's credentials (access denied): check credentials.user and the password it names",
                self.cluster
            );
        }
        let first: Vec<String> = self
            .hosts
            .iter()
            .take(3)
            .map(|h| match &h.state.reach {
                Reach::Unreachable { detail, .. } => {
                    format!("{} ({}): {detail}", h.id, h.state.address)
                }
                Reach::Reachable(_) => String::new(),
            })
            .collect();
        bail!(
            "no server of cluster {} is reachable: {}",
            self.cluster,
            first.join("; ")
        )
    }
}

/// The topology read as if it named `live` the primary: `live` has no source, and the
/// file's primary and its replicas replicate from `live` (the former primary rejoins as a
/// replica once someone re-seeds it; until then it is reported as not replicating, or
/// unreachable). The rest of the tree is as the file has it.
pub fn as_if_primary(t: &Topology, live: &str) -> Topology {
    let mut t = t.clone();
    let old = t
        .hosts
        .iter()
        .find(|h| h.source.is_none())
        .map(|h| (h.id.clone(), h.pos));
    for h in &mut t.hosts {
        if h.id == live {
            h.source = None;
        } else if let Some((old_id, pos)) = &old {
            let points_at_old = h.source.as_ref().is_some_and(|s| &s.value == old_id);
            if h.id == *old_id || points_at_old {
                h.source = Some(crate::spec::decode::Spanned {
                    value: live.to_string(),
                    pos: *pos,
                });
            }
        }
    }
    t
}

/// The replicas the observed servers report (with a port) at addresses the file does not
/// declare, sorted.
pub fn undeclared_replicas(declared: &[Address], states: &[ServerState]) -> Vec<Address> {
    let known: std::collections::HashSet<String> = declared.iter().map(|a| a.to_string()).collect();
    let mut extra: Vec<Address> = states
        .iter()
        .filter_map(ServerState::info)
        .flat_map(|inf| &inf.replicas)
        .filter_map(|r| Address::parse(&format!("{}:{}", r.host, r.port?)).ok())
        .filter(|a| !known.contains(&a.to_string()))
        .collect();
    extra.sort_by_key(|a| a.to_string());
    extra.dedup();
    extra
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::executor::sim::{Simulator, host_address};
    use crate::observe::classify::ProblemCode::{self, *};
    use crate::observe::classify::tests::topology;
    use crate::topology::Flavor;

    /// An `n`-server star (file: h0 the primary) failed over to h1 by hand, the way a
    /// recovery does: h0 killed, h1 promoted writable, the other replicas moved under it.
    pub(crate) fn failed_over(n: usize) -> Simulator {
        let sim = Simulator::star(n, Flavor::Mariadb);
        sim.write(host_address(0), 3).unwrap();
        sim.tick();
        sim.kill(host_address(0));
        for i in 1..n {
            sim.stop_replication(host_address(i));
        }
        sim.reset_replication(host_address(1));
        sim.set_read_only(host_address(1), false);
        for i in 2..n {
            sim.change_source(host_address(i), host_address(1));
            sim.start_replication(host_address(i));
        }
        sim.tick();
        sim
    }

    /// The snapshot of `sim` against the 4-star file, judged against `primary`: its
    /// problems as (code, host), sorted, and the desired sources it shows.
    fn judged(
        sim: &Simulator,
        primary: Option<&str>,
    ) -> (Vec<(ProblemCode, String)>, Vec<Option<String>>) {
        let t = topology(&[None, Some(0), Some(0), Some(0)]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let s = rt.block_on(crate::executor::observe_cluster(
            Arc::new(sim.clone()),
            &t,
            &Policy::default(),
            primary,
            8,
        ));
        let mut problems: Vec<_> = s.problems.into_iter().map(|p| (p.code, p.host)).collect();
        problems.sort();
        let sources = s.hosts.into_iter().map(|h| h.desired_source).collect();
        (problems, sources)
    }

    fn codes(list: &[(ProblemCode, &str)]) -> Vec<(ProblemCode, String)> {
        let mut v: Vec<_> = list.iter().map(|(c, h)| (*c, h.to_string())).collect();
        v.sort();
        v
    }

    #[test]
    fn a_failed_over_cluster_is_judged_against_the_recorded_primary() {
        let sim = failed_over(4);
        let (problems, sources) = judged(&sim, Some("h1"));
        // The drift, said once, and the former primary that is gone: nothing else.
        assert_eq!(
            problems,
            codes(&[(FailoverDrift, "h0"), (Unreachable, "h0")])
        );
        let h1 = Some("h1".to_string());
        assert_eq!(sources, vec![h1.clone(), None, h1.clone(), h1]);
    }

    #[test]
    fn the_file_as_written_is_judged_without_a_recorded_primary() {
        let sim = failed_over(4);
        // What every view showed before: a dead primary, a writable replica, replicas on
        // the wrong source. Only a view that knows no failover may judge so.
        let as_written = codes(&[
            (DeadPrimary, "h0"),
            (NotReplicating, "h1"),
            (WritableReplica, "h1"),
            (WrongSource, "h2"),
            (WrongSource, "h3"),
        ]);
        for primary in [None, Some("h0"), Some("not-declared")] {
            let (problems, _) = judged(&sim, primary);
            assert_eq!(problems, as_written, "{primary:?}");
        }
    }

    #[test]
    fn a_returning_former_primary_is_judged_against_the_recorded_primary() {
        let sim = failed_over(4);
        // It restarts, fenced (read_only) by the watcher, with no replication configured.
        sim.restart(host_address(0));
        sim.set_read_only(host_address(0), true);
        sim.tick();
        let (problems, _) = judged(&sim, Some("h1"));
        assert!(
            !problems
                .iter()
                .any(|(c, _)| matches!(c, DeadPrimary | MultipleWritable | WritableReplica)),
            "{problems:?}"
        );
        assert!(
            problems.contains(&(FailoverDrift, "h0".into())),
            "{problems:?}"
        );
    }

    #[test]
    fn the_same_observation_judged_again_follows_the_primary() {
        let sim = failed_over(4);
        let t = topology(&[None, Some(0), Some(0), Some(0)]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let before = rt.block_on(crate::executor::observe_cluster(
            Arc::new(sim.clone()),
            &t,
            &Policy::default(),
            None,
            8,
        ));
        assert!(before.problems.iter().any(|p| p.code == DeadPrimary));
        let after = before.judged_against(&t, &Policy::default(), Some("h1"));
        let (want, _) = judged(&sim, Some("h1"));
        let mut got: Vec<_> = after
            .problems
            .into_iter()
            .map(|p| (p.code, p.host))
            .collect();
        got.sort();
        assert_eq!(got, want);
    }
}
