//! Steps on real servers: each [`Step`] becomes one structured script of [`Op`]s, which is
//! both what runs and what `orch plan --show-sql` prints (rendered, never re-parsed).
//!
//! Takes a step and the server's flavour, gives the script; [`MysqlExecutor::run_step`]
//! runs it over one connection. Does network I/O (run_step only).
//!
//! Why the scripts look as they do:
//! - **Fence (MariaDB).** `read_only` stops ordinary accounts at once (an open transaction
//!   fails at COMMIT with 1290), but not READ_ONLY ADMIN holders, and that privilege can
//!   come directly, through a role, a default role, or be used by an event whose definer
//!   holds it. Rather than chase every path to the privilege, the fence kills every client
//!   session (replication and system threads excepted) and stops the event scheduler first
//!   (that needs SUPER; without it the step fails before anything changed). A writer that
//!   reconnects with the privilege is caught by the proof below, not trusted away.
//! - **Fence (MySQL).** `super_read_only` holds SUPER and CONNECTION_ADMIN accounts and
//!   events too; nothing needs killing.
//! - **Wait for GTID.** `MASTER_GTID_WAIT` compares with `gtid_slave_pos` only, so a former
//!   primary repointed with `current_pos` (its own writes are in its binlog, not in
//!   `gtid_slave_pos`) would wait forever for a position it has. The wait compares executed
//!   sets instead: per domain the later of `gtid_binlog_pos` and `gtid_slave_pos`, polled.
//!   MySQL's `WAIT_FOR_EXECUTED_GTID_SET` already compares with `gtid_executed`; its 1 is
//!   a timeout and fails the step.
//! - **The fence proof.** The server waited for is fenced (or stopped): after the wait its
//!   executed position is read again and must not have moved, or the step fails with the
//!   GTIDs that appeared, before anything is promoted.
//! - **Change source** sets `MASTER_CONNECT_RETRY` and `MASTER_HEARTBEAT_PERIOD` from the
//!   policy ([`Detection`]), so a moved replica notices a dead source as fast as the
//!   policy polls.

use std::time::{Duration, Instant};

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tokio::time::timeout;

use super::MysqlExecutor;
use crate::executor::Gate;
use crate::gtid::{Flavor, GtidSet, MariadbGtidPos};
use crate::step::{Action, GtidPosition, Step, StepError, StepOutcome};
use crate::topology::Address;

/// How fast a replica notices its source's death: written into every `CHANGE MASTER`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detection {
    /// `MASTER_CONNECT_RETRY`, seconds (at least 1).
    pub connect_retry_secs: u64,
    /// `MASTER_HEARTBEAT_PERIOD`, milliseconds.
    pub heartbeat_ms: u64,
}

impl Default for Detection {
    /// The built-in safe policy's: poll every second.
    fn default() -> Self {
        Detection::from_poll_interval(Duration::from_secs(1))
    }
}

impl Detection {
    /// Reconnect and heartbeat as often as the policy polls (`failover.detect.poll_interval`):
    /// a replica then loses a dead source within about one poll interval, as orch does.
    pub fn from_poll_interval(poll: Duration) -> Detection {
        Detection {
            connect_retry_secs: poll.as_secs().max(1),
            heartbeat_ms: u64::try_from(poll.as_millis()).unwrap_or(u64::MAX).max(100),
        }
    }

    fn heartbeat_text(self) -> String {
        format!(
            "{}.{:03}",
            self.heartbeat_ms / 1000,
            self.heartbeat_ms % 1000
        )
    }
}

/// Stands for the replication password in a statement's text until it runs.
const PASSWORD: &str = "'<credentials.replication_password>'";

/// One operation of a step's script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A statement, run as written (the replication password substituted at run time).
    Sql(String),
    /// `SET GLOBAL event_scheduler = OFF` when it is ON.
    EventsOff,
    /// Kill every client session but this one (replication and system threads stay).
    KillClients,
    /// `read_only = ON` (MySQL: `super_read_only`) waiting at most
    /// [`FENCE_PATIENCE_SECS`] for the commits in progress. A commit held back longer is
    /// waiting for a semi-synchronous acknowledgement that will not come (a former primary
    /// whose replicas moved away): let it wait out `rpl_semi_sync_master_timeout` and it
    /// is acknowledged to its client while the new primary never has it. So the client
    /// sessions are killed (theirs are then never acknowledged) and it is tried again, a
    /// few times.
    ReadOnlyPastCommits,
    /// Wait until the SQL thread has applied everything the IO thread received.
    WaitRelayLog { timeout_secs: u64 },
    /// Wait until this server has executed everything `until` has, then check that
    /// `until`'s position did not move.
    WaitExecuted {
        until: String,
        until_address: Address,
        timeout_secs: u64,
    },
}

/// Which of its sets a wait compares (MariaDB).
#[derive(Clone, Copy)]
enum Mine {
    /// `gtid_slave_pos`: what the SQL thread applied.
    Applied,
    /// Per domain the later of `gtid_binlog_pos` and `gtid_slave_pos`.
    Executed,
}

/// Client sessions: not this one, not replication, not system threads.
const CLIENT_SESSIONS: &str = "SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon', 'Slave_IO', 'Slave_SQL', 'Slave_worker') AND USER NOT IN ('system user', 'event_scheduler')";

/// MariaDB's "unknown thread id": the session ended between the list and the kill.
const ER_NO_SUCH_THREAD: u16 = 1094;

/// "Lock wait timeout exceeded".
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;

/// How long a fence's `read_only = ON` waits for the commits in progress before it kills
/// the client sessions ([`Op::ReadOnlyPastCommits`]); well under the default
/// `rpl_semi_sync_master_timeout` (10 s) and `--read-timeout` (3 s).
const FENCE_PATIENCE_SECS: u64 = 1;

/// How often [`Op::ReadOnlyPastCommits`] kills the client sessions before it gives up.
const FENCE_KILL_ROUNDS: usize = 3;

/// [`Op::ReadOnlyPastCommits`]'s statements: `before` once, `attempt` in each round,
/// `after` once it succeeded (the connection is kept for the next steps).
struct PastCommits {
    before: Option<String>,
    attempt: String,
    after: Option<String>,
}

fn read_only_past_commits(flavor: Flavor) -> PastCommits {
    match flavor {
        Flavor::Mariadb => PastCommits {
            before: None,
            attempt: format!(
                "SET STATEMENT lock_wait_timeout = {FENCE_PATIENCE_SECS} FOR SET GLOBAL read_only = ON"
            ),
            after: None,
        },
        // No SET STATEMENT: the session's own timeout, put back afterwards.
        Flavor::Mysql => PastCommits {
            before: Some(format!(
                "SET SESSION lock_wait_timeout = {FENCE_PATIENCE_SECS}"
            )),
            attempt: "SET GLOBAL super_read_only = ON".into(),
            after: Some("SET SESSION lock_wait_timeout = DEFAULT".into()),
        },
    }
}

/// Which statements a server understands: its flavour and version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dialect {
    pub flavor: Flavor,
    /// (major, minor, patch); a version that does not read as one is taken as new.
    pub version: (u32, u32, u32),
}

/// The oldest MySQL orch changes: `super_read_only`, `WAIT_FOR_EXECUTED_GTID_SET`, the
/// dynamic privileges and `GET_MASTER_PUBLIC_KEY` are all there from 8.0.
pub const MYSQL_MIN: (u32, u32, u32) = (8, 0, 0);

/// MySQL 8.0.22 renamed `STOP/START/RESET SLAVE` and `SHOW SLAVE STATUS` to `... REPLICA`;
/// the old names are gone in 8.4.
const MYSQL_REPLICA_STATEMENTS: (u32, u32, u32) = (8, 0, 22);
/// MySQL 8.0.23 added `CHANGE REPLICATION SOURCE TO` (and its `SOURCE_*` options);
/// `CHANGE MASTER TO` is gone in 8.4.
const MYSQL_CHANGE_SOURCE: (u32, u32, u32) = (8, 0, 23);

impl Dialect {
    /// The dialect of a server reporting `version` (`@@version`).
    pub fn of(flavor: Flavor, version: &str) -> Dialect {
        let mut parts = version
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse::<u32>().unwrap_or(0));
        Dialect {
            flavor,
            version: (
                parts.next().unwrap_or(99),
                parts.next().unwrap_or(0),
                parts.next().unwrap_or(0),
            ),
        }
    }

    fn at_least(self, v: (u32, u32, u32)) -> bool {
        self.version >= v
    }

    /// Why orch does not change a server of this dialect, if it does not.
    pub fn unsupported(self) -> Option<String> {
        let (a, b, c) = self.version;
        (self.flavor == Flavor::Mysql && !self.at_least(MYSQL_MIN)).then(|| {
            format!(
                "runs MySQL {a}.{b}.{c}: orch changes MySQL from {}.{}.{} (its statements, privileges and GTID functions); observing it works",
                MYSQL_MIN.0, MYSQL_MIN.1, MYSQL_MIN.2
            )
        })
    }

    /// MySQL's statement names from 8.0.22 (`REPLICA`), MariaDB's and older MySQL's
    /// (`SLAVE`) otherwise.
    fn replica_word(self) -> &'static str {
        if self.flavor == Flavor::Mysql && self.at_least(MYSQL_REPLICA_STATEMENTS) {
            "REPLICA"
        } else {
            "SLAVE"
        }
    }

    /// `SHOW REPLICA STATUS` / `SHOW SLAVE STATUS`.
    pub fn status_sql(self) -> &'static str {
        match self.replica_word() {
            "REPLICA" => "SHOW REPLICA STATUS",
            _ => "SHOW SLAVE STATUS",
        }
    }
}

/// The script of `step` on a server speaking `dialect`.
pub fn script(dialect: Dialect, step: &Step, replication_user: &str, d: Detection) -> Vec<Op> {
    let flavor = dialect.flavor;
    let mariadb = flavor == Flavor::Mariadb;
    let word = dialect.replica_word();
    let (stop, start, reset) = (
        format!("STOP {word}"),
        format!("START {word}"),
        format!("RESET {word} ALL"),
    );
    let (stop, start, reset) = (stop.as_str(), start.as_str(), reset.as_str());
    let sql = |s: &str| Op::Sql(s.to_string());
    let read_only = |on: bool| -> Vec<Op> {
        match (mariadb, on) {
            (true, true) => vec![sql("SET GLOBAL read_only = ON")],
            (true, false) => vec![sql("SET GLOBAL read_only = OFF")],
            // super_read_only implies read_only and holds SUPER accounts too.
            (false, true) => vec![sql("SET GLOBAL super_read_only = ON")],
            (false, false) => vec![
                sql("SET GLOBAL super_read_only = OFF"),
                sql("SET GLOBAL read_only = OFF"),
            ],
        }
    };
    match &step.action {
        Action::Fence { kill_writers } => {
            match (*kill_writers, mariadb) {
                (true, true) => vec![Op::EventsOff, Op::ReadOnlyPastCommits, Op::KillClients],
                // super_read_only holds the accounts that could write despite read_only.
                (true, false) => vec![Op::ReadOnlyPastCommits],
                (false, _) => read_only(true),
            }
        }
        Action::Unfence => read_only(false),
        Action::StopReplication => vec![sql(stop)],
        Action::StopIo => vec![sql(&format!("{stop} IO_THREAD"))],
        Action::WaitRelayLog { timeout_secs } => vec![Op::WaitRelayLog {
            timeout_secs: *timeout_secs,
        }],
        Action::StartReplication => vec![sql(start)],
        Action::WaitForGtid {
            until,
            until_address,
            timeout_secs,
        } => vec![Op::WaitExecuted {
            until: until.clone(),
            until_address: until_address.clone(),
            timeout_secs: *timeout_secs,
        }],
        Action::ChangeSource {
            source_address,
            gtid_position,
            delay_secs,
            with_credentials,
            ..
        } => {
            let (host, port) = (sql_string(&source_address.host), source_address.port);
            let credentials = |user: &str, password: &str| {
                if *with_credentials {
                    format!(
                        ", {user}={}, {password}={PASSWORD}",
                        sql_string(replication_user)
                    )
                } else {
                    String::new()
                }
            };
            let (retry, heartbeat) = (d.connect_retry_secs, d.heartbeat_text());
            if mariadb {
                let pos = match gtid_position {
                    GtidPosition::CurrentPos => "current_pos",
                    _ => "slave_pos",
                };
                vec![Op::Sql(format!(
                    "CHANGE MASTER TO MASTER_HOST={host}, MASTER_PORT={port}{}, MASTER_USE_GTID={pos}, MASTER_DELAY={delay_secs}, MASTER_CONNECT_RETRY={retry}, MASTER_HEARTBEAT_PERIOD={heartbeat}",
                    credentials("MASTER_USER", "MASTER_PASSWORD")
                ))]
            } else {
                // A new account on the channel (a former primary, a joining server) gets
                // GET_SOURCE_PUBLIC_KEY=1: the replication account is on
                // caching_sha2_password by default since 8.0, whose first login over a
                // link without TLS needs the source's RSA key, or the receiver fails
                // with error 2061. orch configures no replication TLS (the topology file
                // has none); a channel kept as it is keeps its own settings.
                let public_key = |option: &str| {
                    if *with_credentials {
                        format!(", {option}=1")
                    } else {
                        String::new()
                    }
                };
                // 8.0.23 renamed CHANGE MASTER TO and every MASTER_* option.
                let (change, o) = if dialect.at_least(MYSQL_CHANGE_SOURCE) {
                    ("CHANGE REPLICATION SOURCE TO", "SOURCE")
                } else {
                    ("CHANGE MASTER TO", "MASTER")
                };
                vec![Op::Sql(format!(
                    "{change} {o}_HOST={host}, {o}_PORT={port}{}, {o}_AUTO_POSITION=1, {o}_DELAY={delay_secs}, {o}_CONNECT_RETRY={retry}, {o}_HEARTBEAT_PERIOD={heartbeat}{}",
                    credentials(&format!("{o}_USER"), &format!("{o}_PASSWORD")),
                    public_key(&format!("GET_{o}_PUBLIC_KEY"))
                ))]
            }
        }
        Action::Promote => read_only(false),
        Action::ResetReplication => vec![sql(reset)],
    }
}

impl Op {
    /// The operation as people read it (`--show-sql`, the audit trail).
    pub fn render(&self, dialect: Dialect) -> Vec<String> {
        let flavor = dialect.flavor;
        match self {
            Op::Sql(s) => vec![s.clone()],
            Op::EventsOff => vec![
                "SET GLOBAL event_scheduler = OFF  -- when it is ON: a fenced server runs no events".into(),
            ],
            Op::KillClients => vec![
                CLIENT_SESSIONS.to_string(),
                "KILL CONNECTION <ID>  -- each session above (one already gone is fine)".into(),
            ],
            Op::ReadOnlyPastCommits => {
                let p = read_only_past_commits(flavor);
                let attempt = format!(
                    "{}  -- held back by a commit (one waiting for a semi-sync acknowledgement): the client sessions are killed, then again",
                    p.attempt
                );
                p.before.into_iter().chain([attempt]).chain(p.after).collect()
            }
            Op::WaitRelayLog { timeout_secs } => match flavor {
                Flavor::Mariadb => vec![format!(
                    "-- every 5ms for at most {timeout_secs}s until @@gtid_slave_pos contains SHOW SLAVE STATUS's Gtid_IO_Pos"
                )],
                Flavor::Mysql => vec![
                    format!("-- {}  -> Retrieved_Gtid_Set", dialect.status_sql()),
                    format!(
                        "SELECT WAIT_FOR_EXECUTED_GTID_SET('<Retrieved_Gtid_Set>', {timeout_secs})"
                    ),
                ],
            },
            Op::WaitExecuted {
                until,
                timeout_secs,
                ..
            } => match flavor {
                Flavor::Mariadb => vec![
                    format!("-- on {until}: SELECT @@gtid_binlog_pos, @@gtid_slave_pos  -> <position> (per domain the later)"),
                    format!("-- every 5ms for at most {timeout_secs}s until its own position contains <position>: SELECT @@gtid_binlog_pos, @@gtid_slave_pos"),
                    format!("-- on {until} again: the position must not have moved (it is stopped or fenced: nothing may write there)"),
                ],
                Flavor::Mysql => vec![
                    format!("-- on {until}: SELECT @@gtid_executed  -> <gtid set>"),
                    format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('<gtid set>', {timeout_secs})"),
                    format!("-- on {until} again: gtid_executed must not have moved (it is stopped or fenced: nothing may write there)"),
                ],
            },
        }
    }
}

/// The statements of `step` as `orch plan --show-sql` prints them.
pub fn step_sql(
    dialect: Dialect,
    step: &Step,
    replication_user: &str,
    d: Detection,
) -> Vec<String> {
    script(dialect, step, replication_user, d)
        .iter()
        .flat_map(|op| op.render(dialect))
        .collect()
}

/// A single-quoted SQL string literal.
fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// A statement's failure as a step error.
fn failed(host: &str, statement: &str, e: mysql_async::Error) -> StepError {
    match e {
        mysql_async::Error::Server(s) => StepError::Server {
            code: s.code,
            message: s.message,
            statement: statement.to_string(),
        },
        other => StepError::Unreachable {
            host: host.to_string(),
            detail: other.to_string(),
        },
    }
}

impl MysqlExecutor {
    /// Runs `step`'s script over one connection to its server, asking `gate` before each
    /// statement that changes it.
    pub(super) async fn run_step(
        &self,
        step: &Step,
        gate: Gate<'_>,
    ) -> Result<StepOutcome, StepError> {
        let host = step.host.as_str();
        let mut conn = self.step_conn(host, &step.address).await?;
        let dialect = self.dialect_of(host, &mut conn).await?;
        if let Some(why) = dialect.unsupported() {
            return Err(StepError::Precondition(format!(
                "{host} {why}: `{}` not run",
                step.action.describe()
            )));
        }
        let user = self
            .replication
            .as_ref()
            .map_or("repl", |(u, _)| u.as_str());
        let mut outcome = StepOutcome::default();
        for op in script(dialect, step, user, self.detection) {
            outcome.statements.extend(op.render(dialect));
            self.run_op(host, dialect, &mut conn, &op, gate).await?;
        }
        self.give_back(&step.address, conn).await;
        Ok(outcome)
    }

    async fn step_conn(&self, host: &str, address: &Address) -> Result<Conn, StepError> {
        self.checkout(address)
            .await
            .map_err(|(_, detail)| StepError::Unreachable {
                host: host.to_string(),
                detail,
            })
    }

    async fn dialect_of(&self, host: &str, conn: &mut Conn) -> Result<Dialect, StepError> {
        let sql = "SELECT @@version, @@version_comment";
        let v: (String, String) = self
            .bounded(host, sql, conn.query_first(sql))
            .await?
            .unwrap_or_default();
        let flavor = if v.0.contains("MariaDB") || v.1.contains("MariaDB") {
            Flavor::Mariadb
        } else {
            Flavor::Mysql
        };
        Ok(Dialect::of(flavor, &v.0))
    }

    /// One query, bounded by the read timeout.
    async fn bounded<T>(
        &self,
        host: &str,
        sql: &str,
        query: impl std::future::Future<Output = Result<T, mysql_async::Error>>,
    ) -> Result<T, StepError> {
        self.bounded_by(self.options.read_timeout, host, sql, query)
            .await
    }

    /// One query, bounded by `limit`.
    async fn bounded_by<T>(
        &self,
        limit: Duration,
        host: &str,
        sql: &str,
        query: impl std::future::Future<Output = Result<T, mysql_async::Error>>,
    ) -> Result<T, StepError> {
        match timeout(limit, query).await {
            Err(_) => Err(StepError::Unreachable {
                host: host.to_string(),
                detail: format!("no answer to `{sql}` within {limit:?}"),
            }),
            Ok(r) => r.map_err(|e| failed(host, sql, e)),
        }
    }

    async fn run_op(
        &self,
        host: &str,
        dialect: Dialect,
        conn: &mut Conn,
        op: &Op,
        gate: Gate<'_>,
    ) -> Result<(), StepError> {
        let flavor = dialect.flavor;
        // Asked right before a statement leaves: a pause since the step began (a stall,
        // SIGSTOP) may have cost this process its right to act.
        let ask = |sql: &str| {
            gate().map_err(|why| StepError::Precondition(format!("{why}: `{sql}` not sent")))
        };
        match op {
            Op::Sql(sql) => {
                ask(sql)?;
                let run = if sql.contains(PASSWORD) {
                    let Some((_, password)) = &self.replication else {
                        return Err(StepError::Precondition(
                            "the step sets the replication account but the topology has no credentials.replication_password".into(),
                        ));
                    };
                    sql.replace(PASSWORD, &sql_string(password.expose()))
                } else {
                    sql.clone()
                };
                // The error names the statement as rendered: never the password.
                self.bounded(host, sql, conn.query_drop(run)).await
            }
            Op::EventsOff => {
                let sql = "SELECT @@event_scheduler";
                let on: Option<String> = self.bounded(host, sql, conn.query_first(sql)).await?;
                if on.as_deref() == Some("ON") {
                    let off = "SET GLOBAL event_scheduler = OFF";
                    ask(off)?;
                    self.bounded(host, off, conn.query_drop(off))
                        .await
                        .map_err(|e| match e {
                            StepError::Server { code: 1227, statement, .. } => StepError::Server {
                                code: 1227,
                                message: "orch needs SUPER to stop the event scheduler of a server it fences (events can write under read_only): grant it, or set event_scheduler=OFF there yourself".into(),
                                statement,
                            },
                            other => other,
                        })?;
                }
                Ok(())
            }
            Op::KillClients => self.kill_clients(host, conn, &ask).await,
            Op::ReadOnlyPastCommits => {
                let p = read_only_past_commits(flavor);
                if let Some(sql) = &p.before {
                    self.bounded(host, sql, conn.query_drop(sql)).await?;
                }
                // The server's own wait must end first, whatever --read-timeout says.
                let limit = self
                    .options
                    .read_timeout
                    .max(Duration::from_secs(FENCE_PATIENCE_SECS + 1));
                let mut round = 0;
                loop {
                    ask(&p.attempt)?;
                    match self
                        .bounded_by(limit, host, &p.attempt, conn.query_drop(&p.attempt))
                        .await
                    {
                        Err(StepError::Server {
                            code: ER_LOCK_WAIT_TIMEOUT,
                            ..
                        }) if round < FENCE_KILL_ROUNDS => {
                            self.kill_clients(host, conn, &ask).await?;
                            round += 1;
                        }
                        other => break other?,
                    }
                }
                if let Some(sql) = &p.after {
                    self.bounded(host, sql, conn.query_drop(sql)).await?;
                }
                Ok(())
            }
            Op::WaitRelayLog { timeout_secs } => {
                let status_sql = dialect.status_sql();
                let status = self
                    .bounded(host, status_sql, super::query_rows(conn, status_sql))
                    .await?;
                let column = match flavor {
                    Flavor::Mariadb => "Gtid_IO_Pos",
                    Flavor::Mysql => "Retrieved_Gtid_Set",
                };
                let received = status
                    .first()
                    .and_then(|r| r.get(column).cloned().flatten())
                    .unwrap_or_default()
                    .replace('\n', "");
                let received = GtidSet::parse(flavor, &received)
                    .map_err(|e| StepError::Precondition(format!("{host}: {column}: {e}")))?;
                self.wait_contains(
                    host,
                    flavor,
                    conn,
                    &received,
                    Mine::Applied,
                    *timeout_secs,
                    "what it received",
                )
                .await?;
                Ok(())
            }
            Op::WaitExecuted {
                until,
                until_address,
                timeout_secs,
            } => {
                let mut other = self.step_conn(until, until_address).await?;
                let target = self.executed(until, flavor, &mut other).await?;
                self.wait_contains(
                    host,
                    flavor,
                    conn,
                    &target,
                    Mine::Executed,
                    *timeout_secs,
                    &format!("{until}'s"),
                )
                .await?;
                let after = self.executed(until, flavor, &mut other).await?;
                self.give_back(until_address, other).await;
                if after != target {
                    return Err(StepError::FenceBreached {
                        host: until.clone(),
                        before: target.to_string(),
                        after: after.to_string(),
                    });
                }
                Ok(())
            }
        }
    }

    /// Kills every client session but this one ([`CLIENT_SESSIONS`]), asking `ask` before
    /// each kill; one already gone is fine.
    async fn kill_clients(
        &self,
        host: &str,
        conn: &mut Conn,
        ask: &impl Fn(&str) -> Result<(), StepError>,
    ) -> Result<(), StepError> {
        let ids: Vec<u64> = self
            .bounded(host, CLIENT_SESSIONS, conn.query(CLIENT_SESSIONS))
            .await?;
        for id in ids {
            let kill = format!("KILL CONNECTION {id}");
            ask(&kill)?;
            match self.bounded(host, &kill, conn.query_drop(&kill)).await {
                Err(StepError::Server {
                    code: ER_NO_SUCH_THREAD,
                    ..
                }) => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// Waits, at most `timeout_secs`, until this server's `mine` set contains `target`:
    /// MariaDB polls every 5 ms, MySQL asks `WAIT_FOR_EXECUTED_GTID_SET` (applied and
    /// executed are one set there). `what` names the target in the error.
    #[allow(clippy::too_many_arguments)]
    async fn wait_contains(
        &self,
        host: &str,
        flavor: Flavor,
        conn: &mut Conn,
        target: &GtidSet,
        mine: Mine,
        timeout_secs: u64,
        what: &str,
    ) -> Result<(), StepError> {
        let deadline = Instant::now() + Duration::from_secs(timeout_secs);
        match flavor {
            Flavor::Mariadb => loop {
                let now = match mine {
                    Mine::Executed => self.executed(host, flavor, conn).await?,
                    Mine::Applied => {
                        let sql = "SELECT @@gtid_slave_pos";
                        let text: String = self
                            .bounded(host, sql, conn.query_first(sql))
                            .await?
                            .unwrap_or_default();
                        GtidSet::parse(flavor, &text).map_err(|e| {
                            StepError::Precondition(format!("{host}: gtid_slave_pos: {e}"))
                        })?
                    }
                };
                if now.contains(target).unwrap_or(false) {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    return Err(StepError::TimedOut(format!(
                        "{host} reached {now} but not {what} {target} within {timeout_secs}s"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            },
            Flavor::Mysql => {
                let sql = format!(
                    "SELECT WAIT_FOR_EXECUTED_GTID_SET({}, {timeout_secs})",
                    sql_string(&target.to_string())
                );
                let r: Option<i64> = timeout(
                    Duration::from_secs(timeout_secs + 5),
                    conn.query_first(sql.as_str()),
                )
                .await
                .map_err(|_| StepError::TimedOut(sql.clone()))?
                .map_err(|e| failed(host, &sql, e))?;
                if r != Some(0) {
                    return Err(StepError::TimedOut(format!(
                        "{host} did not reach {what} {target} within {timeout_secs}s"
                    )));
                }
                Ok(())
            }
        }
    }

    /// What a server has executed: MariaDB per domain the later of `gtid_binlog_pos` and
    /// `gtid_slave_pos`; MySQL `gtid_executed`.
    async fn executed(
        &self,
        host: &str,
        flavor: Flavor,
        conn: &mut Conn,
    ) -> Result<GtidSet, StepError> {
        let unreadable = |e: String| StepError::Precondition(format!("{host}: {e}"));
        match flavor {
            Flavor::Mariadb => {
                let sql = "SELECT @@gtid_binlog_pos, @@gtid_slave_pos";
                let (b, s): (String, String) = self
                    .bounded(host, sql, conn.query_first(sql))
                    .await?
                    .unwrap_or_default();
                MariadbGtidPos::executed(&b, &s)
                    .map(GtidSet::Mariadb)
                    .map_err(unreadable)
            }
            Flavor::Mysql => {
                let sql = "SELECT @@gtid_executed";
                let text: String = self
                    .bounded(host, sql, conn.query_first(sql))
                    .await?
                    .unwrap_or_default();
                GtidSet::parse(Flavor::Mysql, &text.replace('\n', ""))
                    .map_err(|e| unreadable(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::Phase;

    fn step(action: Action) -> Step {
        Step {
            number: 1,
            phase: Phase::Move,
            host: "db2".into(),
            address: Address::parse("10.0.0.2:3306").unwrap(),
            action,
            why: String::new(),
            requires: Vec::new(),
            expects: Vec::new(),
            detachable: None,
        }
    }

    /// The current release of each flavour.
    fn dialect(flavor: Flavor) -> Dialect {
        match flavor {
            Flavor::Mariadb => Dialect::of(flavor, "10.11.6-MariaDB-0+deb12u1-log"),
            Flavor::Mysql => Dialect::of(flavor, "8.4.3"),
        }
    }

    /// MySQL renamed its replication statements in 8.0.22 (STOP/START/RESET REPLICA, SHOW
    /// REPLICA STATUS) and 8.0.23 (CHANGE REPLICATION SOURCE TO, SOURCE_* options), and
    /// removed the old names in 8.4: each server gets the names it knows.
    #[test]
    fn mysql_statements_per_version() {
        let d = Detection::from_poll_interval(Duration::from_secs(1));
        let change = |with_credentials| {
            step(Action::ChangeSource {
                source: "db1".into(),
                source_address: Address::parse("10.0.0.1:3306").unwrap(),
                gtid_position: GtidPosition::AutoPosition,
                delay_secs: 0,
                with_credentials,
            })
        };
        let sql = |version: &str, s: &Step| {
            step_sql(Dialect::of(Flavor::Mysql, version), s, "repl", d).join("; ")
        };
        let stop = step(Action::StopReplication);
        let reset = step(Action::ResetReplication);
        let cases = [
            (
                "8.0.21",
                "STOP SLAVE",
                "RESET SLAVE ALL",
                "CHANGE MASTER TO MASTER_HOST='10.0.0.1', MASTER_PORT=3306, MASTER_USER='repl', MASTER_PASSWORD='<credentials.replication_password>', MASTER_AUTO_POSITION=1, MASTER_DELAY=0, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1.000, GET_MASTER_PUBLIC_KEY=1",
            ),
            (
                "8.0.22-log",
                "STOP REPLICA",
                "RESET REPLICA ALL",
                "CHANGE MASTER TO MASTER_HOST='10.0.0.1', MASTER_PORT=3306, MASTER_USER='repl', MASTER_PASSWORD='<credentials.replication_password>', MASTER_AUTO_POSITION=1, MASTER_DELAY=0, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1.000, GET_MASTER_PUBLIC_KEY=1",
            ),
            (
                "8.0.23",
                "STOP REPLICA",
                "RESET REPLICA ALL",
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST='10.0.0.1', SOURCE_PORT=3306, SOURCE_USER='repl', SOURCE_PASSWORD='<credentials.replication_password>', SOURCE_AUTO_POSITION=1, SOURCE_DELAY=0, SOURCE_CONNECT_RETRY=1, SOURCE_HEARTBEAT_PERIOD=1.000, GET_SOURCE_PUBLIC_KEY=1",
            ),
            (
                "8.4.3",
                "STOP REPLICA",
                "RESET REPLICA ALL",
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST='10.0.0.1', SOURCE_PORT=3306, SOURCE_USER='repl', SOURCE_PASSWORD='<credentials.replication_password>', SOURCE_AUTO_POSITION=1, SOURCE_DELAY=0, SOURCE_CONNECT_RETRY=1, SOURCE_HEARTBEAT_PERIOD=1.000, GET_SOURCE_PUBLIC_KEY=1",
            ),
        ];
        for (version, want_stop, want_reset, want_change) in cases {
            assert_eq!(sql(version, &stop), want_stop, "{version}");
            assert_eq!(sql(version, &reset), want_reset, "{version}");
            assert_eq!(sql(version, &change(true)), want_change, "{version}");
            // A channel that keeps its account keeps its own key and TLS settings.
            assert!(
                !sql(version, &change(false)).contains("PUBLIC_KEY"),
                "{version}"
            );
        }
        // The relay-log wait reads the status by the name the server knows.
        let wait = step(Action::WaitRelayLog { timeout_secs: 5 });
        assert!(sql("8.0.21", &wait).starts_with("-- SHOW SLAVE STATUS"));
        assert!(sql("8.0.36", &wait).starts_with("-- SHOW REPLICA STATUS"));
        // Older than 8.0: refused, with the version named; MariaDB and 8.0 are not.
        let why = Dialect::of(Flavor::Mysql, "5.7.44-log")
            .unsupported()
            .unwrap();
        assert!(
            why.contains("MySQL 5.7.44") && why.contains("from 8.0.0"),
            "{why}"
        );
        assert_eq!(Dialect::of(Flavor::Mysql, "8.0.11").unsupported(), None);
        assert_eq!(
            Dialect::of(Flavor::Mariadb, "10.6.1-MariaDB").unsupported(),
            None
        );
        // MariaDB never gets a MySQL-only option.
        let maria = step_sql(dialect(Flavor::Mariadb), &change(true), "repl", d).join("; ");
        assert!(!maria.contains("PUBLIC_KEY") && maria.starts_with("CHANGE MASTER TO"));
    }

    #[test]
    fn step_sql_per_flavour() {
        let change = Action::ChangeSource {
            source: "db1".into(),
            source_address: Address::parse("10.0.0.1:3306").unwrap(),
            gtid_position: GtidPosition::CurrentPos,
            delay_secs: 60,
            with_credentials: true,
        };
        let fence = |kill_writers| Action::Fence { kill_writers };
        let cases: &[(Flavor, Action, &[&str])] = &[
            (
                Flavor::Mariadb,
                fence(false),
                &["SET GLOBAL read_only = ON"],
            ),
            (
                Flavor::Mysql,
                fence(false),
                &["SET GLOBAL super_read_only = ON"],
            ),
            // Past a commit held for a semi-sync acknowledgement: the session's lock wait
            // bounded, then put back (the connection serves the next steps).
            (
                Flavor::Mysql,
                fence(true),
                &[
                    "SET SESSION lock_wait_timeout = 1",
                    "SET GLOBAL super_read_only = ON",
                    "SET SESSION lock_wait_timeout = DEFAULT",
                ],
            ),
            (
                Flavor::Mariadb,
                Action::Unfence,
                &["SET GLOBAL read_only = OFF"],
            ),
            (
                Flavor::Mysql,
                Action::Unfence,
                &[
                    "SET GLOBAL super_read_only = OFF",
                    "SET GLOBAL read_only = OFF",
                ],
            ),
            (Flavor::Mariadb, Action::StopReplication, &["STOP SLAVE"]),
            (Flavor::Mysql, Action::StartReplication, &["START REPLICA"]),
            (
                Flavor::Mariadb,
                Action::Promote,
                &["SET GLOBAL read_only = OFF"],
            ),
            (
                Flavor::Mysql,
                Action::ResetReplication,
                &["RESET REPLICA ALL"],
            ),
            (
                Flavor::Mariadb,
                change.clone(),
                &[
                    "CHANGE MASTER TO MASTER_HOST='10.0.0.1', MASTER_PORT=3306, MASTER_USER='re''pl', MASTER_PASSWORD='<credentials.replication_password>', MASTER_USE_GTID=current_pos, MASTER_DELAY=60, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=0.500",
                ],
            ),
            (
                Flavor::Mysql,
                change,
                &[
                    "CHANGE REPLICATION SOURCE TO SOURCE_HOST='10.0.0.1', SOURCE_PORT=3306, SOURCE_USER='re''pl', SOURCE_PASSWORD='<credentials.replication_password>', SOURCE_AUTO_POSITION=1, SOURCE_DELAY=60, SOURCE_CONNECT_RETRY=1, SOURCE_HEARTBEAT_PERIOD=0.500, GET_SOURCE_PUBLIC_KEY=1",
                ],
            ),
        ];
        let d = Detection::from_poll_interval(Duration::from_millis(500));
        for (flavor, action, want) in cases {
            // The statements, without the comments that explain them.
            let sql: Vec<String> = step_sql(dialect(*flavor), &step(action.clone()), "re'pl", d)
                .iter()
                .map(|l| l.split("  --").next().unwrap().to_string())
                .collect();
            assert_eq!(sql, *want, "{flavor:?} {action:?}");
        }
        // The MariaDB fence: events off first (nothing changed if that is refused), then
        // read_only (past a commit that waits for an acknowledgement that will not come),
        // then every client session killed.
        assert_eq!(
            script(dialect(Flavor::Mariadb), &step(fence(true)), "repl", d),
            [Op::EventsOff, Op::ReadOnlyPastCommits, Op::KillClients]
        );
        assert_eq!(
            Op::ReadOnlyPastCommits.render(dialect(Flavor::Mariadb))[0]
                .split("  --")
                .next()
                .unwrap(),
            "SET STATEMENT lock_wait_timeout = 1 FOR SET GLOBAL read_only = ON"
        );
        let wait = Action::WaitForGtid {
            until: "db1".into(),
            until_address: Address::parse("10.0.0.1:3306").unwrap(),
            timeout_secs: 30,
        };
        assert_eq!(
            step_sql(dialect(Flavor::Mysql), &step(wait), "repl", d)[1],
            "SELECT WAIT_FOR_EXECUTED_GTID_SET('<gtid set>', 30)"
        );
    }

    #[test]
    fn detection_from_the_poll_interval() {
        let d = Detection::from_poll_interval(Duration::from_secs(3));
        assert_eq!(
            (d.connect_retry_secs, d.heartbeat_text().as_str()),
            (3, "3.000")
        );
        let d = Detection::from_poll_interval(Duration::from_millis(10));
        assert_eq!(
            (d.connect_retry_secs, d.heartbeat_text().as_str()),
            (1, "0.100")
        );
    }

    /// A former primary repointed with current_pos has its own writes only in its binlog:
    /// the executed position takes each domain's later GTID.
    #[test]
    fn executed_position_table() {
        let cases = [
            ("0-1-10", "0-2-4", "0-1-10"),
            ("0-1-3", "0-2-9", "0-2-9"),
            ("", "0-1-5,1-2-7", "0-1-5,1-2-7"),
            ("0-1-5,1-1-2", "1-2-7", "0-1-5,1-2-7"),
            ("", "", ""),
        ];
        for (binlog, slave, want) in cases {
            assert_eq!(
                MariadbGtidPos::executed(binlog, slave).unwrap().to_string(),
                want,
                "{binlog} / {slave}"
            );
        }
        assert!(MariadbGtidPos::executed("0-1-x", "").is_err());
    }
}
