//! `orch watch`: each cluster observed every `failover.detect.poll_interval`, its failures
//! analysed holistically ([`analyze`]), and the first actionable one recovered per policy
//! through apply's engine, locked and recorded; and `orch failover`'s recovery, which is
//! the same run started by a person.
//!
//! Takes a validated topology and policy, the state store and an executor; gives log lines
//! on stderr and runs in the history. Timing rules: a finding with certain evidence is
//! acted on after one confirming probe; an ambiguous one once it persisted for
//! `failover.detect.grace`. Guards: `failover.automatic: false` (detect and record only),
//! anti-flap (`failover.anti_flap`, cleared by `orch failover --ack`), the cluster lock
//! shared with apply (the cluster is analysed again after taking it). A former primary is
//! fenced whenever it answers again. I/O: the servers (executor), the state store, stderr,
//! the clock.

pub mod analyze;
pub mod http;
pub mod hub;
pub mod inflight;
pub mod leader;
pub mod metrics;
pub mod webhook;

mod quiesce;
#[cfg(test)]
mod thaw_tests;
#[cfg(test)]
mod views_tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use analyze::{Code, Evidence, Finding, analyze};
use hub::{Command, FailoverDone, Hub};
use webhook::{Target, Webhooks};

use crate::apply::record::{Recording, run_recorded};
use crate::apply::{Cluster, Limits, StepResult};
use crate::executor::Executor;
use crate::observe::Snapshot;
use crate::plan::recover::{NoRecovery, Recovery};
use crate::plan::{Desired, Observed, Plan};
use crate::render::Format;
use crate::spec::{Policy, Topology};
use crate::state::etcd::Op;
use crate::state::{NewRun, Outcome, RunFile, RunId, RunKind, Store, Who};
use crate::step::{Action, Phase, Step};

/// How often a leader reads the downtimes in etcd for their events (set from another
/// machine; a failure is always checked against a fresh read).
const SHARED_DOWNTIMES_EVERY: Duration = Duration::from_secs(5);

/// One cluster and what the watcher remembers between polls.
pub struct Watcher<E: Executor> {
    pub topology: Topology,
    pub policy: Policy,
    pub desired: Desired,
    pub files: Vec<RunFile>,
    pub exec: Arc<E>,
    pub store: Store,
    pub dry_run: bool,
    /// The host orch holds to be the primary.
    primary: usize,
    /// When each finding was first seen in the current episode.
    seen: HashMap<(Code, String), Instant>,
    /// Findings already logged (and refusals already recorded) in the current episode.
    said: HashSet<String>,
    /// Former primaries to fence as soon as they answer.
    to_fence: HashSet<usize>,
    /// Woken by a held connection that broke: poll now.
    wake: Arc<tokio::sync::Notify>,
    /// After a reconcile that did not succeed, the next waits until then.
    reconcile_after: Instant,
    /// What this process shares with its HTTP server and other watchers.
    pub hub: Arc<Hub>,
    /// Where the policy's webhooks are; their events go there.
    webhook_targets: Vec<Target>,
    /// Reads the files again (None: this watcher cannot reload).
    loader: Option<Box<Loader<E>>>,
    /// Set by a reload that changed the servers: the sentinels start again.
    restart_sentinels: bool,
    /// With etcd: only the leader acts (None: this process always acts).
    pub leadership: Option<Arc<leader::Leadership>>,
    /// The primary last published in etcd, and whether a write is under way.
    published: Arc<std::sync::Mutex<Published>>,
    /// The downtimes in force at the last poll (whoever set them: this process's API,
    /// `orch downtime`), to send an event when one starts or ends.
    downtimes: Vec<crate::state::Downtime>,
    /// With etcd, while leading: the downtimes recorded there (set from any machine), as
    /// last read, and when (None: not read since this process last began to lead).
    shared_downtimes: Vec<crate::state::Downtime>,
    shared_read: Option<Instant>,
    /// Unix milliseconds when this watcher was last seen not leading (or began): a
    /// downtime created before is no news when it begins to lead; one created since (its
    /// own API may take one before its first read) is.
    not_leading_at: i64,
    /// With etcd: the failover in flight as read (or written) during the leadership term
    /// `in_flight_term` (within one, only this process writes it).
    in_flight_seen: Option<inflight::InFlight>,
    in_flight_term: Option<i64>,
    /// After an attempt to finish a failover in flight that did not complete, the next
    /// waits until then.
    resume_after: Instant,
    /// A relocation (a dead intermediate's replicas, those a failover left behind) that
    /// did not succeed is tried again after [`inflight::RESUME_BACKOFF`], not every poll
    /// (a replica whose `STOP SLAVE` hangs behind a lock would fail every time).
    relocate_after: HashMap<String, Instant>,
}

/// The primary this watcher last published in etcd (and when), and whether a write is
/// under way.
#[derive(Default)]
struct Published {
    address: Option<(String, Instant)>,
    busy: bool,
}

/// What a watcher runs on: the files read and checked, the executor for their servers.
pub struct Config<E: Executor> {
    pub topology: Topology,
    pub policy: Policy,
    pub files: Vec<RunFile>,
    pub exec: Arc<E>,
    pub webhooks: Vec<Target>,
}

/// Reads a watcher's files again (a reload).
pub type Loader<E> = dyn Fn() -> anyhow::Result<Config<E>>;

/// How [`Watcher::locked`] ended.
#[derive(Debug, PartialEq)]
pub enum Acted {
    /// The finding was gone when analysed again under the lock.
    Gone,
    /// Another process holds the cluster lock.
    Busy(String),
    /// No recovery was run: why (recorded in the history unless said before).
    Refused(String),
    /// A recovery ran.
    Ran {
        run: RunId,
        outcome: Outcome,
        decision: String,
    },
}

impl Acted {
    fn succeeded(&self) -> bool {
        matches!(
            self,
            Acted::Ran {
                outcome: Outcome::Succeeded,
                ..
            }
        )
    }
}

/// What a locked run is, for its hooks and its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind<'a> {
    /// A fence, a relocation, a repair: no hooks; analysing again finds what remains.
    Repair,
    /// A failover, with the hooks' event name: pre and post hooks; in flight until done.
    Failover(&'a str),
    /// The rest of a failover in flight: post hooks only (the pre hooks ran before it
    /// began, and nothing may abort a failover half done); with the servers its attempts
    /// excluded.
    Resume(&'a [crate::plan::recover::Excluded]),
}

impl<'a> Kind<'a> {
    /// The hooks' event name (None: no hooks).
    fn event(self) -> Option<&'a str> {
        match self {
            Kind::Repair => None,
            Kind::Failover(event) => Some(event),
            Kind::Resume(_) => Some("resumed_failover"),
        }
    }
}

/// Logs one event line (with the time and the cluster, on stderr by default).
fn log(cluster: &str, line: &str) {
    tracing::info!(cluster, "{line}");
}

impl<E: Executor> Watcher<E> {
    pub fn new(
        topology: Topology,
        policy: Policy,
        files: Vec<RunFile>,
        exec: Arc<E>,
        store: Store,
        dry_run: bool,
    ) -> anyhow::Result<Watcher<E>> {
        let desired = Desired::from_topology(&topology);
        let remembered = store.cluster_state(&topology.cluster)?.current_primary;
        let primary = remembered
            .and_then(|id| desired.hosts.iter().position(|h| h.id == id))
            .or_else(|| desired.primary())
            .expect("a validated topology has a primary");
        Ok(Watcher {
            topology,
            policy,
            desired,
            files,
            exec,
            store,
            dry_run,
            primary,
            seen: HashMap::new(),
            said: HashSet::new(),
            to_fence: HashSet::new(),
            wake: Arc::new(tokio::sync::Notify::new()),
            reconcile_after: Instant::now(),
            hub: Arc::new(Hub::default()),
            webhook_targets: Vec::new(),
            loader: None,
            restart_sentinels: false,
            downtimes: Vec::new(),
            shared_downtimes: Vec::new(),
            shared_read: None,
            not_leading_at: crate::state::now_millis(),
            in_flight_seen: None,
            in_flight_term: None,
            resume_after: Instant::now(),
            relocate_after: HashMap::new(),
            leadership: None,
            published: Arc::default(),
        })
    }

    /// A watcher on `config`, sharing `hub`; `loader` reads the files again on reload.
    pub fn from_config(
        config: Config<E>,
        store: Store,
        dry_run: bool,
        hub: Arc<Hub>,
        loader: Option<Box<Loader<E>>>,
    ) -> anyhow::Result<Watcher<E>> {
        let mut w = Watcher::new(
            config.topology,
            config.policy,
            config.files,
            config.exec,
            store,
            dry_run,
        )?;
        w.hub = hub;
        w.webhook_targets = config.webhooks;
        w.loader = loader;
        Ok(w)
    }

    fn max_lag(&self) -> u64 {
        self.policy.failover.promote.max_lag.as_secs()
    }

    /// The index of the host held to be the primary.
    pub fn primary_index(&self) -> usize {
        self.primary
    }

    fn cluster(&self) -> &str {
        &self.topology.cluster
    }

    fn id(&self, i: usize) -> &str {
        &self.desired.hosts[i].id
    }

    fn index(&self, id: &str) -> Option<usize> {
        self.desired.hosts.iter().position(|h| h.id == id)
    }

    /// Says `line` once per episode (until the finding `key` clears).
    fn once(&mut self, key: String, line: &str) -> bool {
        let first = self.said.insert(key);
        if first {
            log(&self.topology.cluster, line);
        }
        first
    }

    /// One observation, judged against the primary this watcher holds (the file's, or the
    /// one a failover made): what every view shows and what recovery reads.
    pub async fn observe(&self) -> Snapshot {
        crate::executor::observe_cluster(
            self.exec.clone(),
            &self.topology,
            &self.policy,
            Some(self.id(self.primary)),
            32,
        )
        .await
    }

    /// Watches until `stop`; each poll observes, fences, analyses and acts; between polls,
    /// the commands of the API and of reloads.
    pub async fn run(mut self, stop: Arc<AtomicBool>) {
        let poll = self.policy.failover.detect.poll_interval;
        log(
            self.cluster(),
            &format!(
                "watching {} servers every {poll:?} (primary {}{})",
                self.desired.hosts.len(),
                self.id(self.primary),
                if self.dry_run { ", dry run" } else { "" }
            ),
        );
        let mut commands = self.attach();
        let mut sentinels = self.sentinels();
        while !stop.load(Ordering::SeqCst) {
            let began = Instant::now();
            let settling = match self.poll(&stop).await {
                Ok(settling) => settling,
                Err(e) => {
                    tracing::error!(cluster = self.cluster(), "error: {e:#}");
                    false
                }
            };
            // The policy may have changed at a reload.
            let poll = self.policy.failover.detect.poll_interval;
            // A server that refuses connections while its replicas have not noticed yet
            // (they do within milliseconds): look again soon rather than a poll later.
            let interval = if settling {
                poll.min(Duration::from_millis(25))
            } else {
                poll
            };
            let left = interval.saturating_sub(began.elapsed());
            let deadline = Instant::now() + left;
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let step = Duration::from_millis(20).min(left);
                tokio::select! {
                    _ = tokio::time::sleep(step) => {}
                    _ = self.wake.notified() => {
                        // The replicas' IO threads notice a closed socket within
                        // milliseconds too; give them that long.
                        tokio::time::sleep(Duration::from_millis(15)).await;
                        break;
                    }
                    Some(command) = commands.recv() => {
                        self.command(command, &stop).await;
                        break;
                    }
                }
            }
            if self.restart_sentinels {
                self.restart_sentinels = false;
                for s in sentinels.drain(..) {
                    s.abort();
                }
                sentinels = self.sentinels();
            }
        }
        for s in sentinels {
            s.abort();
        }
        // Events of the last moments still reach their receivers.
        self.flush_webhooks(Duration::from_secs(5)).await;
        log(self.cluster(), "stopped");
    }

    /// Joins the hub (the API sees this cluster) and starts the webhooks; gives the
    /// commands the API sends. Inside a tokio runtime.
    pub fn attach(&mut self) -> tokio::sync::mpsc::Receiver<Command> {
        let hosts = self.desired.hosts.iter().map(|h| h.id.clone()).collect();
        let commands = self.hub.join(self.cluster(), self.id(self.primary), hosts);
        self.start_webhooks();
        // Those already in force are not news.
        self.downtimes = self.store.downtimes(self.cluster()).unwrap_or_default();
        commands
    }

    /// Waits (at most `deadline`) for the webhooks to deliver what they hold.
    pub async fn flush_webhooks(&self, deadline: Duration) {
        if let Some(hooks) = self.hub.with(self.cluster(), |c| c.webhooks.clone()) {
            hooks.flush(deadline).await;
        }
    }

    /// One held connection per server: a killed server wakes the loop at once.
    fn sentinels(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let poll = self.policy.failover.detect.poll_interval;
        self.desired
            .hosts
            .iter()
            .map(|h| {
                let (exec, address, wake) =
                    (self.exec.clone(), h.address.clone(), self.wake.clone());
                tokio::task::spawn_local(sentinel(exec, address, wake, poll))
            })
            .collect()
    }

    /// The policy's webhooks start delivering (the previous ones finish what they hold).
    fn start_webhooks(&mut self) {
        let targets = std::mem::take(&mut self.webhook_targets);
        let hooks = if targets.is_empty() {
            Webhooks::none()
        } else {
            Webhooks::start(targets, self.hub.metrics.webhooks.clone())
        };
        self.hub.with(self.cluster(), |c| c.webhooks = hooks);
    }

    /// Sends an event about this cluster to its webhooks.
    fn event(
        &self,
        kind: &str,
        host: Option<&str>,
        message: &str,
        run: Option<RunId>,
        data: serde_json::Value,
    ) {
        self.hub
            .event(self.cluster(), kind, host, message, run.map(|r| r.0), data);
    }

    async fn command(&mut self, command: Command, stop: &Arc<AtomicBool>) {
        match command {
            Command::Failover {
                to,
                force,
                who,
                reply,
            } => {
                let done = self
                    .failover_now(to.as_deref(), force, &who, stop)
                    .await
                    .map_err(|e| format!("{e:#}"));
                let _ = reply.send(done);
            }
            Command::Reload { why } => self.reload(&why),
            // Read again at the next poll (not news on becoming the leader: still none).
            Command::DowntimesChanged => {
                self.shared_read = self
                    .shared_read
                    .map(|t| t.checked_sub(SHARED_DOWNTIMES_EVERY).unwrap_or(t));
            }
        }
    }

    /// One poll; true when a server refuses connections but its replicas still see it
    /// (the moments after a crash): the caller looks again soon.
    async fn poll(&mut self, stop: &Arc<AtomicBool>) -> anyhow::Result<bool> {
        let began = Instant::now();
        let mut snapshot = self.observe().await;
        let took = began.elapsed();
        if self.follow_primary(&snapshot)? {
            // Judged against the primary held before this very observation showed it had
            // moved: judged again, so that no view shows the former one as dead.
            snapshot =
                snapshot.judged_against(&self.topology, &self.policy, Some(self.id(self.primary)));
        }
        self.publish(&snapshot, took);
        self.downtime_events().await?;
        self.fence_returning(&snapshot, stop).await?;
        let findings = analyze(&snapshot, self.primary, self.max_lag());
        self.publish_primary(&snapshot, &findings);
        // An episode ends when its finding is gone.
        let now_keys: HashSet<(Code, String)> =
            findings.iter().map(|f| (f.code, f.host.clone())).collect();
        self.seen.retain(|k, _| now_keys.contains(k));
        let mut live: HashSet<String> = findings.iter().map(finding_key).collect();
        // What status reports as an error that no finding says (a replication that
        // stopped, semi-sync fallen back to asynchronous, an errant replica): said once
        // while it lasts, so the log and status agree.
        let said_by_findings: HashSet<(&str, &str)> = findings
            .iter()
            .map(|f| (f.code.name(), f.host.as_str()))
            .collect();
        let problems: Vec<(String, String)> = snapshot
            .problems
            .iter()
            .filter(|p| p.severity != crate::observe::classify::Severity::Warning)
            .filter(|p| !said_by_findings.contains(&(p.code.name(), p.host.as_str())))
            .map(|p| {
                (
                    format!("problem/{}/{}", p.code.name(), p.host),
                    format!("{} {}: {}", p.code.name(), p.host, p.message),
                )
            })
            .collect();
        live.extend(problems.iter().map(|(k, _)| k.clone()));
        // Things said about a finding go with it; about former primaries and drift, they
        // are cleared where those end.
        self.said.retain(|k| {
            k.starts_with("former/")
                || k.starts_with("reconcile/")
                || live.iter().any(|l| k.starts_with(l.as_str()))
        });
        for (key, line) in problems {
            self.once(key, &line);
        }
        for f in &findings {
            let first = self.once(
                finding_key(f),
                &format!(
                    "{} {} ({}): {}",
                    f.code.name(),
                    f.host,
                    evidence_name(f.evidence),
                    f.detail
                ),
            );
            if first {
                self.hub.metrics.detected(self.cluster(), f.code.name());
                self.event(
                    "detection",
                    Some(&f.host),
                    &format!("{} {}: {}", f.code.name(), f.host, f.detail),
                    None,
                    serde_json::json!({"code": f.code.name(), "evidence": evidence_name(f.evidence)}),
                );
            }
            if first
                && f.code.actionable()
                && !self.policy.hooks.on_detect.is_empty()
                && self.leadership.as_ref().is_none_or(|l| l.is_leader())
            {
                let mut values = self.values(f.code.name(), &f.detail);
                self.set_host(&mut values, "failed", &f.host);
                let runs = crate::hooks::run(
                    "on_detect",
                    &self.policy.hooks.on_detect,
                    &values,
                    self.policy.hooks.timeout,
                    false,
                )
                .await;
                self.log_hooks(&runs);
            }
        }
        // For at most one poll interval after it is first seen.
        let mut settling = false;
        for f in &findings {
            if f.code == Code::UnreachablePrimary && f.evidence == Evidence::Certain {
                let first = *self
                    .seen
                    .entry((f.code, f.host.clone()))
                    .or_insert_with(Instant::now);
                settling |= first.elapsed() < self.policy.failover.detect.poll_interval;
            }
        }
        // A failover in flight is finished before anything else is decided.
        if !settling && self.resume(stop).await? {
            return Ok(false);
        }
        let Some(f) = findings.into_iter().find(|f| f.code.actionable()) else {
            if !settling
                && self.policy.reconcile == crate::spec::policy::Reconcile::Repair
                && !self.dry_run
            {
                self.reconcile(&snapshot, stop).await?;
            }
            return Ok(settling);
        };
        let first = *self
            .seen
            .entry((f.code, f.host.clone()))
            .or_insert_with(Instant::now);
        let rule = match f.evidence {
            Evidence::Certain => {
                // One confirming probe.
                let again = self.observe().await;
                if !analyze(&again, self.primary, self.max_lag())
                    .iter()
                    .any(|g| g.code == f.code && g.host == f.host)
                {
                    return Ok(false);
                }
                "certain evidence (connections refused, every reachable replica lost it), confirmed by a second probe".to_string()
            }
            Evidence::Ambiguous => {
                let grace = self.policy.failover.detect.grace;
                if first.elapsed() < grace {
                    return Ok(false);
                }
                format!(
                    "ambiguous evidence (timeouts) that persisted for {:?} (failover.detect.grace {grace:?})",
                    first.elapsed()
                )
            }
        };
        self.act(&f, &rule, stop).await?;
        Ok(false)
    }

    /// The poll's observation, for the API, the page and the metrics.
    fn publish(&self, snapshot: &Snapshot, took: Duration) {
        let primary = self.id(self.primary).to_string();
        self.hub.metrics.observed(snapshot, &primary, took);
        let dcs = self
            .desired
            .hosts
            .iter()
            .map(|h| (h.id.clone(), h.dc.clone()))
            .collect();
        let snapshot = Arc::new(snapshot.clone());
        self.hub.with(self.cluster(), |c| {
            c.problems = snapshot.problems.len();
            c.snapshot = Some(snapshot);
            c.dcs = dcs;
            c.observed_at = Some(crate::state::now_millis());
            c.primary = primary;
        });
    }

    /// With etcd, the leader publishes the primary's `host:port` at
    /// `PREFIX/clusters/CLUSTER/primary` (and a JSON document beside it, `primary.json`):
    /// only once it answers and is writable, again every 30 s to repair drift, within a
    /// transaction that holds only while this process leads. A primary judged dead is
    /// unpublished: proxies must never be sent to a dead server. The write runs beside the
    /// poll loop (one at a time): a slow etcd never delays detection.
    fn publish_primary(&mut self, snapshot: &Snapshot, findings: &[Finding]) {
        let Some(l) = self.leadership.clone() else {
            return;
        };
        let Some(token) = l.token() else {
            self.published.lock().expect("not poisoned").address = None;
            return;
        };
        let key = l.shared.cluster_key(self.cluster(), "primary");
        let primary = self.id(self.primary).to_string();
        let dead = findings.iter().any(|f| {
            f.host == primary
                && matches!(
                    f.code,
                    Code::DeadPrimary
                        | Code::DeadPrimaryAndSomeReplicas
                        | Code::DeadPrimaryAndReplicas
                        | Code::DeadPrimaryWithoutReplicas
                )
        });
        let host = &snapshot.hosts[self.primary];
        let address = host.state.address.to_string();
        let writable = host
            .state
            .info()
            .is_some_and(|x| !x.read_only && x.replication.is_none());
        {
            let p = self.published.lock().expect("not poisoned");
            let fresh = p
                .address
                .as_ref()
                .is_some_and(|(a, at)| *a == address && at.elapsed() < Duration::from_secs(30));
            let nothing = if dead {
                p.address.is_none()
            } else {
                !writable || fresh
            };
            if p.busy || nothing {
                return;
            }
        }
        let doc = serde_json::json!({
            "cluster": self.cluster(),
            "host": primary,
            "address": address,
            "gtid": host.state.info().map(|x| x.gtid.display_position().to_string()),
            "published_at": crate::state::utc(crate::state::now_millis()),
            "by": l.me,
        })
        .to_string();
        let cluster = self.cluster().to_string();
        let published = self.published.clone();
        published.lock().expect("not poisoned").busy = true;
        tokio::task::spawn_local(async move {
            let json_key = format!("{key}.json");
            let ops = if dead {
                [Op::Delete(&key), Op::Delete(&json_key)]
            } else {
                [
                    Op::Put(&key, address.as_bytes()),
                    Op::Put(&json_key, doc.as_bytes()),
                ]
            };
            let result = l.shared.etcd.while_held(&l.key(), token, &ops).await;
            let mut p = published.lock().expect("not poisoned");
            p.busy = false;
            match result {
                Ok(true) if dead => {
                    log(
                        &cluster,
                        &format!("unpublished {key}: the primary {primary} is dead"),
                    );
                    p.address = None;
                }
                Ok(true) => {
                    if p.address.as_ref().is_none_or(|(a, _)| *a != address) {
                        log(
                            &cluster,
                            &format!("published {key} = {address} ({primary})"),
                        );
                    }
                    p.address = Some((address, Instant::now()));
                }
                // No longer the leader: the next one publishes.
                Ok(false) => {}
                Err(e) => log(&cluster, &format!("publishing {key}: {e}")),
            }
        });
    }

    /// The downtime that holds `host` (its own or the cluster's): the state store's, and
    /// with etcd the ones any leader recorded there.
    async fn downtime_of(&self, host: &str) -> anyhow::Result<Option<crate::state::Downtime>> {
        if let Some(d) = self.store.downtime_of(self.cluster(), host)? {
            return Ok(Some(d));
        }
        let Some(l) = &self.leadership else {
            return Ok(None);
        };
        let shared = l
            .shared
            .downtimes(self.cluster())
            .await
            .map_err(|e| anyhow::anyhow!("reading the downtimes from etcd: {e}"))?;
        Ok(shared
            .into_iter()
            .find(|d| d.host.as_deref().is_none_or(|h| h == host)))
    }

    /// When this cluster last failed over: the state store's, and with etcd the one any
    /// leader recorded there (anti-flap holds across a leader change), the later of both.
    async fn last_failover_at(&self) -> anyhow::Result<Option<i64>> {
        let local = self.store.cluster_state(self.cluster())?.last_failover_at;
        let Some(l) = &self.leadership else {
            return Ok(local);
        };
        let shared = l
            .shared
            .last_failover_at(self.cluster())
            .await
            .map_err(|e| anyhow::anyhow!("reading the last failover from etcd: {e}"))?;
        Ok(local.max(shared))
    }

    /// With etcd, while leading: the downtimes recorded there, read again at most every
    /// [`SHARED_DOWNTIMES_EVERY`]. Those found on becoming the leader are not news.
    async fn read_shared_downtimes(&mut self) {
        let Some(l) = self.leadership.clone().filter(|l| l.is_leader()) else {
            self.shared_read = None;
            self.not_leading_at = crate::state::now_millis();
            return;
        };
        if self
            .shared_read
            .is_some_and(|t| t.elapsed() < SHARED_DOWNTIMES_EVERY)
        {
            return;
        }
        match l.shared.downtimes(self.cluster()).await {
            Ok(list) => {
                if self.shared_read.is_none() {
                    let known: Vec<_> = list
                        .iter()
                        .filter(|d| d.created_at < self.not_leading_at)
                        .cloned()
                        .collect();
                    self.downtimes = crate::state::Downtime::merge(self.downtimes.clone(), known);
                }
                self.shared_downtimes = list;
                self.shared_read = Some(Instant::now());
            }
            // Tried again at the next poll; the leadership's own calls say etcd is gone.
            Err(e) => tracing::debug!("reading the downtimes from etcd: {e}"),
        }
    }

    /// An event for each downtime that started or ended since the last poll: in the state
    /// store, and with etcd (while leading) in etcd.
    async fn downtime_events(&mut self) -> anyhow::Result<()> {
        self.read_shared_downtimes().await;
        let local = self.store.downtimes(self.cluster())?;
        let shared_now: Vec<_> = self
            .shared_downtimes
            .iter()
            .filter(|d| d.until > crate::state::now_millis())
            .cloned()
            .collect();
        let now = crate::state::Downtime::merge(local, shared_now);
        let what = |d: &crate::state::Downtime| {
            d.host
                .clone()
                .unwrap_or_else(|| "the whole cluster".to_string())
        };
        for d in now
            .iter()
            .filter(|d| !self.downtimes.iter().any(|o| o.same(d)))
        {
            let message = format!(
                "{} downtimed until {} ({}; by {})",
                what(d),
                crate::state::utc(d.until),
                d.reason,
                d.created_by
            );
            log(self.cluster(), &message);
            self.event(
                "downtime_added",
                d.host.as_deref(),
                &message,
                None,
                serde_json::json!({"until": d.until, "reason": d.reason, "by": d.created_by}),
            );
        }
        for d in self
            .downtimes
            .iter()
            .filter(|o| !now.iter().any(|d| d.same(o)))
        {
            let message = format!("{}: downtime ended ({})", what(d), d.reason);
            log(self.cluster(), &message);
            self.event(
                "downtime_ended",
                d.host.as_deref(),
                &message,
                None,
                serde_json::json!({"reason": d.reason, "by": d.created_by}),
            );
        }
        self.downtimes = now;
        Ok(())
    }

    /// `reconcile: repair`: the plan's repairs, moves and joins, run like a recovery; never
    /// a switchover, never a change that loses a replica (those wait for `orch apply`).
    async fn reconcile(
        &mut self,
        snapshot: &Snapshot,
        stop: &Arc<AtomicBool>,
    ) -> anyhow::Result<()> {
        if Instant::now() < self.reconcile_after {
            return Ok(());
        }
        let Some(plan) = self.drift_plan(snapshot) else {
            self.said.retain(|k| !k.starts_with("reconcile/"));
            return Ok(());
        };
        if let Err(why) = plan {
            self.once(
                format!("reconcile/{why}"),
                &format!("not reconciling: {why}"),
            );
            return Ok(());
        }
        let detection = "drift from the file (reconcile: repair)".to_string();
        let outcome = self
            .locked(
                stop,
                |w, fresh| {
                    w.drift_plan(fresh).map(|p| {
                        p.map(|plan| Recovery {
                            dead: String::new(),
                            successor: w.id(w.primary).to_string(),
                            catch_up_from: None,
                            considered: Vec::new(),
                            plan,
                        })
                        .map_err(|reason| NoRecovery {
                            reason,
                            considered: Vec::new(),
                        })
                    })
                },
                &detection,
                Kind::Repair,
                "reconcile/run",
            )
            .await?;
        if !outcome.succeeded() {
            // Not again at every poll: a minute later.
            self.reconcile_after = Instant::now() + Duration::from_secs(60);
        }
        Ok(())
    }

    /// The plan that repairs the drift of `snapshot`: None when there is nothing to do;
    /// why not when it would switch the primary over or lose a replica.
    fn drift_plan(&self, snapshot: &Snapshot) -> Option<Result<Plan, String>> {
        let observed = Observed::from_snapshot(&self.desired, snapshot).ok()?;
        let plan = crate::plan::plan(
            &self.desired,
            &observed,
            &self.policy,
            crate::plan::PlanOptions::default(),
        )
        .ok()?;
        if plan.steps.is_empty() {
            return None;
        }
        if plan
            .blocked
            .iter()
            .any(|b| b.code == crate::plan::BlockCode::FailoverDrift)
        {
            return Some(Err(
                "the file still names a former primary: update it first (the former primary stays out until then)".into(),
            ));
        }
        if plan.steps.iter().any(|s| s.phase == Phase::Switchover) {
            return Some(Err(
                "the file asks for another primary: a switchover is for orch apply".into(),
            ));
        }
        if !plan.lost.is_empty() {
            let lost: Vec<&str> = plan.lost.iter().map(|l| l.host.as_str()).collect();
            return Some(Err(format!(
                "the repair would leave {} without a source: orch apply --allow-lost-replicas decides that",
                lost.join(", ")
            )));
        }
        Some(Ok(plan))
    }

    /// The live primary moved (a switchover by apply, or a failover by another watcher):
    /// follow it. True when it did.
    fn follow_primary(&mut self, snapshot: &Snapshot) -> anyhow::Result<bool> {
        let states: Vec<_> = snapshot.hosts.iter().map(|h| h.state.clone()).collect();
        let sources = crate::observe::classify::observed_sources(&states);
        let serving: Vec<usize> = (0..states.len())
            .filter(|&i| {
                states[i]
                    .info()
                    .is_some_and(|x| !x.read_only && x.replication.is_none())
            })
            .filter(|&i| sources.contains(&Some(i)))
            .collect();
        if let [p] = serving.as_slice()
            && *p != self.primary
            // The held primary is fenced, or gone (another watcher, the etcd leader, failed
            // it over: a follower follows what it sees).
            && states[self.primary].info().is_none_or(|x| x.read_only)
        {
            log(
                self.cluster(),
                &format!(
                    "the primary is now {} (was {})",
                    self.id(*p),
                    self.id(self.primary)
                ),
            );
            self.primary = *p;
            self.store.record_primary(self.cluster(), self.id(*p))?;
            return Ok(true);
        }
        Ok(false)
    }

    /// A former primary that answers again is fenced at once, never re-admitted writable.
    async fn fence_returning(
        &mut self,
        snapshot: &Snapshot,
        stop: &Arc<AtomicBool>,
    ) -> anyhow::Result<()> {
        let back: Vec<usize> = self
            .to_fence
            .iter()
            .copied()
            .filter(|&i| snapshot.hosts[i].state.info().is_some())
            .collect();
        for i in back {
            // What it has that the primary lacks (written after the last replica got its
            // events, or since it came back): reported in full, never replicated.
            let extra = match (
                snapshot.hosts[i].state.info(),
                snapshot.hosts[self.primary].state.info(),
            ) {
                (Some(theirs), Some(ours)) => theirs.holds_beyond(ours),
                _ => None,
            };
            let extra = extra.map_or(String::new(), |m| {
                format!(
                    "; it holds transactions {} lacks (reported, never replicated): {m}",
                    self.id(self.primary)
                )
            });
            if snapshot.hosts[i].state.info().is_some_and(|x| x.read_only) {
                log(
                    self.cluster(),
                    &format!(
                        "former primary {} answers again, read_only: it stays out{extra}",
                        self.id(i)
                    ),
                );
                self.to_fence.remove(&i);
                continue;
            }
            let detection = format!(
                "former primary {} answers again, writable{extra}",
                self.id(i)
            );
            // Said once per return (the fence may need several polls); the history has it
            // as the fence's detection.
            self.once(format!("former/{}/back", self.id(i)), &detection);
            let done = self
                .locked(
                    stop,
                    |w, fresh| {
                        let writable = fresh.hosts[i].state.info().is_some_and(|x| !x.read_only);
                        writable
                            .then(|| w.fence_recovery(fresh, i, "the former primary answers again"))
                    },
                    &detection,
                    Kind::Repair,
                    &format!("former/{}", self.id(i)),
                )
                .await?;
            if done.succeeded() {
                self.to_fence.remove(&i);
                self.said.remove(&format!("former/{}/back", self.id(i)));
            }
        }
        Ok(())
    }

    /// A recovery that fences host `i` (read_only, writing sessions killed).
    fn fence_recovery(
        &self,
        snapshot: &Snapshot,
        i: usize,
        why: &str,
    ) -> Result<Recovery, NoRecovery> {
        let observed =
            Observed::from_snapshot(&self.desired, snapshot).map_err(|e| NoRecovery {
                reason: e,
                considered: Vec::new(),
            })?;
        let h = &self.desired.hosts[i];
        let mut plan = empty_plan(&self.desired, &observed);
        plan.steps = vec![Step {
            number: 1,
            phase: Phase::Repair,
            host: h.id.clone(),
            address: h.address.clone(),
            action: Action::Fence { kill_writers: true },
            why: format!("{why}: read_only=ON and its writing sessions killed"),
            requires: vec![crate::step::Condition::Reachable],
            expects: vec![crate::step::Condition::ReadOnly { on: true }],
            detachable: None,
        }];
        Ok(Recovery {
            dead: h.id.clone(),
            successor: self.id(self.primary).to_string(),
            catch_up_from: None,
            considered: Vec::new(),
            plan,
        })
    }

    async fn act(&mut self, f: &Finding, rule: &str, stop: &Arc<AtomicBool>) -> anyhow::Result<()> {
        let key = finding_key(f);
        let detection = format!(
            "{} {} ({}): {}; rule: {rule}",
            f.code.name(),
            f.host,
            evidence_name(f.evidence),
            f.detail
        );
        let Some(x) = self.index(&f.host) else {
            return Ok(());
        };
        // Nothing read from etcd or the store for a decision that is not ours.
        if self.follower(&key).is_some() {
            return Ok(());
        }
        let (code, host) = (f.code, f.host.clone());
        let still = move |w: &Watcher<E>, fresh: &Snapshot| {
            analyze(fresh, w.primary, w.max_lag())
                .iter()
                .any(|g| g.code == code && g.host == host)
        };
        if f.code == Code::WritableReplica {
            self.locked(
                stop,
                |w, fresh| {
                    still(w, fresh).then(|| {
                        w.fence_recovery(fresh, x, "a writable replica")
                            .map(|mut r| {
                                // A replica's sessions are not killed: read_only suffices for
                                // ordinary accounts, and it is not where the application writes.
                                r.plan.steps[0].action = Action::Fence {
                                    kill_writers: false,
                                };
                                r
                            })
                    })
                },
                &detection,
                Kind::Repair,
                &key,
            )
            .await?;
            return Ok(());
        }
        if f.code == Code::TwoWritablePrimaries {
            if !self.policy.failover.fence_old_primary {
                self.once(
                    format!("{key}/nofence"),
                    "not fencing: failover.fence_old_primary is false",
                );
                return Ok(());
            }
            self.locked(
                stop,
                |w, fresh| {
                    still(w, fresh)
                        .then(|| w.fence_recovery(fresh, x, "writable beside the primary"))
                },
                &detection,
                Kind::Repair,
                &key,
            )
            .await?;
            return Ok(());
        }
        if let Some(d) = self.downtime_of(&f.host).await? {
            let why = format!(
                "not acting: {} is downtimed until {} ({}; by {})",
                d.host.as_deref().unwrap_or("the cluster"),
                crate::state::utc(d.until),
                d.reason,
                d.created_by
            );
            if self.once(format!("{key}/downtime"), &why) {
                self.record_refusal(&detection, &why, None)?;
            }
            return Ok(());
        }
        if !self.policy.failover.automatic {
            if self.once(
                format!("{key}/manual"),
                "not acting: failover.automatic is false (orch failover acts)",
            ) {
                self.record_refusal(&detection, "not acted: failover.automatic is false", None)?;
            }
            return Ok(());
        }
        let dead_primary = matches!(f.code, Code::DeadPrimary | Code::DeadPrimaryAndSomeReplicas);
        if dead_primary && let Some(at) = self.last_failover_at().await? {
            let since =
                Duration::from_millis(u64::try_from(crate::state::now_millis() - at).unwrap_or(0));
            let window = self.policy.failover.anti_flap;
            if since < window {
                let why = format!(
                    "blocked by anti-flap: the last failover was {}s ago (failover.anti_flap {}s); `orch failover` acts now, `orch failover --ack` clears it",
                    since.as_secs(),
                    window.as_secs()
                );
                if self.once(format!("{key}/antiflap"), &why) {
                    self.record_refusal(&detection, &why, None)?;
                }
                return Ok(());
            }
        }
        if self.dry_run {
            let snapshot = self.observe().await;
            let line = match recover(
                &self.desired,
                &snapshot,
                &self.policy,
                x,
                None,
                dead_primary,
            ) {
                Ok(r) => format!("dry run: would {}; nothing changed", decision_text(&r)),
                Err(no) => format!("dry run: no recovery: {no}"),
            };
            if self.once(format!("{key}/dry"), &line) {
                self.record_refusal(&detection, &line, None)?;
            }
            return Ok(());
        }
        if !dead_primary
            && self
                .relocate_after
                .get(&key)
                .is_some_and(|&t| Instant::now() < t)
        {
            return Ok(());
        }
        let acted = self
            .locked(
                stop,
                |w, fresh| {
                    still(w, fresh)
                        .then(|| recover(&w.desired, fresh, &w.policy, x, None, dead_primary))
                },
                &detection,
                if dead_primary {
                    Kind::Failover(f.code.name())
                } else {
                    Kind::Repair
                },
                &key,
            )
            .await?;
        if !dead_primary && matches!(acted, Acted::Ran { .. }) && !acted.succeeded() {
            self.relocate_after
                .insert(key, Instant::now() + inflight::RESUME_BACKOFF);
        }
        Ok(())
    }

    /// With etcd, when another watcher leads: why this one does not act (said once per
    /// finding `key`).
    fn follower(&mut self, key: &str) -> Option<String> {
        let l = self.leadership.as_ref()?;
        if l.is_leader() {
            return None;
        }
        let leader = l.leader().map_or("none yet".to_string(), |v| v.to_string());
        let why = format!("not acting: this watcher is not the leader (the leader: {leader})");
        self.once(format!("{key}/follower"), &why);
        Some(why)
    }

    /// Takes the cluster lock, observes again and lets `decide` look: None when the
    /// finding no longer holds; the recovery to run, or why there is none. Runs it,
    /// recorded, with the failover hooks and the failover in flight when `kind` says so.
    async fn locked(
        &mut self,
        stop: &Arc<AtomicBool>,
        decide: impl Fn(&Watcher<E>, &Snapshot) -> Option<Result<Recovery, NoRecovery>>,
        detection: &str,
        kind: Kind<'_>,
        key: &str,
    ) -> anyhow::Result<Acted> {
        if let Some(why) = self.follower(key) {
            return Ok(Acted::Busy(why));
        }
        let lock = match self
            .store
            .lock(self.cluster(), &Who::current(), crate::state::lock_ttl())
        {
            Ok(lock) => lock,
            Err(e) => {
                self.once(format!("{key}/lock"), &format!("not acting now: {e}"));
                return Ok(Acted::Busy(e.to_string()));
            }
        };
        // With etcd, the cluster's lock there too: `orch apply --etcd` on another machine
        // takes the same one.
        let etcd_lock = match &self.leadership {
            None => None,
            Some(l) => {
                let lock_key = l.shared.cluster_key(self.cluster(), "lock");
                let me = serde_json::json!({"watch": l.me});
                let leader_key = l.key();
                let token = l.token().unwrap_or(-1);
                let taken = crate::state::etcd::EtcdLock::acquire_as(
                    l.shared.etcd.clone(),
                    &lock_key,
                    &me,
                    Some((&leader_key, token)),
                )
                .await;
                match taken {
                    Ok(held) => Some(held),
                    Err(e) => {
                        self.once(format!("{key}/etcd-lock"), &format!("not acting now: {e}"));
                        lock.release()?;
                        return Ok(Acted::Busy(e));
                    }
                }
            }
        };
        let acted = self
            .locked_run(lock, stop, decide, detection, kind, key)
            .await;
        if let Some(l) = etcd_lock
            && let Err(e) = l.release().await
        {
            tracing::warn!(cluster = self.cluster(), "releasing the etcd lock: {e}");
        }
        acted
    }

    /// [`Watcher::locked`] once the locks are held; releases the state store's.
    async fn locked_run(
        &mut self,
        lock: crate::state::ClusterLock,
        stop: &Arc<AtomicBool>,
        decide: impl Fn(&Watcher<E>, &Snapshot) -> Option<Result<Recovery, NoRecovery>>,
        detection: &str,
        kind: Kind<'_>,
        key: &str,
    ) -> anyhow::Result<Acted> {
        // Analysed again under the lock: an apply may have changed things meanwhile.
        let began = Instant::now();
        let mut fresh = self.observe().await;
        let mut decided = decide(self, &fresh);
        // A failover decides on positions that no longer move: the failed primary's
        // replicas stop receiving first (one that reconnected to a primary thawing now
        // would get more than the successor), then the decision is made again on what the
        // servers say (see quiesce.rs).
        let mut stopped = Vec::new();
        if kind != Kind::Repair
            && let Some(Ok(r)) = &decided
        {
            let dead = r.dead.clone();
            stopped = self.stop_receiving(&fresh, &dead).await;
            if !stopped.is_empty() {
                fresh = self.observe_guarding(&dead).await;
                decided = decide(self, &fresh);
                if !matches!(decided, Some(Ok(_))) {
                    self.start_receiving(&stopped).await;
                }
            }
        }
        // Those stops are part of the record.
        let with_stops = format!(
            "{detection}; before deciding, {} stopped receiving from it (STOP SLAVE IO_THREAD)",
            stopped.join(", ")
        );
        let detection = if stopped.is_empty() {
            detection
        } else {
            with_stops.as_str()
        };
        let recovery = match decided {
            None => {
                log(
                    self.cluster(),
                    "gone when analysed again under the lock: nothing done",
                );
                lock.release()?;
                return Ok(Acted::Gone);
            }
            Some(Err(no)) => {
                let why = format!("no recovery: {no}");
                if self.once(format!("{key}/norecovery"), &why) {
                    self.record_refusal(detection, &why, Some(&no))?;
                }
                lock.release()?;
                let mut text = why;
                for c in &no.considered {
                    text.push_str(&format!(
                        "\n  {} at {}: {}",
                        c.host,
                        crate::plan::recover::position_text(&c.position),
                        c.verdict
                    ));
                }
                return Ok(Acted::Refused(text));
            }
            Some(Ok(r)) => r,
        };
        let decision = decision_text(&recovery);
        // The failover hooks know everything decided, the successor included.
        let values = kind.event().map(|event| {
            let mut v = self.values(event, detection);
            self.set_host(&mut v, "failed", &recovery.dead);
            self.set_host(&mut v, "successor", &recovery.successor);
            let lost: Vec<&str> = recovery.plan.lost.iter().map(|l| l.host.as_str()).collect();
            v.set("lost", lost.join(","));
            v
        });
        if let (Some(values), Kind::Failover(event)) = (&values, kind) {
            // Aborted once by a pre hook: not again until this failure clears.
            let aborted = format!("{event}/{}/pre_failover", recovery.dead);
            if self.said.contains(&aborted) {
                self.start_receiving(&stopped).await;
                lock.release()?;
                return Ok(Acted::Refused("aborted by a pre_failover hook".into()));
            }
            let pre = crate::hooks::run(
                "pre_failover",
                &self.policy.hooks.pre_failover,
                values,
                self.policy.hooks.timeout,
                true,
            )
            .await;
            self.log_hooks(&pre);
            if let Some(bad) = pre.iter().find(|h| !h.ok()) {
                self.said.insert(aborted);
                let why = format!(
                    "aborted by the pre_failover hook `{}` ({}): nothing changed",
                    bad.command,
                    hook_result(bad)
                );
                log(self.cluster(), &why);
                let post = crate::hooks::run(
                    "post_unsuccessful_failover",
                    &self.policy.hooks.post_unsuccessful_failover,
                    values,
                    self.policy.hooks.timeout,
                    false,
                )
                .await;
                self.log_hooks(&post);
                let hooks: Vec<_> = pre.into_iter().chain(post).collect();
                self.start_receiving(&stopped).await;
                self.record_refusal_with(detection, &why, None, &hooks)?;
                lock.release()?;
                return Ok(Acted::Refused(why));
            }
        }
        log(self.cluster(), &format!("recovering: {decision}"));
        let recovery_data = serde_json::json!({
            "decision": decision,
            "successor": recovery.successor,
            "lost": recovery.plan.lost.iter().map(|l| l.host.as_str()).collect::<Vec<_>>(),
        });
        self.event(
            "recovery_started",
            Some(&recovery.dead)
                .filter(|d| !d.is_empty())
                .map(String::as_str),
            &format!("recovering: {decision}"),
            None,
            recovery_data.clone(),
        );
        let observed =
            Observed::from_snapshot(&self.desired, &fresh).map_err(anyhow::Error::msg)?;
        let sql = crate::apply::record::sql_of_steps(
            &self.topology,
            &self.policy,
            &self.desired,
            &observed,
        );
        let cluster = Cluster::of(&self.desired, &observed);
        let total = recovery.plan.steps.len();
        // A failover is in flight from before its first step until its successor is the
        // primary: whoever acts next finishes it.
        let in_flight = match kind {
            Kind::Repair => None,
            Kind::Resume(excluded) => {
                let mut f = inflight::InFlight::of(&recovery, detection, &self.me());
                f.excluded = excluded.to_vec();
                Some(f)
            }
            Kind::Failover(_) => Some(inflight::InFlight::of(&recovery, detection, &self.me())),
        };
        if let Some(f) = &in_flight
            && let Err(e) = self.begin_in_flight(f).await
        {
            let why =
                format!("not acting now: the failover could not be recorded as in flight: {e}");
            self.once(format!("{key}/inflight"), &why);
            lock.release()?;
            return Ok(Acted::Busy(why));
        }
        let done = std::cell::Cell::new(0);
        let on_step = |step: &Step, result: &StepResult, took: Duration| {
            self.step_done(step, result, took, total);
            if let Some(f) = &in_flight
                && matches!(result, StepResult::Done(_))
            {
                done.set(done.get() + 1);
                self.progress_in_flight(f, done.get());
            }
        };
        // A failover of a primary that did not answer is guarded against it: fenced the
        // moment it answers writable, while the steps run (see executor::guarded).
        let former = match kind {
            Kind::Repair => None,
            _ => self
                .index(&recovery.dead)
                .filter(|&x| fresh.hosts[x].state.info().is_none())
                .map(|x| (recovery.dead.clone(), self.desired.hosts[x].address.clone())),
        };
        let guarded = Arc::new(crate::executor::guarded::Guarded::new(
            self.exec.clone(),
            former,
        ));
        let ran = AtomicBool::new(false);
        let (result, ()) = tokio::join!(
            async {
                let result = record_recovery(
                    &self.store,
                    &lock,
                    &guarded,
                    &cluster,
                    &recovery,
                    &self.files,
                    detection,
                    &sql,
                    stop.clone(),
                    Some(&on_step),
                )
                .await;
                ran.store(true, std::sync::atomic::Ordering::SeqCst);
                result
            },
            guarded.watch(&ran)
        );
        let (run, outcome, failed) = result?;
        for line in guarded.fenced() {
            log(self.cluster(), &line);
            self.event(
                "fence",
                Some(&recovery.dead),
                &line,
                Some(run),
                serde_json::json!({"during": "failover"}),
            );
        }
        let promoted = kind != Kind::Repair && outcome == Outcome::Succeeded;
        if promoted {
            self.end_in_flight(&recovery.successor).await?;
            self.primary = self.index(&recovery.successor).expect("declared");
            if let Some(old) = self.index(&recovery.dead) {
                // Never re-admitted writable: fenced the moment it answers (the guard goes
                // on looking until it is read_only; the polls look too).
                self.to_fence.insert(old);
                let (guard, stop, wake) = (guarded.clone(), stop.clone(), self.wake.clone());
                tokio::spawn(
                    async move { guard.watch_until_fenced(&stop, || wake.notify_one()).await },
                );
            }
        } else if let Some(mut f) = in_flight {
            // A server that showed it cannot do its part is left out of the next attempt,
            // which then comes at once: it is a different plan.
            let excluded = failed
                .and_then(|(n, e)| crate::plan::recover::excluded_by(&recovery, n, &e))
                .filter(|x| !f.excluded.contains(x));
            match excluded {
                Some(x) => {
                    log(
                        self.cluster(),
                        &format!(
                            "{} is left out of the next attempt of this failover: {}",
                            x.host, x.why
                        ),
                    );
                    f.excluded.push(x);
                    f.done = done.get();
                    if let Err(e) = self.begin_in_flight(&f).await {
                        tracing::warn!(
                            cluster = self.cluster(),
                            "recording what the next attempt leaves out: {e}"
                        );
                    }
                    self.pause_in_flight();
                    self.resume_after = Instant::now();
                }
                None => self.pause_in_flight(),
            }
        }
        if let Err(e) = lock.release() {
            // Taken over during the run, which stopped it and said so: the result stands.
            tracing::warn!(cluster = self.cluster(), "releasing the cluster lock: {e}");
        }
        let took = began.elapsed();
        self.hub
            .metrics
            .recovered(self.cluster(), outcome.as_str(), Some(took));
        let line = format!(
            "recovery {}: {decision} (orch history {})",
            outcome.as_str(),
            run.0
        );
        log(self.cluster(), &line);
        if promoted {
            log(
                self.cluster(),
                &format!(
                    "failover done: {} is the primary; {} will be fenced when it answers",
                    recovery.successor, recovery.dead
                ),
            );
        }
        let mut data = recovery_data;
        data["outcome"] = serde_json::json!(outcome.as_str());
        data["ms"] = serde_json::json!(took.as_millis() as u64);
        let kind = if outcome == Outcome::Succeeded {
            "recovery_finished"
        } else {
            "recovery_failed"
        };
        self.event(
            kind,
            Some(&recovery.dead)
                .filter(|d| !d.is_empty())
                .map(String::as_str),
            &line,
            Some(run),
            data,
        );
        if let Some(values) = &values {
            self.post_hooks(values, outcome, run).await?;
        }
        Ok(Acted::Ran {
            run,
            outcome,
            decision,
        })
    }

    /// A recovery's step ended: logged and sent as an event (a fence also as `fence`).
    fn step_done(&self, step: &Step, result: &StepResult, took: Duration, total: usize) {
        let ms = took.as_millis() as u64;
        let head = format!(
            "step {}/{total} {}: {}",
            step.number,
            step.host,
            step.action.describe()
        );
        let (text, error) = match result {
            StepResult::Done(_) => ("done", None),
            StepResult::Failed(e) => ("failed", Some(e.as_str())),
            StepResult::NotRun => return,
        };
        let line = match error {
            None => format!("{head} ... done ({ms} ms)"),
            Some(e) => format!("{head} ... FAILED ({ms} ms): {e}"),
        };
        log(self.cluster(), &line);
        let action = crate::apply::record::action_name(step);
        self.event(
            "recovery_step",
            Some(&step.host),
            &line,
            None,
            serde_json::json!({"number": step.number, "action": action, "result": text, "ms": ms, "error": error}),
        );
        if matches!(step.action, Action::Fence { .. }) && error.is_none() {
            self.event(
                "fence",
                Some(&step.host),
                &format!("{} fenced: read_only=ON", step.host),
                None,
                serde_json::json!({"kill_writers": matches!(step.action, Action::Fence { kill_writers: true })}),
            );
        }
    }

    /// The post hooks of a failover: `post_failover` or `post_unsuccessful_failover`. Never
    /// silent: their results go into the run, and a failed one marks it.
    async fn post_hooks(
        &self,
        values: &crate::hooks::Values,
        outcome: Outcome,
        run: RunId,
    ) -> anyhow::Result<()> {
        let (hook, commands) = if outcome == Outcome::Succeeded {
            ("post_failover", &self.policy.hooks.post_failover)
        } else {
            (
                "post_unsuccessful_failover",
                &self.policy.hooks.post_unsuccessful_failover,
            )
        };
        let post =
            crate::hooks::run(hook, commands, values, self.policy.hooks.timeout, false).await;
        self.log_hooks(&post);
        if post.is_empty() {
            return Ok(());
        }
        if let Some(mut detail) = self.store.run(run)?.and_then(|r| r.detail) {
            detail["hooks"] = serde_json::to_value(&post)?;
            self.store.set_run_detail(run, &detail)?;
        }
        if let Some(bad) = post.iter().find(|h| !h.ok()) {
            let note = format!(
                "completed, hook failed: {hook} `{}` ({})",
                bad.command,
                hook_result(bad)
            );
            let summary = self
                .store
                .run(run)?
                .and_then(|r| r.run.summary)
                .unwrap_or_default();
            self.store
                .finish_run(run, outcome, Some(&note), &format!("{summary}; {note}"))?;
            log(self.cluster(), &note);
        }
        Ok(())
    }

    /// The placeholder values every hook of this cluster knows.
    fn values(&self, event: &str, reason: &str) -> crate::hooks::Values {
        let mut v = crate::hooks::Values::default();
        v.set("cluster", self.cluster())
            .set("event", event)
            .set("reason", reason)
            .set("time", crate::state::utc(crate::state::now_millis()));
        v
    }

    /// `{role}`, `{role_address}` and `{role_dc}` for host `id`.
    fn set_host(&self, v: &mut crate::hooks::Values, role: &'static str, id: &str) {
        let (address, dc): (&'static str, &'static str) = match role {
            "failed" => ("failed_address", "failed_dc"),
            _ => ("successor_address", "successor_dc"),
        };
        v.set(role, id);
        if let Some(h) = self.desired.hosts.iter().find(|h| h.id == id) {
            v.set(address, h.address.to_string());
            v.set(dc, h.dc.clone().unwrap_or_default());
        }
    }

    fn log_hooks(&self, runs: &[crate::hooks::HookRun]) {
        for h in runs {
            log(
                self.cluster(),
                &format!(
                    "hook {} `{}`: {} in {} ms",
                    h.hook,
                    h.command,
                    hook_result(h),
                    h.millis
                ),
            );
        }
    }

    /// A detection orch did not act on, in the history.
    fn record_refusal(
        &self,
        detection: &str,
        why: &str,
        no: Option<&NoRecovery>,
    ) -> anyhow::Result<()> {
        self.record_refusal_with(detection, why, no, &[])
    }

    /// As [`Watcher::record_refusal`], with the hooks that ran.
    fn record_refusal_with(
        &self,
        detection: &str,
        why: &str,
        no: Option<&NoRecovery>,
        hooks: &[crate::hooks::HookRun],
    ) -> anyhow::Result<()> {
        let run = self.store.begin_run(NewRun {
            kind: RunKind::Recovery,
            cluster: self.cluster().to_string(),
            who: Who::current(),
            files: self.files.clone(),
            fingerprint: None,
            steps_planned: None,
        })?;
        let mut detail = serde_json::json!({"detection": detection, "decision": why});
        if let Some(no) = no {
            detail["considered"] = serde_json::to_value(&no.considered)?;
        }
        if !hooks.is_empty() {
            detail["hooks"] = serde_json::to_value(hooks)?;
        }
        self.store.set_run_detail(run, &detail)?;
        // Not acting is a decision, not a failure: nothing was tried, nothing changed.
        self.store
            .finish_run(run, Outcome::Refused, Some(why), why)?;
        self.hub.metrics.recovered(self.cluster(), "refused", None);
        self.event(
            "recovery_refused",
            None,
            why,
            Some(run),
            serde_json::json!({"detection": detection}),
        );
        Ok(())
    }

    /// A person's failover (`orch failover`, or the API's): now, whatever anti-flap and
    /// downtimes say; refused while the primary answers unless `force` (then it is fenced
    /// first). The failover hooks run as for an automatic one.
    pub async fn failover_now(
        &mut self,
        to: Option<&str>,
        force: bool,
        who: &str,
        stop: &Arc<AtomicBool>,
    ) -> anyhow::Result<FailoverDone> {
        if let Some(to) = to
            && self.index(to).is_none()
        {
            anyhow::bail!(
                "--to {to}: no such host in {}",
                self.topology.file.display()
            );
        }
        let primary = self.primary;
        let pid = self.id(primary).to_string();
        let detection = if force {
            format!(
                "orch failover --force by {who}: the primary {pid} is fenced first if it answers"
            )
        } else {
            format!("orch failover by {who}: the primary {pid} does not answer")
        };
        let refused_live = format!(
            "the primary {pid} answers: a failover is for a dead primary; to move the primary to another server, change the file and run orch plan / orch apply (a switchover loses nothing), or pass --force to fence it and fail over anyway"
        );
        let key = format!("manual/{}", crate::state::now_millis());
        let acted = if let Some(f) = self.in_flight().await? {
            // Finished, not begun again.
            if to.is_some_and(|to| to != f.successor) {
                anyhow::bail!(
                    "a failover of {} to {} is in flight (begun {}): it is finished first, to {}; run orch failover without --to",
                    f.dead,
                    f.successor,
                    crate::state::utc(f.started_at),
                    f.successor
                );
            }
            let x = self.index(&f.dead).ok_or_else(|| {
                anyhow::anyhow!(
                    "a failover of {} is in flight, but {} is no longer in the file",
                    f.dead,
                    f.dead
                )
            })?;
            let detection = format!(
                "{detection}; a failover of {} to {} was in flight: finished",
                f.dead, f.successor
            );
            self.locked(
                stop,
                |w, fresh| Some(w.rest_of(fresh, x, &f.successor, &f.excluded)),
                &detection,
                Kind::Resume(&f.excluded),
                &key,
            )
            .await?
        } else {
            self.locked(
                stop,
                |w, fresh| {
                    // A primary that answers with an error packet (out of connections,
                    // say) is alive too: failing it over would leave two writable.
                    let alive = fresh.hosts[primary].state.alive();
                    if alive && !force {
                        return Some(Err(NoRecovery {
                            reason: refused_live.clone(),
                            considered: Vec::new(),
                        }));
                    }
                    Some(recover(&w.desired, fresh, &w.policy, primary, to, true))
                },
                &detection,
                Kind::Failover("manual_failover"),
                &key,
            )
            .await?
        };
        match acted {
            Acted::Ran {
                run,
                outcome,
                decision,
            } => Ok(FailoverDone {
                run: run.0,
                outcome: outcome.as_str().to_string(),
                decision,
            }),
            Acted::Refused(why) => anyhow::bail!("{why}"),
            Acted::Busy(why) => anyhow::bail!("not now: {why}"),
            Acted::Gone => anyhow::bail!("nothing to do"),
        }
    }

    /// Reads the files again: a valid change takes effect now and is recorded; an
    /// invalid one is refused (logged, recorded) and the running configuration stays.
    fn reload(&mut self, why: &str) {
        let Some(loader) = &self.loader else {
            return;
        };
        let loaded = loader().and_then(|config| {
            if config.topology.cluster != self.topology.cluster {
                anyhow::bail!(
                    "the cluster's name changed from {} to {}: a renamed cluster needs a restart of orch watch",
                    self.topology.cluster,
                    config.topology.cluster
                );
            }
            let current = self.id(self.primary);
            if !config.topology.hosts.iter().any(|h| h.id == current) {
                anyhow::bail!(
                    "the file no longer declares {current}, the current primary: keep it until the primary moves"
                );
            }
            Ok(config)
        });
        let config = match loaded {
            Ok(c) => c,
            Err(e) => {
                let text =
                    format!("reload refused ({why}), the running configuration stays: {e:#}");
                tracing::error!(cluster = self.cluster(), "{text}");
                self.hub.metrics.reloaded(self.cluster(), "refused");
                let run = self.record_reload(Outcome::Failed, &text, &self.files.clone());
                self.event(
                    "reload_refused",
                    None,
                    &text,
                    run,
                    serde_json::json!({"why": why}),
                );
                return;
            }
        };
        if config.files == self.files {
            if why == "SIGHUP" {
                log(self.cluster(), "reload (SIGHUP): the files did not change");
            }
            return;
        }
        let changed: Vec<String> = config
            .files
            .iter()
            .filter(|f| !self.files.contains(f))
            .map(|f| f.path.clone())
            .collect();
        let primary_id = self.id(self.primary).to_string();
        let former: Vec<String> = self
            .to_fence
            .iter()
            .map(|&i| self.id(i).to_string())
            .collect();
        let old_exec = std::mem::replace(&mut self.exec, config.exec);
        tokio::task::spawn_local(async move { old_exec.close().await });
        self.desired = Desired::from_topology(&config.topology);
        self.topology = config.topology;
        self.policy = config.policy;
        self.files = config.files;
        self.webhook_targets = config.webhooks;
        self.primary = self.index(&primary_id).expect("checked above");
        self.to_fence = former.iter().filter_map(|id| self.index(id)).collect();
        self.seen.clear();
        self.said.clear();
        self.restart_sentinels = true;
        let hosts: Vec<String> = self.desired.hosts.iter().map(|h| h.id.clone()).collect();
        self.hub.with(self.cluster(), |c| c.hosts = hosts);
        self.start_webhooks();
        let text = format!(
            "reloaded ({why}): {} changed; now {} servers, poll every {:?}",
            changed.join(", "),
            self.desired.hosts.len(),
            self.policy.failover.detect.poll_interval
        );
        log(self.cluster(), &text);
        self.hub.metrics.reloaded(self.cluster(), "applied");
        let run = self.record_reload(Outcome::Succeeded, &text, &self.files.clone());
        self.event(
            "reload",
            None,
            &text,
            run,
            serde_json::json!({"why": why, "changed": changed}),
        );
    }

    /// A reload in the history (an error to record it is logged, not fatal).
    fn record_reload(&self, outcome: Outcome, text: &str, files: &[RunFile]) -> Option<RunId> {
        let recorded = (|| -> anyhow::Result<RunId> {
            let run = self.store.begin_run(NewRun {
                kind: RunKind::Reload,
                cluster: self.cluster().to_string(),
                who: Who::current(),
                files: files.to_vec(),
                fingerprint: None,
                steps_planned: None,
            })?;
            let error = (outcome != Outcome::Succeeded).then_some(text);
            self.store.finish_run(run, outcome, error, text)?;
            Ok(run)
        })();
        match recorded {
            Ok(run) => Some(run),
            Err(e) => {
                tracing::error!(cluster = self.cluster(), "recording the reload: {e:#}");
                None
            }
        }
    }
}

/// Holds a connection to one server open; wakes the watcher when it breaks (a killed
/// mysqld closes its sockets at once), then reconnects after a poll interval.
async fn sentinel<E: Executor>(
    exec: Arc<E>,
    address: crate::topology::Address,
    wake: Arc<tokio::sync::Notify>,
    poll: Duration,
) {
    use crate::executor::Hold;
    loop {
        if exec.hold(&address, Duration::from_secs(600)).await == Hold::Lost {
            wake.notify_one();
        }
        tokio::time::sleep(poll).await;
    }
}

/// A recovery plan for the failed server `x` of a snapshot: a dead primary's failover
/// (`to` forces the successor), or a dead intermediate source's relocation.
pub fn recover(
    desired: &Desired,
    snapshot: &Snapshot,
    policy: &Policy,
    x: usize,
    to: Option<&str>,
    primary: bool,
) -> Result<Recovery, NoRecovery> {
    let observed = Observed::from_snapshot(desired, snapshot).map_err(|e| NoRecovery {
        reason: e,
        considered: Vec::new(),
    })?;
    let recovery = if primary {
        crate::plan::recover::dead_primary(desired, &observed, policy, x, to)
    } else {
        crate::plan::recover::dead_intermediate(desired, &observed, policy, x)
    }?;
    // Refused before it begins (not half-way) when orch may not change a server it needs.
    let states: Vec<_> = observed
        .hosts
        .iter()
        .chain(&observed.undeclared)
        .cloned()
        .collect();
    let refused = crate::plan::preflight::refusals(&recovery.plan.steps, &states);
    if !refused.is_empty() {
        return Err(NoRecovery {
            reason: format!(
                "refused before any change: {}",
                crate::plan::preflight::text(&refused)
            ),
            considered: recovery.considered,
        });
    }
    Ok(recovery)
}

/// Runs `recovery` under `lock`, recorded (with its detection and decision) as a recovery
/// run; returns the run, how it ended and, when it failed, the step that failed and why.
#[allow(clippy::too_many_arguments)]
pub async fn record_recovery<E: Executor>(
    store: &Store,
    lock: &crate::state::ClusterLock,
    exec: &Arc<E>,
    cluster: &Cluster,
    recovery: &Recovery,
    files: &[RunFile],
    detection: &str,
    sql: &dyn Fn(&Step) -> Vec<String>,
    stop: Arc<AtomicBool>,
    on_step: Option<&crate::apply::record::OnStep<'_>>,
) -> anyhow::Result<(RunId, Outcome, Option<(usize, String)>)> {
    let plan = &recovery.plan;
    let run = store.begin_run(NewRun {
        kind: RunKind::Recovery,
        cluster: plan.cluster.clone(),
        who: Who::current(),
        files: files.to_vec(),
        fingerprint: Some(plan.fingerprint.clone()),
        steps_planned: Some(plan.steps.len()),
    })?;
    let detail = serde_json::json!({
        "detection": detection,
        "decision": decision_text(recovery),
        "considered": recovery.considered,
        "lost": plan.lost,
    });
    store.set_run_detail(run, &detail)?;
    let finished = run_recorded(
        exec.clone(),
        cluster,
        plan,
        Limits {
            expect_timeout: Duration::from_secs(10),
        },
        stop,
        Recording {
            store,
            run,
            lock,
            format: Format::Human,
            sql,
            bar: None,
            on_step,
        },
    )
    .await?;
    let failed = (!finished.report.succeeded())
        .then(|| {
            finished
                .report
                .results
                .iter()
                .enumerate()
                .filter(|(n, _)| plan.steps[*n].detachable.is_none())
                .find_map(|(n, r)| match r {
                    crate::apply::StepResult::Failed(e) => Some((n, e.clone())),
                    _ => None,
                })
        })
        .flatten();
    Ok((run, finished.outcome, failed))
}

fn empty_plan(desired: &Desired, observed: &Observed) -> Plan {
    Plan {
        schema: crate::plan::SCHEMA,
        cluster: desired.cluster.clone(),
        fingerprint: crate::plan::fingerprint(observed),
        files: Vec::new(),
        steps: Vec::new(),
        blocked: Vec::new(),
        lost: Vec::new(),
        warnings: Vec::new(),
        before: Vec::new(),
        after: Vec::new(),
    }
}

/// What a recovery will do, in one line.
pub fn decision_text(r: &Recovery) -> String {
    let fences = r
        .plan
        .steps
        .iter()
        .all(|st| matches!(st.action, Action::Fence { .. }));
    let promotes = r
        .plan
        .steps
        .iter()
        .any(|st| matches!(st.action, Action::Promote));
    let kills = r
        .plan
        .steps
        .iter()
        .any(|st| matches!(st.action, Action::Fence { kill_writers: true }));
    let drift = r
        .plan
        .steps
        .iter()
        .all(|st| matches!(st.phase, Phase::Repair | Phase::Move | Phase::Join))
        && r.dead.is_empty();
    let mut s = if drift {
        format!("reconcile: {} steps of the plan", r.plan.steps.len())
    } else if fences && kills {
        format!("fence {} (read_only, writing sessions killed)", r.dead)
    } else if fences {
        format!("fence {} (read_only)", r.dead)
    } else if promotes {
        format!("promote {} in place of {}", r.successor, r.dead)
    } else {
        format!("move {}'s replicas under {}", r.dead, r.successor)
    };
    if let Some(x) = &r.catch_up_from {
        s.push_str(&format!(" (after catching up from {x})"));
    }
    if !r.plan.lost.is_empty() {
        let lost: Vec<&str> = r.plan.lost.iter().map(|l| l.host.as_str()).collect();
        s.push_str(&format!("; lost: {}", lost.join(", ")));
    }
    s
}

/// A hook's result in a few words.
fn hook_result(h: &crate::hooks::HookRun) -> String {
    match (h.exit_code, h.timed_out) {
        (_, true) => "timed out, killed".into(),
        (Some(code), _) => format!("exit {code}"),
        (None, _) => format!("did not run: {}", h.output.trim()),
    }
}

fn finding_key(f: &Finding) -> String {
    format!("{}/{}", f.code.name(), f.host)
}

fn evidence_name(e: Evidence) -> &'static str {
    match e {
        Evidence::Certain => "certain",
        Evidence::Ambiguous => "ambiguous",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::sim::{Simulator, host_address};
    use crate::gtid::Flavor;
    use crate::observe::classify::tests::topology;

    /// A watcher on a simulated 3-node star (built-in policy: poll 1 s, grace 5 s) with
    /// its own state store.
    fn watcher(sim: &Arc<Simulator>, dir: &std::path::Path) -> Watcher<Simulator> {
        let t = topology(&[None, Some(0), Some(0)]);
        let store = Store::open(dir).unwrap();
        Watcher::new(t, Policy::default(), Vec::new(), sim.clone(), store, false).unwrap()
    }

    /// The writable server without a source, when there is exactly one and every other
    /// running server replicates from it.
    fn converged(sim: &Simulator) -> Option<usize> {
        let up: Vec<usize> = (0..3)
            .filter(|&i| {
                sim.server(host_address(i))
                    .is_some_and(|s| s.health.process_running())
            })
            .collect();
        let primaries: Vec<usize> = up
            .iter()
            .copied()
            .filter(|&i| {
                let s = sim.server(host_address(i)).unwrap();
                !s.read_only && s.replication.is_none()
            })
            .collect();
        let [p] = primaries.as_slice() else {
            return None;
        };
        up.iter()
            .all(|&i| {
                i == *p
                    || sim
                        .server(host_address(i))
                        .unwrap()
                        .replication
                        .is_some_and(|r| r.source == host_address(*p))
            })
            .then_some(*p)
    }

    /// Runs the watcher in paused time: `fault` at `at`, the simulator ticking every 10 ms,
    /// until `until`; returns when (after the fault) the cluster converged on a new
    /// primary, if it did.
    async fn scenario(
        sim: Arc<Simulator>,
        w: Watcher<Simulator>,
        at: Duration,
        fault: impl FnOnce(&Simulator),
        until: Duration,
    ) -> Option<Duration> {
        // The watcher's sentinels are local tasks.
        tokio::task::LocalSet::new()
            .run_until(async move {
                let stop = Arc::new(AtomicBool::new(false));
                let task = tokio::task::spawn_local(w.run(stop.clone()));
                let start = Instant::now();
                let mut fault = Some(fault);
                let mut faulted_at = None;
                let mut converged_after = None;
                while start.elapsed() < until {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    sim.tick();
                    if faulted_at.is_none() && start.elapsed() >= at {
                        (fault.take().unwrap())(&sim);
                        faulted_at = Some(Instant::now());
                    }
                    if let Some(f) = faulted_at
                        && converged_after.is_none()
                        && converged(&sim).is_some_and(|p| p != 0)
                    {
                        converged_after = Some(f.elapsed());
                    }
                }
                stop.store(true, Ordering::SeqCst);
                task.await.unwrap();
                converged_after
            })
            .await
    }

    fn star() -> Arc<Simulator> {
        let sim = Arc::new(Simulator::star(3, Flavor::Mariadb));
        sim.write(host_address(0), 5).unwrap();
        sim.tick();
        sim
    }

    #[tokio::test(start_paused = true)]
    async fn a_killed_primary_is_replaced_within_a_poll() {
        let dir = tempfile::tempdir().unwrap();
        let sim = star();
        let w = watcher(&sim, dir.path());
        let took = scenario(
            sim.clone(),
            w,
            Duration::from_millis(2300),
            |s| s.kill(host_address(0)),
            Duration::from_secs(6),
        )
        .await
        .expect("a failover");
        // Certain evidence: the next poll (within 1 s) and one confirming probe.
        assert!(took <= Duration::from_millis(1100), "{took:?}");
        let state = Store::open(dir.path())
            .unwrap()
            .cluster_state("sim")
            .unwrap();
        assert!(state.last_failover_at.is_some());
        assert!(matches!(
            state.current_primary.as_deref(),
            Some("h1" | "h2")
        ));
    }

    /// The former primary wrote two transactions no replica received, then died; after the
    /// failover it restarts writable: fenced, and its two transactions are named.
    #[tokio::test(start_paused = true)]
    async fn a_returning_primary_is_fenced_and_its_lost_transactions_named() {
        let dir = tempfile::tempdir().unwrap();
        let sim = star();
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let stop = Arc::new(AtomicBool::new(false));
                let task = tokio::task::spawn_local(watcher(&sim, dir.path()).run(stop.clone()));
                tokio::time::sleep(Duration::from_millis(1500)).await;
                sim.stop_io(host_address(1));
                sim.stop_io(host_address(2));
                sim.write(host_address(0), 2).unwrap();
                sim.kill(host_address(0));
                for _ in 0..300 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    sim.tick();
                }
                assert!(converged(&sim).is_some_and(|p| p != 0), "failed over");
                sim.restart(host_address(0));
                sim.set_read_only(host_address(0), false);
                for _ in 0..300 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    sim.tick();
                }
                stop.store(true, Ordering::SeqCst);
                task.await.unwrap();
            })
            .await;
        assert!(sim.server(host_address(0)).unwrap().read_only, "fenced");
        let store = Store::open(dir.path()).unwrap();
        let runs = store.runs(&crate::state::RunFilter::default()).unwrap();
        let fence = store.run(runs[0].id).unwrap().unwrap();
        let detection = fence.detail.unwrap()["detection"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            detection.contains("answers again, writable") && detection.contains("lacks"),
            "{detection}"
        );
        // Both, as the range of h0's stream the new primary never got (not only the last).
        assert!(
            detection.ends_with("(reported, never replicated): 0-1-6..7"),
            "{detection}"
        );
    }

    /// A failover that another process began (it reset h2, its successor, then died) is
    /// finished with h2, though h1 would be the fresh choice, and recorded once.
    #[tokio::test(start_paused = true)]
    async fn a_failover_in_flight_is_finished_with_its_successor() {
        let dir = tempfile::tempdir().unwrap();
        let sim = star();
        sim.kill(host_address(0));
        for i in [1, 2] {
            sim.stop_io(host_address(i));
        }
        sim.stop_replication(host_address(2));
        sim.reset_replication(host_address(2));
        sim.tick();
        let w = watcher(&sim, dir.path());
        let began = inflight::InFlight {
            dead: "h0".into(),
            successor: "h2".into(),
            decision: "promote h2".into(),
            detection: "dead-primary h0".into(),
            started_at: crate::state::now_millis(),
            by: serde_json::json!({"id": "a watcher that died"}),
            steps: vec!["1 h1: stop io".into(), "2 h2: stop io".into()],
            done: 1,
            excluded: Vec::new(),
        };
        w.store
            .set_in_flight("sim", Some(&serde_json::to_string(&began).unwrap()))
            .unwrap();
        scenario(
            sim.clone(),
            w,
            Duration::ZERO,
            |_| {},
            Duration::from_secs(4),
        )
        .await;
        assert_eq!(converged(&sim), Some(2));
        let store = Store::open(dir.path()).unwrap();
        let state = store.cluster_state("sim").unwrap();
        assert_eq!(state.in_flight, None);
        assert_eq!(state.current_primary.as_deref(), Some("h2"));
        assert!(state.last_failover_at.is_some());
        let runs = store.runs(&crate::state::RunFilter::default()).unwrap();
        assert_eq!(runs.len(), 1, "{runs:?}");
        let run = store.run(runs[0].id).unwrap().unwrap();
        let detection = run.detail.unwrap()["detection"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            detection.contains("a failover of h0 to h2 in flight")
                && detection.contains("by a watcher that died")
                && detection.contains("1 of 2 steps done"),
            "{detection}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_frozen_primary_is_replaced_only_after_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let sim = star();
        let w = watcher(&sim, dir.path());
        let took = scenario(
            sim.clone(),
            w,
            Duration::from_millis(2300),
            |s| s.freeze(host_address(0)),
            Duration::from_secs(12),
        )
        .await
        .expect("a failover");
        // Ambiguous evidence: at least the grace (5 s) after it was first seen, and not
        // much later.
        assert!(took >= Duration::from_secs(5), "{took:?}");
        assert!(took <= Duration::from_secs(7), "{took:?}");
    }

    /// No replica may be promoted: nothing changes, and the refusal is recorded once for
    /// the whole outage, not at every poll.
    #[tokio::test(start_paused = true)]
    async fn no_candidate_is_recorded_once_per_outage() {
        let dir = tempfile::tempdir().unwrap();
        let sim = star();
        let mut t = topology(&[None, Some(0), Some(0)]);
        for h in &mut t.hosts[1..] {
            h.promotion = crate::spec::Promotion::MustNot;
        }
        let store = Store::open(dir.path()).unwrap();
        let w = Watcher::new(t, Policy::default(), Vec::new(), sim.clone(), store, false).unwrap();
        let took = scenario(
            sim.clone(),
            w,
            Duration::from_secs(2),
            |s| s.kill(host_address(0)),
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(took, None);
        let runs = Store::open(dir.path())
            .unwrap()
            .runs(&crate::state::RunFilter::default())
            .unwrap();
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert!(
            runs[0]
                .summary
                .as_deref()
                .is_some_and(|s| s.contains("no replica of h0 can be promoted")),
            "{runs:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_primary_only_orch_lost_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let sim = star();
        let w = watcher(&sim, dir.path());
        let took = scenario(
            sim.clone(),
            w,
            Duration::from_secs(2),
            |s| s.partition_from_orch(host_address(0)),
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(took, None);
        assert!(!sim.server(host_address(0)).unwrap().read_only);
    }

    /// Out of connections (error 1040 for orch and for its replicas' reconnecting IO
    /// threads), the primary is alive: never replaced by the watcher, and a person's
    /// failover without --force is refused.
    #[tokio::test(start_paused = true)]
    async fn a_primary_out_of_connections_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let sim = star();
        let w = watcher(&sim, dir.path());
        let took = scenario(
            sim.clone(),
            w,
            Duration::from_secs(2),
            |s| {
                s.exhaust_connections(host_address(0));
                for i in [1, 2] {
                    s.stop_replication(host_address(i));
                    s.start_replication(host_address(i));
                }
            },
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(took, None);
        assert!(!sim.server(host_address(0)).unwrap().read_only);
        let mut w = watcher(&sim, dir.path());
        let stop = Arc::new(AtomicBool::new(false));
        let refused = w.failover_now(None, false, "test", &stop).await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| format!("{e:#}").contains("the primary h0 answers")),
            "{:?}",
            refused.map(|_| ())
        );
        assert!(!sim.server(host_address(0)).unwrap().read_only);
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_failure_within_anti_flap_is_not_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let sim = star();
        scenario(
            sim.clone(),
            watcher(&sim, dir.path()),
            Duration::from_secs(2),
            |s| s.kill(host_address(0)),
            Duration::from_secs(5),
        )
        .await
        .expect("the first failover");
        let new = converged(&sim).unwrap();
        // The watcher restarts (the store remembers), the new primary dies.
        let sim2 = sim.clone();
        let took = scenario(
            sim.clone(),
            watcher(&sim, dir.path()),
            Duration::from_secs(2),
            move |s| s.kill(host_address(new)),
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(took, None, "anti-flap holds the second failover back");
        let runs = Store::open(dir.path())
            .unwrap()
            .runs(&crate::state::RunFilter::default())
            .unwrap();
        // Recorded as a refusal (orch decided not to act), not as a failure.
        assert!(
            runs.iter().any(|r| r.outcome == Outcome::Refused
                && r.summary
                    .as_deref()
                    .is_some_and(|s| s.contains("anti-flap"))),
            "{runs:?}"
        );
        assert!(converged(&sim2).is_none(), "nothing promoted");
    }
}
