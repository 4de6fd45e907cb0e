//! A primary that answers with error packets is alive, on real MariaDB: out of connections
//! (error 1040 for orch's probes and its replicas' IO threads alike) or refusing orch's and
//! the replication account's passwords (error 1045), it is reported by `orch watch` and
//! `orch status` under one code, `primary-rejects-connections`, and never failed over: it
//! stays the only writable server. Each test waits on conditions with deadlines and stops
//! its watcher and servers even when it fails.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::sandbox::{Sandbox, eventually, first, orch, root_opts, runtime};
use crate::watch::{Watch, read_only, topology, write_policy};

/// Connections held open on one server, and one root connection (through the socket,
/// opened before the server ran out) to look at it meanwhile. Closed on drop.
struct Held {
    rt: tokio::runtime::Runtime,
    monitor: Option<mysql_async::Conn>,
    conns: Vec<mysql_async::Conn>,
}

impl Held {
    fn new(sb: &Sandbox, index: usize) -> Held {
        let rt = runtime();
        let monitor = rt
            .block_on(mysql_async::Conn::new(root_opts(&sb.socket(index))))
            .unwrap();
        Held {
            rt,
            monitor: Some(monitor),
            conns: Vec::new(),
        }
    }

    fn query(&mut self, sql: &str) -> Vec<mysql_async::Row> {
        let conn = self.monitor.as_mut().unwrap();
        self.rt
            .block_on(conn.query(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Opens connections with `opts` until the server refuses one; the error number.
    fn fill(&mut self, opts: mysql_async::Opts) -> u16 {
        for _ in 0..1000 {
            match self.rt.block_on(mysql_async::Conn::new(opts.clone())) {
                Ok(conn) => self.conns.push(conn),
                Err(mysql_async::Error::Server(e)) => return e.code,
                Err(e) => panic!("connecting: {e}"),
            }
        }
        panic!("the server never refused a connection");
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let conns: Vec<_> = self.conns.drain(..).chain(self.monitor.take()).collect();
        self.rt.block_on(async {
            for c in conns {
                let _ = c.disconnect().await;
            }
        });
    }
}

fn orch_password(sb: &Sandbox) -> String {
    std::fs::read_to_string(sb.dir.join("secrets/orch.password"))
        .unwrap()
        .trim()
        .to_string()
}

/// The codes `orch status` reports for `host`.
fn status_codes(file: &str, state: &str, host: &str) -> (i32, Vec<String>, String) {
    let (code, out, err) = orch(&["status", file, "--state", state, "--format", "json"]);
    let json: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    let codes = json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["host"] == host)
        .map(|p| p["code"].as_str().unwrap().to_string())
        .collect();
    (code, codes, out)
}

/// For three grace periods (2 s each), node1 stays writable, nodes 2 and 3 read-only, and
/// the watcher neither judges node1 dead nor fails over. A negative can only be watched
/// for a while: this is the window in which today's failover would have happened.
fn never_failed_over(watch: &Watch, writable: impl Fn() -> String, sb: &Sandbox) {
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let log = watch.log();
        assert!(
            !log.contains("dead-primary") && !log.contains("recovering"),
            "node1 was judged dead:\n{log}"
        );
        assert_eq!(writable(), "0", "node1 was fenced:\n{log}");
        std::thread::sleep(Duration::from_millis(200));
    }
    for i in [2, 3] {
        assert_eq!(
            read_only(sb, i),
            "1",
            "node{i} was promoted:\n{}",
            watch.log()
        );
    }
}

/// node1 out of connections (`max_connections` filled by an unprivileged account, its one
/// extra connection for administrators taken too), its replicas' IO threads reconnecting
/// and answered error 1040, and a freshly started `orch watch` answered 1040 as well: the
/// watcher logs `primary-rejects-connections node1`, never fails over (node1 stays the
/// only writable server through three grace periods), and `orch status` reports the same
/// code.
#[test]
fn a_primary_out_of_connections_is_reported_and_never_failed_over() {
    let sb = Sandbox::up(&["-n", "3"]);
    let policy = write_policy(&sb, "");
    let file = topology(&sb, 3, &policy);
    let state = sb.dir.join("state").to_str().unwrap().to_string();
    sb.root(
        1,
        "CREATE USER filler@'127.%' IDENTIFIED BY 'filler-password'",
    );
    // The replicas' dump threads hold connections on node1; with their IO threads
    // stopped, they reconnect (and are refused) once node1 is full.
    for i in [2, 3] {
        sb.root(i, "STOP SLAVE IO_THREAD");
    }
    let mut held = Held::new(&sb, 1);
    eventually("node1's dump threads gone", Duration::from_secs(10), || {
        first(
            &held.query(
                "SELECT COUNT(*) AS c FROM information_schema.PROCESSLIST \
                 WHERE COMMAND LIKE 'Binlog Dump%'",
            ),
            "c",
        ) == "0"
    });
    held.query("SET GLOBAL max_connections = 10");
    assert_eq!(held.fill(sb.tcp_opts(1, "filler", "filler-password")), 1040);
    // MariaDB admits one connection beyond max_connections for accounts with CONNECTION
    // ADMIN (orch has it): taken here, so that every new connection is refused.
    assert_eq!(held.fill(sb.tcp_opts(1, "orch", &orch_password(&sb))), 1040);
    for i in [2, 3] {
        sb.root(i, "START SLAVE IO_THREAD");
    }
    for i in [2, 3] {
        eventually(
            &format!("node{i}'s IO thread refused with 1040"),
            Duration::from_secs(10),
            || first(&sb.root(i, "SHOW SLAVE STATUS"), "Last_IO_Errno") == "1040",
        );
    }

    let watch = Watch::start(&file, &state);
    watch.wait_for("primary-rejects-connections node1", 10);
    let log = watch.log();
    assert!(log.contains("Too many connections"), "{log}");
    let monitor = std::cell::RefCell::new(held);
    never_failed_over(
        &watch,
        || first(&monitor.borrow_mut().query("SELECT @@read_only AS r"), "r"),
        &sb,
    );
    let (code, codes, out) = status_codes(&file, &state, "node1");
    assert_eq!(code, 2, "{out}");
    assert!(
        codes.contains(&"primary-rejects-connections".to_string())
            && !codes.iter().any(|c| c.contains("dead")),
        "{out}"
    );
    assert_eq!(watch.stop(), 0);
    drop(monitor);
    sb.down();
}

/// orch's and the replication account's passwords changed on node1 only (not replicated),
/// orch's sessions there killed and the replicas' IO threads restarted, under a running
/// `orch watch`: every new connection to node1 is answered error 1045. The watcher logs
/// `primary-rejects-connections node1` within a few polls and never fails over; `orch
/// status` reports the same code.
#[test]
fn a_primary_refusing_orchs_password_is_reported_and_never_failed_over() {
    let sb = Sandbox::up(&["-n", "3"]);
    let policy = write_policy(&sb, "");
    let file = topology(&sb, 3, &policy);
    let state = sb.dir.join("state").to_str().unwrap().to_string();
    let watch = Watch::start(&file, &state);
    sb.root(
        1,
        "SET SESSION sql_log_bin = 0; \
         ALTER USER orch@'127.%' IDENTIFIED BY 'not-the-password'; \
         ALTER USER repl@'127.%' IDENTIFIED BY 'not-the-password'",
    );
    // The connections orch holds stay logged in; the watcher must meet the new password.
    for row in sb.root(
        1,
        "SELECT ID AS id FROM information_schema.PROCESSLIST WHERE USER = 'orch'",
    ) {
        let id: u64 = row.get("id").unwrap();
        let _ = crate::sandbox::query(root_opts(&sb.socket(1)), &format!("KILL {id}"));
    }
    for i in [2, 3] {
        sb.root(i, "STOP SLAVE IO_THREAD; START SLAVE IO_THREAD");
    }
    watch.wait_for("primary-rejects-connections node1", 10);
    let log = watch.log();
    assert!(log.contains("Access denied"), "{log}");
    never_failed_over(&watch, || read_only(&sb, 1), &sb);
    let (code, codes, out) = status_codes(&file, &state, "node1");
    assert_eq!(code, 2, "{out}");
    assert!(
        codes.contains(&"primary-rejects-connections".to_string())
            && !codes.iter().any(|c| c.contains("dead")),
        "{out}"
    );
    assert_eq!(watch.stop(), 0);
    sb.down();
}

/// node1 with an administration port (MariaDB `extra_port`), watched while it answers:
/// orch learns the port. Then (the watcher paused meanwhile) orch's sessions on node1 are
/// killed and node1 runs out of connections, the extra one for administrators included.
/// The watcher, resumed, gets in through the extra port: it observes node1 (writable,
/// the primary), reports `primary-rejects-connections node1` with the main port's
/// refusal, and never fails over.
#[test]
#[ignore = "flaky: right after the watcher resumes, orch's connection to the full main port \
            sometimes ends in 'connection closed' (not error 1040) and one poll judges node1 \
            dead before the extra port is tried; see the wt-c report"]
fn a_primary_out_of_connections_is_observed_through_its_extra_port() {
    let sb = Sandbox::up(&["-n", "3"]);
    let policy = write_policy(&sb, "");
    let file = topology(&sb, 3, &policy);
    let state = sb.dir.join("state").to_str().unwrap().to_string();
    let address = sb.address(1);
    let (ip, port) = address.split_once(':').unwrap();
    let extra: u16 = port.parse::<u16>().unwrap() + 1;
    // Every sandbox instance has its own loopback IP, so the next port is free there.
    let cnf = sb.dir.join("node1/my.cnf");
    let mut text = std::fs::read_to_string(&cnf).unwrap();
    text.push_str(&format!(
        "extra_port = {extra}\nextra_max_connections = 3\n"
    ));
    std::fs::write(&cnf, text).unwrap();
    crate::sandbox::orch_ok(&["sandbox", "stop", sb.d(), "1"]);
    crate::sandbox::orch_ok(&["sandbox", "start", sb.d(), "1"]);
    assert_eq!(
        first(&sb.root(1, "SELECT @@extra_port AS p"), "p"),
        extra.to_string()
    );
    sb.root(
        1,
        "CREATE USER filler@'127.%' IDENTIFIED BY 'filler-password'",
    );
    let orch_sessions = || {
        sb.root(
            1,
            "SELECT ID AS id FROM information_schema.PROCESSLIST WHERE USER = 'orch'",
        )
        .iter()
        .map(|r| r.get::<u64, _>("id").unwrap())
        .collect::<Vec<_>>()
    };
    let watch = Watch::start(&file, &state);
    // Its held connection and its kept one: it has observed node1.
    eventually(
        "the watcher connected to node1",
        Duration::from_secs(10),
        || orch_sessions().len() >= 2,
    );
    watch.signal(libc::SIGSTOP);
    for i in [2, 3] {
        sb.root(i, "STOP SLAVE IO_THREAD");
    }
    for id in orch_sessions() {
        let _ = crate::sandbox::query(root_opts(&sb.socket(1)), &format!("KILL {id}"));
    }
    let mut held = Held::new(&sb, 1);
    eventually(
        "node1's dump threads and orch's sessions gone",
        Duration::from_secs(10),
        || {
            first(
                &held.query(
                    "SELECT COUNT(*) AS c FROM information_schema.PROCESSLIST \
                     WHERE COMMAND LIKE 'Binlog Dump%' OR USER = 'orch'",
                ),
                "c",
            ) == "0"
        },
    );
    held.query("SET GLOBAL max_connections = 10");
    assert_eq!(held.fill(sb.tcp_opts(1, "filler", "filler-password")), 1040);
    assert_eq!(held.fill(sb.tcp_opts(1, "orch", &orch_password(&sb))), 1040);
    for i in [2, 3] {
        sb.root(i, "START SLAVE IO_THREAD");
    }
    for i in [2, 3] {
        eventually(
            &format!("node{i}'s IO thread refused with 1040"),
            Duration::from_secs(10),
            || first(&sb.root(i, "SHOW SLAVE STATUS"), "Last_IO_Errno") == "1040",
        );
    }
    watch.signal(libc::SIGCONT);
    watch.wait_for("primary-rejects-connections node1", 10);
    let log = watch.log();
    assert!(
        log.contains("through its administration port"),
        "node1 was not observed through {ip}:{extra}:\n{log}"
    );
    let monitor = std::cell::RefCell::new(held);
    never_failed_over(
        &watch,
        || first(&monitor.borrow_mut().query("SELECT @@read_only AS r"), "r"),
        &sb,
    );
    assert_eq!(watch.stop(), 0);
    drop(monitor);
    sb.down();
}
