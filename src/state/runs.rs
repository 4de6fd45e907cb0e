//! The history: runs and their steps, written as they happen and read back newest first.
//!
//! Takes the calls of whoever executes a plan (apply, later watch), gives [`RunSummary`]s
//! and [`RunDetail`]s. Every write is one short statement (its own transaction), so a
//! process killed between two calls leaves every earlier record intact. I/O: the database.

use rusqlite::{OptionalExtension, Row, params};

use super::{
    NewRun, Outcome, RunDetail, RunFile, RunFilter, RunId, RunKind, RunSummary, StateError,
    StepDetail, StepRecord, StepResult, Store, Who, now_millis, pid_alive,
};

/// The columns [`Store::summary_from`] reads, in order.
const SUMMARY_COLUMNS: &str = "r.id, r.kind, r.cluster, r.started_at, r.ended_at, r.user, \
     r.host, r.pid, r.outcome, r.error, r.summary, \
     (SELECT count(*) FROM run_steps s WHERE s.run_id = r.id AND s.result = 'done'), \
     coalesce(r.steps_planned, (SELECT count(*) FROM run_steps s WHERE s.run_id = r.id))";

impl Store {
    /// Records the start of a run (outcome `running`); returns its number.
    pub fn begin_run(&self, run: NewRun) -> Result<RunId, StateError> {
        let files = serde_json::to_string(&run.files).expect("file hashes serialize");
        let conn = self.db.conn();
        conn.execute(
            "INSERT INTO runs (kind, cluster, started_at, user, host, pid, files, fingerprint, \
             steps_planned, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'running')",
            params![
                run.kind.as_str(),
                run.cluster,
                now_millis(),
                run.who.user,
                run.who.host,
                run.who.pid,
                files,
                run.fingerprint,
                run.steps_planned
                    .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            ],
        )
        .map_err(|e| self.db.err(e))?;
        Ok(RunId(conn.last_insert_rowid()))
    }

    /// Records a run's detail (a recovery's detection and decision), as JSON.
    pub fn set_run_detail(&self, run: RunId, detail: &serde_json::Value) -> Result<(), StateError> {
        self.db
            .conn()
            .execute(
                "UPDATE runs SET detail = ?2 WHERE id = ?1",
                params![run.0, detail.to_string()],
            )
            .map_err(|e| self.db.err(e))?;
        Ok(())
    }

    /// Records that `step` of `run` starts now.
    pub fn record_step_started(&self, run: RunId, step: StepRecord) -> Result<(), StateError> {
        self.insert_step(run, step, Some(now_millis()), None)
    }

    /// Records a step of `run` that will never start (an earlier step failed, or the run
    /// was stopped), so the history shows the whole plan.
    pub fn record_step_not_run(&self, run: RunId, step: StepRecord) -> Result<(), StateError> {
        self.insert_step(run, step, None, Some(StepResult::NotRun))
    }

    /// Records how step `number` of `run` ended, now.
    pub fn record_step_finished(
        &self,
        run: RunId,
        number: u32,
        result: StepResult,
        error: Option<&str>,
    ) -> Result<(), StateError> {
        let changed = self
            .db
            .conn()
            .execute(
                "UPDATE run_steps SET ended_at = ?3, result = ?4, error = ?5 \
                 WHERE run_id = ?1 AND number = ?2 AND started_at IS NOT NULL",
                params![run.0, number, now_millis(), result.as_str(), error],
            )
            .map_err(|e| self.db.err(e))?;
        match changed {
            0 => Err(StateError::UnknownStep { run, number }),
            _ => Ok(()),
        }
    }

    /// Records how `run` ended, now. `outcome` must not be `running`. The last call wins: a
    /// run marked `interrupted` when another process took its lock over may still be
    /// finished by its own process, which knows better.
    pub fn finish_run(
        &self,
        run: RunId,
        outcome: Outcome,
        error: Option<&str>,
        summary: &str,
    ) -> Result<(), StateError> {
        if outcome == Outcome::Running {
            return Err(StateError::Misuse("a run cannot finish as `running`"));
        }
        let changed = self
            .db
            .conn()
            .execute(
                "UPDATE runs SET ended_at = ?2, outcome = ?3, error = ?4, summary = ?5 \
                 WHERE id = ?1",
                params![run.0, now_millis(), outcome.as_str(), error, summary],
            )
            .map_err(|e| self.db.err(e))?;
        match changed {
            0 => Err(StateError::UnknownRun(run)),
            _ => Ok(()),
        }
    }

    /// The runs `filter` selects, newest first (by number: the order they began in, whatever
    /// the clocks of the hosts that recorded them said).
    pub fn runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, StateError> {
        let limit = filter
            .limit
            .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let conn = self.db.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM runs r \
                 WHERE (?1 IS NULL OR r.cluster = ?1) AND (?2 IS NULL OR r.started_at >= ?2) \
                 ORDER BY r.id DESC LIMIT ?3"
            ))
            .map_err(|e| self.db.err(e))?;
        let rows = stmt
            .query_map(params![filter.cluster, filter.since, limit], raw_summary)
            .map_err(|e| self.db.err(e))?;
        let mut runs = Vec::new();
        for raw in rows {
            runs.push(self.summary_from(raw.map_err(|e| self.db.err(e))?)?);
        }
        Ok(runs)
    }

    /// Run `id` with its files and steps (by number); None if there is no such run.
    pub fn run(&self, id: RunId) -> Result<Option<RunDetail>, StateError> {
        let conn = self.db.conn();
        let found = conn
            .query_row(
                &format!(
                    "SELECT {SUMMARY_COLUMNS}, r.files, r.fingerprint, r.detail FROM runs r WHERE r.id = ?1"
                ),
                [id.0],
                |row| {
                    Ok((
                        raw_summary(row)?,
                        row.get::<_, String>(13)?,
                        row.get(14)?,
                        row.get::<_, Option<String>>(15)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.db.err(e))?;
        let Some((raw, files, fingerprint, detail)) = found else {
            return Ok(None);
        };
        let detail: Option<serde_json::Value> = match detail {
            Some(text) => Some(self.json(&text, "detail", id)?),
            None => None,
        };
        let run = self.summary_from(raw)?;
        let files: Vec<RunFile> = self.json(&files, "files", id)?;
        let mut stmt = conn
            .prepare(
                "SELECT number, host, address, action, description, started_at, ended_at, \
                 statements, result, error FROM run_steps WHERE run_id = ?1 ORDER BY number",
            )
            .map_err(|e| self.db.err(e))?;
        let rows = stmt
            .query_map([id.0], |row| {
                Ok(RawStep {
                    number: row.get(0)?,
                    host: row.get(1)?,
                    address: row.get(2)?,
                    action: row.get(3)?,
                    description: row.get(4)?,
                    started_at: row.get(5)?,
                    ended_at: row.get(6)?,
                    statements: row.get(7)?,
                    result: row.get(8)?,
                    error: row.get(9)?,
                })
            })
            .map_err(|e| self.db.err(e))?;
        let mut steps = Vec::new();
        for raw in rows {
            let raw = raw.map_err(|e| self.db.err(e))?;
            let result = match raw.result.as_deref() {
                None => None,
                Some(text) => Some(StepResult::parse(text).ok_or_else(|| {
                    self.db
                        .corrupt(format!("run {id} step {}: result `{text}`", raw.number))
                })?),
            };
            steps.push(StepDetail {
                statements: self.json(&raw.statements, "statements", id)?,
                number: raw.number,
                host: raw.host,
                address: raw.address,
                action: raw.action,
                description: raw.description,
                started_at: raw.started_at,
                ended_at: raw.ended_at,
                result,
                error: raw.error,
            });
        }
        Ok(Some(RunDetail {
            run,
            files,
            fingerprint,
            detail,
            steps,
        }))
    }

    fn insert_step(
        &self,
        run: RunId,
        step: StepRecord,
        started_at: Option<i64>,
        result: Option<StepResult>,
    ) -> Result<(), StateError> {
        let statements = serde_json::to_string(&step.statements).expect("strings serialize");
        self.db
            .conn()
            .execute(
                "INSERT INTO run_steps (run_id, number, host, address, action, description, \
                 started_at, statements, result) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    run.0,
                    step.number,
                    step.host,
                    step.address,
                    step.action,
                    step.description,
                    started_at,
                    statements,
                    result.map(StepResult::as_str),
                ],
            )
            .map_err(|e| match e.sqlite_error() {
                Some(f) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
                    StateError::UnknownRun(run)
                }
                _ => self.db.err(e),
            })?;
        Ok(())
    }

    /// A row's values, checked: stored names parse, and a `running` run whose process is
    /// gone from this host reads as `interrupted` (SIGKILL, a crash, a reboot).
    fn summary_from(&self, raw: RawSummary) -> Result<RunSummary, StateError> {
        let id = RunId(raw.id);
        let kind = RunKind::parse(&raw.kind)
            .ok_or_else(|| self.db.corrupt(format!("run {id}: kind `{}`", raw.kind)))?;
        let mut outcome = Outcome::parse(&raw.outcome).ok_or_else(|| {
            self.db
                .corrupt(format!("run {id}: outcome `{}`", raw.outcome))
        })?;
        if outcome == Outcome::Running && raw.host == self.local_host && !pid_alive(raw.pid) {
            outcome = Outcome::Interrupted;
        }
        Ok(RunSummary {
            id,
            kind,
            cluster: raw.cluster,
            started_at: raw.started_at,
            ended_at: raw.ended_at,
            who: Who {
                user: raw.user,
                host: raw.host,
                pid: raw.pid,
            },
            outcome,
            error: raw.error,
            summary: raw.summary,
            steps_done: raw.steps_done,
            steps_total: raw.steps_total,
        })
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        text: &str,
        column: &str,
        id: RunId,
    ) -> Result<T, StateError> {
        serde_json::from_str(text).map_err(|e| {
            self.db
                .corrupt(format!("run {id}: {column} is not valid: {e}"))
        })
    }
}

/// A `runs` row as stored, before its names are checked.
struct RawSummary {
    id: i64,
    kind: String,
    cluster: String,
    started_at: i64,
    ended_at: Option<i64>,
    user: String,
    host: String,
    pid: u32,
    outcome: String,
    error: Option<String>,
    summary: Option<String>,
    steps_done: u32,
    steps_total: u32,
}

fn raw_summary(row: &Row<'_>) -> rusqlite::Result<RawSummary> {
    Ok(RawSummary {
        id: row.get(0)?,
        kind: row.get(1)?,
        cluster: row.get(2)?,
        started_at: row.get(3)?,
        ended_at: row.get(4)?,
        user: row.get(5)?,
        host: row.get(6)?,
        pid: row.get(7)?,
        outcome: row.get(8)?,
        error: row.get(9)?,
        summary: row.get(10)?,
        steps_done: row.get(11)?,
        steps_total: row.get(12)?,
    })
}

struct RawStep {
    number: u32,
    host: String,
    address: String,
    action: String,
    description: String,
    started_at: Option<i64>,
    ended_at: Option<i64>,
    statements: String,
    result: Option<String>,
    error: Option<String>,
}
