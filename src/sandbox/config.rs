//! The pure half of the sandbox: what to start and how, computed from the request.
//!
//! Takes the shape, the instance count, the flavor and the chosen addresses; gives the
//! source of each instance, the server config files, the SQL that creates the users and
//! points replicas at their sources, `topology.yaml`, and the checks on `/proc` data
//! (command line match, process state). No I/O: every function here is a plain value
//! transformation, tested by tables below.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub use crate::topology::Flavor;

/// One privilege the `orch` user holds, and why orch needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Privilege {
    /// The privilege as written in `GRANT ... ON *.*`.
    pub name: &'static str,
    /// The statements that need it.
    pub why: &'static str,
}

/// Exactly the global privileges the `orch` user needs on MariaDB 10.11, found by granting
/// the set, then revoking each privilege alone and watching which statement fails:
///
/// - `SLAVE MONITOR`: `SHOW SLAVE STATUS` and `SHOW ALL SLAVES STATUS` (since 10.5.9 these
///   no longer work with `REPLICATION CLIENT` alone).
/// - `BINLOG MONITOR`: `SHOW MASTER STATUS` / `SHOW BINLOG STATUS` / `SHOW BINARY LOGS`
///   (`REPLICATION CLIENT` is only an alias of it since 10.5.2).
/// - `REPLICATION MASTER ADMIN`: `SHOW SLAVE HOSTS` (discovery of replicas from a source).
/// - `READ_ONLY ADMIN`: `SET GLOBAL read_only=ON|OFF`. From 10.11.0 `SUPER` no longer
///   includes it, so `SUPER` cannot fence a primary. Note that it also lets the holder
///   write while `read_only=ON`: orch never writes data, but fencing must kill the sessions
///   of every other account that holds it.
/// - `REPLICATION SLAVE ADMIN`: `STOP SLAVE`, `START SLAVE`, `CHANGE MASTER TO`,
///   `SET GLOBAL gtid_slave_pos`.
/// - `RELOAD`: `RESET SLAVE ALL` (MariaDB checks RELOAD there, not a replication privilege).
/// - `PROCESS`: `SHOW PROCESSLIST` / `information_schema.PROCESSLIST` including other
///   users' threads (without it the statement succeeds but shows only orch's own threads).
/// - `CONNECTION ADMIN`: `KILL` of other users' connections when fencing an old primary.
///
/// Not needed: `SELECT @@gtid_current_pos` and friends, `MASTER_GTID_WAIT()` (no privilege),
/// `SUPER`, `FLUSH BINARY LOGS`, `RESET MASTER`, any data privilege.
pub const MARIADB_ORCH_PRIVILEGES: &[Privilege] = &[
    Privilege {
        name: "SLAVE MONITOR",
        why: "SHOW SLAVE STATUS, SHOW ALL SLAVES STATUS",
    },
    Privilege {
        name: "BINLOG MONITOR",
        why: "SHOW MASTER STATUS, SHOW BINLOG STATUS, SHOW BINARY LOGS",
    },
    Privilege {
        name: "REPLICATION MASTER ADMIN",
        why: "SHOW SLAVE HOSTS",
    },
    Privilege {
        name: "READ_ONLY ADMIN",
        why: "SET GLOBAL read_only (SUPER no longer covers it from 10.11)",
    },
    Privilege {
        name: "REPLICATION SLAVE ADMIN",
        why: "STOP/START SLAVE, CHANGE MASTER TO, SET GLOBAL gtid_slave_pos",
    },
    Privilege {
        name: "RELOAD",
        why: "RESET SLAVE ALL",
    },
    Privilege {
        name: "PROCESS",
        why: "SHOW PROCESSLIST with other users' threads",
    },
    Privilege {
        name: "CONNECTION ADMIN",
        why: "KILL other users' connections (fencing)",
    },
    Privilege {
        name: "SHOW DATABASES",
        why: "every schema in information_schema.SCHEMATA (does a server without GTID history hold data?)",
    },
];

/// The global privileges of the `orch` user on MySQL 8.0.26+ (UNTESTED against a real
/// server: only MariaDB is installed where this was written):
///
/// - `REPLICATION CLIENT`: `SHOW REPLICA STATUS`, `SHOW BINARY LOG STATUS`/`SHOW MASTER STATUS`.
/// - `REPLICATION SLAVE`: `SHOW REPLICAS` (MySQL checks this privilege there).
/// - `REPLICATION_SLAVE_ADMIN`: `STOP/START REPLICA`, `CHANGE REPLICATION SOURCE TO`.
/// - `RELOAD`: `RESET REPLICA ALL` (8.0 and 8.4 check RELOAD there, not a replication
///   privilege: without it a switchover stopped between the fence and the promotion).
/// - `SYSTEM_VARIABLES_ADMIN`: `SET GLOBAL read_only` / `super_read_only`.
/// - `CONNECTION_ADMIN`: `KILL` of other users' connections.
/// - `PROCESS`: the process list with other users' threads.
/// - `SELECT ON performance_schema.*` is granted separately (see
///   [`MYSQL_ORCH_TABLE_GRANTS`]) for the `replication_*` status tables.
pub const MYSQL_ORCH_PRIVILEGES: &[Privilege] = &[
    Privilege {
        name: "REPLICATION CLIENT",
        why: "SHOW REPLICA STATUS, SHOW BINARY LOG STATUS",
    },
    Privilege {
        name: "REPLICATION SLAVE",
        why: "SHOW REPLICAS",
    },
    Privilege {
        name: "REPLICATION_SLAVE_ADMIN",
        why: "STOP/START REPLICA, CHANGE REPLICATION SOURCE TO",
    },
    Privilege {
        name: "RELOAD",
        why: "RESET REPLICA ALL",
    },
    Privilege {
        name: "SYSTEM_VARIABLES_ADMIN",
        why: "SET GLOBAL read_only, super_read_only",
    },
    Privilege {
        name: "CONNECTION_ADMIN",
        why: "KILL other users' connections (fencing)",
    },
    Privilege {
        name: "PROCESS",
        why: "the process list with other users' threads",
    },
    Privilege {
        name: "SHOW DATABASES",
        why: "every schema in information_schema.SCHEMATA (does a server without GTID history hold data?)",
    },
];

/// Table-level grants of the `orch` user on MySQL 8 (UNTESTED against a real server).
pub const MYSQL_ORCH_TABLE_GRANTS: &[&str] = &["SELECT ON performance_schema.*"];

/// The account host part for `orch` and `repl`: sandboxes listen on loopback only, and a
/// connection to 127.X.Y.Z arrives from 127.0.0.1 (the `src` of the loopback route), so
/// with `skip-name-resolve` `127.%` matches every local client and nothing else.
pub const ACCOUNT_HOST: &str = "127.%";

/// Smallest settings that still start quickly; the template is initialised with the same
/// InnoDB sizes so the first start of a copy does not resize the redo log.
pub const INNODB_BUFFER_POOL_SIZE: &str = "16M";
pub const INNODB_LOG_FILE_SIZE: &str = "8M";

/// The name of instance `index` (1-based).
pub fn host_id(index: u8) -> String {
    format!("node{index}")
}

/// The index of the instance `index` replicates from, or `None` for the primary.
/// The shape of a sandbox's replication tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Shape {
    /// Every replica replicates from the primary.
    #[default]
    Star,
    /// Each instance replicates from the one before it.
    Chain,
    /// A binary tree under the primary: intermediate sources with their own replicas.
    Tree,
}

pub fn source_of(shape: Shape, index: u8) -> Option<u8> {
    if index <= 1 {
        return None;
    }
    Some(match shape {
        Shape::Star => 1,
        Shape::Chain => index - 1,
        // Heap numbering: the children of i are 2i and 2i+1.
        Shape::Tree => index / 2,
    })
}

/// The role of instance `index` in a sandbox of `nodes` instances.
pub fn role_of(shape: Shape, nodes: u8, index: u8) -> &'static str {
    if source_of(shape, index).is_none() {
        "primary"
    } else if (1..=nodes).any(|other| source_of(shape, other) == Some(index)) {
        "intermediate"
    } else {
        "replica"
    }
}

/// The shape's name as written in files and JSON.
pub fn shape_name(shape: Shape) -> &'static str {
    match shape {
        Shape::Star => "star",
        Shape::Chain => "chain",
        Shape::Tree => "tree",
    }
}

pub fn parse_shape(name: &str) -> Option<Shape> {
    match name {
        "star" => Some(Shape::Star),
        "chain" => Some(Shape::Chain),
        "tree" => Some(Shape::Tree),
        _ => None,
    }
}

/// A /16 of loopback addresses: instance I of the sandbox listens on 127.x.y.I.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub x: u8,
    pub y: u8,
}

impl Block {
    pub fn ip(self, index: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.x, self.y, index)
    }
}

/// Blocks are numbered `x * 256 + y` over x in 0..=254; block 0 (127.0.0.x, where
/// 127.0.0.1 lives and other local services listen) is never used.
const BLOCKS: u32 = 255 * 256;

/// How many blocks `up` probes before giving up (a busy port everywhere means the port
/// itself is taken on a wildcard address).
pub const MAX_PROBES: usize = 64;

/// FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The blocks to try for a sandbox in `dir`, in order: starting at a hash of the path, so
/// sandboxes in different directories (parallel tests) start far apart.
pub fn candidate_blocks(dir: &Path) -> impl Iterator<Item = Block> {
    let start = (fnv1a(dir.as_os_str().as_encoded_bytes()) % u64::from(BLOCKS - 1)) as u32 + 1;
    (0..BLOCKS - 1).map(move |k| {
        let n = (start - 1 + k) % (BLOCKS - 1) + 1;
        Block {
            x: (n / 256) as u8,
            y: (n % 256) as u8,
        }
    })
}

/// The first candidate block where `free(ip, port)` holds for instances 1..=nodes.
pub fn choose_block(
    dir: &Path,
    nodes: u8,
    port: u16,
    mut free: impl FnMut(Ipv4Addr, u16) -> bool,
) -> Option<Block> {
    candidate_blocks(dir)
        .take(MAX_PROBES)
        .find(|block| (1..=nodes).all(|i| free(block.ip(i), port)))
}

/// Everything the config file of one instance depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceLayout {
    pub index: u8,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub node_dir: PathBuf,
    pub is_replica: bool,
}

impl InstanceLayout {
    pub fn datadir(&self) -> PathBuf {
        self.node_dir.join("data")
    }
    pub fn config(&self) -> PathBuf {
        self.node_dir.join("my.cnf")
    }
    pub fn socket(&self) -> PathBuf {
        self.node_dir.join("mysqld.sock")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.node_dir.join("mysqld.pid")
    }
    pub fn error_log(&self) -> PathBuf {
        self.node_dir.join("error.log")
    }
    /// The instance's own temporary directory: servers sharing /tmp collide on the names
    /// of their internal temporary tables, and /tmp may not be writable by `mysql`.
    pub fn tmp_dir(&self) -> PathBuf {
        self.node_dir.join("tmp")
    }
    pub fn address(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

/// The `my.cnf` of one instance. Every path is absolute, so the server can be started
/// from any working directory; the file is passed with `--defaults-file`, which must be
/// the first argument and makes the server ignore /etc/mysql.
pub fn my_cnf(flavor: Flavor, inst: &InstanceLayout) -> String {
    let mut s = String::new();
    let p = |p: PathBuf| p.display().to_string();
    let _ = writeln!(
        s,
        "# Written by `orch sandbox up`; instance {}.",
        inst.index
    );
    s.push_str("[mysqld]\n");
    for (k, v) in [
        ("datadir", p(inst.datadir())),
        ("tmpdir", p(inst.tmp_dir())),
        ("socket", p(inst.socket())),
        ("pid-file", p(inst.pid_file())),
        ("log-error", p(inst.error_log())),
        ("port", inst.port.to_string()),
        ("bind-address", inst.ip.to_string()),
        // The address replicas and orch reach it at, shown by SHOW SLAVE HOSTS.
        ("report-host", inst.ip.to_string()),
        ("report-port", inst.port.to_string()),
        ("server-id", inst.index.to_string()),
    ] {
        let _ = writeln!(s, "{k} = {v}");
    }
    // The default log and relay log names embed the hostname; fixed names keep a copied
    // or moved sandbox working.
    s.push_str("log-bin = mysql-bin\nrelay-log = relay-bin\n");
    s.push_str("binlog-format = ROW\n");
    // Accounts are matched by IP only: no DNS lookups (they stall connects when DNS is
    // slow) and no warnings about hostname accounts.
    s.push_str("skip-name-resolve\n");
    let _ = writeln!(s, "innodb-buffer-pool-size = {INNODB_BUFFER_POOL_SIZE}");
    let _ = writeln!(s, "innodb-log-file-size = {INNODB_LOG_FILE_SIZE}");
    // InnoDB writes its temporary tablespace out in full at every start (12 MiB by
    // default): start it small.
    s.push_str("innodb-temp-data-file-path = ibtmp1:1M:autoextend\n");
    // Written to the OS on commit, flushed once a second: a SIGKILL of the server loses
    // nothing (only an OS crash would), and commits stay fast on slow CI disks.
    s.push_str("innodb-flush-log-at-trx-commit = 2\nsync-binlog = 0\n");
    match flavor {
        Flavor::Mariadb => {
            s.push_str("log-slave-updates = ON\n");
            // Out-of-order GTIDs within a domain are errors, not silent divergence.
            s.push_str("gtid-strict-mode = ON\n");
            // A replica notices a dead source within seconds (heartbeats come every 1s).
            s.push_str("slave-net-timeout = 4\n");
            let _ = writeln!(s, "read-only = {}", on_off(inst.is_replica));
        }
        Flavor::Mysql => {
            s.push_str("log-replica-updates = ON\n");
            s.push_str("gtid-mode = ON\nenforce-gtid-consistency = ON\n");
            s.push_str("replica-net-timeout = 4\n");
            // X Protocol listens on 33060 on every address by default: the second instance
            // of a sandbox would fail to start.
            s.push_str("mysqlx = OFF\n");
            // On MySQL read_only does not stop SUPER/CONNECTION_ADMIN accounts; super_read_only
            // does (and implies read_only).
            let _ = writeln!(s, "read-only = {}", on_off(inst.is_replica));
            let _ = writeln!(s, "super-read-only = {}", on_off(inst.is_replica));
        }
    }
    s
}

fn on_off(on: bool) -> &'static str {
    if on { "ON" } else { "OFF" }
}

/// Quotes a string as an SQL literal (the passwords are hex, but never trust that).
pub fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The statements run as root on every instance: the `repl` and `orch` accounts, created
/// with the binary log off so that no server starts with a GTID of its own —
/// `gtid_binlog_pos` stays empty, and any GTID seen later is a real transaction (the
/// errant-transaction checks depend on it).
pub fn users_sql(flavor: Flavor, orch_password: &str, repl_password: &str) -> Vec<String> {
    let host = sql_str(ACCOUNT_HOST);
    let privileges = match flavor {
        Flavor::Mariadb => MARIADB_ORCH_PRIVILEGES,
        Flavor::Mysql => MYSQL_ORCH_PRIVILEGES,
    };
    let names: Vec<&str> = privileges.iter().map(|p| p.name).collect();
    let mut sql = vec![
        "SET sql_log_bin = 0".to_string(),
        format!(
            "CREATE USER 'repl'@{host} IDENTIFIED BY {}",
            sql_str(repl_password)
        ),
        format!("GRANT REPLICATION SLAVE ON *.* TO 'repl'@{host}"),
        format!(
            "CREATE USER 'orch'@{host} IDENTIFIED BY {}",
            sql_str(orch_password)
        ),
        format!("GRANT {} ON *.* TO 'orch'@{host}", names.join(", ")),
    ];
    if flavor == Flavor::Mysql {
        for grant in MYSQL_ORCH_TABLE_GRANTS {
            sql.push(format!("GRANT {grant} TO 'orch'@{host}"));
        }
    }
    sql.push("SET sql_log_bin = 1".to_string());
    sql
}

/// Points a replica at its source, by GTID, and starts replication.
pub fn replication_sql(
    flavor: Flavor,
    source: &InstanceLayout,
    repl_password: &str,
) -> Vec<String> {
    let host = sql_str(&source.ip.to_string());
    let password = sql_str(repl_password);
    let port = source.port;
    match flavor {
        // slave_pos: start from the GTIDs this replica has applied (none yet), so the
        // replica fetches the source's whole (user-free) binlog history. Retry every second
        // and heartbeat every second so outages are noticed and healed quickly.
        Flavor::Mariadb => vec![
            format!(
                "CHANGE MASTER TO MASTER_HOST={host}, MASTER_PORT={port}, \
                 MASTER_USER='repl', MASTER_PASSWORD={password}, MASTER_USE_GTID=slave_pos, \
                 MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1"
            ),
            "START SLAVE".to_string(),
        ],
        // GET_SOURCE_PUBLIC_KEY: repl uses caching_sha2_password and there is no TLS, so the
        // replica must fetch the source's RSA key to send the password.
        Flavor::Mysql => vec![
            format!(
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST={host}, SOURCE_PORT={port}, \
                 SOURCE_USER='repl', SOURCE_PASSWORD={password}, SOURCE_AUTO_POSITION=1, \
                 SOURCE_CONNECT_RETRY=1, SOURCE_HEARTBEAT_PERIOD=1, GET_SOURCE_PUBLIC_KEY=1"
            ),
            "START REPLICA".to_string(),
        ],
    }
}

/// The replica status statement and its two thread columns.
pub fn replica_status_sql(flavor: Flavor) -> (&'static str, &'static str, &'static str) {
    match flavor {
        Flavor::Mariadb => ("SHOW SLAVE STATUS", "Slave_IO_Running", "Slave_SQL_Running"),
        Flavor::Mysql => (
            "SHOW REPLICA STATUS",
            "Replica_IO_Running",
            "Replica_SQL_Running",
        ),
    }
}

/// What `topology.yaml` needs about one instance.
pub struct TopologyHost {
    pub host: String,
    pub address: String,
    pub source: Option<String>,
}

/// `DIR/topology.yaml`: a topology `orch validate` accepts, with password files relative
/// to the file itself.
pub fn topology_yaml(
    cluster: &str,
    shape: Shape,
    flavor: Flavor,
    version: &str,
    hosts: &[TopologyHost],
) -> String {
    let mut s = format!(
        "# Written by `orch sandbox up`: a {}-instance {} sandbox ({} {}).\n",
        hosts.len(),
        shape_name(shape),
        flavor.label(),
        version
    );
    let _ = write!(
        s,
        "cluster: {cluster}\ncredentials:\n  user: orch\n  password_file: secrets/orch.password\n  \
         replication_user: repl\n  replication_password_file: secrets/repl.password\n\
         policy: safe\nhosts:\n"
    );
    for h in hosts {
        let _ = write!(s, "  {}: {{ address: \"{}\", dc: local", h.host, h.address);
        if let Some(source) = &h.source {
            let _ = write!(s, ", source: {source}");
        }
        s.push_str(" }\n");
    }
    s
}

/// A cluster name that is safe to write unquoted into YAML and file names.
pub fn valid_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
}

/// Parses `mariadbd --version` / `mysqld --version` output into (flavor, version).
/// `mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)`
/// `mysqld  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)`
pub fn parse_version(output: &str) -> Option<(Flavor, String)> {
    let line = output.lines().find(|l| l.contains(" Ver "))?;
    let full = line.split(" Ver ").nth(1)?.split_whitespace().next()?;
    let number: String = full
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    if number.is_empty() {
        return None;
    }
    let flavor = if line.contains("MariaDB") {
        Flavor::Mariadb
    } else {
        Flavor::Mysql
    };
    Some((flavor, number))
}

/// Whether `/proc/PID/cmdline` (NUL-separated) is our server started with this instance's
/// config: argv[0] is the server binary (same path, or same file name when started
/// through a symlink) and argv[1] is `--defaults-file=<config>`, which the server requires
/// to be the first option. Anything else means the pid now belongs to another process.
pub fn cmdline_matches(cmdline: &[u8], binary: &Path, config: &Path) -> bool {
    let mut args = cmdline.split(|&b| b == 0);
    let Some(argv0) = args.next().filter(|a| !a.is_empty()) else {
        return false;
    };
    let argv0 = Path::new(std::ffi::OsStr::from_bytes(argv0));
    let same_binary =
        argv0 == binary || (argv0.file_name().is_some() && argv0.file_name() == binary.file_name());
    let expected = format!("--defaults-file={}", config.display());
    same_binary && args.next() == Some(expected.as_bytes())
}

/// The one-letter state of `/proc/PID/stat`, found after the last `)` because the command
/// name in parentheses may itself contain spaces and parentheses.
pub fn proc_stat_state(stat: &str) -> Option<char> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_per_shape() {
        let cases: &[(Shape, u8, Option<u8>)] = &[
            (Shape::Star, 1, None),
            (Shape::Star, 2, Some(1)),
            (Shape::Star, 5, Some(1)),
            (Shape::Chain, 1, None),
            (Shape::Chain, 2, Some(1)),
            (Shape::Chain, 5, Some(4)),
            (Shape::Tree, 1, None),
            (Shape::Tree, 2, Some(1)),
            (Shape::Tree, 3, Some(1)),
            (Shape::Tree, 4, Some(2)),
            (Shape::Tree, 5, Some(2)),
            (Shape::Tree, 6, Some(3)),
            (Shape::Tree, 7, Some(3)),
        ];
        for &(shape, index, want) in cases {
            assert_eq!(source_of(shape, index), want, "{shape:?} node{index}");
        }
    }

    #[test]
    fn roles_per_shape() {
        let cases: &[(Shape, u8, u8, &str)] = &[
            (Shape::Star, 3, 1, "primary"),
            (Shape::Star, 3, 3, "replica"),
            (Shape::Chain, 3, 2, "intermediate"),
            (Shape::Chain, 3, 3, "replica"),
            (Shape::Tree, 5, 2, "intermediate"),
            (Shape::Tree, 5, 3, "replica"),
            (Shape::Tree, 6, 3, "intermediate"),
            (Shape::Tree, 1, 1, "primary"),
        ];
        for &(shape, nodes, index, want) in cases {
            assert_eq!(
                role_of(shape, nodes, index),
                want,
                "{shape:?}/{nodes} node{index}"
            );
        }
    }

    fn layout(index: u8, is_replica: bool) -> InstanceLayout {
        InstanceLayout {
            index,
            ip: Ipv4Addr::new(127, 0, 23, index),
            port: 13306,
            node_dir: PathBuf::from(format!("/sb/node{index}")),
            is_replica,
        }
    }

    #[test]
    fn mariadb_config_per_role() {
        let primary = my_cnf(Flavor::Mariadb, &layout(1, false));
        let replica = my_cnf(Flavor::Mariadb, &layout(2, true));
        for (cnf, line) in [
            (&primary, "server-id = 1"),
            (&primary, "read-only = OFF"),
            (&primary, "bind-address = 127.0.23.1"),
            (&primary, "report-host = 127.0.23.1"),
            (&primary, "report-port = 13306"),
            (&primary, "datadir = /sb/node1/data"),
            (&primary, "tmpdir = /sb/node1/tmp"),
            (&primary, "socket = /sb/node1/mysqld.sock"),
            (&primary, "log-error = /sb/node1/error.log"),
            (&primary, "pid-file = /sb/node1/mysqld.pid"),
            (&primary, "log-bin = mysql-bin"),
            (&primary, "log-slave-updates = ON"),
            (&primary, "binlog-format = ROW"),
            (&primary, "gtid-strict-mode = ON"),
            (&primary, "skip-name-resolve"),
            (&primary, "slave-net-timeout = 4"),
            (
                &primary,
                "innodb-temp-data-file-path = ibtmp1:1M:autoextend",
            ),
            (&replica, "server-id = 2"),
            (&replica, "read-only = ON"),
            (&replica, "bind-address = 127.0.23.2"),
        ] {
            assert!(cnf.lines().any(|l| l == line), "missing {line:?} in\n{cnf}");
        }
        assert!(primary.starts_with("# Written by"));
        assert!(
            !primary.contains("gtid-mode"),
            "MySQL option in a MariaDB config"
        );
        assert!(!replica.contains("super-read-only"));
    }

    #[test]
    fn mysql_config_per_role() {
        let primary = my_cnf(Flavor::Mysql, &layout(1, false));
        let replica = my_cnf(Flavor::Mysql, &layout(3, true));
        for (cnf, line) in [
            (&primary, "gtid-mode = ON"),
            (&primary, "enforce-gtid-consistency = ON"),
            (&primary, "log-replica-updates = ON"),
            (&primary, "super-read-only = OFF"),
            (&primary, "mysqlx = OFF"),
            (&replica, "super-read-only = ON"),
            (&replica, "read-only = ON"),
            (&replica, "server-id = 3"),
        ] {
            assert!(cnf.lines().any(|l| l == line), "missing {line:?} in\n{cnf}");
        }
        assert!(
            !primary.contains("gtid-strict-mode"),
            "MariaDB option in a MySQL config"
        );
    }

    #[test]
    fn users_are_created_without_binlog() {
        for flavor in [Flavor::Mariadb, Flavor::Mysql] {
            let sql = users_sql(flavor, "o'pw", "rpw");
            assert_eq!(sql.first().map(String::as_str), Some("SET sql_log_bin = 0"));
            assert_eq!(sql.last().map(String::as_str), Some("SET sql_log_bin = 1"));
            assert!(
                sql.iter().any(|s| s.contains("IDENTIFIED BY 'o''pw'")),
                "{sql:?}"
            );
            assert!(sql.contains(&"GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.%'".into()));
        }
        let maria = users_sql(Flavor::Mariadb, "a", "b").join("\n");
        assert!(maria.contains(
            "GRANT SLAVE MONITOR, BINLOG MONITOR, REPLICATION MASTER ADMIN, READ_ONLY ADMIN, \
             REPLICATION SLAVE ADMIN, RELOAD, PROCESS, CONNECTION ADMIN, SHOW DATABASES ON *.* TO 'orch'@'127.%'"
        ));
        let mysql = users_sql(Flavor::Mysql, "a", "b").join("\n");
        assert!(mysql.contains("REPLICATION_SLAVE_ADMIN"));
        assert!(mysql.contains("RELOAD"));
        assert!(mysql.contains("SYSTEM_VARIABLES_ADMIN"));
        assert!(mysql.contains("GRANT SELECT ON performance_schema.* TO 'orch'@'127.%'"));
    }

    #[test]
    fn replication_statements_per_flavor() {
        let source = layout(1, false);
        let maria = replication_sql(Flavor::Mariadb, &source, "pw");
        assert_eq!(
            maria,
            vec![
                "CHANGE MASTER TO MASTER_HOST='127.0.23.1', MASTER_PORT=13306, \
                 MASTER_USER='repl', MASTER_PASSWORD='pw', MASTER_USE_GTID=slave_pos, \
                 MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1"
                    .to_string(),
                "START SLAVE".to_string(),
            ]
        );
        let mysql = replication_sql(Flavor::Mysql, &source, "pw");
        assert!(mysql[0].starts_with("CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.23.1'"));
        assert!(mysql[0].contains("SOURCE_AUTO_POSITION=1"));
        assert!(mysql[0].contains("GET_SOURCE_PUBLIC_KEY=1"));
        assert_eq!(mysql[1], "START REPLICA");
    }

    #[test]
    fn topology_file_format() {
        let hosts: Vec<TopologyHost> = (1..=3)
            .map(|i| TopologyHost {
                host: host_id(i),
                address: format!("127.0.23.{i}:13306"),
                source: source_of(Shape::Star, i).map(host_id),
            })
            .collect();
        let yaml = topology_yaml("sandbox", Shape::Star, Flavor::Mariadb, "10.11.19", &hosts);
        assert_eq!(
            yaml,
            "# Written by `orch sandbox up`: a 3-instance star sandbox (MariaDB 10.11.19).\n\
             cluster: sandbox\n\
             credentials:\n  user: orch\n  password_file: secrets/orch.password\n  \
             replication_user: repl\n  replication_password_file: secrets/repl.password\n\
             policy: safe\n\
             hosts:\n\
             \x20 node1: { address: \"127.0.23.1:13306\", dc: local }\n\
             \x20 node2: { address: \"127.0.23.2:13306\", dc: local, source: node1 }\n\
             \x20 node3: { address: \"127.0.23.3:13306\", dc: local, source: node1 }\n"
        );
        let parsed: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(parsed["hosts"]["node3"]["source"], "node1");
    }

    #[test]
    fn cluster_names() {
        for (name, ok) in [
            ("sandbox", true),
            ("shop-eu_1.a", true),
            ("", false),
            ("-x", false),
            ("a b", false),
            ("a: b", false),
            ("x\ny", false),
        ] {
            assert_eq!(valid_cluster_name(name), ok, "{name:?}");
        }
    }

    #[test]
    fn versions() {
        let cases = [
            (
                "/usr/sbin/mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)\n",
                Some((Flavor::Mariadb, "10.11.19")),
            ),
            (
                "/usr/sbin/mysqld  Ver 10.11.6-MariaDB for Linux on x86_64 (MariaDB Server)",
                Some((Flavor::Mariadb, "10.11.6")),
            ),
            (
                "/usr/sbin/mysqld  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)",
                Some((Flavor::Mysql, "8.0.36")),
            ),
            ("garbage", None),
        ];
        for (out, want) in cases {
            let got = parse_version(out);
            assert_eq!(got.as_ref().map(|(f, v)| (*f, v.as_str())), want, "{out:?}");
        }
    }

    #[test]
    fn cmdline_verification() {
        let bin = Path::new("/usr/sbin/mariadbd");
        let cnf = Path::new("/sb/node2/my.cnf");
        let cases: &[(&[u8], bool)] = &[
            (
                b"/usr/sbin/mariadbd\0--defaults-file=/sb/node2/my.cnf\0--user=mysql\0",
                true,
            ),
            (
                b"/usr/sbin/mariadbd\0--defaults-file=/sb/node2/my.cnf\0",
                true,
            ),
            (b"mariadbd\0--defaults-file=/sb/node2/my.cnf\0", true),
            // Another instance of the same sandbox.
            (
                b"/usr/sbin/mariadbd\0--defaults-file=/sb/node1/my.cnf\0",
                false,
            ),
            // A prefix of the path is not the path.
            (
                b"/usr/sbin/mariadbd\0--defaults-file=/sb/node2/my.cnf.bak\0",
                false,
            ),
            // The option anywhere but first is ignored by the server.
            (
                b"/usr/sbin/mariadbd\0--user=mysql\0--defaults-file=/sb/node2/my.cnf\0",
                false,
            ),
            // A reused pid.
            (b"sleep\0infinity\0", false),
            (
                b"/bin/sh\0-c\0mariadbd --defaults-file=/sb/node2/my.cnf\0",
                false,
            ),
            // A zombie has an empty command line.
            (b"", false),
        ];
        for &(cmdline, want) in cases {
            assert_eq!(
                cmdline_matches(cmdline, bin, cnf),
                want,
                "{:?}",
                String::from_utf8_lossy(cmdline)
            );
        }
    }

    #[test]
    fn stat_states() {
        assert_eq!(proc_stat_state("123 (mariadbd) S 1 123"), Some('S'));
        assert_eq!(proc_stat_state("123 (a) b) T 1 123"), Some('T'));
        assert_eq!(proc_stat_state("123 (x) Z 1"), Some('Z'));
        assert_eq!(proc_stat_state("garbage"), None);
    }

    #[test]
    fn blocks_avoid_127_0_0_and_start_from_the_path() {
        let a: Vec<Block> = candidate_blocks(Path::new("/tmp/a")).take(1000).collect();
        let b: Vec<Block> = candidate_blocks(Path::new("/tmp/b")).take(1000).collect();
        assert_ne!(a[0], b[0], "different dirs start at different blocks");
        assert_eq!(
            a,
            candidate_blocks(Path::new("/tmp/a"))
                .take(1000)
                .collect::<Vec<_>>()
        );
        for block in candidate_blocks(Path::new("/x")) {
            assert!(!(block.x == 0 && block.y == 0));
            assert!(block.x < 255);
        }
        assert_eq!(
            candidate_blocks(Path::new("/x")).count(),
            (BLOCKS - 1) as usize
        );
    }

    #[test]
    fn choose_block_skips_busy_addresses() {
        let dir = Path::new("/tmp/sb");
        let first = candidate_blocks(dir).next().unwrap();
        let second = candidate_blocks(dir).nth(1).unwrap();
        // Instance 3 of the first block is taken: the whole block is skipped.
        let busy = first.ip(3);
        let got = choose_block(dir, 3, 13306, |ip, _| ip != busy);
        assert_eq!(got, Some(second));
        // Two instances fit in the first block.
        assert_eq!(choose_block(dir, 2, 13306, |ip, _| ip != busy), Some(first));
        // Nothing is free: give up after MAX_PROBES blocks rather than scan 65k.
        let mut probes = 0;
        assert_eq!(
            choose_block(dir, 1, 1, |_, _| {
                probes += 1;
                false
            }),
            None
        );
        assert_eq!(probes, MAX_PROBES);
        assert_eq!(first.ip(7), Ipv4Addr::new(127, first.x, first.y, 7));
    }
}
