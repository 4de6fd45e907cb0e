#!/usr/bin/env bash
# Try orch on a real local replication topology: installs MariaDB if missing, builds orch,
# starts a 3-instance sandbox in ${ORCH_TRY_DIR:-/tmp/orch-try}, validates its topology
# file, shows the live topology, plans a switchover to node2, applies it and shows the result and its history. Stop it with: target/release/orch sandbox down /tmp/orch-try
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
# The file with node2 as the primary: what `orch plan` would do about it.
sed -e '/node1:/s/ }$/, source: node2 }/' -e '/node2:/s/, source: node1//' -e 's/source: node1/source: node2/' \
  "$DIR/topology.yaml" > "$DIR/switchover.yaml"
echo
echo "\$ orch plan $DIR/switchover.yaml"
"$ORCH" plan "$DIR/switchover.yaml"
echo
echo "\$ orch apply $DIR/switchover.yaml --auto-approve"
"$ORCH" apply "$DIR/switchover.yaml" --auto-approve --state "$DIR/state"
"$ORCH" status "$DIR/switchover.yaml" || true
"$ORCH" history --state "$DIR/state"
echo
echo "Try: $ORCH sandbox kill $DIR 2    # crash a replica, then: $ORCH sandbox status $DIR"
echo "Done: $ORCH sandbox down $DIR"
