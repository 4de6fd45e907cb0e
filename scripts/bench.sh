#!/usr/bin/env bash
# Figures that need real servers (criterion covers the pure ones: `cargo bench`):
# sandbox start time for 3 and 5 instances, `orch status` wall time on a healthy 5-node
# sandbox and with one frozen server, peak memory of `orch status`, and `orch plan` wall
# time on the 5-node sandbox (a switchover plan: observe, plan, prove, render), and a
# switchover applied back and forth (wall time and write-block window), and the window an
# application writing through it sees on a 3-node sandbox; failover time after kill -9 of
# the primary under orch watch on 3 and 10 nodes, and orch watch's memory and CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --quiet
O=target/release/orch
DIR=$(mktemp -d)
chmod 755 "$DIR"
trap '"$O" sandbox down "$DIR/sb" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
ms() { echo $(( ($2 - $1) / 1000000 )); }
for n in 3 5; do
  s=$(date +%s%N); "$O" sandbox up "$DIR/sb" -n "$n" >/dev/null; e=$(date +%s%N)
  echo "sandbox up -n $n: $(ms "$s" "$e") ms"
  if [ "$n" = 5 ]; then break; fi
  "$O" sandbox down "$DIR/sb" >/dev/null
done
runs=20
s=$(date +%s%N); for _ in $(seq $runs); do "$O" status "$DIR/sb/topology.yaml" >/dev/null; done; e=$(date +%s%N)
echo "status, healthy 5-node sandbox: $(( $(ms "$s" "$e") / runs )) ms (mean of $runs)"
if [ -x /usr/bin/time ]; then
  /usr/bin/time -f "status peak memory: %M KiB" "$O" status "$DIR/sb/topology.yaml" >/dev/null
else
  echo "status peak memory: (install the 'time' package for this figure)"
fi
# A switchover: node2 becomes the primary, everyone else under it.
sed -e '/node1:/s/ }$/, source: node2 }/' -e '/node2:/s/, source: node1//' -e 's/source: node1/source: node2/' \
  "$DIR/sb/topology.yaml" > "$DIR/sb/switchover.yaml"
"$O" plan "$DIR/sb/switchover.yaml" --detailed-exitcode >/dev/null && { echo "expected a switchover plan"; exit 1; } || test $? = 2
s=$(date +%s%N); for _ in $(seq $runs); do "$O" plan "$DIR/sb/switchover.yaml" >/dev/null; done; e=$(date +%s%N)
echo "plan (switchover), 5-node sandbox: $(( $(ms "$s" "$e") / runs )) ms (mean of $runs)"
"$O" sandbox freeze "$DIR/sb" 3 >/dev/null
for rt in 3s 1s; do
  s=$(date +%s%N); "$O" status "$DIR/sb/topology.yaml" --read-timeout "$rt" >/dev/null || true; e=$(date +%s%N)
  echo "status, one frozen server, --read-timeout $rt: $(ms "$s" "$e") ms"
done
"$O" sandbox thaw "$DIR/sb" 3 >/dev/null
# Switchover apply, back and forth on the 5-node sandbox: wall time of `orch apply`, and the
# write-block window as the history records it (the fence step's start to the promote
# step's end: from then on the new primary takes writes). Median of 10.
python3 - "$O" "$DIR" <<'PY'
import json, statistics, subprocess, sys, time
o, d = sys.argv[1], sys.argv[2]
files = [f"{d}/sb/switchover.yaml", f"{d}/sb/topology.yaml"]
walls, blocks = [], []
for i in range(10):
    f = files[i % 2]
    s = time.monotonic()
    out = subprocess.run([o, "apply", f, "--auto-approve", "--state", f"{d}/state", "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    walls.append((time.monotonic() - s) * 1000)
    run = json.loads(out.strip().splitlines()[-1])["run"]
    detail = json.loads(subprocess.run([o, "history", str(run), "--state", f"{d}/state", "--format", "json"],
                                       capture_output=True, text=True, check=True).stdout)["run"]
    steps = detail["steps"]
    fence = next(x for x in steps if x["action"] == "fence")
    promote = next(x for x in steps if x["action"] == "promote")
    blocks.append(promote["ended_at"] - fence["started_at"])
print(f"apply switchover, 5-node sandbox: wall {statistics.median(walls):.0f} ms, "
      f"write block (fence to promoted) {statistics.median(blocks):.0f} ms (medians of 10)")
PY
# The same under a write load, as the application sees it, on a 3-node sandbox: the time from
# the writer's last acknowledged insert on the old primary to its first on the new one.
"$O" sandbox down "$DIR/sb" >/dev/null
"$O" sandbox up "$DIR/sb" -n 3 >/dev/null
cargo build --release --quiet --example switchover_load
target/release/examples/switchover_load "$O" "$DIR/sb" 10
# Failover: kill -9 of the primary under orch watch (built-in policy, poll 1 s) until the
# cluster converged, on 3 and 10 nodes, 10 runs each, the kill at a random moment within
# a poll interval; then with two watchers on etcd (the leader killed with the primary).
"$O" sandbox down "$DIR/sb" >/dev/null
cargo build --release --quiet --example failover_bench
for n in 3 10; do target/release/examples/failover_bench "$O" "$DIR" "$n" 10; done
# The same with two watchers on etcd, the leader watcher killed with the primary.
target/release/examples/failover_bench "$O" "$DIR" 3 10 --ha
# orch watch on 10 servers for a minute: resident memory and CPU; then the same with the
# HTTP server on, the live page open (its three requests every second) and /metrics
# scraped every 15 s.
"$O" sandbox up "$DIR/sb" -n 10 >/dev/null
watch_minute() {
  local label=$1; shift
  "$O" watch "$DIR/sb/topology.yaml" --state "$DIR/watch-state" "$@" 2>/dev/null &
  WPID=$!
  sleep 5
  local client=""
  if [ "$#" -gt 0 ]; then
    ( i=0; while true; do
        curl -s -o /dev/null http://127.0.0.1:18099/api/v1/clusters
        curl -s -o /dev/null http://127.0.0.1:18099/api/v1/clusters/sandbox
        curl -s -o /dev/null "http://127.0.0.1:18099/api/v1/history?limit=10"
        if [ $((i % 15)) -eq 0 ]; then curl -s -o /dev/null http://127.0.0.1:18099/metrics; fi
        i=$((i + 1)); sleep 1
      done ) &
    client=$!
  fi
  local t0 t1 rss hz
  t0=$(awk '{print $14+$15}' /proc/$WPID/stat)
  sleep 60
  t1=$(awk '{print $14+$15}' /proc/$WPID/stat)
  rss=$(awk '/VmRSS/ {print $2}' /proc/$WPID/status)
  if [ -n "$client" ]; then kill "$client"; wait "$client" 2>/dev/null || true; fi
  kill $WPID; wait $WPID 2>/dev/null || true
  hz=$(getconf CLK_TCK)
  echo "orch watch, 10 servers, poll 1s, one minute$label: RSS ${rss} KiB, CPU $(awk -v a="$t0" -v b="$t1" -v hz="$hz" 'BEGIN {printf "%.2f", (b-a)/hz/60*100}') % of a core"
}
watch_minute ""
watch_minute " with --listen, the page open and /metrics scraped" --listen 127.0.0.1:18099
# The page and its API answers as the server sends them (median of 20).
"$O" watch "$DIR/sb/topology.yaml" --state "$DIR/watch-state" --listen 127.0.0.1:18099 2>/dev/null &
WPID=$!
sleep 3
for path in / /api/v1/clusters/sandbox /metrics; do
  for _ in $(seq 20); do curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:18099$path"; done \
    | sort -n | awk -v p="$path" '{a[NR]=$1} END {printf "GET %s: median %.2f ms\n", p, a[int((NR+1)/2)]*1000}'
done
kill $WPID; wait $WPID 2>/dev/null || true
