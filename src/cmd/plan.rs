//! `orch plan`: the file against the live servers (or a saved snapshot), as a proven plan.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::observe::{ObserveOptions, Snapshot};
use crate::plan::{self, Desired, FileHash, Observed, Plan, PlanOptions};
use crate::render::{self, Format};
use crate::spec::{Policy, Topology};
use crate::step::Step;

pub struct PlanArgs {
    pub file: PathBuf,
    pub observed: Option<PathBuf>,
    pub output: Option<PathBuf>,
    pub show_sql: bool,
    pub detailed_exitcode: bool,
    pub options: PlanOptions,
    pub format: Format,
    pub observe: ObserveOptions,
}

/// Everything a plan is made from, and the plan.
pub struct Planned {
    pub topology: Topology,
    pub policy: Policy,
    pub desired: Desired,
    pub observed: Observed,
    pub plan: Plan,
}

/// Loads the file, observes (or reads `snapshot`), plans and proves.
pub fn make(
    file: &Path,
    snapshot: Option<&Path>,
    options: PlanOptions,
    observe: ObserveOptions,
) -> anyhow::Result<Planned> {
    let (topology, policy) = crate::spec::load_valid(file)?;
    let desired = Desired::from_topology(&topology);
    let observed = match snapshot {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let snapshot: Snapshot = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not an `orch status --format json` snapshot",
                    path.display()
                )
            })?;
            Observed::from_snapshot(&desired, &snapshot)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => {
            // The plan reads only the servers' states, never the snapshot's problems: it
            // finds the live primary itself and shows a failover as drift.
            let snapshot = super::status::observe(&topology, &policy, None, observe)?;
            Observed::from_snapshot(&desired, &snapshot).map_err(anyhow::Error::msg)?
        }
    };
    let mut the_plan = plan::plan(&desired, &observed, &policy, options)?;
    the_plan.files = plan_files(&topology)?;
    Ok(Planned {
        topology,
        policy,
        desired,
        observed,
        plan: the_plan,
    })
}

pub fn run(args: PlanArgs) -> anyhow::Result<u8> {
    let p = make(
        &args.file,
        args.observed.as_deref(),
        args.options,
        args.observe,
    )?;
    if let Some(path) = &args.output {
        let json = serde_json::to_string_pretty(&p.plan)? + "\n";
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let sql = step_sql_for(&p);
    let mut out = std::io::stdout().lock();
    render::plan(
        &p.plan,
        args.format,
        args.show_sql.then_some(&sql as _),
        &mut out,
    )?;
    if let Some(path) = &args.output
        && args.format == Format::Human
    {
        writeln!(
            out,
            "saved to {} (apply it with: orch apply {})",
            path.display(),
            path.display()
        )?;
    }
    Ok(p.plan.exit_code(args.detailed_exitcode))
}

/// `--show-sql`: each step's statements for its server's flavour.
pub fn step_sql_for(p: &Planned) -> impl Fn(&Step) -> Vec<String> + use<> {
    crate::apply::record::sql_of_steps(&p.topology, &p.policy, &p.desired, &p.observed)
}

/// The files a plan was made from, with their SHA-256: the topology and a policy file.
pub fn plan_files(t: &Topology) -> anyhow::Result<Vec<FileHash>> {
    let mut paths = vec![t.file.clone()];
    if let crate::spec::PolicyRef::File(p) = &t.policy {
        paths.push(t.file.parent().unwrap_or(Path::new(".")).join(p));
    }
    paths
        .into_iter()
        .map(|p| {
            let bytes =
                std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
            Ok(FileHash {
                path: p.display().to_string(),
                sha256: plan::sha256_hex(&bytes),
            })
        })
        .collect()
}
