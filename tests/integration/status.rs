//! `orch status` against real MariaDB sandboxes: healthy shapes, a killed replica, a frozen
//! primary (status returns within its timeouts), a broken SQL thread, an errant
//! transaction, a host that is not there, and wrong credentials; after a failover and a
//! later switchover by apply, `--state` judges against the primary apply made.

use std::time::{Duration, Instant};

use crate::sandbox::{Sandbox, eventually, orch};

fn status_json(topology: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["status", topology, "--format", "json"];
    args.extend_from_slice(extra);
    let (code, out, err) = orch(&args);
    let json = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (code, json)
}

fn problems(json: &serde_json::Value) -> Vec<(String, String)> {
    json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["code"].as_str().unwrap().to_string(),
                p["host"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn topology(sb: &Sandbox) -> String {
    sb.dir.join("topology.yaml").to_str().unwrap().to_string()
}

#[test]
fn healthy_star_then_faults_on_real_servers() {
    let sb = Sandbox::up(&["-n", "3"]);
    let t = topology(&sb);
    let (code, out, err) = orch(&["status", &t]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("node1") && out.contains("├─ node2") && out.contains("└─ node3"),
        "{out}"
    );
    assert!(out.contains("no problems"), "{out}");
    let (code, json) = status_json(&t, &[]);
    assert_eq!(code, 0);
    assert_eq!(json["hosts"].as_array().unwrap().len(), 3);
    // The JSON reads back into the snapshot value (what `plan --observed` will load).
    let snapshot: orch::observe::Snapshot = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(serde_json::to_value(&snapshot).unwrap(), json);
    assert_eq!(json["hosts"][1]["replication"]["gtid_mode"], "Slave_Pos");
    assert_eq!(json["hosts"][0]["replicas"].as_array().unwrap().len(), 2);

    // A write reaches both replicas: positions agree.
    sb.root(1, "CREATE DATABASE t");
    sb.root(1, "CREATE TABLE t.x (id INT PRIMARY KEY)");
    sb.root(1, "INSERT INTO t.x VALUES (1)");
    eventually("replicas caught up", Duration::from_secs(10), || {
        let (_, json) = status_json(&t, &[]);
        let pos: Vec<_> = (0..3)
            .map(|i| {
                json["hosts"][i]["gtid"]["current_pos"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        pos[0] == "0-1-3" && pos[1] == pos[0] && pos[2] == pos[0]
    });

    // An errant transaction on node3.
    sb.root(3, "SET GLOBAL read_only = 0");
    sb.root(3, "INSERT INTO t.x VALUES (1000)");
    sb.root(3, "SET GLOBAL read_only = 1");
    let (code, json) = status_json(&t, &[]);
    assert_eq!(code, 2);
    assert!(
        problems(&json).contains(&("errant-gtid".into(), "node3".into())),
        "{json}"
    );

    // A row conflict stops node2's SQL thread with an error.
    sb.root(2, "SET sql_log_bin = 0; SET GLOBAL read_only = 0; INSERT INTO t.x VALUES (2); SET GLOBAL read_only = 1");
    sb.root(1, "INSERT INTO t.x VALUES (2)");
    eventually("node2's SQL thread stops", Duration::from_secs(10), || {
        let (_, json) = status_json(&t, &[]);
        json["hosts"][1]["replication"]["sql_running"] == false
    });
    let (_, json) = status_json(&t, &[]);
    assert_eq!(
        json["hosts"][1]["replication"]["last_sql_error"]["errno"], 1062,
        "{json}"
    );
    assert!(problems(&json).contains(&("replication-stopped".into(), "node2".into())));

    // A killed replica is unreachable, refused.
    crate::sandbox::orch_ok(&["sandbox", "kill", sb.d(), "3"]);
    eventually("node3 refused", Duration::from_secs(10), || {
        let (_, json) = status_json(&t, &[]);
        json["hosts"][2]["cause"] == "refused"
    });
    let (_, json) = status_json(&t, &[]);
    assert!(problems(&json).contains(&("unreachable".into(), "node3".into())));
    assert!(
        !problems(&json).iter().any(|(c, _)| c == "unknown-replica"),
        "{json}"
    );

    // A frozen primary: status answers within connect + read timeouts, and reports the
    // primary unreachable; once the replicas lost it too, dead.
    crate::sandbox::orch_ok(&["sandbox", "freeze", sb.d(), "1"]);
    let started = Instant::now();
    let (code, json) = status_json(&t, &["--connect-timeout", "1s", "--read-timeout", "1s"]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(code, 2);
    assert_eq!(json["hosts"][0]["cause"], "hung_after_connect", "{json}");
    let codes = problems(&json);
    assert!(
        codes.contains(&("unreachable-primary".into(), "node1".into()))
            || codes.contains(&("dead-primary".into(), "node1".into())),
        "{json}"
    );
    crate::sandbox::orch_ok(&["sandbox", "thaw", sb.d(), "1"]);
    sb.down();
}

#[test]
fn chain_and_tree_show_their_shape_and_a_missing_host_and_bad_password() {
    let sb = Sandbox::up(&["-n", "4", "--shape", "chain"]);
    let t = topology(&sb);
    let (code, out, err) = orch(&["status", &t]);
    assert_eq!(code, 0, "{out}{err}");
    // node4 is three levels down.
    let line = out.lines().find(|l| l.contains("node4")).unwrap();
    assert!(line.starts_with("      └─ node4"), "{out}");
    let (_, json) = status_json(&t, &[]);
    assert_eq!(
        json["hosts"][3]["replication"]["source_host"],
        json["hosts"][2]["address"]
            .as_str()
            .unwrap()
            .split(':')
            .next()
            .unwrap()
    );

    // A host in the file that is not there.
    let text = std::fs::read_to_string(&t).unwrap();
    let node1 = json["hosts"][0]["address"].as_str().unwrap().to_string();
    let ghost = node1.replace(".1:", ".9:");
    let extra = sb.dir.join("extra.yaml");
    std::fs::write(
        &extra,
        format!("{text}  ghost: {{ address: \"{ghost}\", dc: local, source: node1 }}\n"),
    )
    .unwrap();
    let (code, json) = status_json(extra.to_str().unwrap(), &[]);
    assert_eq!(code, 2);
    assert_eq!(json["hosts"][4]["cause"], "refused");
    assert!(problems(&json).contains(&("unreachable".into(), "ghost".into())));

    // Wrong password: exit 1, said clearly, the password never printed.
    let bad = sb.dir.join("bad.yaml");
    let secret = "Wr0ngPassw0rd-xyz";
    std::fs::write(
        &bad,
        text.replace(
            "password_file: secrets/orch.password",
            &format!("password: {secret}"),
        ),
    )
    .unwrap();
    let (code, out, err) = orch(&["status", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("access denied"), "{err}");
    assert!(!out.contains(secret) && !err.contains(secret));
    sb.down();

    let sb = Sandbox::up(&["-n", "5", "--shape", "tree"]);
    let (code, out, err) = orch(&["status", &topology(&sb), "--table"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("intermediate"), "{out}");
    sb.down();
}

#[test]
fn discover_from_a_leaf_writes_a_topology_that_validates_and_status_seed_agrees() {
    let sb = Sandbox::up(&["-n", "5", "--shape", "tree"]);
    let password = std::fs::read_to_string(sb.dir.join("secrets/orch.password")).unwrap();
    let (_, json) = status_json(&topology(&sb), &[]);
    let address = |i: usize| json["hosts"][i]["address"].as_str().unwrap().to_string();
    let out_file = sb.dir.join("discovered.yaml");
    // Seed at node4, a leaf under the intermediate node2: the crawl goes up and down.
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_orch"))
            .args(args)
            .env("ORCH_PASSWORD", password.trim())
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = run(&[
        "discover",
        "--seed",
        &address(3),
        "--cluster",
        "found",
        "-o",
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let yaml = std::fs::read_to_string(&out_file).unwrap();
    assert!(!yaml.contains(password.trim()), "a secret in the output");
    assert!(yaml.contains("password: ${ORCH_PASSWORD}"), "{yaml}");
    let (code, out, err) = orch(&["validate", out_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{yaml}\n{out}{err}");
    assert!(out.contains("5 hosts"), "{out}");
    // The same sources as the sandbox's own file: node4 and node5 under node2.
    let node2 = address(1);
    let node2_host = node2.split(':').next().unwrap();
    for leaf in [address(3), address(4)] {
        let line = yaml
            .lines()
            .find(|l| l.contains(&format!("address: \"{leaf}\"")))
            .unwrap();
        assert!(line.contains(&format!("source: {node2_host} ")), "{line}");
    }

    let (code, out, err) = run(&["status", "--seed", &address(3)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("intermediate") && out.contains("no problems"),
        "{out}"
    );
    sb.down();
}

#[test]
fn tls_to_a_sandbox_that_requires_it() {
    let sb = Sandbox::up(&["-n", "2", "--tls"]);
    let t = topology(&sb);
    let text = std::fs::read_to_string(&t).unwrap();
    assert!(
        text.contains("tls: { mode: verify_identity, ca_file: tls/ca.pem }"),
        "{text}"
    );
    let variant = |name: &str, from: &str, to: &str| {
        let path = sb.dir.join(name);
        std::fs::write(&path, text.replace(from, to)).unwrap();
        path.to_str().unwrap().to_string()
    };
    // verify_identity with the sandbox CA: the certificate names each instance's IP.
    let (code, out, err) = orch(&["status", &t]);
    assert_eq!(code, 0, "{out}{err}");
    for (file, mode) in [
        (
            variant("ca.yaml", "mode: verify_identity", "mode: verify_ca"),
            "verify_ca",
        ),
        (
            variant(
                "req.yaml",
                "{ mode: verify_identity, ca_file: tls/ca.pem }",
                "{ mode: required }",
            ),
            "required",
        ),
    ] {
        let (code, out, err) = orch(&["status", &file]);
        assert_eq!(code, 0, "{mode}: {out}{err}");
    }
    // orch's account requires TLS: without it, access is denied.
    let plain = variant(
        "plain.yaml",
        "  tls: { mode: verify_identity, ca_file: tls/ca.pem }\n",
        "",
    );
    let (code, _, err) = orch(&["status", &plain]);
    assert_eq!(code, 1);
    assert!(err.contains("access denied"), "{err}");
    // A CA that did not sign the server's certificate is refused.
    // (another throw-away CA, made the way the sandbox makes its own)
    let other = sb.dir.join("other");
    orch::sandbox::tls::make_certs(&other, &["127.0.0.1".parse().unwrap()]).unwrap();
    let wrong = variant("wrong.yaml", "ca_file: tls/ca.pem", "ca_file: other/ca.pem");
    let (code, _, err) = orch(&["status", &wrong]);
    assert_eq!(code, 1);
    assert!(
        err.contains("UnknownIssuer") || err.contains("certificate"),
        "{err}"
    );
    sb.down();
}

#[test]
fn drift_on_real_servers_writable_replica_moved_replica_unknown_replica_slow_settings() {
    let sb = Sandbox::up(&["-n", "3"]);
    let t = topology(&sb);
    let ip = |i: usize| sb.address(i).split(':').next().unwrap().to_string();
    sb.root(2, "SET GLOBAL read_only = 0");
    sb.root(2, "SET GLOBAL slave_net_timeout = 60");
    sb.root(1, "SET GLOBAL read_only = 1");
    // node3 moves under node2.
    sb.root(3, "STOP SLAVE");
    sb.root(3, &format!("CHANGE MASTER TO MASTER_HOST = '{}'", ip(2)));
    sb.root(3, "START SLAVE");
    eventually(
        "node3 replicates from node2",
        Duration::from_secs(10),
        || {
            let (_, json) = status_json(&t, &[]);
            json["hosts"][2]["replication"]["source_host"] == ip(2).as_str()
                && json["hosts"][2]["replication"]["io"] == "running"
        },
    );
    let (code, json) = status_json(&t, &[]);
    assert_eq!(code, 2);
    let got = problems(&json);
    for want in [
        ("writable-replica", "node2"),
        ("slow-failure-detection", "node2"),
        ("read-only-primary", "node1"),
        ("wrong-source", "node3"),
    ] {
        assert!(
            got.contains(&(want.0.into(), want.1.into())),
            "{want:?} in {got:?}"
        );
    }
    // A file that leaves node3 out: node2 has a replica the file does not know.
    let text = std::fs::read_to_string(&t).unwrap();
    let without = sb.dir.join("without-node3.yaml");
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("node3:"))
        .collect();
    std::fs::write(&without, kept.join("\n") + "\n").unwrap();
    let (_, json) = status_json(without.to_str().unwrap(), &[]);
    assert!(
        problems(&json).contains(&("unknown-replica".into(), sb.address(3))),
        "{:?}",
        problems(&json)
    );
    sb.down();
}

/// MariaDB has no `gtid_purged`: orch reads it from the oldest binary log's `Gtid_list`.
/// After `FLUSH BINARY LOGS` and `PURGE BINARY LOGS TO` the new file, the primary's
/// `purged` is its position at the flush, and a replica that was stopped before the purged
/// writes is refused with error 1236 when it starts again, as the simulator models it.
#[test]
fn purged_binlogs_show_in_status_and_refuse_a_replica_that_needs_them() {
    let sb = Sandbox::up(&["-n", "3"]);
    let t = topology(&sb);
    let gtid = |json: &serde_json::Value, i: usize, field: &str| {
        json["hosts"][i]["gtid"][field]
            .as_str()
            .unwrap_or_else(|| panic!("hosts[{i}].gtid.{field} in {json}"))
            .to_string()
    };
    let (_, json) = status_json(&t, &[]);
    for i in 0..3 {
        assert_eq!(gtid(&json, i, "purged"), "", "nothing purged yet: {json}");
    }

    sb.root(3, "STOP SLAVE");
    // Two domains, and two server_ids in domain 1: the Gtid_list lists every
    // (domain, server_id) pair, and the position keeps each domain's most recent one.
    sb.root(
        1,
        "CREATE DATABASE p; CREATE TABLE p.x (id INT PRIMARY KEY); \
         SET gtid_domain_id = 1; INSERT INTO p.x VALUES (1); \
         SET server_id = 7; INSERT INTO p.x VALUES (2)",
    );
    let at_flush = crate::sandbox::first(&sb.root(1, "SELECT @@gtid_binlog_pos AS p"), "p");
    assert_eq!(at_flush, "0-1-2,1-7-2");
    sb.root(1, "FLUSH BINARY LOGS");
    let current = crate::sandbox::first(&sb.root(1, "SHOW MASTER STATUS"), "File");
    // PURGE quietly keeps a file that a replica's binlog dump thread still reads or that
    // is not yet checkpointed, so it is repeated until only the new file is left.
    eventually(
        "the purge of every older binlog",
        Duration::from_secs(10),
        || {
            sb.root(1, &format!("PURGE BINARY LOGS TO '{current}'"));
            sb.root(1, "SHOW BINARY LOGS").len() == 1
        },
    );
    sb.root(1, "INSERT INTO p.x VALUES (3)");

    let (_, json) = status_json(&t, &[]);
    assert_eq!(gtid(&json, 0, "purged"), at_flush, "{json}");
    assert_eq!(gtid(&json, 1, "purged"), "", "the replica purged nothing");
    let snapshot: orch::observe::Snapshot = serde_json::from_value(json.clone()).unwrap();
    let primary = snapshot.hosts[0].state.info().unwrap();
    assert_eq!(
        primary.gtid.purged().unwrap().to_string(),
        at_flush,
        "Gtids::purged parses it"
    );

    // node2 streamed through the purge and keeps up; node3 needs what was purged.
    sb.root(3, "START SLAVE");
    eventually("node3 refused with 1236", Duration::from_secs(10), || {
        let (_, json) = status_json(&t, &[]);
        json["hosts"][2]["replication"]["last_io_error"]["errno"] == 1236
    });
    let (_, json) = status_json(&t, &[]);
    let message = json["hosts"][2]["replication"]["last_io_error"]["message"]
        .as_str()
        .unwrap();
    assert!(
        message.contains("required binlog files have been purged"),
        "{message}"
    );
    assert_eq!(json["hosts"][2]["replication"]["io"], "stopped", "{json}");
    eventually("node2 caught up", Duration::from_secs(10), || {
        let (_, json) = status_json(&t, &[]);
        gtid(&json, 1, "current_pos") == gtid(&json, 0, "binlog_pos")
            && json["hosts"][1]["replication"]["io"] == "running"
    });
    sb.down();
}

/// Issue 8, item 8 on real servers: node3 under node2, a replica restarted with
/// log_slave_updates=OFF, gets nothing of the primary's while its lag reads 0, and an
/// errant write on it is found against the primary; a removed intermediate's own replica is
/// reported and detached with it; a detached server shows as standalone, not primary.
#[test]
fn status_sees_a_source_that_passes_nothing_on_and_a_removed_subtree() {
    let sb = Sandbox::up(&["-n", "3"]);
    let cnf = sb.dir.join("node2/my.cnf");
    let text = std::fs::read_to_string(&cnf).unwrap();
    std::fs::write(
        &cnf,
        text.replace("log-slave-updates = ON", "log-slave-updates = OFF"),
    )
    .unwrap();
    crate::sandbox::orch_ok(&["sandbox", "stop", sb.d(), "2"]);
    crate::sandbox::orch_ok(&["sandbox", "start", sb.d(), "2"]);
    let node2_ip = sb.address(2).split(':').next().unwrap().to_string();
    sb.root(
        3,
        &format!("STOP SLAVE; CHANGE MASTER TO MASTER_HOST='{node2_ip}'; START SLAVE"),
    );
    sb.root(1, "CREATE DATABASE x");
    eventually("node2 has x", Duration::from_secs(10), || {
        !sb.root(2, "SHOW DATABASES LIKE 'x'").is_empty()
    });
    let chain = crate::plan::write_topology(&sb, "chain.yaml", &[None, Some(1), Some(2)]);
    let (code, json) = status_json(&chain, &[]);
    assert_eq!(code, 2, "{json}");
    assert_eq!(
        problems(&json),
        [(
            "source-without-log-replica-updates".to_string(),
            "node3".to_string()
        )],
        "{json}"
    );
    sb.root(
        3,
        "SET GLOBAL read_only = OFF; CREATE DATABASE errant; SET GLOBAL read_only = ON",
    );
    let (_, json) = status_json(&chain, &[]);
    assert!(
        problems(&json).contains(&("errant-gtid".to_string(), "node3".to_string())),
        "{json}"
    );

    // A file that names only node1: node2 is removed, and so is its replica node3.
    let alone = crate::plan::write_topology(&sb, "alone.yaml", &[None]);
    let (_, json) = status_json(&alone, &[]);
    let unknown: Vec<String> = problems(&json)
        .into_iter()
        .filter(|(c, _)| c == "unknown-replica")
        .map(|(_, h)| h)
        .collect();
    assert_eq!(unknown, [sb.address(2), sb.address(3)], "{json}");
    let (code, plan) = crate::plan::plan_json(&alone, &["--detach-removed"]);
    assert_eq!(code, 2, "{plan}");
    crate::plan::run_steps(&alone, &plan);
    for i in [2, 3] {
        assert!(
            sb.root(i, "SHOW SLAVE STATUS").is_empty(),
            "node{i} detached"
        );
    }
    // Declared again as node1's replicas, the detached servers are standalone, not primaries.
    let (_, out, _) = orch(&["status", &topology(&sb)]);
    for i in [2, 3] {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("node{i} ")))
            .unwrap_or_else(|| panic!("{out}"));
        assert!(line.contains("standalone"), "{out}");
    }
    sb.down();
}

/// Semi-synchronous replication as status sees it: replicas that would acknowledge under
/// a primary that waits for none; then a semi-sync primary whose replica stopped
/// acknowledging, fallen back to asynchronous after its first wait timed out.
#[test]
fn a_primary_without_semi_sync_or_fallen_back_from_it() {
    let sb = Sandbox::up(&["-n", "2"]);
    let t = topology(&sb);
    let semi_replica = |on: &str| {
        sb.root(
            2,
            &format!(
                "SET GLOBAL rpl_semi_sync_slave_enabled = {on}; STOP SLAVE IO_THREAD; START SLAVE IO_THREAD"
            ),
        );
    };
    semi_replica("ON");
    let (code, json) = status_json(&t, &[]);
    assert_eq!(code, 2, "{json}");
    assert_eq!(
        problems(&json),
        [("semi-sync-off-on-primary".to_string(), "node1".to_string())],
        "{json}"
    );
    // A semi-sync primary with its semi-sync replica connected: nothing to say.
    sb.root(
        1,
        "SET GLOBAL rpl_semi_sync_master_timeout = 200; SET GLOBAL rpl_semi_sync_master_enabled = ON",
    );
    eventually(
        "the semi-sync replica connected",
        Duration::from_secs(10),
        || status_json(&t, &[]).0 == 0,
    );
    // Its replica no longer acknowledges: the next commit waits 200 ms, then the primary
    // carries on asynchronously.
    semi_replica("OFF");
    sb.root(1, "CREATE DATABASE after_the_fall");
    let (code, json) = status_json(&t, &[]);
    assert_eq!(code, 2, "{json}");
    assert_eq!(
        problems(&json),
        [("semi-sync-fell-back".to_string(), "node1".to_string())],
        "{json}"
    );
    assert_eq!(
        json["hosts"][0]["semi_sync"]["source_active"], false,
        "{json}"
    );
    sb.down();
}

/// The primary orch records follows a switchover by `orch apply` as it follows a failover:
/// after `orch failover` made node2 the primary and a later apply switched over to node3
/// (the file naming node3), `status --state` judges against node3, and finds nothing wrong
/// (not a failover drift back to node2 and node3 a writable replica).
#[test]
fn status_judges_against_the_primary_an_apply_switched_over_to() {
    let sb = Sandbox::up(&["-n", "3"]);
    let state = sb.dir.join("state").to_str().unwrap().to_string();
    let file = crate::plan::write_topology(&sb, "star.yaml", &[None, Some(1), Some(1)]);
    let (code, out, err) = orch(&[
        "failover", &file, "--force", "--to", "node2", "--state", &state,
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (_, json) = status_json(&file, &["--state", &state]);
    assert!(
        problems(&json).contains(&("failover-drift".into(), "node1".into())),
        "{json}"
    );
    // The file accepts the failover without node1 (fenced, out), then asks for node3.
    let node3 = crate::plan::write_topology(&sb, "node3.yaml", &[None, Some(3), None]);
    let text = std::fs::read_to_string(&node3).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("node1:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&node3, text).unwrap();
    let (code, out, err) = orch(&["apply", &node3, "--auto-approve", "--state", &state]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, json) = status_json(&node3, &["--state", &state]);
    assert_eq!((code, problems(&json)), (0, vec![]), "{json}");
    sb.down();
}
