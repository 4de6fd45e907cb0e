//! `orch sandbox`: throw-away local MariaDB (or MySQL) replication topologies.
//!
//! Takes a command (`up`, `status`, `act`, `down`); gives running servers in DIR plus `DIR/topology.yaml` (a
//! topology the rest of orch accepts) and `DIR/sandbox.json` (the state every later
//! sandbox command works from), and an exit code. Does I/O: starts and signals server
//! processes, writes files, talks SQL to the servers over their unix sockets.
//!
//! Layout of a sandbox:
//!
//! ```text
//! DIR/sandbox.json                     flavor, version, binary, shape, per instance: pid, paths
//! DIR/topology.yaml                    for `orch validate/status/plan/apply`
//! DIR/secrets/{orch,repl}.password     0600
//! DIR/nodeI/{data/,my.cnf,mysqld.sock,mysqld.pid,error.log}
//! ```
//!
//! Instance I listens on 127.X.Y.I:PORT: every instance has the same port on its own
//! loopback address, like servers on separate hosts, and X.Y is chosen per DIR so
//! parallel sandboxes (tests) never collide. The pure decisions (shapes, configs, SQL,
//! address blocks, `/proc` checks) live in [`config`]; processes in [`process`]; the
//! installation, template cache and files in [`server`].

pub mod config;
pub mod process;
pub mod server;
pub mod tls;

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};

use crate::render::Format;
pub use config::Shape;
use config::{Flavor, InstanceLayout};
use process::Proc;
use server::{RunAs, Server};

pub use config::{
    MARIADB_ORCH_PRIVILEGES, MYSQL_ORCH_PRIVILEGES, MYSQL_ORCH_TABLE_GRANTS, Privilege,
};

/// Like `println!`, but a closed stdout (`orch sandbox up DIR | head -1`) is an error the
/// caller returns (main.rs treats a broken pipe as success) instead of a panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// How long `up` and `start` wait for a server to accept connections, and `up` for
/// replication to run.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `stop` waits for a clean shutdown.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `kill` and `down` wait for SIGKILLed servers to disappear.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// `sun_path` is 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// `DIR/sandbox.json`: what `up` started, for every later command.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SandboxState {
    pub format: u32,
    pub cluster: String,
    pub flavor: Flavor,
    pub version: String,
    /// The server binary every instance runs; signals are only sent to processes whose
    /// command line starts with it.
    pub binary: PathBuf,
    pub shape: String,
    pub port: u16,
    /// The OS user the servers run as when orch runs as root.
    pub run_as: Option<String>,
    pub instances: Vec<InstanceState>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InstanceState {
    /// 1-based, as on the command line.
    pub index: u8,
    /// The host id in topology.yaml (`node1`).
    pub host: String,
    pub address: String,
    pub role: String,
    pub source: Option<String>,
    pub socket: PathBuf,
    pub datadir: PathBuf,
    pub config: PathBuf,
    pub error_log: PathBuf,
    pub pid_file: PathBuf,
    /// The pid of the server orch last started for this instance.
    pub pid: Option<i32>,
}

// ---------------------------------------------------------------------------------------
// up

/// `orch sandbox up`: starts `nodes` servers replicating in `shape`, writes the files.
pub fn up(dir: &Path, nodes: u8, shape: Shape, port: u16, cluster: &str, tls: bool) -> Result<u8> {
    let started = Instant::now();
    if !config::valid_cluster_name(cluster) {
        bail!(
            "invalid cluster name {cluster:?}: use letters, digits, '-', '_' and '.', starting \
             with a letter or digit"
        );
    }
    if !(1..=20).contains(&nodes) {
        bail!("a sandbox has 1 to 20 instances, not {nodes}");
    }
    let server = server::find_server()?;
    let run_as = if server::is_root() {
        Some(server::lookup_user("mysql")?)
    } else {
        None
    };
    let dir = prepare_dir(dir, run_as.as_ref())?;
    let shown = dir.display().to_string();

    let block = config::choose_block(&dir, nodes, port, |ip, port| {
        TcpListener::bind((ip, port)).is_ok()
    })
    .ok_or_else(|| {
        anyhow!(
            "no free loopback addresses for port {port} (tried {} blocks of 127.x.y.1-{nodes}); \
             is something listening on 0.0.0.0:{port}? choose another --port",
            config::MAX_PROBES
        )
    })?;
    let layouts: Vec<InstanceLayout> = (1..=nodes)
        .map(|index| InstanceLayout {
            index,
            ip: block.ip(index),
            port,
            node_dir: dir.join(config::host_id(index)),
            is_replica: config::source_of(shape, index).is_some(),
        })
        .collect();
    if let Some(long) = layouts
        .iter()
        .map(|l| l.socket())
        .find(|s| s.as_os_str().len() > MAX_SOCKET_PATH)
    {
        bail!(
            "the socket path {} is longer than the {MAX_SOCKET_PATH} bytes a unix socket \
             allows; choose a shorter DIR",
            long.display()
        );
    }

    let tls_dir = tls.then(|| dir.join("tls"));
    if let Some(tls_dir) = &tls_dir {
        let ips: Vec<_> = layouts.iter().map(|l| l.ip).collect();
        tls::make_certs(tls_dir, &ips)?;
        if let Some(user) = run_as.as_ref() {
            server::chown_tree(tls_dir, user)?;
        }
    }

    let template_started = Instant::now();
    let (template, built) = server::template(&server, run_as.is_some())?;
    let template_time = template_started.elapsed();

    let secrets = dir.join("secrets");
    fs::create_dir(&secrets)?;
    fs::set_permissions(&secrets, fs::Permissions::from_mode(0o700))?;
    let orch_password = server::random_password()?;
    let repl_password = server::random_password()?;
    server::write_secret(&secrets.join("orch.password"), &orch_password)?;
    server::write_secret(&secrets.join("repl.password"), &repl_password)?;

    // Copying ~25 MB per instance is the slowest step on a warm cache: do it in parallel.
    std::thread::scope(|scope| {
        let handles: Vec<_> = layouts
            .iter()
            .map(|l| {
                scope.spawn(|| {
                    prepare_node(&server, &template, l, run_as.as_ref(), tls_dir.as_deref())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("node preparation panicked"))
    })?;

    let mut state = SandboxState {
        format: 1,
        cluster: cluster.to_string(),
        flavor: server.flavor,
        version: server.version.clone(),
        binary: server.binary.clone(),
        shape: config::shape_name(shape).to_string(),
        port,
        run_as: run_as.as_ref().map(|u| u.name.clone()),
        instances: layouts
            .iter()
            .map(|l| InstanceState {
                index: l.index,
                host: config::host_id(l.index),
                address: l.address(),
                role: config::role_of(shape, nodes, l.index).to_string(),
                source: config::source_of(shape, l.index).map(config::host_id),
                socket: l.socket(),
                datadir: l.datadir(),
                config: l.config(),
                error_log: l.error_log(),
                pid_file: l.pid_file(),
                pid: None,
            })
            .collect(),
    };

    // Start every server at once: startup is mostly waiting on InnoDB, not CPU.
    let mut children: Vec<Child> = Vec::new();
    for l in &layouts {
        match process::spawn_server(
            &server.binary,
            &l.config(),
            state.run_as.as_deref(),
            &l.error_log(),
        ) {
            Ok(child) => children.push(child),
            Err(err) => {
                abort(&mut children);
                return Err(err.context(format!("could not start node{} of {shown}", l.index)));
            }
        }
    }
    for (inst, child) in state.instances.iter_mut().zip(&children) {
        inst.pid = Some(child.id() as i32);
    }
    // Saved before any waiting, so `down` can clean up even if orch is interrupted now.
    save_state(&dir, &state)?;

    let setup = runtime().and_then(|rt| {
        rt.block_on(set_up(
            &server,
            shape,
            &layouts,
            &mut children,
            &orch_password,
            &repl_password,
            tls,
        ))
    });
    if let Err(err) = setup {
        abort(&mut children);
        return Err(err.context(format!(
            "`orch sandbox up {shown}` failed; the servers it started are stopped and the \
             files are kept for inspection: remove them with `orch sandbox down {shown}`"
        )));
    }

    let hosts: Vec<config::TopologyHost> = state
        .instances
        .iter()
        .map(|i| config::TopologyHost {
            host: i.host.clone(),
            address: i.address.clone(),
            source: i.source.clone(),
        })
        .collect();
    let mut yaml = config::topology_yaml(cluster, shape, server.flavor, &server.version, &hosts);
    if tls {
        // orch's account requires TLS; the file tells orch to verify the server.
        yaml = yaml.replace(
            "  replication_password_file: secrets/repl.password\n",
            "  replication_password_file: secrets/repl.password\n  tls: { mode: verify_identity, ca_file: tls/ca.pem }\n",
        );
    }
    fs::write(dir.join("topology.yaml"), yaml)?;

    let elapsed = started.elapsed().as_secs_f64();
    let template_note = if built {
        format!(
            "; built the datadir template in {:.1}s",
            template_time.as_secs_f64()
        )
    } else {
        String::new()
    };
    out!(
        "Started a {nodes}-instance {} sandbox ({} {}) in {shown} in {elapsed:.1}s{template_note}:",
        config::shape_name(shape),
        server.flavor.label(),
        server.version
    );
    for inst in &state.instances {
        let source = inst
            .source
            .as_deref()
            .map(|s| format!(", source {s}"))
            .unwrap_or_default();
        out!(
            "  {:<6} {:<22} {}{source}, pid {}",
            inst.host,
            inst.address,
            inst.role,
            inst.pid.unwrap_or(0)
        );
    }
    out!();
    out!("Try:");
    out!("  orch validate {shown}/topology.yaml");
    out!("  orch status {shown}/topology.yaml");
    out!("  orch sandbox status {shown}");
    out!(
        "  {} -S {shown}/node1/mysqld.sock -u root",
        server.flavor.client()
    );
    out!("  orch sandbox kill|stop|start|freeze|thaw {shown} 1");
    out!("  orch sandbox down {shown}");
    Ok(0)
}

/// Checks DIR can hold a new sandbox, creates it and returns its canonical path.
fn prepare_dir(dir: &Path, run_as: Option<&RunAs>) -> Result<PathBuf> {
    let shown = dir.display();
    if dir.join("sandbox.json").exists() {
        bail!("{shown} already holds a sandbox; remove it first with `orch sandbox down {shown}`");
    }
    let existed = dir.exists();
    if existed {
        let mut entries =
            fs::read_dir(dir).with_context(|| format!("{shown} exists and is not a directory"))?;
        if entries.next().is_some() {
            bail!("{shown} exists and is not empty; choose a new directory for the sandbox");
        }
    }
    fs::create_dir_all(dir).with_context(|| format!("could not create {shown}"))?;
    let canonical = dir.canonicalize()?;
    // The servers (as `mysql` when orch runs as root) must be able to enter DIR; its
    // secrets/ subdirectory stays private.
    fs::set_permissions(&canonical, fs::Permissions::from_mode(0o755))?;
    if let Some(user) = run_as
        && let Err(err) = server::check_reachable(&canonical, user)
    {
        if !existed {
            let _ = fs::remove_dir(&canonical);
        }
        return Err(err);
    }
    Ok(canonical)
}

/// Datadir from the template, config file, empty error log; owned by `mysql` under root.
fn prepare_node(
    server: &Server,
    template: &Path,
    l: &InstanceLayout,
    run_as: Option<&RunAs>,
    tls_dir: Option<&Path>,
) -> Result<()> {
    fs::create_dir(&l.node_dir)?;
    fs::create_dir(l.tmp_dir())?;
    server::make_datadir(server, template, &l.datadir())
        .with_context(|| format!("could not create the datadir of node{}", l.index))?;
    let mut cnf = config::my_cnf(server.flavor, l);
    if let Some(tls_dir) = tls_dir {
        cnf.push_str(&tls::my_cnf_lines(tls_dir));
    }
    fs::write(l.config(), cnf)?;
    fs::write(l.error_log(), "")?;
    if let Some(user) = run_as {
        server::chown_tree(&l.node_dir, user)?;
    }
    Ok(())
}

/// Kills servers `up` itself started and still holds as children: an unreaped child's pid
/// cannot have been reused, so no /proc check is needed here.
fn abort(children: &mut [Child]) {
    for child in children.iter_mut() {
        let _ = child.kill();
    }
    for child in children.iter_mut() {
        let _ = child.wait();
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
}

/// Waits for every server, creates the accounts, starts replication in the shape and waits
/// until every replica's threads run.
async fn set_up(
    server: &Server,
    shape: Shape,
    layouts: &[InstanceLayout],
    children: &mut [Child],
    orch_password: &str,
    repl_password: &str,
    tls: bool,
) -> Result<()> {
    let flavor = server.flavor;
    let mut conns = Vec::new();
    for (l, child) in layouts.iter().zip(children.iter_mut()) {
        let conn = wait_ready(&l.socket(), child, READY_TIMEOUT)
            .await
            .map_err(|e| node_failure(e, l.index, &l.error_log(), "did not start"))?;
        conns.push(conn);
    }
    // Each statement waits on a disk flush (the grant tables are Aria); run every
    // instance's batch at once. All accounts exist before any replica connects, or its
    // first attempt fails and retries a second later.
    let mut users = config::users_sql(flavor, orch_password, repl_password);
    if tls {
        // Before the final `SET sql_log_bin = 1`: no GTID for this either.
        let at = users.len() - 1;
        users.insert(
            at,
            format!(
                "ALTER USER 'orch'@{} REQUIRE SSL",
                config::sql_str(config::ACCOUNT_HOST)
            ),
        );
    }
    let batches = layouts.iter().map(|_| users.clone()).collect();
    let mut conns = run_everywhere(
        conns,
        batches,
        layouts,
        "could not create the sandbox users",
    )
    .await?;
    let batches = layouts
        .iter()
        .map(|l| match config::source_of(shape, l.index) {
            Some(source) => {
                config::replication_sql(flavor, &layouts[usize::from(source) - 1], repl_password)
            }
            None => Vec::new(),
        })
        .collect();
    conns = run_everywhere(conns, batches, layouts, "could not start replication").await?;
    let result = wait_replicating(flavor, layouts, &mut conns).await;
    for conn in conns {
        let _ = conn.disconnect().await;
    }
    result
}

/// Runs `batches[i]` on `conns[i]`, all instances concurrently; gives the connections back.
async fn run_everywhere(
    conns: Vec<mysql_async::Conn>,
    batches: Vec<Vec<String>>,
    layouts: &[InstanceLayout],
    what: &str,
) -> Result<Vec<mysql_async::Conn>> {
    let mut set = tokio::task::JoinSet::new();
    for (pos, (mut conn, batch)) in conns.into_iter().zip(batches).enumerate() {
        set.spawn(async move {
            let mut result = Ok(());
            for sql in batch {
                if let Err(err) = conn.query_drop(sql).await {
                    result = Err(err);
                    break;
                }
            }
            (pos, conn, result)
        });
    }
    let mut done = set.join_all().await;
    done.sort_by_key(|(pos, _, _)| *pos);
    let mut conns = Vec::with_capacity(done.len());
    for (pos, conn, result) in done {
        let l = &layouts[pos];
        result.map_err(|e| node_failure(e.into(), l.index, &l.error_log(), what))?;
        conns.push(conn);
    }
    Ok(conns)
}

fn node_failure(err: anyhow::Error, index: u8, log: &Path, what: &str) -> anyhow::Error {
    err.context(format!(
        "node{index} {what}; the last lines of {}:\n{}",
        log.display(),
        process::tail(log, 15)
    ))
}

/// Root over the unix socket: the template's root@localhost has no password.
fn root_opts(socket: &Path) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .socket(Some(socket.to_string_lossy()))
        .user(Some("root"))
        .into()
}

/// Polls the server's socket until it accepts a root login; fails at once if the process
/// exits (a bad config, a busy port), or after `timeout`.
async fn wait_ready(
    socket: &Path,
    child: &mut Child,
    timeout: Duration,
) -> Result<mysql_async::Conn> {
    let deadline = Instant::now() + timeout;
    let opts = root_opts(socket);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the server exited ({status}) before accepting connections");
        }
        let attempt =
            tokio::time::timeout(Duration::from_secs(2), mysql_async::Conn::new(opts.clone()))
                .await;
        let last = match attempt {
            Ok(Ok(conn)) => return Ok(conn),
            Ok(Err(err)) => err.to_string(),
            Err(_) => "connect timed out".to_string(),
        };
        if Instant::now() >= deadline {
            bail!(
                "no connection on {} after {}s (last error: {last})",
                socket.display(),
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every replica reports both replication threads running.
async fn wait_replicating(
    flavor: Flavor,
    layouts: &[InstanceLayout],
    conns: &mut [mysql_async::Conn],
) -> Result<()> {
    let (sql, io_col, sql_col) = config::replica_status_sql(flavor);
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let mut waiting = Vec::new();
        for (l, conn) in layouts.iter().zip(conns.iter_mut()) {
            if !l.is_replica {
                continue;
            }
            let row: Option<mysql_async::Row> = conn.query_first(sql).await?;
            let col = |name: &str| -> String {
                row.as_ref()
                    .and_then(|r| r.get::<Option<String>, _>(name))
                    .flatten()
                    .unwrap_or_default()
            };
            if col(io_col) != "Yes" || col(sql_col) != "Yes" {
                waiting.push((
                    l.index,
                    col(io_col),
                    col(sql_col),
                    col("Last_IO_Error"),
                    col("Last_SQL_Error"),
                    l.error_log(),
                ));
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let (index, io, sqlt, io_err, sql_err, log) = waiting.swap_remove(0);
            return Err(node_failure(
                anyhow!(
                    "IO thread: {io:?}, SQL thread: {sqlt:?}, last errors: {io_err:?} {sql_err:?}"
                ),
                index,
                &log,
                &format!("was not replicating after {}s", READY_TIMEOUT.as_secs()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------
// the state file

fn state_path(dir: &Path) -> PathBuf {
    dir.join("sandbox.json")
}

/// Reads DIR/sandbox.json; a directory without one is not a sandbox, and nothing acts on it.
pub fn load_state(dir: &Path) -> Result<SandboxState> {
    let path = state_path(dir);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} does not hold a sandbox (no sandbox.json); create one with `orch sandbox up {}`",
            dir.display(),
            dir.display()
        ),
        Err(err) => return Err(err).with_context(|| format!("could not read {}", path.display())),
    };
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a sandbox state file", path.display()))
}

/// Written to a temporary file and renamed over the old one, so a reader never sees half.
fn save_state(dir: &Path, state: &SandboxState) -> Result<()> {
    let tmp = dir.join(".sandbox.json.tmp");
    fs::write(&tmp, serde_json::to_string_pretty(state)? + "\n")?;
    fs::rename(&tmp, state_path(dir))
        .with_context(|| format!("could not write {}", state_path(dir).display()))
}

// ---------------------------------------------------------------------------------------
// status

/// An instance's state as `status` shows it.
pub fn instance_state(state: &SandboxState, inst: &InstanceState) -> &'static str {
    let proc = inst.pid.map_or(Proc::Gone, |pid| {
        process::inspect(pid, &state.binary, &inst.config)
    });
    match proc {
        Proc::Running => "running",
        Proc::Frozen => "frozen",
        // A clean shutdown removes the pid file; a crash (SIGKILL) leaves it behind.
        Proc::Gone | Proc::Reused if !inst.pid_file.exists() => "stopped",
        Proc::Gone | Proc::Reused => "killed-or-gone",
    }
}

#[derive(Serialize)]
struct StatusView<'a> {
    dir: String,
    cluster: &'a str,
    flavor: Flavor,
    version: &'a str,
    shape: &'a str,
    port: u16,
    instances: Vec<InstanceView<'a>>,
}

#[derive(Serialize)]
struct InstanceView<'a> {
    instance: u8,
    host: &'a str,
    address: &'a str,
    pid: Option<i32>,
    state: &'static str,
    role: &'a str,
    source: Option<&'a str>,
    socket: String,
}

/// `orch sandbox status`: each instance, its pid, state and role.
pub fn status(dir: &Path, format: Format) -> Result<u8> {
    let state = load_state(dir)?;
    let view = StatusView {
        dir: dir.display().to_string(),
        cluster: &state.cluster,
        flavor: state.flavor,
        version: &state.version,
        shape: &state.shape,
        port: state.port,
        instances: state
            .instances
            .iter()
            .map(|i| InstanceView {
                instance: i.index,
                host: &i.host,
                address: &i.address,
                pid: i.pid,
                state: instance_state(&state, i),
                role: &i.role,
                source: i.source.as_deref(),
                socket: i.socket.display().to_string(),
            })
            .collect(),
    };
    match format {
        Format::Json => out!("{}", serde_json::to_string_pretty(&view)?),
        _ => {
            out!(
                "Sandbox {} (cluster {}): {} {}, {} of {}",
                view.dir,
                view.cluster,
                state.flavor.label(),
                view.version,
                view.shape,
                view.instances.len()
            );
            let mut table = comfy_table::Table::new();
            table.load_style(comfy_table::presets::NOTHING);
            table.set_header([
                "instance", "host", "address", "pid", "state", "role", "source",
            ]);
            for i in &view.instances {
                table.add_row([
                    i.instance.to_string(),
                    i.host.to_string(),
                    i.address.to_string(),
                    i.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                    i.state.to_string(),
                    i.role.to_string(),
                    i.source.unwrap_or("-").to_string(),
                ]);
            }
            out!("{table}");
        }
    }
    Ok(0)
}

// ---------------------------------------------------------------------------------------
// kill / stop / start / freeze / thaw

#[derive(Clone, Copy, Debug)]
pub enum Action {
    Kill,
    Stop,
    Start,
    Freeze,
    Thaw,
}

/// `orch sandbox kill/stop/start/freeze/thaw`: one signal or restart of instance `instance`.
pub fn act(dir: &Path, instance: u8, action: Action) -> Result<u8> {
    let mut state = load_state(dir)?;
    let count = state.instances.len();
    let Some(pos) = state.instances.iter().position(|i| i.index == instance) else {
        bail!(
            "{} has instances 1 to {count}; there is no instance {instance}",
            dir.display()
        );
    };
    let inst = state.instances[pos].clone();
    let what = format!("instance {instance} ({}) of {}", inst.host, dir.display());
    let (binary, config) = (state.binary.clone(), inst.config.clone());
    let proc = inst
        .pid
        .map_or(Proc::Gone, |pid| process::inspect(pid, &binary, &config));
    let pid = inst.pid.unwrap_or(0);
    let send = |sig| process::signal(pid, &binary, &config, sig, &what);
    match action {
        Action::Kill => {
            send(libc::SIGKILL)?;
            if !process::wait_gone(pid, &binary, &config, KILL_TIMEOUT) {
                bail!("{what} (pid {pid}) was sent SIGKILL but is still there");
            }
            out!("Killed {what} (pid {pid}).");
        }
        Action::Stop => {
            if proc == Proc::Frozen {
                // A stopped process cannot handle SIGTERM until it runs again.
                send(libc::SIGCONT)?;
            }
            send(libc::SIGTERM)?;
            if !process::wait_gone(pid, &binary, &config, STOP_TIMEOUT) {
                bail!(
                    "{what} (pid {pid}) did not shut down within {}s; see {} or use `orch \
                     sandbox kill {} {instance}`",
                    STOP_TIMEOUT.as_secs(),
                    inst.error_log.display(),
                    dir.display()
                );
            }
            out!("Stopped {what}.");
        }
        Action::Freeze => {
            send(libc::SIGSTOP)?;
            wait_for(|| process::inspect(pid, &binary, &config) != Proc::Running);
            out!(
                "Froze {what} (pid {pid}): connections hang until `orch sandbox thaw {} {instance}`.",
                dir.display()
            );
        }
        Action::Thaw => {
            send(libc::SIGCONT)?;
            wait_for(|| process::inspect(pid, &binary, &config) != Proc::Frozen);
            out!("Thawed {what} (pid {pid}).");
        }
        Action::Start => {
            match proc {
                Proc::Running => {
                    out!("{what} is already running (pid {pid}).");
                    return Ok(0);
                }
                Proc::Frozen => bail!(
                    "{what} is frozen, not stopped; run `orch sandbox thaw {} {instance}`",
                    dir.display()
                ),
                Proc::Gone | Proc::Reused => {}
            }
            let mut child =
                process::spawn_server(&binary, &config, state.run_as.as_deref(), &inst.error_log)?;
            let new_pid = child.id() as i32;
            state.instances[pos].pid = Some(new_pid);
            save_state(dir, &state)?;
            let ready = runtime().and_then(|rt| {
                rt.block_on(async {
                    let conn = wait_ready(&inst.socket, &mut child, READY_TIMEOUT).await?;
                    let _ = conn.disconnect().await;
                    Ok(())
                })
            });
            ready.map_err(|e| node_failure(e, instance, &inst.error_log, "did not start"))?;
            // Replication resumes by itself: the replica's connection settings and GTID
            // position are in the datadir (master.info, mysql.gtid_slave_pos).
            out!("Started {what} (pid {new_pid}).");
        }
    }
    Ok(0)
}

/// Signals are delivered asynchronously: wait briefly so the next `status` sees the effect.
fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------
// down

/// `orch sandbox down`: stops every instance the sandbox started and removes DIR.
pub fn down(dir: &Path) -> Result<u8> {
    let state = load_state(dir)?;
    let mut killed = Vec::new();
    for inst in &state.instances {
        let Some(pid) = inst.pid else { continue };
        let what = format!(
            "instance {} ({}) of {}",
            inst.index,
            inst.host,
            dir.display()
        );
        match process::inspect(pid, &state.binary, &inst.config) {
            // SIGKILL also ends a frozen (SIGSTOPped) process.
            Proc::Running | Proc::Frozen => {
                process::signal(pid, &state.binary, &inst.config, libc::SIGKILL, &what)?;
                killed.push((pid, inst));
            }
            Proc::Reused => eprintln!(
                "note: {what} is not running; its old pid {pid} now belongs to `{}`, left alone",
                process::cmdline_text(pid)
            ),
            Proc::Gone => {}
        }
    }
    for (pid, inst) in &killed {
        if !process::wait_gone(*pid, &state.binary, &inst.config, KILL_TIMEOUT) {
            bail!(
                "node{} (pid {pid}) is still running after SIGKILL; {} was not removed",
                inst.index,
                dir.display()
            );
        }
    }
    fs::remove_dir_all(dir).with_context(|| format!("could not remove {}", dir.display()))?;
    out!(
        "Stopped {} server(s) and removed {}.",
        killed.len(),
        dir.display()
    );
    Ok(0)
}
