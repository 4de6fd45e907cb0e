//! The one step vocabulary: what a plan, a recovery and apply's engine all speak.
//!
//! A [`Step`] is one [`Action`] on one server, with the [`Condition`]s it needs before it
//! runs (`requires`) and promises after (`expects`), the [`Phase`] (which change) it belongs
//! to and why it is there. The planner builds steps, the proof replays them on the step
//! model, executors run them. Pure data: no I/O.

use serde::{Deserialize, Serialize};

use crate::topology::Address;

/// Which change a step belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Drift repaired in place: read_only, stopped replication.
    Repair,
    /// A different primary: fence, catch up, repoint, promote.
    Switchover,
    /// The primary is dead: its replicas stop listening to it, apply what they received,
    /// the best one is promoted and the others follow it.
    Failover,
    /// A replica replicating from another source.
    Move,
    /// A host new to the file starts replicating.
    Join,
    /// A server no longer in the file stops replicating (`--detach-removed`).
    Detach,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Repair => "repair",
            Phase::Switchover => "switchover",
            Phase::Failover => "failover",
            Phase::Move => "move",
            Phase::Join => "join",
            Phase::Detach => "detach",
        }
    }
}

/// How a MariaDB replica tells its new source where to start (`MASTER_USE_GTID`); MySQL
/// always uses auto-positioning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GtidPosition {
    /// `gtid_slave_pos`: what it replicated. Right for a replica.
    SlavePos,
    /// `gtid_current_pos`: also what it wrote itself. Right for a former primary, whose own
    /// transactions are not in `gtid_slave_pos` (slave_pos would fetch them again).
    CurrentPos,
    /// MySQL `SOURCE_AUTO_POSITION=1`.
    AutoPosition,
}

/// What a step does. One vocabulary for refactoring, switchover and failover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// `read_only=ON`; with `kill_writers`, also kill the sessions that can write despite
    /// it (accounts with READ_ONLY ADMIN on MariaDB, SUPER or CONNECTION_ADMIN on MySQL).
    Fence {
        kill_writers: bool,
    },
    /// `read_only=OFF` on the primary.
    Unfence,
    StopReplication,
    /// `STOP SLAVE IO_THREAD`: nothing more is received from the source (a half-dead
    /// primary gets no acknowledgements from it); the SQL thread applies what arrived.
    StopIo,
    /// Wait until the SQL thread has applied everything the IO thread received (the
    /// relay log), at most `timeout_secs`.
    WaitRelayLog {
        timeout_secs: u64,
    },
    /// Wait until this server has executed everything `until` had executed when the wait
    /// began (`until` is fenced or stopped, so that position no longer moves).
    WaitForGtid {
        until: String,
        until_address: Address,
        timeout_secs: u64,
    },
    /// `CHANGE MASTER TO` the source, GTID-positioned; replication stays stopped.
    ChangeSource {
        source: String,
        source_address: Address,
        gtid_position: GtidPosition,
        delay_secs: u32,
        /// Set the replication account too: the server has no replication configured
        /// (a joining host, a former primary). Otherwise `CHANGE MASTER` keeps it.
        with_credentials: bool,
    },
    StartReplication,
    /// `read_only=OFF` on a server without a source: it becomes the primary. Always last.
    Promote,
    /// `RESET SLAVE ALL`: the server forgets its source (read_only stays as it is).
    ResetReplication,
}

impl Action {
    /// The action in a few words, for tables.
    pub fn describe(&self) -> String {
        match self {
            Action::Fence { kill_writers: true } => {
                "fence: read_only=ON, kill sessions that can write despite it".into()
            }
            Action::Fence {
                kill_writers: false,
            } => "fence: read_only=ON".into(),
            Action::Unfence => "unfence: read_only=OFF".into(),
            Action::StopReplication => "stop replication".into(),
            Action::StopIo => "stop receiving (IO thread)".into(),
            Action::WaitRelayLog { .. } => "wait until it has applied what it received".into(),
            Action::WaitForGtid { until, .. } => {
                format!("wait until it has executed {until}'s GTIDs")
            }
            Action::ChangeSource {
                source,
                gtid_position,
                delay_secs,
                ..
            } => {
                let pos = match gtid_position {
                    GtidPosition::SlavePos => "slave_pos",
                    GtidPosition::CurrentPos => "current_pos",
                    GtidPosition::AutoPosition => "auto-position",
                };
                let delay = if *delay_secs > 0 {
                    format!(
                        ", delay {}",
                        crate::spec::decode::format_duration(std::time::Duration::from_secs(
                            u64::from(*delay_secs)
                        ))
                    )
                } else {
                    String::new()
                };
                format!("change source to {source} (GTID {pos}{delay})")
            }
            Action::StartReplication => "start replication".into(),
            Action::Promote => "promote: read_only=OFF".into(),
            Action::ResetReplication => "reset replication (forget its source)".into(),
        }
    }
}

/// A fact about one server that a step needs before it runs or promises after.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum Condition {
    Reachable,
    ReadOnly {
        on: bool,
    },
    /// Replication configured and stopped (or not configured, where the step allows it).
    ReplicationStopped,
    /// The IO thread is stopped (the SQL thread may run).
    IoStopped,
    /// Replication configured from `source` (threads as the step leaves them).
    SourceIs {
        source: String,
    },
    /// Both replication threads running from `source`.
    ReplicatingFrom {
        source: String,
    },
    NotReplica,
    /// Has executed everything `host` has executed.
    Contains {
        host: String,
    },
    /// Has executed nothing `host` lacks: `host` can serve it as a source without a gap
    /// (checked before a replica changes source: a source that came back between the
    /// observation and the step may have sent it more than the new source has).
    ContainedIn {
        host: String,
    },
    /// No other server of the cluster is writable.
    NoOtherWritable,
    /// `host` replicates with a known lag of at most `seconds` (a switchover's candidate,
    /// checked right before the old primary is fenced).
    LagAtMost {
        host: String,
        seconds: u64,
    },
}

impl Condition {
    /// The other server a condition is about, which must be observed with the step's.
    pub fn other_host(&self) -> Option<&str> {
        match self {
            Condition::Contains { host }
            | Condition::ContainedIn { host }
            | Condition::LagAtMost { host, .. } => Some(host),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// From 1.
    pub number: usize,
    pub phase: Phase,
    pub host: String,
    pub address: Address,
    #[serde(flatten)]
    pub action: Action,
    pub why: String,
    pub requires: Vec<Condition>,
    pub expects: Vec<Condition>,
    /// The replica whose move this step belongs to, when the change can go on without it:
    /// a failover moves every replica under its successor, and one replica that cannot be
    /// moved (its applier hangs on a lock, it stops answering) must not keep the cluster
    /// without a primary. When such a step fails, that replica's later steps are skipped,
    /// it is reported as left behind, and the run goes on; the plan is proven with each
    /// such group cut short at any of its steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detachable: Option<String>,
}

/// What a step did: the statements it ran, as `--show-sql` renders them (never a secret).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOutcome {
    pub statements: Vec<String>,
}

/// Why a step failed; callers branch on the kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepError {
    /// The server could not be reached (or stopped answering).
    Unreachable { host: String, detail: String },
    /// The server is not in the state the step needs.
    Precondition(String),
    /// The server refused a statement.
    Server {
        code: u16,
        message: String,
        statement: String,
    },
    /// A bounded wait ended without its condition.
    TimedOut(String),
    /// A fenced (or stopped) server's executed GTIDs moved while others waited for it:
    /// something can still write there. Nothing after this step may run.
    FenceBreached {
        host: String,
        before: String,
        after: String,
    },
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::Unreachable { host, detail } => write!(f, "{host} is unreachable: {detail}"),
            StepError::Precondition(why) => write!(f, "precondition not met: {why}"),
            StepError::Server {
                code,
                message,
                statement,
            } => write!(f, "server error {code} on `{statement}`: {message}"),
            StepError::TimedOut(what) => write!(f, "timed out: {what}"),
            StepError::FenceBreached {
                host,
                before,
                after,
            } => write!(
                f,
                "{host} was fenced at GTID position {before} but is now at {after}: a session or event can still write there; the change stops here (find the writer: accounts with READ_ONLY ADMIN, directly or through a role, or events)"
            ),
        }
    }
}

impl std::error::Error for StepError {}
