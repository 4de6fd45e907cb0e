//! What one `orch watch` process shares between its watchers (one per cluster) and its
//! HTTP server: each cluster's latest observation, the Prometheus metrics, the events sent
//! to webhooks, and the way to ask a watcher to act (a failover, a reload).
//!
//! Watchers write here after every poll and at every event; the HTTP handlers only read,
//! or send a [`Command`] to the cluster's watcher, which acts between polls under the
//! cluster lock like any recovery (the API never changes a server itself). No I/O here but
//! the webhook queues (see [`super::webhook`]).
//!
//! # Events (schema 1, stable), POSTed to every URL in `hooks.webhooks`
//!
//! ```text
//! {"schema": 1,
//!  "id": "1767261600000-17",          unique per watch process: its start (ms) and a counter
//!  "kind": "detection" | "recovery_started" | "recovery_step" | "recovery_finished"
//!        | "recovery_failed" | "recovery_refused" | "fence" | "downtime_added"
//!        | "downtime_ended" | "ack" | "reload" | "reload_refused",
//!  "time": "2026-12-02T15:37:14.123Z", "time_ms": 1767261600000,
//!  "cluster": "shop",
//!  "host": "db1" | null,              the server it is about
//!  "message": "...",                   one line for people, as logged
//!  "run": 12 | null,                   the history run (orch history 12)
//!  "data": {...}}                      per kind: detection {code, evidence}; recovery_*
//!                                      {decision, successor, lost, outcome}; recovery_step
//!                                      {number, action, result, ms, error}; downtime_*
//!                                      {until, reason, by} (sent by the watcher at the
//!                                      poll after it starts or ends, whoever set it)
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::metrics::Metrics;
use super::webhook::Webhooks;
use crate::observe::Snapshot;
use crate::state::{UnixMillis, now_millis, utc};

/// The JSON schema version of events and of the API's documents.
pub const SCHEMA: u32 = 1;

/// What an API caller asks of a cluster's watcher.
pub enum Command {
    /// `orch failover` through the API: `to` forces the successor, `force` fences a live
    /// primary first.
    Failover {
        to: Option<String>,
        force: bool,
        who: String,
        reply: oneshot::Sender<Result<FailoverDone, String>>,
    },
    /// Read the files again (SIGHUP, or a file changed).
    Reload { why: String },
    /// A downtime was set or ended in etcd through the API: read them again now.
    DowntimesChanged,
}

/// How a failover asked through the API ended.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FailoverDone {
    pub run: i64,
    pub outcome: String,
    pub decision: String,
}

/// One cluster as the API and the page see it.
pub struct ClusterLive {
    /// The host orch holds to be the primary.
    pub primary: String,
    /// The declared host ids, in file order.
    pub hosts: Vec<String>,
    /// The last observation; None until the first poll ends.
    pub snapshot: Option<Arc<Snapshot>>,
    /// Each host's dc, as the file says.
    pub dcs: HashMap<String, Option<String>>,
    pub observed_at: Option<UnixMillis>,
    pub problems: usize,
    pub commands: mpsc::Sender<Command>,
    /// The cluster's webhooks (its policy's).
    pub webhooks: Webhooks,
}

/// Shared by every watcher and the HTTP server of one process.
pub struct Hub {
    clusters: Mutex<BTreeMap<String, ClusterLive>>,
    pub metrics: Metrics,
    /// With etcd: who leads (only the leader acts).
    pub leadership: Option<Arc<super::leader::Leadership>>,
    started_at: UnixMillis,
    next_event: AtomicU64,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            clusters: Mutex::new(BTreeMap::new()),
            metrics: Metrics::default(),
            leadership: None,
            started_at: now_millis(),
            next_event: AtomicU64::new(0),
        }
    }
}

impl Hub {
    /// A hub whose actions only the etcd leader takes (None: this process acts).
    pub fn led_by(leadership: Option<Arc<super::leader::Leadership>>) -> Hub {
        Hub {
            leadership,
            ..Hub::default()
        }
    }

    /// Registers a cluster's watcher; gives the receiving end of its commands.
    pub fn join(
        &self,
        cluster: &str,
        primary: &str,
        hosts: Vec<String>,
    ) -> mpsc::Receiver<Command> {
        let (tx, rx) = mpsc::channel(16);
        self.lock().insert(
            cluster.to_string(),
            ClusterLive {
                primary: primary.to_string(),
                hosts,
                snapshot: None,
                dcs: HashMap::new(),
                observed_at: None,
                problems: 0,
                commands: tx,
                webhooks: Webhooks::none(),
            },
        );
        rx
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ClusterLive>> {
        // A panic while holding it leaves plain data behind: still usable.
        self.clusters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads (or changes) one cluster's entry.
    pub fn with<T>(&self, cluster: &str, f: impl FnOnce(&mut ClusterLive) -> T) -> Option<T> {
        self.lock().get_mut(cluster).map(f)
    }

    /// Every cluster's name, in order.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// `GET /api/v1/clusters`.
    pub fn clusters_json(&self) -> Value {
        let list: Vec<Value> = self
            .lock()
            .iter()
            .map(|(name, c)| {
                json!({
                    "cluster": name,
                    "primary": c.primary,
                    "observed_at": c.observed_at,
                    "problems": c.problems,
                    "hosts": c.hosts.len(),
                })
            })
            .collect();
        json!({"schema": SCHEMA, "clusters": list})
    }

    /// `GET /api/v1/clusters/{cluster}`: the `status --format json` document of the last
    /// poll, with `observed_at` and `view` (each server as `status` shows it, with its dc).
    /// None: no such cluster; `Some(None)`: not observed yet.
    pub fn cluster_json(&self, cluster: &str) -> Option<Option<Value>> {
        let (snapshot, dcs, at) = self.with(cluster, |c| {
            (c.snapshot.clone(), c.dcs.clone(), c.observed_at)
        })?;
        let Some(snapshot) = snapshot else {
            return Some(None);
        };
        let mut doc = serde_json::to_value(&*snapshot).expect("a snapshot serializes");
        let view: Vec<Value> = crate::render::status_view(&snapshot)
            .into_iter()
            .map(|row| {
                let dc = dcs.get(&row.host).cloned().flatten();
                let mut v = serde_json::to_value(row).expect("a row serializes");
                v["dc"] = json!(dc);
                v
            })
            .collect();
        doc["observed_at"] = json!(at);
        doc["view"] = Value::Array(view);
        Some(Some(doc))
    }

    /// Every cluster observed at least once (`GET /ready`); else the ones not yet.
    pub fn ready(&self) -> Result<(), Vec<String>> {
        let waiting: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, c)| c.observed_at.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(waiting)
        }
    }

    /// Sends an event to the cluster's webhooks; gives it (as sent) for tests and logs.
    pub fn event(
        &self,
        cluster: &str,
        kind: &str,
        host: Option<&str>,
        message: &str,
        run: Option<i64>,
        data: Value,
    ) -> Value {
        let n = self.next_event.fetch_add(1, Ordering::Relaxed);
        let now = now_millis();
        let event = json!({
            "schema": SCHEMA,
            "id": format!("{}-{n}", self.started_at),
            "kind": kind,
            "time": utc(now),
            "time_ms": now,
            "cluster": cluster,
            "host": host,
            "message": message,
            "run": run,
            "data": data,
        });
        if let Some(hooks) = self.with(cluster, |c| c.webhooks.clone()) {
            hooks.send(&event);
        }
        event
    }
}
