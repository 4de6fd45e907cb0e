//! The server installation and the files of a sandbox: find the binary, build (once) and
//! copy an initialised datadir template, hand files to the `mysql` user when run as root.
//!
//! Takes the environment (PATH, cache directories, the effective uid); gives a [`Server`]
//! and ready-to-start datadirs. Does I/O: runs the binary and the install tool, reads and
//! writes files.

use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::config::{self, Flavor};

/// A server installation found on this machine.
#[derive(Clone, Debug)]
pub struct Server {
    pub flavor: Flavor,
    /// "10.11.19"
    pub version: String,
    /// The whole `--version` line, part of the template cache key.
    pub version_line: String,
    pub binary: PathBuf,
}

const SEARCH_DIRS: &[&str] = &["/usr/sbin", "/usr/libexec", "/usr/local/mysql/bin"];

fn find_program(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Finds `mariadbd` (PATH, /usr/sbin, /usr/libexec, /usr/local/mysql/bin), then `mysqld`,
/// and asks it what it is.
pub fn find_server() -> Result<Server> {
    let Some(binary) =
        find_program("mariadbd", SEARCH_DIRS).or_else(|| find_program("mysqld", SEARCH_DIRS))
    else {
        bail!(
            "no MariaDB or MySQL server found (looked for mariadbd, then mysqld, in PATH, {}); \
             install one, e.g. `apt-get install -y mariadb-server` on Debian/Ubuntu, or put \
             the directory holding mariadbd on PATH",
            SEARCH_DIRS.join(", ")
        );
    };
    let out = Command::new(&binary)
        .arg("--version")
        .output()
        .with_context(|| format!("could not run {} --version", binary.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let Some((flavor, version)) = config::parse_version(&text) else {
        bail!(
            "could not tell the version of {} from `--version`: {:?}",
            binary.display(),
            text.trim()
        );
    };
    let version_line = text
        .lines()
        .find(|l| l.contains(" Ver "))
        .unwrap_or("")
        .to_string();
    Ok(Server {
        flavor,
        version,
        version_line,
        binary,
    })
}

/// The `mysql` account a root-run sandbox hands its servers to.
#[derive(Clone, Debug)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Looks up the `mysql` user (and its groups) with getpwnam/getgrouplist.
pub fn lookup_user(name: &str) -> Result<RunAs> {
    let cname = CString::new(name)?;
    // SAFETY: getpwnam returns a pointer into static storage or NULL; we copy the fields
    // out before any other call that could overwrite it.
    let (uid, gid) = unsafe {
        let pw = libc::getpwnam(cname.as_ptr());
        if pw.is_null() {
            bail!(
                "running as root, the sandbox starts its servers as the `{name}` user, which \
                 does not exist; install the server package (it creates the user) or run orch \
                 as a normal user"
            );
        }
        ((*pw).pw_uid, (*pw).pw_gid)
    };
    let mut groups = vec![0 as libc::gid_t; 64];
    let mut n = groups.len() as libc::c_int;
    // SAFETY: groups has room for n entries; getgrouplist writes at most n and updates n.
    let rc = unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
    groups.truncate(if rc < 0 { 0 } else { n as usize });
    groups.push(gid);
    Ok(RunAs {
        name: name.to_string(),
        uid,
        gid,
        groups,
    })
}

/// Whether `user` may enter (search) the directory with metadata `meta`.
pub fn can_search(meta: &fs::Metadata, user: &RunAs) -> bool {
    let mode = meta.mode();
    if meta.uid() == user.uid {
        mode & 0o100 != 0
    } else if user.groups.contains(&meta.gid()) {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

/// Fails, naming the directory, if `user` cannot reach `dir` (every ancestor must be
/// searchable by it, or the server cannot open its datadir after dropping root).
pub fn check_reachable(dir: &Path, user: &RunAs) -> Result<()> {
    for ancestor in dir.ancestors() {
        let meta = fs::metadata(ancestor)
            .with_context(|| format!("could not inspect {}", ancestor.display()))?;
        if !can_search(&meta, user) {
            bail!(
                "the `{}` user, which runs the servers when orch runs as root, cannot reach {}: \
                 it may not enter {} (mode {:o}, owner uid {}); run `chmod o+x {}` or choose a \
                 directory under /tmp or /var/tmp",
                user.name,
                dir.display(),
                ancestor.display(),
                meta.mode() & 0o7777,
                meta.uid(),
                ancestor.display()
            );
        }
    }
    Ok(())
}

/// Recursively hands `path` to `user`.
pub fn chown_tree(path: &Path, user: &RunAs) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid))
        .with_context(|| format!("could not chown {}", path.display()))?;
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), user)?;
        }
    }
    Ok(())
}

/// Copies a directory tree (files keep their permission bits; no symlinks expected in a
/// fresh datadir, but they are copied as links if present).
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir(to).with_context(|| format!("could not create {}", to.display()))?;
    fs::set_permissions(to, fs::metadata(from)?.permissions())?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else {
            copy_sparse(&src, &dst).with_context(|| {
                format!("could not copy {} to {}", src.display(), dst.display())
            })?;
        }
    }
    Ok(())
}

/// Copies a file, leaving holes where the source has blocks of zeros. A fresh datadir is
/// two-thirds zeros (the preallocated ibdata1 and redo log); writing them is the slowest
/// part of `up` on a warm cache (page allocation in VMs), and InnoDB reads holes as zeros.
fn copy_sparse(src: &Path, dst: &Path) -> Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut input = fs::File::open(src)?;
    let meta = input.metadata()?;
    let mut output = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().all(|&b| b == 0) {
            output.seek(SeekFrom::Current(n as i64))?;
        } else {
            output.write_all(&buf[..n])?;
        }
    }
    // A trailing hole is only a seek: set_len gives the file its full size.
    output.set_len(meta.len())?;
    fs::set_permissions(dst, meta.permissions())?;
    Ok(())
}

/// Where initialised datadirs are cached: $ORCH_SANDBOX_CACHE, $XDG_CACHE_HOME/orch or
/// ~/.cache/orch.
pub fn cache_root() -> Result<PathBuf> {
    let nonempty = |v: &str| {
        std::env::var_os(v)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = nonempty("ORCH_SANDBOX_CACHE") {
        return Ok(dir);
    }
    if let Some(dir) = nonempty("XDG_CACHE_HOME") {
        return Ok(dir.join("orch"));
    }
    match nonempty("HOME") {
        Some(home) => Ok(home.join(".cache").join("orch")),
        None => bail!("no cache directory: set ORCH_SANDBOX_CACHE (or HOME)"),
    }
}

/// Bump when the way templates are made changes, so old caches are not reused.
const TEMPLATE_FORMAT: u32 = 1;

/// The cache key of a server's template: readable flavor and version, plus a hash of the
/// binary path and the full version line (two installs of one version may differ).
pub fn template_key(server: &Server) -> String {
    let material = format!(
        "{TEMPLATE_FORMAT}\0{}\0{}\0{}\0{}",
        server.binary.display(),
        server.version_line,
        config::INNODB_BUFFER_POOL_SIZE,
        config::INNODB_LOG_FILE_SIZE
    );
    let hash = config::fnv1a(material.as_bytes());
    let flavor = match server.flavor {
        Flavor::Mariadb => "mariadb",
        Flavor::Mysql => "mysql",
    };
    format!("{flavor}-{}-{:08x}", server.version, hash as u32)
}

/// Returns the initialised datadir template for `server`, building it if needed.
/// It is built in a temporary directory next to its final place and renamed into place:
/// a rename is atomic, so a parallel `up` either sees a whole template or builds its own
/// (and the loser of the rename race throws its copy away).
pub fn template(server: &Server, run_as_root: bool) -> Result<(PathBuf, bool)> {
    let root = cache_root()?.join("templates");
    let final_dir = root.join(template_key(server));
    if final_dir.join("mysql").is_dir() {
        return Ok((final_dir, false));
    }
    fs::create_dir_all(&root)
        .with_context(|| format!("could not create the template cache {}", root.display()))?;
    let tmp = root.join(format!(
        ".building-{}-{}",
        std::process::id(),
        &random_password()?[..8]
    ));
    fs::create_dir(&tmp).with_context(|| format!("could not create {}", tmp.display()))?;
    let datadir = tmp.join("data");
    let built =
        initialise(server, &datadir, &tmp.join("install.log"), run_as_root).and_then(|()| {
            match fs::rename(&datadir, &final_dir) {
                Ok(()) => Ok(()),
                // Another `up` finished first: use its template.
                Err(_) if final_dir.join("mysql").is_dir() => Ok(()),
                Err(err) => Err(err).with_context(|| {
                    format!("could not move the new template to {}", final_dir.display())
                }),
            }
        });
    let _ = fs::remove_dir_all(&tmp);
    built?;
    Ok((final_dir, true))
}

/// Creates a fresh datadir with the system tables and `root@localhost` without a password.
fn initialise(server: &Server, datadir: &Path, log: &Path, run_as_root: bool) -> Result<()> {
    // A private tmpdir: bootstrap servers running at once (parallel `up`s on a cold cache)
    // collide on their temporary tables in a shared /tmp, and one of them fails with
    // "Unknown table 'mysql.tmp_user_sys'" (seen with 6 concurrent mariadb-install-db).
    let tmpdir = datadir.with_file_name("tmp");
    fs::create_dir_all(&tmpdir)?;
    let mut cmd = match server.flavor {
        Flavor::Mariadb => {
            let dir = server.binary.parent().unwrap_or(Path::new("/"));
            let basedir = dir.parent().unwrap_or(Path::new("/"));
            let extra = [
                dir.to_path_buf(),
                basedir.join("bin"),
                basedir.join("scripts"),
            ];
            let extra: Vec<&str> = extra.iter().filter_map(|p| p.to_str()).collect();
            let Some(tool) = find_program("mariadb-install-db", &extra)
                .or_else(|| find_program("mysql_install_db", &extra))
            else {
                bail!(
                    "found {} but not mariadb-install-db next to it or on PATH; install the \
                     full server package (`apt-get install -y mariadb-server`)",
                    server.binary.display()
                );
            };
            let mut cmd = Command::new(tool);
            // --no-defaults: ignore /etc/mysql. normal auth: root@localhost with an empty
            // password instead of unix_socket auth, so orch (as any OS user) can log in
            // over the socket. --skip-name-resolve: no root@<hostname> account baked in.
            cmd.arg("--no-defaults")
                .arg(format!("--basedir={}", basedir.display()))
                .arg(format!("--tmpdir={}", tmpdir.display()))
                .arg(format!("--datadir={}", datadir.display()))
                .arg("--auth-root-authentication-method=normal")
                .arg("--skip-test-db")
                .arg("--skip-name-resolve")
                // Passed through to the bootstrap server: the template's redo log then has
                // the size every instance runs with.
                .arg(format!(
                    "--innodb-log-file-size={}",
                    config::INNODB_LOG_FILE_SIZE
                ))
                .arg(format!(
                    "--innodb-buffer-pool-size={}",
                    config::INNODB_BUFFER_POOL_SIZE
                ));
            if run_as_root {
                // The template stays root's (copies are chowned to mysql); the bootstrap
                // server refuses root unless told explicitly.
                cmd.arg("--user=root");
            }
            cmd
        }
        Flavor::Mysql => {
            // UNTESTED against a real MySQL: --initialize-insecure creates root@localhost
            // without a password. No binlog during initialisation, so the template holds no
            // (anonymous) transactions.
            let mut cmd = Command::new(&server.binary);
            cmd.arg("--no-defaults")
                .arg("--initialize-insecure")
                .arg(format!("--tmpdir={}", tmpdir.display()))
                .arg(format!("--datadir={}", datadir.display()))
                .arg("--skip-log-bin")
                .arg(format!(
                    "--innodb-buffer-pool-size={}",
                    config::INNODB_BUFFER_POOL_SIZE
                ));
            if run_as_root {
                cmd.arg("--user=root");
            }
            cmd
        }
    };
    let out = fs::File::create(log)?;
    let status = cmd
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .with_context(|| format!("could not run {:?}", cmd.get_program()))?;
    if !status.success() {
        // The tool's closing advice fills its last lines; the cause is an ERROR line.
        let text = fs::read_to_string(log).unwrap_or_default();
        let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
        bail!(
            "initialising a {} {} datadir failed ({status}):\n{}\n...\n{}",
            server.flavor.label(),
            server.version,
            errors.join("\n"),
            super::process::tail(log, 8)
        );
    }
    Ok(())
}

/// Makes the datadir of one instance from the template.
pub fn make_datadir(server: &Server, template: &Path, datadir: &Path) -> Result<()> {
    copy_tree(template, datadir)?;
    if server.flavor == Flavor::Mysql {
        // MySQL keeps server_uuid in auto.cnf: copies of one template would all share it,
        // and GTID replication between servers with one uuid silently skips transactions.
        // Without the file each server generates its own uuid at first start.
        let _ = fs::remove_file(datadir.join("auto.cnf"));
    }
    Ok(())
}

/// A random password: 18 bytes from /dev/urandom, hex-encoded.
pub fn random_password() -> Result<String> {
    let mut bytes = [0u8; 18];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("could not read /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes a secret readable by its owner only (created with mode 0600, never wider).
pub fn write_secret(path: &Path, secret: &str) -> Result<()> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("could not create {}", path.display()))?;
    writeln!(f, "{secret}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_tree_copies_everything() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        fs::create_dir_all(a.join("mysql/sub")).unwrap();
        fs::write(a.join("ibdata1"), b"x".repeat(5000)).unwrap();
        fs::write(a.join("mysql/sub/t.frm"), b"frm").unwrap();
        // Zeros in the middle and at the end (holes in the copy) read back as zeros.
        let mut sparse = vec![0u8; 300_000];
        sparse[100] = 1;
        sparse[200_000] = 2;
        fs::write(a.join("ib_logfile0"), &sparse).unwrap();
        fs::set_permissions(a.join("mysql"), fs::Permissions::from_mode(0o700)).unwrap();
        let b = dir.path().join("b");
        copy_tree(&a, &b).unwrap();
        assert_eq!(fs::read(b.join("ibdata1")).unwrap(), b"x".repeat(5000));
        assert_eq!(fs::read(b.join("mysql/sub/t.frm")).unwrap(), b"frm");
        assert_eq!(fs::read(b.join("ib_logfile0")).unwrap(), sparse);
        assert_eq!(fs::metadata(b.join("mysql")).unwrap().mode() & 0o777, 0o700);
        // Refuses to copy over an existing directory.
        assert!(copy_tree(&a, &b).is_err());
    }

    #[test]
    fn secrets_are_private_and_random() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        let pw = random_password().unwrap();
        assert_eq!(pw.len(), 36);
        assert_ne!(pw, random_password().unwrap());
        write_secret(&p, &pw).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&p).unwrap(), format!("{pw}\n"));
        assert!(write_secret(&p, "again").is_err(), "never overwrites");
    }

    #[test]
    fn search_permission_by_owner_group_other() {
        let dir = tempfile::tempdir().unwrap();
        let meta = |mode| {
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(mode)).unwrap();
            fs::metadata(dir.path()).unwrap()
        };
        let owner = fs::metadata(dir.path()).unwrap();
        let me = RunAs {
            name: "me".into(),
            uid: owner.uid(),
            gid: 1,
            groups: vec![1],
        };
        let group = RunAs {
            name: "g".into(),
            uid: u32::MAX - 1,
            gid: owner.gid(),
            groups: vec![owner.gid()],
        };
        let other = RunAs {
            name: "o".into(),
            uid: u32::MAX - 1,
            gid: u32::MAX - 1,
            groups: vec![],
        };
        let cases = [
            (0o700, &me, true),
            (0o700, &group, false),
            (0o700, &other, false),
            (0o710, &group, true),
            (0o710, &other, false),
            (0o701, &other, true),
            (0o601, &me, false),
        ];
        for (mode, user, want) in cases {
            assert_eq!(
                can_search(&meta(mode), user),
                want,
                "{mode:o} {}",
                user.name
            );
        }
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let inner = dir.path().join("x");
        fs::create_dir(&inner).unwrap();
        let err = check_reachable(&inner, &other).unwrap_err().to_string();
        assert!(
            err.contains(&format!("may not enter {}", dir.path().display())),
            "{err}"
        );
        assert!(err.contains("chmod o+x"), "{err}");
    }

    #[test]
    fn template_keys_name_flavor_and_version() {
        let server = Server {
            flavor: Flavor::Mariadb,
            version: "10.11.19".into(),
            version_line: "mariadbd  Ver 10.11.19-MariaDB".into(),
            binary: "/usr/sbin/mariadbd".into(),
        };
        let key = template_key(&server);
        assert!(key.starts_with("mariadb-10.11.19-"), "{key}");
        let other = Server {
            binary: "/opt/mariadbd".into(),
            ..server
        };
        assert_ne!(template_key(&other), key);
    }
}
