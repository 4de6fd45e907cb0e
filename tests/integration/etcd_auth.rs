//! orch on an etcd with authentication (`etcdctl auth enable`): a watch with
//! `--etcd-user` and a password file leads, publishes and fails over across the expiry of
//! its tokens (etcd started with `--auth-token-ttl 1`); an apply with a wrong password, or
//! as a user without permission on orch's prefix, stops before changing anything and says
//! why. etcd runs on the sandbox's loopback address and is stopped by PID; the test reads
//! etcd's keys with etcdctl as root.

use std::process::Command;

use crate::sandbox::{Sandbox, first, orch, orch_ok};
use crate::watch::{Watch, history};
use crate::watch_ha::{EtcdServer, etcd_apply};
use crate::watch_http::{private_file, watched};

/// etcdctl against `etcd` (as root once authentication is on); its output, or a panic
/// with what it said.
fn etcdctl(etcd: &EtcdServer, root: bool, args: &[&str]) -> String {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.url()))
        .arg("--dial-timeout=2s");
    if root {
        cmd.arg("--user=root:root-password");
    }
    let out = cmd
        .args(args)
        .output()
        .expect("etcdctl is missing: scripts/install-deps.sh installs etcd-client");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "etcdctl {args:?}: {text}");
    text
}

/// The value of `key`, read as root.
fn value(etcd: &EtcdServer, key: &str) -> Option<String> {
    let out = etcdctl(etcd, true, &["get", key, "--print-value-only"]);
    let v = out.trim();
    (!v.is_empty()).then(|| v.to_string())
}

/// Users `orch` (read and write under `orch/`) and `nobody` (no role), and root; then
/// authentication on.
fn users(etcd: &EtcdServer) {
    for args in [
        &["user", "add", "root:root-password"][..],
        &["role", "add", "orch"],
        &[
            "role",
            "grant-permission",
            "orch",
            "--prefix=true",
            "readwrite",
            "orch/",
        ],
        &["user", "add", "orch:orch-password"],
        &["user", "grant-role", "orch", "orch"],
        &["user", "add", "nobody:nobody-password"],
        &["auth", "enable"],
    ] {
        etcdctl(etcd, false, args);
    }
}

/// The seconds the leader key's lease has left (5 right after a renewal).
fn remaining(etcd: &EtcdServer) -> i64 {
    let got = etcdctl(etcd, true, &["get", "orch/leader", "--write-out=json"]);
    let v: serde_json::Value = serde_json::from_str(got.trim()).unwrap();
    let lease = v["kvs"][0]["lease"]
        .as_i64()
        .expect("the leader key has a lease");
    let out = etcdctl(etcd, true, &["lease", "timetolive", &format!("{lease:x}")]);
    // "lease 694d... granted with TTL(5s), remaining(4s)"
    out.split("remaining(")
        .nth(1)
        .and_then(|r| r.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"))
}

fn read_only(sb: &Sandbox, i: usize) -> String {
    crate::watch::read_only(sb, i)
}

#[test]
fn orch_authenticates_to_etcd_and_renews_its_token() {
    let (sb, file, state) = watched("");
    let etcd = EtcdServer::start_with(&sb, &["--auth-token-ttl", "1"]);
    users(&etcd);
    let url = etcd.url();
    let good = private_file(&sb, "etcd-orch.password", "orch-password\n");
    let wrong = private_file(&sb, "etcd-wrong.password", "not-the-password\n");
    let nobody = private_file(&sb, "etcd-nobody.password", "nobody-password\n");

    // Refused: nothing changes (node3's replication stays stopped), nothing is recorded.
    sb.root(3, "STOP SLAVE");
    let apply = |user: &str, password: &str| {
        let mut args = etcd_apply(&file, &state, &url);
        args.extend(["--etcd-user", user, "--etcd-password-file", password]);
        orch(&args)
    };
    let (code, _, err) = apply("orch", &wrong);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("authentication failed"), "{err}");
    assert!(
        err.contains("check --etcd-user and --etcd-password-file"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
    let (code, _, err) = apply("nobody", &nobody);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("permission denied"), "{err}");
    assert!(err.contains("--prefix=true readwrite"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(
        first(&sb.root(3, "SHOW SLAVE STATUS"), "Slave_SQL_Running"),
        "No"
    );
    assert_eq!(history(&state)["runs"], serde_json::json!([]));
    // With the right user, the apply runs under the lock in etcd.
    let (code, out, err) = apply("orch", &good);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        first(&sb.root(3, "SHOW SLAVE STATUS"), "Slave_SQL_Running"),
        "Yes"
    );

    // A watch leads and publishes; its tokens expire every second, it goes on.
    let w = Watch::start_with(
        &file,
        &state,
        &[
            "--etcd",
            &url,
            "--etcd-user",
            "orch",
            "--etcd-password-file",
            &good,
        ],
    );
    w.wait_for("leading", 15);
    let published = "orch/clusters/sandbox/primary";
    crate::sandbox::eventually(
        "node1 published",
        std::time::Duration::from_secs(10),
        || value(&etcd, published) == Some(sb.address(1)),
    );
    // Its lease renewed (by a call with a new token) once the first token has expired:
    // still the leader.
    let led = std::time::Instant::now();
    crate::sandbox::eventually(
        "a renewal after the first token expired",
        std::time::Duration::from_secs(15),
        || led.elapsed() > std::time::Duration::from_secs(3) && remaining(&etcd) >= 4,
    );
    assert!(!w.log().contains("no longer the leader"), "{}", w.log());
    orch_ok(&["sandbox", "kill", sb.d(), "1"]);
    w.wait_for("failover done", 30);
    let new = (2..=3)
        .find(|&k| read_only(&sb, k) == "0")
        .expect("a new primary");
    crate::sandbox::eventually(
        "the successor published",
        std::time::Duration::from_secs(10),
        || value(&etcd, published) == Some(sb.address(new)),
    );
    assert!(!w.log().contains("orch-password"), "{}", w.log());
    w.stop();
    drop(etcd);
    sb.down();
}
