//! `orch apply` acts only while its cluster locks hold: an apply paused (SIGSTOP, as a
//! laptop's lid closed or a stalled VM) past its lock, which another process could then
//! take, runs no further step once it resumes; one that is merely slow keeps its lock.
//! Both locks: the state store's and, with `--etcd`, the one in etcd. Real MariaDB, real
//! etcd on the sandbox's loopback address; every process stopped by PID.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::sandbox::{Sandbox, eventually, first, orch};
use crate::watch_ha::{EtcdServer, etcd_apply};
use crate::watch_http::watched;

/// Whether replica `i`'s IO thread was started (running or connecting).
fn started(sb: &Sandbox, i: usize) -> bool {
    first(&sb.root(i, "SHOW SLAVE STATUS"), "Slave_IO_Running") != "No"
}

/// Locks (`LOCK`) or unlocks (`UNLOCK`) the replication account on the primary.
fn account(sb: &Sandbox, what: &str) {
    sb.root(
        1,
        &format!("SET sql_log_bin = 0; ALTER USER 'repl'@'127.%' ACCOUNT {what}"),
    );
}

/// A running `orch apply`, killed (by PID) if the test ends before it did.
struct Apply(Option<Child>);

impl Apply {
    fn signal(&self, signal: i32) {
        let pid = self.0.as_ref().unwrap().id() as i32;
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid, signal) };
    }

    /// Waits (at most a minute) for it to end: whether it succeeded, and what it printed.
    fn ended(mut self) -> (bool, String) {
        let mut apply = self.0.take().unwrap();
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
        for pipe in [
            apply.stdout.take().map(|p| Box::new(p) as Box<dyn Read>),
            apply.stderr.take().map(|p| Box::new(p) as Box<dyn Read>),
        ] {
            pipe.unwrap().read_to_string(&mut out).unwrap();
        }
        (status.success(), out)
    }
}

impl Drop for Apply {
    fn drop(&mut self) {
        if let Some(mut apply) = self.0.take() {
            // SIGKILL ends a stopped process too.
            let _ = apply.kill();
            let _ = apply.wait();
        }
    }
}

/// An apply (`args`, with `env`) of two replicas to start again, whose source refuses
/// replication connections for now: it waits on its first start (its replica must
/// connect) with the other ahead. Returns it once that start was sent, with the replica
/// it started and the other.
fn waiting_on_its_first_start(
    sb: &Sandbox,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Apply, usize, usize) {
    for i in [2, 3] {
        sb.root(i, "STOP SLAVE");
    }
    account(sb, "LOCK");
    let apply = Apply(Some(
        Command::new(env!("CARGO_BIN_EXE_orch"))
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let mut begun = None;
    eventually("the first start sent", Duration::from_secs(20), || {
        begun = [2, 3].into_iter().find(|&i| started(sb, i));
        begun.is_some()
    });
    let begun = begun.unwrap();
    (apply, begun, 5 - begun)
}

#[test]
fn an_apply_keeps_its_lock_through_a_long_step_and_stops_once_another_took_it() {
    let (sb, file, state) = watched("");
    let apply = ["apply", &file, "--auto-approve", "--state", &state];
    // A TTL of 2 s: its first step (waiting for a replica that cannot connect) lasts
    // several.
    let (a, _, _) = waiting_on_its_first_start(&sb, &apply, &[("ORCH_LOCK_TTL_SECS", "2")]);
    let db = rusqlite::Connection::open(std::path::Path::new(&state).join("orch.db")).unwrap();
    let lock = || -> (i64, i64) {
        db.query_row("SELECT since, heartbeat_at FROM locks", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    };
    // The lock's own heartbeats keep it through the step: another apply is refused.
    eventually("three TTLs of heartbeats", Duration::from_secs(20), || {
        let (since, beat) = lock();
        beat - since > 6_000
    });
    let (code, _, err) = orch(&apply);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("is locked by pid"), "{err}");
    // Paused: once its TTL passed with no heartbeat, another apply takes the lock over
    // (marking the first run interrupted) and converges.
    a.signal(libc::SIGSTOP);
    account(&sb, "UNLOCK");
    let mut taken = None;
    eventually(
        "another apply took the lock",
        Duration::from_secs(30),
        || {
            let (code, out, err) = orch(&apply);
            let refused = err.contains("is locked by pid");
            taken = Some((code, format!("{out}{err}")));
            !refused
        },
    );
    let (code, out) = taken.unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("apply succeeded"), "{out}");
    // Resumed, the first runs nothing more: its lock is someone else's now.
    a.signal(libc::SIGCONT);
    let (ok, out) = a.ended();
    assert!(!ok, "{out}");
    assert!(out.contains("taken over by another process"), "{out}");
    assert!(!out.contains("step 2/2"), "{out}");
    assert!(out.contains("apply interrupted"), "{out}");
    sb.down();
}

#[test]
fn an_apply_paused_past_its_etcd_lock_runs_no_further_step() {
    let (sb, file, state) = watched("");
    let etcd = EtcdServer::start(&sb);
    let key = "orch/clusters/sandbox/lock";
    let url = etcd.url();
    let (a, _, other) = waiting_on_its_first_start(&sb, &etcd_apply(&file, &state, &url), &[]);
    a.signal(libc::SIGSTOP);
    assert!(etcd.get(key).unwrap().contains("apply"));
    // Its lease runs out (no renewal from a stopped process): the key goes, and anyone
    // could take the lock now.
    eventually("the lock expired", Duration::from_secs(30), || {
        etcd.get(key).is_none()
    });
    account(&sb, "UNLOCK");
    a.signal(libc::SIGCONT);
    let (ok, out) = a.ended();
    assert!(!ok, "{out}");
    assert!(out.contains("the cluster lock in etcd"), "{out}");
    // The step begun before the pause ended; the next, refused, never started its replica.
    assert!(!started(&sb, other), "{out}");
    drop(etcd);
    sb.down();
}
