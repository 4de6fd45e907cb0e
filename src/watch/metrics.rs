//! watch's Prometheus metrics (`GET /metrics`), kept with the Prometheus project's client
//! crate: per server up, read_only, replication threads and lag; problems by code;
//! detections, recoveries and their duration; poll duration; config reloads; and the
//! webhook deliveries (counted by [`super::webhook`]). Watchers update them after every
//! poll and event. No I/O.
//!
//! A series whose server or problem is gone (a reload removed the host, the problem
//! cleared) is removed rather than left at its last value: a stale lag is worse than none.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::webhook::WebhookMetrics;
use crate::observe::Snapshot;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub cluster: String,
    pub host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub cluster: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub cluster: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub cluster: String,
}

/// A cluster's hosts and problem codes with series now.
type Present = (BTreeSet<String>, BTreeSet<String>);

type Histograms = Family<ClusterLabels, Histogram, fn() -> Histogram>;

/// Every metric of one watch process, and the registry that exposes them.
pub struct Metrics {
    registry: Registry,
    up: Family<ServerLabels, Gauge>,
    read_only: Family<ServerLabels, Gauge>,
    io_running: Family<ServerLabels, Gauge>,
    sql_running: Family<ServerLabels, Gauge>,
    lag: Family<ServerLabels, Gauge>,
    primary: Family<ServerLabels, Gauge>,
    problems: Family<CodeLabels, Gauge>,
    detections: Family<CodeLabels, Counter>,
    recoveries: Family<OutcomeLabels, Counter>,
    recovery_seconds: Histograms,
    poll_seconds: Histograms,
    reloads: Family<OutcomeLabels, Counter>,
    pub webhooks: WebhookMetrics,
    /// The label sets each cluster has now, to remove those that go away.
    present: Mutex<HashMap<String, Present>>,
}

fn recovery_histogram() -> Histogram {
    // 10 ms to ~80 s.
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

fn poll_histogram() -> Histogram {
    // 1 ms to ~4 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 13))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            up: Family::default(),
            read_only: Family::default(),
            io_running: Family::default(),
            sql_running: Family::default(),
            lag: Family::default(),
            primary: Family::default(),
            problems: Family::default(),
            detections: Family::default(),
            recoveries: Family::default(),
            recovery_seconds: Family::new_with_constructor(recovery_histogram),
            poll_seconds: Family::new_with_constructor(poll_histogram),
            reloads: Family::default(),
            webhooks: WebhookMetrics::default(),
            present: Mutex::new(HashMap::new()),
            registry: Registry::default(),
        };
        registry.register(
            "orch_server_up",
            "1 when orch reached the server at the last poll",
            m.up.clone(),
        );
        registry.register(
            "orch_server_read_only",
            "1 when the server has read_only=ON",
            m.read_only.clone(),
        );
        registry.register(
            "orch_replication_io_running",
            "1 when the replica's IO thread runs (connecting counts as 0)",
            m.io_running.clone(),
        );
        registry.register(
            "orch_replication_sql_running",
            "1 when the replica's SQL thread runs",
            m.sql_running.clone(),
        );
        registry.register(
            "orch_replication_lag_seconds",
            "Seconds_Behind_Master as the replica reports it (absent when unknown)",
            m.lag.clone(),
        );
        registry.register(
            "orch_primary",
            "1 for the server orch holds to be the cluster's primary",
            m.primary.clone(),
        );
        registry.register(
            "orch_problems",
            "problems found at the last poll, by code",
            m.problems.clone(),
        );
        registry.register(
            "orch_detections",
            "failures detected (once per episode), by code",
            m.detections.clone(),
        );
        registry.register(
            "orch_recoveries",
            "recoveries run, by outcome",
            m.recoveries.clone(),
        );
        registry.register(
            "orch_recovery_duration_seconds",
            "time from taking the lock to the recovery's end",
            m.recovery_seconds.clone(),
        );
        registry.register(
            "orch_poll_duration_seconds",
            "time to observe every server of a cluster",
            m.poll_seconds.clone(),
        );
        registry.register(
            "orch_config_reloads",
            "topology and policy reloads, by outcome (applied, refused)",
            m.reloads.clone(),
        );
        m.webhooks.register(&mut registry);
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// One poll of `cluster`: per server gauges, problems by code, the poll's duration.
    pub fn observed(&self, snapshot: &Snapshot, primary: &str, took: std::time::Duration) {
        let cluster = &snapshot.cluster;
        let label = |host: &str| ServerLabels {
            cluster: cluster.clone(),
            host: host.to_string(),
        };
        let mut hosts = BTreeSet::new();
        for h in &snapshot.hosts {
            hosts.insert(h.id.clone());
            let l = label(&h.id);
            let info = h.state.info();
            self.up.get_or_create(&l).set(i64::from(info.is_some()));
            self.primary
                .get_or_create(&l)
                .set(i64::from(h.id == primary));
            match info {
                Some(inf) => {
                    self.read_only
                        .get_or_create(&l)
                        .set(i64::from(inf.read_only));
                }
                None => {
                    self.read_only.remove(&l);
                }
            }
            match info.and_then(|i| i.replication.as_ref()) {
                Some(r) => {
                    let io = r.io == crate::observe::IoState::Running;
                    self.io_running.get_or_create(&l).set(i64::from(io));
                    self.sql_running
                        .get_or_create(&l)
                        .set(i64::from(r.sql_running));
                    match r.seconds_behind {
                        Some(s) => {
                            self.lag
                                .get_or_create(&l)
                                .set(i64::try_from(s).unwrap_or(i64::MAX));
                        }
                        None => {
                            self.lag.remove(&l);
                        }
                    }
                }
                None => {
                    self.io_running.remove(&l);
                    self.sql_running.remove(&l);
                    self.lag.remove(&l);
                }
            }
        }
        let mut counts: HashMap<String, i64> = HashMap::new();
        for p in &snapshot.problems {
            *counts.entry(p.code.name().to_string()).or_default() += 1;
        }
        for (code, n) in &counts {
            self.problems
                .get_or_create(&CodeLabels {
                    cluster: cluster.clone(),
                    code: code.clone(),
                })
                .set(*n);
        }
        let codes: BTreeSet<String> = counts.into_keys().collect();
        let mut present = self.present.lock().unwrap_or_else(|e| e.into_inner());
        let (old_hosts, old_codes) = present.entry(cluster.clone()).or_default();
        for gone in old_hosts.difference(&hosts) {
            let l = label(gone);
            for f in [
                &self.up,
                &self.read_only,
                &self.io_running,
                &self.sql_running,
                &self.lag,
                &self.primary,
            ] {
                f.remove(&l);
            }
        }
        for gone in old_codes.difference(&codes) {
            self.problems.remove(&CodeLabels {
                cluster: cluster.clone(),
                code: gone.clone(),
            });
        }
        *old_hosts = hosts;
        *old_codes = codes;
        self.poll_seconds
            .get_or_create(&ClusterLabels {
                cluster: cluster.clone(),
            })
            .observe(took.as_secs_f64());
    }

    /// A failure detected (first time in its episode).
    pub fn detected(&self, cluster: &str, code: &str) {
        self.detections
            .get_or_create(&CodeLabels {
                cluster: cluster.to_string(),
                code: code.to_string(),
            })
            .inc();
    }

    /// A recovery ended (`outcome`: succeeded, failed, interrupted, refused).
    pub fn recovered(&self, cluster: &str, outcome: &str, took: Option<std::time::Duration>) {
        self.recoveries
            .get_or_create(&OutcomeLabels {
                cluster: cluster.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        if let Some(took) = took {
            self.recovery_seconds
                .get_or_create(&ClusterLabels {
                    cluster: cluster.to_string(),
                })
                .observe(took.as_secs_f64());
        }
    }

    /// A reload of `cluster`'s files (`outcome`: applied, refused).
    pub fn reloaded(&self, cluster: &str, outcome: &str) {
        self.reloads
            .get_or_create(&OutcomeLabels {
                cluster: cluster.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }
}
