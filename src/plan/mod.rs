//! `orch plan`: the desired topology against the observed one, as a reviewable value.
//!
//! Takes the desired [`Topology`] (as [`Desired`]), the [`Observed`] servers and the
//! [`Policy`], gives a [`Plan`]: a fingerprint of what was observed, ordered [`Step`]s with
//! the reason for each, and everything it will not do ([`Blocked`] changes with their
//! [`BlockCode`], [`Lost`] replicas, [`Warning`]s). Pure and deterministic: no I/O, no clock.
//!
//! One step vocabulary serves refactoring, switchover and (later) failover: fence, unfence,
//! stop replication, wait for GTID, change source, start replication, promote, reset
//! replication. Each step knows its preconditions and expected result ([`Condition`]s), so
//! `apply` can re-check them against the live servers.
//!
//! Every plan is proven before anyone sees it ([`proof`]): replayed step by step on the
//! step model seeded from the observation, it must keep every invariant at every step
//! (never two writable servers, never a replication cycle, never a replica pointed at a
//! source that cannot serve it) and end in the desired topology for everything it does not
//! report as blocked. A plan that fails its proof is a bug in orch, reported as such and
//! never shown as executable.

mod build;
pub mod model;
mod mysql_errant;
pub mod preflight;
pub mod proof;
pub mod recover;
#[cfg(test)]
pub(crate) mod tests;

use serde::{Deserialize, Serialize};

use crate::observe::ServerState;
use crate::spec::{Policy, Promotion, Topology};
use crate::step::Step;
use crate::topology::Address;

/// The version of the plan JSON schema.
pub const SCHEMA: u32 = 1;

/// The desired topology, as the planner needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub cluster: String,
    /// In file order.
    pub hosts: Vec<DesiredHost>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DesiredHost {
    pub id: String,
    pub address: Address,
    /// None: the primary.
    pub source: Option<String>,
    pub promotion: Promotion,
    /// Desired `MASTER_DELAY`, seconds.
    pub delay_secs: u32,
    /// The data centre the file places it in.
    pub dc: Option<String>,
}

impl Desired {
    /// The desired topology of a validated file.
    pub fn from_topology(t: &Topology) -> Desired {
        Desired {
            cluster: t.cluster.clone(),
            hosts: t
                .hosts
                .iter()
                .map(|h| DesiredHost {
                    id: h.id.clone(),
                    address: h
                        .address
                        .as_ref()
                        .map(|a| a.value.clone())
                        .expect("validated"),
                    source: h.source.as_ref().map(|s| s.value.clone()),
                    promotion: h.promotion,
                    delay_secs: h
                        .delay
                        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
                    dc: h.dc.clone(),
                })
                .collect(),
        }
    }

    pub fn primary(&self) -> Option<usize> {
        self.hosts.iter().position(|h| h.source.is_none())
    }
}

/// What was observed: one state per desired host (in file order), and the servers found
/// replicating from the cluster that the file does not declare.
#[derive(Clone, Debug)]
pub struct Observed {
    pub hosts: Vec<ServerState>,
    pub undeclared: Vec<ServerState>,
}

impl Observed {
    /// The observation in an `orch status --format json` snapshot, matched to the desired
    /// hosts by address: a desired host the snapshot lacks counts as unobserved, a
    /// snapshot host the file no longer declares as undeclared (removed from the file).
    pub fn from_snapshot(
        desired: &Desired,
        snapshot: &crate::observe::Snapshot,
    ) -> Result<Observed, String> {
        use crate::observe::{Reach, Unreachable};
        if snapshot.schema != 1 {
            return Err(format!(
                "snapshot schema {} is not supported (this orch reads schema 1)",
                snapshot.schema
            ));
        }
        if snapshot.cluster != desired.cluster {
            return Err(format!(
                "the snapshot is of cluster {} but the file declares cluster {}",
                snapshot.cluster, desired.cluster
            ));
        }
        let declared: std::collections::HashSet<String> = desired
            .hosts
            .iter()
            .map(|h| h.address.to_string())
            .collect();
        let hosts = desired
            .hosts
            .iter()
            .map(|h| {
                snapshot
                    .hosts
                    .iter()
                    .find(|o| o.state.address == h.address)
                    .map(|o| o.state.clone())
                    .unwrap_or_else(|| ServerState {
                        address: h.address.clone(),
                        reach: Reach::Unreachable {
                            cause: Unreachable::Other,
                            detail: "not in the snapshot".into(),
                        },
                    })
            })
            .collect();
        let mut undeclared: Vec<ServerState> = snapshot
            .hosts
            .iter()
            .map(|o| o.state.clone())
            .chain(snapshot.undeclared.iter().cloned())
            .filter(|s| !declared.contains(&s.address.to_string()))
            .collect();
        undeclared.sort_by_key(|s| s.address.to_string());
        undeclared.dedup_by(|a, b| a.address == b.address);
        Ok(Observed { hosts, undeclared })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Stop replication and reset it on servers replicating from the cluster that the file
    /// does not name.
    pub detach_removed: bool,
    /// Make the file's primary the primary again after a failover moved it elsewhere.
    pub allow_switch_back: bool,
    /// Go ahead with a change that leaves replicas lost (reported in the plan's summary).
    pub allow_lost_replicas: bool,
}

macro_rules! block_codes {
    ($($variant:ident = $name:literal, $doc:literal;)*) => {
        /// Why a change is blocked; the names are stable (JSON, CI gates).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum BlockCode { $(#[doc = $doc] #[serde(rename = $name)] $variant,)* }
        impl BlockCode {
            pub const ALL: &'static [BlockCode] = &[$(BlockCode::$variant,)*];
            pub fn name(self) -> &'static str { match self { $(BlockCode::$variant => $name,)* } }
            pub fn doc(self) -> &'static str { match self { $(BlockCode::$variant => $doc,)* } }
        }
    };
}

block_codes! {
    Unreachable = "unreachable", "a server the change needs cannot be observed";
    PrimaryUnknown = "primary-unknown", "no single server can be told to be the live primary";
    PrimaryMismatch = "primary-mismatch", "the file's servers mostly replicate from a server the file does not name: its addresses may point at another cluster; nothing is planned";
    PrimaryUnreachable = "primary-unreachable", "the primary cannot be observed: nothing is planned (a dead primary is a failover)";
    SourceWithoutBinlog = "source-without-binlog", "the new source has log_bin off";
    SourceWithoutLogReplicaUpdates = "source-without-log-replica-updates", "the new source is a replica without log_slave_updates";
    SourceNewer = "source-newer", "the new source runs a newer major version than its replica";
    FlavorMismatch = "flavor-mismatch", "MariaDB and MySQL servers in one replication chain";
    PurgedGtids = "purged-gtids", "the new source purged binary logs the replica still needs (re-seed it)";
    ErrantGtid = "errant-gtid", "the server has transactions the primary never had";
    ReplicationError = "replication-error", "replication stopped with an error orch will not skip";
    Lagging = "lagging", "replication lag beyond the policy's max_lag";
    Cycle = "cycle", "the change would make a replication cycle";
    NotSeeded = "not-seeded", "a new host whose data is not a subset of its source's";
    GtidDisabled = "gtid-disabled", "the replica cannot be moved to GTID positioning safely";
    CandidateNotReplicating = "candidate-not-replicating", "the switchover candidate is not replicating from the cluster";
    FailoverDrift = "failover-drift", "the file names a former primary; switching back needs --allow-switch-back";
    SourceBlocked = "source-blocked", "the new source itself could not be put in place";
    DuplicateIdentity = "duplicate-identity", "two servers report the same server_id (or server_uuid): no change involves either";
    LostReplica = "lost-replica", "the change would leave a replica without a source that passes on transactions (--allow-lost-replicas accepts it)";
    Delayed = "delayed", "a delayed replica is never a switchover candidate, nor the source of a replica that is not declared delayed";
    ReplicationFilters = "replication-filters", "a replica with replication filters may lack whole schemas: it never serves replicas nor becomes the primary";
    MissingPrivilege = "missing-privilege", "orch's account lacks a privilege a step needs on a server the plan changes: nothing in the plan runs";
    UnsupportedVersion = "unsupported-version", "a server the plan changes runs a version orch cannot drive: nothing in the plan runs";
    MultipleChannels = "multiple-replication-channels", "a server the plan changes has several replication channels: nothing in the plan runs";
}

/// A change the plan will not make, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    pub code: BlockCode,
    pub host: String,
    /// What the file asks for.
    pub change: String,
    pub reason: String,
}

/// A replica that will not be replicating from a live source when the plan is done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lost {
    pub host: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub code: String,
    pub host: String,
    pub message: String,
}

/// One server in the topology before or after the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub host: String,
    /// primary, replica, or standalone (no source, not the primary).
    pub role: String,
    /// None: not replicating from a server of the cluster.
    pub source: Option<String>,
    /// running, stopped, broken, or none.
    pub replication: String,
    pub read_only: Option<bool>,
    pub reachable: bool,
}

/// A file the plan came from, with its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHash {
    pub path: String,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub schema: u32,
    pub cluster: String,
    /// SHA-256 of the observed shape: who replicates from whom, thread states, read_only,
    /// GTID streams (not sequence numbers, not lag). Apply refuses a saved plan when the
    /// live topology no longer has this fingerprint.
    pub fingerprint: String,
    /// The topology file and policy the plan was made from (filled in by the command).
    #[serde(default)]
    pub files: Vec<FileHash>,
    pub steps: Vec<Step>,
    pub blocked: Vec<Blocked>,
    pub lost: Vec<Lost>,
    pub warnings: Vec<Warning>,
    pub before: Vec<Placement>,
    pub after: Vec<Placement>,
}

impl Plan {
    /// `--detailed-exitcode`: 0 nothing to do, 2 steps to apply, 3 no step can run but
    /// changes the file asks for are blocked (drift CI must not read as "in sync").
    pub fn exit_code(&self, detailed: bool) -> u8 {
        match (detailed, self.steps.is_empty(), self.blocked.is_empty()) {
            (false, _, _) => 0,
            (true, false, _) => 2,
            (true, true, false) => 3,
            (true, true, true) => 0,
        }
    }
}

/// Why a plan could not be produced.
#[derive(Debug)]
pub enum PlanError {
    /// The plan broke an invariant or missed the desired state when replayed: a bug in
    /// orch's planner. Nothing is shown as executable.
    Proof(String),
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::Proof(why) => write!(
                f,
                "internal error: the plan failed its proof ({why}); this is a bug in orch, please report it with `orch status --format json` output. Nothing was changed."
            ),
        }
    }
}

impl std::error::Error for PlanError {}

/// Plans the changes from `observed` to `desired` and proves the plan before returning it.
pub fn plan(
    desired: &Desired,
    observed: &Observed,
    policy: &Policy,
    options: PlanOptions,
) -> Result<Plan, PlanError> {
    let mut plan = build::build(desired, observed, policy, options).map_err(PlanError::Proof)?;
    proof::prove(desired, observed, &plan).map_err(PlanError::Proof)?;
    // A plan is one unit: when orch may not change one of its servers, none of it runs.
    let states: Vec<ServerState> = observed
        .hosts
        .iter()
        .chain(&observed.undeclared)
        .cloned()
        .collect();
    let refused = preflight::refusals(&plan.steps, &states);
    if !refused.is_empty() {
        plan.steps.clear();
        plan.after = plan.before.clone();
        plan.blocked.extend(refused);
    }
    Ok(plan)
}

/// The names of the servers of an observation: the file's ids, then undeclared servers by
/// address.
pub fn names(desired: &Desired, observed: &Observed) -> Vec<String> {
    desired
        .hosts
        .iter()
        .map(|h| h.id.clone())
        .chain(observed.undeclared.iter().map(|s| s.address.to_string()))
        .collect()
}

/// The fingerprint of an observation: its shape, not its progress.
pub fn fingerprint(observed: &Observed) -> String {
    use crate::observe::Reach;
    use std::fmt::Write;
    let mut servers: Vec<&ServerState> =
        observed.hosts.iter().chain(&observed.undeclared).collect();
    servers.sort_by_key(|s| s.address.to_string());
    let mut text = String::new();
    for s in servers {
        let _ = write!(text, "{}|", s.address);
        match &s.reach {
            Reach::Unreachable { cause, .. } => {
                let _ = writeln!(text, "unreachable:{cause:?}");
            }
            Reach::Reachable(inf) => {
                let _ = write!(
                    text,
                    "{}|{}|ro={}|bin={}|lru={}|",
                    inf.server_id, inf.version, inf.read_only, inf.log_bin, inf.log_replica_updates
                );
                if let Some(r) = &inf.replication {
                    let _ = write!(
                        text,
                        "src={}:{}|io={:?}|sql={}|err={}|gtid={}|delay={}|",
                        r.source_host.to_ascii_lowercase(),
                        r.source_port,
                        r.io == crate::observe::IoState::Stopped,
                        r.sql_running,
                        r.last_sql_error.as_ref().map_or(0, |e| e.errno),
                        r.gtid_mode,
                        r.sql_delay
                    );
                }
                // The server's own GTID streams (domain-server or uuid), not how far each
                // has come: a new one is an errant write or a new writer; progress is not a
                // change, and neither is a stream of another server arriving by
                // replication (it shows, if at all, on the server that wrote it).
                let _ = writeln!(text, "streams={}", own_streams(inf));
            }
        }
    }
    format!("sha256:{}", sha256_hex(text.as_bytes()))
}

fn own_streams(inf: &crate::observe::ServerInfo) -> String {
    use crate::gtid::ServerGtids;
    match inf.gtid.server_gtids(0) {
        Some(ServerGtids::Mariadb(m)) => {
            let mut v: Vec<String> = m
                .binlog_state
                .iter()
                .chain(m.current_pos.iter())
                .filter(|g| g.server_id == inf.server_id)
                .map(|g| format!("{}-{}", g.domain_id, g.server_id))
                .collect();
            v.sort();
            v.dedup();
            v.join(",")
        }
        Some(ServerGtids::Mysql(set)) => {
            let own = inf.server_uuid.as_deref().unwrap_or_default();
            let v: Vec<String> = set
                .iter()
                .map(|(t, _)| t.to_string())
                .filter(|t| !own.is_empty() && t.starts_with(own))
                .collect();
            v.join(",")
        }
        None => String::new(),
    }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
