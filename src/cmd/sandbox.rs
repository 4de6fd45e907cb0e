//! `orch sandbox ...`: the clap subcommand resolved into the sandbox module's functions.

use crate::cli::SandboxCommand;
use crate::sandbox::{self, Action};

pub fn run(cmd: &SandboxCommand) -> anyhow::Result<u8> {
    match cmd {
        SandboxCommand::Up {
            dir,
            nodes,
            shape,
            port,
            cluster,
            tls,
        } => sandbox::up(dir, *nodes, *shape, *port, cluster, *tls),
        SandboxCommand::Status { dir, format } => sandbox::status(dir, *format),
        SandboxCommand::Kill { dir, instance } => sandbox::act(dir, *instance, Action::Kill),
        SandboxCommand::Stop { dir, instance } => sandbox::act(dir, *instance, Action::Stop),
        SandboxCommand::Start { dir, instance } => sandbox::act(dir, *instance, Action::Start),
        SandboxCommand::Freeze { dir, instance } => sandbox::act(dir, *instance, Action::Freeze),
        SandboxCommand::Thaw { dir, instance } => sandbox::act(dir, *instance, Action::Thaw),
        SandboxCommand::Down { dir } => sandbox::down(dir),
    }
}
