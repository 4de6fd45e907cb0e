//! The shared vocabulary of desired and observed topologies: host ids and addresses.
//!
//! Takes strings, gives validated values. No I/O (an address is never resolved here).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which server family: they differ in GTID model, SQL and privileges. Decided from the
/// server's `@@version` (or a binary's `--version`), never from a file name: on Debian
/// `/usr/sbin/mysqld` is a symlink to `mariadbd`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    Mysql,
    Mariadb,
}

impl Flavor {
    /// The product name for people.
    pub fn label(self) -> &'static str {
        match self {
            Flavor::Mariadb => "MariaDB",
            Flavor::Mysql => "MySQL",
        }
    }

    /// The command-line client users are told to run.
    pub fn client(self) -> &'static str {
        match self {
            Flavor::Mariadb => "mariadb",
            Flavor::Mysql => "mysql",
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// `host:port` of a MySQL/MariaDB server. The host is a DNS name, an IPv4 address or an
/// IPv6 address in brackets (`[::1]:3306`); the port is explicit, 1 to 65535.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    pub host: String,
    pub port: u16,
}

impl Address {
    /// The server this address reaches, for telling duplicates apart: host names in lower
    /// case, IP addresses in canonical form, and IPv4-mapped IPv6 (`[::ffff:10.0.0.5]`) as
    /// the IPv4 address it is. Two addresses with one key are one server.
    pub fn key(&self) -> (String, u16) {
        let host = match self.host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => v6.to_string(),
            },
            Ok(ip) => ip.to_string(),
            Err(_) => self.host.to_ascii_lowercase(),
        };
        (host, self.port)
    }

    /// Parses `host:port`; the error says what is wrong in words a person can act on.
    pub fn parse(text: &str) -> Result<Address, String> {
        let text = text.trim();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let Some((host, port)) = rest.split_once("]:") else {
                return Err("an IPv6 address is written [addr]:port".into());
            };
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("`{host}` is not an IPv6 address"));
            }
            (host, port)
        } else {
            let Some((host, port)) = text.rsplit_once(':') else {
                return Err("expected host:port, e.g. 10.0.0.1:3306".into());
            };
            if host.contains(':') {
                return Err("an IPv6 address is written [addr]:port".into());
            }
            if !is_hostname(host) {
                return Err(format!("`{host}` is not a valid host name or IPv4 address"));
            }
            (host, port)
        };
        let port: u16 = match port.parse() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("port `{port}` is not a number from 1 to 65535")),
        };
        Ok(Address {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// RFC 1123 host names (which include dotted IPv4 addresses).
fn is_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Address::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Whether a name can be a cluster name or host id: it appears in file names, hook
/// arguments and URLs, so it is kept to a conservative set of characters.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A sentence about the hosts `names`, in the form that agrees with how many there are:
/// `one` or `many`, with `{}` standing for the names joined by commas. Messages name hosts
/// in lists that may hold one: `agree(&["n2"], "{} still replicates", "{} still
/// replicate")` is "n2 still replicates", with two names "n2, n3 still replicate".
pub fn agree(names: &[impl AsRef<str>], one: &str, many: &str) -> String {
    let joined: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
    let form = if names.len() == 1 { one } else { many };
    form.replace("{}", &joined.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sentence_agrees_with_the_number_of_names() {
        let (one, many) = ("{} still replicates", "{} still replicate");
        assert_eq!(agree(&["n2"], one, many), "n2 still replicates");
        assert_eq!(agree(&["n2", "n3"], one, many), "n2, n3 still replicate");
        let owned = vec![String::from("db1")];
        assert_eq!(
            agree(&owned, "its replica {} is down", "its replicas {} are down"),
            "its replica db1 is down"
        );
    }

    #[test]
    fn address_table() {
        let ok = [
            ("10.0.0.1:3306", "10.0.0.1:3306"),
            ("DB1.Example.com:3307", "db1.example.com:3307"),
            ("[::1]:3306", "[::1]:3306"),
            (" localhost:1 ", "localhost:1"),
            ("db_1:65535", "db_1:65535"),
        ];
        for (text, want) in ok {
            assert_eq!(Address::parse(text).unwrap().to_string(), want, "{text}");
        }
        let bad = [
            "10.0.0.1",
            "10.0.0.1:",
            "10.0.0.1:0",
            "10.0.0.1:65536",
            "10.0.0.1:33o6",
            ":3306",
            "::1:3306",
            "[::1]3306",
            "[zz]:3306",
            "-db:3306",
            "db..x:3306",
            "db x:3306",
        ];
        for text in bad {
            assert!(Address::parse(text).is_err(), "{text} should be refused");
        }
    }

    #[test]
    fn name_table() {
        for ok in ["db1", "shop", "db-1.east", "a", "1db", "x_y"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "-db", ".db", "db 1", "db/1", "dé", &"x".repeat(65)] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }
}
