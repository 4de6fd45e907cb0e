//! One module per command body. `lib.rs::run` dispatches here; each body resolves its
//! inputs (files, secrets), drives the pipeline stages below it and renders the result.
//! This is the layer that does I/O on behalf of the user: reading files, connecting to
//! servers through the executor, writing to stdout.

pub mod apply;
pub mod discover;
pub mod downtime;
pub mod failover;
pub mod history;
pub mod logs;
pub mod plan;
pub mod sandbox;
pub mod status;
pub mod validate;
pub mod watch;

/// The tokio runtime for commands that talk to servers: observation is I/O-bound, two
/// worker threads are plenty.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}
