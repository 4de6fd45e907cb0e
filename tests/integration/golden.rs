//! Golden plans: `orch plan topology.yaml --observed observed.json` for every fixture under
//! `tests/golden/plan/`, compared with the committed `plan.txt` (human) and `plan.json`.
//! The inputs are made from simulator scenarios in `src/plan/tests.rs`; `ORCH_BLESS=1
//! cargo test golden` rewrites inputs and outputs alike.

use crate::common::{orch, repo};

#[test]
fn golden_plans() {
    let root = repo().join("tests/golden/plan");
    let bless = std::env::var_os("ORCH_BLESS").is_some();
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 8, "fixtures under {}", root.display());
    let mut stale = Vec::new();
    for dir in dirs {
        for (file, format) in [("plan.txt", "human"), ("plan.json", "json")] {
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
            let path = dir.join(file);
            if bless {
                std::fs::write(&path, &text).unwrap();
            } else if std::fs::read_to_string(&path).unwrap_or_default() != text {
                stale.push(format!("{}:\n{text}", path.display()));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "plans differ from the golden files (ORCH_BLESS=1 cargo test golden to accept):\n{}",
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
