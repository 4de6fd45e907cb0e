//! One leader among the watchers that share an etcd (`orch watch --etcd URLS`): only the
//! leader recovers, fences, runs hooks and publishes each cluster's primary; the others
//! observe, serve the read API and point actions at the leader.
//!
//! The leader holds the key `PREFIX/leader`, attached to a lease of [`TTL`] it keeps
//! alive every third of it. It counts itself the leader only until the last renewal's
//! send time + the TTL it was given − [`MARGIN`]: etcd cannot let the lease expire before
//! then, so a leader that cannot reach etcd stops acting before anyone else can win. Every
//! step of a recovery first checks in etcd that the key still has the create revision it
//! won with (the fencing token, [`Leadership::check`]). A leader that stops revokes its
//! lease: the next is elected at once rather than a TTL later. I/O: etcd, the clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::state::etcd::{Op, lease_valid_until};
use crate::state::shared::Shared;

/// The leader lease. A dead leader is replaced within about this long; a shorter TTL
/// replaces it sooner but makes a slow etcd cost the leadership.
pub const TTL: Duration = Duration::from_secs(5);
/// How often a watcher that does not lead tries to.
pub const CAMPAIGN: Duration = Duration::from_millis(500);
/// Stop counting as leader this long before the lease could expire.
pub const MARGIN: Duration = crate::state::etcd::LEASE_MARGIN;

#[derive(Default)]
struct State {
    lease: Option<i64>,
    /// The leader key's create revision while this process leads.
    revision: Option<i64>,
    valid_until: Option<Instant>,
    /// Who leads, as the leader key says (None: nobody, or not known yet).
    leader: Option<Value>,
    /// When the lease was last renewed (or granted).
    renewed: Option<Instant>,
}

pub struct Leadership {
    pub shared: Shared,
    /// This process, as the leader key will say: `{"id", "host", "pid", "listen"}`.
    pub me: Value,
    state: Mutex<State>,
    /// A key written by every [`Leadership::check`], in its transaction: a failover's
    /// progress (which step runs) costs etcd no request of its own.
    carry: Mutex<Option<(String, Vec<u8>)>>,
}

impl Leadership {
    pub fn new(shared: Shared, me: Value) -> Leadership {
        Leadership {
            shared,
            me,
            state: Mutex::new(State::default()),
            carry: Mutex::new(None),
        }
    }

    pub fn key(&self) -> String {
        self.shared.leader_key()
    }

    /// What each [`Leadership::check`] writes from now on (None: nothing).
    pub fn carry(&self, put: Option<(String, Vec<u8>)>) {
        *self.carry.lock().unwrap_or_else(|e| e.into_inner()) = put;
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this process leads now (by the clock: see the module's rules).
    pub fn is_leader(&self) -> bool {
        let s = self.state();
        s.revision.is_some() && s.valid_until.is_some_and(|t| Instant::now() < t)
    }

    /// The fencing token while this process leads.
    pub fn token(&self) -> Option<i64> {
        if self.is_leader() {
            self.state().revision
        } else {
            None
        }
    }

    /// Who leads, as last seen.
    pub fn leader(&self) -> Option<Value> {
        if self.is_leader() {
            return Some(self.me.clone());
        }
        // This process, once its lease ran out, no longer knows who leads.
        self.state().leader.clone().filter(|l| *l != self.me)
    }

    /// Before a step: this process still leads, by the clock and in etcd (and what is
    /// carried is written in the same transaction).
    pub async fn check(&self) -> Result<(), String> {
        let Some(revision) = self.token() else {
            return Err("this watcher is no longer the leader".into());
        };
        let carried = self.carry.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let ops: Vec<Op> = carried
            .iter()
            .map(|(k, v)| Op::Put(k, v.as_slice()))
            .collect();
        match self
            .shared
            .etcd
            .while_held(&self.key(), revision, &ops)
            .await
        {
            // Still by the clock once etcd answered: a process paused during the call (a
            // stall, SIGSTOP) may have been replaced meanwhile. Each statement asks the
            // clock again (`executor::fenced`).
            Ok(true) if self.is_leader() => Ok(()),
            Ok(true) => {
                Err("this watcher's lease ran out while its leadership was confirmed".into())
            }
            Ok(false) => Err("this watcher lost the leadership (the leader key changed)".into()),
            Err(e) => Err(format!("leadership not confirmed: {e}")),
        }
    }

    /// Campaigns and keeps the lease until `stop`; then resigns.
    pub async fn run(self: Arc<Self>, stop: Arc<std::sync::atomic::AtomicBool>) {
        // What was said last: leading or not.
        let mut was = false;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            // A lease that ran out is said before etcd is asked anything (a call can take
            // its whole timeout).
            self.say(&mut was);
            if let Err(e) = self.round().await {
                tracing::warn!("leadership: {e}");
            }
            self.say(&mut was);
            let now = was;
            // The leader renews every third of the TTL; the others try every
            // [`CAMPAIGN`] (one transaction), so a dead leader's lease is taken over soon
            // after it expires.
            let period = if now { TTL / 3 } else { CAMPAIGN };
            // Woken early when the lease runs out, so that the loss is said at once.
            let until = self.state().valid_until;
            let wake = match until {
                Some(t) if now => t.saturating_duration_since(Instant::now()).min(period),
                _ => period,
            };
            tokio::time::sleep(wake.max(Duration::from_millis(10))).await;
        }
        let lease = self.state().lease.take();
        *self.state() = State::default();
        if let Some(lease) = lease {
            // Resign: another watcher is elected at once.
            let _ = self.shared.etcd.revoke(lease).await;
        }
    }

    /// Logs a change of leadership since `was` (what was said last).
    fn say(&self, was: &mut bool) {
        let now = self.is_leader();
        if now && !*was {
            tracing::info!(
                "leading: this watcher acts (etcd key {}, revision {})",
                self.key(),
                self.state().revision.unwrap_or(0)
            );
        } else if *was && !now {
            tracing::warn!("no longer the leader: this watcher stops acting");
        }
        *was = now;
    }

    /// One round: renew the lease, or campaign.
    async fn round(&self) -> Result<(), String> {
        let (lease, renewed) = {
            let s = self.state();
            (s.lease, s.renewed)
        };
        // A follower's lease only has to outlive the next campaign: renewed every third of
        // the TTL, as the leader's, not at every campaign.
        let due = self.is_leader() || renewed.is_none_or(|t| t.elapsed() >= TTL / 3);
        if let Some(lease) = lease.filter(|_| due) {
            let sent = Instant::now();
            match self.shared.etcd.keepalive(lease).await {
                Ok(ttl) if ttl > 0 => {
                    let mut s = self.state();
                    s.valid_until = Some(lease_valid_until(sent, Duration::from_secs(ttl as u64)));
                    s.renewed = Some(sent);
                }
                Ok(_) => {
                    // Expired: start over.
                    *self.state() = State::default();
                }
                Err(e) => return Err(e),
            }
        }
        let held = self.state().revision;
        if let Some(revision) = held {
            // Still ours in etcd (someone may have deleted the key by hand)?
            if !self
                .shared
                .etcd
                .while_held(&self.key(), revision, &[])
                .await?
            {
                self.state().revision = None;
            } else {
                return Ok(());
            }
        }
        // Not leading: a lease of our own, then try to create the key.
        // Bound first: a guard in a match scrutinee would live across the await below.
        let held = self.state().lease;
        let lease = match held {
            Some(l) => l,
            None => {
                let sent = Instant::now();
                let l = self.shared.etcd.grant(TTL).await?;
                let mut s = self.state();
                s.lease = Some(l);
                s.valid_until = Some(lease_valid_until(sent, TTL));
                s.renewed = Some(sent);
                l
            }
        };
        let value = self.me.to_string();
        match self
            .shared
            .etcd
            .create(&self.key(), value.as_bytes(), lease)
            .await?
        {
            Ok(revision) => {
                let mut s = self.state();
                s.revision = Some(revision);
                s.leader = Some(self.me.clone());
            }
            Err(holder) => {
                let who = serde_json::from_slice(&holder.value).unwrap_or(json!(null));
                let mut s = self.state();
                if holder.lease == 0 && s.leader.as_ref() != Some(&who) {
                    // Written by hand, without a lease: it never expires, nobody will lead.
                    tracing::warn!(
                        "the leader key {} has no lease and will never expire: nobody can lead until it is deleted (etcdctl del {})",
                        self.key(),
                        self.key()
                    );
                }
                s.leader = Some(who);
            }
        }
        Ok(())
    }
}

impl crate::executor::fenced::Fence for Leadership {
    async fn check(&self) -> Result<(), String> {
        Leadership::check(self).await
    }

    fn holds(&self) -> Result<(), String> {
        if self.is_leader() {
            Ok(())
        } else {
            Err("this watcher's lease ran out during the step".into())
        }
    }
}
