#!/usr/bin/env bash
# Try orch on a real local replication topology: installs MariaDB if missing, builds orch,
# starts a 3-instance sandbox in ${ORCH_TRY_DIR:-/tmp/orch-try}, validates its topology
# file and shows the live topology. Stop it with: target/release/orch sandbox down /tmp/orch-try
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --quiet
ORCH=target/release/orch
DIR="${ORCH_TRY_DIR:-/tmp/orch-try}"
if [ -e "$DIR/sandbox.json" ]; then "$ORCH" sandbox down "$DIR"; fi
"$ORCH" sandbox up "$DIR" -n "${ORCH_TRY_NODES:-3}" --shape "${ORCH_TRY_SHAPE:-star}"
"$ORCH" validate "$DIR/topology.yaml"
"$ORCH" sandbox status "$DIR"
"$ORCH" status "$DIR/topology.yaml" || true   # exit 2 means problems were found
echo
echo "Try: $ORCH sandbox kill $DIR 2    # crash a replica, then: $ORCH sandbox status $DIR"
echo "Done: $ORCH sandbox down $DIR"
