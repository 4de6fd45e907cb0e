//! orch: a declarative reconciler for MySQL/MariaDB replication topologies.
//!
//! The pipeline (ARCHITECTURE.md): `spec` reads the desired topology and policy from YAML,
//! `validate` lints them, `sandbox` starts local replication topologies. Pure modules never
//! touch the network or the clock; I/O lives at the edges (`sandbox`, the commands in `run`).

pub mod cli;
pub mod cmd;
pub mod discover;
pub mod executor;
pub mod gtid;
pub mod observe;
pub mod plan;
pub mod render;
pub mod sandbox;
pub mod spec;
pub mod state;
pub mod status;
pub mod topology;
pub mod validate;

use std::io::Write;

use anyhow::Context;

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
        CliCommand::History(args) => cmd::history::run(args.resolve()),
        CliCommand::Sandbox(cmd) => sandbox::run(&cmd),
        CliCommand::Discover {
            seed,
            cluster,
            output,
            timeouts,
            login,
        } => {
            let options = timeouts.options();
            let exec = std::sync::Arc::new(status::executor_for_login(&login, options)?);
            let servers = runtime()?.block_on(discover::crawl(
                exec,
                seed.clone(),
                login.limit,
                options.concurrency,
            ));
            if servers.iter().all(|s| s.info().is_none()) {
                let why = match &servers[0].reach {
                    observe::Reach::Unreachable { detail, .. } => detail.clone(),
                    observe::Reach::Reachable(_) => String::new(),
                };
                anyhow::bail!("cannot observe the seed {seed}: {why}");
            }
            let yaml = discover::topology_yaml(
                &cluster,
                &seed,
                &login.user,
                &login.replication_user,
                &servers,
            );
            match output {
                Some(path) => {
                    std::fs::write(&path, &yaml)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!(
                        "wrote {} ({} servers); check it with: orch validate {}",
                        path.display(),
                        servers.len(),
                        path.display()
                    );
                }
                None => std::io::stdout().lock().write_all(yaml.as_bytes())?,
            }
            Ok(0)
        }
        CliCommand::Status {
            file,
            seed,
            table,
            format,
            timeouts,
            login,
        } => {
            let options = timeouts.options();
            let snapshot = match (file, seed) {
                (Some(file), None) => {
                    let (topology, policy) = spec::load_valid(&file)?;
                    let snapshot = runtime()?
                        .block_on(status::observe_topology(&topology, &policy, options))?;
                    status::check_usable(&snapshot)?;
                    snapshot
                }
                (None, Some(seed)) => {
                    let exec = std::sync::Arc::new(status::executor_for_login(&login, options)?);
                    let crawl = discover::crawl(exec, seed, login.limit, options.concurrency);
                    let servers = runtime()?.block_on(crawl);
                    status::snapshot_of_crawl(&login, &servers)?
                }
                _ => anyhow::bail!("give a topology FILE or --seed HOST:PORT"),
            };
            let mut out = std::io::stdout().lock();
            render::status(&snapshot, format, table, &mut out)?;
            Ok(snapshot.exit_code())
        }
        CliCommand::Plan {
            file,
            observed,
            output,
            show_sql,
            detailed_exitcode,
            detach_removed,
            allow_switch_back,
            format,
            timeouts,
        } => {
            let options = plan::PlanOptions {
                detach_removed,
                allow_switch_back,
            };
            let (topology, policy) = spec::load_valid(&file)?;
            let desired = plan::Desired::from_topology(&topology);
            let observed = match observed {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    let snapshot: status::Snapshot =
                        serde_json::from_str(&text).with_context(|| {
                            format!(
                                "{} is not an `orch status --format json` snapshot",
                                path.display()
                            )
                        })?;
                    plan::Observed::from_snapshot(&desired, &snapshot)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                }
                None => {
                    let snapshot = runtime()?.block_on(status::observe_topology(
                        &topology,
                        &policy,
                        timeouts.options(),
                    ))?;
                    status::check_usable(&snapshot)?;
                    plan::Observed::from_snapshot(&desired, &snapshot)
                        .map_err(anyhow::Error::msg)?
                }
            };
            let mut the_plan = plan::plan(&desired, &observed, &policy, options)?;
            the_plan.files = plan_files(&topology)?;
            if let Some(path) = &output {
                let json = serde_json::to_string_pretty(&the_plan)? + "\n";
                std::fs::write(path, json)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            let replication_user = topology
                .credentials
                .as_ref()
                .and_then(|c| c.replication_user.clone())
                .unwrap_or_else(|| "repl".into());
            let flavors: std::collections::HashMap<String, gtid::Flavor> =
                plan::names(&desired, &observed)
                    .into_iter()
                    .zip(observed.hosts.iter().chain(&observed.undeclared))
                    .filter_map(|(id, s)| Some((id, s.info()?.flavor)))
                    .collect();
            let sql = |step: &plan::Step| {
                let flavor = flavors
                    .get(&step.host)
                    .copied()
                    .unwrap_or(gtid::Flavor::Mariadb);
                executor::mysql::step_sql(flavor, step, &replication_user)
            };
            let mut out = std::io::stdout().lock();
            render::plan(&the_plan, format, show_sql.then_some(&sql as _), &mut out)?;
            if let Some(path) = &output
                && format == cli::Format::Human
            {
                writeln!(
                    out,
                    "saved to {} (apply it with: orch apply {})",
                    path.display(),
                    path.display()
                )?;
            }
            Ok(the_plan.exit_code(detailed_exitcode))
        }
        CliCommand::Completions { shell } => {
            let mut out = Vec::new();
            write_completions(shell, &mut out);
            std::io::stdout().lock().write_all(&out)?;
            Ok(0)
        }
    }
}

/// The files a plan was made from, with their SHA-256: the topology and a policy file.
fn plan_files(t: &spec::Topology) -> anyhow::Result<Vec<plan::FileHash>> {
    let mut paths = vec![t.file.clone()];
    if let spec::PolicyRef::File(p) = &t.policy {
        paths.push(t.file.parent().unwrap_or(std::path::Path::new(".")).join(p));
    }
    paths
        .into_iter()
        .map(|p| {
            let bytes =
                std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
            Ok(plan::FileHash {
                path: p.display().to_string(),
                sha256: plan::sha256_hex(&bytes),
            })
        })
        .collect()
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
