//! An in-memory replication topology that implements [`Executor`], with fault injection.
//!
//! Takes a topology built in code (servers, sources, knobs) and faults injected by tests,
//! gives [`ServerState`]s shaped exactly like the ones [`MysqlExecutor`] reads from real
//! servers. No network and no clock: the only I/O-like thing is an optional simulated
//! latency (`tokio::time::sleep`) in [`Executor::observe`], zero by default.
//!
//! [`MysqlExecutor`]: super::mysql::MysqlExecutor
//!
//! # The model
//!
//! Time moves only when a test calls [`Simulator::tick`]: in one tick every running link
//! delivers, sources before their replicas, so a write reaches the bottom of a chain in one
//! tick. A replica keeps a relay log: the IO thread copies what its source binlogged and it
//! lacks, the SQL thread applies it, leaving [`SimReplication::lag`] transactions unapplied
//! so tests get lagging replicas. `Seconds_Behind_Master` is the relay log's length times
//! [`Simulator::set_seconds_per_transaction`] (1 s by default).
//!
//! GTIDs follow the servers' own rules, kept with [`crate::gtid`]'s types:
//!
//! | flavour | a local write | a replicated transaction | the replica asks its source for |
//! |---|---|---|---|
//! | MariaDB | `domain-own_server_id-(highest seq in the domain's binlog state + 1)` | `gtid_slave_pos` moves; binlogged with the *original* server_id when `log_slave_updates` | everything after `Gtid_IO_Pos` (`Using_Gtid=Slave_Pos`) |
//! | MySQL | `own_uuid:next` | added to `gtid_executed`; binlogged when `log_replica_updates` | everything not in `gtid_executed` ∪ `Retrieved_Gtid_Set` (auto-position) |
//!
//! `gtid_current_pos` is derived as MariaDB derives it (see `mariadb_current_pos`), so an
//! errant write on a replica shows there and in `gtid_binlog_state`, where
//! [`crate::gtid`]'s errant detection finds it.
//!
//! # Faults
//!
//! | call | orch sees | the server's replicas see |
//! |---|---|---|
//! | [`kill`](Simulator::kill) | `Refused` | IO `Connecting`, errno 2003, at once (the TCP connection is reset) |
//! | [`freeze`](Simulator::freeze) | `HungAfterConnect` | IO `Connecting`, errno 2013, from the next tick (`slave_net_timeout` expired) |
//! | [`partition_from_orch`](Simulator::partition_from_orch) | `TimedOut` | nothing: they keep replicating |
//! | [`access_denied`](Simulator::access_denied) | `AccessDenied` | nothing: only orch's account is refused |
//! | [`exhaust_connections`](Simulator::exhaust_connections) | `ConnectionLimit` (error 1040) | connected ones nothing; one that (re)connects: IO `Connecting`, errno 1040 |
//! | [`break_sql`](Simulator::break_sql) | SQL thread stopped with that error | — |
//! | [`purge_binlogs`](Simulator::purge_binlogs) | `purged` = everything so far (MariaDB: the binlog state, read from the oldest binlog's `Gtid_list`; MySQL: `gtid_purged`) | nothing while connected; one that (re)connects needing a purged transaction: IO stopped, error 1236 |
//!
//! [`restart`](Simulator::restart) brings a killed (or frozen) server back as a server
//! start does; [`thaw`](Simulator::thaw) resumes a frozen one; [`heal`](Simulator::heal)
//! lifts a partition or an access denial. Replicas reconnect to a returning source on the
//! next tick (`MASTER_CONNECT_RETRY`), and a reconnect can fail as it does on a real server:
//! MariaDB error 1236 when the replica's position is not in the new source's binlog state,
//! MySQL error 1236 when the replica has more of the source's own GTIDs than the source, and
//! both when the source purged a transaction the replica still needs. MariaDB
//! `gtid_strict_mode` stops the SQL thread (error 1950) when a replicated GTID would be
//! out of order in the replica's binlog, the classic consequence of an errant write.
//!
//! The state-changing calls ([`set_read_only`](Simulator::set_read_only),
//! [`stop_replication`](Simulator::stop_replication),
//! [`start_replication`](Simulator::start_replication),
//! [`change_source`](Simulator::change_source)) act on the state whatever the server's
//! health: they model "this happened", and panic on an unknown address because that is a
//! mistake in the test. A future `execute(step)` checks reachability first and then calls
//! them. Only [`write`](Simulator::write) fails softly, since applications writing to a
//! dead server is a scenario, not a mistake.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::Executor;
use crate::gtid::{
    Flavor, GtidSet, Interval, MariadbBinlogState, MariadbGtid, MariadbGtidPos, MysqlGtidSet, Tsid,
    Uuid,
};
use crate::observe::{
    ConnectedReplica, Gtids, IoState, Reach, Replication, ReplicationError, SemiSync, ServerInfo,
    ServerState, Unreachable,
};
use crate::step::{StepError, StepOutcome};
use crate::topology::Address;

/// The account replicas connect with and the one orch connects with; only used in the
/// error messages a real server would print.
const REPLICATION_USER: &str = "repl";
const ORCH_USER: &str = "orch";

/// The client error numbers a replica's IO thread reports.
const CR_CONN_HOST_ERROR: u32 = 2003;
const CR_SERVER_LOST: u32 = 2013;
/// ER_CON_COUNT_ERROR, "Too many connections".
const ER_CON_COUNT_ERROR: u32 = 1040;
const ER_MASTER_FATAL_ERROR_READING_BINLOG: u32 = 1236;
const ER_GTID_STRICT_OUT_OF_ORDER: u32 = 1950;

/// Where the simulated servers of the shortcut topologies live: host `i` (from 0) is
/// `10.a.b.c:3306` with `a.b.c` = `i + 1`, so the first is `10.0.0.1:3306`. Nothing
/// connects to these addresses.
pub fn host_address(i: usize) -> Address {
    let n = i + 1;
    Address {
        host: format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff),
        port: 3306,
    }
}

/// Anything a test names a server by: an [`Address`] or its `host:port` text.
pub trait SimAddress {
    /// Panics on text that is not an address: that is a mistake in the test.
    fn to_address(self) -> Address;
}

impl SimAddress for &str {
    #[track_caller]
    fn to_address(self) -> Address {
        Address::parse(self).unwrap_or_else(|e| panic!("simulator address {self:?}: {e}"))
    }
}

impl SimAddress for &String {
    #[track_caller]
    fn to_address(self) -> Address {
        self.as_str().to_address()
    }
}

impl SimAddress for &Address {
    fn to_address(self) -> Address {
        self.clone()
    }
}

impl SimAddress for Address {
    fn to_address(self) -> Address {
        self
    }
}

/// The process and network state of a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Up,
    /// The process is gone: connections are refused.
    Down,
    /// SIGSTOPped: TCP connects (the kernel answers) but nothing else happens.
    Frozen,
    /// orch cannot reach it; replicas still can (the UnreachablePrimary case).
    PartitionedFromOrch,
    /// orch's account is refused; replication is unaffected.
    AccessDenied,
    /// Out of connections (`max_connections`): every new connection, orch's and the
    /// replicas' IO threads alike, is answered with error 1040. Connections already open
    /// (replicas connected before) keep working.
    TooManyConnections,
}

impl Health {
    /// Whether the server process runs: it applies, binlogs and serves its replicas.
    pub fn process_running(self) -> bool {
        !matches!(self, Health::Down | Health::Frozen)
    }
}

/// Why the simulator refused an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimError {
    UnknownServer(Address),
    /// The server's process is not running (killed or frozen).
    NotRunning {
        address: Address,
        health: Health,
    },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::UnknownServer(a) => write!(f, "no simulated server at {a}"),
            SimError::NotRunning { address, health } => {
                write!(f, "simulated server {address} is not running ({health:?})")
            }
        }
    }
}

impl std::error::Error for SimError {}

/// How long a simulated observation takes, by outcome. Zero by default; under paused
/// tokio time it lets tests see `observe_all` concurrency and per-host timeouts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    /// A server that answers (also `Refused` and `AccessDenied`, which answer quickly).
    pub answer: Duration,
    /// A partitioned server: the executor's connect timeout.
    pub timed_out: Duration,
    /// A frozen server: the executor's connect plus read timeout.
    pub hung: Duration,
}

impl Latency {
    /// Every observation takes `d`.
    pub fn uniform(d: Duration) -> Self {
        Latency {
            answer: d,
            timed_out: d,
            hung: d,
        }
    }
}

/// One transaction as it travels through binlogs and relay logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Txn {
    Mariadb(MariadbGtid),
    Mysql(Uuid, u64),
}

/// A server's GTID variables, in the flavour's own model.
#[derive(Clone, Debug)]
enum Positions {
    Mariadb {
        /// `gtid_binlog_state`; `gtid_binlog_pos` is its most recent GTID per domain.
        binlog_state: MariadbBinlogState,
        /// `gtid_slave_pos`: the last replicated GTID applied, per domain.
        slave_pos: MariadbGtidPos,
        /// The `Gtid_list` of the oldest binlog file: the binlog state at the last purge.
        purged: MariadbBinlogState,
    },
    Mysql {
        executed: MysqlGtidSet,
        /// `gtid_purged`: executed transactions no longer in the binlog.
        purged: MysqlGtidSet,
    },
}

/// What a replica's IO thread has received: MariaDB `Gtid_IO_Pos`, MySQL
/// `Retrieved_Gtid_Set`.
#[derive(Clone, Debug)]
enum Retrieved {
    Mariadb(MariadbGtidPos),
    Mysql(MysqlGtidSet),
}

/// A replica's replication configuration and threads (`SHOW SLAVE STATUS`).
#[derive(Clone, Debug)]
pub struct SimReplication {
    /// Change it with [`Simulator::change_source`], which also resets the relay log.
    pub source: Address,
    pub io: IoState,
    pub sql_running: bool,
    pub last_io_error: Option<ReplicationError>,
    pub last_sql_error: Option<ReplicationError>,
    /// `MASTER_DELAY`: the SQL thread applies nothing while it is set (every transaction
    /// the simulator makes is younger than any delay: a delayed replica keeps what it
    /// received in its relay log, as a real one does within a failover's wait).
    pub sql_delay: u32,
    /// Replication filters `SHOW SLAVE STATUS` reports (reported only: the simulator has
    /// no schemas).
    pub filters: Vec<String>,
    /// The SQL thread waits on a lock held by a session: it applies nothing, and `STOP
    /// SLAVE` (which waits for it) does not return.
    pub blocked: bool,
    pub connect_retry: u32,
    pub heartbeat_period: f64,
    /// The source's server_id as last seen on connect (0 until then).
    pub source_server_id: u32,
    /// Transactions the SQL thread leaves unapplied in the relay log.
    pub lag: u64,
    relay: VecDeque<Txn>,
    retrieved: Retrieved,
}

impl SimReplication {
    fn new(source: Address, flavor: Flavor) -> Self {
        SimReplication {
            source,
            io: IoState::Connecting,
            sql_running: true,
            last_io_error: None,
            last_sql_error: None,
            sql_delay: 0,
            filters: Vec::new(),
            blocked: false,
            // As the sandboxes configure replication: outages noticed and healed quickly.
            connect_retry: 1,
            heartbeat_period: 1.0,
            source_server_id: 0,
            lag: 0,
            relay: VecDeque::new(),
            retrieved: empty_retrieved(flavor),
        }
    }

    /// Transactions received but not yet applied.
    pub fn relay_len(&self) -> usize {
        self.relay.len()
    }

    fn io_error(&mut self, errno: u32, message: String) {
        self.last_io_error = Some(ReplicationError { errno, message });
    }
}

fn empty_retrieved(flavor: Flavor) -> Retrieved {
    match flavor {
        Flavor::Mariadb => Retrieved::Mariadb(MariadbGtidPos::new()),
        Flavor::Mysql => Retrieved::Mysql(MysqlGtidSet::new()),
    }
}

/// One simulated server. The public fields are the knobs; the GTID state and logs are kept
/// consistent by the simulator and read through [`SimServer::gtids`].
#[derive(Clone, Debug)]
pub struct SimServer {
    pub address: Address,
    pub flavor: Flavor,
    pub server_id: u32,
    /// MySQL only.
    pub server_uuid: Option<Uuid>,
    pub version: String,
    /// MariaDB `gtid_domain_id` of local writes.
    pub domain_id: u32,
    pub read_only: bool,
    /// MySQL only; reported as None on MariaDB.
    pub super_read_only: bool,
    pub log_bin: bool,
    pub log_replica_updates: bool,
    /// MariaDB only; reported as None on MySQL.
    pub gtid_strict_mode: bool,
    pub replica_net_timeout: u32,
    pub report_host: Option<String>,
    pub report_port: Option<u16>,
    /// Whether replication threads stay stopped when the server (re)starts.
    pub skip_replica_start: bool,
    /// Schemas other than the system ones (see [`Simulator::create_schema`]).
    pub user_schemas: Vec<String>,
    /// Client sessions that can write despite `read_only` (READ_ONLY ADMIN, granted
    /// directly or through a role, or an event whose definer holds it): each commits one
    /// transaction per tick until a fence that kills writers ends it.
    pub privileged_writers: u32,
    pub semi_sync: Option<SemiSync>,
    pub health: Health,
    /// None: not configured as a replica.
    pub replication: Option<SimReplication>,
    positions: Positions,
    /// Every transaction written to this server's binlog since the last
    /// [`Simulator::purge_binlogs`], in order.
    binlog: Vec<Txn>,
}

impl SimServer {
    /// A writable server with no history, configured as the sandboxes configure servers.
    pub fn new(address: Address, flavor: Flavor, server_id: u32) -> Self {
        let (version, server_uuid, positions) = match flavor {
            Flavor::Mariadb => (
                "10.11.6-MariaDB-log",
                None,
                Positions::Mariadb {
                    binlog_state: MariadbBinlogState::new(),
                    slave_pos: MariadbGtidPos::new(),
                    purged: MariadbBinlogState::new(),
                },
            ),
            Flavor::Mysql => (
                "8.0.36",
                Some(Uuid::from_u128(
                    0x3e11_fa47_71ca_11e1_9e33_c80a_0000_0000 | u128::from(server_id),
                )),
                Positions::Mysql {
                    executed: MysqlGtidSet::new(),
                    purged: MysqlGtidSet::new(),
                },
            ),
        };
        SimServer {
            report_host: Some(address.host.clone()),
            report_port: Some(address.port),
            address,
            flavor,
            server_id,
            server_uuid,
            version: version.into(),
            domain_id: 0,
            read_only: false,
            super_read_only: false,
            log_bin: true,
            log_replica_updates: true,
            gtid_strict_mode: true,
            // `slave_net_timeout = 4` as in the sandboxes ("fast detection").
            replica_net_timeout: 4,
            skip_replica_start: false,
            user_schemas: Vec::new(),
            privileged_writers: 0,
            semi_sync: None,
            health: Health::Up,
            replication: None,
            positions,
            binlog: Vec::new(),
        }
    }

    /// The GTID variables as the server would print them.
    pub fn gtids(&self) -> Gtids {
        match &self.positions {
            Positions::Mariadb {
                binlog_state,
                slave_pos,
                purged,
            } => Gtids::Mariadb {
                current_pos: mariadb_current_pos(binlog_state, slave_pos, self.server_id)
                    .to_string(),
                binlog_pos: binlog_state.most_recent().to_string(),
                binlog_state: binlog_state.to_string(),
                slave_pos: slave_pos.to_string(),
                // As MysqlExecutor reads it from the Gtid_list event: the last GTID per
                // domain.
                purged: purged.most_recent().to_string(),
            },
            Positions::Mysql { executed, purged } => Gtids::Mysql {
                executed: executed.to_string(),
                purged: purged.to_string(),
                gtid_mode: "ON".into(),
            },
        }
    }

    /// `gtid_current_pos` / `gtid_executed`.
    pub fn position(&self) -> GtidSet {
        match &self.positions {
            Positions::Mariadb {
                binlog_state,
                slave_pos,
                ..
            } => GtidSet::Mariadb(mariadb_current_pos(binlog_state, slave_pos, self.server_id)),
            Positions::Mysql { executed, .. } => GtidSet::Mysql(executed.clone()),
        }
    }

    fn own_tsid(&self) -> Tsid {
        Tsid::untagged(self.server_uuid.expect("a MySQL server has a uuid"))
    }

    /// Commits one transaction written directly on this server.
    fn commit_local(&mut self) {
        let (log_bin, server_id, domain_id) = (self.log_bin, self.server_id, self.domain_id);
        let tsid = (self.flavor == Flavor::Mysql).then(|| self.own_tsid());
        match &mut self.positions {
            Positions::Mariadb { binlog_state, .. } => {
                // MariaDB gives a transaction a GTID only when it is binlogged; the next
                // seq_no follows the domain's binlog state, not gtid_slave_pos (so a
                // replica without log_slave_updates writes `0-<own id>-1` after
                // replicating `0-1-100`).
                if log_bin {
                    let seq = binlog_state
                        .iter()
                        .filter(|g| g.domain_id == domain_id)
                        .map(|g| g.seq_no)
                        .max();
                    let gtid = MariadbGtid::new(domain_id, server_id, seq.unwrap_or(0) + 1);
                    binlog_state.insert(gtid);
                    self.binlog.push(Txn::Mariadb(gtid));
                }
            }
            Positions::Mysql { executed, .. } => {
                // gtid_executed records every transaction, binlog or not (mysql.gtid_executed).
                let tsid = tsid.expect("MySQL");
                let gno = executed
                    .intervals(&tsid)
                    .last()
                    .map_or(1, |iv| iv.end() + 1);
                executed.insert(tsid.clone(), Interval::single(gno).expect("gno >= 1"));
                if log_bin {
                    self.binlog.push(Txn::Mysql(tsid.uuid, gno));
                }
            }
        }
    }

    /// Whether the IO thread still needs `txn` from its source.
    fn wants(&self, txn: &Txn) -> bool {
        let Some(rep) = &self.replication else {
            return false;
        };
        match (txn, &rep.retrieved, &self.positions) {
            (Txn::Mariadb(g), Retrieved::Mariadb(io_pos), _) => {
                io_pos.get(g.domain_id).is_none_or(|p| g.seq_no > p.seq_no)
            }
            (
                Txn::Mysql(uuid, gno),
                Retrieved::Mysql(retrieved),
                Positions::Mysql { executed, .. },
            ) => {
                let tsid = Tsid::untagged(*uuid);
                !retrieved.contains_gtid(&tsid, *gno) && !executed.contains_gtid(&tsid, *gno)
            }
            _ => false,
        }
    }

    /// The SQL thread applies one replicated transaction.
    fn apply(&mut self, txn: Txn) -> Result<(), ReplicationError> {
        let binlogs = self.log_bin && self.log_replica_updates;
        match (txn, &mut self.positions) {
            (
                Txn::Mariadb(g),
                Positions::Mariadb {
                    binlog_state,
                    slave_pos,
                    ..
                },
            ) => {
                if binlogs && self.gtid_strict_mode {
                    let clash = binlog_state
                        .iter()
                        .filter(|e| e.domain_id == g.domain_id)
                        .max_by_key(|e| e.seq_no);
                    if let Some(existing) = clash.filter(|e| e.seq_no >= g.seq_no) {
                        return Err(ReplicationError {
                            errno: ER_GTID_STRICT_OUT_OF_ORDER,
                            message: format!(
                                "An attempt was made to binlog GTID {g} which would create an out-of-order \
                                 sequence number with existing GTID {existing}, and gtid strict mode is enabled"
                            ),
                        });
                    }
                }
                slave_pos.insert(g);
                if binlogs {
                    binlog_state.insert(g);
                    self.binlog.push(txn);
                }
            }
            (Txn::Mysql(uuid, gno), Positions::Mysql { executed, .. }) => {
                let tsid = Tsid::untagged(uuid);
                // Auto-position skips what is already executed.
                if !executed.contains_gtid(&tsid, gno) {
                    executed.insert(tsid, Interval::single(gno).expect("gno >= 1"));
                    if binlogs {
                        self.binlog.push(txn);
                    }
                }
            }
            _ => unreachable!("one flavour per topology"),
        }
        Ok(())
    }

    fn replication_status(&self, seconds_per_transaction: u64) -> Option<Replication> {
        let rep = self.replication.as_ref()?;
        let (gtid_mode, retrieved_gtid, executed_gtid) = match (&rep.retrieved, &self.positions) {
            (Retrieved::Mariadb(io_pos), Positions::Mariadb { slave_pos, .. }) => {
                ("Slave_Pos", io_pos.to_string(), slave_pos.to_string())
            }
            (Retrieved::Mysql(retrieved), Positions::Mysql { executed, .. }) => {
                ("auto_position", retrieved.to_string(), executed.to_string())
            }
            _ => unreachable!("one flavour per server"),
        };
        let connected = rep.io == IoState::Running && rep.sql_running;
        Some(Replication {
            source_host: rep.source.host.clone(),
            source_port: rep.source.port,
            io: rep.io,
            sql_running: rep.sql_running,
            last_io_error: rep.last_io_error.clone(),
            last_sql_error: rep.last_sql_error.clone(),
            seconds_behind: connected.then(|| rep.relay.len() as u64 * seconds_per_transaction),
            gtid_mode: gtid_mode.into(),
            retrieved_gtid,
            executed_gtid,
            sql_delay: rep.sql_delay,
            connect_retry: rep.connect_retry,
            heartbeat_period: rep.heartbeat_period,
            source_server_id: rep.source_server_id,
            filters: rep.filters.clone(),
            source_uuid: None,
        })
    }

    fn info(&self, replicas: Vec<ConnectedReplica>, seconds_per_transaction: u64) -> ServerInfo {
        let mariadb = self.flavor == Flavor::Mariadb;
        ServerInfo {
            flavor: self.flavor,
            version: self.version.clone(),
            server_id: self.server_id,
            server_uuid: self.server_uuid.map(|u| u.to_string()),
            read_only: self.read_only,
            super_read_only: (!mariadb).then_some(self.super_read_only),
            log_bin: self.log_bin,
            log_replica_updates: self.log_replica_updates,
            binlog_format: "ROW".into(),
            gtid_strict_mode: mariadb.then_some(self.gtid_strict_mode),
            semi_sync: self.semi_sync,
            gtid: self.gtids(),
            replica_net_timeout: self.replica_net_timeout,
            report_host: self.report_host.clone(),
            report_port: self.report_port,
            replication: self.replication_status(seconds_per_transaction),
            replicas,
            user_schemas: Some(self.user_schemas.clone()),
            privileges: None,
            channels: Vec::new(),
            main_port_refused: None,
        }
    }
}

/// MariaDB's `contains_all_slave_gtid`: whether a replica asking for everything after
/// `io_pos` can start in a binlog whose oldest file opens with the `Gtid_list` `purged`.
/// It cannot when it lacks one of the listed domains (it needs that domain from its
/// beginning), or is behind a listed GTID of the same server_id, unless it is exactly the
/// domain's most recent one (then nothing it needs was purged).
fn mariadb_can_start_after(io_pos: &MariadbGtidPos, purged: &MariadbBinlogState) -> bool {
    let last = purged.most_recent();
    purged.iter().all(|g| match io_pos.get(g.domain_id) {
        None => false,
        Some(mine) if mine.server_id == g.server_id && mine.seq_no <= g.seq_no => {
            mine.seq_no == g.seq_no && last.get(g.domain_id) == Some(*g)
        }
        Some(_) => true,
    })
}

/// MariaDB's `gtid_current_pos` (`rpl_slave_state::iterate`): per domain, the binlog's GTID
/// when it carries this server's own server_id and a higher seq_no than `gtid_slave_pos`,
/// otherwise `gtid_slave_pos`'s. A binlog GTID from another server never shows here unless
/// it was replicated (then it is in `gtid_slave_pos`).
fn mariadb_current_pos(
    binlog_state: &MariadbBinlogState,
    slave_pos: &MariadbGtidPos,
    server_id: u32,
) -> MariadbGtidPos {
    let mut pos = slave_pos.clone();
    for g in binlog_state
        .most_recent()
        .iter()
        .filter(|g| g.server_id == server_id)
    {
        if slave_pos
            .get(g.domain_id)
            .is_none_or(|s| g.seq_no > s.seq_no)
        {
            pos.insert(*g);
        }
    }
    pos
}

struct State {
    /// In insertion order: [`Simulator::addresses`] and the shortcut topologies rely on it.
    servers: Vec<SimServer>,
    index: HashMap<Address, usize>,
    /// Replica indexes by source address (ascending), so observing a 1,000-host tree does
    /// not scan every server for each one's replicas.
    replicas_of: HashMap<Address, Vec<usize>>,
    latency: Latency,
    seconds_per_transaction: u64,
}

impl State {
    #[track_caller]
    fn idx(&self, address: &Address) -> usize {
        *self
            .index
            .get(address)
            .unwrap_or_else(|| panic!("no simulated server at {address}"))
    }

    fn source_of(&self, i: usize) -> Option<&Address> {
        self.servers[i].replication.as_ref().map(|r| &r.source)
    }

    fn link(&mut self, i: usize) {
        if let Some(source) = self.source_of(i).cloned() {
            let list = self.replicas_of.entry(source).or_default();
            if let Err(at) = list.binary_search(&i) {
                list.insert(at, i);
            }
        }
    }

    fn unlink(&mut self, i: usize) {
        if let Some(source) = self.source_of(i).cloned()
            && let Some(list) = self.replicas_of.get_mut(&source)
        {
            list.retain(|&j| j != i);
        }
    }

    #[track_caller]
    fn add(&mut self, server: SimServer) {
        assert!(
            !self.index.contains_key(&server.address),
            "two simulated servers at {}",
            server.address
        );
        let i = self.servers.len();
        self.index.insert(server.address.clone(), i);
        self.servers.push(server);
        self.link(i);
        self.refresh_link(i);
    }

    /// Brings replica `i`'s IO thread in line with its source: disconnected when the
    /// source is gone or frozen, (re)connected when it is back.
    fn refresh_link(&mut self, i: usize) {
        let r = &self.servers[i];
        let Some(rep) = &r.replication else { return };
        if !r.health.process_running() || rep.io == IoState::Stopped {
            return;
        }
        let source = self.index.get(&rep.source).copied();
        let source_health = source.map(|s| self.servers[s].health);
        let src = rep.source.clone();
        let retry = rep.connect_retry;
        let lost = |rep: &mut SimReplication, errno, why: &str| {
            rep.io = IoState::Connecting;
            rep.io_error(
                errno,
                format!(
                    "error reconnecting to master '{REPLICATION_USER}@{src}' - retry-time: {retry}  \
                     maximum-retries: 100000  message: {why}"
                ),
            );
        };
        let rep = self.servers[i].replication.as_mut().expect("checked above");
        match source_health {
            None | Some(Health::Down) => lost(
                rep,
                CR_CONN_HOST_ERROR,
                &format!(
                    "Can't connect to server on '{}' (111 \"Connection refused\")",
                    src.host
                ),
            ),
            // The replica's connection stays open but silent; after slave_net_timeout it
            // reconnects, and the handshake never completes.
            Some(Health::Frozen) => lost(
                rep,
                CR_SERVER_LOST,
                "Lost connection to server at 'handshake: reading initial communication packet', system error: 110",
            ),
            // The source answers the connection with an error packet; the IO thread retries
            // every MASTER_CONNECT_RETRY.
            Some(Health::TooManyConnections) if rep.io == IoState::Connecting => {
                lost(rep, ER_CON_COUNT_ERROR, "Too many connections")
            }
            Some(_) if rep.io == IoState::Connecting => {
                self.connect(i, source.expect("healthy source exists"))
            }
            Some(_) => {}
        }
    }

    /// The IO thread's handshake with a running source, including the position checks the
    /// source makes before it streams, in the source's order.
    fn connect(&mut self, i: usize, s: usize) {
        let refusal = {
            let (r, src) = (&self.servers[i], &self.servers[s]);
            let rep = r.replication.as_ref().expect("a replica");
            match (&rep.retrieved, &r.positions, &src.positions) {
                (
                    Retrieved::Mariadb(io_pos),
                    _,
                    Positions::Mariadb {
                        binlog_state,
                        purged,
                        ..
                    },
                ) => {
                    // `check_slave_start_position`: every requested GTID must be in the
                    // binlog state (which a purge leaves alone)...
                    let missing = io_pos.iter().find(|g| {
                        binlog_state
                            .get(g.domain_id, g.server_id)
                            .is_none_or(|n| n < g.seq_no)
                    });
                    missing
                        .map(|g| {
                            format!(
                                "Got fatal error 1236 from master when reading data from binary log: 'Error: \
                                 connecting slave requested to start from GTID {g}, which is not in the master's binlog'"
                            )
                        })
                        // ...then `gtid_find_binlog_file`: and the binlog that is left
                        // must hold everything after it.
                        .or_else(|| {
                            (!mariadb_can_start_after(io_pos, purged)).then(|| {
                                "Got fatal error 1236 from master when reading data from binary log: 'Could not \
                                 find GTID state requested by slave in any binlog files. Probably the slave state \
                                 is too old and required binlog files have been purged.'"
                                    .to_string()
                            })
                        })
                }
                (
                    Retrieved::Mysql(retrieved),
                    Positions::Mysql { executed, .. },
                    Positions::Mysql {
                        executed: theirs,
                        purged,
                    },
                ) => {
                    let own = src.own_tsid();
                    let mine = executed.intervals(&own);
                    let mut of_source = MysqlGtidSet::new();
                    mine.iter()
                        .for_each(|iv| of_source.insert(own.clone(), *iv));
                    // Auto-position sends gtid_executed plus what the relay log holds.
                    let sent = executed.union(retrieved);
                    if !of_source.is_subset(theirs) {
                        Some(
                            "Got fatal error 1236 from source when reading data from binary log: 'Replica has more \
                             GTIDs than the source has, using the source's SERVER_UUID.'"
                                .to_string(),
                        )
                    } else if !purged.is_subset(&sent) {
                        Some(format!(
                            "Got fatal error 1236 from source when reading data from binary log: 'Cannot replicate \
                             because the source purged required binary logs. Replicate the missing transactions \
                             from elsewhere, or provision a new replica from backup. Consider increasing the \
                             source's binary log expiration period. The GTID set sent by the replica is '{sent}', \
                             and the missing transactions are '{}'.'",
                            purged.subtract(&sent)
                        ))
                    } else {
                        None
                    }
                }
                _ => Some("Got fatal error 1236: the source is another flavour".into()),
            }
        };
        let source_id = self.servers[s].server_id;
        let rep = self.servers[i].replication.as_mut().expect("a replica");
        match refusal {
            // A fatal error stops the IO thread; it does not retry.
            Some(message) => {
                rep.io = IoState::Stopped;
                rep.io_error(ER_MASTER_FATAL_ERROR_READING_BINLOG, message);
            }
            None => {
                rep.io = IoState::Running;
                rep.last_io_error = None;
                rep.source_server_id = source_id;
            }
        }
    }

    /// Sources before replicas, so one pass carries a write down a whole chain. Servers in
    /// a replication ring (reachable from no root) come last, in insertion order.
    fn topological_order(&self) -> Vec<usize> {
        let mut order = Vec::with_capacity(self.servers.len());
        let mut seen = vec![false; self.servers.len()];
        let roots = (0..self.servers.len()).filter(|&i| {
            self.source_of(i)
                .is_none_or(|s| !self.index.contains_key(s))
        });
        let mut queue: VecDeque<usize> = roots.collect();
        let rest: Vec<usize> = (0..self.servers.len()).collect();
        loop {
            while let Some(i) = queue.pop_front() {
                if std::mem::replace(&mut seen[i], true) {
                    continue;
                }
                order.push(i);
                if let Some(kids) = self.replicas_of.get(&self.servers[i].address) {
                    queue.extend(kids.iter().copied().filter(|&k| !seen[k]));
                }
            }
            match rest.iter().find(|&&i| !seen[i]) {
                Some(&i) => queue.push_back(i),
                None => return order,
            }
        }
    }

    /// Replica `i`'s IO thread receives what it lacks of source `s`'s binlog.
    fn receive(&mut self, i: usize, s: usize) {
        let r = &self.servers[i];
        let own_id = r.server_id;
        let fresh: Vec<Txn> = self.servers[s]
            .binlog
            .iter()
            .filter(|t| r.wants(t))
            .copied()
            .collect();
        let rep = self.servers[i].replication.as_mut().expect("a replica");
        for txn in fresh {
            match (&mut rep.retrieved, txn) {
                (Retrieved::Mariadb(io_pos), Txn::Mariadb(g)) => {
                    io_pos.insert(g);
                    // replicate_same_server_id=0: a ring member's own events come back
                    // and are skipped.
                    if g.server_id == own_id {
                        continue;
                    }
                }
                (Retrieved::Mysql(set), Txn::Mysql(uuid, gno)) => {
                    set.insert(
                        Tsid::untagged(uuid),
                        Interval::single(gno).expect("gno >= 1"),
                    );
                }
                _ => continue,
            }
            rep.relay.push_back(txn);
        }
    }

    /// One tick of replica `i`: the IO thread fetches, the SQL thread applies.
    fn pull(&mut self, i: usize) {
        let r = &self.servers[i];
        let Some(rep) = &r.replication else { return };
        if !r.health.process_running() {
            return;
        }
        if rep.io == IoState::Running
            && let Some(&s) = self.index.get(&rep.source)
            && self.servers[s].health.process_running()
        {
            self.receive(i, s);
        }
        let server = &mut self.servers[i];
        let rep = server.replication.as_mut().expect("a replica");
        if !rep.sql_running || rep.sql_delay > 0 || rep.blocked {
            return;
        }
        let (mut relay, lag) = (std::mem::take(&mut rep.relay), rep.lag);
        let mut failed = None;
        while relay.len() as u64 > lag {
            let txn = *relay.front().expect("non-empty");
            if let Err(e) = server.apply(txn) {
                failed = Some(e);
                break;
            }
            relay.pop_front();
        }
        let rep = server.replication.as_mut().expect("a replica");
        rep.relay = relay;
        if let Some(e) = failed {
            rep.sql_running = false;
            rep.last_sql_error = Some(e);
        }
    }

    fn tick(&mut self) {
        for server in &mut self.servers {
            if server.health.process_running() {
                for _ in 0..server.privileged_writers {
                    server.commit_local();
                }
            }
        }
        for i in 0..self.servers.len() {
            self.refresh_link(i);
        }
        for i in self.topological_order() {
            self.pull(i);
        }
    }

    /// `SHOW SLAVE HOSTS` with `report_host`, else the processlist's binlog dump threads,
    /// as [`MysqlExecutor`](super::mysql::MysqlExecutor) reads them.
    fn connected_replicas(&self, address: &Address) -> Vec<ConnectedReplica> {
        let connected: Vec<&SimServer> = self
            .replicas_of
            .get(address)
            .into_iter()
            .flatten()
            .map(|&j| &self.servers[j])
            // A frozen replica's dump thread lingers on the source (its socket stays
            // open until the source's write timeout), so it is still listed.
            .filter(|r| {
                r.health != Health::Down
                    && r.replication
                        .as_ref()
                        .is_some_and(|rep| rep.io == IoState::Running)
            })
            .collect();
        let mut out: Vec<ConnectedReplica> = connected
            .iter()
            .filter_map(|r| {
                Some(ConnectedReplica {
                    server_id: Some(r.server_id),
                    host: r.report_host.clone()?,
                    port: r.report_port,
                })
            })
            .collect();
        if out.is_empty() {
            out = connected
                .iter()
                .map(|r| ConnectedReplica {
                    server_id: None,
                    host: r.address.host.clone(),
                    port: None,
                })
                .collect();
        }
        out.sort_by(|a, b| (a.server_id, &a.host, a.port).cmp(&(b.server_id, &b.host, b.port)));
        out
    }

    /// What orch would see now, and how long seeing it takes.
    fn observe(&self, address: &Address) -> (Reach, Duration) {
        let unreachable =
            |cause, detail: String, delay| (Reach::Unreachable { cause, detail }, delay);
        let l = self.latency;
        let Some(&i) = self.index.get(address) else {
            return unreachable(
                Unreachable::Refused,
                "nothing at this address (connection refused)".into(),
                l.answer,
            );
        };
        let server = &self.servers[i];
        match server.health {
            Health::Down => {
                unreachable(Unreachable::Refused, "connection refused".into(), l.answer)
            }
            Health::Frozen => unreachable(
                Unreachable::HungAfterConnect,
                "TCP connected but the server did not complete the handshake".into(),
                l.hung,
            ),
            Health::PartitionedFromOrch => unreachable(
                Unreachable::TimedOut,
                "no TCP connection within the connect timeout".into(),
                l.timed_out,
            ),
            Health::AccessDenied => unreachable(
                Unreachable::AccessDenied,
                format!(
                    "Access denied for user '{ORCH_USER}'@'10.255.255.254' (using password: YES)"
                ),
                l.answer,
            ),
            Health::TooManyConnections => unreachable(
                Unreachable::ConnectionLimit,
                format!("server error {ER_CON_COUNT_ERROR}: Too many connections"),
                l.answer,
            ),
            Health::Up => {
                let info = server.info(
                    self.connected_replicas(address),
                    self.seconds_per_transaction,
                );
                (Reach::Reachable(Box::new(info)), l.answer)
            }
        }
    }
}

/// An in-memory topology; clones share it.
#[derive(Clone)]
pub struct Simulator {
    state: Arc<Mutex<State>>,
}

impl Default for Simulator {
    fn default() -> Self {
        Simulator::new()
    }
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("servers", &self.lock().servers.len())
            .finish()
    }
}

impl Simulator {
    /// An empty topology.
    pub fn new() -> Self {
        Simulator {
            state: Arc::new(Mutex::new(State {
                servers: Vec::new(),
                index: HashMap::new(),
                replicas_of: HashMap::new(),
                latency: Latency::default(),
                seconds_per_transaction: 1,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock leaves consistent-enough state; the
        // panic is the failure worth reporting, not a poisoned mutex.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on one server's state (panics on an unknown address).
    #[track_caller]
    fn with<T>(&self, address: impl SimAddress, f: impl FnOnce(&mut State, usize) -> T) -> T {
        let address = address.to_address();
        let mut st = self.lock();
        let i = st.idx(&address);
        f(&mut st, i)
    }

    /// Adds a writable server with no source; server_ids are given in insertion order
    /// from 1.
    #[track_caller]
    pub fn add_primary(&self, address: impl SimAddress, flavor: Flavor) -> &Self {
        let address = address.to_address();
        let mut st = self.lock();
        let id = st.servers.len() as u32 + 1;
        st.add(SimServer::new(address, flavor, id));
        self
    }

    /// Adds a read-only replica of `source` (which must exist; the replica takes its
    /// flavour), connected at once and with no data yet: it fetches the source's whole
    /// binlog on the next tick, as a fresh `CHANGE MASTER ... MASTER_USE_GTID=slave_pos`
    /// replica does.
    #[track_caller]
    pub fn add_replica(&self, address: impl SimAddress, source: impl SimAddress) -> &Self {
        let (address, source) = (address.to_address(), source.to_address());
        let mut st = self.lock();
        let flavor = st.servers[st.idx(&source)].flavor;
        let id = st.servers.len() as u32 + 1;
        let mut server = SimServer::new(address, flavor, id);
        server.read_only = true;
        server.super_read_only = flavor == Flavor::Mysql;
        server.replication = Some(SimReplication::new(source, flavor));
        st.add(server);
        self
    }

    /// `n` servers at [`host_address`]`(0..n)`: host 0 the primary, host `i` a replica of
    /// host `(i - 1) / fanout`.
    pub fn tree(n: usize, fanout: usize, flavor: Flavor) -> Self {
        let sim = Simulator::new();
        let fanout = fanout.max(1);
        for i in 0..n {
            if i == 0 {
                sim.add_primary(host_address(0), flavor);
            } else {
                sim.add_replica(host_address(i), host_address((i - 1) / fanout));
            }
        }
        sim
    }

    /// A primary and `n - 1` replicas of it.
    pub fn star(n: usize, flavor: Flavor) -> Self {
        Simulator::tree(n, n.saturating_sub(1), flavor)
    }

    /// `n` servers, each replicating from the one before.
    pub fn chain(n: usize, flavor: Flavor) -> Self {
        Simulator::tree(n, 1, flavor)
    }

    /// Every server's address, in insertion order.
    pub fn addresses(&self) -> Vec<Address> {
        self.lock()
            .servers
            .iter()
            .map(|s| s.address.clone())
            .collect()
    }

    /// A copy of one server's state.
    pub fn server(&self, address: impl SimAddress) -> Option<SimServer> {
        let address = address.to_address();
        let st = self.lock();
        st.index.get(&address).map(|&i| st.servers[i].clone())
    }

    /// Changes a server's knobs (`read_only`, `log_replica_updates`, `report_host`, ...).
    /// A changed `replication.source` is moved as a plain edit; use
    /// [`Simulator::change_source`] for `CHANGE MASTER` semantics.
    #[track_caller]
    pub fn update(&self, address: impl SimAddress, f: impl FnOnce(&mut SimServer)) -> &Self {
        self.with(address, |st, i| {
            st.unlink(i);
            f(&mut st.servers[i]);
            st.link(i);
        });
        self
    }

    /// Keeps a replica `transactions` behind its source: its SQL thread leaves that many
    /// in the relay log.
    #[track_caller]
    pub fn set_lag(&self, address: impl SimAddress, transactions: u64) -> &Self {
        self.with(address, |st, i| {
            replication_mut(&mut st.servers[i]).lag = transactions
        });
        self
    }

    /// The server's semi-synchronous replication state (None: the server has none).
    #[track_caller]
    pub fn set_semi_sync(&self, address: impl SimAddress, semi: Option<SemiSync>) -> &Self {
        self.with(address, |st, i| st.servers[i].semi_sync = semi);
        self
    }

    /// How long observations take; zero by default.
    pub fn set_latency(&self, latency: Latency) -> &Self {
        self.lock().latency = latency;
        self
    }

    /// `Seconds_Behind_Master` per transaction in the relay log; 1 by default.
    pub fn set_seconds_per_transaction(&self, seconds: u64) -> &Self {
        self.lock().seconds_per_transaction = seconds;
        self
    }

    /// Commits `n` transactions directly on a server. On a replica that is an errant write,
    /// with the replica's own server_id (uuid). `read_only` is not checked: errant writes
    /// come from accounts it does not stop.
    pub fn write(&self, address: impl SimAddress, n: u64) -> Result<(), SimError> {
        let address = address.to_address();
        let mut st = self.lock();
        let i = *st
            .index
            .get(&address)
            .ok_or_else(|| SimError::UnknownServer(address.clone()))?;
        let server = &mut st.servers[i];
        if !server.health.process_running() {
            return Err(SimError::NotRunning {
                address,
                health: server.health,
            });
        }
        for _ in 0..n {
            server.commit_local();
        }
        Ok(())
    }

    /// [`Simulator::write`] on a replica, named for what it is.
    #[track_caller]
    pub fn errant(&self, address: impl SimAddress, n: u64) {
        let address = address.to_address();
        assert!(
            self.server(&address)
                .is_some_and(|s| s.replication.is_some()),
            "{address} is not a replica"
        );
        self.write(&address, n)
            .unwrap_or_else(|e| panic!("errant write: {e}"));
    }

    /// Time passes: replicas notice frozen sources and reconnect to returned ones, then
    /// every running link delivers (sources first), each replica's SQL thread stopping
    /// `lag` transactions short.
    pub fn tick(&self) {
        self.lock().tick();
    }

    /// The process dies: orch is refused, and its replicas' IO threads lose the
    /// connection at once and retry (`Connecting`, error 2003).
    #[track_caller]
    pub fn kill(&self, address: impl SimAddress) {
        self.with(address, |st, i| {
            st.servers[i].health = Health::Down;
            let address = st.servers[i].address.clone();
            for j in st.replicas_of.get(&address).cloned().unwrap_or_default() {
                st.refresh_link(j);
            }
        });
    }

    /// SIGSTOP: orch's connections hang after TCP connects; its replicas notice on the
    /// next tick (standing in for `slave_net_timeout`).
    #[track_caller]
    pub fn freeze(&self, address: impl SimAddress) {
        self.with(address, |st, i| st.servers[i].health = Health::Frozen);
    }

    /// SIGCONT after [`Simulator::freeze`]; replicas reconnect on the next tick.
    #[track_caller]
    pub fn thaw(&self, address: impl SimAddress) {
        self.with(address, |st, i| {
            if st.servers[i].health == Health::Frozen {
                st.servers[i].health = Health::Up;
            }
        });
    }

    /// Starts a killed (or frozen) server again, as a server start does: GTID state and
    /// binlog kept, relay log discarded and refetched from the GTID position, replication
    /// threads started unless `skip_replica_start`. Its replicas reconnect on the next tick.
    #[track_caller]
    pub fn restart(&self, address: impl SimAddress) {
        self.with(address, |st, i| {
            let server = &mut st.servers[i];
            server.health = Health::Up;
            let (flavor, skip) = (server.flavor, server.skip_replica_start);
            if let Some(rep) = server.replication.as_mut() {
                rep.relay.clear();
                rep.retrieved = retrieved_from_positions(&server.positions, flavor);
                rep.io = if skip {
                    IoState::Stopped
                } else {
                    IoState::Connecting
                };
                rep.sql_running = !skip;
                rep.last_io_error = None;
                rep.last_sql_error = None;
            }
            st.refresh_link(i);
        });
    }

    /// orch cannot reach the server (connects time out) while its replicas still can.
    #[track_caller]
    pub fn partition_from_orch(&self, address: impl SimAddress) {
        self.with(address, |st, i| {
            st.servers[i].health = Health::PartitionedFromOrch
        });
    }

    /// The server refuses orch's credentials; replication is unaffected.
    #[track_caller]
    pub fn access_denied(&self, address: impl SimAddress) {
        self.with(address, |st, i| st.servers[i].health = Health::AccessDenied);
    }

    /// The server runs out of connections: every new connection is answered with error
    /// 1040; the ones already open keep working.
    #[track_caller]
    pub fn exhaust_connections(&self, address: impl SimAddress) {
        self.with(address, |st, i| {
            st.servers[i].health = Health::TooManyConnections
        });
    }

    /// Lifts [`Simulator::partition_from_orch`], [`Simulator::access_denied`] or
    /// [`Simulator::exhaust_connections`].
    #[track_caller]
    pub fn heal(&self, address: impl SimAddress) {
        self.with(address, |st, i| {
            let h = &mut st.servers[i].health;
            if matches!(
                h,
                Health::PartitionedFromOrch | Health::AccessDenied | Health::TooManyConnections
            ) {
                *h = Health::Up;
            }
        });
    }

    /// `FLUSH BINARY LOGS` and `PURGE BINARY LOGS TO` the new file: the server's whole binary
    /// log is gone. It remembers what it purged (MariaDB: the binlog state, the new oldest
    /// file's `Gtid_list`; MySQL: `gtid_purged` = `gtid_executed`) and keeps logging after
    /// it. Replicas streaming from it are not affected: they receive what they still lacked
    /// first, as a real source does not purge a file a binlog dump thread still reads. A
    /// replica that later connects (after `START SLAVE`, a restart, a `CHANGE MASTER` or a
    /// lost connection) and needs a purged transaction is refused with error 1236 and its IO
    /// thread stops.
    #[track_caller]
    pub fn purge_binlogs(&self, address: impl SimAddress) {
        self.with(address, |st, i| {
            let address = st.servers[i].address.clone();
            if st.servers[i].health.process_running() {
                for j in st.replicas_of.get(&address).cloned().unwrap_or_default() {
                    // A frozen replica's dump thread still holds the file open, as it
                    // still lists the replica (see connected_replicas).
                    let r = &st.servers[j];
                    let streaming = r.health != Health::Down
                        && r.replication
                            .as_ref()
                            .is_some_and(|rep| rep.io == IoState::Running);
                    if streaming {
                        st.receive(j, i);
                    }
                }
            }
            let server = &mut st.servers[i];
            match &mut server.positions {
                Positions::Mariadb {
                    binlog_state,
                    purged,
                    ..
                } => *purged = binlog_state.clone(),
                Positions::Mysql { executed, purged } => *purged = executed.clone(),
            }
            server.binlog.clear();
        });
    }

    /// The SQL thread stops with this error (a duplicate key, a missing row, ...).
    #[track_caller]
    pub fn break_sql(&self, address: impl SimAddress, errno: u32, message: &str) {
        self.with(address, |st, i| {
            let rep = replication_mut(&mut st.servers[i]);
            rep.sql_running = false;
            rep.last_sql_error = Some(ReplicationError {
                errno,
                message: message.into(),
            });
        });
    }

    /// `STOP SLAVE`: both threads stop; errors and the relay log are kept.
    #[track_caller]
    pub fn stop_replication(&self, address: impl SimAddress) {
        self.with(address, |st, i| {
            let rep = replication_mut(&mut st.servers[i]);
            rep.io = IoState::Stopped;
            rep.sql_running = false;
        });
    }

    /// `STOP SLAVE IO_THREAD`: nothing more is received; the SQL thread drains the relay log
    /// (the lag knob no longer holds transactions back).
    #[track_caller]
    pub fn stop_io(&self, address: impl SimAddress) {
        self.with(address, |st, i| {
            let rep = replication_mut(&mut st.servers[i]);
            rep.io = IoState::Stopped;
            rep.lag = 0;
        });
    }

    /// `START SLAVE`: both threads start, clearing their last errors; the IO thread
    /// connects at once when the source is up.
    #[track_caller]
    pub fn start_replication(&self, address: impl SimAddress) {
        self.with(address, |st, i| {
            let rep = replication_mut(&mut st.servers[i]);
            if rep.io == IoState::Stopped {
                rep.io = IoState::Connecting;
                rep.last_io_error = None;
            }
            if !rep.sql_running {
                rep.sql_running = true;
                rep.last_sql_error = None;
            }
            st.refresh_link(i);
        });
    }

    /// `CHANGE MASTER TO MASTER_HOST=..., MASTER_USE_GTID=slave_pos` on a server whose
    /// replication is stopped (as the real statement requires; the threads stay stopped).
    /// The relay log is discarded; the next `START SLAVE` asks the new source for
    /// everything after the replica's GTID position. On a server that never replicated it
    /// configures replication.
    #[track_caller]
    pub fn change_source(&self, address: impl SimAddress, source: impl SimAddress) {
        let source = source.to_address();
        self.with(address, |st, i| {
            st.unlink(i);
            let server = &mut st.servers[i];
            let flavor = server.flavor;
            let retrieved = retrieved_from_positions(&server.positions, flavor);
            let rep = server.replication.get_or_insert_with(|| {
                let mut rep = SimReplication::new(source.clone(), flavor);
                rep.io = IoState::Stopped;
                rep.sql_running = false;
                rep
            });
            assert!(
                rep.io == IoState::Stopped && !rep.sql_running,
                "CHANGE MASTER needs replication stopped on {}",
                server.address
            );
            rep.source = source;
            rep.relay.clear();
            rep.retrieved = retrieved;
            rep.source_server_id = 0;
            st.link(i);
        });
    }

    /// `CREATE DATABASE` with `sql_log_bin=0`: data the server holds without GTID history
    /// (loaded by hand, or kept through a `RESET MASTER`).
    #[track_caller]
    pub fn create_schema(&self, address: impl SimAddress, name: &str) {
        self.with(address, |st, i| {
            st.servers[i].user_schemas.push(name.to_string());
        });
    }

    /// `SET GLOBAL read_only` (on MySQL also `super_read_only`, as fencing sets it and as
    /// turning `read_only` off clears it).
    #[track_caller]
    pub fn set_read_only(&self, address: impl SimAddress, on: bool) {
        self.with(address, |st, i| {
            let server = &mut st.servers[i];
            server.read_only = on;
            server.super_read_only = on && server.flavor == Flavor::Mysql;
        });
    }
    /// `RESET SLAVE ALL` on a server whose replication is stopped: it forgets its source.
    #[track_caller]
    pub fn reset_replication(&self, address: impl SimAddress) {
        self.with(address, |st, i| {
            if let Some(rep) = &st.servers[i].replication {
                assert!(
                    rep.io == IoState::Stopped && !rep.sql_running,
                    "RESET SLAVE ALL needs replication stopped on {}",
                    st.servers[i].address
                );
            }
            st.unlink(i);
            st.servers[i].replication = None;
        });
    }

    /// Runs one plan step as the server would, refusing it as the server (or orch's
    /// executor) would: the server does not answer, replication is running where it must
    /// be stopped, a wait times out. A wait lets time pass (ticks), one tick per second of
    /// its timeout.
    pub fn run_step(&self, step: &crate::step::Step) -> Result<(), StepError> {
        use crate::step::{Action, GtidPosition};
        let address = &step.address;
        let server = self
            .server(address)
            .ok_or_else(|| StepError::Precondition(format!("no server at {address}")))?;
        if server.health != Health::Up {
            return Err(StepError::Unreachable {
                host: step.host.clone(),
                detail: format!("{address} does not answer ({:?})", server.health),
            });
        }
        let stopped = server
            .replication
            .as_ref()
            .is_none_or(|r| r.io == IoState::Stopped && !r.sql_running);
        match &step.action {
            Action::Fence { kill_writers } => {
                self.set_read_only(address, true);
                if *kill_writers {
                    self.update(address, |s| s.privileged_writers = 0);
                }
            }
            Action::Unfence => self.set_read_only(address, false),
            Action::StopReplication => {
                if server.replication.as_ref().is_some_and(|r| r.blocked) {
                    return Err(StepError::Unreachable {
                        host: step.host.clone(),
                        detail: format!(
                            "{address} did not answer `STOP SLAVE` within the read timeout (its SQL thread waits on a lock)"
                        ),
                    });
                }
                if server.replication.is_some() {
                    self.stop_replication(address);
                }
            }
            Action::StopIo => {
                if server.replication.is_none() {
                    return Err(StepError::Precondition(format!(
                        "{address} has no source configured"
                    )));
                }
                self.stop_io(address);
            }
            Action::WaitRelayLog { timeout_secs } => {
                for _ in 0..=*timeout_secs {
                    let drained = self
                        .server(address)
                        .and_then(|s| s.replication)
                        .is_none_or(|r| r.relay.is_empty());
                    if drained {
                        return Ok(());
                    }
                    self.tick();
                }
                return Err(StepError::TimedOut(format!(
                    "{address} did not apply its relay log within {timeout_secs}s"
                )));
            }
            Action::StartReplication => {
                if server.replication.is_none() {
                    return Err(StepError::Precondition(format!(
                        "{address} has no source configured"
                    )));
                }
                self.start_replication(address);
            }
            Action::WaitForGtid {
                until_address,
                timeout_secs,
                ..
            } => {
                let target = self
                    .server(until_address)
                    .ok_or_else(|| {
                        StepError::Precondition(format!("no server at {until_address}"))
                    })?
                    .position();
                for _ in 0..=*timeout_secs {
                    let now = self.server(address).expect("exists").position();
                    if now.contains(&target).unwrap_or(false) {
                        return Ok(());
                    }
                    self.tick();
                }
                return Err(StepError::TimedOut(format!(
                    "{address} did not reach {target} within {timeout_secs}s"
                )));
            }
            Action::ChangeSource {
                source_address,
                gtid_position,
                delay_secs,
                ..
            } => {
                if !stopped {
                    return Err(StepError::Precondition(format!(
                        "{address}: replication must be stopped to change source"
                    )));
                }
                self.change_source(address, source_address);
                let delay = *delay_secs;
                let current = *gtid_position == GtidPosition::CurrentPos;
                self.update(address, |s| {
                    let current_pos = match (&s.positions, current) {
                        (
                            Positions::Mariadb {
                                binlog_state,
                                slave_pos,
                                ..
                            },
                            true,
                        ) => Some(mariadb_current_pos(binlog_state, slave_pos, s.server_id)),
                        _ => None,
                    };
                    let rep = s.replication.as_mut().expect("configured");
                    rep.sql_delay = delay;
                    if let Some(pos) = current_pos {
                        rep.retrieved = Retrieved::Mariadb(pos);
                    }
                });
            }
            Action::Promote => {
                if server.replication.is_some() {
                    return Err(StepError::Precondition(format!(
                        "{address}: its replication must be reset before it is promoted"
                    )));
                }
                self.set_read_only(address, false);
            }
            Action::ResetReplication => {
                if !stopped {
                    return Err(StepError::Precondition(format!(
                        "{address}: replication must be stopped to reset it"
                    )));
                }
                self.reset_replication(address);
            }
        }
        Ok(())
    }
}

/// Where a replica's IO thread starts after its relay log was discarded: MariaDB from
/// `gtid_slave_pos`, MySQL from nothing retrieved (auto-position sends what
/// `gtid_executed` lacks).
fn retrieved_from_positions(positions: &Positions, flavor: Flavor) -> Retrieved {
    match positions {
        Positions::Mariadb { slave_pos, .. } => Retrieved::Mariadb(slave_pos.clone()),
        Positions::Mysql { .. } => empty_retrieved(flavor),
    }
}

#[track_caller]
fn replication_mut(server: &mut SimServer) -> &mut SimReplication {
    let address = server.address.clone();
    server
        .replication
        .as_mut()
        .unwrap_or_else(|| panic!("{address} is not a replica"))
}

impl Executor for Simulator {
    async fn execute(&self, step: &crate::step::Step) -> Result<StepOutcome, StepError> {
        self.run_step(step).map(|()| StepOutcome::default())
    }

    async fn observe(&self, address: &Address) -> ServerState {
        // The lock is released before sleeping: observations overlap as real ones do.
        let (reach, delay) = self.lock().observe(address);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        ServerState {
            address: address.clone(),
            reach,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::observe_all;
    use crate::gtid::{ErrantTransactions, TransactionCount};

    fn h(i: usize) -> Address {
        host_address(i)
    }

    async fn info(sim: &Simulator, i: usize) -> ServerInfo {
        let state = sim.observe(&h(i)).await;
        match state.reach {
            Reach::Reachable(info) => *info,
            other => panic!("{} unreachable: {other:?}", h(i)),
        }
    }

    async fn cause(sim: &Simulator, address: &Address) -> Unreachable {
        match sim.observe(address).await.reach {
            Reach::Unreachable { cause, .. } => cause,
            Reach::Reachable(_) => panic!("{address} is reachable"),
        }
    }

    async fn repl(sim: &Simulator, i: usize) -> Replication {
        info(sim, i).await.replication.expect("a replica")
    }

    async fn pos(sim: &Simulator, i: usize) -> String {
        info(sim, i).await.gtid.display_position().to_string()
    }

    #[test]
    fn host_addresses() {
        assert_eq!(h(0).to_string(), "10.0.0.1:3306");
        assert_eq!(h(254).to_string(), "10.0.0.255:3306");
        assert_eq!(h(255).to_string(), "10.0.1.0:3306");
        assert_eq!(h(70_000).to_string(), "10.1.17.113:3306");
    }

    #[test]
    fn mariadb_current_pos_table() {
        // (gtid_binlog_state, gtid_slave_pos, own server_id, gtid_current_pos)
        let cases = [
            ("", "", 1, ""),
            ("0-1-5", "", 1, "0-1-5"),                  // a primary
            ("0-1-5", "0-1-5", 2, "0-1-5"),             // a replica with log_slave_updates
            ("0-1-5,0-2-6", "0-1-5", 2, "0-2-6"),       // then an errant write
            ("0-2-1", "0-1-100", 2, "0-1-100"),         // errant write without log_slave_updates
            ("1-1-3", "", 2, ""),                       // binlogged from elsewhere, not replicated
            ("0-1-9,1-2-3", "0-1-9", 2, "0-1-9,1-2-3"), // own writes in another domain
        ];
        for (state, slave, id, want) in cases {
            let got = mariadb_current_pos(&state.parse().unwrap(), &slave.parse().unwrap(), id);
            assert_eq!(
                got.to_string(),
                want,
                "binlog_state={state} slave_pos={slave} server_id={id}"
            );
        }
    }

    /// Every replica names its source; every server lists exactly the replicas connected
    /// to it, as SHOW SLAVE HOSTS does with report_host set.
    #[tokio::test]
    async fn star_chain_and_tree_shapes() {
        // (name, topology, source of host i for i >= 1)
        type Case = (&'static str, Simulator, fn(usize) -> usize);
        let cases: Vec<Case> = vec![
            ("star mariadb", Simulator::star(5, Flavor::Mariadb), |_| 0),
            ("chain mariadb", Simulator::chain(5, Flavor::Mariadb), |i| {
                i - 1
            }),
            (
                "tree mariadb",
                Simulator::tree(13, 3, Flavor::Mariadb),
                |i| (i - 1) / 3,
            ),
            ("star mysql", Simulator::star(4, Flavor::Mysql), |_| 0),
            ("tree mysql", Simulator::tree(7, 2, Flavor::Mysql), |i| {
                (i - 1) / 2
            }),
        ];
        for (name, sim, source_of) in cases {
            sim.write(h(0), 3).unwrap();
            sim.tick();
            let addresses = sim.addresses();
            let states = observe_all(Arc::new(sim.clone()), &addresses, 4).await;
            let primary = states[0].info().unwrap();
            for (i, state) in states.iter().enumerate() {
                let info = state
                    .info()
                    .unwrap_or_else(|| panic!("{name}: {} unreachable", h(i)));
                assert_eq!(info.server_id, i as u32 + 1, "{name}");
                assert_eq!(
                    (
                        info.log_bin,
                        info.log_replica_updates,
                        info.binlog_format.as_str()
                    ),
                    (true, true, "ROW")
                );
                assert_eq!(
                    info.gtid.position(),
                    primary.gtid.position(),
                    "{name}: {} caught up",
                    h(i)
                );
                assert_eq!(
                    (info.report_host.as_deref(), info.report_port),
                    (Some(h(i).host.as_str()), Some(3306))
                );
                match info.flavor {
                    Flavor::Mariadb => {
                        assert_eq!(info.gtid_strict_mode, Some(true));
                        assert!(info.server_uuid.is_none() && info.super_read_only.is_none());
                    }
                    Flavor::Mysql => {
                        assert!(info.server_uuid.is_some() && info.gtid_strict_mode.is_none());
                        assert_eq!(info.super_read_only, Some(i > 0));
                    }
                }
                let want: Vec<ConnectedReplica> = (1..states.len())
                    .filter(|&j| source_of(j) == i)
                    .map(|j| ConnectedReplica {
                        server_id: Some(j as u32 + 1),
                        host: h(j).host,
                        port: Some(3306),
                    })
                    .collect();
                assert_eq!(info.replicas, want, "{name}: replicas of {}", h(i));
                if i == 0 {
                    assert!(info.replication.is_none() && !info.read_only, "{name}");
                    continue;
                }
                assert!(info.read_only, "{name}");
                let r = info.replication.as_ref().unwrap();
                let source = h(source_of(i));
                assert_eq!(
                    (r.source_host.as_str(), r.source_port),
                    (source.host.as_str(), source.port),
                    "{name}"
                );
                assert_eq!(
                    (r.io, r.sql_running, r.seconds_behind),
                    (IoState::Running, true, Some(0)),
                    "{name}"
                );
                assert_eq!(r.source_server_id, source_of(i) as u32 + 1);
                assert_eq!(
                    (r.last_io_error.as_ref(), r.last_sql_error.as_ref()),
                    (None, None)
                );
                let mode = if info.flavor == Flavor::Mariadb {
                    "Slave_Pos"
                } else {
                    "auto_position"
                };
                assert_eq!(r.gtid_mode, mode, "{name}");
                assert_eq!(r.executed_gtid, info.gtid.display_position(), "{name}");
            }
        }
    }

    #[tokio::test]
    async fn writes_propagate_down_a_chain_through_intermediate_sources() {
        let sim = Simulator::chain(4, Flavor::Mariadb);
        sim.write(h(0), 5).unwrap();
        sim.tick();
        for i in 0..4 {
            let info = info(&sim, i).await;
            let Gtids::Mariadb {
                current_pos,
                binlog_state,
                slave_pos,
                binlog_pos,
                purged,
            } = &info.gtid
            else {
                panic!()
            };
            // log_slave_updates: every hop binlogs the transaction with the primary's
            // server_id, which is what lets the next hop fetch it.
            assert_eq!(
                (
                    current_pos.as_str(),
                    binlog_pos.as_str(),
                    binlog_state.as_str()
                ),
                ("0-1-5", "0-1-5", "0-1-5")
            );
            assert_eq!(slave_pos, if i == 0 { "" } else { "0-1-5" });
            assert_eq!(purged, "", "nothing purged");
        }

        // Without log_slave_updates an intermediate applies but does not pass on.
        let sim = Simulator::chain(3, Flavor::Mariadb);
        sim.update(h(1), |s| s.log_replica_updates = false);
        sim.write(h(0), 2).unwrap();
        sim.tick();
        assert_eq!(pos(&sim, 1).await, "0-1-2");
        assert!(
            matches!(info(&sim, 1).await.gtid, Gtids::Mariadb { binlog_state, .. } if binlog_state.is_empty())
        );
        assert_eq!(pos(&sim, 2).await, "");

        let sim = Simulator::chain(3, Flavor::Mysql);
        sim.write(h(0), 5).unwrap();
        sim.tick();
        let uuid = info(&sim, 0).await.server_uuid.unwrap();
        for i in 0..3 {
            assert_eq!(pos(&sim, i).await, format!("{uuid}:1-5"));
        }
        assert_eq!(repl(&sim, 2).await.retrieved_gtid, format!("{uuid}:1-5"));
    }

    #[tokio::test]
    async fn a_lagging_replica_is_behind_by_exactly_its_lag() {
        let sim = Simulator::star(3, Flavor::Mariadb);
        sim.set_lag(h(1), 3);
        sim.write(h(0), 10).unwrap();
        sim.tick();
        let (primary, lagging) = (info(&sim, 0).await, info(&sim, 1).await);
        assert_eq!(lagging.gtid.display_position(), "0-1-7");
        let behind = primary
            .gtid
            .position()
            .unwrap()
            .count_missing_from(&lagging.gtid.position().unwrap());
        assert_eq!(
            behind,
            Ok(TransactionCount {
                count: 3,
                exact: false
            })
        );
        let r = lagging.replication.unwrap();
        assert_eq!(
            (r.seconds_behind, r.retrieved_gtid.as_str()),
            (Some(3), "0-1-10")
        );
        assert_eq!(repl(&sim, 2).await.seconds_behind, Some(0));
        assert_eq!(pos(&sim, 2).await, "0-1-10");

        sim.set_seconds_per_transaction(5);
        assert_eq!(repl(&sim, 1).await.seconds_behind, Some(15));
        sim.set_lag(h(1), 0);
        sim.tick();
        assert_eq!(
            (pos(&sim, 1).await, repl(&sim, 1).await.seconds_behind),
            ("0-1-10".into(), Some(0))
        );
    }

    #[tokio::test]
    async fn a_killed_server_is_refused_and_its_replicas_retry() {
        let sim = Simulator::chain(3, Flavor::Mariadb);
        sim.kill(h(1));
        assert_eq!(cause(&sim, &h(1)).await, Unreachable::Refused);
        // At once, without a tick: the replica's connection was reset.
        let r = repl(&sim, 2).await;
        assert_eq!(
            (r.io, r.sql_running, r.seconds_behind),
            (IoState::Connecting, true, None)
        );
        let e = r.last_io_error.unwrap();
        assert_eq!(e.errno, 2003);
        assert!(
            e.message
                .starts_with("error reconnecting to master 'repl@10.0.0.2:3306'"),
            "{}",
            e.message
        );
        assert!(
            info(&sim, 0).await.replicas.is_empty(),
            "a dead replica is not connected"
        );
        assert!(sim.write(h(1), 1).is_err());

        sim.write(h(0), 2).unwrap();
        sim.restart(h(1));
        assert_eq!(
            repl(&sim, 1).await.io,
            IoState::Running,
            "a restarted replica reconnects at once"
        );
        assert_eq!(
            repl(&sim, 2).await.io,
            IoState::Connecting,
            "its replicas wait for connect_retry"
        );
        sim.tick();
        let r = repl(&sim, 2).await;
        assert_eq!(
            (r.io, r.last_io_error, pos(&sim, 2).await),
            (IoState::Running, None, "0-1-2".into())
        );
    }

    #[tokio::test]
    async fn a_frozen_server_hangs_and_its_replicas_notice_on_the_next_tick() {
        let sim = Simulator::star(3, Flavor::Mariadb);
        sim.freeze(h(0));
        assert_eq!(cause(&sim, &h(0)).await, Unreachable::HungAfterConnect);
        assert_eq!(
            repl(&sim, 1).await.io,
            IoState::Running,
            "slave_net_timeout has not expired yet"
        );
        assert!(sim.write(h(0), 1).is_err());
        sim.tick();
        let r = repl(&sim, 1).await;
        assert_eq!(
            (r.io, r.seconds_behind, r.last_io_error.map(|e| e.errno)),
            (IoState::Connecting, None, Some(2013))
        );

        sim.thaw(h(0));
        sim.write(h(0), 1).unwrap();
        sim.tick();
        assert_eq!(
            (repl(&sim, 1).await.io, pos(&sim, 2).await),
            (IoState::Running, "0-1-1".into())
        );
    }

    #[tokio::test]
    async fn a_partitioned_primary_times_out_while_its_replicas_replicate() {
        let sim = Simulator::star(3, Flavor::Mariadb);
        sim.partition_from_orch(h(0));
        assert_eq!(cause(&sim, &h(0)).await, Unreachable::TimedOut);
        sim.write(h(0), 3).unwrap();
        sim.tick();
        for i in 1..3 {
            let r = repl(&sim, i).await;
            assert_eq!(
                (r.io, r.sql_running, r.last_io_error),
                (IoState::Running, true, None)
            );
            assert_eq!(pos(&sim, i).await, "0-1-3", "still advancing");
        }
        sim.heal(h(0));
        assert_eq!(info(&sim, 0).await.replicas.len(), 2);

        sim.access_denied(h(2));
        assert_eq!(cause(&sim, &h(2)).await, Unreachable::AccessDenied);
        sim.write(h(0), 1).unwrap();
        sim.tick();
        sim.heal(h(2));
        assert_eq!(pos(&sim, 2).await, "0-1-4");
    }

    #[tokio::test]
    async fn unknown_addresses_are_refused() {
        let sim = Simulator::star(2, Flavor::Mariadb);
        let nowhere = Address::parse("10.9.9.9:3306").unwrap();
        match sim.observe(&nowhere).await.reach {
            Reach::Unreachable { cause, detail } => {
                assert_eq!(cause, Unreachable::Refused);
                assert!(detail.contains("nothing at this address"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            sim.write(&nowhere, 1),
            Err(SimError::UnknownServer(nowhere))
        );
    }

    #[tokio::test]
    async fn a_broken_sql_thread_stops_with_its_error_and_restarts() {
        let sim = Simulator::star(2, Flavor::Mariadb);
        sim.break_sql(h(1), 1062, "Duplicate entry '7' for key 'PRIMARY'");
        sim.write(h(0), 4).unwrap();
        sim.tick();
        let r = repl(&sim, 1).await;
        assert_eq!(
            (r.io, r.sql_running, r.seconds_behind),
            (IoState::Running, false, None)
        );
        assert_eq!(
            r.last_sql_error,
            Some(ReplicationError {
                errno: 1062,
                message: "Duplicate entry '7' for key 'PRIMARY'".into()
            })
        );
        assert_eq!(
            (r.retrieved_gtid.as_str(), r.executed_gtid.as_str()),
            ("0-1-4", ""),
            "received, not applied"
        );
        assert_eq!(
            sim.server(h(1)).unwrap().replication.unwrap().relay_len(),
            4
        );

        sim.start_replication(h(1));
        sim.tick();
        let r = repl(&sim, 1).await;
        assert_eq!(
            (r.sql_running, r.last_sql_error, r.executed_gtid.as_str()),
            (true, None, "0-1-4")
        );
    }

    #[tokio::test]
    async fn stopped_replication_and_read_only() {
        let sim = Simulator::star(2, Flavor::Mysql);
        sim.stop_replication(h(1));
        let r = repl(&sim, 1).await;
        assert_eq!(
            (r.io, r.sql_running, r.seconds_behind),
            (IoState::Stopped, false, None)
        );
        assert!(
            info(&sim, 0).await.replicas.is_empty(),
            "no binlog dump thread"
        );
        sim.write(h(0), 2).unwrap();
        sim.tick();
        assert_eq!(pos(&sim, 1).await, "");

        sim.set_read_only(h(0), true);
        sim.set_read_only(h(1), false);
        let (p, r) = (info(&sim, 0).await, info(&sim, 1).await);
        assert_eq!(
            (
                p.read_only,
                p.super_read_only,
                r.read_only,
                r.super_read_only
            ),
            (true, Some(true), false, Some(false))
        );
    }

    #[tokio::test]
    async fn replicas_without_report_host_are_seen_through_the_processlist() {
        let sim = Simulator::star(3, Flavor::Mariadb);
        for i in 1..3 {
            sim.update(h(i), |s| s.report_host = None);
        }
        let want: Vec<ConnectedReplica> = (1..3)
            .map(|i| ConnectedReplica {
                server_id: None,
                host: h(i).host,
                port: None,
            })
            .collect();
        assert_eq!(info(&sim, 0).await.replicas, want);
    }

    /// Errant writes are found by the same detection orch runs on real servers.
    #[tokio::test]
    async fn errant_writes_show_up_in_gtid_errant_detection() {
        for flavor in [Flavor::Mariadb, Flavor::Mysql] {
            let sim = Simulator::star(3, flavor);
            sim.write(h(0), 5).unwrap();
            sim.tick();
            sim.errant(h(1), 2);
            let gtids = |info: &ServerInfo| info.gtid.server_gtids(info.server_id).unwrap();
            let source = gtids(&info(&sim, 0).await);
            let clean = gtids(&info(&sim, 2).await)
                .errant_relative_to(&source)
                .unwrap();
            assert!(clean.is_empty(), "{flavor}: {clean}");
            let errant = gtids(&info(&sim, 1).await)
                .errant_relative_to(&source)
                .unwrap();
            match errant {
                ErrantTransactions::Mariadb(list) => {
                    assert_eq!(list.len(), 1);
                    assert!(list[0].own_write);
                    assert_eq!(list[0].gtid.to_string(), "0-2-7");
                    assert_eq!(pos(&sim, 1).await, "0-2-7");
                }
                ErrantTransactions::Mysql(set) => {
                    assert_eq!(set.count(), 2);
                    let uuid = info(&sim, 1).await.server_uuid.unwrap();
                    assert_eq!(set.to_string(), format!("{uuid}:1-2"));
                }
            }
        }
    }

    #[tokio::test]
    async fn strict_mode_stops_a_replica_with_an_errant_write() {
        let sim = Simulator::star(2, Flavor::Mariadb);
        sim.write(h(0), 5).unwrap();
        sim.tick();
        sim.errant(h(1), 1); // 0-2-6
        sim.write(h(0), 1).unwrap(); // 0-1-6
        sim.tick();
        let r = repl(&sim, 1).await;
        assert!(!r.sql_running);
        let e = r.last_sql_error.unwrap();
        assert_eq!(e.errno, 1950);
        assert!(
            e.message.contains("GTID 0-1-6") && e.message.contains("0-2-6"),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn change_source_checks_the_position_as_the_source_does() {
        // h1 lags by 3; h2 is current: h1 lacks h2's position, MariaDB error 1236.
        let sim = Simulator::star(4, Flavor::Mariadb);
        sim.set_lag(h(1), 3);
        sim.write(h(0), 10).unwrap();
        sim.tick();
        sim.stop_replication(h(2));
        sim.change_source(h(2), h(1));
        sim.start_replication(h(2));
        let r = repl(&sim, 2).await;
        assert_eq!(
            (r.io, r.source_host.as_str()),
            (IoState::Stopped, "10.0.0.2")
        );
        let e = r.last_io_error.unwrap();
        assert_eq!(e.errno, 1236);
        assert!(
            e.message.contains("requested to start from GTID 0-1-10"),
            "{}",
            e.message
        );

        // Once h1 has caught up the same move works, and writes flow through h1.
        sim.set_lag(h(1), 0);
        sim.tick();
        sim.stop_replication(h(3));
        sim.change_source(h(3), h(1));
        sim.start_replication(h(3));
        sim.write(h(0), 1).unwrap();
        sim.tick();
        let r = repl(&sim, 3).await;
        assert_eq!(
            (r.io, r.source_server_id, pos(&sim, 3).await),
            (IoState::Running, 2, "0-1-11".into())
        );
        let ids = |i: &ServerInfo| {
            i.replicas
                .iter()
                .map(|r| r.server_id.unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&info(&sim, 0).await), vec![2]);
        assert_eq!(ids(&info(&sim, 1).await), vec![4]);
    }

    /// A source that purged its binlogs refuses a replica that still needs a purged
    /// transaction (error 1236, IO thread stopped), and serves one that is up to date.
    #[tokio::test]
    async fn a_purged_source_refuses_a_replica_that_needs_purged_transactions() {
        for flavor in [Flavor::Mariadb, Flavor::Mysql] {
            let sim = Simulator::star(3, flavor);
            sim.write(h(0), 3).unwrap();
            sim.tick();
            // h1 stops at 3; h2 streams on, and is given 4 and 5 before they are purged
            // even though no tick fetched them.
            sim.stop_replication(h(1));
            sim.write(h(0), 2).unwrap();
            sim.purge_binlogs(h(0));
            let primary = info(&sim, 0).await;
            assert_eq!(
                primary.gtid.purged(),
                primary.gtid.position(),
                "{flavor}: all purged"
            );
            if flavor == Flavor::Mariadb {
                assert!(
                    matches!(&primary.gtid, Gtids::Mariadb { purged, .. } if purged == "0-1-5")
                );
            }
            assert_eq!(
                sim.server(h(2)).unwrap().replication.unwrap().relay_len(),
                2,
                "{flavor}"
            );
            sim.write(h(0), 1).unwrap();
            sim.tick();
            assert_eq!(pos(&sim, 2).await, pos(&sim, 0).await, "{flavor}");

            // h1 needs 4 and 5, which are gone.
            sim.start_replication(h(1));
            let r = repl(&sim, 1).await;
            assert_eq!((r.io, r.sql_running), (IoState::Stopped, true), "{flavor}");
            let e = r.last_io_error.unwrap();
            assert_eq!(e.errno, 1236, "{flavor}");
            let want = match flavor {
                Flavor::Mariadb => {
                    "Probably the slave state is too old and required binlog files have been purged"
                }
                Flavor::Mysql => "Cannot replicate because the source purged required binary logs",
            };
            assert!(e.message.contains(want), "{flavor}: {}", e.message);
            sim.tick();
            assert_eq!(
                repl(&sim, 1).await.io,
                IoState::Stopped,
                "{flavor}: a fatal error is not retried"
            );

            // h2 is up to date: a restart (a reconnect from its GTID position) works.
            sim.restart(h(2));
            sim.write(h(0), 1).unwrap();
            sim.tick();
            let r = repl(&sim, 2).await;
            assert_eq!(
                (r.io, r.last_io_error),
                (IoState::Running, None),
                "{flavor}"
            );
            assert_eq!(pos(&sim, 2).await, pos(&sim, 0).await, "{flavor}");

            // A new replica with no data: refused by the purged source, served by h2,
            // whose binlog (log_slave_updates) still holds everything.
            sim.add_replica(h(3), h(0));
            let e = repl(&sim, 3).await.last_io_error.unwrap();
            assert_eq!(e.errno, 1236, "{flavor}: {}", e.message);
            sim.add_replica(h(4), h(2));
            sim.tick();
            assert_eq!(repl(&sim, 4).await.io, IoState::Running, "{flavor}");
            assert_eq!(pos(&sim, 4).await, pos(&sim, 0).await, "{flavor}");
        }
    }

    /// MariaDB starts a replica whose position is exactly a domain's last purged GTID (it
    /// needs nothing purged), but not one behind in another domain, nor one lacking a domain.
    #[test]
    fn mariadb_can_start_after_table() {
        // (replica's position, the oldest binlog's Gtid_list, can start)
        let cases = [
            ("", "", true),
            ("0-1-5", "", true),
            ("0-1-5", "0-1-5", true),
            ("0-1-6", "0-1-5", true),
            ("0-1-4", "0-1-5", false),
            ("", "0-1-5", false),
            ("0-1-5", "0-1-5,1-2-3", false),
            ("0-1-5,1-2-3", "0-1-5,1-2-3", true),
            // Not the domain's most recent GTID: the next one of the domain is purged too.
            ("0-1-5", "0-1-5,0-2-6", false),
            ("0-2-6", "0-1-5,0-2-6", true),
        ];
        for (pos, list, want) in cases {
            assert_eq!(
                mariadb_can_start_after(&pos.parse().unwrap(), &list.parse().unwrap()),
                want,
                "{pos} after {list}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_thousand_host_tree_through_observe_all() {
        let sim = Simulator::tree(1_000, 10, Flavor::Mariadb);
        sim.write(h(0), 3).unwrap();
        sim.tick();
        let addresses = sim.addresses();
        let states = observe_all(Arc::new(sim), &addresses, 32).await;
        assert_eq!(states.len(), 1_000);
        for (i, state) in states.iter().enumerate() {
            assert_eq!(state.address, h(i), "in order");
            assert_eq!(state.info().unwrap().gtid.display_position(), "0-1-3");
        }
        let listed: usize = states
            .iter()
            .map(|s| s.info().unwrap().replicas.len())
            .sum();
        assert_eq!(listed, 999);
    }

    /// In paused time (the latency is a tokio sleep): the waves are counted by the clock
    /// that only the sleeps move, not measured against a busy machine's.
    #[tokio::test(start_paused = true)]
    async fn simulated_latency_overlaps_within_the_concurrency_limit() {
        let sim = Simulator::star(40, Flavor::Mariadb);
        let latency = Duration::from_millis(25);
        sim.set_latency(Latency::uniform(latency));
        let addresses = sim.addresses();
        let started = tokio::time::Instant::now();
        let states = observe_all(Arc::new(sim), &addresses, 20).await;
        let took = started.elapsed();
        assert_eq!(states.len(), 40);
        // Two waves of 20: two latencies, not 40 in a row (nor one: at most 20 at once).
        assert!(took >= latency * 2 && took < latency * 3, "{took:?}");
    }
}
