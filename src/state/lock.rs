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
//! [`ClusterLock::heartbeat`], and a lock taken with [`Store::lock`] also from a thread of
//! its own every quarter TTL, so that a step or a hook longer than the TTL keeps it; a
//! heartbeat that finds its token gone reports [`StateError::LockLost`]. Steps run under
//! it are fenced by it ([`HeldLock`], a [`Fence`]): before each step a heartbeat (the
//! last, when under a quarter TTL old; else one then) must have found the token still
//! ours, and before each statement the clock must say a heartbeat came within the TTL
//! (minus a margin), so a process paused long enough for another to take its lock sends
//! nothing more once it resumes. Releasing (or dropping the lock) deletes the row only
//! while the token is still ours. The holder's own judgement ("a heartbeat came within the
//! TTL") is made by a monotonic [`Clock`], the system's except in tests, which move it by
//! hand so that they decide by logic rather than by how busy the machine is. I/O: the
//! database, `kill(2)` with signal 0, the heartbeat thread, the clock.

use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Db, LockHolder, StateError, Store, UnixMillis, Who, now_millis, pid_alive};
use crate::executor::fenced::Fence;

/// How long a cluster lock outlives its holder's last heartbeat (a holder on this host
/// whose process is gone loses it at once). `ORCH_LOCK_TTL_SECS` shortens it for tests
/// and rehearsals.
pub fn lock_ttl() -> Duration {
    std::env::var("ORCH_LOCK_TTL_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map_or(Duration::from_secs(60), Duration::from_secs)
}

/// A held cluster lock. Dropping it releases it (errors ignored); [`ClusterLock::release`]
/// reports them.
pub struct ClusterLock {
    held: Arc<HeldLock>,
    released: bool,
    /// The heartbeat thread ([`Store::lock`]): its channel is closed and it is joined on
    /// release or drop.
    beat: Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

/// What a [`ClusterLock`] holds, shared with its heartbeat thread and with the steps it
/// fences.
pub struct HeldLock {
    db: Db,
    cluster: String,
    token: String,
    ttl: Duration,
    /// When the last heartbeat that found the token ours began (or the lock was taken):
    /// it holds by the clock until then + [`valid_for`] of the TTL. None once the token
    /// was found gone.
    last_beat: Mutex<Option<Instant>>,
    /// What `last_beat` is read and judged by.
    clock: Clock,
}

/// The monotonic clock a held lock judges its heartbeats by: the system's, or (in tests)
/// one that stands still until it is moved, so that "ran out" and "still holds" follow
/// from what the test did, never from how long the machine took between two statements.
#[derive(Clone, Default)]
pub(crate) struct Clock(Option<Arc<Mutex<Instant>>>);

impl Clock {
    fn now(&self) -> Instant {
        match &self.0 {
            None => Instant::now(),
            Some(t) => *t.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// How long ago `then` was, by this clock (never negative).
    fn since(&self, then: Instant) -> Duration {
        self.now().saturating_duration_since(then)
    }

    /// A clock that moves only by [`Clock::advance`].
    #[cfg(test)]
    pub(crate) fn manual() -> Clock {
        Clock(Some(Arc::new(Mutex::new(Instant::now()))))
    }

    #[cfg(test)]
    pub(crate) fn advance(&self, by: Duration) {
        let t = self
            .0
            .as_ref()
            .expect("only a manual clock is moved by hand");
        *t.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }
}

/// How long after a heartbeat the holder still counts on its lock: the TTL less a sixth,
/// a margin for the clocks (another process judges the heartbeat by the wall clock).
fn valid_for(ttl: Duration) -> Duration {
    ttl - ttl / 6
}

impl Store {
    /// Takes the lock on `cluster` for `who`; a thread of its own sends heartbeats every
    /// quarter `ttl` until it is released (or dropped).
    pub fn lock(&self, cluster: &str, who: &Who, ttl: Duration) -> Result<ClusterLock, StateError> {
        let mut lock = self.lock_at(cluster, who, ttl, now_millis())?;
        let (stop, stopped) = mpsc::channel::<()>();
        let held = lock.held.clone();
        let thread = std::thread::Builder::new()
            .name("orch-lock-heartbeat".into())
            .spawn(move || {
                // Ends when the sender is dropped (release, drop) or the lock is lost.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(ttl / 4) {
                    match held.heartbeat_at(now_millis()) {
                        Ok(()) => {}
                        Err(StateError::LockLost { .. }) => return,
                        // A busy or failing database: the next beat tries again; the steps
                        // stop by the clock if none gets through.
                        Err(e) => tracing::warn!(cluster = held.cluster, "lock heartbeat: {e}"),
                    }
                }
            });
        match thread {
            Ok(thread) => lock.beat = Some((stop, thread)),
            // Heartbeats then come only between steps, as the lock's steps are checked.
            Err(e) => tracing::warn!(cluster, "no thread for the lock's heartbeats: {e}"),
        }
        Ok(lock)
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
        let taken = self.clock.now();
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
            held: Arc::new(HeldLock {
                db: self.db.clone(),
                cluster: cluster.to_string(),
                token,
                ttl,
                last_beat: Mutex::new(Some(taken)),
                clock: self.clock.clone(),
            }),
            released: false,
            beat: None,
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
        &self.held.cluster
    }

    /// Tells other processes we are alive; [`StateError::LockLost`] if the lock was taken
    /// over meanwhile (then stop acting on the cluster).
    pub fn heartbeat(&self) -> Result<(), StateError> {
        self.held.heartbeat_at(now_millis())
    }

    #[cfg(test)]
    pub(super) fn heartbeat_at(&self, now: UnixMillis) -> Result<(), StateError> {
        self.held.heartbeat_at(now)
    }

    /// The fence for the steps run under this lock.
    pub fn fence(&self) -> Arc<HeldLock> {
        self.held.clone()
    }

    /// Releases the lock; [`StateError::LockLost`] if it had been taken over (the other
    /// holder's lock is left alone).
    pub fn release(mut self) -> Result<(), StateError> {
        self.released = true;
        self.stop_beating();
        let changed = self.held.delete().map_err(|e| self.held.db.err(e))?;
        self.held.ours(changed)
    }

    fn stop_beating(&mut self) {
        if let Some((stop, thread)) = self.beat.take() {
            drop(stop);
            let _ = thread.join();
        }
    }
}

impl HeldLock {
    fn heartbeat_at(&self, now: UnixMillis) -> Result<(), StateError> {
        let sent = self.clock.now();
        let changed = self
            .db
            .conn()
            .execute(
                "UPDATE locks SET heartbeat_at = ?3 WHERE cluster = ?1 AND token = ?2",
                params![self.cluster, self.token, now],
            )
            .map_err(|e| self.db.err(e))?;
        let ours = self.ours(changed);
        let mut last = self.last_beat.lock().unwrap_or_else(|e| e.into_inner());
        match ours {
            // Never moved back: a slow beat must not shorten what a later one granted.
            Ok(()) => *last = (*last).map(|l| l.max(sent)),
            Err(_) => *last = None,
        }
        ours
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

/// A step under the lock: a heartbeat finds the token still ours, and the clock says a
/// heartbeat came within the TTL (less the margin).
impl Fence for HeldLock {
    async fn check(&self) -> Result<(), String> {
        // A heartbeat that found the token ours a moment ago (the run's own after each
        // step, or the thread's) vouches for it: nobody may take the lock until that
        // heartbeat is a TTL old. Otherwise one now (unlike a lease in etcd, a lock whose
        // TTL passed is still ours until another process takes it).
        let fresh = (*self.last_beat.lock().unwrap_or_else(|e| e.into_inner()))
            .is_some_and(|l| self.clock.since(l) < self.ttl / 4);
        if fresh {
            return self.holds();
        }
        self.heartbeat_at(now_millis()).map_err(|e| match e {
            StateError::LockLost { .. } => self.lost(),
            e => format!("the cluster lock not confirmed: {e}"),
        })?;
        // A process paused during the write may have lost it meanwhile.
        self.holds()
    }

    fn holds(&self) -> Result<(), String> {
        match *self.last_beat.lock().unwrap_or_else(|e| e.into_inner()) {
            None => Err(self.lost()),
            Some(last) if self.clock.since(last) < valid_for(self.ttl) => Ok(()),
            Some(_) => Err(format!(
                "the cluster lock on {} ran out: no heartbeat within its TTL of {:?} (was \
                 this process paused?); another process may have taken it",
                self.cluster, self.ttl
            )),
        }
    }
}

impl HeldLock {
    fn lost(&self) -> String {
        format!(
            "the cluster lock on {} was taken over by another process (this one missed its \
             heartbeats)",
            self.cluster
        )
    }
}

impl Drop for ClusterLock {
    fn drop(&mut self) {
        self.stop_beating();
        if !self.released {
            // Nothing to report to: a lock we cannot delete expires with its TTL, or is
            // taken over as soon as this process is gone.
            let _ = self.held.delete();
        }
    }
}

impl std::fmt::Debug for ClusterLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLock")
            .field("cluster", &self.held.cluster)
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
