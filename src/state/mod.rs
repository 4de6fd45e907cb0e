//! orch's own state: an embedded SQLite store that lasts across runs.
//!
//! Takes a state directory, gives a [`Store`]: the history of runs (an `orch apply`, later a
//! recovery by `orch watch`) with their steps, and the per-cluster locks that keep two
//! orch processes from acting on one cluster at once. The tables watch will need
//! (downtimes, the last failover and the current primary per cluster) exist from schema
//! version 1 on. Does I/O: the file system and the database file; [`resolve_dir`] and
//! [`utc`] are pure.
//!
//! Why SQLite: it is what orchestrator keeps its state in, there is no server to run, and
//! its WAL journal lets several orch processes (an apply while watch runs, two operators at
//! once) read and write one file safely. Every connection sets a busy timeout and every
//! write is a short transaction; writes that read first (taking a lock) are `BEGIN
//! IMMEDIATE`, so two processes cannot both decide from the same read. A process killed
//! at any point (SIGKILL included) leaves a consistent store: SQLite rolls back the
//! unfinished transaction the next time the file is opened.
//!
//! Where it lives: `--state DIR`, else `$ORCH_STATE`, else `$XDG_STATE_HOME/orch`, else
//! `~/.local/state/orch` ([`resolve_dir`]); the directory is created with mode 0700 on first
//! use and the database is `orch.db` inside it.
//!
//! The schema is versioned with `PRAGMA user_version` ([`schema`]); a store written by a
//! newer orch is refused ([`StateError::TooNew`]) rather than misread.
//!
//! Secrets: the store never receives a password. Step statements are recorded as the
//! caller gives them; the caller (apply) must pass them with credentials already removed,
//! as `orch plan --show-sql` prints them.

mod cluster;
pub mod etcd;
pub mod shared;
pub use cluster::{ClusterState, Downtime, MAX_DOWNTIME};
mod lock;
mod runs;
pub mod schema;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;
use serde::Serialize;

pub use lock::{ClusterLock, HeldLock, lock_ttl};

/// Milliseconds since the Unix epoch (UTC), as stored and as shown in JSON.
pub type UnixMillis = i64;

/// The database file inside the state directory.
pub const DB_FILE: &str = "orch.db";

/// How long a connection waits for another process's write to finish before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The state directory: `flag` (`--state`), else `$ORCH_STATE`, else `$XDG_STATE_HOME/orch`,
/// else `$HOME/.local/state/orch`. `env` looks a variable up (`std::env::var_os` outside
/// tests); empty values count as unset, and a relative `XDG_STATE_HOME` is ignored, as the
/// XDG base directory specification says.
pub fn resolve_dir(
    flag: Option<&Path>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<PathBuf, StateError> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = flag {
        return Ok(dir.to_path_buf());
    }
    if let Some(dir) = set("ORCH_STATE") {
        return Ok(dir);
    }
    if let Some(xdg) = set("XDG_STATE_HOME").filter(|p| p.is_absolute()) {
        return Ok(xdg.join("orch"));
    }
    if let Some(home) = set("HOME") {
        return Ok(home.join(".local/state/orch"));
    }
    Err(StateError::NoStateDir)
}

/// Who acts: recorded with every run and lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Who {
    pub user: String,
    pub host: String,
    pub pid: u32,
}

impl Who {
    /// This process: `$USER` (else `$LOGNAME`, else `uid N`), the host name and the pid.
    pub fn current() -> Who {
        let env = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        let user = env("USER")
            .or_else(|| env("LOGNAME"))
            // SAFETY: getuid(2) cannot fail and touches no memory of ours.
            .unwrap_or_else(|| format!("uid {}", unsafe { libc::getuid() }));
        Who {
            user,
            host: hostname(),
            pid: std::process::id(),
        }
    }
}

/// This machine's host name (`gethostname(2)`), or `localhost` if it has none.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for buf.len() bytes; gethostname writes at most that many.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match (rc, std::str::from_utf8(&buf[..len])) {
        (0, Ok(name)) if !name.is_empty() => name.to_string(),
        _ => "localhost".to_string(),
    }
}

/// Whether `pid` names a live process on this machine. Only `ESRCH` ("no such process")
/// means dead: `EPERM` is a live process of another user. A zombie counts as alive until
/// its parent reaps it.
pub(crate) fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    if pid <= 0 {
        // 0 and negative pids name process groups; nothing to conclude.
        return true;
    }
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

pub(crate) fn now_millis() -> UnixMillis {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    UnixMillis::try_from(since_epoch.as_millis()).unwrap_or(UnixMillis::MAX)
}

/// `ms` as `YYYY-MM-DD HH:MM:SSZ` (UTC), for people.
pub fn utc(ms: UnixMillis) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// A run's number, shown to users (`orch history 12`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RunId(pub i64);

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Defines a closed set of names stored as text: `as_str` for the database and JSON, and
/// `parse` for reading back (anything else is a corrupt store).
macro_rules! stored_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
            fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

stored_enum! {
    /// What a run was.
    RunKind {
        /// `orch apply`: a person's plan executed.
        Apply = "apply",
        /// A failover or other recovery (by `orch watch` or `orch failover`).
        Recovery = "recovery",
        /// `orch watch` read its files again (applied, or refused as invalid).
        Reload = "reload",
    }
}

stored_enum! {
    /// How a run ended.
    Outcome {
        /// Not finished (or its process is on another host and still holds on).
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        /// Stopped before the end: by a signal, a lost lock, or a process that died.
        Interrupted = "interrupted",
        /// Orch decided not to act (anti-flap, a downtime, `automatic: false`, no
        /// candidate, a pre-failover hook): nothing was changed, and nothing failed.
        Refused = "refused",
    }
}

stored_enum! {
    /// How a step ended.
    StepResult {
        Done = "done",
        Failed = "failed",
        /// Never started (an earlier step failed or the run was stopped).
        NotRun = "not_run",
    }
}

/// A file a run was made from, with its SHA-256 (the plan's `files`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RunFile {
    pub path: String,
    pub sha256: String,
}

/// What [`Store::begin_run`] records.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub kind: RunKind,
    pub cluster: String,
    pub who: Who,
    pub files: Vec<RunFile>,
    /// The fingerprint of the observed topology the plan was made from.
    pub fingerprint: Option<String>,
    /// How many steps the run's plan has (None: no plan). The history counts a run's
    /// steps against it, not against the steps recorded so far.
    pub steps_planned: Option<usize>,
}

/// One step of a run, as [`Store::record_step_started`] and
/// [`Store::record_step_not_run`] record it.
#[derive(Clone, Debug)]
pub struct StepRecord {
    /// The step's number in its plan (1-based).
    pub number: u32,
    pub host: String,
    pub address: String,
    /// The action's short name (`fence`, `change_source`, ...).
    pub action: String,
    /// What the step does, for people.
    pub description: String,
    /// The SQL the step runs. Must not contain secrets: the caller removes them.
    pub statements: Vec<String>,
}

/// Which runs [`Store::runs`] lists.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub cluster: Option<String>,
    /// Only runs started at or after this time.
    pub since: Option<UnixMillis>,
    /// At most this many (the newest).
    pub limit: Option<usize>,
}

/// A run as listed: everything but its steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    pub id: RunId,
    pub kind: RunKind,
    pub cluster: String,
    pub started_at: UnixMillis,
    pub ended_at: Option<UnixMillis>,
    pub who: Who,
    /// A run recorded as `running` whose process is gone from this host reads as
    /// `interrupted`.
    pub outcome: Outcome,
    pub error: Option<String>,
    pub summary: Option<String>,
    /// Steps that ended `done`, and the plan's steps (for a run recorded before orch kept
    /// that number: the steps recorded).
    pub steps_done: u32,
    pub steps_total: u32,
}

/// A run with its files and steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: RunSummary,
    pub files: Vec<RunFile>,
    pub fingerprint: Option<String>,
    /// A recovery's detection and decision (JSON), when recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
    pub steps: Vec<StepDetail>,
}

/// A step as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepDetail {
    pub number: u32,
    pub host: String,
    pub address: String,
    pub action: String,
    pub description: String,
    /// None for a step that never started.
    pub started_at: Option<UnixMillis>,
    pub ended_at: Option<UnixMillis>,
    pub statements: Vec<String>,
    /// None while the step runs (or if its process died during it).
    pub result: Option<StepResult>,
    pub error: Option<String>,
}

/// Who holds a cluster lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    pub pid: u32,
    pub host: String,
    pub user: String,
    pub since: UnixMillis,
    pub heartbeat_at: UnixMillis,
}

/// Everything the store can refuse or fail with; callers branch on the variant.
#[derive(Debug)]
pub enum StateError {
    /// No `--state`, `$ORCH_STATE`, `$XDG_STATE_HOME` or `$HOME`.
    NoStateDir,
    /// The state directory cannot be created or used.
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// SQLite failed (including a write that waited [`BUSY_TIMEOUT`] for another process).
    Db {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// The store was written by a newer orch (schema `found`; this one knows `known`).
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    /// The store holds something this orch cannot read (hand-edited or damaged).
    Corrupt {
        path: PathBuf,
        detail: String,
    },
    /// Another process holds the cluster's lock.
    Locked {
        cluster: String,
        holder: LockHolder,
    },
    /// Our lock was taken over (we missed heartbeats for longer than its TTL): stop acting
    /// on the cluster.
    LockLost {
        cluster: String,
    },
    UnknownRun(RunId),
    UnknownStep {
        run: RunId,
        number: u32,
    },
    /// A call that makes no sense (a bug in the caller), e.g. finishing a run as `running`.
    Misuse(&'static str),
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateError::NoStateDir => write!(
                f,
                "cannot tell where orch's state lives: give --state DIR or set ORCH_STATE \
                 (neither XDG_STATE_HOME nor HOME is set)"
            ),
            StateError::Dir { path, .. } => {
                write!(f, "cannot use the state directory {}", path.display())
            }
            StateError::Db { path, .. } => write!(f, "state store {}", path.display()),
            StateError::TooNew { path, found, known } => write!(
                f,
                "state store {} has schema version {found}, but this orch knows versions up \
                 to {known}: a newer orch wrote it; use that orch (or another --state)",
                path.display()
            ),
            StateError::Corrupt { path, detail } => write!(
                f,
                "state store {} holds something this orch cannot read: {detail}",
                path.display()
            ),
            StateError::Locked { cluster, holder } => write!(
                f,
                "cluster {cluster} is locked by pid {} on {} (user {}) since {}, last \
                 heartbeat {}; wait for it to finish (a lock whose process is gone is taken \
                 over automatically)",
                holder.pid,
                holder.host,
                holder.user,
                utc(holder.since),
                utc(holder.heartbeat_at)
            ),
            StateError::LockLost { cluster } => write!(
                f,
                "the lock on cluster {cluster} was taken over by another process (this one \
                 missed its heartbeats); stopped acting on it"
            ),
            StateError::UnknownRun(id) => write!(f, "no run {id} in the state store"),
            StateError::UnknownStep { run, number } => {
                write!(f, "run {run} has no step {number} recorded as started")
            }
            StateError::Misuse(what) => write!(f, "orch bug: {what}"),
        }
    }
}

impl std::error::Error for StateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StateError::Dir { source, .. } => Some(source),
            StateError::Db { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The connection shared by a [`Store`] and its [`ClusterLock`]s.
#[derive(Clone)]
struct Db {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl Db {
    /// The connection. A panic while it was held leaves nothing half-done behind (an open
    /// transaction rolls back when dropped), so a poisoned mutex is still usable.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn err(&self, source: rusqlite::Error) -> StateError {
        StateError::Db {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, detail: String) -> StateError {
        StateError::Corrupt {
            path: self.path.clone(),
            detail,
        }
    }
}

/// The open state store. Cheap to share: `Send + Sync`, one connection behind a mutex
/// (every call is one short transaction).
pub struct Store {
    db: Db,
    /// This machine's name: a lock or run recorded with it can be checked by pid.
    local_host: String,
    /// What the locks taken through this store judge their heartbeats by.
    clock: lock::Clock,
}

impl Store {
    /// Opens (creating on first use) the store in `dir`: the directory with mode 0700, then
    /// `orch.db` in WAL mode, migrated to this orch's schema.
    pub fn open(dir: &Path) -> Result<Store, StateError> {
        create_private_dir(dir)?;
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path).map_err(|source| StateError::Db {
            path: path.clone(),
            source,
        })?;
        let db = Db {
            conn: Arc::new(Mutex::new(conn)),
            path,
        };
        {
            let mut conn = db.conn();
            configure_retrying(&conn).map_err(|e| db.err(e))?;
            schema::migrate(&mut conn, schema::MIGRATIONS, &db.path)?;
        }
        Ok(Store {
            db,
            local_host: hostname(),
            clock: lock::Clock::default(),
        })
    }

    /// The same store, its locks judged by `clock` (a manual one in tests).
    #[cfg(test)]
    pub(crate) fn with_clock(mut self, clock: lock::Clock) -> Store {
        self.clock = clock;
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.db.path
    }
}

/// [`configure`], again while another process holds the lock it needs: switching a fresh
/// file to WAL takes an exclusive lock and SQLite answers SQLITE_BUSY at once there, without
/// its busy handler (seen when several orch processes open a new store together).
fn configure_retrying(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match configure(conn) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Per-connection settings: wait for other writers, WAL, durable commits, foreign keys.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL: readers never block the writer and a crash never leaves a half-written page in
    // the database itself. The mode is stored in the file, so this is a no-op after the
    // first open.
    let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    // FULL: a commit survives a power loss too; orch writes a few rows per step, so the
    // extra fsync costs nothing that matters.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// Creates `dir` (and missing parents) with mode 0700 if it does not exist. An existing
/// directory is used as it is: orch never changes the mode of a directory it did not make.
fn create_private_dir(dir: &Path) -> Result<(), StateError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let fail = |source| StateError::Dir {
        path: dir.to_path_buf(),
        source,
    };
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(fail)?;
    // The umask may have removed bits we asked for; 0700 exactly is what we want.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)
}
