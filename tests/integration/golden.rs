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
