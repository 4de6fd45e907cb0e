//! Human and JSON views of orch's result values. Both views are built from the same value;
//! the JSON field names are a stable interface (documented in the README). The views for
//! code review are built from the same values too: `ci` (validate's report as GitHub
//! annotations, SARIF and GitLab Code Quality) and `markdown` (a plan as a PR comment).
//!
//! Takes values and a writer, gives text. No other I/O.

pub mod ci;
pub mod markdown;

use std::io::Write;
use std::path::Path;

use crate::validate::Report;

/// How a command prints its result. Every command that prints one has `human` and `json`;
/// the formats for code review belong to one command each (the CLI offers them there only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Text for people.
    #[default]
    Human,
    /// One JSON document on stdout, with a documented, stable schema.
    Json,
    /// `validate`: GitHub Actions workflow commands, one per diagnostic ([`ci`]).
    Github,
    /// `validate`: a SARIF 2.1.0 log, for code scanning ([`ci`]).
    Sarif,
    /// `validate`: a GitLab Code Quality report ([`ci`]).
    Gitlab,
    /// `plan`: a Markdown document for a pull request comment ([`markdown`]).
    Markdown,
}

impl Format {
    /// The formats of every command that prints a result.
    pub const COMMON: &'static [Format] = &[Format::Human, Format::Json];
    /// `orch validate`.
    pub const VALIDATE: &'static [Format] = &[
        Format::Human,
        Format::Json,
        Format::Github,
        Format::Sarif,
        Format::Gitlab,
    ];
    /// `orch plan`.
    pub const PLAN: &'static [Format] = &[Format::Human, Format::Json, Format::Markdown];
}

/// `orch validate`'s report. `base` is the directory paths are shown relative to in the
/// formats for code review (the checkout's root, in CI).
pub fn validate_report(
    report: &Report,
    format: Format,
    base: &Path,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, report)?;
            writeln!(out)
        }
        Format::Github => ci::github(report, base, out),
        Format::Sarif => ci::sarif(report, base, out),
        Format::Gitlab => ci::gitlab(report, base, out),
        Format::Human | Format::Markdown => {
            for d in &report.diagnostics {
                writeln!(out, "{d}")?;
            }
            validate_summary(report, out)
        }
    }
}

/// One line per file (its verdict and what it declares), then the totals.
fn validate_summary(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    for f in &report.files {
        let verdict = match (f.errors, f.warnings) {
            (0, 0) => "ok".to_string(),
            (0, w) => format!("ok with {w} warning{}", plural(w)),
            (e, _) => format!("{e} error{}", plural(e)),
        };
        let mut what = Vec::new();
        if f.kind == crate::spec::FileKind::Policy {
            what.push("policy file".to_string());
        }
        if let Some(c) = &f.cluster {
            what.push(format!("cluster {c}"));
        }
        if f.hosts > 0 {
            what.push(format!("{} host{}", f.hosts, plural(f.hosts)));
        }
        if let Some(p) = &f.primary {
            what.push(format!("primary {p}"));
        }
        if let Some(p) = &f.policy {
            what.push(format!("policy {p}"));
        }
        let what = if what.is_empty() {
            String::new()
        } else {
            format!(" ({})", what.join(", "))
        };
        writeln!(out, "{}: {verdict}{what}", f.file.display())?;
    }
    writeln!(
        out,
        "{} file{} checked: {} error{}, {} warning{}",
        report.files.len(),
        plural(report.files.len()),
        report.errors,
        plural(report.errors),
        report.warnings,
        plural(report.warnings)
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `orch status`: the live topology as an indented tree (like orchestrator's), then the
/// problems; or as a table.
pub fn status(
    snapshot: &crate::observe::Snapshot,
    format: Format,
    table: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if format == Format::Json {
        serde_json::to_writer_pretty(&mut *out, snapshot)?;
        return writeln!(out);
    }
    let view = status_view(snapshot);
    let rows: Vec<[String; 8]> = view.iter().map(StatusRow::cells).collect();
    if table {
        let mut t = comfy_table::Table::new();
        t.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
        t.set_header([
            "host",
            "address",
            "role",
            "source",
            "rw",
            "replication",
            "lag",
            "gtid",
        ]);
        for r in &rows {
            t.add_row(r.iter());
        }
        writeln!(out, "{t}")?;
    } else {
        writeln!(out, "cluster {}", snapshot.cluster)?;
        let parent: Vec<Option<usize>> = view
            .iter()
            .map(|r| {
                let p = r.parent.as_deref()?;
                snapshot.hosts.iter().position(|x| x.id == p)
            })
            .collect();
        for (i, last) in crate::observe::tree_walk(&parent) {
            let prefix = branches(&last);
            let r = &rows[i];
            let gtid = if r[7].is_empty() {
                String::new()
            } else {
                format!("gtid {}", r[7])
            };
            let line = format!(
                "{} {} {} {} {} {} {gtid}",
                r[0], r[1], r[2], r[4], r[5], r[6]
            );
            writeln!(
                out,
                "{prefix}{}",
                line.split_whitespace().collect::<Vec<_>>().join(" ")
            )?;
        }
    }
    if snapshot.problems.is_empty() {
        writeln!(out, "no problems")?;
    } else {
        writeln!(out, "problems:")?;
        for p in &snapshot.problems {
            let severity = match p.severity {
                crate::observe::classify::Severity::Critical => "critical",
                crate::observe::classify::Severity::Error => "error",
                crate::observe::classify::Severity::Warning => "warning",
            };
            writeln!(
                out,
                "  {severity:<8} {:<24} {}: {}",
                p.code.name(),
                p.host,
                p.message
            )?;
        }
    }
    Ok(())
}

/// One server as `status` shows it: the table's row and the tree's node, also served
/// by `watch --listen` (`view` in `GET /api/v1/clusters/{cluster}`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StatusRow {
    pub host: String,
    pub address: String,
    /// primary | intermediate | replica | standalone | unreachable
    pub role: &'static str,
    /// The tree parent: the observed source, or an unreachable host's declared source.
    pub parent: Option<String>,
    /// The observed source: a host id, or the address of a server the file lacks.
    pub source: Option<String>,
    pub read_only: Option<bool>,
    /// yes | connecting | no (None: not a replica, or unreachable)
    pub io: Option<&'static str>,
    pub sql: Option<&'static str>,
    pub lag_seconds: Option<u64>,
    pub gtid: Option<String>,
    /// reachable | unreachable
    pub state: &'static str,
    /// Why it is unreachable (refused, timeout, ...).
    pub cause: Option<String>,
}

impl StatusRow {
    /// host, address, role, source, rw, replication, lag, gtid.
    fn cells(&self) -> [String; 8] {
        let role = match self.role {
            "unreachable" => "UNREACHABLE".to_string(),
            r => r.to_string(),
        };
        let rw = self
            .read_only
            .map_or(String::new(), |ro| if ro { "ro" } else { "rw" }.into());
        let (repl, lag) = match (self.io, self.sql) {
            (Some(io), Some(sql)) => (
                format!("io:{io} sql:{sql}"),
                self.lag_seconds
                    .map_or("lag ?".to_string(), |s| format!("lag {s}s")),
            ),
            _ => (self.cause.clone().unwrap_or_default(), String::new()),
        };
        let gtid = match &self.gtid {
            Some(g) if g.is_empty() => "(empty)".to_string(),
            Some(g) => g.clone(),
            None => String::new(),
        };
        [
            self.host.clone(),
            self.address.clone(),
            role,
            self.source.clone().unwrap_or_default(),
            rw,
            repl,
            lag,
            gtid,
        ]
    }
}

/// Every declared server of `snapshot` as `status` shows it, in file order.
pub fn status_view(snapshot: &crate::observe::Snapshot) -> Vec<StatusRow> {
    use crate::observe::classify::observed_sources;
    // Undeclared servers too: an intermediate may serve only servers the file lacks.
    let states: Vec<_> = snapshot
        .hosts
        .iter()
        .map(|h| h.state.clone())
        .chain(snapshot.undeclared.iter().cloned())
        .collect();
    let sources = observed_sources(&states);
    snapshot
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let serves = sources.contains(&Some(i));
            status_row(snapshot, h, sources[i], serves)
        })
        .collect()
}

/// `serves`: another observed server replicates from this one.
fn status_row(
    snapshot: &crate::observe::Snapshot,
    h: &crate::observe::ObservedHost,
    source: Option<usize>,
    serves: bool,
) -> StatusRow {
    use crate::observe::{IoState, Reach};
    let mut row = StatusRow {
        host: h.id.clone(),
        address: h.state.address.to_string(),
        role: "unreachable",
        parent: None,
        source: None,
        read_only: None,
        io: None,
        sql: None,
        lag_seconds: None,
        gtid: None,
        state: "unreachable",
        cause: None,
    };
    match &h.state.reach {
        Reach::Unreachable { cause, .. } => {
            row.cause = serde_json::to_value(cause)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string));
            // An unreachable host hangs under its declared source.
            row.parent = h.desired_source.clone();
            row.source = h.desired_source.clone();
        }
        Reach::Reachable(inf) => {
            row.state = "reachable";
            // A server without a source is the primary when others replicate from it, or
            // when the file names it the primary and it takes writes; otherwise it stands
            // alone (detached, or a fenced former primary).
            row.role = match &inf.replication {
                None if serves || (h.desired_source.is_none() && !inf.read_only) => "primary",
                None => "standalone",
                Some(_) if serves => "intermediate",
                Some(_) => "replica",
            };
            row.source = match (&inf.replication, source) {
                (Some(_), Some(s)) => Some(snapshot.hosts[s].id.clone()),
                (Some(r), None) => Some(format!("{}:{}", r.source_host, r.source_port)),
                (None, _) => None,
            };
            row.parent = source
                .filter(|&s| s < snapshot.hosts.len())
                .map(|s| snapshot.hosts[s].id.clone());
            row.read_only = Some(inf.read_only);
            if let Some(r) = &inf.replication {
                row.io = Some(match r.io {
                    IoState::Running => "yes",
                    IoState::Connecting => "connecting",
                    IoState::Stopped => "no",
                });
                row.sql = Some(if r.sql_running { "yes" } else { "no" });
                row.lag_seconds = r.seconds_behind;
            }
            row.gtid = Some(inf.gtid.display_position().to_string());
        }
    }
    row
}

/// The statements of one step, for `--show-sql`.
pub type StepSql<'a> = dyn Fn(&crate::step::Step) -> Vec<String> + 'a;

/// `orch plan`: the steps as a table, the topology before and after as a diff, what is
/// blocked or lost, and a one-line summary; or the plan as JSON. With `sql`, each step's
/// statements (from [`crate::executor::mysql::step_sql`]) follow the table.
pub fn plan(
    plan: &crate::plan::Plan,
    format: Format,
    sql: Option<&StepSql<'_>>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, plan)?;
            return writeln!(out);
        }
        Format::Markdown => return markdown::plan(plan, sql, out),
        _ => {}
    }
    writeln!(
        out,
        "cluster {} (observed {})",
        plan.cluster,
        short_fingerprint(&plan.fingerprint)
    )?;
    if plan.steps.is_empty() && plan.blocked.is_empty() {
        writeln!(out, "no changes: the live topology matches the file")?;
    } else if plan.steps.is_empty() {
        writeln!(
            out,
            "no steps: every change the file asks for is blocked (below)"
        )?;
    } else {
        let mut t = comfy_table::Table::new();
        t.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
        t.set_header(["#", "phase", "host", "action", "why"]);
        // Wrapped to the terminal, or to 120 columns when printing to a file or a pipe
        // (so saved output reads the same everywhere).
        t.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
        if t.width().is_none() {
            t.set_width(120);
        }
        for s in &plan.steps {
            t.add_row([
                s.number.to_string(),
                s.phase.name().to_string(),
                s.host.clone(),
                s.action.describe(),
                s.why.clone(),
            ]);
        }
        writeln!(out, "{t}")?;
    }
    if let Some(sql) = sql
        && !plan.steps.is_empty()
    {
        writeln!(out, "statements:")?;
        for s in &plan.steps {
            writeln!(out, "  {}. {} ({}):", s.number, s.host, s.address)?;
            for stmt in sql(s) {
                writeln!(out, "       {stmt}")?;
            }
        }
    }
    match topology_diff(plan) {
        TopologyView::Same(lines) => {
            writeln!(out, "topology:")?;
            for line in &lines {
                writeln!(out, "  {line}")?;
            }
        }
        TopologyView::Diff(lines) => {
            writeln!(out, "topology (- before, + after):")?;
            for (sign, line) in &lines {
                writeln!(out, "{sign} {line}")?;
            }
        }
    }
    if !plan.blocked.is_empty() {
        writeln!(out, "blocked:")?;
        for b in &plan.blocked {
            writeln!(
                out,
                "  {:<20} {}: {}: {}",
                b.code.name(),
                b.host,
                b.change,
                b.reason
            )?;
        }
    }
    if !plan.lost.is_empty() {
        writeln!(out, "lost replicas:")?;
        for l in &plan.lost {
            writeln!(out, "  {}: {}", l.host, l.reason)?;
        }
    }
    if !plan.warnings.is_empty() {
        writeln!(out, "warnings:")?;
        for w in &plan.warnings {
            writeln!(out, "  {:<20} {}: {}", w.code, w.host, w.message)?;
        }
    }
    writeln!(out, "plan: {}", plan_summary(plan))
}

/// `10 steps on 3 hosts, 0 blocked, 0 lost, 0 warnings`.
fn plan_summary(plan: &crate::plan::Plan) -> String {
    let hosts: std::collections::BTreeSet<&str> =
        plan.steps.iter().map(|s| s.host.as_str()).collect();
    format!(
        "{} step{} on {} host{}, {} blocked, {} lost, {} warning{}",
        plan.steps.len(),
        plural(plan.steps.len()),
        hosts.len(),
        plural(hosts.len()),
        plan.blocked.len(),
        plan.lost.len(),
        plan.warnings.len(),
        plural(plan.warnings.len()),
    )
}

/// The topology a plan starts from and the one it leaves, as tree lines.
enum TopologyView {
    /// Nothing moves: the topology as it is.
    Same(Vec<String>),
    /// `-` before only, `+` after only, ` ` both.
    Diff(Vec<(char, String)>),
}

fn topology_diff(plan: &crate::plan::Plan) -> TopologyView {
    let (before, before_keys) = placement_tree(&plan.before);
    let (after, after_keys) = placement_tree(&plan.after);
    if before_keys == after_keys {
        return TopologyView::Same(before);
    }
    // Lines are compared with their parent, so a server that moves shows as moved even
    // where its line reads the same under the new source.
    let mut lines = Vec::new();
    let ops = similar::capture_diff_slices(similar::Algorithm::Myers, &before_keys, &after_keys);
    for op in ops {
        for (tag, old, new) in op
            .iter_changes(&before_keys, &after_keys)
            .map(|c| (c.tag(), c.old_index(), c.new_index()))
        {
            lines.push(match (tag, old, new) {
                (similar::ChangeTag::Delete, Some(o), _) => ('-', before[o].clone()),
                (similar::ChangeTag::Insert, _, Some(n)) => ('+', after[n].clone()),
                (_, Some(o), _) => (' ', before[o].clone()),
                _ => continue,
            });
        }
    }
    TopologyView::Diff(lines)
}

fn short_fingerprint(f: &str) -> &str {
    let end = f.char_indices().nth(19).map_or(f.len(), |(i, _)| i);
    &f[..end]
}

/// A topology as an indented tree, one server per line, and each line keyed with its
/// parent: what the plan's diff compares.
fn placement_tree(placements: &[crate::plan::Placement]) -> (Vec<String>, Vec<String>) {
    let index: std::collections::HashMap<&str, usize> = placements
        .iter()
        .enumerate()
        .map(|(i, p)| (p.host.as_str(), i))
        .collect();
    let parent: Vec<Option<usize>> = placements
        .iter()
        .map(|p| p.source.as_deref().and_then(|s| index.get(s).copied()))
        .collect();
    let (mut lines, mut keys) = (Vec::new(), Vec::new());
    for (i, last) in crate::observe::tree_walk(&parent) {
        let p = &placements[i];
        let mut line = branches(&last);
        line.push_str(&p.host);
        if !p.reachable {
            line.push_str(" UNREACHABLE");
        } else {
            match (&p.source, p.replication.as_str()) {
                (None, _) => line.push_str(&format!(" {}", p.role)),
                (Some(s), r) if parent[i].is_none() => {
                    line.push_str(&format!(" replica of {s} ({r})"))
                }
                (Some(_), "running") => {}
                (Some(_), r) => line.push_str(&format!(" replication {r}")),
            }
            line.push_str(match p.read_only {
                Some(true) => " ro",
                Some(false) => " rw",
                None => "",
            });
        }
        keys.push(format!("{}|{line}", p.source.as_deref().unwrap_or("")));
        lines.push(line);
    }
    (lines, keys)
}

/// The branch drawing in front of a tree line, from [`crate::observe::tree_walk`]'s
/// last-child flags.
fn branches(last: &[bool]) -> String {
    let mut prefix = String::new();
    for (level, &is_last) in last.iter().enumerate() {
        prefix.push_str(match (level + 1 == last.len(), is_last) {
            (true, true) => "└─ ",
            (true, false) => "├─ ",
            (false, true) => "   ",
            (false, false) => "│  ",
        });
    }
    prefix
}
