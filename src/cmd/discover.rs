//! `orch discover --seed`: crawl a live topology and write it as a topology file.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::cli::Login;
use crate::executor::mysql::MysqlExecutor;
use crate::observe::{ObserveOptions, Reach, ServerState};
use crate::topology::Address;

/// The servers crawled from `seed` with `login`'s credentials.
pub fn crawl(
    seed: &Address,
    login: &Login,
    options: ObserveOptions,
) -> anyhow::Result<Vec<ServerState>> {
    let exec = MysqlExecutor::for_login(&login.user, login.password_file.as_deref(), options)?;
    let crawl = crate::discover::crawl(
        Arc::new(exec),
        seed.clone(),
        login.limit,
        options.concurrency,
    );
    Ok(super::runtime()?.block_on(crawl))
}

pub fn run(
    seed: &Address,
    cluster: &str,
    output: Option<PathBuf>,
    login: &Login,
    options: ObserveOptions,
) -> anyhow::Result<u8> {
    let servers = crawl(seed, login, options)?;
    if servers.iter().all(|s| s.info().is_none()) {
        let why = match &servers[0].reach {
            Reach::Unreachable { detail, .. } => detail.clone(),
            Reach::Reachable(_) => String::new(),
        };
        anyhow::bail!("cannot observe the seed {seed}: {why}");
    }
    let yaml = crate::discover::topology_yaml(
        cluster,
        seed,
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
