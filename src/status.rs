//! `orch status`: observe every declared server and report the live topology and its
//! problems.
//!
//! Takes a topology file (or, with `--seed`, a topology crawled from one server), gives a
//! [`Snapshot`]: the observed servers and the problems, rendered as a tree, a table or JSON.
//! Does I/O: resolves credentials and connects to every server (through the executor).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::executor::mysql::MysqlExecutor;
use crate::observe::classify::{Problem, classify};
use crate::observe::{ObserveOptions, Reach, ServerState, Unreachable, observe_all};
use crate::spec::{Secret, Topology};
use crate::topology::Address;

/// The observed topology and its problems; `--format json` prints exactly this, and
/// `plan --observed` will read it back. Field names are stable.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    /// Version of this schema.
    pub schema: u32,
    pub cluster: String,
    pub hosts: Vec<ObservedHost>,
    /// Servers replicating from the cluster that the file does not declare, found through
    /// `SHOW SLAVE HOSTS` (they need `report_host` and `report_port`) and observed too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undeclared: Vec<ServerState>,
    pub problems: Vec<Problem>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObservedHost {
    /// The host id in the topology file.
    pub id: String,
    /// The source the file declares (None: the primary).
    pub desired_source: Option<String>,
    #[serde(flatten)]
    pub state: ServerState,
}

impl Snapshot {
    /// 0 healthy, 2 problems found.
    pub fn exit_code(&self) -> u8 {
        if self.problems.is_empty() { 0 } else { 2 }
    }
}

/// Resolves the credentials a topology names into an executor.
pub fn executor_for(t: &Topology, options: ObserveOptions) -> anyhow::Result<MysqlExecutor> {
    let creds = t
        .credentials
        .as_ref()
        .context("the topology has no credentials")?;
    let base = t.file.parent().unwrap_or(Path::new("."));
    let password = match &creds.password {
        Some(r) => r.resolve_from_env("credentials.password", base)?,
        None => Secret::new(String::new()),
    };
    let exec = MysqlExecutor::new(creds.user.clone(), password, options);
    Ok(match &creds.tls {
        Some(tls) => exec.with_tls(tls.mode, tls.ca_file.as_ref().map(|f| base.join(f))),
        None => exec,
    })
}

/// The executor for `--seed` commands: `--user`, and the password from `--password-file`
/// or `$ORCH_PASSWORD`.
pub fn executor_for_login(
    login: &crate::cli::Login,
    options: ObserveOptions,
) -> anyhow::Result<MysqlExecutor> {
    let secret = match &login.password_file {
        Some(path) => crate::spec::SecretRef::File(path.clone()),
        None => crate::spec::SecretRef::Value("${ORCH_PASSWORD}".into()),
    };
    let password = secret.resolve_from_env("the password", Path::new("."))?;
    Ok(MysqlExecutor::new(login.user.clone(), password, options))
}

/// Observes a validated topology and classifies it.
pub async fn observe_topology(
    t: &Topology,
    policy: &crate::spec::Policy,
    options: ObserveOptions,
) -> anyhow::Result<Snapshot> {
    let exec = Arc::new(executor_for(t, options)?);
    let addresses: Vec<_> = t
        .hosts
        .iter()
        .map(|h| {
            h.address
                .as_ref()
                .map(|a| a.value.clone())
                .expect("validated")
        })
        .collect();
    let states = observe_all(exec.clone(), &addresses, options.concurrency).await;
    let extra = undeclared_replicas(&addresses, &states);
    let undeclared = observe_all(exec, &extra, options.concurrency).await;
    let problems = classify(t, policy, &states);
    let hosts = t
        .hosts
        .iter()
        .zip(states)
        .map(|(h, state)| ObservedHost {
            id: h.id.clone(),
            desired_source: h.source.as_ref().map(|s| s.value.clone()),
            state,
        })
        .collect();
    Ok(Snapshot {
        schema: 1,
        cluster: t.cluster.clone(),
        hosts,
        undeclared,
        problems,
    })
}

/// The replicas the observed servers report (with a port) at addresses the file does not
/// declare, sorted.
pub fn undeclared_replicas(declared: &[Address], states: &[ServerState]) -> Vec<Address> {
    let known: std::collections::HashSet<String> = declared.iter().map(|a| a.to_string()).collect();
    let mut extra: Vec<Address> = states
        .iter()
        .filter_map(ServerState::info)
        .flat_map(|inf| &inf.replicas)
        .filter_map(|r| Address::parse(&format!("{}:{}", r.host, r.port?)).ok())
        .filter(|a| !known.contains(&a.to_string()))
        .collect();
    extra.sort_by_key(|a| a.to_string());
    extra.dedup();
    extra
}

/// Refuses a snapshot that says nothing: no server answered. Access denied everywhere is
/// a credentials problem, said as such.
pub fn check_usable(snapshot: &Snapshot) -> anyhow::Result<()> {
    let reachable = snapshot.hosts.iter().any(|h| h.state.info().is_some());
    if reachable {
        return Ok(());
    }
    let denied = snapshot.hosts.iter().all(|h| {
        matches!(
            h.state.reach,
            Reach::Unreachable {
                cause: Unreachable::AccessDenied,
                ..
            }
        )
    });
    if denied {
        bail!(
            "every server of cluster {} refused orch's credentials (access denied): check credentials.user and the password it names",
            snapshot.cluster
        );
    }
    let first: Vec<String> = snapshot
        .hosts
        .iter()
        .take(3)
        .map(|h| match &h.state.reach {
            Reach::Unreachable { detail, .. } => {
                format!("{} ({}): {detail}", h.id, h.state.address)
            }
            Reach::Reachable(_) => String::new(),
        })
        .collect();
    bail!(
        "no server of cluster {} is reachable: {}",
        snapshot.cluster,
        first.join("; ")
    )
}

/// The snapshot of a crawled topology (`status --seed`): the crawl is read back as the
/// topology file `discover` would write, so both commands agree on names and sources.
pub fn snapshot_of_crawl(
    login: &crate::cli::Login,
    servers: &[ServerState],
) -> anyhow::Result<Snapshot> {
    let seed = servers
        .first()
        .map(|s| s.address.clone())
        .context("nothing was crawled")?;
    let yaml = crate::discover::topology_yaml(
        "discovered",
        &seed,
        &login.user,
        &login.replication_user,
        servers,
    );
    let root = crate::spec::yaml::load(&yaml)
        .map_err(|e| anyhow::anyhow!("internal: discovered topology: {}", e.message))?;
    let (topology, _) = crate::spec::parse_topology(Path::new("<discovered>"), &root);
    let topology = topology.context("internal: discovered topology")?;
    let policy = crate::spec::Policy::default();
    let problems = classify(&topology, &policy, servers);
    let hosts = topology
        .hosts
        .iter()
        .zip(servers.iter().cloned())
        .map(|(h, state)| ObservedHost {
            id: h.id.clone(),
            desired_source: h.source.as_ref().map(|s| s.value.clone()),
            state,
        })
        .collect();
    let snapshot = Snapshot {
        schema: 1,
        cluster: topology.cluster,
        hosts,
        undeclared: Vec::new(),
        problems,
    };
    check_usable(&snapshot)?;
    Ok(snapshot)
}
