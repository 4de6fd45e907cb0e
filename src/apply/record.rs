//! A plan run through the engine and recorded in the state store, step by step: what
//! `orch apply` and `orch watch`'s recoveries share. Takes an open run and the cluster's
//! lock; gives the report and how the run ended (already written to the store). Keeps
//! the lock alive at every step; prints progress (plain lines, a live display on a
//! terminal, or JSON events). I/O: the state store, stdout/stderr, and the servers through
//! the executor.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Cluster, Limits, Progress, Report, StepResult};
use crate::executor::Executor;
use crate::executor::fenced::Fenced;
use crate::executor::mysql::Dialect;
use crate::gtid::Flavor;
use crate::plan::Plan;
use crate::render::Format;
use crate::state::{self, Outcome, RunId, StateError, StepRecord, Store};
use crate::step::Step;

/// Each step's statements for its server's flavour (never a secret), as `--show-sql` and
/// the history show them.
pub fn sql_of_steps(
    t: &crate::spec::Topology,
    policy: &crate::spec::Policy,
    desired: &crate::plan::Desired,
    observed: &crate::plan::Observed,
) -> impl Fn(&Step) -> Vec<String> + use<> {
    let replication_user = t
        .credentials
        .as_ref()
        .and_then(|c| c.replication_user.clone())
        .unwrap_or_else(|| "repl".into());
    let dialects: std::collections::HashMap<String, Dialect> =
        crate::plan::names(desired, observed)
            .into_iter()
            .zip(observed.hosts.iter().chain(&observed.undeclared))
            .filter_map(|(id, s)| {
                let info = s.info()?;
                Some((id, Dialect::of(info.flavor, &info.version)))
            })
            .collect();
    let detection =
        crate::executor::mysql::Detection::from_poll_interval(policy.failover.detect.poll_interval);
    move |step: &Step| {
        let dialect = dialects
            .get(&step.host)
            .copied()
            .unwrap_or(Dialect::of(Flavor::Mariadb, ""));
        crate::executor::mysql::step_sql(dialect, step, &replication_user, detection)
    }
}

/// Where a run is recorded and how its progress shows.
pub struct Recording<'a> {
    pub store: &'a Store,
    pub run: RunId,
    pub lock: &'a state::ClusterLock,
    pub format: Format,
    /// A step's statements as recorded (never a secret).
    pub sql: &'a dyn Fn(&Step) -> Vec<String>,
    /// The live display, on a terminal.
    pub bar: Option<indicatif::ProgressBar>,
    /// Told each finished step instead of printing it (watch logs and sends events).
    pub on_step: Option<&'a OnStep<'a>>,
}

/// A finished step, its result and how long it took.
pub type OnStep<'a> = dyn Fn(&Step, &StepResult, Duration) + 'a;

/// How a recorded run ended.
pub struct Finished {
    pub report: Report,
    pub outcome: Outcome,
    pub summary: String,
    pub error: Option<String>,
}

/// "step" or "steps", as `n` says.
fn steps(n: usize) -> &'static str {
    if n == 1 { "step" } else { "steps" }
}

/// Runs `plan`, recording every step, then the run's outcome; `stop` asks it to stop after
/// the current step (it is also set when the lock is lost).
pub async fn run_recorded<E: Executor>(
    exec: Arc<E>,
    cluster: &Cluster,
    plan: &Plan,
    limits: Limits,
    stop: Arc<AtomicBool>,
    r: Recording<'_>,
) -> Result<Finished, StateError> {
    let mut progress = Recorder {
        bar: r.bar.clone(),
        store: r.store,
        run: r.run,
        lock: r.lock,
        format: r.format,
        total: plan.steps.len(),
        sql: r.sql,
        stop: stop.clone(),
        on_step: r.on_step,
        cluster: &plan.cluster,
    };
    // Every step runs only while the lock is this process's (one paused past its TTL may
    // have been replaced by another).
    let exec = Arc::new(Fenced {
        inner: exec,
        fence: Some(r.lock.fence()),
    });
    let report = super::run(exec, cluster, plan, limits, &stop, &mut progress).await;
    for (step, result) in plan.steps.iter().zip(&report.results) {
        if *result == StepResult::NotRun {
            r.store.record_step_not_run(r.run, record(step, r.sql))?;
        }
    }
    let done = report
        .results
        .iter()
        .filter(|x| matches!(x, StepResult::Done(_)))
        .count();
    let total = plan.steps.len();
    // Refused by the engine's checks before any step: nothing was tried, nothing failed.
    let (outcome, summary) = if let Some(why) = &report.refused {
        (
            Outcome::Refused,
            format!("refused before any change, nothing was changed: {why}"),
        )
    } else if report.succeeded() && !report.left_behind.is_empty() {
        let left: Vec<String> = report
            .left_behind
            .iter()
            .map(|l| format!("{} ({})", l.host, l.why))
            .collect();
        (
            Outcome::Succeeded,
            format!(
                "{done} {} applied; left behind: {}",
                steps(done),
                left.join("; ")
            ),
        )
    } else if report.succeeded() {
        (
            Outcome::Succeeded,
            format!("{done} {} applied", steps(done)),
        )
    } else if report.interrupted {
        (
            Outcome::Interrupted,
            format!("interrupted after {done} of {total} steps"),
        )
    } else {
        (
            Outcome::Failed,
            format!("failed after {done} of {total} steps"),
        )
    };
    let mut error = report
        .results
        .iter()
        .find_map(|x| match x {
            StepResult::Failed(e) => Some(e.clone()),
            _ => None,
        })
        .filter(|_| !report.succeeded());
    if let Some(why) = &report.refused {
        error = Some(format!("refused before any change: {why}"));
    }
    if !report.rolled_back.is_empty() {
        let rb = report.rolled_back.join("; ");
        error = Some(format!("{}; {rb}", error.unwrap_or_default()));
    }
    r.store
        .finish_run(r.run, outcome, error.as_deref(), &summary)?;
    Ok(Finished {
        report,
        outcome,
        summary,
        error,
    })
}

pub fn record(step: &Step, sql: &dyn Fn(&Step) -> Vec<String>) -> StepRecord {
    StepRecord {
        number: u32::try_from(step.number).unwrap_or(u32::MAX),
        host: step.host.clone(),
        address: step.address.to_string(),
        action: action_name(step),
        description: step.action.describe(),
        statements: sql(step),
    }
}

/// The action's JSON name (`fence`, `change_source`, ...).
pub fn action_name(step: &Step) -> String {
    serde_json::to_value(&step.action)
        .ok()
        .and_then(|v| v["action"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// On a terminal: step n/N, host, action, elapsed; finished steps stay printed above it.
pub fn progress_bar(total: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} step {pos}/{len} [{elapsed}] {msg}")
            .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// A line for people: above the progress display when there is one, else on stderr.
pub fn say(bar: Option<&indicatif::ProgressBar>, line: &str) {
    match bar {
        Some(bar) => bar.println(line),
        None => eprintln!("{line}"),
    }
}

/// Records each step in the state store, keeps the lock alive, prints progress.
struct Recorder<'a> {
    /// The progress display, on a terminal.
    bar: Option<indicatif::ProgressBar>,
    store: &'a Store,
    run: RunId,
    lock: &'a state::ClusterLock,
    format: Format,
    total: usize,
    sql: &'a dyn Fn(&Step) -> Vec<String>,
    /// Set when the lock was lost: no further step may run.
    stop: Arc<AtomicBool>,
    on_step: Option<&'a OnStep<'a>>,
    cluster: &'a str,
}

impl Progress for Recorder<'_> {
    fn started(&mut self, step: &Step) {
        let _ = self
            .store
            .record_step_started(self.run, record(step, self.sql));
        if let Some(bar) = &self.bar {
            bar.set_position(step.number as u64);
            bar.set_message(format!("{}: {}", step.host, step.action.describe()));
        }
        if self.format == Format::Json {
            println!(
                "{}",
                serde_json::json!({"event": "step_started", "number": step.number, "host": step.host, "action": action_name(step)})
            );
        }
    }

    fn finished(&mut self, step: &Step, result: &StepResult, elapsed: Duration) {
        let (r, error) = match result {
            StepResult::Done(_) => (state::StepResult::Done, None),
            StepResult::Failed(e) => (state::StepResult::Failed, Some(e.as_str())),
            StepResult::NotRun => (state::StepResult::NotRun, None),
        };
        if let Err(e) = self.lock.heartbeat() {
            self.note(&format!("stopping after this step: {e}"));
            self.stop.store(true, Ordering::SeqCst);
        }
        let number = u32::try_from(step.number).unwrap_or(u32::MAX);
        let _ = self.store.record_step_finished(self.run, number, r, error);
        let ms = elapsed.as_millis();
        if let Some(on_step) = self.on_step {
            on_step(step, result, elapsed);
            return;
        }
        match self.format {
            Format::Json => println!(
                "{}",
                serde_json::json!({"event": if error.is_some() {"step_failed"} else {"step_finished"}, "number": step.number, "host": step.host, "ms": ms, "error": error})
            ),
            _ => {
                let head = format!(
                    "step {}/{} {}: {}",
                    step.number,
                    self.total,
                    step.host,
                    step.action.describe()
                );
                match result {
                    StepResult::Done(_) => {
                        say(self.bar.as_ref(), &format!("{head} ... done ({ms} ms)"));
                    }
                    StepResult::Failed(e) => {
                        say(
                            self.bar.as_ref(),
                            &format!("{head} ... FAILED ({ms} ms): {e}"),
                        );
                    }
                    StepResult::NotRun => {}
                }
            }
        }
    }

    fn note(&mut self, message: &str) {
        match self.on_step {
            // Watch: a log line like the steps'.
            Some(_) => tracing::info!(cluster = self.cluster, "{message}"),
            None => say(self.bar.as_ref(), message),
        }
    }
}
