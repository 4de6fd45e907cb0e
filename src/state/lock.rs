//! Per-cluster locks: at most one orch process acts on a cluster at a time.
//!
//! Takes a cluster name, who asks and a TTL, gives a [`ClusterLock`] or
//! [`StateError::Locked`] naming the holder. A lock row carries its holder's pid, host,
//! heartbeat time, TTL and a random token. It is *stale* when its holder is on this host
//! and its pid is gone (`kill(pid, 0)` gives `ESRCH`), or when its last heartbeat is older
//! than the holder's TTL (a holder on another host, or one that hangs). A stale lock is
//! taken over, and the holder's unfinished runs on that cluster are marked `interrupted`;
//! the check and the takeover are one `BEGIN IMMEDIATE` transaction, so of two processes
//! racing for a free or stale lock exactly one wins. The holder refreshes it with
//! [`ClusterLock::heartbeat`] well within its TTL; a heartbeat that finds its token gone
//! reports [`StateError::LockLost`]. Releasing (or dropping the lock) deletes the row only
//! while the token is still ours. I/O: the database and `kill(2)` with signal 0.

use std::time::Duration;

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Db, LockHolder, StateError, Store, UnixMillis, Who, now_millis, pid_alive};

/// A held cluster lock. Dropping it releases it (errors ignored); [`ClusterLock::release`]
/// reports them.
pub struct ClusterLock {
    db: Db,
    cluster: String,
    token: String,
    released: bool,
}

impl Store {
    /// Takes the lock on `cluster` for `who`, who promises to call
    /// [`ClusterLock::heartbeat`] more often than every `ttl`.
    pub fn lock(&self, cluster: &str, who: &Who, ttl: Duration) -> Result<ClusterLock, StateError> {
        self.lock_at(cluster, who, ttl, now_millis())
    }

    pub(super) fn lock_at(
        &self,
        cluster: &str,
        who: &Who,
        ttl: Duration,
        now: UnixMillis,
    ) -> Result<ClusterLock, StateError> {
        let err = |e| self.db.err(e);
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let token = random_token();
        let mut conn = self.db.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let held = tx
            .query_row(
                "SELECT pid, host, user, since, heartbeat_at, ttl_ms FROM locks \
                 WHERE cluster = ?1",
                [cluster],
                |r| {
                    Ok((
                        LockHolder {
                            pid: r.get(0)?,
                            host: r.get(1)?,
                            user: r.get(2)?,
                            since: r.get(3)?,
                            heartbeat_at: r.get(4)?,
                        },
                        r.get::<_, i64>(5)?,
                    ))
                },
            )
            .optional()
            .map_err(err)?;
        if let Some((holder, holder_ttl)) = held {
            let Some(why) = self.stale(&holder, holder_ttl, now) else {
                return Err(StateError::Locked {
                    cluster: cluster.to_string(),
                    holder,
                });
            };
            tx.execute(
                "UPDATE runs SET outcome = 'interrupted', ended_at = ?4, error = ?5 \
                 WHERE cluster = ?1 AND host = ?2 AND pid = ?3 AND outcome = 'running'",
                params![cluster, holder.host, holder.pid, now, why],
            )
            .map_err(err)?;
            tx.execute("DELETE FROM locks WHERE cluster = ?1", [cluster])
                .map_err(err)?;
        }
        tx.execute(
            "INSERT INTO locks (cluster, pid, host, user, since, heartbeat_at, ttl_ms, token) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7)",
            params![cluster, who.pid, who.host, who.user, now, ttl_ms, token],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(ClusterLock {
            db: self.db.clone(),
            cluster: cluster.to_string(),
            token,
            released: false,
        })
    }

    /// Why `holder`'s lock may be taken over at `now`, or None while it holds.
    fn stale(&self, holder: &LockHolder, ttl_ms: i64, now: UnixMillis) -> Option<String> {
        if holder.host == self.local_host && !pid_alive(holder.pid) {
            return Some(format!(
                "the process holding the cluster lock (pid {} on {}) is gone",
                holder.pid, holder.host
            ));
        }
        if now.saturating_sub(holder.heartbeat_at) > ttl_ms {
            return Some(format!(
                "the process holding the cluster lock (pid {} on {}) sent no heartbeat for \
                 {} ms (its TTL is {ttl_ms} ms); the lock was taken over",
                holder.pid,
                holder.host,
                now.saturating_sub(holder.heartbeat_at)
            ));
        }
        None
    }
}

impl ClusterLock {
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Tells other processes we are alive; [`StateError::LockLost`] if the lock was taken
    /// over meanwhile (then stop acting on the cluster).
    pub fn heartbeat(&self) -> Result<(), StateError> {
        self.heartbeat_at(now_millis())
    }

    pub(super) fn heartbeat_at(&self, now: UnixMillis) -> Result<(), StateError> {
        let changed = self
            .db
            .conn()
            .execute(
                "UPDATE locks SET heartbeat_at = ?3 WHERE cluster = ?1 AND token = ?2",
                params![self.cluster, self.token, now],
            )
            .map_err(|e| self.db.err(e))?;
        self.ours(changed)
    }

    /// Releases the lock; [`StateError::LockLost`] if it had been taken over (the other
    /// holder's lock is left alone).
    pub fn release(mut self) -> Result<(), StateError> {
        self.released = true;
        let changed = self.delete().map_err(|e| self.db.err(e))?;
        self.ours(changed)
    }

    fn delete(&self) -> rusqlite::Result<usize> {
        self.db.conn().execute(
            "DELETE FROM locks WHERE cluster = ?1 AND token = ?2",
            params![self.cluster, self.token],
        )
    }

    fn ours(&self, rows_changed: usize) -> Result<(), StateError> {
        match rows_changed {
            0 => Err(StateError::LockLost {
                cluster: self.cluster.clone(),
            }),
            _ => Ok(()),
        }
    }
}

impl Drop for ClusterLock {
    fn drop(&mut self) {
        if !self.released {
            // Nothing to report to: a lock we cannot delete expires with its TTL, or is
            // taken over as soon as this process is gone.
            let _ = self.delete();
        }
    }
}

impl std::fmt::Debug for ClusterLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLock")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// 128 random bits as hex, from the operating system's generator.
fn random_token() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random generator works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
