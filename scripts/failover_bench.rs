//! Failover time as an operator measures it: a fresh sandbox of N nodes, `orch watch` on it
//! (the built-in `safe` policy: poll every 1 s), the primary killed with SIGKILL at a
//! random moment within a poll interval, and the time from the kill until the cluster
//! converged: one server writable and every other live server replicating from it (both
//! threads running). Prints the median and the spread of RUNS runs.
//!
//! With `--ha`: an etcd (single member, on 127.0.0.1, data in DIR) and two watchers on it;
//! the leader watcher and the primary are killed together, so the failover waits for a new
//! leader. Also prints the time from the leader's death to a new leader, and etcd's
//! requests per second from the two watchers at rest.
//!
//! Run by `scripts/bench.sh`: `cargo run --release --example failover_bench -- ORCH DIR
//! NODES RUNS [--ha]`. Uses only loopback sandboxes in DIR (removed after each run).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

fn orch(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().expect("orch runs");
    assert!(out.status.success(), "orch {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (socket, pid) of every instance, from the sandbox's state file.
fn instances(dir: &str) -> Vec<(String, i32)> {
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/sandbox.json")).unwrap())
            .unwrap();
    state["instances"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, x)| {
            (
                format!("{dir}/node{}/mysqld.sock", i + 1),
                x["pid"].as_i64().unwrap() as i32,
            )
        })
        .collect()
}

async fn root(socket: &str) -> Option<Conn> {
    Conn::new(
        OptsBuilder::default()
            .socket(Some(socket))
            .user(Some("root")),
    )
    .await
    .ok()
}

/// One writable server, every other live one replicating from it with both threads.
async fn converged(conns: &mut [Option<Conn>]) -> bool {
    let mut writable = 0;
    for c in conns.iter_mut().flatten() {
        let ro: Option<i64> = c.query_first("SELECT @@read_only").await.ok().flatten();
        match ro {
            Some(0) => {
                writable += 1;
                let status: Vec<mysql_async::Row> =
                    c.query("SHOW SLAVE STATUS").await.unwrap_or_default();
                if !status.is_empty() {
                    return false;
                }
            }
            Some(_) => {
                let status: Vec<mysql_async::Row> =
                    c.query("SHOW SLAVE STATUS").await.unwrap_or_default();
                let Some(row) = status.first() else {
                    return false;
                };
                let io: Option<String> = row.get("Slave_IO_Running");
                let sql: Option<String> = row.get("Slave_SQL_Running");
                if io.as_deref() != Some("Yes") || sql.as_deref() != Some("Yes") {
                    return false;
                }
            }
            None => {}
        }
    }
    writable == 1
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One HTTP/1.1 request on loopback: (status, body).
fn http(addr: &str, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|x| x.1.to_string())?;
    Some((code, body))
}

const ETCD: &str = "127.0.0.1:23790";

/// etcd's gRPC calls handled so far (its gateway's requests are gRPC calls inside).
fn etcd_calls() -> f64 {
    let (_, text) = http(ETCD, "GET", "/metrics", "").expect("etcd answers");
    text.lines()
        .filter(|l| l.starts_with("grpc_server_handled_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Which of the watchers' APIs says its process leads.
fn leading(apis: &[String]) -> Option<usize> {
    (0..apis.len()).find(|&i| {
        http(&apis[i], "GET", "/api/v1/leader", "")
            .is_some_and(|(c, b)| c == 200 && b.contains(r#""this_process":true"#))
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (bin, dir, nodes, runs) = match args.as_slice() {
        [_, bin, dir, nodes, runs] | [_, bin, dir, nodes, runs, _] => (bin, dir, nodes, runs),
        _ => panic!("usage: failover_bench ORCH DIR NODES RUNS [--ha]"),
    };
    let ha = args.get(5).is_some_and(|a| a == "--ha");
    let runs: usize = runs.parse().unwrap();
    let mut etcd = ha.then(|| {
        let child = Command::new("etcd")
            .args([
                "--name",
                "bench",
                "--data-dir",
                &format!("{dir}/etcd"),
                "--listen-client-urls",
                &format!("http://{ETCD}"),
                "--advertise-client-urls",
                &format!("http://{ETCD}"),
                "--listen-peer-urls",
                "http://127.0.0.1:23800",
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:23800",
                "--initial-cluster",
                "bench=http://127.0.0.1:23800",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (scripts/install-deps.sh installs etcd-server)");
        let began = Instant::now();
        while http(ETCD, "POST", "/v3/kv/range", r#"{"key":"AA=="}"#).is_none_or(|(c, _)| c != 200)
        {
            assert!(
                began.elapsed() < Duration::from_secs(20),
                "etcd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    });
    let mut elections = Vec::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sb = format!("{dir}/failover-sb");
    let mut times = Vec::new();
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D ^ u64::from(std::process::id());
    for run in 0..runs {
        orch(bin, &["sandbox", "up", &sb, "-n", nodes]);
        let apis: Vec<String> = (0..if ha { 2 } else { 1 })
            .map(|w| format!("127.0.0.1:{}", 18191 + w))
            .collect();
        let mut watches: Vec<Child> = (0..apis.len())
            .map(|w| {
                let mut cmd = Command::new(bin);
                cmd.args([
                    "watch",
                    &format!("{sb}/topology.yaml"),
                    "--state",
                    &format!("{sb}/state-{w}"),
                ]);
                if ha {
                    // A prefix per run: no run sees the last one's failover.
                    cmd.args([
                        "--etcd",
                        &format!("http://{ETCD}"),
                        "--etcd-prefix",
                        &format!("bench-{run}/"),
                        "--listen",
                        &apis[w],
                    ]);
                }
                cmd.stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let leader = if ha {
            let began = Instant::now();
            loop {
                if let Some(l) = leading(&apis) {
                    break l;
                }
                assert!(began.elapsed() < Duration::from_secs(20), "no leader");
                std::thread::sleep(Duration::from_millis(20));
            }
        } else {
            0
        };
        let servers = instances(&sb);
        // Let watch see a healthy cluster for a couple of polls, then kill at a random
        // moment within the next poll interval.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(2000 + seed % 1000));
        let began = Instant::now();
        // SAFETY: kill(2) on the sandbox's primary, a process this run started.
        unsafe { libc::kill(servers[0].1, libc::SIGKILL) };
        if ha {
            // And the leader watcher, at the same moment.
            let _ = watches[leader].kill();
        }
        let follower = apis.len() - 1 - leader;
        let mut elected = None;
        let took = rt.block_on(async {
            let mut conns = Vec::new();
            for (socket, _) in &servers[1..] {
                conns.push(root(socket).await);
            }
            loop {
                if ha && elected.is_none() && leading(&apis[follower..=follower]).is_some() {
                    elected = Some(began.elapsed());
                }
                if converged(&mut conns).await {
                    return began.elapsed();
                }
                assert!(began.elapsed() < Duration::from_secs(60), "no convergence");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        times.push(took.as_secs_f64() * 1000.0);
        if let Some(e) = elected {
            elections.push(e.as_secs_f64() * 1000.0);
        }
        if ha && run == runs - 1 {
            // The load on etcd at rest: the new leader and a follower, for 30 s.
            watches[leader] = Command::new(bin)
                .args([
                    "watch",
                    &format!("{sb}/topology.yaml"),
                    "--state",
                    &format!("{sb}/state-{leader}"),
                    "--etcd",
                    &format!("http://{ETCD}"),
                    "--etcd-prefix",
                    &format!("bench-{run}/"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_secs(5));
            let before = etcd_calls();
            std::thread::sleep(Duration::from_secs(30));
            let calls = etcd_calls() - before;
            println!(
                "etcd load from 2 watchers at rest (1 cluster): {:.2} requests/s",
                calls / 30.0
            );
        }
        for w in &mut watches {
            // SAFETY: kill(2) on a watcher this run started.
            unsafe { libc::kill(w.id() as i32, libc::SIGTERM) };
            let _ = w.wait();
        }
        orch(bin, &["sandbox", "down", &sb]);
    }
    let (min, max) = (
        times.iter().copied().fold(f64::MAX, f64::min),
        times.iter().copied().fold(0.0, f64::max),
    );
    if ha {
        println!(
            "failover, {nodes}-node sandbox, 2 watchers on etcd, kill -9 of the primary and the leader watcher together -> converged: median {:.0} ms (min {min:.0}, max {max:.0}; {runs} runs)",
            median(times)
        );
        println!(
            "leader watcher killed -> a new leader: median {:.0} ms ({} runs)",
            median(elections.clone()),
            elections.len()
        );
    } else {
        println!(
            "failover, {nodes}-node sandbox, poll 1s, kill -9 of the primary -> converged: median {:.0} ms (min {min:.0}, max {max:.0}; {runs} runs)",
            median(times)
        );
    }
    if let Some(e) = &mut etcd {
        let _ = e.kill();
        let _ = e.wait();
    }
}
