//! Human and JSON views of orch's result values. Both views are built from the same value;
//! the JSON field names are a stable interface (documented in the README).
//!
//! Takes values and a writer, gives text. No other I/O.

use std::io::Write;

use crate::cli::Format;
use crate::validate::Report;

pub fn validate_report(
    report: &Report,
    format: Format,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if format == Format::Json {
        serde_json::to_writer_pretty(&mut *out, report)?;
        return writeln!(out);
    }
    for d in &report.diagnostics {
        writeln!(out, "{d}")?;
    }
    for f in &report.files {
        let verdict = match (f.errors, f.warnings) {
            (0, 0) => "ok".to_string(),
            (0, w) => format!("ok with {w} warning{}", plural(w)),
            (e, _) => format!("{e} error{}", plural(e)),
        };
        let mut what = Vec::new();
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
    snapshot: &crate::status::Snapshot,
    format: Format,
    table: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    use crate::observe::classify::observed_sources;
    if format == Format::Json {
        serde_json::to_writer_pretty(&mut *out, snapshot)?;
        return writeln!(out);
    }
    let states: Vec<_> = snapshot.hosts.iter().map(|h| h.state.clone()).collect();
    let sources = observed_sources(&states);
    let rows: Vec<[String; 8]> = snapshot
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| status_row(snapshot, i, h, sources[i]))
        .collect();
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
        // Parent: the observed source; an unreachable host hangs under its declared source.
        let parent: Vec<Option<usize>> = snapshot
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                sources[i].or_else(|| {
                    if h.state.info().is_some() {
                        return None;
                    }
                    let want = h.desired_source.as_deref()?;
                    snapshot.hosts.iter().position(|x| x.id == want)
                })
            })
            .collect();
        for (i, last) in crate::observe::tree_walk(&parent) {
            let mut prefix = String::new();
            for (level, &is_last) in last.iter().enumerate() {
                prefix.push_str(match (level + 1 == last.len(), is_last) {
                    (true, true) => "└─ ",
                    (true, false) => "├─ ",
                    (false, true) => "   ",
                    (false, false) => "│  ",
                });
            }
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

/// host, address, role, source, rw, replication, lag, gtid.
fn status_row(
    snapshot: &crate::status::Snapshot,
    i: usize,
    h: &crate::status::ObservedHost,
    source: Option<usize>,
) -> [String; 8] {
    use crate::observe::{IoState, Reach};
    let id = h.id.clone();
    let address = h.state.address.to_string();
    match &h.state.reach {
        Reach::Unreachable { cause, .. } => {
            let cause = serde_json::to_value(cause)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            [
                id,
                address,
                "UNREACHABLE".into(),
                h.desired_source.clone().unwrap_or_default(),
                String::new(),
                cause,
                String::new(),
                String::new(),
            ]
        }
        Reach::Reachable(inf) => {
            let role = match (&inf.replication, i) {
                (None, _) => "primary",
                (Some(_), _) if !inf.replicas.is_empty() => "intermediate",
                _ => "replica",
            };
            let source_name = match (&inf.replication, source) {
                (Some(_), Some(s)) => snapshot.hosts[s].id.clone(),
                (Some(r), None) => format!("{}:{}", r.source_host, r.source_port),
                (None, _) => String::new(),
            };
            let rw = if inf.read_only { "ro" } else { "rw" }.to_string();
            let (repl, lag) = match &inf.replication {
                None => (String::new(), String::new()),
                Some(r) => {
                    let io = match r.io {
                        IoState::Running => "yes",
                        IoState::Connecting => "connecting",
                        IoState::Stopped => "no",
                    };
                    let sql = if r.sql_running { "yes" } else { "no" };
                    let lag = r
                        .seconds_behind
                        .map_or("lag ?".to_string(), |s| format!("lag {s}s"));
                    (format!("io:{io} sql:{sql}"), lag)
                }
            };
            let gtid = inf.gtid.display_position();
            let gtid = if gtid.is_empty() {
                "(empty)".to_string()
            } else {
                gtid.to_string()
            };
            [id, address, role.into(), source_name, rw, repl, lag, gtid]
        }
    }
}
