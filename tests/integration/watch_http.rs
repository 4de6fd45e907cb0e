//! `orch watch` in production on real MariaDB: the HTTP API refuses actions without the
//! right token and changes nothing; its failover and downtimes act; `/metrics` parses with
//! a Prometheus parser and follows a dead replica; a webhook receiver on loopback gets the
//! events of a real failover, signed, and one behind a private CA gets them over HTTPS
//! with its `ca_file`; the live page shows the tree and a killed replica
//! within 2 s in headless Chromium; an invalid edit of the policy is refused and a valid
//! one takes effect; after a failover the API, the page's document, `/metrics` and
//! `orch status --state` show the same problems, judged against the new primary. Each test
//! waits for conditions with deadlines and stops its watcher, receivers and servers even
//! when it fails.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sandbox::{Sandbox, eventually, orch, orch_ok};
use crate::watch::{Watch, history, ip, read_only, topology, write_policy};

/// One HTTP/1.1 request (`Connection: close`); the status and the body.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Read by Content-Length (or chunks): some servers keep the connection open anyway.
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line[9..12].parse().unwrap();
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let h = line.trim_end().to_ascii_lowercase();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.strip_prefix("content-length:") {
            length = Some(v.trim().parse::<usize>().unwrap());
        }
        chunked |= h.starts_with("transfer-encoding:") && h.contains("chunked");
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let n = usize::from_str_radix(line.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        reader.read_exact(&mut body).unwrap();
    } else {
        reader.read_to_end(&mut body).unwrap();
    }
    (status, String::from_utf8(body).unwrap())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// A file only its owner may read (as orch requires of secrets) in the sandbox's directory.
pub(crate) fn private_file(sb: &Sandbox, name: &str, text: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = sb.dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.to_str().unwrap().to_string()
}

/// A token file in the sandbox; gives its path and the token.
pub(crate) fn token_file(sb: &Sandbox) -> (String, String) {
    let token = "t0ken-for-the-integration-tests-only".to_string();
    let path = private_file(sb, "api.token", &format!("{token}\n"));
    (path, token)
}

/// The address watch listens on: the sandbox's own loopback address (unique per test).
fn listen(sb: &Sandbox) -> String {
    format!("{}:18080", ip(sb, 1))
}

fn wait_ready(addr: &str) {
    eventually("watch ready", Duration::from_secs(20), || {
        TcpStream::connect(addr).is_ok() && http(addr, "GET", "/ready", None, None).0 == 200
    });
}

/// A 3-node sandbox, its topology file with the fast policy (plus `extra`), and a state
/// directory.
pub(crate) fn watched(extra: &str) -> (Sandbox, String, String) {
    let sb = Sandbox::up(&["-n", "3"]);
    let policy = write_policy(&sb, extra);
    let file = topology(&sb, 3, &policy);
    let state = sb.dir.join("state").to_str().unwrap().to_string();
    (sb, file, state)
}

pub(crate) fn recoveries(state: &str) -> usize {
    history(state)["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "recovery" && r["outcome"] == "succeeded")
        .count()
}

#[test]
fn api_actions_need_the_token_and_change_nothing_without_it() {
    let (sb, file, state) = watched("");
    let addr = listen(&sb);
    // Without a token file, actions are disabled.
    let watch = Watch::start_with(&file, &state, &["--listen", &addr]);
    wait_ready(&addr);
    let (code, body) = http(&addr, "POST", "/api/v1/clusters/sandbox/ack", None, None);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("--api-token-file"), "{body}");
    watch.stop();

    let (token_path, token) = token_file(&sb);
    let watch = Watch::start_with(
        &file,
        &state,
        &["--listen", &addr, "--api-token-file", &token_path],
    );
    wait_ready(&addr);
    // Reading is open; the snapshot has the view the page draws.
    let (code, body) = http(&addr, "GET", "/api/v1/clusters/sandbox", None, None);
    assert_eq!(code, 200, "{body}");
    let doc = json(&body);
    let roles: Vec<&str> = doc["view"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["primary", "replica", "replica"], "{body}");
    assert_eq!(doc["view"][1]["parent"], "node1");
    let (code, body) = http(&addr, "GET", "/api/v1/clusters", None, None);
    assert_eq!(
        (code, json(&body)["clusters"][0]["primary"].clone()),
        (200, "node1".into())
    );
    let (code, _) = http(&addr, "GET", "/api/v1/clusters/nope", None, None);
    assert_eq!(code, 404);
    let (code, body) = http(
        &addr,
        "GET",
        "/api/v1/clusters/sandbox/problems",
        None,
        None,
    );
    assert_eq!(
        (code, json(&body)["problems"].clone()),
        (200, serde_json::json!([]))
    );
    let (code, body) = http(&addr, "GET", "/api/v1/leader", None, None);
    assert_eq!(
        (code, json(&body)["this_process"].clone()),
        (200, true.into())
    );

    // Missing or wrong token: 401, and nothing changes.
    let failover = r#"{"to": "node2", "force": true}"#;
    let downtime = r#"{"cluster": "sandbox", "host": "node3", "for": "1h", "reason": "test"}"#;
    for t in [None, Some("wrong"), Some("")] {
        for (method, path, body) in [
            ("POST", "/api/v1/clusters/sandbox/failover", Some(failover)),
            ("POST", "/api/v1/downtimes", Some(downtime)),
            ("DELETE", "/api/v1/downtimes?cluster=sandbox", None),
            ("POST", "/api/v1/clusters/sandbox/ack", None),
        ] {
            let (code, text) = http(&addr, method, path, t, body);
            assert_eq!(code, 401, "{method} {path} with {t:?}: {text}");
        }
    }
    assert_eq!(read_only(&sb, 1), "0", "node1 is still the primary");
    assert_eq!(read_only(&sb, 2), "1");
    assert_eq!(recoveries(&state), 0);
    let (_, body) = http(&addr, "GET", "/api/v1/downtimes", None, None);
    assert_eq!(json(&body)["downtimes"], serde_json::json!([]), "{body}");

    // With the token: a downtime comes and goes, a bad one is refused.
    let (code, body) = http(
        &addr,
        "POST",
        "/api/v1/downtimes",
        Some(&token),
        Some(downtime),
    );
    assert_eq!(code, 201, "{body}");
    let (_, body) = http(&addr, "GET", "/api/v1/downtimes", None, None);
    assert_eq!(json(&body)["downtimes"][0]["host"], "node3", "{body}");
    let bad = r#"{"cluster": "sandbox", "host": "node9", "for": "1h", "reason": "x"}"#;
    let (code, body) = http(&addr, "POST", "/api/v1/downtimes", Some(&token), Some(bad));
    assert_eq!(code, 404, "{body}");
    // The one duration parser: a repeated unit is refused; longer than 30 days only with
    // "force" (then recorded, and ended below with the rest).
    for (length, why) in [
        ("1h1h", "the unit `h` appears twice"),
        ("106751991167d", "longer than 30d"),
    ] {
        let long = format!(
            r#"{{"cluster": "sandbox", "host": "node2", "for": "{length}", "reason": "x"}}"#
        );
        let (code, body) = http(
            &addr,
            "POST",
            "/api/v1/downtimes",
            Some(&token),
            Some(&long),
        );
        assert_eq!(code, 400, "{body}");
        assert!(body.contains(why), "{body}");
    }
    let forced = r#"{"cluster": "sandbox", "for": "45d", "reason": "x", "force": true}"#;
    let (code, body) = http(
        &addr,
        "POST",
        "/api/v1/downtimes",
        Some(&token),
        Some(forced),
    );
    assert_eq!(code, 201, "{body}");
    let (code, body) = http(
        &addr,
        "DELETE",
        "/api/v1/downtimes?cluster=sandbox",
        Some(&token),
        None,
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = http(
        &addr,
        "DELETE",
        "/api/v1/downtimes?cluster=sandbox&host=node3",
        Some(&token),
        None,
    );
    assert_eq!(
        (code, json(&body)["ended"].clone()),
        (200, 1.into()),
        "{body}"
    );

    // A failover of a live primary without force is refused and changes nothing.
    let (code, body) = http(
        &addr,
        "POST",
        "/api/v1/clusters/sandbox/failover",
        Some(&token),
        Some(r#"{"to": "node2"}"#),
    );
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("answers"), "{body}");
    assert_eq!(read_only(&sb, 1), "0");
    // Forced: node1 fenced, node2 promoted, recorded with its steps.
    let (code, body) = http(
        &addr,
        "POST",
        "/api/v1/clusters/sandbox/failover",
        Some(&token),
        Some(failover),
    );
    assert_eq!(code, 200, "{body}");
    let done = json(&body);
    assert_eq!(done["failover"]["outcome"], "succeeded", "{body}");
    assert_eq!(read_only(&sb, 1), "1");
    assert_eq!(read_only(&sb, 2), "0");
    let run = done["failover"]["run"].as_i64().unwrap();
    let (code, body) = http(&addr, "GET", &format!("/api/v1/history/{run}"), None, None);
    assert_eq!(code, 200, "{body}");
    let steps = json(&body)["run"]["steps"].as_array().unwrap().len();
    assert!(steps > 3, "{body}");
    eventually(
        "the API shows the new primary",
        Duration::from_secs(10),
        || {
            let (_, body) = http(&addr, "GET", "/api/v1/clusters", None, None);
            json(&body)["clusters"][0]["primary"] == "node2"
        },
    );
    watch.stop();
    sb.down();
}

/// `(name, labels, value)` of every sample.
fn samples(text: &str) -> Vec<(String, std::collections::BTreeMap<String, String>, f64)> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("a Prometheus text exposition");
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            };
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (s.metric, labels, value)
        })
        .collect()
}

fn sample(text: &str, metric: &str, label: (&str, &str)) -> Option<f64> {
    samples(text)
        .into_iter()
        .find(|(m, l, _)| m == metric && l.get(label.0).map(String::as_str) == Some(label.1))
        .map(|(_, _, v)| v)
}

#[test]
fn metrics_parse_and_follow_a_dead_replica() {
    let (sb, file, state) = watched("");
    let addr = listen(&sb);
    let (token_path, token) = token_file(&sb);
    let watch = Watch::start_with(
        &file,
        &state,
        &[
            "--listen",
            &addr,
            "--api-token-file",
            &token_path,
            "--api-auth",
            "all",
        ],
    );
    wait_ready(&addr);
    // --api-auth all: reads need the token too, /health and /ready never.
    assert_eq!(http(&addr, "GET", "/metrics", None, None).0, 401);
    assert_eq!(http(&addr, "GET", "/api/v1/clusters", None, None).0, 401);
    assert_eq!(http(&addr, "GET", "/health", None, None).0, 200);
    let scrape = || {
        let (code, body) = http(&addr, "GET", "/metrics", Some(&token), None);
        assert_eq!(code, 200, "{body}");
        body
    };
    let text = scrape();
    assert_eq!(
        sample(&text, "orch_server_up", ("host", "node3")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "orch_primary", ("host", "node1")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "orch_replication_sql_running", ("host", "node2")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "orch_replication_lag_seconds", ("host", "node2")),
        Some(0.0)
    );
    assert!(
        samples(&text)
            .iter()
            .any(|(m, _, _)| m == "orch_poll_duration_seconds_count"),
        "{text}"
    );
    orch_ok(&["sandbox", "kill", sb.d(), "3"]);
    eventually("node3 down in /metrics", Duration::from_secs(10), || {
        let text = scrape();
        sample(&text, "orch_server_up", ("host", "node3")) == Some(0.0)
            && sample(&text, "orch_problems", ("code", "unreachable")) == Some(1.0)
            && sample(&text, "orch_replication_lag_seconds", ("host", "node3")).is_none()
    });
    watch.stop();
    sb.down();
}

/// After a failover every view judges the cluster against the new primary, the same way:
/// the API's problems, the cluster document the page draws, `orch_problems` in /metrics
/// and `orch status FILE --state DIR` all show the failover drift and the former primary
/// that is gone, never a dead primary that alerts forever, a writable replica or replicas
/// on the wrong source. `orch plan` shows the drift as a warning and does not switch back.
#[test]
fn after_a_failover_every_view_judges_against_the_new_primary() {
    let (sb, file, state) = watched("");
    let addr = listen(&sb);
    let watch = Watch::start_with(&file, &state, &["--listen", &addr]);
    wait_ready(&addr);
    orch_ok(&["sandbox", "kill", sb.d(), "1"]);
    watch.wait_for("failover done", 30);
    let want: BTreeSet<(String, String)> = [("failover-drift", "node1"), ("unreachable", "node1")]
        .into_iter()
        .map(|(c, h)| (c.to_string(), h.to_string()))
        .collect();
    let want_codes: BTreeSet<String> = want.iter().map(|(c, _)| c.clone()).collect();
    let problems = |doc: &serde_json::Value| -> BTreeSet<(String, String)> {
        doc["problems"]
            .as_array()
            .unwrap_or_else(|| panic!("no problems in {doc}"))
            .iter()
            .map(|p| {
                (
                    p["code"].as_str().unwrap().to_string(),
                    p["host"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let api = || {
        let (code, body) = http(
            &addr,
            "GET",
            "/api/v1/clusters/sandbox/problems",
            None,
            None,
        );
        assert_eq!(code, 200, "{body}");
        problems(&json(&body))
    };
    // The poll after the failover publishes; the one that made it may still be showing.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = api();
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the API's problems after the failover: {got:?}\n{}",
            watch.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The page's document.
    let (_, body) = http(&addr, "GET", "/api/v1/clusters/sandbox", None, None);
    let doc = json(&body);
    assert_eq!(problems(&doc), want, "{body}");
    assert!(
        doc["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["code"] == "failover-drift" && p["severity"] == "warning"),
        "{body}"
    );
    // /metrics: orch_problems counts exactly those codes.
    let (_, text) = http(&addr, "GET", "/metrics", None, None);
    let counted: BTreeSet<String> = samples(&text)
        .into_iter()
        .filter(|(m, _, v)| m == "orch_problems" && *v > 0.0)
        .map(|(_, l, _)| l["code"].clone())
        .collect();
    assert_eq!(counted, want_codes, "{text}");
    // orch status with the same state directory: the same judgement.
    let (code, out, err) = orch(&["status", &file, "--state", &state, "--format", "json"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(problems(&json(&out)), want, "{out}");
    // orch plan: the drift as a warning, blocked from switching back; no dead primary.
    let (_, out, err) = orch(&["plan", &file, "--format", "json"]);
    let plan = json(&out);
    let codes = |key: &str| -> Vec<String> {
        plan[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key} in {out}\n{err}"))
            .iter()
            .map(|w| w["code"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        codes("warnings").contains(&"failover-drift".to_string()),
        "{out}"
    );
    assert!(
        codes("blocked").contains(&"failover-drift".to_string()),
        "{out}"
    );
    assert!(!out.contains("dead-primary"), "{out}");
    watch.stop();
    sb.down();
}

/// A webhook receiver on loopback: answers 204 and keeps each request's headers and body.
struct Receiver {
    addr: String,
    got: Arc<Requests>,
}

impl Receiver {
    fn start() -> Receiver {
        Receiver::serve("127.0.0.1:0", serve_requests)
    }

    /// HTTPS with `cert` and `key` (PEM files).
    fn start_tls(addr: &str, cert: &std::path::Path, key: &std::path::Path) -> Receiver {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
        );
        Receiver::serve(addr, move |tcp, keep| {
            let conn =
                rustls::ServerConnection::new(config.clone()).map_err(std::io::Error::other)?;
            serve_requests(rustls::StreamOwned::new(conn, tcp), keep)
        })
    }

    fn serve(
        addr: &str,
        serve: impl Fn(TcpStream, &Requests) -> std::io::Result<()> + Send + 'static,
    ) -> Receiver {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let got = Arc::new(Mutex::new(Vec::new()));
        let keep = got.clone();
        // Ends with the test process; serves one connection at a time (orch delivers one
        // event at a time per URL).
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = serve(stream, &keep);
            }
        });
        Receiver { addr, got }
    }

    fn events(&self) -> Vec<Request> {
        self.got.lock().unwrap().clone()
    }

    /// A downtime set on node3 by another process (`orch downtime`) reaches this receiver
    /// as a `downtime_added` event.
    fn gets_a_downtime_set_by_another_process(&self, file: &str, state: &str) {
        orch_ok(&[
            "downtime",
            file,
            "node3",
            "--for",
            "1h",
            "--reason",
            "disk swap",
            "--state",
            state,
        ]);
        eventually("the downtime's event", Duration::from_secs(10), || {
            self.events()
                .iter()
                .any(|(_, b)| b.contains("\"downtime_added\"") && b.contains("disk swap"))
        });
    }
}

/// A request's headers (names in lower case) and body.
type Request = (Vec<(String, String)>, String);
type Requests = Mutex<Vec<Request>>;

/// Reads requests off one (keep-alive) connection until it closes.
fn serve_requests<S: Read + Write>(stream: S, keep: &Requests) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        keep.lock()
            .unwrap()
            .push((headers, String::from_utf8(body).unwrap()));
        let out = reader.get_mut();
        out.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")?;
        out.flush()?;
    }
}

#[test]
fn a_webhook_receiver_gets_a_real_failover_signed() {
    let receiver = Receiver::start();
    let secret = "webhook-secret-for-tests";
    let (sb, file, state) = watched(&format!(
        "hooks:\n  webhooks:\n    - url: http://{}/orch\n      secret_file: webhook.secret\n",
        receiver.addr
    ));
    private_file(&sb, "webhook.secret", secret);
    let watch = Watch::start(&file, &state);
    // A downtime set by another process is an event too (node3's: no bearing on node1).
    receiver.gets_a_downtime_set_by_another_process(&file, &state);
    orch_ok(&["sandbox", "kill", sb.d(), "1"]);
    watch.wait_for("failover done", 20);
    eventually("the recovery's last event", Duration::from_secs(10), || {
        receiver
            .events()
            .iter()
            .any(|(_, b)| b.contains("\"recovery_finished\""))
    });
    let events = receiver.events();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut kinds = Vec::new();
    for (headers, body) in &events {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {name} header: {headers:?}"))
        };
        let signature = header("x-orch-signature-256");
        let hex = signature.strip_prefix("sha256=").expect("sha256=HEX");
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        ring::hmac::verify(&key, body.as_bytes(), &bytes).expect("the signature verifies");
        let event = json(body);
        assert_eq!(event["schema"], 1, "{body}");
        assert_eq!(event["cluster"], "sandbox", "{body}");
        assert_eq!(header("x-orch-event"), event["kind"].as_str().unwrap());
        kinds.push(event["kind"].as_str().unwrap().to_string());
        assert!(!body.contains(secret));
    }
    // In order: the detection, the recovery with its steps, its end.
    let at = |k: &str| {
        kinds
            .iter()
            .position(|x| x == k)
            .unwrap_or_else(|| panic!("no {k}: {kinds:?}"))
    };
    assert!(at("detection") < at("recovery_started"), "{kinds:?}");
    assert!(at("recovery_started") < at("recovery_step"), "{kinds:?}");
    assert!(at("recovery_step") < at("recovery_finished"), "{kinds:?}");
    let finished = events
        .iter()
        .map(|(_, b)| json(b))
        .find(|e| e["kind"] == "recovery_finished")
        .unwrap();
    let successor = finished["data"]["successor"].as_str().unwrap().to_string();
    assert!(successor == "node2" || successor == "node3", "{finished}");
    assert!(finished["run"].as_i64().is_some(), "{finished}");
    watch.stop();
    sb.down();
}

/// chromedriver on a loopback port, stopped by PID on drop.
struct Driver {
    child: Child,
    addr: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver session in headless Chromium; deleted on drop.
struct Browser {
    driver: Driver,
    session: String,
}

impl Browser {
    fn start() -> Browser {
        let exe = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromedriver is missing: scripts/install-deps.sh installs chromium-driver");
        // Port 0: it picks a free one and says which.
        let mut child = Command::new(exe)
            .args(["--port=0", "--allowed-ips=127.0.0.1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut driver = Driver {
            child,
            addr: String::new(),
        };
        let mut line = String::new();
        while out.read_line(&mut line).unwrap() > 0 {
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                let port = rest.trim().trim_end_matches('.');
                driver.addr = format!("127.0.0.1:{port}");
                break;
            }
            line.clear();
        }
        assert!(!driver.addr.is_empty(), "chromedriver did not say its port");
        // Its later output is not read: keep the pipe drained.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        eventually("chromedriver up", Duration::from_secs(20), || {
            http(&driver.addr, "GET", "/status", None, None).0 == 200
        });
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900"]}}}});
        let (code, body) = http(
            &driver.addr,
            "POST",
            "/session",
            None,
            Some(&caps.to_string()),
        );
        assert_eq!(code, 200, "{body}");
        let session = json(&body)["value"]["sessionId"]
            .as_str()
            .unwrap()
            .to_string();
        Browser { driver, session }
    }

    fn call(&self, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
        let path = format!("/session/{}{path}", self.session);
        let body = (method == "POST").then(|| body.to_string());
        let (code, text) = http(&self.driver.addr, method, &path, None, body.as_deref());
        assert_eq!(code, 200, "{method} {path}: {text}");
        json(&text)["value"].clone()
    }

    fn script(&self, js: &str) -> serde_json::Value {
        self.call(
            "POST",
            "/execute/sync",
            serde_json::json!({"script": js, "args": []}),
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let _ = http(&self.driver.addr, "DELETE", &path, None, None);
    }
}

#[test]
fn the_live_page_shows_the_tree_and_a_killed_replica_within_2s() {
    let (sb, file, state) = watched("");
    let addr = listen(&sb);
    let watch = Watch::start_with(&file, &state, &["--listen", &addr]);
    wait_ready(&addr);
    let browser = Browser::start();
    let began = Instant::now();
    browser.call(
        "POST",
        "/url",
        serde_json::json!({"url": format!("http://{addr}/?refresh=250")}),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while browser.script("return document.body.dataset.ready || ''") != "1" {
        assert!(Instant::now() < deadline, "the page never rendered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let load = began.elapsed();
    let tree = browser.script(
        "return [...document.querySelectorAll('[data-cluster=sandbox] [data-host]')].map(e => \
         [e.dataset.host, e.dataset.role, e.dataset.state, e.dataset.parent, \
          e.parentElement.closest('[data-host]')?.dataset.host || ''])",
    );
    assert_eq!(
        tree,
        serde_json::json!([
            ["node1", "primary", "reachable", "", ""],
            ["node2", "replica", "reachable", "node1", "node1"],
            ["node3", "replica", "reachable", "node1", "node1"],
        ]),
        "the tree: host, role, state, parent, the element it is nested in"
    );
    orch_ok(&["sandbox", "kill", sb.d(), "3"]);
    let killed = Instant::now();
    loop {
        let shown = browser.script(
            "const e = document.querySelector('[data-host=node3]'); \
             return e ? [e.dataset.state, e.dataset.role] : []",
        );
        if shown == serde_json::json!(["unreachable", "unreachable"]) {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(2),
            "node3 not shown as unreachable within 2 s: {shown}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let shown_after = killed.elapsed();
    let problem = browser.script(
        "return !!document.querySelector('[data-problem=unreachable][data-problem-host=node3]')",
    );
    assert_eq!(problem, true);
    // The screenshot stays as a test artifact (target/test-artifacts/live-page.png).
    let png = browser.call("GET", "/screenshot", serde_json::json!(null));
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("live-page.png"), base64(png.as_str().unwrap())).unwrap();
    eprintln!("live page: loaded in {load:?}, killed replica shown after {shown_after:?}");
    drop(browser);
    watch.stop();
    sb.down();
}

/// Decodes standard base64 (the WebDriver screenshot).
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            _ => 63,
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    for chunk in clean.chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let n = chunk
            .iter()
            .map(|&c| if c == b'=' { 0 } else { value(c) })
            .fold(0u32, |acc, v| acc << 6 | v);
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}

#[test]
fn an_invalid_policy_edit_is_refused_and_a_valid_one_takes_effect() {
    let (sb, file, state) = watched("");
    // write_policy's file.
    let policy_path = sb.dir.join("fast.yaml");
    let watch = Watch::start_with(&file, &state, &["--log-format", "json"]);
    let good = std::fs::read_to_string(&policy_path).unwrap();
    // Invalid: refused, recorded, and the running policy stays.
    std::fs::write(&policy_path, format!("{good}  automatic: maybe\n")).unwrap();
    watch.wait_for("reload refused", 10);
    assert!(watch.log().contains("automatic"), "{}", watch.log());
    let runs = history(&state);
    let reload = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "reload")
        .cloned()
        .unwrap_or_else(|| panic!("no reload run: {runs}"));
    assert_eq!(reload["outcome"], "failed", "{reload}");
    // Valid (written as editors do: a new file renamed over the old one): it applies.
    let next = sb.dir.join("fast.yaml.tmp");
    std::fs::write(&next, format!("{good}  automatic: false\n")).unwrap();
    std::fs::rename(&next, &policy_path).unwrap();
    watch.wait_for("reloaded", 10);
    // It took effect: a dead primary is now only reported.
    orch_ok(&["sandbox", "kill", sb.d(), "1"]);
    watch.wait_for("failover.automatic is false", 20);
    assert_eq!(read_only(&sb, 2), "1");
    assert_eq!(read_only(&sb, 3), "1");
    assert_eq!(recoveries(&state), 0);
    let runs = history(&state);
    assert!(
        runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "reload" && r["outcome"] == "succeeded"),
        "{runs}"
    );
    let collected = watch.log.clone();
    assert_eq!(watch.stop(), 0);
    // --log-format json: one object per line, each with its message; never a password.
    eventually("the last log line", Duration::from_secs(5), || {
        collected.lock().unwrap().contains("stopped")
    });
    let log = collected.lock().unwrap().clone();
    let password = std::fs::read_to_string(sb.dir.join("secrets/orch.password")).unwrap();
    assert!(!log.contains(password.trim()), "a password in the log");
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["message"].is_string() && v["level"].is_string(), "{line}");
    }
    assert!(log.contains(r#""cluster":"sandbox""#), "{log}");
    sb.down();
}

/// A receiver behind a private CA: with `ca_file` its events arrive over HTTPS; the same
/// receiver without it is refused by the certificate check (said in the log, nothing
/// sent); a `ca_file` that holds no certificate stops the watch before it starts.
#[test]
fn a_webhook_behind_a_private_ca_gets_events_over_https_with_its_ca_file() {
    use orch::sandbox::tls::{make_ca, make_signed};
    let pki = tempfile::tempdir().unwrap();
    let d = pki.path();
    make_ca(d, "ca", "/CN=orch test webhook ca").unwrap();
    let server =
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n";
    make_signed(
        d,
        "ca",
        ("server.pem", "server-key.pem"),
        "/CN=hooks",
        server,
    )
    .unwrap();
    let (cert, key) = (d.join("server.pem"), d.join("server-key.pem"));
    let private = Receiver::start_tls("127.0.0.1:0", &cert, &key);
    let public = Receiver::start_tls("127.0.0.1:0", &cert, &key);
    let ca = d.join("ca.pem");
    let (sb, file, state) = watched(&format!(
        "hooks:\n  webhooks:\n    - url: https://{}/orch\n      ca_file: {}\n    - https://{}/orch\n",
        private.addr,
        ca.display(),
        public.addr
    ));
    let watch = Watch::start(&file, &state);
    private.gets_a_downtime_set_by_another_process(&file, &state);
    watch.wait_for(orch::httpc::ISSUER_UNKNOWN, 10);
    assert!(public.events().is_empty(), "{:?}", public.events());
    watch.stop();

    // Not a certificate: refused at start, the file and the key named.
    let bogus = sb.dir.join("bogus-ca.pem");
    std::fs::write(&bogus, "not a certificate\n").unwrap();
    write_policy(
        &sb,
        &format!(
            "hooks:\n  webhooks:\n    - url: https://{}/orch\n      ca_file: bogus-ca.pem\n",
            private.addr
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(["watch", &file, "--state", &state])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("orch watch started with a ca_file that holds no certificate");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "hooks.webhooks[0].ca_file {}: no certificate in it",
            bogus.display()
        )),
        "{err}"
    );
    sb.down();
}
