//! Three `orch watch` on a three-member etcd, on real MariaDB, each watcher talking to one
//! member only: the leader's member is cut off from the other two (nftables), so its
//! watcher still reaches etcd but etcd has lost quorum. The leader stops acting within the
//! lease TTL, one of the others leads (never two at once), and it alone fails a killed
//! primary over and publishes the new one on the majority side; healed, the old leader
//! comes back as a follower. etcd (Debian's etcd-server) and the servers are stopped by
//! PID and the nftables table is deleted, even when the test fails.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::sandbox::{Sandbox, eventually, orch_ok};
use crate::watch::{Watch, ip, nft, read_only};
use crate::watch_http::{http, recoveries, watched};

/// etcd's peer port on every member; nothing else in a sandbox uses it.
const PEER_PORT: u16 = 2380;
/// The conntrack mark of member 1's connections to the others while it is cut off.
const MARK: u32 = 0x6f7263;

/// The uid and gid of `mysql` (the servers' user).
fn mysql_user() -> (u32, u32) {
    let name = std::ffi::CString::new("mysql").unwrap();
    // SAFETY: getpwnam with a NUL-terminated name; the record is read at once, before any
    // other passwd call.
    unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        assert!(!pw.is_null(), "no mysql user");
        ((*pw).pw_uid, (*pw).pw_gid)
    }
}

/// etcd members 1..=3, member k on the sandbox's address k (clients on 2379, peers on
/// 2380), data and logs in the sandbox; member 1 runs as `mysql`, so that nftables can
/// tell its packets from the others' (`meta skuid`). Killed by PID on drop; a failing
/// test prints the end of each member's log.
struct EtcdCluster {
    members: Vec<Child>,
    /// Each member's address.
    hosts: Vec<String>,
    /// `address:2379` of each member.
    clients: Vec<String>,
    logs: Vec<PathBuf>,
}

impl EtcdCluster {
    fn start(sb: &Sandbox) -> EtcdCluster {
        let hosts: Vec<String> = (1..=3).map(|k| ip(sb, k)).collect();
        let initial = (1..=3)
            .map(|k| format!("m{k}=http://{}:{PEER_PORT}", hosts[k - 1]))
            .collect::<Vec<_>>()
            .join(",");
        // Unique per sandbox: members of another test's cluster never join this one.
        let token = format!("orch-test-{}", hosts[0]);
        let mut cluster = EtcdCluster {
            hosts: hosts.clone(),
            members: Vec::new(),
            clients: Vec::new(),
            logs: Vec::new(),
        };
        for k in 1..=3 {
            let host = &hosts[k - 1];
            let client = format!("{host}:2379");
            let data = sb.dir.join(format!("etcd{k}"));
            // etcd wants its data directory private (0700) and its own.
            std::fs::create_dir(&data).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
            let log = sb.dir.join(format!("etcd{k}.log"));
            let out = std::fs::File::create(&log).unwrap();
            let mut cmd = Command::new("etcd");
            cmd.args([
                "--name",
                &format!("m{k}"),
                "--data-dir",
                data.to_str().unwrap(),
                "--listen-client-urls",
                &format!("http://{client}"),
                "--advertise-client-urls",
                &format!("http://{client}"),
                "--listen-peer-urls",
                &format!("http://{host}:{PEER_PORT}"),
                "--initial-advertise-peer-urls",
                &format!("http://{host}:{PEER_PORT}"),
                "--initial-cluster",
                &initial,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                &token,
            ])
            .stdout(Stdio::null())
            .stderr(out);
            if k == 1 {
                let (uid, gid) = mysql_user();
                std::os::unix::fs::chown(&data, Some(uid), Some(gid)).unwrap();
                cmd.uid(uid).gid(gid);
            }
            let child = cmd
                .spawn()
                .expect("etcd is missing: scripts/install-deps.sh installs etcd-server");
            cluster.members.push(child);
            cluster.clients.push(client);
            cluster.logs.push(log);
        }
        // Healthy: a write (which needs a quorum) succeeds through every member.
        for k in 1..=3 {
            eventually(
                &format!("etcd member {k} takes a write"),
                Duration::from_secs(30),
                || {
                    let put = json!({"key": b64(b"orch-test/health"), "value": b64(b"ok")});
                    cluster.answers(k) && cluster.call(k, "kv/put", &put).is_some()
                },
            );
        }
        cluster
    }

    /// Whether member `k` accepts connections.
    fn answers(&self, k: usize) -> bool {
        std::net::TcpStream::connect(&self.clients[k - 1]).is_ok()
    }

    /// One JSON gateway call on member `k`: the answer, None unless 200.
    fn call(&self, k: usize, rpc: &str, body: &Value) -> Option<Value> {
        let (code, text) = http(
            &self.clients[k - 1],
            "POST",
            &format!("/v3/{rpc}"),
            None,
            Some(&body.to_string()),
        );
        (code == 200).then(|| serde_json::from_str(&text).unwrap())
    }

    /// The value of `key`, read (linearizably) through member `k`.
    fn get(&self, k: usize, key: &str) -> Option<String> {
        let v = self
            .call(k, "kv/range", &json!({"key": b64(key.as_bytes())}))
            .unwrap_or_else(|| panic!("etcd member {k} cannot read {key}"));
        let value = v["kvs"][0]["value"].as_str()?;
        Some(String::from_utf8(orch::httpc::base64_decode(value).unwrap()).unwrap())
    }

    /// Member `k`'s id and the raft leader's, as member `k` sees them.
    fn status(&self, k: usize) -> Option<(String, String)> {
        let v = self.call(k, "maintenance/status", &json!({}))?;
        let id = v["header"]["member_id"].as_str()?.to_string();
        Some((id, v["leader"].as_str().unwrap_or("0").to_string()))
    }

    /// Makes member `k` etcd's raft leader.
    fn make_leader(&self, k: usize) {
        let (target, _) = self.status(k).expect("member status");
        eventually(
            &format!("etcd member {k} leads raft"),
            Duration::from_secs(20),
            || {
                let Some((_, leader)) = self.status(k) else {
                    return false;
                };
                if leader == target {
                    return true;
                }
                // Only the raft leader hands its leadership over.
                if let Some(current) =
                    (1..=3).find(|&m| self.status(m).is_some_and(|(id, _)| id == leader))
                {
                    self.call(
                        current,
                        "maintenance/transfer-leadership",
                        &json!({"targetID": target}),
                    );
                }
                false
            },
        );
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for child in &mut self.members {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for (k, log) in self.logs.iter().enumerate() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                eprintln!("--- etcd member {} (last lines) ---\n{tail}", k + 1);
            }
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    orch::httpc::base64(bytes)
}

/// etcd member 1 (on `hosts[0]`, running as `mysql`) cut off from the other two, in both
/// directions and on every connection: the ones the others opened to its peer port and
/// the ones it opened to theirs. Dropping only what is sent *to* a peer port is not
/// enough: raft streams flow back on the connection the reader opened, so the answers of
/// a member's peer port, and of the others to member 1's connections (told apart by a
/// conntrack mark set on member 1's first packet), are dropped too. Its clients still
/// reach it. The servers run as mysql too but never use the peer port. Deleted on drop.
struct Partition {
    table: String,
}

impl Partition {
    fn member_one(hosts: &[String]) -> Partition {
        let (one, others) = (&hosts[0], hosts[1..].join(", "));
        let table = format!(
            "orch_test_partition_{}_{}",
            std::process::id(),
            one.replace('.', "_")
        );
        let rules = format!(
            "add table inet {table}\n\
             add chain inet {table} out {{ type filter hook output priority 0; }}\n\
             add rule inet {table} out ip daddr {one} tcp dport {PEER_PORT} drop\n\
             add rule inet {table} out ip saddr {one} tcp sport {PEER_PORT} drop\n\
             add rule inet {table} out meta skuid mysql ip daddr {{ {others} }} tcp dport {PEER_PORT} ct mark set {MARK:#x} drop\n\
             add rule inet {table} out ct mark {MARK:#x} drop\n"
        );
        let cut = Partition { table };
        assert!(nft(&["-f", "-"], &rules), "nft refused:\n{rules}");
        cut
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        let _ = nft(&["delete", "table", "inet", &self.table], "");
    }
}

/// Which of the API addresses says its process leads.
fn leaders(apis: &[String]) -> Vec<usize> {
    (0..apis.len())
        .filter(|&i| leader_seen(&apis[i]).is_some_and(|(me, _)| me))
        .collect()
}

/// What the watcher at `api` says: whether it leads, and who leads.
fn leader_seen(api: &str) -> Option<(bool, String)> {
    std::net::TcpStream::connect(api).ok()?;
    let (code, body) = http(api, "GET", "/api/v1/leader", None, None);
    (code == 200).then(|| {
        (
            body.contains(r#""this_process":true"#),
            serde_json::from_str::<Value>(&body).unwrap()["leader"].to_string(),
        )
    })
}

#[test]
fn a_leader_cut_off_from_the_etcd_majority_stops_and_another_alone_fails_over() {
    let (sb, file, _) = watched("");
    let etcd = EtcdCluster::start(&sb);
    // The member to be cut off leads raft: the harder case, where etcd 3.4 still renews
    // leases on it until it finds it lost its quorum and steps down (up to two election
    // timeouts), while the majority may already elect a leader of its own.
    etcd.make_leader(1);
    let apis: Vec<String> = (1..=3).map(|k| format!("{}:18080", ip(&sb, k))).collect();
    let states: Vec<String> = (1..=3)
        .map(|k| {
            sb.dir
                .join(format!("state{k}"))
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let start = |k: usize| {
        let url = format!("http://{}", etcd.clients[k - 1]);
        Watch::start_with(
            &file,
            &states[k - 1],
            &["--etcd", &url, "--listen", &apis[k - 1]],
        )
    };
    let mut watches = vec![start(1)];
    eventually("W1 leads", Duration::from_secs(15), || {
        leaders(&apis) == vec![0]
    });
    watches.push(start(2));
    watches.push(start(3));
    for k in [2, 3] {
        eventually(
            &format!("W{k} knows W1 leads"),
            Duration::from_secs(15),
            || leader_seen(&apis[k - 1]).is_some_and(|(me, who)| !me && who.contains(&apis[0])),
        );
    }
    let key = "orch/clusters/sandbox/primary";
    eventually("node1 published", Duration::from_secs(10), || {
        etcd.get(2, key) == Some(sb.address(1))
    });

    // Member 1 loses its peers; W1 still reaches it, but it has no quorum.
    let cut_at = Instant::now();
    let cut = Partition::member_one(&etcd.hosts);
    // When W1's API stops saying it leads (it acts by the same clock), when it logs so,
    // and when another leads. The log line comes later than the API's answer: the loss is
    // said after the keepalive that finds it, which waits for etcd's answer (up to 2 s).
    // Another leads once W1's lease expires on the majority side: the new raft leader
    // extends every lease by a TTL, and now and then etcd 3.4 renews W1's expired lease
    // once more, so allow for two TTLs and two elections.
    let (mut stopped, mut said, mut elected) = (None, None, None);
    let deadline = cut_at + Duration::from_secs(25);
    while stopped.is_none() || said.is_none() || elected.is_none() {
        let now = leaders(&apis);
        assert!(now.len() <= 1, "two leaders at once: {now:?}");
        if stopped.is_none() && !now.contains(&0) {
            stopped = Some(cut_at.elapsed());
        }
        if said.is_none() && watches[0].log().contains("no longer the leader") {
            said = Some(cut_at.elapsed());
        }
        if elected.is_none() && matches!(now[..], [1] | [2]) {
            elected = Some(cut_at.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "after 25 s: W1 stopped {stopped:?}, said so {said:?}, a new leader {elected:?}, \
             leaders {now:?}\nW1:\n{}",
            watches[0].log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (stopped, said, elected) = (stopped.unwrap(), said.unwrap(), elected.unwrap());
    eprintln!(
        "cut off -> W1 stops acting in {stopped:?} (logged at {said:?}), -> a new leader in \
         {elected:?}"
    );
    // W1 stops before its lease can expire in etcd, so before anyone else can lead: within
    // the TTL of its last renewal, which the cut-off member may still grant for up to two
    // election timeouts (2 s) before it steps down.
    assert!(stopped < elected, "{stopped:?} {elected:?}");
    assert!(stopped < Duration::from_secs(8), "{stopped:?}");
    let new = leaders(&apis)[0];
    let third = 3 - new;

    // The primary dies: exactly one failover, by the new leader.
    let killed = Instant::now();
    orch_ok(&["sandbox", "kill", sb.d(), "1"]);
    watches[new].wait_for("failover done", 30);
    eprintln!("primary killed -> failover done in {:?}", killed.elapsed());
    let writable: Vec<usize> = (2..=3).filter(|&k| read_only(&sb, k) == "0").collect();
    assert_eq!(writable.len(), 1, "writable: {writable:?}");
    let primary = writable[0];
    for w in [0, third] {
        watches[w].refrained_or_followed(20);
    }
    assert_eq!(recoveries(&states[new]), 1);
    assert_eq!(recoveries(&states[0]), 0, "{}", watches[0].log());
    assert_eq!(recoveries(&states[third]), 0, "{}", watches[third].log());
    // Published on the majority side, through either of its members.
    for k in [2, 3] {
        eventually(
            &format!("node{primary} published, read through member {k}"),
            Duration::from_secs(10),
            || etcd.get(k, key) == Some(sb.address(primary)),
        );
    }

    // Healed: W1 hears of the new leader and follows; it neither leads nor acts. The
    // member that was cut off comes back with a higher raft term (etcd 3.4 runs without
    // pre-vote by default) and makes the majority elect again: for those seconds etcd
    // renews no lease and the new leader may stop acting too, but nobody else leads.
    let healed = Instant::now();
    drop(cut);
    let (mut follows, mut lapsed) = (None, None);
    let deadline = healed + Duration::from_secs(30);
    // Until W1 follows, then a few more campaign rounds.
    while follows.is_none_or(|t| healed.elapsed() < t + Duration::from_secs(3)) {
        let now = leaders(&apis);
        assert!(
            now.is_empty() || now == vec![new],
            "healed: leaders {now:?}, W{} expected\nW1:\n{}",
            new + 1,
            watches[0].log()
        );
        if now.is_empty() && lapsed.is_none() {
            lapsed = Some(healed.elapsed());
        }
        if follows.is_none()
            && leader_seen(&apis[0]).is_some_and(|(me, who)| !me && who.contains(&apis[new]))
        {
            follows = Some(healed.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "healed 30 s ago, W1 follows {follows:?}\nW1:\n{}",
            watches[0].log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "healed -> W1 follows in {:?}; the new leader stopped acting for a while from: \
         {lapsed:?}",
        follows.unwrap()
    );
    eventually("the new leader leads", Duration::from_secs(15), || {
        leaders(&apis) == vec![new]
    });
    let log = watches[0].log();
    assert_eq!(
        log.matches("leading: this watcher acts").count(),
        1,
        "{log}"
    );
    assert!(!log.contains("recovering"), "{log}");
    assert_eq!(recoveries(&states[0]), 0);
    assert_eq!(recoveries(&states[new]), 1);
    assert_eq!(recoveries(&states[third]), 0);
    assert_eq!(read_only(&sb, primary), "0");
    assert_eq!(read_only(&sb, 5 - primary), "1");

    for w in watches {
        assert_eq!(w.stop(), 0);
    }
    drop(etcd);
    sb.down();
}
