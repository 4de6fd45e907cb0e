//! The committed completion scripts are exactly what `orch completions SHELL` prints.
//! Regenerate them with `ORCH_BLESS=1 cargo test completions`.

use crate::common::{repo, run};

const SHELLS: &[(&str, &str)] = &[
    ("bash", "orch.bash"),
    ("zsh", "_orch"),
    ("fish", "orch.fish"),
];

#[test]
fn committed_completions_are_current() {
    let bless = std::env::var_os("ORCH_BLESS").is_some();
    for (shell, file) in SHELLS {
        let (code, out, err) = run(&["completions", shell]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("validate") && out.contains("sandbox"),
            "{shell}: {out}"
        );
        let path = repo().join("completions").join(file);
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &out).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == out,
            "{} is stale: run `ORCH_BLESS=1 cargo test completions` and commit it",
            path.display()
        );
    }
}
