//! Secrets in topology files: `${ENV}` interpolation and `*_file:` references.
//!
//! Takes what the file says, gives a [`SecretRef`] at parse time (syntax checked, nothing
//! resolved, so `orch validate` in CI needs no secrets) and a [`Secret`] only when a command
//! is about to connect. A [`Secret`]'s value cannot be printed by accident: it has no
//! `Display`, its `Debug` is `***`, and resolution errors name the variable or the file,
//! never the value. Resolution reads the environment and files (I/O).

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a secret comes from, as written in the file.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// A string with `${VAR}` references; `$$` is a literal `$`.
    Value(String),
    /// A file holding the secret (trailing newline removed); relative to the topology file.
    File(PathBuf),
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Only the variable names are shown: a literal value is a secret.
            SecretRef::Value(t) => {
                write!(f, "Value(vars: {:?})", template_vars(t).unwrap_or_default())
            }
            SecretRef::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

/// A resolved secret. Read it with [`Secret::expose`] at the one place it is sent.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The `${VAR}` names a template uses, or why it is malformed.
pub fn template_vars(text: &str) -> Result<Vec<String>, String> {
    let mut vars = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            rest = after;
        } else if let Some(after) = rest.strip_prefix('{') {
            let Some(end) = after.find('}') else {
                return Err("`${` is not closed by `}`".into());
            };
            let name = &after[..end];
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "`${{{name}}}` is not a variable name (letters, digits, _)"
                ));
            }
            vars.push(name.to_string());
            rest = &after[end + 1..];
        }
    }
    Ok(vars)
}

/// Whether a template is a literal (no `${VAR}` in it).
pub fn is_literal(text: &str) -> bool {
    template_vars(text).is_ok_and(|v| v.is_empty())
}

impl SecretRef {
    /// Resolves the secret. `what` names it in errors (`credentials.password`);
    /// `base_dir` is the topology file's directory; `env` looks up variables.
    pub fn resolve(
        &self,
        what: &str,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Secret, String> {
        match self {
            SecretRef::Value(template) => {
                let mut out = String::new();
                let mut rest = template.as_str();
                while let Some(at) = rest.find('$') {
                    out.push_str(&rest[..at]);
                    rest = &rest[at + 1..];
                    if let Some(after) = rest.strip_prefix('$') {
                        out.push('$');
                        rest = after;
                    } else if let Some(after) = rest.strip_prefix('{') {
                        let end = after
                            .find('}')
                            .ok_or_else(|| format!("{what}: `${{` is not closed"))?;
                        let name = &after[..end];
                        let value = env(name).ok_or_else(|| {
                            format!("{what}: environment variable {name} is not set; export it before running orch")
                        })?;
                        out.push_str(&value);
                        rest = &after[end + 1..];
                    } else {
                        out.push('$');
                    }
                }
                out.push_str(rest);
                Ok(Secret(out))
            }
            SecretRef::File(path) => {
                let path = base_dir.join(path);
                check_owner_only(&path).map_err(|e| format!("{what}: {e}"))?;
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{what}: cannot read {}: {e}", path.display()))?;
                Ok(Secret(text.trim_end_matches(['\n', '\r']).to_string()))
            }
        }
    }
}

impl SecretRef {
    /// [`resolve`](SecretRef::resolve) against this process's environment: what every
    /// command that connects uses.
    pub fn resolve_from_env(&self, what: &str, base_dir: &Path) -> anyhow::Result<Secret> {
        self.resolve(what, base_dir, &|name| std::env::var(name).ok())
            .map_err(anyhow::Error::msg)
    }
}

/// A password file readable by group or others is refused, like ssh refuses such keys.
#[cfg(unix)]
fn check_owner_only(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is readable by others (mode {:o}); run: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner_only(_path: &Path) -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PW" => Some("s3cr3t".into()),
            "USER_1" => Some("orch".into()),
            _ => None,
        }
    }

    #[test]
    fn template_table() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("${PW}", Ok("s3cr3t")),
            ("pre-${PW}-post", Ok("pre-s3cr3t-post")),
            ("${USER_1}:${PW}", Ok("orch:s3cr3t")),
            ("a$$b", Ok("a$b")),
            ("cost$5", Ok("cost$5")),
            ("plain", Ok("plain")),
            ("${MISSING}", Err("environment variable MISSING is not set")),
        ];
        for (template, want) in cases {
            let got = SecretRef::Value(template.to_string()).resolve("pw", Path::new("."), &env);
            match (got, want) {
                (Ok(s), Ok(w)) => assert_eq!(s.expose(), *w, "{template}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{template}: {e}"),
                (got, want) => panic!("{template}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn malformed_templates() {
        for bad in ["${PW", "${}", "${1X}", "${A-B}"] {
            assert!(template_vars(bad).is_err(), "{bad}");
        }
        assert_eq!(template_vars("x${A}y${B_2}").unwrap(), vec!["A", "B_2"]);
        assert!(is_literal("hunter2"));
        assert!(!is_literal("${PW}"));
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
        let r = SecretRef::Value("hunter2".into());
        assert!(!format!("{r:?}").contains("hunter2"));
    }

    #[test]
    fn password_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "hunter2\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let r = SecretRef::File("pw".into());
        let err = r
            .resolve("credentials.password_file", dir.path(), &env)
            .unwrap_err();
        assert!(
            err.contains("chmod 600") && !err.contains("hunter2"),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            r.resolve("x", dir.path(), &env).unwrap().expose(),
            "hunter2"
        );
    }
}
