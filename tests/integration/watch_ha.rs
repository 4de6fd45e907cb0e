//! Several `orch watch` on one etcd, on real MariaDB: one leader; only it fails a killed
//! primary over (exactly one recovery), the follower follows the new primary and sends
//! actions to the leader; the published primary key follows the failover; the leader
//! killed, the follower leads within the lease TTL. etcd (Debian's etcd-server) runs on
//! the sandbox's own loopback address and is stopped by PID, even when a test fails.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::sandbox::{Sandbox, eventually, first, orch_ok};
use crate::watch::{Watch, ip};
use crate::watch_http::{http, recoveries, token_file, watched};

/// A single-member etcd on `HOST:2379`, its data in the sandbox; killed on drop.
pub(crate) struct EtcdServer {
    child: Child,
    addr: String,
    tls: Option<EtcdTls>,
}

/// The PEM files of an etcd that serves only TLS and requires client certificates.
pub(crate) struct EtcdTls {
    /// Signed the server's and the clients' certificates (etcd's --trusted-ca-file).
    pub(crate) ca: PathBuf,
    /// etcd's --cert-file and --key-file.
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    /// What the test's own client (etcdctl) shows.
    pub(crate) client_cert: PathBuf,
    pub(crate) client_key: PathBuf,
}

impl EtcdServer {
    /// Plain HTTP, no authentication.
    pub(crate) fn start(sb: &Sandbox) -> EtcdServer {
        EtcdServer::launch(sb, None, &[])
    }

    /// Plain HTTP, with more of etcd's flags.
    pub(crate) fn start_with(sb: &Sandbox, flags: &[&str]) -> EtcdServer {
        EtcdServer::launch(sb, None, flags)
    }

    /// HTTPS only, with `--client-cert-auth`: a client needs a certificate signed by
    /// `tls.ca`. The test looks at its keys with etcdctl and `tls`' client certificate.
    pub(crate) fn start_tls(sb: &Sandbox, tls: EtcdTls) -> EtcdServer {
        EtcdServer::launch(sb, Some(tls), &[])
    }

    fn launch(sb: &Sandbox, tls: Option<EtcdTls>, flags: &[&str]) -> EtcdServer {
        let host = ip(sb, 1);
        let addr = format!("{host}:2379");
        let client_url = format!("{}://{addr}", if tls.is_some() { "https" } else { "http" });
        let mut args = vec![
            "--name".to_string(),
            "orch-test".into(),
            "--data-dir".into(),
            sb.dir.join("etcd").to_str().unwrap().into(),
            "--listen-client-urls".into(),
            client_url.clone(),
            "--advertise-client-urls".into(),
            client_url,
            "--listen-peer-urls".into(),
            format!("http://{host}:2380"),
            "--initial-advertise-peer-urls".into(),
            format!("http://{host}:2380"),
            "--initial-cluster".into(),
            format!("orch-test=http://{host}:2380"),
        ];
        if let Some(t) = &tls {
            for (flag, path) in [
                ("--cert-file", &t.cert),
                ("--key-file", &t.key),
                ("--trusted-ca-file", &t.ca),
            ] {
                args.push(flag.into());
                args.push(path.to_str().unwrap().into());
            }
            args.push("--client-cert-auth".into());
        }
        args.extend(flags.iter().map(|f| f.to_string()));
        let child = Command::new("etcd")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd is missing: scripts/install-deps.sh installs etcd-server");
        let e = EtcdServer { child, addr, tls };
        eventually("etcd up", Duration::from_secs(20), || {
            std::net::TcpStream::connect(&e.addr).is_ok()
                && e.range("orch-test/probe", None).is_some()
        });
        e
    }

    /// What orch is given: `http(s)://HOST:2379`.
    pub(crate) fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// etcd's answer to a range request for `key` (at `revision`, else now): through its
    /// JSON gateway, or with etcdctl over TLS. None when etcd did not answer.
    fn range(&self, key: &str, revision: Option<i64>) -> Option<serde_json::Value> {
        let text = match &self.tls {
            None => {
                let mut body = serde_json::json!({"key": b64(key.as_bytes())});
                if let Some(r) = revision {
                    body["revision"] = r.to_string().into();
                }
                let (code, text) = http(
                    &self.addr,
                    "POST",
                    "/v3/kv/range",
                    None,
                    Some(&body.to_string()),
                );
                if code != 200 {
                    return None;
                }
                text
            }
            Some(t) => {
                let mut args = vec![
                    format!("--endpoints={}", self.url()),
                    format!("--cacert={}", t.ca.display()),
                    format!("--cert={}", t.client_cert.display()),
                    format!("--key={}", t.client_key.display()),
                    "--dial-timeout=2s".into(),
                    "--command-timeout=2s".into(),
                    "--write-out=json".into(),
                    "get".into(),
                    key.into(),
                ];
                if let Some(r) = revision {
                    args.push(format!("--rev={r}"));
                }
                let out = Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .args(&args)
                    .output()
                    .expect("etcdctl is missing: scripts/install-deps.sh installs etcd-client");
                if !out.status.success() {
                    return None;
                }
                String::from_utf8(out.stdout).unwrap()
            }
        };
        Some(serde_json::from_str(&text).unwrap())
    }

    fn answered(&self, key: &str, revision: Option<i64>) -> serde_json::Value {
        self.range(key, revision)
            .unwrap_or_else(|| panic!("etcd {} did not answer", self.url()))
    }

    /// The value of `key`, if any.
    pub(crate) fn get(&self, key: &str) -> Option<String> {
        value(&self.answered(key, None))
    }

    /// The value `key` had at `revision`, if any.
    pub(crate) fn get_at(&self, key: &str, revision: i64) -> Option<String> {
        value(&self.answered(key, Some(revision)))
    }

    /// etcd's revision: one more for each change to any key.
    pub(crate) fn revision(&self) -> i64 {
        // The gateway writes 64-bit numbers as strings, etcdctl as numbers.
        match &self.answered("orch-test/probe", None)["header"]["revision"] {
            serde_json::Value::String(s) => s.parse().unwrap(),
            v => v.as_i64().unwrap(),
        }
    }
}

/// The first key's value in a range answer.
/// `orch apply FILE --auto-approve --state STATE --etcd URL`: an apply that takes the
/// cluster lock in etcd (callers append more flags).
pub(crate) fn etcd_apply<'a>(file: &'a str, state: &'a str, url: &'a str) -> Vec<&'a str> {
    vec![
        "apply",
        file,
        "--auto-approve",
        "--state",
        state,
        "--etcd",
        url,
    ]
}

fn value(range: &serde_json::Value) -> Option<String> {
    let value = range["kvs"][0]["value"].as_str()?;
    Some(String::from_utf8(orch::httpc::base64_decode(value).unwrap()).unwrap())
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn b64(bytes: &[u8]) -> String {
    orch::httpc::base64(bytes)
}

/// Which of the API addresses says its process leads.
fn leaders(apis: &[&str]) -> Vec<usize> {
    (0..apis.len())
        .filter(|&i| {
            std::net::TcpStream::connect(apis[i]).is_ok() && {
                let (code, body) = http(apis[i], "GET", "/api/v1/leader", None, None);
                code == 200 && body.contains(r#""this_process":true"#)
            }
        })
        .collect()
}

/// A sandbox, an etcd, and two watchers on it with their APIs (on the sandbox's address,
/// with a token) and state stores, once one of them leads.
struct Pair {
    sb: Sandbox,
    etcd: EtcdServer,
    token: String,
    addresses: [String; 2],
    states: [String; 2],
    watches: Vec<Option<Watch>>,
    leader: usize,
    follower: usize,
}

impl Pair {
    fn start() -> Pair {
        let (sb, file, _) = watched("");
        let etcd = EtcdServer::start(&sb);
        let (token_path, token) = token_file(&sb);
        let url = etcd.url();
        let addresses = [
            format!("{}:18081", ip(&sb, 1)),
            format!("{}:18082", ip(&sb, 1)),
        ];
        let states = [
            sb.dir.join("state-a").to_str().unwrap().to_string(),
            sb.dir.join("state-b").to_str().unwrap().to_string(),
        ];
        let watches = (0..2)
            .map(|i| {
                let args = [
                    "--etcd",
                    &url,
                    "--listen",
                    &addresses[i],
                    "--api-token-file",
                    &token_path,
                ];
                Some(Watch::start_with(&file, &states[i], &args))
            })
            .collect();
        let apis: Vec<&str> = addresses.iter().map(String::as_str).collect();
        eventually("one leader", Duration::from_secs(15), || {
            leaders(&apis).len() == 1
        });
        let leader = leaders(&apis)[0];
        Pair {
            sb,
            etcd,
            token,
            addresses,
            states,
            watches,
            leader,
            follower: 1 - leader,
        }
    }
}

#[test]
fn watchers_on_etcd_elect_one_leader_that_alone_fails_over_and_publishes() {
    let Pair {
        sb,
        etcd,
        token,
        addresses,
        states,
        mut watches,
        leader,
        follower,
    } = Pair::start();
    let apis: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let key = "orch/clusters/sandbox/primary";
    eventually("node1 published", Duration::from_secs(10), || {
        etcd.get(key) == Some(sb.address(1))
    });
    eventually(
        "the follower knows the leader",
        Duration::from_secs(10),
        || {
            let (_, body) = http(apis[follower], "GET", "/api/v1/leader", None, None);
            body.contains(apis[leader])
        },
    );
    // An action on the follower is sent to the leader, and changes nothing there.
    let (code, body) = http(
        apis[follower],
        "POST",
        "/api/v1/clusters/sandbox/ack",
        Some(&token),
        None,
    );
    assert_eq!(code, 307, "{body}");
    assert!(body.contains(apis[leader]), "{body}");

    // The primary dies: exactly one failover, by the leader; the key follows.
    orch_ok(&["sandbox", "kill", sb.d(), "1"]);
    watches[leader]
        .as_ref()
        .unwrap()
        .wait_for("failover done", 20);
    let new = (2..=3)
        .find(|&k| crate::watch::read_only(&sb, k) == "0")
        .expect("a new primary");
    eventually("the new primary published", Duration::from_secs(10), || {
        etcd.get(key) == Some(sb.address(new))
    });
    watches[follower]
        .as_ref()
        .unwrap()
        .refrained_or_followed(10);
    assert_eq!(recoveries(&states[leader]), 1);
    assert_eq!(recoveries(&states[follower]), 0);
    // The follower follows the new primary.
    eventually("the follower follows", Duration::from_secs(10), || {
        let (_, body) = http(apis[follower], "GET", "/api/v1/clusters", None, None);
        body.contains(&format!(r#""primary":"node{new}""#))
    });
    // And both judge against it, as `status --state` does: the drift, no dead primary.
    for api in [apis[leader], apis[follower]] {
        eventually(
            "the problems judged against the new primary",
            Duration::from_secs(10),
            || {
                let (_, body) = http(api, "GET", "/api/v1/clusters/sandbox/problems", None, None);
                body.contains(r#""failover-drift""#) && !body.contains(r#""dead-primary""#)
            },
        );
    }

    // The leader dies (kill -9: no resignation): the follower leads within the TTL.
    let killed = Instant::now();
    drop(watches[leader].take());
    eventually("a new leader", Duration::from_secs(15), || {
        leaders(&apis) == vec![follower]
    });
    let took = killed.elapsed();
    eprintln!("leader killed -> new leader in {took:?}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    // Anti-flap holds across the leader change: the new primary dies too, within the
    // window the old leader's failover opened; the new leader does not fail over again.
    orch_ok(&["sandbox", "kill", sb.d(), &new.to_string()]);
    let w = watches[follower].as_ref().unwrap();
    w.wait_for("blocked by anti-flap", 20);
    assert_eq!(recoveries(&states[follower]), 0);
    // Acknowledged through the API (on the leader, with the token): the next poll acts.
    let (code, body) = http(
        apis[follower],
        "POST",
        "/api/v1/clusters/sandbox/ack",
        Some(&token),
        None,
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""cleared":true"#), "{body}");
    w.wait_for("failover done", 20);
    assert_eq!(recoveries(&states[follower]), 1);
    watches[follower].take().unwrap().stop();
    drop(etcd);
    sb.down();
}

/// Sends `signal` to etcd (SIGSTOP: it stops answering, as when cut off).
fn signal(etcd: &EtcdServer, signal: i32) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(etcd.child.id() as i32, signal) };
}

#[test]
fn a_leader_that_loses_etcd_stops_acting_and_acts_again_once_it_leads() {
    let (sb, file, state) = watched("");
    let etcd = EtcdServer::start(&sb);
    let url = etcd.url();
    let watch = Watch::start_with(&file, &state, &["--etcd", &url]);
    watch.wait_for("leading", 15);
    // etcd stops answering: within the lease TTL the leader stops counting itself one.
    signal(&etcd, libc::SIGSTOP);
    watch.wait_for("no longer the leader", 15);
    orch_ok(&["sandbox", "kill", sb.d(), "1"]);
    watch.wait_for("not acting: this watcher is not the leader", 20);
    assert_eq!(crate::watch::read_only(&sb, 2), "1");
    assert_eq!(crate::watch::read_only(&sb, 3), "1");
    assert_eq!(recoveries(&state), 0);
    // etcd answers again: the watcher leads again and recovers.
    signal(&etcd, libc::SIGCONT);
    watch.wait_for("failover done", 30);
    assert_eq!(recoveries(&state), 1);
    watch.stop();
    signal(&etcd, libc::SIGCONT);
    drop(etcd);
    sb.down();
}

impl EtcdServer {
    /// Takes `key` on a lease of its own (as another orch would); gives the lease. Plain
    /// HTTP etcd only.
    fn hold(&self, key: &str) -> String {
        assert!(self.tls.is_none(), "hold: plain HTTP etcd only");
        let (_, body) = http(
            &self.addr,
            "POST",
            "/v3/lease/grant",
            None,
            Some(r#"{"TTL": "60"}"#),
        );
        let lease = serde_json::from_str::<serde_json::Value>(&body).unwrap()["ID"]
            .as_str()
            .unwrap()
            .to_string();
        let put = serde_json::json!({"key": b64(key.as_bytes()), "value": b64(br#"{"test": "holder"}"#), "lease": lease});
        let (code, body) = http(
            &self.addr,
            "POST",
            "/v3/kv/put",
            None,
            Some(&put.to_string()),
        );
        assert_eq!(code, 200, "{body}");
        lease
    }

    fn revoke(&self, lease: &str) {
        let body = serde_json::json!({"ID": lease}).to_string();
        let (code, text) = http(&self.addr, "POST", "/v3/lease/revoke", None, Some(&body));
        assert_eq!(code, 200, "{text}");
    }
}

#[test]
fn the_etcd_cluster_lock_holds_back_apply_and_the_watch_leader() {
    let (sb, file, state) = watched("");
    let etcd = EtcdServer::start(&sb);
    let url = etcd.url();
    let key = "orch/clusters/sandbox/lock";
    // Something to apply: node3's replication stopped.
    sb.root(3, "STOP SLAVE");
    let lease = etcd.hold(key);
    let apply = etcd_apply(&file, &state, &url);
    let (code, _, err) = crate::sandbox::orch(&apply);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("locked in etcd") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(
        crate::sandbox::first(&sb.root(3, "SHOW SLAVE STATUS"), "Slave_SQL_Running"),
        "No"
    );
    etcd.revoke(&lease);
    orch_ok(&apply);
    assert_eq!(etcd.get(key), None, "apply released its lock");
    // The watch leader waits for the lock too.
    let lease = etcd.hold(key);
    let watch = Watch::start_with(&file, &state, &["--etcd", &url]);
    watch.wait_for("leading", 15);
    orch_ok(&["sandbox", "kill", sb.d(), "1"]);
    watch.wait_for("locked in etcd", 20);
    assert_eq!(recoveries(&state), 0);
    etcd.revoke(&lease);
    watch.wait_for("failover done", 20);
    assert_eq!(recoveries(&state), 1);
    assert_eq!(etcd.get(key), None, "the leader released its lock");
    watch.stop();
    drop(etcd);
    sb.down();
}

#[test]
fn a_downtime_set_through_the_leader_holds_after_a_leader_change() {
    let Pair {
        sb,
        etcd,
        token,
        addresses,
        states,
        mut watches,
        leader,
        follower,
    } = Pair::start();
    let apis: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let downtime =
        r#"{"cluster": "sandbox", "host": "node1", "for": "1h", "reason": "kernel upgrade"}"#;
    let (code, body) = http(
        apis[leader],
        "POST",
        "/api/v1/downtimes",
        Some(&token),
        Some(downtime),
    );
    assert_eq!(code, 201, "{body}");
    drop(watches[leader].take());
    eventually("a new leader", Duration::from_secs(15), || {
        leaders(&apis) == vec![follower]
    });
    // The primary dies: the new leader knows the downtime the old one recorded.
    orch_ok(&["sandbox", "kill", sb.d(), "1"]);
    let w = watches[follower].as_ref().unwrap();
    w.wait_for("node1 is downtimed", 20);
    assert_eq!(recoveries(&states[follower]), 0);
    let (code, body) = http(
        apis[follower],
        "DELETE",
        "/api/v1/downtimes?cluster=sandbox&host=node1",
        Some(&token),
        None,
    );
    assert_eq!((code, body.contains(r#""ended":1"#)), (200, true), "{body}");
    w.wait_for("failover done", 20);
    assert_eq!(recoveries(&states[follower]), 1);
    watches[follower].take().unwrap().stop();
    drop(etcd);
    sb.down();
}

/// Replication connections to the replicas refused (`ACCOUNT LOCK`) or allowed again.
fn replication_accounts(sb: &Sandbox, lock: bool) {
    let what = if lock { "LOCK" } else { "UNLOCK" };
    for i in [2, 3] {
        sb.root(
            i,
            &format!("SET sql_log_bin = 0; ALTER USER 'repl'@'127.%' ACCOUNT {what}"),
        );
    }
}

/// Under a semi-synchronous write load, the primary killed; the leader's failover held in
/// its middle: the successor reset, the other replica moved under it, whose start waits
/// (replication connections are refused), the last step (the promotion) not begun.
/// (successor, other, the writes acknowledged.)
fn failover_held_midway(sb: &Sandbox, etcd: &EtcdServer) -> (usize, usize, Vec<u64>) {
    crate::watch::semi_sync(sb);
    replication_accounts(sb, true);
    let acked = crate::watch::kill_primary_under_writes(sb);
    let mut moved = None;
    eventually(
        "a replica moved under the successor",
        Duration::from_secs(20),
        || {
            moved = [(2, 3), (3, 2)]
                .into_iter()
                .find(|&(r, c)| crate::watch::source_ip(sb, r) == ip(sb, c));
            moved.is_some()
        },
    );
    let (other, successor) = moved.unwrap();
    // The failover in flight says so: every step but the last two is done (the start's
    // fencing check wrote it).
    eventually("the start under way", Duration::from_secs(10), || {
        etcd.get("orch/clusters/sandbox/recovery")
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .is_some_and(|f| {
                let total = f["steps"].as_array().map_or(0, Vec::len);
                total > 2 && f["done"].as_u64() == Some(total as u64 - 2)
            })
    });
    // And the start was sent: the leader waits for the replica to connect (each step's
    // expectation), not for its statement's answer.
    eventually("the start sent", Duration::from_secs(10), || {
        first(&sb.root(other, "SHOW SLAVE STATUS"), "Slave_IO_Running") != "No"
    });
    assert!(sb.root(successor, "SHOW SLAVE STATUS").is_empty());
    assert_eq!(crate::watch::read_only(sb, successor), "1");
    (successor, other, acked)
}

/// The failover of node1 to `successor` completed (by `w`, which found it in flight): it
/// alone is writable, `other` replicates from it with every acknowledged write, the keys
/// say so.
fn finished_in_flight(
    sb: &Sandbox,
    etcd: &EtcdServer,
    w: &Watch,
    (successor, other, acked): (usize, usize, &[u64]),
) {
    w.wait_for("failover done", 30);
    let log = w.log();
    assert!(
        log.contains(&format!("a failover of node1 to node{successor} in flight")),
        "{log}"
    );
    assert_eq!(crate::watch::read_only(sb, successor), "0");
    assert_eq!(crate::watch::read_only(sb, other), "1");
    assert_eq!(crate::watch::source_ip(sb, other), ip(sb, successor));
    crate::watch::all_acked_on(sb, &[successor, other], acked);
    assert_eq!(etcd.get("orch/clusters/sandbox/recovery"), None);
    assert!(etcd.get("orch/clusters/sandbox/last_failover").is_some());
    eventually("the successor published", Duration::from_secs(10), || {
        etcd.get("orch/clusters/sandbox/primary") == Some(sb.address(successor))
    });
}

/// The leader dies in the middle of a failover under a write load, after the successor
/// was reset and a replica moved under it: the new leader finishes that failover, with the
/// same successor. One promotion, nothing acknowledged lost, the keys follow.
#[test]
fn a_leader_killed_in_the_middle_of_a_failover_is_followed_by_one_that_finishes_it() {
    let Pair {
        sb,
        etcd,
        states,
        mut watches,
        leader,
        follower,
        ..
    } = Pair::start();
    let (successor, other, acked) = failover_held_midway(&sb, &etcd);
    drop(watches[leader].take());
    let in_flight = etcd
        .get("orch/clusters/sandbox/recovery")
        .expect("the failover in flight is in etcd");
    assert!(
        in_flight.contains(&format!(r#""successor":"node{successor}""#)),
        "{in_flight}"
    );
    replication_accounts(&sb, false);
    let w = watches[follower].as_ref().unwrap();
    finished_in_flight(&sb, &etcd, w, (successor, other, &acked));
    // One promotion: the killed leader's run never completed; the new leader's did, once.
    assert_eq!(recoveries(&states[leader]), 0);
    assert_eq!(recoveries(&states[follower]), 1);
    watches[follower].take().unwrap().stop();
    drop(etcd);
    sb.down();
}

/// The leader frozen (SIGSTOP, as a long pause or a VM stall) in the middle of a failover:
/// the other watcher leads and finishes it; thawed, the old leader runs no further step
/// (each is refused by its fencing check): two watchers never run steps at once.
#[test]
fn a_leader_frozen_in_the_middle_of_a_failover_runs_no_step_once_thawed() {
    let Pair {
        sb,
        etcd,
        states,
        mut watches,
        leader,
        follower,
        ..
    } = Pair::start();
    let (successor, other, acked) = failover_held_midway(&sb, &etcd);
    let old = watches[leader].as_ref().unwrap();
    old.signal(libc::SIGSTOP);
    replication_accounts(&sb, false);
    let w = watches[follower].as_ref().unwrap();
    finished_in_flight(&sb, &etcd, w, (successor, other, &acked));
    let thawed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    old.signal(libc::SIGCONT);
    old.wait_for("recovery failed", 30);
    let h = crate::watch::history(&states[leader]);
    let run = h["runs"][0]["id"].to_string();
    let (_, detail, _) = crate::sandbox::orch(&[
        "history",
        &run,
        "--state",
        &states[leader],
        "--format",
        "json",
    ]);
    let detail: serde_json::Value = serde_json::from_str(&detail).unwrap();
    let steps = detail["run"]["steps"].as_array().unwrap();
    // Frozen while it waited for the start's expectation: that step ends (done, as the
    // new leader made it so), and the next, begun once thawed, is refused by its fencing
    // check; nothing after it runs.
    let refused = steps
        .iter()
        .position(|s| s["result"] == "failed")
        .expect("a refused step");
    assert!(
        steps[refused]["started_at"].as_i64().unwrap() >= thawed
            && steps[refused]["error"]
                .as_str()
                .unwrap()
                .contains("no longer the leader"),
        "{detail}"
    );
    assert!(
        steps[refused + 1..]
            .iter()
            .all(|s| s["result"] == "not_run"),
        "{detail}"
    );
    // Every step it ran had begun before it was frozen.
    assert!(
        steps
            .iter()
            .filter(|s| s["result"] == "done")
            .all(|s| s["started_at"].as_i64().unwrap() < thawed),
        "{detail}"
    );
    assert_eq!(recoveries(&states[leader]), 0);
    assert_eq!(recoveries(&states[follower]), 1);
    assert_eq!(crate::watch::read_only(&sb, successor), "0");
    assert_eq!(crate::watch::source_ip(&sb, other), ip(&sb, successor));
    watches[leader].take().unwrap().stop();
    watches[follower].take().unwrap().stop();
    drop(etcd);
    sb.down();
}

/// `orch downtime --etcd` from another machine's state store: the leader leaves the dead
/// primary alone until `orch downtime --end --etcd`; `orch failover --ack --etcd` clears
/// the anti-flap record every leader reads; `orch failover --etcd` is the leader's job.
#[test]
fn downtime_and_ack_from_the_command_line_reach_every_leader_through_etcd() {
    let Pair {
        sb,
        etcd,
        token,
        addresses,
        states,
        mut watches,
        leader,
        ..
    } = Pair::start();
    let url = format!("http://{}", etcd.addr);
    let file = sb.dir.join("watched.yaml");
    let file = file.to_str().unwrap();
    let laptop = sb.dir.join("state-laptop");
    let laptop = laptop.to_str().unwrap();
    let w = watches[leader].as_ref().unwrap();
    let api = addresses[leader].as_str();
    // Set through the leader's API, ended from the laptop: nothing of it outlives the end
    // (it is only in etcd), and the leader says both.
    let (code, body) = http(
        api,
        "POST",
        "/api/v1/downtimes",
        Some(&token),
        Some(r#"{"cluster": "sandbox", "host": "node1", "for": "1h", "reason": "rack move"}"#),
    );
    assert_eq!(code, 201, "{body}");
    w.wait_for("node1 downtimed until", 10);
    let out = orch_ok(&[
        "downtime", file, "node1", "--end", "--state", laptop, "--etcd", &url,
    ]);
    assert!(out.contains("downtime ended"), "{out}");
    w.wait_for("node1: downtime ended (rack move)", 10);
    let out = orch_ok(&[
        "downtime",
        file,
        "node1",
        "--for",
        "1h",
        "--reason",
        "kernel upgrade",
        "--state",
        laptop,
        "--etcd",
        &url,
    ]);
    assert!(out.contains("node1 of sandbox: downtimed until"), "{out}");
    let listed = orch_ok(&["downtime", file, "--state", laptop, "--etcd", &url]);
    assert_eq!(listed.matches("kernel upgrade").count(), 1, "{listed}");
    // Recorded in etcd only: the laptop's own store has none.
    let local = orch_ok(&["downtime", file, "--state", laptop]);
    assert!(local.contains("no downtime"), "{local}");
    // The leader says it, and its API lists it.
    w.wait_for("(kernel upgrade; by", 10);
    let (_, body) = http(api, "GET", "/api/v1/downtimes", Some(&token), None);
    assert_eq!(body.matches("kernel upgrade").count(), 1, "{body}");
    orch_ok(&["sandbox", "kill", sb.d(), "1"]);
    w.wait_for("node1 is downtimed", 20);
    assert_eq!(recoveries(&states[leader]), 0);
    // A failover from the command line is refused with etcd; nothing changes.
    let (code, _, err) =
        crate::sandbox::orch(&["failover", file, "--state", laptop, "--etcd", &url]);
    assert_ne!(code, 0);
    assert!(err.contains("their leader runs failovers"), "{err}");
    assert_eq!(crate::watch::read_only(&sb, 2), "1");
    assert_eq!(crate::watch::read_only(&sb, 3), "1");
    let out = orch_ok(&[
        "downtime", file, "node1", "--end", "--state", laptop, "--etcd", &url,
    ]);
    assert!(out.contains("downtime ended"), "{out}");
    w.wait_for("failover done", 20);
    assert_eq!(recoveries(&states[leader]), 1);
    let key = "orch/clusters/sandbox/last_failover";
    assert!(etcd.get(key).is_some());
    let out = orch_ok(&["failover", file, "--ack", "--state", laptop, "--etcd", &url]);
    assert!(out.contains("anti-flap cleared"), "{out}");
    assert_eq!(etcd.get(key), None);
    watches[leader].take().unwrap().stop();
    drop(etcd);
    sb.down();
}

/// A switchover applied with `--etcd` while a watch leads: the leader follows the new
/// primary and publishes it once it is writable.
#[test]
fn the_published_primary_follows_a_switchover() {
    let (sb, file, state) = watched("");
    let etcd = EtcdServer::start(&sb);
    let url = etcd.url();
    let watch = Watch::start_with(&file, &state, &["--etcd", &url]);
    watch.wait_for("leading", 15);
    let key = "orch/clusters/sandbox/primary";
    eventually("node1 published", Duration::from_secs(10), || {
        etcd.get(key) == Some(sb.address(1))
    });
    let switched = crate::plan::write_topology(&sb, "switched.yaml", &[Some(2), None, Some(2)]);
    let laptop = sb.dir.join("state-laptop");
    orch_ok(&[
        "apply",
        &switched,
        "--auto-approve",
        "--state",
        laptop.to_str().unwrap(),
        "--etcd",
        &url,
    ]);
    eventually("node2 published", Duration::from_secs(10), || {
        etcd.get(key) == Some(sb.address(2))
    });
    let doc: serde_json::Value =
        serde_json::from_str(&etcd.get(&format!("{key}.json")).unwrap()).unwrap();
    assert_eq!(doc["host"], "node2", "{doc}");
    watch.wait_for("the primary is now node2", 10);
    assert_eq!(recoveries(&state), 0);
    watch.stop();
    drop(etcd);
    sb.down();
}

/// The leader and the primary killed together (kill -9): exactly one failover, by the
/// other watcher, within the lease TTL plus detection.
#[test]
fn the_leader_and_the_primary_killed_together_one_failover_by_the_next_leader() {
    let Pair {
        sb,
        etcd,
        states,
        mut watches,
        leader,
        follower,
        ..
    } = Pair::start();
    let killed = Instant::now();
    drop(watches[leader].take());
    orch_ok(&["sandbox", "kill", sb.d(), "1"]);
    let w = watches[follower].as_ref().unwrap();
    w.wait_for("failover done", 30);
    let took = killed.elapsed();
    eprintln!("leader and primary killed -> failover done by the next leader in {took:?}");
    // TTL 5 s, a 500 ms campaign, detection (poll 200 ms, one confirming probe), the
    // failover itself; generous for a loaded CI machine.
    assert!(took < Duration::from_secs(12), "{took:?}\n{}", w.log());
    assert_eq!(recoveries(&states[follower]), 1);
    assert_eq!(recoveries(&states[leader]), 0);
    let new = (2..=3)
        .find(|&k| crate::watch::read_only(&sb, k) == "0")
        .expect("a new primary");
    eventually("the new primary published", Duration::from_secs(10), || {
        etcd.get("orch/clusters/sandbox/primary") == Some(sb.address(new))
    });
    watches[follower].take().unwrap().stop();
    drop(etcd);
    sb.down();
}
