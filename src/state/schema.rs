//! The state store's schema and its migrations.
//!
//! Takes an open connection, gives a database at this orch's schema version. Migrations are
//! an ordered list of SQL scripts; script `i` takes the schema from version `i` to `i + 1`
//! (`PRAGMA user_version`). Each runs in its own `BEGIN IMMEDIATE` transaction together
//! with the version bump, so a crash or a failing script leaves the previous version
//! intact, and two processes opening a fresh store at once migrate it exactly once. A
//! database whose version is above the list's length was written by a newer orch and is
//! refused. I/O: the database only.
//!
//! Never edit a released script: add the next one.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::StateError;

/// Version 1: history (`runs`, `run_steps`), cluster locks (`locks`), and the tables
/// `orch watch` builds on (`downtimes`, `cluster_state`). Times are Unix milliseconds;
/// JSON columns hold arrays.
const V1: &str = r#"
CREATE TABLE runs (
    -- AUTOINCREMENT: a number shown to users is never reused, even after pruning.
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT    NOT NULL CHECK (kind IN ('apply', 'recovery')),
    cluster     TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    user        TEXT    NOT NULL,
    host        TEXT    NOT NULL,
    pid         INTEGER NOT NULL,
    files       TEXT    NOT NULL DEFAULT '[]',   -- JSON [{path, sha256}]
    fingerprint TEXT,
    outcome     TEXT    NOT NULL
                CHECK (outcome IN ('running', 'succeeded', 'failed', 'interrupted')),
    error       TEXT,
    summary     TEXT
);
CREATE INDEX runs_by_cluster ON runs (cluster, id);
CREATE INDEX runs_by_start ON runs (started_at);

CREATE TABLE run_steps (
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    number      INTEGER NOT NULL,
    host        TEXT    NOT NULL,
    address     TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    description TEXT    NOT NULL,
    started_at  INTEGER,                         -- NULL: never started (not_run)
    ended_at    INTEGER,
    statements  TEXT    NOT NULL DEFAULT '[]',   -- JSON [sql]; no secrets (the caller's duty)
    result      TEXT    CHECK (result IN ('done', 'failed', 'not_run')),  -- NULL: running
    error       TEXT,
    PRIMARY KEY (run_id, number)
);

CREATE TABLE locks (
    cluster      TEXT    PRIMARY KEY,
    pid          INTEGER NOT NULL,
    host         TEXT    NOT NULL,
    user         TEXT    NOT NULL,
    since        INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    -- The holder's own TTL: the lock is stale when heartbeat_at + ttl_ms has passed.
    ttl_ms       INTEGER NOT NULL,
    -- Random, per acquisition: only the holder of this token may refresh or release.
    token        TEXT    NOT NULL
);

CREATE TABLE downtimes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    cluster    TEXT    NOT NULL,
    host       TEXT,                             -- NULL: the whole cluster
    until      INTEGER NOT NULL,
    reason     TEXT    NOT NULL,
    created_by TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX downtimes_by_cluster ON downtimes (cluster, until);

CREATE TABLE cluster_state (
    cluster          TEXT PRIMARY KEY,
    last_failover_at INTEGER,
    current_primary  TEXT
);
"#;

/// Version 2: a run's `detail` (JSON: a recovery's detection and decision: the rule that
/// fired, every candidate considered and why, the replicas lost).
const V2: &str = r#"
ALTER TABLE runs ADD COLUMN detail TEXT;
"#;

/// Version 3: a run may be a `reload` (watch read its files again). SQLite cannot change a
/// CHECK constraint in place: the table is rebuilt (SQLite's documented procedure, with
/// foreign keys off during migrations so `run_steps` keeps its rows), and the id sequence
/// carried over so a number shown to users is still never reused.
const V3: &str = r#"
CREATE TABLE runs_v3 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT    NOT NULL CHECK (kind IN ('apply', 'recovery', 'reload')),
    cluster     TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    user        TEXT    NOT NULL,
    host        TEXT    NOT NULL,
    pid         INTEGER NOT NULL,
    files       TEXT    NOT NULL DEFAULT '[]',
    fingerprint TEXT,
    outcome     TEXT    NOT NULL
                CHECK (outcome IN ('running', 'succeeded', 'failed', 'interrupted')),
    error       TEXT,
    summary     TEXT,
    detail      TEXT
);
INSERT INTO runs_v3 (id, kind, cluster, started_at, ended_at, user, host, pid, files,
                     fingerprint, outcome, error, summary, detail)
    SELECT id, kind, cluster, started_at, ended_at, user, host, pid, files,
           fingerprint, outcome, error, summary, detail FROM runs;
DELETE FROM sqlite_sequence WHERE name = 'runs_v3';
INSERT INTO sqlite_sequence (name, seq) SELECT 'runs_v3', seq FROM sqlite_sequence WHERE name = 'runs';
DROP TABLE runs;
ALTER TABLE runs_v3 RENAME TO runs;
CREATE INDEX runs_by_cluster ON runs (cluster, id);
CREATE INDEX runs_by_start ON runs (started_at);
"#;

/// Version 4: a cluster's failover in flight (JSON: the dead primary, the successor, the
/// plan's steps and how many are done), kept until the successor is the primary, so an
/// interrupted failover is finished rather than started again.
const V4: &str = r#"
ALTER TABLE cluster_state ADD COLUMN in_flight TEXT;
"#;

/// Version 5: a run may end `refused` (orch decided not to act: anti-flap, a downtime,
/// `automatic: false`, no candidate, a pre-failover hook), which is not a failure; and a
/// run keeps how many steps its plan had (`steps_planned`), so that one interrupted before
/// its last steps were recorded still says "4/10", not "4/5". Rebuilt as version 3 was
/// (the CHECK constraint changes), the id sequence carried over.
const V5: &str = r#"
CREATE TABLE runs_v5 (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT    NOT NULL CHECK (kind IN ('apply', 'recovery', 'reload')),
    cluster       TEXT    NOT NULL,
    started_at    INTEGER NOT NULL,
    ended_at      INTEGER,
    user          TEXT    NOT NULL,
    host          TEXT    NOT NULL,
    pid           INTEGER NOT NULL,
    files         TEXT    NOT NULL DEFAULT '[]',
    fingerprint   TEXT,
    outcome       TEXT    NOT NULL
                  CHECK (outcome IN ('running', 'succeeded', 'failed', 'interrupted',
                                     'refused')),
    error         TEXT,
    summary       TEXT,
    detail        TEXT,
    -- NULL: not known (a run recorded before version 5, or one without a plan).
    steps_planned INTEGER
);
INSERT INTO runs_v5 (id, kind, cluster, started_at, ended_at, user, host, pid, files,
                     fingerprint, outcome, error, summary, detail)
    SELECT id, kind, cluster, started_at, ended_at, user, host, pid, files,
           fingerprint, outcome, error, summary, detail FROM runs;
DELETE FROM sqlite_sequence WHERE name = 'runs_v5';
INSERT INTO sqlite_sequence (name, seq) SELECT 'runs_v5', seq FROM sqlite_sequence WHERE name = 'runs';
DROP TABLE runs;
ALTER TABLE runs_v5 RENAME TO runs;
CREATE INDEX runs_by_cluster ON runs (cluster, id);
CREATE INDEX runs_by_start ON runs (started_at);
"#;

/// Every migration, in order; the schema version this orch writes is `MIGRATIONS.len()`.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5];

/// The schema version this orch writes.
pub fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Brings the database at `path` up to `migrations.len()`, one transaction per script.
pub(super) fn migrate(
    conn: &mut Connection,
    migrations: &[&str],
    path: &Path,
) -> Result<(), StateError> {
    let db_err = |source| StateError::Db {
        path: path.to_path_buf(),
        source,
    };
    let known = migrations.len() as i64;
    // A table rebuilt by a migration must not cascade into the tables that refer to it
    // (SQLite ignores this pragma inside a transaction: set here, restored after).
    conn.pragma_update(None, "foreign_keys", "OFF")
        .map_err(db_err)?;
    let migrated = run_migrations(conn, migrations, path, known);
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(db_err)?;
    migrated
}

fn run_migrations(
    conn: &mut Connection,
    migrations: &[&str],
    path: &Path,
    known: i64,
) -> Result<(), StateError> {
    let db_err = |source| StateError::Db {
        path: path.to_path_buf(),
        source,
    };
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        // Read inside the write transaction: another process may have migrated meanwhile.
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db_err)?;
        if version > known {
            return Err(StateError::TooNew {
                path: path.to_path_buf(),
                found: version,
                known,
            });
        }
        if version == known {
            return Ok(());
        }
        let Ok(index) = usize::try_from(version) else {
            return Err(StateError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("negative schema version {version}"),
            });
        };
        tx.execute_batch(migrations[index]).map_err(db_err)?;
        // What the rebuilt tables refer to must still be there.
        let dangling: i64 = tx
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .map_err(db_err)?;
        if dangling > 0 {
            return Err(StateError::Corrupt {
                path: path.to_path_buf(),
                detail: format!(
                    "migration to version {} left {dangling} rows referring to nothing",
                    version + 1
                ),
            });
        }
        // PRAGMA takes no parameters; the value is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {}", version + 1))
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
    }
}
