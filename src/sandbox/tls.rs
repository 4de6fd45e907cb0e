//! Certificates for `orch sandbox up --tls`: a throw-away CA and one server certificate
//! valid for every instance's IP address, made with the `openssl` command.
//!
//! Takes the sandbox's TLS directory and the instances' IPs, gives `ca.pem`,
//! `server-cert.pem` and `server-key.pem` there. Runs `openssl` (I/O).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The lines that turn TLS on in an instance's `my.cnf`.
pub fn my_cnf_lines(tls_dir: &Path) -> String {
    let p = |f: &str| tls_dir.join(f).display().to_string();
    format!(
        "ssl-ca = {}\nssl-cert = {}\nssl-key = {}\n",
        p("ca.pem"),
        p("server-cert.pem"),
        p("server-key.pem")
    )
}

/// Makes the CA and the server certificate (P-256 keys: fast to generate, accepted by
/// MariaDB's OpenSSL and by rustls). The subjectAltName lists every instance IP, so
/// `verify_identity` checks the address orch connects to.
pub fn make_certs(dir: &Path, ips: &[Ipv4Addr]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let san = ips
        .iter()
        .map(|ip| format!("IP:{ip}"))
        .collect::<Vec<_>>()
        .join(",");
    make_ca(dir, "ca", "/CN=orch sandbox CA")?;
    make_signed(
        dir,
        "ca",
        ("server-cert.pem", "server-key.pem"),
        "/CN=orch sandbox server",
        &format!(
            "subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
}

/// A self-signed CA in `dir`: `NAME.pem` and `NAME-key.pem`.
pub fn make_ca(dir: &Path, name: &str, subject: &str) -> Result<()> {
    let (cert, key) = (format!("{name}.pem"), format!("{name}-key.pem"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "3650",
            "-subj",
            subject,
        ],
    )
}

/// A certificate and its key in `dir` (`files`: their names), signed by the CA `ca` of
/// [`make_ca`], with the X.509 extensions `ext` (openssl extfile lines).
pub fn make_signed(
    dir: &Path,
    ca: &str,
    files: (&str, &str),
    subject: &str,
    ext: &str,
) -> Result<()> {
    let (cert, key) = files;
    let (csr, extfile) = (format!("{cert}.csr"), format!("{cert}.ext"));
    let (ca_cert, ca_key) = (format!("{ca}.pem"), format!("{ca}-key.pem"));
    std::fs::write(dir.join(&extfile), ext)?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            key,
            "-out",
            &csr,
            "-subj",
            subject,
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_cert,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            cert,
            "-days",
            "3650",
            "-extfile",
            &extfile,
        ],
    )
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("`openssl` is needed: install it (apt-get install -y openssl)")?;
    if !out.status.success() {
        bail!(
            "openssl {} failed: {}",
            args[0],
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
