//! Semantic rules of a cluster: one primary, known sources, no cycles, unique addresses,
//! someone to promote, and a policy that can be met.
//!
//! Takes a decoded [`Topology`] and its [`Policy`], gives diagnostics. Pure; the table of
//! cases is in `spec/tests.rs`. Cross-file rules (a cluster name or an address declared in
//! two files) are in [`across_files`].

use std::collections::HashMap;

use super::diag::{Code, Diagnostic, did_you_mean};
use super::policy::{CrossDc, Policy};
use super::{Promotion, Topology};
use crate::spec::decode::format_duration;

/// Checks one cluster. Without a policy (it did not resolve, already reported) the rules
/// that depend on it are skipped; the structural ones always run.
pub fn cluster(t: &Topology, policy: Option<&Policy>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let at = |code: Code, pos, subject: &str, message: String| {
        Diagnostic::new(code, &t.file, pos, message).subject(subject)
    };
    let index: HashMap<&str, usize> = t
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.id.as_str(), i))
        .collect();

    // Exactly one primary.
    let primaries: Vec<_> = t.primaries().collect();
    match (primaries.as_slice(), t.hosts_pos) {
        ([], None) => {} // `hosts:` is missing, already reported
        ([], Some(pos)) if t.hosts.is_empty() => out.push(
            at(Code::NoPrimary, pos, "hosts", "no host is declared".into())
                .hint("declare the primary (a host without `source`) and its replicas"),
        ),
        ([], Some(pos)) => out.push(
            at(
                Code::NoPrimary,
                pos,
                "hosts",
                "every host has a source, so none is the primary".into(),
            )
            .hint("remove `source:` from the host that is the primary"),
        ),
        ([first, rest @ ..], _) => {
            for extra in rest {
                out.push(
                    at(
                        Code::MultiplePrimaries,
                        extra.pos,
                        &extra.id,
                        format!("has no source, like {}: a cluster has exactly one primary", first.id),
                    )
                    .hint(format!("add `source: {}` (or another host) to {}, or move it to its own cluster file", first.id, extra.id)),
                );
            }
        }
    }

    // Every source names a declared host.
    for host in &t.hosts {
        if let Some(source) = &host.source
            && !index.contains_key(source.value.as_str())
        {
            let hint = match did_you_mean(&source.value, t.hosts.iter().map(|h| h.id.as_str())) {
                Some(m) => format!(
                    "did you mean `{m}`? or declare `{}` under hosts",
                    source.value
                ),
                None => format!("declare `{}` under hosts, or fix the name", source.value),
            };
            out.push(
                at(
                    Code::UnknownSource,
                    source.pos,
                    &format!("hosts.{}.source", host.id),
                    format!("`{}` is not a declared host", source.value),
                )
                .hint(hint),
            );
        }
    }

    // No cycles: follow sources from every host; a walk that returns to a host of its own
    // path has found a cycle. Each cycle is reported once, at its first host in file order.
    let mut state = vec![0u8; t.hosts.len()]; // 0 new, 1 on the current path, 2 done
    for start in 0..t.hosts.len() {
        let mut path: Vec<usize> = Vec::new();
        let mut cur = Some(start);
        while let Some(i) = cur {
            match state[i] {
                2 => break,
                1 => {
                    let from = path.iter().position(|&p| p == i).expect("on the path");
                    let cycle = &path[from..];
                    let first = *cycle.iter().min().expect("non-empty");
                    let mut names: Vec<&str> =
                        cycle.iter().map(|&c| t.hosts[c].id.as_str()).collect();
                    names.push(&t.hosts[i].id);
                    let h = &t.hosts[first];
                    out.push(
                        at(Code::ReplicationCycle, h.pos, &h.id, format!("replication cycle: {}", names.join(" → ")))
                            .hint("a replica's sources must lead to the primary; break the cycle by changing one `source:`"),
                    );
                    break;
                }
                _ => {
                    state[i] = 1;
                    path.push(i);
                    cur = t.hosts[i]
                        .source
                        .as_ref()
                        .and_then(|s| index.get(s.value.as_str()).copied());
                }
            }
        }
        for i in path {
            state[i] = 2;
        }
    }

    // Unique addresses.
    let mut seen: HashMap<_, &str> = HashMap::new();
    for host in &t.hosts {
        if let Some(address) = &host.address {
            if let Some(first) = seen.get(&address.value.key()) {
                out.push(
                    at(
                        Code::DuplicateAddress,
                        address.pos,
                        &format!("hosts.{}.address", host.id),
                        format!("{} is also {first}'s address", address.value),
                    )
                    .hint("each host is one server; fix the address or remove the duplicate host"),
                );
            } else {
                seen.insert(address.value.key(), &host.id);
            }
        }
    }

    if let [primary] = primaries.as_slice() {
        check_candidates(t, policy, primary, &mut out);
    }
    out
}

/// Someone can be promoted when the primary dies, and the policy allows it.
fn check_candidates(
    t: &Topology,
    policy: Option<&Policy>,
    primary: &super::Host,
    out: &mut Vec<Diagnostic>,
) {
    let replicas: Vec<_> = t.hosts.iter().filter(|h| h.source.is_some()).collect();
    let at = |code: Code, pos, subject: &str, message: String| {
        Diagnostic::new(code, &t.file, pos, message).subject(subject)
    };
    if replicas.is_empty() {
        out.push(
            at(
                Code::NoReplicas,
                primary.pos,
                &primary.id,
                "the primary has no replica: nothing can take over if it fails".into(),
            )
            .hint("declare at least one replica with `source:`"),
        );
        return;
    }
    for r in &replicas {
        if let Some(delay) = r.delay
            && r.promotion != Promotion::MustNot
        {
            out.push(
                at(
                    Code::DelayedCandidate,
                    r.pos,
                    &r.id,
                    format!(
                        "replicates {} behind on purpose but may be promoted",
                        format_duration(delay)
                    ),
                )
                .hint("add `promotion: must_not` to delayed replicas"),
            );
        }
    }
    let candidates: Vec<_> = replicas
        .iter()
        .filter(|h| h.promotion != Promotion::MustNot && h.delay.is_none())
        .collect();
    if candidates.is_empty() {
        out.push(
            at(
                Code::NoPromotableCandidate,
                primary.pos,
                &primary.id,
                "no replica may be promoted if this primary fails".into(),
            )
            .hint(
                "mark at least one replica `promotion: prefer` or `neutral` (and without `delay`)",
            ),
        );
        return;
    }
    if policy.is_some_and(|p| p.failover.automatic && p.failover.promote.cross_dc == CrossDc::Deny)
    {
        let missing: Vec<&str> = std::iter::once(primary)
            .chain(candidates.iter().copied().copied())
            .filter(|h| h.dc.is_none())
            .map(|h| h.id.as_str())
            .collect();
        if !missing.is_empty() {
            out.push(
                at(
                    Code::MissingDc,
                    primary.pos,
                    &primary.id,
                    format!(
                        "the policy denies cross-dc failover but {}",
                        crate::topology::agree(&missing, "{} has no `dc`", "{} have no `dc`")
                    ),
                )
                .hint("give every host a `dc:` so orch can tell where it lives"),
            );
        } else if !candidates.iter().any(|c| c.dc == primary.dc) {
            let dc = primary.dc.as_deref().unwrap_or_default();
            out.push(
                at(
                    Code::CrossDcUnmeetable,
                    primary.pos,
                    &primary.id,
                    format!("no promotable replica is in the primary's dc `{dc}`, and the policy denies cross-dc failover: automatic failover can never happen"),
                )
                .hint(format!("make a replica in `{dc}` promotable, or use a policy with `cross_dc: allow`")),
            );
        }
    }
}

/// Rules across the files of one `orch validate` run: a cluster name or a server address
/// must not appear in two files.
pub fn across_files(topologies: &[&Topology]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut clusters: HashMap<&str, &Topology> = HashMap::new();
    let mut addresses: HashMap<(String, u16), (&Topology, &str)> = HashMap::new();
    for t in topologies {
        if !t.cluster.is_empty() {
            match clusters.get(t.cluster.as_str()) {
                Some(first) if first.file != t.file => out.push(
                    Diagnostic::new(
                        Code::DuplicateCluster,
                        &t.file,
                        t.cluster_pos,
                        format!(
                            "cluster `{}` is also declared in {}",
                            t.cluster,
                            first.file.display()
                        ),
                    )
                    .subject("cluster")
                    .hint("cluster names are unique: rename one of them"),
                ),
                _ => {
                    clusters.insert(&t.cluster, t);
                }
            }
        }
        for h in &t.hosts {
            let Some(a) = &h.address else { continue };
            match addresses.get(&a.value.key()) {
                Some((first, id)) if first.file != t.file => out.push(
                    Diagnostic::new(
                        Code::DuplicateAddress,
                        &t.file,
                        a.pos,
                        format!(
                            "{} is also {id}'s address in cluster `{}` ({})",
                            a.value,
                            first.cluster,
                            first.file.display()
                        ),
                    )
                    .subject(format!("hosts.{}.address", h.id))
                    .hint("a server belongs to one cluster"),
                ),
                _ => {
                    addresses.insert(a.value.key(), (t, &h.id));
                }
            }
        }
    }
    out
}
