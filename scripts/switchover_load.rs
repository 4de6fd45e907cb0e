//! The write-block window as an application sees it: an ordinary account inserts rows in a
//! loop on the primary of a sandbox while `orch apply` switches the primary back and forth.
//! After an error the writer tries every server until one takes its insert (as a client
//! behind a proxy that follows the primary would). The window of one switchover is the time
//! from the writer's last acknowledged insert on the old primary to its first on the new
//! one. Prints the medians of the window and of `orch apply`'s wall time.
//!
//! Run by `scripts/bench.sh`: `cargo run --release --example switchover_load -- ORCH
//! SANDBOX_DIR RUNS` on a sandbox whose node1 is the primary and every other node replicates
//! from it; it writes `switchover.yaml` (node2 the primary) beside the sandbox's
//! `topology.yaml` and leaves node1 the primary again when RUNS is even.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

/// One acknowledged insert: when, and on which server.
type Ack = (Instant, usize);

fn opts(address: &str) -> OptsBuilder {
    let (ip, port) = address.rsplit_once(':').expect("host:port");
    OptsBuilder::default()
        .ip_or_hostname(ip.to_string())
        .tcp_port(port.parse().expect("a port"))
        .prefer_socket(false)
        .user(Some("bench_app"))
        .pass(Some("bench-app-password"))
}

async fn writer(addresses: Vec<String>, acks: Arc<Mutex<Vec<Ack>>>, done: Arc<AtomicBool>) {
    let mut target = 0;
    let mut conn: Option<Conn> = None;
    let mut id: u64 = 0;
    while !done.load(Ordering::SeqCst) {
        if conn.is_none() {
            conn = Conn::new(opts(&addresses[target])).await.ok();
        }
        let Some(c) = conn.as_mut() else {
            target = (target + 1) % addresses.len();
            continue;
        };
        id += 1;
        match c
            .query_drop(format!("INSERT INTO bench.t VALUES ({id})"))
            .await
        {
            Ok(()) => acks.lock().unwrap().push((Instant::now(), target)),
            Err(_) => {
                // Read-only (1290) or killed: try the next server.
                conn = None;
                target = (target + 1) % addresses.len();
            }
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, orch, dir, runs] = args.as_slice() else {
        panic!("usage: switchover_load ORCH SANDBOX_DIR RUNS");
    };
    let runs: usize = runs.parse().expect("RUNS is a number");
    let topology = std::fs::read_to_string(format!("{dir}/topology.yaml")).unwrap();
    let addresses: Vec<String> = topology
        .lines()
        .filter_map(|l| l.split("address: \"").nth(1))
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect();
    // node2 the primary, everyone else under it.
    let switchover: String = topology
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("node1:") {
                l.replace(" }", ", source: node2 }")
            } else if l.trim_start().starts_with("node2:") {
                l.replace(", source: node1", "")
            } else {
                l.replace("source: node1", "source: node2")
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(format!("{dir}/switchover.yaml"), switchover + "\n").unwrap();
    let root = |sql: &str| {
        let out = Command::new("mariadb")
            .args([
                "-S",
                &format!("{dir}/node1/mysqld.sock"),
                "-u",
                "root",
                "-e",
                sql,
            ])
            .output()
            .expect("the mariadb client runs");
        assert!(out.status.success(), "{sql}: {out:?}");
    };
    root(
        "CREATE DATABASE bench; CREATE TABLE bench.t (id BIGINT PRIMARY KEY); \
         CREATE USER bench_app@'127.%' IDENTIFIED BY 'bench-app-password'; \
         GRANT INSERT ON bench.* TO bench_app@'127.%'",
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let acks = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let task = rt.spawn(writer(addresses.clone(), acks.clone(), done.clone()));
    let wait_for_acks_on = |server: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if acks.lock().unwrap().last().is_some_and(|a| a.1 == server) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no write reached node{}",
                server + 1
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    wait_for_acks_on(0);
    let (mut windows, mut walls) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let (file, old, new) = if run % 2 == 0 {
            ("switchover.yaml", 0, 1)
        } else {
            ("topology.yaml", 1, 0)
        };
        let began = Instant::now();
        let out = Command::new(orch)
            .args(["apply", &format!("{dir}/{file}"), "--auto-approve"])
            .args(["--state", &format!("{dir}/bench-state")])
            .output()
            .expect("orch runs");
        walls.push(began.elapsed().as_secs_f64() * 1000.0);
        assert!(out.status.success(), "orch apply: {out:?}");
        wait_for_acks_on(new);
        let acks = acks.lock().unwrap();
        let last_old = acks
            .iter()
            .filter(|a| a.1 == old)
            .map(|a| a.0)
            .max()
            .expect("writes on the old primary");
        let first_new = acks
            .iter()
            .filter(|a| a.1 == new && a.0 > last_old)
            .map(|a| a.0)
            .min()
            .expect("writes on the new primary");
        windows.push((first_new - last_old).as_secs_f64() * 1000.0);
    }
    done.store(true, Ordering::SeqCst);
    rt.block_on(task).unwrap();
    println!(
        "switchover under load, {}-node sandbox: write block seen by the writer {:.0} ms, apply wall {:.0} ms (medians of {runs}; writer acks: {})",
        addresses.len(),
        median(windows),
        median(walls),
        acks.lock().unwrap().len()
    );
}
