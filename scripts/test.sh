#!/usr/bin/env bash
# The whole test suite: installs MariaDB if missing (integration tests start real
# servers), then formatting, lints, unit and integration tests, and a compile check of
# the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets
