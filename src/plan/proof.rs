//! The proof a plan passes before anyone sees it.
//!
//! Takes the desired topology, the observation and a plan, gives `Ok` or the first thing
//! wrong. The plan is replayed on a fresh [`Model`] seeded from the observation — not the
//! planner's own — so a wrong decision, a missing step or a bad order shows up here. Every
//! step must find its preconditions true and leave the invariants intact (the model
//! refuses otherwise): never a second writable server, never a replication cycle, never a
//! replica pointed at a source that cannot serve it or lacks part of its history. After
//! the last step every host the plan does not report (blocked, lost or unreachable) must be
//! exactly as the file says. Pure.

use std::collections::{HashMap, HashSet};

use super::model::{LinkState, Model};
use super::{BlockCode, Desired, Observed, Plan};

pub fn prove(desired: &Desired, observed: &Observed, plan: &Plan) -> Result<(), String> {
    let declared = desired.hosts.len();
    let mut m = Model::of(desired, observed);
    let ids = super::names(desired, observed);
    let index: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let find = |host: &str| {
        index
            .get(host)
            .copied()
            .ok_or_else(|| format!("the plan names an unknown host {host}"))
    };
    for l in &plan.lost {
        m.lost.insert(find(&l.host)?);
    }
    let initial_primary = m.primary;
    for (n, step) in plan.steps.iter().enumerate() {
        if step.number != n + 1 {
            return Err(format!("step {} is numbered {}", n + 1, step.number));
        }
        let i = find(&step.host)?;
        if m.nodes[i].address != step.address {
            return Err(format!(
                "step {} names {} at {}, which is {}",
                step.number, step.host, step.address, m.nodes[i].address
            ));
        }
        m.apply(i, &step.action).map_err(|e| {
            format!(
                "step {} ({} on {}): {e}",
                step.number,
                step.action.describe(),
                step.host
            )
        })?;
    }

    // The state the plan promises.
    let Some(pd) = desired.primary() else {
        return Err("the desired topology has no primary".into());
    };
    let mut exempt: HashSet<usize> = HashSet::new();
    for b in &plan.blocked {
        exempt.insert(find(&b.host)?);
    }
    for l in &plan.lost {
        exempt.insert(find(&l.host)?);
    }
    exempt.extend((0..declared).filter(|&i| m.live(i).is_none()));
    let mut target: Vec<Option<usize>> = desired
        .hosts
        .iter()
        .map(|h| h.source.as_deref().and_then(|s| index.get(s).copied()))
        .collect();
    let mut primary = pd;
    if let Some(po) = initial_primary.filter(|&po| po != pd) {
        let drift = plan
            .blocked
            .iter()
            .any(|b| b.code == BlockCode::FailoverDrift && b.host == desired.hosts[pd].id);
        if drift {
            for t in target.iter_mut() {
                if *t == Some(pd) {
                    *t = Some(po);
                }
            }
            target[po] = None;
            primary = po;
        } else if exempt.contains(&pd) {
            // The switchover is blocked: the live primary stays.
            exempt.insert(po);
            primary = po;
        }
    }
    if initial_primary.is_none()
        || plan
            .blocked
            .iter()
            .any(|b| b.code == BlockCode::PrimaryMismatch)
    {
        // Nothing could be planned without a primary, or when the file's servers are not
        // those of one cluster.
        return if plan.steps.is_empty() {
            Ok(())
        } else {
            Err("steps planned without a known primary".into())
        };
    }
    for (i, want) in target.iter().enumerate() {
        if exempt.contains(&i) {
            continue;
        }
        let id = &desired.hosts[i].id;
        let live = m.live(i).expect("reachable hosts are not exempt");
        if i == primary {
            if live.link.is_some() {
                return Err(format!("the primary {id} still has a source"));
            }
            if live.read_only {
                return Err(format!("the primary {id} is still read_only"));
            }
            continue;
        }
        let Some(link) = &live.link else {
            return Err(format!("{id} does not replicate"));
        };
        if link.source != *want {
            let want = want.map_or("-", |t| desired.hosts.get(t).map_or("-", |h| h.id.as_str()));
            return Err(format!(
                "{id} replicates from {} instead of {want}",
                link.source_name
            ));
        }
        if link.state != LinkState::Running {
            return Err(format!("{id}'s replication is not running"));
        }
        if !link.gtid || link.delay != desired.hosts[i].delay_secs {
            return Err(format!(
                "{id}'s replication is not configured as the file says"
            ));
        }
        if !live.read_only {
            return Err(format!("the replica {id} is writable"));
        }
    }
    Ok(())
}
