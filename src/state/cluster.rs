//! What orch remembers of each cluster between runs: its current primary (after a
//! failover the file may still name the old one) and when it last failed over (anti-flap).
//! I/O: the database.

use rusqlite::{OptionalExtension, params};

use super::{StateError, Store, UnixMillis, now_millis};

/// A cluster's remembered state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterState {
    pub last_failover_at: Option<UnixMillis>,
    /// The host id of the primary orch last made or saw.
    pub current_primary: Option<String>,
}

impl Store {
    pub fn cluster_state(&self, cluster: &str) -> Result<ClusterState, StateError> {
        let row = self
            .db
            .conn()
            .query_row(
                "SELECT last_failover_at, current_primary FROM cluster_state WHERE cluster = ?1",
                [cluster],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.db.err(e))?;
        Ok(row.map_or_else(
            ClusterState::default,
            |(last_failover_at, current_primary)| ClusterState {
                last_failover_at,
                current_primary,
            },
        ))
    }

    /// A failover made `primary` the primary of `cluster`, now.
    pub fn record_failover(&self, cluster: &str, primary: &str) -> Result<(), StateError> {
        self.db
            .conn()
            .execute(
                "INSERT INTO cluster_state (cluster, last_failover_at, current_primary) \
                 VALUES (?1, ?2, ?3) ON CONFLICT (cluster) DO UPDATE SET \
                 last_failover_at = excluded.last_failover_at, \
                 current_primary = excluded.current_primary",
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
