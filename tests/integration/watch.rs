//! `orch watch` and `orch failover` on real MariaDB, in real time: a primary killed under
//! a write load is replaced and nothing acknowledged is lost; a primary frozen for less
//! than the grace period is left alone, one frozen for longer is replaced and fenced when
//! it thaws; `automatic: false` and anti-flap hold; a dead intermediate source's replicas
//! move up; `orch failover` refuses a live primary and replaces a dead one. Each test
//! waits for conditions with deadlines and stops its watcher and servers even when it
//! fails.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::apply::{Writers, everywhere, has_every_gtid_of, writer};
use crate::plan::write_topology;
use crate::sandbox::{Sandbox, eventually, first, orch, orch_ok};

/// A policy that polls every 200 ms, with a 2 s grace period.
pub(crate) fn write_policy(sb: &Sandbox, extra: &str) -> String {
    let path = sb.dir.join("fast.yaml");
    std::fs::write(
        &path,
        format!("failover:\n  detect:\n    poll_interval: 200ms\n    grace: 2s\n{extra}"),
    )
    .unwrap();
    "fast.yaml".into()
}

/// The sandbox's star as a topology file using `policy`.
pub(crate) fn topology(sb: &Sandbox, n: usize, policy: &str) -> String {
    let sources: Vec<Option<usize>> = (1..=n).map(|i| (i > 1).then_some(1)).collect();
    let file = write_topology(sb, "watched.yaml", &sources);
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("policy: safe", &format!("policy: {policy}"));
    std::fs::write(&file, text).unwrap();
    file
}

/// `orch watch` in the background, its stderr collected; stopped (SIGTERM) on drop.
pub(crate) struct Watch {
    child: Child,
    pub(crate) log: Arc<Mutex<String>>,
}

impl Watch {
    pub(crate) fn start(file: &str, state: &str) -> Watch {
        Watch::start_with(file, state, &[])
    }

    /// With more arguments (`--listen ...`).
    pub(crate) fn start_with(file: &str, state: &str, extra: &[&str]) -> Watch {
        let mut child = Command::new(env!("CARGO_BIN_EXE_orch"))
            .args(["watch", file, "--state", state])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = crate::apply_faults::collect(child.stderr.take().unwrap());
        let w = Watch { child, log };
        eventually("watch started", Duration::from_secs(10), || {
            w.log().contains("watching")
        });
        w
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`; panics with the log when it does not.
    pub(crate) fn wait_for(&self, needle: &str, secs: u64) {
        self.wait_for_any(&[needle], secs);
    }

    /// Waits until the log contains one of `needles`; panics with the log when none.
    pub(crate) fn wait_for_any(&self, needles: &[&str], secs: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while !needles.iter().any(|n| self.log().contains(n)) {
            assert!(
                std::time::Instant::now() < deadline,
                "none of {needles:?} within {secs}s in the watch log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A watcher that is not the leader saw the primary die and did not act, or (when the
    /// leader was quicker than its detection) already follows the primary it promoted.
    pub(crate) fn refrained_or_followed(&self, secs: u64) {
        self.wait_for_any(
            &[
                "not acting: this watcher is not the leader",
                "the primary is now",
            ],
            secs,
        );
    }

    /// Sends `signal` to the watcher (SIGSTOP freezes it, SIGCONT thaws it).
    pub(crate) fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child, still running (stopped children included).
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// SIGTERM, then the exit code.
    pub(crate) fn stop(mut self) -> i32 {
        // SAFETY: kill(2) on our own running child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap().code().unwrap_or(-1)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(crate) fn read_only(sb: &Sandbox, i: usize) -> String {
    first(&sb.root(i, "SELECT @@read_only AS r"), "r")
}

pub(crate) fn source_ip(sb: &Sandbox, i: usize) -> String {
    first(&sb.root(i, "SHOW SLAVE STATUS"), "Master_Host")
}

pub(crate) fn ip(sb: &Sandbox, i: usize) -> String {
    sb.address(i).split(':').next().unwrap().to_string()
}

pub(crate) fn history(state: &str) -> serde_json::Value {
    let (code, out, err) = orch(&["history", "--state", state, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn app_account(sb: &Sandbox) {
    for sql in [
        "CREATE DATABASE app",
        "CREATE TABLE app.t (id BIGINT PRIMARY KEY)",
        "CREATE USER app@'127.%' IDENTIFIED BY 'app-password'",
        "GRANT SELECT, INSERT ON app.* TO app@'127.%'",
    ] {
        sb.root(1, sql);
    }
}

/// kill -9 of the primary under a write load: watch promotes a replica, the other follows
/// it, every acknowledged write is on the new primary and the replica, exactly one server
/// is writable, the history has the recovery with its detection and decision.
///
/// Semi-synchronous replication (AFTER_SYNC) is on, as it must be for "nothing
/// acknowledged is lost": with asynchronous replication a commit acknowledged in the last
/// moment before the kill may not have reached any replica, and no failover can bring it
/// back. With it, every acknowledged commit is in some replica's relay log, and the
/// recovery (each replica applies its relay log; the most advanced one, or the one that
/// catches up from it, is promoted) keeps it.
#[test]
fn a_killed_primary_is_replaced_and_nothing_acknowledged_is_lost() {
    let (sb, file, state, watch) = semi_sync_watched();
    let acked = kill_primary_under_writes(&sb);
    watch.wait_for("failover done", 20);
    let new = if read_only(&sb, 2) == "0" { 2 } else { 3 };
    let other = 5 - new;
    assert_eq!(read_only(&sb, new), "0", "{}", watch.log());
    assert_eq!(read_only(&sb, other), "1");
    assert_eq!(source_ip(&sb, other), ip(&sb, new));
    assert!(sb.root(new, "SHOW SLAVE STATUS").is_empty());
    // Every acknowledged write survived on both.
    all_acked_on(&sb, &[new, other], &acked);
    // status knows the failover: the file's old primary is drift, not a dead primary.
    let (_, out, _) = orch(&["status", &file, "--state", &state, "--format", "json"]);
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    let codes: Vec<&str> = s["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"failover-drift") && !codes.contains(&"dead-primary"),
        "{out}"
    );
    // The new primary was a semi-sync replica, not a source: orch says so (it does not
    // change the setting).
    assert!(codes.contains(&"semi-sync-off-on-primary"), "{out}");
    // The new primary takes writes that reach the replica.
    sb.root(new, "INSERT INTO app.t VALUES (999999999)");
    everywhere_of(&sb, &[new, other], 999_999_999);
    // The old primary restarts with read_only=0 in its configuration: fenced at once.
    orch_ok(&["sandbox", "start", sb.d(), "1"]);
    eventually(
        "the restarted former primary is fenced",
        Duration::from_secs(10),
        || {
            crate::sandbox::query(
                crate::sandbox::root_opts(&sb.socket(1)),
                "SELECT @@read_only AS r",
            )
            .is_ok_and(|r| first(&r, "r") == "1")
        },
    );
    assert_eq!(read_only(&sb, new), "0");
    let h = history(&state);
    // The oldest run: the failover (the fence of the restarted node1 came after it).
    let run = h["runs"].as_array().unwrap().last().unwrap();
    assert_eq!(run["kind"], "recovery", "{h}");
    assert_eq!(run["outcome"], "succeeded", "{h}");
    let id = run["id"].to_string();
    let (_, detail, _) = orch(&["history", &id, "--state", &state]);
    assert!(
        detail.contains("detection: dead-primary node1 (certain)")
            && detail.contains("confirmed by a second probe")
            && detail.contains("candidate node2")
            && detail.contains("candidate node3"),
        "{detail}"
    );
    assert_eq!(watch.stop(), 0);
    sb.down();
}

/// A 3-node sandbox replicating semi-synchronously ([`semi_sync`]) under `orch watch`: the
/// sandbox, the topology file, the state directory and the watch.
fn semi_sync_watched() -> (Sandbox, String, String, Watch) {
    let sb = Sandbox::up(&["-n", "3"]);
    semi_sync(&sb);
    let policy = write_policy(&sb, "");
    let file = topology(&sb, 3, &policy);
    let state = sb.dir.join("state").to_str().unwrap().to_string();
    let watch = Watch::start(&file, &state);
    (sb, file, state, watch)
}

/// The app writing to node1 (one connection, each insert acknowledged before the next;
/// it stops at its first error); returns once it has written.
pub(crate) fn app_writing(sb: &Sandbox) -> std::thread::JoinHandle<(Vec<u64>, Vec<String>)> {
    let w = writer(
        sb.tcp_opts(1, "app", "app-password"),
        1,
        true,
        Arc::new(AtomicBool::new(false)),
    );
    eventually("the writer is writing", Duration::from_secs(10), || {
        first(&sb.root(1, "SELECT COUNT(*) AS c FROM app.t"), "c") != "0"
    });
    w
}

/// The `app` account (table `app.t`), and node1 replicating semi-synchronously (AFTER_SYNC)
/// to nodes 2 and 3: every commit acknowledged to a client is in some replica's relay log.
pub(crate) fn semi_sync(sb: &Sandbox) {
    app_account(sb);
    sb.root(
        1,
        "SET GLOBAL rpl_semi_sync_master_wait_point = 'AFTER_SYNC'; \
         SET GLOBAL rpl_semi_sync_master_timeout = 30000; \
         SET GLOBAL rpl_semi_sync_master_enabled = ON",
    );
    for i in [2, 3] {
        sb.root(
            i,
            "SET GLOBAL rpl_semi_sync_slave_enabled = ON; STOP SLAVE IO_THREAD; START SLAVE IO_THREAD",
        );
    }
    eventually("semi-sync replicas", Duration::from_secs(10), || {
        first(
            &sb.root(1, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_clients'"),
            "Value",
        ) == "2"
    });
}

/// The app writes to node1 (one connection, each insert acknowledged before the next)
/// until node1 is killed (kill -9) under it: the ids acknowledged.
pub(crate) fn kill_primary_under_writes(sb: &Sandbox) -> Vec<u64> {
    let w = app_writing(sb);
    orch_ok(&["sandbox", "kill", sb.d(), "1"]);
    let (acked, _) = w.join().unwrap();
    acked
}

/// Every id of `acked` is on each of `nodes` (eventually).
pub(crate) fn all_acked_on(sb: &Sandbox, nodes: &[usize], acked: &[u64]) {
    let list = acked
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",");
    for &i in nodes {
        eventually("every acknowledged write", Duration::from_secs(10), || {
            first(
                &sb.root(
                    i,
                    &format!("SELECT COUNT(*) AS c FROM app.t WHERE id IN ({list})"),
                ),
                "c",
            ) == acked.len().to_string()
        });
    }
}

fn everywhere_of(sb: &Sandbox, nodes: &[usize], id: u64) {
    for &i in nodes {
        eventually(
            &format!("node{i} has {id}"),
            Duration::from_secs(10),
            || {
                first(
                    &sb.root(
                        i,
                        &format!("SELECT COUNT(*) AS c FROM app.t WHERE id = {id}"),
                    ),
                    "c",
                ) == "1"
            },
        );
    }
}

/// A primary frozen (SIGSTOP) for less than the grace period: no failover. Frozen for
/// longer: failover (ambiguous evidence, after the grace), and when it thaws it is fenced
/// at once, never writable beside the new primary.
#[test]
fn a_frozen_primary_waits_for_the_grace_then_is_replaced_and_fenced_on_thaw() {
    let sb = Sandbox::up(&["-n", "3"]);
    app_account(&sb);
    // Replicas notice a silent source after slave_net_timeout (4 s in the sandbox): the
    // grace counts from then.
    let policy = write_policy(&sb, "");
    let file = topology(&sb, 3, &policy);
    let state = sb.dir.join("state").to_str().unwrap().to_string();
    let watch = Watch::start(&file, &state);

    // Short: frozen, then thawed as soon as watch notices (before the replicas give up).
    orch_ok(&["sandbox", "freeze", sb.d(), "1"]);
    watch.wait_for("unreachable-primary node1", 10);
    orch_ok(&["sandbox", "thaw", sb.d(), "1"]);
    assert!(!watch.log().contains("recovering"), "{}", watch.log());

    // Long: the replicas lose it; after the grace, a failover.
    orch_ok(&["sandbox", "freeze", sb.d(), "1"]);
    watch.wait_for("failover done", 30);
    let log = watch.log();
    assert!(log.contains("dead-primary node1 (ambiguous)"), "{log}");
    let h = history(&state);
    let id = h["runs"][0]["id"].to_string();
    let (_, detail, _) = orch(&["history", &id, "--state", &state]);
    assert!(detail.contains("persisted for"), "{detail}");
    orch_ok(&["sandbox", "thaw", sb.d(), "1"]);
    eventually(
        "the former primary is fenced",
        Duration::from_secs(10),
        || read_only(&sb, 1) == "1",
    );
    let writable: Vec<usize> = (1..=3).filter(|&i| read_only(&sb, i) == "0").collect();
    assert_eq!(writable.len(), 1, "{writable:?}");
    assert_ne!(writable[0], 1);
    drop(watch);
    sb.down();
}

/// A primary frozen under a semi-synchronous write load is replaced; when it thaws, the
/// insert it was holding waits for an acknowledgement its former replicas will never send
/// (they moved away), and after `rpl_semi_sync_master_timeout` it would be acknowledged
/// to the application while the new primary never had it. The fence's `read_only` is held
/// back by that commit, so it kills the client sessions: the insert is never
/// acknowledged, and every write that was is on the new primary.
#[test]
fn a_thawed_former_primary_acknowledges_no_write_the_new_primary_lacks() {
    let (sb, _, _, watch) = semi_sync_watched();
    let w = app_writing(&sb);
    orch_ok(&["sandbox", "freeze", sb.d(), "1"]);
    watch.wait_for("failover done", 30);
    let new = if read_only(&sb, 2) == "0" { 2 } else { 3 };
    orch_ok(&["sandbox", "thaw", sb.d(), "1"]);
    // Past the 30 s semi-sync timeout if need be (then the held insert was acknowledged
    // and the check below fails).
    eventually(
        "the writer's insert failed",
        Duration::from_secs(45),
        || w.is_finished(),
    );
    let (acked, errors) = w.join().unwrap();
    all_acked_on(&sb, &[new, 5 - new], &acked);
    assert_eq!(read_only(&sb, 1), "1", "{}", watch.log());
    // Killed by the fence (not refused by read_only once acknowledged).
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("connection closed"), "{errors:?}");
    drop(watch);
    sb.down();
}

/// A former primary restarted writable (read_only=0 in its configuration) takes writes
/// before watch sees it (watch is paused meanwhile), with the same sequence numbers as the
/// new primary's own writes. Once watch looks again it fences it and names every
/// transaction it took that the new primary lacks: its stream's whole range from
/// `gtid_binlog_state`, not only the last GTID `gtid_current_pos` keeps, in the log and in
/// the history.
#[test]
fn a_returning_writable_primary_s_extra_transactions_are_named_in_full() {
    let sb = Sandbox::up(&["-n", "3"]);
    app_account(&sb);
    let policy = write_policy(&sb, "");
    let file = topology(&sb, 3, &policy);
    let state = sb.dir.join("state").to_str().unwrap().to_string();
    let watch = Watch::start(&file, &state);
    orch_ok(&["sandbox", "kill", sb.d(), "1"]);
    watch.wait_for("failover done", 20);
    let new = if read_only(&sb, 2) == "0" { 2 } else { 3 };
    for id in 0..30 {
        sb.root(
            new,
            &format!("INSERT INTO app.t VALUES ({})", 1_000_000 + id),
        );
    }
    watch.signal(libc::SIGSTOP);
    orch_ok(&["sandbox", "start", sb.d(), "1"]);
    assert_eq!(read_only(&sb, 1), "0", "node1 comes back writable");
    let last = first(&sb.root(1, "SELECT @@gtid_binlog_pos AS p"), "p");
    let seq: u64 = last.rsplit('-').next().unwrap().parse().unwrap();
    for id in 0..20 {
        sb.root(1, &format!("INSERT INTO app.t VALUES ({id})"));
    }
    watch.signal(libc::SIGCONT);
    eventually(
        "the returning former primary is fenced",
        Duration::from_secs(15),
        || read_only(&sb, 1) == "1",
    );
    // node1's 20 writes: 0-1-(seq+1) to 0-1-(seq+20); the new primary has node1's stream
    // up to seq (and its own 30 writes further on in the domain, which hid them all from
    // a comparison of positions).
    let range = format!("0-1-{}..{}", seq + 1, seq + 20);
    let named = format!("node{new} lacks (reported, never replicated): {range}");
    watch.wait_for(&named, 10);
    let log = watch.log();
    assert!(
        log.contains("two-writable-primaries node1") == log.contains(&format!("lacks: {range}")),
        "the finding, when logged, names them too:\n{log}"
    );
    let h = history(&state);
    // The newest run: the fence (one step, read_only and the writers killed).
    let fence = &h["runs"][0];
    assert_eq!(
        (fence["kind"].as_str(), fence["summary"].as_str()),
        (Some("recovery"), Some("1 step applied")),
        "{h}"
    );
    let id = fence["id"].to_string();
    let (_, detail, _) = orch(&["history", &id, "--state", &state]);
    assert!(detail.contains(&named), "{detail}");
    assert_eq!(watch.stop(), 0);
    sb.down();
}

/// `automatic: false`: a dead primary is detected and recorded, nothing is changed; then
/// `orch failover` (a person) replaces it; a second death within anti-flap is blocked.
#[test]
fn manual_policy_records_and_orch_failover_acts_then_anti_flap_holds() {
    let sb = Sandbox::up(&["-n", "3"]);
    let policy = write_policy(&sb, "  automatic: false\n");
    let file = topology(&sb, 3, &policy);
    let state = sb.dir.join("state").to_str().unwrap().to_string();

    // A live primary: orch failover refuses and changes nothing.
    let (code, _, err) = orch(&["failover", &file, "--state", &state]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("answers") && err.contains("switchover"),
        "{err}"
    );
    assert_eq!(read_only(&sb, 1), "0");

    let watch = Watch::start(&file, &state);
    orch_ok(&["sandbox", "kill", sb.d(), "1"]);
    watch.wait_for("failover.automatic is false", 20);
    assert_eq!(read_only(&sb, 2), "1");
    assert_eq!(read_only(&sb, 3), "1");
    assert_eq!(history(&state)["runs"][0]["outcome"], "refused");
    watch.stop();

    // A person fails over, to node3.
    let (code, out, err) = orch(&["failover", &file, "--to", "node3", "--state", &state]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("promote node3"), "{out}");
    assert_eq!(read_only(&sb, 3), "0");
    assert_eq!(source_ip(&sb, 2), ip(&sb, 3));

    // With automatic failover on, node3 dying within anti_flap is blocked.
    let auto = write_policy(&sb, "");
    std::fs::write(
        sb.dir.join("fast.yaml"),
        std::fs::read_to_string(sb.dir.join(&auto)).unwrap(),
    )
    .unwrap();
    let watch = Watch::start(&file, &state);
    orch_ok(&["sandbox", "kill", sb.d(), "3"]);
    watch.wait_for("blocked by anti-flap", 20);
    assert_eq!(read_only(&sb, 2), "1", "nothing promoted");
    // Recorded as a refusal, not a failure (the record follows the log line).
    eventually("the block recorded", Duration::from_secs(5), || {
        history(&state)["runs"][0]["outcome"] == "refused"
    });
    watch.stop();
    sb.down();
}

/// A dead intermediate source: its replica moves under the intermediate's own source.
#[test]
fn a_dead_intermediate_source_hands_its_replica_up() {
    let sb = Sandbox::up(&["-n", "3", "--shape", "chain"]);
    let policy = write_policy(&sb, "");
    let file = write_topology(&sb, "chain.yaml", &[None, Some(1), Some(2)]);
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("policy: safe", &format!("policy: {policy}"));
    std::fs::write(&file, text).unwrap();
    let state = sb.dir.join("state").to_str().unwrap().to_string();
    let watch = Watch::start(&file, &state);
    // A replica opened for writes is fenced at once.
    sb.root(3, "SET GLOBAL read_only = OFF");
    eventually("writable replica fenced", Duration::from_secs(10), || {
        read_only(&sb, 3) == "1"
    });
    watch.wait_for("writable-replica node3", 5);
    orch_ok(&["sandbox", "kill", sb.d(), "2"]);
    eventually("node3 moved up", Duration::from_secs(20), || {
        source_ip(&sb, 3) == ip(&sb, 1)
    });
    sb.root(1, "CREATE DATABASE after_recovery");
    eventually(
        "node3 replicates from node1",
        Duration::from_secs(10),
        || {
            !sb.root(3, "SHOW DATABASES LIKE 'after_recovery'")
                .is_empty()
        },
    );
    assert!(
        watch.log().contains("dead-intermediate-source node2"),
        "{}",
        watch.log()
    );
    // A second writable server without a source (someone detached node3 and opened it
    // for writes): fenced at once.
    sb.root(3, "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF");
    eventually("node3 fenced", Duration::from_secs(10), || {
        read_only(&sb, 3) == "1"
    });
    watch.wait_for("two-writable-primaries node3", 5);
    assert_eq!(read_only(&sb, 1), "0", "the primary stays writable");
    assert_eq!(read_only(&sb, 1), "0");
    watch.stop();
    let _ = everywhere;
    sb.down();
}

/// A downtimed primary that dies is not recovered; once the downtime ends, it is.
#[test]
fn a_downtimed_primary_is_left_alone_until_the_downtime_ends() {
    let sb = Sandbox::up(&["-n", "3"]);
    let policy = write_policy(&sb, "");
    let file = topology(&sb, 3, &policy);
    let state = sb.dir.join("state").to_str().unwrap().to_string();
    let out = orch_ok(&[
        "downtime",
        &file,
        "node1",
        "--for",
        "1h",
        "--reason",
        "kernel upgrade",
        "--state",
        &state,
    ]);
    assert!(out.contains("node1 of sandbox: downtimed until"), "{out}");
    let list = orch_ok(&["downtime", &file, "--state", &state]);
    assert!(
        list.contains("node1 until") && list.contains("kernel upgrade"),
        "{list}"
    );
    // The whole cluster, then ended; --end without HOST or --cluster is refused.
    orch_ok(&[
        "downtime",
        &file,
        "--cluster",
        "--for",
        "1h",
        "--reason",
        "dc move",
        "--state",
        &state,
    ]);
    let list = orch_ok(&["downtime", &file, "--state", &state]);
    assert!(list.contains("the whole cluster until"), "{list}");
    orch_ok(&["downtime", &file, "--cluster", "--end", "--state", &state]);
    let (code, _, err) = orch(&["downtime", &file, "--end", "--state", &state]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--cluster"), "{err}");
    let watch = Watch::start(&file, &state);
    orch_ok(&["sandbox", "kill", sb.d(), "1"]);
    watch.wait_for("node1 is downtimed", 20);
    assert_eq!(read_only(&sb, 2), "1");
    assert_eq!(read_only(&sb, 3), "1");
    orch_ok(&["downtime", &file, "node1", "--end", "--state", &state]);
    watch.wait_for("failover done", 20);
    assert_eq!(
        (1..=2).filter(|&k| read_only(&sb, k + 1) == "0").count(),
        1,
        "one new primary"
    );
    watch.stop();
    sb.down();
}

/// An nftables table that drops every TCP packet to one server from every user but
/// `mysql` (the servers run as mysql): orch is cut off, the replicas are not. Deleted on
/// drop, even when the test fails.
struct CutOff {
    table: String,
}

/// `nft` (through sudo when not root), with `script` on stdin.
pub(crate) fn nft(args: &[&str], script: &str) -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = Command::new(if root { "nft" } else { "sudo" });
    if !root {
        cmd.arg("nft");
    }
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft runs (scripts/install-deps.sh installs nftables)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    child.wait().unwrap().success()
}

impl CutOff {
    fn orch_from(address: &str) -> CutOff {
        let (ip, port) = address.split_once(':').unwrap();
        let table = format!("orch_test_{}_{}", std::process::id(), ip.replace('.', "_"));
        let rules = format!(
            "add table inet {table}\n\
             add chain inet {table} out {{ type filter hook output priority 0; }}\n\
             add rule inet {table} out ip daddr {ip} tcp dport {port} meta skuid != mysql drop\n"
        );
        let cut = CutOff { table };
        assert!(nft(&["-f", "-"], &rules), "nft refused:\n{rules}");
        cut
    }
}

impl Drop for CutOff {
    fn drop(&mut self) {
        let _ = nft(&["delete", "table", "inet", &self.table], "");
    }
}

/// Only orch is cut off from the primary (nftables): its replicas still replicate, so it
/// is `unreachable-primary`, never a failover, however long it lasts.
#[test]
fn a_primary_only_orch_cannot_reach_is_never_failed_over() {
    let sb = Sandbox::up(&["-n", "3"]);
    let policy = write_policy(&sb, "");
    let file = topology(&sb, 3, &policy);
    let state = sb.dir.join("state").to_str().unwrap().to_string();
    let watch = Watch::start(&file, &state);
    let cut = CutOff::orch_from(&sb.address(1));
    watch.wait_for("unreachable-primary node1", 20);
    // Well past the grace period, and writes still flow to the replicas.
    sb.root(1, "CREATE DATABASE still_replicating");
    for i in [2, 3] {
        eventually(
            "the replicas still replicate",
            Duration::from_secs(10),
            || {
                !sb.root(i, "SHOW DATABASES LIKE 'still_replicating'")
                    .is_empty()
            },
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        assert!(!watch.log().contains("recovering"), "{}", watch.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(read_only(&sb, 1), "0");
    assert_eq!(read_only(&sb, 2), "1");
    drop(cut);
    watch.stop();
    sb.down();
}

/// `orch failover --force` on a primary that answers, under a write load (an ordinary
/// account that retries, and one holding READ_ONLY ADMIN, which read_only does not stop):
/// fenced first, the replicas take everything it has, the chosen one is promoted; every
/// acknowledged write is on both replicas, the old primary has nothing the new one lacks,
/// the writers got clean errors, exactly one server is writable.
#[test]
fn a_forced_failover_fences_the_live_primary_first_and_loses_no_write() {
    let sb = Sandbox::up(&["-n", "3"]);
    let writers = Writers::start(&sb);
    let policy = write_policy(&sb, "");
    let file = topology(&sb, 3, &policy);
    let state = sb.dir.join("state").to_str().unwrap().to_string();
    let (code, out, err) = orch(&[
        "failover", &file, "--force", "--to", "node2", "--state", &state,
    ]);
    let acked = writers.stop();
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(read_only(&sb, 1), "1", "the old primary is fenced");
    assert_eq!(read_only(&sb, 2), "0");
    assert_eq!(read_only(&sb, 3), "1");
    assert_eq!(source_ip(&sb, 3), ip(&sb, 2));
    everywhere(&sb, 3, &acked);
    assert!(has_every_gtid_of(&sb, 2, 1), "node1 has GTIDs node2 lacks");
    let (_, detail, _) = orch(&["history", "1", "--state", &state]);
    assert!(
        detail.contains("--force") && detail.contains("fence"),
        "{detail}"
    );
    sb.down();
}

/// `reconcile: repair`: drift that is no failure (a replica stopped, another moved) is
/// repaired by watch through apply's engine, recorded like a recovery.
#[test]
fn reconcile_repair_restarts_and_moves_replicas_back() {
    let sb = Sandbox::up(&["-n", "3"]);
    let policy = write_policy(&sb, "reconcile: repair\n");
    let file = topology(&sb, 3, &policy);
    let state = sb.dir.join("state").to_str().unwrap().to_string();
    let watch = Watch::start(&file, &state);
    sb.root(3, "STOP SLAVE");
    // node2 moved under node3.
    let node3 = ip(&sb, 3);
    sb.root(
        2,
        &format!("STOP SLAVE; CHANGE MASTER TO MASTER_HOST='{node3}'; START SLAVE"),
    );
    eventually(
        "both replicate from node1 again",
        Duration::from_secs(20),
        || {
            [2, 3].iter().all(|&i| {
                let rows = sb.root(i, "SHOW SLAVE STATUS");
                first(&rows, "Master_Host") == ip(&sb, 1)
                    && first(&rows, "Slave_IO_Running") == "Yes"
                    && first(&rows, "Slave_SQL_Running") == "Yes"
            })
        },
    );
    watch.wait_for("reconcile:", 5);
    let h = history(&state);
    assert_eq!(h["runs"][0]["kind"], "recovery", "{h}");
    watch.stop();
    sb.down();
}

/// Failover hooks: a failing `pre_failover` aborts the failover (nothing changed, recorded,
/// `post_unsuccessful_failover` runs, once); once it passes, the failover runs, the hooks see
/// the successor chosen, and a failing `post_failover` marks the run "completed, hook
/// failed" instead of vanishing.
#[test]
fn failover_hooks_abort_inform_and_are_never_silent() {
    let sb = Sandbox::up(&["-n", "3"]);
    let log = sb.dir.join("hooks.log");
    let gate = sb.dir.join("allow-failover");
    let hooks = format!(
        "hooks:\n  pre_failover:\n    - 'echo pre {{failed}} {{successor}} >> {log}; test -e {gate}'\n  post_failover:\n    - 'echo post {{failed}} {{successor}} {{successor_address}} $ORCH_CLUSTER >> {log}'\n    - 'exit 7'\n  post_unsuccessful_failover:\n    - 'echo unsuccessful {{failed}} >> {log}'\n  timeout: 5s\n",
        log = log.display(),
        gate = gate.display()
    );
    let policy = write_policy(&sb, &hooks);
    let file = topology(&sb, 3, &policy);
    let state = sb.dir.join("state").to_str().unwrap().to_string();
    let watch = Watch::start(&file, &state);
    orch_ok(&["sandbox", "kill", sb.d(), "1"]);
    watch.wait_for("aborted by the pre_failover hook", 20);
    assert_eq!(read_only(&sb, 2), "1");
    assert_eq!(read_only(&sb, 3), "1");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("pre node1 node"), "{text}");
    assert!(text.contains("unsuccessful node1"), "{text}");
    watch.stop();

    // Allowed now: a new watcher (a new episode) fails over; the second post hook fails.
    std::fs::write(&gate, "").unwrap();
    let watch = Watch::start(&file, &state);
    watch.wait_for("completed, hook failed", 20);
    let text = std::fs::read_to_string(&log).unwrap();
    let post = text.lines().find(|l| l.starts_with("post ")).unwrap();
    let new = if read_only(&sb, 2) == "0" { 2 } else { 3 };
    assert_eq!(
        post,
        format!("post node1 node{new} {} sandbox", sb.address(new))
    );
    let h = history(&state);
    let run = &h["runs"][0];
    assert_eq!(run["outcome"], "succeeded", "{h}");
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .contains("completed, hook failed: post_failover `exit 7` (exit 7)"),
        "{h}"
    );
    watch.stop();
    sb.down();
}
