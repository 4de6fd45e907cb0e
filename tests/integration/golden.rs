//! Golden plans: `orch plan topology.yaml --observed observed.json` for every fixture under
//! `tests/golden/plan/`, compared with the committed `plan.txt` (human), `plan.json` and
//! `plan.md` (Markdown). The inputs are made from simulator scenarios in
//! `src/plan/tests.rs`; `ORCH_BLESS=1 cargo test golden` rewrites inputs and outputs alike.
//!
//! Golden reports: `orch validate ARGS` in every case under `tests/golden/validate/` (its
//! `args` file lists the files), in every format `validate` has.

use std::path::{Path, PathBuf};

use crate::common::{orch, repo};

/// The fixture directories under `tests/golden/KIND`, sorted.
fn cases(kind: &str) -> Vec<PathBuf> {
    let root = repo().join("tests/golden").join(kind);
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Compares `text` with the golden file (or rewrites it under `ORCH_BLESS`); a difference
/// is added to `stale`.
fn check_golden(path: &Path, text: &str, stale: &mut Vec<String>) {
    if std::env::var_os("ORCH_BLESS").is_some() {
        std::fs::write(path, text).unwrap();
    } else if std::fs::read_to_string(path).unwrap_or_default() != text {
        stale.push(format!("{}:\n{text}", path.display()));
    }
}

#[test]
fn golden_plans() {
    let dirs = cases("plan");
    assert!(dirs.len() >= 8, "fixtures under tests/golden/plan");
    let mut stale = Vec::new();
    for dir in dirs {
        for (file, format) in [
            ("plan.txt", "human"),
            ("plan.json", "json"),
            ("plan.md", "markdown"),
        ] {
            let out = orch()
                .current_dir(&dir)
                .args([
                    "plan",
                    "topology.yaml",
                    "--observed",
                    "observed.json",
                    "--show-sql",
                ])
                .args(["--format", format])
                .output()
                .unwrap();
            let text = String::from_utf8(out.stdout).unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            check_golden(&dir.join(file), &text, &mut stale);
        }
    }
    assert!(
        stale.is_empty(),
        "plans differ from the golden files (ORCH_BLESS=1 cargo test golden to accept):\n{}",
        stale.join("\n")
    );
}

#[test]
fn golden_validate_reports() {
    let dirs = cases("validate");
    assert!(dirs.len() >= 2, "fixtures under tests/golden/validate");
    let mut stale = Vec::new();
    for dir in dirs {
        let args = std::fs::read_to_string(dir.join("args")).unwrap();
        let args: Vec<&str> = args.split_whitespace().collect();
        let mut exit_codes = Vec::new();
        for (file, format) in [
            ("validate.txt", "human"),
            ("validate.json", "json"),
            ("validate.github.txt", "github"),
            ("validate.sarif.json", "sarif"),
            ("validate.gitlab.json", "gitlab"),
        ] {
            let out = orch()
                .current_dir(&dir)
                .args(["validate", "--format", format])
                .args(&args)
                .output()
                .unwrap();
            let text = String::from_utf8(out.stdout).unwrap();
            assert!(
                out.stderr.is_empty(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            exit_codes.push(out.status.code());
            // The version is orch's own; the golden file should not change with it.
            let text = text.replace(
                &format!("\"version\": \"{}\"", env!("CARGO_PKG_VERSION")),
                "\"version\": \"<orch version>\"",
            );
            check_golden(&dir.join(file), &text, &mut stale);
        }
        // Same exit status whatever the format: 1 with errors, else 0.
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("validate.json")).unwrap()).unwrap();
        let want = if report["errors"].as_u64() > Some(0) {
            1
        } else {
            0
        };
        assert!(
            exit_codes.iter().all(|c| *c == Some(want)),
            "{}: {exit_codes:?}",
            dir.display()
        );
    }
    assert!(
        stale.is_empty(),
        "reports differ from the golden files (ORCH_BLESS=1 cargo test golden to accept):\n{}",
        stale.join("\n")
    );
}

#[test]
fn plan_refuses_a_bad_snapshot_and_changes_exit_codes() {
    let dir = repo().join("tests/golden/plan/star-to-subtree");
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = orch().current_dir(&dir).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Changes: 2 with --detailed-exitcode, 0 without.
    let base = ["plan", "topology.yaml", "--observed", "observed.json"];
    assert_eq!(run(&base).0, Some(0));
    let mut detailed = base.to_vec();
    detailed.push("--detailed-exitcode");
    assert_eq!(run(&detailed).0, Some(2));
    let none = repo().join("tests/golden/plan/no-changes");
    let out = orch()
        .current_dir(&none)
        .args([
            "plan",
            "topology.yaml",
            "--observed",
            "observed.json",
            "--detailed-exitcode",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));

    // Not a snapshot, another cluster's snapshot, a missing file: exit 1, said plainly.
    let junk = tmp.path().join("junk.json");
    std::fs::write(&junk, "{\"hello\": 1}").unwrap();
    let (code, _, err) = run(&[
        "plan",
        "topology.yaml",
        "--observed",
        junk.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("is not an `orch status --format json` snapshot"),
        "{err}"
    );
    let other = tmp.path().join("other.json");
    let text = std::fs::read_to_string(dir.join("observed.json")).unwrap();
    std::fs::write(
        &other,
        text.replace("\"cluster\": \"sim\"", "\"cluster\": \"shop\""),
    )
    .unwrap();
    let (code, _, err) = run(&[
        "plan",
        "topology.yaml",
        "--observed",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("the snapshot is of cluster shop but the file declares cluster sim"),
        "{err}"
    );
    let (code, _, err) = run(&["plan", "topology.yaml", "--observed", "/nonexistent.json"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot read /nonexistent.json"), "{err}");
    // An invalid topology file is refused before anything is observed.
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "cluster: x\nhosts: {}\n").unwrap();
    let (code, _, err) = run(&["plan", bad.to_str().unwrap(), "--observed", "observed.json"]);
    assert_eq!(code, Some(1), "{err}");
}
