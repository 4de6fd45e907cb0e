//! The one I/O boundary between orch and servers: an intent-level [`Executor`].
//!
//! Takes intents ("observe this server"), gives results in orch's vocabulary. Two
//! implementations: [`mysql::MysqlExecutor`] over mysql_async (the only code that knows SQL
//! and flavour differences) and [`sim::Simulator`], an in-memory topology with fault
//! injection for fast tests and benchmarks. Every scenario test runs on both.

pub mod mysql;
pub mod sim;

use std::future::Future;

use crate::observe::ServerState;
use crate::topology::Address;

pub trait Executor: Send + Sync + 'static {
    /// Observes one server. Never fails: an unreachable server is a [`ServerState`] too.
    fn observe(&self, address: &Address) -> impl Future<Output = ServerState> + Send;
}
