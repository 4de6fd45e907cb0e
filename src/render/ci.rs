//! `orch validate`'s report in the formats CI systems read, so that each problem shows on
//! the line of the pull request (or merge request) that causes it:
//!
//! - `github`: one GitHub Actions workflow command per diagnostic
//!   (`::error file=F,line=L,col=C,title=CODE rule::message`), which the runner turns into an
//!   annotation on the diff; then the human summary, as plain log lines.
//! - `sarif`: a SARIF 2.1.0 log for code scanning (GitHub's `upload-sarif`): one rule per
//!   diagnostic code, with its description and general help; one result per diagnostic.
//! - `gitlab`: a GitLab Code Quality report (the Code Climate subset GitLab reads from
//!   `artifacts: reports: codequality`), shown in the merge request.
//!
//! Paths are written relative to `base` (the directory orch runs in, which in CI is the
//! checkout's root) with `.` and `..` resolved, because GitHub and GitLab match them
//! against the repository's files. Takes a [`Report`] and a writer; no other I/O.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::spec::diag::{Code, Diagnostic, Severity};
use crate::validate::Report;

/// `--format github`.
pub fn github(report: &Report, base: &Path, out: &mut dyn Write) -> std::io::Result<()> {
    for d in &report.diagnostics {
        let command = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut properties = vec![format!("file={}", property(&review_path(&d.file, base)))];
        if d.line > 0 {
            properties.push(format!("line={}", d.line));
            if d.column > 0 {
                properties.push(format!("col={}", d.column));
            }
        }
        properties.push(format!(
            "title={}",
            property(&format!("{} {}", d.code.code(), d.rule))
        ));
        writeln!(
            out,
            "::{command} {}::{}",
            properties.join(","),
            data(&message(d))
        )?;
    }
    super::validate_summary(report, out)
}

/// The subject, the message and the hint on a second line.
fn message(d: &Diagnostic) -> String {
    let mut text = match &d.subject {
        Some(subject) => format!("{subject}: {}", d.message),
        None => d.message.clone(),
    };
    if let Some(hint) = &d.hint {
        text.push_str("\nhint: ");
        text.push_str(hint);
    }
    text
}

/// A workflow command's message: GitHub's runner decodes `%25`, `%0D` and `%0A`.
fn data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value: as [`data`], and `:` and `,` (which end a property)
/// as `%3A` and `%2C`.
fn property(text: &str) -> String {
    data(text).replace(':', "%3A").replace(',', "%2C")
}

/// `path` as the repository sees it: relative to `base` when under it, `.` and `..`
/// resolved lexically (`examples/../policies/fast.yaml` is `policies/fast.yaml`), with `/`.
pub fn review_path(path: &Path, base: &Path) -> String {
    // `base.join` keeps an absolute path as it is.
    let path = normalize(&base.join(path));
    let shown = path.strip_prefix(normalize(base)).unwrap_or(&path);
    let parts: Vec<String> = shown
        .components()
        .map(|c| match c {
            Component::RootDir => String::new(),
            c => c.as_os_str().to_string_lossy().into_owned(),
        })
        .collect();
    parts.join("/")
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(".."),
            },
            c => out.push(c),
        }
    }
    out
}

/// The SARIF log: the top-level shape GitHub's code scanning and other readers expect.
#[derive(Serialize)]
struct SarifLog {
    #[serde(rename = "$schema")]
    schema: &'static str,
    version: &'static str,
    runs: Vec<SarifRun>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifRun {
    tool: SarifTool,
    /// orch counts columns in characters.
    column_kind: &'static str,
    results: Vec<SarifResult>,
}

#[derive(Serialize)]
struct SarifTool {
    driver: SarifDriver,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifDriver {
    name: &'static str,
    version: &'static str,
    rules: Vec<SarifRule>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifRule {
    id: &'static str,
    name: &'static str,
    short_description: SarifText,
    help: SarifText,
    default_configuration: SarifConfiguration,
}

#[derive(Serialize)]
struct SarifText {
    text: String,
}

#[derive(Serialize)]
struct SarifConfiguration {
    level: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    rule_id: &'static str,
    rule_index: usize,
    level: &'static str,
    message: SarifText,
    locations: Vec<SarifLocation>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifLocation {
    physical_location: SarifPhysicalLocation,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifPhysicalLocation {
    artifact_location: SarifArtifactLocation,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<SarifRegion>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifArtifactLocation {
    uri: String,
    /// `%SRCROOT%` for a path relative to the checkout.
    #[serde(skip_serializing_if = "Option::is_none")]
    uri_base_id: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifRegion {
    start_line: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_column: Option<u32>,
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// `--format sarif`: every code orch has is a rule (so a rule's index never changes), and
/// every diagnostic a result.
pub fn sarif(report: &Report, base: &Path, out: &mut dyn Write) -> std::io::Result<()> {
    let rules = Code::ALL
        .iter()
        .map(|c| SarifRule {
            id: c.code(),
            name: c.rule(),
            short_description: SarifText {
                text: c.what().into(),
            },
            help: SarifText {
                text: c.help().into(),
            },
            default_configuration: SarifConfiguration {
                level: level(c.severity()),
            },
        })
        .collect();
    let results = report
        .diagnostics
        .iter()
        .map(|d| {
            let path = review_path(&d.file, base);
            let (uri, uri_base_id) = if path.starts_with('/') {
                (format!("file://{}", uri_encode(&path)), None)
            } else {
                (uri_encode(&path), Some("%SRCROOT%"))
            };
            SarifResult {
                rule_id: d.code.code(),
                rule_index: Code::ALL.iter().position(|c| *c == d.code).unwrap_or(0),
                level: level(d.severity),
                message: SarifText { text: message(d) },
                locations: vec![SarifLocation {
                    physical_location: SarifPhysicalLocation {
                        artifact_location: SarifArtifactLocation { uri, uri_base_id },
                        region: (d.line > 0).then_some(SarifRegion {
                            start_line: d.line,
                            start_column: (d.column > 0).then_some(d.column),
                        }),
                    },
                }],
            }
        })
        .collect();
    let log = SarifLog {
        schema: "https://json.schemastore.org/sarif-2.1.0.json",
        version: "2.1.0",
        runs: vec![SarifRun {
            tool: SarifTool {
                driver: SarifDriver {
                    name: "orch",
                    version: env!("CARGO_PKG_VERSION"),
                    rules,
                },
            },
            column_kind: "unicodeCodePoints",
            results,
        }],
    };
    serde_json::to_writer_pretty(&mut *out, &log)?;
    writeln!(out)
}

/// A path as a URI reference: everything but unreserved characters and `/` percent-encoded
/// (a `:` in the first segment would otherwise read as a scheme).
fn uri_encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One issue of a GitLab Code Quality report.
#[derive(Serialize)]
struct CodeQualityIssue {
    description: String,
    check_name: String,
    fingerprint: String,
    severity: &'static str,
    location: CodeQualityLocation,
}

#[derive(Serialize)]
struct CodeQualityLocation {
    path: String,
    lines: CodeQualityLines,
}

#[derive(Serialize)]
struct CodeQualityLines {
    begin: u32,
}

/// `--format gitlab`: errors are `major`, warnings `minor`. The fingerprint (which GitLab
/// uses to tell a finding fixed or new between the two sides of a merge request) is the
/// file, code, subject and message, without the line, so an edit elsewhere in the file does
/// not make every finding look new.
pub fn gitlab(report: &Report, base: &Path, out: &mut dyn Write) -> std::io::Result<()> {
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let issues: Vec<CodeQualityIssue> = report
        .diagnostics
        .iter()
        .map(|d| {
            let path = review_path(&d.file, base);
            let key = format!(
                "{path}\0{}\0{}\0{}",
                d.code.code(),
                d.subject.as_deref().unwrap_or(""),
                d.message
            );
            // The same finding twice in one file still needs two fingerprints.
            let n = seen.entry(key.clone()).or_default();
            *n += 1;
            let fingerprint = crate::plan::sha256_hex(format!("{key}\0{n}").as_bytes());
            CodeQualityIssue {
                description: message(d).replace("\nhint: ", "; hint: "),
                check_name: format!("{} {}", d.code.code(), d.rule),
                fingerprint,
                severity: match d.severity {
                    Severity::Error => "major",
                    Severity::Warning => "minor",
                },
                location: CodeQualityLocation {
                    path,
                    lines: CodeQualityLines {
                        begin: d.line.max(1),
                    },
                },
            }
        })
        .collect();
    serde_json::to_writer_pretty(&mut *out, &issues)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_command_escaping() {
        assert_eq!(data("100% done\r\nnext"), "100%25 done%0D%0Anext");
        assert_eq!(
            property("a,b:c%d\ne"),
            "a%2Cb%3Ac%25d%0Ae",
            "properties also escape the separators"
        );
        // `%` first, so an escape is never escaped twice.
        assert_eq!(data("%0A"), "%250A");
    }

    #[test]
    fn paths_as_the_repository_sees_them() {
        let base = Path::new("/ci/checkout");
        let cases = [
            ("topologies/shop.yaml", "topologies/shop.yaml"),
            ("./topologies/shop.yaml", "topologies/shop.yaml"),
            ("examples/../policies/fast.yaml", "policies/fast.yaml"),
            ("/ci/checkout/policies/fast.yaml", "policies/fast.yaml"),
            ("/elsewhere/x.yaml", "/elsewhere/x.yaml"),
            ("../other/x.yaml", "/ci/other/x.yaml"),
        ];
        for (path, want) in cases {
            assert_eq!(review_path(Path::new(path), base), want, "{path}");
        }
        // A relative base keeps relative paths relative.
        assert_eq!(
            review_path(Path::new("a/../b.yaml"), Path::new("")),
            "b.yaml"
        );
        assert_eq!(
            review_path(Path::new("../b.yaml"), Path::new("")),
            "../b.yaml"
        );
    }

    #[test]
    fn uris_encode_what_is_not_a_plain_path() {
        assert_eq!(uri_encode("policies/fast.yaml"), "policies/fast.yaml");
        assert_eq!(
            uri_encode("my dir/a:b#c%.yaml"),
            "my%20dir/a%3Ab%23c%25.yaml"
        );
        assert_eq!(uri_encode("dc/zürich.yaml"), "dc/z%C3%BCrich.yaml");
    }
}
