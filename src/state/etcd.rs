//! A small etcd v3 client over etcd's JSON gateway (`POST /v3/...`, keys and values in
//! base64, 64-bit numbers as strings), on the HTTP/1.1 client orch already has
//! ([`crate::httpc`]): what several watchers need to elect one leader (a lease kept alive,
//! a key created only if absent) and to write only while they lead (a transaction that
//! compares the leader key's create revision: the fencing token). The gRPC client crates
//! need protoc and a gRPC stack to build; these few calls do not.
//!
//! Endpoints are tried in order from the one that answered last: a member that does not
//! answer is skipped. With a user, a token from `auth/authenticate` is sent with every
//! call and renewed when etcd refuses it. I/O: TCP (or TLS) to etcd.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::Method;
use hyper::body::Bytes;
use hyper::header::HeaderValue;
use serde_json::{Value, json};

use crate::httpc::{
    CERTIFICATE_REFUSED, Call, Conn, Endpoint, ISSUER_UNKNOWN, TlsError, TlsFile, TlsFiles,
    TlsReloader, base64, base64_decode, exchange,
};
use crate::spec::secret::Secret;

/// One request to etcd: connect, send, the whole answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// A key as etcd holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    pub value: Vec<u8>,
    /// The revision that created it: a leader key's fencing token.
    pub create_revision: i64,
    pub lease: i64,
}

/// How to reach etcd.
pub struct EtcdOptions {
    /// `http(s)://host:port`, one per member.
    pub urls: Vec<String>,
    pub user: Option<(String, Secret)>,
    /// For https members: the CA that signed their certificates (public roots without
    /// one) and the client certificate etcd's `--client-cert-auth` asks for.
    pub tls: TlsFiles,
}

pub struct Etcd {
    endpoints: Vec<Endpoint>,
    tls: Option<TlsReloader>,
    /// Whether `tls` has a CA of its own and shows a client certificate: what to suggest
    /// when a handshake fails.
    ca: bool,
    client_cert: bool,
    /// One kept connection per endpoint; calls are one at a time (they are few).
    conns: tokio::sync::Mutex<Vec<Option<Conn>>>,
    /// The endpoint that answered last.
    current: AtomicUsize,
    user: Option<(String, Secret)>,
    token: std::sync::Mutex<Option<String>>,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<&str> = self.endpoints.iter().map(|e| e.label.as_str()).collect();
        write!(f, "Etcd({})", urls.join(","))
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// The flag that names a TLS file (etcdctl's names, prefixed).
fn flag(which: TlsFile) -> &'static str {
    match which {
        TlsFile::Ca => "--etcd-cacert",
        TlsFile::Cert => "--etcd-cert",
        TlsFile::Key => "--etcd-key",
    }
}

fn b64(text: &str) -> String {
    base64(text.as_bytes())
}

impl Etcd {
    pub fn new(options: EtcdOptions) -> anyhow::Result<Etcd> {
        let mut endpoints = Vec::new();
        for url in &options.urls {
            let ep = Endpoint::parse(url)
                .map_err(|e| anyhow::anyhow!("--etcd {}: {e}", crate::httpc::url_label(url)))?;
            endpoints.push(ep);
        }
        anyhow::ensure!(!endpoints.is_empty(), "--etcd: give at least one URL");
        let tls = if endpoints.iter().any(|e| e.server_name.is_some()) {
            Some(TlsReloader::new(options.tls.clone()).map_err(|e| match &e {
                TlsError::File { which, .. } => anyhow::anyhow!("{} {e}", flag(*which)),
                TlsError::Config(_) => anyhow::anyhow!("etcd: {e}"),
            })?)
        } else {
            // Files given for TLS that no member speaks: a typo in the URL (http for
            // https) would otherwise send the password and the locks in the clear.
            let given: Vec<&str> = [
                options.tls.ca.as_ref().map(|_| flag(TlsFile::Ca)),
                options.tls.client.as_ref().map(|_| flag(TlsFile::Cert)),
            ]
            .into_iter()
            .flatten()
            .collect();
            anyhow::ensure!(
                given.is_empty(),
                "{} given, but no --etcd URL is https://: these files are for members that serve TLS (https://HOST:2379)",
                given.join(" and ")
            );
            None
        };
        let n = endpoints.len();
        Ok(Etcd {
            endpoints,
            tls,
            ca: options.tls.ca.is_some(),
            client_cert: options.tls.client.is_some(),
            conns: tokio::sync::Mutex::new((0..n).map(|_| None).collect()),
            current: AtomicUsize::new(0),
            user: options.user,
            token: std::sync::Mutex::new(None),
        })
    }

    /// One gateway call (`rpc` like `kv/range`), on the first member that answers.
    pub async fn call(&self, rpc: &str, body: Value) -> Result<Value, String> {
        if self.user.is_some() && self.token.lock().expect("not poisoned").is_none() {
            self.authenticate().await?;
        }
        match self.call_once(rpc, &body).await {
            Err(e) if self.user.is_some() && e.contains("token") => {
                // Tokens expire (etcd's --auth-token-ttl): once more with a new one.
                self.authenticate().await?;
                self.call_once(rpc, &body).await
            }
            r => r,
        }
    }

    async fn authenticate(&self) -> Result<(), String> {
        let (user, password) = self.user.as_ref().expect("called with a user");
        let answer = self
            .call_once(
                "auth/authenticate",
                &json!({"name": user, "password": password.expose()}),
            )
            .await?;
        let token = answer["token"]
            .as_str()
            .ok_or("etcd authentication gave no token")?;
        *self.token.lock().expect("not poisoned") = Some(token.to_string());
        Ok(())
    }

    async fn call_once(&self, rpc: &str, body: &Value) -> Result<Value, String> {
        let path = format!("/v3/{rpc}");
        let body = Bytes::from(body.to_string());
        let mut headers = Vec::new();
        if rpc != "auth/authenticate"
            && let Some(t) = self.token.lock().expect("not poisoned").clone()
        {
            let mut v = HeaderValue::from_str(&t).map_err(|_| "a bad etcd token")?;
            v.set_sensitive(true);
            headers.push(("authorization", v));
        }
        let mut conns = self.conns.lock().await;
        // Certificates rotated since the last connection are used by the next.
        let tls = self.tls.as_ref().map(TlsReloader::connector);
        let n = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for k in 0..n {
            let i = (first + k) % n;
            let ep = &self.endpoints[i];
            let call = Call {
                method: Method::POST,
                path: &path,
                headers: &headers,
                body: body.clone(),
            };
            match exchange(&mut conns[i], ep, tls.as_ref(), call, CALL_TIMEOUT).await {
                Ok((status, answer)) => {
                    self.current.store(i, Ordering::Relaxed);
                    let v: Value = serde_json::from_slice(&answer)
                        .map_err(|e| format!("etcd {}: not JSON ({e})", ep.label))?;
                    if !status.is_success() {
                        let message = v["error"].as_str().or(v["message"].as_str()).unwrap_or("");
                        let hint = if message.contains("invalid user ID or password") {
                            " (check --etcd-user and --etcd-password-file)"
                        } else if message.contains("permission denied") {
                            " (the etcd user needs readwrite on orch's keys: etcdctl role grant-permission ROLE --prefix=true readwrite PREFIX, PREFIX being --etcd-prefix)"
                        } else {
                            ""
                        };
                        return Err(format!("etcd {}: {status}: {message}{hint}", ep.label));
                    }
                    return Ok(v);
                }
                Err(e) => errors.push(format!("{}: {e}", ep.label)),
            }
        }
        let mut error = format!("no etcd member answered ({})", errors.join("; "));
        if errors.iter().any(|e| e.contains(ISSUER_UNKNOWN)) {
            error.push_str(if self.ca {
                "; is --etcd-cacert the CA that signed etcd's --cert-file?"
            } else {
                "; give the CA that signed etcd's --cert-file with --etcd-cacert"
            });
        }
        if errors.iter().any(|e| e.contains(CERTIFICATE_REFUSED)) {
            error.push_str(if self.client_cert {
                "; is --etcd-cert signed by a CA in etcd's --trusted-ca-file?"
            } else {
                "; etcd asks for a client certificate (its --client-cert-auth): give --etcd-cert and --etcd-key"
            });
        }
        Err(error)
    }

    /// A lease of `ttl`; its id.
    pub async fn grant(&self, ttl: Duration) -> Result<i64, String> {
        let v = self
            .call(
                "lease/grant",
                json!({"TTL": ttl.as_secs().max(1).to_string()}),
            )
            .await?;
        match int(&v["ID"]) {
            0 => Err(format!("etcd granted no lease: {v}")),
            id => Ok(id),
        }
    }

    /// Renews a lease; the seconds it has left (0: it is gone).
    pub async fn keepalive(&self, lease: i64) -> Result<i64, String> {
        let v = self
            .call("lease/keepalive", json!({"ID": lease.to_string()}))
            .await?;
        Ok(int(&v["result"]["TTL"]))
    }

    /// Ends a lease: the keys attached to it go at once.
    pub async fn revoke(&self, lease: i64) -> Result<(), String> {
        self.call("lease/revoke", json!({"ID": lease.to_string()}))
            .await
            .map(|_| ())
    }

    fn kv(v: &Value) -> Option<Kv> {
        let kv = v.get("kvs")?.as_array()?.first()?;
        Some(Kv {
            value: base64_decode(kv["value"].as_str().unwrap_or("")).unwrap_or_default(),
            create_revision: int(&kv["create_revision"]),
            lease: int(&kv["lease"]),
        })
    }

    pub async fn get(&self, key: &str) -> Result<Option<Kv>, String> {
        let v = self.call("kv/range", json!({"key": b64(key)})).await?;
        Ok(Etcd::kv(&v))
    }

    /// Every key under `prefix`, with its value.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let v = self
            .call(
                "kv/range",
                json!({"key": b64(prefix), "range_end": base64(&end)}),
            )
            .await?;
        let kvs = v["kvs"].as_array().cloned().unwrap_or_default();
        Ok(kvs
            .iter()
            .map(|kv| {
                let key = base64_decode(kv["key"].as_str().unwrap_or("")).unwrap_or_default();
                let value = base64_decode(kv["value"].as_str().unwrap_or("")).unwrap_or_default();
                (String::from_utf8_lossy(&key).into_owned(), value)
            })
            .collect())
    }

    /// Puts `key` on a lease of its own that ends after `ttl`: the key goes with it.
    pub async fn put_expiring(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), String> {
        let lease = self.grant(ttl).await?;
        self.call(
            "kv/put",
            json!({"key": b64(key), "value": base64(value), "lease": lease.to_string()}),
        )
        .await
        .map(|_| ())
    }

    /// Deletes `key`: whether it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, String> {
        let v = self
            .call("kv/deleterange", json!({"key": b64(key)}))
            .await?;
        Ok(int(&v["deleted"]) > 0)
    }

    pub async fn put(&self, key: &str, value: &[u8]) -> Result<(), String> {
        self.call("kv/put", json!({"key": b64(key), "value": base64(value)}))
            .await
            .map(|_| ())
    }

    /// Creates `key` (attached to `lease`) unless it exists: Ok(its create revision), or
    /// Err(the key as it is).
    pub async fn create(
        &self,
        key: &str,
        value: &[u8],
        lease: i64,
    ) -> Result<Result<i64, Kv>, String> {
        let k = b64(key);
        let v = self
            .call(
                "kv/txn",
                json!({
                    "compare": [{"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
                    "success": [{"request_put": {"key": k, "value": base64(value), "lease": lease.to_string()}},
                                {"request_range": {"key": k}}],
                    "failure": [{"request_range": {"key": k}}],
                }),
            )
            .await?;
        let succeeded = v["succeeded"].as_bool().unwrap_or(false);
        let responses = v["responses"].as_array().cloned().unwrap_or_default();
        let range = responses
            .iter()
            .find_map(|r| r.get("response_range"))
            .and_then(Etcd::kv)
            .ok_or_else(|| format!("etcd's answer has no key: {v}"))?;
        Ok(if succeeded {
            Ok(range.create_revision)
        } else {
            Err(range)
        })
    }

    /// Whether `guard` still exists with `revision` (a leader still leads); with `then`,
    /// those writes are made in the same transaction, only if it does.
    pub async fn while_held(
        &self,
        guard: &str,
        revision: i64,
        then: &[Op<'_>],
    ) -> Result<bool, String> {
        self.txn_if(&[(guard, revision)], then).await
    }

    /// `then` in one transaction, only if every `(key, create revision)` of `held` still
    /// holds: whether they did.
    pub async fn txn_if(&self, held: &[(&str, i64)], then: &[Op<'_>]) -> Result<bool, String> {
        let compare: Vec<Value> = held
            .iter()
            .map(|(k, r)| {
                json!({"key": b64(k), "target": "CREATE", "result": "EQUAL", "create_revision": r.to_string()})
            })
            .collect();
        let success: Vec<Value> = then
            .iter()
            .map(|op| match op {
                Op::Put(k, v) => json!({"request_put": {"key": b64(k), "value": base64(v)}}),
                Op::Delete(k) => json!({"request_delete_range": {"key": b64(k)}}),
            })
            .collect();
        let v = self
            .call("kv/txn", json!({"compare": compare, "success": success}))
            .await?;
        Ok(v["succeeded"].as_bool().unwrap_or(false))
    }
}

/// A write inside a transaction.
pub enum Op<'a> {
    Put(&'a str, &'a [u8]),
    Delete(&'a str),
}

/// A cluster lock in etcd (`PREFIX/clusters/CLUSTER/lock`, [`super::shared::Shared::cluster_key`]), shared by `orch apply --etcd`
/// and the watch leader: a key created only if absent, on a lease of its own kept alive
/// while it is held. A holder that dies leaves it for at most [`LOCK_TTL`]; dropped
/// without [`EtcdLock::release`], it stops being renewed and expires the same way.
pub struct EtcdLock {
    etcd: std::sync::Arc<Etcd>,
    lease: i64,
    key: String,
    /// The key's create revision: the fencing token.
    revision: i64,
    /// Until when it holds by the clock: the last renewal's send time + the TTL etcd
    /// gave − [`LEASE_MARGIN`] (etcd cannot let the lease expire before then).
    valid_until: std::sync::Arc<std::sync::Mutex<tokio::time::Instant>>,
    renew: tokio::task::JoinHandle<()>,
}

/// How long an etcd lock outlives a holder that stopped renewing it.
pub const LOCK_TTL: Duration = Duration::from_secs(15);

/// A lease's holder stops counting on it this long before it could expire.
pub const LEASE_MARGIN: Duration = Duration::from_millis(500);

/// Until when a lease renewed (or granted) at `sent` for `ttl` holds by the clock.
pub fn lease_valid_until(sent: tokio::time::Instant, ttl: Duration) -> tokio::time::Instant {
    (sent + ttl).checked_sub(LEASE_MARGIN).unwrap_or(sent)
}

impl EtcdLock {
    /// Takes `key` for `who`; Err says who holds it (or why etcd could not be asked).
    pub async fn acquire(
        etcd: std::sync::Arc<Etcd>,
        key: &str,
        who: &Value,
    ) -> Result<EtcdLock, String> {
        EtcdLock::acquire_as(etcd, key, who, None).await
    }

    /// [`EtcdLock::acquire`] by the watch leader, `leader` being the leader key and the
    /// create revision it won with: a lock left by a former leader (a watcher other than
    /// `who`: only a leader takes it, and a former one can no longer act, its every step
    /// being fenced) is taken over at once rather than waited out for [`LOCK_TTL`].
    pub async fn acquire_as(
        etcd: std::sync::Arc<Etcd>,
        key: &str,
        who: &Value,
        leader: Option<(&str, i64)>,
    ) -> Result<EtcdLock, String> {
        let sent = tokio::time::Instant::now();
        let lease = etcd.grant(LOCK_TTL).await?;
        let value = who.to_string();
        let mut attempt = etcd.create(key, value.as_bytes(), lease).await;
        if let (Ok(Err(holder)), Some(leader)) = (&attempt, leader) {
            let held: Value = serde_json::from_slice(&holder.value).unwrap_or(Value::Null);
            if held.get("watch").is_some() && held != *who {
                let gone = etcd
                    .txn_if(&[leader, (key, holder.create_revision)], &[Op::Delete(key)])
                    .await;
                if gone == Ok(true) {
                    tracing::info!(
                        "took over the cluster lock {key} left by the former leader {held}"
                    );
                    attempt = etcd.create(key, value.as_bytes(), lease).await;
                }
            }
        }
        let revision = match attempt {
            Ok(Ok(revision)) => revision,
            Ok(Err(holder)) => {
                let _ = etcd.revoke(lease).await;
                return Err(format!(
                    "the cluster is locked in etcd ({key}) by {}",
                    String::from_utf8_lossy(&holder.value)
                ));
            }
            Err(e) => {
                let _ = etcd.revoke(lease).await;
                return Err(e);
            }
        };
        let valid_until =
            std::sync::Arc::new(std::sync::Mutex::new(lease_valid_until(sent, LOCK_TTL)));
        let (renewer, until) = (etcd.clone(), valid_until.clone());
        let renew = tokio::spawn(async move {
            loop {
                tokio::time::sleep(LOCK_TTL / 3).await;
                let sent = tokio::time::Instant::now();
                match renewer.keepalive(lease).await {
                    Ok(ttl) if ttl > 0 => {
                        let mut u = until.lock().unwrap_or_else(|e| e.into_inner());
                        *u = lease_valid_until(sent, Duration::from_secs(ttl as u64));
                    }
                    Ok(_) => {
                        tracing::warn!(
                            "the etcd lock's lease expired: no further step runs under it"
                        );
                        return;
                    }
                    Err(e) => tracing::warn!("renewing the etcd lock: {e}"),
                }
            }
        });
        Ok(EtcdLock {
            etcd,
            lease,
            key: key.to_string(),
            revision,
            valid_until,
            renew,
        })
    }

    /// Releases it now (the lease and the key go; a lease that ran out is gone already).
    pub async fn release(&self) -> Result<(), String> {
        self.renew.abort();
        match self.etcd.revoke(self.lease).await {
            Err(e) if e.contains("requested lease not found") => Ok(()),
            r => r,
        }
    }
}

/// A step under the lock: it still holds, in etcd (the key has the create revision this
/// process made it with) and by the clock.
impl crate::executor::fenced::Fence for EtcdLock {
    async fn check(&self) -> Result<(), String> {
        self.holds()?;
        match self.etcd.while_held(&self.key, self.revision, &[]).await {
            // A process paused during the call may have lost it meanwhile.
            Ok(true) => self.holds(),
            Ok(false) => Err(format!(
                "the cluster lock in etcd ({}) is no longer this process's (its lease ran out)",
                self.key
            )),
            Err(e) => Err(format!("the cluster lock in etcd not confirmed: {e}")),
        }
    }

    fn holds(&self) -> Result<(), String> {
        let until = *self.valid_until.lock().unwrap_or_else(|e| e.into_inner());
        if tokio::time::Instant::now() < until {
            Ok(())
        } else {
            Err(format!(
                "the cluster lock in etcd ({}) ran out: its lease was not renewed in time",
                self.key
            ))
        }
    }
}

impl Drop for EtcdLock {
    fn drop(&mut self) {
        self.renew.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::httpc::ClientCert;
    use std::path::{Path, PathBuf};

    /// A PEM section of `label` around base64 that is no DER at all.
    fn junk(label: &str, body: &[u8]) -> String {
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            base64(body)
        )
    }

    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn new(urls: &[&str], tls: TlsFiles) -> Result<Etcd, String> {
        Etcd::new(EtcdOptions {
            urls: urls.iter().map(|u| u.to_string()).collect(),
            user: None,
            tls,
        })
        .map_err(|e| e.to_string())
    }

    const HTTPS: &[&str] = &["https://127.0.0.1:2379"];

    #[test]
    fn tls_files_that_cannot_be_used_are_named_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let missing = d.join("missing.pem");
        let no_cert = file(d, "empty.pem", "not PEM at all\n");
        let not_a_ca = file(d, "junk-ca.pem", &junk("CERTIFICATE", b"no DER"));
        let cert = file(d, "client.pem", &junk("CERTIFICATE", b"no DER"));
        let secret = b"do-not-print-this-key-material";
        let bad_key = file(d, "client-key.pem", &junk("PRIVATE KEY", secret));
        let ca = |p: &PathBuf| TlsFiles {
            ca: Some(p.clone()),
            client: None,
        };
        let client = |cert: &PathBuf, key: &PathBuf| TlsFiles {
            ca: None,
            client: Some(ClientCert {
                cert: cert.clone(),
                key: key.clone(),
            }),
        };
        let cases: Vec<(TlsFiles, String)> = vec![
            (
                ca(&missing),
                format!("--etcd-cacert {}: cannot read it", missing.display()),
            ),
            (
                ca(&no_cert),
                format!("--etcd-cacert {}: no certificate in it", no_cert.display()),
            ),
            (
                ca(&not_a_ca),
                format!(
                    "--etcd-cacert {}: certificate 1 cannot be used as a CA",
                    not_a_ca.display()
                ),
            ),
            (
                client(&missing, &bad_key),
                format!("--etcd-cert {}: cannot read it", missing.display()),
            ),
            (
                client(&no_cert, &bad_key),
                format!("--etcd-cert {}: no certificate in it", no_cert.display()),
            ),
            (
                client(&cert, &missing),
                format!("--etcd-key {}: cannot read it", missing.display()),
            ),
            (
                client(&cert, &cert),
                format!("--etcd-key {}: no private key in it", cert.display()),
            ),
            (
                client(&cert, &bad_key),
                format!("--etcd-key {}: not a key orch can use", bad_key.display()),
            ),
        ];
        for (tls, expected) in cases {
            let err = new(HTTPS, tls).unwrap_err();
            assert!(err.starts_with(&expected), "{err}\nexpected: {expected}");
            assert!(
                !err.contains(&base64(secret)) && !err.contains("do-not-print"),
                "{err}"
            );
        }
    }

    #[test]
    fn tls_files_without_an_https_member_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pem = file(dir.path(), "ca.pem", &junk("CERTIFICATE", b"no DER"));
        let client = Some(ClientCert {
            cert: pem.clone(),
            key: pem.clone(),
        });
        for (tls, flags) in [
            (
                TlsFiles {
                    ca: Some(pem.clone()),
                    client: None,
                },
                "--etcd-cacert given",
            ),
            (
                TlsFiles {
                    ca: None,
                    client: client.clone(),
                },
                "--etcd-cert given",
            ),
            (
                TlsFiles {
                    ca: Some(pem.clone()),
                    client,
                },
                "--etcd-cacert and --etcd-cert given",
            ),
        ] {
            let err = new(&["http://127.0.0.1:2379", "http://127.0.0.2:2379"], tls).unwrap_err();
            assert!(
                err.starts_with(flags) && err.contains("no --etcd URL is https://"),
                "{err}"
            );
        }
        // Without them, http is fine; with an https member, the public roots serve.
        new(&["http://127.0.0.1:2379"], TlsFiles::default()).unwrap();
        new(HTTPS, TlsFiles::default()).unwrap();
    }
}
