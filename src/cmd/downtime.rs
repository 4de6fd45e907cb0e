//! `orch downtime FILE [HOST] --for D --reason R | --end`, or the list: periods during which
//! orch watch never recovers a host (or the cluster) automatically. I/O: the file, the
//! state store.

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
) -> anyhow::Result<u8> {
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
        let n = store.end_downtime(cluster, host)?;
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
        store.add_downtime(
            cluster,
            host,
            until,
            reason.unwrap_or_default(),
            &format!("{}@{}", who.user, who.host),
        )?;
        println!(
            "{what}: downtimed until {} ({})",
            utc(until),
            reason.unwrap_or_default()
        );
        return Ok(0);
    }
    let list = store.downtimes(cluster)?;
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
