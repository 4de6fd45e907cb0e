//! `orch validate` through the real binary: every shipped example and policy is clean,
//! bad files fail with exit 1 and point at file:line:column, JSON is well-formed.

use crate::common::{repo, run, yaml_files};

#[test]
fn every_example_validates_cleanly() {
    let examples = yaml_files(&repo().join("examples"));
    assert!(examples.len() >= 4, "at least four examples");
    for file in examples {
        let (code, out, err) = run(&["validate", "--strict", file.to_str().unwrap()]);
        assert_eq!(code, 0, "{}:\n{out}{err}", file.display());
        assert!(out.contains(": ok ("), "{out}");
    }
}

#[test]
fn every_policy_is_used_by_a_clean_topology() {
    let dir = tempfile::tempdir().unwrap();
    let policies = yaml_files(&repo().join("policies"));
    assert!(policies.len() >= 3, "safe, manual and fast at least");
    for policy in policies {
        let topology = dir.path().join("t.yaml");
        std::fs::write(
            &topology,
            format!(
                "cluster: t\ncredentials: {{ user: orch, password: \"${{PW}}\" }}\npolicy: {}\nhosts:\n  a: {{ address: \"a:1\", dc: x }}\n  b: {{ address: \"b:1\", dc: x, source: a }}\n",
                policy.display()
            ),
        )
        .unwrap();
        let (code, out, err) = run(&["validate", "--strict", topology.to_str().unwrap()]);
        assert_eq!(code, 0, "{}:\n{out}{err}", policy.display());
    }
}

#[test]
fn errors_exit_1_with_positions_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "cluster: c\ncredentials: { user: orch, password: \"${PW}\" }\nhosts:\n  a: { address: \"a:1\", dc: x }\n  b: { address: \"b:1\", dc: x, source: zz }\n",
    )
    .unwrap();
    let path = bad.to_str().unwrap();
    let (code, out, _) = run(&["validate", path]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("{path}:5:39: error[E303 unknown-source]")),
        "{out}"
    );

    let (code, out, _) = run(&["validate", "--format", "json", path]);
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["errors"], 1);
    let d = &json["diagnostics"][0];
    assert_eq!(
        (d["code"].as_str(), d["rule"].as_str()),
        (Some("E303"), Some("unknown-source"))
    );
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(5), Some(39))
    );
    assert_eq!(d["severity"], "error");
    assert_eq!(json["files"][0]["cluster"], "c");
}

#[test]
fn warnings_pass_unless_strict() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("w.yaml");
    std::fs::write(&file, "cluster: w\ncredentials: { user: orch, password: \"${PW}\" }\nhosts:\n  a: { address: \"a:1\" }\n").unwrap();
    let path = file.to_str().unwrap();
    assert_eq!(run(&["validate", path]).0, 0);
    assert_eq!(run(&["validate", "--strict", path]).0, 2);
}

#[test]
fn a_literal_password_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.yaml");
    std::fs::write(
        &file,
        "cluster: s\ncredentials: { user: orch, password: \"Tr0ub4dor&3\", replication_user: r, replication_password: \"${\" }\nhosts:\n  a: { address: \"a:1\" }\n",
    )
    .unwrap();
    for format in ["human", "json"] {
        let (code, out, err) = run(&["validate", "--format", format, file.to_str().unwrap()]);
        assert_eq!(code, 1);
        assert!(
            out.contains("W402") || out.contains("literal-secret"),
            "{out}"
        );
        assert!(
            !out.contains("Tr0ub4dor") && !err.contains("Tr0ub4dor"),
            "{out}{err}"
        );
    }
}

#[test]
fn hostile_files_fail_cleanly_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.yaml", vec![], "E105"),
        ("list.yaml", b"- a\n- b\n".to_vec(), "E105"),
        (
            "garbage.bin",
            vec![0xff, 0xfe, 0x00, 0x81, 0x13, 0x37],
            "E102",
        ),
        ("huge.yaml", vec![b' '; 17 * 1024 * 1024], "E101"),
    ];
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let mut cases = cases;
    cases.push(("bomb.yaml", bomb.into_bytes(), "E104"));
    for (name, bytes, code) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let (exit, out, err) = run(&["validate", path.to_str().unwrap()]);
        assert_eq!(exit, 1, "{name}: {out}{err}");
        assert!(out.contains(code), "{name}: want {code} in {out}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
}

#[test]
fn several_files_are_checked_together() {
    let dir = tempfile::tempdir().unwrap();
    let body = |cluster: &str, addr: &str| {
        format!(
            "cluster: {cluster}\ncredentials: {{ user: orch, password: \"${{PW}}\" }}\nhosts:\n  a: {{ address: \"{addr}\", dc: x }}\n  b: {{ address: \"b-{cluster}:1\", dc: x, source: a }}\n"
        )
    };
    let (one, two) = (dir.path().join("one.yaml"), dir.path().join("two.yaml"));
    std::fs::write(&one, body("shop", "a:1")).unwrap();
    std::fs::write(&two, body("shop", "a:1")).unwrap();
    let (code, out, _) = run(&["validate", one.to_str().unwrap(), two.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        out.contains("E309 duplicate-cluster") && out.contains("E305 duplicate-address"),
        "{out}"
    );
    assert!(out.contains("2 files checked"), "{out}");
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    use std::process::Stdio;
    // Far more output than a pipe buffers, so writing it must meet the closed pipe.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("many.yaml");
    let mut text = String::from(
        "cluster: c\ncredentials: { user: orch, password: \"${PW}\" }\nhosts:\n  a: { address: \"a:1\", dc: x }\n",
    );
    for i in 0..3000 {
        text.push_str(&format!(
            "  h{i}: {{ address: \"h{i}:1\", dc: x, source: nowhere{i} }}\n"
        ));
    }
    std::fs::write(&file, text).unwrap();
    let mut child = crate::common::orch()
        .args(["validate", "--format", "json", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "a broken pipe ends orch quietly, like ripgrep"
    );
}

#[test]
fn readme_starts_with_the_two_commands_and_its_yaml_validates() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let first_block = readme
        .split("```sh\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let commands: Vec<&str> = first_block
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .collect();
    assert_eq!(commands, ["scripts/try.sh", "scripts/test.sh"]);
    for script in &commands {
        assert!(repo().join(script).is_file(), "{script}");
    }
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(
        ci.contains("scripts/test.sh"),
        ".ci/run must run the README's test command"
    );

    let dir = tempfile::tempdir().unwrap();
    // A pre-commit configuration (`repos:`) is checked against the hooks file in review.rs.
    let blocks: Vec<&str> = readme
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .filter(|b| !b.starts_with("repos:"))
        .collect();
    assert!(!blocks.is_empty());
    for (i, block) in blocks.iter().enumerate() {
        let file = dir.path().join(format!("readme-{i}.yaml"));
        std::fs::write(&file, block).unwrap();
        let (code, out, err) = run(&["validate", "--strict", file.to_str().unwrap()]);
        assert_eq!(code, 0, "README yaml block {i}:\n{block}\n{out}{err}");
    }
}

#[test]
fn a_policy_file_given_directly_is_checked_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("topologies")).unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/quick.yaml"),
        "failover:\n  detect: { poll_interval: 5s, grace: 1s }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("topologies/t.yaml"),
        "cluster: t\ncredentials: { user: orch, password: \"${PW}\" }\npolicy: ../policies/quick.yaml\nhosts:\n  a: { address: \"a:1\", dc: x }\n  b: { address: \"b:1\", dc: x, source: a }\n",
    )
    .unwrap();
    let out = crate::common::orch()
        .current_dir(dir.path())
        .args(["validate", "topologies/t.yaml", "policies/quick.yaml"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    // Reached through the topology and given directly: one file, one warning, its name as given.
    assert_eq!(text.matches("W404").count(), 1, "{text}");
    assert!(
        text.contains("policies/quick.yaml:2:11: warning[W404")
            && text.contains("policies/quick.yaml: ok with 1 warning (policy file)")
            && text.contains("2 files checked: 0 errors, 1 warning"),
        "{text}"
    );
    // Every shipped policy validates on its own.
    for policy in yaml_files(&repo().join("policies")) {
        let (code, out, err) = run(&["validate", "--strict", policy.to_str().unwrap()]);
        assert_eq!(code, 0, "{}:\n{out}{err}", policy.display());
        assert!(out.contains(": ok (policy file)"), "{out}");
    }
    // A command that acts on a cluster refuses a policy file plainly.
    let (code, _, err) = run(&[
        "plan",
        dir.path().join("policies/quick.yaml").to_str().unwrap(),
        "--observed",
        "/nonexistent.json",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("is a policy file, not a topology"), "{err}");
}

#[test]
fn readme_table_of_codes_is_the_catalogue() {
    use orch::spec::diag::Code;
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let rows: Vec<(String, String, String)> = readme
        .lines()
        .filter(|l| l.starts_with("| E") || l.starts_with("| W"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            match cells[..] {
                [code, rule, what] if code.len() == 4 => {
                    Some((code.into(), rule.into(), what.into()))
                }
                _ => None,
            }
        })
        .collect();
    let want: Vec<(String, String, String)> = Code::ALL
        .iter()
        .map(|c| (c.code().into(), c.rule().into(), c.what().into()))
        .collect();
    assert_eq!(
        rows, want,
        "README's table of codes and spec::diag's catalogue"
    );
}
