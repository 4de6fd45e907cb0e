//! The failover policy: when orch may act on its own, how it chooses, and what it runs.
//!
//! Takes a positioned YAML tree, gives a [`Policy`] and diagnostics. Every key is optional;
//! an absent key takes the value of the built-in `safe` policy (`policies/safe.yaml`, which
//! spells every default out; a test keeps the two equal). No I/O.

use std::time::Duration;

use serde::Serialize;

use super::decode::{Decoder, Spanned, format_duration};
use super::diag::{Code, did_you_mean};
use super::yaml::Node;

/// The built-in policies, by name: the files under `policies/`, compiled in.
pub const BUILTIN: &[(&str, &str)] = &[
    ("safe", include_str!("../../policies/safe.yaml")),
    ("manual", include_str!("../../policies/manual.yaml")),
    ("fast", include_str!("../../policies/fast.yaml")),
];

/// Placeholders a hook command may use; each is replaced by a shell-quoted value.
pub const PLACEHOLDERS: &[&str] = &[
    "cluster",
    "event",
    "failed",
    "failed_address",
    "failed_dc",
    "successor",
    "successor_address",
    "successor_dc",
    "lost",
    "reason",
    "time",
];

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Policy {
    pub failover: Failover,
    pub hooks: Hooks,
    /// What watch does about drift that is not a failure.
    pub reconcile: Reconcile,
}

/// What `orch watch` does about drift (a stopped or moved replica, a wrong delay).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reconcile {
    /// Report it (status, the watch log).
    Report,
    /// Also run the plan's repairs, moves and joins through apply's engine: never a
    /// switchover, never a change that would lose a replica.
    Repair,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Failover {
    /// false: detect, record and notify, but never change a server on its own.
    pub automatic: bool,
    pub detect: Detect,
    pub promote: Promote,
    /// Set read_only on the old primary (and kill sessions that can still write) whenever
    /// it answers.
    pub fence_old_primary: bool,
    /// At most one automatic failover per cluster within this window.
    #[serde(with = "as_text")]
    pub anti_flap: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Detect {
    #[serde(with = "as_text")]
    pub poll_interval: Duration,
    /// How long a failure must persist, seen by every probe, before it is acted upon.
    #[serde(with = "as_text")]
    pub grace: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Promote {
    /// A candidate further behind than this is never promoted.
    #[serde(with = "as_text")]
    pub max_lag: Duration,
    /// How long candidates may take to apply the relay log they already received.
    #[serde(with = "as_text")]
    pub wait_relay_log: Duration,
    pub cross_dc: CrossDc,
    pub errant_gtid: ErrantGtid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CrossDc {
    /// Never move the primary to another data centre automatically.
    Deny,
    /// Any data centre; the primary's own is preferred among equals.
    Allow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrantGtid {
    /// A candidate with transactions the primary never had is not promotable.
    Exclude,
    /// Errant transactions are reported but do not disqualify a candidate.
    Allow,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Hooks {
    pub on_detect: Vec<String>,
    /// A non-zero exit aborts the failover.
    pub pre_failover: Vec<String>,
    pub post_failover: Vec<String>,
    pub post_unsuccessful_failover: Vec<String>,
    /// Before `orch apply` runs a switchover: a non-zero exit aborts the apply.
    pub pre_switchover: Vec<String>,
    /// After `orch apply` ran a switchover.
    pub post_switchover: Vec<String>,
    /// URLs that receive each event as a JSON POST.
    pub webhooks: Vec<Webhook>,
    /// A hook still running after this is killed (and counts as failed).
    #[serde(with = "as_text")]
    pub timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            failover: Failover {
                automatic: true,
                detect: Detect {
                    poll_interval: Duration::from_secs(1),
                    grace: Duration::from_secs(5),
                },
                promote: Promote {
                    max_lag: Duration::from_secs(10),
                    wait_relay_log: Duration::from_secs(30),
                    cross_dc: CrossDc::Deny,
                    errant_gtid: ErrantGtid::Exclude,
                },
                fence_old_primary: true,
                anti_flap: Duration::from_secs(3600),
            },
            reconcile: Reconcile::Report,
            hooks: Hooks {
                timeout: Duration::from_secs(60),
                ..Hooks::default()
            },
        }
    }
}

/// One webhook: a URL, and the shared secret that signs each body (HMAC-SHA256).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Webhook {
    pub url: String,
    /// `secret: ${ENV}` or `secret_file: PATH` (relative to the policy file).
    #[serde(skip)]
    pub secret: Option<super::secret::SecretRef>,
    /// `ca_file: PATH` (relative to the policy file): the CA an https:// receiver's
    /// certificate chains up to, instead of the public roots (a private receiver).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

mod as_text {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }
}

const HOOK_KEYS: &[&str] = &[
    "on_detect",
    "pre_failover",
    "post_failover",
    "post_unsuccessful_failover",
    "pre_switchover",
    "post_switchover",
    "webhooks",
    "timeout",
];

/// The keys of a policy document.
pub const TOP_KEYS: &[&str] = &["failover", "hooks", "reconcile"];

/// Reads a policy document; absent keys keep the `safe` defaults.
pub fn decode(dec: &mut Decoder, root: &Node) -> Policy {
    let mut policy = Policy::default();
    let Some(top) = dec.map(root, "", Some(TOP_KEYS)) else {
        return policy;
    };
    if let Some(node) = top.get("failover") {
        decode_failover(dec, node, &mut policy.failover);
    }
    if let Some(node) = top.get("hooks") {
        decode_hooks(dec, node, &mut policy.hooks);
    }
    if let Some(node) = top.get("reconcile") {
        set(
            &mut policy.reconcile,
            dec.choice(
                node,
                "reconcile",
                &[("report", Reconcile::Report), ("repair", Reconcile::Repair)],
            ),
        );
    }
    policy
}

fn decode_failover(dec: &mut Decoder, node: &Node, f: &mut Failover) {
    let keys = &[
        "automatic",
        "detect",
        "promote",
        "fence_old_primary",
        "anti_flap",
    ];
    let Some(fields) = dec.map(node, "failover", Some(keys)) else {
        return;
    };
    for (key, _, value) in fields.entries() {
        let path = fields.child_path(key);
        match key {
            "automatic" => set(&mut f.automatic, dec.boolean(value, &path)),
            "fence_old_primary" => set(&mut f.fence_old_primary, dec.boolean(value, &path)),
            "anti_flap" => set(&mut f.anti_flap, dec.duration(value, &path)),
            "detect" => {
                let Some(d) = dec.map(value, &path, Some(&["poll_interval", "grace"])) else {
                    continue;
                };
                for (k, _, v) in d.entries() {
                    let p = d.child_path(k);
                    let slot = if k == "grace" {
                        &mut f.detect.grace
                    } else {
                        &mut f.detect.poll_interval
                    };
                    set(slot, dec.duration(v, &p));
                }
                if f.detect.grace < f.detect.poll_interval {
                    let (grace, poll) = (
                        format_duration(f.detect.grace),
                        format_duration(f.detect.poll_interval),
                    );
                    dec.report(
                        Code::GraceBelowPoll,
                        value.pos,
                        &path,
                        format!("grace {grace} is shorter than poll_interval {poll}: one failed probe would confirm a failure"),
                    )
                    .hint = Some("make grace at least two poll intervals".into());
                }
            }
            "promote" => {
                let keys = &["max_lag", "wait_relay_log", "cross_dc", "errant_gtid"];
                let Some(p) = dec.map(value, &path, Some(keys)) else {
                    continue;
                };
                for (k, _, v) in p.entries() {
                    let kp = p.child_path(k);
                    match k {
                        "max_lag" => set(&mut f.promote.max_lag, dec.duration(v, &kp)),
                        "wait_relay_log" => {
                            set(&mut f.promote.wait_relay_log, dec.duration(v, &kp))
                        }
                        "cross_dc" => set(
                            &mut f.promote.cross_dc,
                            dec.choice(
                                v,
                                &kp,
                                &[("deny", CrossDc::Deny), ("allow", CrossDc::Allow)],
                            ),
                        ),
                        _ => set(
                            &mut f.promote.errant_gtid,
                            dec.choice(
                                v,
                                &kp,
                                &[
                                    ("exclude", ErrantGtid::Exclude),
                                    ("allow", ErrantGtid::Allow),
                                ],
                            ),
                        ),
                    }
                }
            }
            _ => unreachable!("map() only returns allowed keys"),
        }
    }
}

/// `webhooks:` a list of URLs, or of `{url, secret | secret_file, ca_file}`.
fn decode_webhooks(dec: &mut Decoder, node: &Node, path: &str) -> Vec<Webhook> {
    if node.is_null() {
        return Vec::new();
    }
    let crate::spec::yaml::Kind::Seq(items) = &node.kind else {
        dec.report(
            Code::WrongType,
            node.pos,
            path,
            format!("expected a list, found {}", node.describe()),
        )
        .hint = Some("write a list of URLs, or of { url: ..., secret: ${ENV} }".into());
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let (url, secret, ca_file) = if matches!(item.kind, crate::spec::yaml::Kind::Map(_)) {
            let Some(fields) = dec.map(
                item,
                &item_path,
                Some(&["url", "secret", "secret_file", "ca_file"]),
            ) else {
                continue;
            };
            let Some(url) = fields.get("url") else {
                dec.report(Code::MissingKey, item.pos, &item_path, "missing `url`")
                    .hint = Some("add `url: https://...`".into());
                continue;
            };
            let url = dec.string(url, &fields.child_path("url"));
            let secret = crate::spec::decode_secret(dec, &fields, "secret", false);
            let ca_file = fields
                .get("ca_file")
                .and_then(|n| dec.string(n, &fields.child_path("ca_file")));
            (url, secret, ca_file)
        } else {
            (dec.string(item, &item_path), None, None)
        };
        let Some(url) = url else { continue };
        if let Some(ca) = &ca_file
            && !url.value.starts_with("https://")
        {
            dec.report(
                Code::BadValue,
                ca.pos,
                &format!("{item_path}.ca_file"),
                "a CA for a webhook that is not https://",
            )
            .hint = Some("use an https:// URL, or remove ca_file".into());
            continue;
        }
        if !(url.value.starts_with("http://") || url.value.starts_with("https://")) {
            dec.report(
                Code::BadValue,
                url.pos,
                path,
                format!("`{}` is not an http(s) URL", url.value),
            )
            .hint = Some("webhooks are URLs like https://hooks.example.com/orch".into());
            continue;
        }
        out.push(Webhook {
            url: url.value,
            secret,
            ca_file: ca_file.map(|c| c.value),
        });
    }
    out
}

fn decode_hooks(dec: &mut Decoder, node: &Node, h: &mut Hooks) {
    let Some(fields) = dec.map(node, "hooks", Some(HOOK_KEYS)) else {
        return;
    };
    for (key, _, value) in fields.entries() {
        let path = fields.child_path(key);
        match key {
            "timeout" => set(&mut h.timeout, dec.duration(value, &path)),
            "webhooks" => h.webhooks = decode_webhooks(dec, value, &path),
            _ => {
                let commands = dec.strings(value, &path);
                for command in &commands {
                    check_placeholders(dec, command, &path);
                }
                let list = commands.into_iter().map(|c| c.value).collect();
                match key {
                    "on_detect" => h.on_detect = list,
                    "pre_failover" => h.pre_failover = list,
                    "post_failover" => h.post_failover = list,
                    "pre_switchover" => h.pre_switchover = list,
                    "post_switchover" => h.post_switchover = list,
                    _ => h.post_unsuccessful_failover = list,
                }
            }
        }
    }
}

/// `{name}` must be a known placeholder; `{{` and `}}` are literal braces.
fn check_placeholders(dec: &mut Decoder, command: &Spanned<String>, path: &str) {
    for name in placeholders(&command.value) {
        match name {
            Ok(name) if PLACEHOLDERS.contains(&name) => {}
            Ok(name) => {
                let hint = match did_you_mean(name, PLACEHOLDERS.iter().copied()) {
                    Some(m) => format!("did you mean {{{m}}}? known: {}", braced(PLACEHOLDERS)),
                    None => format!(
                        "known: {} (write {{{{ and }}}} for literal braces)",
                        braced(PLACEHOLDERS)
                    ),
                };
                dec.report(
                    Code::UnknownPlaceholder,
                    command.pos,
                    path,
                    format!("unknown placeholder {{{name}}}"),
                )
                .hint = Some(hint);
            }
            Err(why) => {
                dec.report(Code::UnknownPlaceholder, command.pos, path, why)
                    .hint = Some("write {{ and }} for literal braces".into());
            }
        }
    }
}

fn braced(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{{{n}}}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The placeholders in a hook template, in order.
pub fn placeholders(template: &str) -> Vec<Result<&str, String>> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find(['{', '}']) {
        let brace = rest.as_bytes()[at];
        let after = &rest[at + 1..];
        if after.as_bytes().first() == Some(&brace) {
            rest = &after[1..];
            continue;
        }
        if brace == b'}' {
            out.push(Err("a lone `}`".to_string()));
            rest = after;
            continue;
        }
        match after.find('}') {
            Some(end) => {
                out.push(Ok(&after[..end]));
                rest = &after[end + 1..];
            }
            None => {
                out.push(Err("a `{` that is not closed".to_string()));
                break;
            }
        }
    }
    out
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml;
    use std::path::Path;

    fn decode_text(text: &str) -> (Policy, Vec<String>) {
        let root = yaml::load(text).unwrap();
        let mut dec = Decoder::new(Path::new("p.yaml"));
        let policy = decode(&mut dec, &root);
        (policy, dec.diags.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn builtin_safe_spells_out_the_defaults() {
        let (policy, diags) = decode_text(BUILTIN[0].1);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(policy, Policy::default());
    }

    #[test]
    fn builtins_are_clean_and_distinct() {
        let mut seen = Vec::new();
        for (name, text) in BUILTIN {
            let (policy, diags) = decode_text(text);
            assert!(diags.is_empty(), "{name}: {diags:?}");
            assert!(!seen.contains(&policy), "{name} equals another built-in");
            seen.push(policy);
        }
    }

    #[test]
    fn diagnostics_table() {
        let cases = [
            (
                "failover: { automatc: true }",
                "E201 unknown-key]: failover.automatc: unknown key `automatc`",
            ),
            (
                "failover: { automatic: yes }",
                "E204 wrong-type]: failover.automatic: expected true or false, found `yes`",
            ),
            (
                "failover: { anti_flap: 10 }",
                "E206 bad-duration]: failover.anti_flap: `10` is not a duration",
            ),
            (
                "failover: { promote: { cross_dc: never } }",
                "E207 bad-value]: failover.promote.cross_dc: `never` is not allowed",
            ),
            (
                "hooks: { on_detect: [\"echo {clustr}\"] }",
                "E308 unknown-placeholder]: hooks.on_detect: unknown placeholder {clustr}",
            ),
            (
                "hooks: { on_detect: \"echo\" }",
                "E204 wrong-type]: hooks.on_detect: expected a list",
            ),
            (
                "hooks: { webhooks: [\"ftp://x\"] }",
                "E207 bad-value]: hooks.webhooks: `ftp://x` is not an http(s) URL",
            ),
            (
                "hooks: { webhooks: [{ url: \"http://x/\", ca_file: ca.pem }] }",
                "E207 bad-value]: hooks.webhooks[0].ca_file: a CA for a webhook that is not https://",
            ),
            (
                "failover: 3",
                "E204 wrong-type]: failover: expected a mapping",
            ),
            (
                "hooks: {}\nhooks: {}",
                "E202 duplicate-key]: hooks: `hooks` is given twice",
            ),
        ];
        for (text, want) in cases {
            let (_, diags) = decode_text(text);
            assert!(
                diags.iter().any(|d| d.contains(want)),
                "{text}: want {want}, got {diags:?}"
            );
        }
    }

    #[test]
    fn placeholder_table() {
        fn ok<'a>(v: &[&'a str]) -> Vec<Result<&'a str, String>> {
            v.iter().map(|s| Ok(*s)).collect()
        }
        assert_eq!(
            placeholders("notify {cluster} {failed}"),
            ok(&["cluster", "failed"])
        );
        assert_eq!(placeholders("awk '{{print}}' {lost}"), ok(&["lost"]));
        assert!(placeholders("x {cluster").iter().any(|r| r.is_err()));
        assert!(placeholders("x } y").iter().any(|r| r.is_err()));
    }
}
