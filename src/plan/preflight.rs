//! Before the first step of a plan or a recovery: may orch change every server its steps
//! change? A refusal here costs nothing; a statement refused half-way through a switchover
//! (after the fence, before the promotion) leaves a cluster with no writable server.
//!
//! Takes the steps and the observation they were planned from, gives one [`Blocked`] per
//! server that orch must not touch: its account lacks a privilege a step needs
//! (`missing-privilege`, with the GRANT statement to run), the server runs a version orch
//! cannot drive (`unsupported-version`), or it has several replication channels
//! (`multiple-replication-channels`: `STOP/RESET REPLICA` without `FOR CHANNEL` acts on
//! every channel, and orch reads only one). Pure. An unreachable server is not judged
//! here (a dead primary is never asked anything); a server observed without its grants
//! (the simulator, an old snapshot) is not judged on them.

use super::{BlockCode, Blocked};
use crate::executor::mysql::{Dialect, grants};
use crate::observe::ServerState;
use crate::step::Step;

/// Why `steps` must not start, per server (in the order the steps first touch them).
pub fn refusals(steps: &[Step], states: &[ServerState]) -> Vec<Blocked> {
    let mut hosts: Vec<(&str, Vec<&Step>)> = Vec::new();
    for step in steps {
        match hosts.iter_mut().find(|(h, _)| *h == step.host) {
            Some((_, v)) => v.push(step),
            None => hosts.push((&step.host, vec![step])),
        }
    }
    let mut out = Vec::new();
    for (host, steps) in hosts {
        let Some(info) = states
            .iter()
            .find(|s| s.address == steps[0].address)
            .and_then(ServerState::info)
        else {
            continue;
        };
        let numbers: Vec<String> = steps.iter().map(|s| s.number.to_string()).collect();
        let change = format!(
            "step{} {}",
            if numbers.len() > 1 { "s" } else { "" },
            numbers.join(", ")
        );
        let blocked = |code, reason| Blocked {
            code,
            host: host.to_string(),
            change: change.clone(),
            reason,
        };
        if !info.channels.is_empty() {
            let names: Vec<String> = info.channels.iter().map(|c| format!("'{c}'")).collect();
            out.push(blocked(
                BlockCode::MultipleChannels,
                format!(
                    "has {} replication channels ({}): orch reads one and its STOP/RESET statements would act on all of them; it changes no server with several channels yet. Nothing in this plan runs: remove the extra channels (MariaDB: RESET SLAVE 'name' ALL; MySQL: RESET REPLICA ALL FOR CHANNEL 'name') or change this server by hand",
                    info.channels.len(),
                    names.join(", ")
                ),
            ));
            continue;
        }
        let dialect = Dialect::of(info.flavor, &info.version);
        if let Some(why) = dialect.unsupported() {
            out.push(blocked(
                BlockCode::UnsupportedVersion,
                format!("{why}. Nothing in this plan runs: upgrade it first"),
            ));
            continue;
        }
        let Some(held) = &info.privileges else {
            continue;
        };
        // Each missing privilege once, with every statement and step that needs it.
        let mut lacking: Vec<(&'static str, Vec<String>)> = Vec::new();
        for step in &steps {
            let Some(needs) = grants::needs(dialect, &step.action) else {
                continue;
            };
            for n in grants::missing(held, &needs) {
                let what = format!("{} (step {})", n.for_what, step.number);
                match lacking.iter_mut().find(|(p, _)| *p == n.privilege) {
                    Some((_, v)) => v.push(what),
                    None => lacking.push((n.privilege, vec![what])),
                }
            }
        }
        if lacking.is_empty() {
            continue;
        }
        let names: Vec<&str> = lacking.iter().map(|(p, _)| *p).collect();
        let whys: Vec<String> = lacking
            .iter()
            .map(|(p, v)| format!("{p} for {}", v.join(", ")))
            .collect();
        let roles = if held.roles.is_empty() {
            String::new()
        } else {
            " (orch sees the privileges SHOW GRANTS lists: a privilege held only through a role that is not active is not seen; grant it to the account itself)".into()
        };
        out.push(blocked(
            BlockCode::MissingPrivilege,
            format!(
                "orch's account {} lacks {}{roles}. Nothing in this plan runs; on {host} run: {}",
                if held.account.is_empty() {
                    "?"
                } else {
                    &held.account
                },
                whys.join("; "),
                grants::grant_statement(&held.account, &names)
            ),
        ));
    }
    out
}

/// The refusals as one sentence per server, for an error message.
pub fn text(refused: &[Blocked]) -> String {
    refused
        .iter()
        .map(|b| format!("{} ({}): {}", b.host, b.code.name(), b.reason))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::{Action, Phase};
    use crate::topology::Address;

    fn state(address: &str, extra: serde_json::Value) -> ServerState {
        let mut v = serde_json::json!({
            "address": address, "state": "reachable", "flavor": "mariadb",
            "version": "10.11.6-MariaDB", "server_id": 2, "read_only": true, "log_bin": true,
            "log_replica_updates": true, "binlog_format": "ROW", "replica_net_timeout": 4,
            "gtid": {"flavor": "mariadb", "current_pos": "", "binlog_pos": "",
                     "binlog_state": "", "slave_pos": ""},
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    fn step(number: usize, host: &str, address: &str, action: Action) -> Step {
        Step {
            number,
            phase: Phase::Switchover,
            host: host.into(),
            address: Address::parse(address).unwrap(),
            action,
            why: String::new(),
            requires: Vec::new(),
            expects: Vec::new(),
            detachable: None,
        }
    }

    #[test]
    fn refusals_table() {
        let (a, b) = ("10.0.0.2:3306", "10.0.0.3:3306");
        let steps = [
            step(1, "db2", a, Action::StopReplication),
            step(2, "db2", a, Action::ResetReplication),
            step(3, "db3", b, Action::StopReplication),
        ];
        let granted =
            |g: &[&str]| serde_json::json!({"privileges": {"account": "'orch'@'%'", "global": g}});
        let codes = |states: &[ServerState]| -> Vec<(String, &'static str)> {
            refusals(&steps, states)
                .iter()
                .map(|b| (b.host.clone(), b.code.name()))
                .collect()
        };
        // Enough, or not read (simulator, old snapshot), or unreachable: nothing refused.
        let enough = granted(&["REPLICATION SLAVE ADMIN", "RELOAD"]);
        assert!(codes(&[state(a, enough.clone()), state(b, enough.clone())]).is_empty());
        assert!(codes(&[state(a, serde_json::json!({}))]).is_empty());
        let dead: ServerState = serde_json::from_value(serde_json::json!({
            "address": a, "state": "unreachable", "cause": "refused", "detail": ""
        }))
        .unwrap();
        assert!(codes(&[dead]).is_empty());
        // RELOAD missing on db2: named with the step and the GRANT to run.
        let r = refusals(
            &steps,
            &[
                state(a, granted(&["REPLICATION SLAVE ADMIN"])),
                state(b, enough.clone()),
            ],
        );
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].code, r[0].host.as_str()),
            (BlockCode::MissingPrivilege, "db2")
        );
        assert!(
            r[0].reason.contains("RELOAD for RESET SLAVE ALL (step 2)")
                && r[0].reason.ends_with("GRANT RELOAD ON *.* TO 'orch'@'%'"),
            "{}",
            r[0].reason
        );
        assert_eq!(r[0].change, "steps 1, 2");
        // Several channels; a MySQL older than 8.0.
        let channels = serde_json::json!({"channels": ["", "other"]});
        let old = serde_json::json!({"flavor": "mysql", "version": "5.7.44",
            "gtid": {"flavor": "mysql", "executed": "", "purged": "", "gtid_mode": "ON"}});
        assert_eq!(
            codes(&[state(a, channels), state(b, old)]),
            [
                ("db2".to_string(), "multiple-replication-channels"),
                ("db3".to_string(), "unsupported-version")
            ]
        );
    }
}
