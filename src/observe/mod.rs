//! The observed topology: what each server says about itself, and the problems found by
//! comparing that with the desired topology.
//!
//! Takes observations (from an [`Executor`](crate::executor::Executor): MySQL or the
//! simulator), gives [`ServerState`]s, a [`Snapshot`] of a cluster and its problems. An
//! unreachable server is data, with its cause, never an error. Pure: the executor does the
//! I/O (`executor::observe_all`).

pub mod classify;
pub mod snapshot;

pub use snapshot::{ObservedHost, Snapshot, undeclared_replicas};

use serde::{Deserialize, Serialize};

use crate::gtid::{Flavor, GtidSet, ServerGtids};
use crate::topology::Address;

/// Why a server could not be observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unreachable {
    /// Nothing listens on the port (the server is down, or the wrong port).
    Refused,
    /// No TCP connection within the connect timeout (host down, network partition, firewall).
    TimedOut,
    /// TCP connected but the server never completed the handshake or a query within the
    /// read timeout: a hung (or frozen) server.
    HungAfterConnect,
    /// The server answered and refused the credentials (1045), or the account's access
    /// (1044).
    AccessDenied,
    /// The server answered that it has no connection slot left: `max_connections` (1040),
    /// the account's `max_user_connections` (1203) or another per-account limit (1226).
    ConnectionLimit,
    /// The server answered that it blocks the client's host after `max_connect_errors`
    /// failed connections (1129) until `FLUSH HOSTS`.
    HostBlocked,
    Other,
}

impl Unreachable {
    /// The cause of a server error packet that refuses a connection, by its error number
    /// (the client's errno and a replica's `Last_IO_Errno` alike); None for any other
    /// error.
    pub fn of_server_error(errno: u32) -> Option<Unreachable> {
        match errno {
            1044 | 1045 => Some(Unreachable::AccessDenied),
            1040 | 1203 | 1226 => Some(Unreachable::ConnectionLimit),
            1129 => Some(Unreachable::HostBlocked),
            _ => None,
        }
    }

    /// Whether the server sent an error packet: it runs and speaks the protocol, so it is
    /// alive whatever else is wrong, never a reason to fail it over.
    pub fn answered(self) -> bool {
        matches!(
            self,
            Unreachable::AccessDenied | Unreachable::ConnectionLimit | Unreachable::HostBlocked
        )
    }
}

/// How a server answered (or did not).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Reach {
    Reachable(Box<ServerInfo>),
    Unreachable { cause: Unreachable, detail: String },
}

/// One server as observed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerState {
    pub address: Address,
    #[serde(flatten)]
    pub reach: Reach,
}

impl ServerState {
    pub fn info(&self) -> Option<&ServerInfo> {
        match &self.reach {
            Reach::Reachable(info) => Some(info),
            Reach::Unreachable { .. } => None,
        }
    }

    /// Whether the server is alive as far as orch can tell: observed, or answering with an
    /// error packet (out of connections, access denied, host blocked).
    pub fn alive(&self) -> bool {
        match &self.reach {
            Reach::Reachable(_) => true,
            Reach::Unreachable { cause, .. } => cause.answered(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub flavor: Flavor,
    /// `@@version`, e.g. `10.11.6-MariaDB-0+deb12u1-log`.
    pub version: String,
    pub server_id: u32,
    /// MySQL's `@@server_uuid`; MariaDB has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_uuid: Option<String>,
    pub read_only: bool,
    /// MySQL only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub super_read_only: Option<bool>,
    pub log_bin: bool,
    pub log_replica_updates: bool,
    pub binlog_format: String,
    /// MariaDB only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_strict_mode: Option<bool>,
    /// Semi-synchronous replication, where the server has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semi_sync: Option<SemiSync>,
    pub gtid: Gtids,
    /// `@@slave_net_timeout` in seconds: how long a replica waits on a silent source.
    pub replica_net_timeout: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_port: Option<u16>,
    /// None: not configured as a replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<Replication>,
    /// Replicas connected to this server.
    #[serde(default)]
    pub replicas: Vec<ConnectedReplica>,
    /// The schemas other than the system ones (`mysql`, `information_schema`,
    /// `performance_schema`, `sys`), at most [`USER_SCHEMAS_SHOWN`]: a server without GTID
    /// history that holds some is not fresh, and cannot join a cluster by replicating from
    /// the beginning. None where not read (snapshots written before orch read it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_schemas: Option<Vec<String>>,
    /// orch's own privileges there (`SHOW GRANTS`), checked before a plan or a recovery
    /// changes the server. None where not read (the simulator, snapshots written before
    /// orch read them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileges: Option<Privileges>,
    /// The names of the server's replication channels when it has more than one (MariaDB
    /// named connections from `SHOW ALL SLAVES STATUS`, MySQL channels, Group Replication's
    /// included; the default one is `""`). Empty with one channel or none. `replication`
    /// describes the default channel (else the first); orch changes no such server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// Set when orch observed the server through the port it reserves for administration
    /// (MariaDB `extra_port`, MySQL `admin_port`) because its main port refused orch with
    /// an error packet (out of connections, typically): that refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_port_refused: Option<Refusal>,
}

/// orch's own account on a server, as `SHOW GRANTS` lists it. Never a password hash: only
/// the account name and privilege names are kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Privileges {
    /// The account as the server names it (`'orch'@'%'`), for the GRANT statement to run.
    pub account: String,
    /// Global privileges (`ON *.*`), upper case, as the server spells them
    /// (`ALL PRIVILEGES` included as such), sorted.
    pub global: Vec<String>,
    /// Roles granted to the account. MariaDB lists an active role's privileges too; MySQL
    /// lists no role's: a privilege that comes only through a role is not seen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// A connection refused with an error packet: the cause and the server's words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub cause: Unreachable,
    pub detail: String,
}

/// How many user schema names an observation keeps.
pub const USER_SCHEMAS_SHOWN: usize = 10;

impl ServerInfo {
    /// The transactions this server holds that `other` lacks (a returning former primary's
    /// writes the new primary never got), named in full: MySQL the exact set, MariaDB the
    /// whole range of each (domain, server_id) stream from `gtid_binlog_state` (its
    /// `gtid_current_pos` keeps only each domain's last GTID). The same rule as errant
    /// transactions, with `other` as the reference. None when there are none, or when a
    /// GTID text does not parse or the flavours differ.
    pub fn holds_beyond(&self, other: &ServerInfo) -> Option<crate::gtid::ErrantTransactions> {
        let mine = self.gtid.server_gtids(self.server_id)?;
        let theirs = other.gtid.server_gtids(other.server_id)?;
        mine.errant_relative_to(&theirs)
            .ok()
            .filter(|extra| !extra.is_empty())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SemiSync {
    pub source_enabled: bool,
    pub replica_enabled: bool,
    /// Where `source_enabled`: whether it still waits for acknowledgements
    /// (`Rpl_semi_sync_master_status`), or fell back to asynchronous replication after
    /// a wait timed out. None where not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_active: Option<bool>,
}

/// The GTID variables, as the flavour has them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "flavor", rename_all = "lowercase")]
pub enum Gtids {
    Mariadb {
        current_pos: String,
        binlog_pos: String,
        binlog_state: String,
        slave_pos: String,
        /// The GTID state at the start of the oldest binary log the server still has (the
        /// `Gtid_list` event of the first file in `SHOW BINARY LOGS`), as a position: the
        /// last GTID listed per domain, as `BINLOG_GTID_POS()` reads it. A replica whose
        /// position in a domain is below this (or that has no position in one of its
        /// domains) can no longer be served: the source refuses it with error 1236 and it
        /// needs re-seeding. Empty when the first binlog starts with no GTID state (nothing
        /// was purged since the binlog began) and when `log_bin` is off. MariaDB has no
        /// `gtid_purged`; this is its equivalent. Absent in snapshots written before orch
        /// read it.
        #[serde(default)]
        purged: String,
    },
    Mysql {
        executed: String,
        /// `@@gtid_purged`: executed transactions no longer in any binary log.
        purged: String,
        gtid_mode: String,
    },
}

impl Gtids {
    /// The position used for "who is ahead": `gtid_current_pos` / `gtid_executed`.
    pub fn position(&self) -> Option<GtidSet> {
        match self {
            Gtids::Mariadb { current_pos, .. } => GtidSet::parse(Flavor::Mariadb, current_pos).ok(),
            Gtids::Mysql { executed, .. } => GtidSet::parse(Flavor::Mysql, executed).ok(),
        }
    }

    /// What the server has executed (MariaDB: per domain the later of `gtid_binlog_pos`
    /// and `gtid_slave_pos`; MySQL: `gtid_executed`); None when the text does not parse.
    pub fn executed(&self) -> Option<GtidSet> {
        match self {
            Gtids::Mariadb {
                binlog_pos,
                slave_pos,
                ..
            } => crate::gtid::MariadbGtidPos::executed(binlog_pos, slave_pos)
                .ok()
                .map(GtidSet::Mariadb),
            Gtids::Mysql { executed, .. } => GtidSet::parse(Flavor::Mysql, executed).ok(),
        }
    }

    /// The transactions the server can no longer send a replica from its binary logs
    /// (MariaDB: the state at the start of its oldest binlog; MySQL: `gtid_purged`); None
    /// when the text does not parse.
    pub fn purged(&self) -> Option<GtidSet> {
        match self {
            Gtids::Mariadb { purged, .. } => GtidSet::parse(Flavor::Mariadb, purged).ok(),
            Gtids::Mysql { purged, .. } => GtidSet::parse(Flavor::Mysql, purged).ok(),
        }
    }

    /// What errant-transaction detection needs.
    pub fn server_gtids(&self, server_id: u32) -> Option<ServerGtids> {
        match self {
            Gtids::Mariadb {
                current_pos,
                binlog_state,
                ..
            } => Some(ServerGtids::Mariadb(crate::gtid::MariadbServerGtids {
                server_id,
                current_pos: current_pos.parse().ok()?,
                binlog_state: binlog_state.parse().ok()?,
            })),
            Gtids::Mysql { executed, .. } => Some(ServerGtids::Mysql(executed.parse().ok()?)),
        }
    }

    /// The text shown in status views.
    pub fn display_position(&self) -> &str {
        match self {
            Gtids::Mariadb { current_pos, .. } => current_pos,
            Gtids::Mysql { executed, .. } => executed,
        }
    }
}

/// Replication thread state of the IO (receiver) thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoState {
    Running,
    Connecting,
    Stopped,
}

/// A replication error as the server reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationError {
    pub errno: u32,
    pub message: String,
}

/// `SHOW SLAVE STATUS` / `SHOW REPLICA STATUS`, in orch's vocabulary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Replication {
    pub source_host: String,
    pub source_port: u16,
    pub io: IoState,
    pub sql_running: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_io_error: Option<ReplicationError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sql_error: Option<ReplicationError>,
    /// Seconds_Behind_Master; None while the SQL thread is stopped or the IO thread is not
    /// connected. Zero does not mean caught up: compare GTID positions.
    pub seconds_behind: Option<u64>,
    /// MariaDB `Using_Gtid` (`No`, `Slave_Pos`, `Current_Pos`); MySQL `Auto_Position` as
    /// `auto_position` or `No`.
    pub gtid_mode: String,
    /// MariaDB `Gtid_IO_Pos` / MySQL `Retrieved_Gtid_Set`.
    pub retrieved_gtid: String,
    /// MariaDB `gtid_slave_pos` / MySQL `Executed_Gtid_Set`.
    pub executed_gtid: String,
    pub sql_delay: u32,
    pub connect_retry: u32,
    /// Seconds; 0 means heartbeats are off.
    pub heartbeat_period: f64,
    /// The source's server_id as the replica last saw it (0 if never connected).
    pub source_server_id: u32,
    /// Replication filters in force (`replicate_do_db=shop`, ...): the replica may lack
    /// whole schemas, so it never serves others and is never promoted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
    /// MySQL `Source_UUID` (`Master_UUID`): the source's server_uuid as the replica last
    /// saw it, known even once the source is dead. None on MariaDB, before the first
    /// connection, and in snapshots written before orch read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_uuid: Option<String>,
}

impl Replication {
    /// The error its source answered the IO thread's last connection attempt with, while
    /// the IO thread is not connected, when that error is a refusal (out of connections,
    /// access denied, host blocked). `Last_IO_Errno` outlives a reconnect, so a running
    /// IO thread's is old news.
    pub fn refused_by_source(&self) -> Option<(Unreachable, &ReplicationError)> {
        if self.io == IoState::Running {
            return None;
        }
        let e = self.last_io_error.as_ref()?;
        Some((Unreachable::of_server_error(e.errno)?, e))
    }

    /// Whether the replica lost its source: its IO thread is not connected, and the source
    /// did not answer it either. A source that refuses the replica with an error packet is
    /// alive: the replica heard from it.
    pub fn lost_source(&self) -> bool {
        self.io != IoState::Running && self.refused_by_source().is_none()
    }
}

/// A replica connected to a server, from `SHOW SLAVE HOSTS` (needs `report_host`) or,
/// failing that, a binlog dump thread in the processlist (client IP, no port).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectedReplica {
    pub server_id: Option<u32>,
    pub host: String,
    pub port: Option<u16>,
}

/// How observation connects: timeouts and concurrency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObserveOptions {
    pub connect_timeout: std::time::Duration,
    pub read_timeout: std::time::Duration,
    pub concurrency: usize,
}

impl Default for ObserveOptions {
    fn default() -> Self {
        ObserveOptions {
            connect_timeout: std::time::Duration::from_secs(2),
            read_timeout: std::time::Duration::from_secs(3),
            concurrency: 32,
        }
    }
}

/// A forest walked depth-first, given each node's parent: every root (in index order)
/// followed by its descendants, siblings in index order. Nodes caught in a parent cycle have
/// no root; the walk starts one at the lowest such index. Each entry is the node and, for
/// each level below the root down to the node, whether that ancestor (or the node) is its
/// parent's last child: what a tree view needs to draw its branches.
pub fn tree_walk(parent: &[Option<usize>]) -> Vec<(usize, Vec<bool>)> {
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); parent.len()];
    for (i, p) in parent.iter().enumerate() {
        if let Some(p) = p {
            children[*p].push(i);
        }
    }
    let mut placed = vec![false; parent.len()];
    let mut out = Vec::with_capacity(parent.len());
    let mut stack: Vec<(usize, Vec<bool>)> = (0..parent.len())
        .rev()
        .filter(|&i| parent[i].is_none())
        .map(|i| (i, Vec::new()))
        .collect();
    loop {
        while let Some((i, last)) = stack.pop() {
            if std::mem::replace(&mut placed[i], true) {
                continue;
            }
            let kids: Vec<usize> = children[i]
                .iter()
                .copied()
                .filter(|&c| !placed[c])
                .collect();
            for (k, &c) in kids.iter().enumerate().rev() {
                let mut l = last.clone();
                l.push(k + 1 == kids.len());
                stack.push((c, l));
            }
            out.push((i, last));
        }
        match (0..parent.len()).find(|&i| !placed[i]) {
            Some(i) => stack.push((i, Vec::new())),
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::tree_walk;

    #[test]
    fn tree_walk_table() {
        // 0 ─ 2 ─ 3, 0 ─ 4; 1 a second root; 5 ⇄ 6 a cycle with no root.
        let parent = [None, None, Some(0), Some(2), Some(0), Some(6), Some(5)];
        let got = tree_walk(&parent);
        let want: Vec<(usize, Vec<bool>)> = vec![
            (0, vec![]),
            (2, vec![false]),
            (3, vec![false, true]),
            (4, vec![true]),
            (1, vec![]),
            (5, vec![]),
            (6, vec![true]),
        ];
        assert_eq!(got, want);
        assert_eq!(tree_walk(&[]), vec![]);
        assert_eq!(tree_walk(&[Some(0)]), vec![(0, vec![])]);
    }
}
