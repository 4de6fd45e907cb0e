//! Tables of topology files and the diagnostics they must produce.

use super::*;

/// Parses a topology from text (with the built-in policy it names) and returns the
/// diagnostics as `line:col code subject`.
fn diagnose(text: &str) -> Vec<String> {
    let path = Path::new("t.yaml");
    let root = match yaml::load(text) {
        Ok(root) => root,
        Err(e) => return vec![format!("{}:{} load {:?}", e.pos.line, e.pos.column, e.kind)],
    };
    let (t, mut diags) = parse_topology(path, &root);
    if let Some(t) = t {
        let (policy, mut more) = load_policy(&t);
        diags.append(&mut more);
        diags.extend(check::cluster(&t, policy.as_ref()));
    }
    diags
        .iter()
        .map(|d| {
            format!(
                "{}:{} {} {}",
                d.line,
                d.column,
                d.code,
                d.subject.clone().unwrap_or_default()
            )
        })
        .collect()
}

const HEAD: &str = "cluster: c\ncredentials: { user: orch, password: \"${PW}\" }\n";

fn with_hosts(hosts: &str) -> String {
    format!("{HEAD}hosts:\n{hosts}")
}

#[test]
fn clean_topology_has_no_diagnostics() {
    let text = with_hosts(
        "  a: { address: \"a:1\", dc: x }\n  b: { address: \"b:1\", dc: x, source: a }\n",
    );
    assert_eq!(diagnose(&text), Vec::<String>::new());
}

#[test]
fn semantic_rules_table() {
    let cases: &[(&str, &[&str])] = &[
        // Exactly one primary.
        (
            "  a: { address: \"a:1\", source: b }\n  b: { address: \"b:1\", source: a }\n",
            &["4:3 E301 hosts", "4:3 E304 a"],
        ),
        (
            "  a: { address: \"a:1\" }\n  b: { address: \"b:1\" }\n",
            &["5:3 E302 b"],
        ),
        // Unknown source, with the primary still fine.
        (
            "  a: { address: \"a:1\" }\n  b: { address: \"b:1\", source: c }\n",
            &["5:32 E303 hosts.b.source", "4:3 W405 a"],
        ),
        // A cycle of one.
        (
            "  a: { address: \"a:1\" }\n  b: { address: \"b:1\", source: b }\n  c: { address: \"c:1\", source: a }\n",
            &["5:3 E304 b", "4:3 W405 a"],
        ),
        // A cycle hanging off nothing, plus a healthy primary.
        (
            "  p: { address: \"p:1\" }\n  r: { address: \"r:1\", source: p }\n  x: { address: \"x:1\", source: z }\n  z: { address: \"z:1\", source: x }\n",
            &["6:3 E304 x", "4:3 W405 p"],
        ),
        // Duplicate address (case-insensitive host).
        (
            "  a: { address: \"a:1\" }\n  b: { address: \"A:1\", source: a }\n",
            &["5:17 E305 hosts.b.address", "4:3 W405 a"],
        ),
        // Duplicate address: one IPv4 server spelled as IPv4-mapped IPv6.
        (
            "  a: { address: \"127.0.0.5:3306\" }\n  b: { address: \"[::ffff:127.0.0.5]:3306\", source: a }\n",
            &["5:17 E305 hosts.b.address", "4:3 W405 a"],
        ),
        // Nobody promotable.
        (
            "  a: { address: \"a:1\" }\n  b: { address: \"b:1\", source: a, promotion: must_not }\n",
            &["4:3 E307 a"],
        ),
        // A delayed replica is not a candidate, and is warned about when promotable.
        (
            "  a: { address: \"a:1\" }\n  b: { address: \"b:1\", source: a, delay: 1h }\n",
            &["5:3 W403 b", "4:3 E307 a"],
        ),
        // A lone primary is legal but warned about.
        ("  a: { address: \"a:1\" }\n", &["4:3 W406 a"]),
        // cross_dc deny (the safe policy) with no candidate in the primary's dc.
        (
            "  a: { address: \"a:1\", dc: e }\n  b: { address: \"b:1\", dc: w, source: a }\n",
            &["4:3 W401 a"],
        ),
        // ... and with hosts whose dc is unknown.
        (
            "  a: { address: \"a:1\" }\n  b: { address: \"b:1\", dc: w, source: a }\n",
            &["4:3 W405 a"],
        ),
        // No hosts at all.
        ("  {}\n", &["4:3 E301 hosts"]),
    ];
    for (hosts, want) in cases {
        let mut got = diagnose(&with_hosts(hosts));
        got.sort();
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "hosts:\n{hosts}");
    }
}

#[test]
fn schema_rules_table() {
    let cases: &[(&str, &[&str])] = &[
        ("- a\n- b\n", &["1:1 E105 "]),
        ("just a string\n", &["1:1 E105 "]),
        ("cluster: c\n", &["1:1 E203 ", "1:1 E203 "]),
        (
            "cluster: [c]\ncredentials: { user: orch, password_file: p }\nhosts: { a: { address: \"a:1\" } }\n",
            &["1:10 E204 cluster", "3:10 W406 a"],
        ),
        (
            "cluster: c\ncredentials: { user: orch, password: x, password_file: p }\nhosts: { a: { address: \"a:1\" } }\n",
            &["2:56 E208 credentials.password_file", "3:10 W406 a"],
        ),
        (
            "cluster: c\ncredentials: { user: orch }\nhosts: { a: { address: \"a:1\" } }\n",
            &["2:14 E203 credentials", "3:10 W406 a"],
        ),
        (
            "cluster: c\ncredentials: { user: orch, password: \"${PW}\", replication_user: r }\nhosts: { a: { address: \"a:1\" } }\n",
            &["2:14 E203 credentials", "3:10 W406 a"],
        ),
        (
            "cluster: c\ncredentials: { user: orch, password: \"${PW}\" }\nhosts: { \"a b\": { address: \"a:1\" } }\n",
            &["3:10 E209 hosts.a b", "3:10 W406 a b"],
        ),
        (
            "cluster: c\ncredentials: { user: orch, password: \"${PW}\" }\npolicy: ./missing.yaml\nhosts: { a: { address: \"a:1\" } }\n",
            &["3:9 E306 policy", "4:10 W406 a"],
        ),
        (
            "cluster: c\ncredentials: { user: orch, password: \"${PW}\", colour: blue }\nhosts: { a: { address: \"a:1\", weight: 3 } }\n",
            &[
                "2:47 E201 credentials.colour",
                "3:31 E201 hosts.a.weight",
                "3:10 W406 a",
            ],
        ),
    ];
    for (text, want) in cases {
        let mut got = diagnose(text);
        got.sort();
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "file:\n{text}");
    }
}

#[test]
fn unknown_keys_are_reported_at_every_depth_at_once() {
    let text = "cluster: c\nclustr: d\ncredentials: { user: orch, password: \"${PW}\", usr: x }\nhosts:\n  a: { address: \"a:1\", sorce: b, dc: x }\n  b: { address: \"b:1\", source: a, promotoin: prefer }\n";
    let got = diagnose(text);
    let unknown: Vec<_> = got.iter().filter(|d| d.contains("E201")).collect();
    assert_eq!(unknown.len(), 4, "{got:?}");
}

#[test]
fn secrets_are_not_resolved_by_parsing_and_never_echoed() {
    let text = "cluster: c\ncredentials: { user: orch, password: \"hunter2-literal\" }\nhosts: { a: { address: \"a:1\" } }\n";
    let root = yaml::load(text).unwrap();
    let (t, diags) = parse_topology(Path::new("t.yaml"), &root);
    for d in &diags {
        let shown = format!("{d} {}", serde_json::to_string(d).unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
    }
    let creds = t.unwrap().credentials.unwrap();
    assert!(!format!("{creds:?}").contains("hunter2"));
    // ${VAR} references are kept as written until a command resolves them.
    let text = "cluster: c\ncredentials: { user: orch, password: \"${ORCH_TEST_UNSET_VAR}\" }\nhosts: { a: { address: \"a:1\" } }\n";
    assert_eq!(diagnose(text), vec!["3:10 W406 a"]);
}

#[test]
fn hostile_documents_are_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, Code)> = vec![
        ("empty", Vec::new(), Code::NotAMapping),
        ("list", b"- a\n- b\n".to_vec(), Code::NotAMapping),
        (
            "garbage",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
            Code::NotUtf8,
        ),
        ("nul", b"cluster: c\n\0\0\0".to_vec(), Code::NotUtf8),
        (
            "huge",
            vec![b'#'; (MAX_FILE_BYTES + 10) as usize],
            Code::TooLarge,
        ),
        ("deep", "[".repeat(10_000).into_bytes(), Code::YamlLimit),
        (
            "two-docs",
            b"cluster: a\n---\ncluster: b\n".to_vec(),
            Code::MultipleDocuments,
        ),
        (
            "tabs",
            b"cluster: c\n\thosts: x\n".to_vec(),
            Code::YamlSyntax,
        ),
    ];
    for (name, bytes, code) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let loaded = load(&path);
        let codes: Vec<Code> = loaded.diagnostics.iter().map(|d| d.code).collect();
        assert_eq!(codes, vec![code], "{name}");
    }
    let loaded = load(&dir.path().join("does-not-exist.yaml"));
    assert_eq!(loaded.diagnostics[0].code, Code::Io);
    let loaded = load(dir.path());
    assert_eq!(loaded.diagnostics[0].code, Code::Io);
}

#[test]
fn a_policy_document_is_told_from_a_topology() {
    let cases = [
        ("failover: { automatic: false }\n", true),
        ("hooks: { on_detect: [\"true\"] }\n", true),
        ("failover: {}\nhooks: {}\nfailovr: 1\n", true),
        // A topology's key makes it a topology, so its own diagnostics are reported.
        ("cluster: c\nfailover: { automatic: false }\n", false),
        ("hosts: {}\nhooks: {}\n", false),
        ("clustr: c\n", false),
        ("- failover\n", false),
        ("failover\n", false),
    ];
    for (text, want) in cases {
        let root = yaml::load(text).unwrap();
        assert_eq!(is_policy_document(&root), want, "{text}");
    }
}

/// A duration with a repeated unit, or units out of order, is refused in a policy file
/// with its file, line and column, like any other malformed duration.
#[test]
fn a_policy_duration_with_a_repeated_unit_is_refused_where_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    std::fs::write(
        &path,
        "failover:\n  detect: { poll_interval: 1s, grace: 1h1h }\n  anti_flap: 30m1h\n",
    )
    .unwrap();
    let loaded = load(&path);
    let found: Vec<(u32, u32, Code)> = loaded
        .diagnostics
        .iter()
        .map(|d| (d.line, d.column, d.code))
        .collect();
    assert_eq!(
        found,
        vec![(2, 39, Code::BadDuration), (3, 14, Code::BadDuration)],
        "{:?}",
        loaded.diagnostics
    );
    let text: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
    assert!(text[0].contains("p.yaml:2:39"), "{text:?}");
    assert!(text[0].contains("the unit `h` appears twice"), "{text:?}");
    assert!(text[1].contains("from the largest down"), "{text:?}");
}

#[test]
fn a_policy_file_loads_as_a_policy_with_its_own_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    std::fs::write(
        &path,
        "failover:\n  detect: { poll_interval: 5s, grace: 1s }\n  anti_flap: 10\n",
    )
    .unwrap();
    let loaded = load(&path);
    assert_eq!(loaded.kind, FileKind::Policy);
    assert!(loaded.topology.is_none() && loaded.policy.is_some());
    let codes: Vec<(u32, Code)> = loaded
        .diagnostics
        .iter()
        .map(|d| (d.line, d.code))
        .collect();
    assert_eq!(
        codes,
        vec![(2, Code::GraceBelowPoll), (3, Code::BadDuration)],
        "{:?}",
        loaded.diagnostics
    );
    assert!(loaded.diagnostics.iter().all(|d| d.file == path));
    let err = load_valid(&path).unwrap_err().to_string();
    assert!(err.contains("is a policy file, not a topology"), "{err}");
}
