//! A failover in flight. From before its first step until its successor is the primary, a
//! dead primary's failover is recorded with its dead primary, its successor, its steps and
//! how many are done: in the state store, or with etcd at `PREFIX/clusters/C/recovery`,
//! written only while its writer leads (the progress rides on each step's fencing check).
//! Whoever acts next on the cluster (the same watcher after a failed step or a restart, a
//! new leader after the old one died) finishes it from what the servers say then
//! ([`crate::plan::recover::resume_failover`]): with the same successor once anything
//! irreversible was done, never as a second failover, never refused because another
//! process began it. Fences and relocations are not recorded: analysing the servers again
//! finds what remains of them. I/O: the state store, etcd.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::{Kind, Watcher, decision_text, log};
use crate::executor::Executor;
use crate::observe::Snapshot;
use crate::plan::Observed;
use crate::plan::recover::{Excluded, NoRecovery, Recovery};
use crate::state::etcd::Op;

/// After a resumption that did not complete, the next waits this long.
pub const RESUME_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InFlight {
    pub dead: String,
    pub successor: String,
    pub decision: String,
    pub detection: String,
    /// Unix milliseconds.
    pub started_at: i64,
    /// Who runs it (the leader key's value with etcd).
    pub by: Value,
    /// `N host: what`, in order.
    pub steps: Vec<String>,
    /// How many steps are done (they run in order).
    pub done: usize,
    /// Servers an attempt showed the failover cannot count on: the next attempt decides
    /// without them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<Excluded>,
}

impl InFlight {
    pub fn of(recovery: &Recovery, detection: &str, by: &Value) -> InFlight {
        InFlight {
            dead: recovery.dead.clone(),
            successor: recovery.successor.clone(),
            decision: decision_text(recovery),
            detection: detection.to_string(),
            started_at: crate::state::now_millis(),
            by: by.clone(),
            steps: recovery
                .plan
                .steps
                .iter()
                .map(|s| format!("{} {}: {}", s.number, s.host, s.action.describe()))
                .collect(),
            done: 0,
            excluded: Vec::new(),
        }
    }

    fn json(&self) -> String {
        serde_json::to_string(self).expect("serializable")
    }
}

impl<E: Executor> Watcher<E> {
    /// Who acts, as records say: the leader key's value with etcd, else user@host:pid.
    pub(super) fn me(&self) -> Value {
        match &self.leadership {
            Some(l) => l.me.clone(),
            None => {
                let who = crate::state::Who::current();
                serde_json::json!({"id": format!("{}@{}:{}", who.user, who.host, who.pid)})
            }
        }
    }

    /// This cluster's failover in flight: etcd's with etcd, else the state store's. Within
    /// one leadership term only this process creates it, so "none" is read once per term;
    /// one in flight is read again each time (an operator may have deleted it by hand).
    pub(super) async fn in_flight(&mut self) -> anyhow::Result<Option<InFlight>> {
        let parse = |text: &[u8]| {
            serde_json::from_slice::<InFlight>(text).map_err(|e| {
                anyhow::anyhow!(
                    "the failover in flight is unreadable ({e}): `orch failover` decides"
                )
            })
        };
        let Some(l) = self.leadership.clone() else {
            return match self.store.cluster_state(self.cluster())?.in_flight {
                Some(text) => parse(text.as_bytes()).map(Some),
                None => Ok(None),
            };
        };
        let term = l.token();
        if term.is_some() && term == self.in_flight_term && self.in_flight_seen.is_none() {
            return Ok(None);
        }
        let read = l
            .shared
            .etcd
            .get(&l.shared.cluster_key(self.cluster(), "recovery"))
            .await
            .map_err(|e| anyhow::anyhow!("reading the failover in flight from etcd: {e}"))?;
        let found = match read {
            Some(kv) => Some(parse(&kv.value)?),
            None => None,
        };
        self.in_flight_term = term;
        self.in_flight_seen = found.clone();
        Ok(found)
    }

    /// Records `f` before its first step; Err: it could not be, and nothing may run.
    pub(super) async fn begin_in_flight(&mut self, f: &InFlight) -> anyhow::Result<()> {
        let Some(l) = self.leadership.clone() else {
            self.store.set_in_flight(self.cluster(), Some(&f.json()))?;
            return Ok(());
        };
        let token = l
            .token()
            .ok_or_else(|| anyhow::anyhow!("this watcher is no longer the leader"))?;
        let key = l.shared.cluster_key(self.cluster(), "recovery");
        let doc = f.json();
        match l
            .shared
            .etcd
            .while_held(&l.key(), token, &[Op::Put(&key, doc.as_bytes())])
            .await
        {
            Ok(true) => {}
            Ok(false) => anyhow::bail!("this watcher lost the leadership"),
            Err(e) => anyhow::bail!("etcd: {e}"),
        }
        self.in_flight_term = Some(token);
        self.in_flight_seen = Some(f.clone());
        l.carry(Some((key, doc.into_bytes())));
        Ok(())
    }

    /// `done` steps of `f` are done: in the state store now; with etcd, written by the
    /// next step's fencing check.
    pub(super) fn progress_in_flight(&self, f: &InFlight, done: usize) {
        let mut f = f.clone();
        f.done = done;
        match &self.leadership {
            Some(l) => l.carry(Some((
                l.shared.cluster_key(self.cluster(), "recovery"),
                f.json().into_bytes(),
            ))),
            None => {
                if let Err(e) = self.store.set_in_flight(self.cluster(), Some(&f.json())) {
                    tracing::warn!(
                        cluster = self.cluster(),
                        "recording a failover's progress: {e}"
                    );
                }
            }
        }
    }

    /// A failover that began did not complete: it stays in flight; the next attempt to
    /// finish it waits [`RESUME_BACKOFF`].
    pub(super) fn pause_in_flight(&mut self) {
        if let Some(l) = &self.leadership {
            l.carry(None);
        }
        self.resume_after = Instant::now() + RESUME_BACKOFF;
    }

    /// The failover made `successor` the primary: no longer in flight, and the last
    /// failover (anti-flap), in the state store and with etcd there too, in one
    /// transaction while this process leads.
    pub(super) async fn end_in_flight(&mut self, successor: &str) -> anyhow::Result<()> {
        self.store.record_failover(self.cluster(), successor)?;
        let Some(l) = self.leadership.clone() else {
            return Ok(());
        };
        l.carry(None);
        let Some(token) = l.token() else {
            tracing::error!(
                cluster = self.cluster(),
                "the failover completed but this watcher no longer leads: the next leader finds it in flight and completes it (no steps)"
            );
            return Ok(());
        };
        let doc = serde_json::json!({
            "at": crate::state::now_millis(),
            "successor": successor,
            "by": l.me,
        })
        .to_string();
        let last = l.shared.cluster_key(self.cluster(), "last_failover");
        let recovery = l.shared.cluster_key(self.cluster(), "recovery");
        match l
            .shared
            .etcd
            .while_held(
                &l.key(),
                token,
                &[Op::Put(&last, doc.as_bytes()), Op::Delete(&recovery)],
            )
            .await
        {
            Ok(true) => {
                self.in_flight_seen = None;
            }
            Ok(false) => tracing::error!(
                cluster = self.cluster(),
                "the failover completed, but this watcher lost the leadership before recording it in etcd: the next leader completes it (no steps)"
            ),
            Err(e) => tracing::error!(
                cluster = self.cluster(),
                "recording the completed failover in etcd: {e} (the next leader completes it: no steps)"
            ),
        }
        Ok(())
    }

    /// Each poll, before anything else is acted on: finishes this cluster's failover in
    /// flight. true: there is one (nothing else is acted on in this poll).
    pub(super) async fn resume(&mut self, stop: &Arc<AtomicBool>) -> anyhow::Result<bool> {
        if self.leadership.as_ref().is_some_and(|l| !l.is_leader()) {
            // Not this watcher's to finish.
            return Ok(false);
        }
        if Instant::now() < self.resume_after && self.in_flight_seen.is_some() {
            // Paused (with etcd): read again when it is time to try again.
            return Ok(true);
        }
        let f = match self.in_flight().await {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(false),
            Err(e) => {
                self.once("inflight/read".into(), &format!("not acting now: {e}"));
                return Ok(true);
            }
        };
        let key = format!("inflight/{}/{}", f.dead, f.successor);
        if Instant::now() < self.resume_after {
            return Ok(true);
        }
        let Some(x) = self.index(&f.dead) else {
            self.once(
                format!("{key}/undeclared"),
                &format!(
                    "a failover of {} is in flight, but {} is no longer in the file: `orch failover` decides",
                    f.dead, f.dead
                ),
            );
            return Ok(true);
        };
        let detection = format!(
            "a failover of {} to {} in flight, begun by {} at {} ({} of {} steps done): finished from what the servers say now",
            f.dead,
            f.successor,
            f.by["id"].as_str().unwrap_or("?"),
            crate::state::utc(f.started_at),
            f.done,
            f.steps.len()
        );
        if let Some(d) = self.downtime_of(&f.dead).await? {
            self.once(
                format!("{key}/downtime"),
                &format!(
                    "not finishing the failover in flight: {} is downtimed until {} ({})",
                    d.host.as_deref().unwrap_or("the cluster"),
                    crate::state::utc(d.until),
                    d.reason
                ),
            );
            return Ok(true);
        }
        if self.dry_run {
            self.once(
                format!("{key}/dry"),
                &format!("dry run: {detection}; nothing changed"),
            );
            return Ok(true);
        }
        self.once(key.clone(), &detection);
        let successor = f.successor.clone();
        let before = self.resume_after;
        let acted = self
            .locked(
                stop,
                |w, fresh| Some(w.rest_of(fresh, x, &successor, &f.excluded)),
                &detection,
                Kind::Resume(&f.excluded),
                &key,
            )
            .await?;
        // A run that failed set its own time to try again (at once when it left a server
        // out); one that never ran waits.
        if !acted.succeeded() && self.resume_after == before {
            self.resume_after = Instant::now() + RESUME_BACKOFF;
        }
        Ok(true)
    }

    /// The rest of a failover of `x` to `successor`, from `fresh`.
    pub(super) fn rest_of(
        &self,
        fresh: &Snapshot,
        x: usize,
        successor: &str,
        excluded: &[Excluded],
    ) -> Result<Recovery, NoRecovery> {
        let observed = Observed::from_snapshot(&self.desired, fresh).map_err(|e| NoRecovery {
            reason: e,
            considered: Vec::new(),
        })?;
        let r = crate::plan::recover::resume_failover(
            &self.desired,
            &observed,
            &self.policy,
            x,
            successor,
            excluded,
        )?;
        if r.plan.steps.is_empty() {
            log(
                self.cluster(),
                &format!(
                    "the failover in flight had completed: {} is the primary",
                    r.successor
                ),
            );
        }
        Ok(r)
    }
}
