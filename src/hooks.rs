//! Hooks: the policy's shell commands run when orch detects or recovers a failure.
//!
//! Takes the commands of one hook point, the values of the placeholders and the timeout;
//! gives each command's exit code, duration and the start of its output. Commands run one
//! after another, in the order written, through `sh -c`, each in its own process group,
//! the whole group killed at the timeout. Every `{name}` placeholder is replaced by its
//! value shell-quoted (so a value can never become shell syntax), `{{` and `}}` are literal
//! braces, and the same values are in the environment as `ORCH_NAME`. I/O: processes.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncReadExt;

/// How much of a hook's output is kept (stdout then stderr).
pub const OUTPUT_KEPT: usize = 4096;

/// The placeholder values of one event; a name without a value is replaced by `''`.
#[derive(Clone, Debug, Default)]
pub struct Values(pub Vec<(&'static str, String)>);

impl Values {
    pub fn set(&mut self, name: &'static str, value: impl Into<String>) -> &mut Self {
        let value = value.into();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
        self
    }

    fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// One hook command as it ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HookRun {
    pub hook: String,
    /// The command as written (placeholders not filled in: values may be sensitive).
    pub command: String,
    /// None: killed at the timeout, or could not start.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub millis: u64,
    /// The first [`OUTPUT_KEPT`] bytes of stdout and stderr.
    pub output: String,
}

impl HookRun {
    pub fn ok(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// `s` as one shell word.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `command` with every `{name}` replaced by its shell-quoted value.
pub fn render(command: &str, values: &Values) -> String {
    let mut out = String::new();
    let mut rest = command;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
        } else if let Some(end) = tail.strip_prefix('{').and_then(|t| t.find('}')) {
            out.push_str(&shell_quote(values.get(&tail[1..=end])));
            rest = &tail[end + 2..];
        } else {
            out.push_str(&tail[..1]);
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Runs the commands of hook point `hook` in order; with `stop_on_failure` (a pre hook),
/// stops at the first that fails. Never fails itself: a hook that cannot start is a
/// failed hook.
pub async fn run(
    hook: &str,
    commands: &[String],
    values: &Values,
    timeout: Duration,
    stop_on_failure: bool,
) -> Vec<HookRun> {
    let mut runs = Vec::new();
    for command in commands {
        let r = run_one(hook, command, values, timeout).await;
        let failed = !r.ok();
        runs.push(r);
        if failed && stop_on_failure {
            break;
        }
    }
    runs
}

async fn run_one(hook: &str, command: &str, values: &Values, timeout: Duration) -> HookRun {
    let began = Instant::now();
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(render(command, values))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for (name, value) in &values.0 {
        cmd.env(format!("ORCH_{}", name.to_ascii_uppercase()), value);
    }
    let done = |exit_code, timed_out, output: String| HookRun {
        hook: hook.to_string(),
        command: command.to_string(),
        exit_code,
        timed_out,
        millis: u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
        output,
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return done(None, false, format!("could not start sh: {e}")),
    };
    let pgid = child.id().map(|p| p as i32);
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    // Both pipes at once: a hook that fills one while orch waits on the other would
    // otherwise block until its timeout.
    let read = async {
        let (mut a, b) = tokio::join!(drain(out.as_mut()), drain(err.as_mut()));
        a.extend(b);
        a
    };
    let waited = tokio::time::timeout(timeout, async {
        let output = read.await;
        let status = child.wait().await;
        (status, output)
    })
    .await;
    match waited {
        Ok((status, output)) => {
            let text =
                String::from_utf8_lossy(&output[..output.len().min(OUTPUT_KEPT)]).into_owned();
            done(status.ok().and_then(|s| s.code()), false, text)
        }
        Err(_) => {
            if let Some(pgid) = pgid {
                // SAFETY: kill(2) on the process group this hook's shell leads.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
            done(None, true, format!("killed after {timeout:?}"))
        }
    }
}

/// Everything a pipe says until it closes.
async fn drain(pipe: Option<&mut (impl tokio::io::AsyncRead + Unpin)>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(p) = pipe {
        let _ = p.read_to_end(&mut buf).await;
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_shell_quoted_and_braces_escaped() {
        let mut v = Values::default();
        v.set("failed", "db1")
            .set("reason", "it's $(rm -rf /) dead");
        assert_eq!(
            render("notify {failed} {reason} {{literal}} {successor}", &v),
            r"notify 'db1' 'it'\''s $(rm -rf /) dead' {literal} ''"
        );
    }

    #[tokio::test]
    async fn hooks_run_in_order_see_their_values_and_a_failure_stops_pre_hooks() {
        let mut v = Values::default();
        v.set("cluster", "shop").set("successor", "db2");
        let runs = run(
            "pre_failover",
            &[
                "echo {cluster} $ORCH_SUCCESSOR".into(),
                "exit 3".into(),
                "echo never".into(),
            ],
            &v,
            Duration::from_secs(5),
            true,
        )
        .await;
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].output, "shop db2\n");
        assert!(runs[0].ok());
        assert_eq!(runs[1].exit_code, Some(3));
    }

    /// A hook that writes more than a pipe holds to stderr before closing stdout is not
    /// blocked by orch reading stdout first.
    #[tokio::test]
    async fn a_hook_writing_much_to_stderr_finishes() {
        let runs = run(
            "post_failover",
            &["head -c 200000 /dev/zero >&2; echo done".into()],
            &Values::default(),
            Duration::from_secs(5),
            false,
        )
        .await;
        assert!(
            runs[0].ok() && !runs[0].timed_out,
            "{:?}",
            runs[0].exit_code
        );
        assert!(runs[0].output.starts_with("done\n"));
        assert_eq!(
            runs[0].output.len(),
            OUTPUT_KEPT,
            "stdout, then stderr, cut"
        );
    }

    #[tokio::test]
    async fn a_hook_past_its_timeout_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child-ran");
        let command = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let began = Instant::now();
        let runs = run(
            "post_failover",
            &[command],
            &Values::default(),
            Duration::from_millis(300),
            false,
        )
        .await;
        assert!(runs[0].timed_out && runs[0].exit_code.is_none(), "{runs:?}");
        assert!(began.elapsed() < Duration::from_secs(2));
        // The background child was in the group: it never gets to touch the file.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "the hook's children were killed too");
    }
}
