//! orch's integration tests: one test binary (one link, one run) with a module per area.
//! Tests that touch servers start their own MariaDB sandboxes on loopback addresses in
//! temporary directories and stop them by PID.

mod apply;
mod apply_faults;
mod apply_paused;
mod common;
mod completions;
mod downtime;
mod etcd_auth;
mod etcd_tls;
mod failover_decisions;
mod golden;
mod history;
mod plan;
mod preflight;
mod review;
mod sandbox;
mod status;
mod steps;
mod validate;
mod watch;
mod watch_ha;
mod watch_http;
mod watch_partition;
mod watch_refusals;
