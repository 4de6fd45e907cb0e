//! The snapshot: one observation of a cluster (every declared server, the undeclared
//! replicas found through them) with the problems classified from it.
//!
//! Takes observed [`ServerState`]s and the topology they were observed for, gives a
//! [`Snapshot`] value: what `orch status --format json` prints, what `orch plan --observed`
//! reads back, what apply and watch observe each time. Pure: the observation itself is the
//! executor's job.

use anyhow::bail;
use serde::{Deserialize, Serialize};

use super::classify::{Problem, classify};
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
    /// servers observed beside them, classified against `t` and `policy`.
    pub fn new(
        t: &Topology,
        policy: &Policy,
        states: Vec<ServerState>,
        undeclared: Vec<ServerState>,
    ) -> Snapshot {
        let mut problems = classify(t, policy, &states);
        // Replicas of servers the file does not name (a removed intermediate's own).
        for u in &undeclared {
            for r in u.info().map_or(&[][..], |i| &i.replicas[..]) {
                let Some(port) = r.port else { continue };
                let at = format!("{}:{port}", r.host);
                if problems.iter().any(|p| p.host == at) {
                    continue;
                }
                problems.push(super::classify::Problem {
                    code: super::classify::ProblemCode::UnknownReplica,
                    severity: super::classify::ProblemCode::UnknownReplica.severity(),
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
