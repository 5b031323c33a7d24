#!/usr/bin/env bash
# tests/bench/bench_script.sh BIN_DIR OUT_DIR - scripts/bench with short settings: it runs
# every phase to the end and its summary has a figure for every target (a smoke test of the
# benchmark, never of the figures themselves: they are not pass/fail).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$1 out=$2
rm -rf "$out"
BENCH_SECONDS=2 BENCH_ROUNDS=1 BENCH_CONNECTIONS=4 BENCH_LATENCY_CONNECTIONS=2 BENCH_BACKLOG=2000 \
	BENCH_E2E_RATE=50 BENCH_BIN=$bin BENCH_OUT=$out EVENTS=${BENCH_EVENTS:-wal} \
	"$root/scripts/bench" >"$out.log" 2>&1 || { tail -n 40 "$out.log"; echo "scripts/bench failed"; exit 1; }
summary=$out/summary.txt
failed=0
expect() { # expect REGEX WHAT
	if ! grep -Eq -- "$1" "$summary"; then
		echo "the summary has no $2 (/$1/)"
		failed=1
	fi
}
num='[0-9]+(\.[0-9]+)?'
expect "server 201/s over pgbench tps \(EVENTS=wal\) +$num / $num = $num" "201/s over pgbench with the WAL message"
expect "server 201/s over pgbench, no event +$num / $num = $num" "201/s over pgbench with no event"
expect "relay draining 2000 WAL events \(events/s\) +$num" "WAL drain rate"
expect "relay draining 2000 outbox rows \(events/s\) +$num" "outbox drain rate"
expect "commit -> all three workers, p50 / p99 \(at 50/s\) +$num / $num ms" "commit -> applied"
expect "WAL per checkout \(half load, server alone\): $num kB" "WAL per checkout"
expect "commit -> topic at 50/s \(p50 p99 ms, orders\): $num $num [0-9]+" "commit -> topic at the steady rate"
# the production phase: everything at once
expect "everything running: 201/s over pgbench, no event +$num / $num = $num" "the production phase's 201/s over pgbench"
expect "production \(server, relay, three workers; closed loop, 4 connections\): $num 201/s" "the production phase's 201/s"
expect "slot lag during the load \(wal\): max [0-9]+ bytes of WAL, median [0-9]+ bytes of WAL over [0-9]+ samples" "slot lag during the load"
expect "orders not yet applied at the end: email [0-9]+, inventory [0-9]+, analytics [0-9]+; caught up after: email $num s, inventory $num s, analytics $num s" "each worker's backlog and catch-up"
expect "commit -> topic p99, half load \([0-9]+/s, all running\) +$num ms" "commit -> topic p99 at half load"
if [ $failed = 1 ]; then
	cat "$summary"
	exit 1
fi
echo "scripts/bench printed every figure; summary: $summary"
