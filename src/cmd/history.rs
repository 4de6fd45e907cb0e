//! `orch history [ID]`: the runs recorded in orch's state store, newest first, or one run
//! with its steps.
//!
//! Takes [`HistoryArgs`] (plain values resolved by the cli layer), gives text or JSON on
//! stdout and an exit code: 0, or an error (exit 1) for an unknown ID or an unusable store.
//! I/O: opens the state store (creating the directory, mode 0700, on first use) and reads
//! it; talks to no server. The views ([`list`], [`detail`]) are pure: values and a writer.
//!
//! # JSON (schema 1, stable)
//!
//! Times are Unix milliseconds (UTC); fields that may be absent are `null`, never missing.
//!
//! `orch history --format json`:
//!
//! ```text
//! {"schema": 1,
//!  "runs": [                                   newest first
//!    {"id": 12,
//!     "kind": "apply" | "recovery",
//!     "cluster": "shop",
//!     "started_at": 1767261600000,
//!     "ended_at": 1767261603200 | null,        null while running
//!     "who": {"user": "alice", "host": "admin1", "pid": 4242},
//!     "outcome": "running" | "succeeded" | "failed" | "interrupted" | "refused",
//!     "error": "..." | null,
//!     "summary": "..." | null,
//!     "steps_done": 2,                         steps with result "done"
//!     "steps_total": 3}]}                      the plan's steps (a run recorded before
//!                                              schema version 5: the steps recorded)
//! ```
//!
//! `orch history ID --format json`: `{"schema": 1, "run": {...}}` with every field above
//! and:
//!
//! ```text
//!     "files": [{"path": "shop.yaml", "sha256": "..."}],
//!     "fingerprint": "sha256:..." | null,      of the observed topology the plan came from
//!     "steps": [                               by number
//!       {"number": 1, "host": "db1", "address": "10.0.0.1:3306",
//!        "action": "fence",                    the plan's action name
//!        "description": "...",
//!        "started_at": ms | null,              null: never started
//!        "ended_at": ms | null,
//!        "statements": ["SET GLOBAL read_only = ON", ...],   never holds a password
//!        "result": "done" | "failed" | "not_run" | null,     null: running, or its
//!                                                            process died during it
//!        "error": "..." | null}]
//! ```
//!
//! A `running` run whose process is gone from this host reads as `interrupted`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::render::Format;
use crate::state::{
    Outcome, RunDetail, RunFilter, RunId, RunSummary, StepDetail, Store, UnixMillis, utc,
};

/// The JSON schema version of this command's output.
pub const SCHEMA: u32 = 1;

/// `orch history`, resolved.
#[derive(Clone, Debug)]
pub struct HistoryArgs {
    /// Show this run instead of the list.
    pub id: Option<RunId>,
    pub cluster: Option<String>,
    /// Only runs started within this long before now.
    pub since: Option<Duration>,
    pub limit: usize,
    pub format: Format,
    /// `--state`; else the environment decides (see [`crate::state::resolve_dir`]).
    pub state: Option<PathBuf>,
}

pub fn run(args: HistoryArgs) -> anyhow::Result<u8> {
    let dir = crate::state::resolve_dir(args.state.as_deref(), |name| std::env::var_os(name))?;
    let store = Store::open(&dir)?;
    let mut out = std::io::stdout().lock();
    if let Some(id) = args.id {
        let Some(run) = store.run(id)? else {
            anyhow::bail!(
                "no run {id} in {} (`orch history` lists the runs)",
                store.path().display()
            );
        };
        detail(&run, args.format, &mut out)?;
        return Ok(0);
    }
    let now = crate::state::now_millis();
    let since = match args.since {
        Some(d) => {
            Some(now.saturating_sub(i64::try_from(d.as_millis()).context("--since is too long")?))
        }
        None => None,
    };
    let filter = RunFilter {
        cluster: args.cluster.clone(),
        since,
        limit: Some(args.limit),
    };
    let runs = store.runs(&filter)?;
    if runs.is_empty() && args.format == Format::Human {
        let mut only = Vec::new();
        if let Some(c) = &args.cluster {
            only.push(format!("on cluster {c}"));
        }
        if let Some(d) = args.since {
            only.push(format!("in the last {}", duration(d.as_millis() as i64)));
        }
        let only = match only.is_empty() {
            true => String::new(),
            false => format!(" {}", only.join(" ")),
        };
        writeln!(
            out,
            "no runs{only} recorded in {} (orch apply records its runs here)",
            store.path().display()
        )?;
        return Ok(0);
    }
    list(&runs, args.format, args.limit, &mut out)?;
    Ok(0)
}

#[derive(Serialize)]
struct ListJson<'a> {
    schema: u32,
    runs: &'a [RunSummary],
}

#[derive(Serialize)]
struct DetailJson<'a> {
    schema: u32,
    run: &'a RunDetail,
}

/// The list: a table, newest first, and how to see more.
pub fn list(
    runs: &[RunSummary],
    format: Format,
    limit: usize,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if format == Format::Json {
        serde_json::to_writer_pretty(
            &mut *out,
            &ListJson {
                schema: SCHEMA,
                runs,
            },
        )?;
        return writeln!(out);
    }
    let mut t = table([
        "id", "when", "kind", "cluster", "who", "outcome", "steps", "summary",
    ]);
    for r in runs {
        let summary = match (&r.summary, &r.error) {
            (Some(s), _) if !s.is_empty() => s.clone(),
            (_, Some(e)) => e.clone(),
            _ => String::new(),
        };
        t.add_row([
            r.id.to_string(),
            utc(r.started_at),
            r.kind.to_string(),
            r.cluster.clone(),
            format!("{}@{}", r.who.user, r.who.host),
            r.outcome.to_string(),
            format!("{}/{}", r.steps_done, r.steps_total),
            summary,
        ]);
    }
    writeln!(out, "{t}")?;
    let more = match runs.len() >= limit {
        true => " (there may be more: --limit N)",
        false => "",
    };
    writeln!(
        out,
        "{} run{}, newest first{more}; one run with its steps: orch history ID",
        runs.len(),
        if runs.len() == 1 { "" } else { "s" }
    )
}

/// One run: what, who, when, how it ended; its steps as a table; then their statements.
pub fn detail(run: &RunDetail, format: Format, out: &mut dyn Write) -> std::io::Result<()> {
    if format == Format::Json {
        serde_json::to_writer_pretty(
            &mut *out,
            &DetailJson {
                schema: SCHEMA,
                run,
            },
        )?;
        return writeln!(out);
    }
    let r = &run.run;
    writeln!(
        out,
        "run {}: {} on cluster {}, {}",
        r.id, r.kind, r.cluster, r.outcome
    )?;
    let took = match r.ended_at {
        Some(end) => format!(", took {}", duration(end - r.started_at)),
        None => String::new(),
    };
    writeln!(
        out,
        "started {} by {}@{} (pid {}){took}",
        utc(r.started_at),
        r.who.user,
        r.who.host,
        r.who.pid
    )?;
    for f in &run.files {
        writeln!(out, "file {} (sha256 {})", f.path, short(&f.sha256))?;
    }
    if let Some(fp) = &run.fingerprint {
        writeln!(out, "observed {}", short(fp))?;
    }
    if let Some(s) = r.summary.as_deref().filter(|s| !s.is_empty()) {
        writeln!(out, "summary: {s}")?;
    }
    if let Some(e) = &r.error {
        writeln!(out, "error: {e}")?;
    }
    if let Some(d) = &run.detail {
        if let Some(s) = d["detection"].as_str() {
            writeln!(out, "detection: {s}")?;
        }
        if let Some(s) = d["decision"].as_str() {
            writeln!(out, "decision: {s}")?;
        }
        for c in d["considered"].as_array().into_iter().flatten() {
            writeln!(
                out,
                "  candidate {} at {}: {}",
                c["host"].as_str().unwrap_or("?"),
                c["position"]
                    .as_str()
                    .map_or("?", crate::plan::recover::position_text),
                c["verdict"].as_str().unwrap_or("?")
            )?;
        }
        for l in d["lost"].as_array().into_iter().flatten() {
            writeln!(
                out,
                "  lost {}: {}",
                l["host"].as_str().unwrap_or("?"),
                l["reason"].as_str().unwrap_or("?")
            )?;
        }
    }
    if run.steps.is_empty() {
        return writeln!(out, "no steps recorded");
    }
    let mut t = table(["#", "host", "action", "result", "duration", "error"]);
    for s in &run.steps {
        let took = match (s.started_at, s.ended_at) {
            (Some(start), Some(end)) => duration(end - start),
            _ => String::new(),
        };
        t.add_row([
            s.number.to_string(),
            s.host.clone(),
            s.action.clone(),
            step_result(s, r.outcome).to_string(),
            took,
            s.error.clone().unwrap_or_default(),
        ]);
    }
    writeln!(out, "{t}")?;
    if run.steps.iter().any(|s| !s.statements.is_empty()) {
        writeln!(out, "statements:")?;
        for s in run.steps.iter().filter(|s| !s.statements.is_empty()) {
            writeln!(
                out,
                "  {}. {} ({}): {}",
                s.number, s.host, s.address, s.description
            )?;
            for stmt in &s.statements {
                writeln!(out, "       {stmt}")?;
            }
        }
    }
    Ok(())
}

/// A step's result for people: a step without one is running while its run is, and was
/// cut short otherwise.
fn step_result(s: &StepDetail, run: Outcome) -> &'static str {
    match (s.result, run) {
        (Some(result), _) => result.as_str(),
        (None, Outcome::Running) => "running",
        (None, _) => "unfinished",
    }
}

fn table<const N: usize>(header: [&str; N]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header(header);
    // Wrapped to the terminal, or to 120 columns in a file or a pipe (as `orch plan`).
    t.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    if t.width().is_none() {
        t.set_width(120);
    }
    t
}

/// The first 12 characters of a hash (after its `sha256:` prefix, if any).
fn short(hash: &str) -> String {
    let (prefix, hex) = hash.split_once(':').unwrap_or(("", hash));
    let hex: String = hex.chars().take(12).collect();
    match prefix {
        "" => hex,
        p => format!("{p}:{hex}"),
    }
}

/// A span of milliseconds for people: `850 ms`, `3.2 s`, `4 min 5 s`, `2 h 3 min`, `1 h`.
fn duration(ms: UnixMillis) -> String {
    let ms = ms.max(0);
    let secs = ms / 1000;
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{}.{} s", secs, ms % 1000 / 100),
        60_000..3_600_000 => join(secs / 60, "min", secs % 60, "s"),
        _ => join(secs / 3600, "h", secs / 60 % 60, "min"),
    }
}

/// `4 min 5 s`, or `4 min` when the smaller unit is zero.
fn join(big: i64, big_unit: &str, small: i64, small_unit: &str) -> String {
    match small {
        0 => format!("{big} {big_unit}"),
        _ => format!("{big} {big_unit} {small} {small_unit}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{RunFile, RunKind, StepResult, Who};

    fn summary(outcome: Outcome) -> RunSummary {
        RunSummary {
            id: RunId(7),
            kind: RunKind::Apply,
            cluster: "shop".into(),
            started_at: 1_700_000_000_000,
            ended_at: Some(1_700_000_003_250),
            who: Who {
                user: "alice".into(),
                host: "admin1".into(),
                pid: 4242,
            },
            outcome,
            error: Some("step 2 failed".into()),
            summary: None,
            steps_done: 1,
            steps_total: 3,
        }
    }

    fn step(number: u32, result: Option<StepResult>, times: Option<(i64, i64)>) -> StepDetail {
        StepDetail {
            number,
            host: format!("db{number}"),
            address: format!("10.0.0.{number}:3306"),
            action: "fence".into(),
            description: "read_only=ON".into(),
            started_at: times.map(|t| t.0),
            ended_at: times.map(|t| t.1),
            statements: vec![format!("SET GLOBAL read_only = {number}")],
            result,
            error: None,
        }
    }

    fn render(f: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
        let mut out = Vec::new();
        f(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn durations_read_naturally() {
        for (ms, want) in [
            (-5, "0 ms"),
            (850, "850 ms"),
            (3_250, "3.2 s"),
            (245_000, "4 min 5 s"),
            (7_380_000, "2 h 3 min"),
            (120_000, "2 min"),
            (3_600_000, "1 h"),
        ] {
            assert_eq!(duration(ms), want, "{ms}");
        }
    }

    #[test]
    fn hashes_are_shortened_after_their_prefix() {
        assert_eq!(short("sha256:0123456789abcdef"), "sha256:0123456789ab");
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
    }

    #[test]
    fn the_list_shows_one_row_per_run_and_the_error_when_there_is_no_summary() {
        let runs = [summary(Outcome::Failed)];
        let text = render(|out| list(&runs, Format::Human, 50, out));
        let row = text.lines().find(|l| l.contains("shop")).expect("a row");
        for cell in [
            "7",
            "2023-11-14 22:13:20Z",
            "apply",
            "alice@admin1",
            "failed",
            "1/3",
            "step 2 failed",
        ] {
            assert!(row.contains(cell), "{cell} in {row}");
        }
        assert!(text.ends_with("1 run, newest first; one run with its steps: orch history ID\n"));
        let text = render(|out| list(&runs, Format::Human, 1, out));
        assert!(text.contains("there may be more: --limit N"), "{text}");
    }

    #[test]
    fn a_run_shows_its_steps_their_results_and_statements() {
        let run = RunDetail {
            run: summary(Outcome::Interrupted),
            files: vec![RunFile {
                path: "shop.yaml".into(),
                sha256: "ab".repeat(32),
            }],
            fingerprint: Some("sha256:0123456789abcdef".into()),
            detail: None,
            steps: vec![
                step(1, Some(StepResult::Done), Some((0, 1_500))),
                StepDetail {
                    started_at: Some(1_500),
                    ..step(2, None, None)
                },
                step(3, Some(StepResult::NotRun), None),
            ],
        };
        let text = render(|out| detail(&run, Format::Human, out));
        assert!(
            text.starts_with("run 7: apply on cluster shop, interrupted\n"),
            "{text}"
        );
        assert!(
            text.contains("by alice@admin1 (pid 4242), took 3.2 s"),
            "{text}"
        );
        assert!(
            text.contains("file shop.yaml (sha256 abababababab)"),
            "{text}"
        );
        assert!(text.contains("observed sha256:0123456789ab"), "{text}");
        let row = |n: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("│ {n} ")))
                .unwrap_or_else(|| panic!("row {n} in {text}"))
        };
        assert!(row("1").contains("done") && row("1").contains("1.5 s"));
        assert!(row("2").contains("unfinished"), "{}", row("2"));
        assert!(row("3").contains("not_run"));
        assert!(
            text.contains(
                "  2. db2 (10.0.0.2:3306): read_only=ON\n       SET GLOBAL read_only = 2\n"
            )
        );
    }

    #[test]
    fn a_running_step_of_a_running_run_reads_as_running() {
        let s = step(1, None, Some((0, 0)));
        assert_eq!(step_result(&s, Outcome::Running), "running");
        assert_eq!(step_result(&s, Outcome::Failed), "unfinished");
    }
}
