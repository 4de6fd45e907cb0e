//! MySQL's "transactions of its own" for the step model: what makes a failover candidate
//! errant when the primary it replicated from may be dead.
//!
//! Takes the observed servers and each one's observed source, gives per server whether it
//! has transactions that did not come from its source. Pure.
//!
//! MariaDB tells it on the server itself (`gtid_current_pos` differs from
//! `gtid_slave_pos`). MySQL has one set, `gtid_executed`, so it is told by comparison:
//! - the source answers: what the replica executed that the source did not
//!   (`replica − source`), exactly;
//! - the source is dead: what the replica executed that another replica of the same
//!   source lacks (executed or received), leaving out the dead source's own stream (its
//!   `server_uuid`, as the replicas' `Source_UUID` still name it, or as last observed):
//!   a replica ahead of the others on the source's stream only received more of it.
//!   Without another replica, or without the source's uuid, nothing can be told and the
//!   server counts as clean: the failover then has one candidate anyway.
//!
//! A replica lagging behind the others by more than the history of a previous failover
//! would make the others look errant (they have transactions of the earlier primary it
//! lacks). That errs on the safe side: a candidate excluded, named with the reason.

use std::str::FromStr;

use crate::gtid::{MysqlGtidSet, Uuid};
use crate::observe::{Gtids, ServerState};

/// For each of `servers`, whether it is a MySQL replica with transactions its source
/// (`sources[i]`, an index into `servers`) never sent it.
pub fn own_writes(servers: &[ServerState], sources: &[Option<usize>]) -> Vec<bool> {
    let executed = |i: usize| -> Option<MysqlGtidSet> {
        match &servers[i].info()?.gtid {
            Gtids::Mysql { executed, .. } => executed.parse().ok(),
            Gtids::Mariadb { .. } => None,
        }
    };
    // What a server will have once it applied what it received.
    let eventual = |i: usize| -> Option<MysqlGtidSet> {
        let mine = executed(i)?;
        let received = servers[i]
            .info()?
            .replication
            .as_ref()
            .and_then(|r| MysqlGtidSet::from_str(&r.retrieved_gtid).ok())
            .unwrap_or_default();
        Some(mine.union(&received))
    };
    (0..servers.len())
        .map(|i| {
            let (Some(s), Some(mine)) = (sources[i], executed(i)) else {
                return false;
            };
            if let Some(theirs) = executed(s) {
                return !mine.subtract(&theirs).is_empty();
            }
            let siblings: Vec<usize> = (0..servers.len())
                .filter(|&j| j != i && sources[j] == Some(s) && executed(j).is_some())
                .collect();
            // The dead source's uuid, as any of its replicas last saw it.
            let Some(uuid) = siblings
                .iter()
                .chain([&i])
                .find_map(|&j| servers[j].info()?.replication.as_ref()?.source_uuid.clone())
                .and_then(|u| Uuid::from_str(&u).ok())
            else {
                return false;
            };
            let Some(common) = siblings
                .iter()
                .filter_map(|&j| eventual(j))
                .reduce(|a, b| a.intersection(&b))
            else {
                return false;
            };
            mine.subtract(&common)
                .iter()
                .any(|(tsid, _)| tsid.uuid != uuid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gtid::Flavor;
    use crate::observe::{IoState, Reach, Replication, ServerInfo, Unreachable};
    use crate::topology::Address;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562"; // the dead primary
    const OLD: &str = "4e11fa47-71ca-11e1-9e33-c80aa9429562"; // a primary before it
    const R1: &str = "5e11fa47-71ca-11e1-9e33-c80aa9429562"; // replica r1's own

    fn server(executed: &str, source_uuid: Option<&str>, retrieved: &str) -> ServerState {
        ServerState {
            address: Address::parse("10.0.0.9:3306").unwrap(),
            reach: Reach::Reachable(Box::new(ServerInfo {
                flavor: Flavor::Mysql,
                version: "8.0.36".into(),
                server_id: 2,
                server_uuid: None,
                read_only: true,
                super_read_only: Some(true),
                log_bin: true,
                log_replica_updates: true,
                binlog_format: "ROW".into(),
                gtid_strict_mode: None,
                semi_sync: None,
                gtid: Gtids::Mysql {
                    executed: executed.into(),
                    purged: String::new(),
                    gtid_mode: "ON".into(),
                },
                replica_net_timeout: 4,
                report_host: None,
                report_port: None,
                replication: Some(Replication {
                    source_host: "10.0.0.1".into(),
                    source_port: 3306,
                    io: IoState::Connecting,
                    sql_running: true,
                    last_io_error: None,
                    last_sql_error: None,
                    seconds_behind: None,
                    gtid_mode: "auto_position".into(),
                    retrieved_gtid: retrieved.into(),
                    executed_gtid: executed.into(),
                    sql_delay: 0,
                    connect_retry: 1,
                    heartbeat_period: 1.0,
                    source_server_id: 1,
                    source_uuid: source_uuid.map(str::to_string),
                    filters: Vec::new(),
                }),
                replicas: Vec::new(),
                user_schemas: None,
                privileges: None,
                channels: Vec::new(),
                main_port_refused: None,
            })),
        }
    }

    fn dead() -> ServerState {
        ServerState {
            address: Address::parse("10.0.0.1:3306").unwrap(),
            reach: Reach::Unreachable {
                cause: Unreachable::Refused,
                detail: String::new(),
            },
        }
    }

    /// Server 0 is the dead primary; servers 1.. its replicas.
    fn after_death(replicas: &[(&str, Option<&str>, &str)]) -> Vec<bool> {
        let mut servers = vec![dead()];
        servers.extend(replicas.iter().map(|(e, u, r)| server(e, *u, r)));
        let sources: Vec<Option<usize>> =
            (0..servers.len()).map(|i| (i > 0).then_some(0)).collect();
        own_writes(&servers, &sources)[1..].to_vec()
    }

    #[test]
    fn errant_candidates_of_a_dead_mysql_primary() {
        let a = |r: &str| format!("{A}:{r}");
        // (executed, Source_UUID, Retrieved_Gtid_Set) per replica.
        type Replica<'a> = (String, Option<&'a str>, String);
        let cases: Vec<(&str, Vec<Replica>, Vec<bool>)> = vec![
            (
                "ahead on the dead primary's stream only: clean",
                vec![
                    (a("1-10"), Some(A), String::new()),
                    (a("1-8"), Some(A), String::new()),
                ],
                vec![false, false],
            ),
            (
                "a write of its own the other lacks: errant",
                vec![
                    (format!("{},{R1}:1", a("1-10")), Some(A), String::new()),
                    (a("1-10"), Some(A), String::new()),
                ],
                vec![true, false],
            ),
            (
                "a former primary's old stream that everyone has: clean",
                vec![
                    (format!("{},{OLD}:1-50", a("1-10")), Some(A), String::new()),
                    (format!("{},{OLD}:1-50", a("1-9")), Some(A), String::new()),
                ],
                vec![false, false],
            ),
            (
                "another stream the other has only received (relay log): clean",
                vec![
                    (format!("{},{OLD}:1-50", a("1-10")), Some(A), String::new()),
                    (
                        format!("{},{OLD}:1-49", a("1-9")),
                        Some(A),
                        format!("{OLD}:50"),
                    ),
                ],
                vec![false, false],
            ),
            (
                "the source's uuid known from one replica only",
                vec![
                    (format!("{},{R1}:1-2", a("1-10")), None, String::new()),
                    (a("1-10"), Some(A), String::new()),
                ],
                vec![true, false],
            ),
            (
                "the source's uuid unknown: nothing can be told",
                vec![
                    (format!("{},{R1}:1-2", a("1-10")), None, String::new()),
                    (a("1-10"), None, String::new()),
                ],
                vec![false, false],
            ),
            (
                "a single replica: nothing to compare",
                vec![(format!("{},{R1}:1", a("1-10")), Some(A), String::new())],
                vec![false],
            ),
        ];
        for (what, replicas, want) in cases {
            let r: Vec<(&str, Option<&str>, &str)> = replicas
                .iter()
                .map(|(e, u, rc)| (e.as_str(), *u, rc.as_str()))
                .collect();
            assert_eq!(after_death(&r), want, "{what}");
        }
    }

    #[test]
    fn a_live_source_is_compared_exactly() {
        let primary = server(&format!("{A}:1-10"), None, "");
        let servers = vec![
            primary,
            server(&format!("{A}:1-10,{R1}:1"), Some(A), ""),
            server(&format!("{A}:1-7"), Some(A), ""),
        ];
        let sources = [None, Some(0), Some(0)];
        assert_eq!(own_writes(&servers, &sources), [false, true, false]);
    }
}
