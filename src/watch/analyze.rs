//! Holistic failure analysis: one snapshot in, the cluster's failures out, each with a
//! stable code, the evidence behind it, and whether orch acts on it. Ordered predicates
//! over one observation (orchestrator's analysis, VTOrc and MOCO's "gather, classify, pick
//! one operation, observe again"); the watch loop acts on the first actionable finding and
//! then observes again. Pure: no I/O, no clock.
//!
//! A server is dead only when orch cannot reach it AND every reachable server replicating
//! from it has lost it too (never on one failed ping). The evidence is *certain* when orch's
//! connections are refused (nothing listens: a crashed or killed mysqld); it is
//! *ambiguous* when they time out or hang (a frozen server, a partition), and then the
//! failure must persist for `failover.detect.grace` before orch acts.
//!
//! A server that answers with an error packet (out of connections, access denied, host
//! blocked) is alive, whoever it answered: orch's probe or a replica's IO thread. It is
//! reported (`primary-rejects-connections`, `replica-rejects-connections`, the codes
//! `orch status` uses), never failed over: promoting a replica beside a primary that is
//! merely full would leave two writable primaries.

use serde::Serialize;

use crate::observe::classify::{rejections, unreachable_text};
use crate::observe::{IoState, Reach, Snapshot, Unreachable};

/// What failed. The names are stable (history, logs, hooks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    /// The primary is dead; its reachable replicas all lost it. Recovered: failover.
    DeadPrimary,
    /// As `dead-primary`, and some of its replicas are unreachable too. Recovered.
    DeadPrimaryAndSomeReplicas,
    /// The primary and every replica are unreachable: orch sees nothing to act with.
    DeadPrimaryAndReplicas,
    /// The primary is dead and has no replica: nothing to promote.
    DeadPrimaryWithoutReplicas,
    /// Only orch lost the primary: its replicas still replicate from it. Never a failover.
    UnreachablePrimary,
    /// As `unreachable-primary`, and every replica still connected lags beyond
    /// `max_lag`: the primary may be hung with its connections open. Reported; the grace
    /// runs until the replicas lose it.
    UnreachablePrimaryWithLaggingReplicas,
    /// An intermediate source is dead; its replicas lost it. Recovered: they move up.
    DeadIntermediateSource,
    /// As `dead-intermediate-source`, some of its replicas unreachable too. Recovered.
    DeadIntermediateSourceAndSomeReplicas,
    /// The primary answers, but none of its replicas replicates from it.
    AllReplicasNotReplicating,
    /// The primary is alive but refuses connections with error packets (out of
    /// connections, access denied, host blocked), to orch or to its replicas. Never a
    /// failover.
    PrimaryRejectsConnections,
    /// As `primary-rejects-connections`, for a replica.
    ReplicaRejectsConnections,
    /// More than one writable server without a source. Recovered: the one that is not the
    /// primary is fenced.
    TwoWritablePrimaries,
    /// A replica with read_only off: a stray write there becomes an errant transaction.
    /// Recovered: read_only is set.
    WritableReplica,
}

impl Code {
    pub fn name(self) -> &'static str {
        match self {
            Code::DeadPrimary => "dead-primary",
            Code::DeadPrimaryAndSomeReplicas => "dead-primary-and-some-replicas",
            Code::DeadPrimaryAndReplicas => "dead-primary-and-replicas",
            Code::DeadPrimaryWithoutReplicas => "dead-primary-without-replicas",
            Code::UnreachablePrimary => "unreachable-primary",
            Code::UnreachablePrimaryWithLaggingReplicas => {
                "unreachable-primary-with-lagging-replicas"
            }
            Code::DeadIntermediateSource => "dead-intermediate-source",
            Code::DeadIntermediateSourceAndSomeReplicas => {
                "dead-intermediate-source-and-some-replicas"
            }
            Code::AllReplicasNotReplicating => "all-replicas-not-replicating",
            Code::PrimaryRejectsConnections => "primary-rejects-connections",
            Code::ReplicaRejectsConnections => "replica-rejects-connections",
            Code::TwoWritablePrimaries => "two-writable-primaries",
            Code::WritableReplica => "writable-replica",
        }
    }

    /// Whether orch recovers it (when the policy lets it).
    pub fn actionable(self) -> bool {
        matches!(
            self,
            Code::DeadPrimary
                | Code::DeadPrimaryAndSomeReplicas
                | Code::DeadIntermediateSource
                | Code::DeadIntermediateSourceAndSomeReplicas
                | Code::TwoWritablePrimaries
                | Code::WritableReplica
        )
    }
}

/// How sure orch is that a server is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Evidence {
    /// Connections refused, and every reachable replica lost it: acted on after one
    /// confirming probe.
    Certain,
    /// Timeouts or a hung handshake: acted on once it persisted for the grace period.
    Ambiguous,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub code: Code,
    /// The host id of the failed (or offending) server.
    pub host: String,
    pub evidence: Evidence,
    /// What was seen, for people and the history.
    pub detail: String,
}

/// The failures of `snapshot`, most severe first; `primary` is the index of the host orch
/// holds to be the primary (the file's, or the one a failover made); replicas lag beyond
/// `max_lag_secs` count as lagging.
pub fn analyze(snapshot: &Snapshot, primary: usize, max_lag_secs: u64) -> Vec<Finding> {
    let hosts = &snapshot.hosts;
    let ids: Vec<&str> = hosts.iter().map(|h| h.id.as_str()).collect();
    let states: Vec<_> = hosts.iter().map(|h| h.state.clone()).collect();
    let sources = crate::observe::classify::observed_sources(&states);
    let mut out = Vec::new();

    // Who replicates from `x`: the servers observed doing so, and, for those orch cannot
    // see, the file's.
    let replicas_of = |x: usize| -> Vec<usize> {
        (0..hosts.len())
            .filter(|&i| i != x)
            .filter(|&i| match hosts[i].state.info() {
                Some(inf) => inf.replication.is_some() && sources[i] == Some(x),
                None => hosts[i].desired_source.as_deref() == Some(ids[x]),
            })
            .collect()
    };
    // A replica whose source answered it with an error packet did not lose it.
    let lost_it = |i: usize| {
        hosts[i]
            .state
            .info()
            .and_then(|inf| inf.replication.as_ref())
            .is_some_and(|r| r.lost_source())
    };
    let replicating = |i: usize| {
        hosts[i]
            .state
            .info()
            .and_then(|inf| inf.replication.as_ref())
            .is_some_and(|r| r.io == IoState::Running)
    };
    let evidence = |cause: Unreachable| match cause {
        Unreachable::Refused => Evidence::Certain,
        _ => Evidence::Ambiguous,
    };

    for x in 0..hosts.len() {
        let Reach::Unreachable { cause, detail } = &hosts[x].state.reach else {
            continue;
        };
        if cause.answered() {
            // It answers: not dead, whatever else is wrong (reported below).
            continue;
        }
        let replicas = replicas_of(x);
        let reachable: Vec<usize> = replicas
            .iter()
            .copied()
            .filter(|&i| hosts[i].state.info().is_some())
            .collect();
        let still: Vec<&str> = reachable
            .iter()
            .copied()
            .filter(|&i| !lost_it(i))
            .map(|i| ids[i])
            .collect();
        let names = |v: &[usize]| v.iter().map(|&i| ids[i]).collect::<Vec<_>>();
        let lost_too = |v: &[&str]| {
            crate::topology::agree(
                v,
                "its replica {} lost it too",
                "its replicas {} lost it too",
            )
        };
        let seen = format!("orch: {}", unreachable_text(*cause, detail));
        let (code, text) = if x == primary {
            if replicas.is_empty() {
                (
                    Code::DeadPrimaryWithoutReplicas,
                    format!("{seen}; it has no replica"),
                )
            } else if reachable.is_empty() {
                (
                    Code::DeadPrimaryAndReplicas,
                    format!(
                        "{seen}; {}",
                        crate::topology::agree(
                            &names(&replicas),
                            "its replica {} is unreachable too",
                            "its replicas {} are unreachable too"
                        )
                    ),
                )
            } else if !still.is_empty() {
                let lagging = reachable.iter().filter(|&&i| !lost_it(i)).all(|&i| {
                    hosts[i]
                        .state
                        .info()
                        .and_then(|inf| inf.replication.as_ref())
                        .and_then(|r| r.seconds_behind)
                        .is_some_and(|l| l > max_lag_secs)
                });
                if lagging {
                    (
                        Code::UnreachablePrimaryWithLaggingReplicas,
                        format!(
                            "{seen}; {} from it but lag beyond {max_lag_secs}s",
                            crate::topology::agree(
                                &still,
                                "{} still replicates",
                                "{} still replicate"
                            )
                        ),
                    )
                } else {
                    (
                        Code::UnreachablePrimary,
                        format!(
                            "{seen}, but {} from it",
                            crate::topology::agree(
                                &still,
                                "{} still replicates",
                                "{} still replicate"
                            )
                        ),
                    )
                }
            } else if reachable.len() < replicas.len() {
                (
                    Code::DeadPrimaryAndSomeReplicas,
                    format!(
                        "{seen}; {} and {}",
                        lost_too(&names(&reachable)),
                        crate::topology::agree(
                            &replicas
                                .iter()
                                .filter(|i| !reachable.contains(i))
                                .map(|&i| ids[i])
                                .collect::<Vec<_>>(),
                            "{} is unreachable",
                            "{} are unreachable"
                        )
                    ),
                )
            } else {
                (
                    Code::DeadPrimary,
                    format!("{seen}; {}", lost_too(&names(&reachable))),
                )
            }
        } else {
            if reachable.is_empty() || !still.is_empty() {
                continue;
            }
            let code = if reachable.len() < replicas.len() {
                Code::DeadIntermediateSourceAndSomeReplicas
            } else {
                Code::DeadIntermediateSource
            };
            (code, format!("{seen}; {}", lost_too(&names(&reachable))))
        };
        out.push(Finding {
            code,
            host: ids[x].to_string(),
            evidence: evidence(*cause),
            detail: text,
        });
    }

    for r in rejections(&states, &ids) {
        out.push(Finding {
            code: if r.host == primary {
                Code::PrimaryRejectsConnections
            } else {
                Code::ReplicaRejectsConnections
            },
            host: ids[r.host].to_string(),
            evidence: Evidence::Certain,
            detail: r.text,
        });
    }

    // More than one writable server without a source: fence all but the primary.
    let writable: Vec<usize> = (0..hosts.len())
        .filter(|&i| {
            hosts[i]
                .state
                .info()
                .is_some_and(|inf| !inf.read_only && inf.replication.is_none())
        })
        .collect();
    if writable.len() > 1 && writable.contains(&primary) {
        for &w in writable.iter().filter(|&&w| w != primary) {
            out.push(Finding {
                code: Code::TwoWritablePrimaries,
                host: ids[w].to_string(),
                evidence: Evidence::Certain,
                detail: format!(
                    "{} is writable beside the primary {}: writes may land in two places{}",
                    ids[w],
                    ids[primary],
                    // Named in full: what it took is reported, never replicated.
                    match (hosts[w].state.info(), hosts[primary].state.info()) {
                        (Some(theirs), Some(ours)) =>
                            theirs
                                .holds_beyond(ours)
                                .map_or(String::new(), |extra| format!(
                                    "; it holds transactions {} lacks: {extra}",
                                    ids[primary]
                                )),
                        _ => String::new(),
                    }
                ),
            });
        }
    }

    for i in 0..hosts.len() {
        if hosts[i]
            .state
            .info()
            .is_some_and(|inf| !inf.read_only && inf.replication.is_some())
        {
            out.push(Finding {
                code: Code::WritableReplica,
                host: ids[i].to_string(),
                evidence: Evidence::Certain,
                detail: format!(
                    "{} replicates with read_only=OFF: a stray write there becomes an errant transaction",
                    ids[i]
                ),
            });
        }
    }

    if hosts[primary].state.info().is_some() {
        let replicas: Vec<usize> = (0..hosts.len())
            .filter(|&i| hosts[i].desired_source.as_deref() == Some(ids[primary]))
            .filter(|&i| hosts[i].state.info().is_some())
            .collect();
        let replicating = replicas
            .iter()
            .any(|&i| sources[i] == Some(primary) && replicating(i));
        if !replicas.is_empty() && !replicating {
            out.push(Finding {
                code: Code::AllReplicasNotReplicating,
                host: ids[primary].to_string(),
                evidence: Evidence::Certain,
                detail: "the primary answers, but none of its replicas replicates from it".into(),
            });
        }
    }
    out.sort_by_key(|f| rank(f.code));
    out
}

fn rank(code: Code) -> u8 {
    match code {
        Code::DeadPrimary | Code::DeadPrimaryAndSomeReplicas => 0,
        Code::TwoWritablePrimaries => 1,
        Code::PrimaryRejectsConnections => 2,
        Code::DeadPrimaryAndReplicas | Code::DeadPrimaryWithoutReplicas => 2,
        Code::UnreachablePrimary | Code::UnreachablePrimaryWithLaggingReplicas => 3,
        Code::DeadIntermediateSource | Code::DeadIntermediateSourceAndSomeReplicas => 4,
        Code::WritableReplica | Code::ReplicaRejectsConnections => 5,
        Code::AllReplicasNotReplicating => 6,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::executor::observe_cluster;
    use crate::executor::sim::{Simulator, host_address};
    use crate::gtid::Flavor;
    use crate::observe::classify::tests::topology;
    use crate::spec::Policy;

    fn findings(sim: &Simulator, sources: &[Option<usize>]) -> Vec<(Code, String, Evidence)> {
        let t = topology(sources);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let snapshot = rt.block_on(observe_cluster(
            Arc::new(sim.clone()),
            &t,
            &Policy::default(),
            None,
            8,
        ));
        analyze(&snapshot, 0, 10)
            .into_iter()
            .map(|f| (f.code, f.host, f.evidence))
            .collect()
    }

    const STAR: &[Option<usize>] = &[None, Some(0), Some(0)];

    /// The findings of a star of `n` servers (h0 the primary) after `setup`.
    fn star_findings(n: usize, setup: &dyn Fn(&Simulator)) -> Vec<Finding> {
        let sim = Simulator::star(n, Flavor::Mariadb);
        sim.write(host_address(0), 3).unwrap();
        sim.tick();
        setup(&sim);
        sim.tick();
        let sources: Vec<Option<usize>> = (0..n).map(|i| (i > 0).then_some(0)).collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let snapshot = rt.block_on(observe_cluster(
            Arc::new(sim.clone()),
            &topology(&sources),
            &Policy::default(),
            None,
            8,
        ));
        analyze(&snapshot, 0, 10)
    }

    /// The findings' details, for a primary with one replica then two: the sentence agrees
    /// with how many replicas it names ("h1 still replicates", "h1, h2 still replicate").
    #[test]
    fn details_agree_with_the_number_of_replicas_named() {
        let detail = |n: usize, setup: &dyn Fn(&Simulator)| {
            star_findings(n, setup)
                .into_iter()
                .map(|f| f.detail)
                .collect::<Vec<_>>()
                .join("\n")
        };
        let cut_off = |s: &Simulator| s.partition_from_orch(host_address(0));
        let killed = |s: &Simulator| s.kill(host_address(0));
        let one = detail(2, &cut_off);
        assert!(one.contains("but h1 still replicates from it"), "{one}");
        let two = detail(3, &cut_off);
        assert!(two.contains("but h1, h2 still replicate from it"), "{two}");
        let one = detail(2, &killed);
        assert!(one.contains("its replica h1 lost it too"), "{one}");
        let two = detail(3, &killed);
        assert!(two.contains("its replicas h1, h2 lost it too"), "{two}");
        let some = detail(3, &|s| {
            s.kill(host_address(0));
            s.kill(host_address(2));
        });
        assert!(
            some.contains("its replica h1 lost it too and h2 is unreachable"),
            "{some}"
        );
    }

    /// A second writable server's finding names every transaction it took that the
    /// primary lacks, as its stream's whole range (from 1: the primary has none of h2's
    /// stream, whose sequence numbers, shared with h0's, are bounded, not counted).
    #[test]
    fn a_second_writable_server_names_what_the_primary_lacks() {
        let found = star_findings(3, &|s| {
            s.stop_replication(host_address(2));
            s.reset_replication(host_address(2));
            s.set_read_only(host_address(2), false);
            s.write(host_address(2), 4).unwrap();
        });
        let f = found
            .iter()
            .find(|f| f.code == Code::TwoWritablePrimaries)
            .expect("two writable primaries");
        assert!(
            f.detail
                .ends_with("it holds transactions h0 lacks: 0-3-1..7"),
            "{}",
            f.detail
        );
    }

    #[test]
    fn every_code_from_its_scenario() {
        use Code::*;
        use Evidence::*;
        type Setup = fn(&Simulator);
        type Case<'a> = (&'a str, Setup, &'a [(Code, &'a str, Evidence)]);
        let star: &[Case] = &[
            ("healthy", |_| {}, &[]),
            (
                "killed primary",
                |s| s.kill(host_address(0)),
                &[(DeadPrimary, "h0", Certain)],
            ),
            (
                "frozen primary, replicas lost it",
                |s| s.freeze(host_address(0)),
                &[(DeadPrimary, "h0", Ambiguous)],
            ),
            (
                "only orch lost the primary",
                |s| s.partition_from_orch(host_address(0)),
                &[(UnreachablePrimary, "h0", Ambiguous)],
            ),
            (
                "only orch lost the primary, and the replicas lag",
                |s| {
                    s.partition_from_orch(host_address(0));
                    s.set_lag(host_address(1), 20);
                    s.set_lag(host_address(2), 20);
                    s.write(host_address(0), 30).unwrap();
                },
                &[(UnreachablePrimaryWithLaggingReplicas, "h0", Ambiguous)],
            ),
            (
                "primary and one replica killed",
                |s| {
                    s.kill(host_address(0));
                    s.kill(host_address(2));
                },
                &[(DeadPrimaryAndSomeReplicas, "h0", Certain)],
            ),
            (
                "everything killed",
                |s| {
                    for i in 0..3 {
                        s.kill(host_address(i));
                    }
                },
                &[(DeadPrimaryAndReplicas, "h0", Certain)],
            ),
            (
                "a second writable server without a source",
                |s| {
                    s.stop_replication(host_address(2));
                    s.reset_replication(host_address(2));
                    s.set_read_only(host_address(2), false);
                },
                &[(TwoWritablePrimaries, "h2", Certain)],
            ),
            (
                "a writable replica",
                |s| s.set_read_only(host_address(2), false),
                &[(WritableReplica, "h2", Certain)],
            ),
            (
                "a primary out of connections, its replicas reconnecting: alive",
                |s| {
                    s.exhaust_connections(host_address(0));
                    for i in [1, 2] {
                        s.stop_replication(host_address(i));
                        s.start_replication(host_address(i));
                    }
                },
                &[(PrimaryRejectsConnections, "h0", Certain)],
            ),
            (
                "a primary out of connections, its replicas still connected",
                |s| s.exhaust_connections(host_address(0)),
                &[(PrimaryRejectsConnections, "h0", Certain)],
            ),
            (
                "a primary refusing orch's account",
                |s| s.access_denied(host_address(0)),
                &[(PrimaryRejectsConnections, "h0", Certain)],
            ),
            (
                "a replica out of connections",
                |s| s.exhaust_connections(host_address(2)),
                &[(ReplicaRejectsConnections, "h2", Certain)],
            ),
            (
                "a replica refusing orch's account",
                |s| s.access_denied(host_address(1)),
                &[(ReplicaRejectsConnections, "h1", Certain)],
            ),
            (
                "no replica replicates",
                |s| {
                    s.stop_replication(host_address(1));
                    s.stop_replication(host_address(2));
                },
                &[(AllReplicasNotReplicating, "h0", Certain)],
            ),
        ];
        for (name, setup, want) in star {
            let sim = Simulator::star(3, Flavor::Mariadb);
            sim.write(host_address(0), 3).unwrap();
            sim.tick();
            setup(&sim);
            sim.tick();
            let want: Vec<(Code, String, Evidence)> = want
                .iter()
                .map(|(c, h, e)| (*c, h.to_string(), *e))
                .collect();
            assert_eq!(findings(&sim, STAR), want, "{name}");
        }

        let sim = Simulator::star(1, Flavor::Mariadb);
        sim.kill(host_address(0));
        assert_eq!(
            findings(&sim, &[None]),
            [(DeadPrimaryWithoutReplicas, "h0".to_string(), Certain)]
        );

        let chain: &[Option<usize>] = &[None, Some(0), Some(1), Some(1)];
        let sim = Simulator::new();
        sim.add_primary(host_address(0), Flavor::Mariadb);
        sim.add_replica(host_address(1), host_address(0));
        sim.add_replica(host_address(2), host_address(1));
        sim.add_replica(host_address(3), host_address(1));
        sim.tick();
        sim.kill(host_address(1));
        sim.tick();
        assert_eq!(
            findings(&sim, chain),
            [(DeadIntermediateSource, "h1".to_string(), Certain)]
        );
        sim.kill(host_address(3));
        sim.tick();
        assert_eq!(
            findings(&sim, chain),
            [(
                DeadIntermediateSourceAndSomeReplicas,
                "h1".to_string(),
                Certain
            )]
        );
    }
}
