//! Problems: the observed topology compared with the desired one, as ordered pure
//! predicates (the moco shape). Each problem has a stable code and a severity.
//!
//! Takes the desired [`Topology`], its [`Policy`] and one [`ServerState`] per declared host
//! (in file order), gives [`Problem`]s. Pure: no I/O, no clock.
//!
//! Identity: servers are matched to hosts by the address orch connected to; a replica's
//! source is resolved by its `Master_Host:Master_Port` when that is a declared address,
//! otherwise by the source's server_id (`Master_Server_Id`) — replicas often name their
//! source by an IP or another name than the file. `@@hostname` is never used: every
//! instance on one machine shares it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{IoState, Reach, Replication, ServerInfo, ServerState, Unreachable};
use crate::spec::Policy;
use crate::spec::Topology;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The cluster cannot take writes, or may take them in two places.
    Critical,
    /// Something is broken and needs action.
    Error,
    /// Drift or risk; the cluster works.
    Warning,
}

macro_rules! problem_codes {
    ($($variant:ident = $name:literal, $severity:ident;)*) => {
        /// Every problem orch reports; the names are stable (JSON, hooks, alerts).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum ProblemCode { $(#[serde(rename = $name)] $variant,)* }
        impl ProblemCode {
            pub const ALL: &'static [ProblemCode] = &[$(ProblemCode::$variant,)*];
            pub fn name(self) -> &'static str { match self { $(ProblemCode::$variant => $name,)* } }
            pub fn severity(self) -> Severity { match self { $(ProblemCode::$variant => Severity::$severity,)* } }
        }
    };
}

problem_codes! {
    DeadPrimary = "dead-primary", Critical;
    UnreachablePrimary = "unreachable-primary", Critical;
    MultipleWritable = "multiple-writable", Critical;
    ReadOnlyPrimary = "read-only-primary", Critical;
    DuplicateServerId = "duplicate-server-id", Critical;
    PrimaryRejectsConnections = "primary-rejects-connections", Critical;
    ReplicaRejectsConnections = "replica-rejects-connections", Error;
    Unreachable = "unreachable", Error;
    ReplicationStopped = "replication-stopped", Error;
    NotReplicating = "not-replicating", Error;
    WritableReplica = "writable-replica", Error;
    ErrantGtid = "errant-gtid", Error;
    SourceNotLogging = "source-without-log-replica-updates", Error;
    Lagging = "lagging", Warning;
    WrongSource = "wrong-source", Warning;
    UnknownReplica = "unknown-replica", Warning;
    AddressMismatch = "address-mismatch", Warning;
    NoGtid = "replication-without-gtid", Warning;
    SlowDetection = "slow-failure-detection", Warning;
    SemiSyncOff = "semi-sync-off-on-primary", Warning;
    SemiSyncFellBack = "semi-sync-fell-back", Error;
    FailoverDrift = "failover-drift", Warning;
    ReplicationFilters = "replication-filters", Warning;
    MultipleChannels = "multiple-replication-channels", Error;
    MissingPrivilege = "missing-privilege", Error;
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub code: ProblemCode,
    pub severity: Severity,
    /// The host id from the file, or the address of a server that is not in it.
    pub host: String,
    pub message: String,
}

/// `slave_net_timeout` above this delays noticing a dead source.
pub const MAX_NET_TIMEOUT_SECS: u32 = 10;
/// `MASTER_CONNECT_RETRY` above this (the default is 60) delays reconnecting.
pub const MAX_CONNECT_RETRY_SECS: u32 = 10;

/// For each observed server, the index of the observed server it replicates from, when
/// that is one of them: by the address the replica names, else by the source's server_id
/// when the names may be two spellings of one server (same port, and not two different IP
/// addresses: a host name and an IP). server_ids repeat across clusters (every primary
/// built from one template is 1), so two different IPs are two servers.
pub fn observed_sources(observed: &[ServerState]) -> Vec<Option<usize>> {
    let by_address: HashMap<String, usize> = observed
        .iter()
        .enumerate()
        .map(|(i, s)| (s.address.to_string(), i))
        .collect();
    let mut by_server_id: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, s) in observed.iter().enumerate() {
        if let Some(inf) = s.info() {
            by_server_id.entry(inf.server_id).or_default().push(i);
        }
    }
    (0..observed.len())
        .map(|i| {
            let r = observed[i].info()?.replication.as_ref()?;
            let named = format!("{}:{}", r.source_host.to_ascii_lowercase(), r.source_port);
            by_address.get(&named).copied().or_else(|| {
                match by_server_id.get(&r.source_server_id) {
                    Some(v)
                        if r.source_server_id != 0
                            && v.len() == 1
                            && v[0] != i
                            && may_be_one_server(r, &observed[v[0]].address) =>
                    {
                        Some(v[0])
                    }
                    _ => None,
                }
            })
        })
        .collect()
}

/// Whether the source a replica names can be the server at `address` under another name.
fn may_be_one_server(r: &Replication, address: &crate::topology::Address) -> bool {
    let ip = |h: &str| {
        h.trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|a| a.to_canonical())
    };
    r.source_port == address.port
        && match (ip(&r.source_host), ip(&address.host)) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
}

/// A server that is alive but refuses connections with error packets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Its index in the observation.
    pub host: usize,
    /// What was seen, with what to do, for people.
    pub text: String,
}

/// The servers that answer connections with an error packet (out of connections, access
/// denied, host blocked): orch's probe was refused, or orch got in only through the
/// reserved administration port, or a replica of it that is not connected was last
/// answered with one. Such a server is alive: a problem to report, never a failover (its
/// replicas did not lose it, orch did not either). `ids` names the observed servers.
pub fn rejections(observed: &[ServerState], ids: &[&str]) -> Vec<Rejection> {
    let sources = observed_sources(observed);
    let mut out = Vec::new();
    for (x, state) in observed.iter().enumerate() {
        let mut causes = Vec::new();
        let mut seen = Vec::new();
        match &state.reach {
            Reach::Unreachable { cause, detail } if cause.answered() => {
                causes.push(*cause);
                seen.push(format!("orch was answered {detail}"));
            }
            Reach::Reachable(info) => {
                if let Some(r) = &info.main_port_refused {
                    causes.push(r.cause);
                    seen.push(format!(
                        "its main port answered orch {} (orch observes it through its administration port)",
                        r.detail
                    ));
                }
            }
            Reach::Unreachable { .. } => {}
        }
        for (i, replica) in observed.iter().enumerate() {
            if sources[i] != Some(x) {
                continue;
            }
            if let Some((cause, e)) = replica
                .info()
                .and_then(|inf| inf.replication.as_ref())
                .and_then(Replication::refused_by_source)
            {
                causes.push(cause);
                // MariaDB's IO error reads "error reconnecting to master 'repl@host:port' -
                // retry-time: 1 maximum-retries: 100000 message: Too many connections":
                // the server's own words come last.
                let words = e
                    .message
                    .rsplit_once("message: ")
                    .map_or(e.message.as_str(), |(_, m)| m);
                seen.push(format!(
                    "{}'s IO thread was answered error {}: {words}",
                    ids[i], e.errno
                ));
            }
        }
        if seen.is_empty() {
            continue;
        }
        causes.sort_by_key(|c| cause_text(*c));
        causes.dedup();
        let todo: Vec<&str> = causes.iter().map(|c| refusal_advice(*c)).collect();
        out.push(Rejection {
            host: x,
            text: format!(
                "{} is alive but refuses connections ({}): not a failover case; {}",
                ids[x],
                seen.join("; "),
                todo.join("; ")
            ),
        });
    }
    out
}

/// What to do about a server that refuses connections with `cause`.
fn refusal_advice(cause: Unreachable) -> &'static str {
    match cause {
        Unreachable::ConnectionLimit => {
            "it is out of connections: new clients fail too; close idle sessions or raise \
             max_connections (max_user_connections for one account) on it, and reserve orch \
             a way in that needs no free slot (MariaDB extra_port, MySQL admin_port: see the \
             README) so that it can observe and fence it meanwhile"
        }
        Unreachable::AccessDenied => {
            "it refuses the account: check the user, password and grants orch (or the \
             replication account) uses on it"
        }
        Unreachable::HostBlocked => {
            "it blocks the client's host after too many failed connections: run FLUSH HOSTS \
             on it and raise max_connect_errors"
        }
        _ => "",
    }
}

pub fn classify(t: &Topology, policy: &Policy, observed: &[ServerState]) -> Vec<Problem> {
    assert_eq!(
        t.hosts.len(),
        observed.len(),
        "one observation per declared host"
    );
    let mut out = Vec::new();
    let mut push = |code: ProblemCode, host: &str, message: String| {
        out.push(Problem {
            code,
            severity: code.severity(),
            host: host.to_string(),
            message,
        })
    };
    let ids: Vec<&str> = t.hosts.iter().map(|h| h.id.as_str()).collect();
    let info: Vec<Option<&ServerInfo>> = observed.iter().map(ServerState::info).collect();
    let mut by_server_id: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, inf) in info.iter().enumerate() {
        if let Some(inf) = inf {
            by_server_id.entry(inf.server_id).or_default().push(i);
        }
    }
    let sources = observed_sources(observed);
    let source_of = |i: usize| sources[i];
    let desired_source = |i: usize| -> Option<usize> {
        let s = t.hosts[i].source.as_ref()?;
        ids.iter().position(|id| *id == s.value)
    };
    let primary = t.hosts.iter().position(|h| h.source.is_none());
    // The live primary: the one reachable server without a source that others replicate
    // from; the file's when that is not one server (a failover may have moved it).
    let serving: Vec<usize> = (0..ids.len())
        .filter(|&i| info[i].is_some_and(|x| x.replication.is_none()))
        .filter(|&i| (0..ids.len()).any(|j| source_of(j) == Some(i)))
        .collect();
    let live_primary = match serving.as_slice() {
        [only] => Some(*only),
        _ => primary.filter(|&p| info[p].is_some()),
    };

    // Semi-synchronous replication: a primary that waits for no acknowledgement though
    // its replicas would send them (after a failover to a replica that was not a
    // semi-sync source, typically), or that stopped waiting when a wait timed out.
    if let Some(p) = live_primary
        && let Some(inf) = info[p]
        && let Some(semi) = inf.semi_sync
    {
        let acking: Vec<&str> = (0..ids.len())
            .filter(|&i| source_of(i) == Some(p))
            .filter(|&i| {
                info[i]
                    .and_then(|x| x.semi_sync)
                    .is_some_and(|s| s.replica_enabled)
            })
            .map(|i| ids[i])
            .collect();
        let (source, status, replica) = match inf.flavor {
            crate::gtid::Flavor::Mariadb => (
                "rpl_semi_sync_master_enabled",
                "Rpl_semi_sync_master_status",
                "rpl_semi_sync_slave_enabled",
            ),
            crate::gtid::Flavor::Mysql => (
                "rpl_semi_sync_source_enabled",
                "Rpl_semi_sync_source_status",
                "rpl_semi_sync_replica_enabled",
            ),
        };
        if !semi.source_enabled && !acking.is_empty() {
            push(
                ProblemCode::SemiSyncOff,
                ids[p],
                format!(
                    "waits for no acknowledgement ({source}=OFF) though {} would send them \
                     ({replica}=ON): a write it acknowledges can be lost with it; set \
                     {source}=ON on it and in its configuration (orch does not change it)",
                    acking.join(", ")
                ),
            );
        }
        if semi.source_enabled && semi.source_active == Some(false) {
            push(
                ProblemCode::SemiSyncFellBack,
                ids[p],
                format!(
                    "semi-sync fell back to asynchronous ({status}=OFF: a wait for an \
                     acknowledgement timed out; semi-sync replicas: {}): a write it \
                     acknowledges can be lost with it until a semi-sync replica catches up",
                    if acking.is_empty() {
                        "none".to_string()
                    } else {
                        acking.join(", ")
                    }
                ),
            );
        }
    }

    // Duplicate server_ids: replication silently skips or loops on them.
    for (id, members) in &by_server_id {
        if members.len() > 1 {
            let names: Vec<&str> = members.iter().map(|&m| ids[m]).collect();
            push(
                ProblemCode::DuplicateServerId,
                names[0],
                format!(
                    "{} share server_id {id}: give every server its own (or two hosts in the file are one server)",
                    names.join(", ")
                ),
            );
        }
    }

    // Servers that answer with error packets: alive, whatever else is wrong.
    for r in rejections(observed, &ids) {
        let code = if Some(r.host) == primary || Some(r.host) == live_primary {
            ProblemCode::PrimaryRejectsConnections
        } else {
            ProblemCode::ReplicaRejectsConnections
        };
        push(code, ids[r.host], r.text);
    }

    // The primary: dead (holistically), or only unreachable from here.
    if let Some(p) = primary {
        if let super::Reach::Unreachable { cause, .. } = &observed[p].reach
            && cause.answered()
        {
            // Alive: reported above.
        } else if let super::Reach::Unreachable { cause, detail } = &observed[p].reach {
            let replicas: Vec<usize> = (0..ids.len())
                .filter(|&i| desired_source(i) == Some(p))
                .collect();
            let reachable: Vec<usize> = replicas
                .iter()
                .copied()
                .filter(|&i| info[i].is_some())
                .collect();
            let still_see_it: Vec<&str> = reachable
                .iter()
                .copied()
                .filter(|&i| {
                    info[i]
                        .and_then(|inf| inf.replication.as_ref())
                        .is_some_and(|r| !r.lost_source() && source_of(i) == Some(p))
                })
                .map(|i| ids[i])
                .collect();
            let why = unreachable_text(*cause, detail);
            if reachable.is_empty() {
                push(
                    ProblemCode::UnreachablePrimary,
                    ids[p],
                    format!(
                        "orch cannot reach the primary: {why}; no replica is reachable to confirm it is dead"
                    ),
                );
            } else if still_see_it.is_empty() {
                let names: Vec<&str> = reachable.iter().map(|&i| ids[i]).collect();
                push(
                    ProblemCode::DeadPrimary,
                    ids[p],
                    format!(
                        "the primary is dead: orch cannot reach it ({why}) and {}",
                        crate::topology::agree(
                            &names,
                            "its replica {} has lost it too",
                            "its replicas {} have lost it too"
                        )
                    ),
                );
            } else {
                push(
                    ProblemCode::UnreachablePrimary,
                    ids[p],
                    format!(
                        "orch cannot reach the primary ({why}) but {} from it: not a failover case",
                        crate::topology::agree(
                            &still_see_it,
                            "{} still replicates",
                            "{} still replicate"
                        )
                    ),
                );
            }
        } else if let Some(inf) = info[p] {
            let live = live_primary.unwrap_or(p);
            if info[live].is_some_and(|x| x.read_only) {
                push(
                    ProblemCode::ReadOnlyPrimary,
                    ids[live],
                    "the primary is read_only: writes fail".into(),
                );
            }
            if inf.replication.is_some() && source_of(p).is_some() {
                let s = source_of(p).map_or("?", |s| ids[s]);
                push(
                    ProblemCode::WrongSource,
                    ids[p],
                    format!("is the primary in the file but replicates from {s}"),
                );
            }
        }
    }

    let writable: Vec<&str> = (0..ids.len())
        .filter(|&i| info[i].is_some_and(|inf| !inf.read_only))
        .map(|i| ids[i])
        .collect();
    if writable.len() > 1 {
        push(
            ProblemCode::MultipleWritable,
            writable[0],
            format!(
                "{} are all writable: writes may land in two places",
                writable.join(", ")
            ),
        );
    }

    for i in 0..ids.len() {
        let Some(inf) = info[i] else { continue };
        // What orch cannot change: reported here, refused by every plan and recovery.
        if !inf.channels.is_empty() {
            push(
                ProblemCode::MultipleChannels,
                ids[i],
                format!(
                    "has {} replication channels ({}): orch observes only the default one and changes no such server (plans and recoveries that need it are refused)",
                    inf.channels.len(),
                    inf.channels
                        .iter()
                        .map(|c| format!("'{c}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        if let Some(lacking) = lacking_privileges(inf) {
            push(ProblemCode::MissingPrivilege, ids[i], lacking);
        }
    }

    for i in 0..ids.len() {
        let id = ids[i];
        let Some(inf) = info[i] else {
            if Some(i) != primary
                && let super::Reach::Unreachable { cause, detail } = &observed[i].reach
                && !cause.answered()
            {
                push(
                    ProblemCode::Unreachable,
                    id,
                    unreachable_text(*cause, detail),
                );
            }
            continue;
        };
        let Some(want) = desired_source(i) else {
            continue;
        };
        // A declared replica.
        if !inf.read_only {
            push(
                ProblemCode::WritableReplica,
                id,
                "a replica with read_only=OFF: a stray write becomes an errant transaction".into(),
            );
        }
        let Some(r) = &inf.replication else {
            push(
                ProblemCode::NotReplicating,
                id,
                format!(
                    "has no replication configured (the file says it replicates from {})",
                    ids[want]
                ),
            );
            continue;
        };
        let actual = source_of(i);
        match actual {
            None => push(
                ProblemCode::NotReplicating,
                id,
                format!(
                    "replicates from {}:{}, which is not a server of this cluster (the file says {})",
                    r.source_host, r.source_port, ids[want]
                ),
            ),
            Some(s) if s != want => push(
                ProblemCode::WrongSource,
                id,
                format!("replicates from {}; the file says {}", ids[s], ids[want]),
            ),
            Some(s) => {
                if let Some(src) = info[s]
                    && src.replication.is_some()
                    && !(src.log_bin && src.log_replica_updates)
                {
                    let off = if src.log_bin {
                        "log_slave_updates=OFF"
                    } else {
                        "log_bin=OFF"
                    };
                    push(
                        ProblemCode::SourceNotLogging,
                        id,
                        format!(
                            "replicates from {}, a replica with {off}: it does not pass on what it replicates, so {id} gets none of the primary's transactions (its lag reads 0 while it falls behind)",
                            ids[s]
                        ),
                    );
                }
                let named = format!("{}:{}", r.source_host.to_ascii_lowercase(), r.source_port);
                if named != observed[s].address.to_string() {
                    push(
                        ProblemCode::AddressMismatch,
                        id,
                        format!(
                            "reaches its source {} as {}:{}; the file says {}",
                            ids[s], r.source_host, r.source_port, observed[s].address
                        ),
                    );
                }
            }
        }
        if r.io != IoState::Running || !r.sql_running {
            let mut parts = vec![format!(
                "IO thread {}, SQL thread {}",
                io_text(r.io),
                if r.sql_running { "running" } else { "stopped" }
            )];
            if let Some(e) = &r.last_io_error {
                parts.push(format!("IO error {}: {}", e.errno, e.message));
            }
            if let Some(e) = &r.last_sql_error {
                parts.push(format!("SQL error {}: {}", e.errno, e.message));
            }
            // A replica of a dead primary is expected to have lost it; that is reported
            // once, as dead-primary.
            if !(Some(want) == primary
                && primary.is_some_and(|p| info[p].is_none())
                && r.sql_running)
            {
                push(ProblemCode::ReplicationStopped, id, parts.join("; "));
            }
        }
        if let Some(behind) = r.seconds_behind {
            let allowed = policy.failover.promote.max_lag.as_secs() + u64::from(r.sql_delay);
            if behind > allowed {
                push(
                    ProblemCode::Lagging,
                    id,
                    format!(
                        "{behind}s behind its source (policy max_lag {}s)",
                        policy.failover.promote.max_lag.as_secs()
                    ),
                );
            }
        }
        if r.gtid_mode.eq_ignore_ascii_case("no") {
            push(
                ProblemCode::NoGtid,
                id,
                "replicates by binlog file and position, not GTID: it cannot be moved safely"
                    .into(),
            );
        }
        if !r.filters.is_empty() {
            push(
                ProblemCode::ReplicationFilters,
                id,
                format!(
                    "replicates with filters ({}): it may lack whole schemas, so orch never promotes it nor makes it a source",
                    r.filters.join(", ")
                ),
            );
        }
        // Errant: transactions the primary never had. Compared with the live primary
        // (a source that does not pass on what it replicates is no reference), else with
        // the source.
        let reference = live_primary.filter(|&p| p != i).or(actual);
        if let Some(s) = reference
            && let (Some(mine), Some(src)) = (
                inf.gtid.server_gtids(inf.server_id),
                info[s].and_then(|x| x.gtid.server_gtids(x.server_id)),
            )
            && let Ok(errant) = mine.errant_relative_to(&src)
            && !errant.is_empty()
        {
            let whose = if Some(s) == live_primary {
                "the primary"
            } else {
                "its source"
            };
            push(
                ProblemCode::ErrantGtid,
                id,
                format!("has transactions {whose} {} never had: {errant}", ids[s]),
            );
        }
        let mut slow = Vec::new();
        if inf.replica_net_timeout > MAX_NET_TIMEOUT_SECS {
            slow.push(format!("slave_net_timeout={}s", inf.replica_net_timeout));
        }
        if r.connect_retry > MAX_CONNECT_RETRY_SECS {
            slow.push(format!("MASTER_CONNECT_RETRY={}s", r.connect_retry));
        }
        if r.heartbeat_period == 0.0 {
            slow.push("no heartbeat".into());
        }
        if !slow.is_empty() {
            push(
                ProblemCode::SlowDetection,
                id,
                format!("{}: a dead source is noticed late", slow.join(", ")),
            );
        }
    }

    // Servers that replicate from ours but are not in the file.
    let known_ids: std::collections::HashSet<u32> =
        info.iter().flatten().map(|i| i.server_id).collect();
    let known_hosts: std::collections::HashSet<&str> =
        observed.iter().map(|s| s.address.host.as_str()).collect();
    let known_addresses: std::collections::HashSet<String> =
        observed.iter().map(|s| s.address.to_string()).collect();
    for i in 0..ids.len() {
        let Some(inf) = info[i] else { continue };
        for r in &inf.replicas {
            // A declared address is known even when that server is down and its
            // server_id therefore unknown (the source still lists it for a while).
            let declared = r.port.is_some_and(|p| {
                known_addresses.contains(&format!("{}:{p}", r.host.to_ascii_lowercase()))
            });
            let known = declared
                || match r.server_id {
                    Some(sid) => known_ids.contains(&sid),
                    // Processlist fallback: only the client IP is known.
                    None => known_hosts.contains(r.host.as_str()),
                };
            if !known {
                let at = match r.port {
                    Some(p) => format!("{}:{p}", r.host),
                    None => r.host.clone(),
                };
                let sid = r
                    .server_id
                    .map(|s| format!(" (server_id {s})"))
                    .unwrap_or_default();
                push(
                    ProblemCode::UnknownReplica,
                    &at,
                    format!("replicates from {} but is not in the file{sid}", ids[i]),
                );
            }
        }
    }
    out.sort_by(|a, b| (a.severity, &a.host, a.code).cmp(&(b.severity, &b.host, b.code)));
    out
}

/// What orch's account lacks on a server for any step it may have to run there (a
/// switchover or a failover can ask any server for any of them), with the GRANT to run.
fn lacking_privileges(inf: &ServerInfo) -> Option<String> {
    use crate::executor::mysql::{Dialect, grants};
    use crate::step::Action;
    let held = inf.privileges.as_ref()?;
    let dialect = Dialect::of(inf.flavor, &inf.version);
    let every = [
        Action::Fence { kill_writers: true },
        Action::StopReplication,
        Action::WaitRelayLog { timeout_secs: 1 },
        Action::ResetReplication,
    ];
    let mut names: Vec<&str> = Vec::new();
    for a in &every {
        for n in grants::missing(held, &grants::needs(dialect, a)?) {
            if !names.contains(&n.privilege) {
                names.push(n.privilege);
            }
        }
    }
    (!names.is_empty()).then(|| {
        format!(
            "orch's account {} lacks {}: plans and recoveries that change this server are refused; run: {}",
            held.account,
            names.join(", "),
            grants::grant_statement(&held.account, &names)
        )
    })
}

/// Why a server does not answer: the cause, with the driver's detail when it says more.
pub(crate) fn unreachable_text(cause: Unreachable, detail: &str) -> String {
    let cause = cause_text(cause);
    if detail.contains(cause) {
        detail.to_string()
    } else {
        format!("{cause} ({detail})")
    }
}

pub(crate) fn cause_text(cause: Unreachable) -> &'static str {
    match cause {
        Unreachable::Refused => "connection refused",
        Unreachable::TimedOut => "connect timed out",
        Unreachable::HungAfterConnect => "hung: accepts connections but does not answer",
        Unreachable::AccessDenied => "access denied",
        Unreachable::ConnectionLimit => "out of connections",
        Unreachable::HostBlocked => "host blocked",
        Unreachable::Other => "error",
    }
}

fn io_text(io: IoState) -> &'static str {
    match io {
        IoState::Running => "running",
        IoState::Connecting => "connecting",
        IoState::Stopped => "stopped",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::executor::observe_all;
    use crate::executor::sim::{Simulator, host_address};
    use crate::topology::Flavor;

    /// A topology file for hosts h0..h{n-1} at the simulator's addresses; `sources[i]` is
    /// host i's declared source.
    pub(crate) fn topology(sources: &[Option<usize>]) -> Topology {
        let mut text = String::from(
            "cluster: sim\ncredentials: { user: orch, password: \"${PW}\" }\nhosts:\n",
        );
        for (i, s) in sources.iter().enumerate() {
            let source = s.map(|s| format!(", source: h{s}")).unwrap_or_default();
            text.push_str(&format!(
                "  h{i}: {{ address: \"{}\", dc: x{source} }}\n",
                host_address(i)
            ));
        }
        let root = crate::spec::yaml::load(&text).unwrap();
        let (t, diags) = crate::spec::parse_topology(Path::new("sim.yaml"), &root);
        assert!(diags.is_empty(), "{diags:?}");
        t.unwrap()
    }

    fn star_file(n: usize) -> Topology {
        let sources: Vec<Option<usize>> = (0..n).map(|i| (i > 0).then_some(0)).collect();
        topology(&sources)
    }

    fn problems(sim: &Simulator, t: &Topology) -> Vec<(ProblemCode, String)> {
        let addresses: Vec<_> = t
            .hosts
            .iter()
            .map(|h| h.address.as_ref().unwrap().value.clone())
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let states = rt.block_on(observe_all(Arc::new(sim.clone()), &addresses, 8));
        let mut got: Vec<_> = classify(t, &Policy::default(), &states)
            .into_iter()
            .map(|p| (p.code, p.host))
            .collect();
        got.sort();
        got
    }

    fn want(list: &[(ProblemCode, &str)]) -> Vec<(ProblemCode, String)> {
        let mut v: Vec<_> = list.iter().map(|(c, h)| (*c, h.to_string())).collect();
        v.sort();
        v
    }

    /// A message naming one replica says "replicates" / "has", two "replicate" / "have".
    #[test]
    fn messages_agree_with_the_number_of_replicas_named() {
        let message = |n: usize, setup: &dyn Fn(&Simulator)| {
            let sim = Simulator::star(n, Flavor::Mariadb);
            sim.tick();
            setup(&sim);
            sim.tick();
            let t = star_file(n);
            let addresses: Vec<_> = t
                .hosts
                .iter()
                .map(|h| h.address.as_ref().unwrap().value.clone())
                .collect();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let states = rt.block_on(observe_all(Arc::new(sim.clone()), &addresses, 8));
            classify(&t, &Policy::default(), &states)
                .into_iter()
                .map(|p| p.message)
                .collect::<Vec<_>>()
                .join("\n")
        };
        let cut_off = |s: &Simulator| s.partition_from_orch(host_address(0));
        let killed = |s: &Simulator| s.kill(host_address(0));
        let one = message(2, &cut_off);
        assert!(one.contains("but h1 still replicates from it"), "{one}");
        let two = message(3, &cut_off);
        assert!(two.contains("but h1, h2 still replicate from it"), "{two}");
        let one = message(2, &killed);
        assert!(one.contains("its replica h1 has lost it too"), "{one}");
        let two = message(3, &killed);
        assert!(
            two.contains("its replicas h1, h2 have lost it too"),
            "{two}"
        );
    }

    #[test]
    fn scenarios_on_the_simulator() {
        use ProblemCode::*;
        type Setup = fn(&Simulator);
        type Case<'a> = (&'a str, Setup, &'a [(ProblemCode, &'a str)]);
        let cases: &[Case] = &[
            ("healthy", |_| {}, &[]),
            (
                "killed primary: dead",
                |s| s.kill(host_address(0)),
                &[(DeadPrimary, "h0")],
            ),
            (
                "frozen primary: dead once replicas lost it",
                |s| s.freeze(host_address(0)),
                &[(DeadPrimary, "h0")],
            ),
            (
                "only orch lost the primary",
                |s| s.partition_from_orch(host_address(0)),
                &[(UnreachablePrimary, "h0")],
            ),
            (
                "killed replica",
                |s| s.kill(host_address(2)),
                &[(Unreachable, "h2")],
            ),
            (
                "a primary out of connections, its replicas reconnecting: alive",
                |s| {
                    s.exhaust_connections(host_address(0));
                    for i in [1, 2] {
                        s.stop_replication(host_address(i));
                        s.start_replication(host_address(i));
                    }
                },
                &[(PrimaryRejectsConnections, "h0")],
            ),
            (
                "a primary refusing orch's account",
                |s| s.access_denied(host_address(0)),
                &[(PrimaryRejectsConnections, "h0")],
            ),
            (
                "a replica out of connections",
                |s| s.exhaust_connections(host_address(2)),
                &[(ReplicaRejectsConnections, "h2")],
            ),
            (
                "a replica refusing orch's account",
                |s| s.access_denied(host_address(2)),
                &[(ReplicaRejectsConnections, "h2")],
            ),
            (
                "errant write",
                |s| s.errant(host_address(1), 2),
                &[(ErrantGtid, "h1")],
            ),
            (
                "broken SQL thread",
                |s| s.break_sql(host_address(1), 1062, "Duplicate entry"),
                &[(ReplicationStopped, "h1")],
            ),
            (
                "writable replica",
                |s| s.set_read_only(host_address(2), false),
                &[(WritableReplica, "h2"), (MultipleWritable, "h0")],
            ),
            (
                "read-only primary",
                |s| s.set_read_only(host_address(0), true),
                &[(ReadOnlyPrimary, "h0")],
            ),
            (
                "semi-sync replicas under a primary that waits for none",
                |s| {
                    let semi = |source_enabled, replica_enabled| {
                        Some(crate::observe::SemiSync {
                            source_enabled,
                            replica_enabled,
                            source_active: None,
                        })
                    };
                    s.set_semi_sync(host_address(0), semi(false, true));
                    s.set_semi_sync(host_address(1), semi(false, true));
                },
                &[(SemiSyncOff, "h0")],
            ),
            (
                "semi-sync everywhere, nothing to say",
                |s| {
                    for i in 0..3 {
                        s.set_semi_sync(
                            host_address(i),
                            Some(crate::observe::SemiSync {
                                source_enabled: true,
                                replica_enabled: true,
                                source_active: Some(true),
                            }),
                        );
                    }
                },
                &[],
            ),
            (
                "a semi-sync primary fallen back to asynchronous",
                |s| {
                    s.set_semi_sync(
                        host_address(0),
                        Some(crate::observe::SemiSync {
                            source_enabled: true,
                            replica_enabled: false,
                            source_active: Some(false),
                        }),
                    );
                },
                &[(SemiSyncFellBack, "h0")],
            ),
            (
                "after a failover the live primary, not the file's, is read-only",
                |s| {
                    s.stop_replication(host_address(1));
                    s.reset_replication(host_address(1));
                    s.stop_replication(host_address(2));
                    s.change_source(host_address(2), host_address(1));
                    s.start_replication(host_address(2));
                    s.set_read_only(host_address(0), true);
                },
                &[
                    (ReadOnlyPrimary, "h1"),
                    (NotReplicating, "h1"),
                    (WrongSource, "h2"),
                ],
            ),
            (
                "lagging replica",
                |s| {
                    s.set_lag(host_address(1), 20);
                    s.write(host_address(0), 30).unwrap();
                },
                &[(Lagging, "h1")],
            ),
            (
                "stopped replication",
                |s| s.stop_replication(host_address(1)),
                &[(ReplicationStopped, "h1")],
            ),
            (
                "moved under a sibling",
                |s| {
                    s.stop_replication(host_address(2));
                    s.change_source(host_address(2), host_address(1));
                    s.start_replication(host_address(2));
                },
                &[(WrongSource, "h2")],
            ),
            (
                "a replica the file does not know",
                |s| {
                    s.add_replica(host_address(9), host_address(0));
                },
                &[(UnknownReplica, "10.0.0.10:3306")],
            ),
            (
                "slow failure detection",
                |s| {
                    s.update(host_address(1), |srv| srv.replica_net_timeout = 60);
                },
                &[(SlowDetection, "h1")],
            ),
        ];
        for (name, setup, expected) in cases {
            let sim = Simulator::star(3, Flavor::Mariadb);
            sim.write(host_address(0), 5).unwrap();
            sim.tick();
            setup(&sim);
            sim.tick();
            assert_eq!(problems(&sim, &star_file(3)), want(expected), "{name}");
        }
    }

    /// h2 under h1, a replica without log_slave_updates: h2 gets nothing of the primary's
    /// and its lag reads 0; an errant write on h2 is found against the primary (h1's
    /// binlog, the old reference, lacks the primary's stream).
    #[test]
    fn a_source_without_log_slave_updates() {
        let sim = Simulator::star(3, Flavor::Mariadb);
        sim.update(host_address(1), |s| s.log_replica_updates = false);
        sim.stop_replication(host_address(2));
        sim.change_source(host_address(2), host_address(1));
        sim.start_replication(host_address(2));
        sim.write(host_address(0), 5).unwrap();
        for _ in 0..3 {
            sim.tick();
        }
        let chain = topology(&[None, Some(0), Some(1)]);
        assert_eq!(
            problems(&sim, &chain),
            want(&[(ProblemCode::SourceNotLogging, "h2")])
        );
        sim.errant(host_address(2), 1);
        sim.tick();
        assert_eq!(
            problems(&sim, &chain),
            want(&[
                (ProblemCode::SourceNotLogging, "h2"),
                (ProblemCode::ErrantGtid, "h2")
            ])
        );
    }

    #[test]
    fn mysql_flavour_errant_and_healthy() {
        let sim = Simulator::star(3, Flavor::Mysql);
        sim.write(host_address(0), 5).unwrap();
        sim.tick();
        assert_eq!(problems(&sim, &star_file(3)), want(&[]));
        sim.errant(host_address(2), 1);
        assert_eq!(
            problems(&sim, &star_file(3)),
            want(&[(ProblemCode::ErrantGtid, "h2")])
        );
    }

    #[test]
    fn a_host_declared_as_replica_that_is_its_own_primary() {
        let sim = Simulator::star(2, Flavor::Mariadb);
        sim.add_primary(host_address(2), Flavor::Mariadb);
        let got = problems(&sim, &star_file(3));
        assert_eq!(
            got,
            want(&[
                (ProblemCode::NotReplicating, "h2"),
                (ProblemCode::WritableReplica, "h2"),
                (ProblemCode::MultipleWritable, "h0")
            ])
        );
    }

    #[test]
    fn a_thousand_host_tree_is_healthy() {
        let sim = Simulator::tree(1000, 10, Flavor::Mariadb);
        sim.write(host_address(0), 3).unwrap();
        sim.tick();
        let sources: Vec<Option<usize>> =
            (0..1000).map(|i| (i > 0).then(|| (i - 1) / 10)).collect();
        assert_eq!(problems(&sim, &topology(&sources)), want(&[]));
    }

    #[test]
    fn problem_names_are_unique() {
        let mut names: Vec<&str> = ProblemCode::ALL.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ProblemCode::ALL.len());
    }
}
