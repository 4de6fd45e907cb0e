//! The step model: the topology at the level plan steps see it, and what each step does.
//!
//! Takes observed servers, gives a [`Model`] that steps are applied to, one at a time, each
//! checked against its preconditions and the cluster invariants. The planner builds its
//! plan on a model (so every decision sees the effect of the steps before it), and the proof
//! replays the finished plan on a fresh model seeded from the same observation. Pure.
//!
//! Positions are not numbers here: what matters to a step is whether one server is
//! *known to have* everything another has executed (`contains`), because pointing a
//! replica at a source that lacks part of the replica's history fails (MariaDB error 1236
//! under `gtid_strict_mode`) or silently forks it. The model knows it when:
//! - the source is an ancestor of the replica (everything a replica has came through it);
//! - a wait step proved it, and the waited-for server has not moved since;
//! - the source is the cluster's primary and the replica has no errant transactions;
//! - the replica has not moved since it was observed, and the observed positions say so.

use std::collections::{HashMap, HashSet};

use crate::gtid::{Flavor, GtidSet, ServerGtids};
use crate::observe::classify::observed_sources;
use crate::observe::{IoState, ServerState};
use crate::topology::Address;

use crate::step::Action;

/// A replica's replication as a step sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkState {
    Running,
    Stopped,
    /// Stopped or failing with an error (the text says which).
    Broken {
        sql: bool,
        error: String,
    },
}

#[derive(Clone, Debug)]
pub struct Link {
    /// The model index of the source, when it is a server of the model.
    pub source: Option<usize>,
    /// The source as the replica names it.
    pub source_name: String,
    pub state: LinkState,
    /// Using GTID positioning (MariaDB `Using_Gtid` not `No`, MySQL auto-position).
    pub gtid: bool,
    pub delay: u32,
    pub seconds_behind: Option<u64>,
    /// The source's server_id as the replica last saw it (0: never connected): a dead
    /// primary's identity, which its replicas still know.
    pub source_server_id: u32,
}

/// What the model knows of one reachable server.
#[derive(Clone, Debug)]
pub struct Live {
    pub flavor: Flavor,
    pub version: String,
    /// (major, minor): replication works from an older source to a newer replica only.
    pub release: (u32, u32),
    pub server_id: u32,
    pub read_only: bool,
    pub log_bin: bool,
    pub log_replica_updates: bool,
    /// MySQL `gtid_mode=ON`; always true on MariaDB (every transaction has a GTID).
    pub gtid_enabled: bool,
    pub link: Option<Link>,
    pub gtids: Option<ServerGtids>,
    pub position: Option<GtidSet>,
    pub purged: Option<GtidSet>,
    /// MariaDB: `gtid_current_pos` differs from `gtid_slave_pos` (the server wrote
    /// transactions of its own: a former primary, or errant writes). MySQL: it has
    /// transactions its source never sent it ([`super::mysql_errant`]).
    pub own_writes: bool,
    /// Has transactions the cluster's primary never had.
    pub errant: bool,
    /// The position has not moved since it was observed (read_only, not replicating).
    pub as_observed: bool,
    /// Schemas other than the system ones (None: not observed).
    pub user_schemas: Option<Vec<String>>,
    /// What the IO thread received (MariaDB `Gtid_IO_Pos`, MySQL `Retrieved_Gtid_Set`);
    /// once applied, the position is this merged in.
    pub received: Option<GtidSet>,
    /// Once it receives nothing more (its IO thread stopped), the most it can ever have
    /// executed until it replicates again: its position with what it received merged in.
    /// A server that has this much knows it has everything the replica has or will have,
    /// whether or not its SQL thread ever applies the rest (delayed, stopped, blocked).
    pub ceiling: Option<GtidSet>,
    /// Why its SQL thread does not apply what it receives (stopped, or failed with an
    /// error); None when it does (or it is no replica).
    pub applier_down: Option<String>,
    /// Replication filters in force (`replicate_do_db=shop`): it may lack whole schemas.
    pub filters: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub id: String,
    pub address: Address,
    /// In the topology file (undeclared servers are replicas found through their sources).
    pub declared: bool,
    /// None: unreachable or not observed.
    pub live: Option<Live>,
}

#[derive(Clone, Debug)]
pub struct Model {
    pub nodes: Vec<Node>,
    /// The writable server with no source that the others replicate from, when known.
    pub primary: Option<usize>,
    /// `(x, u)`: a wait proved that x has everything u has executed; dropped when u moves.
    known: HashMap<usize, HashSet<usize>>,
    replicas: Vec<Vec<usize>>,
    /// Links that are allowed to stay broken: replicas the plan reports as lost.
    pub lost: HashSet<usize>,
    index: HashMap<String, usize>,
}

/// What a server that receives nothing more can ever execute: its position with what it
/// received merged in. A delayed replica (`delay_secs`) applies nothing it received within
/// its delay while a change runs, so its position is the bound (what it received beyond
/// is dropped when it changes source; the apply engine checks its executed GTIDs against
/// the new source's again right before).
fn ceiling_of(
    position: &Option<GtidSet>,
    received: &Option<GtidSet>,
    delay_secs: u32,
) -> Option<GtidSet> {
    if delay_secs > 0 {
        return position.clone();
    }
    match (position, received) {
        (Some(p), Some(r)) => p.merged(r).ok(),
        (Some(p), None) => Some(p.clone()),
        _ => None,
    }
}

/// "10.11.6-MariaDB-log" → (10, 11).
pub fn release(version: &str) -> (u32, u32) {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

impl Model {
    /// Seeds the model: `servers[i]` is named `ids[i]`; the first `declared` are in the file.
    pub fn new(
        ids: &[String],
        servers: &[ServerState],
        declared: usize,
        preferred: Option<usize>,
    ) -> Model {
        let sources = observed_sources(servers);
        // MySQL cannot tell its own writes on the server itself: compared with the
        // source, or with the other replicas of a dead one.
        let mysql_own_writes = super::mysql_errant::own_writes(servers, &sources);
        let nodes: Vec<Node> = servers
            .iter()
            .enumerate()
            .map(|(i, s)| Node {
                id: ids[i].clone(),
                address: s.address.clone(),
                declared: i < declared,
                live: s.info().map(|inf| {
                    let link = inf.replication.as_ref().map(|r| {
                        let io_error = r.last_io_error.as_ref();
                        let sql_error = r.last_sql_error.as_ref();
                        let state = if let Some(e) = sql_error {
                            LinkState::Broken {
                                sql: true,
                                error: format!("SQL thread error {}: {}", e.errno, e.message),
                            }
                        } else if let Some(e) = io_error.filter(|_| r.io != IoState::Running) {
                            LinkState::Broken {
                                sql: false,
                                error: format!("IO thread error {}: {}", e.errno, e.message),
                            }
                        } else if r.io != IoState::Stopped && r.sql_running {
                            LinkState::Running
                        } else {
                            LinkState::Stopped
                        };
                        Link {
                            source: sources[i],
                            source_name: format!("{}:{}", r.source_host, r.source_port),
                            state,
                            gtid: !r.gtid_mode.eq_ignore_ascii_case("no"),
                            delay: r.sql_delay,
                            seconds_behind: r.seconds_behind,
                            source_server_id: r.source_server_id,
                        }
                    });
                    let (gtid_enabled, own_writes) = match &inf.gtid {
                        crate::observe::Gtids::Mariadb {
                            current_pos,
                            slave_pos,
                            ..
                        } => (true, current_pos != slave_pos),
                        crate::observe::Gtids::Mysql { gtid_mode, .. } => {
                            (gtid_mode.eq_ignore_ascii_case("on"), mysql_own_writes[i])
                        }
                    };
                    let running = link.as_ref().is_some_and(|l| l.state == LinkState::Running);
                    let received = inf
                        .replication
                        .as_ref()
                        .and_then(|r| GtidSet::parse(inf.flavor, &r.retrieved_gtid).ok());
                    let position = inf.gtid.position();
                    // Nothing arrives while the IO thread is stopped (or failing to
                    // connect, which it may yet do: only a stopped one is a ceiling).
                    let ceiling = inf
                        .replication
                        .as_ref()
                        .filter(|r| r.io == IoState::Stopped)
                        .and_then(|r| ceiling_of(&position, &received, r.sql_delay));
                    let applier_down = inf.replication.as_ref().and_then(|r| {
                        match (&r.last_sql_error, r.sql_running) {
                            (Some(e), _) => Some(format!(
                                "its SQL thread failed (error {}: {}): it applies nothing",
                                e.errno, e.message
                            )),
                            (None, false) => {
                                Some("its SQL thread is stopped: it applies nothing".to_string())
                            }
                            (None, true) => None,
                        }
                    });
                    Live {
                        flavor: inf.flavor,
                        version: inf.version.clone(),
                        release: release(&inf.version),
                        server_id: inf.server_id,
                        read_only: inf.read_only,
                        log_bin: inf.log_bin,
                        log_replica_updates: inf.log_replica_updates,
                        gtid_enabled,
                        link,
                        gtids: inf.gtid.server_gtids(inf.server_id),
                        position,
                        purged: inf.gtid.purged(),
                        own_writes,
                        errant: false,
                        as_observed: inf.read_only && !running,
                        user_schemas: inf.user_schemas.clone(),
                        received,
                        ceiling,
                        applier_down,
                        filters: inf
                            .replication
                            .as_ref()
                            .map(|r| r.filters.clone())
                            .unwrap_or_default(),
                    }
                }),
            })
            .collect();
        let mut replicas = vec![Vec::new(); nodes.len()];
        for (i, s) in sources.iter().enumerate() {
            if let (Some(s), Some(_)) = (s, nodes[i].live.as_ref().and_then(|l| l.link.as_ref())) {
                replicas[*s].push(i);
            }
        }
        let index = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        let mut model = Model {
            index,
            nodes,
            primary: None,
            known: HashMap::new(),
            replicas,
            lost: HashSet::new(),
        };
        // The primary: the one declared server without a source; among several, the one
        // others replicate from; among several with none (a cluster being built from
        // fresh servers), the file's.
        let roots: Vec<usize> = (0..declared)
            .filter(|&i| model.live(i).is_some_and(|l| l.link.is_none()))
            .collect();
        let serving: Vec<usize> = roots
            .iter()
            .copied()
            .filter(|&r| !model.replicas[r].is_empty())
            .collect();
        // Several serving roots, none writable, the file's among them and ahead of all the
        // others: a switchover stopped half-way (both fenced, some replicas already moved):
        // the file's is the primary, and finishing the switchover loses nothing.
        let has_all_of = |p: usize, r: usize| {
            model.live(r).is_some_and(|l| l.as_observed)
                && model.live(p).zip(model.live(r)).is_some_and(|(lp, lr)| {
                    match (&lp.position, &lr.position) {
                        (Some(a), Some(b)) => a.contains(b).unwrap_or(false),
                        _ => false,
                    }
                })
        };
        let read_only = |r: usize| model.live(r).is_some_and(|l| l.read_only);
        let interrupted = |p: usize| {
            serving.contains(&p)
                && roots
                    .iter()
                    .all(|&r| read_only(r) && (r == p || has_all_of(p, r)))
        };
        // The file's primary is the only writable root and has everything the other
        // (read_only) roots have: a switchover stopped after the promotion, before the old
        // primary was repointed. It is the primary; repointing the rest loses nothing.
        let promoted = |p: usize| {
            roots.contains(&p)
                && !read_only(p)
                && roots
                    .iter()
                    .all(|&r| r == p || (read_only(r) && has_all_of(p, r)))
        };
        model.primary = match (roots.as_slice(), serving.as_slice()) {
            ([only], _) => Some(*only),
            _ if preferred.is_some_and(promoted) => preferred,
            (_, [only]) => Some(*only),
            (_, []) => preferred.filter(|p| roots.contains(p)),
            _ => preferred.filter(|&p| interrupted(p)),
        };
        if let Some(p) = model.primary {
            model.mark_errant(p);
        }
        model
    }

    /// Marks every server with transactions the primary `p` never had.
    fn mark_errant(&mut self, p: usize) {
        let Some(primary_gtids) = self.live(p).and_then(|l| l.gtids.clone()) else {
            return;
        };
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if let Some(live) = node.live.as_mut() {
                live.errant = i != p
                    && live.gtids.as_ref().is_none_or(|mine| {
                        mine.errant_relative_to(&primary_gtids)
                            .map(|e| !e.is_empty())
                            .unwrap_or(true)
                    });
            }
        }
    }
    /// The model of an observation: the desired hosts, then the undeclared servers.
    pub fn of(desired: &super::Desired, observed: &super::Observed) -> Model {
        let ids = super::names(desired, observed);
        let servers: Vec<_> = observed
            .hosts
            .iter()
            .chain(&observed.undeclared)
            .cloned()
            .collect();
        Model::new(&ids, &servers, desired.hosts.len(), desired.primary())
    }

    /// The model index of a server by name.
    pub fn find(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    pub fn live(&self, i: usize) -> Option<&Live> {
        self.nodes[i].live.as_ref()
    }

    pub fn link(&self, i: usize) -> Option<&Link> {
        self.live(i)?.link.as_ref()
    }

    /// The source index a server replicates from, if it is in the model.
    pub fn source(&self, i: usize) -> Option<usize> {
        self.link(i)?.source
    }

    pub fn replicas_of(&self, i: usize) -> &[usize] {
        &self.replicas[i]
    }

    pub fn writable(&self, i: usize) -> bool {
        self.live(i).is_some_and(|l| !l.read_only)
    }

    /// Is `a` an ancestor of `b` (following sources up from `b`)?
    pub fn is_ancestor(&self, a: usize, b: usize) -> bool {
        let mut x = b;
        for _ in 0..self.nodes.len() {
            match self.source(x) {
                Some(s) if s == a => return true,
                Some(s) => x = s,
                None => return false,
            }
        }
        false
    }

    /// Is `x` known to have executed everything `u` has?
    pub fn contains(&self, x: usize, u: usize) -> bool {
        // Everything `u` has came through its ancestors: what is known of one of them
        // holds for `u`.
        let mut a = u;
        let u_errant = self.live(u).is_none_or(|l| l.errant);
        for _ in 0..=self.nodes.len() {
            if a == x || self.known.get(&a).is_some_and(|k| k.contains(&x)) {
                return true;
            }
            // An ancestor whose position no longer moves (fenced, not replicating) and that
            // `x` already contains bounds what `u` can ever have (unless `u` has errant
            // transactions of its own).
            if a != u
                && !u_errant
                && let (Some(la), Some(lx)) = (self.live(a), self.live(x))
                && la.as_observed
                && let (Some(pa), Some(px)) = (&la.position, &lx.position)
                && px.contains(pa).unwrap_or(false)
            {
                return true;
            }
            match self.source(a) {
                Some(s) => a = s,
                None => break,
            }
        }
        let (Some(lx), Some(lu)) = (self.live(x), self.live(u)) else {
            return false;
        };
        if self.primary == Some(x) && !lu.errant {
            return true;
        }
        // `u` receives nothing more, and `x` has all it could ever execute.
        if !lu.errant
            && let (Some(c), Some(px)) = (&lu.ceiling, &lx.position)
            && px.contains(c).unwrap_or(false)
        {
            return true;
        }
        lu.as_observed
            && match (&lx.position, &lu.position) {
                (Some(px), Some(pu)) => px.contains(pu).unwrap_or(false),
                _ => false,
            }
    }

    /// The server at the top of `x`'s running replication chain: where its data comes from.
    pub fn chain_top(&self, x: usize) -> usize {
        let mut top = x;
        for _ in 0..self.nodes.len() {
            match self.link(top) {
                Some(Link {
                    source: Some(s),
                    state: LinkState::Running,
                    ..
                }) => top = *s,
                _ => break,
            }
        }
        top
    }

    /// Can `s` serve `r` as its source? `Err` names the reason with its code.
    pub fn can_serve(&self, s: usize, r: usize) -> Result<(), (super::BlockCode, String)> {
        use super::BlockCode as C;
        let (sn, rn) = (&self.nodes[s], &self.nodes[r]);
        let Some(ls) = sn.live.as_ref() else {
            return Err((C::Unreachable, format!("{} is unreachable", sn.id)));
        };
        let Some(lr) = rn.live.as_ref() else {
            return Err((C::Unreachable, format!("{} is unreachable", rn.id)));
        };
        if ls.flavor != lr.flavor {
            return Err((
                C::FlavorMismatch,
                format!(
                    "{} is {} and {} is {}: orch does not mix flavours in one cluster",
                    sn.id,
                    ls.flavor.label(),
                    rn.id,
                    lr.flavor.label()
                ),
            ));
        }
        if !ls.log_bin {
            return Err((
                C::SourceWithoutBinlog,
                format!(
                    "{} has log_bin off: it has no binary log to serve replicas from",
                    sn.id
                ),
            ));
        }
        if ls.link.is_some() && !ls.log_replica_updates && self.primary != Some(s) {
            return Err((
                C::SourceWithoutLogReplicaUpdates,
                format!(
                    "{} is a replica without log_slave_updates: what it replicates never reaches its own replicas",
                    sn.id
                ),
            ));
        }
        if !ls.filters.is_empty() {
            return Err((
                C::ReplicationFilters,
                format!(
                    "{} replicates with filters ({}): it may lack whole schemas {} needs",
                    sn.id,
                    ls.filters.join(", "),
                    rn.id
                ),
            ));
        }
        if ls.release > lr.release {
            return Err((
                C::SourceNewer,
                format!(
                    "{} runs {} and {} runs {}: a source must not be newer than its replica",
                    sn.id, ls.version, rn.id, lr.version
                ),
            ));
        }
        if let (Some(purged), Some(pos)) = (&ls.purged, &lr.position)
            && !purged.is_empty()
            && !pos.contains(purged).unwrap_or(false)
        {
            let at = if pos.is_empty() {
                "has no GTID position yet".to_string()
            } else {
                format!("is at {pos}")
            };
            // The primary may still have what the new source purged: catching up from it
            // first (staying where it is until its position passes the purge) avoids a
            // re-seed.
            let primary_has_it = self
                .primary
                .filter(|&p| p != s)
                .and_then(|p| self.live(p))
                .and_then(|lp| lp.purged.as_ref())
                .is_some_and(|pp| pos.contains(pp).unwrap_or(false));
            let advice = if primary_has_it {
                format!(
                    "let {} catch up where it is (the primary still has those binary logs), then plan again; re-seed it only if that is not possible",
                    rn.id
                )
            } else {
                format!("re-seed {} from a backup", rn.id)
            };
            return Err((
                C::PurgedGtids,
                format!(
                    "{} has purged binary logs {} still needs ({} purged up to {purged}; {} {at}): {advice}",
                    sn.id, rn.id, sn.id, rn.id
                ),
            ));
        }
        Ok(())
    }

    /// Declared, reachable, writable servers other than `except`.
    pub fn other_writable(&self, except: usize) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| i != except && self.nodes[i].declared && self.writable(i))
            .collect()
    }

    fn moved(&mut self, u: usize) {
        self.known.remove(&u);
        if let Some(l) = self.nodes[u].live.as_mut() {
            l.as_observed = false;
            l.ceiling = None;
        }
    }

    /// `i` receives nothing more (its IO thread stopped): what it has and received bounds
    /// what it can ever execute. Only when its source does not answer: from a live source
    /// more arrived between the observation and the stop, so the observed positions are
    /// no bound (and the apply engine checks again before `i` changes source).
    fn stops_receiving(&mut self, i: usize) {
        let source_silent = self.source(i).is_none_or(|s| self.live(s).is_none());
        if let Some(l) = self.nodes[i].live.as_mut()
            && source_silent
            && l.ceiling.is_none()
        {
            let delay = l.link.as_ref().map_or(0, |k| k.delay);
            l.ceiling = ceiling_of(&l.position, &l.received, delay);
        }
    }

    fn set_link(&mut self, i: usize, link: Option<Link>) {
        if let Some(old) = self.source(i) {
            self.replicas[old].retain(|&r| r != i);
        }
        if let Some(new) = link.as_ref().and_then(|l| l.source) {
            let at = self.replicas[new].partition_point(|&r| r < i);
            self.replicas[new].insert(at, i);
        }
        self.nodes[i].live.as_mut().expect("checked").link = link;
    }

    /// Applies one step to server `i`, after checking its preconditions and the
    /// invariants it could break. `Err` says what a step would have broken.
    pub fn apply(&mut self, i: usize, action: &Action) -> Result<(), String> {
        let id = self.nodes[i].id.clone();
        if self.nodes[i].live.is_none() {
            return Err(format!("{id} is unreachable"));
        }
        match action {
            Action::Fence { .. } => {
                self.nodes[i].live.as_mut().expect("live").read_only = true;
            }
            Action::Unfence | Action::Promote => {
                let link = self.link(i).map(|l| l.state.clone());
                if matches!(action, Action::Promote) && link.is_some() {
                    return Err(format!("{id} must forget its source before it is promoted"));
                } else if link.is_some() {
                    return Err(format!(
                        "{id} is a replica: only the primary is made writable"
                    ));
                }
                let others = self.other_writable(i);
                if let Some(&w) = others.first() {
                    return Err(format!(
                        "{id} would be writable beside {}: two writable servers in one cluster",
                        self.nodes[w].id
                    ));
                }
                let live = self.nodes[i].live.as_mut().expect("live");
                live.read_only = false;
                self.primary = Some(i);
                self.moved(i);
            }
            Action::StopReplication => {
                let Some(link) = self.nodes[i].live.as_mut().and_then(|l| l.link.as_mut()) else {
                    return Err(format!("{id} is not a replica"));
                };
                if !matches!(link.state, LinkState::Broken { sql: true, .. }) {
                    link.state = LinkState::Stopped;
                }
                self.stops_receiving(i);
            }
            Action::StopIo => {
                let Some(link) = self.nodes[i].live.as_mut().and_then(|l| l.link.as_mut()) else {
                    return Err(format!("{id} is not a replica"));
                };
                // Nothing more arrives; in the model a link that receives nothing is
                // stopped (the SQL thread's draining is WaitRelayLog's).
                if !matches!(link.state, LinkState::Broken { sql: true, .. }) {
                    link.state = LinkState::Stopped;
                }
                self.stops_receiving(i);
            }
            Action::WaitRelayLog { .. } => {
                let live = self.nodes[i].live.as_mut().expect("live");
                if live.link.is_none() {
                    return Err(format!("{id} is not a replica"));
                }
                if let (Some(p), Some(r)) = (&live.position, &live.received) {
                    live.position = p.merged(r).ok();
                }
                // It receives nothing more: its position stands.
                live.as_observed = true;
            }
            Action::ResetReplication => {
                if self.link(i).is_some_and(|l| l.state == LinkState::Running) {
                    return Err(format!(
                        "{id} must stop replicating before its replication is reset"
                    ));
                }
                self.set_link(i, None);
            }
            Action::WaitForGtid { until, .. } => {
                let u = *self
                    .index
                    .get(until.as_str())
                    .ok_or_else(|| format!("no server {until}"))?;
                let fixed = self.live(u).is_some_and(|l| {
                    l.read_only
                        && !l
                            .link
                            .as_ref()
                            .is_some_and(|k| k.state == LinkState::Running)
                });
                if !fixed {
                    return Err(format!(
                        "{id} waits for {until}'s position, but {until} is still moving (writable or replicating)"
                    ));
                }
                if self.link(i).is_none_or(|l| l.state != LinkState::Running) {
                    return Err(format!("{id} must be replicating to catch up with {until}"));
                }
                let top = self.chain_top(i);
                if !self.contains(top, u) {
                    return Err(format!(
                        "{id} replicates from {}, which does not have everything {until} has: the wait would never end",
                        self.nodes[top].id
                    ));
                }
                self.known.entry(u).or_default().insert(i);
                // It now has at least what `u` had (and `u` stands still).
                let theirs = self.live(u).and_then(|l| l.position.clone());
                let live = self.nodes[i].live.as_mut().expect("live");
                if let (Some(mine), Some(theirs)) = (&live.position, &theirs) {
                    live.position = mine.merged(theirs).ok().or(live.position.clone());
                }
            }
            Action::ChangeSource {
                source, delay_secs, ..
            } => {
                let s = *self
                    .index
                    .get(source.as_str())
                    .ok_or_else(|| format!("no server {source}"))?;
                if s == i || self.is_ancestor(i, s) {
                    return Err(format!(
                        "{id} under {source} would make a replication cycle"
                    ));
                }
                if self.link(i).is_some_and(|l| l.state == LinkState::Running) {
                    return Err(format!(
                        "{id} must stop replicating before its source changes"
                    ));
                }
                self.can_serve(s, i).map_err(|(_, why)| why)?;
                if !self.contains(s, i) {
                    return Err(format!(
                        "{source} is not known to have everything {id} has executed: {id} would ask it for transactions it lacks"
                    ));
                }
                let was_primary = self.primary == Some(i);
                let was_replica = self.link(i).is_some();
                let link = Link {
                    source: Some(s),
                    source_name: self.nodes[s].address.to_string(),
                    state: LinkState::Stopped,
                    gtid: true,
                    delay: *delay_secs,
                    seconds_behind: None,
                    source_server_id: self.live(s).map_or(0, |l| l.server_id),
                };
                self.set_link(i, Some(link));
                if was_primary {
                    self.primary = None;
                }
                // A replica that only changes source serves its replicas as before (a
                // server without log_slave_updates already passed nothing on).
                if !was_replica {
                    self.check_serves_replicas(i)?;
                }
            }
            Action::StartReplication => {
                let Some(link) = self.link(i) else {
                    return Err(format!("{id} has no source to replicate from"));
                };
                if let LinkState::Broken { sql: true, error } = &link.state {
                    return Err(format!("{id} cannot start: {error}"));
                }
                let s = link
                    .source
                    .ok_or_else(|| format!("{id}'s source is not in the cluster"))?;
                self.can_serve(s, i).map_err(|(_, why)| why)?;
                let link = self.nodes[i]
                    .live
                    .as_mut()
                    .and_then(|l| l.link.as_mut())
                    .expect("checked");
                link.state = LinkState::Running;
                self.moved(i);
            }
        }
        Ok(())
    }

    /// A server that just became a replica must still be able to serve its own replicas.
    fn check_serves_replicas(&self, i: usize) -> Result<(), String> {
        for &r in &self.replicas[i] {
            if self.lost.contains(&r) {
                continue;
            }
            if let Err((_, why)) = self.can_serve(i, r) {
                return Err(format!(
                    "{} would be left under {}: {why}",
                    self.nodes[r].id, self.nodes[i].id
                ));
            }
        }
        Ok(())
    }
}
