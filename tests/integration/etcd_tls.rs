//! `orch apply --etcd` against an etcd that serves only TLS and requires client
//! certificates (`--client-cert-auth`), with certificates made here by the `openssl`
//! command: with the CA and a client certificate, apply takes the cluster's lock in etcd
//! and releases it; without the certificate, trusting another CA, or with a key that is not
//! the certificate's, it stops before changing anything and says why. etcd runs on the
//! sandbox's own loopback address and is stopped by PID.

use std::path::{Path, PathBuf};
use std::time::Duration;

use orch::sandbox::tls::{make_ca, make_signed};

use crate::sandbox::{eventually, first, orch, orch_ok};
use crate::watch::{Watch, history, ip};
use crate::watch_ha::{EtcdServer, EtcdTls, etcd_apply};
use crate::watch_http::watched;

/// In `dir`: the CA etcd trusts (`ca`), another (`other-ca`), etcd's certificate for `ip`
/// (`server`) and a client's (`client`).
fn certificates(dir: &Path, ip: &str) {
    std::fs::create_dir_all(dir).unwrap();
    make_ca(dir, "ca", "/CN=orch test ca").unwrap();
    make_ca(dir, "other-ca", "/CN=orch test other-ca").unwrap();
    // clientAuth too: with --client-cert-auth, etcd's own JSON gateway connects to its
    // gRPC server with the server certificate as its client certificate.
    make_signed(
        dir,
        "ca",
        ("server.pem", "server-key.pem"),
        "/CN=server",
        &format!(
            "subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n"
        ),
    )
    .unwrap();
    make_signed(
        dir,
        "ca",
        ("client.pem", "client-key.pem"),
        "/CN=client",
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn apply_takes_the_etcd_lock_over_tls_with_a_client_certificate_and_nothing_without() {
    let (sb, file, state) = watched("");
    let pki = sb.dir.join("pki");
    certificates(&pki, &ip(&sb, 1));
    let pem = |name: &str| -> PathBuf { pki.join(format!("{name}.pem")) };
    let etcd = EtcdServer::start_tls(
        &sb,
        EtcdTls {
            ca: pem("ca"),
            cert: pem("server"),
            key: pem("server-key"),
            client_cert: pem("client"),
            client_key: pem("client-key"),
        },
    );
    let url = etcd.url();
    assert!(url.starts_with("https://"), "{url}");
    let key = "orch/clusters/sandbox/lock";
    // Something to apply: node3's replication stopped.
    sb.root(3, "STOP SLAVE");
    let sql_running = || first(&sb.root(3, "SHOW SLAVE STATUS"), "Slave_SQL_Running");
    let before = etcd.revision();
    let (ca, other_ca, cert, key_file, server_key) = (
        pem("ca"),
        pem("other-ca"),
        pem("client"),
        pem("client-key"),
        pem("server-key"),
    );
    let base = etcd_apply(&file, &state, &url);
    let apply = |tls: &[&str]| {
        let args: Vec<&str> = base.iter().chain(tls).copied().collect();
        orch(&args)
    };
    let refused = |tls: &[&str], why: &[&str]| {
        let (code, _, err) = apply(tls);
        assert_eq!(code, 1, "{err}");
        for w in why.iter().chain(&["nothing was changed"]) {
            assert!(err.contains(w), "{tls:?}: expected {w:?} in:\n{err}");
        }
    };

    // No client certificate: etcd ends the TLS session; orch says what to give.
    refused(
        &["--etcd-cacert", path(&ca)],
        &[
            orch::httpc::CERTIFICATE_REFUSED,
            "give --etcd-cert and --etcd-key",
        ],
    );
    // Another CA than the one that signed etcd's certificate: a certificate error.
    refused(
        &[
            "--etcd-cacert",
            path(&other_ca),
            "--etcd-cert",
            path(&cert),
            "--etcd-key",
            path(&key_file),
        ],
        &[
            "invalid peer certificate",
            orch::httpc::ISSUER_UNKNOWN,
            "--etcd-cacert",
        ],
    );
    // No CA at all: etcd's private CA is not among the public roots.
    refused(
        &["--etcd-cert", path(&cert), "--etcd-key", path(&key_file)],
        &[orch::httpc::ISSUER_UNKNOWN, "with --etcd-cacert"],
    );
    // A key that is not the certificate's: refused before any connection.
    let mismatch = format!(
        "--etcd-key {}: this key does not belong to the certificate in {}",
        path(&server_key),
        path(&cert)
    );
    let (code, _, err) = apply(&[
        "--etcd-cacert",
        path(&ca),
        "--etcd-cert",
        path(&cert),
        "--etcd-key",
        path(&server_key),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("PRIVATE KEY"), "{err}");
    assert!(err.contains(&mismatch), "{err}");
    // None of them changed anything: not the replica, not etcd, not orch's history.
    assert_eq!(sql_running(), "No");
    assert_eq!(etcd.revision(), before, "etcd was written to");
    assert_eq!(history(&state)["runs"], serde_json::json!([]));

    // The CA and the client certificate: apply runs under the lock in etcd, then releases
    // it.
    let (code, out, err) = apply(&[
        "--etcd-cacert",
        path(&ca),
        "--etcd-cert",
        path(&cert),
        "--etcd-key",
        path(&key_file),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(sql_running(), "Yes");
    assert_eq!(etcd.get(key), None, "apply released its lock");
    let held = (before + 1..=etcd.revision())
        .find_map(|r| etcd.get_at(key, r))
        .expect("apply took the lock in etcd");
    assert!(held.contains(r#""apply""#), "{held}");
    drop(etcd);
    sb.down();
}

/// Certificates rotated while a watch leads, CA included, as a certificate manager does:
/// new files renamed over the ones the watch was given, then etcd restarted with its new
/// ones. The watch's next connection uses the new files: it still acts, fails a killed
/// primary over and publishes the successor.
#[test]
fn a_watch_uses_certificates_rotated_while_it_runs() {
    let (sb, file, state) = watched("");
    let host = ip(&sb, 1);
    let (first_pki, next_pki, mine) = (
        sb.dir.join("pki"),
        sb.dir.join("pki-next"),
        sb.dir.join("mine"),
    );
    certificates(&first_pki, &host);
    certificates(&next_pki, &host);
    std::fs::create_dir_all(&mine).unwrap();
    // The watch's own files, written as a rotation writes them (a rename over the old).
    let install = |pki: &Path| {
        for name in ["ca", "client", "client-key"] {
            let next = mine.join(format!("{name}.next"));
            std::fs::copy(pki.join(format!("{name}.pem")), &next).unwrap();
            std::fs::rename(&next, mine.join(format!("{name}.pem"))).unwrap();
        }
    };
    let served = |pki: &Path| EtcdTls {
        ca: pki.join("ca.pem"),
        cert: pki.join("server.pem"),
        key: pki.join("server-key.pem"),
        client_cert: pki.join("client.pem"),
        client_key: pki.join("client-key.pem"),
    };
    install(&first_pki);
    let etcd = EtcdServer::start_tls(&sb, served(&first_pki));
    let url = etcd.url();
    let (ca, cert, key) = (
        mine.join("ca.pem"),
        mine.join("client.pem"),
        mine.join("client-key.pem"),
    );
    let w = Watch::start_with(
        &file,
        &state,
        &[
            "--etcd",
            &url,
            "--etcd-cacert",
            path(&ca),
            "--etcd-cert",
            path(&cert),
            "--etcd-key",
            path(&key),
        ],
    );
    w.wait_for("leading", 15);
    let published = "orch/clusters/sandbox/primary";
    eventually("node1 published", Duration::from_secs(10), || {
        etcd.get(published) == Some(sb.address(1))
    });

    install(&next_pki);
    drop(etcd);
    let etcd = EtcdServer::start_tls(&sb, served(&next_pki));
    orch_ok(&["sandbox", "kill", sb.d(), "1"]);
    w.wait_for("failover done", 30);
    let new = (2..=3)
        .find(|&k| crate::watch::read_only(&sb, k) == "0")
        .expect("a new primary");
    eventually("the successor published", Duration::from_secs(10), || {
        etcd.get(published) == Some(sb.address(new))
    });
    assert!(w.log().contains("TLS files changed"), "{}", w.log());
    w.stop();
    drop(etcd);
    sb.down();
}
