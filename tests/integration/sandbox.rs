//! `orch sandbox` against real MariaDB servers: every test runs the orch binary on its own
//! sandbox in a temporary directory (the address block is chosen per directory, so tests
//! run in parallel), talks to the servers with mysql_async, and stops them with
//! `orch sandbox down`, which signals recorded pids only.
//!
//! There is no skip when mariadbd is missing: CI installs it, and a sandbox test that
//! silently passes proves nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use orch::sandbox::{MARIADB_ORCH_PRIVILEGES, SandboxState};

/// Some init systems (this project's CI VM among them) never reap orphans, so a killed
/// server would stay a zombie in /proc forever. The test process makes itself the
/// subreaper of everything it starts and reaps orphaned servers, so "gone from /proc"
/// means gone. It only reaps processes named mariadbd/mysqld, never the orch processes
/// `Command::output` waits for.
fn reap_orphaned_servers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes a plain integer.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
        std::thread::spawn(|| {
            let me = std::process::id().to_string();
            loop {
                for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                        continue;
                    };
                    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                        continue;
                    };
                    let server = stat.contains("(mariadbd)") || stat.contains("(mysqld)");
                    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
                        continue;
                    };
                    let mut fields = rest.split(' ');
                    let (state, ppid) = (fields.next(), fields.next());
                    if server && state == Some("Z") && ppid == Some(me.as_str()) {
                        // SAFETY: waitpid on a specific zombie child of ours.
                        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    });
}

/// Runs orch; returns (exit code, stdout, stderr).
pub(crate) fn orch(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(args)
        // One template cache for the whole run: parallel tests race to build it, which
        // is part of what is tested.
        .env(
            "ORCH_SANDBOX_CACHE",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("orch-sandbox-cache"),
        )
        .output()
        .expect("orch runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn orch_ok(args: &[&str]) -> String {
    let (code, out, err) = orch(args);
    assert_eq!(
        code, 0,
        "orch {args:?} failed\nstdout:\n{out}\nstderr:\n{err}"
    );
    out
}

/// A sandbox in a temporary directory; `down` on drop if the test did not.
pub(crate) struct Sandbox {
    _tmp: tempfile::TempDir,
    pub(crate) dir: PathBuf,
    down: bool,
}

impl Sandbox {
    pub(crate) fn up(extra: &[&str]) -> Sandbox {
        reap_orphaned_servers();
        let tmp = tempfile::tempdir().unwrap();
        // Under root the servers run as `mysql`, which must be able to enter the directory.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = tmp.path().join("sb");
        let d = dir.to_str().unwrap();
        let mut args = vec!["sandbox", "up", d];
        args.extend_from_slice(extra);
        let sandbox = Sandbox {
            _tmp: tmp,
            dir: dir.clone(),
            down: false,
        };
        let out = orch_ok(&args);
        assert!(
            out.contains(&format!("orch validate {d}/topology.yaml")),
            "{out}"
        );
        assert!(out.contains(&format!("orch sandbox down {d}")), "{out}");
        sandbox
    }

    pub(crate) fn d(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    pub(crate) fn state(&self) -> SandboxState {
        serde_json::from_str(&std::fs::read_to_string(self.dir.join("sandbox.json")).unwrap())
            .unwrap()
    }

    pub(crate) fn status(&self) -> serde_json::Value {
        serde_json::from_str(&orch_ok(&[
            "sandbox",
            "status",
            self.d(),
            "--format",
            "json",
        ]))
        .unwrap()
    }

    /// The `role` column of every instance, in order.
    pub(crate) fn roles(&self) -> Vec<String> {
        self.status()["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["role"].as_str().unwrap().to_string())
            .collect()
    }

    /// The `state` column of every instance, in order.
    pub(crate) fn states(&self) -> Vec<String> {
        self.status()["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["state"].as_str().unwrap().to_string())
            .collect()
    }

    pub(crate) fn socket(&self, index: usize) -> PathBuf {
        self.dir.join(format!("node{index}/mysqld.sock"))
    }

    pub(crate) fn address(&self, index: usize) -> String {
        self.state().instances[index - 1].address.clone()
    }

    pub(crate) fn pid(&self, index: usize) -> i32 {
        self.state().instances[index - 1].pid.unwrap()
    }

    /// Connection options for `user` over TCP to instance `index`, as an application
    /// connects (not through the socket, so the account's host part is `127.%`).
    pub(crate) fn tcp_opts(&self, index: usize, user: &str, password: &str) -> mysql_async::Opts {
        let address = self.address(index);
        let (ip, port) = address.split_once(':').unwrap();
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(ip.to_string())
            .tcp_port(port.parse().unwrap())
            .prefer_socket(false)
            .user(Some(user))
            .pass(Some(password))
            .into()
    }

    pub(crate) fn root(&self, index: usize, sql: &str) -> Vec<mysql_async::Row> {
        query(root_opts(&self.socket(index)), sql)
            .unwrap_or_else(|e| panic!("node{index}: {sql}: {e}"))
    }

    pub(crate) fn down(mut self) {
        self.down = true;
        let out = orch_ok(&["sandbox", "down", self.d()]);
        assert!(out.contains("removed"), "{out}");
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !self.down {
            let _ = orch(&["sandbox", "down", self.d()]);
        }
    }
}

pub(crate) fn root_opts(socket: &Path) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .socket(Some(socket.to_string_lossy()))
        .user(Some("root"))
        .into()
}

fn orch_opts(sandbox: &Sandbox, index: usize) -> mysql_async::Opts {
    let password = std::fs::read_to_string(sandbox.dir.join("secrets/orch.password")).unwrap();
    let address = sandbox.address(index);
    let (ip, port) = address.split_once(':').unwrap();
    mysql_async::OptsBuilder::default()
        .ip_or_hostname(ip)
        .tcp_port(port.parse().unwrap())
        .user(Some("orch"))
        .pass(Some(password.trim()))
        .prefer_socket(false)
        .into()
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs one statement on a fresh connection.
pub(crate) fn query(
    opts: mysql_async::Opts,
    sql: &str,
) -> Result<Vec<mysql_async::Row>, mysql_async::Error> {
    runtime().block_on(async {
        let mut conn = mysql_async::Conn::new(opts).await?;
        let rows = conn.query(sql).await;
        let _ = conn.disconnect().await;
        rows
    })
}

/// Column `name` (or index) of the first row, as text ("" for NULL or no row).
pub(crate) fn first(rows: &[mysql_async::Row], col: &str) -> String {
    rows.first()
        .and_then(|r| r.get::<Option<String>, _>(col))
        .flatten()
        .unwrap_or_default()
}

fn first_idx(rows: &[mysql_async::Row]) -> String {
    rows.first()
        .and_then(|r| r.get::<Option<String>, _>(0))
        .flatten()
        .unwrap_or_default()
}

pub(crate) fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

fn gone(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn star_replicates_and_instances_crash_freeze_stop_and_restart() {
    let sb = Sandbox::up(&[]);
    let d = sb.d().to_string();

    // Files.
    let topology = std::fs::read_to_string(sb.dir.join("topology.yaml")).unwrap();
    assert!(
        topology
            .starts_with("# Written by `orch sandbox up`: a 3-instance star sandbox (MariaDB 10."),
        "{topology}"
    );
    for (i, source) in [(1, ""), (2, ", source: node1"), (3, ", source: node1")] {
        let line = format!(
            "  node{i}: {{ address: \"{}\", dc: local{source} }}\n",
            sb.address(i)
        );
        assert!(topology.contains(&line), "missing {line:?} in\n{topology}");
    }
    assert!(topology.contains("cluster: sandbox\n"));
    assert!(topology.contains("  password_file: secrets/orch.password\n"));
    for secret in ["orch.password", "repl.password"] {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(sb.dir.join("secrets").join(secret)).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600, "{secret}");
        assert!(meta.len() > 20);
    }
    // One block, one port, a different address per instance.
    let addresses: BTreeSet<String> = (1..=3).map(|i| sb.address(i)).collect();
    assert_eq!(addresses.len(), 3);
    assert!(sb.address(1).starts_with("127.") && sb.address(1).ends_with(".1:13306"));

    // Nobody starts with a GTID of its own; replicas are read-only and replicate by GTID
    // from node1.
    for i in 1..=3 {
        let rows = sb.root(
            i,
            "SELECT @@gtid_binlog_pos AS b, @@read_only AS ro, @@server_id AS id",
        );
        assert_eq!(first(&rows, "b"), "", "node{i} starts with GTIDs");
        assert_eq!(
            first(&rows, "ro"),
            if i == 1 { "0" } else { "1" },
            "node{i} read_only"
        );
        assert_eq!(first(&rows, "id"), i.to_string());
    }
    let node1_ip = sb.address(1).split(':').next().unwrap().to_string();
    for i in 2..=3 {
        let rows = sb.root(i, "SHOW SLAVE STATUS");
        assert_eq!(first(&rows, "Master_Host"), node1_ip, "node{i}");
        assert_eq!(first(&rows, "Slave_IO_Running"), "Yes", "node{i}");
        assert_eq!(first(&rows, "Slave_SQL_Running"), "Yes", "node{i}");
        assert_eq!(first(&rows, "Using_Gtid"), "Slave_Pos", "node{i}");
    }

    // A write on the primary reaches both replicas.
    sb.root(1, "CREATE DATABASE t");
    sb.root(1, "CREATE TABLE t.a (i INT PRIMARY KEY)");
    sb.root(1, "INSERT INTO t.a VALUES (1)");
    let gtid = first_idx(&sb.root(1, "SELECT @@gtid_binlog_pos"));
    assert!(gtid.starts_with("0-1-"), "{gtid}");
    for i in 2..=3 {
        eventually(
            &format!("node{i} to catch up"),
            Duration::from_secs(10),
            || first_idx(&sb.root(i, "SELECT @@gtid_current_pos")) == gtid,
        );
        assert_eq!(first_idx(&sb.root(i, "SELECT COUNT(*) FROM t.a")), "1");
    }

    // A second `up` on the same directory is refused and says what to do.
    let (code, _, err) = orch(&["sandbox", "up", &d]);
    assert_eq!(code, 1);
    assert!(
        err.contains("already holds a sandbox") && err.contains(&format!("orch sandbox down {d}")),
        "{err}"
    );

    // Status: human and JSON views of the same facts.
    let human = orch_ok(&["sandbox", "status", &d]);
    for i in 1..=3 {
        assert!(human.contains(&sb.address(i)), "{human}");
    }
    assert!(
        human.contains("primary") && human.contains("replica"),
        "{human}"
    );
    let status = sb.status();
    assert_eq!(status["flavor"], "mariadb");
    assert_eq!(status["shape"], "star");
    assert_eq!(status["instances"][0]["role"], "primary");
    assert_eq!(status["instances"][0]["source"], serde_json::Value::Null);
    assert_eq!(status["instances"][2]["source"], "node1");
    assert_eq!(status["instances"][1]["pid"], sb.pid(2));
    assert_eq!(sb.states(), ["running", "running", "running"]);

    // freeze / thaw act on instance 2 only.
    let pid2 = sb.pid(2);
    orch_ok(&["sandbox", "freeze", &d, "2"]);
    assert_eq!(proc_state(pid2), Some('T'));
    assert_eq!(sb.states(), ["running", "frozen", "running"]);
    orch_ok(&["sandbox", "thaw", &d, "2"]);
    assert_ne!(proc_state(pid2), Some('T'));
    assert_eq!(sb.states(), ["running", "running", "running"]);

    // kill: a crash of instance 3 only.
    let pid3 = sb.pid(3);
    let out = orch_ok(&["sandbox", "kill", &d, "3"]);
    assert!(out.contains("node3"), "{out}");
    eventually(
        "the killed server to leave /proc",
        Duration::from_secs(5),
        || gone(pid3),
    );
    assert_eq!(sb.states(), ["running", "running", "killed-or-gone"]);
    let (code, _, err) = orch(&["sandbox", "kill", &d, "3"]);
    assert_eq!(code, 1, "killing a dead instance is an error");
    assert!(err.contains("not running"), "{err}");

    // start: back with its config; replication resumes by itself.
    orch_ok(&["sandbox", "start", &d, "3"]);
    let new_pid3 = sb.pid(3);
    assert_ne!(new_pid3, pid3);
    assert_eq!(sb.states(), ["running", "running", "running"]);
    sb.root(1, "INSERT INTO t.a VALUES (2)");
    let gtid = first_idx(&sb.root(1, "SELECT @@gtid_binlog_pos"));
    eventually(
        "node3 to resume replication",
        Duration::from_secs(15),
        || first_idx(&sb.root(3, "SELECT @@gtid_current_pos")) == gtid,
    );
    assert_eq!(
        first_idx(&sb.root(3, "SELECT @@read_only")),
        "1",
        "restarted replica is read-only"
    );

    // stop: a clean shutdown of instance 2, even while frozen.
    orch_ok(&["sandbox", "freeze", &d, "2"]);
    orch_ok(&["sandbox", "stop", &d, "2"]);
    eventually(
        "the stopped server to leave /proc",
        Duration::from_secs(5),
        || gone(pid2),
    );
    assert_eq!(sb.states(), ["running", "stopped", "running"]);
    orch_ok(&["sandbox", "start", &d, "2"]);
    assert_eq!(sb.states(), ["running", "running", "running"]);
    eventually(
        "node2 to resume replication",
        Duration::from_secs(15),
        || first_idx(&sb.root(2, "SELECT @@gtid_current_pos")) == gtid,
    );

    // Bad instance numbers name the range.
    let (code, _, err) = orch(&["sandbox", "kill", &d, "9"]);
    assert_eq!(code, 1);
    assert!(err.contains("instances 1 to 3"), "{err}");

    // down: every server it ever started is gone, and so is DIR.
    let pids: Vec<i32> = (1..=3).map(|i| sb.pid(i)).chain([pid2, pid3]).collect();
    let dir = sb.dir.clone();
    sb.down();
    for pid in pids {
        eventually(
            &format!("pid {pid} to leave /proc"),
            Duration::from_secs(5),
            || gone(pid),
        );
    }
    assert!(!dir.exists());
}

/// (index, expected source index) for every replica.
fn check_sources(sb: &Sandbox, expected: &[(usize, usize)]) {
    let status = sb.status();
    for &(i, source) in expected {
        let ip = sb.address(source).split(':').next().unwrap().to_string();
        let rows = sb.root(i, "SHOW SLAVE STATUS");
        assert_eq!(
            first(&rows, "Master_Host"),
            ip,
            "node{i} should replicate from node{source}"
        );
        assert_eq!(first(&rows, "Slave_IO_Running"), "Yes", "node{i}");
        assert_eq!(first(&rows, "Slave_SQL_Running"), "Yes", "node{i}");
        assert_eq!(
            status["instances"][i - 1]["source"],
            format!("node{source}")
        );
    }
    assert!(
        sb.root(1, "SHOW SLAVE STATUS").is_empty(),
        "node1 is the primary"
    );
}

#[test]
fn chain_comes_up_with_the_right_sources_and_the_orch_user_can_do_its_job() {
    let sb = Sandbox::up(&["-n", "4", "--shape", "chain", "--cluster", "shop"]);
    check_sources(&sb, &[(2, 1), (3, 2), (4, 3)]);
    let topology = std::fs::read_to_string(sb.dir.join("topology.yaml")).unwrap();
    assert!(topology.contains("cluster: shop\n"), "{topology}");
    assert!(topology.contains(", source: node3 }"), "{topology}");
    let roles = sb.roles();
    assert_eq!(
        roles,
        ["primary", "intermediate", "intermediate", "replica"]
    );

    // A write travels the whole chain (log_slave_updates on the intermediates).
    sb.root(1, "CREATE DATABASE chain_test");
    let gtid = first_idx(&sb.root(1, "SELECT @@gtid_binlog_pos"));
    eventually(
        "node4 to catch up through the chain",
        Duration::from_secs(10),
        || first_idx(&sb.root(4, "SELECT @@gtid_current_pos")) == gtid,
    );

    // The orch account holds exactly the documented privileges...
    let grants = sb.root(1, "SHOW GRANTS FOR 'orch'@'127.%'");
    let grant = first_idx(&grants);
    let listed = grant
        .strip_prefix("GRANT ")
        .and_then(|g| g.split(" ON *.*").next())
        .unwrap_or_else(|| panic!("unexpected grant {grant}"));
    let held: BTreeSet<&str> = listed.split(", ").collect();
    let documented: BTreeSet<&str> = MARIADB_ORCH_PRIVILEGES.iter().map(|p| p.name).collect();
    assert_eq!(held, documented);
    assert_eq!(grants.len(), 1, "no other grants");

    // ...and each of them is enough for what orch does, over TCP like orch.
    let orch1 = orch_opts(&sb, 1);
    let orch4 = orch_opts(&sb, 4);
    let run = |opts: &mysql_async::Opts, sql: &str| {
        query(opts.clone(), sql).unwrap_or_else(|e| panic!("orch user: {sql}: {e}"))
    };
    for sql in [
        "SHOW SLAVE STATUS",
        "SHOW ALL SLAVES STATUS",
        "SELECT @@gtid_current_pos, @@gtid_slave_pos",
    ] {
        run(&orch4, sql);
    }
    assert!(!first(&run(&orch1, "SHOW MASTER STATUS"), "File").is_empty());
    assert!(!first(&run(&orch1, "SHOW BINLOG STATUS"), "File").is_empty());
    let hosts = run(&orch1, "SHOW SLAVE HOSTS");
    assert_eq!(
        first(&hosts, "Host"),
        sb.address(2).split(':').next().unwrap(),
        "report_host"
    );
    // PROCESS: other users' threads (node2's binlog dump connection as `repl`) are visible.
    let repl_threads = run(
        &orch1,
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'repl'",
    );
    assert_eq!(first_idx(&repl_threads), "1");
    // READ_ONLY ADMIN: fence and unfence.
    run(&orch4, "SET GLOBAL read_only = OFF");
    run(&orch4, "SET GLOBAL read_only = ON");
    // Repointing and GTID positioning.
    let node3_ip = sb.address(3).split(':').next().unwrap().to_string();
    let slave_pos = first_idx(&run(&orch4, "SELECT @@gtid_slave_pos"));
    run(&orch4, "STOP SLAVE");
    run(
        &orch4,
        &format!("SET GLOBAL gtid_slave_pos = '{slave_pos}'"),
    );
    let repl_password = std::fs::read_to_string(sb.dir.join("secrets/repl.password")).unwrap();
    run(
        &orch4,
        &format!(
            "CHANGE MASTER TO MASTER_HOST='{node3_ip}', MASTER_PORT=13306, MASTER_USER='repl', \
             MASTER_PASSWORD='{}', MASTER_USE_GTID=slave_pos",
            repl_password.trim()
        ),
    );
    run(&orch4, "START SLAVE");
    sb.root(1, "CREATE DATABASE chain_test2");
    let gtid = first_idx(&sb.root(1, "SELECT @@gtid_binlog_pos"));
    let waited = run(&orch4, &format!("SELECT MASTER_GTID_WAIT('{gtid}', 10)"));
    assert_eq!(first_idx(&waited), "0", "MASTER_GTID_WAIT reached {gtid}");
    // CONNECTION ADMIN: kill another user's session (fencing).
    runtime().block_on(async {
        let mut victim = mysql_async::Conn::new(root_opts(&sb.socket(4)))
            .await
            .unwrap();
        let id: u64 = victim
            .query_first("SELECT CONNECTION_ID()")
            .await
            .unwrap()
            .unwrap();
        let mut orch = mysql_async::Conn::new(orch4.clone()).await.unwrap();
        orch.query_drop(format!("KILL CONNECTION {id}"))
            .await
            .unwrap();
        assert!(
            victim.query_drop("SELECT 1").await.is_err(),
            "the killed session still works"
        );
        let _ = orch.disconnect().await;
    });
    // RELOAD: RESET SLAVE ALL.
    run(&orch4, "STOP SLAVE");
    run(&orch4, "RESET SLAVE ALL");
    assert!(run(&orch4, "SHOW SLAVE STATUS").is_empty());
    // And nothing more: no data privileges.
    let err = query(orch1.clone(), "CREATE DATABASE not_allowed").unwrap_err();
    assert!(err.to_string().contains("denied"), "{err}");

    sb.down();
}

#[test]
fn tree_comes_up_with_the_right_sources() {
    let sb = Sandbox::up(&["-n", "5", "--shape", "tree"]);
    check_sources(&sb, &[(2, 1), (3, 1), (4, 2), (5, 2)]);
    let roles = sb.roles();
    assert_eq!(
        roles,
        ["primary", "intermediate", "replica", "replica", "replica"]
    );
    sb.down();
}

#[test]
fn refuses_to_signal_a_pid_that_is_not_its_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sb");
    let node = dir.join("node1");
    std::fs::create_dir_all(&node).unwrap();
    let d = dir.to_str().unwrap();

    // A sandbox state whose recorded pid now belongs to another program.
    let mut other = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = other.id() as i32;
    let state = serde_json::json!({
        "format": 1, "cluster": "sandbox", "flavor": "mariadb", "version": "10.11.0",
        "binary": "/usr/sbin/mariadbd", "shape": "star", "port": 13306, "run_as": null,
        "instances": [{
            "index": 1, "host": "node1", "address": "127.0.0.1:13306", "role": "primary",
            "source": null, "socket": node.join("mysqld.sock"), "datadir": node.join("data"),
            "config": node.join("my.cnf"), "error_log": node.join("error.log"),
            "pid_file": node.join("mysqld.pid"), "pid": pid
        }]
    });
    std::fs::write(dir.join("sandbox.json"), state.to_string()).unwrap();
    // The test and the binary agree on the state format.
    let _: SandboxState = serde_json::from_value(state).unwrap();

    for action in ["kill", "stop", "freeze", "thaw"] {
        let (code, _, err) = orch(&["sandbox", action, d, "1"]);
        assert_eq!(code, 1, "{action} must refuse");
        assert!(
            err.contains(&format!("refusing to signal pid {pid}")),
            "{action}: {err}"
        );
        assert!(
            err.contains("reused") && err.contains("sleep 60"),
            "{action}: {err}"
        );
        assert_eq!(
            other.try_wait().unwrap(),
            None,
            "{action} hit a foreign process"
        );
        assert_eq!(
            proc_state(pid).map(|s| s != 'T'),
            Some(true),
            "{action} stopped it"
        );
    }
    let status = orch_ok(&["sandbox", "status", d, "--format", "json"]);
    assert!(!status.contains("\"running\""), "{status}");

    // down removes the sandbox but leaves the foreign process alone.
    let out = orch_ok(&["sandbox", "down", d]);
    assert!(out.contains("Stopped 0 server(s)"), "{out}");
    assert!(!dir.exists());
    assert_eq!(
        other.try_wait().unwrap(),
        None,
        "down hit a foreign process"
    );
    other.kill().unwrap();
    other.wait().unwrap();
}

#[test]
fn refuses_to_touch_directories_that_are_not_sandboxes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("precious");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("data.txt"), "keep me").unwrap();
    let d = dir.to_str().unwrap();

    let (code, _, err) = orch(&["sandbox", "down", d]);
    assert_eq!(code, 1);
    assert!(err.contains("does not hold a sandbox"), "{err}");
    let (code, _, err) = orch(&["sandbox", "up", d]);
    assert_eq!(code, 1);
    assert!(err.contains("not empty"), "{err}");
    let (code, _, err) = orch(&["sandbox", "status", d]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("orch sandbox up {d}")), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("data.txt")).unwrap(),
        "keep me"
    );
}
