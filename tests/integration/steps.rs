//! Plans that are safe to execute (issue 8) on real MariaDB: each test reproduces a way a
//! plan's steps went wrong when run on real servers, runs the plan through orch's MySQL
//! executor, and checks what an operator cares about: nothing acknowledged lost, no
//! errant GTIDs on the demoted primary, exactly one writable server, re-planning converges.

use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::plan::{plan_json, run_steps, steps, write_topology};
use crate::sandbox::{Sandbox, eventually, first};

/// The GTID position each server has executed contains the other's (MariaDB positions).
fn contains(have: &str, want: &str) -> bool {
    use orch::gtid::{Flavor, GtidSet};
    let (h, w) = (
        GtidSet::parse(Flavor::Mariadb, have).unwrap(),
        GtidSet::parse(Flavor::Mariadb, want).unwrap(),
    );
    h.contains(&w).unwrap()
}

fn read_only(sb: &Sandbox, i: usize) -> String {
    first(&sb.root(i, "SELECT @@read_only AS ro"), "ro")
}

/// A session whose READ_ONLY ADMIN comes from a default role, and an event whose definer
/// holds it, both on the primary: after the switchover's fence neither can write there.
#[test]
fn fence_stops_role_and_event_writers() {
    let sb = Sandbox::up(&["-n", "3"]);
    for sql in [
        "CREATE DATABASE app",
        "CREATE TABLE app.t (id INT PRIMARY KEY AUTO_INCREMENT, v INT)",
        "CREATE ROLE writer_role",
        "GRANT READ_ONLY ADMIN ON *.* TO writer_role",
        "CREATE USER u@'%' IDENTIFIED BY 'u-password'",
        "GRANT writer_role TO u@'%'",
        "GRANT SELECT, INSERT ON app.* TO u@'%'",
        "SET DEFAULT ROLE writer_role FOR u@'%'",
        // root (the definer) holds every privilege, READ_ONLY ADMIN included.
        "CREATE EVENT app.tick ON SCHEDULE EVERY 1 SECOND DO INSERT INTO app.t (v) VALUES (0)",
        "SET GLOBAL event_scheduler = ON",
        // Stopping the event scheduler needs SUPER (README: grants).
        "GRANT SUPER ON *.* TO orch@'127.%'",
    ] {
        sb.root(1, sql);
    }
    let opts = sb.tcp_opts(1, "u", "u-password");
    let rt = crate::sandbox::runtime();
    let mut writer = rt.block_on(mysql_async::Conn::new(opts)).unwrap();
    // The role's privilege is real: u writes despite read_only.
    sb.root(1, "SET GLOBAL read_only = ON");
    rt.block_on(writer.query_drop("INSERT INTO app.t (v) VALUES (1)"))
        .unwrap();
    sb.root(1, "SET GLOBAL read_only = OFF");

    let file = write_topology(&sb, "switchover.yaml", &[Some(2), None, Some(2)]);
    let (_, plan) = plan_json(&file, &[]);
    assert!(steps(&plan).contains(&"node1 fence".to_string()), "{plan}");
    run_steps(&file, &plan);

    let refused = rt.block_on(writer.query_drop("INSERT INTO app.t (v) VALUES (2)"));
    assert!(refused.is_err(), "the role holder's session was killed");
    assert_eq!(
        first(&sb.root(1, "SELECT @@event_scheduler AS e"), "e"),
        "OFF"
    );
    // Nothing the old primary wrote is missing on the new one: no errant GTIDs.
    let old = first(&sb.root(1, "SELECT @@gtid_binlog_pos AS p"), "p");
    let new = first(&sb.root(2, "SELECT @@gtid_current_pos AS p"), "p");
    assert!(contains(&new, &old), "node2 {new} lacks node1's {old}");
    assert_eq!(
        (read_only(&sb, 1), read_only(&sb, 2), read_only(&sb, 3)),
        ("1".into(), "0".into(), "1".into()),
        "exactly one writable server"
    );
    let count = first(&sb.root(1, "SELECT COUNT(*) AS c FROM app.t"), "c");
    eventually(
        "node2 has every row node1 has",
        Duration::from_secs(10),
        || first(&sb.root(2, "SELECT COUNT(*) AS c FROM app.t"), "c") == count,
    );
    let (code, again) = plan_json(&file, &[]);
    assert_eq!((code, steps(&again)), (0, Vec::<String>::new()), "{again}");
    drop(writer);
    sb.down();
}

/// A former primary repointed with current_pos holds its own writes in its binlog, not in
/// gtid_slave_pos: a wait for a position it already has must succeed at once (it used
/// MASTER_GTID_WAIT, which compares gtid_slave_pos, and never returned).
#[test]
fn waits_on_a_former_primary_succeed() {
    let sb = Sandbox::up(&["-n", "4"]);
    for i in 1..=4 {
        sb.root(i, "SET GLOBAL gtid_strict_mode = ON");
    }
    sb.root(1, "CREATE DATABASE t");
    sb.root(1, "CREATE TABLE t.x (id INT PRIMARY KEY)");
    sb.root(1, "INSERT INTO t.x VALUES (1)");
    let file = write_topology(&sb, "switch.yaml", &[Some(2), None, Some(2), Some(2)]);
    let (_, plan) = plan_json(&file, &[]);
    run_steps(&file, &plan);
    sb.root(2, "INSERT INTO t.x VALUES (2)");
    // node3 moves under node1, the former primary.
    let file = write_topology(&sb, "move.yaml", &[Some(2), None, Some(1), Some(2)]);
    let (code, plan) = plan_json(&file, &[]);
    assert_eq!(code, 2, "{plan}");
    assert!(
        steps(&plan).contains(&"node1 wait_for_gtid".to_string()),
        "the case under test: node1 waits for node3's GTIDs: {plan}"
    );
    run_steps(&file, &plan);
    eventually("the move converges", Duration::from_secs(10), || {
        let (code, again) = plan_json(&file, &[]);
        code == 0 && steps(&again).is_empty()
    });
    sb.root(2, "INSERT INTO t.x VALUES (3)");
    eventually(
        "node3 gets writes through node1",
        Duration::from_secs(10),
        || first(&sb.root(3, "SELECT COUNT(*) AS c FROM t.x"), "c") == "3",
    );
    sb.down();
}

/// A replica with MASTER_DELAY is never a switchover candidate (its Seconds_Behind_Master
/// can be small while it is an hour behind on purpose), and a plan of only blocked changes
/// exits 3 with --detailed-exitcode.
#[test]
fn a_delayed_replica_is_never_a_candidate() {
    let sb = Sandbox::up(&["-n", "3"]);
    for sql in [
        "STOP SLAVE",
        "CHANGE MASTER TO MASTER_DELAY=3600",
        "START SLAVE",
    ] {
        sb.root(2, sql);
    }
    sb.root(1, "CREATE DATABASE t");
    let file = write_topology(&sb, "switchover.yaml", &[Some(2), None, Some(2)]);
    let (code, plan) = plan_json(&file, &[]);
    assert_eq!(code, 3, "{plan}");
    assert_eq!(plan["blocked"][0]["code"], "delayed", "{plan}");
    assert_eq!(plan["blocked"][0]["host"], "node2");
    assert!(steps(&plan).is_empty(), "{plan}");
    assert_eq!(read_only(&sb, 1), "0", "nothing changed");
    sb.down();
}

/// Two servers with one server_id: status reports it and plan refuses any change involving
/// them (the source would refuse the replica with 4052 and leave it Connecting).
#[test]
fn a_duplicate_server_id_blocks_the_move() {
    let sb = Sandbox::up(&["-n", "3"]);
    let id2 = first(&sb.root(2, "SELECT @@server_id AS i"), "i");
    sb.root(3, &format!("SET GLOBAL server_id = {id2}"));
    let file = write_topology(&sb, "chain.yaml", &[None, Some(1), Some(2)]);
    let (code, plan) = plan_json(&file, &[]);
    assert_eq!(code, 3, "{plan}");
    assert_eq!(plan["blocked"][0]["code"], "duplicate-identity", "{plan}");
    assert_eq!(plan["blocked"][0]["host"], "node3");
    assert!(steps(&plan).is_empty(), "{plan}");
    sb.down();
}

/// The file's primary address points at another cluster's primary (issue 8, item 5): with
/// `--detach-removed`, the plan once detached that cluster's replica. Now every change is
/// blocked (`primary-mismatch`), apply refuses, and the other cluster is untouched.
#[test]
fn a_wrong_primary_address_never_touches_the_other_cluster() {
    let a = Sandbox::up(&["-n", "3"]);
    let b = Sandbox::up(&["-n", "2"]);
    // One orch password for both clusters, as in many shops: B's servers answer A's file.
    let password = std::fs::read_to_string(a.dir.join("secrets/orch.password")).unwrap();
    b.root(
        1,
        &format!(
            "ALTER USER orch@'127.%' IDENTIFIED BY '{}'",
            password.trim()
        ),
    );
    b.root(1, "CREATE DATABASE b");
    eventually("node2 of B has the change", Duration::from_secs(10), || {
        !b.root(2, "SHOW DATABASES LIKE 'b'").is_empty()
    });
    let file = write_topology(&a, "wrong.yaml", &[None, Some(1), Some(1)]);
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace(&a.address(1), &b.address(1));
    std::fs::write(&file, text).unwrap();

    let (code, plan) = plan_json(&file, &["--detach-removed"]);
    assert_eq!(code, 3, "only blocked changes: {plan}");
    assert!(steps(&plan).is_empty(), "{plan}");
    assert_eq!(plan["blocked"][0]["code"], "primary-mismatch", "{plan}");
    let (code, out, err) = crate::sandbox::orch(&[
        "apply",
        &file,
        "--auto-approve",
        "--detach-removed",
        "--state",
        a.dir.join("state").to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("primary-mismatch"), "{err}");
    let b2 = b.root(2, "SHOW SLAVE STATUS");
    assert_eq!(
        first(&b2, "Master_Host"),
        b.address(1).split(':').next().unwrap(),
        "B's replica still follows B's primary"
    );
    assert_eq!(first(&b2, "Slave_IO_Running"), "Yes");
    assert_eq!(read_only(&b, 1), "0", "B's primary still takes writes");
    a.down();
    b.down();
}

/// A server holding data but no GTID history (after RESET MASTER) is not fresh (issue 8,
/// item 7): joining it would replay CREATE DATABASE and stop with 1007. Blocked
/// (`not-seeded`), nothing changed; once its data is gone it joins and converges.
#[test]
fn data_without_gtid_history_is_not_seeded() {
    let sb = Sandbox::up(&["-n", "3"]);
    for sql in [
        "CREATE DATABASE app",
        "CREATE TABLE app.t (id INT PRIMARY KEY)",
        "INSERT INTO app.t VALUES (1), (2)",
    ] {
        sb.root(1, sql);
    }
    let rows_on_3 = || {
        crate::sandbox::query(
            crate::sandbox::root_opts(&sb.socket(3)),
            "SELECT COUNT(*) AS c FROM app.t",
        )
        .map(|r| first(&r, "c"))
        .unwrap_or_default()
    };
    eventually("node3 has the rows", Duration::from_secs(10), || {
        rows_on_3() == "2"
    });
    for sql in [
        "STOP SLAVE",
        "RESET SLAVE ALL",
        "RESET MASTER",
        "SET GLOBAL gtid_slave_pos = ''",
    ] {
        sb.root(3, sql);
    }
    let file = write_topology(&sb, "star.yaml", &[None, Some(1), Some(1)]);
    let (code, plan) = plan_json(&file, &[]);
    assert_eq!(code, 3, "{plan}");
    assert_eq!(plan["blocked"][0]["code"], "not-seeded", "{plan}");
    assert_eq!(plan["blocked"][0]["host"], "node3", "{plan}");
    assert!(
        plan["blocked"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("schemas app"),
        "{plan}"
    );
    assert!(
        sb.root(3, "SHOW SLAVE STATUS").is_empty(),
        "node3 still has no source"
    );

    // Emptied (what an operator does before re-seeding from the beginning): it joins.
    sb.root(3, "SET sql_log_bin = 0; DROP DATABASE app");
    let (code, plan) = plan_json(&file, &[]);
    assert_eq!(code, 2, "{plan}");
    run_steps(&file, &plan);
    eventually("node3 caught up", Duration::from_secs(10), || {
        rows_on_3() == "2"
    });
    let (code, again) = plan_json(&file, &[]);
    assert_eq!((code, steps(&again)), (0, Vec::<String>::new()), "{again}");
    sb.down();
}

/// Issue 8, item 2 on real servers: a 4-chain reversed (node1 -> node2 -> node3 -> node4
/// into node4 -> node3 -> node2 -> node1) and back, each time while an application writes
/// to the primary in two GTID domains. Every wait step succeeds, every acknowledged write
/// is everywhere, one server is writable, and planning again finds nothing.
#[test]
fn a_chain_reversed_and_back_with_two_domains_under_writes() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::apply::{everywhere, writer};
    let sb = Sandbox::up(&["-n", "4", "--shape", "chain"]);
    for sql in [
        "CREATE DATABASE app",
        "CREATE TABLE app.t (id BIGINT PRIMARY KEY)",
        "CREATE USER app@'127.%' IDENTIFIED BY 'app-password'",
        // Choosing a session's GTID domain needs SUPER, which does not bypass read_only.
        "GRANT INSERT, SUPER ON *.* TO app@'127.%'",
    ] {
        sb.root(1, sql);
    }
    let forward = write_topology(&sb, "chain.yaml", &[None, Some(1), Some(2), Some(3)]);
    let reversed = write_topology(&sb, "reversed.yaml", &[Some(2), Some(3), Some(4), None]);
    let state = sb.dir.join("state");
    let state = state.to_str().unwrap();
    let mut acked_all = Vec::new();
    for (round, (primary, file)) in [(1, &reversed), (4, &forward)].into_iter().enumerate() {
        let done = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = [0u32, 1]
            .into_iter()
            .map(|domain| {
                let opts = mysql_async::OptsBuilder::from_opts(sb.tcp_opts(
                    primary,
                    "app",
                    "app-password",
                ))
                .init(vec![format!("SET SESSION gtid_domain_id = {domain}")]);
                let from = 1_000_000 * (round as u64 * 10 + u64::from(domain) + 1);
                writer(opts.into(), from, false, done.clone())
            })
            .collect();
        eventually("both domains are written", Duration::from_secs(10), || {
            let pos = first(&sb.root(primary, "SELECT @@gtid_binlog_pos AS p"), "p");
            pos.contains("0-") && pos.contains("1-")
        });
        let (code, out, err) =
            crate::sandbox::orch(&["apply", file, "--auto-approve", "--state", state]);
        done.store(true, Ordering::SeqCst);
        for w in writers {
            let (acked, errors) = w.join().unwrap();
            assert!(!acked.is_empty());
            errors.iter().for_each(|e| crate::apply::a_clean_error(e));
            acked_all.extend(acked);
        }
        assert_eq!(code, 0, "round {round}\n{out}\n{err}");
        everywhere(&sb, 4, &acked_all);
        let writable: Vec<usize> = (1..=4).filter(|&i| read_only(&sb, i) == "0").collect();
        assert_eq!(
            writable,
            [if primary == 1 { 4 } else { 1 }],
            "round {round}"
        );
        let (code, again) = plan_json(file, &[]);
        assert_eq!((code, steps(&again)), (0, Vec::<String>::new()), "{again}");
    }
    sb.down();
}

/// A step's gate (a watcher's lease, by the clock) is asked before each statement: once it
/// closes, the rest of the step is not sent. Here the fence's `read_only` is set, the
/// session it would kill next lives on; a gate closed from the start changes nothing.
#[test]
fn a_closed_gate_stops_a_step_before_its_next_statement() {
    use orch::executor::Executor;
    let sb = Sandbox::up(&["-n", "2"]);
    sb.root(1, "CREATE USER u@'%' IDENTIFIED BY 'u-password'");
    let rt = crate::sandbox::runtime();
    let mut client = rt
        .block_on(mysql_async::Conn::new(sb.tcp_opts(1, "u", "u-password")))
        .unwrap();
    let file = write_topology(&sb, "gate.yaml", &[None, Some(1)]);
    let (t, policy) = orch::spec::load_valid(std::path::Path::new(&file)).unwrap();
    let exec =
        orch::executor::mysql::MysqlExecutor::for_changes(&t, &policy, Default::default()).unwrap();
    let fence: orch::step::Step = serde_json::from_value(serde_json::json!({
        "number": 1, "phase": "switchover", "host": "node1", "address": sb.address(1),
        "action": "fence", "kill_writers": true, "why": "a test",
        "requires": [], "expects": [],
    }))
    .unwrap();
    let closed = || Err("the lease ran out".to_string());
    let e = rt
        .block_on(exec.execute_gated(&fence, &closed))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("the lease ran out: `SET STATEMENT lock_wait_timeout = 1 FOR SET GLOBAL read_only = ON` not sent"),
        "{e}"
    );
    assert_eq!(read_only(&sb, 1), "0");
    // Open for the first statement only.
    let asked = std::sync::atomic::AtomicUsize::new(0);
    let once = || match asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
        0 => Ok(()),
        _ => Err("the lease ran out".to_string()),
    };
    let e = rt.block_on(exec.execute_gated(&fence, &once)).unwrap_err();
    assert!(e.to_string().contains("`KILL CONNECTION"), "{e}");
    assert_eq!(read_only(&sb, 1), "1");
    rt.block_on(client.query_drop("DO 1"))
        .expect("the session the fence would have killed lives");
    rt.block_on(client.disconnect()).unwrap();
    sb.down();
}

/// The fence past a commit that waits for a semi-sync acknowledgement that will not come
/// (no semi-sync replica, a 30 s timeout): `read_only` waits 1 s for it, the sessions are
/// killed (the insert is never acknowledged), `read_only` is set, all well within a
/// `--read-timeout` shorter than that wait.
#[test]
fn a_fence_kills_a_commit_held_for_a_semi_sync_acknowledgement() {
    use orch::executor::Executor;
    let sb = Sandbox::up(&["-n", "2"]);
    sb.root(
        1,
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY); \
         CREATE USER u@'%' IDENTIFIED BY 'u-password'; GRANT INSERT ON app.* TO u@'%'; \
         SET GLOBAL rpl_semi_sync_master_timeout = 30000; \
         SET GLOBAL rpl_semi_sync_master_enabled = ON",
    );
    let rt = crate::sandbox::runtime();
    let opts = sb.tcp_opts(1, "u", "u-password");
    let insert = std::thread::spawn(move || {
        let rt = crate::sandbox::runtime();
        rt.block_on(async {
            let mut c = mysql_async::Conn::new(opts).await.unwrap();
            c.query_drop("INSERT INTO app.t VALUES (1)").await
        })
    });
    eventually(
        "the insert waits for an acknowledgement",
        Duration::from_secs(10),
        || {
            first(
            &sb.root(
                1,
                "SELECT COUNT(*) AS c FROM information_schema.PROCESSLIST WHERE STATE LIKE 'Waiting for semi-sync%'",
            ),
            "c",
        ) == "1"
        },
    );
    let file = write_topology(&sb, "fence.yaml", &[None, Some(1)]);
    let (t, policy) = orch::spec::load_valid(std::path::Path::new(&file)).unwrap();
    let options = orch::observe::ObserveOptions {
        read_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let exec = orch::executor::mysql::MysqlExecutor::for_changes(&t, &policy, options).unwrap();
    let fence: orch::step::Step = serde_json::from_value(serde_json::json!({
        "number": 1, "phase": "failover", "host": "node1", "address": sb.address(1),
        "action": "fence", "kill_writers": true, "why": "a test",
        "requires": [], "expects": [],
    }))
    .unwrap();
    rt.block_on(exec.execute(&fence)).unwrap();
    assert_eq!(read_only(&sb, 1), "1");
    let answer = insert.join().unwrap();
    assert!(answer.is_err(), "the insert was acknowledged: {answer:?}");
    rt.block_on(exec.close());
    sb.down();
}
