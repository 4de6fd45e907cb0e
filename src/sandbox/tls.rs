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
    std::fs::write(
        dir.join("server.ext"),
        format!(
            "subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )?;
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
            "-days",
            "3650",
            "-subj",
            "/CN=orch sandbox CA",
        ],
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server-key.pem",
            "-out",
            "server.csr",
            "-subj",
            "/CN=orch sandbox server",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-out",
            "server-cert.pem",
            "-days",
            "3650",
            "-extfile",
            "server.ext",
        ],
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .context("`openssl` is needed for --tls: install it (apt-get install -y openssl)")?;
        if !out.status.success() {
            bail!(
                "openssl {} failed: {}",
                args[0],
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}
