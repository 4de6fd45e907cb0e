//! Topology files in code review: the CI formats of `validate` and `plan` (their golden
//! outputs are in `golden.rs`), each format refused where it does not belong, the
//! pre-commit hook run for real, and the example pipelines under `examples/ci/`.
use std::path::{Path, PathBuf};
use std::process::Command;

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
            && text.contains("**11 steps on 3 hosts, 0 blocked, 0 lost, 0 warnings**")
            && text.contains("| 9 | switchover | `h1` | promote")
            && text.contains("```diff\n- h0 primary rw\n")
            && !text.contains("<details>")
            && !text.contains("saved to"),
        "{text}"
    );
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(plan["schema"], 1);
}

/// `pre-commit` from PyPI in a virtualenv under Cargo's temporary directory (made once, then
/// reused), or None where it cannot be installed (no python3, no network), or when
/// `ORCH_TEST_NO_PRE_COMMIT` is set (to exercise the fallback).
fn pre_commit() -> Option<PathBuf> {
    if std::env::var_os("ORCH_TEST_NO_PRE_COMMIT").is_some() {
        return None;
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pre-commit-venv");
    let bin = venv.join("bin/pre-commit");
    let works = |bin: &Path| {
        Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works(&bin) {
        return Some(bin);
    }
    let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
    let installed = ok(Command::new("python3").args(["-m", "venv"]).arg(&venv))
        && ok(Command::new("timeout")
            .arg("300")
            .arg(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check"])
            .arg("pre-commit>=4.4"));
    (installed && works(&bin)).then_some(bin)
}

/// git isolated from the machine's configuration (a global `core.hooksPath` would stop
/// `pre-commit install`), with an author, and orch first on PATH as the hook expects.
fn git_env<'c>(c: &'c mut Command, home: &Path) -> &'c mut Command {
    let orch_dir = Path::new(env!("CARGO_BIN_EXE_orch")).parent().unwrap();
    let path = format!(
        "{}:{}",
        orch_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    c.env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "orch test")
        .env("GIT_AUTHOR_EMAIL", "orch@example.com")
        .env("GIT_COMMITTER_NAME", "orch test")
        .env("GIT_COMMITTER_EMAIL", "orch@example.com")
        .env("PRE_COMMIT_HOME", home.join("pre-commit-home"))
        .env("PATH", path)
}

/// Runs a command in `dir`; returns (success, stdout and stderr).
fn sh(dir: &Path, home: &Path, program: &Path, args: &[&str]) -> (bool, String) {
    let out = git_env(Command::new(program).args(args).current_dir(dir), home)
        .output()
        .unwrap_or_else(|e| panic!("{} {args:?}: {e}", program.display()));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn git(dir: &Path, home: &Path, args: &[&str]) -> String {
    let (ok, out) = sh(dir, home, Path::new("git"), args);
    assert!(ok, "git {args:?}: {out}");
    out
}

/// One attempt at a commit with this message: (the hook passed, what it printed).
type Attempt = dyn Fn(&str) -> (bool, String);

/// `.pre-commit-hooks.yaml`: the `orch-validate` hook runs `orch validate` on the topology
/// and policy files a commit changes, and only on them. Run for real with pre-commit when it
/// can be installed; otherwise its entry is run the way pre-commit runs it (the entry, then
/// the staged files its `files` pattern matches, in one run: `require_serial`).
#[test]
fn the_pre_commit_hook_validates_the_files_a_commit_changes() {
    let manifest: serde_norway::Value = serde_norway::from_str(
        &std::fs::read_to_string(repo().join(".pre-commit-hooks.yaml")).unwrap(),
    )
    .unwrap();
    let hooks = manifest.as_sequence().expect("a list of hooks");
    let hook = hooks
        .iter()
        .find(|h| h["id"].as_str() == Some("orch-validate"))
        .expect("the orch-validate hook");
    let entry = hook["entry"].as_str().unwrap();
    let pattern = hook["files"].as_str().unwrap();
    assert_eq!(entry, "orch validate");
    assert_eq!(hook["require_serial"].as_bool(), Some(true));
    assert_eq!(hook["pass_filenames"].as_bool(), None, "files are passed");

    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let work = home.join("repo");
    for dir in ["topologies", "clusters/eu", "policies", ".github/workflows"] {
        std::fs::create_dir_all(work.join(dir)).unwrap();
    }
    let write = |path: &str, text: &str| std::fs::write(work.join(path), text).unwrap();
    let shop = std::fs::read_to_string(repo().join("examples/simple.yaml")).unwrap();
    write("topologies/shop.yaml", &shop);
    write(
        "clusters/eu/billing.yaml",
        "cluster: billing\ncredentials: { user: orch, password: \"${PW}\" }\npolicy: ../../policies/quick.yaml\nhosts:\n  b1: { address: \"10.9.0.1:3306\", dc: x }\n  b2: { address: \"10.9.0.2:3306\", dc: x, source: b1 }\n",
    );
    write(
        "policies/quick.yaml",
        "failover:\n  detect: { poll_interval: 1s, grace: 5s }\n",
    );
    // YAML that is not orch's: never given to orch validate.
    write(".github/workflows/ci.yml", "name: ci\non: push\njobs: {}\n");
    write("notes.yaml", "anything: at all\n");
    git(&work, home, &["init", "-q"]);

    let attempt: Box<Attempt> = match pre_commit() {
        Some(bin) => {
            let hooks_repo = home.join("hooks");
            std::fs::create_dir_all(&hooks_repo).unwrap();
            std::fs::copy(
                repo().join(".pre-commit-hooks.yaml"),
                hooks_repo.join(".pre-commit-hooks.yaml"),
            )
            .unwrap();
            git(&hooks_repo, home, &["init", "-q"]);
            git(&hooks_repo, home, &["add", "-A"]);
            git(&hooks_repo, home, &["commit", "-qm", "hooks"]);
            let rev = git(&hooks_repo, home, &["rev-parse", "HEAD"]);
            write(
                ".pre-commit-config.yaml",
                &format!(
                    "repos:\n  - repo: {}\n    rev: {}\n    hooks:\n      - id: orch-validate\n",
                    hooks_repo.display(),
                    rev.trim()
                ),
            );
            let (ok, out) = sh(&work, home, &bin, &["install"]);
            assert!(ok, "{out}");
            let work = work.clone();
            let home = home.to_path_buf();
            Box::new(move |message: &str| {
                git(&work, &home, &["add", "-A"]);
                // Verbose: the hook's output even when it passes.
                let (passed, out) = sh(&work, &home, &bin, &["run", "--verbose"]);
                assert!(out.contains("orch validate"), "{out}");
                // And the same verdict through git's own hook.
                let (committed, commit_out) =
                    sh(&work, &home, Path::new("git"), &["commit", "-qm", message]);
                assert_eq!(passed, committed, "{out}\n{commit_out}");
                (passed, out)
            })
        }
        None => {
            eprintln!("pre-commit cannot be installed here: running its entry as pre-commit would");
            let work = work.clone();
            let home = home.to_path_buf();
            let pattern = pattern.to_string();
            let entry: Vec<String> = entry.split_whitespace().map(String::from).collect();
            Box::new(move |message: &str| {
                git(&work, &home, &["add", "-A"]);
                let staged = git(&work, &home, &["diff", "--cached", "--name-only"]);
                // grep -E reads this pattern as pre-commit's Python `re.search` does.
                let mut grep = Command::new("grep")
                    .args(["-E", "--", &pattern])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                use std::io::Write;
                grep.stdin
                    .take()
                    .unwrap()
                    .write_all(staged.as_bytes())
                    .unwrap();
                let matched = String::from_utf8(grep.wait_with_output().unwrap().stdout).unwrap();
                let files: Vec<&str> = matched.lines().collect();
                if files.is_empty() {
                    git(&work, &home, &["commit", "-qm", message]);
                    return (true, String::new());
                }
                let mut args: Vec<&str> = entry[1..].iter().map(String::as_str).collect();
                args.extend(&files);
                let (passed, out) = sh(&work, &home, Path::new(&entry[0]), &args);
                if passed {
                    git(&work, &home, &["commit", "-qm", message]);
                }
                (passed, out)
            })
        }
    };

    // Everything clean: the three orch files, and only they, are checked together.
    let (passed, out) = attempt("clusters");
    assert!(passed, "{out}");
    assert!(
        out.contains("3 files checked: 0 errors, 0 warnings"),
        "{out}"
    );
    assert!(
        out.contains("policies/quick.yaml: ok (policy file)")
            && out.contains("clusters/eu/billing.yaml: ok")
            && !out.contains("ci.yml")
            && !out.contains("notes.yaml"),
        "{out}"
    );

    // A broken topology: the commit is refused, naming the line.
    write(
        "topologies/shop.yaml",
        &shop.replace("source: db1 }", "source: db9 }"),
    );
    let (passed, out) = attempt("broken source");
    assert!(!passed, "{out}");
    assert!(
        out.contains("topologies/shop.yaml:11:55: error[E303 unknown-source]")
            && out.contains("1 file checked: 2 errors"),
        "{out}"
    );
    write("topologies/shop.yaml", &shop);

    // A broken policy, changed alone: checked as a policy.
    write(
        "policies/quick.yaml",
        "failover:\n  detect: { poll_interval: 1s, grace: 5 }\n",
    );
    let (passed, out) = attempt("broken policy");
    assert!(!passed, "{out}");
    assert!(
        out.contains("policies/quick.yaml:2:39: error[E206 bad-duration]"),
        "{out}"
    );

    // A change to no orch file does not run orch at all.
    write(
        "policies/quick.yaml",
        "failover:\n  detect: { poll_interval: 1s, grace: 5s }\n",
    );
    write("notes.yaml", "anything: else\n");
    let (passed, out) = attempt("notes");
    assert!(passed, "{out}");
    assert!(!out.contains("E206"), "{out}");
    let log = git(&work, home, &["log", "--format=%s"]);
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        ["notes", "clusters"],
        "{log}"
    );
}

/// Shell words of one command line, quotes removed, up to a redirection or an operator.
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut in_word) = (Vec::new(), String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    let end = words
        .iter()
        .position(|w| matches!(w.as_str(), ">" | ">>" | "|" | "||" | "&&" | ";" | "2>"))
        .unwrap_or(words.len());
    words.truncate(end);
    words
}

/// The shell scripts of a pipeline: GitHub's `steps[].run`, GitLab's `before_script` and
/// `script`.
fn scripts(doc: &serde_norway::Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(map) = doc.as_mapping() else {
        return out;
    };
    for (key, value) in map {
        match (key.as_str(), value) {
            (Some("run"), serde_norway::Value::String(s)) => out.push(s.clone()),
            (Some("script" | "before_script"), serde_norway::Value::Sequence(lines)) => out.push(
                lines
                    .iter()
                    .map(|l| l.as_str().expect("script lines are strings"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            (_, serde_norway::Value::Mapping(_)) => out.extend(scripts(value)),
            (_, serde_norway::Value::Sequence(items)) => out.extend(items.iter().flat_map(scripts)),
            _ => {}
        }
    }
    out
}

/// `examples/ci/`: both pipelines are valid YAML, their scripts are valid shell, and every
/// `orch` command in them is one orch accepts; between them they validate with annotations,
/// plan offline as Markdown, and take the snapshots the plans use.
#[test]
fn the_example_pipelines_are_valid_and_run_orch_as_documented() {
    let cases: &[(&str, &[&str])] = &[
        (
            "github-actions.yml",
            &[
                "orch validate --format github",
                "orch validate --format sarif",
                "--format markdown",
                "orch status",
            ],
        ),
        (
            "gitlab-ci.yml",
            &[
                "orch validate --format gitlab",
                "--format markdown",
                "orch status",
            ],
        ),
    ];
    for (file, wanted) in cases {
        let path = repo().join("examples/ci").join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: serde_norway::Value = serde_norway::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
        let scripts = scripts(&doc);
        assert!(scripts.len() >= 4, "{file}: {scripts:?}");
        let mut commands = Vec::new();
        for script in &scripts {
            // GitHub replaces ${{ ... }} before the shell sees the script.
            let mut shell = script.clone();
            while let Some(start) = shell.find("${{") {
                let end = shell[start..].find("}}").unwrap() + start + 2;
                shell.replace_range(start..end, "X");
            }
            let out = Command::new("bash")
                .args(["-n", "-c", &shell])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{file}: not valid shell:\n{script}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            for line in script.lines().map(str::trim) {
                if !line.starts_with("orch ") {
                    continue;
                }
                let words = shell_words(line);
                if let Err(e) = <orch::cli::Cli as clap::Parser>::try_parse_from(&words) {
                    panic!("{file}: `{line}` is not an orch command line: {e}");
                }
                commands.push(line.to_string());
            }
        }
        for want in *wanted {
            assert!(
                commands.iter().any(|c| c.contains(want)),
                "{file} runs no `{want}`: {commands:?}"
            );
        }
        // The offline plan reads the snapshots the scheduled job writes.
        assert!(
            commands
                .iter()
                .any(|c| c.starts_with("orch plan") && c.contains("--observed")),
            "{file}: {commands:?}"
        );
    }

    // The shape each CI system needs.
    let gh: serde_norway::Value = serde_norway::from_str(
        &std::fs::read_to_string(repo().join("examples/ci/github-actions.yml")).unwrap(),
    )
    .unwrap();
    assert!(gh["on"]["pull_request"].is_mapping() && gh["on"]["schedule"].is_sequence());
    assert_eq!(gh["jobs"]["plan"]["needs"].as_str(), Some("validate"));
    assert_eq!(
        gh["jobs"]["plan"]["permissions"]["pull-requests"].as_str(),
        Some("write")
    );
    let gl: serde_norway::Value = serde_norway::from_str(
        &std::fs::read_to_string(repo().join("examples/ci/gitlab-ci.yml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        gl["orch-validate"]["artifacts"]["reports"]["codequality"].as_str(),
        Some("gl-code-quality-report.json")
    );
    let stages: Vec<&str> = gl["stages"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for job in ["orch-validate", "orch-plan", "orch-snapshot"] {
        assert!(
            stages.contains(&gl[job]["stage"].as_str().unwrap()),
            "{job}"
        );
    }
}

#[test]
fn shell_words_table() {
    let cases: &[(&str, &[&str])] = &[
        ("orch validate a.yaml", &["orch", "validate", "a.yaml"]),
        (
            "orch plan \"$f\" --observed \"snapshots/$name.json\" --format markdown >> plan.md",
            &[
                "orch",
                "plan",
                "$f",
                "--observed",
                "snapshots/$name.json",
                "--format",
                "markdown",
            ],
        ),
        (
            "orch status 'a b' || [ $? -eq 2 ]",
            &["orch", "status", "a b"],
        ),
        ("orch x \"\"", &["orch", "x", ""]),
    ];
    for (line, want) in cases {
        assert_eq!(shell_words(line), *want, "{line}");
    }
}

/// The README's pre-commit configuration is valid YAML and names a hook the repository has.
#[test]
fn readme_pre_commit_configuration_names_the_hook() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .filter(|b| b.starts_with("repos:"))
        .collect();
    assert_eq!(
        blocks.len(),
        1,
        "one pre-commit configuration in the README"
    );
    let config: serde_norway::Value = serde_norway::from_str(blocks[0]).unwrap();
    let manifest: serde_norway::Value = serde_norway::from_str(
        &std::fs::read_to_string(repo().join(".pre-commit-hooks.yaml")).unwrap(),
    )
    .unwrap();
    let ids: Vec<&str> = manifest
        .as_sequence()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    for hook in config["repos"][0]["hooks"].as_sequence().unwrap() {
        assert!(ids.contains(&hook["id"].as_str().unwrap()), "{hook:?}");
    }
}
