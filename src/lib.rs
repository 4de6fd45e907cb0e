//! orch: a declarative reconciler for MySQL/MariaDB replication topologies.
//!
//! The pipeline (ARCHITECTURE.md): `spec` reads the desired topology and policy from YAML,
//! `validate` lints them, `sandbox` starts local replication topologies. Pure modules never
//! touch the network or the clock; I/O lives at the edges (`executor`, `sandbox`, and the
//! command bodies in `cmd`, which `run` dispatches to).

pub mod apply;
pub mod cli;
pub mod cmd;
pub mod discover;
pub mod executor;
pub mod gtid;
pub mod hooks;
pub mod httpc;
pub mod observe;
pub mod plan;
pub mod render;
pub mod sandbox;
pub mod spec;
pub mod state;
pub mod step;
pub mod topology;
pub mod validate;
pub mod watch;

use std::io::Write;

use cli::{Cli, CliCommand};

/// Runs a parsed command line; returns the process exit code (0, 1 or 2).
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        CliCommand::Validate {
            files,
            strict,
            format,
        } => cmd::validate::run(&files, strict, format),
        CliCommand::Sandbox(command) => cmd::sandbox::run(&command),
        CliCommand::History(args) => cmd::history::run(args.resolve()),
        CliCommand::Discover {
            seed,
            cluster,
            output,
            timeouts,
            login,
        } => cmd::discover::run(&seed, &cluster, output, &login, timeouts.options()),
        CliCommand::Status {
            file,
            seed,
            table,
            format,
            state,
            timeouts,
            login,
        } => cmd::status::run(
            cmd::status::StatusArgs {
                file,
                state,
                seed,
                table,
                format,
                options: timeouts.options(),
            },
            &login,
        ),
        CliCommand::Plan {
            file,
            observed,
            output,
            show_sql,
            detailed_exitcode,
            detach_removed,
            allow_switch_back,
            allow_lost_replicas,
            format,
            timeouts,
        } => cmd::plan::run(cmd::plan::PlanArgs {
            file,
            observed,
            output,
            show_sql,
            detailed_exitcode,
            options: plan::PlanOptions {
                detach_removed,
                allow_switch_back,
                allow_lost_replicas,
            },
            format,
            observe: timeouts.options(),
        }),
        CliCommand::Apply {
            target,
            auto_approve,
            detach_removed,
            allow_switch_back,
            allow_lost_replicas,
            format,
            state,
            etcd,
            timeouts,
        } => cmd::apply::run(cmd::apply::ApplyArgs {
            target,
            auto_approve,
            format,
            state,
            etcd,
            options: plan::PlanOptions {
                detach_removed,
                allow_switch_back,
                allow_lost_replicas,
            },
            observe: timeouts.options(),
        }),
        CliCommand::Watch {
            files,
            dry_run,
            state,
            listen,
            api_token_file,
            api_auth,
            log_format,
            etcd,
            timeouts,
        } => cmd::watch::run(cmd::watch::WatchArgs {
            etcd,
            files,
            dry_run,
            state,
            listen,
            api_token_file,
            api_auth,
            log_format,
            observe: timeouts.options(),
        }),
        CliCommand::Failover {
            file,
            to,
            ack,
            force,
            state,
            etcd,
            timeouts,
        } => cmd::failover::run(
            &file,
            to.as_deref(),
            ack,
            force,
            state,
            &etcd,
            timeouts.options(),
        ),
        CliCommand::Downtime {
            file,
            host,
            cluster,
            length,
            reason,
            force,
            end,
            state,
            etcd,
        } => {
            if (length.is_some() || end) && host.is_none() && !cluster {
                anyhow::bail!("name a HOST, or pass --cluster for the whole cluster");
            }
            if let Some(length) = length {
                crate::state::Downtime::check_length(length, force, "--force")
                    .map_err(|why| anyhow::anyhow!("--for: {why}; nothing recorded"))?;
            }
            cmd::downtime::run(
                &file,
                host.as_deref(),
                length,
                reason.as_deref(),
                end,
                state,
                &etcd,
            )
        }
        CliCommand::Completions { shell } => {
            let mut out = Vec::new();
            write_completions(shell, &mut out);
            std::io::stdout().lock().write_all(&out)?;
            Ok(0)
        }
    }
}

/// Writes the completion script for `shell`; the committed files under `completions/` are
/// exactly this output (a test checks it).
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "orch", out);
}
