//! `orch watch FILE...`: one watcher per cluster (files as `validate` reads them), all in
//! one process, until SIGTERM or Ctrl-C. I/O: files, the state store, the servers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;

use crate::executor::mysql::MysqlExecutor;
use crate::observe::ObserveOptions;
use crate::state::{self, RunFile, Store};
use crate::watch::Watcher;

pub fn run(
    files: &[PathBuf],
    dry_run: bool,
    state_dir: Option<PathBuf>,
    observe: ObserveOptions,
) -> anyhow::Result<u8> {
    let dir = state::resolve_dir(state_dir.as_deref(), |n| std::env::var_os(n))?;
    let mut watchers = Vec::new();
    for file in files {
        watchers.push(watcher(file, &dir, dry_run, observe)?);
    }
    // One thread: a watcher waits on the network nearly all the time (memory matters
    // more than parallelism for a process that runs for months).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        let mut execs = Vec::new();
        for w in watchers {
            execs.push(w.exec.clone());
            tasks.push(tokio::task::spawn_local(w.run(stop.clone())));
        }
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!("stopping: the current step finishes first");
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            let _ = t.await;
        }
        for e in execs {
            e.close().await;
        }
        anyhow::Ok(())
    })?;
    Ok(0)
}

/// The watcher of one topology file.
pub fn watcher(
    file: &Path,
    state_dir: &Path,
    dry_run: bool,
    observe: ObserveOptions,
) -> anyhow::Result<Watcher<MysqlExecutor>> {
    let (topology, policy) = crate::spec::load_valid(file)?;
    let files: Vec<RunFile> = super::plan::plan_files(&topology)?
        .into_iter()
        .map(|f| RunFile {
            path: f.path,
            sha256: f.sha256,
        })
        .collect();
    // Connections are kept between observations and steps: a recovery's steps each observe
    // their server twice, and a handshake per observation was most of a step.
    let exec =
        Arc::new(MysqlExecutor::for_changes(&topology, &policy, observe)?.keeping_connections());
    let store = Store::open(state_dir)?;
    Watcher::new(topology, policy, files, exec, store, dry_run)
}
