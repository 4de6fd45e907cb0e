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
    ($($variant:ident = $code:literal, $rule:literal, $severity:ident;)*) => {
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
        }
    };
}

codes! {
    // Reading the file.
    Io = "E100", "unreadable-file", Error;
    TooLarge = "E101", "file-too-large", Error;
    NotUtf8 = "E102", "not-utf8", Error;
    YamlSyntax = "E103", "yaml-syntax", Error;
    YamlLimit = "E104", "yaml-limit", Error;
    NotAMapping = "E105", "not-a-mapping", Error;
    MultipleDocuments = "E106", "multiple-documents", Error;
    // Schema: keys, types, values.
    UnknownKey = "E201", "unknown-key", Error;
    DuplicateKey = "E202", "duplicate-key", Error;
    MissingKey = "E203", "missing-key", Error;
    WrongType = "E204", "wrong-type", Error;
    BadAddress = "E205", "bad-address", Error;
    BadDuration = "E206", "bad-duration", Error;
    BadValue = "E207", "bad-value", Error;
    BadSecret = "E208", "bad-secret", Error;
    BadName = "E209", "bad-name", Error;
    // Semantics of one cluster.
    NoPrimary = "E301", "no-primary", Error;
    MultiplePrimaries = "E302", "multiple-primaries", Error;
    UnknownSource = "E303", "unknown-source", Error;
    ReplicationCycle = "E304", "replication-cycle", Error;
    DuplicateAddress = "E305", "duplicate-address", Error;
    PolicyUnresolved = "E306", "policy-unresolved", Error;
    NoPromotableCandidate = "E307", "no-promotable-candidate", Error;
    UnknownPlaceholder = "E308", "unknown-placeholder", Error;
    DuplicateCluster = "E309", "duplicate-cluster", Error;
    // Warnings: legal, but probably not what was meant.
    CrossDcUnmeetable = "W401", "cross-dc-unmeetable", Warning;
    LiteralSecret = "W402", "literal-secret", Warning;
    DelayedCandidate = "W403", "delayed-candidate", Warning;
    GraceBelowPoll = "W404", "grace-below-poll-interval", Warning;
    MissingDc = "W405", "missing-dc", Warning;
    NoReplicas = "W406", "no-replicas", Warning;
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
