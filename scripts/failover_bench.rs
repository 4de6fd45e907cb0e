//! Failover time as an operator measures it: a fresh sandbox of N nodes, `orch watch` on it
//! (the built-in `safe` policy: poll every 1 s), the primary killed with SIGKILL at a
//! random moment within a poll interval, and the time from the kill until the cluster
//! converged: one server writable and every other live server replicating from it (both
//! threads running). Prints the median and the spread of RUNS runs.
//!
//! Run by `scripts/bench.sh`: `cargo run --release --example failover_bench -- ORCH DIR
//! NODES RUNS`. Uses only loopback sandboxes in DIR (removed after each run).

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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, bin, dir, nodes, runs] = args.as_slice() else {
        panic!("usage: failover_bench ORCH DIR NODES RUNS");
    };
    let runs: usize = runs.parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sb = format!("{dir}/failover-sb");
    let mut times = Vec::new();
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D ^ u64::from(std::process::id());
    for _ in 0..runs {
        orch(bin, &["sandbox", "up", &sb, "-n", nodes]);
        let mut watch: Child = Command::new(bin)
            .args([
                "watch",
                &format!("{sb}/topology.yaml"),
                "--state",
                &format!("{sb}/state"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
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
        let took = rt.block_on(async {
            let mut conns = Vec::new();
            for (socket, _) in &servers[1..] {
                conns.push(root(socket).await);
            }
            loop {
                if converged(&mut conns).await {
                    return began.elapsed();
                }
                assert!(began.elapsed() < Duration::from_secs(60), "no convergence");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        times.push(took.as_secs_f64() * 1000.0);
        // SAFETY: kill(2) on the watcher this run started.
        unsafe { libc::kill(watch.id() as i32, libc::SIGTERM) };
        let _ = watch.wait();
        orch(bin, &["sandbox", "down", &sb]);
    }
    let (min, max) = (
        times.iter().copied().fold(f64::MAX, f64::min),
        times.iter().copied().fold(0.0, f64::max),
    );
    println!(
        "failover, {nodes}-node sandbox, poll 1s, kill -9 of the primary -> converged: median {:.0} ms (min {min:.0}, max {max:.0}; {runs} runs)",
        median(times)
    );
}
