//! Store tests on real files in temporary directories (WAL, locking and crashes are the
//! point, so no in-memory databases): location, schema versions, history, locks, several
//! stores on one file, and a writer process killed with SIGKILL.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::*;

fn who(user: &str, pid: u32) -> Who {
    Who {
        user: user.into(),
        host: hostname(),
        pid,
    }
}

fn me(user: &str) -> Who {
    who(user, std::process::id())
}

/// The pid of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    assert!(!pid_alive(pid), "pid {pid} was reused at once");
    pid
}

fn new_run(cluster: &str, who: Who) -> NewRun {
    NewRun {
        kind: RunKind::Apply,
        cluster: cluster.into(),
        who,
        files: vec![RunFile {
            path: "shop.yaml".into(),
            sha256: "ab".repeat(32),
        }],
        fingerprint: Some("sha256:f00d".into()),
        steps_planned: None,
    }
}

fn step(number: u32) -> StepRecord {
    StepRecord {
        number,
        host: format!("db{number}"),
        address: format!("10.0.0.{number}:3306"),
        action: "fence".into(),
        description: "read_only=ON".into(),
        statements: vec!["SET GLOBAL read_only = ON".into(), "SELECT 1".into()],
    }
}

/// A raw query on the store's own connection, for what the API does not show.
fn query_i64(store: &Store, sql: &str) -> i64 {
    store.db.conn().query_row(sql, [], |r| r.get(0)).unwrap()
}

fn query_text(store: &Store, sql: &str) -> String {
    store.db.conn().query_row(sql, [], |r| r.get(0)).unwrap()
}

fn poll_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------
// Location and opening

/// The apply engine shares a store (and moves a lock) across threads and tasks.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Store>();
    shareable::<ClusterLock>();
    shareable::<StateError>();
};

#[test]
fn the_state_dir_comes_from_the_flag_then_the_environment() {
    /// (--state, environment, the directory; None: NoStateDir)
    type Case = (
        Option<&'static str>,
        &'static [(&'static str, &'static str)],
        Option<&'static str>,
    );
    let cases: &[Case] = &[
        (
            Some("/flag"),
            &[("ORCH_STATE", "/env"), ("HOME", "/h")],
            Some("/flag"),
        ),
        (
            None,
            &[("ORCH_STATE", "/env"), ("XDG_STATE_HOME", "/x")],
            Some("/env"),
        ),
        (None, &[("ORCH_STATE", "rel/dir")], Some("rel/dir")),
        (
            None,
            &[("ORCH_STATE", ""), ("XDG_STATE_HOME", "/x"), ("HOME", "/h")],
            Some("/x/orch"),
        ),
        (
            None,
            &[("XDG_STATE_HOME", "relative"), ("HOME", "/h")],
            Some("/h/.local/state/orch"),
        ),
        (
            None,
            &[("XDG_STATE_HOME", ""), ("HOME", "/h")],
            Some("/h/.local/state/orch"),
        ),
        (None, &[("HOME", "/h")], Some("/h/.local/state/orch")),
        (None, &[("HOME", "")], None),
        (None, &[], None),
    ];
    for (flag, env, want) in cases {
        let lookup = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        };
        let got = resolve_dir(flag.map(Path::new), lookup);
        match (want, got) {
            (Some(want), Ok(got)) => assert_eq!(got, PathBuf::from(want), "{flag:?} {env:?}"),
            (None, Err(StateError::NoStateDir)) => {}
            (want, got) => panic!("{flag:?} {env:?}: want {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn open_creates_a_private_dir_and_a_wal_database_at_the_current_version() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/orch");
    let store = Store::open(&dir).unwrap();
    for d in [tmp.path().join("a"), dir.clone()] {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
    assert_eq!(store.path(), dir.join("orch.db"));
    assert!(store.path().is_file());
    let mode: String = store
        .db
        .conn()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(
        query_i64(&store, "PRAGMA user_version"),
        schema::current_version()
    );
    assert_eq!(query_i64(&store, "PRAGMA foreign_keys"), 1);
    let tables = query_i64(
        &store,
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN \
         ('runs', 'run_steps', 'locks', 'downtimes', 'cluster_state')",
    );
    assert_eq!(tables, 5);
}

#[test]
fn an_existing_dir_keeps_its_mode_and_reopening_keeps_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
    let id = Store::open(tmp.path())
        .unwrap()
        .begin_run(new_run("shop", me("alice")))
        .unwrap();
    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.run(id).unwrap().unwrap().run.cluster, "shop");
    let mode = std::fs::metadata(tmp.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o750);
}

#[test]
fn a_store_from_a_newer_orch_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    store
        .db
        .conn()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    drop(store);
    match Store::open(tmp.path()) {
        Err(e @ StateError::TooNew { found: 99, .. }) => {
            let known = schema::current_version();
            assert!(matches!(e, StateError::TooNew { known: k, .. } if k == known));
            let text = e.to_string();
            assert!(
                text.contains("schema version 99") && text.contains("newer orch"),
                "{text}"
            );
        }
        other => panic!("want TooNew, got {:?}", other.err()),
    }
}

#[test]
fn a_failing_migration_leaves_the_previous_version() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.db");
    let mut conn = rusqlite::Connection::open(&path).unwrap();
    let good = "CREATE TABLE a (x)";
    let bad = "CREATE TABLE b (x); INSERT INTO no_such_table VALUES (1)";
    let err = schema::migrate(&mut conn, &[good, bad], &path).unwrap_err();
    assert!(matches!(err, StateError::Db { .. }), "{err:?}");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 1);
    let b: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'b'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(b, 0, "the failed script's table was rolled back");
    // Fixed, the next migration applies and earlier ones are not run again.
    let fixed = "CREATE TABLE b (x)";
    schema::migrate(&mut conn, &[good, fixed], &path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
}

#[test]
fn version_3_keeps_runs_steps_and_the_id_sequence() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.db");
    let mut conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    schema::migrate(&mut conn, &schema::MIGRATIONS[..2], &path).unwrap();
    conn.execute_batch(
        "INSERT INTO runs (kind, cluster, started_at, user, host, pid, outcome, detail) \
           VALUES ('apply', 'shop', 1, 'u', 'h', 1, 'succeeded', '{}'); \
         INSERT INTO runs (kind, cluster, started_at, user, host, pid, outcome) \
           VALUES ('recovery', 'shop', 2, 'u', 'h', 1, 'failed'); \
         INSERT INTO run_steps (run_id, number, host, address, action, description) \
           VALUES (1, 1, 'db1', 'a:1', 'fence', 'd'); \
         DELETE FROM runs WHERE id = 2;",
    )
    .unwrap();
    schema::migrate(&mut conn, schema::MIGRATIONS, &path).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM runs"), 1);
    assert_eq!(count("SELECT count(*) FROM run_steps"), 1, "steps kept");
    assert_eq!(count("SELECT count(*) FROM runs WHERE detail = '{}'"), 1);
    conn.execute(
        "INSERT INTO runs (kind, cluster, started_at, user, host, pid, outcome) \
           VALUES ('reload', 'shop', 3, 'u', 'h', 1, 'succeeded')",
        [],
    )
    .unwrap();
    // Run 2 was pruned: its number is never given again.
    assert_eq!(count("SELECT max(id) FROM runs"), 3);
    // Deleting a run still removes its steps.
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    conn.execute("DELETE FROM runs WHERE id = 1", []).unwrap();
    assert_eq!(count("SELECT count(*) FROM run_steps"), 0);
}

#[test]
fn utc_formats_unix_millis() {
    for (ms, want) in [
        (0, "1970-01-01 00:00:00Z"),
        (-1, "1969-12-31 23:59:59Z"),
        (951_782_400_000, "2000-02-29 00:00:00Z"),
        (1_700_000_000_999, "2023-11-14 22:13:20Z"),
        (4_107_542_399_000, "2100-02-28 23:59:59Z"),
    ] {
        assert_eq!(utc(ms), want, "{ms}");
    }
}

// ---------------------------------------------------------------------------------------
// History

#[test]
fn a_run_reads_back_with_its_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let before = now_millis();
    let id = store.begin_run(new_run("shop", me("alice"))).unwrap();
    store.record_step_started(id, step(1)).unwrap();
    store
        .record_step_finished(id, 1, StepResult::Done, None)
        .unwrap();
    store.record_step_started(id, step(2)).unwrap();
    store
        .record_step_finished(id, 2, StepResult::Failed, Some("Access denied"))
        .unwrap();
    store.record_step_not_run(id, step(3)).unwrap();
    store
        .finish_run(
            id,
            Outcome::Failed,
            Some("step 2 failed"),
            "1 of 3 steps done",
        )
        .unwrap();
    let after = now_millis();

    let detail = store.run(id).unwrap().expect("the run exists");
    let run = &detail.run;
    assert_eq!(
        (run.id, run.kind, run.cluster.as_str()),
        (id, RunKind::Apply, "shop")
    );
    assert_eq!(run.who, me("alice"));
    assert_eq!(run.outcome, Outcome::Failed);
    assert_eq!(run.error.as_deref(), Some("step 2 failed"));
    assert_eq!(run.summary.as_deref(), Some("1 of 3 steps done"));
    assert_eq!((run.steps_done, run.steps_total), (1, 3));
    let ended = run.ended_at.expect("finished");
    assert!(before <= run.started_at && run.started_at <= ended && ended <= after);
    assert_eq!(detail.files, new_run("x", me("x")).files);
    assert_eq!(detail.fingerprint.as_deref(), Some("sha256:f00d"));

    let results: Vec<_> = detail.steps.iter().map(|s| (s.number, s.result)).collect();
    assert_eq!(
        results,
        [
            (1, Some(StepResult::Done)),
            (2, Some(StepResult::Failed)),
            (3, Some(StepResult::NotRun))
        ]
    );
    let s2 = &detail.steps[1];
    assert_eq!(
        (s2.host.as_str(), s2.address.as_str()),
        ("db2", "10.0.0.2:3306")
    );
    assert_eq!(
        (s2.action.as_str(), s2.description.as_str()),
        ("fence", "read_only=ON")
    );
    assert_eq!(s2.statements, step(2).statements);
    assert_eq!(s2.error.as_deref(), Some("Access denied"));
    assert!(s2.started_at.unwrap() <= s2.ended_at.unwrap());
    assert_eq!(
        (detail.steps[2].started_at, detail.steps[2].ended_at),
        (None, None)
    );

    assert_eq!(
        store.runs(&RunFilter::default()).unwrap(),
        vec![detail.run.clone()]
    );
}

#[test]
fn runs_list_newest_first_filtered_by_cluster_time_and_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let ids: Vec<RunId> = ["a", "b", "a", "a"]
        .iter()
        .map(|c| store.begin_run(new_run(c, me("alice"))).unwrap())
        .collect();
    // The first run started long ago.
    store
        .db
        .conn()
        .execute(
            "UPDATE runs SET started_at = 1000 WHERE id = ?1",
            [ids[0].0],
        )
        .unwrap();
    let list = |filter: RunFilter| -> Vec<RunId> {
        store.runs(&filter).unwrap().iter().map(|r| r.id).collect()
    };
    assert_eq!(list(RunFilter::default()), [ids[3], ids[2], ids[1], ids[0]]);
    let a = || RunFilter {
        cluster: Some("a".into()),
        ..RunFilter::default()
    };
    assert_eq!(list(a()), [ids[3], ids[2], ids[0]]);
    assert_eq!(
        list(RunFilter {
            since: Some(2000),
            ..a()
        }),
        [ids[3], ids[2]]
    );
    assert_eq!(
        list(RunFilter {
            limit: Some(1),
            ..a()
        }),
        [ids[3]]
    );
    assert_eq!(
        list(RunFilter {
            cluster: Some("none".into()),
            ..RunFilter::default()
        }),
        []
    );
}

#[test]
fn calls_naming_what_does_not_exist_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let nowhere = RunId(999);
    assert!(store.run(nowhere).unwrap().is_none());
    assert!(matches!(
        store.record_step_started(nowhere, step(1)),
        Err(StateError::UnknownRun(RunId(999)))
    ));
    assert!(matches!(
        store.finish_run(nowhere, Outcome::Succeeded, None, ""),
        Err(StateError::UnknownRun(RunId(999)))
    ));
    let id = store.begin_run(new_run("shop", me("alice"))).unwrap();
    assert!(matches!(
        store.record_step_finished(id, 1, StepResult::Done, None),
        Err(StateError::UnknownStep { number: 1, .. })
    ));
    store.record_step_not_run(id, step(2)).unwrap();
    assert!(
        matches!(
            store.record_step_finished(id, 2, StepResult::Done, None),
            Err(StateError::UnknownStep { number: 2, .. })
        ),
        "a step recorded as not run cannot finish"
    );
    assert!(matches!(
        store.finish_run(id, Outcome::Running, None, ""),
        Err(StateError::Misuse(_))
    ));
}

#[test]
fn a_running_run_whose_process_is_gone_reads_as_interrupted() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let dead = dead_pid();
    let live = store.begin_run(new_run("c", me("alice"))).unwrap();
    let gone = store.begin_run(new_run("c", who("bob", dead))).unwrap();
    let remote = Who {
        host: "elsewhere.example".into(),
        ..who("carol", dead)
    };
    let elsewhere = store.begin_run(new_run("c", remote)).unwrap();
    let outcome = |id| store.run(id).unwrap().unwrap().run.outcome;
    assert_eq!(outcome(live), Outcome::Running);
    assert_eq!(outcome(gone), Outcome::Interrupted);
    // Another host's pid says nothing about this host's processes.
    assert_eq!(outcome(elsewhere), Outcome::Running);
}

/// A run whose process died after five of its plan's ten steps started (four done) reads
/// "4/10": its total is the plan's, not the steps recorded before it stopped.
#[test]
fn an_interrupted_run_counts_its_steps_against_its_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let run = NewRun {
        steps_planned: Some(10),
        ..new_run("shop", who("bob", dead_pid()))
    };
    let id = store.begin_run(run).unwrap();
    for n in 1..=5 {
        store.record_step_started(id, step(n)).unwrap();
        if n < 5 {
            store
                .record_step_finished(id, n, StepResult::Done, None)
                .unwrap();
        }
    }
    let run = store.run(id).unwrap().unwrap().run;
    assert_eq!(run.outcome, Outcome::Interrupted);
    assert_eq!((run.steps_done, run.steps_total), (4, 10));
    let listed = &store.runs(&RunFilter::default()).unwrap()[0];
    assert_eq!((listed.steps_done, listed.steps_total), (4, 10));
}

/// A refusal (anti-flap, a downtime, ...) is stored as such, not as a failure; a run
/// recorded before the store kept the plan's step count counts the steps recorded.
#[test]
fn version_5_stores_refusals_and_keeps_older_runs_step_counts() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let path = tmp.path().join(DB_FILE);
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        schema::migrate(&mut conn, &schema::MIGRATIONS[..4], &path).unwrap();
        conn.execute_batch(
            "INSERT INTO runs (kind, cluster, started_at, user, host, pid, outcome) \
               VALUES ('apply', 'shop', 1, 'u', 'elsewhere.example', 1, 'failed'); \
             INSERT INTO run_steps (run_id, number, host, address, action, description, \
               result) VALUES (1, 1, 'db1', 'a:1', 'fence', 'd', 'done'), \
               (1, 2, 'db2', 'a:2', 'fence', 'd', 'failed');",
        )
        .unwrap();
    }
    let store = Store::open(tmp.path()).unwrap();
    let old = store.run(RunId(1)).unwrap().unwrap().run;
    assert_eq!((old.steps_done, old.steps_total), (1, 2));
    let id = store.begin_run(new_run("shop", me("alice"))).unwrap();
    store
        .finish_run(
            id,
            Outcome::Refused,
            Some("blocked by anti-flap"),
            "blocked",
        )
        .unwrap();
    let run = store.run(id).unwrap().unwrap().run;
    assert_eq!((run.id, run.outcome), (RunId(2), Outcome::Refused));
    assert_eq!((run.steps_done, run.steps_total), (0, 0));
}

#[test]
fn a_corrupt_record_is_reported_not_misread() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let id = store.begin_run(new_run("c", me("alice"))).unwrap();
    store
        .db
        .conn()
        .execute("UPDATE runs SET files = 'not json' WHERE id = ?1", [id.0])
        .unwrap();
    match store.run(id) {
        Err(e @ StateError::Corrupt { .. }) => assert!(e.to_string().contains("files"), "{e}"),
        other => panic!("want Corrupt, got {other:?}"),
    }
}

#[test]
fn several_stores_write_one_file_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (writers, runs_each) = (4, 25);
    let barrier = Arc::new(Barrier::new(writers));
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (dir, barrier) = (tmp.path().to_path_buf(), barrier.clone());
            std::thread::spawn(move || {
                // Opening a fresh file at once also races the migration.
                barrier.wait();
                let store = Store::open(&dir).unwrap();
                for _ in 0..runs_each {
                    let id = store.begin_run(new_run(&format!("c{w}"), me("w"))).unwrap();
                    store.record_step_started(id, step(1)).unwrap();
                    store
                        .record_step_finished(id, 1, StepResult::Done, None)
                        .unwrap();
                    store
                        .finish_run(id, Outcome::Succeeded, None, "ok")
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let store = Store::open(tmp.path()).unwrap();
    let runs = store.runs(&RunFilter::default()).unwrap();
    assert_eq!(runs.len(), writers * runs_each);
    assert!(
        runs.iter()
            .all(|r| r.outcome == Outcome::Succeeded && r.steps_done == 1)
    );
}

// ---------------------------------------------------------------------------------------
// Locks

/// `contenders` stores on one file race for the lock on `cluster`; returns the results.
fn race(dir: &Path, cluster: &str, contenders: usize) -> Vec<Result<ClusterLock, StateError>> {
    let barrier = Arc::new(Barrier::new(contenders));
    let threads: Vec<_> = (0..contenders)
        .map(|i| {
            let (dir, barrier, cluster) = (dir.to_path_buf(), barrier.clone(), cluster.to_string());
            std::thread::spawn(move || {
                let store = Store::open(&dir).unwrap();
                barrier.wait();
                store.lock(&cluster, &me(&format!("u{i}")), Duration::from_secs(60))
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn assert_one_winner(results: &[Result<ClusterLock, StateError>]) {
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "{results:?}");
    for r in results {
        match r {
            Ok(_) => {}
            Err(StateError::Locked { holder, .. }) => assert_eq!(holder.pid, std::process::id()),
            Err(e) => panic!("a loser must see Locked, not {e:?}"),
        }
    }
}

#[test]
fn of_several_stores_racing_for_a_free_lock_exactly_one_wins() {
    let tmp = tempfile::tempdir().unwrap();
    Store::open(tmp.path()).unwrap();
    assert_one_winner(&race(tmp.path(), "shop", 8));
}

#[test]
fn a_lock_whose_process_is_gone_is_taken_over_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let dead = who("ghost", dead_pid());
    let stale = store
        .lock("shop", &dead, Duration::from_secs(3600))
        .unwrap();
    std::mem::forget(stale); // the dead process never released it
    let orphan = store.begin_run(new_run("shop", dead.clone())).unwrap();
    let other_cluster = store.begin_run(new_run("other", dead)).unwrap();

    let results = race(tmp.path(), "shop", 8);
    assert_one_winner(&results);
    // The dead holder's run on that cluster is now recorded as interrupted, with why.
    let run = store.run(orphan).unwrap().unwrap().run;
    assert_eq!(run.outcome, Outcome::Interrupted);
    assert!(run.error.unwrap().contains("is gone") && run.ended_at.is_some());
    let raw = query_i64(
        &store,
        &format!(
            "SELECT outcome = 'running' FROM runs WHERE id = {}",
            other_cluster.0
        ),
    );
    assert_eq!(raw, 1, "runs on other clusters are left alone");
}

#[test]
fn a_live_holder_keeps_its_lock_and_a_remote_dead_pid_proves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let ttl = Duration::from_secs(3600);
    let _held = store.lock("here", &me("alice"), ttl).unwrap();
    let remote = Who {
        host: "elsewhere.example".into(),
        ..who("carol", dead_pid())
    };
    let _remote = store.lock("there", &remote, ttl).unwrap();
    for (cluster, user) in [("here", "alice"), ("there", "carol")] {
        match store.lock(cluster, &me("bob"), ttl) {
            Err(e @ StateError::Locked { .. }) => {
                let text = e.to_string();
                assert!(text.contains(&format!("(user {user})")), "{text}");
                assert!(
                    text.contains(&format!("cluster {cluster} is locked")),
                    "{text}"
                );
            }
            other => panic!("{cluster}: want Locked, got {other:?}"),
        }
    }
}

#[test]
fn a_lock_without_heartbeats_for_its_ttl_is_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let remote = Who {
        host: "elsewhere.example".into(),
        ..me("alice")
    };
    let t0 = 1_000_000;
    let ttl = Duration::from_secs(10);
    let a = store.lock_at("shop", &remote, ttl, t0).unwrap();
    let run = store.begin_run(new_run("shop", remote.clone())).unwrap();
    // bob's own TTL does not matter: the holder's does.
    let short = Duration::from_millis(1);
    let locked = |r: Result<ClusterLock, StateError>| match r {
        Err(StateError::Locked { holder, .. }) => holder,
        other => panic!("want Locked, got {other:?}"),
    };
    let holder = locked(store.lock_at("shop", &me("bob"), short, t0 + 5_000));
    assert_eq!(
        (holder.user.as_str(), holder.since, holder.heartbeat_at),
        ("alice", t0, t0)
    );
    a.heartbeat_at(t0 + 8_000).unwrap();
    let holder = locked(store.lock_at("shop", &me("bob"), short, t0 + 18_000));
    assert_eq!(holder.heartbeat_at, t0 + 8_000);

    let b = store.lock_at("shop", &me("bob"), ttl, t0 + 18_001).unwrap();
    assert!(matches!(
        a.heartbeat_at(t0 + 18_002),
        Err(StateError::LockLost { .. })
    ));
    let summary = store.run(run).unwrap().unwrap().run;
    assert_eq!(summary.outcome, Outcome::Interrupted);
    assert!(summary.error.unwrap().contains("no heartbeat"));
    // The old holder cannot release the new holder's lock, by release or by drop.
    assert!(matches!(a.release(), Err(StateError::LockLost { .. })));
    let holder = locked(store.lock_at("shop", &me("carol"), ttl, t0 + 18_003));
    assert_eq!(holder.user, "bob");
    b.heartbeat_at(t0 + 18_004).unwrap();
    b.release().unwrap();
    store
        .lock_at("shop", &me("carol"), ttl, t0 + 18_005)
        .unwrap();
}

#[test]
fn dropping_a_lock_releases_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let ttl = Duration::from_secs(60);
    let lock = store.lock("shop", &me("alice"), ttl).unwrap();
    assert_eq!(lock.cluster(), "shop");
    lock.heartbeat().unwrap();
    assert!(store.lock("shop", &me("bob"), ttl).is_err());
    drop(lock);
    let again = store.lock("shop", &me("bob"), ttl).unwrap();
    // Locks are per cluster.
    store
        .lock("other", &me("alice"), ttl)
        .unwrap()
        .release()
        .unwrap();
    again.release().unwrap();
}

/// The fence's check (async: it is awaited before each step), on a runtime of its own.
fn check(fence: &HeldLock) -> Result<(), String> {
    use crate::executor::fenced::Fence;
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(fence.check())
}

#[test]
fn a_lock_taken_over_fences_its_former_holder_s_steps() {
    use crate::executor::fenced::Fence;
    let tmp = tempfile::tempdir().unwrap();
    // Both holders' clocks move only when told: which check asks the store, and whether a
    // heartbeat is still valid, is decided here, not by how busy the machine is.
    let clock = lock::Clock::manual();
    let store = Store::open(tmp.path()).unwrap().with_clock(clock.clone());
    let remote = Who {
        host: "elsewhere.example".into(),
        ..me("alice")
    };
    let ttl = Duration::from_millis(400);
    // alice's last heartbeat, by the wall clock, is a minute old (as if she had been
    // paused since): bob takes the lock.
    let a = store
        .lock_at("shop", &remote, ttl, now_millis() - 60_000)
        .unwrap();
    let fence = a.fence();
    let b = store
        .lock_at("shop", &me("bob"), ttl, now_millis())
        .unwrap();
    // A heartbeat under a quarter TTL old vouches for the lock by itself (alice's own
    // clock has not moved since she took it) ...
    assert_eq!(check(&fence), Ok(()));
    // ... an older one is renewed by the next step's check, which finds the token gone.
    clock.advance(ttl / 4);
    let refused = check(&fence).unwrap_err();
    assert!(
        refused.contains("taken over by another process"),
        "{refused}"
    );
    // Known now: no further statement either.
    assert_eq!(fence.holds(), Err(refused));
    // bob's check renews his and finds it his.
    assert_eq!(check(&b.fence()), Ok(()));
    assert_eq!(b.fence().holds(), Ok(()));
    b.release().unwrap();
}

#[test]
fn a_lock_with_no_heartbeat_for_its_ttl_stops_its_statements_by_the_clock() {
    use crate::executor::fenced::Fence;
    let tmp = tempfile::tempdir().unwrap();
    let clock = lock::Clock::manual();
    let store = Store::open(tmp.path()).unwrap().with_clock(clock.clone());
    // lock_at sends no heartbeats of its own: as if this process were paused.
    let ttl = Duration::from_millis(300);
    let a = store
        .lock_at("shop", &me("alice"), ttl, now_millis())
        .unwrap();
    let fence = a.fence();
    // It holds until a sixth of the TTL before the TTL (the margin for other processes'
    // clocks), and not from then on.
    clock.advance(ttl - ttl / 6 - Duration::from_millis(1));
    assert_eq!(fence.holds(), Ok(()));
    clock.advance(Duration::from_millis(1));
    let why = fence.holds().unwrap_err();
    assert!(why.contains("no heartbeat within its TTL"), "{why}");
    // Nobody took it: a heartbeat finds it still ours and it holds again.
    let before = query_i64(&store, "SELECT heartbeat_at FROM locks");
    assert_eq!(check(&fence), Ok(()));
    assert_eq!(fence.holds(), Ok(()));
    assert!(query_i64(&store, "SELECT heartbeat_at FROM locks") >= before);
    // Under a quarter TTL later, the step check trusts that heartbeat (writes none) ...
    std::thread::sleep(Duration::from_millis(2));
    clock.advance(ttl / 4 - Duration::from_millis(1));
    let beat = query_i64(&store, "SELECT heartbeat_at FROM locks");
    assert_eq!(check(&fence), Ok(()));
    assert_eq!(query_i64(&store, "SELECT heartbeat_at FROM locks"), beat);
    // ... and from a quarter TTL on, it writes one.
    clock.advance(Duration::from_millis(1));
    assert_eq!(check(&fence), Ok(()));
    assert!(query_i64(&store, "SELECT heartbeat_at FROM locks") > beat);
    a.release().unwrap();
}

#[test]
fn a_held_lock_beats_on_its_own_through_a_step_longer_than_its_ttl() {
    use crate::executor::fenced::Fence;
    let tmp = tempfile::tempdir().unwrap();
    let clock = lock::Clock::manual();
    let store = Store::open(tmp.path()).unwrap().with_clock(clock.clone());
    let remote = Who {
        host: "elsewhere.example".into(),
        ..me("alice")
    };
    let ttl = Duration::from_millis(400);
    let a = store.lock("shop", &remote, ttl).unwrap();
    let fence = a.fence();
    let token = query_text(&store, "SELECT token FROM locks");
    let since = query_i64(&store, "SELECT since FROM locks");
    // Three TTLs with no heartbeat from the caller: the lock's thread sends them. Each
    // time the holder's clock says its last heartbeat ran out, only a heartbeat from the
    // thread (judged by the same clock) makes it hold again.
    for _ in 0..3 {
        clock.advance(ttl);
        poll_until(
            "a heartbeat from the lock's thread",
            Duration::from_secs(10),
            || fence.holds().is_ok(),
        );
    }
    poll_until("three TTLs of heartbeats", Duration::from_secs(10), || {
        query_i64(&store, "SELECT heartbeat_at FROM locks") - since > 3 * 400
    });
    // Never taken over meanwhile: the row is still this lock's.
    assert_eq!(query_text(&store, "SELECT token FROM locks"), token);
    a.release().unwrap();
    // Released: the thread stopped, the row is gone and stays gone.
    assert_eq!(query_i64(&store, "SELECT COUNT(*) FROM locks"), 0);
    Store::open(tmp.path())
        .unwrap()
        .lock("shop", &me("bob"), ttl)
        .unwrap()
        .release()
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// A writer killed with SIGKILL

const WRITER_DIR: &str = "ORCH_TEST_STATE_WRITER_DIR";
const WRITER_TEST: &str = "state::tests::writer_process";

/// Writes runs in a tight loop forever, holding the lock on cluster `killed`.
#[test]
#[ignore = "a helper: sigkill_mid_write_leaves_a_usable_store runs it in a child process"]
fn writer_process() {
    let dir = std::env::var_os(WRITER_DIR)
        .unwrap_or_else(|| panic!("only sigkill_mid_write_leaves_a_usable_store runs this"));
    let store = Store::open(Path::new(&dir)).unwrap();
    let me = Who::current();
    let _lock = store
        .lock("killed", &me, Duration::from_secs(3600))
        .unwrap();
    let big = "SELECT '".to_string() + &"x".repeat(4000) + "'";
    loop {
        let id = store.begin_run(new_run("killed", me.clone())).unwrap();
        for n in 1..=4 {
            let mut s = step(n);
            s.statements = vec![big.clone(); 8];
            store.record_step_started(id, s).unwrap();
            store
                .record_step_finished(id, n, StepResult::Done, None)
                .unwrap();
        }
        store
            .finish_run(id, Outcome::Succeeded, None, "done")
            .unwrap();
    }
}

#[test]
fn sigkill_mid_write_leaves_a_usable_store() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    for round in 1..=3 {
        let before = Store::open(tmp.path())
            .unwrap()
            .runs(&RunFilter::default())
            .unwrap()
            .len();
        let mut child = std::process::Command::new(&exe)
            .args([WRITER_TEST, "--exact", "--ignored", "--test-threads=1"])
            .env(WRITER_DIR, tmp.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let watcher = Store::open(tmp.path()).unwrap();
        poll_until(
            "the writer to record 20 runs",
            Duration::from_secs(60),
            || {
                if let Some(status) = child.try_wait().unwrap() {
                    let mut err = String::new();
                    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).ok();
                    panic!("the writer exited by itself ({status}): {err}");
                }
                watcher.runs(&RunFilter::default()).unwrap().len() >= before + 20
            },
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap(); // reaped: its pid is gone, not a zombie
        drop(watcher);

        let store = Store::open(tmp.path()).unwrap();
        let check: String = store
            .db
            .conn()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "round {round}");
        let runs = store.runs(&RunFilter::default()).unwrap();
        assert!(runs.len() >= before + 20, "round {round}");
        assert!(
            runs.iter().all(|r| r.outcome != Outcome::Running),
            "round {round}: the killed writer's run reads as interrupted"
        );
        for r in &runs {
            store
                .run(r.id)
                .unwrap()
                .expect("every listed run reads back");
        }
        // Its lock is taken over at once (its pid is gone), and writing works.
        let lock = store
            .lock("killed", &me("after"), Duration::from_secs(3600))
            .unwrap();
        assert_eq!(
            query_i64(
                &store,
                "SELECT count(*) FROM runs WHERE outcome = 'running'"
            ),
            0,
            "round {round}: the takeover recorded the killed run as interrupted"
        );
        let id = store.begin_run(new_run("killed", me("after"))).unwrap();
        store
            .finish_run(id, Outcome::Succeeded, None, "after")
            .unwrap();
        lock.release().unwrap();
    }
}
