//! Server processes: start one detached, look one up in `/proc`, signal it, wait for it.
//!
//! Takes pids and the (binary, config) pair an instance was started with; gives the
//! process's state. Does I/O (`/proc`, `kill(2)`, `fork/exec`). Every signal goes through
//! [`signal`], which first proves from `/proc/PID/cmdline` that the pid is still the server
//! this sandbox started: pids are reused, and a stale pid must never hit someone else's
//! process.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::config::{cmdline_matches, proc_stat_state};

/// What `/proc` says about a recorded pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proc {
    /// Our server, running (or sleeping: any state but stopped).
    Running,
    /// Our server, stopped by SIGSTOP: TCP connects still complete, nothing answers.
    Frozen,
    /// No such process, a zombie (dead; some init systems never reap), or a process that
    /// is not our server (the pid was reused).
    Gone,
    /// The pid is alive but belongs to another program.
    Reused,
}

/// Looks up `pid` and checks it is `binary --defaults-file=<config>`.
pub fn inspect(pid: i32, binary: &Path, config: &Path) -> Proc {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Proc::Gone;
    };
    let state = proc_stat_state(&stat);
    // A zombie's cmdline is empty; it is dead either way.
    if matches!(state, Some('Z' | 'X') | None) {
        return Proc::Gone;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !cmdline_matches(&cmdline, binary, config) {
        return Proc::Reused;
    }
    match state {
        Some('T' | 't') => Proc::Frozen,
        _ => Proc::Running,
    }
}

/// The command line of `pid`, for error messages.
pub fn cmdline_text(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let text: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    text.join(" ")
}

/// Sends `sig` to `pid` only if it is still `binary --defaults-file=<config>`.
/// `what` names the instance in errors ("instance 2 (node2) of /tmp/sb").
pub fn signal(pid: i32, binary: &Path, config: &Path, sig: libc::c_int, what: &str) -> Result<()> {
    match inspect(pid, binary, config) {
        Proc::Running | Proc::Frozen => {}
        Proc::Gone => bail!("{what} is not running (pid {pid} is gone); nothing to signal"),
        Proc::Reused => bail!(
            "refusing to signal pid {pid}: it is no longer {what}'s server but `{}` (the pid \
             was reused); {what} is not running",
            cmdline_text(pid)
        ),
    }
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, sig) } != 0 {
        let err = std::io::Error::last_os_error();
        return Err(err).with_context(|| format!("could not signal {what} (pid {pid})"));
    }
    Ok(())
}

/// Waits until `pid` is no longer our server; false on timeout.
pub fn wait_gone(pid: i32, binary: &Path, config: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if matches!(inspect(pid, binary, config), Proc::Gone | Proc::Reused) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `binary --defaults-file=<config> [--user=USER]` detached: its own process group
/// (a Ctrl-C or a test harness killing orch's group does not reach it), stdin from
/// /dev/null, stdout and stderr appended to the instance's error log (so nothing holds
/// orch's pipes open after orch exits).
pub fn spawn_server(
    binary: &Path,
    config: &Path,
    run_as: Option<&str>,
    log: &Path,
) -> Result<Child> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("could not open {}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(binary);
    // --defaults-file must come first: the server rejects it anywhere else.
    cmd.arg(format!("--defaults-file={}", config.display()));
    if let Some(user) = run_as {
        // mariadbd refuses to run as root; it drops to this user after opening nothing
        // but its config, so the datadir and node directory must belong to that user.
        cmd.arg(format!("--user={user}"));
    }
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    cmd.spawn()
        .with_context(|| format!("could not run {}", binary.display()))
}

/// The last `lines` lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("(could not read {}: {err})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_foreign_process_is_never_signalled() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        // Between fork and exec the child's command line is still empty (or ours).
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cmdline_text(pid).contains("sleep 30") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let bin = Path::new("/usr/sbin/mariadbd");
        let cnf = Path::new("/nonexistent/node1/my.cnf");
        assert_eq!(inspect(pid, bin, cnf), Proc::Reused);
        let err = signal(pid, bin, cnf, libc::SIGKILL, "instance 1 (node1)").unwrap_err();
        assert!(err.to_string().contains("refusing to signal"), "{err}");
        assert!(err.to_string().contains("sleep 30"), "{err}");
        // Still alive.
        assert_eq!(child.try_wait().unwrap(), None);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(inspect(pid, bin, cnf), Proc::Gone);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&p, 2), "c\nd");
        assert_eq!(tail(&p, 10), "a\nb\nc\nd");
        assert!(tail(&dir.path().join("none"), 2).contains("could not read"));
    }
}
