//! `orch watch FILE...`: one watcher per cluster (files as `validate` reads them), all in
//! one process, until SIGTERM or Ctrl-C; with `--listen`, the HTTP API, the live page and
//! /metrics beside them. The files are read again when they change or on SIGHUP (a
//! reload). I/O: files, the state store, the servers, the listening socket, signals.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;

use crate::cli::{ApiAuth, EtcdFlags, LogFormat};
use crate::executor::Executor;
use crate::executor::fenced::Fenced;
use crate::executor::mysql::MysqlExecutor;
use crate::observe::ObserveOptions;
use crate::spec::secret::{Secret, SecretRef};
use crate::state::shared::Shared;
use crate::state::{self, RunFile, Store};
use crate::watch::hub::{Command, Hub};
use crate::watch::leader::Leadership;
use crate::watch::webhook::Target;
use crate::watch::{Config, Watcher};

/// `orch watch`, resolved.
pub struct WatchArgs {
    pub files: Vec<PathBuf>,
    pub dry_run: bool,
    pub state: Option<PathBuf>,
    pub listen: Option<std::net::SocketAddr>,
    pub api_token_file: Option<PathBuf>,
    pub api_auth: ApiAuth,
    pub log_format: LogFormat,
    pub observe: ObserveOptions,
    pub etcd: EtcdFlags,
}

/// The executor of a watcher: MySQL, each step checked against the leadership.
type Exec = Fenced<MysqlExecutor, Leadership>;

pub fn run(args: WatchArgs) -> anyhow::Result<u8> {
    super::logs::init(args.log_format);
    let dir = state::resolve_dir(args.state.as_deref(), |n| std::env::var_os(n))?;
    let leadership = leadership(&args)?;
    let hub = Arc::new(Hub::led_by(leadership.clone()));
    let mut watchers = Vec::new();
    let mut watched = Vec::new();
    for file in &args.files {
        let config = load(file, args.observe, leadership.clone())?;
        watched.extend(config.files.iter().map(|f| PathBuf::from(&f.path)));
        let (file, observe, l) = (file.clone(), args.observe, leadership.clone());
        let loader = Box::new(move || load(&file, observe, l.clone()));
        let mut w = Watcher::from_config(
            config,
            Store::open(&dir)?,
            args.dry_run,
            hub.clone(),
            Some(loader),
        )?;
        w.leadership = leadership.clone();
        watchers.push(w);
    }
    let token = match &args.api_token_file {
        Some(path) => Some(
            SecretRef::File(path.clone()).resolve_from_env("--api-token-file", Path::new("."))?,
        ),
        None => None,
    };
    if token.as_ref().is_some_and(|t| t.expose().is_empty()) {
        anyhow::bail!("--api-token-file: the file is empty; write a long random token in it");
    }
    // Bound before anything starts: a taken address is an error now, not a log line later.
    let listener = match args.listen {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr)
                .with_context(|| format!("--listen {addr}: cannot listen there"))?;
            l.set_nonblocking(true)?;
            Some(l)
        }
        None => None,
    };
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
        let campaign = leadership
            .clone()
            .map(|l| tokio::task::spawn_local(l.run(stop.clone())));
        for w in watchers {
            execs.push(w.exec.clone());
            tasks.push(tokio::task::spawn_local(w.run(stop.clone())));
        }
        if let Some(listener) = listener {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let addr = listener.local_addr()?;
            let api = crate::watch::http::Api {
                hub: hub.clone(),
                store: std::sync::Mutex::new(Store::open(&dir)?),
                token,
                auth: args.api_auth,
                listen: addr.to_string(),
            };
            tokio::spawn(crate::watch::http::serve(listener, Arc::new(api)));
            tracing::info!("serving the API, the live page and /metrics on http://{addr}/");
        }
        let _files = watch_files(&watched, hub.clone())?;
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        loop {
            tokio::select! {
                _ = int.recv() => break,
                _ = term.recv() => break,
                _ = hup.recv() => reload_all(&hub, "SIGHUP").await,
            }
        }
        tracing::info!("stopping: the current step finishes first");
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            let _ = t.await;
        }
        if let Some(c) = campaign {
            // Resigns: another watcher leads at once.
            let _ = c.await;
        }
        for e in execs {
            e.close().await;
        }
        anyhow::Ok(())
    })?;
    Ok(0)
}

/// Asks every watcher to read its files again.
async fn reload_all(hub: &Hub, why: &str) {
    for name in hub.names() {
        if let Some(tx) = hub.with(&name, |c| c.commands.clone()) {
            let _ = tx
                .send(Command::Reload {
                    why: why.to_string(),
                })
                .await;
        }
    }
}

/// Watches the directories of `files` (editors replace a file by renaming a new one over
/// it, which a watch on the file itself would miss); a change to one of them, once quiet
/// for 200 ms, reloads. The returned watcher must be kept alive.
fn watch_files(files: &[PathBuf], hub: Arc<Hub>) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let wanted: Vec<PathBuf> = files.iter().map(|f| absolute(f)).collect();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let names = wanted.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        for path in event.paths {
            if names.contains(&absolute(&path)) {
                let _ = tx.send(path);
            }
        }
    })
    .context("watching the files for changes")?;
    let mut dirs: Vec<PathBuf> = wanted
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in &dirs {
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {} for changes", dir.display()))?;
    }
    tokio::task::spawn_local(async move {
        while let Some(first) = rx.recv().await {
            // An editor's save is several events: one reload once they are over.
            while let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(200), rx.recv()).await
            {}
            reload_all(&hub, &format!("{} changed", first.display())).await;
        }
    });
    Ok(watcher)
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// With `--etcd`: the client and the prefix (None: no etcd).
pub fn etcd(e: &EtcdFlags) -> anyhow::Result<Option<Shared>> {
    if e.urls.is_empty() {
        return Ok(None);
    }
    let user = match (&e.user, &e.password_file) {
        (Some(u), Some(f)) => Some((
            u.clone(),
            SecretRef::File(f.clone()).resolve_from_env("--etcd-password-file", Path::new("."))?,
        )),
        _ => None,
    };
    let client = crate::state::etcd::Etcd::new(crate::state::etcd::EtcdOptions {
        urls: e.urls.clone(),
        user,
        tls: crate::httpc::TlsFiles {
            ca: e.cacert.clone(),
            client: match (&e.cert, &e.key) {
                (Some(cert), Some(key)) => Some(crate::httpc::ClientCert {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
        },
    })?;
    Ok(Some(Shared::new(Arc::new(client), &e.prefix)))
}

/// With `--etcd`: this process's candidacy.
fn leadership(args: &WatchArgs) -> anyhow::Result<Option<Arc<Leadership>>> {
    let Some(shared) = etcd(&args.etcd)? else {
        return Ok(None);
    };
    let who = state::Who::current();
    let me = serde_json::json!({
        "id": format!("{}:{}", who.host, who.pid),
        "host": who.host,
        "pid": who.pid,
        "listen": args.listen.map(|a| a.to_string()).unwrap_or_default(),
    });
    Ok(Some(Arc::new(Leadership::new(shared, me))))
}

/// Reads and checks a topology file and its policy, resolves what they name (credentials,
/// webhook secrets): what a watcher runs on, at start and at every reload.
pub fn load(
    file: &Path,
    observe: ObserveOptions,
    leadership: Option<Arc<Leadership>>,
) -> anyhow::Result<Config<Exec>> {
    let (topology, policy) = crate::spec::load_valid(file)?;
    let files: Vec<RunFile> = super::plan::plan_files(&topology)?
        .into_iter()
        .map(|f| RunFile {
            path: f.path,
            sha256: f.sha256,
        })
        .collect();
    let policy_dir = match &topology.policy {
        crate::spec::PolicyRef::File(rel) => topology
            .file
            .parent()
            .unwrap_or(Path::new("."))
            .join(rel)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        crate::spec::PolicyRef::Builtin(_) => PathBuf::from("."),
    };
    let webhooks = policy
        .hooks
        .webhooks
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let secret: Option<Secret> = match &w.secret {
                Some(s) => {
                    Some(s.resolve_from_env(&format!("hooks.webhooks[{i}].secret"), &policy_dir)?)
                }
                None => None,
            };
            let tls = match &w.ca_file {
                Some(ca) => {
                    let files = crate::httpc::TlsFiles {
                        ca: Some(policy_dir.join(ca)),
                        client: None,
                    };
                    let tls = crate::httpc::TlsReloader::new(files)
                        .map_err(|e| anyhow::anyhow!("hooks.webhooks[{i}].ca_file {e}"))?;
                    Some(Arc::new(tls))
                }
                None => None,
            };
            anyhow::Ok(Target {
                url: w.url.clone(),
                secret,
                tls,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Connections are kept between observations and steps: a recovery's steps each observe
    // their server twice, and a handshake per observation was most of a step.
    let exec = Arc::new(Fenced {
        inner: MysqlExecutor::for_changes(&topology, &policy, observe)?.keeping_connections(),
        fence: leadership,
    });
    Ok(Config {
        topology,
        policy,
        files,
        exec,
        webhooks,
    })
}

/// The watcher of one topology file (without reload), as `orch failover` uses it.
pub fn watcher(
    file: &Path,
    state_dir: &Path,
    dry_run: bool,
    observe: ObserveOptions,
) -> anyhow::Result<Watcher<Exec>> {
    let config = load(file, observe, None)?;
    Watcher::from_config(
        config,
        Store::open(state_dir)?,
        dry_run,
        Arc::new(Hub::default()),
        None,
    )
}
