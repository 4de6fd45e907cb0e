//! The desired state: topology files and the failover policies they name.
//!
//! Takes YAML files, gives a [`Topology`] and its [`Policy`] plus every [`Diagnostic`] found
//! in them (schema in this module and `policy`, semantics in `check`). Parsing is pure
//! (`parse_topology`); [`load`] reads the files it is given and the policy file a topology
//! names, and nothing else: secrets are resolved only by commands that connect.
//!
//! One file declares one cluster. Several clusters are several files, validated together
//! with `orch validate a.yaml b.yaml` (which also checks that cluster names and server
//! addresses are unique across them).

pub mod check;
pub mod decode;
pub mod diag;
pub mod policy;
pub mod secret;
pub mod yaml;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::topology::{Address, is_valid_name};
use decode::{Decoder, Spanned};
use diag::{Code, Diagnostic};
pub use policy::Policy;
pub use secret::{Secret, SecretRef};
use yaml::{LoadErrorKind, Node, Pos};

/// Files larger than this are refused before they are read: a 10,000-host topology is
/// about 1 MiB.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Promotion {
    /// Chosen first among equally advanced candidates.
    Prefer,
    /// May be promoted.
    Neutral,
    /// Promoted only when no `prefer` or `neutral` server can be.
    PreferNot,
    /// Never promoted (backups, delayed replicas, weak hardware, analytics).
    MustNot,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Host {
    pub id: String,
    pub pos: Pos,
    /// None when the address was missing or malformed (already reported).
    pub address: Option<Spanned<Address>>,
    /// None: this host is the primary.
    pub source: Option<Spanned<String>>,
    pub dc: Option<String>,
    pub promotion: Promotion,
    /// Desired replication delay (`MASTER_DELAY`), for delayed backup replicas.
    pub delay: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Credentials {
    pub user: String,
    /// TLS to the servers; None: plain TCP.
    pub tls: Option<Tls>,
    pub password: Option<SecretRef>,
    pub replication_user: Option<String>,
    pub replication_password: Option<SecretRef>,
}

/// How orch's connections use TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    Disabled,
    /// Encrypt; do not verify the certificate (protects against sniffing only).
    Required,
    /// Encrypt and verify the certificate chain against `ca_file`, not the name.
    VerifyCa,
    /// Encrypt, verify the chain and that the certificate names the address connected to.
    VerifyIdentity,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tls {
    pub mode: TlsMode,
    /// PEM CA bundle, relative to the topology file; without it `verify_identity` uses the
    /// built-in public roots.
    pub ca_file: Option<PathBuf>,
}

/// Which policy a topology uses: a built-in by name, or a file relative to the topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyRef {
    Builtin(String),
    File(PathBuf),
}

impl PolicyRef {
    pub fn describe(&self) -> String {
        match self {
            PolicyRef::Builtin(name) => format!("built-in {name}"),
            PolicyRef::File(path) => path.display().to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    pub file: PathBuf,
    pub cluster: String,
    pub cluster_pos: Pos,
    pub credentials: Option<Credentials>,
    pub policy: PolicyRef,
    pub policy_pos: Pos,
    /// Where `hosts:` is; None when the key is missing (already reported).
    pub hosts_pos: Option<Pos>,
    /// In file order.
    pub hosts: Vec<Host>,
}

impl Topology {
    pub fn host(&self, id: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.id == id)
    }

    /// The hosts without a source.
    pub fn primaries(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.source.is_none())
    }
}

/// What a file given to `orch validate` declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// One cluster: `cluster`, `credentials`, `policy`, `hosts`.
    Topology,
    /// A failover policy (`failover`, `hooks`), as a topology's `policy:` names it.
    Policy,
}

/// A topology file with its policy (or a policy file alone), and everything wrong with
/// either.
#[derive(Debug)]
pub struct Loaded {
    pub kind: FileKind,
    /// None when the file could not be read as a topology at all, and for a policy file.
    pub topology: Option<Topology>,
    pub policy: Option<Policy>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Reads a topology file and the policy it names, and checks both (schema and semantics of
/// the cluster); a policy file (see [`is_policy_document`]) is checked as a policy alone.
/// Never panics and never reads more than [`MAX_FILE_BYTES`] of a file.
pub fn load(path: &Path) -> Loaded {
    let mut loaded = Loaded {
        kind: FileKind::Topology,
        topology: None,
        policy: None,
        diagnostics: Vec::new(),
    };
    let root = match read_document(path) {
        Ok(root) => root,
        Err(d) => {
            loaded.diagnostics.push(*d);
            return loaded;
        }
    };
    if is_policy_document(&root) {
        let mut dec = Decoder::new(path);
        loaded.kind = FileKind::Policy;
        loaded.policy = Some(policy::decode(&mut dec, &root));
        loaded.diagnostics = dec.diags;
        return loaded;
    }
    let (topology, mut diags) = parse_topology(path, &root);
    loaded.diagnostics.append(&mut diags);
    let Some(topology) = topology else {
        return loaded;
    };
    let (policy, mut diags) = load_policy(&topology);
    loaded.diagnostics.append(&mut diags);
    loaded
        .diagnostics
        .extend(check::cluster(&topology, policy.as_ref()));
    loaded.topology = Some(topology);
    loaded.policy = policy;
    loaded
}

/// A policy file, not a topology: a mapping with `failover` or `hooks` and none of a
/// topology's keys. Anything else is read as a topology, so a broken topology file still
/// gets the topology's diagnostics (missing `cluster`, unknown keys).
pub fn is_policy_document(root: &Node) -> bool {
    let yaml::Kind::Map(entries) = &root.kind else {
        return false;
    };
    let keys = || entries.iter().filter_map(|(k, _)| k.scalar());
    keys().any(|k| policy::TOP_KEYS.contains(&k)) && !keys().any(|k| TOP_KEYS.contains(&k))
}

/// Loads a topology for a command that will act on it: any error is fatal and all of
/// them are listed in the error message.
pub fn load_valid(path: &Path) -> anyhow::Result<(Topology, Policy)> {
    let loaded = load(path);
    if loaded.kind == FileKind::Policy {
        anyhow::bail!(
            "{} is a policy file, not a topology: give the topology file that names it in `policy:`",
            path.display()
        );
    }
    if loaded.has_errors() {
        let list: Vec<String> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.to_string())
            .collect();
        anyhow::bail!(
            "{} is not a valid topology:\n{}\n(run `orch validate {}`)",
            path.display(),
            list.join("\n"),
            path.display()
        );
    }
    match (loaded.topology, loaded.policy) {
        (Some(t), Some(p)) => Ok((t, p)),
        _ => anyhow::bail!("{} could not be loaded", path.display()),
    }
}

/// Reads a file (bounded) into a YAML tree, or the one diagnostic that says why not.
pub fn read_document(path: &Path) -> Result<Node, Box<Diagnostic>> {
    let start = Pos { line: 1, column: 1 };
    let fail = |code: Code, pos: Pos, message: String, hint: &str| {
        let mut d = Diagnostic::new(code, path, pos, message);
        if !hint.is_empty() {
            d = d.hint(hint);
        }
        Box::new(d)
    };
    let file = std::fs::File::open(path).map_err(|e| {
        fail(
            Code::Io,
            start,
            format!("cannot read the file: {e}"),
            "check the path",
        )
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            fail(
                Code::Io,
                start,
                format!("cannot read the file: {e}"),
                "is it a directory?",
            )
        })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(fail(
            Code::TooLarge,
            start,
            format!(
                "the file is larger than {} MiB",
                MAX_FILE_BYTES / 1024 / 1024
            ),
            "a topology file declares one cluster; split very large inventories into one file per cluster",
        ));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let before = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = before.iter().filter(|b| **b == b'\n').count() as u32 + 1;
        let column = before.iter().rev().take_while(|b| **b != b'\n').count() as u32 + 1;
        fail(
            Code::NotUtf8,
            Pos { line, column },
            "the file is not UTF-8 text".into(),
            "is this a binary file?",
        )
    })?;
    // A NUL byte is valid UTF-8 but never part of a real YAML file.
    if let Some(at) = text.find('\0') {
        let line = text[..at].matches('\n').count() as u32 + 1;
        return Err(fail(
            Code::NotUtf8,
            Pos { line, column: 1 },
            "the file contains NUL bytes".into(),
            "is this a binary file?",
        ));
    }
    yaml::load(&text).map_err(|e| {
        let (code, hint) = match e.kind {
            LoadErrorKind::Syntax => (Code::YamlSyntax, "fix the YAML syntax at this position"),
            LoadErrorKind::Limit => (
                Code::YamlLimit,
                "write the values out instead of nesting or aliasing them",
            ),
            LoadErrorKind::MultipleDocuments => (
                Code::MultipleDocuments,
                "put each cluster in a file of its own",
            ),
            LoadErrorKind::Empty => (
                Code::NotAMapping,
                "start from one of the files in examples/",
            ),
        };
        fail(code, e.pos, e.message, hint)
    })
}

const TOP_KEYS: &[&str] = &["cluster", "credentials", "policy", "hosts"];
const CREDENTIAL_KEYS: &[&str] = &[
    "tls",
    "user",
    "password",
    "password_file",
    "replication_user",
    "replication_password",
    "replication_password_file",
];
const HOST_KEYS: &[&str] = &["address", "source", "dc", "promotion", "delay"];

/// Decodes a topology document. Returns None only when the document is not a mapping;
/// otherwise a topology with whatever could be read, and diagnostics for the rest.
pub fn parse_topology(path: &Path, root: &Node) -> (Option<Topology>, Vec<Diagnostic>) {
    let mut dec = Decoder::new(path);
    if !matches!(root.kind, yaml::Kind::Map(_)) {
        dec.report(
            Code::NotAMapping,
            root.pos,
            "",
            format!("a topology file is a mapping, found {}", root.describe()),
        )
        .hint = Some(
            "start from one of the files in examples/: cluster, credentials, policy, hosts".into(),
        );
        return (None, dec.diags);
    }
    let top = dec
        .map(root, "", Some(TOP_KEYS))
        .expect("checked to be a mapping");
    let mut t = Topology {
        file: path.to_path_buf(),
        cluster: String::new(),
        cluster_pos: root.pos,
        credentials: None,
        policy: PolicyRef::Builtin("safe".into()),
        policy_pos: root.pos,
        hosts_pos: None,
        hosts: Vec::new(),
    };
    if let Some(node) = dec.required(&top, "cluster", "the cluster's name")
        && let Some(name) = dec.string(node, "cluster")
    {
        check_name(&mut dec, &name, "cluster", "cluster");
        t.cluster = name.value;
        t.cluster_pos = name.pos;
    }
    if let Some(node) = dec.required(&top, "credentials", "the user orch connects as") {
        t.credentials = decode_credentials(&mut dec, node);
    }
    if let Some(node) = top.get("policy")
        && let Some(value) = dec.string(node, "policy")
    {
        t.policy_pos = value.pos;
        let is_path = value.value.contains('/')
            || value.value.ends_with(".yaml")
            || value.value.ends_with(".yml");
        t.policy = if is_path {
            PolicyRef::File(value.value.into())
        } else {
            PolicyRef::Builtin(value.value)
        };
    }
    if let Some(node) = dec.required(&top, "hosts", "every server of the cluster") {
        t.hosts_pos = Some(node.pos);
        if let Some(hosts) = dec.map(node, "hosts", None) {
            for (id, key, value) in hosts.entries() {
                let path = hosts.child_path(id);
                check_name(
                    &mut dec,
                    &Spanned {
                        value: id.to_string(),
                        pos: key.pos,
                    },
                    &path,
                    "host id",
                );
                if let Some(host) = decode_host(&mut dec, id, key.pos, value, &path) {
                    t.hosts.push(host);
                }
            }
        }
    }
    (Some(t), dec.diags)
}

fn check_name(dec: &mut Decoder, name: &Spanned<String>, path: &str, what: &str) {
    if !is_valid_name(&name.value) {
        dec.report(
            Code::BadName,
            name.pos,
            path,
            format!("`{}` is not a valid {what}", name.value),
        )
        .hint = Some(
            "use letters, digits, `.`, `_` and `-`, starting with a letter or digit, at most 64"
                .into(),
        );
    }
}

pub(crate) fn decode_secret(
    dec: &mut Decoder,
    fields: &decode::Fields,
    key: &str,
    required: bool,
) -> Option<SecretRef> {
    let file_key = format!("{key}_file");
    let (value, file) = (fields.get(key), fields.get(&file_key));
    match (value, file) {
        (Some(_), Some(f)) => {
            dec.report(
                Code::BadSecret,
                f.pos,
                &fields.child_path(&file_key),
                format!("both `{key}` and `{file_key}` are given"),
            )
            .hint = Some(format!(
                "keep one: `{key}: ${{ENV_VAR}}` or `{file_key}: PATH`"
            ));
            None
        }
        (Some(node), None) => {
            let path = fields.child_path(key);
            let text = dec.string(node, &path)?;
            match secret::template_vars(&text.value) {
                Err(why) => {
                    dec.report(Code::BadSecret, text.pos, &path, why).hint = Some(
                        "write ${NAME} for an environment variable and $$ for a literal $".into(),
                    );
                    return None;
                }
                Ok(vars) if vars.is_empty() => {
                    // The value itself is deliberately not quoted in the message.
                    dec.report(
                        Code::LiteralSecret,
                        text.pos,
                        &path,
                        "a password is written literally in the file",
                    )
                    .hint = Some(format!(
                        "use `{key}: ${{ORCH_PASSWORD}}` or `{file_key}: PATH` (mode 0600)"
                    ));
                }
                Ok(_) => {}
            }
            Some(SecretRef::Value(text.value))
        }
        (None, Some(node)) => {
            let text = dec.string(node, &fields.child_path(&file_key))?;
            Some(SecretRef::File(text.value.into()))
        }
        (None, None) => {
            if required {
                dec.report(
                    Code::MissingKey,
                    fields.pos,
                    &fields.path,
                    format!("missing `{key}` or `{file_key}`"),
                )
                .hint = Some(format!("add `{key}: ${{ENV_VAR}}` or `{file_key}: PATH`"));
            }
            None
        }
    }
}

fn decode_credentials(dec: &mut Decoder, node: &Node) -> Option<Credentials> {
    let fields = dec.map(node, "credentials", Some(CREDENTIAL_KEYS))?;
    let user = dec
        .required(&fields, "user", "the MySQL user orch connects as")
        .and_then(|n| dec.string(n, "credentials.user"));
    let password = decode_secret(dec, &fields, "password", true);
    let replication_user = fields
        .get("replication_user")
        .and_then(|n| dec.string(n, "credentials.replication_user"));
    let replication_password = decode_secret(
        dec,
        &fields,
        "replication_password",
        replication_user.is_some(),
    );
    if replication_user.is_none() && replication_password.is_some() {
        dec.report(
            Code::MissingKey,
            fields.pos,
            "credentials",
            "a replication password is given without `replication_user`",
        )
        .hint = Some("add `replication_user:`".into());
    }
    let tls = fields.get("tls").and_then(|node| decode_tls(dec, node));
    Some(Credentials {
        user: user?.value,
        tls,
        password,
        replication_user: replication_user.map(|u| u.value),
        replication_password,
    })
}

fn decode_tls(dec: &mut Decoder, node: &Node) -> Option<Tls> {
    let fields = dec.map(node, "credentials.tls", Some(&["mode", "ca_file"]))?;
    let modes = [
        ("disabled", TlsMode::Disabled),
        ("required", TlsMode::Required),
        ("verify_ca", TlsMode::VerifyCa),
        ("verify_identity", TlsMode::VerifyIdentity),
    ];
    let mode = dec
        .required(
            &fields,
            "mode",
            "disabled, required, verify_ca or verify_identity",
        )
        .and_then(|n| dec.choice(n, "credentials.tls.mode", &modes))?;
    let ca_file = fields
        .get("ca_file")
        .and_then(|n| dec.string(n, "credentials.tls.ca_file"))
        .map(|s| PathBuf::from(s.value));
    if mode == TlsMode::VerifyCa && ca_file.is_none() {
        dec.report(
            Code::MissingKey,
            fields.pos,
            "credentials.tls",
            "verify_ca needs `ca_file`",
        )
        .hint = Some(
            "add `ca_file: PATH` (a PEM CA bundle), or use verify_identity with public CAs".into(),
        );
    }
    Some(Tls { mode, ca_file })
}

fn decode_host(dec: &mut Decoder, id: &str, pos: Pos, node: &Node, path: &str) -> Option<Host> {
    let fields = dec.map(node, path, Some(HOST_KEYS))?;
    let mut host = Host {
        id: id.to_string(),
        pos,
        address: None,
        source: None,
        dc: None,
        promotion: Promotion::Neutral,
        delay: None,
    };
    if let Some(node) = dec.required(&fields, "address", "host:port of the server")
        && let Some(text) = dec.string(node, &fields.child_path("address"))
    {
        match Address::parse(&text.value) {
            Ok(address) => {
                host.address = Some(Spanned {
                    value: address,
                    pos: text.pos,
                })
            }
            Err(why) => {
                dec.report(
                    Code::BadAddress,
                    text.pos,
                    &fields.child_path("address"),
                    format!("`{}`: {why}", text.value),
                )
                .hint = Some("write host:port, e.g. 10.0.0.1:3306 or db1.example.com:3306".into());
            }
        }
    }
    if let Some(node) = fields.get("source")
        && !node.is_null()
    {
        host.source = dec.string(node, &fields.child_path("source"));
    }
    if let Some(node) = fields.get("dc") {
        host.dc = dec.string(node, &fields.child_path("dc")).map(|s| s.value);
    }
    if let Some(node) = fields.get("promotion") {
        let choices = [
            ("prefer", Promotion::Prefer),
            ("neutral", Promotion::Neutral),
            ("prefer_not", Promotion::PreferNot),
            ("must_not", Promotion::MustNot),
        ];
        if let Some(p) = dec.choice(node, &fields.child_path("promotion"), &choices) {
            host.promotion = p;
        }
    }
    if let Some(node) = fields.get("delay") {
        host.delay = dec.duration(node, &fields.child_path("delay"));
    }
    Some(host)
}

/// Finds, reads and decodes the policy a topology names. Diagnostics about the policy
/// file's contents point into the policy file.
pub fn load_policy(t: &Topology) -> (Option<Policy>, Vec<Diagnostic>) {
    let (file, root) = match &t.policy {
        PolicyRef::Builtin(name) => {
            let Some((_, text)) = policy::BUILTIN.iter().find(|(n, _)| n == name) else {
                let names: Vec<&str> = policy::BUILTIN.iter().map(|(n, _)| *n).collect();
                let d = Diagnostic::new(
                    Code::PolicyUnresolved,
                    &t.file,
                    t.policy_pos,
                    format!("no built-in policy named `{name}`"),
                )
                .subject("policy")
                .hint(format!(
                    "built-in policies: {}; or give a path like ./policies/mine.yaml",
                    names.join(", ")
                ));
                return (None, vec![d]);
            };
            let root = yaml::load(text).expect("built-in policies are valid YAML (tested)");
            (PathBuf::from(format!("<built-in {name}>")), root)
        }
        PolicyRef::File(rel) => {
            let file = t.file.parent().unwrap_or(Path::new(".")).join(rel);
            if !file.is_file() {
                let d = Diagnostic::new(
                    Code::PolicyUnresolved,
                    &t.file,
                    t.policy_pos,
                    format!("policy file {} does not exist", file.display()),
                )
                .subject("policy")
                .hint("a relative path is relative to the topology file; built-in policies: safe, manual, fast");
                return (None, vec![d]);
            }
            match read_document(&file) {
                Ok(root) => (file, root),
                Err(d) => {
                    let refer = Diagnostic::new(
                        Code::PolicyUnresolved,
                        &t.file,
                        t.policy_pos,
                        "the policy file cannot be read",
                    )
                    .subject("policy")
                    .hint(format!("see the error reported in {}", file.display()));
                    return (None, vec![*d, refer]);
                }
            }
        }
    };
    let mut dec = Decoder::new(&file);
    let policy = policy::decode(&mut dec, &root);
    (Some(policy), dec.diags)
}

#[cfg(test)]
mod tests;
