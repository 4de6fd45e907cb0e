//! `orch status`: observe every declared server (or a topology crawled from one server)
//! and report the live topology and its problems.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::cli::Login;
use crate::executor::mysql::MysqlExecutor;
use crate::observe::{ObserveOptions, ServerState, Snapshot};
use crate::render::{self, Format};
use crate::spec::{Policy, Topology};
use crate::topology::Address;

pub struct StatusArgs {
    pub file: Option<PathBuf>,
    /// orch's state directory: a failover recorded there names the live primary.
    pub state: Option<PathBuf>,
    pub seed: Option<Address>,
    pub table: bool,
    pub format: Format,
    pub options: ObserveOptions,
}

pub fn run(args: StatusArgs, login: &Login) -> anyhow::Result<u8> {
    let snapshot = match (&args.file, &args.seed) {
        (Some(file), None) => {
            let (topology, policy) = crate::spec::load_valid(file)?;
            let primary = recorded_primary(&topology.cluster, args.state.as_deref())?;
            observe(&topology, &policy, primary.as_deref(), args.options)?
        }
        (None, Some(seed)) => {
            let servers = super::discover::crawl(seed, login, args.options)?;
            snapshot_of_crawl(login, &servers)?
        }
        _ => anyhow::bail!("give a topology FILE or --seed HOST:PORT"),
    };
    let mut out = std::io::stdout().lock();
    render::status(&snapshot, args.format, args.table, &mut out)?;
    Ok(snapshot.exit_code())
}

/// The primary recorded in the state store (by a failover, a switchover or a watcher
/// that followed one). No state directory: None (status never creates one).
fn recorded_primary(cluster: &str, state: Option<&Path>) -> anyhow::Result<Option<String>> {
    let dir = crate::state::resolve_dir(state, |n| std::env::var_os(n))?;
    if !dir.join(crate::state::DB_FILE).exists() {
        return Ok(None);
    }
    let store = crate::state::Store::open(&dir)?;
    Ok(store.cluster_state(cluster)?.current_primary)
}

/// Observes a validated topology with the credentials it names, judged against `primary`
/// (the recorded one; None: the file's); refuses an observation in which no server
/// answered.
pub fn observe(
    t: &Topology,
    policy: &Policy,
    primary: Option<&str>,
    options: ObserveOptions,
) -> anyhow::Result<Snapshot> {
    let exec = Arc::new(MysqlExecutor::for_topology(t, options)?);
    let snapshot = super::runtime()?.block_on(crate::executor::observe_cluster(
        exec,
        t,
        policy,
        primary,
        options.concurrency,
    ));
    snapshot.check_usable()?;
    Ok(snapshot)
}

/// The snapshot of a crawled topology (`status --seed`): the crawl is read back as the
/// topology file `discover` would write, so both commands agree on names and sources.
fn snapshot_of_crawl(login: &Login, servers: &[ServerState]) -> anyhow::Result<Snapshot> {
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
    // A crawl has no recorded primary: it is judged as discovered.
    let snapshot = Snapshot::new(
        &topology,
        &Policy::default(),
        None,
        servers.to_vec(),
        Vec::new(),
    );
    snapshot.check_usable()?;
    Ok(snapshot)
}
