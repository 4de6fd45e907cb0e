//! The failover decisions a hostile production tests, on real MariaDB under a write load:
//! a candidate whose applier failed is passed over at once; one replica that cannot apply
//! (its SQL thread stopped, or blocked on a table lock) never holds the failover back; a
//! delayed backup is never waited for and keeps its delay when it moves (failover,
//! switchover, dead intermediate); an errant write hidden behind later replicated ones,
//! and a replica with replication filters, are never promoted. Each test waits for
//! conditions with deadlines and stops its watcher and servers even when it fails.

use std::time::Duration;

use crate::sandbox::{Sandbox, eventually, first, orch, orch_ok};
use crate::watch::{
    Watch, all_acked_on, app_writing, history, ip, kill_primary_under_writes, read_only, semi_sync,
    source_ip, topology, write_policy,
};

/// Adds `attrs` to `node`'s entry of the topology file.
fn declare(file: &str, node: usize, attrs: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    let key = format!("  node{node}: {{");
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with(&key) {
                format!(
                    "{}, {attrs} }}",
                    l.trim_end().trim_end_matches('}').trim_end()
                )
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(file, out.join("\n") + "\n").unwrap();
}

/// The sandbox of [`semi_sync`], where `quiet` replicas acknowledge nothing: a replica
/// that cannot apply (or is delayed, filtered, errant) may hold the only copy of an
/// acknowledged write in its relay log, which no failover can pass on; these tests are
/// about the decision, so only the healthy replicas acknowledge.
fn semi_sync_quiet(quiet: &[usize]) -> Sandbox {
    let sb = Sandbox::up(&["-n", "3"]);
    semi_sync(&sb);
    for &i in quiet {
        sb.root(
            i,
            "SET GLOBAL rpl_semi_sync_slave_enabled = OFF; STOP SLAVE IO_THREAD; START SLAVE IO_THREAD",
        );
    }
    eventually("semi-sync replicas", Duration::from_secs(10), || {
        first(
            &sb.root(1, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_clients'"),
            "Value",
        ) == (2 - quiet.len()).to_string()
    });
    sb
}

fn slave_status(sb: &Sandbox, i: usize, col: &str) -> String {
    first(&sb.root(i, "SHOW SLAVE STATUS"), col)
}

/// node2 (`promotion: prefer`) under `orch watch` with the fast policy (and `extra`): the
/// topology file, the state directory and the watch.
fn watched_preferring_node2(sb: &Sandbox, extra: &str) -> (String, String, Watch) {
    let policy = write_policy(sb, extra);
    let file = topology(sb, 3, &policy);
    declare(&file, 2, "promotion: prefer");
    let state = sb.dir.join("state").to_str().unwrap().to_string();
    let watch = Watch::start(&file, &state);
    (file, state, watch)
}

/// The primary killed under writes: node3, not node2, is the new primary with every
/// acknowledged write, and the decision gives `why` for node2.
fn node3_promoted_not_node2(sb: &Sandbox, watch: &Watch, state: &str, why: &str) {
    let acked = kill_primary_under_writes(sb);
    watch.wait_for("failover done", 30);
    assert_eq!(read_only(sb, 3), "0", "{}", watch.log());
    assert_eq!(read_only(sb, 2), "1");
    all_acked_on(sb, &[3], &acked);
    let detail = first_recovery(state);
    assert!(
        detail.contains("candidate node2") && detail.contains(why),
        "{detail}"
    );
}

/// `orch history ID` of the first recovery: its detection, decision and steps.
fn first_recovery(state: &str) -> String {
    let id = recoveries(state)[0]["id"].to_string();
    orch(&["history", &id, "--state", state]).1
}

/// The recovery runs of the history, oldest first.
fn recoveries(state: &str) -> Vec<serde_json::Value> {
    let h = history(state);
    let mut runs: Vec<serde_json::Value> = h["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "recovery")
        .cloned()
        .collect();
    runs.reverse();
    runs
}

/// node2 (`promotion: prefer`) has a dead applier (a duplicate key its SQL thread stopped
/// on) when the primary is killed: node3 is promoted in the first attempt, with the reason
/// said; nothing acknowledged is lost; node2 is never made writable.
#[test]
fn a_candidate_whose_applier_failed_is_passed_over_at_once() {
    let sb = semi_sync_quiet(&[2]);
    sb.root(1, "CREATE TABLE app.other (id BIGINT PRIMARY KEY)");
    eventually("node2 has app.other", Duration::from_secs(10), || {
        !sb.root(2, "SHOW TABLES IN app LIKE 'other'").is_empty()
    });
    sb.root(
        2,
        "SET sql_log_bin = 0; INSERT INTO app.other VALUES (1); SET sql_log_bin = 1",
    );
    sb.root(1, "INSERT INTO app.other VALUES (1)");
    eventually(
        "node2's SQL thread stops on 1062",
        Duration::from_secs(10),
        || slave_status(&sb, 2, "Last_SQL_Errno") == "1062",
    );
    let (_, state, watch) = watched_preferring_node2(&sb, "");
    // The watch says what status says.
    watch.wait_for("replication-stopped node2", 10);
    node3_promoted_not_node2(&sb, &watch, &state, "its SQL thread failed (error 1062");
    // Never started again by orch: a person fixes it.
    assert_eq!(slave_status(&sb, 2, "Slave_SQL_Running"), "No");
    // One attempt: the failover succeeded first time, and nothing after it failed (a
    // later record may be the refusal to move node2, which holds what node3 lacks, from
    // under the dead node1).
    let runs = recoveries(&state);
    assert_eq!(runs[0]["outcome"], "succeeded", "{runs:#?}");
    assert!(
        runs[1..].iter().all(|r| r["outcome"] == "refused"),
        "one attempt: {runs:#?}"
    );
    assert_eq!(watch.stop(), 0);
    sb.down();
}

/// The primary dies while node3 cannot apply what it received: its SQL thread stopped
/// (`stopped`), or blocked by a table lock a session holds (`locked`). node2 is promoted
/// in the first attempt, without waiting for node3. The stopped one is moved under node2
/// with no gap and left stopped; the locked one, once the lock is gone, follows node2.
fn a_replica_that_cannot_apply(locked: bool) {
    let sb = semi_sync_quiet(&[3]);
    let (_, state, watch) = watched_preferring_node2(&sb, "  promote:\n    wait_relay_log: 5s\n");
    let lock = if locked {
        // A session holds the table node3's SQL thread must write: it waits, and so
        // does any STOP SLAVE.
        Some(table_lock(&sb, 3))
    } else {
        sb.root(3, "STOP SLAVE SQL_THREAD");
        None
    };
    let w = app_writing(&sb);
    eventually(
        "node3 has a relay log to apply",
        Duration::from_secs(10),
        || {
            let io = slave_status(&sb, 3, "Gtid_IO_Pos");
            let applied = first(&sb.root(3, "SELECT @@gtid_slave_pos AS p"), "p");
            !io.is_empty() && io != applied
        },
    );
    // node3 received no more than node2 (the successor): it loses nothing by moving.
    let received = |i| slave_status(&sb, i, "Gtid_IO_Pos");
    sb.root(3, "STOP SLAVE IO_THREAD");
    eventually(
        "node2 received what node3 did",
        Duration::from_secs(10),
        || {
            let (two, three) = (received(2), received(3));
            let p = |s: &str| orch::gtid::GtidSet::parse(orch::gtid::Flavor::Mariadb, s).unwrap();
            p(&two).contains(&p(&three)).unwrap()
        },
    );
    orch_ok(&["sandbox", "kill", sb.d(), "1"]);
    let (acked, _) = w.join().unwrap();
    watch.wait_for("failover done", 30);
    assert_eq!(read_only(&sb, 2), "0", "{}", watch.log());
    assert_eq!(read_only(&sb, 3), "1");
    all_acked_on(&sb, &[2], &acked);
    let runs = recoveries(&state);
    assert_eq!(
        runs[0]["outcome"],
        "succeeded",
        "{runs:#?}\n{}",
        watch.log()
    );
    let detail = first_recovery(&state);
    assert!(
        !detail.contains("node3: wait until it has applied"),
        "node3 was waited for:\n{detail}"
    );
    match lock {
        None => {
            assert!(detail.contains("its SQL thread is stopped"), "{detail}");
            eventually("node3 under node2", Duration::from_secs(10), || {
                source_ip(&sb, 3) == ip(&sb, 2)
            });
            assert_eq!(slave_status(&sb, 3, "Slave_SQL_Running"), "No");
        }
        Some((release, holder)) => {
            assert!(detail.contains("left behind"), "{detail}");
            release.send(()).unwrap();
            holder.join().unwrap();
            // Its STOP SLAVE completes once the lock is gone; the watcher moves what the
            // failover left under the dead former primary.
            eventually(
                "node3 replicates from node2",
                Duration::from_secs(30),
                || {
                    source_ip(&sb, 3) == ip(&sb, 2)
                        && slave_status(&sb, 3, "Slave_SQL_Running") == "Yes"
                },
            );
            all_acked_on(&sb, &[3], &acked);
        }
    }
    assert_eq!(watch.stop(), 0);
    sb.down();
}

#[test]
fn a_replica_whose_applier_is_stopped_never_blocks_the_failover() {
    a_replica_that_cannot_apply(false);
}

#[test]
fn a_replica_blocked_by_a_table_lock_never_blocks_the_failover() {
    a_replica_that_cannot_apply(true);
}

/// Sets node `i`'s MASTER_DELAY.
fn delay(sb: &Sandbox, i: usize, secs: u32) {
    sb.root(
        i,
        &format!("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = {secs}; START SLAVE"),
    );
}

/// A delayed backup of the primary (`delay: 1h, promotion: must_not`): the failover does
/// not wait for it, and it replicates from the new primary with its delay afterwards.
#[test]
fn a_delayed_backup_neither_blocks_a_failover_nor_loses_its_delay() {
    let sb = semi_sync_quiet(&[3]);
    delay(&sb, 3, 3600);
    let policy = write_policy(&sb, "");
    let file = topology(&sb, 3, &policy);
    declare(&file, 3, "delay: 1h, promotion: must_not");
    let state = sb.dir.join("state").to_str().unwrap().to_string();
    let watch = Watch::start(&file, &state);
    let acked = kill_primary_under_writes(&sb);
    watch.wait_for("failover done", 30);
    assert_eq!(read_only(&sb, 2), "0", "{}", watch.log());
    all_acked_on(&sb, &[2], &acked);
    eventually(
        "node3 replicates from node2",
        Duration::from_secs(10),
        || source_ip(&sb, 3) == ip(&sb, 2) && slave_status(&sb, 3, "Slave_IO_Running") == "Yes",
    );
    assert_eq!(slave_status(&sb, 3, "SQL_Delay"), "3600");
    // The replicas stopped receiving before the decision, as the history says.
    let detail = first_recovery(&state);
    assert!(
        detail.contains("before deciding, node2, node3 stopped receiving from it"),
        "{detail}"
    );
    let runs = recoveries(&state);
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["outcome"], "succeeded", "{runs:#?}");
    assert_eq!(watch.stop(), 0);
    sb.down();
}

/// A switchover (the file names node2 the primary) under a write load: the delayed
/// backup follows node2 with its delay.
#[test]
fn a_delayed_backup_keeps_its_delay_through_a_switchover() {
    let sb = semi_sync_quiet(&[3]);
    delay(&sb, 3, 3600);
    let file = crate::plan::write_topology(&sb, "switch.yaml", &[Some(2), None, Some(2)]);
    declare(&file, 3, "delay: 1h, promotion: must_not");
    let w = app_writing(&sb);
    let out = orch_ok(&[
        "apply",
        &file,
        "--auto-approve",
        "--state",
        sb.dir.join("state").to_str().unwrap(),
    ]);
    let (acked, _) = w.join().unwrap();
    assert_eq!(read_only(&sb, 2), "0", "{out}");
    all_acked_on(&sb, &[2], &acked);
    assert_eq!(source_ip(&sb, 3), ip(&sb, 2), "{out}");
    assert_eq!(slave_status(&sb, 3, "SQL_Delay"), "3600", "{out}");
    assert_eq!(slave_status(&sb, 3, "Slave_IO_Running"), "Yes", "{out}");
    sb.down();
}

/// node4 is a delayed backup of the intermediate source node3: when node3 dies, node4
/// moves under node1 and keeps its delay.
#[test]
fn a_delayed_backup_of_a_dead_intermediate_keeps_its_delay() {
    let sb = Sandbox::up(&["-n", "4"]);
    let policy = write_policy(&sb, "");
    let file = crate::plan::write_topology(&sb, "chain.yaml", &[None, Some(1), Some(1), Some(3)]);
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("policy: safe", &format!("policy: {policy}"));
    std::fs::write(&file, text).unwrap();
    declare(&file, 4, "delay: 1h, promotion: must_not");
    let state = sb.dir.join("state").to_str().unwrap().to_string();
    orch_ok(&["apply", &file, "--auto-approve", "--state", &state]);
    assert_eq!(source_ip(&sb, 4), ip(&sb, 3));
    assert_eq!(slave_status(&sb, 4, "SQL_Delay"), "3600");
    let watch = Watch::start(&file, &state);
    orch_ok(&["sandbox", "kill", sb.d(), "3"]);
    eventually(
        "node4 replicates from node1",
        Duration::from_secs(20),
        || source_ip(&sb, 4) == ip(&sb, 1) && slave_status(&sb, 4, "Slave_IO_Running") == "Yes",
    );
    assert_eq!(slave_status(&sb, 4, "SQL_Delay"), "3600", "{}", watch.log());
    assert_eq!(watch.stop(), 0);
    sb.down();
}

/// Writes made directly on node2 (`promotion: prefer`, gtid_strict_mode off there), then
/// the primary's writes replicated past them: node2's gtid_current_pos no longer shows
/// them, its gtid_binlog_state does. node3 is promoted; node2 is named, never writable.
#[test]
fn an_errant_write_hidden_behind_replicated_ones_is_never_promoted() {
    let sb = semi_sync_quiet(&[2]);
    sb.root(2, "SET GLOBAL gtid_strict_mode = 0");
    for id in [800000001, 800000002] {
        // root holds READ_ONLY ADMIN: read_only does not stop it.
        sb.root(2, &format!("INSERT INTO app.t VALUES ({id})"));
    }
    let (file, state, watch) = watched_preferring_node2(&sb, "");
    let w = app_writing(&sb);
    eventually(
        "node2's errant writes are hidden",
        Duration::from_secs(10),
        || {
            let cur = first(&sb.root(2, "SELECT @@gtid_current_pos AS p"), "p");
            let slave = first(&sb.root(2, "SELECT @@gtid_slave_pos AS p"), "p");
            cur == slave && cur.starts_with("0-1-")
        },
    );
    // status already names them while the primary lives.
    let (_, out, _) = orch(&["status", &file, "--format", "json"]);
    assert!(out.contains("errant-gtid"), "{out}");
    orch_ok(&["sandbox", "kill", sb.d(), "1"]);
    let (acked, _) = w.join().unwrap();
    watch.wait_for("failover done", 30);
    assert_eq!(read_only(&sb, 3), "0", "{}", watch.log());
    assert_eq!(read_only(&sb, 2), "1");
    all_acked_on(&sb, &[3], &acked);
    let detail = first_recovery(&state);
    assert!(
        detail.contains("candidate node2") && detail.contains("errant"),
        "{detail}"
    );
    // Left under the dead former primary, it is named, not a mystery 'dead intermediate'.
    watch.wait_for("no replica of node1 can follow node3 without a gap", 10);
    assert_eq!(watch.stop(), 0);
    sb.down();
}

/// node2 (`promotion: prefer`) replicates with `replicate_do_db`: status says so, a plan
/// that would make it a source is blocked, and a failover promotes node3 with every
/// acknowledged write.
#[test]
fn a_replica_with_replication_filters_is_never_promoted_nor_a_source() {
    let sb = semi_sync_quiet(&[2]);
    sb.root(
        2,
        "STOP SLAVE; SET GLOBAL replicate_do_db = 'other'; START SLAVE",
    );
    let (file, state, watch) = watched_preferring_node2(&sb, "");
    let (_, out, _) = orch(&["status", &file, "--format", "json"]);
    assert!(out.contains("replication-filters"), "{out}");
    let moved = crate::plan::write_topology(&sb, "moved.yaml", &[None, Some(1), Some(2)]);
    let (_, plan) = crate::plan::plan_json(&moved, &[]);
    assert!(
        plan["blocked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["code"] == "replication-filters"),
        "{plan:#}"
    );
    node3_promoted_not_node2(
        &sb,
        &watch,
        &state,
        "replication filters (replicate_do_db=other)",
    );
    assert_eq!(watch.stop(), 0);
    sb.down();
}

/// A session holding `LOCK TABLES app.t WRITE` on node `i` until the sender is used (or
/// dropped): node `i`'s SQL thread waits behind it.
fn table_lock(
    sb: &Sandbox,
    i: usize,
) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let opts = crate::sandbox::root_opts(&sb.socket(i));
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        crate::sandbox::runtime().block_on(async {
            use mysql_async::prelude::Queryable;
            let mut conn = mysql_async::Conn::new(opts).await.unwrap();
            conn.query_drop("LOCK TABLES app.t WRITE").await.unwrap();
            held_tx.send(()).unwrap();
            let _ = tokio::task::spawn_blocking(move || rx.recv()).await;
            conn.query_drop("UNLOCK TABLES").await.unwrap();
        })
    });
    held_rx.recv().unwrap();
    (tx, holder)
}

/// The primary hangs (SIGSTOP) under a semi-sync write load and thaws while its failover
/// runs: the successor's applier is held back by a table lock, so the failover is waiting
/// for it when node1 answers again. node1 is fenced at once (its insert held for an
/// acknowledgement is killed, never acknowledged after `rpl_semi_sync_master_timeout`);
/// the failover goes on and promotes node2 in its first run; every acknowledged write is
/// on node2 and node3.
#[test]
fn a_primary_thawing_while_its_failover_runs_is_fenced_at_once() {
    // semi_sync's timeout is 30 s: longer than the primary is frozen here, so the insert
    // it holds still waits for an acknowledgement when it thaws (one frozen past the
    // timeout acknowledges it the instant it thaws: nothing can fence it first).
    let sb = semi_sync_quiet(&[]);
    let (_, state, watch) = watched_preferring_node2(&sb, "  promote:\n    wait_relay_log: 60s\n");
    let w = app_writing(&sb);
    let (release, holder) = table_lock(&sb, 2);
    orch_ok(&["sandbox", "freeze", sb.d(), "1"]);
    watch.wait_for("recovering: promote node2", 30);
    orch_ok(&["sandbox", "thaw", sb.d(), "1"]);
    // The failover waits for node2's applier until the writer's held insert is killed.
    // Without the fence at once, node1 acknowledges it when its semi-sync wait times out,
    // and the writer goes on writing there until the run ends: this times out.
    eventually(
        "the writer's held insert is killed",
        Duration::from_secs(20),
        || w.is_finished(),
    );
    release.send(()).unwrap();
    holder.join().unwrap();
    watch.wait_for("failover done", 40);
    let (acked, errors) = w.join().unwrap();
    assert_eq!(read_only(&sb, 2), "0", "{}", watch.log());
    assert_eq!(read_only(&sb, 1), "1", "{}", watch.log());
    assert_eq!(read_only(&sb, 3), "1");
    let missing = |i: usize| -> Vec<u64> {
        acked
            .iter()
            .copied()
            .filter(|id| {
                first(
                    &sb.root(
                        i,
                        &format!("SELECT COUNT(*) AS c FROM app.t WHERE id = {id}"),
                    ),
                    "c",
                ) == "0"
            })
            .collect()
    };
    eventually("node3 follows node2", Duration::from_secs(10), || {
        source_ip(&sb, 3) == ip(&sb, 2)
    });
    assert_eq!(
        (missing(2), missing(3)),
        (vec![], vec![]),
        "acknowledged: {} writes, last {:?}; errors {errors:?}\n{}",
        acked.len(),
        acked.last(),
        watch.log()
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        watch
            .log()
            .contains("answered writable while it ran: fenced at once"),
        "{}",
        watch.log()
    );
    let runs = recoveries(&state);
    assert_eq!(
        runs[0]["outcome"],
        "succeeded",
        "{runs:#?}\n{}",
        watch.log()
    );
    assert_eq!(watch.stop(), 0);
    sb.down();
}

/// The successor chosen (node2, `prefer`) cannot apply what it received within
/// `wait_relay_log` (a table lock holds its applier): the attempt fails, node2 is left
/// out, and the next attempt comes at once and promotes node3 with every acknowledged
/// write; once the lock is gone node2 follows node3.
#[test]
fn a_successor_that_cannot_catch_up_is_left_out_and_the_next_best_promoted_at_once() {
    let sb = semi_sync_quiet(&[2]);
    let (_, state, watch) = watched_preferring_node2(&sb, "  promote:\n    wait_relay_log: 3s\n");
    let (release, holder) = table_lock(&sb, 2);
    let acked = kill_primary_under_writes(&sb);
    watch.wait_for("failover done", 40);
    assert_eq!(read_only(&sb, 3), "0", "{}", watch.log());
    assert_eq!(read_only(&sb, 2), "1");
    all_acked_on(&sb, &[3], &acked);
    assert!(
        watch
            .log()
            .contains("node2 is left out of the next attempt of this failover"),
        "{}",
        watch.log()
    );
    // The failed attempt, then the failover (later runs may try to move node2 while it
    // is still locked: each fails and waits before the next).
    let runs = recoveries(&state);
    let outcomes: Vec<&str> = runs
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes[..2], ["failed", "succeeded"], "{runs:#?}");
    release.send(()).unwrap();
    holder.join().unwrap();
    eventually(
        "node2 replicates from node3",
        Duration::from_secs(30),
        || source_ip(&sb, 2) == ip(&sb, 3) && slave_status(&sb, 2, "Slave_SQL_Running") == "Yes",
    );
    all_acked_on(&sb, &[2], &acked);
    assert_eq!(watch.stop(), 0);
    sb.down();
}
