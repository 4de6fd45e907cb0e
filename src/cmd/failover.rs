//! `orch failover FILE [--to HOST]`: a person's failover of a dead primary, now (anti-flap
//! does not hold it back); `--ack` clears the anti-flap block. Refuses while the primary
//! answers, unless `--force` (then it is fenced first). I/O: files, the state store, the
//! servers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::bail;

use crate::observe::ObserveOptions;
use crate::plan::Observed;
use crate::state::{self, Outcome, Who};

pub fn run(
    file: &Path,
    to: Option<&str>,
    ack: bool,
    force: bool,
    state_dir: Option<PathBuf>,
    observe: ObserveOptions,
) -> anyhow::Result<u8> {
    let dir = state::resolve_dir(state_dir.as_deref(), |n| std::env::var_os(n))?;
    let w = super::watch::watcher(file, &dir, false, observe)?;
    let cluster = w.topology.cluster.clone();
    if ack {
        let cleared = w.store.ack_failover(&cluster)?;
        println!(
            "{}",
            if cleared {
                format!(
                    "cluster {cluster}: anti-flap cleared; the next failure is recovered at once"
                )
            } else {
                format!("cluster {cluster}: no failover to acknowledge")
            }
        );
        return Ok(0);
    }
    if let Some(to) = to
        && !w.desired.hosts.iter().any(|h| h.id == to)
    {
        bail!("--to {to}: no such host in {}", file.display());
    }
    let rt = super::runtime()?;
    let snapshot = rt.block_on(w.observe());
    let primary = w.primary_index();
    let pid = w.desired.hosts[primary].id.clone();
    let alive = snapshot.hosts[primary].state.info().is_some();
    if alive && !force {
        bail!(
            "the primary {pid} answers: a failover is for a dead primary; to move the primary to another server, change the file and run orch plan / orch apply (a switchover loses nothing), or pass --force to fence it and fail over anyway. Nothing was changed."
        );
    }
    let lock = w.store.lock(
        &cluster,
        &Who::current(),
        std::time::Duration::from_secs(60),
    )?;
    let recovery = crate::watch::recover(&w.desired, &snapshot, &w.policy, primary, to, true)
        .map_err(|no| {
            let mut text = format!("no failover: {no}");
            for c in &no.considered {
                text.push_str(&format!("\n  {} at {}: {}", c.host, c.position, c.verdict));
            }
            anyhow::anyhow!("{text}\nNothing was changed.")
        })?;
    let decision = crate::watch::decision_text(&recovery);
    eprintln!("failover: {decision}");
    let observed = Observed::from_snapshot(&w.desired, &snapshot).map_err(anyhow::Error::msg)?;
    let sql = crate::apply::record::sql_of_steps(&w.topology, &w.policy, &w.desired, &observed);
    let cluster_servers = crate::apply::Cluster::of(&w.desired, &observed);
    let detection = if alive {
        format!(
            "orch failover --force by {}: the primary {pid} still answers; it is fenced first",
            Who::current().user
        )
    } else {
        format!(
            "orch failover by {}: the primary {pid} does not answer",
            Who::current().user
        )
    };
    let (run, outcome) = rt.block_on(crate::watch::record_recovery(
        &w.store,
        &lock,
        &w.exec,
        &cluster_servers,
        &recovery,
        &w.files,
        &detection,
        &sql,
        Arc::new(AtomicBool::new(false)),
    ))?;
    if outcome == Outcome::Succeeded {
        w.store.record_failover(&cluster, &recovery.successor)?;
    }
    lock.release()?;
    println!(
        "failover {}: {decision} (orch history {})",
        outcome.as_str(),
        run.0
    );
    Ok(if outcome == Outcome::Succeeded { 0 } else { 1 })
}
