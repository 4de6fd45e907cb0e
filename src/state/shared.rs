//! What watchers and commands share in etcd (`--etcd`), under a prefix: the watchers'
//! leader key and, per cluster, its lock, its published primary, its last failover
//! (anti-flap), its failover in flight and its downtimes. The watch leader writes most of
//! them while it leads; `orch apply --etcd` takes the lock, `orch downtime --etcd` and
//! `orch failover --ack --etcd` write theirs directly. I/O: etcd.

use std::sync::Arc;
use std::time::Duration;

use super::etcd::Etcd;
use super::{Downtime, now_millis};

#[derive(Clone)]
pub struct Shared {
    pub etcd: Arc<Etcd>,
    /// Ends with `/` unless empty.
    pub prefix: String,
}

impl Shared {
    pub fn new(etcd: Arc<Etcd>, prefix: &str) -> Shared {
        Shared {
            etcd,
            prefix: prefix.to_string(),
        }
    }

    /// The key the leader watcher holds.
    pub fn leader_key(&self) -> String {
        format!("{}leader", self.prefix)
    }

    /// `PREFIX/clusters/CLUSTER/WHAT`: `lock`, `primary` (and `primary.json`),
    /// `last_failover`, `recovery` (the failover in flight), `downtimes/`.
    pub fn cluster_key(&self, cluster: &str, what: &str) -> String {
        format!("{}clusters/{cluster}/{what}", self.prefix)
    }

    /// The downtimes of `cluster` in force.
    pub async fn downtimes(&self, cluster: &str) -> Result<Vec<Downtime>, String> {
        let now = now_millis();
        Ok(self
            .etcd
            .list(&self.cluster_key(cluster, "downtimes/"))
            .await?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice::<Downtime>(&v).ok())
            .filter(|d| d.until > now)
            .collect())
    }

    /// Records `d` where every leader reads it, on a lease that ends with it. Keys are
    /// unique across processes (the time, the process, a counter).
    pub async fn add_downtime(&self, d: &Downtime) -> Result<(), String> {
        static ADDED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let length = Duration::from_millis(u64::try_from(d.until - now_millis()).unwrap_or(0));
        let key = format!(
            "{}{}-{}-{}",
            self.cluster_key(&d.cluster, "downtimes/"),
            d.created_at,
            std::process::id(),
            ADDED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let doc = serde_json::to_vec(d).expect("a downtime serializes");
        self.etcd
            .put_expiring(&key, &doc, length.max(Duration::from_secs(1)))
            .await
    }

    /// Ends the downtimes of `host` (None: the cluster's own): how many there were.
    pub async fn end_downtimes(&self, cluster: &str, host: Option<&str>) -> Result<usize, String> {
        let mut ended = 0;
        for (key, value) in self
            .etcd
            .list(&self.cluster_key(cluster, "downtimes/"))
            .await?
        {
            let Ok(d) = serde_json::from_slice::<Downtime>(&value) else {
                continue;
            };
            if d.host.as_deref() == host && self.etcd.delete(&key).await? {
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// When `cluster` last failed over, as any leader recorded it.
    pub async fn last_failover_at(&self, cluster: &str) -> Result<Option<i64>, String> {
        Ok(self
            .etcd
            .get(&self.cluster_key(cluster, "last_failover"))
            .await?
            .and_then(|kv| serde_json::from_slice::<serde_json::Value>(&kv.value).ok())
            .and_then(|v| v["at"].as_i64()))
    }

    /// Forgets `cluster`'s last failover (anti-flap no longer holds the next one back):
    /// whether there was one.
    pub async fn ack(&self, cluster: &str) -> Result<bool, String> {
        self.etcd
            .delete(&self.cluster_key(cluster, "last_failover"))
            .await
    }
}
