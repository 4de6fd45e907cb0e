//! Topology files in code review: the CI formats of `validate` and `plan` (their golden
//! outputs are in `golden.rs`), each format refused where it does not belong, the
//! pre-commit hook run for real, and the example pipelines under `examples/ci/`.

use crate::common::{orch, repo, run};

/// `orch validate --format sarif` has the SARIF 2.1.0 shape code scanning reads: every
/// result names a rule of the driver, with a level, a message and a located artifact.
#[test]
fn sarif_has_the_shape_code_scanning_reads() {
    let dir = repo().join("tests/golden/validate/problems");
    let out = orch()
        .current_dir(&dir)
        .args([
            "validate",
            "--format",
            "sarif",
            "topologies/shop.yaml",
            "topologies/billing.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "errors: exit 1 as in every format"
    );
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(log["version"], "2.1.0");
    assert!(
        log["$schema"].as_str().unwrap().contains("sarif-2.1.0"),
        "{}",
        log["$schema"]
    );
    let runs = log["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let driver = &runs[0]["tool"]["driver"];
    assert_eq!(driver["name"], "orch");
    let rules = driver["rules"].as_array().unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        orch::spec::diag::Code::ALL
            .iter()
            .map(|c| c.code())
            .collect::<Vec<_>>()
    );
    for r in rules {
        assert!(!r["help"]["text"].as_str().unwrap().is_empty(), "{r}");
        assert!(!r["shortDescription"]["text"].as_str().unwrap().is_empty());
    }
    let results = runs[0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 7, "every diagnostic is a result");
    for r in results {
        let id = r["ruleId"].as_str().unwrap();
        let index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], id, "ruleIndex points at the rule");
        let level = r["level"].as_str().unwrap();
        assert_eq!(
            level,
            if id.starts_with('E') {
                "error"
            } else {
                "warning"
            }
        );
        assert!(!r["message"]["text"].as_str().unwrap().is_empty());
        let location = &r["locations"][0]["physicalLocation"];
        let uri = location["artifactLocation"]["uri"].as_str().unwrap();
        assert!(
            dir.join(uri).is_file(),
            "{uri} is a file of the checkout, relative to it"
        );
        assert!(location["region"]["startLine"].as_u64().unwrap() >= 1);
        assert!(location["region"]["startColumn"].as_u64().unwrap() >= 1);
    }
    // The policy, reached as topologies/../policies/quick.yaml, is where the repository has it.
    assert!(
        results.iter().any(
            |r| r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                == "policies/quick.yaml"
        ),
        "{results:?}"
    );
}

/// Absolute paths under the directory orch runs in are annotated relative to it (GitHub
/// and GitLab match paths against the repository).
#[test]
fn annotations_name_files_relative_to_the_checkout() {
    let dir = repo().join("tests/golden/validate/problems");
    let absolute = dir.join("topologies/shop.yaml");
    let out = orch()
        .current_dir(&dir)
        .args(["validate", "--format", "github", absolute.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains(
            "::error file=topologies/shop.yaml,line=12,col=54,title=E303 unknown-source::"
        ),
        "{text}"
    );
    let out = orch()
        .current_dir(&dir)
        .args(["validate", "--format", "gitlab", absolute.to_str().unwrap()])
        .output()
        .unwrap();
    let issues: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let issues = issues.as_array().unwrap();
    assert!(!issues.is_empty());
    for i in issues {
        let path = i["location"]["path"].as_str().unwrap();
        assert!(dir.join(path).is_file(), "{path}");
        assert!(matches!(i["severity"].as_str(), Some("major" | "minor")));
        assert_eq!(i["fingerprint"].as_str().unwrap().len(), 64);
    }
    let mut fingerprints: Vec<&str> = issues
        .iter()
        .map(|i| i["fingerprint"].as_str().unwrap())
        .collect();
    fingerprints.sort();
    fingerprints.dedup();
    assert_eq!(fingerprints.len(), issues.len(), "fingerprints are unique");
}

/// A format belongs to the commands it makes sense for: elsewhere it is a usage error
/// (exit 1, never 2, which means "changes or problems found"), naming the formats there are.
#[test]
fn a_format_is_refused_where_it_does_not_belong() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["plan", "t.yaml", "--format", "github"],
            "human, json, markdown",
        ),
        (
            &["plan", "t.yaml", "--format", "sarif"],
            "human, json, markdown",
        ),
        (
            &["validate", "t.yaml", "--format", "markdown"],
            "human, json, github, sarif, gitlab",
        ),
        (&["status", "t.yaml", "--format", "markdown"], "human, json"),
        (&["apply", "t.yaml", "--format", "github"], "human, json"),
        (&["history", "--format", "sarif"], "human, json"),
        (
            &["sandbox", "status", "/tmp/x", "--format", "gitlab"],
            "human, json",
        ),
    ];
    for (args, formats) in cases {
        let (code, out, err) = run(args);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(
            err.contains("invalid value") && err.contains(&format!("[possible values: {formats}]")),
            "{args:?}: {err}"
        );
    }
    // --help lists each command's own formats, and help is not an error.
    let (code, out, _) = run(&["plan", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("markdown:") && !out.contains("sarif"), "{out}");
    let (code, out, _) = run(&["validate", "--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("github:") && out.contains("sarif:") && !out.contains("markdown"),
        "{out}"
    );
    // Any other usage error is bad input too.
    assert_eq!(run(&["plan"]).0, 1);
    assert_eq!(run(&["validate", "--no-such-flag", "x.yaml"]).0, 1);
}

/// `orch plan --format markdown` with `-o`: the saved plan is JSON for `orch apply`, and
/// stdout is only the Markdown (it becomes a comment as it is).
#[test]
fn a_markdown_plan_is_saved_as_json() {
    let dir = repo().join("tests/golden/plan/switchover");
    let tmp = tempfile::tempdir().unwrap();
    let saved = tmp.path().join("plan.json");
    let out = orch()
        .current_dir(&dir)
        .args(["plan", "topology.yaml", "--observed", "observed.json"])
        .args(["--format", "markdown", "-o", saved.to_str().unwrap()])
        .args(["--detailed-exitcode"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "changes: exit 2 as in every format"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("<!-- orch plan: cluster sim -->\n### orch plan: cluster `sim`\n")
            && text.contains("**10 steps on 3 hosts, 0 blocked, 0 lost, 0 warnings**")
            && text.contains("| 10 | switchover | `h1` | promote")
            && text.contains("```diff\n- h0 primary rw\n")
            && !text.contains("<details>")
            && !text.contains("saved to"),
        "{text}"
    );
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(plan["schema"], 1);
}
