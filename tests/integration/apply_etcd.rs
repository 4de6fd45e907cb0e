//! `orch apply --etcd` acts only while its cluster lock in etcd holds: an apply paused
//! (SIGSTOP, as a laptop's lid closed or a stalled VM) past the lock's lease, which
//! another process could then take, runs no further step once it resumes. Real MariaDB,
//! real etcd on the sandbox's loopback address; every process stopped by PID.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::sandbox::{eventually, first};
use crate::watch_ha::{EtcdServer, etcd_apply};
use crate::watch_http::watched;

/// Whether replica `i`'s IO thread was started (running or connecting).
fn started(sb: &crate::sandbox::Sandbox, i: usize) -> bool {
    first(&sb.root(i, "SHOW SLAVE STATUS"), "Slave_IO_Running") != "No"
}

#[test]
fn an_apply_paused_past_its_etcd_lock_runs_no_further_step() {
    let (sb, file, state) = watched("");
    let etcd = EtcdServer::start(&sb);
    let key = "orch/clusters/sandbox/lock";
    // Two replicas to start again; their source refuses replication connections for now,
    // so the apply waits on the first start (its replica must connect) with the rest ahead.
    for i in [2, 3] {
        sb.root(i, "STOP SLAVE");
    }
    let account = |what: &str| {
        sb.root(
            1,
            &format!("SET sql_log_bin = 0; ALTER USER 'repl'@'127.%' ACCOUNT {what}"),
        )
    };
    account("LOCK");
    let mut apply = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(etcd_apply(&file, &state, &etcd.url()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = apply.id() as i32;
    let mut begun = None;
    eventually("the first start sent", Duration::from_secs(20), || {
        begun = [2, 3].into_iter().find(|&i| started(&sb, i));
        begun.is_some()
    });
    let other = 5 - begun.unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    assert!(etcd.get(key).unwrap().contains("apply"));
    // Its lease runs out (no renewal from a stopped process): the key goes, and anyone
    // could take the lock now.
    eventually("the lock expired", Duration::from_secs(30), || {
        etcd.get(key).is_none()
    });
    account("UNLOCK");
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = apply.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = apply.kill();
            let _ = apply.wait();
            panic!("the apply did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    apply
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    apply
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_ne!(status.code(), Some(0), "{out}");
    assert!(out.contains("the cluster lock in etcd"), "{out}");
    // The step begun before the pause ended; the next, refused, never started its replica.
    assert!(!started(&sb, other), "{out}");
    drop(etcd);
    sb.down();
}
