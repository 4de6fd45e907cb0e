//! Command-line definitions (clap) and their resolution into a [`Command`].
//!
//! Takes the raw arguments, gives a resolved, validated [`Command`] before any work starts
//! (the ripgrep shape): everything downstream works on plain values and never sees clap.
//! No I/O here.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// etcd, for watchers that elect a leader and for applies that lock a cluster there.
#[derive(Clone, Debug, clap::Args)]
pub struct EtcdFlags {
    /// etcd members (http(s)://HOST:PORT, comma-separated). watch: several watchers elect
    /// one leader there; only it acts, and it publishes each cluster's primary. apply: the
    /// cluster lock is taken there too, so an apply and a watch leader exclude each other.
    #[arg(long = "etcd", value_name = "URLS", value_delimiter = ',')]
    pub urls: Vec<String>,
    /// Where orch's keys live in etcd.
    #[arg(long = "etcd-prefix", value_name = "PREFIX", default_value = "orch/")]
    pub prefix: String,
    /// etcd user (with --etcd-password-file, mode 0600).
    #[arg(long = "etcd-user", value_name = "USER", requires = "password_file")]
    pub user: Option<String>,
    #[arg(long = "etcd-password-file", value_name = "FILE", requires = "user")]
    pub password_file: Option<PathBuf>,
    /// CA certificates (PEM) that signed the https members' certificates: trusted instead
    /// of the public roots.
    #[arg(long = "etcd-cacert", value_name = "FILE", requires = "urls")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM, with its chain) for etcd's --client-cert-auth (with
    /// --etcd-key).
    #[arg(
        long = "etcd-cert",
        value_name = "FILE",
        requires = "key",
        requires = "urls"
    )]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM, unencrypted).
    #[arg(long = "etcd-key", value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

/// Which endpoints of `watch --listen` require the bearer token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ApiAuth {
    /// The actions (failover, downtime, ack); reading is open.
    Actions,
    /// Every endpoint but /health and /ready.
    All,
}

/// How `orch watch` writes its log lines on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `TIME CLUSTER: what happened`, for people.
    Human,
    /// One JSON object per line (timestamp, level, cluster, message), for log shippers.
    Json,
}

pub use crate::render::Format;
pub use crate::sandbox::Shape;

/// `--format`: the values are the enum's, spelled in lowercase. Each command accepts (and
/// lists in `--help` and completions) only its own formats: see [`formats`].
impl ValueEnum for Format {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            Format::Human,
            Format::Json,
            Format::Github,
            Format::Sarif,
            Format::Gitlab,
            Format::Markdown,
        ]
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        use clap::builder::PossibleValue as V;
        Some(match self {
            Format::Human => V::new("human").help("Text for people"),
            Format::Json => {
                V::new("json").help("One JSON document on stdout, with a documented, stable schema")
            }
            Format::Github => V::new("github").help(
                "GitHub Actions workflow commands: each problem annotated on its line in the pull request",
            ),
            Format::Sarif => V::new("sarif").help("A SARIF 2.1.0 log, for code scanning"),
            Format::Gitlab => V::new("gitlab")
                .help("A GitLab Code Quality report: each problem shown in the merge request"),
            Format::Markdown => {
                V::new("markdown").help("A Markdown document, for a pull request comment")
            }
        })
    }
}

/// The `--format` parser of a command: only `allowed` parse, and only they are listed in
/// `--help` and completions, so `orch status --format markdown` is clap's usual "invalid
/// value" error naming the formats `status` has.
fn formats(allowed: &'static [Format]) -> impl clap::builder::TypedValueParser<Value = Format> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(allowed.iter().filter_map(Format::to_possible_value))
        .map(|name| Format::from_str(&name, false).expect("a possible value names a format"))
}

/// `--shape` of a sandbox.
impl ValueEnum for Shape {
    fn value_variants<'a>() -> &'a [Self] {
        &[Shape::Star, Shape::Chain, Shape::Tree]
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        use clap::builder::PossibleValue as V;
        Some(match self {
            Shape::Star => V::new("star").help("Every replica replicates from the primary"),
            Shape::Chain => V::new("chain").help("Each instance replicates from the one before it"),
            Shape::Tree => V::new("tree").help(
                "A binary tree under the primary: intermediate sources with their own replicas",
            ),
        })
    }
}

/// orch: a declarative reconciler for MySQL/MariaDB replication topologies.
#[derive(Debug, Parser)]
#[command(name = "orch", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: CliCommand,
}

#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Check topology files (and the policies they name) and policy files for CI; talks to
    /// no server. `--format github|sarif|gitlab` puts each problem on its line in code review.
    ///
    /// Exit status: 0 clean (warnings allowed), 1 errors, 2 warnings with --strict; the same
    /// in every format.
    Validate {
        /// Topology files (each declares one cluster) and policy files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Treat warnings as errors.
        #[arg(long)]
        strict: bool,
        #[arg(long, value_parser = formats(Format::VALIDATE), default_value = "human")]
        format: Format,
    },
    /// Observe every server of a topology: a tree (or table) with role, source, threads,
    /// lag, GTID position, read_only, and the problems found.
    ///
    /// Exit status: 0 healthy, 2 problems found, 1 error (bad file, bad credentials, no
    /// server reachable).
    Status {
        /// Topology file.
        #[arg(
            value_name = "FILE",
            required_unless_present = "seed",
            conflicts_with = "seed"
        )]
        file: Option<PathBuf>,
        /// Observe the topology crawled from this server instead of a file.
        #[arg(long, value_name = "HOST:PORT", value_parser = parse_address_arg)]
        seed: Option<crate::topology::Address>,
        #[command(flatten)]
        login: Login,
        /// Show a table instead of a tree.
        #[arg(long)]
        table: bool,
        #[arg(long, value_parser = formats(Format::COMMON), default_value = "human")]
        format: Format,
        /// orch's state directory, where a failover made by orch records the live primary
        /// [default: $ORCH_STATE, else $XDG_STATE_HOME/orch, else ~/.local/state/orch].
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        #[command(flatten)]
        timeouts: Timeouts,
    },
    /// Compare the file with the live servers and print the safe, ordered steps that
    /// would make them match, why each is needed, and what is blocked. Changes nothing.
    ///
    /// With --observed it plans offline, from a snapshot; --format markdown writes the plan
    /// as a pull request comment.
    ///
    /// Exit status: 0 success, 1 error; with --detailed-exitcode, 0 no changes, 2 changes,
    /// 3 only blocked changes (nothing can run, but the file and the servers differ).
    Plan {
        /// Topology file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Plan offline from `orch status --format json` output instead of connecting.
        #[arg(long, value_name = "SNAPSHOT.json")]
        observed: Option<PathBuf>,
        /// Save the plan (JSON, with its fingerprint and the hashes of its files) for
        /// `orch apply`.
        #[arg(short = 'o', long = "out", value_name = "PLAN")]
        output: Option<PathBuf>,
        /// Print each step's SQL for the server's flavour.
        #[arg(long)]
        show_sql: bool,
        /// Exit 2 when the plan has steps, 0 when there is nothing to do.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Stop and reset replication on servers replicating from the cluster that the
        /// file does not name (otherwise they are reported and left alone).
        #[arg(long)]
        detach_removed: bool,
        /// After a failover, make the file's primary the primary again (otherwise the plan
        /// reports the drift and leaves the live primary in place).
        #[arg(long)]
        allow_switch_back: bool,
        /// Go ahead with changes that leave replicas without a source that passes on
        /// transactions (otherwise such a change is blocked: lost-replica).
        #[arg(long)]
        allow_lost_replicas: bool,
        #[arg(long, value_parser = formats(Format::PLAN), default_value = "human")]
        format: Format,
        #[command(flatten)]
        timeouts: Timeouts,
    },
    /// Run a plan on the live servers: each step re-checked against a fresh observation,
    /// the cluster locked, every step recorded (`orch history`).
    ///
    /// With a topology FILE: plan, show, then ask (only `yes` proceeds). With a PLAN saved
    /// by `orch plan -o`: no question, refused if the files or the live topology changed.
    /// Exit status: 0 applied (or nothing to do), 1 refused, failed or interrupted.
    Apply {
        /// A topology file, or a plan saved by `orch plan -o`.
        #[arg(value_name = "FILE|PLAN")]
        target: PathBuf,
        /// Do not ask for approval.
        #[arg(long)]
        auto_approve: bool,
        /// As for `orch plan`.
        #[arg(long)]
        detach_removed: bool,
        /// As for `orch plan`.
        #[arg(long)]
        allow_switch_back: bool,
        /// As for `orch plan`.
        #[arg(long)]
        allow_lost_replicas: bool,
        #[arg(long, value_parser = formats(Format::COMMON), default_value = "human")]
        format: Format,
        /// orch's state directory [default: $ORCH_STATE, else $XDG_STATE_HOME/orch, else
        /// ~/.local/state/orch].
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        #[command(flatten)]
        etcd: EtcdFlags,
        #[command(flatten)]
        timeouts: Timeouts,
    },
    /// Watch clusters: detect failures holistically and recover per policy (failover of a
    /// dead primary, relocation of a dead intermediate's replicas, fencing of a second
    /// writable server or a returning former primary), locked and recorded.
    ///
    /// Runs until SIGTERM or Ctrl-C (then finishes the current step and exits 0). One line
    /// per event on stderr.
    Watch {
        /// Topology files, one cluster each.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Detect, decide and record what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// orch's state directory [default: $ORCH_STATE, else $XDG_STATE_HOME/orch, else
        /// ~/.local/state/orch].
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// Serve the HTTP API, the live topology page and /metrics on this address
        /// (e.g. 127.0.0.1:8080). Off by default.
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// A file (mode 0600) holding the bearer token the API's actions require. Without
        /// it, the actions (failover, downtime, ack) are disabled.
        #[arg(long, value_name = "FILE", requires = "listen")]
        api_token_file: Option<PathBuf>,
        /// Which endpoints require the token: the actions only, or every endpoint but
        /// /health and /ready.
        #[arg(
            long,
            value_enum,
            default_value = "actions",
            requires = "api_token_file"
        )]
        api_auth: ApiAuth,
        /// Log lines for people, or one JSON object per line for log shippers.
        #[arg(long, value_enum, default_value = "human")]
        log_format: LogFormat,
        #[command(flatten)]
        etcd: EtcdFlags,
        #[command(flatten)]
        timeouts: Timeouts,
    },
    /// A person's failover of a dead primary, now: ignores anti-flap; refuses while the
    /// primary answers (a planned change of primary is a switchover: plan/apply) unless
    /// --force.
    ///
    /// Exit status: 0 recovered (or --ack done), 1 refused or failed.
    Failover {
        file: PathBuf,
        /// The replica to promote (it must be promotable).
        #[arg(long, value_name = "HOST", conflicts_with = "ack")]
        to: Option<String>,
        /// Clear the anti-flap block of the cluster (after a failover, watch acts on the
        /// next failure at once).
        #[arg(long)]
        ack: bool,
        /// Fail over a primary that still answers: it is fenced first (read_only, writing
        /// sessions killed) and every replica takes what it has, then the failover runs.
        #[arg(long, conflicts_with = "ack")]
        force: bool,
        /// orch's state directory [default: $ORCH_STATE, else $XDG_STATE_HOME/orch, else
        /// ~/.local/state/orch].
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// With watchers on etcd: --ack clears the anti-flap record every leader reads (a
        /// failover itself is for their leader: POST /api/v1/clusters/C/failover).
        #[command(flatten)]
        etcd: EtcdFlags,
        #[command(flatten)]
        timeouts: Timeouts,
    },
    /// Downtime a host or a whole cluster: orch watch never recovers it automatically until
    /// the downtime ends or expires. Without --for or --end, lists the downtimes.
    Downtime {
        file: PathBuf,
        /// The host (its id in the file).
        #[arg(conflicts_with = "cluster")]
        host: Option<String>,
        /// The whole cluster instead of one host.
        #[arg(long)]
        cluster: bool,
        /// How long (e.g. 30m, 2h; at most 30d without --force).
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration_arg,
              requires = "reason", conflicts_with = "end")]
        length: Option<std::time::Duration>,
        /// Why (recorded, shown in watch's log).
        #[arg(long)]
        reason: Option<String>,
        /// Allow a downtime longer than 30 days.
        #[arg(long, requires = "length")]
        force: bool,
        /// End the downtime of HOST (or the cluster's) now.
        #[arg(long)]
        end: bool,
        /// orch's state directory [default: $ORCH_STATE, else $XDG_STATE_HOME/orch, else
        /// ~/.local/state/orch].
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// With watchers on etcd: the downtime is recorded there (not in the state store),
        /// where every leader reads it; ended and listed there too.
        #[command(flatten)]
        etcd: EtcdFlags,
    },
    /// Crawl a live topology from one server (up to its sources, down to every replica)
    /// and print it as a topology file that `orch validate` accepts.
    Discover {
        #[arg(long, value_name = "HOST:PORT", value_parser = parse_address_arg)]
        seed: crate::topology::Address,
        /// Cluster name to write.
        #[arg(long, default_value = "discovered")]
        cluster: String,
        /// Write the file here instead of stdout.
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        login: Login,
        #[command(flatten)]
        timeouts: Timeouts,
    },
    /// Past runs (applies; later detections and recoveries) with their steps, newest first,
    /// from orch's state. Talks to no server.
    ///
    /// Exit status: 0 success, 1 error (an unknown ID, an unreadable state store).
    History(HistoryCli),
    /// Local throw-away MariaDB (or MySQL) replication topologies.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `orch history [ID]`.
#[derive(Debug, Clone, clap::Args)]
pub struct HistoryCli {
    /// Show this run with its steps instead of the list.
    #[arg(value_name = "ID", value_parser = clap::value_parser!(i64).range(1..),
          conflicts_with_all = ["cluster", "since", "limit"])]
    pub id: Option<i64>,
    /// Only runs on this cluster.
    #[arg(long)]
    pub cluster: Option<String>,
    /// Only runs started within this long before now (e.g. 90m, 1h, 7d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub since: Option<std::time::Duration>,
    /// At most this many runs (the newest).
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    #[arg(long, value_parser = formats(Format::COMMON), default_value = "human")]
    pub format: Format,
    /// orch's state directory [default: $ORCH_STATE, else $XDG_STATE_HOME/orch, else
    /// ~/.local/state/orch].
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
}

impl HistoryCli {
    pub fn resolve(self) -> crate::cmd::history::HistoryArgs {
        crate::cmd::history::HistoryArgs {
            id: self.id.map(crate::state::RunId),
            cluster: self.cluster,
            since: self.since,
            limit: self.limit as usize,
            format: self.format,
            state: self.state,
        }
    }
}

/// How long to wait on each server.
#[derive(Debug, Clone, clap::Args)]
pub struct Timeouts {
    /// TCP connect timeout per server (e.g. 500ms, 2s).
    #[arg(long, default_value = "2s", value_parser = parse_duration_arg)]
    pub connect_timeout: std::time::Duration,
    /// Time allowed for the handshake and all queries to one server, after connecting.
    #[arg(long, default_value = "3s", value_parser = parse_duration_arg)]
    pub read_timeout: std::time::Duration,
    /// Servers observed at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
}

impl Timeouts {
    pub fn options(&self) -> crate::observe::ObserveOptions {
        crate::observe::ObserveOptions {
            connect_timeout: self.connect_timeout,
            read_timeout: self.read_timeout,
            concurrency: usize::from(self.concurrency),
        }
    }
}

/// How `--seed` commands log in (a topology file says it itself).
#[derive(Debug, Clone, clap::Args)]
pub struct Login {
    /// User orch connects as (with --seed).
    #[arg(long, env = "ORCH_USER", default_value = "orch")]
    pub user: String,
    /// File holding the password (mode 0600); otherwise $ORCH_PASSWORD.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Replication user written into a discovered topology.
    #[arg(long, default_value = "repl")]
    pub replication_user: String,
    /// At most this many servers are crawled.
    #[arg(long, default_value_t = 10_000)]
    pub limit: usize,
}

fn parse_address_arg(text: &str) -> Result<crate::topology::Address, String> {
    crate::topology::Address::parse(text)
}

fn parse_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    crate::spec::decode::parse_duration(text)
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Start N local servers replicating in SHAPE, then write DIR/topology.yaml.
    Up {
        /// Directory for the sandbox; must not exist or be empty.
        dir: PathBuf,
        /// Number of instances (1 to 20).
        #[arg(short = 'n', long = "nodes", default_value_t = 3,
              value_parser = clap::value_parser!(u8).range(1..=20))]
        nodes: u8,
        #[arg(long, value_enum, default_value_t)]
        shape: Shape,
        /// TCP port every instance listens on, each on its own 127.x.y.z address.
        #[arg(long, default_value_t = 13306)]
        port: u16,
        /// Cluster name written into topology.yaml.
        #[arg(long, default_value = "sandbox")]
        cluster: String,
        /// Serve TLS with a throw-away CA (DIR/tls/ca.pem), require it for orch's account,
        /// and have topology.yaml verify the servers' identity.
        #[arg(long)]
        tls: bool,
    },
    /// Show each instance: address, pid, state and role.
    Status {
        dir: PathBuf,
        #[arg(long, value_parser = formats(Format::COMMON), default_value = "human")]
        format: Format,
    },
    /// SIGKILL instance I (a crash).
    Kill { dir: PathBuf, instance: u8 },
    /// Stop instance I cleanly (SIGTERM, then wait).
    Stop { dir: PathBuf, instance: u8 },
    /// Start instance I again with its previous configuration.
    Start { dir: PathBuf, instance: u8 },
    /// SIGSTOP instance I (a hung server: TCP still accepts, nothing answers).
    Freeze { dir: PathBuf, instance: u8 },
    /// SIGCONT instance I.
    Thaw { dir: PathBuf, instance: u8 },
    /// Stop every instance the sandbox started and remove DIR.
    Down { dir: PathBuf },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etcd_flags(args: &[&str]) -> Result<EtcdFlags, clap::Error> {
        let mut argv = vec!["orch", "apply", "topology.yaml"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)?.command {
            CliCommand::Apply { etcd, .. } => Ok(etcd),
            _ => unreachable!("parsed as apply"),
        }
    }

    #[test]
    fn etcd_tls_flags_come_in_the_pairs_etcd_needs() {
        let e = etcd_flags(&[
            "--etcd",
            "https://10.0.0.1:2379",
            "--etcd-cacert",
            "ca.pem",
            "--etcd-cert",
            "client.pem",
            "--etcd-key",
            "client-key.pem",
        ])
        .unwrap();
        assert_eq!(e.cacert, Some(PathBuf::from("ca.pem")));
        assert_eq!(e.cert, Some(PathBuf::from("client.pem")));
        assert_eq!(e.key, Some(PathBuf::from("client-key.pem")));
        for (args, missing) in [
            (
                &["--etcd", "https://e:2379", "--etcd-cert", "c.pem"][..],
                "--etcd-key",
            ),
            (
                &["--etcd", "https://e:2379", "--etcd-key", "k.pem"],
                "--etcd-cert",
            ),
            (&["--etcd-cacert", "ca.pem"], "--etcd <URLS>"),
            (
                &["--etcd-cert", "c.pem", "--etcd-key", "k.pem"],
                "--etcd <URLS>",
            ),
        ] {
            let err = etcd_flags(args).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::MissingRequiredArgument,
                "{args:?}"
            );
            assert!(err.to_string().contains(missing), "{args:?}: {err}");
        }
    }
}
