//! `orch history` through the real binary, on runs written with the library's store (as
//! `orch apply` will write them) into temporary state directories: the list and one run, as
//! text and JSON, filters, where the state lives, and the errors.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use orch::state::{NewRun, Outcome, RunFile, RunId, RunKind, StepRecord, StepResult, Store, Who};

use crate::common::orch;

/// Runs `orch history ARGS` with `env` set (and `ORCH_STATE` removed unless given);
/// returns (exit code, stdout, stderr).
fn history(args: &[&str], env: &[(&str, &Path)]) -> (i32, String, String) {
    let mut cmd = orch();
    cmd.arg("history").args(args).env_remove("ORCH_STATE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("orch runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn state_args<'a>(dir: &'a Path, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = args.to_vec();
    all.extend(["--state", dir.to_str().unwrap()]);
    all
}

fn who(user: &str) -> Who {
    Who {
        user: user.into(),
        ..Who::current()
    }
}

fn step(number: u32, host: &str, action: &str) -> StepRecord {
    StepRecord {
        number,
        host: host.into(),
        address: format!("10.0.0.{number}:3306"),
        action: action.into(),
        description: format!("{action} on {host}"),
        statements: vec![format!("STATEMENT {number} ON {host}")],
    }
}

/// Three runs: shop succeeded (2 steps), shop failed (done, failed, not run), other still
/// running (this test process is alive). Returns their ids in that order.
fn three_runs(dir: &Path) -> [RunId; 3] {
    let store = Store::open(dir).unwrap();
    let begin = |cluster: &str, user: &str| {
        store
            .begin_run(NewRun {
                kind: RunKind::Apply,
                cluster: cluster.into(),
                who: who(user),
                files: vec![RunFile {
                    path: format!("{cluster}.yaml"),
                    sha256: "cd".repeat(32),
                }],
                fingerprint: Some("sha256:0123456789abcdef".into()),
                steps_planned: None,
            })
            .unwrap()
    };
    let ok = begin("shop", "alice");
    for (n, host) in [(1, "db1"), (2, "db2")] {
        store
            .record_step_started(ok, step(n, host, "fence"))
            .unwrap();
        store
            .record_step_finished(ok, n, StepResult::Done, None)
            .unwrap();
    }
    store
        .finish_run(ok, Outcome::Succeeded, None, "2 steps done")
        .unwrap();

    let failed = begin("shop", "bob");
    store
        .record_step_started(failed, step(1, "db1", "stop_replication"))
        .unwrap();
    store
        .record_step_finished(failed, 1, StepResult::Done, None)
        .unwrap();
    store
        .record_step_started(failed, step(2, "db2", "change_source"))
        .unwrap();
    store
        .record_step_finished(
            failed,
            2,
            StepResult::Failed,
            Some("Access denied for user"),
        )
        .unwrap();
    store
        .record_step_not_run(failed, step(3, "db3", "start_replication"))
        .unwrap();
    store
        .finish_run(
            failed,
            Outcome::Failed,
            Some("step 2 failed"),
            "1 of 3 steps done",
        )
        .unwrap();

    let running = begin("other", "carol");
    [ok, failed, running]
}

#[test]
fn an_empty_history_is_one_friendly_line_in_a_new_private_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new/state");
    let (code, out, err) = history(&state_args(&dir, &[]), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!(
            "no runs recorded in {} (orch apply records its runs here)\n",
            dir.join("orch.db").display()
        )
    );
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert!(dir.join("orch.db").is_file());

    let (code, out, err) = history(&state_args(&dir, &["--format", "json"]), &[]);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json, serde_json::json!({"schema": 1, "runs": []}));
}

#[test]
fn runs_list_newest_first_with_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let [ok, failed, running] = three_runs(tmp.path());
    let (code, out, err) = history(&state_args(tmp.path(), &[]), &[]);
    assert_eq!(code, 0, "{err}");
    let row = |needle: &str| {
        out.lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} in\n{out}"))
    };
    let (r_running, r_failed, r_ok) = (row("carol@"), row("bob@"), row("alice@"));
    assert!(
        r_running < r_failed && r_failed < r_ok,
        "newest first:\n{out}"
    );
    let line = out.lines().nth(r_failed).unwrap();
    for cell in [
        &failed.to_string(),
        "apply",
        "shop",
        "failed",
        "1/3",
        "1 of 3 steps",
    ] {
        assert!(line.contains(cell), "{cell} in {line}");
    }
    assert!(out.lines().nth(r_running).unwrap().contains("running"));
    assert!(out.lines().nth(r_ok).unwrap().contains("2/2"));
    assert!(out.ends_with("3 runs, newest first; one run with its steps: orch history ID\n"));

    let ids = |args: &[&str]| -> Vec<i64> {
        let (code, out, err) = history(&state_args(tmp.path(), args), &[]);
        assert_eq!(code, 0, "{err}");
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["schema"], 1);
        json["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(&["--format", "json"]), [running.0, failed.0, ok.0]);
    assert_eq!(
        ids(&["--format", "json", "--cluster", "shop"]),
        [failed.0, ok.0]
    );
    assert_eq!(ids(&["--format", "json", "--limit", "1"]), [running.0]);
    // The first run started two hours ago.
    rusqlite::Connection::open(tmp.path().join("orch.db"))
        .unwrap()
        .execute(
            "UPDATE runs SET started_at = started_at - 7200000 WHERE id = ?1",
            [ok.0],
        )
        .unwrap();
    assert_eq!(
        ids(&["--format", "json", "--since", "1h"]),
        [running.0, failed.0]
    );
    assert_eq!(ids(&["--format", "json", "--since", "3h"]).len(), 3);

    let (code, out, _) = history(&state_args(tmp.path(), &["--limit", "1"]), &[]);
    assert_eq!(code, 0);
    assert!(out.contains("there may be more: --limit N"), "{out}");
    let (code, out, _) = history(&state_args(tmp.path(), &["--cluster", "none"]), &[]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("no runs on cluster none recorded in "),
        "{out}"
    );
}

#[test]
fn the_json_list_has_the_documented_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let [_, failed, _] = three_runs(tmp.path());
    let (code, out, err) = history(&state_args(tmp.path(), &["--format", "json"]), &[]);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let run = &json["runs"][1];
    let mut keys: Vec<&str> = run
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "cluster",
            "ended_at",
            "error",
            "id",
            "kind",
            "outcome",
            "started_at",
            "steps_done",
            "steps_total",
            "summary",
            "who"
        ]
    );
    assert_eq!(run["id"], failed.0);
    assert_eq!(run["kind"], "apply");
    assert_eq!(run["outcome"], "failed");
    assert_eq!(run["error"], "step 2 failed");
    assert_eq!(
        (run["steps_done"].as_u64(), run["steps_total"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(run["who"]["user"], "bob");
    assert_eq!(run["who"]["pid"], std::process::id());
    assert!(run["started_at"].as_i64().unwrap() <= run["ended_at"].as_i64().unwrap());
    assert_eq!(json["runs"][0]["outcome"], "running");
    assert!(json["runs"][0]["ended_at"].is_null());
}

#[test]
fn one_run_shows_its_steps_as_text_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let [_, failed, _] = three_runs(tmp.path());
    let id = failed.to_string();
    let (code, out, err) = history(&state_args(tmp.path(), &[&id]), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("run {id}: apply on cluster shop, failed\n")),
        "{out}"
    );
    for text in [
        "file shop.yaml (sha256 cdcdcdcdcdcd)",
        "observed sha256:0123456789ab",
        "summary: 1 of 3 steps done",
        "error: step 2 failed",
        "Access denied for user",
        "not_run",
        "  2. db2 (10.0.0.2:3306): change_source on db2\n       STATEMENT 2 ON db2\n",
    ] {
        assert!(out.contains(text), "{text} in\n{out}");
    }

    let (code, out, err) = history(&state_args(tmp.path(), &[&id, "--format", "json"]), &[]);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["schema"], 1);
    let run = &json["run"];
    assert_eq!(run["id"], failed.0);
    assert_eq!(run["files"][0]["path"], "shop.yaml");
    assert_eq!(run["fingerprint"], "sha256:0123456789abcdef");
    let steps = run["steps"].as_array().unwrap();
    let results: Vec<&str> = steps
        .iter()
        .map(|s| s["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["done", "failed", "not_run"]);
    let s2 = &steps[1];
    assert_eq!(s2["action"], "change_source");
    assert_eq!(s2["address"], "10.0.0.2:3306");
    assert_eq!(s2["statements"], serde_json::json!(["STATEMENT 2 ON db2"]));
    assert_eq!(s2["error"], "Access denied for user");
    assert!(steps[2]["started_at"].is_null());
}

#[test]
fn an_unknown_id_is_exit_1_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    three_runs(tmp.path());
    let (code, out, err) = history(&state_args(tmp.path(), &["42"]), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("error: no run 42 in ") && err.contains("`orch history` lists the runs"),
        "{err}"
    );
}

#[test]
fn the_state_dir_comes_from_orch_state_then_xdg_state_home() {
    let tmp = tempfile::tempdir().unwrap();
    let orch_state = tmp.path().join("orch-state");
    three_runs(&orch_state);
    let xdg = tmp.path().join("xdg");
    let (code, out, err) = history(
        &["--format", "json"],
        &[("ORCH_STATE", &orch_state), ("XDG_STATE_HOME", &xdg)],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["runs"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert!(!xdg.exists());

    let (code, out, err) = history(&[], &[("XDG_STATE_HOME", &xdg)]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&xdg.join("orch/orch.db").display().to_string()),
        "{out}"
    );
    assert!(xdg.join("orch/orch.db").is_file());
}

#[test]
fn a_store_from_a_newer_orch_is_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    Store::open(tmp.path()).unwrap();
    rusqlite::Connection::open(tmp.path().join("orch.db"))
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let (code, _, err) = history(&state_args(tmp.path(), &[]), &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("schema version 99") && err.contains("newer orch"),
        "{err}"
    );
}
