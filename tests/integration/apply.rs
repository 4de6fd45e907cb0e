//! `orch apply` on real MariaDB: a reshape applied and converged, a switchover under a
//! write load, no approval without a terminal, a stale saved plan, a locked cluster.
//! Every refused apply is checked to have changed nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::plan::{plan_json, shape, steps, write_topology};
use crate::sandbox::{Sandbox, eventually, first, orch};

fn state_dir(sb: &Sandbox) -> String {
    sb.dir.join("state").to_str().unwrap().to_string()
}

#[test]
fn reshape_is_applied_recorded_and_converges() {
    let sb = Sandbox::up(&["-n", "4"]);
    sb.root(1, "CREATE DATABASE t");
    let file = write_topology(&sb, "chain.yaml", &[None, Some(1), Some(2), Some(3)]);
    let state = state_dir(&sb);
    let (code, out, err) = orch(&["apply", &file, "--auto-approve", "--state", &state]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("apply succeeded"), "{out}");
    assert!(err.contains("step 1/"), "progress lines: {err}");
    let (code, again) = plan_json(&file, &[]);
    assert_eq!((code, steps(&again)), (0, Vec::<String>::new()), "{again}");
    // The moved replicas detect a dead source as fast as the policy polls.
    let (_, status, _) = orch(&["status", &file, "--format", "json"]);
    assert!(!status.contains("slow-failure-detection"), "{status}");
    // Recorded: the run and its steps, without the replication password.
    let (code, history, err) = orch(&["history", "--state", &state, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let h: serde_json::Value = serde_json::from_str(&history).unwrap();
    assert_eq!(h["runs"][0]["outcome"], "succeeded", "{h}");
    assert_eq!(h["runs"][0]["kind"], "apply");
    let id = h["runs"][0]["id"].to_string();
    let (_, detail, _) = orch(&["history", &id, "--state", &state, "--format", "json"]);
    assert!(detail.contains("CHANGE MASTER TO"), "{detail}");
    let secret = std::fs::read_to_string(sb.dir.join("secrets/repl.password")).unwrap();
    assert!(!detail.contains(secret.trim()), "no secret recorded");
    sb.down();
}

#[test]
fn refused_applies_change_nothing() {
    let sb = Sandbox::up(&["-n", "3"]);
    let file = write_topology(&sb, "chain.yaml", &[None, Some(1), Some(2)]);
    let state = state_dir(&sb);
    let before = shape(&sb, 3);

    // No terminal, no --auto-approve: refused.
    let (code, _, err) = orch(&["apply", &file, "--state", &state]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--auto-approve"), "{err}");
    assert_eq!(shape(&sb, 3), before);

    // A saved plan is refused once the live topology moved on.
    let saved = sb.dir.join("plan.json");
    let saved = saved.to_str().unwrap();
    let (code, _, err) = orch(&["plan", &file, "-o", saved]);
    assert_eq!(code, 0, "{err}");
    sb.root(3, "STOP SLAVE");
    let moved = shape(&sb, 3);
    let (code, _, err) = orch(&["apply", saved, "--state", &state]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("stale plan") && err.contains("node3"), "{err}");
    assert_eq!(shape(&sb, 3), moved);
    sb.root(3, "START SLAVE");

    // A locked cluster: refused at once, naming the holder.
    let store = orch::state::Store::open(std::path::Path::new(&state)).unwrap();
    let who = orch::state::Who::current();
    let lock = store
        .lock("sandbox", &who, Duration::from_secs(60))
        .unwrap();
    let (code, _, err) = orch(&["apply", &file, "--auto-approve", "--state", &state]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("locked by pid"), "{err}");
    eventually("node3 replicates again", Duration::from_secs(10), || {
        shape(&sb, 3) == before
    });
    drop(lock);

    // The same saved plan, once the topology is back where it was, applies.
    let (code, out, err) = orch(&["apply", saved, "--state", &state]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, again) = plan_json(&file, &[]);
    assert_eq!((code, steps(&again)), (0, Vec::<String>::new()), "{again}");
    sb.down();
}

/// The case users fear: an application writes continuously to the primary (an ordinary
/// account) while a switchover is applied. Every acknowledged write ends on the new primary
/// and every replica; the demoted primary holds nothing the new one lacks; the writer got
/// clean errors; exactly one server is writable.
#[test]
fn switchover_under_write_load() {
    let sb = Sandbox::up(&["-n", "3"]);
    for sql in [
        "CREATE DATABASE app",
        "CREATE TABLE app.t (id INT PRIMARY KEY)",
        "CREATE USER app@'127.%' IDENTIFIED BY 'app-password'",
        "GRANT SELECT, INSERT ON app.* TO app@'127.%'",
    ] {
        sb.root(1, sql);
    }
    let opts = sb.tcp_opts(1, "app", "app-password");
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let done = done.clone();
        std::thread::spawn(move || {
            let rt = crate::sandbox::runtime();
            rt.block_on(async {
                let mut acked = Vec::new();
                let mut errors = Vec::new();
                let mut conn = mysql_async::Conn::new(opts.clone()).await.unwrap();
                let mut id = 0;
                while !done.load(Ordering::SeqCst) {
                    id += 1;
                    match conn
                        .query_drop(format!("INSERT INTO app.t VALUES ({id})"))
                        .await
                    {
                        Ok(()) => acked.push(id),
                        Err(e) => {
                            errors.push(e.to_string());
                            match mysql_async::Conn::new(opts.clone()).await {
                                Ok(c) => conn = c,
                                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                            }
                        }
                    }
                }
                (acked, errors)
            })
        })
    };
    eventually("the writer is writing", Duration::from_secs(10), || {
        first(&sb.root(1, "SELECT COUNT(*) AS c FROM app.t"), "c") != "0"
    });
    let file = write_topology(&sb, "switchover.yaml", &[Some(2), None, Some(2)]);
    let state = state_dir(&sb);
    let (code, out, err) = orch(&["apply", &file, "--auto-approve", "--state", &state]);
    done.store(true, Ordering::SeqCst);
    let (acked, errors) = writer.join().unwrap();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!acked.is_empty());
    for e in &errors {
        assert!(
            e.contains("1290")
                || e.contains("read-only")
                || e.to_lowercase().contains("connection"),
            "a clean error: {e}"
        );
    }
    assert_eq!(
        (
            first(&sb.root(1, "SELECT @@read_only AS r"), "r"),
            first(&sb.root(2, "SELECT @@read_only AS r"), "r"),
            first(&sb.root(3, "SELECT @@read_only AS r"), "r")
        ),
        ("1".into(), "0".into(), "1".into()),
        "exactly one writable server\n{out}\n{err}"
    );
    let last = *acked.last().unwrap();
    for i in [1, 2, 3] {
        eventually(
            &format!("node{i} has every acknowledged write"),
            Duration::from_secs(10),
            || {
                let missing = sb.root(
                    i,
                    &format!(
                        "SELECT COUNT(*) AS c FROM app.t WHERE id IN ({})",
                        acked
                            .iter()
                            .map(|a| a.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                );
                first(&missing, "c") == acked.len().to_string()
            },
        );
    }
    let old = first(&sb.root(1, "SELECT @@gtid_binlog_pos AS p"), "p");
    let new = first(&sb.root(2, "SELECT @@gtid_binlog_pos AS p"), "p");
    let (o, n) = (
        orch::gtid::GtidSet::parse(orch::gtid::Flavor::Mariadb, &old).unwrap(),
        orch::gtid::GtidSet::parse(orch::gtid::Flavor::Mariadb, &new).unwrap(),
    );
    assert!(
        n.contains(&o).unwrap(),
        "node1 {old} has GTIDs node2 {new} lacks"
    );
    assert!(last > 0);
    sb.down();
}
