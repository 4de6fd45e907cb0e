//! orch's own privileges: `SHOW GRANTS` read into [`Privileges`], and which privileges each
//! step needs on each flavour, with the rules by which one privilege covers another.
//!
//! Takes `SHOW GRANTS` rows, and a step's action with the server's [`Dialect`]; gives the
//! privileges held and the ones missing. Pure: the rows are read by observation
//! (`MysqlExecutor::read`), in the same round trip as its first query.
//!
//! Why it is checked before a plan or a recovery starts rather than left to the statements:
//! a switchover fences the old primary, then resets the candidate's replication (`RESET
//! SLAVE ALL` needs `RELOAD`), then promotes it. A missing privilege found by the server
//! half-way leaves a cluster without a writable server. So every server a plan changes
//! must hold everything its steps need before the first step runs.
//!
//! The rules are the servers' own (MariaDB's `sql/privilege.h`, the MySQL 8 manual):
//! - `ALL PRIVILEGES ON *.*` covers everything. MySQL 8 never prints it: it lists each
//!   privilege instead (dynamic ones on a line of their own).
//! - MariaDB 10.5.2 split `SUPER`; `SUPER` still covers `REPLICATION SLAVE ADMIN`
//!   (STOP/START SLAVE, CHANGE MASTER), `SLAVE MONITOR` (SHOW SLAVE STATUS) and
//!   `CONNECTION ADMIN` (KILL), but since 10.11.0 no longer `READ_ONLY ADMIN` (SET GLOBAL
//!   read_only). `RESET SLAVE` needs `RELOAD`, `SHOW SLAVE HOSTS` `REPLICATION MASTER
//!   ADMIN`, the processlist of others `PROCESS`, nothing covers those but themselves.
//!   Before 10.5.9 the privileges were different again (no `SLAVE MONITOR`): orch does
//!   not check them there.
//! - MySQL 8: the deprecated `SUPER` still covers `SYSTEM_VARIABLES_ADMIN` (SET GLOBAL
//!   super_read_only), `REPLICATION_SLAVE_ADMIN` and `CONNECTION_ADMIN`; `RESET REPLICA`
//!   needs `RELOAD` (8.0 and 8.4), `SHOW REPLICA STATUS` `REPLICATION CLIENT` or `SUPER`.
//!
//! Only global grants (`ON *.*`) count: every privilege here is global.

use super::step::Dialect;
use crate::gtid::Flavor;
use crate::observe::Privileges;
use crate::step::Action;

/// One privilege a step needs: `privilege` is what to grant; any of `any_of` will do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    pub privilege: &'static str,
    pub any_of: &'static [&'static str],
    /// The statement that needs it.
    pub for_what: &'static str,
}

const fn need(
    privilege: &'static str,
    any_of: &'static [&'static str],
    for_what: &'static str,
) -> Need {
    Need {
        privilege,
        any_of,
        for_what,
    }
}

// MariaDB 10.5.9 and later.
const MARIADB_READ_ONLY: Need = need(
    "READ_ONLY ADMIN",
    &["READ_ONLY ADMIN"],
    "SET GLOBAL read_only",
);
// Before 10.11.0 SUPER still covered it.
const MARIADB_READ_ONLY_OLD: Need = need(
    "READ_ONLY ADMIN",
    &["READ_ONLY ADMIN", "SUPER"],
    "SET GLOBAL read_only",
);
const MARIADB_REPLICA_ADMIN: Need = need(
    "REPLICATION SLAVE ADMIN",
    &["REPLICATION SLAVE ADMIN", "SUPER"],
    "STOP SLAVE / START SLAVE / CHANGE MASTER TO",
);
const MARIADB_KILL: Need = need(
    "CONNECTION ADMIN",
    &["CONNECTION ADMIN", "SUPER"],
    "KILL CONNECTION of the sessions a fence ends",
);
const MARIADB_MONITOR: Need = need(
    "SLAVE MONITOR",
    &["SLAVE MONITOR", "SUPER"],
    "SHOW SLAVE STATUS",
);
const MARIADB_RESET: Need = need("RELOAD", &["RELOAD"], "RESET SLAVE ALL");

const MYSQL_READ_ONLY: Need = need(
    "SYSTEM_VARIABLES_ADMIN",
    &["SYSTEM_VARIABLES_ADMIN", "SUPER"],
    "SET GLOBAL super_read_only / read_only",
);
const MYSQL_REPLICA_ADMIN: Need = need(
    "REPLICATION_SLAVE_ADMIN",
    &["REPLICATION_SLAVE_ADMIN", "SUPER"],
    "STOP REPLICA / START REPLICA / CHANGE REPLICATION SOURCE TO",
);
const MYSQL_KILL: Need = need(
    "CONNECTION_ADMIN",
    &["CONNECTION_ADMIN", "SUPER"],
    "KILL CONNECTION of the sessions holding a fence back",
);
const MYSQL_MONITOR: Need = need(
    "REPLICATION CLIENT",
    &["REPLICATION CLIENT", "SUPER"],
    "SHOW REPLICA STATUS",
);
const MYSQL_RESET: Need = need("RELOAD", &["RELOAD"], "RESET REPLICA ALL");

/// Both flavours: without it the processlist silently shows only orch's own sessions, and
/// a fence would kill none of the others.
const PROCESS: Need = need(
    "PROCESS",
    &["PROCESS"],
    "the other sessions in the processlist (a fence ends them)",
);

/// What `action` needs on a server speaking `d`; None when orch does not know the rules
/// for that server (MariaDB before 10.5.9, MySQL before 8.0): nothing is checked there.
pub fn needs(d: Dialect, action: &Action) -> Option<Vec<Need>> {
    let mariadb = d.flavor == Flavor::Mariadb;
    if (mariadb && d.version < (10, 5, 9)) || (!mariadb && d.version < (8, 0, 0)) {
        return None;
    }
    let read_only = match (mariadb, d.version < (10, 11, 0)) {
        (true, true) => MARIADB_READ_ONLY_OLD,
        (true, false) => MARIADB_READ_ONLY,
        (false, _) => MYSQL_READ_ONLY,
    };
    let (admin, kill, monitor, reset) = if mariadb {
        (
            MARIADB_REPLICA_ADMIN,
            MARIADB_KILL,
            MARIADB_MONITOR,
            MARIADB_RESET,
        )
    } else {
        (MYSQL_REPLICA_ADMIN, MYSQL_KILL, MYSQL_MONITOR, MYSQL_RESET)
    };
    Some(match action {
        // Both flavours list the client sessions and may kill them (MariaDB always, MySQL
        // those holding super_read_only back).
        Action::Fence { kill_writers: true } => vec![read_only, kill, PROCESS],
        Action::Fence {
            kill_writers: false,
        }
        | Action::Unfence
        | Action::Promote => vec![read_only],
        Action::StopReplication
        | Action::StopIo
        | Action::StartReplication
        | Action::ChangeSource { .. } => vec![admin],
        Action::WaitRelayLog { .. } => vec![monitor],
        Action::ResetReplication => vec![reset],
        // SELECT @@gtid_* and WAIT_FOR_EXECUTED_GTID_SET need nothing.
        Action::WaitForGtid { .. } => Vec::new(),
    })
}

/// The needs `held` does not satisfy.
pub fn missing<'a>(held: &Privileges, needs: &'a [Need]) -> Vec<&'a Need> {
    let has = |p: &str| held.global.iter().any(|g| g == p || g == "ALL PRIVILEGES");
    needs
        .iter()
        .filter(|n| !n.any_of.iter().any(|p| has(p)))
        .collect()
}

/// `SHOW GRANTS` rows as [`Privileges`]: the global privileges of every `GRANT ... ON *.*`
/// row (the account's own, and on MariaDB its active role's), the roles granted, and the
/// account's name. Anything after the grantee (a password hash, `WITH GRANT OPTION`) is
/// never kept.
pub fn parse(rows: &[String]) -> Privileges {
    let mut p = Privileges::default();
    for row in rows {
        let Some(rest) = row.trim().strip_prefix("GRANT ") else {
            // MariaDB's `SET DEFAULT ROLE ... FOR ...`, anything else.
            continue;
        };
        let Some(to) = find_keyword(rest, " TO ") else {
            continue;
        };
        let (what, grantee) = (&rest[..to], grantee(&rest[to + 4..]));
        match find_keyword(what, " ON ") {
            Some(on) => {
                if what[on + 4..].trim() != "*.*" {
                    continue;
                }
                if p.account.is_empty() && grantee.contains('@') {
                    p.account = grantee.to_string();
                }
                p.global.extend(
                    what[..on]
                        .split(',')
                        .map(|s| s.trim().to_ascii_uppercase())
                        .filter(|s| !s.is_empty() && s != "USAGE"),
                );
            }
            // `GRANT role TO user`.
            None => p
                .roles
                .extend(what.split(',').map(|s| s.trim().to_string())),
        }
    }
    p.global.sort();
    p.global.dedup();
    p
}

/// The first `keyword` outside quotes (a role or account name may contain " TO ").
fn find_keyword(s: &str, keyword: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if matches!(c, '\'' | '`' | '"') => quote = Some(c),
            None if s[i..].starts_with(keyword) => return Some(i),
            None => {}
        }
    }
    None
}

/// The grantee at the start of `s`: `'user'@'host'`, `` `user`@`host` `` or `'role'`, up
/// to the first space outside quotes.
fn grantee(s: &str) -> &str {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if matches!(c, '\'' | '`' | '"') => quote = Some(c),
            None if c == ' ' => return &s[..i],
            None => {}
        }
    }
    s
}

/// The statement that grants `privileges` to `account` (MySQL's dynamic privileges and
/// static ones may share one GRANT).
pub fn grant_statement(account: &str, privileges: &[&str]) -> String {
    let account = if account.is_empty() {
        "<orch's account>"
    } else {
        account
    };
    format!("GRANT {} ON *.* TO {account}", privileges.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    fn d(flavor: Flavor, version: &str) -> Dialect {
        Dialect::of(flavor, version)
    }

    #[test]
    fn show_grants_is_read_without_the_password() {
        // MariaDB 10.11, as the sandbox's account shows it.
        let p = parse(&rows(&[
            "GRANT RELOAD, PROCESS, SHOW DATABASES, BINLOG MONITOR, CONNECTION ADMIN, READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, SLAVE MONITOR ON *.* TO `orch`@`%` IDENTIFIED BY PASSWORD '*A4B6157319038724E3560894F7F932C8886EBFCF'",
            "GRANT SELECT ON `shop`.* TO `orch`@`%`",
        ]));
        assert_eq!(p.account, "`orch`@`%`");
        assert!(p.global.contains(&"READ_ONLY ADMIN".to_string()));
        assert!(!p.global.contains(&"SELECT".to_string()));
        assert!(!format!("{p:?}").contains("A4B6"));
        // MySQL 8: static and dynamic privileges on separate rows, a role.
        let p = parse(&rows(&[
            "GRANT RELOAD, PROCESS, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `orch`@`%`",
            "GRANT CONNECTION_ADMIN,REPLICATION_SLAVE_ADMIN,SYSTEM_VARIABLES_ADMIN ON *.* TO `orch`@`%`",
            "GRANT SELECT ON `performance_schema`.* TO `orch`@`%`",
            "GRANT `ops`@`%` TO `orch`@`%`",
        ]));
        assert_eq!(p.roles, ["`ops`@`%`"]);
        assert!(p.global.contains(&"SYSTEM_VARIABLES_ADMIN".to_string()));
        assert!(p.global.contains(&"RELOAD".to_string()));
        // MariaDB with an active role: the role's row counts, the account stays the user's.
        let p = parse(&rows(&[
            "GRANT `ops` TO `orch`@`%`",
            "GRANT USAGE ON *.* TO `orch`@`%`",
            "GRANT RELOAD ON *.* TO `ops`",
            "SET DEFAULT ROLE `ops` FOR `orch`@`%`",
        ]));
        assert_eq!(
            (p.account.as_str(), p.global.as_slice()),
            ("`orch`@`%`", &["RELOAD".to_string()][..])
        );
    }

    /// The sandbox grants exactly what the sandbox docs list; every step orch may run
    /// must find what it needs there, on both flavours (MySQL's RELOAD was missing).
    #[test]
    fn the_sandbox_account_can_run_every_step() {
        use crate::sandbox::config::{MARIADB_ORCH_PRIVILEGES, MYSQL_ORCH_PRIVILEGES};
        use crate::step::GtidPosition;
        use crate::topology::Address;
        let actions = [
            Action::Fence { kill_writers: true },
            Action::Fence {
                kill_writers: false,
            },
            Action::Unfence,
            Action::StopReplication,
            Action::StopIo,
            Action::WaitRelayLog { timeout_secs: 1 },
            Action::WaitForGtid {
                until: "db1".into(),
                until_address: Address::parse("10.0.0.1:3306").unwrap(),
                timeout_secs: 1,
            },
            Action::ChangeSource {
                source: "db1".into(),
                source_address: Address::parse("10.0.0.1:3306").unwrap(),
                gtid_position: GtidPosition::SlavePos,
                delay_secs: 0,
                with_credentials: true,
            },
            Action::StartReplication,
            Action::Promote,
            Action::ResetReplication,
        ];
        for (dialect, list) in [
            (
                d(Flavor::Mariadb, "10.11.6-MariaDB"),
                MARIADB_ORCH_PRIVILEGES,
            ),
            (d(Flavor::Mysql, "8.0.36"), MYSQL_ORCH_PRIVILEGES),
            (d(Flavor::Mysql, "8.4.3"), MYSQL_ORCH_PRIVILEGES),
        ] {
            let held = Privileges {
                account: "'orch'@'127.%'".into(),
                global: list.iter().map(|p| p.name.to_string()).collect(),
                roles: Vec::new(),
            };
            for a in &actions {
                let needs = needs(dialect, a).unwrap();
                assert!(missing(&held, &needs).is_empty(), "{dialect:?} {a:?}");
            }
        }
    }

    #[test]
    fn implication_rules() {
        let held = |g: &[&str]| Privileges {
            account: "'orch'@'%'".into(),
            global: g.iter().map(|s| s.to_string()).collect(),
            roles: Vec::new(),
        };
        let names = |held: &Privileges, d: Dialect, a: &Action| -> Vec<&'static str> {
            missing(held, &needs(d, a).unwrap())
                .iter()
                .map(|n| n.privilege)
                .collect()
        };
        let maria = d(Flavor::Mariadb, "10.11.6-MariaDB-0+deb12u1-log");
        let maria_10_6 = d(Flavor::Mariadb, "10.6.16-MariaDB");
        let mysql = d(Flavor::Mysql, "8.0.36");
        let fence = Action::Fence { kill_writers: true };
        let all = held(&["ALL PRIVILEGES"]);
        let sup = held(&["SUPER"]);
        let cases: &[(&Privileges, Dialect, &Action, &[&str])] = &[
            // ALL PRIVILEGES ON *.* covers everything.
            (&all, maria, &fence, &[]),
            (&all, maria, &Action::ResetReplication, &[]),
            // SUPER no longer covers read_only from MariaDB 10.11, did before.
            (&sup, maria, &fence, &["READ_ONLY ADMIN", "PROCESS"]),
            (&sup, maria_10_6, &Action::Promote, &[]),
            (&sup, maria, &Action::StopReplication, &[]),
            // RESET needs RELOAD on both flavours; SUPER does not cover it.
            (&sup, maria, &Action::ResetReplication, &["RELOAD"]),
            (&sup, mysql, &Action::ResetReplication, &["RELOAD"]),
            (
                &held(&["REPLICATION SLAVE ADMIN"]),
                maria,
                &Action::ResetReplication,
                &["RELOAD"],
            ),
            (&held(&["RELOAD"]), mysql, &Action::ResetReplication, &[]),
            (&sup, mysql, &fence, &["PROCESS"]),
            (
                &held(&["REPLICATION CLIENT"]),
                mysql,
                &Action::WaitRelayLog { timeout_secs: 1 },
                &[],
            ),
            (
                &held(&["PROCESS"]),
                mysql,
                &Action::Promote,
                &["SYSTEM_VARIABLES_ADMIN"],
            ),
        ];
        for (held, d, action, want) in cases {
            assert_eq!(names(held, *d, action), *want, "{held:?} {d:?} {action:?}");
        }
        // Rules orch does not know: nothing is checked.
        assert!(needs(d(Flavor::Mariadb, "10.4.32-MariaDB"), &fence).is_none());
        assert!(needs(d(Flavor::Mysql, "5.7.44"), &fence).is_none());
        assert_eq!(
            grant_statement("'orch'@'%'", &["RELOAD", "PROCESS"]),
            "GRANT RELOAD, PROCESS ON *.* TO 'orch'@'%'"
        );
    }
}
