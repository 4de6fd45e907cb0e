//! `orch downtime`'s input, without servers (a downtime is orch's own state): a duration
//! that is malformed (`1h1h`, `30m1h`) is refused by the one parser files, flags and the
//! API share, and one longer than 30 days only with `--force`.

use crate::common::{repo, run};

/// `orch downtime examples/simple.yaml ARGS --state DIR`: (exit code, stdout, stderr).
fn downtime(state: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let file = repo().join("examples/simple.yaml");
    let mut all = vec!["downtime", file.to_str().unwrap()];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--state", state.to_str().unwrap()]);
    run(&all)
}

#[test]
fn a_malformed_or_overlong_downtime_is_refused_and_nothing_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for (length, why) in [
        ("1h1h", "the unit `h` appears twice"),
        ("30m1h", "write the units from the largest down"),
        ("106751991167d", "longer than 30d"),
        ("31d", "longer than 30d"),
        ("0s", "longer than 0s"),
    ] {
        let (code, out, err) = downtime(&state, &["db1", "--for", length, "--reason", "r"]);
        assert_ne!(code, 0, "--for {length}: {out}");
        assert!(err.contains(why), "--for {length}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let (_, err) = {
        let (code, _, err) = downtime(&state, &["db1", "--for", "31d", "--reason", "r"]);
        (code, err)
    };
    assert!(err.contains("--force"), "says how to mean it: {err}");
    let (code, list, _) = downtime(&state, &[]);
    assert_eq!(code, 0);
    assert_eq!(list.trim(), "cluster shop: no downtime");

    // 30 days is allowed; longer with --force.
    let (code, out, err) = downtime(&state, &["db1", "--for", "30d", "--reason", "r"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = downtime(
        &state,
        &["db2", "--for", "90d", "--reason", "rebuild", "--force"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (_, list, _) = downtime(&state, &[]);
    assert_eq!(list.lines().count(), 2, "{list}");
}
