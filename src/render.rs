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
