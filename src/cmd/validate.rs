//! `orch validate`: lint topology files and their policies; talks to no server.

use std::path::PathBuf;

use crate::render::{self, Format};

pub fn run(files: &[PathBuf], strict: bool, format: Format) -> anyhow::Result<u8> {
    let report = crate::validate::run(files);
    let mut out = std::io::stdout().lock();
    // Paths in annotations are relative to where orch runs: the checkout's root in CI.
    let base = std::env::current_dir().unwrap_or_default();
    render::validate_report(&report, format, &base, &mut out)?;
    Ok(report.exit_code(strict))
}
