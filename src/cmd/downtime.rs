//! `orch downtime FILE [HOST] --for D --reason R | --end`, or the list: periods during which
//! orch watch never recovers a host (or the cluster) automatically. With `--etcd`, set in
//! etcd instead of the state store (every watch leader reads them there, and they are
//! ended there from any machine); ended and listed in both. I/O: the file, the state
//! store, etcd.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;

use crate::state::{self, Store, Who, now_millis, utc};

pub fn run(
    file: &Path,
    host: Option<&str>,
    length: Option<Duration>,
    reason: Option<&str>,
    end: bool,
    state_dir: Option<PathBuf>,
    etcd: &crate::cli::EtcdFlags,
) -> anyhow::Result<u8> {
    let shared = super::watch::etcd(etcd)?;
    let rt = super::runtime()?;
    let in_etcd = |what: &str, e: String| anyhow::anyhow!("{what} in etcd: {e}");
    let (topology, _) = crate::spec::load_valid(file)?;
    let cluster = &topology.cluster;
    if let Some(h) = host
        && !topology.hosts.iter().any(|x| x.id == h)
    {
        bail!(
            "{h}: no such host in {} (hosts are named by their id)",
            file.display()
        );
    }
    let dir = state::resolve_dir(state_dir.as_deref(), |n| std::env::var_os(n))?;
    let store = Store::open(&dir)?;
    let what = host.map_or(format!("cluster {cluster}"), |h| {
        format!("{h} of {cluster}")
    });
    if end {
        let mut n = store.end_downtime(cluster, host)?;
        if let Some(shared) = &shared {
            let ended = rt
                .block_on(shared.end_downtimes(cluster, host))
                .map_err(|e| in_etcd("ending the downtime", e))?;
            n += ended;
        }
        println!(
            "{}",
            if n > 0 {
                format!("{what}: downtime ended")
            } else {
                format!("{what}: no downtime to end")
            }
        );
        return Ok(0);
    }
    if let Some(length) = length {
        let ms = i64::try_from(length.as_millis()).unwrap_or(i64::MAX);
        let until = now_millis().saturating_add(ms);
        let who = Who::current();
        let by = format!("{}@{}", who.user, who.host);
        let reason = reason.unwrap_or_default();
        match &shared {
            // Only there: every leader reads it, and it is ended there from any machine.
            Some(shared) => {
                let d = state::Downtime {
                    id: 0,
                    cluster: cluster.clone(),
                    host: host.map(str::to_string),
                    until,
                    reason: reason.to_string(),
                    created_by: by,
                    created_at: now_millis(),
                };
                rt.block_on(shared.add_downtime(&d))
                    .map_err(|e| in_etcd("nothing recorded", e))?;
            }
            None => {
                store.add_downtime(cluster, host, until, reason, &by)?;
            }
        }
        println!("{what}: downtimed until {} ({reason})", utc(until));
        return Ok(0);
    }
    let mut list = store.downtimes(cluster)?;
    if let Some(shared) = &shared {
        let there = rt
            .block_on(shared.downtimes(cluster))
            .map_err(|e| in_etcd("reading the downtimes", e))?;
        list = state::Downtime::merge(list, there);
    }
    if list.is_empty() {
        println!("cluster {cluster}: no downtime");
    }
    for d in list {
        println!(
            "{} until {}: {} (by {})",
            d.host.as_deref().unwrap_or("the whole cluster"),
            utc(d.until),
            d.reason,
            d.created_by
        );
    }
    Ok(0)
}
