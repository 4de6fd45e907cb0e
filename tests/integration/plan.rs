//! `orch plan` against real MariaDB sandboxes: star → subtree, a switchover, an errant
//! replica, offline planning from a snapshot. Planning changes nothing on the servers;
//! then the plan's steps run through orch's MySQL executor (as orch's own account, with
//! the grants the README lists), and planning again finds nothing to do: the plan is right
//! on real servers, not only on the simulator.

use std::time::Duration;

use crate::sandbox::{Sandbox, eventually, first, orch};

pub(crate) fn write_topology(sb: &Sandbox, name: &str, sources: &[Option<usize>]) -> String {
    let mut yaml = String::from(
        "cluster: sandbox\ncredentials:\n  user: orch\n  password_file: secrets/orch.password\n  replication_user: repl\n  replication_password_file: secrets/repl.password\npolicy: safe\nhosts:\n",
    );
    for (i, source) in sources.iter().enumerate() {
        let n = i + 1;
        let source = source.map_or(String::new(), |s| format!(", source: node{s}"));
        yaml.push_str(&format!(
            "  node{n}: {{ address: \"{}\"{source} }}\n",
            sb.address(n)
        ));
    }
    let path = sb.dir.join(name);
    std::fs::write(&path, yaml).unwrap();
    path.to_str().unwrap().to_string()
}

pub(crate) fn plan_json(topology: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["plan", topology, "--format", "json", "--detailed-exitcode"];
    args.extend_from_slice(extra);
    let (code, out, err) = orch(&args);
    let json = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (code, json)
}

/// `host action` per step, e.g. `node3 change_source`.
pub(crate) fn steps(plan: &serde_json::Value) -> Vec<String> {
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["host"].as_str().unwrap(),
                s["action"].as_str().unwrap()
            )
        })
        .collect()
}

/// Who each server replicates from, and read_only, as the servers say.
pub(crate) fn shape(sb: &Sandbox, n: usize) -> Vec<(String, String)> {
    (1..=n)
        .map(|i| {
            let rows = sb.root(i, "SHOW SLAVE STATUS");
            let ro = sb.root(i, "SELECT @@read_only AS ro");
            (first(&rows, "Master_Host"), first(&ro, "ro"))
        })
        .collect()
}

/// Runs a plan's steps on the servers through orch's MySQL executor, as apply will, with
/// the credentials the topology file names; the first failing step panics.
pub(crate) fn run_steps(topology: &str, plan: &serde_json::Value) {
    try_steps(topology, plan).unwrap_or_else(|(n, e)| panic!("step {n} failed: {e}"));
}

/// Runs the steps in order; the number of the first failing step and its error.
pub(crate) fn try_steps(
    topology: &str,
    plan: &serde_json::Value,
) -> Result<(), (usize, orch::step::StepError)> {
    use orch::executor::Executor;
    let (t, policy) = orch::spec::load_valid(std::path::Path::new(topology)).unwrap();
    let exec =
        orch::executor::mysql::MysqlExecutor::for_changes(&t, &policy, Default::default()).unwrap();
    let rt = crate::sandbox::runtime();
    for step in plan["steps"].as_array().unwrap() {
        let step: orch::step::Step = serde_json::from_value(step.clone()).unwrap();
        rt.block_on(exec.execute(&step))
            .map_err(|e| (step.number, e))?;
    }
    Ok(())
}

#[test]
fn star_to_subtree_on_real_servers() {
    let sb = Sandbox::up(&["-n", "4"]);
    sb.root(1, "CREATE DATABASE t");
    let before = shape(&sb, 4);
    // node3 under node2, node4 under node3: a chain two levels below a sibling.
    let file = write_topology(&sb, "subtree.yaml", &[None, Some(1), Some(2), Some(3)]);
    let (code, plan) = plan_json(&file, &[]);
    assert_eq!(code, 2, "changes: {plan}");
    assert_eq!(
        steps(&plan),
        [
            "node3 stop_replication",
            "node2 wait_for_gtid",
            "node3 change_source",
            "node3 start_replication",
            "node4 stop_replication",
            "node3 wait_for_gtid",
            "node4 change_source",
            "node4 start_replication",
        ]
    );
    assert!(plan["blocked"].as_array().unwrap().is_empty(), "{plan}");
    assert_eq!(shape(&sb, 4), before, "plan changed nothing");

    // The human view: the table, the diff, the summary; the SQL names no password.
    let (code, out, err) = orch(&["plan", &file, "--show-sql"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("MASTER_USE_GTID=slave_pos"), "{out}");
    assert!(out.contains("+       └─ node4 ro"), "{out}");
    assert!(out.contains("plan: 8 steps on 3 hosts"), "{out}");
    let secret = std::fs::read_to_string(sb.dir.join("secrets/repl.password")).unwrap();
    assert!(!out.contains(secret.trim()), "no secret printed");

    run_steps(&file, &plan);
    sb.root(1, "CREATE TABLE t.x (id INT PRIMARY KEY)");
    eventually(
        "planning again finds nothing",
        Duration::from_secs(10),
        || {
            let (code, again) = plan_json(&file, &[]);
            code == 0 && steps(&again).is_empty()
        },
    );
    let node4 = sb.root(4, "SHOW SLAVE STATUS");
    assert_eq!(
        first(&node4, "Master_Host"),
        sb.address(3).split(':').next().unwrap()
    );
    sb.down();
}

#[test]
fn switchover_on_real_servers() {
    let sb = Sandbox::up(&["-n", "3"]);
    sb.root(1, "CREATE DATABASE t");
    sb.root(1, "CREATE TABLE t.x (id INT PRIMARY KEY)");
    sb.root(1, "INSERT INTO t.x VALUES (1)");
    let before = shape(&sb, 3);
    let file = write_topology(&sb, "switchover.yaml", &[Some(2), None, Some(2)]);
    let (code, plan) = plan_json(&file, &[]);
    assert_eq!(code, 2, "{plan}");
    assert_eq!(
        steps(&plan),
        [
            "node3 stop_replication",
            "node2 wait_for_gtid",
            "node3 change_source",
            "node3 start_replication",
            "node1 fence",
            "node2 wait_for_gtid",
            "node2 stop_replication",
            "node2 reset_replication",
            "node2 promote",
            "node1 change_source",
            "node1 start_replication",
        ]
    );
    assert_eq!(plan["steps"][9]["gtid_position"], "current_pos");
    assert_eq!(shape(&sb, 3), before, "plan changed nothing");

    // A session of a READ_ONLY ADMIN holder stays open on node1: the fence kills it.
    let pool = mysql_async::Pool::new(crate::sandbox::root_opts(&sb.socket(1)));
    let rt = crate::sandbox::runtime();
    let mut held = rt.block_on(pool.get_conn()).unwrap();
    run_steps(&file, &plan);
    let gone = rt.block_on(async {
        use mysql_async::prelude::Queryable;
        held.query_drop("SELECT 1").await.is_err()
    });
    assert!(gone, "the admin session on the old primary was killed");

    // The new primary takes writes and they reach everyone, the old primary included.
    sb.root(2, "INSERT INTO t.x VALUES (2)");
    eventually(
        "everyone has the new write",
        Duration::from_secs(10),
        || {
            [1, 3]
                .iter()
                .all(|&i| first(&sb.root(i, "SELECT COUNT(*) AS c FROM t.x"), "c") == "2")
        },
    );
    assert_eq!(first(&sb.root(1, "SELECT @@read_only AS ro"), "ro"), "1");
    let (code, again) = plan_json(&file, &[]);
    assert_eq!((code, steps(&again)), (0, vec![]), "{again}");
    drop(held);
    rt.block_on(pool.disconnect()).ok();
    sb.down();
}

#[test]
fn errant_replica_is_blocked_on_real_servers() {
    let sb = Sandbox::up(&["-n", "3"]);
    sb.root(1, "CREATE DATABASE t");
    eventually("node3 has t", Duration::from_secs(10), || {
        !sb.root(3, "SHOW DATABASES LIKE 't'").is_empty()
    });
    // root holds READ_ONLY ADMIN: a write on the replica despite read_only.
    sb.root(3, "CREATE TABLE t.stray (id INT PRIMARY KEY)");
    let before = shape(&sb, 3);
    let file = write_topology(&sb, "errant.yaml", &[None, Some(1), Some(2)]);
    let (code, plan) = plan_json(&file, &[]);
    assert_eq!(code, 3, "nothing can run, a change is blocked: {plan}");
    assert_eq!(plan["blocked"][0]["code"], "errant-gtid", "{plan}");
    assert_eq!(plan["blocked"][0]["host"], "node3");
    assert_eq!(shape(&sb, 3), before);
    let (_, out, _) = orch(&["plan", &file]);
    assert!(
        out.contains("blocked:") && out.contains("errant-gtid"),
        "{out}"
    );
    sb.down();
}

#[test]
fn offline_plan_from_a_snapshot_matches_the_live_one() {
    let sb = Sandbox::up(&["-n", "3"]);
    let current = sb.dir.join("topology.yaml");
    let (code, snapshot, err) = orch(&["status", current.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let snap = sb.dir.join("snapshot.json");
    std::fs::write(&snap, snapshot).unwrap();
    // The change under review: node3 under node2, and the snapshot's file had the same hosts.
    let file = write_topology(&sb, "review.yaml", &[None, Some(1), Some(2)]);
    let (live_code, live) = plan_json(&file, &[]);
    let (offline_code, offline) = plan_json(&file, &["--observed", snap.to_str().unwrap()]);
    assert_eq!((live_code, offline_code), (2, 2));
    assert_eq!(live["steps"], offline["steps"]);
    assert_eq!(live["fingerprint"], offline["fingerprint"]);
    // -o saves the plan with its fingerprint and the file's hash.
    let saved = sb.dir.join("plan.json");
    let (code, _, err) = orch(&["plan", &file, "-o", saved.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(saved["fingerprint"], live["fingerprint"]);
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(saved["files"][0]["sha256"], orch::plan::sha256_hex(&bytes));
    sb.down();
}

#[test]
fn drift_and_a_removed_host_on_real_servers() {
    let sb = Sandbox::up(&["-n", "4"]);
    // node4 is no longer in the file; node2's replication is stopped, node3 is writable,
    // the primary read-only.
    let file = write_topology(&sb, "drift.yaml", &[None, Some(1), Some(1)]);
    sb.root(2, "STOP SLAVE");
    sb.root(3, "SET GLOBAL read_only = OFF");
    sb.root(1, "SET GLOBAL read_only = ON");
    let before = shape(&sb, 4);
    let (code, plan) = plan_json(&file, &[]);
    assert_eq!(code, 2, "{plan}");
    assert_eq!(
        steps(&plan),
        ["node3 fence", "node2 start_replication", "node1 unfence"]
    );
    // node4 was found through SHOW SLAVE HOSTS on node1 and is reported, not touched.
    let node4 = sb.address(4);
    assert_eq!(plan["warnings"][0]["code"], "removed-host", "{plan}");
    assert_eq!(plan["warnings"][0]["host"], node4.as_str());
    assert_eq!(shape(&sb, 4), before, "plan changed nothing");

    let (code, plan) = plan_json(&file, &["--detach-removed"]);
    assert_eq!(code, 2);
    assert_eq!(
        steps(&plan),
        [
            "node3 fence".to_string(),
            "node2 start_replication".into(),
            format!("{node4} stop_replication"),
            format!("{node4} reset_replication"),
            "node1 unfence".into(),
        ]
    );
    run_steps(&file, &plan);
    eventually(
        "planning again finds nothing",
        Duration::from_secs(10),
        || {
            let (code, again) = plan_json(&file, &["--detach-removed"]);
            code == 0
                && steps(&again).is_empty()
                && again["warnings"].as_array().unwrap().is_empty()
        },
    );
    assert!(sb.root(4, "SHOW SLAVE STATUS").is_empty(), "node4 detached");
    assert_eq!(first(&sb.root(1, "SELECT @@read_only AS ro"), "ro"), "0");
    assert_eq!(first(&sb.root(3, "SELECT @@read_only AS ro"), "ro"), "1");
    sb.down();
}
