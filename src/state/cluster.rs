//! What orch remembers of each cluster between runs: its current primary (after a
//! failover the file may still name the old one), when it last failed over (anti-flap),
//! and a failover in flight (finished by the next watcher to act, never started again).
//! I/O: the database.

use std::time::Duration;

use rusqlite::{OptionalExtension, params};

use super::{StateError, Store, UnixMillis, now_millis};

/// A cluster's remembered state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterState {
    pub last_failover_at: Option<UnixMillis>,
    /// The host id of the primary orch last made or saw.
    pub current_primary: Option<String>,
    /// A failover that began and has not completed (JSON, the watcher's to read).
    pub in_flight: Option<String>,
}

impl Store {
    pub fn cluster_state(&self, cluster: &str) -> Result<ClusterState, StateError> {
        let row = self
            .db
            .conn()
            .query_row(
                "SELECT last_failover_at, current_primary, in_flight FROM cluster_state \
                 WHERE cluster = ?1",
                [cluster],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.db.err(e))?;
        Ok(row.map_or_else(
            ClusterState::default,
            |(last_failover_at, current_primary, in_flight)| ClusterState {
                last_failover_at,
                current_primary,
                in_flight,
            },
        ))
    }

    /// The failover of `cluster` in flight (None: none, or it completed).
    pub fn set_in_flight(&self, cluster: &str, in_flight: Option<&str>) -> Result<(), StateError> {
        self.db
            .conn()
            .execute(
                "INSERT INTO cluster_state (cluster, in_flight) VALUES (?1, ?2) \
                 ON CONFLICT (cluster) DO UPDATE SET in_flight = excluded.in_flight",
                params![cluster, in_flight],
            )
            .map_err(|e| self.db.err(e))?;
        Ok(())
    }

    /// A failover made `primary` the primary of `cluster`, now: it is no longer in flight.
    pub fn record_failover(&self, cluster: &str, primary: &str) -> Result<(), StateError> {
        self.db
            .conn()
            .execute(
                "INSERT INTO cluster_state (cluster, last_failover_at, current_primary) \
                 VALUES (?1, ?2, ?3) ON CONFLICT (cluster) DO UPDATE SET \
                 last_failover_at = excluded.last_failover_at, \
                 current_primary = excluded.current_primary, in_flight = NULL",
                params![cluster, now_millis(), primary],
            )
            .map_err(|e| self.db.err(e))?;
        Ok(())
    }

    /// `primary` is the live primary of `cluster` (seen by watch, or made by a switchover).
    pub fn record_primary(&self, cluster: &str, primary: &str) -> Result<(), StateError> {
        self.db
            .conn()
            .execute(
                "INSERT INTO cluster_state (cluster, current_primary) VALUES (?1, ?2) \
                 ON CONFLICT (cluster) DO UPDATE SET current_primary = excluded.current_primary",
                params![cluster, primary],
            )
            .map_err(|e| self.db.err(e))?;
        Ok(())
    }

    /// Forgets the last failover of `cluster` (`orch failover --ack`): anti-flap no longer
    /// holds the next one back.
    pub fn ack_failover(&self, cluster: &str) -> Result<bool, StateError> {
        let changed = self
            .db
            .conn()
            .execute(
                "UPDATE cluster_state SET last_failover_at = NULL WHERE cluster = ?1 \
                 AND last_failover_at IS NOT NULL",
                [cluster],
            )
            .map_err(|e| self.db.err(e))?;
        Ok(changed > 0)
    }
}

/// A period during which orch never recovers a host (or a whole cluster) automatically.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Downtime {
    pub id: i64,
    pub cluster: String,
    /// None: the whole cluster.
    pub host: Option<String>,
    pub until: UnixMillis,
    pub reason: String,
    pub created_by: String,
    pub created_at: UnixMillis,
}

/// The longest downtime set without `force`: a longer one is far more often a slip (`300d`
/// for `300m`, a number pasted twice) than a plan, and it silently turns automatic
/// recovery off for that long.
pub const MAX_DOWNTIME: Duration = Duration::from_secs(30 * 86_400);

impl Downtime {
    /// Checks how long a requested downtime lasts (the CLI's `--for` and the API's `for`,
    /// parsed by the one duration parser): longer than 0s, and at most [`MAX_DOWNTIME`]
    /// unless `force`. Err says what is wrong; `force_how` names the way to force it.
    pub fn check_length(length: Duration, force: bool, force_how: &str) -> Result<(), String> {
        if length.is_zero() {
            return Err("a downtime lasts longer than 0s".into());
        }
        if length > MAX_DOWNTIME && !force {
            return Err(format!(
                "{} is longer than {}, the longest downtime orch sets unless forced: check \
                 the unit (m is minutes, d days), or add {force_how} if you mean it",
                crate::spec::decode::format_duration(length),
                crate::spec::decode::format_duration(MAX_DOWNTIME),
            ));
        }
        Ok(())
    }

    /// Whether `other` is this downtime recorded elsewhere (a state store and etcd): ids
    /// are per store, and each place stamps its own creation time.
    pub fn same(&self, other: &Downtime) -> bool {
        self.cluster == other.cluster
            && self.host == other.host
            && self.until == other.until
            && self.reason == other.reason
            && self.created_by == other.created_by
    }

    /// `local`, then those of `shared` recorded nowhere in it: each downtime once.
    pub fn merge(mut local: Vec<Downtime>, shared: Vec<Downtime>) -> Vec<Downtime> {
        for d in shared {
            if !local.iter().any(|l| l.same(&d)) {
                local.push(d);
            }
        }
        local
    }
}

impl Store {
    /// Downtimes `host` (None: the whole cluster) of `cluster` until `until`.
    pub fn add_downtime(
        &self,
        cluster: &str,
        host: Option<&str>,
        until: UnixMillis,
        reason: &str,
        by: &str,
    ) -> Result<i64, StateError> {
        let conn = self.db.conn();
        conn.execute(
            "INSERT INTO downtimes (cluster, host, until, reason, created_by, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![cluster, host, until, reason, by, now_millis()],
        )
        .map_err(|e| self.db.err(e))?;
        Ok(conn.last_insert_rowid())
    }

    /// The downtimes of `cluster` that have not expired, soonest end first.
    pub fn downtimes(&self, cluster: &str) -> Result<Vec<Downtime>, StateError> {
        let conn = self.db.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, cluster, host, until, reason, created_by, created_at FROM downtimes \
                 WHERE cluster = ?1 AND until > ?2 ORDER BY until, id",
            )
            .map_err(|e| self.db.err(e))?;
        let rows = stmt
            .query_map(params![cluster, now_millis()], |r| {
                Ok(Downtime {
                    id: r.get(0)?,
                    cluster: r.get(1)?,
                    host: r.get(2)?,
                    until: r.get(3)?,
                    reason: r.get(4)?,
                    created_by: r.get(5)?,
                    created_at: r.get(6)?,
                })
            })
            .map_err(|e| self.db.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.db.err(e))
    }

    /// Ends the downtimes of `host` (None: the cluster-wide ones) now; how many ended.
    pub fn end_downtime(&self, cluster: &str, host: Option<&str>) -> Result<usize, StateError> {
        self.db
            .conn()
            .execute(
                "UPDATE downtimes SET until = ?3 WHERE cluster = ?1 AND host IS ?2 AND until > ?3",
                params![cluster, host, now_millis()],
            )
            .map_err(|e| self.db.err(e))
    }

    /// The downtime that holds `host` (its own, or the cluster's), if any.
    pub fn downtime_of(&self, cluster: &str, host: &str) -> Result<Option<Downtime>, StateError> {
        Ok(self
            .downtimes(cluster)?
            .into_iter()
            .find(|d| d.host.as_deref().is_none_or(|h| h == host)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_downtime_lasts_more_than_nothing_and_at_most_30_days_unless_forced() {
        let day = Duration::from_secs(86_400);
        assert_eq!(Downtime::check_length(30 * day, false, "--force"), Ok(()));
        assert_eq!(
            Downtime::check_length(Duration::ZERO, true, "--force"),
            Err("a downtime lasts longer than 0s".into())
        );
        let why = Downtime::check_length(30 * day + Duration::from_millis(1), false, "--force")
            .unwrap_err();
        assert!(
            why.contains("longer than 30d") && why.ends_with("add --force if you mean it"),
            "{why}"
        );
        assert_eq!(Downtime::check_length(365 * day, true, "--force"), Ok(()));
    }

    /// One downtime in a state store and in etcd (other ids, other creation stamps) is
    /// listed once; another with the same host but another reason is not the same.
    #[test]
    fn a_downtime_recorded_twice_is_merged_once() {
        let d = |id, reason: &str, created_at| Downtime {
            id,
            cluster: "shop".into(),
            host: Some("db1".into()),
            until: 10_000,
            reason: reason.into(),
            created_by: "bob@laptop".into(),
            created_at,
        };
        let merged = Downtime::merge(
            vec![d(3, "disk swap", 100)],
            vec![d(0, "disk swap", 102), d(0, "kernel", 105)],
        );
        let reasons: Vec<&str> = merged.iter().map(|x| x.reason.as_str()).collect();
        assert_eq!(reasons, ["disk swap", "kernel"]);
        assert_eq!(merged[0].id, 3);
    }

    #[test]
    fn downtimes_hold_until_they_end_or_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let later = now_millis() + 3_600_000;
        store
            .add_downtime("shop", Some("db1"), later, "disk swap", "bob")
            .unwrap();
        store
            .add_downtime("shop", None, now_millis() - 1, "expired", "bob")
            .unwrap();
        assert_eq!(
            store.downtime_of("shop", "db1").unwrap().unwrap().reason,
            "disk swap"
        );
        assert!(store.downtime_of("shop", "db2").unwrap().is_none());
        assert!(store.downtime_of("other", "db1").unwrap().is_none());
        store
            .add_downtime("shop", None, later, "migration", "amy")
            .unwrap();
        assert_eq!(
            store.downtime_of("shop", "db2").unwrap().unwrap().reason,
            "migration"
        );
        assert_eq!(store.end_downtime("shop", None).unwrap(), 1);
        assert!(store.downtime_of("shop", "db2").unwrap().is_none());
        assert_eq!(store.end_downtime("shop", Some("db1")).unwrap(), 1);
        assert!(store.downtimes("shop").unwrap().is_empty());
    }
}
