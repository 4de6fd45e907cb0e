//! `orch apply` on real MariaDB: a reshape applied and converged, a switchover under a
//! write load, no approval without a terminal, a stale saved plan, a locked cluster.
//! Every refused apply is checked to have changed nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::plan::{plan_json, shape, steps, write_topology};
use crate::sandbox::{Sandbox, eventually, first, orch};

fn state_dir(sb: &Sandbox) -> String {
    sb.dir.join("state").to_str().unwrap().to_string()
}

#[test]
fn reshape_is_applied_recorded_and_converges() {
    let sb = Sandbox::up(&["-n", "4"]);
    sb.root(1, "CREATE DATABASE t");
    let file = write_topology(&sb, "chain.yaml", &[None, Some(1), Some(2), Some(3)]);
    let state = state_dir(&sb);
    let (code, out, err) = orch(&["apply", &file, "--auto-approve", "--state", &state]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("apply succeeded"), "{out}");
    assert!(err.contains("step 1/"), "progress lines: {err}");
    let (code, again) = plan_json(&file, &[]);
    assert_eq!((code, steps(&again)), (0, Vec::<String>::new()), "{again}");
    // The moved replicas detect a dead source as fast as the policy polls.
    let (_, status, _) = orch(&["status", &file, "--format", "json"]);
    assert!(!status.contains("slow-failure-detection"), "{status}");
    // Recorded: the run and its steps, without the replication password.
    let (code, history, err) = orch(&["history", "--state", &state, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let h: serde_json::Value = serde_json::from_str(&history).unwrap();
    assert_eq!(h["runs"][0]["outcome"], "succeeded", "{h}");
    assert_eq!(h["runs"][0]["kind"], "apply");
    let id = h["runs"][0]["id"].to_string();
    let (_, detail, _) = orch(&["history", &id, "--state", &state, "--format", "json"]);
    assert!(detail.contains("CHANGE MASTER TO"), "{detail}");
    let secret = std::fs::read_to_string(sb.dir.join("secrets/repl.password")).unwrap();
    assert!(!detail.contains(secret.trim()), "no secret recorded");
    sb.down();
}

#[test]
fn refused_applies_change_nothing() {
    let sb = Sandbox::up(&["-n", "3"]);
    let file = write_topology(&sb, "chain.yaml", &[None, Some(1), Some(2)]);
    let state = state_dir(&sb);
    let before = shape(&sb, 3);

    // No terminal, no --auto-approve: refused.
    let (code, _, err) = orch(&["apply", &file, "--state", &state]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--auto-approve"), "{err}");
    assert_eq!(shape(&sb, 3), before);

    // A saved plan is refused once the live topology moved on.
    let saved = sb.dir.join("plan.json");
    let saved = saved.to_str().unwrap();
    let (code, _, err) = orch(&["plan", &file, "-o", saved]);
    assert_eq!(code, 0, "{err}");
    sb.root(3, "STOP SLAVE");
    let moved = shape(&sb, 3);
    let (code, _, err) = orch(&["apply", saved, "--state", &state]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("stale plan") && err.contains("node3"), "{err}");
    assert_eq!(shape(&sb, 3), moved);
    sb.root(3, "START SLAVE");

    // A locked cluster: refused at once, naming the holder.
    let store = orch::state::Store::open(std::path::Path::new(&state)).unwrap();
    let who = orch::state::Who::current();
    let lock = store
        .lock("sandbox", &who, Duration::from_secs(60))
        .unwrap();
    let (code, _, err) = orch(&["apply", &file, "--auto-approve", "--state", &state]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("locked by pid"), "{err}");
    eventually("node3 replicates again", Duration::from_secs(10), || {
        shape(&sb, 3) == before
    });
    drop(lock);

    // The same saved plan, once the topology is back where it was, applies.
    let (code, out, err) = orch(&["apply", saved, "--state", &state]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, again) = plan_json(&file, &[]);
    assert_eq!((code, steps(&again)), (0, Vec::<String>::new()), "{again}");
    sb.down();
}

/// Inserts ids `from`, `from + 1`, ... into app.t as one account until `done`; returns the
/// acknowledged ids and the errors. After an error it reconnects (an application retrying)
/// or, with `stop_on_error`, stops (an application whose proxy moves it to the new primary:
/// a READ_ONLY ADMIN holder reconnecting to the demoted primary could still write there).
pub(crate) fn writer(
    opts: mysql_async::Opts,
    from: u64,
    stop_on_error: bool,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Vec<u64>, Vec<String>)> {
    std::thread::spawn(move || {
        let rt = crate::sandbox::runtime();
        rt.block_on(async {
            let mut acked = Vec::new();
            let mut errors = Vec::new();
            let mut conn = mysql_async::Conn::new(opts.clone()).await.unwrap();
            let mut id = from;
            while !done.load(Ordering::SeqCst) {
                match conn
                    .query_drop(format!("INSERT INTO app.t VALUES ({id})"))
                    .await
                {
                    Ok(()) => acked.push(id),
                    Err(e) => {
                        errors.push(e.to_string());
                        if stop_on_error {
                            break;
                        }
                        match mysql_async::Conn::new(opts.clone()).await {
                            Ok(c) => conn = c,
                            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    }
                }
                id += 1;
            }
            (acked, errors)
        })
    })
}

/// Waits until every one of servers 1..=n has every id in `acked` in app.t.
pub(crate) fn everywhere(sb: &Sandbox, n: usize, acked: &[u64]) {
    let list = acked
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",");
    for i in 1..=n {
        eventually(
            &format!("node{i} has every acknowledged write"),
            Duration::from_secs(10),
            || {
                let rows = sb.root(
                    i,
                    &format!("SELECT COUNT(*) AS c FROM app.t WHERE id IN ({list})"),
                );
                first(&rows, "c") == acked.len().to_string()
            },
        );
    }
}

/// Two applications writing to node1 (table app.t): `app`, an ordinary account that
/// retries after an error, and `admin`, holding READ_ONLY ADMIN (which read_only does not
/// stop), that stops at its first error.
pub(crate) struct Writers {
    done: Arc<AtomicBool>,
    app: std::thread::JoinHandle<(Vec<u64>, Vec<String>)>,
    admin: std::thread::JoinHandle<(Vec<u64>, Vec<String>)>,
}

impl Writers {
    /// Creates the accounts and starts both; returns once both have written.
    pub(crate) fn start(sb: &Sandbox) -> Writers {
        for sql in [
            "CREATE DATABASE app",
            "CREATE TABLE app.t (id BIGINT PRIMARY KEY)",
            "CREATE USER app@'127.%' IDENTIFIED BY 'app-password'",
            "GRANT SELECT, INSERT ON app.* TO app@'127.%'",
            "CREATE USER admin@'127.%' IDENTIFIED BY 'admin-password'",
            "GRANT SELECT, INSERT ON app.* TO admin@'127.%'",
            "GRANT READ_ONLY ADMIN ON *.* TO admin@'127.%'",
        ] {
            sb.root(1, sql);
        }
        let done = Arc::new(AtomicBool::new(false));
        let opts = |user: &str| sb.tcp_opts(1, user, &format!("{user}-password"));
        let app = writer(opts("app"), 1, false, done.clone());
        let admin = writer(opts("admin"), 1_000_000_000, true, done.clone());
        let count = |filter: &str| {
            let sql = format!("SELECT COUNT(*) AS c FROM app.t WHERE {filter}");
            first(&sb.root(1, &sql), "c")
        };
        eventually("both writers are writing", Duration::from_secs(10), || {
            count("id >= 1000000000") != "0" && count("id < 1000000000") != "0"
        });
        Writers { done, app, admin }
    }

    /// Stops both: the ids acknowledged. Each got only clean errors, and the admin's
    /// session was killed by the fence (exactly one error).
    pub(crate) fn stop(self) -> Vec<u64> {
        self.done.store(true, Ordering::SeqCst);
        let (mut acked, mut errors) = self.app.join().unwrap();
        let (admin_acked, admin_errors) = self.admin.join().unwrap();
        assert!(!acked.is_empty() && !admin_acked.is_empty());
        assert_eq!(
            admin_errors.len(),
            1,
            "the admin's session was killed by the fence: {admin_errors:?}"
        );
        acked.extend(admin_acked);
        errors.extend(admin_errors);
        errors.iter().for_each(|e| a_clean_error(e));
        acked
    }
}

/// What a writer may see when its primary is fenced: read-only (1290), or its session
/// killed by the fence.
pub(crate) fn a_clean_error(e: &str) {
    assert!(
        e.contains("1290") || e.contains("read-only") || e.to_lowercase().contains("connection"),
        "a clean error: {e}"
    );
}

/// Whether server `i`'s binlog has every GTID server `of`'s has.
pub(crate) fn has_every_gtid_of(sb: &Sandbox, i: usize, of: usize) -> bool {
    let position = |i| {
        let p = first(&sb.root(i, "SELECT @@gtid_binlog_pos AS p"), "p");
        orch::gtid::GtidSet::parse(orch::gtid::Flavor::Mariadb, &p).unwrap()
    };
    position(i).contains(&position(of)).unwrap()
}

/// The case users fear: an application writes continuously to the primary while a
/// switchover is applied, as an ordinary account and as one holding READ_ONLY ADMIN (which
/// read_only does not stop). Every acknowledged write ends on the new primary and every
/// replica; the demoted primary holds nothing the new one lacks; the writers got clean
/// errors; exactly one server is writable.
#[test]
fn switchover_under_write_load() {
    let sb = Sandbox::up(&["-n", "3"]);
    let writers = Writers::start(&sb);
    let file = write_topology(&sb, "switchover.yaml", &[Some(2), None, Some(2)]);
    let state = state_dir(&sb);
    let (code, out, err) = orch(&["apply", &file, "--auto-approve", "--state", &state]);
    let acked = writers.stop();
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        (
            first(&sb.root(1, "SELECT @@read_only AS r"), "r"),
            first(&sb.root(2, "SELECT @@read_only AS r"), "r"),
            first(&sb.root(3, "SELECT @@read_only AS r"), "r")
        ),
        ("1".into(), "0".into(), "1".into()),
        "exactly one writable server\n{out}\n{err}"
    );
    everywhere(&sb, 3, &acked);
    assert!(has_every_gtid_of(&sb, 2, 1), "node1 has GTIDs node2 lacks");
    sb.down();
}

/// `pre_switchover` and `post_switchover` hooks: a failing pre hook aborts the apply with
/// nothing changed; a passing one lets it run, and the post hook sees who was replaced by
/// whom.
#[test]
fn switchover_hooks_abort_and_inform() {
    let sb = Sandbox::up(&["-n", "3"]);
    let log = sb.dir.join("hooks.log");
    let gate = sb.dir.join("allow");
    std::fs::write(
        sb.dir.join("hooked.yaml"),
        format!(
            "hooks:\n  pre_switchover:\n    - 'test -e {gate}'\n  post_switchover:\n    - 'echo {{event}} {{failed}} {{successor}} {{successor_address}} >> {log}'\n",
            gate = gate.display(),
            log = log.display()
        ),
    )
    .unwrap();
    let file = write_topology(&sb, "switchover.yaml", &[Some(2), None, Some(2)]);
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("policy: safe", "policy: hooked.yaml");
    std::fs::write(&file, text).unwrap();
    let state = state_dir(&sb);
    let before = shape(&sb, 3);
    let (code, out, err) = orch(&["apply", &file, "--auto-approve", "--state", &state]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("aborted by the pre_switchover hook"), "{err}");
    assert_eq!(shape(&sb, 3), before, "nothing changed");

    std::fs::write(&gate, "").unwrap();
    let (code, out, err) = orch(&["apply", &file, "--auto-approve", "--state", &state]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("switchover node1 node2 {}\n", sb.address(2))
    );
    sb.down();
}
