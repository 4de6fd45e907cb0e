//! `orch apply` when things go wrong on real MariaDB, each made deterministic by holding a
//! step in place: a table lock on a replica stops its SQL thread, so a step that waits
//! for that replica's GTIDs cannot finish until the test releases the lock. While it is
//! held: a second apply is refused, signals arrive, a replica is killed. Also: a candidate
//! that fell behind after the plan was saved, and a wrong password.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::plan::{plan_json, shape, steps, write_topology};
use crate::sandbox::{Sandbox, eventually, first, orch, orch_ok, root_opts};

/// A root session on one server holding `LOCK TABLES app.t WRITE`: that server's SQL
/// thread waits for it, so whatever waits for the server's GTIDs waits too.
struct TableLock {
    rt: tokio::runtime::Runtime,
    conn: Option<mysql_async::Conn>,
}

impl TableLock {
    fn take(sb: &Sandbox, index: usize) -> TableLock {
        let rt = crate::sandbox::runtime();
        let conn = rt.block_on(async {
            let mut c = mysql_async::Conn::new(root_opts(&sb.socket(index)))
                .await
                .unwrap();
            c.query_drop("LOCK TABLES app.t WRITE").await.unwrap();
            c
        });
        TableLock {
            rt,
            conn: Some(conn),
        }
    }

    fn release(mut self) {
        let conn = self.conn.take().unwrap();
        self.rt.block_on(async {
            let mut c = conn;
            c.query_drop("UNLOCK TABLES").await.unwrap();
            c.disconnect().await.unwrap();
        });
    }
}

/// Everything `stream` says, as it says it (read by a thread of its own).
pub(crate) fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let collected = text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut s = collected.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    text
}

/// `orch apply ... --format json` running in the background: its JSON events as they come,
/// its stderr collected. Killed if the test fails before it ends.
struct Running {
    child: Child,
    events: Receiver<serde_json::Value>,
    seen: Vec<serde_json::Value>,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_orch"))
            .args(args)
            .args(["--format", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, events) = channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON event: {line}: {e}"));
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        let stderr = collect(child.stderr.take().unwrap());
        Running {
            child,
            events,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Waits for the event `name` of step `number` (e.g. `step_started`, 2).
    fn wait_for(&mut self, name: &str, number: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let event = self.events.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no {name} event for step {number}; events {:?}; stderr:\n{}",
                    self.seen,
                    self.stderr()
                )
            });
            self.seen.push(event.clone());
            if event["event"] == name && event["number"] == number {
                return;
            }
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child, which has not been reaped (it is running).
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Waits for the end: exit code and every event.
    fn finish(mut self) -> (i32, Vec<serde_json::Value>, String) {
        let status = self.child.wait().unwrap();
        self.seen.extend(self.events.iter());
        (
            status.code().unwrap_or(-1),
            self.seen.clone(),
            self.stderr(),
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The numbers of the steps an event stream reports as `name`.
fn numbered(events: &[serde_json::Value], name: &str) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e["event"] == name)
        .map(|e| e["number"].as_u64().unwrap())
        .collect()
}

fn outcome(events: &[serde_json::Value]) -> String {
    let last = events.last().expect("a final event");
    assert_eq!(last["event"], "finished", "{events:?}");
    last["outcome"].as_str().unwrap().to_string()
}

/// A 4-node star with app.t written once more on node1 and node2 held behind: the chain
/// plan's step 2 ("node2 waits until it has executed node3's GTIDs") cannot finish until
/// the returned lock is released.
fn star_with_node2_held() -> (Sandbox, TableLock, String) {
    let sb = Sandbox::up(&["-n", "4"]);
    sb.root(1, "CREATE DATABASE app");
    sb.root(1, "CREATE TABLE app.t (id INT PRIMARY KEY)");
    eventually("node2 has app.t", Duration::from_secs(10), || {
        !sb.root(2, "SHOW TABLES FROM app LIKE 't'").is_empty()
    });
    let lock = TableLock::take(&sb, 2);
    sb.root(1, "INSERT INTO app.t VALUES (1)");
    eventually("node3 has the row", Duration::from_secs(10), || {
        first(&sb.root(3, "SELECT COUNT(*) AS c FROM app.t"), "c") == "1"
    });
    let file = write_topology(&sb, "chain.yaml", &[None, Some(1), Some(2), Some(3)]);
    let (_, plan) = plan_json(&file, &[]);
    assert_eq!(
        steps(&plan)[1],
        "node2 wait_for_gtid",
        "step 2 waits on node2: {plan}"
    );
    (sb, lock, file)
}

fn state_dir(sb: &Sandbox) -> String {
    sb.dir.join("state").to_str().unwrap().to_string()
}

/// While one apply holds the cluster, a second is refused at once and changes nothing;
/// Ctrl-C, twice, lets the running step finish and stops before the next; planning again
/// converges.
#[test]
fn a_busy_cluster_refuses_a_second_apply_and_signals_stop_after_the_step() {
    let (sb, lock, file) = star_with_node2_held();
    let state = state_dir(&sb);
    let mut apply = Running::start(&["apply", &file, "--auto-approve", "--state", &state]);
    apply.wait_for("step_started", 2);

    let before = shape(&sb, 4);
    let (code, _, err) = orch(&["apply", &file, "--auto-approve", "--state", &state]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("locked by pid"), "{err}");
    assert_eq!(shape(&sb, 4), before, "the refused apply changed nothing");

    apply.signal(libc::SIGINT);
    eventually("the first signal is seen", Duration::from_secs(10), || {
        apply.stderr().contains("stopping after the current step")
    });
    apply.signal(libc::SIGINT);
    eventually("the second signal is seen", Duration::from_secs(10), || {
        apply.stderr().contains("already stopping")
    });
    assert!(
        apply.running(),
        "a second signal does not kill a step midway"
    );
    lock.release();
    let (code, events, err) = apply.finish();
    assert_eq!(code, 1, "{err}");
    assert_eq!(outcome(&events), "interrupted", "{events:?}");
    assert_eq!(numbered(&events, "step_finished"), vec![1, 2], "{events:?}");
    assert_eq!(numbered(&events, "step_started"), vec![1, 2], "{events:?}");

    let (code, out, err) = orch(&["apply", &file, "--auto-approve", "--state", &state]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, again) = plan_json(&file, &[]);
    assert_eq!((code, steps(&again)), (0, Vec::<String>::new()), "{again}");
    let (_, history, _) = orch(&["history", "--state", &state, "--format", "json"]);
    let h: serde_json::Value = serde_json::from_str(&history).unwrap();
    let outcomes: Vec<&str> = h["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["succeeded", "interrupted"],
        "the refused apply is not a run"
    );
    sb.down();
}

/// A replica killed while the apply runs: the apply stops at that replica's first step,
/// says why, runs nothing after it; once the replica is back, apply converges.
#[test]
fn a_replica_killed_mid_apply_stops_it_at_that_step() {
    let (sb, lock, file) = star_with_node2_held();
    let state = state_dir(&sb);
    let mut apply = Running::start(&["apply", &file, "--auto-approve", "--state", &state]);
    apply.wait_for("step_started", 2);
    orch_ok(&["sandbox", "kill", sb.d(), "4"]);
    lock.release();
    let (code, events, err) = apply.finish();
    assert_eq!(code, 1, "{err}");
    assert_eq!(outcome(&events), "failed", "{events:?}");
    assert_eq!(numbered(&events, "step_finished"), vec![1, 2, 3, 4]);
    assert_eq!(numbered(&events, "step_failed"), vec![5], "{events:?}");
    let failed = events.iter().find(|e| e["event"] == "step_failed").unwrap();
    assert_eq!(failed["host"], "node4");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("node4 is unreachable"),
        "{failed}"
    );
    assert_eq!(numbered(&events, "step_started"), vec![1, 2, 3, 4, 5]);

    orch_ok(&["sandbox", "start", sb.d(), "4"]);
    let (code, out, err) = orch(&["apply", &file, "--auto-approve", "--state", &state]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, again) = plan_json(&file, &[]);
    assert_eq!((code, steps(&again)), (0, Vec::<String>::new()), "{again}");
    sb.down();
}

/// The plan was saved while the candidate was current; by the time it is applied the
/// candidate lags beyond the policy's max_lag (lag is not in the fingerprint): refused
/// right before the fence, nothing changed. Once it caught up, the same plan applies.
#[test]
fn a_candidate_that_fell_behind_is_refused_before_the_fence() {
    let sb = Sandbox::up(&["-n", "3"]);
    sb.root(1, "CREATE DATABASE app");
    sb.root(1, "CREATE TABLE app.t (id INT PRIMARY KEY)");
    eventually("node2 has app.t", Duration::from_secs(10), || {
        !sb.root(2, "SHOW TABLES FROM app LIKE 't'").is_empty()
    });
    std::fs::write(
        sb.dir.join("impatient.yaml"),
        "failover:\n  promote:\n    max_lag: 1s\n",
    )
    .unwrap();
    let file = write_topology(&sb, "switchover.yaml", &[Some(2), None, Some(2)]);
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("policy: safe", "policy: impatient.yaml");
    std::fs::write(&file, text).unwrap();
    let saved = sb.dir.join("plan.json");
    let saved = saved.to_str().unwrap();
    orch_ok(&["plan", &file, "-o", saved]);

    let lock = TableLock::take(&sb, 2);
    sb.root(1, "INSERT INTO app.t VALUES (1)");
    eventually("node2 lags 2s", Duration::from_secs(10), || {
        let lag = first(&sb.root(2, "SHOW SLAVE STATUS"), "Seconds_Behind_Master");
        lag.parse::<u64>().is_ok_and(|l| l >= 2)
    });
    let before = shape(&sb, 3);
    let state = state_dir(&sb);
    let (code, out, err) = orch(&["apply", saved, "--state", &state]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("node2 is") && err.contains("behind") && err.contains("nothing was fenced"),
        "{err}"
    );
    assert_eq!(shape(&sb, 3), before, "nothing changed");
    assert_eq!(first(&sb.root(1, "SELECT @@read_only AS r"), "r"), "0");

    lock.release();
    eventually("node2 caught up", Duration::from_secs(10), || {
        first(&sb.root(2, "SELECT COUNT(*) AS c FROM app.t"), "c") == "1"
    });
    let (code, out, err) = orch(&["apply", saved, "--state", &state]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(first(&sb.root(2, "SELECT @@read_only AS r"), "r"), "0");
    sb.down();
}

/// A wrong password: a clear error that names the problem and never the password, exit 1,
/// nothing changed, nothing recorded.
#[test]
fn a_wrong_password_changes_nothing() {
    let sb = Sandbox::up(&["-n", "3"]);
    let wrong = "not-the-orch-password-4711";
    let secret = sb.dir.join("secrets/wrong.password");
    std::fs::write(&secret, wrong).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let file = write_topology(&sb, "switchover.yaml", &[Some(2), None, Some(2)]);
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("secrets/orch.password", "secrets/wrong.password");
    std::fs::write(&file, text).unwrap();
    let before = shape(&sb, 3);
    let state = state_dir(&sb);
    let (code, out, err) = orch(&["apply", &file, "--auto-approve", "--state", &state]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("access denied"), "{err}");
    assert!(!out.contains(wrong) && !err.contains(wrong), "{out}\n{err}");
    assert_eq!(shape(&sb, 3), before);
    assert!(!sb.dir.join("state").exists(), "no run recorded");
    sb.down();
}
