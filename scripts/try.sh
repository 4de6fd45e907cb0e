#!/usr/bin/env bash
# Try orch on a real local replication topology: installs MariaDB if missing, builds orch,
# starts a 3-instance sandbox in ${ORCH_TRY_DIR:-/tmp/orch-try}, validates its topology
# file, shows the live topology, plans a switchover to node2 and applies it; then starts
# `orch watch`, kills the primary (kill -9) and shows the failover: the new primary, the
# topology after it, and the recovery in the history. The sandbox stays for you to play
# with. Stop it with: target/release/orch sandbox down /tmp/orch-try
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
# A failure at 3 a.m.: orch watch notices the killed primary and fails over.
echo
echo "\$ orch watch $DIR/switchover.yaml &   # then: orch sandbox kill $DIR 2 (the primary)"
"$ORCH" watch "$DIR/switchover.yaml" --state "$DIR/state" &
WATCH=$!
trap 'kill $WATCH 2>/dev/null || true' EXIT
sleep 1.5   # a poll or two: watch sees a healthy cluster first
"$ORCH" sandbox kill "$DIR" 2
for _ in $(seq 100); do
  if "$ORCH" history --state "$DIR/state" --format json | grep -q '"kind": "recovery"'; then break; fi
  sleep 0.1
done
sleep 0.5
kill "$WATCH"; wait "$WATCH" 2>/dev/null || true
trap - EXIT
echo
"$ORCH" status "$DIR/switchover.yaml" --state "$DIR/state" || true   # the file still names node2 (failover-drift)
"$ORCH" history --state "$DIR/state"
RUN=$("$ORCH" history --state "$DIR/state" --format json | grep -o '"id": [0-9]*' | head -1 | grep -o '[0-9]*$')
"$ORCH" history "$RUN" --state "$DIR/state"
echo
echo "Try: $ORCH watch $DIR/switchover.yaml --state $DIR/state &  then  $ORCH sandbox start $DIR 2"
echo "     (the old primary comes back writable; watch fences it at once)"
echo "Done: $ORCH sandbox down $DIR"
