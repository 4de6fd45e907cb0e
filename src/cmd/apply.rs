//! `orch apply FILE` / `orch apply PLAN`: run a plan on the live servers, locked and
//! recorded.
//!
//! FILE: observe, plan, prove, print the plan as `orch plan` does, then ask (only `yes`
//! proceeds; `--auto-approve` skips the question; without a terminal and without it,
//! refused). PLAN (saved by `plan -o`): no question, but refused as stale when the files'
//! hashes or a fresh observation's fingerprint differ from what the plan was made from.
//! Then: take the cluster's lock in the state store, record the run, run the steps through
//! the engine ([`crate::apply`]) with progress, and record each step. Ctrl-C / SIGTERM
//! finish the current step and stop. I/O: files, the state store, the servers.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::apply::record::{Finished, Recording, progress_bar, run_recorded, say};
use crate::apply::{Cluster, Limits};
use crate::executor::Executor;
use crate::executor::fenced::Fenced;
use crate::executor::mysql::MysqlExecutor;
use crate::observe::ObserveOptions;
use crate::plan::{BlockCode, Placement, Plan, PlanOptions};
use crate::render::{self, Format};
use crate::state::{self, NewRun, Outcome, RunFile, RunKind, Store, Who};

pub struct ApplyArgs {
    /// A topology file, or a plan saved by `orch plan -o`.
    pub target: PathBuf,
    pub auto_approve: bool,
    pub format: Format,
    pub state: Option<PathBuf>,
    pub options: PlanOptions,
    pub observe: ObserveOptions,
    pub etcd: crate::cli::EtcdFlags,
}

pub fn run(args: ApplyArgs) -> anyhow::Result<u8> {
    let text = std::fs::read_to_string(&args.target)
        .with_context(|| format!("cannot read {}", args.target.display()))?;
    let saved: Option<Plan> = serde_json::from_str::<Plan>(&text).ok();
    let mut out = std::io::stdout().lock();
    let plan = match saved {
        Some(saved) => {
            unchanged_files(&args, &saved)?;
            saved
        }
        None => {
            let plan = super::plan::make(&args.target, None, args.options, args.observe)?.plan;
            if args.format == Format::Human {
                render::plan(&plan, Format::Human, None, &mut out)?;
            }
            if !plan.steps.is_empty() && !args.auto_approve {
                approve(&mut out)?;
            }
            plan
        }
    };
    if plan.steps.is_empty() && !plan.blocked.is_empty() {
        let codes: Vec<String> = plan
            .blocked
            .iter()
            .map(|b| match b.code {
                // Refusals of the whole plan say what to do.
                BlockCode::MissingPrivilege
                | BlockCode::UnsupportedVersion
                | BlockCode::MultipleChannels => {
                    format!("{} ({}): {}", b.host, b.code.name(), b.reason)
                }
                _ => format!("{} ({})", b.host, b.code.name()),
            })
            .collect();
        bail!(
            "nothing applied: every change the file asks for is blocked: {}",
            codes.join(", ")
        );
    }
    if plan.steps.is_empty() {
        if args.format == Format::Human {
            writeln!(out, "nothing to apply")?;
        }
        return Ok(0);
    }
    drop(out);

    let dir = state::resolve_dir(args.state.as_deref(), |n| std::env::var_os(n))?;
    let store = Store::open(&dir)?;
    let who = Who::current();
    let lock = store.lock(&plan.cluster, &who, crate::state::lock_ttl())?;
    let rt = super::runtime()?;
    // With etcd, the cluster's lock there too: a watch leader on another machine takes
    // the same one.
    let etcd_lock = match super::watch::etcd(&args.etcd)? {
        None => None,
        Some(shared) => {
            let key = shared.cluster_key(&plan.cluster, "lock");
            let me =
                serde_json::json!({"apply": format!("{}@{} pid {}", who.user, who.host, who.pid)});
            match rt.block_on(crate::state::etcd::EtcdLock::acquire(
                shared.etcd,
                &key,
                &me,
            )) {
                Ok(l) => Some(Arc::new(l)),
                Err(e) => {
                    lock.release()?;
                    bail!("{e}; nothing was changed");
                }
            }
        }
    };
    // Between the plan and the lock, another apply (or a failover) may have changed the
    // cluster: the steps run only against the world they were planned for.
    let planned = current(&args, &plan)?;
    let run = store.begin_run(NewRun {
        kind: RunKind::Apply,
        cluster: plan.cluster.clone(),
        who,
        files: plan
            .files
            .iter()
            .map(|f| RunFile {
                path: f.path.clone(),
                sha256: f.sha256.clone(),
            })
            .collect(),
        fingerprint: Some(plan.fingerprint.clone()),
        steps_planned: Some(plan.steps.len()),
    })?;

    // Each step runs only while the etcd lock holds (a paused apply whose lease ran out
    // must not act beside whoever took the lock since).
    let exec = Arc::new(Fenced {
        inner: MysqlExecutor::for_changes(&planned.topology, &planned.policy, args.observe)?
            .keeping_connections(),
        fence: etcd_lock.clone(),
    });
    let cluster = Cluster::of(&planned.desired, &planned.observed);
    let limits = Limits {
        expect_timeout: planned
            .policy
            .failover
            .promote
            .wait_relay_log
            .max(Duration::from_secs(10)),
    };
    // A switchover's hooks: the old and the new primary are known from the steps.
    let hook_values = switchover_values(&plan, &planned);
    if let Some(values) = &hook_values {
        let hooks = &planned.policy.hooks;
        let pre = rt.block_on(crate::hooks::run(
            "pre_switchover",
            &hooks.pre_switchover,
            values,
            hooks.timeout,
            true,
        ));
        if let Some(bad) = pre.iter().find(|h| !h.ok()) {
            let why = format!(
                "aborted by the pre_switchover hook `{}` (exit {}): nothing was changed",
                bad.command,
                bad.exit_code
                    .map_or("none: killed or not run".into(), |c| c.to_string())
            );
            store.set_run_detail(run, &serde_json::json!({ "hooks": pre }))?;
            store.finish_run(run, Outcome::Failed, Some(&why), "aborted by a hook")?;
            lock.release()?;
            if let Some(l) = etcd_lock {
                let _ = rt.block_on(l.release());
            }
            bail!("{why} (orch history {})", run.0);
        }
    }
    let sql = super::plan::step_sql_for(&planned);
    let stop = Arc::new(AtomicBool::new(false));
    let bar = (args.format == Format::Human && std::io::stderr().is_terminal())
        .then(|| progress_bar(plan.steps.len()));
    let finished = rt.block_on(async {
        let watcher = {
            let stop = stop.clone();
            let bar = bar.clone();
            tokio::spawn(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
                let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
                // The handlers stay installed: a second signal cannot kill orch in the
                // middle of a step (a fenced primary with nothing promoted).
                loop {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    let again = stop.swap(true, Ordering::SeqCst);
                    say(
                        bar.as_ref(),
                        if again {
                            "already stopping: the current step finishes first, a step is never left half done"
                        } else {
                            "stopping after the current step (signal received)"
                        },
                    );
                }
            })
        };
        let recording = Recording {
            store: &store,
            run,
            lock: &lock,
            format: args.format,
            sql: &sql,
            bar: bar.clone(),
            on_step: None,
        };
        let finished =
            run_recorded(exec.clone(), &cluster, &plan, limits, stop.clone(), recording).await;
        watcher.abort();
        exec.close().await;
        finished
    })?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let Finished {
        report,
        outcome,
        summary,
        error,
    } = finished;
    match lock.release() {
        // A lock taken over during the run stopped it, which said so: the result stands.
        Ok(()) | Err(state::StateError::LockLost { .. }) => {}
        Err(e) => eprintln!("releasing the cluster lock: {e}"),
    }
    if let Some(l) = etcd_lock
        && let Err(e) = rt.block_on(l.release())
    {
        // It expires on its own within its TTL.
        eprintln!("releasing the etcd lock: {e}");
    }
    // The primary a switchover made is the one every view judges against from now on
    // (`orch status --state`, a watcher started later), as a failover's is: left as it
    // was, a primary recorded by an earlier failover would show the file as drift and the
    // new primary as a writable replica.
    if outcome == Outcome::Succeeded
        && let Some(new) = plan
            .steps
            .iter()
            .find(|s| matches!(s.action, crate::step::Action::Promote))
    {
        store.record_primary(&plan.cluster, &new.host)?;
    }
    let mut error = error;
    if let Some(values) = hook_values.filter(|_| outcome == Outcome::Succeeded) {
        let hooks = &planned.policy.hooks;
        let post = rt.block_on(crate::hooks::run(
            "post_switchover",
            &hooks.post_switchover,
            &values,
            hooks.timeout,
            false,
        ));
        if !post.is_empty() {
            store.set_run_detail(run, &serde_json::json!({ "hooks": post }))?;
        }
        if let Some(bad) = post.iter().find(|h| !h.ok()) {
            let note = format!(
                "completed, hook failed: post_switchover `{}` (exit {})",
                bad.command,
                bad.exit_code
                    .map_or("none: killed or not run".into(), |c| c.to_string())
            );
            store.finish_run(run, outcome, Some(&note), &format!("{summary}; {note}"))?;
            eprintln!("{note}");
            error = Some(note);
        }
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::json!({"event": "finished", "run": run.0, "outcome": outcome_name(outcome), "summary": summary, "error": error})
        )?,
        _ => writeln!(
            out,
            "apply {}: {summary} (orch history {})",
            outcome_name(outcome),
            run.0
        )?,
    }
    Ok(if report.succeeded() { 0 } else { 1 })
}

fn outcome_name(o: Outcome) -> &'static str {
    o.as_str()
}

/// The hook values of a plan that switches the primary over (None when it does not): the
/// fenced old primary is `{failed}`, the promoted server `{successor}`.
fn switchover_values(plan: &Plan, planned: &super::plan::Planned) -> Option<crate::hooks::Values> {
    let old = plan
        .steps
        .iter()
        .find(|s| matches!(s.action, crate::step::Action::Fence { kill_writers: true }))?;
    let new = plan
        .steps
        .iter()
        .find(|s| matches!(s.action, crate::step::Action::Promote))?;
    let dc = |id: &str| {
        planned
            .desired
            .hosts
            .iter()
            .find(|h| h.id == id)
            .and_then(|h| h.dc.clone())
            .unwrap_or_default()
    };
    let mut v = crate::hooks::Values::default();
    v.set("cluster", plan.cluster.clone())
        .set("event", "switchover")
        .set("failed", old.host.clone())
        .set("failed_address", old.address.to_string())
        .set("failed_dc", dc(&old.host))
        .set("successor", new.host.clone())
        .set("successor_address", new.address.to_string())
        .set("successor_dc", dc(&new.host))
        .set("reason", format!("orch apply by {}", Who::current().user))
        .set("time", state::utc(state::now_millis()));
    Some(v)
}

/// Terraform's question: only `yes` proceeds; no terminal, no question, no apply.
fn approve(out: &mut dyn Write) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "refusing to apply without approval: stdin is not a terminal; review the plan and pass --auto-approve (nothing was changed)"
        );
    }
    write!(
        out,
        "Apply these steps to the live servers? Only 'yes' will be accepted: "
    )?;
    out.flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        bail!("apply cancelled (nothing was changed)");
    }
    Ok(())
}

/// A saved plan is applied only with the files it was made from.
fn unchanged_files(args: &ApplyArgs, saved: &Plan) -> anyhow::Result<()> {
    if saved.files.is_empty() {
        bail!(
            "{} names no topology file; save plans with orch plan FILE -o PLAN",
            args.target.display()
        );
    }
    for f in &saved.files {
        let bytes = std::fs::read(&f.path)
            .with_context(|| format!("stale plan: cannot read {}", f.path))?;
        if crate::plan::sha256_hex(&bytes) != f.sha256 {
            bail!(
                "stale plan: {} changed since the plan was made; plan again (nothing was changed)",
                f.path
            );
        }
    }
    Ok(())
}

/// A plan runs only in the world it was made from: a fresh observation must have the
/// plan's fingerprint (the observed shape). Returns that observation (and the files) the
/// steps will run against.
fn current(args: &ApplyArgs, plan: &Plan) -> anyhow::Result<super::plan::Planned> {
    let topology = plan
        .files
        .first()
        .map_or(args.target.as_path(), |f| Path::new(&f.path));
    let fresh = super::plan::make(topology, None, args.options, args.observe)?;
    if fresh.plan.fingerprint != plan.fingerprint {
        let changes = what_changed(&plan.before, &fresh.plan.before);
        bail!(
            "stale plan: the live topology changed since the plan was made ({}); plan again (nothing was changed)",
            if changes.is_empty() {
                "server identity, versions or GTID streams".to_string()
            } else {
                changes.join("; ")
            }
        );
    }
    Ok(fresh)
}

/// The servers whose placement differs between two observations.
fn what_changed(before: &[Placement], now: &[Placement]) -> Vec<String> {
    let show = |p: &Placement| {
        format!(
            "source {}, replication {}, read_only {}, {}",
            p.source.as_deref().unwrap_or("none"),
            p.replication,
            p.read_only.map_or("?".into(), |r| r.to_string()),
            if p.reachable {
                "reachable"
            } else {
                "unreachable"
            }
        )
    };
    let mut out = Vec::new();
    for p in now {
        match before.iter().find(|b| b.host == p.host) {
            Some(b) if b == p => {}
            Some(b) => out.push(format!("{}: was {}, now {}", p.host, show(b), show(p))),
            None => out.push(format!("{}: new ({})", p.host, show(p))),
        }
    }
    for b in before {
        if !now.iter().any(|p| p.host == b.host) {
            out.push(format!("{}: gone", b.host));
        }
    }
    out
}
