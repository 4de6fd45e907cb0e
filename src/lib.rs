//! orch: a declarative reconciler for MySQL/MariaDB replication topologies.
//!
//! The pipeline (ARCHITECTURE.md): `spec` reads the desired topology and policy from YAML,
//! `validate` lints them, `sandbox` starts local replication topologies. Pure modules never
//! touch the network or the clock; I/O lives at the edges (`sandbox`, the commands in `run`).

pub mod cli;
pub mod executor;
pub mod gtid;
pub mod observe;
pub mod render;
pub mod sandbox;
pub mod spec;
pub mod status;
pub mod topology;
pub mod validate;

use std::io::Write;

use cli::{Cli, CliCommand};

/// Runs a parsed command line; returns the process exit code (0, 1 or 2).
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        CliCommand::Validate {
            files,
            strict,
            format,
        } => {
            let report = validate::run(&files);
            let mut out = std::io::stdout().lock();
            render::validate_report(&report, format, &mut out)?;
            Ok(report.exit_code(strict))
        }
        CliCommand::Sandbox(cmd) => sandbox::run(&cmd),
        CliCommand::Status {
            file,
            table,
            format,
            timeouts,
        } => {
            let (topology, policy) = spec::load_valid(&file)?;
            let options = timeouts.options();
            let snapshot =
                runtime()?.block_on(status::observe_topology(&topology, &policy, options))?;
            status::check_usable(&snapshot)?;
            let mut out = std::io::stdout().lock();
            render::status(&snapshot, format, table, &mut out)?;
            Ok(snapshot.exit_code())
        }
        CliCommand::Completions { shell } => {
            let mut out = Vec::new();
            write_completions(shell, &mut out);
            std::io::stdout().lock().write_all(&out)?;
            Ok(0)
        }
    }
}

/// The tokio runtime for commands that talk to servers: observation is I/O-bound, two
/// worker threads are plenty.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Writes the completion script for `shell`; the committed files under `completions/` are
/// exactly this output (a test checks it).
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "orch", out);
}
