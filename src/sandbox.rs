//! Local MariaDB/MySQL replication sandboxes (being written).

use crate::cli::SandboxCommand;

pub fn run(_cmd: &SandboxCommand) -> anyhow::Result<u8> {
    anyhow::bail!("sandbox is not built yet")
}
