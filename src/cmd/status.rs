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
            match failed_over_to(&topology, args.state.as_deref())? {
                Some(live) => {
                    let was = topology
                        .hosts
                        .iter()
                        .find(|h| h.source.is_none())
                        .map(|h| h.id.clone())
                        .unwrap_or_default();
                    let mut snapshot =
                        observe(&as_if_primary(&topology, &live), &policy, args.options)?;
                    snapshot.problems.insert(
                        0,
                        crate::observe::classify::Problem {
                            code: crate::observe::classify::ProblemCode::FailoverDrift,
                            severity: crate::observe::classify::ProblemCode::FailoverDrift
                                .severity(),
                            host: was.clone(),
                            message: format!(
                                "the file names {was} as the primary, but orch failed over to {live} (orch history): shown as if the file named {live}; update the file"
                            ),
                        },
                    );
                    snapshot
                }
                None => observe(&topology, &policy, args.options)?,
            }
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

/// The primary a failover recorded in the state store made, when the file names another
/// (a declared host). No state directory: None (status never creates one).
fn failed_over_to(t: &Topology, state: Option<&Path>) -> anyhow::Result<Option<String>> {
    let dir = crate::state::resolve_dir(state, |n| std::env::var_os(n))?;
    if !dir.join(crate::state::DB_FILE).exists() {
        return Ok(None);
    }
    let store = crate::state::Store::open(&dir)?;
    let Some(live) = store.cluster_state(&t.cluster)?.current_primary else {
        return Ok(None);
    };
    let declared = t.hosts.iter().any(|h| h.id == live);
    let file_primary = t.hosts.iter().find(|h| h.source.is_none()).map(|h| &h.id);
    Ok((declared && file_primary != Some(&live)).then_some(live))
}

/// The topology read as if it named `live` the primary: `live` has no source, and the
/// file's primary and its replicas replicate from `live`.
fn as_if_primary(t: &Topology, live: &str) -> Topology {
    let mut t = t.clone();
    let old = t
        .hosts
        .iter()
        .find(|h| h.source.is_none())
        .map(|h| (h.id.clone(), h.pos));
    for h in &mut t.hosts {
        if h.id == live {
            h.source = None;
        } else if let Some((old_id, pos)) = &old {
            let points_at_old = h.source.as_ref().is_some_and(|s| &s.value == old_id);
            if h.id == *old_id || points_at_old {
                h.source = Some(crate::spec::decode::Spanned {
                    value: live.to_string(),
                    pos: *pos,
                });
            }
        }
    }
    t
}

/// Observes a validated topology with the credentials it names; refuses an observation in
/// which no server answered.
pub fn observe(t: &Topology, policy: &Policy, options: ObserveOptions) -> anyhow::Result<Snapshot> {
    let exec = Arc::new(MysqlExecutor::for_topology(t, options)?);
    let snapshot = super::runtime()?.block_on(crate::executor::observe_cluster(
        exec,
        t,
        policy,
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
    let snapshot = Snapshot::new(&topology, &Policy::default(), servers.to_vec(), Vec::new());
    snapshot.check_usable()?;
    Ok(snapshot)
}
