//! `orch failover FILE [--to HOST]`: a person's failover of a dead primary, now (anti-flap
//! does not hold it back); `--ack` clears the anti-flap block. Refuses while the primary
//! answers, unless `--force` (then it is fenced first). With `--etcd`, only `--ack` (and it
//! clears etcd's record too): the watchers' leader runs failovers. I/O: files, the state
//! store, the servers, etcd.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::observe::ObserveOptions;
use crate::state::{self, Outcome, Who};

pub fn run(
    file: &Path,
    to: Option<&str>,
    ack: bool,
    force: bool,
    state_dir: Option<PathBuf>,
    etcd: &crate::cli::EtcdFlags,
    observe: ObserveOptions,
) -> anyhow::Result<u8> {
    super::logs::init(crate::cli::LogFormat::Human);
    let shared = super::watch::etcd(etcd)?;
    if shared.is_some() && !ack {
        anyhow::bail!(
            "with watchers on etcd, their leader runs failovers (it holds the cluster's state there): POST /api/v1/clusters/CLUSTER/failover on any watcher's --listen address (a follower redirects to the leader); --etcd here is for --ack. Nothing was changed."
        );
    }
    let dir = state::resolve_dir(state_dir.as_deref(), |n| std::env::var_os(n))?;
    let w = super::watch::watcher(file, &dir, false, observe)?;
    let cluster = w.topology.cluster.clone();
    if ack {
        let mut cleared = w.store.ack_failover(&cluster)?;
        if let Some(shared) = shared {
            let rt = super::runtime()?;
            cleared |= rt
                .block_on(shared.ack(&cluster))
                .map_err(|e| anyhow::anyhow!("clearing the anti-flap record in etcd: {e}"))?;
        }
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
    let mut w = w;
    let rt = super::runtime()?;
    let who = Who::current().user;
    let done = rt.block_on(async {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let _commands = w.attach();
                let done = w
                    .failover_now(to, force, &who, &Arc::new(AtomicBool::new(false)))
                    .await;
                w.flush_webhooks(std::time::Duration::from_secs(10)).await;
                done
            })
            .await
    });
    let done = done.map_err(|e| anyhow::anyhow!("{e:#}\nNothing was changed."))?;
    println!(
        "failover {}: {} (orch history {})",
        done.outcome, done.decision, done.run
    );
    Ok(if done.outcome == Outcome::Succeeded.as_str() {
        0
    } else {
        1
    })
}
