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

/// The script of `step` on a server of `flavor`.
pub fn script(flavor: Flavor, step: &Step, replication_user: &str, d: Detection) -> Vec<Op> {
    let mariadb = flavor == Flavor::Mariadb;
    let (stop, start, reset) = if mariadb {
        ("STOP SLAVE", "START SLAVE", "RESET SLAVE ALL")
    } else {
        ("STOP REPLICA", "START REPLICA", "RESET REPLICA ALL")
    };
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
                vec![Op::Sql(format!(
                    "CHANGE REPLICATION SOURCE TO SOURCE_HOST={host}, SOURCE_PORT={port}{}, SOURCE_AUTO_POSITION=1, SOURCE_DELAY={delay_secs}, SOURCE_CONNECT_RETRY={retry}, SOURCE_HEARTBEAT_PERIOD={heartbeat}",
                    credentials("SOURCE_USER", "SOURCE_PASSWORD")
                ))]
            }
        }
        Action::Promote => read_only(false),
        Action::ResetReplication => vec![sql(reset)],
    }
}

impl Op {
    /// The operation as people read it (`--show-sql`, the audit trail).
    pub fn render(&self, flavor: Flavor) -> Vec<String> {
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
                    "-- SHOW REPLICA STATUS  -> Retrieved_Gtid_Set".to_string(),
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
pub fn step_sql(flavor: Flavor, step: &Step, replication_user: &str, d: Detection) -> Vec<String> {
    script(flavor, step, replication_user, d)
        .iter()
        .flat_map(|op| op.render(flavor))
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
        let flavor = self.flavor_of(host, &mut conn).await?;
        let user = self
            .replication
            .as_ref()
            .map_or("repl", |(u, _)| u.as_str());
        let mut outcome = StepOutcome::default();
        for op in script(flavor, step, user, self.detection) {
            outcome.statements.extend(op.render(flavor));
            self.run_op(host, flavor, &mut conn, &op, gate).await?;
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

    async fn flavor_of(&self, host: &str, conn: &mut Conn) -> Result<Flavor, StepError> {
        let sql = "SELECT @@version, @@version_comment";
        let v: (String, String) = self
            .bounded(host, sql, conn.query_first(sql))
            .await?
            .unwrap_or_default();
        Ok(if v.0.contains("MariaDB") || v.1.contains("MariaDB") {
            Flavor::Mariadb
        } else {
            Flavor::Mysql
        })
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
        flavor: Flavor,
        conn: &mut Conn,
        op: &Op,
        gate: Gate<'_>,
    ) -> Result<(), StepError> {
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
                let status_sql = match flavor {
                    Flavor::Mariadb => "SHOW SLAVE STATUS",
                    Flavor::Mysql => "SHOW REPLICA STATUS",
                };
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
                    "CHANGE REPLICATION SOURCE TO SOURCE_HOST='10.0.0.1', SOURCE_PORT=3306, SOURCE_USER='re''pl', SOURCE_PASSWORD='<credentials.replication_password>', SOURCE_AUTO_POSITION=1, SOURCE_DELAY=60, SOURCE_CONNECT_RETRY=1, SOURCE_HEARTBEAT_PERIOD=0.500",
                ],
            ),
        ];
        let d = Detection::from_poll_interval(Duration::from_millis(500));
        for (flavor, action, want) in cases {
            // The statements, without the comments that explain them.
            let sql: Vec<String> = step_sql(*flavor, &step(action.clone()), "re'pl", d)
                .iter()
                .map(|l| l.split("  --").next().unwrap().to_string())
                .collect();
            assert_eq!(sql, *want, "{flavor:?} {action:?}");
        }
        // The MariaDB fence: events off first (nothing changed if that is refused), then
        // read_only (past a commit that waits for an acknowledgement that will not come),
        // then every client session killed.
        assert_eq!(
            script(Flavor::Mariadb, &step(fence(true)), "repl", d),
            [Op::EventsOff, Op::ReadOnlyPastCommits, Op::KillClients]
        );
        assert_eq!(
            Op::ReadOnlyPastCommits.render(Flavor::Mariadb)[0]
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
            step_sql(Flavor::Mysql, &step(wait), "repl", d)[1],
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
