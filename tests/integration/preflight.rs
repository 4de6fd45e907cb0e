//! What orch checks before the first step of a plan or a recovery, on real MariaDB: its
//! own grants on every server the steps change (a switchover that lost its RESET SLAVE
//! half-way would leave no writable server), and replication channels (a server with a
//! second named connection is reported and never changed). Every refusal is checked to
//! have changed nothing.

use crate::plan::{plan_json, shape, steps, write_topology};
use crate::sandbox::{Sandbox, first, orch};
use crate::watch::{read_only, source_ip};

/// Runs `sql` as root on instance `i` without writing the binary log (a replica's own
/// GTID would be an errant transaction).
fn quietly(sb: &Sandbox, i: usize, sql: &str) {
    sb.root(i, &format!("SET sql_log_bin = 0; {sql}"));
}

fn codes(v: &serde_json::Value, key: &str) -> Vec<(String, String)> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["host"].as_str().unwrap().to_string(),
                b["code"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_missing_privilege_refuses_switchover_and_failover_before_any_change() {
    let sb = Sandbox::up(&["-n", "3"]);
    let state = sb.dir.join("state").to_str().unwrap().to_string();
    // A switchover to node2, planned and saved while orch still holds every grant.
    let switched = write_topology(&sb, "switch.yaml", &[Some(2), None, Some(2)]);
    let saved = sb.dir.join("switch.plan.json");
    let saved = saved.to_str().unwrap();
    let (code, _, err) = orch(&["plan", &switched, "-o", saved]);
    assert_eq!(code, 0, "{err}");
    // RESET SLAVE ALL needs RELOAD: the candidate of the switchover (node2) loses it.
    quietly(&sb, 2, "REVOKE RELOAD ON *.* FROM 'orch'@'127.%'");
    let star = write_topology(&sb, "star.yaml", &[None, Some(1), Some(1)]);
    let (code, status, err) = orch(&["status", &star, "--format", "json"]);
    assert_eq!(code, 2, "{err}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(
        codes(&status, "problems").contains(&("node2".into(), "missing-privilege".into())),
        "{status}"
    );
    assert!(
        status.to_string().contains("GRANT RELOAD ON *.* TO"),
        "{status}"
    );

    let before = shape(&sb, 3);
    // The saved plan is not stale (grants are not the topology's shape): the apply engine
    // refuses it before its first step, from the observation it runs against.
    let (code, out, err) = orch(&["apply", saved, "--state", &state]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("refused before any change"), "{out}\n{err}");
    assert!(
        crate::watch::history(&state)["runs"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("RELOAD")),
        "recorded with the reason"
    );
    assert_eq!(shape(&sb, 3), before, "nothing changed");
    let (code, plan) = plan_json(&switched, &[]);
    assert_eq!(code, 3, "blocked, nothing to run: {plan}");
    assert_eq!(steps(&plan), Vec::<String>::new(), "{plan}");
    assert_eq!(
        codes(&plan, "blocked"),
        [("node2".to_string(), "missing-privilege".to_string())],
        "{plan}"
    );
    let reason = plan["blocked"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("lacks RELOAD for RESET SLAVE ALL")
            && reason.contains("GRANT RELOAD ON *.* TO `orch`@`127.%`"),
        "{reason}"
    );
    let (code, out, err) = orch(&["apply", &switched, "--auto-approve", "--state", &state]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("missing-privilege") && err.contains("RELOAD"),
        "{err}"
    );
    assert_eq!(shape(&sb, 3), before, "nothing changed");
    assert_eq!(read_only(&sb, 1), "0");

    // A dead primary: the replicas lack RELOAD, so no successor can forget its source.
    // The failover is refused before any change; the dead primary is never asked.
    quietly(&sb, 3, "REVOKE RELOAD ON *.* FROM 'orch'@'127.%'");
    crate::sandbox::orch_ok(&["sandbox", "kill", sb.d(), "1"]);
    let (code, out, err) = orch(&["failover", &star, "--state", &state]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("refused before any change")
            && err.contains("RELOAD")
            && err.contains("GRANT RELOAD ON *.* TO"),
        "{err}"
    );
    for i in [2, 3] {
        assert_eq!(read_only(&sb, i), "1", "node{i} still read_only");
        assert_eq!(
            source_ip(&sb, i),
            crate::watch::ip(&sb, 1),
            "node{i} untouched"
        );
    }
    // With the grant back, the same failover goes through.
    for i in [2, 3] {
        quietly(&sb, i, "GRANT RELOAD ON *.* TO 'orch'@'127.%'");
    }
    let (code, out, err) = orch(&["failover", &star, "--state", &state]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("failover succeeded"), "{out}");
    sb.down();
}

#[test]
fn a_second_replication_channel_is_reported_and_never_changed() {
    let sb = Sandbox::up(&["-n", "3"]);
    let state = sb.dir.join("state").to_str().unwrap().to_string();
    // A named connection beside the default one (configured, never started).
    sb.root(
        3,
        "CHANGE MASTER 'other' TO MASTER_HOST='127.0.0.1', MASTER_PORT=9, MASTER_USER='nobody'",
    );
    let star = write_topology(&sb, "star.yaml", &[None, Some(1), Some(1)]);
    let (code, status, err) = orch(&["status", &star, "--format", "json"]);
    assert_eq!(code, 2, "{err}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        codes(&status, "problems"),
        [(
            "node3".to_string(),
            "multiple-replication-channels".to_string()
        )],
        "the default channel is still read as node3's replication: {status}"
    );
    let node3 = &status["hosts"][2];
    assert_eq!(
        node3["channels"],
        serde_json::json!(["", "other"]),
        "{node3}"
    );

    // Moving node3 under node2 is refused as a whole; nothing changes.
    let chain = write_topology(&sb, "chain.yaml", &[None, Some(1), Some(2)]);
    let before = shape(&sb, 3);
    let (code, plan) = plan_json(&chain, &[]);
    assert_eq!(code, 3, "{plan}");
    assert_eq!(
        codes(&plan, "blocked"),
        [(
            "node3".to_string(),
            "multiple-replication-channels".to_string()
        )],
        "{plan}"
    );
    let (code, out, err) = orch(&["apply", &chain, "--auto-approve", "--state", &state]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("multiple-replication-channels"), "{err}");
    assert_eq!(shape(&sb, 3), before);
    let channels = sb.root(3, "SHOW ALL SLAVES STATUS");
    assert_eq!(channels.len(), 2);
    assert_eq!(first(&channels, "Slave_SQL_Running"), "Yes");
    sb.down();
}
