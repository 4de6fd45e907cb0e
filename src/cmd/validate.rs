//! `orch validate`: lint topology files and their policies; talks to no server.

use std::path::PathBuf;

use crate::render::{self, Format};

pub fn run(files: &[PathBuf], strict: bool, format: Format) -> anyhow::Result<u8> {
    let report = crate::validate::run(files);
    let mut out = std::io::stdout().lock();
    render::validate_report(&report, format, &mut out)?;
    Ok(report.exit_code(strict))
}
