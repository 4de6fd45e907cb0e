//! `orch validate FILE...`: load every topology file (and the policies they name) and every
//! policy file given directly, check each cluster and the rules across files, and report.
//!
//! Takes paths, gives a [`Report`] (rendered by `render`). Reads files; talks to no server
//! and resolves no secret, so it runs in CI without credentials.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::spec::diag::{Diagnostic, Severity};
use crate::spec::{self, FileKind, check};

/// What one validated file declares (for the summary line and JSON).
#[derive(Debug, Serialize)]
pub struct FileSummary {
    pub file: PathBuf,
    pub kind: FileKind,
    pub cluster: Option<String>,
    pub hosts: usize,
    pub primary: Option<String>,
    pub policy: Option<String>,
    pub errors: usize,
    pub warnings: usize,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub files: Vec<FileSummary>,
    pub diagnostics: Vec<Diagnostic>,
    pub errors: usize,
    pub warnings: usize,
}

impl Report {
    /// 0 clean; 1 errors (bad input); 2 warnings under `--strict` (problems found).
    pub fn exit_code(&self, strict: bool) -> u8 {
        if self.errors > 0 {
            1
        } else if strict && self.warnings > 0 {
            2
        } else {
            0
        }
    }
}

pub fn run(files: &[PathBuf]) -> Report {
    let loaded: Vec<(&Path, spec::Loaded)> =
        files.iter().map(|f| (f.as_path(), spec::load(f))).collect();
    let mut diagnostics: Vec<Diagnostic> = Vec::new();
    for (_, l) in &loaded {
        diagnostics.extend(l.diagnostics.iter().cloned());
    }
    same_file_same_name(files, &mut diagnostics);
    let topologies: Vec<_> = loaded
        .iter()
        .filter_map(|(_, l)| l.topology.as_ref())
        .collect();
    diagnostics.extend(check::across_files(&topologies));
    // Two topologies naming one policy file would report its problems twice.
    // Equal diagnostics must end up adjacent for dedup: the message is part of the key.
    diagnostics.sort_by_cached_key(|d| {
        (
            file_rank(files, &d.file),
            d.line,
            d.column,
            d.code,
            d.message.clone(),
        )
    });
    diagnostics.dedup();

    let files = loaded
        .iter()
        .map(|(path, l)| {
            let count = |s: Severity| {
                diagnostics
                    .iter()
                    .filter(|d| d.file == *path && d.severity == s)
                    .count()
            };
            let t = l.topology.as_ref();
            FileSummary {
                file: path.to_path_buf(),
                kind: l.kind,
                cluster: t.map(|t| t.cluster.clone()).filter(|c| !c.is_empty()),
                hosts: t.map_or(0, |t| t.hosts.len()),
                primary: t.and_then(|t| {
                    let mut p = t.primaries();
                    match (p.next(), p.next()) {
                        (Some(one), None) => Some(one.id.clone()),
                        _ => None,
                    }
                }),
                policy: t.map(|t| t.policy.describe()),
                errors: count(Severity::Error),
                warnings: count(Severity::Warning),
            }
        })
        .collect();
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    Report {
        files,
        errors,
        warnings: diagnostics.len() - errors,
        diagnostics,
    }
}

/// A policy file given directly and also named by a topology (`examples/../policies/x.yaml`)
/// is one file: its diagnostics take the name it was given on the command line, so they are
/// reported once and counted against it.
fn same_file_same_name(files: &[PathBuf], diagnostics: &mut [Diagnostic]) {
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    let given: Vec<(PathBuf, &PathBuf)> = files
        .iter()
        .filter_map(|f| Some((canonical(f)?, f)))
        .collect();
    for d in diagnostics {
        if files.contains(&d.file) {
            continue;
        }
        if let Some(c) = canonical(&d.file)
            && let Some((_, f)) = given.iter().find(|(g, _)| *g == c)
        {
            d.file = f.to_path_buf();
        }
    }
}

/// Diagnostics are listed file by file in the order given; a policy file's come last.
fn file_rank(files: &[PathBuf], file: &Path) -> (usize, PathBuf) {
    (
        files.iter().position(|f| f == file).unwrap_or(files.len()),
        file.to_path_buf(),
    )
}
