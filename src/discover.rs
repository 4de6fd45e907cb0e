//! `orch discover --seed HOST:PORT`: crawl a live topology from one server and write it as
//! a topology file that `orch validate` accepts.
//!
//! Takes a seed address and an executor, gives the observed servers (up through sources,
//! down through replicas) and the YAML text of the topology they form. The crawl does I/O
//! through the executor; [`topology_yaml`] is pure.
//!
//! Replicas are found with `SHOW SLAVE HOSTS` (needs `report_host`/`report_port` on the
//! replicas); without it, the processlist gives only the client IP, and the replica is
//! assumed to listen on the same port as its source — the usual one-port-per-fleet setup.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use crate::executor::Executor;
use crate::executor::observe_all;
use crate::observe::classify::observed_sources;
use crate::observe::{ServerState, tree_walk};
use crate::topology::{Address, is_valid_name};

/// Crawls from `seed`, at most `limit` servers, `concurrency` at a time. The seed comes
/// first; the rest in the order found.
pub async fn crawl<E: Executor>(
    exec: Arc<E>,
    seed: Address,
    limit: usize,
    concurrency: usize,
) -> Vec<ServerState> {
    let mut found: Vec<ServerState> = Vec::new();
    let mut seen_addresses: HashSet<Address> = HashSet::from([seed.clone()]);
    let mut seen_ids: HashSet<u32> = HashSet::new();
    let mut wave = vec![seed];
    while !wave.is_empty() && found.len() < limit {
        wave.truncate(limit - found.len());
        let states = observe_all(exec.clone(), &wave, concurrency).await;
        let mut next = Vec::new();
        for state in states {
            if let Some(info) = state.info() {
                // One server reached under two names (a replica's Master_Host and the
                // source's report_host) is kept once.
                if !seen_ids.insert(info.server_id) {
                    continue;
                }
                let mut neighbours = Vec::new();
                if let Some(r) = &info.replication
                    && let Ok(a) = Address::parse(&format!("{}:{}", r.source_host, r.source_port))
                {
                    neighbours.push(a);
                }
                for r in &info.replicas {
                    let port = r.port.unwrap_or(state.address.port);
                    if let Ok(a) = Address::parse(&format!("{}:{port}", r.host)) {
                        neighbours.push(a);
                    }
                }
                for a in neighbours {
                    if seen_addresses.insert(a.clone()) {
                        next.push(a);
                    }
                }
            }
            found.push(state);
        }
        wave = next;
    }
    tree_order(found)
}

/// Orders servers as a tree reads: each root (a primary, or a server whose source was not
/// reached), then its replicas depth-first, siblings by address.
pub fn tree_order(mut servers: Vec<ServerState>) -> Vec<ServerState> {
    servers.sort_by(|a, b| a.address.cmp(&b.address));
    let order = tree_walk(&observed_sources(&servers));
    let mut slots: Vec<Option<ServerState>> = servers.into_iter().map(Some).collect();
    order
        .into_iter()
        .map(|(i, _)| slots[i].take().expect("each once"))
        .collect()
}

/// A host id for each server: the address's host when every port is the same, else
/// host-port; characters ids may not have become `-`.
pub fn host_ids(servers: &[ServerState]) -> Vec<String> {
    let one_port = servers
        .windows(2)
        .all(|w| w[0].address.port == w[1].address.port);
    let mut used: HashMap<String, usize> = HashMap::new();
    servers
        .iter()
        .map(|s| {
            let raw = if one_port {
                s.address.host.clone()
            } else {
                format!("{}-{}", s.address.host, s.address.port)
            };
            let mut id: String = raw
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            if !id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) {
                id = format!("h{id}");
            }
            id.truncate(60);
            let n = used.entry(id.clone()).or_insert(0);
            *n += 1;
            if *n > 1 {
                id = format!("{id}-{n}");
            }
            debug_assert!(is_valid_name(&id));
            id
        })
        .collect()
}

/// The topology file for crawled servers. Credentials are `${ENV}` references, never
/// literal; delayed replicas are marked `must_not`.
pub fn topology_yaml(
    cluster: &str,
    seed: &Address,
    user: &str,
    replication_user: &str,
    servers: &[ServerState],
) -> String {
    let ids = host_ids(servers);
    let sources = observed_sources(servers);
    let version = servers
        .iter()
        .find_map(|s| s.info().map(|i| format!("{} {}", i.flavor, i.version)))
        .unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Discovered by `orch discover --seed {seed}`: {} servers ({version}).",
        servers.len()
    );
    let _ = writeln!(
        out,
        "# Review it: add `dc:` and `promotion:` to each host, then `orch validate` it."
    );
    let _ = writeln!(out, "cluster: {cluster}");
    let _ = writeln!(out, "credentials:");
    let _ = writeln!(out, "  user: {user}");
    let _ = writeln!(out, "  password: ${{ORCH_PASSWORD}}");
    let _ = writeln!(out, "  replication_user: {replication_user}");
    let _ = writeln!(out, "  replication_password: ${{ORCH_REPL_PASSWORD}}");
    let _ = writeln!(out, "policy: safe");
    let _ = writeln!(out, "hosts:");
    for (i, s) in servers.iter().enumerate() {
        let mut fields = vec![format!("address: \"{}\"", s.address)];
        if let Some(src) = sources[i] {
            fields.push(format!("source: {}", ids[src]));
        }
        let delay = s
            .info()
            .and_then(|inf| inf.replication.as_ref())
            .map_or(0, |r| r.sql_delay);
        if delay > 0 {
            fields.push(format!("delay: {delay}s"));
            fields.push("promotion: must_not".into());
        }
        let note = match (
            &s.reach,
            s.info().and_then(|i| i.replication.as_ref()),
            sources[i],
        ) {
            (crate::observe::Reach::Unreachable { cause, .. }, _, _) => {
                format!("  # unreachable during discovery ({cause:?})")
            }
            (_, Some(r), None) => format!(
                "  # replicates from {}:{}, which was not reached",
                r.source_host, r.source_port
            ),
            _ => String::new(),
        };
        let _ = writeln!(out, "  {}: {{ {} }}{note}", ids[i], fields.join(", "));
    }
    out
}
