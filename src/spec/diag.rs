//! Diagnostics: what is wrong in a topology or policy file, where, and what to do.
//!
//! Takes nothing, gives the [`Diagnostic`] value every check produces and the catalogue of
//! stable [`Code`]s (documented in the README; CI scripts may match on them, so a code is
//! never reused for another meaning). No I/O.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::yaml::Pos;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

macro_rules! codes {
    ($($variant:ident = $code:literal, $rule:literal, $severity:ident, $what:literal, $help:literal;)*) => {
        /// Every diagnostic orch can report, with a stable code and rule name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $($variant,)* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];
            /// The stable code, e.g. `E303`.
            pub fn code(self) -> &'static str { match self { $(Code::$variant => $code,)* } }
            /// The stable rule name, e.g. `unknown-source`.
            pub fn rule(self) -> &'static str { match self { $(Code::$variant => $rule,)* } }
            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$severity,)* }
            }
            /// What the rule finds, in a few words (the README's table of codes).
            pub fn what(self) -> &'static str { match self { $(Code::$variant => $what,)* } }
            /// What to do about it in general (SARIF's rule help); each diagnostic's own
            /// hint is more specific.
            pub fn help(self) -> &'static str { match self { $(Code::$variant => $help,)* } }
        }
    };
}

// Variant = code, rule, severity,
//     what it finds (the README's table of codes, kept identical by a test),
//     what to do about it in general (SARIF's rule help);
codes! {
    // Reading the file.
    Io = "E100", "unreadable-file", Error,
        "the file cannot be read",
        "Check the path and the file's permissions; a directory is not a topology file.";
    TooLarge = "E101", "file-too-large", Error,
        "larger than 16 MiB (refused before reading)",
        "A topology file declares one cluster: split very large inventories into one file per cluster.";
    NotUtf8 = "E102", "not-utf8", Error,
        "binary content",
        "Topology and policy files are UTF-8 YAML text.";
    YamlSyntax = "E103", "yaml-syntax", Error,
        "the YAML does not parse",
        "Fix the YAML syntax at the position shown: indentation with spaces, closed brackets and quotes.";
    YamlLimit = "E104", "yaml-limit", Error,
        "nested deeper than 64, or aliases expanding beyond 1,000,000 nodes",
        "Write the values out instead of nesting or aliasing them this deeply.";
    NotAMapping = "E105", "not-a-mapping", Error,
        "empty file, a list, a scalar",
        "A topology file is a mapping of cluster, credentials, policy and hosts (see examples/); a policy file one of failover and hooks.";
    MultipleDocuments = "E106", "multiple-documents", Error,
        "more than one `---` document",
        "Put each cluster in a file of its own.";
    // Schema: keys, types, values.
    UnknownKey = "E201", "unknown-key", Error,
        "a key orch does not know, at any depth (with a did-you-mean)",
        "Fix the spelling (the message names the closest known key) or remove the key: a misspelt key must never silently do nothing.";
    DuplicateKey = "E202", "duplicate-key", Error,
        "a key given twice in one mapping",
        "Remove one of the two: YAML tools disagree on which one wins.";
    MissingKey = "E203", "missing-key", Error,
        "a required key is absent",
        "Add the key the message names.";
    WrongType = "E204", "wrong-type", Error,
        "e.g. a list where a string belongs, `yes` for a boolean",
        "Write the value as the type the key takes; booleans are true or false, unquoted.";
    BadAddress = "E205", "bad-address", Error,
        "not `host:port` with a port 1–65535",
        "Write host:port with an explicit port, e.g. 10.0.0.1:3306 or db1.example.com:3306; IPv6 as [addr]:port.";
    BadDuration = "E206", "bad-duration", Error,
        "not a duration with a unit",
        "Give a number with a unit: 500ms, 10s, 5m, 1h, 2d, or sums like 1m30s.";
    BadValue = "E207", "bad-value", Error,
        "not one of the allowed values (enums, webhook URLs)",
        "Use one of the values the message lists.";
    BadSecret = "E208", "bad-secret", Error,
        "malformed `${…}`, or both `password` and `password_file`",
        "Reference a secret as ${NAME} ($$ is a literal $), and give either the value or the file, not both.";
    BadName = "E209", "bad-name", Error,
        "cluster name or host id with other characters",
        "Use letters, digits, '.', '_' and '-', at most 64 characters.";
    // Semantics of one cluster.
    NoPrimary = "E301", "no-primary", Error,
        "no host without a source (or no host at all)",
        "Declare the primary (a host without `source`) and its replicas.";
    MultiplePrimaries = "E302", "multiple-primaries", Error,
        "more than one host without a source",
        "Give every host but the primary a `source:`, or move the other cluster to a file of its own.";
    UnknownSource = "E303", "unknown-source", Error,
        "`source` names no declared host",
        "Name a host declared under `hosts`, or declare the missing one.";
    ReplicationCycle = "E304", "replication-cycle", Error,
        "sources that never lead to the primary",
        "A replica's sources must lead to the primary: change one `source:` to break the cycle.";
    DuplicateAddress = "E305", "duplicate-address", Error,
        "two hosts (in any of the files) with one address",
        "Each host is one server in one cluster: fix the address or remove the duplicate host.";
    PolicyUnresolved = "E306", "policy-unresolved", Error,
        "no such built-in policy or policy file",
        "Name a built-in policy (safe, manual, fast) or a policy file; a relative path is relative to the topology file.";
    NoPromotableCandidate = "E307", "no-promotable-candidate", Error,
        "every replica is `must_not` or delayed",
        "Mark at least one replica without `delay` as `promotion: prefer` or `neutral`.";
    UnknownPlaceholder = "E308", "unknown-placeholder", Error,
        "a hook uses an unknown `{placeholder}`",
        "Use the documented placeholders ({cluster}, {event}, {failed}, {successor}, ...); write {{ and }} for literal braces.";
    DuplicateCluster = "E309", "duplicate-cluster", Error,
        "two files declare the same cluster",
        "Cluster names are unique: rename one of them.";
    // Warnings: legal, but probably not what was meant.
    CrossDcUnmeetable = "W401", "cross-dc-unmeetable", Warning,
        "`cross_dc: deny` but no promotable replica in the primary's dc",
        "Make a replica in the primary's dc promotable, or use a policy with `cross_dc: allow`.";
    LiteralSecret = "W402", "literal-secret", Warning,
        "a password written in the file",
        "Reference the password as ${NAME} or through password_file, so it stays out of version control.";
    DelayedCandidate = "W403", "delayed-candidate", Warning,
        "a delayed replica that may be promoted",
        "Add `promotion: must_not` to delayed replicas.";
    GraceBelowPoll = "W404", "grace-below-poll-interval", Warning,
        "one failed probe would confirm a failure",
        "Make `failover.detect.grace` at least two poll intervals.";
    MissingDc = "W405", "missing-dc", Warning,
        "`cross_dc: deny` with hosts whose dc is unknown",
        "Give every host a `dc:` so orch can tell where it lives.";
    NoReplicas = "W406", "no-replicas", Warning,
        "a primary alone cannot fail over",
        "Declare at least one replica with `source:`.";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

/// One problem in one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: Code,
    pub rule: &'static str,
    pub file: PathBuf,
    pub line: u32,
    pub column: u32,
    /// The offending key path (`hosts.db2.source`) or host id, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(code: Code, file: &Path, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: code.severity(),
            code,
            rule: code.rule(),
            file: file.to_path_buf(),
            line: pos.line,
            column: pos.column,
            subject: None,
            message: message.into(),
            hint: None,
        }
    }

    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// `file:line:column: error[E303 unknown-source]: message` then `  hint: ...`, the shape
/// editors and CI log viewers turn into links.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {severity}[{} {}]: ",
            self.file.display(),
            self.line,
            self.column,
            self.code.code(),
            self.rule
        )?;
        if let Some(subject) = &self.subject {
            write!(f, "{subject}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// The closest candidate to a misspelt name, for "did you mean" hints.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let limit = (candidate.len().max(word.len()) / 3).max(1);
        // The distance is at least the difference in length: skip the quadratic work for
        // candidates that cannot be close (a 10,000-host file has 10,000 candidates).
        if candidate.len().abs_diff(word.len()) > limit {
            continue;
        }
        let d = edit_distance(word, candidate);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_prefixed_by_severity() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            assert!(seen.insert(code.code()), "{code:?} reuses {}", code.code());
            assert!(seen.insert(code.rule()), "{code:?} reuses {}", code.rule());
            let prefix = match code.severity() {
                Severity::Error => 'E',
                Severity::Warning => 'W',
            };
            assert!(code.code().starts_with(prefix), "{code:?}");
        }
    }

    #[test]
    fn did_you_mean_table() {
        let keys = ["address", "source", "dc", "promotion", "delay"];
        let cases = [
            ("adress", Some("address")),
            ("sourc", Some("source")),
            ("promoted", Some("promotion")),
            ("dcc", Some("dc")),
            ("zone", None),
            ("weight", None),
        ];
        for (word, want) in cases {
            assert_eq!(did_you_mean(word, keys), want, "{word}");
        }
    }

    #[test]
    fn display_shape() {
        let d = Diagnostic::new(
            Code::UnknownSource,
            Path::new("t.yaml"),
            Pos { line: 4, column: 9 },
            "x",
        )
        .subject("hosts.db2.source")
        .hint("y");
        assert_eq!(
            d.to_string(),
            "t.yaml:4:9: error[E303 unknown-source]: hosts.db2.source: x\n  hint: y"
        );
    }
}
