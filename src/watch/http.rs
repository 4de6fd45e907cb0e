//! `orch watch --listen ADDR`: the HTTP API (JSON, schema 1), the live topology page and
//! `/metrics`. Reads come from the [`Hub`] the watchers fill after every poll and from the
//! state store; a failover is sent to the cluster's watcher, which runs it between polls
//! under the cluster lock like any recovery. I/O: the listening socket, the state store.
//!
//! | endpoint | what |
//! |---|---|
//! | `GET /` | the live topology page (one embedded file) |
//! | `GET /health` | 200 while the process runs |
//! | `GET /ready` | 200 once every cluster was observed, else 503 and which are not |
//! | `GET /metrics` | Prometheus text exposition |
//! | `GET /api/v1/clusters` | each cluster: primary, hosts, problems, observed_at |
//! | `GET /api/v1/clusters/{cluster}` | the `status --format json` document + `observed_at`, `view` |
//! | `GET /api/v1/clusters/{cluster}/problems` | its problems |
//! | `GET /api/v1/history[?cluster=&limit=]` | runs, newest first (`history --format json`) |
//! | `GET /api/v1/history/{id}` | one run with its steps (`history ID --format json`) |
//! | `GET /api/v1/downtimes` | the downtimes in force |
//! | `GET /api/v1/leader` | the process that acts (this one, until HA through etcd) |
//! | `POST /api/v1/clusters/{cluster}/failover` | `{"to": HOST?, "force": bool?}`: as `orch failover` |
//! | `POST /api/v1/clusters/{cluster}/ack` | clear the anti-flap block |
//! | `POST /api/v1/downtimes` | `{"cluster", "host"?, "for": "1h", "reason"}` |
//! | `DELETE /api/v1/downtimes?cluster=C[&host=H]` | end a host's (or the cluster's) downtime |
//!
//! Actions need `Authorization: Bearer TOKEN` (`--api-token-file`); without a token file
//! they answer 403 (disabled), with a missing or wrong token 401, and change nothing.
//! With `--api-auth all` every endpoint but /health and /ready needs the token too.
//! Errors are `{"error": "..."}`.

// A refusal is the response itself, built once at the check: boxing it would only add
// noise to every handler.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::hub::{Command, Hub, SCHEMA};
use crate::cli::ApiAuth;
use crate::spec::secret::Secret;
use crate::state::{RunFilter, RunId, Store, now_millis};

/// What the handlers share.
pub struct Api {
    pub hub: Arc<Hub>,
    pub store: Mutex<Store>,
    /// The bearer token actions need; None: actions are disabled.
    pub token: Option<Secret>,
    pub auth: ApiAuth,
    /// The address this process listens on (the leader's address, for HA).
    pub listen: String,
}

type Shared = State<Arc<Api>>;

/// Serves until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, api: Arc<Api>) {
    let app = router(api).into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("the HTTP server stopped: {e}");
    }
}

pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/v1/clusters", get(clusters))
        .route("/api/v1/clusters/{cluster}", get(cluster))
        .route("/api/v1/clusters/{cluster}/problems", get(problems))
        .route("/api/v1/clusters/{cluster}/failover", post(failover))
        .route("/api/v1/clusters/{cluster}/ack", post(ack))
        .route("/api/v1/history", get(history))
        .route("/api/v1/history/{id}", get(history_run))
        .route(
            "/api/v1/downtimes",
            get(downtimes).post(add_downtime).delete(end_downtime),
        )
        .route("/api/v1/leader", get(leader))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such endpoint (see GET /api/v1/clusters)",
            )
        })
        .with_state(api)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

fn ok(value: Value) -> Response {
    axum::Json(value).into_response()
}

/// An action sent to a watcher that does not lead: 307 to the leader's address (a client
/// that follows redirects repeats the request there), or 503 when nobody leads.
fn not_leader(api: &Api, uri: &axum::http::Uri) -> Option<Response> {
    let l = api.hub.leadership.as_ref()?;
    if l.is_leader() {
        return None;
    }
    let leader = l.leader();
    let listen = leader
        .as_ref()
        .and_then(|v| v["listen"].as_str())
        .filter(|a| !a.is_empty());
    let Some(listen) = listen else {
        return Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no leader now (or it serves no API): try again in a few seconds",
        ));
    };
    let location = format!(
        "http://{listen}{}",
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut r = (
        StatusCode::TEMPORARY_REDIRECT,
        axum::Json(json!({"error": "this watcher is not the leader: only the leader acts", "leader": leader})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Some(r)
}

/// An action's checks: the token, then that this process leads.
fn may_act(api: &Api, headers: &HeaderMap, uri: &axum::http::Uri) -> Result<(), Response> {
    authorize(api, headers, true)?;
    not_leader(api, uri).map_or(Ok(()), Err)
}

/// Refuses a request without the right token: `action` endpoints always need it, reads
/// only with `--api-auth all`.
fn authorize(api: &Api, headers: &HeaderMap, action: bool) -> Result<(), Response> {
    if !action && api.auth == ApiAuth::Actions {
        return Ok(());
    }
    let Some(token) = &api.token else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "actions are disabled: start orch watch with --api-token-file FILE",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Digests compared in full: the time to refuse says nothing about the token.
    let digest = |t: &str| ring::digest::digest(&ring::digest::SHA256, t.as_bytes());
    let (a, b) = (digest(given), digest(token.expose()));
    let same = a
        .as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0;
    if same {
        return Ok(());
    }
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "a valid token is required: Authorization: Bearer TOKEN (the --api-token-file of orch watch)",
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Err(r)
}

async fn page() -> Response {
    let mut r = (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("page.html"),
    )
        .into_response();
    // Everything is inline and same-origin: nothing else may load or run.
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; connect-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:",
        ),
    );
    r
}

async fn health() -> Response {
    ok(json!({"status": "ok"}))
}

async fn ready(State(api): Shared) -> Response {
    match api.hub.ready() {
        Ok(()) => ok(json!({"status": "ready"})),
        Err(waiting) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "starting", "not_observed_yet": waiting})),
        )
            .into_response(),
    }
}

async fn metrics(State(api): Shared, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&api, &headers, false) {
        return r;
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        api.hub.metrics.encode(),
    )
        .into_response()
}

async fn clusters(State(api): Shared, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&api, &headers, false) {
        return r;
    }
    ok(api.hub.clusters_json())
}

fn unknown(cluster: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no cluster {cluster} is watched here (GET /api/v1/clusters lists them)"),
    )
}

fn not_observed(cluster: &str) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("cluster {cluster} has not been observed yet"),
    )
}

async fn cluster(State(api): Shared, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Err(r) = authorize(&api, &headers, false) {
        return r;
    }
    match api.hub.cluster_json(&name) {
        None => unknown(&name),
        Some(None) => not_observed(&name),
        Some(Some(doc)) => ok(doc),
    }
}

async fn problems(State(api): Shared, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Err(r) = authorize(&api, &headers, false) {
        return r;
    }
    match api.hub.with(&name, |c| c.snapshot.clone()) {
        None => unknown(&name),
        Some(None) => not_observed(&name),
        Some(Some(s)) => ok(json!({"schema": SCHEMA, "cluster": name, "problems": s.problems})),
    }
}

#[derive(serde::Deserialize)]
struct HistoryQuery {
    cluster: Option<String>,
    limit: Option<usize>,
}

async fn history(
    State(api): Shared,
    headers: HeaderMap,
    Query(q): Query<HistoryQuery>,
) -> Response {
    if let Err(r) = authorize(&api, &headers, false) {
        return r;
    }
    let filter = RunFilter {
        cluster: q.cluster,
        since: None,
        limit: Some(q.limit.unwrap_or(50).min(1000)),
    };
    let runs = api
        .store
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .runs(&filter);
    match runs {
        Ok(runs) => ok(json!({"schema": SCHEMA, "runs": runs})),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn history_run(State(api): Shared, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    if let Err(r) = authorize(&api, &headers, false) {
        return r;
    }
    let run = api
        .store
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .run(RunId(id));
    match run {
        Ok(Some(run)) => ok(json!({"schema": SCHEMA, "run": run})),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no run {id}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn downtimes(State(api): Shared, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&api, &headers, false) {
        return r;
    }
    let mut all = Vec::new();
    for name in api.hub.names() {
        // With etcd, also those any process recorded there (every leader obeys them).
        let shared = match &api.hub.leadership {
            Some(l) => match l.shared.downtimes(&name).await {
                Ok(list) => list,
                Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, format!("etcd: {e}")),
            },
            None => Vec::new(),
        };
        let local = api
            .store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .downtimes(&name);
        match local {
            Ok(list) => all.extend(crate::state::Downtime::merge(list, shared)),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
    ok(json!({"schema": SCHEMA, "downtimes": all}))
}

async fn leader(State(api): Shared, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&api, &headers, false) {
        return r;
    }
    let who = crate::state::Who::current();
    let me = json!({"user": who.user, "host": who.host, "pid": who.pid, "listen": api.listen});
    match &api.hub.leadership {
        None => ok(json!({"schema": SCHEMA, "leader": me, "this_process": true, "etcd": false})),
        Some(l) => ok(json!({
            "schema": SCHEMA,
            "leader": l.leader(),
            "this_process": l.is_leader(),
            "etcd": true,
        })),
    }
}

/// A JSON body, or `{}` when there is none.
fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, Response> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(text)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("the request body: {e}")))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FailoverBody {
    to: Option<String>,
    #[serde(default)]
    force: bool,
}

async fn failover(
    State(api): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Response {
    if let Err(r) = may_act(&api, &headers, &uri) {
        return r;
    }
    let b: FailoverBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(tx) = api.hub.with(&name, |c| c.commands.clone()) else {
        return unknown(&name);
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    let command = Command::Failover {
        to: b.to,
        force: b.force,
        who: format!("the API (from {peer})"),
        reply,
    };
    if tx.send(command).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the cluster's watcher stopped",
        );
    }
    match answer.await {
        Ok(Ok(done)) => {
            let status = if done.outcome == "succeeded" {
                StatusCode::OK
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            (
                status,
                axum::Json(json!({"schema": SCHEMA, "failover": done})),
            )
                .into_response()
        }
        Ok(Err(why)) => error(StatusCode::CONFLICT, format!("{why}; nothing was changed")),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the cluster's watcher stopped",
        ),
    }
}

async fn ack(
    State(api): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = may_act(&api, &headers, &uri) {
        return r;
    }
    if api.hub.with(&name, |_| ()).is_none() {
        return unknown(&name);
    }
    // With etcd, the anti-flap record every leader reads is cleared too.
    let mut shared = false;
    if let Some(l) = &api.hub.leadership {
        match l.shared.ack(&name).await {
            Ok(existed) => shared = existed,
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, format!("etcd: {e}")),
        }
    }
    let cleared = api
        .store
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .ack_failover(&name)
        .map(|local| local || shared);
    match cleared {
        Ok(cleared) => {
            if cleared {
                api.hub.event(
                    &name,
                    "ack",
                    None,
                    &format!("anti-flap cleared through the API (from {peer})"),
                    None,
                    json!({}),
                );
            }
            ok(json!({"schema": SCHEMA, "cluster": name, "cleared": cleared}))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DowntimeBody {
    cluster: String,
    host: Option<String>,
    #[serde(rename = "for")]
    length: String,
    reason: String,
    /// Allows a downtime longer than [`crate::state::MAX_DOWNTIME`].
    #[serde(default)]
    force: bool,
}

/// The cluster is watched here and the host (if any) is one of its.
fn check_target(api: &Api, cluster: &str, host: Option<&str>) -> Result<(), Response> {
    let Some(hosts) = api.hub.with(cluster, |c| c.hosts.clone()) else {
        return Err(unknown(cluster));
    };
    if let Some(h) = host
        && !hosts.iter().any(|x| x == h)
    {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("{h}: no such host in cluster {cluster}"),
        ));
    }
    Ok(())
}

async fn add_downtime(
    State(api): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    if let Err(r) = may_act(&api, &headers, &uri) {
        return r;
    }
    let b: DowntimeBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = check_target(&api, &b.cluster, b.host.as_deref()) {
        return r;
    }
    let length = match crate::spec::decode::parse_duration(&b.length) {
        Ok(d) => match crate::state::Downtime::check_length(d, b.force, r#""force": true"#) {
            Ok(()) => d,
            Err(why) => return error(StatusCode::BAD_REQUEST, format!("for: {why}")),
        },
        Err(why) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("for: `{}`: {why} (write 30m, 2h, 1d)", b.length),
            );
        }
    };
    if b.reason.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "reason: say why (it is shown to whoever looks)",
        );
    }
    let until = now_millis().saturating_add(i64::try_from(length.as_millis()).unwrap_or(i64::MAX));
    let by = format!("the API (from {peer})");
    // With etcd, only there: every leader reads it, and it is ended there from any
    // machine (a copy in this store would outlive an end elsewhere). The key expires with
    // the downtime.
    if let Some(l) = &api.hub.leadership {
        let d = crate::state::Downtime {
            id: 0,
            cluster: b.cluster.clone(),
            host: b.host.clone(),
            until,
            reason: b.reason.clone(),
            created_by: by,
            created_at: now_millis(),
        };
        if let Err(e) = l.shared.add_downtime(&d).await {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("etcd: {e}: nothing recorded; try again"),
            );
        }
        downtimes_changed(&api, &b.cluster).await;
        return (
            StatusCode::CREATED,
            axum::Json(json!({"schema": SCHEMA, "until": until, "recorded_in": "etcd"})),
        )
            .into_response();
    }
    let added = api
        .store
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .add_downtime(&b.cluster, b.host.as_deref(), until, &b.reason, &by);
    let id = match added {
        Ok(id) => id,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    // The watcher sends the event at its next poll, as for `orch downtime`.
    (
        StatusCode::CREATED,
        axum::Json(json!({"schema": SCHEMA, "id": id, "until": until})),
    )
        .into_response()
}

/// Tells `cluster`'s watcher to read the downtimes in etcd again (for its events).
async fn downtimes_changed(api: &Api, cluster: &str) {
    if let Some(tx) = api.hub.with(cluster, |c| c.commands.clone()) {
        let _ = tx.send(Command::DowntimesChanged).await;
    }
}

#[derive(serde::Deserialize)]
struct EndQuery {
    cluster: String,
    host: Option<String>,
}

async fn end_downtime(
    State(api): Shared,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Query(q): Query<EndQuery>,
) -> Response {
    if let Err(r) = may_act(&api, &headers, &uri) {
        return r;
    }
    if let Err(r) = check_target(&api, &q.cluster, q.host.as_deref()) {
        return r;
    }
    let ended = api
        .store
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .end_downtime(&q.cluster, q.host.as_deref());
    let mut n = match ended {
        Ok(n) => n,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if let Some(l) = &api.hub.leadership {
        match l.shared.end_downtimes(&q.cluster, q.host.as_deref()).await {
            // Those in this store were set without etcd (by `orch downtime` here).
            Ok(removed) => n += removed,
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, format!("etcd: {e}")),
        }
        downtimes_changed(&api, &q.cluster).await;
    }
    ok(json!({"schema": SCHEMA, "ended": n}))
}
